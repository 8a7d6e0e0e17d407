//! Exit codes: the contract between `hotreload` and the scripts that run it.
//!
//! Each code answers one question a deployment script has to branch on: "is the new
//! version serving?", "is the old version serving and untouched?", "do I need a
//! human?". They are listed in `--help` (from [`EXIT_CODES_HELP`]) and in the README;
//! changing a number is a breaking change.

use std::process::ExitCode;

/// How a `hotreload` invocation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: the command did what was asked.
    Success,
    /// 1: the upgrade (or step) failed and was rolled back: the old version is serving.
    /// `hotreload demo` also uses it when the demo did not go as it should.
    RolledBack,
    /// 2: the command line was wrong (clap's own code; clap exits with it directly).
    #[allow(dead_code)] // produced by clap itself, listed so the table is complete
    Usage,
    /// 3: refused before changing anything: bad input, a safety check, a failed config
    /// test, or a step command run in the wrong phase.
    Refused,
    /// 4: another upgrade holds the lock on this pid file (or on the executable it swaps).
    Locked,
    /// 5: failed and could not restore a healthy state: manual action is needed.
    Unrecovered,
    /// 128 + signal: interrupted by SIGINT (130), SIGTERM (143) or SIGHUP (129). An
    /// upgrade stopped and rolled back (or had changed nothing); one past the point of no
    /// return (the old master told to stop) finished first, and says so (`committed`).
    /// A second signal stops at once and names the command that settles what is left.
    /// The demo cleaned up.
    Interrupted(i32),
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Success => 0,
            Exit::RolledBack => 1,
            Exit::Usage => 2,
            Exit::Refused => 3,
            Exit::Locked => 4,
            Exit::Unrecovered => 5,
            Exit::Interrupted(signal) => u8::try_from(128 + signal).unwrap_or(130),
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> ExitCode {
        ExitCode::from(exit.code())
    }
}

/// The exit-code table shown at the end of `hotreload --help`.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success (also a dry run, and `unchanged`: the requested build already runs)
  1  the upgrade failed and was rolled back: the old version is serving
     (demo: something did not go as it should, e.g. a request failed)
  2  usage error (bad command line)
  3  refused before changing anything: bad input (pid file, pid, binary),
     a safety check, a failed config test, or a step command in the wrong phase;
     `status`: the pid file is unusable or the phase is unknown (a person
     must look, e.g. a new master nobody waits for); every known phase
     (steady, spawning, spawned, drained), in progress or not, is 0
  4  another upgrade holds the lock on this pid file (or on the executable it swaps)
  5  failed and could not restore a healthy state: manual action needed
     (the observed state and what to do are printed)
  130/143/129  interrupted by SIGINT/SIGTERM/SIGHUP: the upgrade stopped and
     rolled back, the old version is serving (or it had changed nothing); a
     signal after the old master was told to stop lets it finish (outcome
     `committed`); a second signal stops at once, leaving the journal, and
     prints the command that settles it (`rollback` or `commit`); step
     commands stop where they stand and print the state and what to run next;
     the demo cleans up";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_and_documented() {
        let all = [
            Exit::Success,
            Exit::RolledBack,
            Exit::Usage,
            Exit::Refused,
            Exit::Locked,
            Exit::Unrecovered,
        ];
        for (i, exit) in all.iter().enumerate() {
            assert_eq!(usize::from(exit.code()), i);
            assert!(
                EXIT_CODES_HELP.contains(&format!("  {i}  ")),
                "{i} undocumented"
            );
        }
        assert_eq!(Exit::Interrupted(2).code(), 130);
        assert_eq!(Exit::Interrupted(15).code(), 143);
        assert_eq!(Exit::Interrupted(1).code(), 129);
        assert!(EXIT_CODES_HELP.contains("130/143/129"));
    }
}
