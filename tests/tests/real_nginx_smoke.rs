//! Smoke test against the two real Debian nginx builds that `scripts/install-real-servers`
//! unpacks: each starts and serves, and a hand-driven USR2 → WINCH → QUIT upgrades a running
//! deb12u9 master to the deb12u11 executable (DESIGN.md §2; what real nginx does at each step is
//! recorded in notes/nginx-observations.md).
//!
//! Deliberately uses nothing but std, nix and /proc, so it checks real nginx and not our own
//! model of it. Missing builds skip the tests with a message, unless
//! `HOTRELOAD_REQUIRE_REAL_SERVERS=1` (CI), where they fail.
//!
//! Every process a test starts lives in the session of the master it started (nginx daemonizes
//! with setsid; the new master and all workers stay in that session); `Cleanup` SIGKILLs every
//! process of that session when the test ends, panicking or not.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const OLD: &str = "1.22.1-9+deb12u9";
const NEW: &str = "1.22.1-9+deb12u11";
const WORKERS: usize = 2;
const DEADLINE: Duration = Duration::from_secs(10);

fn cache_dir() -> PathBuf {
    match std::env::var_os("HOTRELOAD_REAL_SERVERS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/real-servers"),
    }
}

fn build_path(version: &str) -> PathBuf {
    cache_dir().join(format!("nginx-{version}/usr/sbin/nginx"))
}

/// The builds' paths, or `None` (after saying why) when they are not installed and the
/// environment does not require them.
fn builds() -> Option<(PathBuf, PathBuf)> {
    let (old, new) = (build_path(OLD), build_path(NEW));
    let missing: Vec<String> = [&old, &new]
        .iter()
        .filter(|p| !p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        return Some((old, new));
    }
    let msg = format!(
        "real nginx not installed (missing {}); run `scripts/install-real-servers` \
         (cache dir: $HOTRELOAD_REAL_SERVERS_DIR, default <repo>/.cache/real-servers)",
        missing.join(", ")
    );
    if std::env::var("HOTRELOAD_REQUIRE_REAL_SERVERS").as_deref() == Ok("1") {
        panic!("HOTRELOAD_REQUIRE_REAL_SERVERS=1 but {msg}");
    }
    eprintln!("SKIPPED: {msg}");
    None
}

/// Poll `cond` with short backing-off sleeps until it holds or `DEADLINE` passes.
fn wait_until<T>(what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {DEADLINE:?} waiting for {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// One process as /proc shows it.
#[derive(Debug, Clone)]
struct Proc {
    pid: i32,
    ppid: i32,
    sid: i32,
    state: char,
    /// cmdline with trailing NULs trimmed (nginx pads its titles with NULs) and inner NULs as spaces.
    title: String,
}

fn proc_of(pid: i32) -> Option<Proc> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after "(comm) ": state ppid pgrp session ...
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    let _pgrp = f.next()?;
    let sid = f.next()?.parse().ok()?;
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let title = String::from_utf8_lossy(&raw[..end]).replace('\0', " ");
    Some(Proc {
        pid,
        ppid,
        sid,
        state,
        title,
    })
}

fn all_procs() -> Vec<Proc> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter_map(proc_of)
        .collect()
}

/// Exited means gone or a zombie (PID 1 here reaps orphans only lazily).
fn exited(pid: i32) -> bool {
    !matches!(proc_of(pid), Some(p) if p.state != 'Z')
}

fn workers_of(master: i32) -> Vec<Proc> {
    all_procs()
        .into_iter()
        .filter(|p| {
            p.ppid == master && p.state != 'Z' && p.title.starts_with("nginx: worker process")
        })
        .collect()
}

/// The pid in `path`, if the file holds exactly one decimal number and a newline.
fn read_pid(path: &Path) -> Option<i32> {
    let s = fs::read_to_string(path).ok()?;
    s.strip_suffix('\n')?.parse().ok()
}

