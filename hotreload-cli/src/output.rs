//! Everything `hotreload` prints: the human account, live progress, errors, and JSON Lines.
//!
//! # Human output
//!
//! The step-by-step account (steps with their durations, every signal with its pid and
//! role, every check) goes to **stdout**. Live progress while the library waits (what it
//! waits for, elapsed time, deadline) goes to **stderr**: one line rewritten in place when
//! stderr is a terminal, otherwise a plain line every [`PLAIN_PROGRESS_EVERY`] so logs stay
//! readable (waits shorter than [`PLAIN_PROGRESS_FIRST`] print nothing). Errors go to stderr as `hotreload: <what failed, on which pid/path>` followed by
//! a `hotreload: what to do: ...` line.
//!
//! # JSON Lines (`--json`)
//!
//! stdout carries one JSON object per line, each in an envelope
//! `{"type": "<kind>", "data": {...}}`. Errors are still also written to stderr for people
//! watching, but a program needs only stdout. Event kinds, in the order they can occur:
//!
//! | `type` | `data` |
//! |---|---|
//! | `step_started` | `{"step": "preflight"\|"config-test"\|"lock"\|"swap"\|"spawn"\|"health"\|"drain"\|"retire"\|"rollback"\|"restore-binary"\|"commit"}` |
//! | `step_finished` | `{"step": ..., "duration_ms": u64}` |
//! | `check` | `{"name": str, "ok": bool, "detail": str}` |
//! | `signalled` | `{"pid": i32, "signal": "SIGUSR2", "role": "old-master"\|"new-master"\|"worker"}` |
//! | `waiting` | `{"what": str, "elapsed_ms": u64, "timeout_ms": u64}` (at the start of a wait and about every 500 ms) |
//! | `observed` | `{"what": str}` |
//! | `decision` | `{"message": str}` |
//! | `warning` | `{"message": str}` |
//! | `demo` | (demo only) `{"message": str, ...}`: what the demo is doing |
//! | `result` | always the **last** line; see below |
//!
//! `result.data`:
//!
//! ```text
//! {
//!   "command":   "status" | "upgrade" | "spawn" | "drain" | "commit" | "rollback" | "demo",
//!   "outcome":   "ok" | "committed" | "kept-old" | "dry-run" | "rolled-back" | "refused"
//!                | "locked" | "unrecovered" | "interrupted" | "failed",
//!   "exit_code": 0..=5 (or 130/143 for an interrupted demo),
//!   "old_pid":   i32 | null,      // the master before the command
//!   "new_pid":   i32 | null,      // the master started by it, if any
//!   "steps":     [{"step": str, "duration_ms": u64}],
//!   "error":     str | null,      // what failed, naming the pid or path
//!   "hint":      str | null,      // what to do about it
//!   "state":     <status object> | null   // the state observed after a failure
//! }
//! ```
//!
//! `upgrade` adds `"preflight": [{"name", "ok", "detail"}]`, `"plan": [str]` and `"total_ms"`; `demo` adds `"requests_ok"`,
//! `"requests_failed"`, `"versions": {"<Server header>": count}` and `"upgrades"`.
//!
//! `hotreload status --json` prints a single line: the **status object** itself (no
//! envelope). A bad pid file gives `"phase": "unknown"` with the reason in `evidence` (and
//! exit code 3); only when the system cannot be read at all is a `result` envelope printed:
//!
//! ```text
//! {
//!   "phase": "steady" | "spawned" | "drained" | "unknown",
//!   "pid_file": str,
//!   "old_master": <master> | null,   // in steady, the only master
//!   "new_master": <master> | null,
//!   "evidence": [str],               // how the phase was established
//!   "systemd": {"unit", "active_state", "main_pid": i32 | null, "type",
//!               "pid_file": str | null} | null   // the master's service, if any
//! }
//! master = {
//!   "pid": i32, "exe": str | null, "title": str,
//!   "start_time": u64,               // clock ticks after boot (/proc/<pid>/stat field 22)
//!   "started_at": "2026-11-26T11:00:00Z",
//!   "workers": [i32],
//!   "worker_details": [{"pid": i32, "start_time": u64, "title": str, "shutting_down": bool}]
//! }
//! ```

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use hotreload_core::{Event, MasterInfo, Observation, Observer, Phase, Role, StepTiming};
use serde_json::{json, Map, Value};

