//! Issue 6, item 7: an old master that has exited but is never reaped (its parent never
//! waits, as in a container without an init) counts as exited; no wait hangs on it.
//!
//! This test binary makes itself a child subreaper (`PR_SET_CHILD_SUBREAPER`, which is
//! why it is a file of its own: the setting is process-wide). A daemonized fake-nginx
//! master is then re-parented to this process instead of PID 1, and this process never
//! waits for it: when the old master exits at retire it stays a zombie. hotreload must
//! count it as exited at once, not wait out a 60 s quit deadline.

use crate::common::*;
use hotreload_tests::procs;

#[test]
fn unreaped_old_master_counts_as_exited() {
    hotreload_tests::watchdog(|| {
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
        let server = Server::start(&[]);
        let old_master = server.master().unwrap();
        let ppid = procs::parent_of(old_master);
        assert_eq!(
            ppid,
            Some(std::process::id() as i32),
            "the master is not re-parented to this test (subreaper)"
        );
        let v2 = server.build("2.0", &[]);
        let load = server.load();
        let run = hotreload(&upgrade_args(&server, &v2, &["--quit-timeout", "60s"]));
        run.expect_code(0);
        // The old master is a zombie now (this test never reaped it)...
        let state = procs::stat(old_master).map(|s| s.state);
        assert_eq!(state, Some('Z'), "old master is not a zombie{run}");
        // ...and the retire step did not wait for a reap that never comes.
        let retire_ms = run.result()["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == "retire")
            .and_then(|s| s["duration_ms"].as_u64())
            .expect("retire step");
        assert!(
            retire_ms < 20_000,
            "retire took {retire_ms} ms: it waited on a zombie{run}"
        );
        server.assert_healthy_steady("2.0", &sha(&v2).unwrap(), &run);
        let status = server.status();
        assert_eq!(status["phase"], "steady", "{status}");
        assert_ne!(status["old_master"]["pid"], old_master, "{status}");
        let stats = load.stop();
        assert_no_failures(&stats, &run);
        // Reap it now (it is our child) so the test leaves nothing behind.
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(old_master), None);
    });
}
