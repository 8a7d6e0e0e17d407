//! The default swap: stage the new binary beside the old, hard-link the old one to
//! `<binary>.hotreload-backup`, and `rename(2)` the staged file over the binary.
//!
//! The running master keeps its own (old) inode whatever happens to the path, so
//! the only thing that must be atomic is the path's content: one rename.

use super::file::file_swap_impl;
use super::SwapKind;

/// Atomic rename with a hard-linked backup (a copied one where links are unsupported).
#[derive(Debug, Clone, Copy, Default)]
pub struct RenameSwap;

file_swap_impl!(RenameSwap, "rename", SwapKind::Rename, backup_by_copy: false);
