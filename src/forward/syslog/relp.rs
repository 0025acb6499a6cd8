//! RELP, the Reliable Event Logging Protocol (rsyslog's `imrelp`), as the syslog sink's
//! acknowledged transport: [`RelpDeliver`] holds one session and sends each batch as
//! pipelined `syslog` commands; a message counts as delivered only once the receiver
//! answered its command with `200`. The frames, answers and offers are in `relp/frame.rs`.
//! What the transport guarantees is in the parent module's docs.
//!
//! The protocol, as the specification (librelp's `doc/relp.md`) and rsyslog put it:
//! ```text
//! frame:   TXNR SP COMMAND SP DATALEN [SP DATA] LF      (no SP and no DATA when DATALEN is 0)
//! C -> S   1 open 59 relp_version=0 LF relp_software=hubwatch,0.1.0 LF commands=syslog
//! S -> C   1 rsp 93 200 OK LF relp_version=0 LF relp_software=librelp,… LF commands=syslog
//! C -> S   2 syslog 120 <131>1 2024-05-05T09:07:03.123456Z …     (any number in flight)
//! S -> C   2 rsp 6 200 OK                                          (or 500 and a reason)
//! C -> S   3 close 0
//! S -> C   3 rsp 0
//! S -> C   0 serverclose 0                                         (a hint: the server leaves)
//! ```
//! TXNR counts the client's commands from 1 in each session, up to 999,999,999 and then 1
//! again; 0 is the server's hints', which nobody answers. Numbers and lengths have at most
//! nine digits, a command at most 32 letters. Every real peer speaks `relp_version=0`
//! (librelp answers with the smaller of the two offers), so that is what is offered.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::forward::buffered::{Deliver, Failure, Rejection, Report};

mod frame;

use super::transport::Stream;
use frame::{answer, command, next_txnr, offers, parse, Frame, MAX_DATALEN, MAX_TXNR};

/// Commands sent and not yet answered, at most (librelp's own default). It bounds what the
/// receiver holds for us and the answers waiting in our socket.
pub const WINDOW: usize = 128;
/// The longest DATA taken from a receiver: answers are a status line and a few offers.
const MAX_ANSWER: usize = 64 << 10;

/// Sends messages over RELP to `address`, in a session opened on the first delivery and
/// again after one broke.
pub struct RelpDeliver {
    pub address: String,
    /// For connecting with the `open` handshake, each write, and each wait for an answer.
    pub timeout: Duration,
    /// RELP inside TLS (rsyslog's `imrelp` with `tls="on"`).
    tls: Option<tokio_rustls::TlsConnector>,
    session: Option<Session>,
}

impl RelpDeliver {
    pub fn new(address: String, timeout: Duration) -> RelpDeliver {
        RelpDeliver {
            address,
            timeout,
            tls: None,
            session: None,
        }
    }

    /// RELP inside TLS, trusting what [`super::transport::client_config`] trusts.
    pub fn tls(
        address: String,
        timeout: Duration,
        tls: &crate::forward::http::Tls,
    ) -> std::io::Result<RelpDeliver> {
        let config = super::transport::client_config(tls)?;
        Ok(RelpDeliver {
            tls: Some(tokio_rustls::TlsConnector::from(std::sync::Arc::new(
                config,
            ))),
            ..RelpDeliver::new(address, timeout)
        })
    }
}

/// An open session: the connection, what was read of it and not yet parsed, and the next
/// transaction number.
struct Session {
    stream: Stream,
    inbox: Vec<u8>,
    next: u32,
}

/// What the receiver answered to one message: `Ok`, or refused with its words.
type Answered = Option<Result<(), String>>;

