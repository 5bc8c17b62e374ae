//! What the fuzz targets in `tests/fuzz` found, kept as plain tests so that
//! `cargo test` (and CI) runs them without nightly or cargo-fuzz.
//!
//! Each input is the fuzzer's own, saved under `tests/fuzz-crashes/` as
//! `TARGET-WHAT`. Each test checks what the target asserts for it: a clean
//! error or a value that reads back as itself, never a panic.

use appbox::permissions::{Change, Permissions};

/// The `permissions` target: every finish-arg that parses is shown (in
/// `appbox info`, the consent dialog and `Permissions::to_args`) as text
/// that parses back as the same grant, and the permissions built from the
/// canonical args are the ones they were built from.
fn permissions_round_trip(input: &[u8]) {
    let text = String::from_utf8_lossy(input);
    let mut changes = Vec::new();
    for arg in text.split('\n') {
        let Ok(change) = Change::parse(arg) else {
            continue;
        };
        let shown = change.to_string();
        assert_eq!(
            Change::parse(&shown).ok().as_ref(),
            Some(&change),
            "{arg:?} is shown as {shown:?}"
        );
        changes.push(change);
    }
    assert!(!changes.is_empty(), "the input holds grants");
    let permissions = Permissions::from_changes(&changes);
    let args = permissions.to_args();
    let again: Vec<Change> = args.iter().map(|arg| Change::parse(arg).unwrap()).collect();
    assert_eq!(Permissions::from_changes(&again), permissions, "{args:?}");
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
