//! Conformance suite: one list of scenarios, each run against real nginx 1.22.1 (the Debian
//! builds `scripts/install-real-servers` unpacks; the upgrade goes deb12u9 -> deb12u11) and
//! against fake-nginx (two `--make-variant` builds), with the same command line and config
//! file. Each scenario states its expectations once; both kinds are held to them, so a
//! failing `::fake` test with a passing `::nginx` one is a fake-nginx divergence.
//!
//! What is compared (see `hotreload_tests::server` for the normalisation): the pid files over
//! time (`pid`, `pid.oldbin`, which master each names, transients), the process tree (which
//! masters are alive, parent/session/group links, worker counts and titles, which executable
//! each process runs), the error-log lines that matter to the upgrade protocol (nginx's own
//! wording, per writer, in order), and that the server keeps answering.
//!
//! Ground truth: DESIGN.md §2 and notes/nginx-observations.md (how nginx 1.22.1 behaves on
//! this machine). Each test is named `<scenario>::nginx` or `<scenario>::fake`; the list is
//! the `scenarios!` call at the bottom. Not compared, by design: response bodies (fake-nginx
//! ignores `return` and names its version and worker), the start-up banner lines (`nginx/…`,
//! `OS: …`), worker uids.
//!
//! `fake_fault_variants::*` hold fake-nginx's bad-build variants (`bad-config`,
//! `crash-on-start`) to what real nginx does when a new binary fails at start-up.
//!
//! Without the real builds the `::nginx` tests are ignored (`tests/build.rs`), unless CI or
//! `HOTRELOAD_REQUIRE_REAL_SERVERS=1`, where they fail. `HOTRELOAD_CONFORMANCE_DUMP=1`
//! prints each server's final view and normalised error log (with `--nocapture`).

use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::{Duration, Instant};

use hotreload_tests::server::{
    closed_by_server, finish_request, read_response, wait_for, Builds, Kind, Mark, Options, Server,
    WORKERS,
};
use nix::sys::signal::Signal;

const MASTER_TITLE: &str =
    "\"nginx: master process PREFIX/sbin/nginx -p PREFIX/ -c conf/nginx.conf\"";
const WORKER_TITLE: &str = "\"nginx: worker process\"";

const IGNORED_USR2: &str = "the changing binary signal is ignored: you should shutdown or \
                            terminate before either old or new binary's process";

/// A daemonized master line: `label` child of `ppid`, in the session and process group of
/// the first master `A` (nginx daemonizes with setsid; everything after stays there).
fn master(label: &str, ppid: &str, exe: &str) -> String {
    format!("{label} master ppid={ppid} sid=A pgid=A exe={exe} {MASTER_TITLE}")
}

/// The one listening socket, and which masters hold it.
fn listen(masters: &str) -> String {
    format!("listen sockets=1 held by masters {masters}")
}

fn workers(label: &str, exe: &str, n: usize) -> String {
    format!("{label} worker exe={exe} {WORKER_TITLE} x{n}")
}

fn view(lines: &[String]) -> String {
    lines.join("\n")
}

/// One master `A` on the old build with its workers.
fn steady_a() -> String {
    view(&[
        "pid=A oldbin=-".into(),
        listen("A"),
        master("A", "1", "old"),
        workers("A", "old", WORKERS),
    ])
}

/// Old master `A` with its workers, new master `B` (its child) on the new build with its own.
fn spawned_ab() -> String {
    view(&[
        "pid=B oldbin=A".into(),
        listen("A,B"),
        master("A", "1", "old"),
        workers("A", "old", WORKERS),
        master("B", "A", "new"),
        workers("B", "new", WORKERS),
    ])
}

/// As [`spawned_ab`] after WINCH: the old master holds on without workers.
fn drained_ab() -> String {
    view(&[
        "pid=B oldbin=A".into(),
        listen("A,B"),
        master("A", "1", "old"),
        master("B", "A", "new"),
        workers("B", "new", WORKERS),
    ])
}

fn usr2_lines() -> Vec<&'static str> {
    vec![
        "[notice] A: signal 12 (SIGUSR2) received from TEST, changing binary",
        "[notice] A: changing binary",
        "[notice] A: start new binary process B",
        "[notice] B: using inherited sockets from \"N;\"",
        "[notice] B: start worker processes",
        "[notice] B: start worker process W",
        "[notice] B: start worker process W",
    ]
}

/// steady -> spawned: swap the executable at argv[0], USR2 the master.
fn spawn(s: &Server) {
    s.wait_view(&steady_a());
    s.assert_serves();
    let m = s.mark();
    s.swap_binary();
    s.signal("A", Signal::SIGUSR2);
    s.wait_view(&spawned_ab());
    s.wait_log(&m, &usr2_lines());
    s.assert_timeline(
        &m,
        &[
            "pid=A oldbin=-",
            "pid=- oldbin=A ?",
            "pid=\"\" oldbin=A ?",
            "pid=B oldbin=A",
        ],
    );
}

/// spawned -> drained: WINCH the old master.
fn drain(s: &Server) {
    let m = s.mark();
    s.signal("A", Signal::SIGWINCH);
    s.wait_view(&drained_ab());
    s.wait_log(
        &m,
        &[
            "[notice] A: signal 28 (SIGWINCH) received from TEST, stop accepting connections",
            "[notice] W: gracefully shutting down",
            "[notice] W: gracefully shutting down",
            "[notice] W: exiting",
            "[notice] W: exiting",
            "[notice] W: exit",
            "[notice] W: exit",
            "[notice] A: worker process W exited with code 0",
            "[notice] A: worker process W exited with code 0",
        ],
    );
    s.assert_timeline(&m, &["pid=B oldbin=A"]);
}

/// The new master `B` exits on `sig` while `A` lives: `.oldbin` goes back to `pid`.
fn new_master_exits(s: &Server, sig: Signal) -> Mark {
    let m = s.mark();
    s.signal("B", sig);
    let (signal_line, worker_lines): (&str, &[&str]) = if sig == Signal::SIGQUIT {
        (
            "[notice] B: signal 3 (SIGQUIT) received from TEST, shutting down",
            &[
                "[notice] W: gracefully shutting down",
                "[notice] W: gracefully shutting down",
            ],
        )
    } else {
        (
            "[notice] B: signal 15 (SIGTERM) received from TEST, exiting",
            &[],
        )
    };
    let mut lines = vec![
        signal_line,
        "[notice] B: worker process W exited with code 0",
        "[notice] B: worker process W exited with code 0",
        "[notice] B: exit",
        "[notice] A: new binary process B exited with code 0",
    ];
    lines.extend_from_slice(worker_lines);
    s.wait_log(&m, &lines);
    m
}

// ---------------------------------------------------------------------------------------
// The scenarios. Each takes a started server (old build, daemonized unless it says).

/// DESIGN §2 USR2: pid -> pid.oldbin, a child of the old master execs argv[0] (the new
/// build), inherits the socket, writes pid, starts its workers; both generations serve.
fn usr2_spawns_new_master(s: &Server) {
    spawn(s);
    s.assert_runs_build("A", false);
    s.assert_runs_build("B", true);
    s.assert_serves();
}

/// USR2 while a new-binary child exists: ignored, with nginx's [crit] line.
fn second_usr2_is_ignored(s: &Server) {
    spawn(s);
    usr2_is_ignored_by(s, "A");
}

/// USR2 to the new master while its parent (the old master) lives: ignored the same way.
fn usr2_to_new_master_is_ignored(s: &Server) {
    spawn(s);
    usr2_is_ignored_by(s, "B");
}

/// In `spawned`, USR2 to `who` is logged as ignored and changes nothing.
fn usr2_is_ignored_by(s: &Server, who: &str) {
    let m = s.mark();
    s.signal(who, Signal::SIGUSR2);
    let received = format!("[notice] {who}: signal 12 (SIGUSR2) received from TEST, ignoring");
    let crit = format!("[crit] {who}: {IGNORED_USR2}");
    s.wait_log(&m, &[&received, &crit]);
    s.barrier(who);
    s.assert_view(&spawned_ab());
    s.assert_timeline(&m, &["pid=B oldbin=A"]);
    s.assert_not_logged(&m, &[&format!("[notice] {who}: changing binary")]);
}

/// QUIT the new master in `spawned`: it drains and exits (deleting `pid`), the old master
/// renames `.oldbin` back; it never stopped its workers, so it starts none.
fn new_master_quit_renames_oldbin_back(s: &Server) {
    spawn(s);
    let m = new_master_exits(s, Signal::SIGQUIT);
    s.wait_view(&steady_a());
    s.barrier("A");
    s.assert_view(&steady_a());
    s.assert_not_logged(&m, &["[notice] A: start worker processes"]);
    s.assert_timeline(
        &m,
        &["pid=B oldbin=A", "pid=- oldbin=A ?", "pid=A oldbin=-"],
    );
    s.assert_serves();
}

