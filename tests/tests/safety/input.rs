//! Issue 6, item 4: hostile and broken input the other suites do not cover yet. Each
//! must be refused with a clear error naming the problem, exit 3, and send no signal to
//! anything: a canary (`sleep`, which USR2/HUP/QUIT/TERM would kill) stays alive, and the
//! bystander server keeps its pids, pid file and executable.
//!
//! Where a bad pid file could aim a signal, it is aimed at something that would show it:
//! the running server's master, or the canary (in a process group of its own, so that a
//! `-N` taken as "process group N" would kill it).

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;
use hotreload_tests::procs;

/// What must not change when hotreload refuses.
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint {
    pid_file: Option<String>,
    oldbin: bool,
    master: Option<i32>,
    workers: Vec<i32>,
    exe: Option<String>,
}

fn fingerprint(server: &Server) -> Fingerprint {
    let master = server.master();
    Fingerprint {
        pid_file: fs::read_to_string(server.inst.pid_file()).ok(),
        oldbin: server.inst.oldbin_file().exists(),
        master,
        workers: master.map(children).unwrap_or_default(),
        exe: sha(&server.installed),
    }
}

/// A canary in a process group of its own (its pid is its group id).
fn group_canary() -> Canary {
    Canary(KillOnDrop(
        Command::new("sleep")
            .arg("1000")
            .stdin(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start sleep canary"),
    ))
}

/// Runs `upgrade` and `rollback` (human and JSON) against `pid_file`: each must exit 3
/// naming `needles` on stderr and in `result.error`, and change nothing.
fn assert_refused(
    server: &Server,
    canary: &mut Canary,
    pid_file: &Path,
    needles: &[&str],
    new: &Path,
) {
    let before = fingerprint(server);
    let p = pid_file.display().to_string();
    let n = new.display().to_string();
    for args in [
        vec!["upgrade", "--pid-file", &p, "--new-binary", &n],
        vec!["upgrade", "--pid-file", &p, "--new-binary", &n, "--json"],
        vec!["spawn", "--pid-file", &p, "--json"],
        vec!["rollback", "--pid-file", &p],
    ] {
        let run = hotreload(&args);
        run.expect_code(3);
        for needle in needles {
            run.expect_stderr(needle);
        }
        if args.contains(&"--json") {
            let result = run.result();
            assert_eq!(result["outcome"], "refused", "{run}");
            for needle in needles {
                assert!(
                    result["error"].as_str().unwrap_or("").contains(needle),
                    "result.error lacks {needle:?}{run}"
                );
            }
            assert!(run.signals().is_empty(), "signals sent{run}");
        }
        canary.assert_alive(&run);
        assert_eq!(fingerprint(server), before, "the server changed{run}");
    }
}

fn write_pid_file(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, content).unwrap();
    path
}

#[test]
fn bad_pid_file_contents_are_refused_without_a_signal() {
    hotreload_tests::watchdog(|| {
        let server = Server::start(&[]);
        let new = server.build("2.0", &[]);
        let mut canary = group_canary();
        let master = server.master().unwrap();
        let c = canary.pid();
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let pid_max: u64 = fs::read_to_string("/proc/sys/kernel/pid_max")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let cases: Vec<(String, Vec<String>)> = vec![
            ("   \n".into(), vec!["white space".into()]),
            (
                format!(" {master}\n"),
                vec!["not a decimal process id".into()],
            ),
            (
                format!("{master} \n"),
                vec!["not a decimal process id".into()],
            ),
            (
                format!("{master}\r\n"),
                vec!["not a decimal process id".into()],
            ),
            (format!("-{c}\n"), vec![format!("-{c}"), "no sign".into()]),
            ("-5\n".into(), vec!["-5".into(), "no sign".into()]),
            (
                format!("+{master}\n"),
                vec![format!("+{master}"), "no sign".into()],
            ),
            (format!("{pid_max}\n"), vec!["pid_max".into()]),
            (format!("{}\n", pid_max + 1), vec!["pid_max".into()]),
            ("99999999999999999999999\n".into(), vec!["pid_max".into()]),
            (
                format!("{master}\n{c}\n"),
                vec!["more than one line".into()],
            ),
            (format!("{master}\n\n"), vec!["more than one line".into()]),
        ];
        for (i, (content, needles)) in cases.iter().enumerate() {
            let path = write_pid_file(d, &format!("case{i}.pid"), content);
            let mut needles: Vec<&str> = needles.iter().map(String::as_str).collect();
            let shown = path.display().to_string();
            needles.push(&shown);
            assert_refused(&server, &mut canary, &path, &needles, &new);
        }
    });
}

