//! Issue 12 item 8: `listen … reuseport` with fewer workers in the new configuration. The
//! new master closes the inherited per-worker socket it has no worker for; the old master
//! still holds it in the reuseport group, so after the drain the kernel queues connections
//! there that nobody accepts. hotreload compares the masters' listening sockets before the
//! drain and rolls back (upgrade) or refuses (drain step), naming the address, unless
//! `--allow-orphaned-sockets`. Real nginx (Debian deb12u9 → deb12u11) and fake-nginx.

use std::collections::BTreeSet;

use fake_nginx::load::{Load, LoadConfig};
use hotreload_tests::run::{hotreload, Run};
use hotreload_tests::server::{Kind, Options, Server, WORKERS};

/// A server with `listen … reuseport` and [`WORKERS`] workers, whose configuration now asks
/// for `workers` (what the new master will read).
fn reuseport_server(kind: Kind, workers: usize) -> (Server, BTreeSet<u64>) {
    let server = Server::start(kind, &kind.builds(), Options::DaemonReuseport);
    let sockets = server.listen_sockets("A");
    assert_eq!(sockets.len(), WORKERS, "one socket per worker: {sockets:?}");
    let conf = std::fs::read_to_string(server.conf_path()).expect("read config");
    let edited = conf.replacen(
        &format!("worker_processes {WORKERS};"),
        &format!("worker_processes {workers};"),
        1,
    );
    assert!(
        conf.contains(&format!("worker_processes {WORKERS};")),
        "{conf}"
    );
    std::fs::write(server.conf_path(), edited).expect("write config");
    (server, sockets)
}

fn pid_file(s: &Server) -> String {
    s.pid_file().display().to_string()
}

fn upgrade(s: &Server, extra: &[&str]) -> Run {
    let (pid_file, new) = (pid_file(s), s_new_build(s));
    let mut args = vec!["upgrade", "--pid-file", &pid_file, "--new-binary", &new];
    args.extend_from_slice(extra);
    hotreload(&args)
}

fn s_new_build(s: &Server) -> String {
    s.kind.builds().new.display().to_string()
}

/// The one socket the old master holds and a one-worker new master would not: the old
/// master's sockets on the port are both in `sockets`; which one the new master keeps is
/// nginx's choice, so the message must name the port and one of the two inodes.
fn assert_names_orphan(run: &Run, s: &Server, sockets: &BTreeSet<u64>) {
    let text = format!("{}{}", run.stdout, run.stderr);
    let addr = s.addr().to_string();
    assert!(text.contains(&addr), "the message names {addr}{run}");
    assert!(
        sockets
            .iter()
            .any(|i| text.contains(&format!("socket inode {i}"))),
        "the message names the orphaned socket's inode (one of {sockets:?}){run}"
    );
    assert!(text.contains("reuseport"), "the message says why{run}");
}

/// The old master is back alone with its workers and both its sockets, on the old build.
fn assert_old_serves(s: &Server, sockets: &BTreeSet<u64>, run: &Run) {
    let a = s.pid("A");
    assert_eq!(
        hotreload_tests::procs::read_pid(&s.pid_file()),
        Some(a),
        "the pid file names the old master{run}"
    );
    assert!(!s.oldbin_file().exists(), ".oldbin is gone{run}");
    assert_eq!(s.worker_pids("A").len(), WORKERS, "old workers serve{run}");
    assert_eq!(&s.listen_sockets("A"), sockets, "both sockets kept{run}");
    s.assert_runs_build("A", false);
    s.assert_serves();
}

/// The whole upgrade under load: refused before the drain, rolled back, no request lost,
/// exit 1 with the address and the socket in the message.
fn fewer_workers_roll_back_under_load(kind: Kind) {
    hotreload_tests::watchdog(move || {
        let (s, sockets) = reuseport_server(kind, 1);
        let load = Load::start(LoadConfig::new(s.addr()).clients(4));
        let run = upgrade(&s, &[]);
        let stats = load.stop();
        run.expect_code(1);
        assert_names_orphan(&run, &s, &sockets);
        assert!(
            run.stderr.contains("--allow-orphaned-sockets"),
            "the advice names the flag{run}"
        );
        assert!(
            !run.signals().iter().any(|s| s.starts_with("SIGWINCH")),
            "no drain signal was sent: {:?}{run}",
            run.signals()
        );
        assert!(stats.ok > 0, "the load made no request: {stats:?}{run}");
        assert_eq!(stats.failed, 0, "requests failed: {:?}{run}", stats.errors);
        assert_old_serves(&s, &sockets, &run);
    });
}

#[test]
#[cfg_attr(
    missing_real_nginx,
    ignore = "needs real nginx: run scripts/install-real-servers"
)]
fn real_nginx_fewer_reuseport_workers_roll_back_under_load() {
    fewer_workers_roll_back_under_load(Kind::RealNginx);
}