/// WINCH stops the old workers (the old master stays); when the new master then exits, the
/// old master restarts its own workers by itself.
fn winch_then_new_master_exit_restarts_old_workers(s: &Server) {
    spawn(s);
    drain(s);
    s.assert_serves();
    let m = new_master_exits(s, Signal::SIGQUIT);
    s.wait_view(&steady_a());
    s.wait_log(
        &m,
        &[
            "[notice] A: new binary process B exited with code 0",
            "[notice] A: start worker processes",
            "[notice] A: start worker process W",
            "[notice] A: start worker process W",
        ],
    );
    s.assert_timeline(
        &m,
        &["pid=B oldbin=A", "pid=- oldbin=A ?", "pid=A oldbin=-"],
    );
    s.assert_serves();
}

/// The whole upgrade: USR2, WINCH, QUIT the old master. It deletes `.oldbin` and exits; the
/// new master (now PID 1's child) serves on the new build.
fn upgrade_commits(s: &Server) {
    spawn(s);
    drain(s);
    let m = s.mark();
    s.signal("A", Signal::SIGQUIT);
    s.wait_view(&view(&[
        "pid=B oldbin=-".into(),
        listen("B"),
        master("B", "1", "new"),
        workers("B", "new", WORKERS),
    ]));
    s.wait_log(
        &m,
        &[
            "[notice] A: signal 3 (SIGQUIT) received from TEST, shutting down",
            "[notice] A: exit",
        ],
    );
    s.assert_timeline(&m, &["pid=B oldbin=A", "pid=B oldbin=-"]);
    s.assert_serves();
    // The committed master (whose parent is gone) can be upgraded again: here back to the
    // old build.
    s.restore_old_binary();
    let m = s.mark();
    s.signal("B", Signal::SIGUSR2);
    s.wait_view(&view(&[
        "pid=C oldbin=B".into(),
        listen("B,C"),
        master("B", "1", "new"),
        workers("B", "new", WORKERS),
        master("C", "B", "old"),
        workers("C", "old", WORKERS),
    ]));
    s.wait_log(
        &m,
        &[
            "[notice] B: signal 12 (SIGUSR2) received from TEST, changing binary",
            "[notice] B: changing binary",
            "[notice] B: start new binary process C",
            "[notice] C: using inherited sockets from \"N;\"",
        ],
    );
    s.assert_timeline(
        &m,
        &[
            "pid=B oldbin=-",
            "pid=- oldbin=B ?",
            "pid=\"\" oldbin=B ?",
            "pid=C oldbin=B",
        ],
    );
}

/// HUP to the old master while the new binary runs (before WINCH): it starts workers
/// without re-reading the config and without stopping its others: the count doubles.
fn hup_while_new_binary_runs_doubles_workers(s: &Server) {
    spawn(s);
    let m = s.mark();
    s.signal("A", Signal::SIGHUP);
    s.wait_view(&view(&[
        "pid=B oldbin=A".into(),
        listen("A,B"),
        master("A", "1", "old"),
        workers("A", "old", 2 * WORKERS),
        master("B", "A", "new"),
        workers("B", "new", WORKERS),
    ]));
    s.wait_log(
        &m,
        &[
            "[notice] A: signal 1 (SIGHUP) received from TEST, reconfiguring",
            "[notice] A: start worker processes",
            "[notice] A: start worker process W",
            "[notice] A: start worker process W",
        ],
    );
    s.barrier("A");
    s.assert_not_logged(
        &m,
        &[
            "[notice] A: reconfiguring",
            "[notice] W: gracefully shutting down",
        ],
    );
    s.assert_timeline(&m, &["pid=B oldbin=A"]);
}

/// HUP in steady state: re-read the config, start new workers, drain the old ones.
fn hup_in_steady_state_replaces_workers(s: &Server) {
    s.wait_view(&steady_a());
    let before = s.worker_pids("A");
    let m = s.mark();
    s.signal("A", Signal::SIGHUP);
    s.wait_log(
        &m,
        &[
            "[notice] A: signal 1 (SIGHUP) received from TEST, reconfiguring",
            "[notice] A: reconfiguring",
            "[notice] A: start worker processes",
            "[notice] A: start worker process W",
            "[notice] A: start worker process W",
            "[notice] W: gracefully shutting down",
            "[notice] W: gracefully shutting down",
            "[notice] A: worker process W exited with code 0",
            "[notice] A: worker process W exited with code 0",
        ],
    );
    s.wait_view(&steady_a());
    let after = s.worker_pids("A");
    assert!(
        before.is_disjoint(&after),
        "{}: workers not replaced: {before:?} -> {after:?}",
        s.kind.name()
    );
    s.assert_timeline(&m, &["pid=A oldbin=-"]);
    s.assert_serves();
}

/// QUIT: graceful stop; the master removes its pid file and exits.
fn quit_stops_gracefully(s: &Server) {
    s.wait_view(&steady_a());
    let m = s.mark();
    s.signal("A", Signal::SIGQUIT);
    s.wait_view("pid=- oldbin=-");
    s.wait_log(
        &m,
        &[
            "[notice] A: signal 3 (SIGQUIT) received from TEST, shutting down",
            "[notice] W: gracefully shutting down",
            "[notice] W: gracefully shutting down",
            "[notice] W: exiting",
            "[notice] W: exiting",
            "[notice] W: exit",
            "[notice] W: exit",
            "[notice] A: worker process W exited with code 0",
            "[notice] A: worker process W exited with code 0",
            "[notice] A: exit",
        ],
    );
    // nginx tells its workers through the channel, not by a signal: no receipt line.
    s.assert_not_logged(
        &m,
        &["[notice] W: signal 3 (SIGQUIT) received from A, shutting down"],
    );
    s.assert_timeline(&m, &["pid=A oldbin=-", "pid=- oldbin=-"]);
}

/// TERM: fast stop; no graceful shutdown lines; the pid file goes too.
fn term_stops_fast(s: &Server) {
    s.wait_view(&steady_a());
    let m = s.mark();
    s.signal("A", Signal::SIGTERM);
    s.wait_view("pid=- oldbin=-");
    s.wait_log(
        &m,
        &[
            "[notice] A: signal 15 (SIGTERM) received from TEST, exiting",
            "[notice] W: exiting",
            "[notice] W: exiting",
            "[notice] W: exit",
            "[notice] W: exit",
            "[notice] A: worker process W exited with code 0",
            "[notice] A: worker process W exited with code 0",
            "[notice] A: exit",
        ],
    );
    s.assert_not_logged(
        &m,
        &[
            "[notice] W: gracefully shutting down",
            "[notice] W: signal 15 (SIGTERM) received from A, exiting",
        ],
    );
    s.assert_timeline(&m, &["pid=A oldbin=-", "pid=- oldbin=-"]);
}

/// USR1: the master and its workers reopen the log. Rotate the file away first: the lines
/// about the signal go to the old file, the reopen creates a new one, and what follows is
/// written there.
fn usr1_reopens_logs(s: &Server) {
    s.wait_view(&steady_a());
    let m = s.mark();
    let rotated = s.prefix().join("logs/error.log.1");
    std::fs::rename(s.error_log(), &rotated).expect("rotate the error log");
    s.signal("A", Signal::SIGUSR1);
    let reopen = [
        "[notice] A: signal 10 (SIGUSR1) received from TEST, reopening logs",
        "[notice] A: reopening logs",
        "[notice] W: reopening logs",
        "[notice] W: reopening logs",
    ];
    let in_rotated = m.in_log(rotated, m.log_line);
    s.wait_log(&in_rotated, &reopen);
    wait_for("a new error.log", || {
        s.error_log()
            .exists()
            .then_some(())
            .ok_or_else(|| "no logs/error.log".to_string())
    });
    // The next lines land in the new file.
    let fresh = m.in_log(s.error_log(), 0);
    s.signal("A", Signal::SIGUSR1);
    s.wait_log(&fresh, &reopen);
    s.assert_view(&steady_a());
    s.assert_serves();
}

/// `daemon off` with its parent (this test) alive: USR2 is ignored ([crit] line) and WINCH is
/// ignored (receipt line without a suffix); nothing changes.
fn daemon_off_ignores_usr2_and_winch(s: &Server) {
    let foreground = view(&[
        "pid=A oldbin=-".into(),
        listen("A"),
        format!("A master ppid=TEST sid=TEST pgid=A exe=old {MASTER_TITLE}"),
        workers("A", "old", WORKERS),
    ]);
    s.wait_view(&foreground);
    s.swap_binary();
    let m = s.mark();
    s.signal("A", Signal::SIGUSR2);
    let crit = format!("[crit] A: {IGNORED_USR2}");
    s.wait_log(
        &m,
        &[
            "[notice] A: signal 12 (SIGUSR2) received from TEST, ignoring",
            &crit,
        ],
    );
    s.signal("A", Signal::SIGWINCH);
    s.wait_log(&m, &["[notice] A: signal 28 (SIGWINCH) received from TEST"]);
    s.barrier("A");
    s.assert_view(&foreground);
    s.assert_not_logged(
        &m,
        &[
            "[notice] A: changing binary",
            "[notice] W: gracefully shutting down",
            "[notice] A: signal 28 (SIGWINCH) received from TEST, stop accepting connections",
        ],
    );
    s.assert_timeline(&m, &["pid=A oldbin=-"]);
    s.assert_serves();
}

