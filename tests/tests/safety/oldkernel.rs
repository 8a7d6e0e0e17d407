//! Issue 17: kernels without pidfds (Linux before 5.3). Every scenario here runs
//! `hotreload` — and the fake-nginx server itself — under `oldkernel`, a seccomp wrapper
//! (`../shared/tools/oldkernel.c`, built here with `cc`) that makes `pidfd_open`,
//! `pidfd_send_signal`, `pidfd_getfd` and `clone3` answer ENOSYS, as such a kernel does.
//! The outcomes must be those of a pidfd kernel: a full upgrade under load, rollbacks
//! from spawned and from drained, recovery after the orchestrator is SIGKILLed, hostile
//! pid files (no signal reaches a canary), an unreaped (zombie) old master; and
//! `--require-pidfd` refuses with exit 3 and changes nothing. The JSON result says
//! `"pidfd": false` under the wrapper and `true` without it.
//!
//! The runner, the server and the canary are the shared harness's (`hotreload_under`,
//! `FakeServer::start_under`); this file adds only the wrapper's build.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::common::*;
use hotreload_tests::fake::Fingerprint;
use hotreload_tests::hotreload_bin;
use hotreload_tests::procs;
use hotreload_tests::run::{hotreload_under, hotreload_under_killed_at};
use serde_json::Value;

/// The `oldkernel` wrapper, compiled once per test process. The tests that need it are
/// ignored (`missing_oldkernel`, set by `tests/build.rs`) when `cc` or the source is
/// missing, except under CI, where they run and fail here.
fn oldkernel() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let src = std::env::var_os("HOTRELOAD_OLDKERNEL_SRC")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                // In CI the shared directory is a sibling of the repository.
                Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/tools/oldkernel.c")
            });
        assert!(
            src.is_file(),
            "no oldkernel.c at {} (set HOTRELOAD_OLDKERNEL_SRC)",
            src.display()
        );
        // Next to the test binaries; built under a private name, then renamed into
        // place, so test processes running at the same time never see half a file.
        let dir = hotreload_bin().parent().unwrap().to_path_buf();
        let staged = dir.join(format!("oldkernel.{}.tmp", std::process::id()));
        let out = dir.join("oldkernel");
        let built = Command::new("cc")
            .args(["-O2", "-o"])
            .arg(&staged)
            .arg(&src)
            .output()
            .unwrap_or_else(|e| panic!("cannot run `cc` ({e}): install a C compiler"));
        assert!(
            built.status.success(),
            "cc -O2 -o {} {} failed:\n{}",
            staged.display(),
            src.display(),
            String::from_utf8_lossy(&built.stderr)
        );
        fs::rename(&staged, &out).expect("install the oldkernel wrapper");
        out
    })
}

/// `hotreload ARGS` as on a kernel before 5.3.
fn old<S: AsRef<str>>(args: &[S]) -> Run {
    hotreload_under(oldkernel(), args)
}

/// What must not change on a refusal: the harness's fingerprint (pid file, master, its
/// children, executable size), plus the old master and its children, the executable's
/// hash (builds of one length differ only in content) and whether a journal exists.
fn unchanged(server: &Server) -> (Fingerprint, Option<i32>, Vec<i32>, Option<String>, bool) {
    let old = read_pid(&server.inst.oldbin_file());
    (
        server.fingerprint(),
        old,
        old.map(children).unwrap_or_default(),
        sha(&server.installed),
        server.journal().exists(),
    )
}

/// Puts `new` at the installed path (a package manager before `spawn`), settled so
/// that no half-written descriptor of it stands in the way of an exec.
fn install(server: &Server, new: &Path) {
    server.install_by_hand(new);
    fake_nginx::harness::settle_executable(&server.installed).unwrap();
}

