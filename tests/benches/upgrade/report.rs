//! Turns the scenario rows into the Markdown of BENCHMARKS.md (also printed), with the
//! machine's description and, for each target of issue 7, whether it was met and by
//! how much it was missed.

use std::fmt::Write as _;
use std::process::Command;
use std::time::Duration;

use crate::methods::Method;
use crate::scenarios::{median, CpuRow, DropRow, LatencyRow, ParallelRow, Plan, ScaleRow, WrkRow};
use crate::server::Kind;

#[derive(Default)]
pub struct Report {
    pub header: String,
    pub notes: Vec<String>,
    pub drops: Vec<DropRow>,
    pub wrk: Vec<WrkRow>,
    pub latency: Vec<LatencyRow>,
    pub cpu: Vec<CpuRow>,
    pub scale: Vec<ScaleRow>,
    pub parallel: Vec<ParallelRow>,
    pub swap: Vec<crate::issue14::SwapRow>,
    pub demo: Option<crate::issue14::DemoRow>,
    pub ran: Vec<u32>,
    pub wall: Option<Duration>,
}

fn sh_out(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// Cores, memory, kernel, date, load and the command.
pub fn machine(command: &str) -> String {
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kb: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let mut s = String::new();
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(
        s,
        "| date | {} |",
        sh_out("date", &["-u", "+%Y-%m-%d %H:%M:%S UTC"])
    );
    let _ = writeln!(s, "| command | `{command}` |");
    let _ = writeln!(
        s,
        "| CPU | {cores} cores ({model}), shared with other jobs |"
    );
    let _ = writeln!(s, "| memory | {:.1} GiB |", mem_kb as f64 / 1024.0 / 1024.0);
    let _ = writeln!(
        s,
        "| kernel | Linux {} |",
        read("/proc/sys/kernel/osrelease").trim()
    );
    let _ = writeln!(
        s,
        "| load average at start | {} |",
        read("/proc/loadavg")
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _ = writeln!(s, "| rustc | {} |", sh_out("rustc", &["-V"]));
    let _ = writeln!(
        s,
        "| wrk | {} |",
        Command::new("wrk")
            .arg("-v")
            .output()
            .map(|o| {
                let t = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                t.lines().next().unwrap_or("").trim().to_string()
            })
            .unwrap_or_else(|_| "not installed".into())
    );
    s
}

pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else if ms >= 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

fn opt_ms(d: Option<Duration>) -> String {
    d.map_or("—".into(), ms)
}

fn ratio(a: Option<Duration>, b: Option<Duration>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if !b.is_zero() => Some(a.as_secs_f64() / b.as_secs_f64()),
        _ => None,
    }
}

fn opt_x(r: Option<f64>) -> String {
    r.map_or("—".into(), |r| format!("{r:.2}×"))
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "**met**"
    } else {
        "**missed**"
    }
}

impl Report {
    pub fn markdown(&self, plan: &Plan) -> String {
        let mut s = String::new();
        s += &self.header;
        if !self.notes.is_empty() {
            s += "\n## Notes on this run\n\n";
            for n in &self.notes {
                let _ = writeln!(s, "- {n}");
            }
        }
        let mut targets: Vec<String> = Vec::new();
        self.drops_md(&mut s, plan, &mut targets);
        self.latency_md(&mut s, &mut targets);
        self.cpu_md(&mut s, &mut targets);
        self.scale_md(&mut s, &mut targets);
        self.parallel_md(&mut s, &mut targets);
        self.swap_md(&mut s);
        self.demo_md(&mut s);
        let mut head = self.issue14_md();
        head.push_str("\n## Targets of issue 7\n\n");
        for t in &targets {
            let _ = writeln!(head, "- {t}");
        }
        if let Some(w) = self.wall {
            let _ = writeln!(head, "\nWhole run: {:.0} s.", w.as_secs_f64());
        }
        // Targets right after the header, details after.
        let split = self.header.len();
        s.insert_str(split, &head);
        s
    }

