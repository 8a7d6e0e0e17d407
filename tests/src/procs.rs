//! Every `/proc` reading of the tests, in one place: a process's state, parent, group,
//! session and title, its children, the whole process table, pid files; and killing a
//! session. A zombie counts as exited (PID 1 of the test machines may never reap it).

use std::fs;
use std::path::Path;

/// The fields of `/proc/<pid>/stat` the tests look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    /// `R`, `S`, `Z`, …
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    /// Clock ticks after boot: with the pid, names one process for good.
    pub start_time: u64,
}

/// `/proc/<pid>/stat`, `None` when there is no such process.
pub fn stat(pid: i32) -> Option<Stat> {
    if pid <= 0 {
        return None;
    }
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let rest: Vec<&str> = text
        .get(text.rfind(')')? + 2..)?
        .split_whitespace()
        .collect();
    Some(Stat {
        pid,
        state: rest.first()?.chars().next()?,
        ppid: rest.get(1)?.parse().ok()?,
        pgrp: rest.get(2)?.parse().ok()?,
        session: rest.get(3)?.parse().ok()?,
        start_time: rest.get(19)?.parse().ok()?,
    })
}

/// Alive: exists and is neither a zombie nor dead.
pub fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|s| !matches!(s.state, 'Z' | 'X'))
}

/// Parent pid.
pub fn parent_of(pid: i32) -> Option<i32> {
    stat(pid).map(|s| s.ppid)
}

/// Session id, `None` once the process is gone.
pub fn session_of(pid: i32) -> Option<i32> {
    stat(pid).map(|s| s.session)
}

/// Process group id.
pub fn pgrp_of(pid: i32) -> Option<i32> {
    stat(pid).map(|s| s.pgrp)
}

/// The process title as `ps` shows it (cmdline, NULs as spaces, trimmed).
pub fn title_of(pid: i32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        String::from_utf8_lossy(&raw)
            .replace('\0', " ")
            .trim_end()
            .to_owned(),
    )
}

/// Every pid in `/proc`, sorted.
pub fn all_pids() -> Vec<i32> {
    let mut pids: Vec<i32> = fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

/// Live (non-zombie) children of `pid`, sorted.
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out: Vec<i32> = Vec::new();
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(list) = fs::read_to_string(task.path().join("children")) {
                out.extend(
                    list.split_whitespace()
                        .filter_map(|p| p.parse::<i32>().ok()),
                );
            }
        }
    }
    out.retain(|&p| alive(p));
    out.sort_unstable();
    out.dedup();
    out
}

/// Live children of `master` titled as nginx workers (`nginx: worker process`, also
/// `… is shutting down`).
pub fn workers_of(master: i32) -> Vec<i32> {
    children_of(master)
        .into_iter()
        .filter(|&p| title_of(p).is_some_and(|t| t.starts_with("nginx: worker process")))
        .collect()
}

/// A pid file as a server writes it: `"<pid>\n"` (whitespace tolerated), `None` when it
/// is missing or holds anything else.
pub fn read_pid(path: &Path) -> Option<i32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// A pid file strictly as nginx writes it: exactly `"<pid>\n"`.
pub fn read_pid_strict(path: &Path) -> Option<i32> {
    fake_nginx::harness::read_pid_file(path)
}

/// Sends `signal` to `pid`.
pub fn signal(pid: i32, signal: nix::sys::signal::Signal) -> nix::Result<()> {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
}

/// SIGKILLs every process of session `sid`: a daemonized server and everything it
/// started (new masters, workers, orphaned workers of a killed master) share it. Never
/// session 0 or 1, and never the test's own session.
pub fn kill_session(sid: i32) {
    if sid <= 1 || Some(sid) == session_of(std::process::id() as i32) {
        return;
    }
    for pid in all_pids() {
        if session_of(pid) == Some(sid) {
            let _ = signal(pid, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// One line per live process, `pid ppid pgrp sid state title`, indented under its
/// parent, for failure messages.
pub fn tree(pids: &[i32]) -> String {
    let mut out = String::new();
    let stats: Vec<Stat> = pids.iter().filter_map(|&p| stat(p)).collect();
    let roots: Vec<&Stat> = stats
        .iter()
        .filter(|s| !stats.iter().any(|o| o.pid == s.ppid))
        .collect();
    fn walk(out: &mut String, all: &[Stat], s: &Stat, depth: usize) {
        out.push_str(&format!(
            "  {:indent$}{} (ppid {}, pgrp {}, sid {}, {}) {}\n",
            "",
            s.pid,
            s.ppid,
            s.pgrp,
            s.session,
            s.state,
            title_of(s.pid).unwrap_or_default(),
            indent = depth * 2
        ));
        for child in all.iter().filter(|c| c.ppid == s.pid) {
            walk(out, all, child, depth + 1);
        }
    }
    for root in roots {
        walk(&mut out, &stats, root, 0);
    }
    if out.is_empty() {
        out.push_str("  (no process)\n");
    }
    out
}

/// The last `n` lines of a text file (empty when unreadable).
pub fn tail(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("  {l}\n"))
        .collect()
}