/// Rollback from `spawned`: put the old build back at argv[0], TERM the new master; the
/// old master is whole again, and a later USR2 works again (spawning the old build).
fn rollback_from_spawned(s: &Server) {
    spawn(s);
    s.restore_old_binary();
    let m = new_master_exits(s, Signal::SIGTERM);
    s.wait_view(&steady_a());
    s.assert_not_logged(
        &m,
        &[
            "[notice] W: gracefully shutting down",
            "[notice] A: start worker processes",
        ],
    );
    s.assert_timeline(
        &m,
        &["pid=B oldbin=A", "pid=- oldbin=A ?", "pid=A oldbin=-"],
    );
    s.assert_serves();
    // The old master accepts a new USR2: the next new master runs the restored build.
    let m = s.mark();
    s.signal("A", Signal::SIGUSR2);
    s.wait_view(&view(&[
        "pid=C oldbin=A".into(),
        listen("A,C"),
        master("A", "1", "old"),
        workers("A", "old", WORKERS),
        master("C", "A", "old"),
        workers("C", "old", WORKERS),
    ]));
    s.wait_log(
        &m,
        &[
            "[notice] A: signal 12 (SIGUSR2) received from TEST, changing binary",
            "[notice] A: start new binary process C",
        ],
    );
}

/// Rollback from `drained` (DESIGN §3): HUP the old master (its workers come back, the
/// config is not re-read), QUIT the new master; the old master renames `.oldbin` back and,
/// HUP having cleared its restart-on-exit state, starts no further workers.
fn rollback_from_drained(s: &Server) {
    spawn(s);
    drain(s);
    s.restore_old_binary();
    let m = s.mark();
    s.signal("A", Signal::SIGHUP);
    s.wait_view(&spawned_ab());
    s.wait_log(
        &m,
        &[
            "[notice] A: signal 1 (SIGHUP) received from TEST, reconfiguring",
            "[notice] A: start worker processes",
            "[notice] A: start worker process W",
            "[notice] A: start worker process W",
        ],
    );
    s.assert_not_logged(&m, &["[notice] A: reconfiguring"]);
    let m = new_master_exits(s, Signal::SIGQUIT);
    s.wait_view(&steady_a());
    s.barrier("A");
    s.assert_view(&steady_a());
    s.assert_not_logged(&m, &["[notice] A: start worker processes"]);
    s.assert_timeline(
        &m,
        &["pid=B oldbin=A", "pid=- oldbin=A ?", "pid=A oldbin=-"],
    );
    s.assert_serves();
}

/// SIGKILL the new master: the old master renames `.oldbin` over the stale `pid` and logs
/// the death; the dead master's workers are orphaned (PPid 1), alive, on the new build.
fn killed_new_master_orphans_its_workers(s: &Server) {
    spawn(s);
    let m = s.mark();
    s.signal("B", Signal::SIGKILL);
    let after = view(&[
        "pid=A oldbin=-".into(),
        listen("A"),
        master("A", "1", "old"),
        workers("A", "old", WORKERS),
        format!("other ppid=1 sid=A exe=new {WORKER_TITLE} x{WORKERS}"),
    ]);
    s.wait_view(&after);
    s.wait_log(&m, &["[alert] A: new binary process B exited on signal 9"]);
    s.barrier("A");
    s.assert_view(&after);
    s.assert_not_logged(&m, &["[notice] A: start worker processes"]);
    s.assert_timeline(&m, &["pid=B oldbin=A", "pid=A oldbin=-"]);
    s.assert_serves();
}

/// The new binary refuses the config (edited between the swap and USR2; the old master does
/// not re-read it): the new master exits 1 at start-up, `.oldbin` goes back, nothing else
/// changes.
fn config_error_in_new_binary(s: &Server) {
    s.wait_view(&steady_a());
    s.swap_binary();
    let conf = std::fs::read_to_string(s.conf_path()).expect("read config");
    let bad_line = conf.lines().count() + 1;
    std::fs::write(s.conf_path(), format!("{conf}}}\n")).expect("break the config");
    let m = s.mark();
    s.signal("A", Signal::SIGUSR2);
    let emerg = format!("[emerg] B: unexpected \"}}\" in PREFIX/conf/nginx.conf:{bad_line}");
    s.wait_log(
        &m,
        &[
            "[notice] A: signal 12 (SIGUSR2) received from TEST, changing binary",
            "[notice] A: changing binary",
            "[notice] A: start new binary process B",
            "[notice] B: using inherited sockets from \"N;\"",
            &emerg,
            "[notice] A: new binary process B exited with code 1",
        ],
    );
    s.wait_view(&steady_a());
    s.barrier("A");
    s.assert_view(&steady_a());
    s.assert_not_logged(&m, &["[notice] A: start worker processes"]);
    s.assert_timeline(
        &m,
        &["pid=A oldbin=-", "pid=- oldbin=A ?", "pid=A oldbin=-"],
    );
    s.assert_serves();
}

/// USR2 with the pid file gone: the rename fails, no new master is started.
fn usr2_without_pid_file_starts_nothing(s: &Server) {
    s.wait_view(&steady_a());
    s.swap_binary();
    std::fs::remove_file(s.pid_file()).expect("remove the pid file");
    let m = s.mark();
    s.signal("A", Signal::SIGUSR2);
    s.wait_log(
        &m,
        &[
            "[notice] A: signal 12 (SIGUSR2) received from TEST, changing binary",
            "[notice] A: changing binary",
            "[alert] A: rename() PREFIX/logs/nginx.pid to PREFIX/logs/nginx.pid.oldbin failed \
             before executing new binary process \"PREFIX/sbin/nginx\" (2: No such file or directory)",
        ],
    );
    s.barrier("A");
    s.assert_view(&view(&[
        "pid=- oldbin=-".into(),
        listen("A"),
        master("A", "1", "old"),
        workers("A", "old", WORKERS),
    ]));
    s.assert_timeline(&m, &["pid=- oldbin=-"]);
    s.assert_serves();
}

/// QUIT with a request in flight: the listening socket closes at once (new connections are
/// refused), the busy worker shows `is shutting down` and finishes the request, then all go.
fn quit_finishes_requests_in_flight(s: &Server) {
    s.wait_view(&steady_a());
    let held = s.hold_request();
    let m = s.mark();
    s.signal("A", Signal::SIGQUIT);
    s.wait_view(&view(&[
        "pid=A oldbin=-".into(),
        master("A", "1", "old"),
        "A worker exe=old \"nginx: worker process is shutting down\" x1".into(),
    ]));
    let refused = std::net::TcpStream::connect_timeout(&s.addr(), Duration::from_secs(5));
    assert!(
        refused
            .as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::ConnectionRefused),
        "{}: a new connection during the drain: {refused:?}",
        s.kind.name()
    );
    let resp = finish_request(held);
    assert!(
        resp.as_ref()
            .is_ok_and(|r| r.starts_with("HTTP/1.1 200 OK\r\n")),
        "{}: the request in flight got {resp:?}",
        s.kind.name()
    );
    s.wait_view("pid=- oldbin=-");
    s.wait_log(
        &m,
        &[
            "[notice] A: signal 3 (SIGQUIT) received from TEST, shutting down",
            "[notice] A: exit",
        ],
    );
}

/// TERM with a request in flight: everything exits at once, the client gets no response.
fn term_drops_requests_in_flight(s: &Server) {
    s.wait_view(&steady_a());
    let held = s.hold_request();
    let m = s.mark();
    s.signal("A", Signal::SIGTERM);
    s.wait_view("pid=- oldbin=-");
    let resp = finish_request(held);
    assert!(
        !resp.as_ref().is_ok_and(|r| !r.is_empty()),
        "{}: the request in flight got {resp:?}",
        s.kind.name()
    );
    s.wait_log(
        &m,
        &[
            "[notice] A: signal 15 (SIGTERM) received from TEST, exiting",
            "[notice] A: exit",
        ],
    );
}

/// QUIT the old master in `spawned` without WINCH: also a commit. It drains its own workers,
/// deletes `.oldbin` and exits; the new master is reparented to PID 1.
fn quit_old_master_in_spawned_commits(s: &Server) {
    spawn(s);
    let m = s.mark();
    s.signal("A", Signal::SIGQUIT);
    s.wait_view(&view(&[
        "pid=B oldbin=-".into(),
        listen("B"),
        master("B", "1", "new"),
        workers("B", "new", WORKERS),
    ]));
    s.wait_log(
        &m,
        &[
            "[notice] A: signal 3 (SIGQUIT) received from TEST, shutting down",
            "[notice] W: gracefully shutting down",
            "[notice] W: gracefully shutting down",
            "[notice] A: worker process W exited with code 0",
            "[notice] A: worker process W exited with code 0",
            "[notice] A: exit",
        ],
    );
    s.assert_timeline(&m, &["pid=B oldbin=A", "pid=B oldbin=-"]);
    s.assert_serves();
}

