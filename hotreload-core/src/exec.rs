//! The one subprocess runner of the core (the config test and the command health
//! check): no input, the output's tail kept, a deadline, and a cancel token watched.
//!
//! The command runs in its own process group so that, at the deadline (or a cancel), it
//! and anything it started are killed together. Its exit and its output are awaited
//! with one `poll` over its pidfd and its pipes: no sleeping, no reader threads that a
//! leftover grandchild holding a pipe could block forever.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::procfs::Credentials;
use crate::sys;
use crate::wait::{Waiter, CANCEL_SLICE};

/// How much of the command's output is kept for the failure detail.
const KEEP_OUTPUT: usize = 2048;

/// The tail of a stream, bounded.
#[derive(Default)]
pub(crate) struct Tail(Vec<u8>);

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.0.extend_from_slice(data);
        if self.0.len() > KEEP_OUTPUT {
            let cut = self.0.len() - KEEP_OUTPUT;
            self.0.drain(..cut);
        }
    }

    /// The last non-empty line, for a one-line detail.
    pub(crate) fn last_line(&self) -> Option<String> {
        let text = String::from_utf8_lossy(&self.0);
        text.lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(|l| l.chars().take(200).collect())
    }
}

/// A pipe being read until EOF.
enum Pipe<R> {
    Open(R),
    Closed,
}

impl<R: Read + AsFd> Pipe<R> {
    fn fd(&self) -> Option<BorrowedFd<'_>> {
        match self {
            Pipe::Open(r) => Some(r.as_fd()),
            Pipe::Closed => None,
        }
    }

    /// Reads what is available without blocking (the fd is non-blocking).
    fn drain(&mut self, tail: &mut Tail) {
        let Pipe::Open(r) = self else { return };
        let mut buf = [0u8; 4096];
        loop {
            match r.read(&mut buf) {
                Ok(0) => {
                    *self = Pipe::Closed;
                    return;
                }
                Ok(n) => tail.push(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => {
                    *self = Pipe::Closed;
                    return;
                }
            }
        }
    }
}

pub(crate) fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => match crate::signal::Signal::from_number(sig) {
            Some(s) => format!("killed by {s}"),
            None => format!("killed by signal {sig}"),
        },
        _ => status.to_string(),
    }
}

