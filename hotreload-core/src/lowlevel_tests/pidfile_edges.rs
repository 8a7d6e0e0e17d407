//! Pid-file reading at its edges: a file of exactly the longest accepted length, long
//! contents shown cut, root's file in a sticky directory another user owns, and which
//! problems may pass on their own. Written for survivors of the cargo-mutants run
//! (MUTANTS.md).

use std::fs;
use std::os::unix::fs::PermissionsExt;

use crate::pidfile::{parse_pid_file_content, read_pid_file};
use crate::{Pid, PidFileProblem};

#[test]
fn a_pid_file_of_the_longest_accepted_length_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let me = Pid::this_process().unwrap().to_string();
    // Leading zeros are allowed: 63 digits and the newline, the 64-byte limit exactly.
    let content = format!("{}{me}\n", "0".repeat(63 - me.len()));
    assert_eq!(content.len(), 64);
    let path = dir.path().join("nginx.pid");
    fs::write(&path, &content).unwrap();
    assert_eq!(read_pid_file(&path).unwrap(), Pid::this_process().unwrap());
    fs::write(&path, format!("0{content}")).unwrap();
    assert!(read_pid_file(&path).is_err(), "65 bytes are too long");
    // The message gives the file's whole size, not the 65 bytes read of it.
    fs::write(&path, "1".repeat(10_000)).unwrap();
    let e = read_pid_file(&path).unwrap_err().to_string();
    assert!(e.contains("it is 10000 bytes long"), "{e}");
}

#[test]
fn a_long_bad_content_is_shown_cut_and_a_short_one_whole() {
    let shown = |content: &[u8]| match parse_pid_file_content(content, 4_194_304) {
        Err(PidFileProblem::NotANumber { content }) => content,
        other => panic!("{other:?}"),
    };
    assert_eq!(shown(&[b'x'; 32]), "x".repeat(32));
    assert_eq!(shown(&[b'x'; 33]), format!("{}...", "x".repeat(32)));
}

#[test]
fn only_a_missing_or_empty_pid_file_may_be_a_moment_of_its_write() {
    assert!(PidFileProblem::Missing.may_be_transient());
    assert!(PidFileProblem::Empty.may_be_transient());
    assert!(!PidFileProblem::MultipleLines.may_be_transient());
    assert!(!PidFileProblem::Symlink.may_be_transient());
}

#[test]
fn as_root_a_root_file_in_a_sticky_directory_is_trusted_only_if_root_owns_the_directory() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    // Like /tmp (root's, sticky): nobody else can replace root's file there.
    let top = tempfile::tempdir().unwrap();
    let dir = top.path().join("run");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777)).unwrap();
    let path = dir.join("nginx.pid");
    let me = Pid::this_process().unwrap();
    fs::write(&path, format!("{me}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(read_pid_file(&path).unwrap(), me);
    // A sticky directory's owner may still remove or rename any file in it: owned by
    // another user, refused; without the sticky bit, refused all the more.
    std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
    assert!(read_pid_file(&path).is_err());
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    assert!(read_pid_file(&path).is_err());
}

#[test]
fn a_pid_file_that_cannot_be_opened_is_a_read_error_not_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    fs::write(&file, b"").unwrap();
    // ENOTDIR: only ELOOP (O_NOFOLLOW meeting a link) means a symlink.
    let e = read_pid_file(&file.join("nginx.pid")).unwrap_err();
    assert!(matches!(e, crate::Error::ReadPidFile { .. }), "{e}");
}

const RELATIVE_HELPER_ENV: &str = "HOTRELOAD_LOWLEVEL_PIDFILE_RELATIVE_HELPER";

/// Not a test on its own: run by the test below in a child whose working directory is
/// a temporary one holding `nginx.pid` (a test must not change the whole test process's
/// directory).
#[test]
fn relative_read_helper() {
    if std::env::var_os(RELATIVE_HELPER_ENV).is_none() {
        return;
    }
    let pid = read_pid_file(std::path::Path::new("nginx.pid")).unwrap();
    println!("PID-READ {pid}");
}

#[test]
fn a_pid_file_named_without_a_directory_is_read_from_the_working_one() {
    // `--pid-file nginx.pid`: the guard looks at the working directory (`.`), not at an
    // empty path, which cannot be opened.
    let dir = tempfile::tempdir().unwrap();
    let me = Pid::this_process().unwrap();
    fs::write(dir.path().join("nginx.pid"), format!("{me}\n")).unwrap();
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "lowlevel_tests::pidfile_edges::relative_read_helper",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(RELATIVE_HELPER_ENV, "1")
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains(&format!("PID-READ {me}")),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
