//! Renders advice: the core chooses what to do from typed causes
//! ([`hotreload_core::Advice`]); this turns it into the "what to do" line
//! (`hotreload: what to do: ...`, `result.hint`) with the suggested commands.
//!
//! Suggested commands must be copy-pasteable, so they repeat the pid file and (when it
//! is not the default) the flavor; both come in a [`HintContext`], passed explicitly.

use std::path::Path;

use hotreload_core::advice::Advice as CoreAdvice;
use hotreload_core::Phase;

/// What a suggested command must repeat of the invocation that failed.
#[derive(Debug, Clone, Copy)]
pub struct HintContext<'a> {
    pub pid_file: &'a Path,
    /// The flavor's name (`nginx`, the default, is not repeated).
    pub flavor: &'a str,
}

impl HintContext<'_> {
    /// What follows `--pid-file` in a suggested command.
    fn target_args(&self) -> String {
        let file = shell_quote(self.pid_file);
        if self.flavor == "nginx" {
            file
        } else {
            format!("{file} --flavor {}", self.flavor)
        }
    }
}

/// The advice a report carries: the core's choice, or (for the CLI's own machinery,
/// which the core knows nothing of) a request to report a bug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Advice {
    Core(CoreAdvice),
    /// Something failed that should not (the demo's own machinery).
    #[cfg_attr(not(feature = "demo"), allow(dead_code))]
    ReportBug,
    /// An upgrade stopped by a signal and rolled back (`rolled_back`) or stopped before
    /// it changed anything.
    Interrupted {
        rolled_back: bool,
    },
    /// A second signal stopped hotreload in the middle of its clean-up: this command
    /// (`rollback` or `commit`) settles what it left.
    Settle {
        command: &'static str,
    },
    /// The pid file does not exist and nothing shows an upgrade: most likely a wrong
    /// path (`dir_missing`: not even its directory exists).
    NoSuchPidFile {
        dir_missing: bool,
        nginx: bool,
    },
}

impl From<CoreAdvice> for Advice {
    fn from(advice: CoreAdvice) -> Advice {
        Advice::Core(advice)
    }
}

impl Advice {
    pub fn render(&self, ctx: &HintContext<'_>) -> String {
        let p = ctx.target_args();
        let core = match self {
            Advice::Core(core) => core,
            Advice::ReportBug => {
                return "this is a bug or an unusual environment; please report it with the output above".to_owned()
            }
            Advice::Interrupted { rolled_back: true } => {
                return "the old version is serving again and nothing is left to clean up; run the upgrade again when ready".to_owned()
            }
            Advice::Interrupted { rolled_back: false } => {
                return "nothing was changed; run the upgrade again when ready".to_owned()
            }
            Advice::NoSuchPidFile { dir_missing, nginx } => {
                let dir = if *dir_missing {
                    " (its directory does not exist either)"
                } else {
                    ""
                };
                let find = if *nginx {
                    "is it nginx's `pid`? `nginx -T | grep -w pid` shows it (the default is in `nginx -V`: --pid-path)"
                } else {
                    "is it the path the server writes its pid to (its pid-file option)?"
                };
                return format!(
                    "nothing was changed; no such file{dir}: check the path: {find}; and check that the server runs"
                );
            }
            Advice::Settle { command } => {
                return format!(
                    "the server may be between versions; run `hotreload {command} --pid-file {p}` to settle it (`hotreload status --pid-file {p}` shows where it stands)"
                )
            }
        };
        #[allow(unreachable_patterns)] // the core's advice is non-exhaustive
        match core {
            CoreAdvice::WaitForTheOtherUpgrade => format!(
                "another hotreload is working on this server; wait for it to finish, then run `hotreload status --pid-file {p}`"
            ),
            CoreAdvice::CheckThePidFile => format!(
                "nothing was changed; check that --pid-file {} is the server's pid file (nginx: the `pid` directive) and that the server is running",
                shell_quote(ctx.pid_file)
            ),
            CoreAdvice::NeedsPidfds => "nothing was changed; run on Linux 5.3 or later, or leave out --require-pidfd to accept the fallback (README: Safety)".to_owned(),
            CoreAdvice::FixAndRetry => {
                "nothing was changed; fix the problem above and run the command again".to_owned()
            }
            CoreAdvice::FixTheNewBuildAndUpgradeAgain { old } => format!(
                "the old version is serving again (master {}); fix the new binary, then run the upgrade again",
                old.map_or_else(|| "-".to_owned(), |p| p.to_string())
            ),
            CoreAdvice::CheckTheNewBuild => "the new master did not come up and the old master is serving again; check the new executable and its error log".to_owned(),
            CoreAdvice::DrainAgainTerminateOrRollBack => format!(
                "manual action needed; old workers are still finishing requests (both versions serve): \
                 `hotreload drain --pid-file {p}` to wait longer, `hotreload drain --pid-file {p} --terminate` \
                 to stop them now, or `hotreload rollback --pid-file {p}`"
            ),
            CoreAdvice::RollBack => format!(
                "manual action needed; the old workers do not stop (the master ignores the signal, e.g. when not daemonized): `hotreload rollback --pid-file {p}`, or `hotreload drain --pid-file {p} --terminate` to stop them now"
            ),
            CoreAdvice::KeepTheSocketsOrAllowOrphans => "the old version is serving and no connection was lost; keep the old `worker_processes` with `listen … reuseport` (and every `listen`) in the new configuration, or pass --allow-orphaned-sockets to drain anyway (connections queued on those sockets are lost until the old master exits)".to_owned(),
            CoreAdvice::ManualAction { phase: Some(phase) } => {
                format!("manual action needed; {}", next_commands(*phase, ctx))
            }
            CoreAdvice::Next { phase } => next_commands(*phase, ctx),
            CoreAdvice::FreeSpace { .. } | CoreAdvice::RunAsRootOrServerUser { .. } => {
                core.to_string()
            }
            CoreAdvice::StopTheInterference { .. } => format!(
                "{core}; `hotreload status --pid-file {p}` shows what runs"
            ),
            CoreAdvice::RaiseDrainTimeout => "the old version is serving again: its workers were still finishing requests at the drain deadline (the new binary is not at fault); raise `--drain-timeout` or use `--on-drain-timeout terminate`, then run the upgrade again".to_owned(),
            // Not seen afterwards, or advice this build does not know.
            _ => format!(
                "manual action needed; inspect the server by hand (`hotreload status --pid-file {p}`)"
            ),
        }
    }
}

