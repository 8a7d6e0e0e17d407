//! The one wait of the tests: poll a condition with a short backing-off pause until it
//! holds or a deadline passes, and on timeout say what was awaited and what was last seen.
//! Never a sleep standing in for a handshake.

use std::time::{Duration, Instant};

/// Deadline for anything that should happen (the suite shares two slow cores).
pub const LONG: Duration = Duration::from_secs(30);

/// Polls `f` until it returns `Some`, for at most `deadline`; `None` at the deadline.
pub fn try_poll<T>(deadline: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if started.elapsed() >= deadline {
            return None;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// Polls `f` until it returns `Ok`, for at most `deadline`; panics with `what` and the
/// last `Err` (what was seen instead) when the deadline passes.
#[track_caller]
pub fn poll<T>(what: &str, deadline: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let mut last = String::new();
    match try_poll(deadline, || f().map_err(|seen| last = seen).ok()) {
        Some(v) => v,
        None => panic!("timed out after {deadline:?} waiting for {what}; last seen: {last}"),
    }
}

/// Polls `cond` until it holds, for at most [`LONG`]; panics naming `what` and adding
/// `context()` (evaluated only on timeout) to the message.
#[track_caller]
pub fn wait_until(what: &str, cond: impl FnMut() -> bool, context: impl FnOnce() -> String) {
    wait_until_for(LONG, what, cond, context)
}

/// [`wait_until`] with another deadline.
#[track_caller]
pub fn wait_until_for(
    deadline: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
    context: impl FnOnce() -> String,
) {
    if try_poll(deadline, || cond().then_some(())).is_none() {
        panic!(
            "timed out after {deadline:?} waiting for {what}{}",
            context()
        );
    }
}

/// Polls `f` until it yields a value, for at most `deadline`.
#[track_caller]
pub fn wait_for<T>(what: &str, deadline: Duration, f: impl FnMut() -> Option<T>) -> T {
    match try_poll(deadline, f) {
        Some(v) => v,
        None => panic!("timed out after {deadline:?} waiting for {what}"),
    }
}

/// Polls `cond` until it holds, for at most `deadline`; panics naming `what`.
#[track_caller]
pub fn until(deadline: Duration, what: &str, cond: impl FnMut() -> bool) {
    wait_until_for(deadline, what, cond, String::new)
}

/// Polls `cond` until it holds, for at most `deadline`; on timeout an error naming `what`
/// (for a caller that retries or adds context).
pub fn try_until(
    deadline: Duration,
    what: &str,
    mut cond: impl FnMut() -> bool,
) -> Result<(), String> {
    try_poll(deadline, || cond().then_some(()))
        .ok_or_else(|| format!("timed out after {deadline:?} waiting for {what}"))
}
