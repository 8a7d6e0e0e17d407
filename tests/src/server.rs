//! A "server under test" that is either real nginx (the Debian builds that
//! `scripts/install-real-servers` unpacks) or fake-nginx, driven the same way: same command
//! line (`PREFIX/sbin/nginx -p PREFIX/ -c conf/nginx.conf`), same config file, same signals,
//! and observed the same way, through nothing but the pid files, `/proc` and the error log.
//!
//! Everything observed is normalised so that two servers can be held to one expectation:
//! pids become role labels (`A` the first master, `B`, `C`… each new master in order of
//! discovery, `L` the process the test launched when it is not a master, `W` any other
//! process of the server in a log line, `TEST` this test process), the temp prefix becomes
//! `PREFIX`, executables become `old`/`new` by inode. Three views:
//!
//! - [`Server::view`]: pid files and process tree, one line per master and per group of
//!   identical workers (see the format there);
//! - [`Server::log_lines_of`]: error-log lines as `[level] WHO: message`;
//! - the pid-file timeline: a background poller records every distinct
//!   (`pid`, `pid.oldbin`) state, so a test can assert the sequence a step went through.
//!
//! Every wait is a short backing-off poll with a generous deadline, never a sleep standing in
//! for a handshake. Dropping a [`Server`] SIGKILLs every process of every process group the
//! server started (the first master's, the launcher's) and every process the views ever saw,
//! even when the test panics: orphaned workers of a killed master included.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// The real nginx builds: the upgrade goes from the first to the second.
pub const REAL_OLD: &str = "1.22.1-9+deb12u9";
pub const REAL_NEW: &str = "1.22.1-9+deb12u11";
/// Versions baked into the two fake-nginx variants.
pub const FAKE_OLD: &str = "1.22.1-fake-old";
pub const FAKE_NEW: &str = "1.22.1-fake-new";

/// Workers per master in the config.
pub const WORKERS: usize = 2;
/// How long any single wait may last (2 slow shared cores, tests in parallel).
pub const DEADLINE: Duration = Duration::from_secs(15);

/// Which server is under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    RealNginx,
    FakeNginx,
}

/// Two different executables of one server: the upgrade goes from `old` to `new`.
#[derive(Clone, Debug)]
pub struct Builds {
    pub old: PathBuf,
    pub new: PathBuf,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::RealNginx => "nginx",
            Kind::FakeNginx => "fake-nginx",
        }
    }

    /// The two builds; panics when real nginx is not installed.
    pub fn builds(self) -> Builds {
        match self {
            Kind::RealNginx => real_builds(),
            Kind::FakeNginx => fake_builds().clone(),
        }
    }
}

pub use crate::tools::real_servers_dir;

/// The Debian builds; panics, saying how to install them, when they are missing (the test
/// is `#[ignore]`d then, unless CI or `HOTRELOAD_REQUIRE_REAL_SERVERS=1` requires it).
fn real_builds() -> Builds {
    let dir = real_servers_dir();
    let path = |v: &str| dir.join(format!("nginx-{v}/sbin/nginx"));
    let builds = Builds {
        old: path(REAL_OLD),
        new: path(REAL_NEW),
    };
    crate::tools::require("real nginx", &[&builds.old, &builds.new]);
    builds
}

/// Two fake-nginx variants made once per test process with `fake-nginx --make-variant`.
fn fake_builds() -> &'static Builds {
    static BUILDS: OnceLock<Builds> = OnceLock::new();
    BUILDS.get_or_init(|| Builds {
        old: fake_variant(FAKE_OLD, &[]),
        new: fake_variant(FAKE_NEW, &[]),
    })
}

/// A fake-nginx variant made with `fake-nginx --make-variant --version V [--fault F]...`.
///
/// Kept next to the binaries of this build, one directory per test process, so that
/// concurrent runs never rename over each other's files; the directories of test processes
/// that are gone are removed.
pub fn fake_variant(version: &str, faults: &[&str]) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let bin = crate::fake_nginx_bin();
    let dir = DIR.get_or_init(|| {
        let root = bin
            .parent()
            .expect("fake-nginx has a parent dir")
            .join("conformance-fake");
        if let Ok(entries) = fs::read_dir(&root) {
            for e in entries.flatten() {
                let pid = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok());
                if pid.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists()) {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = root.join(std::process::id().to_string());
        fs::create_dir_all(&dir).expect("create the fake-nginx variants dir");
        dir
    });
    let mut name = format!("fake-nginx-{version}");
    for f in faults {
        name.push('-');
        name.push_str(&f.replace(['/', '='], "_"));
    }
    let out = dir.join(name);
    let mut cmd = Command::new(&bin);
    cmd.arg("--make-variant")
        .arg("--out")
        .arg(&out)
        .args(["--version", version]);
    for f in faults {
        cmd.args(["--fault", f]);
    }
    let res = cmd.output().expect("run fake-nginx --make-variant");
    assert!(
        res.status.success() && out.is_file(),
        "{cmd:?} failed ({}):\n{}{}",
        res.status,
        String::from_utf8_lossy(&res.stdout),
        String::from_utf8_lossy(&res.stderr)
    );
    out
}

/// How to start the server.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Options {
    /// `daemon on;`: the launcher forks the master off and returns at once.
    #[default]
    Daemon,
    /// `daemon off;`, the master is this test's child (a supervisor that stays).
    Foreground,
    /// `daemon off;`, started in the background by a shell (labelled `L`) that exits once the
    /// master is up, so the master's original parent is gone (it is PID 1's child).
    ForegroundOrphaned,
    /// `daemon on;`, started from the prefix as `sbin/nginx` (a relative argv[0], which a
    /// USR2 re-executes relative to the master's working directory).
    DaemonRelativeArgv0,
    /// `daemon on;` with `listen … reuseport`: the master opens one socket per worker.
    DaemonReuseport,
}

impl Options {
    pub fn daemon(self) -> bool {
        matches!(
            self,
            Options::Daemon | Options::DaemonRelativeArgv0 | Options::DaemonReuseport
        )
    }
}

/// The config file both kinds run with. Real nginx needs the five temp paths inside the
/// prefix (its compiled-in /var/lib/nginx does not exist here); fake-nginx ignores them.
pub fn config(port: u16, daemon: bool) -> String {
    let daemon = if daemon { "on" } else { "off" };
    format!(
        "worker_processes {WORKERS};\n\
         daemon {daemon};\n\
         pid logs/nginx.pid;\n\
         error_log logs/error.log notice;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n\
         \x20 access_log off;\n\
         \x20 client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;\n\
         \x20 uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;\n\
         \x20 server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"ok\\n\"; }} }}\n\
         }}\n"
    )
}

