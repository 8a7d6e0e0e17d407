//! Swap checks a user relies on without seeing them: the default preflight's report,
//! whether a deferred directory fsync is still owed, an installed binary that keeps no
//! ACL it never had, and a backup made by copy when the file system refuses one more link.
//! Written for survivors of the cargo-mutants run of `swap/` (MUTANTS.md).

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::swap::{backup_path_for, BinarySwap, Durability, InstallOptions, RenameSwap};
use crate::{Error, SwapRecord};

fn write_exe(path: &Path, content: &[u8]) {
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

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
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("nginx");
    let new = dir.path().join("nginx-new");
    write_exe(&binary, b"old");
    write_exe(&new, b"new");
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

    let installed = RenameSwap
        .install_with(&binary, &new, &InstallOptions::new())
        .unwrap();
    assert!(
        installed.lost_metadata.is_empty(),
        "{:?}",
        installed.lost_metadata
    );
    installed.finish().unwrap();

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
    let dir = tempfile::tempdir().unwrap();
    let binary = dir.path().join("nginx");
    let new = dir.path().join("nginx-new");
    write_exe(&binary, b"old");
    write_exe(&new, b"new");
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
