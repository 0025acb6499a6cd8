//! librdkafka's callbacks for a Kafka source. They run on the consumer thread, inside
//! `poll` (and inside the consumer's close), never concurrently with the loop's own use of
//! [`Core`]; the mutex is there because librdkafka requires a `Sync` context.
//!
//! - Rebalance: before partitions are revoked, what was gathered for them and not sent is
//!   dropped (never registered, so never committed), the engine stores their window state
//!   with everything sent so far and forgets it, the batches in flight are awaited (at most
//!   `ack_wait`), the acknowledged offsets are committed, and only then does librdkafka
//!   release them. A lost assignment (the group already moved on) stores and commits
//!   nothing. Assigned partitions have their window state restored before they are
//!   assigned, and are assigned at the offset that state needs (`state::resume`): after
//!   the position it reflects, or from the oldest retained event where a query's state must
//!   be rebuilt. With a checkpoint directory the replicas share, a partition's state
//!   follows it from replica to replica (Kafka Streams' state per task); with one per
//!   replica, a new owner rebuilds it by reading the partition again. (librdkafka's
//!   default rebalance assigns first, at the group's commit; hence our own `rebalance`.)
//! - Statistics: the partitions' high watermarks, for the lag metrics.
//! - Errors and logs: counted by kind, logged through `tracing` with secrets scrubbed;
//!   refused credentials and librdkafka's fatal errors stop the source.
//! - OAUTHBEARER: an Entra ID token for `https://<namespace>/.default`; librdkafka asks for
//!   a new one before the old one expires.

use std::error::Error;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use azure_core::credentials::TokenCredential;
use rdkafka::client::{ClientContext, OAuthToken};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{Offset, TopicPartitionList};
use tokio::runtime::Handle;

use super::core::Core;
use super::KafkaSourceError;
use crate::source::amqp::scrub;
use crate::source::Ownership;
use crate::state::{Resume, Start};
use crate::telemetry::metrics::KafkaMetrics;

/// How long a rebalance waits for the engine to restore an assigned partition's window
/// state, or to store a revoked one's. Long enough for a large state; short of the group's
/// rebalance timeout (`max.poll.interval.ms`, 5 minutes).
const OWNERSHIP_WAIT: Duration = Duration::from_secs(60);
/// How long an assignment waits for the group's committed offsets.
const COMMITTED_WAIT: Duration = Duration::from_secs(10);

/// An Entra ID credential and the scope of the namespace's Kafka endpoint.
pub(super) struct TokenSource {
    pub credential: Arc<dyn TokenCredential>,
    pub scope: String,
}

pub(super) struct HubContext {
    core: Mutex<Core>,
    source: Arc<str>,
    target: String,
    secrets: Vec<String>,
    prom: KafkaMetrics,
    handle: Handle,
    ack_wait: Duration,
    token: Option<TokenSource>,
    fatal: Mutex<Option<KafkaSourceError>>,
    /// Mirrors `fatal.is_some()`: the consumer loop checks it every turn, without a lock.
    stopped: AtomicBool,
}

