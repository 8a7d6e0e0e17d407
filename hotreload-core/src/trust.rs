//! Who, besides root, can write a file or directory: its mode bits *and* its POSIX access
//! ACL (DESIGN.md §6). The pid-file guard, the state home and the journal ask this before
//! they believe what a file says; the policy (who is acceptable) stays with them.
//!
//! Only the open file is asked (`fstat`, `fgetxattr`): never the path a moment later.

use std::fmt;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::MetadataExt;

use crate::sys;

/// Someone who can write a file (or replace entries of a directory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Writer {
    /// Its owner (who can always give themselves write: chmod).
    Owner(u32),
    /// A user named by an ACL entry with write, not masked.
    AclUser(u32),
    /// The members of a group: the owning group with group write, or an ACL group entry.
    Group(u32),
    /// Every user (mode bit `o+w`).
    Everyone,
}

impl fmt::Display for Writer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Writer::Owner(uid) => write!(f, "user {uid} (its owner)"),
            Writer::AclUser(uid) => write!(f, "user {uid} (through a POSIX ACL entry)"),
            Writer::Group(gid) => write!(f, "the members of group {gid}"),
            Writer::Everyone => f.write_str("every user"),
        }
    }
}

// The kernel's xattr form of an ACL (linux/posix_acl_xattr.h): a 4-byte version header,
// then 8-byte entries: tag (u16), permissions (u16), id (u32), little-endian.
const ACL_VERSION: u32 = 2;
const ACL_USER_OBJ: u16 = 0x01;
const ACL_USER: u16 = 0x02;
const ACL_GROUP_OBJ: u16 = 0x04;
const ACL_GROUP: u16 = 0x08;
const ACL_MASK: u16 = 0x10;
const ACL_OTHER: u16 = 0x20;
const ACL_WRITE: u16 = 0x02;

/// Everyone who can write `file` (whose metadata is `meta`), root aside.
pub(crate) fn writers(file: &File, meta: &Metadata) -> io::Result<Vec<Writer>> {
    let acl = sys::posix_acl_access(file.as_fd())?;
    writers_of(meta.uid(), meta.gid(), meta.mode(), acl.as_deref())
}

/// The writers from the owner, group, mode and raw ACL (for tests without `setfacl`).
pub(crate) fn writers_of(
    uid: u32,
    gid: u32,
    mode: u32,
    acl: Option<&[u8]>,
) -> io::Result<Vec<Writer>> {
    let mut out = vec![Writer::Owner(uid)];
    let Some(acl) = acl.filter(|a| !a.is_empty()) else {
        if mode & 0o020 != 0 {
            out.push(Writer::Group(gid));
        }
        if mode & 0o002 != 0 {
            out.push(Writer::Everyone);
        }
        return Ok(out);
    };
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("ACL: {what}"));
    if acl.len() < 4 || (acl.len() - 4) % 8 != 0 {
        return Err(bad("not a whole number of entries"));
    }
    if u32::from_le_bytes([acl[0], acl[1], acl[2], acl[3]]) != ACL_VERSION {
        return Err(bad("unknown version"));
    }
    let entries: Vec<(u16, u16, u32)> = acl[4..]
        .chunks_exact(8)
        .map(|e| {
            (
                u16::from_le_bytes([e[0], e[1]]),
                u16::from_le_bytes([e[2], e[3]]),
                u32::from_le_bytes([e[4], e[5], e[6], e[7]]),
            )
        })
        .collect();
    // Without a mask entry nothing is masked (a minimal ACL has none).
    let mask_writes = entries
        .iter()
        .find(|(tag, _, _)| *tag == ACL_MASK)
        .map_or(true, |(_, perm, _)| perm & ACL_WRITE != 0);
    for (tag, perm, id) in entries {
        let writes = perm & ACL_WRITE != 0;
        match tag {
            ACL_USER if writes && mask_writes => out.push(Writer::AclUser(id)),
            ACL_GROUP_OBJ if writes && mask_writes => out.push(Writer::Group(gid)),
            ACL_GROUP if writes && mask_writes => out.push(Writer::Group(id)),
            ACL_OTHER if writes => out.push(Writer::Everyone),
            ACL_USER_OBJ | ACL_USER | ACL_GROUP_OBJ | ACL_GROUP | ACL_MASK | ACL_OTHER => {}
            _ => return Err(bad("unknown entry tag")),
        }
    }
    Ok(out)
}

/// The first writer of `file` other than root and `allowed` (a uid), if any: the file is
/// then not only ours to write.
pub(crate) fn foreign_writer(
    file: &File,
    meta: &Metadata,
    allowed: u32,
) -> io::Result<Option<Writer>> {
    Ok(writers(file, meta)?.into_iter().find(|w| match w {
        Writer::Owner(uid) | Writer::AclUser(uid) => *uid != 0 && *uid != allowed,
        Writer::Group(_) | Writer::Everyone => true,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acl(entries: &[(u16, u16, u32)]) -> Vec<u8> {
        let mut v = ACL_VERSION.to_le_bytes().to_vec();
        for (tag, perm, id) in entries {
            v.extend_from_slice(&tag.to_le_bytes());
            v.extend_from_slice(&perm.to_le_bytes());
            v.extend_from_slice(&id.to_le_bytes());
        }
        v
    }

    #[test]
    fn mode_bits_alone() {
        assert_eq!(writers_of(0, 0, 0o644, None).unwrap(), [Writer::Owner(0)]);
        assert_eq!(
            writers_of(0, 0, 0o664, None).unwrap(),
            [Writer::Owner(0), Writer::Group(0)]
        );
        assert_eq!(
            writers_of(5, 7, 0o1777, None).unwrap(),
            [Writer::Owner(5), Writer::Group(7), Writer::Everyone]
        );
    }

    #[test]
    fn acl_entries_with_write_count_unless_masked() {
        let u = ACL_USER_OBJ;
        let with_user = acl(&[
            (u, 7, u32::MAX),
            (ACL_USER, 6, 65534),
            (ACL_GROUP_OBJ, 4, u32::MAX),
            (ACL_GROUP, 2, 42),
            (ACL_MASK, 6, u32::MAX),
            (ACL_OTHER, 4, u32::MAX),
        ]);
        assert_eq!(
            writers_of(0, 0, 0o664, Some(&with_user)).unwrap(),
            [Writer::Owner(0), Writer::AclUser(65534), Writer::Group(42)]
        );
        let masked = acl(&[
            (u, 7, u32::MAX),
            (ACL_USER, 6, 65534),
            (ACL_GROUP_OBJ, 6, u32::MAX),
            (ACL_MASK, 4, u32::MAX),
            (ACL_OTHER, 4, u32::MAX),
        ]);
        assert_eq!(
            writers_of(0, 0, 0o644, Some(&masked)).unwrap(),
            [Writer::Owner(0)]
        );
        assert!(writers_of(0, 0, 0o644, Some(&[1, 2, 3])).is_err());
    }
}
