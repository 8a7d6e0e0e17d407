//! Self-tests of the shared harness: the watchdog must turn a body that never ends into a
//! red test with the process tree and the server's log, killing what it started.

use std::sync::mpsc;
use std::time::Duration;

use hotreload_tests::fake::FakeServer;
use hotreload_tests::procs;
use hotreload_tests::watchdog::watchdog_for;

#[test]
fn watchdog_fails_a_body_that_blocks_forever_with_the_tree_and_the_log() {
    let (pids_tx, pids_rx) = mpsc::channel();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    // The watchdog runs on a thread of its own so that this test can observe its failure.
    let observed = std::thread::spawn(move || {
        // Generous for the start; then the body blocks until released (after the verdict).
        watchdog_for(hotreload_tests::LONG, move || {
            let server = FakeServer::start(&[]);
            let master = server.inst.master_pid();
            let workers = procs::workers_of(master);
            pids_tx
                .send((master, workers, server.inst.error_log()))
                .unwrap();
            let _ = release_rx.recv();
        })
    });
    let (master, workers, log) = pids_rx.recv().expect("the body started its server");
    let verdict = observed.join();
    let message = match verdict {
        Ok(()) => panic!("the watchdog let a body that never ends pass"),
        Err(panic) => panic
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_else(|| "<not a String>".into()),
    };
    release_tx.send(()).ok();
    assert!(message.contains("watchdog:"), "{message}");
    assert!(message.contains("still running after"), "{message}");
    assert!(
        message.contains("--- process tree of fake-nginx at"),
        "no process tree: {message}"
    );
    assert!(
        message.contains(&format!("{master} (ppid")),
        "the tree lacks the master {master}: {message}"
    );
    assert!(
        message.contains(&log.display().to_string()),
        "no error log: {message}"
    );
    for pid in std::iter::once(master).chain(workers) {
        hotreload_tests::poll::until(hotreload_tests::LONG, "the watchdog's kill", || {
            !procs::alive(pid)
        });
    }
}

#[test]
fn watchdog_passes_a_body_that_ends_and_forwards_its_panic() {
    watchdog_for(Duration::from_secs(60), || {});
    let panic = std::thread::spawn(|| watchdog_for(Duration::from_secs(60), || panic!("boom")))
        .join()
        .expect_err("the body's panic is the test's");
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"boom"));
}
