//! `hotreload`: upgrade a running nginx-style master/worker server to a new executable
//! with zero downtime.
//!
//! This binary is presentation only: argument parsing ([`args`]), human and JSON Lines
//! output ([`output`]), exit codes ([`exit`]) and the embedded demo ([`demo`]). Every
//! operation it performs is a `hotreload-core` call; nothing here signals a process
//! or touches a pid file by itself.

mod args;
mod commands;
mod demo;
mod exit;
mod interrupt;
mod output;
mod term;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Must come first: `hotreload demo` turns copies of this very executable into
    // fake-nginx variants, and when one of those copies runs, it has to become
    // fake-nginx before clap sees arguments meant for fake-nginx.
    fake_nginx::run_if_embedded();

    // clap prints usage errors itself and exits with 2 (our documented usage-error code).
    let cli = args::Cli::parse();
    commands::run(cli).into()
}
