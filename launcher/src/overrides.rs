//! The user's permission overrides, as `flatpak override` keeps them: changes
//! that every launch of an app applies on top of the app's own permissions
//! (and before the command line's).
//!
//! One file per app, `$XDG_CONFIG_HOME/appbox/overrides/ID.json`: a JSON array
//! of finish-args in the order they apply, such as
//! `["--share=network", "--nofilesystem=home"]`. Every entry is parsed again
//! with [`Change::parse`] when it is read; a file that does not parse is an
//! error naming the file and the line, never silently ignored. The list is
//! kept minimal: a change is dropped when a later one fully overrides it (a
//! later `--unshare=network` drops an earlier `--share=network`).
//!
//! Every change is a read-modify-write under the directory's lock
//! (`overrides/.lock`), written beside the file and renamed into place; files
//! are opened without following symlinks.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer};

use crate::appid::AppId;
use crate::permissions::{Change, FsAccess, FsLocation, Permissions};

/// Bigger than any real list of overrides: a file this size is damage.
const MAX_BYTES: u64 = 1 << 20;

const EXTENSION: &str = "json";

#[derive(Debug, thiserror::Error)]
pub enum OverrideError {
    #[error("cannot {what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "the permission overrides file {} is damaged: {problem}; fix it, or remove it with `appbox override --reset {id}`",
        path.display()
    )]
    Damaged {
        path: PathBuf,
        id: AppId,
        problem: String,
    },
}

fn io_error<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> OverrideError + 'a {
    move |source| OverrideError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// The overrides of every app, under `$XDG_CONFIG_HOME/appbox/overrides`.
#[derive(Debug, Clone)]
pub struct OverrideStore {
    dir: PathBuf,
}

impl OverrideStore {
    /// The store under `config_home` (`$XDG_CONFIG_HOME`, or `~/.config`).
    pub fn new(config_home: &Path) -> Self {
        OverrideStore {
            dir: config_home.join("appbox").join("overrides"),
        }
    }

    /// The file that holds `id`'s overrides.
    pub fn path(&self, id: &AppId) -> PathBuf {
        self.dir.join(format!("{id}.{EXTENSION}"))
    }

    /// `id`'s overrides in the order they apply; none when it has no file.
    pub fn load(&self, id: &AppId) -> Result<Vec<Change>, OverrideError> {
        let path = self.path(id);
        let file = match open_nofollow(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Err(damaged(&path, id, "it is a symlink".to_owned()))
            }
            Err(e) => return Err(io_error("read", &path)(e)),
        };
        let metadata = file.metadata().map_err(io_error("read", &path))?;
        if !metadata.is_file() {
            return Err(damaged(&path, id, "it is not a regular file".to_owned()));
        }
        let mut bytes = Vec::new();
        file.take(MAX_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io_error("read", &path))?;
        if bytes.len() as u64 > MAX_BYTES {
            return Err(damaged(
                &path,
                id,
                format!("it is larger than {MAX_BYTES} bytes"),
            ));
        }
        let args: Vec<Arg> =
            serde_json::from_slice(&bytes).map_err(|e| damaged(&path, id, e.to_string()))?;
        Ok(args.into_iter().map(|Arg(change)| change).collect())
    }

    /// Appends `changes` to `id`'s overrides and returns the new list,
    /// [normalized](normalize). A damaged file is left as it is.
    pub fn add(&self, id: &AppId, changes: &[Change]) -> Result<Vec<Change>, OverrideError> {
        let _lock = self.lock()?;
        let mut list = self.load(id)?;
        list.extend_from_slice(changes);
        self.write(id, normalize(list))
    }

    /// Replaces `id`'s overrides, damaged or not, with `changes` (normalized)
    /// and returns the new list; an empty list removes the file.
    pub fn set(&self, id: &AppId, changes: &[Change]) -> Result<Vec<Change>, OverrideError> {
        let _lock = self.lock()?;
        self.write(id, normalize(changes.to_vec()))
    }

    /// Removes all of `id`'s overrides, even from a damaged file.
    pub fn reset(&self, id: &AppId) -> Result<(), OverrideError> {
        self.set(id, &[]).map(drop)
    }

    /// The apps that have overrides, sorted.
    pub fn list_apps(&self) -> Result<Vec<AppId>, OverrideError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error("list", &self.dir)(e)),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_error("list", &self.dir))?;
            let name = entry.file_name();
            let Some(stem) = name
                .to_str()
                .and_then(|name| name.strip_suffix(&format!(".{EXTENSION}")))
            else {
                continue;
            };
            if let Ok(id) = AppId::parse(stem) {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Holds the store's lock until the file is dropped.
    fn lock(&self) -> Result<File, OverrideError> {
        std::fs::create_dir_all(&self.dir).map_err(io_error("create", &self.dir))?;
        let lock_path = self.dir.join(".lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&lock_path)
            .map_err(io_error("lock", &lock_path))?;
        // SAFETY: flock on a descriptor we own; it is released when `lock` closes.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io_error("lock", &lock_path)(io::Error::last_os_error()));
        }
        Ok(lock)
    }

    /// Writes `list` as `id`'s overrides, atomically; the caller holds the lock.
    fn write(&self, id: &AppId, list: Vec<Change>) -> Result<Vec<Change>, OverrideError> {
        let path = self.path(id);
        if list.is_empty() {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => {
                    return Err(io_error("remove", &path)(e))
                }
                _ => {}
            }
        } else {
            let args: Vec<String> = list.iter().map(Change::to_string).collect();
            let mut bytes = serde_json::to_vec_pretty(&args).expect("strings serialize");
            bytes.push(b'\n');
            crate::store::write_atomically(&path, &bytes).map_err(io_error("write", &path))?;
        }
        Ok(list)
    }
}

