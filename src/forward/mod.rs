//! Forwarding: records sent on to the systems a security team already runs, selected by
//! KQL routes, from the same parse as the queries and under the same acknowledgement.
//!
//! - A **route** ([`route`]) is a KQL pipeline over a table — `where`, `extend`, `project`,
//!   `project-away`; no `summarize`, `take` or `sort` — naming the sinks its rows go to.
//!   `union T1, T2* | …` runs it over several tables (one compiled pipeline each), and `*`
//!   takes every record, unknown categories included ([`route::expand`]).
//! - A **sink** ([`Sink`]) takes each selected row and makes what it took durable when
//!   asked ([`Sink::sync_job`]). The file sink ([`mod@file`]) appends NDJSON. The network sinks —
//!   syslog ([`syslog`]: RFC 5424/3164 over TCP, TLS, UDP or RELP; JSON, [`cef`] or
//!   [`leef`]), Splunk HEC ([`hec`]), Elasticsearch ([`elastic`]), HTTP ([`http`]) and
//!   Kafka ([`kafka`]) — encode each row into their own disk buffer ([`buffer`]), from
//!   which a sender delivers it ([`buffered`]): a receiver that is down stalls nothing.
//! - **Delivery**: the engine flushes every sink at the end of each batch and syncs them
//!   before acknowledging (with the snapshot round that stores the window state, so one
//!   sync covers every batch of the round); a source therefore commits a position only
//!   once every route's rows before it are durable in every sink. After a crash the
//!   batches since the last commit are read again and their rows forwarded again: at least
//!   once, duplicates only from the uncommitted tail.
//! - **Never forwarded twice on purpose**: an event a partition's state already absorbed
//!   (re-read after a restart, or re-read to rebuild a query's windows), or one the source's
//!   checkpoint already covers ([`crate::source::Event::replayed`]), updates windows only.
//!
//! Format ([`mod@format`]): the Log Analytics row as one JSON object, in the route's column order
//! (datetimes `YYYY-MM-DDTHH:MM:SS.fffffffZ`, as the query API writes them; null columns
//! left out unless the route keeps them), plus a `_hubwatch` object: route, source,
//! partition, offset, sequence number, enqueued time. Or, with `output = "record"`, the
//! record as it was in its body.
//!
//! A route may also name a `summarize … by bin(TimeGenerated, …)` query instead of KQL of
//! its own: each tumbling bin's result rows go out once, when the bin closes (the engine's
//! `route_results`), with the query and bin as their origin ([`Origin::Result`]).

pub mod buffer;
pub mod buffered;
pub mod cef;
pub mod elastic;
pub mod file;
pub mod format;
pub mod hec;
pub mod http;
pub mod kafka;
pub mod leef;
pub mod route;
pub mod syslog;
pub mod template;

pub use file::FileSink;
pub use route::{check_route, Known, RouteMeta, RouteSpec};

/// One routed row, as sinks receive it: its JSON line (see [`mod@format`]) and the facts a
/// sink's own format needs.
pub struct Routed<'a> {
    /// The row as one JSON object (no newline).
    pub json: &'a [u8],
    pub route: &'a str,
    /// The record's source and position, or the query and bin of a result row.
    pub origin: Origin<'a>,
    /// `TimeGenerated` (ticks); a result row's bin start.
    pub time: i64,
    /// The row's values, in the route's column order.
    pub values: &'a [crate::value::Value],
    /// The route's columns.
    pub columns: &'a [crate::kql::plan::OutColumn],
    /// Where the columns sink formats pick are among them (found once per route).
    pub known: &'a Known,
    /// The route's settings for the sinks (index, sourcetype, …).
    pub meta: &'a RouteMeta,
    /// The row's table (a result row: its query's name).
    pub table: &'a str,
    /// The row's place among its event's rows (a result row: among its bin's rows): with
    /// the origin, it names the row for good (a document id that makes a resend a no-op).
    pub ordinal: u32,
    /// `json` is the original record (the route's `output = "record"`), not the row: it
    /// has no `_hubwatch` origin, so a format with room for it adds it.
    pub original: bool,
}

/// Where a routed row came from.
#[derive(Debug, Clone, Copy)]
pub enum Origin<'a> {
    /// A record of an event.
    Record {
        source: &'a str,
        position: &'a crate::source::Position,
    },
    /// A row of a `summarize` query's result, routed when its tumbling bin closed.
    Result {
        query: &'a str,
        /// The bin's start (ticks).
        bin: i64,
    },
}

