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
mod none;
mod rename;
mod sha256;
mod symlink;

pub use copy::CopySwap;
pub use none::NoSwap;
pub use rename::RenameSwap;
pub use symlink::SymlinkSwap;

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use crate::error::Error;

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

/// What an install did: enough for another process to restore or commit it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapRecord {
    /// The strategy that installed.
    pub kind: SwapKind,
    /// The binary path (absolute), as the master's `argv[0]` names it.
    pub binary: PathBuf,
    /// The backup of the previous binary, for `Rename` and `Copy`.
    pub backup: Option<PathBuf>,
    /// Where the symlink pointed before, for `Symlink`.
    pub previous_target: Option<PathBuf>,
    /// SHA-256 (hex) of the installed binary's content.
    pub new_sha256: String,
    /// Size in bytes of the installed binary.
    pub new_size: u64,
}

impl SwapRecord {
    /// The record as `key=value` lines. Paths are stored byte-exact: `%`, control
    /// bytes and non-ASCII bytes are written as `%XX`.
    pub fn to_text(&self) -> String {
        let mut s = String::from("# hotreload swap record\n");
        s.push_str(&format!("kind={}\n", self.kind));
        s.push_str(&format!("binary={}\n", encode_path(&self.binary)));
        if let Some(b) = &self.backup {
            s.push_str(&format!("backup={}\n", encode_path(b)));
        }
        if let Some(t) = &self.previous_target {
            s.push_str(&format!("previous_target={}\n", encode_path(t)));
        }
        s.push_str(&format!("new_sha256={}\n", self.new_sha256));
        s.push_str(&format!("new_size={}\n", self.new_size));
        s
    }

    /// Parses what [`to_text`](Self::to_text) wrote. Unknown keys are ignored (a newer
    /// version may add some); missing required keys and duplicates are errors.
    pub fn from_text(text: &str) -> Result<SwapRecord, Error> {
        let mut kind = None;
        let mut binary = None;
        let mut backup = None;
        let mut previous_target = None;
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
                    "kind" => kind.replace(value.parse::<SwapKind>()?).is_some(),
                    "binary" => binary.replace(decode_path(value)?).is_some(),
                    "backup" => backup.replace(decode_path(value)?).is_some(),
                    "previous_target" => previous_target.replace(decode_path(value)?).is_some(),
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
        Ok(SwapRecord {
            kind,
            binary: binary_path,
            backup,
            previous_target,
            new_sha256: sha.unwrap_or_default(),
            new_size: size.unwrap_or(0),
        })
    }

    /// Whether the binary path still holds what this record installed (size and SHA-256).
    pub fn installed_matches(&self) -> Result<bool, Error> {
        match file_digest(&self.binary) {
            Ok((sha, size)) => Ok(size == self.new_size && sha == self.new_sha256),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::SwapIo {
                action: "read installed binary",
                path: self.binary.clone(),
                source: e,
            }),
        }
    }
}

/// A way to put a new executable at the binary path, and to undo it.
///
/// `restore` and `commit` have default implementations for strategies that keep a
/// backup file (rename it back; delete it).
pub trait BinarySwap {
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

/// SHA-256 (hex) and size of a file's content.
pub fn file_sha256(path: &Path) -> Result<(String, u64), Error> {
    file_digest(path).map_err(|e| Error::SwapIo {
        action: "read",
        path: path.to_path_buf(),
        source: e,
    })
}

fn file_digest(path: &Path) -> io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut h = sha256::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        h.update(&buf[..n]);
        size += n as u64;
    }
    Ok((h.finish_hex(), size))
}

// ---- shared by the strategies ----

/// Restores a backup-based install: rename the backup over the binary.
fn restore_backup(rec: &SwapRecord) -> Result<(), Error> {
    let Some(backup) = &rec.backup else {
        return Err(Error::Swap {
            path: rec.binary.clone(),
            problem: "the swap record names no backup, so there is nothing to restore".into(),
        });
    };
    match fs::symlink_metadata(backup) {
        Ok(backup_meta) if same_file(&backup_meta, &rec.binary) => {
            // The install was interrupted between linking the backup and renaming the
            // staged file over the binary: both names are links to the old file. rename(2)
            // between two links of one inode does nothing and succeeds, so it would leave
            // the backup behind; the binary already is the old file, so drop the extra name.
            fs::remove_file(backup).map_err(|e| Error::SwapIo {
                action: "remove backup (it is the binary itself)",
                path: backup.clone(),
                source: e,
            })?;
            sync_parent(&rec.binary, "sync directory of")
        }
        Ok(_) => {
            fs::rename(backup, &rec.binary).map_err(|e| Error::SwapIo {
                action: "rename backup back over",
                path: rec.binary.clone(),
                source: e,
            })?;
            sync_parent(&rec.binary, "sync directory of")
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Already restored (the backup became the binary), unless the binary is
            // still the new one: then the old one is lost and we must say so.
            if rec.installed_matches()? {
                Err(Error::Swap {
                    path: backup.clone(),
                    problem: format!(
                        "the backup is missing, so the previous binary cannot be put back at `{}` \
                         (it still holds the new one); reinstall the previous version by hand",
                        rec.binary.display()
                    ),
                })
            } else {
                Ok(())
            }
        }
        Err(e) => Err(Error::SwapIo {
            action: "inspect backup",
            path: backup.clone(),
            source: e,
        }),
    }
}

