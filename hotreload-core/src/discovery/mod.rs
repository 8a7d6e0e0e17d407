//! PID discovery strategies: how the master to upgrade is found.
//!
//! A discovered pid is only a claim: callers pin it with
//! [`ProcessHandle::open`](crate::ProcessHandle::open) before acting on it.

mod explicit;
mod pid_file;
mod proc_scan;

pub use explicit::ExplicitPid;
pub use pid_file::PidFileDiscovery;
pub use proc_scan::ProcScanDiscovery;

use crate::error::Error;
use crate::pid::Pid;

/// A way to find the master process.
pub trait Discovery {
    /// How it looks, e.g. "pid file `/run/nginx.pid`".
    fn describe(&self) -> String;

    /// The master's pid now.
    fn discover(&self) -> Result<Pid, Error>;
}
