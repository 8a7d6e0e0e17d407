//! The ways to upgrade a running server that the benchmark compares: hotreload (CLI and
//! library), the recipes people use today, a plain restart, and the busy-polling oracle.
//!
//! Each run is timed the same way from outside: `t0` is taken just before the method
//! starts (for the library and the oracle, which run in a child process of this
//! benchmark so that their CPU time can be measured alone, after that child is up and
//! waiting: its start-up is not counted); the old master's exit is seen through a
//! pidfd held by a watcher thread; the method's own end is its process exit.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::server::{install, Server, DEADLINE};
use crate::sys;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// `hotreload upgrade --pid-file P --new-binary B` (the CLI, a new process).
    Cli,
    /// `hotreload_core::upgrade` with the default options, in a child process.
    Lib,
    /// The same without the config test (`-t`): the protocol part alone.
    LibNoConfigTest,
    /// Busy-polling oracle: swap, then the same signals as fast as the protocol allows.
    Oracle,
    /// The same with the new binary's config test (`nginx -t`) first: the whole job of a
    /// default `hotreload upgrade`, minus every safety step (issue 14's reference).
    TestingOracle,
    /// The same job polled every 50 µs instead of spinning (a fast poller that leaves
    /// the CPU to the server: the practical limit on a small, loaded machine).
    PollingOracle,
    /// nginx's `make install` + `make upgrade`.
    Make,
    /// Debian's init-script `upgrade`.
    Debian,
    /// The hand procedure, scripted with a one-second look between steps.
    Hand,
    /// Plain restart: QUIT, wait for the exit, start the new binary.
    Restart,
}

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::Cli => "hotreload upgrade (CLI)",
            Method::Lib => "hotreload_core::upgrade (library)",
            Method::LibNoConfigTest => "library, no config test",
            Method::Oracle => "busy-polling oracle",
            Method::TestingOracle => "busy-polling oracle with `nginx -t`",
            Method::PollingOracle => "50 µs-polling oracle",
            Method::Make => "`make upgrade` recipe",
            Method::Debian => "Debian init-script upgrade",
            Method::Hand => "hand procedure (1 s looks)",
            Method::Restart => "plain restart",
        }
    }
}

/// What one upgrade run measured.
#[derive(Clone, Debug, Default)]
pub struct RunResult {
    /// From the start to the old master's exit.
    pub to_old_exit: Option<Duration>,
    /// From the start to the method's own end.
    pub to_done: Duration,
    /// user+sys CPU of the orchestrator process (and what it waited for).
    pub cpu: Option<Duration>,
    /// When it started (for matching load timestamps).
    pub t0: Option<Instant>,
    pub new_master: i32,
    /// The library's own step timings (`step` -> duration), when it ran.
    pub steps: Vec<(String, Duration)>,
    pub error: Option<String>,
}

/// Paths the methods need.
pub struct Tools {
    pub hotreload: Option<PathBuf>,
    pub bench_exe: PathBuf,
}

fn sh(script: &str, vars: &[(&str, &Path)]) -> Command {
    let mut c = Command::new("/bin/sh");
    c.arg("-c").arg(script);
    for (k, v) in vars {
        c.env(k, v);
    }
    c
}

const MAKE_SCRIPT: &str = r#"
# make install: keep the previous binary as nginx.old, copy the new one in
test -f "$SBIN" && mv "$SBIN" "$SBIN.old" || :
cp "$NEW" "$SBIN"
# make upgrade
"$SBIN" -p "$PREFIX/" -c conf/nginx.conf -t || exit 1
kill -USR2 `cat "$PID"` || exit 1
sleep 1
test -f "$PID.oldbin" || exit 1
kill -QUIT `cat "$PID.oldbin"`
"#;

const DEBIAN_SCRIPT: &str = r#"
# dpkg unpack: stage and rename over the old binary
cp "$NEW" "$SBIN.dpkg-new" && mv -f "$SBIN.dpkg-new" "$SBIN" || exit 1
# /etc/init.d/nginx upgrade
start-stop-daemon --stop --signal USR2 --quiet --pidfile "$PID" --name nginx || exit 1
cnt=0
while [ ! -s "$PID.oldbin" ] || [ ! -s "$PID" ]; do
    cnt=`expr $cnt + 1`
    if [ $cnt -gt 10 ]; then exit 2; fi
    sleep 1
