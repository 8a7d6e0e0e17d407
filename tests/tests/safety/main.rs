//! The safety suite (issue 6): the fault matrix under load (`faults`), hostile input with
//! canaries (`input`), the orchestrator SIGKILLed anywhere (`killed`), two operators at
//! once (`operators`), one test per check a mutation run found untested (`mutants`,
//! issue 15), the swap killed repeatedly (`swap`), zombies (`zombie`), kernels without
//! pidfds (`oldkernel`, issue 17), root attacked through its own state
//! (`trust_state`, issue 11), and one test per bug fixed so far (`regression`). One
//! test binary, one build.

mod common;
mod faults;
mod input;
mod killed;
mod mutants;
mod oldkernel;
mod operators;
mod regression;
mod swap;
mod trust_state;
mod zombie;
