//! End-to-end tests of the `hotreload` binary against real fake-nginx servers: every
//! command and exit code, the JSON Lines output, step commands across separate
//! invocations, and bad input that must be refused without signalling anything.
//!
//! Each test owns its server (temporary prefix, free port), its temporary directory and
//! its canary; guards kill every process on drop, also when an assertion panics. No test
//! sleeps in place of a handshake: `hotreload` itself waits on events, and the tests only
//! look at the state it leaves.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use fake_nginx::harness::Instance;
use hotreload_tests::fake::{variant_at, Canary, FakeServer as Server};
use hotreload_tests::hotreload_bin;
use hotreload_tests::procs::{alive, children_of as children, read_pid};
use hotreload_tests::run::{hotreload, COMMAND_TIMEOUT};
use serde_json::Value;

/// Builds a fake-nginx variant (a copy of the fake-nginx binary with a version and
/// faults baked in) at `dir/name`.
fn build(dir: &Path, name: &str, version: &str, faults: &[&str]) -> PathBuf {
    let out = dir.join(name);
    variant_at(&out, version, faults);
    out
}

const ALL_COMMANDS: &[&str] = &["status", "upgrade", "spawn", "drain", "commit", "rollback"];

/// Arguments for `command` on `pid_file` (upgrade gets a valid new binary, so only the
/// pid file is wrong).
fn command_args(command: &str, pid_file: &str, new_binary: &Path, json: bool) -> Vec<String> {
    let mut args = vec![command.to_owned(), "--pid-file".into(), pid_file.to_owned()];
    if command == "upgrade" {
        args.extend(["--new-binary".into(), new_binary.display().to_string()]);
    }
    if json {
        args.push("--json".into());
    }
    args
}

/// Runs every command against a bad pid file: each must exit 3, name `needle` (the file
/// or the pid) on stderr, send no signal (canary alive, bystander server unchanged).
fn assert_every_command_refuses(bad_pid_file: &Path, needle: &str, canary: &mut Canary) {
    let server = Server::start_as("fake-nginx");
    let v2 = server.build("2.0", &[]);
    let before = server.fingerprint();
    for command in ALL_COMMANDS {
        let run = hotreload(&command_args(
            command,
            &bad_pid_file.display().to_string(),
            &v2,
            false,
        ));
        run.expect_code(3)
            .expect_stderr("hotreload: ")
            .expect_stderr(needle);
        canary.assert_alive(&run);
        assert_eq!(
            server.fingerprint(),
            before,
            "bystander server changed{run}"
        );

        let run = hotreload(&command_args(
            command,
            &bad_pid_file.display().to_string(),
            &v2,
            true,
        ));
        run.expect_code(3);
        if *command == "status"
            && run.stdout.lines().count() == 1
            && run.status_json()["phase"].is_string()
        {
            // status --json prints the status object even when it is unknown.
            assert_eq!(run.status_json()["phase"], "unknown", "{run}");
        } else {
            let result = run.result();
            assert_eq!(result["outcome"], "refused", "{run}");
            assert!(
                result["error"].as_str().unwrap_or("").contains(needle),
                "result.error lacks {needle:?}{run}"
            );
        }
        canary.assert_alive(&run);
        assert_eq!(
            server.fingerprint(),
            before,
            "bystander server changed{run}"
        );
    }
}

fn bad_pid_file(content: Option<&str>) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("server.pid");
    if let Some(content) = content {
        fs::write(&path, content).unwrap();
    }
    (dir, path)
}

// ---------------------------------------------------------------------------------------
// Help and usage
// ---------------------------------------------------------------------------------------

#[test]
fn help_lists_commands_and_exit_codes() {
    hotreload_tests::watchdog(|| {
        let run = hotreload(&["--help"]);
        run.expect_code(0).expect_stdout("Exit codes:");
        for needle in [
            "status",
            "upgrade",
            "spawn",
            "drain",
            "commit",
            "rollback",
            "demo",
            "  4  another upgrade holds the lock",
        ] {
            run.expect_stdout(needle);
        }
        for command in ALL_COMMANDS.iter().chain(&["demo"]) {
            let run = hotreload(&[command, "--help"]);
            run.expect_code(0).expect_stdout("Example");
        }
        hotreload(&["upgrade", "--help"])
            .expect_stdout("USR2")
            .expect_stdout("--drain-timeout");
        hotreload(&["drain", "--help"]).expect_stdout("WINCH");
        hotreload(&["commit", "--help"]).expect_stdout("QUIT");
        hotreload(&["rollback", "--help"]).expect_stdout("HUP");
    });
}

