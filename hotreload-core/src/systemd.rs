//! systemd awareness: which service unit a master belongs to (from its cgroup), what the
//! unit says about its main process (`systemctl show`), and whether retiring an old
//! master would end the service (DESIGN.md §7).
//!
//! Why `systemctl show` rather than D-Bus: it keeps the core free of a D-Bus client and
//! its dependencies, it answers the same properties, and it runs through the core's one
//! subprocess runner (a deadline, cancellation). The price is a fork per question, asked
//! a few times per upgrade at most.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::Error;
use crate::event::NoopObserver;
use crate::exec::run_command;
use crate::pid::Pid;
use crate::wait::Waiter;

/// How long one `systemctl show` may take.
pub const SHOW_TIMEOUT: Duration = Duration::from_secs(10);

/// The properties asked of the unit, in `systemctl show -p` syntax.
const PROPERTIES: &str = "Id,LoadState,ActiveState,Type,PIDFile,MainPID,KillMode,GuessMainPID";

/// What systemd says about the service unit a master runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Unit {
    /// The unit's name (`nginx.service`).
    pub name: String,
    /// `ActiveState` (`active`, `reloading`, `inactive`, `failed`, ...).
    pub active_state: String,
    /// `MainPID`, `None` when systemd tracks no main process (0).
    pub main_pid: Option<Pid>,
    /// `Type` (`forking`, `simple`, `exec`, `notify`, ...).
    pub service_type: String,
    /// `PIDFile`, `None` when unset.
    pub pid_file: Option<PathBuf>,
    /// `KillMode` (`control-group` by default).
    pub kill_mode: String,
    /// `GuessMainPID`.
    pub guess_main_pid: bool,
}

impl fmt::Display for Unit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}, Type={}, MainPID={}, PIDFile={})",
            self.name,
            self.active_state,
            self.service_type,
            self.main_pid
                .map_or_else(|| "0".to_string(), |p| p.to_string()),
            self.pid_file
                .as_deref()
                .map_or_else(|| "unset".to_string(), |p| p.display().to_string()),
        )
    }
}

/// The service unit named by a `/proc/<pid>/cgroup` text: the cgroup v2 line (`0::`),
/// else the v1 `name=systemd` hierarchy; the innermost `*.service` component of the path.
/// `None` when the process runs in no service (a login session's scope, no systemd).
pub fn unit_of_cgroup(text: &str) -> Option<String> {
    let path_of = |prefix: &str| {
        text.lines().find_map(|line| {
            let (_, rest) = line.split_once(':')?;
            let (controllers, path) = rest.split_once(':')?;
            (controllers == prefix).then_some(path)
        })
    };
    // Under cgroup v1 the v2 line (if any) is the empty "0::/": look at both.
    [path_of(""), path_of("name=systemd")]
        .into_iter()
        .flatten()
        .find_map(|path| {
            path.rsplit('/')
                .find(|c| c.len() > ".service".len() && c.ends_with(".service"))
                .map(str::to_string)
        })
}

/// The service unit process `pid` runs in, from its cgroup; `None` when there is none or
/// the cgroup cannot be read.
pub fn unit_of(pid: Pid) -> Option<String> {
    unit_of_cgroup(&fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?)
}

