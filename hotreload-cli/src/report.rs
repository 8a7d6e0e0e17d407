//! What a command did, as data: every command returns a [`Report`], and the printers
//! ([`crate::printer`]) render it, as the human account or as the final JSON `result` line.
//!
//! Nothing here formats text for a person or builds JSON: a report holds facts (pids,
//! phases, steps, the observation, the advice chosen from a typed cause), so the two
//! renderings cannot disagree about what happened.

use std::path::PathBuf;
use std::time::Duration;

use hotreload_core::{Check, Observation, Pid, Step, StepTiming};

use crate::advice::Advice;
use crate::exit::Exit;

/// The command a report is about (`result.command`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandName {
    Status,
    Upgrade,
    Spawn,
    Drain,
    Commit,
    Rollback,
    #[cfg_attr(not(feature = "demo"), allow(dead_code))]
    Demo,
}

impl CommandName {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandName::Status => "status",
            CommandName::Upgrade => "upgrade",
            CommandName::Spawn => "spawn",
            CommandName::Drain => "drain",
            CommandName::Commit => "commit",
            CommandName::Rollback => "rollback",
            CommandName::Demo => "demo",
        }
    }
}

/// How a command ended (`result.outcome`): the word a script branches on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutcomeKind {
    /// A step command or `status` did what was asked.
    Ok,
    Committed,
    KeptOld,
    DryRun,
    /// The server already runs the requested build: nothing was done (exit 0). Produced
    /// once the core reports it (`Outcome::Unchanged`); printers and the schema know it.
    #[allow(dead_code)]
    Unchanged,
    RolledBack,
    Refused,
    Locked,
    Unrecovered,
    #[cfg_attr(not(feature = "demo"), allow(dead_code))]
    Interrupted,
    #[cfg_attr(not(feature = "demo"), allow(dead_code))]
    Failed,
}

impl OutcomeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutcomeKind::Ok => "ok",
            OutcomeKind::Committed => "committed",
            OutcomeKind::KeptOld => "kept-old",
            OutcomeKind::DryRun => "dry-run",
            OutcomeKind::Unchanged => "unchanged",
            OutcomeKind::RolledBack => "rolled-back",
            OutcomeKind::Refused => "refused",
            OutcomeKind::Locked => "locked",
            OutcomeKind::Unrecovered => "unrecovered",
            OutcomeKind::Interrupted => "interrupted",
            OutcomeKind::Failed => "failed",
        }
    }

    /// The outcome a failure with this exit code gets when nothing more precise is known.
    pub fn of_failure(exit: Exit) -> OutcomeKind {
        match exit {
            Exit::Success => OutcomeKind::Ok,
            Exit::RolledBack => OutcomeKind::RolledBack,
            Exit::Locked => OutcomeKind::Locked,
            Exit::Unrecovered => OutcomeKind::Unrecovered,
            Exit::Interrupted(_) => OutcomeKind::Interrupted,
            Exit::Refused | Exit::Usage => OutcomeKind::Refused,
        }
    }
}

/// Why a command failed: the message (naming the pid or path) and what to do about it.
#[derive(Debug, Clone)]
pub struct Failure {
    /// What failed first, one line, with its cause chain.
    pub message: String,
    /// What to do, chosen from a typed cause; rendered with the pid file and flavor.
    pub advice: Option<Advice>,
}

/// Which step command a step report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepCmd {
    Spawn,
    Drain,
    Commit,
    Rollback,
}

impl StepCmd {
    pub fn command(self) -> CommandName {
        match self {
            StepCmd::Spawn => CommandName::Spawn,
            StepCmd::Drain => CommandName::Drain,
            StepCmd::Commit => CommandName::Commit,
            StepCmd::Rollback => CommandName::Rollback,
        }
    }

    pub fn name(self) -> &'static str {
        self.command().as_str()
    }

    /// The phases this command starts from, for the refusal message.
    pub fn wants(self) -> &'static str {
        match self {
            StepCmd::Spawn => "steady",
            StepCmd::Drain => "spawned",
            StepCmd::Commit => "drained",
            StepCmd::Rollback => "spawned or drained",
        }
    }
}