/// Kills every process of every session that one of our masters started, on drop.
struct Cleanup {
    prefix: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        // Masters carry the prefix in their title; everything they started shares their session.
        let marker = self.prefix.to_string_lossy().into_owned();
        let procs = all_procs();
        let sids: Vec<i32> = procs
            .iter()
            .filter(|p| p.title.contains(&marker) && p.sid > 1)
            .map(|p| p.sid)
            .collect();
        for p in procs
            .iter()
            .filter(|p| sids.contains(&p.sid) && p.state != 'Z')
        {
            let _ = kill(Pid::from_raw(p.pid), Signal::SIGKILL);
        }
    }
}

/// A real nginx in its own temp prefix, on a free loopback port.
struct Nginx {
    // Field order is drop order: kill the processes before removing their prefix.
    _cleanup: Cleanup,
    dir: tempfile::TempDir,
    addr: SocketAddr,
}

impl Nginx {
    /// Copy `build` to `<prefix>/sbin/nginx` (the argv[0] a USR2 re-executes) and start it daemonized.
    fn start(build: &Path) -> Nginx {
        let dir = tempfile::Builder::new()
            .prefix("real-nginx-")
            .tempdir()
            .expect("tempdir");
        let prefix = dir.path().to_path_buf();
        for sub in ["conf", "logs", "tmp", "sbin"] {
            fs::create_dir_all(prefix.join(sub)).expect("mkdir");
        }
        fs::copy(build, prefix.join("sbin/nginx")).expect("copy nginx build into the prefix");
        let cleanup = Cleanup {
            prefix: prefix.clone(),
        };
        // A port taken between our probe and nginx's bind makes start-up fail: try a few.
        for attempt in 1..=3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("probe port")
                .port();
            fs::write(prefix.join("conf/nginx.conf"), config(port)).expect("write config");
            let out = Command::new(prefix.join("sbin/nginx"))
                .arg("-p")
                .arg(format!("{}/", prefix.display()))
                .args(["-c", "conf/nginx.conf"])
                .output()
                .expect("run nginx");
            if out.status.success() {
                let nginx = Nginx {
                    dir,
                    addr: ([127, 0, 0, 1], port).into(),
                    _cleanup: cleanup,
                };
                let master = wait_until("the pid file", || read_pid(&nginx.pid_file()));
                wait_until("the first workers", || {
                    (workers_of(master).len() == WORKERS).then_some(())
                });
                return nginx;
            }
            let log = fs::read_to_string(prefix.join("logs/error.log")).unwrap_or_default();
            let text = format!("{}{log}", String::from_utf8_lossy(&out.stderr));
            assert!(
                attempt < 3 && text.contains("Address already in use"),
                "nginx {} failed to start ({}):\n{text}",
                build.display(),
                out.status
            );
        }
        unreachable!()
    }

    fn prefix(&self) -> &Path {
        self.dir.path()
    }
    fn pid_file(&self) -> PathBuf {
        self.prefix().join("logs/nginx.pid")
    }
    fn oldbin_file(&self) -> PathBuf {
        self.prefix().join("logs/nginx.pid.oldbin")
    }
    fn error_log(&self) -> String {
        fs::read_to_string(self.prefix().join("logs/error.log")).unwrap_or_default()
    }

    /// GET /ok; returns (status line, Server header).
    fn get(&self) -> (String, String) {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
            .expect("connect to nginx");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /ok HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read response");
        let status = resp.lines().next().unwrap_or_default().to_string();
        let server = resp
            .lines()
            .find_map(|l| l.strip_prefix("Server: "))
            .unwrap_or_default()
            .to_string();
        (status, server)
    }
}

