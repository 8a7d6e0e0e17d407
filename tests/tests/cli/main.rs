//! The `hotreload` CLI end to end: every command and exit code against fake-nginx
//! (`commands`), signals during its waits and `status` during a spawn (`interrupt`),
//! issue 12's small ones (`smalls`), and `hotreload demo` (`demo`). One test binary: the
//! modules share the harness of `hotreload_tests` and one build.

mod commands;
mod demo;
mod interrupt;
mod smalls;
