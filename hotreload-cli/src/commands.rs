//! The commands that work on a running server (`status`, `upgrade`, and the step
//! commands `spawn`, `drain`, `commit`, `rollback`), and the one place (with the demo)
//! that calls `hotreload-core`.
//!
//! Each command is one library call (or one typed operation) that returns a
//! [`Report`]; the printer it was given renders the live events and, at the end, the
//! report. What a core error means for the operator (exit code, whether anything
//! changed, which advice) is decided here, from the core's typed results, and nowhere
//! else. `rollback` and `commit` call the core's [`rollback`] and [`finish`]: the
//! phase-to-operation table lives in the core.

use std::cell::RefCell;
use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use hotreload_core::{
    finish, rollback, upgrade, CommandCheck, Error, Event, FailureKind, HttpCheck, Left,
    Observation, Observer, OpError, Outcome, Phase, State, Target, TcpCheck, UpgradeOptions,
};

use crate::advice::Advice;
use crate::args::{StatusArgs, StepArgs, SwapArg, TargetArgs, Timeouts, UpgradeArgs};
use crate::exit::Exit;
use crate::interrupt::{self, Handlers, Watch};
use crate::printer::{Notice, Printer};
use crate::report::{
    pids_of, step_times, Body, CommandName, OutcomeKind, Report, StepCmd, StepTime,
};
use hotreload_core::advice::Advice as CoreAdvice;

/// An error and its `#[source]` chain on one line, skipping sources whose text the
/// outer message already includes (thiserror messages often embed them).
pub fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// The library classifies every failure of `upgrade()`; this is the one place the
/// classification becomes a number.
pub fn exit_of_failure(kind: &FailureKind) -> Exit {
    match kind {
        // The signal's own code is set by the caller, which knows which one came.
        FailureKind::Cancelled => Exit::Interrupted(libc::SIGINT),
        FailureKind::Refused => Exit::Refused,
        FailureKind::Locked => Exit::Locked,
        FailureKind::RolledBack => Exit::RolledBack,
        FailureKind::Unrecovered => Exit::Unrecovered,
        // A kind this build does not know: claim nothing about the server's health.
        #[allow(unreachable_patterns)]
        _ => Exit::Unrecovered,
    }
}

/// The outcome word of a successful upgrade, and whether it changed the system.
pub fn outcome_of(outcome: Outcome) -> (OutcomeKind, bool) {
    #[allow(unreachable_patterns)] // Outcome is non-exhaustive
    match outcome {
        Outcome::Committed => (OutcomeKind::Committed, true),
        Outcome::KeptOld => (OutcomeKind::KeptOld, true),
        Outcome::DryRun => (OutcomeKind::DryRun, false),
        // The requested build already runs: nothing was swapped or signalled.
        Outcome::Unchanged => (OutcomeKind::Unchanged, false),
        // An outcome this build does not know claims a change: the safer answer for a
        // configuration-management run.
        _ => (OutcomeKind::Committed, true),
    }
}

/// An error before anything changed: its exit code (a held lock is 4, anything else 3)
/// and the core's advice for it.
fn untouched(err: &Error) -> (Exit, Advice) {
    let exit = match err {
        Error::Locked { .. } => Exit::Locked,
        _ => Exit::Refused,
    };
    (exit, CoreAdvice::for_refusal(err).into())
}

/// A report for an error before anything changed.
fn refusal(command: CommandName, err: &Error, pid_file: &Path, body: Body) -> Report {
    let (exit, advice) = untouched(err);
    let mut report = Report::new(
        command,
        OutcomeKind::of_failure(exit),
        exit,
        pid_file.into(),
    )
    .with_failure(error_chain(err), Some(advice));
    report.body = body;
    report
}

pub fn target_of(args: &TargetArgs, binary: Option<&PathBuf>) -> Target {
    let mut target = Target::new(args.pid_file.clone()).flavor(args.flavor.clone());
    if let Some(dir) = &args.state_dir {
        target = target.state_dir(dir.clone());
    }
    match binary {
        Some(binary) => target.binary(binary.clone()),
        None => target,
    }
}

