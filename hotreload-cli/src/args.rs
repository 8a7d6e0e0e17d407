//! The command line, as clap-derive types with real types (durations, socket addresses,
//! swap kinds, flavors), so that a bad value is a usage error (exit 2) before anything runs.
//!
//! The long help of every subcommand says what it does in protocol terms, when to use
//! it, and shows an example: operators read `--help` at 3 a.m., not the source.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use hotreload_core::{DrainTimeoutAction, Flavor, SwapKind};

use crate::exit::EXIT_CODES_HELP;
use crate::printer::ColorWhen;

const ABOUT: &str =
    "Upgrade a running nginx-style master/worker server to a new executable with zero downtime";

/// The long about, with the demo's first line only in builds that have the demo.
macro_rules! long_about {
    ($start:literal) => {
        concat!(
            "\
Upgrade a running nginx-style master/worker server to a new executable with zero downtime.

hotreload drives the server's own binary-upgrade protocol from outside: it puts the new
executable in place, sends the master USR2 (the master renames its pid file to
<pid>.oldbin and starts a new master from the new executable, which inherits the
listening sockets), sends the old master WINCH (its workers finish their requests and
exit), and finally QUIT to retire the old master. If anything goes wrong it rolls back:
HUP to the old master (it starts workers again), QUIT to the new one, and the old
executable is put back. No listening socket is ever closed.

",
            $start,
            "`hotreload status --pid-file /run/nginx.pid` shows what is running, and
`hotreload upgrade --pid-file /run/nginx.pid --new-binary ./nginx` does the whole thing.
Add --json to any command for JSON Lines on stdout (schema_version 1, described by
hotreload-jsonl-v1.schema.json), -q to print only errors and the final result.
--pid-file defaults to $HOTRELOAD_PID_FILE.

Examples:
  hotreload status --pid-file /run/nginx.pid
  hotreload upgrade --pid-file /run/nginx.pid --new-binary ./nginx --dry-run
  HOTRELOAD_PID_FILE=/run/nginx.pid hotreload upgrade --new-binary ./nginx -q
  hotreload completions bash > /etc/bash_completion.d/hotreload
  hotreload man > /usr/local/share/man/man1/hotreload.1"
        )
    };
}

#[cfg(feature = "demo")]
const LONG_ABOUT: &str = long_about!(
    "Start with `hotreload demo` to watch it happen on a throw-away fake-nginx under load.\nThen\n"
);
#[cfg(not(feature = "demo"))]
const LONG_ABOUT: &str = long_about!("Start with\n");

#[derive(Debug, Parser)]
#[command(
    name = "hotreload",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = "Run `hotreload help <COMMAND>` or `hotreload <COMMAND> --help` for details and examples.",
    after_long_help = EXIT_CODES_HELP,
    propagate_version = true,
    arg_required_else_help = true
)]
pub struct Cli {
    /// Print only errors (stderr) and the final result: the summary line, or with --json
    /// the `result` record
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// When to colour the output: auto (a terminal, and NO_COLOR unset), always, never
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ColorWhen::Auto, global = true)]
    pub color: ColorWhen,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show the server's masters, workers, executables and upgrade phase
    #[command(
        long_about = "\
Show the server's process group and the upgrade phase, changing nothing.

Reads the pid file (and <pid>.oldbin next to it), then the live process table, and
reports each master (pid, executable, start time) with its workers, and the phase:
  steady   one master with workers: no upgrade in progress
  spawned  old master (pid in .oldbin) and new master (its child, pid in the pid
           file), both with workers: after USR2
  drained  old master without workers, new master with workers: after WINCH
  unknown  anything else, reported with the evidence, never guessed

