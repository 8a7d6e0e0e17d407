//! Shared setup of the `core_*` tests: a fake-nginx instance running `v1` from a path
//! of its own (`<dir>/sbin/nginx`, so a swap there upgrades it), variants to upgrade to,
//! and what a user checks afterwards (pid files, which version answers, which file is
//! installed). Every process an instance starts is killed when it is dropped, even on
//! panic (fake_nginx::harness), and the temporary directory goes after it.

#![allow(dead_code)]

use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fake_nginx::harness::{self, Instance};
use fake_nginx::variant::make_variant;
use fake_nginx::Fault;
use hotreload_core::{Event, Observer, Pid, Signal, Target, UpgradeOptions};

/// Generous deadline for waits that should succeed (tests share 2 slow cores).
pub const LONG: Duration = Duration::from_secs(30);

/// A running instance and its binaries. Field order matters: the instance (and its
/// processes) goes before the directory holding its executable.
pub struct Setup {
    pub inst: Instance,
    pub binary: PathBuf,
    pub dir: tempfile::TempDir,
}

/// Starts `v1` (with `faults`) daemonized with 2 workers.
pub fn start(faults: &[&str]) -> Setup {
    start_with(faults, |b| b)
}

/// Like [`start`], with the instance builder adjusted by `build`.
pub fn start_with(
    faults: &[&str],
    build: impl FnOnce(harness::Builder) -> harness::Builder,
) -> Setup {
    let dir = tempfile::tempdir().expect("temp dir");
    fs::create_dir(dir.path().join("sbin")).unwrap();
    let binary = dir.path().join("sbin/nginx");
    variant_at(&binary, "1.0", faults);
    let inst = build(Instance::builder(&binary).workers(2).timeout(LONG * 2))
        .start()
        .expect("start fake-nginx v1");
    Setup { inst, binary, dir }
}

/// Writes a fake-nginx variant with `version` and `faults` at `path`.
pub fn variant_at(path: &Path, version: &str, faults: &[&str]) {
    let faults: Vec<Fault> = faults.iter().map(|f| f.parse().expect("fault")).collect();
    make_variant(&hotreload_tests::fake_nginx_bin(), path, version, &faults).expect("make variant");
    harness::settle_executable(path).expect("variant runs");
}

impl Setup {
    /// A new variant beside the installed binary (`<dir>/nginx-<version>`).
    pub fn variant(&self, version: &str, faults: &[&str]) -> PathBuf {
        let path = self.dir.path().join(format!("nginx-{version}"));
        variant_at(&path, version, faults);
        path
    }

    pub fn target(&self) -> Target {
        Target::new(self.inst.pid_file())
    }

    /// The `Server` header of one fresh request, e.g. `fake-nginx/1.0`.
    pub fn version(&self) -> String {
        let r = self.inst.get("/").expect("GET /");
        assert_eq!(r.status, 200, "{r:?}");
        r.server
    }

    pub fn pid_file(&self) -> Option<i32> {
        self.inst.pid_from_file()
    }

    pub fn oldbin_exists(&self) -> bool {
        self.inst.oldbin_file().exists()
    }

    pub fn original_master(&self) -> Pid {
        pid(self.inst.master_pid())
    }

    /// SHA-256 of the installed executable equals that of `file`.
    pub fn installed_is(&self, file: &Path) -> bool {
        sha(&self.binary) == sha(file)
    }

    pub fn backup(&self) -> PathBuf {
        hotreload_core::swap::backup_path_for(&self.binary)
    }

    pub fn journal(&self) -> PathBuf {
        self.target().journal_file()
    }

    /// Process tree and logs, for assertion messages.
    pub fn why(&self) -> String {
        self.inst.diagnostics()
    }

    /// Asserts the server is steady on `master`, serving `version`, with no `.oldbin`.
    pub fn assert_steady(&self, master: Pid, version: &str) {
        assert_eq!(self.pid_file(), Some(master.get()), "{}", self.why());
        assert!(!self.oldbin_exists(), "{}", self.why());
        assert!(alive(master), "{}", self.why());
        assert_eq!(harness::workers_of(master.get()).len(), 2, "{}", self.why());
        assert_eq!(
            self.version(),
            format!("fake-nginx/{version}"),
            "{}",
            self.why()
        );
    }

    /// Installs `new` at the binary path (rename swap, no journal), then lets it settle: in
    /// a multi-threaded test process, a child forked by another test while the staged file
    /// was open for writing could make the master's exec fail with ETXTBSY.
    pub fn install(&self, new: &Path) -> hotreload_core::SwapRecord {
        let record = hotreload_core::swap_for(hotreload_core::SwapKind::Rename)
            .install(&self.binary, new)
            .expect("install");
        harness::settle_executable(&self.binary).expect("installed binary runs");
        record
    }

    /// Sends `signal` to the master the instance started with.
    pub fn signal(&self, signal: fake_nginx::Signal) {
        self.inst.signal(signal).expect("signal");
    }
}

/// A fingerprint of a file's content (length and a 64-bit hash), for "same build?".
pub fn sha(path: &Path) -> String {
    use std::hash::{Hash, Hasher};
    let bytes = std::fs::read(path).expect("read for hash");
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    format!("{}:{:016x}", bytes.len(), h.finish())
}

pub fn pid(raw: i32) -> Pid {
    Pid::new(i64::from(raw)).expect("pid")
}

/// Alive and not a zombie.
pub fn alive(pid: Pid) -> bool {
    harness::is_alive(pid.get())
}

/// Waits (bounded) for `pid` to be gone or a zombie.
pub fn wait_gone(pid: Pid) {
    harness::wait_until(LONG, &format!("process {pid} to exit"), || !alive(pid));
}

/// Options with generous deadlines for everything that should succeed.
pub fn options(new_binary: &Path) -> UpgradeOptions {
    UpgradeOptions::new()
        .new_binary(new_binary)
        .spawn_timeout(LONG)
        .drain_timeout(LONG)
        .quit_timeout(LONG)
}

pub fn op_options() -> hotreload_core::OpOptions {
    hotreload_core::OpOptions::new()
        .spawn_timeout(LONG)
        .drain_timeout(LONG)
        .quit_timeout(LONG)
}

/// An observer that keeps every event.
#[derive(Default)]
pub struct Events(pub RefCell<Vec<Event>>);

impl Observer for Events {
    fn on_event(&self, event: &Event) {
        self.0.borrow_mut().push(event.clone());
    }
}

impl Events {
    /// The signals sent, in order, as (pid, signal).
    pub fn signals(&self) -> Vec<(Pid, Signal)> {
        self.0
            .borrow()
            .iter()
            .filter_map(|e| match e {
                Event::Signalled { pid, signal, .. } => Some((*pid, *signal)),
                _ => None,
            })
            .collect()
    }

    /// Every event as text, for assertion messages.
    pub fn text(&self) -> String {
        self.0.borrow().iter().map(|e| format!("  {e}\n")).collect()
    }

    pub fn any(&self, f: impl Fn(&Event) -> bool) -> bool {
        self.0.borrow().iter().any(f)
    }
}
