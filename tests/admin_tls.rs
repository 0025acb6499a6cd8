//! The admin server over TLS with basic authentication and client certificates, as
//! Prometheus exporters offer it: Prometheus itself scrapes it (and is refused with a wrong
//! password or without a certificate), a renewed certificate is served without a restart,
//! and the probes stay open. Needs `prometheus` and `openssl` (scripts/setup-test-deps.sh).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A test CA and the certificates it signs (P-256 keys: quick to make).
struct Pki {
    dir: PathBuf,
    ca: PathBuf,
    ca_key: PathBuf,
}

impl Pki {
    fn new(dir: &Path) -> Pki {
        let (ca, ca_key) = (dir.join("ca.pem"), dir.join("ca.key"));
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=hubwatch test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
            "-keyout",
            arg(&ca_key),
            "-out",
            arg(&ca),
        ]);
        Pki {
            dir: dir.to_path_buf(),
            ca,
            ca_key,
        }
    }

    /// A certificate for 127.0.0.1 (server and client use), signed by the CA: `(cert, key)`.
    fn issue(&self, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key, csr, ext) = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
            self.dir.join(format!("{name}.csr")),
            self.dir.join(format!("{name}.ext")),
        );
        std::fs::write(
            &ext,
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n",
        )
        .unwrap();
        openssl(&[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-subj",
            &format!("/CN={name}"),
            "-keyout",
            arg(&key),
            "-out",
            arg(&csr),
        ]);
        openssl(&[
            "x509",
            "-req",
            "-in",
            arg(&csr),
            "-CA",
            arg(&self.ca),
            "-CAkey",
            arg(&self.ca_key),
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            arg(&ext),
            "-out",
            arg(&cert),
        ]);
        (cert, key)
    }
}

fn config(dir: &Path, export: &str) -> PathBuf {
    let text = format!(
        "query_files = [{:?}]\n{export}\n[[sources]]\ntype = \"file\"\nname = \"sample\"\npaths = [{:?}]\n",
        repo().join("deploy/config/aml-queries.toml").display().to_string(),
        fixture().display().to_string()
    );
    let p = dir.join("hubwatch.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn hash(password: &str) -> String {
    // Cost 4, bcrypt's lowest, keeps the test quick; hubwatch takes any cost.
    bcrypt::hash(password, 4).unwrap()
}

#[test]
fn prometheus_scrapes_over_tls_with_basic_auth_and_a_client_certificate() {
    which("prometheus");
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (server_cert, server_key) = pki.issue("hubwatch");
    let (client_cert, client_key) = pki.issue("prometheus");
    let config = config(
        dir.path(),
        &format!(
            "[export]\nlisten = \"127.0.0.1:0\"\n\
             [export.tls]\ncert_file = {:?}\nkey_file = {:?}\nclient_ca_file = {:?}\nclient_auth_type = \"RequireAndVerifyClientCert\"\n\
             [export.basic_auth_users]\nprometheus = {:?}\n",
            arg(&server_cert),
            arg(&server_key),
            arg(&pki.ca),
            hash("scrape-secret"),
        ),
    );
    let mut svc = Service::start(&config);
    svc.wait_for_line("all sources finished", Duration::from_secs(60));

    let job = |name: &str, password: &str, with_cert: bool| {
        let cert = if with_cert {
            format!(
                "      cert_file: {}\n      key_file: {}\n",
                arg(&client_cert),
                arg(&client_key)
            )
        } else {
            String::new()
        };
        format!(
            "  - job_name: {name}\n    scheme: https\n    tls_config:\n      ca_file: {}\n{cert}    basic_auth:\n      username: prometheus\n      password: {password}\n    static_configs:\n      - targets: ['{}']\n",
            arg(&pki.ca),
            svc.addr
        )
    };
    let prom = Prometheus::start(
        dir.path(),
        &format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n{}{}{}",
            job("good", "scrape-secret", true),
            job("wrong_password", "guess", true),
            job("no_certificate", "scrape-secret", false),
        ),
    );

    let value = |expr: &str| -> Option<f64> {
        let r = prom.query(expr)?;
        r.first()?["value"][1].as_str()?.parse().ok()
    };
    wait_until(
        "Prometheus scrapes hubwatch over TLS",
        Duration::from_secs(60),
        || {
            value("up{job=\"good\"}") == Some(1.0)
                && value("count(aml_cluster_nodes_running_nodes{job=\"good\"})").is_some()
        },
    );
    wait_until("the refused jobs are down", Duration::from_secs(30), || {
        value("up{job=\"wrong_password\"}") == Some(0.0)
            && value("up{job=\"no_certificate\"}") == Some(0.0)
    });
    // What hubwatch counted of the refusals, as Prometheus scraped it.
    wait_until("the refusals are counted", Duration::from_secs(30), || {
        value("hubwatch_admin_unauthorized_total{job=\"good\",reason=\"invalid\"}")
            .is_some_and(|n| n >= 1.0)
            && value(
                "hubwatch_admin_connections_closed_total{job=\"good\",reason=\"tls_handshake\"}",
            )
            .is_some_and(|n| n >= 1.0)
    });
    let nodes = value("sum(aml_cluster_nodes_running_nodes{job=\"good\"})").unwrap();
    assert!(nodes > 0.0, "the pack's gauges arrived: {nodes}");
    assert_eq!(
        value("count(aml_cluster_nodes_running_nodes{job!=\"good\"})"),
        None,
        "no other job got any: {}",
        prom.log()
    );
}

