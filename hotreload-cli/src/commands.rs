//! The commands that work on a running server: `status`, `upgrade`, and the step
//! commands `spawn`, `drain`, `commit`, `rollback`.
//!
//! Each one is a single library call (or one typed operation) wrapped in presentation:
//! the account of what happened, the `result` record, and the exit code. The step
//! commands take the upgrade lock and attach to whatever phase the live process table
//! shows, so they continue an upgrade another invocation started or abandoned.

use std::error::Error as StdError;
use std::path::{Path, PathBuf};
use std::time::Instant;

use hotreload_core::{
    upgrade, Error, HttpCheck, Left, OpError, OpOptions, Outcome, Phase, Pid, State, Target,
    TcpCheck, UpgradeOptions,
};
use serde_json::{json, Map, Value};

use crate::args::{Cli, Command, StatusArgs, StepArgs, SwapArg, TargetArgs, Timeouts, UpgradeArgs};
use crate::exit::Exit;

use crate::output::{
    fmt_duration, next_commands, observation_human, observation_json, shell_quote, steps_human,
    steps_json, Output,
};

pub fn run(cli: Cli) -> Exit {
    match cli.command {
        Command::Status(args) => status(args),
        Command::Upgrade(args) => upgrade_cmd(args),
        Command::Spawn(args) => step(StepCmd::Spawn, args, false),
        Command::Drain(args) => step(StepCmd::Drain, args.step, args.terminate),
        Command::Commit(args) => step(StepCmd::Commit, args, false),
        Command::Rollback(args) => step(StepCmd::Rollback, args, false),
        Command::Demo(args) => crate::demo::run(args),
    }
}

/// An error and its `#[source]` chain on one line, skipping sources whose text the
/// outer message already includes (thiserror messages often embed them).
pub fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut message = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// The fields of a `result` record (schema in [`crate::output`]).
#[derive(Default)]
pub struct ResultRecord {
    pub command: &'static str,
    pub outcome: String,
    pub exit: Option<Exit>,
    pub old_pid: Option<Pid>,
    pub new_pid: Option<Pid>,
    pub steps: Option<Value>,
    pub error: Option<String>,
    pub hint: Option<String>,
    pub state: Option<Value>,
    pub extra: Map<String, Value>,
}

impl ResultRecord {
    pub fn into_map(self) -> Map<String, Value> {
        let exit = self.exit.unwrap_or(Exit::Success);
        let mut map = Map::new();
        map.insert("command".into(), json!(self.command));
        let outcome = if self.outcome.is_empty() {
            exit.outcome().to_owned()
        } else {
            self.outcome
        };
        map.insert("outcome".into(), json!(outcome));
        map.insert("exit_code".into(), json!(exit.code()));
        map.insert("old_pid".into(), json!(self.old_pid.map(|p| p.get())));
        map.insert("new_pid".into(), json!(self.new_pid.map(|p| p.get())));
        map.insert("steps".into(), self.steps.unwrap_or_else(|| json!([])));
        map.insert("error".into(), json!(self.error));
        map.insert("hint".into(), json!(self.hint));
        map.insert("state".into(), self.state.unwrap_or(Value::Null));
        map.extend(self.extra);
        map
    }
}

fn target_of(args: &TargetArgs, binary: Option<&PathBuf>) -> Target {
    crate::output::set_flavor_for_hints(args.flavor.name());
    let target = Target::new(args.pid_file.clone()).flavor(args.flavor.clone());
    match binary {
        Some(binary) => target.binary(binary.clone()),
        None => target,
    }
}

/// Errors before anything changed: a lock held elsewhere is 4, anything else 3.
fn exit_for_untouched(err: &Error) -> Exit {
    if matches!(err, Error::Locked { .. }) {
        Exit::Locked
    } else {
        Exit::Refused
    }
}

