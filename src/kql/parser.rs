//! KQL parser (being written).
