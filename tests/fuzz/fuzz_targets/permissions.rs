//! The permission vocabulary (`Change::parse`), one finish-arg per line, and
//! what the launcher builds from it: `Permissions`, shown again as
//! `to_args`.
#![no_main]

use appbox::permissions::{Change, Permissions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut changes = Vec::new();
    for arg in text.split('\n') {
        match Change::parse(arg) {
            Ok(change) => {
                let shown = change.to_string();
                assert_eq!(
                    Change::parse(&shown).as_ref().ok(),
                    Some(&change),
                    "{arg:?} is shown as {shown:?}"
                );
                changes.push(change);
            }
            Err(error) => {
                let _ = error.to_string();
            }
        }
    }
    // "The grants as canonical finish-args: what is displayed is exactly
    // what applies."
    let permissions = Permissions::from_changes(&changes);
    let args = permissions.to_args();
    let again: Vec<Change> = args
        .iter()
        .map(|arg| Change::parse(arg).unwrap_or_else(|e| panic!("{arg:?}: {e}")))
        .collect();
    assert_eq!(Permissions::from_changes(&again), permissions, "{args:?}");
});
