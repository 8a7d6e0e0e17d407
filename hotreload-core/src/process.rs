//! `ProcessHandle`: a process pinned at discovery, which can only ever signal
//! that same process — and the one choice of how that is done on this kernel.
//!
//! A pid is a claim, not a fact (DESIGN.md §5). A handle records the process's start
//! time, which tells a reused pid apart in `/proc`, and — where the kernel has them
//! (Linux 5.3+) — holds a pidfd opened at discovery, which keeps referring to the
//! discovered process even after its pid is reused. With a pidfd, signals go through
//! `pidfd_send_signal`, so even a pid recycled between our check and the send cannot
//! receive one, and exits are awaited by polling the pidfd.
//!
//! Without pidfds (kernels before 5.3, or a seccomp filter that refuses them: ENOSYS or
//! EPERM, probed once per process by [`pidfd_support`]) the handle falls back: the start
//! time is checked again immediately before each signal, the signal goes through
//! `kill(2)`, and exits are awaited by watching `/proc` with a short backing-off poll.
//! What remains is the window between that last check and the `kill(2)`: the process
//! would have to exit, be reaped, and the kernel hand its pid to a new process within it
//! — it allocates pids cyclically, so it would have to cycle through every other free
//! pid first. Callers that prefer no operation to that guarantee use [`require_pidfd`].
//!
//! A zombie counts as exited everywhere: on these machines PID 1 never reaps orphans, so
//! a daemon's zombie stays forever.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::error::Error;
use crate::pid::Pid;
use crate::procfs;
pub use crate::procfs::ProcInfo;
use crate::signal::Signal;
use crate::sys;

/// The first kernel with `pidfd_open` (and pollable pidfds).
pub const PIDFD_KERNEL: &str = "5.3";

/// First and longest pause between two looks at `/proc` when there is no pidfd to wait
/// on (the same backing-off poll the operations use for pid files).
const POLL_FIRST: Duration = Duration::from_millis(1);
const POLL_MAX: Duration = Duration::from_millis(50);

/// Whether this process can use pidfds: decided once, at the first use.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PidfdSupport {
    /// `pidfd_open` and `pidfd_send_signal` work: every handle holds a pidfd.
    Available,
    /// They are refused; handles are pinned by pid + start time, signal with `kill(2)`
    /// right after re-checking the start time, and wait for exits by watching `/proc`.
    Unavailable {
        /// The call that was refused: `pidfd_open` or `pidfd_send_signal`.
        call: &'static str,
        /// The error it returned (ENOSYS: the kernel lacks it; EPERM: a filter refuses it).
        reason: String,
        /// The running kernel's release, as `uname -r` prints it.
        kernel: String,
    },
}

impl PidfdSupport {
    /// Whether handles hold pidfds.
    pub fn is_available(&self) -> bool {
        matches!(self, PidfdSupport::Available)
    }

    /// Why there are no pidfds, for an event or a refusal ("pidfd_open is not available
    /// (Linux 5.3 or later needed; this kernel is 4.18.0 from uname)"); `None` when there are.
    pub fn unavailable_reason(&self) -> Option<String> {
        let PidfdSupport::Unavailable {
            call,
            reason,
            kernel,
        } = self
        else {
            return None;
        };
        // A kernel new enough to have the call can only be refusing it through a filter
        // (seccomp, an LSM): say so rather than send the reader to upgrade the kernel.
        let filtered = if kernel_at_least(kernel, 5, 3) {
            "; the kernel is new enough, so a seccomp filter or security module refuses it"
        } else {
            ""
        };
        Some(format!(
            "{call} is not available ({reason}; Linux {PIDFD_KERNEL} or later needed; this \
             kernel is {kernel} from uname{filtered})"
        ))
    }
}

/// Whether `release` (`uname -r`, "4.18.0-553.el8.x86_64") is at least `major.minor`;
/// false when it cannot be parsed.
fn kernel_at_least(release: &str, major: u32, minor: u32) -> bool {
    let mut parts = release
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

/// The running kernel's release (`uname -r`), or `unknown`.
pub fn kernel_release() -> String {
    sys::kernel_release().unwrap_or_else(|_| "unknown".to_string())
}

/// Whether this process can use pidfds, probed once (on itself: `pidfd_open` of its own
/// pid, then `pidfd_send_signal` with signal 0, which only checks).
///
/// ENOSYS (a kernel before 5.3, or a seccomp filter imitating one) and EPERM (a filter or
/// security module) mean "no pidfds". Any other failure (say EMFILE) is not a missing
/// feature: pidfds are deemed available and the handle that hits it reports the error.
pub fn pidfd_support() -> &'static PidfdSupport {
    static SUPPORT: OnceLock<PidfdSupport> = OnceLock::new();
    SUPPORT.get_or_init(probe)
}

/// Shorthand for `pidfd_support().is_available()`.
pub fn pidfd_available() -> bool {
    pidfd_support().is_available()
}

