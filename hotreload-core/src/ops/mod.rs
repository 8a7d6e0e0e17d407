//! The typed upgrade operations: each is legal only in its phase, has deadlines, and
//! returns the state it reached (or, on failure, an [`OpError`] saying what it left).
//!
//! ```text
//! Steady ──spawn_new_master──▶ Spawned ──drain_old_workers──▶ Drained ──retire_old──▶ Steady (new)
//!    ▲                            │                              │
//!    └──────────── rollback ◀─────┴──────────────────────────────┘
//! ```
//!
//! [`Target::attach`] computes the state from the live system, so any process can pick
//! up an upgrade where another left it. Every signal goes to a [`ProcessHandle`] pinned
//! when the state was attached, after its role was checked again (the new master is
//! still a child of the old one, the master is still a master). Every wait goes through
//! the crate's one wait (deadline, progress, [`CancelToken`]). This module never touches
//! the executable except through the journal (commit after retire, restore after
//! rollback).
//!
//! Files: `engine` (what every operation shares: signalling, stopping, verifying),
//! `steady` (spawn), `spawned` (drain, rollback), `drained` (retire, rollback),
//! `interrupted` (a spawn left hanging), `cleanup` (stray new masters and workers),
//! `sockets` (the listening sockets a drain would orphan).
//!
//! **Blocking and cancellation.** Every operation blocks the calling thread until it
//! reaches its next state or fails (at most its deadlines). A cancelled operation
//! ([`OpOptions::cancel`]) stops waiting and fails with [`Error::Cancelled`]; its
//! [`OpError::left`] says what it left: a cancelled spawn stops the new master it started
//! (the target is steady again, `Reverted`) unless it was cancelled before the signal
//! (`Untouched`); a cancelled drain leaves the target spawned (old workers finishing
//! their requests, `Changed`); a cancelled retire or rollback leaves whatever the
//! observation shows (`Changed`).

// An operation fails once, and its error carries the state to go on from: the size of
// `Result<_, OpError<_>>` is not worth boxing what callers match on.
#![allow(clippy::result_large_err)]

mod cleanup;
mod drained;
pub(crate) mod engine;
mod interrupted;
mod sockets;
mod spawned;
mod steady;
mod unit_guard;

use std::fmt;
use std::time::Duration;

use crate::error::Error;
use crate::model::{MasterInfo, Observation, Phase, Target};
use crate::process::ProcessHandle;
use crate::wait::CancelToken;

pub(crate) use sockets::orphaned_sockets;
pub(crate) use steady::{installed_binary, spawn_would_be_ignored};

/// Deadlines of the typed operations, and the token that cancels them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct OpOptions {
    /// How long the new master may take to write its pid file and start its workers
    /// (also how long the old master's workers may take to come back in a rollback).
    pub spawn_timeout: Duration,
    /// How long the old workers may take to finish their requests and exit.
    pub drain_timeout: Duration,
    /// How long a master may take to exit after the graceful stop signal, before the fast
    /// stop signal is sent (after which it gets this long again, at least 10 s).
    pub quit_timeout: Duration,
    /// Cancels the operation's waits (see the module documentation for what a cancelled
    /// operation leaves).
    pub cancel: CancelToken,
    /// Refuse to operate without pidfds (kernels before 5.3, or a seccomp filter) rather
    /// than fall back to pid + start time and `kill(2)` (see [`crate::process`]).
    pub require_pidfd: bool,
    /// Drain even when the old master holds listening sockets the new master does not
    /// ([`Error::OrphanedSockets`]): connections queued on them are lost once the old
    /// workers go, until the old master exits.
    pub allow_orphaned_sockets: bool,
}

impl Default for OpOptions {
    fn default() -> Self {
        OpOptions {
            spawn_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(60),
            quit_timeout: Duration::from_secs(30),
            cancel: CancelToken::new(),
            require_pidfd: false,
            allow_orphaned_sockets: false,
        }
    }
}

