//! The typed upgrade operations: each is legal only in its phase, has deadlines, and
//! returns the state it reached (or, on failure, the state it is still in).
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
//! still a child of the old one, the master is still a master). Exits are awaited on
//! pidfds (or, on kernels without them, by watching `/proc`); pid files and new workers are polled with a short backing-off interval.
//! This module never touches the executable except through the journal (commit after
//! retire, restore after rollback).

use std::fmt;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::event::{Event, Observer, Role, Step};
use crate::flavor::TitleArgs;
use crate::journal;
use crate::model::{
    error_chain, is_worker_child, workers_of, MasterInfo, Observation, Phase, Target,
};
use crate::pid::Pid;
use crate::process::ProcessHandle;
use crate::procfs::{self, ProcInfo};
use crate::signal::Signal;

/// Deadlines of the typed operations.
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
    /// Refuse to operate without pidfds (kernels before 5.3, or a seccomp filter) rather
    /// than fall back to pid + start time and `kill(2)` (see [`crate::process`]).
    pub require_pidfd: bool,
}

impl Default for OpOptions {
    fn default() -> Self {
        OpOptions {
            spawn_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(60),
            quit_timeout: Duration::from_secs(30),
            require_pidfd: false,
        }
    }
}

impl OpOptions {
    /// The defaults: spawn 30 s, drain 60 s, quit 30 s.
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

    /// Refuses every operation on a kernel without pidfds ([`Error::PidfdRequired`]).
    pub fn require_pidfd(mut self, on: bool) -> Self {
        self.require_pidfd = on;
        self
    }
}

/// A failed operation: the error, and the state the target is still in when it is known
/// (so the caller can retry, choose another operation, or roll back).
#[non_exhaustive]
pub struct OpError<S> {
    /// The state the target is in after the failure, when known; `None` means attach
    /// again ([`Target::attach`]) to learn it.
    pub state: Option<S>,
    /// What went wrong.
    pub error: Error,
}

impl<S> OpError<S> {
    fn new(state: Option<S>, error: Error) -> Self {
        OpError { state, error }
    }
}

impl<S> fmt::Debug for OpError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpError")
            .field("state_known", &self.state.is_some())
            .field("error", &self.error)
            .finish()
    }
}

