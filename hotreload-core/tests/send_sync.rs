//! The public types a tool moves between threads (or into `spawn_blocking`) are
//! `Send + Sync`; the options and the token are also `Clone`. A compile-time check: this
//! file fails to build if one of them stops being so.

use hotreload_core::*;

fn send_sync<T: Send + Sync>() {}
fn send_sync_clone<T: Send + Sync + Clone>() {}

#[test]
fn public_types_cross_threads() {
    send_sync_clone::<UpgradeOptions>();
    send_sync_clone::<OpOptions>();
    send_sync_clone::<CancelToken>();
    send_sync_clone::<Target>();
    send_sync_clone::<Flavor>();
    send_sync_clone::<Observation>();
    send_sync_clone::<UpgradeReport>();
    send_sync_clone::<Event>();
    send_sync::<UpgradeError>();
    send_sync::<Error>();
    send_sync::<State>();
    send_sync::<Steady>();
    send_sync::<Spawned>();
    send_sync::<Drained>();
    send_sync::<OpError<Steady>>();
    send_sync::<ProcessHandle>();
    send_sync::<TargetLock>();
    send_sync::<HttpCheck>();
    send_sync::<TcpCheck>();
    send_sync::<CommandCheck>();
    send_sync::<Box<dyn HealthCheck>>();
    send_sync::<Box<dyn BinarySwap>>();
}
