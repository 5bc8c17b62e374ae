//! ed25519 signatures of commits and summaries, in OSTree's own format.
//!
//! Debian's libostree is built without libsodium, so `ostree sign` can't do
//! ed25519; we sign and verify here, but write exactly what ostree would:
//! signatures are an `aay` under [`ED25519_KEY`] in the detached metadata
//! (`.commitmeta`, `summary.sig`), and keys files hold base64 keys, one a line.

use std::fmt;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};

use super::gvariant::{decode_vardict, encode_vardict, GVariantError, Value};

/// The detached-metadata key ostree stores ed25519 signatures under.
pub const ED25519_KEY: &str = "ostree.sign.ed25519";

/// Key files are a few lines; anything bigger is not one.
const MAX_KEY_FILE_SIZE: u64 = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("invalid ed25519 {kind} key: {reason}")]
    InvalidKey { kind: KeyKind, reason: Box<str> },
    #[error("{}, line {line}: invalid ed25519 {kind} key: {reason}", path.display())]
    InvalidKeyLine {
        path: PathBuf,
        line: u32,
        kind: KeyKind,
        reason: Box<str>,
    },
    #[error("{}: no ed25519 {kind} key in the file", path.display())]
    NoKeyInFile { path: PathBuf, kind: KeyKind },
    #[error("{}: {reason}", path.display())]
    BadKeyFile { path: PathBuf, reason: Box<str> },
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("refusing to overwrite {}: it already exists", path.display())]
    Exists { path: PathBuf },
    #[error("writing {}: {source}", path.display())]
    Write { path: PathBuf, source: io::Error },
    #[error("detached metadata is not a valid a{{sv}}: {0}")]
    Metadata(#[from] GVariantError),
    #[error("detached metadata has {ED25519_KEY} of type {found}, expected aay")]
    WrongSignatureType { found: String },
    #[error("no ed25519 signature ({ED25519_KEY}) in the detached metadata")]
    NoSignature,
    #[error("no trusted ed25519 public key to verify with")]
    NoTrustedKeys,
    #[error(
        "no valid ed25519 signature by a trusted key: checked {signatures} signature(s) \
         against {trusted} trusted key(s)"
    )]
    Untrusted { signatures: usize, trusted: usize },
}

// Boxed strings and a u32 line keep SignError at 48 bytes, so errors that
// wrap it stay under clippy's result_large_err limit.

/// Which half of a key pair an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    Secret,
    Public,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::Secret => "secret",
            KeyKind::Public => "public",
        })
    }
}

const SECRET: KeyKind = KeyKind::Secret;
const PUBLIC: KeyKind = KeyKind::Public;

/// A signing key. Its bytes are wiped on drop (by ed25519-dalek) and never
/// printed by `Debug`.
pub struct SecretKey(SigningKey);

