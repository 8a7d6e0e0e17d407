//! Whose a process is: its real user, real group and supplementary groups, read from
//! `/proc/<pid>/status`, so that what hotreload runs on a server's behalf (its config
//! test, its `-T` dump) runs with exactly the server's rights and no more.

use std::fs;

use super::{proc_path, read_error};
use crate::error::Error;
use crate::pid::Pid;

/// The user, group and supplementary groups a process runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) groups: Vec<u32>,
}

impl Credentials {
    /// Process `pid`'s credentials.
    pub(crate) fn of(pid: Pid) -> Result<Credentials, Error> {
        let path = proc_path(pid, "status");
        let text = fs::read_to_string(&path).map_err(|e| read_error(pid, path.clone(), e))?;
        parse(&text).ok_or_else(|| Error::ProcParse {
            pid: pid.get(),
            path,
            detail: "no readable `Uid:`, `Gid:` or `Groups:` line".into(),
        })
    }

    /// This process's own credentials.
    pub(crate) fn own() -> Option<Credentials> {
        fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|t| parse(&t))
    }

    /// `None` when `pid` runs as hotreload does (nothing to change), else its credentials.
    pub(crate) fn to_assume(pid: Pid) -> Result<Option<Credentials>, Error> {
        let theirs = Credentials::of(pid)?;
        Ok((Some(&theirs) != Credentials::own().as_ref()).then_some(theirs))
    }
}

/// "Uid: real effective saved fs", the same for `Gid:`; `Groups:` lists the
/// supplementary groups. The real ids say whose process it is (a master started by root
/// with a `user` directive keeps root as its real and effective user).
fn parse(text: &str) -> Option<Credentials> {
    let mut uid = None;
    let mut gid = None;
    let mut groups = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let first = || value.split_ascii_whitespace().next()?.parse::<u32>().ok();
        match key {
            "Uid" => uid = first(),
            "Gid" => gid = first(),
            "Groups" => {
                groups = value
                    .split_ascii_whitespace()
                    .map(|g| g.parse::<u32>().ok())
                    .collect::<Option<Vec<u32>>>()
            }
            _ => {}
        }
    }
    Some(Credentials {
        uid: uid?,
        gid: gid?,
        groups: groups?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_ids_and_supplementary_groups_are_read() {
        let text = "Name:\tnginx\nUid:\t33\t33\t33\t33\nGid:\t33\t0\t33\t33\nGroups:\t4 33 \n";
        assert_eq!(
            parse(text),
            Some(Credentials {
                uid: 33,
                gid: 33,
                groups: vec![4, 33]
            })
        );
        let none = "Uid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\nGroups:\t\n";
        assert_eq!(parse(none).map(|c| c.groups), Some(vec![]));
        assert_eq!(parse("Uid:\t0\t0\t0\t0\n"), None);
    }
}
