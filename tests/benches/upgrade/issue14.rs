//! The two measurements issue 14 adds: the swap alone against the plain durable copy
//! (`cp` + fsync + `rename` + directory fsync) of the same file, at two sizes; and the
//! `hotreload demo` upgrade step on a debug build. Failures are results, never panics.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hotreload_core::SwapKind;

/// Sizes of the swap measurement: fake-nginx's release build and the demo's debug one.
pub const SWAP_SIZES: [(u64, &str); 2] = [(6 << 20, "6 MiB"), (28 << 20, "28 MiB")];

pub struct SwapRow {
    pub size: u64,
    pub label: &'static str,
    /// `hotreload_core`'s default swap (rename, with a backup), `install` alone.
    pub library: Vec<Duration>,
    /// Copy to a temp file next to it, fsync it, rename it over, fsync the directory.
    pub baseline: Vec<Duration>,
    pub error: Option<String>,
}

fn write_file(path: &Path, size: u64, seed: u64) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mut f = fs::File::create(path)?;
    // Content differs between the two builds (and is not sparse): a cheap xorshift.
    let mut x = seed | 1;
    let mut block = vec![0u8; 1 << 16];
    let mut left = size;
    while left > 0 {
        for chunk in block.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

/// `cp new dir/.tmp && fsync && mv .tmp binary && fsync dir`.
fn durable_copy(new: &Path, binary: &Path) -> std::io::Result<()> {
    let dir = binary.parent().expect("binary in a directory");
    let tmp = dir.join(".nginx.cp-tmp");
    fs::copy(new, &tmp)?;
    fs::File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, binary)?;
    fs::File::open(dir)?.sync_all()
}

pub fn swap(reps: usize) -> Vec<SwapRow> {
    let mut rows = Vec::new();
    for (size, label) in SWAP_SIZES {
        eprintln!("[6] swap of a {label} executable");
        let mut row = SwapRow {
            size,
            label,
            library: vec![],
            baseline: vec![],
            error: None,
        };
        if let Err(e) = measure_swap(reps, size, &mut row) {
            row.error = Some(e);
        }
        rows.push(row);
    }
    rows
}

fn measure_swap(reps: usize, size: u64, row: &mut SwapRow) -> Result<(), String> {
    let dir = tempfile::Builder::new()
        .prefix(&format!("hotreload-bench-{}-swap-", std::process::id()))
        .tempdir_in(crate::setup::bin_dir())
        .map_err(|e| format!("tempdir: {e}"))?;
    let sbin = dir.path().join("sbin");
    fs::create_dir(&sbin).map_err(|e| format!("mkdir: {e}"))?;
    let binary = sbin.join("nginx");
    let builds = [dir.path().join("a"), dir.path().join("b")];
    for (i, b) in builds.iter().enumerate() {
        write_file(b, size, 0x9e37_79b9_7f4a_7c15 + i as u64).map_err(|e| format!("write: {e}"))?;
    }
    fs::copy(&builds[0], &binary).map_err(|e| format!("copy: {e}"))?;
    let swap = SwapKind::Rename.strategy();
    for rep in 0..reps {
        // Alternate: each install replaces the other build, like an upgrade does.
        let new = &builds[(rep + 1) % 2];
        let t = Instant::now();
        let record = swap
            .install(&binary, new)
            .map_err(|e| format!("install: {e}"))?;
        row.library.push(t.elapsed());
        swap.commit(&record).map_err(|e| format!("commit: {e}"))?;
        let other = &builds[rep % 2];
        let t = Instant::now();
        durable_copy(other, &binary).map_err(|e| format!("durable copy: {e}"))?;
        row.baseline.push(t.elapsed());
        durable_copy(new, &binary).map_err(|e| format!("durable copy: {e}"))?;
    }
    Ok(())
}

pub struct DemoRow {
    /// Sum of the first upgrade's steps, per run.
    pub upgrade: Vec<Duration>,
    /// Per step (in order of first appearance), per run.
    pub steps: Vec<(String, Vec<Duration>)>,
    pub error: Option<String>,
}

/// Runs `hotreload demo --json` (debug build) `reps` times and reads the first
/// upgrade's step durations from its result record.
pub fn demo(reps: usize, cli: Result<std::path::PathBuf, String>) -> DemoRow {
    let mut row = DemoRow {
        upgrade: vec![],
        steps: vec![],
        error: None,
    };
    let cli = match cli {
        Ok(c) => c,
        Err(e) => {
            row.error = Some(e);
            return row;
        }
    };
    for rep in 0..reps {
        eprintln!("[7] hotreload demo (debug build), run {}", rep + 1);
        match demo_once(&cli) {
            Ok(steps) => {
                row.upgrade.push(steps.iter().map(|(_, d)| *d).sum());
                for (name, d) in steps {
                    match row.steps.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, v)) => v.push(d),
                        None => row.steps.push((name, vec![d])),
                    }
                }
            }
            Err(e) => {
                row.error = Some(e);
                return row;
            }
        }
    }
    row
}

fn demo_once(cli: &Path) -> Result<Vec<(String, Duration)>, String> {
    let out = Command::new(cli)
        .args(["demo", "--json"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("run {}: {e}", cli.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let result = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["type"] == "result")
        .ok_or_else(|| format!("no result record (exit {})", out.status))?;
    let first = &result["data"]["upgrades"][0];
    if first["outcome"] != "committed" {
        return Err(format!("the demo's first upgrade: {}", first["outcome"]));
    }
    let mut steps: Vec<(String, Duration)> = Vec::new();
    for s in first["steps"].as_array().into_iter().flatten() {
        let name = s["step"].as_str().unwrap_or("?").to_string();
        let d = Duration::from_millis(s["duration_ms"].as_u64().unwrap_or(0));
        // Health runs twice (after spawn, after drain): one entry, summed.
        match steps.iter_mut().find(|(n, _)| *n == name) {
            Some((_, total)) => *total += d,
            None => steps.push((name, d)),
        }
    }
    Ok(steps)
}
