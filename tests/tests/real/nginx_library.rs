//! `hotreload_core` against the real Debian nginx builds that `scripts/install-real-servers`
//! unpacks (deb12u9 upgraded to deb12u11): the pipeline commits, and a kept upgrade rolls
//! back from a fresh process. Missing builds make the tests ignored, unless CI or
//! `HOTRELOAD_REQUIRE_REAL_SERVERS=1`, where they fail.
//!
//! Every process a test starts is in the session of the master it started (nginx
//! daemonizes with setsid; new masters and workers stay in it); `Server`'s drop SIGKILLs
//! that session, panicking or not.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hotreload_core::{upgrade, NoopObserver, Outcome, Pid, Signal, State, Target};
use hotreload_tests::fake::sha;
use hotreload_tests::library::{op_options, options, wait_gone, Events};
use hotreload_tests::watchdog::{register, Registration, Watched};
use hotreload_tests::LONG;
use hotreload_tests::{poll, procs};

fn build(version: &str) -> PathBuf {
    hotreload_tests::tools::real_servers_dir().join(format!("nginx-{version}/usr/sbin/nginx"))
}

/// (old, new) builds; panics saying how to install them when they are missing (the tests
/// are ignored then, unless CI or `HOTRELOAD_REQUIRE_REAL_SERVERS=1` requires them).
fn builds() -> (PathBuf, PathBuf) {
    let (old, new) = (build("1.22.1-9+deb12u9"), build("1.22.1-9+deb12u11"));
    hotreload_tests::tools::require("real nginx", &[&old, &new]);
    (old, new)
}

/// A real nginx running a copy of a build at `<prefix>/sbin/nginx`.
struct Server {
    master: i32,
    addr: SocketAddr,
    _watch: Registration,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(sid) = hotreload_tests::session_of(self.master) {
            hotreload_tests::kill_session(sid);
        }
    }
}

impl Server {
    fn start(build: &Path) -> Server {
        let dir = tempfile::Builder::new()
            .prefix("core-real-nginx-")
            .tempdir()
            .unwrap();
        let prefix = dir.path();
        for sub in ["conf", "logs", "tmp", "sbin"] {
            fs::create_dir_all(prefix.join(sub)).unwrap();
        }
        fs::copy(build, prefix.join("sbin/nginx")).unwrap();
        // Another test thread's fork may still hold the copy's write descriptor: start
        // nginx only once an exec of it succeeds (ETXTBSY retried).
        fake_nginx::harness::settle_executable(&prefix.join("sbin/nginx")).unwrap();
        for attempt in 1..=3 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            fs::write(prefix.join("conf/nginx.conf"), config(port)).unwrap();
            let out = Command::new(prefix.join("sbin/nginx"))
                .arg("-p")
                .arg(format!("{}/", prefix.display()))
                .args(["-c", "conf/nginx.conf"])
                .output()
                .unwrap();
            if out.status.success() {
                let pid_file = prefix.join("logs/nginx.pid");
                let mut master = 0;
                poll::until(LONG, "nginx's pid file and workers", || {
                    master = procs::read_pid_strict(&pid_file).unwrap_or(0);
                    master > 1 && procs::workers_of(master).len() == 2
                });
                let watch = register(Watched::of_master(
                    &format!("nginx at {}", prefix.display()),
                    master,
                    None,
                    Some(prefix.join("logs/error.log")),
                ));
                return Server {
                    master,
                    addr: ([127, 0, 0, 1], port).into(),
                    _watch: watch,
                    dir,
                };
            }
            let text = String::from_utf8_lossy(&out.stderr).into_owned()
                + &fs::read_to_string(prefix.join("logs/error.log")).unwrap_or_default();
            assert!(
                attempt < 3 && text.contains("Address already in use"),
                "{text}"
            );
        }
        unreachable!()
    }

    fn binary(&self) -> PathBuf {
        self.dir.path().join("sbin/nginx")
    }

    fn pid_file(&self) -> PathBuf {
        self.dir.path().join("logs/nginx.pid")
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("logs/error.log")).unwrap_or_default()
    }

    fn get_ok(&self) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(b"GET /ok HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        resp.starts_with("HTTP/1.1 200")
    }
}

fn config(port: u16) -> String {
    format!(
        "worker_processes 2;\ndaemon on;\npid logs/nginx.pid;\nerror_log logs/error.log info;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n\
           client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;\n\
           uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;\n\
           server {{ listen 127.0.0.1:{port}; location /ok {{ return 200 \"ok\\n\"; }} }}\n}}\n"
    )
}

