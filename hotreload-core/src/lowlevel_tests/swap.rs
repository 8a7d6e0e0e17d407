//! Binary swaps on real files: install / restore / commit for each strategy, the
//! record's text form used across processes, refusals before any change, and a
//! process SIGKILLed mid-swap never leaving a half-written binary.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::swap::{
    backup_path_for, BinarySwap, CopySwap, FileIdentity, NoSwap, RenameSwap, SymlinkSwap, Undo,
};
use crate::{swap_for, Error, SwapKind, SwapRecord};

fn write_exe(path: &Path, content: &[u8], mode: u32) {
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Files in `dir` other than the expected ones (leftover temporaries).
fn extra_files(dir: &Path, expected: &[&str]) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !expected.contains(&n.as_str()))
        .collect()
}

fn check_backup_strategy(swap: &dyn BinarySwap, hard_linked: bool) {
    let dir = tempfile::tempdir().unwrap();
    let bin_dir = dir.path().join("sbin");
    fs::create_dir(&bin_dir).unwrap();
    let binary = bin_dir.join("nginx");
    let new = dir.path().join("nginx-new");
    write_exe(&binary, b"old binary", 0o750);
    write_exe(&new, b"new binary, longer", 0o644);
    let old_ino = fs::metadata(&binary).unwrap().ino();

    let rec = swap.install(&binary, &new).unwrap();
    assert_eq!(rec.swap, swap.name());
    assert_eq!(rec.binary, binary);
    assert_eq!(fs::read(&binary).unwrap(), b"new binary, longer");
    assert_eq!(
        fs::metadata(&binary).unwrap().mode() & 0o7777,
        0o750,
        "mode of the old one"
    );
    let Undo::RestoreBackup { backup, identity } = rec.undo.clone() else {
        panic!("{:?} records no backup", rec.undo);
    };
    assert_eq!(backup, backup_path_for(&binary));
    assert_eq!(identity, Some(FileIdentity::of(&backup).unwrap()));
    assert_eq!(fs::read(&backup).unwrap(), b"old binary");
    assert_eq!(fs::metadata(&backup).unwrap().ino() == old_ino, hard_linked);
    let installed = rec.installed.expect("the installed file's identity");
    assert_eq!(installed.size, 18);
    assert!(installed.matches(&binary).unwrap(), "{installed:?}");
    assert!(rec.installed_matches().unwrap());
    assert!(extra_files(&bin_dir, &["nginx", "nginx.hotreload-backup"]).is_empty());

    // A second install before commit/restore is refused and changes nothing.
    let e = swap.install(&binary, &new).unwrap_err();
    assert!(e.to_string().contains("backup already exists"), "{e}");
    assert_eq!(fs::read(&binary).unwrap(), b"new binary, longer");

    // Restore, from the text form as another process would.
    let rec2 = SwapRecord::from_text(&rec.to_text()).unwrap();
    swap_for(rec2.swap.parse::<SwapKind>().unwrap())
        .restore(&rec2)
        .unwrap();
    assert_eq!(fs::read(&binary).unwrap(), b"old binary");
    assert!(!backup.exists());
    // Idempotent.
    swap.restore(&rec2).unwrap();
    assert_eq!(fs::read(&binary).unwrap(), b"old binary");

    // Install again, then commit: the backup goes, the new binary stays.
    let rec = swap.install(&binary, &new).unwrap();
    swap.commit(&rec).unwrap();
    swap.commit(&rec).unwrap();
    assert!(!backup.exists());
    assert_eq!(fs::read(&binary).unwrap(), b"new binary, longer");
    assert!(extra_files(&bin_dir, &["nginx"]).is_empty());

    // After a commit the old binary is gone: restore says so instead of pretending.
    let e = swap.restore(&rec).unwrap_err();
    assert!(e.to_string().contains("backup is missing"), "{e}");
}

#[test]
fn rename_install_restore_commit() {
    check_backup_strategy(&RenameSwap, true);
}

#[test]
fn copy_install_restore_commit() {
    check_backup_strategy(&CopySwap, false);
}

#[test]
fn file_swaps_refuse_unsuitable_layouts() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("nginx");
    let new = dir.path().join("new");
    write_exe(&new, b"new", 0o755);
    for swap in [&RenameSwap as &dyn BinarySwap, &CopySwap] {
        // Missing binary.
        let e = swap.install(&binary, &new).unwrap_err();
        assert!(e.to_string().contains("does not exist"), "{e}");
        // A symlink binary.
        std::os::unix::fs::symlink(&new, &binary).unwrap();
        let e = swap.install(&binary, &new).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        let e = swap.preflight(&binary, &new).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        fs::remove_file(&binary).unwrap();
        // The new binary is the installed file.
        write_exe(&binary, b"old", 0o755);
        let e = swap.install(&binary, &binary).unwrap_err();
        assert!(e.to_string().contains("`none` swap"), "{e}");
        // A missing new binary: nothing changes, nothing is left behind.
        let e = swap
            .install(&binary, &dir.path().join("absent"))
            .unwrap_err();
        assert!(matches!(e, Error::SwapIo { .. }), "{e}");
        assert_eq!(fs::read(&binary).unwrap(), b"old");
        assert!(extra_files(dir.path(), &["nginx", "new"]).is_empty());
        fs::remove_file(&binary).unwrap();
    }
}