/// Parses `systemctl show -p ...` output (`Key=Value` lines). `None` when the unit is
/// not loaded (systemd does not know it).
pub fn parse_show(unit: &str, text: &str) -> Option<Unit> {
    let get = |key: &str| {
        text.lines().find_map(|line| {
            let (k, v) = line.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    if get("LoadState").is_some_and(|s| s != "loaded") {
        return None;
    }
    let main_pid = get("MainPID")
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|&p| p > 0)
        .and_then(|p| Pid::new(p).ok());
    Some(Unit {
        name: get("Id")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| unit.to_string()),
        active_state: get("ActiveState").unwrap_or_default(),
        main_pid,
        service_type: get("Type").unwrap_or_default(),
        pid_file: get("PIDFile").filter(|s| !s.is_empty()).map(PathBuf::from),
        kill_mode: get("KillMode").unwrap_or_default(),
        guess_main_pid: get("GuessMainPID").is_some_and(|v| v == "yes"),
    })
}

/// Asks systemd about `unit` with `systemctl show`, for at most `timeout`.
pub(crate) fn show(unit: &str, timeout: Duration, waiter: Waiter<'_>) -> Result<Unit, Error> {
    let program = Path::new("systemctl");
    let args = [
        "show".to_string(),
        "-p".into(),
        PROPERTIES.into(),
        unit.into(),
    ];
    let (ok, status, output) = run_command(program, &args, None, timeout, waiter)?;
    let failed = |detail: String| Error::Systemd {
        unit: unit.to_string(),
        detail,
    };
    if !ok {
        return Err(failed(format!(
            "`systemctl show {unit}` failed ({status}): {}",
            output.trim()
        )));
    }
    parse_show(unit, &output).ok_or_else(|| failed("systemd does not know this unit".into()))
}

/// The unit process `pid` runs in and what systemd says about it (for `status`):
/// `Ok(None)` when it runs in no service unit. Blocks up to [`SHOW_TIMEOUT`].
pub fn unit_for(pid: Pid) -> Result<Option<Unit>, Error> {
    let Some(name) = unit_of(pid) else {
        return Ok(None);
    };
    let waiter = Waiter {
        observer: &NoopObserver,
        cancel: None,
    };
    show(&name, SHOW_TIMEOUT, waiter).map(Some)
}

/// The same file, as far as the paths tell: canonical paths when both resolve (systemd's
/// `/var/run` is `/run`), else the paths as given.
pub(crate) fn same_path(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => std::path::absolute(a).ok() == std::path::absolute(b).ok(),
    }
}

