//! The syslog sink's transports (see the parent module's docs for what each guarantees):
//! TCP and TLS streams with RFC 6587 framing ([`TcpDeliver`], [`frame`]), one UDP datagram
//! per message ([`UdpDeliver`]), and the TLS client's trust ([`client_config`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UdpSocket};

use super::{host_and_port, Framing};
use crate::forward::buffered::{Deliver, Failure, Rejection, Report};
use crate::forward::http::Tls;

/// A connection, plain or TLS.
pub(super) trait Conn: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Conn for T {}
pub(super) type Stream = Box<dyn Conn>;

/// Reads what has arrived, without waiting, into `into`; `false` once the peer closed the
/// connection (or broke it).
pub(super) fn read_ready(stream: &mut Stream, into: &mut Vec<u8>) -> bool {
    let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
    let mut scratch = [0u8; 4096];
    loop {
        let mut buf = ReadBuf::new(&mut scratch);
        match std::pin::Pin::new(&mut **stream).poll_read(&mut cx, &mut buf) {
            std::task::Poll::Pending => return true,
            std::task::Poll::Ready(Ok(())) if buf.filled().is_empty() => return false,
            std::task::Poll::Ready(Ok(())) => into.extend_from_slice(buf.filled()),
            std::task::Poll::Ready(Err(_)) => return false,
        }
    }
}

/// Whether the receiver has closed the connection (or broken it) since the last batch. A
/// write into a connection the peer already closed succeeds locally and is lost, so a
/// kept connection is checked before it is used again. Whatever the receiver sent (TLS
/// session tickets, say) is ignored.
fn peer_closed(stream: &mut Stream) -> bool {
    let mut ignored = Vec::new();
    !read_ready(stream, &mut ignored)
}

/// Writes messages to a TCP connection, plain or inside TLS, opened (and reopened after a
/// failure) as needed.
pub struct TcpDeliver {
    pub address: String,
    pub framing: Framing,
    pub timeout: Duration,
    tls: Option<tokio_rustls::TlsConnector>,
    stream: Option<Stream>,
}

impl TcpDeliver {
    /// Plain TCP.
    pub fn new(address: String, framing: Framing, timeout: Duration) -> TcpDeliver {
        TcpDeliver {
            address,
            framing,
            timeout,
            tls: None,
            stream: None,
        }
    }

    /// TLS over TCP, trusting what [`client_config`] trusts.
    pub fn tls(
        address: String,
        framing: Framing,
        timeout: Duration,
        tls: &Tls,
    ) -> std::io::Result<TcpDeliver> {
        let config = client_config(tls)?;
        Ok(TcpDeliver {
            tls: Some(tokio_rustls::TlsConnector::from(Arc::new(config))),
            ..TcpDeliver::new(address, framing, timeout)
        })
    }
}

/// A connection to `address`, inside TLS when given a connector (the stream is not
/// `Sync`, so this borrows no `TcpDeliver` across its awaits).
pub(super) async fn connect(
    address: &str,
    tls: Option<&tokio_rustls::TlsConnector>,
) -> Result<Stream, Failure> {
    let tcp = TcpStream::connect(address)
        .await
        .map_err(|e| Failure::new("connect", format!("connecting to {address}: {e}")))?;
    let _ = tcp.set_nodelay(true);
    let Some(tls) = tls else {
        return Ok(Box::new(tcp));
    };
    let host = host_and_port(address)
        .map_err(|e| Failure::new("connect", e))?
        .0;
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(|e| {
        Failure::new(
            "tls",
            format!("{host:?} is no name to check a certificate for: {e}"),
        )
    })?;
    let mut stream = tls
        .connect(name, tcp)
        .await
        .map_err(|e| Failure::new("tls", format!("TLS with {address}: {e}")))?;
    // In TLS 1.3 the client's handshake ends before the receiver has checked the client's
    // certificate (or its absence): a refusal comes as an alert after it, and whatever was
    // written meanwhile would be lost unnoticed. A receiver that refuses does so at once,
    // so the connection is used only after it stayed quiet for a moment (a syslog receiver
    // sends no data; its session tickets are taken in passing).
    if stream.get_ref().1.protocol_version() == Some(rustls::ProtocolVersion::TLSv1_3) {
        let mut byte = [0u8; 1];
        match tokio::time::timeout(REFUSAL_WAIT, stream.read(&mut byte)).await {
            Err(_) | Ok(Ok(1..)) => {}
            Ok(Ok(0)) => {
                return Err(Failure::new(
                    "tls",
                    format!("TLS with {address}: closed right after the handshake (did it refuse the client certificate, or its absence?)"),
                ))
            }
            Ok(Err(e)) => {
                return Err(Failure::new(
                    "tls",
                    format!("TLS with {address}: refused after the handshake: {e}"),
                ))
            }
        }
    }
    Ok(Box::new(stream))
}

/// How long a new TLS 1.3 connection must stay quiet before it is written to.
const REFUSAL_WAIT: Duration = Duration::from_millis(300);

