//! Issue 12 under a real systemd: the distribution's systemd as PID 1 of a sandbox of its own
//! (`shared/tools/systemd-sandbox`), running fake-nginx from the units operators write.
//!
//! The server runs inside the sandbox, and so does `hotreload`: the sandbox has its own pid
//! namespace, so the pids in the pid file (and systemd's MainPID) are the sandbox's, and
//! `systemctl` must talk to the sandbox's systemd. The file system and loopback are shared, so
//! the test reads pid files and sends requests from outside. Pid files live in the test's
//! temporary prefix: the sandbox's /run is private.
//!
//! Each test boots its own sandbox (its own ports, prefixes and pid files) and stops it in a
//! guard, even on panic: stopping the sandbox ends every process in it.
//!
//! Skipped (`missing_systemd`, set by `tests/build.rs`) when systemd or unshare is missing
//! and neither `CI=true` nor `HOTRELOAD_REQUIRE_REAL_SERVERS=1` is set.

use std::fs;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use fake_nginx::load::{Load, LoadConfig};
use hotreload_tests::server::{fake_variant, wait_for, Kind, FAKE_NEW, FAKE_OLD};
use serde_json::Value;

/// Debian's global directives on the command line (its `nginx.service`).
const DEBIAN_GLOBALS: &str = "daemon on; master_process on;";

fn sandbox_tool() -> PathBuf {
    std::env::var_os("HOTRELOAD_SYSTEMD_SANDBOX")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/tools/systemd-sandbox")
        })
}

/// A running sandbox; dropping it stops it (and every process in it).
struct Sandbox {
    id: String,
    _units: tempfile::TempDir,
}

impl Sandbox {
    /// Boots a systemd running the units `(file name, text)`.
    fn start(units: &[(&str, String)]) -> Sandbox {
        let dir = tempfile::Builder::new()
            .prefix("systemd-units-")
            .tempdir()
            .unwrap();
        for (name, text) in units {
            fs::write(dir.path().join(name), text).unwrap();
        }
        let out = Command::new(sandbox_tool())
            .arg("start")
            .arg(dir.path())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", sandbox_tool().display()));
        assert!(
            out.status.success(),
            "systemd-sandbox start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Sandbox {
            id: String::from_utf8_lossy(&out.stdout).trim().to_string(),
            _units: dir,
        }
    }

    fn exec(&self, args: &[&str]) -> Output {
        Command::new(sandbox_tool())
            .args(["exec", &self.id])
            .args(args)
            .output()
            .unwrap()
    }

