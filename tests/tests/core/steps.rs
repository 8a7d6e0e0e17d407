//! The typed operations of hotreload-core against fake-nginx, each step attached from a
//! fresh `Target` (as a new process would), the rollbacks, and what `observe` reports
//! for servers it must not guess about.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::common::*;
use hotreload_core::{upgrade, Error, NoopObserver, Phase, Signal, State, Target};
use hotreload_tests::{poll, procs};

/// Attaches as a new process would: a new `Target`, nothing carried over.
fn attach(s: &Setup) -> State {
    Target::new(s.inst.pid_file()).attach().expect("attach")
}

/// Upgrades `s` to `v2` keeping the old master (`--keep-old`), then attaches from a fresh
/// `Target`: the old and new masters' pids and the drained state.
fn kept_upgrade(
    s: &Setup,
    v2: &std::path::Path,
) -> (
    hotreload_core::Pid,
    hotreload_core::Pid,
    hotreload_core::Drained,
) {
    let old = s.original_master();
    let report = upgrade(&s.target(), &options(v2).keep_old(true), &NoopObserver).expect("upgrade");
    let new = report.new_pid.unwrap();
    let State::Drained(drained) = attach(s) else {
        panic!("not drained\n{}", s.why())
    };
    (old, new, drained)
}

#[test]
fn each_step_from_a_fresh_process() {
    hotreload_tests::watchdog(|| {
        let s = start(&[]);
        let v2 = s.variant("2.0", &[]);
        let old = s.original_master();
        let opts = op_options();
        let events = Events::default();
        // The executable is swapped by hand here; the steps do not need a journal.
        let record = s.install(&v2);

        let State::Steady(steady) = attach(&s) else {
            panic!("not steady\n{}", s.why())
        };
        assert_eq!(steady.master_pid(), old);
        let spawned = steady
            .spawn_new_master(&opts, &events)
            .unwrap_or_else(|e| panic!("{e}\n{}\n{}", events.text(), s.why()));
        let new = spawned.new_pid();
        drop(spawned);

        let State::Spawned(spawned) = attach(&s) else {
            panic!("not spawned\n{}", s.why())
        };
        assert_eq!((spawned.old_pid(), spawned.new_pid()), (old, new));
        let seen = spawned.observation().clone();
        assert_eq!(seen.phase, Phase::Spawned);
        assert_eq!(seen.old_master.as_ref().unwrap().workers.len(), 2);
        assert_eq!(seen.new_master.as_ref().unwrap().workers.len(), 2);
        assert_eq!(s.pid_from_file(), Some(new.get()));
        assert_eq!(s.inst.pid_from_oldbin(), Some(old.get()));
        let drained = spawned
            .drain_old_workers(&opts, &events)
            .unwrap_or_else(|e| panic!("{e}\n{}", events.text()));
        drop(drained);

        let State::Drained(drained) = attach(&s) else {
            panic!("not drained\n{}", s.why())
        };
        assert!(procs::workers_of(old.get()).is_empty());
        assert_eq!(s.version(), "fake-nginx/2.0");
        let steady = drained
            .retire_old(&opts, &events)
            .unwrap_or_else(|e| panic!("{e}\n{}", events.text()));
        assert_eq!(steady.master_pid(), new);
        wait_gone(old);
        s.assert_steady(new, "2.0");
        record.commit().unwrap();
        assert!(s.installed_is(&v2));
        // A clean run warns of nothing (a master that removes its own pid file is not
        // said to have left it).
        assert!(
            !events.any(|e| matches!(e, hotreload_core::Event::Warning { .. })),
            "{}",
            events.text()
        );

        // Only stop signals, to the old master, besides the spawn: never USR2/WINCH to the new.
        let to_new: Vec<Signal> = events
            .signals()
            .iter()
            .filter(|(p, _)| *p == new)
            .map(|(_, s)| *s)
            .collect();
        assert!(to_new.is_empty(), "{}", events.text());
    });
}

