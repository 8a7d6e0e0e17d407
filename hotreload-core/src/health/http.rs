//! HTTP check: a minimal HTTP/1.1 `GET` over a plain `TcpStream`, expecting 2xx.
//!
//! Deliberately tiny (no client library): one request with `Connection: close`,
//! the status line and headers read within one overall deadline, the body
//! ignored. The `Server` header is reported because during an upgrade it tells
//! which binary answered.
//!
//! [`HealthCheck::check_served_by`] instead keeps the connection open (keep-alive)
//! until the whole response (framed by `Content-Length`) has been read, and looks
//! up in `/proc` which process holds the server side of the connection: that is
//! the worker that answered. A response that closes the connection or has no
//! known length is left unattributed.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::{at_least_1ms, Attributed, HealthCheck};
use crate::error::ParseError;
use crate::pid::Pid;
use crate::procfs;

/// Largest response head we read; a health endpoint's headers are far smaller.
const MAX_HEAD: usize = 64 * 1024;

/// Largest body read to attribute a response; a longer one is left unattributed.
const MAX_BODY: usize = 1024 * 1024;

/// What one request gave.
struct Exchange {
    status: u16,
    /// E.g. "HTTP 200 OK, Server: nginx/1.22".
    detail: String,
    /// The whole response was read and the server keeps the connection open: the
    /// process holding its other end is the one that answered.
    attributable: bool,
}

/// `GET http://host:port/path`, healthy on a 2xx status.
#[derive(Debug, Clone)]
pub struct HttpCheck {
    url: String,
    host: String,
    port: u16,
    /// `Host` header value: the authority as written in the URL.
    authority: String,
    path: String,
}

