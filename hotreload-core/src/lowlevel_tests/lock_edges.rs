//! The lock's edges, each written for a survivor of a cargo-mutants run (MUTANTS.md): the
//! holder details (command line, UTC time, emptied on release); what is refused at the
//! lock path (a FIFO, another user's file, a symlink, a missing directory) and how it is
//! said; a lock file replaced or created by another locker mid-way (made to happen by a
//! seccomp filter in a re-executed child); a lock left to a child of a killed holder; the
//! binary lock's per-thread reentrancy; and
//! `is_held` (asking the holder, and /proc/locks while other locks come and go). Calls that
//! would loop under a bug are bounded.

use std::fs;
use std::io;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use crate::error::Error;
use crate::lock::{BinaryLock, TargetLock};

#[test]
fn a_released_lock_leaves_no_holder_details() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx.lock");
    let lock = TargetLock::acquire_file(&path).unwrap();
    let held = fs::read_to_string(&path).unwrap();
    assert!(held.contains(&std::process::id().to_string()), "{held}");
    drop(lock);
    // Removed by its holder as it lets go (or, if still there, emptied).
    assert!(
        fs::read_to_string(&path).map_or(true, |left| left.is_empty()),
        "details left after release"
    );
    // And it can be taken again.
    TargetLock::acquire_file(&path).unwrap();
}

#[test]
fn the_holder_is_named_by_its_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx.lock");
    let _lock = TargetLock::acquire_file(&path).unwrap();
    let held = fs::read_to_string(&path).unwrap();
    let argv0 = std::env::args().next().unwrap();
    assert!(held.contains(&argv0), "{held}");
}

#[test]
fn holder_times_are_right_past_the_century_days_of_the_calendar() {
    // The century and 400-year corrections of the civil-date conversion.
    let at = |secs| crate::lock::format_utc(UNIX_EPOCH + Duration::from_secs(secs));
    assert_eq!(at(4_107_456_000), "2100-02-28T00:00:00Z");
    assert_eq!(at(4_107_542_400), "2100-03-01T00:00:00Z");
    assert_eq!(at(13_569_379_200), "2399-12-31T00:00:00Z");
    assert_eq!(at(13_574_563_200), "2400-02-29T00:00:00Z");
    assert_eq!(at(13_574_649_600), "2400-03-01T00:00:00Z");
}

/// Runs `f` on a thread of its own and returns what it returns, failing the test if it
/// has not returned within a generous bound: a lock that loops on an error would hang
/// the test (and a mutation run) instead of failing it.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{what} did not return within 60 s (does it loop?)"))
}

/// The `Error::Lock` that taking the lock at `path` gives, with its source.
fn lock_error(path: &Path) -> io::Error {
    let owned = path.to_path_buf();
    match bounded("TargetLock::acquire_file", move || {
        TargetLock::acquire_file(&owned)
    }) {
        Err(Error::Lock {
            path: named,
            source,
        }) => {
            assert_eq!(named, path);
            let msg = Error::Lock {
                path: named,
                source: io::Error::other(""),
            }
            .to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            source
        }
        other => panic!(
            "expected Error::Lock naming {}, got {other:?}",
            path.display()
        ),
    }
}

#[test]
fn a_fifo_at_the_lock_path_is_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx.lock");
    nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let source = lock_error(&path);
    assert_eq!(source.kind(), io::ErrorKind::PermissionDenied, "{source}");
    let text = source.to_string();
    assert!(text.contains("not a regular file"), "{text}");
    assert!(text.contains("remove it"), "{text}");
    // Refused, not consumed: it is still the FIFO.
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_fifo());
}

#[test]
fn as_root_a_lock_file_of_another_user_is_refused_with_the_fix() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root (to give a file to another user)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx.lock");
    fs::write(&path, "planted\n").unwrap();
    std::os::unix::fs::chown(&path, Some(4242), Some(4242)).unwrap();
    let source = lock_error(&path);
    assert_eq!(source.kind(), io::ErrorKind::PermissionDenied, "{source}");
    let text = source.to_string();
    assert!(text.contains("of user 0 (owner 4242)"), "{text}");
    assert!(text.contains("remove it"), "{text}");
    // Neither locked nor written.
    assert_eq!(fs::read_to_string(&path).unwrap(), "planted\n");
    assert!(!crate::lock::is_held(&path));
}

