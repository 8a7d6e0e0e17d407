//! What an upgrade reports: how it ended ([`Outcome`]), its steps and checks
//! ([`UpgradeReport`]), and how it failed ([`UpgradeError`], [`FailureKind`]).

use std::fmt;
use std::time::Duration;

use crate::advice::Advice;
use crate::error::Error;
use crate::event::Step;
use crate::model::{Observation, Phase};
use crate::ops::Left;
use crate::pid::Pid;

/// How an upgrade ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// The new master runs alone; the old executable's backup is gone.
    Committed,
    /// The new master serves; the old master is kept without workers (`keep_old`).
    KeptOld,
    /// Nothing was changed: preflight only.
    DryRun,
    /// Nothing was changed because nothing had to be: the build that runs is the build
    /// asked for (no swap, no signal).
    Unchanged,
}

impl Outcome {
    /// `committed`, `kept-old`, `dry-run` or `unchanged`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Committed => "committed",
            Outcome::KeptOld => "kept-old",
            Outcome::DryRun => "dry-run",
            Outcome::Unchanged => "unchanged",
        }
    }
}

/// How long one step took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct StepTiming {
    /// The step.
    pub step: Step,
    /// Its duration.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "duration_ms", serialize_with = "crate::serde_impl::millis")
    )]
    pub duration: Duration,
}

/// One preflight check and its result.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Check {
    /// Short name (`catches-spawn-signal`).
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was seen (and, when it failed, what to do).
    pub detail: String,
}

/// What an upgrade did (complete on success, partial inside an [`UpgradeError`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[non_exhaustive]
pub struct UpgradeReport {
    /// How it ended (on failure: how far it meant to go).
    pub outcome: Outcome,
    /// The master before the upgrade (`None` when none was found).
    pub old_pid: Option<Pid>,
    /// The new master, once it started.
    pub new_pid: Option<Pid>,
    /// Every step that ran, in order, with its duration.
    pub steps: Vec<StepTiming>,
    /// The preflight checks.
    pub preflight: Vec<Check>,
    /// What the upgrade does (or did), step by step, in words.
    pub plan: Vec<String>,
    /// Whether the build that runs already is the one asked for (then nothing is done,
    /// and a dry run says so).
    pub unchanged: bool,
}

/// How an upgrade failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailureKind {
    /// Refused before anything was changed.
    Refused,
    /// Another process holds the target's lock.
    Locked,
    /// Something failed after the swap; the old master and executable are back.
    RolledBack,
    /// Something failed and the rollback failed too: the observation says what runs.
    Unrecovered,
    /// The caller cancelled it; whatever had changed was rolled back (`left` says
    /// whether anything had).
    Cancelled,
}

impl FailureKind {
    /// `refused`, `locked`, `rolled-back`, `unrecovered` or `cancelled`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Refused => "refused",
            FailureKind::Locked => "locked",
            FailureKind::RolledBack => "rolled-back",
            FailureKind::Unrecovered => "unrecovered",
            FailureKind::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed upgrade: what kind of failure, the cause, the partial report and (when the
/// system was looked at after the failure) the observation.
#[derive(Debug)]
#[non_exhaustive]
pub struct UpgradeError {
    /// What kind of failure, which tells what state the server is in.
    pub kind: FailureKind,
    /// The cause (for `Unrecovered`, the error that started the failed rollback; the
    /// rollback's own failure is in the report's events and in `rollback_error`).
    pub error: Error,
    /// What the upgrade left: untouched, reverted, or changed (and the phase).
    pub left: Left,
    /// What the upgrade did before it stopped (boxed, like the fields below, so that
    /// `Result<_, UpgradeError>` stays small).
    pub report: Box<UpgradeReport>,
    /// What runs now, when it was observed after the failure.
    pub observation: Option<Box<Observation>>,
    /// For `Unrecovered`: why the rollback failed.
    pub rollback_error: Option<Box<Error>>,
}

impl UpgradeError {
    /// What to do now, chosen from the kind, the cause and what runs (the observation
    /// made after the failure, if any).
    pub fn advice(&self) -> Advice {
        self.advice_seeing(self.observation.as_ref().map(|o| o.phase))
    }

    /// [`advice`](Self::advice) for a caller that looked at the server itself after
    /// the failure and saw `phase` (`None`: it could not be seen).
    pub fn advice_seeing(&self, phase: Option<Phase>) -> Advice {
        match self.kind {
            FailureKind::Refused | FailureKind::Locked => Advice::for_refusal(&self.error),
            FailureKind::RolledBack => Advice::for_rollback(&self.error, self.report.old_pid),
            // Unrecovered, cancelled: whatever runs now decides.
            _ => Advice::ManualAction { phase },
        }
    }
}

// The cause is the source, not part of this message: a caller printing the chain
// (`{:#}`, or walking `source()`) sees it once.
impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FailureKind::Refused => f.write_str("upgrade refused"),
            FailureKind::Locked => f.write_str("upgrade not started"),
            FailureKind::RolledBack => f.write_str("upgrade failed and was rolled back"),
            FailureKind::Cancelled => match self.left {
                Left::Untouched => f.write_str("upgrade cancelled before anything changed"),
                _ => f.write_str("upgrade cancelled and rolled back"),
            },
            FailureKind::Unrecovered => {
                f.write_str("upgrade failed and could not be rolled back")?;
                if let Some(e) = &self.rollback_error {
                    write!(f, " (rollback failed: {})", crate::model::error_chain(e))?;
                }
                if let Some(o) = &self.observation {
                    write!(f, " (now: {o})")?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for UpgradeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}