fn hint_for_untouched(err: &Error, pid_file: &Path) -> String {
    let p = shell_quote(pid_file);
    match err {
        Error::Locked { .. } => format!(
            "another hotreload is working on this server; wait for it to finish, then run `hotreload status --pid-file {p}`"
        ),
        Error::PidFile { .. } => format!(
            "nothing was changed; check that --pid-file {p} is the server's pid file (nginx: the `pid` directive) and that the server is running"
        ),
        _ => "nothing was changed; fix the problem above and run the command again".to_owned(),
    }
}

/// Reports a failure that happened before anything changed, and returns its exit code.
fn refuse(out: &Output, command: &'static str, err: &Error, pid_file: &Path) -> Exit {
    let exit = exit_for_untouched(err);
    let message = error_chain(err);
    let hint = hint_for_untouched(err, pid_file);
    out.error(&message, Some(&hint));
    out.result(
        ResultRecord {
            command,
            exit: Some(exit),
            error: Some(message),
            hint: Some(hint),
            ..Default::default()
        }
        .into_map(),
    );
    exit
}

/// Re-reads the process table after a failure so the operator sees what is running now.
fn observe_after_failure(
    out: &Output,
    target: &Target,
    pid_file: &Path,
) -> (Option<Value>, Option<Phase>) {
    match target.observe() {
        Ok(obs) => {
            out.say("state now:");
            for line in observation_human(&obs, pid_file) {
                out.say(format!("  {line}"));
            }
            (Some(observation_json(&obs, pid_file)), Some(obs.phase))
        }
        Err(err) => {
            out.error(
                &format!(
                    "could not observe the server afterwards: {}",
                    error_chain(&err)
                ),
                None,
            );
            (None, None)
        }
    }
}

fn status(args: StatusArgs) -> Exit {
    let out = Output::new(args.target.json);
    let pid_file = &args.target.pid_file;
    match target_of(&args.target, None).observe() {
        Ok(obs) => {
            if out.is_json() {
                out.emit_raw(&observation_json(&obs, pid_file));
            } else {
                for line in observation_human(&obs, pid_file) {
                    out.say(line);
                }
            }
            // A script asking "can I act on this server?" gets its answer from the
            // code: a phase hotreload cannot name is the same answer as a bad pid file.
            if obs.phase == Phase::Unknown {
                out.error(&unknown_state_message(&obs, pid_file), None);
                Exit::Refused
            } else {
                Exit::Success
            }
        }
        Err(err) => refuse(&out, "status", &err, pid_file),
    }
}

/// The one-line account of an `unknown` observation: the evidence names the files and pids.
fn unknown_state_message(obs: &hotreload_core::Observation, pid_file: &Path) -> String {
    format!(
        "cannot tell the state of the server of {}: {}",
        pid_file.display(),
        if obs.evidence.is_empty() {
            "no evidence".to_owned()
        } else {
            obs.evidence.join("; ")
        }
    )
}

fn op_options(t: &Timeouts) -> OpOptions {
    OpOptions::new()
        .spawn_timeout(t.spawn_timeout)
        .drain_timeout(t.drain_timeout)
        .quit_timeout(t.quit_timeout)
}

