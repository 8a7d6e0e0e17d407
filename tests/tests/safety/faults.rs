//! Issue 6, item 2: every server fault, under client load, ends in a documented state
//! with the exit code that says which — and no client request fails.
//!
//! One table, one test per row (so rows run in parallel and fail separately). Each row
//! starts its own fake-nginx 1.0 (with the row's faults baked into the *old* build when
//! the fault is the running server's), puts 4 clients on it, runs `hotreload upgrade
//! --json` to a 2.0 build (with the row's faults when the fault is the new build's), and
//! then checks: the exit code and `result.outcome`, which version serves, which master
//! runs, the executable at the binary path (by hash), no journal or backup left, no stray
//! process, and the load's failure count.

use crate::common::*;

/// One row of the fault matrix.
struct Case {
    /// Faults of the running (old, 1.0) build.
    old_faults: &'static [&'static str],
    /// Faults of the new (2.0) build.
    new_faults: &'static [&'static str],
    /// Extra `hotreload upgrade` arguments; `{url}` is replaced by the server's URL.
    args: &'static [&'static str],
    /// Expected exit code (0 committed, 1 rolled back, 3 refused).
    code: i32,
    /// Expected `result.outcome`.
    outcome: &'static str,
    /// Text the error on stderr must contain (empty: none required).
    stderr: &'static str,
    /// Signals that must NOT have been sent (e.g. no WINCH while the new master has no
    /// workers: that would leave nobody to accept connections).
    never: &'static [&'static str],
    /// Signals that must have been sent.
    sent: &'static [&'static str],
    /// The build answers 500 by design: only connection-level failures count.
    http_errors_expected: bool,
}

fn run_case(case: &Case) {
    let server = Server::start(case.old_faults);
    let old_master = server.master().expect("master");
    let old_sha = sha(&server.installed).unwrap();
    let new = server.build("2.0", case.new_faults);
    let new_sha = sha(&new).unwrap();
    let url = format!("http://{}/", server.inst.addr());
    let mut args = upgrade_args(&server, &new, &[]);
    args.extend(case.args.iter().map(|a| a.replace("{url}", &url)));

    let load = server.load();
    let run = hotreload(&args);
    // The end state must serve too: keep the load on until it has been checked.
    let committed = case.code == 0;
    run.expect_code(case.code);
    if !case.stderr.is_empty() {
        run.expect_stderr(case.stderr);
    }
    let result = run.result();
    assert_eq!(result["outcome"], case.outcome, "{run}");
    let signals = run.signals();
    if case.code == 3 {
        assert!(
            signals.is_empty(),
            "a refusal sent signals: {signals:?}{run}"
        );
    }
    for never in case.never {
        assert!(signals.iter().all(|s| s != never), "{never} was sent{run}");
    }
    for sent in case.sent {
        assert!(
            signals.iter().any(|s| s == sent),
            "{sent} was not sent{run}"
        );
    }
    if committed {
        server.assert_healthy_steady("2.0", &new_sha, &run);
        assert_ne!(server.master(), Some(old_master), "{run}");
        assert!(!alive(old_master), "old master still runs{run}");
    } else {
        server.assert_healthy_steady("1.0", &old_sha, &run);
        assert_eq!(server.master(), Some(old_master), "{run}");
    }
    let stats = load.stop();
    eprintln!(
        "load: {} ok, {} failed ({} non-2xx), versions {:?}",
        stats.ok, stats.failed, stats.non_2xx, stats.versions
    );
    if case.http_errors_expected {
        assert_no_connection_failures(&stats, &run);
    } else {
        assert_no_failures(&stats, &run);
    }
}

macro_rules! fault_matrix {
    ($($name:ident: $case:expr;)*) => {
        $(
            #[test]
            fn $name() {
                hotreload_tests::watchdog(|| {
                    run_case(&$case);
                });
            }
        )*
    };
}

const NONE: &[&str] = &[];

