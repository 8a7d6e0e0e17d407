//! The one wait of the core: every wait for a process, a pid file or a health check goes
//! through [`Waiter::until`], which has a deadline, reports progress as
//! [`Event::Waiting`] about every 500 ms, and watches a [`CancelToken`].
//!
//! A wait sleeps in slices of at most [`CANCEL_SLICE`], so a cancel takes effect within
//! about that long; the sleep itself is a backing-off pause, a pidfd poll (for one
//! process's exit), or a [`Wake`]: woken at once by a change in a watched directory
//! (inotify: the pid files) or by the exit of a watched process (pidfds), with the pause
//! as the fallback for what sends no event (a fork: workers appearing) and for systems
//! without inotify.

use std::cell::RefCell;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::event::{Event, Observer};
use crate::process::ProcessHandle;
use crate::sys;

/// Asks running operations to stop, from any thread or task.
///
/// Clones share one flag. Every wait of the operations and of [`crate::upgrade()`]
/// looks at it at least every [`CANCEL_SLICE`]; what a cancelled call leaves is
/// documented on each call (see [`crate::FailureKind::Cancelled`]).
///
/// ```
/// use hotreload_core::CancelToken;
///
/// let token = CancelToken::new();
/// let other = token.clone();
/// assert!(!other.is_cancelled());
/// token.cancel();
/// assert!(other.is_cancelled());
/// ```
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        CancelToken::default()
    }

    /// Cancels: every wait watching this token (or a clone) stops at its next look.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether [`cancel`](Self::cancel) was called on this token or a clone.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Two tokens are equal when they share one flag.
impl PartialEq for CancelToken {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for CancelToken {}

/// How often a long wait reports itself.
pub(crate) const REPORT_EVERY: Duration = Duration::from_millis(500);

/// The longest a wait sleeps without looking at its cancel token.
pub const CANCEL_SLICE: Duration = Duration::from_millis(20);

/// What a wait does between two checks.
#[derive(Clone, Copy)]
pub(crate) enum Nap<'a> {
    /// Sleep `first`, then twice as long each time, up to `max`.
    Backoff { first: Duration, max: Duration },
    /// Wait on the pidfd of this process (woken at once when it exits).
    Exit(&'a ProcessHandle),
    /// Woken by the [`Wake`]'s events, polling on its schedule in between.
    Wake(&'a Wake),
}

/// The schedule of waits on pid files and `/proc`: 1 ms doubling to 50 ms.
const POLL_FIRST: Duration = Duration::from_millis(1);
const POLL_MAX: Duration = Duration::from_millis(50);

impl Nap<'_> {
    /// Pid files and `/proc` without any event source (the [`Wake`] fallback alone).
    #[cfg(test)]
    pub(crate) const POLL: Nap<'static> = Nap::Backoff {
        first: POLL_FIRST,
        max: POLL_MAX,
    };
}

/// Where waits report and which token they watch.
#[derive(Clone, Copy)]
pub(crate) struct Waiter<'a> {
    pub(crate) observer: &'a dyn Observer,
    /// `None` for the clean-up after a cancel, which must run to its end.
    pub(crate) cancel: Option<&'a CancelToken>,
}