#[async_trait::async_trait]
impl Deliver for TcpDeliver {
    async fn deliver(&mut self, messages: &[&[u8]]) -> Result<Report, Failure> {
        if self.stream.as_mut().is_some_and(peer_closed) {
            tracing::debug!(address = %self.address, "the receiver closed the connection; reconnecting");
            self.stream = None;
        }
        if self.stream.is_none() {
            let stream =
                tokio::time::timeout(self.timeout, connect(&self.address, self.tls.as_ref()))
                    .await
                    .map_err(|_| {
                        Failure::new(
                            "timeout",
                            format!(
                                "connecting to {}: no answer within {:?}",
                                self.address, self.timeout
                            ),
                        )
                    })??;
            self.stream = Some(stream);
        }
        let bytes = frame(messages, self.framing);
        let stream = self.stream.as_mut().expect("connected above");
        let written = tokio::time::timeout(self.timeout, async {
            stream.write_all(&bytes).await?;
            stream.flush().await
        })
        .await;
        match written {
            Ok(Ok(())) => Ok(Report::default()),
            Ok(Err(e)) => {
                self.stream = None;
                Err(Failure::new(
                    "write",
                    format!("writing to {}: {e}", self.address),
                ))
            }
            Err(_) => {
                self.stream = None;
                Err(Failure::new(
                    "timeout",
                    format!(
                        "writing to {}: stalled for {:?}",
                        self.address, self.timeout
                    ),
                ))
            }
        }
    }
}

/// Messages delimited for a stream.
pub fn frame(messages: &[&[u8]], framing: Framing) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(messages.iter().map(|m| m.len() + 8).sum());
    for m in messages {
        match framing {
            Framing::OctetCounting => {
                bytes.extend_from_slice(format!("{} ", m.len()).as_bytes());
                bytes.extend_from_slice(m);
            }
            Framing::Lf => {
                bytes.extend_from_slice(m);
                bytes.push(b'\n');
            }
        }
    }
    bytes
}

/// The largest message one UDP datagram carries over IPv4 (65,535 less the IP and UDP
/// headers); larger ones are refused (see the module's docs).
pub const MAX_DATAGRAM: usize = 65_507;

/// Sends each message as one datagram from a socket connected to the receiver (so that a
/// refusal the host reports fails the next send instead of vanishing): the first address
/// the name resolves to, looked up again after a failure.
pub struct UdpDeliver {
    pub address: String,
    pub timeout: Duration,
    socket: Option<UdpSocket>,
}

impl UdpDeliver {
    pub fn new(address: String, timeout: Duration) -> UdpDeliver {
        UdpDeliver {
            address,
            timeout,
            socket: None,
        }
    }

    async fn open(&self) -> Result<UdpSocket, Failure> {
        let fail = |e: std::io::Error| {
            Failure::new("connect", format!("opening UDP to {}: {e}", self.address))
        };
        let to: SocketAddr = tokio::net::lookup_host(&self.address)
            .await
            .map_err(fail)?
            .next()
            .ok_or_else(|| fail(std::io::Error::other("the name resolves to no address")))?;
        let local: SocketAddr = if to.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let socket = UdpSocket::bind(local).await.map_err(fail)?;
        socket.connect(to).await.map_err(fail)?;
        Ok(socket)
    }
}

#[async_trait::async_trait]
impl Deliver for UdpDeliver {
    async fn deliver(&mut self, messages: &[&[u8]]) -> Result<Report, Failure> {
        if self.socket.is_none() {
            self.socket = Some(self.open().await?);
        }
        let socket = self.socket.as_ref().expect("opened above");
        let mut report = Report::default();
        for (i, m) in messages.iter().enumerate() {
            if m.len() > MAX_DATAGRAM {
                report.rejected.push(Rejection {
                    index: i,
                    reason: "too_large".to_string(),
                    detail: format!(
                        "{} bytes do not fit in one UDP datagram ({MAX_DATAGRAM} at most)",
                        m.len()
                    ),
                });
                continue;
            }
            let sent = tokio::time::timeout(self.timeout, socket.send(m)).await;
            let error = match sent {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => Failure::new("write", format!("sending to {}: {e}", self.address)),
                Err(_) => Failure::new(
                    "timeout",
                    format!(
                        "sending to {}: stalled for {:?}",
                        self.address, self.timeout
                    ),
                ),
            };
            self.socket = None;
            if i == 0 {
                return Err(error);
            }
            // What went out before stays sent; the rest is sent again after a backoff.
            tracing::warn!(receiver = %self.address, kind = %error.kind, error = %error.detail, "sending over UDP failed part way");
            report.retry = (i..messages.len()).collect();
            report.throttled = true;
            break;
        }
        Ok(report)
    }
}

