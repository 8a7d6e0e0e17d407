//! End-to-end tests of the `hotreload` binary against real fake-nginx servers: every
//! command and exit code, the JSON Lines output, step commands across separate
//! invocations, and bad input that must be refused without signalling anything.
//!
//! Each test owns its server (temporary prefix, free port), its temporary directory and
//! its canary; guards kill every process on drop, also when an assertion panics. No test
//! sleeps in place of a handshake: `hotreload` itself waits on events, and the tests only
//! look at the state it leaves.

use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::Duration;

use fake_nginx::harness::Instance;
use fake_nginx::variant::{make_variant, Fault};
use hotreload_tests::{fake_nginx_bin, hotreload_bin};
use serde_json::Value;

/// Generous: the whole suite shares two slow cores.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(240);

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

/// The outcome of one `hotreload` invocation, printed in full when an assertion fails.
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
            "\n$ hotreload {}\nexit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n",
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

    /// Every stdout line as JSON, each checked to be a `{"type", "data"}` envelope.
    #[track_caller]
    fn json_lines(&self) -> Vec<Value> {
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

    /// The `data` of the final `result` record (which must be the last line).
    #[track_caller]
    fn result(&self) -> Value {
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
}

fn hotreload<S: AsRef<str>>(args: &[S]) -> Run {
    let args: Vec<String> = args.iter().map(|a| a.as_ref().to_owned()).collect();
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
    }
}

/// Builds a fake-nginx variant (a copy of the fake-nginx binary with a version and
/// faults baked in) at `dir/name`.
fn build(dir: &Path, name: &str, version: &str, faults: &[&str]) -> PathBuf {
    fs::create_dir_all(dir).unwrap();
    let faults: Vec<Fault> = faults.iter().map(|f| f.parse().expect("fault")).collect();
    let out = dir.join(name);
    make_variant(&fake_nginx_bin(), &out, version, &faults).expect("make variant");
    out
}

/// A running fake-nginx 1.0 whose executable lives in this test's own directory, so an
/// upgrade can swap it without touching any other test. Fields drop in order: the
/// server's processes are killed before its directory is removed.
struct Server {
    instance: Instance,
    installed: PathBuf,
    builds: PathBuf,
    dir: tempfile::TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = tempfile::Builder::new()
            .prefix("hotreload-cli-test-")
            .tempdir()
            .unwrap();
        let installed = build(&dir.path().join("sbin"), "fake-nginx", "1.0", &[]);
        let builds = dir.path().join("builds");
        let instance = Instance::builder(&installed)
            .workers(2)
            .daemon(true)
            .start()
            .expect("start fake-nginx");
        Server {
            instance,
            installed,
            builds,
            dir,
        }
    }

    fn build(&self, version: &str, faults: &[&str]) -> PathBuf {
        let name = format!(
            "fake-nginx-{version}{}",
            faults.iter().map(|f| format!("-{f}")).collect::<String>()
        );
        build(
            &self.builds,
            &name.replace(['=', '/'], "_"),
            version,
            faults,
        )
    }

    fn pid_file(&self) -> String {
        self.instance.pid_file().display().to_string()
    }

    fn master(&self) -> i32 {
        read_pid(self.instance.pid_file()).expect("pid file names the master")
    }

    /// The version the server answers with (from the `Server` header).
    fn serving(&self) -> String {
        self.instance.get("/").expect("GET /").server
    }

    fn fingerprint(&self) -> Fingerprint {
        let master = self.master();
        Fingerprint {
            pid_file: fs::read_to_string(self.instance.pid_file()).ok(),
            oldbin: self.instance.oldbin_file().exists(),
            master,
            children: children(master),
            binary: fs::read(&self.installed).map(|b| b.len()).unwrap_or(0),
        }
    }

    /// Puts `new` at the installed path atomically (what a package manager does before
    /// a hand-driven `hotreload spawn`).
    fn install(&self, new: &Path) {
        let staged = self.dir.path().join("sbin/.fake-nginx.staged");
        fs::copy(new, &staged).unwrap();
        fs::rename(&staged, &self.installed).unwrap();
    }
}

