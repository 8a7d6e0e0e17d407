//! The Ansible collection `hotreload.hotreload` (`ansible/`), end to end: its unit tests
//! (pytest), `ansible-doc`, `ansible-lint` and the offline subset of `ansible-test sanity`,
//! and `ansible/playbooks/rolling-upgrade.yml` run by `ansible-playbook` against a fleet of
//! four fake-nginx "hosts" on this machine (`ansible_connection=local`, each its own
//! prefix, port, pid file, installed executable and hotreload CLI) under client load.
//!
//! Each test owns its fleet in a temporary directory; every server is a harness `Instance`
//! that kills its processes on drop, also when an assertion panics. The playbook runs are
//! serialized (one fleet at a time) only to keep the two shared cores from being swamped;
//! nothing is shared between them. No sleeps: `ansible-playbook` runs to its end, and the
//! tests look at what it left (pids, /proc start times, executables, the answering version,
//! the per-host records the role writes).
//!
//! The tests need `ansible-playbook`, `ansible-lint` and pytest (`apt-get install
//! ansible-core ansible-lint python3-pytest`); `tests/build.rs` sets `missing_ansible` when
//! they are absent (and neither `CI=true` nor `HOTRELOAD_REQUIRE_REAL_SERVERS=1` is set), which
//! marks them ignored.

use std::collections::BTreeMap;
use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use fake_nginx::harness::Instance;
use fake_nginx::load::{Load, LoadConfig, LoadStats};
use fake_nginx::variant::{make_variant, Fault};
use hotreload_tests::{fake_nginx_bin, hotreload_bin};
use serde_json::Value;

/// Generous: a playbook over four hosts on two shared, busy cores.
const PLAYBOOK_TIMEOUT: Duration = Duration::from_secs(600);

const IGNORE: &str = "needs ansible-playbook, ansible-lint and pytest: apt-get install ansible-core ansible-lint python3-pytest";

const OLD: &str = "fake-nginx/1.0";
const NEW: &str = "fake-nginx/2.0";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

fn ansible_dir() -> PathBuf {
    repo_root().join("ansible")
}

fn collection_dir() -> PathBuf {
    ansible_dir().join("collections/ansible_collections/hotreload/hotreload")
}

/// An executable found in PATH, or a panic that says how to install it.
fn which(name: &str) -> PathBuf {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("`{name}` is not in PATH: {IGNORE}"))
}

/// The Python that runs Ansible (from `ansible-playbook`'s `#!` line): it has ansible and,
/// from Debian's python3-pytest, pytest, whatever `python3` a PATH names first.
fn ansible_python() -> String {
    let script = fs::read_to_string(which("ansible-playbook")).unwrap_or_default();
    let shebang = script.lines().next().unwrap_or_default();
    let mut words = shebang.trim_start_matches("#!").split_whitespace();
    match (words.next(), words.next()) {
        (Some(env), Some(python)) if env.ends_with("/env") => python.to_owned(),
        (Some(python), _) if !python.is_empty() => python.to_owned(),
        _ => "python3".to_owned(),
    }
}

/// One finished command, printed in full when an assertion about it fails.
struct Ran {
    what: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl fmt::Display for Ran {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "\n$ {}\nexit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n",
            self.what, self.code, self.stdout, self.stderr
        )
    }
}

impl Ran {
    #[track_caller]
    fn expect_success(&self) -> &Ran {
        assert_eq!(self.code, Some(0), "command failed{self}");
        self
    }

    /// `PLAY RECAP` as host -> counter -> value (`ok`, `changed`, `failed`, ...).
    fn recap(&self) -> BTreeMap<String, BTreeMap<String, u64>> {
        let mut recap = BTreeMap::new();
        let Some((_, tail)) = self.stdout.split_once("PLAY RECAP") else {
            return recap;
        };
        for line in tail.lines().skip(1) {
            let Some((host, counters)) = line.split_once(" : ") else {
                continue;
            };
            let counters = counters
                .split_whitespace()
                .filter_map(|kv| kv.split_once('='))
                .filter_map(|(k, v)| Some((k.to_owned(), v.parse().ok()?)))
                .collect();
            recap.insert(host.trim().to_owned(), counters);
        }
        recap
    }
}