#[test]
fn usage_errors_exit_2() {
    hotreload_tests::watchdog(|| {
        for args in [
            &[][..],
            &["status"],
            &["upgrade", "--pid-file", "/tmp/x.pid"],
            &[
                "upgrade",
                "--pid-file",
                "/tmp/x.pid",
                "--new-binary",
                "/bin/true",
                "--swap",
                "move",
            ],
            &[
                "upgrade",
                "--pid-file",
                "/tmp/x.pid",
                "--new-binary",
                "/bin/true",
                "--spawn-timeout",
                "soon",
            ],
            &[
                "upgrade",
                "--pid-file",
                "/tmp/x.pid",
                "--new-binary",
                "/bin/true",
                "--health-url",
                "ftp://x/",
            ],
            &[
                "upgrade",
                "--pid-file",
                "/tmp/x.pid",
                "--new-binary",
                "/bin/true",
                "--health-tcp",
                "nowhere",
            ],
            &["status", "--pid-file", "/tmp/x.pid", "--flavor", "apache"],
            &["frobnicate"],
        ] {
            let run = hotreload(args);
            run.expect_code(2);
        }
    });
}

// ---------------------------------------------------------------------------------------
// status
// ---------------------------------------------------------------------------------------

#[test]
fn status_reports_a_steady_server() {
    hotreload_tests::watchdog(|| {
        let server = Server::start_as("fake-nginx");
        let master = server.master_now();
        let workers = children(master);

        let run = hotreload(&["status", "--pid-file", &server.pid_file()]);
        run.expect_code(0)
            .expect_stdout("steady")
            .expect_stdout(&master.to_string());
        for worker in &workers {
            run.expect_stdout(&worker.to_string());
        }

        let run = hotreload(&["status", "--pid-file", &server.pid_file(), "--json"]);
        run.expect_code(0);
        let lines: Vec<&str> = run.stdout.lines().collect();
        assert_eq!(lines.len(), 1, "status --json prints one object{run}");
        let status: Value = serde_json::from_str(lines[0]).unwrap();
        let status = &status["data"]["status"];
        assert_eq!(status["phase"], "steady", "{run}");
        assert_eq!(status["old_master"]["pid"], master, "{run}");
        assert!(status["new_master"].is_null(), "{run}");
        let mut seen: Vec<i32> = status["old_master"]["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_i64().unwrap() as i32)
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, workers, "{run}");
        assert!(
            status["old_master"]["exe"]
                .as_str()
                .unwrap()
                .contains("fake-nginx"),
            "{run}"
        );
        assert!(status["old_master"]["started_at"].is_string(), "{run}");
        assert!(status["old_master"]["start_time"].is_u64(), "{run}");
        assert!(status["evidence"].is_array(), "{run}");
    });
}

// ---------------------------------------------------------------------------------------
// Bad input: refused with a clear message, exit 3, no signal sent
// ---------------------------------------------------------------------------------------

#[test]
fn missing_pid_file_is_refused() {
    hotreload_tests::watchdog(|| {
        let mut canary = Canary::start();
        let (_dir, path) = bad_pid_file(None);
        assert_every_command_refuses(&path, &path.display().to_string(), &mut canary);
    });
}

#[test]
fn empty_pid_file_is_refused() {
    hotreload_tests::watchdog(|| {
        let mut canary = Canary::start();
        let (_dir, path) = bad_pid_file(Some(""));
        assert_every_command_refuses(&path, &path.display().to_string(), &mut canary);
    });
}

#[test]
fn garbage_pid_file_is_refused() {
    hotreload_tests::watchdog(|| {
        let mut canary = Canary::start();
        let (_dir, path) = bad_pid_file(Some("hello world\n"));
        assert_every_command_refuses(&path, &path.display().to_string(), &mut canary);
    });
}

#[test]
fn pid_0_1_and_minus_1_are_refused() {
    hotreload_tests::watchdog(|| {
        let mut canary = Canary::start();
        for content in ["0\n", "1\n", "-1\n"] {
            let (_dir, path) = bad_pid_file(Some(content));
            assert_every_command_refuses(&path, &path.display().to_string(), &mut canary);
        }
    });
}

