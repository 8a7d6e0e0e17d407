//! The whole upgrade pipeline on top of the typed operations, with its gates:
//!
//! lock (held throughout) → preflight (refuses before anything changes) → config test →
//! swap (journal first) → spawn → health → drain → health → retire and commit (or stop
//! there with `keep_old`). Any failure after the swap rolls back automatically, from
//! whatever phase the live system shows, and says so ([`FailureKind::RolledBack`]); a
//! rollback that fails leaves [`FailureKind::Unrecovered`] with the observation.
//! A cancel ([`UpgradeOptions::cancel_token`]) rolls back the same way and ends in
//! [`FailureKind::Cancelled`]. When the build that runs is already the one asked for,
//! nothing is done and the outcome is [`Outcome::Unchanged`].
//!
//! The pipeline prints nothing: it reports to the caller's [`Observer`] and returns an
//! [`UpgradeReport`] with per-step durations. Every call here blocks the calling thread
//! until it is over (at most the sum of its deadlines): from async code, run it with
//! `spawn_blocking` (see the crate documentation).
//!
//! Files: `options` (what to do), `report` (what was done, how it failed), `preflight`
//! (the checks), `health` (the gates), `plan` (the steps in words).

mod daemon;
mod health;
mod options;
mod plan;
mod preflight;
mod report;
mod systemd;

pub use options::{DrainTimeoutAction, UpgradeOptions, HEALTH_REGRESSION};
pub use report::{Check, FailureKind, Outcome, StepTiming, UpgradeError, UpgradeReport};

use std::cell::{Cell, RefCell};

use crate::error::Error;
use crate::event::{Event, Observer, Step};
use crate::journal::Journal;
use crate::lock::BinaryLock;
use crate::model::{error_chain, MasterInfo, Observation, Target};
use crate::ops::engine::Ctx;
use crate::ops::{Left, OpError, OpOptions, State};
use crate::pid::Pid;
use crate::swap::{Durability, SwapRecord, Undo};
use crate::wait::CancelToken;
use plan::Plan;

/// Forwards events to the caller's observer and keeps what the report needs.
struct Recorder<'a> {
    inner: &'a dyn Observer,
    steps: RefCell<Vec<StepTiming>>,
    /// The fallback is chosen once per process: report it once per upgrade, not per step.
    fallback_reported: Cell<bool>,
}

impl Observer for Recorder<'_> {
    fn on_event(&self, event: &Event) {
        match event {
            Event::StepFinished { step, duration } => self.steps.borrow_mut().push(StepTiming {
                step: *step,
                duration: *duration,
            }),
            Event::PidfdFallback { .. } if self.fallback_reported.replace(true) => return,
            _ => {}
        }
        self.inner.on_event(event);
    }
}

/// The running pipeline: the target, the options, the recorder and the report so far.
struct Run<'a> {
    target: &'a Target,
    opts: &'a UpgradeOptions,
    recorder: Recorder<'a>,
    report: RefCell<UpgradeReport>,
}

/// Upgrades the server of `target` to a new executable without dropping a connection.
///
/// See the [module documentation](self) for the steps. Returns the report, or an
/// [`UpgradeError`] whose [`kind`](UpgradeError::kind) and [`left`](UpgradeError::left)
/// say whether anything changed. Blocks until the upgrade is over.
///
/// ```no_run
/// use hotreload_core::{upgrade, Event, Target, UpgradeOptions};
///
/// let target = Target::new("/run/nginx.pid");
/// let options = UpgradeOptions::new().new_binary("/tmp/nginx-1.27");
/// let report = upgrade(&target, &options, &|e: &Event| eprintln!("{e}"))?;
/// println!("new master: {:?}", report.new_pid);
/// # Ok::<(), hotreload_core::UpgradeError>(())
/// ```
pub fn upgrade(
    target: &Target,
    opts: &UpgradeOptions,
    observer: &dyn Observer,
) -> Result<UpgradeReport, UpgradeError> {
    // The spawn checks what the new master runs against the target's executable path.
    let target = match &opts.binary {
        Some(binary) => target.clone().binary(binary.clone()),
        None => target.clone(),
    };
    let run = Run {
        target: &target,
        opts,
        recorder: Recorder {
            inner: observer,
            steps: RefCell::new(Vec::new()),
            fallback_reported: Cell::new(false),
        },
        report: RefCell::new(UpgradeReport {
            outcome: if opts.dry_run {
                Outcome::DryRun
            } else if opts.keep_old {
                Outcome::KeptOld
            } else {
                Outcome::Committed
            },
            old_pid: None,
            new_pid: None,
            steps: Vec::new(),
            preflight: Vec::new(),
            plan: Vec::new(),
            unchanged: false,
        }),
    };
    run.run()
}

