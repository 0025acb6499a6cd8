//! rsyslog (Debian package, installed by scripts/setup-test-deps.sh) as a syslog receiver:
//! RFC 5424 over TCP on a loopback port, each message written to a file with its parsed
//! fields; killed on drop.

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

    /// The lines written so far.
    pub fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}