fn run(mut cmd: assert_cmd::Command, what: String) -> Ran {
    let out = cmd
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .env("ANSIBLE_NOCOLOR", "1")
        .timeout(PLAYBOOK_TIMEOUT)
        .output()
        .unwrap_or_else(|e| panic!("could not run {what}: {e}"));
    Ran {
        what,
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Field 22 of /proc/<pid>/stat: with the pid, what identifies a process across pid reuse.
fn start_time(pid: i32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// A fake-nginx build (a variant of the fake-nginx binary) at `out`.
fn build(out: &Path, version: &str, faults: &[&str]) -> PathBuf {
    fs::create_dir_all(out.parent().unwrap()).unwrap();
    let faults: Vec<Fault> = faults.iter().map(|f| f.parse().expect("fault")).collect();
    make_variant(&fake_nginx_bin(), out, version, &faults).expect("make a fake-nginx variant");
    out.to_path_buf()
}

/// One "host": a fake-nginx 1.0 whose executable, staged build and hotreload CLI live in
/// its own directory. Fields drop in order: the load stops, then the server's processes
/// are killed.
struct Host {
    name: String,
    load: Option<Load>,
    instance: Instance,
    installed: PathBuf,
    staged: PathBuf,
    cli: PathBuf,
}

/// What a signal (or an upgrade) would change: the master (pid and start time), its
/// workers, and the installed executable.
#[derive(Debug, PartialEq, Eq)]
struct Fingerprint {
    master: i32,
    master_start: Option<u64>,
    workers: Vec<i32>,
    executable: Vec<u8>,
    oldbin: bool,
}

impl Host {
    fn master(&self) -> i32 {
        self.instance
            .pid_from_file()
            .expect("the pid file names a master")
    }

    fn fingerprint(&self) -> Fingerprint {
        let master = self.master();
        Fingerprint {
            master,
            master_start: start_time(master),
            workers: fake_nginx::harness::workers_of(master),
            executable: fs::read(&self.installed).expect("read the installed executable"),
            oldbin: self.instance.oldbin_file().exists(),
        }
    }

    /// The version that answers (the `Server` header).
    fn serving(&self) -> String {
        self.instance.get("/").expect("GET /").server
    }

    fn stop_load(&mut self) -> LoadStats {
        self.load.take().expect("load running").stop()
    }
}

/// Four hosts, their inventory, the builds on the "controller" and the role's records.
struct Fleet {
    hosts: Vec<Host>,
    inventory: PathBuf,
    records: PathBuf,
    builds: PathBuf,
    tmp: PathBuf,
    // Last: removed after every server is gone.
    _dir: tempfile::TempDir,
}

impl Fleet {
    fn start(n: usize) -> Fleet {
        let dir = tempfile::Builder::new()
            .prefix("hotreload-fleet-")
            .tempdir()
            .unwrap();
        let root = dir.path().to_path_buf();
        let records = root.join("records");
        fs::create_dir_all(&records).unwrap();
        let mut hosts = Vec::new();
        let mut inventory = String::from("[hotreload_fleet]\n");
        for i in 1..=n {
            let name = format!("web{i}");
            let home = root.join(&name);
            let installed = build(&home.join("sbin/fake-nginx"), "1.0", &[]);
            let instance = Instance::builder(&installed)
                .workers(2)
                .daemon(true)
                .start()
                .expect("start fake-nginx");
            let staged = home.join("staged/fake-nginx-new");
            let cli = home.join("bin/hotreload");
            inventory += &format!(
                "{name} hotreload_pid_file={} hotreload_path={} hotreload_new_build_dest={} hotreload_health_url=http://{}/\n",
                instance.pid_file().display(),
                cli.display(),
                staged.display(),
                instance.addr(),
            );
            // About 100 requests a second per host. Not more: half the clients open a
            // connection per request, and the health check's attribution reads
            // /proc/net/tcp, where every closed connection stays a minute (TIME_WAIT):
            // four hosts at 400 a second made each try take 1.5 s on 2 cores, and 7
            // tries all answered by old workers failed a rollout's health check.
            let load = Load::start(
                LoadConfig::new(instance.addr())
                    .clients(2)
                    .pause(Duration::from_millis(20)),
            );
            hosts.push(Host {
                name,
                load: Some(load),
                instance,
                installed,
                staged,
                cli,
            });
        }
        inventory += &format!(
            "\n[hotreload_fleet:vars]\nansible_connection=local\n\
             ansible_python_interpreter={{{{ ansible_playbook_python }}}}\n\
             hotreload_install_cli=true\nhotreload_cli_src={}\nhotreload_record_dir={}\n",
            hotreload_bin().display(),
            records.display()
        );
        let inventory_path = root.join("inventory.ini");
        fs::write(&inventory_path, inventory).unwrap();
        let builds = root.join("builds");
        Fleet {
            hosts,
            inventory: inventory_path,
            records,
            builds,
            tmp: root,
            _dir: dir,
        }
    }

    fn build(&self, name: &str, version: &str, faults: &[&str]) -> PathBuf {
        build(&self.builds.join(name), version, faults)
    }

    /// Runs the rolling-upgrade playbook with `args`; Ansible's own state (temp files,
    /// caches) stays in this fleet's directory.
    fn playbook(&self, args: &[&str]) -> Ran {
        for entry in fs::read_dir(&self.records).unwrap().flatten() {
            fs::remove_file(entry.path()).unwrap();
        }
        let mut cmd = assert_cmd::Command::new(which("ansible-playbook"));
        cmd.current_dir(ansible_dir())
            .env("ANSIBLE_CONFIG", ansible_dir().join("ansible.cfg"))
            .env(
                "ANSIBLE_COLLECTIONS_PATH",
                ansible_dir().join("collections"),
            )
            .env("ANSIBLE_HOME", self.tmp.join("ansible-home"))
            .env("ANSIBLE_LOCAL_TEMP", self.tmp.join("ansible-local"))
            .env("ANSIBLE_REMOTE_TMP", self.tmp.join("ansible-remote"))
            .env("ANSIBLE_RETRY_FILES_ENABLED", "0")
            .arg("-i")
            .arg(&self.inventory)
            .arg("playbooks/rolling-upgrade.yml")
            .args(args);
        run(
            cmd,
            format!(
                "ansible-playbook playbooks/rolling-upgrade.yml {}",
                args.join(" ")
            ),
        )
    }

    /// The role's record of `host` from the last run (`None`: the rollout never reached it).
    fn record(&self, host: &str) -> Option<Value> {
        let text = fs::read_to_string(self.records.join(format!("{host}.json"))).ok()?;
        Some(serde_json::from_str(&text).expect("a record is JSON"))
    }

    fn names(&self) -> Vec<String> {
        self.hosts.iter().map(|h| h.name.clone()).collect()
    }

    /// Stops the load on every host and asserts that no request failed.
    #[track_caller]
    fn assert_no_failed_requests(&mut self, ran: &Ran) {
        for host in &mut self.hosts {
            let stats = host.stop_load();
            assert!(
                stats.ok > 0,
                "{}: no request answered: {stats:?}{ran}",
                host.name
            );
            assert_eq!(
                stats.failed, 0,
                "{}: failed requests: {stats:?}{ran}",
                host.name
            );
        }
    }
}

/// Serializes the playbook runs: four fleets of four servers under load at once would
/// starve everything else on two cores.
static FLEET: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_fleet_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    FLEET
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[track_caller]
fn assert_serving(host: &Host, version: &str, ran: &Ran) {
    assert_eq!(
        host.serving(),
        version,
        "{} serves the wrong version{ran}",
        host.name
    );
}

/// Records of a finished run must say `outcome` for every host.
#[track_caller]
fn assert_outcomes(fleet: &Fleet, outcome: &str, ran: &Ran) {
    for name in fleet.names() {
        let record = fleet
            .record(&name)
            .unwrap_or_else(|| panic!("no record for {name}{ran}"));
        assert_eq!(record["outcome"], outcome, "{name}: {record:#}{ran}");
    }
}

// -----------------------------------------------------------------------------------------
// The collection's own checks
// -----------------------------------------------------------------------------------------

#[test]
#[cfg_attr(
    missing_ansible,
    ignore = "needs ansible-core, ansible-lint and python3-pytest"
)]
fn collection_unit_tests_pass() {
    let mut cmd = assert_cmd::Command::new(ansible_python());
    cmd.current_dir(collection_dir()).args([
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/unit",
    ]);
    let ran = run(cmd, "python3 -m pytest tests/unit".into());
    ran.expect_success();
    // Both files ran, including the module tests that need Ansible importable.
    assert!(ran.stdout.contains(" passed"), "{ran}");
    assert!(
        !ran.stdout.contains("skipped"),
        "some unit tests were skipped{ran}"
    );
}

#[test]
#[cfg_attr(
    missing_ansible,
    ignore = "needs ansible-core, ansible-lint and python3-pytest"
)]
fn modules_render_with_ansible_doc() {
    for module in ["upgrade", "status"] {
        let mut cmd = assert_cmd::Command::new(which("ansible-doc"));
        cmd.env(
            "ANSIBLE_COLLECTIONS_PATH",
            ansible_dir().join("collections"),
        )
        .arg(format!("hotreload.hotreload.{module}"));
        let ran = run(cmd, format!("ansible-doc hotreload.hotreload.{module}"));
        ran.expect_success();
        assert!(ran.stdout.contains("pid_file"), "{ran}");
        assert!(ran.stdout.contains("EXAMPLES"), "{ran}");
        assert!(ran.stdout.contains("RETURN VALUES"), "{ran}");
        assert!(!ran.stderr.contains("ERROR"), "{ran}");
    }
    let mut cmd = assert_cmd::Command::new(which("ansible-doc"));
    cmd.env(
        "ANSIBLE_COLLECTIONS_PATH",
        ansible_dir().join("collections"),
    )
    .args(["-t", "role", "hotreload.hotreload.rolling_upgrade"]);
    let ran = run(
        cmd,
        "ansible-doc -t role hotreload.hotreload.rolling_upgrade".into(),
    );
    ran.expect_success();
    assert!(ran.stdout.contains("hotreload_pid_file"), "{ran}");
}

