//! rsyslog (Debian package, installed by scripts/setup-test-deps.sh) as a syslog receiver,
//! killed on drop:
//! - [`Rsyslog::start`]: RFC 5424 over TCP on a loopback port, each message written to a
//!   file as one line of its parsed fields;
//! - [`Rsyslog::start_with`]: any of TCP, UDP, TLS (the GnuTLS driver, Debian package
//!   `rsyslog-gnutls`) and RELP (imrelp, Debian package `rsyslog-relp`), RFC 5424 or
//!   RFC 3164 alike, each message written as rsyslog's own JSON of what it parsed
//!   (`%jsonmesg%`: `pri`, `timereported`, `hostname`, `syslogtag`, `app-name`, `msgid`,
//!   `structured-data`, `msg`, `inputname`, …).

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Rsyslog {
    child: Child,
    pub out: PathBuf,
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Rsyslog {
    /// Listens on `127.0.0.1:port`; writes `APP=… MSGID=… SD=… MSG=…` lines to `dir/out.log`.
    pub fn start(dir: &Path, port: u16) -> Rsyslog {
        let bin = super::which("rsyslogd");
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let out = dir.join("out.log");
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!(
                "global(workDirectory=\"{work}\")\n\
                 module(load=\"imtcp\" MaxSessions=\"16\")\n\
                 input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"siem\")\n\
                 template(name=\"t5424\" type=\"string\" string=\"PRI=%pri% TS=%timereported:::date-rfc3339% HOST=%hostname% APP=%app-name% MSGID=%msgid% SD=%structured-data% MSG=%msg%\\n\")\n\
                 ruleset(name=\"siem\") {{ action(type=\"omfile\" file=\"{out}\" template=\"t5424\") }}\n",
                work = work.display(),
                out = out.display(),
            ),
        )
        .unwrap();
        let child = Command::new(bin)
            .args(["-n", "-f"])
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start rsyslogd");
        let r = Rsyslog { child, out };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        r
    }

    /// Listens on each of `inputs` (on 127.0.0.1); writes one JSON object per message to
    /// `dir/out.json`. Panics, saying what to install, when rsyslogd, its TLS driver or its
    /// RELP input is missing, and with rsyslogd's own words when it does not come up within
    /// 10 s.
    ///
    /// With a RELP input the main queue is `Direct`: each message is written to the file
    /// before imrelp answers for it, so what rsyslog acknowledged is in the file even when
    /// it is killed (its default in-memory queue answers first and writes later).
    pub fn start_with(dir: &Path, inputs: &Inputs) -> Rsyslog {
        let bin = super::which("rsyslogd");
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let out = dir.join("out.json");
        let mut conf = format!(
            // Messages up to 128 KiB whole (the default cuts at 8 KiB), and tabs kept as
            // tabs (the default writes `#011`): LEEF's attributes are tab-delimited.
            "global(workDirectory=\"{}\" maxMessageSize=\"128k\" parser.escapeControlCharacterTab=\"off\"",
            work.display()
        );
        if let Some(tls) = &inputs.tls {
            assert!(
                gtls_driver().is_some(),
                "rsyslog's TLS driver (lmnsd_gtls.so) is not installed: run scripts/setup-test-deps.sh (Debian package rsyslog-gnutls)"
            );
            conf += &format!(
                " DefaultNetstreamDriverCAFile=\"{cert}\" DefaultNetstreamDriverCertFile=\"{cert}\" DefaultNetstreamDriverKeyFile=\"{key}\"",
                cert = tls.cert.display(),
                key = tls.key.display()
            );
        }
        conf += ")\n";
        if inputs.relp.is_some() || inputs.relp_tls.is_some() {
            assert!(
                module("imrelp.so").is_some(),
                "rsyslog's RELP input (imrelp.so) is not installed: run scripts/setup-test-deps.sh (Debian package rsyslog-relp)"
            );
            conf += "main_queue(queue.type=\"Direct\")\nmodule(load=\"imrelp\")\n";
        }
        if inputs.tcp.is_some() || inputs.tls.is_some() {
            // One imtcp for both: a second load is refused; TLS is set per input.
            conf += "module(load=\"imtcp\" MaxSessions=\"16\")\n";
        }
        if inputs.udp.is_some() {
            conf += "module(load=\"imudp\")\n";
        }
        if let Some(port) = inputs.tcp {
            conf += &format!(
                "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"siem\")\n"
            );
        }
        if let Some(port) = inputs.udp {
            conf += &format!(
                "input(type=\"imudp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"siem\")\n"
            );
        }
        if let Some(port) = inputs.relp {
            conf += &format!(
                "input(type=\"imrelp\" address=\"127.0.0.1\" port=\"{port}\" ruleset=\"siem\")\n"
            );
        }
        if let Some(tls) = &inputs.relp_tls {
            conf += &format!(
                "input(type=\"imrelp\" address=\"127.0.0.1\" port=\"{}\" ruleset=\"siem\" tls=\"on\" \
                 tls.caCert=\"{cert}\" tls.myCert=\"{cert}\" tls.myPrivKey=\"{key}\" tls.authMode=\"certvalid\")\n",
                tls.port,
                cert = tls.cert.display(),
                key = tls.key.display()
            );
        }
        if let Some(tls) = &inputs.tls {
            conf += &format!(
                "input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{}\" ruleset=\"siem\" \
                 StreamDriver.Name=\"gtls\" StreamDriver.Mode=\"1\" StreamDriver.AuthMode=\"anon\")\n",
                tls.port
            );
        }
        conf += &format!(
            "template(name=\"json\" type=\"string\" string=\"%jsonmesg%\\n\")\n\
             ruleset(name=\"siem\") {{ action(type=\"omfile\" file=\"{}\" template=\"json\") }}\n",
            out.display()
        );
        let path = dir.join("rsyslog.conf");
        std::fs::write(&path, conf).unwrap();
        let errors = dir.join("rsyslogd.stderr");
        let mut child = Command::new(bin)
            .args(["-n", "-f"])
            .arg(&path)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            // RFC 3164 timestamps have no zone: the receiver's own is UTC, as hubwatch's.
            .env("TZ", "UTC")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&errors).unwrap())
            .spawn()
            .expect("start rsyslogd");
        let said = || std::fs::read_to_string(&errors).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let tcp_up = [
                inputs.tcp,
                inputs.tls.as_ref().map(|t| t.port),
                inputs.relp,
                inputs.relp_tls.as_ref().map(|t| t.port),
            ]
            .into_iter()
            .flatten()
            .all(|port| TcpStream::connect(("127.0.0.1", port)).is_ok());
            let udp_up = inputs.udp.is_none_or(udp_bound);
            if tcp_up && udp_up {
                break;
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!("rsyslogd exited ({status}): {}", said());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("rsyslogd did not listen within 10 s: {}", said());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Rsyslog { child, out }
    }

    /// The messages written so far (by [`Rsyslog::start_with`]), as rsyslog parsed them.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        super::json_lines(&self.out)
    }

    /// Waits (at most `timeout`) until `n` messages were written; then returns them.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
        super::wait_for_items(
            "messages rsyslog wrote",
            n,
            timeout,
            || self.messages(),
            String::new,
        )
    }

    /// The lines written so far: the whole ones (rsyslog may be writing the last).
    pub fn lines(&self) -> Vec<String> {
        super::whole_lines(&self.out)
    }
}

