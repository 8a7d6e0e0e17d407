//! A server under benchmark (fake-nginx or a real Debian nginx build) in its own temp
//! prefix on a free 127.0.0.1 port, started daemonized as
//! `PREFIX/sbin/nginx -p PREFIX/ -c conf/nginx.conf` so that replacing `sbin/nginx` and
//! sending USR2 upgrades it, as in production.
//!
//! Every process it ever starts lives in the session of a master this module started
//! (nginx daemonizes with setsid; new masters and workers stay in that session; a plain
//! restart starts a new session, which is recorded too). Dropping a [`Server`] SIGKILLs
//! every live member of those sessions, panicking or not, then removes the prefix.

use std::collections::BTreeSet;
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sys;

/// Sessions of every server this process started, for [`kill_everything`] (interrupts).
static ALL_SESSIONS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
/// Process groups of helpers (the sleeping processes of scenario 4).
pub static HELPER_GROUPS: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());

/// SIGKILLs every server session and helper group this benchmark started (used when
/// the benchmark itself is interrupted; `Drop` does the same per server otherwise).
pub fn kill_everything() {
    let sessions = ALL_SESSIONS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    for _ in 0..3 {
        for p in sys::all_pids().into_iter().filter_map(sys::proc_stat) {
            if sessions.contains(&p.sid) && p.state != 'Z' {
                let _ = sys::kill(p.pid, libc::SIGKILL);
            }
        }
    }
    for &g in HELPER_GROUPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        if g > 1 {
            // SAFETY: kill(2) of a process group this benchmark created.
            unsafe { libc::kill(-g, libc::SIGKILL) };
        }
    }
    // And the prefixes (Drop does not run on an interrupt).
    let mine = format!("hotreload-bench-{}-", std::process::id());
    if let Ok(dir) = fs::read_dir(std::env::temp_dir()) {
        for e in dir.flatten() {
            if e.file_name().to_string_lossy().starts_with(&mine) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }
}

/// Start-up and upgrade waits never last longer than this.
pub const DEADLINE: Duration = Duration::from_secs(30);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Fake,
    Real,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Fake => "fake-nginx",
            Kind::Real => "nginx 1.22.1",
        }
    }
}

/// Two executables of one server; upgrades alternate between them.
#[derive(Clone, Debug)]
pub struct Builds {
    pub kind: Kind,
    pub a: PathBuf,
    pub b: PathBuf,
    pub label_a: String,
    pub label_b: String,
}

impl Builds {
    /// The build to install for the `i`-th upgrade of a server started on `a`.
    pub fn target(&self, i: usize) -> &Path {
        if i % 2 == 0 {
            &self.b
        } else {
            &self.a
        }
    }
}

pub struct Server {
    pub kind: Kind,
    pub prefix: PathBuf,
    pub exe: PathBuf,
    pub pid_file: PathBuf,
    pub addr: SocketAddr,
    pub workers: usize,
    sessions: Mutex<BTreeSet<i32>>,
}

/// The config both servers run: temp paths inside the prefix (real nginx needs them),
/// and every response names the worker that served it (`$pid`; fake-nginx sends
/// `X-Worker-Pid` by itself and ignores the directive).
fn config(port: u16, workers: usize) -> String {
    format!(
        "worker_processes {workers};\n\
         daemon on;\n\
         pid logs/nginx.pid;\n\
         error_log logs/error.log notice;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n\
         \x20 access_log off;\n\
         \x20 client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;\n\
         \x20 uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;\n\
         \x20 server {{\n\
         \x20   listen 127.0.0.1:{port};\n\
         \x20   location / {{ add_header X-Worker-Pid $pid always; return 200 \"ok\\n\"; }}\n\
         \x20 }}\n\
         }}\n"
    )
}