#[test]
fn a_symlink_at_the_lock_path_is_an_error_and_its_target_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("precious");
    fs::write(&target, "precious\n").unwrap();
    let path = dir.path().join("nginx.lock");
    std::os::unix::fs::symlink(&target, &path).unwrap();
    let source = lock_error(&path);
    assert_eq!(source.raw_os_error(), Some(libc::ELOOP), "{source}");
    assert_eq!(fs::read_to_string(&target).unwrap(), "precious\n");
    assert!(!crate::lock::is_held(&target));
    assert!(fs::symlink_metadata(&path)
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn a_lock_in_a_missing_directory_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("gone").join("nginx.lock");
    let source = lock_error(&path);
    assert_eq!(source.kind(), io::ErrorKind::NotFound, "{source}");
}

/// Tries to take the binary lock at `path` on another thread: Err(holder) when refused.
fn binary_lock_elsewhere(path: &Path) -> Result<(), String> {
    let owned = path.to_path_buf();
    bounded("BinaryLock::acquire", move || {
        match BinaryLock::acquire(&owned) {
            Ok(_lock) => Ok(()),
            Err(Error::Locked {
                path: named,
                holder,
            }) => {
                assert_eq!(named, owned);
                Err(holder)
            }
            Err(e) => panic!("{e}"),
        }
    })
}

const SAME_PROCESS: &str = "(another upgrade in this process swaps the same executable)";

#[test]
fn a_binary_lock_is_reentrant_on_its_thread_and_refused_to_other_threads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("binary=usr-sbin-nginx.lock");
    let outer = BinaryLock::acquire(&path).unwrap();
    assert!(crate::lock::is_held(&path));
    let inner = BinaryLock::acquire(&path).expect("the holding thread takes it again");
    let me = format!("pid {} {SAME_PROCESS}", std::process::id());
    assert_eq!(binary_lock_elsewhere(&path), Err(me.clone()));
    // Letting go of the inner one leaves the outer one held.
    drop(inner);
    assert_eq!(binary_lock_elsewhere(&path), Err(me));
    assert!(crate::lock::is_held(&path));
    drop(outer);
    // Free again, for other threads of this process too (a forked child of a sibling
    // test may hold our descriptor for an instant: retry on that, with a bound).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match binary_lock_elsewhere(&path) {
            Ok(()) => break,
            Err(holder) if !holder.contains(SAME_PROCESS) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(holder) => panic!("still held after both were dropped: {holder}"),
        }
    }
}

#[test]
fn binary_locks_of_two_executables_are_two_locks() {
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("binary=usr-sbin-nginx.lock");
    let second = dir.path().join("binary=usr-local-sbin-nginx.lock");
    let _a = BinaryLock::acquire(&first).unwrap();
    let _b = BinaryLock::acquire(&second).unwrap();
    // Each is an flock of its own file: another process (here another open of the file)
    // is refused either.
    for path in [&first, &second] {
        assert!(crate::lock::is_held(path), "{} not locked", path.display());
        assert!(matches!(
            TargetLock::acquire_file(path),
            Err(Error::Locked { .. })
        ));
    }
}

/// Runs the named helper test of this file in a child process (see
/// [`super::helper_output`]): its stdout.
fn run_helper(helper: &str, env: (&str, &str), extra: &[&str]) -> String {
    super::helper_output(&format!("lowlevel_tests::lock_edges::{helper}"), env, extra)
}

/// The rest of the helper's line that starts with `tag`.
fn tagged(out: &str, tag: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(tag))
        .unwrap_or_else(|| panic!("no {tag:?} line in:\n{out}"))
        .to_string()
}

