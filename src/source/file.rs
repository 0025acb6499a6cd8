//! File source (being written).
