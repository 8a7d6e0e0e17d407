//! Which children of a master are its workers, and which are masters themselves, by the
//! flavor's rules ([`crate::flavor::Roles`]); what a master looks like as [`MasterInfo`].

use std::time::UNIX_EPOCH;

use super::{MasterInfo, WorkerInfo};
use crate::flavor::Flavor;
use crate::pid::Pid;
use crate::procfs::{self, ChildProc, ProcInfo};

/// What the role rules look at in a child: the cheap [`ChildProc`] of the model's one
/// `/proc` pass, or a full [`ProcInfo`] where an operation has one anyway.
pub(crate) trait Child {
    fn pid(&self) -> Pid;
    fn title(&self) -> &str;
    fn is_zombie(&self) -> bool;
    fn start_time(&self) -> u64;
}

impl Child for ChildProc {
    fn pid(&self) -> Pid {
        self.pid
    }
    fn title(&self) -> &str {
        &self.title
    }
    fn is_zombie(&self) -> bool {
        ChildProc::is_zombie(self)
    }
    fn start_time(&self) -> u64 {
        self.start_time
    }
}

impl Child for ProcInfo {
    fn pid(&self) -> Pid {
        self.pid
    }
    fn title(&self) -> &str {
        &self.title
    }
    fn is_zombie(&self) -> bool {
        ProcInfo::is_zombie(self)
    }
    fn start_time(&self) -> u64 {
        self.start_time
    }
}

/// Whether `child` (of a master) has children of its own titled as workers: with roles
/// from the parent link (gunicorn) that makes it a master, not a worker.
fn has_worker_children(flavor: &Flavor, child: &impl Child) -> bool {
    procfs::child_procs(child.pid()).is_ok_and(|grandchildren| {
        grandchildren
            .iter()
            .any(|g| !g.is_zombie() && flavor.is_worker_title(&g.title))
    })
}

/// Whether a child of a master is a worker: titled as one, and, where titles do not tell
/// the roles apart ([`Flavor::roles_from_parent_link`]), without workers of its own.
/// Zombies are included (they are not masters); callers that need live workers filter
/// them out.
pub(crate) fn is_worker_child(flavor: &Flavor, child: &impl Child) -> bool {
    flavor.is_worker_title(child.title())
        && !(flavor.roles_from_parent_link() && has_worker_children(flavor, child))
}

/// Whether a child of a master is itself a (new) master: live, titled as a master, and,
/// where titles do not tell the roles apart, with workers of its own.
pub(crate) fn is_child_master(flavor: &Flavor, child: &impl Child) -> bool {
    !child.is_zombie()
        && flavor.is_master_title(child.title())
        && (!flavor.roles_from_parent_link() || has_worker_children(flavor, child))
}

/// The children of a master that are live workers, sorted by pid.
pub(crate) fn workers_of(flavor: &Flavor, children: &[impl Child]) -> Vec<WorkerInfo> {
    let mut workers: Vec<WorkerInfo> = children
        .iter()
        .filter(|c| !c.is_zombie() && is_worker_child(flavor, *c))
        .map(|c| WorkerInfo {
            pid: c.pid(),
            start_time: c.start_time(),
            title: c.title().to_string(),
            shutting_down: flavor.is_shutting_down_title(c.title()),
        })
        .collect();
    workers.sort_by_key(|w| w.pid);
    workers
}

pub(crate) fn master_info(info: ProcInfo, workers: Vec<WorkerInfo>) -> MasterInfo {
    MasterInfo {
        pid: info.pid,
        started_at: procfs::start_time_to_system_time(info.start_time).unwrap_or(UNIX_EPOCH),
        exe: info.exe,
        exe_deleted: info.exe_deleted,
        start_time: info.start_time,
        title: info.title,
        cmdline: info.cmdline,
        ppid: info.ppid,
        sid: info.sid,
        workers,
    }
}
