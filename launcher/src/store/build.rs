//! `appbox build`: a manifest becomes a signed commit in an OSTree repository.
//!
//! 1. The sources are staged into a fresh work directory.
//! 2. Each build command runs in its own sandbox through `appbox run` (this
//!    process links GLib and may have threads, so it never clones a sandbox
//!    itself), with the sources at `/run/build` and a writable `/app`.
//! 3. The result is laid out as a deployment (`metadata.toml`, `files/`,
//!    `export/`) and committed; the commit is signed, a static delta from the
//!    previous commit is written, and the summary with the catalog is
//!    regenerated and signed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Serialize;

use crate::hostfacts::ROOT_SANDBOX_ID;
use crate::metadata::Runtime;
use crate::store::catalog::{self, Catalog, Entry, EntryKind, Icon, Published};
use crate::store::manifest::{Kind, Manifest, ManifestError};
use crate::store::repo::{Repo, RepoError};
use crate::store::sign::{self, SecretKey, SignError};
use crate::store::sources::{self, SourceError};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Sources(#[from] SourceError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Sign(#[from] SignError),
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("build command {number} ({command}) was not found in /app/bin or the runtime's /usr/bin; give its absolute path inside the sandbox")]
    CommandNotFound { number: usize, command: String },
    #[error("build command {number} ({command}) failed with exit status {code}")]
    CommandFailed {
        number: usize,
        command: String,
        code: i32,
    },
    #[error("cannot start the sandbox for build command {number}: {source}")]
    Spawn {
        number: usize,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the runtime {0} is not installed here; install it first (`appbox install REMOTE {0}`)"
    )]
    MissingRuntime(String),
    #[error("the repository has a catalog entry that does not parse: {0}")]
    Catalog(#[from] catalog::CatalogError),
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> BuildError + 'a {
    move |source| BuildError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

pub struct BuildRequest<'a> {
    pub manifest: &'a Path,
    pub repo: &'a Path,
    pub sign_key: Option<&'a SecretKey>,
    /// The `appbox` binary that runs each build command in a sandbox.
    pub appbox: &'a Path,
    /// Where work directories are made (and removed again).
    pub work_root: &'a Path,
    /// Where installed runtimes live, for manifests that build on one.
    pub store: &'a Path,
    pub running_as_root: bool,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct BuildResult {
    pub id: String,
    #[serde(rename = "ref")]
    pub ref_name: String,
    pub commit: String,
    pub parent: Option<String>,
    pub signed: bool,
    pub static_delta: bool,
    pub installed_size: u64,
    pub download_size: u64,
}

/// The ref an app or runtime is published under.
pub fn ref_name(kind: Kind, id: &str) -> String {
    let kind = match kind {
        Kind::App => "app",
        Kind::Runtime => "runtime",
    };
    format!("{kind}/{id}/{}/stable", std::env::consts::ARCH)
}

pub fn build(request: &BuildRequest) -> Result<BuildResult, BuildError> {
    let manifest = Manifest::load(request.manifest)?;
    std::fs::create_dir_all(request.work_root).map_err(io("create", request.work_root))?;
    let work = WorkDir::create(request.work_root, manifest.id.as_str())?;
    let result = build_in(request, &manifest, &work.0);
    drop(work);
    result
}

/// A work directory that is removed when the build ends, however it ends.
struct WorkDir(PathBuf);

impl WorkDir {
    fn create(root: &Path, id: &str) -> Result<Self, BuildError> {
        for attempt in 0..100u32 {
            let path = root.join(format!("{id}-{}-{attempt}", std::process::id()));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(WorkDir(path)),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io("create", &path)(e)),
            }
        }
        Err(io("create", root)(std::io::ErrorKind::AlreadyExists.into()))
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn build_in(
    request: &BuildRequest,
    manifest: &Manifest,
    work: &Path,
) -> Result<BuildResult, BuildError> {
    let id = manifest.id.as_str();
    // The deployment layout from the start: the app dir the build sandbox
    // runs with is the tree that is committed.
    let tree = work.join("tree");
    let files = tree.join("files");
    let build_dir = work.join("build");
    for dir in [&tree, &files, &build_dir] {
        std::fs::create_dir(dir).map_err(io("create", dir))?;
    }
    eprintln!("appbox: staging the sources of {id}");
    sources::stage(manifest, &build_dir)?;

    // Build commands run with the build's own permissions, not the app's.
    write_metadata(&tree, manifest, true)?;
    if request.running_as_root {
        // As root, the sandbox runs the build as nobody, which must own what it writes.
        chown_tree(&files, ROOT_SANDBOX_ID)?;
        chown_tree(&build_dir, ROOT_SANDBOX_ID)?;
    }
    let runtime_usr = match &manifest.sdk {
        Runtime::Host => PathBuf::from("/usr"),
        Runtime::Installed(runtime) => {
            let files = request
                .store
                .join("runtime")
                .join(runtime.as_str())
                .join("current/files");
            if !files.is_dir() {
                return Err(BuildError::MissingRuntime(runtime.to_string()));
            }
            files
        }
    };
    for (index, argv) in manifest.build_commands.iter().enumerate() {
        let number = index + 1;
        let program = resolve_program(&argv[0], &files, &runtime_usr).ok_or_else(|| {
            BuildError::CommandNotFound {
                number,
                command: argv[0].clone(),
            }
        })?;
        eprintln!("appbox: running build command {number}: {}", argv.join(" "));
        let status = Command::new(request.appbox)
            .arg("run")
            .arg("--app-dir")
            .arg(&tree)
            .arg("--build-dir")
            .arg(&build_dir)
            .arg("--command")
            .arg(&program)
            .arg("--")
            .args(&argv[1..])
            .status()
            .map_err(|source| BuildError::Spawn { number, source })?;
        if !status.success() {
            return Err(BuildError::CommandFailed {
                number,
                command: argv.join(" "),
                code: status.code().unwrap_or(-1),
            });
        }
    }

    write_metadata(&tree, manifest, false)?;
    let icon = export_files(&tree, manifest)?;
    let installed_size = tree_size(&files)?;
    let entry = Entry {
        id: id.to_owned(),
        kind: match manifest.kind {
            Kind::App => EntryKind::App,
            Kind::Runtime => EntryKind::Runtime,
        },
        name: manifest.name.clone(),
        summary: manifest.summary.clone(),
        description: manifest.description.clone(),
        version: manifest.version.clone(),
        license: manifest.license.clone(),
        runtime: manifest.runtime.to_string(),
        permissions: manifest.permissions.iter().map(|c| c.to_string()).collect(),
        icon,
        installed_size,
        published: None,
    };

    let published = publish_tree(request.repo, &tree, &entry, request.sign_key)?;
    Ok(BuildResult {
        id: id.to_owned(),
        installed_size,
        ..published
    })
}

/// Commits a prepared tree (`metadata.toml`, `files/`, `export/`) as the
/// app or runtime `entry` describes, into the archive repo at `repo_path`:
/// signed with `key`, with a static delta from the previous commit, and the
/// summary and its catalog written again. What `appbox build` ends with.
pub fn publish_tree(
    repo_path: &Path,
    tree: &Path,
    entry: &Entry,
    key: Option<&SecretKey>,
) -> Result<BuildResult, BuildError> {
    let (repo, mut result) = commit_tree(repo_path, tree, entry, key)?;
    let catalog = publish_summary(&repo, key)?;
    result.download_size = catalog
        .find(&result.id)
        .and_then(|e| e.published.as_ref())
        .map_or(0, |p| p.download_size);
    Ok(result)
}

/// [`publish_tree`] without the summary: for publishing many trees, with
/// one [`publish_summary`] at the end. The result's download size is 0.
pub fn commit_tree(
    repo_path: &Path,
    tree: &Path,
    entry: &Entry,
    key: Option<&SecretKey>,
) -> Result<(Repo, BuildResult), BuildError> {
    let id = entry.id.as_str();
    let kind = match entry.kind {
        EntryKind::App => Kind::App,
        EntryKind::Runtime => Kind::Runtime,
    };
    let repo = Repo::open_or_create_archive(repo_path)?;
    let ref_name = ref_name(kind, id);
    let metadata = BTreeMap::from([
        ("version".to_owned(), entry.version.clone()),
        (catalog::COMMIT_KEY.to_owned(), entry.to_json()),
    ]);
    let commit = repo.commit_dir(
        tree,
        &ref_name,
        &format!("{id} {}", entry.version),
        &metadata,
    )?;
    eprintln!("appbox: committed {ref_name} as {}", commit.checksum);
    if let Some(key) = key {
        let signed = repo.commit_bytes(&commit.checksum)?;
        let existing = repo.detached_metadata(&commit.checksum)?;
        let detached = sign::add_signature(existing.as_deref(), key, &signed)?;
        repo.set_detached_metadata(&commit.checksum, &detached)?;
    }
    let static_delta = match &commit.parent {
        Some(parent) if *parent != commit.checksum => {
            repo.generate_delta(parent, &commit.checksum)?;
            true
        }
        _ => false,
    };
    let result = BuildResult {
        id: id.to_owned(),
        ref_name,
        commit: commit.checksum,
        parent: commit.parent,
        signed: key.is_some(),
        static_delta,
        installed_size: entry.installed_size,
        download_size: 0,
    };
    Ok((repo, result))
}

/// Rebuilds the catalog from every ref's commit, writes the summary with it,
/// and signs the summary.
pub fn publish_summary(repo: &Repo, key: Option<&SecretKey>) -> Result<Catalog, BuildError> {
    let mut entries = Vec::new();
    for prefix in ["app/", "runtime/"] {
        for (ref_name, checksum) in repo.refs(prefix)? {
            let Some(json) = repo.commit_string(&checksum, catalog::COMMIT_KEY)? else {
                continue;
            };
            let mut entry = Entry::parse(&json)?;
            entry.published = Some(Published {
                ref_name,
                download_size: repo.stored_size(&checksum)?,
                commit: checksum,
            });
            entries.push(entry);
        }
    }
    let catalog = Catalog::new(entries);
    let summary = repo.regenerate_summary(&BTreeMap::from([(
        catalog::SUMMARY_KEY.to_owned(),
        catalog.to_json(),
    )]))?;
    if let Some(key) = key {
        repo.write_summary_signatures(&sign::add_signature(None, key, &summary)?)?;
    }
    Ok(catalog)
}

/// The app's `metadata.toml`: during the build, the build's runtime (the sdk)
/// and permissions (network only when a source asks); afterwards, the app's own.
fn write_metadata(tree: &Path, manifest: &Manifest, for_build: bool) -> Result<(), BuildError> {
    let permissions: Vec<String> = if for_build {
        if manifest.build_network {
            vec!["--share=network".to_owned()]
        } else {
            Vec::new()
        }
    } else {
        manifest.permissions.iter().map(|c| c.to_string()).collect()
    };
    let mut table = toml::Table::new();
    table.insert("id".into(), manifest.id.as_str().into());
    table.insert("name".into(), manifest.name.clone().into());
    // A runtime has no command of its own; the build always names one.
    let command = manifest
        .command
        .clone()
        .unwrap_or_else(|| "true".to_owned());
    table.insert("command".into(), command.into());
    let runtime = if for_build {
        &manifest.sdk
    } else {
        &manifest.runtime
    };
    table.insert("runtime".into(), runtime.to_string().into());
    table.insert(
        "permissions".into(),
        toml::Value::Array(permissions.into_iter().map(toml::Value::from).collect()),
    );
    let path = tree.join("metadata.toml");
    let text = toml::to_string(&table).unwrap_or_default();
    std::fs::write(&path, text).map_err(io("write", &path))
}

/// Copies the desktop file, icon and metainfo under `export/share`, where an
/// install finds them; returns the icon for the catalog.
fn export_files(tree: &Path, manifest: &Manifest) -> Result<Option<Icon>, BuildError> {
    let id = manifest.id.as_str();
    let share = tree.join("export/share");
    let mut icon = None;
    if let Some(desktop) = &manifest.desktop_file {
        copy_into(
            desktop,
            &share.join("applications"),
            &format!("{id}.desktop"),
        )?;
    }
    if let Some(metainfo) = &manifest.metainfo {
        copy_into(
            metainfo,
            &share.join("metainfo"),
            &format!("{id}.metainfo.xml"),
        )?;
    }
    if let Some(path) = &manifest.icon {
        let svg = path.extension().is_some_and(|e| e == "svg");
        let (dir, name, mime) = if svg {
            (
                "icons/hicolor/scalable/apps",
                format!("{id}.svg"),
                "image/svg+xml",
            )
        } else {
            (
                "icons/hicolor/128x128/apps",
                format!("{id}.png"),
                "image/png",
            )
        };
        let data = copy_into(path, &share.join(dir), &name)?;
        use base64::Engine;
        icon = Some(Icon {
            mime: mime.to_owned(),
            data: base64::engine::general_purpose::STANDARD.encode(data),
        });
    }
    Ok(icon)
}

fn copy_into(source: &Path, dir: &Path, name: &str) -> Result<Vec<u8>, BuildError> {
    let data = std::fs::read(source).map_err(io("read", source))?;
    std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    let target = dir.join(name);
    std::fs::write(&target, &data).map_err(io("write", &target))?;
    Ok(data)
}

/// Finds a build command's program the way the sandbox's PATH would:
/// `/app/bin`, then the runtime's `/usr/bin`. Returns the path inside the sandbox.
fn resolve_program(name: &str, files: &Path, runtime_usr: &Path) -> Option<String> {
    if name.starts_with('/') {
        return Some(name.to_owned());
    }
    if name.contains('/') {
        return None;
    }
    for (host_dir, sandbox_dir) in [
        (files.join("bin"), "/app/bin"),
        (runtime_usr.join("bin"), "/usr/bin"),
    ] {
        if host_dir.join(name).symlink_metadata().is_ok() {
            return Some(format!("{sandbox_dir}/{name}"));
        }
    }
    None
}

/// Bytes of the regular files under `dir`, not following symlinks.
fn tree_size(dir: &Path) -> Result<u64, BuildError> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).map_err(io("read", dir))? {
        let entry = entry.map_err(io("read", dir))?;
        let meta = entry
            .path()
            .symlink_metadata()
            .map_err(io("inspect", &entry.path()))?;
        if meta.is_dir() {
            total += tree_size(&entry.path())?;
        } else if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

/// Gives every entry under `dir` (our own fresh work tree) to `uid`, never
/// following a symlink.
fn chown_tree(dir: &Path, uid: u32) -> Result<(), BuildError> {
    let chown = |path: &Path| {
        std::os::unix::fs::lchown(path, Some(uid), Some(uid))
            .map_err(io("change the owner of", path))
    };
    chown(dir)?;
    for entry in std::fs::read_dir(dir).map_err(io("read", dir))? {
        let path = entry.map_err(io("read", dir))?.path();
        let meta = path.symlink_metadata().map_err(io("inspect", &path))?;
        if meta.is_dir() {
            chown_tree(&path, uid)?;
        } else {
            chown(&path)?;
        }
    }
    Ok(())
}