Use it before and after any step command, or to see what a killed or interrupted
upgrade left behind. It exits 0 for steady, spawned and drained, and 3 when the
pid file is unusable or the phase is unknown (a script can act on 0 only).",
        after_long_help = "\
Examples:
  hotreload status --pid-file /run/nginx.pid
  hotreload status --pid-file /run/nginx.pid --json | jq -r .data.status.phase"
    )]
    Status(StatusArgs),

    /// Upgrade to a new executable: the whole pipeline, with automatic rollback
    #[command(
        long_about = "\
Upgrade the server to a new executable, with automatic rollback.

Steps: preflight (pid file, process identity, new binary executable), config test
(the new binary's `-t` on the running config), lock (one upgrade per pid file),
swap (back up the installed executable, put the new one at its path), spawn
(USR2 to the old master, wait for the new master and its workers), health check
(--health-url / --health-tcp / --health-cmd, if given), drain (WINCH to the old master, wait for
its workers to exit), retire (QUIT to the old master, wait for it to exit).

Any failure after the first change rolls back: HUP to the old master, QUIT to the
new master, the old executable restored. Refusals (bad input, failed config test)
happen before anything changes.

Use it for routine deployments. Use --keep-old to stop after the drain and decide
later with `hotreload commit` or `hotreload rollback`; use --dry-run to see the plan
and the preflight checks first.",
        after_long_help = "\
Examples:
  hotreload upgrade --pid-file /run/nginx.pid --new-binary ./build/nginx \\
      --health-url http://127.0.0.1/healthz --drain-timeout 2m
  hotreload upgrade --pid-file /run/nginx.pid --new-binary ./nginx --dry-run
  hotreload upgrade --pid-file /run/nginx.pid --new-binary ./nginx --keep-old --json"
    )]
    Upgrade(UpgradeArgs),

    /// Step 1 by hand: USR2 the master to start a new master (steady -> spawned)
    #[command(
        long_about = "\
Start a new master next to the running one (steady -> spawned).

Sends USR2 to the master named by the pid file. The master renames the pid file to
<pid>.oldbin and starts a new master from the executable at its own argv[0], which
inherits the listening sockets and starts its own workers. Waits until the new master
has written the pid file and its workers are up (--spawn-timeout).

This does NOT install the new executable: put it at the path the master runs first
(or use `hotreload upgrade --keep-old`, which swaps and stops after the drain).
Refused unless the phase is steady. Next: `hotreload drain`, or `hotreload rollback`.",
        after_long_help = "\
Example:
  install -m 755 ./build/nginx /usr/sbin/nginx
  hotreload spawn --pid-file /run/nginx.pid"
    )]
    Spawn(StepArgs),

    /// Step 2 by hand: WINCH the old master so its workers finish and exit (spawned -> drained)
    #[command(
        long_about = "\
Drain the old master's workers (spawned -> drained).

Sends WINCH to the old master (pid in <pid>.oldbin): its workers finish the requests
they are serving and exit; the old master stays, holding the listening sockets, so a
rollback is still instant. Waits for the old workers to exit (--drain-timeout).

If old workers still run at the deadline (long downloads, websockets), the server stays
spawned and the command exits 5: run it again to wait longer, add --terminate to stop
the remaining old workers at once (TERM), or roll back.

Refused unless the phase is spawned. Next: `hotreload commit`, or `hotreload rollback`.",
        after_long_help = "\
Examples:
  hotreload drain --pid-file /run/nginx.pid --drain-timeout 5m
  hotreload drain --pid-file /run/nginx.pid --terminate"
    )]
    Drain(DrainArgs),

    /// Step 3 by hand: QUIT the old master, keeping the new version (drained -> steady)
    #[command(
        long_about = "\
Commit the upgrade: retire the old master (drained -> steady, new version).

Sends QUIT to the old master (pid in <pid>.oldbin), which has no workers left, and
waits for it to exit (--quit-timeout); the executable backup of an upgrade started
with `hotreload upgrade --keep-old` is removed. After this there is no instant way back.

