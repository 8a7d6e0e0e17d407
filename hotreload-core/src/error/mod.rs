//! The crate's error type.
//!
//! Every variant names the process id or the path it is about, and carries the
//! underlying `#[source]` when there is one, so that a caller printing the chain
//! (`{:#}` with anyhow, or walking `source()`) gets messages in cargo's style:
//! "failed to read pid file `/run/nginx.pid`: Permission denied (os error 13)".
//!
//! The enum is `#[non_exhaustive]` and append-only: variants of the low-level
//! modules come first, the high-level modules (model, operations, pipeline) add
//! theirs at the end. Never reorder or remove a variant.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::pid::Pid;
use crate::signal::Signal;

mod pid_file;
pub use pid_file::PidFileProblem;

/// Everything that can go wrong in `hotreload-core`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Bad input: a pid, a signal, a swap name or a URL that could not be parsed.
    #[error(transparent)]
    Parse(#[from] ParseError),

    /// A pid file exists (or should) but its content or its permissions are not acceptable.
    #[error("invalid pid file `{}`: {problem}", path.display())]
    PidFile {
        /// The pid file.
        path: PathBuf,
        /// What exactly is wrong, and what to do about it.
        problem: PidFileProblem,
    },

    /// A pid file could not be read for an operating-system reason.
    #[error("failed to read pid file `{}`", path.display())]
    ReadPidFile {
        /// The pid file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A file under `/proc` of a live process could not be read.
    #[error("failed to read `{}` of process {pid}", path.display())]
    ProcRead {
        /// The process whose entry was read.
        pid: i32,
        /// The `/proc` file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A file under `/proc` had content we could not make sense of.
    #[error("failed to parse `{}` of process {pid}: {detail}", path.display())]
    ProcParse {
        /// The process whose entry was read.
        pid: i32,
        /// The `/proc` file.
        path: PathBuf,
        /// What was unexpected.
        detail: String,
    },

    /// The process no longer exists (or has exited and been reaped).
    #[error("process {pid} has exited")]
    ProcessGone {
        /// The process that is gone.
        pid: Pid,
    },

    /// The process has exited but was not reaped: it can no longer act on a signal.
    #[error("process {pid} is a zombie: it has exited but its parent has not reaped it")]
    Zombie {
        /// The zombie.
        pid: Pid,
    },

    /// The pid now names a different process than the one that was discovered.
    #[error(
        "process {pid} is not the process that was discovered (start time {found} instead of \
         {expected}): the pid was reused after the original process exited"
    )]
    ProcessReplaced {
        /// The reused pid.
        pid: Pid,
        /// Start time (clock ticks since boot) pinned at discovery.
        expected: u64,
        /// Start time of the process that holds the pid now.
        found: u64,
    },

    /// `pidfd_open` failed for a reason other than the process being gone.
    #[error("failed to open a pidfd for process {pid}")]
    Pidfd {
        /// The process.
        pid: Pid,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Sending a signal failed.
    #[error("failed to send {signal} to process {pid}")]
    SendSignal {
        /// The process.
        pid: Pid,
        /// The signal that was not sent.
        signal: Signal,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Waiting for a process to exit failed (not a timeout: timeouts are outcomes).
    #[error("failed to wait for process {pid} to exit")]
    Wait {
        /// The process.
        pid: Pid,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// Another hotreload holds the lock of this target.
    #[error("`{}` is locked by another hotreload ({holder}); wait for it to finish", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Who holds it, as the holder wrote it (pid, command, since when).
        holder: String,
    },

    /// The lock file could not be created, locked or written.
    #[error("failed to lock `{}`", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A file-system operation of a binary swap failed.
    #[error("failed to {action} `{}`", path.display())]
    SwapIo {
        /// What was being done, e.g. "rename staged binary over".
        action: &'static str,
        /// The path acted on.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A binary swap was refused before anything was changed, or cannot be restored.
    #[error("cannot swap `{}`: {problem}", path.display())]
    Swap {
        /// The binary (or backup) path.
        path: PathBuf,
        /// What is wrong and what to do.
        problem: String,
    },

    /// A persisted swap record could not be parsed.
    #[error("invalid swap record (binary `{}`): {problem}", binary.display())]
    SwapRecord {
        /// The binary named by the record, when it could be read (empty otherwise).
        binary: PathBuf,
        /// What is wrong.
        problem: String,
    },

    /// Discovery by executable path found no master process.
    #[error(
        "no running master process found for executable `{}`{}",
        exe.display(),
        if *unprivileged { "; not running as root, so other users' processes could not be inspected" } else { "" }
    )]
    NoMasterFound {
        /// The executable searched for.
        exe: PathBuf,
        /// Whether the scan ran without root, so other users' processes were not seen.
        unprivileged: bool,
    },

    /// Discovery by executable path found more than one master process.
    #[error(
        "{} master processes run executable `{}` (pids {}): name the one to upgrade by pid file or pid",
        pids.len(), exe.display(), PidList(pids)
    )]
    AmbiguousMaster {
        /// The executable searched for.
        exe: PathBuf,
        /// Every candidate found.
        pids: Vec<Pid>,
    },

    /// Listing `/proc` failed.
    #[error("failed to list `{}`", path.display())]
    ProcScan {
        /// The directory that was listed.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A system file (not of one process) could not be read, e.g. `/proc/stat`.
    #[error("failed to read `{}`", path.display())]
    ReadFile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A system file had content we could not make sense of.
    #[error("failed to parse `{}`: {detail}", path.display())]
    ParseFile {
        /// The file.
        path: PathBuf,
        /// What was unexpected.
        detail: String,
    },
    // High-level variants (model, operations, pipeline) are appended below this line.
    /// An operation was asked of a target that is not in the phase it needs.
    #[error(
        "cannot {operation}: the target is {found}, not {expected}{}",
        Evidence(evidence)
    )]
    WrongPhase {
        /// The operation (`spawn a new master`).
        operation: &'static str,
        /// The phase it needs.
        expected: &'static str,
        /// The phase found.
        found: String,
        /// What was seen.
        evidence: Vec<String>,
    },

    /// A pinned process no longer plays the role it was discovered in.
    #[error("process {pid} is no longer {expected}: {found}")]
    RoleChanged {
        /// The process.
        pid: Pid,
        /// The role it had ("the master", "a child of old master 12").
        expected: String,
        /// What it is now.
        found: String,
    },

    /// The master does not catch the signal an operation needs: sending it would kill it
    /// (default action) or do nothing (ignored).
    #[error(
        "master {pid} {} {signal}: sending it would {}; refusing",
        if *ignored { "ignores" } else { "does not catch" },
        if *ignored { "do nothing" } else { "kill the master (default action)" }
    )]
    NotCatching {
        /// The master.
        pid: Pid,
        /// The signal.
        signal: Signal,
        /// True when the signal is ignored (`SigIgn`), false when it has its default action.
        ignored: bool,
    },

    /// The master did not act on the spawn signal (no old pid file appeared).
    #[error("master {pid} ignored {signal}: {reason}")]
    SpawnIgnored {
        /// The master.
        pid: Pid,
        /// The spawn signal.
        signal: Signal,
        /// Why that happens, as far as can be seen.
        reason: String,
    },

    /// The new master exited and the old master took its pid file back.
    #[error("the new master{} of master {old} exited: {detail}", new.map(|p| format!(" {p}")).unwrap_or_default())]
    NewMasterDied {
        /// The old master.
        old: Pid,
        /// The new master, when it was seen.
        new: Option<Pid>,
        /// What was seen.
        detail: String,
    },

    /// A wait passed its deadline.
    #[error("timed out after {:.1}s waiting for {what} (master {pid})", timeout.as_secs_f64())]
    Timeout {
        /// The master concerned.
        pid: Pid,
        /// What was awaited.
        what: String,
        /// The deadline, counted from the start of the wait.
        timeout: std::time::Duration,
    },

    /// Old workers were still running when the drain deadline passed.
    #[error(
        "old workers {} of master {old} still run after {:.1}s{}: wait longer, terminate them, or roll back",
        PidList(remaining), timeout.as_secs_f64(), StallText(stall, *old)
    )]
    DrainTimeout {
        /// The old master.
        old: Pid,
        /// The workers still running.
        remaining: Vec<Pid>,
        /// The drain deadline.
        timeout: std::time::Duration,
        /// Why they still run, as far as can be seen.
        stall: DrainStall,
    },

    /// The new master does not run the installed executable.
    #[error(
        "new master {pid} runs `{}`, not the installed executable `{}`",
        running.as_deref().map(|p| p.display().to_string()).unwrap_or_else(|| "an unknown file".into()),
        expected.display()
    )]
    WrongExecutable {
        /// The new master.
        pid: Pid,
        /// The installed executable.
        expected: PathBuf,
        /// What it runs, when readable.
        running: Option<PathBuf>,
    },

    /// A process did not exit after its graceful and fast stop signals.
    #[error("{role} {pid} still runs after {signals} ({:.1}s)", waited.as_secs_f64())]
    StillRunning {
        /// The process.
        pid: Pid,
        /// Its role ("old master").
        role: &'static str,
        /// The signals sent ("SIGQUIT then SIGTERM").
        signals: String,
        /// How long it was given.
        waited: std::time::Duration,
    },

    /// A preflight check failed: nothing was changed.
    #[error("preflight check `{check}` failed: {detail}")]
    Preflight {
        /// The check's name.
        check: String,
        /// What was seen and what to do.
        detail: String,
    },

    /// The new executable refused the configuration.
    #[error("config test `{}` failed ({status}){}", command, if output.is_empty() { String::new() } else { format!(":\n{output}") })]
    ConfigTest {
        /// The command line that was run.
        command: String,
        /// How it ended ("exit status: 1").
        status: String,
        /// Its standard error and output.
        output: String,
    },

    /// A command could not be started or awaited.
    #[error("failed to run `{}`", program.display())]
    RunCommand {
        /// The program.
        program: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// A health check failed.
    #[error("health check {check} failed: {detail}")]
    HealthCheck {
        /// The check, as it describes itself.
        check: String,
        /// Why it failed.
        detail: String,
    },

    /// The upgrade journal could not be written, read or removed.
    #[error("failed to {action} upgrade journal `{}`", path.display())]
    JournalIo {
        /// What was being done ("write").
        action: &'static str,
        /// The journal.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// The upgrade journal's content is not what hotreload writes.
    #[error("invalid upgrade journal `{}`: {problem}", path.display())]
    Journal {
        /// The journal.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },

    /// An upgrade journal that hotreload will not act on: not ours to trust (its owner,
    /// who else can write it) or naming files this target's swap would not (DESIGN.md §6).
    /// Nothing was restored, committed or deleted.
    #[error("not acting on upgrade journal `{}`: {problem}", path.display())]
    JournalUntrusted {
        /// The journal.
        path: PathBuf,
        /// Why it is not believed.
        problem: String,
    },

    /// hotreload's own state directory (locks, journals) cannot be used safely: it is
    /// missing and cannot be made, or someone else could write it. Nothing was changed.
    #[error("hotreload's state directory `{}` {problem}", path.display())]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong, and how to fix it.
        problem: String,
    },

    /// Pidfds were required (`require_pidfd`) and this kernel or its seccomp filter has
    /// none; nothing was changed.
    #[error("{detail}: refusing because --require-pidfd (require_pidfd) was given")]
    PidfdRequired {
        /// Which call is missing and which kernel runs, e.g. "pidfd_open is not available
        /// (...; Linux 5.3 or later needed; this kernel is 4.18.0 from uname)".
        detail: String,
    },

    /// The caller cancelled the operation (its [`CancelToken`](crate::CancelToken)).
    #[error("cancelled while {during}")]
    Cancelled {
        /// What was going on: the wait or the step that saw the cancel.
        during: String,
    },

    /// systemd could not be asked about the server's unit, or lost track of the server.
    #[error("systemd unit {unit}: {detail}")]
    Systemd {
        /// The unit (`nginx.service`).
        unit: String,
        /// What went wrong and what to do.
        detail: String,
    },

    /// Something other than hotreload acted on the server while an operation waited (a
    /// signal from elsewhere reloaded a master, another process wrote the pid file), and
    /// the operation failed with `source`: the new executable is not to blame.
    #[error("{what}")]
    Interfered {
        /// The old master.
        old: Pid,
        /// What was seen, naming the processes and files involved.
        what: String,
        /// How the operation failed.
        #[source]
        source: Box<Error>,
    },

    /// A master was found, but its pid file could not be established from evidence
    /// (its command line, its configuration), so it cannot be a [`Target`](crate::Target).
    #[error(
        "master {pid} found, but its pid file is not known: {reason}; name it with a pid file"
    )]
    PidFileUnknown {
        /// The master found.
        pid: Pid,
        /// Why the pid file is not known, or why the one found is not this master's.
        reason: String,
    },

    /// Before the drain: the old master holds listening sockets that the new master does
    /// not. The kernel keeps queueing connections on them (a member of a `reuseport`
    /// group, or an address the new configuration no longer names) and, once the old
    /// workers are gone, nobody accepts them: they wait, then are reset. Nothing was
    /// signalled; [`OpOptions::allow_orphaned_sockets`](crate::OpOptions) accepts it.
    #[error(
        "old master {old} holds {} that new master {new} does not hold: {}; once the old \
         workers go, connections the kernel queues there are never accepted (fewer workers \
         with `listen … reuseport`, or a `listen` the new configuration dropped)",
        if sockets.len() == 1 { "a listening socket" } else { "listening sockets" },
        SocketList(sockets)
    )]
    OrphanedSockets {
        /// The old master.
        old: Pid,
        /// The new master.
        new: Pid,
        /// The sockets only the old master holds.
        sockets: Vec<OrphanedSocket>,
    },
}