#[test]
fn symlink_flip_and_back() {
    let dir = tempfile::tempdir().unwrap();
    for v in ["v1", "v2"] {
        fs::create_dir_all(dir.path().join("releases").join(v)).unwrap();
        write_exe(
            &dir.path().join("releases").join(v).join("nginx"),
            format!("nginx {v}").as_bytes(),
            0o755,
        );
    }
    let current = dir.path().join("current");
    std::os::unix::fs::symlink("releases/v1/nginx", &current).unwrap();
    let new = dir.path().join("releases/v2/nginx");

    let rec = SymlinkSwap.install(&current, &new).unwrap();
    // Relative before, relative after (issue 12, item 9).
    assert_eq!(
        fs::read_link(&current).unwrap(),
        PathBuf::from("releases/v2/nginx")
    );
    assert_eq!(fs::read(&current).unwrap(), b"nginx v2");
    assert_eq!(
        rec.undo,
        Undo::RepointSymlink {
            previous: Path::new("releases/v1/nginx").to_path_buf()
        }
    );
    assert!(rec.installed_matches().unwrap());

    let rec2 = SwapRecord::from_text(&rec.to_text()).unwrap();
    swap_for(SwapKind::Symlink).restore(&rec2).unwrap();
    assert_eq!(
        fs::read_link(&current).unwrap(),
        PathBuf::from("releases/v1/nginx")
    );
    assert_eq!(fs::read(&current).unwrap(), b"nginx v1");

    SymlinkSwap
        .commit(&SymlinkSwap.install(&current, &new).unwrap())
        .unwrap();
    assert_eq!(fs::read(&current).unwrap(), b"nginx v2");
    assert!(
        dir.path().join("releases/v1/nginx").exists(),
        "old release left alone"
    );
    assert!(extra_files(dir.path(), &["current", "releases"]).is_empty());

    // An absolute link stays absolute.
    SymlinkSwap
        .restore(&SymlinkSwap.install(&current, &new).unwrap())
        .unwrap();
    let v1 = dir.path().join("releases/v1/nginx");
    fs::remove_file(&current).unwrap();
    std::os::unix::fs::symlink(&v1, &current).unwrap();
    let rec = SymlinkSwap.install(&current, Path::new(&new)).unwrap();
    assert_eq!(fs::read_link(&current).unwrap(), new);
    SymlinkSwap.restore(&rec).unwrap();
    assert_eq!(fs::read_link(&current).unwrap(), v1);

    // A plain file is refused, in preflight as at install.
    let e = SymlinkSwap.install(&new, &new).unwrap_err();
    assert!(e.to_string().contains("not a symbolic link"), "{e}");
    let e = SymlinkSwap.preflight(&new, &new).unwrap_err();
    assert!(e.to_string().contains("not a symbolic link"), "{e}");
}

#[test]
fn none_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("nginx");
    write_exe(&binary, b"already new", 0o755);
    let rec = NoSwap.install(&binary, &binary).unwrap();
    assert_eq!(rec.swap, "none");
    assert_eq!(rec.undo, Undo::Nothing);
    NoSwap.restore(&rec).unwrap();
    NoSwap.commit(&rec).unwrap();
    assert_eq!(fs::read(&binary).unwrap(), b"already new");
    assert!(extra_files(dir.path(), &["nginx"]).is_empty());
}

/// The installed file's owner, mode with its set-id bits and extended attributes go
/// over to the new one (issue 12, item 5); the hard-linked backup keeps its own.
#[test]
fn file_swaps_keep_the_installed_files_metadata() {
    use std::os::unix::fs::PermissionsExt as _;
    for swap in [&RenameSwap as &dyn BinarySwap, &CopySwap] {
        let dir = tempfile::tempdir().unwrap();
        let binary = dir.path().join("nginx");
        let new = dir.path().join("new");
        write_exe(&binary, b"old", 0o755);
        write_exe(&new, b"new build", 0o700);
        std::os::unix::fs::chown(&binary, Some(4321), Some(4322)).unwrap();
        fs::set_permissions(&binary, fs::Permissions::from_mode(0o6750)).unwrap();
        let xattr = |path: &Path| {
            let f = fs::File::open(path).unwrap();
            crate::sys::fgetxattr(std::os::fd::AsFd::as_fd(&f), c"user.origin").ok()
        };
        let f = fs::File::open(&binary).unwrap();
        // tmpfs before Linux 6.6 has no user.* attributes: then only owner and mode.
        let has_setfattr =
            crate::sys::fsetxattr(std::os::fd::AsFd::as_fd(&f), c"user.origin", b"pkg").is_ok();
        drop(f);
        let assert_xattr_kept = || {
            if has_setfattr {
                assert_eq!(
                    xattr(&binary).as_deref(),
                    Some(&b"pkg"[..]),
                    "{}",
                    swap.name()
                );
            }
        };
        let rec = swap.install(&binary, &new).unwrap();
        let meta = fs::metadata(&binary).unwrap();
        assert_eq!(fs::read(&binary).unwrap(), b"new build");
        assert_eq!((meta.uid(), meta.gid()), (4321, 4322), "{}", swap.name());
        assert_eq!(meta.mode() & 0o7777, 0o6750, "{}", swap.name());
        assert_xattr_kept();
        swap.restore(&rec).unwrap();
        let meta = fs::metadata(&binary).unwrap();
        assert_eq!(fs::read(&binary).unwrap(), b"old");
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o7777),
            (4321, 4322, 0o6750)
        );
        assert_xattr_kept();
    }
}

