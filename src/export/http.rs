//! The admin HTTP server. Query state is owned by the engine task; handlers ask it for a
//! snapshot over a channel (bounded, with a timeout) instead of sharing a lock, so a scrape
//! never blocks ingestion for longer than one batch.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus::Encoder;
use tokio::sync::{mpsc, oneshot};

use super::{format, prom};
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
}

const ENGINE_TIMEOUT: Duration = Duration::from_secs(10);

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/api/v1/queries", get(queries))
        .route("/api/v1/queries/{name}", get(query))
        .with_state(state)
}

/// Serves until shutdown.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    mut shutdown: Shutdown,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await
}

async fn ask(
    state: &AdminState,
    make: fn(oneshot::Sender<Snapshot>) -> Request,
) -> Result<Snapshot, Response> {
    let (tx, rx) = oneshot::channel();
    let unavailable = || {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the engine is not running\n",
        )
            .into_response()
    };
    state
        .requests
        .send(make(tx))
        .await
        .map_err(|_| unavailable())?;
    match tokio::time::timeout(ENGINE_TIMEOUT, rx).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err(unavailable()),
        Err(_) => Err((
            StatusCode::GATEWAY_TIMEOUT,
            "the engine did not answer in time\n",
        )
            .into_response()),
    }
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let exports = match ask(&state, Request::Exports).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let mut buf = Vec::new();
    if let Err(e) =
        prometheus::TextEncoder::new().encode(&state.metrics.registry.gather(), &mut buf)
    {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}\n"),
        )
            .into_response();
    }
    let mut text = String::from_utf8(buf).unwrap_or_default();
    for (spec, table) in &exports {
        prom::render_query(&mut text, spec, table);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
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

fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn queries(State(state): State<AdminState>) -> Response {
    let results = match ask(&state, Request::Results).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let list: Vec<serde_json::Value> = results
        .iter()
        .map(|(spec, table)| {
            serde_json::json!({
                "name": &*spec.name,
                "description": spec.description,
                "kql": spec.kql,
                "columns": table.columns.iter().map(|c| serde_json::json!({"name": &*c.name, "type": c.ty.name()})).collect::<Vec<_>>(),
                "rows": format::json_rows(table),
            })
        })
        .collect();
    json_response(serde_json::Value::Array(list).to_string())
}

async fn query(State(state): State<AdminState>, Path(name): Path<String>) -> Response {
    let results = match ask(&state, Request::Results).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    match results.iter().find(|(s, _)| *s.name == *name) {
        Some((_, table)) => json_response(format::json(table)),
        None => (StatusCode::NOT_FOUND, format!("no query named '{name}'\n")).into_response(),
    }
}
