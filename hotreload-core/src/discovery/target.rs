//! From a found master to a [`Target`]: a target is its pid file (every phase is read
//! from the pid files), so a master found by pid or by executable becomes one only when
//! its pid file can be established from evidence, and only when that file names it.
//!
//! The evidence, per flavor: nginx's effective `pid` directive (`-g` on its command
//! line, else the configuration as `nginx -T` dumps it, run as the master's user, as the
//! preflight does); gunicorn's `-p`/`--pid` argument. Anything else (unicorn keeps its
//! pid file in its Ruby configuration; nginx's compiled-in default) is not guessed.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Error;
use crate::event::NoopObserver;
use crate::exec::run_command_as;
use crate::flavor::Flavor;
use crate::model::Target;
use crate::nginx_conf::{main_directive_in_dump, main_level, nginx_options};
use crate::pid::Pid;
use crate::pidfile::read_pid_file_optional;
use crate::procfs;
use crate::procfs::Credentials;
use crate::wait::Waiter;

/// How long `nginx -T` may take to dump the configuration.
const DUMP_TIMEOUT: Duration = Duration::from_secs(10);

/// The [`Target`] of the running master `pid` of `flavor`: on the pid file its command
/// line or configuration names, once that file (or, during an upgrade, the flavor's
/// old pid file next to it) is seen to name `pid`. Otherwise
/// [`Error::PidFileUnknown`] says why not.
pub fn target_of_master(pid: Pid, flavor: Flavor) -> Result<Target, Error> {
    let info = procfs::proc_info(pid)?;
    if info.is_zombie() {
        return Err(Error::Zombie { pid });
    }
    let unknown = |reason: String| Error::PidFileUnknown { pid, reason };
    let cwd = fs::read_link(format!("/proc/{pid}/cwd")).ok();
    let pid_file = match flavor.name() {
        "nginx" => nginx_pid_file(pid, &info.cmdline, cwd.as_deref()),
        "gunicorn" => argv_pid_file(&info.cmdline, &["-p", "--pid"], cwd.as_deref())
            .ok_or_else(|| "its command line has no `-p`/`--pid`".to_string()),
        other => Err(format!("the {other} flavor has no evidence of it to read")),
    }
    .map_err(unknown)?;
    // The evidence is a claim too: the file must name this very master, now (or be the
    // old master's file, renamed, during an upgrade).
    for file in [pid_file.clone(), flavor.old_pid_file(&pid_file)] {
        if read_pid_file_optional(&file)? == Some(pid) {
            return Ok(Target::new(pid_file).flavor(flavor));
        }
    }
    Err(unknown(format!(
        "`{}` (from its configuration) does not name it",
        pid_file.display()
    )))
}

/// nginx's effective `pid`: `-g` first (it overrides the file), then the `nginx -T` dump.
fn nginx_pid_file(pid: Pid, cmdline: &[String], cwd: Option<&Path>) -> Result<PathBuf, String> {
    let opts = nginx_options(cmdline);
    let prefix = opts.prefix.clone().map(PathBuf::from);
    let resolve = |value: String| -> Result<PathBuf, String> {
        let path = PathBuf::from(&value);
        if path.is_absolute() {
            return Ok(path);
        }
        // Relative to nginx's prefix, which only `-p` states for sure.
        prefix.as_ref().map(|p| p.join(&path)).ok_or_else(|| {
            format!("`pid {value}` is relative and the prefix is not on the command line")
        })
    };
    if let Some(globals) = &opts.globals {
        if let Some((_, args)) = main_level(globals).into_iter().find(|(n, _)| n == "pid") {
            if let Some(value) = args.into_iter().next() {
                return resolve(value);
            }
        }
    }
    let exe = PathBuf::from(format!("/proc/{pid}/exe"));
    // The dump runs as the master's user: it reads (and may write: `pid`, logs) what
    // that user can, never more.
    let ids = Credentials::to_assume(pid).map_err(|e| format!("`nginx -T` could not run: {e}"))?;
    let mut args = vec!["-T".to_string(), "-q".to_string()];
    args.extend(opts.args());
    let waiter = Waiter {
        observer: &NoopObserver,
        cancel: None,
    };
    let dump = run_command_as(&exe, &args, cwd, ids.as_ref(), DUMP_TIMEOUT, waiter)
        .map_err(|e| format!("`nginx -T` could not run: {e}"))?;
    match dump {
        (true, _, text) => match main_directive_in_dump(&text, "pid") {
            Some((value, _file)) => resolve(value),
            None => Err(
                "its configuration has no `pid` directive (the compiled-in default is not guessed)"
                    .into(),
            ),
        },
        (false, status, text) => Err(format!(
            "`nginx -T` failed ({status}){}",
            text.lines()
                .rfind(|l| !l.trim().is_empty())
                .map_or(String::new(), |l| format!(": {}", l.trim()))
        )),
    }
}

/// The value of the first of `flags` in `argv` (`-p X`, `-pX`, `--pid X`, `--pid=X`),
/// relative paths taken from the process's working directory.
fn argv_pid_file(argv: &[String], flags: &[&str], cwd: Option<&Path>) -> Option<PathBuf> {
    let mut args = argv.iter().skip(1);
    while let Some(arg) = args.next() {
        for flag in flags {
            let value = if arg == flag {
                args.clone().next().cloned()
            } else if let Some(v) = arg.strip_prefix(&format!("{flag}=")) {
                Some(v.to_string())
            } else if flag.len() == 2 && arg.starts_with(flag) && !arg.starts_with("--") {
                Some(arg[2..].to_string())
            } else {
                None
            };
            if let Some(value) = value.filter(|v| !v.is_empty()) {
                let path = PathBuf::from(value);
                return if path.is_absolute() {
                    Some(path)
                } else {
                    cwd.map(|c| c.join(path))
                };
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<String> {
        s.split(' ').map(str::to_string).collect()
    }

    #[test]
    fn gunicorn_pid_flags_are_read_in_every_spelling() {
        let flags = &["-p", "--pid"];
        let cwd = Some(Path::new("/srv/app"));
        for (line, want) in [
            ("gunicorn -p /run/g.pid app:app", Some("/run/g.pid")),
            ("gunicorn -p/run/g.pid app:app", Some("/run/g.pid")),
            ("gunicorn --pid /run/g.pid app:app", Some("/run/g.pid")),
            ("gunicorn --pid=g.pid app:app", Some("/srv/app/g.pid")),
            ("gunicorn --preload app:app", None),
        ] {
            assert_eq!(
                argv_pid_file(&argv(line), flags, cwd).as_deref(),
                want.map(Path::new),
                "{line}"
            );
        }
    }
}
