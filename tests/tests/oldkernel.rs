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
//! Every test owns its server, directory, port and canary; guards kill what a test
//! started, also on panic. Waits poll a condition with a generous deadline.

use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fake_nginx::harness::{self, Instance};
use fake_nginx::load::{Load, LoadConfig, LoadStats};
use fake_nginx::variant::make_variant;
use hotreload_tests::{fake_nginx_bin, hotreload_bin};
use serde_json::Value;

/// Deadline for anything that should happen (the suite shares two slow cores).
const LONG: Duration = Duration::from_secs(30);
/// Deadline for a whole `hotreload` invocation.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(240);

// ---------------------------------------------------------------------------------------
// The wrapper
// ---------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------
// Running hotreload
// ---------------------------------------------------------------------------------------

/// One `hotreload` invocation, printed in full when an assertion fails.
struct Run {
    args: Vec<String>,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl fmt::Display for Run {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "\n$ {}\nexit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        )
    }
}

impl Run {
    #[track_caller]
    fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, Some(code), "wrong exit code{self}");
        self
    }

    #[track_caller]
    fn expect_stderr(&self, needle: &str) -> &Run {
        assert!(
            self.stderr.contains(needle),
            "stderr lacks {needle:?}{self}"
        );
        self
    }

    #[track_caller]
    fn expect_stdout(&self, needle: &str) -> &Run {
        assert!(
            self.stdout.contains(needle),
            "stdout lacks {needle:?}{self}"
        );
        self
    }

    /// Every stdout line as JSON.
    #[track_caller]
    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}{self}"))
            })
            .collect()
    }

    /// The `data` of the final `result` record.
    #[track_caller]
    fn result(&self) -> Value {
        let lines = self.json_lines();
        let last = lines
            .last()
            .unwrap_or_else(|| panic!("no JSON output{self}"));
        assert_eq!(last["type"], "result", "last line is not the result{self}");
        last["data"].clone()
    }

    /// How many events of `kind` were printed.
    fn count(&self, kind: &str) -> usize {
        self.json_lines()
            .iter()
            .filter(|l| l["type"] == kind)
            .count()
    }

    /// `SIGNAL->role` of every `signalled` event, in order.
    fn signals(&self) -> Vec<String> {
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

/// The command line: `oldkernel hotreload ARGS` with `wrapper`, else `hotreload ARGS`.
fn command(wrapper: Option<&Path>, args: &[String]) -> Command {
    let mut cmd = match wrapper {
        Some(w) => {
            let mut c = Command::new(w);
            c.arg(hotreload_bin());
            c
        }
        None => Command::new(hotreload_bin()),
    };
    cmd.args(args).stdin(Stdio::null());
    cmd
}

fn run_with<S: AsRef<str>>(wrapper: Option<&Path>, args: &[S]) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.as_ref().to_owned()).collect();
    let output = assert_cmd::Command::from_std(command(wrapper, &args))
        .timeout(COMMAND_TIMEOUT)
        .output()
        .expect("run hotreload");
    let shown = match wrapper {
        Some(w) => format!("{} hotreload", w.display()),
        None => "hotreload".to_owned(),
    };
    Run {
        args: std::iter::once(shown).chain(args).collect(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `hotreload ARGS` as on a kernel before 5.3.
fn old<S: AsRef<str>>(args: &[S]) -> Run {
    run_with(Some(oldkernel()), args)
}

/// `hotreload ARGS` on this kernel (with pidfds).
fn new<S: AsRef<str>>(args: &[S]) -> Run {
    run_with(None, args)
}

/// A child process SIGKILLed and reaped when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `oldkernel hotreload ARGS --json`, reads its events and SIGKILLs it at the
/// first one `at` accepts; panics when it ends before.
fn old_killed_at(args: &[String], mut at: impl FnMut(&Value) -> bool) -> Vec<Value> {
    let mut child = KillOnDrop(
        command(Some(oldkernel()), args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start hotreload"),
    );
    let stdout = child.0.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let hit = at(&event);
        seen.push(event);
        if hit {
            child.0.kill().expect("SIGKILL hotreload");
            child.0.wait().expect("reap hotreload");
            return seen;
        }
    }
    let status = child.0.wait().expect("reap hotreload");
    panic!(
        "hotreload {} ended ({status}) before the kill point; events:\n{}",
        args.join(" "),
        seen.iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// The server
// ---------------------------------------------------------------------------------------

fn variant_at(out: &Path, version: &str) {
    fs::create_dir_all(out.parent().unwrap()).unwrap();
    make_variant(&fake_nginx_bin(), out, version, &[]).expect("make variant");
    harness::settle_executable(out).expect("variant is executable");
}

use hotreload_tests::fake::sha;

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn alive(pid: i32) -> bool {
    harness::is_alive(pid)
}

/// Waits (bounded) for `cond`, panicking with `what` and `context()` at the deadline.
#[track_caller]
fn wait_for(what: &str, mut cond: impl FnMut() -> bool, context: impl Fn() -> String) {
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

/// A daemonized fake-nginx 1.0 (2 workers) started under the wrapper, so its masters
/// fork and exec on the "old kernel" too; its executable lives in the test's directory.
/// Fields drop in order: processes are killed before the directory goes.
struct Server {
    inst: Instance,
    installed: PathBuf,
    dir: tempfile::TempDir,
}

impl Server {
    fn start(wrapper: &Path) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("hotreload-oldkernel-")
            .tempdir()
            .unwrap();
        let installed = dir.path().join("sbin/nginx");
        variant_at(&installed, "1.0");
        // The master's argv[0] stays the installed executable: the wrapper execs it.
        let start = dir.path().join("sbin/start-under-oldkernel");
        fs::write(
            &start,
            format!(
                "#!/bin/sh\nexec '{}' '{}' \"$@\"\n",
                wrapper.display(),
                installed.display()
            ),
        )
        .unwrap();
        fs::set_permissions(&start, fs::Permissions::from_mode(0o755)).unwrap();
        let inst = Instance::builder(&start)
            .workers(2)
            .timeout(LONG * 2)
            .start()
            .expect("start fake-nginx 1.0 under oldkernel");
        Server {
            inst,
            installed,
            dir,
        }
    }

    fn build(&self, version: &str) -> PathBuf {
        let out = self.dir.path().join(format!("builds/nginx-{version}"));
        variant_at(&out, version);
        out
    }

    /// Puts `new` at the installed path atomically (a package manager before `spawn`).
    fn install(&self, new: &Path) {
        let staged = self.dir.path().join("sbin/.nginx.staged");
        fs::copy(new, &staged).unwrap();
        fs::rename(&staged, &self.installed).unwrap();
        harness::settle_executable(&self.installed).unwrap();
    }

    fn pid_file(&self) -> String {
        self.inst.pid_file().display().to_string()
    }

    fn master(&self) -> Option<i32> {
        read_pid(self.inst.pid_file())
    }

    fn backup(&self) -> PathBuf {
        hotreload_core::swap::backup_path_for(&self.installed)
    }

    fn journal(&self) -> PathBuf {
        PathBuf::from(format!("{}.hotreload-journal", self.pid_file()))
    }

    fn serving(&self) -> String {
        self.inst.get("/").map(|r| r.server).unwrap_or_default()
    }

    /// `hotreload status --json` (with pidfds): the status object of its result.
    fn status(&self) -> Value {
        let run = new(&["status", "--pid-file", &self.pid_file(), "--json"]);
        let line: Value = serde_json::from_str(run.stdout.lines().next().unwrap_or("null"))
            .unwrap_or(Value::Null);
        line["data"]["status"].clone()
    }

    /// The phase from the pid files and `/proc` alone: steady, spawned, drained, other.
    fn true_phase(&self) -> String {
        let pid = self.master().filter(|&p| alive(p));
        let old = read_pid(&self.inst.oldbin_file()).filter(|&p| alive(p));
        match (pid, old, self.inst.oldbin_file().exists()) {
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

    /// Waits until `status` and the process table agree on a known phase; returns it.
    #[track_caller]
    fn settled_phase(&self) -> String {
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

    /// Live processes of the server other than the current master and its workers.
    fn strays(&self) -> Vec<i32> {
        let master = self.master().unwrap_or(0);
        let workers = harness::workers_of(master);
        self.inst
            .processes()
            .into_iter()
            .filter(|p| *p != master && !workers.contains(p))
            .collect()
    }

    /// What must not change on a refusal: pid files, masters, their children, the exe.
    fn fingerprint(&self) -> String {
        let pid = self.master();
        let old = read_pid(&self.inst.oldbin_file());
        let kids = |p: Option<i32>| p.map(harness::children_of).unwrap_or_default();
        format!(
            "pid {pid:?} {:?}, oldbin {old:?} {:?}, exe {:?}, journal {}",
            kids(pid),
            kids(old),
            sha(&self.installed),
            self.journal().exists()
        )
    }

    /// Steady on `version` with the executable `exe_sha`, nothing stray, no journal or backup.
    #[track_caller]
    fn assert_healthy_steady(&self, version: &str, exe_sha: &str, context: &dyn fmt::Display) {
        assert_eq!(self.settled_phase(), "steady", "{context}");
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
            "wrong executable{context}"
        );
        assert!(!self.backup().exists(), "backup left behind{context}");
        assert!(!self.journal().exists(), "journal left behind{context}");
    }

    fn load(&self) -> Load {
        Load::start(LoadConfig::new(self.inst.addr()).clients(4))
    }
}

#[track_caller]
fn assert_no_failures(stats: &LoadStats, context: &dyn fmt::Display) {
    assert!(stats.ok > 0, "the load made no request: {stats:?}{context}");
    assert_eq!(
        stats.failed, 0,
        "requests failed: {:?}{context}",
        stats.errors
    );
}

/// An unrelated process (`sleep`), which USR2, HUP, QUIT or TERM would kill: alive after a
/// command means none of them reached it.
struct Canary(KillOnDrop);

impl Canary {
    fn start() -> Canary {
        let child = Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .spawn()
            .expect("start sleep");
        Canary(KillOnDrop(child))
    }

    fn pid(&self) -> i32 {
        self.0 .0.id() as i32
    }

    #[track_caller]
    fn assert_alive(&mut self, context: &dyn fmt::Display) {
        let exited = self.0 .0.try_wait().expect("try_wait canary");
        assert!(
            exited.is_none(),
            "the canary was killed ({exited:?}): a signal reached it{context}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[test]
#[cfg_attr(
    missing_oldkernel,
    ignore = "needs cc and ../shared/tools/oldkernel.c (or HOTRELOAD_OLDKERNEL_SRC)"
)]
fn full_upgrade_under_load_says_pidfd_false_and_true_without_the_wrapper() {
    let wrapper = oldkernel();
    let server = Server::start(wrapper);
    let old_master = server.master().unwrap();
    let v2 = server.build("2.0");
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
    let status: Value = serde_json::from_str(status.stdout.trim()).unwrap();
    assert_eq!(status["data"]["status"]["pidfd"], false, "{status}");
    assert_eq!(server.status()["pidfd"], true);
    new(&["status", "--pid-file", &server.pid_file()])
        .expect_code(0)
        .expect_stdout("pinning     pidfd");

    // The same server, upgraded again with pidfds (and requiring them): true, no fallback.
    let v3 = server.build("3.0");
    let run = new(&[
        "upgrade",
        "--pid-file",
        &server.pid_file(),
        "--new-binary",
        &v3.display().to_string(),
        "--require-pidfd",
        "--json",
    ]);
    run.expect_code(0);
    assert_eq!(run.result()["pidfd"], true, "{run}");
    assert_eq!(run.count("pidfd_fallback"), 0, "{run}");
    server.assert_healthy_steady("3.0", &sha(&v3).unwrap(), &run);
}

#[test]
#[cfg_attr(
    missing_oldkernel,
    ignore = "needs cc and ../shared/tools/oldkernel.c (or HOTRELOAD_OLDKERNEL_SRC)"
)]
fn require_pidfd_refuses_with_exit_3_and_changes_nothing() {
    let wrapper = oldkernel();
    let server = Server::start(wrapper);
    let pid_file = server.pid_file();
    let v2 = server.build("2.0");
    let v1 = server.build("1.0");
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
    let before = server.fingerprint();
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
        assert_eq!(server.fingerprint(), before, "{run}");
    }
    let run = old(&[
        "spawn",
        "--pid-file",
        &pid_file,
        "--require-pidfd",
        "--json",
    ]);
    refused(&run, &needles);
    assert_eq!(server.fingerprint(), before, "{run}");

    // Spawned (by the fallback): drain and rollback are refused.
    server.install(&v2);
    old(&["spawn", "--pid-file", &pid_file]).expect_code(0);
    assert_eq!(server.settled_phase(), "spawned");
    let before = server.fingerprint();
    for cmd in ["drain", "rollback"] {
        let run = old(&[cmd, "--pid-file", &pid_file, "--require-pidfd", "--json"]);
        refused(&run, &needles);
        assert_eq!(server.fingerprint(), before, "{run}");
    }

    // Drained: commit and rollback are refused.
    old(&["drain", "--pid-file", &pid_file]).expect_code(0);
    assert_eq!(server.settled_phase(), "drained");
    let before = server.fingerprint();
    for cmd in ["commit", "rollback"] {
        let run = old(&[cmd, "--pid-file", &pid_file, "--require-pidfd", "--json"]);
        refused(&run, &needles);
        assert_eq!(server.fingerprint(), before, "{run}");
    }
    // Put the old executable back by hand, then let the fallback roll back.
    server.install(&v1);
    let run = old(&["rollback", "--pid-file", &pid_file]);
    run.expect_code(0).expect_stdout("rolled back");
    server.assert_healthy_steady("1.0", &v1_sha, &run);
}

#[test]
#[cfg_attr(
    missing_oldkernel,
    ignore = "needs cc and ../shared/tools/oldkernel.c (or HOTRELOAD_OLDKERNEL_SRC)"
)]
fn rollback_from_spawned_under_the_wrapper() {
    let wrapper = oldkernel();
    let server = Server::start(wrapper);
    let old_master = server.master().unwrap();
    let v2 = server.build("2.0");
    server.install(&v2);
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
    assert_eq!(harness::workers_of(old_master).len(), 2, "{run}");
    wait_for(
        "no stray process",
        || server.strays().is_empty(),
        || format!(": {:?}{run}", server.strays()),
    );
    assert!(server.serving().contains("1.0"), "{run}");
}

#[test]
#[cfg_attr(
    missing_oldkernel,
    ignore = "needs cc and ../shared/tools/oldkernel.c (or HOTRELOAD_OLDKERNEL_SRC)"
)]
fn rollback_from_drained_under_the_wrapper_restores_the_executable() {
    let wrapper = oldkernel();
    let server = Server::start(wrapper);
    let old_master = server.master().unwrap();
    let v1_sha = sha(&server.installed).unwrap();
    let v2 = server.build("2.0");
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
}

