//! Which listening sockets a process holds: the `socket:[INODE]` links among
//! `/proc/<pid>/fd/*`, named by the listening entries of `/proc/<pid>/net/{tcp,tcp6,unix}`
//! (the tables of that process's network namespace).
//!
//! Used before the drain: a listening socket that only the old master holds keeps a
//! queue the kernel still fills (a `reuseport` group member, or an address the new
//! configuration dropped) with nobody left to accept from it once the old workers go.
//! One check reads each table once and each master's descriptors once.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs;
use std::io;

use super::net::parse_proc_net_addr;
use super::{proc_path, read_error};
use crate::error::Error;
use crate::pid::Pid;

/// The `st` value of a listening TCP socket in `/proc/net/tcp*`.
const TCP_LISTEN: &str = "0A";
/// `__SO_ACCEPTCON` in the flags column of `/proc/net/unix`: the socket listens.
const UNIX_ACCEPTCON: u32 = 1 << 16;

/// One listening socket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Listener {
    /// The socket's inode (what `/proc/<pid>/fd/*` links name).
    pub inode: u64,
    /// Where it listens, as nginx's `listen` writes it: `127.0.0.1:8080`, `[::]:80`,
    /// `unix:/run/app.sock` (`unix:@name` for an abstract socket).
    pub address: String,
}

impl fmt::Display for Listener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (socket inode {})", self.address, self.inode)
    }
}

/// The listening sockets held by `old` and not by `new`, sorted by address then inode.
///
/// The tables are read from `old`'s network namespace (a new master is its child and
/// shares it). Sockets that are not listening (connections, the masters' channels to
/// their workers) are left out.
pub(crate) fn listeners_only_in(old: Pid, new: Pid) -> Result<Vec<Listener>, Error> {
    let new_fds = socket_inodes(new)?;
    let candidates: BTreeMap<u64, Option<Vec<u8>>> = socket_protocols(old)?
        .into_iter()
        .filter(|(inode, _)| !new_fds.contains(inode))
        .collect();
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    // The net tables list every socket of the namespace (under load, thousands of
    // connections and TIME_WAITs: tens to hundreds of milliseconds to read, measured in
    // the demo's drain): read only those of the protocols the candidates have (all of
    // them when one's protocol is unknown).
    let protocols: BTreeSet<&[u8]> = candidates
        .values()
        .map(|p| p.as_deref().unwrap_or(b"?"))
        .collect();
    let wanted = |table: &str| {
        protocols.contains(&b"?"[..])
            || match table {
                "net/tcp" => protocols.contains(&b"TCP"[..]),
                "net/tcp6" => protocols.contains(&b"TCPv6"[..]),
                // `UNIX`, `UNIX-STREAM`, `UNIX-DGRAM`… by kernel version and type.
                _ => protocols.iter().any(|p| p.starts_with(b"UNIX")),
            }
    };
    let mut only_old: Vec<Listener> = listening_table(old, wanted)?
        .into_iter()
        .filter(|(inode, _)| candidates.contains_key(inode))
        .map(|(inode, address)| Listener { inode, address })
        .collect();
    only_old.sort_by(|a, b| (&a.address, a.inode).cmp(&(&b.address, b.inode)));
    Ok(only_old)
}

/// The sockets among the open descriptors of `pid`, by inode, with their protocol as the
/// kernel names it (`system.sockprotoname`: `TCP`, `TCPv6`, `UNIX`…; `None` when it
/// cannot be read).
fn socket_protocols(pid: Pid) -> Result<BTreeMap<u64, Option<Vec<u8>>>, Error> {
    let dir = proc_path(pid, "fd");
    let entries = fs::read_dir(&dir).map_err(|e| read_error(pid, dir.clone(), e))?;
    let mut sockets = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(|e| read_error(pid, dir.clone(), e))?;
        // A descriptor closed between the listing and the readlink is not held.
        if let Ok(link) = fs::read_link(entry.path()) {
            if let Some(inode) = link.to_str().and_then(socket_link_inode) {
                let protocol =
                    crate::sys::getxattr_path(&entry.path(), c"system.sockprotoname").ok();
                sockets.insert(
                    inode,
                    protocol.map(|mut p| {
                        // The value ends with a NUL.
                        while p.last() == Some(&0) {
                            p.pop();
                        }
                        p
                    }),
                );
            }
        }
    }
    Ok(sockets)
}

