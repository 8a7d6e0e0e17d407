//! Swap checks a user relies on without seeing them: the default preflight's report,
//! whether a deferred directory fsync is still owed, an installed binary that keeps no
//! ACL it never had, a backup made by copy when the file system refuses one more link, and
//! an owner or set-id bit that cannot be kept (seccomp filters): refused, or named; a file
//! capability kept; file identities (times in ns, a changed mtime, a missing file).
//! Written for survivors of the cargo-mutants run of `swap/` (MUTANTS.md).

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::swap::{
    backup_path_for, BinarySwap, Durability, FileIdentity, InstallOptions, RenameSwap,
};
use crate::{Error, SwapRecord};

use super::write_exe;

fn c_path(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).unwrap()
}

fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    let name = CString::new(name).unwrap();
    // SAFETY: both strings are NUL-terminated and `value` is valid for its length.
    let rc = unsafe {
        libc::setxattr(
            c_path(path).as_ptr(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    assert_eq!(
        rc,
        0,
        "setxattr {name:?}: {}",
        std::io::Error::last_os_error()
    );
}

/// The attribute's value, or the errno that reading it failed with.
fn get_xattr(path: &Path, name: &str) -> Result<Vec<u8>, i32> {
    let name = CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: both strings are NUL-terminated and `buf` is valid for its length.
    let n = unsafe {
        libc::getxattr(
            c_path(path).as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap());
    }
    buf.truncate(n as usize);
    Ok(buf)
}

/// A strategy that overrides nothing it need not: its preflight is the trait's default.
#[derive(Debug)]
struct Minimal;

impl BinarySwap for Minimal {
    fn name(&self) -> &str {
        "minimal"
    }
    fn install(&self, _binary: &Path, _new: &Path) -> Result<SwapRecord, Error> {
        unreachable!("the preflight installs nothing")
    }
}

/// A temporary directory with `nginx` (content `old`) and `nginx-new` (`new`), both
/// executable.
fn old_and_new() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("nginx");
    let new = dir.path().join("nginx-new");
    write_exe(&binary, b"old");
    write_exe(&new, b"new");
    (dir, binary, new)
}

/// Installs `new` at `binary` with a rename swap, which must lose no metadata.
fn install_losing_nothing(binary: &Path, new: &Path) {
    let installed = RenameSwap
        .install_with(binary, new, &InstallOptions::new())
        .unwrap();
    assert!(
        installed.lost_metadata.is_empty(),
        "{:?}",
        installed.lost_metadata
    );
    installed.finish().unwrap();
}

#[test]
fn the_default_preflight_reports_that_the_strategy_checks_the_binary_at_install() {
    let found = Minimal
        .preflight(Path::new("/srv/bin/nginx"), Path::new("/srv/new"))
        .unwrap();
    assert_eq!(
        found,
        "the minimal swap checks `/srv/bin/nginx` when it installs"
    );
}

#[test]
fn a_deferred_directory_fsync_is_pending_until_completed_and_nothing_is_owed_when_done() {
    assert!(!Durability::done().is_pending());
    let dir = tempfile::tempdir().unwrap();
    let sync = Durability::sync_directory(dir.path().to_path_buf());
    assert!(sync.is_pending());
    sync.complete().unwrap();
    let binary = dir.path().join("nginx");
    let new = dir.path().join("nginx-new");
    write_exe(&binary, b"old");
    write_exe(&new, b"new");
    let installed = RenameSwap
        .install_with(&binary, &new, &InstallOptions::new())
        .unwrap();
    assert!(installed.durability.is_pending());
    installed.finish().unwrap();
}

/// A default ACL granting uid 1234 rwx (a minimal one would leave new files without an
/// access ACL): user::rwx user:1234:rwx group::r-x mask::rwx other::r-x.
fn default_acl() -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (0x01u16, 7u16, u32::MAX),
        (0x02, 7, 1234),
        (0x04, 5, u32::MAX),
        (0x10, 7, u32::MAX),
        (0x20, 5, u32::MAX),
    ] {
        v.extend(tag.to_le_bytes());
        v.extend(perm.to_le_bytes());
        v.extend(id.to_le_bytes());
    }
    v
}