#[test]
fn deferred_durability_completes() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("nginx");
    let new = dir.path().join("new");
    write_exe(&binary, b"old", 0o755);
    write_exe(&new, b"new", 0o755);
    let installed = RenameSwap
        .install_with(&binary, &new, &crate::swap::InstallOptions::new())
        .unwrap();
    assert!(installed.durability.is_pending());
    assert!(installed.lost_metadata.is_empty());
    let rec = installed.finish().unwrap();
    RenameSwap.restore(&rec).unwrap();
    assert!(crate::swap::Durability::done().complete().is_ok());
    let gone = crate::swap::Durability::sync_directory(dir.path().join("absent"));
    assert!(gone.complete().is_err());
}

// ---- SIGKILL mid-swap ----

const HELPER_ENV: &str = "HOTRELOAD_LOWLEVEL_SWAP_HELPER";

/// Not a test on its own: with the env var set, it is the child that swaps in a
/// loop until it is killed (or until its stdin closes, so that it cannot outlive a
/// parent that died without killing it).
#[test]
fn swap_loop_helper() {
    let Ok(dir) = std::env::var(HELPER_ENV) else {
        return;
    };
    std::thread::spawn(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
        std::process::exit(3);
    });
    let dir = PathBuf::from(dir);
    let binary = dir.join("nginx");
    let new = dir.join("new");
    use std::io::Write;
    // Direct write with its own line: the harness captures `println!` and prints
    // "test swap_loop_helper ... " without a newline before the test runs.
    std::io::stdout()
        .write_all(b"\nSWAP-HELPER-READY\n")
        .unwrap();
    std::io::stdout().flush().unwrap();
    loop {
        let rec = RenameSwap.install(&binary, &new).unwrap();
        RenameSwap.restore(&rec).unwrap();
    }
}

/// Reads the child's stdout on a thread until `token` appears, with a deadline.
fn wait_for_token(out: std::process::ChildStdout, token: &'static str, timeout: Duration) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if line.contains(token) {
                let _ = tx.send(());
                // Keep draining so the child never blocks on a full pipe.
            }
        }
    });
    rx.recv_timeout(timeout)
        .unwrap_or_else(|_| panic!("child did not print {token} within {timeout:?}"));
}

struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sigkill_mid_swap_leaves_a_complete_binary() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("nginx");
    let new = dir.path().join("new");
    // Big enough that a copy takes many writes and the kills land in different steps.
    let size = 16 << 20;
    let old_content: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let new_content: Vec<u8> = (0..size).map(|i| (i % 241) as u8).collect();
    write_exe(&binary, &old_content, 0o755);
    write_exe(&new, &new_content, 0o755);

    // Kill at different moments of the install/restore cycle.
    for delay_ms in [1u64, 10, 30, 70, 150, 300] {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "lowlevel_tests::swap::swap_loop_helper",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HELPER_ENV, dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let mut guard = Guard(child);
        // Handshake: the child is about to swap.
        wait_for_token(out, "SWAP-HELPER-READY", Duration::from_secs(60));
        // Not a handshake: the point is to land the kill anywhere in the cycle.
        std::thread::sleep(Duration::from_millis(delay_ms));
        guard.0.kill().unwrap();
        guard.0.wait().unwrap();

        let content = fs::read(&binary).unwrap();
        assert!(
            content == old_content || content == new_content,
            "half-written binary after kill at {delay_ms} ms"
        );
        // Put things back for the next round, as a rollback would.
        let backup = backup_path_for(&binary);
        if let Ok(found) = fs::symlink_metadata(&backup) {
            let installed = fs::symlink_metadata(&binary).unwrap();
            if (found.dev(), found.ino()) == (installed.dev(), installed.ino()) {
                // Killed between linking the backup and the rename over the binary: both
                // names are the old file, and rename(2) between two links of one inode
                // does nothing, so drop the extra name (as `restore` does).
                fs::remove_file(&backup).unwrap();
            } else {
                fs::rename(&backup, &binary).unwrap();
            }
        }
        assert!(fs::read(&binary).unwrap() == old_content);
    }
    // Leftovers of the killed processes are cleaned by the next install.
    let rec = RenameSwap.install(&binary, &new).unwrap();
    RenameSwap.commit(&rec).unwrap();
    assert!(
        extra_files(dir.path(), &["nginx", "new"]).is_empty(),
        "{:?}",
        extra_files(dir.path(), &["nginx", "new"])
    );
}
