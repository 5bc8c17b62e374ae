//! The lists of an installed app's permission page, as Flatseal shows them.
//!
//! Each list-valued permission (other locations, persistent directories,
//! session-bus names, environment variables) lists the entries in force:
//! the app's own with the user's overrides applied, each marked as the
//! app's or the user's, and the user's own blocks (`--nofilesystem=PATH`,
//! `--no-talk-name=NAME`, `--unset-env=NAME`). Adding and removing entries
//! gives the new list of overrides, kept minimal.
//!
//! The portal's grants, the files the app was given and its answers about
//! devices, are listed here too, for the page to offer Revoke on each.

use appbox::appid::AppId;
use appbox::consent::{Answers, Choice, DEVICES, DEVICE_TABLE};
use appbox::documents::{DocId, Documents};
use appbox::overrides::normalize;
use appbox::permissions::{Change, FsAccess, FsLocation, PermissionError, Permissions, RelPath};

use super::devices::device_words;
use super::toggles::{effective, parse_all};

/// A list of the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum List {
    /// `--filesystem=`, except the home folder and all files, which are switches.
    Files,
    /// `--persist=`: directories under home kept in the app's own data.
    Persistent,
    /// `--talk-name=`
    Talk,
    /// `--own-name=`
    Own,
    /// `--see-name=`
    See,
    /// `--env=`
    Env,
}

/// The lists, in the order they are shown.
pub const LISTS: &[List] = &[
    List::Files,
    List::Persistent,
    List::Talk,
    List::Own,
    List::See,
    List::Env,
];

impl List {
    pub fn title(self) -> &'static str {
        match self {
            List::Files => "Other files",
            List::Persistent => "Folders kept by the app",
            List::Talk => "Session bus: may talk to",
            List::Own => "Session bus: may own",
            List::See => "Session bus: may see",
            List::Env => "Environment variables",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            List::Files => "Folders and files of your computer the app may use",
            List::Persistent => "Folders under your home folder that the app keeps in its own data",
            List::Talk => "Services the app may call",
            List::Own => "Names the app may offer services under",
            List::See => "Names the app may see, without calling them",
            List::Env => "Variables set when the app starts",
        }
    }

    /// The add row's title, with an example of what to type.
    pub fn add_title(self) -> &'static str {
        match self {
            List::Files => "Add a location, such as ~/Music:ro or /srv/media",
            List::Persistent => "Add a folder, such as .mozilla",
            List::Talk => "Add a service, such as org.freedesktop.Notifications",
            List::Own => "Add a name to own, such as org.example.App.Extra",
            List::See => "Add a name to see, such as org.example.Peer",
            List::Env => "Add a variable, such as NAME=value",
        }
    }

    /// A name without spaces, for the page's widget names.
    pub fn id(self) -> &'static str {
        match self {
            List::Files => "files",
            List::Persistent => "persistent",
            List::Talk => "talk",
            List::Own => "own",
            List::See => "see",
            List::Env => "env",
        }
    }

    /// The finish-arg key that what the user types is the value of.
    fn key(self) -> &'static str {
        match self {
            List::Files => "--filesystem=",
            List::Persistent => "--persist=",
            List::Talk => "--talk-name=",
            List::Own => "--own-name=",
            List::See => "--see-name=",
            List::Env => "--env=",
        }
    }
}

/// What an entry is about: the changes with the same key grant or block the
/// same entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Key {
    Location(FsLocation),
    Persist(RelPath),
    Talk(String),
    Own(String),
    See(String),
    Env(String),
}

impl Key {
    pub fn list(&self) -> List {
        match self {
            Key::Location(_) => List::Files,
            Key::Persist(_) => List::Persistent,
            Key::Talk(_) => List::Talk,
            Key::Own(_) => List::Own,
            Key::See(_) => List::See,
            Key::Env(_) => List::Env,
        }
    }

    /// The key of `change`, if it is one of the lists'.
    fn of(change: &Change) -> Option<Key> {
        Some(match change {
            Change::Filesystem(location, _) | Change::NoFilesystem(location) => {
                Key::Location(location.clone())
            }
            Change::Persist(path) => Key::Persist(path.clone()),
            Change::TalkName(name, _) => Key::Talk(name.clone()),
            Change::OwnName(name, _) => Key::Own(name.clone()),
            Change::SeeName(name, _) => Key::See(name.clone()),
            Change::Env(name, _) | Change::UnsetEnv(name) => Key::Env(name.clone()),
            _ => return None,
        })
    }

