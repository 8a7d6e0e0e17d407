//! The `hotreload` CLI against real unicorn (a tiny Rack app) and gunicorn (a tiny WSGI
//! app), as Debian installs them (`scripts/install-real-servers`): upgrade under client
//! load with zero failed requests, and rollback from `spawned`, serving throughout.
//! A missing server makes its tests ignored, unless CI or
//! `HOTRELOAD_REQUIRE_REAL_SERVERS=1`, where they fail.
//!
//! Both servers daemonize with a double fork, so their master is **not** a session
//! leader: the session is read from `/proc/<master>/stat`, and `Server`'s drop SIGKILLs
//! every process of that session (old and new masters and all workers stay in it),
//! panicking or not.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use fake_nginx::load::{Load, LoadConfig, LoadStats};
use hotreload_tests::hotreload_bin;
use hotreload_tests::watchdog::{register, Registration, Watched};
use hotreload_tests::{poll, procs};

const LONG: Duration = Duration::from_secs(30);
const WORKERS: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Unicorn,
    Gunicorn,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Unicorn => "unicorn",
            Kind::Gunicorn => "gunicorn",
        }
    }

    fn executable(self) -> &'static Path {
        Path::new(match self {
            Kind::Unicorn => "/usr/bin/unicorn",
            Kind::Gunicorn => "/usr/bin/gunicorn",
        })
    }

    /// Where the new master's pid is while the old one lives.
    fn new_pid_file(self, pid_file: &Path) -> PathBuf {
        match self {
            Kind::Unicorn => pid_file.to_path_buf(),
            Kind::Gunicorn => suffixed(pid_file, ".2"),
        }
    }

    /// Where the old master's pid is while the new one lives.
    fn old_pid_file(self, pid_file: &Path) -> PathBuf {
        match self {
            Kind::Unicorn => suffixed(pid_file, ".oldbin"),
            Kind::Gunicorn => pid_file.to_path_buf(),
        }
    }

    /// The file that exists only during an upgrade.
    fn upgrade_file(self, pid_file: &Path) -> PathBuf {
        match self {
            Kind::Unicorn => suffixed(pid_file, ".oldbin"),
            Kind::Gunicorn => suffixed(pid_file, ".2"),
        }
    }
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    PathBuf::from(name)
}

/// Panics, saying how to install it, unless `kind` is installed (the tests are ignored
/// then, unless CI or `HOTRELOAD_REQUIRE_REAL_SERVERS=1` requires them).
fn require(kind: Kind) {
    hotreload_tests::tools::require(kind.name(), &[kind.executable()]);
}

/// A daemonized unicorn or gunicorn serving a tiny app from a temp dir.
struct Server {
    kind: Kind,
    dir: tempfile::TempDir,
    addr: SocketAddr,
    /// The session of the first master (not its pid: the master is not its leader).
    sid: Option<i32>,
    watch: Option<Registration>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(sid) = self.sid.take() {
            hotreload_tests::kill_session(sid);
        }
    }
}

