//! syslog-ng as a second syslog receiver beside rsyslog, killed on drop.
//!
//! Debian's `syslog-ng-core` conflicts with rsyslog (installing one removes the other), so
//! it is not installed: scripts/setup-test-deps.sh unpacks its .deb, and those of the
//! libraries it needs that the machine lacks, into `tools/syslog-ng/`, and it runs from
//! there — `LD_LIBRARY_PATH` and `--module-path` into that tree, a configuration that needs
//! no SCL (`scl.conf` is in another package), and its pid, control and persist files in the
//! test's directory.
//!
//! [`SyslogNg::start`] listens on 127.0.0.1 for RFC 5424 (`syslog(… flags(syslog-protocol))`)
//! over TCP with octet counting, UDP and TLS (a self-signed certificate, [`SyslogNg::cert`]),
//! each on a free port, and writes each message as one line of JSON of what it parsed:
//!
//! ```json
//! {"input":"s_tcp","pri":131,"facility":"local0","facility_num":16,"severity":"err",
//!  "severity_num":3,"timestamp":"2024-05-05T09:07:03.123456+00:00","host":"hw-test",
//!  "app_name":"hubwatch","procid":"","msgid":"failed-jobs",
//!  "structured_data":"[hubwatch@32473 source=\"eh\" …]",
//!  "sd":{"hubwatch@32473":{"source":"eh","partition":"3","offset":"4096","seq":"7"}},
//!  "message":"…"}
//! ```
//!
//! `input` names the listener (`s_tcp`, `s_udp`, `s_tls`), `sd` is the structured data
//! parsed into its elements and parameters, and `procid` is empty for RFC 5424's `-`.

use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::rsyslog::self_signed;
use super::{free_port, repo};

/// Where scripts/setup-test-deps.sh unpacks the Debian packages.
pub fn root() -> PathBuf {
    repo().join("tools/syslog-ng")
}

/// The syslog-ng binary in [`root`]; its absence fails the test, saying what to run.
pub fn bin() -> PathBuf {
    let bin = root().join("usr/sbin/syslog-ng");
    assert!(
        bin.is_file(),
        "syslog-ng is not unpacked at {}: run scripts/setup-test-deps.sh (it unpacks Debian's \
         syslog-ng-core there, beside rsyslog; the test command does)",
        bin.display()
    );
    bin
}

/// The directories of the unpacked shared libraries, for `LD_LIBRARY_PATH`: syslog-ng's own
/// and the Debian libraries' (`usr/lib/x86_64-linux-gnu`, `lib/x86_64-linux-gnu`, …).
fn library_path() -> String {
    let root = root();
    let mut dirs = vec![root.join("usr/lib/syslog-ng")];
    for parent in [root.join("usr/lib"), root.join("lib")] {
        if let Ok(entries) = std::fs::read_dir(&parent) {
            dirs.extend(
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir() && p.to_string_lossy().ends_with("-linux-gnu")),
            );
        }
    }
    let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    dirs.join(":")
}

/// The module directory (`usr/lib/syslog-ng/3.38`): the one that holds `libafsocket.so`.
fn module_path() -> PathBuf {
    let lib = root().join("usr/lib/syslog-ng");
    std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("libafsocket.so").is_file())
        .unwrap_or_else(|| {
            panic!(
                "no syslog-ng modules under {}: run scripts/setup-test-deps.sh",
                lib.display()
            )
        })
}

/// A free UDP port on 127.0.0.1.
fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct SyslogNg {
    child: Child,
    /// RFC 5424 over TCP, octet-counted (RFC 6587).
    pub tcp: u16,
    /// RFC 5424 over UDP, a message a datagram (RFC 5426).
    pub udp: u16,
    /// RFC 5424 over TLS (RFC 5425).
    pub tls: u16,
    /// The TLS listener's self-signed certificate (for `127.0.0.1` and `localhost`): the CA
    /// a client must trust.
    pub cert: PathBuf,
    /// RFC 5424 over TLS that requires a client certificate: the one below (mutual TLS).
    pub mtls: u16,
    /// The client certificate [`SyslogNg::mtls`] trusts (self-signed) and its key.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// One JSON object a line, one line a message.
    pub out: PathBuf,
    stderr: PathBuf,
}