    /// One property of a unit (`systemctl show -p P --value`).
    fn show(&self, unit: &str, property: &str) -> String {
        let out = self.exec(&["systemctl", "show", "-p", property, "--value", unit]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn main_pid(&self, unit: &str) -> i32 {
        self.show(unit, "MainPID").parse().unwrap_or(0)
    }

    /// Waits until `unit` is active with its main pid in `site`'s pid file.
    ///
    /// Without `PIDFile=`, MainPID is systemd's guess, made once when `ExecStart=` exits: it
    /// finds no main pid when two processes of the unit are its children at that instant
    /// (a loaded machine can show that). The tests of such units need the guess made (it is
    /// what makes retiring the old master end the service), so the unit is restarted, a few
    /// times at most, until systemd has one.
    fn wait_active(&self, unit: &str, site: &Site) -> i32 {
        for _ in 0..3 {
            let settled = wait_for(&format!("{unit} to be active"), || {
                match (self.show(unit, "ActiveState").as_str(), site.pid()) {
                    ("active", Some(pid)) => Ok((pid, self.main_pid(unit))),
                    (state, pid) => Err(format!(
                        "ActiveState={state}, pid file {pid:?}; {}",
                        self.status(unit)
                    )),
                }
            });
            let unguessed = settled.1 == 0 && self.show(unit, "PIDFile").is_empty();
            if !unguessed {
                break;
            }
            let out = self.exec(&["systemctl", "restart", unit]);
            assert!(out.status.success(), "systemctl restart {unit}: {out:?}");
        }
        wait_for(&format!("{unit} to be active"), || {
            let (state, main) = (self.show(unit, "ActiveState"), self.main_pid(unit));
            match site.pid() {
                Some(pid) if state == "active" && pid == main => Ok(pid),
                pid => Err(format!(
                    "ActiveState={state} MainPID={main}, pid file {pid:?}; {}",
                    self.status(unit)
                )),
            }
        })
    }

    fn status(&self, unit: &str) -> String {
        let out = self.exec(&["systemctl", "status", "--no-pager", unit]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `hotreload ARGS` inside the sandbox.
    fn hotreload(&self, args: &[&str]) -> Run {
        let bin = hotreload_tests::hotreload_bin();
        let mut all = vec![bin.to_str().unwrap()];
        all.extend(args);
        let out = self.exec(&all);
        Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Whether process `pid` (a pid of the sandbox) runs and is no zombie.
    fn alive(&self, pid: i32) -> bool {
        let out = self.exec(&["cat", &format!("/proc/{pid}/stat")]);
        let stat = String::from_utf8_lossy(&out.stdout).into_owned();
        out.status.success() && !stat.rsplit(')').next().unwrap_or("").starts_with(" Z")
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = Command::new(sandbox_tool())
            .args(["stop", &self.id])
            .status();
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "\n--- exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Run {
    #[track_caller]
    fn expect_code(&self, code: i32) -> &Run {
        assert_eq!(self.code, Some(code), "wrong exit code{self}");
        self
    }

    fn lines(&self, kind: &str) -> Vec<Value> {
        self.stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|l| l["type"] == kind)
            .map(|l| l["data"].clone())
            .collect()
    }

    fn signals(&self) -> usize {
        self.lines("signalled").len()
    }
}

/// A fake-nginx prefix (`sbin/nginx`, `conf/nginx.conf`, `logs/`) on a port of its own.
struct Site {
    dir: tempfile::TempDir,
    port: u16,
}

impl Site {
    /// `daemon` is left out of the file when `None` (Debian's nginx.conf sets none: its
    /// unit passes it with -g).
    fn new(daemon: Option<bool>) -> Site {
        Site::with(&fake_variant(FAKE_OLD, &[]), daemon)
    }

    /// A site running `old` (fake-nginx or real nginx: the config suits both; fake-nginx
    /// ignores the temp paths real nginx needs inside the prefix).
    fn with(old: &Path, daemon: Option<bool>) -> Site {
        let dir = tempfile::Builder::new()
            .prefix("systemd-site-")
            .tempdir()
            .unwrap();
        for sub in ["sbin", "conf", "logs", "tmp"] {
            fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        fs::copy(old, dir.path().join("sbin/nginx")).unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let daemon = match daemon {
            Some(on) => format!("daemon {};\n", if on { "on" } else { "off" }),
            None => String::new(),
        };
        fs::write(
            dir.path().join("conf/nginx.conf"),
            format!(
                "worker_processes 2;\n{daemon}pid logs/nginx.pid;\nerror_log logs/error.log notice;\n\
                 events {{ worker_connections 64; }}\n\
                 http {{ access_log off;\n\
                 client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;\n\
                 uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;\n\
                 server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"ok\\n\"; }} }} }}\n"
            ),
        )
        .unwrap();
        Site { dir, port }
    }

    fn prefix(&self) -> String {
        self.dir.path().display().to_string()
    }

    fn pid_file(&self) -> String {
        format!("{}/logs/nginx.pid", self.prefix())
    }

    fn exe(&self) -> String {
        format!("{}/sbin/nginx", self.prefix())
    }

    fn pid(&self) -> Option<i32> {
        hotreload_tests::procs::read_pid(Path::new(&self.pid_file()))
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `nginx -p PREFIX/ -c conf/nginx.conf` and `extra`, as a unit's Exec line.
    fn command(&self, extra: &str) -> String {
        format!(
            "{} -p {}/ -c conf/nginx.conf {extra}",
            self.exe(),
            self.prefix()
        )
    }

    /// Debian's `nginx.service` shape, pointed at this prefix; `pid_file` is the unit's
    /// `PIDFile=` line (`None`: none).
    fn debian_unit(&self, pid_file: Option<&str>) -> String {
        let g = format!("-g '{DEBIAN_GLOBALS}'");
        format!(
            "[Unit]\nDescription=fake nginx, Debian's unit shape\nDefaultDependencies=no\n\n\
             [Service]\nType=forking\n{}\
             ExecStartPre={}\nExecStart={}\nExecReload={}\n\
             ExecStop=-/sbin/start-stop-daemon --quiet --stop --retry QUIT/5 --pidfile {}\n\
             TimeoutStopSec=5\nKillMode=mixed\n",
            pid_file.map_or(String::new(), |f| format!("PIDFile={f}\n")),
            self.command(&format!("-t -q {g}")),
            self.command(&g),
            self.command(&format!("{g} -s reload")),
            self.pid_file(),
        )
    }

    fn serves(&self) -> Result<String, String> {
        let mut s = TcpStream::connect(self.addr()).map_err(|e| e.to_string())?;
        use std::io::{Read, Write};
        s.write_all(b"GET / HTTP/1.0\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut text = String::new();
        s.read_to_string(&mut text).map_err(|e| e.to_string())?;
        Ok(text)
    }

    fn error_log(&self) -> String {
        fs::read_to_string(format!("{}/logs/error.log", self.prefix())).unwrap_or_default()
    }

    fn journal_exists(&self) -> bool {
        hotreload_core::Target::new(self.pid_file())
            .journal_file()
            .is_ok_and(|j| j.exists())
    }
}

fn new_build() -> String {
    fake_variant(FAKE_NEW, &[]).display().to_string()
}

/// Debian's unit: upgraded under load with no failed request; MainPID follows the new master
/// (and hotreload says so); then `systemctl reload` reaches the new master and `systemctl
/// stop` stops it.
#[test]
#[cfg_attr(
    missing_systemd,
    ignore = "needs systemd and unshare (systemd-sandbox)"
)]
fn debian_unit_upgrades_under_load_main_pid_follows_and_reload_and_stop_work() {
    let site = Site::new(None);
    let pid_file = site.pid_file();
    let sandbox = Sandbox::start(&[("web.service", site.debian_unit(Some(&pid_file)))]);
    let old = sandbox.wait_active("web.service", &site);
    let load = Load::start(LoadConfig::new(site.addr()).clients(4));
    let mut args = vec!["upgrade", "--pid-file", &pid_file, "--json"];
    let new = new_build();
    args.extend(["--new-binary", &new]);
    let run = sandbox.hotreload(&args);
    let stats = load.stop();
    run.expect_code(0);
    assert_eq!(stats.failed, 0, "failed requests: {:?}{run}", stats.errors);
    assert!(
        stats.versions.keys().any(|v| v.contains(FAKE_NEW)),
        "the new build never answered: {:?}",
        stats.versions
    );
    let new_master = site.pid().unwrap();
    assert_ne!(new_master, old, "{run}");
    assert_eq!(sandbox.main_pid("web.service"), new_master, "{run}");
    assert_eq!(sandbox.show("web.service", "ActiveState"), "active");
    let followed = format!("MainPID of web.service is the new master {new_master}");
    assert!(
        run.lines("observed")
            .iter()
            .any(|o| o["what"].as_str().unwrap_or("").contains(&followed)),
        "hotreload did not report {followed:?}{run}"
    );
    // status shows the unit.
    let status = sandbox.hotreload(&["status", "--pid-file", &pid_file, "--json"]);
    status.expect_code(0);
    let line: Value = serde_json::from_str(status.stdout.trim()).unwrap();
    let obj = &line["data"]["status"];
    assert_eq!(obj["systemd"]["unit"], "web.service", "{status}");
    assert_eq!(obj["systemd"]["main_pid"], new_master, "{status}");
    assert_eq!(obj["systemd"]["type"], "forking", "{status}");
    assert_eq!(obj["systemd"]["pid_file"], pid_file.as_str(), "{status}");
    assert_eq!(obj["systemd"]["active_state"], "active", "{status}");

    // `systemctl reload` (ExecReload= `nginx -s reload`) reaches the new master.
    let reloads = site.error_log().matches("reconfiguring").count();
    let out = sandbox.exec(&["systemctl", "reload", "web.service"]);
    assert!(out.status.success(), "{}", sandbox.status("web.service"));
    wait_for("the new master to reconfigure", || {
        (site.error_log().matches("reconfiguring").count() > reloads)
            .then_some(())
            .ok_or_else(|| site.error_log())
    });
    assert_eq!(sandbox.main_pid("web.service"), new_master);
    assert!(site.serves().is_ok_and(|r| r.contains(FAKE_NEW)));

    // `systemctl stop` stops it.
    let out = sandbox.exec(&["systemctl", "stop", "web.service"]);
    assert!(out.status.success(), "{}", sandbox.status("web.service"));
    assert_eq!(sandbox.show("web.service", "ActiveState"), "inactive");
    assert!(
        !sandbox.alive(new_master),
        "new master {new_master} still runs"
    );
    assert!(site.serves().is_err(), "still serving after systemctl stop");
}

/// Rollback from spawned and from drained under systemd: MainPID stays the old master, the
/// service never ends. Spawned: step by step after installing the new build by hand (as the
/// README shows); drained: `upgrade --keep-old`, whose rollback restores the executable.
#[test]
#[cfg_attr(
    missing_systemd,
    ignore = "needs systemd and unshare (systemd-sandbox)"
)]
fn rollback_from_spawned_and_drained_under_systemd() {
    let site = Site::new(None);
    let pid_file = site.pid_file();
    let sandbox = Sandbox::start(&[("web.service", site.debian_unit(Some(&pid_file)))]);
    let old = sandbox.wait_active("web.service", &site);
    let new = new_build();
    let original = fs::read(site.exe()).unwrap();
    let install = |from: &Path| {
        let staged = format!("{}.staged", site.exe());
        fs::copy(from, &staged).unwrap();
        fs::rename(&staged, site.exe()).unwrap();
    };
    let saved = format!("{}/old-nginx", site.prefix());
    fs::copy(site.exe(), &saved).unwrap();
    for keep_old in [false, true] {
        if keep_old {
            let mut args = vec!["upgrade", "--pid-file", &pid_file, "--new-binary", &new];
            args.push("--keep-old");
            sandbox.hotreload(&args).expect_code(0);
        } else {
            install(Path::new(&new));
            sandbox
                .hotreload(&["spawn", "--pid-file", &pid_file])
                .expect_code(0);
        }
        let phase = if keep_old { "drained" } else { "spawned" };
        // Spawned, both builds answer: until the new one does.
        wait_for(
            &format!("the new build to answer when {phase}"),
            || match site.serves() {
                Ok(r) if r.contains(FAKE_NEW) => Ok(()),
                other => Err(format!("{other:?}")),
            },
        );
        assert_eq!(sandbox.main_pid("web.service"), old, "when {phase}");
        let run = sandbox.hotreload(&["rollback", "--pid-file", &pid_file]);
        run.expect_code(0);
        assert_eq!(site.pid(), Some(old), "{run}");
        assert_eq!(sandbox.main_pid("web.service"), old, "{run}");
        assert_eq!(
            sandbox.show("web.service", "ActiveState"),
            "active",
            "{run}"
        );
        wait_for("the old build to serve alone", || match site.serves() {
            Ok(r) if r.contains(FAKE_OLD) => Ok(()),
            other => Err(format!("{other:?}")),
        });
        assert!(
            !site.journal_exists(),
            "journal left after the rollback{run}"
        );
        if keep_old {
            assert_eq!(
                fs::read(site.exe()).unwrap(),
                original,
                "executable not restored{run}"
            );
        } else {
            // Installed by hand, put back by hand.
            install(Path::new(&saved));
        }
    }
}

/// `Type=forking` without `PIDFile=`, or with another file than nginx's: refused before any
/// change (exit 3), naming the line to add; the service stays active with the same master.
#[test]
#[cfg_attr(
    missing_systemd,
    ignore = "needs systemd and unshare (systemd-sandbox)"
)]
fn units_without_the_pid_file_are_refused_before_any_change() {
    let none = Site::new(None);
    let other = Site::new(None);
    let elsewhere = format!("{}/logs/other.pid", other.prefix());
    let sandbox = Sandbox::start(&[
        ("none.service", none.debian_unit(None)),
        ("other.service", other.debian_unit(Some(&elsewhere))),
    ]);
    // Without PIDFile=, systemd guesses the main process (GuessMainPID=yes): the master.
    let none_master = wait_for("none.service to be active", || {
        match (
            none.pid(),
            sandbox.show("none.service", "ActiveState").as_str(),
        ) {
            (Some(p), "active") if sandbox.main_pid("none.service") == p => Ok(p),
            state => Err(format!("{state:?}: {}", sandbox.status("none.service"))),
        }
    });
    // systemd waits for a PIDFile= that nginx never writes: written here for the unit, as
    // a wrapper script would, so that the unit comes up.
    let other_master = wait_for("nginx of other.service to write its pid file", || {
        other.pid().ok_or_else(|| sandbox.status("other.service"))
    });
    fs::write(&elsewhere, format!("{other_master}\n")).unwrap();
    wait_for("other.service to be active", || {
        (sandbox.show("other.service", "ActiveState") == "active")
            .then_some(())
            .ok_or_else(|| sandbox.status("other.service"))
    });
    let new = new_build();
    for (unit, site, master, needle) in [
        (
            "none.service",
            &none,
            none_master,
            "has no PIDFile=".to_string(),
        ),
        (
            "other.service",
            &other,
            other_master,
            format!("PIDFile={elsewhere} is not this server's pid file"),
        ),
    ] {
        let exe = fs::read(site.exe()).unwrap();
        let pid_file = site.pid_file();
        let args = vec![
            "upgrade",
            "--pid-file",
            &pid_file,
            "--new-binary",
            &new,
            "--json",
        ];
        let run = sandbox.hotreload(&args);
        run.expect_code(3);
        assert!(run.stderr.contains(&needle), "stderr lacks {needle:?}{run}");
        let fix = format!("`PIDFile={pid_file}`");
        assert!(
            run.stderr.contains(&fix),
            "stderr lacks the fix {fix:?}{run}"
        );
        assert_eq!(run.signals(), 0, "signals sent{run}");
        assert_eq!(
            fs::read(site.exe()).unwrap(),
            exe,
            "executable changed{run}"
        );
        assert!(!site.journal_exists(), "{run}");
        assert_eq!(site.pid(), Some(master), "{run}");
        assert_eq!(sandbox.main_pid(unit), master, "{run}");
        assert_eq!(sandbox.show(unit, "ActiveState"), "active", "{run}");
        assert!(site.serves().is_ok_and(|r| r.contains(FAKE_OLD)), "{run}");
    }
}

/// `Type=simple` with `daemon off` (the shape of many hand-written units): refused in the
/// preflight (exit 3, before any signal or wait) explaining what to change.
#[test]
#[cfg_attr(
    missing_systemd,
    ignore = "needs systemd and unshare (systemd-sandbox)"
)]
fn simple_unit_with_daemon_off_is_refused_in_preflight() {
    let site = Site::new(None);
    let unit = format!(
        "[Unit]\nDefaultDependencies=no\n\n[Service]\nType=simple\nExecStart={}\n",
        site.command("-g 'daemon off;'")
    );
    let sandbox = Sandbox::start(&[("web.service", unit)]);
    let master = sandbox.wait_active("web.service", &site);
    let exe = fs::read(site.exe()).unwrap();
    let pid_file = site.pid_file();
    let new = new_build();
    let args = vec![
        "upgrade",
        "--pid-file",
        &pid_file,
        "--new-binary",
        &new,
        "--spawn-timeout",
        "60s",
        "--json",
    ];
    let run = sandbox.hotreload(&args);
    run.expect_code(3);
    for needle in [
        "daemon off",
        "Type=forking",
        "PIDFile=",
        "roll the container",
    ] {
        assert!(run.stderr.contains(needle), "stderr lacks {needle:?}{run}");
    }
    // Refused by the preflight's check, not by a spawn that timed out.
    let checks = run.lines("check");
    assert!(
        checks
            .iter()
            .any(|c| c["name"] == "spawn-not-ignored" && c["ok"] == false),
        "{run}"
    );
    assert!(
        run.lines("step_started")
            .iter()
            .all(|s| s["step"] != "spawn"),
        "{run}"
    );
    assert_eq!(run.signals(), 0, "signals sent{run}");
    assert_eq!(fs::read(site.exe()).unwrap(), exe, "{run}");
    assert_eq!(sandbox.main_pid("web.service"), master, "{run}");
    assert_eq!(
        sandbox.show("web.service", "ActiveState"),
        "active",
        "{run}"
    );
}