fn config(port: u16) -> String {
    // The Debian builds have /var/lib/nginx compiled in as temp paths: keep them in the prefix.
    format!(
        "worker_processes {WORKERS};\n\
         daemon on;\n\
         pid logs/nginx.pid;\n\
         error_log logs/error.log info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
           access_log off;\n\
           client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;\n\
           uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;\n\
           server {{ listen 127.0.0.1:{port}; location /ok {{ return 200 \"ok\\n\"; }} }}\n\
         }}\n"
    )
}

/// True when the running process `pid` executes exactly the bytes of `build`.
/// (Both builds say `nginx/1.22.1`; only the executable tells them apart.)
fn runs_build(pid: i32, build: &Path) -> bool {
    let running = fs::read(format!("/proc/{pid}/exe")).expect("read /proc/<pid>/exe");
    running == fs::read(build).expect("read build")
}

fn signal(pid: i32, sig: Signal) {
    kill(Pid::from_raw(pid), sig).unwrap_or_else(|e| panic!("kill({pid}, {sig}): {e}"));
}

#[test]
fn each_build_starts_and_serves() {
    let Some((old, new)) = builds() else { return };
    assert_ne!(
        fs::read(&old).unwrap(),
        fs::read(&new).unwrap(),
        "the two builds must differ"
    );
    for build in [old, new] {
        let nginx = Nginx::start(&build);
        let master = read_pid(&nginx.pid_file()).unwrap();
        assert!(runs_build(master, &build));
        assert_eq!(
            nginx.get(),
            ("HTTP/1.1 200 OK".to_string(), "nginx/1.22.1".to_string())
        );
        let title = proc_of(master).unwrap().title;
        assert!(
            title.starts_with("nginx: master process "),
            "master title: {title:?}"
        );
    }
}

#[test]
fn manual_usr2_winch_quit_upgrades_deb12u9_to_deb12u11() {
    let Some((old, new)) = builds() else { return };
    let nginx = Nginx::start(&old);
    let old_master = read_pid(&nginx.pid_file()).unwrap();
    assert!(
        runs_build(old_master, &old),
        "the first master must run the {OLD} build"
    );

    // Swap the executable at argv[0] atomically, as a deployment would.
    let exe = nginx.prefix().join("sbin/nginx");
    let staged = nginx.prefix().join("sbin/nginx.new");
    fs::copy(&new, &staged).unwrap();
    fs::rename(&staged, &exe).unwrap();

    // USR2: pid → pid.oldbin, then the new master (a child of the old) writes pid.
    signal(old_master, Signal::SIGUSR2);
    let new_master = wait_until("the new master's pid file next to .oldbin", || {
        let pid = read_pid(&nginx.pid_file())?;
        (pid != old_master && read_pid(&nginx.oldbin_file()) == Some(old_master)).then_some(pid)
    });
    assert_eq!(
        proc_of(new_master).map(|p| p.ppid),
        Some(old_master),
        "new master is the old master's child"
    );
    wait_until("the new master's workers", || {
        (workers_of(new_master).len() == WORKERS).then_some(())
    });
    assert!(
        runs_build(new_master, &new),
        "the new master must run the {NEW} build"
    );
    assert!(
        runs_build(old_master, &old),
        "the old master still runs {OLD}"
    );
    assert_eq!(
        workers_of(old_master).len(),
        WORKERS,
        "old workers keep running until WINCH"
    );

    // WINCH: the old master's workers go; it stays, holding the sockets.
    signal(old_master, Signal::SIGWINCH);
    wait_until("the old workers to exit", || {
        workers_of(old_master).is_empty().then_some(())
    });
    assert!(!exited(old_master), "the old master stays after WINCH");
    assert_eq!(nginx.get().0, "HTTP/1.1 200 OK");

    // QUIT: the old master deletes .oldbin and exits; the new one carries on.
    signal(old_master, Signal::SIGQUIT);
    wait_until("the old master to exit and .oldbin to go", || {
        (exited(old_master) && !nginx.oldbin_file().exists()).then_some(())
    });
    assert_eq!(read_pid(&nginx.pid_file()), Some(new_master));
    assert_eq!(workers_of(new_master).len(), WORKERS);
    assert_eq!(
        nginx.get(),
        ("HTTP/1.1 200 OK".to_string(), "nginx/1.22.1".to_string())
    );
    let log = nginx.error_log();
    for line in [
        "(SIGUSR2) received from",
        "changing binary",
        &format!("start new binary process {new_master}"),
        &format!("{new_master}#{new_master}: using inherited sockets from"),
        "(SIGWINCH) received from",
        "(SIGQUIT) received from",
    ] {
        assert!(log.contains(line), "error log lacks {line:?}:\n{log}");
    }

    // Stop the new master too, gracefully; Cleanup would SIGKILL it otherwise.
    signal(new_master, Signal::SIGQUIT);
    wait_until("the new master to exit", || {
        exited(new_master).then_some(())
    });
}
