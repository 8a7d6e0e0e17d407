//! What to do after a failure, chosen in one place from typed causes: the error, what
//! the operation left, and the phase the server is in. Callers render an [`Advice`]
//! with its `Display` (plain prose), or map its variants onto their own commands (the
//! CLI turns them into copy-pasteable `hotreload` command lines); they do not choose.

use std::fmt;

use crate::error::{DrainStall, Error, PidFileProblem};
use crate::model::Phase;
use crate::ops::Left;
use crate::pid::Pid;

/// The next thing an operator should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
            Left::Reverted => return Advice::CheckTheNewBuild,
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
        f.write_str(match self {
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
        })
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
}
