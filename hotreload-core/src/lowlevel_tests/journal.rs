//! The upgrade journal on real files and processes: commit refuses while the recorded
//! master runs and otherwise drops the backup, restore puts the old executable back only
//! for the master the journal was written for, and errors other than "absent" are never
//! taken for "no journal". Written for survivors of the cargo-mutants run (MUTANTS.md).

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::event::NoopObserver;
use crate::journal::{commit, home_path, remove, restore, Journal};
use crate::model::Target;
use crate::pid::Pid;
use crate::process::ProcessHandle;
use crate::swap::{backup_path_for, BinarySwap, RenameSwap};

use super::write_exe;

/// A swap installed in `dir` (binary `nginx`: "new" installed over "old", backup kept)
/// and the journal text that records it for `master` (pid, start time).
fn installed(dir: &Path, master: (Pid, u64)) -> (std::path::PathBuf, Journal) {
    let binary = dir.join("nginx");
    let new = dir.join("nginx-new");
    write_exe(&binary, b"old");
    write_exe(&new, b"new");
    let rec = RenameSwap.install(&binary, &new).unwrap();
    let journal = Journal {
        old_master: master.0,
        old_start_time: master.1,
        swap: rec.to_text(),
    };
    (binary, journal)
}

/// A target whose pid file is in `dir` and whose state home is `dir/home`, and its
/// journal's path there.
fn target_in(dir: &Path) -> (Target, std::path::PathBuf) {
    let target = Target::new(dir.join("nginx.pid")).state_dir(dir.join("home"));
    let path = home_path(&target).unwrap();
    (target, path)
}

/// A child that lives until killed, killed (and reaped) when dropped.
struct Sleeper(std::process::Child);

impl Sleeper {
    fn start() -> Sleeper {
        Sleeper(
            Command::new("sleep")
                .arg("1000")
                .stdin(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    fn handle(&self) -> ProcessHandle {
        ProcessHandle::open(Pid::try_from(self.0.id()).unwrap()).unwrap()
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn commit_refuses_while_the_recorded_master_runs_then_drops_the_backup() {
    let dir = tempfile::tempdir().unwrap();
    let (target, path) = target_in(dir.path());
    let old = Sleeper::start();
    let h = old.handle();
    let (binary, journal) = installed(dir.path(), (h.pid(), h.start_time()));
    journal.write(&path).unwrap();
    let backup = backup_path_for(&binary);

    let e = commit(&target, &binary, &NoopObserver).unwrap_err();
    assert!(e.to_string().contains("still runs"), "{e}");
    assert!(backup.exists(), "backup dropped while the old master runs");
    assert_eq!(Journal::read(&path).unwrap(), Some(journal));

    drop(old);
    assert!(
        commit(&target, &binary, &NoopObserver).unwrap(),
        "a journal was committed"
    );
    assert!(!backup.exists(), "backup kept after the commit");
    assert!(!path.exists(), "journal kept after the commit");
    assert_eq!(fs::read(&binary).unwrap(), b"new");
    // Nothing left to commit.
    assert!(!commit(&target, &binary, &NoopObserver).unwrap());
}

#[test]
fn restore_puts_the_old_executable_back_only_for_its_own_master() {
    let dir = tempfile::tempdir().unwrap();
    let (target, path) = target_in(dir.path());
    let master = Sleeper::start();
    let other = Sleeper::start();
    let h = master.handle();
    let (binary, journal) = installed(dir.path(), (h.pid(), h.start_time()));
    journal.write(&path).unwrap();

    // Another master runs (not from the installed file): refused, nothing changes.
    let e = restore(&target, &binary, &other.handle(), &NoopObserver).unwrap_err();
    assert!(
        e.to_string()
            .contains("not restoring an executable for another server"),
        "{e}"
    );
    assert_eq!(fs::read(&binary).unwrap(), b"new");
    assert!(path.exists(), "journal removed by a refused restore");

    assert!(
        restore(&target, &binary, &h, &NoopObserver).unwrap(),
        "restored"
    );
    assert_eq!(fs::read(&binary).unwrap(), b"old");
    assert!(!backup_path_for(&binary).exists());
    assert!(!path.exists(), "journal kept after the restore");
    assert!(!restore(&target, &binary, &h, &NoopObserver).unwrap());
}

#[test]
fn a_journal_that_cannot_be_read_or_removed_is_an_error_not_absent() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the journal should be: reading it fails, and that is no "none"
    // (it would make a rollback forget the backup).
    let path = dir.path().join("nginx.pid.hotreload-journal");
    fs::create_dir(&path).unwrap();
    fs::write(path.join("x"), b"").unwrap();
    assert!(Journal::read(&path).is_err());
    assert!(remove(&path).is_err());
    // Absent is fine.
    let absent = dir.path().join("absent.hotreload-journal");
    assert_eq!(Journal::read(&absent).unwrap(), None);
    remove(&absent).unwrap();
}

const RELATIVE_HELPER_ENV: &str = "HOTRELOAD_LOWLEVEL_JOURNAL_RELATIVE_HELPER";

/// Not a test on its own: run by the test below in a child whose working directory is
/// a temporary one (a test must not change the whole test process's directory).
#[test]
fn relative_write_helper() {
    if std::env::var_os(RELATIVE_HELPER_ENV).is_none() {
        return;
    }
    let j = Journal {
        old_master: Pid::new(1234).unwrap(),
        old_start_time: 5,
        swap: String::new(),
    };
    j.write(Path::new("nginx.pid.hotreload-journal")).unwrap();
    println!("JOURNAL-WRITTEN");
}

#[test]
fn a_journal_beside_a_relative_pid_file_is_written() {
    // `--pid-file nginx.pid` makes a journal path with no directory part: its directory
    // (the working one) is synced, not an empty path.
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lowlevel_tests::journal::relative_write_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(RELATIVE_HELPER_ENV, "1")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("JOURNAL-WRITTEN"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let j = Journal::read(&dir.path().join("nginx.pid.hotreload-journal"))
        .unwrap()
        .unwrap();
    assert_eq!(j.old_master, Pid::new(1234).unwrap());
}

#[test]
fn a_journal_with_long_paths_reads_back_whole() {
    // Deep release directories make long swap records: a few kilobytes must round-trip.
    let dir = tempfile::tempdir().unwrap();
    let deep = "release-2026-12-01-abcdef0123456789/".repeat(60);
    let swap = format!("kind=rename\nbinary=/srv/{deep}sbin/nginx\nbackup=/srv/{deep}sbin/nginx.hotreload-backup\n");
    assert!(swap.len() > 4000);
    let j = Journal {
        old_master: Pid::new(1234).unwrap(),
        old_start_time: 5,
        swap,
    };
    let path = dir.path().join("nginx.pid.hotreload-journal");
    j.write(&path).unwrap();
    assert_eq!(Journal::read(&path).unwrap(), Some(j));
}

#[test]
fn a_leftover_temp_that_cannot_be_removed_is_named_as_the_cause() {
    // A directory where the journal's temp file goes: unlinking it fails (EISDIR), and
    // that is the error, not the exclusive create that would fail after it.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx.pid.hotreload-journal");
    fs::create_dir(dir.path().join("nginx.pid.hotreload-journal.tmp")).unwrap();
    let j = Journal {
        old_master: Pid::new(1234).unwrap(),
        old_start_time: 5,
        swap: String::new(),
    };
    match j.write(&path) {
        Err(crate::Error::JournalIo { source, .. }) => {
            assert_eq!(source.kind(), std::io::ErrorKind::IsADirectory, "{source}")
        }
        other => panic!("{other:?}"),
    }
    assert!(!path.exists());
}
