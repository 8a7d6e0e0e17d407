//! Shared harness of the `safety_*` tests (issue 6): a fake-nginx server whose executable
//! lives in the test's own directory, `hotreload` runs (whole or killed mid-way on one of
//! its JSON events), ground truth read straight from the pid files and `/proc`, hashes of
//! the installed executable, a canary process, and guards that kill every process a test
//! starts, also on panic.
//!
//! Nothing here sleeps in place of a handshake: waits poll a condition with a generous
//! deadline (the suite shares two slow cores).

#![allow(dead_code)]

use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_nginx::harness::{self, Instance};
use fake_nginx::load::{Load, LoadConfig, LoadStats};
use fake_nginx::variant::{make_variant, Fault};
use hotreload_tests::{fake_nginx_bin, hotreload_bin};
use serde_json::Value;

/// Deadline for anything that should happen (tests share two slow cores).
pub const LONG: Duration = Duration::from_secs(30);
/// Deadline for a whole `hotreload` invocation.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(240);

// ---------------------------------------------------------------------------------------
// Running hotreload
// ---------------------------------------------------------------------------------------

/// The outcome of one `hotreload` invocation, printed in full when an assertion fails.
pub struct Run {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "\n$ hotreload {}\nexit: {:?} after {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n",
            self.args.join(" "),
            self.code,
            self.elapsed,
            self.stdout,
            self.stderr
        )
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

    /// Every stdout line that parses as JSON.
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    /// The `data` of the last line, which must be the `result` record.
    #[track_caller]
    pub fn result(&self) -> Value {
        let lines = self.json_lines();
        let last = lines
            .last()
            .unwrap_or_else(|| panic!("no JSON output{self}"));
        assert_eq!(last["type"], "result", "last line is not the result{self}");
        last["data"].clone()
    }

    /// Signals the run reported sending (`signalled` events), as `SIGNAL->role`
    /// (`SIGQUIT->old-master`).
    pub fn signals(&self) -> Vec<String> {
        self.json_lines()
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

/// Runs `hotreload args` to completion (bounded by [`COMMAND_TIMEOUT`]).
pub fn hotreload<S: AsRef<str>>(args: &[S]) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.as_ref().to_owned()).collect();
    let started = Instant::now();
    let output = assert_cmd::Command::new(hotreload_bin())
        .args(&args)
        .timeout(COMMAND_TIMEOUT)
        .output()
        .expect("run hotreload");
    Run {
        args,
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        elapsed: started.elapsed(),
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
pub fn hotreload_killed_at(args: &[String], mut at: impl FnMut(&Value) -> bool) -> Vec<Value> {
    let mut child = KillOnDrop(
        Command::new(hotreload_bin())
            .args(args)
            .stdin(Stdio::null())
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
        "hotreload {} ended ({status}) before the kill point; events:\n{}",
        args.join(" "),
        seen.iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    seen
}

/// Is `event` `{"type": kind, "data": {"step": step}}`?
pub fn is_step(event: &Value, kind: &str, step: &str) -> bool {
    event["type"] == kind && event["data"]["step"] == step
}

// ---------------------------------------------------------------------------------------
// Builds, hashes, processes
// ---------------------------------------------------------------------------------------

/// Writes a fake-nginx variant with `version` and `faults` at `out` (ready to exec).
pub fn variant_at(out: &Path, version: &str, faults: &[&str]) {
    fs::create_dir_all(out.parent().unwrap()).unwrap();
    let faults: Vec<Fault> = faults.iter().map(|f| f.parse().expect("fault")).collect();
    make_variant(&fake_nginx_bin(), out, version, &faults).expect("make variant");
    harness::settle_executable(out).expect("variant is executable");
}

/// A fingerprint of a file's content (length and a 64-bit hash), `None` when it cannot
/// be read.
pub fn sha(path: &Path) -> Option<String> {
    use std::hash::{Hash, Hasher};
    let bytes = std::fs::read(path).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Some(format!("{}:{:016x}", bytes.len(), h.finish()))
}

pub fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Alive and not a zombie.
pub fn alive(pid: i32) -> bool {
    harness::is_alive(pid)
}

/// Live (non-zombie) children of `pid`, sorted.
pub fn children(pid: i32) -> Vec<i32> {
    harness::children_of(pid)
}

/// Waits (bounded) for `cond`, panicking with `what` and `context()` at the deadline.
#[track_caller]
pub fn wait_for(what: &str, mut cond: impl FnMut() -> bool, context: impl Fn() -> String) {
    let deadline = Instant::now() + LONG;
    let mut pause = Duration::from_millis(2);
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}{}",
            context()
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// An unrelated process (`sleep`) that USR2, HUP, QUIT or TERM (default action) would
/// kill: alive after a command means no such signal reached it.
pub struct Canary(pub KillOnDrop);

impl Canary {
    pub fn start() -> Canary {
        Canary(KillOnDrop(
            Command::new("sleep")
                .arg("1000")
                .stdin(Stdio::null())
                .spawn()
                .expect("start sleep canary"),
        ))
    }

    pub fn pid(&self) -> i32 {
        self.0.pid()
    }

    #[track_caller]
    pub fn assert_alive(&mut self, context: &dyn fmt::Display) {
        let exited = self.0 .0.try_wait().expect("try_wait canary");
        assert!(
            exited.is_none(),
            "the canary was killed ({exited:?}): a signal was sent to it{context}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// A server under test
// ---------------------------------------------------------------------------------------

/// A running fake-nginx whose executable is `<dir>/sbin/nginx`, so an upgrade swaps a
/// file of this test only. Field order: the instance's processes die before the
/// directory goes.
pub struct Server {
    pub inst: Instance,
    pub installed: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Server {
    /// `1.0` with `old_faults`, daemonized, 2 workers.
    pub fn start(old_faults: &[&str]) -> Server {
        Server::start_with(old_faults, |b| b)
    }

    pub fn start_with(
        old_faults: &[&str],
        adjust: impl FnOnce(harness::Builder) -> harness::Builder,
    ) -> Server {
        Server::start_prepared(|installed| variant_at(installed, "1.0", old_faults), adjust)
    }

    /// Starts the executable that `install` writes at `<dir>/sbin/nginx`.
    pub fn start_prepared(
        install: impl FnOnce(&Path),
        adjust: impl FnOnce(harness::Builder) -> harness::Builder,
    ) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("hotreload-safety-")
            .tempdir()
            .unwrap();
        let installed = dir.path().join("sbin/nginx");
        fs::create_dir_all(installed.parent().unwrap()).unwrap();
        install(&installed);
        let inst = adjust(Instance::builder(&installed).workers(2).timeout(LONG * 2))
            .start()
            .expect("start fake-nginx 1.0");
        Server {
            inst,
            installed,
            dir,
        }
    }

    /// A build `<dir>/builds/nginx-<version>[-fault...]`.
    pub fn build(&self, version: &str, faults: &[&str]) -> PathBuf {
        let name = format!(
            "nginx-{version}{}",
            faults.iter().map(|f| format!("-{f}")).collect::<String>()
        )
        .replace(['=', '/'], "_");
        let out = self.dir.path().join("builds").join(name);
        variant_at(&out, version, faults);
        out
    }

    pub fn pid_file(&self) -> String {
        self.inst.pid_file().display().to_string()
    }

    pub fn backup(&self) -> PathBuf {
        hotreload_core::swap::backup_path_for(&self.installed)
    }

    pub fn journal(&self) -> PathBuf {
        let mut s = self.inst.pid_file().as_os_str().to_owned();
        s.push(".hotreload-journal");
        PathBuf::from(s)
    }

    pub fn master(&self) -> Option<i32> {
        read_pid(self.inst.pid_file())
    }

    /// The `Server` header of one request on a fresh connection.
    pub fn serving(&self) -> String {
        self.inst.get("/").map(|r| r.server).unwrap_or_default()
    }

    /// `hotreload status --json` as the status object (or the result envelope).
    pub fn status(&self) -> Value {
        let run = hotreload(&["status", "--pid-file", &self.pid_file(), "--json"]);
        serde_json::from_str(run.stdout.lines().next().unwrap_or("null")).unwrap_or(Value::Null)
    }

    /// The phase read directly from the pid files and `/proc` (independently of
    /// hotreload): `steady`, `spawned`, `drained`, or `other: ...`.
    pub fn true_phase(&self) -> String {
        let pid = read_pid(self.inst.pid_file()).filter(|&p| alive(p));
        let old = read_pid(&self.inst.oldbin_file()).filter(|&p| alive(p));
        let oldbin_exists = self.inst.oldbin_file().exists();
        match (pid, old, oldbin_exists) {
            (Some(p), None, false) if !harness::workers_of(p).is_empty() => "steady".into(),
            (Some(n), Some(o), true)
                if harness::parent_of(n) == Some(o) && !harness::workers_of(n).is_empty() =>
            {
                if harness::workers_of(o).is_empty() {
                    "drained".into()
                } else {
                    "spawned".into()
                }
            }
            other => format!("other: (pid, oldbin, oldbin exists) = {other:?}"),
        }
    }

    /// Waits until `hotreload status` and the ground truth agree on a known phase, and
    /// returns it: `status` must report the true phase once the server has settled.
    #[track_caller]
    pub fn settled_phase(&self) -> String {
        let deadline = Instant::now() + LONG;
        loop {
            let truth = self.true_phase();
            let status = self.status();
            if status["phase"] == truth.as_str() && self.true_phase() == truth {
                return truth;
            }
            assert!(
                Instant::now() < deadline,
                "status and the process table never agreed on a known phase: status {status}, truth {truth}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Every live process of the server other than the master named by the pid file
    /// and its workers (strays: a hung or orphaned master, orphaned workers).
    pub fn strays(&self) -> Vec<String> {
        let master = self.master().unwrap_or(0);
        let workers = harness::workers_of(master);
        self.inst
            .processes()
            .into_iter()
            .filter(|p| *p != master && !workers.contains(p))
            .map(|p| {
                format!(
                    "{p} (parent {:?}, {:?})",
                    harness::parent_of(p),
                    harness::title_of(p)
                )
            })
            .collect()
    }

    /// Asserts a healthy steady server: status and truth say steady, `version` answers,
    /// nothing stray runs, no journal, no backup, the executable is `exe_sha`.
    #[track_caller]
    pub fn assert_healthy_steady(&self, version: &str, exe_sha: &str, context: &dyn fmt::Display) {
        assert_eq!(self.settled_phase(), "steady", "{context}");
        // Strays may still be finishing a graceful stop a moment after the command.
        wait_for(
            "no stray process of the server",
            || self.strays().is_empty(),
            || format!(": {:?}{context}", self.strays()),
        );
        assert!(
            self.serving().contains(version),
            "serving {:?}, expected {version}{context}",
            self.serving()
        );
        assert_eq!(
            sha(&self.installed).as_deref(),
            Some(exe_sha),
            "wrong executable at the binary path{context}"
        );
        assert!(!self.backup().exists(), "backup left behind{context}");
        assert!(!self.journal().exists(), "journal left behind{context}");
    }

    /// Asserts the lock is free and nothing blocks the next upgrade: a dry run of one to
    /// `new` gets past the lock and the preflight.
    #[track_caller]
    pub fn assert_next_upgrade_possible(&self, new: &Path) {
        let run = hotreload(&[
            "upgrade",
            "--pid-file",
            &self.pid_file(),
            "--new-binary",
            &new.display().to_string(),
            "--dry-run",
            "--json",
        ]);
        run.expect_code(0);
    }

    /// Client load on the server (4 clients: the machine is small and shared).
    pub fn load(&self) -> Load {
        Load::start(LoadConfig::new(self.inst.addr()).clients(4))
    }
}

/// Asserts that the load saw no failed request (refused, reset, truncated, non-2xx, other).
#[track_caller]
pub fn assert_no_failures(stats: &LoadStats, context: &dyn fmt::Display) {
    assert!(stats.ok > 0, "the load made no request: {stats:?}{context}");
    assert_eq!(
        stats.failed, 0,
        "requests failed: {:?}{context}",
        stats.errors
    );
}

/// Asserts no connection-level failure (refused, reset, truncated, other); HTTP error
/// statuses are allowed (a build that answers 500 answers 500 while it serves).
#[track_caller]
pub fn assert_no_connection_failures(stats: &LoadStats, context: &dyn fmt::Display) {
    assert!(stats.ok > 0, "the load made no request: {stats:?}{context}");
    assert_eq!(
        stats.refused + stats.reset + stats.truncated + stats.other,
        0,
        "connection-level failures: {:?}{context}",
        stats.errors
    );
}