impl Waiter<'_> {
    /// Calls `check` until it returns `Some` (returned), `timeout` passes (`Ok(None)`),
    /// the token is cancelled ([`Error::Cancelled`]) or `check` fails (its error).
    pub(crate) fn until<T>(
        &self,
        what: &str,
        timeout: Duration,
        nap: Nap<'_>,
        mut check: impl FnMut() -> Result<Option<T>, Error>,
    ) -> Result<Option<T>, Error> {
        let started = Instant::now();
        let deadline = started + timeout;
        let mut next_report = started;
        let mut pause = match nap {
            Nap::Backoff { first, .. } => first,
            Nap::Exit(_) => CANCEL_SLICE,
            Nap::Wake(wake) => wake.first,
        };
        loop {
            self.check_cancel(what)?;
            let now = Instant::now();
            if now >= next_report {
                self.observer.on_event(&Event::Waiting {
                    what: what.to_string(),
                    elapsed: now - started,
                    timeout,
                });
                next_report = now + REPORT_EVERY;
            }
            if let Some(found) = check()? {
                return Ok(Some(found));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            match nap {
                Nap::Backoff { max, .. } => {
                    self.sleep_until((now + pause).min(deadline));
                    pause = (pause * 2).min(max);
                }
                Nap::Exit(handle) => {
                    let until = (now + CANCEL_SLICE).min(deadline).min(next_report);
                    handle.wait_exit(until)?;
                }
                Nap::Wake(wake) => {
                    // After an event, what follows it (a master's pid file is followed by
                    // its workers) is looked for quickly again: the schedule restarts.
                    let woken = self.sleep_or_wake(wake, (now + pause).min(deadline));
                    pause = if woken {
                        wake.first
                    } else {
                        (pause * 2).min(wake.max)
                    };
                }
            }
        }
    }

    /// Sleeps until `until` or an event of `wake`, in slices, returning early when
    /// cancelled; true when an event woke it.
    fn sleep_or_wake(&self, wake: &Wake, until: Instant) -> bool {
        loop {
            let now = Instant::now();
            if now >= until || self.cancelled() {
                return false;
            }
            if wake.wait(until.min(now + CANCEL_SLICE)) {
                return true;
            }
        }
    }

    /// Waits for `handle` to exit: `Ok(true)` when it did, `Ok(false)` at the deadline.
    pub(crate) fn exit(
        &self,
        handle: &ProcessHandle,
        what: &str,
        timeout: Duration,
    ) -> Result<bool, Error> {
        self.until(what, timeout, Nap::Exit(handle), || {
            Ok(handle.has_exited().then_some(()))
        })
        .map(|exited| exited.is_some())
    }

    /// [`Error::Cancelled`] once the token is cancelled.
    pub(crate) fn check_cancel(&self, what: &str) -> Result<(), Error> {
        if self.cancelled() {
            return Err(Error::Cancelled {
                during: what.to_string(),
            });
        }
        Ok(())
    }

    fn cancelled(&self) -> bool {
        self.cancel.is_some_and(CancelToken::is_cancelled)
    }

    /// Sleeps until `until`, in slices, returning early when cancelled.
    fn sleep_until(&self, until: Instant) {
        loop {
            let now = Instant::now();
            if now >= until || self.cancelled() {
                return;
            }
            std::thread::sleep((until - now).min(CANCEL_SLICE));
        }
    }
}

/// What wakes a [`Nap::Wake`] early: changes in watched directories (inotify) and exits
/// of watched processes (pidfds). Between events the wait still checks on a backing-off
/// schedule: forks send no event (a master starting workers), and without inotify or
/// pidfds that schedule is all there is.
pub(crate) struct Wake {
    /// `None` when inotify is unavailable (`inotify_init1` failed: old kernel, limits).
    inotify: Option<OwnedFd>,
    /// The watches added to it, removed when the nap ends.
    watches: Vec<i32>,
    /// Whether `inotify` goes back to this thread's cache when the nap ends.
    cached: bool,
    /// Duplicated pidfds of the processes whose exit ends the nap; each is dropped once it
    /// has fired (a pidfd stays readable, and polling it again would spin).
    exits: RefCell<Vec<OwnedFd>>,
    first: Duration,
    max: Duration,
}

/// inotify events that can mean "a pid file appeared, changed or moved".
const DIR_EVENTS: u32 = libc::IN_CREATE
    | libc::IN_CLOSE_WRITE
    | libc::IN_MODIFY
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_DELETE;

