//! `hotreload_core` against the real Debian nginx builds that `scripts/install-real-servers`
//! unpacks (deb12u9 upgraded to deb12u11): the pipeline commits, and a kept upgrade rolls
//! back from a fresh process. Missing builds skip the tests with a message, unless
//! `HOTRELOAD_REQUIRE_REAL_SERVERS=1`.
//!
//! Every process a test starts is in the session of the master it started (nginx
//! daemonizes with setsid; new masters and workers stay in it); `Server`'s drop SIGKILLs
//! that session, panicking or not.

mod core_common;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use core_common::{op_options, options, sha, wait_gone, Events, LONG};
use fake_nginx::harness;
use hotreload_core::{upgrade, NoopObserver, Outcome, Pid, Signal, State, Target};

fn build(version: &str) -> PathBuf {
    let dir = std::env::var_os("HOTRELOAD_REAL_SERVERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/real-servers"));
    dir.join(format!("nginx-{version}/usr/sbin/nginx"))
}

/// (old, new) builds, or `None` after saying why the test is skipped.
fn builds() -> Option<(PathBuf, PathBuf)> {
    let (old, new) = (build("1.22.1-9+deb12u9"), build("1.22.1-9+deb12u11"));
    if old.is_file() && new.is_file() {
        return Some((old, new));
    }
    let msg = format!(
        "real nginx not installed ({} / {}); run scripts/install-real-servers",
        old.display(),
        new.display()
    );
    assert!(
        std::env::var("HOTRELOAD_REQUIRE_REAL_SERVERS").as_deref() != Ok("1"),
        "HOTRELOAD_REQUIRE_REAL_SERVERS=1 but {msg}"
    );
    eprintln!("SKIPPED: {msg}");
    None
}

/// A real nginx running a copy of a build at `<prefix>/sbin/nginx`.
struct Server {
    master: i32,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let Some(sid) = stat_field(self.master, 3) else {
            return;
        };
        for p in fs::read_dir("/proc").unwrap().flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
                continue;
            };
            if stat_field(pid, 3) == Some(sid) {
                let _ = harness::kill(pid, fake_nginx::Signal::Kill);
            }
        }
    }
}

/// Field `n` (0 = state, 1 = ppid, 2 = pgrp, 3 = session) after the command name.
fn stat_field(pid: i32, n: usize) -> Option<i32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(n)?
        .parse()
        .ok()
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
                harness::wait_until(LONG, "nginx's pid file and workers", || {
                    master = harness::read_pid_file(&pid_file).unwrap_or(0);
                    master > 1 && harness::workers_of(master).len() == 2
                });
                return Server {
                    master,
                    addr: ([127, 0, 0, 1], port).into(),
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
fn real_nginx_is_upgraded_and_committed() {
    let Some((old_build, new_build)) = builds() else {
        return;
    };
    let server = Server::start(&old_build);
    let old = pid(server.master);
    let target = Target::new(server.pid_file());
    let events = Events::default();
    let report = upgrade(&target, &options(&new_build), &events)
        .unwrap_or_else(|e| panic!("{e}\nevents:\n{}\nlog:\n{}", events.text(), server.log()));
    assert_eq!(report.outcome, Outcome::Committed);
    let new = report.new_pid.unwrap();
    wait_gone(old);
    assert_eq!(harness::read_pid_file(&server.pid_file()), Some(new.get()));
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
}

#[test]
fn real_nginx_kept_upgrade_is_rolled_back_by_a_fresh_process() {
    let Some((old_build, new_build)) = builds() else {
        return;
    };
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
    assert_eq!(harness::read_pid_file(&server.pid_file()), Some(old.get()));
    assert_eq!(harness::workers_of(old.get()).len(), 2);
    assert!(runs(old, &old_build));
    assert_eq!(
        sha(&server.binary()),
        sha(&old_build),
        "the old build is not back"
    );
    assert!(server.get_ok());
}
