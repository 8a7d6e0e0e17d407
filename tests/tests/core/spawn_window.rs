//! The spawn window, between the spawn signal and a new master that serves: what
//! `observe` says of a spawn in progress, and a cancel that lands before the master has
//! even forked.

use std::fs;
use std::time::Duration;

use crate::common::*;
use hotreload_core::{upgrade, CancelToken, Error, Event, Phase, Signal, State, Step, Target};
use hotreload_tests::{poll, procs};
use nix::sys::signal::Signal as S;

/// Cancels the token when dropped: a failing test does not leave its upgrade waiting.
struct CancelOnDrop(CancelToken);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// The old master's children that are not its workers (a new master starting).
fn starting_children(old: i32) -> Vec<i32> {
    let workers = procs::workers_of(old);
    procs::children_of(old)
        .into_iter()
        .filter(|c| !workers.contains(c) && procs::alive(*c))
        .collect()
}

#[test]
fn a_spawn_in_progress_is_seen_as_spawning_naming_the_starting_master() {
    hotreload_tests::watchdog(|| {
        let s = start(&[]);
        let v2 = s.variant("2.0", &["hang-on-start"]);
        let old = s.original_master();
        let cancel = CancelOnDrop(CancelToken::new());
        let opts = options(&v2).cancel_token(cancel.0.clone());
        let target = s.target();
        let upgrading = std::thread::spawn(move || {
            upgrade(&target, &opts, &hotreload_core::NoopObserver)
                .map(|_| ())
                .map_err(|e| e.error)
        });
        // The old pid file names the old master, the new master has written none: a
        // spawn, since an upgrade holds the lock and waits for it.
        let (seen, new) = poll::poll("a spawn in progress", LONG, || {
            let seen = s.target().observe().map_err(|e| e.to_string())?;
            let starting = starting_children(old.get());
            match (seen.phase, starting.as_slice()) {
                (Phase::Spawning, [new]) => Ok((seen, *new)),
                _ => Err(format!("{seen:?}, starting {starting:?}\n{}", s.why())),
            }
        });
        assert_eq!(seen.old_master.as_ref().map(|m| m.pid), Some(old));
        let child = format!("old master {old} has a child {new} titled `");
        assert!(
            seen.evidence.iter().any(|e| e.starts_with(&child)),
            "expected {child:?} in {:?}",
            seen.evidence
        );
        assert!(
            seen.evidence
                .iter()
                .any(|e| e.starts_with("an upgrade holds")),
            "{:?}",
            seen.evidence
        );
        cancel.0.cancel();
        let outcome = upgrading.join().expect("the upgrade thread");
        assert!(
            matches!(outcome, Err(Error::Cancelled { .. })),
            "{outcome:?}"
        );
        assert!(!procs::alive(new), "the starting master {new} was left");
        s.assert_steady(old, "1.0");
    });
}

/// Freezes the old master before the spawn signal (so that it acts on it only when let
/// go), cancels once the signal is sent, and lets the master go once the operation
/// waits for it to act.
struct CancelBeforeTheFork {
    old: hotreload_core::Pid,
    token: CancelToken,
    events: Events,
}

impl hotreload_core::Observer for CancelBeforeTheFork {
    fn on_event(&self, event: &Event) {
        self.events.on_event(event);
        let old = self.old.get();
        match event {
            Event::StepStarted { step: Step::Spawn } => {
                procs::signal(old, S::SIGSTOP).expect("STOP");
            }
            Event::Signalled { pid, signal, .. } if (*pid, *signal) == (self.old, Signal::Usr2) => {
                self.token.cancel();
            }
            Event::Waiting { what, .. } if what.contains("to act on") => {
                procs::signal(old, S::SIGCONT).expect("CONT");
            }
            _ => {}
        }
    }
}

/// Lets a frozen master go when dropped.
struct Thaw(i32);

impl Drop for Thaw {
    fn drop(&mut self) {
        let _ = procs::signal(self.0, S::SIGCONT);
    }
}

