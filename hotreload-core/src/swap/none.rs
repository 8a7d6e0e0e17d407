//! No swap: the new binary is already at the binary path (a package manager put
//! it there). Nothing is installed, so nothing can be restored: a rollback then
//! brings back the old master's *process*, not its file.

use std::path::Path;

use super::{BinarySwap, SwapRecord, Undo};
use crate::error::Error;
use crate::fsutil::{absolute, file_sha256};

/// Installs nothing; restore and commit do nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoSwap;

impl BinarySwap for NoSwap {
    fn name(&self) -> &str {
        "none"
    }

    /// The file in place is the new build: nothing to install.
    fn installs(&self) -> bool {
        false
    }

    /// Records what is at `binary` (`new` is not used: it is already in place).
    fn install(&self, binary: &Path, _new: &Path) -> Result<SwapRecord, Error> {
        let binary = absolute(binary)?;
        let (new_sha256, new_size) = file_sha256(&binary)?;
        Ok(SwapRecord::new("none", binary, Undo::Nothing).installed(new_sha256, new_size))
    }
}
