//! Reading processes from `/proc`: who they are (start time, executable, title),
//! who their parent and children are, and which signals they catch.
//!
//! Everything here is a snapshot that may be stale the moment it is returned; the
//! identity-pinning and the decisions belong to `process` and the model. A process
//! that vanishes while it is read is reported as `Error::ProcessGone`.

use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::Error;
use crate::pid::Pid;
use crate::signal::SignalSet;
use crate::sys;

mod creds;
mod net;
pub(crate) use creds::Credentials;
pub(crate) use net::{socket_holder, tcp_socket_inode};
mod sockets;
pub(crate) use sockets::listeners_only_in;

/// The suffix the kernel appends to `/proc/<pid>/exe` when the file was unlinked or
/// replaced (as a binary swap does to the old master's executable).
const DELETED_SUFFIX: &str = " (deleted)";

/// The fields of `/proc/<pid>/stat` that we use. Cheap to read (one small file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcStat {
    /// The process.
    pub pid: Pid,
    /// The command name (`comm`, at most 15 bytes, may contain spaces and parentheses).
    pub comm: String,
    /// State letter: `R`, `S`, `D`, `Z` (zombie), `T`, ...
    pub state: char,
    /// Parent pid (0 for processes whose parent is outside our pid namespace).
    pub ppid: i32,
    /// Process group id.
    pub pgid: i32,
    /// Session id.
    pub sid: i32,
    /// Start time in clock ticks since boot (field 22): with the pid, the process's identity.
    pub start_time: u64,
}

impl ProcStat {
    /// Whether the process has exited but was not reaped.
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }
}

/// A snapshot of one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    /// The process.
    pub pid: Pid,
    /// Parent pid (0 when the parent is outside our pid namespace).
    pub ppid: i32,
    /// State letter: `R`, `S`, `D`, `Z` (zombie), `T`, ...
    pub state: char,
    /// Start time in clock ticks since boot (with the pid, the identity of the process).
    pub start_time: u64,
    /// Real user id.
    pub uid: u32,
    /// The executable, as `/proc/<pid>/exe` names it, without the kernel's " (deleted)"
    /// suffix; `None` for kernel threads, zombies, or when it cannot be read.
    pub exe: Option<PathBuf>,
    /// True when the executable file was unlinked or replaced since the process
    /// started it (the kernel's " (deleted)" suffix); `exe` is then the path it had.
    pub exe_deleted: bool,
    /// The command line (as the process may have rewritten it: nginx puts its title there).
    pub cmdline: Vec<String>,
    /// `cmdline` joined by spaces, e.g. "nginx: master process /usr/sbin/nginx";
    /// `[comm]` when the command line is empty (kernel threads, zombies).
    pub title: String,
    /// Signals the process has a handler for (`SigCgt`).
    pub caught: SignalSet,
    /// Signals the process ignores (`SigIgn`).
    pub ignored: SignalSet,
    /// The command name (`comm`).
    pub comm: String,
    /// Process group id.
    pub pgid: i32,
    /// Session id.
    pub sid: i32,
}

impl ProcInfo {
    /// Whether the process has exited but was not reaped.
    pub fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }

    /// The executable path exactly as the kernel reports it (with " (deleted)" when set).
    pub fn exe_raw(&self) -> Option<PathBuf> {
        let exe = self.exe.as_ref()?;
        if self.exe_deleted {
            let mut s = exe.clone().into_os_string();
            s.push(DELETED_SUFFIX);
            Some(PathBuf::from(s))
        } else {
            Some(exe.clone())
        }
    }
}

pub(super) fn proc_path(pid: Pid, file: &str) -> PathBuf {
    PathBuf::from(format!("/proc/{pid}/{file}"))
}

/// Maps an error reading `/proc/<pid>/...` to `ProcessGone` when the process vanished.
pub(super) fn read_error(pid: Pid, path: PathBuf, e: io::Error) -> Error {
    // ENOENT: the directory is gone; ESRCH: the process died while the file was open.
    if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) {
        Error::ProcessGone { pid }
    } else {
        Error::ProcRead {
            pid: pid.get(),
            path,
            source: e,
        }
    }
}