/// SIGKILL the new master in `drained`: as after its graceful exit, the old master renames
/// `.oldbin` back and restarts its own workers; the dead master's workers are orphaned.
fn killed_new_master_after_winch_restarts_old_workers(s: &Server) {
    spawn(s);
    drain(s);
    let m = s.mark();
    s.signal("B", Signal::SIGKILL);
    s.wait_view(&view(&[
        "pid=A oldbin=-".into(),
        listen("A"),
        master("A", "1", "old"),
        workers("A", "old", WORKERS),
        format!("other ppid=1 sid=A exe=new {WORKER_TITLE} x{WORKERS}"),
    ]));
    s.wait_log(
        &m,
        &[
            "[alert] A: new binary process B exited on signal 9",
            "[notice] A: start worker processes",
            "[notice] A: start worker process W",
            "[notice] A: start worker process W",
        ],
    );
    s.assert_timeline(&m, &["pid=B oldbin=A", "pid=A oldbin=-"]);
    s.assert_serves();
}

/// argv[0] replaced by a file that is not an executable: the forked child's execve fails
/// (it logs that, with its own pid), `.oldbin` goes back, the old master carries on.
fn exec_failure_of_new_binary(s: &Server) {
    s.wait_view(&steady_a());
    let garbage = s.prefix().join("garbage");
    std::fs::write(&garbage, "garbage\n").expect("write garbage");
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    s.install(&garbage, "garbage");
    let m = s.mark();
    s.signal("A", Signal::SIGUSR2);
    s.wait_log(
        &m,
        &[
            "[notice] A: signal 12 (SIGUSR2) received from TEST, changing binary",
            "[notice] A: changing binary",
            "[notice] A: start new binary process B",
            "[alert] B: execve() failed while executing new binary process \"PREFIX/sbin/nginx\" \
             (8: Exec format error)",
            "[notice] A: new binary process B exited with code 1",
        ],
    );
    s.wait_view(&steady_a());
    s.barrier("A");
    s.assert_view(&steady_a());
    s.assert_timeline(
        &m,
        &["pid=A oldbin=-", "pid=- oldbin=A ?", "pid=A oldbin=-"],
    );
    s.assert_serves();
}

/// `-t` (the config test an upgrade tool runs first): nginx's wording and exit codes, the
/// running master's pid file left alone; with no pid file, an empty one is created.
fn config_test_output_and_exit_codes(s: &Server) {
    s.wait_view(&steady_a());
    let pid_before = std::fs::metadata(s.pid_file()).expect("pid file");
    let (code, out) = s.run_command(&["-t"]);
    assert_eq!(
        (code, out),
        (
            Some(0),
            vec![
                "nginx: the configuration file PREFIX/conf/nginx.conf syntax is ok".to_string(),
                "nginx: configuration file PREFIX/conf/nginx.conf test is successful".to_string(),
            ]
        ),
        "{} -t on a good config",
        s.kind.name()
    );
    let pid_after = std::fs::metadata(s.pid_file()).expect("pid file");
    assert_eq!(
        (pid_before.ino(), pid_before.len(), pid_before.mtime_nsec()),
        (pid_after.ino(), pid_after.len(), pid_after.mtime_nsec()),
        "{}: -t touched the live pid file",
        s.kind.name()
    );
    let conf = std::fs::read_to_string(s.conf_path()).expect("read config");
    let bad_line = conf.lines().count() + 1;
    std::fs::write(s.conf_path(), format!("{conf}}}\n")).expect("break the config");
    let (code, out) = s.run_command(&["-t"]);
    assert_eq!(
        (code, out),
        (
            Some(1),
            vec![
                // The log format on stderr (nginx's compiled-in error log), written by the
                // `-t` process itself (a `W` here).
                format!("[emerg] W: unexpected \"}}\" in PREFIX/conf/nginx.conf:{bad_line}"),
                "nginx: configuration file PREFIX/conf/nginx.conf test failed".to_string(),
            ]
        ),
        "{} -t on a bad config",
        s.kind.name()
    );
    std::fs::write(s.conf_path(), conf).expect("restore the config");
    s.signal("A", Signal::SIGQUIT);
    s.wait_view("pid=- oldbin=-");
    let (code, _) = s.run_command(&["-t"]);
    assert_eq!(code, Some(0), "{} -t", s.kind.name());
    assert_eq!(
        std::fs::read(s.pid_file()).ok(),
        Some(Vec::new()),
        "{}: -t with no pid file creates an empty one",
        s.kind.name()
    );
}

/// `daemon off` whose original parent has exited (the master is PID 1's child): USR2 works
/// (the new master is not daemonized either: the old one's child, same session and group);
/// WINCH is still ignored, so the old workers can only go with their master (QUIT).
fn daemon_off_orphaned_usr2_works_winch_ignored(s: &Server) {
    let fg_master = |label: &str, ppid: &str, exe: &str| {
        format!("{label} master ppid={ppid} sid=TEST pgid=L exe={exe} {MASTER_TITLE}")
    };
    s.wait_view(&view(&[
        "pid=A oldbin=-".into(),
        listen("A"),
        fg_master("A", "1", "old"),
        workers("A", "old", WORKERS),
    ]));
    let m = s.mark();
    s.swap_binary();
    s.signal("A", Signal::SIGUSR2);
    let spawned = view(&[
        "pid=B oldbin=A".into(),
        listen("A,B"),
        fg_master("A", "1", "old"),
        workers("A", "old", WORKERS),
        fg_master("B", "A", "new"),
        workers("B", "new", WORKERS),
    ]);
    s.wait_view(&spawned);
    s.wait_log(&m, &usr2_lines());
    let m = s.mark();
    s.signal("A", Signal::SIGWINCH);
    s.wait_log(&m, &["[notice] A: signal 28 (SIGWINCH) received from TEST"]);
    s.barrier("A");
    s.assert_view(&spawned);
    s.assert_not_logged(&m, &["[notice] W: gracefully shutting down"]);
    let m = s.mark();
    s.signal("A", Signal::SIGQUIT);
    s.wait_view(&view(&[
        "pid=B oldbin=-".into(),
        listen("B"),
        fg_master("B", "1", "new"),
        workers("B", "new", WORKERS),
    ]));
    s.assert_timeline(&m, &["pid=B oldbin=A", "pid=B oldbin=-"]);
    s.assert_serves();
}

/// WINCH to the new master (the step of the widely copied, wrong rollback recipe): it is
/// daemonized too (it inherited the sockets), so it stops its own workers and stays,
/// holding the pid file; the old master is untouched.
fn winch_to_new_master_stops_its_workers(s: &Server) {
    spawn(s);
    let m = s.mark();
    s.signal("B", Signal::SIGWINCH);
    s.wait_view(&view(&[
        "pid=B oldbin=A".into(),
        listen("A,B"),
        master("A", "1", "old"),
        workers("A", "old", WORKERS),
        master("B", "A", "new"),
    ]));
    s.wait_log(
        &m,
        &[
            "[notice] B: signal 28 (SIGWINCH) received from TEST, stop accepting connections",
            "[notice] W: gracefully shutting down",
            "[notice] W: gracefully shutting down",
            "[notice] B: worker process W exited with code 0",
            "[notice] B: worker process W exited with code 0",
        ],
    );
    s.assert_timeline(&m, &["pid=B oldbin=A"]);
    s.assert_serves();
}

/// A worker killed by a signal: the master logs it at [alert] and starts a replacement.
fn killed_worker_is_respawned(s: &Server) {
    s.wait_view(&steady_a());
    let before = s.worker_pids("A");
    let victim = *before.iter().next().expect("a worker");
    let m = s.mark();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim), Signal::SIGKILL)
        .expect("kill a worker");
    s.wait_log(
        &m,
        &[
            "[alert] A: worker process W exited on signal 9",
            "[notice] A: start worker process W",
        ],
    );
    s.wait_view(&steady_a());
    let after = s.worker_pids("A");
    assert!(
        !after.contains(&victim) && after.len() == WORKERS,
        "{}: workers {before:?} -> {after:?}",
        s.kind.name()
    );
    s.assert_timeline(&m, &["pid=A oldbin=-"]);
    s.assert_serves();
}

/// SIGKILL the old master in `spawned`: nothing renames anything; `.oldbin` names a dead
/// process, the new master is reparented to PID 1, the old workers are orphaned.
fn killed_old_master_leaves_stale_oldbin(s: &Server) {
    spawn(s);
    let m = s.mark();
    s.signal("A", Signal::SIGKILL);
    let after = view(&[
        "pid=B oldbin=A".into(),
        listen("B"),
        master("B", "1", "new"),
        workers("B", "new", WORKERS),
        format!("other ppid=1 sid=A exe=old {WORKER_TITLE} x{WORKERS}"),
    ]);
    s.wait_view(&after);
    s.barrier("B");
    s.assert_view(&after);
    s.assert_timeline(&m, &["pid=B oldbin=A"]);
    s.assert_serves();
    // Its parent gone, the new master accepts USR2; the rename replaces the stale `.oldbin`.
    let m = s.mark();
    s.signal("B", Signal::SIGUSR2);
    s.wait_view(&view(&[
        "pid=C oldbin=B".into(),
        listen("B,C"),
        master("B", "1", "new"),
        workers("B", "new", WORKERS),
        master("C", "B", "new"),
        workers("C", "new", WORKERS),
        format!("other ppid=1 sid=A exe=old {WORKER_TITLE} x{WORKERS}"),
    ]));
    s.wait_log(
        &m,
        &[
            "[notice] B: signal 12 (SIGUSR2) received from TEST, changing binary",
            "[notice] B: start new binary process C",
        ],
    );
    s.assert_timeline(
        &m,
        &[
            "pid=B oldbin=A",
            "pid=- oldbin=B ?",
            "pid=\"\" oldbin=B ?",
            "pid=C oldbin=B",
        ],
    );
}

