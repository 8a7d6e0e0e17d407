//! hotreload-core: zero-downtime binary upgrades of nginx-style master/worker servers,
//! driven from outside the server.
//!
//! # Theory of operation
//!
//! A master/worker server such as nginx upgrades itself to a new executable without
//! closing its listening sockets, when asked with signals:
//!
//! 1. the executable at the master's `argv[0]` is replaced (the old one backed up);
//! 2. the master gets `USR2`: it renames its pid file to `<pid file>.oldbin`, forks and
//!    executes `argv[0]`; the new master inherits the listening sockets, writes the pid
//!    file and starts its workers. Old and new workers now accept on the same sockets;
//! 3. the old master gets `WINCH`: its workers finish their requests and exit, while the
//!    old master stays, holding the sockets, so that going back is instant;
//! 4. the old master gets `QUIT` and the upgrade is final — or the upgrade is rolled
//!    back: `HUP` to the old master (it starts workers again), then `QUIT` to the new
//!    master; the old master takes its pid file back and the old executable is restored.
//!
//! This crate drives that dance and checks every step.
//!
//! **The system is the state.** The phase of an upgrade —
//! [`Phase::Steady`], [`Phase::Spawned`], [`Phase::Drained`] — is computed by
//! [`Target::observe`] from the pid files and the live process table alone (which
//! process each pid file names, whether it is alive, a master, a child of the other
//! master, with workers). Nothing is remembered in memory between steps, so a process
//! that did not start an upgrade (or a restarted one) can [`Target::attach`] to it in any
//! phase and finish it or roll it back. What matches no phase exactly is
//! [`Phase::Unknown`] with the evidence, and nothing operates on it. The only thing the
//! system cannot show — where the old executable was backed up — is kept in a journal
//! in hotreload's own state home ([`state`]: `/run/hotreload` for root, where only its
//! user can write) from the swap until the commit or the restore.
//!
//! **Typed operations.** [`Target::attach`] returns a [`State`] whose variants carry
//! pinned processes and allow exactly the operations of their phase:
//! [`Steady::spawn_new_master`], [`Spawned::drain_old_workers`], [`Drained::retire_old`],
//! and [`Spawned::rollback`] / [`Drained::rollback`]. Each has deadlines
//! ([`OpOptions`]) and returns the next state, or an [`OpError`] that gives back the state
//! it is still in, when that is known.
//!
//! **No signal to an unverified process.** Every process is pinned when discovered by a
//! [`ProcessHandle`] (pid, start time and a pidfd), and its role is checked again right
//! before it is signalled (the new master must still be a child of the old one). Signals
//! go through the pidfd, so a recycled pid can never receive one. A zombie counts as
//! exited. Kernels before 5.3 have no pidfds: there the start time is checked again
//! immediately before each `kill(2)` ([`process`] says exactly what that leaves open),
//! reported as [`Event::PidfdFallback`]; [`OpOptions::require_pidfd`] refuses instead.
//!
//! **Waits are events with deadlines.** Every wait goes through one primitive: exits are
//! awaited on pidfds (without them, by watching `/proc` with the same backing-off poll); pid files and new workers are polled with a short, backing-off
//! interval (1 ms doubling to 50 ms). Every wait reports itself as [`Event::Waiting`]
//! about every 500 ms, a deadline is an outcome, not a hang, and every wait watches a
//! [`CancelToken`] (it looks at least every [`CANCEL_SLICE`]).
//!
//! **The pipeline.** [`upgrade()`] runs the whole thing with gates: the target's lock,
//! preflight checks that refuse before anything changes (the master catches `USR2` —
//! its default action would kill it —, is daemonized (nginx: its effective `daemon`
//! setting), is not a systemd service's main process that systemd could not follow
//! ([`systemd`]), was started with an absolute `argv[0]`; the new executable is an ELF file for this machine and differs from the
//! running one; the configuration passes the new executable's config test), the swap,
//! spawn, health checks, drain, health checks, retire and commit. Any failure after the
//! swap rolls back automatically from whatever phase the system shows.
//!
//! **Failures say what state they leave.** Every operation error carries a [`Left`]:
//! `Untouched`, `Reverted`, or `Changed { phase }`. An [`UpgradeError`]'s
//! [`FailureKind`] is `Refused` (nothing changed), `Locked` (another upgrade runs),
//! `RolledBack` (the old master and executable are back), `Cancelled` (the caller's
//! token; whatever had changed was rolled back) or `Unrecovered` (the rollback failed
//! too; the observation says what runs). When the build that runs already is the one
//! asked for, [`upgrade()`] succeeds with [`Outcome::Unchanged`] and does nothing.
//!
//! An upgrade whose orchestrator died is picked up by [`finish()`] or [`rollback()`]
//! from any process; [`Steady::restore_binary`] and
//! [`Steady::commit_binary`] settle a journal left with a steady server. A new master that
//! dies abruptly leaves its workers serving, reparented: a rollback finds them (same
//! session, titled as workers, parent not a master) and stops them.
//!
//! # Modules
//!
//! In layers, dependencies pointing down only (DESIGN.md §4):
//!
//! - vocabulary: [`pid`], [`signal`], [`error`], [`event`];
//! - system: [`process`] (pinned handles), [`lock`]; crate-private `/proc` and pid-file
//!   access, file helpers, the subprocess runner and the one wait;
//! - strategies, open to your own: [`swap`] ([`BinarySwap`]), [`health`]
//!   ([`HealthCheck`]), [`flavor`], [`discovery`];
//! - where servers run: [`systemd`] (the service manager around the master);
//! - [`model`] (target, observation, phase); [`ops`] (typed operations); [`pipeline`]
//!   (the whole upgrade: [`upgrade()`], [`rollback()`], [`finish()`]).
//!
//! **Data, not code paths.** Which signal does what, how pid files are named during an
//! upgrade, how the config is tested and how titles say "master" or "worker" are a
//! [`Flavor`]; the executable swap is a [`BinarySwap`] strategy; health checks are
//! [`HealthCheck`] implementations.
//!
//! The library prints nothing: it reports to an [`Observer`] (any `Fn(&Event)`).
//!
//! # Blocking, threads and cancellation
//!
//! Every operation and [`upgrade()`] **blocks** the calling thread until it is over (at
//! most its deadlines; an upgrade with the defaults can take minutes). The types that a
//! tool moves between threads are `Send + Sync`, and [`UpgradeOptions`] is `Clone`. To
//! stop an upgrade from elsewhere, give it a [`CancelToken`] and call
//! [`CancelToken::cancel`]: it stops waiting (within [`CANCEL_SLICE`], plus the running
//! health check or config test, each bounded by its own timeout), rolls back what it
//! changed, and fails with [`FailureKind::Cancelled`]. Cancelled before the swap,
//! nothing changed; once the old master was told to retire, the upgrade finishes
//! instead (there is nothing to go back to). A cancelled typed operation returns an
//! [`OpError`] whose [`left`](OpError::left) says where it stopped (see [`ops`]).
//!
//! From tokio, run it on the blocking pool and cancel on Ctrl-C (`tests/tests/
//! embed_tokio.rs` in the repository is this, compiled and run):
//!
//! ```no_run
//! use hotreload_core::{upgrade, CancelToken, NoopObserver, Target, UpgradeOptions};
//!
//! #[tokio::main]
//! async fn main() {
//!     let token = CancelToken::new();
//!     let options = UpgradeOptions::new()
//!         .new_binary("/tmp/nginx-1.27.1")
//!         .cancel_token(token.clone());
//!     let target = Target::new("/run/nginx.pid");
//!     let mut task = tokio::task::spawn_blocking(move || upgrade(&target, &options, &NoopObserver));
//!     let result = tokio::select! {
//!         r = &mut task => r,
//!         _ = tokio::signal::ctrl_c() => {
//!             token.cancel(); // rolls back; the task ends shortly after
//!             task.await
//!         }
//!     };
//!     match result.expect("the upgrade task") {
//!         Ok(report) => println!("{}", report.outcome.as_str()),
//!         Err(e) => eprintln!("{e}: {} ({})", e.error, e.left),
//!     }
//! }
//! ```
//!
//! The same with a plain thread:
//!
//! ```no_run
//! use hotreload_core::{upgrade, CancelToken, FailureKind, NoopObserver, Target, UpgradeOptions};
//!
//! let token = CancelToken::new();
//! let options = UpgradeOptions::new()
//!     .new_binary("/tmp/nginx-1.27.1")
//!     .cancel_token(token.clone());
//! let worker = std::thread::spawn(move || {
//!     upgrade(&Target::new("/run/nginx.pid"), &options, &NoopObserver)
//! });
//! token.cancel();
//! if let Err(e) = worker.join().unwrap() {
//!     assert!(matches!(e.kind, FailureKind::Cancelled | FailureKind::Refused));
//! }
//! ```
//!
//! # Example
//!
//! ```no_run
//! use hotreload_core::{upgrade, Event, FailureKind, Target, UpgradeOptions};
//!
//! let target = Target::new("/run/nginx.pid");
//! let options = UpgradeOptions::new().new_binary("/tmp/nginx-1.27.1");
//! match upgrade(&target, &options, &|e: &Event| eprintln!("{e}")) {
//!     Ok(report) => println!("upgraded: new master {:?}", report.new_pid),
//!     Err(e) if e.kind == FailureKind::RolledBack => eprintln!("rolled back: {}", e.error),
//!     Err(e) => eprintln!("{e}: {} ({})", e.error, e.left),
//! }
//! ```
//!
//! Step by step, from any process:
//!
//! ```no_run
//! use hotreload_core::{NoopObserver, OpOptions, State, Target};
//!
//! let target = Target::new("/run/nginx.pid");
//! let _lock = target.lock()?;
//! let opts = OpOptions::new();
//! if let State::Steady(steady) = target.attach()? {
//!     let spawned = steady.spawn_new_master(&opts, &NoopObserver)?;
//!     let drained = spawned.drain_old_workers(&opts, &NoopObserver)?;
//!     let steady = drained.retire_old(&opts, &NoopObserver)?;
//!     println!("now: {}", steady.observation());
//! }
//! # Ok::<(), hotreload_core::Error>(())
//! ```
//!
//! # Features
//!
//! Both off by default; neither puts another crate's types in this crate's API.
//!
//! - `serde`: `Serialize` for events, reports and observations.
//! - `tracing`: `TracingObserver`, an [`Observer`] that emits each [`Event`] as one
//!   `tracing` event (target `hotreload`; warnings at WARN, steps, signals and checks at
//!   INFO, waits and observations at DEBUG; fields such as `step`, `pid`, `signal`,
//!   `role`, `elapsed_ms`).