#[test]
fn a_cancel_before_the_master_forked_waits_for_the_fork_and_stops_what_it_started() {
    hotreload_tests::watchdog(|| {
        let s = start(&[]);
        let v2 = s.variant("2.0", &["hang-on-start"]);
        let record = s.install(&v2);
        let old = s.original_master();
        let _thaw = Thaw(old.get());
        let steady = steady_of(&s);
        let observer = CancelBeforeTheFork {
            old,
            token: CancelToken::new(),
            events: Events::default(),
        };
        let opts = op_options().cancel_token(observer.token.clone());
        let e = steady
            .spawn_new_master(&opts, &observer)
            .expect_err("cancelled");
        drop(record);
        assert!(
            matches!(e.error, Error::Cancelled { .. }),
            "{}\n{}",
            e.error,
            observer.events.text()
        );
        assert!(e.state.is_some(), "{}", observer.events.text());
        // Whenever the master acts on the signal, what it starts does not outlive the
        // cancelled operation.
        procs::signal(old.get(), S::SIGCONT).expect("CONT");
        let log = s.inst.error_log();
        let new: i32 = poll::poll("the master to act on USR2", LONG, || {
            let text = fs::read_to_string(&log).unwrap_or_default();
            text.lines()
                .find_map(|l| l.split("start new binary process ").nth(1))
                .and_then(|pid| pid.trim().parse().ok())
                .ok_or_else(|| procs::tail(&log, 5))
        });
        assert!(
            !procs::alive(new),
            "new master {new} outlived the cancelled spawn\n{}\n{}",
            observer.events.text(),
            s.why()
        );
        poll::wait_until_for(
            Duration::from_secs(10),
            "the server steady on its old master",
            || s.pid_from_file() == Some(old.get()) && !s.oldbin_exists(),
            || s.why(),
        );
        s.assert_steady(old, "1.0");
    });
}

/// Attaches to `s` as a new process would; panics unless steady.
fn steady_of(s: &Setup) -> hotreload_core::Steady {
    match Target::new(s.inst.pid_file()).attach().expect("attach") {
        State::Steady(steady) => steady,
        _ => panic!("not steady\n{}", s.why()),
    }
}

#[test]
fn a_new_master_configured_with_fewer_workers_is_spawned_once_their_number_settles() {
    hotreload_tests::watchdog(|| {
        let s = start(&[]);
        let v2 = s.variant("2.0", &[]);
        let old = s.original_master();
        // The config the new master reads asks for one worker; the old master runs two.
        let conf = s.inst.conf_path();
        let text = fs::read_to_string(conf).unwrap();
        assert!(text.contains("worker_processes 2;"), "{text}");
        fs::write(
            conf,
            text.replace("worker_processes 2;", "worker_processes 1;"),
        )
        .unwrap();
        let record = s.install(&v2);
        let events = Events::default();
        let spawned = steady_of(&s)
            .spawn_new_master(&op_options(), &events)
            .unwrap_or_else(|e| panic!("{e}\n{}", events.text()));
        drop(record);
        let new = spawned.new_pid();
        assert_eq!(procs::parent_of(new.get()), Some(old.get()));
        assert_eq!(procs::workers_of(new.get()).len(), 1, "{}", s.why());
        assert_eq!(procs::workers_of(old.get()).len(), 2, "{}", s.why());
    });
}

/// How someone else meddles in the spawn window.
#[derive(Clone, Copy)]
enum Meddling {
    /// `.oldbin` removed, the pid file naming another (steady) server's master.
    AnotherMaster(i32),
    /// The pid file created by another user (a sticky world-writable directory).
    AnotherUser,
}

/// `meddling`, as soon as the old master has renamed `pid_file`.
fn meddle(pid_file: &std::path::Path, meddling: Meddling) {
    let oldbin = format!("{}.oldbin", pid_file.display());
    poll::poll("the old master to rename its pid file", LONG, || {
        fs::metadata(&oldbin).map(|_| ()).map_err(|e| e.to_string())
    });
    match meddling {
        Meddling::AnotherMaster(intruder) => {
            fs::remove_file(&oldbin).unwrap();
            fs::write(pid_file, format!("{intruder}\n")).unwrap();
        }
        Meddling::AnotherUser => {
            fs::write(pid_file, "1\n").unwrap();
            std::os::unix::fs::chown(pid_file, Some(65534), Some(65534)).unwrap();
        }
    }
}

/// A spawn to a new master that hangs, with `meddling` in its window: the error the
/// spawn ends with.
fn meddled_spawn(s: &Setup, meddling: Meddling) -> (Error, Events) {
    let v2 = s.variant("2.0", &["hang-on-start"]);
    let old = s.original_master();
    let record = s.install(&v2);
    let pid_file = s.inst.pid_file().to_path_buf();
    // The operation waits at its spawn signal for the meddling: its deadline counts from
    // after it.
    let observer = AtSignal::new(old, Signal::Usr2, || meddle(&pid_file, meddling));
    let opts = op_options()
        .spawn_timeout(Duration::from_secs(3))
        .quit_timeout(Duration::from_secs(2));
    let e = steady_of(s)
        .spawn_new_master(&opts, &observer)
        .expect_err("the new master hangs");
    drop(record);
    assert!(
        starting_children(old.get()).is_empty(),
        "the hung new master was left\n{}",
        s.why()
    );
    (e.error, observer.events)
}