fn damaged(path: &Path, id: &AppId, problem: String) -> OverrideError {
    OverrideError::Damaged {
        path: path.to_owned(),
        id: id.clone(),
        problem,
    }
}

fn open_nofollow(path: &Path) -> io::Result<File> {
    File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(path)
}

/// One entry of the file, parsed while the JSON is read, so that an error
/// carries its line and column.
struct Arg(Change);

impl<'de> Deserialize<'de> for Arg {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Parsed in the visitor, where serde_json still knows the position.
        struct ArgVisitor;
        impl serde::de::Visitor<'_> for ArgVisitor {
            type Value = Arg;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a finish-arg such as \"--share=network\"")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Arg, E> {
                Change::parse(text).map(Arg).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(ArgVisitor)
    }
}

/// Keeps the order, but drops every change that a later one fully
/// overrides, whatever permissions the list is applied to: the result
/// applies exactly as the input does.
pub fn normalize(changes: Vec<Change>) -> Vec<Change> {
    let keep: Vec<bool> = (0..changes.len())
        .map(|i| {
            !changes[i + 1..]
                .iter()
                .any(|later| supersedes(later, &changes[i]))
        })
        .collect();
    changes
        .into_iter()
        .zip(keep)
        .filter_map(|(change, keep)| keep.then_some(change))
        .collect()
}

/// Whether applying `later` after `earlier` (with anything in between)
/// gives the same permissions as without `earlier`.
fn supersedes(later: &Change, earlier: &Change) -> bool {
    use Change::*;
    match (later, earlier) {
        (Share(a, _), Share(b, _)) => a == b,
        (Socket(a, _), Socket(b, _)) => a == b,
        (Device(a, _), Device(b, _)) => a == b,
        (TalkName(a, _), TalkName(b, _))
        | (OwnName(a, _), OwnName(b, _))
        | (SeeName(a, _), SeeName(b, _)) => a == b,
        (Env(a, _) | UnsetEnv(a), Env(b, _) | UnsetEnv(b)) => a == b,
        (Persist(a), Persist(b)) => a == b,
        // Grants of a location only widen: the wider one decides.
        (Filesystem(a, wide), Filesystem(b, narrow)) => a == b && narrow <= wide,
        // Revoking a location removes every grant within it; an earlier
        // revocation within it removed nothing this one does not.
        (NoFilesystem(revoked), Filesystem(b, _) | NoFilesystem(b)) => covers(revoked, b),
        _ => false,
    }
}

/// Whether revoking `revoked` removes a grant of `location`.
fn covers(revoked: &FsLocation, location: &FsLocation) -> bool {
    Permissions::from_changes(&[
        Change::Filesystem(location.clone(), FsAccess::ReadWrite),
        Change::NoFilesystem(revoked.clone()),
    ])
    .filesystems
    .is_empty()
}

