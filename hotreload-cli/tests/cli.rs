//! The `hotreload` binary as operators and programs use it: the versioned JSON Lines
//! contract (every line of real runs checked against `schema/hotreload-jsonl-v1.schema.json`),
//! `changed`, `--quiet`, `--color`, `HOTRELOAD_PID_FILE`, completions and the man page.
//!
//! The servers are fake-nginx copies of this very `hotreload` (the demo feature's
//! embedded fixture, made with `fake_nginx::variant::make_variant`), each in its own
//! temporary directory on its own port; dropping an `Instance` kills all its processes,
//! also when an assertion panics.

#![cfg(feature = "demo")]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use fake_nginx::harness::Instance;
use fake_nginx::variant::make_variant;
use serde_json::Value;
use support::schema::Schema;

/// Generous: the suite shares two slow cores with other work.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(240);

const HOTRELOAD: &str = env!("CARGO_BIN_EXE_hotreload");

fn schema() -> Schema {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schema/hotreload-jsonl-v1.schema.json");
    let text = std::fs::read_to_string(&path).expect("read the schema");
    Schema::new(serde_json::from_str(&text).expect("the schema is JSON"))
}

/// One invocation, printed in full when an assertion fails.
struct Run {
    args: Vec<String>,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "\n$ hotreload {}\nexit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
}

impl Run {
    /// Every stdout line, each checked against the schema; the last one is the result,
    /// whose `exit_code` is the process's.
    #[track_caller]
    fn contract(&self) -> Vec<Value> {
        let schema = schema();
        let lines: Vec<Value> = self
            .stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}{self}"))
            })
            .collect();
        assert!(!lines.is_empty(), "no JSON output{self}");
        for line in &lines {
            let errors = schema.errors(line);
            assert!(
                errors.is_empty(),
                "{line}\nviolates the schema:\n  {}{self}",
                errors.join("\n  ")
            );
        }
        let last = lines.last().unwrap();
        assert_eq!(
            last["type"], "result",
            "the last line is not the result{self}"
        );
        assert_eq!(
            lines.iter().filter(|l| l["type"] == "result").count(),
            1,
            "more than one result{self}"
        );
        assert_eq!(
            last["data"]["exit_code"].as_i64(),
            self.code.map(i64::from),
            "result.exit_code is not the exit code{self}"
        );
        lines
    }

    #[track_caller]
    fn result(&self) -> Value {
        self.contract().last().unwrap()["data"].clone()
    }
}

fn hotreload_env<S: AsRef<str>>(args: &[S], env: &[(&str, &str)]) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.as_ref().to_owned()).collect();
    let mut cmd = assert_cmd::Command::new(HOTRELOAD);
    cmd.args(&args)
        .timeout(COMMAND_TIMEOUT)
        .env_remove("HOTRELOAD_PID_FILE");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let output = cmd.output().expect("run hotreload");
    Run {
        args,
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn hotreload<S: AsRef<str>>(args: &[S]) -> Run {
    hotreload_env(args, &[])
}

/// A fake-nginx 1.0 installed in its own directory (so an upgrade swaps only its copy).
/// Fields drop in order: the processes are killed before the directory is removed.
struct Server {
    instance: Instance,
    dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::Builder::new()
            .prefix("hotreload-cli-contract-")
            .tempdir()
            .unwrap();
        let installed = build(dir.path(), "sbin/fake-nginx", "1.0");
        let instance = Instance::builder(&installed)
            .workers(1)
            .daemon(true)
            .start()
            .expect("start fake-nginx");
        Server { instance, dir }
    }

    fn pid_file(&self) -> String {
        self.instance.pid_file().display().to_string()
    }

    fn build(&self, version: &str) -> String {
        build(
            self.dir.path(),
            &format!("builds/fake-nginx-{version}"),
            version,
        )
        .display()
        .to_string()
    }
}

fn build(dir: &Path, name: &str, version: &str) -> PathBuf {
    let out = dir.join(name);
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    make_variant(Path::new(HOTRELOAD), &out, version, &[]).expect("make a fake-nginx variant");
    out
}