/// One HTTPS request on a new connection: the status line's code, the head, and the
/// server's leaf certificate.
async fn https_get(
    addr: &str,
    ca: &Path,
    path: &str,
    auth: Option<(&str, &str)>,
) -> std::io::Result<(u16, String, CertificateDer<'static>)> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned();
    let authorization = auth
        .map(|(u, p)| {
            let token = base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"));
            format!("Authorization: Basic {token}\r\n")
        })
        .unwrap_or_default();
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{authorization}\r\n")
            .as_bytes(),
    )
    .await?;
    let mut answer = Vec::new();
    tls.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer).to_string();
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, text, leaf))
}

fn der(cert: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(cert).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_renewed_certificate_is_served_without_a_restart_and_the_probes_stay_open() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (first, first_key) = pki.issue("first");
    let tls_dir = dir.path().join("tls");
    std::fs::create_dir(&tls_dir).unwrap();
    let (cert, key) = (tls_dir.join("tls.crt"), tls_dir.join("tls.key"));
    std::fs::copy(&first, &cert).unwrap();
    std::fs::copy(&first_key, &key).unwrap();
    // Relative to the configuration file, as the README says.
    let config = config(
        dir.path(),
        &format!(
            "[export]\nlisten = \"127.0.0.1:0\"\nquery_api = false\n\
             [export.tls]\ncert_file = \"tls/tls.crt\"\nkey_file = \"tls/tls.key\"\nmin_version = \"TLS12\"\n\
             [export.basic_auth_users]\nops = {:?}\n",
            hash("s3cret")
        ),
    );
    let mut svc = tokio::task::block_in_place(|| {
        let mut svc = Service::start(&config);
        svc.wait_for_line("all sources finished", Duration::from_secs(60));
        svc
    });
    let addr = svc.addr.clone();
    let ca = pki.ca.clone();
    let get = |path: &'static str, auth: Option<(&'static str, &'static str)>| {
        let (addr, ca) = (addr.clone(), ca.clone());
        async move { https_get(&addr, &ca, path, auth).await.unwrap() }
    };

    // The probes need no credentials; everything else does, and the query API is off.
    let (code, _, leaf) = get("/healthz", None).await;
    assert_eq!((code, &leaf), (200, &der(&first)));
    assert_eq!(get("/readyz", None).await.0, 200);
    let (code, head, _) = get("/metrics", None).await;
    assert_eq!(code, 401, "{head}");
    assert!(
        head.contains("www-authenticate: Basic realm=\"hubwatch\""),
        "{head}"
    );
    assert_eq!(get("/readyz?verbose", None).await.0, 401);
    assert_eq!(get("/metrics", Some(("ops", "wrong"))).await.0, 401);
    assert_eq!(get("/metrics", Some(("nobody", "s3cret"))).await.0, 401);
    let (code, metrics, _) = get("/metrics", Some(("ops", "s3cret"))).await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("aml_cluster_nodes_running_nodes{"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hubwatch_admin_unauthorized_total{reason=\"missing\"} 2"),
        "{metrics}"
    );
    assert!(
        metrics.contains("hubwatch_admin_unauthorized_total{reason=\"invalid\"} 2"),
        "{metrics}"
    );
    assert_eq!(get("/api/v1/queries", Some(("ops", "s3cret"))).await.0, 404);

    // Plain HTTP on the TLS port gets nothing, and is counted.
    let plain = http_get(&addr, "/healthz");
    assert!(
        !matches!(plain, Ok((200, _))),
        "plain HTTP was answered: {plain:?}"
    );

    // A renewal: written elsewhere and moved into place, as the kubelet swaps a Secret.
    let (second, second_key) = pki.issue("second");
    std::fs::copy(&second, tls_dir.join("new.crt")).unwrap();
    std::fs::copy(&second_key, tls_dir.join("new.key")).unwrap();
    std::fs::rename(tls_dir.join("new.key"), &key).unwrap();
    std::fs::rename(tls_dir.join("new.crt"), &cert).unwrap();
    let (code, _, leaf) = get("/healthz", None).await;
    assert_eq!(
        (code, &leaf),
        (200, &der(&second)),
        "the renewed certificate"
    );

    // A broken renewal (the key of another certificate) keeps the last good one.
    std::fs::copy(&first_key, tls_dir.join("new.key")).unwrap();
    std::fs::rename(tls_dir.join("new.key"), &key).unwrap();
    let (code, _, leaf) = get("/healthz", None).await;
    assert_eq!(
        (code, &leaf),
        (200, &der(&second)),
        "still the last good one"
    );
    let (_, metrics, _) = get("/metrics", Some(("ops", "s3cret"))).await;
    for want in [
        "hubwatch_admin_tls_reloads_total{result=\"ok\"} 1",
        "hubwatch_admin_tls_reloads_total{result=\"failed\"} 1",
        "hubwatch_admin_tls_last_reload_successful 0",
    ] {
        assert!(metrics.contains(want), "{want} in {metrics}");
    }
    let handshakes = metric(
        &metrics,
        "hubwatch_admin_connections_closed_total{reason=\"tls_handshake\"}",
    )
    .unwrap();
    assert!(handshakes >= 1.0, "the plain-HTTP client was counted");

    // The matching key put back: loaded at the next connection, and the gauge says so.
    std::fs::copy(&second_key, tls_dir.join("new.key")).unwrap();
    std::fs::rename(tls_dir.join("new.key"), &key).unwrap();
    let mut metrics = String::new();
    for _ in 0..50 {
        // /metrics may reuse a render for a few of its durations: ask until a new one.
        metrics = get("/metrics", Some(("ops", "s3cret"))).await.1;
        if metrics.contains("hubwatch_admin_tls_last_reload_successful 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for want in [
        "hubwatch_admin_tls_reloads_total{result=\"ok\"} 2",
        "hubwatch_admin_tls_last_reload_successful 1",
    ] {
        assert!(metrics.contains(want), "{want} in {metrics}");
    }
    tokio::task::block_in_place(|| {
        svc.wait_for_line(
            "TLS files changed but cannot be used",
            Duration::from_secs(5),
        );
        svc.terminate(Duration::from_secs(10));
    });
}

#[test]
fn tls_settings_that_cannot_work_stop_the_start_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let (cert, _) = pki.issue("a");
    let (_, other_key) = pki.issue("b");
    let config = config(
        dir.path(),
        &format!(
            "[export]\nlisten = \"127.0.0.1:0\"\n[export.tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            arg(&cert),
            arg(&other_key)
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_hubwatch"))
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("export.tls: the key in") && stderr.contains("does not match"),
        "{stderr}"
    );
}
