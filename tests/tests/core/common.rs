//! What the `core_*` tests add to the shared harness: the fake-nginx server of
//! `hotreload_tests::fake` (running `1.0` from `<dir>/sbin/nginx`, so a swap there upgrades
//! it) seen through the library's types (`Pid`, `Target`, swap records).

#![allow(dead_code)]

use std::path::Path;

use hotreload_core::{Pid, Target};
use hotreload_tests::procs;

pub use hotreload_tests::fake::{variant_at, FakeServer as Setup};
pub use hotreload_tests::library::{op_options, options, pid, wait_gone, Events};
pub use hotreload_tests::LONG;

/// Starts `1.0` (with `faults`) daemonized with 2 workers.
pub fn start(faults: &[&str]) -> Setup {
    Setup::start(faults)
}

/// Like [`start`], with the instance builder adjusted by `build`.
pub fn start_with(
    faults: &[&str],
    build: impl FnOnce(fake_nginx::harness::Builder) -> fake_nginx::harness::Builder,
) -> Setup {
    Setup::start_with(faults, build)
}

/// SHA-256 of a file that must be readable.
pub fn sha(path: &Path) -> String {
    hotreload_tests::fake::sha(path).expect("hash")
}

/// Alive and not a zombie.
pub fn alive(pid: Pid) -> bool {
    procs::alive(pid.get())
}

/// The server through the library's eyes.
pub trait LibraryView {
    fn target(&self) -> Target;
    fn original_master(&self) -> Pid;
    /// SHA-256 of the installed executable equals that of `file`.
    fn installed_is(&self, file: &Path) -> bool;
    /// Asserts the server is steady on `master`, serving `version`, with no `.oldbin`.
    fn assert_steady(&self, master: Pid, version: &str);
    /// Installs `new` at the binary path (rename swap, no journal), then lets it settle.
    fn install(&self, new: &Path) -> hotreload_core::SwapRecord;
    /// Sends `signal` to the master the instance started with.
    fn signal(&self, signal: fake_nginx::Signal);
}

impl LibraryView for Setup {
    fn target(&self) -> Target {
        Target::new(self.inst.pid_file())
    }

    fn original_master(&self) -> Pid {
        pid(self.inst.master_pid())
    }

    fn installed_is(&self, file: &Path) -> bool {
        sha(&self.installed) == sha(file)
    }

    #[track_caller]
    fn assert_steady(&self, master: Pid, version: &str) {
        assert_eq!(self.pid_from_file(), Some(master.get()), "{}", self.why());
        assert!(!self.oldbin_exists(), "{}", self.why());
        assert!(alive(master), "{}", self.why());
        assert_eq!(procs::workers_of(master.get()).len(), 2, "{}", self.why());
        assert_eq!(
            self.version(),
            format!("fake-nginx/{version}"),
            "{}",
            self.why()
        );
    }

    // In a multi-threaded test process, a child forked by another test while the staged
    // file was open for writing could make the master's exec fail with ETXTBSY: settle.
    fn install(&self, new: &Path) -> hotreload_core::SwapRecord {
        let record = hotreload_core::swap_for(hotreload_core::SwapKind::Rename)
            .install(&self.installed, new)
            .expect("install");
        fake_nginx::harness::settle_executable(&self.installed).expect("installed binary runs");
        record
    }

    fn signal(&self, signal: fake_nginx::Signal) {
        self.inst.signal(signal).expect("signal");
    }
}

/// Keeps every event, and runs `act` on the operation's thread as soon as `pid` has been
/// sent `signal`: the operation waits for it, so what `act` does (and waits for) happens
/// before the operation's next look.
pub struct AtSignal<F: Fn()> {
    pub pid: Pid,
    pub signal: hotreload_core::Signal,
    pub act: F,
    pub events: Events,
}

impl<F: Fn()> AtSignal<F> {
    pub fn new(pid: Pid, signal: hotreload_core::Signal, act: F) -> Self {
        AtSignal {
            pid,
            signal,
            act,
            events: Events::default(),
        }
    }
}

impl<F: Fn()> hotreload_core::Observer for AtSignal<F> {
    fn on_event(&self, event: &hotreload_core::Event) {
        self.events.on_event(event);
        if matches!(event, hotreload_core::Event::Signalled { pid, signal, .. }
            if (*pid, *signal) == (self.pid, self.signal))
        {
            (self.act)();
        }
    }
}