    /// What the key holds in `permissions`; `None` when it is not in force.
    fn held(&self, permissions: &Permissions) -> Option<Held> {
        match self {
            Key::Location(location) => permissions
                .filesystems
                .get(location)
                .map(|access| Held::Access(*access)),
            Key::Persist(path) => permissions.persist.contains(path).then_some(Held::Granted),
            Key::Talk(name) => permissions
                .talk_names
                .contains(name)
                .then_some(Held::Granted),
            Key::Own(name) => permissions
                .own_names
                .contains(name)
                .then_some(Held::Granted),
            Key::See(name) => permissions
                .see_names
                .contains(name)
                .then_some(Held::Granted),
            Key::Env(name) => permissions.env.get(name).cloned().map(Held::Value),
        }
    }

    /// The changes that take `self` from `now` to `wanted`.
    fn changes(&self, now: Option<&Held>, wanted: Option<&Held>) -> Result<Vec<Change>, ListError> {
        Ok(match (self, wanted) {
            (Key::Location(location), None) => vec![Change::NoFilesystem(location.clone())],
            (Key::Location(location), Some(Held::Access(access))) => {
                let grant = Change::Filesystem(location.clone(), *access);
                // Grants only widen: a narrower one needs the wider one gone.
                if matches!(now, Some(Held::Access(held)) if held > access) {
                    vec![Change::NoFilesystem(location.clone()), grant]
                } else {
                    vec![grant]
                }
            }
            (Key::Persist(path), None) if now.is_some() => {
                return Err(ListError::Permanent(path.as_str().to_owned()))
            }
            (Key::Persist(_), None) => Vec::new(),
            (Key::Persist(path), Some(_)) => vec![Change::Persist(path.clone())],
            (Key::Talk(name), wanted) => vec![Change::TalkName(name.clone(), wanted.is_some())],
            (Key::Own(name), wanted) => vec![Change::OwnName(name.clone(), wanted.is_some())],
            (Key::See(name), wanted) => vec![Change::SeeName(name.clone(), wanted.is_some())],
            (Key::Env(name), None) => vec![Change::UnsetEnv(name.clone())],
            (Key::Env(name), Some(Held::Value(value))) => {
                vec![Change::Env(name.clone(), value.clone())]
            }
            // What a key holds is always of its own kind: no such grant.
            (Key::Location(_) | Key::Env(_), Some(_)) => Vec::new(),
        })
    }

    /// Whether the key is a switch of "Your choices", not a list entry.
    fn is_switch(&self) -> bool {
        matches!(self, Key::Location(FsLocation::Home | FsLocation::Host))
    }
}

/// What a key holds when it is in force.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Held {
    Access(FsAccess),
    Granted,
    Value(String),
}

impl Held {
    /// What `change` asks for its key; `None` for a block.
    fn wanted(change: &Change) -> Option<Held> {
        match change {
            Change::Filesystem(_, access) => Some(Held::Access(*access)),
            Change::Env(_, value) => Some(Held::Value(value.clone())),
            Change::TalkName(_, granted)
            | Change::OwnName(_, granted)
            | Change::SeeName(_, granted) => granted.then_some(Held::Granted),
            Change::Persist(_) => Some(Held::Granted),
            _ => None,
        }
    }
}

/// Where an entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The app's own permissions, untouched.
    App,
    /// The user's overrides.
    Yours,
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Source::App => "From the app",
            Source::Yours => "Yours",
        }
    }
}

/// One row of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Key,
    /// The location, directory, name, or `NAME=value`.
    pub title: String,
    /// How it applies: the access to a location, or that it is blocked.
    pub detail: &'static str,
    pub source: Source,
    /// Whether the entry can go: an app's persistent directory has no
    /// negation in the permission vocabulary.
    pub removable: bool,
}

impl Entry {
    /// The row's subtitle: how it applies, and where it comes from.
    pub fn subtitle(&self) -> String {
        if self.detail.is_empty() {
            self.source.label().to_owned()
        } else {
            format!("{} · {}", self.detail, self.source.label())
        }
    }
}

