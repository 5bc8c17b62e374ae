//! `metadata.toml`, as `AppMetadata::load` hands it to the parser (an app
//! from a remote or a bundle writes it).
#![no_main]

use std::path::Path;

use appbox::metadata::AppMetadata;
use appbox::permissions::Change;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // `load` reads the file with read_to_string: only UTF-8 reaches `parse`.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match AppMetadata::parse(text, Path::new("metadata.toml")) {
        Ok(metadata) => {
            for change in &metadata.permissions {
                // What `appbox info` shows must be what applies.
                let shown = change.to_string();
                assert_eq!(Change::parse(&shown).as_ref().ok(), Some(change), "{shown}");
            }
            let _ = metadata.runtime.to_string();
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
