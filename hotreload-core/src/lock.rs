//! `TargetLock`: one upgrade per target at a time (DESIGN.md §5).
//!
//! The lock is an `flock(2)` on `<pid file>.hotreload.lock`. The kernel drops an
//! flock when the last descriptor of its open file closes — including when the
//! holder is killed — so a crashed or SIGKILLed hotreload never leaves the target
//! locked, and there is no stale-lock heuristic to get wrong. The file's content
//! (holder pid, command, time) is only information for the error message.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::Error;
use crate::sys;

/// Suffix appended to the pid file's name to make the lock file's.
pub const LOCK_SUFFIX: &str = ".hotreload.lock";

/// Holds a target's lock until dropped (or until the process dies).
#[derive(Debug)]
pub struct TargetLock {
    file: File,
    path: PathBuf,
}

impl TargetLock {
    /// The lock file of the target whose pid file is `pid_file`: `<pid_file>.hotreload.lock`.
    pub fn path_for(pid_file: &Path) -> PathBuf {
        let mut name = OsString::from(pid_file.as_os_str());
        name.push(LOCK_SUFFIX);
        PathBuf::from(name)
    }

    /// Takes the lock of the target whose pid file is `pid_file`, without waiting.
    ///
    /// Another holder → [`Error::Locked`] naming it (pid, command, since when).
    pub fn acquire(pid_file: &Path) -> Result<TargetLock, Error> {
        TargetLock::acquire_file(&TargetLock::path_for(pid_file))
    }

    /// Takes the lock on exactly `lock_file` (for callers that choose the file themselves).
    pub fn acquire_file(lock_file: &Path) -> Result<TargetLock, Error> {
        let lock_err = |source| Error::Lock {
            path: lock_file.to_path_buf(),
            source,
        };
        // Never follow a symlink planted at the lock path: we truncate and write it.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(lock_file)
            .map_err(lock_err)?;
        if !sys::flock_exclusive_nonblocking(file.as_fd()).map_err(lock_err)? {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.lines().collect::<Vec<_>>().join(", ");
            return Err(Error::Locked {
                path: lock_file.to_path_buf(),
                holder: if holder.trim().is_empty() {
                    "holder unknown: it has not written its details yet".to_string()
                } else {
                    holder
                },
            });
        }
        // We hold it: replace whatever a previous holder wrote with our details.
        let info = format!(
            "pid {}\ncommand `{}`\nsince {}\n",
            std::process::id(),
            command_line(),
            format_utc(SystemTime::now()),
        );
        file.set_len(0).map_err(lock_err)?;
        file.seek(SeekFrom::Start(0)).map_err(lock_err)?;
        file.write_all(info.as_bytes()).map_err(lock_err)?;
        Ok(TargetLock {
            file,
            path: lock_file.to_path_buf(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

// A note on forks: a child forked by any thread of the holder shares the lock's
// open file description until it execs (the descriptor is close-on-exec), so a
// competitor can see the lock as held for that instant even after the holder
// dropped it. That errs on the safe side.

impl Drop for TargetLock {
    fn drop(&mut self) {
        // Clear our details so the next reader does not mistake them for a holder;
        // the lock itself goes when `file` closes. The file stays: removing it would
        // race with a process that has opened it and is about to lock it.
        let _ = self.file.set_len(0);
    }
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut s = args.join(" ");
    if s.len() > 200 {
        let mut cut = 200;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s.replace(['\n', '\r'], " ")
}

/// Formats a time as `YYYY-MM-DDTHH:MM:SSZ` (UTC) without a date library.
pub(crate) fn format_utc(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_format() {
        assert_eq!(format_utc(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_utc(UNIX_EPOCH + Duration::from_secs(1_795_691_602)),
            "2026-11-26T11:13:22Z"
        );
        assert_eq!(
            format_utc(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn second_lock_in_same_process_is_refused_then_released() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("x.pid");
        let first = TargetLock::acquire(&pid_file).unwrap();
        assert_eq!(first.path(), dir.path().join("x.pid.hotreload.lock"));
        // flock locks belong to open file descriptions: a second open conflicts even here.
        match TargetLock::acquire(&pid_file).unwrap_err() {
            Error::Locked { holder, .. } => {
                assert!(
                    holder.contains(&format!("pid {}", std::process::id())),
                    "{holder}"
                )
            }
            e => panic!("unexpected {e}"),
        }
        drop(first);
        acquire_soon(&pid_file);
    }

    /// Acquires, allowing a few retries: another test thread forking a child at
    /// the wrong moment briefly holds a copy of our descriptor (until its exec
    /// closes it), and with it the lock.
    fn acquire_soon(pid_file: &Path) -> TargetLock {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut pause = Duration::from_millis(1);
        loop {
            match TargetLock::acquire(pid_file) {
                Ok(lock) => return lock,
                Err(Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(50));
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
}

/// Whether a process holds an flock on `lock_file`, read from `/proc/locks` (taking the
/// lock to find out would make an upgrade starting at that moment fail as locked).
/// `false` when it cannot be told (no such file, no `/proc/locks`).
pub(crate) fn is_held(lock_file: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(lock_file) else {
        return false;
    };
    // glibc's encoding of dev_t, as the kernel prints it: `major:minor:inode`, hex devs.
    let dev = meta.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let key = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    std::fs::read_to_string("/proc/locks").is_ok_and(|locks| {
        locks.lines().any(|line| {
            // `N: FLOCK ADVISORY WRITE pid dev:dev:ino 0 EOF`; waiters (`N: -> FLOCK …`)
            // hold nothing.
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&key.as_str())
        })
    })
}

#[cfg(test)]
mod held_tests {
    use super::*;

    #[test]
    fn a_held_lock_shows_in_proc_locks_and_a_free_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("x.pid");
        let path = TargetLock::path_for(&pid_file);
        assert!(!is_held(&path));
        let lock = TargetLock::acquire(&pid_file).unwrap();
        assert!(is_held(&path));
        drop(lock);
        assert!(!is_held(&path));
    }
}
