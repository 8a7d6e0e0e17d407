//! The swap record: what an install did, as plain data with a text form, so that another
//! process (after a crash, or a later `hotreload rollback`) can restore or commit it.

use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use super::SwapKind;
use crate::error::Error;
use crate::fsutil::file_digest;

/// What an install did: enough for another process to restore or commit it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapRecord {
    /// The strategy that installed.
    pub kind: SwapKind,
    /// The binary path (absolute), as the master's `argv[0]` names it.
    pub binary: PathBuf,
    /// The backup of the previous binary, for `Rename` and `Copy`.
    pub backup: Option<PathBuf>,
    /// Where the symlink pointed before, for `Symlink`.
    pub previous_target: Option<PathBuf>,
    /// SHA-256 (hex) of the installed binary's content.
    pub new_sha256: String,
    /// Size in bytes of the installed binary.
    pub new_size: u64,
}

impl SwapRecord {
    /// The record as `key=value` lines. Paths are stored byte-exact: `%`, control
    /// bytes and non-ASCII bytes are written as `%XX`.
    pub fn to_text(&self) -> String {
        let mut s = String::from("# hotreload swap record\n");
        s.push_str(&format!("kind={}\n", self.kind));
        s.push_str(&format!("binary={}\n", encode_path(&self.binary)));
        if let Some(b) = &self.backup {
            s.push_str(&format!("backup={}\n", encode_path(b)));
        }
        if let Some(t) = &self.previous_target {
            s.push_str(&format!("previous_target={}\n", encode_path(t)));
        }
        s.push_str(&format!("new_sha256={}\n", self.new_sha256));
        s.push_str(&format!("new_size={}\n", self.new_size));
        s
    }

    /// Parses what [`to_text`](Self::to_text) wrote. Unknown keys are ignored (a newer
    /// version may add some); missing required keys and duplicates are errors.
    pub fn from_text(text: &str) -> Result<SwapRecord, Error> {
        let mut kind = None;
        let mut binary = None;
        let mut backup = None;
        let mut previous_target = None;
        let mut sha = None;
        let mut size = None;
        let bad = |binary: &Option<PathBuf>, problem: String| Error::SwapRecord {
            binary: binary.clone().unwrap_or_default(),
            problem,
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(bad(&binary, format!("line {} has no `=`: `{line}`", n + 1)));
            };
            let slot_is_set =
                match key {
                    "kind" => kind.replace(value.parse::<SwapKind>()?).is_some(),
                    "binary" => binary.replace(decode_path(value)?).is_some(),
                    "backup" => backup.replace(decode_path(value)?).is_some(),
                    "previous_target" => previous_target.replace(decode_path(value)?).is_some(),
                    "new_sha256" => sha.replace(value.to_string()).is_some(),
                    "new_size" => size
                        .replace(value.parse::<u64>().map_err(|_| {
                            bad(&binary, format!("new_size `{value}` is not a number"))
                        })?)
                        .is_some(),
                    _ => false,
                };
            if slot_is_set {
                return Err(bad(&binary, format!("key `{key}` appears twice")));
            }
        }
        let kind = kind.ok_or_else(|| bad(&binary, "no `kind`".to_string()))?;
        let Some(binary_path) = binary.clone() else {
            return Err(bad(&binary, "no `binary`".to_string()));
        };
        Ok(SwapRecord {
            kind,
            binary: binary_path,
            backup,
            previous_target,
            new_sha256: sha.unwrap_or_default(),
            new_size: size.unwrap_or(0),
        })
    }

    /// Whether the binary path still holds what this record installed (size and SHA-256).
    pub fn installed_matches(&self) -> Result<bool, Error> {
        match file_digest(&self.binary) {
            Ok((sha, size)) => Ok(size == self.new_size && sha == self.new_sha256),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Error::SwapIo {
                action: "read installed binary",
                path: self.binary.clone(),
                source: e,
            }),
        }
    }
}

fn encode_path(p: &Path) -> String {
    let mut s = String::new();
    for &b in p.as_os_str().as_bytes() {
        if b == b'%' || !(0x20..0x7f).contains(&b) {
            s.push_str(&format!("%{b:02X}"));
        } else {
            s.push(b as char);
        }
    }
    s
}

fn decode_path(s: &str) -> Result<PathBuf, Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| Error::SwapRecord {
                    binary: PathBuf::new(),
                    problem: format!("bad %-escape in path `{s}`"),
                })?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(PathBuf::from(OsString::from_vec(out)))
}
