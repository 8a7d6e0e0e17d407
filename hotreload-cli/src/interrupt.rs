//! SIGINT, SIGTERM and SIGHUP: Ctrl-C, a CI job's stop, a lost SSH session.
//!
//! The handler only writes the signal number into a pipe (the self-pipe trick: write(2)
//! is async-signal-safe, and nothing else is needed in the handler); a thread blocked on
//! the read end does the actual work in normal Rust. Handlers are reset by exec, so
//! the servers hotreload starts or signals keep their own signal behaviour.
//!
//! Two users: `hotreload demo` ([`install`], [`wait`]: clean up and exit), and the
//! commands that change a server ([`Watch`]): the first signal trips the core's
//! [`CancelToken`] (the core stops its wait and rolls back, or finishes once past the
//! point of no return), a second one exits at once with the command that settles what
//! is left. A hung-up terminal makes stdout and stderr fail (EIO, EPIPE): the printers
//! ignore write errors, and Rust runs with SIGPIPE ignored, so a rollback after a HUP
//! is never cut short by its own output.
//!
//! A self-pipe of our own rather than `signal-hook`: it is the thirty lines below, the
//! demo already had it, and `libc` is a dependency anyway.
//!
//! With [`crate::term`]'s one `ioctl`, this is the binary's only `unsafe`; each block
//! says why it is sound.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::Arc;

use hotreload_core::{CancelToken, Event, Observer, Role, Signal, Step};

/// The signals that stop hotreload: Ctrl-C, `kill`/`systemctl stop`/CI, a lost terminal.
pub const SIGNALS: [libc::c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Write end of the pipe, read by the handler (-1 until installed).
static WRITE_END: AtomicI32 = AtomicI32::new(-1);

extern "C" fn on_signal(signal: libc::c_int) {
    let fd = WRITE_END.load(Ordering::Relaxed);
    if fd >= 0 {
        let byte = u8::try_from(signal).unwrap_or(0);
        // SAFETY: write(2) is async-signal-safe; the buffer is one byte on this stack.
        // A full pipe (many signals) loses the byte, which is fine: one is enough.
        unsafe {
            libc::write(fd, std::ptr::addr_of!(byte).cast(), 1);
        }
    }
}

/// Installs the handlers of [`SIGNALS`]; returns the pipe's read end, on which each
/// delivered signal appears as one byte holding its number.
pub fn install() -> io::Result<File> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fds[0] was just created by pipe2 and is owned by nothing else.
    let read_end = unsafe { File::from_raw_fd(fds[0]) };
    WRITE_END.store(fds[1], Ordering::SeqCst);
    for signal in SIGNALS {
        // SAFETY: an all-zero sigaction is a valid value to start from; the handler
        // only does async-signal-safe work (see `on_signal`).
        let rc = unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
            action.sa_flags = libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(read_end)
}

/// Blocks until a signal arrives; returns its number.
pub fn wait(read_end: &mut File) -> i32 {
    let mut byte = [0u8; 1];
    loop {
        match read_end.read(&mut byte) {
            Ok(1) => return i32::from(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The write end never closes while the process lives; treat oddities as SIGINT.
            _ => return libc::SIGINT,
        }
    }
}

/// `SIGINT`, `SIGTERM`, `SIGHUP`.
pub fn name(signal: i32) -> String {
    Signal::from_number(signal).map_or_else(|| format!("signal {signal}"), |s| s.to_string())
}

/// What the command run under a [`Watch`] had done when a signal came.
#[derive(Default)]
struct Shared {
    /// The first signal (0: none yet).
    signal: AtomicI32,
    /// The old master was told to stop: the upgrade can only be finished now.
    past_no_return: AtomicBool,
    /// In the retire step (a QUIT or TERM to the old master from here on is final).
    retiring: AtomicBool,
}

/// Signals during a command that changes a server: the first cancels, a second exits.
pub struct Watch {
    shared: Arc<Shared>,
    token: CancelToken,
}

/// What the watch thread calls: `first(signal, past_no_return)` once the token is
/// tripped, `second(signal, past_no_return)` right before the process exits with
/// 128 + signal.
pub struct Handlers {
    pub first: Box<dyn Fn(i32, bool) + Send>,
    pub second: Box<dyn Fn(i32, bool) + Send>,
}

impl Watch {
    /// Installs the handlers and starts the thread that trips the token on the first
    /// signal. When they cannot be installed, the watch is inert (signals keep their
    /// default: they kill hotreload) and the error says why.
    pub fn start(handlers: Handlers) -> (Watch, Option<io::Error>) {
        let watch = Watch {
            shared: Arc::new(Shared::default()),
            token: CancelToken::new(),
        };
        let mut read_end = match install() {
            Ok(read_end) => read_end,
            Err(e) => return (watch, Some(e)),
        };
        let seen = Arc::clone(&watch.shared);
        let token = watch.token.clone();
        let spawned = std::thread::Builder::new()
            .name("hotreload-signals".into())
            .spawn(move || {
                let signal = wait(&mut read_end);
                seen.signal.store(signal, Ordering::SeqCst);
                token.cancel();
                (handlers.first)(signal, seen.past_no_return.load(Ordering::SeqCst));
                let again = wait(&mut read_end);
                (handlers.second)(again, seen.past_no_return.load(Ordering::SeqCst));
                std::process::exit(128 + again);
            });
        let error = spawned.err();
        (watch, error)
    }

    /// The token the first signal trips.
    pub fn token(&self) -> CancelToken {
        self.token.clone()
    }

    /// The first signal received, if any.
    pub fn signal(&self) -> Option<i32> {
        match self.shared.signal.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(signal),
        }
    }

    /// Forwards events to `inner`, noting when the old master is told to stop for good.
    pub fn observer<'a>(&'a self, inner: &'a dyn Observer) -> Tracker<'a> {
        Tracker {
            shared: &self.shared,
            inner,
        }
    }
}

/// The observer of [`Watch::observer`].
pub struct Tracker<'a> {
    shared: &'a Shared,
    inner: &'a dyn Observer,
}

impl Observer for Tracker<'_> {
    fn on_event(&self, event: &Event) {
        match event {
            Event::StepStarted { step } => self
                .shared
                .retiring
                .store(*step == Step::Retire, Ordering::SeqCst),
            Event::Signalled {
                role: Role::OldMaster,
                signal: Signal::Quit | Signal::Term | Signal::Kill,
                ..
            } if self.shared.retiring.load(Ordering::SeqCst) => {
                self.shared.past_no_return.store(true, Ordering::SeqCst)
            }
            _ => {}
        }
        self.inner.on_event(event);
    }
}
