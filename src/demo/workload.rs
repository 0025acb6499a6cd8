//! A synthetic Azure Machine Learning estate for the demo: subscriptions, workspaces and
//! compute clusters that scale with their job queues; jobs submitted → running → succeeded
//! or failed; platform metrics, run-status and activity-log records — all shaped like
//! diagnostic-settings exports, quirks included (string numbers, `properties` as a JSON
//! string, upper-cased resource ids, records delivered minutes late, the odd broken body).
//!
//! Deterministic for a seed, and driven by event time: `step(dt)` advances the estate by
//! `dt` and returns the bodies that Azure Monitor would have published meanwhile.

use std::collections::VecDeque;
use std::fmt::Write as _;

use crate::time::{format_datetime, TICKS_PER_MINUTE, TICKS_PER_SECOND};

#[derive(Debug, Clone)]
pub struct WorkloadConfig {
    pub seed: u64,
    pub subscriptions: usize,
    pub workspaces_per_subscription: usize,
    pub clusters_per_workspace: usize,
    /// Mean job submissions per cluster per event-time minute.
    pub jobs_per_cluster_minute: f64,
    /// Share of bodies delivered 2–8 minutes late (Azure's usual latency spread).
    pub late_share: f64,
    /// Share of bodies that are broken (invalid JSON), to show the dead-letter path.
    pub broken_share: f64,
}

impl Default for WorkloadConfig {
    fn default() -> Self {
        WorkloadConfig {
            seed: 7,
            subscriptions: 3,
            workspaces_per_subscription: 2,
            clusters_per_workspace: 3,
            jobs_per_cluster_minute: 1.5,
            late_share: 0.05,
            broken_share: 0.002,
        }
    }
}

use crate::rng::SplitMix64 as Rng;

struct Cluster {
    workspace: usize,
    name: String,
    vm_size: &'static str,
    low_priority: bool,
    max_nodes: i64,
    cores_per_node: i64,
    failure_rate: f64,
    current: i64,
    target: i64,
    unusable: i64,
    preempted: i64,
    queued: VecDeque<usize>,
    running: Vec<usize>,
    last_event: i64,
}

struct Workspace {
    resource_id: String,
}

#[derive(Clone, Copy, PartialEq)]
enum JobState {
    Queued,
    Running { until: i64 },
    Done,
}

struct Job {
    id: String,
    cluster: usize,
    state: JobState,
    fails: bool,
}

pub struct Workload {
    cfg: WorkloadConfig,
    rng: Rng,
    now: i64,
    workspaces: Vec<Workspace>,
    clusters: Vec<Cluster>,
    jobs: Vec<Job>,
    /// Records produced, waiting to be packed into bodies.
    records: Vec<String>,
    /// Bodies held back to arrive late: (release time, body).
    late: Vec<(i64, Vec<u8>)>,
    next_metrics: i64,
    failed_since_metrics: Vec<i64>,
    completed_since_metrics: Vec<i64>,
}

const VM_SIZES: [(&str, i64); 4] = [
    ("STANDARD_D1_V2", 1),
    ("STANDARD_DS3_V2", 4),
    ("STANDARD_NC6", 6),
    ("STANDARD_NC24ADS_A100_V4", 24),
];
const WORKSPACE_NAMES: [&str; 6] = [
    "mlws-prod",
    "mlws-dev",
    "research-ws",
    "vision-ws",
    "nlp-ws",
    "forecast-ws",
];
const CLUSTER_NAMES: [&str; 5] = [
    "cpu-cluster",
    "gpu-nc6",
    "train-d1",
    "gpu-a100",
    "batch-ds3",
];