#[test]
#[cfg_attr(
    missing_ansible,
    ignore = "needs ansible-core, ansible-lint and python3-pytest"
)]
fn ansible_lint_passes() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = assert_cmd::Command::new(which("ansible-lint"));
    cmd.current_dir(ansible_dir())
        .env(
            "ANSIBLE_COLLECTIONS_PATH",
            ansible_dir().join("collections"),
        )
        .env("ANSIBLE_HOME", home.path())
        .args([
            "playbooks/rolling-upgrade.yml",
            "collections/ansible_collections/hotreload/hotreload",
        ]);
    let ran = run(
        cmd,
        "ansible-lint playbooks/rolling-upgrade.yml <collection>".into(),
    );
    ran.expect_success();
}

/// The sanity tests that run offline. The others (validate-modules, pylint, pep8,
/// yamllint, import, ansible-doc, runtime-metadata) first build a virtualenv with a pip
/// bootstrap script that ansible-test downloads from Ansible's own file server, which this
/// machine cannot reach; ansible-doc and ansible-lint above cover the documentation.
#[test]
#[cfg_attr(
    missing_ansible,
    ignore = "needs ansible-core, ansible-lint and python3-pytest"
)]
fn ansible_test_sanity_offline_subset_passes() {
    // ansible-test writes tests/output into the collection: work on a copy.
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("ansible_collections/hotreload");
    fs::create_dir_all(&copy).unwrap();
    let status = std::process::Command::new("cp")
        .arg("-r")
        .arg(collection_dir())
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success(), "cp -r of the collection failed");
    let tests = [
        "compile",
        "shebang",
        "future-import-boilerplate",
        "metaclass-boilerplate",
        "line-endings",
        "no-smart-quotes",
        "empty-init",
        "use-argspec-type-path",
        "no-assert",
        "symlinks",
    ];
    // ansible-test checks with the Python that runs Ansible (its "controller" Python).
    let version = std::process::Command::new(ansible_python())
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .expect("run Ansible's python");
    let version = String::from_utf8_lossy(&version.stdout).trim().to_owned();
    let mut cmd = assert_cmd::Command::new(which("ansible-test"));
    cmd.current_dir(copy.join("hotreload"))
        .env("ANSIBLE_HOME", tmp.path().join("ansible-home"))
        .args(["sanity", "--python", &version]);
    for t in tests {
        cmd.args(["--test", t]);
    }
    let ran = run(
        cmd,
        format!("ansible-test sanity --test {}", tests.join(" --test ")),
    );
    ran.expect_success();
}