/// Parses the content of `/proc/<pid>/stat`.
///
/// `comm` may contain spaces and parentheses (a process can name itself `a) b (`),
/// so the fields are split at the *last* `)`.
pub fn parse_stat(pid: Pid, content: &str) -> Result<ProcStat, Error> {
    let bad = |detail: &str| Error::ProcParse {
        pid: pid.get(),
        path: proc_path(pid, "stat"),
        detail: detail.to_string(),
    };
    let open = content
        .find('(')
        .ok_or_else(|| bad("no `(` before the command name"))?;
    let close = content
        .rfind(')')
        .ok_or_else(|| bad("no `)` after the command name"))?;
    if close < open {
        return Err(bad("`)` before `(`"));
    }
    let comm = content[open + 1..close].to_string();
    // Fields after the command name; index 0 is field 3 (state).
    let rest: Vec<&str> = content[close + 1..].split_ascii_whitespace().collect();
    let field = |n: usize| -> Result<&str, Error> {
        rest.get(n - 3)
            .copied()
            .ok_or_else(|| bad(&format!("only {} fields", rest.len() + 2)))
    };
    let state = field(3)?
        .chars()
        .next()
        .ok_or_else(|| bad("empty state field"))?;
    let int = |n: usize| -> Result<i32, Error> {
        field(n)?
            .parse::<i32>()
            .map_err(|_| bad(&format!("field {n} is not a number")))
    };
    let start_time = field(22)?
        .parse::<u64>()
        .map_err(|_| bad("field 22 (start time) is not a number"))?;
    Ok(ProcStat {
        pid,
        comm,
        state,
        ppid: int(4)?,
        pgid: int(5)?,
        sid: int(6)?,
        start_time,
    })
}

/// Reads `/proc/<pid>/stat`: the cheap way to learn state, parent and start time.
pub fn proc_stat(pid: Pid) -> Result<ProcStat, Error> {
    let path = proc_path(pid, "stat");
    let content = fs::read(&path).map_err(|e| read_error(pid, path.clone(), e))?;
    parse_stat(pid, &String::from_utf8_lossy(&content))
}

/// The parts of `/proc/<pid>/status` that we use.
struct Status {
    uid: u32,
    caught: SignalSet,
    ignored: SignalSet,
}

fn parse_status(pid: Pid, content: &str) -> Result<Status, Error> {
    let bad = |detail: &str| Error::ProcParse {
        pid: pid.get(),
        path: proc_path(pid, "status"),
        detail: detail.to_string(),
    };
    let mut uid = None;
    let mut caught = None;
    let mut ignored = None;
    for line in content.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        match key {
            // "Uid: real effective saved fs": the real uid decides whose process it is.
            "Uid" => {
                uid = value
                    .split_ascii_whitespace()
                    .next()
                    .and_then(|v| v.parse::<u32>().ok())
            }
            "SigCgt" => caught = SignalSet::from_hex(value),
            "SigIgn" => ignored = SignalSet::from_hex(value),
            _ => {}
        }
    }
    Ok(Status {
        uid: uid.ok_or_else(|| bad("no readable `Uid:` line"))?,
        caught: caught.ok_or_else(|| bad("no readable `SigCgt:` line"))?,
        ignored: ignored.ok_or_else(|| bad("no readable `SigIgn:` line"))?,
    })
}

/// Splits `/proc/<pid>/cmdline` at NULs, dropping the padding NULs that a process
/// leaves when it rewrites its title into a shorter string.
fn parse_cmdline(bytes: &[u8]) -> Vec<String> {
    let mut args: Vec<String> = bytes
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    while args.last().is_some_and(|a| a.is_empty()) {
        args.pop();
    }
    args
}

