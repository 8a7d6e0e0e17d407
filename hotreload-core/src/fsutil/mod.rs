//! File helpers shared by the swaps, the journal and preflight: identity and content
//! comparison, the ELF header, staging beside a file, and the lock that keeps children
//! from inheriting an executable being written.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{RwLock, RwLockReadGuard};

use crate::error::Error;

pub(crate) fn same_file(a: &Path, b: &Path) -> io::Result<bool> {
    let (a, b) = (fs::metadata(a)?, fs::metadata(b)?);
    Ok(a.dev() == b.dev() && a.ino() == b.ino())
}

/// Whether the two files hold the same bytes: sizes first, then the content, stopping
/// at the first difference (no digest: a mismatch usually shows in the first block).
pub(crate) fn same_content(a: &Path, b: &Path) -> io::Result<bool> {
    if fs::metadata(a)?.len() != fs::metadata(b)?.len() {
        return Ok(false);
    }
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    let (mut ba, mut bb) = (vec![0u8; 1 << 16], vec![0u8; 1 << 16]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

/// The target of an ELF file: class and machine, for "is it for this machine?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ElfTarget {
    class: u8,
    machine: u16,
}

impl fmt::Display for ElfTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let machine = match self.machine {
            3 => "x86",
            8 => "MIPS",
            20 => "PowerPC",
            21 => "PowerPC64",
            22 => "s390",
            40 => "ARM",
            62 => "x86-64",
            183 => "AArch64",
            243 => "RISC-V",
            258 => "LoongArch",
            _ => "",
        };
        let bits = if self.class == 2 { 64 } else { 32 };
        if machine.is_empty() {
            write!(f, "machine {} ({bits}-bit)", self.machine)
        } else {
            write!(f, "{machine} ({bits}-bit)")
        }
    }
}

pub(crate) fn elf_header(path: &Path) -> Result<ElfTarget, String> {
    let mut header = [0u8; 20];
    let mut got = 0;
    let mut file = File::open(path).map_err(|e| format!("cannot read its header: {e}"))?;
    // A file shorter than the header (a tiny script) is answered by its first bytes.
    while got < header.len() {
        match file.read(&mut header[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("cannot read its header: {e}")),
        }
    }
    if got < 4 || header[..4] != *b"\x7fELF" {
        return Err("not an ELF executable (a script or a file for another system?)".into());
    }
    if got < header.len() {
        return Err(format!(
            "a truncated ELF file ({got} bytes, shorter than an ELF header)"
        ));
    }
    let machine = match header[5] {
        1 => u16::from_le_bytes([header[18], header[19]]),
        2 => u16::from_be_bytes([header[18], header[19]]),
        other => return Err(format!("unknown ELF byte order {other}")),
    };
    Ok(ElfTarget {
        class: header[4],
        machine,
    })
}

/// What [`open_to_read_untrusted`] found at a path.
pub(crate) enum Opened {
    File(File),
    Missing,
    Symlink,
}

/// Opens `path` to read when someone else may have put it there: a symlink is reported
/// instead of followed (O_NOFOLLOW fails with ELOOP), a FIFO does not block until a writer
/// appears (O_NONBLOCK), and a terminal does not become ours (O_NOCTTY). The caller then
/// checks what it opened (fstat), not what the path names a moment later.
pub(crate) fn open_to_read_untrusted(path: &Path) -> io::Result<Opened> {
    match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    {
        Ok(f) => Ok(Opened::File(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Opened::Missing),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => Ok(Opened::Symlink),
        Err(e) => Err(e),
    }
}

/// `path` made absolute against the current directory, symlinks left as they are
/// (a record is read by other processes, maybe with another cwd).
pub(crate) fn absolute(path: &Path) -> Result<PathBuf, Error> {
    std::path::absolute(path).map_err(|e| Error::SwapIo {
        action: "resolve",
        path: path.to_path_buf(),
        source: e,
    })
}

pub(crate) fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// fsyncs the directory holding `path`, so a rename/link/unlink in it is durable.
pub(crate) fn sync_parent(path: &Path, action: &'static str) -> Result<(), Error> {
    let dir = parent_dir(path);
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::SwapIo {
            action,
            path: dir,
            source: e,
        })
}

/// A name for a temporary file beside `target`, unique in this process, carrying
/// our pid so leftovers of a killed process can be recognised and removed.
pub(crate) fn temp_sibling(target: &Path, what: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = target.file_name().unwrap_or(OsStr::new("binary"));
    let mut s = OsString::from(".");
    s.push(name);
    s.push(format!(".hotreload-{what}.{}.{n}", std::process::id()));
    parent_dir(target).join(s)
}

/// Removes temporary files left beside `target` by hotreload processes that no
/// longer exist (killed mid-swap): before a swap, and after a restore or commit, so that
/// no full-size staged copy outlives the upgrade. Best effort: a leftover is only clutter.
pub(crate) fn remove_stale_temps(target: &Path) {
    let Some(name) = target.file_name() else {
        return;
    };
    let mut prefix = b".".to_vec();
    prefix.extend_from_slice(name.as_bytes());
    prefix.extend_from_slice(b".hotreload-");
    let Ok(entries) = fs::read_dir(parent_dir(target)) else {
        return;
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(rest) = file_name.as_bytes().strip_prefix(prefix.as_slice()) else {
            continue;
        };
        // rest = "<what>.<pid>.<n>"
        let mut parts = rest.split(|b| *b == b'.');
        let (Some(_), Some(pid), Some(_), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let Some(pid) = std::str::from_utf8(pid)
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        // Only our own regular files: a name that merely looks like ours is left alone.
        let ours = fs::symlink_metadata(entry.path())
            .is_ok_and(|m| m.is_file() && m.uid() == crate::sys::geteuid());
        if ours && pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Removes a temporary file when dropped, unless `keep` was called.
pub(crate) struct TempGuard(pub(crate) Option<PathBuf>);

impl TempGuard {
    pub(crate) fn keep(mut self) {
        self.0 = None;
    }
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// Held for writing while a file that a server may execute is open for writing, and for
/// reading by this library around each child it spawns.
///
/// Why: a child forked while another thread has a staged executable open for writing
/// inherits that descriptor until it execs, and a master exec'ing the file in that window
/// fails with ETXTBSY ("Text file busy"): a new master that fails to start for no reason of
/// its own. Seen with 50 upgrades running in parallel threads of one process (the config
/// tests of some forked while others staged). Children that an embedding program forks
/// itself are outside this lock: such a program should not fork while an upgrade swaps.
pub(crate) static EXEC_WRITE_LOCK: RwLock<()> = RwLock::new(());

/// Taken by the library around spawning a child (see [`EXEC_WRITE_LOCK`]).
pub(crate) fn spawn_guard() -> RwLockReadGuard<'static, ()> {
    EXEC_WRITE_LOCK.read().unwrap_or_else(|e| e.into_inner())
}
