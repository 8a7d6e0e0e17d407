//! The upgrade journal: `<pid file>.hotreload-journal`, written before the executable is
//! swapped and removed when the swap is committed or undone.
//!
//! It lets a process that did not start an upgrade finish it or roll it back: the phase
//! comes from the live system ([`crate::model`]), the journal adds only what the system
//! cannot show — how the executable was swapped (the swap record: where the backup is)
//! and which master ran before (pid and start time). It is written atomically (staged
//! beside, fsync, rename) so that a reader never sees half of it.

use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::event::{Event, Observer};
use crate::pid::Pid;
use crate::process::ProcessHandle;
use crate::procfs;
use crate::swap::SwapRecord;

const HEADER: &str = "hotreload-journal 1";
const SWAP_LINE: &str = "swap-record:";

/// The journal of the target whose pid file is `pid_file`.
pub(crate) fn journal_path(pid_file: &Path) -> PathBuf {
    let mut name = pid_file.as_os_str().to_owned();
    name.push(".hotreload-journal");
    PathBuf::from(name)
}

/// What an upgrade in progress left for whoever finishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Journal {
    /// The master that ran before the upgrade.
    pub(crate) old_master: Pid,
    /// Its start time (clock ticks since boot).
    pub(crate) old_start_time: u64,
    /// The swap record's text.
    pub(crate) swap: String,
}

impl Journal {
    fn to_text(&self) -> String {
        format!(
            "{HEADER}\nold-master {} {}\n{SWAP_LINE}\n{}",
            self.old_master, self.old_start_time, self.swap
        )
    }

    fn parse(path: &Path, text: &str) -> Result<Journal, Error> {
        let bad = |problem: &str| Error::Journal {
            path: path.to_path_buf(),
            problem: problem.to_string(),
        };
        let mut lines = text.splitn(4, '\n');
        if lines.next() != Some(HEADER) {
            return Err(bad(&format!("the first line is not `{HEADER}`")));
        }
        let master = lines.next().unwrap_or_default();
        let mut words = master
            .strip_prefix("old-master ")
            .unwrap_or_default()
            .split(' ');
        let old_master = words
            .next()
            .and_then(|w| w.parse::<Pid>().ok())
            .ok_or_else(|| bad("the second line is not `old-master <pid> <start time>`"))?;
        let old_start_time = words
            .next()
            .and_then(|w| w.parse::<u64>().ok())
            .ok_or_else(|| bad("the second line is not `old-master <pid> <start time>`"))?;
        if lines.next() != Some(SWAP_LINE) {
            return Err(bad(&format!("the third line is not `{SWAP_LINE}`")));
        }
        Ok(Journal {
            old_master,
            old_start_time,
            swap: lines.next().unwrap_or_default().to_string(),
        })
    }

    /// Writes the journal atomically at `path`.
    pub(crate) fn write(&self, path: &Path) -> Result<(), Error> {
        let io_err = |source| Error::JournalIo {
            action: "write",
            path: path.to_path_buf(),
            source,
        };
        let mut staged = path.as_os_str().to_owned();
        staged.push(".tmp");
        let staged = PathBuf::from(staged);
        // Never write through what is there: a leftover (or planted) temp is unlinked (a
        // symlink itself, not its target), then the temp is created anew, exclusively and
        // without following a link; a file planted in between makes this fail, not write.
        match fs::remove_file(&staged) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(e)),
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&staged)
            .map_err(io_err)?;
        file.write_all(self.to_text().as_bytes()).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        fs::rename(&staged, path).map_err(io_err)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io_err)?;
        }
        Ok(())
    }

    /// Reads the journal at `path`; `None` when there is none.
    pub(crate) fn read(path: &Path) -> Result<Option<Journal>, Error> {
        match fs::read_to_string(path) {
            Ok(text) => Journal::parse(path, &text).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(Error::JournalIo {
                action: "read",
                path: path.to_path_buf(),
                source,
            }),
        }
    }

    fn record(&self, path: &Path) -> Result<SwapRecord, Error> {
        SwapRecord::from_text(&self.swap).map_err(|e| Error::Journal {
            path: path.to_path_buf(),
            problem: format!("its swap record is unusable: {e}"),
        })
    }
}