done
start-stop-daemon --stop --signal QUIT --quiet --pidfile "$PID.oldbin" --name nginx || exit 3
"#;

const HAND_SCRIPT: &str = r#"
cp -p "$SBIN" "$SBIN.bak" || exit 1
cp -f "$NEW" "$SBIN" || exit 1
kill -USR2 `cat "$PID"` || exit 1
sleep 1
test -s "$PID.oldbin" || exit 1
kill -WINCH `cat "$PID.oldbin"` || exit 1
sleep 1
kill -QUIT `cat "$PID.oldbin"`
"#;

/// Runs one upgrade of `server` to `new_build` with `method`, waits until the server is
/// steady on a new master, and returns the timings.
pub fn run(method: Method, server: &Server, new_build: &Path, tools: &Tools) -> RunResult {
    let old = server.master();
    let mut res = RunResult::default();
    if old <= 1 || sys::exited(old) {
        res.error = Some("no live master before the upgrade".into());
        return res;
    }
    let pidfd = match sys::PidFd::open(old) {
        Ok(p) => p,
        Err(e) => {
            res.error = Some(e);
            return res;
        }
    };
    // Watches for the old master's exit until it happens or `stop` is set (a failed
    // upgrade leaves the old master running).
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + DEADLINE * 2;
            while Instant::now() < deadline && !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Some(t) = pidfd.wait(Instant::now() + Duration::from_millis(20)) {
                    return Some(t);
                }
            }
            None
        })
    };
    let vars = [
        ("SBIN", server.exe.as_path()),
        ("NEW", new_build),
        ("PID", server.pid_file.as_path()),
        ("PREFIX", server.prefix.as_path()),
    ];
    let (t0, outcome) = match method {
        Method::Cli => match &tools.hotreload {
            None => (
                Instant::now(),
                Err("the hotreload CLI is not built".to_string()),
            ),
            Some(cli) => {
                let mut c = Command::new(cli);
                c.arg("upgrade")
                    .arg("--pid-file")
                    .arg(&server.pid_file)
                    .arg("--new-binary")
                    .arg(new_build);
                spawn_and_wait(c)
            }
        },
        Method::Make => spawn_and_wait(sh(MAKE_SCRIPT, &vars)),
        Method::Debian => spawn_and_wait(sh(DEBIAN_SCRIPT, &vars)),
        Method::Hand => spawn_and_wait(sh(HAND_SCRIPT, &vars)),
        Method::Lib
        | Method::LibNoConfigTest
        | Method::Oracle
        | Method::TestingOracle
        | Method::PollingOracle => {
            let mut steps = String::new();
            let mode = match method {
                Method::Lib => "lib",
                Method::LibNoConfigTest => "lib-no-test",
                Method::PollingOracle => "oracle-poll",
                Method::TestingOracle => "oracle-test",
                _ => "oracle",
            };
            let mut c = Command::new(&tools.bench_exe);
            c.args(["--child", mode])
                .arg(&server.pid_file)
                .arg(&server.exe)
                .arg(new_build)
                .arg(server.workers.to_string());
            let r = spawn_with_handshake(c, &mut steps);
            res.steps = parse_steps(&steps);
            r
        }
        Method::Restart => {
            let t0 = Instant::now();
            (t0, restart(server, new_build, old))
        }
    };
    res.t0 = Some(t0);
    res.to_done = t0.elapsed();
    match outcome {
        Ok(cpu) => res.cpu = cpu,
        Err(e) => res.error = Some(e),
    }
    if let Some(e) = &mut res.error {
        // Say why, from the server's side, and stop watching after a short grace.
        *e = format!("{e}\n--- error log:\n{}", server.error_log_tail());
        eprintln!("upgrade failed ({}): {e}", method.name());
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    } else if sys::exited(old) {
        // Exited already: the watcher returns at once.
    } else {
        // The method is done; the old master may still be draining (a recipe that only
        // sent QUIT): wait for it, bounded.
        let deadline = Instant::now() + DEADLINE;
        while !sys::exited(old) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    let exit_at = watcher.join().ok().flatten();
    res.to_old_exit = exit_at.map(|t| t.saturating_duration_since(t0));
    if res.error.is_none() {
        match server.wait_upgraded(old, DEADLINE) {
            Ok(new) => res.new_master = new,
            Err(e) => res.error = Some(e),
        }
    }
    // Leftovers the recipes make (nginx.old, nginx.bak) are not ours to judge: remove them
    // so that every run starts from the same files.
    for f in ["nginx.old", "nginx.bak", "nginx.dpkg-new"] {
        let _ = std::fs::remove_file(server.prefix.join("sbin").join(f));
    }
    res
}