#[test]
fn symlinked_pid_file_is_refused_even_to_the_real_one() {
    hotreload_tests::watchdog(|| {
        let server = Server::start(&[]);
        let new = server.build("2.0", &[]);
        let mut canary = Canary::start();
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("nginx.pid");
        std::os::unix::fs::symlink(server.inst.pid_file(), &link).unwrap();
        let shown = link.display().to_string();
        assert_refused(
            &server,
            &mut canary,
            &link,
            &[&shown, "symbolic link"],
            &new,
        );
    });
}

#[test]
fn pid_of_a_dead_process_or_a_zombie_is_refused() {
    hotreload_tests::watchdog(|| {
        let server = Server::start(&[]);
        let new = server.build("2.0", &[]);
        let mut canary = Canary::start();
        let dir = tempfile::tempdir().unwrap();

        // A process that ran and was reaped: its pid names nothing.
        let mut gone = Command::new("true").spawn().unwrap();
        let gone_pid = gone.id() as i32;
        gone.wait().unwrap();
        let path = write_pid_file(dir.path(), "dead.pid", &format!("{gone_pid}\n"));
        assert_refused(&server, &mut canary, &path, &[&gone_pid.to_string()], &new);

        // A zombie: our child, exited, never reaped (until the guard drops).
        let zombie = KillOnDrop(Command::new("true").spawn().unwrap());
        let z = zombie.pid();
        wait_until(
            "the child to become a zombie",
            || procs::stat(z).map(|s| s.state) == Some('Z'),
            String::new,
        );
        let path = write_pid_file(dir.path(), "zombie.pid", &format!("{z}\n"));
        assert_refused(&server, &mut canary, &path, &[&z.to_string()], &new);
        assert_eq!(procs::stat(z).map(|s| s.state), Some('Z'));
    });
}