/// A listening socket that only the old master holds (see [`Error::OrphanedSockets`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct OrphanedSocket {
    /// Where it listens, as nginx's `listen` writes it: `127.0.0.1:8080`, `[::]:80`,
    /// `unix:/run/app.sock`.
    pub address: String,
    /// The socket's inode (what `/proc/<pid>/fd/*` links name: `socket:[INODE]`).
    pub inode: u64,
}

impl OrphanedSocket {
    /// A socket listening at `address` with inode `inode`.
    pub fn new(address: impl Into<String>, inode: u64) -> Self {
        OrphanedSocket {
            address: address.into(),
            inode,
        }
    }
}

impl fmt::Display for OrphanedSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (socket inode {})", self.address, self.inode)
    }
}

/// The sockets, comma-separated.
struct SocketList<'a>(&'a [OrphanedSocket]);

impl fmt::Display for SocketList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{s}")?;
        }
        Ok(())
    }
}

impl Error {
    /// The failure itself, under an [`Error::Interfered`] that explains it.
    pub fn without_interference(&self) -> &Error {
        match self {
            Error::Interfered { source, .. } => source.without_interference(),
            other => other,
        }
    }
}

/// Why old workers still run at the drain deadline, as far as can be seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DrainStall {
    /// None of them is shutting down: the master seems to ignore the stop signal (nginx
    /// does when it is not daemonized).
    SignalIgnored {
        /// The signal that was sent.
        signal: Signal,
    },
    /// They are shutting down, still finishing requests.
    FinishingRequests,
    /// Nothing tells.
    Unknown,
}