#[test]
fn status_is_one_result_line_in_the_envelope() {
    let server = Server::start();
    let run = hotreload(&["status", "--pid-file", &server.pid_file(), "--json"]);
    let lines = run.contract();
    assert_eq!(lines.len(), 1, "status --json prints exactly one line{run}");
    let data = &lines[0]["data"];
    assert_eq!(data["command"], "status", "{run}");
    assert_eq!(data["outcome"], "ok", "{run}");
    assert_eq!(data["exit_code"], 0, "{run}");
    assert_eq!(data["changed"], false, "{run}");
    assert_eq!(data["status"]["phase"], "steady", "{run}");
    assert_eq!(data["status"]["pid_file"], server.pid_file(), "{run}");
    assert_eq!(
        data["status"]["old_master"]["pid"],
        server.instance.master_pid(),
        "{run}"
    );

    // A pid file that names nothing: still one result, with the unknown status.
    let missing = server.dir.path().join("missing.pid");
    let run = hotreload(&["status", "--pid-file", missing.to_str().unwrap(), "--json"]);
    let lines = run.contract();
    assert_eq!(lines.len(), 1, "{run}");
    let data = &lines[0]["data"];
    assert_eq!(run.code, Some(3), "{run}");
    assert_eq!(data["outcome"], "refused", "{run}");
    assert_eq!(data["status"]["phase"], "unknown", "{run}");
    assert!(
        data["error"].as_str().unwrap().contains("missing.pid"),
        "{run}"
    );
}

#[test]
fn upgrades_dry_runs_refusals_and_wrong_phases_follow_the_contract() {
    let server = Server::start();
    let pid_file = server.pid_file();
    let old = server.instance.master_pid();
    let v2 = server.build("2.0");

    // A dry run changes nothing and says so.
    let run = hotreload(&[
        "upgrade",
        "--pid-file",
        &pid_file,
        "--new-binary",
        &v2,
        "--dry-run",
        "--json",
    ]);
    let result = run.result();
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(result["outcome"], "dry-run", "{run}");
    assert_eq!(result["changed"], false, "{run}");
    assert!(!result["plan"].as_array().unwrap().is_empty(), "{run}");

    // A refused upgrade (no such binary): exit 3, nothing changed.
    let missing = server.dir.path().join("no-such-nginx");
    let run = hotreload(&[
        "upgrade",
        "--pid-file",
        &pid_file,
        "--new-binary",
        missing.to_str().unwrap(),
        "--json",
    ]);
    let result = run.result();
    assert_eq!(run.code, Some(3), "{run}");
    assert_eq!(result["outcome"], "refused", "{run}");
    assert_eq!(result["changed"], false, "{run}");
    assert!(result["hint"].is_string(), "{run}");

    // Commit and rollback with no upgrade in progress: refused, the state named.
    for command in ["commit", "rollback", "drain"] {
        let run = hotreload(&[command, "--pid-file", &pid_file, "--json"]);
        let result = run.result();
        assert_eq!(run.code, Some(3), "{run}");
        assert_eq!(result["outcome"], "refused", "{run}");
        assert_eq!(result["changed"], false, "{run}");
        assert_eq!(result["state"]["phase"], "steady", "{run}");
        assert_eq!(result["old_pid"], old, "{run}");
    }

    // The upgrade itself: every event on the way, then a committed, changed result.
    let run = hotreload(&[
        "upgrade",
        "--pid-file",
        &pid_file,
        "--new-binary",
        &v2,
        "--json",
    ]);
    let lines = run.contract();
    let result = &lines.last().unwrap()["data"];
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(result["outcome"], "committed", "{run}");
    assert_eq!(result["changed"], true, "{run}");
    assert_eq!(result["old_pid"], old, "{run}");
    let kinds: Vec<&str> = lines.iter().filter_map(|l| l["type"].as_str()).collect();
    for kind in ["step_started", "step_finished", "check", "signalled"] {
        assert!(kinds.contains(&kind), "no {kind} line{run}");
    }
    let new = result["new_pid"].as_i64().expect("new_pid");
    assert_ne!(new, i64::from(old), "{run}");

    // Quiet JSON: only the result.
    let run = hotreload(&["-q", "status", "--pid-file", &pid_file, "--json"]);
    assert_eq!(run.contract().len(), 1, "{run}");
}