/// What an operator can run next from this phase.
pub fn next_commands(phase: Phase, ctx: &HintContext<'_>) -> String {
    let p = ctx.target_args();
    let file = shell_quote(ctx.pid_file);
    match phase {
        Phase::Steady => format!(
            "`hotreload upgrade --pid-file {p} --new-binary PATH` (or `hotreload spawn --pid-file {p}` to go step by step)"
        ),
        Phase::Spawned => format!(
            "`hotreload drain --pid-file {p}` to continue, or `hotreload rollback --pid-file {p}` to go back"
        ),
        Phase::Spawning => format!(
            "a new master is starting for the upgrade that holds the lock: let it finish (`hotreload status --pid-file {p}` shows the phase it reaches)"
        ),
        Phase::Drained => format!(
            "`hotreload commit --pid-file {p}` to keep the new version, or `hotreload rollback --pid-file {p}` to go back"
        ),
        _ => format!(
            "if an upgrade was interrupted while the new master was starting (the old pid file names a live master, the pid file is missing), `hotreload rollback --pid-file {p}` stops the new master and restores the executable. Otherwise no hotreload command fits this state: check that {file} is the server's pid file (nginx: its `pid` directive) and that the server runs; the evidence names the processes involved: fix the pid file or stop the stray master by hand, then run `hotreload status --pid-file {p}` again"
        ),
    }
}

/// Quotes a path for a copy-pasteable command only when it needs it.
pub fn shell_quote(path: &Path) -> String {
    let s = path.display().to_string();
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_quoted_only_when_needed() {
        assert_eq!(shell_quote(Path::new("/run/nginx.pid")), "/run/nginx.pid");
        assert_eq!(shell_quote(Path::new("/tmp/a b")), "'/tmp/a b'");
        assert_eq!(shell_quote(Path::new("/tmp/it's")), r"'/tmp/it'\''s'");
    }

    #[test]
    fn suggested_commands_repeat_a_non_default_flavor() {
        let nginx = HintContext {
            pid_file: Path::new("/run/x.pid"),
            flavor: "nginx",
        };
        let unicorn = HintContext {
            flavor: "unicorn",
            ..nginx
        };
        let spawned = Advice::from(CoreAdvice::for_phase(Phase::Spawned));
        assert!(!spawned.render(&nginx).contains("--flavor"));
        assert!(spawned
            .render(&unicorn)
            .contains("`hotreload drain --pid-file /run/x.pid --flavor unicorn`"));
    }
}