/// A verifying key, as listed in a trusted-keys file.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl SecretKey {
    pub fn generate() -> Self {
        SecretKey(SigningKey::generate(&mut rand_core::OsRng))
    }

    /// Parses ostree's form: base64 of the 64-byte libsodium secret key
    /// (seed, then public key). Refuses a public half that isn't the seed's.
    pub fn from_base64(text: &str) -> Result<Self, SignError> {
        parse_secret(text).map_err(|reason| SignError::InvalidKey {
            kind: SECRET,
            reason,
        })
    }

    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0.to_keypair_bytes())
    }

    /// Loads the first key of a keys file (as `ostree sign --keys-file`).
    pub fn load(path: &Path) -> Result<Self, SignError> {
        let text = read_key_file(path)?;
        let Some((line, key_text)) = key_lines(&text).next() else {
            return Err(SignError::NoKeyInFile {
                path: path.to_path_buf(),
                kind: SECRET,
            });
        };
        parse_secret(key_text).map_err(|reason| SignError::InvalidKeyLine {
            path: path.to_path_buf(),
            line,
            kind: SECRET,
            reason,
        })
    }

    /// Writes a new keys file holding this key, readable only by its owner.
    pub fn write_new(&self, path: &Path) -> Result<(), SignError> {
        write_new_file(path, &self.to_base64(), 0o600)
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretKey")
            .field("public", &self.public().to_base64())
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    /// Parses base64 of the 32-byte key. Small-order keys are refused: a
    /// signature "by" one would verify for almost any content.
    pub fn from_base64(text: &str) -> Result<Self, SignError> {
        parse_public(text).map_err(|reason| SignError::InvalidKey {
            kind: PUBLIC,
            reason,
        })
    }

    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0.as_bytes())
    }

    /// Loads every key of a keys file, without duplicates. Unlike ostree,
    /// which skips lines it can't parse, a bad line is an error: a silently
    /// dropped trusted key is hard to debug.
    pub fn load_all(path: &Path) -> Result<Vec<Self>, SignError> {
        let text = read_key_file(path)?;
        let mut keys: Vec<PublicKey> = Vec::new();
        for (line, key_text) in key_lines(&text) {
            let key = parse_public(key_text).map_err(|reason| SignError::InvalidKeyLine {
                path: path.to_path_buf(),
                line,
                kind: PUBLIC,
                reason,
            })?;
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        if keys.is_empty() {
            return Err(SignError::NoKeyInFile {
                path: path.to_path_buf(),
                kind: PUBLIC,
            });
        }
        Ok(keys)
    }

    /// Writes a new keys file holding this key, readable by everyone.
    pub fn write_new(&self, path: &Path) -> Result<(), SignError> {
        write_new_file(path, &self.to_base64(), 0o644)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("PublicKey").field(&self.to_base64()).finish()
    }
}

fn parse_secret(text: &str) -> Result<SecretKey, Box<str>> {
    let bytes = decode_base64(text)?;
    let Ok(pair) = <[u8; 64]>::try_from(bytes.as_slice()) else {
        return Err(format!(
            "{} bytes, expected 64 (32-byte seed, then 32-byte public key)",
            bytes.len()
        )
        .into());
    };
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&pair[..32]);
    let key = SigningKey::from_bytes(&seed);
    if key.verifying_key().as_bytes()[..] != pair[32..] {
        return Err("its public half does not match its seed".into());
    }
    Ok(SecretKey(key))
}

fn parse_public(text: &str) -> Result<PublicKey, Box<str>> {
    let bytes = decode_base64(text)?;
    let Ok(raw) = <[u8; 32]>::try_from(bytes.as_slice()) else {
        return Err(format!("{} bytes, expected 32", bytes.len()).into());
    };
    let key =
        VerifyingKey::from_bytes(&raw).map_err(|_| Box::<str>::from("not a point on the curve"))?;
    if key.is_weak() {
        return Err("weak (small-order) key".into());
    }
    Ok(PublicKey(key))
}

fn decode_base64(text: &str) -> Result<Vec<u8>, Box<str>> {
    BASE64
        .decode(text.trim())
        .map_err(|e| format!("not base64: {e}").into())
}

/// Non-blank lines of a keys file with their 1-based line numbers.
fn key_lines(text: &str) -> impl Iterator<Item = (u32, &str)> {
    text.lines()
        .enumerate()
        .map(|(index, line)| (u32::try_from(index + 1).unwrap_or(u32::MAX), line.trim()))
        .filter(|(_, line)| !line.is_empty())
}

fn read_key_file(path: &Path) -> Result<String, SignError> {
    let read_error = |source| SignError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_KEY_FILE_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_KEY_FILE_SIZE {
        return Err(SignError::BadKeyFile {
            path: path.to_path_buf(),
            reason: format!("larger than {MAX_KEY_FILE_SIZE} bytes, not a keys file").into(),
        });
    }
    String::from_utf8(bytes).map_err(|e| SignError::BadKeyFile {
        path: path.to_path_buf(),
        reason: format!(
            "not text (invalid UTF-8 at byte {})",
            e.utf8_error().valid_up_to()
        )
        .into(),
    })
}