impl HubContext {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        core: Core,
        source: Arc<str>,
        target: String,
        secrets: Vec<String>,
        prom: KafkaMetrics,
        handle: Handle,
        ack_wait: Duration,
        token: Option<TokenSource>,
    ) -> HubContext {
        HubContext {
            core: Mutex::new(core),
            source,
            target,
            secrets,
            prom,
            handle,
            ack_wait,
            token,
            fatal: Mutex::new(None),
            stopped: AtomicBool::new(false),
        }
    }

    pub fn core(&self) -> MutexGuard<'_, Core> {
        self.core.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// What stopped the source, if anything has.
    pub fn take_fatal(&self) -> Option<KafkaSourceError> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    pub fn is_fatal(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }

    pub fn scrub(&self, text: &str) -> String {
        scrub(text, &self.secrets)
    }

    /// Counts an error by kind, logs it, and stops the source if nothing can fix it.
    pub fn record_error(&self, error: &KafkaError, reason: &str) {
        let kind = ErrorKind::of(error);
        self.prom
            .errors
            .with_label_values(&[&*self.source, kind.label()])
            .inc();
        let detail = self.scrub(&format!("{error}: {reason}"));
        match kind {
            ErrorKind::Auth | ErrorKind::Fatal => {
                let (source_name, target) = (self.source.to_string(), self.target.clone());
                let (why, error) = if kind == ErrorKind::Auth {
                    let why = "the brokers refused the credentials or access; stopping the source";
                    (
                        why,
                        KafkaSourceError::Unauthorized {
                            source_name,
                            target,
                            detail: detail.clone(),
                        },
                    )
                } else {
                    let why = "the Kafka client failed for good; stopping the source";
                    (
                        why,
                        KafkaSourceError::Fatal {
                            source_name,
                            target,
                            detail: detail.clone(),
                        },
                    )
                };
                tracing::error!(source = %self.source, target = %self.target, %detail, "{why}");
                self.set_fatal(error);
            }
            ErrorKind::Transport => {
                tracing::warn!(source = %self.source, target = %self.target, %detail,
                    "Kafka connection trouble; the client reconnects by itself")
            }
            ErrorKind::Other => {
                tracing::warn!(source = %self.source, target = %self.target, %detail, "Kafka client error")
            }
        }
    }

    fn set_fatal(&self, e: KafkaSourceError) {
        let mut fatal = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        if fatal.is_none() {
            *fatal = Some(e);
            self.stopped.store(true, Ordering::Release);
        }
    }

    fn revoke(&self, consumer: &BaseConsumer<HubContext>, tpl: &TopicPartitionList) {
        let lost = consumer.assignment_lost();
        let kind = if lost { "lost" } else { "revoke" };
        self.prom
            .rebalances
            .with_label_values(&[&*self.source, kind])
            .inc();
        let mut core = self.core();
        let keys = core.keys_of(tpl);
        core.drop_unsent(&keys);
        if lost {
            tracing::warn!(source = %self.source, partitions = ?keys,
                "partitions were lost to the group (this replica was too slow or cut off); \
                 their uncommitted events will be read again by their new owner");
            // Their state is not stored: the new owner may already have stored newer.
            core.change_ownership(
                &self.handle,
                Ownership::Discard(keys.clone()),
                OWNERSHIP_WAIT,
            );
        } else {
            // The engine stores the partitions' window state with everything sent so far
            // (which acknowledges those batches), and forgets it; then the offsets that
            // state reflects can be committed for the next owner.
            if !core.change_ownership(
                &self.handle,
                Ownership::Release(keys.clone()),
                OWNERSHIP_WAIT,
            ) {
                tracing::warn!(source = %self.source, partitions = ?keys,
                    "the window state of revoked partitions was not stored in time; \
                     their next owner starts from an older snapshot and re-reads from the last commit");
            }
            let settled = core.settle(&self.handle, Some(&keys), Instant::now() + self.ack_wait);
            if !settled {
                tracing::warn!(source = %self.source, partitions = ?keys, wait = ?self.ack_wait,
                    "batches of revoked partitions were still in the pipeline; \
                     their events will be read again by the partitions' next owner");
            }
            match core.commit(consumer, Some(&keys)) {
                Ok(n) => {
                    tracing::debug!(source = %self.source, committed = n, "committed before release")
                }
                Err(e) => tracing::warn!(source = %self.source, error = %self.scrub(&e),
                    "committing revoked partitions failed; their next owner re-reads from the last commit"),
            }
        }
        core.release(&keys);
        tracing::info!(source = %self.source, partitions = ?keys, lost, "partitions released");
    }
}

