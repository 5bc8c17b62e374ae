//! The catalog: what a remote offers, readable without pulling any app. It is
//! JSON carried in the repository's signed summary (key `appbox.catalog`), and
//! each commit carries its own entry (key `appbox.entry`) so the catalog can be
//! rebuilt from the refs alone.
//!
//! Everything in it comes from a remote, so parsing checks every text field the
//! same way metadata is checked; displaying still escapes (see `text::Escaped`).

use serde::{Deserialize, Serialize};

use crate::appid::AppId;
use crate::permissions::Change;
use crate::text::{check_line, check_text};

/// The summary metadata key of the catalog.
pub const SUMMARY_KEY: &str = "appbox.catalog";
/// The commit metadata key of one entry.
pub const COMMIT_KEY: &str = "appbox.entry";
/// Catalogs larger than this are refused before parsing.
pub const MAX_CATALOG_BYTES: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("the catalog is not valid JSON: {0}")]
    Syntax(String),
    #[error("the catalog is {0} bytes, more than the {MAX_CATALOG_BYTES} allowed")]
    TooLarge(usize),
    #[error("catalog entry {index}: field `{field}` {problem}")]
    Field {
        index: usize,
        field: &'static str,
        problem: String,
    },
    #[error("the catalog has version {0}; this appbox reads version 1 (update appbox)")]
    Version(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    App,
    Runtime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Icon {
    /// "image/svg+xml" or "image/png".
    pub mime: String,
    /// The icon file, base64.
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Entry {
    pub id: String,
    pub kind: EntryKind,
    pub name: String,
    pub summary: String,
    pub description: String,
    pub version: String,
    pub license: String,
    /// "host" or a runtime id.
    pub runtime: String,
    /// Flatpak finish-args, such as "--share=network".
    pub permissions: Vec<String>,
    pub icon: Option<Icon>,
    /// Bytes of the files the app installs.
    pub installed_size: u64,
    /// Filled in when the catalog is written: the ref and commit it describes,
    /// and the bytes of its objects in the repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published: Option<Published>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Published {
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub commit: String,
    pub download_size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    pub version: u32,
    pub entries: Vec<Entry>,
}

impl Catalog {
    pub fn new(mut entries: Vec<Entry>) -> Self {
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        Catalog {
            version: 1,
            entries,
        }
    }

    pub fn to_json(&self) -> String {
        // Serializing plain strings and numbers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses and checks a catalog that came from a remote.
    pub fn parse(json: &str) -> Result<Self, CatalogError> {
        if json.len() > MAX_CATALOG_BYTES {
            return Err(CatalogError::TooLarge(json.len()));
        }
        let catalog: Catalog =
            serde_json::from_str(json).map_err(|e| CatalogError::Syntax(e.to_string()))?;
        if catalog.version != 1 {
            return Err(CatalogError::Version(catalog.version));
        }
        for (index, entry) in catalog.entries.iter().enumerate() {
            entry.check(index)?;
        }
        Ok(catalog)
    }

    pub fn find(&self, id: &str) -> Option<&Entry> {
        self.entries.iter().find(|e| e.id == id)
    }
}

impl Entry {
    /// Parses one entry as stored in a commit.
    pub fn parse(json: &str) -> Result<Self, CatalogError> {
        let entry: Entry =
            serde_json::from_str(json).map_err(|e| CatalogError::Syntax(e.to_string()))?;
        entry.check(0)?;
        Ok(entry)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    fn check(&self, index: usize) -> Result<(), CatalogError> {
        let field = |field: &'static str, problem: String| CatalogError::Field {
            index,
            field,
            problem,
        };
        for (name, value) in [
            ("id", &self.id),
            ("name", &self.name),
            ("summary", &self.summary),
            ("version", &self.version),
            ("license", &self.license),
            ("runtime", &self.runtime),
        ] {
            check_line(value).map_err(|e| field(name, e.to_string()))?;
        }
        check_text(&self.description, true).map_err(|e| field("description", e.to_string()))?;
        AppId::parse(&self.id).map_err(|e| field("id", format!("is invalid: {e}")))?;
        if self.runtime != "host" {
            AppId::parse(&self.runtime)
                .map_err(|e| field("runtime", format!("is invalid: {e}")))?;
        }
        for permission in &self.permissions {
            Change::parse(permission).map_err(|e| field("permissions", e.to_string()))?;
        }
        if let Some(icon) = &self.icon {
            if !matches!(icon.mime.as_str(), "image/svg+xml" | "image/png") {
                return Err(field("icon", format!("has unknown type {:?}", icon.mime)));
            }
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(&icon.data)
                .map_err(|e| field("icon", format!("is not base64: {e}")))?;
        }
        if let Some(published) = &self.published {
            check_line(&published.ref_name).map_err(|e| field("ref", e.to_string()))?;
            if published.commit.len() != 64
                || !published.commit.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(field("commit", "is not a sha256 checksum".into()));
            }
        }
        Ok(())
    }
}

/// A valid, unpublished entry, for the store's tests.
#[cfg(test)]
pub(crate) fn sample_entry(id: &str, name: &str, summary: &str) -> Entry {
    Entry {
        id: id.into(),
        kind: EntryKind::App,
        name: name.into(),
        summary: summary.into(),
        description: "Line one.\nLine two.".into(),
        version: "1.0".into(),
        license: "MIT".into(),
        runtime: "host".into(),
        permissions: vec!["--share=network".into()],
        icon: Some(Icon {
            mime: "image/svg+xml".into(),
            data: "PHN2Zy8+".into(),
        }),
        installed_size: 10,
        published: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            published: Some(Published {
                ref_name: "app/org.example.App/x86_64/stable".into(),
                commit: "a".repeat(64),
                download_size: 5,
            }),
            ..sample_entry("org.example.App", "App", "Does things")
        }
    }

    #[test]
    fn round_trip_and_sorted() {
        let mut second = entry();
        second.id = "org.example.Aardvark".into();
        let catalog = Catalog::new(vec![entry(), second]);
        assert_eq!(catalog.entries[0].id, "org.example.Aardvark");
        let parsed = Catalog::parse(&catalog.to_json()).unwrap();
        assert_eq!(parsed, catalog);
        assert!(parsed.find("org.example.App").is_some());
    }

    #[test]
    fn hostile_text_is_refused_with_the_field() {
        let mut bad = entry();
        bad.name = "App\u{1b}[31m".into();
        let err = Catalog::parse(&Catalog::new(vec![bad]).to_json()).unwrap_err();
        assert!(err.to_string().contains("`name`"), "{err}");

        let mut bad = entry();
        bad.id = "../evil".into();
        let err = Catalog::parse(&Catalog::new(vec![bad]).to_json()).unwrap_err();
        assert!(err.to_string().contains("`id`"), "{err}");

        let mut bad = entry();
        bad.permissions = vec!["--filesystem=/etc/../root".into()];
        let err = Catalog::parse(&Catalog::new(vec![bad]).to_json()).unwrap_err();
        assert!(err.to_string().contains("`permissions`"), "{err}");

        let mut bad = entry();
        bad.published.as_mut().unwrap().commit = "xyz".into();
        let err = Catalog::parse(&Catalog::new(vec![bad]).to_json()).unwrap_err();
        assert!(err.to_string().contains("`commit`"), "{err}");
    }

    #[test]
    fn unknown_fields_versions_and_garbage_are_refused() {
        assert!(matches!(
            Catalog::parse(r#"{"version":2,"entries":[]}"#),
            Err(CatalogError::Version(2))
        ));
        assert!(Catalog::parse(r#"{"version":1,"entries":[],"extra":1}"#).is_err());
        assert!(Catalog::parse("\u{0}").is_err());
        assert!(matches!(
            Catalog::parse(&" ".repeat(MAX_CATALOG_BYTES + 1)),
            Err(CatalogError::TooLarge(_))
        ));
    }
}
