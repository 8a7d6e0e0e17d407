//! hotreload's own state home: the directory that holds the target locks, the binary locks
//! and the journals (DESIGN.md §5, §6), where only the invoking user can write.
//!
//! Why a home of our own: beside the pid file, anyone who can write the pid directory (a
//! server's own user, anyone in a sticky `/tmp`-like directory) could plant a journal that
//! root then acts on, or a lock that blocks every upgrade. Here, nobody but us can. The
//! default is `/run/hotreload` for root and `$XDG_RUNTIME_DIR/hotreload` otherwise; a
//! target may name another ([`crate::Target::state_dir`]). The home is made `0700` when
//! missing and refused when it is a symlink, not ours, or writable by anyone else (mode
//! bits and POSIX ACLs), or when its parent lets someone else replace it.
//!
//! Entries are named by a key derived from the canonical path of the pid file (or of the
//! binary, for binary locks): every byte outside `[A-Za-z0-9_.]` is `%XX`, `/` becomes `-`,
//! so the name is readable and two paths never share one. Very long paths are keyed by a
//! hash instead.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::sys;
use crate::trust;

/// The state home of root when none is configured.
pub const ROOT_STATE_DIR: &str = "/run/hotreload";

/// Where the state home is when none is configured: [`ROOT_STATE_DIR`] for root, else
/// `$XDG_RUNTIME_DIR/hotreload`.
pub(crate) fn default_dir() -> Result<PathBuf, Error> {
    if sys::geteuid() == 0 {
        return Ok(PathBuf::from(ROOT_STATE_DIR));
    }
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| Path::new(d).is_absolute()) {
        Some(dir) => Ok(Path::new(&dir).join("hotreload")),
        None => Err(Error::StateDir {
            path: PathBuf::from("$XDG_RUNTIME_DIR/hotreload"),
            problem: "cannot be found: XDG_RUNTIME_DIR is not set (to an absolute path); \
                      name a directory only you can write with --state-dir or \
                      HOTRELOAD_STATE_DIR (library: Target::state_dir)"
                .into(),
        }),
    }
}

/// A checked state home.
#[derive(Debug, Clone)]
pub(crate) struct Home {
    dir: PathBuf,
}

/// How to fix a home we refuse.
const FIX: &str = "hotreload keeps its locks and journals there; make it a directory owned \
                   by you with mode 0700 and no ACL entries (chmod 0700, setfacl -b), or \
                   name another with --state-dir or HOTRELOAD_STATE_DIR";

impl Home {
    /// Checks the home at `dir`, creating it (mode 0700) when `create` and it is missing.
    /// `Ok(None)`: it does not exist and was not to be created (so it holds nothing).
    pub(crate) fn open(dir: &Path, create: bool) -> Result<Option<Home>, Error> {
        let refuse = |problem: String| Error::StateDir {
            path: dir.to_path_buf(),
            problem,
        };
        let euid = sys::geteuid();
        let handle = match open_dir_nofollow(dir) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                match DirBuilder::new().mode(0o700).create(dir) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(refuse(format!("cannot be created ({e}); {FIX}"))),
                }
                open_dir_nofollow(dir).map_err(|e| refuse(format!("cannot be opened ({e})")))?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) if matches!(e.raw_os_error(), Some(libc::ELOOP | libc::ENOTDIR)) => {
                let what = match fs::symlink_metadata(dir) {
                    Ok(m) if m.file_type().is_symlink() => "is a symbolic link",
                    _ => "is not a directory",
                };
                return Err(refuse(format!("{what}; {FIX}")));
            }
            Err(e) => return Err(refuse(format!("cannot be opened ({e}); {FIX}"))),
        };
        let meta = handle
            .metadata()
            .map_err(|e| refuse(format!("cannot be inspected ({e})")))?;
        if meta.uid() != euid {
            return Err(refuse(format!(
                "is owned by user {}, not by you (user {euid}); {FIX}",
                meta.uid()
            )));
        }
        match trust::foreign_writer(&handle, &meta, euid) {
            Ok(None) => {}
            Ok(Some(w)) => return Err(refuse(format!("can be written by {w}; {FIX}"))),
            Err(e) => return Err(refuse(format!("its ACL cannot be read ({e}); {FIX}"))),
        }
        // Someone who may rename entries of the parent could put another directory here;
        // in a sticky parent only the owner of an entry (we) may.
        let parent = crate::fsutil::parent_dir(dir);
        if let Ok(parent_file) = File::open(&parent) {
            if let Ok(pmeta) = parent_file.metadata() {
                let sticky = pmeta.mode() & libc::S_ISVTX != 0;
                if !sticky {
                    if let Ok(Some(w)) = trust::foreign_writer(&parent_file, &pmeta, euid) {
                        return Err(refuse(format!(
                            "is in {}, which {w} can write (and so replace it); {FIX}",
                            parent.display()
                        )));
                    }
                }
            }
        }
        Ok(Some(Home {
            dir: dir.to_path_buf(),
        }))
    }

    /// The directory.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry `<key of pid_file><suffix>` of a target.
    pub(crate) fn target_entry(&self, pid_file: &Path, suffix: &str) -> Result<PathBuf, Error> {
        let canonical = canonical_pid_file(pid_file)?;
        Ok(self.entry("", &canonical, suffix))
    }

    /// The lock of everyone who swaps the executable at `binary` (made absolute).
    pub(crate) fn binary_lock(&self, binary: &Path) -> PathBuf {
        let canonical = canonical_leaf(binary).unwrap_or_else(|_| binary.to_path_buf());
        self.entry("binary=", &canonical, ".lock")
    }

    fn entry(&self, prefix: &str, canonical: &Path, suffix: &str) -> PathBuf {
        let mut name = OsString::from(prefix);
        name.push(key_of(canonical));
        name.push(suffix);
        self.dir.join(name)
    }
}

