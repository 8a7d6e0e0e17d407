//! Tools some tests need beyond fake-nginx: strace, the real servers, systemd, Ansible.
//!
//! `tests/build.rs` sets `missing_<tool>` when one is missing, and those tests carry
//! `#[cfg_attr(missing_x, ignore = "needs x: run scripts/install-real-servers")]`, so they
//! show as ignored in `cargo test`'s summary instead of passing without running. Under
//! `CI=true` or `HOTRELOAD_REQUIRE_REAL_SERVERS=1` no cfg is set and such a test fails on
//! the missing tool with the message of [`require`].

use std::path::{Path, PathBuf};

/// Where `scripts/install-real-servers` unpacked the Debian builds
/// (`$HOTRELOAD_REAL_SERVERS_DIR`, default `<repo>/.cache/real-servers`).
pub fn real_servers_dir() -> PathBuf {
    match std::env::var_os("HOTRELOAD_REAL_SERVERS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/real-servers"),
    }
}

/// Panics, naming what is missing and how to install it, unless every path exists.
#[track_caller]
pub fn require(what: &str, paths: &[&Path]) {
    let missing: Vec<String> = paths
        .iter()
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "{what} is not installed (missing {}): run scripts/install-real-servers \
         (the build script marks this test ignored when the tool is missing, unless CI=true or \
         HOTRELOAD_REQUIRE_REAL_SERVERS=1)",
        missing.join(", ")
    );
}
