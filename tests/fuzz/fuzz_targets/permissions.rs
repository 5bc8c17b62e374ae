//! The permission vocabulary (`Change::parse`), one finish-arg per line, and
//! what the launcher builds from it: `Permissions`, shown again as
//! `to_args`. The check itself is shared with
//! `launcher/tests/fuzz_regressions.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "common/permissions_check.rs"]
mod permissions_check;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    permissions_check::check_permissions(text);
});
