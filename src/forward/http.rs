//! What the HTTP sinks share — one client (TLS verified by default, a CA file to add,
//! gzip, timeouts), the reading of a status as transient or permanent — and the generic
//! HTTP sink: each delivery one POST of the rows as NDJSON or a JSON array, with headers
//! from the configuration (Sumo Logic, Datadog, Logstash `http`, Loki-style gateways).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::buffered::{Deliver, Encode, Failure, Rejection, Report};
use super::Routed;

/// TLS for a sink's connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    /// Check the receiver's certificate and name (default). Off only for a test receiver.
    pub verify: bool,
    /// PEM certificates to trust besides the system's (a private CA).
    pub ca_file: Option<PathBuf>,
    /// A client certificate (PEM, the chain from the leaf) and its private key (PEM), for
    /// a receiver that requires one (mutual TLS).
    pub client: Option<ClientCert>,
}

/// Where a client certificate and its key are; their contents are read when the sink
/// starts and never shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl ClientCert {
    /// The certificate chain and the key, read and checked.
    pub fn load(
        &self,
    ) -> std::io::Result<(
        Vec<rustls::pki_types::CertificateDer<'static>>,
        rustls::pki_types::PrivateKeyDer<'static>,
    )> {
        use rustls::pki_types::pem::PemObject;
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| {
                std::io::Error::new(e.kind(), format!("reading {}: {e}", path.display()))
            })
        };
        let certs = rustls::pki_types::CertificateDer::pem_slice_iter(&read(&self.cert_file)?)
            .collect::<Result<Vec<_>, _>>()
            .ok()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                std::io::Error::other(format!(
                    "tls.cert_file {} holds no PEM certificate",
                    self.cert_file.display()
                ))
            })?;
        // Only the key's kind goes in a message, never its bytes.
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(&read(&self.key_file)?)
            .map_err(|_| {
                std::io::Error::other(format!(
                    "tls.key_file {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
                    self.key_file.display()
                ))
            })?;
        Ok((certs, key))
    }
}

impl Default for Tls {
    fn default() -> Tls {
        Tls {
            verify: true,
            ca_file: None,
            client: None,
        }
    }
}

/// A receiver's answer.
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Answer {
    /// The body as text for a message, cut short.
    pub fn text(&self) -> String {
        let t = String::from_utf8_lossy(&self.body);
        let t = t.trim();
        match t.char_indices().nth(300) {
            Some((at, _)) => format!("{}…", &t[..at]),
            None => t.to_string(),
        }
    }

    /// The receiver refuses what was sent (400, 413, 422): sent again it would be refused
    /// again, so it is dead-lettered. Every other error — throttling (429), the receiver's
    /// trouble (5xx), and also credentials or a URL it does not know (401, 403, 404), which
    /// an operator fixes — is retried, so that nothing is dropped for a configuration slip.
    pub fn about_the_data(&self) -> bool {
        matches!(self.status, 400 | 413 | 422)
    }
}

/// A URL as messages may show it: without credentials (`user:pass@`), query or fragment.
pub fn shown_url(url: &str) -> String {
    let url = url.split(['?', '#']).next().unwrap_or(url);
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    format!("{scheme}://{host}{path}")
}

/// One client per sink: connections kept alive, bodies gzipped when asked.
pub struct Client {
    http: reqwest::Client,
    gzip: bool,
    /// For messages: the receiver, without credentials or query ([`shown_url`]).
    pub receiver: String,
}

