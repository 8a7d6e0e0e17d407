//! What the `safety` tests import from the shared harness: the fake-nginx server of
//! `hotreload_tests::fake` (executable in the test's own directory), `hotreload` runs (whole
//! or killed mid-way on one of its JSON events), ground truth from the pid files and
//! `/proc`, hashes, a canary. Nothing sleeps in place of a handshake.

#![allow(unused_imports)]

pub use hotreload_tests::fake::{
    assert_no_connection_failures, assert_no_failures, sha, variant_at, Canary,
    FakeServer as Server,
};
pub use hotreload_tests::poll::{wait_until, LONG};
pub use hotreload_tests::procs::{alive, children_of as children, read_pid};
pub use hotreload_tests::run::{
    hotreload, hotreload_killed_at, is_step, KillOnDrop, Run, COMMAND_TIMEOUT,
};