/// Why retiring `master` (the old master of an upgrade of the server whose pid file is
/// `pid_file`, the new master writing `new_pid_file` while the old one runs) would end the
/// service `unit`, with the unit lines that fix it; `None` when systemd will follow the new
/// master.
///
/// systemd follows a new main process only for `Type=forking` with `PIDFile=` naming the
/// file the new master writes: it reads the file again when its main process exits.
/// Otherwise the exit of the main process is the end of the service, and the default
/// `KillMode=control-group` then kills the new master too.
pub(crate) fn retire_would_end_service(
    unit: &Unit,
    master: Pid,
    pid_file: &Path,
    new_pid_file: &Path,
) -> Option<String> {
    if unit.main_pid != Some(master) {
        return None;
    }
    if new_pid_file != pid_file {
        // gunicorn: the new master renames its own file to the pid file only once it sees
        // the old master gone, after systemd has read PIDFile= (measured: the unit ends).
        return Some(format!(
            "master {master} is the main process of {}, and its new master writes {} until \
             the old one has exited, too late for systemd, which reads PIDFile= as the old \
             master exits: the service would end (and, KillMode={}, the new master with it). \
             Under systemd, upgrade this server with `systemctl restart {}` (or a reload, if \
             its code reloads), not a binary upgrade",
            unit.name,
            new_pid_file.display(),
            if unit.kill_mode.is_empty() {
                "control-group"
            } else {
                &unit.kill_mode
            },
            unit.name
        ));
    }
    let target = pid_file.display();
    let lines = format!("`Type=forking` and `PIDFile={target}`");
    let consequence = format!(
        "when hotreload retires master {master}, systemd deems {} dead and (KillMode={}) \
         stops the new master too: an outage",
        unit.name,
        if unit.kill_mode.is_empty() {
            "control-group"
        } else {
            &unit.kill_mode
        }
    );
    let edit = format!(
        "put {lines} in the [Service] section of {} (`systemctl edit {}`), `systemctl \
         daemon-reload`, then restart the service once",
        unit.name, unit.name
    );
    if unit.service_type != "forking" {
        return Some(format!(
            "master {master} is the main process of {} with Type={}, which cannot follow a new \
             main process: {consequence}; {edit} (nginx: with `daemon on`)",
            unit.name, unit.service_type
        ));
    }
    match &unit.pid_file {
        None => Some(format!(
            "master {master} is the main process of {} and the unit has no PIDFile=: \
             {consequence}; {edit}",
            unit.name
        )),
        Some(file) if !same_path(file, pid_file) => Some(format!(
            "master {master} is the main process of {}, whose PIDFile={} is not this server's \
             pid file {target}: {consequence}; {edit}",
            unit.name,
            file.display()
        )),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pid(n: i64) -> Pid {
        Pid::new(n).unwrap()
    }

    #[test]
    fn the_unit_comes_from_cgroup_v2_or_v1() {
        assert_eq!(
            unit_of_cgroup("0::/system.slice/nginx.service\n").as_deref(),
            Some("nginx.service")
        );
        // A cgroup namespace shows paths relative to its root, as in systemd-sandbox.
        let v1 = "9:name=systemd:/../system.slice/web.service\n8:pids:/system.slice/web.service\n\
                  4:memory:/x\n0::/../system.slice/web.service\n";
        assert_eq!(unit_of_cgroup(v1).as_deref(), Some("web.service"));
        let v1_only = "12:pids:/\n1:name=systemd:/system.slice/nginx.service\n0::/\n";
        assert_eq!(unit_of_cgroup(v1_only).as_deref(), Some("nginx.service"));
        let user = "0::/user.slice/user-1000.slice/user@1000.service/app.slice/web.service\n";
        assert_eq!(unit_of_cgroup(user).as_deref(), Some("web.service"));
        assert_eq!(
            unit_of_cgroup("0::/user.slice/user-0.slice/session-3.scope\n"),
            None
        );
        assert_eq!(unit_of_cgroup("9:name=systemd:/\n0::/\n"), None);
        assert_eq!(unit_of_cgroup(""), None);
    }

    #[test]
    fn show_output_is_parsed() {
        let text = "Id=nginx.service\nLoadState=loaded\nActiveState=active\nType=forking\n\
                    PIDFile=/run/nginx.pid\nMainPID=812\nKillMode=control-group\nGuessMainPID=yes\n";
        let unit = parse_show("nginx.service", text).unwrap();
        assert_eq!(unit.main_pid, Some(pid(812)));
        assert_eq!(unit.pid_file.as_deref(), Some(Path::new("/run/nginx.pid")));
        assert_eq!(unit.service_type, "forking");
        assert!(unit.guess_main_pid);
        assert_eq!(
            unit.to_string(),
            "nginx.service (active, Type=forking, MainPID=812, PIDFile=/run/nginx.pid)"
        );
        let none = parse_show("x.service", "LoadState=loaded\nMainPID=0\nPIDFile=\n").unwrap();
        assert_eq!((none.main_pid, none.pid_file), (None, None));
        assert_eq!(none.name, "x.service");
        assert_eq!(parse_show("x.service", "LoadState=not-found\n"), None);
    }

    fn unit(service_type: &str, pid_file: Option<&str>, main: i64) -> Unit {
        Unit {
            name: "nginx.service".into(),
            active_state: "active".into(),
            main_pid: Pid::new(main).ok(),
            service_type: service_type.into(),
            pid_file: pid_file.map(PathBuf::from),
            kill_mode: "control-group".into(),
            guess_main_pid: true,
        }
    }

    #[test]
    fn retiring_the_main_process_is_refused_unless_systemd_can_follow() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("nginx.pid");
        fs::write(&file, "812\n").unwrap();
        let f = file.to_str().unwrap();
        // Debian's shape: followed.
        assert_eq!(
            retire_would_end_service(&unit("forking", Some(f), 812), pid(812), &file, &file),
            None
        );
        // The same file by another name.
        let dotted = format!("{}/./nginx.pid", dir.path().display());
        assert_eq!(
            retire_would_end_service(&unit("forking", Some(&dotted), 812), pid(812), &file, &file),
            None
        );
        let no_file =
            retire_would_end_service(&unit("forking", None, 812), pid(812), &file, &file).unwrap();
        assert!(no_file.contains("no PIDFile="), "{no_file}");
        assert!(no_file.contains(&format!("`PIDFile={f}`")), "{no_file}");
        let other = retire_would_end_service(
            &unit("forking", Some("/run/other.pid"), 812),
            pid(812),
            &file,
            &file,
        )
        .unwrap();
        assert!(other.contains("PIDFile=/run/other.pid is not"), "{other}");
        let simple =
            retire_would_end_service(&unit("simple", Some(f), 812), pid(812), &file, &file)
                .unwrap();
        assert!(
            simple.contains("Type=simple") && simple.contains("`Type=forking`"),
            "{simple}"
        );
        // Not the main process (a server started by a script unit, or MainPID=0): the
        // service does not end with it.
        assert_eq!(
            retire_would_end_service(&unit("forking", None, 900), pid(812), &file, &file),
            None
        );
        assert_eq!(
            retire_would_end_service(&unit("forking", None, 0), pid(812), &file, &file),
            None
        );
        // gunicorn: the new master's own file becomes the pid file only after the old exit.
        let two = dir.path().join("nginx.pid.2");
        let gunicorn =
            retire_would_end_service(&unit("forking", Some(f), 812), pid(812), &file, &two)
                .unwrap();
        assert!(
            gunicorn.contains("systemctl restart nginx.service"),
            "{gunicorn}"
        );
    }
}