fn upgrade_cmd(args: UpgradeArgs) -> Exit {
    if args.new_binary.is_none() && args.swap != SwapArg::None {
        // A usage error (exit 2, printed by clap), before anything runs.
        use clap::CommandFactory;
        Cli::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "--new-binary <PATH> is required unless --swap none (the new code already in place)",
            )
            .exit();
    }
    let out = Output::new(args.target.json);
    let pid_file = args.target.pid_file.clone();
    let target = target_of(&args.target, args.binary.as_ref());

    let mut options = UpgradeOptions::new()
        .swap(args.swap.into())
        .config_test(!args.skip_config_test)
        .spawn_timeout(args.timeouts.spawn_timeout)
        .drain_timeout(args.timeouts.drain_timeout)
        .quit_timeout(args.timeouts.quit_timeout)
        .on_drain_timeout(args.on_drain_timeout.into())
        .keep_old(args.keep_old)
        .dry_run(args.dry_run);
    if let Some(new_binary) = &args.new_binary {
        options = options.new_binary(new_binary.clone());
    }
    if let Some(binary) = &args.binary {
        options = options.binary(binary.clone());
    }
    if let Some(url) = &args.health_url {
        match HttpCheck::new(url) {
            Ok(check) => options = options.health_check(Box::new(check)),
            Err(err) => return refuse(&out, "upgrade", &Error::from(err), &pid_file),
        }
    }
    if let Some(addr) = args.health_tcp {
        options = options.health_check(Box::new(TcpCheck::new(addr)));
    }

    out.say(format!(
        "{} the server of {} to {}",
        if args.dry_run {
            "dry run: upgrading"
        } else {
            "upgrading"
        },
        pid_file.display(),
        match &args.new_binary {
            Some(new_binary) => new_binary.display().to_string(),
            None => "the code already in place (no swap)".to_owned(),
        }
    ));
    let started = Instant::now();
    let p = shell_quote(&pid_file);
    match upgrade(&target, &options, &out) {
        Ok(report) => {
            let total = started.elapsed();
            let new = pid_or_dash(report.new_pid);
            let old = pid_or_dash(report.old_pid);
            #[allow(unreachable_patterns)]
            let summary = match report.outcome {
                Outcome::Committed => {
                    format!("upgraded: new master {new} is serving; old master {old} retired")
                }
                Outcome::KeptOld => format!(
                    "new master {new} is serving; old master {old} kept without workers.\n\
                     finish with `hotreload commit --pid-file {p}`, or go back with `hotreload rollback --pid-file {p}`"
                ),
                Outcome::DryRun => {
                    let mut text = String::from("dry run: the plan would be:");
                    for (i, line) in report.plan.iter().enumerate() {
                        text.push_str(&format!("\n  {}. {line}", i + 1));
                    }
                    text.push_str(&format!(
                        "\ndry run: preflight {}; nothing was changed (master {old} untouched)",
                        if report.preflight.iter().all(|c| c.ok) { "passed" } else { "found problems" }
                    ));
                    text
                }
                Outcome::Unchanged => format!(
                    "unchanged: master {old} already runs the build asked for; nothing was done"
                ),
                _ => "done".to_owned(),
            };
            let outcome = report.outcome.as_str();
            out.say(summary);
            if !report.steps.is_empty() {
                out.say(format!(
                    "time per step: {} (total {})",
                    steps_human(&report.steps),
                    fmt_duration(total)
                ));
            }
            let mut extra = Map::new();
            extra.insert("preflight".into(), preflight_json(&report.preflight));
            extra.insert("plan".into(), json!(report.plan));
            extra.insert("total_ms".into(), json!(crate::output::millis(total)));
            out.result(
                ResultRecord {
                    command: "upgrade",
                    outcome: outcome.into(),
                    exit: Some(Exit::Success),
                    old_pid: report.old_pid,
                    new_pid: report.new_pid,
                    steps: Some(steps_json(&report.steps)),
                    extra,
                    ..Default::default()
                }
                .into_map(),
            );
            Exit::Success
        }
        Err(failure) => {
            let exit = Exit::from_failure(&failure.kind);
            let mut message = error_chain(&failure.error);
            if let Some(rollback_error) = &failure.rollback_error {
                message.push_str(&format!(
                    "; the rollback failed too: {}",
                    error_chain(rollback_error.as_ref())
                ));
            }
            let old = failure.report.old_pid;
            let old_shown = pid_or_dash(old);
            // What failed first, then (on stdout) what runs now, then what to do.
            let what = if matches!(exit, Exit::Refused | Exit::Locked) {
                "upgrade refused"
            } else {
                "upgrade failed"
            };
            out.error(&format!("{what}: {message}"), None);
            if !matches!(exit, Exit::Refused | Exit::Locked) && !failure.report.steps.is_empty() {
                out.say(format!(
                    "time per step: {}",
                    steps_human(&failure.report.steps)
                ));
            }
            let (hint, state) = match exit {
                Exit::Locked | Exit::Refused => (hint_for_untouched(&failure.error, &pid_file), None),
                Exit::RolledBack => (
                    format!(
                        "the old version is serving again (master {old_shown}); fix the new binary, then run the upgrade again"
                    ),
                    None,
                ),
                _ => {
                    let (state, phase) = match &failure.observation {
                        Some(obs) => {
                            out.say("state now:");
                            for line in observation_human(obs, &pid_file) {
                                out.say(format!("  {line}"));
                            }
                            (Some(observation_json(obs, &pid_file)), Some(obs.phase))
                        }
                        None => observe_after_failure(&out, &target, &pid_file),
                    };
                    let next = phase
                        .map(|ph| next_commands(&ph, &pid_file))
                        .unwrap_or_else(|| format!("inspect the server by hand (`hotreload status --pid-file {p}`)"));
                    (format!("manual action needed; {next}"), state)
                }
            };
            out.hint(&hint);
            let mut extra = Map::new();
            extra.insert(
                "preflight".into(),
                preflight_json(&failure.report.preflight),
            );
            out.result(
                ResultRecord {
                    command: "upgrade",
                    exit: Some(exit),
                    old_pid: old,
                    new_pid: failure.report.new_pid,
                    steps: Some(steps_json(&failure.report.steps)),
                    error: Some(message),
                    hint: Some(hint),
                    state,
                    extra,
                    ..Default::default()
                }
                .into_map(),
            );
            exit
        }
    }
}