// -----------------------------------------------------------------------------------------
// The playbook against a fleet
// -----------------------------------------------------------------------------------------

#[test]
#[cfg_attr(
    missing_ansible,
    ignore = "needs ansible-core, ansible-lint and python3-pytest"
)]
fn good_build_rolls_out_canary_first_then_batches_under_load() {
    let _one = one_fleet_at_a_time();
    let mut fleet = Fleet::start(4);
    let good = fleet.build("fake-nginx-2.0", "2.0", &[]);
    let before: Vec<i32> = fleet.hosts.iter().map(Host::master).collect();

    let ran = fleet.playbook(&["-e", &format!("hotreload_new_build_src={}", good.display())]);
    ran.expect_success();
    fleet.assert_no_failed_requests(&ran);

    assert_outcomes(&fleet, "upgraded", &ran);
    for (host, old) in fleet.hosts.iter().zip(&before) {
        assert_serving(host, NEW, &ran);
        assert_ne!(
            host.master(),
            *old,
            "{}: still the old master{ran}",
            host.name
        );
        let record = fleet.record(&host.name).unwrap();
        assert_eq!(record["old_version"], OLD, "{record:#}{ran}");
        assert_eq!(record["new_version"], NEW, "{record:#}{ran}");
        assert_eq!(record["old_pid"], *old, "{record:#}{ran}");
        assert_eq!(record["new_pid"], host.master(), "{record:#}{ran}");
        assert_eq!(
            fs::read(&host.installed).unwrap(),
            fs::read(&good).unwrap(),
            "{}: the installed executable is not the new build{ran}",
            host.name
        );
        assert!(host.cli.is_file(), "the role installed no hotreload CLI");
    }

    // serial: [1, "25%", "100%"] over four hosts: the canary, one more, then the other two.
    let batches: Vec<Value> = fleet
        .names()
        .iter()
        .map(|n| fleet.record(n).unwrap()["batch"].clone())
        .collect();
    assert_eq!(
        batches,
        [
            serde_json::json!(["web1"]),
            serde_json::json!(["web2"]),
            serde_json::json!(["web3", "web4"]),
            serde_json::json!(["web3", "web4"]),
        ],
        "{ran}"
    );
    // The batches ran one after the other: each new master started after those of the
    // batches before it (their /proc start times), never before.
    let started: Vec<u64> = fleet
        .hosts
        .iter()
        .map(|h| start_time(h.master()).expect("new master alive"))
        .collect();
    assert!(
        started[0] < started[1] && started[1] < started[2] && started[1] < started[3],
        "new masters did not start canary first, then batch by batch: {started:?}{ran}"
    );

    for line in [
        "batch 1 (canary): web1",
        "batch 2: web2",
        "batch 3: web3, web4",
        "fake-nginx/1.0 -> fake-nginx/2.0",
    ] {
        assert!(ran.stdout.contains(line), "the summary lacks {line:?}{ran}");
    }
    for (host, counters) in ran.recap() {
        assert_eq!(counters["failed"], 0, "{host}{ran}");
        assert!(counters["changed"] > 0, "{host} reports no change{ran}");
    }
}

