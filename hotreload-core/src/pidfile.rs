//! Reading pid files strictly.
//!
//! A pid file decides which process gets our signals, so it is read like
//! untrusted input: exactly one decimal number with at most one trailing newline,
//! never through a symlink, never a FIFO or device, and — when we run as root —
//! never a file that a non-root user could have written (they could aim root's
//! signals at any process), unless the process it names belongs to that very user
//! (who could signal it anyway). "Could have written" reads the mode bits and the POSIX
//! ACLs of the file and of its directory (DESIGN.md §6). A group that can write is
//! refused whatever its gid: group 0 is not root, and its members need not be. A sticky
//! world-writable directory (`/tmp`) is accepted for a root-owned pid file, since others
//! cannot replace what they do not own there; hotreload's own files no longer live beside
//! the pid file ([`crate::state`]), so nothing else of ours is exposed there.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, PidFileProblem};
use crate::fsutil::{open_to_read_untrusted, Opened};
use crate::pid::Pid;
use crate::procfs;
use crate::sys;
use crate::trust::{self, Writer};

/// The kernel's upper bound on `pid_max`, used if `/proc/sys/kernel/pid_max` is unreadable.
const PID_MAX_LIMIT: u64 = 4_194_304;

/// Longer than any valid pid file ("4194304\n" is 8 bytes); read no more than this.
const MAX_LEN: u64 = 64;

/// Reads the pid in `path`, refusing anything but one decimal pid (see the module docs).
pub fn read_pid_file(path: &Path) -> Result<Pid, Error> {
    match read_pid_file_optional(path)? {
        Some(pid) => Ok(pid),
        None => Err(problem(path, PidFileProblem::Missing)),
    }
}

/// Like [`read_pid_file`], but a file that does not exist is `Ok(None)`: during an
/// upgrade `<pid>.oldbin` or the new pid file may legitimately be absent.
pub fn read_pid_file_optional(path: &Path) -> Result<Option<Pid>, Error> {
    let file = match open_to_read_untrusted(path).map_err(|e| read_error(path, e))? {
        Opened::File(f) => f,
        Opened::Missing => return Ok(None),
        Opened::Symlink => return Err(problem(path, PidFileProblem::Symlink)),
    };
    // Check what we opened (fstat), not what the path names a moment later.
    let meta = file.metadata().map_err(|e| read_error(path, e))?;
    let ft = meta.file_type();
    if !ft.is_file() {
        let kind = if ft.is_dir() {
            "directory"
        } else if ft.is_fifo() {
            "FIFO"
        } else if ft.is_socket() {
            "socket"
        } else if ft.is_char_device() {
            "character device"
        } else if ft.is_block_device() {
            "block device"
        } else {
            "special file"
        };
        return Err(problem(path, PidFileProblem::NotRegularFile { kind }));
    }
    // Who could have written it, asked of the file we opened (mode bits and ACL).
    let writers = if sys::geteuid() == 0 {
        Some(trust::writers(&file, &meta).map_err(|e| read_error(path, e))?)
    } else {
        None
    };
    let content = read_bounded(file, path)?;
    let pid = parse_pid_file_content(&content, pid_max()).map_err(|p| problem(path, p))?;
    if let Some(writers) = writers {
        check_writers(path, &writers, pid)?;
    }
    Ok(Some(pid))
}

/// Parses pid-file content: one decimal number, optionally followed by one `\n`.
///
/// Leading zeros are accepted (`007` is 7). Exposed for tests and embedders that
/// get the bytes from elsewhere.
pub fn parse_pid_file_content(content: &[u8], pid_max: u64) -> Result<Pid, PidFileProblem> {
    if content.is_empty() {
        return Err(PidFileProblem::Empty);
    }
    if content.iter().all(|b| b.is_ascii_whitespace()) {
        return Err(PidFileProblem::Whitespace);
    }
    let body = content.strip_suffix(b"\n").unwrap_or(content);
    if body.contains(&b'\n') {
        return Err(PidFileProblem::MultipleLines);
    }
    let shown = escape(body);
    if matches!(body.first(), Some(b'+' | b'-'))
        && body.len() > 1
        && body[1..].iter().all(u8::is_ascii_digit)
    {
        return Err(PidFileProblem::Signed { content: shown });
    }
    if body.is_empty() || !body.iter().all(u8::is_ascii_digit) {
        return Err(PidFileProblem::NotANumber { content: shown });
    }
    let digits = std::str::from_utf8(body).unwrap_or_default();
    let too_large = || PidFileProblem::TooLarge {
        value: digits.trim_start_matches('0').to_string(),
        pid_max,
    };
    let value: u64 = digits.parse().map_err(|_| too_large())?;
    if value <= 1 {
        return Err(PidFileProblem::Reserved { value });
    }
    // pid_max is the first pid that is *not* used.
    if value >= pid_max {
        return Err(too_large());
    }
    Pid::new(value as i64).map_err(|_| too_large())
}

/// The kernel's `pid_max` (pids are below it).
fn pid_max() -> u64 {
    fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(PID_MAX_LIMIT)
}

fn read_bounded(file: File, path: &Path) -> Result<Vec<u8>, Error> {
    let mut content = Vec::new();
    (&file)
        .take(MAX_LEN + 1)
        .read_to_end(&mut content)
        .map_err(|e| read_error(path, e))?;
    if content.len() as u64 > MAX_LEN {
        // The size of the file that was read, not of whatever the path names now.
        let len = file.metadata().map_err(|e| read_error(path, e))?.len();
        return Err(problem(path, PidFileProblem::TooLong { len }));
    }
    Ok(content)
}