#[test]
#[cfg_attr(
    missing_oldkernel,
    ignore = "needs cc and ../shared/tools/oldkernel.c (or HOTRELOAD_OLDKERNEL_SRC)"
)]
fn full_upgrade_under_load_says_pidfd_false_and_true_without_the_wrapper() {
    hotreload_tests::watchdog(|| {
        let wrapper = oldkernel();
        let server = Server::start_under(wrapper, &[]);
        let old_master = server.master().unwrap();
        let v2 = server.build("2.0", &[]);
        let url = format!("http://{}/", server.inst.addr());
        let load = server.load();
        let run = old(&[
            "upgrade",
            "--pid-file",
            &server.pid_file(),
            "--new-binary",
            &v2.display().to_string(),
            "--health-url",
            &url,
            "--json",
        ]);
        run.expect_code(0);
        let result = run.result();
        assert_eq!(result["outcome"], "committed", "{run}");
        assert_eq!(result["pidfd"], false, "{run}");
        assert_eq!(
            run.count("pidfd_fallback"),
            1,
            "the fallback is reported once{run}"
        );
        // The config test ran: the new executable was started (posix_spawn: clone3 → clone).
        assert!(
            run.json_lines()
                .iter()
                .any(|l| l["type"] == "step_finished" && l["data"]["step"] == "config-test"),
            "no config test{run}"
        );
        assert_eq!(
            run.signals(),
            [
                "SIGUSR2->old-master",
                "SIGWINCH->old-master",
                "SIGQUIT->old-master"
            ],
            "{run}"
        );
        assert!(!alive(old_master), "old master still alive{run}");
        server.assert_healthy_steady("2.0", &sha(&v2).unwrap(), &run);
        assert_no_failures(&load.stop(), &run);

        // `status` says how processes are pinned, under the wrapper and without it.
        let status = old(&["status", "--pid-file", &server.pid_file()]);
        status
            .expect_code(0)
            .expect_stdout("pid + start time")
            .expect_stdout("pidfd_open is not available");
        let status = old(&["status", "--pid-file", &server.pid_file(), "--json"]);
        assert_eq!(status.status_json()["pidfd"], false, "{status}");
        assert_eq!(server.status()["pidfd"], true);
        hotreload(&["status", "--pid-file", &server.pid_file()])
            .expect_code(0)
            .expect_stdout("pinning     pidfd");

        // The same server, upgraded again with pidfds (and requiring them): true, no fallback.
        let v3 = server.build("3.0", &[]);
        let run = hotreload(&upgrade_args(&server, &v3, &["--require-pidfd"]));
        run.expect_code(0);
        assert_eq!(run.result()["pidfd"], true, "{run}");
        assert_eq!(run.count("pidfd_fallback"), 0, "{run}");
        server.assert_healthy_steady("3.0", &sha(&v3).unwrap(), &run);
    });
}

#[test]
#[cfg_attr(
    missing_oldkernel,
    ignore = "needs cc and ../shared/tools/oldkernel.c (or HOTRELOAD_OLDKERNEL_SRC)"
)]
fn require_pidfd_refuses_with_exit_3_and_changes_nothing() {
    hotreload_tests::watchdog(|| {
        let wrapper = oldkernel();
        let server = Server::start_under(wrapper, &[]);
        let pid_file = server.pid_file();
        let v2 = server.build("2.0", &[]);
        let v1 = server.build("1.0", &[]);
        let v1_sha = sha(&server.installed).unwrap();
        assert_eq!(
            sha(&v1).as_deref(),
            Some(v1_sha.as_str()),
            "a variant build is reproducible"
        );
        let needles = [
            "pidfd_open is not available",
            "Linux 5.3 or later needed",
            "--require-pidfd",
        ];
        #[track_caller]
        fn refused(run: &Run, needles: &[&str]) {
            run.expect_code(3);
            for n in needles {
                run.expect_stderr(n);
            }
            let result = run.result();
            assert_eq!(result["outcome"], "refused", "{run}");
            assert_eq!(result["pidfd"], false, "{run}");
            assert!(run.signals().is_empty(), "{run}");
        }

        // Steady: upgrade (also as a dry run) and spawn are refused.
        let before = unchanged(&server);
        for dry in [false, true] {
            let mut args = vec![
                "upgrade",
                "--pid-file",
                &pid_file,
                "--require-pidfd",
                "--json",
            ];
            let v2s = v2.display().to_string();
            args.extend(["--new-binary", v2s.as_str()]);
            if dry {
                args.push("--dry-run");
            }
            let run = old(&args);
            refused(&run, &needles);
            assert_eq!(unchanged(&server), before, "{run}");
        }
        let run = old(&[
            "spawn",
            "--pid-file",
            &pid_file,
            "--require-pidfd",
            "--json",
        ]);
        refused(&run, &needles);
        assert_eq!(unchanged(&server), before, "{run}");

        // Spawned (by the fallback): drain and rollback are refused.
        install(&server, &v2);
        old(&["spawn", "--pid-file", &pid_file]).expect_code(0);
        assert_eq!(server.settled_phase(), "spawned");
        let before = unchanged(&server);
        for cmd in ["drain", "rollback"] {
            let run = old(&[cmd, "--pid-file", &pid_file, "--require-pidfd", "--json"]);
            refused(&run, &needles);
            assert_eq!(unchanged(&server), before, "{run}");
        }

        // Drained: commit and rollback are refused.
        old(&["drain", "--pid-file", &pid_file]).expect_code(0);
        assert_eq!(server.settled_phase(), "drained");
        let before = unchanged(&server);
        for cmd in ["commit", "rollback"] {
            let run = old(&[cmd, "--pid-file", &pid_file, "--require-pidfd", "--json"]);
            refused(&run, &needles);
            assert_eq!(unchanged(&server), before, "{run}");
        }
        // Put the old executable back by hand, then let the fallback roll back.
        install(&server, &v1);
        let run = old(&["rollback", "--pid-file", &pid_file]);
        run.expect_code(0).expect_stdout("rolled back");
        server.assert_healthy_steady("1.0", &v1_sha, &run);
    });
}

