//! Binary swap strategies: putting the new executable where the master's `argv[0]`
//! points, so that USR2 starts it, and putting the old one back on rollback.
//!
//! The rule they all keep (DESIGN.md §5): at every instant the binary path holds a
//! complete executable, old or new. New content is staged in the same directory,
//! fsynced, and moved in with `rename(2)` (atomic within a file system), then the
//! directory is fsynced so the rename survives a crash — a [`Durability`] that the
//! pipeline lets run while the new master starts and completes before the commit. The
//! staged file carries the installed file's owner, mode and extended attributes
//! (capabilities, SELinux label, ACLs). The backup stays until [`BinarySwap::commit`].
//!
//! Whatever `install` did is described by a [`SwapRecord`], plain data with a text
//! form, so that a different process (after a crash, or a later `hotreload
//! rollback`) can restore or commit it.

mod copy;
mod durability;
mod file;
mod metadata;
mod none;
mod record;
mod rename;
mod symlink;

pub use copy::CopySwap;
pub use durability::Durability;
pub use none::NoSwap;
pub use record::{FileIdentity, SwapRecord, Undo};
pub use rename::RenameSwap;
pub use symlink::SymlinkSwap;

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use crate::error::{Error, ParseError};

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
    type Err = ParseError;
    fn from_str(s: &str) -> Result<SwapKind, ParseError> {
        match s.to_ascii_lowercase().as_str() {
            "rename" => Ok(SwapKind::Rename),
            "copy" => Ok(SwapKind::Copy),
            "symlink" => Ok(SwapKind::Symlink),
            "none" => Ok(SwapKind::None),
            _ => Err(ParseError::UnknownSwapKind {
                value: s.to_string(),
            }),
        }
    }
}

/// A way to put a new executable at the binary path, and to undo it: the extension
/// point of the pipeline (pass your own with
/// [`UpgradeOptions::swap_with`](crate::UpgradeOptions::swap_with)).
///
/// What `install` did is a [`SwapRecord`] whose [`Undo`] says, as data, how to undo
/// it; `restore` and `commit` default to acting on that data, so another process (a
/// later rollback) can undo a user's strategy without knowing it.
pub trait BinarySwap: Send + Sync + std::fmt::Debug {
    /// The strategy's name, as recorded in the journal (`rename`, ...).
    fn name(&self) -> &str;

    /// Whether the strategy puts a new file in place. `false` means the file at the
    /// binary path already is the new build (a package manager put it there): no new
    /// binary is needed, and the pipeline checks that file instead.
    fn installs(&self) -> bool {
        true
    }

    /// What `install` will record as its undo, for the journal written before it runs
    /// (so a crash in the middle of the install leaves enough to roll back).
    fn predict(&self, binary: &Path) -> Undo {
        let _ = binary;
        Undo::Nothing
    }

    /// Checks, changing nothing, that the layout at `binary` suits the strategy (for
    /// the pipeline's preflight, so that a misfit is refused before the config test and
    /// in a dry run). Returns what was found, for the report. The default finds nothing
    /// to check: `install` still refuses what does not suit it.
    fn preflight(&self, binary: &Path, new: &Path) -> Result<String, Error> {
        let _ = new;
        Ok(format!(
            "the {} swap checks `{}` when it installs",
            self.name(),
            binary.display()
        ))
    }

    /// Puts `new` at `binary`, keeping what is needed to restore, durably. Refuses
    /// (before changing anything) when the layout does not suit the strategy.
    fn install(&self, binary: &Path, new: &Path) -> Result<SwapRecord, Error>;

    /// [`install`](Self::install) with options, leaving the work that only matters after
    /// a crash (a directory fsync) in the returned [`Installed::durability`] for the
    /// caller to complete before it reports the upgrade done. The default runs `install`
    /// (durable already) and ignores the options.
    fn install_with(
        &self,
        binary: &Path,
        new: &Path,
        options: &InstallOptions,
    ) -> Result<Installed, Error> {
        let _ = options;
        self.install(binary, new).map(Installed::new)
    }

    /// Puts the previous binary back, atomically. Idempotent: restoring twice is fine.
    fn restore(&self, rec: &SwapRecord) -> Result<(), Error> {
        rec.undo()
    }

    /// Makes the install final (drops the backup). Idempotent.
    fn commit(&self, rec: &SwapRecord) -> Result<(), Error> {
        rec.commit()
    }
}

/// How to install: what may be given up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct InstallOptions {
    /// Install even when the new file cannot take all of the installed file's metadata
    /// (owner, mode, extended attributes such as file capabilities, ACLs, SELinux label);
    /// what is lost is named in [`Installed::lost_metadata`]. Off by default: the
    /// install refuses before changing anything.
    pub allow_metadata_loss: bool,
}

impl InstallOptions {
    /// The defaults: nothing may be lost.
    pub fn new() -> InstallOptions {
        InstallOptions::default()
    }

    /// Sets [`allow_metadata_loss`](Self::allow_metadata_loss).
    pub fn allow_metadata_loss(mut self, allow: bool) -> InstallOptions {
        self.allow_metadata_loss = allow;
        self
    }
}

