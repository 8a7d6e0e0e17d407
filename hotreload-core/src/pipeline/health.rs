//! The health gates of the pipeline: after the spawn (answers must come from the new
//! master's workers) and after the drain (a regression rolls back at once).

use std::time::{Duration, Instant};

use super::options::HEALTH_REGRESSION;
use super::Run;
use crate::error::Error;
use crate::event::{Event, Step};
use crate::health::HealthCheck;
use crate::model::MasterInfo;
use crate::ops::engine::Ctx;
use crate::ops::Spawned;
use crate::pid::Pid;
use crate::procfs;
use crate::wait::Nap;

impl Run<'_> {
    /// Runs the health checks. After the spawn each check may fail until the health
    /// timeout (the new workers may still be warming up, and the old ones answer too).
    /// After the drain only the new build answers and every failure is its own: a check
    /// that keeps failing for [`HEALTH_REGRESSION`] fails at once, so that a bad build
    /// does not serve everyone for the whole health timeout.
    ///
    /// With `new` (after the spawn), a check that can tell which process answered
    /// counts only when a worker of the new master answered it (see
    /// [`Run::new_workers_check`]).
    pub(super) fn health(
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
        let name = check.describe();
        let timeout = self.opts.health_timeout;
        let started = Instant::now();
        let deadline = started + timeout;
        let what = format!("health check {name} ({when}) to be answered by a new worker");
        let nap = Nap::Backoff {
            first: FIRST_PAUSE,
            max: MAX_PAUSE.max(timeout / MAX_TRIES),
        };
        let (mut tries, mut by_old, mut unattributed) = (0u32, 0u32, 0u32);
        let mut last: Option<String> = None;
        let no_answer = |tries: u32, by_old: u32, unattributed: u32, last: &Option<String>| {
            let mut why = format!(
                "no worker of the new master {} answered the health check in {tries} \
                 tries over {:.1?} ({by_old} answered by old workers, {unattributed} \
                 not attributed)",
                new.master,
                started.elapsed()
            );
            if let Some(last) = last {
                why.push_str(&format!("; last unattributed: {last}"));
            }
            why
        };
        let answered = ctx.waiter().until(&what, timeout, nap, || {
            let candidates = new.candidates();
            let per_try = deadline
                .saturating_duration_since(Instant::now())
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
                    return Ok(Some(
                        answer
                            .result
                            .map_err(|why| format!("{why}, answered by new worker {pid}")),
                    ));
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
            if tries >= MAX_TRIES {
                return Ok(Some(Err(no_answer(tries, by_old, unattributed, &last))));
            }
            Ok(None)
        })?;
        let verdict: Result<String, String> = match answered {
            Some(verdict) => verdict,
            None => Err(no_answer(tries, by_old, unattributed, &last)),
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
}

/// The processes an after-spawn health check must be answered by (the new master's
/// workers), and those whose answers are ignored (the old master's).
pub(super) struct NewWorkers {
    master: Pid,
    /// The new master's workers when it was seen spawned.
    workers: Vec<Pid>,
    /// The old master's workers then.
    old: Vec<Pid>,
}

impl NewWorkers {
    pub(super) fn of(spawned: &Spawned) -> NewWorkers {
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
