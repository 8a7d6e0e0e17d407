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

/// Which pidfd call the helper's seccomp filter makes fail, and with which errno, as
/// `<call>:<errno>`; unset, the helper is not run as a test of its own.
const PIDFD_FILTER_ENV: &str = "HOTRELOAD_LOWLEVEL_PIDFD_FILTER";

/// Not a test on its own: run by the test below in a child process, where it installs
/// the filter the parent names, then prints what the probe decided.
#[test]
fn pidfd_probe_helper() {
    let Some(spec) = std::env::var_os(PIDFD_FILTER_ENV) else {
        return;
    };
    let spec = spec.into_string().unwrap();
    let (call, errno) = spec.split_once(':').unwrap();
    let syscall = match call {
        "pidfd_open" => libc::SYS_pidfd_open,
        "pidfd_send_signal" => libc::SYS_pidfd_send_signal,
        other => panic!("unknown call {other}"),
    };
    super::refuse_in_this_thread(syscall, errno.parse().unwrap());
    let support = crate::process::pidfd_support();
    let required = crate::process::require_pidfd();
    println!(
        "PROBE available={} call={} required_ok={} reason={}",
        crate::process::pidfd_available(),
        match support {
            PidfdSupport::Unavailable { call, .. } => call,
            _ => "-",
        },
        required.is_ok(),
        support.unavailable_reason().unwrap_or_default()
    );
}

/// What the probe says in a child whose `call` fails with `errno`.
fn probe_with(call: &str, errno: i32) -> String {
    super::helper_says(
        "lowlevel_tests::process_edges::pidfd_probe_helper",
        (PIDFD_FILTER_ENV, &format!("{call}:{errno}")),
        "PROBE ",
    )
}

#[test]
fn without_pidfds_the_probe_says_which_call_failed_and_requiring_them_refuses() {
    // A kernel before 5.3 (ENOSYS), or a filter (EPERM), on either call.
    for (call, errno) in [
        ("pidfd_open", libc::ENOSYS),
        ("pidfd_open", libc::EPERM),
        ("pidfd_send_signal", libc::ENOSYS),
        ("pidfd_send_signal", libc::EPERM),
    ] {
        let seen = probe_with(call, errno);
        assert!(
            seen.starts_with(&format!(
                "available=false call={call} required_ok=false reason={call} is not available"
            )),
            "{call} failing with errno {errno}: {seen}"
        );
    }
    // Any other failure is not a missing feature: the handle that hits it reports it.
    for call in ["pidfd_open", "pidfd_send_signal"] {
        let seen = probe_with(call, libc::EMFILE);
        assert_eq!(
            seen, "available=true call=- required_ok=true reason=",
            "{call} failing with EMFILE"
        );
    }
}

/// Set: the helper below runs (in a child process, where it may install a handler).
const EINTR_ENV: &str = "HOTRELOAD_LOWLEVEL_EINTR";

extern "C" fn ignore_signal(_: libc::c_int) {}

/// Not a test on its own: run by the test below in a child process. Waits on a pidfd
/// for a short-lived child while another thread keeps interrupting the wait with a
/// caught signal (so poll(2) returns EINTR again and again).
#[test]
fn interrupted_wait_helper() {
    if std::env::var_os(EINTR_ENV).is_none() {
        return;
    }
    // SAFETY: a handler that does nothing, installed without SA_RESTART, in a process
    // that runs only this test.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = ignore_signal as *const () as usize;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGUSR1, &action, std::ptr::null_mut()),
            0
        );
    }
    let mut child = Command::new("sleep").arg("0.5").spawn().unwrap();
    let handle = ProcessHandle::open(Pid::try_from(child.id()).unwrap()).unwrap();
    assert!(handle.has_pidfd(), "this test needs pidfds");
    // SAFETY: pthread_self has no preconditions.
    let waiter = unsafe { libc::pthread_self() };
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = done.clone();
    let interrupter = std::thread::spawn(move || {
        let mut sent = 0u32;
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            // SAFETY: `waiter` is alive until `done` is set, after the wait.
            unsafe { libc::pthread_kill(waiter, libc::SIGUSR1) };
            sent += 1;
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        sent
    });
    let waited = handle.wait_exit_timeout(std::time::Duration::from_secs(60));
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent = interrupter.join().unwrap();
    let _ = child.wait();
    println!("WAITED {waited:?} after {sent} signals");
}

#[test]
fn a_wait_interrupted_by_signals_still_sees_the_exit() {
    let line = super::helper_says(
        "lowlevel_tests::process_edges::interrupted_wait_helper",
        (EINTR_ENV, "1"),
        "WAITED ",
    );
    assert!(line.starts_with("Ok(true) after "), "{line}");
}

#[test]
fn a_wait_whose_deadline_has_passed_answers_without_waiting() {
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Reap(Command::new("sleep").arg("1000").spawn().unwrap());
    let pid = Pid::try_from(child.0.id()).unwrap();
    // In a thread, so that a wait that never ends fails this test instead of hanging it.
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let handle = ProcessHandle::open(pid).unwrap();
        let past = std::time::Instant::now();
        let _ = done.send(handle.wait_exit(past).map_err(|e| e.to_string()));
    });
    let waited = result
        .recv_timeout(std::time::Duration::from_secs(20))
        .expect("a wait past its deadline did not return");
    assert_eq!(waited, Ok(false), "the process is alive");
    drop(child);
}