/// Real nginx (Debian's builds) in Debian's unit: upgraded under load with no failed
/// request, MainPID following the new master, which runs the new build.
#[test]
#[cfg_attr(
    missing_real_nginx,
    ignore = "needs real nginx: run scripts/install-real-servers"
)]
#[cfg_attr(
    missing_systemd,
    ignore = "needs systemd and unshare (systemd-sandbox)"
)]
fn real_nginx_debian_unit_upgrades_and_main_pid_follows() {
    let builds = Kind::RealNginx.builds();
    let site = Site::with(&builds.old, None);
    let pid_file = site.pid_file();
    let sandbox = Sandbox::start(&[("nginx.service", site.debian_unit(Some(&pid_file)))]);
    let old = sandbox.wait_active("nginx.service", &site);
    let load = Load::start(LoadConfig::new(site.addr()).clients(4));
    let new = builds.new.display().to_string();
    let args = vec![
        "upgrade",
        "--pid-file",
        &pid_file,
        "--new-binary",
        &new,
        "--json",
    ];
    let run = sandbox.hotreload(&args);
    let stats = load.stop();
    run.expect_code(0);
    assert_eq!(stats.failed, 0, "failed requests: {:?}{run}", stats.errors);
    assert!(stats.ok > 0, "no request answered{run}");
    let new_master = site.pid().unwrap();
    assert_ne!(new_master, old, "{run}");
    assert_eq!(sandbox.main_pid("nginx.service"), new_master, "{run}");
    assert_eq!(sandbox.show("nginx.service", "ActiveState"), "active");
    let same = sandbox.exec(&["cmp", &format!("/proc/{new_master}/exe"), &new]);
    assert!(
        same.status.success(),
        "the new master does not run the new build{run}"
    );
    let out = sandbox.exec(&["systemctl", "stop", "nginx.service"]);
    assert!(out.status.success(), "{}", sandbox.status("nginx.service"));
    assert!(
        !sandbox.alive(new_master),
        "new master {new_master} still runs"
    );
}