impl ClientContext for HubContext {
    const ENABLE_REFRESH_OAUTH_TOKEN: bool = true;

    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        let msg = self.scrub(log_message);
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(source = %self.source, fac, "librdkafka: {msg}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(source = %self.source, fac, "librdkafka: {msg}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(source = %self.source, fac, "librdkafka: {msg}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(source = %self.source, fac, "librdkafka: {msg}")
            }
        }
    }

    fn stats(&self, statistics: Statistics) {
        let mut core = self.core();
        for (topic, t) in &statistics.topics {
            for (partition, p) in &t.partitions {
                if *partition >= 0 {
                    core.set_statistics(topic, *partition, p.hi_offset, p.committed_offset);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.record_error(&error, reason);
    }

    fn generate_oauth_token(
        &self,
        _oauthbearer_config: Option<&str>,
    ) -> Result<OAuthToken, Box<dyn Error>> {
        let Some(ts) = &self.token else {
            return Err(
                "OAUTHBEARER needs an Entra ID source (auth = an Entra ID credential)".into(),
            );
        };
        let scopes = [ts.scope.as_str()];
        let token = self
            .handle
            .block_on(async { ts.credential.get_token(&scopes, None).await })
            .map_err(|e| format!("getting an Entra ID token for {}: {e}", ts.scope))?;
        let lifetime_ms = (token.expires_on.unix_timestamp_nanos() / 1_000_000) as i64;
        Ok(OAuthToken {
            token: token.token.secret().to_string(),
            principal_name: "hubwatch".to_string(),
            lifetime_ms,
        })
    }
}

impl ConsumerContext for HubContext {
    /// librdkafka's rebalance, taken over from the default so that assigned partitions get
    /// the offsets their restored window state needs before they are assigned: the
    /// default assigns first, and would start them from the group's commit.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.assign(consumer, tpl);
                let assigned = if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                };
                if let Err(e) = assigned {
                    self.record_error(&e, "assigning partitions");
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.revoke(consumer, tpl);
                self.unassign(consumer, tpl, cooperative);
            }
            other => {
                self.prom
                    .rebalances
                    .with_label_values(&[&*self.source, "error"])
                    .inc();
                self.record_error(&KafkaError::Rebalance(other.into()), "rebalance");
                self.unassign(consumer, tpl, cooperative);
            }
        }
    }
}

impl HubContext {
    /// Assigned partitions: their window state is restored before any of their events is
    /// read, and each gets the offset that state needs (`state::resume`): right after the
    /// oldest position its queries' state reflects, from the oldest retained event where
    /// some query's state must be rebuilt (a query added or changed, a committed partition
    /// without a snapshot), or the group's commit where no state is kept.
    fn assign(&self, consumer: &BaseConsumer<HubContext>, tpl: &mut TopicPartitionList) {
        self.prom
            .rebalances
            .with_label_values(&[&*self.source, "assign"])
            .inc();
        let mut core = self.core();
        core.assign(tpl);
        let keys = core.keys_of(tpl);
        if keys.is_empty() {
            return;
        }
        let Some(resume) = core.acquire(&self.handle, keys.clone(), OWNERSHIP_WAIT) else {
            // Reading them without their state would count them from the commit on and
            // then store that partial state over the good snapshot. They are assigned (the
            // group's protocol goes on) and the source stops before reading them.
            drop(core);
            self.set_fatal(KafkaSourceError::Fatal {
                source_name: self.source.to_string(),
                target: self.target.clone(),
                detail: format!(
                    "the window state of the assigned partitions {keys:?} was not restored within {OWNERSHIP_WAIT:?}"
                ),
            });
            return;
        };
        drop(core);
        let committed = self.committed(consumer, tpl, &resume);
        // What lies before a commit was handled in full before it was made (forwarded,
        // dead-lettered): read again from the oldest event, it only rebuilds windows.
        self.core().seed_commits(&committed);
        let mut starts = Vec::with_capacity(keys.len());
        let elements: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        for (topic, partition) in elements {
            let key = format!("{topic}/{partition}");
            let start = resume.start(&self.source, &key, committed.iter().any(|(k, _)| *k == key));
            let offset = match &start {
                Start::Own => None,
                Start::After(cp) => Some(Offset::Offset(cp.offset + 1)),
                Start::Oldest => Some(Offset::Beginning),
            };
            if let Some(offset) = offset {
                if let Err(e) = tpl.set_partition_offset(&topic, partition, offset) {
                    self.record_error(&e, "setting the offset of an assigned partition");
                }
            }
            starts.push(format!("{key} {}", describe(&start)));
        }
        tracing::info!(source = %self.source, partitions = ?starts, "partitions assigned");
    }

