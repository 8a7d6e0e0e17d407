//! Issue 6, item 1: `hotreload upgrade` SIGKILLed at every step boundary and inside every
//! wait. The moment comes from its own JSON events on stdout, read line by line (the
//! kill lands a few instructions after the event, as in life); never from a sleep.
//!
//! After each kill: `hotreload status` must report the true phase (checked against the
//! pid files and `/proc` read directly), the binary path must hold a complete old or new
//! executable (by hash), the backup must still exist while the old master may still be
//! needed. Then the upgrade is recovered twice over — once by `hotreload rollback`, once
//! (after the same kill again) by finishing it with the step commands — and each must
//! end steady and healthy: the right executable by hash, no backup, no journal, no stray
//! master or worker, and the lock free (a dry run of the next upgrade gets past it).
//! Client load runs through every test and must see no failed request.

use std::path::PathBuf;

use crate::common::*;
use serde_json::Value;

/// Where to kill: a description and a predicate over the events seen so far.
struct KillPoint {
    name: &'static str,
    /// `(step we are in, event)` → kill now?
    at: fn(&str, &Value) -> bool,
}

pub(crate) fn started(e: &Value, step: &str) -> bool {
    is_step(e, "step_started", step)
}

fn finished(e: &Value, step: &str) -> bool {
    is_step(e, "step_finished", step)
}

fn signalled(e: &Value, signal: &str, role: &str) -> bool {
    e["type"] == "signalled" && e["data"]["signal"] == signal && e["data"]["role"] == role
}

fn waiting_in(step: &str, in_step: &str, e: &Value, min_elapsed_ms: u64) -> bool {
    in_step == step
        && e["type"] == "waiting"
        && e["data"]["elapsed_ms"].as_u64().unwrap_or(0) >= min_elapsed_ms
}

/// Every step boundary of an upgrade with a health check, and the start of its waits
/// (the drain of a normal build ends before its first `waiting` event: the long drain
/// wait has its own test below).
const BOUNDARIES: &[KillPoint] = &[
    KillPoint {
        name: "lock started",
        at: |_, e| started(e, "lock"),
    },
    KillPoint {
        name: "preflight finished",
        at: |_, e| finished(e, "preflight"),
    },
    KillPoint {
        name: "config-test started",
        at: |_, e| started(e, "config-test"),
    },
    KillPoint {
        name: "swap started",
        at: |_, e| started(e, "swap"),
    },
    KillPoint {
        name: "swap finished",
        at: |_, e| finished(e, "swap"),
    },
    KillPoint {
        name: "spawn started",
        at: |_, e| started(e, "spawn"),
    },
    KillPoint {
        name: "USR2 sent",
        at: |_, e| signalled(e, "SIGUSR2", "old-master"),
    },
    KillPoint {
        name: "inside the spawn wait",
        at: |s, e| waiting_in("spawn", s, e, 0),
    },
    KillPoint {
        name: "spawn finished",
        at: |_, e| finished(e, "spawn"),
    },
    KillPoint {
        name: "inside the health wait",
        at: |s, e| waiting_in("health", s, e, 0),
    },
    KillPoint {
        name: "drain started",
        at: |_, e| started(e, "drain"),
    },
    KillPoint {
        name: "WINCH sent",
        at: |_, e| signalled(e, "SIGWINCH", "old-master"),
    },
    KillPoint {
        name: "drain finished",
        at: |_, e| finished(e, "drain"),
    },
    KillPoint {
        name: "retire started",
        at: |_, e| started(e, "retire"),
    },
    KillPoint {
        name: "QUIT sent",
        at: |_, e| signalled(e, "SIGQUIT", "old-master"),
    },
    KillPoint {
        name: "inside the retire wait",
        at: |s, e| waiting_in("retire", s, e, 0),
    },
    KillPoint {
        name: "retire finished",
        at: |_, e| finished(e, "retire"),
    },
    KillPoint {
        name: "commit started",
        at: |_, e| started(e, "commit"),
    },
    KillPoint {
        name: "commit finished",
        at: |_, e| finished(e, "commit"),
    },
];