#[test]
#[cfg_attr(
    missing_ansible,
    ignore = "needs ansible-core, ansible-lint and python3-pytest"
)]
fn broken_build_stops_at_the_canary_and_leaves_every_other_host_untouched() {
    let _one = one_fleet_at_a_time();
    let mut fleet = Fleet::start(4);
    let broken = fleet.build("fake-nginx-3.0-crash", "3.0", &["crash-on-start"]);
    let before: Vec<Fingerprint> = fleet.hosts.iter().map(Host::fingerprint).collect();

    let ran = fleet.playbook(&[
        "-e",
        &format!("hotreload_new_build_src={}", broken.display()),
    ]);
    assert_eq!(ran.code, Some(2), "the play must fail (failed hosts){ran}");
    fleet.assert_no_failed_requests(&ran);

    // The canary rolled back: the same old master serves the old version from the old
    // executable, and the play failed with hotreload's own message and advice.
    let canary = &fleet.hosts[0];
    let record = fleet.record("web1").expect("the canary's record");
    assert_eq!(record["outcome"], "rolled_back", "{record:#}{ran}");
    assert_serving(canary, OLD, &ran);
    let after = canary.fingerprint();
    assert_eq!(after.master, before[0].master, "{ran}");
    assert_eq!(after.master_start, before[0].master_start, "{ran}");
    assert_eq!(
        after.executable, before[0].executable,
        "old executable not restored{ran}"
    );
    assert!(!after.oldbin, "{ran}");
    let message = format!("the new master of master {} exited", before[0].master);
    assert!(
        ran.stdout.contains(&message),
        "the play does not show {message:?}{ran}"
    );
    assert!(
        ran.stdout
            .contains("-- what to do: the old version is serving again"),
        "the play does not show hotreload's advice{ran}"
    );
    assert_eq!(ran.recap()["web1"]["failed"], 1, "{ran}");

    // Every other host: never reached (no record, no staged build), never signalled (same
    // master, start time and workers), same executable, old version.
    for (host, before) in fleet.hosts.iter().zip(&before).skip(1) {
        assert!(
            fleet.record(&host.name).is_none(),
            "{} was reached{ran}",
            host.name
        );
        assert!(
            !host.staged.exists(),
            "{}: a build was staged{ran}",
            host.name
        );
        assert_eq!(&host.fingerprint(), before, "{} changed{ran}", host.name);
        assert_serving(host, OLD, &ran);
        assert!(
            !ran.recap().contains_key(&host.name),
            "{} appears in the recap: a task ran on it{ran}",
            host.name
        );
    }
    assert!(ran.stdout.contains("rolled_back"), "{ran}");
}