/// The stall as the tail of the drain timeout's message: "; ..." or nothing.
struct StallText<'a>(&'a DrainStall, Pid);

impl fmt::Display for StallText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            DrainStall::SignalIgnored { signal } => write!(
                f,
                "; none of them is shutting down: master {} seems to ignore {signal} (nginx \
                 does when it is not daemonized)",
                self.1
            ),
            DrainStall::FinishingRequests => f.write_str("; they are still finishing requests"),
            DrainStall::Unknown => Ok(()),
        }
    }
}

/// Bad input given to the library (a command line's values): what could not be parsed
/// and why. Nothing was done with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// A value that should be a process id is not one we accept.
    #[error("invalid process id `{value}`: {reason}")]
    InvalidPid {
        /// The text or number that was given.
        value: String,
        /// What exactly is wrong with it.
        reason: &'static str,
    },

    /// A signal name or number we do not know.
    #[error(
        "unknown signal `{value}`: expected a name such as QUIT or SIGQUIT, or a number such as 3"
    )]
    UnknownSignal {
        /// The text that was given.
        value: String,
    },

    /// An unknown swap strategy name.
    #[error("unknown swap strategy `{value}`: expected rename, copy, symlink or none")]
    UnknownSwapKind {
        /// The text that was given.
        value: String,
    },

    /// A health-check URL we cannot use.
    #[error("invalid health-check URL `{url}`: {problem}")]
    InvalidUrl {
        /// The URL that was given.
        url: String,
        /// What is wrong.
        problem: &'static str,
    },
}

