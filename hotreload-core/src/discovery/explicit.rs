//! Explicit pid: the caller already knows it (e.g. from a supervisor).

use super::Discovery;
use crate::error::Error;
use crate::pid::Pid;
use crate::procfs;

/// A pid given by the caller; discovery only checks that it is alive.
#[derive(Debug, Clone, Copy)]
pub struct ExplicitPid {
    pid: Pid,
}

impl ExplicitPid {
    /// Discovery that returns `pid` while it names a live, non-zombie process.
    pub fn new(pid: Pid) -> ExplicitPid {
        ExplicitPid { pid }
    }
}

impl Discovery for ExplicitPid {
    fn describe(&self) -> String {
        format!("pid {}", self.pid)
    }

    fn discover(&self) -> Result<Pid, Error> {
        let stat = procfs::proc_stat(self.pid)?;
        if stat.is_zombie() {
            return Err(Error::Zombie { pid: self.pid });
        }
        Ok(self.pid)
    }
}
