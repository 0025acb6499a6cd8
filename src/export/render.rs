//! Renders shared between requests, so that the cost of `/metrics` and the query API does
//! not grow with the number of clients.
//!
//! The engine owns the query state; a render asks it for a copy of the results (the part
//! that holds the engine: merging the partitions, about 3 s at 1 M series), then writes the
//! text on a blocking thread, away from the engine and from the runtime's workers (which
//! keep answering `/healthz`). [`Shared`] runs one render at a time, and a request takes the
//! result of a render that started at most `max_age` before it arrived (with `max_age` 0:
//! one that started after it arrived, so an answer is never older than its request).
//! Requests that arrive while a render runs wait for it, and then share the next one: a
//! burst of any size costs at most two renders. `/metrics` also reuses a render for four
//! times as long as it took, so that renders take at most a quarter of the engine's time
//! however many scrape. Memory holds one rendered body instead of one per scrape, and the
//! next render writes into the previous body's buffers when no response holds them any
//! more. A [`Body`] is gzipped once, on the first request that accepts gzip.

use std::future::Future;
use std::io::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Why an answer could not be rendered. Shared like the answers: the requests that waited
/// for a failed render get its failure, not a render each.
#[derive(Debug, Clone)]
pub enum Failure {
    /// The engine has stopped (shutdown, or it failed).
    EngineGone,
    /// The engine did not answer within the time allowed (busy with a long batch).
    EngineTimeout,
    Internal(String),
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        match self {
            Failure::EngineGone => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the engine is not running\n",
            )
                .into_response(),
            Failure::EngineTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "the engine did not answer in time\n",
            )
                .into_response(),
            Failure::Internal(e) => {
                (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()
            }
        }
    }
}

/// One render at a time, shared by the requests that arrive up to `max_age` after it started
/// (and, with `max_age` 0, by those that wait for it to start).
pub struct Shared<T> {
    max_age: Duration,
    /// With `spacing` n > 0, a render is also reused until n times its own duration has
    /// passed since it started: however many clients ask, renders then take at most 1/n of
    /// the time (and of the engine's). For answers that may lag (metrics), not the API.
    spacing: u32,
    // An async mutex, held while the render runs: waiting for it is the point. The render
    // itself runs in a task of its own, so a client that hangs up does not cancel it for
    // the others; the next holder of the lock awaits the same task.
    slot: tokio::sync::Mutex<Slot<T>>,
}

struct Slot<T> {
    /// The last render: when it started, how long it took, and what it gave.
    last: Option<(Instant, Duration, Result<Arc<T>, Failure>)>,
    /// The render under way, and when it started.
    running: Option<(Instant, JoinHandle<Result<T, Failure>>)>,
}

impl<T: Send + Sync + 'static> Shared<T> {
    pub fn new(max_age: Duration, spacing: u32) -> Shared<T> {
        Shared {
            max_age,
            spacing,
            slot: tokio::sync::Mutex::new(Slot {
                last: None,
                running: None,
            }),
        }
    }

    /// The result of a render that started at most `max_age` (or `spacing` times its
    /// duration) before this call, waiting for it if it runs; otherwise a new one, started by
    /// `render` with the previous value when nothing holds it any more (to reuse its
    /// buffers).
    pub async fn get<F, Fut>(&self, render: F) -> Result<Arc<T>, Failure>
    where
        F: FnOnce(Option<T>) -> Fut,
        Fut: Future<Output = Result<T, Failure>> + Send + 'static,
    {
        let asked = Instant::now();
        let fresh = |started: Instant, took: Duration, result: &Result<Arc<T>, Failure>| {
            let spaced = match result {
                Ok(_) => took * self.spacing,
                // A failure is not kept longer than `max_age`: the engine may be back.
                Err(_) => Duration::ZERO,
            };
            started + self.max_age.max(spaced) >= asked
        };
        let mut slot = self.slot.lock().await;
        if let Some((started, took, result)) = &slot.last {
            if fresh(*started, *took, result) {
                return result.clone();
            }
        }
        // A render under way that is too old is still awaited: the next one starts after it
        // (and is shared by everyone who waited meanwhile).
        if let Some((started, running)) = slot.running.as_mut() {
            let started = *started;
            let result = finished(running.await);
            let took = started.elapsed();
            slot.running = None;
            slot.last = Some((started, took, result.clone()));
            if fresh(started, took, &result) {
                return result;
            }
        }
        let previous = match slot.last.take() {
            Some((_, _, Ok(last))) => Arc::try_unwrap(last).ok(),
            _ => None,
        };
        let started = Instant::now();
        let running = &mut slot
            .running
            .insert((started, tokio::spawn(render(previous))))
            .1;
        let result = finished(running.await);
        slot.running = None;
        slot.last = Some((started, started.elapsed(), result.clone()));
        result
    }
}

