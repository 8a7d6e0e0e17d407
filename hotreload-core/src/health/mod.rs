//! Health checks run after the new master starts (and after the old workers
//! drain): is the server still answering? Each check is small, has a hard
//! timeout, and returns a one-line human detail either way.
//!
//! A check never panics and never hangs past its timeout; a failure is data
//! (`Err(String)`) that the pipeline turns into a rollback.

mod command;
mod http;
mod tcp;

pub use command::CommandCheck;
pub use http::HttpCheck;
pub use tcp::TcpCheck;

use std::time::Duration;

use crate::pid::Pid;

/// A way to tell whether the server is healthy. `Send + Sync`: the options that hold
/// checks are handed to other threads.
pub trait HealthCheck: Send + Sync {
    /// What is checked, e.g. "HTTP GET http://127.0.0.1:8080/health".
    fn describe(&self) -> String;

    /// Runs the check within `timeout`. `Err` says what was wrong.
    fn check(&self, timeout: Duration) -> Result<(), String>;

    /// Like [`check`](Self::check), with a detail on success too (e.g. the HTTP status
    /// and `Server` header, to show which version answered).
    fn check_detail(&self, timeout: Duration) -> Result<String, String> {
        self.check(timeout).map(|()| "ok".to_string())
    }

    /// Whether [`check_served_by`](Self::check_served_by) can tell which process
    /// answered (an HTTP check can; a TCP connect or a command cannot).
    fn attributes(&self) -> bool {
        false
    }

    /// Runs the check once like [`check_detail`](Self::check_detail) and says which of
    /// `candidates` served it, when that can be known.
    ///
    /// During an upgrade old and new workers accept on the same socket, so a check
    /// proves something about the new build only when a new worker answered it. The
    /// default cannot tell and leaves [`Attributed::served_by`] empty.
    fn check_served_by(&self, timeout: Duration, candidates: &[Pid]) -> Attributed {
        let _ = candidates;
        Attributed {
            result: self.check_detail(timeout),
            served_by: None,
            note: None,
        }
    }
}

/// One health check, attributed to the process that answered it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attributed {
    /// `Ok(detail)` when healthy, `Err(why)` otherwise, as [`HealthCheck::check_detail`].
    pub result: Result<String, String>,
    /// The candidate that held the server side of the connection when the answer (or
    /// the failure) came; `None` when unknown: no connection, the server closed it, the
    /// check cannot attribute, or none of the candidates held it.
    pub served_by: Option<Pid>,
    /// Why the answer could not be attributed, when that was tried and went wrong
    /// (e.g. `/proc/<pid>/fd` unreadable); `None` otherwise.
    pub note: Option<String>,
}

/// A timeout that socket calls accept (they refuse a zero duration).
fn at_least_1ms(d: Duration) -> Duration {
    d.max(Duration::from_millis(1))
}