fault_matrix! {
    // The new build exits at once: the old master takes its pid file back.
    fault_crash_on_start_rolls_back_exit_1: Case {
        old_faults: NONE, new_faults: &["crash-on-start"], args: NONE,
        code: 1, outcome: "rolled-back", stderr: "upgrade failed",
        never: &["SIGWINCH->old-master"], sent: &["SIGUSR2->old-master"], http_errors_expected: false,
    };
    // The new master never writes its pid file: at the spawn deadline it is stopped
    // (it ignores TERM, so KILL) and the old master takes the pid file back.
    fault_hang_on_start_rolls_back_exit_1: Case {
        old_faults: NONE, new_faults: &["hang-on-start"],
        args: &["--spawn-timeout", "3s", "--quit-timeout", "2s"],
        code: 1, outcome: "rolled-back", stderr: "upgrade failed",
        never: &["SIGWINCH->old-master"], sent: &["SIGUSR2->old-master"], http_errors_expected: false,
    };
    // The new master runs without workers: it must never be given the traffic (no
    // WINCH to the old master), the upgrade rolls back.
    fault_no_workers_rolls_back_exit_1: Case {
        old_faults: NONE, new_faults: &["no-workers"],
        args: &["--spawn-timeout", "4s", "--quit-timeout", "2s"],
        code: 1, outcome: "rolled-back", stderr: "upgrade failed",
        never: &["SIGWINCH->old-master"], sent: &["SIGUSR2->old-master"], http_errors_expected: false,
    };
    // The new build answers 500: the health check fails and the upgrade rolls back
    // before the old workers are drained.
    fault_http_500_with_health_url_rolls_back_exit_1: Case {
        old_faults: NONE, new_faults: &["http-500"],
        args: &["--health-url", "{url}"],
        code: 1, outcome: "rolled-back", stderr: "health",
        never: &["SIGQUIT->old-master"], sent: &["SIGUSR2->old-master", "SIGQUIT->new-master"], http_errors_expected: true,
    };
    // Old workers keep serving long requests past the drain deadline: roll back (the
    // default), nobody's request cut short.
    fault_slow_drain_past_deadline_rolls_back_exit_1: Case {
        old_faults: &["slow-drain=30s"], new_faults: NONE,
        args: &["--drain-timeout", "2s"],
        code: 1, outcome: "rolled-back", stderr: "upgrade failed",
        never: &["SIGQUIT->old-master"], sent: &["SIGWINCH->old-master", "SIGHUP->old-master"], http_errors_expected: false,
    };
    // The running master ignores USR2: nothing starts; reported, executable put back.
    fault_ignore_usr2_rolls_back_exit_1: Case {
        old_faults: &["ignore=USR2"], new_faults: NONE, args: NONE,
        code: 1, outcome: "rolled-back", stderr: "USR2",
        never: &["SIGWINCH->old-master", "SIGQUIT->old-master"], sent: &["SIGUSR2->old-master"], http_errors_expected: false,
    };
    // The running master ignores WINCH: its workers never stop; at the drain deadline
    // the upgrade rolls back.
    fault_ignore_winch_rolls_back_exit_1: Case {
        old_faults: &["ignore=WINCH"], new_faults: NONE,
        args: &["--drain-timeout", "2s"],
        code: 1, outcome: "rolled-back", stderr: "upgrade failed",
        never: &["SIGQUIT->old-master"], sent: &["SIGWINCH->old-master"], http_errors_expected: false,
    };
    // The old master ignores QUIT at retire: past the quit deadline it gets TERM, and the
    // upgrade is committed.
    fault_ignore_quit_at_retire_escalates_to_term_exit_0: Case {
        old_faults: &["ignore=QUIT"], new_faults: NONE,
        args: &["--quit-timeout", "1s"],
        code: 0, outcome: "committed", stderr: "",
        never: NONE, sent: &["SIGQUIT->old-master", "SIGTERM->old-master"], http_errors_expected: false,
    };
    // The new build rejects the running configuration: refused before any change.
    fault_bad_config_is_refused_exit_3: Case {
        old_faults: NONE, new_faults: &["bad-config"], args: NONE,
        code: 3, outcome: "refused", stderr: "config",
        never: NONE, sent: NONE,
        http_errors_expected: false,
    };
}
