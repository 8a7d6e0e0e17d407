//! The swap record: what an install did, as plain data with a text form, so that another
//! process (after a crash, or a later `hotreload rollback`) can restore or commit it.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use crate::error::Error;

/// What an install did: enough for another process to restore or commit it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SwapRecord {
    /// The name of the strategy that installed (`rename`, or a user's own).
    pub swap: String,
    /// The binary path (absolute), as the master's `argv[0]` names it.
    pub binary: PathBuf,
    /// How to undo the install: plain data, so any process can do it.
    pub undo: Undo,
    /// The installed file as the file system recorded it right after the install (device,
    /// inode, size, mtime, ctime); `None` before the install, or in a record of an
    /// earlier version.
    pub installed: Option<FileIdentity>,
    /// The size of the installed file in a record of an earlier version (which identified
    /// it by a SHA-256 that is no longer computed).
    legacy_installed_size: Option<u64>,
}

/// How an install is undone, as data (the journal stores it; another process acts on it).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Undo {
    /// Rename the backup back over the binary (commit: delete the backup).
    RestoreBackup {
        /// The backup of the previous binary.
        backup: PathBuf,
        /// The backup's identity when it was made (`None` in the journal written before
        /// the install): a restore refuses a backup that is another file.
        identity: Option<FileIdentity>,
    },
    /// Point the symlink at the binary path back at its previous target.
    RepointSymlink {
        /// Where it pointed before.
        previous: PathBuf,
    },
    /// Nothing to undo (the file in place was not touched).
    Nothing,
}

/// Which file a path named, as the file system records it: device, inode, size, and the
/// modification and status-change times (nanoseconds since the epoch). A file rewritten
/// in place, chmod-ed, linked or renamed gets a new ctime, so an identity taken after
/// the last change of a file we made tells that file from any other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    /// Device id.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch (`None` in a record of an earlier version).
    pub mtime_ns: Option<i64>,
    /// Status-change time, ns since the epoch (`None` in a record of an earlier version).
    pub ctime_ns: Option<i64>,
}

impl FileIdentity {
    /// The identity of the file at `path` (not following a final symlink).
    pub fn of(path: &Path) -> io::Result<FileIdentity> {
        let m = std::fs::symlink_metadata(path)?;
        Ok(FileIdentity::from_metadata(&m))
    }

    /// The identity of the file `m` describes.
    pub fn from_metadata(m: &std::fs::Metadata) -> FileIdentity {
        use std::os::unix::fs::MetadataExt;
        FileIdentity {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime_ns: Some(m.mtime() * 1_000_000_000 + m.mtime_nsec()),
            ctime_ns: Some(m.ctime() * 1_000_000_000 + m.ctime_nsec()),
        }
    }

    /// Whether `other` is the same file, unchanged: device, inode and size equal, and
    /// each time equal where both know it (a record of an earlier version has none).
    pub fn same_as(&self, other: &FileIdentity) -> bool {
        let time = |a: Option<i64>, b: Option<i64>| match (a, b) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        (self.dev, self.ino, self.size) == (other.dev, other.ino, other.size)
            && time(self.mtime_ns, other.mtime_ns)
            && time(self.ctime_ns, other.ctime_ns)
    }

