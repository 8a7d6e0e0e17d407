//! Waits at their edges: tokens equal only as clones, a wait says it is waiting from its
//! first look, a wait for an exit sees the exit and only the exit, and every kind of nap
//! sleeps (bounded looks and CPU) and reports every half second. Written for
//! survivors of the cargo-mutants run (MUTANTS.md).

use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::event::{Event, NoopObserver};
use crate::pid::Pid;
use crate::process::ProcessHandle;
use crate::wait::{CancelToken, Nap, Waiter};

#[test]
fn tokens_are_equal_only_as_clones() {
    let a = CancelToken::new();
    assert_eq!(a, a.clone());
    assert_ne!(a, CancelToken::new());
}

#[test]
fn a_wait_reports_itself_from_its_first_look() {
    let events = Mutex::new(Vec::new());
    let observer = |e: &Event| events.lock().unwrap().push(format!("{e:?}"));
    let waiter = Waiter {
        observer: &observer,
        cancel: None,
    };
    let found = waiter
        .until("the answer", Duration::from_secs(60), Nap::POLL, || {
            Ok(Some(42))
        })
        .unwrap();
    assert_eq!(found, Some(42));
    let events = events.into_inner().unwrap();
    assert!(
        events
            .iter()
            .any(|e| e.contains("Waiting") && e.contains("the answer")),
        "{events:?}"
    );
}

/// A `sleep` child, killed and reaped when dropped (also when a test panics).
struct Sleeper(std::process::Child);

impl Sleeper {
    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `sleep` child and its handle.
fn sleeper() -> (Sleeper, ProcessHandle) {
    let child = Sleeper(
        Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let handle = ProcessHandle::open(Pid::try_from(child.0.id()).unwrap()).unwrap();
    (child, handle)
}

#[test]
fn a_wait_for_an_exit_sees_it() {
    let (mut child, handle) = sleeper();
    let waiter = Waiter {
        observer: &NoopObserver,
        cancel: None,
    };
    // Alive: the wait ends at its deadline, saying so.
    let early = waiter.exit(&handle, "sleep to exit", Duration::from_millis(50));
    let _ = child.0.kill();
    assert!(!early.unwrap(), "a live child was reported as exited");
    let exited = waiter.exit(&handle, "sleep to exit", Duration::from_secs(60));
    child.kill();
    assert!(exited.unwrap(), "the killed child was not seen to exit");
}

/// Set: the helper below runs (in a child process, where it may install a filter).
const NO_INOTIFY_ENV: &str = "HOTRELOAD_LOWLEVEL_NO_INOTIFY";

/// Not a test on its own: run by the test below in a child process whose `inotify_init1`
/// fails as it does out of descriptors (EMFILE).
#[test]
fn no_inotify_helper() {
    if std::env::var_os(NO_INOTIFY_ENV).is_none() {
        return;
    }
    super::refuse_in_this_thread(libc::SYS_inotify_init1, libc::EMFILE);
    let dir = tempfile::tempdir().unwrap();
    let wake = crate::wait::Wake::watching(&[dir.path()]);
    println!("INOTIFY uses={}", wake.uses_inotify());
}

#[test]
fn without_inotify_a_wake_is_left_to_its_schedule() {
    let uses = super::helper_says(
        "lowlevel_tests::wait_edges::no_inotify_helper",
        (NO_INOTIFY_ENV, "1"),
        "INOTIFY uses=",
    );
    assert_eq!(uses, "false");
}

/// CPU time this thread has used so far.
fn thread_cpu() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(
        unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut usage) },
        0
    );
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

#[test]
fn a_wait_naps_between_its_looks_and_reports_every_half_second() {
    // hotreload waits for seconds at a time (a drain, a slow start): each kind of nap
    // must sleep between two looks, not spin on a core, and say it is waiting about
    // every 500 ms, not at every look. Each wait here lasts 700 ms (the condition never
    // holds); the bounds are ten times what the schedules allow.
    let dir = tempfile::tempdir().unwrap();
    let wake = crate::wait::Wake::watching(&[dir.path()]);
    let (_child, handle) = sleeper();
    let naps = [
        ("backoff", Nap::POLL, 200),
        ("wake", Nap::Wake(&wake), 200),
        ("exit", Nap::Exit(&handle), 400),
    ];
    for (name, nap, most_looks) in naps {
        let reports = Mutex::new(0usize);
        let observer = |e: &Event| {
            if matches!(e, Event::Waiting { .. }) {
                *reports.lock().unwrap() += 1;
            }
        };
        let waiter = Waiter {
            observer: &observer,
            cancel: None,
        };
        let mut looks = 0usize;
        let cpu = thread_cpu();
        let found: Option<()> = waiter
            .until(name, Duration::from_millis(700), nap, || {
                looks += 1;
                Ok(None)
            })
            .unwrap();
        let used = thread_cpu() - cpu;
        assert_eq!(found, None);
        assert!(looks <= most_looks, "{name}: {looks} looks in 700 ms");
        assert!(
            used < Duration::from_millis(100),
            "{name}: {used:?} of CPU in 700 ms"
        );
        let reports = reports.into_inner().unwrap();
        assert!((2..=3).contains(&reports), "{name}: {reports} reports");
    }
}
