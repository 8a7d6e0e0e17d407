//! hotreload-core embedded in a tokio program, as a deployment tool would use it: the
//! options cross into a blocking task, the upgrade runs there, and the program cancels it
//! from async code during a slow drain. The old version must be serving afterwards, and
//! the cancel must take effect within a second.

use std::time::{Duration, Instant};

use crate::common::*;
use hotreload_core::{
    upgrade, CancelToken, Event, FailureKind, Left, Observer, Role, Signal, UpgradeOptions,
};

/// What a tool needs to move the options and the token into `spawn_blocking`.
const _: () = {
    const fn send_clone<T: Send + Sync + Clone + 'static>() {}
    send_clone::<UpgradeOptions>();
    send_clone::<CancelToken>();
};

/// Forwards events to the async side (the observer runs on the blocking thread).
struct Forward(tokio::sync::mpsc::UnboundedSender<Event>);

impl Observer for Forward {
    fn on_event(&self, event: &Event) {
        let _ = self.0.send(event.clone());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_from_tokio_during_a_slow_drain_rolls_back_within_a_second() {
    let s = start(&["slow-drain=120s"]);
    let v1 = s.dir.path().join("v1-copy");
    std::fs::copy(&s.installed, &v1).unwrap();
    let v2 = s.variant("2.0", &[]);
    let token = CancelToken::new();
    let options = options(&v2).cancel_token(token.clone());
    let target = s.target();
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let task = tokio::task::spawn_blocking(move || upgrade(&target, &options, &Forward(tx)));

    // The drain has begun once the old master was told to stop its workers; they take
    // 120 s (each holds its last request that long).
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + LONG;
    loop {
        let event = tokio::time::timeout_at(deadline, events.recv())
            .await
            .unwrap_or_else(|_| panic!("no drain started; events: {seen:#?}"))
            .unwrap_or_else(|| panic!("the upgrade ended before the drain: {seen:#?}"));
        let winch = matches!(
            event,
            Event::Signalled {
                role: Role::OldMaster,
                signal: Signal::Winch,
                ..
            }
        );
        seen.push(event);
        if winch {
            break;
        }
    }
    let cancelled = Instant::now();
    token.cancel();
    let result = task.await.expect("the blocking task");
    let took = cancelled.elapsed();

    let e = result.expect_err("a cancelled upgrade fails");
    assert_eq!(e.kind, FailureKind::Cancelled, "{e}: {}", e.error);
    assert_eq!(e.left, Left::Reverted, "{e}");
    assert!(e.report.new_pid.is_some(), "{:?}", e.report);
    // The requirement for an embedding tool: the cancel takes effect (the
    // upgrade is rolled back and returns) within one second.
    assert!(took < Duration::from_secs(1), "the cancel took {took:?}");
    // The old build serves again from the original master and executable.
    assert_eq!(s.version(), "fake-nginx/1.0");
    assert_eq!(s.master(), Some(s.original_master().get()));
    assert!(!s.oldbin_exists());
    assert!(s.installed_is(&v1));
    assert!(!s.journal().exists());
}