/// Real nginx with `daemon off;` in its configuration file (nothing on the command line),
/// under `Type=simple`: the setting is read from `nginx -T` and the upgrade refused in
/// preflight (exit 3), changing nothing.
#[test]
#[cfg_attr(
    missing_real_nginx,
    ignore = "needs real nginx: run scripts/install-real-servers"
)]
#[cfg_attr(
    missing_systemd,
    ignore = "needs systemd and unshare (systemd-sandbox)"
)]
fn real_nginx_daemon_off_in_the_config_is_refused_under_type_simple() {
    let builds = Kind::RealNginx.builds();
    let site = Site::with(&builds.old, Some(false));
    let unit = format!(
        "[Unit]\nDefaultDependencies=no\n\n[Service]\nType=simple\nExecStart={}\n",
        site.command("")
    );
    let sandbox = Sandbox::start(&[("nginx.service", unit)]);
    let master = sandbox.wait_active("nginx.service", &site);
    let exe = fs::read(site.exe()).unwrap();
    let pid_file = site.pid_file();
    let new = builds.new.display().to_string();
    let run = sandbox.hotreload(&[
        "upgrade",
        "--pid-file",
        &pid_file,
        "--new-binary",
        &new,
        "--json",
    ]);
    run.expect_code(3);
    let conf = format!(
        "in {}/conf/nginx.conf, as `nginx -T` shows it",
        site.prefix()
    );
    for needle in ["daemon off", conf.as_str(), "Type=forking"] {
        assert!(run.stderr.contains(needle), "stderr lacks {needle:?}{run}");
    }
    assert_eq!(run.signals(), 0, "signals sent{run}");
    assert_eq!(fs::read(site.exe()).unwrap(), exe, "{run}");
    assert_eq!(sandbox.main_pid("nginx.service"), master, "{run}");
    assert_eq!(
        sandbox.show("nginx.service", "ActiveState"),
        "active",
        "{run}"
    );
}

