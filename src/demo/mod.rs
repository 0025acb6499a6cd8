//! The demo: a synthetic Azure ML estate published into the emulator and consumed by the
//! real AMQP source with the default query pack.

pub mod run;
pub mod workload;

pub use run::{run, DemoOptions};
