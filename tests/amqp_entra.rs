//! Microsoft Entra ID end to end, with the real client stack: `hubwatch run` with
//! `auth = "managed_identity"` gets its tokens through `azure_identity`'s managed identity
//! credential (the App Service flavour: `IDENTITY_ENDPOINT` + `IDENTITY_HEADER`) from a
//! token endpoint on loopback, and the Event Hubs SDK puts them on `$cbs` as `jwt` tokens
//! to the emulator, which checks signature, audience and expiry, and drops receivers whose
//! token expired. The endpoint reports a lifetime of 375 s, so the SDK renews after 10–20 s
//! (6 minutes ± 5 s before the reported expiry), but the tokens themselves expire after
//! 28 s: links that outlive several token lifetimes without a reconnect prove that renewed
//! tokens reached every connection in time. Wrong tokens: a clear error, a non-zero exit,
//! and no token in the output.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use hubwatch::emulator::{jwt, Emulator, EmulatorConfig, EntraConfig};

const HUB: &str = "entra";
const NAMESPACE: &str = "hubwatch-entra.servicebus.windows.net";
const SIGNING_KEY: &str = "emulator-entra-signing-key";
const IDENTITY_HEADER: &str = "identity-header-secret";
/// The lifetime the endpoint reports (`expires_on`), which schedules the SDK's renewal.
const REPORTED_LIFE: u64 = 375;
/// The lifetime the emulator enforces (the token's `exp`).
const REAL_LIFE: u64 = 28;

/// An App Service managed identity endpoint on loopback: checks the secret header and the
/// resource, and issues HS256 tokens signed with `key`, counting them.
struct TokenEndpoint {
    url: String,
    issued: Arc<AtomicU32>,
    stop: Arc<AtomicBool>,
}

