//! Finding a master without being told its pid file: by executable (a `/proc` scan) or
//! by pid, the pid file then established from the master's own configuration
//! (`nginx -T`), against real nginx and fake-nginx.

use hotreload_core::discovery::{Discovery, ExplicitPid, ProcScanDiscovery};
use hotreload_core::{Error, Flavor, Phase, Pid};
use hotreload_tests::server::{Kind, Options, Server};

fn a_found_master_becomes_its_target(kind: Kind) {
    hotreload_tests::watchdog(move || {
        let builds = kind.builds();
        let server = Server::start(kind, &builds, Options::default());
        let master = Pid::new(server.pid("A").into()).unwrap();

        let by_exe = ProcScanDiscovery::new(server.exe_path());
        assert_eq!(by_exe.discover().unwrap(), master);
        // The config says `pid logs/nginx.pid;`, relative to the `-p` prefix the master
        // was started with: that file, which names the master, is the target.
        let target = by_exe.target(Flavor::nginx()).unwrap();
        assert_eq!(target.pid_file(), server.pid_file().as_path());
        let seen = target.observe().unwrap();
        assert_eq!(seen.phase, Phase::Steady, "{seen}");
        assert_eq!(
            ExplicitPid::new(master)
                .target(Flavor::nginx())
                .unwrap()
                .pid_file(),
            server.pid_file().as_path()
        );
        // A worker is found by pid, but nothing establishes a pid file naming it (its title
        // has no -p or -c, so its `nginx -T` reads another configuration, or none).
        let worker = *server.worker_pids("A").iter().next().expect("a worker");
        let worker = Pid::new(worker.into()).unwrap();
        match ExplicitPid::new(worker).target(Flavor::nginx()) {
            Err(Error::PidFileUnknown { pid, .. }) => assert_eq!(pid, worker),
            other => panic!("a worker became a target: {other:?}"),
        }
    });
}

#[test]
#[cfg_attr(
    missing_real_nginx,
    ignore = "needs real nginx: run scripts/install-real-servers"
)]
fn nginx_master_found_by_executable_becomes_a_target() {
    a_found_master_becomes_its_target(Kind::RealNginx);
}

#[test]
fn fake_nginx_master_found_by_executable_becomes_a_target() {
    a_found_master_becomes_its_target(Kind::FakeNginx);
}
