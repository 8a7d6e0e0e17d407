//! Tests of the system layer against real processes and files: they need the crate's
//! private items (`/proc` snapshots, pid-file parsing, digests), so they live inside it.
//! Each file was an integration test before those items became crate-private.

mod discovery;
mod journal;
mod journal_checks;
mod lock_edges;
mod model_basics;
mod model_roles;
mod ops_basics;
mod pidfile;
mod pidfile_edges;
mod process;
mod process_edges;
mod procfs;
mod swap;
mod swap_checks;
mod swap_edges;
mod wait_edges;

use std::io::{BufRead, BufReader};
use std::process::Child;

/// Reads the child's first line from its piped stdout, which must be "ready": right after
/// `spawn` returns, the child may still be finishing its exec (empty cmdline, old comm).
fn read_ready(child: &mut Child) {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
}