#[test]
#[cfg_attr(
    missing_oldkernel,
    ignore = "needs cc and ../shared/tools/oldkernel.c (or HOTRELOAD_OLDKERNEL_SRC)"
)]
fn rollback_from_spawned_under_the_wrapper() {
    hotreload_tests::watchdog(|| {
        let wrapper = oldkernel();
        let server = Server::start_under(wrapper, &[]);
        let old_master = server.master().unwrap();
        let v2 = server.build("2.0", &[]);
        install(&server, &v2);
        let run = old(&["spawn", "--pid-file", &server.pid_file(), "--json"]);
        run.expect_code(0);
        assert_eq!(run.result()["pidfd"], false, "{run}");
        assert_eq!(server.settled_phase(), "spawned", "{run}");
        let new_master = server.master().unwrap();
        assert_ne!(new_master, old_master);
        let run = old(&["rollback", "--pid-file", &server.pid_file(), "--json"]);
        run.expect_code(0);
        let result = run.result();
        assert_eq!(result["state"]["phase"], "steady", "{run}");
        assert_eq!(result["pidfd"], false, "{run}");
        assert_eq!(server.master(), Some(old_master), "{run}");
        assert!(!alive(new_master), "new master still alive{run}");
        assert_eq!(procs::workers_of(old_master).len(), 2, "{run}");
        wait_until(
            "no stray process",
            || server.strays().is_empty(),
            || format!(": {:?}{run}", server.strays()),
        );
        assert!(server.serving().contains("1.0"), "{run}");
    });
}

#[test]
#[cfg_attr(
    missing_oldkernel,
    ignore = "needs cc and ../shared/tools/oldkernel.c (or HOTRELOAD_OLDKERNEL_SRC)"
)]
fn rollback_from_drained_under_the_wrapper_restores_the_executable() {
    hotreload_tests::watchdog(|| {
        let wrapper = oldkernel();
        let server = Server::start_under(wrapper, &[]);
        let old_master = server.master().unwrap();
        let v1_sha = sha(&server.installed).unwrap();
        let v2 = server.build("2.0", &[]);
        let load = server.load();
        let run = old(&[
            "upgrade",
            "--pid-file",
            &server.pid_file(),
            "--new-binary",
            &v2.display().to_string(),
            "--keep-old",
            "--json",
        ]);
        run.expect_code(0);
        assert_eq!(run.result()["outcome"], "kept-old", "{run}");
        assert_eq!(server.settled_phase(), "drained", "{run}");
        let new_master = server.master().unwrap();
        let run = old(&["rollback", "--pid-file", &server.pid_file(), "--json"]);
        run.expect_code(0);
        assert_eq!(
            run.signals(),
            ["SIGHUP->old-master", "SIGQUIT->new-master"],
            "{run}"
        );
        assert!(!alive(new_master), "{run}");
        assert_eq!(server.master(), Some(old_master), "{run}");
        server.assert_healthy_steady("1.0", &v1_sha, &run);
        assert_no_failures(&load.stop(), &run);
    });
}

/// Whether an event of the upgrade is where it is killed.
type KillPoint = fn(&Value) -> bool;

