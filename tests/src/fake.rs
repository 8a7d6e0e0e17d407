//! The fake-nginx server of the `cli`, `core`, `safety` and `regression` tests: a daemonized
//! fake-nginx whose executable lives in the test's own directory (`<dir>/sbin/nginx`, so
//! an upgrade swaps a file of this test only), optionally started under a wrapper program,
//! its builds (variants with a version and faults), ground truth read straight from the
//! pid files and `/proc` (independently of hotreload), and a canary process no signal may
//! reach.
//!
//! The server registers itself with the [`watchdog`](crate::watchdog) scope, so every
//! failure message of the test prints its process tree and error log; dropping it kills
//! every process it started (fake_nginx's `Instance`), also on panic.

use std::fmt;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use fake_nginx::harness::{self, Instance};
use fake_nginx::load::{Load, LoadConfig, LoadStats};
use fake_nginx::variant::{make_variant, Fault};
use serde_json::Value;

use crate::bins::fake_nginx_bin;
use crate::poll::{poll, wait_until, LONG};
use crate::procs::{self, alive, read_pid};
use crate::run::{hotreload, KillOnDrop};
use crate::watchdog::{self, Registration, Watched};

/// Writes a fake-nginx variant with `version` and `faults` at `out`, ready to exec.
pub fn variant_at(out: &Path, version: &str, faults: &[&str]) {
    fs::create_dir_all(out.parent().unwrap()).unwrap();
    let faults: Vec<Fault> = faults.iter().map(|f| f.parse().expect("fault")).collect();
    make_variant(&fake_nginx_bin(), out, version, &faults).expect("make variant");
    harness::settle_executable(out).expect("variant is executable");
}