/// Spawns `c` (output discarded), waits; Ok(CPU) on exit 0.
fn spawn_and_wait(mut c: Command) -> (Instant, Result<Option<Duration>, String>) {
    c.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let t0 = Instant::now();
    let mut child = match c.spawn() {
        Ok(ch) => ch,
        Err(e) => return (t0, Err(format!("spawn {c:?}: {e}"))),
    };
    // Small output only (errors); read it after the exit would risk a full pipe, so
    // drain it on a thread.
    let stderr = child.stderr.take();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(mut e) = stderr {
            let _ = std::io::Read::read_to_string(&mut e, &mut s);
        }
        s
    });
    let (code, cpu) = sys::wait_child(child.id() as i32);
    let err = reader.join().unwrap_or_default();
    if code == 0 {
        (t0, Ok(Some(cpu)))
    } else {
        let prog = c.get_program().to_string_lossy().into_owned();
        (
            t0,
            Err(format!("{prog} exited with {code}: {}", err.trim())),
        )
    }
}

/// Spawns a child of this benchmark, waits for its `ready`, takes t0 and says `go`.
fn spawn_with_handshake(
    mut c: Command,
    output: &mut String,
) -> (Instant, Result<Option<Duration>, String>) {
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = match c.spawn() {
        Ok(ch) => ch,
        Err(e) => return (Instant::now(), Err(format!("spawn child: {e}"))),
    };
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    let _ = out.read_line(&mut line);
    let t0 = Instant::now();
    let ready = line.trim() == "ready";
    if let Some(mut stdin) = child.stdin.take() {
        let _ = stdin.write_all(b"go\n");
    }
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    let (code, cpu) = sys::wait_child(child.id() as i32);
    output.clone_from(&rest);
    if ready && code == 0 {
        (t0, Ok(Some(cpu)))
    } else {
        (
            t0,
            Err(format!("child exited with {code}: {}", rest.trim())),
        )
    }
}

/// Plain restart: install the new binary, QUIT the master, wait for its exit, start it.
fn restart(server: &Server, new_build: &Path, old: i32) -> Result<Option<Duration>, String> {
    install(new_build, &server.exe)?;
    let fd = sys::PidFd::open(old)?;
    sys::kill(old, libc::SIGQUIT)?;
    fd.wait(Instant::now() + DEADLINE)
        .ok_or_else(|| format!("master {old} did not exit after QUIT"))?;
    server.launch()?;
    Ok(None)
}

// ---------------------------------------------------------------------------------------
// Child modes: `<bench exe> --child lib|lib-no-test|oracle PID_FILE SBIN NEW WORKERS`.

/// Runs a child mode if the arguments ask for one; returns its exit code.
pub fn child_main(args: &[String]) -> Option<i32> {
    let pos = args.iter().position(|a| a == "--child")?;
    let rest = &args[pos + 1..];
    if rest.len() < 5 {
        eprintln!("usage: --child MODE PID_FILE SBIN NEW WORKERS");
        return Some(2);
    }
    let (mode, pid_file, sbin, new) = (
        rest[0].as_str(),
        Path::new(&rest[1]),
        Path::new(&rest[2]),
        Path::new(&rest[3]),
    );
    let workers: usize = rest[4].parse().unwrap_or(2);
    println!("ready");
    let _ = std::io::stdout().flush();
    let mut go = String::new();
    let _ = std::io::stdin().read_line(&mut go);
    let r = match mode {
        "lib" => lib_upgrade(pid_file, new, true),
        "lib-no-test" => lib_upgrade(pid_file, new, false),
        "oracle" => oracle(pid_file, sbin, new, workers, None, false),
        "oracle-test" => oracle(pid_file, sbin, new, workers, None, true),
        "oracle-poll" => oracle(
            pid_file,
            sbin,
            new,
            workers,
            Some(Duration::from_micros(50)),
            false,
        ),
        m => Err(format!("unknown child mode {m}")),
    };
    Some(match r {
        Ok(steps) => {
            println!("{steps}");
            0
        }
        Err(e) => {
            println!("{e}");
            1
        }
    })
}

