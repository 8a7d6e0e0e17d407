//! What to do after a failure, chosen in one place from typed causes: the error, what
//! the operation left, and the phase the server is in. Callers render an [`Advice`]
//! with its `Display` (plain prose), or map its variants onto their own commands (the
//! CLI turns them into copy-pasteable `hotreload` command lines); they do not choose.

use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{DrainStall, Error, PidFileProblem};
use crate::model::Phase;
use crate::ops::Left;
use crate::pid::Pid;

/// What made an operation fail, as far as its error shows: the advice follows it, so a
/// failure that is not the new executable's is never blamed on it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// hotreload's own file operation (journal, lock, staging copy) failed.
    OwnIo {
        /// The file acted on.
        path: PathBuf,
        /// The kind of failure.
        problem: IoProblem,
    },
    /// hotreload lacked the right to act on the server (a signal, a `/proc` entry).
    NoPermission {
        /// The master concerned, when the error names it.
        master: Option<Pid>,
    },
    /// Something other than hotreload acted on the server meanwhile: a signal from
    /// elsewhere, another process writing the pid file.
    Interference,
    /// The old workers were still finishing requests at the drain deadline.
    DrainDeadline,
    /// Anything else: the new executable, the server, the input.
    Other,
}

/// How one of hotreload's own file operations failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IoProblem {
    /// The file system is full (`ENOSPC`, `EDQUOT`).
    NoSpace,
    /// Permission denied (`EACCES`, `EPERM`).
    Denied,
    /// The file system is read-only (`EROFS`).
    ReadOnly,
    /// Anything else.
    Other,
}

impl Cause {
    /// The cause an error shows.
    pub fn of(error: &Error) -> Cause {
        let own_io = |path: &Path, source: &io::Error| {
            let problem = match source.raw_os_error() {
                Some(libc::ENOSPC | libc::EDQUOT) => IoProblem::NoSpace,
                Some(libc::EACCES | libc::EPERM) => IoProblem::Denied,
                Some(libc::EROFS) => IoProblem::ReadOnly,
                _ => IoProblem::Other,
            };
            Cause::OwnIo {
                path: path.to_path_buf(),
                problem,
            }
        };
        let denied = |e: &io::Error| {
            matches!(e.raw_os_error(), Some(libc::EACCES | libc::EPERM))
                && crate::sys::geteuid() != 0
        };
        match error {
            Error::Interfered { .. } => Cause::Interference,
            Error::JournalIo { path, source, .. }
            | Error::SwapIo { path, source, .. }
            | Error::Lock { path, source } => own_io(path, source),
            Error::SendSignal { pid, source, .. } | Error::Pidfd { pid, source }
                if denied(source) =>
            {
                Cause::NoPermission { master: Some(*pid) }
            }
            // The config test could not take on the server's user: only root can.
            Error::RunCommand { source, .. } if denied(source) => {
                Cause::NoPermission { master: None }
            }
            Error::ProcRead { pid, source, .. } if denied(source) => Cause::NoPermission {
                master: Pid::new(i64::from(*pid)).ok(),
            },
            Error::DrainTimeout {
                stall: DrainStall::FinishingRequests | DrainStall::Unknown,
                ..
            } => Cause::DrainDeadline,
            _ => Cause::Other,
        }
    }
}

/// The mount point of the file system holding `path` (or its nearest existing parent):
/// where space must be freed.
fn file_system_of(path: &Path) -> PathBuf {
    let mut here = path;
    let dev = loop {
        if let Ok(meta) = std::fs::metadata(here) {
            break Some(meta.dev());
        }
        match here.parent() {
            Some(parent) => here = parent,
            None => break None,
        }
    };
    let Some(dev) = dev else {
        return path.to_path_buf();
    };
    while let Some(parent) = here.parent() {
        match std::fs::metadata(parent) {
            Ok(meta) if meta.dev() == dev => here = parent,
            _ => break,
        }
    }
    here.to_path_buf()
}