fn pid(raw: i32) -> Pid {
    Pid::new(i64::from(raw)).unwrap()
}

/// The bytes the process runs are those of `build` (both builds say `nginx/1.22.1`).
fn runs(p: Pid, build: &Path) -> bool {
    fs::read(format!("/proc/{p}/exe")).unwrap() == fs::read(build).unwrap()
}

#[test]
#[cfg_attr(
    missing_real_nginx,
    ignore = "needs real nginx: run scripts/install-real-servers"
)]
fn real_nginx_is_upgraded_and_committed() {
    hotreload_tests::watchdog(|| {
        let (old_build, new_build) = builds();
        let server = Server::start(&old_build);
        let old = pid(server.master);
        let target = Target::new(server.pid_file());
        let events = Events::default();
        let report = upgrade(&target, &options(&new_build), &events)
            .unwrap_or_else(|e| panic!("{e}\nevents:\n{}\nlog:\n{}", events.text(), server.log()));
        assert_eq!(report.outcome, Outcome::Committed);
        let new = report.new_pid.unwrap();
        wait_gone(old);
        assert_eq!(procs::read_pid_strict(&server.pid_file()), Some(new.get()));
        assert!(!server.pid_file().with_extension("pid.oldbin").exists());
        assert!(
            runs(new, &new_build),
            "the new master does not run the new build"
        );
        assert_eq!(sha(&server.binary()), sha(&new_build));
        assert!(server.get_ok());
        let sent: Vec<Signal> = events.signals().iter().map(|(_, s)| *s).collect();
        assert_eq!(
            sent,
            [Signal::Usr2, Signal::Winch, Signal::Quit],
            "{}",
            events.text()
        );
    });
}

#[test]
#[cfg_attr(
    missing_real_nginx,
    ignore = "needs real nginx: run scripts/install-real-servers"
)]
fn real_nginx_kept_upgrade_is_rolled_back_by_a_fresh_process() {
    hotreload_tests::watchdog(|| {
        let (old_build, new_build) = builds();
        let server = Server::start(&old_build);
        let old = pid(server.master);
        let report = upgrade(
            &Target::new(server.pid_file()),
            &options(&new_build).keep_old(true),
            &NoopObserver,
        )
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", server.log()));
        let new = report.new_pid.unwrap();

        let State::Drained(drained) = Target::new(server.pid_file()).attach().unwrap() else {
            panic!("not drained:\n{}", server.log())
        };
        let events = Events::default();
        let steady = drained
            .rollback(&op_options(), &events)
            .unwrap_or_else(|e| panic!("{e}\nevents:\n{}\nlog:\n{}", events.text(), server.log()));
        assert_eq!(steady.master_pid(), old);
        assert_eq!(
            events.signals(),
            [(old, Signal::Hup), (new, Signal::Quit)],
            "{}",
            events.text()
        );
        wait_gone(new);
        assert_eq!(procs::read_pid_strict(&server.pid_file()), Some(old.get()));
        assert_eq!(procs::workers_of(old.get()).len(), 2);
        assert!(runs(old, &old_build));
        assert_eq!(
            sha(&server.binary()),
            sha(&old_build),
            "the old build is not back"
        );
        assert!(server.get_ok());
    });
}

