//! The admin server's accept loop and connections, bounded (STYLE 9) so that no client can
//! hold the process: what `axum::serve` does not do.
//!
//! - **A cap**: at most `max_connections` connections. At the cap a new connection is still
//!   accepted, and the connection that has waited longest without a request in progress
//!   (idle keep-alive, or a request head still arriving) is closed to make room; when every
//!   connection is busy answering, new ones wait in the kernel's backlog until one is done.
//!   Descriptors stay bounded (cap + 1 + the listener), and a fresh probe is served even
//!   when slow clients fill the cap.
//! - **Timeouts**, by a watchdog per connection that knows where it is in the request
//!   cycle (`Phase`): a request's head must arrive within `header_read_timeout` of its
//!   first byte (slowloris, or a half-sent request), and a connection without a request
//!   (or whose response stopped moving) is closed after `idle_timeout`.
//! - **A bounded drain**: at shutdown the listener closes, connections waiting for a
//!   request close at once, requests in progress get `drain_timeout` to finish (answered
//!   with `Connection: close`), and what is left is dropped.
//!
//! A connection's phase is shared between its IO (reads and writes), its service (request
//! begins and ends) and its watchdog, all on the connection's one task; the accept loop only
//! reads it to pick a connection to close. A `std` mutex is enough: it is held for a few
//! instructions and never across an `.await`.

use std::collections::HashMap;
use std::io;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::events::{AdminMetrics, Closed};
use super::tls::Reloading;
use crate::shutdown::Shutdown;

/// The bounds, resolved (see [`super::AdminSettings`]).
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub drain_timeout: Duration,
}

/// After a failed `accept` (e.g. out of descriptors because of something else in the
/// process), wait this long before the next: the failing connection stays in the backlog, and
/// retrying at once would spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(250);

