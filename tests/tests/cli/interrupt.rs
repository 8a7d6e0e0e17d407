//! Issue 12, items 4 and 7: `hotreload upgrade` (and the step commands) interrupted by
//! SIGINT, SIGTERM or SIGHUP inside each of its waits, and `hotreload status` polled while
//! a new master is starting.
//!
//! The signal is sent when hotreload's own JSON event says the wait has started (the
//! first `waiting` event of that step), never after a sleep. Each test then checks what
//! an operator would: the exit code, the message, which version serves, one master, and
//! whether the journal is left.

use hotreload_tests::fake::{sha, upgrade_args, FakeServer as Server};
use hotreload_tests::poll::{poll, LONG};
use hotreload_tests::run::{hotreload, hotreload_signalled, Run, SignalAt};
use nix::sys::signal::Signal;
use serde_json::Value;

const SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// Tracks the step the events are in; true at the first `waiting` event inside `step`.
fn waiting_in(step: &'static str) -> impl FnMut(&Value) -> bool {
    let mut current = String::new();
    move |e| {
        if e["type"] == "step_started" {
            current = e["data"]["step"].as_str().unwrap_or("").to_owned();
        }
        current == step && e["type"] == "waiting"
    }
}

fn code_of(signal: Signal) -> i32 {
    128 + signal as i32
}

/// The `warning` events of a run, as text.
fn warnings(run: &Run) -> Vec<String> {
    run.events()
        .iter()
        .filter(|e| e["type"] == "warning")
        .map(|e| e["data"]["message"].as_str().unwrap_or("").to_owned())
        .collect()
}

/// Sends `signal` when the wait of `step` starts; returns the run.
#[track_caller]
fn interrupted(args: &[String], signal: Signal, step: &'static str) -> Run {
    let (run, sent) = hotreload_signalled(
        args,
        vec![SignalAt {
            signal,
            at: Box::new(waiting_in(step)),
        }],
    );
    assert_eq!(sent, 1, "the {step} wait never started{run}");
    run
}

/// Rolled back from the spawn wait (a new build that never writes its pid file) and
/// from the drain wait (old workers that take a minute to finish): exit 128 + signal,
/// `interrupted`, the old build serving alone, journal and backup gone.
fn rolls_back_from(step: &'static str, old_faults: &[&str], new_faults: &[&str], extra: &[&str]) {
    for signal in SIGNALS {
        let server = Server::start(old_faults);
        let old_sha = sha(&server.installed).unwrap();
        let new = server.build("2.0", new_faults);
        let run = interrupted(&upgrade_args(&server, &new, extra), signal, step);
        run.expect_code(code_of(signal));
        let result = run.result();
        assert_eq!(result["outcome"], "interrupted", "{run}");
        assert_eq!(result["changed"], true, "{run}");
        let error = result["error"].as_str().unwrap_or("");
        assert!(
            error.contains(&format!("interrupted by {signal:?}"))
                && error.contains("rolled back: the old version is serving"),
            "{run}"
        );
        assert_eq!(result["state"]["phase"], "steady", "{run}");
        assert!(
            warnings(&run).iter().any(|w| w.contains(&format!(
                "{signal:?} received: stopping the upgrade and rolling back"
            ))),
            "{run}"
        );
        server.assert_healthy_steady("1.0", &old_sha, &run);
    }
}

#[test]
fn a_signal_in_the_spawn_wait_rolls_back() {
    hotreload_tests::watchdog(|| {
        rolls_back_from(
            "spawn",
            &[],
            &["hang-on-start"],
            &["--spawn-timeout", "2m", "--quit-timeout", "1s"],
        );
    });
}

#[test]
fn a_signal_in_the_drain_wait_rolls_back() {
    hotreload_tests::watchdog(|| {
        rolls_back_from(
            "drain",
            &["slow-drain=60s"],
            &[],
            &["--drain-timeout", "2m"],
        );
    });
}

