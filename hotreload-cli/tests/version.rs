//! The `hotreload` binary of this build runs and names its version. Small on purpose: it
//! is also the target that makes `cargo test --test version` build the binary, which the
//! mutation run (`.cargo/mutants.toml`) needs so that the end-to-end `safety` tests run the
//! mutated code.

use std::process::Command;

#[test]
fn version_names_the_crate_version() {
    let out = Command::new(env!("CARGO_BIN_EXE_hotreload"))
        .arg("--version")
        .output()
        .expect("run hotreload --version");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("hotreload {}\n", env!("CARGO_PKG_VERSION"))
    );
}
