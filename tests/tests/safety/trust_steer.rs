//! Issue 11, cases 3, 4, 5, 9 and 10: what a less-privileged user controls (the master's
//! title, its configuration, the timing of its pid file, the signals it can send) does not
//! steer root's hotreload. Each test plays that user (uid `nobody`, through the server it
//! runs or `setpriv`) and checks that the victim — a root-owned file, a path in a
//! root-only directory, the old master's helpers — is untouched, that the target still
//! serves, and that the exit code and the message say what happened.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;
use hotreload_tests::procs::{self, kill_session, session_of};
use hotreload_tests::watchdog;

const NOBODY: u32 = 65534;

/// A fake-nginx 1.0 run by `nobody` from `<dir>/sbin/nginx`, its prefix nobody's. The
/// executable is root's unless `own_binary` (then it is nobody's, as a server user's own
/// build would be).
fn nobody_server(old_faults: &'static [&'static str], own_binary: bool) -> Server {
    Server::start_prepared(
        move |installed| {
            let dir = installed.parent().unwrap().parent().unwrap();
            // The test's temp dir is root's 0700: nobody must reach its executable.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
            variant_at(installed, "1.0", old_faults);
            if own_binary {
                std::os::unix::fs::chown(installed, Some(NOBODY), Some(NOBODY)).unwrap();
            }
        },
        |b| b.user(NOBODY, NOBODY),
    )
}

fn identity(path: &Path) -> (u64, u64, u32, Option<String>) {
    let meta = fs::metadata(path).unwrap();
    (meta.dev(), meta.ino(), meta.uid(), sha(path))
}

/// Case 3: a server run by nobody from a root-owned executable (as a title may name any
/// file its user can run) does not get that file replaced; naming it with `--binary` is
/// the operator's word and passes.
#[test]
fn a_title_naming_a_root_owned_executable_is_refused_before_any_change() {
    watchdog(|| {
        let server = nobody_server(&[], false);
        let before = server.fingerprint();
        let victim = identity(&server.installed);
        assert_eq!(victim.2, 0, "the victim executable must be root's");
        let new = server.build("2.0", &[]);
        let run = hotreload(&[
            "upgrade",
            "--pid-file",
            &server.pid_file(),
            "--new-binary",
            new.to_str().unwrap(),
        ]);
        run.expect_code(3)
            .expect_stderr("binary-trusted")
            .expect_stderr("comes from its process title")
            .expect_stderr(&format!("--binary {}", server.installed.display()));
        assert_eq!(
            identity(&server.installed),
            victim,
            "the victim changed{run}"
        );
        assert_eq!(server.fingerprint(), before, "{run}");
        assert_eq!(server.version(), "fake-nginx/1.0", "{run}");

        // Named explicitly, it is what the master runs: the preflight passes.
        let run = hotreload(&[
            "upgrade",
            "--pid-file",
            &server.pid_file(),
            "--new-binary",
            new.to_str().unwrap(),
            "--binary",
            server.installed.to_str().unwrap(),
            "--dry-run",
        ]);
        run.expect_code(0).expect_stdout("preflight passed");
        assert_eq!(identity(&server.installed), victim, "{run}");
        assert_eq!(server.fingerprint(), before, "{run}");
    });
}

/// Case 4: the config test runs as the master's user. A dry run says so; when nobody's
/// configuration names a file in a root-only directory, the test cannot create it.
#[test]
fn the_config_test_runs_as_the_servers_user_and_cannot_write_as_root() {
    watchdog(|| {
        let server = nobody_server(&[], true);
        let before = server.fingerprint();
        let new = server.build("2.0", &[]);
        let upgrade_dry = || {
            hotreload(&[
                "upgrade",
                "--pid-file",
                &server.pid_file(),
                "--new-binary",
                new.to_str().unwrap(),
                "--dry-run",
            ])
        };
        let run = upgrade_dry();
        run.expect_code(0)
            .expect_stdout("ran the config test as user 65534");
        assert_eq!(server.fingerprint(), before, "{run}");

        // The attacker's configuration names a root-only path, like `pid /etc/nologin;`.
        let root_only = server.dir.path().join("root-only");
        fs::create_dir(&root_only).unwrap();
        fs::set_permissions(&root_only, fs::Permissions::from_mode(0o755)).unwrap();
        let victim = root_only.join("nologin");
        let conf = server.inst.conf_path().display().to_string();
        as_nobody_ok(&format!(
            "sed 's|^pid .*;|pid {};|' '{conf}' > '{conf}.new' && mv '{conf}.new' '{conf}'",
            victim.display()
        ));
        let run = upgrade_dry();
        run.expect_code(3)
            .expect_stderr("config test")
            .expect_stderr("Permission denied");
        assert!(
            !victim.exists(),
            "the config test created {victim:?} as root{run}"
        );
        assert_eq!(server.fingerprint(), before, "{run}");
        assert_eq!(server.version(), "fake-nginx/1.0", "{run}");
    });
}