/// Refuses when there are no pidfds, for callers that prefer no operation to the weaker
/// guarantee of the fallback ([`Error::PidfdRequired`], naming the kernel needed).
pub fn require_pidfd() -> Result<(), Error> {
    match pidfd_support().unavailable_reason() {
        None => Ok(()),
        Some(detail) => Err(Error::PidfdRequired { detail }),
    }
}

fn refused(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM))
}

fn probe() -> PidfdSupport {
    let unavailable = |call, e: io::Error| PidfdSupport::Unavailable {
        call,
        reason: e.to_string(),
        kernel: kernel_release(),
    };
    match sys::pidfd_open(std::process::id() as i32) {
        Ok(fd) => match sys::pidfd_send_signal(fd.as_fd(), 0) {
            Err(e) if refused(&e) => unavailable("pidfd_send_signal", e),
            _ => PidfdSupport::Available,
        },
        Err(e) if refused(&e) => unavailable("pidfd_open", e),
        Err(_) => PidfdSupport::Available,
    }
}

/// A live process, pinned by pid + start time (+ a pidfd where the kernel has them).
pub struct ProcessHandle {
    pid: Pid,
    start_time: u64,
    pidfd: Option<OwnedFd>,
}

impl fmt::Debug for ProcessHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessHandle")
            .field("pid", &self.pid)
            .field("start_time", &self.start_time)
            .field("pidfd", &self.pidfd.is_some())
            .finish()
    }
}

impl ProcessHandle {
    /// Pins the process that has `pid` now. Refuses a process that is gone or a zombie.
    pub fn open(pid: Pid) -> Result<ProcessHandle, Error> {
        ProcessHandle::open_with(pid, pidfd_available())
    }