#[test]
fn a_binary_without_an_acl_gets_none_from_its_directorys_default_acl() {
    // /tmp is ext4 with ACLs and user attributes here; elsewhere the test says why it stops.
    let (dir, binary, new) = old_and_new();
    // The installed file has an attribute, but no ACL: only the ACL must be left off.
    set_xattr(&binary, "user.origin", b"package");
    set_xattr(dir.path(), "system.posix_acl_default", &default_acl());
    let probe = dir.path().join("probe");
    fs::write(&probe, b"").unwrap();
    assert!(
        get_xattr(&probe, "system.posix_acl_access").is_ok(),
        "a new file in the directory inherits an access ACL"
    );
    fs::remove_file(&probe).unwrap();

    install_losing_nothing(&binary, &new);

    assert_eq!(fs::read(&binary).unwrap(), b"new");
    assert_eq!(
        get_xattr(&binary, "system.posix_acl_access"),
        Err(libc::ENODATA),
        "uid 1234 was not granted the old binary and must not be granted the new one"
    );
    assert_eq!(get_xattr(&binary, "user.origin").unwrap(), b"package");
    assert_eq!(fs::metadata(&binary).unwrap().mode() & 0o7777, 0o755);
}

#[test]
fn a_binary_at_its_link_limit_is_backed_up_by_copy() {
    let (dir, binary, new) = old_and_new();
    // ext4 refuses a 65001st name (EMLINK): the backup cannot be another name of it.
    let links = dir.path().join("links");
    fs::create_dir(&links).unwrap();
    let mut n = 0u32;
    loop {
        match fs::hard_link(&binary, links.join(n.to_string())) {
            Ok(()) => n += 1,
            Err(e) if e.raw_os_error() == Some(libc::EMLINK) => break,
            Err(e) => panic!("link {n}: {e}"),
        }
    }
    let old_inode = fs::metadata(&binary).unwrap().ino();

    let rec = RenameSwap
        .install_with(&binary, &new, &InstallOptions::new())
        .unwrap()
        .finish()
        .unwrap();
    assert_eq!(fs::read(&binary).unwrap(), b"new");
    let backup = backup_path_for(&binary);
    let meta = fs::metadata(&backup).unwrap();
    assert_ne!(meta.ino(), old_inode, "a copy, not another link");
    assert_eq!(fs::read(&backup).unwrap(), b"old");
    assert_eq!(meta.mode() & 0o7777, 0o755);

    rec.undo().unwrap();
    assert_eq!(fs::read(&binary).unwrap(), b"old");
    fs::remove_dir_all(&links).unwrap();
}

fn chown_calls() -> Vec<libc::c_long> {
    let mut nrs = vec![libc::SYS_fchownat];
    #[cfg(target_arch = "x86_64")]
    nrs.push(libc::SYS_fchown);
    nrs
}

fn chmod_calls() -> Vec<libc::c_long> {
    let mut nrs = vec![libc::SYS_fchmodat];
    #[cfg(target_arch = "x86_64")]
    nrs.push(libc::SYS_fchmod);
    nrs
}

/// Runs `f` on a thread of its own under `rules`, so no other test is affected.
fn filtered<T: Send + 'static>(
    rules: Vec<(libc::c_long, i32)>,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        super::filter_in_this_thread(&rules);
        f()
    })
    .join()
    .unwrap()
}

fn without_chown<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    filtered(
        chown_calls()
            .into_iter()
            .map(|nr| (nr, libc::EPERM))
            .collect(),
        f,
    )
}

