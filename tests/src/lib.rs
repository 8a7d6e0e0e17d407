//! The one harness of the end-to-end tests in `tests/tests/` (in the manner of ripgrep's
//! `tests/util.rs`):
//!
//! - [`bins`]: where the `hotreload` and `fake-nginx` binaries of this build are;
//! - [`poll`]: the one wait primitive, a backing-off poll with a deadline that says what
//!   it waited for when it times out;
//! - [`procs`]: every `/proc` reading the tests make (state, parent, session, children,
//!   titles, pid files), and killing a session;
//! - [`watchdog`]: runs a test body under a deadline of its own; a body still running
//!   past it fails with the process tree and the server's log, and what it started is
//!   killed; it also keeps the per-test registry of servers whose tree and log every
//!   failure message prints;
//! - [`run`]: running the `hotreload` CLI; every failure prints the command, cwd, exit
//!   status, stdout, stderr, the process tree of the server's session and the tail of its
//!   error log;
//! - [`fake`]: a fake-nginx server whose executable lives in the test's own directory
//!   (the server of the `cli`, `core`, `safety` tests), its builds and ground truth;
//! - [`library`]: options, observers and pids for the tests that drive the core as a
//!   library;
//! - [`server`]: real nginx or fake-nginx driven the same way (the conformance suite);
//! - [`tools`]: the tools some tests need (strace, real servers, systemd, Ansible); the
//!   build script turns a missing one into a `missing_<tool>` cfg, so those tests show as
//!   ignored (see `tests/build.rs`).
//!
//! Every process a test starts through this harness is killed when its guard drops, also
//! when the test panics.

pub mod bins;
pub mod fake;
pub mod library;
pub mod poll;
pub mod procs;
pub mod run;
pub mod server;
pub mod tools;
pub mod watchdog;

pub use bins::{fake_nginx_bin, hotreload_bin};
pub use poll::{poll, wait_for, wait_until, LONG};
pub use procs::{kill_session, session_of};
pub use watchdog::watchdog;