/// Creates `path` (never through a symlink, never over an existing file)
/// with exactly `mode`, whatever the umask.
fn write_new_file(path: &Path, key_text: &str, mode: u32) -> Result<(), SignError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                SignError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                SignError::Write {
                    path: path.to_path_buf(),
                    source,
                }
            }
        })?;
    let written = file
        .set_permissions(Permissions::from_mode(mode))
        .and_then(|()| file.write_all(format!("{key_text}\n").as_bytes()))
        .and_then(|()| file.sync_all());
    if let Err(source) = written {
        // We created it, so a half-written key file is ours to remove;
        // leaving it would make the retry fail with "already exists".
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(SignError::Write {
            path: path.to_path_buf(),
            source,
        });
    }
    Ok(())
}

/// Returns `existing` (an a{sv} or None) with one more signature of `signed`
/// under ED25519_KEY. Other entries keep their order and bytes. Signing the
/// same content with the same key twice adds nothing (ed25519 signatures are
/// deterministic), so re-signing is idempotent.
pub fn add_signature(
    existing: Option<&[u8]>,
    key: &SecretKey,
    signed: &[u8],
) -> Result<Vec<u8>, SignError> {
    let mut entries = match existing {
        Some(bytes) => decode_vardict(bytes)?,
        None => Vec::new(),
    };
    let signature = key.0.sign(signed).to_bytes().to_vec();
    // Like g_variant_lookup_value, only the first entry of a key counts.
    match entries.iter_mut().find(|(k, _)| k == ED25519_KEY) {
        Some((_, Value::ByteArrays(signatures))) => {
            if !signatures.contains(&signature) {
                signatures.push(signature);
            }
        }
        Some((_, Value::Raw { type_string, .. })) => {
            return Err(SignError::WrongSignatureType {
                found: type_string.clone(),
            })
        }
        None => entries.push((ED25519_KEY.to_string(), Value::ByteArrays(vec![signature]))),
    }
    Ok(encode_vardict(&entries)?)
}

