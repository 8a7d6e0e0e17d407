//! Health checks against local listeners and short commands.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use hotreload_core::health::HealthCheck;
use hotreload_core::{CommandCheck, HttpCheck, TcpCheck};

/// Serves one connection with `respond`, returning the request head it read.
fn serve_once(respond: &'static [u8]) -> (SocketAddr, JoinHandle<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let _ = conn.write_all(respond);
        String::from_utf8_lossy(&head).into_owned()
    });
    (addr, handle)
}

#[test]
fn tcp_check_connects_and_reports_refusal() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let check = TcpCheck::new(addr);
    assert_eq!(check.describe(), format!("TCP connect {addr}"));
    check.check(Duration::from_secs(5)).unwrap();
    drop(listener);
    let e = check.check(Duration::from_secs(5)).unwrap_err();
    assert!(e.contains(&addr.to_string()), "{e}");
}

#[test]
fn http_check_2xx_reports_status_and_server() {
    let (addr, server) = serve_once(
        b"HTTP/1.1 200 OK\r\nServer: fake-nginx/2.0\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    );
    let check = HttpCheck::new(&format!("http://{addr}/health")).unwrap();
    assert_eq!(check.describe(), format!("HTTP GET http://{addr}/health"));
    let detail = check.check_detail(Duration::from_secs(10)).unwrap();
    assert_eq!(detail, "HTTP 200 OK, Server: fake-nginx/2.0");
    let request = server.join().unwrap();
    assert!(request.starts_with("GET /health HTTP/1.1\r\n"), "{request}");
    assert!(
        request.contains(&format!("\r\nHost: {addr}\r\n")),
        "{request}"
    );
    assert!(request.contains("\r\nConnection: close\r\n"), "{request}");
}

#[test]
fn http_check_non_2xx_fails() {
    let (addr, server) = serve_once(
        b"HTTP/1.1 500 Internal Server Error\r\nServer: fake-nginx/2.1\r\nContent-Length: 0\r\n\r\n",
    );
    let e = HttpCheck::new(&format!("http://{addr}/"))
        .unwrap()
        .check(Duration::from_secs(10))
        .unwrap_err();
    assert!(
        e.contains("500") && e.contains("fake-nginx/2.1") && e.contains("expected 2xx"),
        "{e}"
    );
    server.join().unwrap();
}

#[test]
fn http_check_times_out_on_a_silent_server() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // The kernel completes the handshake (backlog) but nobody ever answers.
    let check = HttpCheck::new(&format!("http://{addr}/")).unwrap();
    let start = Instant::now();
    let e = check.check(Duration::from_millis(300)).unwrap_err();
    let took = start.elapsed();
    assert!(e.contains("no complete response"), "{e}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "{took:?}"
    );
    drop(listener);
}

#[test]
fn http_check_server_closing_without_answer_fails() {
    let (addr, server) = serve_once(b"");
    let e = HttpCheck::new(&format!("http://{addr}/"))
        .unwrap()
        .check(Duration::from_secs(10))
        .unwrap_err();
    assert!(e.contains("without a response"), "{e}");
    server.join().unwrap();
}

#[test]
fn http_check_refuses_bad_urls() {
    assert!(HttpCheck::new("https://127.0.0.1/").is_err());
    let e = HttpCheck::new("localhost:80").unwrap_err().to_string();
    assert!(e.contains("`localhost:80`"), "{e}");
}

fn argv(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

#[test]
fn command_check_exit_status() {
    CommandCheck::new(argv(&["true"]))
        .check(Duration::from_secs(10))
        .unwrap();
    let e = CommandCheck::new(argv(&["false"]))
        .check(Duration::from_secs(10))
        .unwrap_err();
    assert!(e.contains("exit status 1"), "{e}");
    let e = CommandCheck::new(argv(&["sh", "-c", "echo first >&2; echo boom >&2; exit 3"]))
        .check(Duration::from_secs(10))
        .unwrap_err();
    assert!(e.contains("exit status 3") && e.contains("boom"), "{e}");
    let ok = CommandCheck::new(argv(&["sh", "-c", "echo healthy"]))
        .check_detail(Duration::from_secs(10))
        .unwrap();
    assert_eq!(ok, "exit status 0: healthy");
}

#[test]
fn command_check_is_killed_at_timeout() {
    let check = CommandCheck::new(argv(&["sleep", "600"]));
    assert_eq!(check.describe(), "command `sleep 600`");
    let start = Instant::now();
    let e = check.check(Duration::from_millis(200)).unwrap_err();
    let took = start.elapsed();
    assert!(e.contains("killed"), "{e}");
    assert!(
        took >= Duration::from_millis(200) && took < Duration::from_secs(5),
        "{took:?}"
    );
}

#[test]
fn command_check_missing_program() {
    let e = CommandCheck::new(argv(&["/nonexistent/hotreload-check"]))
        .check(Duration::from_secs(5))
        .unwrap_err();
    assert!(e.contains("failed to run"), "{e}");
    assert!(CommandCheck::new(Vec::new())
        .check(Duration::from_secs(1))
        .is_err());
}

#[test]
fn command_check_handles_lots_of_output() {
    // More than a pipe buffer (64 KiB): the check must keep reading, not deadlock.
    let ok = CommandCheck::new(argv(&["sh", "-c", "i=0; while [ $i -lt 3000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; i=$((i+1)); done"]))
        .check_detail(Duration::from_secs(30))
        .unwrap();
    assert!(
        ok.ends_with("line-2999-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
        "{ok}"
    );
}

#[test]
fn checks_are_usable_as_trait_objects() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let checks: Vec<Box<dyn HealthCheck>> = vec![
        Box::new(TcpCheck::new(listener.local_addr().unwrap())),
        Box::new(CommandCheck::new(argv(&["true"]))),
    ];
    for c in &checks {
        c.check(Duration::from_secs(5)).unwrap();
    }
}
