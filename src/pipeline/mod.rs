//! The pipeline: parse → queries → results, with the dead-letter output beside it.

pub mod commit;
pub mod dead_letter;
pub mod engine;

pub use commit::StateCommitter;
pub use dead_letter::DeadLetter;
pub use engine::{Engine, EngineOptions, QuerySpec};