/// Waits on hotreload's `unchanged` outcome (exit 0) for a host that already runs the
/// requested build (the core's `Outcome::Unchanged`, printed by the CLI): until it lands,
/// hotreload refuses a same-build upgrade (exit 3) and this test fails at the second run.
#[test]
#[cfg_attr(
    missing_ansible,
    ignore = "needs ansible-core, ansible-lint and python3-pytest"
)]
fn rerunning_a_finished_rollout_changes_nothing() {
    let _one = one_fleet_at_a_time();
    let mut fleet = Fleet::start(4);
    let good = fleet.build("fake-nginx-2.0", "2.0", &[]);
    let extra = format!("hotreload_new_build_src={}", good.display());
    fleet.playbook(&["-e", &extra]).expect_success();
    let before: Vec<Fingerprint> = fleet.hosts.iter().map(Host::fingerprint).collect();

    let ran = fleet.playbook(&["-e", &extra]);
    ran.expect_success();
    fleet.assert_no_failed_requests(&ran);
    assert_outcomes(&fleet, "unchanged", &ran);
    let recap = ran.recap();
    assert_eq!(recap.len(), 4, "{ran}");
    for (host, counters) in &recap {
        assert_eq!(counters["changed"], 0, "{host} reports changes{ran}");
        assert_eq!(counters["failed"], 0, "{host}{ran}");
    }
    for (host, before) in fleet.hosts.iter().zip(&before) {
        assert_eq!(&host.fingerprint(), before, "{} changed{ran}", host.name);
        assert_serving(host, NEW, &ran);
    }
}

