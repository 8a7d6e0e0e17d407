//! Symlink flip, for `releases/<version>/` + `current` layouts: the binary path is
//! a symlink (`current -> releases/v1/nginx`); a new symlink to the new binary is
//! made beside it and renamed over it, so the path always resolves to a complete
//! release. A relative link stays relative (`current -> releases/v2/nginx`), so the
//! tree can still be moved or mounted elsewhere. Restore points it back; commit leaves
//! the old release alone (removing releases is the deployment tool's business).

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Component, Path, PathBuf};

use super::{
    install_durably, BinarySwap, Durability, FileIdentity, InstallOptions, Installed, SwapRecord,
    Undo,
};
use crate::error::Error;
use crate::fsutil::{
    absolute, parent_dir, remove_stale_temps, sync_parent, temp_sibling, TempGuard,
};

/// Atomic symlink flip.
#[derive(Debug, Clone, Copy, Default)]
pub struct SymlinkSwap;

/// Points the symlink `link` at `target` atomically (new link beside it, renamed over),
/// durably.
pub(super) fn flip(link: &Path, target: &Path) -> Result<(), Error> {
    flip_unsynced(link, target)?;
    sync_parent(link, "sync directory of")
}

/// [`flip`] without the directory fsync (the caller makes it durable).
fn flip_unsynced(link: &Path, target: &Path) -> Result<(), Error> {
    let tmp = temp_sibling(link, "link");
    symlink(target, &tmp).map_err(|e| Error::SwapIo {
        action: "create symlink",
        path: tmp.clone(),
        source: e,
    })?;
    let guard = TempGuard(Some(tmp.clone()));
    fs::rename(&tmp, link).map_err(|e| Error::SwapIo {
        action: "rename new symlink over",
        path: link.to_path_buf(),
        source: e,
    })?;
    guard.keep();
    Ok(())
}

/// The checks before anything changes: `binary` is a symlink, `new` a regular file.
/// Returns the link's current target and the new one's absolute path and metadata.
fn check(binary: &Path, new: &Path) -> Result<(PathBuf, PathBuf, fs::Metadata), Error> {
    let refuse = |problem: &str| Error::Swap {
        path: binary.to_path_buf(),
        problem: problem.to_string(),
    };
    let meta = match fs::symlink_metadata(binary) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(refuse(
                "it does not exist: name the symlink the master's argv[0] uses",
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
    if !meta.file_type().is_symlink() {
        return Err(refuse(
            "it is not a symbolic link: use the rename swap for a plain file",
        ));
    }
    let previous = fs::read_link(binary).map_err(|e| Error::SwapIo {
        action: "read symlink",
        path: binary.to_path_buf(),
        source: e,
    })?;
    // `new` was given relative to our cwd, not to the link's directory.
    let target = absolute(new)?;
    let new_meta = fs::metadata(&target).map_err(|e| Error::SwapIo {
        action: "inspect new binary",
        path: target.clone(),
        source: e,
    })?;
    if !new_meta.is_file() {
        return Err(Error::Swap {
            path: target,
            problem: "the new binary is not a regular file".into(),
        });
    }
    Ok((previous, target, new_meta))
}

/// `target` relative to the directory `from`, when both resolve without surprises: the
/// result, read from `from`, names the same file as `target`.
fn relative_target(from: &Path, target: &Path) -> Option<PathBuf> {
    let from = fs::canonicalize(from).ok()?;
    let target_dir = fs::canonicalize(target.parent()?).ok()?;
    let target = target_dir.join(target.file_name()?);
    let (f, t): (Vec<Component>, Vec<Component>) =
        (from.components().collect(), target.components().collect());
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..f.len() {
        rel.push("..");
    }
    for c in &t[common..] {
        rel.push(c.as_os_str());
    }
    // `..` through a symlinked directory would go elsewhere: check where it lands.
    let lands = fs::canonicalize(from.join(&rel)).ok()?;
    (lands == fs::canonicalize(&target).ok()?).then_some(rel)
}

impl BinarySwap for SymlinkSwap {
    fn name(&self) -> &str {
        "symlink"
    }

    fn predict(&self, binary: &Path) -> Undo {
        match fs::read_link(binary) {
            Ok(previous) => Undo::RepointSymlink { previous },
            Err(_) => Undo::Nothing,
        }
    }

    fn preflight(&self, binary: &Path, new: &Path) -> Result<String, Error> {
        let (previous, _, _) = check(binary, new)?;
        Ok(format!(
            "`{}` is a symbolic link (to `{}`)",
            binary.display(),
            previous.display()
        ))
    }

    fn install(&self, binary: &Path, new: &Path) -> Result<SwapRecord, Error> {
        install_durably(self, binary, new)
    }

    fn install_with(
        &self,
        binary: &Path,
        new: &Path,
        _options: &InstallOptions,
    ) -> Result<Installed, Error> {
        let binary = absolute(binary)?;
        let (previous, target, new_meta) = check(&binary, new)?;
        let link_dir = parent_dir(&binary);
        let target = if previous.is_relative() {
            relative_target(&link_dir, &target).unwrap_or(target)
        } else {
            target
        };
        remove_stale_temps(&binary);
        flip_unsynced(&binary, &target)?;
        let record = SwapRecord::new("symlink", binary, Undo::RepointSymlink { previous })
            .installed(FileIdentity::from_metadata(&new_meta));
        Ok(Installed {
            record,
            durability: Durability::sync_directory(link_dir),
            lost_metadata: Vec::new(),
        })
    }
}
