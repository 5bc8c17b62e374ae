//! Build manifests (`Manifest::parse`). The file names the manifest inside
//! the repository's `manifests/`, so the paths the samples give (icons,
//! sources) resolve; the parser only opens them (`O_PATH`) and reads them.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use appbox::store::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fn file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../manifests/fuzz.toml"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Manifest::parse(text, file()) {
        Ok(manifest) => {
            let _ = format!("{manifest:?}");
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
});