impl<S> fmt::Display for OpError<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl<S> std::error::Error for OpError<S> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
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
            let pinned = match observation.phase {
                Phase::Unknown => return Ok(State::Unknown(observation)),
                Phase::Steady => pin(&observation.old_master)?.map(|master| {
                    State::Steady(Steady {
                        at: Box::new(Attached {
                            target: self.clone(),
                            observation: observation.clone(),
                        }),
                        master,
                    })
                }),
                Phase::Spawned | Phase::Drained => {
                    match (pin(&observation.old_master)?, pin(&observation.new_master)?) {
                        (Some(old), Some(new)) => Some(if observation.phase == Phase::Spawned {
                            State::Spawned(Spawned {
                                at: Box::new(Attached {
                                    target: self.clone(),
                                    observation: observation.clone(),
                                }),
                                old,
                                new,
                            })
                        } else {
                            State::Drained(Drained {
                                at: Box::new(Attached {
                                    target: self.clone(),
                                    observation: observation.clone(),
                                }),
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

impl Target {
    /// Ends a spawn that was left hanging (its orchestrator was killed while a new master
    /// hung on start): the one operation allowed on a target in [`Phase::Unknown`], and
    /// only in exactly this shape: the old pid file names a live master, the pid file does
    /// not name a new master with workers, and the old master has a child that is neither
    /// a worker nor a zombie. That child (the hung new master) is stopped like a spawn
    /// past its deadline (fast stop, then `KILL` with its children), the old master takes
    /// its pid file back, workers the new master left behind are stopped, and the
    /// executable is restored from the journal. Anything else is refused with the evidence.
    pub fn abort_spawn(&self, opts: &OpOptions, observer: &dyn Observer) -> Result<Steady, Error> {
        let ctx = Ctx::new(self, opts, observer);
        ctx.pidfd_gate()?;
        ctx.step(Step::Rollback, || self.abort_spawn_in(&ctx))
    }

    fn abort_spawn_in(&self, ctx: &Ctx<'_>) -> Result<Steady, Error> {
        let seen = self.observe()?;
        let refuse = |why: &str, seen: Observation| Error::WrongPhase {
            operation: "abort a hung spawn",
            expected: "an interrupted spawn (old pid file naming a live master with a hung child)",
            found: format!("{} ({why})", seen.phase),
            evidence: seen.evidence,
        };
        if seen.phase != Phase::Unknown {
            return Err(refuse("not an interrupted spawn", seen));
        }
        let (Some(old), None) = (&seen.old_master, &seen.new_master) else {
            return Err(refuse(
                "no live old master, or a new master is running",
                seen,
            ));
        };
        if pid_named_by(&self.old_pid_file()) != Some(old.pid) {
            return Err(refuse(
                "the old pid file does not name the old master",
                seen,
            ));
        }
        let old = match pin(&seen.old_master)? {
            Some(handle) => handle,
            None => return Err(refuse("the old master exited meanwhile", seen)),
        };
        verify_master(self, &old, "the old master")?;
        let flavor = self.flavor_ref();
        let hung = procfs::children(old.pid())?
            .into_iter()
            .any(|c| !c.is_zombie() && !is_worker_child(flavor, &c));
        if !hung {
            return Err(refuse("the old master has no child but its workers", seen));
        }
        ctx.decision(format!(
            "a spawn of master {} was left hanging: stopping its new master",
            old.pid()
        ));
        stop_children_masters(ctx, &old)?;
        let pid = old.pid();
        let restored = ctx.poll(
            &format!("master {pid} to take its pid file back"),
            ctx.opts.quit_timeout,
            || {
                let seen = self.observe_now()?;
                Ok((seen.phase == Phase::Steady
                    && seen.old_master.as_ref().map(|m| m.pid) == Some(pid))
                .then_some(seen))
            },
        )?;
        let Some(seen) = restored else {
            return Err(Error::Timeout {
                pid,
                what: format!("{} to name master {pid} again", self.pid_file().display()),
                timeout: ctx.opts.quit_timeout,
            });
        };
        stop_orphaned_workers(ctx, &old);
        ctx.step(Step::RestoreBinary, || journal::restore(ctx, &old))?;
        Ok(Steady {
            at: Box::new(Attached {
                target: self.clone(),
                observation: seen,
            }),
            master: old,
        })
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

/// What every operation needs: the target, the deadlines and the observer.
pub(crate) struct Ctx<'a> {
    pub(crate) target: &'a Target,
    pub(crate) opts: &'a OpOptions,
    pub(crate) observer: &'a dyn Observer,
}

/// How often a long wait reports itself.
const REPORT_EVERY: Duration = Duration::from_millis(500);
/// First and longest pause between two polls of pid files and process lists.
const POLL_FIRST: Duration = Duration::from_millis(1);
const POLL_MAX: Duration = Duration::from_millis(50);

impl<'a> Ctx<'a> {
    pub(crate) fn new(target: &'a Target, opts: &'a OpOptions, observer: &'a dyn Observer) -> Self {
        Ctx {
            target,
            opts,
            observer,
        }
    }

    pub(crate) fn emit(&self, event: Event) {
        self.observer.on_event(&event);
    }

    fn decision(&self, message: String) {
        self.emit(Event::Decision { message });
    }

    fn warning(&self, message: String) {
        self.emit(Event::Warning { message });
    }

    /// Before an operation signals anything: without pidfds, refuse when they are
    /// required, else report the fallback.
    pub(crate) fn pidfd_gate(&self) -> Result<(), Error> {
        if let Some(detail) = crate::process::pidfd_support().unavailable_reason() {
            if self.opts.require_pidfd {
                return Err(Error::PidfdRequired { detail });
            }
            self.emit(Event::PidfdFallback { detail });
        }
        Ok(())
    }

    /// Runs `f` as `step`, reporting its start and end.
    pub(crate) fn step<T>(&self, step: Step, f: impl FnOnce() -> T) -> T {
        self.emit(Event::StepStarted { step });
        let started = Instant::now();
        let out = f();
        self.emit(Event::StepFinished {
            step,
            duration: started.elapsed(),
        });
        out
    }

    fn signal(&self, handle: &ProcessHandle, signal: Signal, role: Role) -> Result<(), Error> {
        handle.signal(signal)?;
        self.emit(Event::Signalled {
            pid: handle.pid(),
            signal,
            role,
        });
        Ok(())
    }

    /// Polls `check` until it returns `Some` or `timeout` passes (`Ok(None)`), pausing
    /// 1 ms, then twice as long each time up to 50 ms; reports the wait every 500 ms.
    pub(crate) fn poll<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Result<Option<T>, Error>,
    ) -> Result<Option<T>, Error> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut next_report = started;
        let mut pause = POLL_FIRST;
        loop {
            let now = Instant::now();
            if now >= next_report {
                self.waiting(what, now - started, timeout);
                next_report = now + REPORT_EVERY;
            }
            if let Some(found) = check()? {
                return Ok(Some(found));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    /// Waits on the pidfd for `handle` to exit, up to `timeout`; reports every 500 ms.
    fn wait_exit(
        &self,
        handle: &ProcessHandle,
        what: &str,
        timeout: Duration,
    ) -> Result<bool, Error> {
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            let now = Instant::now();
            self.waiting(what, now - started, timeout);
            if handle.wait_exit((now + REPORT_EVERY).min(deadline))? {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
        }
    }

    fn waiting(&self, what: &str, elapsed: Duration, timeout: Duration) {
        self.emit(Event::Waiting {
            what: what.to_string(),
            elapsed,
            timeout,
        });
    }

    /// Stops `handle` (a master): graceful stop, then past `quit_timeout` fast stop, then
    /// gives up past `max(quit_timeout, 10 s)` more. `verify` re-checks its role before
    /// each signal.
    fn stop_master(
        &self,
        handle: &ProcessHandle,
        role: Role,
        verify: &dyn Fn() -> Result<(), Error>,
    ) -> Result<(), Error> {
        let signals = self.target.flavor_ref().signals();
        let name = role_name(role);
        let timeout = self.opts.quit_timeout;
        verify()?;
        self.signal(handle, signals.graceful_stop, role)?;
        if self.wait_exit(handle, &format!("{name} {} to exit", handle.pid()), timeout)? {
            return Ok(());
        }
        self.decision(format!(
            "{name} {} still runs {:.1}s after {}: sending {}",
            handle.pid(),
            timeout.as_secs_f64(),
            signals.graceful_stop,
            signals.fast_stop
        ));
        if !handle.has_exited() {
            match verify().and_then(|()| self.signal(handle, signals.fast_stop, role)) {
                Ok(()) => {}
                // It exited in the meantime.
                Err(
                    Error::ProcessGone { .. }
                    | Error::Zombie { .. }
                    | Error::ProcessReplaced { .. },
                ) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        // A fast stop takes nginx a few seconds at most (workers get KILL after ~3 s).
        let fast_timeout = timeout.max(Duration::from_secs(10));
        if self.wait_exit(
            handle,
            &format!("{name} {} to exit", handle.pid()),
            fast_timeout,
        )? {
            return Ok(());
        }
        Err(Error::StillRunning {
            pid: handle.pid(),
            role: name,
            signals: format!("{} then {}", signals.graceful_stop, signals.fast_stop),
            waited: timeout + fast_timeout,
        })
    }
}

fn role_name(role: Role) -> &'static str {
    match role {
        Role::OldMaster => "old master",
        Role::NewMaster => "new master",
        _ => "worker",
    }
}

/// Checks that a pinned master is alive and still titled as a master.
fn verify_master(target: &Target, handle: &ProcessHandle, what: &str) -> Result<ProcInfo, Error> {
    let info = handle.info()?;
    if info.is_zombie() {
        return Err(Error::Zombie { pid: handle.pid() });
    }
    if !target.flavor_ref().is_master_title(&info.title) {
        return Err(Error::RoleChanged {
            pid: handle.pid(),
            expected: what.to_string(),
            found: format!("its title is `{}`", info.title),
        });
    }
    Ok(info)
}

/// Checks that the pinned new master is alive, a master, and still a child of `old`.
fn verify_new_master(target: &Target, new: &ProcessHandle, old: Pid) -> Result<ProcInfo, Error> {
    let info = verify_master(target, new, "the new master")?;
    if info.ppid != old.get() {
        return Err(Error::RoleChanged {
            pid: new.pid(),
            expected: format!("a child of old master {old}"),
            found: format!("its parent is {}", info.ppid),
        });
    }
    Ok(info)
}

/// The live workers of `master` (children titled as workers), pinned; workers that exit
/// while being pinned are left out.
fn pin_workers(target: &Target, master: Pid) -> Result<Vec<ProcessHandle>, Error> {
    let children = procfs::children(master)?;
    let mut handles = Vec::new();
    for worker in workers_of(target.flavor_ref(), &children) {
        match ProcessHandle::open_pinned(worker.pid, worker.start_time) {
            Ok(h) => handles.push(h),
            Err(
                Error::ProcessGone { .. } | Error::Zombie { .. } | Error::ProcessReplaced { .. },
            ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(handles)
}

/// The executable a master starts on the spawn signal: the target's binary, else the
/// master's own `argv[0]` (relative to its working directory, as nginx executes it).
pub(crate) fn installed_binary(target: &Target, master: &MasterInfo) -> PathBuf {
    if let Some(binary) = target.binary_path() {
        return binary.to_path_buf();
    }
    if target.flavor_ref().title_args() == TitleArgs::ArgsAfterMasterMarker {
        // The title does not keep argv[0]'s path (unicorn re-executes its script, which
        // the interpreter named by /proc/<pid>/exe runs): the executable is what runs.
        if let Some(exe) = &master.exe {
            return exe.clone();
        }
    }
    let argv = target.flavor_ref().master_argv(&master.cmdline);
    let argv0 = PathBuf::from(argv.first().map(String::as_str).unwrap_or_default());
    if argv0.is_absolute() {
        return argv0;
    }
    match fs::read_link(format!("/proc/{}/cwd", master.pid)) {
        Ok(cwd) => cwd.join(argv0),
        Err(_) => argv0,
    }
}

/// Why a master would ignore the spawn signal although it catches it, seen before
/// sending it: nginx ignores it when it is not daemonized and the parent that started it
/// still lives (`daemon off` under a supervisor or a shell), which is also how a new
/// master under a live old master looks.
pub(crate) fn spawn_would_be_ignored(info: &ProcInfo) -> Option<String> {
    if info.ppid <= 1 || info.sid == info.pid.get() {
        // Reparented to init (daemonized, or its old master retired), or a session leader
        // (daemonized with setsid).
        return None;
    }
    let parent = procfs::proc_info(Pid::new(i64::from(info.ppid)).ok()?).ok()?;
    if parent.is_zombie() {
        return None;
    }
    // What remains is a foreground master under a live parent (nginx `daemon off`), or a
    // master that an upgrade left behind under a subreaper (its parent started nothing).
    // The latter is neither a process-group leader nor in its parent's group, and the
    // leader of its session (the first master, long retired) is gone.
    let leader_alive = Pid::new(i64::from(info.sid))
        .ok()
        .and_then(|sid| procfs::proc_stat(sid).ok())
        .is_some_and(|stat| !stat.is_zombie());
    let own_group = info.pgid == info.pid.get();
    if !(own_group || info.pgid == parent.pgid || leader_alive) {
        return None;
    }
    Some(format!(
        "it runs in the foreground under its parent {} (`{}`), which is alive: nginx with `daemon off` (or any master whose starting parent still lives, such as a \
         new master under its old one) ignores the spawn signal. Upgrade such a server by \
         restarting it through its supervisor, or run it daemonized",
        parent.pid, parent.title
    ))
}

/// Identity of a file for "was it renamed (back)?": inode and change time.
fn file_stamp(path: &Path) -> Option<(u64, i64, i64)> {
    fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.ino(), m.ctime(), m.ctime_nsec()))
}

/// How long a master may take to act on the spawn signal (rename its pid file) before
/// the signal counts as ignored. nginx renames the file as soon as it handles the
/// signal; this only has to cover scheduling delays on a loaded machine.
const SPAWN_ACK: Duration = Duration::from_secs(5);

/// How long the new master's worker count must stay unchanged to count as complete when
/// it has fewer workers than the old master.
const WORKERS_SETTLE: Duration = Duration::from_millis(500);

impl Steady {
    /// The observation this state was computed from.
    pub fn observation(&self) -> &Observation {
        &self.at.observation
    }

    /// The master's pid.
    pub fn master_pid(&self) -> Pid {
        self.master.pid()
    }

    /// The target.
    pub fn target(&self) -> &Target {
        &self.at.target
    }

    /// The master, as observed.
    pub fn master(&self) -> &MasterInfo {
        self.at
            .observation
            .old_master
            .as_ref()
            .expect("a steady observation names its master")
    }

    /// Starts a new master on the installed executable (nginx: `USR2` to the master).
    ///
    /// Refuses before signalling when the master does not catch the spawn signal (its
    /// default action would kill it) or would ignore it (`daemon off` under a live
    /// parent). Succeeds only when the old pid file names the old master and the pid file
    /// names a new live master that is a child of the old one, runs the installed
    /// executable (same device and inode) and has workers. Fails distinctly when the
    /// signal is ignored, when the new master dies (the old master takes its pid file
    /// back), and at the deadline — after stopping the hung new master so that the old
    /// one takes its pid file back. On failure `state` is the steady state when it holds.
    pub fn spawn_new_master(
        self,
        opts: &OpOptions,
        observer: &dyn Observer,
    ) -> Result<Spawned, OpError<Steady>> {
        let target = self.at.target.clone();
        let ctx = Ctx::new(&target, opts, observer);
        if let Err(e) = ctx.pidfd_gate() {
            return Err(OpError::new(Some(self), e));
        }
        ctx.step(Step::Spawn, || self.spawn(&ctx))
    }

    fn spawn(self, ctx: &Ctx<'_>) -> Result<Spawned, OpError<Steady>> {
        let target = ctx.target;
        let spawn_signal = target.flavor_ref().signals().spawn;
        let pid = self.master.pid();
        let info = match verify_master(target, &self.master, "the master") {
            Ok(info) => info,
            Err(e) => return Err(OpError::new(None, e)),
        };
        if !info.caught.contains(spawn_signal) {
            let ignored = info.ignored.contains(spawn_signal);
            return Err(OpError::new(
                Some(self),
                Error::NotCatching {
                    pid,
                    signal: spawn_signal,
                    ignored,
                },
            ));
        }
        if let Some(reason) = spawn_would_be_ignored(&info) {
            return Err(OpError::new(
                Some(self),
                Error::SpawnIgnored {
                    pid,
                    signal: spawn_signal,
                    reason,
                },
            ));
        }
        let binary = installed_binary(target, self.master());
        let old_path = target.old_pid_file();
        let stamp = file_stamp(target.pid_file());
        if let Err(e) = ctx.signal(&self.master, spawn_signal, Role::OldMaster) {
            return Err(OpError::new(None, e));
        }
        let signalled = Instant::now();
        let mut saw_old_pid_file = false;
        let mut new_pid = None;
        let expected_workers = self.master().active_workers().count();
        let mut workers_seen: Option<(usize, Instant)> = None;
        let what = format!("the new master of {pid} to write its pid file and start workers");
        let outcome = ctx.poll(&what, ctx.opts.spawn_timeout, || {
            if self.master.has_exited() {
                return Err(Error::ProcessGone { pid });
            }
            let seen = target.observe_now()?;
            if let (Some(old), Some(new)) = (&seen.old_master, &seen.new_master) {
                if old.pid == pid && new.ppid == pid.get() {
                    new_pid = Some(new.pid);
                }
            }
            match seen.phase {
                Phase::Spawned | Phase::Drained => {
                    let new = seen
                        .new_master
                        .as_ref()
                        .expect("spawned names its new master");
                    if seen.old_master.as_ref().map(|m| m.pid) != Some(pid) {
                        return Ok(None);
                    }
                    if !procfs::runs_file(new.pid, &binary)? {
                        return Err(Error::WrongExecutable {
                            pid: new.pid,
                            expected: binary.clone(),
                            running: new.exe.clone(),
                        });
                    }
                    // Workers start one after the other: wait for as many as the old master
                    // runs, or for their number to stop growing (a new config may have fewer).
                    let count = new.workers.len();
                    let growing = match workers_seen {
                        Some((n, _)) if n == count => false,
                        _ => {
                            workers_seen = Some((count, Instant::now()));
                            true
                        }
                    };
                    let settled =
                        workers_seen.is_some_and(|(_, since)| since.elapsed() >= WORKERS_SETTLE);
                    if count >= expected_workers || (!growing && settled) {
                        return Ok(Some(seen));
                    }
                    Ok(None)
                }
                Phase::Steady if seen.old_master.as_ref().map(|m| m.pid) == Some(pid) => {
                    if saw_old_pid_file || file_stamp(target.pid_file()) != stamp {
                        return Err(Error::NewMasterDied {
                            old: pid,
                            new: new_pid,
                            detail: format!(
                                "master {pid} renamed {} back to {}: the new master failed to \
                                 start (see the server's error log)",
                                old_path.display(),
                                target.pid_file().display()
                            ),
                        });
                    }
                    if signalled.elapsed() >= SPAWN_ACK.min(ctx.opts.spawn_timeout) {
                        return Err(Error::SpawnIgnored {
                            pid,
                            signal: spawn_signal,
                            reason: ignored_reason(&info, &old_path),
                        });
                    }
                    Ok(None)
                }
                _ => {
                    // The spawn shows in the file that exists only during an upgrade: the
                    // old pid file naming the old master (nginx's `.oldbin`), or, when the
                    // old master keeps the pid file, the new master's (gunicorn's `.2`).
                    let shown = if old_path == target.pid_file() {
                        pid_named_by(&target.new_pid_file()).is_some_and(|p| p != pid)
                    } else {
                        pid_named_by(&old_path) == Some(pid)
                    };
                    if shown {
                        saw_old_pid_file = true;
                    }
                    Ok(None)
                }
            }
        });
        match outcome {
            Ok(Some(seen)) => self.finish_spawn(ctx, seen),
            Ok(None) => {
                let error = Error::Timeout {
                    pid,
                    what: format!(
                        "a new master{} to write {} and start its workers",
                        new_pid.map(|p| format!(" ({p})")).unwrap_or_default(),
                        target.new_pid_file().display()
                    ),
                    timeout: ctx.opts.spawn_timeout,
                };
                self.abandon_spawn(ctx, error)
            }
            Err(error @ Error::WrongExecutable { .. }) => self.abandon_spawn(ctx, error),
            Err(error @ Error::NewMasterDied { .. }) => {
                stop_orphaned_workers(ctx, &self.master);
                Err(OpError::new(self.refresh(), error))
            }
            Err(error @ Error::SpawnIgnored { .. }) => Err(OpError::new(self.refresh(), error)),
            Err(error) => Err(OpError::new(None, error)),
        }
    }

    fn finish_spawn(self, ctx: &Ctx<'_>, seen: Observation) -> Result<Spawned, OpError<Steady>> {
        let new_info = seen
            .new_master
            .as_ref()
            .expect("spawned names its new master");
        let pinned = ProcessHandle::open_pinned(new_info.pid, new_info.start_time)
            .and_then(|new| verify_new_master(ctx.target, &new, self.master.pid()).map(|_| new));
        match pinned {
            Ok(new) => {
                ctx.emit(Event::Observed {
                    what: format!(
                        "new master {} runs with {} workers",
                        new.pid(),
                        new_info.workers.len()
                    ),
                });
                Ok(Spawned {
                    at: self.at.seeing(seen),
                    old: self.master,
                    new,
                })
            }
            Err(e) => Err(OpError::new(None, e)),
        }
    }

    /// After a failed spawn with a live new master (hung or wrong): stop it so that the
    /// old master takes its pid file back, then report `error` with the steady state.
    fn abandon_spawn(self, ctx: &Ctx<'_>, error: Error) -> Result<Spawned, OpError<Steady>> {
        let old = self.master.pid();
        ctx.decision(format!(
            "{}; stopping the new master so that master {old} takes its pid file back",
            error_chain(&error)
        ));
        if let Err(e) = stop_children_masters(ctx, &self.master) {
            ctx.warning(format!(
                "could not stop the new master: {}",
                error_chain(&e)
            ));
            return Err(OpError::new(None, error));
        }
        let restored = ctx.poll(
            &format!("master {old} to take its pid file back"),
            ctx.opts.quit_timeout,
            || {
                let seen = ctx.target.observe_now()?;
                Ok((seen.phase == Phase::Steady
                    && seen.old_master.as_ref().map(|m| m.pid) == Some(old))
                .then_some(()))
            },
        );
        stop_orphaned_workers(ctx, &self.master);
        match restored {
            Ok(Some(())) => Err(OpError::new(self.refresh(), error)),
            _ => Err(OpError::new(None, error)),
        }
    }

    /// This state with a fresh observation, if the target is still steady on this master.
    fn refresh(self) -> Option<Steady> {
        let seen = self.at.target.observe().ok()?;
        let same = seen.phase == Phase::Steady
            && seen.old_master.as_ref().map(|m| (m.pid, m.start_time))
                == Some((self.master.pid(), self.master.start_time()));
        same.then_some(Steady {
            at: self.at.seeing(seen),
            master: self.master,
        })
    }
}

/// The pid a pid file names, or `None` when the file is absent or unusable.
fn pid_named_by(path: &Path) -> Option<Pid> {
    crate::pidfile::read_pid_file_optional(path).ok().flatten()
}

/// Why a master that catches the spawn signal did not act on it.
fn ignored_reason(info: &ProcInfo, old_path: &Path) -> String {
    let mut reason = format!(
        "no {} appeared within {}s. nginx (like unicorn and gunicorn) ignores the signal while \
         a new master it started still runs, and when it is not daemonized (`daemon off`) and \
         the parent that started it still lives",
        old_path.display(),
        SPAWN_ACK.as_secs()
    );
    if info.ppid > 1 {
        if let Some(parent) = Pid::new(i64::from(info.ppid))
            .ok()
            .and_then(|p| procfs::proc_info(p).ok())
        {
            reason.push_str(&format!(
                "; its parent {} (`{}`) is alive: if it started the master in the foreground, \
                 restart the server through it instead",
                parent.pid, parent.title
            ));
        }
    }
    reason
}

/// Stops every child of `old` that is neither a worker nor a zombie (a hung or wrong new
/// master): fast stop, then `KILL` past a short grace, and then its own children too (a
/// killed master's workers would keep the listening sockets).
fn stop_children_masters(ctx: &Ctx<'_>, old: &ProcessHandle) -> Result<(), Error> {
    let flavor = ctx.target.flavor_ref();
    let fast = flavor.signals().fast_stop;
    let grace = ctx.opts.quit_timeout.min(Duration::from_secs(5));
    for child in procfs::children(old.pid())? {
        if child.is_zombie() || is_worker_child(flavor, &child) {
            continue;
        }
        let handle = match ProcessHandle::open_pinned(child.pid, child.start_time) {
            Ok(h) => h,
            Err(
                Error::ProcessGone { .. } | Error::Zombie { .. } | Error::ProcessReplaced { .. },
            ) => continue,
            Err(e) => return Err(e),
        };
        let grandchildren = pin_children(handle.pid())?;
        let still_child = || match handle.info() {
            Ok(info) if info.ppid == old.pid().get() => Ok(()),
            Ok(info) => Err(Error::RoleChanged {
                pid: handle.pid(),
                expected: format!("a child of old master {}", old.pid()),
                found: format!("its parent is {}", info.ppid),
            }),
            Err(e) => Err(e),
        };
        match still_child().and_then(|()| ctx.signal(&handle, fast, Role::NewMaster)) {
            Ok(()) => {}
            Err(_) if handle.has_exited() => continue,
            Err(e) => return Err(e),
        }
        if ctx.wait_exit(
            &handle,
            &format!("new master {} to exit", handle.pid()),
            grace,
        )? {
            continue;
        }
        ctx.decision(format!(
            "new master {} still runs {:.1}s after {fast}: sending SIGKILL to it and its children",
            handle.pid(),
            grace.as_secs_f64()
        ));
        match still_child().and_then(|()| ctx.signal(&handle, Signal::Kill, Role::NewMaster)) {
            Ok(()) => {}
            Err(_) if handle.has_exited() => {}
            Err(e) => return Err(e),
        }
        for grandchild in &grandchildren {
            match ctx.signal(grandchild, Signal::Kill, Role::Worker) {
                Ok(()) | Err(Error::ProcessGone { .. } | Error::Zombie { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        ctx.wait_exit(
            &handle,
            &format!("new master {} to exit", handle.pid()),
            grace,
        )?;
    }
    Ok(())
}

/// Stops workers left behind by a new master that died abruptly: a killed nginx master's
/// workers are reparented and keep serving the new executable. They are the live
/// processes of the old master's session titled as workers whose parent is not a live
/// master. Each is told to stop gracefully, then fast past the quit deadline. This scans
/// `/proc` (only on this failure path). Best effort: problems become warnings.
fn stop_orphaned_workers(ctx: &Ctx<'_>, old: &ProcessHandle) {
    let flavor = ctx.target.flavor_ref();
    let Ok(old_info) = old.info() else {
        return;
    };
    let Ok(pids) = procfs::all_pids() else {
        return;
    };
    let is_live_master = |ppid: i32| {
        Pid::new(i64::from(ppid))
            .ok()
            .and_then(|p| procfs::proc_info(p).ok())
            .is_some_and(|p| !p.is_zombie() && flavor.is_master_title(&p.title))
    };
    let mut orphans = Vec::new();
    for pid in pids {
        let Ok(stat) = procfs::proc_stat(pid) else {
            continue;
        };
        if pid == old.pid() || stat.sid != old_info.sid || stat.is_zombie() {
            continue;
        }
        let Ok(info) = procfs::proc_info(pid) else {
            continue;
        };
        if !flavor.is_worker_title(&info.title) || is_live_master(info.ppid) {
            continue;
        }
        if let Ok(handle) = ProcessHandle::open_pinned(pid, stat.start_time) {
            ctx.decision(format!(
                "worker {pid} outlived its master (its parent is now {}): stopping it",
                info.ppid
            ));
            match ctx.signal(&handle, flavor.signals().graceful_stop, Role::Worker) {
                Ok(()) => orphans.push(handle),
                Err(e) => ctx.warning(format!("cannot stop worker {pid}: {}", error_chain(&e))),
            }
        }
    }
    let deadline = Instant::now() + ctx.opts.quit_timeout;
    for handle in orphans {
        let what = format!("orphaned worker {} to exit", handle.pid());
        let left = deadline.saturating_duration_since(Instant::now());
        if let Ok(false) = ctx.wait_exit(&handle, &what, left) {
            let _ = ctx.signal(&handle, flavor.signals().fast_stop, Role::Worker);
        }
    }
}

/// Every live child of `pid`, pinned.
fn pin_children(pid: Pid) -> Result<Vec<ProcessHandle>, Error> {
    let mut handles = Vec::new();
    for child in procfs::children(pid)? {
        match ProcessHandle::open_pinned(child.pid, child.start_time) {
            Ok(h) => handles.push(h),
            Err(
                Error::ProcessGone { .. } | Error::Zombie { .. } | Error::ProcessReplaced { .. },
            ) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(handles)
}

impl Spawned {
    /// The observation this state was computed from.
    pub fn observation(&self) -> &Observation {
        &self.at.observation
    }

    /// The old master's pid.
    pub fn old_pid(&self) -> Pid {
        self.old.pid()
    }

    /// The new master's pid.
    pub fn new_pid(&self) -> Pid {
        self.new.pid()
    }

    /// The target.
    pub fn target(&self) -> &Target {
        &self.at.target
    }

    /// Stops the old workers gracefully (nginx: `WINCH` to the old master) and waits, on
    /// their pidfds, for them to exit. The old master stays, holding the sockets.
    ///
    /// Past the drain deadline this fails with [`Error::DrainTimeout`] naming the workers
    /// still running and gives this state back: wait more (call it again), stop them now
    /// ([`Spawned::terminate_old_workers`]) or roll back.
    pub fn drain_old_workers(
        self,
        opts: &OpOptions,
        observer: &dyn Observer,
    ) -> Result<Drained, OpError<Spawned>> {
        let target = self.at.target.clone();
        let ctx = Ctx::new(&target, opts, observer);
        if let Err(e) = ctx.pidfd_gate() {
            return Err(OpError::new(Some(self), e));
        }
        ctx.step(Step::Drain, || self.drain(&ctx, false))
    }

    /// Stops the old workers at once (nginx: `TERM` to each remaining old worker, each
    /// verified to be a worker of the old master) and waits for them to exit.
    pub fn terminate_old_workers(
        self,
        opts: &OpOptions,
        observer: &dyn Observer,
    ) -> Result<Drained, OpError<Spawned>> {
        let target = self.at.target.clone();
        let ctx = Ctx::new(&target, opts, observer);
        if let Err(e) = ctx.pidfd_gate() {
            return Err(OpError::new(Some(self), e));
        }
        ctx.step(Step::Drain, || self.drain(&ctx, true))
    }

    fn drain(self, ctx: &Ctx<'_>, terminate: bool) -> Result<Drained, OpError<Spawned>> {
        let target = ctx.target;
        let old = self.old.pid();
        let checks = verify_master(target, &self.old, "the old master")
            .and_then(|_| verify_new_master(target, &self.new, old))
            .and_then(|_| pin_workers(target, old));
        let mut workers = match checks {
            Ok(w) => w,
            Err(e) => return Err(OpError::new(None, e)),
        };
        let signals = target.flavor_ref().signals();
        let (timeout, sent) = if terminate {
            for worker in &workers {
                match ctx.signal(worker, signals.fast_stop, Role::Worker) {
                    Ok(()) | Err(Error::ProcessGone { .. } | Error::Zombie { .. }) => {}
                    Err(e) => return Err(OpError::new(Some(self), e)),
                }
            }
            (ctx.opts.quit_timeout, signals.fast_stop)
        } else {
            if let Err(e) = ctx.signal(&self.old, signals.stop_workers, Role::OldMaster) {
                return Err(OpError::new(None, e));
            }
            (ctx.opts.drain_timeout, signals.stop_workers)
        };
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            workers.retain(|w| !w.has_exited());
            if self.new.has_exited() {
                let error = Error::NewMasterDied {
                    old,
                    new: Some(self.new.pid()),
                    detail: format!(
                        "it exited while the old workers were stopping; master {old} takes its pid \
                         file back and starts workers again"
                    ),
                };
                return Err(OpError::new(None, error));
            }
            if workers.is_empty() {
                // A worker the old master started meanwhile (crash respawn) counts too.
                match pin_workers(target, old) {
                    Ok(more) if more.is_empty() => break,
                    Ok(more) => workers = more,
                    Err(e) => return Err(OpError::new(None, e)),
                }
            }
            let now = Instant::now();
            if now >= deadline {
                let remaining: Vec<Pid> = workers.iter().map(ProcessHandle::pid).collect();
                let hint = drain_hint(target, old, sent);
                let error = Error::DrainTimeout {
                    old,
                    remaining,
                    timeout,
                    hint,
                };
                return Err(OpError::new(self.refresh(), error));
            }
            ctx.waiting(
                &format!("{} old workers of {old} to exit", workers.len()),
                now - started,
                timeout,
            );
            if let Err(e) = workers[0].wait_exit((now + REPORT_EVERY).min(deadline)) {
                return Err(OpError::new(None, e));
            }
        }
        let seen = match target.observe() {
            Ok(seen) => seen,
            Err(e) => return Err(OpError::new(None, e)),
        };
        let same = |m: &Option<MasterInfo>, h: &ProcessHandle| {
            m.as_ref().map(|m| (m.pid, m.start_time)) == Some((h.pid(), h.start_time()))
        };
        if seen.phase != Phase::Drained
            || !same(&seen.old_master, &self.old)
            || !same(&seen.new_master, &self.new)
        {
            let error = Error::WrongPhase {
                operation: "finish draining the old workers",
                expected: "drained",
                found: seen.phase.to_string(),
                evidence: seen.evidence,
            };
            return Err(OpError::new(None, error));
        }
        ctx.emit(Event::Observed {
            what: format!("old master {old} has no workers left"),
        });
        Ok(Drained {
            at: self.at.seeing(seen),
            old: self.old,
            new: self.new,
        })
    }

    /// This state with a fresh observation, if the target is still spawned on these masters.
    fn refresh(self) -> Option<Spawned> {
        let seen = self.at.target.observe().ok()?;
        (seen.phase == Phase::Spawned).then_some(Spawned {
            at: self.at.seeing(seen),
            old: self.old,
            new: self.new,
        })
    }

    /// Returns to the old master: its workers are still up (if they were told to stop,
    /// it is told to start workers again first), the new master is stopped (graceful,
    /// then fast past the quit deadline), the pid file names the old master again and
    /// the old executable is put back from the journal.
    pub fn rollback(self, opts: &OpOptions, observer: &dyn Observer) -> Result<Steady, Error> {
        let ctx = Ctx::new(&self.at.target, opts, observer);
        ctx.pidfd_gate()?;
        let observation = ctx.step(Step::Rollback, || rollback(&ctx, &self.old, &self.new))?;
        Ok(Steady {
            at: self.at.seeing(observation),
            master: self.old,
        })
    }
}

/// Why old workers may still run past the drain deadline.
fn drain_hint(target: &Target, old: Pid, sent: Signal) -> String {
    let Ok(children) = procfs::children(old) else {
        return String::new();
    };
    let workers = workers_of(target.flavor_ref(), &children);
    if !workers.is_empty()
        && workers.iter().all(|w| !w.shutting_down)
        && sent == target.flavor_ref().signals().stop_workers
    {
        format!(
            "; none of them is shutting down: master {old} seems to ignore {sent} (nginx does \
             when it is not daemonized)"
        )
    } else if workers.iter().any(|w| w.shutting_down) {
        "; they are still finishing requests".to_string()
    } else {
        String::new()
    }
}

impl Drained {
    /// The observation this state was computed from.
    pub fn observation(&self) -> &Observation {
        &self.at.observation
    }

    /// The old master's pid.
    pub fn old_pid(&self) -> Pid {
        self.old.pid()
    }

    /// The new master's pid.
    pub fn new_pid(&self) -> Pid {
        self.new.pid()
    }

    /// The target.
    pub fn target(&self) -> &Target {
        &self.at.target
    }

    /// Makes the upgrade final: stops the old master (graceful, then fast past the quit
    /// deadline), checks that the old pid file is gone and the pid file names the new
    /// master, and commits the executable swap recorded in the journal (drops the backup).
    pub fn retire_old(self, opts: &OpOptions, observer: &dyn Observer) -> Result<Steady, Error> {
        let ctx = Ctx::new(&self.at.target, opts, observer);
        ctx.pidfd_gate()?;
        let observation = ctx.step(Step::Retire, || self.retire(&ctx))?;
        // The upgrade has happened whatever the commit does: a failed commit leaves the
        // journal (and the backup) for `Steady::commit_binary` to retry.
        if let Err(e) = ctx.step(Step::Commit, || journal::commit(&ctx)) {
            ctx.warning(format!(
                "the old master is retired but the swap could not be committed: {}",
                error_chain(&e)
            ));
        }
        Ok(Steady {
            at: self.at.seeing(observation),
            master: self.new,
        })
    }

    fn retire(&self, ctx: &Ctx<'_>) -> Result<Observation, Error> {
        let target = ctx.target;
        let old = self.old.pid();
        let new = self.new.pid();
        verify_master(target, &self.old, "the old master")?;
        verify_new_master(target, &self.new, old)?;
        if pin_workers(target, new)?.is_empty() {
            return Err(Error::WrongPhase {
                operation: "retire the old master",
                expected: "drained (new master with workers)",
                found: format!("new master {new} without workers"),
                evidence: Vec::new(),
            });
        }
        let verify_old = || verify_master(target, &self.old, "the old master").map(|_| ());
        ctx.stop_master(&self.old, Role::OldMaster, &verify_old)?;
        let old_path = target.old_pid_file();
        let seen = ctx.poll(
            &format!("{} to name new master {new}", target.pid_file().display()),
            ctx.opts.quit_timeout,
            || {
                // A master that was killed cannot remove its own pid file.
                if pid_named_by(&old_path) == Some(old) && self.old.has_exited() {
                    ctx.warning(format!(
                        "old master {old} exited without removing {}: removing it",
                        old_path.display()
                    ));
                    let _ = fs::remove_file(&old_path);
                }
                let seen = target.observe_now()?;
                Ok((seen.phase == Phase::Steady
                    && seen.old_master.as_ref().map(|m| m.pid) == Some(new))
                .then_some(seen))
            },
        )?;
        match seen {
            Some(seen) => Ok(seen),
            None => Err(Error::Timeout {
                pid: new,
                what: format!(
                    "{} to be gone and {} to name new master {new}",
                    old_path.display(),
                    target.pid_file().display()
                ),
                timeout: ctx.opts.quit_timeout,
            }),
        }
    }

    /// Returns to the old master: it is told to start workers again (nginx: `HUP`) and
    /// they are awaited, the new master is stopped (graceful, then fast past the quit
    /// deadline), the pid file names the old master again and the old executable is put
    /// back from the journal.
    pub fn rollback(self, opts: &OpOptions, observer: &dyn Observer) -> Result<Steady, Error> {
        let ctx = Ctx::new(&self.at.target, opts, observer);
        ctx.pidfd_gate()?;
        let observation = ctx.step(Step::Rollback, || rollback(&ctx, &self.old, &self.new))?;
        Ok(Steady {
            at: self.at.seeing(observation),
            master: self.old,
        })
    }
}

/// The rollback shared by spawned and drained (and anything in between): old workers up
/// first, then the new master stopped, then the pid files checked, then the executable
/// restored. Never signals the new master with anything but the stop signals.
fn rollback(ctx: &Ctx<'_>, old: &ProcessHandle, new: &ProcessHandle) -> Result<Observation, Error> {
    let target = ctx.target;
    let signals = target.flavor_ref().signals();
    let old_pid = old.pid();
    verify_master(target, old, "the old master")?;
    let active = |pid: Pid| -> Result<usize, Error> {
        let children = procfs::children(pid)?;
        Ok(workers_of(target.flavor_ref(), &children)
            .iter()
            .filter(|w| !w.shutting_down)
            .count())
    };
    if active(old_pid)? == 0 {
        ctx.decision(format!(
            "old master {old_pid} has no active workers: sending {} to start them again",
            signals.restart_workers
        ));
        verify_master(target, old, "the old master")?;
        ctx.signal(old, signals.restart_workers, Role::OldMaster)?;
        let up = ctx.poll(
            &format!("old master {old_pid} to start workers"),
            ctx.opts.spawn_timeout,
            || Ok((active(old_pid)? > 0).then_some(())),
        )?;
        if up.is_none() {
            return Err(Error::Timeout {
                pid: old_pid,
                what: format!(
                    "old master {old_pid} to start workers again after {} (the new master was left running)",
                    signals.restart_workers
                ),
                timeout: ctx.opts.spawn_timeout,
            });
        }
    }
    if new.has_exited() {
        ctx.emit(Event::Observed {
            what: format!("new master {} has already exited", new.pid()),
        });
    } else {
        let verify_new = || verify_new_master(target, new, old_pid).map(|_| ());
        ctx.stop_master(new, Role::NewMaster, &verify_new)?;
    }
    let restored = ctx.poll(
        &format!(
            "{} to name old master {old_pid} again",
            target.pid_file().display()
        ),
        ctx.opts.quit_timeout,
        || {
            let seen = target.observe_now()?;
            Ok((seen.phase == Phase::Steady
                && seen.old_master.as_ref().map(|m| m.pid) == Some(old_pid))
            .then_some(seen))
        },
    )?;
    let Some(seen) = restored else {
        return Err(Error::Timeout {
            pid: old_pid,
            what: format!(
                "{} to be gone and {} to name old master {old_pid} again",
                target.old_pid_file().display(),
                target.pid_file().display()
            ),
            timeout: ctx.opts.quit_timeout,
        });
    };
    stop_orphaned_workers(ctx, old);
    ctx.step(Step::RestoreBinary, || journal::restore(ctx, old))?;
    Ok(seen)
}

impl Steady {
    /// Puts back the executable recorded in the journal of an upgrade that stopped before
    /// its new master started (the swap happened, the spawn did not), and removes the
    /// journal. Does nothing when there is no journal.
    pub fn restore_binary(
        self,
        opts: &OpOptions,
        observer: &dyn Observer,
    ) -> Result<Steady, Error> {
        let ctx = Ctx::new(&self.at.target, opts, observer);
        ctx.pidfd_gate()?;
        stop_orphaned_workers(&ctx, &self.master);
        ctx.step(Step::RestoreBinary, || journal::restore(&ctx, &self.master))?;
        Ok(self)
    }

    /// Commits the swap recorded in the journal (drops the backup) and removes the
    /// journal: for an upgrade whose old master is already gone. Does nothing when there
    /// is no journal.
    pub fn commit_binary(self, opts: &OpOptions, observer: &dyn Observer) -> Result<Steady, Error> {
        let ctx = Ctx::new(&self.at.target, opts, observer);
        ctx.step(Step::Commit, || journal::commit(&ctx))?;
        Ok(self)
    }
}
