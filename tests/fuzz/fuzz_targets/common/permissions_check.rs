//! The check of the `permissions` fuzz target, shared with the regression
//! tests of what it found (`launcher/tests/fuzz_regressions.rs`), which
//! include this file with `#[path]` so that the two cannot drift apart.

use appbox::permissions::{Change, Permissions};

/// Every finish-arg of `text` (one a line) that parses is shown (in `appbox
/// info`, the consent dialog and `Permissions::to_args`) as text that parses
/// back as the same grant; one that does not parse is a clean error. The
/// permissions built from the canonical args are the ones they were built
/// from: "the grants as canonical finish-args: what is displayed is exactly
/// what applies." Returns how many lines parsed.
pub fn check_permissions(text: &str) -> usize {
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
    let permissions = Permissions::from_changes(&changes);
    let args = permissions.to_args();
    let again: Vec<Change> = args
        .iter()
        .map(|arg| Change::parse(arg).unwrap_or_else(|e| panic!("{arg:?}: {e}")))
        .collect();
    assert_eq!(Permissions::from_changes(&again), permissions, "{args:?}");
    changes.len()
}