impl Server {
    /// Copies `build` to `PREFIX/sbin/nginx`, starts it with `workers` workers and waits
    /// for the pid file and every worker.
    pub fn start(kind: Kind, build: &Path, workers: usize) -> Result<Server, String> {
        static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let prefix =
            std::env::temp_dir().join(format!("hotreload-bench-{}-{seq}", std::process::id()));
        let _ = fs::remove_dir_all(&prefix);
        for sub in ["conf", "logs", "tmp", "sbin"] {
            fs::create_dir_all(prefix.join(sub)).map_err(|e| format!("mkdir: {e}"))?;
        }
        let exe = prefix.join("sbin/nginx");
        install(build, &exe)?;
        let mut server = Server {
            kind,
            pid_file: prefix.join("logs/nginx.pid"),
            prefix,
            exe,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            workers,
            sessions: Mutex::new(BTreeSet::new()),
        };
        let mut last = String::new();
        for _ in 0..4 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map_err(|e| format!("probe port: {e}"))?
                .port();
            server.addr = SocketAddr::from(([127, 0, 0, 1], port));
            fs::write(server.prefix.join("conf/nginx.conf"), config(port, workers))
                .map_err(|e| format!("write config: {e}"))?;
            match server.launch() {
                Ok(()) => return Ok(server),
                Err(e) if e.contains("Address already in use") => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// Runs `sbin/nginx -p PREFIX/ -c conf/nginx.conf` (it daemonizes and returns) and
    /// waits for a live master in the pid file and all its workers.
    pub fn launch(&self) -> Result<(), String> {
        let out = fake_nginx::harness::output_retrying(
            Command::new(&self.exe)
                .arg("-p")
                .arg(format!("{}/", self.prefix.display()))
                .args(["-c", "conf/nginx.conf"])
                .current_dir(&self.prefix)
                .stdin(Stdio::null()),
        )
        .map_err(|e| format!("run {}: {e}", self.exe.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} exited with {} while starting: {}{}",
                self.exe.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr),
                self.error_log_tail()
            ));
        }
        let mut master = 0;
        let ok = sys::wait_for(DEADLINE, || {
            master = sys::read_pid(&self.pid_file).unwrap_or(0);
            master > 1 && !sys::exited(master)
        });
        if !ok {
            return Err(format!(
                "no live master in the pid file\n{}",
                self.error_log_tail()
            ));
        }
        self.adopt_session_of(master);
        let n = self.workers;
        if !sys::wait_for(DEADLINE, || sys::workers_of(master).len() == n) {
            return Err(format!("master {master} did not start {n} workers"));
        }
        Ok(())
    }

    /// The master in the pid file (0 if none).
    pub fn master(&self) -> i32 {
        sys::read_pid(&self.pid_file).unwrap_or(0)
    }

    pub fn oldbin(&self) -> PathBuf {
        PathBuf::from(format!("{}.oldbin", self.pid_file.display()))
    }

    /// Remembers the session of `pid` (a master started outside [`Server::launch`]).
    pub fn adopt_session_of(&self, pid: i32) {
        if let Some(p) = sys::proc_stat(pid) {
            if p.sid > 1 {
                self.sessions.lock().unwrap().insert(p.sid);
                ALL_SESSIONS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(p.sid);
            }
        }
    }

    /// After an upgrade away from `old`: waits until the pid file names another live
    /// master with all its workers, `.oldbin` is gone and `old` has exited.
    pub fn wait_upgraded(&self, old: i32, timeout: Duration) -> Result<i32, String> {
        let mut new = 0;
        let n = self.workers;
        let ok = sys::wait_for(timeout, || {
            new = self.master();
            new > 1
                && new != old
                && !sys::exited(new)
                && sys::exited(old)
                && !self.oldbin().exists()
                && sys::workers_of(new).len() == n
        });
        if ok {
            self.adopt_session_of(new);
            Ok(new)
        } else {
            Err(format!(
                "{} not upgraded after {timeout:?}: pid file {:?}, .oldbin {:?}, old master {old} exited: {}\n{}",
                self.kind.name(),
                sys::read_pid(&self.pid_file),
                sys::read_pid(&self.oldbin()),
                sys::exited(old),
                self.error_log_tail()
            ))
        }
    }

    pub fn error_log_tail(&self) -> String {
        let text = fs::read_to_string(self.prefix.join("logs/error.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Live processes of every session this server started.
    pub fn processes(&self) -> Vec<i32> {
        let sessions = self.sessions.lock().unwrap().clone();
        if sessions.is_empty() {
            return Vec::new();
        }
        sys::all_pids()
            .into_iter()
            .filter_map(sys::proc_stat)
            .filter(|p| sessions.contains(&p.sid) && p.state != 'Z' && p.state != 'X')
            .map(|p| p.pid)
            .collect()
    }

    pub fn kill_all(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let procs = self.processes();
            if procs.is_empty() || Instant::now() >= deadline {
                break;
            }
            for p in procs {
                let _ = sys::kill(p, libc::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill_all();
        let _ = fs::remove_dir_all(&self.prefix);
    }
}

/// Copies `build` over `dest` atomically (stage beside it, rename).
pub fn install(build: &Path, dest: &Path) -> Result<(), String> {
    let staged = dest.with_extension("bench-staged");
    fs::copy(build, &staged).map_err(|e| format!("copy {}: {e}", build.display()))?;
    fs::rename(&staged, dest).map_err(|e| format!("rename to {}: {e}", dest.display()))
}
