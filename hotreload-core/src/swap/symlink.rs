//! Symlink flip, for `releases/<version>/` + `current` layouts: the binary path is
//! a symlink (`current -> releases/v1/nginx`); a new symlink to the new binary is
//! made beside it and renamed over it, so the path always resolves to a complete
//! release. Restore points it back; commit leaves the old release alone (removing
//! releases is the deployment tool's business).

use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::Path;

use super::{BinarySwap, SwapRecord, Undo};
use crate::error::Error;
use crate::fsutil::{
    absolute, file_sha256, remove_stale_temps, sync_parent, temp_sibling, TempGuard,
};

/// Atomic symlink flip.
#[derive(Debug, Clone, Copy, Default)]
pub struct SymlinkSwap;

/// Points the symlink `link` at `target` atomically (new link beside it, renamed over).
pub(super) fn flip(link: &Path, target: &Path) -> Result<(), Error> {
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
    sync_parent(link, "sync directory of")
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

    fn install(&self, binary: &Path, new: &Path) -> Result<SwapRecord, Error> {
        let binary = absolute(binary)?;
        let refuse = |problem: &str| Error::Swap {
            path: binary.clone(),
            problem: problem.to_string(),
        };
        let meta = match fs::symlink_metadata(&binary) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(refuse(
                    "it does not exist: name the symlink the master's argv[0] uses",
                ))
            }
            Err(e) => {
                return Err(Error::SwapIo {
                    action: "inspect",
                    path: binary.clone(),
                    source: e,
                })
            }
        };
        if !meta.file_type().is_symlink() {
            return Err(refuse(
                "it is not a symbolic link: use the rename swap for a plain file",
            ));
        }
        let previous = fs::read_link(&binary).map_err(|e| Error::SwapIo {
            action: "read symlink",
            path: binary.clone(),
            source: e,
        })?;
        // An absolute target: `new` was given relative to our cwd, not to the link's directory.
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
        let (new_sha256, new_size) = file_sha256(&target)?;
        remove_stale_temps(&binary);
        flip(&binary, &target)?;
        Ok(
            SwapRecord::new("symlink", binary, Undo::RepointSymlink { previous })
                .installed(new_sha256, new_size),
        )
    }
}
