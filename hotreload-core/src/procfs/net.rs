//! Which process serves a TCP connection: the socket's inode from `/proc/net/tcp*`,
//! then the process holding it among `/proc/<pid>/fd/*`. Used by the HTTP health check
//! to attribute an answer to an old or a new worker.

use std::fs;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

use super::{proc_path, read_error};
use crate::error::Error;
use crate::pid::Pid;

/// The `st` value of an established TCP connection in `/proc/net/tcp*`.
const TCP_ESTABLISHED: &str = "01";

/// The inode of the socket at the `local` end of the established TCP connection
/// `local` ↔ `remote`, from `/proc/net/tcp` and `/proc/net/tcp6` (of the caller's
/// network namespace); `None` when no such connection is listed.
///
/// To learn which process serves a connection you opened, pass the server's address
/// (your peer) as `local` and your own socket address as `remote`. IPv4-mapped IPv6
/// addresses (`::ffff:a.b.c.d`, how a dual-stack listener sees IPv4 clients) match
/// their IPv4 form.
pub fn tcp_socket_inode(local: SocketAddr, remote: SocketAddr) -> Result<Option<u64>, Error> {
    let (local, remote) = (canonical(local), canonical(remote));
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let path = Path::new(table);
        let content = match fs::read_to_string(path) {
            Ok(c) => c,
            // No IPv6 in this kernel: no tcp6 table.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(Error::ReadFile {
                    path: path.to_path_buf(),
                    source: e,
                })
            }
        };
        if let Some(inode) = find_tcp_inode(&content, local, remote) {
            return Ok(Some(inode));
        }
    }
    Ok(None)
}

/// The first of `pids` that holds the socket with inode `inode` open
/// (`/proc/<pid>/fd/*` links to `socket:[<inode>]`); `None` when none does.
///
/// Processes that exit meanwhile are skipped; one whose descriptors cannot be read
/// (another user's process) is an error.
pub fn socket_holder(inode: u64, pids: &[Pid]) -> Result<Option<Pid>, Error> {
    let wanted = format!("socket:[{inode}]");
    for &pid in pids {
        let dir = proc_path(pid, "fd");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) => match read_error(pid, dir, e) {
                Error::ProcessGone { .. } => continue,
                e => return Err(e),
            },
        };
        for entry in entries.flatten() {
            // A descriptor closed between the listing and the readlink is not it.
            if fs::read_link(entry.path()).is_ok_and(|l| l.as_os_str() == wanted.as_str()) {
                return Ok(Some(pid));
            }
        }
    }
    Ok(None)
}

/// IPv4-mapped IPv6 addresses as IPv4, so both tables compare alike.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// Finds, in the content of `/proc/net/tcp` or `tcp6`, the inode of the established
/// connection `local` ↔ `remote` (both already [`canonical`]).
fn find_tcp_inode(content: &str, local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    // "sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ..."
    content.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        if fields.len() < 10 || fields[3] != TCP_ESTABLISHED {
            return None;
        }
        let l = canonical(parse_proc_net_addr(fields[1])?);
        let r = canonical(parse_proc_net_addr(fields[2])?);
        if l != local || r != remote {
            return None;
        }
        fields[9].parse::<u64>().ok().filter(|inode| *inode != 0)
    })
}

/// Parses an address of `/proc/net/tcp*`: `0100007F:1F90` (IPv4) or 32 hex digits
/// and a port (IPv6). The kernel prints each 32-bit word of the address in the
/// machine's byte order, and the port in hex.
pub(super) fn parse_proc_net_addr(text: &str) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = ip.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match ip.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut bytes = [0u8; 16];
            for i in 0..4 {
                bytes[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_addresses() {
        let v4 = u32::from_ne_bytes([127, 0, 0, 1]);
        let text = format!("{v4:08X}:1F90");
        assert_eq!(
            parse_proc_net_addr(&text),
            Some("127.0.0.1:8080".parse().unwrap())
        );
        let mut v6 = String::new();
        for word in Ipv6Addr::LOCALHOST.octets().chunks(4) {
            let w = u32::from_ne_bytes(word.try_into().unwrap());
            v6.push_str(&format!("{w:08X}"));
        }
        v6.push_str(":0050");
        assert_eq!(parse_proc_net_addr(&v6), Some("[::1]:80".parse().unwrap()));
        assert_eq!(parse_proc_net_addr("zz:1"), None);
        assert_eq!(parse_proc_net_addr("0100007F"), None);
        assert_eq!(
            canonical("[::ffff:10.0.0.1]:5".parse().unwrap()),
            "10.0.0.1:5".parse().unwrap()
        );
    }

    #[test]
    fn finds_who_holds_the_server_side_of_a_connection() {
        use std::net::{TcpListener, TcpStream};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server_addr = listener.local_addr().unwrap();
        let acceptor = std::thread::spawn(move || {
            let (conn, _) = listener.accept().unwrap();
            conn
        });
        let client = TcpStream::connect(server_addr).unwrap();
        let served = acceptor.join().unwrap();
        let client_addr = client.local_addr().unwrap();
        // The server side: local = the server's address, remote = the client's.
        let inode = tcp_socket_inode(server_addr, client_addr)
            .unwrap()
            .expect("the connection is listed");
        let me = Pid::this_process().unwrap();
        let other = Pid::new(i64::from(i32::MAX)).unwrap();
        assert_eq!(socket_holder(inode, &[other, me]).unwrap(), Some(me));
        assert_eq!(socket_holder(inode, &[other]).unwrap(), None);
        // The client side is another socket.
        let client_inode = tcp_socket_inode(client_addr, server_addr).unwrap().unwrap();
        assert_ne!(client_inode, inode);
        drop(served);
        // A connection that does not exist is not found.
        let nowhere: SocketAddr = "127.0.0.1:1".parse().unwrap();
        assert_eq!(tcp_socket_inode(nowhere, client_addr).unwrap(), None);
    }
}