/// How often a plain (non-terminal) progress line is repeated while a wait lasts.
pub const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// How long a wait lasts before the first plain (non-terminal) progress line.
pub const PLAIN_PROGRESS_FIRST: Duration = Duration::from_secs(1);

/// The printer shared by every command; it is the library's [`Observer`] too.
pub struct Output {
    json: bool,
    stderr_tty: bool,
    state: Mutex<PrintState>,
}

#[derive(Default)]
struct PrintState {
    /// A progress line is on the terminal and must be cleared before anything else prints.
    progress_on_screen: bool,
    /// The last plain progress line: what it was about, and when it was printed.
    last_plain: Option<(String, Instant)>,
    /// Signals the library reported sending; a failed step that sent none changed nothing.
    /// Steps the library reported finishing, in order, for the `result` record.
    steps: Vec<(String, Duration)>,
}

impl Output {
    pub fn new(json: bool) -> Output {
        Output {
            json,
            stderr_tty: std::io::stderr().is_terminal(),
            state: Mutex::new(PrintState::default()),
        }
    }

    pub fn is_json(&self) -> bool {
        self.json
    }

    /// The steps finished so far as the `steps` array of a `result` record.
    pub fn steps_taken(&self) -> Value {
        Value::Array(
            self.lock()
                .steps
                .iter()
                .map(|(step, d)| json!({ "step": step, "duration_ms": millis(*d) }))
                .collect(),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PrintState> {
        // A panic while printing must not silence the rest of the run.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A line of the human account (stdout); nothing in JSON mode.
    pub fn say(&self, text: impl AsRef<str>) {
        if self.json {
            return;
        }
        let mut state = self.lock();
        self.clear_progress(&mut state);
        // A closed stdout (e.g. `| head`) must not turn into a panic mid-upgrade.
        let _ = writeln!(std::io::stdout().lock(), "{}", text.as_ref());
    }

    /// One JSON Lines record (stdout); nothing in human mode.
    pub fn emit(&self, kind: &str, data: Value) {
        if !self.json {
            return;
        }
        let _guard = self.lock();
        print_json_line(&json!({ "type": kind, "data": data }));
    }

    /// A bare JSON object on its own line (used by `status --json`).
    pub fn emit_raw(&self, value: &Value) {
        let _guard = self.lock();
        print_json_line(value);
    }

    /// The final `result` record. Human output prints its own summary instead.
    pub fn result(&self, data: Map<String, Value>) {
        self.emit("result", Value::Object(data));
    }

    /// `hotreload: <message>` on stderr, in both modes (JSON consumers read `result.error`).
    pub fn error(&self, message: &str, hint: Option<&str>) {
        let mut state = self.lock();
        self.clear_progress(&mut state);
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "hotreload: {message}");
        if let Some(hint) = hint {
            let _ = writeln!(err, "hotreload: what to do: {hint}");
        }
    }

    /// `hotreload: what to do: <hint>` on stderr, after an error and the state it left.
    pub fn hint(&self, hint: &str) {
        let mut state = self.lock();
        self.clear_progress(&mut state);
        let _ = writeln!(std::io::stderr().lock(), "hotreload: what to do: {hint}");
    }

    /// Live progress of a wait on stderr (human mode); a `waiting` record in JSON mode.
    pub fn progress(&self, what: &str, elapsed: Duration, timeout: Duration) {
        if self.json {
            self.emit(
                "waiting",
                json!({ "what": what, "elapsed_ms": millis(elapsed), "timeout_ms": millis(timeout) }),
            );
            return;
        }
        let mut state = self.lock();
        let mut err = std::io::stderr().lock();
        if self.stderr_tty {
            // \r + "erase line" rewrites the same line: a terminal shows one live status.
            // Cut to the terminal's width: a wrapped line could not be rewritten.
            // Cut to the terminal's width (a wrapped line could not be rewritten), taking
            // the room from the description so elapsed time and deadline stay visible.
            let prefix = "  ... waiting for ";
            let suffix = format!(
                ": {} so far, deadline {}",
                fmt_duration(elapsed),
                fmt_duration(timeout)
            );
            let line = match crate::term::stderr_width() {
                Some(width) => {
                    let room = width.saturating_sub(prefix.len() + suffix.chars().count());
                    if room > 10 {
                        format!("{prefix}{}{suffix}", crate::term::fit(what, room))
                    } else {
                        crate::term::fit(&format!("{prefix}{what}{suffix}"), width)
                    }
                }
                None => format!("{prefix}{what}{suffix}"),
            };
            let _ = write!(err, "\r\x1b[2K{line}");
            let _ = err.flush();
            state.progress_on_screen = true;
        } else {
            // Logs get no line for the many waits that end within a second, then one
            // line every few seconds: enough to see a slow drain without flooding.
            let due = elapsed >= PLAIN_PROGRESS_FIRST
                && match &state.last_plain {
                    Some((last_what, at)) => {
                        last_what != what || at.elapsed() >= PLAIN_PROGRESS_EVERY
                    }
                    None => true,
                };
            if due {
                let _ = writeln!(
                    err,
                    "hotreload: waiting for {what}: {} so far, deadline {}",
                    fmt_duration(elapsed),
                    fmt_duration(timeout)
                );
                state.last_plain = Some((what.to_owned(), Instant::now()));
            }
        }
    }

    fn clear_progress(&self, state: &mut PrintState) {
        if state.progress_on_screen {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            state.progress_on_screen = false;
        }
    }

    /// Prints the library's events as they happen (human account or JSON records).
    pub fn event(&self, event: &Event) {
        if let Event::StepFinished { step, duration } = event {
            self.lock()
                .steps
                .push((step.as_str().to_owned(), *duration));
        }
        if let Event::Waiting {
            what,
            elapsed,
            timeout,
        } = event
        {
            self.progress(what, *elapsed, *timeout);
            return;
        }
        if self.json {
            if let Some((kind, data)) = event_json(event) {
                self.emit(kind, data);
            }
            return;
        }
        // A wait that ends is followed by another event; the next plain progress line
        // for the same thing (a later wait) should print at once.
        self.lock().last_plain = None;
        if let Some(line) = event_human(event) {
            self.say(line);
        }
    }
}

impl Observer for Output {
    fn on_event(&self, event: &Event) {
        self.event(event);
    }
}

fn print_json_line(value: &Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    // Consumers read line by line while the upgrade runs: flush each record.
    let _ = out.flush();
}

pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `412ms`, `1.25s`, `2m 5s`: precise for short steps, short for long ones.
pub fn fmt_duration(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{}ms", d.as_millis())
    } else if d < Duration::from_secs(60) {
        format!("{:.2}s", d.as_secs_f64())
    } else {
        humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()
    }
}

/// `old-master`, `new-master`, `worker`: the library's own names, so JSON and the
/// library's `Display` agree.
pub fn role_str(role: &Role) -> &'static str {
    role.as_str()
}