/// What [`Rsyslog::start_with`] listens on, each on 127.0.0.1.
#[derive(Debug, Default)]
pub struct Inputs {
    pub tcp: Option<u16>,
    pub udp: Option<u16>,
    pub tls: Option<TlsInput>,
    /// RELP (imrelp).
    pub relp: Option<u16>,
    /// RELP inside TLS (imrelp with `tls="on"`), requiring a client certificate that the
    /// input's own certificate (self-signed, its own CA) validates: the same one.
    pub relp_tls: Option<TlsInput>,
}

/// A TLS input (RFC 5425) with a certificate and its key (PEM), also trusted as the CA.
#[derive(Debug)]
pub struct TlsInput {
    pub port: u16,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// rsyslog's GnuTLS network stream driver, if installed.
pub fn gtls_driver() -> Option<PathBuf> {
    module("lmnsd_gtls.so")
}

/// The rsyslog module `file` (`imrelp.so`), if installed.
pub fn module(file: &str) -> Option<PathBuf> {
    let mut dirs = vec![
        PathBuf::from("/usr/lib/rsyslog"),
        PathBuf::from("/usr/lib64/rsyslog"),
    ];
    if let Ok(entries) = std::fs::read_dir("/usr/lib") {
        dirs.extend(entries.flatten().map(|e| e.path().join("rsyslog")));
    }
    dirs.into_iter().map(|d| d.join(file)).find(|f| f.is_file())
}

/// Whether a UDP socket is bound to `127.0.0.1:port` (Linux's /proc/net/udp): a UDP input
/// cannot be probed by connecting.
fn udp_bound(port: u16) -> bool {
    let want = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/udp")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .any(|local| local == want)
}

/// A self-signed certificate for `127.0.0.1` and `localhost` and its key, made by openssl
/// in `dir`: `(cert.pem, key.pem)`. Marked as no CA: WebPKI clients (rustls) refuse a CA
/// certificate as the server's own, which is what `req -x509` makes by default.
pub fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    super::openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-addext",
        "basicConstraints=critical,CA:FALSE",
        "-keyout",
        super::arg(&key),
        "-out",
        super::arg(&cert),
    ]);
    (cert, key)
}
