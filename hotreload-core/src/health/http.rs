//! HTTP check: a minimal HTTP/1.1 `GET` over a plain `TcpStream`, expecting 2xx.
//!
//! Deliberately tiny (no client library): one request with `Connection: close`,
//! the status line and headers read within one overall deadline, the body
//! ignored. The `Server` header is reported because during an upgrade it tells
//! which binary answered.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::{at_least_1ms, HealthCheck};
use crate::error::Error;

/// Largest response head we read; a health endpoint's headers are far smaller.
const MAX_HEAD: usize = 64 * 1024;

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
    pub fn new(url: &str) -> Result<HttpCheck, Error> {
        let invalid = |problem| Error::InvalidUrl {
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

    fn get(&self, timeout: Duration) -> Result<(u16, String), String> {
        let deadline = Instant::now() + timeout;
        let timed_out = || format!("no complete response within {timeout:?}");
        let mut stream = self.connect(deadline)?;
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: hotreload/{}\r\nAccept: */*\r\nConnection: close\r\n\r\n",
            self.path,
            self.authority,
            env!("CARGO_PKG_VERSION"),
        );
        let remaining = deadline.saturating_duration_since(Instant::now());
        stream
            .set_write_timeout(Some(at_least_1ms(remaining)))
            .and_then(|()| stream.write_all(request.as_bytes()))
            .map_err(|e| format!("sending the request failed: {e}"))?;
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            if let Some(i) = find(&head, b"\r\n\r\n") {
                break i;
            }
            if head.len() > MAX_HEAD {
                return Err(format!("response headers longer than {MAX_HEAD} bytes"));
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(timed_out());
            }
            stream
                .set_read_timeout(Some(at_least_1ms(remaining)))
                .map_err(|e| format!("reading the response failed: {e}"))?;
            match stream.read(&mut buf) {
                Ok(0) if head.is_empty() => {
                    return Err("the server closed the connection without a response".into())
                }
                Ok(0) => return Err("the server closed the connection mid-headers".into()),
                Ok(n) => head.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(timed_out())
                }
                Err(e) => return Err(format!("reading the response failed: {e}")),
            }
        };
        // We do not read the body: close both ways now rather than linger.
        let _ = stream.shutdown(Shutdown::Both);
        parse_head(&head[..head_end])
    }
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
        let (status, detail) = self.get(timeout)?;
        if (200..300).contains(&status) {
            Ok(detail)
        } else {
            Err(format!("{detail} (expected 2xx)"))
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
}