impl Origin<'_> {
    /// The record's source, or the result's query.
    pub fn name(&self) -> &str {
        match self {
            Origin::Record { source, .. } => source,
            Origin::Result { query, .. } => query,
        }
    }
}

impl std::fmt::Display for Origin<'_> {
    /// `<source>/<partition>@<sequence number>`, or `<query>@<bin start>`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Origin::Record { source, position } => write!(
                f,
                "{source}/{}@{}",
                position.partition, position.sequence_number
            ),
            Origin::Result { query, bin } => {
                write!(f, "{query}@{}", crate::time::format_datetime(*bin))
            }
        }
    }
}

impl Routed<'_> {
    /// A name for the row that stays the same when it is sent again:
    /// `<route>:<source>:<partition>:<sequence number>:<ordinal>`, or for a result row
    /// `<route>:<query>:<bin start>:<ordinal>`.
    pub fn id(&self) -> String {
        match self.origin {
            Origin::Record { source, position } => format!(
                "{}:{source}:{}:{}:{}",
                self.route, position.partition, position.sequence_number, self.ordinal
            ),
            Origin::Result { query, bin } => format!(
                "{}:{query}:{}:{}",
                self.route,
                crate::time::format_datetime(bin),
                self.ordinal
            ),
        }
    }

    /// The value of a column by name, as text (`None`: no such column, null or empty).
    pub fn column(&self, name: &str) -> Option<std::borrow::Cow<'_, str>> {
        self.field(self.columns.iter().position(|c| &*c.name == name))
    }
}

impl<'a> Routed<'a> {
    /// The value at `at` (one of [`Known`]'s) as text; `None` when the route has no such
    /// column or the value is null or empty.
    pub fn field(&self, at: Option<usize>) -> Option<std::borrow::Cow<'a, str>> {
        use std::borrow::Cow;
        match &self.values[at?] {
            crate::value::Value::Null => None,
            crate::value::Value::Str(s) => Some(Cow::Borrowed(&**s)),
            v => Some(Cow::Owned(v.to_text())),
        }
        .filter(|t| !t.is_empty())
    }

    /// The row's `Level`, if it has one.
    pub fn level(&self) -> Option<std::borrow::Cow<'a, str>> {
        self.field(self.known.level)
    }
}

/// A Log Analytics `Level`, as the formats that carry a severity read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Critical,
    Error,
    Warning,
    Informational,
    Verbose,
}

impl Level {
    /// The row's level (any case); informational when it has none or another.
    pub fn of(level: Option<&str>) -> Level {
        let is = |name: &str| level.is_some_and(|l| l.eq_ignore_ascii_case(name));
        if is("critical") {
            Level::Critical
        } else if is("error") {
            Level::Error
        } else if is("warning") {
            Level::Warning
        } else if is("verbose") {
            Level::Verbose
        } else {
            Level::Informational
        }
    }
}

/// Makes what a sink flushed durable, on any thread ([`Sink::sync_job`]).
pub type SyncJob = Box<dyn FnOnce() -> std::io::Result<()> + Send>;

/// Where a route's rows go. Owned by the engine's thread.
pub trait Sink: Send {
    /// The sink's configured name.
    fn name(&self) -> &str;
    /// Takes one row.
    fn write(&mut self, row: &Routed<'_>) -> std::io::Result<()>;
    /// Hands everything taken so far to the operating system (the end of each batch): a
    /// network sink's sender may deliver it from then on.
    fn flush(&mut self) -> std::io::Result<()>;
    /// Makes everything flushed durable on disk, in two steps: here, on the engine's
    /// thread, what was flushed is handed to files that can be synced elsewhere; the job
    /// returned (`None`: nothing to sync) makes it durable on any thread — a commit round
    /// runs it off the engine's (an fsync of seconds of rows would stall it), without a
    /// checkpoint store it runs at once. Batches are acknowledged only after it succeeds:
    /// once per snapshot round (one sync covers many batches), or after each batch
    /// without a checkpoint store.
    fn sync_job(&mut self) -> std::io::Result<Option<SyncJob>>;
    /// Bytes waiting in the sink's disk buffer for delivery (`None`: it has none).
    fn buffered_bytes(&self) -> Option<u64> {
        None
    }
    /// How the sink's delivery is doing (`None`: it delivers nothing itself).
    fn health(&self) -> Option<std::sync::Arc<buffered::Health>> {
        None
    }
}
