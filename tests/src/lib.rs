//! Shared harness for the end-to-end tests in `tests/tests/`.
//!
//! Cargo only sets `CARGO_BIN_EXE_*` for tests of the package that owns a binary, so this
//! package asks cargo, once per test process, to build `fake-nginx` and `hotreload` into
//! the target directory the test binary runs from (a no-op after `cargo test --workspace`).

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
        // Always ask cargo, once per test process: a binary that exists may be stale (built
        // before the last edit of fixtures/ or hotreload-cli/), and testing a stale binary
        // passes or fails for the wrong reasons. When `cargo test --workspace` has just built
        // them this is a no-op that takes a fraction of a second.
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "fake-nginx", "-p", "hotreload-cli", "--bins"]);
        if dir.file_name().is_some_and(|name| name == "release") {
            cmd.arg("--release");
        }
        let status = cmd
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("run cargo build for the test binaries");
        assert!(
            status.success(),
            "cargo build of fake-nginx and hotreload failed"
        );
        for name in ["fake-nginx", "hotreload"] {
            assert!(
                dir.join(name).is_file(),
                "cargo built {name}, but not into {}: is CARGO_TARGET_DIR set differently for the build and the tests?",
                dir.display()
            );
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

pub mod server;

/// Session id of `pid` (field 6 of `/proc/<pid>/stat`), `None` once it is gone.
pub fn session_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

/// SIGKILLs every process of session `sid`: a daemonized server and everything it
/// started (new masters, workers, orphaned workers of a killed master) share it. Never
/// session 0 or 1, and never the test's own session.
pub fn kill_session(sid: i32) {
    if sid <= 1 || Some(sid) == session_of(std::process::id() as i32) {
        return;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        if session_of(pid) == Some(sid) {
            let _ = fake_nginx::harness::kill(pid, fake_nginx::Signal::Kill);
        }
    }
}