impl Workload {
    pub fn new(cfg: WorkloadConfig, start: i64) -> Workload {
        let mut rng = Rng(cfg.seed);
        let mut workspaces = Vec::new();
        let mut clusters = Vec::new();
        for s in 0..cfg.subscriptions {
            let sub = format!(
                "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                rng.next_u64() as u32,
                s,
                rng.below(4096),
                rng.below(4096),
                rng.next_u64() >> 16
            );
            for w in 0..cfg.workspaces_per_subscription {
                let name = WORKSPACE_NAMES
                    [(s * cfg.workspaces_per_subscription + w) % WORKSPACE_NAMES.len()];
                let name = if s * cfg.workspaces_per_subscription + w >= WORKSPACE_NAMES.len() {
                    format!("{name}-{s}")
                } else {
                    name.to_string()
                };
                // Azure sends resource ids upper-cased; Log Analytics shows them lower-cased.
                let resource_id = format!(
                    "/SUBSCRIPTIONS/{}/RESOURCEGROUPS/RG-ML-{s}/PROVIDERS/MICROSOFT.MACHINELEARNINGSERVICES/WORKSPACES/{}",
                    sub.to_uppercase(),
                    name.to_uppercase()
                );
                let ws = workspaces.len();
                workspaces.push(Workspace { resource_id });
                for c in 0..cfg.clusters_per_workspace {
                    let (vm_size, cores) = VM_SIZES[rng.below(VM_SIZES.len() as u64) as usize];
                    clusters.push(Cluster {
                        workspace: ws,
                        name: CLUSTER_NAMES[(c + w) % CLUSTER_NAMES.len()].to_string(),
                        vm_size,
                        low_priority: rng.chance(0.3),
                        max_nodes: 2 + rng.below(9) as i64,
                        cores_per_node: cores,
                        failure_rate: 0.03 + rng.unit() * 0.25,
                        current: 0,
                        target: 0,
                        unusable: 0,
                        preempted: 0,
                        queued: VecDeque::new(),
                        running: Vec::new(),
                        last_event: start - TICKS_PER_MINUTE,
                    });
                }
            }
        }
        let n = workspaces.len();
        Workload {
            cfg,
            rng,
            now: start,
            workspaces,
            clusters,
            jobs: Vec::new(),
            records: Vec::new(),
            late: Vec::new(),
            next_metrics: start,
            failed_since_metrics: vec![0; n],
            completed_since_metrics: vec![0; n],
        }
    }

    /// Event time now (ticks).
    pub fn now(&self) -> i64 {
        self.now
    }

    /// Advances the estate by `dt` ticks of event time and returns the bodies published.
    pub fn step(&mut self, dt: i64) -> Vec<Vec<u8>> {
        let end = self.now + dt;
        // One-second ticks: fine enough for job and scaling dynamics.
        while self.now < end {
            self.now = (self.now + TICKS_PER_SECOND).min(end);
            self.tick();
        }
        self.pack()
    }

    fn tick(&mut self) {
        let now = self.now;
        let per_second = self.cfg.jobs_per_cluster_minute / 60.0;
        for c in 0..self.clusters.len() {
            if self.rng.chance(per_second) {
                self.submit(c);
            }
            self.scale(c);
            self.schedule(c);
            if now - self.clusters[c].last_event >= TICKS_PER_MINUTE {
                self.cluster_event(c);
            }
        }
        self.finish_jobs();
        if now >= self.next_metrics {
            self.metrics();
            self.next_metrics = now + TICKS_PER_MINUTE;
        }
        if self.rng.chance(1.0 / 600.0) {
            self.activity();
        }
    }

    fn submit(&mut self, c: usize) {
        let id = self.jobs.len();
        let fails = self.rng.chance(self.clusters[c].failure_rate);
        let name = format!("job_{:08x}", self.rng.next_u64() as u32);
        self.jobs.push(Job {
            id: name,
            cluster: c,
            state: JobState::Queued,
            fails,
        });
        self.clusters[c].queued.push_back(id);
        self.job_event(id, "JobSubmitted", "Queued");
    }

