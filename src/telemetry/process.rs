//! The standard `process_*` metrics of the Prometheus client libraries (CPU, memory, file
//! descriptors, start time), with the names, help texts and types the official clients
//! use, so dashboards and alerts written for any exporter work on hubwatch too. Read from
//! `/proc/self` at scrape time on Linux, without a new crate: the prometheus crate's own
//! collector needs its `process` feature, which pulls in `procfs`.
//!
//! Elsewhere (no `/proc`) the collector exports nothing rather than made-up values.

use std::sync::Mutex;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Gauge};

/// `AT_CLKTCK` and `AT_PAGESZ` in the auxiliary vector: what `sysconf(_SC_CLK_TCK)` and
/// `sysconf(_SC_PAGESIZE)` answer from, read here from `/proc/self/auxv` because hubwatch
/// links no libc bindings. 100 and 4096 when it cannot be read (the kernel's USER_HZ and
/// the usual page).
const AT_PAGESZ: u64 = 6;
const AT_CLKTCK: u64 = 17;

pub struct ProcessCollector {
    cpu: Counter,
    resident: Gauge,
    virtual_memory: Gauge,
    open_fds: Gauge,
    max_fds: Gauge,
    start_time: Gauge,
    descs: Vec<Desc>,
    ticks_per_second: f64,
    page_size: f64,
    /// Scrapes may run concurrently; the CPU counter only moves forward by what the kernel
    /// says was added, so reading and adding happen under one lock.
    cpu_lock: Mutex<()>,
}

impl ProcessCollector {
    pub fn new() -> ProcessCollector {
        let counter = |name: &str, help: &str| Counter::new(name, help).expect("valid metric");
        let gauge = |name: &str, help: &str| Gauge::new(name, help).expect("valid metric");
        let cpu = counter(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
        );
        let resident = gauge(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
        );
        let virtual_memory = gauge(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
        );
        let open_fds = gauge("process_open_fds", "Number of open file descriptors.");
        let max_fds = gauge(
            "process_max_fds",
            "Maximum number of open file descriptors.",
        );
        let start_time = gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
        );
        let mut descs = Vec::new();
        descs.extend(cpu.desc().into_iter().cloned());
        for g in [&resident, &virtual_memory, &open_fds, &max_fds, &start_time] {
            descs.extend(g.desc().into_iter().cloned());
        }
        let auxv = std::fs::read("/proc/self/auxv").unwrap_or_default();
        let ticks_per_second = auxv_value(&auxv, AT_CLKTCK).unwrap_or(100) as f64;
        let page_size = auxv_value(&auxv, AT_PAGESZ).unwrap_or(4096) as f64;
        // The start time never changes: read once.
        if let (Some(stat), Some(boot)) = (read_stat(), boot_time()) {
            start_time.set(boot as f64 + stat.start_ticks as f64 / ticks_per_second);
        }
        ProcessCollector {
            cpu,
            resident,
            virtual_memory,
            open_fds,
            max_fds,
            start_time,
            descs,
            ticks_per_second,
            page_size,
            cpu_lock: Mutex::new(()),
        }
    }
}

impl Default for ProcessCollector {
    fn default() -> Self {
        ProcessCollector::new()
    }
}

impl Collector for ProcessCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let Some(stat) = read_stat() else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(6);
        {
            let _one_at_a_time = self.cpu_lock.lock().unwrap_or_else(|e| e.into_inner());
            let total = (stat.utime + stat.stime) as f64 / self.ticks_per_second;
            let added = total - self.cpu.get();
            if added > 0.0 {
                self.cpu.inc_by(added);
            }
            out.extend(self.cpu.collect());
        }
        self.resident.set(stat.rss_pages as f64 * self.page_size);
        self.virtual_memory.set(stat.vsize as f64);
        out.extend(self.resident.collect());
        out.extend(self.virtual_memory.collect());
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            self.open_fds.set(dir.count() as f64);
            out.extend(self.open_fds.collect());
        }
        if let Some(max) = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|t| max_open_files(&t))
        {
            self.max_fds.set(max);
            out.extend(self.max_fds.collect());
        }
        if self.start_time.get() > 0.0 {
            out.extend(self.start_time.collect());
        }
        out
    }
}

/// The fields of `/proc/self/stat` the metrics need.
#[derive(Debug, PartialEq)]
struct Stat {
    utime: u64,
    stime: u64,
    start_ticks: u64,
    vsize: u64,
    rss_pages: i64,
}