Refused unless the phase is drained.",
        after_long_help = "\
Example:
  hotreload commit --pid-file /run/nginx.pid"
    )]
    Commit(StepArgs),

    /// Go back to the old master (spawned or drained -> steady, old version)
    #[command(
        long_about = "\
Roll back an upgrade in progress (spawned or drained -> steady, old version).

Sends HUP to the old master so it starts workers again (without re-reading its
config), waits for them, sends QUIT to the new master and waits for it to exit; the
old master renames <pid>.oldbin back to the pid file. If an upgrade swapped the
executable, the old one is put back.

Refused unless the phase is spawned or drained. Works on an upgrade that another
invocation started or left half done.",
        after_long_help = "\
Example:
  hotreload rollback --pid-file /run/nginx.pid"
    )]
    Rollback(StepArgs),

    /// Watch a zero-downtime upgrade and an automatic rollback on a throw-away fake-nginx
    #[cfg(feature = "demo")]
    #[command(
        long_about = "\
Run a self-contained demonstration; needs no setup and leaves nothing behind.

In a temporary directory, makes three fake-nginx builds out of this executable (1.0,
2.0, and a broken 3.0 that crashes on start), starts 1.0 with client load on it,
upgrades it to 2.0 through the library's upgrade(), then tries 3.0 and shows the
automatic rollback. Prints requests served, requests failed (must be 0), the versions
the clients saw and the time per step. Ctrl-C stops it and cleans up.

Exits 0 when both upgrades behaved as expected and no request failed, 1 otherwise.",
        after_long_help = "\
Examples:
  hotreload demo
  hotreload demo --json | jq -c 'select(.type == \"result\")'"
    )]
    #[cfg(feature = "demo")]
    Demo(DemoArgs),

    /// Print a shell completion script for bash, zsh, fish, elvish or powershell
    #[command(
        long_about = "\
Print the completion script for a shell on stdout. Install it where your shell looks
for completions, once per machine (or per release of hotreload).",
        after_long_help = "\
Examples:
  hotreload completions bash > /etc/bash_completion.d/hotreload
  hotreload completions zsh > /usr/local/share/zsh/site-functions/_hotreload
  hotreload completions fish > ~/.config/fish/completions/hotreload.fish"
    )]
    Completions {
        /// The shell
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },

    /// Print the man page (roff) on stdout
    #[command(
        long_about = "\
Print the hotreload(1) man page, in roff, on stdout: the commands, options and exit
codes, generated from the same definition as --help.",
        after_long_help = "\
Examples:
  hotreload man | man -l -
  hotreload man > /usr/local/share/man/man1/hotreload.1"
    )]
    Man,
}

/// Options every command that works on a running server takes.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The server's pid file (nginx: the `pid` directive), e.g. /run/nginx.pid
    #[arg(long, value_name = "PATH", env = "HOTRELOAD_PID_FILE")]
    pub pid_file: PathBuf,

    /// Which server's signal map and pid-file naming to use: nginx, unicorn or gunicorn
    #[arg(long, value_name = "NAME", default_value = "nginx", value_parser = parse_flavor)]
    pub flavor: Flavor,

    /// Print JSON Lines on stdout instead of the human account
    #[arg(long)]
    pub json: bool,

    /// Where hotreload keeps its locks and journals: a directory only you can write
    /// (made 0700 if missing; refused if it is a symlink, not yours, or writable by others)
    /// [default: /run/hotreload as root, else $XDG_RUNTIME_DIR/hotreload]
    #[arg(long, value_name = "DIR", env = "HOTRELOAD_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub target: TargetArgs,
}

