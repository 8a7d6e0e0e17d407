//! What to do after a failure, chosen in one place from typed causes: the error, what
//! the operation left, and the phase the server is in. Callers (the CLI) render an
//! [`Advice`] with its `Display`, or map its variants onto their own commands.

use std::fmt;

use crate::error::{DrainStall, Error, PidFileProblem};
use crate::model::Phase;
use crate::ops::Left;

/// The next thing an operator should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Advice {
    /// Another upgrade holds the target: wait for it, then look at the server again.
    WaitForTheOtherUpgrade,
    /// The pid file is not usable: check that it is the server's and that it runs.
    CheckThePidFile,
    /// Nothing changed: fix the problem the error names and try again.
    FixAndRetry,
    /// The old workers still finish requests, both versions serve: drain again to wait
    /// longer, terminate them, or roll back.
    DrainAgainTerminateOrRollBack,
    /// The server ignores the signal that stops its workers (not daemonized): roll back.
    RollBack,
    /// The old version serves again: check the new executable and its error log.
    CheckTheNewBuild,
    /// An upgrade is in progress (spawned or drained): finish it or roll it back.
    FinishOrRollBack,
    /// The upgrade is done, the server runs the new build.
    NothingToDo,
    /// No known phase: inspect the server by hand (the observation's evidence says why).
    InspectByHand,
}

impl Advice {
    /// The advice for a failure: its error, what it left, and the phase seen afterwards
    /// (`None` when not looked at).
    pub fn for_failure(error: &Error, left: Left, phase: Option<Phase>) -> Advice {
        match (error, left) {
            (Error::Locked { .. }, _) => Advice::WaitForTheOtherUpgrade,
            (Error::PidFile { problem, .. }, Left::Untouched)
                if !matches!(problem, PidFileProblem::WritableByOthers { .. }) =>
            {
                Advice::CheckThePidFile
            }
            (_, Left::Untouched) => Advice::FixAndRetry,
            (_, Left::Reverted) => Advice::CheckTheNewBuild,
            (
                Error::DrainTimeout {
                    stall: DrainStall::SignalIgnored { .. },
                    ..
                },
                _,
            ) => Advice::RollBack,
            (Error::DrainTimeout { .. }, _) if phase.map_or(true, |p| p == Phase::Spawned) => {
                Advice::DrainAgainTerminateOrRollBack
            }
            (_, Left::Changed { phase: seen }) => match phase.unwrap_or(seen) {
                Phase::Spawned | Phase::Drained => Advice::FinishOrRollBack,
                Phase::Steady => Advice::NothingToDo,
                _ => Advice::InspectByHand,
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
            Advice::FixAndRetry => "nothing was changed; fix the problem above and try again",
            Advice::DrainAgainTerminateOrRollBack => {
                "old workers are still finishing requests (both versions serve): drain again to \
                 wait longer, terminate them, or roll back"
            }
            Advice::RollBack => "the old workers do not stop: roll back",
            Advice::CheckTheNewBuild => {
                "the old version is serving again; check the new executable and its error log"
            }
            Advice::FinishOrRollBack => "an upgrade is in progress: finish it or roll it back",
            Advice::NothingToDo => "the server runs one master; nothing to do",
            Advice::InspectByHand => "inspect the server by hand (see the evidence)",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pid::Pid;
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
        let gone = Error::ProcessGone {
            pid: Pid::new(10).unwrap(),
        };
        assert_eq!(
            Advice::for_failure(&gone, Left::Reverted, Some(Phase::Steady)),
            Advice::CheckTheNewBuild
        );
        assert_eq!(
            Advice::for_failure(&gone, spawned, Some(Phase::Unknown)),
            Advice::InspectByHand
        );
        assert!(Advice::FixAndRetry
            .to_string()
            .contains("nothing was changed"));
    }
}