/// A pid file that is not there, with no sign of an upgrade that would explain it (no
/// old or new pid file, no journal): a mistyped path far more often than anything else.
/// The advice for it, about the path.
fn pid_file_gone(args: &TargetArgs) -> Option<Advice> {
    let target = target_of(args, None);
    let absent = |p: &Path| matches!(p.symlink_metadata(), Err(e) if e.kind() == std::io::ErrorKind::NotFound);
    let gone = absent(target.pid_file())
        && absent(&target.old_pid_file())
        && absent(&target.new_pid_file())
        && target.journal_file().is_ok_and(|journal| absent(&journal))
        && absent(&target.legacy_journal_file());
    let dir_missing = args
        .pid_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .is_some_and(absent);
    gone.then_some(Advice::NoSuchPidFile {
        dir_missing,
        nginx: args.flavor.name() == "nginx",
    })
}

/// [`pid_file_gone`] as the refusal of a command that would change the server, made
/// before anything is locked or created.
fn no_such_pid_file(command: CommandName, args: &TargetArgs, body: Body) -> Option<Report> {
    let advice = pid_file_gone(args)?;
    let err = Error::PidFile {
        path: args.pid_file.clone(),
        problem: hotreload_core::PidFileProblem::Missing,
    };
    let mut report = refusal(command, &err, &args.pid_file, body);
    report.failure = Some(crate::report::Failure {
        message: error_chain(&err),
        advice: Some(advice),
    });
    Some(report)
}

pub fn status(args: &StatusArgs) -> Report {
    let pid_file = &args.target.pid_file;
    let target = target_of(&args.target, None);
    match target.observe() {
        Ok(mut obs) => {
            obs.evidence.extend(target.journal_notes());
            // A script asking "can I act on this server?" gets its answer from the
            // code: a phase hotreload cannot name is the same answer as a bad pid file.
            let mut report = if obs.phase == Phase::Unknown {
                Report::new(
                    CommandName::Status,
                    OutcomeKind::Refused,
                    Exit::Refused,
                    pid_file.clone(),
                )
                .with_failure(
                    unknown_state_message(&obs, pid_file),
                    Some(
                        pid_file_gone(&args.target)
                            .unwrap_or_else(|| CoreAdvice::for_phase(Phase::Unknown).into()),
                    ),
                )
            } else {
                Report::new(
                    CommandName::Status,
                    OutcomeKind::Ok,
                    Exit::Success,
                    pid_file.clone(),
                )
            };
            report.body = Body::Status;
            report.state = Some(obs);
            report
        }
        Err(err) => refusal(CommandName::Status, &err, pid_file, Body::Status),
    }
}

/// The one-line account of an `unknown` observation: the evidence names the files and pids.
fn unknown_state_message(obs: &Observation, pid_file: &Path) -> String {
    format!(
        "cannot tell the state of the server of {}: {}",
        pid_file.display(),
        if obs.evidence.is_empty() {
            "no evidence".to_owned()
        } else {
            obs.evidence.join("; ")
        }
    )
}

