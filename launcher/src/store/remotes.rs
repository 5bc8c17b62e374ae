//! The user's remotes: `~/.config/appbox/remotes.toml`.
//!
//! ```toml
//! [remotes.appbox]
//! url = "https://example.org/repo"
//! keys = ["<base64 ed25519 public key>"]
//! ```
//!
//! A remote without keys is refused unless it was added with `--no-verify`,
//! which is written down as `verify = false`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::store::sign::PublicKey;
use crate::text::check_line;

#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("remote name {name:?} is invalid: {problem}")]
    BadName { name: String, problem: &'static str },
    #[error("remote {name}: url {url:?} is invalid: {problem}")]
    BadUrl {
        name: String,
        url: String,
        problem: String,
    },
    #[error("remote {name}: key {index} is invalid: {problem}")]
    BadKey {
        name: String,
        index: usize,
        problem: String,
    },
    #[error("remote {0} has no signing key; give one with --sign-pubkey FILE, or pass --no-verify to trust it without signatures")]
    NoKey(String),
    #[error("a remote named {0} already exists; change it with `appbox remote-modify` or remove it with `appbox remote-delete`")]
    Exists(String),
    #[error(
        "there is no remote named {0}; `appbox remote-ls` lists them, `appbox remote-add` adds one"
    )]
    NotFound(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remote {
    pub url: String,
    /// Trusted ed25519 public keys, base64.
    #[serde(default)]
    pub keys: Vec<String>,
    /// False only when the remote was added with --no-verify.
    #[serde(default = "yes")]
    pub verify: bool,
    #[serde(default = "yes")]
    pub enabled: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Remotes {
    #[serde(default)]
    pub remotes: BTreeMap<String, Remote>,
}

/// Where a remote's repository is served from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A static OSTree repository over http(s) or file.
    Ostree(String),
    /// An OCI registry: `oci://HOST[:PORT]/PREFIX` (TLS), or `oci+http://`
    /// for a plain-HTTP registry such as one on loopback. App `ID` is the
    /// image `HOST[:PORT]/PREFIX/id-in-lowercase:stable`.
    Oci { prefix: String, insecure: bool },
}

pub fn check_name(name: &str) -> Result<(), RemoteError> {
    let bad = |problem| RemoteError::BadName {
        name: name.to_owned(),
        problem,
    };
    if name.is_empty() || name.len() > 64 {
        return Err(bad("it must have 1 to 64 characters"));
    }
    if name.starts_with(['-', '.']) {
        return Err(bad("it must not start with '-' or '.'"));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(bad("use only letters, digits, '-', '_' and '.'"));
    }
    Ok(())
}

impl Remote {
    pub fn new(url: &str, keys: &[PublicKey], verify: bool) -> Self {
        Remote {
            url: url.to_owned(),
            keys: keys.iter().map(PublicKey::to_base64).collect(),
            verify,
            enabled: true,
        }
    }

    /// Checks the remote and returns its location and trusted keys.
    pub fn check(&self, name: &str) -> Result<(Location, Vec<PublicKey>), RemoteError> {
        check_name(name)?;
        let location = parse_url(name, &self.url)?;
        let keys = self
            .keys
            .iter()
            .enumerate()
            .map(|(index, key)| {
                PublicKey::from_base64(key).map_err(|e| RemoteError::BadKey {
                    name: name.to_owned(),
                    index,
                    problem: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.verify && keys.is_empty() {
            return Err(RemoteError::NoKey(name.to_owned()));
        }
        Ok((location, keys))
    }
}

pub fn parse_url(name: &str, url: &str) -> Result<Location, RemoteError> {
    let bad = |problem: &str| RemoteError::BadUrl {
        name: name.to_owned(),
        url: url.to_owned(),
        problem: problem.to_owned(),
    };
    check_line(url).map_err(|e| bad(&e.to_string()))?;
    if url.chars().any(char::is_whitespace) {
        return Err(bad("it contains whitespace"));
    }
    for (scheme, insecure) in [("oci://", false), ("oci+http://", true)] {
        let Some(rest) = url.strip_prefix(scheme) else {
            continue;
        };
        let (host, image) = rest
            .split_once('/')
            .ok_or_else(|| bad("write it as oci://HOST[:PORT]/PREFIX"))?;
        if host.is_empty() || image.is_empty() || image.contains("..") {
            return Err(bad("write it as oci://HOST[:PORT]/PREFIX"));
        }
        if image.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad("registry paths are lowercase"));
        }
        return Ok(Location::Oci {
            prefix: rest.trim_end_matches('/').to_owned(),
            insecure,
        });
    }
    let rest = ["http://", "https://", "file:///"]
        .iter()
        .find_map(|scheme| url.strip_prefix(scheme))
        .ok_or_else(|| {
            bad("it must start with http://, https://, file:///, oci:// or oci+http://")
        })?;
    if rest.is_empty() && !url.starts_with("file:") {
        return Err(bad("it has no host"));
    }
    Ok(Location::Ostree(url.trim_end_matches('/').to_owned()))
}

impl Remotes {
    /// The remotes file; a missing file means no remotes.
    pub fn load(path: &Path) -> Result<Self, RemoteError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Remotes::default()),
            Err(source) => {
                return Err(RemoteError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        toml::from_str(&text).map_err(|e| RemoteError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim_end().replace('\n', "\n  "),
        })
    }

    /// Writes the file atomically: a crash leaves the old file or the new one.
    pub fn save(&self, path: &Path) -> Result<(), RemoteError> {
        let fail = |source| RemoteError::Write {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(fail)?;
        }
        let text = toml::to_string(self).unwrap_or_default();
        super::write_atomically(path, text.as_bytes()).map_err(fail)
    }

    pub fn get(&self, name: &str) -> Result<&Remote, RemoteError> {
        self.remotes
            .get(name)
            .ok_or_else(|| RemoteError::NotFound(name.to_owned()))
    }

    pub fn add(&mut self, name: &str, remote: Remote) -> Result<(), RemoteError> {
        remote.check(name)?;
        if self.remotes.contains_key(name) {
            return Err(RemoteError::Exists(name.to_owned()));
        }
        self.remotes.insert(name.to_owned(), remote);
        Ok(())
    }

    pub fn modify(
        &mut self,
        name: &str,
        change: impl FnOnce(&mut Remote),
    ) -> Result<(), RemoteError> {
        let remote = self
            .remotes
            .get_mut(name)
            .ok_or_else(|| RemoteError::NotFound(name.to_owned()))?;
        let mut changed = remote.clone();
        change(&mut changed);
        changed.check(name)?;
        *remote = changed;
        Ok(())
    }

    pub fn delete(&mut self, name: &str) -> Result<Remote, RemoteError> {
        self.remotes
            .remove(name)
            .ok_or_else(|| RemoteError::NotFound(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sign::SecretKey;

    fn key() -> PublicKey {
        SecretKey::generate().public()
    }

    #[test]
    fn names_are_checked() {
        for good in ["appbox", "my-remote_2", "a.b"] {
            check_name(good).unwrap();
        }
        for bad in ["", "-x", ".hidden", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn urls_are_checked() {
        assert_eq!(
            parse_url("r", "http://127.0.0.1:8080/repo/").unwrap(),
            Location::Ostree("http://127.0.0.1:8080/repo".into())
        );
        assert_eq!(
            parse_url("r", "oci://localhost:5000/apps/hello").unwrap(),
            Location::Oci {
                prefix: "localhost:5000/apps/hello".into(),
                insecure: false
            }
        );
        assert_eq!(
            parse_url("r", "oci+http://127.0.0.1:5000/apps/").unwrap(),
            Location::Oci {
                prefix: "127.0.0.1:5000/apps".into(),
                insecure: true
            }
        );
        for bad in [
            "ftp://x/y",
            "http://",
            "http://a b",
            "oci://host",
            "http://x/\u{1b}[2J",
            "--upload-pack=x",
        ] {
            assert!(parse_url("r", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_remote_without_keys_needs_no_verify() {
        let mut remotes = Remotes::default();
        let err = remotes
            .add("r", Remote::new("http://x/repo", &[], true))
            .unwrap_err();
        assert!(matches!(err, RemoteError::NoKey(_)), "{err}");
        assert!(err.to_string().contains("--no-verify"));
        remotes
            .add("r", Remote::new("http://x/repo", &[], false))
            .unwrap();
        remotes
            .add("s", Remote::new("http://y/repo", &[key()], true))
            .unwrap();
        assert!(matches!(
            remotes.add("s", Remote::new("http://y/repo", &[key()], true)),
            Err(RemoteError::Exists(_))
        ));
        // Turning verification on without a key is refused and changes nothing.
        assert!(remotes.modify("r", |r| r.verify = true).is_err());
        assert!(!remotes.get("r").unwrap().verify);
    }

    #[test]
    fn save_and_load_round_trip() {
        let dir = std::env::temp_dir().join(format!("appbox-remotes-{}", std::process::id()));
        let path = dir.join("remotes.toml");
        let mut remotes = Remotes::default();
        remotes
            .add("r", Remote::new("http://x/repo", &[key()], true))
            .unwrap();
        remotes.save(&path).unwrap();
        assert_eq!(Remotes::load(&path).unwrap(), remotes);
        std::fs::write(&path, "[remotes.r]\nurl = 1\n").unwrap();
        let err = Remotes::load(&path).unwrap_err();
        assert!(err.to_string().contains("remotes.toml"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(Remotes::load(&path).unwrap(), Remotes::default());
    }
}
