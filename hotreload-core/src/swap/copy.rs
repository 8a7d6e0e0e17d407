//! The classic recipe (`cp nginx nginx.old; cp new nginx`) made safe: the backup
//! is a full, fsynced copy, and the new content still goes in through a staged
//! file and `rename(2)`, never by writing into the binary in place (which would
//! leave a half-written executable if interrupted, and fails with ETXTBSY while
//! it runs anyway).

use std::path::Path;

use super::file::install_file_swap;
use super::{BinarySwap, SwapKind, SwapRecord};
use crate::error::Error;

/// Copy-based backup, atomic rename of the new binary.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopySwap;

impl BinarySwap for CopySwap {
    fn kind(&self) -> SwapKind {
        SwapKind::Copy
    }

    fn install(&self, binary: &Path, new: &Path) -> Result<SwapRecord, Error> {
        install_file_swap(SwapKind::Copy, binary, new, true)
    }
}