impl OpOptions {
    /// The defaults: spawn 30 s, drain 60 s, quit 30 s, a token nobody cancels.
    pub fn new() -> Self {
        OpOptions::default()
    }

    /// Sets the spawn deadline.
    pub fn spawn_timeout(mut self, timeout: Duration) -> Self {
        self.spawn_timeout = timeout;
        self
    }

    /// Sets the drain deadline.
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = timeout;
        self
    }

    /// Sets the quit deadline.
    pub fn quit_timeout(mut self, timeout: Duration) -> Self {
        self.quit_timeout = timeout;
        self
    }

    /// Sets the token that cancels the operations run with these options.
    pub fn cancel_token(mut self, token: CancelToken) -> Self {
        self.cancel = token;
        self
    }

    /// Refuses every operation on a kernel without pidfds ([`Error::PidfdRequired`]).
    pub fn require_pidfd(mut self, on: bool) -> Self {
        self.require_pidfd = on;
        self
    }

    /// Drains even when it orphans listening sockets (see
    /// [`OpOptions::allow_orphaned_sockets`]).
    pub fn allow_orphaned_sockets(mut self, on: bool) -> Self {
        self.allow_orphaned_sockets = on;
        self
    }
}

/// What a failed operation left: the fact a caller branches on (the CLI maps it to its
/// exit codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(tag = "left", rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Left {
    /// Nothing was changed: no signal was sent, no file was touched.
    Untouched,
    /// Something was changed and then undone: the server runs as before the operation.
    Reverted,
    /// The server was changed and is now in `phase` (`Unknown`: attach again to see).
    Changed {
        /// The phase seen after the failure.
        phase: Phase,
    },
}

impl Left {
    /// `untouched`, `reverted` or `changed`.
    pub fn as_str(self) -> &'static str {
        match self {
            Left::Untouched => "untouched",
            Left::Reverted => "reverted",
            Left::Changed { .. } => "changed",
        }
    }

    /// Whether anything is different from before the operation.
    pub fn changed(self) -> bool {
        matches!(self, Left::Changed { .. })
    }
}

impl fmt::Display for Left {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Left::Untouched => f.write_str("nothing was changed"),
            Left::Reverted => f.write_str("what was changed was undone"),
            Left::Changed { phase } => write!(f, "the server was changed and is {phase}"),
        }
    }
}

/// A failed operation: the error, what it left, and the state the target is still in
/// when it is known (so the caller can retry, choose another operation, or roll back).
#[non_exhaustive]
pub struct OpError<S> {
    /// The state the target is in after the failure, when known; `None` means attach
    /// again ([`Target::attach`]) to learn it.
    pub state: Option<S>,
    /// What went wrong.
    pub error: Error,
    /// What the operation left.
    pub left: Left,
}

impl<S> OpError<S> {
    /// What to do now, chosen from the cause and what was left.
    pub fn advice(&self) -> crate::advice::Advice {
        self.advice_seeing(None)
    }

    /// [`advice`](Self::advice) for a caller that looked at the server after the
    /// failure and saw `phase`.
    pub fn advice_seeing(&self, phase: Option<Phase>) -> crate::advice::Advice {
        crate::advice::Advice::for_failure(&self.error, self.left, phase)
    }

    /// The error, dropping the state.
    pub fn into_error(self) -> Error {
        self.error
    }
}

impl<S> fmt::Debug for OpError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpError")
            .field("state_known", &self.state.is_some())
            .field("left", &self.left)
            .field("error", &self.error)
            .finish()
    }
}

// Display and source() are the error's own: OpError only adds data, no words.
impl<S> fmt::Display for OpError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl<S> std::error::Error for OpError<S> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

impl<S> From<OpError<S>> for Error {
    fn from(e: OpError<S>) -> Error {
        e.error
    }
}

/// The state of a target, with the processes pinned: what operations are possible.
// `Unknown` is the large variant; a state is made once per attach, so boxing it would
// only make matching on it clumsier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
#[non_exhaustive]
pub enum State {
    /// One master with workers.
    Steady(Steady),
    /// Old and new masters, both with workers.
    Spawned(Spawned),
    /// Old master without workers, new master with workers.
    Drained(Drained),
    /// Anything else: nothing may be done but look (the evidence says what was seen).
    Unknown(Observation),
}