/// Starts watching SIGINT, SIGTERM and SIGHUP for a command that changes the server of
/// `args`: the first signal stops its waits (the core rolls back, or finishes once the
/// old master was told to stop), a second exits at once naming the command that settles
/// what is left.
pub fn watch_signals(command: CommandName, args: &TargetArgs, printer: &Arc<Printer>) -> Watch {
    let upgrade = command == CommandName::Upgrade;
    let first_printer = Arc::clone(printer);
    let first = move |signal: i32, past_no_return: bool| {
        let name = interrupt::name(signal);
        let message = match (upgrade, past_no_return) {
            (_, true) => format!(
                "{name} received after the old master was told to stop: finishing the upgrade (a second signal stops at once)"
            ),
            (true, false) => format!(
                "{name} received: stopping the upgrade and rolling back to the old version (a second signal stops at once)"
            ),
            (false, false) => format!(
                "{name} received: stopping `hotreload {}` where it stands (a second signal stops at once)",
                command.as_str()
            ),
        };
        first_printer.on_event(&Event::Warning { message });
    };
    let second_printer = Arc::clone(printer);
    let target = target_of(args, None);
    let pid_file = args.pid_file.clone();
    let second = move |signal: i32, past_no_return: bool| {
        let settle = match command {
            CommandName::Commit => "commit",
            CommandName::Upgrade if past_no_return => "commit",
            _ => "rollback",
        };
        let journal = target
            .journal_file()
            .ok()
            .filter(|journal| journal.exists());
        let message = format!(
            "interrupted again by {}: stopped at once in the middle of `hotreload {}`{}",
            interrupt::name(signal),
            command.as_str(),
            match &journal {
                Some(journal) => format!(
                    "; the journal {} is left for the next command",
                    journal.display()
                ),
                None => String::new(),
            }
        );
        let exit = Exit::Interrupted(signal);
        let mut report = Report::new(command, OutcomeKind::Interrupted, exit, pid_file.clone())
            .with_failure(message, Some(Advice::Settle { command: settle }));
        report.changed = true;
        // Read-only and quick: what runs at the moment of exit.
        report.state = target.observe().ok();
        report.body = match command {
            CommandName::Upgrade => Body::Upgrade {
                preflight: Vec::new(),
                plan: Vec::new(),
                total: None,
            },
            _ => Body::Step {
                cmd: match command {
                    CommandName::Spawn => StepCmd::Spawn,
                    CommandName::Drain => StepCmd::Drain,
                    CommandName::Commit => StepCmd::Commit,
                    _ => StepCmd::Rollback,
                },
                journal_only: false,
            },
        };
        second_printer.finish(&report);
    };
    let (watch, error) = Watch::start(Handlers {
        first: Box::new(first),
        second: Box::new(second),
    });
    if let Some(error) = error {
        printer.on_event(&Event::Warning {
            message: format!(
                "cannot watch SIGINT/SIGTERM/SIGHUP ({error}): a signal will stop hotreload without a rollback"
            ),
        });
    }
    watch
}

/// `during` of a cancelled wait, from the core's error (`cancelled while waiting for ...`).
fn interrupted_message(signal: i32, error: &Error, then: &str) -> String {
    let during = match error {
        Error::Cancelled { during } => format!(" while waiting for {during}"),
        _ => String::new(),
    };
    format!("interrupted by {}{during}: {then}", interrupt::name(signal))
}

fn with_timeouts(options: UpgradeOptions, t: &Timeouts) -> UpgradeOptions {
    options
        .spawn_timeout(t.spawn_timeout)
        .drain_timeout(t.drain_timeout)
        .quit_timeout(t.quit_timeout)
}

