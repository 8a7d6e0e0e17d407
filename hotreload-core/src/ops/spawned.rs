//! The spawned state's operations: stop the old workers (`drain_old_workers`, or at once
//! with `terminate_old_workers`) and return to the old master (`rollback`, shared with
//! the drained state).

use super::cleanup::stop_orphaned_workers;
use super::engine::{pin_workers, verify_master, verify_new_master, Ctx};
use super::{Drained, OpError, OpOptions, Spawned, Steady};
use crate::error::{DrainStall, Error};
use crate::event::{Event, Observer, Role, Step};
use crate::model::{workers_of, MasterInfo, Observation, Phase, Target};
use crate::pid::Pid;
use crate::process::ProcessHandle;
use crate::procfs;
use crate::signal::Signal;
use crate::wait::{Nap, Wake};

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
    /// ([`Spawned::terminate_old_workers`]) or roll back. Cancelled, it gives this state
    /// back the same way (the old workers go on finishing their requests).
    pub fn drain_old_workers(
        self,
        opts: &OpOptions,
        observer: &dyn Observer,
    ) -> Result<Drained, OpError<Spawned>> {
        let target = self.at.target.clone();
        let ctx = Ctx::new(&target, opts, observer);
        if let Err(e) = ctx.pidfd_gate() {
            return Err(ctx.fail(Some(self), e, |_| Phase::Spawned, false));
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
            return Err(ctx.fail(Some(self), e, |_| Phase::Spawned, false));
        }
        ctx.step(Step::Drain, || self.drain(&ctx, true))
    }

    fn drain(mut self, ctx: &Ctx<'_>, terminate: bool) -> Result<Drained, OpError<Spawned>> {
        let target = ctx.target;
        let old = self.old.pid();
        let fail = |state: Option<Spawned>, e| ctx.fail(state, e, |_| Phase::Spawned, false);
        let checks = verify_master(target, &self.old, "the old master")
            .and_then(|_| verify_new_master(target, &self.new, old))
            .and_then(|_| pin_workers(target, old));
        let mut workers = match checks {
            Ok(w) => w,
            Err(e) => return Err(fail(None, e)),
        };
        if let Err(e) = super::sockets::check_before_drain(ctx, old, self.new.pid()) {
            return Err(fail(Some(self), e));
        }
        let signals = target.flavor_ref().signals();
        let (timeout, sent) = if terminate {
            for worker in &workers {
                match ctx.signal(worker, signals.fast_stop, Role::Worker) {
                    Ok(()) | Err(Error::ProcessGone { .. } | Error::Zombie { .. }) => {}
                    Err(e) => return Err(fail(Some(self), e)),
                }
            }
            (ctx.opts.quit_timeout, signals.fast_stop)
        } else {
            if let Err(e) = ctx.signal(&self.old, signals.stop_workers, Role::OldMaster) {
                let state = matches!(e, Error::Cancelled { .. }).then_some(self);
                return Err(fail(state, e));
            }
            self.told_workers_to_stop = true;
            (ctx.opts.drain_timeout, signals.stop_workers)
        };
        let new_died = || Error::NewMasterDied {
            old,
            new: Some(self.new.pid()),
            detail: format!(
                "it exited while the old workers were stopping; master {old} takes its pid \
                 file back and starts workers again"
            ),
        };
        let what = format!("the old workers of {old} to exit");
        // Woken at once by the exit of any old worker or of the new master (pidfds).
        let wake = Wake::schedule().exits(workers.iter().chain([&self.new]));
        let drained = ctx.waiter().until(&what, timeout, Nap::Wake(&wake), || {
            workers.retain(|w| !w.has_exited());
            if self.new.has_exited() {
                return Err(new_died());
            }
            if workers.is_empty() {
                // A worker the old master started meanwhile (crash respawn) counts too.
                workers = pin_workers(target, old)?;
            }
            Ok(workers.is_empty().then_some(()))
        });
        match drained {
            Ok(Some(())) => {}
            Ok(None) => {
                let remaining: Vec<Pid> = workers.iter().map(ProcessHandle::pid).collect();
                let stall = drain_stall(target, old, sent);
                let error = Error::DrainTimeout {
                    old,
                    remaining,
                    timeout,
                    stall,
                };
                let state = self.refresh();
                return Err(fail(state, error));
            }
            Err(e @ Error::Cancelled { .. }) => {
                let state = self.refresh();
                return Err(fail(state, e));
            }
            Err(e) => return Err(fail(None, e)),
        }
        let seen = match target.observe() {
            Ok(seen) => seen,
            Err(e) => return Err(fail(None, e)),
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
            return Err(fail(None, error));
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
            told_workers_to_stop: self.told_workers_to_stop,
        })
    }

    /// Returns to the old master: its workers are still up (if they were told to stop,
    /// it is told to start workers again first), the new master is stopped (graceful,
    /// then fast past the quit deadline), the pid file names the old master again and
    /// the old executable is put back from the journal. Cancelled, it stops where it is
    /// (`left` says what that is); a failure before any signal gives this state back.
    pub fn rollback(
        self,
        opts: &OpOptions,
        observer: &dyn Observer,
    ) -> Result<Steady, OpError<Spawned>> {
        let target = self.at.target.clone();
        let ctx = Ctx::new(&target, opts, observer);
        if let Err(e) = ctx.pidfd_gate() {
            return Err(ctx.fail(Some(self), e, |_| Phase::Spawned, false));
        }
        match ctx.step(Step::Rollback, || {
            rollback(&ctx, &self.old, &self.new, self.told_workers_to_stop)
        }) {
            Ok(observation) => Ok(Steady {
                at: self.at.seeing(observation),
                master: self.old,
            }),
            Err(e) => {
                let state = (!ctx.has_changed()).then_some(self);
                Err(ctx.fail(state, e, |_| Phase::Spawned, false))
            }
        }
    }
}