/// HUP to the new master in `spawned`: it is not an old binary, so it reloads as in steady
/// state (new workers, old ones drained); the old master is untouched.
fn hup_to_new_master_reloads_it(s: &Server) {
    spawn(s);
    let before = s.worker_pids("B");
    let m = s.mark();
    s.signal("B", Signal::SIGHUP);
    s.wait_log(
        &m,
        &[
            "[notice] B: signal 1 (SIGHUP) received from TEST, reconfiguring",
            "[notice] B: reconfiguring",
            "[notice] B: start worker processes",
            "[notice] B: start worker process W",
            "[notice] B: start worker process W",
            "[notice] W: gracefully shutting down",
            "[notice] W: gracefully shutting down",
            "[notice] B: worker process W exited with code 0",
            "[notice] B: worker process W exited with code 0",
        ],
    );
    s.wait_view(&spawned_ab());
    let after = s.worker_pids("B");
    assert!(
        before.is_disjoint(&after),
        "{}: B's workers not replaced: {before:?} -> {after:?}",
        s.kind.name()
    );
    s.assert_timeline(&m, &["pid=B oldbin=A"]);
}

/// Start-up with `daemon on`: the launcher exits 0 at once, the master (PID 1's child, its
/// own session) writes the pid file and logs its workers' start.
fn daemon_start_up(s: &Server) {
    s.wait_view(&steady_a());
    let whole = s.mark().in_log(s.error_log(), 0);
    s.wait_log(
        &whole,
        &[
            "[notice] A: start worker processes",
            "[notice] A: start worker process W",
            "[notice] A: start worker process W",
        ],
    );
    s.assert_serves();
}

/// WINCH in steady state (daemonized): the workers stop and are not respawned; the master
/// keeps the socket. A HUP (a real reload here: no new binary) brings workers back.
fn winch_in_steady_state_stops_workers(s: &Server) {
    s.wait_view(&steady_a());
    let m = s.mark();
    s.signal("A", Signal::SIGWINCH);
    let idle = view(&[
        "pid=A oldbin=-".into(),
        listen("A"),
        master("A", "1", "old"),
    ]);
    s.wait_view(&idle);
    s.wait_log(
        &m,
        &[
            "[notice] A: signal 28 (SIGWINCH) received from TEST, stop accepting connections",
            "[notice] W: gracefully shutting down",
            "[notice] W: gracefully shutting down",
            "[notice] A: worker process W exited with code 0",
            "[notice] A: worker process W exited with code 0",
        ],
    );
    s.barrier("A");
    s.assert_view(&idle);
    let m = s.mark();
    s.signal("A", Signal::SIGHUP);
    s.wait_view(&steady_a());
    s.wait_log(
        &m,
        &[
            "[notice] A: signal 1 (SIGHUP) received from TEST, reconfiguring",
            "[notice] A: reconfiguring",
            "[notice] A: start worker processes",
            "[notice] A: start worker process W",
            "[notice] A: start worker process W",
        ],
    );
    s.assert_serves();
}

/// HUP in steady state with a config the server refuses: it logs why and keeps running
/// with the old config and the old workers.
fn hup_with_bad_config_keeps_old_workers(s: &Server) {
    s.wait_view(&steady_a());
    let before = s.worker_pids("A");
    let conf = std::fs::read_to_string(s.conf_path()).expect("read config");
    let bad_line = conf.lines().count() + 1;
    std::fs::write(s.conf_path(), format!("{conf}}}\n")).expect("break the config");
    let m = s.mark();
    s.signal("A", Signal::SIGHUP);
    let emerg = format!("[emerg] A: unexpected \"}}\" in PREFIX/conf/nginx.conf:{bad_line}");
    s.wait_log(
        &m,
        &[
            "[notice] A: signal 1 (SIGHUP) received from TEST, reconfiguring",
            "[notice] A: reconfiguring",
            &emerg,
        ],
    );
    s.barrier("A");
    s.assert_view(&steady_a());
    assert_eq!(
        s.worker_pids("A"),
        before,
        "{}: workers changed",
        s.kind.name()
    );
    s.assert_not_logged(&m, &["[notice] A: start worker processes"]);
    s.assert_serves();
}

/// Rollback's HUP (old master in `drained`) starts workers without reading the config: a
/// config broken since start-up does not stop the rollback.
fn rollback_hup_does_not_read_config(s: &Server) {
    spawn(s);
    drain(s);
    let conf = std::fs::read_to_string(s.conf_path()).expect("read config");
    std::fs::write(s.conf_path(), format!("{conf}}}\n")).expect("break the config");
    let m = s.mark();
    s.signal("A", Signal::SIGHUP);
    s.wait_view(&spawned_ab());
    s.wait_log(
        &m,
        &[
            "[notice] A: signal 1 (SIGHUP) received from TEST, reconfiguring",
            "[notice] A: start worker processes",
            "[notice] A: start worker process W",
            "[notice] A: start worker process W",
        ],
    );
    s.barrier("A");
    s.assert_not_logged(&m, &["[notice] A: reconfiguring"]);
    let lines = s.log_lines_of(&s.error_log());
    assert!(
        !lines[m.log_line..].iter().any(|l| l.starts_with("[emerg]")),
        "{}: the config was read:\n{}",
        s.kind.name(),
        lines[m.log_line..].join("\n")
    );
    s.assert_serves();
}

/// WINCH with a request in flight on an old worker: that worker shows `is shutting down`
/// and finishes the request; new connections are served by the new workers meanwhile.
fn winch_lets_old_workers_finish_requests(s: &Server) {
    spawn(s);
    let (held, elsewhere) = s.hold_request_on("A");
    let m = s.mark();
    s.signal("A", Signal::SIGWINCH);
    s.wait_view(&view(&[
        "pid=B oldbin=A".into(),
        listen("A,B"),
        master("A", "1", "old"),
        "A worker exe=old \"nginx: worker process is shutting down\" x1".into(),
        master("B", "A", "new"),
        workers("B", "new", WORKERS),
    ]));
    s.assert_serves();
    let resp = finish_request(held);
    assert!(
        resp.as_ref()
            .is_ok_and(|r| r.starts_with("HTTP/1.1 200 OK\r\n")),
        "{}: the request in flight on the old worker got {resp:?}",
        s.kind.name()
    );
    for c in elsewhere {
        let resp = finish_request(c);
        assert!(
            resp.as_ref()
                .is_ok_and(|r| r.starts_with("HTTP/1.1 200 OK\r\n")),
            "{}: a request in flight on a new worker got {resp:?}",
            s.kind.name()
        );
    }
    s.wait_view(&drained_ab());
    s.wait_log(
        &m,
        &[
            "[notice] A: signal 28 (SIGWINCH) received from TEST, stop accepting connections",
            "[notice] A: worker process W exited with code 0",
            "[notice] A: worker process W exited with code 0",
        ],
    );
}

/// Who deletes `pid` when the new master exits: the new master itself (it is its own pid
/// file), before the old master renames `.oldbin` back. Made visible by stopping the old
/// master (SIGSTOP) while the new one quits, then letting it go on (SIGCONT).
fn new_master_deletes_its_pid_file_on_exit(s: &Server) {
    spawn(s);
    s.signal("A", Signal::SIGSTOP);
    let m = s.mark();
    s.signal("B", Signal::SIGQUIT);
    let gap = view(&[
        "pid=- oldbin=A".into(),
        listen("A"),
        master("A", "1", "old"),
        workers("A", "old", WORKERS),
    ]);
    s.wait_view(&gap);
    s.wait_log(
        &m,
        &[
            "[notice] B: signal 3 (SIGQUIT) received from TEST, shutting down",
            "[notice] B: exit",
        ],
    );
    s.signal("A", Signal::SIGCONT);
    s.wait_view(&steady_a());
    s.wait_log(&m, &["[notice] A: new binary process B exited with code 0"]);
    s.assert_timeline(&m, &["pid=B oldbin=A", "pid=- oldbin=A", "pid=A oldbin=-"]);
    s.assert_serves();
}