    /// Target follows demand; current nodes approach the target one node per ~20 s.
    fn scale(&mut self, c: usize) {
        let cl = &mut self.clusters[c];
        let demand = (cl.queued.len() + cl.running.len()) as i64;
        let target = demand.min(cl.max_nodes);
        let changed = target != cl.target;
        cl.target = target;
        if cl.current != cl.target && self.rng.chance(0.05) {
            cl.current += (cl.target - cl.current).signum();
        }
        if cl.low_priority && cl.current > 0 && self.rng.chance(0.0005) {
            cl.current -= 1;
            cl.preempted += 1;
        } else if cl.preempted > 0 && self.rng.chance(0.01) {
            cl.preempted -= 1;
        }
        cl.unusable = if self.rng.chance(0.0002) {
            1
        } else if self.rng.chance(0.02) {
            0
        } else {
            cl.unusable
        };
        if changed {
            self.cluster_event(c);
        }
    }

    fn schedule(&mut self, c: usize) {
        let free = (self.clusters[c].current
            - self.clusters[c].unusable
            - self.clusters[c].running.len() as i64)
            .max(0);
        for _ in 0..free {
            let Some(job) = self.clusters[c].queued.pop_front() else {
                break;
            };
            // 1–4 minutes: with 1.5 submissions a minute a cluster then needs about four
            // nodes on average, so clusters scale up and down, idle nodes appear, and only
            // the smallest stay saturated (longer jobs queued without end on every cluster).
            let minutes = 1 + self.rng.below(4) as i64;
            self.jobs[job].state = JobState::Running {
                until: self.now + minutes * TICKS_PER_MINUTE,
            };
            self.clusters[c].running.push(job);
            self.job_event(job, "JobRunning", "Running");
        }
    }

    fn finish_jobs(&mut self) {
        for c in 0..self.clusters.len() {
            let mut i = 0;
            while i < self.clusters[c].running.len() {
                let job = self.clusters[c].running[i];
                match self.jobs[job].state {
                    JobState::Running { until } if until <= self.now => {
                        self.clusters[c].running.swap_remove(i);
                        self.jobs[job].state = JobState::Done;
                        let ws = self.clusters[c].workspace;
                        if self.jobs[job].fails {
                            self.failed_since_metrics[ws] += 1;
                            self.job_event(job, "JobFailed", "Failed");
                        } else {
                            self.completed_since_metrics[ws] += 1;
                            self.job_event(job, "JobSucceeded", "Succeeded");
                        }
                    }
                    _ => i += 1,
                }
            }
        }
        // Finished jobs are no longer needed.
        if self.jobs.len() > 100_000 {
            self.jobs.retain(|j| j.state != JobState::Done);
            for c in &mut self.clusters {
                c.queued.clear();
                c.running.clear();
            }
        }
    }

    fn time(&self) -> String {
        format_datetime(self.now + self.rng_fraction())
    }

    fn rng_fraction(&self) -> i64 {
        // Sub-second digits, so that times carry all 7 fractional digits.
        (self.now.wrapping_mul(2_654_435_761) & 0x7f_ffff) % TICKS_PER_SECOND
    }

    fn cluster_event(&mut self, c: usize) {
        self.clusters[c].last_event = self.now;
        let time = self.time();
        let string_numbers = self.rng.chance(0.2);
        let cl = &self.clusters[c];
        let ws = &self.workspaces[cl.workspace];
        let running = cl.running.len() as i64;
        let idle = (cl.current - running - cl.unusable).max(0);
        let n = |v: i64| {
            if string_numbers {
                format!("\"{v}\"")
            } else {
                v.to_string()
            }
        };
        let props = format!(
            r#"{{"ClusterName":"{}","ClusterType":"AmlCompute","VmSize":"{}","VmPriority":"{}","VmFamilyName":"standard{}Family","EventType":"{}","AllocationState":"{}","CurrentNodeCount":{},"TargetNodeCount":{},"RunningNodeCount":{},"IdleNodeCount":{},"PreparingNodeCount":0,"LeavingNodeCount":0,"UnusableNodeCount":{},"PreemptedNodeCount":"{}","MinimumNodeCount":0,"MaximumNodeCount":{},"InitialNodeCount":0,"CoreCount":{},"QuotaAllocated":"{}","QuotaUtilized":"{}","IsResizeGrow":"{}"}}"#,
            cl.name,
            cl.vm_size,
            if cl.low_priority {
                "LowPriority"
            } else {
                "Dedicated"
            },
            cl.vm_size.split('_').nth(1).unwrap_or("D"),
            if cl.target != cl.current {
                "ClusterResize"
            } else {
                "ClusterStatus"
            },
            if cl.target != cl.current {
                "Resizing"
            } else {
                "Steady"
            },
            n(cl.current),
            n(cl.target),
            n(running),
            n(idle),
            n(cl.unusable),
            cl.preempted,
            n(cl.max_nodes),
            n(cl.current * cl.cores_per_node),
            cl.max_nodes * cl.cores_per_node,
            cl.current * cl.cores_per_node,
            if cl.target > cl.current {
                "True"
            } else {
                "False"
            },
        );
        // Some exports carry `properties` as a JSON-encoded string.
        let props = if self.rng.chance(0.1) {
            serde_json::to_string(&props).unwrap_or(props)
        } else {
            props
        };
        let record = format!(
            r#"{{"time":"{time}","resourceId":"{}","category":"AmlComputeClusterEvent","operationName":"Microsoft.MachineLearningServices/workspaces/computes/clusterevent","Level":"Informational","properties":{props}}}"#,
            ws.resource_id
        );
        self.records.push(record);
    }