fn finished<T>(
    joined: Result<Result<T, Failure>, tokio::task::JoinError>,
) -> Result<Arc<T>, Failure> {
    match joined {
        Ok(r) => r.map(Arc::new),
        Err(e) => Err(Failure::Internal(format!("rendering failed: {e}"))),
    }
}

/// A rendered answer: its text, and the same gzipped once a client asks for it.
pub struct Body {
    content_type: &'static str,
    plain: Bytes,
    gzip: OnceCell<Bytes>,
    /// A buffer to gzip into (the previous body's).
    spare: std::sync::Mutex<Option<Vec<u8>>>,
}

pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
pub const JSON: &str = "application/json";

impl Body {
    pub fn new(content_type: &'static str, plain: Vec<u8>, spare: Option<Vec<u8>>) -> Body {
        Body {
            content_type,
            plain: Bytes::from(plain),
            gzip: OnceCell::new(),
            spare: std::sync::Mutex::new(spare),
        }
    }

    pub fn len(&self) -> usize {
        self.plain.len()
    }

    pub fn is_empty(&self) -> bool {
        self.plain.is_empty()
    }

    /// The size gzipped, once some client asked for it.
    pub fn gzip_len(&self) -> Option<usize> {
        self.gzip.get().map(Bytes::len)
    }

    /// Its buffers for the next render, if no response still holds them: (text, gzip).
    pub fn into_buffers(self) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
        let reclaim = |b: Bytes| -> Option<Vec<u8>> {
            let mut v: Vec<u8> = b.try_into_mut().ok()?.into();
            v.clear();
            Some(v)
        };
        let spare = self.spare.into_inner().unwrap_or_else(|p| p.into_inner());
        let gzip = self.gzip.into_inner().and_then(reclaim).or(spare);
        (reclaim(self.plain), gzip)
    }

    /// The response: gzipped when `gzip`.
    pub async fn respond(self: &Arc<Self>, gzip: bool) -> Response {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(self.content_type),
        );
        headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
        if !gzip {
            return (headers, self.plain.clone()).into_response();
        }
        let body = self.clone();
        let zipped = self
            .gzip
            .get_or_try_init(|| async move {
                tokio::task::spawn_blocking(move || body.compress()).await
            })
            .await;
        match zipped {
            Ok(z) => {
                headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
                (headers, z.clone()).into_response()
            }
            Err(e) => Failure::Internal(format!("compressing: {e}")).into_response(),
        }
    }

    fn compress(&self) -> Bytes {
        let mut out = self
            .spare
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .unwrap_or_default();
        out.clear();
        out.reserve(self.plain.len() / 8);
        // Level 1: metrics text compresses about 10x even so, at several times the speed
        // of the default level.
        let mut z = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
        // Writing into a Vec cannot fail.
        let _ = z.write_all(&self.plain);
        Bytes::from(z.finish().unwrap_or_default())
    }
}