/// The inodes of the sockets among the open descriptors of `pid`.
pub(crate) fn socket_inodes(pid: Pid) -> Result<BTreeSet<u64>, Error> {
    let dir = proc_path(pid, "fd");
    let entries = fs::read_dir(&dir).map_err(|e| read_error(pid, dir.clone(), e))?;
    let mut inodes = BTreeSet::new();
    for entry in entries {
        let entry = entry.map_err(|e| read_error(pid, dir.clone(), e))?;
        // A descriptor closed between the listing and the readlink is not held.
        if let Ok(link) = fs::read_link(entry.path()) {
            if let Some(inode) = link.to_str().and_then(socket_link_inode) {
                inodes.insert(inode);
            }
        }
    }
    Ok(inodes)
}

/// Every listening TCP, TCP6 and unix stream socket of the network namespace of `pid`,
/// by inode.
fn listening_table(
    pid: Pid,
    wanted: impl Fn(&str) -> bool,
) -> Result<BTreeMap<u64, String>, Error> {
    let mut table = BTreeMap::new();
    for (file, parse) in [
        (
            "net/tcp",
            parse_tcp_listeners as fn(&str) -> Vec<(u64, String)>,
        ),
        ("net/tcp6", parse_tcp_listeners),
        ("net/unix", parse_unix_listeners),
    ] {
        if !wanted(file) {
            continue;
        }
        let path = proc_path(pid, file);
        let content = match fs::read_to_string(&path) {
            Ok(c) => c,
            // A kernel without IPv6 (or unix sockets) has no such table; a process
            // that is gone has no directory at all.
            Err(e) if e.kind() == io::ErrorKind::NotFound && proc_path(pid, "fd").exists() => {
                continue
            }
            Err(e) => return Err(read_error(pid, path, e)),
        };
        table.extend(parse(&content));
    }
    Ok(table)
}

/// `socket:[1234]` → 1234.
fn socket_link_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The listening sockets of `/proc/net/tcp` or `tcp6` content: (inode, address).
fn parse_tcp_listeners(content: &str) -> Vec<(u64, String)> {
    // "sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ..."
    content
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_ascii_whitespace().collect();
            if fields.len() < 10 || fields[3] != TCP_LISTEN {
                return None;
            }
            let addr = parse_proc_net_addr(fields[1])?;
            let inode = fields[9].parse::<u64>().ok().filter(|i| *i != 0)?;
            Some((inode, addr.to_string()))
        })
        .collect()
}

