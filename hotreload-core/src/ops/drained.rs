//! The drained state's operations: make the upgrade final (`retire_old`, then the
//! journal's commit) or return to the old master (`rollback`).

use super::engine::{pid_named_by, pin_workers, verify_master, verify_new_master, Ctx};
use super::spawned::rollback;
use super::unit_guard;
use super::{Drained, OpError, OpOptions, Steady};
use crate::error::Error;
use crate::event::{Observer, Role, Step};
use crate::model::{error_chain, Observation, Phase, Target};
use crate::pid::Pid;
use std::fs;

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
    ///
    /// A cancel before the old master is told to stop fails with nothing changed and
    /// gives this state back; once it was told, there is nothing to go back to and the
    /// retire ignores the cancel and finishes.
    pub fn retire_old(
        self,
        opts: &OpOptions,
        observer: &dyn Observer,
    ) -> Result<Steady, OpError<Drained>> {
        let target = self.at.target.clone();
        let ctx = Ctx::new(&target, opts, observer);
        if let Err(e) = ctx.pidfd_gate() {
            return Err(ctx.fail(Some(self), e, |_| Phase::Drained, false));
        }
        let (observation, unit) = match ctx.step(Step::Retire, || self.retire(&ctx)) {
            Ok(done) => done,
            Err(e) => {
                let state = (!ctx.has_changed()).then_some(self);
                return Err(ctx.fail(state, e, |_| Phase::Drained, false));
            }
        };
        // The upgrade has happened whatever the commit does: a failed commit leaves the
        // journal (and the backup) for `Steady::commit_binary` to retry.
        if let Err(e) = ctx.step(Step::Commit, || ctx.commit_binary(&self.new)) {
            ctx.warning(format!(
                "the old master is retired but the swap could not be committed: {}",
                error_chain(&e)
            ));
        }
        if let Some(unit) = unit {
            if let Err(e) = unit_guard::after_retire(&ctx, &unit, self.new.pid()) {
                return Err(ctx.fail(None, e, |_: &Drained| Phase::Steady, false));
            }
        }
        Ok(Steady {
            at: self.at.seeing(observation),
            master: self.new,
        })
    }

    /// The retire, and the systemd unit to check afterwards (see [`unit_guard`]).
    fn retire(&self, ctx: &Ctx<'_>) -> Result<(Observation, Option<String>), Error> {
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
        let unit = unit_guard::before_retire(ctx, old)?;
        ctx.waiter().check_cancel("retiring the old master")?;
        // The point of no return: a cancel from here on is ignored.
        ctx.ignore_cancel();
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
            Some(seen) => Ok((seen, unit)),
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
    /// back from the journal. Cancelled, it stops where it is (`left` says what that is);
    /// a failure before any signal gives this state back.
    pub fn rollback(
        self,
        opts: &OpOptions,
        observer: &dyn Observer,
    ) -> Result<Steady, OpError<Drained>> {
        let target = self.at.target.clone();
        let ctx = Ctx::new(&target, opts, observer);
        if let Err(e) = ctx.pidfd_gate() {
            return Err(ctx.fail(Some(self), e, |_| Phase::Drained, false));
        }
        match ctx.step(Step::Rollback, || {
            rollback(&ctx, &self.old, &self.new, false)
        }) {
            Ok(observation) => Ok(Steady {
                at: self.at.seeing(observation),
                master: self.old,
            }),
            Err(e) => {
                let state = (!ctx.has_changed()).then_some(self);
                Err(ctx.fail(state, e, |_| Phase::Drained, false))
            }
        }
    }
}