impl HttpCheck {
    /// Parses `http://host[:port][/path]` (IPv6 as `[::1]`). `https`, user info and
    /// empty hosts are refused.
    pub fn new(url: &str) -> Result<HttpCheck, ParseError> {
        let invalid = |problem| ParseError::InvalidUrl {
            url: url.to_string(),
            problem,
        };
        let lower = url.to_ascii_lowercase();
        let rest = if lower.starts_with("http://") {
            &url["http://".len()..]
        } else if lower.starts_with("https://") {
            return Err(invalid(
                "https is not supported: check a plain-HTTP endpoint, or use a command check \
                 (e.g. curl)",
            ));
        } else {
            return Err(invalid("expected http://host[:port]/path"));
        };
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let mut path = rest[end..].to_string();
        if let Some(hash) = path.find('#') {
            path.truncate(hash);
        }
        if path.is_empty() || path.starts_with('?') {
            path.insert(0, '/');
        }
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(invalid("the path contains spaces or control characters"));
        }
        if authority.contains('@') {
            return Err(invalid("user info (`user@`) is not supported"));
        }
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let close = v6
                .find(']')
                .ok_or_else(|| invalid("unclosed `[` in host"))?;
            let host = &v6[..close];
            let after = &v6[close + 1..];
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p),
                None if after.is_empty() => None,
                None => return Err(invalid("unexpected text after `]`")),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(invalid("no host"));
        }
        let port = match port {
            None => 80,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| invalid("the port is not a number from 1 to 65535"))?,
        };
        Ok(HttpCheck {
            url: url.to_string(),
            host: host.to_string(),
            port,
            authority: authority.to_string(),
            path,
        })
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    fn connect(&self, deadline: Instant) -> Result<TcpStream, String> {
        let addrs: Vec<SocketAddr> = (self.host.as_str(), self.port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve `{}`: {e}", self.host))?
            .collect();
        let mut last = format!("`{}` resolves to no address", self.host);
        for addr in addrs {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                break;
            }
            match TcpStream::connect_timeout(&addr, at_least_1ms(remaining)) {
                Ok(s) => return Ok(s),
                Err(e) => last = format!("connect to {addr} failed: {e}"),
            }
        }
        Err(last)
    }

    /// Sends the request on `stream` and reads the response head; with `keep_alive`,
    /// asks to keep the connection and reads the body too when its length is known.
    fn get(
        &self,
        stream: &mut TcpStream,
        deadline: Instant,
        timeout: Duration,
        keep_alive: bool,
    ) -> Result<Exchange, String> {
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: hotreload/{}\r\nAccept: */*\r\n{}\r\n",
            self.path,
            self.authority,
            env!("CARGO_PKG_VERSION"),
            if keep_alive {
                ""
            } else {
                "Connection: close\r\n"
            },
        );
        let remaining = deadline.saturating_duration_since(Instant::now());
        stream
            .set_write_timeout(Some(at_least_1ms(remaining)))
            .and_then(|()| stream.write_all(request.as_bytes()))
            .map_err(|e| format!("sending the request failed: {e}"))?;
        let mut data = Vec::new();
        let head_end = loop {
            if let Some(i) = find(&data, b"\r\n\r\n") {
                break i;
            }
            if data.len() > MAX_HEAD {
                return Err(format!("response headers longer than {MAX_HEAD} bytes"));
            }
            match read_some(stream, &mut data, deadline, timeout)? {
                0 if data.is_empty() => {
                    return Err("the server closed the connection without a response".into())
                }
                0 => return Err("the server closed the connection mid-headers".into()),
                _ => {}
            }
        };
        let head = &data[..head_end];
        let (status, detail) = parse_head(head)?;
        let mut exchange = Exchange {
            status,
            detail,
            attributable: false,
        };
        let body_len = match body_length(head, status) {
            Some(n) if keep_alive && n <= MAX_BODY && keeps_open(head) => n,
            _ => return Ok(exchange),
        };
        let body_start = head_end + 4;
        while data.len() < body_start + body_len {
            if read_some(stream, &mut data, deadline, timeout)? == 0 {
                // Closed before the end of the body: the verdict stands, unattributed.
                return Ok(exchange);
            }
        }
        exchange.attributable = data.len() == body_start + body_len;
        Ok(exchange)
    }
}

/// Reads what is available into `data` before `deadline`: the number of bytes (0 when
/// the server closed the connection).
fn read_some(
    stream: &mut TcpStream,
    data: &mut Vec<u8>,
    deadline: Instant,
    timeout: Duration,
) -> Result<usize, String> {
    let mut buf = [0u8; 4096];
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(format!("no complete response within {timeout:?}"));
        }
        stream
            .set_read_timeout(Some(at_least_1ms(remaining)))
            .map_err(|e| format!("reading the response failed: {e}"))?;
        match stream.read(&mut buf) {
            Ok(n) => {
                data.extend_from_slice(&buf[..n]);
                return Ok(n);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(format!("no complete response within {timeout:?}"))
            }
            Err(e) => return Err(format!("reading the response failed: {e}")),
        }
    }
}

/// The healthy/unhealthy verdict on a status.
fn verdict(exchange: Exchange) -> Result<String, String> {
    if (200..300).contains(&exchange.status) {
        Ok(exchange.detail)
    } else {
        Err(format!("{} (expected 2xx)", exchange.detail))
    }
}

/// Which of `candidates` holds the server side of `stream` (`Err` when `/proc` could
/// not tell).
fn served_by(stream: &TcpStream, candidates: &[Pid]) -> Result<Option<Pid>, String> {
    let ours = stream
        .local_addr()
        .map_err(|e| format!("cannot read the connection's local address: {e}"))?;
    let theirs = stream
        .peer_addr()
        .map_err(|e| format!("cannot read the connection's peer address: {e}"))?;
    let Some(inode) = procfs::tcp_socket_inode(theirs, ours)
        .map_err(|e| format!("cannot find the connection in /proc/net/tcp: {e}"))?
    else {
        return Ok(None);
    };
    procfs::socket_holder(inode, candidates)
        .map_err(|e| format!("cannot tell which process holds the connection: {e}"))
}

/// The headers of a response head (after the status line), names lowercased.
fn headers(head: &[u8]) -> impl Iterator<Item = (String, String)> + '_ {
    head.split(|b| *b == b'\n').skip(1).filter_map(|line| {
        let line = String::from_utf8_lossy(line);
        let (k, v) = line.split_once(':')?;
        Some((k.trim().to_ascii_lowercase(), v.trim().to_string()))
    })
}

/// The body length a response head announces: `Content-Length`, or 0 for statuses
/// without a body; `None` when unknown (chunked, read-until-close, contradictory).
fn body_length(head: &[u8], status: u16) -> Option<usize> {
    if (100..200).contains(&status) || status == 204 || status == 304 {
        return Some(0);
    }
    let mut length = None;
    for (k, v) in headers(head) {
        match k.as_str() {
            "transfer-encoding" => return None,
            "content-length" => {
                let n = v.parse::<usize>().ok()?;
                if length.is_some_and(|l| l != n) {
                    return None;
                }
                length = Some(n);
            }
            _ => {}
        }
    }
    length
}

/// Whether the server keeps the connection open after this response (HTTP/1.1 unless
/// `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`).
fn keeps_open(head: &[u8]) -> bool {
    let mut open = head.starts_with(b"HTTP/1.1 ");
    for (k, v) in headers(head) {
        if k == "connection" {
            let v = v.to_ascii_lowercase();
            if v.split(',').any(|t| t.trim() == "close") {
                return false;
            }
            if v.split(',').any(|t| t.trim() == "keep-alive") {
                open = true;
            }
        }
    }
    open
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Parses a status line and headers: (status, detail such as "200 OK, Server: nginx/1.22").
fn parse_head(head: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(head);
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let code = parts.next().unwrap_or_default();
    let reason = parts.next().unwrap_or_default().trim();
    if !version.starts_with("HTTP/") {
        return Err(format!(
            "not an HTTP response: `{}`",
            truncate(status_line, 80)
        ));
    }
    let status: u16 = code
        .parse()
        .ok()
        .filter(|c| (100..1000).contains(c))
        .ok_or_else(|| format!("bad status line `{}`", truncate(status_line, 80)))?;
    let server = lines.find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("server")
            .then(|| v.trim().to_string())
    });
    let mut detail = format!("HTTP {status}");
    if !reason.is_empty() {
        detail.push(' ');
        detail.push_str(truncate(reason, 80));
    }
    if let Some(server) = server {
        detail.push_str(", Server: ");
        detail.push_str(truncate(&server, 120));
    }
    Ok((status, detail))
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut cut = max;
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    &s[..cut]
}

impl HealthCheck for HttpCheck {
    fn describe(&self) -> String {
        format!("HTTP GET {}", self.url)
    }

    fn check(&self, timeout: Duration) -> Result<(), String> {
        self.check_detail(timeout).map(|_| ())
    }

    fn check_detail(&self, timeout: Duration) -> Result<String, String> {
        let deadline = Instant::now() + timeout;
        let mut stream = self.connect(deadline)?;
        let exchange = self.get(&mut stream, deadline, timeout, false);
        // We do not read the body: close both ways now rather than linger.
        let _ = stream.shutdown(Shutdown::Both);
        verdict(exchange?)
    }

    fn attributes(&self) -> bool {
        true
    }

    fn check_served_by(&self, timeout: Duration, candidates: &[Pid]) -> Attributed {
        let deadline = Instant::now() + timeout;
        let mut stream = match self.connect(deadline) {
            Ok(s) => s,
            Err(why) => {
                return Attributed {
                    result: Err(why),
                    served_by: None,
                    note: None,
                }
            }
        };
        let exchange = self.get(&mut stream, deadline, timeout, true);
        // A failure with the connection still open (no answer in time, garbage) is
        // the holder's too; a server that closed the connection holds nothing.
        let attributable = exchange.as_ref().map_or(true, |e| e.attributable);
        let (served_by, note) = if attributable {
            match served_by(&stream, candidates) {
                Ok(pid) => (pid, None),
                Err(why) => (None, Some(why)),
            }
        } else {
            (None, None)
        };
        let _ = stream.shutdown(Shutdown::Both);
        Attributed {
            result: exchange.and_then(verdict),
            served_by,
            note,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let c = HttpCheck::new("http://127.0.0.1:8080/health?x=1#frag").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.path.as_str()),
            ("127.0.0.1", 8080, "/health?x=1")
        );
        assert_eq!(c.authority, "127.0.0.1:8080");
        let c = HttpCheck::new("HTTP://example.org").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port, c.path.as_str()),
            ("example.org", 80, "/")
        );
        let c = HttpCheck::new("http://[::1]:81/").unwrap();
        assert_eq!((c.host.as_str(), c.port), ("::1", 81));
        let c = HttpCheck::new("http://localhost?q").unwrap();
        assert_eq!(c.path, "/?q");
        for bad in [
            "https://x/",
            "ftp://x/",
            "127.0.0.1:80",
            "http://",
            "http://:80/",
            "http://x:0/",
            "http://x:99999/",
            "http://x:port/",
            "http://u@x/",
            "http://[::1/",
            "http://x/a b",
        ] {
            assert!(HttpCheck::new(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn parses_heads() {
        let (s, d) =
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nserver: fake-nginx/1.2\r\n")
                .unwrap();
        assert_eq!(s, 200);
        assert_eq!(d, "HTTP 200 OK, Server: fake-nginx/1.2");
        let (s, d) = parse_head(b"HTTP/1.0 503 Service Unavailable").unwrap();
        assert_eq!((s, d.as_str()), (503, "HTTP 503 Service Unavailable"));
        assert!(parse_head(b"SSH-2.0-OpenSSH").is_err());
        assert!(parse_head(b"HTTP/1.1 abc OK").is_err());
    }

    #[test]
    fn body_framing() {
        let h = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: keep-alive";
        assert_eq!(body_length(h, 200), Some(12));
        assert!(keeps_open(h));
        assert!(keeps_open(b"HTTP/1.1 200 OK\r\ncontent-length: 1"));
        assert!(!keeps_open(b"HTTP/1.1 200 OK\r\nConnection: close"));
        assert!(!keeps_open(b"HTTP/1.0 200 OK\r\nContent-Length: 1"));
        assert!(keeps_open(b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive"));
        assert_eq!(
            body_length(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked", 200),
            None
        );
        assert_eq!(body_length(b"HTTP/1.1 200 OK", 200), None);
        assert_eq!(body_length(b"HTTP/1.1 204 No Content", 204), Some(0));
    }

    /// A one-connection keep-alive server in this process: the check is attributed to
    /// this process, and only when it is a candidate.
    fn serve_once(response: &'static str) -> (String, std::thread::JoinHandle<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/health", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while find(&req, b"\r\n\r\n").is_none() {
                let n = conn.read(&mut buf).unwrap();
                assert!(n > 0);
                req.extend_from_slice(&buf[..n]);
            }
            assert!(!String::from_utf8_lossy(&req).contains("Connection: close"));
            conn.write_all(response.as_bytes()).unwrap();
            // Keep the connection until the client closes it.
            while conn.read(&mut buf).is_ok_and(|n| n > 0) {}
        });
        (url, server)
    }

    #[test]
    fn attributes_the_answer_to_the_serving_process() {
        let me = Pid::this_process().unwrap();
        let (url, server) = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        let a = HttpCheck::new(&url)
            .unwrap()
            .check_served_by(Duration::from_secs(5), &[me]);
        server.join().unwrap();
        assert_eq!(a.result.as_deref(), Ok("HTTP 200 OK"));
        assert_eq!((a.served_by, a.note), (Some(me), None));

        let (url, server) =
            serve_once("HTTP/1.1 500 Oops\r\nContent-Length: 3\r\nServer: x\r\n\r\nbad");
        let a = HttpCheck::new(&url)
            .unwrap()
            .check_served_by(Duration::from_secs(5), &[me]);
        server.join().unwrap();
        assert_eq!(
            a.result,
            Err("HTTP 500 Oops, Server: x (expected 2xx)".to_string())
        );
        assert_eq!(a.served_by, Some(me));

        // Not a candidate: unattributed.
        let (url, server) = serve_once("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        let a = HttpCheck::new(&url)
            .unwrap()
            .check_served_by(Duration::from_secs(5), &[]);
        server.join().unwrap();
        assert!(a.result.is_ok());
        assert_eq!(a.served_by, None);

        // Connection: close: unattributed by design.
        let (url, server) =
            serve_once("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        let a = HttpCheck::new(&url)
            .unwrap()
            .check_served_by(Duration::from_secs(5), &[me]);
        server.join().unwrap();
        assert!(a.result.is_ok());
        assert_eq!(a.served_by, None);
    }
}