#[test]
fn an_owner_the_new_binary_cannot_keep_refuses_the_install_and_names_the_way_out() {
    let (dir, binary, new) = old_and_new();
    let (b, n) = (binary.clone(), new.clone());
    let e = without_chown(move || {
        RenameSwap
            .install_with(&b, &n, &InstallOptions::new())
            .unwrap_err()
    });
    match &e {
        Error::Swap { path, problem } => {
            assert_eq!(path, &binary);
            assert!(problem.contains("owner 0:0"), "{problem}");
            assert!(problem.contains("--allow-metadata-loss"), "{problem}");
        }
        other => panic!("expected a refused swap, got {other:?}"),
    }
    assert_eq!(fs::read(&binary).unwrap(), b"old");
    assert!(!backup_path_for(&binary).exists());
    let mut left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    left.sort();
    assert_eq!(
        left,
        ["nginx", "nginx-new"],
        "no staged file is left behind"
    );
}

#[test]
fn with_metadata_loss_allowed_the_install_goes_on_and_names_what_was_lost() {
    let (dir, binary, new) = old_and_new();
    // At the link limit the backup is a copy, which loses the owner too.
    let links = dir.path().join("links");
    fs::create_dir(&links).unwrap();
    for n in 0u32.. {
        match fs::hard_link(&binary, links.join(n.to_string())) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EMLINK) => break,
            Err(e) => panic!("link {n}: {e}"),
        }
    }
    let (b, n) = (binary.clone(), new.clone());
    let installed = without_chown(move || {
        let options = InstallOptions::new().allow_metadata_loss(true);
        let installed = RenameSwap.install_with(&b, &n, &options).unwrap();
        let lost = installed.lost_metadata.clone();
        installed.finish().unwrap();
        lost
    });
    assert!(
        installed.iter().any(|l| l.starts_with("owner 0:0")),
        "{installed:?}"
    );
    assert!(
        installed.iter().any(|l| l.starts_with("backup: owner 0:0")),
        "{installed:?}"
    );
    assert_eq!(fs::read(&binary).unwrap(), b"new");
    assert_eq!(fs::read(backup_path_for(&binary)).unwrap(), b"old");
    fs::remove_dir_all(&links).unwrap();
}

#[test]
fn a_set_user_id_bit_the_kernel_drops_refuses_the_install() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("nginx");
    let new = dir.path().join("nginx-new");
    write_exe(&binary, b"old");
    fs::set_permissions(&binary, fs::Permissions::from_mode(0o4755)).unwrap();
    write_exe(&new, b"new");
    let (b, n) = (binary.clone(), new.clone());
    // chmod "succeeds" and changes nothing: only reading the mode back shows the loss.
    let e = filtered(
        chmod_calls().into_iter().map(|nr| (nr, 0)).collect(),
        move || {
            RenameSwap
                .install_with(&b, &n, &InstallOptions::new())
                .unwrap_err()
        },
    );
    assert!(
        e.to_string()
            .contains("set-user-id bit (cleared by the kernel)"),
        "{e}"
    );
    assert_eq!(fs::read(&binary).unwrap(), b"old");
    assert_eq!(fs::metadata(&binary).unwrap().mode() & 0o7777, 0o4755);
}

#[test]
fn a_file_capability_is_kept_by_the_new_binary() {
    let (_dir, binary, new) = old_and_new();
    // cap_net_bind_service=ep, as `setcap` writes it (VFS_CAP_REVISION_2).
    let mut cap = (0x0200_0000u32 | 1).to_le_bytes().to_vec();
    for word in [1u32 << 10, 0, 0, 0] {
        cap.extend(word.to_le_bytes());
    }
    set_xattr(&binary, "security.capability", &cap);

    install_losing_nothing(&binary, &new);
    assert_eq!(fs::read(&binary).unwrap(), b"new");
    assert_eq!(get_xattr(&binary, "security.capability").unwrap(), cap);
}