pub fn upgrade_cmd(args: &UpgradeArgs, printer: &Printer, watch: &Watch) -> Report {
    let pid_file = args.target.pid_file.clone();
    let mut target = target_of(&args.target, args.binary.as_ref());
    if !args.server_args.is_empty() {
        target = target.server_args(args.server_args.clone());
    }
    let empty_body = || Body::Upgrade {
        preflight: Vec::new(),
        plan: Vec::new(),
        total: None,
    };
    // Before the core takes the lock: a mistyped path must not get a lock file.
    if let Some(report) = no_such_pid_file(CommandName::Upgrade, &args.target, empty_body()) {
        return report;
    }

    let mut options = with_timeouts(UpgradeOptions::new(), &args.timeouts)
        .swap(args.swap.into())
        .allow_metadata_loss(args.allow_metadata_loss)
        .config_test(!args.skip_config_test)
        .on_drain_timeout(args.on_drain_timeout.into())
        .keep_old(args.keep_old)
        .allow_orphaned_sockets(args.allow_orphaned_sockets)
        .dry_run(args.dry_run)
        .require_pidfd(args.require_pidfd)
        .cancel_token(watch.token());
    if let Some(new_binary) = &args.new_binary {
        options = options.new_binary(new_binary.clone());
    }
    if let Some(binary) = &args.binary {
        options = options.binary(binary.clone());
    }
    if let Some(url) = &args.health_url {
        match HttpCheck::new(url) {
            Ok(check) => options = options.health_check(Box::new(check)),
            Err(err) => {
                return refusal(
                    CommandName::Upgrade,
                    &Error::from(err),
                    &pid_file,
                    empty_body(),
                )
            }
        }
    }
    if let Some(addr) = args.health_tcp {
        options = options.health_check(Box::new(TcpCheck::new(addr)));
    }
    if let Some(command) = &args.health_cmd {
        options = options.health_check(Box::new(CommandCheck::new(vec![
            "/bin/sh".to_owned(),
            "-c".to_owned(),
            command.clone(),
        ])));
    }
    debug_assert!(args.new_binary.is_some() || args.swap == SwapArg::None);

    printer.notice(&Notice::Upgrading {
        pid_file: &pid_file,
        new_binary: args.new_binary.as_deref(),
        dry_run: args.dry_run,
    });
    let started = Instant::now();
    let observer = watch.observer(printer);
    match upgrade(&target, &options, &observer) {
        Ok(done) => {
            let (outcome, changed) = outcome_of(done.outcome);
            // A signal past the point of no return: finished, and the code still says
            // it was interrupted (a loop over hosts stops here).
            let exit = match watch.signal() {
                Some(signal) => {
                    printer.on_event(&Event::Warning {
                        message: format!(
                            "{} came after the old master was told to stop: the upgrade was finished",
                            interrupt::name(signal)
                        ),
                    });
                    Exit::Interrupted(signal)
                }
                None => Exit::Success,
            };
            let mut report = Report::new(CommandName::Upgrade, outcome, exit, pid_file);
            report.changed = changed;
            report.old_pid = done.old_pid;
            report.new_pid = done.new_pid;
            report.steps = step_times(&done.steps);
            report.body = Body::Upgrade {
                preflight: done.preflight,
                plan: done.plan,
                total: Some(started.elapsed()),
            };
            report
        }
        Err(failure) if failure.kind == FailureKind::Cancelled => {
            let signal = watch.signal().unwrap_or(libc::SIGINT);
            let rolled_back = failure.left != Left::Untouched;
            let message = interrupted_message(
                signal,
                &failure.error,
                &if rolled_back {
                    format!(
                        "rolled back: the old version is serving (master {})",
                        crate::printer::pid_or_dash(failure.report.old_pid)
                    )
                } else {
                    "nothing was changed".to_owned()
                },
            );
            let exit = Exit::Interrupted(signal);
            let mut report = Report::new(
                CommandName::Upgrade,
                OutcomeKind::Interrupted,
                exit,
                pid_file,
            )
            .with_failure(message, Some(Advice::Interrupted { rolled_back }));
            report.changed = rolled_back;
            report.old_pid = failure.report.old_pid;
            report.new_pid = failure.report.new_pid;
            report.steps = step_times(&failure.report.steps);
            // The final state, as the rollback left it (or as it is now).
            report.state = failure
                .observation
                .map(|o| *o)
                .or_else(|| target.observe().ok());
            report.body = Body::Upgrade {
                preflight: failure.report.preflight,
                plan: Vec::new(),
                total: None,
            };
            report
        }
        Err(failure) => {
            let exit = exit_of_failure(&failure.kind);
            let mut message = error_chain(&failure.error);
            if let Some(rollback_error) = &failure.rollback_error {
                message.push_str(&format!(
                    "; the rollback failed too: {}",
                    error_chain(rollback_error.as_ref())
                ));
            }
            let old_pid = failure.report.old_pid;
            let state = match exit {
                Exit::Locked | Exit::Refused | Exit::RolledBack => None,
                _ => match &failure.observation {
                    Some(obs) => Some((**obs).clone()),
                    None => observe_after(&target, &mut message),
                },
            };
            let advice = Advice::from(failure.advice_seeing(state.as_ref().map(|o| o.phase)));
            let mut report = Report::new(
                CommandName::Upgrade,
                OutcomeKind::of_failure(exit),
                exit,
                pid_file,
            )
            .with_failure(message, Some(advice));
            // Refused and locked upgrades changed nothing; a rollback undid a change
            // that took effect (a swap, a new master), and an unrecovered one left it.
            report.changed = matches!(exit, Exit::RolledBack | Exit::Unrecovered);
            report.old_pid = old_pid;
            report.new_pid = failure.report.new_pid;
            report.steps = step_times(&failure.report.steps);
            report.state = state;
            report.body = Body::Upgrade {
                preflight: failure.report.preflight,
                plan: Vec::new(),
                total: None,
            };
            report
        }
    }
}

/// Re-reads the process table after a failure so the operator sees what runs now; a
/// failure to read it is added to the message.
fn observe_after(target: &Target, message: &mut String) -> Option<Observation> {
    match target.observe() {
        Ok(obs) => Some(obs),
        Err(err) => {
            message.push_str(&format!(
                "; could not observe the server afterwards: {}",
                error_chain(&err)
            ));
            None
        }
    }
}