    fn job_event(&mut self, job: usize, event: &str, state: &str) {
        let time = self.time();
        let j = &self.jobs[job];
        let cl = &self.clusters[j.cluster];
        let ws = &self.workspaces[cl.workspace];
        let tool = ["Python", "AutoML", "Pipeline"][job % 3];
        let mut props = format!(
            r#"{{"ClusterName":"{}","ClusterId":"{}","JobId":"{}","JobName":"{}","EventType":"{event}","ExecutionState":"{state}","ToolType":"{tool}","ExperimentName":"exp-{}","WorkspaceName":"{}"}}"#,
            cl.name,
            cl.name.to_lowercase(),
            j.id,
            j.id,
            j.cluster % 4,
            ws.resource_id
                .rsplit('/')
                .next()
                .unwrap_or("")
                .to_lowercase()
        );
        if event == "JobFailed" {
            props.insert_str(
                props.len() - 1,
                r#","JobErrorMessage":"UserError: the script exited with code 1""#,
            );
        }
        self.records.push(format!(
            r#"{{"time":"{time}","resourceId":"{}","category":"AmlComputeJobEvent","operationName":"{event}","properties":{props}}}"#,
            ws.resource_id
        ));
        let status = match event {
            "JobSubmitted" => "Queued",
            "JobRunning" => "Running",
            "JobFailed" => "Failed",
            _ => "Completed",
        };
        self.records.push(format!(
            r#"{{"time":"{time}","resourceId":"{}","category":"AmlRunStatusChangedEvent","operationName":"Microsoft.MachineLearningServices/workspaces/runs/statuschange","properties":{{"RunId":"{}","Status":"{status}","ExperimentName":"exp-{}"}}}}"#,
            ws.resource_id,
            j.id,
            j.cluster % 4
        ));
    }

