//! KQL: lexer, parser, syntax tree, checker (against `schemas/`), and the compiled plan that
//! the streaming engine runs.

pub mod ast;
pub mod diag;
pub mod lexer;
pub mod parser;

pub use diag::{Diagnostic, Diagnostics};
