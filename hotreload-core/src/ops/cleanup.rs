//! Clean-up after a new master that went wrong: stopping a hung or wrong new master (and,
//! past a grace, its children), and workers a dead new master left behind. Only what our
//! spawn signal started is stopped: the old master's children from before it (nginx's
//! cache manager and loader) are recorded and never touched.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use super::engine::Ctx;
use crate::error::Error;
use crate::event::Role;
use crate::model::{error_chain, is_worker_child, workers_of};
use crate::pid::Pid;
use crate::process::{ProcInfo, ProcessHandle};
use crate::procfs;
use crate::signal::Signal;

/// The old master's children just before the spawn signal, and when it was sent: only a
/// child not among them, started after it, can be the new master.
#[derive(Debug, Clone)]
pub(super) struct Before {
    children: HashSet<(Pid, u64)>,
    workers: usize,
    /// [`procfs::ticks_since_boot`] just before the signal.
    pub(super) at: u64,
}

impl Before {
    /// Takes the record: call it right before sending the spawn signal.
    pub(super) fn take(
        flavor: &crate::flavor::Flavor,
        old: &ProcessHandle,
    ) -> Result<Before, Error> {
        let at = procfs::ticks_since_boot()?;
        let all = procfs::children(old.pid())?;
        let workers = workers_of(flavor, &all).len();
        let children = all.into_iter().map(|c| (c.pid, c.start_time)).collect();
        Ok(Before {
            children,
            workers,
            at,
        })
    }

    fn had(&self, child: &ProcInfo) -> bool {
        self.had_pid(child.pid, child.start_time)
    }

    /// Whether process `pid` started at `start_time` was a child before the signal.
    pub(super) fn had_pid(&self, pid: Pid, start_time: u64) -> bool {
        self.children.contains(&(pid, start_time))
    }

    /// How many of the recorded children were workers (titled so when recorded).
    pub(super) fn worker_count(&self) -> usize {
        self.workers
    }
}

/// Which children of the old master a clean-up may take for a new master.
#[derive(Debug, Clone, Copy)]
pub(super) enum Newcomers<'a> {
    /// Those not in the record taken before our spawn signal.
    Since(&'a Before),
    /// No record (an interrupted upgrade found later): only a child that is titled as a
    /// master, or that executes another file than the old master (it executed a new
    /// program after its fork: a helper is a fork that runs the master's own file).
    Unrecorded,
}

/// Whether `child` of `old` may be a new master under `newcomers`' rule: never a worker,
/// a zombie or one of the flavor's helpers (nginx's cache manager and loader).
pub(super) fn is_new_master_candidate(
    ctx_flavor: &crate::flavor::Flavor,
    old: Pid,
    child: &ProcInfo,
    newcomers: Newcomers<'_>,
) -> bool {
    if child.is_zombie()
        || is_worker_child(ctx_flavor, child)
        || ctx_flavor.is_helper_title(&child.title)
    {
        return false;
    }
    match newcomers {
        Newcomers::Since(before) => !before.had(child) && child.start_time >= before.at,
        Newcomers::Unrecorded => {
            let file = |pid: Pid| {
                std::fs::metadata(format!("/proc/{pid}/exe"))
                    .ok()
                    .map(|m| (m.dev(), m.ino()))
            };
            ctx_flavor.is_master_title(&child.title)
                || matches!((file(child.pid), file(old)), (Some(a), Some(b)) if a != b)
        }
    }
}

/// Stops every child of `old` that `newcomers` allows as a new master (a hung or wrong
/// new master): fast stop, then `KILL` past a short grace, and then its own children too
/// (a killed master's workers would keep the listening sockets). Returns the earliest
/// start time among those stopped (what their orphaned workers are born after).
pub(super) fn stop_children_masters(
    ctx: &Ctx<'_>,
    old: &ProcessHandle,
    newcomers: Newcomers<'_>,
) -> Result<Option<u64>, Error> {
    let flavor = ctx.target.flavor_ref();
    let fast = flavor.signals().fast_stop;
    let grace = ctx.opts.quit_timeout.min(Duration::from_secs(5));
    let mut earliest: Option<u64> = None;
    for child in procfs::children(old.pid())? {
        if !is_new_master_candidate(flavor, old.pid(), &child, newcomers) {
            continue;
        }
        earliest = Some(earliest.map_or(child.start_time, |e| e.min(child.start_time)));
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
    Ok(earliest)
}

/// Stops workers left behind by a new master that died abruptly: a killed nginx master's
/// workers are reparented and keep serving the new executable. They are the live
/// processes of the old master's session titled as workers whose parent is not a live
/// master, started after `born_after` (the spawn signal, or the new master's start, when
/// known), running as the old master's user or as one of its workers' (the same
/// configuration's `user`). Each is told to stop gracefully, then fast past the quit
/// deadline. This scans `/proc` (only on this failure path). Best effort: problems
/// become warnings.
pub(super) fn stop_orphaned_workers(ctx: &Ctx<'_>, old: &ProcessHandle, born_after: Option<u64>) {
    let flavor = ctx.target.flavor_ref();
    let Ok(old_info) = old.info() else {
        return;
    };
    // Whose an orphan may be: the workers' user is the configuration's; while the old
    // master has no live worker (a drain in progress) its own user stands for it.
    let mut users: HashSet<u32> = HashSet::from([old_info.uid]);
    if let Ok(children) = procfs::children(old.pid()) {
        for worker in workers_of(flavor, &children) {
            if let Ok(info) = procfs::proc_info(worker.pid) {
                users.insert(info.uid);
            }
        }
    }
    let born_after = born_after.unwrap_or(old_info.start_time);
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
        if !flavor.is_worker_title(&info.title)
            || is_live_master(info.ppid)
            || info.start_time < born_after
            || !users.contains(&info.uid)
        {
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