/// The next thing an operator should do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Advice {
    /// Another upgrade holds the target: wait for it, then look at the server again.
    WaitForTheOtherUpgrade,
    /// The pid file is not usable: check that it is the server's and that it runs.
    CheckThePidFile,
    /// Pidfds were required and the kernel has none: a newer kernel, or accept the
    /// fallback.
    NeedsPidfds,
    /// Nothing changed: fix the problem the error names and try again.
    FixAndRetry,
    /// An upgrade failed and was rolled back: `old` (the master from before) serves
    /// again; fix the new executable, then upgrade again.
    FixTheNewBuildAndUpgradeAgain {
        /// The master serving again, when known.
        old: Option<Pid>,
    },
    /// A step was undone (the new master did not come up): the old version serves
    /// again; check the new executable and its error log.
    CheckTheNewBuild,
    /// The old workers still finish requests, both versions serve: drain again to wait
    /// longer, terminate them, or roll back.
    DrainAgainTerminateOrRollBack,
    /// The server ignores the signal that stops its workers (not daemonized): roll back.
    RollBack,
    /// The drain would orphan listening sockets ([`Error::OrphanedSockets`]); the old
    /// version serves: keep the old worker count with `reuseport` (and every `listen`)
    /// in the new configuration, or allow orphaned sockets to drain anyway.
    KeepTheSocketsOrAllowOrphans,
    /// Something changed and could not be put right: act from `phase`, the phase seen
    /// afterwards (`None`: it could not be seen, inspect by hand).
    ManualAction {
        /// The phase the server was seen in after the failure.
        phase: Option<Phase>,
    },
    /// hotreload's own write failed for want of space: free space on the file system
    /// `mount` and try again (the new executable is not at fault).
    FreeSpace {
        /// The mount point of the full file system.
        mount: PathBuf,
        /// Whether the upgrade was rolled back (else nothing had changed).
        rolled_back: bool,
    },
    /// hotreload may not act on the server as this user: run it as root or as the user
    /// that runs master `master`.
    RunAsRootOrServerUser {
        /// The master, when known.
        master: Option<Pid>,
    },
    /// Something else acted on the server during the upgrade (the error says what): find
    /// it and stop it, then upgrade again; the new executable is not at fault.
    StopTheInterference {
        /// Whether the upgrade was rolled back (else nothing had changed).
        rolled_back: bool,
    },
    /// The drain deadline passed while old workers finished requests, and the upgrade was
    /// rolled back: give the drain more time or stop the old workers at the deadline.
    RaiseDrainTimeout,
    /// No operation failed; what fits `phase` (a step asked in the wrong phase, a
    /// status that found a phase no step fits).
    Next {
        /// The phase the server is in.
        phase: Phase,
    },
}

impl Advice {
    /// The advice for an error before anything changed.
    pub fn for_refusal(error: &Error) -> Advice {
        match Cause::of(error) {
            Cause::OwnIo {
                path,
                problem: IoProblem::NoSpace,
            } => {
                return Advice::FreeSpace {
                    mount: file_system_of(&path),
                    rolled_back: false,
                }
            }
            Cause::OwnIo {
                problem: IoProblem::Denied,
                ..
            } if crate::sys::geteuid() != 0 => {
                return Advice::RunAsRootOrServerUser { master: None }
            }
            Cause::NoPermission { master } => return Advice::RunAsRootOrServerUser { master },
            Cause::Interference => return Advice::StopTheInterference { rolled_back: false },
            _ => {}
        }
        match error {
            Error::Locked { .. } => Advice::WaitForTheOtherUpgrade,
            // A pid file others can write is the server's: the fix is its permissions.
            Error::PidFile { problem, .. }
                if !matches!(problem, PidFileProblem::WritableByOthers { .. }) =>
            {
                Advice::CheckThePidFile
            }
            Error::PidfdRequired { .. } => Advice::NeedsPidfds,
            Error::OrphanedSockets { .. } => Advice::KeepTheSocketsOrAllowOrphans,
            _ => Advice::FixAndRetry,
        }
    }

