//! The admin server's own metrics (`hubwatch_admin_*`) and its named events: each `emit`
//! writes the log line and bumps the counter, so the two never drift. Registered once, when
//! the server starts, in the registry `/metrics` serves; every label value up front, so a
//! reason shows as 0 before it first happens.

use prometheus::{Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Why the server closed a connection (the `reason` label). A client closing its own
/// connection, or a request with `Connection: close`, is not counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// No request for `idle_timeout` (or a response stalled that long).
    Idle,
    /// A request's head did not arrive whole within `header_read_timeout`.
    HeaderTimeout,
    /// At the cap, to make room for a new connection: the longest-waiting one without a
    /// request in progress.
    Evicted,
    /// At shutdown: waiting for a request (closed at once), or still busy after
    /// `drain_timeout`.
    Shutdown,
    /// The TLS handshake failed (not TLS, no or a wrong client certificate, no common
    /// version) or did not finish within `header_read_timeout`.
    TlsHandshake,
}

impl Closed {
    pub const ALL: [Closed; 5] = [
        Closed::Idle,
        Closed::HeaderTimeout,
        Closed::Evicted,
        Closed::Shutdown,
        Closed::TlsHandshake,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Closed::Idle => "idle_timeout",
            Closed::HeaderTimeout => "header_timeout",
            Closed::Evicted => "evicted",
            Closed::Shutdown => "shutdown",
            Closed::TlsHandshake => "tls_handshake",
        }
    }
}

/// Why a request was refused for want of credentials (the `reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthorized {
    /// No `Authorization: Basic` header, or one that does not decode.
    Missing,
    /// An unknown user or a wrong password.
    Invalid,
}

impl Unauthorized {
    pub const ALL: [Unauthorized; 2] = [Unauthorized::Missing, Unauthorized::Invalid];

    pub fn label(self) -> &'static str {
        match self {
            Unauthorized::Missing => "missing",
            Unauthorized::Invalid => "invalid",
        }
    }
}

/// What a render produced: the `what` label.
pub const RENDERS: [&str; 2] = ["metrics", "queries"];

pub struct AdminMetrics {
    pub connections: IntGauge,
    pub closed: IntCounterVec,
    pub accept_errors: IntCounter,
    pub renders: IntCounterVec,
    pub render_seconds: GaugeVec,
    pub body_bytes: GaugeVec,
    pub max_connections: Gauge,
    pub unauthorized: IntCounterVec,
    pub tls_reloads: IntCounterVec,
    pub tls_last_reload_ok: IntGauge,
}

