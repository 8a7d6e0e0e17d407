//! The upgrade journal: `<state home>/<key>.journal` (see [`crate::state`]), written before
//! the executable is swapped and removed when the swap is committed or undone.
//!
//! It lets a process that did not start an upgrade finish it or roll it back: the phase
//! comes from the live system ([`crate::model`]), the journal adds only what the system
//! cannot show — how the executable was swapped (the swap record: where the backup is)
//! and which master ran before (pid and start time). It is written atomically (staged
//! beside, fsync, rename) so that a reader never sees half of it.
//!
//! A journal steers root to rename and delete files, so nothing in it is taken on faith
//! (DESIGN.md §6): it is read only through `O_NOFOLLOW`, only when it is a regular file of
//! ours that nobody else can write (mode bits and ACLs), and its paths must be the ones
//! this target's swap derives — the binary the master runs, the backup beside it — with
//! the backup's recorded identity matching, before anything is restored, committed or
//! deleted. One left beside the pid file by an older hotreload is held to the same rules.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::event::{Event, Observer};
use crate::fsutil::{open_to_read_untrusted, Opened, TempGuard};
use crate::lock::BinaryLock;
use crate::model::Target;
use crate::pid::Pid;
use crate::process::ProcessHandle;
use crate::procfs;
use crate::swap::{backup_path_for, FileIdentity, SwapRecord, Undo};
use crate::sys;
use crate::trust;

const HEADER: &str = "hotreload-journal 1";
const SWAP_LINE: &str = "swap-record:";

/// Suffix of a target's journal in the state home.
pub(crate) const JOURNAL_SUFFIX: &str = ".journal";

/// Longer than any journal we write; read no more than this.
const MAX_LEN: u64 = 64 * 1024;

