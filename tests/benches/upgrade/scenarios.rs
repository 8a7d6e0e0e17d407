//! The five scenarios of issue 7. Each returns rows for the report and never panics on a
//! failed measurement: a failure is a result (recorded with its reason).

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fake_nginx::load::{Load, LoadConfig, LoadStats};
use hotreload_core::discovery::{Discovery, ProcScanDiscovery};
use hotreload_core::{Phase, Target};

use crate::methods::{self, Method, RunResult, Tools};
use crate::server::{Builds, Kind, Server};
use crate::sys;

/// Sizes of the run (`--quick` shrinks everything).
#[derive(Clone, Debug)]
pub struct Plan {
    pub upgrades: usize,
    pub requests: u64,
    pub clients: usize,
    pub latency_reps: usize,
    pub latency_reps_slow: usize,
    pub cpu_reps: usize,
    pub worker_counts: Vec<usize>,
    pub sleeper_counts: Vec<usize>,
    pub parallel: Vec<usize>,
    pub wrk_seconds: u64,
}

impl Plan {
    pub fn new(quick: bool) -> Plan {
        if quick {
            Plan {
                upgrades: 3,
                requests: 6_000,
                clients: 64,
                latency_reps: 2,
                latency_reps_slow: 1,
                cpu_reps: 1,
                worker_counts: vec![1, 16],
                sleeper_counts: vec![0, 500],
                parallel: vec![1, 5],
                wrk_seconds: 4,
            }
        } else {
            Plan {
                upgrades: 20,
                requests: 100_000,
                clients: 64,
                latency_reps: 9,
                latency_reps_slow: 5,
                cpu_reps: 2,
                worker_counts: vec![1, 4, 16, 64, 256],
                sleeper_counts: vec![0, 1_000, 5_000],
                parallel: vec![1, 10, 50],
                wrk_seconds: 12,
            }
        }
    }
}

pub fn median(v: &[Duration]) -> Option<Duration> {
    if v.is_empty() {
        return None;
    }
    let mut s = v.to_vec();
    s.sort();
    let n = s.len();
    Some(if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2
    })
}

fn load_config(addr: SocketAddr, clients: usize) -> LoadConfig {
    LoadConfig::new(addr)
        .clients(clients)
        .timeout(Duration::from_secs(10))
}

/// Waits until the load has counted `n` requests in all (bounded).
fn wait_requests(load: &Load, n: u64, timeout: Duration) {
    sys::wait_for(timeout, || load.snapshot().total() >= n);
}

// ---------------------------------------------------------------------------------------
// 1. Dropped requests.

pub struct DropRow {
    pub kind: Kind,
    pub method: Method,
    pub upgrades_ok: usize,
    pub upgrades: usize,
    pub stats: LoadStats,
    pub elapsed: Duration,
    pub errors: Vec<String>,
}

pub fn dropped_requests(plan: &Plan, builds: &Builds, tools: &Tools) -> Vec<DropRow> {
    let hotreload = if tools.hotreload.is_some() {
        Method::Cli
    } else {
        Method::Lib
    };
    let mut rows = Vec::new();
    for method in [hotreload, Method::Restart, Method::Make] {
        eprintln!(
            "[1] {}: {} × {} under {} clients",
            builds.kind.name(),
            plan.upgrades,
            method.name(),
            plan.clients
        );
        let server = match Server::start(builds.kind, &builds.a, 2) {
            Ok(s) => s,
            Err(e) => {
                rows.push(DropRow {
                    kind: builds.kind,
                    method,
                    upgrades_ok: 0,
                    upgrades: 0,
                    stats: LoadStats::default(),
                    elapsed: Duration::ZERO,
                    errors: vec![e],
                });
                continue;
            }
        };
        let started = Instant::now();
        let load = Load::start(load_config(server.addr, plan.clients));
        wait_requests(&load, 500, Duration::from_secs(30));
        let per_upgrade = plan.requests / plan.upgrades as u64 + 1;
        let base = load.snapshot().total();
        let (mut ok, mut errors, mut attempt) = (0, Vec::new(), 0);
        // A failed upgrade that rolled back leaves a steady server: go on (a few extra
        // attempts at most), so that the row still has its number of upgrades.
        while ok < plan.upgrades && attempt < plan.upgrades + 5 {
            let r = methods::run(method, &server, builds.target(ok), tools);
            attempt += 1;
            if let Some(e) = r.error {
                errors.push(format!("attempt {attempt}: {e}"));
                let steady = !sys::exited(server.master()) && !server.oldbin().exists();
                if !steady {
                    break;
                }
                continue;
            }
            ok += 1;
            wait_requests(
                &load,
                base + per_upgrade * ok as u64,
                Duration::from_secs(60),
            );
        }
        let stats = load.stop();
        rows.push(DropRow {
            kind: builds.kind,
            method,
            upgrades_ok: ok,
            upgrades: attempt,
            stats,
            elapsed: started.elapsed(),
            errors,
        });
    }
    rows
}