/// Forwards the core's events to the printer and keeps what a step report needs that
/// the typed operations do not return: the step timings.
struct Witness<'a> {
    inner: &'a dyn Observer,
    steps: RefCell<Vec<StepTime>>,
}

impl Observer for Witness<'_> {
    fn on_event(&self, event: &Event) {
        if let Event::StepFinished { step, duration } = event {
            self.steps.borrow_mut().push(StepTime {
                step: *step,
                duration: *duration,
            });
        }
        self.inner.on_event(event);
    }
}

/// A failed step: the core's error, what it left, and (for the typed operations) the
/// phase the core says the server is still in.
struct StepFailure {
    error: Error,
    left: Left,
    still_in: Option<Phase>,
}

impl StepFailure {
    fn of<S: HasObservation>(e: OpError<S>) -> StepFailure {
        StepFailure {
            still_in: e.state.as_ref().map(|s| s.phase()),
            left: e.left,
            error: e.error,
        }
    }
}

/// The phase a state the core gave back is in.
trait HasObservation {
    fn phase(&self) -> Phase;
}

impl HasObservation for () {
    fn phase(&self) -> Phase {
        Phase::Unknown
    }
}

impl HasObservation for hotreload_core::Steady {
    fn phase(&self) -> Phase {
        self.observation().phase
    }
}

impl HasObservation for hotreload_core::Spawned {
    fn phase(&self) -> Phase {
        self.observation().phase
    }
}

fn observation_of(state: &State) -> Option<&Observation> {
    #[allow(unreachable_patterns)] // State is non-exhaustive
    match state {
        State::Steady(s) => Some(s.observation()),
        State::Spawned(s) => Some(s.observation()),
        State::Drained(s) => Some(s.observation()),
        State::Unknown(obs) => Some(obs),
        _ => None,
    }
}

/// What only `drain` takes.
#[derive(Debug, Clone, Copy, Default)]
pub struct DrainFlags {
    /// Stop the old workers at once instead of waiting for them.
    pub terminate: bool,
    /// Drain even when it orphans listening sockets.
    pub allow_orphaned_sockets: bool,
}