/// Why an entry was not added or removed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    #[error("Type something to add first")]
    Empty,
    #[error(transparent)]
    Bad(#[from] PermissionError),
    #[error("{0} does not belong in this list; add it to its own")]
    OtherList(String),
    #[error("The home folder and all files are switches under Your choices")]
    Switch,
    #[error("~/{0} stays: a folder the app keeps cannot be taken away, only reset with all your choices")]
    Permanent(String),
}

/// The keys of `list` in force in `permissions`, sorted.
fn keys_in(permissions: &Permissions, list: List) -> Vec<Key> {
    match list {
        List::Files => permissions
            .filesystems
            .keys()
            .map(|location| Key::Location(location.clone()))
            .filter(|key| !key.is_switch())
            .collect(),
        List::Persistent => permissions
            .persist
            .iter()
            .cloned()
            .map(Key::Persist)
            .collect(),
        List::Talk => permissions
            .talk_names
            .iter()
            .cloned()
            .map(Key::Talk)
            .collect(),
        List::Own => permissions
            .own_names
            .iter()
            .cloned()
            .map(Key::Own)
            .collect(),
        List::See => permissions
            .see_names
            .iter()
            .cloned()
            .map(Key::See)
            .collect(),
        List::Env => permissions.env.keys().cloned().map(Key::Env).collect(),
    }
}

fn access_text(access: FsAccess) -> &'static str {
    match access {
        FsAccess::ReadOnly => "Read-only",
        FsAccess::ReadWrite => "Read and write",
        FsAccess::Create => "Read and write, created if missing",
    }
}

/// How an entry is named: as the user would type it, without its access.
fn title(key: &Key, held: Option<&Held>) -> String {
    match (key, held) {
        (Key::Location(location), _) => location.to_string(),
        (Key::Persist(path), _) => format!("~/{}", path.as_str()),
        (Key::Talk(name) | Key::Own(name) | Key::See(name), _) => name.clone(),
        (Key::Env(name), Some(Held::Value(value))) => format!("{name}={value}"),
        (Key::Env(name), _) => name.clone(),
    }
}

/// The entries of `list` for an app with `app_args`, under `overrides`: the
/// app's in force, then the user's, then the user's blocks.
pub fn entries(app_args: &[String], overrides: &[Change], list: List) -> Vec<Entry> {
    let app = parse_all(app_args);
    let own = Permissions::from_changes(&app);
    let now = effective(&app, overrides);
    let mut entries: Vec<Entry> = keys_in(&now, list)
        .into_iter()
        .map(|key| {
            let held = key.held(&now);
            let source = if key.held(&own) == held {
                Source::App
            } else {
                Source::Yours
            };
            let detail = match &held {
                Some(Held::Access(access)) => access_text(*access),
                _ => "",
            };
            Entry {
                title: title(&key, held.as_ref()),
                detail,
                source,
                removable: source == Source::Yours || !matches!(key, Key::Persist(_)),
                key,
            }
        })
        .collect();
    // The app's first: stable, so each part stays sorted.
    entries.sort_by_key(|entry| entry.source == Source::Yours);
    for change in overrides {
        let Some(key) = Key::of(change) else {
            continue;
        };
        let blocked = Held::wanted(change).is_none();
        let shown = key.list() == list
            && !key.is_switch()
            && key.held(&now).is_none()
            && !entries.iter().any(|entry| entry.key == key);
        if blocked && shown {
            entries.push(Entry {
                title: title(&key, None),
                detail: match list {
                    List::Files => "No access",
                    List::Env => "Unset",
                    _ => "Not allowed",
                },
                source: Source::Yours,
                removable: true,
                key,
            });
        }
    }
    entries
}

/// The overrides with `key` taken to `wanted`: the user's earlier changes
/// to it are dropped, and new ones are kept only if they change what is in
/// force.
fn set(
    app: &[Change],
    overrides: &[Change],
    key: &Key,
    wanted: Option<&Held>,
) -> Result<Vec<Change>, ListError> {
    let mut kept: Vec<Change> = overrides
        .iter()
        .filter(|change| Key::of(change).as_ref() != Some(key))
        .cloned()
        .collect();
    let before = effective(app, &kept);
    let changes = key.changes(key.held(&before).as_ref(), wanted)?;
    let mut changed = kept.clone();
    changed.extend(changes);
    if effective(app, &changed) != before {
        kept = changed;
    }
    Ok(normalize(kept))
}

