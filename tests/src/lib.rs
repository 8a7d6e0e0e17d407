//! Shared harness for the end-to-end tests in `tests/tests/`.
//!
//! Cargo only sets `CARGO_BIN_EXE_*` for tests of the package that owns a binary, so this
//! package finds `fake-nginx` and `hotreload` in the target directory that `cargo test
//! --workspace` has just built them into, and builds them itself when they are missing
//! (for `cargo test -p hotreload-tests`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The directory holding this build's binaries (`target/<profile>`).
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    // target/<profile>/deps/<test-binary>
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

fn ensure_built() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = bin_dir();
        let missing = ["fake-nginx", "hotreload"]
            .iter()
            .any(|name| !dir.join(name).is_file());
        if missing {
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
                .args(["build", "-p", "fake-nginx", "-p", "hotreload-cli", "--bins"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("run cargo build for the test binaries");
            assert!(status.success(), "cargo build of fake-nginx and hotreload failed");
        }
        dir
    })
}

/// Path of the `fake-nginx` binary built for this test run.
pub fn fake_nginx_bin() -> PathBuf {
    ensure_built().join("fake-nginx")
}

/// Path of the `hotreload` binary built for this test run.
pub fn hotreload_bin() -> PathBuf {
    ensure_built().join("hotreload")
}
