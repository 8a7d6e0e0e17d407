//! The lock file after its holder lets go: emptied, so no reader takes stale details for
//! a holder. Written for a survivor of the cargo-mutants run (MUTANTS.md).

use std::fs;

use crate::lock::TargetLock;

#[test]
fn a_released_lock_leaves_no_holder_details() {
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("nginx.pid");
    let lock = TargetLock::acquire(&pid_file).unwrap();
    let path = TargetLock::path_for(&pid_file);
    let held = fs::read_to_string(&path).unwrap();
    assert!(held.contains(&std::process::id().to_string()), "{held}");
    drop(lock);
    assert_eq!(
        fs::read_to_string(&path).unwrap(),
        "",
        "details left after release"
    );
    // And it can be taken again.
    TargetLock::acquire(&pid_file).unwrap();
}