/// WINCH closes the old workers' idle keep-alive connections at once (a client then retries
/// on a new connection) and those workers exit without waiting for the client to close its
/// end; keep-alive connections on the new workers stay usable.
fn winch_closes_idle_keepalive_connections(s: &Server) {
    spawn(s);
    let (mut idle, elsewhere) = s.idle_keepalive_on("A");
    let winch = Instant::now();
    s.signal("A", Signal::SIGWINCH);
    let closed = closed_by_server(&mut idle);
    let after = winch.elapsed();
    assert!(
        closed.is_ok(),
        "{}: the idle keep-alive connection on an old worker: {closed:?}",
        s.kind.name()
    );
    // "At once": nginx closes it within milliseconds. The bound only has to tell that
    // apart from waiting for a keep-alive timeout, with room for a loaded machine.
    assert!(
        after < Duration::from_secs(2),
        "{}: the idle keep-alive connection on an old worker was closed only after {after:?}",
        s.kind.name()
    );
    // The client keeps its end open (as a pool does until it next uses the connection):
    // nginx's old worker does not wait for the client's FIN, it exits at once.
    s.wait_view(&drained_ab());
    let drained = winch.elapsed();
    assert!(
        drained < Duration::from_secs(3),
        "{}: with an idle keep-alive client, the old workers took {drained:?} to exit",
        s.kind.name()
    );
    drop(idle);
    for mut c in elsewhere {
        c.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .expect("reuse a keep-alive connection");
        let got = read_response(&mut c);
        assert_eq!(
            got,
            Ok("HTTP/1.1 200 OK".to_string()),
            "{}: a keep-alive connection on a new worker",
            s.kind.name()
        );
    }
}

/// TERM with a worker that cannot react (stopped): the master escalates to SIGKILL after a
/// short grace (nginx: about a second), reaps it and exits; the pid file goes.
fn term_kills_stuck_workers(s: &Server) {
    s.wait_view(&steady_a());
    let stuck = *s.worker_pids("A").iter().next().expect("a worker");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(stuck), Signal::SIGSTOP)
        .expect("stop a worker");
    let m = s.mark();
    s.signal("A", Signal::SIGTERM);
    s.wait_view("pid=- oldbin=-");
    s.wait_log(
        &m,
        &[
            "[notice] A: signal 15 (SIGTERM) received from TEST, exiting",
            "[notice] A: worker process W exited with code 0",
            "[alert] A: worker process W exited on signal 9",
            "[notice] A: exit",
        ],
    );
}

/// Started from the prefix as `sbin/nginx`: the master keeps its working directory (no
/// chdir when daemonizing) and USR2 re-executes the relative argv[0] from there.
fn usr2_execs_relative_argv0_from_the_masters_cwd(s: &Server) {
    let title = "\"nginx: master process sbin/nginx -p PREFIX/ -c conf/nginx.conf\"";
    let master = |label: &str, ppid: &str, exe: &str| {
        format!("{label} master ppid={ppid} sid=A pgid=A exe={exe} {title}")
    };
    s.wait_view(&view(&[
        "pid=A oldbin=-".into(),
        listen("A"),
        master("A", "1", "old"),
        workers("A", "old", WORKERS),
    ]));
    assert_eq!(s.cwd("A"), "PREFIX", "{}: the master's cwd", s.kind.name());
    let m = s.mark();
    s.swap_binary();
    s.signal("A", Signal::SIGUSR2);
    s.wait_view(&view(&[
        "pid=B oldbin=A".into(),
        listen("A,B"),
        master("A", "1", "old"),
        workers("A", "old", WORKERS),
        master("B", "A", "new"),
        workers("B", "new", WORKERS),
    ]));
    s.wait_log(&m, &usr2_lines());
    assert_eq!(
        s.cwd("B"),
        "PREFIX",
        "{}: the new master's cwd",
        s.kind.name()
    );
}

// ---------------------------------------------------------------------------------------
// Issue 16: configuration checks and outputs that an upgrade test can trip over.

/// Rewrites the config with `edit`; returns the original text.
fn edit_config(s: &Server, edit: impl FnOnce(&str) -> String) -> String {
    let conf = std::fs::read_to_string(s.conf_path()).expect("read config");
    std::fs::write(s.conf_path(), edit(&conf)).expect("write config");
    conf
}

/// The 1-based line of the config that contains `needle`.
fn config_line(s: &Server, needle: &str) -> usize {
    let conf = std::fs::read_to_string(s.conf_path()).expect("read config");
    conf.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the config"))
        + 1
}

/// An unknown directive (a typo) fails `-t` and a start with nginx's message, wherever it
/// stands (main level, `events`, `http`, `-g`); the running master is not disturbed.
fn unknown_directive_fails_test_and_start(s: &Server) {
    s.wait_view(&steady_a());
    let good = std::fs::read_to_string(s.conf_path()).expect("read config");
    let failed = "nginx: configuration file PREFIX/conf/nginx.conf test failed".to_string();
    for (edit, name) in [
        (("worker_processes", "wrker_processes"), "wrker_processes"),
        (
            ("worker_connections 64", "worker_conections 64"),
            "worker_conections",
        ),
        (("access_log off", "acess_log off"), "acess_log"),
    ] {
        std::fs::write(s.conf_path(), good.replacen(edit.0, edit.1, 1)).expect("write");
        let line = config_line(s, edit.1);
        let emerg =
            format!("[emerg] W: unknown directive \"{name}\" in PREFIX/conf/nginx.conf:{line}");
        let (code, out) = s.run_command(&["-t"]);
        assert_eq!(
            (code, out),
            (Some(1), vec![emerg.clone(), failed.clone()]),
            "{} -t with {name}",
            s.kind.name()
        );
        let (code, out) = s.run_command(&[]);
        assert_eq!(
            (code, out),
            (Some(1), vec![emerg]),
            "{} start with {name}",
            s.kind.name()
        );
    }
    std::fs::write(s.conf_path(), &good).expect("restore the config");
    let (code, out) = s.run_command(&["-t", "-g", "wrker_processes 2;"]);
    assert_eq!(
        (code, out),
        (
            Some(1),
            vec![
                "[emerg] W: unknown directive \"wrker_processes\" in command line".to_string(),
                failed
            ]
        ),
        "{} -t -g",
        s.kind.name()
    );
    s.barrier("A");
    s.assert_view(&steady_a());
    s.assert_serves();
}

/// HUP with an unknown directive in the config: logged, the old config and workers kept.
fn hup_with_unknown_directive_keeps_old_workers(s: &Server) {
    s.wait_view(&steady_a());
    let before = s.worker_pids("A");
    edit_config(s, |c| format!("{c}wrker_processes 4;\n"));
    let line = config_line(s, "wrker_processes");
    let m = s.mark();
    s.signal("A", Signal::SIGHUP);
    let emerg = format!(
        "[emerg] A: unknown directive \"wrker_processes\" in PREFIX/conf/nginx.conf:{line}"
    );
    s.wait_log(
        &m,
        &[
            "[notice] A: signal 1 (SIGHUP) received from TEST, reconfiguring",
            "[notice] A: reconfiguring",
            &emerg,
        ],
    );
    s.barrier("A");
    s.assert_view(&steady_a());
    assert_eq!(
        s.worker_pids("A"),
        before,
        "{}: workers changed",
        s.kind.name()
    );
    s.assert_not_logged(&m, &["[notice] A: start worker processes"]);
    s.assert_serves();
}

/// The USR2 half of an upgrade whose new binary fails at start-up with B's `failure` lines:
/// it exits 1, `.oldbin` goes back, the old master carries on as before.
fn usr2_new_binary_fails(s: &Server, m: &Mark, failure: &[&str]) {
    s.signal("A", Signal::SIGUSR2);
    let mut lines = vec![
        "[notice] A: signal 12 (SIGUSR2) received from TEST, changing binary",
        "[notice] A: changing binary",
        "[notice] A: start new binary process B",
        "[notice] B: using inherited sockets from \"N;\"",
    ];
    lines.extend_from_slice(failure);
    lines.push("[notice] A: new binary process B exited with code 1");
    s.wait_log(m, &lines);
    s.wait_view(&steady_a());
    s.barrier("A");
    s.assert_view(&steady_a());
    s.assert_not_logged(
        m,
        &[
            "[notice] A: start worker processes",
            "[notice] B: start worker processes",
        ],
    );
    s.assert_timeline(m, &["pid=A oldbin=-", "pid=- oldbin=A ?", "pid=A oldbin=-"]);
    s.assert_serves();
}

/// A new binary that meets an unknown directive exits 1 (the typo shipped with the upgrade).
fn unknown_directive_in_new_binary(s: &Server) {
    s.wait_view(&steady_a());
    s.swap_binary();
    edit_config(s, |c| c.replacen("access_log off", "acess_log off", 1));
    let line = config_line(s, "acess_log");
    let m = s.mark();
    let emerg =
        format!("[emerg] B: unknown directive \"acess_log\" in PREFIX/conf/nginx.conf:{line}");
    usr2_new_binary_fails(s, &m, &[&emerg]);
}

/// A new binary whose config adds a `listen` on an address in use: it tries bind() five
/// times, 500 ms apart, then gives up and exits 1 (nginx's lines, in its order).
fn new_binary_retries_bind_then_exits(s: &Server) {
    s.wait_view(&steady_a());
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let busy = taken.local_addr().expect("held port");
    s.swap_binary();
    let listen = format!("listen 127.0.0.1:{};", s.addr().port());
    edit_config(s, |c| {
        c.replacen(&listen, &format!("{listen} listen {busy};"), 1)
    });
    let m = s.mark();
    let bind = format!("[emerg] B: bind() to {busy} failed (98: Address already in use)");
    let again = "[notice] B: try again to bind() after 500ms";
    let mut failure = Vec::new();
    for _ in 0..5 {
        failure.push(bind.as_str());
        failure.push(again);
    }
    failure.push("[emerg] B: still could not bind()");
    usr2_new_binary_fails(s, &m, &failure);
    drop(taken);
}