/// Whether an event of the upgrade is where it is killed.
type KillPoint = fn(&Value) -> bool;

#[test]
#[cfg_attr(
    missing_oldkernel,
    ignore = "needs cc and ../shared/tools/oldkernel.c (or HOTRELOAD_OLDKERNEL_SRC)"
)]
fn orchestrator_killed_mid_upgrade_then_rolled_back_under_the_wrapper() {
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
        let server = Server::start(wrapper);
        let old_master = server.master().unwrap();
        let v1_sha = sha(&server.installed).unwrap();
        let v2 = server.build("2.0");
        let args: Vec<String> = [
            "upgrade",
            "--pid-file",
            &server.pid_file(),
            "--new-binary",
            &v2.display().to_string(),
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let seen = old_killed_at(&args, at);
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
}

#[test]
#[cfg_attr(
    missing_oldkernel,
    ignore = "needs cc and ../shared/tools/oldkernel.c (or HOTRELOAD_OLDKERNEL_SRC)"
)]
fn hostile_pid_files_send_no_signal_under_the_wrapper() {
    let wrapper = oldkernel();
    let mut canary = Canary::start();
    let bystander = Server::start(wrapper);
    let worker = harness::workers_of(bystander.master().unwrap())[0];
    let v2 = bystander.build("2.0");
    let dir = tempfile::tempdir().unwrap();
    for (content, needle) in [
        (format!("{}\n", canary.pid()), canary.pid().to_string()),
        (format!("{worker}\n"), worker.to_string()),
        ("1\n".to_owned(), "1".to_owned()),
    ] {
        let path = dir.path().join("server.pid");
        fs::write(&path, &content).unwrap();
        let before = bystander.fingerprint();
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
            assert_eq!(
                bystander.fingerprint(),
                before,
                "the bystander changed{run}"
            );
        }
        let run = old(&["status", "--pid-file", &path.display().to_string()]);
        run.expect_code(3);
        canary.assert_alive(&run);
    }
    assert!(alive(canary.pid()));
}