    fn drops_md(&self, s: &mut String, plan: &Plan, targets: &mut Vec<String>) {
        s.push_str("\n## 1. Dropped requests\n\n");
        if !self.ran.contains(&1) {
            s.push_str("Not run.\n");
            return;
        }
        let _ = writeln!(
            s,
            "{} clients (half keep-alive, half a new connection per request, 2 ms pause between \
             requests) run across {} back-to-back upgrades; after each upgrade the next one waits \
             until {} more requests were counted, so that every method sees ≥ {} requests. \
             2 workers. \"retried\" are requests sent on a keep-alive connection that the server \
             closed before any response byte, retried once as HTTP clients do (RFC 9112 §9.3.1); \
             they are not failures.\n",
            plan.clients,
            plan.upgrades,
            plan.requests / plan.upgrades as u64 + 1,
            plan.requests
        );
        s.push_str("| server | method | upgrades ok/attempted | requests | ok | failed | refused | reset (of which reused keep-alive, before any byte) | truncated | non-2xx | other | retried | time |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|\n");
        for r in &self.drops {
            let st = &r.stats;
            let _ = writeln!(
                s,
                "| {} | {} | {}/{} | {} | {} | {} | {} | {} ({}) | {} | {} | {} | {} | {:.1} s |",
                r.kind.name(),
                r.method.name(),
                r.upgrades_ok,
                r.upgrades,
                st.total(),
                st.ok,
                st.failed,
                st.refused,
                st.reset,
                st.reset_reused_before_response,
                st.truncated,
                st.non_2xx,
                st.other,
                st.retried_idle_keepalive,
                r.elapsed.as_secs_f64()
            );
        }
        let failures: Vec<String> = self
            .drops
            .iter()
            .filter(|r| !r.errors.is_empty() || r.stats.failed > 0)
            .map(|r| {
                let mut t = format!("{} / {}:", r.kind.name(), r.method.name());
                for e in r.errors.iter().chain(&r.stats.errors).take(4) {
                    let _ = write!(
                        t,
                        " `{}`;",
                        e.lines().next().unwrap_or("").replace('`', "'")
                    );
                }
                t
            })
            .collect();
        if !failures.is_empty() {
            s.push_str("\nFirst failures seen:\n\n");
            for f in failures {
                let _ = writeln!(s, "- {f}");
            }
        }
        s.push_str("\nBy client kind (failed / retried):\n\n| server | method | keep-alive clients | new-connection clients |\n|---|---|---|---|\n");
        for r in &self.drops {
            let (k, n) = (&r.stats.keepalive_clients, &r.stats.new_connection_clients);
            let _ = writeln!(
                s,
                "| {} | {} | {} ok, {} failed, {} retried | {} ok, {} failed |",
                r.kind.name(),
                r.method.name(),
                k.ok,
                k.failed(),
                k.retried_idle_keepalive,
                n.ok,
                n.failed()
            );
        }
        if !self.wrk.is_empty() {
            let _ = writeln!(
                s,
                "\n**wrk cross-check**: `wrk -t2 -c64 -d{}s` (keep-alive connections only) and our load \
                 generator together, across hotreload upgrades (one every ~0.2 s after the previous one).\n",
                plan.wrk_seconds
            );
            s.push_str("| server | upgrades | wrk requests | wrk errors (connect/read/write/timeout/non-2xx) | ours: requests | ours: failed | ours: retried |\n|---|---|---|---|---|---|---|\n");
            for w in &self.wrk {
                let wrk = match &w.wrk {
                    Ok(x) => format!(
                        "{} | {} ({}/{}/{}/{}/{})",
                        x.requests,
                        x.errors(),
                        x.connect,
                        x.read,
                        x.write,
                        x.timeout,
                        x.non_2xx_3xx
                    ),
                    Err(e) => format!("— | not run: {}", e.lines().next().unwrap_or("")),
                };
                let _ = writeln!(
                    s,
                    "| {} | {} | {wrk} | {} | {} | {} |",
                    w.kind.name(),
                    w.upgrades_ok,
                    w.ours.total(),
                    w.ours.failed,
                    w.ours.retried_idle_keepalive
                );
                if let Ok(x) = &w.wrk {
                    let o = &w.ours;
                    let ka =
                        o.keepalive_clients.failed() + o.keepalive_clients.retried_idle_keepalive;
                    let ka_clients = (plan.clients / 2).max(1) as f64;
                    let ups = w.upgrades_ok.max(1) as f64;
                    let verdict = if x.errors() == 0 && o.failed == 0 {
                        "agree: no error in either".to_string()
                    } else if x.errors() == x.read && o.failed == o.reset_reused_before_response {
                        format!(
                            "consistent: every wrk error is a read error (wrk counts a keep-alive \
                             connection closed under it, cleanly or by reset, as a read error and \
                             reconnects){}; per keep-alive connection and upgrade, wrk saw {:.2} \
                             such closes and our keep-alive clients {:.2} (failed + retried)",
                            if o.failed == 0 {
                                ", and ours retried every such close without a failure".to_string()
                            } else {
                                format!(
                                    ", and all {} failures of ours are resets of a reused \
                                     keep-alive connection before any response byte",
                                    o.failed
                                )
                            },
                            x.read as f64 / 64.0 / ups,
                            ka as f64 / ka_clients / ups
                        )
                    } else {
                        "**disagree**".to_string()
                    };
                    targets.push(format!(
                        "wrk cross-check on {}: wrk {} errors ({} read) in {} requests; ours {} \
                         failed in {} requests, plus {} retried idle keep-alive closes: {verdict}",
                        w.kind.name(),
                        x.errors(),
                        x.read,
                        x.requests,
                        o.failed,
                        o.total(),
                        o.retried_idle_keepalive
                    ));
                }
            }
        }
        for kind in [Kind::Fake, Kind::Real] {
            let rows: Vec<&DropRow> = self.drops.iter().filter(|r| r.kind == kind).collect();
            if rows.is_empty() {
                continue;
            }
            if let Some(h) = rows
                .iter()
                .find(|r| matches!(r.method, Method::Cli | Method::Lib))
            {
                let ok = h.stats.failed == 0 && h.stats.total() >= 100_000 && h.upgrades_ok >= 20;
                let why = if h.stats.failed > 0
                    && h.stats.failed == h.stats.reset_reused_before_response
                {
                    format!(
                        "; every failure is a reset of a reused keep-alive connection before any \
                         response byte: {} closes idle keep-alive connections at once when its \
                         workers stop gracefully, and a request that arrives in that instant is \
                         reset by the kernel (unread data on close); curl, Go and browsers retry \
                         such requests on a new connection; new-connection clients lost {}",
                        kind.name(),
                        h.stats.new_connection_clients.failed()
                    )
                } else {
                    String::new()
                };
                targets.push(format!(
                    "0 failed requests over ≥ 100,000 requests and ≥ 20 upgrades on {}: {} \
                     ({} failed of {} requests over {} upgrades{why})",
                    kind.name(),
                    verdict(ok),
                    h.stats.failed,
                    h.stats.total(),
                    h.upgrades_ok
                ));
            }
            for r in rows
                .iter()
                .filter(|r| !matches!(r.method, Method::Cli | Method::Lib))
            {
                targets.push(format!(
                    "{} on {} (reported, no target): {} of {} requests failed ({} refused, {} reset, \
                     {} truncated, {} non-2xx) over {} upgrades",
                    r.method.name(),
                    kind.name(),
                    r.stats.failed,
                    r.stats.total(),
                    r.stats.refused,
                    r.stats.reset,
                    r.stats.truncated,
                    r.stats.non_2xx,
                    r.upgrades_ok
                ));
            }
        }
    }

