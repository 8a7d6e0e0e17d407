//! The installed file's metadata — owner, mode with its set-id bits, and every extended
//! attribute we can read (file capabilities, the SELinux label, POSIX ACLs, `user.*`) —
//! read from the installed binary and put on a staged copy before its rename, so that
//! the new executable runs with the same privileges as the old one (a nginx given
//! `setcap cap_net_bind_service=+ep` still binds :80 as non-root after an upgrade).
//!
//! Order matters: the content is written first (a write clears set-id bits and file
//! capabilities), then chown (which clears them too), the other attributes, chmod (which
//! puts the set-id bits back and keeps an ACL's mask consistent), and the capability last.
//! What the file system or our privileges refuse is returned by name, for the caller to
//! refuse the swap or (when the operator allows it) to warn.

use std::ffi::{CStr, CString};
use std::fs::{File, Permissions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::sys;

/// Set last: chown clears it, and nothing after it may.
const CAPABILITY: &CStr = c"security.capability";
/// Inherited from a directory's default ACL by a new file: removed when the original has none.
const ACL_ACCESS: &CStr = c"system.posix_acl_access";

/// What a staged file must carry to stand in for the installed one.
#[derive(Debug, Clone)]
pub(crate) struct FileMetadata {
    uid: u32,
    gid: u32,
    mode: u32,
    xattrs: Vec<(CString, Vec<u8>)>,
}

impl FileMetadata {
    /// Reads the metadata of the open file `file`.
    pub(crate) fn read(file: &File) -> io::Result<FileMetadata> {
        let meta = file.metadata()?;
        let mut xattrs = Vec::new();
        let names = match sys::flistxattr(file.as_fd()) {
            Ok(names) => names,
            // A file system without extended attributes: there are none to keep.
            Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => Vec::new(),
            Err(e) => return Err(e),
        };
        for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
            let name = CString::new(name).expect("split on NUL");
            match sys::fgetxattr(file.as_fd(), &name) {
                Ok(value) => xattrs.push((name, value)),
                // Removed since the listing: nothing to keep.
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(FileMetadata {
            uid: meta.uid(),
            gid: meta.gid(),
            mode: meta.mode() & 0o7777,
            xattrs,
        })
    }

    /// Puts this metadata on `staged` (whose content is complete). Returns what could not
    /// be kept, each as "what (why)"; empty when everything was.
    pub(crate) fn apply(&self, staged: &File) -> io::Result<Vec<String>> {
        let mut lost = Vec::new();
        let fd = staged.as_fd();
        if let Err(e) = std::os::unix::fs::fchown(staged, Some(self.uid), Some(self.gid)) {
            lost.push(format!("owner {}:{} ({e})", self.uid, self.gid));
        }
        let has = |name: &CStr| self.xattrs.iter().any(|(n, _)| n.as_c_str() == name);
        if !has(ACL_ACCESS) {
            match sys::fremovexattr(fd, ACL_ACCESS) {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::ENODATA) | Some(libc::EOPNOTSUPP)
                    ) => {}
                Err(e) => lost.push(format!("no access ACL ({e})")),
            }
        }
        for (name, value) in self
            .xattrs
            .iter()
            .filter(|(n, _)| n.as_c_str() != CAPABILITY)
        {
            if let Err(e) = sys::fsetxattr(fd, name, value) {
                lost.push(format!("{} ({e})", name.to_string_lossy()));
            }
        }
        if let Err(e) = staged.set_permissions(Permissions::from_mode(self.mode)) {
            lost.push(format!("mode {:04o} ({e})", self.mode));
        }
        for (name, value) in self
            .xattrs
            .iter()
            .filter(|(n, _)| n.as_c_str() == CAPABILITY)
        {
            if let Err(e) = sys::fsetxattr(fd, name, value) {
                lost.push(format!("{} ({e})", name.to_string_lossy()));
            }
        }
        // What the kernel silently drops (a set-group-id bit for a group we are not in,
        // an attribute a security module filters) only shows when read back.
        if lost.is_empty() {
            let now = staged.metadata()?;
            let mode = now.mode() & 0o7777;
            for (bit, what) in [
                (0o4000, "set-user-id bit"),
                (0o2000, "set-group-id bit"),
                (0o1000, "sticky bit"),
            ] {
                if self.mode & bit != 0 && mode & bit == 0 {
                    lost.push(format!("{what} (cleared by the kernel)"));
                }
            }
            for (name, value) in &self.xattrs {
                match sys::fgetxattr(fd, name) {
                    Ok(v) if name.as_c_str() != CAPABILITY || v == *value => {}
                    Ok(_) => lost.push(format!("{} (stored differently)", name.to_string_lossy())),
                    Err(e) => lost.push(format!("{} ({e})", name.to_string_lossy())),
                }
            }
        }
        Ok(lost)
    }
}