/// Whether an `Accept-Encoding` header admits gzip (`gzip` or `*`, with a q-value above 0).
pub fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .filter_map(|q| q.trim().parse::<f32>().ok())
                .next()
                .unwrap_or(1.0);
            (coding.eq_ignore_ascii_case("gzip") || coding == "*") && q > 0.0
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn gzip_is_accepted_as_clients_write_it() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            m
        };
        assert!(accepts_gzip(&h("gzip")));
        assert!(accepts_gzip(&h("identity, GZIP")));
        assert!(accepts_gzip(&h("br;q=1.0, gzip;q=0.8, *;q=0.1")));
        assert!(accepts_gzip(&h("*")));
        assert!(!accepts_gzip(&h("gzip;q=0")));
        assert!(!accepts_gzip(&h("identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }

    #[tokio::test]
    async fn concurrent_requests_share_one_render() {
        let shared = Arc::new(Shared::<usize>::new(Duration::ZERO, 0));
        let renders = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (shared, renders) = (shared.clone(), renders.clone());
            tasks.push(tokio::spawn(async move {
                shared
                    .get(|_| async move {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        Ok(renders.fetch_add(1, Ordering::SeqCst))
                    })
                    .await
            }));
        }
        // The first render, or the one after it for those that came while it ran.
        for t in tasks {
            assert!(*t.await.unwrap().unwrap() <= 1);
        }
        assert!(renders.load(Ordering::SeqCst) <= 2);
        // Later requests (max_age 0) get a new render, given the old value to reuse.
        let again = shared
            .get(|previous| async move { Ok(previous.map_or(99, |p| p + 10)) })
            .await
            .unwrap();
        assert!(*again >= 10);
    }

    #[tokio::test]
    async fn a_render_younger_than_max_age_is_reused_and_failures_are_shared() {
        let shared = Shared::<u32>::new(Duration::from_secs(60), 0);
        let first = shared.get(|_| async { Ok(1) }).await.unwrap();
        let second = shared.get(|_| async { Ok(2) }).await.unwrap();
        assert_eq!((*first, *second), (1, 1));
        let failing = Shared::<u32>::new(Duration::ZERO, 0);
        let r = failing.get(|_| async { Err(Failure::EngineTimeout) }).await;
        assert!(matches!(r, Err(Failure::EngineTimeout)));
    }

    #[tokio::test]
    async fn an_expensive_render_is_reused_for_spacing_times_its_duration() {
        let shared = Shared::<u32>::new(Duration::ZERO, 4);
        let slow = |n| async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            Ok(n)
        };
        assert_eq!(*shared.get(|_| slow(1)).await.unwrap(), 1);
        // 100 ms of render: reused for 400 ms from its start.
        assert_eq!(*shared.get(|_| slow(2)).await.unwrap(), 1);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(*shared.get(|_| slow(3)).await.unwrap(), 3);
        // Failures are not kept.
        let failing = Shared::<u32>::new(Duration::ZERO, 4);
        let r = failing
            .get(|_| async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(Failure::EngineGone)
            })
            .await;
        assert!(r.is_err());
        assert_eq!(*failing.get(|_| async { Ok(7) }).await.unwrap(), 7);
    }

    #[tokio::test]
    async fn a_body_is_gzipped_once_and_its_buffers_come_back() {
        let body = Arc::new(Body::new(JSON, b"{\"a\":1}".repeat(1000), None));
        let r = body.respond(true).await;
        assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
        let bytes = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&bytes[..]), &mut text)
            .unwrap();
        assert_eq!(text.as_bytes(), &body.plain[..]);
        assert!(body.gzip_len().unwrap() < body.len() / 10);
        drop(bytes);
        let (plain, gzip) = Arc::try_unwrap(body).ok().unwrap().into_buffers();
        assert!(plain.is_some_and(|v| v.is_empty() && v.capacity() >= 7000));
        assert!(gzip.is_some());
    }
}
