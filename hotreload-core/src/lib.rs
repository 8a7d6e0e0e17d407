//! hotreload-core: zero-downtime binary upgrades of nginx-style master/worker servers.
//!
//! (Crate docs with the theory of operation are being written.)

// Low-level: identity-pinned processes, /proc, pid files, locks, swaps, health checks.
mod sys;
pub mod pid;
pub mod signal;
pub mod procfs;
pub mod process;
pub mod pidfile;
pub mod lock;
pub mod swap;
pub mod health;
pub mod discovery;

// High-level: flavors, the process-group model, typed operations and the pipeline.
pub mod error;
pub mod flavor;
pub mod event;
pub mod model;
pub mod ops;
pub mod upgrade;
mod journal;
