//! What the rename and copy swaps share: checks before anything changes, staging the new
//! content (with the installed file's metadata) beside the binary, the backup, the one
//! rename, and restoring the backup.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use super::metadata::FileMetadata;
use super::{
    backup_path_for, Durability, FileIdentity, InstallOptions, Installed, SwapKind, SwapRecord,
    Undo,
};
use crate::error::Error;
use crate::fsutil::{
    absolute, parent_dir, remove_stale_temps, sync_parent, temp_sibling, TempGuard, EXEC_WRITE_LOCK,
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
            if identity.is_some_and(|made| !made.same_as(&FileIdentity::from_metadata(&found))) =>
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

/// A staged copy: its temp name (removed on drop unless kept), a read-only descriptor
/// (to learn its identity after the rename, which changes its ctime), and the metadata
/// of the installed file that it could not take.
struct Staged {
    guard: TempGuard,
    reader: File,
    lost: Vec<String>,
}

/// Copies `src` to a new temporary file beside `target` and gives it `like`'s owner,
/// mode and extended attributes, then fsyncs it. The copy is a reflink where the file
/// system offers one, else `copy_file_range(2)` (through `io::copy`, which falls back to
/// read/write where the kernel cannot copy between the two files).
fn stage_copy(src: &Path, target: &Path, like: &FileMetadata, what: &str) -> Result<Staged, Error> {
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
    if crate::sys::ficlone(out.as_fd(), input.as_fd()).is_err() {
        io::copy(&mut input, &mut out).map_err(io_err("copy into staged copy", &staged))?;
    }
    let lost = like
        .apply(&out)
        .map_err(io_err("set metadata of staged copy", &staged))?;
    out.sync_all()
        .map_err(io_err("fsync staged copy", &staged))?;
    let reader = File::open(&staged).map_err(io_err("open staged copy", &staged))?;
    Ok(Staged {
        guard,
        reader,
        lost,
    })
}

/// The refusal when the staged file could not take all of the installed file's metadata.
fn metadata_refusal(binary: &Path, lost: &[String]) -> Error {
    Error::Swap {
        path: binary.to_path_buf(),
        problem: format!(
            "the new executable cannot keep the installed file's metadata: {}; nothing was \
             changed (to install without it, allow metadata loss: `--allow-metadata-loss`)",
            lost.join(", ")
        ),
    }
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

/// [`preflight_file_swap`] for the pipeline's preflight, with what it found.
pub(super) fn check_file_swap(binary: &Path, new: &Path) -> Result<String, Error> {
    let binary = absolute(binary)?;
    preflight_file_swap(&binary, new, &backup_path_for(&binary))?;
    Ok(format!(
        "`{}` is a regular file, to be backed up as `{}`",
        binary.display(),
        backup_path_for(&binary).display()
    ))
}

/// The [`BinarySwap`](super::BinarySwap) impl of `Rename` and `Copy`, which differ only
/// in their name, kind and how the backup is made (`backup_by_copy`).
macro_rules! file_swap_impl {
    ($swap:ty, $name:literal, $kind:expr, backup_by_copy: $by_copy:expr) => {
        // A block of its own, so the `use`s do not reach the module that invokes this.
        const _: () = {
            use std::path::Path;

            use $crate::error::Error;
            use $crate::swap::file::{check_file_swap, install_file_swap};
            use $crate::swap::{
                backup_path_for, install_durably, BinarySwap, InstallOptions, Installed,
                SwapRecord, Undo,
            };

            impl BinarySwap for $swap {
                fn name(&self) -> &str {
                    $name
                }

                fn predict(&self, binary: &Path) -> Undo {
                    Undo::RestoreBackup {
                        backup: backup_path_for(binary),
                        identity: None,
                    }
                }

                fn preflight(&self, binary: &Path, new: &Path) -> Result<String, Error> {
                    check_file_swap(binary, new)
                }

                fn install(&self, binary: &Path, new: &Path) -> Result<SwapRecord, Error> {
                    install_durably(self, binary, new)
                }

                fn install_with(
                    &self,
                    binary: &Path,
                    new: &Path,
                    options: &InstallOptions,
                ) -> Result<Installed, Error> {
                    install_file_swap($kind, binary, new, $by_copy, options)
                }
            }
        };
    };
}
pub(super) use file_swap_impl;

/// The install of `Rename` and `Copy`: they differ only in how the backup is made.
pub(super) fn install_file_swap(
    kind: SwapKind,
    binary: &Path,
    new: &Path,
    backup_by_copy: bool,
    options: &InstallOptions,
) -> Result<Installed, Error> {
    let binary = absolute(binary)?;
    let backup = backup_path_for(&binary);
    preflight_file_swap(&binary, new, &backup)?;
    let metadata = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&binary)
        .and_then(|f| FileMetadata::read(&f))
        .map_err(|e| Error::SwapIo {
            action: "read the metadata of",
            path: binary.clone(),
            source: e,
        })?;
    remove_stale_temps(&binary);

    // 1. New content staged beside the binary, with the installed file's metadata,
    //    complete and durable: the rename below may only ever expose a whole file.
    let staged = stage_copy(new, &binary, &metadata, "staged")?;
    let mut lost = staged.lost.clone();
    if !lost.is_empty() && !options.allow_metadata_loss {
        return Err(metadata_refusal(&binary, &lost));
    }

    // 2. Backup of the old binary. link(2) never overwrites, so a backup that
    //    appeared meanwhile is not clobbered. A hard link is the old file itself: it
    //    keeps its own owner, mode and attributes for the restore.
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
        let copy = stage_copy(&binary, &binary, &metadata, "backup")?;
        if !copy.lost.is_empty() && !options.allow_metadata_loss {
            let lost: Vec<String> = copy.lost.iter().map(|l| format!("backup: {l}")).collect();
            return Err(metadata_refusal(&binary, &lost));
        }
        lost.extend(copy.lost.iter().map(|l| format!("backup: {l}")));
        let copy_path = copy.guard.0.clone().unwrap_or_default();
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
                copy.guard.keep();
            }
        }
    }
    // From here on, a failure must not leave a backup that blocks the next try.
    let backup_guard = TempGuard(Some(backup.clone()));
    // The backup's name durable before the rename: a crash right after the rename must
    // not lose the only other copy of the old executable (cheap: one small directory
    // change, often already committed by the staged file's fsync).
    sync_parent(&binary, "sync directory of")?;

    // 3. The switch: one rename, old complete file → new complete file.
    let staged_path = staged.guard.0.clone().unwrap_or_default();
    fs::rename(&staged_path, &binary).map_err(|e| Error::SwapIo {
        action: "rename staged binary over",
        path: binary.clone(),
        source: e,
    })?;
    staged.guard.keep();
    backup_guard.keep();
    // Taken after the rename, which changes the ctime of both files.
    let installed = staged
        .reader
        .metadata()
        .map(|m| FileIdentity::from_metadata(&m))
        .ok();
    let identity = FileIdentity::of(&backup).ok();
    let mut record = SwapRecord::new(
        kind.as_str(),
        binary.clone(),
        Undo::RestoreBackup { backup, identity },
    );
    record.installed = installed;
    // 4. The rename made durable by a directory fsync that runs while the pipeline goes
    //    on (journal, spawn); it completes before the commit.
    Ok(Installed {
        record,
        durability: Durability::sync_directory(parent_dir(&binary)),
        lost_metadata: lost,
    })
}