    /// The advice after an upgrade that failed with `error` and was rolled back: the old
    /// master `old` serves again. Only a failure of the new executable asks to fix it.
    pub fn for_rollback(error: &Error, old: Option<Pid>) -> Advice {
        // The build is fine: the new configuration closes sockets the old one uses.
        if matches!(error, Error::OrphanedSockets { .. }) {
            return Advice::KeepTheSocketsOrAllowOrphans;
        }
        match Cause::of(error) {
            Cause::OwnIo {
                path,
                problem: IoProblem::NoSpace,
            } => Advice::FreeSpace {
                mount: file_system_of(&path),
                rolled_back: true,
            },
            Cause::NoPermission { master } => Advice::RunAsRootOrServerUser { master },
            Cause::Interference => Advice::StopTheInterference { rolled_back: true },
            Cause::DrainDeadline => Advice::RaiseDrainTimeout,
            _ => Advice::FixTheNewBuildAndUpgradeAgain { old },
        }
    }

    /// What fits a phase when nothing failed.
    pub fn for_phase(phase: Phase) -> Advice {
        Advice::Next { phase }
    }

    /// The advice for a failed operation (a step: spawn, drain, rollback, finish): its
    /// error, what it left, and the phase seen afterwards (`None` when not looked at or
    /// not seen; then the phase the operation left is used).
    pub fn for_failure(error: &Error, left: Left, seen: Option<Phase>) -> Advice {
        let left_in = match left {
            Left::Untouched => return Advice::for_refusal(error),
            Left::Reverted => {
                return match Advice::for_rollback(error, None) {
                    Advice::FixTheNewBuildAndUpgradeAgain { .. } => Advice::CheckTheNewBuild,
                    other => other,
                }
            }
            Left::Changed { phase } => phase,
        };
        match error {
            Error::DrainTimeout {
                stall: DrainStall::SignalIgnored { .. },
                ..
            } => Advice::RollBack,
            // Both versions still serve: "drain again" is the usual answer.
            Error::DrainTimeout { .. }
                if left_in == Phase::Spawned && seen.map_or(true, |p| p == Phase::Spawned) =>
            {
                Advice::DrainAgainTerminateOrRollBack
            }
            _ => Advice::ManualAction {
                phase: Some(seen.unwrap_or(left_in)),
            },
        }
    }
}

