//! The plan: which files and arguments preflight decided on, and the upgrade's steps in
//! words (reported before anything changes, and by a dry run).

use std::path::PathBuf;
use std::time::Duration;

use super::Run;
use crate::model::MasterInfo;

/// What preflight decided: which files, which arguments, and the plan in words.
pub(super) struct Plan {
    pub(super) binary: PathBuf,
    pub(super) new_binary: PathBuf,
    pub(super) argv: Vec<String>,
    pub(super) steps: Vec<String>,
    /// The build that runs is the one asked for: nothing to do.
    pub(super) unchanged: bool,
}

impl Plan {
    pub(super) fn new(
        run: &Run<'_>,
        master: &MasterInfo,
        binary: PathBuf,
        new_binary: PathBuf,
        argv: Vec<String>,
    ) -> Self {
        let opts = run.opts;
        let signals = run.target.flavor_ref().signals();
        let secs = |d: Duration| format!("{:.0}s", d.as_secs_f64());
        let mut steps = Vec::new();
        if opts.config_test {
            steps.push(format!(
                "test the configuration with `{}`",
                new_binary.display()
            ));
        }
        if !opts.swap.installs() {
            steps.push(format!("use `{}` as installed (no swap)", binary.display()));
        } else {
            steps.push(format!(
                "install `{}` at `{}` ({} swap, journal {})",
                new_binary.display(),
                binary.display(),
                opts.swap.name(),
                run.target
                    .journal_file()
                    .unwrap_or_else(|_| run.target.legacy_journal_file())
                    .display()
            ));
        }
        steps.push(format!(
            "send {} to master {} and wait up to {} for the new master and its workers",
            signals.spawn,
            master.pid,
            secs(opts.ops.spawn_timeout)
        ));
        if !opts.health_checks.is_empty() {
            steps.push(format!("run {} health checks", opts.health_checks.len()));
        }
        steps.push(format!(
            "send {} to master {} and wait up to {} for its {} workers to exit",
            signals.stop_workers,
            master.pid,
            secs(opts.ops.drain_timeout),
            master.workers.len()
        ));
        if opts.keep_old {
            steps.push(format!(
                "keep master {} without workers for a rollback",
                master.pid
            ));
        } else {
            steps.push(format!(
                "send {} to master {} (then {} after {}), then drop the backup",
                signals.graceful_stop,
                master.pid,
                signals.fast_stop,
                secs(opts.ops.quit_timeout)
            ));
        }
        Plan {
            binary,
            new_binary,
            argv,
            steps,
            unchanged: false,
        }
    }
}