    fn metrics(&mut self) {
        // Platform metrics lose their dimensions in diagnostic settings: workspace totals.
        let grain = crate::time::bin(self.now, TICKS_PER_MINUTE);
        let time = format_datetime(grain);
        for (w, ws) in self.workspaces.iter().enumerate() {
            let cls: Vec<&Cluster> = self.clusters.iter().filter(|c| c.workspace == w).collect();
            let active: i64 = cls.iter().map(|c| c.running.len() as i64).sum();
            let total: i64 = cls.iter().map(|c| c.current).sum();
            let unusable: i64 = cls.iter().map(|c| c.unusable).sum();
            // Online endpoints are not simulated: a deployment fails now and then (about
            // one minute in 20 per workspace), which the alert pack watches for.
            let deploy_failed = if self.rng.chance(0.05) { 1.0 } else { 0.0 };
            let quota: f64 = {
                let alloc: i64 = cls.iter().map(|c| c.max_nodes * c.cores_per_node).sum();
                let used: i64 = cls.iter().map(|c| c.current * c.cores_per_node).sum();
                if alloc > 0 {
                    100.0 * used as f64 / alloc as f64
                } else {
                    0.0
                }
            };
            for (name, value) in [
                ("Active Nodes", active as f64),
                ("Idle Nodes", (total - active).max(0) as f64),
                ("Total Nodes", total as f64),
                ("Failed Runs", self.failed_since_metrics[w] as f64),
                ("Completed Runs", self.completed_since_metrics[w] as f64),
                ("Quota Utilization Percentage", quota),
                ("Unusable Nodes", unusable as f64),
                ("Model Deploy Failed", deploy_failed),
            ] {
                let mut r = String::new();
                let _ = write!(
                    r,
                    r#"{{"count":1,"total":{value},"minimum":{value},"maximum":{value},"average":{value},"resourceId":"{}","time":"{time}","metricName":"{name}","timeGrain":"PT1M"}}"#,
                    ws.resource_id
                );
                self.records.push(r);
            }
            self.failed_since_metrics[w] = 0;
            self.completed_since_metrics[w] = 0;
        }
    }

    fn activity(&mut self) {
        let w = self.rng.below(self.workspaces.len() as u64) as usize;
        let time = self.time();
        let id = self.workspaces[w].resource_id.to_lowercase();
        self.records.push(format!(
            r#"{{"time":"{time}","resourceId":"{id}/computes/cpu-cluster","operationName":"MICROSOFT.MACHINELEARNINGSERVICES/WORKSPACES/COMPUTES/WRITE","category":"Write","resultType":"Success","durationMs":"0","callerIpAddress":"10.0.0.4","identity":{{"claims":{{"name":"ml-admin"}}}},"properties":{{"statusCode":"OK"}}}}"#
        ));
    }

