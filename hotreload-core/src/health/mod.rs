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

/// A way to tell whether the server is healthy.
pub trait HealthCheck {
    /// What is checked, e.g. "HTTP GET http://127.0.0.1:8080/health".
    fn describe(&self) -> String;

    /// Runs the check within `timeout`. `Err` says what was wrong.
    fn check(&self, timeout: Duration) -> Result<(), String>;

    /// Like [`check`](Self::check), with a detail on success too (e.g. the HTTP status
    /// and `Server` header, to show which version answered).
    fn check_detail(&self, timeout: Duration) -> Result<String, String> {
        self.check(timeout).map(|()| "ok".to_string())
    }
}

/// A timeout that socket calls accept (they refuse a zero duration).
fn at_least_1ms(d: Duration) -> Duration {
    d.max(Duration::from_millis(1))
}
