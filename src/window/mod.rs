//! Event-time windows: panes, accumulators, watermark, series state, cardinality caps.

pub mod sketch;
