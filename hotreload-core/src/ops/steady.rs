//! The steady state's operations: start a new master (`spawn_new_master`), and settle a
//! journal left with a steady server (`restore_binary`, `commit_binary`). Also what the
//! pipeline's preflight shares with the spawn: which executable a master starts, and
//! whether it would ignore the spawn signal.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cleanup::{stop_children_masters, stop_orphaned_workers, Before, Newcomers};
use super::engine::{pid_named_by, verify_master, verify_new_master, Ctx};
use super::{OpError, OpOptions, Spawned, Steady};
use crate::error::Error;
use crate::event::{Event, Observer, Role, Step};
use crate::flavor::TitleArgs;
use crate::model::{error_chain, MasterInfo, Observation, Phase, Target};
use crate::pid::Pid;
use crate::process::{ProcInfo, ProcessHandle};
use crate::procfs;
use crate::signal::Signal;

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
    let argv = target
        .master_argv(master)
        .unwrap_or_else(|_| target.flavor_ref().master_argv(&master.cmdline));
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
            return Err(ctx.fail(Some(self), e, |_| Phase::Steady, false));
        }
        ctx.step(Step::Spawn, || self.spawn(&ctx))
    }

    fn spawn(self, ctx: &Ctx<'_>) -> Result<Spawned, OpError<Steady>> {
        let target = ctx.target;
        let spawn_signal = target.flavor_ref().signals().spawn;
        let pid = self.master.pid();
        let info = match verify_master(target, &self.master, "the master") {
            Ok(info) => info,
            Err(e) => return Err(ctx.fail(Some(self), e, |_| Phase::Steady, true)),
        };
        if !info.caught.contains(spawn_signal) {
            let ignored = info.ignored.contains(spawn_signal);
            return Err(ctx.fail(
                Some(self),
                Error::NotCatching {
                    pid,
                    signal: spawn_signal,
                    ignored,
                },
                |_| Phase::Steady,
                true,
            ));
        }
        if let Some(reason) = spawn_would_be_ignored(&info) {
            return Err(ctx.fail(
                Some(self),
                Error::SpawnIgnored {
                    pid,
                    signal: spawn_signal,
                    reason,
                },
                |_| Phase::Steady,
                true,
            ));
        }
        let binary = installed_binary(target, self.master());
        let old_path = target.old_pid_file();
        let stamp = file_stamp(target.pid_file());
        // Who the old master's children are before the signal: none of them can be the
        // new master, whatever a clean-up finds later.
        let before = match Before::take(target.flavor_ref(), &self.master) {
            Ok(before) => before,
            Err(e) => return Err(ctx.fail(Some(self), e, |_| Phase::Steady, true)),
        };
        if let Err(e) = ctx.signal(&self.master, spawn_signal, Role::OldMaster) {
            // Not sent (cancelled, or the master is gone): nothing changed.
            let state = matches!(e, Error::Cancelled { .. }).then_some(self);
            return Err(ctx.fail(state, e, |_| Phase::Steady, true));
        }
        let signalled = Instant::now();
        let mut saw_old_pid_file = false;
        let mut new_pid = None;
        let expected_workers = self.master().active_workers().count();
        let mut workers_seen: Option<(usize, Instant)> = None;
        let what = format!("the new master of {pid} to write its pid file and start workers");
        let mut foreign = None;
        let outcome = ctx.poll(&what, ctx.opts.spawn_timeout, || {
            if self.master.has_exited() {
                return Err(Error::ProcessGone { pid });
            }
            if foreign.is_none() {
                foreign = foreign_pid_file(target, pid, info.uid);
            }
            // Read before the observation, not after: a steady glimpse taken just before the
            // master renames its pid file away must not pass for the file renamed back.
            let stamp_now = file_stamp(target.pid_file());
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
                    if saw_old_pid_file || stamp_now != stamp {
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
        // What a failure says about others acting meanwhile: then the new build is not
        // to blame (advice follows the cause).
        let blame = |error: Error| -> Error {
            let what = foreign
                .clone()
                .or_else(|| reloaded_meanwhile(target, pid, &before));
            match what {
                Some(what) => Error::Interfered {
                    old: pid,
                    what,
                    source: Box::new(error),
                },
                None => error,
            }
        };
        let outcome = outcome.map_err(|e| match e {
            e @ (Error::NewMasterDied { .. }
            | Error::WrongExecutable { .. }
            | Error::SpawnIgnored { .. }) => blame(e),
            e => e,
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
                let error = blame(error);
                self.abandon_spawn(ctx, error, &before)
            }
            Err(error) => match error.without_interference() {
                Error::WrongExecutable { .. } => self.abandon_spawn(ctx, error, &before),
                Error::Cancelled { .. } => {
                    // Cancelled while the new master starts: undo the spawn to the end.
                    ctx.ignore_cancel();
                    if new_pid.is_none() {
                        self.await_fork(ctx, spawn_signal, signalled, saw_old_pid_file, &before);
                    }
                    self.abandon_spawn(ctx, error, &before)
                }
                Error::NewMasterDied { .. } => {
                    stop_orphaned_workers(ctx, &self.master, Some(before.at));
                    let state = self.refresh();
                    Err(ctx.fail(state, error, |_| Phase::Steady, true))
                }
                Error::SpawnIgnored { .. } => {
                    let state = self.refresh();
                    Err(ctx.fail(state, error, |_| Phase::Steady, true))
                }
                _ => Err(ctx.fail(None, error, |_| Phase::Steady, true)),
            },
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
                    told_workers_to_stop: false,
                })
            }
            Err(e) => Err(ctx.fail(None, e, |_| Phase::Steady, true)),
        }
    }

    /// A cancel right after the spawn signal can come before the master acted on it:
    /// there is no new master to stop yet, and one stopped "nothing" would leave the
    /// master to start it a moment later, unwatched. Waits until the master has a child
    /// besides its workers (then `abandon_spawn` stops it), or the spawn is over without
    /// one (its pid file shown and taken back), or the master ignores the signal (no
    /// sign of it within the time the spawn wait allows for that).
    fn await_fork(
        &self,
        ctx: &Ctx<'_>,
        signal: Signal,
        signalled: Instant,
        mut shown: bool,
        before: &Before,
    ) {
        let target = ctx.target;
        let pid = self.master.pid();
        let old_path = target.old_pid_file();
        let flavor = target.flavor_ref();
        let _ = ctx.poll(
            &format!("master {pid} to act on {signal}, to stop the new master it starts"),
            ctx.opts.quit_timeout,
            || {
                // Only a child born after the signal: the master's helpers (nginx's cache
                // manager and loader) were there before it.
                let forked = procfs::children(pid)?.iter().any(|c| {
                    !c.is_zombie()
                        && !crate::model::is_worker_child(flavor, c)
                        && !before.had_pid(c.pid, c.start_time)
                });
                if forked {
                    return Ok(Some(()));
                }
                let showing = if old_path == target.pid_file() {
                    pid_named_by(&target.new_pid_file()).is_some_and(|p| p != pid)
                } else {
                    pid_named_by(&old_path) == Some(pid)
                };
                shown |= showing;
                let ignored = signalled.elapsed() >= SPAWN_ACK.min(ctx.opts.spawn_timeout);
                Ok((!showing && (shown || ignored)).then_some(()))
            },
        );
    }

    /// After a failed spawn with a live new master (hung or wrong): stop it so that the
    /// old master takes its pid file back, then report `error` with the steady state.
    fn abandon_spawn(
        self,
        ctx: &Ctx<'_>,
        error: Error,
        before: &Before,
    ) -> Result<Spawned, OpError<Steady>> {
        let old = self.master.pid();
        ctx.decision(format!(
            "{}; stopping the new master so that master {old} takes its pid file back",
            error_chain(&error)
        ));
        if let Err(e) = stop_children_masters(ctx, &self.master, Newcomers::Since(before)) {
            ctx.warning(format!(
                "could not stop the new master: {}",
                error_chain(&e)
            ));
            return Err(ctx.fail(None, error, |_| Phase::Steady, true));
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
        stop_orphaned_workers(ctx, &self.master, Some(before.at));
        match restored {
            Ok(Some(())) => {
                let state = self.refresh();
                Err(ctx.fail(state, error, |_| Phase::Steady, true))
            }
            _ => Err(ctx.fail(None, error, |_| Phase::Steady, true)),
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

/// Someone else writing the pid file while the new master starts (the spawn window
/// between the old master renaming it and the new one writing it): a file another user
/// owns, or a pid that is not a child of the old master.
fn foreign_pid_file(target: &Target, old: Pid, server_uid: u32) -> Option<String> {
    let path = target.new_pid_file();
    let meta = fs::symlink_metadata(&path).ok()?;
    if meta.uid() != 0 && meta.uid() != server_uid {
        return Some(format!(
            "{} was created by user {} (neither root nor the server's user {server_uid}) while \
             the new master of {old} started: someone else raced to create the pid file",
            path.display(),
            meta.uid()
        ));
    }
    let named = pid_named_by(&path).filter(|&p| p != old)?;
    let info = procfs::proc_info(named).ok()?;
    (!info.is_zombie() && info.ppid != old.get()).then(|| {
        format!(
            "{} named process {named} (`{}`, child of {}), which the spawn signal to {old} did \
             not start: someone else wrote the pid file while the new master started",
            path.display(),
            info.title,
            info.ppid
        )
    })
}

/// The old master was told to reload while the new master started: workers born after
/// the spawn signal serve although none of those it had before died (nginx, told `HUP`
/// while a new binary starts, adds a set of workers), or every worker it had was replaced
/// (a plain reload). hotreload sends no such signal during a spawn, so it came from
/// elsewhere. A crashed worker's replacement is neither: one worker fewer, one new.
fn reloaded_meanwhile(target: &Target, old: Pid, before: &Before) -> Option<String> {
    let flavor = target.flavor_ref();
    let children = procfs::children(old).ok()?;
    let workers = crate::model::workers_of(flavor, &children);
    let (fresh, kept): (Vec<_>, Vec<_>) = workers
        .iter()
        .filter(|w| !w.shutting_down)
        .partition(|w| w.start_time >= before.at && !before.had_pid(w.pid, w.start_time));
    let had = before.worker_count();
    let reloaded = had > 0 && !fresh.is_empty() && (kept.is_empty() || kept.len() >= had);
    reloaded.then(|| {
        format!(
            "master {old} started workers {} while its new master started, {}: it was told to \
             reload ({}) by someone other than hotreload during the upgrade",
            fresh
                .iter()
                .map(|w| w.pid.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            if kept.is_empty() {
                "replacing all of its workers"
            } else {
                "although none of its workers had exited"
            },
            flavor.signals().restart_workers
        )
    })
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

impl Steady {
    /// Puts back the executable recorded in the journal of an upgrade that stopped before
    /// its new master started (the swap happened, the spawn did not), and removes the
    /// journal. Does nothing when there is no journal. On failure the state is given
    /// back when nothing was changed.
    pub fn restore_binary(
        self,
        opts: &OpOptions,
        observer: &dyn Observer,
    ) -> Result<Steady, OpError<Steady>> {
        let target = self.at.target.clone();
        let ctx = Ctx::new(&target, opts, observer);
        if let Err(e) = ctx.pidfd_gate() {
            return Err(ctx.fail(Some(self), e, |_| Phase::Steady, false));
        }
        stop_orphaned_workers(&ctx, &self.master, None);
        match ctx.step(Step::RestoreBinary, || ctx.restore_binary(&self.master)) {
            Ok(()) => Ok(self),
            Err(e) => {
                let state = (!ctx.has_changed()).then_some(self);
                Err(ctx.fail(state, e, |_| Phase::Steady, false))
            }
        }
    }

    /// Commits the swap recorded in the journal (drops the backup) and removes the
    /// journal: for an upgrade whose old master is already gone. Does nothing when there
    /// is no journal. On failure nothing was changed and the state is given back.
    pub fn commit_binary(
        self,
        opts: &OpOptions,
        observer: &dyn Observer,
    ) -> Result<Steady, OpError<Steady>> {
        let target = self.at.target.clone();
        let ctx = Ctx::new(&target, opts, observer);
        match ctx.step(Step::Commit, || ctx.commit_binary(&self.master)) {
            Ok(()) => Ok(self),
            Err(e) => Err(ctx.fail(Some(self), e, |_| Phase::Steady, false)),
        }
    }
}

#[cfg(test)]
mod stamp_tests {
    use super::file_stamp;
    use std::time::{Duration, Instant};

    #[test]
    fn a_pid_file_renamed_away_and_back_is_told_from_one_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let pid_file = dir.path().join("nginx.pid");
        let away = dir.path().join("nginx.pid.oldbin");
        assert_eq!(file_stamp(&pid_file), None, "no file, no stamp");
        std::fs::write(&pid_file, "4242\n").unwrap();
        let before = file_stamp(&pid_file).expect("a stamp");
        assert_eq!(file_stamp(&pid_file), Some(before), "left alone");
        // The same inode comes back (a master taking its pid file back): its change time
        // tells, once the clock has moved past the first one (it may be coarse).
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            std::fs::rename(&pid_file, &away).unwrap();
            std::fs::rename(&away, &pid_file).unwrap();
            let after = file_stamp(&pid_file).expect("back");
            assert_eq!(after.0, before.0, "the same inode");
            if after != before {
                break;
            }
            assert!(Instant::now() < deadline, "the stamp never changed");
            std::thread::yield_now();
        }
    }
}