/// Step by step (`spawn`, `drain`, then `commit`) on a unit without `PIDFile=`: the commit
/// refuses (exit 3) before the old master is told to stop, the service stays active on the
/// old master, and a rollback takes the server back.
#[test]
#[cfg_attr(
    missing_systemd,
    ignore = "needs systemd and unshare (systemd-sandbox)"
)]
fn step_commit_is_refused_when_it_would_end_the_service() {
    let site = Site::new(None);
    let pid_file = site.pid_file();
    let sandbox = Sandbox::start(&[("web.service", site.debian_unit(None))]);
    let old = sandbox.wait_active("web.service", &site);
    let saved = format!("{}/old-nginx", site.prefix());
    fs::copy(site.exe(), &saved).unwrap();
    let staged = format!("{}.staged", site.exe());
    fs::copy(new_build(), &staged).unwrap();
    fs::rename(&staged, site.exe()).unwrap();
    for step in ["spawn", "drain"] {
        sandbox
            .hotreload(&[step, "--pid-file", &pid_file])
            .expect_code(0);
    }
    let run = sandbox.hotreload(&["commit", "--pid-file", &pid_file, "--json"]);
    run.expect_code(3);
    assert!(run.stderr.contains("has no PIDFile="), "{run}");
    assert_eq!(run.signals(), 0, "signals sent{run}");
    assert_eq!(sandbox.main_pid("web.service"), old, "{run}");
    assert_eq!(
        sandbox.show("web.service", "ActiveState"),
        "active",
        "{run}"
    );
    assert!(sandbox.alive(old), "{run}");
    wait_for("the new build to serve", || match site.serves() {
        Ok(r) if r.contains(FAKE_NEW) => Ok(()),
        other => Err(format!("{other:?}")),
    });
    let back = sandbox.hotreload(&["rollback", "--pid-file", &pid_file]);
    back.expect_code(0);
    assert_eq!(site.pid(), Some(old), "{back}");
    assert_eq!(sandbox.main_pid("web.service"), old, "{back}");
    assert_eq!(
        sandbox.show("web.service", "ActiveState"),
        "active",
        "{back}"
    );
}