fn preflight_json(checks: &[hotreload_core::Check]) -> Value {
    Value::Array(
        checks
            .iter()
            .map(|c| json!({ "name": c.name, "ok": c.ok, "detail": c.detail }))
            .collect(),
    )
}

#[derive(Debug, Clone, Copy)]
enum StepCmd {
    Spawn,
    Drain,
    Commit,
    Rollback,
}

impl StepCmd {
    fn name(self) -> &'static str {
        match self {
            StepCmd::Spawn => "spawn",
            StepCmd::Drain => "drain",
            StepCmd::Commit => "commit",
            StepCmd::Rollback => "rollback",
        }
    }

    /// The phases this command starts from, for the refusal message.
    fn wants(self) -> &'static str {
        match self {
            StepCmd::Spawn => "steady",
            StepCmd::Drain => "spawned",
            StepCmd::Commit => "drained",
            StepCmd::Rollback => "spawned or drained",
        }
    }
}

/// The master pids (old, new) of a state, for the account and the result record.
fn pids_of(obs: &hotreload_core::Observation) -> (Option<Pid>, Option<Pid>) {
    (
        obs.old_master.as_ref().map(|m| m.pid),
        obs.new_master.as_ref().map(|m| m.pid),
    )
}

/// `terminate` (drain only): stop the old workers at once instead of waiting for them.
fn step(cmd: StepCmd, args: StepArgs, terminate: bool) -> Exit {
    let out = Output::new(args.target.json);
    let pid_file = args.target.pid_file.clone();
    let target = target_of(&args.target, None);
    let options = op_options(&args.timeouts);
    let started = Instant::now();

    // Look first, so that bad input (a missing or foreign pid file) is reported as what it
    // is rather than as a lock-file problem, and no lock file is created for it.
    match target.attach() {
        // `rollback` is the one command for an unknown phase: an upgrade killed inside its
        // spawn wait leaves `.oldbin`, no pid file and a hung new master (the core checks
        // exactly that, and refuses anything else with the evidence).
        Ok(State::Unknown(obs)) if !matches!(cmd, StepCmd::Rollback) => {
            return wrong_phase(&out, cmd, &State::Unknown(obs), &pid_file);
        }
        Ok(_) => {}
        Err(err) => return refuse(&out, cmd.name(), &err, &pid_file),
    }
    // The same lock `upgrade` takes: a step must never interleave with a running upgrade.
    let _lock = match target.lock() {
        Ok(lock) => lock,
        Err(err) => return refuse(&out, cmd.name(), &err, &pid_file),
    };
    // Under the lock, look again: that is the state the operation starts from.
    let state = match target.attach() {
        Ok(state) => state,
        Err(err) => return refuse(&out, cmd.name(), &err, &pid_file),
    };
    // The masters before the step: after a commit or a rollback only one is left, but
    // the result names both (the one serving and the one retired).
    let before = pids_of(state.observation());

    // Each arm runs one typed operation; the type system guarantees it starts from the
    // phase it was written for.
    let outcome: Result<hotreload_core::Observation, StepFailure> = match (cmd, state) {
        (StepCmd::Spawn, State::Steady(steady)) => {
            announce(&out, cmd, steady.observation());
            steady
                .spawn_new_master(&options, &out)
                .map(|s| s.observation().clone())
                .map_err(StepFailure::from_op)
        }
        (StepCmd::Drain, State::Spawned(spawned)) => {
            announce(&out, cmd, spawned.observation());
            let drained = if terminate {
                spawned.terminate_old_workers(&options, &out)
            } else {
                spawned.drain_old_workers(&options, &out)
            };
            drained
                .map(|s| s.observation().clone())
                .map_err(StepFailure::from_op)
        }
        (StepCmd::Commit, State::Drained(drained)) => {
            announce(&out, cmd, drained.observation());
            drained
                .retire_old(&options, &out)
                .map(|s| s.observation().clone())
                .map_err(StepFailure::from_op)
        }
        (StepCmd::Rollback, State::Spawned(spawned)) => {
            announce(&out, cmd, spawned.observation());
            spawned
                .rollback(&options, &out)
                .map(|s| s.observation().clone())
                .map_err(StepFailure::from_op)
        }
        (StepCmd::Rollback, State::Drained(drained)) => {
            announce(&out, cmd, drained.observation());
            drained
                .rollback(&options, &out)
                .map(|s| s.observation().clone())
                .map_err(StepFailure::from_op)
        }
        // An upgrade killed between the swap and the spawn (or after the old master went
        // away) leaves a steady server and a journal: finish the executable's part of it.
        (StepCmd::Rollback, State::Steady(steady)) if target.journal_file().exists() => {
            out.say(format!(
                "rollback: no upgrade in progress, but {} records a swapped executable: putting the old one back",
                target.journal_file().display()
            ));
            steady
                .restore_binary(&options, &out)
                .map(|s| s.observation().clone())
                .map_err(StepFailure::from_op)
        }
        (StepCmd::Commit, State::Steady(steady)) if target.journal_file().exists() => {
            out.say(format!(
                "commit: no old master left, but {} records a swapped executable: dropping its backup",
                target.journal_file().display()
            ));
            steady
                .commit_binary(&options, &out)
                .map(|s| s.observation().clone())
                .map_err(StepFailure::from_op)
        }
        (StepCmd::Rollback, State::Unknown(obs)) => {
            out.say(format!(
                "rollback: the server of {} is in no known phase; stopping the new master of an interrupted spawn, if that is what this is",
                pid_file.display()
            ));
            for line in observation_human(&obs, &pid_file) {
                out.say(format!("  {line}"));
            }
            target
                .abort_spawn(&options, &out)
                .map(|s| s.observation().clone())
                .map_err(StepFailure::from_op)
        }
        (cmd, state) => return wrong_phase(&out, cmd, &state, &pid_file),
    };

    let steps = out.steps_taken();
    match outcome {
        Ok(obs) => {
            // `old` is always the master from before the upgrade, `new` the one it started.
            let (old, new) = match cmd {
                StepCmd::Spawn => (before.0, pids_of(&obs).1),
                _ => before,
            };
            let (old_shown, new_shown) = (pid_or_dash(old), pid_or_dash(new));
            let summary = match cmd {
                StepCmd::Spawn => format!(
                    "spawned: new master {new_shown} is serving next to old master {old_shown}"
                ),
                StepCmd::Drain => format!(
                    "drained: old master {old_shown} has no workers left; new master {new_shown} is serving"
                ),
                StepCmd::Commit if new.is_none() => {
                    format!("committed: the executable swap of master {old_shown} is final")
                }
                StepCmd::Commit => format!(
                    "committed: new master {new_shown} is serving; old master {old_shown} retired"
                ),
                StepCmd::Rollback if new.is_none() => {
                    format!("rolled back: the old executable is back; master {old_shown} is serving")
                }
                StepCmd::Rollback => format!(
                    "rolled back: old master {old_shown} is serving again; new master {new_shown} retired"
                ),
            };
            out.say(format!("{summary} ({})", fmt_duration(started.elapsed())));
            for line in observation_human(&obs, &pid_file) {
                out.say(format!("  {line}"));
            }
            out.result(
                ResultRecord {
                    command: cmd.name(),
                    outcome: "ok".into(),
                    exit: Some(Exit::Success),
                    old_pid: old,
                    new_pid: new,
                    steps: Some(steps),
                    state: Some(observation_json(&obs, &pid_file)),
                    ..Default::default()
                }
                .into_map(),
            );
            Exit::Success
        }
        Err(failure) => {
            let message = error_chain(&failure.error);
            // Which code: the library says what the step left. Nothing changed (3); what
            // changed was undone, the old version serves as before (1); anything else
            // needs a person (5).
            let exit = match failure.left {
                Left::Untouched => Exit::Refused,
                Left::Reverted => Exit::RolledBack,
                _ => Exit::Unrecovered,
            };
            if exit == Exit::Refused {
                out.error(
                    &format!("refusing `hotreload {}`: {message}", cmd.name()),
                    None,
                );
            } else {
                out.error(&format!("{} failed: {message}", cmd.name()), None);
            }
            // Nothing changed on a refusal: the state is the one the operator just named.
            let (state, phase) = if exit == Exit::Refused {
                (None, None)
            } else {
                observe_after_failure(&out, &target, &pid_file)
            };
            let hint = match exit {
                Exit::Refused => "nothing was changed; fix the problem above and run the command again".to_owned(),
                Exit::RolledBack => {
                    "the new master did not come up and the old master is serving again; check the new executable and its error log".to_owned()
                }
                // A drain that timed out leaves both versions serving: say exactly how
                // to go on, since "drain again" is the usual answer.
                _ if matches!(
                    (cmd, &failure.still_in, phase),
                    (StepCmd::Drain, Some(Phase::Spawned), Some(Phase::Spawned))
                ) =>
                {
                    let p = shell_quote(&pid_file);
                    format!(
                        "manual action needed; old workers are still finishing requests (both versions serve): \
                         `hotreload drain --pid-file {p}` to wait longer, `hotreload drain --pid-file {p} --terminate` \
                         to stop them now, or `hotreload rollback --pid-file {p}`"
                    )
                }
                _ => {
                    let next = phase
                        .map(|ph| next_commands(&ph, &pid_file))
                        .unwrap_or_else(|| "inspect the server by hand".to_owned());
                    format!("manual action needed; {next}")
                }
            };
            out.hint(&hint);
            out.result(
                ResultRecord {
                    command: cmd.name(),
                    exit: Some(exit),
                    steps: Some(steps),
                    error: Some(message),
                    hint: Some(hint),
                    state,
                    ..Default::default()
                }
                .into_map(),
            );
            exit
        }
    }
}