/// Reads `/proc/<pid>/exe`, returning (path without the deleted suffix, deleted).
pub(crate) fn read_exe(pid: Pid) -> (Option<PathBuf>, bool) {
    let link = proc_path(pid, "exe");
    // Kernel threads and zombies have no executable (ENOENT); we may also lack
    // permission. Neither is an error for a snapshot.
    let Ok(raw) = fs::read_link(&link) else {
        return (None, false);
    };
    let bytes = raw.into_os_string().into_vec();
    let suffix = DELETED_SUFFIX.as_bytes();
    if bytes.ends_with(suffix) {
        let raw_path = PathBuf::from(OsString::from_vec(bytes.clone()));
        // A file may really be named "x (deleted)": it is only the kernel's marker
        // when the path does not lead to the very file the process runs.
        let really_named_so = match (fs::metadata(&raw_path), fs::metadata(&link)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if !really_named_so {
            let stripped = bytes[..bytes.len() - suffix.len()].to_vec();
            return (Some(PathBuf::from(OsString::from_vec(stripped))), true);
        }
        return (Some(raw_path), false);
    }
    (Some(PathBuf::from(OsString::from_vec(bytes))), false)
}

/// Reads a snapshot of process `pid`.
///
/// The stat is read first and again at the end: if the start time changed, the pid
/// was reused while we were reading and the snapshot would mix two processes, so
/// `ProcessGone` is returned for the original.
pub fn proc_info(pid: Pid) -> Result<ProcInfo, Error> {
    let stat = proc_stat(pid)?;
    let status_path = proc_path(pid, "status");
    let status_text =
        fs::read_to_string(&status_path).map_err(|e| read_error(pid, status_path, e))?;
    let status = parse_status(pid, &status_text)?;
    let cmdline_path = proc_path(pid, "cmdline");
    let cmdline_bytes = fs::read(&cmdline_path).map_err(|e| read_error(pid, cmdline_path, e))?;
    let cmdline = parse_cmdline(&cmdline_bytes);
    let (exe, exe_deleted) = read_exe(pid);
    let again = proc_stat(pid)?;
    if again.start_time != stat.start_time {
        return Err(Error::ProcessGone { pid });
    }
    let title = if cmdline.is_empty() {
        format!("[{}]", stat.comm)
    } else {
        cmdline.join(" ")
    };
    Ok(ProcInfo {
        pid,
        ppid: stat.ppid,
        // The later read: a process that became a zombie meanwhile is reported as one.
        state: again.state,
        start_time: stat.start_time,
        uid: status.uid,
        exe,
        exe_deleted,
        cmdline,
        title,
        caught: status.caught,
        ignored: status.ignored,
        comm: stat.comm,
        pgid: stat.pgid,
        sid: stat.sid,
    })
}

/// Whether the kernel offers `/proc/<pid>/task/<tid>/children` (Linux 3.5+, with
/// CONFIG_PROC_CHILDREN). Asked of our main thread (its tid is our pid) rather than of
/// `/proc/thread-self`, which only Linux 3.17+ has.
fn kernel_lists_children() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| {
        let me = std::process::id();
        Path::new(&format!("/proc/{me}/task/{me}/children")).exists()
    })
}

/// The pids of the children of `pid`, sorted.
///
/// Uses `/proc/<pid>/task/*/children`, which costs one read per thread of the
/// parent, however many processes the machine runs. Kernels built without
/// CONFIG_PROC_CHILDREN lack those files; there the parent link of every process
/// has to be read (one small `stat` read per process).
pub fn child_pids(pid: Pid) -> Result<Vec<Pid>, Error> {
    child_pids_using(pid, kernel_lists_children())
}

