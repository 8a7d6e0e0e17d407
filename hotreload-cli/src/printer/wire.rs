//! The JSON Lines wire types, version 1: what `--json` writes, one envelope per line.
//!
//! The contract is described by `schema/hotreload-jsonl-v1.schema.json`, which a test
//! checks every line against. Events, observations and preflight checks are written by
//! hotreload-core's `serde` feature (so the library and the CLI share one schema); the
//! envelope, the `result` and the demo's lines are the CLI's own, here. Nothing else
//! writes JSON. Adding a field is compatible;
//! removing or renaming one, or changing a meaning, needs a new `schema_version`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime};

use hotreload_core::model::Phase;
use hotreload_core::{Check, Event, MasterInfo, Observation};
use serde::Serialize;

use crate::advice::HintContext;
use crate::printer::DemoNote;
use crate::report::{Body, CommandName, DemoAttempt, Report, StepTime};

/// The version of this contract, in every line's `schema_version`.
pub const SCHEMA_VERSION: u32 = 1;

/// `{"schema_version":1,"type":..,"time":..,"data":..}`.
#[derive(Debug, Serialize)]
pub struct Envelope<T> {
    pub schema_version: u32,
    #[serde(rename = "type")]
    pub kind: Cow<'static, str>,
    /// RFC 3339, UTC, milliseconds: `2026-12-01T10:00:00.123Z`.
    pub time: String,
    pub data: T,
}

impl<T: Serialize> Envelope<T> {
    pub fn now(kind: impl Into<Cow<'static, str>>, data: T) -> Self {
        Envelope {
            schema_version: SCHEMA_VERSION,
            kind: kind.into(),
            time: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            data,
        }
    }
}

pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// An event's line: the core's own serialisation (`{"type": .., "data": ..}`, the
/// `serde` feature of hotreload-core) inside the envelope. `None` only if that is not an
/// object with a `type`, which the core does not write.
pub fn event_line(event: &Event) -> Option<String> {
    let Ok(serde_json::Value::Object(mut record)) = serde_json::to_value(event) else {
        return None;
    };
    let Some(serde_json::Value::String(kind)) = record.remove("type") else {
        return None;
    };
    let data = record
        .remove("data")
        .unwrap_or_else(|| serde_json::Value::Object(serde_json::Map::new()));
    serde_json::to_string(&Envelope::now(kind, data)).ok()
}

#[derive(Debug, Serialize)]
pub struct StepWire {
    pub step: &'static str,
    pub duration_ms: u64,
}

fn steps(steps: &[StepTime]) -> Vec<StepWire> {
    steps
        .iter()
        .map(|s| StepWire {
            step: s.step.as_str(),
            duration_ms: millis(s.duration),
        })
        .collect()
}

/// The status object: `status`'s answer, and `result.state` of the other commands.
///
/// The observation's parts are the core's own serialisation; the pid file, pidfd and
/// systemd are the CLI's additions.
#[derive(Debug, Serialize)]
pub struct StatusWire<'a> {
    pub phase: Phase,
    pub pid_file: String,
    pub old_master: Option<&'a MasterInfo>,
    pub new_master: Option<&'a MasterInfo>,
    pub evidence: &'a [String],
    /// Whether this kernel gives hotreload pidfds (false: the kill(2) fallback).
    pub pidfd: bool,
    /// The systemd service the master runs in, as systemd describes it.
    pub systemd: Option<UnitWire>,
}

/// A master's systemd service.
#[derive(Debug, Serialize)]
pub struct UnitWire {
    pub unit: String,
    pub active_state: String,
    pub main_pid: Option<i32>,
    #[serde(rename = "type")]
    pub service_type: String,
    pub pid_file: Option<String>,
}

/// The systemd service the (old) master runs in; `None` outside systemd or when systemd
/// cannot be asked.
pub fn systemd_of(obs: &Observation) -> Option<hotreload_core::systemd::Unit> {
    let master = obs.old_master.as_ref().or(obs.new_master.as_ref())?;
    hotreload_core::systemd::unit_for(master.pid).ok().flatten()
}

