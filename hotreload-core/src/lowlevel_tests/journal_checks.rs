//! What hotreload refuses to believe in a journal, seen the way a user sees it: the
//! error (its kind, the files it names, the fix) when a journal names another executable,
//! a backup elsewhere, a backup that is another file or that cannot be inspected; the swap
//! refused while another target's unfinished upgrade swapped the same executable; and
//! what `hotreload status` says about each journal it finds. Written for survivors of the
//! cargo-mutants run (MUTANTS.md) that only the slow end-to-end tests reached.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::event::NoopObserver;
use crate::journal::{check_no_other_swap, commit, home_path, restore, Journal};
use crate::model::Target;
use crate::pid::Pid;
use crate::process::ProcessHandle;
use crate::swap::{backup_path_for, BinarySwap, FileIdentity, RenameSwap, Undo};
use crate::{Error, SwapRecord};

use super::write_exe;

/// "new" installed over "old" at `dir/nginx` by the rename swap (the backup beside it).
fn installed(dir: &Path) -> (PathBuf, SwapRecord) {
    let binary = dir.join("nginx");
    let new = dir.join("nginx-new");
    write_exe(&binary, b"old");
    write_exe(&new, b"new");
    (binary.clone(), RenameSwap.install(&binary, &new).unwrap())
}

/// The target of pid file `dir/<name>` with its state home at `dir/home` (shared by every
/// target of the test), and its journal's path there.
fn target_in(dir: &Path, name: &str) -> (Target, PathBuf) {
    let target = Target::new(dir.join(name)).state_dir(dir.join("home"));
    let path = home_path(&target).unwrap();
    (target, path)
}

/// This test process as "the master that runs now": `restore` only compares its pid and
/// start time with the journal's and never signals it.
fn this_process() -> ProcessHandle {
    ProcessHandle::open(Pid::try_from(std::process::id()).unwrap()).unwrap()
}

/// A journal written by `master`'s upgrade, recording `rec`.
fn journal_of(master: &ProcessHandle, rec: &SwapRecord) -> Journal {
    Journal {
        old_master: master.pid(),
        old_start_time: master.start_time(),
        swap: rec.to_text(),
    }
}

/// A journal whose recorded master has retired (this pid, another start time), so that
/// `commit` goes on to check what the record names.
fn retired_journal(rec: &SwapRecord) -> Journal {
    let me = this_process();
    Journal {
        old_master: me.pid(),
        old_start_time: me.start_time() + 1,
        swap: rec.to_text(),
    }
}

/// Asserts `result` is the refusal to act on the journal at `journal`, its reason saying
/// `words`.
fn assert_untrusted<T: std::fmt::Debug>(result: Result<T, Error>, journal: &Path, words: &str) {
    match result {
        Err(Error::JournalUntrusted { path, problem }) => {
            assert_eq!(path, journal);
            assert!(problem.contains(words), "{problem}");
        }
        other => panic!("expected the journal to be refused ({words}), got {other:?}"),
    }
}

#[test]
fn a_journal_naming_another_executable_is_neither_committed_nor_restored() {
    let dir = tempfile::tempdir().unwrap();
    let (target, path) = target_in(dir.path(), "nginx.pid");
    let (binary, rec) = installed(dir.path());
    let backup = backup_path_for(&binary);
    // The master of this target runs another file than the one the journal swapped.
    let runs = dir.path().join("sbin-nginx");
    write_exe(&runs, b"other");
    let words = format!(
        "it names the executable `{}`, but this target's master runs `{}`",
        binary.display(),
        runs.display()
    );

    retired_journal(&rec).write(&path).unwrap();
    assert_untrusted(commit(&target, &runs, &NoopObserver), &path, &words);
    assert_eq!(fs::read(&backup).unwrap(), b"old", "backup dropped");

    let me = this_process();
    journal_of(&me, &rec).write(&path).unwrap();
    assert_untrusted(restore(&target, &runs, &me, &NoopObserver), &path, &words);
    assert_eq!(fs::read(&binary).unwrap(), b"new", "binary restored");
    assert_eq!(fs::read(&backup).unwrap(), b"old");
    assert!(path.exists(), "journal removed by a refused restore");
}

