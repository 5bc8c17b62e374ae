//! What the fuzz targets in `tests/fuzz` found, kept as plain tests so that
//! `cargo test` (and CI) runs them without nightly or cargo-fuzz.
//!
//! Each input is the fuzzer's own, saved under `tests/fuzz-crashes/` as
//! `TARGET-WHAT`. Each test checks what the target asserts for it: a clean
//! error or a value that reads back as itself, never a panic.

use appbox::permissions::Change;

// The `permissions` target's own check, so that the two cannot drift apart.
#[path = "../../tests/fuzz/fuzz_targets/common/permissions_check.rs"]
mod permissions_check;

/// The `permissions` target: every finish-arg that parses is shown (in
/// `appbox info`, the consent dialog and `Permissions::to_args`) as text
/// that parses back as the same grant, and the permissions built from the
/// canonical args are the ones they were built from
/// (`permissions_check::check_permissions`); and the saved input does hold
/// grants.
fn permissions_round_trip(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let grants = permissions_check::check_permissions(&text);
    assert!(grants > 0, "the input holds grants");
}

/// `--filesystem=/media/usb:rw:rw` grants `/media/usb:rw` read-write, and
/// was shown as `--filesystem=/media/usb:rw`: `/media/usb`.
#[test]
fn permissions_mode_in_path() {
    permissions_round_trip(include_bytes!("fuzz-crashes/permissions-mode-in-path"));
    for (arg, shown) in [
        (
            "--filesystem=/media/usb:rw:rw",
            "--filesystem=/media/usb:rw:rw",
        ),
        ("--filesystem=~/a:ro:rw", "--filesystem=~/a:ro:rw"),
        ("--filesystem=~/a:create:rw", "--filesystem=~/a:create:rw"),
        ("--filesystem=~/a:ro:ro", "--filesystem=~/a:ro:ro"),
        ("--filesystem=~/a:b", "--filesystem=~/a:b"),
        ("--filesystem=~/a:rw", "--filesystem=~/a"),
        (
            "--nofilesystem=~/a:reset:reset",
            "--nofilesystem=~/a:reset:reset",
        ),
        ("--nofilesystem=~/a:reset", "--nofilesystem=~/a"),
    ] {
        assert_eq!(Change::parse(arg).unwrap().to_string(), shown);
    }
}

/// `--filesystem=~/a:ro/` grants `~/a:ro` read-write (the mode is what
/// follows the last `:`, here `ro/`), and was shown as `--filesystem=~/a:ro`:
/// `~/a` read-only.
#[test]
fn permissions_mode_in_path_with_slash() {
    permissions_round_trip(include_bytes!(
        "fuzz-crashes/permissions-mode-in-path-slash"
    ));
    let change = Change::parse("--filesystem=~/a:ro/").unwrap();
    assert_eq!(change.to_string(), "--filesystem=~/a:ro:rw");
}
