//! The model's one `/proc` pass against real processes: the children listed through
//! `/proc/<pid>/task/*/children` and by a scan of every process agree, and a zombie
//! child is seen as one and never counted as a worker.
//!
//! The parent is a process this test starts (not the test binary, whose other threads
//! start children of their own meanwhile); it and its children are killed and reaped
//! by a guard: the test binary is a child subreaper, so the orphans come back to it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::flavor::{Flavor, TitleMarkers};
use crate::model::workers_of;
use crate::procfs::{child_pids_using, child_procs, proc_stat, ChildProc};
use crate::Pid;

/// Kills the parent and its children (one process group) when dropped, and reaps them
/// all: the orphaned children were reparented to this binary (a subreaper).
struct Group(Child, Vec<Pid>);

impl Drop for Group {
    fn drop(&mut self) {
        // The parent leads its own process group: one signal ends the children too.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.0.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.0.wait();
        for kid in &self.1 {
            let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(kid.get()), None);
        }
    }
}

/// A `sleep` with two sleeping children and one that has exited: the exec'd `sleep`
/// never reaps it, so it stays a zombie.
fn parent_with_a_zombie() -> (Group, Pid) {
    use std::os::unix::process::CommandExt;
    nix::sys::prctl::set_child_subreaper(true).unwrap();
    let mut child = Command::new("sh")
        .args([
            "-c",
            "sleep 600 & sleep 600 & sleep 0 & echo ready; exec sleep 600",
        ])
        .stdout(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap();
    super::read_ready(&mut child);
    let pid = Pid::try_from(child.id()).unwrap();
    (Group(child, Vec::new()), pid)
}

/// Looks until the children are up (titles set by their exec) and the short one has
/// exited, with a deadline: nothing announces either.
fn settled(group: &mut Group, parent: Pid) -> Vec<ChildProc> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let children = child_procs(parent).unwrap();
        for c in &children {
            if !group.1.contains(&c.pid) {
                group.1.push(c.pid);
            }
        }
        let zombies = children.iter().filter(|c| c.is_zombie()).count();
        let sleeping = children
            .iter()
            .filter(|c| !c.is_zombie() && c.title == "sleep 600")
            .count();
        if zombies == 1 && sleeping == 2 {
            return children;
        }
        assert!(
            Instant::now() < deadline,
            "children never settled: {children:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn children_from_tasks_and_from_a_scan_agree() {
    let (mut group, parent) = parent_with_a_zombie();
    let children = settled(&mut group, parent);
    let from_tasks = child_pids_using(parent, true).unwrap();
    let by_scan = child_pids_using(parent, false).unwrap();
    assert_eq!(from_tasks.len(), 3, "{from_tasks:?}");
    assert_eq!(from_tasks, by_scan);
    let mut listed: Vec<Pid> = children.iter().map(|c| c.pid).collect();
    listed.sort_unstable();
    assert_eq!(listed, from_tasks);
    for child in &children {
        let stat = proc_stat(child.pid).unwrap();
        assert_eq!(child.ppid, parent.get());
        assert_eq!(child.start_time, stat.start_time);
        assert_eq!(child.state, stat.state);
        assert_eq!(child.comm, "sleep");
    }
}

#[test]
fn a_zombie_child_is_not_a_worker() {
    let (mut group, parent) = parent_with_a_zombie();
    let children = settled(&mut group, parent);
    let zombie = children.iter().find(|c| c.is_zombie()).unwrap();
    // Its title comes from its name, which matches the worker marker like the others'.
    assert_eq!(zombie.title, "[sleep]");
    let flavor = Flavor::nginx().with_titles(TitleMarkers {
        master: "master process".into(),
        worker: "sleep".into(),
        shutting_down: String::new(),
        helpers: Vec::new(),
    });
    let workers = workers_of(&flavor, &children);
    assert_eq!(workers.len(), 2, "{workers:?}");
    assert!(workers.iter().all(|w| w.pid != zombie.pid));
    assert!(workers.iter().all(|w| w.title == "sleep 600"));
}
