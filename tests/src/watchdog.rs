//! A deadline of its own for every process test, and the per-test registry of the servers
//! a test started (issue 15).
//!
//! [`watchdog`] runs a test body on a thread of its own and waits for it at most
//! [`bound`] (`HOTRELOAD_TEST_TIMEOUT` seconds, default 300: generous, since the whole
//! suite shares two slow cores and the longest kill-anywhere tests run dozens of upgrades).
//! A body still running then is a lost deadline somewhere: the test fails with the process
//! tree and the error log of every server the body registered, and those processes are
//! killed, so a hang is a red test with a message, not a CI run that never ends.
//!
//! Servers register themselves ([`register`]) in the scope of the thread that starts them;
//! [`diagnostics`] renders the scope for failure messages (the CLI runner appends it).

use std::cell::RefCell;
use std::panic::resume_unwind;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use crate::procs;

/// How a registered server's processes are found.
#[derive(Debug, Clone)]
pub struct Watched {
    pub name: String,
    /// Processes whose working directory is this (fake-nginx and nginx run in the prefix).
    pub dir: Option<PathBuf>,
    /// Processes of this session (a daemonized master's, shared by what it starts).
    pub session: Option<i32>,
    /// Processes of this process group (a foreground master started as a group leader).
    pub pgrp: Option<i32>,
    /// The server's error log, whose tail failure messages print.
    pub error_log: Option<PathBuf>,
}

impl Watched {
    /// A server identified by its master: its session when it has one of its own, else
    /// its process group when that is not the test's.
    pub fn of_master(
        name: &str,
        master: i32,
        dir: Option<PathBuf>,
        log: Option<PathBuf>,
    ) -> Watched {
        let me = procs::stat(std::process::id() as i32);
        let st = procs::stat(master);
        let session = st
            .as_ref()
            .map(|s| s.session)
            .filter(|&s| s > 1 && Some(s) != me.as_ref().map(|m| m.session));
        let pgrp = st
            .as_ref()
            .map(|s| s.pgrp)
            .filter(|&g| g > 1 && Some(g) != me.as_ref().map(|m| m.pgrp));
        Watched {
            name: name.to_owned(),
            dir,
            session,
            pgrp,
            error_log: log,
        }
    }

    /// Its live processes now, never the test process itself.
    pub fn processes(&self) -> Vec<i32> {
        let me = std::process::id() as i32;
        procs::all_pids()
            .into_iter()
            .filter(|&p| p != me && procs::alive(p))
            .filter(|&p| {
                let st = procs::stat(p);
                let in_session =
                    self.session.is_some() && st.as_ref().map(|s| s.session) == self.session;
                let in_group = self.pgrp.is_some() && st.as_ref().map(|s| s.pgrp) == self.pgrp;
                let in_dir = self.dir.as_ref().is_some_and(|d| {
                    std::fs::read_link(format!("/proc/{p}/cwd")).is_ok_and(|c| c.starts_with(d))
                });
                in_session || in_group || in_dir
            })
            .collect()
    }

    /// The process tree and the tail of the error log.
    pub fn diagnostics(&self) -> String {
        let mut s = format!(
            "--- process tree of {}\n{}",
            self.name,
            procs::tree(&self.processes())
        );
        if let Some(log) = &self.error_log {
            s += &format!(
                "--- {} (last 30 lines)\n{}",
                log.display(),
                procs::tail(log, 30)
            );
        }
        s
    }

    fn kill(&self) {
        if let Some(sid) = self.session {
            procs::kill_session(sid);
        }
        for p in self.processes() {
            let _ = procs::signal(p, nix::sys::signal::Signal::SIGKILL);
        }
    }
}

/// The servers one test registered, by id.
#[derive(Default)]
pub struct Scope(Mutex<Vec<(u64, Watched)>>);

thread_local! {
    static SCOPE: RefCell<Option<Arc<Scope>>> = const { RefCell::new(None) };
}

fn current() -> Arc<Scope> {
    SCOPE.with(|s| s.borrow_mut().get_or_insert_with(Default::default).clone())
}

/// A registration; dropping it unregisters.
pub struct Registration {
    id: u64,
    scope: Arc<Scope>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.scope
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(id, _)| *id != self.id);
    }
}

/// Registers a server in the current test's scope, so failure messages print its tree and
/// log and the watchdog kills it on a lost deadline.
pub fn register(watched: Watched) -> Registration {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    let scope = current();
    scope
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((id, watched));
    Registration { id, scope }
}

impl Scope {
    fn watched(&self) -> Vec<Watched> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, w)| w.clone())
            .collect()
    }

    fn diagnostics(&self) -> String {
        self.watched().iter().map(Watched::diagnostics).collect()
    }
}

/// The tree and log of every server the current test registered ("" when none).
pub fn diagnostics() -> String {
    current().diagnostics()
}

/// The watchdog's bound: `HOTRELOAD_TEST_TIMEOUT` seconds, default 300.
pub fn bound() -> Duration {
    std::env::var("HOTRELOAD_TEST_TIMEOUT")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(Duration::from_secs(300))
}

/// Runs `body` under the watchdog with [`bound`].
#[track_caller]
pub fn watchdog(body: impl FnOnce() + Send + 'static) {
    watchdog_for(bound(), body)
}

/// Runs `body` on a thread of its own; a panic in it is this test's panic. Past `bound`,
/// kills every process the body's servers run and panics with their tree and log (the
/// body's thread is left blocked: nothing can stop a thread from outside).
#[track_caller]
pub fn watchdog_for(bound: Duration, body: impl FnOnce() + Send + 'static) {
    let scope = Arc::new(Scope::default());
    let inner = scope.clone();
    let (done, finished) = mpsc::channel::<()>();
    let name = std::thread::current().name().unwrap_or("test").to_owned();
    let handle = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            SCOPE.with(|s| *s.borrow_mut() = Some(inner));
            let _done = done; // dropped when the body returns or unwinds
            body();
        })
        .expect("start the test body's thread");
    match finished.recv_timeout(bound) {
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let dump = scope.diagnostics();
            for watched in scope.watched() {
                watched.kill();
            }
            panic!(
                "watchdog: {name} still running after {bound:?} (HOTRELOAD_TEST_TIMEOUT): a wait \
                 lost its deadline; every process of its servers was killed\n{dump}"
            );
        }
        Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
            if let Err(panic) = handle.join() {
                resume_unwind(panic);
            }
        }
    }
}
