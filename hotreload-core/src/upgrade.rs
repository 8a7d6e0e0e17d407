//! The whole upgrade pipeline on top of the typed operations, with its gates:
//!
//! lock (held throughout) → preflight (refuses before anything changes) → config test →
//! swap (journal first) → spawn → health → drain → health → retire and commit (or stop
//! there with `keep_old`). Any failure after the swap rolls back automatically, from
//! whatever phase the live system shows, and says so ([`FailureKind::RolledBack`]); a
//! rollback that fails leaves [`FailureKind::Unrecovered`] with the observation.
//! The pipeline prints nothing: it reports to the caller's [`Observer`] and returns an
//! [`UpgradeReport`] with per-step durations.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::event::{Event, Observer, Role, Step};
use crate::flavor::TitleArgs;
use crate::health::HealthCheck;
use crate::journal::Journal;
use crate::model::{error_chain, MasterInfo, Observation, Target};
use crate::ops::{installed_binary, spawn_would_be_ignored, Ctx, OpOptions, State, Steady};
use crate::pid::Pid;
use crate::process::ProcessHandle;
use crate::procfs::{self, ProcInfo};
use crate::swap::{self, SwapKind, SwapRecord};

/// How long a health check may keep failing after the drain before the upgrade rolls
/// back (at most the health timeout).
pub const HEALTH_REGRESSION: Duration = Duration::from_millis(250);

/// What to do when old workers still run at the drain deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DrainTimeoutAction {
    /// Roll the upgrade back (the default: nothing is forced on anyone's requests).
    #[default]
    RollBack,
    /// Stop the remaining old workers at once (fast stop) and go on.
    TerminateWorkers,
}

/// Options of [`upgrade()`]; build with [`UpgradeOptions::new`] and the setters.
#[non_exhaustive]
pub struct UpgradeOptions {
    new_binary: Option<PathBuf>,
    binary: Option<PathBuf>,
    swap: SwapKind,
    config_test: bool,
    health_checks: Vec<Box<dyn HealthCheck>>,
    health_timeout: Duration,
    ops: OpOptions,
    keep_old: bool,
    dry_run: bool,
    on_drain_timeout: DrainTimeoutAction,
}

impl fmt::Debug for UpgradeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let checks: Vec<String> = self.health_checks.iter().map(|c| c.describe()).collect();
        f.debug_struct("UpgradeOptions")
            .field("new_binary", &self.new_binary)
            .field("binary", &self.binary)
            .field("swap", &self.swap)
            .field("config_test", &self.config_test)
            .field("health_checks", &checks)
            .field("health_timeout", &self.health_timeout)
            .field("ops", &self.ops)
            .field("keep_old", &self.keep_old)
            .field("dry_run", &self.dry_run)
            .field("on_drain_timeout", &self.on_drain_timeout)
            .finish()
    }
}

impl Default for UpgradeOptions {
    fn default() -> Self {
        UpgradeOptions::new()
    }
}

impl UpgradeOptions {
    /// Defaults: rename swap, config test on, no health checks (10 s each when added),
    /// spawn 30 s, drain 60 s, quit 30 s, retire the old master, roll back on a drain
    /// timeout.
    pub fn new() -> Self {
        UpgradeOptions {
            new_binary: None,
            binary: None,
            swap: SwapKind::Rename,
            config_test: true,
            health_checks: Vec::new(),
            health_timeout: Duration::from_secs(10),
            ops: OpOptions::default(),
            keep_old: false,
            dry_run: false,
            on_drain_timeout: DrainTimeoutAction::RollBack,
        }
    }

    /// The new executable to install (not needed with [`SwapKind::None`]).
    pub fn new_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.new_binary = Some(path.into());
        self
    }

    /// The executable path the master runs (default: the target's, else the master's
    /// `argv[0]`).
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// How to install the new executable.
    pub fn swap(mut self, kind: SwapKind) -> Self {
        self.swap = kind;
        self
    }

    /// Whether to test the master's configuration with the new executable first.
    pub fn config_test(mut self, on: bool) -> Self {
        self.config_test = on;
        self
    }

    /// Adds a health check, run after the spawn and after the drain.
    pub fn health_check(mut self, check: Box<dyn HealthCheck>) -> Self {
        self.health_checks.push(check);
        self
    }

    /// How long each health check may keep failing before the upgrade rolls back (after the
    /// drain, a check that fails for [`HEALTH_REGRESSION`] rolls back at once).
    pub fn health_timeout(mut self, timeout: Duration) -> Self {
        self.health_timeout = timeout;
        self
    }

    /// Deadline for the new master to start (see [`OpOptions::spawn_timeout`]).
    pub fn spawn_timeout(mut self, timeout: Duration) -> Self {
        self.ops.spawn_timeout = timeout;
        self
    }

    /// Deadline for the old workers to exit (see [`OpOptions::drain_timeout`]).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.ops.drain_timeout = timeout;
        self
    }

    /// Deadline for a master to exit (see [`OpOptions::quit_timeout`]).
    pub fn quit_timeout(mut self, timeout: Duration) -> Self {
        self.ops.quit_timeout = timeout;
        self
    }

    /// Stop after the drain, keeping the old master (without workers) for an instant
    /// rollback; finish later with [`crate::Drained::retire_old`] or roll back.
    pub fn keep_old(mut self, keep: bool) -> Self {
        self.keep_old = keep;
        self
    }

    /// Only run the preflight checks (and the config test) and report the plan.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// What to do when old workers still run at the drain deadline.
    pub fn on_drain_timeout(mut self, action: DrainTimeoutAction) -> Self {
        self.on_drain_timeout = action;
        self
    }

    /// Refuses the upgrade on a kernel without pidfds instead of falling back to pid +
    /// start time and `kill(2)` ([`Error::PidfdRequired`], [`FailureKind::Refused`]).
    pub fn require_pidfd(mut self, on: bool) -> Self {
        self.ops.require_pidfd = on;
        self
    }

    /// The deadlines, as options of the typed operations.
    pub fn op_options(&self) -> &OpOptions {
        &self.ops
    }
}

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
}

