//! Issue 12, item 9 (the CLI's part): nginx's config-test warnings are kept and shown, a
//! mistyped pid file gets advice about its path and leaves nothing behind, and the https
//! refusal points at `--health-cmd`, which works.

use std::fs;

use hotreload_tests::fake::{sha, FakeServer as Server};
use hotreload_tests::run::hotreload;

const DEPRECATED: &str = r#"the "listen ... http2" directive is deprecated"#;

/// A configuration nginx accepts with a warning (`listen … http2`, deprecated since
/// 1.25.1): the upgrade goes on, and the warning is in a `warning` event, in the
/// config-test check of the report, and in the human account.
#[test]
fn config_test_warnings_are_kept_and_shown() {
    hotreload_tests::watchdog(|| {
        let server = Server::start(&[]);
        let conf = server.inst.conf_path().to_path_buf();
        let addr = server.inst.addr();
        let text = fs::read_to_string(&conf).unwrap();
        let listen = format!("listen {addr};");
        assert!(text.contains(&listen), "{text}");
        fs::write(
            &conf,
            text.replace(&listen, &format!("listen {addr} http2;")),
        )
        .unwrap();
        let new = server.build("2.0", &[]);
        let pid_file = server.pid_file();
        let new_arg = new.display().to_string();

        let run = hotreload(&[
            "upgrade",
            "--pid-file",
            &pid_file,
            "--new-binary",
            &new_arg,
            "--json",
        ]);
        run.expect_code(0);
        let events = run.events();
        assert!(
            events.iter().any(|e| e["type"] == "warning"
                && e["data"]["message"].as_str().is_some_and(|m| m
                    .starts_with("the config test warns:")
                    && m.contains(DEPRECATED))),
            "no warning event{run}"
        );
        let result = run.result();
        let check = result["preflight"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == "config-test"))
            .cloned()
            .unwrap_or_default();
        assert_eq!(check["ok"], true, "{run}");
        assert!(
            check["detail"].as_str().unwrap_or("").contains(DEPRECATED),
            "{run}"
        );

        let newer = server.build("3.0", &[]);
        let run = hotreload(&[
            "upgrade",
            "--pid-file",
            &pid_file,
            "--new-binary",
            &newer.display().to_string(),
        ]);
        run.expect_code(0).expect_stdout(DEPRECATED);
    });
}

/// A pid file path that does not exist (and no sign of an upgrade): every command
/// refuses (3) with advice about the path, not about an upgrade in progress, and
/// creates nothing in the directory.
#[test]
fn a_mistyped_pid_file_gets_advice_about_the_path_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("ngnix.pid").display().to_string();
    for command in ["status", "upgrade", "spawn", "drain", "commit", "rollback"] {
        let mut args = vec![command, "--pid-file", &pid_file, "--json"];
        if command == "upgrade" {
            args.extend(["--new-binary", "/bin/true"]);
        }
        let run = hotreload(&args);
        run.expect_code(3);
        let hint = run.result()["hint"].as_str().unwrap_or("").to_owned();
        assert!(
            hint.contains("no such file") && hint.contains("nginx -T"),
            "{command}: {hint}{run}"
        );
        assert!(!hint.contains("interrupted"), "{command}: {hint}{run}");
        let left: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert!(left.is_empty(), "{command} left {left:?}{run}");
    }
}

/// `--health-url https://…` is refused (2) pointing at `--health-cmd`; a command check
/// that passes lets the upgrade commit, one that fails rolls it back.
#[test]
fn the_https_refusal_suggests_health_cmd_which_works() {
    hotreload_tests::watchdog(|| {
        let server = Server::start(&[]);
        let old_sha = sha(&server.installed).unwrap();
        let pid_file = server.pid_file();
        let new = server.build("2.0", &[]);
        let new_arg = new.display().to_string();
        let base = ["upgrade", "--pid-file", &pid_file, "--new-binary", &new_arg];

        let url = format!("https://{}/", server.inst.addr());
        let mut args = base.to_vec();
        args.extend(["--health-url", &url]);
        hotreload(&args)
            .expect_code(2)
            .expect_stderr(&format!("--health-cmd 'curl -fsS {url}'"));

        let mut args = base.to_vec();
        args.extend(["--health-cmd", "echo unhealthy >&2; exit 3"]);
        let run = hotreload(&args);
        run.expect_code(1).expect_stdout("unhealthy");
        server.assert_healthy_steady("1.0", &old_sha, &run);

        let check = format!("test -s {pid_file}");
        let mut args = base.to_vec();
        args.extend(["--health-cmd", &check, "--json"]);
        let run = hotreload(&args);
        run.expect_code(0);
        assert!(
            run.events().iter().any(|e| e["type"] == "check"
                && e["data"]["ok"] == true
                && e["data"]["name"].as_str().unwrap_or("").contains(&check)),
            "{run}"
        );
        server.assert_healthy_steady("2.0", &sha(&new).unwrap(), &run);
    });
}

/// Issue 12, item 1's leftover: a master started with `-e '<dir>/err -x.log'` has the
/// title `… -e <dir>/err -x.log -p … -c …` (fake-nginx joins argv as nginx does), where
/// `-x.log` could be an option or a word of a path. `upgrade` refuses before any change
/// and says how to give the arguments; given with `--server-arg`, it upgrades; given
/// wrong (not how the title ends), it refuses again.
#[test]
fn an_ambiguous_title_is_refused_until_the_arguments_are_given() {
    hotreload_tests::watchdog(|| {
        let scripts = tempfile::tempdir().unwrap();
        let err_log = scripts.path().join("err -x.log").display().to_string();
        // A "wrapper" that execs the server with one argument holding a space.
        let wrapper = scripts.path().join("with-e");
        fs::write(
            &wrapper,
            format!("#!/bin/sh\nprog=\"$1\"; shift\nexec \"$prog\" -e '{err_log}' \"$@\"\n"),
        )
        .unwrap();
        fs::set_permissions(
            &wrapper,
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )
        .unwrap();
        let server = Server::start_under(&wrapper, &[]);
        let old_sha = sha(&server.installed).unwrap();
        let new = server.build("2.0", &[]);
        let pid_file = server.pid_file();
        let new_arg = new.display().to_string();
        let upgrade = |extra: &[&str]| {
            let mut args = vec!["upgrade", "--pid-file", &pid_file, "--new-binary", &new_arg];
            args.extend(extra);
            hotreload(&args)
        };

        let run = upgrade(&[]);
        run.expect_code(3)
            .expect_stderr("`-x.log` is not an option an nginx master takes")
            .expect_stderr("--server-arg");
        assert_eq!(
            sha(&server.installed).as_deref(),
            Some(old_sha.as_str()),
            "{run}"
        );
        assert!(!server.journal().exists(), "{run}");

        let prefix = server.inst.prefix().display().to_string();
        let wrong = upgrade(&["--server-arg=-e", "--server-arg=/elsewhere.log"]);
        wrong
            .expect_code(3)
            .expect_stderr("are not how the master's title ends");

        let e = format!("--server-arg={err_log}");
        let p = format!("--server-arg={prefix}");
        let run = upgrade(&[
            "--server-arg=-e",
            &e,
            "--server-arg=-p",
            &p,
            "--server-arg=-c",
            "--server-arg=conf/nginx.conf",
        ]);
        run.expect_code(0);
        server.assert_healthy_steady("2.0", &sha(&new).unwrap(), &run);
    });
}