/// Whether `meta` (of a backup) and the file at `path` are one and the same inode.
fn same_file(meta: &fs::Metadata, path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
}

/// `path` made absolute against the current directory, symlinks left as they are
/// (a record is read by other processes, maybe with another cwd).
fn absolute(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path).map_err(|e| Error::SwapIo {
        action: "resolve",
        path: path.to_path_buf(),
        source: e,
    })
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// fsyncs the directory holding `path`, so a rename/link/unlink in it is durable.
fn sync_parent(path: &Path, action: &'static str) -> Result<(), Error> {
    let dir = parent_dir(path);
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::SwapIo {
            action,
            path: dir,
            source: e,
        })
}

/// A name for a temporary file beside `target`, unique in this process, carrying
/// our pid so leftovers of a killed process can be recognised and removed.
fn temp_sibling(target: &Path, what: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = target.file_name().unwrap_or(OsStr::new("binary"));
    let mut s = OsString::from(".");
    s.push(name);
    s.push(format!(".hotreload-{what}.{}.{n}", std::process::id()));
    parent_dir(target).join(s)
}

/// Removes temporary files left beside `target` by hotreload processes that no
/// longer exist (killed mid-swap). Best effort: a leftover is only clutter.
fn remove_stale_temps(target: &Path) {
    let Some(name) = target.file_name() else {
        return;
    };
    let mut prefix = b".".to_vec();
    prefix.extend_from_slice(name.as_bytes());
    prefix.extend_from_slice(b".hotreload-");
    let Ok(entries) = fs::read_dir(parent_dir(target)) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name.as_bytes().strip_prefix(prefix.as_slice()) else {
            continue;
        };
        // rest = "<what>.<pid>.<n>"
        let mut parts = rest.split(|b| *b == b'.');
        let (Some(_), Some(pid), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Some(pid) = std::str::from_utf8(pid)
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Removes a temporary file when dropped, unless `keep` was called.
struct TempGuard(Option<PathBuf>);

impl TempGuard {
    fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// Copies `src` to a new temporary file beside `target`, with `like`'s mode and
/// owner, fsynced. Returns the temp path (removed again on error), SHA-256 and size.
/// Held for writing while a file that a server may execute is open for writing, and for
/// reading by this library around each child it spawns.
///
/// Why: a child forked while another thread has a staged executable open for writing
/// inherits that descriptor until it execs, and a master exec'ing the file in that window
/// fails with ETXTBSY ("Text file busy"): a new master that fails to start for no reason of
/// its own. Seen with 50 upgrades running in parallel threads of one process (the config
/// tests of some forked while others staged). Children that an embedding program forks
/// itself are outside this lock: such a program should not fork while an upgrade swaps.
static EXEC_WRITE_LOCK: RwLock<()> = RwLock::new(());

/// Taken by the library around spawning a child (see [`EXEC_WRITE_LOCK`]).
pub(crate) fn spawn_guard() -> RwLockReadGuard<'static, ()> {
    EXEC_WRITE_LOCK.read().unwrap_or_else(|e| e.into_inner())
}

fn stage_copy(
    src: &Path,
    target: &Path,
    like: &fs::Metadata,
    what: &str,
) -> Result<(TempGuard, String, u64), Error> {
    // Declared before `out`, so it is released after `out` is closed.
    let _no_spawns = EXEC_WRITE_LOCK.write().unwrap_or_else(|e| e.into_inner());
    let staged = temp_sibling(target, what);
    let io_err = |action, path: &Path| {
        let path = path.to_path_buf();
        move |e| Error::SwapIo {
            action,
            path,
            source: e,
        }
    };
    let mut input = File::open(src).map_err(io_err("open", src))?;
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&staged)
        .map_err(io_err("create staged copy", &staged))?;
    let guard = TempGuard(Some(staged.clone()));
    let mut h = sha256::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(io_err("read", src)(e)),
        };
        h.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(io_err("write staged copy", &staged))?;
        size += n as u64;
    }
    // Owner first: chown clears set-id bits, which the chmod then puts back.
    if let Err(e) = std::os::unix::fs::fchown(&out, Some(like.uid()), Some(like.gid())) {
        // Without privilege we can only keep our own ownership; that is fine for a
        // binary we are allowed to replace.
        if e.kind() != io::ErrorKind::PermissionDenied {
            return Err(io_err("set owner of staged copy", &staged)(e));
        }
    }
    out.set_permissions(Permissions::from_mode(like.mode() & 0o7777))
        .map_err(io_err("set mode of staged copy", &staged))?;
    out.sync_all()
        .map_err(io_err("fsync staged copy", &staged))?;
    Ok((guard, h.finish_hex(), size))
}

