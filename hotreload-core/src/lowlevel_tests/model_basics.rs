//! The model's small public pieces: how a phase and an observation read, which workers
//! count as active, and the paths a target derives from its pid file. Written for
//! survivors of the cargo-mutants run (MUTANTS.md); the observation itself is tested on
//! live servers end to end (tests/tests/core, tests/tests/safety).

use std::path::Path;
use std::time::SystemTime;

use crate::flavor::Flavor;
use crate::model::{MasterInfo, Observation, Phase, Target, WorkerInfo};
use crate::pid::Pid;

fn worker(pid: i64, shutting_down: bool) -> WorkerInfo {
    WorkerInfo {
        pid: Pid::new(pid).unwrap(),
        start_time: 1,
        title: "nginx: worker process".into(),
        shutting_down,
    }
}

fn master(pid: i64, workers: Vec<WorkerInfo>) -> MasterInfo {
    MasterInfo {
        pid: Pid::new(pid).unwrap(),
        exe: None,
        exe_deleted: false,
        start_time: 1,
        started_at: SystemTime::UNIX_EPOCH,
        title: "nginx: master process".into(),
        cmdline: vec![],
        ppid: 1,
        sid: pid as i32,
        workers,
    }
}

#[test]
fn phases_and_observations_read_as_the_cli_prints_them() {
    assert_eq!(Phase::Drained.to_string(), "drained");
    let steady = Observation {
        phase: Phase::Steady,
        old_master: Some(master(100, vec![worker(101, false), worker(102, false)])),
        new_master: None,
        evidence: vec!["e1".into()],
    };
    assert_eq!(steady.to_string(), "steady: master 100 (2 workers)");
    let spawned = Observation {
        phase: Phase::Spawned,
        old_master: Some(master(100, vec![worker(101, false)])),
        new_master: Some(master(200, vec![worker(201, false), worker(202, false)])),
        evidence: vec!["e1".into()],
    };
    assert_eq!(
        spawned.to_string(),
        "spawned: old master 100 (1 workers), new master 200 (2 workers)"
    );
    let unknown = Observation {
        phase: Phase::Unknown,
        old_master: None,
        new_master: None,
        evidence: vec!["no pid file".into(), "no master".into()],
    };
    assert_eq!(unknown.to_string(), "unknown: no pid file; no master");
}

#[test]
fn only_workers_not_shutting_down_are_active() {
    let m = master(100, vec![worker(101, true), worker(102, false)]);
    let active: Vec<Pid> = m.active_workers().map(|w| w.pid).collect();
    assert_eq!(active, [Pid::new(102).unwrap()]);
}

#[test]
fn a_target_derives_its_files_from_the_pid_file() {
    let t = Target::new("/run/nginx.pid").binary("/usr/sbin/nginx");
    assert_eq!(t.binary_path(), Some(Path::new("/usr/sbin/nginx")));
    assert_eq!(t.old_pid_file(), Path::new("/run/nginx.pid.oldbin"));
    assert_eq!(t.new_pid_file(), Path::new("/run/nginx.pid"));
    // hotreload's own files are in its state home, keyed by the pid file; the old
    // journal place is only looked at.
    let t = t.state_dir("/run/hotreload-test");
    let (lock, journal) = (t.lock_file().unwrap(), t.journal_file().unwrap());
    assert_eq!(lock.parent(), Some(Path::new("/run/hotreload-test")));
    assert_eq!(journal.parent(), Some(Path::new("/run/hotreload-test")));
    assert_ne!(lock, journal);
    assert_eq!(
        t.legacy_journal_file(),
        Path::new("/run/nginx.pid.hotreload-journal")
    );
    let g = Target::new("/run/gunicorn.pid").flavor(Flavor::gunicorn());
    assert_eq!(g.flavor_ref().name(), "gunicorn");
    assert_eq!(g.binary_path(), None);
}