/// [`child_pids`] with the method chosen by the caller (tests compare the two).
pub(crate) fn child_pids_using(pid: Pid, from_tasks: bool) -> Result<Vec<Pid>, Error> {
    let mut pids = if from_tasks {
        child_pids_from_tasks(pid)?
    } else {
        child_pids_by_scan(pid)?
    };
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

fn child_pids_from_tasks(pid: Pid) -> Result<Vec<Pid>, Error> {
    let task_dir = proc_path(pid, "task");
    let entries = fs::read_dir(&task_dir).map_err(|e| read_error(pid, task_dir.clone(), e))?;
    let mut pids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| read_error(pid, task_dir.clone(), e))?;
        let path = entry.path().join("children");
        let content = match fs::read_to_string(&path) {
            Ok(c) => c,
            // A thread that exited between the listing and the read has no children left.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(read_error(pid, path, e)),
        };
        for word in content.split_ascii_whitespace() {
            if let Ok(child) = word.parse::<Pid>() {
                pids.push(child);
            }
        }
    }
    Ok(pids)
}

fn child_pids_by_scan(pid: Pid) -> Result<Vec<Pid>, Error> {
    // Make "the parent is gone" an error, as the task-based listing does.
    proc_stat(pid)?;
    let mut pids = Vec::new();
    for candidate in all_pids()? {
        match proc_stat(candidate) {
            Ok(stat) if stat.ppid == pid.get() => pids.push(candidate),
            Ok(_) | Err(Error::ProcessGone { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(pids)
}

/// Snapshots of the children of `pid` (zombie children included: check `state`).
///
/// Children that exit while they are read are left out; each returned child was
/// verified to still have `pid` as its parent when it was read.
pub fn children(pid: Pid) -> Result<Vec<ProcInfo>, Error> {
    let mut out = Vec::new();
    for child in child_pids(pid)? {
        match proc_info(child) {
            Ok(info) if info.ppid == pid.get() => out.push(info),
            Ok(_) | Err(Error::ProcessGone { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// A child as the model needs it to tell roles apart: what one `stat` read gives, plus
/// the title. The cheap counterpart of [`ProcInfo`] (no `status`, no `exe`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChildProc {
    pub(crate) pid: Pid,
    pub(crate) ppid: i32,
    /// State letter; `Z` for a zombie (exited, not reaped: treated as exited).
    pub(crate) state: char,
    pub(crate) start_time: u64,
    pub(crate) comm: String,
    /// The command line joined by spaces, or `[comm]` when empty (zombies).
    pub(crate) title: String,
}

impl ChildProc {
    pub(crate) fn is_zombie(&self) -> bool {
        self.state == 'Z'
    }
}

/// Reads `name` under an open `/proc/<pid>` directory into `buf` (cleared first).
///
/// Through the directory's descriptor, not a path: once the process it was opened for
/// has exited, the kernel refuses (ENOENT/ESRCH) even if its pid names another process
/// by now, so every file read through it belongs to the same process.
fn read_at(dir: &fs::File, name: &std::ffi::CStr, buf: &mut Vec<u8>) -> io::Result<()> {
    use std::io::Read;
    use std::os::fd::{AsRawFd, FromRawFd};
    // SAFETY: `dir` is an open directory and `name` a NUL-terminated relative path.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    let mut file = unsafe { fs::File::from_raw_fd(fd) };
    buf.clear();
    // Not `read_to_end` on an unknown size: /proc files report size 0. `stat` and
    // `cmdline` hand out what they have in one read; a read that does not fill the
    // buffer is their end, so the usual one read per file does (no second read for EOF).
    let mut chunk = [0u8; 1024];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) if n < chunk.len() => {
                buf.extend_from_slice(&chunk[..n]);
                return Ok(());
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// One child of `parent` from two reads (`stat`, `cmdline`) through one directory
/// descriptor: `Ok(None)` when it exited meanwhile or is no longer `parent`'s child.
fn child_proc(parent: Pid, pid: Pid, buf: &mut Vec<u8>) -> Result<Option<ChildProc>, Error> {
    let dir_path = PathBuf::from(format!("/proc/{pid}"));
    let gone = |e: io::Error, path: PathBuf| match read_error(pid, path, e) {
        Error::ProcessGone { .. } => Ok(None),
        e => Err(e),
    };
    let dir = match fs::File::open(&dir_path) {
        Ok(d) => d,
        Err(e) => return gone(e, dir_path),
    };
    if let Err(e) = read_at(&dir, c"stat", buf) {
        return gone(e, proc_path(pid, "stat"));
    }
    let stat = parse_stat(pid, &String::from_utf8_lossy(buf))?;
    if stat.ppid != parent.get() {
        return Ok(None);
    }
    let title = if stat.is_zombie() {
        // A zombie has no command line left; no need to ask.
        format!("[{}]", stat.comm)
    } else {
        if let Err(e) = read_at(&dir, c"cmdline", buf) {
            return gone(e, proc_path(pid, "cmdline"));
        }
        let args = parse_cmdline(buf);
        if args.is_empty() {
            format!("[{}]", stat.comm)
        } else {
            args.join(" ")
        }
    };
    Ok(Some(ChildProc {
        pid,
        ppid: stat.ppid,
        state: stat.state,
        start_time: stat.start_time,
        comm: stat.comm,
        title,
    }))
}

/// The children of `pid` as the model needs them (zombies included: check `state`),
/// from one listing and two small reads per child, sorted by pid.
///
/// Children that exit while they are read are left out; each returned child had `pid`
/// as its parent when its `stat` was read.
pub(crate) fn child_procs(pid: Pid) -> Result<Vec<ChildProc>, Error> {
    child_procs_from(pid, child_pids(pid)?)
}

fn child_procs_from(pid: Pid, pids: Vec<Pid>) -> Result<Vec<ChildProc>, Error> {
    let mut buf = Vec::with_capacity(1024);
    let mut out = Vec::with_capacity(pids.len());
    for child in pids {
        if let Some(c) = child_proc(pid, child, &mut buf)? {
            out.push(c);
        }
    }
    Ok(out)
}

/// Every process id under `/proc` (a full scan: only for discovery by executable).
pub fn all_pids() -> Result<Vec<Pid>, Error> {
    let dir = Path::new("/proc");
    let entries = fs::read_dir(dir).map_err(|e| Error::ProcScan {
        path: dir.to_path_buf(),
        source: e,
    })?;
    let mut pids = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::ProcScan {
            path: dir.to_path_buf(),
            source: e,
        })?;
        if let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<Pid>().ok())
        {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    Ok(pids)
}

/// Whether process `pid` runs the very file at `path` (same device and inode).
///
/// This is the reliable comparison after a binary swap: the old master's
/// `/proc/<pid>/exe` still opens the old (renamed-over) inode, the new master's
/// opens the installed one, whatever the path strings say.
pub fn runs_file(pid: Pid, path: &Path) -> Result<bool, Error> {
    let exe = proc_path(pid, "exe");
    let running = match fs::metadata(&exe) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Either the process is gone or it has no executable (zombie, kernel thread).
            proc_stat(pid)?;
            return Ok(false);
        }
        Err(e) => return Err(read_error(pid, exe, e)),
    };
    let file = fs::metadata(path).map_err(|e| Error::ReadFile {
        path: path.to_path_buf(),
        source: e,
    })?;
    Ok(running.dev() == file.dev() && running.ino() == file.ino())
}

/// Now, in the unit and from the origin of [`ProcInfo::start_time`] (clock ticks since
/// boot, from `/proc/uptime`), rounded down: a process started after this call has a
/// start time at least this.
pub(crate) fn ticks_since_boot() -> Result<u64, Error> {
    let path = Path::new("/proc/uptime");
    let content = fs::read_to_string(path).map_err(|e| Error::ReadFile {
        path: path.to_path_buf(),
        source: e,
    })?;
    let secs = content
        .split_ascii_whitespace()
        .next()
        .and_then(|v| v.parse::<f64>().ok())
        .ok_or_else(|| Error::ParseFile {
            path: path.to_path_buf(),
            detail: "no readable uptime".to_string(),
        })?;
    // One tick of slack: uptime and start times are rounded separately.
    Ok(((secs * sys::clock_ticks_per_second() as f64) as u64).saturating_sub(1))
}

/// The boot time of the machine (`btime` of `/proc/stat`).
pub fn boot_time() -> Result<SystemTime, Error> {
    let path = Path::new("/proc/stat");
    let content = fs::read_to_string(path).map_err(|e| Error::ReadFile {
        path: path.to_path_buf(),
        source: e,
    })?;
    let secs = content
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse::<u64>().ok())
        .ok_or_else(|| Error::ParseFile {
            path: path.to_path_buf(),
            detail: "no readable `btime` line".to_string(),
        })?;
    Ok(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Converts a start time (clock ticks since boot, as in [`ProcInfo::start_time`])
/// to wall-clock time: `btime + ticks / CLK_TCK`.
///
/// Accurate to about a second (btime is whole seconds); use it for display, never
/// for identity: compare the raw ticks for that.
pub fn start_time_to_system_time(start_time: u64) -> Result<SystemTime, Error> {
    let ticks_per_second = sys::clock_ticks_per_second();
    let since_boot = Duration::from_secs(start_time / ticks_per_second)
        + Duration::from_nanos((start_time % ticks_per_second) * 1_000_000_000 / ticks_per_second);
    // Read once per process: `/proc/stat` lists every CPU and interrupt, costlier than the
    // rest of an observation, and btime only moves when the clock is stepped (display only).
    static BOOT: OnceLock<SystemTime> = OnceLock::new();
    let boot = match BOOT.get() {
        Some(b) => *b,
        // Only a successful read is kept; a failure is returned and tried again next time.
        None => {
            let read = boot_time()?;
            *BOOT.get_or_init(|| read)
        }
    };
    Ok(boot + since_boot)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(n: i32) -> Pid {
        Pid::try_from(n).unwrap()
    }

    #[test]
    fn stat_with_parens_and_spaces_in_comm() {
        let line =
            "4242 (a) b (c ) S 17 4242 4242 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1 2 3";
        let s = parse_stat(pid(4242), line).unwrap();
        assert_eq!(s.comm, "a) b (c ");
        assert_eq!(s.state, 'S');
        assert_eq!(s.ppid, 17);
        assert_eq!(s.pgid, 4242);
        assert_eq!(s.start_time, 987654);
    }

    #[test]
    fn stat_truncated_is_an_error() {
        assert!(parse_stat(pid(5), "5 (x) S 1 2 3").is_err());
        assert!(parse_stat(pid(5), "garbage").is_err());
    }

    #[test]
    fn cmdline_padding_is_dropped() {
        assert_eq!(
            parse_cmdline(b"nginx: master process /usr/sbin/nginx\0\0\0\0"),
            vec!["nginx: master process /usr/sbin/nginx"]
        );
        assert_eq!(parse_cmdline(b"a\0b c\0"), vec!["a", "b c"]);
        assert!(parse_cmdline(b"").is_empty());
    }

    #[test]
    fn status_fields() {
        let text =
            "Name:\tx\nUid:\t1000\t0\t0\t0\nSigIgn:\t0000000000001000\nSigCgt:\t0000000000000800\n";
        let s = parse_status(pid(9), text).unwrap();
        assert_eq!(s.uid, 1000);
        assert!(s.caught.contains(crate::signal::Signal::Usr2));
        assert!(s.ignored.contains(crate::signal::Signal::Pipe));
    }

    #[test]
    fn own_process_info() {
        let me = Pid::this_process().unwrap();
        let info = proc_info(me).unwrap();
        assert_eq!(info.pid, me);
        assert_eq!(
            info.exe.as_deref(),
            Some(std::env::current_exe().unwrap().as_path())
        );
        assert!(!info.exe_deleted);
        assert!(info.start_time > 0);
        assert!(runs_file(me, &std::env::current_exe().unwrap()).unwrap());
        let started = start_time_to_system_time(info.start_time).unwrap();
        let age = SystemTime::now()
            .duration_since(started)
            .unwrap_or_default();
        assert!(age < Duration::from_secs(3600), "{age:?}");
    }
}