#[test]
fn a_journal_naming_a_backup_elsewhere_leaves_that_file_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (target, path) = target_in(dir.path(), "nginx.pid");
    let (binary, mut rec) = installed(dir.path());
    let derived = backup_path_for(&binary);
    // A record pointing at some other file, with that file's exact identity: only the
    // path rule stops a commit from deleting it, or a restore from moving it over.
    let elsewhere = dir.path().join("precious");
    fs::rename(&derived, &elsewhere).unwrap();
    rec.undo = Undo::RestoreBackup {
        backup: elsewhere.clone(),
        identity: Some(FileIdentity::of(&elsewhere).unwrap()),
    };
    let words = format!(
        "it names the backup `{}`, but this swap keeps its backup at `{}`",
        elsewhere.display(),
        derived.display()
    );

    retired_journal(&rec).write(&path).unwrap();
    assert_untrusted(commit(&target, &binary, &NoopObserver), &path, &words);
    assert_eq!(fs::read(&elsewhere).unwrap(), b"old", "deleted by a commit");

    let me = this_process();
    journal_of(&me, &rec).write(&path).unwrap();
    assert_untrusted(restore(&target, &binary, &me, &NoopObserver), &path, &words);
    assert_eq!(fs::read(&binary).unwrap(), b"new", "replaced by a restore");
    assert_eq!(fs::read(&elsewhere).unwrap(), b"old");
    assert!(path.exists(), "journal removed by a refused restore");
}

#[test]
fn a_backup_replaced_by_another_file_is_refused_naming_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let (target, path) = target_in(dir.path(), "nginx.pid");
    let (binary, rec) = installed(dir.path());
    let backup = backup_path_for(&binary);
    fs::remove_file(&backup).unwrap();
    write_exe(&backup, b"planted");
    // The journal is what is not believed (and named), not just the swap undone.
    let words = format!(
        "`{}` is not the backup this swap made (another file has its name): leaving it and \
         `{}` alone",
        backup.display(),
        binary.display()
    );

    retired_journal(&rec).write(&path).unwrap();
    assert_untrusted(commit(&target, &binary, &NoopObserver), &path, &words);
    assert_eq!(fs::read(&backup).unwrap(), b"planted");

    let me = this_process();
    journal_of(&me, &rec).write(&path).unwrap();
    assert_untrusted(restore(&target, &binary, &me, &NoopObserver), &path, &words);
    assert_eq!(fs::read(&binary).unwrap(), b"new");
    assert_eq!(fs::read(&backup).unwrap(), b"planted");
    assert!(path.exists(), "journal removed by a refused restore");
}

#[test]
fn a_backup_that_cannot_be_inspected_is_an_error_not_absent() {
    // The executable's directory is a regular file: looking at the backup fails with
    // ENOTDIR, which must not pass for "no backup yet". (EACCES, the other way, cannot be
    // made as root.)
    let dir = tempfile::tempdir().unwrap();
    let (target, path) = target_in(dir.path(), "nginx.pid");
    let not_a_dir = dir.path().join("sbin");
    fs::write(&not_a_dir, b"").unwrap();
    let binary = not_a_dir.join("nginx");
    let backup = backup_path_for(&binary);
    let rec = SwapRecord::new(
        "rename",
        binary.clone(),
        Undo::RestoreBackup {
            backup: backup.clone(),
            identity: Some(FileIdentity::of(&not_a_dir).unwrap()),
        },
    );
    retired_journal(&rec).write(&path).unwrap();
    match commit(&target, &binary, &NoopObserver) {
        Err(e @ Error::SwapIo { .. }) => {
            let Error::SwapIo {
                action,
                path: failed,
                source,
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(*action, "inspect backup", "{e}");
            assert_eq!(*failed, backup);
            assert_eq!(source.raw_os_error(), Some(libc::ENOTDIR), "{source}");
            assert_eq!(
                e.to_string(),
                format!("failed to inspect backup `{}`", backup.display())
            );
        }
        other => panic!("expected the backup's inspection to fail, got {other:?}"),
    }
    assert!(
        path.exists(),
        "journal removed although nothing was committed"
    );
}

#[test]
fn another_targets_unfinished_swap_of_the_same_executable_blocks_a_swap() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, our_journal) = target_in(dir.path(), "a.pid");
    let (_, their_journal) = target_in(dir.path(), "b.pid");
    let (binary, rec) = installed(dir.path());
    let theirs = Journal {
        old_master: Pid::new(4321).unwrap(),
        old_start_time: 7,
        swap: rec.to_text(),
    };
    theirs.write(&their_journal).unwrap();

    match check_no_other_swap(&ours, &our_journal, &binary) {
        Err(Error::Swap { path, problem }) => {
            assert_eq!(path, binary);
            assert_eq!(
                problem,
                format!(
                    "an unfinished upgrade of another server swapped this executable (journal \
                     {}, old master 4321): commit or roll back that upgrade first",
                    their_journal.display()
                )
            );
        }
        other => panic!("expected the swap to be refused, got {other:?}"),
    }
    // Another executable is not theirs to guard.
    let other_binary = dir.path().join("other-nginx");
    check_no_other_swap(&ours, &our_journal, &other_binary).unwrap();
}