impl Run<'_> {
    fn ctx(&self) -> Ctx<'_> {
        Ctx::new(self.target, &self.opts.ops, &self.recorder)
    }

    fn report(&self) -> UpgradeReport {
        let mut report = self.report.borrow().clone();
        report.steps = self.recorder.steps.borrow().clone();
        report
    }

    fn fail(
        &self,
        kind: FailureKind,
        error: Error,
        observation: Option<Observation>,
    ) -> UpgradeError {
        let left = match kind {
            FailureKind::Refused | FailureKind::Locked => Left::Untouched,
            FailureKind::RolledBack => Left::Reverted,
            FailureKind::Cancelled if self.report.borrow().new_pid.is_none() && !self.swapped() => {
                Left::Untouched
            }
            FailureKind::Cancelled => Left::Reverted,
            _ => Left::Changed {
                phase: observation
                    .as_ref()
                    .map_or(crate::model::Phase::Unknown, |o| o.phase),
            },
        };
        UpgradeError {
            kind,
            error,
            left,
            report: Box::new(self.report()),
            observation: observation.map(Box::new),
            rollback_error: None,
        }
    }

    /// Whether the swap step ran (it is in the report's steps).
    fn swapped(&self) -> bool {
        self.recorder
            .steps
            .borrow()
            .iter()
            .any(|s| s.step == Step::Swap)
    }

    /// Refuses with [`FailureKind::Cancelled`] (nothing changed) when cancelled before
    /// the swap.
    fn check_cancel(&self, ctx: &Ctx<'_>, before: &str) -> Result<(), UpgradeError> {
        ctx.waiter()
            .check_cancel(before)
            .map_err(|e| self.fail(FailureKind::Cancelled, e, None))
    }

    fn run(&self) -> Result<UpgradeReport, UpgradeError> {
        let ctx = self.ctx();
        let _lock = ctx
            .step(Step::Lock, || self.target.lock())
            .map_err(|e| match e {
                e @ Error::Locked { .. } => self.fail(FailureKind::Locked, e, None),
                e => self.fail(FailureKind::Refused, e, None),
            })?;
        self.check_cancel(&ctx, "preflight")?;
        let (steady, plan) = ctx.step(Step::Preflight, || self.preflight(&ctx))?;
        for line in &plan.steps {
            ctx.emit(Event::Decision {
                message: format!("plan: {line}"),
            });
        }
        self.report.borrow_mut().plan = plan.steps.clone();
        if plan.unchanged {
            ctx.emit(Event::Decision {
                message: "the running build is the one asked for: nothing to do".into(),
            });
            self.report.borrow_mut().outcome = if self.opts.dry_run {
                Outcome::DryRun
            } else {
                Outcome::Unchanged
            };
            self.report.borrow_mut().unchanged = true;
            return Ok(self.report());
        }
        // One swap per binary path: held until the upgrade is committed or rolled back
        // (both happen in this call). Taken on this thread, which commits or restores (the
        // lock is reentrant per thread), before the preparation runs beside the config test.
        let _binary_lock: Option<BinaryLock> = if self.opts.dry_run {
            None
        } else {
            let binary = std::path::absolute(&plan.binary).unwrap_or_else(|_| plan.binary.clone());
            match crate::journal::binary_lock(self.target, &binary) {
                Ok(lock) => Some(lock),
                Err(e @ Error::Locked { .. }) => {
                    return Err(self.fail(FailureKind::Locked, e, None))
                }
                Err(e) => return Err(self.fail(FailureKind::Refused, e, None)),
            }
        };
        // The config test and the swap's preparation only read the new binary: they run
        // side by side (the preparation on a scoped thread, the test here, where the
        // events are emitted in order). A failed test still leaves nothing changed: what
        // the preparation wrote is removed, nothing was renamed into place.
        let prepared = if self.opts.config_test {
            self.check_cancel(&ctx, "the config test")?;
            let (tested, prepared) = std::thread::scope(|scope| {
                // Only `Send + Sync` parts of the run cross (the recorder's cells do not).
                let (target, swap, planned, master) =
                    (self.target, &self.opts.swap, &plan, steady.master());
                let preparing = (!self.opts.dry_run)
                    .then(|| scope.spawn(move || prepare_swap(target, &**swap, planned, master)));
                let tested = ctx.step(Step::ConfigTest, || {
                    self.config_test(&ctx, steady.master(), &plan)
                });
                let prepared = preparing.map(|p| p.join().expect("the swap preparation panicked"));
                (tested, prepared)
            });
            if let Err(e) = tested {
                if let Some(Ok(prepared)) = prepared {
                    prepared.discard();
                }
                return Err(e);
            }
            prepared
        } else {
            None
        };
        if self.opts.dry_run {
            return Ok(self.report());
        }
        if let Err(e) = self.check_cancel(&ctx, "the swap") {
            if let Some(Ok(prepared)) = prepared {
                prepared.discard();
            }
            return Err(e);
        }
        let old = (steady.master_pid(), steady.master().start_time);
        let swapped = ctx.step(Step::Swap, || {
            let prepared = prepared
                .unwrap_or_else(|| {
                    prepare_swap(self.target, &*self.opts.swap, &plan, steady.master())
                })
                .map_err(SwapFailure::Before)?;
            self.swap(&ctx, &plan, &steady, prepared)
        });
        let durability = match swapped {
            Ok(durability) => durability,
            Err(SwapFailure::Before(e @ Error::Locked { .. })) => {
                return Err(self.fail(FailureKind::Locked, e, None))
            }
            Err(SwapFailure::Before(e)) => return Err(self.fail(FailureKind::Refused, e, None)),
            Err(SwapFailure::During(e, journal)) => {
                // A swap refuses before changing anything, but one that failed half-way
                // (say, after the rename) must be undone like any later failure.
                let unchanged = !self.opts.swap.installs()
                    || crate::procfs::runs_file(old.0, &plan.binary).unwrap_or(false);
                if unchanged {
                    let _ = crate::journal::remove(&journal);
                    return Err(self.fail(FailureKind::Refused, e, None));
                }
                return Err(self.roll_back(e, Some(State::Steady(steady)), old));
            }
        };
        // From here on, every failure rolls back.
        let spawned = match steady.spawn_new_master(&self.opts.ops, &self.recorder) {
            Ok(s) => s,
            Err(e) => return Err(self.roll_back(e.error, e.state.map(State::Steady), old)),
        };
        // The swap's directory fsync ran while the new master started; the rename must
        // be durable before anything is reported done (DESIGN.md §5).
        if let Err(e) = durability.complete() {
            return Err(self.roll_back(e, Some(State::Spawned(spawned)), old));
        }
        self.report.borrow_mut().new_pid = Some(spawned.new_pid());
        let new_workers = health::NewWorkers::of(&spawned);
        if let Err(e) = self.health(&ctx, "after spawn", false, Some(&new_workers)) {
            return Err(self.roll_back(e, Some(State::Spawned(spawned)), old));
        }
        let drained = match spawned.drain_old_workers(&self.opts.ops, &self.recorder) {
            Ok(d) => d,
            Err(e) => match (e.state, &e.error) {
                (Some(spawned), Error::DrainTimeout { .. })
                    if self.opts.on_drain_timeout == DrainTimeoutAction::TerminateWorkers =>
                {
                    ctx.emit(Event::Decision {
                        message: format!("{}: stopping them now", e.error),
                    });
                    match spawned.terminate_old_workers(&self.opts.ops, &self.recorder) {
                        Ok(d) => d,
                        Err(e) => {
                            return Err(self.roll_back(e.error, e.state.map(State::Spawned), old))
                        }
                    }
                }
                (state, _) => return Err(self.roll_back(e.error, state.map(State::Spawned), old)),
            },
        };
        if let Err(e) = self.health(&ctx, "after drain", true, None) {
            return Err(self.roll_back(e, Some(State::Drained(drained)), old));
        }
        if self.opts.keep_old {
            // Allowed at the drain, but the hold is when those connections are lost.
            match crate::ops::orphaned_sockets(drained.old_pid(), drained.new_pid()) {
                Ok(sockets) if !sockets.is_empty() => ctx.warning(format!(
                    "{}; kept, old master {} keeps them until it is retired or rolled back",
                    Error::OrphanedSockets {
                        old: drained.old_pid(),
                        new: drained.new_pid(),
                        sockets,
                    },
                    drained.old_pid()
                )),
                _ => {}
            }
            ctx.emit(Event::Decision {
                message: format!(
                    "keeping old master {} without workers: retire it or roll back later",
                    drained.old_pid()
                ),
            });
            return Ok(self.report());
        }
        match drained.retire_old(&self.opts.ops, &self.recorder) {
            Ok(_) => Ok(self.report()),
            Err(e) if e.left == Left::Untouched => {
                Err(self.roll_back(e.error, e.state.map(State::Drained), old))
            }
            Err(e) => {
                // The old master was told to stop: there is nothing to go back to.
                let observation = self.target.observe().ok();
                Err(self.fail(FailureKind::Unrecovered, e.error, observation))
            }
        }
    }

    /// Installs the new executable, then records what the install did in the journal
    /// that [`prepare_swap`] wrote (it already names the backup-to-be, so a crash in the
    /// middle leaves enough for a later rollback). Returns the install's durability work
    /// (its directory fsync, still running), to complete before the commit.
    fn swap(
        &self,
        ctx: &Ctx<'_>,
        plan: &Plan,
        steady: &crate::ops::Steady,
        prepared: Prepared,
    ) -> Result<Durability, SwapFailure> {
        let journal_path = prepared.journal_path.clone();
        let during = |e| SwapFailure::During(e, journal_path.clone());
        let installed = self
            .opts
            .swap
            .install_with(&plan.binary, &plan.new_binary, &self.opts.install)
            .map_err(during)?;
        for lost in &installed.lost_metadata {
            ctx.emit(Event::Warning {
                message: format!(
                    "the new executable at {} lacks the installed file's {lost} (allowed)",
                    installed.record.binary.display()
                ),
            });
        }
        swap_journal(steady.master(), &installed.record)
            .write(&prepared.journal_path)
            .map_err(during)?;
        Ok(installed.durability)
    }

    /// Rolls back from whatever phase the system is in after `error`, and builds the
    /// error to return. `old` is the master (pid, start time) the upgrade started from.
    /// The rollback itself ignores the cancel token: it is what a cancel asks for.
    fn roll_back(&self, error: Error, state: Option<State>, old: (Pid, u64)) -> UpgradeError {
        let ops = OpOptions {
            cancel: CancelToken::new(),
            ..self.opts.ops.clone()
        };
        let ctx = Ctx::new(self.target, &ops, &self.recorder);
        ctx.emit(Event::Decision {
            message: format!("{}: rolling back", error_chain(&error)),
        });
        let state = match state {
            Some(state) => Ok(state),
            None => self.attach_settled(&ctx),
        };
        let is_old = |pid: Pid, start: u64| (pid, start) == old;
        let result = match state {
            Ok(State::Steady(s)) if is_old(s.master_pid(), s.master().start_time) => s
                .restore_binary(&ops, &self.recorder)
                .map_err(OpError::into_error),
            Ok(State::Spawned(s)) if is_old(s.old_pid(), master_start(s.observation())) => s
                .rollback(&ops, &self.recorder)
                .map_err(OpError::into_error),
            Ok(State::Drained(s)) if is_old(s.old_pid(), master_start(s.observation())) => s
                .rollback(&ops, &self.recorder)
                .map_err(OpError::into_error),
            Ok(other) => Err(Error::WrongPhase {
                operation: "roll back",
                expected: "the original master in steady, spawned or drained phase",
                found: other.observation().to_string(),
                evidence: other.observation().evidence.clone(),
            }),
            Err(e) => Err(e),
        };
        match result {
            Ok(steady) => {
                let observation = steady.observation().clone();
                let kind = if matches!(error, Error::Cancelled { .. }) {
                    FailureKind::Cancelled
                } else {
                    FailureKind::RolledBack
                };
                self.fail(kind, error, Some(observation))
            }
            Err(rollback_error) => {
                ctx.emit(Event::Warning {
                    message: format!("rollback failed: {}", error_chain(&rollback_error)),
                });
                let mut failure =
                    self.fail(FailureKind::Unrecovered, error, self.target.observe().ok());
                failure.rollback_error = Some(Box::new(rollback_error));
                failure
            }
        }
    }

    /// Attaches, giving a target in transition (a master exiting, a pid file being
    /// renamed back) up to the quit timeout to settle into a known phase.
    fn attach_settled(&self, ctx: &Ctx<'_>) -> Result<State, Error> {
        let mut state = None;
        ctx.poll(
            "the server to settle in a known phase",
            self.opts.ops.quit_timeout,
            || match self.target.attach()? {
                State::Unknown(o) => {
                    state = Some(State::Unknown(o));
                    Ok(None)
                }
                known => Ok(Some(known)),
            },
        )?
        .or(state)
        .ok_or_else(|| Error::Timeout {
            pid: Pid::this_process().unwrap_or_else(|_| Pid::new(2).expect("2 is a valid pid")),
            what: "the server to settle".into(),
            timeout: self.opts.ops.quit_timeout,
        })
    }
}

