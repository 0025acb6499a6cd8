//! `amqps://` for the emulator: a rustls server with the configured certificate. Clients
//! that check certificates must be given the issuing CA (the Python SDK's
//! `connection_verify`, a custom rustls connector); connections that do not speak TLS fail
//! the handshake.

use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::config::TlsConfig;

/// The server side of the emulator's TLS.
#[derive(Clone)]
pub struct Acceptor(pub TlsAcceptor);

impl std::fmt::Debug for Acceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsAcceptor")
    }
}

/// Loads the certificate chain and key and builds the acceptor (TLS 1.2 and 1.3).
pub fn acceptor(cfg: &TlsConfig) -> anyhow::Result<Acceptor> {
    let certs = CertificateDer::pem_file_iter(&cfg.cert)
        .with_context(|| format!("tls.cert: reading {}", cfg.cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("tls.cert: {} is not PEM certificates", cfg.cert.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "tls.cert: {} holds no certificate",
        cfg.cert.display()
    );
    // The error never quotes the file's contents.
    let key = PrivateKeyDer::from_pem_file(&cfg.key).map_err(|e| {
        anyhow::anyhow!(
            "tls.key: {} holds no usable private key ({e})",
            cfg.key.display()
        )
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("tls: the key does not match the certificate")?;
    Ok(Acceptor(TlsAcceptor::from(Arc::new(config))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unreadable_or_empty_files_name_the_field() {
        let dir = tempfile::tempdir().unwrap();
        let missing = TlsConfig {
            cert: dir.path().join("nope.pem"),
            key: dir.path().join("nope.key"),
        };
        let e = acceptor(&missing).unwrap_err().to_string();
        assert!(e.starts_with("tls.cert: reading"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not pem\n").unwrap();
        let e = acceptor(&TlsConfig {
            cert: empty.clone(),
            key: empty,
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("holds no certificate"), "{e}");
    }
}