#[test]
fn rollback_from_spawned_in_a_fresh_process() {
    hotreload_tests::watchdog(|| {
        let s = start(&[]);
        let v2 = s.variant("2.0", &[]);
        let old = s.original_master();
        let opts = op_options();
        let record = s.install(&v2);
        let State::Steady(steady) = attach(&s) else {
            panic!("not steady")
        };
        let new = steady
            .spawn_new_master(&opts, &NoopObserver)
            .expect("spawn")
            .new_pid();

        let State::Spawned(spawned) = attach(&s) else {
            panic!("not spawned\n{}", s.why())
        };
        let events = Events::default();
        let steady = spawned
            .rollback(&opts, &events)
            .unwrap_or_else(|e| panic!("{e}\n{}", events.text()));
        assert_eq!(steady.master_pid(), old);
        // The old workers were never stopped: no HUP; only QUIT, and only to the new master.
        assert_eq!(events.signals(), [(new, Signal::Quit)], "{}", events.text());
        // Nor told to stop: nothing to wait for before that.
        assert!(
            !events.any(|e| matches!(e, hotreload_core::Event::Decision { .. })),
            "{}",
            events.text()
        );
        wait_gone(new);
        s.assert_steady(old, "1.0");
        record.undo().unwrap();
    });
}

#[test]
fn rollback_from_drained_in_a_fresh_process_restores_the_executable() {
    hotreload_tests::watchdog(|| {
        let s = start(&[]);
        let v1 = s.dir.path().join("v1-copy");
        fs::copy(&s.installed, &v1).unwrap();
        let v2 = s.variant("2.0", &[]);
        let old = s.original_master();
        // An upgrade that stops after the drain leaves the journal for whoever comes next.
        let report =
            upgrade(&s.target(), &options(&v2).keep_old(true), &NoopObserver).expect("upgrade");
        let new = report.new_pid.unwrap();
        assert!(s.installed_is(&v2));

        let State::Drained(drained) = attach(&s) else {
            panic!("not drained\n{}", s.why())
        };
        let events = Events::default();
        let steady = drained
            .rollback(&op_options(), &events)
            .unwrap_or_else(|e| panic!("{e}\n{}\n{}", events.text(), s.why()));
        assert_eq!(steady.master_pid(), old);
        assert_eq!(
            events.signals(),
            [(old, Signal::Hup), (new, Signal::Quit)],
            "{}",
            events.text()
        );
        wait_gone(new);
        s.assert_steady(old, "1.0");
        assert!(s.installed_is(&v1), "the v1 executable is not back");
        assert!(!s.backup().exists());
        assert!(!s.journal().exists());
    });
}

#[test]
fn finishing_a_kept_upgrade_in_a_fresh_process_commits_the_executable() {
    hotreload_tests::watchdog(|| {
        let s = start(&[]);
        let v2 = s.variant("2.0", &[]);
        let (old, new, drained) = kept_upgrade(&s, &v2);
        let steady = drained
            .retire_old(&op_options(), &NoopObserver)
            .expect("retire");
        assert_eq!(steady.master_pid(), new);
        wait_gone(old);
        s.assert_steady(new, "2.0");
        assert!(s.installed_is(&v2));
        assert!(!s.backup().exists(), "backup left after commit");
        assert!(!s.journal().exists(), "journal left after commit");
    });
}

#[test]
fn drain_past_the_deadline_gives_the_state_back_with_the_remaining_workers() {
    hotreload_tests::watchdog(|| {
        let s = start(&["slow-drain=120s"]);
        let v2 = s.variant("2.0", &[]);
        let old = s.original_master();
        let record = s.install(&v2);
        let State::Steady(steady) = attach(&s) else {
            panic!("not steady")
        };
        let spawned = steady
            .spawn_new_master(&op_options(), &NoopObserver)
            .expect("spawn");
        let workers = procs::workers_of(old.get());

        let short = op_options().drain_timeout(Duration::from_secs(1));
        let e = spawned
            .drain_old_workers(&short, &NoopObserver)
            .expect_err("drain must time out");
        let mut remaining = match &e.error {
            Error::DrainTimeout {
                remaining, stall, ..
            } => {
                // They are finishing their requests: the WINCH was acted on.
                assert_eq!(*stall, hotreload_core::DrainStall::FinishingRequests);
                remaining.iter().map(|p| p.get()).collect::<Vec<_>>()
            }
            other => panic!("{other}"),
        };
        remaining.sort_unstable();
        assert_eq!(remaining, workers);
        let spawned = e.state.expect("the spawned state is given back");
        // The caller's choice: stop them now.
        let drained = spawned
            .terminate_old_workers(&op_options(), &NoopObserver)
            .expect("terminate");
        for w in workers {
            wait_gone(pid(w));
        }
        let steady = drained
            .retire_old(&op_options(), &NoopObserver)
            .expect("retire");
        s.assert_steady(steady.master_pid(), "2.0");
        record.commit().unwrap();
    });
}

