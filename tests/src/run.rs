//! Running the `hotreload` CLI, directly or under a wrapper program (`oldkernel`, which
//! makes the pidfd syscalls fail as on an old kernel). A [`Run`] prints, on any failed
//! expectation, the command, its cwd, exit status, stdout and stderr, and the process tree
//! and error-log tail of every server the test registered, as they were when the command
//! ended.

use std::fmt;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::bins::hotreload_bin;
use crate::watchdog;

/// Deadline for one whole `hotreload` invocation (generous: the suite shares two cores).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(240);

/// The outcome of one `hotreload` invocation.
pub struct Run {
    /// The program `hotreload` ran under, if any.
    pub wrapper: Option<PathBuf>,
    pub args: Vec<String>,
    pub cwd: PathBuf,
    pub code: Option<i32>,
    pub status: String,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    /// Process trees and log tails of the test's servers right after the command.
    pub servers: String,
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "\n$ {}{}\ncwd: {}\nexit: {:?} ({}) after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n{}",
            shown(self.wrapper.as_deref()),
            self.args.join(" "),
            self.cwd.display(),
            self.code,
            self.status,
            self.elapsed,
            self.stdout,
            self.stderr,
            self.servers
        )
    }
}

impl fmt::Debug for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Runs `hotreload args` to completion (bounded by [`COMMAND_TIMEOUT`]).
pub fn hotreload<S: AsRef<str>>(args: &[S]) -> Run {
    run(None, args)
}

/// Runs `wrapper hotreload args` to completion (bounded by [`COMMAND_TIMEOUT`]).
pub fn hotreload_under<S: AsRef<str>>(wrapper: &Path, args: &[S]) -> Run {
    run(Some(wrapper), args)
}

/// The command line `[wrapper] hotreload args`, stdin closed: the one way every runner
/// here starts the CLI.
fn command<S: AsRef<str>>(wrapper: Option<&Path>, args: &[S]) -> Command {
    let mut cmd = match wrapper {
        Some(w) => {
            let mut c = Command::new(w);
            c.arg(hotreload_bin());
            c
        }
        None => Command::new(hotreload_bin()),
    };
    cmd.args(args.iter().map(|a| a.as_ref()))
        .stdin(Stdio::null());
    cmd
}

/// How a command line starts in messages: `hotreload ` or `<wrapper> hotreload `.
fn shown(wrapper: Option<&Path>) -> String {
    match wrapper {
        Some(w) => format!("{} hotreload ", w.display()),
        None => "hotreload ".to_owned(),
    }
}

fn run<S: AsRef<str>>(wrapper: Option<&Path>, args: &[S]) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.as_ref().to_owned()).collect();
    let started = Instant::now();
    let output = assert_cmd::Command::from_std(command(wrapper, &args))
        .timeout(COMMAND_TIMEOUT)
        .output()
        .unwrap_or_else(|e| panic!("run {}{}: {e}", shown(wrapper), args.join(" ")));
    Run {
        wrapper: wrapper.map(Path::to_path_buf),
        args,
        cwd: std::env::current_dir().unwrap_or_default(),
        code: output.status.code(),
        status: output.status.to_string(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
        servers: watchdog::diagnostics(),
    }
}

impl Run {
    #[track_caller]
    pub fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, Some(code), "wrong exit code{self}");
        self
    }

    #[track_caller]
    pub fn expect_stderr(&self, needle: &str) -> &Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}{self}"
        );
        self
    }

    #[track_caller]
    pub fn expect_stdout(&self, needle: &str) -> &Run {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}{self}"
        );
        self
    }

    /// Every stdout line as JSON, each checked to be a `{"type", "data"}` envelope.
    #[track_caller]
    pub fn json_lines(&self) -> Vec<Value> {
        let lines: Vec<Value> = self
            .stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}{self}"))
            })
            .collect();
        assert!(!lines.is_empty(), "no JSON output{self}");
        for line in &lines {
            assert!(
                line["type"].is_string() && line["data"].is_object(),
                "not an envelope: {line}{self}"
            );
        }
        lines
    }

    /// Every stdout line that parses as JSON, without checking the envelope.
    pub fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The first stdout line as JSON (`status --json` prints one object), `Null` if none.
    pub fn json_lines_raw(&self) -> Value {
        serde_json::from_str(self.stdout.lines().next().unwrap_or("null")).unwrap_or(Value::Null)
    }

    /// The status object of `status --json` (its one `result` line's `data.status`),
    /// `Null` if there is none.
    pub fn status_json(&self) -> Value {
        self.json_lines_raw()["data"]["status"].clone()
    }

    /// The `data` of the final `result` record (which must be the last line), whose
    /// `exit_code` must be the exit status.
    #[track_caller]
    pub fn result(&self) -> Value {
        let lines = self.json_lines();
        let last = lines.last().unwrap();
        assert_eq!(last["type"], "result", "last line is not the result{self}");
        let data = last["data"].clone();
        assert_eq!(
            data["exit_code"].as_i64().map(|c| c as i32),
            self.code,
            "exit_code mismatch{self}"
        );
        data
    }

    /// How many events of type `kind` the run printed.
    #[track_caller]
    pub fn count(&self, kind: &str) -> usize {
        self.json_lines()
            .iter()
            .filter(|l| l["type"] == kind)
            .count()
    }

    /// Signals the run reported sending (`signalled` events), as `SIGNAL->role`
    /// (`SIGQUIT->old-master`).
    pub fn signals(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter(|l| l["type"] == "signalled")
            .map(|l| {
                format!(
                    "{}->{}",
                    l["data"]["signal"].as_str().unwrap_or(""),
                    l["data"]["role"].as_str().unwrap_or("")
                )
            })
            .collect()
    }
}