/// In the retire wait the old master was already told to stop: there is nothing to go
/// back to, so the upgrade finishes (the old build ignores QUIT: the retire waits out
/// its quit deadline, then TERM), says so, and the code still says it was interrupted.
#[test]
fn a_signal_in_the_retire_wait_finishes_the_upgrade() {
    hotreload_tests::watchdog(|| {
        for signal in SIGNALS {
            let server = Server::start(&["ignore=QUIT"]);
            let new = server.build("2.0", &[]);
            let new_sha = sha(&new).unwrap();
            let run = interrupted(
                &upgrade_args(&server, &new, &["--quit-timeout", "3s"]),
                signal,
                "retire",
            );
            run.expect_code(code_of(signal));
            let result = run.result();
            assert_eq!(result["outcome"], "committed", "{run}");
            let warnings = warnings(&run);
            assert!(
                warnings.iter().any(|w| w.contains(&format!(
                    "{signal:?} received after the old master was told to stop: finishing the upgrade"
                ))) && warnings
                    .iter()
                    .any(|w| w.contains("the upgrade was finished")),
                "{run}"
            );
            server.assert_healthy_steady("2.0", &new_sha, &run);
        }
    });
}

/// A second signal while the first one's rollback runs (stopping a hung new master that
/// ignores QUIT, with a long quit deadline) exits at once: the journal is left, the hint
/// names `hotreload rollback --pid-file …`, and that command settles it.
#[test]
fn a_second_signal_during_the_rollback_exits_at_once_naming_the_command() {
    hotreload_tests::watchdog(|| {
        let server = Server::start(&[]);
        let old_sha = sha(&server.installed).unwrap();
        let new = server.build("2.0", &["hang-on-start"]);
        let args = upgrade_args(
            &server,
            &new,
            &["--spawn-timeout", "2m", "--quit-timeout", "2m"],
        );
        let (run, sent) = hotreload_signalled(
            &args,
            vec![
                SignalAt {
                    signal: Signal::SIGINT,
                    at: Box::new(waiting_in("spawn")),
                },
                // The rollback has told the hung new master to stop and waits for it.
                SignalAt {
                    signal: Signal::SIGTERM,
                    at: Box::new(|e| e["type"] == "signalled" && e["data"]["role"] == "new-master"),
                },
            ],
        );
        assert_eq!(sent, 2, "{run}");
        run.expect_code(143);
        let result = run.result();
        assert_eq!(result["outcome"], "interrupted", "{run}");
        let pid_file = server.pid_file();
        let command = format!("hotreload rollback --pid-file {pid_file}");
        assert!(
            result["hint"].as_str().unwrap_or("").contains(&command),
            "{run}"
        );
        run.expect_stderr(&command);
        assert!(
            result["error"]
                .as_str()
                .unwrap_or("")
                .contains("interrupted again by SIGTERM"),
            "{run}"
        );
        assert!(server.journal().exists(), "journal gone{run}");
        let settled = hotreload(&["rollback", "--pid-file", &pid_file, "--quit-timeout", "1s"]);
        settled.expect_code(0);
        server.assert_healthy_steady("1.0", &old_sha, &settled);
    });
}