/// Kills the command's process group and reaps it.
fn kill_and_reap(child: &mut Child) {
    // The group id is the child's pid (process_group(0)); the child is not reaped
    // yet, so that id cannot have been reused.
    if let Ok(pgid) = i32::try_from(child.id()) {
        let _ = sys::kill_process_group(pgid, libc::SIGKILL);
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// How a command ended.
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: Tail,
    pub(crate) stderr: Tail,
}

impl Finished {
    /// The kept output, stdout then stderr, as text.
    pub(crate) fn output(&self) -> String {
        format!(
            "{}{}",
            String::from_utf8_lossy(&self.stdout.0),
            String::from_utf8_lossy(&self.stderr.0)
        )
    }
}

/// Why a command did not finish.
pub(crate) enum RunError {
    /// It could not be started or watched.
    Start(io::Error),
    /// Past the deadline: killed (with its group); the output's last line, if any.
    TimedOut(Option<String>),
    /// The waiter's token was cancelled: killed (with its group).
    Cancelled(crate::error::Error),
}

/// Runs `program args` (in `cwd` when given) for at most `timeout`; `waiter`, when
/// given, can cancel it.
pub(crate) fn run(
    program: &Path,
    args: &[String],
    cwd: Option<&Path>,
    timeout: Duration,
    waiter: Option<Waiter<'_>>,
) -> Result<Finished, RunError> {
    run_as(program, args, cwd, None, timeout, waiter)
}

/// [`run`] as the user, group and supplementary groups `ids` (when given): what a server
/// reads or writes must be read and written with its own rights, not hotreload's.
fn run_as(
    program: &Path,
    args: &[String],
    cwd: Option<&Path>,
    ids: Option<&Credentials>,
    timeout: Duration,
    waiter: Option<Waiter<'_>>,
) -> Result<Finished, RunError> {
    let deadline = Instant::now() + timeout;
    let mut command = Command::new(program);
    if let Some(ids) = ids {
        sys::run_as_user(&mut command, ids.uid, ids.gid, ids.groups.clone());
    }
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    let no_staging = crate::fsutil::spawn_guard();
    let mut child = command.spawn().map_err(RunError::Start)?;
    drop(no_staging);
    // Without pidfds (kernels before 5.3) nothing wakes the poll at the exit: it then
    // wakes after a short, backing-off pause to ask /proc.
    let pidfd: Option<OwnedFd> = if crate::process::pidfd_available() {
        match sys::pidfd_open(child.id() as i32) {
            Ok(fd) => Some(fd),
            Err(e) => {
                kill_and_reap(&mut child);
                return Err(RunError::Start(e));
            }
        }
    } else {
        None
    };
    let mut pause = Duration::from_millis(1);
    let mut out: Pipe<ChildStdout> = child.stdout.take().map_or(Pipe::Closed, Pipe::Open);
    let mut err: Pipe<ChildStderr> = child.stderr.take().map_or(Pipe::Closed, Pipe::Open);
    for fd in [out.fd(), err.fd()].into_iter().flatten() {
        let _ = sys::set_nonblocking(fd);
    }
    let mut out_tail = Tail::default();
    let mut err_tail = Tail::default();
    let what = format!("`{}` to finish", program.display());
    let status = loop {
        if let Some(Err(e)) = waiter.map(|w| w.check_cancel(&what)) {
            kill_and_reap(&mut child);
            return Err(RunError::Cancelled(e));
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            kill_and_reap(&mut child);
            return Err(RunError::TimedOut(
                err_tail.last_line().or_else(|| out_tail.last_line()),
            ));
        }
        let mut fds: Vec<BorrowedFd<'_>> = pidfd.iter().map(|fd| fd.as_fd()).collect();
        fds.extend(out.fd());
        fds.extend(err.fd());
        let wait = if pidfd.is_some() {
            remaining.min(CANCEL_SLICE)
        } else {
            remaining.min(CANCEL_SLICE).min(pause)
        };
        pause = (pause * 2).min(Duration::from_millis(50));
        let exited = match sys::poll_readable(&fds, Some(wait)) {
            Ok(ready) if pidfd.is_some() => ready[0],
            // Our own unreaped child: its pid cannot have been reused.
            Ok(_) => child_exited(child.id()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => false,
            Err(e) => {
                kill_and_reap(&mut child);
                return Err(RunError::Start(e));
            }
        };
        out.drain(&mut out_tail);
        err.drain(&mut err_tail);
        if exited {
            // Exited but not yet reaped: its pid still reserves the group id, so
            // this kills only what it left behind, never a stranger's group.
            if let Ok(pgid) = i32::try_from(child.id()) {
                let _ = sys::kill_process_group(pgid, libc::SIGKILL);
            }
            match child.wait() {
                Ok(status) => break status,
                Err(e) => return Err(RunError::Start(e)),
            }
        }
    };
    // Anything still buffered; a background grandchild keeping the pipes open
    // cannot make us wait, because these reads do not block.
    out.drain(&mut out_tail);
    err.drain(&mut err_tail);
    Ok(Finished {
        status,
        stdout: out_tail,
        stderr: err_tail,
    })
}

/// Whether our (unreaped) child has exited: a zombie, or gone.
fn child_exited(pid: u32) -> bool {
    let Ok(pid) = crate::pid::Pid::try_from(pid) else {
        return true;
    };
    match crate::procfs::proc_stat(pid) {
        Ok(stat) => stat.is_zombie(),
        Err(crate::error::Error::ProcessGone { .. }) => true,
        Err(_) => false,
    }
}

/// [`run`] for the config test: `(success, how it ended, output)`, or the error that
/// kept it from running (`Error::Cancelled` when cancelled).
pub(crate) fn run_command(
    program: &Path,
    args: &[String],
    cwd: Option<&Path>,
    timeout: Duration,
    waiter: Waiter<'_>,
) -> Result<(bool, String, String), crate::error::Error> {
    run_command_as(program, args, cwd, None, timeout, waiter)
}

/// [`run_command`] as the user, group and groups `ids` (when given).
pub(crate) fn run_command_as(
    program: &Path,
    args: &[String],
    cwd: Option<&Path>,
    ids: Option<&Credentials>,
    timeout: Duration,
    waiter: Waiter<'_>,
) -> Result<(bool, String, String), crate::error::Error> {
    match run_as(program, args, cwd, ids, timeout, Some(waiter)) {
        Ok(done) => Ok((
            done.status.success(),
            done.status.to_string(),
            done.output(),
        )),
        Err(RunError::TimedOut(last)) => Ok((
            false,
            format!("killed after {:.0}s", timeout.as_secs_f64()),
            last.unwrap_or_default(),
        )),
        Err(RunError::Cancelled(e)) => Err(e),
        Err(RunError::Start(source)) => Err(crate::error::Error::RunCommand {
            program: program.to_path_buf(),
            source,
        }),
    }
}