fn role_human(role: &Role) -> &'static str {
    #[allow(unreachable_patterns)]
    match role {
        Role::OldMaster => "old master",
        Role::NewMaster => "new master",
        Role::Worker => "worker",
        _ => "process",
    }
}

/// The JSON record for a library event; `None` for kinds this build does not know.
pub fn event_json(event: &Event) -> Option<(&'static str, Value)> {
    #[allow(unreachable_patterns)] // Event is non-exhaustive: new kinds are skipped, not fatal
    let record = match event {
        Event::StepStarted { step } => ("step_started", json!({ "step": step.as_str() })),
        Event::StepFinished { step, duration } => (
            "step_finished",
            json!({ "step": step.as_str(), "duration_ms": millis(*duration) }),
        ),
        Event::Check { name, ok, detail } => {
            ("check", json!({ "name": name, "ok": ok, "detail": detail }))
        }
        Event::Signalled { pid, signal, role } => (
            "signalled",
            json!({ "pid": pid.get(), "signal": signal.to_string(), "role": role_str(role) }),
        ),
        Event::Waiting {
            what,
            elapsed,
            timeout,
        } => (
            "waiting",
            json!({ "what": what, "elapsed_ms": millis(*elapsed), "timeout_ms": millis(*timeout) }),
        ),
        Event::Observed { what } => ("observed", json!({ "what": what })),
        Event::Decision { message } => ("decision", json!({ "message": message })),
        Event::Warning { message } => ("warning", json!({ "message": message })),
        _ => return None,
    };
    Some(record)
}

