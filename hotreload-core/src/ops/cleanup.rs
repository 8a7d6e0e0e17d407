//! Clean-up after a new master that went wrong: stopping a hung or wrong new master (and,
//! past a grace, its children), and workers a dead new master left behind.

use std::time::{Duration, Instant};

use super::engine::Ctx;
use crate::error::Error;
use crate::event::Role;
use crate::model::{error_chain, is_worker_child};
use crate::pid::Pid;
use crate::process::ProcessHandle;
use crate::procfs;
use crate::signal::Signal;

/// Stops every child of `old` that is neither a worker nor a zombie (a hung or wrong new
/// master): fast stop, then `KILL` past a short grace, and then its own children too (a
/// killed master's workers would keep the listening sockets).
pub(super) fn stop_children_masters(ctx: &Ctx<'_>, old: &ProcessHandle) -> Result<(), Error> {
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
pub(super) fn stop_orphaned_workers(ctx: &Ctx<'_>, old: &ProcessHandle) {
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