/// One process as /proc shows it.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub pgid: i32,
    pub sid: i32,
    pub state: char,
    pub start_time: u64,
    /// cmdline with trailing NULs trimmed (nginx pads its titles) and inner NULs as spaces.
    pub title: String,
}

impl Proc {
    pub fn read(pid: i32) -> Option<Proc> {
        let st = crate::procs::stat(pid)?;
        let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
        Some(Proc {
            pid,
            state: st.state,
            ppid: st.ppid,
            pgid: st.pgrp,
            sid: st.session,
            start_time: st.start_time,
            title: String::from_utf8_lossy(&raw[..end]).replace('\0', " "),
        })
    }

    /// Gone and zombie alike count as exited (PID 1 here reaps orphans only lazily).
    pub fn alive(&self) -> bool {
        self.state != 'Z'
    }
}

/// Every process in /proc.
pub fn all_procs() -> Vec<Proc> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter_map(Proc::read)
        .collect()
}

/// `(st_dev, st_ino)` of the executable a process runs (works for a deleted file too).
fn exe_id(pid: i32) -> Option<(u64, u64)> {
    let m = fs::metadata(format!("/proc/{pid}/exe")).ok()?;
    Some((m.dev(), m.ino()))
}

fn file_id(path: &Path) -> (u64, u64) {
    let m = fs::metadata(path).unwrap_or_else(|e| panic!("stat {}: {e}", path.display()));
    (m.dev(), m.ino())
}

/// [`crate::poll::poll`] with this module's [`DEADLINE`].
#[track_caller]
pub fn wait_for<T>(what: &str, f: impl FnMut() -> Result<T, String>) -> T {
    crate::poll::poll(what, DEADLINE, f)
}

/// Names given to pids. Labels are handed out in order of discovery.
#[derive(Default)]
struct Labels {
    by_pid: BTreeMap<i32, String>,
}

impl Labels {
    fn get(&self, pid: i32) -> Option<&str> {
        self.by_pid.get(&pid).map(String::as_str)
    }

    fn assign(&mut self, pid: i32) -> String {
        let next = (b'A' + self.by_pid.len() as u8) as char;
        self.by_pid
            .entry(pid)
            .or_insert_with(|| next.to_string())
            .clone()
    }

    fn pid_of(&self, label: &str) -> Option<i32> {
        self.by_pid
            .iter()
            .find_map(|(pid, l)| (l == label).then_some(*pid))
    }
}

