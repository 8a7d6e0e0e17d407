//! The benchmark of issue 7: hotreload against the upgrade recipes people use today and
//! against a busy-polling oracle (the physical limit), on fake-nginx and on real nginx
//! (Debian 12's 1.22.1 deb12u9 → deb12u11), in the same run.
//!
//! ```text
//! cargo bench -p hotreload-tests --bench upgrade              # full run, writes BENCHMARKS.md
//! cargo bench -p hotreload-tests --bench upgrade -- --quick   # smoke run (a few minutes)
//!     [--only 1,2,3,4,5,6,7] [--server fake|real] [--out PATH]
//! ```
//!
//! Issue 14's targets table comes first in the output (`report14.rs`); scenarios 6 (the
//! swap alone against a durable `cp`) and 7 (the demo's upgrade step, debug build) are
//! its own measurements (`issue14.rs`).
//!
//! Scenarios: 1 dropped requests (64 clients) across 20 upgrades, hotreload vs plain
//! restarts vs `make upgrade`, with a `wrk` cross-check; 2 upgrade latency against the
//! oracle; 3 orchestrator CPU during a 5 s drain; 4 discovery/`status` time against
//! workers and unrelated processes; 5 one process upgrading 1/10/50 instances in
//! parallel. Targets are reported (met or missed, by how much), never asserted.
//!
//! Loads only on 127.0.0.1, bounded in count and time. Every server process lives in a
//! session this benchmark started and is SIGKILLed when its `Server` is dropped, panic
//! or not; helpers (wrk, sleepers) are killed and reaped the same way. The benchmark
//! binary also serves as the oracle and library child processes (`--child ...`), so
//! that their CPU time is measured alone.

mod issue14;
mod methods;
mod report;
mod report14;
mod scenarios;
mod server;
mod setup;
mod sys;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use methods::Tools;
use report::Report;
use scenarios::Plan;
use server::Kind;

