//! Binary swap strategies: putting the new executable where the master's `argv[0]`
//! points, so that USR2 starts it, and putting the old one back on rollback.
//!
//! The rule they all keep (DESIGN.md §5): at every instant the binary path holds a
//! complete executable, old or new. New content is staged in the same directory,
//! fsynced, and moved in with `rename(2)` (atomic within a file system), then the
//! directory is fsynced so the rename survives a crash. The backup stays until
//! [`BinarySwap::commit`].
//!
//! Whatever `install` did is described by a [`SwapRecord`], plain data with a text
//! form, so that a different process (after a crash, or a later `hotreload
//! rollback`) can restore or commit it.

mod copy;
mod file;
mod none;
mod record;
mod rename;
mod symlink;

pub use copy::CopySwap;
pub use none::NoSwap;
pub use record::SwapRecord;
pub use rename::RenameSwap;
pub use symlink::SymlinkSwap;

use std::ffi::OsString;
use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::error::Error;
use crate::fsutil::sync_parent;
use file::restore_backup;

/// Suffix of the backup kept beside the binary until commit.
pub const BACKUP_SUFFIX: &str = ".hotreload-backup";

/// Which swap strategy to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SwapKind {
    /// Stage beside the binary, hard-link the old one to a backup, rename over (the default).
    #[default]
    Rename,
    /// Like `Rename`, but the backup is a full copy (for file systems without hard links,
    /// or when the old file must stay untouched by any later in-place write).
    Copy,
    /// The binary path is a symlink (`current -> releases/v1/nginx`): point it elsewhere.
    Symlink,
    /// Install nothing: the new binary is already in place (a package manager put it there).
    None,
}

impl SwapKind {
    /// The name used on the command line and in records: "rename", "copy", "symlink", "none".
    pub fn as_str(self) -> &'static str {
        match self {
            SwapKind::Rename => "rename",
            SwapKind::Copy => "copy",
            SwapKind::Symlink => "symlink",
            SwapKind::None => "none",
        }
    }
}

impl fmt::Display for SwapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SwapKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<SwapKind, Error> {
        match s.to_ascii_lowercase().as_str() {
            "rename" => Ok(SwapKind::Rename),
            "copy" => Ok(SwapKind::Copy),
            "symlink" => Ok(SwapKind::Symlink),
            "none" => Ok(SwapKind::None),
            _ => Err(Error::UnknownSwapKind {
                value: s.to_string(),
            }),
        }
    }
}

/// A way to put a new executable at the binary path, and to undo it.
///
/// `restore` and `commit` have default implementations for strategies that keep a
/// backup file (rename it back; delete it).
pub trait BinarySwap: Send + Sync {
    /// Which strategy this is.
    fn kind(&self) -> SwapKind;

    /// Puts `new` at `binary`, keeping what is needed to restore. Refuses (before
    /// changing anything) when the layout does not suit the strategy.
    fn install(&self, binary: &Path, new: &Path) -> Result<SwapRecord, Error>;

    /// Puts the previous binary back, atomically. Idempotent: restoring twice is fine.
    fn restore(&self, rec: &SwapRecord) -> Result<(), Error> {
        restore_backup(rec)
    }

    /// Makes the install final: removes the backup. Idempotent.
    fn commit(&self, rec: &SwapRecord) -> Result<(), Error> {
        let Some(backup) = &rec.backup else {
            return Ok(());
        };
        match fs::remove_file(backup) {
            Ok(()) => sync_parent(backup, "sync directory of"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::SwapIo {
                action: "remove backup",
                path: backup.clone(),
                source: e,
            }),
        }
    }
}

/// The strategy for `kind`.
pub fn swap_for(kind: SwapKind) -> Box<dyn BinarySwap> {
    match kind {
        SwapKind::Rename => Box::new(RenameSwap),
        SwapKind::Copy => Box::new(CopySwap),
        SwapKind::Symlink => Box::new(SymlinkSwap),
        SwapKind::None => Box::new(NoSwap),
    }
}

/// Where the backup of `binary` is kept: `<binary>.hotreload-backup`.
pub fn backup_path_for(binary: &Path) -> PathBuf {
    let mut s = OsString::from(binary.as_os_str());
    s.push(BACKUP_SUFFIX);
    PathBuf::from(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    #[test]
    fn kind_parses_and_displays() {
        for k in [
            SwapKind::Rename,
            SwapKind::Copy,
            SwapKind::Symlink,
            SwapKind::None,
        ] {
            assert_eq!(k.to_string().parse::<SwapKind>().unwrap(), k);
        }
        assert_eq!("RENAME".parse::<SwapKind>().unwrap(), SwapKind::Rename);
        assert!("move".parse::<SwapKind>().is_err());
        assert_eq!(SwapKind::default(), SwapKind::Rename);
    }

    #[test]
    fn record_text_round_trip() {
        let rec = SwapRecord {
            kind: SwapKind::Symlink,
            binary: PathBuf::from("/opt/app/cur rent%\n\u{e9}"),
            backup: None,
            previous_target: Some(PathBuf::from(OsString::from_vec(
                b"rel/v1/\xffnginx".to_vec(),
            ))),
            new_sha256: "ab".repeat(32),
            new_size: 123,
        };
        let text = rec.to_text();
        assert!(text.lines().all(|l| !l.is_empty()), "{text}");
        assert_eq!(SwapRecord::from_text(&text).unwrap(), rec);
    }

    #[test]
    fn record_text_errors() {
        assert!(SwapRecord::from_text("binary=/x\n").is_err());
        assert!(SwapRecord::from_text("kind=rename\n").is_err());
        assert!(SwapRecord::from_text("kind=rename\nbinary=/x\nbinary=/y\n").is_err());
        assert!(SwapRecord::from_text("kind=rename\nbinary=/x\nnew_size=big\n").is_err());
        assert!(SwapRecord::from_text("kind=rename\nbinary=/x%G1\n").is_err());
        let ok = SwapRecord::from_text("kind=none\nbinary=/x\nfuture_key=1\n").unwrap();
        assert_eq!(ok.kind, SwapKind::None);
    }
}
