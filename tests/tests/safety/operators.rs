//! Issue 6, items 3 and 5: a server that would ignore the upgrade (`daemon off` under a
//! live parent), and two operators at once.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

/// Item 3: fake-nginx with `daemon off`, the test process as its live parent (as a
/// supervisor would be). nginx ignores USR2 then, so a plain wait would run into the
/// spawn deadline: hotreload must see it first and refuse, well before a 60 s
/// `--spawn-timeout`, changing nothing (same pids, same executable, no backup, no
/// journal, no `.oldbin`), while clients keep being served.
#[test]
fn daemon_off_is_refused_before_the_spawn_deadline_changing_nothing() {
    hotreload_tests::watchdog(|| {
        let server = Server::start_with(&[], |b| b.daemon(false));
        let new = server.build("2.0", &[]);
        let master = server.master().unwrap();
        let workers = children(master);
        let exe = sha(&server.installed).unwrap();
        let load = server.load();
        let run = hotreload(&upgrade_args(&server, &new, &["--spawn-timeout", "60s"]));
        run.expect_code(3).expect_stderr("daemon off");
        assert!(
            run.elapsed < Duration::from_secs(20),
            "took {:?}: it waited for the spawn deadline instead of refusing{run}",
            run.elapsed
        );
        let result = run.result();
        assert_eq!(result["outcome"], "refused", "{run}");
        assert!(run.signals().is_empty(), "signals sent{run}");
        // Nothing changed.
        assert_eq!(server.master(), Some(master), "{run}");
        assert_eq!(children(master), workers, "{run}");
        assert_eq!(
            sha(&server.installed).as_deref(),
            Some(exe.as_str()),
            "{run}"
        );
        assert!(!server.backup().exists(), "{run}");
        assert!(!server.journal().exists(), "{run}");
        assert!(!server.inst.oldbin_file().exists(), "{run}");
        assert!(server.serving().contains("1.0"), "{run}");
        let stats = load.stop();
        assert_no_failures(&stats, &run);
    });
}

/// Item 5a: an upgrade holds the lock (its old build ignores QUIT, so its retire step
/// lasts its whole 5 s quit deadline); a second upgrade of the same server started
/// meanwhile exits 4 naming the holder's pid, and changes nothing; the first finishes.
#[test]
fn second_operator_exits_4_naming_the_holder() {
    hotreload_tests::watchdog(|| {
        let server = Server::start(&["ignore=QUIT"]);
        let v2 = server.build("2.0", &[]);
        let v3 = server.build("3.0", &[]);
        let load = server.load();
        let first_args: Vec<String> = [
            "upgrade",
            "--pid-file",
            &server.pid_file(),
            "--new-binary",
            &v2.display().to_string(),
            "--quit-timeout",
            "5s",
            "--json",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut first = KillOnDrop(
            Command::new(hotreload_tests::hotreload_bin())
                .args(&first_args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let holder = first.pid();
        // Wait (on its events) until the first one is in its retire wait: it holds the lock.
        let stdout = first.0.stdout.take().unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        loop {
            let line = lines
                .next()
                .expect("first upgrade ended early")
                .expect("read");
            if line.contains("\"waiting\"") && line.contains("old master") {
                break;
            }
        }
        let run = hotreload(&upgrade_args(&server, &v3, &[]));
        run.expect_code(4)
            .expect_stderr("lock")
            .expect_stderr(&holder.to_string());
        let result = run.result();
        assert_eq!(result["outcome"], "locked", "{run}");
        assert!(
            result["error"]
                .as_str()
                .unwrap_or("")
                .contains(&holder.to_string()),
            "result.error does not name the holder {holder}{run}"
        );
        assert!(run.signals().is_empty(), "{run}");
        // The first one goes on undisturbed.
        let rest: Vec<String> = lines.map_while(Result::ok).collect();
        let status = first.0.wait().unwrap();
        assert_eq!(status.code(), Some(0), "first upgrade: {}", rest.join("\n"));
        server.assert_healthy_steady("2.0", &sha(&v2).unwrap(), &run);
        let stats = load.stop();
        assert_no_failures(&stats, &run);
    });
}

/// Item 5b: two upgrades of the same server started at the same instant: exactly one
/// proceeds (exit 0), the other exits 4 (locked) — or, if it only got the lock after the
/// first had finished, is refused because the server is already at that version (exit
/// 3). Never both running, never a mixed state.
#[test]
fn two_upgrades_started_together_one_proceeds() {
    hotreload_tests::watchdog(|| {
        let server = Server::start(&["ignore=QUIT"]);
        let v2 = server.build("2.0", &[]);
        let load = server.load();
        let args = |new: &std::path::Path| -> Vec<String> {
            [
                "upgrade",
                "--pid-file",
                &server.pid_file(),
                "--new-binary",
                &new.display().to_string(),
                "--quit-timeout",
                "5s",
                "--json",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        let a_args = args(&v2);
        let b_args = a_args.clone();
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| hotreload(&a_args));
            let b = s.spawn(|| hotreload(&b_args));
            (a.join().unwrap(), b.join().unwrap())
        });
        let mut codes = [a.code, b.code];
        codes.sort();
        let loser = if a.code == Some(0) { &b } else { &a };
        if codes == [Some(0), Some(3)] {
            // The loser started only after the winner had finished (a very loaded machine):
            // it must then see that there is nothing to do.
            loser.expect_stderr("identical");
        } else {
            assert_eq!(codes, [Some(0), Some(4)], "{a}{b}");
            loser.expect_stderr("lock");
        }
        assert!(loser.signals().is_empty(), "{loser}");
        server.assert_healthy_steady("2.0", &sha(&v2).unwrap(), &format!("{a}{b}"));
        let stats = load.stop();
        assert_no_failures(&stats, &format!("{a}{b}"));
    });
}

/// Item 5c: the lock of a SIGKILLed upgrade does not block the next one.
#[test]
fn lock_of_a_killed_upgrade_does_not_block_the_next() {
    hotreload_tests::watchdog(|| {
        let server = Server::start(&[]);
        let v2 = server.build("2.0", &[]);
        let args = upgrade_args(&server, &v2, &[]);
        // Killed while it holds the lock and has changed nothing yet.
        hotreload_killed_at(&args, |e| is_step(e, "step_finished", "lock"));
        let lock = hotreload_core::Target::new(server.inst.pid_file())
            .lock_file()
            .unwrap();
        assert!(
            lock.exists(),
            "the killed upgrade left no lock file to test with"
        );
        let run = hotreload(&args);
        run.expect_code(0);
        server.assert_healthy_steady("2.0", &sha(&v2).unwrap(), &run);
    });
}