/// A process titled like a master, with a child titled like a worker, neither of which
/// has a USR2 handler (they are `sleep`s). Killed, with its child, when dropped.
struct FakeMaster {
    master: std::process::Child,
    worker: i32,
}

impl FakeMaster {
    fn start() -> FakeMaster {
        let master = std::process::Command::new("bash")
            .arg("-c")
            .arg("(exec -a 'nginx: worker process' sleep 600) & exec -a 'nginx: master process /bin/sleep' sleep 600")
            .spawn()
            .unwrap();
        let pid = master.id() as i32;
        let mut worker = 0;
        poll::until(LONG, "the fake master and worker titles", || {
            let workers = procs::workers_of(pid);
            worker = workers.first().copied().unwrap_or(0);
            worker != 0 && procs::title_of(pid).is_some_and(|t| t.contains("master process"))
        });
        FakeMaster { master, worker }
    }
}

impl Drop for FakeMaster {
    fn drop(&mut self) {
        let _ = fake_nginx::harness::kill(self.worker, fake_nginx::Signal::Kill);
        let _ = self.master.kill();
        let _ = self.master.wait();
    }
}

#[test]
fn spawn_refuses_a_master_that_does_not_catch_the_spawn_signal() {
    hotreload_tests::watchdog(|| {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeMaster::start();
        let pid_file = dir.path().join("fake.pid");
        fs::write(&pid_file, format!("{}\n", fake.master.id())).unwrap();
        let State::Steady(steady) = Target::new(&pid_file).attach().unwrap() else {
            panic!("a master titled process with a worker child should look steady")
        };
        let events = Events::default();
        let e = steady
            .spawn_new_master(&op_options(), &events)
            .expect_err("must refuse");
        assert!(
            matches!(
                e.error,
                Error::NotCatching {
                    signal: Signal::Usr2,
                    ignored: false,
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.state.is_some(), "still steady");
        assert!(events.signals().is_empty(), "{}", events.text());
        assert!(
            alive(pid(fake.master.id() as i32)),
            "USR2 must not have been sent"
        );
    });
}

#[test]
fn observe_never_guesses() {
    hotreload_tests::watchdog(|| {
        let s = start(&[]);
        let dir = s.dir.path();
        let unknown = |content: &str, expect: &str| {
            let pid_file = dir.join("probe.pid");
            fs::write(&pid_file, content).unwrap();
            let target = Target::new(&pid_file);
            let seen = target.observe().unwrap();
            assert_eq!(seen.phase, Phase::Unknown, "{content:?}: {seen:?}");
            assert!(
                seen.evidence.iter().any(|e| e.contains(expect)),
                "{content:?}: expected {expect:?} in {:?}",
                seen.evidence
            );
            assert!(matches!(target.attach().unwrap(), State::Unknown(_)));
        };
        // A stale pid file: the pid names no process.
        let mut exited = std::process::Command::new("true").spawn().unwrap();
        let dead = exited.id();
        exited.wait().unwrap();
        unknown(&format!("{dead}\n"), "not running");
        // A pid that is alive but not a master (this test process).
        unknown(&format!("{}\n", std::process::id()), "not a nginx master");
        // Content that is not a pid.
        unknown("12abc\n", "unusable");
        unknown("", "unusable");
        // A pid file naming a worker.
        let worker = procs::workers_of(s.inst.master_pid())[0];
        unknown(&format!("{worker}\n"), "not a nginx master");
        // A missing pid file.
        let seen = Target::new(dir.join("absent.pid")).observe().unwrap();
        assert_eq!(seen.phase, Phase::Unknown);
        assert!(
            seen.evidence.iter().any(|e| e.contains("does not exist")),
            "{:?}",
            seen.evidence
        );
        // `.oldbin` naming the live master while the pid file is missing (as if a spawn hung).
        let pid_file = dir.join("half.pid");
        fs::write(
            dir.join("half.pid.oldbin"),
            format!("{}\n", s.inst.master_pid()),
        )
        .unwrap();
        let seen = Target::new(&pid_file).observe().unwrap();
        assert_eq!(seen.phase, Phase::Unknown, "{seen:?}");
        assert_eq!(
            seen.old_master.as_ref().map(|m| m.pid),
            Some(s.original_master())
        );
        // Nor is it a spawn while an upgrade holds the target's lock: nothing starts.
        let lock = Target::new(&pid_file).lock().expect("the target's lock");
        let seen = Target::new(&pid_file).observe().unwrap();
        assert_eq!(seen.phase, Phase::Unknown, "{seen:?}");
        drop(lock);
        // Two masters with no parent link: `.oldbin` and the pid file name unrelated masters.
        let other = start(&[]);
        fs::write(&pid_file, format!("{}\n", other.inst.master_pid())).unwrap();
        let seen = Target::new(&pid_file).observe().unwrap();
        assert_eq!(seen.phase, Phase::Unknown, "{seen:?}");
        assert!(
            seen.evidence.iter().any(|e| e.contains("no parent link")),
            "{:?}",
            seen.evidence
        );
        // And the real one is steady.
        let seen = s.target().observe().unwrap();
        assert_eq!(seen.phase, Phase::Steady, "{seen:?}");
        assert_eq!(seen.old_master.unwrap().workers.len(), 2);
    });
}

#[test]
fn a_zombie_named_by_the_pid_file_is_not_a_master() {
    hotreload_tests::watchdog(|| {
        let dir = tempfile::tempdir().unwrap();
        // Our own child, exited and not yet reaped: a zombie.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let zombie = child.id();
        poll::until(LONG, "the child to be a zombie", || {
            procs::stat(zombie as i32).map(|s| s.state) == Some('Z')
        });
        let pid_file = dir.path().join("zombie.pid");
        fs::write(&pid_file, format!("{zombie}\n")).unwrap();
        let seen = Target::new(&pid_file).observe().unwrap();
        child.wait().unwrap();
        assert_eq!(seen.phase, Phase::Unknown);
        assert!(
            seen.evidence.iter().any(|e| e.contains("zombie")),
            "{:?}",
            seen.evidence
        );
    });
}

#[test]
fn a_new_master_running_another_file_than_the_installed_one_is_stopped() {
    hotreload_tests::watchdog(|| {
        let s = start(&[]);
        let v2 = s.variant("2.0", &[]);
        let old = s.original_master();
        // The target says the executable is v2's file, but nothing was installed at argv[0]:
        // the new master runs v1 again, which is not what was asked for.
        let target = Target::new(s.inst.pid_file()).binary(&v2);
        let State::Steady(steady) = target.attach().unwrap() else {
            panic!("not steady")
        };
        let events = Events::default();
        let e = steady
            .spawn_new_master(&op_options(), &events)
            .expect_err("the new master runs the wrong file");
        assert!(
            matches!(e.error, Error::WrongExecutable { .. }),
            "{e}\n{}",
            events.text()
        );
        let steady = e.state.expect("back to steady");
        assert_eq!(steady.master_pid(), old);
        s.assert_steady(old, "1.0");
        assert_eq!(s.inst.processes().len(), 3, "{}", s.why());
    });
}

/// Sends `WINCH` to the new master `new` and waits for its workers to be gone: from then
/// on it serves nothing.
fn lose_workers(new: hotreload_core::Pid) {
    let new = new.get();
    procs::signal(new, nix::sys::signal::Signal::SIGWINCH).expect("WINCH");
    hotreload_tests::poll::until(LONG, "the new master's workers to exit", || {
        procs::workers_of(new).is_empty()
    });
}

#[test]
fn a_drain_whose_new_master_loses_its_workers_is_not_reported_drained() {
    hotreload_tests::watchdog(|| {
        let s = start(&[]);
        let v2 = s.variant("2.0", &[]);
        let old = s.original_master();
        let record = s.install(&v2);
        let State::Steady(steady) = attach(&s) else {
            panic!("not steady\n{}", s.why())
        };
        let spawned = steady
            .spawn_new_master(&op_options(), &NoopObserver)
            .expect("spawn");
        let new = spawned.new_pid();
        let observer = AtSignal::new(old, Signal::Winch, || lose_workers(new));
        let e = match spawned.drain_old_workers(&op_options(), &observer) {
            Ok(drained) => panic!(
                "reported drained although new master {new} has no workers: {:?}\n{}",
                drained.observation(),
                observer.events.text()
            ),
            Err(e) => e,
        };
        match &e.error {
            Error::WrongPhase { expected, .. } => assert_eq!(*expected, "drained"),
            other => panic!("{other}\n{}", observer.events.text()),
        }
        // Neither master was touched beyond the WINCH: both still run, for the operator.
        assert!(alive(old) && alive(new), "{}", s.why());
        drop(record);
    });
}

#[test]
fn a_retire_whose_new_master_loses_its_workers_is_not_reported_steady() {
    hotreload_tests::watchdog(|| {
        let s = start(&[]);
        let v2 = s.variant("2.0", &[]);
        let (old, new, drained) = kept_upgrade(&s, &v2);
        let observer = AtSignal::new(old, Signal::Quit, || lose_workers(new));
        let short = op_options().quit_timeout(Duration::from_secs(2));
        let e = match drained.retire_old(&short, &observer) {
            Ok(steady) => panic!(
                "reported steady on master {} although it has no workers: {:?}\n{}",
                steady.master_pid(),
                steady.observation(),
                observer.events.text()
            ),
            Err(e) => e,
        };
        // The retire waited for the pid file to name a new master with workers, in vain.
        match &e.error {
            Error::Timeout { pid, what, .. } => {
                assert_eq!(*pid, new);
                assert!(what.contains("to name new master"), "{what}");
            }
            other => panic!("{other}\n{}", observer.events.text()),
        }
        wait_gone(old);
        assert!(e.state.is_none(), "nothing to go back to after the QUIT");
        assert_eq!(
            e.left,
            hotreload_core::Left::Changed {
                phase: Phase::Unknown
            }
        );
        let seen = s.target().observe().unwrap();
        assert_eq!(seen.phase, Phase::Unknown, "{:?}", seen.evidence);
    });
}

/// What somebody else does while the old master's workers drain: stops the new master
/// `new` and starts another one (`QUIT` it, `USR2` the old master `old`), so that the
/// phase is drained again, but on another new master.
fn replace_new_master(old: hotreload_core::Pid, new: hotreload_core::Pid, pid_file: &Path) {
    use nix::sys::signal::Signal as S;
    let (old, new_raw) = (old.get(), new.get());
    procs::signal(new_raw, S::SIGQUIT).expect("QUIT the new master");
    wait_gone(new);
    hotreload_tests::poll::until(LONG, "the old master to take its pid file back", || {
        procs::read_pid(pid_file) == Some(old)
    });
    procs::signal(old, S::SIGUSR2).expect("USR2 the old master");
    hotreload_tests::poll::until(LONG, "another new master with workers", || {
        procs::read_pid(pid_file)
            .is_some_and(|p| p != old && p != new_raw && procs::workers_of(p).len() == 2)
    });
}

#[test]
fn a_drain_whose_new_master_was_replaced_is_not_reported_drained_on_the_other_one() {
    hotreload_tests::watchdog(|| {
        let s = start(&[]);
        let v2 = s.variant("2.0", &[]);
        let old = s.original_master();
        let record = s.install(&v2);
        let State::Steady(steady) = attach(&s) else {
            panic!("not steady\n{}", s.why())
        };
        let spawned = steady
            .spawn_new_master(&op_options(), &NoopObserver)
            .expect("spawn");
        let new = spawned.new_pid();
        let pid_file = s.inst.pid_file().to_path_buf();
        let observer = AtSignal::new(old, Signal::Winch, || {
            replace_new_master(old, new, &pid_file)
        });
        let e = match spawned.drain_old_workers(&op_options(), &observer) {
            Ok(drained) => panic!(
                "reported drained on new master {new}, which was replaced: {:?}\n{}",
                drained.observation(),
                observer.events.text()
            ),
            Err(e) => e,
        };
        // The pinned new master's exit is what the drain reports, not the newcomer.
        match &e.error {
            Error::NewMasterDied { new: died, .. } => assert_eq!(*died, Some(new)),
            other => panic!("{other}\n{}", observer.events.text()),
        }
        let seen = s.target().observe().unwrap();
        let other = seen.new_master.as_ref().map(|m| m.pid);
        assert!(other.is_some_and(|p| p != new), "{:?}", seen.evidence);
        drop(record);
    });
}

#[test]
fn a_retire_whose_old_master_was_killed_removes_the_pid_file_it_left() {
    hotreload_tests::watchdog(|| {
        // It ignores QUIT, so that the KILL always finds it with its pid file.
        let s = start(&["ignore=QUIT"]);
        let v2 = s.variant("2.0", &[]);
        let (old, new, drained) = kept_upgrade(&s, &v2);
        // The old master SIGKILLed as soon as it is told to quit: it cannot remove its
        // `.oldbin` pid file, as a master killed by the OOM killer would not.
        let observer = AtSignal::new(old, Signal::Quit, || {
            procs::signal(old.get(), nix::sys::signal::Signal::SIGKILL).expect("KILL");
            wait_gone(old);
        });
        let steady = drained
            .retire_old(&op_options(), &observer)
            .unwrap_or_else(|e| panic!("{e}\n{}", observer.events.text()));
        assert_eq!(steady.master_pid(), new);
        assert!(
            observer.events.any(|e| matches!(
                e,
                hotreload_core::Event::Warning { message }
                    if message.contains(&format!("old master {old} exited without removing"))
            )),
            "{}",
            observer.events.text()
        );
        assert_eq!(s.inst.pid_from_oldbin(), None, "the .oldbin is left");
        s.assert_steady(new, "2.0");
    });
}

#[test]
fn a_retire_refused_before_any_signal_gives_the_drained_state_back() {
    hotreload_tests::watchdog(|| {
        let s = start(&[]);
        let v2 = s.variant("2.0", &[]);
        let (old, new, drained) = kept_upgrade(&s, &v2);
        // The new master stops its workers: quitting the old one now would leave nothing
        // serving.
        procs::signal(new.get(), nix::sys::signal::Signal::SIGWINCH).expect("WINCH");
        hotreload_tests::poll::until(LONG, "the new master's workers to exit", || {
            procs::workers_of(new.get()).is_empty()
        });
        let events = Events::default();
        let e = drained
            .retire_old(&op_options(), &events)
            .expect_err("retire without workers to serve");
        assert!(
            matches!(&e.error, Error::WrongPhase { found, .. } if found.contains("without workers")),
            "{e}"
        );
        assert!(events.signals().is_empty(), "{}", events.text());
        assert_eq!(e.left, hotreload_core::Left::Untouched);
        let drained = e
            .state
            .expect("nothing was signalled: the state is given back");
        assert_eq!((drained.old_pid(), drained.new_pid()), (old, new));
        assert!(alive(old) && alive(new));
    });
}

/// What somebody else does to the old master right after our spawn signal.
#[derive(Clone, Copy)]
enum Meanwhile {
    /// `HUP`: it starts a new set of workers and stops the old ones (a reload).
    Reload,
    /// One of its workers is killed: it starts one replacement (a crash).
    WorkerCrash,
}

/// Does `what` to the old master `old`, and waits until it serves with new workers.
fn disturb(old: hotreload_core::Pid, what: Meanwhile) {
    use nix::sys::signal::Signal as S;
    let old = old.get();
    let before = procs::workers_of(old);
    match what {
        Meanwhile::Reload => procs::signal(old, S::SIGHUP).expect("HUP"),
        Meanwhile::WorkerCrash => procs::signal(before[0], S::SIGKILL).expect("KILL"),
    }
    hotreload_tests::poll::until(LONG, "the old master's new workers", || {
        let serving: Vec<i32> = procs::workers_of(old)
            .into_iter()
            .filter(|w| procs::title_of(*w).is_some_and(|t| !t.contains("is shutting down")))
            .collect();
        let fresh = serving.iter().any(|w| !before.contains(w));
        match what {
            // New workers serve; the old ones may still be stopping (or, while the new
            // binary starts, be kept): both count as a reload.
            Meanwhile::Reload => fresh,
            Meanwhile::WorkerCrash => fresh && serving.len() == before.len(),
        }
    });
}

/// A spawn that fails (the new master hangs) while `what` happens to the old master.
fn failed_spawn_with(what: Meanwhile) -> (Error, Events) {
    let s = start(&[]);
    let v2 = s.variant("2.0", &["hang-on-start"]);
    let record = s.install(&v2);
    let State::Steady(steady) = attach(&s) else {
        panic!("not steady\n{}", s.why())
    };
    let old = s.original_master();
    let observer = AtSignal::new(old, Signal::Usr2, || disturb(old, what));
    let opts = op_options()
        .spawn_timeout(Duration::from_secs(2))
        .quit_timeout(Duration::from_secs(2));
    let e = steady
        .spawn_new_master(&opts, &observer)
        .expect_err("the new master hangs");
    drop(record);
    (e.error, observer.events)
}

#[test]
fn a_spawn_that_fails_while_somebody_reloads_the_old_master_says_so() {
    hotreload_tests::watchdog(|| {
        let (error, events) = failed_spawn_with(Meanwhile::Reload);
        match &error {
            Error::Interfered { what, source, .. } => {
                assert!(what.contains("told to reload"), "{what}");
                assert!(matches!(**source, Error::Timeout { .. }), "{source}");
            }
            other => panic!("{other}\n{}", events.text()),
        }
    });
}

#[test]
fn a_spawn_that_fails_while_an_old_worker_crashed_is_not_blamed_on_a_reload() {
    hotreload_tests::watchdog(|| {
        // One worker fewer, one new: a crash the old master repaired, not a reload.
        let (error, events) = failed_spawn_with(Meanwhile::WorkerCrash);
        assert!(
            matches!(error, Error::Timeout { .. }),
            "{error}\n{}",
            events.text()
        );
    });
}

#[test]
fn a_cancelled_retire_or_rollback_from_drained_changes_nothing_and_gives_the_state_back() {
    hotreload_tests::watchdog(|| {
        let s = start(&[]);
        let v2 = s.variant("2.0", &[]);
        let old = s.original_master();
        let report =
            upgrade(&s.target(), &options(&v2).keep_old(true), &NoopObserver).expect("upgrade");
        let new = report.new_pid.unwrap();
        let token = hotreload_core::CancelToken::new();
        token.cancel();
        let cancelled = op_options().cancel_token(token);
        let State::Drained(drained) = attach(&s) else {
            panic!("not drained\n{}", s.why())
        };
        let events = Events::default();
        let e = drained
            .rollback(&cancelled, &events)
            .expect_err("a cancelled rollback");
        assert!(matches!(e.error, Error::Cancelled { .. }), "{e}");
        assert_eq!(e.left, hotreload_core::Left::Untouched);
        let drained = e
            .state
            .expect("nothing was signalled: the state is given back");
        let e = drained
            .retire_old(&cancelled, &events)
            .expect_err("a cancelled retire");
        assert!(matches!(e.error, Error::Cancelled { .. }), "{e}");
        let drained = e
            .state
            .expect("nothing was signalled: the state is given back");
        assert!(events.signals().is_empty(), "{}", events.text());
        assert_eq!((drained.old_pid(), drained.new_pid()), (old, new));
        assert!(s.installed_is(&v2));
        let State::Drained(_) = attach(&s) else {
            panic!("no longer drained\n{}", s.why())
        };
    });
}

#[test]
fn a_cancel_once_the_old_master_was_told_to_quit_is_ignored_and_the_retire_finishes() {
    hotreload_tests::watchdog(|| {
        let s = start(&[]);
        let v2 = s.variant("2.0", &[]);
        let (old, new, drained) = kept_upgrade(&s, &v2);
        // Cancelled as soon as the old master is told to quit: past the point of no
        // return of a retire.
        let token = hotreload_core::CancelToken::new();
        let observer = AtSignal::new(old, Signal::Quit, || token.cancel());
        let opts = op_options().cancel_token(token.clone());
        // There is nothing to go back to once the old master quits: the retire goes on.
        let steady = drained
            .retire_old(&opts, &observer)
            .unwrap_or_else(|e| panic!("{e}\n{}", observer.events.text()));
        assert!(token.is_cancelled());
        assert_eq!(steady.master_pid(), new);
        wait_gone(old);
        s.assert_steady(new, "2.0");
        assert!(s.installed_is(&v2));
        assert!(!s.backup().exists(), "the swap was not committed");
    });
}

#[test]
fn an_old_master_that_survives_both_stop_signals_is_reported_with_the_time_waited() {
    hotreload_tests::watchdog(|| {
        let s = start(&["ignore=QUIT", "ignore=TERM"]);
        let v2 = s.variant("2.0", &[]);
        let old = s.original_master();
        let report =
            upgrade(&s.target(), &options(&v2).keep_old(true), &NoopObserver).expect("upgrade");
        let State::Drained(drained) = attach(&s) else {
            panic!("not drained\n{}", s.why())
        };
        let events = Events::default();
        let opts = op_options().quit_timeout(Duration::from_secs(1));
        let e = drained
            .retire_old(&opts, &events)
            .expect_err("the old master ignores QUIT and TERM");
        // One second after QUIT, then at least ten after TERM (what nginx's fast stop takes).
        match &e.error {
            Error::StillRunning {
                pid, role, waited, ..
            } => {
                assert_eq!((*pid, *role), (old, "old master"));
                assert_eq!(*waited, Duration::from_secs(11));
            }
            other => panic!("{other}\n{}", events.text()),
        }
        assert!(
            events.any(|e| matches!(
                e,
                hotreload_core::Event::Decision { message }
                    if message.starts_with(&format!("old master {old} still runs 1.0s after"))
            )),
            "{}",
            events.text()
        );
        assert!(alive(old), "it ignores both signals");
        assert!(alive(report.new_pid.unwrap()));
    });
}

#[test]
fn a_new_master_that_ignores_quit_in_a_rollback_gets_the_fast_stop() {
    hotreload_tests::watchdog(|| {
        let s = start(&[]);
        let v2 = s.variant("2.0", &["ignore=QUIT"]);
        let old = s.original_master();
        let record = s.install(&v2);
        let State::Steady(steady) = attach(&s) else {
            panic!("not steady\n{}", s.why())
        };
        let spawned = steady
            .spawn_new_master(&op_options(), &NoopObserver)
            .expect("spawn");
        let new = spawned.new_pid();
        let events = Events::default();
        let opts = op_options().quit_timeout(Duration::from_secs(1));
        let steady = spawned
            .rollback(&opts, &events)
            .unwrap_or_else(|e| panic!("{e}\n{}", events.text()));
        assert_eq!(steady.master_pid(), old);
        assert!(
            events.any(|e| matches!(
                e,
                hotreload_core::Event::Decision { message }
                    if message.starts_with(&format!("new master {new} still runs 1.0s after"))
            )),
            "{}",
            events.text()
        );
        wait_gone(new);
        drop(record);
    });
}

#[test]
fn a_drain_whose_old_master_ignores_winch_says_so_and_gives_the_state_back() {
    hotreload_tests::watchdog(|| {
        let s = start(&["ignore=WINCH"]);
        let v2 = s.variant("2.0", &[]);
        let record = s.install(&v2);
        let State::Steady(steady) = attach(&s) else {
            panic!("not steady\n{}", s.why())
        };
        let spawned = steady
            .spawn_new_master(&op_options(), &NoopObserver)
            .expect("spawn");
        let short = op_options().drain_timeout(Duration::from_secs(1));
        let e = spawned
            .drain_old_workers(&short, &NoopObserver)
            .expect_err("the old workers never stop");
        match &e.error {
            Error::DrainTimeout { stall, .. } => assert_eq!(
                *stall,
                hotreload_core::DrainStall::SignalIgnored {
                    signal: Signal::Winch
                }
            ),
            other => panic!("{other}"),
        }
        let spawned = e.state.expect("the spawned state is given back");
        // Cancelled before it signals anything, the rollback gives the state back too.
        let token = hotreload_core::CancelToken::new();
        token.cancel();
        let events = Events::default();
        let e = spawned
            .rollback(&op_options().cancel_token(token), &events)
            .expect_err("a cancelled rollback");
        assert!(matches!(e.error, Error::Cancelled { .. }), "{e}");
        assert_eq!(e.left, hotreload_core::Left::Untouched);
        assert!(events.signals().is_empty(), "{}", events.text());
        let spawned = e
            .state
            .expect("nothing was signalled: the state is given back");
        // The rollback waits (its quit deadline) for the WINCH to be acted on, in vain.
        let events = Events::default();
        let quick = op_options().quit_timeout(Duration::from_secs(1));
        let old = spawned.old_pid();
        spawned
            .rollback(&quick, &events)
            .unwrap_or_else(|e| panic!("{e}\n{}", events.text()));
        assert!(
            events.any(|e| matches!(
                e,
                hotreload_core::Event::Decision { message }
                    if message.starts_with(&format!("waiting for old master {old} to act on the SIGWINCH"))
            )),
            "{}",
            events.text()
        );
        // Its workers never stopped: no HUP.
        assert!(
            !events.signals().contains(&(old, Signal::Hup)),
            "{}",
            events.text()
        );
        drop(record);
    });
}
