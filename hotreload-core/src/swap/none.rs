//! No swap: the new binary is already at the binary path (a package manager put
//! it there). Nothing is installed, so nothing can be restored: a rollback then
//! brings back the old master's *process*, not its file.

use std::path::Path;

use super::{BinarySwap, FileIdentity, SwapRecord, Undo};
use crate::error::Error;
use crate::fsutil::absolute;

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
        let meta = std::fs::metadata(&binary).map_err(|e| Error::SwapIo {
            action: "inspect",
            path: binary.clone(),
            source: e,
        })?;
        Ok(SwapRecord::new("none", binary, Undo::Nothing)
            .installed(FileIdentity::from_metadata(&meta)))
    }
}