#[test]
fn keep_old_then_rollback_and_commit_go_through_the_core() {
    let server = Server::start();
    let pid_file = server.pid_file();
    let old = server.instance.master_pid();
    let v2 = server.build("2.0");

    let run = hotreload(&[
        "upgrade",
        "--pid-file",
        &pid_file,
        "--new-binary",
        &v2,
        "--keep-old",
        "--json",
    ]);
    let result = run.result();
    assert_eq!(result["outcome"], "kept-old", "{run}");
    assert_eq!(result["changed"], true, "{run}");

    // Spawn needs steady: refused in drained, nothing changed.
    let run = hotreload(&["spawn", "--pid-file", &pid_file, "--json"]);
    assert_eq!(run.code, Some(3), "{run}");
    assert_eq!(run.result()["state"]["phase"], "drained", "{run}");

    let run = hotreload(&["rollback", "--pid-file", &pid_file, "--json"]);
    let result = run.result();
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(result["outcome"], "ok", "{run}");
    assert_eq!(result["changed"], true, "{run}");
    assert_eq!(result["state"]["phase"], "steady", "{run}");
    assert_eq!(result["state"]["old_master"]["pid"], old, "{run}");

    // Quiet and human: the summary line alone, nothing on stderr.
    let run = hotreload(&[
        "-q",
        "upgrade",
        "--pid-file",
        &pid_file,
        "--new-binary",
        &v2,
        "--keep-old",
    ]);
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(run.stdout.lines().count(), 1, "{run}");
    assert!(run.stdout.contains("kept without workers"), "{run}");
    assert_eq!(run.stderr, "", "{run}");
    let run = hotreload(&["status", "--pid-file", &pid_file, "--json"]);
    let status = run.result()["status"].clone();
    assert_eq!(status["phase"], "drained", "{run}");
    let new = status["new_master"]["pid"].clone();
    let run = hotreload(&["commit", "--pid-file", &pid_file, "--json"]);
    let result = run.result();
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(result["changed"], true, "{run}");
    assert_eq!(result["state"]["phase"], "steady", "{run}");
    assert_eq!(result["state"]["old_master"]["pid"], new, "{run}");
}

#[test]
fn quiet_color_and_the_pid_file_from_the_environment() {
    let server = Server::start();
    let pid_file = server.pid_file();

    // HOTRELOAD_PID_FILE stands in for --pid-file; -q leaves the one summary line.
    let run = hotreload_env(&["-q", "status"], &[("HOTRELOAD_PID_FILE", &pid_file)]);
    assert_eq!(run.code, Some(0), "{run}");
    assert_eq!(run.stdout.lines().count(), 1, "{run}");
    assert!(run.stdout.starts_with("phase       steady"), "{run}");
    assert_eq!(run.stderr, "", "{run}");

    let missing = server.dir.path().join("missing.pid");
    let missing = missing.to_str().unwrap();
    let esc = |run: &Run| run.stderr.contains('\x1b');
    // Not a terminal: no colour under auto, none with NO_COLOR, colour when forced.
    let run = hotreload(&["status", "--pid-file", missing]);
    assert!(run.stderr.contains("hotreload: "), "{run}");
    assert!(!esc(&run), "{run}");
    let run = hotreload_env(
        &["--color", "auto", "status", "--pid-file", missing],
        &[("NO_COLOR", "1")],
    );
    assert!(!esc(&run), "{run}");
    let run = hotreload(&["--color", "never", "status", "--pid-file", missing]);
    assert!(!esc(&run), "{run}");
    let run = hotreload(&["--color", "always", "status", "--pid-file", missing]);
    assert!(esc(&run), "{run}");
}

