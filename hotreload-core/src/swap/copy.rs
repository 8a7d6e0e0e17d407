//! The classic recipe (`cp nginx nginx.old; cp new nginx`) made safe: the backup
//! is a full, fsynced copy, and the new content still goes in through a staged
//! file and `rename(2)`, never by writing into the binary in place (which would
//! leave a half-written executable if interrupted, and fails with ETXTBSY while
//! it runs anyway).

use std::path::Path;

use super::file::{check_file_swap, install_file_swap};
use super::{backup_path_for, BinarySwap, InstallOptions, Installed, SwapKind, SwapRecord, Undo};
use crate::error::Error;

/// Copy-based backup, atomic rename of the new binary.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopySwap;

impl BinarySwap for CopySwap {
    fn name(&self) -> &str {
        "copy"
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
        install_file_swap(SwapKind::Copy, binary, new, true, options)
    }
}
