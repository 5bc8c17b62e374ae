//! Detached metadata (an `a{sv}` with the ed25519 signatures), which comes
//! from remotes, bundles and images: `gvariant::decode_vardict`,
//! `sign::verify` and `sign::add_signature`.
#![no_main]

use std::sync::OnceLock;

use appbox::store::gvariant::{decode_vardict, encode_vardict};
use appbox::store::sign::{self, SecretKey};
use libfuzzer_sys::fuzz_target;

/// A fixed key: the fuzzer cannot forge its signatures, so `verify` only
/// fails here, but it reads every signature there is.
fn key() -> &'static SecretKey {
    static KEY: OnceLock<SecretKey> = OnceLock::new();
    KEY.get_or_init(|| {
        SecretKey::from_base64(
            "oN3pCdm4YcPbb9LwLrbmmoVXPtjqAd/6Laevob2/98huWgCrkLrivZS4CGdCZLsFNYMwa1C+RR2oiDmD50ge1A==",
        ).expect("key")
    })
}

const SIGNED: &[u8] = b"the commit";

fuzz_target!(|data: &[u8]| {
    let key = key();
    if let Ok(entries) = decode_vardict(data) {
        // What decodes encodes (unless a key has a NUL) and decodes the same.
        if let Ok(bytes) = encode_vardict(&entries) {
            assert_eq!(decode_vardict(&bytes).as_ref(), Ok(&entries));
        }
    }
    let _ = sign::verify(data, SIGNED, &[key.public()]).map_err(|e| e.to_string());
    // Re-signing keeps what was there and adds a signature that verifies.
    if let Ok(signed) = sign::add_signature(Some(data), key, SIGNED) {
        sign::verify(&signed, SIGNED, &[key.public()]).expect("a signature just added verifies");
    }
});