/// The arguments of `upgrade --json` of `server` to the executable `new`, then `extra`.
pub fn upgrade_args(server: &FakeServer, new: &Path, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = [
        "upgrade",
        "--pid-file",
        &server.pid_file(),
        "--new-binary",
        &new.display().to_string(),
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// SHA-256 (hex) of a file's content, `None` when it cannot be read. `sha256sum` rather
/// than the core's hasher: the ground truth must not come from the code under test.
pub fn sha(path: &Path) -> Option<String> {
    let out = Command::new("sha256sum")
        .arg(path)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    text.split_whitespace().next().map(str::to_owned)
}

/// Registers a fake-nginx instance a test started itself with the watchdog scope: its tree
/// and log go into failure messages, and a lost deadline kills it.
pub fn watch(inst: &Instance) -> Registration {
    watchdog::register(Watched::of_master(
        &format!("fake-nginx at {}", inst.prefix().display()),
        inst.master_pid(),
        Some(inst.prefix().to_path_buf()),
        Some(inst.error_log()),
    ))
}

/// A running fake-nginx. Field order: the registration and the instance's processes go
/// before the directory holding the executable.
pub struct FakeServer {
    _watch: Registration,
    pub inst: Instance,
    pub installed: PathBuf,
    pub dir: tempfile::TempDir,
}

/// The journal lives in hotreload's state home, not in the test's directory: a test that
/// ends with one left (killed or kept on purpose) takes it, and its temp, along.
impl Drop for FakeServer {
    fn drop(&mut self) {
        if let Ok(journal) = hotreload_core::Target::new(self.inst.pid_file()).journal_file() {
            let mut temp = journal.clone().into_os_string();
            temp.push(".tmp");
            let _ = fs::remove_file(&journal);
            let _ = fs::remove_file(PathBuf::from(temp));
        }
    }
}

impl FakeServer {
    /// `1.0` with `old_faults`, daemonized, 2 workers.
    pub fn start(old_faults: &[&str]) -> FakeServer {
        FakeServer::start_with(old_faults, |b| b)
    }

    pub fn start_with(
        old_faults: &[&str],
        adjust: impl FnOnce(harness::Builder) -> harness::Builder,
    ) -> FakeServer {
        FakeServer::start_prepared(|installed| variant_at(installed, "1.0", old_faults), adjust)
    }

    /// `1.0` installed as `<dir>/sbin/<name>` (what the CLI tests see in `status`).
    pub fn start_as(name: &str) -> FakeServer {
        FakeServer::start_prepared_as(name, |i| variant_at(i, "1.0", &[]), |b| b)
    }

    /// Starts the executable that `install` writes at `<dir>/sbin/nginx`.
    pub fn start_prepared(
        install: impl FnOnce(&Path),
        adjust: impl FnOnce(harness::Builder) -> harness::Builder,
    ) -> FakeServer {
        FakeServer::start_prepared_as("nginx", install, adjust)
    }

    /// Starts the executable that `install` writes at `<dir>/sbin/<name>`.
    pub fn start_prepared_as(
        name: &str,
        install: impl FnOnce(&Path),
        adjust: impl FnOnce(harness::Builder) -> harness::Builder,
    ) -> FakeServer {
        FakeServer::launch(name, install, None, adjust)
    }

    /// `1.0` with `old_faults` (2 workers) started as `wrapper <dir>/sbin/nginx`, so that
    /// the master and every master it forks and execs run under the wrapper too
    /// (`oldkernel`).
    pub fn start_under(wrapper: &Path, old_faults: &[&str]) -> FakeServer {
        FakeServer::launch(
            "nginx",
            |i| variant_at(i, "1.0", old_faults),
            Some(wrapper),
            |b| b,
        )
    }

    fn launch(
        name: &str,
        install: impl FnOnce(&Path),
        wrapper: Option<&Path>,
        adjust: impl FnOnce(harness::Builder) -> harness::Builder,
    ) -> FakeServer {
        let dir = tempfile::Builder::new()
            .prefix("hotreload-test-")
            .tempdir()
            .unwrap();
        let installed = dir.path().join("sbin").join(name);
        fs::create_dir_all(installed.parent().unwrap()).unwrap();
        install(&installed);
        let program = match wrapper {
            None => installed.clone(),
            Some(w) => {
                // The wrapper execs the installed path: the master's argv[0] (what USR2
                // re-execs) stays the executable an upgrade swaps.
                let script = dir.path().join("sbin/start-under-wrapper");
                fs::write(
                    &script,
                    format!(
                        "#!/bin/sh\nexec '{}' '{}' \"$@\"\n",
                        w.display(),
                        installed.display()
                    ),
                )
                .unwrap();
                fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
                script
            }
        };
        let inst = adjust(Instance::builder(&program).workers(2).timeout(LONG * 2))
            .start()
            .expect("start fake-nginx 1.0");
        let watch = watch(&inst);
        FakeServer {
            _watch: watch,
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

    /// A build beside the installed binary (`<dir>/nginx-<version>`).
    pub fn variant(&self, version: &str, faults: &[&str]) -> PathBuf {
        let path = self.dir.path().join(format!("nginx-{version}"));
        variant_at(&path, version, faults);
        path
    }

    /// The pid file's path, as a command-line argument.
    pub fn pid_file(&self) -> String {
        self.inst.pid_file().display().to_string()
    }

    /// The pid the pid file names now.
    pub fn pid_from_file(&self) -> Option<i32> {
        read_pid(self.inst.pid_file())
    }

    pub fn oldbin_exists(&self) -> bool {
        self.inst.oldbin_file().exists()
    }

    /// Where the swap keeps the previous executable.
    pub fn backup(&self) -> PathBuf {
        hotreload_core::swap::backup_path_for(&self.installed)
    }

    /// The upgrade journal, in hotreload's state home (the default one: these tests run
    /// as root, so `/run/hotreload`).
    pub fn journal(&self) -> PathBuf {
        hotreload_core::Target::new(self.inst.pid_file())
            .journal_file()
            .expect("the journal's place in the state home")
    }

    /// The master the pid file names, if any.
    pub fn master(&self) -> Option<i32> {
        read_pid(self.inst.pid_file())
    }

    /// The master the pid file names; panics when there is none.
    #[track_caller]
    pub fn master_now(&self) -> i32 {
        self.master()
            .unwrap_or_else(|| panic!("the pid file names no master\n{}", self.why()))
    }

    /// The `Server` header of one request on a fresh connection ("" when none answers).
    pub fn serving(&self) -> String {
        self.inst.get("/").map(|r| r.server).unwrap_or_default()
    }

    /// The `Server` header of one fresh request, which must answer 200
    /// (`fake-nginx/1.0`).
    #[track_caller]
    pub fn version(&self) -> String {
        let r = self.inst.get("/").expect("GET /");
        assert_eq!(r.status, 200, "{r:?}");
        r.server
    }

    /// Process tree and logs, for assertion messages.
    pub fn why(&self) -> String {
        self.inst.diagnostics()
    }

    /// What must not change when hotreload refuses: pids, pid files, the executable.
    pub fn fingerprint(&self) -> Fingerprint {
        let master = self.master().unwrap_or(0);
        Fingerprint {
            pid_file: fs::read_to_string(self.inst.pid_file()).ok(),
            oldbin: self.inst.oldbin_file().exists(),
            master,
            children: procs::children_of(master),
            binary: fs::read(&self.installed).map(|b| b.len()).unwrap_or(0),
        }
    }

    /// Puts `new` at the installed path atomically by hand (what a package manager does
    /// before a hand-driven `hotreload spawn`).
    pub fn install_by_hand(&self, new: &Path) {
        let staged = self.installed.with_extension("staged");
        fs::copy(new, &staged).unwrap();
        fs::rename(&staged, &self.installed).unwrap();
    }

    /// `hotreload status --json`: the status object of its result (`Null` if none).
    pub fn status(&self) -> Value {
        hotreload(&["status", "--pid-file", &self.pid_file(), "--json"]).status_json()
    }

    /// The phase read directly from the pid files and `/proc` (independently of
    /// hotreload): `steady`, `spawned`, `drained`, or `other: ...`.
    pub fn true_phase(&self) -> String {
        let pid = read_pid(self.inst.pid_file()).filter(|&p| alive(p));
        let old = read_pid(&self.inst.oldbin_file()).filter(|&p| alive(p));
        let oldbin_exists = self.inst.oldbin_file().exists();
        match (pid, old, oldbin_exists) {
            (Some(p), None, false) if !procs::workers_of(p).is_empty() => "steady".into(),
            (Some(n), Some(o), true)
                if procs::parent_of(n) == Some(o) && !procs::workers_of(n).is_empty() =>
            {
                if procs::workers_of(o).is_empty() {
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
        poll(
            "status and the process table to agree on a known phase",
            LONG,
            || {
                let truth = self.true_phase();
                let status = self.status();
                if status["phase"] == truth.as_str() && self.true_phase() == truth {
                    Ok(truth)
                } else {
                    Err(format!("status {status}, truth {truth}"))
                }
            },
        )
    }

    /// Every live process of the server other than the master named by the pid file
    /// and its workers (strays: a hung or orphaned master, orphaned workers).
    pub fn strays(&self) -> Vec<String> {
        let master = self.master().unwrap_or(0);
        let workers = procs::workers_of(master);
        self.inst
            .processes()
            .into_iter()
            .filter(|p| *p != master && !workers.contains(p))
            .map(|p| {
                format!(
                    "{p} (parent {:?}, {:?})",
                    procs::parent_of(p),
                    procs::title_of(p)
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
        wait_until(
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

/// What must not change when hotreload refuses: pids, pid files, the executable.
#[derive(Debug, PartialEq, Eq)]
pub struct Fingerprint {
    pub pid_file: Option<String>,
    pub oldbin: bool,
    pub master: i32,
    pub children: Vec<i32>,
    pub binary: usize,
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