fn event_human(event: &Event) -> Option<String> {
    #[allow(unreachable_patterns)]
    let line = match event {
        Event::StepStarted { step } => format!("  {:<14} started", step.as_str()),
        Event::StepFinished { step, duration } => {
            format!(
                "  {:<14} done in {}",
                step.as_str(),
                fmt_duration(*duration)
            )
        }
        Event::Check {
            name,
            ok: true,
            detail,
        } => format!("      check ok      {name}: {detail}"),
        Event::Check {
            name,
            ok: false,
            detail,
        } => format!("      check FAILED  {name}: {detail}"),
        Event::Signalled { pid, signal, role } => {
            format!("      signal        {signal} -> {} {pid}", role_human(role))
        }
        Event::Observed { what } => format!("      observed      {what}"),
        Event::Decision { message } => format!("      decision      {message}"),
        Event::Warning { message } => format!("      WARNING       {message}"),
        Event::Waiting { .. } => return None,
        _ => return None,
    };
    Some(line)
}

pub fn steps_json(steps: &[StepTiming]) -> Value {
    Value::Array(
        steps
            .iter()
            .map(|s| json!({ "step": s.step.as_str(), "duration_ms": millis(s.duration) }))
            .collect(),
    )
}

/// `preflight 3ms, swap 1ms, spawn 412ms, ...`
pub fn steps_human(steps: &[StepTiming]) -> String {
    steps
        .iter()
        .map(|s| format!("{} {}", s.step.as_str(), fmt_duration(s.duration)))
        .collect::<Vec<_>>()
        .join(", ")
}

fn master_json(master: &MasterInfo) -> Value {
    json!({
        "pid": master.pid.get(),
        "exe": master.exe.as_ref().map(|p| p.display().to_string()),
        "title": master.title,
        "start_time": master.start_time,
        "started_at": humantime::format_rfc3339_seconds(master.started_at).to_string(),
        "workers": master.workers.iter().map(|w| w.pid.get()).collect::<Vec<_>>(),
        "worker_details": master.workers.iter().map(|w| json!({
            "pid": w.pid.get(),
            "start_time": w.start_time,
            "title": w.title,
            "shutting_down": w.shutting_down,
        })).collect::<Vec<_>>(),
    })
}

/// The status object of `hotreload status --json` (schema in the module docs).
pub fn observation_json(obs: &Observation, pid_file: &Path) -> Value {
    json!({
        "phase": obs.phase.as_str(),
        "pid_file": pid_file.display().to_string(),
        "old_master": obs.old_master.as_ref().map(master_json),
        "new_master": obs.new_master.as_ref().map(master_json),
        "evidence": obs.evidence,
        "systemd": systemd_of(obs).map(|u| json!({
            "unit": u.name,
            "active_state": u.active_state,
            "main_pid": u.main_pid.map(|p| p.get()),
            "type": u.service_type,
            "pid_file": u.pid_file.map(|p| p.display().to_string()),
        })),
    })
}

/// The systemd service the (old) master runs in, as systemd describes it; `None` outside
/// systemd or when systemd cannot be asked.
fn systemd_of(obs: &Observation) -> Option<hotreload_core::systemd::Unit> {
    let master = obs.old_master.as_ref().or(obs.new_master.as_ref())?;
    hotreload_core::systemd::unit_for(master.pid).ok().flatten()
}

/// One sentence per phase: what it means for the service.
pub fn phase_meaning(phase: &Phase) -> &'static str {
    #[allow(unreachable_patterns)]
    match phase {
        Phase::Steady => "one master with workers; no upgrade in progress",
        Phase::Spawned => "upgrade in progress: old and new master both have workers (after USR2)",
        Phase::Drained => "upgrade in progress: old master kept without workers (after WINCH)",
        Phase::Unknown => "not a state hotreload can name; see the evidence",
        _ => "a phase this build of hotreload does not know",
    }
}

/// The ` --flavor NAME` that suggested commands must repeat (nothing for nginx, the
/// default). One command runs per process, so it is set once, when the target is built.
static FLAVOR_ARG: OnceLock<String> = OnceLock::new();

/// Makes the suggested commands carry `--flavor name` (unless it is the default).
pub fn set_flavor_for_hints(name: &str) {
    if name != "nginx" {
        let _ = FLAVOR_ARG.set(format!(" --flavor {name}"));
    }
}