fn open_dir_nofollow(dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(dir)
}

/// The pid file's canonical path: its directory resolved, its own name kept (it may be
/// absent during an upgrade, and a symlinked pid file is refused elsewhere).
pub(crate) fn canonical_pid_file(pid_file: &Path) -> Result<PathBuf, Error> {
    canonical_leaf(pid_file).map_err(|source| Error::ReadPidFile {
        path: pid_file.to_path_buf(),
        source,
    })
}

fn canonical_leaf(path: &Path) -> io::Result<PathBuf> {
    let name = match path.file_name() {
        Some(n) => n,
        None => return Err(io::Error::from(io::ErrorKind::InvalidInput)),
    };
    let dir = fs::canonicalize(crate::fsutil::parent_dir(path))?;
    Ok(dir.join(name))
}

/// The entry name of a canonical path: readable, one name per path (see the module docs).
pub(crate) fn key_of(canonical: &Path) -> OsString {
    let bytes = canonical.as_os_str().as_bytes();
    let bytes = bytes.strip_prefix(b"/").unwrap_or(bytes);
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes {
        match b {
            b'/' => out.push(b'-'),
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' => out.push(b),
            _ => out.extend_from_slice(format!("%{b:02X}").as_bytes()),
        }
    }
    // Names are at most 255 bytes; keep room for the prefix and suffix.
    if out.len() > 200 {
        let tail = &out[out.len() - 100..];
        let mut long = format!(
            "long%{:016x}{:016x}%",
            fnv1a(bytes, 0xcbf2_9ce4_8422_2325),
            fnv1a(bytes, 0x6c62_272e_07bb_0142)
        )
        .into_bytes();
        long.extend_from_slice(tail);
        out = long;
    }
    OsString::from_vec(out)
}

fn fnv1a(bytes: &[u8], basis: u64) -> u64 {
    bytes.iter().fold(basis, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Creates `path` as a new file (mode 0600): never through a symlink, never over what is
/// there.
pub(crate) fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_readable_and_distinct() {
        assert_eq!(key_of(Path::new("/run/nginx.pid")), "run-nginx.pid");
        assert_eq!(key_of(Path::new("/run/a-b/x.pid")), "run-a%2Db-x.pid");
        assert_ne!(
            key_of(Path::new("/run/a-b/x.pid")),
            key_of(Path::new("/run/a/b/x.pid"))
        );
        assert_ne!(key_of(Path::new("/a/b%2Dc")), key_of(Path::new("/a/b-c")));
        let long = format!("/{}/x.pid", "d".repeat(300));
        let key = key_of(Path::new(&long));
        assert!(key.len() < 240, "{key:?}");
        assert_ne!(
            key,
            key_of(Path::new(&format!("/{}/y.pid", "d".repeat(300))))
        );
    }

    #[test]
    fn a_home_is_made_private_and_a_shared_one_refused() {
        use std::os::unix::fs::PermissionsExt;
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("home");
        assert!(Home::open(&dir, false).unwrap().is_none());
        let home = Home::open(&dir, true).unwrap().unwrap();
        assert_eq!(home.dir(), dir);
        let mode = fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o770)).unwrap();
        let e = Home::open(&dir, true).unwrap_err().to_string();
        assert!(e.contains("can be written by the members of group"), "{e}");
        let link = base.path().join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        let e = Home::open(&link, true).unwrap_err().to_string();
        assert!(e.contains("is a symbolic link"), "{e}");
    }
}