impl fmt::Display for Advice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let serving = |rolled_back: bool| {
            if rolled_back {
                "the old version is serving again"
            } else {
                "nothing was changed"
            }
        };
        let text = match self {
            Advice::FreeSpace { mount, rolled_back } => {
                return write!(
                    f,
                    "{}; hotreload's own write failed for want of space: free space on {} \
                     (the new binary is not at fault), then try again",
                    serving(*rolled_back),
                    mount.display()
                )
            }
            Advice::RunAsRootOrServerUser { master: Some(pid) } => {
                return write!(
                    f,
                    "nothing was changed; run as root or as the user that runs master {pid}"
                )
            }
            Advice::RunAsRootOrServerUser { master: None } => {
                "nothing was changed; run as root or as the user that runs the server"
            }
            Advice::StopTheInterference { rolled_back } => {
                return write!(
                    f,
                    "{}; something other than hotreload acted on the server during the \
                     upgrade (see above; the new binary is not at fault): stop it, then try again",
                    serving(*rolled_back)
                )
            }
            Advice::RaiseDrainTimeout => {
                "the old version is serving again: its workers were still finishing requests \
                 at the drain deadline (the new binary is not at fault); give them more time \
                 or stop them at the deadline"
            }
            Advice::WaitForTheOtherUpgrade => {
                "another upgrade is working on this server; wait for it to finish, then look again"
            }
            Advice::CheckThePidFile => {
                "nothing was changed; check that the pid file is the server's (nginx: the `pid` \
                 directive) and that the server is running"
            }
            Advice::NeedsPidfds => {
                "nothing was changed; run on Linux 5.3 or later, or do not require pidfds"
            }
            Advice::FixAndRetry => "nothing was changed; fix the problem above and try again",
            Advice::FixTheNewBuildAndUpgradeAgain { .. } => {
                "the old version is serving again; fix the new binary, then upgrade again"
            }
            Advice::CheckTheNewBuild => {
                "the old version is serving again; check the new executable and its error log"
            }
            Advice::DrainAgainTerminateOrRollBack => {
                "old workers are still finishing requests (both versions serve): drain again to \
                 wait longer, terminate them, or roll back"
            }
            Advice::RollBack => "the old workers do not stop: roll back",
            Advice::KeepTheSocketsOrAllowOrphans => {
                "the old version serves; keep the old `worker_processes` with `listen … \
                 reuseport` (and every `listen`) in the new configuration, or allow orphaned \
                 sockets to drain anyway"
            }
            Advice::ManualAction { phase: None } => "inspect the server by hand (see the evidence)",
            Advice::ManualAction { phase: Some(phase) } | Advice::Next { phase } => match phase {
                Phase::Spawned | Phase::Drained => {
                    "an upgrade is in progress: finish it or roll it back"
                }
                Phase::Steady => "the server runs one master; nothing to do",
                _ => "inspect the server by hand (see the evidence)",
            },
        };
        f.write_str(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn advice_follows_the_facts() {
        let locked = Error::Locked {
            path: "/x.lock".into(),
            holder: "pid 2".into(),
        };
        assert_eq!(
            Advice::for_failure(&locked, Left::Untouched, None),
            Advice::WaitForTheOtherUpgrade
        );
        let drain = |stall| Error::DrainTimeout {
            old: Pid::new(10).unwrap(),
            remaining: vec![Pid::new(11).unwrap()],
            timeout: Duration::from_secs(1),
            stall,
        };
        let spawned = Left::Changed {
            phase: Phase::Spawned,
        };
        assert_eq!(
            Advice::for_failure(&drain(DrainStall::FinishingRequests), spawned, None),
            Advice::DrainAgainTerminateOrRollBack
        );
        // Seen drained after all (the last worker left): no more draining to advise.
        assert_eq!(
            Advice::for_failure(
                &drain(DrainStall::FinishingRequests),
                spawned,
                Some(Phase::Drained)
            ),
            Advice::ManualAction {
                phase: Some(Phase::Drained)
            }
        );
        assert_eq!(
            Advice::for_failure(
                &drain(DrainStall::SignalIgnored {
                    signal: crate::signal::Signal::Winch
                }),
                spawned,
                None
            ),
            Advice::RollBack
        );
        // The drain step refused before any signal: keep the sockets, or accept the loss.
        let orphans = Error::OrphanedSockets {
            old: Pid::new(10).unwrap(),
            new: Pid::new(11).unwrap(),
            sockets: vec![crate::error::OrphanedSocket::new("127.0.0.1:80", 5)],
        };
        assert_eq!(
            Advice::for_failure(&orphans, Left::Untouched, None),
            Advice::KeepTheSocketsOrAllowOrphans
        );
        let gone = Error::ProcessGone {
            pid: Pid::new(10).unwrap(),
        };
        assert_eq!(
            Advice::for_failure(&gone, Left::Reverted, Some(Phase::Steady)),
            Advice::CheckTheNewBuild
        );
        assert_eq!(
            Advice::for_failure(&gone, spawned, Some(Phase::Unknown)),
            Advice::ManualAction {
                phase: Some(Phase::Unknown)
            }
        );
        assert!(Advice::FixAndRetry
            .to_string()
            .contains("nothing was changed"));
        assert!(Advice::for_phase(Phase::Drained)
            .to_string()
            .contains("finish it or roll it back"));
    }

    fn io(errno: i32) -> std::io::Error {
        std::io::Error::from_raw_os_error(errno)
    }

    #[test]
    fn our_own_io_is_not_blamed_on_the_new_binary() {
        let full = Error::JournalIo {
            action: "write",
            path: "/proc/self/no-such-journal".into(),
            source: io(libc::ENOSPC),
        };
        // The mount point is the nearest existing ancestor's file system (`/proc`).
        let advice = Advice::for_rollback(&full, Pid::new(10).ok());
        assert_eq!(
            advice,
            Advice::FreeSpace {
                mount: "/proc".into(),
                rolled_back: true
            }
        );
        let text = advice.to_string();
        assert!(text.contains("free space on /proc"), "{text}");
        assert!(text.contains("not at fault"), "{text}");
        let staging = Error::SwapIo {
            action: "stage",
            path: "/proc/self/x".into(),
            source: io(libc::EDQUOT),
        };
        assert!(matches!(
            Advice::for_refusal(&staging),
            Advice::FreeSpace {
                rolled_back: false,
                ..
            }
        ));
        // Another I/O failure of ours is not "free space".
        let other = Error::SwapIo {
            action: "stage",
            path: "/x".into(),
            source: io(libc::EIO),
        };
        assert_eq!(Advice::for_refusal(&other), Advice::FixAndRetry);
    }

    #[test]
    fn an_outside_signal_or_pid_file_race_is_named_as_such() {
        let died = Error::NewMasterDied {
            old: Pid::new(10).unwrap(),
            new: None,
            detail: "x".into(),
        };
        assert_eq!(
            Advice::for_rollback(&died, Pid::new(10).ok()),
            Advice::FixTheNewBuildAndUpgradeAgain {
                old: Pid::new(10).ok()
            }
        );
        let race = Error::Interfered {
            old: Pid::new(10).unwrap(),
            what: "/run/x.pid was created by user 65534".into(),
            source: Box::new(died),
        };
        assert_eq!(
            Advice::for_rollback(&race, Pid::new(10).ok()),
            Advice::StopTheInterference { rolled_back: true }
        );
        assert_eq!(
            Advice::for_failure(&race, Left::Reverted, Some(Phase::Steady)),
            Advice::StopTheInterference { rolled_back: true }
        );
        assert!(Advice::StopTheInterference { rolled_back: true }
            .to_string()
            .contains("not at fault"));
        assert!(matches!(
            race.without_interference(),
            Error::NewMasterDied { .. }
        ));
    }

    #[test]
    fn a_drain_deadline_asks_for_time_not_a_new_build() {
        let drain = |stall| Error::DrainTimeout {
            old: Pid::new(10).unwrap(),
            remaining: vec![Pid::new(11).unwrap()],
            timeout: Duration::from_secs(1),
            stall,
        };
        assert_eq!(
            Advice::for_rollback(&drain(DrainStall::FinishingRequests), None),
            Advice::RaiseDrainTimeout
        );
        // Workers that ignore the stop signal are not a matter of time.
        assert_ne!(
            Advice::for_rollback(
                &drain(DrainStall::SignalIgnored {
                    signal: crate::signal::Signal::Winch
                }),
                None
            ),
            Advice::RaiseDrainTimeout
        );
    }

    #[test]
    fn no_permission_asks_for_root_or_the_servers_user() {
        let denied = Error::SendSignal {
            pid: Pid::new(42).unwrap(),
            signal: crate::signal::Signal::Usr2,
            source: io(libc::EPERM),
        };
        let advice = Advice::for_refusal(&denied);
        if crate::sys::geteuid() == 0 {
            // Root is never refused a signal: EPERM there is not about who we are.
            assert_eq!(advice, Advice::FixAndRetry);
        } else {
            assert_eq!(
                advice,
                Advice::RunAsRootOrServerUser {
                    master: Pid::new(42).ok()
                }
            );
        }
        assert_eq!(
            Advice::RunAsRootOrServerUser {
                master: Pid::new(42).ok()
            }
            .to_string(),
            "nothing was changed; run as root or as the user that runs master 42"
        );
    }
}