/// The events of a line come from hotreload-core's `serde` feature: every kind, also the
/// ones real runs here never show (`pidfd_fallback` needs an old kernel), is a v1 line
/// once the CLI puts it in its envelope, with the `type` the README documents.
#[test]
fn every_core_event_as_the_core_serialises_it_is_a_v1_line() {
    use hotreload_core::{Event, Pid, Role, Signal, Step};
    let pid = Pid::try_from(4242).unwrap();
    let events = [
        (
            "step_started",
            Event::StepStarted {
                step: Step::ConfigTest,
            },
        ),
        (
            "step_finished",
            Event::StepFinished {
                step: Step::RestoreBinary,
                duration: Duration::from_millis(1234),
            },
        ),
        (
            "check",
            Event::Check {
                name: "catches-spawn-signal".into(),
                ok: false,
                detail: "d".into(),
            },
        ),
        (
            "signalled",
            Event::Signalled {
                pid,
                signal: Signal::Usr2,
                role: Role::OldMaster,
            },
        ),
        (
            "waiting",
            Event::Waiting {
                what: "w".into(),
                elapsed: Duration::from_millis(500),
                timeout: Duration::from_secs(30),
            },
        ),
        ("observed", Event::Observed { what: "o".into() }),
        (
            "decision",
            Event::Decision {
                message: "m".into(),
            },
        ),
        (
            "warning",
            Event::Warning {
                message: "m".into(),
            },
        ),
        (
            "pidfd_fallback",
            Event::PidfdFallback {
                detail: "pidfd_open: ENOSYS".into(),
            },
        ),
    ];
    let schema = schema();
    for (kind, event) in events {
        let mut record = serde_json::to_value(&event).unwrap();
        assert_eq!(record["type"], kind, "{record}");
        let line = serde_json::json!({
            "schema_version": 1,
            "type": record["type"].take(),
            "time": "2026-12-01T10:00:00.123Z",
            "data": record["data"].take(),
        });
        let errors = schema.errors(&line);
        assert!(errors.is_empty(), "{line}: {}", errors.join("; "));
        if kind == "signalled" {
            assert_eq!(
                line["data"],
                serde_json::json!({"pid": 4242, "signal": "SIGUSR2", "role": "old-master"})
            );
        }
        if kind == "step_finished" {
            assert_eq!(line["data"]["duration_ms"], 1234);
            assert_eq!(line["data"]["step"], "restore-binary");
        }
    }
}

#[test]
fn completions_and_the_man_page() {
    let run = hotreload(&["completions", "bash"]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(run.stdout.contains("complete -F"), "{run}");
    for command in ["upgrade", "rollback", "--pid-file", "--color"] {
        assert!(
            run.stdout.contains(command),
            "bash completion lacks {command}{run}"
        );
    }
    // Every subcommand completes after `hotreload` (the demo only when built in).
    for command in COMMANDS {
        assert!(
            run.stdout.contains(&format!("hotreload,{command})")),
            "bash completion does not complete the subcommand {command}{run}"
        );
    }
    let run = hotreload(&["completions", "zsh"]);
    assert!(run.stdout.contains("#compdef hotreload"), "{run}");

    let run = hotreload(&["man"]);
    assert_eq!(run.code, Some(0), "{run}");
    assert!(
        run.stdout.starts_with(".ie") || run.stdout.contains(".TH hotreload"),
        "{run}"
    );
    for section in [".SH NAME", ".SH SYNOPSIS", ".SH OPTIONS", "Exit codes"] {
        assert!(
            run.stdout.contains(section),
            "man page lacks {section}{run}"
        );
    }
    // A section-1 roff page whose SUBCOMMANDS section names every command.
    assert!(run.stdout.contains("\n.TH hotreload 1 "), "{run}");
    let (_, commands) = run
        .stdout
        .split_once(".SH SUBCOMMANDS")
        .unwrap_or_else(|| panic!("man page lacks SUBCOMMANDS{run}"));
    for command in COMMANDS {
        // roff escapes the hyphen.
        assert!(
            commands.contains(&format!("hotreload\\-{command}(1)")),
            "man page does not list {command}{run}"
        );
    }
}

/// The subcommands every build has (`demo` is a default feature packagers may drop).
const COMMANDS: [&str; 8] = [
    "status",
    "upgrade",
    "spawn",
    "drain",
    "commit",
    "rollback",
    "completions",
    "man",
];

#[test]
fn help_teaches_with_examples() {
    let run = hotreload(&["upgrade", "--help"]);
    assert!(run.stdout.contains("Examples:"), "{run}");
    assert!(run.stdout.contains("HOTRELOAD_PID_FILE"), "{run}");
}
