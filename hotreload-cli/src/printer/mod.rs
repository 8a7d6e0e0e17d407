//! The printers: everything `hotreload` writes goes through one of them.
//!
//! Commands return a [`Report`](crate::report::Report) and, while they run, hand the
//! core's events, their own [`Notice`]s and the demo's [`DemoNote`]s to a [`Printer`],
//! which is the core's [`Observer`] too. [`standard`] renders all of it for people;
//! [`json`] renders it as JSON Lines made of the [`wire`] types (the versioned contract).
//! No command decides how anything looks; no printer decides what happened.

pub mod json;
pub mod standard;
pub mod wire;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use hotreload_core::{Event, Observation, Observer, Pid};

use crate::exit::Exit;
use crate::report::{Body, CommandName, DemoAttempt, Failure, Report, StepCmd, StepTime};

/// `--color`: when to colour the human account and error lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorWhen {
    /// Colour when the stream is a terminal and `NO_COLOR` is not set
    Auto,
    /// Always colour (also through a pipe, e.g. `| less -R`)
    Always,
    /// Never colour
    Never,
}

impl ColorWhen {
    pub fn choice(self) -> anstream::ColorChoice {
        match self {
            // anstream's auto honours NO_COLOR, CLICOLOR(_FORCE), TERM=dumb and is_terminal.
            ColorWhen::Auto => anstream::ColorChoice::Auto,
            ColorWhen::Always => anstream::ColorChoice::Always,
            ColorWhen::Never => anstream::ColorChoice::Never,
        }
    }
}

/// How a command wants its output.
#[derive(Debug, Clone)]
pub struct PrintOptions {
    pub json: bool,
    /// Only errors and the final result (line or record).
    pub quiet: bool,
    pub color: ColorWhen,
    /// The flavor's name, repeated by suggested commands (the default, nginx, is not).
    pub flavor: String,
}

/// What a command is about to do: for people only (JSON consumers get the events).
#[derive(Debug)]
pub enum Notice<'a> {
    Upgrading {
        pid_file: &'a Path,
        new_binary: Option<&'a Path>,
        dry_run: bool,
    },
    Step {
        cmd: StepCmd,
        old: Option<Pid>,
        new: Option<Pid>,
    },
    /// Steady, but the journal records a swap: `rollback` puts the old executable back.
    JournalRollback { journal: &'a Path },
    /// Steady, but the journal records a swap: `commit` drops its backup.
    JournalCommit { journal: &'a Path },
    /// `rollback` on an unknown phase: it tries the one shape it can undo.
    UnknownRollback {
        pid_file: &'a Path,
        obs: &'a Observation,
    },
}

/// What the demo is doing; one `demo` record each in JSON.
#[derive(Debug)]
#[cfg_attr(not(feature = "demo"), allow(dead_code))]
pub enum DemoNote<'a> {
    Intro {
        from: &'a str,
        to: &'a str,
        broken: &'a str,
        dir: &'a Path,
    },
    WorkDir {
        dir: &'a Path,
    },
    Builds {
        from: &'a str,
        to: &'a str,
        broken: &'a str,
        installed: &'a Path,
        v2: &'a Path,
        v3: &'a Path,
    },
    Server {
        version: &'a str,
        master: i32,
        workers: u16,
        addr: SocketAddr,
        pid_file: &'a Path,
    },
    Load {
        clients: u16,
    },
    Upgrade {
        from: &'a str,
        to: &'a str,
        broken: bool,
    },
    /// How one upgrade ended (people only: the `result` lists the upgrades).
    Attempt {
        attempt: &'a DemoAttempt,
        old: Option<Pid>,
        new: Option<Pid>,
        serving: &'a str,
    },
}

impl DemoNote<'_> {
    /// The line of the human account, also `data.message` of the `demo` record.
    pub fn message(&self) -> String {
        match self {
            DemoNote::Intro { from, to, broken, .. } => format!(
                "hotreload demo: fake-nginx {from} under load, upgraded to {to}, then a broken {broken} rolled back"
            ),
            DemoNote::WorkDir { dir } => format!("  work dir     {}", dir.display()),
            DemoNote::Builds {
                from,
                to,
                broken,
                installed,
                ..
            } => format!(
                "  builds       {from} (installed at {}), {to}, {broken} (crash-on-start)",
                installed.display()
            ),
            DemoNote::Server {
                version,
                master,
                workers,
                addr,
                pid_file,
            } => format!(
                "  server       fake-nginx {version}: master {master}, {workers} workers, http://{addr}/, pid file {}",
                pid_file.display()
            ),
            DemoNote::Load { clients } => format!(
                "  load         {clients} clients (half keep-alive, half a new connection per request)"
            ),
            DemoNote::Upgrade { from, to, broken } => {
                if *broken {
                    format!("upgrade {from} -> {to} (a broken build: crashes on start)")
                } else {
                    format!("upgrade {from} -> {to}")
                }
            }
            DemoNote::Attempt {
                attempt,
                old,
                new,
                serving,
            } => {
                let total: Duration = attempt.steps.iter().map(|s| s.duration).sum();
                if !attempt.as_expected {
                    format!(
                        "  => NOT as expected: wanted {}, got {}{}",
                        attempt.expected,
                        attempt.outcome,
                        attempt
                            .error
                            .as_deref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    )
                } else if attempt.error.is_none() {
                    format!(
                        "  => upgraded to {} in {}: new master {} serving, old master {} retired",
                        attempt.to,
                        fmt_duration(total),
                        pid_or_dash(*new),
                        pid_or_dash(*old)
                    )
                } else {
                    format!(
                        "  => rolled back as expected: master {} still serving {serving}\n     cause: {}",
                        pid_or_dash(*old),
                        attempt.error.as_deref().unwrap_or("failed"),
                    )
                }
            }
        }
    }
}

