//! Small /proc, signal, pidfd and rusage helpers for the benchmark (Linux only).
//! Everything reads the live process table; nothing here keeps state.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

/// One process as /proc shows it.
#[derive(Debug, Clone)]
pub struct Proc {
    pub pid: i32,
    pub sid: i32,
    pub state: char,
}

pub fn proc_stat(pid: i32) -> Option<Proc> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(Proc {
        pid,
        state: f.first()?.chars().next()?,
        sid: f.get(3)?.parse().ok()?,
    })
}

/// Gone or a zombie (PID 1 here reaps orphans lazily).
pub fn exited(pid: i32) -> bool {
    !matches!(proc_stat(pid), Some(p) if p.state != 'Z' && p.state != 'X')
}

/// The cmdline with trailing NULs trimmed (nginx pads its titles).
pub fn title(pid: i32) -> String {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let end = raw.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    String::from_utf8_lossy(&raw[..end]).replace('\0', " ")
}

/// Live children of `pid`, from /proc/<pid>/task/*/children (no full /proc scan).
pub fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
            }
        }
    }
    out.retain(|&p| !exited(p));
    out
}

/// Live worker processes of `master` (by nginx's worker title).
pub fn workers_of(master: i32) -> Vec<i32> {
    children(master)
        .into_iter()
        .filter(|&p| title(p).starts_with("nginx: worker process"))
        .collect()
}

/// True when process `pid` executes exactly the bytes of `build`.
pub fn exe_is(pid: i32, build: &Path) -> bool {
    match (fs::read(format!("/proc/{pid}/exe")), fs::read(build)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// The pid in a pid file (`"<pid>\n"`), if it holds one.
pub fn read_pid(path: &Path) -> Option<i32> {
    let s = fs::read_to_string(path).ok()?;
    s.trim_end_matches('\n')
        .parse()
        .ok()
        .filter(|&p: &i32| p > 1)
}

/// Every pid in /proc.
pub fn all_pids() -> Vec<i32> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

pub fn kill(pid: i32, sig: i32) -> Result<(), String> {
    if pid <= 1 {
        return Err(format!("refusing to signal pid {pid}"));
    }
    // SAFETY: plain kill(2) on a pid > 1.
    let r = unsafe { libc::kill(pid, sig) };
    if r == 0 {
        Ok(())
    } else {
        Err(format!(
            "kill({pid}, {sig}): {}",
            std::io::Error::last_os_error()
        ))
    }
}

/// A pidfd: readable once the process has exited (zombie or reaped).
pub struct PidFd(i32);

impl PidFd {
    pub fn open(pid: i32) -> Result<PidFd, String> {
        // SAFETY: pidfd_open(2) with flags 0; the result is checked.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(format!(
                "pidfd_open({pid}): {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok(PidFd(fd as i32))
    }

    /// Blocks until the process exits or `deadline`; the instant it was seen exiting.
    pub fn wait(&self, deadline: Instant) -> Option<Instant> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let mut p = libc::pollfd {
                fd: self.0,
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().min(i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd.
            let r = unsafe { libc::poll(&mut p, 1, ms) };
            if r > 0 {
                return Some(Instant::now());
            }
            if r == 0 || Instant::now() >= deadline {
                return None;
            }
        }
    }
}

impl Drop for PidFd {
    fn drop(&mut self) {
        // SAFETY: we own this fd.
        unsafe { libc::close(self.0) };
    }
}

/// Waits for our child `pid` and returns (exit code or -signal, user+sys CPU of the
/// child and of every descendant it waited for).
pub fn wait_child(pid: i32) -> (i32, Duration) {
    let mut status = 0;
    // SAFETY: zeroed rusage is a valid out-parameter.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4 on our own child with valid out-pointers.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return (-999, Duration::ZERO);
        }
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let cpu = tv(ru.ru_utime) + tv(ru.ru_stime);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    (code, cpu)
}

/// Polls `cond` with a short backing-off pause until it holds or `timeout` passes.
pub fn wait_for(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(500);
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}