/// The spawn timed out with `cause` named as the reason: an `Interfered` whose source is
/// the timeout (not "the old master took its pid file back").
fn assert_timed_out_naming(error: &Error, cause: &str, events: &Events) {
    match error {
        Error::Interfered { what, source, .. } => {
            assert!(what.contains(cause), "{what}");
            assert!(
                matches!(**source, Error::Timeout { .. }),
                "{source}\n{}",
                events.text()
            );
        }
        other => panic!("{other}\n{}", events.text()),
    }
}

#[test]
fn another_master_put_in_the_pid_file_during_a_spawn_is_not_taken_for_the_old_one_taking_it_back() {
    hotreload_tests::watchdog(|| {
        let s = start(&[]);
        let other = start(&[]);
        let intruder = other.inst.master_pid();
        let (error, events) = meddled_spawn(&s, Meddling::AnotherMaster(intruder));
        assert_timed_out_naming(&error, &format!("named process {intruder}"), &events);
        assert!(procs::alive(s.original_master().get()) && procs::alive(intruder));
    });
}

#[test]
fn a_pid_file_another_user_created_during_a_spawn_is_named_as_the_cause() {
    hotreload_tests::watchdog(|| {
        let s = start(&[]);
        let (error, events) = meddled_spawn(&s, Meddling::AnotherUser);
        assert_timed_out_naming(
            &error,
            "was created by user 65534 (neither root nor the server's user 0)",
            &events,
        );
    });
}

/// Waits until the old master `old` has acted on the spawn signal and taken `pid_file`
/// back (its new master died at once), its log being `log`.
fn taken_back(old: i32, pid_file: &std::path::Path, log: &std::path::Path) {
    let oldbin = format!("{}.oldbin", pid_file.display());
    poll::poll("the old master to take its pid file back", LONG, || {
        let acted = fs::read_to_string(log)
            .unwrap_or_default()
            .contains("start new binary process");
        let back = procs::read_pid(pid_file) == Some(old) && fs::symlink_metadata(&oldbin).is_err();
        (acted && back)
            .then_some(())
            .ok_or_else(|| procs::tail(log, 5))
    });
}

#[test]
fn a_new_master_that_died_before_the_first_look_is_reported_dead_not_ignored() {
    hotreload_tests::watchdog(|| {
        let s = start(&[]);
        let v2 = s.variant("2.0", &["crash-on-start"]);
        let old = s.original_master();
        let record = s.install(&v2);
        // The operation held at its spawn signal until the whole failed spawn is over:
        // its first look comes after it, as on a loaded machine.
        let (pid_file, log) = (s.inst.pid_file().to_path_buf(), s.inst.error_log());
        let observer = AtSignal::new(old, Signal::Usr2, || taken_back(old.get(), &pid_file, &log));
        let e = steady_of(&s)
            .spawn_new_master(&op_options(), &observer)
            .expect_err("the new master crashes");
        drop(record);
        // The pid file renamed back (a new change time) tells, though no look saw
        // `.oldbin`.
        assert!(
            matches!(e.error, Error::NewMasterDied { .. }),
            "{}\n{}",
            e.error,
            observer.events.text()
        );
        assert!(e.state.is_some(), "{}", observer.events.text());
        s.assert_steady(old, "1.0");
    });
}

#[test]
fn a_spawn_signal_the_master_ignores_is_reported_with_why_and_the_state_given_back() {
    hotreload_tests::watchdog(|| {
        let s = start(&["ignore=USR2"]);
        let v2 = s.variant("2.0", &[]);
        let old = s.original_master();
        let record = s.install(&v2);
        let events = Events::default();
        let e = steady_of(&s)
            .spawn_new_master(&op_options(), &events)
            .expect_err("ignored");
        drop(record);
        let Error::SpawnIgnored { pid, reason, .. } = &e.error else {
            panic!("{}\n{}", e.error, events.text())
        };
        assert_eq!(*pid, old);
        let oldbin = format!("{}.oldbin", s.inst.pid_file().display());
        assert!(
            reason.starts_with(&format!("no {oldbin} appeared within 5s")),
            "{reason}"
        );
        // Its parent is named when it has one besides init.
        let parent = procs::parent_of(old.get()).expect("the master's parent");
        assert_eq!(
            reason.contains(&format!("its parent {parent} (`")),
            parent > 1,
            "parent {parent}: {reason}"
        );
        let steady = e.state.expect("the steady state given back");
        assert_eq!(steady.master_pid(), old);
        s.assert_steady(old, "1.0");
    });
}