/// Where a permission in force comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    /// The app's own permissions.
    App,
    /// The user's overrides.
    Override,
}

/// The permissions in force for an app: its own, with the user's overrides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    /// Every grant in force, as canonical finish-args, with where it comes from.
    pub granted: Vec<(String, Source)>,
    /// The app's own grants that the overrides took away or replaced.
    pub removed: Vec<String>,
}

impl Effective {
    pub fn new(app: &[Change], overrides: &[Change]) -> Self {
        let own = Permissions::from_changes(app).to_args();
        let all = Permissions::from_changes(app.iter().chain(overrides)).to_args();
        let granted = all
            .iter()
            .map(|arg| {
                let source = if own.contains(arg) {
                    Source::App
                } else {
                    Source::Override
                };
                (arg.clone(), source)
            })
            .collect();
        let removed = own.into_iter().filter(|arg| !all.contains(arg)).collect();
        Effective { granted, removed }
    }

    /// The grants in force, unmarked.
    pub fn args(&self) -> Vec<String> {
        self.granted.iter().map(|(arg, _)| arg.clone()).collect()
    }
}

/// One line for `appbox info`: each grant, those from the overrides marked,
/// then what the overrides removed.
pub fn describe(effective: &Effective) -> String {
    let mut text = if effective.granted.is_empty() {
        "none".to_owned()
    } else {
        effective
            .granted
            .iter()
            .map(|(arg, source)| match source {
                Source::App => arg.clone(),
                Source::Override => format!("{arg} (override)"),
            })
            .collect::<Vec<_>>()
            .join(" ")
    };
    if !effective.removed.is_empty() {
        text.push_str("; removed by overrides: ");
        text.push_str(&effective.removed.join(" "));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(args: &[&str]) -> Vec<Change> {
        args.iter().map(|a| Change::parse(a).unwrap()).collect()
    }

    fn strings(list: &[Change]) -> Vec<String> {
        list.iter().map(Change::to_string).collect()
    }

    fn id() -> AppId {
        AppId::parse("org.example.App").unwrap()
    }

    /// A scratch directory, removed when dropped.
    struct Scratch(PathBuf);

    impl Scratch {
        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn store() -> (Scratch, OverrideStore) {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("appbox-overrides-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let store = OverrideStore::new(&dir);
        (Scratch(dir), store)
    }

    #[test]
    fn no_file_means_no_overrides() {
        let (_dir, store) = store();
        assert_eq!(store.load(&id()).unwrap(), vec![]);
        assert_eq!(store.list_apps().unwrap(), vec![]);
        store.reset(&id()).unwrap();
    }

    #[test]
    fn added_overrides_are_kept_in_order_and_minimal() {
        let (dir, store) = store();
        store
            .add(&id(), &changes(&["--share=network", "--socket=x11"]))
            .unwrap();
        let list = store
            .add(&id(), &changes(&["--unshare=network", "--env=A=1"]))
            .unwrap();
        assert_eq!(
            strings(&list),
            ["--socket=x11", "--unshare=network", "--env=A=1"]
        );
        assert_eq!(store.load(&id()).unwrap(), list);
        let path = dir.path().join("appbox/overrides/org.example.App.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let stored: Vec<String> = serde_json::from_str(&text).unwrap();
        assert_eq!(stored, strings(&list));
        let other = AppId::parse("org.example.Other").unwrap();
        store.add(&other, &changes(&["--device=dri"])).unwrap();
        assert_eq!(store.list_apps().unwrap(), vec![id(), other.clone()]);
        store.reset(&id()).unwrap();
        assert!(!path.exists());
        assert_eq!(store.load(&id()).unwrap(), vec![]);
        assert_eq!(store.list_apps().unwrap(), vec![other]);
    }

    #[test]
    fn a_bad_entry_names_the_file_and_line() {
        let (_dir, store) = store();
        let path = store.path(&id());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "[\n  \"--share=network\",\n  \"--share=moon\"\n]\n").unwrap();
        let error = store.load(&id()).unwrap_err().to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("line 3"), "{error}");
        assert!(error.contains("moon"), "{error}");
        assert!(
            error.contains("appbox override --reset org.example.App"),
            "{error}"
        );
        // Adding to a damaged file changes nothing; reset still works.
        assert!(store.add(&id(), &changes(&["--share=ipc"])).is_err());
        std::fs::write(&path, "not json").unwrap();
        assert!(store.load(&id()).is_err());
        store.reset(&id()).unwrap();
        assert!(!path.exists());
        std::fs::write(&path, "not json").unwrap();
        store.set(&id(), &changes(&["--share=ipc"])).unwrap();
        assert_eq!(strings(&store.load(&id()).unwrap()), ["--share=ipc"]);
    }

    #[test]
    fn symlinks_are_not_followed() {
        let (dir, store) = store();
        let target = dir.path().join("elsewhere.json");
        std::fs::write(&target, "[\"--share=network\"]").unwrap();
        let path = store.path(&id());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&target, &path).unwrap();
        let error = store.load(&id()).unwrap_err().to_string();
        assert!(error.contains("symlink"), "{error}");
    }

    #[test]
    fn normalizing_drops_only_what_a_later_change_overrides() {
        let cases: &[(&[&str], &[&str])] = &[
            (
                &["--share=network", "--unshare=network"],
                &["--unshare=network"],
            ),
            (&["--env=A=1", "--unset-env=A"], &["--unset-env=A"]),
            (
                &["--filesystem=~/x:ro", "--filesystem=~/x"],
                &["--filesystem=~/x"],
            ),
            (
                &["--filesystem=~/x", "--filesystem=~/x:ro"],
                &["--filesystem=~/x", "--filesystem=~/x:ro"],
            ),
            (
                &["--filesystem=~/x", "--nofilesystem=home"],
                &["--nofilesystem=home"],
            ),
            (
                &["--nofilesystem=~/x", "--nofilesystem=home"],
                &["--nofilesystem=home"],
            ),
            (
                &["--nofilesystem=home", "--filesystem=home:ro"],
                &["--nofilesystem=home", "--filesystem=home:ro"],
            ),
            (
                &["--talk-name=org.a.B", "--no-own-name=org.a.B"],
                &["--talk-name=org.a.B", "--no-own-name=org.a.B"],
            ),
        ];
        for (input, expected) in cases {
            assert_eq!(strings(&normalize(changes(input))), *expected, "{input:?}");
        }
    }

    #[test]
    fn normalized_lists_apply_exactly_as_the_originals() {
        let vocabulary = changes(&[
            "--share=network",
            "--unshare=network",
            "--filesystem=home:ro",
            "--filesystem=home",
            "--filesystem=~/x",
            "--nofilesystem=home",
            "--nofilesystem=~/x",
            "--env=A=1",
            "--unset-env=A",
            "--persist=.x",
        ]);
        let bases = [
            changes(&[]),
            changes(&["--share=network", "--filesystem=home", "--env=A=2"]),
            changes(&["--filesystem=~/x:ro", "--filesystem=home:ro"]),
        ];
        let n = vocabulary.len();
        for a in 0..n {
            for b in 0..n {
                for c in 0..n {
                    let list = vec![
                        vocabulary[a].clone(),
                        vocabulary[b].clone(),
                        vocabulary[c].clone(),
                    ];
                    let normal = normalize(list.clone());
                    for base in &bases {
                        assert_eq!(
                            Permissions::from_changes(base.iter().chain(&list)),
                            Permissions::from_changes(base.iter().chain(&normal)),
                            "{list:?} -> {normal:?} on {base:?}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn effective_permissions_mark_the_overrides() {
        let app = changes(&["--share=ipc", "--socket=x11", "--filesystem=home:ro"]);
        let overrides = changes(&["--share=network", "--nosocket=x11"]);
        let effective = Effective::new(&app, &overrides);
        assert_eq!(
            effective.granted,
            vec![
                ("--share=network".to_owned(), Source::Override),
                ("--share=ipc".to_owned(), Source::App),
                ("--filesystem=home:ro".to_owned(), Source::App),
            ]
        );
        assert_eq!(effective.removed, ["--socket=x11"]);
        assert_eq!(
            describe(&effective),
            "--share=network (override) --share=ipc --filesystem=home:ro; removed by overrides: --socket=x11"
        );
        assert_eq!(describe(&Effective::new(&[], &[])), "none");
    }
}