/// Item 3 outside systemd: `daemon off` whose first parent has exited (the master is PID
/// 1's child, a session leader: what the parent-pid heuristic took for daemonized). nginx
/// takes USR2 there but ignores WINCH; hotreload must refuse in preflight (exit 3) from
/// the `daemon off` in the configuration, before any signal.
#[test]
fn orphaned_daemon_off_is_refused_in_preflight() {
    use hotreload_tests::server::{Options, Server};
    let builds = Kind::FakeNginx.builds();
    let server = Server::start(Kind::FakeNginx, &builds, Options::ForegroundOrphaned);
    let pid_file = server.pid_file().display().to_string();
    let master = server.pid("A");
    let exe = fs::read(server.exe_path()).unwrap();
    let new = new_build();
    let out = Command::new(hotreload_tests::hotreload_bin())
        .args([
            "upgrade",
            "--pid-file",
            &pid_file,
            "--new-binary",
            &new,
            "--json",
        ])
        .output()
        .unwrap();
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    run.expect_code(3);
    assert!(run.stderr.contains("daemon off"), "{run}");
    assert!(
        run.stderr
            .contains(&format!("in {}", server.conf_path().display())),
        "the refusal does not name the configuration{run}"
    );
    assert_eq!(run.signals(), 0, "signals sent{run}");
    assert_eq!(fs::read(server.exe_path()).unwrap(), exe, "{run}");
    assert_eq!(server.pid("A"), master, "{run}");
}