/// The listening sockets of `/proc/net/unix` content: (inode, `unix:PATH`).
fn parse_unix_listeners(content: &str) -> Vec<(u64, String)> {
    // "Num RefCount Protocol Flags Type St Inode Path": the path (absent for unnamed
    // sockets) is the rest of the line and may hold spaces.
    content
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut rest = line.trim_start();
            let mut fields = Vec::with_capacity(7);
            for _ in 0..7 {
                let end = rest
                    .find(|c: char| c.is_ascii_whitespace())
                    .unwrap_or(rest.len());
                fields.push(&rest[..end]);
                rest = rest[end..].trim_start();
            }
            let flags = u32::from_str_radix(fields[3], 16).ok()?;
            if flags & UNIX_ACCEPTCON == 0 {
                return None;
            }
            let inode = fields[6].parse::<u64>().ok().filter(|i| *i != 0)?;
            let path = rest.trim_end();
            let path = if path.is_empty() { "(unnamed)" } else { path };
            Some((inode, format!("unix:{path}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::{UnixListener, UnixStream};

    #[test]
    fn socket_links() {
        assert_eq!(socket_link_inode("socket:[10876444]"), Some(10876444));
        assert_eq!(socket_link_inode("pipe:[5]"), None);
        assert_eq!(socket_link_inode("/dev/null"), None);
        assert_eq!(socket_link_inode("socket:[x]"), None);
    }

    #[test]
    fn tcp_table_keeps_only_listeners() {
        let v4 = u32::from_ne_bytes([127, 0, 0, 1]);
        let table = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             \x20  1: {v4:08X}:9647 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 10876446 1 0 100 0 0 10 0\n\
             \x20  2: {v4:08X}:9647 {v4:08X}:D431 01 00000000:00000000 00:00000000 00000000     0        0 10876999 1 0 100 0 0 10 0\n\
             \x20  3: 00000000:0050 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 0 1 0 100 0 0 10 0\n\
             garbage\n"
        );
        assert_eq!(
            parse_tcp_listeners(&table),
            vec![(10876446, "127.0.0.1:38471".to_string())]
        );
        let table6 = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             \x20  0: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0 100 0 0 10 0\n";
        assert_eq!(
            parse_tcp_listeners(table6),
            vec![(777, "[::]:80".to_string())]
        );
    }

    #[test]
    fn unix_table_keeps_only_listeners() {
        let table = "Num       RefCount Protocol Flags    Type St Inode Path\n\
             00000000e23820b7: 00000002 00000000 00010000 0001 01 10876445 /tmp/rp exp/s.sock\n\
             00000000bc996984: 00000003 00000000 00000000 0001 03 10876447\n\
             00000000bc996985: 00000002 00000000 00010000 0001 01 42 @abstract\n\
             00000000bc996986: 00000002 00000000 00000000 0001 03 43 /run/connected.sock\n";
        assert_eq!(
            parse_unix_listeners(table),
            vec![
                (10876445, "unix:/tmp/rp exp/s.sock".to_string()),
                (42, "unix:@abstract".to_string())
            ]
        );
    }

    #[test]
    fn own_listeners_are_found_and_named() {
        let me = Pid::this_process().unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.sock");
        let unix = UnixListener::bind(&path).unwrap();
        // A connected pair is a socket too, but not a listener.
        let (a, _b) = UnixStream::pair().unwrap();
        let inode = |fd: &dyn std::os::fd::AsFd| {
            let f = std::fs::File::from(fd.as_fd().try_clone_to_owned().unwrap());
            f.metadata().unwrap().ino()
        };
        let (tcp_inode, unix_inode, pair_inode) = (inode(&tcp), inode(&unix), inode(&a));
        let held = socket_inodes(me).unwrap();
        assert!(
            held.contains(&tcp_inode) && held.contains(&unix_inode) && held.contains(&pair_inode)
        );
        // Each socket's protocol, which picks the tables to read.
        let protocols = socket_protocols(me).unwrap();
        assert_eq!(protocols[&tcp_inode].as_deref(), Some(&b"TCP"[..]));
        assert!(protocols[&unix_inode]
            .as_deref()
            .is_some_and(|p| p.starts_with(b"UNIX")));
        let table = listening_table(me, |_| true).unwrap();
        assert_eq!(
            table.get(&tcp_inode),
            Some(&tcp.local_addr().unwrap().to_string())
        );
        assert_eq!(
            table.get(&unix_inode),
            Some(&format!("unix:{}", path.display()))
        );
        assert!(!table.contains_key(&pair_inode));
        // Compared with itself, this process holds nothing the other does not.
        assert_eq!(listeners_only_in(me, me).unwrap(), vec![]);
        // A child holds none of them (close-on-exec): both listeners are ours only.
        let mut child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        let other = Pid::try_from(child.id() as i32).unwrap();
        let only = listeners_only_in(me, other);
        let _ = child.kill();
        let _ = child.wait();
        let only = only.unwrap();
        let ours: Vec<u64> = only.iter().map(|l| l.inode).collect();
        assert!(
            ours.contains(&tcp_inode) && ours.contains(&unix_inode),
            "{only:?}"
        );
        assert!(!ours.contains(&pair_inode));
        let tcp_line = Listener {
            inode: tcp_inode,
            address: tcp.local_addr().unwrap().to_string(),
        };
        assert!(only.contains(&tcp_line));
        assert_eq!(
            tcp_line.to_string(),
            format!("{} (socket inode {tcp_inode})", tcp.local_addr().unwrap())
        );
    }
}