/// Set to the lock path: the helper below runs.
const COMMAND_LINE_ENV: &str = "HOTRELOAD_LOWLEVEL_LOCK_COMMAND_LINE";

/// Not a test on its own: run by the test below with a command line of a chosen length;
/// takes the lock and prints the command line its file names.
#[test]
fn command_line_helper() {
    let Some(path) = std::env::var_os(COMMAND_LINE_ENV) else {
        return;
    };
    let _lock = TargetLock::acquire_file(Path::new(&path)).unwrap();
    let held = fs::read_to_string(&path).unwrap();
    let line = held.lines().find(|l| l.starts_with("command `")).unwrap();
    println!("\nCOMMAND {line}");
}

#[test]
fn a_long_command_line_is_cut_at_200_bytes_and_a_200_byte_one_is_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx.lock");
    let exe = std::env::current_exe().unwrap();
    let base = format!(
        "{} --exact lowlevel_tests::lock_edges::command_line_helper --nocapture --test-threads=1 --skip ",
        exe.display()
    );
    assert!(
        base.len() < 190,
        "the test binary's path is too long here: {base}"
    );
    let ascii = |total: usize| "x".repeat(total - base.len());
    // A two-byte character over byte 200: cut before it, at 199.
    let split = format!("{}\u{e9}{}", "x".repeat(199 - base.len()), "x".repeat(40));
    for pad in [ascii(199), ascii(200), ascii(201), ascii(260), split] {
        let full = format!("{base}{pad}");
        let out = run_helper(
            "command_line_helper",
            (COMMAND_LINE_ENV, path.to_str().unwrap()),
            &["--skip", &pad],
        );
        let seen = tagged(&out, "COMMAND ");
        let expected = match full.len() {
            ..=200 => format!("command `{full}`"),
            _ if full.is_char_boundary(200) => format!("command `{}...`", &full[..200]),
            _ => format!("command `{}...`", &full[..199]),
        };
        assert_eq!(seen, expected, "a command line of {} bytes", full.len());
    }
}

/// Set to `<once|always>:<lock path>`: the helper below runs.
const REPLACE_ENV: &str = "HOTRELOAD_LOWLEVEL_LOCK_REPLACE";
/// The lock path and the name its replacement is made under, for the signal handler.
static REPLACE_PATHS: std::sync::OnceLock<(std::ffi::CString, std::ffi::CString)> =
    std::sync::OnceLock::new();
static REPLACE_ALWAYS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
static REPLACEMENTS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// The SIGSYS handler of the helper's `flock(fd, LOCK_EX | LOCK_NB)`: first puts a new
/// file at the lock path (as a holder letting go and another locker creating the file
/// again would, between our open and our flock), then does the flock and returns its
/// result as the trapped call's.
#[cfg(target_arch = "x86_64")]
extern "C" fn replace_then_flock(_: libc::c_int, _: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    use std::sync::atomic::Ordering::SeqCst;
    // SAFETY: the kernel passes the interrupted thread's context; only async-signal-safe
    // calls (open, close, rename, flock) are made.
    unsafe {
        let gregs = &mut (*(ctx as *mut libc::ucontext_t)).uc_mcontext.gregs;
        let fd = gregs[libc::REG_RDI as usize] as libc::c_int;
        if let Some((path, next)) = REPLACE_PATHS.get() {
            if REPLACE_ALWAYS.load(SeqCst) || REPLACEMENTS.load(SeqCst) == 0 {
                let new = libc::open(
                    next.as_ptr(),
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o600,
                );
                if new >= 0 {
                    libc::close(new);
                    if libc::rename(next.as_ptr(), path.as_ptr()) == 0 {
                        REPLACEMENTS.fetch_add(1, SeqCst);
                    }
                }
            }
        }
        // Blocking, so the filter lets it through; nobody else holds the file.
        let ret = libc::syscall(libc::SYS_flock, fd, libc::LOCK_EX);
        gregs[libc::REG_RAX as usize] = if ret == 0 {
            0
        } else {
            -i64::from(*libc::__errno_location())
        };
    }
}

