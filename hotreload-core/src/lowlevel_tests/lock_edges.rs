//! The lock file's holder details: the command line and a correct UTC time while held,
//! emptied after release so no reader takes stale details for a holder. Written for a survivor of the cargo-mutants run (MUTANTS.md).

use std::fs;
use std::time::{Duration, UNIX_EPOCH};

use crate::lock::TargetLock;

#[test]
fn a_released_lock_leaves_no_holder_details() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx.lock");
    let lock = TargetLock::acquire_file(&path).unwrap();
    let held = fs::read_to_string(&path).unwrap();
    assert!(held.contains(&std::process::id().to_string()), "{held}");
    drop(lock);
    // Removed by its holder as it lets go (or, if still there, emptied).
    assert!(
        fs::read_to_string(&path).map_or(true, |left| left.is_empty()),
        "details left after release"
    );
    // And it can be taken again.
    TargetLock::acquire_file(&path).unwrap();
}

#[test]
fn the_holder_is_named_by_its_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nginx.lock");
    let _lock = TargetLock::acquire_file(&path).unwrap();
    let held = fs::read_to_string(&path).unwrap();
    let argv0 = std::env::args().next().unwrap();
    assert!(held.contains(&argv0), "{held}");
}

#[test]
fn holder_times_are_right_past_the_century_days_of_the_calendar() {
    // The century and 400-year corrections of the civil-date conversion.
    let at = |secs| crate::lock::format_utc(UNIX_EPOCH + Duration::from_secs(secs));
    assert_eq!(at(4_107_456_000), "2100-02-28T00:00:00Z");
    assert_eq!(at(4_107_542_400), "2100-03-01T00:00:00Z");
    assert_eq!(at(13_569_379_200), "2399-12-31T00:00:00Z");
    assert_eq!(at(13_574_563_200), "2400-02-29T00:00:00Z");
    assert_eq!(at(13_574_649_600), "2400-03-01T00:00:00Z");
}
