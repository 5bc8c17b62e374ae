//! The checks that stand between untrusted tar streams and ostree-ext's
//! importer (`ostree_tar.rs`), and the OCI parsing before an image download:
//! the manifest and the image reference. The first byte picks which:
//! 0 a bundle's tar stream or an image's first layer, 1 a further layer of
//! an image, 2 an image manifest (JSON), 3 an image reference.
#![no_main]

use appbox::store::oci::{check_untrusted_manifest, parse_image_reference};
use appbox::store::ostree_tar::scan_untrusted_tar;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            if let Ok(commit) = scan_untrusted_tar(rest, true) {
                assert!(commit.is_some_and(|c| c.len() == 64));
            }
        }
        1 => {
            if let Ok(commit) = scan_untrusted_tar(rest, false) {
                assert!(commit.is_none());
            }
        }
        2 => {
            if let Ok(layers) = check_untrusted_manifest(rest) {
                assert!(layers >= 1);
            }
        }
        _ => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            if let Ok(printed) = parse_image_reference(text) {
                assert_eq!(parse_image_reference(&printed).as_ref(), Ok(&printed));
            }
        }
    }
});