impl Drop for SyslogNg {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SyslogNg {
    /// Starts syslog-ng with its configuration, certificate, state and output in `dir`, and
    /// waits (at most 10 s) until it listens. Panics, saying what to run, when it is not
    /// unpacked, and with its own words when it exits or does not come up.
    pub fn start(dir: &Path) -> SyslogNg {
        let bin = bin();
        let (cert, key) = self_signed(dir);
        let client_dir = dir.join("client");
        std::fs::create_dir_all(&client_dir).unwrap();
        let (client_cert, client_key) = self_signed(&client_dir);
        let (tcp, udp, tls, mtls) = (free_port(), free_udp_port(), free_port(), free_port());
        let out = dir.join("syslog-ng.json");
        let conf = dir.join("syslog-ng.conf");
        let ports = Ports {
            tcp,
            udp,
            tls,
            mtls,
        };
        std::fs::write(&conf, config(&ports, &cert, &key, &client_cert, &out)).unwrap();
        let stderr = dir.join("syslog-ng.stderr");
        let mut child = Command::new(bin)
            // In the foreground, its own messages to stderr, as the current user (no
            // capabilities to drop), its state files in `dir`.
            .args(["--foreground", "--stderr", "--no-caps"])
            .arg(format!("--module-path={}", module_path().display()))
            .arg(format!("--cfgfile={}", conf.display()))
            .arg(format!("--pidfile={}", dir.join("syslog-ng.pid").display()))
            .arg(format!("--control={}", dir.join("syslog-ng.ctl").display()))
            .arg(format!(
                "--persist-file={}",
                dir.join("syslog-ng.persist").display()
            ))
            .env("LD_LIBRARY_PATH", library_path())
            .env("TZ", "UTC")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start syslog-ng");
        let said = || std::fs::read_to_string(&stderr).unwrap_or_default();
        let deadline = Instant::now() + Duration::from_secs(10);
        // "starting up" comes once every listener is bound (UDP cannot be probed by
        // connecting); the TCP connection checks it from the outside.
        while !said().contains("syslog-ng starting up")
            || TcpStream::connect(("127.0.0.1", tcp)).is_err()
        {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("syslog-ng exited ({status}):\n{}", said());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("syslog-ng did not listen within 10 s:\n{}", said());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        SyslogNg {
            child,
            tcp,
            udp,
            tls,
            cert,
            mtls,
            client_cert,
            client_key,
            out,
            stderr,
        }
    }

    /// The messages written so far, as syslog-ng parsed them.
    pub fn messages(&self) -> Vec<Value> {
        super::json_lines(&self.out)
    }

    /// Waits (at most `timeout`) until `n` messages were written; then returns them.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Value> {
        super::wait_for_items(
            "messages syslog-ng wrote",
            n,
            timeout,
            || self.messages(),
            || format!("its log:\n{}", self.log()),
        )
    }

    /// What syslog-ng said on stderr so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

struct Ports {
    tcp: u16,
    udp: u16,
    tls: u16,
    mtls: u16,
}

/// The configuration: four listeners into one file, with no `@include` (no SCL).
fn config(ports: &Ports, cert: &Path, key: &Path, client_cert: &Path, out: &Path) -> String {
    let Ports {
        tcp,
        udp,
        tls,
        mtls,
    } = ports;
    format!(
        r#"@version: 3.38
# The host as the message says; timestamps to the microsecond in UTC; messages to 256 KiB
# (the default cuts at 64 KiB); no statistics lines.
options {{ keep-hostname(yes); frac-digits(6); send-time-zone("+00:00"); log-msg-size(262144); stats-freq(0); }};
source s_tcp {{ syslog(ip("127.0.0.1") port({tcp}) transport("tcp") flags(syslog-protocol)); }};
source s_udp {{ syslog(ip("127.0.0.1") port({udp}) transport("udp") flags(syslog-protocol)); }};
source s_tls {{ syslog(ip("127.0.0.1") port({tls}) transport("tls") flags(syslog-protocol)
    tls(cert-file("{cert}") key-file("{key}") peer-verify(optional-untrusted))); }};
source s_mtls {{ syslog(ip("127.0.0.1") port({mtls}) transport("tls") flags(syslog-protocol)
    tls(cert-file("{cert}") key-file("{key}") ca-file("{client_cert}") peer-verify(required-trusted))); }};
destination d_json {{ file("{out}" template("$(format-json
    input=${{SOURCE}} pri=int(${{PRI}}) facility=${{FACILITY}} facility_num=int(${{FACILITY_NUM}})
    severity=${{SEVERITY}} severity_num=int(${{LEVEL_NUM}}) timestamp=${{S_ISODATE}} host=${{HOST}}
    app_name=${{PROGRAM}} procid=${{PID}} msgid=${{MSGID}} structured_data=${{SDATA}} message=${{MSG}}
    peer_cn=${{.tls.x509_cn}}
    --key .SDATA.* --rekey .SDATA.* --replace-prefix .SDATA.=sd.)\n")); }};
log {{ source(s_tcp); source(s_udp); source(s_tls); source(s_mtls); destination(d_json); }};
"#,
        cert = cert.display(),
        key = key.display(),
        client_cert = client_cert.display(),
        out = out.display(),
    )
}