/// Case 9: two masters serving with the old pid file removed are not "steady".
#[test]
fn status_does_not_call_two_serving_masters_steady() {
    watchdog(|| {
        let server = Server::start(&[]);
        let old = server.master_now();
        let new = server.build("2.0", &[]);
        server.install_by_hand(&new);
        hotreload(&["spawn", "--pid-file", &server.pid_file()]).expect_code(0);
        let new_master = server.master_now();
        assert_ne!(new_master, old);
        fs::remove_file(server.inst.oldbin_file()).unwrap();
        let run = hotreload(&["status", "--pid-file", &server.pid_file(), "--json"]);
        let status = run.status_json();
        assert_eq!(status["phase"], "unknown", "{run}");
        run.expect_code(3);
        let evidence = status["evidence"].to_string();
        assert!(
            evidence.contains(&format!("master {new_master} is a child of master {old}"))
                && evidence.contains(&format!("kill -QUIT {old}")),
            "the evidence must name both masters and what settles it: {evidence}{run}"
        );
        assert!(
            alive(old) && alive(new_master),
            "status signalled someone{run}"
        );
    });
}

/// Starts `upgrade --json` of `server` to a 2.0 build that never writes its pid file
/// (which keeps the spawn window open), in a thread.
fn upgrade_to_a_hung_build(server: &Server) -> std::thread::JoinHandle<Run> {
    let new = server.build("2.0", &["hang-on-start"]);
    let args = upgrade_args(
        server,
        &new,
        &["--spawn-timeout", "5s", "--quit-timeout", "3s"],
    );
    std::thread::spawn(move || hotreload(&args))
}

/// The run's hint names someone else as the cause, not the new build, and the old master
/// `old` still serves 1.0.
fn assert_named_not_blamed(server: &Server, old: i32, run: &Run) {
    let hint = run.result()["hint"].as_str().unwrap_or_default().to_owned();
    assert!(
        hint.contains("something other than hotreload acted on the server"),
        "hint: {hint}{run}"
    );
    assert!(!hint.contains("fix the new binary"), "hint: {hint}{run}");
    assert_eq!(server.master_now(), old, "{run}");
    assert_eq!(server.version(), "fake-nginx/1.0", "{run}");
}

/// Case 10 (and 8's blame): someone racing to create the pid file in the spawn window (a
/// sticky world-writable pid directory, which the pid-file guard accepts) is named as the
/// cause; the new build is not blamed.
#[test]
fn a_pid_file_planted_in_the_spawn_window_is_named_not_blamed_on_the_new_build() {
    watchdog(|| {
        let server = Server::start(&[]);
        let old = server.master_now();
        let logs = server.inst.pid_file().parent().unwrap().to_path_buf();
        fs::set_permissions(&logs, fs::Permissions::from_mode(0o1777)).unwrap();
        let upgrade = upgrade_to_a_hung_build(&server);
        // The window: the old master has renamed its pid file to `.oldbin`.
        wait_until(
            "the old master to rename its pid file",
            || server.oldbin_exists() && !server.inst.pid_file().exists(),
            || server.why(),
        );
        as_nobody_ok(&format!("echo 1 > '{}'", server.inst.pid_file().display()));
        let run = upgrade.join().unwrap();
        run.expect_code(1)
            .expect_stderr("was created by user 65534");
        assert_named_not_blamed(&server, old, &run);
    });
}

