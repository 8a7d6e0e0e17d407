//! Smoke test against the two real Debian nginx builds that `scripts/install-real-servers`
//! unpacks: each starts and serves, and a hand-driven USR2 → WINCH → QUIT upgrades a running
//! deb12u9 master to the deb12u11 executable (DESIGN.md §2; what real nginx does at each step is
//! recorded in notes/nginx-observations.md).
//!
//! Deliberately uses nothing but std, nix and /proc, so it checks real nginx and not our own
//! model of it (the harness only reads `/proc` and polls). Missing builds make the tests
//! ignored, unless CI or `HOTRELOAD_REQUIRE_REAL_SERVERS=1`, where they fail.
//!
//! Every process a test starts lives in the session of the master it started (nginx daemonizes
//! with setsid; the new master and all workers stay in that session); `Cleanup` SIGKILLs every
//! process of that session when the test ends, panicking or not.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hotreload_tests::watchdog::{register, Registration, Watched};
use hotreload_tests::{procs, tools};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const OLD: &str = "1.22.1-9+deb12u9";
const NEW: &str = "1.22.1-9+deb12u11";
const WORKERS: usize = 2;
const DEADLINE: Duration = Duration::from_secs(10);

fn build_path(version: &str) -> PathBuf {
    tools::real_servers_dir().join(format!("nginx-{version}/usr/sbin/nginx"))
}

/// The builds' paths; panics saying how to install them when they are missing (the tests
/// are ignored then, unless CI or `HOTRELOAD_REQUIRE_REAL_SERVERS=1` requires them).
fn builds() -> (PathBuf, PathBuf) {
    let (old, new) = (build_path(OLD), build_path(NEW));
    tools::require("real nginx", &[&old, &new]);
    (old, new)
}

/// [`hotreload_tests::wait_for`] with this file's deadline.
#[track_caller]
fn wait_until<T>(what: &str, cond: impl FnMut() -> Option<T>) -> T {
    hotreload_tests::wait_for(what, DEADLINE, cond)
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
    let st = procs::stat(pid)?;
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let title = String::from_utf8_lossy(&raw[..end]).replace('\0', " ");
    Some(Proc {
        pid,
        ppid: st.ppid,
        sid: st.session,
        state: st.state,
        title,
    })
}

fn all_procs() -> Vec<Proc> {
    procs::all_pids().into_iter().filter_map(proc_of).collect()
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
    watch: Option<Registration>,
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
        // Another test thread's fork may still hold the copy's write descriptor.
        fake_nginx::harness::settle_executable(&prefix.join("sbin/nginx")).expect("nginx runs");
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
                let mut nginx = Nginx {
                    watch: None,
                    dir,
                    addr: ([127, 0, 0, 1], port).into(),
                    _cleanup: cleanup,
                };
                let master = wait_until("the pid file", || read_pid(&nginx.pid_file()));
                nginx.watch = Some(register(Watched::of_master(
                    &format!("nginx at {}", prefix.display()),
                    master,
                    None,
                    Some(prefix.join("logs/error.log")),
                )));
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
#[cfg_attr(
    missing_real_nginx,
    ignore = "needs real nginx: run scripts/install-real-servers"
)]
fn each_build_starts_and_serves() {
    hotreload_tests::watchdog(|| {
        let (old, new) = builds();
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
    });
}

#[test]
#[cfg_attr(
    missing_real_nginx,
    ignore = "needs real nginx: run scripts/install-real-servers"
)]
fn manual_usr2_winch_quit_upgrades_deb12u9_to_deb12u11() {
    hotreload_tests::watchdog(|| {
        let (old, new) = builds();
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
    });
}
