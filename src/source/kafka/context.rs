//! librdkafka's callbacks for a Kafka source. They run on the consumer thread, inside
//! `poll` (and inside the consumer's close), never concurrently with the loop's own use of
//! [`Core`]; the mutex is there because librdkafka requires a `Sync` context.
//!
//! - Rebalance: before partitions are revoked, what was gathered for them and not sent is
//!   dropped (never registered, so never committed), the engine stores their window state
//!   with everything sent so far and forgets it, the batches in flight are awaited (at most
//!   `ack_wait`), the acknowledged offsets are committed, and only then does librdkafka
//!   release them. A lost assignment (the group already moved on) stores and commits
//!   nothing. Assigned partitions have their window state restored before their first
//!   event is sent: with a checkpoint directory the replicas share, a partition's state
//!   follows it from replica to replica (Kafka Streams' state per task).
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
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use tokio::runtime::Handle;

use super::core::Core;
use super::KafkaSourceError;
use crate::source::amqp::scrub;
use crate::source::Ownership;
use crate::telemetry::metrics::KafkaMetrics;

/// How long a rebalance waits for the engine to restore an assigned partition's window
/// state, or to store a revoked one's. Long enough for a large state; short of the group's
/// rebalance timeout (`max.poll.interval.ms`, 5 minutes).
const OWNERSHIP_WAIT: Duration = Duration::from_secs(60);

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

    fn revoke(&self, consumer: &BaseConsumer<HubContext>, tpl: &rdkafka::TopicPartitionList) {
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
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => self.revoke(consumer, tpl),
            Rebalance::Assign(_) => {}
            Rebalance::Error(e) => {
                self.prom
                    .rebalances
                    .with_label_values(&[&*self.source, "error"])
                    .inc();
                self.record_error(e, "rebalance");
            }
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            self.prom
                .rebalances
                .with_label_values(&[&*self.source, "assign"])
                .inc();
            let mut core = self.core();
            core.assign(tpl);
            let keys = core.keys_of(tpl);
            if !keys.is_empty() {
                tracing::info!(source = %self.source, partitions = ?keys, "partitions assigned");
                // Their window state is restored before any of their events is sent.
                if !core.change_ownership(
                    &self.handle,
                    Ownership::Acquire(keys.clone()),
                    OWNERSHIP_WAIT,
                ) {
                    // Reading them without their state would count them from the commit on
                    // and then store that partial state over the good snapshot.
                    drop(core);
                    self.set_fatal(KafkaSourceError::Fatal {
                        source_name: self.source.to_string(),
                        target: self.target.clone(),
                        detail: format!(
                            "the window state of the assigned partitions {keys:?} was not restored within {OWNERSHIP_WAIT:?}"
                        ),
                    });
                }
            }
        }
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
