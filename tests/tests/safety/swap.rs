//! Issue 6, item 6: the executable swap is atomic. `hotreload upgrade` is SIGKILLed
//! again and again while it installs a ≥ 100 MB executable (`--swap rename` and
//! `--swap copy`), at varied amounts of work done — measured by the size of the staged
//! temporary files growing beside the binary, never by sleeping. After every kill the
//! binary path holds the complete old or the complete new executable (by SHA-256), and
//! `hotreload rollback` puts the old one back with nothing left behind.
//!
//! The exact instants between the copy and the rename (before the backup link, between
//! link and rename, between rename and the journal update) are hit deterministically
//! with `strace --inject=...:signal=KILL` on a normal-sized executable.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Instant;

use crate::common::*;
use serde_json::Value;

const MB: u64 = 1 << 20;

/// Writes at `out` a fake-nginx variant `version` padded to at least `size` bytes: the
/// padding goes between the ELF image and the variant trailer, which must stay at the
/// very end of the file (fixtures/src/variant.rs).
fn padded_variant_at(out: &Path, version: &str, size: u64) {
    let plain = out.with_extension("plain");
    let mut f = fs::File::create(&plain).unwrap();
    f.write_all(&fs::read(hotreload_tests::fake_nginx_bin()).unwrap())
        .unwrap();
    // Pseudo-random padding, different per version: a partial copy can never pass for a
    // complete one, and old and new differ everywhere.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ (version.as_bytes()[0] as u64);
    let mut chunk = vec![0u8; MB as usize];
    let mut written = f.metadata().unwrap().len();
    while written < size {
        for b in chunk.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes()[..b.len()]);
        }
        f.write_all(&chunk).unwrap();
        written += MB;
    }
    drop(f);
    fake_nginx::variant::make_variant(&plain, out, version, &[]).unwrap();
    fake_nginx::harness::settle_executable(out).unwrap();
    fs::remove_file(&plain).unwrap();
}

/// Names of hotreload's temporary files beside `binary` (of process `pid`, or any).
fn temps(binary: &Path, pid: Option<i32>) -> Vec<PathBuf> {
    let prefix = format!(
        ".{}.hotreload-",
        binary.file_name().unwrap().to_string_lossy()
    );
    fs::read_dir(binary.parent().unwrap())
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.starts_with(&prefix)
                        && pid.map_or(true, |p| name.contains(&format!(".{p}.")))
                })
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Total size of the temporary files process `pid` has beside `binary`.
fn temp_bytes(binary: &Path, pid: i32) -> u64 {
    temps(binary, Some(pid))
        .iter()
        .filter_map(|p| fs::metadata(p).ok())
        .map(|m| m.len())
        .sum()
}

/// Starts an upgrade, waits for its swap step to start, then SIGKILLs it once the
/// temporary files beside the binary reach `after_bytes` (or the swap step finishes
/// first). Returns a description of the moment.
fn kill_during_swap(args: &[String], binary: &Path, after_bytes: u64) -> String {
    let mut child = KillOnDrop(
        Command::new(hotreload_tests::hotreload_bin())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel::<Value>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<Value>(&line) {
                if tx.send(v).is_err() {
                    break;
                }
            }
        }
    });
    let deadline = Instant::now() + COMMAND_TIMEOUT;
    // The swap step starts.
    loop {
        let e = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("hotreload ended before its swap step");
        if is_step(&e, "step_started", "swap") {
            break;
        }
    }
    let moment;
    loop {
        match rx.try_recv() {
            Ok(e) if is_step(&e, "step_finished", "swap") => {
                moment = "after the swap step finished".to_owned();
                break;
            }
            Ok(_) => {}
            Err(mpsc::TryRecvError::Disconnected) => panic!("hotreload ended inside its swap"),
            Err(mpsc::TryRecvError::Empty) => {}
        }
        let seen = temp_bytes(binary, child.pid());
        if seen >= after_bytes {
            moment = format!("with {} MB staged", seen / MB);
            break;
        }
        assert!(Instant::now() < deadline, "the swap never progressed");
        // A short poll of the file sizes (what is awaited is the copy's progress).
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    drop(rx);
    let _ = reader.join();
    moment
}

