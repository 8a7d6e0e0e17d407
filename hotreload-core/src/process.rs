//! `ProcessHandle`: a process pinned at discovery, which can only ever signal
//! that same process.
//!
//! A pid is a claim, not a fact (DESIGN.md §5). A handle holds a pidfd opened at
//! discovery, which keeps referring to the discovered process even after its pid
//! is reused, and the process's start time, which tells a reused pid apart in
//! `/proc`. Signals go through `pidfd_send_signal`, so even a pid recycled
//! between our check and the send cannot receive one. Exit is awaited by polling
//! the pidfd (event-driven, no sleeps). A zombie counts as exited everywhere: on
//! these machines PID 1 never reaps orphans, so a daemon's zombie stays forever.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::pid::Pid;
use crate::procfs;
pub use crate::procfs::ProcInfo;
use crate::signal::Signal;
use crate::sys;

/// A live process, pinned by pid + start time + pidfd.
pub struct ProcessHandle {
    pid: Pid,
    start_time: u64,
    pidfd: OwnedFd,
}

impl fmt::Debug for ProcessHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessHandle")
            .field("pid", &self.pid)
            .field("start_time", &self.start_time)
            .finish_non_exhaustive()
    }
}

impl ProcessHandle {
    /// Pins the process that has `pid` now. Refuses a process that is gone or a zombie.
    pub fn open(pid: Pid) -> Result<ProcessHandle, Error> {
        // Open the pidfd first, then read /proc and check that the pidfd's process
        // has not exited: while it lives it owns the pid, so the start time read in
        // between belongs to it (and not to a successor with a recycled pid).
        let pidfd = sys::pidfd_open(pid.get()).map_err(|e| match e.raw_os_error() {
            Some(libc::ESRCH) => Error::ProcessGone { pid },
            _ => Error::Pidfd { pid, source: e },
        })?;
        let stat = procfs::proc_stat(pid)?;
        if stat.is_zombie() {
            return Err(Error::Zombie { pid });
        }
        let handle = ProcessHandle {
            pid,
            start_time: stat.start_time,
            pidfd,
        };
        if handle.pidfd_ready()? {
            return Err(Error::ProcessGone { pid });
        }
        Ok(handle)
    }

    /// Pins `pid` only if it is still the process that was seen earlier with
    /// `start_time` (e.g. recorded by another hotreload process in a journal).
    pub fn open_pinned(pid: Pid, start_time: u64) -> Result<ProcessHandle, Error> {
        let handle = ProcessHandle::open(pid)?;
        if handle.start_time != start_time {
            return Err(Error::ProcessReplaced {
                pid,
                expected: start_time,
                found: handle.start_time,
            });
        }
        Ok(handle)
    }

    /// The pid.
    pub fn pid(&self) -> Pid {
        self.pid
    }

    /// The start time pinned at discovery (clock ticks since boot).
    pub fn start_time(&self) -> u64 {
        self.start_time
    }

    /// A fresh snapshot, after checking that the pid still names the pinned process.
    ///
    /// A zombie is returned as a snapshot (its `state` is `'Z'`): looking is harmless.
    pub fn info(&self) -> Result<ProcInfo, Error> {
        let info = procfs::proc_info(self.pid)?;
        if info.start_time != self.start_time {
            return Err(Error::ProcessReplaced {
                pid: self.pid,
                expected: self.start_time,
                found: info.start_time,
            });
        }
        Ok(info)
    }

    /// Checks that the pinned process is alive and not a zombie.
    pub fn verify(&self) -> Result<(), Error> {
        let stat = procfs::proc_stat(self.pid)?;
        if stat.start_time != self.start_time {
            return Err(Error::ProcessReplaced {
                pid: self.pid,
                expected: self.start_time,
                found: stat.start_time,
            });
        }
        if stat.is_zombie() {
            return Err(Error::Zombie { pid: self.pid });
        }
        if self.pidfd_ready()? {
            return Err(Error::ProcessGone { pid: self.pid });
        }
        Ok(())
    }