/// The printer a command was asked for.
pub enum Printer {
    Standard(standard::StandardPrinter),
    Json(json::JsonPrinter),
}

impl Printer {
    pub fn new(opts: PrintOptions) -> Printer {
        if opts.json {
            Printer::Json(json::JsonPrinter::new(opts))
        } else {
            Printer::Standard(standard::StandardPrinter::new(opts))
        }
    }

    pub fn notice(&self, notice: &Notice<'_>) {
        match self {
            Printer::Standard(p) => p.notice(notice),
            // JSON consumers follow the events; a notice adds nothing a program needs.
            Printer::Json(_) => {}
        }
    }

    #[cfg_attr(not(feature = "demo"), allow(dead_code))]
    pub fn demo(&self, note: &DemoNote<'_>) {
        match self {
            Printer::Standard(p) => {
                // A blank line before each upgrade spaces out the account.
                if matches!(note, DemoNote::Upgrade { .. }) {
                    p.line("");
                }
                p.line(&note.message());
            }
            Printer::Json(p) => p.demo(note),
        }
    }

    /// Live progress of a wait the CLI itself runs (the demo's).
    #[cfg_attr(not(feature = "demo"), allow(dead_code))]
    pub fn progress(&self, what: &str, elapsed: Duration, timeout: Duration) {
        match self {
            Printer::Standard(p) => p.progress(what, elapsed, timeout),
            Printer::Json(p) => p.progress(what, elapsed, timeout),
        }
    }

    /// An error line outside a report (`hotreload: ...` on stderr, in both modes).
    #[cfg_attr(not(feature = "demo"), allow(dead_code))]
    pub fn error(&self, message: &str, hint: Option<&str>) {
        match self {
            Printer::Standard(p) => p.error(message, hint),
            Printer::Json(p) => p.error(message, hint),
        }
    }

    /// The end of a command: the human account or the `result` record.
    pub fn finish(&self, report: &Report) {
        match self {
            Printer::Standard(p) => p.finish(report),
            Printer::Json(p) => p.finish(report),
        }
    }
}

impl Observer for Printer {
    fn on_event(&self, event: &Event) {
        match self {
            Printer::Standard(p) => p.on_event(event),
            Printer::Json(p) => p.on_event(event),
        }
    }
}

/// The error line on stderr (both printers): the failure's message, said as what the
/// command did with it (`upgrade refused: ...`, `drain failed: ...`).
pub fn headline(report: &Report, failure: &Failure) -> String {
    match (&report.body, report.exit) {
        (Body::Upgrade { .. }, Exit::Refused | Exit::Locked) => {
            format!("upgrade refused: {}", failure.message)
        }
        (Body::Upgrade { .. }, Exit::Interrupted(_)) => {
            format!("upgrade stopped: {}", failure.message)
        }
        (Body::Upgrade { .. }, _) => format!("upgrade failed: {}", failure.message),
        (Body::Step { cmd, .. }, Exit::Interrupted(_)) => {
            format!("{} stopped: {}", cmd.name(), failure.message)
        }
        (Body::Step { cmd, .. }, Exit::Refused | Exit::Locked) => {
            format!("refusing `hotreload {}`: {}", cmd.name(), failure.message)
        }
        (Body::Step { cmd, .. }, _) => format!("{} failed: {}", cmd.name(), failure.message),
        _ if report.command == CommandName::Demo => format!("demo: {}", failure.message),
        _ => failure.message.clone(),
    }
}

pub fn pid_or_dash(pid: Option<Pid>) -> String {
    pid.map(|p| p.to_string()).unwrap_or_else(|| "-".to_owned())
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

/// `preflight 3ms, swap 1ms, spawn 412ms, ...`
pub fn steps_human(steps: &[StepTime]) -> String {
    steps
        .iter()
        .map(|s| format!("{} {}", s.step.as_str(), fmt_duration(s.duration)))
        .collect::<Vec<_>>()
        .join(", ")
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
}