impl TokenEndpoint {
    fn start(key: &'static str) -> TokenEndpoint {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/msi/token", listener.local_addr().unwrap());
        let issued = Arc::new(AtomicU32::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (n, halt) = (issued.clone(), stop.clone());
        std::thread::spawn(move || {
            // Bounded: the test stops it, and it never outlives five minutes.
            let deadline = Instant::now() + Duration::from_secs(300);
            while !halt.load(Ordering::SeqCst) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        stream
                            .set_read_timeout(Some(Duration::from_secs(5)))
                            .unwrap();
                        serve(stream, key, &n);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TokenEndpoint { url, issued, stop }
    }

    fn issued(&self) -> u32 {
        self.issued.load(Ordering::SeqCst)
    }
}

impl Drop for TokenEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn serve(stream: std::net::TcpStream, key: &str, issued: &AtomicU32) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    let _ = reader.read_line(&mut request_line);
    let mut secret_ok = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("x-identity-header") && value.trim() == IDENTITY_HEADER {
                secret_ok = true;
            }
        }
    }
    let resource_ok = request_line.contains("resource=https%3A%2F%2Feventhubs.azure.net")
        || request_line.contains("resource=https://eventhubs.azure.net");
    let (status, body) = if secret_ok && resource_ok {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let token = jwt::sign(
            &serde_json::json!({"aud": "https://eventhubs.azure.net", "exp": now + REAL_LIFE, "nbf": now, "oid": "test"}),
            key,
        );
        issued.fetch_add(1, Ordering::SeqCst);
        let body = serde_json::json!({
            "access_token": token,
            "expires_on": (now + REPORTED_LIFE).to_string(),
            "resource": "https://eventhubs.azure.net",
            "token_type": "Bearer",
        });
        ("200 OK", body.to_string())
    } else {
        (
            "400 Bad Request",
            format!(r#"{{"error":"bad request: {}"}}"#, request_line.trim()),
        )
    };
    let mut stream = stream;
    let _ = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

fn emulator(rt: &tokio::runtime::Runtime) -> Emulator {
    let mut cfg = EmulatorConfig::single_hub(HUB, 2);
    cfg.namespace = NAMESPACE.to_string();
    cfg.entra = Some(EntraConfig {
        signing_key: SIGNING_KEY.to_string(),
    });
    rt.block_on(Emulator::start(cfg)).unwrap()
}

fn config(dir: &std::path::Path, emulator: &Emulator) -> std::path::PathBuf {
    let path = dir.join("hubwatch.toml");
    std::fs::write(
        &path,
        format!(
            "[export]\nlisten = \"127.0.0.1:0\"\n\
             [[sources]]\ntype = \"amqp\"\nname = \"eh\"\nauth = \"managed_identity\"\n\
             fully_qualified_namespace = \"{NAMESPACE}\"\ncustom_endpoint = \"amqp://{}\"\n\
             event_hub = \"{HUB}\"\nstart = \"earliest\"\nbatch_max_wait = \"20ms\"\n\
             [[queries]]\nname = \"jobs\"\nkql = \"AmlComputeJobEvent | summarize n = count()\"\n",
            emulator.local_addr()
        ),
    )
    .unwrap();
    path
}

fn identity_env(endpoint: &TokenEndpoint) -> Vec<(&'static str, String)> {
    vec![
        ("IDENTITY_ENDPOINT", endpoint.url.clone()),
        ("IDENTITY_HEADER", IDENTITY_HEADER.to_string()),
        ("NO_PROXY", "127.0.0.1,localhost".to_string()),
        ("no_proxy", "127.0.0.1,localhost".to_string()),
    ]
}

#[test]
fn managed_identity_tokens_authorize_and_are_renewed_before_expiry() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emulator = emulator(&rt);
    for i in 0..300 {
        emulator.publish(HUB, None, job_body(i)).unwrap();
    }
    let endpoint = TokenEndpoint::start(SIGNING_KEY);
    let dir = tempfile::tempdir().unwrap();
    let env = identity_env(&endpoint);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let started = Instant::now();
    let svc = Service::start_with_env(&config(dir.path(), &emulator), &env);
    wait_until("300 events over Entra ID", Duration::from_secs(30), || {
        jobs_count(&svc) == 300
    });
    let first_tokens = endpoint.issued();
    assert!(first_tokens >= 1, "the identity endpoint issued the token");
    assert!(
        emulator.stats().cbs_tokens_accepted >= 2,
        "the discovery and partition connections put tokens on $cbs"
    );

    // Past the first tokens' real expiry (and a renewed one's): every receiver whose
    // connection did not get a renewed token in time has been dropped by now.
    std::thread::sleep(
        (started + Duration::from_secs(REAL_LIFE + 12)).saturating_duration_since(Instant::now()),
    );
    for i in 300..400 {
        emulator.publish(HUB, None, job_body(i)).unwrap();
    }
    wait_until("the next 100 events", Duration::from_secs(30), || {
        jobs_count(&svc) == 400
    });
    assert!(
        endpoint.issued() > first_tokens,
        "renewals fetched new tokens ({} issued)",
        endpoint.issued()
    );
    assert_eq!(emulator.stats().cbs_tokens_refused, 0);
    let (_, metrics) = svc.get("/metrics");
    let sum = |name: &str| -> f64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(name))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    assert_eq!(
        sum("hubwatch_amqp_reconnects_total{"),
        0.0,
        "no receiver outlived its token: renewal reached every connection in time"
    );
    assert_eq!(sum("hubwatch_amqp_errors_total{"), 0.0);
    drop(svc);
    drop(endpoint);
    rt.block_on(emulator.shutdown());
}

#[test]
fn a_token_the_namespace_refuses_stops_hubwatch_with_a_clear_error() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let emulator = emulator(&rt);
    emulator.publish(HUB, None, job_body(0)).unwrap();
    // Signed with a key the emulator does not trust: a forged or foreign token.
    let endpoint = TokenEndpoint::start("some-other-key");
    let dir = tempfile::tempdir().unwrap();
    let env = identity_env(&endpoint);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut svc = Service::start_with_env(&config(dir.path(), &emulator), &env);
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = svc.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "hubwatch kept running with a refused token"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        !status.success(),
        "a refused token must end in a non-zero exit"
    );
    // Everything the process printed: its stderr reader ends when the pipe closes.
    let mut output = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match svc
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(line) => output.push(line),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("stderr did not close"),
        }
    }
    let text = output.join("\n");
    assert!(
        text.contains("401") || text.to_ascii_lowercase().contains("unauthorized"),
        "the error says the token was refused:\n{text}"
    );
    assert!(endpoint.issued() >= 1);
    assert!(emulator.stats().cbs_tokens_refused >= 1);
    // No token (nor any part of one) in what hubwatch printed.
    let sample = jwt::sign(
        &serde_json::json!({"aud": "https://eventhubs.azure.net", "exp": 1}),
        "some-other-key",
    );
    let header = sample.split('.').next().unwrap();
    assert!(
        !text.contains(header),
        "a token leaked into the output:\n{text}"
    );
    drop(svc);
    rt.block_on(emulator.shutdown());
}
