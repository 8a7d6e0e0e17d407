//! `/proc` scan by executable: for servers without a pid file.
//!
//! A master is a process running the executable whose parent does not run it:
//! that excludes its workers (children of the master) and, during an upgrade,
//! the new master (a child of the old). The executable is matched by path —
//! including an old master whose file was replaced, which the kernel shows as
//! "`<path> (deleted)`" — or by inode, so a symlinked path finds its target.
//!
//! This is the one place that reads every process (one `readlink` each); the
//! model never does, it walks children from a known master.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::Discovery;
use crate::error::Error;
use crate::pid::Pid;
use crate::procfs;

/// Finds the single master process running an executable.
#[derive(Debug, Clone)]
pub struct ProcScanDiscovery {
    exe: PathBuf,
}

impl ProcScanDiscovery {
    /// Discovery of the master running `exe` (as the server was started, e.g. `/usr/sbin/nginx`).
    pub fn new(exe: impl Into<PathBuf>) -> ProcScanDiscovery {
        ProcScanDiscovery { exe: exe.into() }
    }

    /// Every master candidate, sorted: the pids running the executable whose parent does not.
    pub fn candidates(&self) -> Result<Vec<Pid>, Error> {
        let wanted = Wanted::new(&self.exe);
        // pid -> ppid of every process running the executable.
        let mut running: HashMap<Pid, i32> = HashMap::new();
        for pid in procfs::all_pids()? {
            let (exe, _deleted) = procfs::read_exe(pid);
            let Some(exe) = exe else { continue };
            if !wanted.matches(pid, &exe) {
                continue;
            }
            match procfs::proc_stat(pid) {
                Ok(stat) if !stat.is_zombie() => {
                    running.insert(pid, stat.ppid);
                }
                Ok(_) | Err(Error::ProcessGone { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let mut masters: Vec<Pid> = running
            .iter()
            .filter(|(_, ppid)| {
                !Pid::try_from(**ppid).is_ok_and(|parent| running.contains_key(&parent))
            })
            .map(|(pid, _)| *pid)
            .collect();
        masters.sort_unstable();
        Ok(masters)
    }
}

/// The executable searched for, by path and by file identity.
struct Wanted {
    /// Paths a process's exe link may show: as given (absolute) and fully resolved.
    paths: Vec<PathBuf>,
    /// (device, inode) of the file now at the path, if it exists.
    file_id: Option<(u64, u64)>,
}

impl Wanted {
    fn new(exe: &Path) -> Wanted {
        let mut paths = Vec::new();
        if let Ok(abs) = std::path::absolute(exe) {
            paths.push(abs);
        }
        if let Ok(real) = fs::canonicalize(exe) {
            paths.push(real);
        }
        let file_id = fs::metadata(exe).ok().map(|m| (m.dev(), m.ino()));
        Wanted { paths, file_id }
    }

    fn matches(&self, pid: Pid, exe: &Path) -> bool {
        if self.paths.iter().any(|p| p == exe) {
            return true;
        }
        let Some(id) = self.file_id else {
            return false;
        };
        // Stat through the magic link: the very file the process runs.
        fs::metadata(format!("/proc/{pid}/exe")).is_ok_and(|m| (m.dev(), m.ino()) == id)
    }
}

impl Discovery for ProcScanDiscovery {
    fn describe(&self) -> String {
        format!("processes running `{}`", self.exe.display())
    }

    fn discover(&self) -> Result<Pid, Error> {
        let masters = self.candidates()?;
        match masters.as_slice() {
            [one] => Ok(*one),
            [] => Err(Error::NoMasterFound {
                exe: self.exe.clone(),
                unprivileged: crate::sys::geteuid() != 0,
            }),
            _ => Err(Error::AmbiguousMaster {
                exe: self.exe.clone(),
                pids: masters,
            }),
        }
    }
}