fn read_stat() -> Option<Stat> {
    parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// `pid (comm) state ppid …`: the command name may hold spaces and parentheses, so the
/// fields are counted from the last `)`. After it, field 3 (state) is index 0; utime (14),
/// stime (15), starttime (22), vsize (23) and rss (24) follow (proc(5)).
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let at = |field: usize| f.get(field - 3).copied();
    Some(Stat {
        utime: at(14)?.parse().ok()?,
        stime: at(15)?.parse().ok()?,
        start_ticks: at(22)?.parse().ok()?,
        vsize: at(23)?.parse().ok()?,
        rss_pages: at(24)?.parse().ok()?,
    })
}

/// Boot time (Unix seconds): the `btime` line of `/proc/stat`.
fn boot_time() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The soft limit of the `Max open files` line of `/proc/self/limits`.
fn max_open_files(limits: &str) -> Option<f64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    soft.parse::<u64>().ok().map(|v| v as f64)
}

/// The value of `key` in an auxiliary vector: native-endian (key, value) pairs of the
/// pointer width.
fn auxv_value(auxv: &[u8], key: u64) -> Option<u64> {
    const W: usize = std::mem::size_of::<usize>();
    let word = |b: &[u8]| -> u64 {
        let mut a = [0u8; W];
        a.copy_from_slice(b);
        usize::from_ne_bytes(a) as u64
    };
    auxv.chunks_exact(2 * W)
        .map(|pair| (word(&pair[..W]), word(&pair[W..])))
        .take_while(|(k, _)| *k != 0)
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
        .filter(|v| *v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        // A command name with a space and a parenthesis, as a thread may name itself.
        let line = "4242 (tokio (rt) w) S 1 4242 4242 0 -1 4194560 3100 0 0 0 250 75 0 0 20 0 9 0 123456 812345344 6781 18446744073709551615 1 1 0 0 0 0 0 4096 17475 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                utime: 250,
                stime: 75,
                start_ticks: 123456,
                vsize: 812345344,
                rss_pages: 6781,
            })
        );
        assert_eq!(parse_stat("4242 (truncated"), None);
    }

    #[test]
    fn the_soft_limit_of_open_files() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max cpu time              unlimited            unlimited            seconds   \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(max_open_files(limits), Some(1024.0));
    }

    #[test]
    fn auxv_pairs_end_at_the_null_entry() {
        let mut v = Vec::new();
        for (k, val) in [
            (AT_PAGESZ, 4096u64),
            (AT_CLKTCK, 100),
            (0, 0),
            (AT_CLKTCK, 7),
        ] {
            v.extend_from_slice(&(k as usize).to_ne_bytes());
            v.extend_from_slice(&(val as usize).to_ne_bytes());
        }
        assert_eq!(auxv_value(&v, AT_CLKTCK), Some(100));
        assert_eq!(auxv_value(&v, AT_PAGESZ), Some(4096));
        assert_eq!(auxv_value(&v, 99), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_measured_with_the_standard_names() {
        use prometheus::Encoder as _;
        let r = prometheus::Registry::new();
        r.register(Box::new(ProcessCollector::new())).unwrap();
        // Burn a little CPU so the counter has something to show.
        let mut x = 0u64;
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_millis(30) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        std::hint::black_box(x);
        let mut text = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&r.gather(), &mut text)
            .unwrap();
        let text = String::from_utf8(text).unwrap();
        let value = |name: &str| -> f64 {
            text.lines()
                .find(|l| l.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} in\n{text}"))
                .rsplit(' ')
                .next()
                .unwrap()
                .parse()
                .unwrap()
        };
        for (name, kind) in [
            ("process_cpu_seconds_total", "counter"),
            ("process_resident_memory_bytes", "gauge"),
            ("process_virtual_memory_bytes", "gauge"),
            ("process_open_fds", "gauge"),
            ("process_max_fds", "gauge"),
            ("process_start_time_seconds", "gauge"),
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} {kind}\n")),
                "{name} {kind} in\n{text}"
            );
        }
        assert!(text.contains(
            "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n"
        ));
        assert!(value("process_cpu_seconds_total") > 0.0);
        // Resident memory is real and below the virtual size.
        let rss = value("process_resident_memory_bytes");
        assert!(
            rss > 1e6 && rss < value("process_virtual_memory_bytes"),
            "{rss}"
        );
        assert!(value("process_open_fds") >= 1.0);
        assert!(value("process_max_fds") >= value("process_open_fds"));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let start = value("process_start_time_seconds");
        assert!(
            start <= now + 1.0 && start > now - 24.0 * 3600.0,
            "{start} vs {now}"
        );
    }
}