    fn open_with(pid: Pid, use_pidfd: bool) -> Result<ProcessHandle, Error> {
        // Open the pidfd first, then read /proc and check that the pidfd's process
        // has not exited: while it lives it owns the pid, so the start time read in
        // between belongs to it (and not to a successor with a recycled pid).
        let pidfd = if use_pidfd {
            Some(
                sys::pidfd_open(pid.get()).map_err(|e| match e.raw_os_error() {
                    Some(libc::ESRCH) => Error::ProcessGone { pid },
                    _ => Error::Pidfd { pid, source: e },
                })?,
            )
        } else {
            None
        };
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

    /// Whether this handle holds a pidfd (false on kernels without them: see the
    /// [module documentation](self)).
    pub fn has_pidfd(&self) -> bool {
        self.pidfd.is_some()
    }

    /// The pidfd, for waits that watch several processes at once (`wait::Wake`).
    pub(crate) fn pidfd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        self.pidfd.as_ref().map(AsFd::as_fd)
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
    /// With a pidfd the send goes through it: if the process exits between the check
    /// and the send, the kernel refuses (ESRCH → `ProcessGone`) instead of delivering
    /// to whoever has the pid next. Without one, `kill(2)` follows the start-time check
    /// with nothing in between (the window the [module documentation](self) describes).
    pub fn signal(&self, signal: Signal) -> Result<(), Error> {
        self.verify()?;
        let sent = match &self.pidfd {
            Some(pidfd) => sys::pidfd_send_signal(pidfd.as_fd(), signal.number()),
            None => sys::kill(self.pid.get(), signal.number()),
        };
        sent.map_err(|e| match e.raw_os_error() {
            Some(libc::ESRCH) => Error::ProcessGone { pid: self.pid },
            _ => Error::SendSignal {
                pid: self.pid,
                signal,
                source: e,
            },
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
            // /proc unreadable for another reason: the pidfd (if any) said alive.
            Err(_) => false,
        }
    }

    /// Waits until the process exits or `deadline` passes: on pidfd readiness, or
    /// without a pidfd by looking at `/proc` after pauses of 1 ms doubling to 50 ms.
    ///
    /// Returns `Ok(true)` when it exited (a zombie counts), `Ok(false)` at the deadline.
    pub fn wait_exit(&self, deadline: Instant) -> Result<bool, Error> {
        let Some(pidfd) = &self.pidfd else {
            return Ok(self.poll_exit(deadline));
        };
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match sys::poll_readable(&[pidfd.as_fd()], Some(remaining)) {
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

    /// The fallback wait: nothing wakes us at the exit, so look at `/proc` again and
    /// again, quickly at first (most exits are prompt), then every 50 ms.
    fn poll_exit(&self, deadline: Instant) -> bool {
        let mut pause = POLL_FIRST;
        loop {
            if self.has_exited() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(POLL_MAX);
        }
    }

    /// Like [`wait_exit`](Self::wait_exit) with a timeout instead of a deadline.
    pub fn wait_exit_timeout(&self, timeout: Duration) -> Result<bool, Error> {
        self.wait_exit(Instant::now() + timeout)
    }

    /// Whether the pidfd reports the process as exited (readable), without waiting;
    /// always false without a pidfd (then `/proc` decides).
    fn pidfd_ready(&self) -> Result<bool, Error> {
        let Some(pidfd) = &self.pidfd else {
            return Ok(false);
        };
        loop {
            match sys::poll_readable(&[pidfd.as_fd()], Some(Duration::ZERO)) {
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

    #[test]
    fn only_a_missing_or_filtered_call_means_no_pidfds() {
        let e = io::Error::from_raw_os_error;
        assert!(refused(&e(libc::ENOSYS)), "a kernel before 5.3");
        assert!(
            refused(&e(libc::EPERM)),
            "a seccomp filter or security module"
        );
        // A process out of descriptors has pidfds; its handles report the error.
        assert!(!refused(&e(libc::EMFILE)));
        assert!(!refused(&io::Error::other("not an OS error")));
    }

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
            // Under the oldkernel wrapper this checks the kill(2) path instead.
            pidfd: pidfd_available().then(|| sys::pidfd_open(pid.get()).unwrap()),
        };
        let e = forged.signal(Signal::Term).unwrap_err();
        assert!(matches!(e, Error::ProcessReplaced { .. }), "{e}");
        // Had the TERM been sent, `sleep` would exit at once.
        let exited = h
            .wait_exit(Instant::now() + Duration::from_millis(300))
            .unwrap();
        assert!(!exited, "the TERM must not have been sent");
    }

    #[test]
    fn without_a_pidfd_a_recycled_pid_is_refused() {
        let (_g, pid) = sleeper();
        let h = ProcessHandle::open_with(pid, false).unwrap();
        assert!(!h.has_pidfd());
        h.verify().unwrap();
        // A pid now held by another process (its start time differs) gets no signal.
        let recycled = ProcessHandle {
            pid,
            start_time: h.start_time() + 1,
            pidfd: None,
        };
        let e = recycled.signal(Signal::Term).unwrap_err();
        assert!(matches!(e, Error::ProcessReplaced { .. }), "{e}");
        assert!(
            recycled.has_exited(),
            "the pinned process is gone from that pid"
        );
        // Had the TERM been sent, `sleep` would exit at once.
        let exited = h
            .wait_exit(Instant::now() + Duration::from_millis(300))
            .unwrap();
        assert!(!exited, "the TERM must not have been sent");
        // The real one is signalled through kill(2) and its exit seen in /proc.
        h.signal(Signal::Term).unwrap();
        assert!(h.wait_exit_timeout(Duration::from_secs(60)).unwrap());
    }

    #[test]
    fn without_a_pidfd_a_zombie_counts_as_exited() {
        let (mut g, pid) = sleeper();
        let h = ProcessHandle::open_with(pid, false).unwrap();
        // SIGKILL without reaping: the child stays a zombie until the guard waits.
        g.0.kill().unwrap();
        assert!(h.wait_exit_timeout(Duration::from_secs(60)).unwrap());
        assert!(h.has_exited());
        assert_eq!(procfs::proc_stat(pid).unwrap().state, 'Z');
        let e = h.signal(Signal::Term).unwrap_err();
        assert!(matches!(e, Error::Zombie { .. }), "{e}");
        let e = ProcessHandle::open_with(pid, false).unwrap_err();
        assert!(matches!(e, Error::Zombie { .. }), "{e}");
    }

    #[test]
    fn the_probe_agrees_with_the_kernel() {
        // Whatever runs this test (a new kernel, or the oldkernel wrapper), the choice
        // must match what pidfd_open answers, and handles must follow it.
        let works = sys::pidfd_open(std::process::id() as i32).is_ok();
        assert_eq!(pidfd_available(), works);
        let (_g, pid) = sleeper();
        assert_eq!(ProcessHandle::open(pid).unwrap().has_pidfd(), works);
        assert_eq!(require_pidfd().is_ok(), works);
    }

    #[test]
    fn refusal_names_the_kernel_needed() {
        let old = PidfdSupport::Unavailable {
            call: "pidfd_open",
            reason: "Function not implemented (os error 38)".into(),
            kernel: "4.18.0-553.el8_10.x86_64".into(),
        };
        let text = old.unavailable_reason().unwrap();
        assert!(text.starts_with("pidfd_open is not available ("), "{text}");
        assert!(
            text.contains(
                "Linux 5.3 or later needed; this kernel is 4.18.0-553.el8_10.x86_64 from uname"
            ),
            "{text}"
        );
        assert!(!text.contains("seccomp"), "{text}");
        let filtered = PidfdSupport::Unavailable {
            call: "pidfd_send_signal",
            reason: "Operation not permitted (os error 1)".into(),
            kernel: "6.1.0-18-amd64".into(),
        };
        assert!(filtered.unavailable_reason().unwrap().contains("seccomp"));
        assert_eq!(PidfdSupport::Available.unavailable_reason(), None);
        let e = Error::PidfdRequired { detail: text };
        assert!(
            e.to_string()
                .ends_with("refusing because --require-pidfd (require_pidfd) was given"),
            "{e}"
        );
    }

    #[test]
    fn kernel_versions_compare() {
        assert!(!kernel_at_least("4.18.0-553.el8_10.x86_64", 5, 3));
        assert!(!kernel_at_least("5.2.21", 5, 3));
        assert!(kernel_at_least("5.3.0", 5, 3));
        assert!(kernel_at_least("6.18.44-fc-v1045", 5, 3));
        assert!(!kernel_at_least("unknown", 5, 3));
    }
}
