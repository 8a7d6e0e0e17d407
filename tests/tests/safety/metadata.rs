//! Issue 12, item 5: the swap keeps the installed executable's metadata. A nginx given
//! `setcap cap_net_bind_service=+ep`, an ACL, a `user.*` attribute and the set-user-id
//! bit still has them after an upgrade (rename and copy swaps) and after a rollback; when
//! they cannot be kept (here: hotreload without CAP_SETFCAP), the upgrade is refused
//! before anything changes, unless `--allow-metadata-loss` says to go on, which names
//! what was lost.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::common::*;
use hotreload_tests::run::hotreload_under;

/// Runs a setup tool, which must succeed.
#[track_caller]
fn tool(program: &str, args: &[&str], path: &Path) {
    let out = Command::new(program)
        .args(args)
        .arg(path)
        .output()
        .unwrap_or_else(|e| panic!("run {program} (apt-get install libcap2-bin acl attr): {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A tool's report on `path` (`getcap`, `getfacl`, `getfattr`).
fn report(program: &str, args: &[&str], path: &Path) -> String {
    Command::new(program)
        .args(args)
        .arg(path)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

/// Gives `path` what a packaged, hardened nginx may carry.
fn decorate(path: &Path) {
    fs::set_permissions(path, fs::Permissions::from_mode(0o4755)).unwrap();
    tool("setfacl", &["-m", "u:4321:rx"], path);
    tool(
        "setfattr",
        &["-n", "user.origin", "-v", "distro-package"],
        path,
    );
    // Last: nothing after it may write the file or change its owner.
    tool("setcap", &["cap_net_bind_service=+ep"], path);
}

/// What of [`decorate`] is missing at `path`, for an assertion.
fn missing(path: &Path) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if !report("getcap", &[], path).contains("cap_net_bind_service") {
        missing.push("capability cap_net_bind_service");
    }
    if !report("getfacl", &["--absolute-names", "-p"], path).contains("user:4321:r-x") {
        missing.push("ACL user:4321:r-x");
    }
    if !report("getfattr", &["--absolute-names", "-n", "user.origin"], path)
        .contains("distro-package")
    {
        missing.push("user.origin");
    }
    if fs::metadata(path).unwrap().permissions().mode() & 0o4000 == 0 {
        missing.push("set-user-id bit");
    }
    missing
}

#[test]
fn capabilities_acls_xattrs_and_setuid_survive_upgrade_and_rollback() {
    hotreload_tests::watchdog(|| {
        let server = Server::start(&[]);
        let new = server.build("2.0", &[]);
        let old_sha = sha(&server.installed).unwrap();
        decorate(&server.installed);
        assert!(missing(&server.installed).is_empty(), "setup");
        assert!(!missing(&new).is_empty(), "the new build starts bare");
        // rename keeps the old file as the backup; copy makes a copy of it, which must
        // carry the attributes too.
        for swap in ["rename", "copy"] {
            let run = hotreload(&upgrade_args(
                &server,
                &new,
                &["--swap", swap, "--keep-old"],
            ));
            run.expect_code(0);
            assert_eq!(
                missing(&server.installed),
                Vec::<&str>::new(),
                "lost by the {swap} swap{run}"
            );
            assert!(server.serving().contains("2.0"), "{run}");
            let back = hotreload(&["rollback", "--pid-file", &server.pid_file()]);
            back.expect_code(0);
            let ctx = format!("{run}{back}");
            server.assert_healthy_steady("1.0", &old_sha, &ctx);
            assert_eq!(
                missing(&server.installed),
                Vec::<&str>::new(),
                "lost by the rollback of the {swap} swap{ctx}"
            );
        }
        let run = hotreload(&[
            "upgrade",
            "--pid-file",
            &server.pid_file(),
            "--new-binary",
            &new.display().to_string(),
        ]);
        run.expect_code(0);
        server.assert_healthy_steady("2.0", &sha(&new).unwrap(), &run);
        assert_eq!(missing(&server.installed), Vec::<&str>::new(), "{run}");
    });
}

#[test]
fn metadata_that_cannot_be_kept_is_refused_unless_allowed() {
    hotreload_tests::watchdog(|| {
        let server = Server::start(&[]);
        let new = server.build("2.0", &[]);
        tool("setcap", &["cap_net_bind_service=+ep"], &server.installed);
        // Root without CAP_SETFCAP may not set a file capability.
        let wrapper = server.dir.path().join("without-setfcap");
        fs::write(
            &wrapper,
            "#!/bin/sh\nexec setpriv --bounding-set -setfcap \"$@\"\n",
        )
        .unwrap();
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
        let before = server.fingerprint();
        let args = |extra: &[&str]| upgrade_args(&server, &new, extra);
        let run = hotreload_under(&wrapper, &args(&[]));
        run.expect_code(3)
            .expect_stderr("security.capability")
            .expect_stderr("--allow-metadata-loss");
        assert_eq!(run.result()["outcome"], "refused", "{run}");
        assert!(run.signals().is_empty(), "signals sent{run}");
        assert_eq!(server.fingerprint(), before, "the server changed{run}");
        assert!(
            report("getcap", &[], &server.installed).contains("cap_net_bind_service"),
            "the installed file changed{run}"
        );
        assert!(
            !server.backup().exists() && !server.journal().exists(),
            "{run}"
        );

        let run = hotreload_under(&wrapper, &args(&["--allow-metadata-loss"]));
        run.expect_code(0);
        let warned = run
            .events()
            .iter()
            .any(|e| e["type"] == "warning" && e.to_string().contains("security.capability"));
        assert!(warned, "no warning naming the lost capability{run}");
        server.assert_healthy_steady("2.0", &sha(&new).unwrap(), &run);
        assert!(
            !report("getcap", &[], &server.installed).contains("cap_net_bind_service"),
            "{run}"
        );
    });
}
