//! Issue 11, the state-home half: an unprivileged local user (uid 65534, acting through
//! `setpriv`) attacks root's hotreload through the files it used to keep beside the pid
//! file (case 1 planted journal, case 2 the journal's temp, case 8 a planted lock), a
//! journal naming files this swap would not derive (case 2), two servers sharing one
//! executable (case 6), POSIX ACLs on the pid file (case 7), and the leftovers of case 10.
//! Each test checks that the victim (a root file elsewhere, another server, a canary) is
//! untouched, that the target still serves, and that the exit code and message say what
//! happened.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;
use fake_nginx::harness::Instance;
use hotreload_core::swap::{FileIdentity, SwapRecord, Undo};

const NOBODY: u32 = 65534;

fn is_root() -> bool {
    nix::unistd::geteuid().as_raw() == 0
}

/// The server's pid directory made like `/tmp` (world-writable, sticky), reachable by
/// others: what a pid directory shared with less-privileged users looks like. The pid
/// file itself stays root's, which the pid-file guard accepts.
fn share_pid_dir(server: &Server) -> PathBuf {
    let pid_dir = server.inst.pid_file().parent().unwrap().to_path_buf();
    let mut dir = pid_dir.clone();
    // Every ancestor up to /tmp must let others through.
    while let Some(parent) = dir.parent() {
        if dir == Path::new("/tmp") || parent == Path::new("/") {
            break;
        }
        let mode = fs::metadata(&dir).unwrap().mode() & 0o7777;
        fs::set_permissions(&dir, fs::Permissions::from_mode(mode | 0o005)).unwrap();
        dir = parent.to_path_buf();
    }
    fs::set_permissions(&pid_dir, fs::Permissions::from_mode(0o1777)).unwrap();
    pid_dir
}

fn legacy_journal(server: &Server) -> PathBuf {
    PathBuf::from(format!("{}.hotreload-journal", server.pid_file()))
}

/// A root file somewhere else, mode 0600: what an attack would overwrite or replace.
fn victim() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, "root's file\n").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).unwrap();
    (dir, victim)
}

#[track_caller]
fn assert_victim_untouched(victim: &Path, context: &dyn std::fmt::Display) {
    let meta = fs::symlink_metadata(victim).unwrap();
    assert!(
        meta.file_type().is_file(),
        "the victim was replaced{context}"
    );
    assert_eq!(meta.uid(), 0, "{context}");
    assert_eq!(
        fs::read_to_string(victim).unwrap(),
        "root's file\n",
        "the victim was written{context}"
    );
}

/// A journal's text, as hotreload writes it, with `record` as its swap record.
fn journal_text(master: i32, record: &str) -> String {
    let start = hotreload_tests::procs::stat(master).unwrap().start_time;
    format!("hotreload-journal 1\nold-master {master} {start}\nswap-record:\n{record}")
}

/// The journal of the target of `pid_file` in the state home `home`.
fn journal_in(home: &Path, pid_file: &Path) -> PathBuf {
    hotreload_core::Target::new(pid_file)
        .state_dir(home)
        .journal_file()
        .unwrap()
}

/// `args` with `--state-dir home`.
fn with_home(mut args: Vec<String>, home: &Path) -> Vec<String> {
    args.extend(["--state-dir".to_string(), home.display().to_string()]);
    args
}

