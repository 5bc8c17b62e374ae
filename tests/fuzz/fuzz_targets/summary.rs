//! A remote's summary file (`repo::parse_summary`), read before any signature
//! check of its contents, and the catalog it carries.
#![no_main]

use appbox::store::catalog::{self, Catalog};
use appbox::store::repo::parse_summary;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match parse_summary(data) {
        Ok(summary) => {
            for checksum in summary.refs.values() {
                assert_eq!(checksum.len(), 64);
            }
            if let Some(json) = summary.metadata.get(catalog::SUMMARY_KEY) {
                let _ = Catalog::parse(json);
            }
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