/// Case 10: a reload signal from elsewhere during the spawn (someone's `kill -HUP`) is
/// named as the cause of the failed spawn; the new build is not blamed.
#[test]
fn a_reload_from_elsewhere_during_the_spawn_is_named_not_blamed_on_the_new_build() {
    watchdog(|| {
        let server = Server::start(&[]);
        let old = server.master_now();
        let workers_before = hotreload_tests::procs::workers_of(old).len();
        let upgrade = upgrade_to_a_hung_build(&server);
        wait_until(
            "the old master to rename its pid file",
            || server.oldbin_exists(),
            || server.why(),
        );
        hotreload_tests::procs::signal(old, nix::sys::signal::Signal::SIGHUP).unwrap();
        wait_until(
            "the old master to start more workers",
            || hotreload_tests::procs::workers_of(old).len() > workers_before,
            || server.why(),
        );
        let run = upgrade.join().unwrap();
        run.expect_code(1)
            .expect_stderr("by someone other than hotreload");
        assert_named_not_blamed(&server, old, &run);
    });
}

/// Unmounts (lazily: the server may still run from it) when dropped.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Case 10: hotreload's own write failing for want of space is not the new binary's
/// fault: the advice names the file system to free.
#[test]
fn a_full_file_system_asks_for_space_not_for_a_new_build() {
    watchdog(|| {
        let mut mounted = None;
        let server = Server::start_prepared(
            |installed| {
                let sbin = installed.parent().unwrap();
                // Room for the installed executable, not for a staged copy of the new one.
                let size = fs::metadata(hotreload_tests::fake_nginx_bin())
                    .unwrap()
                    .len()
                    + (1 << 20);
                let ok = Command::new("mount")
                    .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
                    .arg(sbin)
                    .status()
                    .expect("run mount");
                assert!(ok.success(), "mount a tmpfs on {sbin:?}");
                mounted = Some(sbin.to_path_buf());
                variant_at(installed, "1.0", &[]);
            },
            |b| b,
        );
        let sbin = mounted.expect("mounted");
        let _mount = Mount(sbin.clone());
        let before = server.fingerprint();
        let old_sha = sha(&server.installed);
        let new = server.build("2.0", &[]);
        let run = hotreload(&upgrade_args(&server, &new, &[]));
        run.expect_code(3);
        let hint = run.result()["hint"].as_str().unwrap_or_default().to_owned();
        assert!(
            hint.contains(&format!("free space on {}", sbin.display())),
            "hint: {hint}{run}"
        );
        assert!(!hint.contains("fix the new binary"), "hint: {hint}{run}");
        assert_eq!(sha(&server.installed), old_sha, "{run}");
        assert_eq!(server.fingerprint(), before, "{run}");
        assert_eq!(server.version(), "fake-nginx/1.0", "{run}");
    });
}

/// Case 10: a drain that ran out of time rolls back and says to give it more, not to fix
/// the new build.
#[test]
fn a_drain_deadline_asks_for_more_time_not_for_a_new_build() {
    watchdog(|| {
        let server = Server::start(&["slow-drain=30s"]);
        let old = server.master_now();
        let new = server.build("2.0", &[]);
        let load = server.load();
        let run = hotreload(&upgrade_args(&server, &new, &["--drain-timeout", "2s"]));
        drop(load);
        run.expect_code(1);
        let result = run.result();
        assert_eq!(result["outcome"], "rolled-back", "{run}");
        let hint = result["hint"].as_str().unwrap_or_default();
        assert!(
            hint.contains("--drain-timeout") && hint.contains("--on-drain-timeout terminate"),
            "hint: {hint}{run}"
        );
        assert!(!hint.contains("fix the new binary"), "hint: {hint}{run}");
        assert_eq!(server.master_now(), old, "{run}");
        assert_eq!(server.version(), "fake-nginx/1.0", "{run}");
    });
}

// ---------------------------------------------------------------------------------------
// Case 5 with real nginx: its cache manager and cache loader are children of the master
// that are neither workers nor masters.

const REAL_NGINX: &str = "1.22.1-9+deb12u11";

fn real_nginx() -> PathBuf {
    let path = hotreload_tests::tools::real_servers_dir()
        .join(format!("nginx-{REAL_NGINX}/usr/sbin/nginx"));
    hotreload_tests::tools::require("real nginx", &[&path]);
    path
}

/// Kills the session of the master it names when dropped (nginx daemonizes with setsid;
/// the new master, workers and helpers stay in that session).
struct Session(i32);

impl Drop for Session {
    fn drop(&mut self) {
        kill_session(self.0);
    }
}

