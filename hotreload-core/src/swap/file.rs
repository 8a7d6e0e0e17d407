//! What the rename and copy swaps share: checks before anything changes, staging the new
//! content beside the binary, the backup, the one rename, and restoring the backup.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::record::same_identity;
use super::{backup_path_for, FileIdentity, SwapKind, SwapRecord, Undo};
use crate::error::Error;
use crate::fsutil::{
    absolute, remove_stale_temps, sync_parent, temp_sibling, Sha256, TempGuard, EXEC_WRITE_LOCK,
};

// ---- shared by the strategies ----

/// Restores a backup-based install: rename the backup over the binary.
pub(super) fn restore_backup(rec: &SwapRecord) -> Result<(), Error> {
    let Undo::RestoreBackup { backup, identity } = &rec.undo else {
        return Err(Error::Swap {
            path: rec.binary.clone(),
            problem: "the swap record names no backup, so there is nothing to restore".into(),
        });
    };
    match fs::symlink_metadata(backup) {
        Ok(found)
            if identity.is_some_and(|made| {
                !same_identity(&FileIdentity::from_metadata(&found), &made)
            }) =>
        {
            Err(Error::Swap {
                path: backup.clone(),
                problem: format!(
                    "it is not the backup this swap made (another file has its name): not \
                     putting it at `{}`",
                    rec.binary.display()
                ),
            })
        }
        Ok(backup_meta) if same_file(&backup_meta, &rec.binary) => {
            // The install was interrupted between linking the backup and renaming the
            // staged file over the binary: both names are links to the old file. rename(2)
            // between two links of one inode does nothing and succeeds, so it would leave
            // the backup behind; the binary already is the old file, so drop the extra name.
            fs::remove_file(backup).map_err(|e| Error::SwapIo {
                action: "remove backup (it is the binary itself)",
                path: backup.clone(),
                source: e,
            })?;
            sync_parent(&rec.binary, "sync directory of")
        }
        Ok(_) => {
            fs::rename(backup, &rec.binary).map_err(|e| Error::SwapIo {
                action: "rename backup back over",
                path: rec.binary.clone(),
                source: e,
            })?;
            sync_parent(&rec.binary, "sync directory of")
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Already restored (the backup became the binary), unless the binary is
            // still the new one: then the old one is lost and we must say so.
            if rec.installed_matches()? {
                Err(Error::Swap {
                    path: backup.clone(),
                    problem: format!(
                        "the backup is missing, so the previous binary cannot be put back at `{}` \
                         (it still holds the new one); reinstall the previous version by hand",
                        rec.binary.display()
                    ),
                })
            } else {
                Ok(())
            }
        }
        Err(e) => Err(Error::SwapIo {
            action: "inspect backup",
            path: backup.clone(),
            source: e,
        }),
    }
}

/// Whether `meta` (of a backup) and the file at `path` are one and the same inode.
fn same_file(meta: &fs::Metadata, path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
}

/// Copies `src` to a new temporary file beside `target`, with `like`'s mode and
/// owner, fsynced. Returns the temp path (removed again on error), SHA-256 and size.
fn stage_copy(
    src: &Path,
    target: &Path,
    like: &fs::Metadata,
    what: &str,
) -> Result<(TempGuard, String, u64), Error> {
    // Declared before `out`, so it is released after `out` is closed.
    let _no_spawns = EXEC_WRITE_LOCK.write().unwrap_or_else(|e| e.into_inner());
    let staged = temp_sibling(target, what);
    let io_err = |action, path: &Path| {
        let path = path.to_path_buf();
        move |e| Error::SwapIo {
            action,
            path,
            source: e,
        }
    };
    let mut input = File::open(src).map_err(io_err("open", src))?;
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&staged)
        .map_err(io_err("create staged copy", &staged))?;
    let guard = TempGuard(Some(staged.clone()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("read", src)(e)),
        };
        h.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(io_err("write staged copy", &staged))?;
        size += n as u64;
    }
    // Owner first: chown clears set-id bits, which the chmod then puts back.
    if let Err(e) = std::os::unix::fs::fchown(&out, Some(like.uid()), Some(like.gid())) {
        // Without privilege we can only keep our own ownership; that is fine for a
        // binary we are allowed to replace.
        if e.kind() != io::ErrorKind::PermissionDenied {
            return Err(io_err("set owner of staged copy", &staged)(e));
        }
    }
    out.set_permissions(Permissions::from_mode(like.mode() & 0o7777))
        .map_err(io_err("set mode of staged copy", &staged))?;
    out.sync_all()
        .map_err(io_err("fsync staged copy", &staged))?;
    Ok((guard, h.finish_hex(), size))
}

