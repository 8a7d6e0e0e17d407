//! The one subprocess runner of the pipeline (the config test): no input, output
//! collected, a deadline, and the crate's one wait on its exit (so a cancel kills it).

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::Error;
use crate::pid::Pid;
use crate::process::ProcessHandle;
use crate::wait::Waiter;

/// Runs `program args` with no input, in `cwd`, for at most `timeout`; returns
/// (success, status, stdout+stderr).
pub(crate) fn run_command(
    program: &Path,
    args: &[String],
    cwd: Option<&Path>,
    timeout: Duration,
    waiter: Waiter<'_>,
) -> Result<(bool, String, String), Error> {
    run_command_as(program, args, cwd, None, timeout, waiter)
}

/// [`run_command`] as user and group `ids` (when given): what a server reads must be
/// read with its own rights, not hotreload's.
pub(crate) fn run_command_as(
    program: &Path,
    args: &[String],
    cwd: Option<&Path>,
    ids: Option<(u32, u32)>,
    timeout: Duration,
    waiter: Waiter<'_>,
) -> Result<(bool, String, String), Error> {
    let run_err = |source| Error::RunCommand {
        program: program.to_path_buf(),
        source,
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(cwd) = cwd {
        command.current_dir(cwd);
    }
    if let Some((uid, gid)) = ids {
        use std::os::unix::process::CommandExt;
        command.uid(uid).gid(gid);
    }
    let mut child = {
        let _no_staging = crate::fsutil::spawn_guard();
        command.spawn().map_err(run_err)?
    };
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let what = format!("`{}` to finish", program.display());
    let exited = match Pid::try_from(child.id()).and_then(ProcessHandle::open) {
        Ok(handle) => waiter.exit(&handle, &what, timeout),
        // Our own child cannot vanish before we reap it; if it exited already, open
        // refuses it as a zombie.
        Err(_) => Ok(true),
    };
    let exited = match exited {
        Ok(exited) => exited,
        Err(e) => {
            // Cancelled (or the wait failed): the command must not outlive the call.
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
    };
    if !exited {
        let _ = child.kill();
    }
    let status = child.wait().map_err(run_err)?;
    let output = format!(
        "{}{}",
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default()
    );
    if !exited {
        return Ok((
            false,
            format!("killed after {:.0}s", timeout.as_secs_f64()),
            output,
        ));
    }
    Ok((status.success(), status.to_string(), output))
}