/// The wrk cross-check: wrk and our load generator side by side across hotreload upgrades.
pub struct WrkRow {
    pub kind: Kind,
    pub upgrades_ok: usize,
    pub ours: LoadStats,
    pub wrk: Result<WrkStats, String>,
}

#[derive(Debug, Default, Clone)]
pub struct WrkStats {
    pub requests: u64,
    pub connect: u64,
    pub read: u64,
    pub write: u64,
    pub timeout: u64,
    pub non_2xx_3xx: u64,
}

impl WrkStats {
    pub fn errors(&self) -> u64 {
        self.connect + self.read + self.write + self.timeout + self.non_2xx_3xx
    }
}

pub fn parse_wrk(out: &str) -> Result<WrkStats, String> {
    let mut s = WrkStats::default();
    let num = |w: &str| w.trim_matches(|c: char| !c.is_ascii_digit()).parse::<u64>();
    let mut seen = false;
    for line in out.lines().map(str::trim) {
        if line.contains(" requests in ") {
            s.requests =
                num(line.split_whitespace().next().unwrap_or("")).map_err(|e| e.to_string())?;
            seen = true;
        } else if let Some(rest) = line.strip_prefix("Socket errors:") {
            for part in rest.split(',') {
                let mut it = part.split_whitespace();
                let (k, v) = (
                    it.next().unwrap_or(""),
                    num(it.next().unwrap_or("0")).unwrap_or(0),
                );
                match k {
                    "connect" => s.connect = v,
                    "read" => s.read = v,
                    "write" => s.write = v,
                    "timeout" => s.timeout = v,
                    _ => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix("Non-2xx or 3xx responses:") {
            s.non_2xx_3xx = num(rest).unwrap_or(0);
        }
    }
    if seen {
        Ok(s)
    } else {
        Err(format!("no request count in wrk's output: {out}"))
    }
}

pub fn wrk_cross_check(plan: &Plan, builds: &Builds, tools: &Tools) -> WrkRow {
    let method = if tools.hotreload.is_some() {
        Method::Cli
    } else {
        Method::Lib
    };
    eprintln!("[1] {}: wrk cross-check", builds.kind.name());
    let mut row = WrkRow {
        kind: builds.kind,
        upgrades_ok: 0,
        ours: LoadStats::default(),
        wrk: Err("not run".into()),
    };
    let server = match Server::start(builds.kind, &builds.a, 2) {
        Ok(s) => s,
        Err(e) => {
            row.wrk = Err(e);
            return row;
        }
    };
    let d = plan.wrk_seconds;
    let wrk = Command::new("wrk")
        .args(["-t2", "-c64", &format!("-d{d}s")])
        .arg(format!("http://{}/", server.addr))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let wrk = match wrk {
        Ok(c) => c,
        Err(e) => {
            row.wrk = Err(format!("wrk not runnable ({e}): apt-get install -y wrk"));
            return row;
        }
    };
    let guard = ChildGuard(Some(wrk));
    let load = Load::start(load_config(server.addr, plan.clients));
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let stop_at = t0 + Duration::from_secs(d.saturating_sub(2).max(1));
    let mut i = 0;
    while Instant::now() < stop_at && i < plan.upgrades {
        let r = methods::run(method, &server, builds.target(i), tools);
        i += 1;
        if r.error.is_some() {
            break;
        }
        row.upgrades_ok += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = guard.wait_output();
    row.ours = load.stop();
    row.wrk = out.and_then(|o| parse_wrk(&o));
    row
}

/// Kills and reaps a child on drop (panic safety for wrk and helpers).
struct ChildGuard(Option<Child>);

impl ChildGuard {
    fn wait_output(mut self) -> Result<String, String> {
        let child = self.0.take().expect("child");
        let out = child.wait_with_output().map_err(|e| e.to_string())?;
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

// ---------------------------------------------------------------------------------------
// 2. Upgrade latency.

pub struct LatencyRow {
    pub kind: Kind,
    pub method: Method,
    pub to_old_exit: Vec<Duration>,
    pub to_new_response: Vec<Duration>,
    pub to_done: Vec<Duration>,
    pub cpu: Vec<Duration>,
    /// Library step timings of every run (step name -> durations).
    pub steps: std::collections::BTreeMap<String, Vec<Duration>>,
    pub errors: Vec<String>,
}

/// The key of spawn + drain + retire (signals and waits only) in the step timings.
pub const PROTOCOL: &str = "protocol(spawn+drain+retire)";

pub const LATENCY_METHODS: [Method; 10] = [
    Method::Oracle,
    Method::TestingOracle,
    Method::PollingOracle,
    Method::LibNoConfigTest,
    Method::Lib,
    Method::Cli,
    Method::Make,
    Method::Debian,
    Method::Hand,
    Method::Restart,
];

fn slow(m: Method) -> bool {
    matches!(m, Method::Make | Method::Debian | Method::Hand)
}

/// When the new master's workers first answered, relative to the run's start.
fn first_new_response(load: &Load, r: &RunResult) -> Option<Duration> {
    let t0 = r.t0?;
    let new_workers = sys::workers_of(r.new_master);
    let mut found = None;
    sys::wait_for(Duration::from_secs(3), || {
        let snap = load.snapshot();
        found = new_workers
            .iter()
            .filter_map(|w| snap.worker_first_seen.get(w))
            .min()
            .copied();
        found.is_some()
    });
    let at = load.started() + found?;
    Some(at.saturating_duration_since(t0))
}

pub fn latency(plan: &Plan, builds: &Builds, tools: &Tools) -> Vec<LatencyRow> {
    let mut rows: Vec<LatencyRow> = LATENCY_METHODS
        .iter()
        .filter(|&&m| m != Method::Cli || tools.hotreload.is_some())
        .map(|&method| LatencyRow {
            kind: builds.kind,
            method,
            to_old_exit: vec![],
            to_new_response: vec![],
            to_done: vec![],
            cpu: vec![],
            steps: Default::default(),
            errors: vec![],
        })
        .collect();
    eprintln!(
        "[2] {}: latency, {} methods",
        builds.kind.name(),
        rows.len()
    );
    let server = match Server::start(builds.kind, &builds.a, 2) {
        Ok(s) => s,
        Err(e) => {
            for r in &mut rows {
                r.errors.push(e.clone());
            }
            return rows;
        }
    };
    // A light probe load: new-connection clients see the new workers as soon as they accept.
    let load = Load::start(load_config(server.addr, 8).pause(Duration::from_millis(1)));
    wait_requests(&load, 100, Duration::from_secs(10));
    let mut i = 0;
    for rep in 0..plan.latency_reps {
        for row in rows.iter_mut() {
            if slow(row.method) && rep >= plan.latency_reps_slow {
                continue;
            }
            // Let the machine settle from the previous run (drained sockets, reaped zombies).
            std::thread::sleep(Duration::from_millis(150));
            let r = methods::run(row.method, &server, builds.target(i), tools);
            i += 1;
            if let Some(e) = &r.error {
                row.errors.push(e.clone());
                // Bring the server back to a known state for the next method.
                if sys::exited(server.master()) || server.oldbin().exists() {
                    row.errors
                        .push("server left in an unknown state; latency stopped".into());
                    return rows;
                }
                continue;
            }
            if let Some(d) = r.to_old_exit {
                row.to_old_exit.push(d);
            }
            if let Some(d) = first_new_response(&load, &r) {
                row.to_new_response.push(d);
            }
            row.to_done.push(r.to_done);
            // Steps can repeat (health after spawn and after drain): sum them per run.
            let mut per_run: std::collections::BTreeMap<String, Duration> = Default::default();
            for (k, d) in &r.steps {
                *per_run.entry(k.clone()).or_default() += *d;
            }
            if !per_run.is_empty() {
                let protocol: Duration = ["spawn", "drain", "retire"]
                    .iter()
                    .filter_map(|k| per_run.get(*k))
                    .sum();
                per_run.insert(PROTOCOL.into(), protocol);
            }
            for (k, d) in per_run {
                row.steps.entry(k).or_default().push(d);
            }
            if let Some(c) = r.cpu {
                row.cpu.push(c);
            }
        }
    }
    drop(load);
    rows
}

// ---------------------------------------------------------------------------------------
// 3. Orchestrator CPU during a 5 s drain.

pub struct CpuRow {
    pub kind: Kind,
    pub method: Method,
    pub cpu: Vec<Duration>,
    pub wall: Vec<Duration>,
    pub errors: Vec<String>,
}

/// Keeps requests in flight on the old workers for `hold`: each connection has sent
/// a request line and one header, and sends the end of its headers after `hold`.
/// (Real nginx waits for such requests on a graceful stop; observed in
/// notes/nginx-observations.md §10.)
fn hold_requests(addr: SocketAddr, n: usize, hold: Duration) -> std::thread::JoinHandle<usize> {
    let mut conns = Vec::new();
    for _ in 0..n {
        if let Ok(mut s) = TcpStream::connect(addr) {
            let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\n");
            conns.push(s);
        }
    }
    std::thread::sleep(Duration::from_millis(100)); // let the workers accept them
    std::thread::spawn(move || {
        std::thread::sleep(hold);
        let mut ok = 0;
        for mut s in conns {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            if s.write_all(b"Connection: close\r\n\r\n").is_ok() {
                let mut buf = String::new();
                if std::io::Read::read_to_string(&mut s, &mut buf).is_ok()
                    && buf.starts_with("HTTP/1.1 200")
                {
                    ok += 1;
                }
            }
        }
        ok
    })
}

pub fn cpu(plan: &Plan, builds: &Builds, tools: &Tools, use_holder: bool) -> Vec<CpuRow> {
    let mut methods = vec![Method::Oracle, Method::Lib];
    if tools.hotreload.is_some() {
        methods.push(Method::Cli);
    }
    let mut rows: Vec<CpuRow> = methods
        .iter()
        .map(|&method| CpuRow {
            kind: builds.kind,
            method,
            cpu: vec![],
            wall: vec![],
            errors: vec![],
        })
        .collect();
    eprintln!("[3] {}: CPU during a 5 s drain", builds.kind.name());
    let server = match Server::start(builds.kind, &builds.a, 2) {
        Ok(s) => s,
        Err(e) => {
            for r in &mut rows {
                r.errors.push(e.clone());
            }
            return rows;
        }
    };
    let mut i = 0;
    for _ in 0..plan.cpu_reps {
        for row in rows.iter_mut() {
            let holder = use_holder.then(|| hold_requests(server.addr, 8, Duration::from_secs(5)));
            let r = methods::run(row.method, &server, builds.target(i), tools);
            i += 1;
            if let Some(h) = holder {
                let _ = h.join();
            }
            match (&r.error, r.cpu, r.to_old_exit) {
                (None, Some(c), Some(w)) => {
                    row.cpu.push(c);
                    row.wall.push(w);
                }
                (Some(e), _, _) => row.errors.push(e.clone()),
                _ => row.errors.push("no CPU or exit time measured".into()),
            }
        }
    }
    rows
}

// ---------------------------------------------------------------------------------------
// 4. Discovery / status time against workers and unrelated processes.

pub struct ScaleRow {
    pub kind: Kind,
    pub workers: usize,
    pub sleepers: usize,
    pub processes_on_machine: usize,
    pub observe: Option<Duration>,
    pub status_cli: Option<Duration>,
    pub proc_scan: Option<Duration>,
    pub error: Option<String>,
}

/// Sleeping processes in one process group; killed and reaped on drop.
struct Sleepers {
    children: Vec<Child>,
    group: i32,
}

impl Sleepers {
    fn start(n: usize) -> Result<Sleepers, String> {
        let mut s = Sleepers {
            children: Vec::with_capacity(n),
            group: 0,
        };
        for _ in 0..n {
            let mut c = Command::new("sleep");
            c.arg("3600")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .process_group(s.group);
            let child = c.spawn().map_err(|e| format!("spawn sleeper: {e}"))?;
            if s.group == 0 {
                s.group = child.id() as i32;
                crate::server::HELPER_GROUPS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(s.group);
            }
            s.children.push(child);
        }
        Ok(s)
    }
}

impl Drop for Sleepers {
    fn drop(&mut self) {
        if self.group > 1 {
            // SAFETY: kill(2) of our own sleepers' process group.
            unsafe { libc::kill(-self.group, libc::SIGKILL) };
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn time_median(reps: usize, mut f: impl FnMut() -> Result<(), String>) -> Result<Duration, String> {
    let mut v = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        f()?;
        v.push(t.elapsed());
    }
    median(&v).ok_or_else(|| "no repetition".into())
}

fn measure_scale(server: &Server, tools: &Tools, row: &mut ScaleRow) {
    let target = Target::new(&server.pid_file);
    let n = server.workers;
    let observe = time_median(21, || {
        let o = target.observe().map_err(|e| e.to_string())?;
        let w = o.old_master.as_ref().map_or(0, |m| m.workers.len());
        if o.phase != Phase::Steady || w != n {
            return Err(format!(
                "observed {} with {w} workers, expected steady with {n}",
                o.phase
            ));
        }
        Ok(())
    });
    match observe {
        Ok(d) => row.observe = Some(d),
        Err(e) => row.error = Some(e),
    }
    let scan = ProcScanDiscovery::new(&server.exe);
    row.proc_scan = time_median(5, || scan.discover().map(|_| ()).map_err(|e| e.to_string())).ok();
    if let Some(cli) = &tools.hotreload {
        row.status_cli = time_median(7, || {
            let out = Command::new(cli)
                .arg("status")
                .arg("--pid-file")
                .arg(&server.pid_file)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| e.to_string())?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!("hotreload status exited with {}", out.status))
            }
        })
        .ok();
    }
}

pub fn scale(plan: &Plan, builds: &Builds, tools: &Tools) -> Vec<ScaleRow> {
    let mut rows = Vec::new();
    let new_row = |workers, sleepers| ScaleRow {
        kind: builds.kind,
        workers,
        sleepers,
        processes_on_machine: 0,
        observe: None,
        status_cli: None,
        proc_scan: None,
        error: None,
    };
    for &w in &plan.worker_counts {
        eprintln!("[4] {}: {w} workers", builds.kind.name());
        let mut row = new_row(w, 0);
        match Server::start(builds.kind, &builds.a, w) {
            Ok(server) => {
                row.processes_on_machine = sys::all_pids().len();
                measure_scale(&server, tools, &mut row);
            }
            Err(e) => row.error = Some(e),
        }
        rows.push(row);
    }
    let server = match Server::start(builds.kind, &builds.a, 2) {
        Ok(s) => s,
        Err(e) => {
            let mut row = new_row(2, 0);
            row.error = Some(e);
            rows.push(row);
            return rows;
        }
    };
    for &n in &plan.sleeper_counts {
        eprintln!(
            "[4] {}: 2 workers, {n} sleeping processes",
            builds.kind.name()
        );
        let mut row = new_row(2, n);
        match Sleepers::start(n) {
            Ok(sleepers) => {
                row.processes_on_machine = sys::all_pids().len();
                measure_scale(&server, tools, &mut row);
                drop(sleepers);
            }
            Err(e) => row.error = Some(e),
        }
        rows.push(row);
    }
    rows
}

// ---------------------------------------------------------------------------------------
// 5. Many targets upgraded in parallel by one process (the library, one thread each).

pub struct ParallelRow {
    pub targets: usize,
    pub wall: Option<Duration>,
    pub per_upgrade_median: Option<Duration>,
    pub failures: usize,
    pub errors: Vec<String>,
}

pub fn parallel(plan: &Plan, builds: &Builds) -> Vec<ParallelRow> {
    let mut rows = Vec::new();
    for &n in &plan.parallel {
        eprintln!("[5] {n} fake-nginx instances upgraded in parallel");
        let mut row = ParallelRow {
            targets: n,
            wall: None,
            per_upgrade_median: None,
            failures: 0,
            errors: vec![],
        };
        let mut servers = Vec::new();
        for _ in 0..n {
            match Server::start(builds.kind, &builds.a, 2) {
                Ok(s) => servers.push(s),
                Err(e) => {
                    row.errors.push(e);
                    break;
                }
            }
        }
        if servers.len() == n {
            let olds: Vec<i32> = servers.iter().map(Server::master).collect();
            let t0 = Instant::now();
            let results: Vec<(Duration, Result<(), String>)> = std::thread::scope(|scope| {
                let handles: Vec<_> = servers
                    .iter()
                    .map(|s| {
                        let new = builds.b.as_path();
                        scope.spawn(move || {
                            let t = Instant::now();
                            let r = methods::lib_upgrade(&s.pid_file, new, true).map(|_| ());
                            (t.elapsed(), r)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join()
                            .unwrap_or((Duration::ZERO, Err("thread panicked".into())))
                    })
                    .collect()
            });
            row.wall = Some(t0.elapsed());
            let times: Vec<Duration> = results.iter().map(|(d, _)| *d).collect();
            row.per_upgrade_median = median(&times);
            for ((s, (_, r)), &old) in servers.iter().zip(&results).zip(&olds) {
                let steady = match r {
                    Ok(()) => s
                        .wait_upgraded(old, Duration::from_secs(10))
                        .and_then(|new| {
                            if sys::exe_is(new, &builds.b) {
                                Ok(())
                            } else {
                                Err(format!("new master {new} does not run the new build"))
                            }
                        }),
                    Err(e) => Err(e.clone()),
                };
                if let Err(e) = steady {
                    row.failures += 1;
                    if row.errors.len() < 5 {
                        row.errors.push(e);
                    }
                }
            }
        }
        drop(servers);
        rows.push(row);
    }
    rows
}
