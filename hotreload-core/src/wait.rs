//! The one wait of the core: every wait for a process, a pid file or a health check goes
//! through [`Waiter::until`], which has a deadline, reports progress as
//! [`Event::Waiting`] about every 500 ms, and watches a [`CancelToken`].
//!
//! A wait sleeps in slices of at most [`CANCEL_SLICE`], so a cancel takes effect within
//! about that long; the sleep itself is either a backing-off pause (for pid files and
//! `/proc`, which offer no readiness to wait on) or a pidfd poll (for process exits).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::event::{Event, Observer};
use crate::process::ProcessHandle;

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
}

impl Nap<'_> {
    /// Pid files and `/proc`: 1 ms doubling to 50 ms.
    pub(crate) const POLL: Nap<'static> = Nap::Backoff {
        first: Duration::from_millis(1),
        max: Duration::from_millis(50),
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
}
