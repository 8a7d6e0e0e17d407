//! The `hotreload` CLI end to end: every command and exit code against fake-nginx
//! (`commands`), and `hotreload demo` (`demo`). One test binary: the modules share the
//! harness of `hotreload_tests` and one build.

mod commands;
mod demo;