impl<'a> StatusWire<'a> {
    pub fn of(obs: &'a Observation, pid_file: &Path) -> Self {
        StatusWire {
            phase: obs.phase,
            pid_file: pid_file.display().to_string(),
            old_master: obs.old_master.as_ref(),
            new_master: obs.new_master.as_ref(),
            evidence: &obs.evidence,
            pidfd: hotreload_core::pidfd_available(),
            systemd: systemd_of(obs).map(|u| UnitWire {
                unit: u.name,
                active_state: u.active_state,
                main_pid: u.main_pid.map(|p| p.get()),
                service_type: u.service_type,
                pid_file: u.pid_file.map(|p| p.display().to_string()),
            }),
        }
    }
}

/// `result.data` of `hotreload status`.
#[derive(Debug, Serialize)]
pub struct StatusResult<'a> {
    pub command: &'static str,
    pub outcome: &'static str,
    pub exit_code: u8,
    pub changed: bool,
    pub status: Option<StatusWire<'a>>,
    pub error: Option<&'a str>,
    pub hint: Option<String>,
}

/// `result.data` of every other command.
#[derive(Debug, Serialize)]
pub struct CommandResult<'a> {
    pub command: &'static str,
    pub outcome: &'static str,
    pub exit_code: u8,
    pub changed: bool,
    pub old_pid: Option<i32>,
    pub new_pid: Option<i32>,
    pub steps: Vec<StepWire>,
    pub error: Option<&'a str>,
    pub hint: Option<String>,
    pub state: Option<StatusWire<'a>>,
    /// false: no pidfds here; processes were pinned by pid + start time, signalled with kill(2).
    pub pidfd: bool,
    #[serde(flatten)]
    pub extra: Extra<'a>,
}

/// The command-specific fields of a `result`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Extra<'a> {
    None {},
    Upgrade {
        preflight: &'a [Check],
        #[serde(skip_serializing_if = "Option::is_none")]
        plan: Option<&'a [String]>,
        #[serde(skip_serializing_if = "Option::is_none")]
        total_ms: Option<u64>,
    },
    Demo {
        requests_ok: u64,
        requests_failed: u64,
        retried_idle_keepalive: u64,
        versions: BTreeMap<&'a str, u64>,
        total_ms: u64,
        upgrades: Vec<DemoUpgradeWire<'a>>,
    },
}

#[derive(Debug, Serialize)]
pub struct DemoUpgradeWire<'a> {
    pub to: &'a str,
    pub expected: &'a str,
    pub outcome: &'a str,
    pub as_expected: bool,
    pub steps: Vec<StepWire>,
    pub error: Option<&'a str>,
}

impl<'a> DemoUpgradeWire<'a> {
    fn of(a: &'a DemoAttempt) -> Self {
        DemoUpgradeWire {
            to: a.to,
            expected: a.expected,
            outcome: &a.outcome,
            as_expected: a.as_expected,
            steps: steps(&a.steps),
            error: a.error.as_deref(),
        }
    }
}

/// `data` of a `demo` line: the account's line as `message`, and its facts.
#[derive(Debug, Serialize)]
pub struct DemoWire<'a> {
    pub message: String,
    #[serde(flatten)]
    pub facts: DemoFacts<'a>,
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum DemoFacts<'a> {
    None {},
    Dir {
        dir: String,
    },
    Builds {
        installed: String,
        v2: String,
        v3: String,
    },
    Server {
        master_pid: String,
        addr: String,
        pid_file: String,
    },
    Load {
        clients: u16,
    },
    Upgrade {
        upgrade: UpgradePair<'a>,
    },
}

#[derive(Debug, Serialize)]
pub struct UpgradePair<'a> {
    pub from: &'a str,
    pub to: &'a str,
}

/// The `demo` record of a note; `None` for notes that are for people only.
pub fn demo<'a>(note: &DemoNote<'a>) -> Option<DemoWire<'a>> {
    let facts = match note {
        DemoNote::Intro { dir, .. } => DemoFacts::Dir {
            dir: dir.display().to_string(),
        },
        DemoNote::WorkDir { .. } => DemoFacts::None {},
        DemoNote::Builds {
            installed, v2, v3, ..
        } => DemoFacts::Builds {
            installed: installed.display().to_string(),
            v2: v2.display().to_string(),
            v3: v3.display().to_string(),
        },
        DemoNote::Server {
            master,
            addr,
            pid_file,
            ..
        } => DemoFacts::Server {
            master_pid: master.to_string(),
            addr: addr.to_string(),
            pid_file: pid_file.display().to_string(),
        },
        DemoNote::Load { clients } => DemoFacts::Load { clients: *clients },
        DemoNote::Upgrade { from, to, .. } => DemoFacts::Upgrade {
            upgrade: UpgradePair { from, to },
        },
        DemoNote::Attempt { .. } => return None,
    };
    Some(DemoWire {
        message: note.message().trim().to_owned(),
        facts,
    })
}