/// The flags the lock opens an existing lock file with (std adds `O_CLOEXEC`).
const LOCK_OPEN_FLAGS: libc::c_int =
    libc::O_RDWR | libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC;

/// The SIGSYS handler of the helper's opens of an existing lock file: the first one
/// finds nothing and, right after, the file is there (another locker created it between
/// our open and our create); the others are done as asked.
#[cfg(target_arch = "x86_64")]
extern "C" fn appear_after_open(_: libc::c_int, _: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    use std::sync::atomic::Ordering::SeqCst;
    // SAFETY: as in `replace_then_flock`; openat gets the trapped call's own arguments.
    unsafe {
        let gregs = &mut (*(ctx as *mut libc::ucontext_t)).uc_mcontext.gregs;
        let Some((path, _)) = REPLACE_PATHS.get() else {
            return;
        };
        if REPLACEMENTS.load(SeqCst) == 0 {
            let new = libc::open(
                path.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                0o600,
            );
            if new >= 0 {
                libc::close(new);
                REPLACEMENTS.fetch_add(1, SeqCst);
            }
            gregs[libc::REG_RAX as usize] = -i64::from(libc::ENOENT);
            return;
        }
        // With the kernel's O_LARGEFILE (implied on x86_64 anyway), so the filter lets
        // it through.
        let ret = libc::syscall(
            libc::SYS_openat,
            gregs[libc::REG_RDI as usize],
            gregs[libc::REG_RSI as usize],
            gregs[libc::REG_RDX as usize] | 0o100000,
            gregs[libc::REG_R10 as usize],
        );
        gregs[libc::REG_RAX as usize] = if ret >= 0 {
            ret
        } else {
            -i64::from(*libc::__errno_location())
        };
    }
}

/// Not a test on its own: run by the tests below in a child process, where every
/// `flock(_, LOCK_EX | LOCK_NB)` of this thread goes through [`replace_then_flock`]
/// (modes `once`, `always`), or every open of an existing lock file through
/// [`appear_after_open`] (mode `appear`).
#[cfg(target_arch = "x86_64")]
#[test]
fn replaced_lock_helper() {
    use std::sync::atomic::Ordering::SeqCst;
    let Some(spec) = std::env::var_os(REPLACE_ENV) else {
        return;
    };
    let spec = spec.into_string().unwrap();
    let (mode, path) = spec.split_once(':').unwrap();
    REPLACE_ALWAYS.store(mode == "always", SeqCst);
    REPLACE_PATHS
        .set((
            std::ffi::CString::new(path).unwrap(),
            std::ffi::CString::new(format!("{path}.next")).unwrap(),
        ))
        .unwrap();
    let op = super::bpf;
    // The trapped call, the offset of the argument that picks it out, its value, and
    // the handler.
    let (call, offset, value, handler): (_, u32, libc::c_int, usize) = if mode == "appear" {
        // openat(dirfd, path, flags, mode): flags is the third argument.
        let handler = appear_after_open as *const () as usize;
        (libc::SYS_openat, 32, LOCK_OPEN_FLAGS, handler)
    } else {
        // flock(fd, operation): the second.
        let handler = replace_then_flock as *const () as usize;
        (libc::SYS_flock, 24, libc::LOCK_EX | libc::LOCK_NB, handler)
    };
    let filter = [
        // `struct seccomp_data`: the call's number at offset 0, its arguments from 16
        // on, 8 bytes each (the low word first: x86_64 is little-endian).
        op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0),
        op(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            0,
            3,
            call as u32,
        ),
        op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, offset),
        op(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            0,
            1,
            value as u32,
        ),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, libc::SECCOMP_RET_TRAP),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    // SAFETY: a SIGSYS handler in a process that runs only this test.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = handler;
        action.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut action.sa_mask);
        assert_eq!(
            libc::sigaction(libc::SIGSYS, &action, std::ptr::null_mut()),
            0
        );
    }
    super::install_seccomp(&filter);
    let result = match TargetLock::acquire_file(Path::new(path)) {
        Ok(_lock) => format!(
            "ok held={} ours={}",
            crate::lock::is_held(Path::new(path)),
            fs::read_to_string(path)
                .unwrap()
                .contains(&format!("pid {}\n", std::process::id()))
        ),
        Err(e) => format!("err {e}: {}", std::error::Error::source(&e).unwrap()),
    };
    println!("\nREPLACED {} RESULT {result}", REPLACEMENTS.load(SeqCst));
}