    /// Packs the pending records into bodies of 1–20 records, holds some back to arrive
    /// late, and releases the late ones that are due.
    fn pack(&mut self) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut records = std::mem::take(&mut self.records);
        // Records of different workspaces share bodies, as they do in real exports.
        let n = records.len();
        for i in (1..n).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            records.swap(i, j);
        }
        let mut it = records.into_iter().peekable();
        while it.peek().is_some() {
            let take = 1 + self.rng.below(20) as usize;
            let chunk: Vec<String> = it.by_ref().take(take).collect();
            let mut body = format!("{{\"records\":[{}]}}", chunk.join(",")).into_bytes();
            if self.rng.chance(self.cfg.broken_share) {
                body.truncate(body.len() / 2);
            }
            if self.rng.chance(self.cfg.late_share) {
                let delay = (2 + self.rng.below(7) as i64) * TICKS_PER_MINUTE;
                self.late.push((self.now + delay, body));
            } else {
                out.push(body);
            }
        }
        let now = self.now;
        let (due, keep): (Vec<_>, Vec<_>) = std::mem::take(&mut self.late)
            .into_iter()
            .partition(|(t, _)| *t <= now);
        self.late = keep;
        out.extend(due.into_iter().map(|(_, b)| b));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{Needs, ParseSink, Parser, ParserLimits, Reject, Row};
    use crate::schema::Schemas;

    struct Count {
        rows: usize,
        rejects: usize,
    }
    impl ParseSink for Count {
        fn row(&mut self, _: Row, _: &[u8]) {
            self.rows += 1;
        }
        fn reject(&mut self, _: Reject<'_>) {
            self.rejects += 1;
        }
    }

    #[test]
    fn an_hour_of_workload_parses_into_every_aml_table() {
        let start = crate::time::parse_datetime("2026-01-01T00:00:00Z")
            .unwrap()
            .0;
        let mut w = Workload::new(
            WorkloadConfig {
                broken_share: 0.0,
                ..WorkloadConfig::default()
            },
            start,
        );
        let bodies = w.step(60 * TICKS_PER_MINUTE);
        assert!(bodies.len() > 100, "{} bodies", bodies.len());
        let schemas = Schemas::embedded();
        let mut p = Parser::new(
            schemas.clone(),
            &Needs::all(&schemas),
            ParserLimits::default(),
        );
        let mut sink = Count {
            rows: 0,
            rejects: 0,
        };
        for b in &bodies {
            p.parse_body(b, None, &mut sink);
        }
        assert_eq!(sink.rejects, 0);
        for table in [
            "AmlComputeClusterEvent",
            "AmlComputeJobEvent",
            "AmlRunStatusChangedEvent",
            "AzureMetrics",
        ] {
            let id = schemas.table(table).unwrap();
            assert!(p.stats.records[id] > 10, "{table}: {}", p.stats.records[id]);
        }
        assert!(p.stats.repaired(crate::parse::RepairKind::NumberFromString) > 0);
        assert!(p.stats.repaired(crate::parse::RepairKind::PropertiesString) > 0);
    }

    #[test]
    fn platform_metrics_include_unusable_nodes_and_failed_deployments() {
        let mut w = Workload::new(WorkloadConfig::default(), 0);
        let bodies = w.step(120 * TICKS_PER_MINUTE);
        // metricName -> the values of its records, over every workspace.
        let mut values: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
        for b in &bodies {
            let Ok(v) = serde_json::from_slice::<serde_json::Value>(b) else {
                continue; // a deliberately broken body
            };
            for r in v["records"].as_array().unwrap() {
                if let Some(name) = r["metricName"].as_str() {
                    let total = r["total"].as_f64().unwrap();
                    values.entry(name.to_string()).or_default().push(total);
                }
            }
        }
        let unusable = &values["Unusable Nodes"];
        assert!(unusable.iter().all(|v| *v >= 0.0 && v.fract() == 0.0));
        let failed = &values["Model Deploy Failed"];
        let ones = failed.iter().filter(|v| **v == 1.0).count();
        assert!(failed.iter().all(|v| *v == 0.0 || *v == 1.0));
        assert!(
            ones > 0 && ones * 5 < failed.len(),
            "occasionally 1, mostly 0: {ones} of {}",
            failed.len()
        );
    }

    #[test]
    fn the_same_seed_gives_the_same_bodies() {
        let start = 0;
        let a = Workload::new(WorkloadConfig::default(), start).step(10 * TICKS_PER_MINUTE);
        let b = Workload::new(WorkloadConfig::default(), start).step(10 * TICKS_PER_MINUTE);
        assert_eq!(a, b);
    }
}

#[cfg(test)]
mod pack_tests {
    use super::*;
    use crate::pipeline::Engine;
    use crate::schema::Schemas;
    use crate::source::{Event, Position};

    #[test]
    fn the_default_pack_has_something_to_show_for_every_query() {
        let schemas = Schemas::embedded();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let settings =
            crate::config::load(&root.join("deploy/config/replay.toml"), &schemas).unwrap();
        let mut engine = Engine::new(schemas, settings.queries.clone(), settings.engine.clone());
        let start = crate::time::parse_datetime("2026-01-01T00:00:00Z")
            .unwrap()
            .0;
        let mut w = Workload::new(WorkloadConfig::default(), start);
        for (i, body) in w.step(90 * TICKS_PER_MINUTE).into_iter().enumerate() {
            let position = Position {
                partition: "0".into(),
                offset: i as i64,
                sequence_number: i as i64,
                enqueued_time: None,
            };
            engine.ingest("demo", &Event::new(body, position));
        }
        engine.end_batch().unwrap();
        for (spec, table) in engine.exports() {
            assert!(!table.rows.is_empty(), "{} exports nothing", spec.name);
            if &*spec.name == "aml_job_failures_1h" {
                let failed = table
                    .columns
                    .iter()
                    .position(|c| &*c.name == "failedJobs")
                    .unwrap();
                let total: i64 = table
                    .rows
                    .iter()
                    .map(|r| match r[failed] {
                        crate::value::Value::Long(v) => v,
                        _ => 0,
                    })
                    .sum();
                assert!(total > 0, "some jobs fail");
            }
        }
    }
}