/// A server under load, upgraded back and forth between two builds.
pub(crate) struct Bench {
    pub(crate) server: Server,
    /// The builds alternated between, with their versions.
    builds: [(PathBuf, &'static str); 2],
    /// The version running and the hash of the installed executable.
    pub(crate) running: (&'static str, String),
    extra_args: Vec<String>,
    log: Vec<String>,
}

/// How the kill left the server.
#[derive(Debug)]
struct AfterKill {
    phase: String,
    old_master: i32,
    new_sha: String,
    new_version: &'static str,
}

impl Bench {
    pub(crate) fn new(old_faults: &[&str], new_faults: &[&str], extra_args: &[&str]) -> Bench {
        let server = Server::start(old_faults);
        let builds = [
            (server.build("2.0", new_faults), "2.0"),
            (server.build("3.0", new_faults), "3.0"),
        ];
        let running = ("1.0", sha(&server.installed).unwrap());
        Bench {
            server,
            builds,
            running,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            log: Vec::new(),
        }
    }

    /// The build to upgrade to next (the one not running).
    pub(crate) fn next(&self) -> (PathBuf, &'static str) {
        let i = usize::from(self.running.0 == "2.0");
        self.builds[i].clone()
    }

    pub(crate) fn upgrade_args(&self, new: &std::path::Path) -> Vec<String> {
        let mut args = vec![
            "upgrade".into(),
            "--pid-file".into(),
            self.server.pid_file(),
            "--new-binary".into(),
            new.display().to_string(),
            "--health-tcp".into(),
            self.server.inst.addr().to_string(),
            "--json".into(),
        ];
        args.extend(self.extra_args.iter().cloned());
        args
    }

    pub(crate) fn context(&self) -> String {
        format!("\n--- history ---\n{}", self.log.join("\n"))
    }

    /// Runs an upgrade to the next build and SIGKILLs it at `point`; checks what status
    /// says against the truth, and the executable and backup.
    fn kill_at(&mut self, point: &KillPoint) -> AfterKill {
        let old_master = self.server.master().expect("a master before the upgrade");
        let (new, new_version) = self.next();
        let new_sha = sha(&new).unwrap();
        let step = std::cell::RefCell::new(String::new());
        let events = hotreload_killed_at(&self.upgrade_args(&new), |e| {
            if e["type"] == "step_started" {
                *step.borrow_mut() = e["data"]["step"].as_str().unwrap_or("").to_owned();
            }
            (point.at)(&step.borrow(), e)
        });
        let last = events.last().map(Value::to_string).unwrap_or_default();
        let phase = self.server.settled_phase();
        let installed = sha(&self.server.installed);
        self.log.push(format!(
            "killed at {:?} (last event {last}) -> phase {phase}, installed {}",
            point.name,
            if installed.as_deref() == Some(new_sha.as_str()) {
                "new"
            } else {
                "old"
            }
        ));
        let ctx = self.context();
        // A complete executable, old or new, never a missing or partial one.
        assert!(
            installed.as_deref() == Some(self.running.1.as_str())
                || installed.as_deref() == Some(new_sha.as_str()),
            "the binary path holds neither the old nor the new executable{ctx}"
        );
        // While the old master runs, its executable must be recoverable: if the new one
        // is installed, the backup holds the old one.
        if alive(old_master) && installed.as_deref() == Some(new_sha.as_str()) {
            assert_eq!(
                sha(&self.server.backup()).as_deref(),
                Some(self.running.1.as_str()),
                "new executable installed, old master alive, but no backup of the old one{ctx}"
            );
            assert!(
                self.server.journal().exists(),
                "new executable installed, old master alive, but no journal{ctx}"
            );
        }
        AfterKill {
            phase,
            old_master,
            new_sha,
            new_version,
        }
    }

    /// `hotreload rollback`, then: steady on the old master and executable.
    fn recover_by_rollback(&mut self, k: &AfterKill) {
        let pid_file = self.server.pid_file();
        let old_master_alive = alive(k.old_master);
        let journal = self.server.journal().exists();
        let run = hotreload(&["rollback", "--pid-file", &pid_file, "--json"]);
        self.log.push(format!(
            "  rollback -> exit {:?}: {}",
            run.code,
            run.result()["error"]
        ));
        let ctx = format!("{run}{}", self.context());
        if !old_master_alive {
            // The old master was retired before the kill: the upgrade is done, there is
            // nothing to go back to. The rollback must say so and change nothing; the
            // operator finishes it instead.
            run.expect_code(3);
            self.finish(k);
            return;
        }
        if k.phase == "steady" && !journal {
            // Killed before the swap: nothing was changed, nothing to roll back.
            run.expect_code(3);
        } else {
            run.expect_code(0);
        }
        self.server
            .assert_healthy_steady(self.running.0, &self.running.1.clone(), &ctx);
        assert_eq!(self.server.master(), Some(k.old_master), "{ctx}");
        self.server.assert_next_upgrade_possible(&self.next().0);
    }

    /// Finishes the upgrade as an operator would: look at the phase, run the command it
    /// calls for, look again, until the new master runs alone; then: steady on the new
    /// master and executable.
    fn finish(&mut self, k: &AfterKill) {
        let pid_file = self.server.pid_file();
        let cmd = |c: &str| vec![c.to_owned(), "--pid-file".into(), pid_file.clone()];
        let mut done = false;
        for _ in 0..6 {
            let phase = self.server.settled_phase();
            let installed_new = sha(&self.server.installed).as_deref() == Some(k.new_sha.as_str());
            let journal = self.server.journal().exists();
            let args = match phase.as_str() {
                "spawned" => cmd("drain"),
                "drained" => cmd("commit"),
                // Old master retired: only the executable's commit may be left.
                "steady" if !alive(k.old_master) && journal => cmd("commit"),
                "steady" if !alive(k.old_master) => {
                    done = true;
                    break;
                }
                // Swapped, not spawned: go on by hand.
                "steady" if journal && installed_new => cmd("spawn"),
                // Killed during the swap, before the new executable was in place: undo.
                "steady" if journal => cmd("rollback"),
                // Nothing changed (or undone): upgrade again.
                "steady" => {
                    let mut up = self.upgrade_args(&k_new_path(self, k));
                    up.retain(|a| a != "--json");
                    up
                }
                other => panic!("no way to finish from phase {other}{}", self.context()),
            };
            let run = hotreload(&args);
            self.log.push(format!(
                "  finish from {phase}: {} -> exit {:?}",
                args[0], run.code
            ));
            let ctx = format!("{run}{}", self.context());
            assert_eq!(run.code, Some(0), "finishing step failed{ctx}");
        }
        let ctx = self.context();
        assert!(done, "not finished after 6 commands{ctx}");
        self.server
            .assert_healthy_steady(k.new_version, &k.new_sha, &ctx);
        self.running = (k.new_version, k.new_sha.clone());
        self.server.assert_next_upgrade_possible(&self.next().0);
    }

    /// For each point: kill, roll back; kill again, finish.
    fn run_points(&mut self, points: &[KillPoint]) {
        for point in points {
            let k = self.kill_at(point);
            self.recover_by_rollback(&k);
            let k = self.kill_at(point);
            self.finish(&k);
        }
    }
}

/// The build `k` upgrades to.
fn k_new_path(bench: &Bench, k: &AfterKill) -> PathBuf {
    bench
        .builds
        .iter()
        .find(|(_, v)| *v == k.new_version)
        .expect("a build of that version")
        .0
        .clone()
}

fn run_boundaries(range: std::ops::Range<usize>) {
    let mut bench = Bench::new(&[], &[], &[]);
    let load = bench.server.load();
    bench.run_points(&BOUNDARIES[range]);
    eprintln!("{}", bench.context());
    let stats = load.stop();
    assert_no_failures(&stats, &bench.context());
}

#[test]
fn killed_before_the_spawn_then_recovered() {
    hotreload_tests::watchdog(|| {
        // lock .. spawn started
        run_boundaries(0..6);
    });
}

#[test]
fn killed_during_spawn_and_health_then_recovered() {
    hotreload_tests::watchdog(|| {
        // USR2 .. drain started
        run_boundaries(6..11);
    });
}

#[test]
fn killed_during_drain_and_retire_then_recovered() {
    hotreload_tests::watchdog(|| {
        // WINCH .. QUIT sent
        run_boundaries(11..15);
    });
}

#[test]
fn killed_during_retire_and_commit_then_recovered() {
    hotreload_tests::watchdog(|| {
        // inside the retire wait .. commit finished
        run_boundaries(15..BOUNDARIES.len());
    });
}

/// Inside a long drain wait: the old build's workers take 30 s to finish on a graceful
/// stop. Recovered by rollback; then by `drain --terminate` and `commit`.
#[test]
fn killed_inside_a_long_drain_wait_then_recovered() {
    hotreload_tests::watchdog(|| {
        let mut bench = Bench::new(&["slow-drain=30s"], &[], &["--drain-timeout", "1m"]);
        let load = bench.server.load();
        let point = KillPoint {
            name: "1 s into the drain wait",
            at: |s, e| waiting_in("drain", s, e, 1000),
        };
        let k = bench.kill_at(&point);
        assert_eq!(k.phase, "spawned", "{}", bench.context());
        bench.recover_by_rollback(&k);
        let k = bench.kill_at(&point);
        assert_eq!(k.phase, "spawned", "{}", bench.context());
        let pid_file = bench.server.pid_file();
        hotreload(&["drain", "--pid-file", &pid_file, "--terminate"]).expect_code(0);
        let k = AfterKill {
            phase: bench.server.settled_phase(),
            ..k
        };
        bench.finish(&k);
        eprintln!("{}", bench.context());
        let stats = load.stop();
        assert_no_failures(&stats, &bench.context());
    });
}

/// Inside a long retire wait: the old build ignores QUIT, so the retire waits out its
/// 30 s quit deadline. Recovered by rollback; then by `commit` with a short deadline
/// (QUIT, then TERM).
#[test]
fn killed_inside_a_long_retire_wait_then_recovered() {
    hotreload_tests::watchdog(|| {
        let mut bench = Bench::new(&["ignore=QUIT"], &[], &["--quit-timeout", "30s"]);
        let load = bench.server.load();
        let point = KillPoint {
            name: "0.5 s into the retire wait",
            at: |s, e| waiting_in("retire", s, e, 500),
        };
        let k = bench.kill_at(&point);
        assert_eq!(k.phase, "drained", "{}", bench.context());
        bench.recover_by_rollback(&k);
        let k = bench.kill_at(&point);
        assert_eq!(k.phase, "drained", "{}", bench.context());
        let pid_file = bench.server.pid_file();
        hotreload(&["commit", "--pid-file", &pid_file, "--quit-timeout", "1s"]).expect_code(0);
        let k = AfterKill {
            phase: bench.server.settled_phase(),
            ..k
        };
        bench.finish(&k);
        eprintln!("{}", bench.context());
        let stats = load.stop();
        assert_no_failures(&stats, &bench.context());
    });
}