/// The system's PEM bundle of trusted roots: `SSL_CERT_FILE`, else the first of the usual
/// places (Debian and Ubuntu, Fedora and RHEL, openSUSE, Alpine and the BSDs).
fn system_roots_file() -> Option<PathBuf> {
    if let Some(f) = std::env::var_os("SSL_CERT_FILE") {
        return Some(PathBuf::from(f));
    }
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
        "/etc/ssl/ca-bundle.pem",
        "/etc/ssl/cert.pem",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

fn pem_certs(
    path: &std::path::Path,
) -> std::io::Result<Vec<rustls::pki_types::CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    let bytes = std::fs::read(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("reading {}: {e}", path.display())))?;
    rustls::pki_types::CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            std::io::Error::other(format!("{}: not PEM certificates: {e}", path.display()))
        })
}

/// The TLS client's configuration: the system's roots plus `ca_file`'s, or — `verify =
/// false`, for tests only — no check of the receiver at all.
pub fn client_config(tls: &Tls) -> std::io::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| std::io::Error::other(format!("TLS: {e}")))?;
    if !tls.verify {
        tracing::warn!("syslog over TLS without checking the receiver's certificate (tls.verify = false): for test receivers only");
        let builder = builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)));
        return with_client_auth(builder, tls);
    }
    let mut roots = rustls::RootCertStore::empty();
    let system = system_roots_file();
    if let Some(file) = &system {
        match pem_certs(file) {
            // A bundle may hold certificates rustls cannot use; the others still count.
            Ok(certs) => {
                roots.add_parsable_certificates(certs);
            }
            Err(e) => tracing::warn!(error = %e, "the system's trusted roots could not be read"),
        }
    }
    if let Some(ca) = &tls.ca_file {
        let certs = pem_certs(ca)?;
        if certs.is_empty() {
            return Err(std::io::Error::other(format!(
                "tls.ca_file {} holds no PEM certificate",
                ca.display()
            )));
        }
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| std::io::Error::other(format!("tls.ca_file {}: {e}", ca.display())))?;
        }
    }
    if roots.is_empty() {
        return Err(std::io::Error::other(format!(
            "TLS: no trusted roots ({}); set tls.ca_file or SSL_CERT_FILE",
            match &system {
                Some(f) => format!("{} holds none", f.display()),
                None => "no system bundle found".to_string(),
            }
        )));
    }
    with_client_auth(builder.with_root_certificates(roots), tls)
}

/// The client certificate `tls` names, or none.
fn with_client_auth(
    builder: rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>,
    tls: &Tls,
) -> std::io::Result<rustls::ClientConfig> {
    match &tls.client {
        None => Ok(builder.with_no_client_auth()),
        Some(client) => {
            let (certs, key) = client.load()?;
            builder.with_client_auth_cert(certs, key).map_err(|e| {
                std::io::Error::other(format!(
                    "tls.cert_file {} with tls.key_file {}: {e}",
                    client.cert_file.display(),
                    client.key_file.display()
                ))
            })
        }
    }
}

/// Accepts any certificate (`tls.verify = false`); handshake signatures are still checked,
/// so the connection is at least the one the certificate's key made.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_trusts_a_ca_file_and_refuses_one_without_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let tls = Tls {
            verify: true,
            ca_file: Some(empty),
            client: None,
        };
        let e = client_config(&tls).unwrap_err().to_string();
        assert!(e.contains("holds no PEM certificate"), "{e}");
        assert!(client_config(&Tls {
            verify: false,
            ca_file: None,
            client: None,
        })
        .is_ok());
    }

    /// A receiver that closed the kept connection between two batches (a restart, an idle
    /// timeout): the next batch goes on a new connection instead of into the closed one.
    #[tokio::test]
    async fn a_connection_the_receiver_closed_is_not_written_into() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let mut d = TcpDeliver::new(address, Framing::Lf, Duration::from_secs(5));
        d.deliver(&[b"first"]).await.unwrap();
        let (mut one, _) = listener.accept().await.unwrap();
        let mut got = [0u8; 6];
        one.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"first\n");
        drop(one);
        tokio::time::sleep(Duration::from_millis(100)).await;
        d.deliver(&[b"second"]).await.unwrap();
        let (mut two, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("the second batch comes on a new connection")
            .unwrap();
        let mut got = [0u8; 7];
        two.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"second\n");
    }

    #[tokio::test]
    async fn udp_refuses_a_message_larger_than_a_datagram_and_sends_the_rest() {
        let receiver = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        receiver
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut udp = UdpDeliver::new(
            receiver.local_addr().unwrap().to_string(),
            Duration::from_secs(5),
        );
        let big = vec![b'x'; MAX_DATAGRAM + 1];
        let report = udp.deliver(&[b"one", &big, b"two"]).await.unwrap();
        assert_eq!(report.rejected.len(), 1);
        assert_eq!(
            (report.rejected[0].index, &*report.rejected[0].reason),
            (1, "too_large")
        );
        assert!(report.retry.is_empty());
        let mut buf = [0u8; 16];
        for want in [&b"one"[..], b"two"] {
            let n = receiver.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], want);
        }
    }
}
