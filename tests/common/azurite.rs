//! Azurite (installed by scripts/setup-test-deps.sh into tools/node_modules): the blob
//! service of the Azure Storage emulator, on a free loopback port, in memory; killed on drop.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::repo;

/// Azurite's documented development account and key (public constants).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

pub struct Azurite {
    child: Child,
    pub port: u16,
}

impl Drop for Azurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Azurite {
    pub fn start() -> Azurite {
        let bin = repo().join("tools/node_modules/.bin/azurite-blob");
        assert!(
            bin.exists(),
            "Azurite is not installed at {}: run scripts/setup-test-deps.sh (the test command does)",
            bin.display()
        );
        let port = super::free_port();
        let child = Command::new(bin)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args([
                "--loose",
                "--skipApiVersionCheck",
                "--inMemoryPersistence",
                "--disableTelemetry",
                "--silent",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start azurite");
        let azurite = Azurite { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "Azurite did not listen within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        azurite
    }

    /// The blob endpoint, path-style: `http://127.0.0.1:<port>/devstoreaccount1`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// A client of the container `name`, created (on the test's runtime) if missing.
    pub fn container(
        &self,
        rt: &tokio::runtime::Runtime,
        name: &str,
    ) -> hubwatch::blob::BlobContainer {
        let cs: hubwatch::blob::StorageConnectionString = self.connection_string().parse().unwrap();
        let container = hubwatch::blob::BlobContainer::from_connection_string(
            &cs,
            name,
            Duration::from_secs(10),
        )
        .unwrap();
        rt.block_on(container.create_if_missing()).unwrap();
        container
    }

    /// A connection string with the development key.
    pub fn connection_string(&self) -> String {
        format!(
            "DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};BlobEndpoint={};",
            self.endpoint()
        )
    }
}