fn child_titled(master: i32, marker: &str) -> Option<(i32, u64)> {
    procs::children_of(master).into_iter().find_map(|c| {
        let stat = procs::stat(c)?;
        (stat.state != 'Z' && procs::title_of(c)?.contains(marker)).then_some((c, stat.start_time))
    })
}

/// Real nginx, daemonized, with `proxy_cache_path` (so its master has a cache manager and
/// a cache loader), running a copy of the build from its prefix; its session is killed on
/// drop (nginx daemonizes with setsid; the new master, workers and helpers stay in it).
struct CachingNginx {
    _session: Session,
    master: i32,
    manager: (i32, u64),
    loader: (i32, u64),
    pid_file: PathBuf,
    new: PathBuf,
    port: u16,
    prefix: PathBuf,
    _dir: tempfile::TempDir,
}

impl CachingNginx {
    fn start() -> CachingNginx {
        let build = real_nginx();
        let dir = tempfile::Builder::new()
            .prefix("trust-steer-nginx-")
            .tempdir()
            .unwrap();
        let prefix = dir.path().to_path_buf();
        for sub in ["conf", "logs", "tmp", "sbin", "cache"] {
            fs::create_dir_all(prefix.join(sub)).unwrap();
        }
        fs::set_permissions(&prefix, fs::Permissions::from_mode(0o755)).unwrap();
        let exe = prefix.join("sbin/nginx");
        fs::copy(&build, &exe).unwrap();
        fake_nginx::harness::settle_executable(&exe).unwrap();
        let new = prefix.join("nginx-new");
        fs::copy(&build, &new).unwrap();
        // A different build: a byte appended past the ELF image changes nothing it runs.
        fs::OpenOptions::new()
            .append(true)
            .open(&new)
            .and_then(|mut f| std::io::Write::write_all(&mut f, b"\0"))
            .unwrap();
        fs::write(prefix.join("conf/extra.conf"), "# nothing yet\n").unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        fs::write(
                prefix.join("conf/nginx.conf"),
                format!(
                        "worker_processes 2;\n\
                         pid logs/nginx.pid;\n\
                         error_log logs/error.log info;\n\
                         include extra.conf;\n\
                         events {{ worker_connections 64; }}\n\
                         http {{\n\
                           access_log off;\n\
                           client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;\n\
                           uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;\n\
                           proxy_cache_path {}/cache keys_zone=trust:1m;\n\
                           server {{ listen 127.0.0.1:{port}; location /ok {{ return 200 \"ok\\n\"; }} }}\n\
                         }}\n",
                        prefix.display()
                ),
            )
            .unwrap();
        let out = Command::new(&exe)
            .arg("-p")
            .arg(format!("{}/", prefix.display()))
            .args(["-c", "conf/nginx.conf", "-g", "daemon on;"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nginx failed to start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pid_file = prefix.join("logs/nginx.pid");
        let master = hotreload_tests::wait_for("the pid file", LONG, || read_pid(&pid_file));
        let _session = Session(session_of(master).unwrap());
        let manager = hotreload_tests::wait_for("the cache manager", LONG, || {
            child_titled(master, "cache manager process")
        });
        let loader = hotreload_tests::wait_for("the cache loader", LONG, || {
            child_titled(master, "cache loader process")
        });
        hotreload_tests::wait_for("the workers", LONG, || {
            (procs::workers_of(master).len() == 2).then_some(())
        });
        CachingNginx {
            _session,
            master,
            manager,
            loader,
            pid_file,
            new,
            port,
            prefix,
            _dir: dir,
        }
    }

    /// From now on a configuration read blocks: the `include` becomes a FIFO nobody
    /// writes, so a new master hangs at start-up in a blocking read, with the signals the
    /// old master blocked still blocked (only `KILL` ends it), as a start stuck on a dead
    /// network file system would.
    fn block_configuration_reads(&self) {
        let prefix = &self.prefix;
        // From now on, a configuration read blocks.
        let fifo = prefix.join("conf/extra.fifo");
        let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        fs::rename(&fifo, prefix.join("conf/extra.conf")).unwrap();
    }

    /// The cache manager and loader are the ones from before, alive, and got no signal
    /// in `run`.
    fn assert_helpers_untouched(&self, run: &Run) {
        let signalled: Vec<i64> = run
            .events()
            .iter()
            .filter(|l| l["type"] == "signalled")
            .filter_map(|l| l["data"]["pid"].as_i64())
            .collect();
        for (what, (pid, start)) in [
            ("cache manager", self.manager),
            ("cache loader", self.loader),
        ] {
            assert!(
                !signalled.contains(&i64::from(pid)),
                "the {what} {pid} was signalled{run}"
            );
            assert_eq!(
                procs::stat(pid)
                    .filter(|s| s.state != 'Z')
                    .map(|s| s.start_time),
                Some(start),
                "the {what} {pid} is gone{run}"
            );
        }
    }

    /// The old master serves again, alone with its workers and helpers.
    fn assert_old_master_serves_alone(&self, run: &Run) {
        assert_eq!(read_pid(&self.pid_file), Some(self.master), "{run}");
        let master = self.master;
        hotreload_tests::wait_for("the old master alone with its helpers", LONG, || {
            procs::children_of(master)
                .into_iter()
                .filter(|&c| procs::stat(c).is_some_and(|s| s.state != 'Z'))
                .all(|c| {
                    procs::title_of(c)
                        .is_some_and(|t| t.contains("worker process") || t.contains("cache "))
                })
                .then_some(())
        });
        let answer = fake_nginx::harness::http_get(
            ([127, 0, 0, 1], self.port).into(),
            "/ok",
            std::time::Duration::from_secs(5),
        )
        .expect("the old master still serves");
        assert_eq!(answer.status, 200, "{run}");
    }
}

/// A new master that hangs at start-up is stopped past the spawn deadline, and nothing
/// else: the old master's cache manager and cache loader keep running, unsignalled.
#[test]
#[cfg_attr(
    missing_real_nginx,
    ignore = "needs real nginx: run scripts/install-real-servers"
)]
fn a_hung_spawn_stops_only_the_new_master_never_the_cache_helpers() {
    watchdog(|| {
        let nginx = CachingNginx::start();
        nginx.block_configuration_reads();
        let run = hotreload(&[
            "upgrade",
            "--pid-file",
            nginx.pid_file.to_str().unwrap(),
            "--new-binary",
            nginx.new.to_str().unwrap(),
            "--skip-config-test",
            "--spawn-timeout",
            "3s",
            "--quit-timeout",
            "3s",
            "--json",
        ]);
        run.expect_code(1);
        assert!(
            run.signals().iter().any(|s| s == "SIGKILL->new-master"),
            "the hung new master was not killed{run}"
        );
        nginx.assert_helpers_untouched(&run);
        nginx.assert_old_master_serves_alone(&run);
    });
}