/// The overrides after adding what the user typed to `list`: the list's
/// value (`~/Music:ro`), or a whole finish-arg of the list
/// (`--unset-env=NAME`, `--nofilesystem=/srv`).
pub fn add(
    app_args: &[String],
    overrides: &[Change],
    list: List,
    typed: &str,
) -> Result<Vec<Change>, ListError> {
    let typed = typed.trim();
    if typed.is_empty() {
        return Err(ListError::Empty);
    }
    let arg = if typed.starts_with("--") {
        typed.to_owned()
    } else {
        format!("{}{typed}", list.key())
    };
    let change = Change::parse(&arg)?;
    let key = Key::of(&change)
        .filter(|key| key.list() == list)
        .ok_or_else(|| ListError::OtherList(change.to_string()))?;
    if key.is_switch() {
        return Err(ListError::Switch);
    }
    set(
        &parse_all(app_args),
        overrides,
        &key,
        Held::wanted(&change).as_ref(),
    )
}

/// The overrides after removing the entry of `key`: one of the user's own
/// goes from the overrides, bringing back the app's if it had one; one of
/// the app's is blocked.
pub fn remove(
    app_args: &[String],
    overrides: &[Change],
    key: &Key,
) -> Result<Vec<Change>, ListError> {
    let entry = entries(app_args, overrides, key.list())
        .into_iter()
        .find(|entry| entry.key == *key);
    match entry {
        Some(entry) if entry.source == Source::App => {
            set(&parse_all(app_args), overrides, key, None)
        }
        Some(_) => Ok(normalize(
            overrides
                .iter()
                .filter(|change| Key::of(change).as_ref() != Some(key))
                .cloned()
                .collect(),
        )),
        // Gone already, perhaps changed elsewhere since the page was drawn.
        None => Ok(normalize(overrides.to_vec())),
    }
}

/// A file the portal's chooser gave the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRow {
    pub id: DocId,
    /// The host file, as the user chose it.
    pub path: String,
    pub access: &'static str,
}

/// The files `app` was given, by path.
pub fn documents(documents: &Documents, app: &AppId) -> Vec<DocumentRow> {
    let mut rows: Vec<DocumentRow> = documents
        .for_app(app)
        .map(|(id, document, grant)| DocumentRow {
            id: id.clone(),
            path: document.path.to_string_lossy().into_owned(),
            access: if grant.writable {
                "Read and write"
            } else {
                "Read-only"
            },
        })
        .collect();
    rows.sort_by(|a, b| a.path.cmp(&b.path));
    rows
}

/// A device the user answered about when the app asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    /// The entry of [`DEVICE_TABLE`].
    pub id: &'static str,
    pub name: &'static str,
    pub answer: &'static str,
}

/// The stored answers about `app`'s devices; the portal asks about the others.
pub fn devices(answers: &Answers, app: &AppId) -> Vec<DeviceRow> {
    DEVICES
        .iter()
        .filter_map(|id| {
            let answer = match answers.get(DEVICE_TABLE, id, app) {
                Choice::Allow => "Allowed",
                Choice::Deny => "Denied",
                Choice::Ask => return None,
            };
            Some(DeviceRow {
                id,
                name: device_name(id),
                answer,
            })
        })
        .collect()
}