pub fn pid_or_dash(pid: Option<Pid>) -> String {
    pid.map(|p| p.to_string()).unwrap_or_else(|| "-".to_owned())
}

fn announce(out: &Output, cmd: StepCmd, obs: &hotreload_core::Observation) {
    let (old, new) = pids_of(obs);
    let what = match cmd {
        StepCmd::Spawn => format!(
            "spawn: starting a new master next to master {}",
            pid_or_dash(old)
        ),
        StepCmd::Drain => format!(
            "drain: stopping the workers of old master {}",
            pid_or_dash(old)
        ),
        StepCmd::Commit => format!("commit: retiring old master {}", pid_or_dash(old)),
        StepCmd::Rollback => format!(
            "rollback: back to old master {}, retiring new master {}",
            pid_or_dash(old),
            pid_or_dash(new)
        ),
    };
    out.say(what);
}

/// A failed typed operation, with the phase the library says the server is still in.
struct StepFailure {
    error: Error,
    still_in: Option<Phase>,
    left: Left,
}

impl StepFailure {
    fn from_op<S: HasObservation>(err: OpError<S>) -> StepFailure {
        StepFailure {
            still_in: err.state.as_ref().map(|s| s.observation().phase),
            left: err.left,
            error: err.error,
        }
    }
}

