//! The admin HTTP server's routes. Query state is owned by the engine task; a render asks
//! it for a copy of the results over a channel (bounded, with a timeout) instead of sharing
//! a lock, and writes the answer elsewhere (`render.rs`), once for all the requests that
//! want it at about the same time. Connections are capped and timed out by `server.rs`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::sync::{mpsc, oneshot, OnceCell};
use tokio::time::Instant;

use super::auth::{self, BasicAuth};
use super::events::AdminMetrics;
use super::render::{self, Body, Failure, Shared};
use super::tls::Reloading;
use super::{format, prom, server, AdminSettings};
use crate::pipeline::QuerySpec;
use crate::shutdown::Shutdown;
use crate::telemetry::Metrics;
use crate::window::ResultTable;

/// Every query with its result.
pub type Snapshot = Vec<(QuerySpec, ResultTable)>;

/// What a handler can ask the engine task.
pub enum Request {
    /// Every query's result as metrics export it (last closed bin).
    Exports(oneshot::Sender<Snapshot>),
    /// Every query's full current result.
    Results(oneshot::Sender<Snapshot>),
}

#[derive(Clone)]
pub struct AdminState {
    pub requests: mpsc::Sender<Request>,
    pub metrics: Arc<Metrics>,
    /// Set once the configuration is loaded and the sources started.
    pub ready: Arc<AtomicBool>,
    /// The delivering sinks' health, for `/readyz?verbose`.
    pub sinks: Vec<(String, Arc<crate::forward::buffered::Health>)>,
    /// The server's own metrics (registered with `metrics`).
    pub admin: Arc<AdminMetrics>,
    renders: Arc<Renders>,
    /// Basic authentication, when users are configured.
    auth: Option<Arc<BasicAuth>>,
    query_api: bool,
}

/// The renders requests share.
struct Renders {
    metrics: Shared<Body>,
    results: Shared<Results>,
}

/// A copy of every query's full result, and its JSON written once per answer asked for.
struct Results {
    snapshot: Snapshot,
    /// `/api/v1/queries`.
    all: OnceCell<Arc<Body>>,
    /// `/api/v1/queries/{name}`, in the snapshot's order.
    each: Vec<OnceCell<Arc<Body>>>,
}

impl AdminState {
    /// Registers the server's metrics with `metrics`' registry.
    pub fn new(
        requests: mpsc::Sender<Request>,
        metrics: Arc<Metrics>,
        ready: Arc<AtomicBool>,
        sinks: Vec<(String, Arc<crate::forward::buffered::Health>)>,
        settings: &AdminSettings,
    ) -> prometheus::Result<AdminState> {
        let admin = Arc::new(AdminMetrics::register(&metrics.registry)?);
        let auth = (!settings.basic_auth_users.is_empty())
            .then(|| Arc::new(BasicAuth::new(&settings.basic_auth_users, admin.clone())));
        Ok(AdminState {
            requests,
            metrics,
            ready,
            sinks,
            admin,
            auth,
            query_api: settings.query_api,
            renders: Arc::new(Renders {
                // Also reused for 4 times as long as it took: renders take at most a quarter
                // of the engine's time however many scrape (1 M series: ~3 s each).
                metrics: Shared::new(settings.metrics_max_age, METRICS_SPACING),
                // Only requests that overlap share: an API answer is never older than the
                // request (a client that just sent events expects to see them).
                results: Shared::new(Duration::ZERO, 0),
            }),
        })
    }
}

/// A `/metrics` render is reused for at least this many times its duration.
const METRICS_SPACING: u32 = 4;

/// How long a render waits for the engine (which answers between batches).
const ENGINE_TIMEOUT: Duration = Duration::from_secs(10);