impl Outcome {
    /// `committed`, `kept-old` or `dry-run`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Committed => "committed",
            Outcome::KeptOld => "kept-old",
            Outcome::DryRun => "dry-run",
        }
    }
}

/// How long one step took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct StepTiming {
    /// The step.
    pub step: Step,
    /// Its duration.
    pub duration: Duration,
}

/// One preflight check and its result.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl FailureKind {
    /// `refused`, `locked`, `rolled-back` or `unrecovered`.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Refused => "refused",
            FailureKind::Locked => "locked",
            FailureKind::RolledBack => "rolled-back",
            FailureKind::Unrecovered => "unrecovered",
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
    /// What the upgrade did before it stopped (boxed, like the fields below, so that
    /// `Result<_, UpgradeError>` stays small).
    pub report: Box<UpgradeReport>,
    /// What runs now, when it was observed after the failure.
    pub observation: Option<Box<Observation>>,
    /// For `Unrecovered`: why the rollback failed.
    pub rollback_error: Option<Box<Error>>,
}

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FailureKind::Refused => write!(f, "upgrade refused: {}", self.error),
            FailureKind::Locked => write!(f, "upgrade not started: {}", self.error),
            FailureKind::RolledBack => {
                write!(f, "upgrade failed and was rolled back: {}", self.error)
            }
            FailureKind::Unrecovered => {
                write!(
                    f,
                    "upgrade failed and could not be rolled back: {}",
                    self.error
                )?;
                if let Some(e) = &self.rollback_error {
                    write!(f, "; rollback failed: {}", error_chain(e))?;
                }
                if let Some(o) = &self.observation {
                    write!(f, "; now: {o}")?;
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

/// Forwards events to the caller's observer and keeps what the report needs.
struct Recorder<'a> {
    inner: &'a dyn Observer,
    steps: RefCell<Vec<StepTiming>>,
    signalled_old_master: Cell<bool>,
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
            Event::Signalled {
                role: Role::OldMaster,
                ..
            } => self.signalled_old_master.set(true),
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
/// [`UpgradeError`] whose [`kind`](UpgradeError::kind) says whether anything changed.
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
            signalled_old_master: Cell::new(false),
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
        UpgradeError {
            kind,
            error,
            report: Box::new(self.report()),
            observation: observation.map(Box::new),
            rollback_error: None,
        }
    }

    fn run(&self) -> Result<UpgradeReport, UpgradeError> {
        let ctx = self.ctx();
        let _lock = ctx
            .step(Step::Lock, || self.target.lock())
            .map_err(|e| match e {
                e @ Error::Locked { .. } => self.fail(FailureKind::Locked, e, None),
                e => self.fail(FailureKind::Refused, e, None),
            })?;
        let (steady, plan) = ctx.step(Step::Preflight, || self.preflight(&ctx))?;
        for line in &plan.steps {
            ctx.emit(Event::Decision {
                message: format!("plan: {line}"),
            });
        }
        self.report.borrow_mut().plan = plan.steps.clone();
        if self.opts.config_test {
            ctx.step(Step::ConfigTest, || {
                self.config_test(&ctx, steady.master(), &plan)
            })?;
        }
        if self.opts.dry_run {
            return Ok(self.report());
        }
        let old = (steady.master_pid(), steady.master().start_time);
        if let Err(e) = ctx.step(Step::Swap, || self.swap(&plan, &steady)) {
            // A swap refuses before changing anything, but one that failed half-way
            // (say, after the rename) must be undone like any later failure.
            let unchanged = self.opts.swap == SwapKind::None
                || procfs::runs_file(old.0, &plan.binary).unwrap_or(false);
            if unchanged {
                let _ = crate::journal::remove(&self.target.journal_file());
                return Err(self.fail(FailureKind::Refused, e, None));
            }
            return Err(self.roll_back(e, Some(State::Steady(steady)), old));
        }
        // From here on, every failure rolls back.
        let spawned = match steady.spawn_new_master(&self.opts.ops, &self.recorder) {
            Ok(s) => s,
            Err(e) => return Err(self.roll_back(e.error, e.state.map(State::Steady), old)),
        };
        self.report.borrow_mut().new_pid = Some(spawned.new_pid());
        let new_workers = NewWorkers::of(&spawned);
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
            ctx.emit(Event::Decision {
                message: format!(
                    "keeping old master {} without workers: retire it or roll back later",
                    drained.old_pid()
                ),
            });
            return Ok(self.report());
        }
        self.recorder.signalled_old_master.set(false);
        match drained.retire_old(&self.opts.ops, &self.recorder) {
            Ok(_) => Ok(self.report()),
            Err(e) if !self.recorder.signalled_old_master.get() => {
                Err(self.roll_back(e, None, old))
            }
            Err(e) => {
                // The old master was told to stop: there is nothing to go back to.
                let observation = self.target.observe().ok();
                Err(self.fail(FailureKind::Unrecovered, e, observation))
            }
        }
    }

    /// Checks everything that can be checked before changing anything.
    fn preflight(&self, ctx: &Ctx<'_>) -> Result<(Steady, Plan), UpgradeError> {
        let target = self.target;
        let refuse = |e| self.fail(FailureKind::Refused, e, None);
        // Before anything else: without pidfds, refuse if they are required, else report
        // the fallback (once: the recorder drops the operations' repeats).
        ctx.pidfd_gate().map_err(refuse)?;
        let state = target.attach().map_err(refuse)?;
        let steady = match state {
            State::Steady(s) => s,
            other => {
                let observation = other.observation().clone();
                let error = Error::Preflight {
                    check: "steady".into(),
                    detail: format!(
                        "the server is not in steady phase but {}: {}; finish or roll back the \
                         upgrade in progress first",
                        observation.phase,
                        observation.evidence.join("; ")
                    ),
                };
                self.check(ctx, "steady", false, error.to_string());
                return Err(self.fail(FailureKind::Refused, error, Some(observation)));
            }
        };
        let master = steady.master().clone();
        self.report.borrow_mut().old_pid = Some(master.pid);
        self.check(
            ctx,
            "steady",
            true,
            format!(
                "master {} with {} workers",
                master.pid,
                master.workers.len()
            ),
        );
        let info = procfs::proc_info(master.pid).map_err(refuse)?;
        let mut failures = Vec::new();
        let mut record = |name: &str, result: Result<String, String>| match result {
            Ok(detail) => self.check(ctx, name, true, detail),
            Err(detail) => {
                self.check(ctx, name, false, detail.clone());
                failures.push(Error::Preflight {
                    check: name.into(),
                    detail,
                });
            }
        };
        record("no-journal", self.no_journal());
        record("catches-spawn-signal", self.catches_spawn(&info));
        record(
            "spawn-not-ignored",
            match spawn_would_be_ignored(&info) {
                None => Ok("the master is daemonized: it acts on the spawn signal".into()),
                Some(reason) => Err(reason),
            },
        );
        let argv = target.flavor_ref().master_argv(&master.cmdline);
        let argv0 = PathBuf::from(argv.first().cloned().unwrap_or_default());
        let argv0_kept = target.flavor_ref().title_args() != TitleArgs::ArgsAfterMasterMarker;
        record(
            "argv0-absolute",
            if !argv0_kept {
                Ok(format!(
                    "the {} title does not keep argv[0]'s path: the master re-executes its own \
                     start command, run by `{}`",
                    target.flavor_ref().name(),
                    master.exe.as_deref().unwrap_or(Path::new("?")).display()
                ))
            } else if argv0.is_absolute() {
                Ok(format!("the master was started as `{}`", argv0.display()))
            } else {
                Err(format!(
                    "the master was started as `{}`, a relative path: nginx executes argv[0] \
                     verbatim relative to its working directory on the spawn signal; restart it \
                     once with an absolute path",
                    argv0.display()
                ))
            },
        );
        let binary = installed_binary(target, &master);
        if argv0_kept {
            record("binary-is-argv0", self.binary_is_argv0(&binary, &argv0));
        }
        // With no swap, the file already at the binary path is the new executable.
        let new_binary = match (&self.opts.new_binary, self.opts.swap) {
            (_, SwapKind::None) => Some(binary.clone()),
            (Some(path), _) => Some(path.clone()),
            (None, _) => None,
        };
        match &new_binary {
            None => record(
                "new-binary",
                Err(format!(
                    "no new executable given (needed for the {} swap)",
                    self.opts.swap
                )),
            ),
            Some(new) => {
                if self.opts.swap != SwapKind::None {
                    record(
                        "binary-is-running",
                        self.binary_is_running(&master, &binary),
                    );
                }
                record("new-binary", self.new_binary_ok(&master, new));
                if self.opts.swap == SwapKind::None {
                    record(
                        "new-binary-differs",
                        Ok(match self.differs(&master, new) {
                            Ok(detail) => detail,
                            Err(same) => format!(
                                "no swap: the code already in place starts ({same}; expected \
                                 when it runs an interpreter, as unicorn and gunicorn do)"
                            ),
                        }),
                    );
                } else {
                    record("new-binary-differs", self.differs(&master, new));
                }
            }
        }
        if let Some(error) = failures.into_iter().next() {
            return Err(self.fail(
                FailureKind::Refused,
                error,
                Some(steady.observation().clone()),
            ));
        }
        let new_binary = new_binary.expect("checked above");
        let plan = Plan::new(self, &master, binary, new_binary, argv);
        Ok((steady, plan))
    }

    fn check(&self, ctx: &Ctx<'_>, name: &str, ok: bool, detail: String) {
        ctx.emit(Event::Check {
            name: name.into(),
            ok,
            detail: detail.clone(),
        });
        self.report.borrow_mut().preflight.push(Check {
            name: name.into(),
            ok,
            detail,
        });
    }

    fn no_journal(&self) -> Result<String, String> {
        let path = self.target.journal_file();
        match Journal::read(&path) {
            Ok(None) => Ok(format!("no unfinished upgrade ({} absent)", path.display())),
            Ok(Some(j)) => Err(format!(
                "an earlier upgrade (of master {}) left its journal at {}: it did not finish; \
                 roll it back or commit it first",
                j.old_master,
                path.display()
            )),
            Err(e) => Err(error_chain(&e)),
        }
    }

    fn catches_spawn(&self, info: &ProcInfo) -> Result<String, String> {
        let signal = self.target.flavor_ref().signals().spawn;
        if info.caught.contains(signal) {
            Ok(format!("master {} has a handler for {signal}", info.pid))
        } else {
            Err(Error::NotCatching {
                pid: info.pid,
                signal,
                ignored: info.ignored.contains(signal),
            }
            .to_string())
        }
    }

    fn binary_is_argv0(&self, binary: &Path, argv0: &Path) -> Result<String, String> {
        // The same path, or paths that resolve to the same name: swapping one then swaps
        // the other. A hard link to the same file is not enough (a rename replaces one name).
        let resolves_to_argv0 =
            || -> io::Result<bool> { Ok(fs::canonicalize(binary)? == fs::canonicalize(argv0)?) };
        if binary == argv0 || resolves_to_argv0().unwrap_or(false) {
            Ok(format!(
                "`{}` is what the master executes on the spawn signal",
                binary.display()
            ))
        } else {
            Err(format!(
                "the master executes `{}` (its argv[0]) on the spawn signal, not `{}`: swapping \
                 `{}` would not change what starts",
                argv0.display(),
                binary.display(),
                binary.display()
            ))
        }
    }

    fn binary_is_running(&self, master: &MasterInfo, binary: &Path) -> Result<String, String> {
        let running = PathBuf::from(format!("/proc/{}/exe", master.pid));
        match procfs::runs_file(master.pid, binary) {
            Ok(true) => Ok(format!("master {} runs `{}`", master.pid, binary.display())),
            // A copy of what it runs (a `copy` swap that was rolled back puts a copy back).
            Ok(false) if same_content(&running, binary).unwrap_or(false) => Ok(format!(
                "`{}` holds the same bytes as the executable master {} runs",
                binary.display(),
                master.pid
            )),
            Ok(false) => Err(format!(
                "master {} does not run `{}` (it runs `{}`{}): was the executable replaced \
                 already? then use the `none` swap",
                master.pid,
                binary.display(),
                master.exe.as_deref().unwrap_or(Path::new("?")).display(),
                if master.exe_deleted {
                    ", since deleted or replaced"
                } else {
                    ""
                }
            )),
            Err(e) => Err(error_chain(&e)),
        }
    }

    fn new_binary_ok(&self, master: &MasterInfo, new: &Path) -> Result<String, String> {
        let meta = fs::metadata(new).map_err(|e| format!("`{}`: {e}", new.display()))?;
        if !meta.is_file() {
            return Err(format!("`{}` is not a regular file", new.display()));
        }
        if meta.permissions().mode() & 0o111 == 0 {
            return Err(format!("`{}` is not executable (chmod +x)", new.display()));
        }
        let new_elf = elf_header(new).map_err(|e| format!("`{}`: {e}", new.display()))?;
        let running = elf_header(Path::new(&format!("/proc/{}/exe", master.pid)))
            .or_else(|_| elf_header(Path::new("/proc/self/exe")))
            .map_err(|e| format!("the running executable: {e}"))?;
        if new_elf != running {
            return Err(format!(
                "`{}` is an ELF executable for {}, but the master runs one for {}",
                new.display(),
                new_elf,
                running
            ));
        }
        Ok(format!(
            "`{}` is an executable for {}",
            new.display(),
            new_elf
        ))
    }

    fn differs(&self, master: &MasterInfo, new: &Path) -> Result<String, String> {
        let running = PathBuf::from(format!("/proc/{}/exe", master.pid));
        if same_file(&running, new).unwrap_or(false) {
            return Err(format!(
                "`{}` is the very file master {} runs: nothing to upgrade",
                new.display(),
                master.pid
            ));
        }
        match same_content(&running, new) {
            Ok(true) => Err(format!(
                "`{}` is identical to the executable master {} runs: nothing to upgrade",
                new.display(),
                master.pid
            )),
            Ok(false) => Ok(format!(
                "`{}` differs from the running executable",
                new.display()
            )),
            Err(e) => Err(format!("cannot compare with the running executable: {e}")),
        }
    }

    /// Runs the flavor's config test with the new executable and the master's options,
    /// in the master's working directory.
    fn config_test(
        &self,
        ctx: &Ctx<'_>,
        master: &MasterInfo,
        plan: &Plan,
    ) -> Result<(), UpgradeError> {
        let Some(args) = self.target.flavor_ref().config_test_args(&plan.argv) else {
            let reason = self
                .target
                .flavor_ref()
                .config_test_absent_reason()
                .unwrap_or_default();
            self.check(ctx, "config-test", true, reason);
            return Ok(());
        };
        let command = format!("{} {}", plan.new_binary.display(), args.join(" "));
        let cwd = fs::read_link(format!("/proc/{}/cwd", master.pid)).ok();
        match run_command(
            &plan.new_binary,
            &args,
            cwd.as_deref(),
            self.opts.ops.spawn_timeout,
        ) {
            Ok((true, _, _)) => {
                self.check(
                    ctx,
                    "config-test",
                    true,
                    format!("`{command}` accepts the configuration"),
                );
                Ok(())
            }
            Ok((false, status, output)) => {
                let error = Error::ConfigTest {
                    command,
                    status,
                    output: output.trim_end().to_string(),
                };
                self.check(ctx, "config-test", false, error.to_string());
                Err(self.fail(FailureKind::Refused, error, None))
            }
            Err(e) => {
                self.check(ctx, "config-test", false, error_chain(&e));
                Err(self.fail(FailureKind::Refused, e, None))
            }
        }
    }

    /// Writes the journal, then installs the new executable, then records what the
    /// install did. The first journal already names the backup-to-be, so a crash in the
    /// middle leaves enough for a later rollback.
    fn swap(&self, plan: &Plan, steady: &Steady) -> Result<(), Error> {
        let journal_path = self.target.journal_file();
        let master = steady.master();
        let new_binary = &plan.new_binary;
        let binary = std::path::absolute(&plan.binary).unwrap_or_else(|_| plan.binary.clone());
        let predicted = SwapRecord {
            kind: self.opts.swap,
            backup: matches!(self.opts.swap, SwapKind::Rename | SwapKind::Copy)
                .then(|| swap::backup_path_for(&binary)),
            previous_target: (self.opts.swap == SwapKind::Symlink)
                .then(|| fs::read_link(&binary).ok())
                .flatten(),
            binary,
            // Unknown yet (hashing is the install's job). With no digest, a restore from
            // this record treats a missing backup as "the old binary is still in place",
            // which is what a crash before the backup exists leaves.
            new_sha256: String::new(),
            new_size: 0,
        };
        let journal = |record: &SwapRecord| Journal {
            old_master: master.pid,
            old_start_time: master.start_time,
            swap: record.to_text(),
        };
        journal(&predicted).write(&journal_path)?;
        let record = swap::swap_for(self.opts.swap).install(&plan.binary, new_binary)?;
        journal(&record).write(&journal_path)
    }

    /// Runs every health check, each until it passes or the health timeout passes.
    /// Runs the health checks. After the spawn each check may fail until the health
    /// timeout (the new workers may still be warming up, and the old ones answer too).
    /// After the drain only the new build answers and every failure is its own: a check
    /// that keeps failing for [`HEALTH_REGRESSION`] fails at once, so that a bad build
    /// does not serve everyone for the whole health timeout.
    ///
    /// With `new` (after the spawn), a check that can tell which process answered
    /// counts only when a worker of the new master answered it (see
    /// [`Run::new_workers_check`]).
    fn health(
        &self,
        ctx: &Ctx<'_>,
        when: &str,
        fail_fast: bool,
        new: Option<&NewWorkers>,
    ) -> Result<(), Error> {
        if self.opts.health_checks.is_empty() {
            return Ok(());
        }
        ctx.step(Step::Health, || {
            self.run_health_checks(ctx, when, fail_fast, new)
        })
    }

    fn run_health_checks(
        &self,
        ctx: &Ctx<'_>,
        when: &str,
        fail_fast: bool,
        new: Option<&NewWorkers>,
    ) -> Result<(), Error> {
        for check in &self.opts.health_checks {
            if let Some(new) = new.filter(|_| check.attributes()) {
                self.new_workers_check(ctx, check.as_ref(), when, new)?;
                continue;
            }
            let name = check.describe();
            let timeout = self.opts.health_timeout;
            let mut last = String::new();
            let mut first_failure: Option<Instant> = None;
            let outcome =
                ctx.poll(
                    &format!("health check {name} ({when})"),
                    timeout,
                    || match check.check(timeout.min(Duration::from_secs(5))) {
                        Ok(()) => Ok(Some(true)),
                        Err(why) => {
                            last = why;
                            let since = *first_failure.get_or_insert_with(Instant::now);
                            let given_up = fail_fast && since.elapsed() >= HEALTH_REGRESSION;
                            Ok(given_up.then_some(false))
                        }
                    },
                )?;
            let ok = outcome == Some(true);
            ctx.emit(Event::Check {
                name: format!("health {when}: {name}"),
                ok,
                detail: if ok { "passed".into() } else { last.clone() },
            });
            if !ok {
                return Err(Error::HealthCheck {
                    check: name,
                    detail: last,
                });
            }
        }
        Ok(())
    }

    /// After the spawn, old and new workers accept on the same socket: an answer from an
    /// old worker proves nothing about the new build. Repeats `check` (a fresh
    /// connection each time, which the kernel hands to whichever worker accepts) until
    /// a worker of the new master answers it: its verdict is the check's, so one failing
    /// answer from a new worker fails at once. Answers from other processes are
    /// ignored. Without an answer from a new worker within the health timeout (or 200
    /// tries, spread over it: the pause grows from 1 ms to 20 ms, or to a 200th of the
    /// health timeout when that is longer), the check fails.
    fn new_workers_check(
        &self,
        ctx: &Ctx<'_>,
        check: &dyn HealthCheck,
        when: &str,
        new: &NewWorkers,
    ) -> Result<(), Error> {
        const MAX_TRIES: u32 = 200;
        const FIRST_PAUSE: Duration = Duration::from_millis(1);
        const MAX_PAUSE: Duration = Duration::from_millis(20);
        const PER_TRY: Duration = Duration::from_secs(5);
        const REPORT_EVERY: Duration = Duration::from_millis(500);
        let name = check.describe();
        let timeout = self.opts.health_timeout;
        let started = Instant::now();
        let deadline = started + timeout;
        let what = format!("health check {name} ({when}) to be answered by a new worker");
        let max_pause = MAX_PAUSE.max(timeout / MAX_TRIES);
        let mut pause = FIRST_PAUSE;
        let mut next_report = started;
        let (mut tries, mut by_old, mut unattributed) = (0u32, 0u32, 0u32);
        let mut last: Option<String> = None;
        let verdict: Result<String, String> = loop {
            let now = Instant::now();
            if now >= next_report {
                ctx.emit(Event::Waiting {
                    what: what.clone(),
                    elapsed: now - started,
                    timeout,
                });
                next_report = now + REPORT_EVERY;
            }
            let candidates = new.candidates();
            let per_try = deadline
                .saturating_duration_since(now)
                .clamp(Duration::from_millis(1), PER_TRY);
            let answer = check.check_served_by(per_try, &candidates);
            tries += 1;
            let outcome = |r: &Result<String, String>| match r {
                Ok(detail) => format!("passed ({detail})"),
                Err(why) => format!("failed ({why})"),
            };
            match answer.served_by {
                Some(pid) if new.is_new(pid) => {
                    ctx.emit(Event::Observed {
                        what: format!(
                            "health check {name} ({when}) answered by worker {pid} of the new \
                             master {} on try {tries}: {}",
                            new.master,
                            outcome(&answer.result)
                        ),
                    });
                    break answer
                        .result
                        .map_err(|why| format!("{why}, answered by new worker {pid}"));
                }
                Some(_) => by_old += 1,
                None => {
                    unattributed += 1;
                    last = answer
                        .note
                        .or_else(|| answer.result.err())
                        .or_else(|| Some("passed, but could not be attributed".into()));
                }
            }
            let now = Instant::now();
            if now >= deadline || tries >= MAX_TRIES {
                let mut why = format!(
                    "no worker of the new master {} answered the health check in {tries} \
                     tries over {:.1?} ({by_old} answered by old workers, {unattributed} \
                     not attributed)",
                    new.master,
                    now - started
                );
                if let Some(last) = &last {
                    why.push_str(&format!("; last unattributed: {last}"));
                }
                break Err(why);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(max_pause);
        };
        let ok = verdict.is_ok();
        let detail = match &verdict {
            Ok(d) => format!("passed: {d}"),
            Err(why) => why.clone(),
        };
        ctx.emit(Event::Check {
            name: format!("health {when}: {name}"),
            ok,
            detail: detail.clone(),
        });
        if ok {
            Ok(())
        } else {
            Err(Error::HealthCheck {
                check: name,
                detail,
            })
        }
    }

    /// Rolls back from whatever phase the system is in after `error`, and builds the
    /// error to return. `old` is the master (pid, start time) the upgrade started from.
    fn roll_back(&self, error: Error, state: Option<State>, old: (Pid, u64)) -> UpgradeError {
        let ctx = self.ctx();
        ctx.emit(Event::Decision {
            message: format!("{}: rolling back", error_chain(&error)),
        });
        let state = match state {
            Some(state) => Ok(state),
            None => self.attach_settled(&ctx),
        };
        let is_old = |pid: Pid, start: u64| (pid, start) == old;
        let result = match state {
            Ok(State::Steady(s)) if is_old(s.master_pid(), s.master().start_time) => {
                s.restore_binary(&self.opts.ops, &self.recorder)
            }
            Ok(State::Spawned(s)) if is_old(s.old_pid(), master_start(s.observation())) => {
                s.rollback(&self.opts.ops, &self.recorder)
            }
            Ok(State::Drained(s)) if is_old(s.old_pid(), master_start(s.observation())) => {
                s.rollback(&self.opts.ops, &self.recorder)
            }
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
                self.fail(FailureKind::RolledBack, error, Some(observation))
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

/// The processes an after-spawn health check must be answered by (the new master's
/// workers), and those whose answers are ignored (the old master's).
struct NewWorkers {
    master: Pid,
    /// The new master's workers when it was seen spawned.
    workers: Vec<Pid>,
    /// The old master's workers then.
    old: Vec<Pid>,
}

impl NewWorkers {
    fn of(spawned: &crate::ops::Spawned) -> NewWorkers {
        let pids = |m: &Option<MasterInfo>| -> Vec<Pid> {
            m.iter()
                .flat_map(|m| m.workers.iter().map(|w| w.pid))
                .collect()
        };
        let observation = spawned.observation();
        NewWorkers {
            master: spawned.new_pid(),
            workers: pids(&observation.new_master),
            old: pids(&observation.old_master),
        }
    }

    /// The new workers as seen at the spawn, plus the new master's children now (a
    /// worker it respawned since), then the old workers.
    fn candidates(&self) -> Vec<Pid> {
        let children = procfs::child_pids(self.master).unwrap_or_default();
        let mut pids = self.workers.clone();
        for pid in children.into_iter().chain(self.old.iter().copied()) {
            if !pids.contains(&pid) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Whether `pid` is the new master's: one of its workers at the spawn, or its child.
    fn is_new(&self, pid: Pid) -> bool {
        self.workers.contains(&pid)
            || procfs::proc_stat(pid).is_ok_and(|s| s.ppid == self.master.get())
    }
}

fn master_start(observation: &Observation) -> u64 {
    observation.old_master.as_ref().map_or(0, |m| m.start_time)
}

/// What preflight decided: which files, which arguments, and the plan in words.
struct Plan {
    binary: PathBuf,
    new_binary: PathBuf,
    argv: Vec<String>,
    steps: Vec<String>,
}

impl Plan {
    fn new(
        run: &Run<'_>,
        master: &MasterInfo,
        binary: PathBuf,
        new_binary: PathBuf,
        argv: Vec<String>,
    ) -> Self {
        let opts = run.opts;
        let signals = run.target.flavor_ref().signals();
        let secs = |d: Duration| format!("{:.0}s", d.as_secs_f64());
        let mut steps = Vec::new();
        if opts.config_test {
            steps.push(format!(
                "test the configuration with `{}`",
                new_binary.display()
            ));
        }
        if opts.swap == SwapKind::None {
            steps.push(format!("use `{}` as installed (no swap)", binary.display()));
        } else {
            steps.push(format!(
                "install `{}` at `{}` ({} swap, journal {})",
                new_binary.display(),
                binary.display(),
                opts.swap,
                run.target.journal_file().display()
            ));
        }
        steps.push(format!(
            "send {} to master {} and wait up to {} for the new master and its workers",
            signals.spawn,
            master.pid,
            secs(opts.ops.spawn_timeout)
        ));
        if !opts.health_checks.is_empty() {
            steps.push(format!("run {} health checks", opts.health_checks.len()));
        }
        steps.push(format!(
            "send {} to master {} and wait up to {} for its {} workers to exit",
            signals.stop_workers,
            master.pid,
            secs(opts.ops.drain_timeout),
            master.workers.len()
        ));
        if opts.keep_old {
            steps.push(format!(
                "keep master {} without workers for a rollback",
                master.pid
            ));
        } else {
            steps.push(format!(
                "send {} to master {} (then {} after {}), then drop the backup",
                signals.graceful_stop,
                master.pid,
                signals.fast_stop,
                secs(opts.ops.quit_timeout)
            ));
        }
        Plan {
            binary,
            new_binary,
            argv,
            steps,
        }
    }
}

fn same_file(a: &Path, b: &Path) -> io::Result<bool> {
    let (a, b) = (fs::metadata(a)?, fs::metadata(b)?);
    Ok(a.dev() == b.dev() && a.ino() == b.ino())
}

fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    if fs::metadata(a)?.len() != fs::metadata(b)?.len() {
        return Ok(false);
    }
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// The target of an ELF file: class and machine, for "is it for this machine?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ElfTarget {
    class: u8,
    machine: u16,
}

impl fmt::Display for ElfTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let machine = match self.machine {
            3 => "x86",
            8 => "MIPS",
            20 => "PowerPC",
            21 => "PowerPC64",
            22 => "s390",
            40 => "ARM",
            62 => "x86-64",
            183 => "AArch64",
            243 => "RISC-V",
            258 => "LoongArch",
            _ => "",
        };
        let bits = if self.class == 2 { 64 } else { 32 };
        if machine.is_empty() {
            write!(f, "machine {} ({bits}-bit)", self.machine)
        } else {
            write!(f, "{machine} ({bits}-bit)")
        }
    }
}

fn elf_header(path: &Path) -> Result<ElfTarget, String> {
    let mut header = [0u8; 20];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut header))
        .map_err(|e| format!("cannot read its header: {e}"))?;
    if header[..4] != *b"\x7fELF" {
        return Err("not an ELF executable (a script or a file for another system?)".into());
    }
    let machine = match header[5] {
        1 => u16::from_le_bytes([header[18], header[19]]),
        2 => u16::from_be_bytes([header[18], header[19]]),
        other => return Err(format!("unknown ELF byte order {other}")),
    };
    Ok(ElfTarget {
        class: header[4],
        machine,
    })
}