/// Who, other than root, could have written the pid file: its owner, an ACL entry, a
/// group, everyone — or the same through its directory (by replacing the file).
fn check_writers(path: &Path, writers: &[Writer], pid: Pid) -> Result<(), Error> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir_file = File::open(&dir).map_err(|e| read_error(&dir, e))?;
    let dir_meta = dir_file.metadata().map_err(|e| read_error(&dir, e))?;
    let dir_writers = trust::writers(&dir_file, &dir_meta).map_err(|e| read_error(&dir, e))?;
    let sticky = dir_meta.mode() & libc::S_ISVTX != 0;

    // Users (non-root uids) that could write; groups and everyone are refused outright.
    let mut users: Vec<(PathBuf, u32, String)> = Vec::new();
    let mut consider = |what: &Path, w: &Writer, is_dir: bool| -> Result<(), Error> {
        match *w {
            Writer::Owner(0) | Writer::AclUser(0) => Ok(()),
            // In a sticky directory, only a file's owner (and the directory's) may
            // replace it: the others' write permission there does not reach our file.
            Writer::Group(_) | Writer::Everyone | Writer::AclUser(_) if is_dir && sticky => Ok(()),
            Writer::Owner(uid) | Writer::AclUser(uid) => {
                users.push((what.to_path_buf(), uid, w.to_string()));
                Ok(())
            }
            Writer::Group(_) | Writer::Everyone => Err(problem(
                path,
                PidFileProblem::WritableByOthers {
                    what: what.to_path_buf(),
                    who: w.to_string(),
                },
            )),
        }
    };
    // "every user" is the plainest account of a file that is also group-writable.
    let widest_first = |ws: &[Writer]| -> Vec<Writer> {
        let (all, rest): (Vec<Writer>, Vec<Writer>) =
            ws.iter().partition(|w| **w == Writer::Everyone);
        all.into_iter().chain(rest).collect()
    };
    for w in &widest_first(writers) {
        consider(path, w, false)?;
    }
    // The directory's owner can replace any entry, sticky or not.
    for w in &widest_first(&dir_writers) {
        consider(&dir, w, true)?;
    }
    if users.is_empty() {
        return Ok(());
    }
    // A non-root user who can write the file may name only their own processes:
    // signalling those is something they could do without us.
    let target_uid = match procfs::proc_info(pid) {
        Ok(info) => Some(info.uid),
        Err(_) => None,
    };
    for (what, uid, role) in users {
        if target_uid != Some(uid) {
            return Err(problem(
                path,
                PidFileProblem::WritableByOthers {
                    what,
                    who: format!("{role}, while process {pid} is not theirs"),
                },
            ));
        }
    }
    Ok(())
}

/// Shows bytes as text with control and non-ASCII bytes escaped, capped in length.
fn escape(bytes: &[u8]) -> String {
    let mut s = String::new();
    for &b in bytes.iter().take(32) {
        s.extend(std::ascii::escape_default(b).map(char::from));
    }
    if bytes.len() > 32 {
        s.push_str("...");
    }
    s
}

fn problem(path: &Path, problem: PidFileProblem) -> Error {
    Error::PidFile {
        path: path.to_path_buf(),
        problem,
    }
}

fn read_error(path: &Path, e: io::Error) -> Error {
    Error::ReadPidFile {
        path: path.to_path_buf(),
        source: e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &[u8]) -> Result<Pid, PidFileProblem> {
        parse_pid_file_content(s, 32768)
    }

    #[test]
    fn accepts_one_number_with_optional_newline() {
        assert_eq!(parse(b"1234").unwrap().get(), 1234);
        assert_eq!(parse(b"1234\n").unwrap().get(), 1234);
        assert_eq!(parse(b"007\n").unwrap().get(), 7);
        assert_eq!(parse(b"32767").unwrap().get(), 32767);
    }

    #[test]
    fn refuses_everything_else() {
        use PidFileProblem as P;
        type Case = (&'static [u8], fn(&P) -> bool);
        let cases: &[Case] = &[
            (b"", |p| matches!(p, P::Empty)),
            (b"\n", |p| matches!(p, P::Whitespace)),
            (b"  \t\n", |p| matches!(p, P::Whitespace)),
            (b"abc", |p| matches!(p, P::NotANumber { .. })),
            (b"0", |p| matches!(p, P::Reserved { value: 0 })),
            (b"1\n", |p| matches!(p, P::Reserved { value: 1 })),
            (b"-1", |p| matches!(p, P::Signed { .. })),
            (b"-5", |p| matches!(p, P::Signed { .. })),
            (b"+5", |p| matches!(p, P::Signed { .. })),
            (b"32768", |p| matches!(p, P::TooLarge { .. })),
            (b"99999999999999999999999", |p| {
                matches!(p, P::TooLarge { .. })
            }),
            (b"12\n34\n", |p| matches!(p, P::MultipleLines)),
            (b"12\n\n", |p| matches!(p, P::MultipleLines)),
            (b" 12", |p| matches!(p, P::NotANumber { .. })),
            (b"12 ", |p| matches!(p, P::NotANumber { .. })),
            (b"12\r\n", |p| matches!(p, P::NotANumber { .. })),
            (b"0x10", |p| matches!(p, P::NotANumber { .. })),
            (b"-", |p| matches!(p, P::NotANumber { .. })),
        ];
        for (content, ok) in cases {
            let p = parse(content).unwrap_err();
            assert!(ok(&p), "{:?} gave {p:?}", String::from_utf8_lossy(content));
        }
    }

    #[test]
    fn messages_escape_content() {
        let p = parse(b"12\r").unwrap_err();
        assert!(p.to_string().contains("`12\\r`"), "{p}");
    }
}
