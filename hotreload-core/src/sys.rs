//! Every `unsafe` call of the crate, each wrapped in a safe function that takes
//! and returns std types (`OwnedFd`, `BorrowedFd`, `io::Result`).
//!
//! Nothing here decides anything: callers in `process`, `lock` and `health`
//! own the policy. Keep this module small and free of logic.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// `pidfd_open(2)`: a file descriptor that refers to process `pid` for as long as
/// it is open, even after the pid is reused by another process.
pub(crate) fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes two integers and touches no memory of ours.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0 as libc::c_uint) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // pidfd_open returns a new descriptor (an int) that nobody else owns; it is
    // opened with O_CLOEXEC by the kernel.
    let fd = ret as libc::c_int;
    // SAFETY: `fd` is a freshly created descriptor owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// `pidfd_send_signal(2)`: signals exactly the process the pidfd refers to; fails
/// with ESRCH when it has exited, so a recycled pid can never receive the signal.
pub(crate) fn pidfd_send_signal(pidfd: BorrowedFd<'_>, signal: i32) -> io::Result<()> {
    // SAFETY: a null siginfo is allowed (the kernel fills one in as for kill(2));
    // the descriptor is valid for the duration of the borrow.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0 as libc::c_uint,
        )
    };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `kill(2)`: signals whatever process has `pid` now. Only for kernels without