/// unicorn or gunicorn at `/usr/bin`, or `None` (after saying why) when it is not installed
/// and real servers are not required.
fn interpreter_server(name: &str) -> Option<String> {
    let path = format!("/usr/bin/{name}");
    if Path::new(&path).is_file() {
        return Some(path);
    }
    assert!(
        std::env::var("HOTRELOAD_REQUIRE_REAL_SERVERS").as_deref() != Ok("1"),
        "HOTRELOAD_REQUIRE_REAL_SERVERS=1 but {path} is not installed"
    );
    eprintln!("SKIPPED: {path} not installed");
    None
}

/// A tiny app for unicorn (`config.ru`) and gunicorn (`app.py`) in a temp dir, on a port
/// of its own, with its pid file `app.pid` there.
struct App {
    dir: tempfile::TempDir,
    port: u16,
}

impl App {
    fn new() -> App {
        let dir = tempfile::Builder::new()
            .prefix("systemd-app-")
            .tempdir()
            .unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let p = dir.path().display().to_string();
        fs::write(
            dir.path().join("config.ru"),
            "run lambda { |env| [200, { \"content-type\" => \"text/plain\", \
             \"content-length\" => \"3\" }, [\"ok\\n\"]] }\n",
        )
        .unwrap();
        fs::write(
            dir.path().join("u.conf.rb"),
            format!(
                "listen \"127.0.0.1:{port}\"\nworker_processes 2\npid \"{p}/app.pid\"\n\
                 stderr_path \"{p}/app.log\"\nstdout_path \"{p}/app.log\"\nworking_directory \"{p}\"\n"
            ),
        )
        .unwrap();
        fs::write(
            dir.path().join("app.py"),
            "def app(environ, start_response):\n    start_response(\"200 OK\", \
             [(\"Content-Type\", \"text/plain\"), (\"Content-Length\", \"3\")])\n    return [b\"ok\\n\"]\n",
        )
        .unwrap();
        App { dir, port }
    }

    fn path(&self) -> String {
        self.dir.path().display().to_string()
    }

    fn pid_file(&self) -> String {
        format!("{}/app.pid", self.path())
    }

