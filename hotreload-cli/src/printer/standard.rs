//! The human printer: the step-by-step account on stdout, live progress and errors on
//! stderr.
//!
//! The account (steps with their durations, every signal with its pid and role, every
//! check, then the summary) goes to **stdout**. Live progress while a wait lasts goes to
//! **stderr**: one line rewritten in place when stderr is a terminal, otherwise a plain
//! line every [`PLAIN_PROGRESS_EVERY`] (waits shorter than [`PLAIN_PROGRESS_FIRST`] print
//! nothing), so logs stay readable. Errors are `hotreload: <what failed>` on stderr,
//! followed by `hotreload: what to do: ...`. `--quiet` keeps only the errors and the
//! summary line. Colour (`--color`) goes through anstream, which strips it when the
//! stream is not a terminal or `NO_COLOR` is set (under `auto`).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anstyle::{AnsiColor, Style};
use hotreload_core::{Event, MasterInfo, Observation, Observer, Phase, Role};

use crate::advice::{next_commands, HintContext};
use crate::exit::Exit;
use crate::printer::{
    fmt_duration, headline, pid_or_dash, steps_human, ColorWhen, Notice, PrintOptions,
};
use crate::report::{Body, DemoSummary, OutcomeKind, Report, StepCmd};

/// How often a plain (non-terminal) progress line is repeated while a wait lasts.
pub const PLAIN_PROGRESS_EVERY: Duration = Duration::from_secs(5);

/// How long a wait lasts before the first plain (non-terminal) progress line.
pub const PLAIN_PROGRESS_FIRST: Duration = Duration::from_secs(1);

const BAD: Style = AnsiColor::Red.on_default().bold();
const WARN: Style = AnsiColor::Yellow.on_default().bold();
const GOOD: Style = AnsiColor::Green.on_default().bold();

pub struct StandardPrinter {
    opts: PrintOptions,
    stderr_tty: bool,
    state: Mutex<PrintState>,
}

#[derive(Default)]
struct PrintState {
    /// A progress line is on the terminal and must be cleared before anything else prints.
    progress_on_screen: bool,
    /// The last plain progress line: what it was about, and when it was printed.
    last_plain: Option<(String, Instant)>,
}

/// `hotreload: <message>` (and the advice) on stderr, coloured as `color` says.
pub fn write_error(color: ColorWhen, message: &str, hint: Option<&str>) {
    let mut err = anstream::AutoStream::new(std::io::stderr().lock(), color.choice());
    let _ = writeln!(err, "{BAD}hotreload:{BAD:#} {message}");
    if let Some(hint) = hint {
        let _ = writeln!(err, "{WARN}hotreload: what to do:{WARN:#} {hint}");
    }
}