/// A process that looks like an nginx master (its title says so) but has no USR2
/// handler: USR2 would kill it. The preflight must notice before signalling.
#[test]
fn pid_of_a_master_lookalike_that_does_not_catch_usr2_is_refused() {
    hotreload_tests::watchdog(|| {
        let server = Server::start(&[]);
        let new = server.build("2.0", &[]);
        let lookalike = KillOnDrop(
            Command::new("sleep")
                .arg0(format!(
                    "nginx: master process {}",
                    server.installed.display()
                ))
                .arg("1000")
                .stdin(Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap(),
        );
        let mut canary = Canary(lookalike);
        let dir = tempfile::tempdir().unwrap();
        let path = write_pid_file(dir.path(), "lookalike.pid", &format!("{}\n", canary.pid()));
        let pid = canary.pid().to_string();
        assert_refused(&server, &mut canary, &path, &[&pid], &new);
    });
}

/// A pid reused since discovery cannot be forced deterministically; what protects
/// against it is that every signal goes through a handle pinned (start time, pidfd) at
/// discovery. Check the handle: a wrong start time is refused as "replaced", and a
/// handle whose process has exited and been reaped refuses to signal (a pidfd never
/// reaches a successor with the same pid).
#[test]
fn pinned_handle_refuses_a_replaced_or_reaped_process() {
    hotreload_tests::watchdog(|| {
        use hotreload_core::{Error, Pid, ProcessHandle, Signal};
        let mut canary = Canary::start();
        let pid = Pid::new(i64::from(canary.pid())).unwrap();
        let handle = ProcessHandle::open(pid).expect("open the canary");
        match ProcessHandle::open_pinned(pid, handle.start_time() + 1) {
            Err(e @ Error::ProcessReplaced { .. }) => {
                assert!(e.to_string().contains(&pid.to_string()), "{e}")
            }
            other => panic!("a wrong start time was not refused: {other:?}"),
        }
        canary.assert_alive(&"after open_pinned with a wrong start time");

        let mut victim = Command::new("sleep").arg("1000").spawn().unwrap();
        let vpid = Pid::new(i64::from(victim.id())).unwrap();
        let vhandle = ProcessHandle::open(vpid).unwrap();
        victim.kill().unwrap();
        victim.wait().unwrap();
        assert!(vhandle.has_exited());
        let err = vhandle
            .signal(Signal::Usr2)
            .expect_err("signalled a reaped process");
        assert!(err.to_string().contains(&vpid.to_string()), "{err}");
    });
}

/// New executables that must be refused before anything changes, with the reason.
#[test]
fn bad_new_binaries_are_refused_naming_the_problem() {
    hotreload_tests::watchdog(|| {
        let server = Server::start(&[]);
        let mut canary = Canary::start();
        let before = fingerprint(&server);
        let builds = server.dir.path().join("bad");
        fs::create_dir_all(&builds).unwrap();

        // A directory.
        let directory = builds.join("a-directory");
        fs::create_dir(&directory).unwrap();
        fs::set_permissions(&directory, fs::Permissions::from_mode(0o755)).unwrap();
        // An ELF executable for another machine: fake-nginx with e_machine = AArch64 (183).
        let aarch64 = builds.join("nginx-aarch64");
        let mut bytes = fs::read(&server.installed).unwrap();
        bytes[18..20].copy_from_slice(&183u16.to_le_bytes());
        fs::write(&aarch64, &bytes).unwrap();
        fs::set_permissions(&aarch64, fs::Permissions::from_mode(0o755)).unwrap();
        // An executable shell script (it would run, but it is not a server build).
        let script = builds.join("nginx.sh");
        fs::write(&script, "#!/bin/sh\nexec /bin/true\n").unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        // A byte-identical copy of the running executable, and the running file itself.
        let copy = builds.join("nginx-copy");
        fs::copy(&server.installed, &copy).unwrap();

        // The last two are the build that runs: not refused but unchanged (issue 12.6/13):
        // success, and nothing done.
        let cases: Vec<(&PathBuf, &[&str], bool)> = vec![
            (&directory, &["not a regular file"], false),
            (&aarch64, &["AArch64", "x86-64"], false),
            (&script, &["not an ELF executable"], false),
            (&copy, &["identical"], true),
            (&server.installed, &["very file"], true),
        ];
        for (new, needles, same_build) in cases {
            let shown = new.display().to_string();
            let run = hotreload(&[
                "upgrade",
                "--pid-file",
                &server.pid_file(),
                "--new-binary",
                &shown,
                "--json",
            ]);
            if same_build {
                run.expect_code(0);
                for needle in needles {
                    assert!(
                        run.stdout.contains(&shown) && run.stdout.contains(needle),
                        "stdout lacks {shown:?} or {needle:?}{run}"
                    );
                }
                assert_eq!(run.result()["outcome"], "unchanged", "{run}");
                assert_eq!(run.result()["changed"], false, "{run}");
            } else {
                run.expect_code(3).expect_stderr(&shown);
                for needle in needles {
                    run.expect_stderr(needle);
                }
                assert_eq!(run.result()["outcome"], "refused", "{run}");
            }
            assert!(run.signals().is_empty(), "signals sent{run}");
            canary.assert_alive(&run);
            assert_eq!(fingerprint(&server), before, "the server changed{run}");
            assert!(
                !server.backup().exists() && !server.journal().exists(),
                "{run}"
            );
        }
        assert!(server.serving().contains("1.0"));
    });
}

/// As root, a pid file another user could write (directly, through its directory, or as
/// its owner) could aim root's signals at any process: refused.
#[test]
fn pid_file_writable_by_another_user_is_refused_as_root() {
    hotreload_tests::watchdog(|| {
        if nix::unistd::geteuid().as_raw() != 0 {
            eprintln!("not root: the writability rule applies to root only; nothing to test");
            return;
        }
        let server = Server::start(&[]);
        let new = server.build("2.0", &[]);
        let mut canary = Canary::start();
        let master = server.master().unwrap();
        let content = format!("{master}\n");

        // World-writable file.
        let dir = tempfile::tempdir().unwrap();
        let path = write_pid_file(dir.path(), "world.pid", &content);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o666)).unwrap();
        assert_refused(&server, &mut canary, &path, &["every user"], &new);

        // Group-writable file of a non-root group.
        let path = write_pid_file(dir.path(), "group.pid", &content);
        std::os::unix::fs::chown(&path, None, Some(65534)).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o664)).unwrap();
        assert_refused(&server, &mut canary, &path, &["group 65534"], &new);

        // Owned by another user (nobody), naming root's server.
        let path = write_pid_file(dir.path(), "nobody.pid", &content);
        std::os::unix::fs::chown(&path, Some(65534), None).unwrap();
        assert_refused(&server, &mut canary, &path, &["user 65534"], &new);

        // A root-owned 0644 file in a directory everyone can write (not sticky).
        let open_dir = tempfile::tempdir().unwrap();
        fs::set_permissions(open_dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let path = write_pid_file(open_dir.path(), "nginx.pid", &content);
        assert_refused(&server, &mut canary, &path, &["every user"], &new);

        // A directory owned by another user.
        let their_dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::chown(their_dir.path(), Some(65534), None).unwrap();
        let path = write_pid_file(their_dir.path(), "nginx.pid", &content);
        assert_refused(&server, &mut canary, &path, &["user 65534"], &new);

        // Control: the same content in a root-only file is accepted (dry run).
        let ok_dir = tempfile::tempdir().unwrap();
        let path = write_pid_file(ok_dir.path(), "nginx.pid", &content);
        let status = hotreload(&[
            "status",
            "--pid-file",
            &path.display().to_string(),
            "--json",
        ]);
        let status = status.status_json();
        assert_eq!(status["phase"], "steady", "{status}");
    });
}

