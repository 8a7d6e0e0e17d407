//! The lock file's holder details: the command line and a correct UTC time while held,
//! emptied after release so no reader takes stale details for a holder. Written for a survivor of the cargo-mutants run (MUTANTS.md).

use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::error::Error;
use crate::lock::{BinaryLock, TargetLock};

#[test]
fn a_released_lock_leaves_no_holder_details() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx.lock");
    let lock = TargetLock::acquire_file(&path).unwrap();
    let held = fs::read_to_string(&path).unwrap();
    assert!(held.contains(&std::process::id().to_string()), "{held}");
    drop(lock);
    // Removed by its holder as it lets go (or, if still there, emptied).
    assert!(
        fs::read_to_string(&path).map_or(true, |left| left.is_empty()),
        "details left after release"
    );
    // And it can be taken again.
    TargetLock::acquire_file(&path).unwrap();
}

#[test]
fn the_holder_is_named_by_its_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx.lock");
    let _lock = TargetLock::acquire_file(&path).unwrap();
    let held = fs::read_to_string(&path).unwrap();
    let argv0 = std::env::args().next().unwrap();
    assert!(held.contains(&argv0), "{held}");
}

#[test]
fn holder_times_are_right_past_the_century_days_of_the_calendar() {
    // The century and 400-year corrections of the civil-date conversion.
    let at = |secs| crate::lock::format_utc(UNIX_EPOCH + Duration::from_secs(secs));
    assert_eq!(at(4_107_456_000), "2100-02-28T00:00:00Z");
    assert_eq!(at(4_107_542_400), "2100-03-01T00:00:00Z");
    assert_eq!(at(13_569_379_200), "2399-12-31T00:00:00Z");
    assert_eq!(at(13_574_563_200), "2400-02-29T00:00:00Z");
    assert_eq!(at(13_574_649_600), "2400-03-01T00:00:00Z");
}

/// Runs `f` on a thread of its own and returns what it returns, failing the test if it
/// has not returned within a generous bound: a lock that loops on an error would hang
/// the test (and a mutation run) instead of failing it.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} did not return within 60 s (does it loop?)"))
}

/// The `Error::Lock` that taking the lock at `path` gives, with its source.
fn lock_error(path: &Path) -> io::Error {
    let owned = path.to_path_buf();
    match bounded("TargetLock::acquire_file", move || {
        TargetLock::acquire_file(&owned)
    }) {
        Err(Error::Lock {
            path: named,
            source,
        }) => {
            assert_eq!(named, path);
            let msg = Error::Lock {
                path: named,
                source: io::Error::other(""),
            }
            .to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            source
        }
        other => panic!(
            "expected Error::Lock naming {}, got {other:?}",
            path.display()
        ),
    }
}

#[test]
fn a_fifo_at_the_lock_path_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx.lock");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let source = lock_error(&path);
    assert_eq!(source.kind(), io::ErrorKind::PermissionDenied, "{source}");
    let text = source.to_string();
    assert!(text.contains("not a regular file"), "{text}");
    assert!(text.contains("remove it"), "{text}");
    // Refused, not consumed: it is still the FIFO.
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_fifo());
}

#[test]
fn as_root_a_lock_file_of_another_user_is_refused_with_the_fix() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root (to give a file to another user)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx.lock");
    fs::write(&path, "planted\n").unwrap();
    std::os::unix::fs::chown(&path, Some(4242), Some(4242)).unwrap();
    let source = lock_error(&path);
    assert_eq!(source.kind(), io::ErrorKind::PermissionDenied, "{source}");
    let text = source.to_string();
    assert!(text.contains("of user 0 (owner 4242)"), "{text}");
    assert!(text.contains("remove it"), "{text}");
    // Neither locked nor written.
    assert_eq!(fs::read_to_string(&path).unwrap(), "planted\n");
    assert!(!crate::lock::is_held(&path));
}

#[test]
fn a_symlink_at_the_lock_path_is_an_error_and_its_target_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("precious");
    fs::write(&target, "precious\n").unwrap();
    let path = dir.path().join("nginx.lock");
    std::os::unix::fs::symlink(&target, &path).unwrap();
    let source = lock_error(&path);
    assert_eq!(source.raw_os_error(), Some(libc::ELOOP), "{source}");
    assert_eq!(fs::read_to_string(&target).unwrap(), "precious\n");
    assert!(!crate::lock::is_held(&target));
    assert!(fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn a_lock_in_a_missing_directory_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone").join("nginx.lock");
    let source = lock_error(&path);
    assert_eq!(source.kind(), io::ErrorKind::NotFound, "{source}");
}

/// Tries to take the binary lock at `path` on another thread: Err(holder) when refused.
fn binary_lock_elsewhere(path: &Path) -> Result<(), String> {
    let owned = path.to_path_buf();
    bounded("BinaryLock::acquire", move || {
        match BinaryLock::acquire(&owned) {
            Ok(_lock) => Ok(()),
            Err(Error::Locked {
                path: named,
                holder,
            }) => {
                assert_eq!(named, owned);
                Err(holder)
            }
            Err(e) => panic!("{e}"),
        }
    })
}

const SAME_PROCESS: &str = "(another upgrade in this process swaps the same executable)";

#[test]
fn a_binary_lock_is_reentrant_on_its_thread_and_refused_to_other_threads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("binary=usr-sbin-nginx.lock");
    let outer = BinaryLock::acquire(&path).unwrap();
    assert!(crate::lock::is_held(&path));
    let inner = BinaryLock::acquire(&path).expect("the holding thread takes it again");
    let me = format!("pid {} {SAME_PROCESS}", std::process::id());
    assert_eq!(binary_lock_elsewhere(&path), Err(me.clone()));
    // Letting go of the inner one leaves the outer one held.
    drop(inner);
    assert_eq!(binary_lock_elsewhere(&path), Err(me));
    assert!(crate::lock::is_held(&path));
    drop(outer);
    // Free again, for other threads of this process too (a forked child of a sibling
    // test may hold our descriptor for an instant: retry on that, with a bound).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match binary_lock_elsewhere(&path) {
            Ok(()) => break,
            Err(holder) if !holder.contains(SAME_PROCESS) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(holder) => panic!("still held after both were dropped: {holder}"),
        }
    }
}

#[test]
fn binary_locks_of_two_executables_are_two_locks() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("binary=usr-sbin-nginx.lock");
    let second = dir.path().join("binary=usr-local-sbin-nginx.lock");
    let _a = BinaryLock::acquire(&first).unwrap();
    let _b = BinaryLock::acquire(&second).unwrap();
    // Each is an flock of its own file: another process (here another open of the file)
    // is refused either.
    for path in [&first, &second] {
        assert!(crate::lock::is_held(path), "{} not locked", path.display());
        assert!(matches!(
            TargetLock::acquire_file(path),
            Err(Error::Locked { .. })
        ));
    }
}
