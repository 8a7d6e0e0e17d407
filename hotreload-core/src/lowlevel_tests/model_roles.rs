//! The role rules where titles do not tell a master from a worker (gunicorn without
//! `setproctitle`: every process of the server has the same command line), on a live
//! process tree: a child of a master is itself a master when it has live children titled
//! as ours, a worker otherwise; zombies are never masters and never live workers. The
//! end-to-end tests run nginx-style titles, where these rules do not apply; only the
//! real gunicorn tests (tests/tests/real) reach them otherwise.
//!
//! Every process here runs `app-proc`, a symlink to `sleep`, so that even a zombie's
//! title (`[app-proc]`, from its `comm`) carries the marker, as `[gunicorn]` does.

use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::flavor::{Flavor, Roles, TitleMarkers};
use crate::model::{is_child_master, is_worker_child, workers_of};
use crate::pid::Pid;
use crate::procfs::{self, ChildProc};

/// A tree in its own process group, killed (the whole group) when dropped:
///
/// ```text
/// top (app-proc 1000, never reaps)
/// ├── zombie        (app-proc 0.2, exited)
/// ├── worker        (app-proc 1000)
/// ├── master        (app-proc 1000) ── its worker (app-proc 1000), a zombie
/// └── lone          (app-proc 1000) ── a zombie only
/// ```
struct Tree {
    top: Child,
    _dir: tempfile::TempDir,
}

impl Drop for Tree {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this test created (`process_group(0)`).
        unsafe { libc::kill(-(self.top.id() as i32), libc::SIGKILL) };
        let _ = self.top.wait();
    }
}

const SCRIPT: &str = r#"
a=$1
"$a" 0.2 &
"$a" 1000 &
bash -c '"$0" 1000 & "$0" 0.2 & exec "$0" 1000' "$a" &
bash -c '"$0" 0.2 & exec "$0" 1000' "$a" &
exec "$a" 1000
"#;

struct Roles4 {
    zombie: ChildProc,
    worker: ChildProc,
    master: ChildProc,
    lone: ChildProc,
}

impl Tree {
    fn start() -> Tree {
        Tree::start_script(SCRIPT)
    }

    fn start_script(script: &str) -> Tree {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app-proc");
        symlink(Path::new("/bin/sleep"), &app).unwrap();
        let top = Command::new("bash")
            .args(["-c", script, "tree"])
            .arg(&app)
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        Tree { top, _dir: dir }
    }

    fn pid(&self) -> Pid {
        Pid::new(i64::from(self.top.id())).unwrap()
    }

