//! The default swap: stage the new binary beside the old, hard-link the old one to
//! `<binary>.hotreload-backup`, and `rename(2)` the staged file over the binary.
//!
//! The running master keeps its own (old) inode whatever happens to the path, so
//! the only thing that must be atomic is the path's content: one rename.

use std::path::Path;

use super::file::{check_file_swap, install_file_swap};
use super::{backup_path_for, BinarySwap, InstallOptions, Installed, SwapKind, SwapRecord, Undo};
use crate::error::Error;

/// Atomic rename with a hard-linked backup (a copied one where links are unsupported).
#[derive(Debug, Clone, Copy, Default)]
pub struct RenameSwap;

impl BinarySwap for RenameSwap {
    fn name(&self) -> &str {
        "rename"
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
        self.install_with(binary, new, &InstallOptions::default())?
            .finish()
    }

    fn install_with(
        &self,
        binary: &Path,
        new: &Path,
        options: &InstallOptions,
    ) -> Result<Installed, Error> {
        install_file_swap(SwapKind::Rename, binary, new, false, options)
    }
}