fn strs(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

fn upgrade_args(pid_file: &str, new: &Path) -> Vec<String> {
    ["upgrade", "--pid-file", pid_file, "--new-binary"]
        .iter()
        .map(|s| s.to_string())
        .chain([new.display().to_string()])
        .collect()
}

/// Case 1: a journal planted beside the pid file by another user names a root file as the
/// binary and the attacker's file as its backup. `rollback` and `commit` refuse it (exit
/// 3, naming it and its owner), `status` reports it, the root file is byte-identical, and
/// the planted journal does not block the next upgrade.
#[test]
fn a_journal_planted_beside_the_pid_file_is_not_acted_on() {
    hotreload_tests::watchdog(|| {
        if !is_root() {
            eprintln!("not root: the attack is on root's hotreload; nothing to test");
            return;
        }
        let server = Server::start(&[]);
        let pid_dir = share_pid_dir(&server);
        let (_keep, victim) = victim();
        let master = server.master_now();
        let bait = pid_dir.join("bait");
        let journal = legacy_journal(&server);
        let text = journal_text(
            master,
            &format!(
                "kind=rename\nbinary={}\nundo=restore-backup\nbackup={}\n",
                victim.display(),
                bait.display()
            ),
        );
        as_nobody_ok(&format!(
            "echo attacker > '{}' && printf '%s' '{text}' > '{}'",
            bait.display(),
            journal.display()
        ));
        for cmd in ["rollback", "commit"] {
            let run = hotreload(&[cmd, "--pid-file", &server.pid_file()]);
            run.expect_code(3)
                .expect_stderr("not acting on upgrade journal")
                .expect_stderr(&journal.display().to_string())
                .expect_stderr("owned by user 65534");
            assert_victim_untouched(&victim, &run);
            assert_eq!(fs::read_to_string(&bait).unwrap(), "attacker\n", "{run}");
            assert_eq!(server.master(), Some(master), "{run}");
            assert!(server.serving().contains("1.0"), "{run}");
        }
        let status = hotreload(&["status", "--pid-file", &server.pid_file()]);
        status
            .expect_stdout(&journal.display().to_string())
            .expect_stdout("is not acted on");
        // Not a way to block upgrades either (case 8).
        let new = server.build("2.0", &[]);
        let run = hotreload(&upgrade_args(&server.pid_file(), &new));
        run.expect_code(0);
        assert!(server.serving().contains("2.0"), "{run}");
        assert_victim_untouched(&victim, &run);
    });
}

/// Case 2: a journal in hotreload's own home (so trusted as a file) whose paths are not
/// the ones this target's swap derives — another executable, another backup, or a backup
/// that is not the file the swap recorded — is refused before anything moves.
#[test]
fn a_journal_naming_files_this_swap_would_not_is_refused() {
    hotreload_tests::watchdog(|| {
        let server = Server::start(&[]);
        let (_keep, victim) = victim();
        let master = server.master_now();
        let exe = sha(&server.installed).unwrap();
        let base = tempfile::tempdir().unwrap();
        let home = base.path().join("home");
        fs::DirBuilder::new().mode(0o700).create(&home).unwrap();
        let journal = journal_in(&home, server.inst.pid_file());
        let backup = server.backup();
        fs::write(&backup, "not the old executable\n").unwrap();
        // Records as the library writes them (whatever its identity format is).
        let record = |binary: &Path, backup: &Path, identity: Option<FileIdentity>| {
            SwapRecord::new(
                "rename",
                binary,
                Undo::RestoreBackup {
                    backup: backup.to_path_buf(),
                    identity,
                },
            )
            .to_text()
        };
        let installed = server.installed.clone();
        let cases = [
            (
                record(&victim, &backup, None),
                "but this target's master runs",
            ),
            (
                record(&installed, &victim, None),
                "but this swap keeps its backup at",
            ),
            (
                // The identity of another file: not the backup this swap made.
                record(
                    &installed,
                    &backup,
                    Some(FileIdentity::of(&victim).unwrap()),
                ),
                "is not the backup this swap made",
            ),
        ];
        for (record, why) in cases {
            fs::write(&journal, journal_text(master, &record)).unwrap();
            let run = hotreload(&with_home(
                strs(&["rollback", "--pid-file", &server.pid_file()]),
                &home,
            ));
            run.expect_code(3)
                .expect_stderr("not acting on upgrade journal")
                .expect_stderr(why);
            assert_victim_untouched(&victim, &run);
            assert_eq!(
                fs::read_to_string(&backup).unwrap(),
                "not the old executable\n",
                "{run}"
            );
            assert_eq!(
                sha(&server.installed).as_deref(),
                Some(exe.as_str()),
                "{run}"
            );
            assert!(journal.exists(), "a refused journal was removed{run}");
            assert_eq!(server.master(), Some(master), "{run}");
            assert!(server.serving().contains("1.0"), "{run}");
        }
        fs::remove_file(&backup).unwrap();
    });
}

/// Case 6: servers A and B run one executable path. A is upgraded and kept (its swap not
/// committed: journal and backup exist); B, started from the installed file, is then asked
/// to upgrade: refused before anything changes, naming A's journal, A's backup
/// byte-identical. A's commit then says "final" with the path holding A's build. And a
/// commit whose installed file was replaced since refuses to call it final.
#[test]
fn two_servers_sharing_a_binary_never_swap_it_at_once() {
    hotreload_tests::watchdog(|| {
        let a = Server::start(&[]);
        let v2 = a.build("2.0", &[]);
        let base = tempfile::tempdir().unwrap();
        let home = base.path().join("home");
        let mut args = upgrade_args(&a.pid_file(), &v2);
        args.push("--keep-old".into());
        let run = hotreload(&with_home(args, &home));
        run.expect_code(0);
        let backup = sha(&a.backup()).expect("A's backup");
        let installed = sha(&a.installed).unwrap();
        assert_eq!(installed, sha(&v2).unwrap(), "{run}");

        // B runs the file now at the path (A's new build).
        let b = Instance::builder(&a.installed)
            .workers(2)
            .timeout(LONG * 2)
            .start()
            .expect("start server B");
        let _watch_b = hotreload_tests::fake::watch(&b);
        let b_master = b.master_pid();
        let v3 = a.build("3.0", &[]);
        let b_pid = b.pid_file().display().to_string();
        let run = hotreload(&with_home(upgrade_args(&b_pid, &v3), &home));
        run.expect_code(3)
            .expect_stderr("an unfinished upgrade of another server swapped this executable")
            .expect_stderr(&journal_in(&home, a.inst.pid_file()).display().to_string());
        assert_eq!(sha(&a.backup()).as_deref(), Some(backup.as_str()), "{run}");
        assert_eq!(
            sha(&a.installed).as_deref(),
            Some(installed.as_str()),
            "{run}"
        );
        assert_eq!(b.pid_from_file(), Some(b_master), "{run}");
        assert!(b.get("/").unwrap().server.contains("2.0"), "{run}");
        assert!(!journal_in(&home, b.pid_file()).exists(), "{run}");

        let run = hotreload(&with_home(
            strs(&["commit", "--pid-file", &a.pid_file()]),
            &home,
        ));
        run.expect_code(0).expect_stdout(&format!(
            "new executable at {} is final",
            a.installed.display()
        ));
        assert_eq!(
            sha(&a.installed).as_deref(),
            Some(installed.as_str()),
            "{run}"
        );
        assert!(!a.backup().exists(), "{run}");
        assert!(a.serving().contains("2.0"), "{run}");
    });
}

/// Case 6, the commit's side: the installed file replaced after the swap (by another
/// upgrade of the same path, say) is not called final; the backup and the journal stay.
#[test]
fn commit_does_not_call_a_replaced_executable_final() {
    hotreload_tests::watchdog(|| {
        let server = Server::start(&[]);
        let v2 = server.build("2.0", &[]);
        let v3 = server.build("3.0", &[]);
        let base = tempfile::tempdir().unwrap();
        let home = base.path().join("home");
        let mut args = upgrade_args(&server.pid_file(), &v2);
        args.push("--keep-old".into());
        hotreload(&with_home(args, &home)).expect_code(0);
        let backup = sha(&server.backup()).unwrap();
        server.install_by_hand(&v3);
        let run = hotreload(&with_home(
            strs(&["commit", "--pid-file", &server.pid_file()]),
            &home,
        ));
        let said = format!("{}{}", run.stdout, run.stderr);
        assert!(
            said.contains("is no longer the file this upgrade installed")
                && said.contains(&server.installed.display().to_string()),
            "{run}"
        );
        assert!(!said.contains("is final"), "{run}");
        assert_eq!(
            sha(&server.backup()).as_deref(),
            Some(backup.as_str()),
            "{run}"
        );
        assert!(journal_in(&home, server.inst.pid_file()).exists(), "{run}");
        assert!(server.serving().contains("2.0"), "{run}");
        fs::remove_file(server.backup()).unwrap();
    });
}

/// Case 7: a POSIX ACL entry giving uid 65534 write on the pid file lets that user aim
/// root's signals at a canary: refused (exit 3, naming the ACL). The same through an ACL
/// on the directory, and a pid file writable by group 0 (no blanket exemption). The
/// canary lives, the server is untouched.
#[test]
fn a_pid_file_others_can_write_through_an_acl_is_refused() {
    hotreload_tests::watchdog(|| {
        if !is_root() {
            eprintln!("not root: the writability rule applies to root only; nothing to test");
            return;
        }
        let server = Server::start(&[]);
        let new = server.build("2.0", &[]);
        let mut canary = Canary::start();
        let master = server.master_now();
        let pid_file = server.inst.pid_file().to_path_buf();
        let pid_dir = pid_file.parent().unwrap().to_path_buf();
        let exe = sha(&server.installed).unwrap();
        let setfacl = |args: &[&str]| {
            let ok = Command::new("setfacl")
                .args(args)
                .status()
                .expect("setfacl (acl)");
            assert!(ok.success(), "setfacl {args:?}");
        };
        let check = |canary: &mut Canary, needle: &str| {
            let run = hotreload(&upgrade_args(&server.pid_file(), &new));
            run.expect_code(3).expect_stderr(needle);
            canary.assert_alive(&run);
            assert_eq!(
                sha(&server.installed).as_deref(),
                Some(exe.as_str()),
                "{run}"
            );
            assert!(procs_alive(master), "{run}");
            assert!(server.serving().contains("1.0"), "{run}");
        };
        let p = pid_file.display().to_string();

        // The file, through an ACL entry: the attacker writes the canary's pid.
        let reachable = share_path_to(&pid_dir);
        setfacl(&["-m", &format!("u:{NOBODY}:rw"), &p]);
        as_nobody_ok(&format!("echo {} > '{p}'", canary.pid()));
        check(&mut canary, "user 65534 (through a POSIX ACL entry)");
        setfacl(&["-b", &p]);
        fs::write(&pid_file, format!("{master}\n")).unwrap();

        // The directory, through an ACL entry.
        setfacl(&[
            "-m",
            &format!("u:{NOBODY}:rwx"),
            &pid_dir.display().to_string(),
        ]);
        check(&mut canary, "user 65534 (through a POSIX ACL entry)");
        setfacl(&["-b", &pid_dir.display().to_string()]);

        // Group write with group 0: its members need not be root.
        let mode = fs::metadata(&pid_file).unwrap().mode() & 0o7777;
        std::os::unix::fs::chown(&pid_file, None, Some(0)).unwrap();
        fs::set_permissions(&pid_file, fs::Permissions::from_mode(mode | 0o020)).unwrap();
        check(&mut canary, "the members of group 0");
        fs::set_permissions(&pid_file, fs::Permissions::from_mode(mode & !0o022)).unwrap();
        drop(reachable);

        // Control: with the ACLs gone the same server is steady.
        assert_eq!(server.status()["phase"], "steady");
    });
}

fn procs_alive(pid: i32) -> bool {
    alive(pid)
}

/// Lets others traverse down to `dir` (the test directories are 0700), restoring the
/// modes when dropped.
fn share_path_to(dir: &Path) -> impl Drop {
    struct Restore(Vec<(PathBuf, u32)>);
    impl Drop for Restore {
        fn drop(&mut self) {
            for (p, mode) in &self.0 {
                let _ = fs::set_permissions(p, fs::Permissions::from_mode(*mode));
            }
        }
    }
    let mut changed = Vec::new();
    let mut d = dir.to_path_buf();
    while d != Path::new("/tmp") && d != Path::new("/") {
        let mode = fs::metadata(&d).unwrap().mode() & 0o7777;
        fs::set_permissions(&d, fs::Permissions::from_mode(mode | 0o005)).unwrap();
        changed.push((d.clone(), mode));
        d = d.parent().unwrap().to_path_buf();
    }
    Restore(changed)
}

/// Case 8 (and case 2 by another user): in a shared pid directory, another user plants
/// the old lock (and holds an flock on it), a garbage journal and a symlink at the
/// journal's temp. None of it is ours any more: the upgrade succeeds, the symlink's
/// target is byte-identical, and that user cannot write in hotreload's home.
#[test]
fn files_planted_beside_the_pid_file_block_nothing() {
    hotreload_tests::watchdog(|| {
        if !is_root() {
            eprintln!("not root: the attack is on root's hotreload; nothing to test");
            return;
        }
        let server = Server::start(&[]);
        share_pid_dir(&server);
        let (_keep, victim) = victim();
        let p = server.pid_file();
        let lock = format!("{p}.hotreload.lock");
        as_nobody_ok(&format!(
            "echo junk > '{p}.hotreload-journal' && ln -s '{}' '{p}.hotreload-journal.tmp' \
             && : > '{lock}'",
            victim.display()
        ));
        // The attacker holds an flock on the old lock file for the whole upgrade: one
        // process (sh, then exec'd sleep) keeps the locked descriptor, and says "held"
        // once it has the lock.
        let mut holder = Command::new("setpriv");
        holder
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .args([
                "sh",
                "-c",
                "exec 9<>\"$0\"; flock 9; echo held; exec sleep 1000",
                &lock,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        let mut holder = KillOnDrop(holder.spawn().expect("start the lock holder"));
        let mut said = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(holder.0.stdout.take().unwrap()),
            &mut said,
        )
        .unwrap();
        assert_eq!(said, "held\n", "the attacker's flock was not taken");
        let new = server.build("2.0", &[]);
        let run = hotreload(&upgrade_args(&p, &new));
        run.expect_code(0);
        assert!(server.serving().contains("2.0"), "{run}");
        assert_victim_untouched(&victim, &run);
        assert_eq!(
            fs::read_to_string(format!("{p}.hotreload-journal")).unwrap(),
            "junk\n",
            "{run}"
        );
        let home = server.journal().parent().unwrap().to_path_buf();
        let out = as_nobody(&format!("echo x > '{}/planted.lock'", home.display()));
        assert!(
            !out.status.success() && !home.join("planted.lock").exists(),
            "another user could write in hotreload's home {}",
            home.display()
        );
    });
}

/// The state home itself: one owned by another user, one others can write, and a symlink
/// are refused (exit 3) naming the directory and the fix, before anything changes; one
/// given with --state-dir is made private and used (nothing is left beside the pid file,
/// and the finished upgrade leaves no lock or journal in it).
#[test]
fn a_state_home_others_could_write_is_refused() {
    hotreload_tests::watchdog(|| {
        let server = Server::start(&[]);
        let new = server.build("2.0", &[]);
        let base = tempfile::tempdir().unwrap();
        let theirs = base.path().join("theirs");
        fs::DirBuilder::new().mode(0o700).create(&theirs).unwrap();
        std::os::unix::fs::chown(&theirs, Some(NOBODY), Some(NOBODY)).unwrap();
        let shared = base.path().join("shared");
        fs::DirBuilder::new().mode(0o700).create(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o770)).unwrap();
        let link = base.path().join("link");
        let private = base.path().join("private");
        std::os::unix::fs::symlink(&private, &link).unwrap();
        let before = server.fingerprint();
        for (dir, why) in [
            (&theirs, "is owned by user 65534"),
            (&shared, "can be written by the members of group"),
            (&link, "is a symbolic link"),
        ] {
            let mut args = upgrade_args(&server.pid_file(), &new);
            args.extend(["--state-dir".to_string(), dir.display().to_string()]);
            let run = hotreload(&args);
            run.expect_code(3)
                .expect_stderr(&dir.display().to_string())
                .expect_stderr(why)
                .expect_stderr("--state-dir");
            assert_eq!(server.fingerprint(), before, "{run}");
            assert!(!private.exists(), "{run}");
        }
        let mut args = upgrade_args(&server.pid_file(), &new);
        args.extend(["--state-dir".to_string(), private.display().to_string()]);
        let run = hotreload(&args);
        run.expect_code(0);
        assert!(server.serving().contains("2.0"), "{run}");
        let entries: Vec<String> = fs::read_dir(&private)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        // Made by hotreload, private; the upgrade is over, so its lock and journal are gone.
        let meta = fs::metadata(&private).unwrap();
        assert_eq!(
            (meta.mode() & 0o777, meta.uid()),
            (0o700, nix::unistd::geteuid().as_raw())
        );
        assert!(entries.is_empty(), "{entries:?}{run}");
        let beside: Vec<_> = fs::read_dir(server.inst.pid_file().parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("hotreload"))
            .collect();
        assert!(beside.is_empty(), "{beside:?}{run}");
    });
}

/// Leftovers (case 10): a mistyped pid file leaves no lock (nor a state home); a full-size
/// staged copy that a killed hotreload left beside the binary is removed by the rollback
/// (only ours: another user's file and a symlink of that name stay); a journal write that
/// fails with ENOSPC leaves no empty temp.
#[test]
fn leftovers_are_removed_and_none_are_made() {
    hotreload_tests::watchdog(|| {
        let server = Server::start(&[]);
        let new = server.build("2.0", &[]);
        let base = tempfile::tempdir().unwrap();
        let home = base.path().join("home");
        let state = |args: &mut Vec<String>| {
            args.extend(["--state-dir".to_string(), home.display().to_string()]);
        };

        // A mistyped pid file.
        let typo = format!("{}.typo", server.pid_file());
        let mut args = upgrade_args(&typo, &new);
        state(&mut args);
        let run = hotreload(&args);
        run.expect_code(3).expect_stderr(&typo);
        assert!(
            !home.exists(),
            "a lock was made for a mistyped pid file{run}"
        );
        assert!(
            !Path::new(&format!("{typo}.hotreload.lock")).exists(),
            "{run}"
        );

        // Staged copies of a dead hotreload, planted after the swap.
        let mut args = upgrade_args(&server.pid_file(), &new);
        state(&mut args);
        args.push("--keep-old".into());
        hotreload(&args).expect_code(0);
        let dead = {
            let mut c = Command::new("true").spawn().unwrap();
            let pid = c.id();
            c.wait().unwrap();
            pid
        };
        let sbin = server.installed.parent().unwrap();
        let staged = |n: u32| sbin.join(format!(".nginx.hotreload-staged.{dead}.{n}"));
        fs::copy(&new, staged(0)).unwrap();
        fs::copy(&new, staged(1)).unwrap();
        std::os::unix::fs::chown(staged(1), Some(NOBODY), Some(NOBODY)).unwrap();
        let (_keep, victim) = victim();
        std::os::unix::fs::symlink(&victim, staged(2)).unwrap();
        let run = hotreload(&[
            "rollback",
            "--pid-file",
            &server.pid_file(),
            "--state-dir",
            &home.display().to_string(),
        ]);
        run.expect_code(0);
        assert!(server.serving().contains("1.0"), "{run}");
        assert!(
            !staged(0).exists(),
            "the dead hotreload's staged copy stayed{run}"
        );
        assert!(staged(1).exists(), "another user's file was removed{run}");
        assert!(fs::symlink_metadata(staged(2)).is_ok(), "{run}");
        assert_victim_untouched(&victim, &run);
        fs::remove_file(staged(1)).unwrap();
        fs::remove_file(staged(2)).unwrap();

        // ENOSPC: a state home on a file system with room for the lock only.
        // In CI (as root) this part must run: a missing mount is a failure there.
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
        if !is_root() {
            assert!(!in_ci, "CI runs as root: the ENOSPC part must run");
            eprintln!("not root: no tmpfs to fill; the ENOSPC part is not run");
            return;
        }
        let full = base.path().join("full");
        fs::create_dir(&full).unwrap();
        let mounted = Command::new("mount")
            // Room for the two locks' pages (target and binary), none for the journal.
            .args(["-t", "tmpfs", "-o", "size=8k,mode=0700", "tmpfs"])
            .arg(&full)
            .status()
            .is_ok_and(|s| s.success());
        if !mounted {
            assert!(
                !in_ci,
                "cannot mount a tmpfs in CI: the ENOSPC part must run"
            );
            eprintln!("cannot mount a tmpfs here: the ENOSPC part is not run");
            return;
        }
        struct Unmount(PathBuf);
        impl Drop for Unmount {
            fn drop(&mut self) {
                let _ = Command::new("umount").arg(&self.0).status();
            }
        }
        let _unmount = Unmount(full.clone());
        let v3 = server.build("3.0", &[]);
        let before = sha(&server.installed).unwrap();
        let run = hotreload(&[
            "upgrade",
            "--pid-file",
            &server.pid_file(),
            "--new-binary",
            &v3.display().to_string(),
            "--state-dir",
            &full.display().to_string(),
        ]);
        run.expect_code(3)
            .expect_stderr("failed to write upgrade journal")
            .expect_stderr("No space left on device");
        let left: Vec<String> = fs::read_dir(&full)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("journal"))
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}{run}");
        assert_eq!(
            sha(&server.installed).as_deref(),
            Some(before.as_str()),
            "{run}"
        );
        assert!(server.serving().contains("1.0"), "{run}");
    });
}
