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

/// Makes each listed system call return its errno (0: succeed without doing anything)
/// in the calling thread from now on (a seccomp filter is per thread and inherited by the
/// threads it starts; the architecture is not checked: the filter only has to hold for
/// this test's own calls). Root may give a file any owner or mode and the kernel has the
/// calls these tests do without: this is how a refusal, or a change the kernel silently
/// drops, is produced.
pub(crate) fn filter_in_this_thread(rules: &[(libc::c_long, i32)]) {
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    // The syscall number is at offset 0 of `struct seccomp_data`.
    let mut filter = vec![op(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0, 0, 0)];
    for &(nr, errno) in rules {
        filter.push(op(
            libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
            0,
            1,
            nr as u32,
        ));
        filter.push(op(
            libc::BPF_RET | libc::BPF_K,
            0,
            0,
            libc::SECCOMP_RET_ERRNO | (errno as u32 & 0xffff),
        ));
    }
    filter.push(op(
        libc::BPF_RET | libc::BPF_K,
        0,
        0,
        libc::SECCOMP_RET_ALLOW,
    ));
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

/// Runs the test `name` of this test binary alone in a child process with `env` set
/// (the helper tests return at once without it), and returns what follows `marker` on
/// the line the helper printed it on. The child may install filters or handlers that
/// must not reach the other tests.
pub(crate) fn helper_says(name: &str, env: (&str, &str), marker: &str) -> String {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(env.0, env.1)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
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