    /// Whether the file at `path` (not following a final symlink) is this one, unchanged.
    /// `Ok(false)` when nothing is there.
    pub fn matches(&self, path: &Path) -> io::Result<bool> {
        match FileIdentity::of(path) {
            Ok(found) => Ok(self.same_as(&found)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `dev:ino:size:mtime_ns:ctime_ns` (the times left out when unknown).
    fn to_text(self) -> String {
        match (self.mtime_ns, self.ctime_ns) {
            (Some(m), Some(c)) => format!("{}:{}:{}:{m}:{c}", self.dev, self.ino, self.size),
            _ => format!("{}:{}:{}", self.dev, self.ino, self.size),
        }
    }

    /// Parses [`to_text`](Self::to_text) (and `dev:ino:size`, of earlier versions).
    fn from_text(text: &str) -> Option<FileIdentity> {
        let parts: Vec<&str> = text.split(':').collect();
        let num = |i: usize| parts[i].parse::<u64>().ok();
        let time = |i: usize| parts[i].parse::<i64>().ok();
        match parts.len() {
            3 => Some(FileIdentity {
                dev: num(0)?,
                ino: num(1)?,
                size: num(2)?,
                mtime_ns: None,
                ctime_ns: None,
            }),
            5 => Some(FileIdentity {
                dev: num(0)?,
                ino: num(1)?,
                size: num(2)?,
                mtime_ns: Some(time(3)?),
                ctime_ns: Some(time(4)?),
            }),
            _ => None,
        }
    }
}

impl SwapRecord {
    /// A record of `swap` installing at `binary`, undone by `undo`; installed file unknown yet.
    pub fn new(swap: impl Into<String>, binary: impl Into<PathBuf>, undo: Undo) -> SwapRecord {
        SwapRecord {
            swap: swap.into(),
            binary: binary.into(),
            undo,
            installed: None,
            legacy_installed_size: None,
        }
    }

    /// The same record with the installed file's identity, taken after its last change.
    pub fn installed(mut self, identity: FileIdentity) -> SwapRecord {
        self.installed = Some(identity);
        self
    }

    /// The record as `key=value` lines. Paths are stored byte-exact: `%`, control
    /// bytes and non-ASCII bytes are written as `%XX`.
    pub fn to_text(&self) -> String {
        let mut s = String::from("# hotreload swap record\n");
        s.push_str(&format!("kind={}\n", self.swap));
        s.push_str(&format!("binary={}\n", encode_path(&self.binary)));
        match &self.undo {
            Undo::RestoreBackup { backup, identity } => {
                s.push_str("undo=restore-backup\n");
                s.push_str(&format!("backup={}\n", encode_path(backup)));
                if let Some(id) = identity {
                    s.push_str(&format!("backup_identity={}\n", id.to_text()));
                }
            }
            Undo::RepointSymlink { previous } => {
                s.push_str("undo=repoint-symlink\n");
                s.push_str(&format!("previous_target={}\n", encode_path(previous)));
            }
            Undo::Nothing => s.push_str("undo=nothing\n"),
        }
        if let Some(id) = self.installed {
            s.push_str(&format!("installed_identity={}\n", id.to_text()));
        }
        s
    }

    /// Parses what [`to_text`](Self::to_text) wrote (and records of earlier versions,
    /// which had no `undo` line). Unknown keys are ignored (a newer version may add
    /// some); missing required keys and duplicates are errors.
    pub fn from_text(text: &str) -> Result<SwapRecord, Error> {
        let mut kind: Option<String> = None;
        let mut binary = None;
        let mut undo: Option<String> = None;
        let mut backup = None;
        let mut identity: Option<String> = None;
        let mut previous_target = None;
        let mut installed: Option<String> = None;
        let mut sha = None;
        let mut size = None;
        let bad = |binary: &Option<PathBuf>, problem: String| Error::SwapRecord {
            binary: binary.clone().unwrap_or_default(),
            problem,
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(bad(&binary, format!("line {} has no `=`: `{line}`", n + 1)));
            };
            let slot_is_set =
                match key {
                    "kind" => kind.replace(value.to_string()).is_some(),
                    "binary" => binary.replace(decode_path(value)?).is_some(),
                    "undo" => undo.replace(value.to_string()).is_some(),
                    "backup" => backup.replace(decode_path(value)?).is_some(),
                    "backup_identity" => identity.replace(value.to_string()).is_some(),
                    "previous_target" => previous_target.replace(decode_path(value)?).is_some(),
                    "installed_identity" => installed.replace(value.to_string()).is_some(),
                    // Earlier versions identified the installed file by content.
                    "new_sha256" => sha.replace(value.to_string()).is_some(),
                    "new_size" => size
                        .replace(value.parse::<u64>().map_err(|_| {
                            bad(&binary, format!("new_size `{value}` is not a number"))
                        })?)
                        .is_some(),
                    _ => false,
                };
            if slot_is_set {
                return Err(bad(&binary, format!("key `{key}` appears twice")));
            }
        }
        let kind = kind.ok_or_else(|| bad(&binary, "no `kind`".to_string()))?;
        let Some(binary_path) = binary.clone() else {
            return Err(bad(&binary, "no `binary`".to_string()));
        };
        let parse_identity = |key: &str, text: Option<String>| match text {
            None => Ok(None),
            Some(text) => FileIdentity::from_text(&text).map(Some).ok_or_else(|| {
                bad(
                    &binary,
                    format!("{key} `{text}` is not dev:ino:size[:mtime_ns:ctime_ns]"),
                )
            }),
        };
        let identity = parse_identity("backup_identity", identity)?;
        let installed = parse_identity("installed_identity", installed)?;
        let missing = |key: &str| {
            bad(
                &binary,
                format!(
                    "undo `{}` needs `{key}`",
                    undo.as_deref().unwrap_or_default()
                ),
            )
        };
        let undo = match (undo.as_deref(), backup, previous_target) {
            (None, Some(_), Some(_)) => {
                return Err(bad(
                    &binary,
                    "both `backup` and `previous_target`".to_string(),
                ))
            }
            (Some("restore-backup") | None, Some(backup), _) => {
                Undo::RestoreBackup { backup, identity }
            }
            (Some("restore-backup"), None, _) => return Err(missing("backup")),
            (Some("repoint-symlink"), _, Some(previous)) | (None, None, Some(previous)) => {
                Undo::RepointSymlink { previous }
            }
            (Some("repoint-symlink"), _, None) => return Err(missing("previous_target")),
            (Some("nothing") | None, None, None) => Undo::Nothing,
            (Some(other), _, _) => return Err(bad(&binary, format!("unknown undo `{other}`"))),
        };
        Ok(SwapRecord {
            swap: kind,
            binary: binary_path,
            undo,
            installed,
            // Only a digest said an install happened; its size is all that can be checked.
            legacy_installed_size: size.filter(|_| sha.is_some_and(|s: String| !s.is_empty())),
        })
    }

    /// Whether the binary path (following a symlink) still holds the file this record
    /// installed, by its identity. For a record of an earlier version, which has only a
    /// size, a file of that size counts (the cautious answer: "the new one may still be
    /// there"). `false` when the record knows of no install.
    pub fn installed_matches(&self) -> Result<bool, Error> {
        let found = match std::fs::metadata(&self.binary) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                return Err(Error::SwapIo {
                    action: "inspect installed binary",
                    path: self.binary.clone(),
                    source: e,
                })
            }
        };
        Ok(match (self.installed, self.legacy_installed_size) {
            (Some(made), _) => made.same_as(&FileIdentity::from_metadata(&found)),
            (None, Some(size)) => found.len() == size,
            (None, None) => false,
        })
    }