/// How long a connection asked to make room may take to finish the response it is writing.
const CLOSING_GRACE: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` within `limits` until `shutdown`, then drains (at most
/// `drain_timeout`).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Arc<Reloading>>,
    metrics: Arc<AdminMetrics>,
    mut shutdown: Shutdown,
) -> io::Result<()> {
    let limits = Arc::new(limits);
    metrics.max_connections.set(limits.max_connections as f64);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let live: Live = Arc::default();
    let mut tasks = JoinSet::new();
    let mut next_id = 0u64;
    loop {
        while tasks.try_join_next().is_some() {}
        let stream = tokio::select! {
            biased;
            _ = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    metrics.accept_failed(&e);
                    tokio::select! {
                        _ = shutdown.wait() => break,
                        _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
            },
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                evict_one(&live);
                tokio::select! {
                    biased;
                    _ = shutdown.wait() => break,
                    p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let conn = Arc::new(Conn::new());
        let id = next_id;
        next_id += 1;
        lock(&live).insert(id, conn.clone());
        metrics.connections.inc();
        let registered = Registered {
            id,
            live: live.clone(),
            metrics: metrics.clone(),
            _slot: permit,
        };
        let (app, limits, metrics, tls) =
            (app.clone(), limits.clone(), metrics.clone(), tls.clone());
        tasks.spawn(async move {
            let _registered = registered;
            let io = Watched {
                io: stream,
                conn: conn.clone(),
            };
            match tls {
                None => drive(io, conn, app, &limits, &metrics).await,
                Some(tls) => {
                    if let Some(io) = handshake(&tls, io, &conn, &limits, &metrics).await {
                        drive(io, conn, app, &limits, &metrics).await
                    }
                }
            }
        });
    }
    // New connections are refused from here on.
    drop(listener);
    let open: Vec<Arc<Conn>> = lock(&live).values().cloned().collect();
    for conn in open {
        conn.ask(DRAIN);
    }
    let drained = tokio::time::timeout(limits.drain_timeout, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        metrics.drain_expired(tasks.len(), limits.drain_timeout);
        tasks.shutdown().await;
    }
    Ok(())
}

type Live = Arc<Mutex<HashMap<u64, Arc<Conn>>>>;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // The data stays consistent whatever panicked while holding it (plain assignments).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// At the cap: asks the connection that has waited longest without a request in progress to
/// close. None such (all busy): the accept loop waits for one to finish.
fn evict_one(live: &Live) {
    let live = lock(live);
    let oldest = live
        .values()
        .filter(|c| c.asked.load(Ordering::Acquire) == KEEP)
        .filter_map(|c| Some((c.waiting_since()?, c)))
        .min_by_key(|(since, _)| *since);
    if let Some((_, conn)) = oldest {
        conn.ask(EVICT);
    }
}

/// A connection's place in the live set and its slot under the cap, given back when its
/// task ends (or is aborted).
struct Registered {
    id: u64,
    live: Live,
    metrics: Arc<AdminMetrics>,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl Drop for Registered {
    fn drop(&mut self) {
        lock(&self.live).remove(&self.id);
        self.metrics.connections.dec();
    }
}

/// Where a connection is in its request cycle: what its watchdog times.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request: since the connection opened, the last response was handed
    /// over, or the last byte of it was written (a response that moves is not idle).
    Idle(Instant),
    /// A request's first bytes came at this instant; its head is not complete yet.
    Head(Instant),
    /// A request's head has arrived and its handler runs.
    Busy,
}

/// What the accept loop asked of a connection.
const KEEP: u8 = 0;
const EVICT: u8 = 1;
const DRAIN: u8 = 2;

struct Conn {
    state: Mutex<State>,
    asked: AtomicU8,
    /// Wakes the watchdog when its deadline moves earlier or appears, or something is asked.
    wake: Notify,
}

struct State {
    phase: Phase,
    /// A request has been answered on this connection (hyper then closes it on its own
    /// when it is idle and asked to shut down gracefully).
    served: bool,
}

impl Conn {
    fn new() -> Conn {
        Conn {
            state: Mutex::new(State {
                phase: Phase::Idle(Instant::now()),
                served: false,
            }),
            asked: AtomicU8::new(KEEP),
            wake: Notify::new(),
        }
    }

    fn ask(&self, what: u8) {
        self.asked.fetch_max(what, Ordering::AcqRel);
        self.wake.notify_one();
    }

    /// Bytes came in: the first of a request starts its header clock.
    fn read(&self) {
        let mut s = lock(&self.state);
        if let Phase::Idle(_) = s.phase {
            s.phase = Phase::Head(Instant::now());
            drop(s);
            self.wake.notify_one();
        }
    }

    /// Bytes went out: a response being written is not idle. (The deadline only moves
    /// later, so the watchdog need not wake: it checks again when its timer fires.)
    fn wrote(&self) {
        let mut s = lock(&self.state);
        if let Phase::Idle(_) = s.phase {
            s.phase = Phase::Idle(Instant::now());
        }
    }

    fn begin(&self) {
        let mut s = lock(&self.state);
        s.phase = Phase::Busy;
        s.served = true;
    }

    fn end(&self) {
        lock(&self.state).phase = Phase::Idle(Instant::now());
        self.wake.notify_one();
    }

    /// Since when it waits without a request in progress; `None` while busy.
    fn waiting_since(&self) -> Option<Instant> {
        match lock(&self.state).phase {
            Phase::Idle(t) | Phase::Head(t) => Some(t),
            Phase::Busy => None,
        }
    }

    fn deadline(&self, limits: &Limits) -> Option<(Instant, Closed)> {
        match lock(&self.state).phase {
            Phase::Idle(t) => Some((t + limits.idle_timeout, Closed::Idle)),
            Phase::Head(t) => Some((t + limits.header_read_timeout, Closed::HeaderTimeout)),
            Phase::Busy => None,
        }
    }
}

/// The TLS handshake of a new connection, within `header_read_timeout` (its bytes are the
/// first of the first request) and given up when the connection is asked to close.
async fn handshake(
    tls: &Reloading,
    io: Watched,
    conn: &Conn,
    limits: &Limits,
    metrics: &AdminMetrics,
) -> Option<tokio_rustls::server::TlsStream<Watched>> {
    let (acceptor, reload) = tls.acceptor();
    if let Some(r) = reload {
        metrics.tls_reloaded(r);
    }
    let mut accept = pin!(acceptor.accept(io));
    let deadline = Instant::now() + limits.header_read_timeout;
    loop {
        tokio::select! {
            biased;
            done = accept.as_mut() => {
                return match done {
                    Ok(stream) => Some(stream),
                    Err(error) => {
                        tracing::debug!(%error, "admin TLS handshake failed");
                        metrics.closed(Closed::TlsHandshake);
                        None
                    }
                };
            }
            _ = conn.wake.notified() => {
                match conn.asked.load(Ordering::Acquire) {
                    KEEP => {}
                    EVICT => { metrics.closed(Closed::Evicted); return None; }
                    _ => { metrics.closed(Closed::Shutdown); return None; }
                }
            }
            _ = tokio::time::sleep_until(deadline) => {
                tracing::debug!("admin TLS handshake did not finish within header_read_timeout");
                metrics.closed(Closed::TlsHandshake);
                return None;
            }
        }
    }
}

/// Serves one connection until it ends, times out, or is asked to close.
async fn drive<I>(io: I, conn: Arc<Conn>, app: Router, limits: &Limits, metrics: &AdminMetrics)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let router = TowerToHyperService::new(app);
    let on_request = conn.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        on_request.begin();
        let ends = Ends(on_request.clone());
        let answer = hyper::service::Service::call(&router, req);
        async move {
            let _ends = ends;
            answer.await
        }
    });
    let io = TokioIo::new(io);
    let mut http = hyper::server::conn::http1::Builder::new();
    // The watchdog below times heads; hyper's own timer would need one of hyper's `Timer`s
    // and could not tell idle from slow.
    http.header_read_timeout(None);
    let mut http = pin!(http.serve_connection(io, service));
    // Asked to close (evicted, or shutdown), and hyper told to finish: the answer under
    // way is completed; a response being written after one gets until `force`.
    let mut closing = false;
    let mut force: Option<Instant> = None;
    loop {
        let deadline = match (conn.deadline(limits), force) {
            (Some((at, _)), Some(by)) => Some(at.min(by)),
            (d, by) => d.map(|d| d.0).or(by),
        };
        tokio::select! {
            biased;
            result = http.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%error, "admin connection failed");
                }
                return;
            }
            _ = conn.wake.notified() => {}
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {}
        }
        let now = Instant::now();
        if force.is_some_and(|by| by <= now) {
            return;
        }
        let asked = conn.asked.load(Ordering::Acquire);
        if asked != KEEP && !closing {
            closing = true;
            let why = if asked == EVICT {
                Closed::Evicted
            } else {
                Closed::Shutdown
            };
            let (phase, served) = {
                let s = lock(&conn.state);
                (s.phase, s.served)
            };
            match phase {
                // Half a request, or nothing yet: there is nothing to finish.
                Phase::Head(_) => {
                    metrics.closed(why);
                    return;
                }
                Phase::Idle(_) if !served => {
                    metrics.closed(why);
                    return;
                }
                // Idle after a response: hyper closes it at once, or once the response it
                // is writing is out.
                Phase::Idle(_) => {
                    metrics.closed(why);
                    http.as_mut().graceful_shutdown();
                    force = Some(now + CLOSING_GRACE);
                }
                // Answered, with `Connection: close` (at shutdown, within `drain_timeout`).
                Phase::Busy => http.as_mut().graceful_shutdown(),
            }
        }
        if let Some((at, why)) = conn.deadline(limits) {
            if at <= now {
                if !closing {
                    metrics.closed(why);
                }
                return;
            }
        }
    }
}

/// Marks the end of a request when its handler finishes (or is dropped).
struct Ends(Arc<Conn>);

impl Drop for Ends {
    fn drop(&mut self) {
        self.0.end();
    }
}

/// The socket, telling its connection's phase about bytes in and out.
struct Watched {
    io: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Watched {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            this.conn.read();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.conn.wrote();
        }
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.conn.wrote();
        }
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn limits() -> Limits {
        Limits {
            max_connections: 8,
            header_read_timeout: Duration::from_millis(300),
            idle_timeout: Duration::from_millis(600),
            drain_timeout: Duration::from_millis(500),
        }
    }

    struct Server {
        addr: std::net::SocketAddr,
        stop: crate::shutdown::Trigger,
        task: tokio::task::JoinHandle<io::Result<()>>,
        metrics: Arc<AdminMetrics>,
    }

    async fn start(limits: Limits) -> Server {
        let app = Router::new()
            .route("/fast", get(|| async { "ok\n" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "slow\n"
                }),
            )
            .route(
                "/stuck",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(600)).await;
                    "never\n"
                }),
            );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, shutdown) = crate::shutdown::channel();
        let metrics = Arc::new(AdminMetrics::unregistered());
        let task = tokio::spawn(serve(
            listener,
            app,
            limits,
            None,
            metrics.clone(),
            shutdown,
        ));
        Server {
            addr,
            stop,
            task,
            metrics,
        }
    }

    fn closed(m: &AdminMetrics, why: Closed) -> u64 {
        m.closed.with_label_values(&[why.label()]).get()
    }

    /// Reads until the peer closes; what came, and how long it took.
    async fn read_to_close(s: &mut TcpStream) -> (String, Duration) {
        let started = Instant::now();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
                Err(_) => panic!("the server did not close the connection within 10 s"),
            }
        }
        (String::from_utf8_lossy(&out).into(), started.elapsed())
    }

    /// One request on a kept-alive connection; the whole response (by its Content-Length).
    async fn get_keep_alive(s: &mut TcpStream, path: &str) -> String {
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&out).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head.lines().find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse::<usize>().unwrap())
                });
                if length.is_some_and(|n| body.len() >= n) {
                    return text;
                }
            }
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed early: {text}");
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test]
    async fn a_half_sent_head_and_a_slowloris_are_closed_after_the_header_timeout() {
        let srv = start(limits()).await;
        let mut half = TcpStream::connect(srv.addr).await.unwrap();
        half.write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let (text, took) = read_to_close(&mut half).await;
        assert!(text.is_empty(), "{text}");
        assert!(took < Duration::from_secs(2), "{took:?}");

        // One byte every 100 ms keeps the socket busy, never the head complete.
        let mut slow = TcpStream::connect(srv.addr).await.unwrap();
        let started = Instant::now();
        let request = b"GET /fast HTTP/1.1\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
        for b in request {
            if slow.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(2),
            "the slowloris lasted {took:?}"
        );
        assert_eq!(closed(&srv.metrics, Closed::HeaderTimeout), 2);
    }

    #[tokio::test]
    async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout() {
        let srv = start(limits()).await;
        let mut s = TcpStream::connect(srv.addr).await.unwrap();
        assert!(get_keep_alive(&mut s, "/fast").await.ends_with("ok\n"));
        // A second request on the same connection, then silence.
        assert!(get_keep_alive(&mut s, "/fast").await.ends_with("ok\n"));
        let (_, took) = read_to_close(&mut s).await;
        assert!(
            took >= Duration::from_millis(400) && took < Duration::from_secs(3),
            "{took:?}"
        );
        assert_eq!(closed(&srv.metrics, Closed::Idle), 1);
        // A connection that never sends anything is idle too.
        let mut silent = TcpStream::connect(srv.addr).await.unwrap();
        read_to_close(&mut silent).await;
        assert_eq!(closed(&srv.metrics, Closed::Idle), 2);
    }

    #[tokio::test]
    async fn at_the_cap_the_longest_waiting_connection_makes_room() {
        let srv = start(Limits {
            max_connections: 3,
            idle_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(60),
            ..limits()
        })
        .await;
        let mut first = TcpStream::connect(srv.addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(srv.addr).await.unwrap();
            s.write_all(b"GET /fast HTTP/1.1\r\n").await.unwrap();
            held.push(s);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(srv.metrics.connections.get(), 3);
        // A fourth is served at once; the one that waited longest goes.
        let mut probe = TcpStream::connect(srv.addr).await.unwrap();
        let answer =
            tokio::time::timeout(Duration::from_secs(2), get_keep_alive(&mut probe, "/fast"))
                .await
                .expect("the probe is served at the cap");
        assert!(answer.ends_with("ok\n"));
        let (_, took) = read_to_close(&mut first).await;
        assert!(took < Duration::from_secs(2));
        assert_eq!(closed(&srv.metrics, Closed::Evicted), 1);
        assert!(srv.metrics.connections.get() <= 3);
    }

    #[tokio::test]
    async fn shutdown_finishes_requests_in_progress_and_drops_the_rest_in_time() {
        let srv = start(limits()).await;
        let mut half = TcpStream::connect(srv.addr).await.unwrap();
        half.write_all(b"GET /fast HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        let mut slow = TcpStream::connect(srv.addr).await.unwrap();
        slow.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut stuck = TcpStream::connect(srv.addr).await.unwrap();
        stuck
            .write_all(b"GET /stuck HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let started = Instant::now();
        srv.stop.trigger();
        let (text, took) = read_to_close(&mut half).await;
        assert!(
            text.is_empty() && took < Duration::from_millis(300),
            "{took:?}"
        );
        // The request in progress is answered, and told the connection closes.
        let (text, _) = read_to_close(&mut slow).await;
        assert!(text.ends_with("slow\n"), "{text}");
        assert!(
            text.to_ascii_lowercase().contains("connection: close"),
            "{text}"
        );
        // The stuck one is dropped when the drain runs out.
        let (text, _) = read_to_close(&mut stuck).await;
        assert!(text.is_empty(), "{text}");
        srv.task.await.unwrap().unwrap();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(450) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert_eq!(closed(&srv.metrics, Closed::Shutdown), 2);
        // And the port is closed.
        assert!(TcpStream::connect(srv.addr).await.is_err());
    }
}