/// The same hung spawn, its orchestrator killed: the rollback of that unknown phase has
/// no record of the old master's children, and still stops only the new master (the
/// child that executed another file), never a helper.
#[test]
#[cfg_attr(
    missing_real_nginx,
    ignore = "needs real nginx: run scripts/install-real-servers"
)]
fn a_rollback_of_an_interrupted_spawn_never_stops_the_cache_helpers() {
    watchdog(|| {
        let nginx = CachingNginx::start();
        nginx.block_configuration_reads();
        let args: Vec<String> = [
            "upgrade",
            "--pid-file",
            nginx.pid_file.to_str().unwrap(),
            "--new-binary",
            nginx.new.to_str().unwrap(),
            "--skip-config-test",
            "--json",
        ]
        .iter()
        .map(|a| a.to_string())
        .collect();
        hotreload_killed_at(&args, |e| {
            e["type"] == "signalled" && e["data"]["signal"] == "SIGUSR2"
        });
        let master = nginx.master;
        let hung = hotreload_tests::wait_for("the hung new master", LONG, || {
            procs::children_of(master)
                .into_iter()
                .find(|&c| procs::title_of(c).is_some_and(|t| !t.starts_with("nginx: ")))
        });
        let run = hotreload(&[
            "rollback",
            "--pid-file",
            nginx.pid_file.to_str().unwrap(),
            "--quit-timeout",
            "3s",
            "--json",
        ]);
        run.expect_code(0);
        assert!(!alive(hung), "the hung new master {hung} still runs{run}");
        nginx.assert_helpers_untouched(&run);
        nginx.assert_old_master_serves_alone(&run);
    });
}