/// Where hotreload kept the journal before it had a state home: beside the pid file.
pub(crate) fn legacy_journal_path(pid_file: &Path) -> PathBuf {
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
        let mut file = crate::state::create_new(&staged).map_err(io_err)?;
        // A failed write (ENOSPC) leaves no empty temp behind.
        let guard = TempGuard(Some(staged.clone()));
        file.write_all(self.to_text().as_bytes()).map_err(io_err)?;
        file.sync_all().map_err(io_err)?;
        fs::rename(&staged, path).map_err(io_err)?;
        guard.keep();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io_err)?;
        }
        Ok(())
    }

    /// Reads the journal at `path`; `None` when there is none. Refuses (as
    /// [`Error::JournalUntrusted`]) a symlink, anything but a regular file, a file not
    /// owned by us, or one that anyone else can write.
    pub(crate) fn read(path: &Path) -> Result<Option<Journal>, Error> {
        let untrusted = |problem: String| Error::JournalUntrusted {
            path: path.to_path_buf(),
            problem,
        };
        let io_err = |source| Error::JournalIo {
            action: "read",
            path: path.to_path_buf(),
            source,
        };
        let file = match open_to_read_untrusted(path).map_err(io_err)? {
            Opened::File(f) => f,
            Opened::Missing => return Ok(None),
            Opened::Symlink => return Err(untrusted("it is a symbolic link".into())),
        };
        let meta = file.metadata().map_err(io_err)?;
        if !meta.is_file() {
            return Err(untrusted("it is not a regular file".into()));
        }
        let euid = sys::geteuid();
        if meta.uid() != euid {
            return Err(untrusted(format!(
                "it is owned by user {}, not by hotreload's user {euid}: anyone could have \
                 written it; remove it",
                meta.uid()
            )));
        }
        match trust::foreign_writer(&file, &meta, euid) {
            Ok(None) => {}
            Ok(Some(w)) => {
                return Err(untrusted(format!(
                    "{w} can write it, so it may not be ours; remove it"
                )))
            }
            Err(e) => return Err(io_err(e)),
        }
        let mut text = String::new();
        file.take(MAX_LEN)
            .read_to_string(&mut text)
            .map_err(io_err)?;
        Journal::parse(path, &text).map(Some)
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

/// The journal of `target` that an operation acts on: the one in the state home, else one
/// an older hotreload left beside the pid file. Both are read as [`Journal::read`] does.
pub(crate) fn find(target: &Target) -> Result<Option<(PathBuf, Journal)>, Error> {
    if let Some(home) = target.home(false)? {
        let path = home.target_entry(target.pid_file(), JOURNAL_SUFFIX)?;
        if let Some(j) = Journal::read(&path)? {
            return Ok(Some((path, j)));
        }
    }
    let legacy = target.legacy_journal_file();
    Ok(Journal::read(&legacy)?.map(|j| (legacy, j)))
}

/// What `status` says about `target`'s journals: one fact per journal found, saying
/// whether hotreload would act on it and why not.
pub(crate) fn notes(target: &Target) -> Vec<String> {
    let note = |path: &Path, what: &str| match Journal::read(path) {
        Ok(None) => None,
        Ok(Some(j)) => Some(format!(
            "{what} {} records an unfinished upgrade (old master {}): `hotreload rollback` or \
             `hotreload commit` settles it",
            path.display(),
            j.old_master
        )),
        Err(e) => Some(format!(
            "{what} {} is not acted on: {}",
            path.display(),
            crate::model::error_chain(&e)
        )),
    };
    let mut notes = Vec::new();
    match target.home(false) {
        Ok(Some(home)) => {
            if let Ok(path) = home.target_entry(target.pid_file(), JOURNAL_SUFFIX) {
                notes.extend(note(&path, "journal"));
            }
        }
        Ok(None) => {}
        Err(e) => notes.push(crate::model::error_chain(&e)),
    }
    notes.extend(note(
        &target.legacy_journal_file(),
        "journal of an older hotreload (beside the pid file)",
    ));
    notes
}

/// The journal of `target`'s state home (made if missing), for writing.
pub(crate) fn home_path(target: &Target) -> Result<PathBuf, Error> {
    let home = target.home(true)?.expect("a home made on demand exists");
    home.target_entry(target.pid_file(), JOURNAL_SUFFIX)
}

/// Refuses to swap `binary` while an unfinished upgrade of another target (its journal in
/// the state home, other than `ours`) swapped the same file: its backup is that upgrade's.
pub(crate) fn check_no_other_swap(
    target: &Target,
    ours: &Path,
    binary: &Path,
) -> Result<(), Error> {
    let Some(home) = target.home(false)? else {
        return Ok(());
    };
    let Ok(entries) = fs::read_dir(home.dir()) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let is_journal = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(JOURNAL_SUFFIX));
        if !is_journal || path == ours {
            continue;
        }
        let Ok(Some(journal)) = Journal::read(&path) else {
            continue;
        };
        if journal.record(&path).is_ok_and(|r| r.binary == binary) {
            return Err(Error::Swap {
                path: binary.to_path_buf(),
                problem: format!(
                    "an unfinished upgrade of another server swapped this executable (journal \
                     {}, old master {}): commit or roll back that upgrade first",
                    path.display(),
                    journal.old_master
                ),
            });
        }
    }
    Ok(())
}

/// Whether the file at `path` is the one `recorded` (see [`FileIdentity`]).
fn identity_matches(path: &Path, recorded: &FileIdentity) -> io::Result<bool> {
    // `same_as`, not `==`: a record of an earlier version has no times to compare.
    FileIdentity::of(path).map(|found| recorded.same_as(&found))
}

