//! Helpers for hotreload-cli's integration tests.

pub mod schema;
