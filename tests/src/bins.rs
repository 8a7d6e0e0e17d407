//! Where the binaries under test are: next to the test executable, in the target
//! directory of this build.
//!
//! Cargo sets `CARGO_BIN_EXE_*` only for a package's own binaries, and `hotreload` and
//! `fake-nginx` belong to other packages (giving this package thin `[[bin]]`s would need
//! the CLI as a library). `cargo test --workspace` builds every binary of the workspace
//! into `target/<profile>/` before it runs a test, so the tests look there and, when a
//! binary is missing, say which command builds it. They never run cargo themselves: a
//! nested `cargo build` waits on the build lock, rebuilds behind the caller's back and
//! doubles the work of a test run.

use std::path::{Path, PathBuf};

/// `target/<profile>`: the test executable is `target/<profile>/deps/<name>-<hash>`.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

fn bin(name: &str, package: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: the end-to-end tests run the binaries of this build. Build them with \
         `cargo build -p {package} --bins` (or run `cargo test --workspace`, which does), \
         with the same profile and CARGO_TARGET_DIR as the tests",
        path.display()
    );
    path
}

/// Path of the `fake-nginx` binary of this build.
pub fn fake_nginx_bin() -> PathBuf {
    bin("fake-nginx", "fake-nginx")
}

/// Path of the `hotreload` binary of this build.
pub fn hotreload_bin() -> PathBuf {
    bin("hotreload", "hotreload-cli")
}
