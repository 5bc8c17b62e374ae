//! The catalog a remote publishes in its summary (`Catalog::parse`) and the
//! entry each commit carries (`Entry::parse`).
#![no_main]

use appbox::store::catalog::{Catalog, Entry};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Both come out of GVariant strings: UTF-8.
    let Ok(json) = std::str::from_utf8(data) else {
        return;
    };
    match Catalog::parse(json) {
        Ok(catalog) => {
            let again = Catalog::parse(&catalog.to_json()).expect("a catalog reparses");
            assert_eq!(again, catalog);
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
    match Entry::parse(json) {
        Ok(entry) => {
            let again = Entry::parse(&entry.to_json()).expect("an entry reparses");
            assert_eq!(again, entry);
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
