//! Options of the pipeline: what to install, how, which gates, which deadlines.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::health::HealthCheck;
use crate::ops::OpOptions;
use crate::swap::{BinarySwap, InstallOptions, SwapKind};
use crate::wait::CancelToken;

/// How long a health check may keep failing after the drain before the upgrade rolls
/// back (at most the health timeout).
pub const HEALTH_REGRESSION: Duration = Duration::from_millis(250);

/// What to do when old workers still run at the drain deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DrainTimeoutAction {
    /// Roll the upgrade back (the default: nothing is forced on anyone's requests).
    #[default]
    RollBack,
    /// Stop the remaining old workers at once (fast stop) and go on.
    TerminateWorkers,
}

/// Options of [`upgrade()`](crate::upgrade()); build with [`UpgradeOptions::new`] and
/// the setters. `Send + Sync + Clone` (health checks are shared), so one set of options
/// can be handed to a blocking task.
#[derive(Clone)]
#[non_exhaustive]
pub struct UpgradeOptions {
    pub(crate) new_binary: Option<PathBuf>,
    pub(crate) binary: Option<PathBuf>,
    pub(crate) swap: Arc<dyn BinarySwap>,
    pub(crate) install: InstallOptions,
    pub(crate) config_test: bool,
    pub(crate) health_checks: Vec<Arc<dyn HealthCheck>>,
    pub(crate) health_timeout: Duration,
    pub(crate) ops: OpOptions,
    pub(crate) keep_old: bool,
    pub(crate) dry_run: bool,
    pub(crate) on_drain_timeout: DrainTimeoutAction,
}

impl fmt::Debug for UpgradeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let checks: Vec<String> = self.health_checks.iter().map(|c| c.describe()).collect();
        f.debug_struct("UpgradeOptions")
            .field("new_binary", &self.new_binary)
            .field("binary", &self.binary)
            .field("swap", &self.swap.name())
            .field("install", &self.install)
            .field("config_test", &self.config_test)
            .field("health_checks", &checks)
            .field("health_timeout", &self.health_timeout)
            .field("ops", &self.ops)
            .field("keep_old", &self.keep_old)
            .field("dry_run", &self.dry_run)
            .field("on_drain_timeout", &self.on_drain_timeout)
            .finish()
    }
}

impl Default for UpgradeOptions {
    fn default() -> Self {
        UpgradeOptions::new()
    }
}

impl UpgradeOptions {
    /// Defaults: rename swap, config test on, no health checks (10 s each when added),
    /// spawn 30 s, drain 60 s, quit 30 s, retire the old master, roll back on a drain
    /// timeout.
    pub fn new() -> Self {
        UpgradeOptions {
            new_binary: None,
            binary: None,
            swap: SwapKind::Rename.strategy(),
            install: InstallOptions::default(),
            config_test: true,
            health_checks: Vec::new(),
            health_timeout: Duration::from_secs(10),
            ops: OpOptions::default(),
            keep_old: false,
            dry_run: false,
            on_drain_timeout: DrainTimeoutAction::RollBack,
        }
    }

    /// The new executable to install (not needed with [`SwapKind::None`]).
    pub fn new_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.new_binary = Some(path.into());
        self
    }

    /// The executable path the master runs (default: the target's, else the master's
    /// `argv[0]`).
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// How to install the new executable: one of the built-in strategies.
    pub fn swap(mut self, kind: SwapKind) -> Self {
        self.swap = kind.strategy();
        self
    }

    /// How to install the new executable: any strategy, the caller's own included.
    pub fn swap_with(mut self, swap: Arc<dyn BinarySwap>) -> Self {
        self.swap = swap;
        self
    }

    /// Whether to install even when the new executable cannot keep the installed file's
    /// owner, mode or extended attributes (file capabilities, ACLs, SELinux label); off
    /// by default: the upgrade is then refused before anything changes. What was lost is
    /// reported as a warning.
    pub fn allow_metadata_loss(mut self, allow: bool) -> Self {
        self.install = self.install.allow_metadata_loss(allow);
        self
    }

    /// Whether to test the master's configuration with the new executable first.
    pub fn config_test(mut self, on: bool) -> Self {
        self.config_test = on;
        self
    }

    /// Adds a health check, run after the spawn and after the drain.
    pub fn health_check(mut self, check: Box<dyn HealthCheck>) -> Self {
        self.health_checks.push(Arc::from(check));
        self
    }

    /// How long each health check may keep failing before the upgrade rolls back (after the
    /// drain, a check that fails for [`HEALTH_REGRESSION`] rolls back at once).
    pub fn health_timeout(mut self, timeout: Duration) -> Self {
        self.health_timeout = timeout;
        self
    }

    /// Deadline for the new master to start (see [`OpOptions::spawn_timeout`]).
    pub fn spawn_timeout(mut self, timeout: Duration) -> Self {
        self.ops.spawn_timeout = timeout;
        self
    }

    /// Deadline for the old workers to exit (see [`OpOptions::drain_timeout`]).
    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.ops.drain_timeout = timeout;
        self
    }

    /// Deadline for a master to exit (see [`OpOptions::quit_timeout`]).
    pub fn quit_timeout(mut self, timeout: Duration) -> Self {
        self.ops.quit_timeout = timeout;
        self
    }

    /// Stop after the drain, keeping the old master (without workers) for an instant
    /// rollback; finish later with [`crate::Drained::retire_old`] or roll back.
    pub fn keep_old(mut self, keep: bool) -> Self {
        self.keep_old = keep;
        self
    }

    /// Only run the preflight checks (and the config test) and report the plan.
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// What to do when old workers still run at the drain deadline.
    pub fn on_drain_timeout(mut self, action: DrainTimeoutAction) -> Self {
        self.on_drain_timeout = action;
        self
    }

    /// Sets the token that cancels the upgrade: trip it from any thread or task and the
    /// upgrade stops waiting, rolls back what it changed and fails with
    /// [`FailureKind::Cancelled`](crate::FailureKind::Cancelled).
    pub fn cancel_token(mut self, token: CancelToken) -> Self {
        self.ops.cancel = token;
        self
    }

    /// Refuses the upgrade on a kernel without pidfds instead of falling back to pid +
    /// start time and `kill(2)` ([`Error::PidfdRequired`](crate::Error::PidfdRequired),
    /// [`FailureKind::Refused`](super::FailureKind::Refused)).
    pub fn require_pidfd(mut self, on: bool) -> Self {
        self.ops.require_pidfd = on;
        self
    }

    /// Drains even when the old master holds listening sockets the new master does not
    /// (fewer workers with `listen … reuseport`, a removed `listen`): connections the
    /// kernel queues on them are lost from the drain until the old master exits. Without
    /// it such an upgrade rolls back before the drain
    /// ([`Error::OrphanedSockets`](crate::Error::OrphanedSockets)).
    pub fn allow_orphaned_sockets(mut self, on: bool) -> Self {
        self.ops.allow_orphaned_sockets = on;
        self
    }

    /// The deadlines, as options of the typed operations.
    pub fn op_options(&self) -> &OpOptions {
        &self.ops
    }
}