#[test]
fn pid_of_an_unrelated_process_is_refused_and_it_survives() {
    hotreload_tests::watchdog(|| {
        let mut canary = Canary::start();
        let (_dir, path) = bad_pid_file(Some(&format!("{}\n", canary.pid())));
        assert_every_command_refuses(&path, &canary.pid().to_string(), &mut canary);
        assert!(alive(canary.pid()));
    });
}

#[test]
fn pid_of_a_worker_is_refused() {
    hotreload_tests::watchdog(|| {
        let mut canary = Canary::start();
        let server = Server::start_as("fake-nginx");
        let worker = children(server.master_now())[0];
        let (_dir, path) = bad_pid_file(Some(&format!("{worker}\n")));
        let before = server.fingerprint();
        assert_every_command_refuses(&path, &worker.to_string(), &mut canary);
        assert_eq!(
            server.fingerprint(),
            before,
            "the server whose worker was named changed"
        );
    });
}

#[test]
fn missing_or_non_executable_new_binary_is_refused() {
    hotreload_tests::watchdog(|| {
        let server = Server::start_as("fake-nginx");
        let before = server.fingerprint();
        let missing = server.dir.path().join("no-such-binary");
        let not_exec = server.dir.path().join("not-executable");
        fs::write(&not_exec, b"#!/bin/sh\n").unwrap();
        fs::set_permissions(&not_exec, fs::Permissions::from_mode(0o644)).unwrap();
        for new_binary in [&missing, &not_exec] {
            let shown = new_binary.display().to_string();
            let run = hotreload(&[
                "upgrade",
                "--pid-file",
                &server.pid_file(),
                "--new-binary",
                &shown,
            ]);
            run.expect_code(3).expect_stderr(&shown);
            assert_eq!(server.fingerprint(), before, "server changed{run}");
            let run = hotreload(&[
                "upgrade",
                "--pid-file",
                &server.pid_file(),
                "--new-binary",
                &shown,
                "--json",
            ]);
            run.expect_code(3);
            let result = run.result();
            assert_eq!(result["outcome"], "refused", "{run}");
            assert!(result["error"].as_str().unwrap().contains(&shown), "{run}");
            assert_eq!(server.fingerprint(), before, "server changed{run}");
        }
        assert!(server.serving().contains("1.0"));
    });
}

#[test]
fn failed_config_test_is_refused() {
    hotreload_tests::watchdog(|| {
        let server = Server::start_as("fake-nginx");
        let before = server.fingerprint();
        let bad = server.build("2.0", &["bad-config"]);
        let run = hotreload(&[
            "upgrade",
            "--pid-file",
            &server.pid_file(),
            "--new-binary",
            &bad.display().to_string(),
            "--json",
        ]);
        run.expect_code(3).expect_stderr("config");
        assert_eq!(run.result()["outcome"], "refused", "{run}");
        assert_eq!(server.fingerprint(), before, "server changed{run}");
    });
}

#[test]
fn a_held_lock_exits_4() {
    hotreload_tests::watchdog(|| {
        let server = Server::start_as("fake-nginx");
        let v2 = server.build("2.0", &[]);
        let before = server.fingerprint();
        let _lock = hotreload_core::Target::new(server.inst.pid_file())
            .lock()
            .expect("take the lock");
        let run = hotreload(&[
            "upgrade",
            "--pid-file",
            &server.pid_file(),
            "--new-binary",
            &v2.display().to_string(),
        ]);
        run.expect_code(4).expect_stderr("lock");
        let run = hotreload(&["spawn", "--pid-file", &server.pid_file(), "--json"]);
        run.expect_code(4);
        assert_eq!(run.result()["outcome"], "locked", "{run}");
        assert_eq!(server.fingerprint(), before, "server changed{run}");
    });
}

// ---------------------------------------------------------------------------------------
// upgrade
// ---------------------------------------------------------------------------------------

#[test]
fn upgrade_commits_the_new_version() {
    hotreload_tests::watchdog(|| {
        let server = Server::start_as("fake-nginx");
        let old = server.master_now();
        let v2 = server.build("2.0", &[]);
        let url = format!("http://{}/", server.inst.addr());
        let run = hotreload(&[
            "upgrade",
            "--pid-file",
            &server.pid_file(),
            "--new-binary",
            &v2.display().to_string(),
            "--health-url",
            &url,
            "--drain-timeout",
            "1m",
        ]);
        run.expect_code(0)
            .expect_stdout("upgraded")
            .expect_stdout("SIGUSR2")
            .expect_stdout("time per step");
        let new = server.master_now();
        assert_ne!(new, old, "{run}");
        assert!(!alive(old), "old master still alive{run}");
        assert!(!server.inst.oldbin_file().exists(), "{run}");
        assert!(server.serving().contains("2.0"), "{run}");
        assert_eq!(
            fs::read(&server.installed).unwrap(),
            fs::read(&v2).unwrap(),
            "new binary not installed{run}"
        );

        let status = hotreload(&["status", "--pid-file", &server.pid_file(), "--json"]);
        let status = status.status_json();
        assert_eq!(status["phase"], "steady");
        assert_eq!(status["old_master"]["pid"], new);
    });
}

