//! Helpers of the tests that drive `hotreload-core` as a library: options with generous
//! deadlines, an observer that keeps every event, pids.

use std::cell::RefCell;
use std::path::Path;

use hotreload_core::{Event, Observer, Pid, Signal, UpgradeOptions};

use crate::poll::{wait_until, LONG};
use crate::procs;

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

pub fn pid(raw: i32) -> Pid {
    Pid::new(i64::from(raw)).expect("pid")
}

/// Waits (bounded) for `pid` to be gone or a zombie.
#[track_caller]
pub fn wait_gone(pid: Pid) {
    wait_until(
        &format!("process {pid} to exit"),
        || !procs::alive(pid.get()),
        String::new,
    );
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