#[cfg(target_arch = "x86_64")]
#[test]
fn a_lock_file_replaced_before_it_was_locked_is_looked_up_again_and_the_new_one_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx.lock");
    let out = run_helper(
        "replaced_lock_helper",
        (REPLACE_ENV, &format!("once:{}", path.display())),
        &[],
    );
    // The file it locked first was no longer the lock: it locked (and wrote its details
    // into) the one the path names.
    assert_eq!(tagged(&out, "REPLACED "), "1 RESULT ok held=true ours=true");
}

#[cfg(target_arch = "x86_64")]
#[test]
fn a_lock_file_replaced_at_every_attempt_gives_up_after_100_with_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx.lock");
    let out = run_helper(
        "replaced_lock_helper",
        (REPLACE_ENV, &format!("always:{}", path.display())),
        &[],
    );
    assert_eq!(
        tagged(&out, "REPLACED "),
        format!(
            "100 RESULT err failed to lock `{}`: it kept being replaced while it was locked",
            path.display()
        )
    );
}

#[cfg(target_arch = "x86_64")]
#[test]
fn a_lock_file_created_by_another_locker_between_our_open_and_create_is_opened_after_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx.lock");
    let out = run_helper(
        "replaced_lock_helper",
        (REPLACE_ENV, &format!("appear:{}", path.display())),
        &[],
    );
    // Not "File exists": it opens the file that is now there, and locks it.
    assert_eq!(tagged(&out, "REPLACED "), "1 RESULT ok held=true ours=true");
}

#[test]
fn a_lock_file_nobody_holds_is_not_reported_held_while_another_one_is() {
    let dir = tempfile::tempdir().unwrap();
    let held = dir.path().join("nginx.pid.lock");
    let free = dir.path().join("other.pid.lock");
    fs::write(&free, "").unwrap();
    let _lock = TargetLock::acquire_file(&held).unwrap();
    assert!(crate::lock::is_held(&held));
    // /proc/locks lists our flock (and maybe others): none of them is on `free`.
    assert!(!crate::lock::is_held(&free));
}

#[test]
fn a_held_lock_is_seen_on_devices_with_a_minor_number_too() {
    // /proc/locks prints `major:minor:inode`: the temp dir's disk may have minor 0 (as
    // /dev/vda does), a tmpfs such as /dev/shm has an anonymous device 0:N.
    let mut minors = Vec::new();
    for parent in [std::env::temp_dir(), "/dev/shm".into()] {
        let Ok(dir) = tempfile::tempdir_in(&parent) else {
            continue;
        };
        let path = dir.path().join("nginx.pid.lock");
        let lock = TargetLock::acquire_file(&path).unwrap();
        let dev = std::os::unix::fs::MetadataExt::dev(&fs::metadata(&path).unwrap());
        minors.push(nix::sys::stat::minor(dev));
        assert!(crate::lock::is_held(&path), "on {}", parent.display());
        drop(lock);
    }
    assert!(
        minors.iter().any(|&m| m != 0),
        "no writable directory on a device with a minor number: {minors:?}"
    );
}

/// Takes and lets go of flocks on files of `dir` until `stop` is set: other processes'
/// locks coming and going, as on a busy server.
fn churn_locks(dir: &Path, tag: usize, stop: &std::sync::atomic::AtomicBool) {
    use std::os::fd::AsFd;
    let files: Vec<fs::File> = (0..80)
        .map(|i| fs::File::create(dir.join(format!("churn-{tag}-{i}"))).unwrap())
        .collect();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        for file in &files {
            assert!(crate::sys::flock_exclusive_nonblocking(file.as_fd()).unwrap());
        }
        for file in &files {
            // SAFETY: flock on a descriptor valid for the borrow.
            assert_eq!(
                unsafe { libc::flock(std::os::fd::AsRawFd::as_raw_fd(file), libc::LOCK_UN) },
                0
            );
        }
    }
}

