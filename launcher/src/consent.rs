//! The user's answers to the portal's questions, per app and per permission,
//! kept in `$XDG_DATA_HOME/appbox/permissions.json`.
//!
//! As in Flatpak's permission store, entries live in tables (`devices`),
//! under an id (`kvm`), per app: `allow` or `deny`. No entry means ask. The
//! portal reads and writes them; `appbox permission-set`, `permission-remove`
//! and `permission-reset` change them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::appid::AppId;
use crate::jsonstore::{self, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ConsentError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} is not a permission table; the tables are: {tables}", tables = TABLES.join(", "))]
    UnknownTable(String),
    #[error("{id} is not an entry of the {table} table; it has: {ids}")]
    UnknownId {
        table: String,
        id: String,
        ids: String,
    },
    #[error("{0} is not an answer: use allow, deny or ask")]
    BadChoice(String),
}

/// The tables and the ids each holds.
pub const TABLES: &[&str] = &["devices"];
/// The table of device answers, which holds [`DEVICES`].
pub const DEVICE_TABLE: &str = "devices";
pub const DEVICES: &[&str] = &["kvm", "camera", "input", "usb", "microphone"];

/// What the user decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Choice {
    Allow,
    Deny,
    /// No stored answer: the portal asks each time.
    Ask,
}

impl std::str::FromStr for Choice {
    type Err = ConsentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "allow" | "yes" => Ok(Choice::Allow),
            "deny" | "no" => Ok(Choice::Deny),
            "ask" => Ok(Choice::Ask),
            other => Err(ConsentError::BadChoice(
                crate::text::Escaped(other).to_string(),
            )),
        }
    }
}

impl std::fmt::Display for Choice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Choice::Allow => "allow",
            Choice::Deny => "deny",
            Choice::Ask => "ask",
        })
    }
}

/// Checks that `id` belongs to `table`.
pub fn check_entry(table: &str, id: &str) -> Result<(), ConsentError> {
    let ids = match table {
        "devices" => DEVICES,
        _ => {
            return Err(ConsentError::UnknownTable(
                crate::text::Escaped(table).to_string(),
            ))
        }
    };
    if ids.contains(&id) {
        Ok(())
    } else {
        Err(ConsentError::UnknownId {
            table: table.to_owned(),
            id: crate::text::Escaped(id).to_string(),
            ids: ids.join(", "),
        })
    }
}

/// table → id → app → answer. Only allow and deny are stored.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Answers {
    pub tables: BTreeMap<String, BTreeMap<String, BTreeMap<AppId, Choice>>>,
}

impl Answers {
    pub fn get(&self, table: &str, id: &str, app: &AppId) -> Choice {
        self.tables
            .get(table)
            .and_then(|ids| ids.get(id))
            .and_then(|apps| apps.get(app))
            .copied()
            .unwrap_or(Choice::Ask)
    }

    /// Stores `choice`; `Ask` removes the answer.
    pub fn set(&mut self, table: &str, id: &str, app: &AppId, choice: Choice) {
        if choice == Choice::Ask {
            self.remove(table, id, Some(app));
            return;
        }
        self.tables
            .entry(table.to_owned())
            .or_default()
            .entry(id.to_owned())
            .or_default()
            .insert(app.clone(), choice);
    }

    /// Removes the answers for `id` (of `app`, or of every app). Whether any was there.
    pub fn remove(&mut self, table: &str, id: &str, app: Option<&AppId>) -> bool {
        let Some(ids) = self.tables.get_mut(table) else {
            return false;
        };
        let Some(apps) = ids.get_mut(id) else {
            return false;
        };
        let removed = match app {
            Some(app) => apps.remove(app).is_some(),
            None => {
                let had = !apps.is_empty();
                apps.clear();
                had
            }
        };
        if apps.is_empty() {
            ids.remove(id);
        }
        if ids.is_empty() {
            self.tables.remove(table);
        }
        removed
    }

    /// Forgets every answer of `app`. How many there were.
    pub fn reset(&mut self, app: &AppId) -> usize {
        let mut removed = 0;
        for ids in self.tables.values_mut() {
            for apps in ids.values_mut() {
                removed += usize::from(apps.remove(app).is_some());
            }
            ids.retain(|_, apps| !apps.is_empty());
        }
        self.tables.retain(|_, ids| !ids.is_empty());
        removed
    }
}

/// The answers on disk.
pub struct ConsentStore {
    path: PathBuf,
}

impl ConsentStore {
    pub fn new(data_home: &Path) -> ConsentStore {
        ConsentStore {
            path: data_home.join("appbox/permissions.json"),
        }
    }

    pub fn load(&self) -> Result<Answers, ConsentError> {
        Ok(jsonstore::load(&self.path)?)
    }

    /// Changes the answers under a lock and writes them back atomically.
    pub fn update<T>(&self, change: impl FnOnce(&mut Answers) -> T) -> Result<T, ConsentError> {
        Ok(jsonstore::update(&self.path, |answers| {
            Ok::<_, StoreError>(change(answers))
        })?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str) -> AppId {
        AppId::parse(id).unwrap()
    }

    #[test]
    fn answers_are_per_app_and_ask_is_no_answer() {
        let mut answers = Answers::default();
        let a = app("org.example.A");
        let b = app("org.example.B");
        assert_eq!(answers.get("devices", "kvm", &a), Choice::Ask);
        answers.set("devices", "kvm", &a, Choice::Allow);
        answers.set("devices", "kvm", &b, Choice::Deny);
        answers.set("devices", "camera", &a, Choice::Deny);
        assert_eq!(answers.get("devices", "kvm", &a), Choice::Allow);
        assert_eq!(answers.get("devices", "kvm", &b), Choice::Deny);
        answers.set("devices", "kvm", &b, Choice::Ask);
        assert_eq!(answers.get("devices", "kvm", &b), Choice::Ask);
        assert!(answers.remove("devices", "camera", None));
        assert!(!answers.remove("devices", "camera", None));
        assert_eq!(answers.reset(&a), 1);
        assert_eq!(answers, Answers::default());
    }

    #[test]
    fn entries_and_choices_are_checked() {
        assert!(check_entry("devices", "kvm").is_ok());
        assert!(check_entry("devices", "../x").is_err());
        assert!(check_entry("documents", "kvm").is_err());
        assert_eq!("allow".parse::<Choice>().unwrap(), Choice::Allow);
        assert!("maybe".parse::<Choice>().is_err());
    }

    #[test]
    fn the_store_round_trips() {
        let dir = std::env::temp_dir().join(format!("appbox-consent-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = ConsentStore::new(&dir);
        let a = app("org.example.A");
        store
            .update(|answers| answers.set("devices", "kvm", &a, Choice::Allow))
            .unwrap();
        assert_eq!(
            store.load().unwrap().get("devices", "kvm", &a),
            Choice::Allow
        );
        std::fs::write(dir.join("appbox/permissions.json"), b"{\"tables\": 3}").unwrap();
        assert!(matches!(
            store.load(),
            Err(ConsentError::Store(StoreError::Damaged { .. }))
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