#[test]
#[cfg_attr(
    missing_oldkernel,
    ignore = "needs cc and ../shared/tools/oldkernel.c (or HOTRELOAD_OLDKERNEL_SRC)"
)]
fn unreaped_old_master_counts_as_exited_under_the_wrapper() {
    let wrapper = oldkernel();
    // The daemonized master is re-parented to this test process, which never waits for
    // it: once retired it stays a zombie (as under a PID 1 that does not reap). This test
    // binary's other servers are re-parented here too, which changes nothing for them:
    // PID 1 on these machines does not reap either.
    // SAFETY: prctl with integer arguments only.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    assert_eq!(rc, 0, "PR_SET_CHILD_SUBREAPER");
    let server = Server::start(wrapper);
    let old_master = server.master().unwrap();
    assert_eq!(
        harness::parent_of(old_master),
        Some(std::process::id() as i32),
        "not re-parented to this test"
    );
    let v2 = server.build("2.0");
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
        harness::proc_state(old_master),
        Some('Z'),
        "old master is not a zombie{run}"
    );
    assert!(
        !run.signals().iter().any(|s| s.starts_with("SIGTERM")),
        "a fast stop was sent{run}"
    );
    server.assert_healthy_steady("2.0", &sha(&v2).unwrap(), &run);
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(old_master), None);
}