#[derive(Debug, Args)]
pub struct UpgradeArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// The new executable to install and run (not needed with `--swap none`: the new code
    /// is already in place, e.g. a new app release under unicorn or gunicorn)
    #[arg(long, value_name = "PATH")]
    pub new_binary: Option<PathBuf>,

    /// The installed executable to replace [default: what the running master executes]
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,

    /// How to put the new executable in place (the old one is backed up until commit)
    #[arg(long, value_enum, value_name = "KIND", default_value_t = SwapArg::Rename)]
    pub swap: SwapArg,

    /// Install even when the new executable cannot keep the installed one's owner, mode
    /// or extended attributes (file capabilities, ACLs, SELinux label); without it such
    /// an upgrade is refused (exit 3) before anything changes
    #[arg(long)]
    pub allow_metadata_loss: bool,

    /// Do not run the new binary's config test (`-t`) before the upgrade
    #[arg(long)]
    pub skip_config_test: bool,

    /// Health check after the spawn: GET this http:// URL, expect 2xx
    #[arg(long, value_name = "URL", value_parser = parse_health_url)]
    pub health_url: Option<String>,

    /// Health check after the spawn: connect to this TCP address
    #[arg(long, value_name = "ADDR")]
    pub health_tcp: Option<SocketAddr>,

    /// One argument the master was started with, after argv[0] (repeat, in order), for a
    /// title that cannot say them for sure (nginx joins its argv with spaces): used for
    /// the config test and the daemon check; they must be how the title ends.
    /// E.g. `--server-arg=-c --server-arg='/etc/my -x.conf'`
    #[arg(long = "server-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub server_args: Vec<String>,

    /// Health check after the spawn: run this shell command (`/bin/sh -c`), healthy on
    /// exit 0 (e.g. `curl -fsS https://127.0.0.1/healthz`, for https)
    #[arg(long, value_name = "COMMAND")]
    pub health_cmd: Option<String>,

    #[command(flatten)]
    pub timeouts: Timeouts,

    /// What to do when old workers still run at the drain deadline
    #[arg(long, value_enum, value_name = "ACTION", default_value_t = DrainTimeoutArg::Rollback)]
    pub on_drain_timeout: DrainTimeoutArg,

    /// Stop after the drain, keeping the old master (without workers) for a quick
    /// rollback; finish with `hotreload commit` or `hotreload rollback`
    #[arg(long)]
    pub keep_old: bool,

    /// Drain even when the old master holds listening sockets the new one does not
    /// (fewer workers with `listen … reuseport`, a removed `listen`): connections queued
    /// on them are lost until the old master exits. Without it the upgrade rolls back
    #[arg(long)]
    pub allow_orphaned_sockets: bool,

    /// Print the plan and the preflight results; change nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Refuse (exit 3, nothing changed) on a kernel without pidfds (Linux before 5.3, or a
    /// seccomp filter) instead of falling back to start-time checks and kill(2)
    #[arg(long)]
    pub require_pidfd: bool,
}

/// Deadlines for the waits; each accepts human durations such as `10s`, `2m`, `1m 30s`.
#[derive(Debug, Args)]
pub struct Timeouts {
    /// How long the new master may take to write the pid file and start its workers
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "30s")]
    pub spawn_timeout: Duration,

    /// How long the old workers may take to finish their requests and exit
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "60s")]
    pub drain_timeout: Duration,

    /// How long a master sent QUIT may take to exit
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, default_value = "30s")]
    pub quit_timeout: Duration,
}

#[derive(Debug, Args)]
pub struct StepArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    #[command(flatten)]
    pub timeouts: Timeouts,

    /// Refuse (exit 3, nothing changed) on a kernel without pidfds (Linux before 5.3, or a
    /// seccomp filter) instead of falling back to start-time checks and kill(2)
    #[arg(long)]
    pub require_pidfd: bool,
}

#[derive(Debug, Args)]
pub struct DrainArgs {
    #[command(flatten)]
    pub step: StepArgs,

    /// Stop the old workers at once (TERM to each, verified to be a worker of the old
    /// master) instead of letting them finish their requests
    #[arg(long)]
    pub terminate: bool,

    /// Drain even when the old master holds listening sockets the new one does not
    /// (fewer workers with `listen … reuseport`, a removed `listen`): connections queued
    /// on them are lost until the old master exits. Without it the drain is refused
    #[arg(long)]
    pub allow_orphaned_sockets: bool,
}