#[test]
fn upgrade_json_lines_events_and_result() {
    hotreload_tests::watchdog(|| {
        let server = Server::start_as("fake-nginx");
        let old = server.master_now();
        let v2 = server.build("2.0", &[]);
        let run = hotreload(&[
            "upgrade",
            "--pid-file",
            &server.pid_file(),
            "--new-binary",
            &v2.display().to_string(),
            "--health-tcp",
            &server.inst.addr().to_string(),
            "--json",
        ]);
        run.expect_code(0);
        let lines = run.json_lines();
        let of_type = |t: &'static str| {
            lines
                .iter()
                .filter(move |l| l["type"] == t)
                .map(|l| &l["data"])
        };
        assert!(
            of_type("step_started").any(|d| d["step"] == "spawn"),
            "{run}"
        );
        assert!(
            of_type("step_finished").all(|d| d["duration_ms"].is_u64()),
            "{run}"
        );
        assert!(
            of_type("signalled")
                .any(|d| d["signal"] == "SIGUSR2" && d["pid"] == old && d["role"] == "old-master"),
            "no USR2 to the old master{run}"
        );
        assert!(
            of_type("signalled").any(|d| d["signal"] == "SIGWINCH"),
            "{run}"
        );
        assert!(
            of_type("signalled").any(|d| d["signal"] == "SIGQUIT"),
            "{run}"
        );
        let result = run.result();
        assert_eq!(result["command"], "upgrade");
        assert_eq!(result["outcome"], "committed");
        assert_eq!(result["exit_code"], 0);
        assert_eq!(result["old_pid"], old);
        assert_eq!(result["new_pid"], server.master_now());
        assert!(result["error"].is_null());
        let steps: Vec<&str> = result["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["step"].as_str().unwrap())
            .collect();
        for step in ["spawn", "drain", "retire"] {
            assert!(
                steps.contains(&step),
                "step {step} missing from {steps:?}{run}"
            );
        }
        assert!(server.serving().contains("2.0"), "{run}");
    });
}

#[test]
fn upgrade_to_a_crashing_binary_rolls_back_exit_1() {
    hotreload_tests::watchdog(|| {
        let server = Server::start_as("fake-nginx");
        let before = server.fingerprint();
        let v1_bytes = fs::read(&server.installed).unwrap();
        let broken = server.build("3.0", &["crash-on-start"]);
        let run = hotreload(&[
            "upgrade",
            "--pid-file",
            &server.pid_file(),
            "--new-binary",
            &broken.display().to_string(),
            "--json",
        ]);
        run.expect_code(1)
            .expect_stderr("hotreload: upgrade failed");
        let result = run.result();
        assert_eq!(result["outcome"], "rolled-back", "{run}");
        assert!(result["error"].is_string(), "{run}");
        assert_eq!(server.master_now(), before.master, "{run}");
        assert!(server.serving().contains("1.0"), "{run}");
        assert_eq!(
            fs::read(&server.installed).unwrap(),
            v1_bytes,
            "old executable not restored{run}"
        );
        assert!(!server.inst.oldbin_file().exists(), "{run}");
    });
}

#[test]
fn upgrade_dry_run_changes_nothing() {
    hotreload_tests::watchdog(|| {
        let server = Server::start_as("fake-nginx");
        let before = server.fingerprint();
        let v2 = server.build("2.0", &[]);
        let run = hotreload(&[
            "upgrade",
            "--pid-file",
            &server.pid_file(),
            "--new-binary",
            &v2.display().to_string(),
            "--dry-run",
        ]);
        run.expect_code(0).expect_stdout("dry run");
        let run = hotreload(&[
            "upgrade",
            "--pid-file",
            &server.pid_file(),
            "--new-binary",
            &v2.display().to_string(),
            "--dry-run",
            "--json",
        ]);
        run.expect_code(0);
        assert_eq!(run.result()["outcome"], "dry-run", "{run}");
        assert!(
            run.json_lines().iter().all(|l| l["type"] != "signalled"),
            "a dry run signalled{run}"
        );
        assert_eq!(server.fingerprint(), before, "{run}");
    });
}