#[test]
#[cfg_attr(
    missing_oldkernel,
    ignore = "needs cc and ../shared/tools/oldkernel.c (or HOTRELOAD_OLDKERNEL_SRC)"
)]
fn orchestrator_killed_mid_upgrade_then_rolled_back_under_the_wrapper() {
    hotreload_tests::watchdog(|| {
        let wrapper = oldkernel();
        // After the swap (before the spawn signal), after the spawn signal, after the drain
        // signal: each leaves another phase, and each is finished by `hotreload rollback`.
        let points: [(&str, KillPoint); 3] = [
            ("after the swap", |e| {
                e["type"] == "step_finished" && e["data"]["step"] == "swap"
            }),
            ("after SIGUSR2", |e| {
                e["type"] == "signalled" && e["data"]["signal"] == "SIGUSR2"
            }),
            ("after SIGWINCH", |e| {
                e["type"] == "signalled" && e["data"]["signal"] == "SIGWINCH"
            }),
        ];
        for (name, at) in points {
            // The kill lands a moment after the event it follows, and the drain of idle
            // workers takes no time: an old master that ignores QUIT (and an hour to quit)
            // keeps a kill after WINCH from ever landing after a retirement.
            let server = Server::start_under(wrapper, &["ignore=QUIT"]);
            let old_master = server.master().unwrap();
            let v1_sha = sha(&server.installed).unwrap();
            let v2 = server.build("2.0", &[]);
            let args: Vec<String> = [
                "upgrade",
                "--pid-file",
                &server.pid_file(),
                "--new-binary",
                &v2.display().to_string(),
                "--quit-timeout",
                "1h",
                "--json",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            let seen = hotreload_under_killed_at(wrapper, &args, at);
            let context = format!(
                "\nkilled {name}; events:\n{}",
                seen.iter()
                    .map(Value::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            // A new master may still be starting: wait until the state is one a command fits.
            let phase = server.settled_phase();
            assert!(
                ["steady", "spawned", "drained"].contains(&phase.as_str()),
                "{phase}{context}"
            );
            let run = old(&["rollback", "--pid-file", &server.pid_file()]);
            run.expect_code(0).expect_stdout("rolled back");
            assert_eq!(server.master(), Some(old_master), "{run}{context}");
            server.assert_healthy_steady("1.0", &v1_sha, &format!("{run}{context}"));
        }
    });
}

#[test]
#[cfg_attr(
    missing_oldkernel,
    ignore = "needs cc and ../shared/tools/oldkernel.c (or HOTRELOAD_OLDKERNEL_SRC)"
)]
fn hostile_pid_files_send_no_signal_under_the_wrapper() {
    hotreload_tests::watchdog(|| {
        let wrapper = oldkernel();
        let mut canary = Canary::start();
        let bystander = Server::start_under(wrapper, &[]);
        let worker = procs::workers_of(bystander.master().unwrap())[0];
        let v2 = bystander.build("2.0", &[]);
        let dir = tempfile::tempdir().unwrap();
        for (content, needle) in [
            (format!("{}\n", canary.pid()), canary.pid().to_string()),
            (format!("{worker}\n"), worker.to_string()),
            ("1\n".to_owned(), "1".to_owned()),
        ] {
            let path = dir.path().join("server.pid");
            fs::write(&path, &content).unwrap();
            let before = unchanged(&bystander);
            for cmd in ["upgrade", "spawn", "drain", "commit", "rollback"] {
                let mut args = vec![
                    cmd.to_owned(),
                    "--pid-file".into(),
                    path.display().to_string(),
                    "--json".into(),
                ];
                if cmd == "upgrade" {
                    args.extend(["--new-binary".into(), v2.display().to_string()]);
                }
                let run = old(&args);
                run.expect_code(3).expect_stderr(&needle);
                assert!(run.signals().is_empty(), "{run}");
                canary.assert_alive(&run);
                assert_eq!(unchanged(&bystander), before, "the bystander changed{run}");
            }
            let run = old(&["status", "--pid-file", &path.display().to_string()]);
            run.expect_code(3);
            canary.assert_alive(&run);
        }
        assert!(alive(canary.pid()));
    });
}

#[test]
#[cfg_attr(
    missing_oldkernel,
    ignore = "needs cc and ../shared/tools/oldkernel.c (or HOTRELOAD_OLDKERNEL_SRC)"
)]
fn unreaped_old_master_counts_as_exited_under_the_wrapper() {
    hotreload_tests::watchdog(|| {
        let wrapper = oldkernel();
        // The daemonized master is re-parented to this test process, which never waits for
        // it: once retired it stays a zombie (as under a PID 1 that does not reap). This test
        // binary's other servers are re-parented here too, which changes nothing for them:
        // PID 1 on these machines does not reap either.
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
        assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
        let server = Server::start_under(wrapper, &[]);
        let old_master = server.master().unwrap();
        assert_eq!(
            procs::parent_of(old_master),
            Some(std::process::id() as i32),
            "not re-parented to this test"
        );
        let v2 = server.build("2.0", &[]);
        // An hour to quit: had the zombie not counted as exited, the command would hang
        // until COMMAND_TIMEOUT kills it (no exit code) instead of exiting 0.
        let run = old(&[
            "upgrade",
            "--pid-file",
            &server.pid_file(),
            "--new-binary",
            &v2.display().to_string(),
            "--quit-timeout",
            "1h",
            "--json",
        ]);
        run.expect_code(0);
        assert_eq!(run.result()["pidfd"], false, "{run}");
        assert_eq!(
            procs::stat(old_master).map(|s| s.state),
            Some('Z'),
            "old master is not a zombie{run}"
        );
        assert!(
            !run.signals().iter().any(|s| s.starts_with("SIGTERM")),
            "a fast stop was sent{run}"
        );
        server.assert_healthy_steady("2.0", &sha(&v2).unwrap(), &run);
        let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(old_master), None);
    });
}