#[test]
fn a_file_identity_carries_the_files_times_in_nanoseconds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx");
    write_exe(&path, b"old");
    let when = std::time::UNIX_EPOCH + std::time::Duration::new(1_700_000_000, 123_456_789);
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(when)
        .unwrap();
    let id = FileIdentity::of(&path).unwrap();
    assert_eq!(id.mtime_ns, Some(1_700_000_000_123_456_789));
    let m = fs::symlink_metadata(&path).unwrap();
    // The status-change time as stat(1) shows it (%Z seconds, nanoseconds in %z).
    let ctime = m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128;
    assert_eq!(id.ctime_ns.map(i128::from), Some(ctime));
}

#[test]
fn a_file_whose_modification_time_changed_is_not_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx");
    write_exe(&path, b"old");
    let before = FileIdentity::of(&path).unwrap();
    let earlier = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(earlier)
        .unwrap();
    let after = FileIdentity::of(&path).unwrap();
    assert_eq!(
        (before.dev, before.ino, before.size),
        (after.dev, after.ino, after.size)
    );
    assert!(!before.same_as(&after));
}

#[test]
fn a_file_identity_matches_its_file_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx");
    let other = dir.path().join("other");
    write_exe(&path, b"old");
    write_exe(&other, b"old");
    let id = FileIdentity::of(&path).unwrap();
    assert!(id.matches(&path).unwrap());
    assert!(!id.matches(&other).unwrap());
    assert!(
        !id.matches(&dir.path().join("gone")).unwrap(),
        "nothing there"
    );
    // A path through a regular file cannot be inspected: an error, not "nothing there".
    let e = id.matches(&path.join("x")).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTDIR));
}

#[test]
fn identities_are_the_same_only_when_every_known_part_is() {
    let a = FileIdentity {
        dev: 1,
        ino: 2,
        size: 3,
        mtime_ns: Some(10),
        ctime_ns: Some(20),
    };
    assert!(a.same_as(&a));
    // Another inode with the same times, the same inode with another time: other files.
    assert!(!a.same_as(&FileIdentity { ino: 9, ..a }));
    assert!(!a.same_as(&FileIdentity {
        mtime_ns: Some(11),
        ..a
    }));
    assert!(!a.same_as(&FileIdentity {
        ctime_ns: Some(21),
        ..a
    }));
    // A record of an earlier version knows no times: device, inode and size decide.
    let legacy = FileIdentity {
        mtime_ns: None,
        ctime_ns: None,
        ..a
    };
    assert!(legacy.same_as(&a) && a.same_as(&legacy));
}

#[test]
fn a_record_of_an_earlier_version_finds_its_install_by_size() {
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("nginx");
    write_exe(&binary, b"new");
    // Earlier versions recorded the installed file by digest and size only.
    let text = |sha: &str| {
        format!(
            "kind=rename\nbinary={}\nbackup={}\nnew_sha256={sha}\nnew_size=3\n",
            binary.display(),
            backup_path_for(&binary).display()
        )
    };
    let rec = SwapRecord::from_text(&text("ab12")).unwrap();
    assert!(
        rec.installed_matches().unwrap(),
        "a file of the recorded size"
    );
    write_exe(&binary, b"other");
    assert!(
        !rec.installed_matches().unwrap(),
        "another size: not the install"
    );
    // An empty digest said nothing was installed.
    write_exe(&binary, b"new");
    let rec = SwapRecord::from_text(&text("")).unwrap();
    assert!(!rec.installed_matches().unwrap());
}

/// Installs "new" over an installed binary carrying `user.origin`, with `call` answering
/// `errno` (seccomp): what the install says, and whether the attribute was kept.
fn install_when(
    call: libc::c_long,
    errno: i32,
) -> (Result<Vec<String>, String>, PathBuf, tempfile::TempDir) {
    let (dir, binary, new) = old_and_new();
    set_xattr(&binary, "user.origin", b"package");
    let b = binary.clone();
    let result = filtered(vec![(call, errno)], move || {
        match RenameSwap.install_with(&b, &new, &InstallOptions::new()) {
            Ok(installed) => {
                let lost = installed.lost_metadata.clone();
                installed.finish().map(|_| lost).map_err(|e| e.to_string())
            }
            Err(e) => Err(e.to_string()),
        }
    });
    (result, binary, dir)
}