/// HUP with a config that adds a `listen` on an address in use: the master retries bind()
/// as at start-up, then keeps the old config and workers.
fn hup_with_busy_address_keeps_old_workers(s: &Server) {
    s.wait_view(&steady_a());
    let before = s.worker_pids("A");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("hold a port");
    let busy = taken.local_addr().expect("held port");
    let listen = format!("listen 127.0.0.1:{};", s.addr().port());
    edit_config(s, |c| {
        c.replacen(&listen, &format!("{listen} listen {busy};"), 1)
    });
    let m = s.mark();
    s.signal("A", Signal::SIGHUP);
    let bind = format!("[emerg] A: bind() to {busy} failed (98: Address already in use)");
    let mut lines = vec![
        "[notice] A: signal 1 (SIGHUP) received from TEST, reconfiguring",
        "[notice] A: reconfiguring",
    ];
    for _ in 0..5 {
        lines.push(&bind);
        lines.push("[notice] A: try again to bind() after 500ms");
    }
    lines.push("[emerg] A: still could not bind()");
    s.wait_log(&m, &lines);
    s.barrier("A");
    s.assert_view(&steady_a());
    assert_eq!(
        s.worker_pids("A"),
        before,
        "{}: workers changed",
        s.kind.name()
    );
    s.assert_not_logged(&m, &["[notice] A: start worker processes"]);
    s.assert_serves();
    drop(taken);
}

/// `listen … reuseport` with 2 workers: the master holds one socket per worker. A new
/// master started with `worker_processes 1` keeps the first inherited socket and closes the
/// other, which from then on only the old master holds (nobody accepts on its queue once
/// the old workers go: what hotreload refuses to drain). Rolled back, the old master still
/// has both.
fn reuseport_fewer_workers_closes_the_surplus_socket(s: &Server) {
    let steady = view(&[
        "pid=A oldbin=-".into(),
        "listen sockets=2 held by masters A".into(),
        master("A", "1", "old"),
        workers("A", "old", WORKERS),
    ]);
    s.wait_view(&steady);
    s.assert_serves();
    let old = s.listen_sockets("A");
    assert_eq!(
        old.len(),
        WORKERS,
        "{}: one socket per worker",
        s.kind.name()
    );
    edit_config(s, |c| {
        c.replacen(
            &format!("worker_processes {WORKERS};"),
            "worker_processes 1;",
            1,
        )
    });
    s.swap_binary();
    s.signal("A", Signal::SIGUSR2);
    s.wait_view(&view(&[
        "pid=B oldbin=A".into(),
        "listen sockets=2 held by masters A,B".into(),
        master("A", "1", "old"),
        workers("A", "old", WORKERS),
        master("B", "A", "new"),
        workers("B", "new", 1),
    ]));
    let new = s.listen_sockets("B");
    assert_eq!(new.len(), 1, "{}: B keeps one socket", s.kind.name());
    assert!(
        new.is_subset(&old),
        "{}: B's socket is inherited",
        s.kind.name()
    );
    assert_eq!(
        s.listen_sockets("A"),
        old,
        "{}: A keeps both",
        s.kind.name()
    );
    s.signal("B", Signal::SIGQUIT);
    s.wait_view(&steady);
    assert_eq!(s.listen_sockets("A"), old);
    s.assert_serves();
}

/// A duplicate `listen` in one server fails `-t` at the second one.
fn duplicate_listen_fails_test(s: &Server) {
    s.wait_view(&steady_a());
    let listen = format!("listen 127.0.0.1:{};", s.addr().port());
    edit_config(s, |c| {
        c.replacen(&listen, &format!("{listen}\n  {listen}"), 1)
    });
    let line = config_line(s, "location");
    let (code, out) = s.run_command(&["-t"]);
    assert_eq!(
        (code, out),
        (
            Some(1),
            vec![
                format!(
                    "[emerg] W: a duplicate listen 127.0.0.1:{} in PREFIX/conf/nginx.conf:{line}",
                    s.addr().port()
                ),
                "nginx: configuration file PREFIX/conf/nginx.conf test failed".to_string(),
            ]
        ),
        "{} -t",
        s.kind.name()
    );
}

/// What `-T` prints on stdout (after the `-t` lines on stderr) for `files`, in order, as
/// [`Server::run_command`] shows it: stdout first, empty lines dropped, prefix as PREFIX.
fn dump_lines(s: &Server, files: &[std::path::PathBuf]) -> Vec<String> {
    let prefix = s.prefix().display().to_string();
    let mut out = Vec::new();
    for f in files {
        out.push(format!("# configuration file {}:", f.display()).replace(&prefix, "PREFIX"));
        let text = std::fs::read_to_string(f).expect("read config file");
        out.extend(
            text.lines()
                .filter(|l| !l.is_empty())
                .map(|l| l.replace(&prefix, "PREFIX")),
        );
    }
    out
}

/// `-T` (how a tool learns the effective config): the test lines, then every file read,
/// each once, in the order nginx reads them (includes in place, patterns sorted).
fn config_dump_lists_every_file(s: &Server) {
    s.wait_view(&steady_a());
    let conf_dir = s.prefix().join("conf");
    std::fs::create_dir(conf_dir.join("extra")).expect("mkdir");
    std::fs::write(
        conf_dir.join("extra/b.conf"),
        "add_header X-Included yes;\n",
    )
    .expect("write");
    std::fs::write(conf_dir.join("extra/a.conf"), "# nothing here\n").expect("write");
    std::fs::write(conf_dir.join("main.conf"), "worker_rlimit_nofile 1024;").expect("write");
    edit_config(s, |c| {
        c.replacen("http {", "include main.conf;\nhttp {\n  include extra/*.conf; include extra/b.conf; include none/*.conf;", 1)
    });
    let (code, out) = s.run_command(&["-T"]);
    let mut want = dump_lines(
        s,
        &[
            s.conf_path(),
            conf_dir.join("main.conf"),
            conf_dir.join("extra/a.conf"),
            conf_dir.join("extra/b.conf"),
        ],
    );
    want.push("nginx: the configuration file PREFIX/conf/nginx.conf syntax is ok".into());
    want.push("nginx: configuration file PREFIX/conf/nginx.conf test is successful".into());
    assert_eq!((code, out), (Some(0), want.clone()), "{} -T", s.kind.name());
    let (code, out) = s.run_command(&["-T", "-q"]);
    want.truncate(want.len() - 2);
    assert_eq!(
        (code, out),
        (Some(0), want),
        "{} -T -q: the dump without the test lines",
        s.kind.name()
    );
}

/// `-t`'s wording where fake-nginx used to differ: a missing `events` block is found after
/// `syntax is ok`; a bad `worker_connections`; a pid file in a missing directory (the log
/// format, not `nginx: [emerg]`).
fn config_test_wording(s: &Server) {
    s.wait_view(&steady_a());
    let failed = || "nginx: configuration file PREFIX/conf/nginx.conf test failed".to_string();
    let syntax_ok =
        || "nginx: the configuration file PREFIX/conf/nginx.conf syntax is ok".to_string();
    let good = edit_config(s, |c| {
        c.replacen("events { worker_connections 64; }", "", 1)
    });
    let (code, out) = s.run_command(&["-t"]);
    assert_eq!(
        (code, out),
        (
            Some(1),
            vec![
                syntax_ok(),
                "[emerg] W: no \"events\" section in configuration".to_string(),
                failed()
            ]
        ),
        "{} -t without events",
        s.kind.name()
    );
    std::fs::write(
        s.conf_path(),
        good.replacen("worker_connections 64", "worker_connections x", 1),
    )
    .expect("write");
    let line = config_line(s, "worker_connections");
    let (code, out) = s.run_command(&["-t"]);
    assert_eq!(
        (code, out),
        (
            Some(1),
            vec![
                format!("[emerg] W: invalid number \"x\" in PREFIX/conf/nginx.conf:{line}"),
                failed()
            ]
        ),
        "{} -t with worker_connections x",
        s.kind.name()
    );
    std::fs::write(s.conf_path(), good.replacen("pid logs/", "pid nowhere/", 1)).expect("write");
    let (code, out) = s.run_command(&["-t"]);
    assert_eq!(
        (code, out),
        (
            Some(1),
            vec![
                syntax_ok(),
                "[emerg] W: open() \"PREFIX/nowhere/nginx.pid\" failed (2: No such file or directory)"
                    .to_string(),
                failed()
            ]
        ),
        "{} -t with the pid file in a missing directory",
        s.kind.name()
    );
}

/// Kills a daemonized master's session (its workers too) when dropped, even on panic.
struct SessionGuard(i32);

impl Drop for SessionGuard {
    fn drop(&mut self) {
        hotreload_tests::kill_session(self.0);
    }
}