/// How long one step took (the core's [`StepTiming`] for the pipeline; the step commands
/// time their steps from the events).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepTime {
    pub step: Step,
    pub duration: Duration,
}

impl From<&StepTiming> for StepTime {
    fn from(t: &StepTiming) -> Self {
        StepTime {
            step: t.step,
            duration: t.duration,
        }
    }
}

pub fn step_times(timings: &[StepTiming]) -> Vec<StepTime> {
    timings.iter().map(StepTime::from).collect()
}

/// The command-specific part of a report.
#[derive(Debug, Clone)]
pub enum Body {
    /// Nothing command-specific (an interrupted or broken demo).
    None,
    /// `hotreload status`: the observation is in [`Report::state`].
    Status,
    /// `hotreload upgrade`.
    Upgrade {
        preflight: Vec<Check>,
        /// The plan (shown by a dry run; sent in JSON on success).
        plan: Vec<String>,
        /// Wall time of the whole command; `None` on failure.
        total: Option<Duration>,
    },
    /// A step command; `journal_only` when it only finished the executable's part of an
    /// upgrade (no master was signalled).
    Step { cmd: StepCmd, journal_only: bool },
    /// A step command refused because of the phase (the observation is in `state`).
    WrongPhase,
    /// `hotreload demo`.
    #[cfg_attr(not(feature = "demo"), allow(dead_code))]
    Demo(Box<DemoSummary>),
}

/// What the demo measured.
#[derive(Debug, Clone, Default)]
pub struct DemoSummary {
    pub requests_ok: u64,
    pub requests_failed: u64,
    /// `(refused, reset, truncated, non_2xx, other)` and the error texts, when any failed.
    pub failures: Option<(DemoFailures, Vec<String>)>,
    pub retried_idle_keepalive: u64,
    /// `Server` header -> responses, in the order the clients first saw them.
    pub versions: Vec<(String, u64)>,
    pub upgrades: Vec<DemoAttempt>,
    pub total: Duration,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct DemoFailures {
    pub refused: u64,
    pub reset: u64,
    pub truncated: u64,
    pub non_2xx: u64,
    pub other: u64,
}

/// One of the demo's upgrades and whether it went as it should.
#[derive(Debug, Clone)]
pub struct DemoAttempt {
    pub to: &'static str,
    pub expected: &'static str,
    pub outcome: String,
    pub steps: Vec<StepTime>,
    pub error: Option<String>,
    pub as_expected: bool,
}

/// Everything a command reports at its end.
#[derive(Debug, Clone)]
pub struct Report {
    pub command: CommandName,
    pub outcome: OutcomeKind,
    pub exit: Exit,
    /// Whether anything changed on the system (a swap, or a signal that took effect).
    pub changed: bool,
    /// The master before the command.
    pub old_pid: Option<Pid>,
    /// The master the command started (or, for commit/rollback, retired).
    pub new_pid: Option<Pid>,
    pub steps: Vec<StepTime>,
    pub failure: Option<Failure>,
    /// The observation: `status`'s answer, a step's state afterwards, or what runs after
    /// a failure.
    pub state: Option<Observation>,
    /// The pid file the command worked on (status objects name it).
    pub pid_file: PathBuf,
    pub body: Body,
}

impl Report {
    /// A report with nothing but the command, its end and the pid file.
    pub fn new(command: CommandName, outcome: OutcomeKind, exit: Exit, pid_file: PathBuf) -> Self {
        Report {
            command,
            outcome,
            exit,
            changed: false,
            old_pid: None,
            new_pid: None,
            steps: Vec::new(),
            failure: None,
            state: None,
            pid_file,
            body: Body::None,
        }
    }

    /// A `status` report that carries an observation (its account shows what to run next).
    pub fn body_is_status_with_state(&self) -> bool {
        matches!(self.body, Body::Status) && self.state.is_some()
    }

    pub fn with_failure(mut self, message: String, advice: Option<Advice>) -> Self {
        self.failure = Some(Failure { message, advice });
        self
    }
}

/// The master pids (old, new) of an observation.
pub fn pids_of(obs: &Observation) -> (Option<Pid>, Option<Pid>) {
    (
        obs.old_master.as_ref().map(|m| m.pid),
        obs.new_master.as_ref().map(|m| m.pid),
    )
}