impl Client {
    pub fn new(
        receiver: &str,
        tls: &Tls,
        timeout: Duration,
        gzip: bool,
    ) -> std::io::Result<Client> {
        // No redirects: one would turn the POST into a bodiless GET whose 200 looked like a
        // delivery (and carry custom key headers to another host). A 3xx is retried and
        // says where it pointed.
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(50));
        if !tls.verify {
            b = b.tls_danger_accept_invalid_certs(true);
        }
        if let Some(ca) = &tls.ca_file {
            let pem = std::fs::read(ca).map_err(|e| {
                std::io::Error::new(
                    e.kind(),
                    format!("reading the CA file {}: {e}", ca.display()),
                )
            })?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                std::io::Error::other(format!("{} holds no PEM certificate: {e}", ca.display()))
            })?;
            b = b.tls_certs_merge(certs);
        }
        if let Some(client) = &tls.client {
            // Checked here with a message that names the files; reqwest takes them as one
            // PEM bundle.
            client.load()?;
            let mut pem = std::fs::read(&client.cert_file)?;
            pem.push(b'\n');
            pem.extend(std::fs::read(&client.key_file)?);
            let identity = reqwest::Identity::from_pem(&pem).map_err(|_| {
                std::io::Error::other(format!(
                    "tls.cert_file {} and tls.key_file {} are not a certificate and its key",
                    client.cert_file.display(),
                    client.key_file.display()
                ))
            })?;
            b = b.identity(identity);
        }
        let http = b
            .build()
            .map_err(|e| std::io::Error::other(format!("building the HTTP client: {e}")))?;
        Ok(Client {
            http,
            gzip,
            receiver: shown_url(receiver),
        })
    }

    /// POSTs `body` to `url`; a connection failure or timeout is a [`Failure`], any answer
    /// an [`Answer`].
    pub async fn post(
        &self,
        url: &str,
        headers: &[(String, String)],
        body: Vec<u8>,
    ) -> Result<Answer, Failure> {
        let mut req = self.http.post(url);
        for (k, v) in headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let body = if self.gzip {
            req = req.header("Content-Encoding", "gzip");
            gzip(&body)
        } else {
            body
        };
        let res = req.body(body).send().await.map_err(|e| self.failure(&e))?;
        let status = res.status().as_u16();
        let body = res.bytes().await.map_err(|e| self.failure(&e))?.to_vec();
        Ok(Answer { status, body })
    }

    fn failure(&self, e: &reqwest::Error) -> Failure {
        // reqwest's messages hold the URL: ours never carries a secret (tokens go in
        // headers), but say only the receiver anyway.
        let kind = if e.is_timeout() {
            "timeout"
        } else if e.is_connect() {
            "connect"
        } else {
            "transport"
        };
        let mut detail = format!("{kind} error talking to {}", self.receiver);
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        Failure::new(kind, detail)
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4),
        flate2::Compression::fast(),
    );
    enc.write_all(bytes).expect("writing to memory");
    enc.finish().expect("writing to memory")
}

/// The failure for a whole request the receiver answered with an error status.
pub fn status_failure(answer: &Answer, receiver: &str) -> Failure {
    Failure::new(
        format!("status_{}", answer.status),
        format!("{receiver} answered {}: {}", answer.status, answer.text()),
    )
}

/// A permanent refusal of a whole request: with one message, that message is
/// dead-lettered; with more, the sender sends them one at a time to find the one at fault.
pub fn refused(answer: &Answer, receiver: &str, messages: usize) -> Result<Report, Failure> {
    let kind = format!("status_{}", answer.status);
    let detail = format!("{receiver} answered {}: {}", answer.status, answer.text());
    if messages == 1 {
        Ok(Report {
            rejected: vec![Rejection {
                index: 0,
                reason: kind,
                detail,
            }],
            ..Report::default()
        })
    } else {
        Err(Failure {
            kind,
            detail: format!("{detail} (a batch of {messages}: sending them one at a time)"),
            split: true,
        })
    }
}

/// The body of a generic HTTP delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// One JSON object per line (`application/x-ndjson`).
    Ndjson,
    /// A JSON array of the objects (`application/json`).
    JsonArray,
}

/// The generic HTTP sink's message: the row's JSON.
pub struct RowJson;