/// Succeeds when some signature under ED25519_KEY in `metadata` is a valid
/// signature of `signed` by one of `trusted`; returns that key.
pub fn verify(
    metadata: &[u8],
    signed: &[u8],
    trusted: &[PublicKey],
) -> Result<PublicKey, SignError> {
    if trusted.is_empty() {
        return Err(SignError::NoTrustedKeys);
    }
    let entries = decode_vardict(metadata)?;
    let signatures = match entries.iter().find(|(k, _)| k == ED25519_KEY) {
        None => return Err(SignError::NoSignature),
        Some((_, Value::Raw { type_string, .. })) => {
            return Err(SignError::WrongSignatureType {
                found: type_string.clone(),
            })
        }
        Some((_, Value::ByteArrays(signatures))) if signatures.is_empty() => {
            return Err(SignError::NoSignature)
        }
        Some((_, Value::ByteArrays(signatures))) => signatures,
    };
    for signature in signatures {
        // A signature of another length can't be valid; others may still be.
        let Ok(bytes) = <[u8; 64]>::try_from(signature.as_slice()) else {
            continue;
        };
        let signature = Signature::from_bytes(&bytes);
        if let Some(key) = trusted
            .iter()
            .find(|key| key.0.verify_strict(signed, &signature).is_ok())
        {
            return Ok(key.clone());
        }
    }
    Err(SignError::Untrusted {
        signatures: signatures.len(),
        trusted: trusted.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system temp dir, removed on drop (also
    /// when a test fails).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos();
            let path = std::env::temp_dir().join(format!(
                "appbox-sign-{tag}-{}-{nanos}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir(&path).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn signatures_in(metadata: &[u8]) -> Vec<Vec<u8>> {
        let entries = decode_vardict(metadata).unwrap();
        match entries.iter().find(|(k, _)| k == ED25519_KEY) {
            Some((_, Value::ByteArrays(s))) => s.clone(),
            other => panic!("no signatures: {other:?}"),
        }
    }

    #[test]
    fn secret_key_base64_round_trip_and_public_half() {
        let key = SecretKey::generate();
        let text = key.to_base64();
        assert_eq!(BASE64.decode(&text).unwrap().len(), 64);
        let again = SecretKey::from_base64(&format!("  {text}\n")).unwrap();
        assert_eq!(again.public(), key.public());
        assert_eq!(
            BASE64.decode(&text).unwrap()[32..],
            BASE64.decode(key.public().to_base64()).unwrap()[..]
        );
    }

    #[test]
    fn known_libsodium_key_pair() {
        // RFC 8032 test 1: libsodium's secret key is seed || public key.
        let seed = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
        let public = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        let hex = |s: &str| -> Vec<u8> {
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let mut pair = hex(seed);
        pair.extend(hex(public));
        let key = SecretKey::from_base64(&BASE64.encode(&pair)).unwrap();
        assert_eq!(key.public().to_base64(), BASE64.encode(hex(public)));
        let signature = key.0.sign(b"").to_bytes();
        assert_eq!(
            signature.to_vec(),
            hex(concat!(
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155",
                "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
            ))
        );
    }

    #[test]
    fn secret_key_with_foreign_public_half_is_refused() {
        let a = SecretKey::generate();
        let b = SecretKey::generate();
        let mut pair = BASE64.decode(a.to_base64()).unwrap();
        pair[32..].copy_from_slice(&BASE64.decode(b.public().to_base64()).unwrap());
        let err = SecretKey::from_base64(&BASE64.encode(&pair)).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[test]
    fn bad_keys_are_refused_with_a_reason() {
        let seed_only = BASE64.encode([7u8; 32]);
        let err = SecretKey::from_base64(&seed_only).unwrap_err();
        assert!(err.to_string().contains("32 bytes, expected 64"), "{err}");
        assert!(SecretKey::from_base64("not base64!").is_err());
        let err = PublicKey::from_base64(&BASE64.encode([1u8; 64])).unwrap_err();
        assert!(err.to_string().contains("64 bytes, expected 32"), "{err}");
        // The identity point is small-order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let err = PublicKey::from_base64(&BASE64.encode(identity)).unwrap_err();
        assert!(err.to_string().contains("weak"), "{err}");
    }

    #[test]
    fn errors_stay_small() {
        // Callers wrap SignError in their own errors; see KeyKind.
        assert!(std::mem::size_of::<SignError>() <= 48);
    }

    #[test]
    fn debug_does_not_print_the_secret() {
        let key = SecretKey::generate();
        let secret = key.to_base64();
        let printed = format!("{key:?}");
        assert!(!printed.contains(&secret), "{printed}");
        assert!(!printed.contains(&secret[..40]), "{printed}");
        assert!(printed.contains(&key.public().to_base64()), "{printed}");
    }

    #[test]
    fn key_files_write_and_load() {
        let dir = TempDir::new("keys");
        let key = SecretKey::generate();
        let secret_path = dir.0.join("secret");
        let public_path = dir.0.join("public");
        key.write_new(&secret_path).unwrap();
        key.public().write_new(&public_path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&secret_path), 0o600);
        assert_eq!(mode(&public_path), 0o644);
        assert_eq!(
            SecretKey::load(&secret_path).unwrap().public(),
            key.public()
        );
        assert_eq!(
            PublicKey::load_all(&public_path).unwrap(),
            vec![key.public()]
        );

        // Never over an existing file, nor through a symlink.
        let err = SecretKey::generate().write_new(&secret_path).unwrap_err();
        assert!(matches!(err, SignError::Exists { .. }), "{err}");
        let link = dir.0.join("link");
        std::os::unix::fs::symlink(dir.0.join("target"), &link).unwrap();
        assert!(key.write_new(&link).is_err());
        assert!(!dir.0.join("target").exists());
    }

    #[test]
    fn key_files_with_blank_lines_and_several_keys() {
        let dir = TempDir::new("keyring");
        let (a, b) = (SecretKey::generate(), SecretKey::generate());
        let path = dir.0.join("trusted");
        let text = format!(
            "\n{}\r\n\n  {}  \n{}\n",
            a.public().to_base64(),
            b.public().to_base64(),
            a.public().to_base64()
        );
        std::fs::write(&path, text).unwrap();
        assert_eq!(
            PublicKey::load_all(&path).unwrap(),
            vec![a.public(), b.public()]
        );

        let secrets = dir.0.join("secrets");
        std::fs::write(
            &secrets,
            format!("\n\n{}\n{}\n", b.to_base64(), a.to_base64()),
        )
        .unwrap();
        assert_eq!(SecretKey::load(&secrets).unwrap().public(), b.public());
    }

    #[test]
    fn malformed_key_files_name_file_and_line() {
        let dir = TempDir::new("badkeys");
        let path = dir.0.join("trusted");
        let good = SecretKey::generate().public().to_base64();
        std::fs::write(&path, format!("{good}\n\n{good}xx\n")).unwrap();
        let err = PublicKey::load_all(&path).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, SignError::InvalidKeyLine { line: 3, .. }),
            "{message}"
        );
        assert!(message.contains("trusted, line 3"), "{message}");

        // A public key where a secret one belongs.
        let err = SecretKey::load(&path).unwrap_err();
        assert!(
            matches!(err, SignError::InvalidKeyLine { line: 1, .. }),
            "{err}"
        );

        std::fs::write(&path, "\n  \n").unwrap();
        assert!(matches!(
            PublicKey::load_all(&path).unwrap_err(),
            SignError::NoKeyInFile { .. }
        ));
        assert!(matches!(
            SecretKey::load(&path).unwrap_err(),
            SignError::NoKeyInFile { .. }
        ));

        std::fs::write(&path, b"\xff\xfe").unwrap();
        assert!(matches!(
            PublicKey::load_all(&path).unwrap_err(),
            SignError::BadKeyFile { .. }
        ));
        let missing = dir.0.join("missing");
        let err = SecretKey::load(&missing).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn sign_then_verify() {
        let key = SecretKey::generate();
        let metadata = add_signature(None, &key, b"commit bytes").unwrap();
        assert_eq!(signatures_in(&metadata).len(), 1);
        assert_eq!(
            verify(&metadata, b"commit bytes", &[key.public()]).unwrap(),
            key.public()
        );
    }

    #[test]
    fn tampered_payload_fails() {
        let key = SecretKey::generate();
        let metadata = add_signature(None, &key, b"commit bytes").unwrap();
        let err = verify(&metadata, b"commit bytez", &[key.public()]).unwrap_err();
        assert!(
            matches!(
                err,
                SignError::Untrusted {
                    signatures: 1,
                    trusted: 1
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn untrusted_signer_fails_and_trusted_among_many_succeeds() {
        let (signer, other) = (SecretKey::generate(), SecretKey::generate());
        let metadata = add_signature(None, &signer, b"x").unwrap();
        let err = verify(&metadata, b"x", &[other.public()]).unwrap_err();
        assert!(matches!(err, SignError::Untrusted { .. }), "{err}");

        let metadata = add_signature(Some(&metadata), &other, b"x").unwrap();
        assert_eq!(signatures_in(&metadata).len(), 2);
        let third = SecretKey::generate().public();
        assert_eq!(
            verify(&metadata, b"x", &[third.clone(), signer.public()]).unwrap(),
            signer.public()
        );
        assert_eq!(
            verify(&metadata, b"x", &[other.public()]).unwrap(),
            other.public()
        );
        assert!(matches!(
            verify(&metadata, b"x", &[]).unwrap_err(),
            SignError::NoTrustedKeys
        ));
    }

    #[test]
    fn missing_signatures_are_told_apart() {
        let key = SecretKey::generate();
        let empty = encode_vardict(&[]).unwrap();
        assert!(matches!(
            verify(&empty, b"x", &[key.public()]).unwrap_err(),
            SignError::NoSignature
        ));
        let no_sigs = encode_vardict(&[(ED25519_KEY.into(), Value::ByteArrays(vec![]))]).unwrap();
        assert!(matches!(
            verify(&no_sigs, b"x", &[key.public()]).unwrap_err(),
            SignError::NoSignature
        ));
        let wrong_type = encode_vardict(&[(
            ED25519_KEY.into(),
            Value::Raw {
                type_string: "s".into(),
                data: b"sig\0".to_vec(),
            },
        )])
        .unwrap();
        assert!(matches!(
            verify(&wrong_type, b"x", &[key.public()]).unwrap_err(),
            SignError::WrongSignatureType { .. }
        ));
        assert!(matches!(
            add_signature(Some(&wrong_type), &key, b"x").unwrap_err(),
            SignError::WrongSignatureType { .. }
        ));
        assert!(matches!(
            verify(b"\x01\x02garbage", b"x", &[key.public()]).unwrap_err(),
            SignError::Metadata(_)
        ));
    }

    #[test]
    fn short_signatures_are_skipped_not_fatal() {
        let key = SecretKey::generate();
        let good = add_signature(None, &key, b"x").unwrap();
        let mut signatures = vec![vec![0u8; 10], vec![1u8; 65]];
        signatures.extend(signatures_in(&good));
        let metadata =
            encode_vardict(&[(ED25519_KEY.into(), Value::ByteArrays(signatures))]).unwrap();
        assert_eq!(
            verify(&metadata, b"x", &[key.public()]).unwrap(),
            key.public()
        );
    }

    #[test]
    fn add_signature_keeps_other_entries_and_is_idempotent() {
        let key = SecretKey::generate();
        let other = (
            "ostree.gpgsigs".to_string(),
            Value::ByteArrays(vec![vec![0x89; 300]]),
        );
        let after = (
            "zzz".to_string(),
            Value::Raw {
                type_string: "s".into(),
                data: b"kept\0".to_vec(),
            },
        );
        let existing = encode_vardict(&[other.clone(), after.clone()]).unwrap();
        let once = add_signature(Some(&existing), &key, b"x").unwrap();
        let entries = decode_vardict(&once).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[0], other);
        assert_eq!(entries[1], after);
        assert_eq!(entries[2].0, ED25519_KEY);
        let twice = add_signature(Some(&once), &key, b"x").unwrap();
        assert_eq!(twice, once);
    }

    #[test]
    fn many_signatures_cross_offset_widths() {
        let keys: Vec<SecretKey> = (0..6).map(|_| SecretKey::generate()).collect();
        let mut metadata = add_signature(None, &keys[0], b"summary").unwrap();
        for key in &keys[1..] {
            metadata = add_signature(Some(&metadata), key, b"summary").unwrap();
        }
        assert!(metadata.len() > 256);
        assert_eq!(signatures_in(&metadata).len(), 6);
        for key in &keys {
            assert_eq!(
                verify(&metadata, b"summary", &[key.public()]).unwrap(),
                key.public()
            );
        }
    }

    // ---- Interoperability with the real ostree CLI ----

    fn ostree(args: &[&str]) -> String {
        let output = Command::new("ostree").args(args).output().unwrap();
        assert!(
            output.status.success(),
            "ostree {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    fn have_ostree() -> bool {
        match Command::new("ostree").arg("--version").output() {
            Ok(_) => true,
            Err(e) if e.kind() == io::ErrorKind::NotFound => false,
            Err(e) => panic!("running ostree: {e}"),
        }
    }

    /// Parses GVariant text of an `aay` as ostree show prints it: arrays like
    /// `[byte 0x12, 0x34]`, or `b'...'` when the bytes happen to form a
    /// NUL-terminated string (escaped by g_strescape).
    fn parse_printed_aay(text: &str) -> Vec<Vec<u8>> {
        let text = text.trim();
        let text = text.strip_prefix("@aay").unwrap_or(text).trim();
        let inner = text.strip_prefix('[').unwrap().strip_suffix(']').unwrap();
        let chars: Vec<char> = inner.chars().collect();
        let mut arrays = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                ' ' | ',' => i += 1,
                '[' => {
                    let end = i + chars[i..].iter().position(|&c| c == ']').unwrap();
                    let body: String = chars[i + 1..end].iter().collect();
                    let bytes = body
                        .split(',')
                        .map(|t| t.trim().trim_start_matches("byte").trim())
                        .filter(|t| !t.is_empty())
                        .map(|t| match t.strip_prefix("0x") {
                            Some(hex) => u8::from_str_radix(hex, 16).unwrap(),
                            None => t.parse().unwrap(),
                        })
                        .collect();
                    arrays.push(bytes);
                    i = end + 1;
                }
                'b' => {
                    let quote = chars[i + 1];
                    i += 2;
                    let mut bytes = Vec::new();
                    while chars[i] != quote {
                        if chars[i] != '\\' {
                            bytes.push(u8::try_from(u32::from(chars[i])).unwrap());
                            i += 1;
                            continue;
                        }
                        i += 1;
                        let simple = match chars[i] {
                            'b' => Some(8),
                            'f' => Some(12),
                            'n' => Some(b'\n'),
                            'r' => Some(b'\r'),
                            't' => Some(b'\t'),
                            'v' => Some(11),
                            c @ ('\\' | '"' | '\'') => Some(c as u8),
                            _ => None,
                        };
                        if let Some(b) = simple {
                            bytes.push(b);
                            i += 1;
                        } else {
                            let digits: String = chars[i..]
                                .iter()
                                .take(3)
                                .take_while(|c| c.is_digit(8))
                                .collect();
                            bytes.push(u8::from_str_radix(&digits, 8).unwrap());
                            i += digits.len();
                        }
                    }
                    bytes.push(0);
                    arrays.push(bytes);
                    i += 1;
                }
                c => panic!("unexpected {c:?} in {text:?}"),
            }
        }
        arrays
    }

    #[test]
    fn printed_aay_parser() {
        assert_eq!(
            parse_printed_aay("[[byte 0x12, 0xff], [0x00]]\n"),
            vec![vec![0x12, 0xff], vec![0]]
        );
        assert_eq!(
            parse_printed_aay(r#"[b'a\001\\\"', [byte 0x01]]"#),
            vec![vec![b'a', 1, b'\\', b'"', 0], vec![1]]
        );
        assert_eq!(parse_printed_aay("@aay []"), Vec::<Vec<u8>>::new());
    }

    struct Repo {
        _dir: TempDir,
        repo: String,
        tree: String,
    }

    impl Repo {
        fn new() -> Self {
            let dir = TempDir::new("ostree");
            let repo = dir.0.join("repo").to_str().unwrap().to_string();
            let tree = dir.0.join("tree");
            std::fs::create_dir(&tree).unwrap();
            std::fs::write(tree.join("hello"), "hello\n").unwrap();
            ostree(&["init", &format!("--repo={repo}"), "--mode=archive"]);
            let tree = tree.to_str().unwrap().to_string();
            Repo {
                _dir: dir,
                repo,
                tree,
            }
        }

        /// Commits the tree on `branch`; returns the commit's object path.
        fn commit(&self, branch: &str, extra: &[&str]) -> PathBuf {
            let mut args = vec![
                "commit".to_string(),
                format!("--repo={}", self.repo),
                format!("--branch={branch}"),
                format!("--tree=dir={}", self.tree),
            ];
            args.extend(extra.iter().map(|s| s.to_string()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            ostree(&args);
            let checksum = ostree(&["rev-parse", &format!("--repo={}", self.repo), branch]);
            let checksum = checksum.trim();
            assert_eq!(checksum.len(), 64);
            Path::new(&self.repo)
                .join("objects")
                .join(&checksum[..2])
                .join(format!("{}.commit", &checksum[2..]))
        }

        fn show_key(&self, branch: &str, key: &str) -> String {
            ostree(&[
                "show",
                &format!("--repo={}", self.repo),
                &format!("--print-detached-metadata-key={key}"),
                branch,
            ])
        }
    }

    #[test]
    fn ostree_reads_our_signatures() {
        if !have_ostree() {
            eprintln!("note: skipping ostree interop test: no ostree binary in PATH");
            return;
        }
        let repo = Repo::new();
        let commit_path = repo.commit("test", &[]);
        let meta_path = commit_path.with_extension("commitmeta");
        assert!(!meta_path.exists());
        let commit = std::fs::read(&commit_path).unwrap();

        let key = SecretKey::generate();
        let metadata = add_signature(None, &key, &commit).unwrap();
        std::fs::write(&meta_path, &metadata).unwrap();
        let printed = parse_printed_aay(&repo.show_key("test", ED25519_KEY));
        assert_eq!(printed, signatures_in(&metadata));
        assert_eq!(printed.len(), 1);
        assert_eq!(printed[0].len(), 64);
        assert_eq!(
            verify(&metadata, &commit, &[key.public()]).unwrap(),
            key.public()
        );

        // Enough signers for 2-byte framing offsets.
        let mut metadata = metadata;
        for _ in 0..4 {
            metadata = add_signature(Some(&metadata), &SecretKey::generate(), &commit).unwrap();
        }
        assert!(metadata.len() > 256);
        std::fs::write(&meta_path, &metadata).unwrap();
        let printed = parse_printed_aay(&repo.show_key("test", ED25519_KEY));
        assert_eq!(printed.len(), 5);
        assert_eq!(printed, signatures_in(&metadata));
    }

    #[test]
    fn we_read_and_extend_ostree_metadata() {
        if !have_ostree() {
            eprintln!("note: skipping ostree interop test: no ostree binary in PATH");
            return;
        }
        let repo = Repo::new();
        let commit_path = repo.commit("meta", &["--add-detached-metadata-string=foo=bar"]);
        let meta_path = commit_path.with_extension("commitmeta");
        let original = std::fs::read(&meta_path).unwrap();
        let entries = decode_vardict(&original).unwrap();
        assert_eq!(
            entries,
            vec![(
                "foo".to_string(),
                Value::Raw {
                    type_string: "s".into(),
                    data: b"bar\0".to_vec()
                }
            )]
        );
        assert_eq!(encode_vardict(&entries).unwrap(), original);

        let commit = std::fs::read(&commit_path).unwrap();
        let key = SecretKey::generate();
        let metadata = add_signature(Some(&original), &key, &commit).unwrap();
        // The object may be read-only; replace it rather than write through.
        std::fs::remove_file(&meta_path).unwrap();
        std::fs::write(&meta_path, &metadata).unwrap();
        assert_eq!(repo.show_key("meta", "foo").trim(), "'bar'");
        let printed = parse_printed_aay(&repo.show_key("meta", ED25519_KEY));
        assert_eq!(printed, signatures_in(&metadata));
        assert_eq!(
            verify(&metadata, &commit, &[key.public()]).unwrap(),
            key.public()
        );
        let err = verify(&metadata, &commit[1..], &[key.public()]).unwrap_err();
        assert!(matches!(err, SignError::Untrusted { .. }), "{err}");
    }

    #[test]
    fn summary_signature_round_trip() {
        if !have_ostree() {
            eprintln!("note: skipping ostree interop test: no ostree binary in PATH");
            return;
        }
        let repo = Repo::new();
        repo.commit("test", &[]);
        ostree(&["summary", &format!("--repo={}", repo.repo), "--update"]);
        let summary = std::fs::read(Path::new(&repo.repo).join("summary")).unwrap();
        let key = SecretKey::generate();
        let sig = add_signature(None, &key, &summary).unwrap();
        std::fs::write(Path::new(&repo.repo).join("summary.sig"), &sig).unwrap();
        // ostree still reads the repository and its summary with our sig next to it.
        let view = ostree(&["summary", &format!("--repo={}", repo.repo), "--view"]);
        assert!(view.contains("test"), "{view}");
        assert_eq!(
            verify(&sig, &summary, &[key.public()]).unwrap(),
            key.public()
        );
    }
}
