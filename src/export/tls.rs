//! TLS on the admin server, configured as Prometheus exporters are (exporter-toolkit's web
//! configuration, in `[export.tls]`): a certificate and key, optionally client certificates
//! checked against a CA, a lowest protocol version.
//!
//! The files are looked at again for every new connection (a `stat` of each; they are read
//! only when one changed), so a renewed certificate — cert-manager rewriting a Secret, which
//! the kubelet swaps into the pod's volume — is served without a restart. A change that does
//! not load (a key that does not match, a half-written file) keeps the configuration that
//! did, is logged once, and is counted; the next change is tried again.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio_rustls::TlsAcceptor;

/// Whether and how clients prove who they are with a certificate: exporter-toolkit's
/// `client_auth_type` values that check what they are given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// No certificate asked for.
    NoClientCert,
    /// A certificate, if the client sends one, must be signed by `client_ca_file`.
    VerifyClientCertIfGiven,
    /// Every client must send a certificate signed by `client_ca_file`.
    RequireAndVerifyClientCert,
}

impl std::str::FromStr for ClientAuth {
    type Err = String;

    fn from_str(s: &str) -> Result<ClientAuth, String> {
        match s {
            "NoClientCert" => Ok(ClientAuth::NoClientCert),
            "VerifyClientCertIfGiven" => Ok(ClientAuth::VerifyClientCertIfGiven),
            "RequireAndVerifyClientCert" => Ok(ClientAuth::RequireAndVerifyClientCert),
            "RequestClientCert" | "RequireAnyClientCert" => Err(format!(
                "{s} is not supported: a certificate that is not checked proves nothing; use VerifyClientCertIfGiven or RequireAndVerifyClientCert with client_ca_file"
            )),
            _ => Err(format!(
                "unknown client_auth_type {s:?} (NoClientCert, VerifyClientCertIfGiven or RequireAndVerifyClientCert)"
            )),
        }
    }
}

/// `[export.tls]`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub client_ca_file: Option<PathBuf>,
    pub client_auth: ClientAuth,
    /// Only TLS 1.3, or 1.2 and 1.3 (the default).
    pub tls13_only: bool,
}

impl TlsSettings {
    fn files(&self) -> impl Iterator<Item = &Path> {
        [
            Some(&self.cert_file),
            Some(&self.key_file),
            self.client_ca_file.as_ref(),
        ]
        .into_iter()
        .flatten()
        .map(PathBuf::as_path)
    }
}

/// What identifies a file's contents without reading it: inode, length and modification
/// time (`None`: it cannot be looked at now).
type Stamp = Vec<Option<(u64, u64, std::time::SystemTime)>>;

fn stamp(settings: &TlsSettings) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    settings
        .files()
        .map(|p| {
            let m = std::fs::metadata(p).ok()?;
            Some((m.ino(), m.len(), m.modified().ok()?))
        })
        .collect()
}

/// The acceptor for new connections, loaded again when its files change.
pub struct Reloading {
    settings: TlsSettings,
    current: Mutex<Current>,
}

struct Current {
    /// The files as they were when `acceptor` was built from them.
    loaded: Stamp,
    acceptor: TlsAcceptor,
    /// The files as they were when they last failed to load (not tried again unchanged).
    failed: Option<Stamp>,
}

/// Whether a reload worked: the `result` label of `hubwatch_admin_tls_reloads_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reload {
    Ok,
    Failed,
}

impl Reloading {
    /// Loads the files; an error here stops the start (nothing would be served securely).
    pub fn load(settings: TlsSettings) -> anyhow::Result<Reloading> {
        let loaded = stamp(&settings);
        let acceptor = build(&settings)?;
        Ok(Reloading {
            settings,
            current: Mutex::new(Current {
                loaded,
                acceptor,
                failed: None,
            }),
        })
    }