/// Checks shared by `Rename` and `Copy` before anything changes: the binary is a
/// regular file (not a symlink), `new` is a different regular file, no backup exists.
fn preflight_file_swap(
    binary: &Path,
    new: &Path,
    backup: &Path,
) -> Result<(fs::Metadata, fs::Metadata), Error> {
    let refuse = |problem: String| Error::Swap {
        path: binary.to_path_buf(),
        problem,
    };
    let old = match fs::symlink_metadata(binary) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(refuse(
                "it does not exist: name the executable the master runs".into(),
            ))
        }
        Err(e) => {
            return Err(Error::SwapIo {
                action: "inspect",
                path: binary.to_path_buf(),
                source: e,
            })
        }
    };
    if old.file_type().is_symlink() {
        return Err(refuse(
            "it is a symbolic link: use the symlink swap to point it at the new binary, or name \
             the file it points to"
                .into(),
        ));
    }
    if !old.is_file() {
        return Err(refuse("it is not a regular file".into()));
    }
    let new_meta = fs::metadata(new).map_err(|e| Error::SwapIo {
        action: "inspect new binary",
        path: new.to_path_buf(),
        source: e,
    })?;
    if !new_meta.is_file() {
        return Err(Error::Swap {
            path: new.to_path_buf(),
            problem: "the new binary is not a regular file".into(),
        });
    }
    if new_meta.dev() == old.dev() && new_meta.ino() == old.ino() {
        return Err(refuse(format!(
            "the new binary `{}` is the installed file itself: if it is already in place, use \
             the `none` swap",
            new.display()
        )));
    }
    if fs::symlink_metadata(backup).is_ok() {
        return Err(Error::Swap {
            path: backup.to_path_buf(),
            problem: format!(
                "a backup already exists: an earlier upgrade of `{}` was neither committed nor \
                 rolled back; roll it back (which restores this backup) or, if the installed \
                 binary is known good, remove the backup",
                binary.display()
            ),
        });
    }
    Ok((old, new_meta))
}

/// The install of `Rename` and `Copy`: they differ only in how the backup is made.
fn install_file_swap(
    kind: SwapKind,
    binary: &Path,
    new: &Path,
    backup_by_copy: bool,
) -> Result<SwapRecord, Error> {
    let binary = absolute(binary)?;
    let backup = backup_path_for(&binary);
    let (old_meta, _) = preflight_file_swap(&binary, new, &backup)?;
    remove_stale_temps(&binary);

    // 1. New content staged beside the binary, complete and durable.
    let (staged, sha, size) = stage_copy(new, &binary, &old_meta, "staged")?;

    // 2. Backup of the old binary. link(2) never overwrites, so a backup that
    //    appeared meanwhile is not clobbered.
    let mut linked = false;
    if !backup_by_copy {
        match fs::hard_link(&binary, &backup) {
            Ok(()) => linked = true,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::SwapIo {
                    action: "create backup",
                    path: backup,
                    source: e,
                })
            }
            // EPERM/EXDEV/ENOTSUP/EMLINK: the file system will not link; copy instead.
            Err(_) => {}
        }
    }
    if !linked {
        let (copy, _, _) = stage_copy(&binary, &binary, &old_meta, "backup")?;
        let copy_path = copy.0.clone().unwrap_or_default();
        // Linking the finished copy to the backup name is atomic and refuses to
        // overwrite; fall back to rename where links are unsupported.
        match fs::hard_link(&copy_path, &backup) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::SwapIo {
                    action: "create backup",
                    path: backup,
                    source: e,
                })
            }
            Err(_) => {
                fs::rename(&copy_path, &backup).map_err(|e| Error::SwapIo {
                    action: "create backup",
                    path: backup.clone(),
                    source: e,
                })?;
                copy.keep();
            }
        }
    }
    // From here on, a failure must not leave a backup that blocks the next try.
    let backup_guard = TempGuard(Some(backup.clone()));
    sync_parent(&binary, "sync directory of")?;

    // 3. The switch: one rename, old complete file → new complete file.
    let staged_path = staged.0.clone().unwrap_or_default();
    fs::rename(&staged_path, &binary).map_err(|e| Error::SwapIo {
        action: "rename staged binary over",
        path: binary.clone(),
        source: e,
    })?;
    staged.keep();
    backup_guard.keep();
    sync_parent(&binary, "sync directory of")?;
    Ok(SwapRecord {
        kind,
        binary,
        backup: Some(backup),
        previous_target: None,
        new_sha256: sha,
        new_size: size,
    })
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

#[cfg(test)]
mod tests {
    use super::*;

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
