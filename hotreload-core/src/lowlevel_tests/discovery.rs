//! PID discovery: pid file, explicit pid, and the `/proc` scan by executable
//! against a real master/worker pair.
//!
//! This test binary makes itself a child subreaper, so that a "worker" whose
//! "master" is killed comes back to us to be reaped (PID 1 here never reaps).

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::discovery::{Discovery, ExplicitPid, PidFileDiscovery, ProcScanDiscovery};
use crate::flavor::Flavor;
use crate::swap::{BinarySwap, RenameSwap};
use crate::{Error, Pid};
use nix::sys::signal::{kill, Signal as NixSignal};
use nix::sys::wait::waitpid;
use nix::unistd::Pid as NixPid;

/// A fake master (a copy of `sh` under a unique path) with one fake worker (its
/// child, the same executable). Both block opening a FIFO nobody writes.
struct Server {
    master: Child,
    worker: Pid,
}

impl Server {
    fn start(exe: &Path, fifo: &Path) -> Server {
        let script = r#""$0" -c 'read x < "$1"' "$0" "$1" & echo "$!"; read y < "$1""#;
        let mut master = spawn_retrying(
            Command::new(exe)
                .args(["-c", script])
                .arg(exe)
                .arg(fifo)
                .stdin(Stdio::null())
                .stdout(Stdio::piped()),
        );
        let mut line = String::new();
        BufReader::new(master.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let worker: Pid = line.trim().parse().unwrap();
        Server { master, worker }
    }

    fn master_pid(&self) -> Pid {
        Pid::try_from(self.master.id()).unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // The worker is alive and unreaped until we reap it, so its pid is ours to signal.
        let _ = kill(NixPid::from_raw(self.worker.get()), NixSignal::SIGKILL);
        let _ = self.master.kill();
        let _ = self.master.wait();
        // Orphaned by the master's death, the worker was reparented to us (subreaper).
        let _ = waitpid(NixPid::from_raw(self.worker.get()), None);
    }
}

/// Spawns, retrying ETXTBSY: a file we just wrote can be briefly "busy" when a
/// sibling thread's fork inherited our write descriptor before it was closed.
fn spawn_retrying(cmd: &mut Command) -> Child {
    for _ in 0..50 {
        match cmd.spawn() {
            Ok(c) => return c,
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            Err(e) => panic!("spawn failed: {e}"),
        }
    }
    panic!("executable stayed busy");
}

fn copy_sh(dir: &Path, name: &str) -> PathBuf {
    let exe = dir.join(name);
    fs::copy("/bin/sh", &exe).unwrap();
    exe
}

#[test]
fn proc_scan_finds_the_master_not_its_worker() {
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let exe = copy_sh(dir.path(), "fake-master");
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();

    let scan = ProcScanDiscovery::new(&exe);
    assert!(scan.describe().contains("fake-master"));
    match scan.discover() {
        Err(Error::NoMasterFound { exe: e, .. }) => assert_eq!(e, exe),
        other => panic!("expected NoMasterFound, got {other:?}"),
    }

    let first = Server::start(&exe, &fifo);
    assert_eq!(scan.discover().unwrap(), first.master_pid());
    // The worker runs the same executable but its parent does too: not a master.
    assert_ne!(scan.discover().unwrap(), first.worker);

    // Found through a symlink to the executable as well.
    let link = dir.path().join("current");
    std::os::unix::fs::symlink(&exe, &link).unwrap();
    assert_eq!(
        ProcScanDiscovery::new(&link).discover().unwrap(),
        first.master_pid()
    );

    // Two independent masters: refuse to guess.
    let second = Server::start(&exe, &fifo);
    match scan.discover() {
        Err(Error::AmbiguousMaster { pids, .. }) => {
            let mut want = vec![first.master_pid(), second.master_pid()];
            want.sort();
            assert_eq!(pids, want);
        }
        other => panic!("expected AmbiguousMaster, got {other:?}"),
    }
    drop(second);

    // After a binary swap, the old master's exe shows "(deleted)": still found by path.
    let new = copy_sh(dir.path(), "new-build");
    let rec = RenameSwap.install(&exe, &new).unwrap();
    let info = crate::procfs::proc_info(first.master_pid()).unwrap();
    assert!(info.exe_deleted, "{info:?}");
    assert_eq!(info.exe.as_deref(), Some(exe.as_path()));
    assert_eq!(scan.discover().unwrap(), first.master_pid());
    RenameSwap.commit(&rec).unwrap();
    assert_eq!(scan.discover().unwrap(), first.master_pid());
}

#[test]
fn pid_file_and_explicit() {
    let dir = tempfile::tempdir().unwrap();
    let me = Pid::this_process().unwrap();
    let pid_file = dir.path().join("nginx.pid");
    fs::write(&pid_file, format!("{me}\n")).unwrap();
    let d = PidFileDiscovery::new(&pid_file);
    assert_eq!(d.describe(), format!("pid file `{}`", pid_file.display()));
    assert_eq!(d.discover().unwrap(), me);
    fs::write(&pid_file, "nonsense").unwrap();
    assert!(matches!(d.discover(), Err(Error::PidFile { .. })));

    assert_eq!(ExplicitPid::new(me).discover().unwrap(), me);
    assert_eq!(ExplicitPid::new(me).describe(), format!("pid {me}"));

    // A zombie is not a master.
    struct Reap(Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Reap(spawn_retrying(Command::new("sleep").arg("600")));
    let pid = Pid::try_from(child.0.id()).unwrap();
    let handle = crate::ProcessHandle::open(pid).unwrap();
    child.0.kill().unwrap();
    assert!(handle
        .wait_exit(std::time::Instant::now() + std::time::Duration::from_secs(10))
        .unwrap());
    let e = ExplicitPid::new(pid).discover().unwrap_err();
    assert!(matches!(e, Error::Zombie { .. }), "{e}");
}

#[test]
fn a_found_master_becomes_a_target_only_on_its_own_pid_file() {
    struct Reap(Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let pid_file = dir.path().join("app.pid");
    // A "gunicorn" master whose command line names its pid file: argv is
    // `sh -c SCRIPT -p PID_FILE FIFO` (`read` is a builtin: no child to clean up).
    let master = Reap(spawn_retrying(
        Command::new("/bin/sh")
            .args(["-c", r#"read y < "$2""#, "-p"])
            .arg(&pid_file)
            .arg(&fifo)
            .stdin(Stdio::null()),
    ));
    let pid = Pid::try_from(master.0.id()).unwrap();
    // Until the child has exec'd, its command line is this test's: wait for the shell's
    // (a deadline, not a pause), or the claims below are read from the wrong argv.
    let cmdline = format!("/proc/{pid}/cmdline");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !fs::read(&cmdline).is_ok_and(|argv| argv.starts_with(b"/bin/sh\0")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the shell never exec'd"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let found = ExplicitPid::new(pid);

    // The file does not exist yet: the command line's claim is not taken on trust.
    let e = found.target(Flavor::gunicorn()).unwrap_err();
    assert!(
        matches!(e, Error::PidFileUnknown { pid: p, .. } if p == pid),
        "{e}"
    );
    // It names another process: still not this master's.
    fs::write(&pid_file, format!("{}\n", Pid::this_process().unwrap())).unwrap();
    let e = found.target(Flavor::gunicorn()).unwrap_err();
    assert!(e.to_string().contains("does not name it"), "{e}");
    // It names the master: the target is on it.
    fs::write(&pid_file, format!("{pid}\n")).unwrap();
    let target = found.target(Flavor::gunicorn()).unwrap();
    assert_eq!(target.pid_file(), pid_file.as_path());
    // During an upgrade the found (old) master's file is the renamed one.
    fs::rename(&pid_file, Flavor::gunicorn().old_pid_file(&pid_file)).unwrap();
    assert_eq!(
        found.target(Flavor::gunicorn()).unwrap().pid_file(),
        pid_file.as_path()
    );
    // A flavor with no evidence to read says so.
    let e = found.target(Flavor::unicorn()).unwrap_err();
    assert!(e.to_string().contains("pid file is not known"), "{e}");

    // A pid file is its own evidence.
    let d = PidFileDiscovery::new(&pid_file);
    assert_eq!(
        d.target(Flavor::nginx()).unwrap().pid_file(),
        pid_file.as_path()
    );
}