#[test]
fn fake_nginx_fewer_reuseport_workers_roll_back_under_load() {
    fewer_workers_roll_back_under_load(Kind::FakeNginx);
}

/// The same worker count with reuseport: every socket is inherited, the upgrade commits and
/// no request fails.
#[test]
fn same_reuseport_workers_upgrade_under_load() {
    hotreload_tests::watchdog(|| {
        let (s, sockets) = reuseport_server(Kind::FakeNginx, WORKERS);
        let load = Load::start(LoadConfig::new(s.addr()).clients(4));
        let run = upgrade(&s, &["--json"]);
        let stats = load.stop();
        run.expect_code(0);
        assert_eq!(run.result()["outcome"], "committed", "{run}");
        assert!(stats.ok > 0, "the load made no request: {stats:?}{run}");
        assert_eq!(stats.failed, 0, "requests failed: {:?}{run}", stats.errors);
        let new = hotreload_tests::procs::read_pid(&s.pid_file()).expect("pid file");
        assert_ne!(new, s.pid("A"), "a new master serves{run}");
        let held: BTreeSet<u64> = s.listen_sockets_of_pid(new);
        assert_eq!(held, sockets, "the new master inherited both sockets{run}");
    });
}

/// `--allow-orphaned-sockets`: the operator accepts the loss; the upgrade goes on (with a
/// warning naming the socket) and commits on one worker.
#[test]
fn allow_orphaned_sockets_commits() {
    hotreload_tests::watchdog(|| {
        let (s, sockets) = reuseport_server(Kind::FakeNginx, 1);
        let run = upgrade(&s, &["--allow-orphaned-sockets", "--json"]);
        run.expect_code(0);
        assert_eq!(run.result()["outcome"], "committed", "{run}");
        assert_names_orphan(&run, &s, &sockets);
        assert!(run.stdout.contains("draining anyway"), "a warning{run}");
        let new = hotreload_tests::procs::read_pid(&s.pid_file()).expect("pid file");
        assert_ne!(new, s.pid("A"), "a new master serves{run}");
        assert_eq!(s.listen_sockets_of_pid(new).len(), 1, "{run}");
        s.assert_serves();
    });
}

/// `--keep-old --allow-orphaned-sockets`: kept, and the hold is reported as the time those
/// connections are lost.
#[test]
fn keep_old_with_orphaned_sockets_says_so() {
    hotreload_tests::watchdog(|| {
        let (s, sockets) = reuseport_server(Kind::FakeNginx, 1);
        let run = upgrade(&s, &["--allow-orphaned-sockets", "--keep-old", "--json"]);
        run.expect_code(0);
        assert_eq!(run.result()["outcome"], "kept-old", "{run}");
        assert!(
            run.stdout
                .contains("keeps them until it is retired or rolled back"),
            "the hold is reported{run}"
        );
        assert_names_orphan(&run, &s, &sockets);
        let pid_file = pid_file(&s);
        hotreload(&["rollback", "--pid-file", &pid_file]).expect_code(0);
        assert_old_serves(&s, &sockets, &run);
    });
}

/// The drain step refuses (exit 3, nothing sent, still spawned); with the flag it drains.
#[test]
fn drain_step_refuses_then_allows() {
    hotreload_tests::watchdog(|| {
        let (s, sockets) = reuseport_server(Kind::FakeNginx, 1);
        s.swap_binary();
        let pid_file = pid_file(&s);
        hotreload(&["spawn", "--pid-file", &pid_file]).expect_code(0);
        let new = hotreload_tests::procs::read_pid(&s.pid_file()).expect("pid file");
        // The old master's children: its workers and the new master.
        let old_workers = s.worker_pids("A");
        let run = hotreload(&["drain", "--pid-file", &pid_file, "--json"]);
        run.expect_code(3);
        assert_eq!(run.result()["outcome"], "refused", "{run}");
        assert_names_orphan(&run, &s, &sockets);
        assert!(
            run.signals().is_empty(),
            "no signal: {:?}{run}",
            run.signals()
        );
        assert_eq!(
            s.worker_pids("A"),
            old_workers,
            "old workers untouched{run}"
        );
        assert_eq!(
            hotreload_tests::procs::read_pid(&s.pid_file()),
            Some(new),
            "still spawned{run}"
        );
        let run = hotreload(&["drain", "--pid-file", &pid_file, "--allow-orphaned-sockets"]);
        run.expect_code(0);
        // Drained: the old master's one child left is the new master.
        assert_eq!(s.worker_pids("A"), BTreeSet::from([new]), "{run}");
        hotreload(&["rollback", "--pid-file", &pid_file]).expect_code(0);
        assert_old_serves(&s, &sockets, &run);
    });
}