    /// Undoes the install as the record says (idempotent: undoing twice is fine).
    pub fn undo(&self) -> Result<(), Error> {
        match &self.undo {
            Undo::RestoreBackup { .. } => super::file::restore_backup(self),
            Undo::RepointSymlink { previous } => super::symlink::flip(&self.binary, previous),
            Undo::Nothing => Ok(()),
        }
    }

    /// Makes the install final as the record says: drops the backup. Idempotent.
    pub fn commit(&self) -> Result<(), Error> {
        let Undo::RestoreBackup { backup, identity } = &self.undo else {
            return Ok(());
        };
        match (FileIdentity::of(backup), identity) {
            (Ok(found), Some(made)) if !made.same_as(&found) => {
                return Err(Error::Swap {
                    path: backup.clone(),
                    problem: "it is not the backup this swap made (another file has its name): \
                              leaving it alone"
                        .into(),
                })
            }
            _ => {}
        }
        match std::fs::remove_file(backup) {
            Ok(()) => crate::fsutil::sync_parent(backup, "sync directory of"),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::SwapIo {
                action: "remove backup",
                path: backup.clone(),
                source: e,
            }),
        }
    }
}

fn encode_path(p: &Path) -> String {
    let mut s = String::new();
    for &b in p.as_os_str().as_bytes() {
        if b == b'%' || !(0x20..0x7f).contains(&b) {
            s.push_str(&format!("%{b:02X}"));
        } else {
            s.push(b as char);
        }
    }
    s
}

fn decode_path(s: &str) -> Result<PathBuf, Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::SwapRecord {
                    binary: PathBuf::new(),
                    problem: format!("bad %-escape in path `{s}`"),
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(PathBuf::from(OsString::from_vec(out)))
}