fn device_name(id: &str) -> &'static str {
    device_words(id).map_or("Other device", |words| words.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn changes(list: &[&str]) -> Vec<Change> {
        list.iter().map(|a| Change::parse(a).unwrap()).collect()
    }

    fn strings(list: &[Change]) -> Vec<String> {
        list.iter().map(Change::to_string).collect()
    }

    /// (title, subtitle, removable) of each entry.
    fn shown(app: &[String], overrides: &[Change], list: List) -> Vec<(String, String, bool)> {
        entries(app, overrides, list)
            .into_iter()
            .map(|e| (e.title.clone(), e.subtitle(), e.removable))
            .collect()
    }

    fn row(title: &str, subtitle: &str, removable: bool) -> (String, String, bool) {
        (title.to_owned(), subtitle.to_owned(), removable)
    }

    fn key_of(app: &[String], overrides: &[Change], list: List, title: &str) -> Key {
        entries(app, overrides, list)
            .into_iter()
            .find(|e| e.title == title)
            .unwrap_or_else(|| panic!("no entry {title}"))
            .key
    }

    #[test]
    fn files_list_other_locations_with_access_and_source() {
        let app = args(&[
            "--filesystem=home",
            "--filesystem=~/Music:ro",
            "--filesystem=/srv/media:create",
            "--filesystem=xdg-download",
        ]);
        let mine = changes(&["--filesystem=~/Music", "--filesystem=host-os:ro"]);
        assert_eq!(
            shown(&app, &mine, List::Files),
            [
                row("xdg-download", "Read and write · From the app", true),
                row(
                    "/srv/media",
                    "Read and write, created if missing · From the app",
                    true
                ),
                row("host-os", "Read-only · Yours", true),
                row("~/Music", "Read and write · Yours", true),
            ]
        );
    }

    #[test]
    fn removing_an_apps_location_blocks_it_and_removing_the_block_restores_it() {
        let app = args(&["--filesystem=~/Music:ro", "--filesystem=/srv"]);
        let key = key_of(&app, &[], List::Files, "~/Music");
        let removed = remove(&app, &[], &key).unwrap();
        assert_eq!(strings(&removed), ["--nofilesystem=~/Music"]);
        assert_eq!(
            shown(&app, &removed, List::Files),
            [
                row("/srv", "Read and write · From the app", true),
                row("~/Music", "No access · Yours", true),
            ]
        );
        let restored = remove(&app, &removed, &key).unwrap();
        assert!(restored.is_empty(), "{restored:?}");
        assert_eq!(entries(&app, &restored, List::Files).len(), 2);
    }

    #[test]
    fn adding_a_location_stores_only_what_changes() {
        let app = args(&["--filesystem=/srv/media:ro"]);
        let added = add(&app, &[], List::Files, " ~/Games:create ").unwrap();
        assert_eq!(strings(&added), ["--filesystem=~/Games:create"]);
        // The app's own access already: nothing to store.
        assert!(add(&app, &[], List::Files, "/srv/media:ro")
            .unwrap()
            .is_empty());
        // Wider, then narrower again: the user's change replaces the last.
        let wider = add(&app, &added, List::Files, "/srv/media").unwrap();
        assert_eq!(
            strings(&wider),
            ["--filesystem=~/Games:create", "--filesystem=/srv/media"]
        );
        assert_eq!(
            shown(&app, &wider, List::Files)[1],
            row("/srv/media", "Read and write · Yours", true)
        );
        let back = add(&app, &wider, List::Files, "/srv/media:ro").unwrap();
        assert_eq!(back, added);
        // Narrowing one of the app's takes the wide grant away first.
        let app = args(&["--filesystem=/srv/media"]);
        let narrow = add(&app, &[], List::Files, "/srv/media:ro").unwrap();
        assert_eq!(
            strings(&narrow),
            ["--nofilesystem=/srv/media", "--filesystem=/srv/media:ro"]
        );
        assert_eq!(
            shown(&app, &narrow, List::Files),
            [row("/srv/media", "Read-only · Yours", true)]
        );
        // Removing the user's narrowing brings the app's back.
        let key = key_of(&app, &narrow, List::Files, "/srv/media");
        assert!(remove(&app, &narrow, &key).unwrap().is_empty());
    }

    #[test]
    fn a_typed_block_of_a_location_is_kept_when_it_takes_something_away() {
        let app = args(&["--filesystem=/srv/a", "--filesystem=/srv/b:ro"]);
        let blocked = add(&app, &[], List::Files, "--nofilesystem=/srv").unwrap();
        assert_eq!(strings(&blocked), ["--nofilesystem=/srv"]);
        assert_eq!(
            shown(&app, &blocked, List::Files),
            [row("/srv", "No access · Yours", true)]
        );
        // Blocking what is not granted anywhere changes nothing.
        assert!(add(&app, &[], List::Files, "--nofilesystem=/opt")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn the_switches_locations_stay_out_of_the_files_list() {
        let app = args(&["--filesystem=home", "--filesystem=host"]);
        let mine = changes(&["--nofilesystem=home"]);
        assert!(entries(&app, &mine, List::Files).is_empty());
        assert_eq!(add(&app, &[], List::Files, "home"), Err(ListError::Switch));
        assert_eq!(
            add(&app, &[], List::Files, "--nofilesystem=host"),
            Err(ListError::Switch)
        );
    }

    #[test]
    fn bus_names_are_granted_and_blocked_per_list() {
        let app = args(&[
            "--talk-name=org.freedesktop.Notifications",
            "--own-name=org.example.App.*",
            "--see-name=org.example.Peer",
        ]);
        for (list, name) in [
            (List::Talk, "org.freedesktop.Notifications"),
            (List::Own, "org.example.App.*"),
            (List::See, "org.example.Peer"),
        ] {
            assert_eq!(shown(&app, &[], list), [row(name, "From the app", true)]);
            let key = key_of(&app, &[], list, name);
            let removed = remove(&app, &[], &key).unwrap();
            assert_eq!(removed.len(), 1);
            assert_eq!(
                shown(&app, &removed, list),
                [row(name, "Not allowed · Yours", true)]
            );
            assert!(remove(&app, &removed, &key).unwrap().is_empty(), "{list:?}");

            let added = add(&app, &[], list, "org.example.Extra").unwrap();
            assert_eq!(
                shown(&app, &added, list),
                [
                    row(name, "From the app", true),
                    row("org.example.Extra", "Yours", true)
                ]
            );
            let extra = key_of(&app, &added, list, "org.example.Extra");
            assert!(remove(&app, &added, &extra).unwrap().is_empty());
        }
        let talk = add(&app, &[], List::Talk, "org.example.Extra").unwrap();
        assert_eq!(strings(&talk), ["--talk-name=org.example.Extra"]);
        // Re-adding what the app has stores nothing; after a block, it
        // drops the block.
        assert!(add(&app, &[], List::Talk, "org.freedesktop.Notifications")
            .unwrap()
            .is_empty());
        let blocked = changes(&["--no-talk-name=org.freedesktop.Notifications"]);
        assert!(
            add(&app, &blocked, List::Talk, "org.freedesktop.Notifications")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn persistent_directories_of_the_app_cannot_be_removed() {
        let app = args(&["--persist=.mozilla"]);
        assert_eq!(
            shown(&app, &[], List::Persistent),
            [row("~/.mozilla", "From the app", false)]
        );
        let key = key_of(&app, &[], List::Persistent, "~/.mozilla");
        assert_eq!(
            remove(&app, &[], &key),
            Err(ListError::Permanent(".mozilla".to_owned()))
        );
        let added = add(&app, &[], List::Persistent, ".cache/thing").unwrap();
        assert_eq!(strings(&added), ["--persist=.cache/thing"]);
        assert_eq!(
            shown(&app, &added, List::Persistent)[1],
            row("~/.cache/thing", "Yours", true)
        );
        let key = key_of(&app, &added, List::Persistent, "~/.cache/thing");
        assert!(remove(&app, &added, &key).unwrap().is_empty());
        // The app's own, typed again: nothing to store.
        assert!(add(&app, &[], List::Persistent, ".mozilla")
            .unwrap()
            .is_empty());
    }

    #[test]
    fn variables_are_set_changed_and_unset() {
        let app = args(&["--env=GTK_THEME=Adwaita:dark", "--env=EMPTY="]);
        assert_eq!(
            shown(&app, &[], List::Env),
            [
                row("EMPTY=", "From the app", true),
                row("GTK_THEME=Adwaita:dark", "From the app", true),
            ]
        );
        let changed = add(&app, &[], List::Env, "GTK_THEME=HighContrast").unwrap();
        assert_eq!(strings(&changed), ["--env=GTK_THEME=HighContrast"]);
        assert_eq!(
            shown(&app, &changed, List::Env)[1],
            row("GTK_THEME=HighContrast", "Yours", true)
        );
        // Removing the user's value brings the app's back.
        let key = key_of(&app, &changed, List::Env, "GTK_THEME=HighContrast");
        assert!(remove(&app, &changed, &key).unwrap().is_empty());
        // Removing the app's unsets it, and shows it unset.
        let key = key_of(&app, &[], List::Env, "GTK_THEME=Adwaita:dark");
        let unset = remove(&app, &[], &key).unwrap();
        assert_eq!(strings(&unset), ["--unset-env=GTK_THEME"]);
        assert_eq!(
            shown(&app, &unset, List::Env)[1],
            row("GTK_THEME", "Unset · Yours", true)
        );
        // Typed as a whole finish-arg, an unset of a variable nobody sets
        // changes nothing.
        assert!(add(&app, &[], List::Env, "--unset-env=OTHER")
            .unwrap()
            .is_empty());
        let typed = add(&app, &[], List::Env, "--unset-env=EMPTY").unwrap();
        assert_eq!(strings(&typed), ["--unset-env=EMPTY"]);
    }

    #[test]
    fn adds_and_removes_round_trip_with_other_overrides_kept() {
        let app = args(&["--filesystem=/srv", "--talk-name=org.a.B", "--env=A=1"]);
        let others = changes(&["--unshare=network", "--nofilesystem=home"]);
        for (list, typed) in [
            (List::Files, "~/Music:ro"),
            (List::Persistent, ".x"),
            (List::Talk, "org.c.D"),
            (List::Own, "org.c.D"),
            (List::See, "org.c.D"),
            (List::Env, "B=2"),
        ] {
            let added = add(&app, &others, list, typed).unwrap();
            assert_eq!(added.len(), others.len() + 1, "{list:?}: {added:?}");
            assert_eq!(added[..others.len()], others[..], "{list:?}");
            let new = entries(&app, &added, list)
                .into_iter()
                .find(|e| e.source == Source::Yours)
                .unwrap();
            assert_eq!(remove(&app, &added, &new.key).unwrap(), others, "{list:?}");
        }
        // Each of the app's entries, removed and restored.
        for list in LISTS {
            for entry in entries(&app, &others, *list) {
                let removed = remove(&app, &others, &entry.key).unwrap();
                assert!(
                    !entries(&app, &removed, *list)
                        .iter()
                        .any(|e| e.key == entry.key && e.source == Source::App),
                    "{entry:?}"
                );
                assert_eq!(
                    remove(&app, &removed, &entry.key).unwrap(),
                    others,
                    "{entry:?}"
                );
            }
        }
    }

    #[test]
    fn bad_input_is_refused_with_the_reason() {
        let app = args(&[]);
        let refused = |list, typed: &str| add(&app, &[], list, typed).unwrap_err().to_string();
        assert_eq!(refused(List::Files, "  "), "Type something to add first");
        assert!(refused(List::Files, "Documents").contains("unknown value"));
        assert!(refused(List::Files, "/usr/lib").contains("reserved"));
        assert!(refused(List::Files, "~/../etc").contains("'..'"));
        assert!(refused(List::Files, "~/a\u{1b}[2J").contains("escape"));
        assert!(refused(List::Talk, "org").contains("bus name"));
        assert!(refused(List::Env, "1X=y").contains("env"));
        assert!(refused(List::Persistent, "..").contains("'..'"));
        assert!(refused(List::Files, "--talk-name=org.a.B").contains("does not belong"));
        assert!(refused(List::Talk, "--share=network").contains("does not belong"));
        assert!(refused(List::Env, "--sharre=x").contains("unknown permission"));
    }

    #[test]
    fn unparsable_app_args_are_left_out() {
        let app = args(&["--filesystem=/srv", "--talk-name=broken"]);
        assert_eq!(entries(&app, &[], List::Files).len(), 1);
        assert!(entries(&app, &[], List::Talk).is_empty());
    }

    #[test]
    fn grants_list_the_apps_documents_and_answers() {
        use std::path::Path;
        let a = AppId::parse("org.example.A").unwrap();
        let b = AppId::parse("org.example.B").unwrap();
        let mut docs = Documents::default();
        docs.grant(Path::new("/home/ada/z.txt"), &a, false).unwrap();
        let plan = docs
            .grant(Path::new("/home/ada/plan.txt"), &a, true)
            .unwrap();
        docs.grant(Path::new("/home/ada/other.txt"), &b, true)
            .unwrap();
        let rows = documents(&docs, &a);
        assert_eq!(
            rows.iter()
                .map(|r| (r.path.as_str(), r.access))
                .collect::<Vec<_>>(),
            [
                ("/home/ada/plan.txt", "Read and write"),
                ("/home/ada/z.txt", "Read-only")
            ]
        );
        assert_eq!(rows[0].id, plan);

        let mut answers = Answers::default();
        answers.set(DEVICE_TABLE, "kvm", &a, Choice::Allow);
        answers.set(DEVICE_TABLE, "camera", &a, Choice::Deny);
        answers.set(DEVICE_TABLE, "usb", &b, Choice::Allow);
        assert_eq!(
            devices(&answers, &a),
            [
                DeviceRow {
                    id: "kvm",
                    name: "Virtual machines (KVM)",
                    answer: "Allowed"
                },
                DeviceRow {
                    id: "camera",
                    name: "Camera",
                    answer: "Denied"
                },
            ]
        );
        assert!(devices(&Answers::default(), &a).is_empty());
    }
}