/// `hotreload drain` interrupted in its wait stops where it stands: spawned (both
/// versions serve), says so and names the commands that fit.
#[test]
fn a_signal_in_a_step_commands_wait_leaves_its_phase_and_the_next_command() {
    hotreload_tests::watchdog(|| {
        let server = Server::start(&["slow-drain=60s"]);
        let new = server.build("2.0", &[]);
        server.install_by_hand(&new);
        let pid_file = server.pid_file();
        hotreload(&["spawn", "--pid-file", &pid_file]).expect_code(0);
        let args: Vec<String> = [
            "drain",
            "--pid-file",
            &pid_file,
            "--json",
            "--drain-timeout",
            "2m",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let run = interrupted(&args, Signal::SIGINT, "drain");
        run.expect_code(130);
        let result = run.result();
        assert_eq!(result["outcome"], "interrupted", "{run}");
        assert_eq!(result["state"]["phase"], "spawned", "{run}");
        assert!(
            result["error"]
                .as_str()
                .unwrap_or("")
                .contains("the server is left in phase `spawned`"),
            "{run}"
        );
        assert!(
            result["hint"]
                .as_str()
                .unwrap_or("")
                .contains(&format!("hotreload rollback --pid-file {pid_file}")),
            "{run}"
        );
        assert_eq!(server.settled_phase(), "spawned", "{run}");
        hotreload(&["rollback", "--pid-file", &pid_file]).expect_code(0);
        assert_eq!(server.settled_phase(), "steady");
    });
}

/// Item 7: while a new master is starting (a build that takes its time: here it never
/// finishes), `status` is a known phase, `spawning`, with exit 0 — a monitor polling it
/// during an upgrade does not alarm.
#[test]
fn status_during_a_slow_spawn_is_spawning_and_exits_0() {
    hotreload_tests::watchdog(|| {
        let server = Server::start(&[]);
        let old_sha = sha(&server.installed).unwrap();
        let new = server.build("2.0", &["hang-on-start"]);
        let pid_file = server.pid_file();
        let mut seen: Vec<Run> = Vec::new();
        let mut in_spawn = waiting_in("spawn");
        let (run, sent) = hotreload_signalled(
            &upgrade_args(
                &server,
                &new,
                &["--spawn-timeout", "2m", "--quit-timeout", "1s"],
            ),
            vec![SignalAt {
                signal: Signal::SIGINT,
                at: Box::new(|e| {
                    if !in_spawn(e) {
                        return false;
                    }
                    // Polled like a monitor would: every answer is exit 0 and a known
                    // phase (steady until the old master acts on USR2), until `spawning`.
                    let json = poll("status to say spawning", LONG, || {
                        let run = hotreload(&["status", "--pid-file", &pid_file, "--json"]);
                        run.expect_code(0);
                        match run.status_json()["phase"].as_str() {
                            Some("spawning") => Ok(run),
                            Some("steady") => Err(format!("still steady{run}")),
                            _ => panic!("not a known phase{run}"),
                        }
                    });
                    seen.push(json);
                    seen.push(hotreload(&["status", "--pid-file", &pid_file]));
                    true
                }),
            }],
        );
        assert_eq!(sent, 1, "{run}");
        let [json, human] = &seen[..] else {
            panic!("status not run{run}")
        };
        json.expect_code(0);
        assert_eq!(json.status_json()["phase"], "spawning", "{json}");
        human.expect_code(0).expect_stdout("spawning");
        run.expect_code(130);
        server.assert_healthy_steady("1.0", &old_sha, &run);
    });
}

/// A lost SSH session: SIGHUP, and from then on stdout and stderr lead nowhere (their
/// reader is gone: every write fails with EPIPE). The rollback still runs to its end:
/// exit 129 and the old version serving alone, journal gone.
#[test]
fn a_hangup_with_a_dead_terminal_still_rolls_back() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    hotreload_tests::watchdog(|| {
        let server = Server::start(&["slow-drain=60s"]);
        let old_sha = sha(&server.installed).unwrap();
        let new = server.build("2.0", &[]);
        let args = upgrade_args(&server, &new, &["--drain-timeout", "2m"]);
        let mut child = hotreload_tests::run::KillOnDrop(
            Command::new(hotreload_tests::hotreload_bin())
                .args(&args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let stdout = child.0.stdout.take().unwrap();
        let stderr = child.0.stderr.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let mut in_drain = waiting_in("drain");
        let mut seen = Vec::new();
        let reached = lines.by_ref().map_while(Result::ok).any(|line| {
            seen.push(line.clone());
            serde_json::from_str::<Value>(&line).is_ok_and(|e| in_drain(&e))
        });
        assert!(
            reached,
            "the drain wait never started:\n{}",
            seen.join("\n")
        );
        // The terminal goes away: the signal, then both readers gone.
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.pid()), Signal::SIGHUP).unwrap();
        drop(lines);
        drop(stderr);
        let status = child.0.wait().unwrap();
        let context = format!(
            "\nexit {status}; events before the hang-up:\n{}",
            seen.join("\n")
        );
        assert_eq!(status.code(), Some(129), "{context}");
        server.assert_healthy_steady("1.0", &old_sha, &context);
    });
}
