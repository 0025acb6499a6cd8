//! The pipeline: parse → queries → results, with the dead-letter output beside it; the
//! commit point (`commit.rs`) and, with a shared state store, the copies of other
//! replicas' partitions that make results global (`global.rs`).

pub mod commit;
pub mod dead_letter;
pub mod engine;
pub mod global;

pub use commit::StateCommitter;
pub use dead_letter::DeadLetter;
pub use engine::{Engine, EngineOptions, Forwarding, QuerySpec};