/// pidfds, right after the caller checked that `pid` still names the pinned process.
pub(crate) fn kill(pid: i32, signal: i32) -> io::Result<()> {
    // Refuse the special pids: 0 (our group), -1 (everyone), negatives (groups), 1 (init).
    if pid <= 1 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill takes two integers and touches no memory of ours.
    let ret = unsafe { libc::kill(pid, signal) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The kernel's release string (`uname -r`), e.g. "4.18.0-553.el8_10.x86_64".
pub(crate) fn kernel_release() -> io::Result<String> {
    // SAFETY: utsname is plain old data; all-zero is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uname writes into the struct we exclusively borrow for the call.
    if unsafe { libc::uname(&mut uts) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // The kernel NUL-terminates every field; stop at the first NUL (or the end).
    let bytes: Vec<u8> = uts
        .release
        .iter()
        .map(|&c| c as u8)
        .take_while(|&b| b != 0)
        .collect();
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// Polls `fds` for readability (or hang-up/error, which also mean "look now").
///
/// `timeout` of `None` waits forever; the result has one flag per descriptor.
/// EINTR is returned to the caller (as `ErrorKind::Interrupted`) so that it can
/// recompute its remaining time.
pub(crate) fn poll_readable(
    fds: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
) -> io::Result<Vec<bool>> {
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let timeout_ms: libc::c_int = match timeout {
        None => -1,
        // Round up so a sub-millisecond remainder does not become a busy 0 ms poll.
        Some(d) => {
            let ms = d.as_micros().div_ceil(1000);
            libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX)
        }
    };
    // SAFETY: `pollfds` is a valid, exclusively borrowed array of `len` pollfd
    // structs for the duration of the call.
    let ret = unsafe {
        libc::poll(
            pollfds.as_mut_ptr(),
            pollfds.len() as libc::nfds_t,
            timeout_ms,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(pollfds
        .iter()
        .map(|p| p.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0)
        .collect())
}

/// `flock(fd, LOCK_EX | LOCK_NB)`: Ok(true) when locked, Ok(false) when another
/// open file description holds it.
pub(crate) fn flock_exclusive_nonblocking(fd: BorrowedFd<'_>) -> io::Result<bool> {
    loop {
        // SAFETY: flock takes a descriptor that is valid for the borrow and an int.
        let ret = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if ret == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(err),
        }
    }
}

/// The effective user id of this process.
pub(crate) fn geteuid() -> u32 {
    // SAFETY: geteuid cannot fail and touches no memory.
    unsafe { libc::geteuid() }
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of `/proc/<pid>/stat` times.
pub(crate) fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf takes an int and touches no memory.
    let ret = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // 100 is the value on every Linux configuration we know; fall back to it
    // rather than divide by a garbage value.
    if ret > 0 {
        ret as u64
    } else {
        100
    }
}

/// Puts a descriptor in non-blocking mode (used for a child's output pipes that
/// are read after poll says they are ready).
pub(crate) fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: F_GETFL on a descriptor valid for the borrow.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: F_SETFL with an int argument on a descriptor valid for the borrow.
    let ret = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `command` drop to user `uid`, group `gid` and exactly the supplementary
/// `groups` in the child before it executes (std's `uid`/`gid` would leave no
/// supplementary groups, so a server whose files are readable through one would fail
/// its own config test). Any failure aborts the spawn: the command never runs as root.
pub(crate) fn run_as_user(
    command: &mut std::process::Command,
    uid: u32,
    gid: u32,
    groups: Vec<u32>,
) {
    use std::os::unix::process::CommandExt;
    let groups: Vec<libc::gid_t> = groups.into_iter().collect();
    // SAFETY: the closure runs between fork and exec and only makes three raw system
    // calls (async-signal-safe) on memory allocated before the fork; it allocates nothing
    // (io::Error::last_os_error only reads errno).
    unsafe {
        command.pre_exec(move || {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Signals a whole process group (`kill(-pgid, sig)`).
///
/// Only used for the process group of a child we spawned and have not reaped:
/// an unreaped child keeps its pid (and so its group id) from being reused.
pub(crate) fn kill_process_group(pgid: i32, signal: i32) -> io::Result<()> {
    if pgid <= 1 {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    }
    // SAFETY: kill takes two integers and touches no memory of ours.
    let ret = unsafe { libc::kill(-pgid, signal) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// `ioctl(FICLONE)`: makes `dst` share `src`'s extents (a reflink, copy-on-write) where
/// the file system offers it (btrfs, XFS, bcachefs); fails with EOPNOTSUPP, EXDEV or
/// EINVAL elsewhere.
pub(crate) fn ficlone(dst: BorrowedFd<'_>, src: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: FICLONE takes the source descriptor as its integer argument; both
    // descriptors are valid for the duration of the borrows.
    let ret = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `flistxattr(2)`: the names of the extended attributes of the file, each NUL-terminated
/// (those the caller may read: `trusted.*` only with CAP_SYS_ADMIN).
pub(crate) fn flistxattr(fd: BorrowedFd<'_>) -> io::Result<Vec<u8>> {
    xattr_read(|buf, len| {
        // SAFETY: `buf` points to `len` writable bytes (or is null with len 0, which
        // asks for the size).
        unsafe { libc::flistxattr(fd.as_raw_fd(), buf.cast(), len) }
    })
}

/// `fgetxattr(2)`: the value of the extended attribute `name` of the file.
pub(crate) fn fgetxattr(fd: BorrowedFd<'_>, name: &std::ffi::CStr) -> io::Result<Vec<u8>> {
    xattr_read(|buf, len| {
        // SAFETY: `name` is NUL-terminated; `buf` points to `len` writable bytes (or is
        // null with len 0, which asks for the size).
        unsafe { libc::fgetxattr(fd.as_raw_fd(), name.as_ptr(), buf.cast(), len) }
    })
}

/// `getxattr(2)` by path (following links: `/proc/PID/fd/N` of a socket reaches the
/// socket, which `open` cannot).
pub(crate) fn getxattr_path(path: &std::path::Path, name: &std::ffi::CStr) -> io::Result<Vec<u8>> {
    let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    xattr_read(|buf, len| {
        // SAFETY: `path` and `name` are NUL-terminated; `buf` points to `len` writable
        // bytes (or is null with len 0, which asks for the size).
        unsafe { libc::getxattr(path.as_ptr(), name.as_ptr(), buf.cast(), len) }
    })
}

/// Calls a size-then-fill xattr function until the value fits (it may grow in between).
fn xattr_read(call: impl Fn(*mut u8, usize) -> libc::ssize_t) -> io::Result<Vec<u8>> {
    loop {
        let size = call(std::ptr::null_mut(), 0);
        if size < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut buf = vec![0u8; size as usize];
        let n = call(buf.as_mut_ptr(), buf.len());
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) {
            return Err(e);
        }
    }
}

/// `fsetxattr(2)`: sets the extended attribute `name` of the file to `value`.
pub(crate) fn fsetxattr(fd: BorrowedFd<'_>, name: &std::ffi::CStr, value: &[u8]) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated, `value` is a valid slice; flags 0 (create or replace).
    let ret = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `fremovexattr(2)`: removes the extended attribute `name` of the file.
pub(crate) fn fremovexattr(fd: BorrowedFd<'_>, name: &std::ffi::CStr) -> io::Result<()> {
    // SAFETY: `name` is NUL-terminated; the descriptor is valid for the borrow.
    let ret = unsafe { libc::fremovexattr(fd.as_raw_fd(), name.as_ptr()) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The raw POSIX access ACL of an open file (`system.posix_acl_access`), or `None` when
/// the file has none (or the file system knows no ACLs).
pub(crate) fn posix_acl_access(fd: BorrowedFd<'_>) -> io::Result<Option<Vec<u8>>> {
    match fgetxattr(fd, c"system.posix_acl_access") {
        Ok(value) => Ok(Some(value)),
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENODATA | libc::ENOTSUP)) => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn pidfd_of_self_is_not_readable() {
        if !crate::process::pidfd_available() {
            return; // under the oldkernel wrapper (process::tests cover the fallback)
        }
        let fd = pidfd_open(std::process::id() as i32).unwrap();
        let ready = poll_readable(&[fd.as_fd()], Some(Duration::ZERO)).unwrap();
        assert_eq!(ready, vec![false]);
    }

    #[test]
    fn kill_refuses_special_pids() {
        for pid in [-1, 0, 1] {
            let e = kill(pid, 0).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{pid}");
        }
        kill(std::process::id() as i32, 0).unwrap();
    }

    #[test]
    fn kernel_release_looks_like_one() {
        let r = kernel_release().unwrap();
        assert!(
            r.starts_with(|c: char| c.is_ascii_digit()) && r.contains('.'),
            "{r}"
        );
    }

    #[test]
    fn clock_ticks_is_sane() {
        let t = clock_ticks_per_second();
        assert!((1..=10_000).contains(&t), "{t}");
    }
}
