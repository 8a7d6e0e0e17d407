//! The JSON Lines printer (`--json`): one [`wire::Envelope`] per line on stdout, the
//! `result` always last; errors also go to stderr for people watching.
//!
//! `--quiet` keeps only the `result` line. Every line is flushed as it is written:
//! consumers (the Ansible modules, `jq`) read while the upgrade runs.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use hotreload_core::{Event, Observer};
use serde::Serialize;

use crate::advice::HintContext;
use crate::printer::standard::write_error;
use crate::printer::{headline, wire, DemoNote, PrintOptions};
use crate::report::Report;

pub struct JsonPrinter {
    opts: PrintOptions,
    /// Serialises lines: the demo's interrupt thread writes too.
    lock: Mutex<()>,
}

impl JsonPrinter {
    pub fn new(opts: PrintOptions) -> JsonPrinter {
        JsonPrinter {
            opts,
            lock: Mutex::new(()),
        }
    }

    fn line<T: Serialize>(&self, kind: &'static str, data: T) {
        let Ok(text) = serde_json::to_string(&wire::Envelope::now(kind, data)) else {
            return;
        };
        self.raw(&text);
    }

    fn event(&self, event: &Event) {
        if let Some(text) = wire::event_line(event) {
            self.raw(&text);
        }
    }

    fn raw(&self, text: &str) {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = std::io::stdout().lock();
        // A closed stdout (`| head`) must not turn into a panic mid-upgrade.
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    pub fn demo(&self, note: &DemoNote<'_>) {
        if self.opts.quiet {
            return;
        }
        if let Some(data) = wire::demo(note) {
            self.line("demo", data);
        }
    }

    pub fn progress(&self, what: &str, elapsed: Duration, timeout: Duration) {
        if !self.opts.quiet {
            // The CLI's own progress (the demo's load) is written as the core's event.
            self.event(&Event::Waiting {
                what: what.to_owned(),
                elapsed,
                timeout,
            });
        }
    }

    pub fn error(&self, message: &str, hint: Option<&str>) {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        write_error(self.opts.color, message, hint);
    }

    pub fn finish(&self, report: &Report) {
        let ctx = HintContext {
            pid_file: &report.pid_file,
            flavor: &self.opts.flavor,
        };
        if let Some(failure) = &report.failure {
            let hint = failure.advice.as_ref().map(|a| a.render(&ctx));
            self.error(&headline(report, failure), hint.as_deref());
        }
        self.raw(&wire::result_line(report, &ctx));
    }
}

impl Observer for JsonPrinter {
    fn on_event(&self, event: &Event) {
        if self.opts.quiet {
            return;
        }
        self.event(event);
    }
}