/// When `call` fails with `fine` the install goes on and loses nothing; with EIO it is
/// refused naming the binary, which keeps the old content.
fn reading_metadata_goes_on_when_and_refuses_otherwise(call: libc::c_long, fine: i32) {
    let (ok, binary, _dir) = install_when(call, fine);
    assert_eq!(ok, Ok(Vec::new()));
    assert_eq!(fs::read(&binary).unwrap(), b"new");
    let (err, binary, _dir2) = install_when(call, libc::EIO);
    let err = err.unwrap_err();
    assert!(
        err.contains("read the metadata of") && err.contains(&binary.display().to_string()),
        "{err}"
    );
    assert_eq!(fs::read(&binary).unwrap(), b"old");
}

#[test]
fn a_file_system_without_attributes_has_none_to_keep_and_other_listing_errors_refuse() {
    reading_metadata_goes_on_when_and_refuses_otherwise(libc::SYS_flistxattr, libc::EOPNOTSUPP);
}

#[test]
fn an_attribute_gone_since_the_listing_is_skipped_and_other_read_errors_refuse() {
    reading_metadata_goes_on_when_and_refuses_otherwise(libc::SYS_fgetxattr, libc::ENODATA);
}

#[test]
fn an_acl_that_cannot_be_removed_for_lack_of_acls_is_fine_and_other_errors_refuse() {
    let (ok, binary, _dir) = install_when(libc::SYS_fremovexattr, libc::EOPNOTSUPP);
    assert_eq!(ok, Ok(Vec::new()));
    assert_eq!(get_xattr(&binary, "user.origin").unwrap(), b"package");
    let (err, binary, _dir2) = install_when(libc::SYS_fremovexattr, libc::EIO);
    let err = err.unwrap_err();
    assert!(
        err.contains("no access ACL") && err.contains("--allow-metadata-loss"),
        "{err}"
    );
    assert_eq!(fs::read(&binary).unwrap(), b"old");
}

#[test]
fn a_file_system_that_makes_no_links_gets_a_renamed_backup_copy() {
    let mut calls = vec![libc::SYS_linkat];
    #[cfg(target_arch = "x86_64")]
    calls.push(libc::SYS_link);
    let (_dir, binary, new) = old_and_new();
    let b = binary.clone();
    let result = filtered(
        calls.into_iter().map(|nr| (nr, libc::EPERM)).collect(),
        move || {
            RenameSwap
                .install_with(&b, &new, &InstallOptions::new())
                .and_then(|i| i.finish())
                .map_err(|e| e.to_string())
        },
    );
    result.unwrap();
    assert_eq!(fs::read(&binary).unwrap(), b"new");
    assert_eq!(fs::read(backup_path_for(&binary)).unwrap(), b"old");
}

#[test]
fn a_backup_name_taken_when_the_copy_is_linked_is_an_error_naming_it_not_overwritten() {
    let (_dir, binary, new) = old_and_new();
    let b = binary.clone();
    // The copy swap links its finished copy to the backup name; EEXIST stands for a
    // backup that appeared since the preflight.
    let e = filtered(vec![(libc::SYS_linkat, libc::EEXIST)], move || {
        crate::swap::CopySwap
            .install_with(&b, &new, &InstallOptions::new())
            .unwrap_err()
    });
    let backup = backup_path_for(&binary);
    match &e {
        Error::SwapIo { action, path, .. } => {
            assert_eq!(*action, "create backup");
            assert_eq!(path, &backup);
        }
        other => panic!("expected an error creating the backup, got {other:?}"),
    }
    assert_eq!(fs::read(&binary).unwrap(), b"old");
}
