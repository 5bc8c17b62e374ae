//! The catalog a remote publishes in its summary (`Catalog::parse`) and the
//! entry each commit carries (`Entry::parse`).
#![no_main]

use appbox::store::catalog::{Catalog, CatalogError, Entry};
use libfuzzer_sys::fuzz_target;

/// What parses as a `T` reads back as itself from its JSON; what does not is
/// a clean error.
fn round_trip<T: PartialEq + std::fmt::Debug>(
    json: &str,
    what: &str,
    parse: fn(&str) -> Result<T, CatalogError>,
    to_json: fn(&T) -> String,
) {
    match parse(json) {
        Ok(value) => {
            let again = parse(&to_json(&value)).unwrap_or_else(|e| panic!("{what} reparses: {e}"));
            assert_eq!(again, value);
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // Both come out of GVariant strings: UTF-8.
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    round_trip(json, "a catalog", Catalog::parse, Catalog::to_json);
    round_trip(json, "an entry", Entry::parse, Entry::to_json);
});
