//! `hotreload`: upgrade a running nginx-style master/worker server to a new executable
//! with zero downtime.
//!
//! This binary is presentation only: argument parsing ([`args`]), the commands as calls
//! into `hotreload-core` that return [`report`]s ([`commands`], [`demo`]), the
//! [`printer`]s that render them (human, or JSON Lines), advice ([`advice`]) and exit
//! codes ([`exit`]). Nothing here signals a process or touches a pid file by itself.

mod advice;
mod args;
mod commands;
#[cfg(feature = "demo")]
mod demo;
mod exit;
mod interrupt;
mod printer;
mod report;
mod term;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser};

use args::{Cli, Command, SwapArg, TargetArgs};
use exit::Exit;
use printer::{PrintOptions, Printer};
use report::{CommandName, StepCmd};

fn main() -> ExitCode {
    // Must come first: `hotreload demo` turns copies of this very executable into
    // fake-nginx variants, and when one of those copies runs, it has to become
    // fake-nginx before clap sees arguments meant for fake-nginx. Builds without the
    // demo have no such copies and skip the check.
    #[cfg(feature = "demo")]
    fake_nginx::run_if_embedded();

    // clap prints usage errors itself and exits with 2 (our documented usage-error code).
    let cli = Cli::parse();
    run(cli).into()
}

fn printer_for(cli_quiet: bool, color: printer::ColorWhen, target: &TargetArgs) -> Printer {
    Printer::new(PrintOptions {
        json: target.json,
        quiet: cli_quiet,
        color,
        flavor: target.flavor.name().to_owned(),
    })
}

fn run(cli: Cli) -> Exit {
    let (quiet, color) = (cli.quiet, cli.color);
    let (printer, report) = match &cli.command {
        Command::Status(args) => {
            let printer = Arc::new(printer_for(quiet, color, &args.target));
            let report = commands::status(args);
            (printer, report)
        }
        Command::Upgrade(args) => {
            if args.new_binary.is_none() && args.swap != SwapArg::None {
                // A usage error (exit 2, printed by clap), before anything runs.
                Cli::command()
                    .error(
                        clap::error::ErrorKind::MissingRequiredArgument,
                        "--new-binary <PATH> is required unless --swap none (the new code already in place)",
                    )
                    .exit();
            }
            let printer = Arc::new(printer_for(quiet, color, &args.target));
            let watch = commands::watch_signals(CommandName::Upgrade, &args.target, &printer);
            let report = commands::upgrade_cmd(args, &printer, &watch);
            (printer, report)
        }
        Command::Spawn(args) | Command::Commit(args) | Command::Rollback(args) => {
            let cmd = match &cli.command {
                Command::Spawn(_) => StepCmd::Spawn,
                Command::Commit(_) => StepCmd::Commit,
                _ => StepCmd::Rollback,
            };
            let printer = Arc::new(printer_for(quiet, color, &args.target));
            let watch = commands::watch_signals(cmd.command(), &args.target, &printer);
            let report =
                commands::step(cmd, args, commands::DrainFlags::default(), &printer, &watch);
            (printer, report)
        }
        Command::Drain(args) => {
            let printer = Arc::new(printer_for(quiet, color, &args.step.target));
            let watch = commands::watch_signals(CommandName::Drain, &args.step.target, &printer);
            let report = commands::step(
                StepCmd::Drain,
                &args.step,
                commands::DrainFlags {
                    terminate: args.terminate,
                    allow_orphaned_sockets: args.allow_orphaned_sockets,
                },
                &printer,
                &watch,
            );
            (printer, report)
        }
        #[cfg(feature = "demo")]
        Command::Demo(args) => {
            return demo::run(
                args,
                Printer::new(PrintOptions {
                    json: args.json,
                    quiet,
                    color,
                    flavor: "nginx".to_owned(),
                }),
            )
        }
        Command::Completions { shell } => {
            let mut command = Cli::command();
            clap_complete::generate(*shell, &mut command, "hotreload", &mut std::io::stdout());
            return Exit::Success;
        }
        Command::Man => {
            let mut out = std::io::stdout().lock();
            let rendered = clap_mangen::Man::new(Cli::command()).render(&mut out);
            return match rendered.and_then(|()| out.flush()) {
                Ok(()) => Exit::Success,
                // A closed pipe (`| head`) is the reader's choice, not an error worth a code.
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Exit::Success,
                Err(e) => {
                    eprintln!("hotreload: cannot write the man page: {e}");
                    Exit::Refused
                }
            };
        }
    };
    printer.finish(&report);
    report.exit
}