/// The typed states all expose their observation; this lets [`StepFailure::from_op`]
/// read it generically.
trait HasObservation {
    fn observation(&self) -> &hotreload_core::Observation;
}

impl HasObservation for hotreload_core::Steady {
    fn observation(&self) -> &hotreload_core::Observation {
        hotreload_core::Steady::observation(self)
    }
}

impl HasObservation for hotreload_core::Drained {
    fn observation(&self) -> &hotreload_core::Observation {
        hotreload_core::Drained::observation(self)
    }
}

impl HasObservation for hotreload_core::Spawned {
    fn observation(&self) -> &hotreload_core::Observation {
        hotreload_core::Spawned::observation(self)
    }
}

/// Refuses a step command that does not fit the current phase, naming the phase and
/// the command that does fit. Nothing has been signalled at this point.
fn wrong_phase(out: &Output, cmd: StepCmd, state: &State, pid_file: &Path) -> Exit {
    #[allow(unreachable_patterns)]
    let obs = match state {
        State::Steady(s) => s.observation(),
        State::Spawned(s) => s.observation(),
        State::Drained(s) => s.observation(),
        State::Unknown(obs) => obs,
        _ => {
            let message = format!(
                "`hotreload {}` needs the phase to be {}, and it could not be determined",
                cmd.name(),
                cmd.wants()
            );
            out.error(&message, None);
            return Exit::Refused;
        }
    };
    let message = if obs.phase == Phase::Unknown {
        format!(
            "refusing `hotreload {}`: {}; nothing was changed",
            cmd.name(),
            unknown_state_message(obs, pid_file)
        )
    } else {
        format!(
            "refusing `hotreload {}`: the server of {} is in phase `{}`, and {} needs `{}`; nothing was changed",
            cmd.name(),
            pid_file.display(),
            obs.phase.as_str(),
            cmd.name(),
            cmd.wants()
        )
    };
    let hint = next_commands(&obs.phase, pid_file);
    // For `unknown` the message above already carries the evidence.
    if obs.phase != Phase::Unknown {
        for line in observation_human(obs, pid_file) {
            out.say(line);
        }
    }
    out.error(&message, Some(&hint));
    out.result(
        ResultRecord {
            command: cmd.name(),
            outcome: "refused".into(),
            exit: Some(Exit::Refused),
            old_pid: pids_of(obs).0,
            new_pid: pids_of(obs).1,
            error: Some(message),
            hint: Some(hint),
            state: Some(observation_json(obs, pid_file)),
            ..Default::default()
        }
        .into_map(),
    );
    Exit::Refused
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_record_has_every_documented_key() {
        let map = ResultRecord {
            command: "upgrade",
            exit: Some(Exit::Unrecovered),
            ..Default::default()
        }
        .into_map();
        for key in [
            "command",
            "outcome",
            "exit_code",
            "old_pid",
            "new_pid",
            "steps",
            "error",
            "hint",
            "state",
        ] {
            assert!(map.contains_key(key), "missing {key}");
        }
        assert_eq!(map["outcome"], "unrecovered");
        assert_eq!(map["exit_code"], 5);
        assert_eq!(map["steps"], json!([]));
    }

    #[test]
    fn error_chain_skips_sources_already_in_the_message() {
        #[derive(Debug)]
        struct Outer(std::io::Error, bool);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                if self.1 {
                    write!(f, "failed to read `/run/x.pid`: {}", self.0)
                } else {
                    write!(f, "failed to read `/run/x.pid`")
                }
            }
        }
        impl StdError for Outer {
            fn source(&self) -> Option<&(dyn StdError + 'static)> {
                Some(&self.0)
            }
        }
        let denied = || std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        assert_eq!(
            error_chain(&Outer(denied(), false)),
            "failed to read `/run/x.pid`: permission denied"
        );
        assert_eq!(
            error_chain(&Outer(denied(), true)),
            "failed to read `/run/x.pid`: permission denied"
        );
    }
}
