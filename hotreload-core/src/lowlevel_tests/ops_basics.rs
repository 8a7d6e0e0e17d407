//! The operations' small public pieces (what a failure left, the error wrapper, the
//! options' setters) and the "would the master ignore the spawn signal" check on real
//! processes. Written for survivors of the cargo-mutants run (MUTANTS.md): the
//! operations themselves are tested end to end (tests/tests/core, tests/tests/safety).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::model::Phase;
use crate::ops::{spawn_would_be_ignored, Left, OpError, OpOptions};
use crate::pid::Pid;
use crate::procfs;
use crate::wait::CancelToken;
use crate::Error;

#[test]
fn what_a_failure_left_is_named_and_said() {
    let changed = Left::Changed {
        phase: Phase::Spawned,
    };
    assert_eq!(
        [Left::Untouched, Left::Reverted, changed].map(Left::as_str),
        ["untouched", "reverted", "changed"]
    );
    assert_eq!(
        [Left::Untouched, Left::Reverted, changed].map(Left::changed),
        [false, false, true]
    );
    assert_eq!(Left::Untouched.to_string(), "nothing was changed");
    assert!(changed.to_string().starts_with("the server was changed"));
}

#[test]
fn an_op_error_keeps_its_cause_and_shows_what_it_left() {
    let io = std::io::Error::other("disk on fire");
    let e: OpError<()> = OpError {
        state: None,
        error: Error::JournalIo {
            action: "write",
            path: "/x".into(),
            source: io,
        },
        left: Left::Reverted,
    };
    let source = std::error::Error::source(&e).expect("the io error as source");
    assert_eq!(source.to_string(), "disk on fire");
    let debug = format!("{e:?}");
    assert!(
        debug.contains("Reverted") && debug.contains("state_known"),
        "{debug}"
    );
    // Its text is the error's own, nothing added.
    assert_eq!(e.to_string(), e.error.to_string());
    assert!(e.to_string().contains("/x"), "{e}");
}

#[test]
fn option_setters_set() {
    let token = CancelToken::new();
    let o = OpOptions::new()
        .spawn_timeout(Duration::from_secs(5))
        .drain_timeout(Duration::from_secs(6))
        .quit_timeout(Duration::from_secs(7))
        .cancel_token(token.clone())
        .require_pidfd(true)
        .allow_orphaned_sockets(true);
    assert_eq!(
        (o.spawn_timeout, o.drain_timeout, o.quit_timeout),
        (
            Duration::from_secs(5),
            Duration::from_secs(6),
            Duration::from_secs(7)
        )
    );
    assert!(o.require_pidfd && o.allow_orphaned_sockets);
    // The options hold the caller's token, not a fresh one.
    assert!(!o.cancel.is_cancelled());
    token.cancel();
    assert!(o.cancel.is_cancelled());
    // And the defaults, as documented on `OpOptions::new`.
    let d = OpOptions::new();
    assert_eq!(
        (d.spawn_timeout, d.drain_timeout, d.quit_timeout),
        (
            Duration::from_secs(30),
            Duration::from_secs(60),
            Duration::from_secs(30)
        )
    );
    assert!(!d.require_pidfd && !d.allow_orphaned_sockets && !d.cancel.is_cancelled());
}

/// A child killed and reaped when dropped.
struct Kid(Child);

impl Drop for Kid {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn info_of(kid: &Kid) -> crate::process::ProcInfo {
    procfs::proc_info(Pid::try_from(kid.0.id()).unwrap()).unwrap()
}

#[test]
fn a_foreground_master_under_its_live_parent_would_ignore_the_spawn_signal() {
    // Started by this test like `nginx -g 'daemon off;'` by a shell: same session,
    // same process group as its live parent.
    let fg = Kid(Command::new("sleep")
        .arg("1000")
        .stdin(Stdio::null())
        .spawn()
        .unwrap());
    let why = spawn_would_be_ignored(&info_of(&fg)).expect("a foreground master");
    assert!(why.contains(&std::process::id().to_string()), "{why}");

    // A session leader (daemonized with setsid) acts on it. `setsid` execs in place
    // here: its child of a test is no process-group leader, so it need not fork.
    let daemon = Kid(Command::new("setsid")
        .args(["sleep", "1000"])
        .stdin(Stdio::null())
        .spawn()
        .unwrap());
    let pid = Pid::try_from(daemon.0.id()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let info = loop {
        // Polled: nothing signals when `setsid` has made its session.
        match procfs::proc_info(pid) {
            Ok(info) if info.sid == pid.get() => break info,
            _ => assert!(
                std::time::Instant::now() < deadline,
                "setsid made no session"
            ),
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(spawn_would_be_ignored(&info), None);
}

/// A child that has exited and is not reaped yet (reaped when dropped).
fn zombie() -> Kid {
    let kid = Kid(Command::new("true").stdin(Stdio::null()).spawn().unwrap());
    let pid = Pid::try_from(kid.0.id()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    // Polled: nothing signals the exit of a child we must not reap.
    while !procfs::proc_stat(pid).is_ok_and(|stat| stat.is_zombie()) {
        assert!(std::time::Instant::now() < deadline, "`true` did not exit");
        std::thread::sleep(Duration::from_millis(5));
    }
    kid
}

#[test]
fn a_master_left_under_a_subreaper_by_an_earlier_upgrade_would_act_on_the_spawn_signal() {
    // A new master that outlived its old one under a subreaper: its parent (the
    // subreaper, here this test) lives, but it is neither a group leader nor in its
    // parent's group, and its session's leader (the first master) is gone.
    let kid = Kid(Command::new("sleep")
        .arg("1000")
        .stdin(Stdio::null())
        .spawn()
        .unwrap());
    let gone = zombie();
    let gone_pid = i32::try_from(gone.0.id()).unwrap();
    let live = info_of(&kid);
    assert_eq!(live.ppid, i32::try_from(std::process::id()).unwrap());
    let parent_group = procfs::proc_info(Pid::this_process().unwrap())
        .unwrap()
        .pgid;
    let left_over = crate::process::ProcInfo {
        sid: gone_pid,
        pgid: gone_pid,
        ..live.clone()
    };
    assert_ne!(left_over.pgid, parent_group);
    assert_eq!(spawn_would_be_ignored(&left_over), None);

    // Any one of the three makes it a foreground master under its live parent.
    let leader_alive = crate::process::ProcInfo {
        sid: i32::try_from(std::process::id()).unwrap(),
        ..left_over.clone()
    };
    let own_group = crate::process::ProcInfo {
        pgid: left_over.pid.get(),
        ..left_over.clone()
    };
    let parents_group = crate::process::ProcInfo {
        pgid: parent_group,
        ..left_over.clone()
    };
    for (what, info) in [
        ("its session leader alive", leader_alive),
        ("its own group", own_group),
        ("its parent's group", parents_group),
    ] {
        let why = spawn_would_be_ignored(&info).unwrap_or_else(|| panic!("with {what}"));
        assert!(why.contains("foreground"), "{what}: {why}");
    }
}
