//! Discovery strategies: how the master to upgrade is found, and the [`Target`] it
//! becomes.
//!
//! A discovered pid is only a claim: callers pin it with
//! [`ProcessHandle::open`](crate::ProcessHandle::open) before acting on it. A target is
//! a pid file (the phase is read from the pid files), so [`Discovery::target`] yields
//! one only when the master's pid file is established from evidence and names it
//! ([`target_of_master`]); otherwise it says why not ([`Error::PidFileUnknown`]).

mod explicit;
mod pid_file;
mod proc_scan;
mod target;

pub use explicit::ExplicitPid;
pub use pid_file::PidFileDiscovery;
pub use proc_scan::ProcScanDiscovery;
pub use target::target_of_master;

use crate::error::Error;
use crate::flavor::Flavor;
use crate::model::Target;
use crate::pid::Pid;

/// A way to find the master process.
pub trait Discovery {
    /// How it looks, e.g. "pid file `/run/nginx.pid`".
    fn describe(&self) -> String;

    /// The master's pid now.
    fn discover(&self) -> Result<Pid, Error>;

    /// The target of the master found now, a server of `flavor`: see
    /// [`target_of_master`].
    fn target(&self, flavor: Flavor) -> Result<Target, Error> {
        target_of_master(self.discover()?, flavor)
    }
}
