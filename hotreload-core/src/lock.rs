//! `TargetLock`: one upgrade per target at a time, and `BinaryLock`: one swap per binary
//! path at a time (DESIGN.md §5).
//!
//! Both are an `flock(2)` on a file in hotreload's state home ([`crate::state`]), named
//! by the canonical path of the pid file (`<key>.lock`) or of the binary
//! (`binary=<key>.lock`): nobody else can write there, so nobody can plant a lock that
//! blocks upgrades or a symlink we would write through. The kernel drops an flock when
//! the last descriptor of its open file closes — including when the holder is killed —
//! so a crashed or SIGKILLed hotreload never leaves anything locked, and there is no
//! stale-lock heuristic to get wrong. The holder removes the file as it lets go; a locker
//! that finds it locked a removed file tries again. The file's content (holder pid, command, time) is
//! only information for the error message.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::thread::ThreadId;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::Error;
use crate::sys;

/// Suffix of a lock's entry in the state home.
pub const LOCK_SUFFIX: &str = ".lock";

/// Holds a target's lock until dropped (or until the process dies).
#[derive(Debug)]
pub struct TargetLock {
    file: File,
    path: PathBuf,
}

impl TargetLock {
    /// Takes the lock of the target whose pid file is `pid_file` (in the default state
    /// home), without waiting: the same as `Target::new(pid_file).lock()`.
    ///
    /// Another holder → [`Error::Locked`] naming it (pid, command, since when).
    pub fn acquire(pid_file: &Path) -> Result<TargetLock, Error> {
        crate::model::Target::new(pid_file).lock()
    }

    /// Takes the lock on exactly `lock_file` (for callers that choose the file themselves:
    /// it must be in a directory only they can write). The file is removed when the lock
    /// is dropped.
    pub fn acquire_file(lock_file: &Path) -> Result<TargetLock, Error> {
        let lock_err = |source| Error::Lock {
            path: lock_file.to_path_buf(),
            source,
        };
        // The holder removes the file when it lets go (so the home does not fill with one
        // file per target ever upgraded): a file we locked after it was removed is no
        // lock at all, so it counts only if the path still names it; else look again.
        let mut attempts = 0;
        let released_by = std::time::Instant::now() + GONE_HOLDER_GRACE;
        let mut file = loop {
            let mut file = open_or_create(lock_file).map_err(lock_err)?;
            // Ours, a regular file: we truncate and write it.
            let meta = file.metadata().map_err(lock_err)?;
            if !meta.is_file() || meta.uid() != sys::geteuid() {
                return Err(lock_err(io::Error::new(
                    io::ErrorKind::PermissionDenied,
                    format!(
                        "it is not a regular file of user {} (owner {}): remove it",
                        sys::geteuid(),
                        meta.uid()
                    ),
                )));
            }
            if !sys::flock_exclusive_nonblocking(file.as_fd()).map_err(lock_err)? {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                // A holder killed right after a fork (its config test, say) leaves the
                // lock to that child until it execs, a moment later: wait for that.
                let gone = holder_pid(&holder).is_some_and(|pid| !alive(pid));
                if gone && std::time::Instant::now() < released_by {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                    continue;
                }
                let mut holder = holder.lines().collect::<Vec<_>>().join(", ");
                if gone {
                    holder.push_str(
                        "; that process has exited, and a process it started still holds the \
                         lock",
                    );
                }
                return Err(Error::Locked {
                    path: lock_file.to_path_buf(),
                    holder: if holder.trim().is_empty() {
                        "holder unknown: it has not written its details yet".to_string()
                    } else {
                        holder
                    },
                });
            }
            let still_there = std::fs::symlink_metadata(lock_file)
                .is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino());
            attempts += 1;
            if still_there {
                break file;
            }
            if attempts >= 100 {
                return Err(lock_err(io::Error::other(
                    "it kept being replaced while it was locked",
                )));
            }
        };
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

/// How long a lock whose holder (named in its details) has exited may stay held before it
/// counts as locked: a child the holder forked shares the lock until it execs.
const GONE_HOLDER_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// The pid a lock file's details name (`pid N` on their first line).
fn holder_pid(details: &str) -> Option<u32> {
    details
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("pid "))
        .and_then(|pid| pid.parse().ok())
}

/// Whether `pid` is a live process (a zombie holds no descriptor).
fn alive(pid: u32) -> bool {
    crate::pid::Pid::try_from(pid)
        .ok()
        .and_then(|pid| crate::procfs::proc_stat(pid).ok())
        .is_some_and(|stat| !stat.is_zombie())
}

