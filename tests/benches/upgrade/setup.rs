//! Finding and building what the benchmark runs: the release `fake-nginx` and `hotreload`
//! binaries (built next to this benchmark, in the same profile directory), two
//! fake-nginx variants (and two with a 5 s slow drain), and the two real Debian nginx
//! builds that `scripts/install-real-servers` unpacks.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::server::{Builds, Kind};

/// `target/<profile>` of this benchmark binary (`target/release/deps/upgrade-…`).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("benchmark binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// `cargo build --release -p PACKAGE --bins` (a no-op when up to date). `cargo bench`
/// builds in the `bench` profile, whose binaries land in `target/release` too.
fn cargo_build(package: &str) -> Result<(), String> {
    cargo_build_profile(package, true)
}

/// The debug build of the `hotreload` CLI (`target/debug/hotreload`): the demo's figure
/// is set for a debug build (what `cargo run -- demo` gives a newcomer).
pub fn debug_cli() -> Result<PathBuf, String> {
    cargo_build_profile("hotreload-cli", false)?;
    Ok(bin_dir()
        .parent()
        .expect("target/<profile> has a parent")
        .join("debug/hotreload"))
}

fn cargo_build_profile(package: &str, release: bool) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let profile: &[&str] = if release { &["--release"] } else { &[] };
    let out = Command::new(cargo)
        .arg("build")
        .args(profile)
        .args(["--quiet", "-p", package, "--bins"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .map_err(|e| format!("run cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = err.lines().collect();
        Err(format!(
            "cargo build -p {package} failed:\n{}",
            lines[..lines.len().min(20)].join("\n")
        ))
    }
}

pub struct Setup {
    /// Holds the variants; removed on drop.
    _work: tempfile::TempDir,
    pub fake: Builds,
    pub fake_slow: Builds,
    pub real: Result<Builds, String>,
    pub hotreload: Result<PathBuf, String>,
}

pub fn prepare() -> Result<Setup, String> {
    let dir = bin_dir();
    cargo_build("fake-nginx")?;
    let fake_bin = dir.join("fake-nginx");
    let hotreload = cargo_build("hotreload-cli").map(|()| dir.join("hotreload"));
    let work = tempfile::Builder::new()
        // Named like the server prefixes so that an interrupted run removes it too.
        .prefix(&format!("hotreload-bench-{}-builds-", std::process::id()))
        .tempdir()
        .map_err(|e| format!("tempdir: {e}"))?;
    let variant = |name: &str, version: &str, faults: &[&str]| -> Result<PathBuf, String> {
        let out = work.path().join(name);
        let mut c = Command::new(&fake_bin);
        c.arg("--make-variant")
            .arg("--out")
            .arg(&out)
            .args(["--version", version]);
        for f in faults {
            c.args(["--fault", f]);
        }
        let res = fake_nginx::harness::output_retrying(&mut c)
            .map_err(|e| format!("run fake-nginx --make-variant: {e}"))?;
        if !res.status.success() {
            return Err(format!(
                "fake-nginx --make-variant failed: {}",
                String::from_utf8_lossy(&res.stderr)
            ));
        }
        fake_nginx::harness::settle_executable(&out).map_err(|e| e.to_string())?;
        Ok(out)
    };
    let fake = Builds {
        kind: Kind::Fake,
        a: variant("fake-a", "1.0-bench-a", &[])?,
        b: variant("fake-b", "1.0-bench-b", &[])?,
        label_a: "fake-nginx/1.0-bench-a".into(),
        label_b: "fake-nginx/1.0-bench-b".into(),
    };
    let fake_slow = Builds {
        kind: Kind::Fake,
        a: variant("fake-slow-a", "1.0-slow-a", &["slow-drain=5s"])?,
        b: variant("fake-slow-b", "1.0-slow-b", &["slow-drain=5s"])?,
        label_a: "fake-nginx/1.0-slow-a (slow-drain=5s)".into(),
        label_b: "fake-nginx/1.0-slow-b (slow-drain=5s)".into(),
    };
    Ok(Setup {
        fake,
        fake_slow,
        real: real_builds(),
        hotreload,
        _work: work,
    })
}

pub const REAL_OLD: &str = "1.22.1-9+deb12u9";
pub const REAL_NEW: &str = "1.22.1-9+deb12u11";

fn real_builds() -> Result<Builds, String> {
    let dir = match std::env::var_os("HOTRELOAD_REAL_SERVERS_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/real-servers"),
    };
    let path = |v: &str| dir.join(format!("nginx-{v}/sbin/nginx"));
    let (a, b) = (path(REAL_OLD), path(REAL_NEW));
    for p in [&a, &b] {
        if !p.is_file() {
            return Err(format!(
                "{} missing: run scripts/install-real-servers",
                p.display()
            ));
        }
    }
    if fs::read(&a).ok() == fs::read(&b).ok() {
        return Err("the two real nginx builds are identical".into());
    }
    Ok(Builds {
        kind: Kind::Real,
        a,
        b,
        label_a: format!("nginx {REAL_OLD}"),
        label_b: format!("nginx {REAL_NEW}"),
    })
}