    /// The assigned partitions whose start depends on the group having a commit for them
    /// (state is kept, and none was restored), that have one, with the offset it names.
    /// Asked of the group only then; if it cannot answer, they start from its commit
    /// without their history.
    fn committed(
        &self,
        consumer: &BaseConsumer<HubContext>,
        tpl: &TopicPartitionList,
        resume: &Resume,
    ) -> Vec<(String, i64)> {
        let mut ask = TopicPartitionList::new();
        for e in tpl.elements() {
            if resume.needs_checkpoint(&self.source, &format!("{}/{}", e.topic(), e.partition())) {
                ask.add_partition(e.topic(), e.partition());
            }
        }
        if ask.count() == 0 {
            return Vec::new();
        }
        match consumer.committed_offsets(ask, COMMITTED_WAIT) {
            Ok(got) => got
                .elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    Offset::Offset(o) if o >= 0 => {
                        Some((format!("{}/{}", e.topic(), e.partition()), o))
                    }
                    _ => None,
                })
                .collect(),
            Err(e) => {
                tracing::warn!(source = %self.source, error = %self.scrub(&e.to_string()),
                    "asking the group for its commits failed; partitions without window state \
                     start from the commit, and their windows lack what came before it");
                Vec::new()
            }
        }
    }

    fn unassign(
        &self,
        consumer: &BaseConsumer<HubContext>,
        tpl: &TopicPartitionList,
        cooperative: bool,
    ) {
        let unassigned = if cooperative {
            consumer.incremental_unassign(tpl)
        } else {
            consumer.unassign()
        };
        if let Err(e) = unassigned {
            self.record_error(&e, "unassigning partitions");
        }
    }
}

/// How a partition starts, for the log.
fn describe(start: &Start) -> String {
    match start {
        Start::Own => "from the group's commit".to_string(),
        Start::After(cp) => format!("after offset {} (its window state)", cp.offset),
        Start::Oldest => "from the oldest retained event (rebuilding window state)".to_string(),
    }
}

/// Kinds of client errors, the `kind` label of `hubwatch_kafka_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ErrorKind {
    Transport,
    Auth,
    Fatal,
    Other,
}

impl ErrorKind {
    pub fn of(error: &KafkaError) -> ErrorKind {
        use RDKafkaErrorCode as C;
        match error.rdkafka_error_code() {
            Some(
                C::Authentication
                | C::SaslAuthenticationFailed
                | C::TopicAuthorizationFailed
                | C::GroupAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::UnsupportedSASLMechanism
                | C::IllegalSASLState,
            ) => ErrorKind::Auth,
            Some(C::Fatal) => ErrorKind::Fatal,
            Some(
                C::BrokerTransportFailure
                | C::AllBrokersDown
                | C::Resolve
                | C::MessageTimedOut
                | C::RequestTimedOut
                | C::NetworkException
                | C::OperationTimedOut
                | C::TimedOutQueue,
            ) => ErrorKind::Transport,
            _ => ErrorKind::Other,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Transport => "transport",
            ErrorKind::Auth => "auth",
            ErrorKind::Fatal => "fatal",
            ErrorKind::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_classified_for_the_metric_and_for_stopping() {
        let k = |c| ErrorKind::of(&KafkaError::Global(c));
        assert_eq!(
            k(RDKafkaErrorCode::SaslAuthenticationFailed),
            ErrorKind::Auth
        );
        assert_eq!(k(RDKafkaErrorCode::Authentication), ErrorKind::Auth);
        assert_eq!(
            k(RDKafkaErrorCode::TopicAuthorizationFailed),
            ErrorKind::Auth
        );
        assert_eq!(k(RDKafkaErrorCode::AllBrokersDown), ErrorKind::Transport);
        assert_eq!(
            k(RDKafkaErrorCode::BrokerTransportFailure),
            ErrorKind::Transport
        );
        assert_eq!(k(RDKafkaErrorCode::Fatal), ErrorKind::Fatal);
        assert_eq!(
            k(RDKafkaErrorCode::UnknownTopicOrPartition),
            ErrorKind::Other
        );
        assert_eq!(
            ErrorKind::of(&KafkaError::MessageConsumption(
                RDKafkaErrorCode::BrokerTransportFailure
            )),
            ErrorKind::Transport
        );
    }
}