#[test]
fn our_own_journal_and_what_is_not_a_journal_do_not_block_a_swap() {
    let dir = tempfile::tempdir().unwrap();
    let (ours, our_journal) = target_in(dir.path(), "a.pid");
    let (_, their_journal) = target_in(dir.path(), "b.pid");
    let (binary, rec) = installed(dir.path());
    let naming_binary = |master: i64| Journal {
        old_master: Pid::new(master).unwrap(),
        old_start_time: 7,
        swap: rec.to_text(),
    };
    // Our own (an upgrade of this target resumed, or its first journal).
    naming_binary(4321).write(&our_journal).unwrap();
    check_no_other_swap(&ours, &our_journal, &binary).unwrap();
    // A journal's temp left by a crash before its rename: that upgrade never swapped.
    let mut temp = their_journal.clone().into_os_string();
    temp.push(".tmp");
    naming_binary(4322).write(Path::new(&temp)).unwrap();
    check_no_other_swap(&ours, &our_journal, &binary).unwrap();
    // Journals hotreload does not believe: one anyone can write, one that is a directory.
    let (_, untrusted) = target_in(dir.path(), "c.pid");
    naming_binary(4323).write(&untrusted).unwrap();
    fs::set_permissions(&untrusted, fs::Permissions::from_mode(0o602)).unwrap();
    let (_, a_dir) = target_in(dir.path(), "d.pid");
    fs::create_dir(&a_dir).unwrap();
    check_no_other_swap(&ours, &our_journal, &binary).unwrap();
    // Nothing to check without a state home.
    let homeless = Target::new(dir.path().join("a.pid")).state_dir(dir.path().join("none"));
    check_no_other_swap(&homeless, &our_journal, &binary).unwrap();
}

#[test]
fn status_notes_name_each_journal_and_what_settles_it() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::new(dir.path().join("nginx.pid")).state_dir(dir.path().join("home"));
    assert_eq!(target.journal_notes(), Vec::<String>::new(), "no journals");

    let settles = "`hotreload rollback` or `hotreload commit` settles it";
    let path = home_path(&target).unwrap();
    let journal = |master: i64| Journal {
        old_master: Pid::new(master).unwrap(),
        old_start_time: 7,
        swap: String::new(),
    };
    journal(4321).write(&path).unwrap();
    assert_eq!(
        target.journal_notes(),
        [format!(
            "journal {} records an unfinished upgrade (old master 4321): {settles}",
            path.display()
        )]
    );

    let legacy = target.legacy_journal_file();
    journal(4322).write(&legacy).unwrap();
    assert_eq!(
        target.journal_notes(),
        [
            format!(
                "journal {} records an unfinished upgrade (old master 4321): {settles}",
                path.display()
            ),
            format!(
                "journal of an older hotreload (beside the pid file) {} records an unfinished \
                 upgrade (old master 4322): {settles}",
                legacy.display()
            ),
        ]
    );
}

#[test]
fn status_notes_say_why_a_journal_is_not_acted_on() {
    let dir = tempfile::tempdir().unwrap();
    let target = Target::new(dir.path().join("nginx.pid")).state_dir(dir.path().join("home"));
    let path = home_path(&target).unwrap();
    let j = Journal {
        old_master: Pid::new(4321).unwrap(),
        old_start_time: 7,
        swap: String::new(),
    };
    j.write(&path).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o602)).unwrap();
    let legacy = target.legacy_journal_file();
    std::os::unix::fs::symlink(&path, &legacy).unwrap();

    assert_eq!(
        target.journal_notes(),
        [
            format!(
                "journal {p} is not acted on: not acting on upgrade journal `{p}`: every user \
                 can write it, so it may not be ours; remove it",
                p = path.display()
            ),
            format!(
                "journal of an older hotreload (beside the pid file) {p} is not acted on: not \
                 acting on upgrade journal `{p}`: it is a symbolic link",
                p = legacy.display()
            ),
        ]
    );
}