/// What the swap's preparation left, to be used by the swap or discarded.
#[must_use = "a preparation is used by the swap or discarded"]
struct Prepared {
    journal_path: std::path::PathBuf,
}

impl Prepared {
    /// Undoes the preparation (the upgrade stops before the swap): nothing was installed.
    fn discard(self) {
        let _ = crate::journal::remove(&self.journal_path);
    }
}

/// The part of the swap that changes nothing a server or a restore depends on, so it
/// can run beside the config test: the first journal, which already names the
/// backup-to-be, so that a crash in what follows leaves enough for a later rollback.
///
/// Runs on a scoped thread, so it takes only `Send + Sync` parts of the run (no events).
/// The seam for staging the copy here too is [`Prepared`]: once `BinarySwap` can stage
/// (copy next to the binary, fsync) without renaming, the staged file goes in it, `swap`
/// only renames it in, and `discard` removes the staged file as well.
fn prepare_swap(
    target: &Target,
    swap: &dyn crate::swap::BinarySwap,
    plan: &Plan,
    master: &MasterInfo,
) -> Result<Prepared, Error> {
    let journal_path = crate::journal::home_path(target)?;
    let binary = std::path::absolute(&plan.binary).unwrap_or_else(|_| plan.binary.clone());
    // Another target's unfinished swap of the same file, or a backup already there (another
    // upgrade's), is refused before the journal is written: its rollback must never touch
    // that backup.
    crate::journal::check_no_other_swap(target, &journal_path, &binary)?;
    // Installed file unknown yet. Without it, a restore from this record treats a missing
    // backup as "the old binary is still in place", which is what a crash before the
    // backup exists leaves.
    let predicted = SwapRecord::new(swap.name(), binary.clone(), swap.predict(&binary));
    if let Undo::RestoreBackup { backup, .. } = &predicted.undo {
        if std::fs::symlink_metadata(backup).is_ok() {
            return Err(Error::Swap {
                path: backup.clone(),
                problem: format!(
                    "a backup already exists: an earlier upgrade of `{}` was neither committed \
                     nor rolled back; roll it back (which restores this backup) or, if the \
                     installed binary is known good, remove the backup",
                    binary.display()
                ),
            });
        }
    }
    swap_journal(master, &predicted).write(&journal_path)?;
    Ok(Prepared { journal_path })
}

