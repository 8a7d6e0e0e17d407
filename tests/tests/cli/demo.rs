//! `hotreload demo` end to end: it must upgrade under load with zero failed requests,
//! show the rollback of a broken build, and clean up after itself, also on Ctrl-C.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use hotreload_tests::{hotreload_bin, procs};
use serde_json::Value;

const DEMO_TIMEOUT: Duration = Duration::from_secs(300);

/// Kills the demo (and so, through its cleanup, its servers) if a test panics.
struct Demo(Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn alive(pid: i64) -> bool {
    procs::alive(pid as i32)
}

#[test]
fn demo_json_reports_zero_failed_requests() {
    hotreload_tests::watchdog(|| {
        let output = assert_cmd::Command::new(hotreload_bin())
            .args(["demo", "--json"])
            .timeout(DEMO_TIMEOUT)
            .output()
            .expect("run hotreload demo");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let context = format!("\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
        let lines: Vec<Value> = stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}{context}"))
            })
            .collect();
        let result = &lines.last().expect("output")["data"];
        assert_eq!(lines.last().unwrap()["type"], "result", "{context}");
        assert_eq!(output.status.code(), Some(0), "{context}");
        assert_eq!(result["exit_code"], 0, "{context}");
        assert_eq!(result["requests_failed"], 0, "{context}");
        assert!(result["requests_ok"].as_u64().unwrap() > 0, "{context}");
        let versions = result["versions"].as_object().unwrap();
        assert!(versions.keys().any(|v| v.contains("1.0")), "{context}");
        assert!(versions.keys().any(|v| v.contains("2.0")), "{context}");
        assert!(
            !versions.keys().any(|v| v.contains("3.0")),
            "the broken build served{context}"
        );
        let upgrades = result["upgrades"].as_array().unwrap();
        assert_eq!(upgrades[0]["outcome"], "committed", "{context}");
        assert_eq!(upgrades[1]["outcome"], "rolled-back", "{context}");
        assert!(lines.iter().any(|l| l["type"] == "signalled"), "{context}");

        // Cleaned up: the work directory is gone and the servers are no more.
        let dir = lines
            .iter()
            .find_map(|l| l["data"]["dir"].as_str())
            .expect("demo names its dir");
        assert!(
            !std::path::Path::new(dir).exists(),
            "{dir} left behind{context}"
        );
        for line in lines.iter().filter(|l| l["type"] == "demo") {
            if let Some(pid) = line["data"]["master_pid"]
                .as_str()
                .and_then(|p| p.parse().ok())
            {
                assert!(!alive(pid), "demo master {pid} left running{context}");
            }
        }
    });
}

#[test]
fn demo_human_summary() {
    hotreload_tests::watchdog(|| {
        let output = assert_cmd::Command::new(hotreload_bin())
            .arg("demo")
            .timeout(DEMO_TIMEOUT)
            .output()
            .expect("run hotreload demo");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        let context = format!("\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
        assert_eq!(output.status.code(), Some(0), "{context}");
        for needle in [
            "requests served",
            "requests failed   0",
            "versions seen",
            "rolled back as expected",
            "SIGUSR2",
            "result            OK",
        ] {
            assert!(stdout.contains(needle), "missing {needle:?}{context}");
        }
    });
}

/// Live processes whose command line mentions `needle` (the demo's directory: every
/// fake-nginx it starts runs an executable inside it).
fn processes_mentioning(needle: &str) -> Vec<i64> {
    procs::all_pids()
        .into_iter()
        .filter(|&pid| {
            procs::alive(pid) && procs::title_of(pid).is_some_and(|t| t.contains(needle))
        })
        .map(i64::from)
        .collect()
}

/// Starts `hotreload demo --json`, reads its events until `ready` says so, sends
/// `signal`, and checks that it exits with 128 + signal having killed its servers and
/// removed its directory.
fn interrupt_demo(signal: nix::sys::signal::Signal, ready: impl Fn(&Value) -> bool) {
    let child = Command::new(hotreload_bin())
        .args(["demo", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start demo");
    let mut demo = Demo(child);
    let stdout = demo.0.stdout.take().unwrap();
    // Lines arrive on a channel so that a demo that hangs fails the test at the deadline
    // instead of blocking it forever.
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + DEMO_TIMEOUT;
    let mut dir = None;
    let mut master = None;
    // Read events until the demo reports the point to interrupt it at (a handshake).
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines_rx
            .recv_timeout(left)
            .expect("the demo did not get there in time");
        let value: Value = serde_json::from_str(&line).expect("JSON line");
        if let Some(d) = value["data"]["dir"].as_str() {
            dir = Some(d.to_owned());
        }
        if let Some(pid) = value["data"]["master_pid"].as_str() {
            master = pid.parse::<i64>().ok();
        }
        if ready(&value) {
            break;
        }
    }
    let dir = dir.expect("the demo names its directory first");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(demo.0.id() as i32), signal)
        .expect("signal the demo");
    let status =
        hotreload_tests::poll::try_poll(DEMO_TIMEOUT, || demo.0.try_wait().expect("wait demo"));
    assert!(status.is_some(), "the demo ignored {signal}");
    let status = status.unwrap();
    assert_eq!(
        status.code(),
        Some(128 + signal as i32),
        "demo exit after {signal}"
    );
    // SIGKILL is delivered asynchronously: give the kernel a (generous) moment.
    hotreload_tests::poll::try_poll(hotreload_tests::LONG, || {
        processes_mentioning(&dir).is_empty().then_some(())
    });
    assert_eq!(
        processes_mentioning(&dir),
        Vec::<i64>::new(),
        "demo processes survived {signal}"
    );
    if let Some(master) = master {
        assert!(!alive(master), "demo master {master} survived {signal}");
    }
    assert!(
        !std::path::Path::new(&dir).exists(),
        "{dir} survived {signal}"
    );
}

#[test]
fn demo_cleans_up_on_ctrl_c() {
    hotreload_tests::watchdog(|| {
        // Once the server runs under load.
        interrupt_demo(nix::sys::signal::Signal::SIGINT, |event| {
            event["data"]["clients"].is_u64()
        });
    });
}

#[test]
fn demo_cleans_up_on_sigterm_while_starting() {
    hotreload_tests::watchdog(|| {
        // As early as possible: right after it made its directory, while it builds and starts.
        interrupt_demo(nix::sys::signal::Signal::SIGTERM, |event| {
            event["data"]["dir"].is_string()
        });
    });
}