pub fn step(
    cmd: StepCmd,
    args: &StepArgs,
    drain: DrainFlags,
    printer: &Printer,
    watch: &Watch,
) -> Report {
    let terminate = drain.terminate;
    let pid_file = args.target.pid_file.clone();
    let target = target_of(&args.target, None);
    let options = with_timeouts(UpgradeOptions::new(), &args.timeouts)
        .require_pidfd(args.require_pidfd)
        .allow_orphaned_sockets(drain.allow_orphaned_sockets)
        .cancel_token(watch.token());
    let ops = options.op_options();
    let body = Body::Step {
        cmd,
        journal_only: false,
    };

    if let Some(report) = no_such_pid_file(cmd.command(), &args.target, body.clone()) {
        return report;
    }
    // Look first, so that bad input (a missing or foreign pid file) is reported as what it
    // is rather than as a lock-file problem, and no lock file is created for it.
    let state = match target.attach() {
        Ok(state) => state,
        Err(err) => return refusal(cmd.command(), &err, &pid_file, body),
    };
    let Some(before) = observation_of(&state).cloned() else {
        let message = format!(
            "`hotreload {}` needs the phase to be {}, and it could not be determined",
            cmd.name(),
            cmd.wants()
        );
        return Report::new(cmd.command(), OutcomeKind::Refused, Exit::Refused, pid_file)
            .with_failure(message, Some(CoreAdvice::FixAndRetry.into()));
    };
    // A steady server with a journal is an upgrade killed between the swap and the spawn
    // (or after the old master went away): commit and rollback finish its executable part.
    let pending = target.pending_journal();
    let journal_only = before.phase == Phase::Steady && pending.is_some();
    let journal = pending.unwrap_or_else(|| target.legacy_journal_file());
    // `rollback` is the one command for an unknown phase: an upgrade killed inside its
    // spawn wait leaves `.oldbin`, no pid file and a hung new master (the core checks
    // exactly that, and refuses anything else with the evidence).
    let fits = match (cmd, before.phase) {
        (StepCmd::Spawn, Phase::Steady) | (StepCmd::Drain, Phase::Spawned) => true,
        (StepCmd::Commit, Phase::Drained) => true,
        (StepCmd::Rollback, Phase::Spawned | Phase::Drained | Phase::Spawning | Phase::Unknown) => {
            true
        }
        (StepCmd::Commit | StepCmd::Rollback, Phase::Steady) => journal_only,
        _ => false,
    };
    if !fits {
        return wrong_phase(cmd, before, &pid_file);
    }
    let (old, new) = pids_of(&before);
    match (cmd, before.phase) {
        (StepCmd::Rollback, Phase::Steady) => {
            printer.notice(&Notice::JournalRollback { journal: &journal })
        }
        (StepCmd::Commit, Phase::Steady) => {
            printer.notice(&Notice::JournalCommit { journal: &journal })
        }
        (StepCmd::Rollback, Phase::Unknown | Phase::Spawning) => {
            printer.notice(&Notice::UnknownRollback {
                pid_file: &pid_file,
                obs: &before,
            })
        }
        _ => printer.notice(&Notice::Step { cmd, old, new }),
    }

    let tracker = watch.observer(printer);
    let witness = Witness {
        inner: &tracker,
        steps: RefCell::new(Vec::new()),
    };
    let outcome: Result<Observation, StepFailure> = match cmd {
        StepCmd::Rollback => rollback(&target, &options, &witness).map_err(StepFailure::of),
        StepCmd::Commit => finish(&target, &options, &witness).map_err(StepFailure::of),
        StepCmd::Spawn | StepCmd::Drain => {
            // The same lock `upgrade` takes: a step must never interleave with an upgrade.
            let _lock = match target.lock() {
                Ok(lock) => lock,
                Err(err) => return refusal(cmd.command(), &err, &pid_file, body),
            };
            // Under the lock, look again: that is the state the operation starts from.
            match target.attach() {
                Ok(State::Steady(steady)) if cmd == StepCmd::Spawn => steady
                    .spawn_new_master(ops, &witness)
                    .map(|s| s.observation().clone())
                    .map_err(StepFailure::of),
                Ok(State::Spawned(spawned)) if cmd == StepCmd::Drain => {
                    let drained = if terminate {
                        spawned.terminate_old_workers(ops, &witness)
                    } else {
                        spawned.drain_old_workers(ops, &witness)
                    };
                    drained
                        .map(|s| s.observation().clone())
                        .map_err(StepFailure::of)
                }
                Ok(state) => match observation_of(&state) {
                    Some(obs) => return wrong_phase(cmd, obs.clone(), &pid_file),
                    None => return wrong_phase(cmd, before, &pid_file),
                },
                Err(err) => return refusal(cmd.command(), &err, &pid_file, body),
            }
        }
    };
    let steps = witness.steps.take();
    let body = Body::Step { cmd, journal_only };

    match outcome {
        Ok(after) => {
            // `old` is always the master from before the upgrade, `new` the one it started.
            let new = match cmd {
                StepCmd::Spawn => pids_of(&after).1,
                _ => new,
            };
            // A signal that came too late to stop it (a commit past the old master's QUIT).
            let exit = watch.signal().map_or(Exit::Success, Exit::Interrupted);
            let mut report = Report::new(cmd.command(), OutcomeKind::Ok, exit, pid_file);
            report.changed = true;
            report.old_pid = old;
            report.new_pid = new;
            report.steps = steps;
            report.state = Some(after);
            report.body = body;
            report
        }
        Err(failure) if matches!(failure.error, Error::Cancelled { .. }) => {
            let signal = watch.signal().unwrap_or(libc::SIGINT);
            let mut message = String::new();
            let state = observe_after(&target, &mut message);
            let phase = state.as_ref().map(|o| o.phase);
            let left = match (failure.left, phase) {
                (Left::Untouched, _) => "nothing was changed".to_owned(),
                (Left::Reverted, _) => "what it had started was undone".to_owned(),
                (_, Some(phase)) => format!("the server is left in phase `{phase}`"),
                (_, None) => "the server could not be observed afterwards".to_owned(),
            };
            let message = format!(
                "{}{message}",
                interrupted_message(signal, &failure.error, &left)
            );
            let advice = match phase {
                Some(phase) => CoreAdvice::Next { phase },
                None => CoreAdvice::ManualAction { phase: None },
            };
            let exit = Exit::Interrupted(signal);
            let mut report = Report::new(cmd.command(), OutcomeKind::Interrupted, exit, pid_file)
                .with_failure(message, Some(advice.into()));
            report.changed = failure.left != Left::Untouched;
            report.old_pid = old;
            report.new_pid = new;
            report.steps = steps;
            report.state = state;
            report.body = body;
            report
        }
        Err(failure) if failure.left == Left::Untouched => {
            // The core says nothing changed: the state is the one just named.
            let mut report = refusal(cmd.command(), &failure.error, &pid_file, body);
            report.steps = steps;
            report
        }
        Err(failure) => {
            let mut message = error_chain(&failure.error);
            // Back where it started before the upgrade (steady, old version): rolled
            // back (1). Anything else needs a person (5).
            let exit = if failure.left == Left::Reverted
                || (cmd == StepCmd::Spawn && failure.still_in == Some(Phase::Steady))
            {
                Exit::RolledBack
            } else {
                Exit::Unrecovered
            };
            let state = observe_after(&target, &mut message);
            let phase = state.as_ref().map(|o| o.phase);
            let advice = Advice::from(CoreAdvice::for_failure(&failure.error, failure.left, phase));
            let mut report =
                Report::new(cmd.command(), OutcomeKind::of_failure(exit), exit, pid_file)
                    .with_failure(message, Some(advice));
            report.changed = true;
            report.steps = steps;
            report.state = state;
            report.body = body;
            report
        }
    }
}

