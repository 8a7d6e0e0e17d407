//! Events: what the library reports to whoever embeds it (it never prints).
//!
//! Every step, signal, wait and decision of the operations and of [`crate::upgrade()`] is
//! passed to an [`Observer`] the caller supplies. A closure `|e: &Event| ...` is an
//! observer; [`NoopObserver`] discards everything.

use std::fmt;
use std::time::Duration;

use crate::pid::Pid;
use crate::signal::Signal;

/// A step of an upgrade or of an operation, as reported in events and in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Step {
    /// Checks that refuse before anything changes.
    Preflight,
    /// The new executable tests the master's configuration.
    ConfigTest,
    /// Taking the per-target lock.
    Lock,
    /// Installing the new executable (with a backup of the old one).
    Swap,
    /// Starting the new master (nginx: `USR2` to the master).
    Spawn,
    /// Health checks.
    Health,
    /// Stopping the old workers (nginx: `WINCH` to the old master).
    Drain,
    /// Stopping the old master (nginx: `QUIT`).
    Retire,
    /// Returning to the old master.
    Rollback,
    /// Putting the old executable back.
    RestoreBinary,
    /// Dropping the backup and the journal: the upgrade is final.
    Commit,
}

impl Step {
    /// Lower-case name: `preflight`, `config-test`, `lock`, `swap`, `spawn`, `health`,
    /// `drain`, `retire`, `rollback`, `restore-binary`, `commit`.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Preflight => "preflight",
            Step::ConfigTest => "config-test",
            Step::Lock => "lock",
            Step::Swap => "swap",
            Step::Spawn => "spawn",
            Step::Health => "health",
            Step::Drain => "drain",
            Step::Retire => "retire",
            Step::Rollback => "rollback",
            Step::RestoreBinary => "restore-binary",
            Step::Commit => "commit",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The role of a signalled process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Role {
    /// The master running before the upgrade (its pid is in `.oldbin` during it).
    OldMaster,
    /// The master started by the upgrade, a child of the old one.
    NewMaster,
    /// A worker process.
    Worker,
}

impl Role {
    /// `old-master`, `new-master` or `worker`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::OldMaster => "old-master",
            Role::NewMaster => "new-master",
            Role::Worker => "worker",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something the library did or saw.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
// `{"type": "signalled", "data": {...}}`: the CLI's line without its envelope.
#[cfg_attr(
    feature = "serde",
    serde(tag = "type", content = "data", rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum Event {
    /// A step began.
    StepStarted {
        /// Which step.
        step: Step,
    },
    /// A step ended (successfully or not).
    StepFinished {
        /// Which step.
        step: Step,
        /// How long it took.
        #[cfg_attr(
            feature = "serde",
            serde(rename = "duration_ms", serialize_with = "crate::serde_impl::millis")
        )]
        duration: Duration,
    },
    /// A check passed or failed.
    Check {
        /// Short name of the check (`catches-spawn-signal`).
        name: String,
        /// Whether it passed.
        ok: bool,
        /// What was seen.
        detail: String,
    },
    /// A verified process was sent a signal.
    Signalled {
        /// The process.
        pid: Pid,
        /// The signal.
        signal: Signal,
        /// Its role.
        role: Role,
    },
    /// A wait is in progress: emitted when it starts and about every 500 ms while it lasts.
    Waiting {
        /// What is awaited.
        what: String,
        /// Time spent waiting so far.
        #[cfg_attr(
            feature = "serde",
            serde(rename = "elapsed_ms", serialize_with = "crate::serde_impl::millis")
        )]
        elapsed: Duration,
        /// The wait's deadline, counted from its start.
        #[cfg_attr(
            feature = "serde",
            serde(rename = "timeout_ms", serialize_with = "crate::serde_impl::millis")
        )]
        timeout: Duration,
    },
    /// Something was observed in the process table or the pid files.
    Observed {
        /// What was seen.
        what: String,
    },
    /// The library chose a course of action.
    Decision {
        /// What it chose and why.
        message: String,
    },
    /// Something is not as expected but the operation goes on.
    Warning {
        /// What is wrong.
        message: String,
    },
    /// This kernel (or a seccomp filter) offers no pidfds: processes are pinned by pid +
    /// start time, re-checked immediately before each `kill(2)`, and exits are awaited by
    /// watching `/proc`. Reported once per operation (once per [`crate::upgrade()`]).
    PidfdFallback {
        /// Why: the refused call and the kernel, as in [`crate::process::PidfdSupport`].
        detail: String,
    },
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::StepStarted { step } => write!(f, "{step}: started"),
            Event::StepFinished { step, duration } => {
                write!(f, "{step}: finished in {:.3}s", duration.as_secs_f64())
            }
            Event::Check { name, ok, detail } => {
                let verdict = if *ok { "ok" } else { "FAILED" };
                write!(f, "check {name}: {verdict}: {detail}")
            }
            Event::Signalled { pid, signal, role } => {
                write!(f, "sent {signal} to {role} {pid}")
            }
            Event::Waiting {
                what,
                elapsed,
                timeout,
            } => write!(
                f,
                "waiting for {what} ({:.1}s of {:.1}s)",
                elapsed.as_secs_f64(),
                timeout.as_secs_f64()
            ),
            Event::Observed { what } => write!(f, "observed: {what}"),
            Event::Decision { message } => write!(f, "decision: {message}"),
            Event::Warning { message } => write!(f, "warning: {message}"),
            Event::PidfdFallback { detail } => write!(
                f,
                "fallback: {detail}: pinning by pid + start time, checked again right before \
                 each kill(2)"
            ),
        }
    }
}

/// Receives the events of an operation.
pub trait Observer {
    /// Called for each event, in order, on the thread running the operation.
    fn on_event(&self, event: &Event);
}

impl<F: Fn(&Event)> Observer for F {
    fn on_event(&self, event: &Event) {
        self(event)
    }
}

/// An observer that discards every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopObserver;

impl Observer for NoopObserver {
    fn on_event(&self, _event: &Event) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn closures_are_observers() {
        let seen = RefCell::new(Vec::new());
        let observer = |e: &Event| seen.borrow_mut().push(e.to_string());
        let dyn_observer: &dyn Observer = &observer;
        dyn_observer.on_event(&Event::StepStarted {
            step: Step::ConfigTest,
        });
        NoopObserver.on_event(&Event::Decision {
            message: "x".into(),
        });
        assert_eq!(seen.borrow().as_slice(), ["config-test: started"]);
    }
}