impl AdminMetrics {
    pub fn register(r: &Registry) -> prometheus::Result<AdminMetrics> {
        let m = AdminMetrics {
            connections: IntGauge::new(
                "hubwatch_admin_connections",
                "Admin HTTP connections open.",
            )?,
            max_connections: Gauge::new(
                "hubwatch_admin_max_connections",
                "The cap on admin HTTP connections ([export] max_connections).",
            )?,
            closed: IntCounterVec::new(
                Opts::new(
                    "hubwatch_admin_connections_closed_total",
                    "Admin connections the server closed: idle_timeout, header_timeout, evicted (at the cap, to make room), shutdown.",
                ),
                &["reason"],
            )?,
            accept_errors: IntCounter::new(
                "hubwatch_admin_accept_errors_total",
                "Connections the admin server could not accept (e.g. out of file descriptors).",
            )?,
            renders: IntCounterVec::new(
                Opts::new(
                    "hubwatch_admin_renders_total",
                    "Renders from a new copy of the engine's results (metrics: /metrics, counting the one that wrote this; queries: the query API). Requests that arrive together share one, and /metrics reuses one for metrics_max_age or 4 times its duration.",
                ),
                &["what"],
            )?,
            render_seconds: GaugeVec::new(
                Opts::new(
                    "hubwatch_admin_render_seconds",
                    "Duration of the last finished render: the engine's copy of the results, and for metrics the text.",
                ),
                &["what"],
            )?,
            body_bytes: GaugeVec::new(
                Opts::new(
                    "hubwatch_admin_body_bytes",
                    "Size of the last rendered /metrics body, uncompressed (encoding=identity) and gzipped (encoding=gzip).",
                ),
                &["encoding"],
            )?,
            unauthorized: IntCounterVec::new(
                Opts::new(
                    "hubwatch_admin_unauthorized_total",
                    "Admin requests refused with 401: missing (no Basic credentials) or invalid (unknown user or wrong password).",
                ),
                &["reason"],
            )?,
            tls_reloads: IntCounterVec::new(
                Opts::new(
                    "hubwatch_admin_tls_reloads_total",
                    "Times the admin server's TLS files changed and were loaded (ok) or could not be (failed: the files loaded before are still served).",
                ),
                &["result"],
            )?,
            tls_last_reload_ok: IntGauge::new(
                "hubwatch_admin_tls_last_reload_successful",
                "0 while the admin server's TLS files, changed, do not load (it serves the ones loaded before until they do); 1 otherwise.",
            )?,
        };
        r.register(Box::new(m.connections.clone()))?;
        r.register(Box::new(m.max_connections.clone()))?;
        r.register(Box::new(m.closed.clone()))?;
        r.register(Box::new(m.accept_errors.clone()))?;
        r.register(Box::new(m.renders.clone()))?;
        r.register(Box::new(m.render_seconds.clone()))?;
        r.register(Box::new(m.body_bytes.clone()))?;
        r.register(Box::new(m.unauthorized.clone()))?;
        r.register(Box::new(m.tls_reloads.clone()))?;
        r.register(Box::new(m.tls_last_reload_ok.clone()))?;
        m.tls_last_reload_ok.set(1);
        for u in Unauthorized::ALL {
            m.unauthorized.with_label_values(&[u.label()]);
        }
        for r in ["ok", "failed"] {
            m.tls_reloads.with_label_values(&[r]);
        }
        for c in Closed::ALL {
            m.closed.with_label_values(&[c.label()]);
        }
        for w in RENDERS {
            m.renders.with_label_values(&[w]);
            m.render_seconds.with_label_values(&[w]);
        }
        for e in ["identity", "gzip"] {
            m.body_bytes.with_label_values(&[e]);
        }
        Ok(m)
    }

    /// Metrics nobody serves (tests of the server alone).
    pub fn unregistered() -> AdminMetrics {
        AdminMetrics::register(&Registry::new()).expect("valid metrics")
    }

    /// The server closed a connection. Debug level: a flood of slow clients must not flood
    /// the log too; the counter tells.
    pub fn closed(&self, why: Closed) {
        tracing::debug!(reason = why.label(), "admin connection closed");
        self.closed.with_label_values(&[why.label()]).inc();
    }

    /// A request was refused for want of credentials.
    pub fn unauthorized(&self, why: Unauthorized) {
        tracing::debug!(reason = why.label(), "admin request unauthorized");
        self.unauthorized.with_label_values(&[why.label()]).inc();
    }

    /// The TLS files changed: what loading them did.
    pub fn tls_reloaded(&self, result: super::tls::Reload) {
        let (label, ok) = match result {
            super::tls::Reload::Ok => ("ok", 1),
            super::tls::Reload::Failed => ("failed", 0),
        };
        self.tls_reloads.with_label_values(&[label]).inc();
        self.tls_last_reload_ok.set(ok);
    }

    /// `accept` failed; the server waits a moment and goes on.
    pub fn accept_failed(&self, error: &std::io::Error) {
        tracing::warn!(%error, "admin server: accepting a connection failed; retrying shortly");
        self.accept_errors.inc();
    }

    /// The drain ran out: connections still busy are dropped.
    pub fn drain_expired(&self, busy: usize, after: std::time::Duration) {
        tracing::warn!(
            connections = busy,
            "admin server: requests still in progress {after:?} after shutdown; closing their connections"
        );
        self.closed
            .with_label_values(&[Closed::Shutdown.label()])
            .inc_by(busy as u64);
    }

    /// A render has the engine's copy (counted before its text is written, so that
    /// `/metrics` counts itself).
    pub fn rendering(&self, what: &str) {
        self.renders.with_label_values(&[what]).inc();
    }

    /// A render finished.
    pub fn rendered(&self, what: &str, seconds: f64) {
        tracing::debug!(what, seconds, "admin render");
        self.render_seconds.with_label_values(&[what]).set(seconds);
    }
}