struct Args {
    quick: bool,
    only: Vec<u32>,
    servers: Vec<Kind>,
    out: Option<PathBuf>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        quick: false,
        only: vec![1, 2, 3, 4, 5, 6, 7],
        servers: vec![Kind::Fake, Kind::Real],
        out: None,
    };
    let mut it = args.iter().skip(1);
    while let Some(arg) = it.next() {
        let (key, inline) = match arg.split_once('=') {
            Some((k, v)) => (k, Some(v.to_string())),
            None => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or(format!("{key} needs a value"))
        };
        match key {
            "--bench" => {}
            "--quick" => a.quick = true,
            "--only" => {
                a.only = value()?
                    .split(',')
                    .map(|n| n.trim().parse().map_err(|_| format!("bad scenario {n:?}")))
                    .collect::<Result<_, _>>()?
            }
            "--server" => {
                a.servers = match value()?.as_str() {
                    "fake" => vec![Kind::Fake],
                    "real" => vec![Kind::Real],
                    "both" => vec![Kind::Fake, Kind::Real],
                    v => return Err(format!("--server fake|real|both, not {v}")),
                }
            }
            "--out" => a.out = Some(PathBuf::from(value()?)),
            other if other.starts_with("--") => return Err(format!("unknown option {other}")),
            _ => {} // a filter from `cargo bench NAME`: ignored
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if let Some(code) = methods::child_main(&argv) {
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("upgrade bench: {e}");
            return ExitCode::from(2);
        }
    };
    // Interrupted (Ctrl-C, timeout): kill every server and helper before exiting. The
    // signals are blocked here, before any thread exists, and waited for by one thread
    // (children get a clean mask: std resets it before exec).
    // SAFETY: plain sigset manipulation and pthread_sigmask on this (only) thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        std::thread::spawn(move || {
            let mut sig = 0;
            libc::sigwait(&set, &mut sig);
            eprintln!("upgrade bench: signal {sig}: killing every server and helper");
            server::kill_everything();
            std::process::exit(128 + sig);
        });
    }
    let started = Instant::now();
    let plan = Plan::new(args.quick);
    let full = !args.quick && args.only.len() == 7 && args.servers.len() == 2;
    let out = args.out.clone().unwrap_or_else(|| {
        if full {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("tests/ is inside the workspace")
                .join("BENCHMARKS.md")
        } else {
            setup::bin_dir().join("BENCHMARKS-partial.md")
        }
    });
    let mut command = "cargo bench -p hotreload-tests --bench upgrade".to_string();
    let extra: Vec<&String> = argv.iter().skip(1).filter(|a| *a != "--bench").collect();
    if !extra.is_empty() {
        command += " --";
        for e in extra {
            command += " ";
            command += e;
        }
    }
    eprintln!(
        "upgrade bench: preparing builds (cargo build --release of fake-nginx and hotreload)"
    );
    let setup = match setup::prepare() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("upgrade bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut rep = Report {
        ran: args.only.clone(),
        ..Report::default()
    };
    rep.header = format!(
        "# Benchmarks\n\n\
         Generated by `{command}` (issues 7 and 14; the harness is `tests/benches/upgrade/`). \
         Regenerate this whole file with the one command `cargo bench -p hotreload-tests --bench \
         upgrade` (a full run writes it in place; a partial one, `-- --only N`, writes \
         `target/release/BENCHMARKS-partial.md`; needs `scripts/install-real-servers` for \
         real nginx and `apt-get install -y wrk`; about 5 minutes on 2 cores). \
         Targets are reported here, never asserted. All figures come from one run on this \
         machine, so compare ratios within the run rather than absolute times: the machine is \
         shared and small.\n\n## Machine\n\n{}{}",
        report::machine(&command),
        if args.quick {
            "\n**This is a `--quick` smoke run: sizes are reduced; the targets need the full run.**\n"
        } else {
            ""
        }
    );
    let tools = Tools {
        hotreload: setup.hotreload.as_ref().ok().cloned(),
        bench_exe: std::env::current_exe().expect("current_exe"),
    };
    if let Err(e) = &setup.hotreload {
        rep.notes.push(format!(
            "the hotreload CLI could not be built, so the CLI rows are missing and scenario 1 \
             uses the library: {}",
            e.lines().next().unwrap_or("")
        ));
    }
    let mut kinds = Vec::new();
    for k in &args.servers {
        match k {
            Kind::Fake => kinds.push(setup.fake.clone()),
            Kind::Real => match &setup.real {
                Ok(b) => kinds.push(b.clone()),
                Err(e) => rep.notes.push(format!("real nginx not benchmarked: {e}")),
            },
        }
    }
    rep.notes.push(format!(
        "builds: fake-nginx `{}` ↔ `{}` (release build, {} bytes); real nginx {} ↔ {}; \
         upgrades alternate between the two builds of each server",
        setup.fake.label_a,
        setup.fake.label_b,
        std::fs::metadata(&setup.fake.a).map_or(0, |m| m.len()),
        setup::REAL_OLD,
        setup::REAL_NEW
    ));
    let write = |rep: &mut Report| -> String {
        rep.wall = Some(started.elapsed());
        let md = rep.markdown(&plan);
        if let Err(e) = std::fs::write(&out, &md) {
            eprintln!("upgrade bench: write {}: {e}", out.display());
        }
        md
    };
    for &n in &args.only {
        // Issue 14's own measurements do not depend on a server build.
        match n {
            6 => {
                rep.swap = issue14::swap(if args.quick { 3 } else { 9 });
                write(&mut rep);
                continue;
            }
            7 => {
                eprintln!("[7] building the debug hotreload CLI");
                rep.demo = Some(issue14::demo(
                    if args.quick { 1 } else { 3 },
                    setup::debug_cli(),
                ));
                write(&mut rep);
                continue;
            }
            _ => {}
        }
        for b in &kinds {
            match n {
                1 => {
                    rep.drops
                        .extend(scenarios::dropped_requests(&plan, b, &tools));
                    rep.wrk.push(scenarios::wrk_cross_check(&plan, b, &tools));
                }
                2 => rep.latency.extend(scenarios::latency(&plan, b, &tools)),
                3 => {
                    let (builds, holder) = match b.kind {
                        Kind::Fake => (&setup.fake_slow, false),
                        Kind::Real => (b, true),
                    };
                    rep.cpu
                        .extend(scenarios::cpu(&plan, builds, &tools, holder));
                }
                4 => rep.scale.extend(scenarios::scale(&plan, b, &tools)),
                5 if b.kind == Kind::Fake => {
                    rep.parallel.extend(scenarios::parallel(&plan, b));
                }
                _ => {}
            }
            write(&mut rep);
        }
    }
    let md = write(&mut rep);
    println!("{md}");
    eprintln!(
        "upgrade bench: done in {:.0} s; wrote {}",
        started.elapsed().as_secs_f64(),
        out.display()
    );
    drop(setup);
    ExitCode::SUCCESS
}
