//! Ctrl-C and SIGTERM for `hotreload demo`, which must clean up (kill its fake-nginx,
//! remove its temporary directory) however it ends.
//!
//! The handler only writes the signal number into a pipe (the self-pipe trick: write(2)
//! is async-signal-safe, and nothing else is needed in the handler); a thread blocked on
//! the read end does the actual cleanup in normal Rust. Handlers are reset by exec, so
//! the servers the demo starts keep their own signal behaviour.
//!
//! With [`crate::term`]'s one `ioctl`, this is the binary's only `unsafe`; each block
//! says why it is sound.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::FromRawFd;
use std::sync::atomic::{AtomicI32, Ordering};

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

/// Installs the SIGINT and SIGTERM handlers; returns the pipe's read end, on which
/// each delivered signal appears as one byte holding its number.
pub fn install() -> io::Result<File> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fds[0] was just created by pipe2 and is owned by nothing else.
    let read_end = unsafe { File::from_raw_fd(fds[0]) };
    WRITE_END.store(fds[1], Ordering::SeqCst);
    for signal in [libc::SIGINT, libc::SIGTERM] {
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
pub fn wait(mut read_end: File) -> i32 {
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
