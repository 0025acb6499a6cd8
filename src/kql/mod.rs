//! KQL: lexer, parser, syntax tree, checker (against `schemas/`), and the compiled plan that
//! the streaming engine runs.

pub mod ast;
pub mod check;
pub mod diag;
pub mod eval;
pub mod lexer;
pub mod parser;
pub mod plan;
mod xxh64;

pub use diag::{Diagnostic, Diagnostics};

#[cfg(test)]
mod check_tests;
