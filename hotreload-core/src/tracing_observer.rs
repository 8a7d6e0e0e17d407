//! [`TracingObserver`] (feature `tracing`): an [`Observer`] that turns each [`Event`]
//! into one `tracing` event, for tools that already collect their logs with `tracing`.
//!
//! Levels follow what an operator needs to see: warnings (and the pidfd fallback, and a
//! failed check) at WARN; steps, signals, checks and decisions at INFO; waits and
//! observations, which repeat, at DEBUG. The fields are structured (`step`, `pid`,
//! `signal`, `role`, `elapsed_ms`, ...), and the message is the event's `Display`.
//! No `tracing` type appears in this crate's API: the observer is a plain struct.

use tracing::{debug, info, warn};

use crate::event::{Event, Observer};

/// The `tracing` target of every event.
const TARGET: &str = "hotreload";

/// Emits one `tracing` event (target `hotreload`) per [`Event`].
#[derive(Debug, Clone, Copy, Default)]
pub struct TracingObserver;

impl TracingObserver {
    /// A new observer.
    pub fn new() -> TracingObserver {
        TracingObserver
    }
}

/// Milliseconds, as a `tracing` field can hold them.
fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Observer for TracingObserver {
    fn on_event(&self, event: &Event) {
        // `tracing` needs the level and the field names at each call site, hence one
        // macro call per kind.
        match event {
            Event::StepStarted { step } => {
                info!(target: TARGET, kind = "step_started", step = step.as_str(), "{event}")
            }
            Event::StepFinished { step, duration } => info!(
                target: TARGET,
                kind = "step_finished",
                step = step.as_str(),
                duration_ms = ms(*duration),
                "{event}"
            ),
            Event::Check { name, ok, detail } if *ok => info!(
                target: TARGET,
                kind = "check",
                name = name.as_str(),
                ok = true,
                detail = detail.as_str(),
                "{event}"
            ),
            Event::Check { name, detail, .. } => warn!(
                target: TARGET,
                kind = "check",
                name = name.as_str(),
                ok = false,
                detail = detail.as_str(),
                "{event}"
            ),
            Event::Signalled { pid, signal, role } => info!(
                target: TARGET,
                kind = "signalled",
                pid = pid.get(),
                signal = %signal,
                role = role.as_str(),
                "{event}"
            ),
            Event::Waiting {
                what,
                elapsed,
                timeout,
            } => debug!(
                target: TARGET,
                kind = "waiting",
                what = what.as_str(),
                elapsed_ms = ms(*elapsed),
                timeout_ms = ms(*timeout),
                "{event}"
            ),
            Event::Observed { what } => {
                debug!(target: TARGET, kind = "observed", what = what.as_str(), "{event}")
            }
            Event::Decision { message } => info!(
                target: TARGET,
                kind = "decision",
                message_text = message.as_str(),
                "{event}"
            ),
            Event::Warning { message } => warn!(
                target: TARGET,
                kind = "warning",
                message_text = message.as_str(),
                "{event}"
            ),
            Event::PidfdFallback { detail } => warn!(
                target: TARGET,
                kind = "pidfd_fallback",
                detail = detail.as_str(),
                "{event}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    //! A minimal subscriber that records each event's level and fields (no
    //! `tracing-subscriber` needed).

    use super::*;
    use crate::event::{Role, Step};
    use crate::pid::Pid;
    use crate::signal::Signal;
    use std::fmt::Debug;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Level, Metadata, Subscriber};

    type Seen = Arc<Mutex<Vec<(Level, String, Vec<(String, String)>)>>>;

    struct Recorder(Seen);

    struct Fields(Vec<(String, String)>);

    impl Visit for Fields {
        fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
            self.0.push((field.name().to_owned(), format!("{value:?}")));
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.push((field.name().to_owned(), value.to_owned()));
        }
    }

    impl Subscriber for Recorder {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, _: &Record<'_>) {}
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &tracing::Event<'_>) {
            let mut fields = Fields(Vec::new());
            event.record(&mut fields);
            let meta = event.metadata();
            self.0
                .lock()
                .unwrap()
                .push((*meta.level(), meta.target().to_owned(), fields.0));
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn each_event_becomes_one_tracing_event_with_its_level_and_fields() {
        let seen: Seen = Arc::default();
        let events = [
            Event::StepStarted { step: Step::Spawn },
            Event::Signalled {
                pid: Pid::new(42).unwrap(),
                signal: Signal::Usr2,
                role: Role::OldMaster,
            },
            Event::Waiting {
                what: "new master".into(),
                elapsed: Duration::from_millis(1500),
                timeout: Duration::from_secs(30),
            },
            Event::Warning {
                message: "pid file is stale".into(),
            },
        ];
        tracing::subscriber::with_default(Recorder(seen.clone()), || {
            for e in &events {
                TracingObserver.on_event(e);
            }
        });
        let seen = seen.lock().unwrap();
        let levels: Vec<Level> = seen.iter().map(|(l, _, _)| *l).collect();
        assert_eq!(
            levels,
            [Level::INFO, Level::INFO, Level::DEBUG, Level::WARN]
        );
        assert!(seen.iter().all(|(_, target, _)| target == "hotreload"));
        assert_eq!(field(&seen[0].2, "step"), Some("spawn"));
        assert_eq!(field(&seen[1].2, "pid"), Some("42"));
        assert_eq!(field(&seen[1].2, "signal"), Some("SIGUSR2"));
        assert_eq!(field(&seen[1].2, "role"), Some("old-master"));
        assert_eq!(field(&seen[2].2, "elapsed_ms"), Some("1500"));
        assert_eq!(
            field(&seen[3].2, "message"),
            Some("warning: pid file is stale")
        );
    }
}
