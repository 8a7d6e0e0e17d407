//! Issue 12, item 9 (the swap's part): a symlinked install with a file swap is refused
//! by the preflight — before the config test and the swap, and in a dry run — not after
//! them; `--swap symlink` keeps a relative link relative; a tiny script as the new
//! binary is "not an ELF executable".

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::PathBuf;

use crate::common::*;

/// fake-nginx 1.0 at `<dir>/releases/1.0/nginx`, started through the symlink
/// `<dir>/sbin/nginx -> ../releases/1.0/nginx` (the master's argv[0] is the link).
fn start_through_symlink() -> (Server, PathBuf) {
    let server = Server::start_prepared(
        |installed| {
            let release = installed.parent().unwrap().join("../releases/1.0/nginx");
            fs::create_dir_all(release.parent().unwrap()).unwrap();
            variant_at(&release, "1.0", &[]);
            symlink("../releases/1.0/nginx", installed).unwrap();
        },
        |b| b,
    );
    let release2 = server.dir.path().join("releases/2.0/nginx");
    fs::create_dir_all(release2.parent().unwrap()).unwrap();
    variant_at(&release2, "2.0", &[]);
    (server, release2)
}

#[test]
fn a_symlinked_install_is_refused_by_the_preflight_for_file_swaps() {
    hotreload_tests::watchdog(|| {
        let (server, new) = start_through_symlink();
        let before = server.fingerprint();
        for extra in [
            &["--dry-run"][..],
            &[][..],
            &["--swap", "copy"][..],
            &["--swap", "copy", "--dry-run"][..],
        ] {
            let run = hotreload(&upgrade_args(&server, &new, extra));
            run.expect_code(3).expect_stderr("symbolic link");
            assert_eq!(run.result()["outcome"], "refused", "{run}");
            let events = run.events();
            let failed_check = events.iter().any(|e| {
                e["type"] == "check"
                    && e["data"]["name"] == "swap-layout"
                    && e["data"]["ok"] == false
            });
            assert!(failed_check, "no failed swap-layout check{run}");
            let started = |step: &str| events.iter().any(|e| is_step(e, "step_started", step));
            assert!(!started("config-test"), "the config test ran{run}");
            assert!(!started("swap"), "the swap ran{run}");
            assert!(run.signals().is_empty(), "signals sent{run}");
            assert_eq!(server.fingerprint(), before, "the server changed{run}");
            assert_eq!(
                fs::read_link(&server.installed).unwrap(),
                PathBuf::from("../releases/1.0/nginx"),
                "{run}"
            );
            assert!(!server.journal().exists(), "{run}");
        }
    });
}

#[test]
fn the_symlink_swap_keeps_a_relative_link_relative() {
    hotreload_tests::watchdog(|| {
        let (server, new) = start_through_symlink();
        let run = hotreload(&upgrade_args(&server, &new, &["--swap", "symlink"]));
        run.expect_code(0);
        assert_eq!(
            fs::read_link(&server.installed).unwrap(),
            PathBuf::from("../releases/2.0/nginx"),
            "{run}"
        );
        assert!(server.serving().contains("2.0"), "{run}");
        assert_eq!(server.settled_phase(), "steady", "{run}");
    });
}

#[test]
fn a_tiny_script_is_not_an_elf_executable() {
    hotreload_tests::watchdog(|| {
        let server = Server::start(&[]);
        let before = server.fingerprint();
        let script = server.dir.path().join("tiny.sh");
        fs::write(&script, "#!/bin/sh\n").unwrap();
        fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
        let run = hotreload(&upgrade_args(&server, &script, &[]));
        run.expect_code(3).expect_stderr("not an ELF executable");
        assert!(
            !run.stderr.contains("fill whole buffer"),
            "a read error instead of the reason{run}"
        );
        assert!(run.signals().is_empty(), "signals sent{run}");
        assert_eq!(server.fingerprint(), before, "the server changed{run}");
    });
}