    /// Waits (bounded) until the tree is as drawn, and names its four children.
    fn settled(&self) -> Roles4 {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Some(roles) = self.try_roles(&mut last) {
                return roles;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the tree did not settle in 30 s; last seen: {last}");
    }

    fn try_roles(&self, last: &mut String) -> Option<Roles4> {
        let ours = |c: &ChildProc| c.title.contains("app-proc");
        let top = procfs::proc_info(self.pid()).ok()?;
        let children = procfs::child_procs(self.pid()).ok()?;
        *last = format!("top `{}`, children {children:?}", top.title);
        if !top.title.contains("app-proc") || children.len() != 4 || !children.iter().all(ours) {
            return None;
        }
        let (mut zombie, mut worker, mut master, mut lone) = (None, None, None, None);
        for c in children {
            if c.is_zombie() {
                zombie = Some(c);
                continue;
            }
            let grandchildren = procfs::child_procs(c.pid).ok()?;
            if !grandchildren.iter().all(ours) {
                return None;
            }
            let zombies = grandchildren.iter().filter(|g| g.is_zombie()).count();
            match (grandchildren.len(), zombies) {
                (0, 0) => worker = Some(c),
                (2, 1) => master = Some(c),
                (1, 1) => lone = Some(c),
                _ => return None,
            }
        }
        Some(Roles4 {
            zombie: zombie?,
            worker: worker?,
            master: master?,
            lone: lone?,
        })
    }
}

/// One marker for both roles, as gunicorn's.
fn flavor(roles: Roles) -> Flavor {
    let titles = TitleMarkers {
        master: "app-proc".into(),
        worker: "app-proc".into(),
        ..TitleMarkers::gunicorn()
    };
    Flavor::gunicorn().with_titles(titles).with_roles(roles)
}

#[test]
fn with_roles_from_the_parent_link_a_child_with_live_children_is_a_master() {
    let tree = Tree::start();
    let r = tree.settled();
    let f = flavor(Roles::FromParentLink);
    assert!(f.roles_from_parent_link());

    assert!(is_child_master(&f, &r.master), "{:?}", r.master);
    assert!(
        !is_child_master(&f, &r.worker),
        "no children: {:?}",
        r.worker
    );
    assert!(
        !is_child_master(&f, &r.lone),
        "only a zombie child: {:?}",
        r.lone
    );
    assert!(!is_child_master(&f, &r.zombie), "a zombie: {:?}", r.zombie);

    assert!(is_worker_child(&f, &r.worker), "{:?}", r.worker);
    assert!(is_worker_child(&f, &r.lone), "{:?}", r.lone);
    assert!(!is_worker_child(&f, &r.master), "{:?}", r.master);
    // Zombies are included: callers that need live workers filter them out.
    assert!(is_worker_child(&f, &r.zombie), "{:?}", r.zombie);

    // The same answers from a full /proc read of the same processes.
    let info = |c: &ChildProc| procfs::proc_info(c.pid).unwrap();
    assert!(is_child_master(&f, &info(&r.master)));
    assert!(!is_child_master(&f, &info(&r.worker)));
    assert!(is_worker_child(&f, &info(&r.lone)));
    assert!(!is_worker_child(&f, &info(&r.master)));

    // The live workers of the top: not the child master, not the zombie; sorted, each
    // with its own start time and title.
    let children = procfs::child_procs(tree.pid()).unwrap();
    let workers = workers_of(&f, &children);
    let mut expected = [&r.worker, &r.lone];
    expected.sort_by_key(|c| c.pid);
    let seen: Vec<(Pid, u64, &str)> = workers
        .iter()
        .map(|w| (w.pid, w.start_time, w.title.as_str()))
        .collect();
    let want: Vec<(Pid, u64, &str)> = expected
        .iter()
        .map(|c| (c.pid, c.start_time, c.title.as_str()))
        .collect();
    assert_eq!(seen, want);
    assert!(workers.iter().all(|w| !w.shutting_down));
    // The same from full reads, the zombie's included: it is no live worker.
    let full = procfs::children(tree.pid()).unwrap();
    assert!(
        full.iter().any(|c| c.pid == r.zombie.pid && c.is_zombie()),
        "the zombie is read in full too: {full:?}"
    );
    let from_full: Vec<Pid> = workers_of(&f, &full).iter().map(|w| w.pid).collect();
    assert_eq!(from_full, want.iter().map(|w| w.0).collect::<Vec<_>>());
}

#[test]
fn with_roles_from_the_title_children_are_not_looked_into() {
    let tree = Tree::start();
    let r = tree.settled();
    let f = flavor(Roles::FromTitle);
    // The one marker says both: every live child is a master and a worker.
    for c in [&r.master, &r.worker, &r.lone] {
        assert!(is_child_master(&f, c), "{c:?}");
        assert!(is_worker_child(&f, c), "{c:?}");
    }
    assert!(!is_child_master(&f, &r.zombie));
    let children = procfs::child_procs(tree.pid()).unwrap();
    assert_eq!(workers_of(&f, &children).len(), 3);
}

/// A second shape: the top's only other child is a zombie.
///
/// ```text
/// top (app-proc 1000, never reaps)
/// ├── zombie        (app-proc 0.2, exited)
/// └── master        (app-proc 1000) ── its worker (app-proc 1000)
/// ```
const LONE_MASTER: &str = r#"
a=$1
"$a" 0.2 &
bash -c '"$0" 1000 & exec "$0" 1000' "$a" &
exec "$a" 1000
"#;

/// `tree`'s child that has a live child, once the top has `children` children, one of
/// them a zombie.
fn child_master(tree: &Tree, children: usize) -> Pid {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let kids = procfs::child_procs(tree.pid()).unwrap_or_default();
        let parents: Vec<Pid> = kids
            .iter()
            .filter(|c| {
                !c.is_zombie()
                    && procfs::child_procs(c.pid).is_ok_and(|g| g.iter().any(|g| !g.is_zombie()))
            })
            .map(|c| c.pid)
            .collect();
        let titled = kids.iter().all(|c| c.title.contains("app-proc"));
        let zombies = kids.iter().filter(|c| c.is_zombie()).count();
        if kids.len() == children && titled && zombies == 1 && parents.len() == 1 {
            return parents[0];
        }
        assert!(
            Instant::now() < deadline,
            "the tree did not settle: {kids:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What `observe` says of a pid file naming `master`, in a directory of its own.
fn observed(master: Pid) -> crate::model::Observation {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("app.pid");
    std::fs::write(&pid_file, format!("{master}\n")).unwrap();
    crate::model::Target::new(&pid_file)
        .flavor(flavor(Roles::FromParentLink))
        .observe_now()
        .unwrap()
}

#[test]
fn with_roles_from_the_parent_link_a_master_under_a_serving_master_is_not_steady() {
    // The top serves (it has live workers besides this master): two masters, the old pid
    // file gone.
    let tree = Tree::start();
    let r = tree.settled();
    let seen = observed(r.master.pid);
    assert_eq!(seen.phase, crate::model::Phase::Unknown, "{seen:?}");
    let two = format!(
        "master {} is a child of master {}",
        r.master.pid,
        tree.pid()
    );
    assert!(
        seen.evidence.iter().any(|e| e.starts_with(&two)),
        "expected {two:?} in {:?}",
        seen.evidence
    );

    // A parent titled like a master with no live worker of its own (only this master
    // and a zombie) is not a serving master: steady.
    let lone = Tree::start_script(LONE_MASTER);
    let master = child_master(&lone, 2);
    let seen = observed(master);
    assert_eq!(seen.phase, crate::model::Phase::Steady, "{seen:?}");
}
