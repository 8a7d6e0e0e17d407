//! Strict pid-file reading against real files: content, file types, and (as root)
//! who could have written the file.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command};

use crate::pidfile::{read_pid_file, read_pid_file_optional};
use crate::{Error, Pid, PidFileProblem};

fn problem_of(path: &Path) -> PidFileProblem {
    match read_pid_file(path) {
        Err(Error::PidFile { path: p, problem }) => {
            assert_eq!(p, path);
            problem
        }
        other => panic!(
            "{}: expected a PidFile error, got {other:?}",
            path.display()
        ),
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn content_cases() {
    let dir = tempfile::tempdir().unwrap();
    let me = std::process::id();
    let good: &[(&str, String)] = &[("plain", format!("{me}")), ("newline", format!("{me}\n"))];
    for (name, content) in good {
        let path = dir.path().join(name);
        fs::write(&path, content).unwrap();
        assert_eq!(read_pid_file(&path).unwrap().get() as u32, me, "{name}");
    }
    let pid_max: u64 = fs::read_to_string("/proc/sys/kernel/pid_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let bad: Vec<(&str, String, &str)> = vec![
        ("empty", String::new(), "empty"),
        ("space", " \n".into(), "white space"),
        ("abc", "abc\n".into(), "`abc`"),
        ("zero", "0\n".into(), "holds 0"),
        ("one", "1\n".into(), "holds 1"),
        ("minus1", "-1\n".into(), "`-1`"),
        ("minus5", "-5".into(), "`-5`"),
        ("plus5", "+5".into(), "`+5`"),
        ("huge", format!("{}\n", pid_max + 1), "pid_max"),
        ("two", format!("{me}\n{me}\n"), "more than one line"),
        ("crlf", format!("{me}\r\n"), "\\r"),
        ("long", "9".repeat(100), "bytes long"),
    ];
    for (name, content, needle) in bad {
        let path = dir.path().join(name);
        fs::write(&path, &content).unwrap();
        let e = read_pid_file(&path).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&path.display().to_string()), "{name}: {msg}");
        assert!(msg.contains(needle), "{name}: {msg}");
        // The optional reader refuses the same files: only absence is `None`.
        assert!(read_pid_file_optional(&path).is_err(), "{name}");
    }
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx.pid");
    assert_eq!(problem_of(&path), PidFileProblem::Missing);
    assert!(problem_of(&path).may_be_transient());
    assert_eq!(read_pid_file_optional(&path).unwrap(), None);
}

#[test]
fn symlink_is_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let real = dir.path().join("real.pid");
    fs::write(&real, format!("{}\n", std::process::id())).unwrap();
    let link = dir.path().join("link.pid");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    assert_eq!(problem_of(&link), PidFileProblem::Symlink);
    assert!(read_pid_file_optional(&link).is_err());
}

#[test]
fn non_regular_files() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("dir.pid");
    fs::create_dir(&sub).unwrap();
    assert_eq!(
        problem_of(&sub),
        PidFileProblem::NotRegularFile { kind: "directory" }
    );
    let fifo = dir.path().join("fifo.pid");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    // Must not block waiting for a writer.
    assert_eq!(
        problem_of(&fifo),
        PidFileProblem::NotRegularFile { kind: "FIFO" }
    );
}

/// Kills and reaps the child when dropped.
struct Guard(Child);
impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn as_root_refuses_files_others_could_write() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let me = Pid::this_process().unwrap();
    let path = dir.path().join("nginx.pid");
    fs::write(&path, format!("{me}\n")).unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(read_pid_file(&path).unwrap(), me);

    // World-writable file.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o646)).unwrap();
    assert!(matches!(
        problem_of(&path),
        PidFileProblem::WritableByOthers { .. }
    ));
    // Writable by its group and by everyone: the message names the wider of the two.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
    let p = problem_of(&path);
    assert!(
        matches!(&p, PidFileProblem::WritableByOthers { who, .. } if who == "every user"),
        "{p}"
    );
    // Group-writable, non-root group.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o664)).unwrap();
    std::os::unix::fs::chown(&path, Some(0), Some(65534)).unwrap();
    assert!(matches!(
        problem_of(&path),
        PidFileProblem::WritableByOthers { .. }
    ));
    std::os::unix::fs::chown(&path, Some(0), Some(0)).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();

    // Owned by a non-root user, naming a root process: that user could aim root's signals.
    std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    let p = problem_of(&path);
    assert!(
        matches!(&p, PidFileProblem::WritableByOthers { who, .. } if who.contains("user 65534")),
        "{p}"
    );
    assert!(p.to_string().contains("chmod go-w"), "{p}");

    // ...but naming a process of that same user is harmless: they could signal it themselves.
    let mut cmd = Command::new("sleep");
    cmd.arg("600");
    std::os::unix::process::CommandExt::uid(&mut cmd, 65534);
    let theirs = Guard(cmd.spawn().unwrap());
    let their_pid = Pid::try_from(theirs.0.id()).unwrap();
    fs::write(&path, format!("{their_pid}\n")).unwrap();
    assert_eq!(read_pid_file(&path).unwrap(), their_pid);

    // A directory writable by everyone (not sticky): anyone could replace the file.
    std::os::unix::fs::chown(&path, Some(0), Some(0)).unwrap();
    fs::write(&path, format!("{me}\n")).unwrap();
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
    assert!(matches!(
        problem_of(&path),
        PidFileProblem::WritableByOthers { .. }
    ));
    // Sticky (like /tmp) with a root-owned file: others cannot replace it.
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o1777)).unwrap();
    assert_eq!(read_pid_file(&path).unwrap(), me);
    fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
}
