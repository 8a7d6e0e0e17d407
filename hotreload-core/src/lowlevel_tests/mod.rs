//! Tests of the system layer against real processes and files: they need the crate's
//! private items (`/proc` snapshots, pid-file parsing, digests), so they live inside it.
//! Each file was an integration test before those items became crate-private.

mod discovery;
mod journal;
mod lock_edges;
mod model_basics;
mod ops_basics;
mod pidfile;
mod pidfile_edges;
mod process;
mod process_edges;
mod procfs;
mod swap;
mod swap_edges;
mod wait_edges;