    fn pid(&self) -> Option<i32> {
        hotreload_tests::procs::read_pid(Path::new(&self.pid_file()))
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The README's unit: `Type=forking`, `PIDFile=` its pid file, daemonized with `-D`.
    fn unit(&self, exec_start: &str) -> String {
        format!(
            "[Unit]\nDefaultDependencies=no\n\n[Service]\nType=forking\nPIDFile={}\n\
             WorkingDirectory={}\nExecStart={exec_start}\nExecReload=/bin/kill -HUP $MAINPID\n\
             KillMode=mixed\n",
            self.pid_file(),
            self.path()
        )
    }

    fn wait_active(&self, sandbox: &Sandbox, unit: &str) -> i32 {
        wait_for(&format!("{unit} to be active"), || {
            let main = sandbox.main_pid(unit);
            match self.pid() {
                Some(p) if p == main && sandbox.show(unit, "ActiveState") == "active" => Ok(p),
                p => Err(format!("pid file {p:?}: {}", sandbox.status(unit))),
            }
        })
    }
}

/// The README's unicorn unit: `hotreload upgrade --flavor unicorn --swap none` under load,
/// no failed request, MainPID following the new master.
#[test]
#[cfg_attr(
    missing_systemd,
    ignore = "needs systemd and unshare (systemd-sandbox)"
)]
fn unicorn_unit_upgrades_under_load_and_main_pid_follows() {
    let Some(unicorn) = interpreter_server("unicorn") else {
        return;
    };
    let app = App::new();
    let exec = format!(
        "{unicorn} -D -c {p}/u.conf.rb {p}/config.ru",
        p = app.path()
    );
    let sandbox = Sandbox::start(&[("app.service", app.unit(&exec))]);
    let old = app.wait_active(&sandbox, "app.service");
    let load = Load::start(LoadConfig::new(app.addr()).clients(4).keepalive(false));
    let pid_file = app.pid_file();
    let run = sandbox.hotreload(&[
        "upgrade",
        "--flavor",
        "unicorn",
        "--swap",
        "none",
        "--pid-file",
        &pid_file,
        "--json",
    ]);
    let stats = load.stop();
    run.expect_code(0);
    assert!(stats.ok > 0, "no request answered{run}");
    assert_eq!(stats.failed, 0, "failed requests: {:?}{run}", stats.errors);
    let new_master = app.pid().unwrap();
    assert_ne!(new_master, old, "{run}");
    assert_eq!(sandbox.main_pid("app.service"), new_master, "{run}");
    assert_eq!(
        sandbox.show("app.service", "ActiveState"),
        "active",
        "{run}"
    );
}

/// gunicorn under systemd: its new master renames `app.pid.2` to the pid file only after the
/// old master exited, too late for systemd (measured: the unit ends). hotreload refuses the
/// upgrade before any change, and a step-by-step commit before the old master is stopped;
/// the service stays active.
#[test]
#[cfg_attr(
    missing_systemd,
    ignore = "needs systemd and unshare (systemd-sandbox)"
)]
fn gunicorn_unit_is_refused_before_the_retire() {
    let Some(gunicorn) = interpreter_server("gunicorn") else {
        return;
    };
    let app = App::new();
    let exec = format!(
        "{gunicorn} -D -w 2 -b 127.0.0.1:{} -p {} --chdir {p} --error-logfile {p}/app.log app:app",
        app.port,
        app.pid_file(),
        p = app.path()
    );
    let sandbox = Sandbox::start(&[("app.service", app.unit(&exec))]);
    let old = app.wait_active(&sandbox, "app.service");
    let pid_file = app.pid_file();
    let flavor = ["--flavor", "gunicorn", "--pid-file", &pid_file];
    let run = sandbox.hotreload(&[&["upgrade", "--swap", "none", "--json"][..], &flavor].concat());
    run.expect_code(3);
    assert!(
        run.stderr.contains("systemctl restart app.service"),
        "{run}"
    );
    assert_eq!(run.signals(), 0, "signals sent{run}");
    for step in ["spawn", "drain"] {
        sandbox
            .hotreload(&[&[step][..], &flavor].concat())
            .expect_code(0);
    }
    let commit = sandbox.hotreload(&[&["commit", "--json"][..], &flavor].concat());
    commit.expect_code(3);
    assert_eq!(commit.signals(), 0, "signals sent{commit}");
    assert_eq!(sandbox.main_pid("app.service"), old, "{commit}");
    assert_eq!(
        sandbox.show("app.service", "ActiveState"),
        "active",
        "{commit}"
    );
    sandbox
        .hotreload(&[&["rollback"][..], &flavor].concat())
        .expect_code(0);
    assert_eq!(app.pid(), Some(old));
    assert_eq!(sandbox.main_pid("app.service"), old);
    assert_eq!(sandbox.show("app.service", "ActiveState"), "active");
}