/// What [`BinarySwap::install_with`] did.
#[derive(Debug)]
#[non_exhaustive]
pub struct Installed {
    /// The record of the install, for the journal.
    pub record: SwapRecord,
    /// What is left to make the install survive a crash: complete it before reporting
    /// the upgrade done.
    pub durability: Durability,
    /// The installed file's metadata that the new file could not take, each as "what
    /// (why)" (only with [`InstallOptions::allow_metadata_loss`]; else the install refused).
    pub lost_metadata: Vec<String>,
}

impl Installed {
    /// A complete, durable install with nothing lost.
    pub fn new(record: SwapRecord) -> Installed {
        Installed {
            record,
            durability: Durability::done(),
            lost_metadata: Vec::new(),
        }
    }

    /// Completes the durability work and returns the record.
    pub fn finish(self) -> Result<SwapRecord, Error> {
        self.durability.complete()?;
        Ok(self.record)
    }
}

/// `install` for a strategy whose work is in `install_with`: the default options,
/// with the durability work done at once.
pub(super) fn install_durably(
    swap: &(impl BinarySwap + ?Sized),
    binary: &Path,
    new: &Path,
) -> Result<SwapRecord, Error> {
    swap.install_with(binary, new, &InstallOptions::default())?
        .finish()
}

/// The names of the built-in strategies, for a command line: `rename` (the default),
/// `copy`, `symlink`, `none`.
pub const BUILTIN: &[&str] = &["rename", "copy", "symlink", "none"];

/// The built-in strategy called `name` (case-insensitive), or `None`.
pub fn builtin(name: &str) -> Option<Arc<dyn BinarySwap>> {
    name.parse::<SwapKind>().ok().map(SwapKind::strategy)
}

impl SwapKind {
    /// The built-in strategy of this name.
    pub fn strategy(self) -> Arc<dyn BinarySwap> {
        match self {
            SwapKind::Rename => Arc::new(RenameSwap),
            SwapKind::Copy => Arc::new(CopySwap),
            SwapKind::Symlink => Arc::new(SymlinkSwap),
            SwapKind::None => Arc::new(NoSwap),
        }
    }
}

/// The strategy for `kind`, boxed.
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
        let rec = SwapRecord::new(
            "symlink",
            PathBuf::from("/opt/app/cur rent%\n\u{e9}"),
            Undo::RepointSymlink {
                previous: PathBuf::from(OsString::from_vec(b"rel/v1/\xffnginx".to_vec())),
            },
        )
        .installed(FileIdentity {
            dev: 1,
            ino: 2,
            size: 3,
            mtime_ns: Some(-4),
            ctime_ns: Some(1_700_000_000_123_456_789),
        });
        let text = rec.to_text();
        assert!(text.lines().all(|l| !l.is_empty()), "{text}");
        assert_eq!(SwapRecord::from_text(&text).unwrap(), rec);
        let backup = SwapRecord::new(
            "a-users-own",
            "/b",
            Undo::RestoreBackup {
                backup: "/b.bak".into(),
                identity: Some(FileIdentity {
                    dev: 1,
                    ino: 2,
                    size: 3,
                    mtime_ns: None,
                    ctime_ns: None,
                }),
            },
        );
        assert_eq!(SwapRecord::from_text(&backup.to_text()).unwrap(), backup);
        // A record of an earlier version: a `dev:ino:size` identity and a digest.
        let old = SwapRecord::from_text(
            "kind=rename\nbinary=/x\nundo=restore-backup\nbackup=/x.b\n\
             backup_identity=1:2:3\nnew_sha256=abcd\nnew_size=7\n",
        )
        .unwrap();
        let Undo::RestoreBackup {
            identity: Some(id), ..
        } = old.undo
        else {
            panic!("{old:?}");
        };
        assert_eq!((id.dev, id.ino, id.size, id.mtime_ns), (1, 2, 3, None));
        assert!(id.same_as(&FileIdentity {
            mtime_ns: Some(5),
            ctime_ns: Some(6),
            ..id
        }));
        assert_eq!(old.installed, None);
        // A record of an earlier version (no `undo` line) still says how to undo.
        let old = SwapRecord::from_text("kind=rename\nbinary=/x\nbackup=/x.b\n").unwrap();
        assert_eq!(
            old.undo,
            Undo::RestoreBackup {
                backup: "/x.b".into(),
                identity: None
            }
        );
    }

    #[test]
    fn record_text_errors() {
        assert!(SwapRecord::from_text("binary=/x\n").is_err());
        assert!(SwapRecord::from_text("kind=rename\n").is_err());
        assert!(SwapRecord::from_text("kind=rename\nbinary=/x\nbinary=/y\n").is_err());
        assert!(SwapRecord::from_text("kind=rename\nbinary=/x\nnew_size=big\n").is_err());
        assert!(SwapRecord::from_text("kind=rename\nbinary=/x%G1\n").is_err());
        let ok = SwapRecord::from_text("kind=none\nbinary=/x\nfuture_key=1\n").unwrap();
        assert_eq!(ok.swap, "none");
        assert_eq!(ok.undo, Undo::Nothing);
        assert!(SwapRecord::from_text("kind=x\nbinary=/x\nundo=restore-backup\n").is_err());
        assert!(SwapRecord::from_text("kind=x\nbinary=/x\nundo=teleport\n").is_err());
    }
}