/// The journal is staged at `<journal>.tmp`: a symlink planted there (or where it was before
/// the state home, beside the pid file) must not make root write through it (issue 11,
/// case 2). The upgrade goes on, with a temp of its own, and the link's target is untouched.
#[test]
fn a_symlink_planted_at_the_journal_temp_is_not_written_through() {
    hotreload_tests::watchdog(|| {
        let server = Server::start(&[]);
        let new = server.build("2.0", &[]);
        let victim_dir = tempfile::tempdir().unwrap();
        let victim = victim_dir.path().join("victim");
        fs::write(&victim, "root's file\n").unwrap();
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
        // Where the journal's temp is now (the state home, which only root can write)
        // and where it was (beside the pid file, where others may write).
        let journal = server.journal();
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(journal.parent().unwrap())
            .unwrap();
        for journal in [
            journal,
            PathBuf::from(format!("{}.hotreload-journal", server.pid_file())),
        ] {
            let mut temp = journal.into_os_string();
            temp.push(".tmp");
            std::os::unix::fs::symlink(&victim, PathBuf::from(temp)).unwrap();
        }

        let run = hotreload(&upgrade_args(&server, &new, &[]));
        run.expect_code(0);
        assert_eq!(
            fs::read_to_string(&victim).unwrap(),
            "root's file\n",
            "the journal was written through the planted link{run}"
        );
        assert!(
            fs::symlink_metadata(&victim).unwrap().file_type().is_file(),
            "{run}"
        );
        assert!(server.serving().contains("2.0"), "{run}");
    });
}
