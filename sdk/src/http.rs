//! A blocking HTTP client for adapters (being written).