// The layers, bottom up (DESIGN.md §4); dependencies point down only.
// Vocabulary.
pub mod error;
pub mod event;
pub mod pid;
pub mod signal;
// System access: crate-private /proc, pid files and system calls; pinned processes,
// file helpers, the subprocess runner and the one wait.
mod exec;
mod fsutil;
pub mod lock;
mod nginx_conf;
mod pidfile;
pub mod process;
mod procfs;
pub mod state;
mod sys;
mod trust;
mod wait;
// Strategies, user-extensible.
pub mod discovery;
pub mod flavor;
pub mod health;
pub mod swap;
// Where servers run: the service manager (systemd) around the master.
pub mod systemd;
// The model, the journal below the operations, the operations, the advice on their
// failures and the pipeline.
pub mod advice;
mod journal;
pub mod model;
pub mod ops;
pub mod pipeline;
#[cfg(feature = "serde")]
mod serde_impl;
#[cfg(feature = "tracing")]
mod tracing_observer;

pub use advice::Advice;
pub use error::{DrainStall, Error, OrphanedSocket, ParseError, PidFileProblem};
pub use event::{Event, NoopObserver, Observer, Role, Step};
pub use flavor::Flavor;
pub use health::{CommandCheck, HealthCheck, HttpCheck, TcpCheck};
pub use lock::TargetLock;
pub use model::{MasterInfo, Observation, Phase, Target, WorkerInfo};
pub use ops::{Drained, Left, OpError, OpOptions, Spawned, State, Steady};
pub use pid::Pid;
pub use pipeline::{
    finish, rollback, upgrade, Check, DrainTimeoutAction, FailureKind, Outcome, StepTiming,
    UpgradeError, UpgradeOptions, UpgradeReport,
};
pub use process::{pidfd_available, pidfd_support, PidfdSupport, ProcessHandle};
pub use signal::Signal;
pub use swap::{swap_for, BinarySwap, SwapKind, SwapRecord};
#[cfg(feature = "tracing")]
pub use tracing_observer::TracingObserver;
pub use wait::{CancelToken, CANCEL_SLICE};

#[cfg(test)]
mod lowlevel_tests;

// The README's Rust examples are compiled as doctests, so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