#[test]
#[cfg_attr(
    missing_ansible,
    ignore = "needs ansible-core, ansible-lint and python3-pytest"
)]
fn check_mode_changes_nothing_and_reports_what_would_change() {
    let _one = one_fleet_at_a_time();
    let mut fleet = Fleet::start(4);
    let good = fleet.build("fake-nginx-2.0", "2.0", &[]);
    let before: Vec<Fingerprint> = fleet.hosts.iter().map(Host::fingerprint).collect();

    let ran = fleet.playbook(&[
        "--check",
        "-e",
        &format!("hotreload_new_build_src={}", good.display()),
    ]);
    ran.expect_success();
    fleet.assert_no_failed_requests(&ran);
    assert_outcomes(&fleet, "would_upgrade", &ran);
    for (host, before) in fleet.hosts.iter().zip(&before) {
        assert_eq!(&host.fingerprint(), before, "{} changed{ran}", host.name);
        assert_serving(host, OLD, &ran);
        let record = fleet.record(&host.name).unwrap();
        assert_eq!(record["old_version"], OLD, "{record:#}{ran}");
        assert_eq!(record["build_version"], NEW, "{record:#}{ran}");
        assert!(
            !fs::read_dir(host.installed.parent().unwrap())
                .unwrap()
                .flatten()
                .any(|e| e.file_name() != "fake-nginx"),
            "{}: check mode left files beside the executable{ran}",
            host.name
        );
    }
    assert!(
        ran.stdout
            .contains("would_upgrade    fake-nginx/1.0 -> fake-nginx/2.0"),
        "the summary does not say what would change{ran}"
    );
    for (host, counters) in ran.recap() {
        assert!(
            counters["changed"] > 0,
            "{host}: check mode reports no change{ran}"
        );
    }
}

#[test]
#[cfg_attr(
    missing_ansible,
    ignore = "needs ansible-core, ansible-lint and python3-pytest"
)]
fn rolled_back_state_after_a_keep_old_rollout_brings_the_old_version_back() {
    let _one = one_fleet_at_a_time();
    let mut fleet = Fleet::start(4);
    let good = fleet.build("fake-nginx-2.0", "2.0", &[]);
    let before: Vec<Fingerprint> = fleet.hosts.iter().map(Host::fingerprint).collect();

    let kept = fleet.playbook(&[
        "-e",
        &format!("hotreload_new_build_src={}", good.display()),
        "-e",
        "hotreload_keep_old=true",
    ]);
    kept.expect_success();
    assert_outcomes(&fleet, "kept_old", &kept);
    for (host, before) in fleet.hosts.iter().zip(&before) {
        assert_serving(host, NEW, &kept);
        // The old master waits without workers in `<pid file>.oldbin`.
        assert_eq!(
            host.instance.pid_from_oldbin(),
            Some(before.master),
            "{kept}"
        );
        assert!(
            fake_nginx::harness::workers_of(before.master).is_empty(),
            "{kept}"
        );
    }

    let ran = fleet.playbook(&["-e", "hotreload_state=rolled_back"]);
    ran.expect_success();
    fleet.assert_no_failed_requests(&ran);
    assert_outcomes(&fleet, "rolled_back", &ran);
    for (host, before) in fleet.hosts.iter().zip(&before) {
        assert_serving(host, OLD, &ran);
        let after = host.fingerprint();
        assert_eq!(
            after.master, before.master,
            "{}: not the old master{ran}",
            host.name
        );
        assert_eq!(after.master_start, before.master_start, "{ran}");
        assert_eq!(
            after.executable, before.executable,
            "old executable not back{ran}"
        );
        assert!(!after.oldbin, "{ran}");
        let record = fleet.record(&host.name).unwrap();
        assert_eq!(record["old_version"], NEW, "{record:#}{ran}");
        assert_eq!(record["new_version"], OLD, "{record:#}{ran}");
    }
    assert!(
        ran.stdout
            .contains("rolled_back      fake-nginx/2.0 -> fake-nginx/1.0"),
        "{ran}"
    );
}