pub fn router(state: AdminState) -> Router {
    let mut router = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz));
    if state.query_api {
        router = router
            .route("/api/v1/queries", get(queries))
            .route("/api/v1/queries/{name}", get(query));
    }
    let auth = state.auth.clone();
    let router = router.with_state(state);
    match auth {
        Some(auth) => router.layer(axum::middleware::from_fn_with_state(auth, auth::require)),
        None => router,
    }
}

/// Serves until shutdown, then drains within `limits.drain_timeout`; over TLS with `tls`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    limits: server::Limits,
    tls: Option<Arc<Reloading>>,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    let admin = state.admin.clone();
    server::serve(listener, router(state), limits, tls, admin, shutdown).await
}

/// Asks the engine for a copy of the results.
async fn ask(
    requests: &mpsc::Sender<Request>,
    make: fn(oneshot::Sender<Snapshot>) -> Request,
) -> Result<Snapshot, Failure> {
    let (tx, rx) = oneshot::channel();
    let asked = async {
        requests
            .send(make(tx))
            .await
            .map_err(|_| Failure::EngineGone)?;
        rx.await.map_err(|_| Failure::EngineGone)
    };
    tokio::time::timeout(ENGINE_TIMEOUT, asked)
        .await
        .unwrap_or(Err(Failure::EngineTimeout))
}

async fn metrics(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let gzip = render::accepts_gzip(&headers);
    let s = state.clone();
    let body = match state
        .renders
        .metrics
        .get(move |previous| render_metrics(s, previous))
        .await
    {
        Ok(b) => b,
        Err(f) => return f.into_response(),
    };
    let response = body.respond(gzip).await;
    if let Some(n) = body.gzip_len() {
        state
            .admin
            .body_bytes
            .with_label_values(&["gzip"])
            .set(n as f64);
    }
    response
}

/// The engine's copy of the exported results, then the text on a blocking thread (in the
/// previous body's buffer when it is free): hubwatch's own metrics, then the query gauges.
async fn render_metrics(state: AdminState, previous: Option<Body>) -> Result<Body, Failure> {
    let started = Instant::now();
    let exports = ask(&state.requests, Request::Exports).await?;
    state.admin.rendering("metrics");
    let (text, spare) = previous.map(Body::into_buffers).unwrap_or_default();
    let registry = state.metrics.clone();
    let text = tokio::task::spawn_blocking(move || -> Result<Vec<u8>, Failure> {
        let mut text = String::from_utf8(text.unwrap_or_default()).unwrap_or_default();
        prometheus::TextEncoder::new()
            .encode_utf8(&registry.registry.gather(), &mut text)
            .map_err(|e| Failure::Internal(format!("encoding metrics: {e}")))?;
        for (spec, table) in &exports {
            prom::render_query(&mut text, spec, table);
        }
        Ok(text.into_bytes())
    })
    .await
    .map_err(|e| Failure::Internal(format!("rendering metrics: {e}")))??;
    let body = Body::new(render::PROMETHEUS_TEXT, text, spare);
    state
        .admin
        .rendered("metrics", started.elapsed().as_secs_f64());
    state
        .admin
        .body_bytes
        .with_label_values(&["identity"])
        .set(body.len() as f64);
    Ok(body)
}

/// Ready once started (and, with global results, once the first copies are in). With
/// `?verbose`, one line per check, as Kubernetes components write them — including each
/// sink's delivery. A sink that cannot deliver does not make the replica unready: its rows
/// wait in its buffer, and the metrics this replica serves stay right.
async fn readyz(
    State(state): State<AdminState>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let ready = state.ready.load(Ordering::Acquire);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    if !query.is_some_and(|q| {
        q.split('&')
            .any(|p| p == "verbose" || p.starts_with("verbose="))
    }) {
        return (status, if ready { "ready\n" } else { "starting\n" }).into_response();
    }
    use crate::forward::buffered::Status;
    let mut text = format!("[{}]started\n", if ready { "+" } else { "-" });
    for (name, health) in &state.sinks {
        let waiting = health.oldest_unacked_secs();
        match health.status() {
            Status::Ok => text.push_str(&format!(
                "[+]sink {name}: ok (oldest undelivered {waiting:.1}s)\n"
            )),
            Status::Failing { for_secs, error } => text.push_str(&format!(
                "[+]sink {name}: failing for {for_secs:.1}s, rows wait in its buffer (oldest {waiting:.1}s): {error}\n"
            )),
        }
    }
    text.push_str(if ready {
        "readyz check passed\n"
    } else {
        "readyz check failed\n"
    });
    (status, text).into_response()
}