#[test]
fn a_held_lock_is_seen_while_other_locks_come_and_go() {
    use std::os::fd::AsFd;
    // /proc/locks is rebuilt at each read from a position in the kernel's list: a lock
    // listed before ours that goes meanwhile made ours be skipped (a status that said
    // "no hotreload holds the lock" while an upgrade held it). With more than a page of
    // locks, even whole-page reads skip: the holder named in the file is asked first.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx.pid.lock");
    let lock = TargetLock::acquire_file(&path).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    let missed = std::thread::scope(|scope| {
        let churners: Vec<_> = (0..2)
            .map(|tag| {
                let (dir, stop) = (dir.path(), &stop);
                scope.spawn(move || churn_locks(dir, tag, stop))
            })
            .collect();
        let missed = (0..2000).filter(|_| !crate::lock::is_held(&path)).count();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for churner in churners {
            churner.join().unwrap();
        }
        missed
    });
    assert_eq!(
        missed, 0,
        "a held lock was reported free {missed} times of 2000"
    );
    drop(lock);

    // A holder that has not written its details yet (it writes its pid once it holds
    // the lock), or details naming a process that does not hold it: /proc/locks tells,
    // with the churn over (here in this test, so that no other test's churn runs).
    let file = fs::File::create(&path).unwrap();
    assert!(crate::sys::flock_exclusive_nonblocking(file.as_fd()).unwrap());
    assert!(crate::lock::is_held(&path));
    fs::write(&path, "pid 1\ncommand `hotreload`\n").unwrap();
    assert!(crate::lock::is_held(&path));
    drop(file);
    assert!(!crate::lock::is_held(&path));
}

/// A pid that named a process a moment ago and names none now (reaped).
fn exited_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// Locks `path` through an open file of its own (as a child forked by the holder shares
/// the holder's), with details naming the exited `holder`.
fn held_for_a_gone_holder(path: &Path, holder: u32) -> fs::File {
    use std::os::fd::AsFd;
    fs::write(path, format!("pid {holder}\ncommand `hotreload upgrade`\n")).unwrap();
    let file = fs::File::open(path).unwrap();
    assert!(crate::sys::flock_exclusive_nonblocking(file.as_fd()).unwrap());
    file
}

#[test]
fn a_lock_left_to_a_child_of_a_killed_holder_is_waited_for_until_the_child_lets_go() {
    // An upgrade SIGKILLed right after it forked (its config test): the child shares the
    // lock until it execs. The next upgrade waits for that instead of failing as locked.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx.pid.lock");
    let child_copy = held_for_a_gone_holder(&path, exited_pid());
    let lets_go = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(200));
        drop(child_copy);
    });
    let lock = bounded("TargetLock::acquire_file", {
        let path = path.clone();
        move || {
            TargetLock::acquire_file(&path)
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    });
    lets_go.join().unwrap();
    assert_eq!(lock, Ok(()));

    // One that never lets go is reported, saying the holder is gone.
    let stuck = held_for_a_gone_holder(&path, exited_pid());
    match TargetLock::acquire_file(&path) {
        Err(Error::Locked { holder, .. }) => assert!(
            holder.contains("that process has exited, and a process it started still holds"),
            "{holder}"
        ),
        other => panic!("{other:?}"),
    }
    drop(stuck);
    // A live holder (here this process, through another open file) is just named.
    let live = held_for_a_gone_holder(&path, std::process::id());
    match TargetLock::acquire_file(&path) {
        Err(Error::Locked { holder, .. }) => {
            assert!(!holder.contains("has exited"), "{holder}")
        }
        other => panic!("{other:?}"),
    }
    drop(live);
}