impl Session {
    /// Connects and opens a session; fails unless the receiver takes `syslog` commands.
    async fn open(
        address: &str,
        timeout: Duration,
        tls: Option<&tokio_rustls::TlsConnector>,
    ) -> Result<Session, Failure> {
        let opening = async {
            let stream = super::transport::connect(address, tls).await?;
            let mut s = Session {
                stream,
                inbox: Vec::new(),
                next: 1,
            };
            let offer = format!(
                "relp_version=0\nrelp_software=hubwatch,{}\ncommands=syslog",
                env!("CARGO_PKG_VERSION")
            );
            let txnr = s.take_txnr();
            let mut out = Vec::new();
            command(&mut out, txnr, "open", offer.as_bytes());
            s.stream
                .write_all(&out)
                .await
                .map_err(|e| Failure::new("write", format!("writing to {address}: {e}")))?;
            let reply = s.read_frame(address).await?;
            let refused = |why: String| {
                Failure::new(
                    "relp_open",
                    format!("{address} did not open a RELP session: {why}"),
                )
            };
            if reply.txnr != txnr || reply.command != "rsp" {
                return Err(refused(format!(
                    "it sent {} (TXNR {}) instead of answering",
                    reply.command, reply.txnr
                )));
            }
            let a = answer(&reply.data).map_err(|e| refused(e.to_string()))?;
            if a.code != 200 {
                return Err(refused(format!("{} {}", a.code, a.text)));
            }
            let offered = offers(a.data);
            let values = |name: &str| offered.iter().find(|(n, _)| n == name).map(|o| &o.1);
            if values("relp_version").is_none_or(|v| v.is_empty()) {
                return Err(refused("its answer offers no relp_version".into()));
            }
            if !values("commands").is_some_and(|v| v.iter().any(|c| c == "syslog")) {
                return Err(refused("it does not offer the syslog command".into()));
            }
            Ok(s)
        };
        tokio::time::timeout(timeout, opening).await.map_err(|_| {
            Failure::new(
                "timeout",
                format!("opening a RELP session with {address}: no answer within {timeout:?}"),
            )
        })?
    }

    fn take_txnr(&mut self) -> u32 {
        let txnr = self.next;
        self.next = next_txnr(txnr);
        txnr
    }

    /// The next frame, read as needed.
    async fn read_frame(&mut self, address: &str) -> Result<Frame, Failure> {
        let mut buf = [0u8; 16 << 10];
        loop {
            match parse(&self.inbox, MAX_ANSWER) {
                Ok(Some((frame, used))) => {
                    self.inbox.drain(..used);
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(e) => {
                    return Err(Failure::new(
                        "relp_protocol",
                        format!("reading from {address}: {e}"),
                    ))
                }
            }
            match self.stream.read(&mut buf).await {
                Ok(0) => {
                    return Err(Failure::new(
                        "closed",
                        format!("{address} closed the connection"),
                    ))
                }
                Ok(n) => self.inbox.extend_from_slice(&buf[..n]),
                Err(e) => return Err(Failure::new("read", format!("reading from {address}: {e}"))),
            }
        }
    }

    /// Whether the session is still good after a pause: the receiver neither closed it
    /// (a `serverclose` hint, or end of stream) nor sent anything else unasked. Reads only
    /// what has arrived.
    fn still_open(&mut self) -> bool {
        if !super::transport::read_ready(&mut self.stream, &mut self.inbox) {
            return false;
        }
        loop {
            match parse(&self.inbox, MAX_ANSWER) {
                Ok(None) => return true,
                Ok(Some((frame, used))) => {
                    self.inbox.drain(..used);
                    if frame.txnr != 0 || frame.command == "serverclose" {
                        return false;
                    }
                }
                Err(_) => return false,
            }
        }
    }

    /// Sends `messages` as `syslog` commands, at most [`WINDOW`] unanswered, and reads
    /// answers until each message has one or the session breaks. Returns each message's
    /// answer (`None`: none came) and what broke the session, if something did.
    async fn exchange(
        &mut self,
        messages: &[&[u8]],
        address: &str,
        timeout: Duration,
    ) -> (Vec<Answered>, Option<Failure>) {
        let mut answers: Vec<Answered> = vec![None; messages.len()];
        // Transaction number -> message, for the commands not yet answered. The
        // specification wants answers in order, but says the server may answer in any;
        // matching by number takes both.
        let mut waiting: HashMap<u32, usize> = HashMap::new();
        let (mut sent, mut answered) = (0, 0);
        let mut out = Vec::new();
        let stalled = |doing: &str| {
            Failure::new(
                "timeout",
                format!("{doing} {address}: stalled for {timeout:?}"),
            )
        };
        while answered < messages.len() {
            if sent < messages.len() && waiting.len() < WINDOW {
                out.clear();
                while sent < messages.len() && waiting.len() < WINDOW {
                    let txnr = self.take_txnr();
                    command(&mut out, txnr, "syslog", messages[sent]);
                    waiting.insert(txnr, sent);
                    sent += 1;
                }
                match tokio::time::timeout(timeout, self.stream.write_all(&out)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        let e = Failure::new("write", format!("writing to {address}: {e}"));
                        return (answers, Some(e));
                    }
                    Err(_) => return (answers, Some(stalled("writing to"))),
                }
            }
            let frame = match tokio::time::timeout(timeout, self.read_frame(address)).await {
                Ok(Ok(frame)) => frame,
                Ok(Err(e)) => return (answers, Some(e)),
                Err(_) => return (answers, Some(stalled("waiting for answers from"))),
            };
            let protocol = |why: String| Some(Failure::new("relp_protocol", why));
            match (frame.txnr, frame.command.as_str()) {
                (0, "serverclose") => {
                    let e = Failure::new(
                        "closed",
                        format!(
                            "{address} closed the RELP session (serverclose) with {} messages unanswered",
                            waiting.len()
                        ),
                    );
                    return (answers, Some(e));
                }
                // Another hint: nothing to do about it.
                (0, _) => {}
                (txnr, "rsp") => {
                    let Some(i) = waiting.remove(&txnr) else {
                        let why = format!("{address} answered TXNR {txnr}, which is not waiting");
                        return (answers, protocol(why));
                    };
                    let said = match answer(&frame.data) {
                        Ok(a) if a.code == 200 => Ok(()),
                        Ok(a) => Err(format!("{} {}", a.code, a.text)),
                        Err(e) => return (answers, protocol(format!("{address}: {e}"))),
                    };
                    answers[i] = Some(said);
                    answered += 1;
                }
                (txnr, other) => {
                    let why = format!("{address} sent a {other} command (TXNR {txnr})");
                    return (answers, protocol(why));
                }
            }
        }
        (answers, None)
    }