/// The journal of a swap from `master`.
fn swap_journal(master: &MasterInfo, record: &SwapRecord) -> Journal {
    Journal {
        old_master: master.pid,
        old_start_time: master.start_time,
        swap: record.to_text(),
    }
}

fn master_start(observation: &Observation) -> u64 {
    observation.old_master.as_ref().map_or(0, |m| m.start_time)
}

/// Rolls back an upgrade left in any phase by any process: from spawned or drained,
/// the typed rollback; from steady with a journal (the swap happened but the spawn did
/// not), the executable is put back; from a spawn left hanging, [`Target::abort_spawn`].
/// Any other unknown state is refused with its evidence. Takes the lock. Blocks.
pub fn rollback(
    target: &Target,
    opts: &UpgradeOptions,
    observer: &dyn Observer,
) -> Result<Observation, OpError<()>> {
    let untouched = |error| OpError {
        state: None,
        error,
        left: Left::Untouched,
    };
    let _lock = target.lock().map_err(untouched)?;
    let ops = &opts.ops;
    let steady = match target.attach().map_err(untouched)? {
        State::Steady(s) => s.restore_binary(ops, observer).map_err(forget)?,
        State::Spawned(s) => s.rollback(ops, observer).map_err(forget)?,
        State::Drained(s) => s.rollback(ops, observer).map_err(forget)?,
        // Only one unknown shape can be rolled back: a spawn left hanging.
        State::Unknown(_) => target.abort_spawn(ops, observer).map_err(forget)?,
    };
    Ok(steady.observation().clone())
}