/// Formats evidence as ": a; b" (nothing when empty).
struct Evidence<'a>(&'a [String]);

impl fmt::Display for Evidence<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.0.is_empty() {
            write!(f, ": {}", self.0.join("; "))?;
        }
        Ok(())
    }
}

/// Formats pids as "12, 34".
struct PidList<'a>(&'a [Pid]);

impl fmt::Display for PidList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, pid) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{pid}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_message_names_file_and_problem() {
        let e = Error::PidFile {
            path: PathBuf::from("/run/x.pid"),
            problem: PidFileProblem::Reserved { value: 1 },
        };
        let s = e.to_string();
        assert!(
            s.starts_with("invalid pid file `/run/x.pid`: it holds 1"),
            "{s}"
        );
    }

    #[test]
    fn orphaned_sockets_message_names_each_socket() {
        let pid = |n| Pid::new(n).unwrap();
        let one = Error::OrphanedSockets {
            old: pid(10),
            new: pid(11),
            sockets: vec![OrphanedSocket::new("127.0.0.1:8080", 42)],
        };
        assert_eq!(
            one.to_string(),
            "old master 10 holds a listening socket that new master 11 does not hold: \
             127.0.0.1:8080 (socket inode 42); once the old workers go, connections the kernel \
             queues there are never accepted (fewer workers with `listen … reuseport`, or a \
             `listen` the new configuration dropped)"
        );
        let two = Error::OrphanedSockets {
            old: pid(10),
            new: pid(11),
            sockets: vec![
                OrphanedSocket::new("127.0.0.1:8080", 42),
                OrphanedSocket::new("unix:/run/a.sock", 7),
            ],
        };
        assert!(
            two.to_string().contains(
                "holds listening sockets that new master 11 does not hold: 127.0.0.1:8080 \
                 (socket inode 42), unix:/run/a.sock (socket inode 7); once"
            ),
            "{two}"
        );
    }

    #[test]
    fn io_errors_are_sources() {
        use std::error::Error as _;
        let e = Error::ReadPidFile {
            path: PathBuf::from("/run/x.pid"),
            source: io::Error::from(io::ErrorKind::PermissionDenied),
        };
        assert_eq!(e.to_string(), "failed to read pid file `/run/x.pid`");
        assert!(e.source().is_some());
    }
}