/// The final `result` line of a report, as a JSON string (one line, no newline).
pub fn result_line(report: &Report, ctx: &HintContext<'_>) -> String {
    let error = report.failure.as_ref().map(|f| f.message.as_str());
    let hint = report
        .failure
        .as_ref()
        .and_then(|f| f.advice.as_ref())
        .map(|a| a.render(ctx));
    let state = report
        .state
        .as_ref()
        .map(|obs| StatusWire::of(obs, &report.pid_file));
    let line = if report.command == CommandName::Status {
        serde_json::to_string(&Envelope::now(
            "result",
            StatusResult {
                command: report.command.as_str(),
                outcome: report.outcome.as_str(),
                exit_code: report.exit.code(),
                changed: report.changed,
                status: state,
                error,
                hint,
            },
        ))
    } else {
        let extra = match &report.body {
            Body::Upgrade {
                preflight,
                plan,
                total,
            } => Extra::Upgrade {
                preflight,
                plan: total.is_some().then_some(plan.as_slice()),
                total_ms: total.map(millis),
            },
            Body::Demo(summary) => Extra::Demo {
                requests_ok: summary.requests_ok,
                requests_failed: summary.requests_failed,
                retried_idle_keepalive: summary.retried_idle_keepalive,
                versions: summary
                    .versions
                    .iter()
                    .map(|(k, v)| (k.as_str(), *v))
                    .collect(),
                total_ms: millis(summary.total),
                upgrades: summary.upgrades.iter().map(DemoUpgradeWire::of).collect(),
            },
            Body::None | Body::Status | Body::Step { .. } | Body::WrongPhase => Extra::None {},
        };
        serde_json::to_string(&Envelope::now(
            "result",
            CommandResult {
                command: report.command.as_str(),
                outcome: report.outcome.as_str(),
                exit_code: report.exit.code(),
                changed: report.changed,
                old_pid: report.old_pid.map(|p| p.get()),
                new_pid: report.new_pid.map(|p| p.get()),
                steps: steps(&report.steps),
                error,
                hint,
                state,
                pidfd: hotreload_core::pidfd_available(),
                extra,
            },
        ))
    };
    // Serialising plain structs of strings and numbers cannot fail.
    line.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::Exit;
    use crate::report::OutcomeKind;

    #[test]
    fn the_envelope_carries_version_type_and_a_millisecond_utc_time() {
        let event = Event::Warning {
            message: "m".to_owned(),
        };
        let line: serde_json::Value = serde_json::from_str(&event_line(&event).unwrap()).unwrap();
        assert_eq!(line["schema_version"], 1);
        assert_eq!(line["type"], "warning");
        assert_eq!(line["data"]["message"], "m");
        let time = line["time"].as_str().unwrap();
        // 2026-12-01T10:00:00.123Z
        assert_eq!(time.len(), 24, "{time}");
        assert!(time.ends_with('Z') && time.as_bytes()[19] == b'.', "{time}");
    }

    #[test]
    fn a_status_result_has_exactly_the_status_fields() {
        let report = Report::new(
            CommandName::Status,
            OutcomeKind::Refused,
            Exit::Refused,
            "/run/x.pid".into(),
        );
        let ctx = HintContext {
            pid_file: Path::new("/run/x.pid"),
            flavor: "nginx",
        };
        let line: serde_json::Value = serde_json::from_str(&result_line(&report, &ctx)).unwrap();
        let mut keys: Vec<&str> = line["data"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "changed",
                "command",
                "error",
                "exit_code",
                "hint",
                "outcome",
                "status"
            ]
        );
        assert_eq!(line["data"]["exit_code"], 3);
    }
}
