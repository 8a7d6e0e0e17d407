//! The default swap: stage the new binary beside the old, hard-link the old one to
//! `<binary>.hotreload-backup`, and `rename(2)` the staged file over the binary.
//!
//! The running master keeps its own (old) inode whatever happens to the path, so
//! the only thing that must be atomic is the path's content: one rename.

use std::path::Path;

use super::file::install_file_swap;
use super::{BinarySwap, SwapKind, SwapRecord};
use crate::error::Error;

/// Atomic rename with a hard-linked backup (a copied one where links are unsupported).
#[derive(Debug, Clone, Copy, Default)]
pub struct RenameSwap;

impl BinarySwap for RenameSwap {
    fn kind(&self) -> SwapKind {
        SwapKind::Rename
    }

    fn install(&self, binary: &Path, new: &Path) -> Result<SwapRecord, Error> {
        install_file_swap(SwapKind::Rename, binary, new, false)
    }
}