/// Why old workers may still run past the drain deadline.
fn drain_stall(target: &Target, old: Pid, sent: Signal) -> DrainStall {
    let Ok(children) = procfs::children(old) else {
        return DrainStall::Unknown;
    };
    let workers = workers_of(target.flavor_ref(), &children);
    if !workers.is_empty()
        && workers.iter().all(|w| !w.shutting_down)
        && sent == target.flavor_ref().signals().stop_workers
    {
        DrainStall::SignalIgnored { signal: sent }
    } else if workers.iter().any(|w| w.shutting_down) {
        DrainStall::FinishingRequests
    } else {
        DrainStall::Unknown
    }
}

/// The rollback shared by spawned and drained (and anything in between): old workers up
/// first, then the new master stopped, then the pid files checked, then the executable
/// restored. Never signals the new master with anything but the stop signals.
/// `told_to_stop`: this process sent the old master its stop-workers signal (an
/// interrupted drain), which it may not have acted on yet.
pub(super) fn rollback(
    ctx: &Ctx<'_>,
    old: &ProcessHandle,
    new: &ProcessHandle,
    told_to_stop: bool,
) -> Result<Observation, Error> {
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
    if told_to_stop && active(old_pid)? > 0 {
        // The master acts on a signal some time after it is sent: counted before that,
        // its workers look up, no restart is sent, and the stop then takes them all
        // down after the new master is gone. Wait for it to act (a master that ignores
        // the signal keeps its workers: the wait ends at its deadline, nothing lost).
        ctx.decision(format!(
            "waiting for old master {old_pid} to act on the {} the drain sent, before starting its workers again",
            signals.stop_workers
        ));
        ctx.poll(
            &format!("old master {old_pid} to stop its workers"),
            ctx.opts.quit_timeout,
            || Ok((active(old_pid)? == 0).then_some(())),
        )?;
    }
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
    let restarted = std::cell::Cell::new(false);
    let restored = ctx.poll(
        &format!(
            "{} to name old master {old_pid} again",
            target.pid_file().display()
        ),
        ctx.opts.quit_timeout,
        || {
            let seen = target.observe_now()?;
            let named = seen.old_master.as_ref().map(|m| m.pid) == Some(old_pid);
            if seen.phase == Phase::Steady && named {
                return Ok(Some(seen));
            }
            // The old master is alone again but has no workers: a stop-workers signal sent
            // before this rollback looked (an interrupted drain's, still in flight) reached
            // it after its workers were counted. Tell it once more to start them.
            if !restarted.get()
                && named
                && seen.new_master.is_none()
                && new.has_exited()
                && !target.old_pid_file().exists()
                && active(old_pid)? == 0
            {
                restarted.set(true);
                ctx.decision(format!(
                    "old master {old_pid} is alone again without workers (a stop signal from \
                     before the rollback arrived late): sending {} to start them",
                    signals.restart_workers
                ));
                verify_master(target, old, "the old master")?;
                ctx.signal(old, signals.restart_workers, Role::OldMaster)?;
            }
            Ok(None)
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
    // The new master's workers are born after it; the old master's are older.
    stop_orphaned_workers(ctx, old, Some(new.start_time()));
    ctx.step(Step::RestoreBinary, || ctx.restore_binary(old))?;
    Ok(seen)
}
