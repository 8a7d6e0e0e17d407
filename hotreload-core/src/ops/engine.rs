//! What every operation shares: the context (target, options, observer), reporting,
//! signalling a verified process, the one wait, stopping a master, and the checks that
//! a pinned process still plays its role. It also keeps the one fact an error needs:
//! whether the operation changed anything yet (a signal sent, a file touched).

use std::cell::Cell;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{Left, OpError, OpOptions};
use crate::error::Error;
use crate::event::{Event, Observer, Role, Step};
use crate::journal;
use crate::model::{master_info, workers_of, Phase, Target};
use crate::pid::Pid;
use crate::process::{ProcInfo, ProcessHandle};
use crate::procfs;
use crate::signal::Signal;
use crate::wait::{Nap, Waiter, Wake};

/// What every operation needs: the target, the deadlines and the observer.
pub(crate) struct Ctx<'a> {
    pub(crate) target: &'a Target,
    pub(crate) opts: &'a OpOptions,
    pub(crate) observer: &'a dyn Observer,
    /// Whether this operation changed anything yet.
    changed: Cell<bool>,
    /// Set once the operation was cancelled and cleans up: those waits must not stop.
    ignore_cancel: Cell<bool>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(target: &'a Target, opts: &'a OpOptions, observer: &'a dyn Observer) -> Self {
        Ctx {
            target,
            opts,
            observer,
            changed: Cell::new(false),
            ignore_cancel: Cell::new(false),
        }
    }

    pub(crate) fn emit(&self, event: Event) {
        self.observer.on_event(&event);
    }

    pub(crate) fn decision(&self, message: String) {
        self.emit(Event::Decision { message });
    }

    pub(crate) fn warning(&self, message: String) {
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

    /// Records that the operation changed the server or its files.
    pub(crate) fn mark_changed(&self) {
        self.changed.set(true);
    }

    /// Whether the operation changed anything yet.
    pub(crate) fn has_changed(&self) -> bool {
        self.changed.get()
    }

    /// An error of an operation that gives back `state` when it is known. `reverted`
    /// says whether a state given back means "as before" (a spawn undone) rather than
    /// "where the operation stopped" (a drain that timed out).
    pub(crate) fn fail<S>(
        &self,
        state: Option<S>,
        error: Error,
        phase_of: impl Fn(&S) -> Phase,
        reverted: bool,
    ) -> OpError<S> {
        let left = if !self.has_changed() {
            Left::Untouched
        } else if let Some(s) = &state {
            if reverted {
                Left::Reverted
            } else {
                Left::Changed { phase: phase_of(s) }
            }
        } else {
            Left::Changed {
                phase: self
                    .target
                    .observe()
                    .map_or(Phase::Unknown, |seen| seen.phase),
            }
        };
        OpError { state, error, left }
    }

    /// Puts the journal's executable back (see [`journal::restore`]) for `master`.
    pub(crate) fn restore_binary(&self, master: &ProcessHandle) -> Result<(), Error> {
        let binary = self.binary_of(master)?;
        if journal::restore(self.target, &binary, master, self.observer)? {
            self.mark_changed();
        }
        Ok(())
    }

    /// Commits the journal's swap (see [`journal::commit`]); `master` is the one that
    /// runs now (the new one).
    pub(crate) fn commit_binary(&self, master: &ProcessHandle) -> Result<(), Error> {
        let binary = self.binary_of(master)?;
        if journal::commit(self.target, &binary, self.observer)? {
            self.mark_changed();
        }
        Ok(())
    }

    /// The executable `master` starts on the spawn signal, absolute: what a journal of
    /// this target must name.
    fn binary_of(&self, master: &ProcessHandle) -> Result<std::path::PathBuf, Error> {
        let info = procfs::proc_info(master.pid())?;
        let binary = super::installed_binary(self.target, &master_info(info, Vec::new()));
        Ok(std::path::absolute(&binary).unwrap_or(binary))
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

    /// Sends `signal` to the (already verified) process and reports it.
    pub(crate) fn signal(
        &self,
        handle: &ProcessHandle,
        signal: Signal,
        role: Role,
    ) -> Result<(), Error> {
        self.waiter()
            .check_cancel(&format!("sending {signal} to {}", handle.pid()))?;
        handle.signal(signal)?;
        self.mark_changed();
        self.emit(Event::Signalled {
            pid: handle.pid(),
            signal,
            role,
        });
        Ok(())
    }

    /// The crate's one wait, reporting to this operation's observer and watching its token.
    pub(crate) fn waiter(&self) -> Waiter<'_> {
        Waiter {
            observer: self.observer,
            cancel: (!self.ignore_cancel.get()).then_some(&self.opts.cancel),
        }
    }

    /// From now on this operation's waits ignore the cancel token: what follows is the
    /// clean-up of a cancelled operation, which must run to its end (it has deadlines).
    pub(crate) fn ignore_cancel(&self) {
        self.ignore_cancel.set(true);
    }

    /// Polls `check` (pid files, `/proc`) until it returns `Some` or `timeout` passes.
    pub(crate) fn poll<T>(
        &self,
        what: &str,
        timeout: Duration,
        check: impl FnMut() -> Result<Option<T>, Error>,
    ) -> Result<Option<T>, Error> {
        // Woken by any change in the pid files' directories (the new master's pid file
        // appears, the old one is renamed back), polled in between for what sends no event.
        let files = [
            self.target.pid_file().to_path_buf(),
            self.target.old_pid_file(),
            self.target.new_pid_file(),
        ];
        let mut dirs: Vec<&Path> = files
            .iter()
            .map(|f| match f.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            })
            .collect();
        dirs.sort();
        dirs.dedup();
        let wake = Wake::watching(&dirs);
        self.waiter().until(what, timeout, Nap::Wake(&wake), check)
    }

    /// Waits on the pidfd for `handle` to exit, up to `timeout`.
    pub(crate) fn wait_exit(
        &self,
        handle: &ProcessHandle,
        what: &str,
        timeout: Duration,
    ) -> Result<bool, Error> {
        self.waiter().exit(handle, what, timeout)
    }

    /// Stops `handle` (a master): graceful stop, then past `quit_timeout` fast stop, then
    /// gives up past `max(quit_timeout, 10 s)` more. `verify` re-checks its role before
    /// each signal.
    pub(crate) fn stop_master(
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

pub(crate) fn role_name(role: Role) -> &'static str {
    match role {
        Role::OldMaster => "old master",
        Role::NewMaster => "new master",
        _ => "worker",
    }
}

/// Checks that a pinned master is alive and still titled as a master.
pub(crate) fn verify_master(
    target: &Target,
    handle: &ProcessHandle,
    what: &str,
) -> Result<ProcInfo, Error> {
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
pub(crate) fn verify_new_master(
    target: &Target,
    new: &ProcessHandle,
    old: Pid,
) -> Result<ProcInfo, Error> {
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
pub(crate) fn pin_workers(target: &Target, master: Pid) -> Result<Vec<ProcessHandle>, Error> {
    let children = procfs::child_procs(master)?;
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

/// The pid a pid file names, or `None` when the file is absent or unusable.
pub(crate) fn pid_named_by(path: &std::path::Path) -> Option<Pid> {
    crate::pidfile::read_pid_file_optional(path).ok().flatten()
}
