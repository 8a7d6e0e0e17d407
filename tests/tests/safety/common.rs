//! What the `safety` tests import from the shared harness: the fake-nginx server of
//! `hotreload_tests::fake` (executable in the test's own directory), `hotreload` runs (whole
//! or killed mid-way on one of its JSON events), ground truth from the pid files and
//! `/proc`, hashes, a canary, the `upgrade` arguments; and, defined here, runs as the
//! unprivileged user nobody for the trust tests. Nothing sleeps in place of a handshake.

#![allow(unused_imports)]

pub use hotreload_tests::fake::{
    assert_no_connection_failures, assert_no_failures, sha, upgrade_args, variant_at, Canary,
    FakeServer as Server,
};
pub use hotreload_tests::poll::{wait_until, LONG};
pub use hotreload_tests::procs::{alive, children_of as children, read_pid};
pub use hotreload_tests::run::{
    hotreload, hotreload_killed_at, is_step, KillOnDrop, Run, COMMAND_TIMEOUT,
};

/// Runs `script` with `sh -c` as uid/gid 65534 (nobody) with no supplementary groups: the
/// less-privileged user of the trust tests.
pub fn as_nobody(script: &str) -> std::process::Output {
    std::process::Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "sh",
            "-c",
            script,
        ])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run setpriv (util-linux)")
}

/// [`as_nobody`], which must succeed.
#[track_caller]
pub fn as_nobody_ok(script: &str) {
    let out = as_nobody(script);
    assert!(
        out.status.success(),
        "as uid 65534: `{script}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