/// Removes the journal at `path` (absent is fine).
pub(crate) fn remove(path: &Path) -> Result<(), Error> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(Error::JournalIo {
            action: "remove",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Commits the journal at `path` (drops the backup) and removes the journal. Refuses while
/// the master recorded in it still runs: then the upgrade is not over. `Ok(false)` when
/// there was no journal (nothing changed).
pub(crate) fn commit(path: &Path, observer: &dyn Observer) -> Result<bool, Error> {
    let path = path.to_path_buf();
    let Some(journal) = Journal::read(&path)? else {
        observer.on_event(&Event::Observed {
            what: format!(
                "no journal at {}: no executable swap to commit",
                path.display()
            ),
        });
        return Ok(false);
    };
    if ProcessHandle::open_pinned(journal.old_master, journal.old_start_time).is_ok() {
        return Err(Error::Journal {
            path,
            problem: format!(
                "it records master {} as the one being replaced, and that master still runs: \
                 the upgrade is not finished",
                journal.old_master
            ),
        });
    }
    let record = journal.record(&path)?;
    record.commit()?;
    observer.on_event(&Event::Observed {
        what: format!(
            "new executable at {} is final ({} swap committed)",
            record.binary.display(),
            record.swap
        ),
    });
    remove(&path).map(|()| true)
}

/// Undoes the swap of the journal at `path` (puts the old executable back) and removes
/// the journal. Refuses when the journal was written for another master than `master`,
/// the one that runs now. `Ok(false)` when there was no journal (nothing changed).
pub(crate) fn restore(
    path: &Path,
    master: &ProcessHandle,
    observer: &dyn Observer,
) -> Result<bool, Error> {
    let path = path.to_path_buf();
    let Some(journal) = Journal::read(&path)? else {
        observer.on_event(&Event::Observed {
            what: format!(
                "no journal at {}: no executable to put back",
                path.display()
            ),
        });
        return Ok(false);
    };
    let record = journal.record(&path)?;
    if (journal.old_master, journal.old_start_time) != (master.pid(), master.start_time()) {
        // The usual way here: the upgrade was interrupted after its old master retired,
        // and the master that runs now is the new one, started from the installed file.
        let upgrade_done = record.installed_matches().unwrap_or(false)
            && procfs::runs_file(master.pid(), &record.binary).unwrap_or(false);
        let problem = if upgrade_done {
            format!(
                "it was written for master {}, which has retired; master {} runs the new \
                 executable installed at {}: the upgrade is complete and there is nothing to \
                 roll back to (commit it, which drops the backup)",
                journal.old_master,
                master.pid(),
                record.binary.display()
            )
        } else {
            format!(
                "it was written for master {} (start time {}), but master {} (start time {}) \
                 runs: not restoring an executable for another server",
                journal.old_master,
                journal.old_start_time,
                master.pid(),
                master.start_time()
            )
        };
        return Err(Error::Journal { path, problem });
    }
    record.undo()?;
    observer.on_event(&Event::Observed {
        what: format!(
            "previous executable is back at {} ({} swap undone)",
            record.binary.display(),
            record.swap
        ),
    });
    remove(&path).map(|()| true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_and_strict_parse() {
        let j = Journal {
            old_master: Pid::new(1234).unwrap(),
            old_start_time: 987,
            swap: "kind rename\nbinary /a b\nbackup /a b.bak\n".into(),
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pid.hotreload-journal");
        j.write(&path).unwrap();
        assert_eq!(Journal::read(&path).unwrap(), Some(j));
        remove(&path).unwrap();
        assert_eq!(Journal::read(&path).unwrap(), None);
        for bad in [
            "",
            "hotreload-journal 2\n",
            "hotreload-journal 1\nold-master 1 2\nswap-record:\n",
        ] {
            assert!(Journal::parse(&path, bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            journal_path(Path::new("/run/n.pid")),
            Path::new("/run/n.pid.hotreload-journal")
        );
    }
}