/// Checks shared by `Rename` and `Copy` before anything changes: the binary is a
/// regular file (not a symlink), `new` is a different regular file, no backup exists.
fn preflight_file_swap(
    binary: &Path,
    new: &Path,
    backup: &Path,
) -> Result<(fs::Metadata, fs::Metadata), Error> {
    let refuse = |problem: String| Error::Swap {
        path: binary.to_path_buf(),
        problem,
    };
    let old = match fs::symlink_metadata(binary) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(refuse(
                "it does not exist: name the executable the master runs".into(),
            ))
        }
        Err(e) => {
            return Err(Error::SwapIo {
                action: "inspect",
                path: binary.to_path_buf(),
                source: e,
            })
        }
    };
    if old.file_type().is_symlink() {
        return Err(refuse(
            "it is a symbolic link: use the symlink swap to point it at the new binary, or name \
             the file it points to"
                .into(),
        ));
    }
    if !old.is_file() {
        return Err(refuse("it is not a regular file".into()));
    }
    let new_meta = fs::metadata(new).map_err(|e| Error::SwapIo {
        action: "inspect new binary",
        path: new.to_path_buf(),
        source: e,
    })?;
    if !new_meta.is_file() {
        return Err(Error::Swap {
            path: new.to_path_buf(),
            problem: "the new binary is not a regular file".into(),
        });
    }
    if new_meta.dev() == old.dev() && new_meta.ino() == old.ino() {
        return Err(refuse(format!(
            "the new binary `{}` is the installed file itself: if it is already in place, use \
             the `none` swap",
            new.display()
        )));
    }
    if fs::symlink_metadata(backup).is_ok() {
        return Err(Error::Swap {
            path: backup.to_path_buf(),
            problem: format!(
                "a backup already exists: an earlier upgrade of `{}` was neither committed nor \
                 rolled back; roll it back (which restores this backup) or, if the installed \
                 binary is known good, remove the backup",
                binary.display()
            ),
        });
    }
    Ok((old, new_meta))
}

/// The install of `Rename` and `Copy`: they differ only in how the backup is made.
pub(super) fn install_file_swap(
    kind: SwapKind,
    binary: &Path,
    new: &Path,
    backup_by_copy: bool,
) -> Result<SwapRecord, Error> {
    let binary = absolute(binary)?;
    let backup = backup_path_for(&binary);
    let (old_meta, _) = preflight_file_swap(&binary, new, &backup)?;
    remove_stale_temps(&binary);

    // 1. New content staged beside the binary, complete and durable.
    let (staged, sha, size) = stage_copy(new, &binary, &old_meta, "staged")?;

    // 2. Backup of the old binary. link(2) never overwrites, so a backup that
    //    appeared meanwhile is not clobbered.
    let mut linked = false;
    if !backup_by_copy {
        match fs::hard_link(&binary, &backup) {
            Ok(()) => linked = true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::SwapIo {
                    action: "create backup",
                    path: backup,
                    source: e,
                })
            }
            // EPERM/EXDEV/ENOTSUP/EMLINK: the file system will not link; copy instead.
            Err(_) => {}
        }
    }
    if !linked {
        let (copy, _, _) = stage_copy(&binary, &binary, &old_meta, "backup")?;
        let copy_path = copy.0.clone().unwrap_or_default();
        // Linking the finished copy to the backup name is atomic and refuses to
        // overwrite; fall back to rename where links are unsupported.
        match fs::hard_link(&copy_path, &backup) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::SwapIo {
                    action: "create backup",
                    path: backup,
                    source: e,
                })
            }
            Err(_) => {
                fs::rename(&copy_path, &backup).map_err(|e| Error::SwapIo {
                    action: "create backup",
                    path: backup.clone(),
                    source: e,
                })?;
                copy.keep();
            }
        }
    }
    // From here on, a failure must not leave a backup that blocks the next try.
    let backup_guard = TempGuard(Some(backup.clone()));
    sync_parent(&binary, "sync directory of")?;

    // 3. The switch: one rename, old complete file → new complete file.
    let staged_path = staged.0.clone().unwrap_or_default();
    fs::rename(&staged_path, &binary).map_err(|e| Error::SwapIo {
        action: "rename staged binary over",
        path: binary.clone(),
        source: e,
    })?;
    staged.keep();
    backup_guard.keep();
    sync_parent(&binary, "sync directory of")?;
    // The backup as it is now: a restore or commit refuses another file in its place.
    let identity = FileIdentity::of(&backup).ok();
    Ok(SwapRecord::new(
        kind.as_str(),
        binary,
        Undo::RestoreBackup { backup, identity },
    )
    .installed(sha, size))
}