/// Every query's full result: the engine's copy, shared like the metrics'.
async fn results(state: &AdminState) -> Result<Arc<Results>, Failure> {
    let s = state.clone();
    state
        .renders
        .results
        .get(move |_| async move {
            let started = Instant::now();
            let snapshot = ask(&s.requests, Request::Results).await?;
            s.admin.rendering("queries");
            s.admin.rendered("queries", started.elapsed().as_secs_f64());
            let each = snapshot.iter().map(|_| OnceCell::new()).collect();
            Ok(Results {
                snapshot,
                all: OnceCell::new(),
                each,
            })
        })
        .await
}

/// A JSON body of `results`, written once on a blocking thread.
async fn json_body(
    results: &Arc<Results>,
    cell: &OnceCell<Arc<Body>>,
    write: impl FnOnce(&Results) -> String + Send + 'static,
) -> Result<Arc<Body>, Failure> {
    let r = results.clone();
    cell.get_or_try_init(|| async move {
        tokio::task::spawn_blocking(move || {
            Arc::new(Body::new(render::JSON, write(&r).into_bytes(), None))
        })
        .await
        .map_err(|e| Failure::Internal(format!("rendering results: {e}")))
    })
    .await
    .cloned()
}

async fn queries(State(state): State<AdminState>, headers: HeaderMap) -> Response {
    let gzip = render::accepts_gzip(&headers);
    let results = match results(&state).await {
        Ok(r) => r,
        Err(f) => return f.into_response(),
    };
    match json_body(&results, &results.all, list_json).await {
        Ok(body) => body.respond(gzip).await,
        Err(f) => f.into_response(),
    }
}

/// `[{"name", "description", "kql", "columns": [{"name", "type"}], "render", "rows": [...]},
/// ...]`, rows as `format::json` writes them; `render` is the chart of a final `render`
/// operator (`null` without one), a hint for whatever draws the result.
fn list_json(results: &Results) -> String {
    let text = |s: &str| serde_json::to_string(s).unwrap_or_default();
    let mut out = String::from("[");
    for (i, (spec, table)) in results.snapshot.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let columns: Vec<serde_json::Value> = table
            .columns
            .iter()
            .map(|c| serde_json::json!({"name": &*c.name, "type": c.ty.name()}))
            .collect();
        let render = spec.plan.render.as_deref().map_or("null".to_string(), text);
        out.push_str(&format!(
            "{{\"name\":{},\"description\":{},\"kql\":{},\"columns\":{},\"render\":{},\"rows\":{}}}",
            text(&spec.name),
            text(&spec.description),
            text(&spec.kql),
            serde_json::Value::Array(columns),
            render,
            format::json(table)
        ));
    }
    out.push(']');
    out
}

async fn query(
    State(state): State<AdminState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    let gzip = render::accepts_gzip(&headers);
    let results = match results(&state).await {
        Ok(r) => r,
        Err(f) => return f.into_response(),
    };
    let Some(i) = results.snapshot.iter().position(|(s, _)| *s.name == *name) else {
        return (StatusCode::NOT_FOUND, format!("no query named '{name}'\n")).into_response();
    };
    let body = json_body(&results, &results.each[i], move |r| {
        format::json(&r.snapshot[i].1)
    })
    .await;
    match body {
        Ok(body) => body.respond(gzip).await,
        Err(f) => f.into_response(),
    }
}
