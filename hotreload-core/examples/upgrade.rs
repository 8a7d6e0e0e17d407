//! A complete zero-downtime upgrade of fake-nginx with `hotreload_core::upgrade`.
//!
//! ```text
//! cargo build -p fake-nginx
//! cargo run -p hotreload-core --example upgrade -- target/debug/fake-nginx
//! ```
//!
//! It makes two versions of the server from the given fake-nginx executable (1.0,
//! installed at `<dir>/sbin/nginx`, and 2.0 beside it), starts 1.0 daemonized on a free
//! local port, asks which version answers, upgrades to 2.0 while printing every event,
//! asks again, and stops the server. Everything lives in a temporary directory.

use std::error::Error as StdError;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use hotreload_core::{upgrade, Event, ProcessHandle, Signal, Target, UpgradeOptions};

type Result<T> = std::result::Result<T, Box<dyn StdError>>;

fn main() -> Result<()> {
    let fake_nginx = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .ok_or("usage: upgrade <path to the fake-nginx executable>")?;
    let dir = tempfile::tempdir()?;
    let prefix = dir.path();
    fs::create_dir_all(prefix.join("sbin"))?;
    fs::create_dir_all(prefix.join("conf"))?;
    fs::create_dir_all(prefix.join("logs"))?;

    // Two builds of "the server": the running one at the path the master executes on
    // USR2, and the new one beside it.
    let installed = prefix.join("sbin/nginx");
    let new_build = prefix.join("nginx-2.0");
    make_variant(&fake_nginx, &installed, "1.0")?;
    make_variant(&fake_nginx, &new_build, "2.0")?;

    let addr = free_port()?;
    let pid_file = prefix.join("logs/nginx.pid");
    fs::write(
        prefix.join("conf/nginx.conf"),
        format!(
            "worker_processes 2;\npid {};\nerror_log {} notice;\n\
             events {{ worker_connections 64; }}\n\
             http {{ server {{ listen {addr}; }} }}\n",
            pid_file.display(),
            prefix.join("logs/error.log").display()
        ),
    )?;
    // nginx executes its argv[0] verbatim on USR2: start it by its absolute path.
    let status = Command::new(&installed)
        .args([
            "-p".as_ref(),
            prefix.as_os_str(),
            "-c".as_ref(),
            "conf/nginx.conf".as_ref(),
        ])
        .current_dir(prefix)
        .status()?;
    if !status.success() {
        return Err(format!("fake-nginx failed to start: {status}").into());
    }
    let result = run(&pid_file, &new_build, addr);
    stop(&pid_file);
    result
}

fn run(pid_file: &Path, new_build: &Path, addr: SocketAddr) -> Result<()> {
    wait_until(Duration::from_secs(20), || get_server(addr).is_ok())?;
    println!("before: {} answers on {addr}", get_server(addr)?);

    let target = Target::new(pid_file);
    println!("observed: {}", target.observe()?);
    let options = UpgradeOptions::new().new_binary(new_build);
    let print = |event: &Event| {
        // Waits report themselves every 500 ms; show only their start.
        if !matches!(event, Event::Waiting { elapsed, .. } if !elapsed.is_zero()) {
            println!("  {event}");
        }
    };
    let report = upgrade(&target, &options, &print)?;

    println!(
        "upgraded: old master {} -> new master {} ({})",
        report.old_pid.map(|p| p.to_string()).unwrap_or_default(),
        report.new_pid.map(|p| p.to_string()).unwrap_or_default(),
        report.outcome.as_str()
    );
    for step in &report.steps {
        println!(
            "  {:<14} {:>8.1} ms",
            step.step.as_str(),
            step.duration.as_secs_f64() * 1000.0
        );
    }
    println!("after: {} answers on {addr}", get_server(addr)?);
    Ok(())
}

/// `fake-nginx --make-variant`: a copy of the executable that reports another version.
fn make_variant(fake_nginx: &Path, out: &Path, version: &str) -> Result<()> {
    let status = Command::new(fake_nginx)
        .arg("--make-variant")
        .arg("--out")
        .arg(out)
        .args(["--version", version])
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} --make-variant failed: {status}", fake_nginx.display()).into())
    }
}

/// Stops the master the target observes (graceful, through a pinned handle).
fn stop(pid_file: &Path) {
    let Some(master) = Target::new(pid_file)
        .observe()
        .ok()
        .and_then(|seen| seen.old_master)
    else {
        return;
    };
    if let Ok(master) = ProcessHandle::open_pinned(master.pid, master.start_time) {
        let _ = master.signal(Signal::Quit);
        let _ = master.wait_exit(Instant::now() + Duration::from_secs(20));
    }
}

fn free_port() -> Result<SocketAddr> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?)
}

/// The `Server` header of one GET.
fn get_server(addr: SocketAddr) -> Result<String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    response
        .lines()
        .find_map(|l| {
            l.strip_prefix("Server: ")
                .or_else(|| l.strip_prefix("server: "))
        })
        .map(str::to_string)
        .ok_or_else(|| "no Server header in the response".into())
}

/// Polls `ready` (backing off from 1 ms to 50 ms) until it holds or `timeout` passes.
fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    while !ready() {
        if Instant::now() >= deadline {
            return Err("the server did not answer in time".into());
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(50));
    }
    Ok(())
}
