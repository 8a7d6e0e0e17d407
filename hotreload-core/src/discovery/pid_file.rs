//! Pid file: the server says where its master is (nginx's `pid` directive).
//! During an upgrade the flavor names the old and new files; pass either path.

use std::path::{Path, PathBuf};

use super::Discovery;
use crate::error::Error;
use crate::flavor::Flavor;
use crate::model::Target;
use crate::pid::Pid;
use crate::pidfile::read_pid_file;

/// Reads the master's pid from a pid file, strictly (one decimal pid, no symlink, not
/// writable by others when running as root).
#[derive(Debug, Clone)]
pub struct PidFileDiscovery {
    path: PathBuf,
}

impl PidFileDiscovery {
    /// Discovery through the pid file at `path`.
    pub fn new(path: impl Into<PathBuf>) -> PidFileDiscovery {
        PidFileDiscovery { path: path.into() }
    }

    /// The pid file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Discovery for PidFileDiscovery {
    fn describe(&self) -> String {
        format!("pid file `{}`", self.path.display())
    }

    fn discover(&self) -> Result<Pid, Error> {
        read_pid_file(&self.path)
    }

    /// The pid file is the evidence: the target is on it, whatever it names now
    /// (every operation reads it again, strictly, and a missing one can be the state of
    /// an interrupted upgrade).
    fn target(&self, flavor: Flavor) -> Result<Target, Error> {
        Ok(Target::new(self.path.clone()).flavor(flavor))
    }
}
