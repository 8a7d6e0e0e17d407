//! The one operation on a target in no known phase: ending a spawn that was left hanging
//! (its orchestrator was killed while a new master hung on start).

use super::cleanup::{
    is_new_master_candidate, stop_children_masters, stop_orphaned_workers, Newcomers,
};
use super::engine::{pid_named_by, verify_master, Ctx};
use super::{pin, Attached, OpError, OpOptions, Steady};
use crate::error::Error;
use crate::event::{Observer, Step};
use crate::model::{Observation, Phase, Target};
use crate::procfs;

impl Target {
    /// Ends a spawn that was left hanging (its orchestrator was killed while a new master
    /// hung on start): the one operation allowed on a target in [`Phase::Unknown`], and
    /// only in exactly this shape: the old pid file names a live master, the pid file does
    /// not name a new master with workers, and the old master has a child that is neither
    /// a worker nor a zombie. That child (the hung new master) is stopped like a spawn
    /// past its deadline (fast stop, then `KILL` with its children), the old master takes
    /// its pid file back, workers the new master left behind are stopped, and the
    /// executable is restored from the journal. Anything else is refused with the evidence.
    ///
    /// On failure `left` says whether anything was stopped; the state is never given back
    /// (attach again).
    pub fn abort_spawn(
        &self,
        opts: &OpOptions,
        observer: &dyn Observer,
    ) -> Result<Steady, OpError<Steady>> {
        let ctx = Ctx::new(self, opts, observer);
        if let Err(e) = ctx.pidfd_gate() {
            return Err(ctx.fail(None, e, |_| Phase::Steady, false));
        }
        ctx.step(Step::Rollback, || self.abort_spawn_in(&ctx))
            .map_err(|e| ctx.fail(None, e, |_| Phase::Steady, false))
    }

    fn abort_spawn_in(&self, ctx: &Ctx<'_>) -> Result<Steady, Error> {
        let seen = self.observe()?;
        let refuse = |why: &str, seen: Observation| Error::WrongPhase {
            operation: "abort a hung spawn",
            expected: "an interrupted spawn (old pid file naming a live master with a hung child)",
            found: format!("{} ({why})", seen.phase),
            evidence: seen.evidence,
        };
        if !matches!(seen.phase, Phase::Unknown | Phase::Spawning) {
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
            .any(|c| is_new_master_candidate(flavor, old.pid(), &c, Newcomers::Unrecorded));
        if !hung {
            return Err(refuse(
                "the old master has no child but its workers and helpers (no child titled as \
                 a master or running another executable)",
                seen,
            ));
        }
        ctx.decision(format!(
            "a spawn of master {} was left hanging: stopping its new master",
            old.pid()
        ));
        // No record of the children from before the spawn survives the orchestrator: be
        // conservative (never a helper, only a master or a process that executed anew).
        let born = stop_children_masters(ctx, &old, Newcomers::Unrecorded)?;
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
        stop_orphaned_workers(ctx, &old, born);
        ctx.step(Step::RestoreBinary, || ctx.restore_binary(&old))?;
        Ok(Steady {
            at: Box::new(Attached {
                target: self.clone(),
                observation: seen,
            }),
            master: old,
        })
    }
}