#[cfg(feature = "demo")]
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Print JSON Lines on stdout instead of the human account
    #[arg(long)]
    pub json: bool,

    /// Number of concurrent clients (half keep-alive, half a new connection per request)
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub clients: u16,

    /// Worker processes per fake-nginx master
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub workers: u16,
}

/// `--swap`: a clap value enum (so `--help` lists the choices) mapped onto the library's [`SwapKind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SwapArg {
    /// Back up the installed executable, then rename(2) the new one over it (atomic)
    Rename,
    /// Back up, then copy the new executable over the installed path (staged, then renamed)
    Copy,
    /// The installed path is a symlink: point it at the new executable
    Symlink,
    /// The new executable is already in place: swap nothing
    None,
}

impl From<SwapArg> for SwapKind {
    fn from(arg: SwapArg) -> SwapKind {
        match arg {
            SwapArg::Rename => SwapKind::Rename,
            SwapArg::Copy => SwapKind::Copy,
            SwapArg::Symlink => SwapKind::Symlink,
            SwapArg::None => SwapKind::None,
        }
    }
}

/// `--on-drain-timeout`, mapped onto the library's [`DrainTimeoutAction`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DrainTimeoutArg {
    /// Roll the upgrade back: nobody's request is cut short
    Rollback,
    /// Stop the remaining old workers at once (TERM) and carry on with the upgrade
    Terminate,
}

impl From<DrainTimeoutArg> for DrainTimeoutAction {
    fn from(arg: DrainTimeoutArg) -> DrainTimeoutAction {
        match arg {
            DrainTimeoutArg::Rollback => DrainTimeoutAction::RollBack,
            DrainTimeoutArg::Terminate => DrainTimeoutAction::TerminateWorkers,
        }
    }
}

fn parse_flavor(name: &str) -> Result<Flavor, String> {
    Flavor::by_name(name).ok_or_else(|| {
        format!(
            "unknown server flavor `{name}` (known: {})",
            Flavor::known_names().join(", ")
        )
    })
}

/// Validated here with the library's own parser so a bad URL is a usage error, not a
/// failure half-way through an upgrade.
fn parse_health_url(url: &str) -> Result<String, String> {
    hotreload_core::HttpCheck::new(url)
        .map(|_| url.to_owned())
        .map_err(|e| {
            if url.to_ascii_lowercase().starts_with("https://") {
                format!("{e}; with this command: --health-cmd 'curl -fsS {url}'")
            } else {
                e.to_string()
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_are_human() {
        let cli = Cli::try_parse_from([
            "hotreload",
            "drain",
            "--pid-file",
            "/run/x.pid",
            "--drain-timeout",
            "2m 30s",
        ])
        .unwrap();
        let Command::Drain(drain) = cli.command else {
            panic!("not drain")
        };
        let step = drain.step;
        assert_eq!(step.timeouts.drain_timeout, Duration::from_secs(150));
        assert_eq!(step.timeouts.spawn_timeout, Duration::from_secs(30));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for argv in [
            &["hotreload", "status"][..],
            &[
                "hotreload",
                "status",
                "--pid-file",
                "p",
                "--flavor",
                "apache",
            ],
            &[
                "hotreload",
                "upgrade",
                "--pid-file",
                "p",
                "--new-binary",
                "b",
                "--swap",
                "move",
            ],
            &[
                "hotreload",
                "upgrade",
                "--pid-file",
                "p",
                "--new-binary",
                "b",
                "--spawn-timeout",
                "soon",
            ],
            &[
                "hotreload",
                "upgrade",
                "--pid-file",
                "p",
                "--new-binary",
                "b",
                "--health-tcp",
                "localhost",
            ],
        ] {
            let err = Cli::try_parse_from(argv).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{argv:?}");
        }
    }
}
