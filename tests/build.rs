//! Build script of the end-to-end tests: sets a `missing_<tool>` cfg for every tool a test
//! needs that this machine lacks, so those tests carry
//! `#[cfg_attr(missing_x, ignore = "needs x: run scripts/install-real-servers")]` and show as
//! *ignored* in `cargo test`'s summary instead of passing without running (issue 15).
//!
//! Under `CI=true` or `HOTRELOAD_REQUIRE_REAL_SERVERS=1` no such cfg is set: every test runs,
//! and one whose tool is missing fails, so CI can never go green by skipping.

use std::env;
use std::path::{Path, PathBuf};

/// Every cfg this script may set.
const CFGS: &[&str] = &[
    "missing_strace",
    "missing_real_nginx",
    "missing_unicorn",
    "missing_gunicorn",
    "missing_systemd",
    "missing_ansible",
    "missing_oldkernel",
];

/// The Debian builds of nginx `scripts/install-real-servers` unpacks (old and new).
const NGINX_VERSIONS: &[&str] = &["1.22.1-9+deb12u9", "1.22.1-9+deb12u11"];

fn main() {
    for cfg in CFGS {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
    }
    for var in [
        "CI",
        "HOTRELOAD_REQUIRE_REAL_SERVERS",
        "HOTRELOAD_REAL_SERVERS_DIR",
        "HOTRELOAD_OLDKERNEL_SRC",
        "PATH",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    println!("cargo::rerun-if-changed=build.rs");

    let path_dirs: Vec<PathBuf> = env::var_os("PATH")
        .map(|p| env::split_paths(&p).collect())
        .unwrap_or_default();
    // Installing a tool changes the directory it lands in: watch them, so the cfgs follow
    // `apt-get install` without a `cargo clean`. Cargo scans a watched directory
    // recursively at every build: never watch `/` or a directory above the few we need.
    let watchable = |d: &Path| d.is_dir() && d.components().count() > 1;
    for dir in path_dirs.iter().filter(|d| watchable(d)) {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    let real_dir = real_servers_dir();
    if let Some(watch) = [
        real_dir.as_path(),
        real_dir.parent().unwrap_or(Path::new("/")),
    ]
    .into_iter()
    .find(|d| watchable(d) && d.parent().is_some_and(|p| p.components().count() > 1))
    {
        println!("cargo::rerun-if-changed={}", watch.display());
    }

    let required = env::var("CI").as_deref() == Ok("true")
        || env::var("HOTRELOAD_REQUIRE_REAL_SERVERS").as_deref() == Ok("1");
    if required {
        return;
    }
    let on_path = |name: &str| path_dirs.iter().any(|d| is_executable(&d.join(name)));
    let nginx = NGINX_VERSIONS.iter().all(|v| {
        let dir = real_dir.join(format!("nginx-{v}"));
        is_executable(&dir.join("usr/sbin/nginx")) && is_executable(&dir.join("sbin/nginx"))
    });
    let present = [
        ("missing_strace", on_path("strace")),
        ("missing_real_nginx", nginx),
        (
            "missing_unicorn",
            is_executable(Path::new("/usr/bin/unicorn")),
        ),
        (
            "missing_gunicorn",
            is_executable(Path::new("/usr/bin/gunicorn")),
        ),
        (
            "missing_systemd",
            on_path("systemctl") && on_path("systemd-run"),
        ),
        ("missing_ansible", on_path("ansible-playbook")),
        (
            "missing_oldkernel",
            on_path("cc") && oldkernel_src().is_file(),
        ),
    ];
    for (cfg, found) in present {
        if !found {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}

/// Same default as `tests/tests/safety/oldkernel.rs`: the shared tools beside the repository.
fn oldkernel_src() -> PathBuf {
    match env::var_os("HOTRELOAD_OLDKERNEL_SRC") {
        Some(src) => PathBuf::from(src),
        None => Path::new(&env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"))
            .join("../../shared/tools/oldkernel.c"),
    }
}

/// Same default as the tests' `real_servers_dir()`.
fn real_servers_dir() -> PathBuf {
    match env::var_os("HOTRELOAD_REAL_SERVERS_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(&env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"))
            .join("../.cache/real-servers"),
    }
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