/// A child process SIGKILLed and reaped when dropped.
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `hotreload args` (which must include `--json`), reads its JSON events line by
/// line and SIGKILLs it as soon as `at` returns true for one (the event is included in
/// the returned list). Returns the events seen, or panics when it ends first.
pub fn hotreload_killed_at(args: &[String], at: impl FnMut(&Value) -> bool) -> Vec<Value> {
    killed_at(None, args, at)
}

/// [`hotreload_killed_at`] for `wrapper hotreload args`.
pub fn hotreload_under_killed_at(
    wrapper: &Path,
    args: &[String],
    at: impl FnMut(&Value) -> bool,
) -> Vec<Value> {
    killed_at(Some(wrapper), args, at)
}

fn killed_at(
    wrapper: Option<&Path>,
    args: &[String],
    mut at: impl FnMut(&Value) -> bool,
) -> Vec<Value> {
    let mut child = KillOnDrop(
        command(wrapper, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start hotreload"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    let mut hit = false;
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let matched = at(&event);
        seen.push(event);
        if matched {
            child.0.kill().expect("SIGKILL hotreload");
            hit = true;
            break;
        }
    }
    let status = child.0.wait().expect("reap hotreload");
    assert!(
        hit,
        "$ {}{}\ncwd: {}\nended ({status}) before the kill point; events:\n{}\n{}",
        shown(wrapper),
        args.join(" "),
        std::env::current_dir().unwrap_or_default().display(),
        seen.iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
        watchdog::diagnostics()
    );
    seen
}

/// Is `event` `{"type": kind, "data": {"step": step}}`?
pub fn is_step(event: &Value, kind: &str, step: &str) -> bool {
    event["type"] == kind && event["data"]["step"] == step
}

/// One signal of [`hotreload_signalled`]: sent once `at` holds for an event (checked
/// from the event after the previous signal's on).
pub struct SignalAt<'a> {
    pub signal: nix::sys::signal::Signal,
    pub at: Box<dyn FnMut(&Value) -> bool + 'a>,
}

/// Starts `hotreload args` (which must include `--json`), reads its JSON events line by
/// line, sends each signal of `plan` in turn when its event comes, and reads on to the
/// end. Returns the run and how many of the signals were sent (a test asserts all).
/// An `at` may look at the server itself (run `hotreload status`) before it says yes:
/// hotreload is then inside the wait that event announced.
pub fn hotreload_signalled(args: &[String], plan: Vec<SignalAt<'_>>) -> (Run, usize) {
    let started = Instant::now();
    let mut child = KillOnDrop(
        command(None, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start hotreload"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let mut stderr = child.0.stderr.take().expect("stderr");
    let stderr_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        text
    });
    let pid = nix::unistd::Pid::from_raw(child.pid());
    let mut plan = plan.into_iter();
    let mut next = plan.next();
    let mut sent = 0;
    let mut out = String::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        out.push_str(&line);
        out.push('\n');
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(signal_at) = next.as_mut() {
            if (signal_at.at)(&event) {
                nix::sys::signal::kill(pid, signal_at.signal).expect("signal hotreload");
                sent += 1;
                next = plan.next();
            }
        }
    }
    let status = child.0.wait().expect("reap hotreload");
    let stderr = stderr_reader.join().unwrap_or_default();
    let run = Run {
        wrapper: None,
        args: args.to_vec(),
        cwd: std::env::current_dir().unwrap_or_default(),
        code: status.code(),
        status: status.to_string(),
        stdout: out,
        stderr,
        elapsed: started.elapsed(),
        servers: watchdog::diagnostics(),
    };
    (run, sent)
}