/// Refuses a step command that does not fit the current phase, naming the phase and
/// the command that does fit. Nothing has been signalled at this point.
fn wrong_phase(cmd: StepCmd, obs: Observation, pid_file: &Path) -> Report {
    let message = if obs.phase == Phase::Unknown {
        format!(
            "refusing `hotreload {}`: {}; nothing was changed",
            cmd.name(),
            unknown_state_message(&obs, pid_file)
        )
    } else {
        format!(
            "refusing `hotreload {}`: the server of {} is in phase `{}`, and {} needs `{}`; nothing was changed",
            cmd.name(),
            pid_file.display(),
            obs.phase.as_str(),
            cmd.name(),
            cmd.wants()
        )
    };
    let (old, new) = pids_of(&obs);
    let mut report = Report::new(
        cmd.command(),
        OutcomeKind::Refused,
        Exit::Refused,
        pid_file.into(),
    )
    .with_failure(message, Some(CoreAdvice::for_phase(obs.phase).into()));
    report.old_pid = old;
    report.new_pid = new;
    report.state = Some(obs);
    report.body = Body::WrongPhase;
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_kinds_map_to_their_codes() {
        assert_eq!(exit_of_failure(&FailureKind::Refused), Exit::Refused);
        assert_eq!(exit_of_failure(&FailureKind::Locked), Exit::Locked);
        assert_eq!(exit_of_failure(&FailureKind::RolledBack), Exit::RolledBack);
        assert_eq!(
            exit_of_failure(&FailureKind::Unrecovered),
            Exit::Unrecovered
        );
    }

    #[test]
    fn only_upgrades_that_did_something_are_changes() {
        assert_eq!(
            outcome_of(Outcome::Committed),
            (OutcomeKind::Committed, true)
        );
        assert_eq!(outcome_of(Outcome::KeptOld), (OutcomeKind::KeptOld, true));
        assert_eq!(outcome_of(Outcome::DryRun), (OutcomeKind::DryRun, false));
    }

    #[test]
    fn error_chain_skips_sources_already_in_the_message() {
        #[derive(Debug)]
        struct Outer(std::io::Error, bool);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                if self.1 {
                    write!(f, "failed to read `/run/x.pid`: {}", self.0)
                } else {
                    write!(f, "failed to read `/run/x.pid`")
                }
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let denied = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(
            error_chain(&Outer(denied(), false)),
            "failed to read `/run/x.pid`: permission denied"
        );
        assert_eq!(
            error_chain(&Outer(denied(), true)),
            "failed to read `/run/x.pid`: permission denied"
        );
    }
}