#[test]
fn status_notes_report_a_state_home_that_cannot_be_used() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let target = Target::new(dir.path().join("nginx.pid")).state_dir(&home);
    home_path(&target).unwrap();
    fs::set_permissions(&home, fs::Permissions::from_mode(0o707)).unwrap();
    // The journal beside the pid file is still looked at.
    let legacy = target.legacy_journal_file();
    Journal {
        old_master: Pid::new(4322).unwrap(),
        old_start_time: 7,
        swap: String::new(),
    }
    .write(&legacy)
    .unwrap();

    let notes = target.journal_notes();
    assert_eq!(notes.len(), 2, "{notes:?}");
    let prefix = format!(
        "hotreload's state directory `{}` can be written by every user; ",
        home.display()
    );
    assert!(notes[0].starts_with(&prefix), "{notes:?}");
    assert!(notes[0].contains("chmod 0700"), "{notes:?}");
    assert!(
        notes[1].starts_with(&format!(
            "journal of an older hotreload (beside the pid file) {} records an unfinished \
             upgrade (old master 4322)",
            legacy.display()
        )),
        "{notes:?}"
    );
}

#[test]
fn a_backup_recorded_by_an_earlier_version_without_times_is_still_its_backup() {
    // Records of an earlier hotreload identify the backup by device, inode and size only:
    // the times it did not record cannot disagree.
    let dir = tempfile::tempdir().unwrap();
    let (target, path) = target_in(dir.path(), "nginx.pid");
    let (binary, mut rec) = installed(dir.path());
    let backup = backup_path_for(&binary);
    let Undo::RestoreBackup { identity, .. } = &mut rec.undo else {
        panic!("the rename swap keeps a backup: {rec:?}")
    };
    let recorded = identity.as_mut().expect("the backup's identity");
    recorded.mtime_ns = None;
    recorded.ctime_ns = None;
    retired_journal(&rec).write(&path).unwrap();
    assert!(commit(&target, &binary, &NoopObserver).unwrap());
    assert!(!backup.exists(), "the backup was not dropped");
    assert!(!path.exists(), "the journal was not removed");
    assert_eq!(fs::read(&binary).unwrap(), b"new");
}

#[test]
fn a_backup_recorded_before_it_existed_is_believed_only_if_it_is_what_the_master_runs() {
    // A journal written before the install made the backup has no identity for it: the
    // backup is believed when it is the very file the old master runs (a rename swap's),
    // or has its content (a copy swap's), and refused otherwise. The master here is this
    // test process; its executable is linked or copied as the "backup".
    let exe = std::fs::canonicalize("/proc/self/exe").unwrap();
    let check = |make_backup: &dyn Fn(&Path), believed: bool| {
        // Beside the test executable, so that a hard link to it can be made.
        let dir = tempfile::tempdir_in(exe.parent().unwrap()).unwrap();
        let (target, path) = target_in(dir.path(), "nginx.pid");
        let binary = dir.path().join("nginx");
        write_exe(&binary, b"new");
        let backup = backup_path_for(&binary);
        make_backup(&backup);
        let rec = SwapRecord::new(
            "rename",
            binary.clone(),
            Undo::RestoreBackup {
                backup: backup.clone(),
                identity: None,
            },
        );
        let me = this_process();
        journal_of(&me, &rec).write(&path).unwrap();
        let restored = restore(&target, &binary, &me, &NoopObserver);
        if believed {
            assert!(restored.unwrap(), "the backup was not put back");
            assert!(!backup.exists());
            assert_ne!(fs::read(&binary).unwrap(), b"new");
        } else {
            let words = "is not the backup this swap made";
            assert_untrusted(restored, &path, words);
            assert_eq!(fs::read(&binary).unwrap(), b"new");
        }
    };
    check(&|b| fs::hard_link(&exe, b).unwrap(), true);
    check(&|b| assert!(fs::copy(&exe, b).unwrap() > 0), true);
    check(&|b| write_exe(b, b"planted"), false);
}

#[test]
fn a_journal_whose_backup_is_gone_is_committed_and_its_restore_says_why_it_cannot() {
    // The backup a journal names is not there (dropped, or never made): a commit has
    // nothing to drop and settles the journal; a restore cannot put anything back and
    // says so, rather than failing to look at the file.
    for restoring in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (target, path) = target_in(dir.path(), "nginx.pid");
        let (binary, rec) = installed(dir.path());
        fs::remove_file(backup_path_for(&binary)).unwrap();
        let me = this_process();
        if restoring {
            journal_of(&me, &rec).write(&path).unwrap();
            let e = restore(&target, &binary, &me, &NoopObserver).unwrap_err();
            assert!(e.to_string().contains("the backup is missing"), "{e}");
            assert!(path.exists(), "the journal of a failed restore was removed");
        } else {
            retired_journal(&rec).write(&path).unwrap();
            commit(&target, &binary, &NoopObserver).expect("commit");
            assert!(!path.exists(), "the commit left the journal");
        }
        assert_eq!(fs::read(&binary).unwrap(), b"new");
    }
}
