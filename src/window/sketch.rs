//! Sketches (being written).