/// The pid-file states a background poller saw, consecutive duplicates dropped.
struct Timeline {
    states: Arc<Mutex<Vec<RawPidState>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

type RawPidState = (Option<Vec<u8>>, Option<Vec<u8>>);

/// Both files at one instant: two reads are not atomic, so a rename between them would show
/// `pid` and `.oldbin` naming the same master. Re-read `pid` after `.oldbin` and retry until
/// it did not change in between.
fn read_pid_state(pid: &Path, oldbin: &Path) -> RawPidState {
    let mut p = fs::read(pid).ok();
    for _ in 0..100 {
        let o = fs::read(oldbin).ok();
        let again = fs::read(pid).ok();
        if again == p {
            return (p, o);
        }
        p = again;
    }
    (p, fs::read(oldbin).ok())
}

fn record(states: &Mutex<Vec<RawPidState>>, s: RawPidState) {
    let mut v = states.lock().unwrap_or_else(|e| e.into_inner());
    if v.last() != Some(&s) {
        v.push(s);
    }
}

impl Timeline {
    fn start(pid: PathBuf, oldbin: PathBuf) -> Timeline {
        let states = Arc::new(Mutex::new(Vec::new()));
        record(&states, read_pid_state(&pid, &oldbin));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (states, stop) = (states.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    record(&states, read_pid_state(&pid, &oldbin));
                    std::thread::sleep(Duration::from_micros(500));
                }
            })
        };
        Timeline {
            states,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Timeline {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A point in a server's history: later checks look only at what happened after it.
#[derive(Clone, Debug)]
pub struct Mark {
    pub log: PathBuf,
    pub log_line: usize,
    timeline: usize,
}

impl Mark {
    /// The same point in time, but for the log at `log`, from its line `log_line` on (for a
    /// log that was rotated away, or a new one).
    pub fn in_log(&self, log: PathBuf, log_line: usize) -> Mark {
        Mark {
            log,
            log_line,
            timeline: self.timeline,
        }
    }
}

/// A real nginx or fake-nginx in its own temp prefix, on its own loopback port.
pub struct Server {
    pub kind: Kind,
    builds: Builds,
    addr: SocketAddr,
    /// Process groups whose members are this server's processes.
    pgids: Mutex<BTreeSet<i32>>,
    labels: Mutex<Labels>,
    /// Every process a view classified as the server's, with its start time.
    seen: Mutex<BTreeMap<i32, u64>>,
    /// Executable inode -> "old" / "new".
    exes: Mutex<Vec<((u64, u64), &'static str)>>,
    /// The foreground master (`daemon off`), this process's child.
    child: Mutex<Option<Child>>,
    /// The process this test started (labelled `L` when it is not a master).
    launcher: Mutex<Option<i32>>,
    timeline: Option<Timeline>,
    /// Tree and log in failure messages; the watchdog kills it on a lost deadline.
    watch: Option<crate::watchdog::Registration>,
    me: i32,
    my_sid: i32,
    my_pgid: i32,
    // Dropped last: the processes are killed (Drop) before their prefix is removed.
    dir: tempfile::TempDir,
}

impl Server {
    /// Copies `builds.old` to `PREFIX/sbin/nginx` (the argv[0] a USR2 re-executes), writes the
    /// config and starts it; returns once the pid file names a live master (labelled `A`).
    pub fn start(kind: Kind, builds: &Builds, opts: Options) -> Server {
        let dir = tempfile::Builder::new()
            .prefix(&format!("conformance-{}-", kind.name()))
            .tempdir()
            .expect("tempdir");
        let prefix = dir.path().to_path_buf();
        // World-readable like an ordinary prefix: nginx's workers run as nobody.
        fs::set_permissions(&prefix, fs::Permissions::from_mode(0o755)).expect("chmod prefix");
        for sub in ["conf", "logs", "tmp", "sbin"] {
            fs::create_dir_all(prefix.join(sub)).expect("mkdir");
        }
        let exe = prefix.join("sbin/nginx");
        copy_executable(&builds.old, &exe);
        let me = std::process::id() as i32;
        let mut server = Server {
            kind,
            builds: builds.clone(),
            addr: ([127, 0, 0, 1], 0).into(),
            pgids: Mutex::new(BTreeSet::new()),
            labels: Mutex::new(Labels::default()),
            seen: Mutex::new(BTreeMap::new()),
            exes: Mutex::new(vec![(file_id(&exe), "old")]),
            child: Mutex::new(None),
            launcher: Mutex::new(None),
            timeline: None,
            watch: None,
            me,
            my_sid: nix::unistd::getsid(None).map_or(-1, Pid::as_raw),
            my_pgid: nix::unistd::getpgrp().as_raw(),
            dir,
        };
        // A port taken between our probe and the server's bind fails the start: retry.
        for attempt in 1..=5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("probe a free port")
                .port();
            server.addr = ([127, 0, 0, 1], port).into();
            let mut conf = config(port, opts.daemon());
            if opts == Options::DaemonReuseport {
                let listen = format!("listen 127.0.0.1:{port};");
                conf = conf.replacen(&listen, &format!("listen 127.0.0.1:{port} reuseport;"), 1);
            }
            fs::write(server.conf_path(), conf).expect("write config");
            match server.launch(opts) {
                Ok(master) => {
                    server.labels.lock().unwrap().assign(master);
                    if let Some(p) = Proc::read(master) {
                        server.add_pgid(p.pgid);
                    }
                    server.timeline =
                        Some(Timeline::start(server.pid_file(), server.oldbin_file()));
                    server.watch = Some(crate::watchdog::register(
                        crate::watchdog::Watched::of_master(
                            &format!("{} at {}", kind.name(), server.prefix().display()),
                            master,
                            None,
                            Some(server.error_log()),
                        ),
                    ));
                    return server;
                }
                Err(text) => assert!(
                    attempt < 5 && text.contains("Address already in use"),
                    "{} failed to start:\n{text}",
                    kind.name()
                ),
            }
        }
        unreachable!()
    }

    /// Starts the server once; the master's pid, or the output and log when it failed.
    fn launch(&self, opts: Options) -> Result<i32, String> {
        let out_path = self.prefix().join("logs/launcher.out");
        let out = fs::File::create(&out_path).expect("create launcher output file");
        let mut cmd = if opts == Options::ForegroundOrphaned {
            // The shell starts the master in the background, then waits for its stdin to close.
            let mut sh = Command::new("sh");
            sh.args(["-c", "\"$0\" \"$@\" & read x"])
                .arg(self.exe_path())
                .stdin(Stdio::piped());
            sh
        } else if opts == Options::DaemonRelativeArgv0 {
            // The shell execs it (same pid), so argv[0] is exactly `sbin/nginx`.
            let mut sh = Command::new("sh");
            sh.args(["-c", "exec sbin/nginx \"$@\"", "sh"])
                .current_dir(self.prefix())
                .stdin(Stdio::null());
            sh
        } else {
            let mut c = Command::new(self.exe_path());
            c.stdin(Stdio::null());
            c
        };
        cmd.arg("-p")
            .arg(format!("{}/", self.prefix().display()))
            .args(["-c", "conf/nginx.conf"])
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            // Its own process group, so that whatever it starts can be found and killed,
            // and never this test's group.
            .process_group(0);
        let failed = |what: String| {
            let out = fs::read_to_string(&out_path).unwrap_or_default();
            let log = fs::read_to_string(self.error_log()).unwrap_or_default();
            format!("{what}\n--- output ---\n{out}--- error log ---\n{log}")
        };
        let mut c = spawn_retrying_etxtbsy(&mut cmd);
        self.add_pgid(c.id() as i32);
        *self.launcher.lock().unwrap() = Some(c.id() as i32);
        let mut child = None;
        if opts.daemon() {
            let status = c.wait().expect("wait for the launcher");
            if !status.success() {
                return Err(failed(format!("launcher exited with {status}")));
            }
        } else {
            child = Some(c);
        }
        let outcome = crate::poll::try_poll(DEADLINE, || {
            if let Some(pid) = read_pid(&self.pid_file()) {
                if Proc::read(pid).is_some_and(|p| p.alive()) {
                    return Some(Ok(pid));
                }
            }
            match child.as_mut().map(|c| c.try_wait()) {
                Some(Ok(Some(status))) => Some(Err(status)),
                _ => None,
            }
        });
        match outcome {
            Some(Ok(pid)) => {
                if opts == Options::ForegroundOrphaned {
                    if let Some(mut sh) = child.take() {
                        drop(sh.stdin.take());
                        let _ = sh.wait();
                    }
                }
                *self.child.lock().unwrap() = child;
                Ok(pid)
            }
            Some(Err(status)) => {
                let _ = fs::remove_file(self.pid_file());
                Err(failed(format!("foreground master exited with {status}")))
            }
            None => {
                if let Some(mut c) = child {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                Err(failed("no pid file naming a live master".to_string()))
            }
        }
    }

    fn add_pgid(&self, pgid: i32) {
        if pgid > 1 && pgid != self.my_pgid {
            self.pgids.lock().unwrap().insert(pgid);
        }
    }

    pub fn prefix(&self) -> &Path {
        self.dir.path()
    }
    pub fn conf_path(&self) -> PathBuf {
        self.prefix().join("conf/nginx.conf")
    }
    pub fn exe_path(&self) -> PathBuf {
        self.prefix().join("sbin/nginx")
    }
    pub fn pid_file(&self) -> PathBuf {
        self.prefix().join("logs/nginx.pid")
    }
    pub fn oldbin_file(&self) -> PathBuf {
        self.prefix().join("logs/nginx.pid.oldbin")
    }
    pub fn error_log(&self) -> PathBuf {
        self.prefix().join("logs/error.log")
    }
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The pid labelled `label` (panics if there is none yet).
    pub fn pid(&self, label: &str) -> i32 {
        self.labels
            .lock()
            .unwrap()
            .pid_of(label)
            .unwrap_or_else(|| panic!("no process labelled {label} yet"))
    }

    /// Sends `sig` to the process labelled `label`, after checking it is still the same,
    /// live process (same start time as when first seen).
    pub fn signal(&self, label: &str, sig: Signal) {
        let pid = self.pid(label);
        let p = Proc::read(pid).unwrap_or_else(|| panic!("{label} ({pid}) is gone"));
        assert!(p.alive(), "{label} ({pid}) is a zombie");
        if let Some(t) = self.seen.lock().unwrap().get(&pid) {
            assert_eq!(
                *t, p.start_time,
                "{label} ({pid}) is a different process now"
            );
        }
        kill(Pid::from_raw(pid), sig).unwrap_or_else(|e| panic!("kill({pid}, {sig}): {e}"));
    }

    /// Asserts that the process labelled `label` executes exactly the bytes of the old
    /// (`new == false`) or new build (the views tell builds apart by inode; this reads them).
    pub fn assert_runs_build(&self, label: &str, new: bool) {
        let pid = self.pid(label);
        let build = if new {
            &self.builds.new
        } else {
            &self.builds.old
        };
        let running = fs::read(format!("/proc/{pid}/exe")).expect("read /proc/<pid>/exe");
        let expected = fs::read(build).expect("read the build");
        assert!(
            running == expected,
            "{}: {label} ({pid}) does not run {}",
            self.kind.name(),
            build.display()
        );
    }

    /// Atomically puts the new build at argv[0] (stage in the same dir, rename over).
    pub fn swap_binary(&self) {
        self.install(&self.builds.new.clone(), "new");
    }

    /// Atomically puts (a fresh copy of) the old build back at argv[0].
    pub fn restore_old_binary(&self) {
        self.install(&self.builds.old.clone(), "old");
    }

    /// Atomically puts a copy of `file` at argv[0]; views call its executable `name`.
    pub fn install(&self, file: &Path, name: &'static str) {
        let staged = self.prefix().join(format!("sbin/.nginx.{name}"));
        copy_executable(file, &staged);
        self.exes.lock().unwrap().push((file_id(&staged), name));
        fs::rename(&staged, self.exe_path()).expect("rename the build over argv[0]");
    }

    /// Opens a connection and sends an incomplete request (no final empty line), then waits
    /// until one of the server's workers holds one socket more than before: the request is
    /// in flight. Finish it with [`finish_request`].
    pub fn hold_request(&self) -> TcpStream {
        let sockets = || -> usize {
            let labels: Vec<i32> = self.labels.lock().unwrap().by_pid.keys().copied().collect();
            all_procs()
                .iter()
                .filter(|p| p.alive() && labels.contains(&p.ppid))
                .map(|p| socket_fds(p.pid))
                .sum()
        };
        let before = sockets();
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("connect {}: {e}", self.addr));
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("set timeout");
        s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n")
            .expect("send the start of a request");
        wait_for("a worker to accept the held connection", || {
            let now = sockets();
            if now > before {
                Ok(())
            } else {
                Err(format!(
                    "worker sockets: {before} before, {now} now\n{}",
                    self.view()
                ))
            }
        });
        s
    }

    /// Like [`Server::hold_request`], but until the request is held by a worker of the
    /// master labelled `label` (the kernel picks the worker): the connections that landed
    /// elsewhere are returned too, held as well.
    pub fn hold_request_on(&self, label: &str) -> (TcpStream, Vec<TcpStream>) {
        self.connection_on(label, false)
    }

    /// An idle keep-alive connection held by a worker of the master labelled `label`: one
    /// complete request and its response went over it. Connections that landed elsewhere
    /// are returned too (idle as well).
    pub fn idle_keepalive_on(&self, label: &str) -> (TcpStream, Vec<TcpStream>) {
        self.connection_on(label, true)
    }

    fn connection_on(&self, label: &str, keepalive: bool) -> (TcpStream, Vec<TcpStream>) {
        let target = self.pid(label);
        let counts = || -> BTreeMap<i32, (i32, usize)> {
            let masters: Vec<i32> = self.labels.lock().unwrap().by_pid.keys().copied().collect();
            all_procs()
                .iter()
                .filter(|p| p.alive() && masters.contains(&p.ppid))
                .map(|p| (p.pid, (p.ppid, socket_fds(p.pid))))
                .collect()
        };
        let mut elsewhere = Vec::new();
        for _ in 0..40 {
            let before = counts();
            let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("connect {}: {e}", self.addr));
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("set timeout");
            if keepalive {
                s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
                    .expect("send a request");
                read_response(&mut s).expect("a response on the keep-alive connection");
            } else {
                s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n")
                    .expect("send the start of a request");
            }
            let parent = wait_for("a worker to accept the held connection", || {
                let now = counts();
                now.iter()
                    .find(|(pid, (_, n))| before.get(pid).map_or(0, |b| b.1) < *n)
                    .map(|(_, (ppid, _))| *ppid)
                    .ok_or_else(|| format!("worker sockets: {before:?} before, {now:?} now"))
            });
            if parent == target {
                return (s, elsewhere);
            }
            elsewhere.push(s);
        }
        panic!("40 connections and none landed on a worker of {label}");
    }

    /// GET / on a new connection; (status line, body).
    pub fn get(&self) -> Result<(String, String), String> {
        let mut s = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5))
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(|e| e.to_string())?;
        s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .map_err(|e| format!("send: {e}"))?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).map_err(|e| format!("read: {e}"))?;
        let resp = String::from_utf8_lossy(&resp).into_owned();
        let (head, body) = resp
            .split_once("\r\n\r\n")
            .ok_or_else(|| format!("no end of headers in {resp:?}"))?;
        let status = head.lines().next().unwrap_or_default().to_string();
        Ok((status, body.to_string()))
    }

    /// GET / answers `200 OK`. (Only the status: fake-nginx ignores `return` and answers
    /// with its own body, which names its version and worker, by design.)
    pub fn assert_serves(&self) {
        let got = self.get().map(|(status, _)| status);
        assert_eq!(
            got,
            Ok("HTTP/1.1 200 OK".to_string()),
            "{} GET /",
            self.kind.name()
        );
    }

    /// Name of a pid in a view: its label, `TEST` for this test process, `1`, or `#<pid>`.
    fn name(&self, labels: &Labels, pid: i32) -> String {
        if let Some(l) = labels.get(pid) {
            l.to_string()
        } else if Some(pid) == *self.launcher.lock().unwrap() {
            "L".into()
        } else if pid == self.me {
            "TEST".into()
        } else if pid == 1 {
            "1".into()
        } else {
            format!("#{pid}")
        }
    }

    fn exe_name(&self, pid: i32) -> &'static str {
        match exe_id(pid) {
            None => "?",
            Some(id) => self
                .exes
                .lock()
                .unwrap()
                .iter()
                .rev()
                .find_map(|(i, n)| (*i == id).then_some(*n))
                .unwrap_or("other"),
        }
    }

    fn norm_title(&self, title: &str) -> String {
        title.replace(&self.prefix().display().to_string(), "PREFIX")
    }

    fn pid_file_value(&self, labels: &Labels, raw: &Option<Vec<u8>>) -> String {
        match raw {
            None => "-".into(),
            Some(b) if b.is_empty() => "\"\"".into(),
            Some(b) => match std::str::from_utf8(b)
                .ok()
                .and_then(|s| s.strip_suffix('\n'))
                .and_then(|s| s.parse::<i32>().ok())
            {
                Some(pid) => self.name(labels, pid),
                None => format!("raw:{:?}", String::from_utf8_lossy(b)),
            },
        }
    }

    /// The pid files and the server's process tree, normalised. One line each:
    ///
    /// ```text
    /// pid=B oldbin=A
    /// listen sockets=1 held by masters A,B
    /// A master ppid=1 sid=A pgid=A exe=old "nginx: master process PREFIX/sbin/nginx -p PREFIX/ -c conf/nginx.conf"
    /// A worker exe=old "nginx: worker process" x2
    /// B master ppid=A sid=A pgid=A exe=new "nginx: master process PREFIX/sbin/nginx -p PREFIX/ -c conf/nginx.conf"
    /// B worker exe=new "nginx: worker process" x2
    /// other ppid=1 sid=A exe=new "nginx: worker process" x2
    /// ```
    ///
    /// `listen`: the sockets listening on the server's port (/proc/net/tcp) and the masters
    /// that hold one of them (the line is left out when nothing listens). Masters are the
    /// labelled processes (the first master, then each pid that a pid file or a `start new
    /// binary process N` log line names); exited ones (gone or zombie) are left out. Workers
    /// are the live children of a master, grouped; `other` lines are any other live process
    /// of the server's process groups (orphans, say).
    pub fn view(&self) -> String {
        let raw = read_pid_state(&self.pid_file(), &self.oldbin_file());
        // Labels first from the log, then from the pid files, so both name new masters alike.
        let _ = self.log_lines_of(&self.error_log());
        let procs: BTreeMap<i32, Proc> = all_procs().into_iter().map(|p| (p.pid, p)).collect();
        let mut labels = self.labels.lock().unwrap();
        for pid in [&raw.0, &raw.1].into_iter().flatten().filter_map(|b| {
            std::str::from_utf8(b)
                .ok()?
                .strip_suffix('\n')?
                .parse::<i32>()
                .ok()
        }) {
            if labels.get(pid).is_none() {
                let pgids = self.pgids.lock().unwrap();
                if procs
                    .get(&pid)
                    .is_some_and(|p| p.alive() && pgids.contains(&p.pgid))
                {
                    labels.assign(pid);
                }
            }
        }
        let pgids: BTreeSet<i32> = self.pgids.lock().unwrap().clone();
        let mut out = format!(
            "pid={} oldbin={}\n",
            self.pid_file_value(&labels, &raw.0),
            self.pid_file_value(&labels, &raw.1)
        );
        let listening = listen_inodes(self.addr.port());
        if !listening.is_empty() {
            let holders: Vec<&str> = labels
                .by_pid
                .iter()
                .filter(|(pid, _)| procs.get(pid).is_some_and(Proc::alive))
                .filter(|(pid, _)| socket_inodes(**pid).iter().any(|i| listening.contains(i)))
                .map(|(_, l)| l.as_str())
                .collect();
            let _ = writeln!(
                out,
                "listen sockets={} held by masters {}",
                listening.len(),
                holders.join(",")
            );
        }
        let masters: Vec<(&String, &Proc)> = labels
            .by_pid
            .iter()
            .filter_map(|(pid, l)| Some((l, procs.get(pid).filter(|p| p.alive())?)))
            .collect();
        let mut seen = self.seen.lock().unwrap();
        let mut masters_sorted = masters.clone();
        masters_sorted.sort_by_key(|(l, _)| l.as_str());
        for (label, m) in &masters_sorted {
            seen.entry(m.pid).or_insert(m.start_time);
            let _ = writeln!(
                out,
                "{label} master ppid={} sid={} pgid={} exe={} {:?}",
                self.name(&labels, m.ppid),
                self.session_name(&labels, m.sid),
                self.group_name(&labels, m.pgid),
                self.exe_name(m.pid),
                self.norm_title(&m.title)
            );
            let mut groups: BTreeMap<(&'static str, String), usize> = BTreeMap::new();
            for w in procs
                .values()
                .filter(|p| p.ppid == m.pid && p.alive() && labels.get(p.pid).is_none())
            {
                seen.entry(w.pid).or_insert(w.start_time);
                *groups
                    .entry((self.exe_name(w.pid), self.norm_title(&w.title)))
                    .or_default() += 1;
            }
            for ((exe, title), n) in groups {
                let _ = writeln!(out, "{label} worker exe={exe} {title:?} x{n}");
            }
        }
        let master_pids: BTreeSet<i32> = masters.iter().map(|(_, p)| p.pid).collect();
        let mut others: BTreeMap<String, usize> = BTreeMap::new();
        for p in procs.values().filter(|p| {
            p.alive()
                && pgids.contains(&p.pgid)
                && !master_pids.contains(&p.pid)
                && !master_pids.contains(&p.ppid)
        }) {
            seen.entry(p.pid).or_insert(p.start_time);
            let key = format!(
                "other ppid={} sid={} exe={} {:?}",
                self.name(&labels, p.ppid),
                self.session_name(&labels, p.sid),
                self.exe_name(p.pid),
                self.norm_title(&p.title)
            );
            *others.entry(key).or_default() += 1;
        }
        for (k, n) in others {
            let _ = writeln!(out, "{k} x{n}");
        }
        out
    }

    fn session_name(&self, labels: &Labels, sid: i32) -> String {
        if sid == self.my_sid {
            "TEST".into()
        } else {
            self.name(labels, sid)
        }
    }

    fn group_name(&self, labels: &Labels, pgid: i32) -> String {
        if pgid == self.my_pgid {
            "TEST".into()
        } else {
            self.name(labels, pgid)
        }
    }

    /// Runs the server's executable at argv[0] with the server's `-p`/`-c` and `args` (say
    /// `-t`); its exit code and its output (stdout then stderr), normalised like log lines.
    pub fn run_command(&self, args: &[&str]) -> (Option<i32>, Vec<String>) {
        let mut cmd = Command::new(self.exe_path());
        cmd.arg("-p")
            .arg(format!("{}/", self.prefix().display()))
            .args(["-c", "conf/nginx.conf"])
            .args(args)
            .stdin(Stdio::null());
        let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
        let prefix = self.prefix().display().to_string();
        let who = |_: &str| "W".to_string();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let lines = text
            .lines()
            .filter(|l| !l.is_empty())
            .map(|l| normalise_log_line(l, &prefix, &who))
            .collect();
        (out.status.code(), lines)
    }

    /// The working directory of the process labelled `label`, with the prefix as `PREFIX`.
    pub fn cwd(&self, label: &str) -> String {
        let pid = self.pid(label);
        let cwd = fs::read_link(format!("/proc/{pid}/cwd")).expect("read /proc/<pid>/cwd");
        self.norm_title(&cwd.display().to_string())
    }

    /// Pids of the live workers of the master labelled `label`.
    /// The inodes of the sockets listening on the server's port that master `label` holds.
    pub fn listen_sockets(&self, label: &str) -> BTreeSet<u64> {
        self.listen_sockets_of_pid(self.pid(label))
    }

    /// The inodes of the sockets listening on the server's port that process `pid` holds.
    pub fn listen_sockets_of_pid(&self, pid: i32) -> BTreeSet<u64> {
        let listening = listen_inodes(self.addr.port());
        socket_inodes(pid)
            .into_iter()
            .filter(|i| listening.contains(i))
            .collect()
    }

    pub fn worker_pids(&self, label: &str) -> BTreeSet<i32> {
        let master = self.pid(label);
        all_procs()
            .into_iter()
            .filter(|p| p.ppid == master && p.alive())
            .map(|p| p.pid)
            .collect()
    }

    /// Waits until [`Server::view`] is exactly `expected` (lines compared trimmed).
    pub fn wait_view(&self, expected: &str) {
        let want = norm_text(expected);
        wait_for(&format!("{} to show this view", self.kind.name()), || {
            let got = self.view();
            if norm_text(&got) == want {
                Ok(())
            } else {
                Err(self.report(&want, &got))
            }
        });
    }

    /// Asserts that the view is `expected` right now.
    pub fn assert_view(&self, expected: &str) {
        let want = norm_text(expected);
        let got = self.view();
        assert!(
            norm_text(&got) == want,
            "{} view differs\n{}",
            self.kind.name(),
            self.report(&want, &got)
        );
    }

    fn report(&self, want: &str, got: &str) -> String {
        let log = self.log_lines_of(&self.error_log()).join("\n");
        format!(
            "--- expected view ---\n{want}\n--- actual view ---\n{}\n--- error log (normalised) ---\n{log}",
            norm_text(got)
        )
    }

    /// A mark at the current end of the error log and of the pid-file timeline.
    pub fn mark(&self) -> Mark {
        let timeline = self.timeline.as_ref().expect("timeline");
        // Record the present state ourselves: the poller may not have seen it yet.
        record(
            &timeline.states,
            read_pid_state(&self.pid_file(), &self.oldbin_file()),
        );
        let states = timeline.states.lock().unwrap().len();
        Mark {
            log: self.error_log(),
            log_line: self.log_lines_of(&self.error_log()).len(),
            timeline: states - 1,
        }
    }

    /// The error log at `path`, normalised: `[level] WHO: message`, where WHO is the writer's
    /// label, `W` for any other process; pids in messages are named the same way and the
    /// prefix becomes `PREFIX`. Lines not in nginx's format are kept as they are.
    pub fn log_lines_of(&self, path: &Path) -> Vec<String> {
        let text = fs::read_to_string(path).unwrap_or_default();
        let prefix = self.prefix().display().to_string();
        let mut labels = self.labels.lock().unwrap();
        // New masters are labelled in the order the log names them.
        for line in text.lines() {
            if let Some(n) = line
                .split_once("start new binary process ")
                .and_then(|(_, n)| n.trim().parse::<i32>().ok())
            {
                labels.assign(n);
                if let Some(p) = Proc::read(n) {
                    self.add_pgid(p.pgid);
                }
            }
        }
        let launcher = *self.launcher.lock().unwrap();
        let who = |pid: &str| -> String {
            match pid.parse::<i32>() {
                Ok(p) if labels.get(p).is_some() => labels.get(p).unwrap_or_default().into(),
                Ok(p) if Some(p) == launcher => "L".into(),
                Ok(p) if p == self.me => "TEST".into(),
                _ => "W".into(),
            }
        };
        text.lines()
            .filter(|l| !l.is_empty())
            .map(|line| normalise_log_line(line, &prefix, &who))
            .collect()
    }

    /// Waits until the log at `mark.log`, after `mark.log_line`, holds every line of
    /// `expected` (exactly as often as listed there), then asserts that for each master
    /// label the listed lines came in the listed order.
    pub fn wait_log(&self, mark: &Mark, expected: &[&str]) {
        let mut want: BTreeMap<&str, usize> = BTreeMap::new();
        for e in expected {
            *want.entry(e).or_default() += 1;
        }
        let lines = wait_for(
            &format!("{} to log the expected lines", self.kind.name()),
            || {
                let lines: Vec<String> = self
                    .log_lines_of(&mark.log)
                    .into_iter()
                    .skip(mark.log_line)
                    .collect();
                let short: Vec<String> = want
                    .iter()
                    .filter(|(l, n)| lines.iter().filter(|x| x == *l).count() < **n)
                    .map(|(l, n)| format!("  {l}  (x{n})"))
                    .collect();
                if short.is_empty() {
                    Ok(lines)
                } else {
                    Err(format!(
                        "--- missing ---\n{}\n--- log since mark ---\n{}\n--- view ---\n{}",
                        short.join("\n"),
                        lines.join("\n"),
                        self.view()
                    ))
                }
            },
        );
        let dump = || lines.join("\n");
        for (l, n) in &want {
            let got = lines.iter().filter(|x| x == l).count();
            assert_eq!(
                got,
                *n,
                "{}: {l:?} logged {got} times, expected {n}\n{}",
                self.kind.name(),
                dump()
            );
        }
        let who = |l: &str| {
            l.split_once("] ")
                .and_then(|(_, r)| r.split_once(':'))
                .map(|(w, _)| w.to_string())
                .unwrap_or_default()
        };
        let writers: BTreeSet<String> = expected.iter().map(|l| who(l)).collect();
        for w in writers.iter().filter(|w| w.as_str() != "W") {
            let exp: Vec<&str> = expected.iter().copied().filter(|l| who(l) == *w).collect();
            let got: Vec<&str> = lines
                .iter()
                .map(String::as_str)
                .filter(|l| want.contains_key(l) && who(l) == *w)
                .collect();
            assert_eq!(
                got,
                exp,
                "{}: {w}'s lines came in another order\n{}",
                self.kind.name(),
                dump()
            );
        }
    }

    /// Asserts that none of `forbidden` was logged (at `mark.log`) since `mark`.
    pub fn assert_not_logged(&self, mark: &Mark, forbidden: &[&str]) {
        let lines: Vec<String> = self
            .log_lines_of(&mark.log)
            .into_iter()
            .skip(mark.log_line)
            .collect();
        for f in forbidden {
            assert!(
                !lines.iter().any(|l| l == f),
                "{}: {f:?} was logged\n{}",
                self.kind.name(),
                lines.join("\n")
            );
        }
    }

    /// A handshake with the master labelled `label`: USR1 it and wait for its main loop's
    /// `reopening logs` line. Whatever it was sent before has been handled by then.
    pub fn barrier(&self, label: &str) {
        let mark = self.mark();
        self.signal(label, Signal::SIGUSR1);
        let line = format!("[notice] {label}: reopening logs");
        wait_for(
            &format!("{} master {label} to log {line:?}", self.kind.name()),
            || {
                let lines = self.log_lines_of(&mark.log);
                if lines.iter().skip(mark.log_line).any(|l| *l == line) {
                    Ok(())
                } else {
                    Err(lines.join("\n"))
                }
            },
        );
    }

    /// Asserts the pid-file states seen since `mark`, in order (the state at the mark
    /// first). A pattern entry ending in ` ?` is a transient the poller may have missed.
    pub fn assert_timeline(&self, mark: &Mark, pattern: &[&str]) {
        let timeline = self.timeline.as_ref().expect("timeline");
        record(
            &timeline.states,
            read_pid_state(&self.pid_file(), &self.oldbin_file()),
        );
        let raw: Vec<RawPidState> = timeline.states.lock().unwrap()[mark.timeline..].to_vec();
        let got: Vec<String> = {
            let labels = self.labels.lock().unwrap();
            let mut v: Vec<String> = raw
                .iter()
                .map(|(p, o)| {
                    format!(
                        "pid={} oldbin={}",
                        self.pid_file_value(&labels, p),
                        self.pid_file_value(&labels, o)
                    )
                })
                .collect();
            v.dedup();
            v
        };
        assert!(
            timeline_matches(pattern, &got),
            "{}: pid files went through\n  {}\nexpected\n  {}",
            self.kind.name(),
            got.join("\n  "),
            pattern.join("\n  ")
        );
    }

    fn kill_everything(&self) {
        let me = self.me;
        let pgids = self.pgids.lock().map(|g| g.clone()).unwrap_or_default();
        let seen = self.seen.lock().map(|g| g.clone()).unwrap_or_default();
        let targets = || -> Vec<i32> {
            all_procs()
                .into_iter()
                .filter(|p| p.alive() && p.pid != me && p.pid > 1 && p.pgid != self.my_pgid)
                .filter(|p| pgids.contains(&p.pgid) || seen.get(&p.pid) == Some(&p.start_time))
                .map(|p| p.pid)
                .collect()
        };
        let start = Instant::now();
        loop {
            let t = targets();
            if t.is_empty() || start.elapsed() > Duration::from_secs(10) {
                break;
            }
            for pid in t {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if let Ok(mut c) = self.child.lock() {
            if let Some(c) = c.as_mut() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if std::env::var_os("HOTRELOAD_CONFORMANCE_DUMP").is_some() {
            eprintln!(
                "=== {} at the end ===\n{}--- error log (normalised) ---\n{}",
                self.kind.name(),
                self.view(),
                self.log_lines_of(&self.error_log()).join("\n")
            );
        }
        self.kill_everything();
        self.timeline = None;
    }
}

/// Finishes a request started by [`Server::hold_request`]; what came back (maybe nothing).
pub fn finish_request(mut s: TcpStream) -> Result<String, String> {
    // The write may fail on a connection the server already closed: the read tells.
    let _ = s.write_all(b"\r\n");
    let mut resp = Vec::new();
    match s.read_to_end(&mut resp) {
        Ok(_) => Ok(String::from_utf8_lossy(&resp).into_owned()),
        Err(e) if resp.is_empty() => Err(e.to_string()),
        Err(_) => Ok(String::from_utf8_lossy(&resp).into_owned()),
    }
}

/// Reads one HTTP response with a `Content-Length` body (keep-alive): its status line.
pub fn read_response(s: &mut TcpStream) -> Result<String, String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte) {
            Ok(0) => return Err(format!("EOF after {:?}", String::from_utf8_lossy(&buf))),
            Ok(_) => buf.push(byte[0]),
            Err(e) => return Err(e.to_string()),
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .ok_or_else(|| format!("no Content-Length in {head:?}"))?;
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok(head.lines().next().unwrap_or_default().to_string())
}

/// Waits (up to the socket's read timeout) for the server to close `s`: true when it did
/// (EOF or reset) without sending anything.
pub fn closed_by_server(s: &mut TcpStream) -> Result<(), String> {
    let mut buf = [0u8; 256];
    match s.read(&mut buf) {
        Ok(0) => Ok(()),
        Ok(n) => Err(format!("got {:?}", String::from_utf8_lossy(&buf[..n]))),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

/// How many sockets `pid` has open.
fn socket_fds(pid: i32) -> usize {
    socket_inodes(pid).len()
}

/// The inodes of the sockets `pid` has open (`socket:[N]` fds).
fn socket_inodes(pid: i32) -> Vec<u64> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    dir.filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            l.to_str()?
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse()
                .ok()
        })
        .collect()
}

/// Inodes of the TCP sockets listening on 127.0.0.1:`port` (from /proc/net/tcp).
fn listen_inodes(port: u16) -> BTreeSet<u64> {
    let local = format!("0100007F:{port:04X}");
    fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            (f.get(1) == Some(&local.as_str()) && f.get(3) == Some(&"0A"))
                .then(|| f.get(9)?.parse().ok())?
        })
        .collect()
}