impl StandardPrinter {
    pub fn new(opts: PrintOptions) -> StandardPrinter {
        StandardPrinter {
            opts,
            stderr_tty: std::io::stderr().is_terminal(),
            state: Mutex::new(PrintState::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PrintState> {
        // A panic while printing must not silence the rest of the run.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A line of the account (stdout), unless quiet.
    pub fn line(&self, text: &str) {
        if !self.opts.quiet {
            self.styled(text, None);
        }
    }

    /// A line on stdout, in `style`, whatever `--quiet` says (the summary).
    fn styled(&self, text: &str, style: Option<Style>) {
        let mut state = self.lock();
        self.clear_progress(&mut state);
        let mut out = anstream::AutoStream::new(std::io::stdout().lock(), self.opts.color.choice());
        // A closed stdout (`| head`) must not turn into a panic mid-upgrade.
        let _ = match style {
            Some(s) => writeln!(out, "{s}{text}{s:#}"),
            None => writeln!(out, "{text}"),
        };
    }

    pub fn error(&self, message: &str, hint: Option<&str>) {
        let mut state = self.lock();
        self.clear_progress(&mut state);
        write_error(self.opts.color, message, hint);
    }

    fn clear_progress(&self, state: &mut PrintState) {
        if state.progress_on_screen {
            // Cursor control, not colour: written raw, never stripped.
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
            state.progress_on_screen = false;
        }
    }

    pub fn progress(&self, what: &str, elapsed: Duration, timeout: Duration) {
        if self.opts.quiet {
            return;
        }
        let mut state = self.lock();
        let mut err = std::io::stderr().lock();
        if self.stderr_tty {
            // \r + "erase line" rewrites the same line: a terminal shows one live status.
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

    pub fn notice(&self, notice: &Notice<'_>) {
        let text = match notice {
            Notice::Upgrading {
                pid_file,
                new_binary,
                dry_run,
            } => format!(
                "{} the server of {} to {}",
                if *dry_run { "dry run: upgrading" } else { "upgrading" },
                pid_file.display(),
                match new_binary {
                    Some(path) => path.display().to_string(),
                    None => "the code already in place (no swap)".to_owned(),
                }
            ),
            Notice::Step { cmd, old, new } => match cmd {
                StepCmd::Spawn => format!(
                    "spawn: starting a new master next to master {}",
                    pid_or_dash(*old)
                ),
                StepCmd::Drain => format!(
                    "drain: stopping the workers of old master {}",
                    pid_or_dash(*old)
                ),
                StepCmd::Commit => format!("commit: retiring old master {}", pid_or_dash(*old)),
                StepCmd::Rollback => format!(
                    "rollback: back to old master {}, retiring new master {}",
                    pid_or_dash(*old),
                    pid_or_dash(*new)
                ),
            },
            Notice::JournalRollback { journal } => format!(
                "rollback: no upgrade in progress, but {} records a swapped executable: putting the old one back",
                journal.display()
            ),
            Notice::JournalCommit { journal } => format!(
                "commit: no old master left, but {} records a swapped executable: dropping its backup",
                journal.display()
            ),
            Notice::UnknownRollback { pid_file, obs } => {
                self.line(&format!(
                    "rollback: the server of {} is in no known phase; stopping the new master of an interrupted spawn, if that is what this is",
                    pid_file.display()
                ));
                self.observation(obs, pid_file, "  ");
                return;
            }
        };
        self.line(&text);
    }

    fn hint_context<'a>(&'a self, report: &'a Report) -> HintContext<'a> {
        HintContext {
            pid_file: &report.pid_file,
            flavor: &self.opts.flavor,
        }
    }

    fn observation(&self, obs: &Observation, pid_file: &std::path::Path, indent: &str) {
        let ctx = HintContext {
            pid_file,
            flavor: &self.opts.flavor,
        };
        for line in observation_lines(obs, &ctx) {
            self.line(&format!("{indent}{line}"));
        }
    }

    /// The end of the account: what happened, what runs now, what to do.
    pub fn finish(&self, report: &Report) {
        let ctx = self.hint_context(report);
        // A commit a signal came too late to stop is told as done; its code says the signal.
        let ok = report.exit == Exit::Success
            || (matches!(report.exit, Exit::Interrupted(_)) && report.failure.is_none());
        let good = Some(GOOD);
        match (&report.body, ok) {
            (Body::None, _) => {}
            (Body::Status, _) => {
                if let Some(obs) = &report.state {
                    let mut lines = observation_lines(obs, &ctx);
                    // A pid file that is simply not there: the advice about its path
                    // replaces the commands for an interrupted upgrade.
                    if let Some(advice @ crate::advice::Advice::NoSuchPidFile { .. }) =
                        report.failure.as_ref().and_then(|f| f.advice.as_ref())
                    {
                        if let Some(last) = lines.last_mut() {
                            *last = format!("next        {}", advice.render(&ctx));
                        }
                    }
                    let mut lines = lines.iter();
                    if let Some(first) = lines.next() {
                        self.styled(first, None);
                    }
                    for line in lines {
                        self.line(line);
                    }
                }
            }
            (
                Body::Upgrade {
                    preflight,
                    plan,
                    total,
                },
                true,
            ) => {
                let (old, new) = (pid_or_dash(report.old_pid), pid_or_dash(report.new_pid));
                let p = crate::advice::shell_quote(&report.pid_file);
                match report.outcome {
                    OutcomeKind::DryRun => {
                        self.line("dry run: the plan would be:");
                        for (i, line) in plan.iter().enumerate() {
                            self.line(&format!("  {}. {line}", i + 1));
                        }
                        // The config test is the one thing a dry run executes (it may
                        // write what the server's configuration names): say so.
                        let ran = preflight
                            .iter()
                            .find(|c| c.name == "config-test")
                            .and_then(|c| c.detail.strip_prefix("ran the config test "))
                            .and_then(|d| d.split(':').next())
                            .map_or_else(
                                || "nothing was changed".to_owned(),
                                |who| format!("it ran the config test {} (with the server's rights it may create what the configuration names, as the server's own `-t` does); nothing else was changed", who.trim()),
                            );
                        self.styled(
                            &format!(
                                "dry run: preflight {}; {ran} (master {old} untouched)",
                                if preflight.iter().all(|c| c.ok) {
                                    "passed"
                                } else {
                                    "found problems"
                                }
                            ),
                            None,
                        );
                    }
                    OutcomeKind::KeptOld => {
                        self.styled(
                            &format!("new master {new} is serving; old master {old} kept without workers."),
                            good,
                        );
                        self.line(&format!(
                            "finish with `hotreload commit --pid-file {p}`, or go back with `hotreload rollback --pid-file {p}`"
                        ));
                    }
                    OutcomeKind::Unchanged => self.styled(
                        &format!("unchanged: master {old} already runs the requested build; nothing was done"),
                        good,
                    ),
                    _ => self.styled(
                        &format!("upgraded: new master {new} is serving; old master {old} retired"),
                        good,
                    ),
                }
                if !report.steps.is_empty() {
                    self.line(&format!(
                        "time per step: {} (total {})",
                        steps_human(&report.steps),
                        fmt_duration(total.unwrap_or_default())
                    ));
                }
            }
            (Body::Step { cmd, journal_only }, true) => {
                let (old, new) = (pid_or_dash(report.old_pid), pid_or_dash(report.new_pid));
                let summary = match cmd {
                    StepCmd::Spawn => {
                        format!("spawned: new master {new} is serving next to old master {old}")
                    }
                    StepCmd::Drain => format!(
                        "drained: old master {old} has no workers left; new master {new} is serving"
                    ),
                    StepCmd::Commit if *journal_only => {
                        format!("committed: the executable swap of master {old} is final")
                    }
                    StepCmd::Commit => {
                        format!("committed: new master {new} is serving; old master {old} retired")
                    }
                    StepCmd::Rollback if *journal_only => {
                        format!("rolled back: the old executable is back; master {old} is serving")
                    }
                    StepCmd::Rollback => format!(
                        "rolled back: old master {old} is serving again; new master {new} retired"
                    ),
                };
                let elapsed: Duration = report.steps.iter().map(|s| s.duration).sum();
                self.styled(&format!("{summary} ({})", fmt_duration(elapsed)), good);
                if let Some(obs) = &report.state {
                    self.observation(obs, &report.pid_file, "  ");
                }
            }
            (Body::WrongPhase, _) => {
                // For `unknown` the message already carries the evidence.
                if let Some(obs) = report.state.as_ref().filter(|o| o.phase != Phase::Unknown) {
                    self.observation(obs, &report.pid_file, "");
                }
            }
            (Body::Demo(summary), _) => self.demo_summary(summary, ok),
            (Body::Upgrade { .. } | Body::Step { .. }, false) => {
                if !matches!(report.exit, Exit::Refused | Exit::Locked) && !report.steps.is_empty()
                {
                    self.line(&format!("time per step: {}", steps_human(&report.steps)));
                }
                if let Some(obs) = &report.state {
                    self.line("state now:");
                    self.observation(obs, &report.pid_file, "  ");
                }
            }
        }
        if let Some(failure) = &report.failure {
            let message = headline(report, failure);
            // A status account ends with its own `next` line: no second "what to do".
            let shown_next = report.body_is_status_with_state();
            let hint = failure
                .advice
                .as_ref()
                .filter(|_| !shown_next)
                .map(|a| a.render(&ctx));
            self.error(&message, hint.as_deref());
        }
    }

    fn demo_summary(&self, s: &DemoSummary, ok: bool) {
        let versions = s
            .versions
            .iter()
            .map(|(server, n)| format!("{server}: {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        self.line("");
        self.line("summary");
        self.line(&format!("  requests served   {}", s.requests_ok));
        let failed = match &s.failures {
            None => String::new(),
            Some((f, errors)) => format!(
                " (refused {}, reset {}, truncated {}, non-2xx {}, other {}): {}",
                f.refused,
                f.reset,
                f.truncated,
                f.non_2xx,
                f.other,
                errors.join("; ")
            ),
        };
        self.line(&format!(
            "  requests failed   {}{failed}",
            s.requests_failed
        ));
        self.line(&format!(
            "  idle keep-alive connections closed by the old workers and retried (not failures): {}",
            s.retried_idle_keepalive
        ));
        self.line(&format!("  versions seen     {versions}"));
        for attempt in &s.upgrades {
            self.line(&format!(
                "  upgrade to {:<5}  {} ({}): {}",
                attempt.to,
                attempt.outcome,
                if attempt.as_expected {
                    "as expected"
                } else {
                    "NOT as expected"
                },
                steps_human(&attempt.steps)
            ));
        }
        self.line(&format!("  total time        {}", fmt_duration(s.total)));
        if ok {
            self.styled(
                "  result            OK: zero failed requests across an upgrade and a rollback",
                Some(GOOD),
            );
        } else {
            self.styled("  result            FAILED: see above", Some(BAD));
        }
    }
}

impl Observer for StandardPrinter {
    fn on_event(&self, event: &Event) {
        if let Event::Waiting {
            what,
            elapsed,
            timeout,
        } = event
        {
            self.progress(what, *elapsed, *timeout);
            return;
        }
        // A wait that ends is followed by another event; the next plain progress line
        // for the same thing (a later wait) should print at once.
        self.lock().last_plain = None;
        if self.opts.quiet {
            return;
        }
        #[allow(unreachable_patterns)] // Event is non-exhaustive
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
            } => format!("      check {BAD}FAILED{BAD:#}  {name}: {detail}"),
            Event::Signalled { pid, signal, role } => {
                format!("      signal        {signal} -> {} {pid}", role_human(role))
            }
            Event::Observed { what } => format!("      observed      {what}"),
            Event::Decision { message } => format!("      decision      {message}"),
            Event::Warning { message } => format!("      {WARN}WARNING{WARN:#}       {message}"),
            Event::PidfdFallback { detail } => format!(
                "      fallback      {detail}: pinning by pid + start time, checked again before each kill(2)"
            ),
            _ => return,
        };
        self.styled(&line, None);
    }
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

/// One sentence per phase: what it means for the service.
pub fn phase_meaning(phase: &Phase) -> &'static str {
    #[allow(unreachable_patterns)]
    match phase {
        Phase::Steady => "one master with workers; no upgrade in progress",
        Phase::Spawned => "upgrade in progress: old and new master both have workers (after USR2)",
        Phase::Drained => "upgrade in progress: old master kept without workers (after WINCH)",
        Phase::Spawning => {
            "upgrade in progress: a new master is starting (after USR2; it has not written the pid file yet)"
        }
        Phase::Unknown => "not a state hotreload can name; see the evidence",
        _ => "a phase this build of hotreload does not know",
    }
}

fn master_lines(label: &str, master: &MasterInfo) -> Vec<String> {
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
pub fn observation_lines(obs: &Observation, ctx: &HintContext<'_>) -> Vec<String> {
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
        lines.extend(master_lines(old_label, old));
    }
    if let Some(new) = &obs.new_master {
        lines.extend(master_lines("new master", new));
    }
    if let Some(unit) = super::wire::systemd_of(obs) {
        lines.push(format!("{:<11} {unit}", "systemd"));
    }
    if !obs.evidence.is_empty() {
        lines.push("evidence".to_owned());
        lines.extend(obs.evidence.iter().map(|e| format!("  - {e}")));
    }
    lines.push(match hotreload_core::pidfd_support().unavailable_reason() {
        None => "pinning     pidfd".to_owned(),
        Some(why) => {
            format!("pinning     pid + start time, checked again before each kill(2); {why}")
        }
    });
    lines.push(format!("next        {}", next_commands(obs.phase, ctx)));
    lines
}
