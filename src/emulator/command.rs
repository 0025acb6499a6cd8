//! `hubwatch emulator --config FILE`: start the emulator, print where it listens and one
//! connection string per hub, and serve until Ctrl-C (or SIGTERM).

use super::{Emulator, EmulatorConfig};

/// Runs the emulator until the process is asked to stop.
pub async fn run_command(cfg: EmulatorConfig) -> anyhow::Result<()> {
    let hubs: Vec<String> = cfg.hubs.iter().map(|h| h.name.clone()).collect();
    let emulator = Emulator::start(cfg).await?;
    println!("emulator listening on amqp://{}/", emulator.local_addr());
    for hub in &hubs {
        println!("{hub}: {}", emulator.connection_string(hub));
    }
    println!(
        "Rust SDK: .with_custom_endpoint(\"amqp://{}/\") + open_with_connection_string(..); \
         Python SDK: the connection string as is. Ctrl-C stops.",
        emulator.local_addr()
    );
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
