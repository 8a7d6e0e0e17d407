//! `Pid`: a process id that can be signalled without hurting the system.
//!
//! 0 and negative values mean "my process group" / "every process" to `kill(2)`,
//! and 1 is init: none of them is ever the master of a server, so the type
//! cannot hold them and a stray value can never reach a signal call.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, ParseError};

/// A process id greater than 1 (and at most `i32::MAX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pid(i32);

impl Pid {
    /// Makes a `Pid`, refusing values ≤ 1 and values above `i32::MAX`.
    pub fn new(raw: i64) -> Result<Pid, ParseError> {
        if raw <= 1 {
            return Err(ParseError::InvalidPid {
                value: raw.to_string(),
                reason: if raw < 0 {
                    "negative values address process groups, never one process"
                } else if raw == 0 {
                    "0 addresses the caller's own process group, never one process"
                } else {
                    "1 is init, never the master of a server"
                },
            });
        }
        match i32::try_from(raw) {
            Ok(v) => Ok(Pid(v)),
            Err(_) => Err(ParseError::InvalidPid {
                value: raw.to_string(),
                reason: "larger than any process id",
            }),
        }
    }

    /// The raw value, for system calls and display.
    pub fn get(self) -> i32 {
        self.0
    }

    /// The pid of the calling process (never ≤ 1 except inside a fresh pid namespace's init).
    pub fn this_process() -> Result<Pid, Error> {
        Ok(Pid::new(i64::from(std::process::id()))?)
    }
}

impl fmt::Display for Pid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for Pid {
    type Err = ParseError;

    /// Strict: decimal digits only (leading zeros allowed), no sign, no white space.
    fn from_str(s: &str) -> Result<Pid, ParseError> {
        let invalid = |reason| ParseError::InvalidPid {
            value: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(invalid("empty"));
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid(
                "not a decimal number (digits only, no sign or spaces)",
            ));
        }
        // All digits, so the only possible parse failure is overflow.
        let raw: i64 = s
            .parse()
            .map_err(|_| invalid("larger than any process id"))?;
        Pid::new(raw).map_err(|e| match e {
            ParseError::InvalidPid { reason, .. } => invalid(reason),
            other => other,
        })
    }
}

impl From<Pid> for i32 {
    fn from(p: Pid) -> i32 {
        p.0
    }
}

impl TryFrom<i32> for Pid {
    type Error = ParseError;
    fn try_from(raw: i32) -> Result<Pid, ParseError> {
        Pid::new(i64::from(raw))
    }
}

impl TryFrom<u32> for Pid {
    type Error = ParseError;
    fn try_from(raw: u32) -> Result<Pid, ParseError> {
        Pid::new(i64::from(raw))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_refuses_reserved_values() {
        for v in [-5, -1, 0, 1, i64::from(i32::MAX) + 1] {
            assert!(Pid::new(v).is_err(), "{v} accepted");
        }
        assert_eq!(Pid::new(2).unwrap().get(), 2);
        assert_eq!(Pid::new(i64::from(i32::MAX)).unwrap().get(), i32::MAX);
    }

    #[test]
    fn parse_is_strict() {
        for bad in [
            "",
            " 12",
            "12 ",
            "+12",
            "-12",
            "12\n",
            "0x10",
            "abc",
            "1",
            "0",
            "00",
            "99999999999999999999",
        ] {
            assert!(bad.parse::<Pid>().is_err(), "{bad:?} accepted");
        }
        assert_eq!("1234".parse::<Pid>().unwrap().get(), 1234);
        assert_eq!("007".parse::<Pid>().unwrap().get(), 7);
    }

    #[test]
    fn display_is_the_number() {
        assert_eq!(Pid::new(4321).unwrap().to_string(), "4321");
    }
}