/// What must not change when hotreload refuses: pids, pid files, the executable.
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint {
    pid_file: Option<String>,
    oldbin: bool,
    master: i32,
    children: Vec<i32>,
    binary: usize,
}

fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Live (non-zombie) children of `pid`, sorted.
fn children(pid: i32) -> Vec<i32> {
    fake_nginx::harness::children_of(pid)
}

/// A live process that is alive (not exited, not a zombie).
fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|rest| rest.split_whitespace().next());
            !matches!(state, Some("Z") | Some("X"))
        }
        Err(_) => false,
    }
}

/// An unrelated process (`sleep`), which a USR2, HUP, QUIT or TERM would kill: if it is
/// alive after a refused command, no such signal was sent to it.
struct Canary(Child);

impl Canary {
    fn start() -> Canary {
        let child = std::process::Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .spawn()
            .expect("start sleep canary");
        Canary(child)
    }

    fn pid(&self) -> i32 {
        self.0.id() as i32
    }

    #[track_caller]
    fn assert_alive(&mut self, context: &dyn fmt::Display) {
        let exited = self.0.try_wait().expect("try_wait canary");
        assert!(
            exited.is_none(),
            "the canary was killed ({exited:?}): a signal was sent to it{context}"
        );
    }
}

impl Drop for Canary {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
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
    let server = Server::start();
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
            && run.json_lines_raw()["phase"].is_string()
        {
            // status --json prints the status object even when it is unknown.
            assert_eq!(run.json_lines_raw()["phase"], "unknown", "{run}");
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

impl Run {
    fn json_lines_raw(&self) -> Value {
        serde_json::from_str(self.stdout.lines().next().unwrap_or("null")).unwrap_or(Value::Null)
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
}

#[test]
fn usage_errors_exit_2() {
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
}

// ---------------------------------------------------------------------------------------
// status
// ---------------------------------------------------------------------------------------

#[test]
fn status_reports_a_steady_server() {
    let server = Server::start();
    let master = server.master();
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
}

// ---------------------------------------------------------------------------------------
// Bad input: refused with a clear message, exit 3, no signal sent
// ---------------------------------------------------------------------------------------

#[test]
fn missing_pid_file_is_refused() {
    let mut canary = Canary::start();
    let (_dir, path) = bad_pid_file(None);
    assert_every_command_refuses(&path, &path.display().to_string(), &mut canary);
}

#[test]
fn empty_pid_file_is_refused() {
    let mut canary = Canary::start();
    let (_dir, path) = bad_pid_file(Some(""));
    assert_every_command_refuses(&path, &path.display().to_string(), &mut canary);
}

#[test]
fn garbage_pid_file_is_refused() {
    let mut canary = Canary::start();
    let (_dir, path) = bad_pid_file(Some("hello world\n"));
    assert_every_command_refuses(&path, &path.display().to_string(), &mut canary);
}

#[test]
fn pid_0_1_and_minus_1_are_refused() {
    let mut canary = Canary::start();
    for content in ["0\n", "1\n", "-1\n"] {
        let (_dir, path) = bad_pid_file(Some(content));
        assert_every_command_refuses(&path, &path.display().to_string(), &mut canary);
    }
}

#[test]
fn pid_of_an_unrelated_process_is_refused_and_it_survives() {
    let mut canary = Canary::start();
    let (_dir, path) = bad_pid_file(Some(&format!("{}\n", canary.pid())));
    assert_every_command_refuses(&path, &canary.pid().to_string(), &mut canary);
    assert!(alive(canary.pid()));
}

#[test]
fn pid_of_a_worker_is_refused() {
    let mut canary = Canary::start();
    let server = Server::start();
    let worker = children(server.master())[0];
    let (_dir, path) = bad_pid_file(Some(&format!("{worker}\n")));
    let before = server.fingerprint();
    assert_every_command_refuses(&path, &worker.to_string(), &mut canary);
    assert_eq!(
        server.fingerprint(),
        before,
        "the server whose worker was named changed"
    );
}

#[test]
fn missing_or_non_executable_new_binary_is_refused() {
    let server = Server::start();
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
}

#[test]
fn failed_config_test_is_refused() {
    let server = Server::start();
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
}

#[test]
fn a_held_lock_exits_4() {
    let server = Server::start();
    let v2 = server.build("2.0", &[]);
    let before = server.fingerprint();
    let _lock = hotreload_core::Target::new(server.instance.pid_file())
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
}

// ---------------------------------------------------------------------------------------
// upgrade
// ---------------------------------------------------------------------------------------

#[test]
fn upgrade_commits_the_new_version() {
    let server = Server::start();
    let old = server.master();
    let v2 = server.build("2.0", &[]);
    let url = format!("http://{}/", server.instance.addr());
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
    let new = server.master();
    assert_ne!(new, old, "{run}");
    assert!(!alive(old), "old master still alive{run}");
    assert!(!server.instance.oldbin_file().exists(), "{run}");
    assert!(server.serving().contains("2.0"), "{run}");
    assert_eq!(
        fs::read(&server.installed).unwrap(),
        fs::read(&v2).unwrap(),
        "new binary not installed{run}"
    );

    let status = hotreload(&["status", "--pid-file", &server.pid_file(), "--json"]);
    let status: Value = serde_json::from_str(status.stdout.trim()).unwrap();
    assert_eq!(status["phase"], "steady");
    assert_eq!(status["old_master"]["pid"], new);
}

#[test]
fn upgrade_json_lines_events_and_result() {
    let server = Server::start();
    let old = server.master();
    let v2 = server.build("2.0", &[]);
    let run = hotreload(&[
        "upgrade",
        "--pid-file",
        &server.pid_file(),
        "--new-binary",
        &v2.display().to_string(),
        "--health-tcp",
        &server.instance.addr().to_string(),
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
    assert_eq!(result["new_pid"], server.master());
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
}

#[test]
fn upgrade_to_a_crashing_binary_rolls_back_exit_1() {
    let server = Server::start();
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
    assert_eq!(server.master(), before.master, "{run}");
    assert!(server.serving().contains("1.0"), "{run}");
    assert_eq!(
        fs::read(&server.installed).unwrap(),
        v1_bytes,
        "old executable not restored{run}"
    );
    assert!(!server.instance.oldbin_file().exists(), "{run}");
}

#[test]
fn upgrade_dry_run_changes_nothing() {
    let server = Server::start();
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
}

#[test]
fn upgrade_keep_old_then_commit() {
    let server = Server::start();
    let old = server.master();
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
}

#[test]
fn upgrade_keep_old_then_rollback_restores_the_executable() {
    let server = Server::start();
    let old = server.master();
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
    assert_eq!(server.master(), old, "{run}");
    assert_eq!(phase(&server), "steady");
    assert!(server.serving().contains("1.0"), "{run}");
    assert_eq!(
        fs::read(&server.installed).unwrap(),
        v1_bytes,
        "old executable not restored{run}"
    );
}

fn phase(server: &Server) -> String {
    let run = hotreload(&["status", "--pid-file", &server.pid_file(), "--json"]);
    let status: Value =
        serde_json::from_str(run.stdout.trim()).unwrap_or_else(|e| panic!("{e}{run}"));
    status["phase"].as_str().unwrap().to_owned()
}

// ---------------------------------------------------------------------------------------
// Step commands, each in its own invocation
// ---------------------------------------------------------------------------------------

#[test]
fn steps_spawn_drain_commit() {
    let server = Server::start();
    let old = server.master();
    server.install(&server.build("2.0", &[]));

    let run = hotreload(&["spawn", "--pid-file", &server.pid_file()]);
    run.expect_code(0)
        .expect_stdout("SIGUSR2")
        .expect_stdout("spawned");
    let new = server.master();
    assert_ne!(new, old);
    let status = hotreload(&["status", "--pid-file", &server.pid_file(), "--json"]);
    let status: Value = serde_json::from_str(status.stdout.trim()).unwrap();
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
    assert_eq!(server.master(), new);
    assert!(server.serving().contains("2.0"));
}

#[test]
fn steps_spawn_rollback() {
    let server = Server::start();
    let old = server.master();
    server.install(&server.build("2.0", &[]));
    hotreload(&["spawn", "--pid-file", &server.pid_file()]).expect_code(0);
    let new = server.master();
    let run = hotreload(&["rollback", "--pid-file", &server.pid_file()]);
    run.expect_code(0).expect_stdout("rolled back");
    assert_eq!(phase(&server), "steady");
    assert_eq!(server.master(), old, "{run}");
    assert!(!alive(new), "new master still alive{run}");
    assert!(server.serving().contains("1.0"), "{run}");
}

#[test]
fn steps_drain_rollback() {
    let server = Server::start();
    let old = server.master();
    server.install(&server.build("2.0", &[]));
    hotreload(&["spawn", "--pid-file", &server.pid_file()]).expect_code(0);
    let new = server.master();
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
    assert_eq!(server.master(), old, "{run}");
    assert!(!alive(new), "{run}");
    assert_eq!(
        children(old).len(),
        2,
        "old master did not get its workers back{run}"
    );
    assert!(server.serving().contains("1.0"), "{run}");
}

#[test]
fn step_commands_in_the_wrong_phase_are_refused() {
    let server = Server::start();
    let before = server.fingerprint();
    for command in ["drain", "commit", "rollback"] {
        let run = hotreload(&[command, "--pid-file", &server.pid_file()]);
        run.expect_code(3)
            .expect_stderr("`steady`")
            .expect_stderr("hotreload spawn");
        assert_eq!(server.fingerprint(), before, "{run}");
    }
    server.install(&server.build("2.0", &[]));
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
}

#[test]
fn old_master_that_will_not_quit_exits_5_with_the_state() {
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
}

#[test]
fn spawn_of_a_crashing_binary_exits_1_and_the_old_master_serves() {
    let server = Server::start();
    let old = server.master();
    server.install(&server.build("3.0", &["crash-on-start"]));
    let run = hotreload(&["spawn", "--pid-file", &server.pid_file(), "--json"]);
    run.expect_code(1).expect_stderr("hotreload: spawn failed");
    let result = run.result();
    assert_eq!(result["outcome"], "rolled-back", "{run}");
    assert_eq!(result["state"]["phase"], "steady", "{run}");
    assert_eq!(server.master(), old, "{run}");
    assert!(!server.instance.oldbin_file().exists(), "{run}");
    assert!(server.serving().contains("1.0"), "{run}");
}

#[test]
fn upgrade_with_copy_swap_and_explicit_binary() {
    let server = Server::start();
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
    let v2 = build(&dir.path().join("builds"), "fake-nginx-2.0", "2.0", &[]);
    (dir, instance, v2)
}

#[test]
fn drain_timeout_then_drain_terminate() {
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
}

#[test]
fn upgrade_drain_timeout_rolls_back_or_terminates() {
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
}

#[test]
fn daemon_off_under_a_live_parent_is_refused() {
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
}

#[test]
fn rollback_finishes_an_upgrade_whose_process_was_killed() {
    use std::io::{BufRead, BufReader};
    let server = Server::start();
    let old = server.master();
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
    let deadline = std::time::Instant::now() + COMMAND_TIMEOUT;
    while !["steady", "spawned", "drained"].contains(&phase(&server).as_str()) {
        assert!(
            std::time::Instant::now() < deadline,
            "no known phase after the kill"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let run = hotreload(&["rollback", "--pid-file", &server.pid_file()]);
    run.expect_code(0).expect_stdout("rolled back");
    assert_eq!(phase(&server), "steady", "{run}");
    assert_eq!(server.master(), old, "{run}");
    assert_eq!(
        fs::read(&server.installed).unwrap(),
        v1_bytes,
        "old executable not restored{run}"
    );
    assert!(server.serving().contains("1.0"), "{run}");
}
