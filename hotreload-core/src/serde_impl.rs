//! The optional `serde` feature: `Serialize` for events, reports and observations. This is
//! the `hotreload` CLI's JSON (schema `hotreload-jsonl-v1`): an [`crate::Event`] is its
//! line's `type` and `data`, an [`crate::Observation`]'s masters are its status object's
//! masters. Steps, roles, phases and outcomes are their lower-case words, signals
//! `SIGQUIT`, durations milliseconds in `*_ms` fields, wall-clock times RFC 3339 in UTC.
//! Changing what these write changes the CLI's contract: the CLI's schema test checks it.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::ser::SerializeStruct;
use serde::{Serialize, Serializer};

use crate::event::{Role, Step};
use crate::model::{MasterInfo, Phase};
use crate::pid::Pid;
use crate::pipeline::{FailureKind, Outcome};
use crate::signal::Signal;

macro_rules! as_str {
    ($($t:ty),*) => {$(
        impl Serialize for $t {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    )*};
}

as_str!(Step, Role, Phase, Outcome, FailureKind);

impl Serialize for Pid {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i32(self.get())
    }
}

impl Serialize for Signal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A duration as whole milliseconds.
pub(crate) fn millis<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u128(d.as_millis())
}

/// A master as the v1 schema has it: its workers both as a list of pids (`workers`, what
/// most consumers need) and in full (`worker_details`); the raw command line, parent,
/// session and `exe_deleted` stay out (the schema allows no other fields).
impl Serialize for MasterInfo {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Pids<'a>(&'a MasterInfo);
        impl Serialize for Pids<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_seq(self.0.workers.iter().map(|w| w.pid))
            }
        }
        let mut m = s.serialize_struct("MasterInfo", 7)?;
        m.serialize_field("pid", &self.pid)?;
        // Lossy rather than an error: a non-UTF-8 path must not lose the whole line.
        let exe = self.exe.as_ref().map(|p| p.to_string_lossy());
        m.serialize_field("exe", &exe)?;
        m.serialize_field("title", &self.title)?;
        m.serialize_field("start_time", &self.start_time)?;
        m.serialize_field("started_at", &rfc3339_seconds(self.started_at))?;
        m.serialize_field("workers", &Pids(self))?;
        m.serialize_field("worker_details", &self.workers)?;
        m.end()
    }
}

/// `2026-12-01T10:00:00Z`: RFC 3339, UTC, whole seconds (times before the epoch, which a
/// process start cannot be, are written as the epoch).
pub(crate) fn rfc3339_seconds(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (days, rest) = (secs / 86_400, secs % 86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        rest / 60 % 60,
        rest % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (H. Hinnant's `civil_from_days`:
/// eras of 400 years, years starting in March so the leap day comes last).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: u64) -> String {
        rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs))
    }

    #[test]
    fn wall_clock_times_are_rfc3339_utc_seconds() {
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        // Leap days (2000 is a leap year), the end of a leap year, 2100 (not a leap year).
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_709_208_000), "2024-02-29T12:00:00Z");
        assert_eq!(at(1_735_689_599), "2024-12-31T23:59:59Z");
        assert_eq!(at(1_796_119_200), "2026-12-01T10:00:00Z");
        assert_eq!(at(4_107_542_400), "2100-03-01T00:00:00Z");
        // Sub-second parts are dropped, not rounded.
        let t = UNIX_EPOCH + Duration::from_millis(59_999);
        assert_eq!(rfc3339_seconds(t), "1970-01-01T00:00:59Z");
    }
}