    /// The acceptor for a new connection, and what a reload did if the files had changed.
    pub fn acceptor(&self) -> (TlsAcceptor, Option<Reload>) {
        let now = stamp(&self.settings);
        let mut cur = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if now == cur.loaded || cur.failed.as_ref() == Some(&now) {
            return (cur.acceptor.clone(), None);
        }
        match build(&self.settings) {
            Ok(acceptor) => {
                tracing::info!(cert_file = %self.settings.cert_file.display(), "admin server: TLS files changed; new connections use them");
                cur.acceptor = acceptor;
                cur.loaded = now;
                cur.failed = None;
                (cur.acceptor.clone(), Some(Reload::Ok))
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "admin server: TLS files changed but cannot be used; serving with the ones loaded before");
                cur.failed = Some(now);
                (cur.acceptor.clone(), Some(Reload::Failed))
            }
        }
    }
}

/// Reads the files and builds the server side. Errors name the file and setting, never
/// their contents.
fn build(s: &TlsSettings) -> anyhow::Result<TlsAcceptor> {
    let certs = certificates(&s.cert_file, "cert_file")?;
    let key = PrivateKeyDer::from_pem_file(&s.key_file).map_err(|e| {
        anyhow::anyhow!(
            "export.tls.key_file: {} holds no usable private key ({e})",
            s.key_file.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if s.tls13_only {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS12, &rustls::version::TLS13]
    };
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .context("export.tls: protocol versions")?;
    let builder = match (s.client_auth, &s.client_ca_file) {
        (ClientAuth::NoClientCert, _) => builder.with_no_client_auth(),
        (auth, Some(ca)) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates(ca, "client_ca_file")? {
                roots.add(c).with_context(|| {
                    format!(
                        "export.tls.client_ca_file: {} holds a certificate that cannot be a trust anchor",
                        ca.display()
                    )
                })?;
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
            let verifier = if auth == ClientAuth::VerifyClientCertIfGiven {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            builder.with_client_cert_verifier(
                verifier
                    .build()
                    .context("export.tls.client_ca_file: building the client verifier")?,
            )
        }
        (_, None) => anyhow::bail!("export.tls: client_auth_type needs client_ca_file"),
    };
    let mut config = builder.with_single_cert(certs, key).with_context(|| {
        format!(
            "export.tls: the key in {} does not match the certificate in {}",
            s.key_file.display(),
            s.cert_file.display()
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn certificates(path: &Path, field: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("export.tls.{field}: reading {}", path.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| {
            format!(
                "export.tls.{field}: {} is not PEM certificates",
                path.display()
            )
        })?;
    anyhow::ensure!(
        !certs.is_empty(),
        "export.tls.{field}: {} holds no certificate",
        path.display()
    );
    Ok(certs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_auth_types_are_exporter_toolkits_and_unchecked_ones_are_refused() {
        assert_eq!(
            "RequireAndVerifyClientCert".parse::<ClientAuth>(),
            Ok(ClientAuth::RequireAndVerifyClientCert)
        );
        let e = "RequireAnyClientCert".parse::<ClientAuth>().unwrap_err();
        assert!(e.contains("proves nothing"), "{e}");
        let e = "require".parse::<ClientAuth>().unwrap_err();
        assert!(e.contains("unknown client_auth_type"), "{e}");
    }

    #[test]
    fn unreadable_files_name_the_setting_and_not_their_contents() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("key.pem");
        std::fs::write(&secret, "hunter2-not-a-key\n").unwrap();
        let s = TlsSettings {
            cert_file: dir.path().join("missing.pem"),
            key_file: secret.clone(),
            client_ca_file: None,
            client_auth: ClientAuth::NoClientCert,
            tls13_only: false,
        };
        let e = format!("{:#}", Reloading::load(s.clone()).err().unwrap());
        assert!(e.starts_with("export.tls.cert_file: reading"), "{e}");
        let s = TlsSettings {
            cert_file: secret.clone(),
            ..s
        };
        let e = format!("{:#}", Reloading::load(s).err().unwrap());
        assert!(e.contains("holds no certificate"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
    }
}