#[test]
fn upgrade_keep_old_then_commit() {
    hotreload_tests::watchdog(|| {
        let server = Server::start_as("fake-nginx");
        let old = server.master_now();
        let v2 = server.build("2.0", &[]);
        let run = hotreload(&[
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
        assert!(alive(old), "old master retired despite --keep-old{run}");
        assert_eq!(phase(&server), "drained");

        let run = hotreload(&["commit", "--pid-file", &server.pid_file()]);
        run.expect_code(0).expect_stdout("committed");
        assert!(!alive(old), "{run}");
        assert_eq!(phase(&server), "steady");
        assert!(server.serving().contains("2.0"), "{run}");
    });
}

#[test]
fn upgrade_keep_old_then_rollback_restores_the_executable() {
    hotreload_tests::watchdog(|| {
        let server = Server::start_as("fake-nginx");
        let old = server.master_now();
        let v1_bytes = fs::read(&server.installed).unwrap();
        let v2 = server.build("2.0", &[]);
        hotreload(&[
            "upgrade",
            "--pid-file",
            &server.pid_file(),
            "--new-binary",
            &v2.display().to_string(),
            "--keep-old",
        ])
        .expect_code(0);
        let run = hotreload(&["rollback", "--pid-file", &server.pid_file(), "--json"]);
        run.expect_code(0);
        assert_eq!(run.result()["outcome"], "ok", "{run}");
        assert_eq!(server.master_now(), old, "{run}");
        assert_eq!(phase(&server), "steady");
        assert!(server.serving().contains("1.0"), "{run}");
        assert_eq!(
            fs::read(&server.installed).unwrap(),
            v1_bytes,
            "old executable not restored{run}"
        );
    });
}

fn phase(server: &Server) -> String {
    let run = hotreload(&["status", "--pid-file", &server.pid_file(), "--json"]);
    let status = run.status_json();
    status["phase"]
        .as_str()
        .unwrap_or_else(|| panic!("no phase{run}"))
        .to_owned()
}

// ---------------------------------------------------------------------------------------
// Step commands, each in its own invocation
// ---------------------------------------------------------------------------------------

#[test]
fn steps_spawn_drain_commit() {
    hotreload_tests::watchdog(|| {
        let server = Server::start_as("fake-nginx");
        let old = server.master_now();
        server.install_by_hand(&server.build("2.0", &[]));

        let run = hotreload(&["spawn", "--pid-file", &server.pid_file()]);
        run.expect_code(0)
            .expect_stdout("SIGUSR2")
            .expect_stdout("spawned");
        let new = server.master_now();
        assert_ne!(new, old);
        let status = hotreload(&["status", "--pid-file", &server.pid_file(), "--json"]);
        let status = status.status_json();
        assert_eq!(status["phase"], "spawned");
        assert_eq!(status["old_master"]["pid"], old);
        assert_eq!(status["new_master"]["pid"], new);
        assert_eq!(status["new_master"]["workers"].as_array().unwrap().len(), 2);

        let run = hotreload(&["drain", "--pid-file", &server.pid_file(), "--json"]);
        run.expect_code(0);
        let result = run.result();
        assert_eq!(
            (result["old_pid"].clone(), result["new_pid"].clone()),
            (old.into(), new.into()),
            "{run}"
        );
        assert_eq!(result["state"]["phase"], "drained", "{run}");
        assert_eq!(phase(&server), "drained");
        // The new master is a child of the old one: it is all that is left.
        assert_eq!(children(old), vec![new], "old workers left{run}");

        let run = hotreload(&["commit", "--pid-file", &server.pid_file()]);
        run.expect_code(0).expect_stdout("SIGQUIT");
        assert_eq!(phase(&server), "steady");
        assert!(!alive(old));
        assert_eq!(server.master_now(), new);
        assert!(server.serving().contains("2.0"));
    });
}

#[test]
fn steps_spawn_rollback() {
    hotreload_tests::watchdog(|| {
        let server = Server::start_as("fake-nginx");
        let old = server.master_now();
        server.install_by_hand(&server.build("2.0", &[]));
        hotreload(&["spawn", "--pid-file", &server.pid_file()]).expect_code(0);
        let new = server.master_now();
        let run = hotreload(&["rollback", "--pid-file", &server.pid_file()]);
        run.expect_code(0).expect_stdout("rolled back");
        assert_eq!(phase(&server), "steady");
        assert_eq!(server.master_now(), old, "{run}");
        assert!(!alive(new), "new master still alive{run}");
        assert!(server.serving().contains("1.0"), "{run}");
    });
}

#[test]
fn steps_drain_rollback() {
    hotreload_tests::watchdog(|| {
        let server = Server::start_as("fake-nginx");
        let old = server.master_now();
        server.install_by_hand(&server.build("2.0", &[]));
        hotreload(&["spawn", "--pid-file", &server.pid_file()]).expect_code(0);
        let new = server.master_now();
        hotreload(&["drain", "--pid-file", &server.pid_file()]).expect_code(0);
        let run = hotreload(&["rollback", "--pid-file", &server.pid_file(), "--json"]);
        run.expect_code(0);
        let result = run.result();
        assert_eq!(result["state"]["phase"], "steady", "{run}");
        assert_eq!(result["old_pid"], old, "{run}");
        assert_eq!(
            result["new_pid"], new,
            "the retired new master is named{run}"
        );
        assert_eq!(server.master_now(), old, "{run}");
        assert!(!alive(new), "{run}");
        assert_eq!(
            children(old).len(),
            2,
            "old master did not get its workers back{run}"
        );
        assert!(server.serving().contains("1.0"), "{run}");
    });
}

#[test]
fn step_commands_in_the_wrong_phase_are_refused() {
    hotreload_tests::watchdog(|| {
        let server = Server::start_as("fake-nginx");
        let before = server.fingerprint();
        for command in ["drain", "commit", "rollback"] {
            let run = hotreload(&[command, "--pid-file", &server.pid_file()]);
            run.expect_code(3)
                .expect_stderr("`steady`")
                .expect_stderr("hotreload spawn");
            assert_eq!(server.fingerprint(), before, "{run}");
        }
        server.install_by_hand(&server.build("2.0", &[]));
        hotreload(&["spawn", "--pid-file", &server.pid_file()]).expect_code(0);
        let spawned = server.fingerprint();
        let run = hotreload(&["spawn", "--pid-file", &server.pid_file(), "--json"]);
        run.expect_code(3)
            .expect_stderr("`spawned`")
            .expect_stderr("hotreload drain");
        let result = run.result();
        assert_eq!(result["outcome"], "refused", "{run}");
        assert_eq!(result["state"]["phase"], "spawned", "{run}");
        hotreload(&["commit", "--pid-file", &server.pid_file()])
            .expect_code(3)
            .expect_stderr("`spawned`");
        assert_eq!(server.fingerprint(), spawned);
        let run = hotreload(&[
            "upgrade",
            "--pid-file",
            &server.pid_file(),
            "--new-binary",
            &server.installed.display().to_string(),
        ]);
        run.expect_code(3);
        assert_eq!(server.fingerprint(), spawned, "{run}");
    });
}

#[test]
fn old_master_that_will_not_quit_exits_5_with_the_state() {
    hotreload_tests::watchdog(|| {
        // The old build ignores QUIT and TERM (hotreload escalates from one to the other), so
        // the retire step cannot finish: hotreload must say so, show the state and what to do.
        let dir = tempfile::tempdir().unwrap();
        let installed = build(
            &dir.path().join("sbin"),
            "fake-nginx",
            "1.0",
            &["ignore=QUIT", "ignore=TERM"],
        );
        let instance = Instance::builder(&installed)
            .workers(1)
            .daemon(true)
            .start()
            .expect("start");
        let _watch = hotreload_tests::fake::watch(&instance);
        let pid_file = instance.pid_file().display().to_string();
        let v2 = build(&dir.path().join("builds"), "fake-nginx-2.0", "2.0", &[]);
        let run = hotreload(&[
            "upgrade",
            "--pid-file",
            &pid_file,
            "--new-binary",
            &v2.display().to_string(),
            "--quit-timeout",
            "2s",
            "--json",
        ]);
        run.expect_code(5).expect_stderr("what to do");
        let result = run.result();
        assert_eq!(result["outcome"], "unrecovered", "{run}");
        assert!(result["state"]["phase"].is_string(), "{run}");
        assert!(
            result["hint"].as_str().unwrap().contains("manual action"),
            "{run}"
        );
        assert_eq!(result["state"]["phase"], "drained", "{run}");

        // The step command meets the same old master: same code, state printed, advice given.
        let run = hotreload(&["commit", "--pid-file", &pid_file, "--quit-timeout", "1s"]);
        run.expect_code(5)
            .expect_stderr("hotreload: commit failed")
            .expect_stderr("what to do: manual action needed")
            .expect_stdout("state now:")
            .expect_stdout("drained");
    });
}

#[test]
fn spawn_of_a_crashing_binary_exits_1_and_the_old_master_serves() {
    hotreload_tests::watchdog(|| {
        let server = Server::start_as("fake-nginx");
        let old = server.master_now();
        server.install_by_hand(&server.build("3.0", &["crash-on-start"]));
        let run = hotreload(&["spawn", "--pid-file", &server.pid_file(), "--json"]);
        run.expect_code(1).expect_stderr("hotreload: spawn failed");
        let result = run.result();
        assert_eq!(result["outcome"], "rolled-back", "{run}");
        assert_eq!(result["state"]["phase"], "steady", "{run}");
        assert_eq!(server.master_now(), old, "{run}");
        assert!(!server.inst.oldbin_file().exists(), "{run}");
        assert!(server.serving().contains("1.0"), "{run}");
    });
}

#[test]
fn upgrade_with_copy_swap_and_explicit_binary() {
    hotreload_tests::watchdog(|| {
        let server = Server::start_as("fake-nginx");
        let v2 = server.build("2.0", &[]);
        let run = hotreload(&[
            "upgrade",
            "--pid-file",
            &server.pid_file(),
            "--new-binary",
            &v2.display().to_string(),
            "--binary",
            &server.installed.display().to_string(),
            "--swap",
            "copy",
            "--skip-config-test",
            "--spawn-timeout",
            "1m",
            "--json",
        ]);
        run.expect_code(0);
        let lines = run.json_lines();
        assert!(
            !lines
                .iter()
                .any(|l| l["type"] == "step_started" && l["data"]["step"] == "config-test"),
            "--skip-config-test ran the config test{run}"
        );
        assert_eq!(run.result()["outcome"], "committed", "{run}");
        assert!(server.serving().contains("2.0"), "{run}");
    });
}

/// A server whose 1.0 workers take a minute to finish on a graceful stop (long requests).
fn slow_draining_server() -> (tempfile::TempDir, Instance, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("hotreload-cli-test-")
        .tempdir()
        .unwrap();
    let installed = build(
        &dir.path().join("sbin"),
        "fake-nginx",
        "1.0",
        &["slow-drain=60s"],
    );
    let instance = Instance::builder(&installed)
        .workers(2)
        .daemon(true)
        .start()
        .expect("start fake-nginx");
    let _watch = hotreload_tests::fake::watch(&instance);
    let v2 = build(&dir.path().join("builds"), "fake-nginx-2.0", "2.0", &[]);
    (dir, instance, v2)
}

#[test]
fn drain_timeout_then_drain_terminate() {
    hotreload_tests::watchdog(|| {
        let (dir, instance, v2) = slow_draining_server();
        let pid_file = instance.pid_file().display().to_string();
        let old = read_pid(instance.pid_file()).unwrap();
        let staged = dir.path().join("sbin/.staged");
        fs::copy(&v2, &staged).unwrap();
        fs::rename(&staged, dir.path().join("sbin/fake-nginx")).unwrap();
        hotreload(&["spawn", "--pid-file", &pid_file]).expect_code(0);

        let run = hotreload(&["drain", "--pid-file", &pid_file, "--drain-timeout", "2s"]);
        run.expect_code(5)
            .expect_stderr("hotreload: drain failed")
            .expect_stderr("--terminate")
            .expect_stdout("spawned");
        let run = hotreload(&["drain", "--pid-file", &pid_file, "--terminate", "--json"]);
        run.expect_code(0);
        assert!(
            run.json_lines()
                .iter()
                .any(|l| l["type"] == "signalled" && l["data"]["signal"] == "SIGTERM"),
            "no TERM to the old workers{run}"
        );
        assert_eq!(run.result()["state"]["phase"], "drained", "{run}");
        hotreload(&["commit", "--pid-file", &pid_file]).expect_code(0);
        assert!(!alive(old));
        assert!(instance.get("/").unwrap().server.contains("2.0"));
    });
}

#[test]
fn upgrade_drain_timeout_rolls_back_or_terminates() {
    hotreload_tests::watchdog(|| {
        let (_dir, instance, v2) = slow_draining_server();
        let pid_file = instance.pid_file().display().to_string();
        let old = read_pid(instance.pid_file()).unwrap();
        let v2 = v2.display().to_string();
        let run = hotreload(&[
            "upgrade",
            "--pid-file",
            &pid_file,
            "--new-binary",
            &v2,
            "--drain-timeout",
            "2s",
            "--json",
        ]);
        run.expect_code(1);
        assert_eq!(run.result()["outcome"], "rolled-back", "{run}");
        assert_eq!(read_pid(instance.pid_file()), Some(old), "{run}");
        assert!(instance.get("/").unwrap().server.contains("1.0"), "{run}");

        let run = hotreload(&[
            "upgrade",
            "--pid-file",
            &pid_file,
            "--new-binary",
            &v2,
            "--drain-timeout",
            "2s",
            "--on-drain-timeout",
            "terminate",
        ]);
        run.expect_code(0).expect_stdout("SIGTERM");
        assert!(!alive(old), "{run}");
        assert!(instance.get("/").unwrap().server.contains("2.0"), "{run}");
    });
}

#[test]
fn daemon_off_under_a_live_parent_is_refused() {
    hotreload_tests::watchdog(|| {
        // nginx ignores USR2 when not daemonized while its original parent (here: this test,
        // as systemd or a container runtime would be) is alive: refuse instead of signalling.
        let dir = tempfile::Builder::new()
            .prefix("hotreload-cli-test-")
            .tempdir()
            .unwrap();
        let installed = build(&dir.path().join("sbin"), "fake-nginx", "1.0", &[]);
        let v2 = build(&dir.path().join("builds"), "fake-nginx-2.0", "2.0", &[]);
        let instance = Instance::builder(&installed)
            .workers(1)
            .daemon(false)
            .start()
            .expect("start fake-nginx with daemon off");
        let _watch = hotreload_tests::fake::watch(&instance);
        let pid_file = instance.pid_file().display().to_string();
        let master = read_pid(instance.pid_file()).unwrap();
        let workers = children(master);
        for args in [
            vec![
                "upgrade",
                "--pid-file",
                &pid_file,
                "--new-binary",
                v2.to_str().unwrap(),
            ],
            vec!["spawn", "--pid-file", &pid_file],
        ] {
            let run = hotreload(&args);
            run.expect_code(3).expect_stderr("daemon");
            assert_eq!(read_pid(instance.pid_file()), Some(master), "{run}");
            assert_eq!(children(master), workers, "{run}");
            assert!(!instance.oldbin_file().exists(), "{run}");
        }
    });
}

#[test]
fn rollback_finishes_an_upgrade_whose_process_was_killed() {
    hotreload_tests::watchdog(|| {
        use std::io::{BufRead, BufReader};
        let server = Server::start_as("fake-nginx");
        let old = server.master_now();
        let v1_bytes = fs::read(&server.installed).unwrap();
        let v2 = server.build("2.0", &[]);
        // Kill `hotreload upgrade` right after it swapped the executable: depending on timing
        // the new master was started or not; either way the next invocation must finish the
        // job from what it finds (pid files, process table, journal).
        let mut child = std::process::Command::new(hotreload_bin())
            .args(["upgrade", "--pid-file", &server.pid_file(), "--new-binary"])
            .arg(&v2)
            .arg("--json")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start hotreload upgrade");
        let stdout = child.stdout.take().unwrap();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("read upgrade output");
            let event: Value = serde_json::from_str(&line).expect("JSON line");
            if event["type"] == "step_finished" && event["data"]["step"] == "swap" {
                break;
            }
        }
        child.kill().expect("kill hotreload");
        child.wait().unwrap();

        // The new master (if any) may still be starting: wait for a phase a command fits.
        hotreload_tests::poll::wait_until_for(
            COMMAND_TIMEOUT,
            "a known phase after the kill",
            || ["steady", "spawned", "drained"].contains(&phase(&server).as_str()),
            || format!(": {}", phase(&server)),
        );
        let run = hotreload(&["rollback", "--pid-file", &server.pid_file()]);
        run.expect_code(0).expect_stdout("rolled back");
        assert_eq!(phase(&server), "steady", "{run}");
        assert_eq!(server.master_now(), old, "{run}");
        assert_eq!(
            fs::read(&server.installed).unwrap(),
            v1_bytes,
            "old executable not restored{run}"
        );
        assert!(server.serving().contains("1.0"), "{run}");
    });
}
