//! Command check: run a program; healthy when it exits 0 within the timeout.
//!
//! The command runs in its own process group so that, at the timeout, it and
//! anything it started are killed together. Its exit and its output are awaited
//! with one `poll` over its pidfd and its pipes: no sleeping, no reader threads
//! that a leftover grandchild holding a pipe could block forever.

use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, ChildStderr, ChildStdout, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::HealthCheck;
use crate::sys;

/// How much of the command's output is kept for the failure detail.
const KEEP_OUTPUT: usize = 2048;

/// Runs `argv`; healthy on exit status 0.
#[derive(Debug, Clone)]
pub struct CommandCheck {
    argv: Vec<String>,
}

impl CommandCheck {
    /// A check running `argv[0]` with the remaining arguments (no shell).
    pub fn new(argv: Vec<String>) -> CommandCheck {
        CommandCheck { argv }
    }
}

/// The tail of a stream, bounded.
#[derive(Default)]
struct Tail(Vec<u8>);

impl Tail {
    fn push(&mut self, data: &[u8]) {
        self.0.extend_from_slice(data);
        if self.0.len() > KEEP_OUTPUT {
            let cut = self.0.len() - KEEP_OUTPUT;
            self.0.drain(..cut);
        }
    }

    /// The last non-empty line, for a one-line detail.
    fn last_line(&self) -> Option<String> {
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

fn describe_status(status: ExitStatus) -> String {
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

impl CommandCheck {
    fn run(&self, timeout: Duration) -> Result<String, String> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err("no command given".to_string());
        };
        let deadline = Instant::now() + timeout;
        let no_staging = crate::fsutil::spawn_guard();
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("failed to run `{program}`: {e}"))?;
        drop(no_staging);
        let pidfd: OwnedFd = match sys::pidfd_open(child.id() as i32) {
            Ok(fd) => fd,
            Err(e) => {
                kill_and_reap(&mut child);
                return Err(format!("failed to watch `{program}`: {e}"));
            }
        };
        let mut out: Pipe<ChildStdout> = child.stdout.take().map_or(Pipe::Closed, Pipe::Open);
        let mut err: Pipe<ChildStderr> = child.stderr.take().map_or(Pipe::Closed, Pipe::Open);
        for fd in [out.fd(), err.fd()].into_iter().flatten() {
            let _ = sys::set_nonblocking(fd);
        }
        let mut out_tail = Tail::default();
        let mut err_tail = Tail::default();
        let status = loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                kill_and_reap(&mut child);
                let last = err_tail.last_line().or_else(|| out_tail.last_line());
                return Err(match last {
                    Some(l) => format!("`{program}` did not finish within {timeout:?} and was killed; last output: {l}"),
                    None => format!("`{program}` did not finish within {timeout:?} and was killed"),
                });
            }
            let mut fds = vec![pidfd.as_fd()];
            fds.extend(out.fd());
            fds.extend(err.fd());
            let exited = match sys::poll_readable(&fds, Some(remaining)) {
                Ok(ready) => ready[0],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => false,
                Err(e) => {
                    kill_and_reap(&mut child);
                    return Err(format!("failed to wait for `{program}`: {e}"));
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
                    Err(e) => return Err(format!("failed to wait for `{program}`: {e}")),
                }
            }
        };
        // Anything still buffered; a background grandchild keeping the pipes open
        // cannot make us wait, because these reads do not block.
        out.drain(&mut out_tail);
        err.drain(&mut err_tail);
        let how = describe_status(status);
        if status.success() {
            Ok(match out_tail.last_line() {
                Some(l) => format!("{how}: {l}"),
                None => how,
            })
        } else {
            let last = err_tail.last_line().or_else(|| out_tail.last_line());
            Err(match last {
                Some(l) => format!("`{program}` failed with {how}: {l}"),
                None => format!("`{program}` failed with {how}"),
            })
        }
    }
}

impl HealthCheck for CommandCheck {
    fn describe(&self) -> String {
        format!("command `{}`", self.argv.join(" "))
    }

    fn check(&self, timeout: Duration) -> Result<(), String> {
        self.run(timeout).map(|_| ())
    }

    fn check_detail(&self, timeout: Duration) -> Result<String, String> {
        self.run(timeout)
    }
}