/// A fresh inotify descriptor (non-blocking, close-on-exec).
pub(crate) fn inotify_init() -> io::Result<OwnedFd> {
    // SAFETY: no pointers; the returned descriptor is owned below.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a descriptor we just opened and own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

impl Wake {
    /// Nothing to wake on yet: the schedule alone (1 ms doubling to 50 ms).
    pub(crate) fn schedule() -> Wake {
        Wake {
            inotify: None,
            watches: Vec::new(),
            cached: false,
            exits: RefCell::new(Vec::new()),
            first: POLL_FIRST,
            max: POLL_MAX,
        }
    }

    /// Woken by changes in `dirs` (the pid files' directories).
    ///
    /// The inotify instance is kept per thread and reused: closing one costs the kernel a
    /// grace period (measured: 15 ms here), which would sit on the critical path of every
    /// wait. Watches are added here and removed when the nap ends.
    pub(crate) fn watching(dirs: &[&Path]) -> Wake {
        let cached = THREAD_INOTIFY.with(|c| c.borrow_mut().take());
        let fd = match cached {
            Some(fd) => {
                // Events left from an earlier nap (the removal's IN_IGNORED among them).
                drain(&fd);
                Ok(fd)
            }
            None => inotify_init(),
        };
        let mut wake = Wake::watching_fd(dirs, fd);
        wake.cached = true;
        wake
    }

    /// [`Wake::watching`] with the inotify set-up given (tests make it fail), uncached.
    #[cfg(test)]
    pub(crate) fn watching_with(dirs: &[&Path], init: fn() -> io::Result<OwnedFd>) -> Wake {
        Wake::watching_fd(dirs, init())
    }

    fn watching_fd(dirs: &[&Path], fd: io::Result<OwnedFd>) -> Wake {
        let mut wake = Wake::schedule();
        let Ok(fd) = fd else { return wake };
        for dir in dirs {
            let Ok(path) = CString::new(dir.as_os_str().as_bytes()) else {
                continue;
            };
            // SAFETY: valid descriptor and NUL-terminated path.
            let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), DIR_EVENTS) };
            // A directory that cannot be watched (gone, no permission) leaves the
            // schedule to find what happens in it.
            if wd >= 0 && !wake.watches.contains(&wd) {
                wake.watches.push(wd);
            }
        }
        if wake.watches.is_empty() {
            // Nothing to wait on: keep the instance for the next nap, unused now.
            THREAD_INOTIFY.with(|c| {
                c.borrow_mut().get_or_insert(fd);
            });
        } else {
            wake.inotify = Some(fd);
        }
        wake
    }

    /// Also wakes when one of `handles` exits (those without a pidfd are left to the
    /// schedule).
    pub(crate) fn exits<'h>(self, handles: impl IntoIterator<Item = &'h ProcessHandle>) -> Wake {
        self.exits.borrow_mut().extend(
            handles
                .into_iter()
                .filter_map(|h| h.pidfd().and_then(|fd| fd.try_clone_to_owned().ok())),
        );
        self
    }

    /// Whether directory changes wake it (false: inotify was unavailable).
    #[cfg(test)]
    pub(crate) fn uses_inotify(&self) -> bool {
        self.inotify.is_some()
    }

    /// How many process exits wake it (pidfds not yet fired).
    #[cfg(test)]
    pub(crate) fn exit_watches(&self) -> usize {
        self.exits.borrow().len()
    }

    /// Waits until an event or `until`: true when an event came (inotify events are
    /// consumed; a fired pidfd is dropped).
    fn wait(&self, until: Instant) -> bool {
        let timeout = until.saturating_duration_since(Instant::now());
        let mut exits = self.exits.borrow_mut();
        let mut fds: Vec<BorrowedFd<'_>> = exits.iter().map(AsFd::as_fd).collect();
        if let Some(fd) = &self.inotify {
            fds.push(fd.as_fd());
        }
        if fds.is_empty() {
            std::thread::sleep(timeout);
            return false;
        }
        let ready = match sys::poll_readable(&fds, Some(timeout)) {
            Ok(ready) => ready,
            // EINTR: the caller's loop computes its time again. Another failure (there is
            // none for valid descriptors) degrades to the schedule.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return false,
            Err(_) => {
                drop(fds);
                exits.clear();
                std::thread::sleep(timeout);
                return false;
            }
        };
        drop(fds);
        let woke = ready.iter().any(|r| *r);
        if self.inotify.is_some() && ready[ready.len() - 1] {
            self.drain_inotify();
        }
        let mut i = 0;
        exits.retain(|_| {
            let fired = ready[i];
            i += 1;
            !fired
        });
        woke
    }

    /// Reads every queued inotify event: which file changed does not matter, the check
    /// looks at everything again.
    fn drain_inotify(&self) {
        if let Some(fd) = &self.inotify {
            drain(fd);
        }
    }
}