    fn latency_md(&self, s: &mut String, targets: &mut Vec<String>) {
        s.push_str("\n## 2. Upgrade latency\n\n");
        if !self.ran.contains(&2) {
            s.push_str("Not run.\n");
            return;
        }
        s.push_str(
            "Medians. Every method does the same job: install the other build at `sbin/nginx`, \
             then bring the server to one master running it. t0 is taken just before the method \
             starts (library and oracle run in a child process of the benchmark that is already \
             up; the CLI and the recipes include their process start). \"old master exit\" is \
             seen through a pidfd; \"first new response\" is the first response of a new worker \
             seen by a light probe load (8 clients, 1 ms pause). Methods run round-robin, \
             alternating the two builds. Ratios are to the faster of the two oracles in the run \
             (a spinning poller can starve the very server it waits for on 2 shared cores). The \
             oracles do the swap (copy + rename, no fsync) and then drive USR2 / WINCH / QUIT, \
             waiting on the pid file and /proc: the busy-polling one in a tight loop whose turns \
             end with `sched_yield()`, the other with a 50 µs sleep per turn.\n\n",
        );
        let mut steps_lines: Vec<String> = Vec::new();
        s.push_str("| server | method | runs | to old master's exit | (min–max) | ratio to the faster oracle | to first new response | method's own end | CPU (user+sys) | errors |\n|---|---|---|---|---|---|---|---|---|---|\n");
        for kind in [Kind::Fake, Kind::Real] {
            let rows: Vec<&LatencyRow> = self.latency.iter().filter(|r| r.kind == kind).collect();
            let oracle = rows
                .iter()
                .find(|r| r.method == Method::Oracle)
                .and_then(|r| median(&r.to_old_exit));
            let make = rows
                .iter()
                .find(|r| r.method == Method::Make)
                .and_then(|r| median(&r.to_old_exit));
            let poll = rows
                .iter()
                .find(|r| r.method == Method::PollingOracle)
                .and_then(|r| median(&r.to_old_exit));
            // The physical limit is whichever oracle was faster in this run: a spinning
            // poller that starves the server it waits for is no limit.
            let (best, best_method) = match (oracle, poll) {
                (Some(b), Some(p)) if p < b => (Some(p), Method::PollingOracle),
                (None, Some(p)) => (Some(p), Method::PollingOracle),
                _ => (oracle, Method::Oracle),
            };
            for r in &rows {
                let m = median(&r.to_old_exit);
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {}–{} | {} | {} | {} | {} | {} |",
                    kind.name(),
                    r.method.name(),
                    r.to_old_exit.len(),
                    opt_ms(m),
                    opt_ms(r.to_old_exit.iter().min().copied()),
                    opt_ms(r.to_old_exit.iter().max().copied()),
                    opt_x(ratio(m, best)),
                    opt_ms(median(&r.to_new_response)),
                    opt_ms(median(&r.to_done)),
                    opt_ms(median(&r.cpu)),
                    if r.errors.is_empty() {
                        String::new()
                    } else {
                        format!(
                            "{}: `{}`",
                            r.errors.len(),
                            r.errors[0].lines().next().unwrap_or("").replace('`', "'")
                        )
                    }
                );
            }
            if let Some(o) = rows.iter().find(|r| r.method == Method::Oracle) {
                let sum: Duration = ["swap", "spawn", "drain", "retire"]
                    .iter()
                    .filter_map(|k| o.steps.get(*k).and_then(|v| median(v)))
                    .sum();
                if let Some(m) = oracle {
                    let stalls = m.as_secs_f64() > 1.5 * sum.as_secs_f64();
                    steps_lines.push(format!(
                        "\nOn {}, the busy-polling oracle's step medians add up to {} and its \
                         median run takes {}{}; the 50 µs-polling oracle does the same job in {} \
                         (median).",
                        kind.name(),
                        ms(sum),
                        ms(m),
                        if stalls {
                            ": on 2 shared, loaded cores a spinning poller takes CPU from the very \
                             processes it waits for, so one step or another of most runs stalls"
                        } else {
                            ""
                        },
                        opt_ms(poll)
                    ));
                }
            }
            for r in rows.iter().filter(|r| !r.steps.is_empty()) {
                let mut line = format!(
                    "\n{} on {}, median time per step:",
                    r.method.name(),
                    kind.name()
                );
                let order = [
                    "lock",
                    "preflight",
                    "config-test",
                    "swap",
                    "spawn",
                    "health",
                    "drain",
                    "retire",
                    "commit",
                    crate::scenarios::PROTOCOL,
                ];
                let mut keys: Vec<&String> = r.steps.keys().collect();
                keys.sort_by_key(|k| order.iter().position(|o| o == k).unwrap_or(99));
                for k in keys {
                    let _ = write!(line, " {k} {},", opt_ms(median(&r.steps[k])));
                }
                line.pop();
                steps_lines.push(line);
            }
            for r in rows.iter().filter(|r| {
                matches!(
                    r.method,
                    Method::Cli | Method::Lib | Method::LibNoConfigTest
                )
            }) {
                let m = median(&r.to_old_exit);
                let (to_oracle, to_make) = (ratio(m, best), ratio(m, make));
                if let (Some(o), Some(k)) = (to_oracle, to_make) {
                    let ok = o <= 1.2 && k <= 0.05;
                    // Where the time goes: the library's own steps (the CLI runs the same).
                    let lib = rows.iter().find(|x| {
                        x.method
                            == if r.method == Method::LibNoConfigTest {
                                Method::LibNoConfigTest
                            } else {
                                Method::Lib
                            }
                    });
                    let step =
                        |name: &str| lib.and_then(|l| l.steps.get(name)).and_then(|v| median(v));
                    let proto = |m: Method| {
                        rows.iter()
                            .find(|x| x.method == m)
                            .and_then(|x| x.steps.get(crate::scenarios::PROTOCOL))
                            .and_then(|v| median(v))
                    };
                    let (lp, op) = (
                        proto(lib.map_or(Method::Lib, |l| l.method)),
                        proto(best_method),
                    );
                    let why = if ok {
                        String::new()
                    } else {
                        format!(
                            ". Where the time goes (library medians): swap {} (stage a copy, fsync, \
                             hard-link backup, SHA-256 and journal, fsynced; the oracle only copies \
                             and renames), config test {} (runs `nginx -t`), spawn {}, drain {}, \
                             retire {}, commit {}. The protocol part alone (spawn + drain + \
                             retire) takes {} against the faster oracle's {} ({}). The machine's \
                             load makes single runs vary widely (see min–max)",
                            opt_ms(step("swap")),
                            opt_ms(step("config-test")),
                            opt_ms(step("spawn")),
                            opt_ms(step("drain")),
                            opt_ms(step("retire")),
                            opt_ms(step("commit")),
                            opt_ms(lp),
                            opt_ms(op),
                            opt_x(ratio(lp, op))
                        )
                    };
                    targets.push(format!(
                        "upgrade wall time of {} on {}{}: {}. ≤ 1/20 of `make upgrade`'s ({}): {} \
                         ({:.3}); within 1.2× the oracle's (the faster of the two in this run, the \
                         {}: {}): {} ({:.2}×; {} the busy-polling oracle's){why}",
                        r.method.name(),
                        kind.name(),
                        if kind == Kind::Real {
                            ""
                        } else {
                            " (the targets are set for real nginx; fake-nginx for reference)"
                        },
                        opt_ms(m),
                        opt_ms(make),
                        verdict(k <= 0.05),
                        k,
                        best_method.name(),
                        opt_ms(best),
                        verdict(o <= 1.2),
                        o,
                        opt_x(ratio(m, oracle))
                    ));
                }
            }
        }
        for l in steps_lines {
            s.push_str(&l);
            s.push('\n');
        }
    }

    fn cpu_md(&self, s: &mut String, targets: &mut Vec<String>) {
        s.push_str("\n## 3. Orchestrator CPU during a 5 s drain\n\n");
        if !self.ran.contains(&3) {
            s.push_str("Not run.\n");
            return;
        }
        s.push_str(
            "user+sys CPU of the orchestrating process (from wait4's rusage; includes the \
             processes it ran and waited for, such as the `nginx -t` config test) over a whole \
             upgrade whose old workers take 5 s to drain: fake-nginx variants built with \
             `slow-drain=5s`; real nginx with 8 requests held in flight on the old workers for \
             5 s (headers completed after 5 s; nginx waits for them on WINCH).\n\n",
        );
        s.push_str("| server | method | runs | CPU (median) | % of oracle's | wall to old master's exit | CPU / wall | errors |\n|---|---|---|---|---|---|---|---|\n");
        for kind in [Kind::Fake, Kind::Real] {
            let rows: Vec<&CpuRow> = self.cpu.iter().filter(|r| r.kind == kind).collect();
            let oracle = rows
                .iter()
                .find(|r| r.method == Method::Oracle)
                .and_then(|r| median(&r.cpu));
            for r in &rows {
                let c = median(&r.cpu);
                let pct = ratio(c, oracle).map(|x| x * 100.0);
                let share = ratio(c, median(&r.wall)).map(|x| x * 100.0);
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} | {} | {} |",
                    kind.name(),
                    r.method.name(),
                    r.cpu.len(),
                    opt_ms(c),
                    pct.map_or("—".into(), |p| format!("{p:.2} %")),
                    opt_ms(median(&r.wall)),
                    share.map_or("—".into(), |p| format!("{p:.0} %")),
                    r.errors.first().map_or(String::new(), |e| format!(
                        "`{}`",
                        e.lines().next().unwrap_or("").replace('`', "'")
                    ))
                );
                if r.method != Method::Oracle {
                    if let Some(p) = pct {
                        targets.push(format!(
                            "orchestrator CPU of {} during a 5 s drain on {}: {} = {p:.2} % of the \
                             oracle's {} (target ≤ 5 %): {}",
                            r.method.name(),
                            kind.name(),
                            opt_ms(c),
                            opt_ms(oracle),
                            verdict(p <= 5.0)
                        ));
                    }
                }
            }
        }
    }

    fn scale_md(&self, s: &mut String, targets: &mut Vec<String>) {
        s.push_str("\n## 4. Discovery and status time\n\n");
        if !self.ran.contains(&4) {
            s.push_str("Not run.\n");
            return;
        }
        s.push_str(
            "Medians. `observe` = `Target::new(pid_file).observe()` in process (21 runs: pid \
             files, the master's children via /proc/<pid>/task/*/children, titles); \
             `hotreload status` = the CLI, process start included (7 runs); \
             `ProcScanDiscovery` = finding the master by executable with a full /proc scan, \
             for comparison (5 runs). Sleeping processes are `sleep 3600` children of the \
             benchmark, killed and reaped afterwards.\n\n",
        );
        s.push_str("| server | workers | unrelated sleeping processes | processes on the machine | observe | hotreload status | ProcScanDiscovery | error |\n|---|---|---|---|---|---|---|---|\n");
        for r in &self.scale {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                r.kind.name(),
                r.workers,
                r.sleepers,
                r.processes_on_machine,
                opt_ms(r.observe),
                opt_ms(r.status_cli),
                opt_ms(r.proc_scan),
                r.error.as_deref().map_or(String::new(), |e| format!(
                    "`{}`",
                    e.lines().next().unwrap_or("")
                ))
            );
        }
        for kind in [Kind::Fake, Kind::Real] {
            let rows: Vec<&ScaleRow> = self.scale.iter().filter(|r| r.kind == kind).collect();
            let by_sleepers: Vec<&&ScaleRow> = rows.iter().filter(|r| r.workers == 2).collect();
            let (Some(lo), Some(hi)) = (
                by_sleepers.iter().min_by_key(|r| r.sleepers),
                by_sleepers.iter().max_by_key(|r| r.sleepers),
            ) else {
                continue;
            };
            if let (Some(a), Some(b)) = (lo.observe, hi.observe) {
                targets.push(format!(
                    "discovery (`observe`) on {} with {} unrelated processes: {} (with {}: {}); \
                     target < 10 ms with 5,000: {}{}",
                    kind.name(),
                    hi.sleepers,
                    ms(b),
                    lo.sleepers,
                    ms(a),
                    verdict(b < Duration::from_millis(10) && hi.sleepers >= 5000),
                    if hi.sleepers < 5000 {
                        " (not measured at 5,000 in this run)"
                    } else {
                        ""
                    }
                ));
            }
            let by_workers: Vec<&&ScaleRow> = rows.iter().filter(|r| r.sleepers == 0).collect();
            if let (Some(lo), Some(hi)) = (
                by_workers.iter().min_by_key(|r| r.workers),
                by_workers.iter().max_by_key(|r| r.workers),
            ) {
                if let (Some(a), Some(b)) = (lo.observe, hi.observe) {
                    let by_procs = match (
                        by_sleepers
                            .iter()
                            .min_by_key(|r| r.sleepers)
                            .and_then(|r| r.observe),
                        by_sleepers
                            .iter()
                            .max_by_key(|r| r.sleepers)
                            .and_then(|r| r.observe),
                    ) {
                        (Some(x), Some(y)) => y.as_secs_f64() / x.as_secs_f64(),
                        _ => f64::NAN,
                    };
                    targets.push(format!(
                        "discovery grows with the number of workers, not with the number of \
                         processes, on {}: {} ({} workers {} → {} workers {}, {:.1}×; {} → {} \
                         unrelated processes: {:.2}×)",
                        kind.name(),
                        verdict(by_procs < 2.0 && b > a),
                        lo.workers,
                        ms(a),
                        hi.workers,
                        ms(b),
                        b.as_secs_f64() / a.as_secs_f64(),
                        by_sleepers.iter().map(|r| r.sleepers).min().unwrap_or(0),
                        by_sleepers.iter().map(|r| r.sleepers).max().unwrap_or(0),
                        by_procs
                    ));
                }
            }
        }
    }

    fn parallel_md(&self, s: &mut String, targets: &mut Vec<String>) {
        s.push_str("\n## 5. Many targets, one process\n\n");
        if !self.ran.contains(&5) {
            s.push_str("Not run.\n");
            return;
        }
        s.push_str(
            "The benchmark process upgrades N fake-nginx instances (2 workers each) at once, one \
             thread per instance calling `hotreload_core::upgrade` (default options: config test, \
             rename swap with backup, spawn, drain, retire). Wall time from the first call to the \
             last return; every instance is then checked: one master running the new build, all \
             workers, no `.oldbin`.\n\n",
        );
        s.push_str("| instances | wall | median per upgrade | failures | first errors |\n|---|---|---|---|---|\n");
        for r in &self.parallel {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                r.targets,
                opt_ms(r.wall),
                opt_ms(r.per_upgrade_median),
                r.failures,
                r.errors
                    .iter()
                    .take(2)
                    .map(|e| format!("`{}`", e.lines().next().unwrap_or("").replace('`', "'")))
                    .collect::<Vec<_>>()
                    .join("; ")
            );
        }
        if let Some(r) = self.parallel.iter().max_by_key(|r| r.targets) {
            targets.push(format!(
                "{} parallel upgrades with 0 failures: {} ({} failures{}, wall {})",
                r.targets,
                verdict(r.failures == 0 && r.errors.is_empty() && r.targets >= 50),
                r.failures,
                if r.targets < 50 {
                    "; fewer than 50 in this run"
                } else {
                    ""
                },
                opt_ms(r.wall)
            ));
        }
    }
}
