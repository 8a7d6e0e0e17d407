//! Command check: run a program; healthy when it exits 0 within the timeout (through
//! the core's one subprocess runner, which kills it and its group at the deadline).

use std::path::Path;
use std::time::Duration;

use super::HealthCheck;
use crate::exec::{self, describe_status, RunError};

/// Runs `argv`; healthy on exit status 0.
#[derive(Debug, Clone)]
pub struct CommandCheck {
    argv: Vec<String>,
}

impl CommandCheck {
    /// A check running `argv[0]` with the remaining arguments (no shell).
    pub fn new(argv: Vec<String>) -> CommandCheck {
        CommandCheck { argv }
    }
}

impl CommandCheck {
    fn run(&self, timeout: Duration) -> Result<String, String> {
        let Some((program, args)) = self.argv.split_first() else {
            return Err("no command given".to_string());
        };
        let done = match exec::run(Path::new(program), args, None, timeout, None) {
            Ok(done) => done,
            Err(RunError::Start(e)) => return Err(format!("failed to run `{program}`: {e}")),
            Err(RunError::TimedOut(last)) => {
                return Err(match last {
                    Some(l) => format!(
                        "`{program}` did not finish within {timeout:?} and was killed; last output: {l}"
                    ),
                    None => format!("`{program}` did not finish within {timeout:?} and was killed"),
                })
            }
            Err(RunError::Cancelled(e)) => return Err(e.to_string()),
        };
        let how = describe_status(done.status);
        if done.status.success() {
            Ok(match done.stdout.last_line() {
                Some(l) => format!("{how}: {l}"),
                None => how,
            })
        } else {
            let last = done.stderr.last_line().or_else(|| done.stdout.last_line());
            Err(match last {
                Some(l) => format!("`{program}` failed with {how}: {l}"),
                None => format!("`{program}` failed with {how}"),
            })
        }
    }
}
impl HealthCheck for CommandCheck {
    fn describe(&self) -> String {
        format!("command `{}`", self.argv.join(" "))
    }

    fn check(&self, timeout: Duration) -> Result<(), String> {
        self.run(timeout).map(|_| ())
    }

    fn check_detail(&self, timeout: Duration) -> Result<String, String> {
        self.run(timeout)
    }
}
