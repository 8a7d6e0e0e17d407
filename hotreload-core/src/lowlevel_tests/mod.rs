//! Tests of the system layer against real processes and files: they need the crate's
//! private items (`/proc` snapshots, pid-file parsing, digests), so they live inside it.
//! Each file was an integration test before those items became crate-private.

mod discovery;
mod journal;
mod journal_checks;
mod lock_edges;
mod model_basics;
mod model_roles;
mod ops_basics;
mod pidfile;
mod pidfile_edges;
mod process;
mod process_edges;
mod procfs;
mod swap;
mod swap_checks;
mod swap_edges;
mod wait_edges;

use std::io::{BufRead, BufReader};
use std::process::Child;

/// Reads the child's first line from its piped stdout, which must be "ready": right after
/// `spawn` returns, the child may still be finishing its exec (empty cmdline, old comm).
fn read_ready(child: &mut Child) {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
}

/// Makes `syscall` fail with `errno` in the calling thread from now on.
pub(crate) fn refuse_in_this_thread(syscall: libc::c_long, errno: i32) {
    filter_in_this_thread(&[(syscall, errno)]);
}

/// One instruction of a seccomp (classic BPF) program.
pub(crate) fn bpf(code: u32, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    }
}

/// Installs the seccomp program `filter` on the calling thread (and the threads it starts
/// from now on).
pub(crate) fn install_seccomp(filter: &[libc::sock_filter]) {
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut libc::sock_filter,
    };
    // SAFETY: prctl(2) with the documented arguments; `prog` and `filter` outlive the
    // call (the kernel copies the program).
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &prog as *const libc::sock_fprog,
            ),
            0,
            "seccomp: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// Makes each listed system call return its errno (0: succeed without doing anything)
/// in the calling thread from now on (a seccomp filter is per thread and inherited by the
/// threads it starts; the architecture is not checked: the filter only has to hold for
/// this test's own calls). Root may give a file any owner or mode and the kernel has the
/// calls these tests do without: this is how a refusal, or a change the kernel silently
/// drops, is produced.
pub(crate) fn filter_in_this_thread(rules: &[(libc::c_long, i32)]) {
    // The syscall number is at offset 0 of `struct seccomp_data`.
    let mut filter = vec![bpf(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0)];
    for &(nr, errno) in rules {
        filter.push(bpf(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            0,
            1,
            nr as u32,
        ));
        filter.push(bpf(
            libc::BPF_RET | libc::BPF_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | (errno as u32 & 0xffff),
        ));
    }
    filter.push(bpf(
        libc::BPF_RET | libc::BPF_K,
        0,
        0,
        libc::SECCOMP_RET_ALLOW,
    ));
    install_seccomp(&filter);
}

/// Runs the test `name` of this test binary alone in a child process with `env` set (the
/// helper tests return at once without it) and the extra libtest arguments `extra`, and
/// returns its stdout; the child is killed past 60 s. The child may install filters or
/// handlers that must not reach the other tests.
pub(crate) fn helper_output(name: &str, env: (&str, &str), extra: &[&str]) -> String {
    use std::io::Read;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .args(extra)
        .env(env.0, env.1)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        let _ = tx.send(out);
    });
    let out = rx.recv_timeout(std::time::Duration::from_secs(60));
    if out.is_err() {
        // SAFETY: kill(2) on our own child, not yet waited for (so not a reused pid).
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let status = child.wait().unwrap();
    let out = out.unwrap_or_else(|_| panic!("{name} did not finish within 60 s (does it loop?)"));
    let mut err = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut err);
    assert!(status.success(), "{name}: {status}\n{out}{err}");
    out
}

/// [`helper_output`] without extra arguments: what follows `marker` on the line the
/// helper printed it on.
pub(crate) fn helper_says(name: &str, env: (&str, &str), marker: &str) -> String {
    let stdout = helper_output(name, env, &[]);
    stdout
        .lines()
        .find_map(|l| l.split_once(marker).map(|(_, rest)| rest.to_string()))
        .unwrap_or_else(|| panic!("no {marker:?} line from {name}:\n{stdout}"))
}

/// Writes `content` at `path` as an executable (mode 0755).
pub(crate) fn write_exe(path: &std::path::Path, content: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}