/// `hotreload_core::upgrade` with default options; on success, its step timings as
/// `steps name=micros ...`.
pub fn lib_upgrade(pid_file: &Path, new: &Path, config_test: bool) -> Result<String, String> {
    let target = hotreload_core::Target::new(pid_file);
    let opts = hotreload_core::UpgradeOptions::new()
        .new_binary(new)
        .config_test(config_test);
    let report = hotreload_core::upgrade(&target, &opts, &hotreload_core::NoopObserver)
        .map_err(|e| format!("{:?}: {}", e.kind, e.error))?;
    let mut line = String::from("steps");
    for s in &report.steps {
        line += &format!(" {}={}", s.step.as_str(), s.duration.as_micros());
    }
    Ok(line)
}

fn parse_steps(out: &str) -> Vec<(String, Duration)> {
    let Some(line) = out.lines().find_map(|l| l.strip_prefix("steps")) else {
        return Vec::new();
    };
    line.split_whitespace()
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=')?;
            Some((k.to_string(), Duration::from_micros(v.parse().ok()?)))
        })
        .collect()
}

/// The physical limit: the same job (stage + rename the binary, USR2, wait for the new
/// master and its workers, WINCH, wait for the old workers to go, QUIT, wait for the old
/// master's exit), every wait a busy loop over the pid file and /proc with no pause.
/// Each turn of the loop ends with `sched_yield()`: on a small machine a pure spin
/// takes a core from the very processes it waits for (measured: slower than hotreload
/// on 2 loaded cores), while a yielding spin still sees every change within one turn.
fn oracle(
    pid_file: &Path,
    sbin: &Path,
    new: &Path,
    workers: usize,
    pause: Option<Duration>,
    config_test: bool,
) -> Result<String, String> {
    let t = Instant::now();
    let old = sys::read_pid(pid_file).ok_or("no pid in the pid file")?;
    let mut tested = String::new();
    if config_test {
        // `nginx -t` of the new binary on the running config (PREFIX/logs/nginx.pid).
        let prefix = pid_file
            .parent()
            .and_then(Path::parent)
            .ok_or("pid file outside PREFIX/logs")?;
        let out = Command::new(new)
            .arg("-p")
            .arg(format!("{}/", prefix.display()))
            .args(["-c", "conf/nginx.conf", "-t"])
            .current_dir(prefix)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("run {} -t: {e}", new.display()))?;
        if !out.status.success() {
            return Err(format!(
                "config test failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        tested = format!(" config-test={}", t.elapsed().as_micros());
    }
    let t_test = Instant::now();
    install(new, sbin)?;
    let t_swap = Instant::now();
    sys::kill(old, libc::SIGUSR2)?;
    let deadline = Instant::now() + DEADLINE;
    let spin = |what: &str, cond: &mut dyn FnMut() -> bool| -> Result<(), String> {
        while !cond() {
            if Instant::now() >= deadline {
                return Err(format!("oracle timed out waiting for {what}"));
            }
            match pause {
                Some(p) => std::thread::sleep(p),
                // SAFETY: sched_yield has no preconditions.
                None => unsafe {
                    libc::sched_yield();
                },
            }
        }
        Ok(())
    };
    let mut new_master = 0;
    spin("the new master and its workers", &mut || {
        new_master = sys::read_pid(pid_file).unwrap_or(0);
        new_master > 1
            && new_master != old
            && !sys::exited(new_master)
            && sys::workers_of(new_master).len() == workers
    })?;
    let t_spawn = Instant::now();
    sys::kill(old, libc::SIGWINCH)?;
    spin("the old workers to exit", &mut || {
        sys::workers_of(old).is_empty()
    })?;
    let t_drain = Instant::now();
    sys::kill(old, libc::SIGQUIT)?;
    spin("the old master to exit", &mut || sys::exited(old))?;
    let t_retire = Instant::now();
    Ok(format!(
        "steps{tested} swap={} spawn={} drain={} retire={}",
        (t_swap - t_test).as_micros(),
        (t_spawn - t_swap).as_micros(),
        (t_drain - t_spawn).as_micros(),
        (t_retire - t_drain).as_micros()
    ))
}