impl Drop for Wake {
    fn drop(&mut self) {
        let Some(fd) = self.inotify.take() else {
            return;
        };
        for wd in &self.watches {
            // SAFETY: a valid descriptor and a watch it returned.
            unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), *wd) };
        }
        if self.cached {
            // Nested naps on one thread: the outer one's instance stays cached and this
            // one is closed (rare: only then is the close paid).
            THREAD_INOTIFY.with(|c| {
                c.borrow_mut().get_or_insert(fd);
            });
        }
    }
}

thread_local! {
    /// This thread's idle inotify instance, reused by the next [`Wake::watching`].
    static THREAD_INOTIFY: RefCell<Option<OwnedFd>> = const { RefCell::new(None) };
}

/// Reads and drops every event queued on a non-blocking inotify descriptor.
fn drain(fd: &OwnedFd) {
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: `buf` is valid for `len` bytes; the descriptor is non-blocking.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::NoopObserver;

    #[test]
    fn a_cancel_from_another_thread_ends_a_wait() {
        let token = CancelToken::new();
        let waiter = Waiter {
            observer: &NoopObserver,
            cancel: Some(&token),
        };
        let other = token.clone();
        // The other thread cancels once the wait has looked at least once (a handshake,
        // so the cancel lands while the wait runs, not before it starts).
        let (looked, seen) = std::sync::mpsc::channel::<()>();
        let canceller = std::thread::spawn(move || {
            seen.recv().unwrap();
            other.cancel();
        });
        let result: Result<Option<()>, Error> =
            waiter.until("nothing", Duration::from_secs(600), Nap::POLL, || {
                let _ = looked.send(());
                Ok(None)
            });
        canceller.join().unwrap();
        assert!(
            matches!(result, Err(Error::Cancelled { ref during }) if during == "nothing"),
            "{result:?}"
        );
    }

    #[test]
    fn a_wait_ends_at_its_deadline_or_when_found() {
        let token = CancelToken::new();
        let waiter = Waiter {
            observer: &NoopObserver,
            cancel: Some(&token),
        };
        let none: Option<()> = waiter
            .until("never", Duration::from_millis(20), Nap::POLL, || Ok(None))
            .unwrap();
        assert_eq!(none, None);
        let mut n = 0;
        let found = waiter
            .until("third", Duration::from_secs(600), Nap::POLL, || {
                n += 1;
                Ok((n == 3).then_some(n))
            })
            .unwrap();
        assert_eq!(found, Some(3));
    }

    /// A schedule that never checks again by itself within a test's deadline: a wait
    /// with it only ends early when an event wakes it.
    fn events_only(mut wake: Wake) -> Wake {
        wake.first = Duration::from_secs(3600);
        wake.max = Duration::from_secs(3600);
        wake
    }

    /// Runs `act` from another thread once the wait has looked once (a handshake, so the
    /// change happens while the wait sleeps), and waits (10 minutes at most) until `done`.
    /// A wait that nothing wakes is cancelled after 30 s: `Err(Cancelled)`, not a
    /// result found at the wait's own deadline.
    fn wait_woken(
        wake: &Wake,
        act: impl FnOnce() + Send + 'static,
        mut done: impl FnMut() -> bool,
    ) -> Result<Option<()>, Error> {
        let token = CancelToken::new();
        let waiter = Waiter {
            observer: &NoopObserver,
            cancel: Some(&token),
        };
        let (looked, seen) = std::sync::mpsc::channel::<()>();
        let actor = std::thread::spawn(move || {
            seen.recv().unwrap();
            act();
        });
        let (finished, finish) = std::sync::mpsc::channel::<()>();
        let bound = token.clone();
        let guard = std::thread::spawn(move || {
            if finish.recv_timeout(Duration::from_secs(30)).is_err() {
                bound.cancel();
            }
        });
        let found = waiter.until(
            "the change",
            Duration::from_secs(600),
            Nap::Wake(wake),
            || {
                let _ = looked.send(());
                Ok(done().then_some(()))
            },
        );
        let _ = finished.send(());
        actor.join().unwrap();
        guard.join().unwrap();
        found
    }

    /// Creates `path` (with a pid) from another thread and waits for it.
    fn wait_for_file(wake: &Wake, path: &Path) -> Option<()> {
        let target = path.to_path_buf();
        wait_woken(
            wake,
            move || std::fs::write(&target, "4242\n").unwrap(),
            || path.exists(),
        )
        .unwrap()
    }

    #[test]
    fn a_wait_wakes_when_a_pid_file_is_removed_or_moved_in_or_out() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let watched = dir.path().join("nginx.pid");
        let outside = elsewhere.path().join("nginx.pid");
        // A master that exits removes its pid file.
        std::fs::write(&watched, "1\n").unwrap();
        let wake = events_only(Wake::watching(&[dir.path()]));
        let path = watched.clone();
        let gone = wait_woken(
            &wake,
            move || std::fs::remove_file(&path).unwrap(),
            || !watched.exists(),
        );
        assert_eq!(gone.unwrap(), Some(()), "not woken by the removal");
        // Moved in from another directory, then out to it.
        std::fs::write(&outside, "1\n").unwrap();
        let (from, to) = (outside.clone(), watched.clone());
        let came = wait_woken(
            &wake,
            move || std::fs::rename(&from, &to).unwrap(),
            || watched.exists(),
        );
        assert_eq!(came.unwrap(), Some(()), "not woken by the move in");
        let (from, to) = (watched.clone(), outside.clone());
        let went = wait_woken(
            &wake,
            move || std::fs::rename(&from, &to).unwrap(),
            || !watched.exists(),
        );
        assert_eq!(went.unwrap(), Some(()), "not woken by the move out");
    }

    #[test]
    fn a_wait_wakes_when_the_pid_file_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let wake = events_only(Wake::watching(&[dir.path()]));
        assert!(wake.uses_inotify());
        // Its schedule would not look again before the deadline: only the inotify event
        // on the file's creation can end this wait with the file found.
        let found = wait_for_file(&wake, &dir.path().join("nginx.pid"));
        assert_eq!(found, Some(()));
    }

    #[test]
    fn a_reused_inotify_instance_wakes_for_the_new_directory_only() {
        // The second nap on a thread reuses the first one's instance: its watch on the
        // first directory is gone, its queued events are not taken for new ones.
        let first = tempfile::tempdir().unwrap();
        drop(Wake::watching(&[first.path()]));
        std::fs::write(first.path().join("stale"), "x").unwrap();
        let second = tempfile::tempdir().unwrap();
        let wake = events_only(Wake::watching(&[second.path()]));
        assert!(wake.uses_inotify());
        let found = wait_for_file(&wake, &second.path().join("nginx.pid"));
        assert_eq!(found, Some(()));
    }

    #[test]
    fn without_inotify_a_wait_polls() {
        let dir = tempfile::tempdir().unwrap();
        let wake = Wake::watching_with(&[dir.path()], || {
            Err(io::Error::from_raw_os_error(libc::EMFILE))
        });
        assert!(!wake.uses_inotify());
        let found = wait_for_file(&wake, &dir.path().join("nginx.pid"));
        assert_eq!(found, Some(()));
        // A directory that cannot be watched leaves the schedule alone too.
        let gone = Wake::watching(&[&dir.path().join("missing")]);
        assert!(!gone.uses_inotify());
    }

    #[test]
    fn a_wait_that_nothing_ends_stops_at_its_deadline() {
        // In a thread, so that a wait that never ends fails this test instead of hanging it;
        // on a plain backing-off schedule, then on a Wake that never fires.
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let waiter = Waiter {
                observer: &NoopObserver,
                cancel: None,
            };
            let wake = Wake::schedule();
            for nap in [Nap::POLL, Nap::Wake(&wake)] {
                let found: Result<Option<()>, Error> =
                    waiter.until("nothing", Duration::from_millis(50), nap, || Ok(None));
                let _ = done.send(found.map_err(|e| e.to_string()));
            }
        });
        for nap in ["a backing-off schedule", "a Wake"] {
            let found = result
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("a 50 ms wait on {nap} did not end"));
            assert_eq!(found, Ok(None), "{nap}");
        }
    }

    #[test]
    fn an_event_wakes_one_nap_only() {
        // Events are consumed when they wake a nap: the next nap sleeps until something
        // new happens (or its time is up), instead of waking again and again.
        let dir = tempfile::tempdir().unwrap();
        let wake = Wake::watching(&[dir.path()]);
        assert!(wake.uses_inotify());
        std::fs::write(dir.path().join("nginx.pid"), "4242\n").unwrap();
        assert!(
            wake.wait(Instant::now() + Duration::from_secs(30)),
            "not woken"
        );
        assert!(
            !wake.wait(Instant::now() + Duration::from_millis(20)),
            "woken again by the same event"
        );
    }

    #[test]
    fn of_two_watched_processes_only_the_one_that_exited_stops_being_watched() {
        if !crate::process::pidfd_available() {
            return; // No pidfds: nothing is watched (tested in `process`).
        }
        struct Reap(std::process::Child);
        impl Drop for Reap {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let spawn = || {
            Reap(
                std::process::Command::new("sleep")
                    .arg("600")
                    .spawn()
                    .unwrap(),
            )
        };
        let (first, mut second) = (spawn(), spawn());
        let handle =
            |c: &Reap| ProcessHandle::open(crate::pid::Pid::try_from(c.0.id()).unwrap()).unwrap();
        let (a, b) = (handle(&first), handle(&second));
        let wake = Wake::schedule().exits([&a, &b]);
        assert_eq!(wake.exit_watches(), 2);
        second.0.kill().unwrap();
        assert!(
            wake.wait(Instant::now() + Duration::from_secs(30)),
            "not woken"
        );
        // The first still runs: its exit must still wake a later nap.
        assert_eq!(wake.exit_watches(), 1);
        assert!(!wake.wait(Instant::now() + Duration::from_millis(20)));
        drop(first);
        assert!(
            wake.wait(Instant::now() + Duration::from_secs(30)),
            "not woken by the first"
        );
        assert_eq!(wake.exit_watches(), 0);
    }

    #[test]
    fn a_later_nap_on_the_same_thread_reuses_inotify_without_old_events() {
        // In a thread (a fresh per-thread cache), bounded: a drain that never ends fails.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let (done, result) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let first = Wake::watching(&[path.as_path()]);
            std::fs::write(path.join("nginx.pid"), "1\n").unwrap();
            drop(first); // its event is still queued on the cached descriptor
            let empty = Wake::watching(&[path.as_path()]);
            drop(empty); // nothing queued: the drain must not wait for events
            let later = Wake::watching(&[path.as_path()]);
            let stale = later.wait(Instant::now() + Duration::from_millis(20));
            let _ = done.send((later.uses_inotify(), stale));
        });
        let (uses, stale) = result
            .recv_timeout(Duration::from_secs(20))
            .expect("setting up a later nap did not end");
        assert!(uses);
        assert!(!stale, "woken by an event of an earlier nap");
    }

    #[test]
    fn a_wait_wakes_when_a_watched_process_exits() {
        if !crate::process::pidfd_available() {
            return; // The exit then shows on the schedule (tested in `process`).
        }
        struct Reap(std::process::Child);
        impl Drop for Reap {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let child = std::process::Command::new("sleep")
            .arg("600")
            .spawn()
            .unwrap();
        let pid = crate::pid::Pid::try_from(child.id()).unwrap();
        let mut child = Reap(child);
        let handle = ProcessHandle::open(pid).unwrap();
        let wake = events_only(Wake::schedule().exits([&handle]));
        // The handle's pidfd is what wakes it: were it not watched, this wait would only
        // end at its deadline (and still find the exit then).
        assert_eq!(wake.exit_watches(), 1);
        let waiter = Waiter {
            observer: &NoopObserver,
            cancel: None,
        };
        let mut killed = false;
        let exited = waiter
            .until(
                "sleep to exit",
                Duration::from_secs(60),
                Nap::Wake(&wake),
                || {
                    if !killed {
                        // Killed (not reaped: a zombie counts as exited) after the first look.
                        child.0.kill().unwrap();
                        killed = true;
                        return Ok(None);
                    }
                    Ok(handle.has_exited().then_some(()))
                },
            )
            .unwrap();
        assert_eq!(exited, Some(()));
        // A fired pidfd is dropped: it would wake every later nap at once.
        assert_eq!(wake.exit_watches(), 0);
    }
}