/// Issue 5: deb12u9 → deb12u11 under client load. New-connection clients must see no
/// failure at all; keep-alive clients no failure other than nginx's own reset of a reused,
/// idle keep-alive connection at the instant its worker stops gracefully (before any
/// response byte: HTTP clients retry it; nginx's `make upgrade` shows the same, see
/// BENCHMARKS.md). The answers must move to the new build's master.
#[test]
#[cfg_attr(
    missing_real_nginx,
    ignore = "needs real nginx: run scripts/install-real-servers"
)]
fn real_nginx_upgrade_under_load_drops_nothing() {
    hotreload_tests::watchdog(|| {
        let (old_build, new_build) = builds();
        let server = Server::start(&old_build);
        let load = fake_nginx::load::Load::start(
            fake_nginx::load::LoadConfig::new(server.addr)
                .clients(8)
                .path("/ok"),
        );
        // Traffic is flowing before the upgrade starts.
        poll::until(LONG, "the first answers under load", || {
            load.snapshot().ok >= 100
        });
        let events = Events::default();
        let report = upgrade(
            &Target::new(server.pid_file()),
            &options(&new_build),
            &events,
        )
        .unwrap_or_else(|e| panic!("{e}\nevents:\n{}\nlog:\n{}", events.text(), server.log()));
        let new = report.new_pid.unwrap();
        // And keeps flowing, now from the new master's workers only.
        let served = load.snapshot().ok;
        poll::until(LONG, "answers after the upgrade", || {
            load.snapshot().ok >= served + 200
        });
        let stats = load.stop();
        let fresh = &stats.new_connection_clients;
        let kept = &stats.keepalive_clients;
        assert_eq!(
            fresh.failed(),
            0,
            "new-connection clients lost requests: {stats:?}"
        );
        assert_eq!(
            kept.failed(),
            kept.reset_reused_before_response,
            "keep-alive clients lost requests other than nginx's idle-close reset: {stats:?}"
        );
        assert!(
            runs(new, &new_build),
            "the new master does not run deb12u11"
        );
        assert_eq!(procs::read_pid_strict(&server.pid_file()), Some(new.get()));
        assert!(!server.pid_file().with_extension("pid.oldbin").exists());
        eprintln!(
            "real nginx under load: {} ok, {} failed ({} idle keep-alive resets), {} retried idle closes",
            stats.ok, stats.failed, stats.reset_reused_before_response, stats.retried_idle_keepalive
        );
    });
}

/// Issue 6 item 3, on real nginx: started in the foreground (`daemon off;`) as this test's
/// child, nginx ignores USR2 by design. hotreload must refuse before it changes anything:
/// no signal, the executable untouched, no `.oldbin`.
#[test]
#[cfg_attr(
    missing_real_nginx,
    ignore = "needs real nginx: run scripts/install-real-servers"
)]
fn real_nginx_daemon_off_is_refused_before_any_change() {
    hotreload_tests::watchdog(|| {
        use std::os::unix::process::CommandExt;
        let (old_build, new_build) = builds();
        let dir = tempfile::Builder::new()
            .prefix("core-real-nginx-fg-")
            .tempdir()
            .unwrap();
        let prefix = dir.path();
        for sub in ["conf", "logs", "tmp", "sbin"] {
            fs::create_dir_all(prefix.join(sub)).unwrap();
        }
        fs::copy(&old_build, prefix.join("sbin/nginx")).unwrap();
        fake_nginx::harness::settle_executable(&prefix.join("sbin/nginx")).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        fs::write(
            prefix.join("conf/nginx.conf"),
            config(port).replace("daemon on;", "daemon off;"),
        )
        .unwrap();
        // Its own process group, so the guard can stop it and its workers without touching
        // this test process.
        let child = Command::new(prefix.join("sbin/nginx"))
            .arg("-p")
            .arg(format!("{}/", prefix.display()))
            .args(["-c", "conf/nginx.conf"])
            .process_group(0)
            .spawn()
            .unwrap();
        struct Foreground(std::process::Child);
        impl Drop for Foreground {
            fn drop(&mut self) {
                // The group this test created for the child: nginx and its workers only.
                let _ = Command::new("kill")
                    .args(["-KILL", "--", &format!("-{}", self.0.id())])
                    .status();
                let _ = self.0.wait();
            }
        }
        let child = Foreground(child);
        let master = child.0.id() as i32;
        let pid_file = prefix.join("logs/nginx.pid");
        poll::until(LONG, "foreground nginx's pid file and workers", || {
            procs::read_pid_strict(&pid_file) == Some(master)
                && procs::workers_of(master).len() == 2
        });
        let workers = procs::workers_of(master);
        let before = sha(&prefix.join("sbin/nginx"));

        let events = Events::default();
        let err = upgrade(&Target::new(&pid_file), &options(&new_build), &events)
            .expect_err("an upgrade of a foreground nginx under a live parent must be refused");
        assert_eq!(
            err.kind,
            hotreload_core::FailureKind::Refused,
            "{err}\n{}",
            events.text()
        );
        assert!(err.error.to_string().contains("daemon"), "{err}");
        assert!(events.signals().is_empty(), "signalled: {}", events.text());
        assert_eq!(sha(&prefix.join("sbin/nginx")), before);
        assert!(!prefix.join("logs/nginx.pid.oldbin").exists());
        assert_eq!(procs::read_pid_strict(&pid_file), Some(master));
        assert_eq!(procs::workers_of(master), workers);
    });
}

