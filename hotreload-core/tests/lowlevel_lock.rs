//! The target lock across processes: a second caller is refused with the holder's
//! details, and a SIGKILLed holder never leaves the target locked.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hotreload_core::{Error, Target, TargetLock};

const HELPER_ENV: &str = "HOTRELOAD_LOWLEVEL_LOCK_HOLDER";

/// Not a test on its own: with the env var set, it is the child that takes the
/// lock, says so, and holds it until killed (or until its stdin closes).
#[test]
fn lock_holder_helper() {
    let Ok(pid_file) = std::env::var(HELPER_ENV) else {
        return;
    };
    let _lock = TargetLock::acquire(Path::new(&pid_file)).unwrap();
    // Own line: the harness prints "test lock_holder_helper ... " before running us.
    std::io::stdout().write_all(b"\nLOCK-HELD\n").unwrap();
    std::io::stdout().flush().unwrap();
    let mut sink = Vec::new();
    let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
}

struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_holder(pid_file: &Path) -> Guard {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lock_holder_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, pid_file)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let guard = Guard(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if line.contains("LOCK-HELD") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the helper did not take the lock within 60 s");
    guard
}

/// Acquires, allowing brief retries: a sibling test thread forking at the wrong
/// moment holds a copy of a lock descriptor until its exec closes it.
fn acquire_soon(pid_file: &Path) -> Result<TargetLock, Error> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut pause = Duration::from_millis(1);
    loop {
        match TargetLock::acquire(pid_file) {
            Err(Error::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

/// A pid file (the lock refuses to be made for one that does not exist).
fn pid_file_in(dir: &tempfile::TempDir) -> PathBuf {
    let pid_file = dir.path().join("nginx.pid");
    std::fs::write(&pid_file, "4242\n").unwrap();
    pid_file
}

#[test]
fn second_caller_is_told_who_holds_it() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = pid_file_in(&dir);
    let holder = spawn_holder(&pid_file);
    match TargetLock::acquire(&pid_file) {
        Err(Error::Locked { path, holder: who }) => {
            assert_eq!(path, Target::new(&pid_file).lock_file().unwrap());
            assert!(who.contains(&format!("pid {}", holder.0.id())), "{who}");
            assert!(who.contains("lock_holder_helper"), "{who}");
            assert!(who.contains("since 20"), "{who}");
            let msg = Error::Locked { path, holder: who }.to_string();
            assert!(msg.contains("nginx.pid.lock"), "{msg}");
        }
        other => panic!("expected Locked, got {other:?}"),
    }
}

#[test]
fn killed_holder_releases_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = pid_file_in(&dir);
    let mut holder = spawn_holder(&pid_file);
    assert!(matches!(
        TargetLock::acquire(&pid_file),
        Err(Error::Locked { .. })
    ));
    holder.0.kill().unwrap(); // SIGKILL: no destructor runs in the holder
    holder.0.wait().unwrap();
    let lock = acquire_soon(&pid_file).expect("the kernel drops a dead holder's flock");
    let content = std::fs::read_to_string(lock.path()).unwrap();
    assert!(
        content.contains(&format!("pid {}", std::process::id())),
        "{content}"
    );
}

#[test]
fn dropped_lock_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = pid_file_in(&dir);
    let lock = TargetLock::acquire(&pid_file).unwrap();
    drop(lock);
    acquire_soon(&pid_file).unwrap();
}