impl Encode for RowJson {
    fn encode(&mut self, row: &Routed<'_>, out: &mut Vec<u8>) {
        out.extend_from_slice(row.json);
    }
}

/// POSTs rows to a URL.
pub struct HttpDeliver {
    pub client: Client,
    pub url: String,
    pub format: BodyFormat,
    pub headers: Vec<(String, String)>,
}

impl HttpDeliver {
    pub fn new(
        client: Client,
        url: String,
        format: BodyFormat,
        mut headers: Vec<(String, String)>,
    ) -> HttpDeliver {
        let content_type = match format {
            BodyFormat::Ndjson => "application/x-ndjson",
            BodyFormat::JsonArray => "application/json",
        };
        if !headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
        {
            headers.push(("Content-Type".into(), content_type.into()));
        }
        HttpDeliver {
            client,
            url,
            format,
            headers,
        }
    }
}

#[async_trait::async_trait]
impl Deliver for HttpDeliver {
    async fn deliver(&mut self, messages: &[&[u8]]) -> Result<Report, Failure> {
        let mut body = Vec::with_capacity(messages.iter().map(|m| m.len() + 1).sum::<usize>() + 2);
        match self.format {
            BodyFormat::Ndjson => {
                for m in messages {
                    body.extend_from_slice(m);
                    body.push(b'\n');
                }
            }
            BodyFormat::JsonArray => {
                body.push(b'[');
                for (i, m) in messages.iter().enumerate() {
                    if i > 0 {
                        body.push(b',');
                    }
                    body.extend_from_slice(m);
                }
                body.push(b']');
            }
        }
        let answer = self.client.post(&self.url, &self.headers, body).await?;
        answered(&answer, &self.client.receiver, messages.len())
    }
}

/// What an answer to a whole request means: taken (2xx), worth retrying (429, 5xx), or
/// refused for good.
pub fn answered(answer: &Answer, receiver: &str, messages: usize) -> Result<Report, Failure> {
    if (200..300).contains(&answer.status) {
        Ok(Report::default())
    } else if answer.about_the_data() {
        refused(answer, receiver, messages)
    } else {
        Err(status_failure(answer, receiver))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate and its key, by openssl.
    fn make_cert(dir: &std::path::Path) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("c.pem"), dir.join("k.pem"));
        let out = std::process::Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args([
                "ec_paramgen_curve:P-256",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=hw",
            ])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (cert, key)
    }

    #[test]
    fn a_client_certificate_loads_and_a_wrong_file_is_named_without_its_contents() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = make_cert(dir.path());
        let good = ClientCert {
            cert_file: cert.clone(),
            key_file: key.clone(),
        };
        let (chain, _) = good.load().unwrap();
        assert_eq!(chain.len(), 1);
        let tls = Tls {
            client: Some(good),
            ..Tls::default()
        };
        assert!(Client::new("https://x:1", &tls, Duration::from_secs(1), false).is_ok());

        // The certificate where the key should be, and the key where the certificate should.
        let swapped = ClientCert {
            cert_file: key.clone(),
            key_file: cert.clone(),
        };
        let e = swapped.load().unwrap_err().to_string();
        assert!(e.contains("tls.cert_file") && e.contains("k.pem"), "{e}");
        let key_text = std::fs::read_to_string(&key).unwrap();
        let body = key_text.lines().nth(1).unwrap();
        assert!(!e.contains(body), "no key material in messages: {e}");
        let no_key = ClientCert {
            cert_file: cert.clone(),
            key_file: cert.clone(),
        };
        let e = no_key.load().unwrap_err().to_string();
        assert!(
            e.contains("tls.key_file") && e.contains("holds no PEM private key"),
            "{e}"
        );
        let missing = ClientCert {
            cert_file: dir.path().join("nope.pem"),
            key_file: key,
        };
        let e = missing.load().unwrap_err().to_string();
        assert!(e.contains("nope.pem"), "{e}");
    }
}
