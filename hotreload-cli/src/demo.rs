//! `hotreload demo`: a zero-downtime upgrade and an automatic rollback, shown live on a
//! throw-away fake-nginx under client load, with no setup.
//!
//! The fake-nginx builds are copies of this very executable with a variant trailer
//! (`fake_nginx::variant::make_variant`); `main` hands control to fake-nginx when such a
//! copy runs. So the demo works from a fresh clone with only `cargo run`.
//!
//! Everything it starts lives in [`Work`], which one place drops: the normal end of the
//! demo, or the Ctrl-C/SIGTERM thread (see [`crate::interrupt`]). Dropping the harness
//! instance SIGKILLs every process of the server; dropping the `TempDir` removes it.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fake_nginx::harness::Instance;
use fake_nginx::load::{Load, LoadConfig, LoadStats};
use fake_nginx::variant::{make_variant, Fault};
use hotreload_core::{upgrade, HttpCheck, Target, UpgradeError, UpgradeOptions, UpgradeReport};

use crate::args::DemoArgs;
use crate::commands::{error_chain, exit_of_failure, outcome_of};
use crate::exit::Exit;
use crate::printer::{fmt_duration, DemoNote, Printer};
use crate::report::{
    step_times, Body, CommandName, DemoAttempt, DemoFailures, DemoSummary, OutcomeKind, Report,
};

const V1: &str = "1.0";
const V2: &str = "2.0";
const V3: &str = "3.0";

/// Generous: the demo also runs inside tests on two slow, busy cores.
const LOAD_DEADLINE: Duration = Duration::from_secs(20);

/// Responses each version must serve before the demo moves on: the upgrade itself takes
/// well under a second, and the counts should show traffic before, during and after it.
const LOAD_PER_PHASE: u64 = 300;

/// Everything the demo must clean up, dropped in field order: the clients first (so no
/// request is counted against a server being killed), then the server, then the files.
struct Work {
    load: Option<Load>,
    instance: Option<Instance>,
    dir: tempfile::TempDir,
}

type SharedWork = Arc<Mutex<Option<Work>>>;

fn with_work<T>(work: &SharedWork, f: impl FnOnce(&mut Work) -> T) -> Option<T> {
    let mut guard = work.lock().unwrap_or_else(|p| p.into_inner());
    guard.as_mut().map(f)
}

fn demo_report(outcome: OutcomeKind, exit: Exit) -> Report {
    Report::new(CommandName::Demo, outcome, exit, std::path::PathBuf::new())
}

pub fn run(args: &DemoArgs, printer: Printer) -> Exit {
    let out = Arc::new(printer);
    let work: SharedWork = Arc::new(Mutex::new(None));

    // Cleanup on Ctrl-C/SIGTERM: a thread waits on the self-pipe, drops the work (killing
    // the server, removing the files) and exits with 128 + signal.
    match crate::interrupt::install() {
        Ok(mut read_end) => {
            let work = Arc::clone(&work);
            let out = Arc::clone(&out);
            std::thread::spawn(move || {
                let signal = crate::interrupt::wait(&mut read_end);
                out.error("interrupted: stopping the demo server and removing its files", None);
                // The lock stays held until the process exits, so the main thread cannot
                // start a server after this cleanup.
                let mut guard = work.lock().unwrap_or_else(|p| p.into_inner());
                let dir = guard.as_ref().map(|w| w.dir.path().to_path_buf());
                drop(guard.take());
                if let Some(dir) = dir {
                    remove_dir_racing_writers(&dir);
                }
                let exit = Exit::Interrupted(signal);
                out.finish(&demo_report(OutcomeKind::Interrupted, exit));
                std::process::exit(i32::from(exit.code()));
            });
        }
        Err(err) => out.error(
            &format!("could not install the Ctrl-C handler ({err}); an interrupted demo may leave processes behind"),
            None,
        ),
    }

    let result = demo(args, &out, &work);
    // Normal end (success or failure): same cleanup as on Ctrl-C.
    let taken = work.lock().unwrap_or_else(|p| p.into_inner()).take();
    drop(taken);
    match result {
        Ok(exit) => exit,
        Err(message) => {
            out.finish(
                &demo_report(OutcomeKind::Failed, Exit::RolledBack)
                    .with_failure(message, Some(crate::advice::Advice::ReportBug)),
            );
            Exit::RolledBack
        }
    }
}

/// Removes `dir` although the main thread, still running, may be writing into it (a
/// build, a swap): a `remove_dir_all` that meets a file created after it listed the
/// directory fails, so try again; once the directories are gone nothing new can appear.
fn remove_dir_racing_writers(dir: &Path) {
    for _ in 0..200 {
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                std::thread::sleep(Duration::from_millis(10));
            }
            _ => return,
        }
    }
}