/// Checks a journal's record against what this target's swap derives: the executable is
/// `binary` (what the target's master runs), a backup is the one beside it, and a backup
/// that is there is the one the swap recorded (or, when the journal was written before the
/// backup existed, the very file `master` runs). Anything else is refused: nothing in a
/// journal is taken on faith.
fn check_record(
    path: &Path,
    record: &SwapRecord,
    binary: &Path,
    master: Option<&ProcessHandle>,
) -> Result<(), Error> {
    let untrusted = |problem: String| Error::JournalUntrusted {
        path: path.to_path_buf(),
        problem,
    };
    if record.binary != binary {
        return Err(untrusted(format!(
            "it names the executable `{}`, but this target's master runs `{}`",
            record.binary.display(),
            binary.display()
        )));
    }
    let Undo::RestoreBackup { backup, identity } = &record.undo else {
        return Ok(());
    };
    let derived = backup_path_for(binary);
    if *backup != derived {
        return Err(untrusted(format!(
            "it names the backup `{}`, but this swap keeps its backup at `{}`",
            backup.display(),
            derived.display()
        )));
    }
    let meta = match fs::symlink_metadata(backup) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::SwapIo {
                action: "inspect backup",
                path: backup.clone(),
                source,
            })
        }
    };
    let matches = match identity {
        Some(recorded) => identity_matches(backup, recorded).unwrap_or(false),
        // Written before the install made the backup: believe it only if it is what the
        // old master runs (a rename swap's backup is that very file; a copy swap's has
        // its content).
        None => {
            meta.is_file()
                && master.is_some_and(|m| {
                    procfs::runs_file(m.pid(), backup).unwrap_or(false)
                        || crate::fsutil::same_content(
                            Path::new(&format!("/proc/{}/exe", m.pid())),
                            backup,
                        )
                        .unwrap_or(false)
                })
        }
    };
    if !matches {
        return Err(untrusted(format!(
            "`{}` is not the backup this swap made (another file has its name): leaving it \
             and `{}` alone",
            backup.display(),
            binary.display()
        )));
    }
    Ok(())
}

/// Commits `target`'s journal (drops the backup) and removes the journal, the master that
/// runs now starting `binary` (which the journal must name). Refuses while the
/// master recorded in it still runs (the upgrade is not over), and when the installed file
/// is no longer what the upgrade installed. `Ok(false)` when there was no journal.
pub(crate) fn commit(
    target: &Target,
    binary: &Path,
    observer: &dyn Observer,
) -> Result<bool, Error> {
    let Some((path, journal)) = find(target)? else {
        observer.on_event(&Event::Observed {
            what: format!(
                "no journal for {}: no executable swap to commit",
                target.pid_file().display()
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
    // The new master runs the installed file: the backup must be the recorded one.
    check_record(&path, &record, binary, None)?;
    let _binary_lock = binary_lock(target, &record.binary)?;
    if let Undo::RestoreBackup { backup, .. } = &record.undo {
        if !record.installed_matches()? {
            return Err(Error::Swap {
                path: record.binary.clone(),
                problem: format!(
                    "it is no longer the file this upgrade installed (something replaced it \
                     since): not calling it final; the previous executable stays at `{}` and \
                     the journal at `{}`",
                    backup.display(),
                    path.display()
                ),
            });
        }
    }
    record.commit()?;
    crate::fsutil::remove_stale_temps(&record.binary);
    observer.on_event(&Event::Observed {
        what: format!(
            "new executable at {} is final ({} swap committed)",
            record.binary.display(),
            record.swap
        ),
    });
    remove(&path).map(|()| true)
}

/// Undoes the swap of `target`'s journal (puts the old executable back) and removes the
/// journal. Refuses when the journal was written for another master than `master`, the
/// one that runs now, or names files this target's swap would not (`binary` is what
/// `master` runs). `Ok(false)` when there was no journal (nothing changed).
pub(crate) fn restore(
    target: &Target,
    binary: &Path,
    master: &ProcessHandle,
    observer: &dyn Observer,
) -> Result<bool, Error> {
    let Some((path, journal)) = find(target)? else {
        observer.on_event(&Event::Observed {
            what: format!(
                "no journal for {}: no executable to put back",
                target.pid_file().display()
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
    check_record(&path, &record, binary, Some(master))?;
    let _binary_lock = binary_lock(target, &record.binary)?;
    record.undo()?;
    crate::fsutil::remove_stale_temps(&record.binary);
    observer.on_event(&Event::Observed {
        what: format!(
            "previous executable is back at {} ({} swap undone)",
            record.binary.display(),
            record.swap
        ),
    });
    remove(&path).map(|()| true)
}

/// The lock of the executable at `binary`, held while a restore or commit moves its files
/// (the same lock the upgrade of this thread already holds, if any).
pub(crate) fn binary_lock(target: &Target, binary: &Path) -> Result<BinaryLock, Error> {
    let home = target.home(true)?.expect("a home made on demand exists");
    BinaryLock::acquire(&home.binary_lock(binary))
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
            legacy_journal_path(Path::new("/run/n.pid")),
            Path::new("/run/n.pid.hotreload-journal")
        );
    }
}