impl Server {
    fn start(kind: Kind) -> Server {
        let dir = tempfile::Builder::new()
            .prefix(&format!("core-real-{}-", kind.name()))
            .tempdir()
            .unwrap();
        let path = dir.path().to_path_buf();
        let mut server = Server {
            kind,
            dir,
            addr: ([127, 0, 0, 1], 0).into(),
            sid: None,
            watch: None,
        };
        for attempt in 1..=3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            server.addr = ([127, 0, 0, 1], port).into();
            let mut command = match kind {
                Kind::Unicorn => {
                    fs::write(
                        path.join("config.ru"),
                        "run lambda { |env| [200, { \"content-type\" => \"text/plain\", \
                         \"content-length\" => \"3\", \"server\" => \"unicorn\", \
                         \"x-worker-pid\" => Process.pid.to_s }, [\"ok\\n\"]] }\n",
                    )
                    .unwrap();
                    fs::write(
                        path.join("u.conf.rb"),
                        format!(
                            "listen \"127.0.0.1:{port}\"\nworker_processes {WORKERS}\n\
                             pid \"{p}/app.pid\"\nstderr_path \"{p}/app.log\"\n\
                             stdout_path \"{p}/app.log\"\nworking_directory \"{p}\"\n",
                            p = path.display()
                        ),
                    )
                    .unwrap();
                    let mut c = Command::new(kind.executable());
                    c.arg("-D")
                        .arg("-c")
                        .arg(path.join("u.conf.rb"))
                        .arg(path.join("config.ru"));
                    c
                }
                Kind::Gunicorn => {
                    fs::write(
                        path.join("app.py"),
                        "import os\n\n\ndef app(environ, start_response):\n    \
                         start_response(\"200 OK\", [(\"Content-Type\", \"text/plain\"), \
                         (\"Content-Length\", \"3\"), (\"X-Worker-Pid\", str(os.getpid()))])\n    return [b\"ok\\n\"]\n",
                    )
                    .unwrap();
                    let mut c = Command::new(kind.executable());
                    c.args(["-D", "-w", &WORKERS.to_string(), "-b"])
                        .arg(server.addr.to_string())
                        .arg("-p")
                        .arg(path.join("app.pid"))
                        .arg("--chdir")
                        .arg(&path)
                        .arg("--error-logfile")
                        .arg(path.join("app.log"))
                        .arg("app:app");
                    c
                }
            };
            let status = command
                .current_dir(&path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success(), "{} did not start: {status}", kind.name());
            let mut master = 0;
            let started = poll::try_until(LONG, "the master and its workers", || {
                master = procs::read_pid_strict(&server.pid_file()).unwrap_or(0);
                if master > 1 && server.sid.is_none() {
                    server.sid = hotreload_tests::session_of(master);
                }
                master > 1
                    && procs::alive(master)
                    && procs::children_of(master).len() == WORKERS
                    && server.get_ok()
            });
            if started.is_ok() {
                server.watch = Some(register(Watched::of_master(
                    &format!("{} at {}", kind.name(), path.display()),
                    master,
                    Some(path.clone()),
                    Some(path.join("app.log")),
                )));
                return server;
            }
            let log = server.log();
            assert!(
                attempt < 3 && log.contains("in use"),
                "{} did not come up:\n{log}",
                kind.name()
            );
            // Whatever started of this attempt goes with its session.
            if let Some(sid) = server.sid.take() {
                hotreload_tests::kill_session(sid);
            }
        }
        unreachable!()
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("app.pid")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("app.log")).unwrap_or_default()
    }

    fn master(&self) -> i32 {
        procs::read_pid_strict(&self.pid_file()).expect("the pid file names a master")
    }

    fn get_ok(&self) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200")
    }

    /// Runs `hotreload <command> --flavor <kind> --pid-file <pid file> <extra>`.
    fn hotreload(&self, command: &str, extra: &[&str]) -> Output {
        Command::new(hotreload_bin())
            .arg(command)
            .args(["--flavor", self.kind.name(), "--pid-file"])
            .arg(self.pid_file())
            .args(extra)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Like [`Server::hotreload`], and fails with the whole account unless it succeeded.
    fn hotreload_ok(&self, command: &str, extra: &[&str]) -> String {
        let out = self.hotreload(command, extra);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success(),
            "`hotreload {command}` ({}) failed: {}\n{text}\nserver log:\n{}",
            self.kind.name(),
            out.status,
            self.log()
        );
        text
    }

    /// Waits for steady on `master`: the pid file names it, the upgrade file is gone, it
    /// has its workers.
    fn wait_steady_on(&self, master: i32) {
        let upgrade_file = self.kind.upgrade_file(&self.pid_file());
        let ok = poll::try_until(LONG, "steady", || {
            procs::read_pid_strict(&self.pid_file()) == Some(master)
                && !upgrade_file.exists()
                && procs::children_of(master).len() == WORKERS
        });
        assert!(
            ok.is_ok(),
            "not steady on {master}: pid file {:?}, {} exists: {}, children {:?}\n{}",
            procs::read_pid_strict(&self.pid_file()),
            upgrade_file.display(),
            upgrade_file.exists(),
            procs::children_of(master),
            self.log()
        );
    }
}

fn start_load(server: &Server) -> Load {
    // Neither server keeps connections alive (sync workers close after each response).
    let load = Load::start(LoadConfig::new(server.addr).clients(4).keepalive(false));
    let answered = poll::try_until(LONG, "the first answers under load", || {
        load.snapshot().ok >= 10
    });
    assert!(answered.is_ok(), "{:?}", load.snapshot());
    load
}

fn assert_no_failures(kind: Kind, stats: &LoadStats, log: &str) {
    assert!(stats.ok > 0, "{}: no request succeeded", kind.name());
    assert_eq!(
        stats.failed,
        0,
        "{}: {} of {} requests failed: {:?}\nserver log:\n{log}",
        kind.name(),
        stats.failed,
        stats.total(),
        stats.errors
    );
}

