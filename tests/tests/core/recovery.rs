//! Upgrades left half-done — the orchestrator crashed, the new master was killed — and
//! finished or rolled back by a fresh process, from the live system and the journal.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use crate::common::*;
use fake_nginx::harness;
use hotreload_core::{
    finish, rollback, upgrade, HealthCheck, NoopObserver, Phase, State, Target, UpgradeOptions,
};
use hotreload_tests::{poll, procs};

/// A health check that crashes the orchestrator (a panic unwinds out of `upgrade`),
/// leaving the upgrade where it was: the lock is released, the journal stays.
struct Crash;

impl HealthCheck for Crash {
    fn describe(&self) -> String {
        "crash the orchestrator".into()
    }
    fn check(&self, _timeout: Duration) -> Result<(), String> {
        panic!("orchestrator crashed (on purpose)")
    }
}

fn crashed_upgrade(s: &Setup, new_binary: &std::path::Path) {
    let opts = options(new_binary).health_check(Box::new(Crash));
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        upgrade(&s.target(), &opts, &NoopObserver)
    }));
    assert!(outcome.is_err(), "the upgrade was meant to crash");
}

#[test]
fn an_upgrade_whose_orchestrator_crashed_after_the_spawn_is_rolled_back_by_a_fresh_process() {
    hotreload_tests::watchdog(|| {
        let s = start(&[]);
        let v1 = s.dir.path().join("v1-copy");
        std::fs::copy(&s.installed, &v1).unwrap();
        let v2 = s.variant("2.0", &[]);
        let old = s.original_master();
        crashed_upgrade(&s, &v2);
        assert!(s.journal().exists(), "the journal survives the crash");
        assert!(s.installed_is(&v2));
        let seen = Target::new(s.inst.pid_file()).observe().unwrap();
        assert_eq!(seen.phase, Phase::Spawned, "{seen:?}");
        let new = seen.new_master.unwrap().pid;

        let events = Events::default();
        let now = rollback(
            &Target::new(s.inst.pid_file()),
            &UpgradeOptions::new(),
            &events,
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", events.text()));
        assert_eq!(now.phase, Phase::Steady);
        wait_gone(new);
        s.assert_steady(old, "1.0");
        assert!(s.installed_is(&v1), "the journal's backup was not put back");
        assert!(!s.journal().exists());
        assert!(!s.backup().exists());
    });
}

#[test]
fn an_upgrade_whose_orchestrator_crashed_after_the_spawn_is_finished_by_a_fresh_process() {
    hotreload_tests::watchdog(|| {
        let s = start(&[]);
        let v2 = s.variant("2.0", &[]);
        let old = s.original_master();
        crashed_upgrade(&s, &v2);

        let events = Events::default();
        let now = finish(&Target::new(s.inst.pid_file()), &options(&v2), &events)
            .unwrap_or_else(|e| panic!("{e}\n{}", events.text()));
        let new = now.old_master.as_ref().unwrap().pid;
        assert_ne!(new, old);
        wait_gone(old);
        s.assert_steady(new, "2.0");
        assert!(s.installed_is(&v2));
        assert!(!s.journal().exists(), "journal left after commit");
        assert!(!s.backup().exists(), "backup left after commit");
    });
}

#[test]
fn workers_of_a_killed_new_master_are_stopped_by_the_rollback() {
    hotreload_tests::watchdog(|| {
        let s = start(&[]);
        let v2 = s.variant("2.0", &[]);
        let old = s.original_master();
        let record = s.install(&v2);
        let State::Steady(steady) = s.target().attach().unwrap() else {
            panic!("not steady")
        };
        let spawned = steady
            .spawn_new_master(&op_options(), &NoopObserver)
            .expect("spawn");
        let new = spawned.new_pid();
        let orphans = procs::workers_of(new.get());
        assert_eq!(orphans.len(), 2);
        drop(spawned);

        // The new master dies abruptly: its workers live on, reparented, serving v2.
        harness::kill(new.get(), fake_nginx::Signal::Kill).unwrap();
        wait_gone(new);
        poll::until(LONG, "the old master to take its pid file back", || {
            s.pid_from_file() == Some(old.get()) && !s.oldbin_exists()
        });
        assert!(orphans.iter().all(|w| procs::alive(*w)), "{}", s.why());
        // The pid files alone say steady (the orphans are nobody's workers).
        let State::Steady(steady) = s.target().attach().unwrap() else {
            panic!("not steady\n{}", s.why())
        };

        let events = Events::default();
        steady
            .restore_binary(&op_options(), &events)
            .unwrap_or_else(|e| panic!("{e}\n{}", events.text()));
        for w in &orphans {
            wait_gone(pid(*w));
        }
        s.assert_steady(old, "1.0");
        let mut expected = procs::workers_of(old.get());
        expected.push(old.get());
        expected.sort_unstable();
        let mut procs = s.inst.processes();
        procs.sort_unstable();
        assert_eq!(procs, expected, "{}", s.why());
        record.undo().unwrap();
    });
}

#[test]
fn a_spawn_left_hanging_is_rolled_back_by_a_fresh_process() {
    hotreload_tests::watchdog(|| {
        let s = start(&[]);
        let v2 = s.variant("2.0", &["hang-on-start"]);
        let old = s.original_master();
        let record = s.install(&v2);
        // The orchestrator sent USR2 and died: the old master renamed its pid file and
        // started a new master that hangs without ever writing the pid file.
        s.signal(fake_nginx::Signal::Usr2);
        let mut hung = 0;
        poll::until(LONG, "a hung new master under .oldbin", || {
            hung = procs::children_of(old.get())
                .into_iter()
                .find(|c| procs::alive(*c) && !procs::workers_of(old.get()).contains(c))
                .unwrap_or(0);
            hung != 0 && s.oldbin_exists() && s.pid_from_file().is_none()
        });
        let seen = s.target().observe().unwrap();
        assert_eq!(seen.phase, Phase::Unknown, "{seen:?}");

        let events = Events::default();
        let opts = UpgradeOptions::new().quit_timeout(Duration::from_secs(2));
        let now = rollback(&s.target(), &opts, &events)
            .unwrap_or_else(|e| panic!("{e}\n{}\n{}", events.text(), s.why()));
        assert_eq!(now.phase, Phase::Steady);
        wait_gone(pid(hung));
        record.undo().unwrap();
        s.assert_steady(old, "1.0");
        // Anything else unknown is still refused: a pid file naming nothing.
        let bogus = s.dir.path().join("bogus.pid");
        std::fs::write(&bogus, "999999\n").unwrap();
        assert!(rollback(&Target::new(&bogus), &opts, &NoopObserver).is_err());
    });
}

/// Stops an upgrade right after its swap: panics as the spawn step starts (before any
/// signal), which leaves the journal and the installed new executable.
struct StopAtSpawn;

impl hotreload_core::Observer for StopAtSpawn {
    fn on_event(&self, event: &hotreload_core::Event) {
        if matches!(
            event,
            hotreload_core::Event::StepStarted {
                step: hotreload_core::Step::Spawn
            }
        ) {
            panic!("stopped at the spawn (on purpose)");
        }
    }
}

#[test]
fn a_restore_refused_before_any_change_gives_the_steady_state_back() {
    hotreload_tests::watchdog(|| {
        use std::os::unix::fs::PermissionsExt;
        let s = start(&[]);
        let v2 = s.variant("2.0", &[]);
        let old = s.original_master();
        let target = s.target();
        let opts = options(&v2);
        let stopped = catch_unwind(AssertUnwindSafe(|| upgrade(&target, &opts, &StopAtSpawn)));
        assert!(stopped.is_err(), "the upgrade was not stopped");
        let journal = s.journal();
        assert!(journal.is_file(), "no journal left: {}", s.why());
        assert!(s.installed_is(&v2));
        // A journal anyone may write is not acted on: the restore refuses, changing
        // nothing, and gives the state back.
        std::fs::set_permissions(&journal, std::fs::Permissions::from_mode(0o666)).unwrap();
        let State::Steady(steady) = s.target().attach().unwrap() else {
            panic!("not steady\n{}", s.why())
        };
        let events = Events::default();
        let e = steady
            .restore_binary(&op_options(), &events)
            .expect_err("a journal others may write is refused");
        assert!(
            e.to_string().contains(&journal.display().to_string()),
            "{e}"
        );
        let steady = e.state.expect("the state given back");
        assert_eq!(steady.master_pid(), old);
        assert!(s.installed_is(&v2), "the executable was changed");
        assert!(journal.is_file(), "the journal was removed");
        // Made private again, the same journal is acted on.
        std::fs::set_permissions(&journal, std::fs::Permissions::from_mode(0o600)).unwrap();
        steady
            .restore_binary(&op_options(), &events)
            .unwrap_or_else(|e| panic!("{e}\n{}", events.text()));
        assert!(!s.installed_is(&v2), "not restored");
        assert!(!journal.exists());
        s.assert_steady(old, "1.0");
    });
}