fn big_swap_survives_repeated_kills(swap: &str, kill_after_mb: &[u64], then_upgrade: bool) {
    let server = Server::start_prepared(
        |installed| padded_variant_at(installed, "1.0", 100 * MB),
        |b| b,
    );
    let new_big = server.dir.path().join("builds/nginx-2.0-big");
    fs::create_dir_all(new_big.parent().unwrap()).unwrap();
    padded_variant_at(&new_big, "2.0", 100 * MB);
    assert!(fs::metadata(&server.installed).unwrap().len() >= 100 * MB);
    let old_sha = sha(&server.installed).unwrap();
    let new_sha = sha(&new_big).unwrap();
    let old_master = server.master().unwrap();
    let load = server.load();
    let args: Vec<String> = [
        "upgrade",
        "--pid-file",
        &server.pid_file(),
        "--new-binary",
        &new_big.display().to_string(),
        "--swap",
        swap,
        "--json",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut log = Vec::new();
    for &mb in kill_after_mb {
        let moment = kill_during_swap(&args, &server.installed, mb.saturating_mul(MB));
        let installed = sha(&server.installed);
        let which = if installed.as_deref() == Some(old_sha.as_str()) {
            "old"
        } else if installed.as_deref() == Some(new_sha.as_str()) {
            "new"
        } else {
            "NEITHER"
        };
        log.push(format!(
            "killed {moment}: the binary path holds the {which} executable"
        ));
        let ctx = format!("\n{}", log.join("\n"));
        assert_ne!(which, "NEITHER", "partial or missing executable{ctx}");
        if which == "new" {
            assert_eq!(
                sha(&server.backup()).as_deref(),
                Some(old_sha.as_str()),
                "new executable in place but no complete backup of the old one{ctx}"
            );
        }
        let run = hotreload(&["rollback", "--pid-file", &server.pid_file()]);
        log.push(format!("  rollback -> exit {:?}", run.code));
        let ctx = format!("{run}\n{}", log.join("\n"));
        assert!(matches!(run.code, Some(0) | Some(3)), "{ctx}");
        server.assert_healthy_steady("1.0", &old_sha, &ctx);
        assert_eq!(server.master(), Some(old_master), "{ctx}");
    }
    let ctx = log.join("\n");
    if !then_upgrade {
        let stats = load.stop();
        assert_no_failures(&stats, &ctx);
        return;
    }
    // Then the upgrade runs through, and cleans up what the killed ones left.
    let mut full = args.clone();
    full.retain(|a| a != "--json");
    let run = hotreload(&full);
    let ctx = format!("{run}\n{}", log.join("\n"));
    run.expect_code(0);
    server.assert_healthy_steady("2.0", &new_sha, &ctx);
    assert_eq!(
        temps(&server.installed, None),
        Vec::<PathBuf>::new(),
        "temporary files left beside the binary{ctx}"
    );
    let stats = load.stop();
    assert_no_failures(&stats, &ctx);
}

#[test]
fn big_rename_swap_survives_repeated_kills() {
    hotreload_tests::watchdog(|| {
        // Staged copy at 50 MB, complete (100 MB), and after the swap step.
        big_swap_survives_repeated_kills("rename", &[50, 100, u64::MAX], true);
    });
}

#[test]
fn big_copy_swap_survives_repeated_kills() {
    hotreload_tests::watchdog(|| {
        // The copy swap stages the new file and a copy of the old one: 200 MB of temps.
        // Killed with the new file half staged, the backup copy half made, and after the swap
        // step; then a full upgrade must still go through.
        big_swap_survives_repeated_kills("copy", &[50, 150, u64::MAX], true);
    });
}

/// Runs `hotreload args` under `strace`, which SIGKILLs it on entry to the `when`-th call
/// of one of `syscalls` (deterministic: no timing involved). Returns strace's exit code.
///
/// strace counts each thread's calls on its own. `-f` traces them all (the swap's first
/// journal is written on a thread beside the config test) and the children (the config
/// test renames and links nothing).
pub(crate) fn hotreload_killed_on_syscall(
    args: &[String],
    syscalls: &str,
    when: u32,
) -> Option<i32> {
    hotreload_killed_on_syscall_traced(args, syscalls, when, true)
}

/// [`hotreload_killed_on_syscall`], tracing every thread (`every_thread`, `-f`) or the main
/// thread only: the install's own renames, without the first journal's.
pub(crate) fn hotreload_killed_on_syscall_traced(
    args: &[String],
    syscalls: &str,
    when: u32,
    every_thread: bool,
) -> Option<i32> {
    let mut strace = Command::new("strace");
    if every_thread {
        strace.arg("-f");
    }
    let status = strace
        .args(["-qq", "-o", "/dev/null", "-e"])
        .arg(format!("trace={syscalls}"))
        .arg("-e")
        .arg(format!("inject={syscalls}:signal=KILL:when={when}"))
        .arg(hotreload_tests::hotreload_bin())
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run strace (install it: the deterministic swap windows need it)");
    status.code()
}

/// The instants inside the install that no event marks, hit exactly: the journal is
/// written (rename #1, on the thread beside the config test), the new file staged, then
/// the old one hard-linked to the backup (link), renamed over (the main thread's rename
/// #1), and the journal updated (its rename #2). After a kill at
/// each, the binary path holds a complete executable, and `hotreload rollback` leaves the
/// old one in place with no backup or journal behind — so the next upgrade can run.
/// (The instant between link and rename has its own test below.)
#[test]
#[cfg_attr(missing_strace, ignore = "needs strace: apt-get install strace")]
fn swap_killed_at_each_syscall_of_the_install() {
    hotreload_tests::watchdog(|| {
        let server = Server::start(&[]);
        let new = server.build("2.0", &[]);
        let old_sha = sha(&server.installed).unwrap();
        let new_sha = sha(&new).unwrap();
        let load = server.load();
        let args: Vec<String> = [
            "upgrade",
            "--pid-file",
            &server.pid_file(),
            "--new-binary",
            &new.display().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let renames = "rename,renameat,renameat2";
        let links = "link,linkat";
        let mut log = Vec::new();
        for (what, syscalls, when) in [
            ("before the journal is first written", renames, 1),
            ("staged, before the backup link", links, 1),
            ("renamed over, before the journal update", renames, 2),
        ] {
            let code = hotreload_killed_on_syscall(&args, syscalls, when);
            let installed = sha(&server.installed);
            let which = if installed.as_deref() == Some(old_sha.as_str()) {
                "old"
            } else if installed.as_deref() == Some(new_sha.as_str()) {
                "new"
            } else {
                "NEITHER"
            };
            log.push(format!(
                "killed {what} (strace exit {code:?}): binary path holds the {which} executable, \
                 backup {}, journal {}",
                if server.backup().exists() {
                    "present"
                } else {
                    "absent"
                },
                if server.journal().exists() {
                    "present"
                } else {
                    "absent"
                },
            ));
            let ctx = format!("\n{}", log.join("\n"));
            assert_ne!(which, "NEITHER", "partial or missing executable{ctx}");
            if which == "new" {
                assert_eq!(
                    sha(&server.backup()).as_deref(),
                    Some(old_sha.as_str()),
                    "no backup of the old executable{ctx}"
                );
            }
            let run = hotreload(&["rollback", "--pid-file", &server.pid_file()]);
            log.push(format!("  rollback -> exit {:?}", run.code));
            let ctx = format!("{run}\n{}", log.join("\n"));
            assert!(matches!(run.code, Some(0) | Some(3)), "{ctx}");
            server.assert_healthy_steady("1.0", &old_sha, &ctx);
            server.assert_next_upgrade_possible(&new);
        }
        let stats = load.stop();
        assert_no_failures(&stats, &log.join("\n"));
    });
}
