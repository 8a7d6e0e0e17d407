//! The pidfd-support report and the handle's debug form: what a user reads when pidfds
//! are missing, checked without a kernel that lacks them. Written for survivors of the
//! cargo-mutants run (MUTANTS.md).

use std::process::Command;

use crate::pid::Pid;
use crate::process::{kernel_release, PidfdSupport, ProcessHandle};

#[test]
fn a_refused_pidfd_is_reported_unavailable() {
    let no = PidfdSupport::Unavailable {
        call: "pidfd_open",
        reason: "Function not implemented (os error 38)".into(),
        kernel: "4.18.0-553.el8.x86_64".into(),
    };
    assert!(!no.is_available());
    assert!(PidfdSupport::Available.is_available());
    let why = no.unavailable_reason().unwrap();
    assert!(
        why.contains("this kernel is 4.18.0-553.el8.x86_64"),
        "{why}"
    );
}

#[test]
fn the_kernel_release_is_unames() {
    let out = Command::new("uname").arg("-r").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        kernel_release(),
        String::from_utf8_lossy(&out.stdout).trim()
    );
}

#[test]
fn a_handle_shows_its_pid_and_start_time() {
    let me = Pid::this_process().unwrap();
    let h = ProcessHandle::open(me).unwrap();
    let debug = format!("{h:?}");
    assert!(
        debug.contains(&format!("pid: {me:?}")) && debug.contains(&h.start_time().to_string()),
        "{debug}"
    );
}

#[test]
fn opening_a_process_that_is_gone_says_so() {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = Pid::try_from(child.id()).unwrap();
    child.wait().unwrap();
    // Reaped: the pid names nothing (unless reused at once, which a test cannot rule
    // out but the kernel's pid allocation makes very unlikely).
    match ProcessHandle::open(pid) {
        Err(crate::Error::ProcessGone { pid: p }) => assert_eq!(p, pid),
        other => panic!("{other:?}"),
    }
}
