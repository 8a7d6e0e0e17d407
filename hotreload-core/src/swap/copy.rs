//! The classic recipe (`cp nginx nginx.old; cp new nginx`) made safe: the backup
//! is a full, fsynced copy, and the new content still goes in through a staged
//! file and `rename(2)`, never by writing into the binary in place (which would
//! leave a half-written executable if interrupted, and fails with ETXTBSY while
//! it runs anyway).

use super::file::file_swap_impl;
use super::SwapKind;

/// Copy-based backup, atomic rename of the new binary.
#[derive(Debug, Clone, Copy, Default)]
pub struct CopySwap;

file_swap_impl!(CopySwap, "copy", SwapKind::Copy, backup_by_copy: true);