/// Finishes an upgrade left in any phase by any process: from spawned, drains and
/// retires; from drained, retires; then commits the swap. Takes the lock. Blocks.
pub fn finish(
    target: &Target,
    opts: &UpgradeOptions,
    observer: &dyn Observer,
) -> Result<Observation, OpError<()>> {
    let untouched = |error| OpError {
        state: None,
        error,
        left: Left::Untouched,
    };
    let _lock = target.lock().map_err(untouched)?;
    let ops = &opts.ops;
    let steady = match target.attach().map_err(untouched)? {
        State::Spawned(s) => {
            let drained = s.drain_old_workers(ops, observer).map_err(forget)?;
            drained.retire_old(ops, observer).map_err(forget)?
        }
        State::Drained(s) => s.retire_old(ops, observer).map_err(forget)?,
        State::Steady(s) => s.commit_binary(ops, observer).map_err(forget)?,
        State::Unknown(o) => {
            return Err(untouched(Error::WrongPhase {
                operation: "finish the upgrade",
                expected: "spawned or drained",
                found: o.phase.to_string(),
                evidence: o.evidence,
            }))
        }
    };
    Ok(steady.observation().clone())
}

/// How a swap failed: before the journal was written (nothing changed), or after (the
/// journal at the path may need undoing).
enum SwapFailure {
    Before(Error),
    During(Error, std::path::PathBuf),
}

/// The error and what it left, without the state (which the caller attaches again).
fn forget<S>(e: OpError<S>) -> OpError<()> {
    OpError {
        state: None,
        error: e.error,
        left: e.left,
    }
}