/// What an operator can run next from this phase.
pub fn next_commands(phase: &Phase, pid_file: &Path) -> String {
    let file = shell_quote(pid_file);
    // What follows `--pid-file` in a suggested command.
    let p = format!("{file}{}", FLAVOR_ARG.get().map_or("", String::as_str));
    #[allow(unreachable_patterns)]
    match phase {
        Phase::Steady => format!(
            "`hotreload upgrade --pid-file {p} --new-binary PATH` (or `hotreload spawn --pid-file {p}` to go step by step)"
        ),
        Phase::Spawned => format!(
            "`hotreload drain --pid-file {p}` to continue, or `hotreload rollback --pid-file {p}` to go back"
        ),
        Phase::Drained => format!(
            "`hotreload commit --pid-file {p}` to keep the new version, or `hotreload rollback --pid-file {p}` to go back"
        ),
        _ => format!(
            "if an upgrade was interrupted while the new master was starting (the old pid file names a live master, the pid file is missing), `hotreload rollback --pid-file {p}` stops the new master and restores the executable. Otherwise no hotreload command fits this state: check that {file} is the server's pid file (nginx: its `pid` directive) and that the server runs; the evidence names the processes involved: fix the pid file or stop the stray master by hand, then run `hotreload status --pid-file {p}` again"
        ),
    }
}

/// Quotes a path for a copy-pasteable command only when it needs it.
pub fn shell_quote(path: &Path) -> String {
    let s = path.display().to_string();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn master_human(label: &str, master: &MasterInfo) -> Vec<String> {
    let exe = master
        .exe
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(executable unknown)".to_owned());
    let age = master
        .started_at
        .elapsed()
        .map(|d| {
            format!(
                " ({} ago)",
                humantime::format_duration(Duration::from_secs(d.as_secs()))
            )
        })
        .unwrap_or_default();
    let mut lines = vec![
        format!("{label:<11} {}  {exe}", master.pid),
        format!(
            "{:<11} started {}{age}",
            "",
            humantime::format_rfc3339_seconds(master.started_at)
        ),
    ];
    if master.workers.is_empty() {
        lines.push(format!("{:<11} no workers", ""));
    } else {
        let pids: Vec<String> = master
            .workers
            .iter()
            .map(|w| {
                if w.shutting_down {
                    format!("{} (shutting down)", w.pid)
                } else {
                    w.pid.to_string()
                }
            })
            .collect();
        lines.push(format!("{:<11} workers {}", "", pids.join(" ")));
    }
    lines
}

/// The human rendering of an observation, as `hotreload status` prints it.
pub fn observation_human(obs: &Observation, pid_file: &Path) -> Vec<String> {
    let mut lines = vec![format!(
        "phase       {} ({})",
        obs.phase.as_str(),
        phase_meaning(&obs.phase)
    )];
    let old_label = if obs.new_master.is_some() {
        "old master"
    } else {
        "master"
    };
    if let Some(old) = &obs.old_master {
        lines.extend(master_human(old_label, old));
    }
    if let Some(new) = &obs.new_master {
        lines.extend(master_human("new master", new));
    }
    if let Some(unit) = systemd_of(obs) {
        lines.push(format!("{:<11} {unit}", "systemd"));
    }
    if !obs.evidence.is_empty() {
        lines.push("evidence".to_owned());
        lines.extend(obs.evidence.iter().map(|e| format!("  - {e}")));
    }
    lines.push(format!(
        "next        {}",
        next_commands(&obs.phase, pid_file)
    ));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(fmt_duration(Duration::from_millis(412)), "412ms");
        assert_eq!(fmt_duration(Duration::from_millis(1250)), "1.25s");
        assert_eq!(fmt_duration(Duration::from_secs(125)), "2m 5s");
    }

    #[test]
    fn paths_are_quoted_only_when_needed() {
        assert_eq!(shell_quote(Path::new("/run/nginx.pid")), "/run/nginx.pid");
        assert_eq!(shell_quote(Path::new("/tmp/a b")), "'/tmp/a b'");
        assert_eq!(shell_quote(Path::new("/tmp/it's")), r"'/tmp/it'\''s'");
    }
}