/// Opens the lock file that is there (never through a symlink), or creates it exclusively.
fn open_or_create(path: &Path) -> io::Result<File> {
    loop {
        match OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
        {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        match crate::state::create_new(path) {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            other => return other,
        }
    }
}

/// The binary locks this process holds, and which thread holds each: the pipeline holds
/// one from the swap to the commit or restore, and the journal's restore and commit take
/// it again on the same thread.
static HELD: Mutex<Vec<(PathBuf, ThreadId, usize)>> = Mutex::new(Vec::new());

/// Holds the lock of a binary path until dropped: one swap of that file at a time, across
/// targets (two servers started from one executable) and processes.
#[derive(Debug)]
pub(crate) struct BinaryLock {
    path: PathBuf,
    _file: Option<TargetLock>,
}

impl BinaryLock {
    /// Takes the lock at `lock_file` (see [`crate::state::Home::binary_lock`]); taken
    /// again on the thread that holds it, it is the same lock.
    pub(crate) fn acquire(lock_file: &Path) -> Result<BinaryLock, Error> {
        let me = std::thread::current().id();
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = held.iter_mut().find(|(p, _, _)| p == lock_file) {
            if entry.1 != me {
                return Err(Error::Locked {
                    path: lock_file.to_path_buf(),
                    holder: format!(
                        "pid {} (another upgrade in this process swaps the same executable)",
                        std::process::id()
                    ),
                });
            }
            entry.2 += 1;
            return Ok(BinaryLock {
                path: lock_file.to_path_buf(),
                _file: None,
            });
        }
        let file = TargetLock::acquire_file(lock_file)?;
        held.push((lock_file.to_path_buf(), me, 1));
        Ok(BinaryLock {
            path: lock_file.to_path_buf(),
            _file: Some(file),
        })
    }
}

impl Drop for BinaryLock {
    fn drop(&mut self) {
        let mut held = HELD.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = held.iter().position(|(p, _, _)| *p == self.path) {
            held[i].2 -= 1;
            if held[i].2 == 0 {
                held.remove(i);
            }
        }
    }
}

// A note on forks: a child forked by any thread of the holder shares the lock's
// open file description until it execs (the descriptor is close-on-exec), so a
// competitor can see the lock as held for that instant even after the holder
// dropped it, or was killed. That errs on the safe side; a locker that finds the
// holder named in the file gone waits up to `GONE_HOLDER_GRACE` for it.

impl Drop for TargetLock {
    fn drop(&mut self) {
        // Removed while still locked: whoever opened it meanwhile and locks it after we
        // close sees that the path no longer names it, and opens the path again. A killed
        // holder leaves the file (empty of meaning: its flock went with it).
        let _ = self.file.set_len(0);
        let _ = std::fs::remove_file(&self.path);
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
        let pid_file = dir.path().join("x.pid.lock");
        let first = TargetLock::acquire_file(&pid_file).unwrap();
        assert_eq!(first.path(), pid_file);
        // flock locks belong to open file descriptions: a second open conflicts even here.
        match TargetLock::acquire_file(&pid_file).unwrap_err() {
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
            match TargetLock::acquire_file(pid_file) {
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

/// Whether a process holds an flock on `lock_file` (taking the lock to find out would
/// make an upgrade starting at that moment fail as locked). `false` when it cannot be
/// told (no such file, no `/proc`).
///
/// The holder is asked first: the pid its details name, if one of its descriptors shows
/// the lock in `/proc/<pid>/fdinfo`. `/proc/locks` alone is not enough: the kernel
/// rebuilds it for each `read(2)` from a position in a list that other processes'
/// locks leave meanwhile, so a lock that is held all along can be skipped. It is the
/// fallback for a holder that has not written its details yet, read a page at a time.
pub(crate) fn is_held(lock_file: &Path) -> bool {
    let Ok(meta) = std::fs::symlink_metadata(lock_file) else {
        return false;
    };
    // glibc's encoding of dev_t, as the kernel prints it: `major:minor:inode`, hex devs.
    let dev = meta.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let key = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    holder_shows(lock_file, &key) || {
        let mut locks = Vec::with_capacity(64 * 1024);
        File::open("/proc/locks")
            .and_then(|mut f| f.read_to_end(&mut locks))
            .is_ok_and(|_| {
                String::from_utf8_lossy(&locks)
                    .lines()
                    .any(|line| names_flock(line, &key))
            })
    }
}

/// Whether the process named by the lock file's `pid N` line has the flock `key` on one
/// of its descriptors.
fn holder_shows(lock_file: &Path, key: &str) -> bool {
    let Ok(details) = std::fs::read_to_string(lock_file) else {
        return false;
    };
    let Some(pid) = holder_pid(&details) else {
        return false;
    };
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_to_string(fd.path()).is_ok_and(|info| {
            info.lines()
                .filter_map(|line| line.strip_prefix("lock:"))
                .any(|line| names_flock(line, key))
        })
    })
}

/// Whether a line of `/proc/locks` (or the `lock:` line of an fdinfo) is an flock held on
/// `key`: `N: FLOCK ADVISORY WRITE pid dev:dev:ino 0 EOF`; waiters (`N: -> FLOCK …`) hold
/// nothing.
fn names_flock(line: &str, key: &str) -> bool {
    let fields: Vec<&str> = line.split_whitespace().collect();
    fields.get(1) == Some(&"FLOCK") && fields.get(5) == Some(&key)
}

#[cfg(test)]
mod held_tests {
    use super::*;

    #[test]
    fn a_held_lock_shows_in_proc_locks_and_a_free_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.lock");
        assert!(!is_held(&path));
        let lock = TargetLock::acquire_file(&path).unwrap();
        assert!(is_held(&path));
        drop(lock);
        assert!(!is_held(&path));
    }
}
