//! Process handles and /proc snapshots against real child processes.
//!
//! Every process a test starts is its own direct child, killed and reaped by a
//! guard even when the test panics (PID 1 here never reaps orphans).

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::procfs::{children, proc_info};
use crate::{Error, Pid, ProcessHandle, Signal};

/// Kills and reaps the child when dropped.
struct Guard(Child);

impl Guard {
    fn pid(&self) -> Pid {
        Pid::try_from(self.0.id()).unwrap()
    }
    /// SIGKILLs it without reaping it: it stays a zombie until the guard drops.
    fn kill_leave_zombie(&mut self) {
        self.0.kill().unwrap();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A shell that blocks reading its stdin (kept open by the guard) until killed.
///
/// It answers "ready" first: right after `spawn` returns, the child may still be
/// finishing its exec (empty cmdline, old comm), so tests wait for its word.
fn sleeper() -> Guard {
    let mut child = Command::new("sh")
        .args(["-c", "echo ready; read x"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    super::read_ready(&mut child);
    Guard(child)
}

/// A shell that says "ready" and exits as soon as its stdin closes.
fn exits_on_eof() -> (Guard, ChildStdin) {
    let mut child = Command::new("sh")
        .args(["-c", "echo ready; read x; exit 0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    super::read_ready(&mut child);
    (Guard(child), stdin)
}

/// Waits (event-driven, bounded) until the child shows as a zombie in /proc.
fn wait_zombie(h: &ProcessHandle) {
    assert!(h
        .wait_exit(Instant::now() + Duration::from_secs(10))
        .unwrap());
}

#[test]
fn open_pins_identity() {
    let g = sleeper();
    let h = ProcessHandle::open(g.pid()).unwrap();
    assert_eq!(h.pid(), g.pid());
    let info = h.info().unwrap();
    assert_eq!(info.start_time, h.start_time());
    assert_eq!(info.ppid, std::process::id() as i32);
    assert_eq!(info.cmdline, vec!["sh", "-c", "echo ready; read x"]);
    assert_eq!(info.title, "sh -c echo ready; read x");
    assert!(!h.has_exited());
}

#[test]
fn open_refuses_pid_one_gone_and_zombie() {
    assert!(Pid::new(1).is_err());
    // A reaped child: the pid is free (or reused, which open_pinned would catch).
    let mut g = sleeper();
    let pid = g.pid();
    g.0.kill().unwrap();
    g.0.wait().unwrap();
    if let Ok(h) = ProcessHandle::open(pid) {
        // The pid was already reused by an unrelated process: that one is not ours.
        assert_ne!(h.info().unwrap().ppid, std::process::id() as i32);
    }

    let mut z = sleeper();
    let h = ProcessHandle::open(z.pid()).unwrap();
    z.kill_leave_zombie();
    wait_zombie(&h);
    let e = ProcessHandle::open(z.pid()).unwrap_err();
    assert!(
        matches!(e, Error::Zombie { .. } | Error::ProcessGone { .. }),
        "{e}"
    );
}

#[test]
fn signal_after_exit_is_refused() {
    let mut g = sleeper();
    let h = ProcessHandle::open(g.pid()).unwrap();
    g.0.kill().unwrap();
    g.0.wait().unwrap();
    assert!(h.has_exited());
    let e = h.signal(Signal::Term).unwrap_err();
    assert!(
        matches!(e, Error::ProcessGone { .. } | Error::ProcessReplaced { .. }),
        "{e}"
    );
}

#[test]
fn signal_to_zombie_is_refused() {
    let mut g = sleeper();
    let h = ProcessHandle::open(g.pid()).unwrap();
    g.kill_leave_zombie();
    wait_zombie(&h);
    assert!(h.has_exited());
    assert_eq!(proc_info(g.pid()).unwrap().state, 'Z');
    let e = h.signal(Signal::Quit).unwrap_err();
    assert!(matches!(e, Error::Zombie { .. }), "{e}");
    assert!(e.to_string().contains("zombie"), "{e}");
}

#[test]
fn signal_is_delivered_to_live_process() {
    let g = sleeper();
    let h = ProcessHandle::open(g.pid()).unwrap();
    h.signal(Signal::Term).unwrap();
    assert!(h
        .wait_exit(Instant::now() + Duration::from_secs(10))
        .unwrap());
}

#[test]
fn wait_exit_returns_at_deadline() {
    let g = sleeper();
    let h = ProcessHandle::open(g.pid()).unwrap();
    let start = Instant::now();
    let exited = h.wait_exit(start + Duration::from_millis(150)).unwrap();
    let took = start.elapsed();
    assert!(!exited);
    assert!(took >= Duration::from_millis(150), "{took:?}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // A deadline in the past returns at once.
    assert!(!h
        .wait_exit(Instant::now() - Duration::from_secs(1))
        .unwrap());
}

#[test]
fn wait_exit_returns_on_exit() {
    let (g, mut stdin) = exits_on_eof();
    let h = ProcessHandle::open(g.pid()).unwrap();
    assert!(!h.has_exited());
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    let start = Instant::now();
    assert!(h.wait_exit(start + Duration::from_secs(30)).unwrap());
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(h.has_exited());
}

#[test]
fn children_lists_direct_children_from_any_thread() {
    let a = sleeper();
    // A child forked by another thread is listed under that thread's task entry.
    let b = std::thread::spawn(sleeper).join().unwrap();
    let me = Pid::this_process().unwrap();
    let kids = children(me).unwrap();
    for g in [&a, &b] {
        let info = kids
            .iter()
            .find(|k| k.pid == g.pid())
            .unwrap_or_else(|| panic!("{} not among {kids:?}", g.pid()));
        assert_eq!(info.ppid, me.get());
        assert_eq!(info.comm, "sh");
    }
    assert!(kids.iter().all(|k| k.ppid == me.get()));
}

#[test]
fn start_time_mismatch_is_refused() {
    let g = sleeper();
    let h = ProcessHandle::open(g.pid()).unwrap();
    let e = ProcessHandle::open_pinned(g.pid(), h.start_time() - 1).unwrap_err();
    match e {
        Error::ProcessReplaced {
            pid,
            expected,
            found,
        } => {
            assert_eq!(pid, g.pid());
            assert_eq!(expected, h.start_time() - 1);
            assert_eq!(found, h.start_time());
        }
        e => panic!("unexpected {e}"),
    }
    ProcessHandle::open_pinned(g.pid(), h.start_time()).unwrap();
}

#[test]
fn caught_signals_are_read() {
    // `sh` with a trap catches USR2; without one it does not.
    let mut child = Command::new("sh")
        .args(["-c", "trap 'exit 0' USR2; echo ready; read x"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let g = Guard(child);
    assert!(proc_info(g.pid()).unwrap().caught.contains(Signal::Usr2));
    let s = sleeper();
    assert!(!proc_info(s.pid()).unwrap().caught.contains(Signal::Usr2));
}

#[test]
fn comm_with_parens_and_spaces_is_parsed() {
    // The command name comes from the executable's file name: make an awkward one.
    let dir = tempfile::tempdir().unwrap();
    let exe = dir.path().join("x) y (z");
    std::fs::copy("/bin/sh", &exe).unwrap();
    let mut cmd = Command::new(&exe);
    cmd.args(["-c", "echo ready; read x"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped());
    // A sibling test thread's fork may briefly hold our write descriptor of the copy.
    let mut child = (0..50)
        .find_map(|_| match cmd.spawn() {
            Ok(c) => Some(c),
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(Duration::from_millis(20));
                None
            }
            Err(e) => panic!("{e}"),
        })
        .expect("executable stayed busy");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let g = Guard(child);
    let info = proc_info(g.pid()).unwrap();
    assert_eq!(info.comm, "x) y (z");
    // Parsed from after the last `)`: a live state (the shell may still be running on its
    // way to blocking in `read`, so R and S are both right).
    assert!(matches!(info.state, 'R' | 'S'), "state {:?}", info.state);
    assert_eq!(info.ppid, std::process::id() as i32);
    let h = ProcessHandle::open(g.pid()).unwrap();
    assert_eq!(h.start_time(), info.start_time);
}

#[test]
fn zombie_child_is_listed_as_zombie() {
    let mut g = sleeper();
    let h = ProcessHandle::open(g.pid()).unwrap();
    g.kill_leave_zombie();
    wait_zombie(&h);
    let me = Pid::this_process().unwrap();
    let kids = children(me).unwrap();
    let z = kids
        .iter()
        .find(|k| k.pid == g.pid())
        .expect("zombie still a child");
    assert!(z.is_zombie());
    assert_eq!(z.exe, None);
    // `info` still works on a zombie: looking is harmless, signalling is not.
    assert_eq!(h.info().unwrap().state, 'Z');
}