/// Runs `program args` with no input, in `cwd`, for at most `timeout`; returns
/// (success, status, stdout+stderr).
fn run_command(
    program: &Path,
    args: &[String],
    cwd: Option<&Path>,
    timeout: Duration,
) -> Result<(bool, String, String), Error> {
    let run_err = |source| Error::RunCommand {
        program: program.to_path_buf(),
        source,
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    let mut child = {
        let _no_staging = crate::swap::spawn_guard();
        command.spawn().map_err(run_err)?
    };
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let exited = Pid::try_from(child.id())
        .and_then(ProcessHandle::open)
        .and_then(|h| h.wait_exit(Instant::now() + timeout))
        // Our own child cannot vanish before we reap it; if it exited already, open
        // refuses it as a zombie.
        .unwrap_or(true);
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().map_err(run_err)?;
    let output = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    if !exited {
        return Ok((
            false,
            format!("killed after {:.0}s", timeout.as_secs_f64()),
            output,
        ));
    }
    Ok((status.success(), status.to_string(), output))
}

/// Rolls back an upgrade left in any phase by any process: from spawned or drained,
/// the typed rollback; from steady with a journal (the swap happened but the spawn did
/// not), the executable is put back; from a spawn left hanging, [`Target::abort_spawn`].
/// Any other unknown state is refused with its evidence. Takes the lock.
pub fn rollback(
    target: &Target,
    opts: &UpgradeOptions,
    observer: &dyn Observer,
) -> Result<Observation, Error> {
    let _lock = target.lock()?;
    let ops = &opts.ops;
    let steady = match target.attach()? {
        State::Steady(s) => s.restore_binary(ops, observer)?,
        State::Spawned(s) => s.rollback(ops, observer)?,
        State::Drained(s) => s.rollback(ops, observer)?,
        // Only one unknown shape can be rolled back: a spawn left hanging.
        State::Unknown(_) => target.abort_spawn(ops, observer)?,
    };
    Ok(steady.observation().clone())
}

/// Finishes an upgrade left in any phase by any process: from spawned, drains and
/// retires; from drained, retires; then commits the swap. Takes the lock.
pub fn finish(
    target: &Target,
    opts: &UpgradeOptions,
    observer: &dyn Observer,
) -> Result<Observation, Error> {
    let _lock = target.lock()?;
    let ops = &opts.ops;
    let steady = match target.attach()? {
        State::Spawned(s) => s
            .drain_old_workers(ops, observer)?
            .retire_old(ops, observer)?,
        State::Drained(s) => s.retire_old(ops, observer)?,
        State::Steady(s) => s.commit_binary(ops, observer)?,
        State::Unknown(o) => {
            return Err(Error::WrongPhase {
                operation: "finish the upgrade",
                expected: "spawned or drained",
                found: o.phase.to_string(),
                evidence: o.evidence,
            })
        }
    };
    Ok(steady.observation().clone())
}
