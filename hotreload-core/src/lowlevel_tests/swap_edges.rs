//! Binary swaps at their edges: a backup replaced by another file, an install
//! interrupted with the backup still a second name of the binary, files that cannot be
//! inspected, an installed file changed in place, and the built-in strategies by name.
//! Written for survivors of the cargo-mutants run (MUTANTS.md).

use std::fs;
use std::path::{Path, PathBuf};

use crate::swap::{backup_path_for, builtin, BinarySwap, FileIdentity, RenameSwap, SymlinkSwap};
use crate::swap::{Undo, BUILTIN};
use crate::{Error, SwapRecord};

use super::write_exe;

/// "new" installed over "old" at `dir/nginx` by the rename swap.
fn installed(dir: &Path) -> (PathBuf, SwapRecord) {
    let binary = dir.join("nginx");
    let new = dir.join("nginx-new");
    write_exe(&binary, b"old");
    write_exe(&new, b"new");
    (binary.clone(), RenameSwap.install(&binary, &new).unwrap())
}

#[test]
fn another_file_under_the_backup_name_is_neither_restored_nor_removed() {
    let dir = tempfile::tempdir().unwrap();
    let (binary, rec) = installed(dir.path());
    let backup = backup_path_for(&binary);
    fs::remove_file(&backup).unwrap();
    write_exe(&backup, b"planted");

    let e = rec.undo().unwrap_err();
    assert!(
        e.to_string().contains("not the backup this swap made"),
        "{e}"
    );
    assert_eq!(fs::read(&binary).unwrap(), b"new");
    let e = rec.commit().unwrap_err();
    assert!(
        e.to_string().contains("not the backup this swap made"),
        "{e}"
    );
    assert_eq!(fs::read(&backup).unwrap(), b"planted");
}

#[test]
fn restore_after_an_install_cut_before_its_rename_leaves_no_backup() {
    // Killed between linking the backup and renaming the staged file over the binary:
    // both names are the old file. A rename between them would do nothing.
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("nginx");
    write_exe(&binary, b"old");
    let backup = backup_path_for(&binary);
    fs::hard_link(&binary, &backup).unwrap();
    let identity = Some(FileIdentity::of(&backup).unwrap());
    let rec = SwapRecord::new(
        "rename",
        binary.clone(),
        Undo::RestoreBackup {
            backup: backup.clone(),
            identity,
        },
    );
    rec.undo().unwrap();
    assert_eq!(fs::read(&binary).unwrap(), b"old");
    assert!(!backup.exists(), "the backup name is left behind");
}

#[test]
fn paths_that_cannot_be_inspected_are_errors_not_absent_files() {
    let dir = tempfile::tempdir().unwrap();
    // A path through a regular file fails with ENOTDIR, not "not found".
    let file = dir.path().join("file");
    fs::write(&file, b"").unwrap();
    let through = file.join("nginx");

    let e = RenameSwap.install(&through, &file).unwrap_err();
    assert!(matches!(e, Error::SwapIo { .. }), "{e}");

    let rec = SwapRecord::new("rename", through.clone(), Undo::Nothing).installed(no_file());
    assert!(matches!(rec.installed_matches(), Err(Error::SwapIo { .. })));

    // A backup that cannot be inspected is not "already restored".
    let binary = dir.path().join("nginx");
    write_exe(&binary, b"old");
    let rec = SwapRecord::new(
        "rename",
        binary.clone(),
        Undo::RestoreBackup {
            backup: through.clone(),
            identity: None,
        },
    )
    .installed(no_file());
    assert!(matches!(rec.undo(), Err(Error::SwapIo { .. })));

    // A backup that cannot be removed is not "already committed".
    let backup = dir.path().join("nginx.dir-backup");
    fs::create_dir(&backup).unwrap();
    fs::write(backup.join("x"), b"").unwrap();
    let rec = SwapRecord::new(
        "rename",
        binary,
        Undo::RestoreBackup {
            backup: backup.clone(),
            identity: None,
        },
    );
    assert!(rec.commit().is_err());
    assert!(backup.exists());
}

#[test]
fn the_installed_file_must_match_in_content_not_only_in_size() {
    let dir = tempfile::tempdir().unwrap();
    let (binary, rec) = installed(dir.path());
    assert!(rec.installed_matches().unwrap());
    fs::write(&binary, b"NEW").unwrap();
    assert!(
        !rec.installed_matches().unwrap(),
        "same size, other content"
    );
    fs::remove_file(&binary).unwrap();
    assert!(!rec.installed_matches().unwrap(), "no file");
}

#[test]
fn builtin_strategies_by_name() {
    for &name in BUILTIN {
        let s = builtin(name).unwrap_or_else(|| panic!("no built-in `{name}`"));
        assert_eq!(s.name(), name);
        // Only `none` leaves the file in place as the new build.
        assert_eq!(s.installs(), name != "none", "{name}");
    }
    assert!(builtin("RENAME").is_some());
    assert!(builtin("unknown").is_none());
}

#[test]
fn symlink_swap_names_a_missing_link() {
    let dir = tempfile::tempdir().unwrap();
    let new = dir.path().join("new");
    write_exe(&new, b"new");
    let e = SymlinkSwap
        .install(&dir.path().join("current"), &new)
        .unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
}

#[test]
fn symlink_swap_reports_a_link_it_cannot_inspect() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    fs::write(&file, b"").unwrap();
    let e = SymlinkSwap
        .install(&file.join("current"), &file)
        .unwrap_err();
    assert!(matches!(e, Error::SwapIo { .. }), "{e}");
}

/// An installed identity that no real file has.
fn no_file() -> crate::swap::FileIdentity {
    crate::swap::FileIdentity {
        dev: 0,
        ino: 0,
        size: 99,
        mtime_ns: None,
        ctime_ns: None,
    }
}