/// Polls `cond` (a counter in the load generator: there is no event to wait on) until
/// it holds or the deadline passes, showing progress meanwhile.
fn wait_for(out: &Printer, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    let mut next_report = start;
    loop {
        if cond() {
            return true;
        }
        let elapsed = start.elapsed();
        if elapsed >= timeout {
            return false;
        }
        if Instant::now() >= next_report {
            out.progress(what, elapsed, timeout);
            next_report += Duration::from_millis(500);
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

fn served_by(stats: &LoadStats, version: &str) -> u64 {
    stats
        .versions
        .iter()
        .filter(|(server, _)| server_is(server, version))
        .map(|(_, n)| *n)
        .sum()
}

/// The Server header is `fake-nginx/<version>`; accept a bare version too.
fn server_is(server: &str, version: &str) -> bool {
    server == version || server.rsplit('/').next() == Some(version)
}

fn snapshot(work: &SharedWork) -> Option<LoadStats> {
    with_work(work, |w| w.load.as_ref().map(Load::snapshot)).flatten()
}

fn demo(args: &DemoArgs, out: &Printer, work: &SharedWork) -> Result<Exit, String> {
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("hotreload-demo-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let root = dir.path().to_path_buf();
    // Owned by the shared cleanup from now on, so Ctrl-C during the builds removes it too.
    *work.lock().unwrap_or_else(|p| p.into_inner()) = Some(Work {
        load: None,
        instance: None,
        dir,
    });
    out.demo(&DemoNote::Intro {
        from: V1,
        to: V2,
        broken: V3,
        dir: &root,
    });
    out.demo(&DemoNote::WorkDir { dir: &root });

    // The builds: copies of this executable that run as fake-nginx of a given version.
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
    let sbin = root.join("sbin");
    let builds = root.join("builds");
    // create_dir, not create_dir_all: after a Ctrl-C cleanup removed the work directory,
    // this must fail rather than bring it back.
    for d in [&sbin, &builds] {
        std::fs::create_dir(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let installed = sbin.join("fake-nginx");
    let v2 = builds.join(format!("fake-nginx-{V2}"));
    let v3 = builds.join(format!("fake-nginx-{V3}-crash-on-start"));
    let crash: Fault = "crash-on-start"
        .parse()
        .map_err(|e| format!("fault `crash-on-start` not understood by fake-nginx: {e:?}"))?;
    build(&exe, &installed, V1, &[])?;
    build(&exe, &v2, V2, &[])?;
    build(&exe, &v3, V3, &[crash])?;
    out.demo(&DemoNote::Builds {
        from: V1,
        to: V2,
        broken: V3,
        installed: &installed,
        v2: &v2,
        v3: &v3,
    });

    // The server: the harness runs the installed path, so an upgrade really swaps it.
    // Started while holding the cleanup lock: a Ctrl-C meanwhile waits for the instance
    // to exist and be recorded, then kills it, instead of leaving it running.
    let (addr, pid_file, master) = {
        let mut guard = work.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            return Err("interrupted".to_owned());
        }
        let instance = Instance::builder(&installed)
            .workers(usize::from(args.workers))
            .daemon(true)
            .start()
            .map_err(|e| format!("cannot start fake-nginx {}: {e}", installed.display()))?;
        let facts = (
            instance.addr(),
            instance.pid_file().to_path_buf(),
            instance.master_pid(),
        );
        if let Some(w) = guard.as_mut() {
            w.instance = Some(instance);
        }
        facts
    };
    out.demo(&DemoNote::Server {
        version: V1,
        master,
        workers: args.workers,
        addr,
        pid_file: &pid_file,
    });

    // The clients: half keep-alive, half a new connection per request.
    let load = Load::start(LoadConfig::new(addr).clients(usize::from(args.clients)));
    with_work(work, |w| w.load = Some(load));
    out.demo(&DemoNote::Load {
        clients: args.clients,
    });
    if !wait_for(
        out,
        &format!("{LOAD_PER_PHASE} responses from {V1}"),
        LOAD_DEADLINE,
        || snapshot(work).is_some_and(|s| s.ok >= LOAD_PER_PHASE),
    ) {
        return Err(format!(
            "the clients got no responses from http://{addr}/ within {}",
            fmt_duration(LOAD_DEADLINE)
        ));
    }

    // Its own state home in the work directory: the demo leaves nothing behind, and runs
    // for a user without XDG_RUNTIME_DIR too.
    let target = Target::new(pid_file.clone())
        .binary(installed.clone())
        .state_dir(root.join("state"));
    let health = || HttpCheck::new(&format!("http://{addr}/")).map_err(|e| error_chain(&e));
    let mut attempts = Vec::new();

    // 1. A good upgrade: committed, and the clients see the new version.
    out.demo(&DemoNote::Upgrade {
        from: V1,
        to: V2,
        broken: false,
    });
    let options = UpgradeOptions::new()
        .new_binary(v2.clone())
        .health_check(Box::new(health()?));
    let first = upgrade(&target, &options, out);
    let mut attempt = attempt_of(V2, "committed", &first);
    if attempt.as_expected {
        attempt.as_expected = wait_for(
            out,
            &format!("{LOAD_PER_PHASE} responses from {V2}"),
            LOAD_DEADLINE,
            || snapshot(work).is_some_and(|s| served_by(&s, V2) >= LOAD_PER_PHASE),
        );
        if !attempt.as_expected {
            attempt.error = Some(format!("no client saw version {V2} after the upgrade"));
        }
    }
    report_attempt(out, &attempt, &first);
    let first_ok = attempt.as_expected;
    attempts.push(attempt);

    // 2. A broken build: the new master crashes on start; hotreload rolls back and
    //    the previous version keeps serving.
    if first_ok {
        out.demo(&DemoNote::Upgrade {
            from: V2,
            to: V3,
            broken: true,
        });
        let options = UpgradeOptions::new()
            .new_binary(v3.clone())
            .health_check(Box::new(health()?));
        let second = upgrade(&target, &options, out);
        let mut attempt = attempt_of(V3, "rolled-back", &second);
        if attempt.as_expected {
            let before = snapshot(work).map(|s| served_by(&s, V2)).unwrap_or(0);
            attempt.as_expected = wait_for(
                out,
                &format!("{LOAD_PER_PHASE} more responses from {V2}"),
                LOAD_DEADLINE,
                || snapshot(work).is_some_and(|s| served_by(&s, V2) >= before + LOAD_PER_PHASE),
            );
            if !attempt.as_expected {
                attempt.error = Some(format!("{V2} did not keep serving after the rollback"));
            }
        }
        report_attempt(out, &attempt, &second);
        attempts.push(attempt);
    }

    let stats = with_work(work, |w| w.load.take().map(Load::stop))
        .flatten()
        .ok_or("the load generator disappeared")?;
    let all_expected = attempts.len() == 2 && attempts.iter().all(|a| a.as_expected);
    let ok = all_expected && stats.failed == 0;
    summary(out, &stats, attempts, started.elapsed(), ok);
    Ok(if ok { Exit::Success } else { Exit::RolledBack })
}

fn build(exe: &Path, out: &Path, version: &str, faults: &[Fault]) -> Result<(), String> {
    make_variant(exe, out, version, faults).map_err(|e| {
        format!(
            "cannot build fake-nginx {version} at {}: {e}",
            out.display()
        )
    })
}

fn attempt_of(
    to: &'static str,
    expected: &'static str,
    result: &Result<UpgradeReport, UpgradeError>,
) -> DemoAttempt {
    let (outcome, steps, error) = match result {
        Ok(report) => (outcome_of(report.outcome).0, &report.steps, None),
        Err(failure) => (
            OutcomeKind::of_failure(exit_of_failure(&failure.kind)),
            &failure.report.steps,
            Some(error_chain(&failure.error)),
        ),
    };
    DemoAttempt {
        to,
        expected,
        outcome: outcome.as_str().to_owned(),
        steps: step_times(steps),
        error,
        as_expected: outcome.as_str() == expected,
    }
}

fn report_attempt(
    out: &Printer,
    attempt: &DemoAttempt,
    result: &Result<UpgradeReport, UpgradeError>,
) {
    let (old, new) = match result {
        Ok(report) => (report.old_pid, report.new_pid),
        Err(failure) => (failure.report.old_pid, failure.report.new_pid),
    };
    out.demo(&DemoNote::Attempt {
        attempt,
        old,
        new,
        serving: V2,
    });
}

fn summary(
    out: &Printer,
    stats: &LoadStats,
    attempts: Vec<DemoAttempt>,
    total: Duration,
    ok: bool,
) {
    // In the order the clients first saw them: the story of the upgrade.
    let versions = stats
        .versions_in_order()
        .iter()
        .map(|server| {
            (
                server.to_string(),
                stats.versions.get(server.as_str()).copied().unwrap_or(0),
            )
        })
        .collect();
    let failures = (stats.failed != 0).then(|| {
        (
            DemoFailures {
                refused: stats.refused,
                reset: stats.reset,
                truncated: stats.truncated,
                non_2xx: stats.non_2xx,
                other: stats.other,
            },
            stats.errors.clone(),
        )
    });
    let exit = if ok { Exit::Success } else { Exit::RolledBack };
    let mut report = demo_report(
        if ok {
            OutcomeKind::Ok
        } else {
            OutcomeKind::Failed
        },
        exit,
    );
    if !ok {
        report = report.with_failure(
            "the demo did not go as it should (see the upgrades and requests_failed)".to_owned(),
            None,
        );
    }
    report.body = Body::Demo(Box::new(DemoSummary {
        requests_ok: stats.ok,
        requests_failed: stats.failed,
        failures,
        retried_idle_keepalive: stats.retried_idle_keepalive,
        versions,
        upgrades: attempts,
        total,
    }));
    out.finish(&report);
}
