//! KQL lexer (being written).