    /// Sends `signal` to the pinned process, after [`verify`](Self::verify).
    ///
    /// The send itself goes through the pidfd: if the process exits between the
    /// check and the send, the kernel refuses (ESRCH → `ProcessGone`) instead of
    /// delivering to whoever has the pid next.
    pub fn signal(&self, signal: Signal) -> Result<(), Error> {
        self.verify()?;
        sys::pidfd_send_signal(self.pidfd.as_fd(), signal.number()).map_err(|e| {
            match e.raw_os_error() {
                Some(libc::ESRCH) => Error::ProcessGone { pid: self.pid },
                _ => Error::SendSignal {
                    pid: self.pid,
                    signal,
                    source: e,
                },
            }
        })
    }

    /// Whether the pinned process has exited: pidfd readable, or a zombie, or gone,
    /// or its pid now names another process.
    pub fn has_exited(&self) -> bool {
        match self.pidfd_ready() {
            Ok(true) => return true,
            Ok(false) => {}
            // Polling a valid pidfd does not fail; if it somehow does, let /proc decide.
            Err(_) => {}
        }
        match procfs::proc_stat(self.pid) {
            Ok(stat) => stat.is_zombie() || stat.start_time != self.start_time,
            Err(Error::ProcessGone { .. }) => true,
            // /proc unreadable for another reason: the pidfd said alive.
            Err(_) => false,
        }
    }

    /// Waits until the process exits or `deadline` passes, driven by pidfd readiness.
    ///
    /// Returns `Ok(true)` when it exited (a zombie counts), `Ok(false)` at the deadline.
    pub fn wait_exit(&self, deadline: Instant) -> Result<bool, Error> {
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match sys::poll_readable(&[self.pidfd.as_fd()], Some(remaining)) {
                Ok(ready) if ready[0] => return Ok(true),
                Ok(_) => {
                    if Instant::now() >= deadline {
                        return Ok(self.has_exited());
                    }
                    // Woken early (poll rounds to milliseconds): wait out the rest.
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::Wait {
                        pid: self.pid,
                        source: e,
                    })
                }
            }
        }
    }

    /// Like [`wait_exit`](Self::wait_exit) with a timeout instead of a deadline.
    pub fn wait_exit_timeout(&self, timeout: Duration) -> Result<bool, Error> {
        self.wait_exit(Instant::now() + timeout)
    }

    /// Whether the pidfd reports the process as exited (readable), without waiting.
    fn pidfd_ready(&self) -> Result<bool, Error> {
        loop {
            match sys::poll_readable(&[self.pidfd.as_fd()], Some(Duration::ZERO)) {
                Ok(ready) => return Ok(ready[0]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(Error::Wait {
                        pid: self.pid,
                        source: e,
                    })
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Child, Command};

    /// Kills and reaps the child when the test ends, even on panic.
    struct Guard(Child);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn sleeper() -> (Guard, Pid) {
        let child = Command::new("sleep").arg("600").spawn().unwrap();
        let pid = Pid::try_from(child.id()).unwrap();
        (Guard(child), pid)
    }

    #[test]
    fn pinned_start_time_mismatch_is_refused() {
        let (_g, pid) = sleeper();
        let h = ProcessHandle::open(pid).unwrap();
        let e = ProcessHandle::open_pinned(pid, h.start_time() + 1).unwrap_err();
        assert!(matches!(e, Error::ProcessReplaced { .. }), "{e}");
        // A handle whose pinned start time no longer matches refuses to signal.
        let forged = ProcessHandle {
            pid,
            start_time: h.start_time() + 1,
            pidfd: sys::pidfd_open(pid.get()).unwrap(),
        };
        let e = forged.signal(Signal::Term).unwrap_err();
        assert!(matches!(e, Error::ProcessReplaced { .. }), "{e}");
        // Had the TERM been sent, `sleep` would exit at once.
        let exited = h
            .wait_exit(Instant::now() + Duration::from_millis(300))
            .unwrap();
        assert!(!exited, "the TERM must not have been sent");
    }
}