impl State {
    /// The observation this state was computed from.
    pub fn observation(&self) -> &Observation {
        match self {
            State::Steady(s) => &s.at.observation,
            State::Spawned(s) => &s.at.observation,
            State::Drained(s) => &s.at.observation,
            State::Unknown(o) => o,
        }
    }

    /// The phase.
    pub fn phase(&self) -> Phase {
        self.observation().phase
    }
}

/// The target and what was observed of it, shared by the states (boxed so that an
/// `OpError` carrying a state stays small).
#[derive(Debug)]
struct Attached {
    target: Target,
    observation: Observation,
}

impl Attached {
    /// The same target, seen anew.
    fn seeing(mut self: Box<Self>, observation: Observation) -> Box<Self> {
        self.observation = observation;
        self
    }
}

/// One master with workers, pinned.
#[derive(Debug)]
pub struct Steady {
    at: Box<Attached>,
    master: ProcessHandle,
}

/// Old master and its child the new master, both with workers, pinned.
#[derive(Debug)]
pub struct Spawned {
    at: Box<Attached>,
    old: ProcessHandle,
    new: ProcessHandle,
    /// This process told the old workers to stop (a drain that gave the state back:
    /// cancelled or past its deadline). A rollback must let that signal take effect
    /// before it counts the old workers, or the late signal undoes the rollback.
    told_workers_to_stop: bool,
}

/// Old master without workers, new master with workers, pinned.
#[derive(Debug)]
pub struct Drained {
    at: Box<Attached>,
    old: ProcessHandle,
    new: ProcessHandle,
}

impl Target {
    /// Observes the target and pins its masters: the state to operate on.
    ///
    /// Works for an upgrade in any phase, whoever started it. A master that exits or is
    /// replaced between the observation and the pinning makes it look again (a few
    /// times); a target that does not match a phase exactly is `State::Unknown`.
    pub fn attach(&self) -> Result<State, Error> {
        let mut last = None;
        for _ in 0..3 {
            let observation = self.observe()?;
            let attached = || {
                Box::new(Attached {
                    target: self.clone(),
                    observation: observation.clone(),
                })
            };
            let pinned = match observation.phase {
                Phase::Unknown | Phase::Spawning => return Ok(State::Unknown(observation)),
                Phase::Steady => pin(&observation.old_master)?.map(|master| {
                    State::Steady(Steady {
                        at: attached(),
                        master,
                    })
                }),
                Phase::Spawned | Phase::Drained => {
                    match (pin(&observation.old_master)?, pin(&observation.new_master)?) {
                        (Some(old), Some(new)) => Some(if observation.phase == Phase::Spawned {
                            State::Spawned(Spawned {
                                at: attached(),
                                old,
                                new,
                                told_workers_to_stop: false,
                            })
                        } else {
                            State::Drained(Drained {
                                at: attached(),
                                old,
                                new,
                            })
                        }),
                        _ => None,
                    }
                }
            };
            if let Some(state) = pinned {
                return Ok(state);
            }
            last = Some(observation);
        }
        let mut observation = last.expect("at least one observation was made");
        observation.phase = Phase::Unknown;
        observation
            .evidence
            .push("the masters kept exiting or changing while they were pinned".into());
        Ok(State::Unknown(observation))
    }
}

/// Pins a master seen in an observation; `None` when it exited or its pid was reused since.
fn pin(master: &Option<MasterInfo>) -> Result<Option<ProcessHandle>, Error> {
    let Some(master) = master else {
        return Ok(None);
    };
    match ProcessHandle::open_pinned(master.pid, master.start_time) {
        Ok(handle) => Ok(Some(handle)),
        Err(Error::ProcessGone { .. } | Error::Zombie { .. } | Error::ProcessReplaced { .. }) => {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}
