//! The targets table of issue 14 (printed first in BENCHMARKS.md), and the sections of
//! its two own measurements (6: the swap alone, 7: the demo's upgrade step). Every
//! figure comes from this run's rows; a missed one says where its time goes, per step.

use std::fmt::Write as _;
use std::time::Duration;

use crate::issue14::SwapRow;
use crate::methods::Method;
use crate::report::{ms, Report};
use crate::scenarios::{median, LatencyRow, PROTOCOL};
use crate::server::Kind;

fn opt_ms(d: Option<Duration>) -> String {
    d.map_or("—".into(), ms)
}

fn ratio(a: Option<Duration>, b: Option<Duration>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if !b.is_zero() => Some(a.as_secs_f64() / b.as_secs_f64()),
        _ => None,
    }
}

/// One line of the table.
struct Figure {
    figure: String,
    measured: String,
    target: &'static str,
    /// `None`: not measured in this run.
    met: Option<bool>,
    /// For a missed figure: where the time goes.
    why: String,
}

fn step_medians(row: &LatencyRow, keys: &[&str]) -> String {
    keys.iter()
        .filter_map(|k| {
            let m = row.steps.get(*k).and_then(|v| median(v))?;
            Some(format!("{k} {}", ms(m)))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

const LIB_STEPS: [&str; 8] = [
    "preflight",
    "config-test",
    "swap",
    "spawn",
    "health",
    "drain",
    "retire",
    "commit",
];

impl Report {
    /// The servers the latency rows cover, real nginx first (the targets are set for it).
    fn latency_kind(&self) -> Option<Kind> {
        [Kind::Real, Kind::Fake]
            .into_iter()
            .find(|k| self.latency.iter().any(|r| r.kind == *k))
    }

    fn latency_row(&self, kind: Kind, method: Method) -> Option<&LatencyRow> {
        self.latency
            .iter()
            .find(|r| r.kind == kind && r.method == method)
    }

    fn figures(&self) -> Vec<Figure> {
        let mut out = Vec::new();
        // 1 and 2: the full upgrade, and the protocol alone, against the oracles.
        if let Some(kind) = self.latency_kind() {
            let on = kind.name();
            let full = self
                .latency_row(kind, Method::Cli)
                .or_else(|| self.latency_row(kind, Method::Lib));
            let oracle_t = self.latency_row(kind, Method::TestingOracle);
            if let (Some(full), Some(oracle_t)) = (full, oracle_t) {
                let a = median(&full.to_old_exit);
                let b = median(&oracle_t.to_old_exit);
                let r = ratio(a, b);
                let lib = self.latency_row(kind, Method::Lib);
                out.push(Figure {
                    figure: format!(
                        "full default upgrade on {on} ({}) vs the busy-polling oracle doing \
                         `cp`+`mv`, `nginx -t` and the dance",
                        full.method.name()
                    ),
                    measured: format!(
                        "{} vs {}: {}",
                        opt_ms(a),
                        opt_ms(b),
                        r.map_or("—".into(), |r| format!("{r:.2}×"))
                    ),
                    target: "≤ 1.0×",
                    met: r.map(|r| r <= 1.0),
                    why: format!(
                        "library medians: {}; oracle: {}",
                        lib.map_or(String::new(), |l| step_medians(l, &LIB_STEPS)),
                        step_medians(
                            oracle_t,
                            &["config-test", "swap", "spawn", "drain", "retire"]
                        )
                    ),
                });
            }
            let lib = self.latency_row(kind, Method::Lib);
            let oracle = self.latency_row(kind, Method::Oracle);
            if let (Some(lib), Some(oracle)) = (lib, oracle) {
                let a = lib.steps.get(PROTOCOL).and_then(|v| median(v));
                let b = oracle.steps.get(PROTOCOL).and_then(|v| median(v));
                let r = ratio(a, b);
                out.push(Figure {
                    figure: format!(
                        "the protocol alone (spawn + drain + retire) on {on} vs the oracle's dance"
                    ),
                    measured: format!(
                        "{} vs {}: {}",
                        opt_ms(a),
                        opt_ms(b),
                        r.map_or("—".into(), |r| format!("{r:.2}×"))
                    ),
                    target: "≤ 1.05×",
                    met: r.map(|r| r <= 1.05),
                    why: format!(
                        "library: {}; oracle: {}",
                        step_medians(lib, &["spawn", "drain", "retire"]),
                        step_medians(oracle, &["spawn", "drain", "retire"])
                    ),
                });
            }
        }
        // 3: the swap against the durable copy, at two sizes, and its growth.
        let swap: Vec<&SwapRow> = self.swap.iter().filter(|r| r.error.is_none()).collect();
        for r in &swap {
            let (a, b) = (median(&r.library), median(&r.baseline));
            let x = ratio(a, b);
            out.push(Figure {
                figure: format!(
                    "swap of a {} executable vs `cp` + fsync + `rename` + directory fsync",
                    r.label
                ),
                measured: format!(
                    "{} vs {}: {}",
                    opt_ms(a),
                    opt_ms(b),
                    x.map_or("—".into(), |x| format!("{x:.2}×"))
                ),
                target: "≤ 1.5×",
                met: x.map(|x| x <= 1.5),
                why: "the library's install: staged copy, fsync, backup hard link, rename, \
                      directory fsync, identity of the installed file; against the copy alone"
                    .into(),
            });
        }
        if let [small, large] = swap[..] {
            let grow = |v: &[Duration], w: &[Duration]| Some(median(w)?.saturating_sub(median(v)?));
            let (lib, base) = (
                grow(&small.library, &large.library),
                grow(&small.baseline, &large.baseline),
            );
            let x = ratio(lib, base);
            out.push(Figure {
                figure: format!(
                    "the swap grows with size ({} → {}) no faster than the copy",
                    small.label, large.label
                ),
                measured: format!(
                    "+{} vs +{}: {}",
                    opt_ms(lib),
                    opt_ms(base),
                    x.map_or("—".into(), |x| format!("{x:.2}×"))
                ),
                target: "≤ 1.2× (noise allowance)",
                met: x.map(|x| x <= 1.2),
                why: "what grows is the copy; a faster growth would mean a second pass over \
                      the file (a hash, a second copy)"
                    .into(),
            });
        }
        // 4: the demo.
        if let Some(d) = &self.demo {
            let m = median(&d.upgrade);
            out.push(Figure {
                figure: "`hotreload demo` upgrade step (its own executable as the server, debug \
                         build)"
                    .into(),
                measured: d.error.clone().map_or(opt_ms(m), |e| format!("error: {e}")),
                target: "≤ 100 ms",
                met: m.map(|m| m <= Duration::from_millis(100)),
                why: d
                    .steps
                    .iter()
                    .filter_map(|(n, v)| Some(format!("{n} {}", ms(median(v)?))))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        // 5: discovery.
        for kind in [Kind::Fake, Kind::Real] {
            let rows: Vec<_> = self.scale.iter().filter(|r| r.kind == kind).collect();
            if let Some(r) = rows.iter().find(|r| r.workers == 256 && r.sleepers == 0) {
                out.push(Figure {
                    figure: format!("discovery (`observe`) with 256 workers on {}", kind.name()),
                    measured: opt_ms(r.observe),
                    target: "≤ 5 ms",
                    met: r.observe.map(|o| o <= Duration::from_millis(5)),
                    why: format!(
                        "{} per worker: one `stat` and one `cmdline` read each, through one \
                         /proc/<pid> descriptor",
                        r.observe.map_or("—".into(), |o| format!(
                            "{:.1} µs",
                            o.as_secs_f64() * 1e6 / 256.0
                        ))
                    ),
                });
            }
            if let Some(r) = rows
                .iter()
                .max_by_key(|r| r.sleepers)
                .filter(|r| r.sleepers > 0)
            {
                out.push(Figure {
                    figure: format!(
                        "discovery with {} unrelated processes on {}",
                        r.sleepers,
                        kind.name()
                    ),
                    measured: opt_ms(r.observe),
                    target: "≤ 1 ms",
                    met: r
                        .observe
                        .map(|o| o <= Duration::from_millis(1) && r.sleepers >= 5000),
                    why: "children from /proc/<pid>/task/*/children: no scan of /proc".into(),
                });
            }
        }
        // 6: CPU over a 5 s drain.
        for kind in [Kind::Fake, Kind::Real] {
            let rows: Vec<_> = self.cpu.iter().filter(|r| r.kind == kind).collect();
            let oracle = rows
                .iter()
                .find(|r| r.method == Method::Oracle)
                .and_then(|r| median(&r.cpu));
            for r in rows.iter().filter(|r| r.method != Method::Oracle) {
                let c = median(&r.cpu);
                let pct = ratio(c, oracle).map(|x| x * 100.0);
                out.push(Figure {
                    figure: format!(
                        "orchestrator CPU over a 5 s drain, {} on {}, vs the busy oracle",
                        r.method.name(),
                        kind.name()
                    ),
                    measured: format!(
                        "{} vs {}: {}",
                        opt_ms(c),
                        opt_ms(oracle),
                        pct.map_or("—".into(), |p| format!("{p:.2} %"))
                    ),
                    target: "≤ 1 %",
                    met: pct.map(|p| p <= 1.0),
                    why: "the whole upgrade's CPU (wait4 rusage): the process start, the \
                          swap's copy (and, before issue 14's swap work, its SHA-256), the config \
                          test child; the drain itself sleeps on the workers' pidfds"
                        .into(),
                });
            }
        }
        // 7: parallel upgrades and dropped requests.
        if let Some(r) = self.parallel.iter().max_by_key(|r| r.targets) {
            out.push(Figure {
                figure: format!("{} parallel upgrades in one process", r.targets),
                measured: format!("{} failures (wall {})", r.failures, opt_ms(r.wall)),
                target: "50, 0 failures",
                met: Some(r.failures == 0 && r.errors.is_empty() && r.targets >= 50),
                why: r.errors.first().cloned().unwrap_or_default(),
            });
        }
        if let Some(h) = self
            .drops
            .iter()
            .find(|r| r.kind == Kind::Fake && matches!(r.method, Method::Cli | Method::Lib))
        {
            out.push(Figure {
                figure: "failed requests over ≥ 100k requests and ≥ 20 upgrades on fake-nginx"
                    .into(),
                measured: format!(
                    "{} failed of {} over {} upgrades",
                    h.stats.failed,
                    h.stats.total(),
                    h.upgrades_ok
                ),
                target: "0 failed",
                met: Some(h.stats.failed == 0 && h.stats.total() >= 100_000 && h.upgrades_ok >= 20),
                why: String::new(),
            });
        }
        out
    }

    /// The targets table of issue 14, for the top of BENCHMARKS.md.
    pub fn issue14_md(&self) -> String {
        let mut s = String::from(
            "\n## Targets of issue 14\n\nRatios are measured in this run. \"Where the time \
             goes\" gives the step medians from the events (the library's `StepFinished`, the \
             oracle's own step clock).\n\n| figure | measured | target | | where the time goes |\n\
             |---|---|---|---|---|\n",
        );
        for f in self.figures() {
            let verdict = match f.met {
                Some(true) => "**met**",
                Some(false) => "**missed**",
                None => "not measured",
            };
            let why = if f.met == Some(true) && !f.why.is_empty() {
                format!("({})", f.why)
            } else {
                f.why
            };
            let _ = writeln!(
                s,
                "| {} | {} | {} | {verdict} | {} |",
                f.figure,
                f.measured,
                f.target,
                why.replace('|', "/")
            );
        }
        s
    }

    pub fn swap_md(&self, s: &mut String) {
        s.push_str("\n## 6. The swap alone\n\n");
        if !self.ran.contains(&6) {
            s.push_str("Not run.\n");
            return;
        }
        s.push_str(
            "`hotreload_core`'s default swap (`SwapKind::Rename`: staged copy, fsync, backup \
             hard link, rename, directory fsync; `install` timed, the backup committed away \
             after) against `cp` to a temp file + fsync + `rename` + directory fsync of the same \
             file, alternating, on the file system of `target/`. Files are pseudo-random (not \
             sparse).\n\n| size | runs | library (median) | (min–max) | durable copy (median) | \
             (min–max) | ratio | error |\n|---|---|---|---|---|---|---|---|\n",
        );
        for r in &self.swap {
            let (a, b) = (median(&r.library), median(&r.baseline));
            let _ = writeln!(
                s,
                "| {} ({} bytes) | {} | {} | {}–{} | {} | {}–{} | {} | {} |",
                r.label,
                r.size,
                r.library.len(),
                opt_ms(a),
                opt_ms(r.library.iter().min().copied()),
                opt_ms(r.library.iter().max().copied()),
                opt_ms(b),
                opt_ms(r.baseline.iter().min().copied()),
                opt_ms(r.baseline.iter().max().copied()),
                ratio(a, b).map_or("—".into(), |x| format!("{x:.2}×")),
                r.error.clone().unwrap_or_default()
            );
        }
    }

    pub fn demo_md(&self, s: &mut String) {
        s.push_str("\n## 7. The demo's upgrade step\n\n");
        let Some(d) = &self.demo else {
            s.push_str("Not run.\n");
            return;
        };
        s.push_str(
            "`target/debug/hotreload demo --json`: the sum of the first upgrade's steps (its \
             `result` record), per run; the demo serves its own executable as fake-nginx, under \
             its client load, with its HTTP health check.\n\n",
        );
        let _ = writeln!(
            s,
            "runs: {}; median {}; per step (medians): {}{}",
            d.upgrade.len(),
            opt_ms(median(&d.upgrade)),
            d.steps
                .iter()
                .filter_map(|(n, v)| Some(format!("{n} {}", ms(median(v)?))))
                .collect::<Vec<_>>()
                .join(", "),
            d.error
                .as_ref()
                .map_or(String::new(), |e| format!("; error: {e}"))
        );
    }
}