/// Runs the `hotreload` CLI and returns its exit code, printing its output on failure.
fn cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(hotreload_tests::hotreload_bin())
        .args(args)
        .output()
        .expect("run hotreload");
    let text = format!(
        "hotreload {}\nexit {:?}\nstdout:\n{}\nstderr:\n{}",
        args.join(" "),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Client load that must lose nothing but nginx's own idle keep-alive resets (see
/// `real_nginx_upgrade_under_load_drops_nothing`).
fn assert_served_throughout(load: fake_nginx::load::Load) {
    let stats = load.stop();
    assert!(stats.ok > 0, "no request was served: {stats:?}");
    assert_eq!(stats.new_connection_clients.failed(), 0, "{stats:?}");
    assert_eq!(
        stats.keepalive_clients.failed(),
        stats.keepalive_clients.reset_reused_before_response,
        "{stats:?}"
    );
}

/// Issue 5 through the CLI: `upgrade --keep-old` (drained), then `rollback`: deb12u9's
/// master serves again, from the deb12u9 executable put back at its path.
#[test]
#[cfg_attr(
    missing_real_nginx,
    ignore = "needs real nginx: run scripts/install-real-servers"
)]
fn real_nginx_cli_rollback_from_drained_under_load() {
    hotreload_tests::watchdog(|| {
        let (old_build, new_build) = builds();
        let server = Server::start(&old_build);
        let old = server.master;
        let pid_file = server.pid_file().display().to_string();
        let load = fake_nginx::load::Load::start(
            fake_nginx::load::LoadConfig::new(server.addr)
                .clients(4)
                .path("/ok"),
        );
        let (code, text) = cli(&[
            "upgrade",
            "--pid-file",
            &pid_file,
            "--new-binary",
            new_build.to_str().unwrap(),
            "--keep-old",
        ]);
        assert_eq!(code, 0, "{text}\n{}", server.log());
        let (code, text) = cli(&["status", "--pid-file", &pid_file, "--json"]);
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("\"phase\":\"drained\""), "{text}");
        let (code, text) = cli(&["rollback", "--pid-file", &pid_file]);
        assert_eq!(code, 0, "{text}\n{}", server.log());
        assert_eq!(procs::read_pid_strict(&server.pid_file()), Some(old));
        assert_eq!(procs::workers_of(old).len(), 2);
        assert_eq!(
            sha(&server.binary()),
            sha(&old_build),
            "deb12u9 is not back at its path"
        );
        assert!(runs(pid(old), &old_build));
        assert_served_throughout(load);
    });
}

/// Issue 5 through the CLI, from `spawned`: the new build installed by hand, `spawn`,
/// then `rollback`: the old master takes its pid file back and the new one is gone.
#[test]
#[cfg_attr(
    missing_real_nginx,
    ignore = "needs real nginx: run scripts/install-real-servers"
)]
fn real_nginx_cli_rollback_from_spawned_under_load() {
    hotreload_tests::watchdog(|| {
        let (old_build, new_build) = builds();
        let server = Server::start(&old_build);
        let old = server.master;
        let pid_file = server.pid_file().display().to_string();
        // Install deb12u11 the way a package manager would: a complete file renamed over.
        let staged = server.dir.path().join("sbin/.nginx.new");
        fs::copy(&new_build, &staged).unwrap();
        fs::rename(&staged, server.binary()).unwrap();
        let load = fake_nginx::load::Load::start(
            fake_nginx::load::LoadConfig::new(server.addr)
                .clients(4)
                .path("/ok"),
        );
        let (code, text) = cli(&["spawn", "--pid-file", &pid_file]);
        assert_eq!(code, 0, "{text}\n{}", server.log());
        let new = procs::read_pid_strict(&server.pid_file()).expect("new master's pid file");
        assert_ne!(new, old);
        assert!(runs(pid(new), &new_build), "the new master is not deb12u11");
        let (code, text) = cli(&["rollback", "--pid-file", &pid_file]);
        assert_eq!(code, 0, "{text}\n{}", server.log());
        wait_gone(pid(new));
        assert_eq!(procs::read_pid_strict(&server.pid_file()), Some(old));
        assert!(!server.pid_file().with_extension("pid.oldbin").exists());
        assert!(runs(pid(old), &old_build));
        assert_served_throughout(load);
    });
}