/// The master's title is `master process ` and argv joined by single spaces, quotes gone:
/// `-g 'daemon on; master_process on;'` reads the same on both.
fn title_joins_argv_with_spaces(s: &Server) {
    s.wait_view(&steady_a());
    s.signal("A", Signal::SIGQUIT);
    s.wait_view("pid=- oldbin=-");
    edit_config(s, |c| c.replacen("daemon on;\n", "", 1));
    let (code, out) = s.run_command(&["-g", "daemon on; master_process on;"]);
    assert_eq!(
        (code, out),
        (Some(0), Vec::<String>::new()),
        "{} start",
        s.kind.name()
    );
    let title = |pid: i32| -> Option<String> {
        let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
        Some(
            String::from_utf8_lossy(&raw[..end])
                .replace(&s.prefix().display().to_string(), "PREFIX"),
        )
    };
    let want = "nginx: master process PREFIX/sbin/nginx -p PREFIX/ -c conf/nginx.conf \
                -g daemon on; master_process on;";
    let pid = wait_for(
        &format!("{} master to set its title", s.kind.name()),
        || {
            let pid = std::fs::read_to_string(s.pid_file())
                .ok()
                .and_then(|p| p.trim().parse::<i32>().ok())
                .ok_or("no pid file yet")?;
            match title(pid) {
                Some(t) if t.starts_with("nginx: master process") => Ok(pid),
                t => Err(format!("title {t:?}")),
            }
        },
    );
    let _guard = SessionGuard(pid);
    assert_eq!(
        title(pid).as_deref(),
        Some(want),
        "{}: master title",
        s.kind.name()
    );
}

/// Debian's default `nginx.conf` and `sites-enabled/default` (with `mime.types`; copies in
/// fixtures/tests/data/debian) pass `-t` and dump the same with `-T`. Only the absolute
/// paths move into the prefix; real nginx's temp paths go where Debian takes local
/// additions, `conf.d/`.
fn debian_default_config_loads(s: &Server) {
    let data =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tests/data/debian");
    let prefix = s.prefix().display().to_string();
    let etc = s.prefix().join("etc/nginx");
    for sub in ["sites-enabled", "conf.d", "modules-enabled"] {
        std::fs::create_dir_all(etc.join(sub)).expect("mkdir");
    }
    let conf = std::fs::read_to_string(data.join("nginx.conf"))
        .expect("Debian's nginx.conf")
        .replace("/etc/nginx/", &format!("{prefix}/etc/nginx/"))
        .replace("/var/log/nginx/", &format!("{prefix}/logs/"))
        .replace("/run/nginx.pid", &format!("{prefix}/logs/debian.pid"));
    std::fs::write(etc.join("nginx.conf"), conf).expect("write");
    std::fs::copy(data.join("mime.types"), etc.join("mime.types")).expect("copy");
    std::fs::copy(
        data.join("sites-default"),
        etc.join("sites-enabled/default"),
    )
    .expect("copy");
    std::fs::write(
        etc.join("conf.d/temp-paths.conf"),
        "client_body_temp_path tmp/body; proxy_temp_path tmp/proxy; fastcgi_temp_path tmp/fastcgi;\n\
         uwsgi_temp_path tmp/uwsgi; scgi_temp_path tmp/scgi;\n",
    )
    .expect("write");
    let (code, out) = s.run_command(&["-c", "etc/nginx/nginx.conf", "-T"]);
    let mut want = dump_lines(
        s,
        &[
            etc.join("nginx.conf"),
            etc.join("mime.types"),
            etc.join("conf.d/temp-paths.conf"),
            etc.join("sites-enabled/default"),
        ],
    );
    want.push("nginx: the configuration file PREFIX/etc/nginx/nginx.conf syntax is ok".into());
    want.push("nginx: configuration file PREFIX/etc/nginx/nginx.conf test is successful".into());
    assert_eq!((code, out), (Some(0), want), "{} -T", s.kind.name());
}

// ---------------------------------------------------------------------------------------

fn run(kind: Kind, opts: Options, scenario: fn(&Server)) {
    hotreload_tests::watchdog(move || {
        let builds: Builds = kind.builds();
        let server = Server::start(kind, &builds, opts);
        scenario(&server);
    });
}

macro_rules! scenarios {
    ($($name:ident $(($opts:expr))?),* $(,)?) => {$(
        mod $name {
            use super::*;
            fn opts() -> Options {
                None$(.or(Some($opts)))?.unwrap_or_default()
            }
            #[test]
            #[cfg_attr(missing_real_nginx, ignore = "needs real nginx: run scripts/install-real-servers")]
            fn nginx() {
                run(Kind::RealNginx, opts(), super::$name);
            }
            #[test]
            fn fake() {
                run(Kind::FakeNginx, opts(), super::$name);
            }
        }
    )*};
}

scenarios! {
    // DESIGN.md §2, row by row.
    daemon_start_up,
    usr2_spawns_new_master,
    usr2_execs_relative_argv0_from_the_masters_cwd(Options::DaemonRelativeArgv0),
    second_usr2_is_ignored,
    usr2_to_new_master_is_ignored,
    daemon_off_ignores_usr2_and_winch(Options::Foreground),
    daemon_off_orphaned_usr2_works_winch_ignored(Options::ForegroundOrphaned),
    new_master_quit_renames_oldbin_back,
    new_master_deletes_its_pid_file_on_exit,
    winch_then_new_master_exit_restarts_old_workers,
    winch_in_steady_state_stops_workers,
    winch_to_new_master_stops_its_workers,
    hup_while_new_binary_runs_doubles_workers,
    hup_in_steady_state_replaces_workers,
    hup_to_new_master_reloads_it,
    quit_stops_gracefully,
    term_stops_fast,
    usr1_reopens_logs,
    // Commit and rollback.
    upgrade_commits,
    quit_old_master_in_spawned_commits,
    rollback_from_spawned,
    rollback_from_drained,
    rollback_hup_does_not_read_config,
    // Failures: a new master that dies or cannot start, missing pid file, bad config.
    killed_new_master_orphans_its_workers,
    killed_new_master_after_winch_restarts_old_workers,
    killed_old_master_leaves_stale_oldbin,
    killed_worker_is_respawned,
    config_error_in_new_binary,
    exec_failure_of_new_binary,
    usr2_without_pid_file_starts_nothing,
    hup_with_bad_config_keeps_old_workers,
    config_test_output_and_exit_codes,
    // What clients see while workers stop.
    quit_finishes_requests_in_flight,
    term_drops_requests_in_flight,
    term_kills_stuck_workers,
    winch_lets_old_workers_finish_requests,
    winch_closes_idle_keepalive_connections,
    // Configuration checks and outputs (issue 16).
    unknown_directive_fails_test_and_start,
    hup_with_unknown_directive_keeps_old_workers,
    unknown_directive_in_new_binary,
    new_binary_retries_bind_then_exits,
    hup_with_busy_address_keeps_old_workers,
    duplicate_listen_fails_test,
    reuseport_fewer_workers_closes_the_surplus_socket(Options::DaemonReuseport),
    config_dump_lists_every_file,
    config_test_wording,
    title_joins_argv_with_spaces,
    debian_default_config_loads,
}

/// fake-nginx's fault variants that stand for a bad build, held to what real nginx does when
/// a new binary fails at start-up (see `config_error_in_new_binary`). fake-nginx only.
mod fake_fault_variants {
    use super::*;
    use hotreload_tests::server::fake_variant;

    /// USR2 to a master whose argv[0] now holds `variant`: it starts, fails, exits 1; the
    /// old master renames `.oldbin` back and carries on. `failure` are B's own lines.
    fn failed_start_up(variant: &std::path::Path, failure: &[&str]) {
        let builds = Kind::FakeNginx.builds();
        let s = Server::start(Kind::FakeNginx, &builds, Options::Daemon);
        s.wait_view(&steady_a());
        s.install(variant, "new");
        let m = s.mark();
        s.signal("A", Signal::SIGUSR2);
        let mut lines = vec![
            "[notice] A: signal 12 (SIGUSR2) received from TEST, changing binary",
            "[notice] A: changing binary",
            "[notice] A: start new binary process B",
            "[notice] A: new binary process B exited with code 1",
        ];
        lines.extend_from_slice(failure);
        s.wait_log(&m, &lines);
        s.wait_view(&steady_a());
        s.barrier("A");
        s.assert_view(&steady_a());
        s.assert_timeline(
            &m,
            &["pid=A oldbin=-", "pid=- oldbin=A ?", "pid=A oldbin=-"],
        );
        s.assert_serves();
    }

    /// `bad-config`: the build rejects the config's first directive, as nginx rejects an
    /// unknown one (an `[emerg]` in the error log, in the log's format).
    #[test]
    fn bad_config() {
        let v = fake_variant(hotreload_tests::server::FAKE_NEW, &["bad-config"]);
        failed_start_up(
            &v,
            &[
                "[notice] B: using inherited sockets from \"N;\"",
                "[emerg] B: unknown directive \"worker_processes\" in PREFIX/conf/nginx.conf:1",
            ],
        );
    }

    /// `crash-on-start`: exits 1 after start-up, before writing the pid file.
    #[test]
    fn crash_on_start() {
        let v = fake_variant(hotreload_tests::server::FAKE_NEW, &["crash-on-start"]);
        failed_start_up(&v, &["[notice] B: using inherited sockets from \"N;\""]);
    }
}