    /// Closes the session as the protocol asks (`close`, then its answer), within
    /// `timeout`; whatever goes wrong, the connection is dropped all the same.
    async fn close(mut self, address: &str, timeout: Duration) {
        let txnr = self.take_txnr();
        let mut out = Vec::new();
        command(&mut out, txnr, "close", b"");
        let _ = tokio::time::timeout(timeout, async {
            self.stream.write_all(&out).await.ok()?;
            loop {
                let frame = self.read_frame(address).await.ok()?;
                if frame.txnr == txnr || frame.command == "serverclose" {
                    return Some(());
                }
            }
        })
        .await;
    }
}

#[async_trait::async_trait]
impl Deliver for RelpDeliver {
    async fn deliver(&mut self, messages: &[&[u8]]) -> Result<Report, Failure> {
        let mut report = Report::default();
        let mut send = Vec::with_capacity(messages.len());
        for (i, m) in messages.iter().enumerate() {
            if m.len() > MAX_DATALEN {
                report.rejected.push(Rejection {
                    index: i,
                    reason: "too_large".to_string(),
                    detail: format!(
                        "{} bytes do not fit in one RELP frame ({MAX_DATALEN} at most)",
                        m.len()
                    ),
                });
            } else {
                send.push(i);
            }
        }
        if send.is_empty() {
            return Ok(report);
        }
        if let Some(s) = self.session.as_mut() {
            if !s.still_open() {
                self.session = None;
            } else if u64::from(s.next) + send.len() as u64 > u64::from(MAX_TXNR) + 1 {
                // A fresh session rather than one that wraps: librelp (rsyslog) expects
                // 1,000,000,000 after 999,999,999, not the specification's 1, and refuses it.
                if let Some(s) = self.session.take() {
                    s.close(&self.address, self.timeout).await;
                }
            }
        }
        if self.session.is_none() {
            self.session =
                Some(Session::open(&self.address, self.timeout, self.tls.as_ref()).await?);
        }
        let session = self.session.as_mut().expect("opened above");
        let batch: Vec<&[u8]> = send.iter().map(|&i| messages[i]).collect();
        let (answers, broken) = session.exchange(&batch, &self.address, self.timeout).await;
        let refused: Vec<&String> = answers
            .iter()
            .filter_map(|a| a.as_ref()?.as_ref().err())
            .collect();
        if broken.is_some() || !refused.is_empty() {
            // After an error, a new session: the receiver may be unwell.
            self.session = None;
        }
        let taken = answers.iter().filter(|a| matches!(a, Some(Ok(())))).count();
        if taken == 0 {
            // Nothing acknowledged: the batch failed as a whole and is sent again.
            return Err(broken.unwrap_or_else(|| {
                Failure::new(
                    "relp_refused",
                    format!(
                        "{} refused {} messages: {}",
                        self.address,
                        refused.len(),
                        refused[0]
                    ),
                )
            }));
        }
        // What the receiver acknowledged is delivered; the rest (refused, or unanswered
        // when the session broke) is sent again after a backoff.
        report.retry = send
            .iter()
            .zip(&answers)
            .filter(|(_, a)| !matches!(a, Some(Ok(()))))
            .map(|(&i, _)| i)
            .collect();
        if !report.retry.is_empty() {
            report.throttled = true;
            let why = match (&broken, refused.first()) {
                (Some(f), _) => f.detail.clone(),
                (None, Some(r)) => format!("refused: {r}"),
                (None, None) => String::new(),
            };
            tracing::warn!(receiver = %self.address, taken, again = report.retry.len(), error = %why, "RELP delivery done in part");
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::{TcpListener, TcpStream};

    fn frame(txnr: u32, command: &str, data: &str) -> Frame {
        Frame {
            txnr,
            command: command.into(),
            data: data.as_bytes().to_vec(),
        }
    }

    /// The server's side of a connection, for scripted peers.
    struct Peer {
        stream: TcpStream,
        inbox: Vec<u8>,
    }

    impl Peer {
        async fn accept(listener: &TcpListener) -> Peer {
            let (stream, _) = listener.accept().await.unwrap();
            Peer {
                stream,
                inbox: Vec::new(),
            }
        }

        /// The next frame; `None` at end of stream.
        async fn frame(&mut self) -> Option<Frame> {
            loop {
                if let Some((f, used)) = parse(&self.inbox, usize::MAX).unwrap() {
                    self.inbox.drain(..used);
                    return Some(f);
                }
                let mut buf = [0u8; 4096];
                match self.stream.read(&mut buf).await.unwrap() {
                    0 => return None,
                    n => self.inbox.extend_from_slice(&buf[..n]),
                }
            }
        }

        async fn send(&mut self, txnr: u32, command_: &str, data: &str) {
            let mut out = Vec::new();
            command(&mut out, txnr, command_, data.as_bytes());
            self.stream.write_all(&out).await.unwrap();
        }

        /// Takes the client's `open` and accepts it; returns the offers it made.
        async fn open(&mut self) -> Vec<(String, Vec<String>)> {
            let open = self.frame().await.unwrap();
            assert_eq!((open.txnr, open.command.as_str()), (1, "open"));
            self.send(1, "rsp", "200 OK\nrelp_version=0\ncommands=syslog")
                .await;
            offers(&open.data)
        }
    }

    async fn listener() -> (TcpListener, RelpDeliver) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = l.local_addr().unwrap().to_string();
        (l, RelpDeliver::new(address, Duration::from_secs(5)))
    }

    #[tokio::test]
    async fn a_batch_is_pipelined_and_only_what_was_answered_200_is_taken() {
        let (l, mut relp) = listener().await;
        let peer = tokio::spawn(async move {
            let mut p = Peer::accept(&l).await;
            let offered = p.open().await;
            assert!(offered.contains(&("commands".into(), vec!["syslog".into()])));
            assert!(offered
                .iter()
                .any(|(n, v)| n == "relp_version" && v == &["0"]));
            // All three arrive before any answer: pipelined.
            let mut got = Vec::new();
            for _ in 0..3 {
                got.push(p.frame().await.unwrap());
            }
            // Answered out of order, the middle one refused.
            p.send(4, "rsp", "200 OK").await;
            p.send(3, "rsp", "500 queue full").await;
            p.send(2, "rsp", "200 OK").await;
            let next = p.frame().await;
            (got, next)
        });
        let report = relp.deliver(&[b"a", b"bb", b"ccc"]).await.unwrap();
        assert_eq!(report.retry, [1], "the refused one again");
        assert!(report.throttled && report.rejected.is_empty());
        drop(relp); // a refusal ends the session: the peer sees the end of the stream
        let (got, next) = peer.await.unwrap();
        assert_eq!(
            got,
            [
                frame(2, "syslog", "a"),
                frame(3, "syslog", "bb"),
                frame(4, "syslog", "ccc")
            ]
        );
        assert_eq!(next, None);
    }

    #[tokio::test]
    async fn a_session_lost_before_any_answer_fails_the_batch_and_one_lost_midway_retries_the_rest()
    {
        let (l, mut relp) = listener().await;
        let peer = tokio::spawn(async move {
            // First session: the receiver dies without answering.
            let mut p = Peer::accept(&l).await;
            p.open().await;
            p.frame().await.unwrap();
            drop(p);
            // Second: two answers of three, then the serverclose hint and gone.
            let mut p = Peer::accept(&l).await;
            p.open().await;
            for _ in 0..3 {
                p.frame().await.unwrap();
            }
            p.send(2, "rsp", "200 OK").await;
            p.send(3, "rsp", "200 OK").await;
            p.send(0, "serverclose", "").await;
        });
        let e = relp.deliver(&[b"one"]).await.unwrap_err();
        assert_eq!(e.kind, "closed", "{e:?}");
        let report = relp.deliver(&[b"a", b"b", b"c"]).await.unwrap();
        assert_eq!(report.retry, [2]);
        assert!(report.throttled);
        peer.await.unwrap();
    }

    #[tokio::test]
    async fn a_session_the_receiver_closed_while_idle_is_replaced_before_sending() {
        let (l, mut relp) = listener().await;
        let peer = tokio::spawn(async move {
            let mut p = Peer::accept(&l).await;
            p.open().await;
            let f = p.frame().await.unwrap();
            p.send(f.txnr, "rsp", "200 OK").await;
            p.send(0, "serverclose", "").await;
            drop(p);
            let mut p = Peer::accept(&l).await;
            p.open().await;
            let f = p.frame().await.unwrap();
            p.send(f.txnr, "rsp", "200 OK").await;
            f
        });
        assert_eq!(relp.deliver(&[b"one"]).await.unwrap(), Report::default());
        tokio::time::sleep(Duration::from_millis(100)).await;
        // No failure, no retry: the new session carries it.
        assert_eq!(relp.deliver(&[b"two"]).await.unwrap(), Report::default());
        assert_eq!(peer.await.unwrap(), frame(2, "syslog", "two"));
    }

    #[tokio::test]
    async fn a_batch_that_would_pass_the_last_transaction_number_goes_in_a_new_session() {
        let (l, mut relp) = listener().await;
        let peer = tokio::spawn(async move {
            let mut p = Peer::accept(&l).await;
            p.open().await;
            let f = p.frame().await.unwrap();
            p.send(f.txnr, "rsp", "200 OK").await;
            let close = p.frame().await.unwrap();
            p.send(close.txnr, "rsp", "").await;
            let mut q = Peer::accept(&l).await;
            q.open().await;
            let mut got = Vec::new();
            for _ in 0..3 {
                let f = q.frame().await.unwrap();
                q.send(f.txnr, "rsp", "200 OK").await;
                got.push(f.txnr);
            }
            (close, got)
        });
        relp.deliver(&[b"one"]).await.unwrap();
        relp.session.as_mut().unwrap().next = MAX_TXNR - 1;
        assert_eq!(
            relp.deliver(&[b"a", b"b", b"c"]).await.unwrap(),
            Report::default()
        );
        let (close, got) = peer.await.unwrap();
        assert_eq!(
            (close.txnr, close.command.as_str()),
            (MAX_TXNR - 1, "close")
        );
        assert_eq!(got, [2, 3, 4]);
    }

    #[tokio::test]
    async fn a_receiver_that_refuses_the_session_or_the_syslog_command_fails_the_delivery() {
        let (l, mut relp) = listener().await;
        let peer = tokio::spawn(async move {
            let mut p = Peer::accept(&l).await;
            p.frame().await.unwrap();
            p.send(1, "rsp", "500 required command not supported by client")
                .await;
            let mut p = Peer::accept(&l).await;
            p.frame().await.unwrap();
            p.send(1, "rsp", "200 OK\nrelp_version=0\ncommands=eventlog")
                .await;
        });
        let e = relp.deliver(&[b"x"]).await.unwrap_err();
        assert_eq!(e.kind, "relp_open");
        assert!(e.detail.contains("500 required command"), "{e:?}");
        let e = relp.deliver(&[b"x"]).await.unwrap_err();
        assert!(
            e.detail.contains("does not offer the syslog command"),
            "{e:?}"
        );
        peer.await.unwrap();
    }
}
