//! The optional `serde` feature: `Serialize` for events, reports and observations, with
//! the names the CLI's JSON uses (steps, roles, phases and outcomes as their lower-case
//! words, signals as `SIGQUIT`, durations as milliseconds in `*_ms` fields, times as
//! seconds since the epoch).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Serialize, Serializer};

use crate::event::{Role, Step};
use crate::model::Phase;
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

/// A wall-clock time as seconds since the epoch.
pub(crate) fn epoch_secs<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}