/// `hotreload upgrade --swap none` (no `--new-binary`: the new code is in place) under
/// load ends steady on a new master.
fn upgrade_with_swap_none(kind: Kind) {
    require(kind);
    let server = Server::start(kind);
    let old = server.master();
    let load = start_load(&server);
    let text = server.hotreload_ok("upgrade", &["--swap", "none"]);
    let new = server.master();
    assert_ne!(new, old, "{text}");
    poll::until(LONG, "the old master to exit", || !procs::alive(old));
    server.wait_steady_on(new);
    let stats = load.stop();
    assert_no_failures(kind, &stats, &server.log());
    assert!(server.get_ok());
}

/// The same upgrade step by step (`spawn`, `drain`, `commit`) under load.
fn upgrade_by_steps(kind: Kind) {
    require(kind);
    let server = Server::start(kind);
    let pid_file = server.pid_file();
    let old = server.master();
    let load = start_load(&server);
    server.hotreload_ok("spawn", &[]);
    let new = procs::read_pid_strict(&kind.new_pid_file(&pid_file)).expect("new pid file");
    assert_ne!(new, old);
    assert_eq!(
        procs::parent_of(new),
        Some(old),
        "the new master is a child of the old"
    );
    assert_eq!(
        procs::read_pid_strict(&kind.old_pid_file(&pid_file)),
        Some(old)
    );
    server.hotreload_ok("drain", &[]);
    assert!(
        procs::children_of(old) == [new],
        "after the drain the old master's only child is the new master: {:?}",
        procs::children_of(old)
    );
    server.hotreload_ok("commit", &[]);
    assert!(!procs::alive(old), "the old master still runs");
    server.wait_steady_on(new);
    let stats = load.stop();
    assert_no_failures(kind, &stats, &server.log());
    assert!(server.get_ok());
}

/// `hotreload spawn` then `hotreload rollback` under load: steady on the old master.
fn rollback_from_spawned(kind: Kind) {
    require(kind);
    let server = Server::start(kind);
    let pid_file = server.pid_file();
    let old = server.master();
    let old_workers = procs::children_of(old);
    let load = start_load(&server);
    server.hotreload_ok("spawn", &[]);
    let new = procs::read_pid_strict(&kind.new_pid_file(&pid_file)).expect("new pid file");
    assert_ne!(new, old);
    assert!(kind.upgrade_file(&pid_file).exists());
    server.hotreload_ok("rollback", &[]);
    poll::until(LONG, "the new master to exit", || !procs::alive(new));
    server.wait_steady_on(old);
    assert_eq!(
        procs::children_of(old),
        old_workers,
        "the old workers served throughout"
    );
    let stats = load.stop();
    assert_no_failures(kind, &stats, &server.log());
    assert!(server.get_ok());
}

#[test]
#[cfg_attr(
    missing_unicorn,
    ignore = "needs unicorn: run scripts/install-real-servers"
)]
fn unicorn_upgrade_with_swap_none_under_load() {
    hotreload_tests::watchdog(|| {
        upgrade_with_swap_none(Kind::Unicorn);
    });
}

#[test]
#[cfg_attr(
    missing_gunicorn,
    ignore = "needs gunicorn: run scripts/install-real-servers"
)]
fn gunicorn_upgrade_with_swap_none_under_load() {
    hotreload_tests::watchdog(|| {
        upgrade_with_swap_none(Kind::Gunicorn);
    });
}

#[test]
#[cfg_attr(
    missing_unicorn,
    ignore = "needs unicorn: run scripts/install-real-servers"
)]
fn unicorn_upgrade_by_steps_under_load() {
    hotreload_tests::watchdog(|| {
        upgrade_by_steps(Kind::Unicorn);
    });
}

#[test]
#[cfg_attr(
    missing_gunicorn,
    ignore = "needs gunicorn: run scripts/install-real-servers"
)]
fn gunicorn_upgrade_by_steps_under_load() {
    hotreload_tests::watchdog(|| {
        upgrade_by_steps(Kind::Gunicorn);
    });
}

#[test]
#[cfg_attr(
    missing_unicorn,
    ignore = "needs unicorn: run scripts/install-real-servers"
)]
fn unicorn_rollback_from_spawned_under_load() {
    hotreload_tests::watchdog(|| {
        rollback_from_spawned(Kind::Unicorn);
    });
}

#[test]
#[cfg_attr(
    missing_gunicorn,
    ignore = "needs gunicorn: run scripts/install-real-servers"
)]
fn gunicorn_rollback_from_spawned_under_load() {
    hotreload_tests::watchdog(|| {
        rollback_from_spawned(Kind::Gunicorn);
    });
}

#[test]
fn upgrade_needs_new_binary_unless_swap_none() {
    hotreload_tests::watchdog(|| {
        let out = Command::new(hotreload_bin())
            .args(["upgrade", "--pid-file", "/nonexistent/app.pid"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("--new-binary"),
            "{out:?}"
        );
    });
}
