//! `hubwatch emulator --config FILE`: start the emulator, print where it listens and one
//! connection string per hub, and serve until Ctrl-C (or SIGTERM).

use super::{Emulator, EmulatorConfig};

/// Runs the emulator until the process is asked to stop.
pub async fn run_command(cfg: EmulatorConfig) -> anyhow::Result<()> {
    let hubs: Vec<String> = cfg.hubs.iter().map(|h| h.name.clone()).collect();
    let emulator = Emulator::start(cfg).await?;
    let addr = emulator.local_addr();
    let scheme = if emulator.uses_tls() { "amqps" } else { "amqp" };
    println!("emulator listening on {scheme}://{addr}/");
    for hub in &hubs {
        println!("{hub}: {}", emulator.connection_string(hub));
    }
    if emulator.uses_tls() {
        println!(
            "Python SDK: custom_endpoint_address=\"sb://{addr}\", transport_type=TransportType.Amqp, \
             connection_verify=<the CA of tls.cert>. Ctrl-C stops."
        );
    } else {
        println!(
            "Rust SDK: .with_custom_endpoint(\"amqp://{addr}/\") + open_with_connection_string(..); \
             Python SDK: the connection string as is. Ctrl-C stops."
        );
    }
    wait_for_signal().await;
    emulator.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