/// Copies an executable with `cp`, in a child process: a file this (multi-threaded) test
/// process had open for writing could be inherited by a child another test thread forks at
/// that moment, and exec'ing the file (our launch, or nginx's USR2 re-exec) would then fail
/// with ETXTBSY.
fn copy_executable(from: &Path, to: &Path) {
    let status = Command::new("cp")
        .arg("--")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(
        status.success(),
        "cp {} {}: {status}",
        from.display(),
        to.display()
    );
}

/// `cmd.spawn()`, retried while it fails with ETXTBSY (belt and braces: with
/// [`copy_executable`] nothing in this process writes executables, but other test binaries
/// running at the same time may).
fn spawn_retrying_etxtbsy(cmd: &mut Command) -> Child {
    let start = Instant::now();
    loop {
        match cmd.spawn() {
            Ok(c) => return c,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && start.elapsed() < DEADLINE => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("spawn {cmd:?}: {e}"),
        }
    }
}

/// The pid in `path`, if it holds exactly one decimal number and a newline.
pub fn read_pid(path: &Path) -> Option<i32> {
    crate::procs::read_pid_strict(path)
}

fn norm_text(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// `2026/11/26 11:20:24 [notice] 6656#6656: start new binary process 6783` ->
/// `[notice] A: start new binary process B`.
fn normalise_log_line(line: &str, prefix: &str, who: &dyn Fn(&str) -> String) -> String {
    let parsed = (|| {
        let rest = line.get(20..)?;
        if !(line.as_bytes().get(19) == Some(&b' ') && rest.starts_with('[')) {
            return None;
        }
        let (level, rest) = rest.split_once("] ")?;
        let (pid, rest) = rest.split_once('#')?;
        let (_tid, msg) = rest.split_once(": ")?;
        pid.bytes().all(|b| b.is_ascii_digit()).then_some(())?;
        Some((level.trim_start_matches('['), pid, msg))
    })();
    let Some((level, pid, msg)) = parsed else {
        return line.replace(prefix, "PREFIX");
    };
    let mut msg = msg.replace(prefix, "PREFIX");
    // Pids in messages, in the contexts nginx puts them.
    for ctx in [
        "received from ",
        "start new binary process ",
        "start worker process ",
        "worker process ",
        "new binary process ",
    ] {
        let mut out = String::new();
        let mut rest = msg.as_str();
        while let Some(i) = rest.find(ctx) {
            out.push_str(&rest[..i + ctx.len()]);
            rest = &rest[i + ctx.len()..];
            let n = rest.bytes().take_while(u8::is_ascii_digit).count();
            if n > 0 {
                out.push_str(&who(&rest[..n]));
                rest = &rest[n..];
            }
        }
        out.push_str(rest);
        msg = out;
    }
    // `using inherited sockets from "4;"`: the fd numbers depend on what the launcher left
    // open; the number of sockets is what matters.
    if let Some(list) = msg
        .strip_prefix("using inherited sockets from \"")
        .and_then(|r| r.strip_suffix('"'))
    {
        let n: String = list
            .split(';')
            .filter(|s| !s.is_empty())
            .map(|_| "N;")
            .collect();
        msg = format!("using inherited sockets from \"{n}\"");
    }
    format!("[{level}] {}: {msg}", who(pid))
}

/// Whether `got` (consecutive duplicates removed) is `pattern` with some of its optional
/// (` ?`) entries left out (consecutive duplicates removed again).
fn timeline_matches(pattern: &[&str], got: &[String]) -> bool {
    let optional: Vec<usize> = (0..pattern.len())
        .filter(|&i| pattern[i].ends_with(" ?"))
        .collect();
    (0u32..1 << optional.len()).any(|keep| {
        let mut v: Vec<&str> = pattern
            .iter()
            .enumerate()
            .filter(|(i, _)| match optional.iter().position(|o| o == i) {
                Some(bit) => keep & (1 << bit) != 0,
                None => true,
            })
            .map(|(_, p)| p.trim_end_matches(" ?"))
            .collect();
        v.dedup();
        v.len() == got.len() && v.iter().zip(got).all(|(a, b)| a == b)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_lines_are_normalised() {
        let who = |p: &str| match p {
            "6656" => "A".to_string(),
            "6783" => "B".to_string(),
            "42" => "TEST".to_string(),
            _ => "W".to_string(),
        };
        let n = |l: &str| normalise_log_line(l, "/tmp/p", &who);
        assert_eq!(
            n("2026/11/26 11:20:24 [notice] 6656#6656: start new binary process 6783"),
            "[notice] A: start new binary process B"
        );
        assert_eq!(
            n("2026/11/26 11:20:24 [notice] 6656#6656: signal 12 (SIGUSR2) received from 42, changing binary"),
            "[notice] A: signal 12 (SIGUSR2) received from TEST, changing binary"
        );
        assert_eq!(
            n("2026/11/26 11:20:24 [notice] 6783#6783: using inherited sockets from \"4;\""),
            "[notice] B: using inherited sockets from \"N;\""
        );
        assert_eq!(
            n("2026/11/26 11:20:34 [notice] 6656#6656: worker process 6657 exited with code 0"),
            "[notice] A: worker process W exited with code 0"
        );
        assert_eq!(
            n("2026/11/26 11:20:48 [alert] 6656#6656: new binary process 6783 exited on signal 9"),
            "[alert] A: new binary process B exited on signal 9"
        );
        assert_eq!(
            n("2026/11/26 11:21:57 [emerg] 8287#8287: unexpected \"}\" in /tmp/p/conf/nginx.conf:12"),
            "[emerg] W: unexpected \"}\" in PREFIX/conf/nginx.conf:12"
        );
        assert_eq!(n("nginx: something else"), "nginx: something else");
    }

    #[test]
    fn timelines_match_with_optional_transients() {
        let p = ["pid=A oldbin=-", "pid=- oldbin=A ?", "pid=A oldbin=-"];
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(timeline_matches(&p, &s(&["pid=A oldbin=-"])));
        assert!(timeline_matches(
            &p,
            &s(&["pid=A oldbin=-", "pid=- oldbin=A", "pid=A oldbin=-"])
        ));
        assert!(!timeline_matches(
            &p,
            &s(&["pid=A oldbin=-", "pid=- oldbin=A"])
        ));
        let q = ["pid=A oldbin=-", "pid=- oldbin=A ?", "pid=B oldbin=A"];
        assert!(timeline_matches(
            &q,
            &s(&["pid=A oldbin=-", "pid=B oldbin=A"])
        ));
        assert!(!timeline_matches(&q, &s(&["pid=B oldbin=A"])));
    }
}
