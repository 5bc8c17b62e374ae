//! The document grants: host files the user handed to apps through the
//! portal's file chooser, kept in `$XDG_DATA_HOME/appbox/documents.json`.
//!
//! A document is one host path under a short id (`a1b2c3d4`), shared by every
//! app it was granted to, as in Flatpak's document store; each app holds its
//! own read or read-write grant. The portal adds grants, `appbox
//! permission-remove documents` takes them away, and every launch mounts the
//! app's grants at `/run/user/UID/doc/<id>/<name>`.
//!
//! Changes are locked and atomic ([`crate::jsonstore`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::appid::AppId;
use crate::jsonstore::{self, StoreError};
use crate::plan::DocumentMount;

#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} is not a document id: ids are 8 characters from 0-9 and a-f, as `appbox documents` shows them")]
    BadId(String),
    #[error("{0} must be an absolute path to a file, with a file name")]
    BadPath(PathBuf),
}

/// A document's id: 8 lowercase hex digits, safe as a path component.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DocId(String);

impl DocId {
    pub fn parse(id: &str) -> Result<DocId, DocumentError> {
        if id.len() == 8 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(DocId(id.to_owned()))
        } else {
            Err(DocumentError::BadId(crate::text::Escaped(id).to_string()))
        }
    }

    fn random() -> DocId {
        use rand_core::RngCore;
        DocId(format!("{:08x}", rand_core::OsRng.next_u32()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DocId {
    type Error = DocumentError;
    fn try_from(id: String) -> Result<Self, Self::Error> {
        DocId::parse(&id)
    }
}

impl From<DocId> for String {
    fn from(id: DocId) -> String {
        id.0
    }
}

impl std::fmt::Display for DocId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One app's grant on a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub writable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Document {
    /// The host file, absolute, as the user chose it.
    pub path: PathBuf,
    pub apps: BTreeMap<AppId, Grant>,
}

impl Document {
    /// The name the app sees: the host file's own.
    pub fn name(&self) -> &str {
        self.path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("document")
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Documents {
    pub documents: BTreeMap<DocId, Document>,
}

impl Documents {
    /// Grants `path` to `app`, reusing the path's id if it has one. A grant
    /// only widens: read-write stays read-write.
    pub fn grant(
        &mut self,
        path: &Path,
        app: &AppId,
        writable: bool,
    ) -> Result<DocId, DocumentError> {
        let usable = path.is_absolute()
            && path.file_name().and_then(|n| n.to_str()).is_some()
            && crate::hostfacts::clean_absolute(path);
        if !usable {
            return Err(DocumentError::BadPath(path.to_owned()));
        }
        let id = match self.documents.iter().find(|(_, doc)| doc.path == path) {
            Some((id, _)) => id.clone(),
            None => {
                let id = loop {
                    let id = DocId::random();
                    if !self.documents.contains_key(&id) {
                        break id;
                    }
                };
                self.documents.insert(
                    id.clone(),
                    Document {
                        path: path.to_owned(),
                        apps: BTreeMap::new(),
                    },
                );
                id
            }
        };
        if let Some(doc) = self.documents.get_mut(&id) {
            let grant = doc.apps.entry(app.clone()).or_insert(Grant { writable });
            grant.writable |= writable;
        }
        Ok(id)
    }

    /// Takes `id` away from `app`, or from every app; a document no app
    /// holds is forgotten. Whether anything was granted.
    pub fn revoke(&mut self, id: &DocId, app: Option<&AppId>) -> bool {
        let Some(doc) = self.documents.get_mut(id) else {
            return false;
        };
        let removed = match app {
            Some(app) => doc.apps.remove(app).is_some(),
            None => {
                let had = !doc.apps.is_empty();
                doc.apps.clear();
                had
            }
        };
        if doc.apps.is_empty() {
            self.documents.remove(id);
        }
        removed
    }

    /// What `app` holds, as the plan mounts it.
    pub fn mounts_for(&self, app: &AppId) -> Vec<DocumentMount> {
        self.for_app(app)
            .map(|(id, doc, grant)| DocumentMount {
                doc_id: id.to_string(),
                name: doc.name().to_owned(),
                host_path: doc.path.clone(),
                writable: grant.writable,
            })
            .collect()
    }

    /// The documents `app` holds, with its grant on each.
    pub fn for_app<'a>(
        &'a self,
        app: &'a AppId,
    ) -> impl Iterator<Item = (&'a DocId, &'a Document, Grant)> + 'a {
        self.documents
            .iter()
            .filter_map(move |(id, doc)| doc.apps.get(app).map(|grant| (id, doc, *grant)))
    }
}

/// The store on disk.
pub struct DocumentStore {
    path: PathBuf,
}

impl DocumentStore {
    /// The store under `data_home` (`$XDG_DATA_HOME`).
    pub fn new(data_home: &Path) -> DocumentStore {
        DocumentStore {
            path: data_home.join("appbox/documents.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The grants as they are now; none if the store does not exist yet.
    pub fn load(&self) -> Result<Documents, DocumentError> {
        Ok(jsonstore::load(&self.path)?)
    }

    /// Changes the grants under the store's lock and writes them back
    /// atomically; `change`'s result is returned once they are on disk.
    pub fn update<T>(
        &self,
        change: impl FnOnce(&mut Documents) -> Result<T, DocumentError>,
    ) -> Result<T, DocumentError> {
        jsonstore::update(&self.path, change)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str) -> AppId {
        AppId::parse(id).unwrap()
    }

    #[test]
    fn ids_are_eight_lowercase_hex_digits() {
        assert!(DocId::parse("0a1b2c3d").is_ok());
        for bad in [
            "",
            "0a1b2c3",
            "0a1b2c3d4",
            "0A1B2C3D",
            "../../x",
            "0a1b2c3/",
            "0a1b 2c3",
        ] {
            assert!(DocId::parse(bad).is_err(), "{bad:?}");
        }
        assert!(serde_json::from_str::<DocId>("\"../etc/x\"").is_err());
    }

    #[test]
    fn one_id_per_path_and_grants_per_app() {
        let mut docs = Documents::default();
        let a = app("org.example.A");
        let b = app("org.example.B");
        let path = Path::new("/home/ada/notes.txt");
        let id = docs.grant(path, &a, false).unwrap();
        assert_eq!(docs.grant(path, &b, true).unwrap(), id);
        assert_eq!(docs.grant(path, &a, true).unwrap(), id);
        // A later read-only grant does not narrow.
        docs.grant(path, &a, false).unwrap();
        let of_a: Vec<_> = docs.for_app(&a).collect();
        assert_eq!(of_a.len(), 1);
        assert!(of_a[0].2.writable);
        assert_eq!(of_a[0].1.name(), "notes.txt");
        let other = docs.grant(Path::new("/home/ada/b.txt"), &b, false).unwrap();
        assert_ne!(other, id);
        assert_eq!(docs.for_app(&a).count(), 1);
        assert_eq!(docs.for_app(&b).count(), 2);

        assert!(docs.revoke(&id, Some(&a)));
        assert!(!docs.revoke(&id, Some(&a)));
        assert_eq!(docs.for_app(&a).count(), 0);
        assert!(docs.documents.contains_key(&id), "B still holds it");
        assert!(docs.revoke(&id, None));
        assert!(!docs.documents.contains_key(&id));
    }

    #[test]
    fn paths_must_be_absolute_clean_files() {
        let mut docs = Documents::default();
        let a = app("org.example.A");
        for bad in ["notes.txt", "/", "/home/ada/../x", "/home/ada/x/.."] {
            assert!(docs.grant(Path::new(bad), &a, false).is_err(), "{bad}");
        }
        assert!(docs.documents.is_empty());
    }

    #[test]
    fn the_store_round_trips_and_refuses_damage() {
        let dir = std::env::temp_dir().join(format!("appbox-documents-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = DocumentStore::new(&dir);
        assert_eq!(store.load().unwrap(), Documents::default());
        let a = app("org.example.A");
        let id = store
            .update(|docs| docs.grant(Path::new("/srv/a.txt"), &a, true))
            .unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.documents[&id].path, Path::new("/srv/a.txt"));
        // A failed change writes nothing.
        let failed = store.update(|docs| {
            docs.revoke(&id, None);
            Err::<(), _>(DocumentError::BadId("x".into()))
        });
        assert!(failed.is_err());
        assert_eq!(store.load().unwrap(), loaded);

        std::fs::write(store.path(), b"{\"documents\": {\"../x\": {}}}").unwrap();
        let error = store.load().unwrap_err().to_string();
        assert!(error.contains("damaged"), "{error}");
        std::fs::write(store.path(), b"{\"documents\": {}, \"extra\": 1}").unwrap();
        assert!(store.load().is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
