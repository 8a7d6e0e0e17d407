//! The safety suite (issue 6): the fault matrix under load (`faults`), hostile input with
//! canaries (`input`), the orchestrator SIGKILLed anywhere (`killed`), two operators at
//! once (`operators`), one test per check a mutation run found untested (`mutants`,
//! issue 15), the swap killed repeatedly (`swap`), zombies (`zombie`), kernels without
//! pidfds (`oldkernel`, issue 17), the installed file's metadata and layout kept or
//! refused (`metadata`, `install_layout`, issue 12), `listen … reuseport` with fewer
//! workers (`reuseport`, issue 12), what a less-privileged user may not steer
//! (`trust_steer`, issue 11) or plant in root's own state (`trust_state`, issue 11),
//! and one test per bug fixed so far (`regression`).
//! One test binary, one build.

mod common;
mod faults;
mod input;
mod install_layout;
mod killed;
mod metadata;
mod mutants;
mod oldkernel;
mod operators;
mod regression;
mod reuseport;
mod swap;
mod trust_state;
mod trust_steer;
mod zombie;
