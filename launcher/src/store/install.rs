//! Installing from remotes into `~/.local/share/appbox`:
//!
//! ```text
//! repo/                        bare-user-only OSTree repository
//! app/ID/<commit>/             a deployment: metadata.toml, files/, export/
//! app/ID/current -> <commit>   swapped atomically (rename of a new link)
//! app/ID/origin.json           the remote and ref it came from
//! runtime/ID/...               the same for runtimes
//! exports/share/...            .desktop files, icons, metainfo
//! history.jsonl                one line per change
//! ```
//!
//! Trust: the summary is verified before its refs or catalog are read, the
//! commit object is pulled alone and verified before any content is fetched,
//! and libostree checks every object against the verified commit.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::appid::AppId;
use crate::metadata::AppMetadata;
use crate::plan::MountOp;
use crate::store::build::ref_name;
use crate::store::bundle::{self, ImportedBundle};
use crate::store::catalog::{self, Catalog, CatalogError, Entry, EntryKind};
use crate::store::export::{self, ExportError};
use crate::store::manifest::Kind;
use crate::store::oci;
use crate::store::remotes::{Location, Remote, RemoteError, Remotes};
use crate::store::repo::{parse_summary, Cancel, Mode, PullProgress, Repo, RepoError, Summary};
use crate::store::sign::{self, PublicKey, SignError};

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Remote(#[from] RemoteError),
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error("the summary of remote {remote} is not signed by a trusted key: {source}")]
    UntrustedSummary {
        remote: String,
        #[source]
        source: SignError,
    },
    #[error(
        "commit {commit} of {id} from remote {remote} is not signed by a trusted key: {source}"
    )]
    UntrustedCommit {
        id: String,
        remote: String,
        commit: String,
        #[source]
        source: SignError,
    },
    #[error("remote {remote} has no catalog; was it published with `appbox build`?")]
    NoCatalog { remote: String },
    #[error("remote {remote} does not offer {id}; `appbox remote-ls {remote}` lists what it has")]
    NotOffered { remote: String, id: String },
    #[error("remote {remote} lists {id} but has no ref {ref_name}")]
    NoRef {
        remote: String,
        id: String,
        ref_name: String,
    },
    #[error("remote {0} is an OCI registry, which has no catalog to list or search; install and update its apps by id")]
    OciNoCatalog(String),
    #[error(transparent)]
    Oci(#[from] oci::OciError),
    #[error("the deployment of {id} says it is {found}; refusing it")]
    WrongMetadata { id: String, found: String },
    #[error("{id} shows the permissions [{shown}] but would get [{enforced}]; refusing it")]
    HiddenPermissions {
        id: String,
        shown: String,
        enforced: String,
    },
    #[error("the image of {id} on remote {remote} holds {found} instead")]
    WrongImage {
        remote: String,
        id: String,
        found: String,
    },
    #[error("remote {0} is disabled; enable it with `appbox remote-modify --enable {0}`")]
    Disabled(String),
    #[error("{0} is not installed; `appbox list` shows what is")]
    NotInstalled(String),
    #[error("{0} is already installed; `appbox update {0}` updates it")]
    AlreadyInstalled(String),
    #[error("{0} was not installed from a remote, so there is nothing to update it from")]
    NoOrigin(String),
    #[error(transparent)]
    Bundle(#[from] bundle::BundleError),
    #[error(transparent)]
    AppData(#[from] crate::appdata::AppDataError),
    #[error(transparent)]
    Metadata(#[from] crate::metadata::MetadataError),
    #[error("the bundle {file} is not signed by a trusted key: {source}")]
    UntrustedBundle {
        file: PathBuf,
        #[source]
        source: SignError,
    },
    #[error("{id} needs the runtime {runtime}; install it from a remote first (`appbox install REMOTE {runtime}`)")]
    BundleRuntime { id: String, runtime: String },
    #[error("remote {remote} serves commit {commit} as {ref_name}, but the commit was not made for that ref")]
    WrongRef {
        remote: String,
        ref_name: String,
        commit: String,
    },
    #[error("remote {remote} offers commit {commit} of {id}, which is older than the installed one; refusing the downgrade")]
    Downgrade {
        id: String,
        remote: String,
        commit: String,
    },
    #[error("cannot reach remote {remote}: {message}")]
    Unreachable { remote: String, message: String },
    #[error("{0} has no previous deployment to roll back to")]
    NoPrevious(String),
    #[error("remote {remote} changed while {id} was being updated; run `appbox update` again")]
    Moved { remote: String, id: String },
    #[error("{id} is still needed by {users}; uninstall them first")]
    RuntimeInUse { id: String, users: String },
    #[error(
        "{id} is running (instance {instance}); close it first, or stop it with `appbox kill {id}`"
    )]
    Running { id: String, instance: u64 },
    #[error("cannot {what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> InstallError + 'a {
    move |source| InstallError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// Something long-running that a front end can show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Fetching { remote: String },
    Pulling { id: String, progress: PullProgress },
    Deployed { id: String, commit: String },
}

/// An app, runtime or remote that an operation over many had to skip, and why.
pub type Skipped = (String, InstallError);

/// A catalog entry and the remote that offers it.
pub type Found = (String, Entry);

/// A front end's receiver of events; shared with libostree's progress callbacks.
pub type Events = std::rc::Rc<dyn Fn(Event)>;

/// Where an installed app or runtime came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Origin {
    pub remote: String,
    #[serde(rename = "ref")]
    pub ref_name: String,
}

/// An installed app or runtime.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Installed {
    pub id: String,
    pub kind: EntryKind,
    pub commit: String,
    pub origin: Option<Origin>,
    /// Deployments on disk, the current one included.
    pub deployments: Vec<String>,
    pub entry: Entry,
    pub path: PathBuf,
}

pub struct Installation {
    root: PathBuf,
    remotes_file: PathBuf,
    /// The `appbox` binary that exported launchers run.
    appbox: PathBuf,
    /// `$XDG_RUNTIME_DIR`, where running instances are recorded.
    runtime_dir: PathBuf,
    /// Verified summaries fetched by this handle, by remote: what `update`
    /// showed is what it installs, without fetching the summary again.
    verified: std::cell::RefCell<BTreeMap<String, VerifiedRemote>>,
    /// Stops this handle's pulls.
    cancel: Cancel,
    /// The store lock while this handle holds it, and how many of its calls
    /// hold it now (they nest: an install fetches a catalog).
    lock: std::cell::RefCell<Option<std::fs::File>>,
    lock_depth: std::cell::Cell<u32>,
}

/// The store lock, held by one call; the last one to end releases it.
struct StoreLock<'a>(&'a Installation);

impl Drop for StoreLock<'_> {
    fn drop(&mut self) {
        let depth = self.0.lock_depth.get().saturating_sub(1);
        self.0.lock_depth.set(depth);
        if depth == 0 {
            self.0.lock.borrow_mut().take();
        }
    }
}

/// A remote's catalog and summary, verified, with the keys that verified them.
type VerifiedRemote = (Catalog, Summary, Vec<PublicKey>);

fn kind_dir(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::App => "app",
        EntryKind::Runtime => "runtime",
    }
}

impl Installation {
    pub fn new(root: PathBuf, config_dir: &Path, appbox: PathBuf, runtime_dir: PathBuf) -> Self {
        Installation {
            root,
            remotes_file: config_dir.join("remotes.toml"),
            appbox,
            runtime_dir,
            verified: Default::default(),
            cancel: Cancel::default(),
            lock: Default::default(),
            lock_depth: Default::default(),
        }
    }

    /// Waits for and takes the store lock: one appbox process at a time
    /// changes the repository, the deployments and libostree's remotes
    /// (libostree's transactions and remote config do not expect others).
    /// Reading what is installed needs no lock: `current` links change
    /// atomically.
    fn lock(&self) -> Result<StoreLock<'_>, InstallError> {
        if self.lock_depth.get() == 0 {
            std::fs::create_dir_all(&self.root).map_err(io("create", &self.root))?;
            let path = self.root.join(".lock");
            let file = crate::jsonstore::lock_file(&path).map_err(io("lock", &path))?;
            *self.lock.borrow_mut() = Some(file);
        }
        self.lock_depth.set(self.lock_depth.get() + 1);
        Ok(StoreLock(self))
    }

    /// Makes `cancel` stop this handle's pulls, so that a front end can keep
    /// one switch across handles.
    pub fn with_cancel(mut self, cancel: Cancel) -> Self {
        self.cancel = cancel;
        self
    }

    pub fn remotes(&self) -> Result<Remotes, InstallError> {
        Ok(Remotes::load(&self.remotes_file)?)
    }

    /// Adds a remote whose summaries and commits must be signed by one of
    /// `keys`, or, without `verify`, are trusted unsigned.
    pub fn add_remote(
        &self,
        name: &str,
        url: &str,
        keys: &[PublicKey],
        verify: bool,
    ) -> Result<(), InstallError> {
        let _store = self.lock()?;
        let mut remotes = self.remotes()?;
        remotes.add(name, Remote::new(url, keys, verify))?;
        Ok(remotes.save(&self.remotes_file)?)
    }

    /// Changes a remote; the change is checked before it is saved.
    pub fn modify_remote(
        &self,
        name: &str,
        change: impl FnOnce(&mut Remote),
    ) -> Result<(), InstallError> {
        let _store = self.lock()?;
        let mut remotes = self.remotes()?;
        remotes.modify(name, change)?;
        remotes.save(&self.remotes_file)?;
        self.verified.borrow_mut().remove(name);
        Ok(())
    }

    /// Removes a remote and libostree's record of it; what was installed
    /// from it stays, without updates.
    pub fn delete_remote(&self, name: &str) -> Result<(), InstallError> {
        let _store = self.lock()?;
        let mut remotes = self.remotes()?;
        remotes.delete(name)?;
        remotes.save(&self.remotes_file)?;
        self.verified.borrow_mut().remove(name);
        self.repo()?.delete_remote(name)?;
        Ok(())
    }

    pub fn repo(&self) -> Result<Repo, InstallError> {
        std::fs::create_dir_all(&self.root).map_err(io("create", &self.root))?;
        Ok(Repo::open_or_create(
            &self.root.join("repo"),
            Mode::BareUserOnly,
        )?)
    }

    /// Fetches and verifies a remote's summary, and reads its catalog; once
    /// per remote for the life of this handle (make a new one to see changes).
    pub fn remote_catalog(
        &self,
        remote: &str,
        events: &Events,
    ) -> Result<VerifiedRemote, InstallError> {
        let _store = self.lock()?;
        if let Some(verified) = self.verified.borrow().get(remote) {
            return Ok(verified.clone());
        }
        let verified = self.fetch_catalog(remote, events)?;
        self.verified
            .borrow_mut()
            .insert(remote.to_owned(), verified.clone());
        Ok(verified)
    }

    fn fetch_catalog(&self, remote: &str, events: &Events) -> Result<VerifiedRemote, InstallError> {
        let remotes = self.remotes()?;
        let config = remotes.get(remote)?;
        if !config.enabled {
            return Err(InstallError::Disabled(remote.to_owned()));
        }
        let (location, keys) = config.check(remote)?;
        let url = match location {
            Location::Ostree(url) => url,
            Location::Oci { .. } => return Err(InstallError::OciNoCatalog(remote.to_owned())),
        };
        let repo = self.repo()?;
        repo.sync_remote(remote, &url)?;
        events(Event::Fetching {
            remote: remote.to_owned(),
        });
        let (summary_bytes, signatures) = repo.fetch_summary(remote)?;
        if config.verify {
            sign::verify(&signatures, &summary_bytes, &keys).map_err(|source| {
                InstallError::UntrustedSummary {
                    remote: remote.to_owned(),
                    source,
                }
            })?;
        }
        let summary = parse_summary(&summary_bytes)?;
        let json =
            summary
                .metadata
                .get(catalog::SUMMARY_KEY)
                .ok_or_else(|| InstallError::NoCatalog {
                    remote: remote.to_owned(),
                })?;
        let catalog = Catalog::parse(json)?;
        Ok((
            catalog,
            summary,
            if config.verify { keys } else { Vec::new() },
        ))
    }

    /// Installs `id` from `remote`, and first the runtime it needs when that
    /// is not installed yet. Returns what was deployed, runtime first.
    pub fn install(
        &self,
        remote: &str,
        id: &AppId,
        events: &Events,
    ) -> Result<Vec<Installed>, InstallError> {
        let _store = self.lock()?;
        if self.registry_of(remote)?.is_some() {
            return self.install_from_registry(remote, id.as_str(), events);
        }
        let (catalog, summary, keys) = self.remote_catalog(remote, events)?;
        let entry = catalog
            .find(id.as_str())
            .ok_or_else(|| InstallError::NotOffered {
                remote: remote.to_owned(),
                id: id.to_string(),
            })?;
        let mut done = Vec::new();
        if self.needs_runtime(entry)? {
            let runtime = catalog
                .find(&entry.runtime)
                .ok_or_else(|| InstallError::NotOffered {
                    remote: remote.to_owned(),
                    id: entry.runtime.clone(),
                })?;
            done.push(self.pull_and_deploy(remote, runtime, &summary, &keys, events)?);
        }
        done.push(self.pull_and_deploy(remote, entry, &summary, &keys, events)?);
        Ok(done)
    }

    fn pull_and_deploy(
        &self,
        remote: &str,
        entry: &Entry,
        summary: &Summary,
        keys: &[PublicKey],
        events: &Events,
    ) -> Result<Installed, InstallError> {
        let kind = match entry.kind {
            EntryKind::App => Kind::App,
            EntryKind::Runtime => Kind::Runtime,
        };
        let ref_name = ref_name(kind, &entry.id);
        let commit = summary
            .refs
            .get(&ref_name)
            .ok_or_else(|| InstallError::NoRef {
                remote: remote.to_owned(),
                id: entry.id.clone(),
                ref_name: ref_name.clone(),
            })?
            .clone();
        let repo = self.repo()?;
        // The commit and its signatures first: nothing else is fetched for an
        // unsigned or tampered commit.
        repo.pull(remote, &ref_name, &commit, true, &self.cancel, |_| {})?;
        let refuse = |error: InstallError| {
            let _ = repo.set_ref(Some(remote), &ref_name, None);
            Err(error)
        };
        if !keys.is_empty() {
            let signed = repo.commit_bytes(&commit)?;
            let detached = repo.detached_metadata(&commit)?.unwrap_or_default();
            if let Err(source) = sign::verify(&detached, &signed, keys) {
                return refuse(InstallError::UntrustedCommit {
                    id: entry.id.clone(),
                    remote: remote.to_owned(),
                    commit,
                    source,
                });
            }
        }
        // A signed commit of another app, or an older one of this app, is not
        // what the summary promised: refuse both before fetching content.
        if !repo.ref_bindings(&commit)?.contains(&ref_name) {
            return refuse(InstallError::WrongRef {
                remote: remote.to_owned(),
                ref_name: ref_name.clone(),
                commit,
            });
        }
        // The permissions the catalog showed (and an update asked about) are
        // the commit's own, which its deployment must enforce in turn.
        let committed = match repo.commit_string(&commit, catalog::COMMIT_KEY)? {
            Some(json) => Entry::parse(&json).map(|e| e.permissions),
            None => Ok(Vec::new()),
        };
        match committed {
            Ok(committed) if committed == entry.permissions => {}
            Ok(committed) => {
                return refuse(InstallError::HiddenPermissions {
                    id: entry.id.clone(),
                    shown: entry.permissions.join(" "),
                    enforced: committed.join(" "),
                })
            }
            Err(e) => return refuse(e.into()),
        }
        if let Some(installed) = self.installed_commit(entry.kind, &entry.id) {
            let (new, old) = (
                repo.commit_timestamp(&commit)?,
                repo.commit_timestamp(&installed)?,
            );
            if new < old {
                return refuse(InstallError::Downgrade {
                    id: entry.id.clone(),
                    remote: remote.to_owned(),
                    commit,
                });
            }
        }
        let id = entry.id.clone();
        let report = events.clone();
        repo.pull(
            remote,
            &ref_name,
            &commit,
            false,
            &self.cancel,
            move |progress| {
                report(Event::Pulling {
                    id: id.clone(),
                    progress,
                })
            },
        )?;
        let installed = self.deploy(
            &repo,
            entry.kind,
            &entry.id,
            &commit,
            Some(Origin {
                remote: remote.to_owned(),
                ref_name,
            }),
        )?;
        events(Event::Deployed {
            id: entry.id.clone(),
            commit,
        });
        Ok(installed)
    }

    /// Whether installing `entry` must install its runtime first. An entry that
    /// is installed already is refused: that is `appbox update`'s job.
    fn needs_runtime(&self, entry: &Entry) -> Result<bool, InstallError> {
        if self.installed_commit(entry.kind, &entry.id).is_some() {
            return Err(InstallError::AlreadyInstalled(entry.id.clone()));
        }
        Ok(entry.runtime != "host"
            && self
                .installed_commit(EntryKind::Runtime, &entry.runtime)
                .is_none())
    }

    /// The image prefix and plain-HTTP flag of an OCI remote; `None` for an
    /// OSTree one.
    fn registry_of(&self, remote: &str) -> Result<Option<(String, bool)>, InstallError> {
        match self.remotes()?.get(remote)?.check(remote)?.0 {
            Location::Oci { prefix, insecure } => Ok(Some((prefix, insecure))),
            Location::Ostree(_) => Ok(None),
        }
    }

    /// Pulls the image of `id` from an OCI remote into the repository and
    /// verifies it: the remote's signature, and that it holds `id`.
    fn fetch_from_registry(&self, remote: &str, id: &str) -> Result<ImportedBundle, InstallError> {
        let remotes = self.remotes()?;
        let config = remotes.get(remote)?;
        if !config.enabled {
            return Err(InstallError::Disabled(remote.to_owned()));
        }
        let (location, keys) = config.check(remote)?;
        let Location::Oci { prefix, insecure } = location else {
            return Err(InstallError::OciNoCatalog(remote.to_owned()));
        };
        let image = format!("{prefix}/{}:stable", id.to_lowercase());
        let repo = self.repo()?;
        let imported = oci::import_image(&repo, &image, insecure)?;
        if imported.entry.id != id {
            return Err(InstallError::WrongImage {
                remote: remote.to_owned(),
                id: id.to_owned(),
                found: imported.entry.id,
            });
        }
        if config.verify {
            let signed = repo.commit_bytes(&imported.commit)?;
            let detached = repo
                .detached_metadata(&imported.commit)?
                .unwrap_or_default();
            sign::verify(&detached, &signed, &keys).map_err(|source| {
                InstallError::UntrustedCommit {
                    id: id.to_owned(),
                    remote: remote.to_owned(),
                    commit: imported.commit.clone(),
                    source,
                }
            })?;
        }
        if !repo
            .ref_bindings(&imported.commit)?
            .contains(&imported.ref_name)
        {
            return Err(InstallError::WrongRef {
                remote: remote.to_owned(),
                ref_name: imported.ref_name,
                commit: imported.commit,
            });
        }
        Ok(imported)
    }

    fn install_from_registry(
        &self,
        remote: &str,
        id: &str,
        events: &Events,
    ) -> Result<Vec<Installed>, InstallError> {
        events(Event::Fetching {
            remote: remote.to_owned(),
        });
        let imported = self.fetch_from_registry(remote, id)?;
        let entry = &imported.entry;
        let mut done = Vec::new();
        if self.needs_runtime(entry)? {
            done.extend(self.install_from_registry(remote, &entry.runtime, events)?);
        }
        done.push(self.deploy_imported(remote, imported, events)?);
        Ok(done)
    }

    fn deploy_imported(
        &self,
        remote: &str,
        imported: ImportedBundle,
        events: &Events,
    ) -> Result<Installed, InstallError> {
        let repo = self.repo()?;
        let entry = &imported.entry;
        if let Some(installed) = self.installed_commit(entry.kind, &entry.id) {
            if repo.commit_timestamp(&imported.commit)? < repo.commit_timestamp(&installed)? {
                return Err(InstallError::Downgrade {
                    id: entry.id.clone(),
                    remote: remote.to_owned(),
                    commit: imported.commit,
                });
            }
        }
        let installed = self.deploy(
            &repo,
            entry.kind,
            &entry.id,
            &imported.commit,
            Some(Origin {
                remote: remote.to_owned(),
                ref_name: imported.ref_name.clone(),
            }),
        )?;
        events(Event::Deployed {
            id: entry.id.clone(),
            commit: imported.commit,
        });
        Ok(installed)
    }

    /// Installs a bundle file. Its commit must be signed by one of `trusted`
    /// (an explicit key, or the keys of the configured remotes), unless
    /// `trusted` is `None` (`--no-verify`). The runtime must already be installed.
    pub fn install_bundle(
        &self,
        file: &Path,
        trusted: Option<&[PublicKey]>,
        events: &Events,
    ) -> Result<Installed, InstallError> {
        let _store = self.lock()?;
        let repo = self.repo()?;
        let bundle = bundle::import_bundle(&repo, file)?;
        let entry = &bundle.entry;
        if let Some(keys) = trusted {
            let signed = repo.commit_bytes(&bundle.commit)?;
            let detached = repo.detached_metadata(&bundle.commit)?.unwrap_or_default();
            sign::verify(&detached, &signed, keys).map_err(|source| {
                InstallError::UntrustedBundle {
                    file: file.to_owned(),
                    source,
                }
            })?;
        }
        if self.installed_commit(entry.kind, &entry.id).is_some() {
            return Err(InstallError::AlreadyInstalled(entry.id.clone()));
        }
        if entry.runtime != "host"
            && self
                .installed_commit(EntryKind::Runtime, &entry.runtime)
                .is_none()
        {
            return Err(InstallError::BundleRuntime {
                id: entry.id.clone(),
                runtime: entry.runtime.clone(),
            });
        }
        let installed = self.deploy(&repo, entry.kind, &entry.id, &bundle.commit, None)?;
        events(Event::Deployed {
            id: entry.id.clone(),
            commit: bundle.commit,
        });
        Ok(installed)
    }

    /// The public keys of every remote that verifies signatures.
    pub fn remote_keys(&self) -> Result<Vec<PublicKey>, InstallError> {
        let mut keys = Vec::new();
        for (name, remote) in &self.remotes()?.remotes {
            if remote.verify {
                keys.extend(remote.check(name)?.1);
            }
        }
        Ok(keys)
    }

    /// What `appbox update` would change: every installed app or runtime (or
    /// the ones named) whose remote now offers another commit. Remotes that
    /// cannot be reached are reported with the ids they hold, and skipped.
    pub fn plan_updates(
        &self,
        ids: &[String],
        events: &Events,
    ) -> Result<(Vec<UpdatePlan>, Vec<Skipped>), InstallError> {
        let _store = self.lock()?;
        let installed: Vec<Installed> = match ids {
            [] => self.list()?,
            ids => ids
                .iter()
                .map(|id| self.info(id))
                .collect::<Result<_, _>>()?,
        };
        let mut plans = Vec::new();
        let mut failed = Vec::new();
        let mut catalogs: BTreeMap<String, Result<(Catalog, Summary), String>> = BTreeMap::new();
        for item in installed {
            let Some(origin) = &item.origin else {
                if !ids.is_empty() {
                    failed.push((item.id.clone(), InstallError::NoOrigin(item.id.clone())));
                }
                continue;
            };
            if self.registry_of(&origin.remote).ok().flatten().is_some() {
                match self.fetch_from_registry(&origin.remote, &item.id) {
                    Ok(imported) if imported.commit != item.commit => {
                        plans.push(update_plan(
                            &item,
                            &origin.remote,
                            &imported.commit,
                            &imported.entry,
                        ));
                    }
                    Ok(_) => {}
                    Err(e) => failed.push((item.id.clone(), e)),
                }
                continue;
            }
            let fetched = catalogs.entry(origin.remote.clone()).or_insert_with(|| {
                self.remote_catalog(&origin.remote, events)
                    .map(|(catalog, summary, _)| (catalog, summary))
                    .map_err(|e| e.to_string())
            });
            let (catalog, summary) = match fetched {
                Ok(fetched) => fetched,
                Err(message) => {
                    failed.push((
                        item.id.clone(),
                        InstallError::Unreachable {
                            remote: origin.remote.clone(),
                            message: message.clone(),
                        },
                    ));
                    continue;
                }
            };
            let (Some(to), Some(entry)) =
                (summary.refs.get(&origin.ref_name), catalog.find(&item.id))
            else {
                continue;
            };
            if *to == item.commit {
                continue;
            }
            plans.push(update_plan(&item, &origin.remote, to, entry));
        }
        Ok((plans, failed))
    }

    /// Carries out one planned update: exactly the commit the plan showed,
    /// verified like an install, deployed next to the current one.
    pub fn apply_update(
        &self,
        plan: &UpdatePlan,
        events: &Events,
    ) -> Result<Installed, InstallError> {
        let _store = self.lock()?;
        if self.registry_of(&plan.remote)?.is_some() {
            let imported = self.fetch_from_registry(&plan.remote, &plan.id)?;
            if imported.commit != plan.to {
                return Err(InstallError::Moved {
                    remote: plan.remote.clone(),
                    id: plan.id.clone(),
                });
            }
            return self.deploy_imported(&plan.remote, imported, events);
        }
        let (catalog, summary, keys) = self.remote_catalog(&plan.remote, events)?;
        let entry = catalog
            .find(&plan.id)
            .ok_or_else(|| InstallError::NotOffered {
                remote: plan.remote.clone(),
                id: plan.id.clone(),
            })?;
        let kind = match plan.kind {
            EntryKind::App => Kind::App,
            EntryKind::Runtime => Kind::Runtime,
        };
        if summary.refs.get(&ref_name(kind, &plan.id)) != Some(&plan.to) {
            return Err(InstallError::Moved {
                remote: plan.remote.clone(),
                id: plan.id.clone(),
            });
        }
        self.pull_and_deploy(&plan.remote, entry, &summary, &keys, events)
    }

    /// Makes the previous deployment current again (and the current one previous).
    pub fn rollback(&self, id: &str) -> Result<Installed, InstallError> {
        let _store = self.lock()?;
        let installed = self.info(id)?;
        let kind = installed.kind;
        let previous = self
            .previous_commit(kind, id)
            .filter(|p| self.dir(kind, id).join(p).is_dir())
            .ok_or_else(|| InstallError::NoPrevious(id.to_owned()))?;
        // Checked before the swap, so a refused deployment changes nothing.
        let exports = self.check_deployment(&self.repo()?, kind, id, &previous)?;
        let dir = self.dir(kind, id);
        swap_link(&dir.join("previous"), &installed.commit)?;
        swap_link(&dir.join("current"), &previous)?;
        self.write_exports(kind, id, exports)?;
        self.record(&History {
            time: now(),
            action: "rollback".to_owned(),
            id: id.to_owned(),
            from: Some(installed.commit),
            to: Some(previous),
        });
        self.info_of(kind, id)
    }

    /// Every change recorded, oldest first.
    pub fn history(&self) -> Vec<History> {
        std::fs::read_to_string(self.root.join("history.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Catalog entries of every enabled remote that mention `word` in their
    /// id, name, summary or description (ignoring case).
    pub fn search(
        &self,
        word: &str,
        events: &Events,
    ) -> Result<(Vec<Found>, Vec<Skipped>), InstallError> {
        let _store = self.lock()?;
        let word = word.to_lowercase();
        let mut found = Vec::new();
        let mut failed = Vec::new();
        for (name, remote) in &self.remotes()?.remotes {
            if !remote.enabled {
                continue;
            }
            match self.remote_catalog(name, events) {
                Ok((catalog, _, _)) => found.extend(
                    catalog
                        .entries
                        .into_iter()
                        .filter(|e| entry_matches(e, &word))
                        .map(|e| (name.clone(), e)),
                ),
                Err(e) => failed.push((name.clone(), e)),
            }
        }
        Ok((found, failed))
    }

    fn dir(&self, kind: EntryKind, id: &str) -> PathBuf {
        self.root.join(kind_dir(kind)).join(id)
    }

    fn installed_commit(&self, kind: EntryKind, id: &str) -> Option<String> {
        let link = std::fs::read_link(self.dir(kind, id).join("current")).ok()?;
        let name = link.to_str()?;
        is_checksum(name).then(|| name.to_owned())
    }

    /// Checks `commit` out next to the current deployment and swaps `current`.
    fn deploy(
        &self,
        repo: &Repo,
        kind: EntryKind,
        id: &str,
        commit: &str,
        origin: Option<Origin>,
    ) -> Result<Installed, InstallError> {
        let dir = self.dir(kind, id);
        std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
        let target = dir.join(commit);
        // A local ref keeps the deployment's objects through prunes.
        repo.set_ref(None, &deploy_ref(kind, id, commit), Some(commit))?;
        let fresh = !target.exists();
        if fresh {
            let staging = dir.join(format!(".{commit}.staging"));
            if staging.exists() {
                std::fs::remove_dir_all(&staging).map_err(io("remove", &staging))?;
            }
            repo.checkout(commit, &staging)?;
            std::fs::rename(&staging, &target).map_err(io("move into place", &target))?;
        }
        // Everything that could refuse the deployment is checked before it
        // becomes current, so a refused one leaves the installation as it was.
        let exports = match self.check_deployment(repo, kind, id, commit) {
            Ok(exports) => exports,
            Err(e) => {
                if fresh {
                    let _ = std::fs::remove_dir_all(&target);
                    let _ = repo.set_ref(None, &deploy_ref(kind, id, commit), None);
                    if self.installed_commit(kind, id).is_none() {
                        let _ = std::fs::remove_dir_all(&dir);
                    }
                }
                return Err(e);
            }
        };
        if let Some(origin) = &origin {
            let text = serde_json::to_string(origin).unwrap_or_default();
            write_atomically(&dir.join("origin.json"), text.as_bytes())?;
        }
        let previous = self.installed_commit(kind, id);
        if let Some(previous) = previous.as_deref().filter(|p| *p != commit) {
            swap_link(&dir.join("previous"), previous)?;
        }
        swap_link(&dir.join("current"), commit)?;
        self.write_exports(kind, id, exports)?;
        self.record(&History {
            time: now(),
            action: if previous.is_some() {
                "update"
            } else {
                "install"
            }
            .to_owned(),
            id: id.to_owned(),
            from: previous,
            to: Some(commit.to_owned()),
        });
        self.prune_deployments(repo, kind, id)?;
        self.info_of(kind, id)
    }

    /// Checks the checked-out deployment of `commit`: its metadata is a
    /// regular file that parses and names the app, and `files/` is a
    /// directory. Returns what an app exports, checked and rewritten (nothing
    /// for a runtime).
    fn check_deployment(
        &self,
        repo: &Repo,
        kind: EntryKind,
        id: &str,
        commit: &str,
    ) -> Result<Vec<export::ExportFile>, InstallError> {
        let deployment = &self.dir(kind, id).join(commit);
        let metadata = AppMetadata::load(&deployment.join("metadata.toml"))?;
        if metadata.id.as_str() != id {
            return Err(InstallError::WrongMetadata {
                id: id.to_owned(),
                found: metadata.id.to_string(),
            });
        }
        let files = deployment.join("files");
        if !files.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            return Err(InstallError::Io {
                what: "use",
                path: files,
                source: std::io::Error::other("it is not a directory"),
            });
        }
        if kind == EntryKind::Runtime {
            return Ok(Vec::new());
        }
        check_shown_permissions(repo, id, commit, &metadata)?;
        let app_id = AppId::parse(id).map_err(|e| ExportError::Refused {
            id: id.to_owned(),
            path: deployment.to_owned(),
            problem: e.to_string(),
        })?;
        Ok(export::collect(deployment, &app_id, &self.appbox)?)
    }

    /// Writes an app's exports, and removes what an earlier deployment
    /// exported and this one does not. What was exported is recorded in
    /// `app/ID/exported.json`.
    fn write_exports(
        &self,
        kind: EntryKind,
        id: &str,
        files: Vec<export::ExportFile>,
    ) -> Result<(), InstallError> {
        if kind == EntryKind::Runtime {
            return Ok(());
        }
        let exports = self.root.join("exports/share");
        for file in &files {
            let to = exports.join(&file.rel);
            if let Some(dir) = to.parent() {
                std::fs::create_dir_all(dir).map_err(io("create", dir))?;
            }
            write_atomically(&to, &file.contents)?;
        }
        let now: Vec<PathBuf> = files.into_iter().map(|f| f.rel).collect();
        for old in self.exported(id) {
            if !now.contains(&old) {
                let _ = std::fs::remove_file(exports.join(old));
            }
        }
        let record = self.dir(EntryKind::App, id).join("exported.json");
        write_atomically(
            &record,
            serde_json::to_string(&now).unwrap_or_default().as_bytes(),
        )
    }

    /// What the app exported last, as recorded (only plain relative paths).
    fn exported(&self, id: &str) -> Vec<PathBuf> {
        let record = self.dir(EntryKind::App, id).join("exported.json");
        let list: Vec<PathBuf> = std::fs::read_to_string(record)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        list.into_iter()
            .filter(|p| {
                p.components()
                    .all(|c| matches!(c, std::path::Component::Normal(_)))
            })
            .collect()
    }

    fn unexport(&self, id: &str) {
        let exports = self.root.join("exports/share");
        for rel in self.exported(id) {
            let _ = std::fs::remove_file(exports.join(rel));
        }
    }

    /// Keeps the current deployment and the previous one (for rollback), and
    /// any that a running instance still uses.
    fn prune_deployments(
        &self,
        repo: &Repo,
        kind: EntryKind,
        id: &str,
    ) -> Result<(), InstallError> {
        let dir = self.dir(kind, id);
        let keep = [
            self.installed_commit(kind, id),
            self.previous_commit(kind, id),
        ];
        let in_use = self.deployments_in_use();
        for commit in self.deployments(kind, id) {
            let path = dir.join(&commit);
            if keep.iter().flatten().any(|k| *k == commit)
                || in_use.iter().any(|p| p.starts_with(&path))
            {
                continue;
            }
            std::fs::remove_dir_all(&path).map_err(io("remove", &path))?;
            repo.set_ref(None, &deploy_ref(kind, id, &commit), None)?;
        }
        Ok(())
    }

    fn previous_commit(&self, kind: EntryKind, id: &str) -> Option<String> {
        let link = std::fs::read_link(self.dir(kind, id).join("previous")).ok()?;
        let name = link.to_str()?;
        is_checksum(name).then(|| name.to_owned())
    }

    /// Host paths bound into running sandboxes.
    fn deployments_in_use(&self) -> Vec<PathBuf> {
        let Ok(registry) = crate::instance::Registry::open(&self.runtime_dir) else {
            return Vec::new();
        };
        registry
            .list()
            .into_iter()
            .flat_map(|record| record.plan.mounts)
            .filter_map(|op| match op {
                MountOp::Bind { source, .. } => Some(source),
                _ => None,
            })
            .filter(|source| source.starts_with(&self.root))
            .collect()
    }

    fn deployments(&self, kind: EntryKind, id: &str) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir(kind, id)) else {
            return Vec::new();
        };
        let mut found: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|name| is_checksum(name))
            .collect();
        found.sort();
        found
    }

    fn info_of(&self, kind: EntryKind, id: &str) -> Result<Installed, InstallError> {
        let commit = self
            .installed_commit(kind, id)
            .ok_or_else(|| InstallError::NotInstalled(id.to_owned()))?;
        let repo = self.repo()?;
        let json = repo
            .commit_string(&commit, catalog::COMMIT_KEY)?
            .ok_or_else(|| InstallError::NotInstalled(id.to_owned()))?;
        let dir = self.dir(kind, id);
        let origin = std::fs::read_to_string(dir.join("origin.json"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());
        Ok(Installed {
            id: id.to_owned(),
            kind,
            path: dir.join(&commit),
            commit,
            origin,
            deployments: self.deployments(kind, id),
            entry: Entry::parse(&json)?,
        })
    }

    /// The installed app, or else runtime, called `id`.
    pub fn info(&self, id: &str) -> Result<Installed, InstallError> {
        self.info_of(EntryKind::App, id)
            .or_else(|_| self.info_of(EntryKind::Runtime, id))
    }

    /// Everything installed, apps first.
    pub fn list(&self) -> Result<Vec<Installed>, InstallError> {
        let mut all = Vec::new();
        for kind in [EntryKind::App, EntryKind::Runtime] {
            let Ok(entries) = std::fs::read_dir(self.root.join(kind_dir(kind))) else {
                continue;
            };
            let mut ids: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .filter(|name| AppId::parse(name).is_ok())
                .collect();
            ids.sort();
            for id in ids {
                if let Ok(installed) = self.info_of(kind, &id) {
                    all.push(installed);
                }
            }
        }
        Ok(all)
    }

    /// Removes an app or runtime, its exports and, when asked, the app's data.
    /// A runtime that an installed app needs, and an app that is running, stay.
    /// What an interrupted install or uninstall left behind is removed too.
    pub fn uninstall(&self, id: &str, delete_data: Option<&Path>) -> Result<Removed, InstallError> {
        let _store = self.lock()?;
        let installed = match self.info(id) {
            Ok(installed) => Some(installed),
            Err(InstallError::NotInstalled(_)) => None,
            Err(e) => return Err(e),
        };
        let kind = match &installed {
            Some(installed) => installed.kind,
            None => [EntryKind::App, EntryKind::Runtime]
                .into_iter()
                .find(|kind| self.dir(*kind, id).is_dir())
                .ok_or_else(|| InstallError::NotInstalled(id.to_owned()))?,
        };
        if kind == EntryKind::Runtime {
            let users: Vec<String> = self
                .list()?
                .into_iter()
                .filter(|i| i.kind == EntryKind::App && i.entry.runtime == id)
                .map(|i| i.id)
                .collect();
            if !users.is_empty() {
                return Err(InstallError::RuntimeInUse {
                    id: id.to_owned(),
                    users: users.join(", "),
                });
            }
        }
        let dir = self.dir(kind, id);
        if let Some(record) = self.instance_using(&dir) {
            return Err(InstallError::Running {
                id: id.to_owned(),
                instance: record,
            });
        }
        let repo = self.repo()?;
        self.remove_all_state(&repo, kind, id)?;
        repo.prune()?;
        if let (Some(home), Ok(app)) = (delete_data, AppId::parse(id)) {
            crate::appdata::delete(home, &app)?;
        }
        let commit = installed.map(|i| i.commit);
        self.record(&History {
            time: now(),
            action: "uninstall".to_owned(),
            id: id.to_owned(),
            from: commit.clone(),
            to: None,
        });
        Ok(Removed {
            id: id.to_owned(),
            kind,
            commit,
        })
    }

    /// The instance number of a running sandbox that uses anything under `dir`.
    fn instance_using(&self, dir: &Path) -> Option<u64> {
        let registry = crate::instance::Registry::open(&self.runtime_dir).ok()?;
        registry
            .list()
            .into_iter()
            .find(|r| {
                r.plan
                    .mounts
                    .iter()
                    .any(|op| matches!(op, MountOp::Bind { source, .. } if source.starts_with(dir)))
            })
            .map(|r| r.instance)
    }

    /// Removes everything of one app or runtime but its data: `current` first,
    /// so that a crash leaves nothing that looks installed, then the exports,
    /// the refs that keep its objects, and its directory.
    fn remove_all_state(&self, repo: &Repo, kind: EntryKind, id: &str) -> Result<(), InstallError> {
        let dir = self.dir(kind, id);
        let current = dir.join("current");
        match std::fs::remove_file(&current) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(io("remove", &current)(e))
            }
            _ => {}
        }
        if kind == EntryKind::App {
            self.unexport(id);
        }
        for (ref_name, _) in repo.refs(&deploy_ref_prefix(kind, id))? {
            repo.set_ref(None, &ref_name, None)?;
        }
        let origin: Option<Origin> = std::fs::read_to_string(dir.join("origin.json"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok());
        if let Some(origin) = origin {
            let _ = repo.set_ref(Some(&origin.remote), &origin.ref_name, None);
        }
        match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io("remove", &dir)(e)),
            _ => Ok(()),
        }
    }

    /// Brings the installation back to a consistent state after a crash or a
    /// kill: unfinished checkouts and staging files go, a `current` that
    /// points nowhere falls back to `previous` (or the app is removed, as its
    /// install never finished), every deployment's objects are checked, and
    /// unused objects are pruned. Returns what it did and what it found.
    pub fn repair(&self) -> Result<RepairReport, InstallError> {
        let _store = self.lock()?;
        let repo = self.repo()?;
        let mut report = RepairReport::default();
        for kind in [EntryKind::App, EntryKind::Runtime] {
            let Ok(entries) = std::fs::read_dir(self.root.join(kind_dir(kind))) else {
                continue;
            };
            let mut ids: Vec<String> = entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect();
            ids.sort();
            for id in ids {
                if AppId::parse(&id).is_err() {
                    report.problems.push(format!(
                        "{}/{id} is not an app id; left alone",
                        kind_dir(kind)
                    ));
                    continue;
                }
                self.repair_one(&repo, kind, &id, &mut report)?;
            }
        }
        // Refs of deployments that are gone keep objects alive for nothing.
        for (ref_name, commit) in repo.refs("appbox/deployed/")? {
            let mut parts = ref_name
                .trim_start_matches("appbox/deployed/")
                .splitn(2, '/');
            let (Some(kind), Some(rest)) = (parts.next(), parts.next()) else {
                continue;
            };
            let id = rest.rsplit_once('/').map_or(rest, |(id, _)| id);
            if !self.root.join(kind).join(id).join(&commit).is_dir() {
                repo.set_ref(None, &ref_name, None)?;
                report.fixed.push(format!(
                    "dropped the ref {ref_name} of a removed deployment"
                ));
            }
        }
        report.freed_bytes = repo.prune()?;
        Ok(report)
    }

    fn repair_one(
        &self,
        repo: &Repo,
        kind: EntryKind,
        id: &str,
        report: &mut RepairReport,
    ) -> Result<(), InstallError> {
        let dir = self.dir(kind, id);
        // Leftovers of an interrupted checkout or link swap.
        for entry in std::fs::read_dir(&dir).map_err(io("read", &dir))? {
            let entry = entry.map_err(io("read", &dir))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with('.') && name.ends_with(".staging") {
                std::fs::remove_dir_all(&path).map_err(io("remove", &path))?;
                report.fixed.push(format!(
                    "removed the unfinished checkout {}",
                    path.display()
                ));
            } else if name.contains(".tmp")
                || name.starts_with("current.new")
                || name.starts_with("previous.new")
            {
                std::fs::remove_file(&path).map_err(io("remove", &path))?;
                report
                    .fixed
                    .push(format!("removed the leftover {}", path.display()));
            }
        }
        let usable = |commit: &Option<String>| {
            commit
                .as_ref()
                .filter(|c| {
                    dir.join(c).join("metadata.toml").is_file() && repo.commit_bytes(c).is_ok()
                })
                .cloned()
        };
        let current = usable(&self.installed_commit(kind, id));
        let previous = usable(&self.previous_commit(kind, id));
        let current = match (current, previous) {
            (Some(current), _) => current,
            (None, Some(previous)) => {
                swap_link(&dir.join("current"), &previous)?;
                let _ = std::fs::remove_file(dir.join("previous"));
                report.fixed.push(format!(
                    "{id}: went back to the previous deployment {}",
                    &previous[..12]
                ));
                previous
            }
            (None, None) => {
                if self.instance_using(&dir).is_none() {
                    self.remove_all_state(repo, kind, id)?;
                    report
                        .fixed
                        .push(format!("{id}: removed an install that never finished"));
                }
                return Ok(());
            }
        };
        for commit in self.deployments(kind, id) {
            let ref_name = deploy_ref(kind, id, &commit);
            if repo.resolve(&ref_name)?.is_none() {
                repo.set_ref(None, &ref_name, Some(&commit))?;
                report.fixed.push(format!(
                    "{id}: restored the ref of deployment {}",
                    &commit[..12]
                ));
            }
            if let Err(e) = repo.stored_size(&commit) {
                report.problems.push(format!(
                    "{id}: deployment {} is missing objects: {e}",
                    &commit[..12]
                ));
            }
        }
        if kind == EntryKind::App {
            match self.check_deployment(repo, kind, id, &current) {
                Ok(exports) => self.write_exports(kind, id, exports)?,
                Err(e) => report.problems.push(format!("{id}: {e}")),
            }
        }
        Ok(())
    }

    /// Runtimes that no installed app needs.
    pub fn unused_runtimes(&self) -> Result<Vec<String>, InstallError> {
        let all = self.list()?;
        let needed: BTreeSet<&str> = all
            .iter()
            .filter(|i| i.kind == EntryKind::App)
            .map(|i| i.entry.runtime.as_str())
            .collect();
        Ok(all
            .iter()
            .filter(|i| i.kind == EntryKind::Runtime && !needed.contains(i.id.as_str()))
            .map(|i| i.id.clone())
            .collect())
    }

    fn record(&self, entry: &History) {
        use std::io::Write;
        let path = self.root.join("history.jsonl");
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            let _ = writeln!(file, "{}", serde_json::to_string(entry).unwrap_or_default());
        }
    }
}

/// What `appbox uninstall` removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Removed {
    pub id: String,
    pub kind: EntryKind,
    /// The deployment that was current, when the install had finished.
    pub commit: Option<String>,
}

/// What `appbox repair` did and found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RepairReport {
    pub fixed: Vec<String>,
    pub problems: Vec<String>,
    pub freed_bytes: u64,
}

/// An update `appbox update` offers, with what it changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct UpdatePlan {
    pub id: String,
    pub kind: EntryKind,
    pub remote: String,
    pub from: String,
    pub to: String,
    pub from_version: String,
    pub to_version: String,
    /// Permissions the new version asks for that the installed one did not.
    pub added_permissions: Vec<String>,
    pub removed_permissions: Vec<String>,
}

fn update_plan(item: &Installed, remote: &str, to: &str, entry: &Entry) -> UpdatePlan {
    let (added, removed) = permission_changes(&item.entry.permissions, &entry.permissions);
    UpdatePlan {
        id: item.id.clone(),
        kind: item.kind,
        remote: remote.to_owned(),
        from: item.commit.clone(),
        to: to.to_owned(),
        from_version: item.entry.version.clone(),
        to_version: entry.version.clone(),
        added_permissions: added,
        removed_permissions: removed,
    }
}

/// The permissions `new` adds to and removes from `old`.
pub fn permission_changes(old: &[String], new: &[String]) -> (Vec<String>, Vec<String>) {
    let added = new.iter().filter(|p| !old.contains(p)).cloned().collect();
    let removed = old.iter().filter(|p| !new.contains(p)).cloned().collect();
    (added, removed)
}

fn entry_matches(entry: &Entry, lowercase_word: &str) -> bool {
    [&entry.id, &entry.name, &entry.summary, &entry.description]
        .iter()
        .any(|field| field.to_lowercase().contains(lowercase_word))
}

/// One line of `history.jsonl`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// Seconds since the epoch.
    pub time: u64,
    pub action: String,
    pub id: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

fn now() -> u64 {
    std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_secs())
}

fn deploy_ref(kind: EntryKind, id: &str, commit: &str) -> String {
    format!("{}{commit}", deploy_ref_prefix(kind, id))
}

fn deploy_ref_prefix(kind: EntryKind, id: &str) -> String {
    format!("appbox/deployed/{}/{id}/", kind_dir(kind))
}

fn is_checksum(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Points the symlink `link` at `target` atomically: a new link is renamed
/// over the old one, so `current` is never missing or half-written.
/// The permissions an app's commit shows (its entry, which `install`,
/// `update` and `info` print, and updates compare) must be exactly those its
/// metadata.toml makes the launcher enforce: a publisher could otherwise show
/// one list and apply another (CVE-2021-43860).
fn check_shown_permissions(
    repo: &Repo,
    id: &str,
    commit: &str,
    metadata: &AppMetadata,
) -> Result<(), InstallError> {
    let shown = match repo.commit_string(commit, catalog::COMMIT_KEY)? {
        Some(json) => Entry::parse(&json)?.permissions,
        None => Vec::new(),
    };
    let enforced: Vec<String> = metadata
        .permissions
        .iter()
        .map(ToString::to_string)
        .collect();
    if shown != enforced {
        return Err(InstallError::HiddenPermissions {
            id: id.to_owned(),
            shown: shown.join(" "),
            enforced: enforced.join(" "),
        });
    }
    Ok(())
}

fn swap_link(link: &Path, target: &str) -> Result<(), InstallError> {
    let staging = link.with_extension(format!("new{}", std::process::id()));
    let _ = std::fs::remove_file(&staging);
    std::os::unix::fs::symlink(target, &staging).map_err(io("create", &staging))?;
    std::fs::rename(&staging, link).map_err(|e| {
        let _ = std::fs::remove_file(&staging);
        io("replace", link)(e)
    })
}

fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), InstallError> {
    super::write_atomically(path, contents).map_err(io("write", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn permission_changes_name_what_was_added_and_removed() {
        let (added, removed) = permission_changes(
            &strings(&["--share=network", "--socket=x11"]),
            &strings(&["--socket=x11", "--filesystem=home", "--device=all"]),
        );
        assert_eq!(added, strings(&["--filesystem=home", "--device=all"]));
        assert_eq!(removed, strings(&["--share=network"]));
        let (added, removed) =
            permission_changes(&strings(&["--socket=x11"]), &strings(&["--socket=x11"]));
        assert!(added.is_empty() && removed.is_empty());
    }

    #[test]
    fn only_hex_checksums_name_deployments() {
        assert!(is_checksum(&"ab".repeat(32)));
        for bad in [
            "",
            "current",
            "previous",
            &"AB".repeat(32),
            &"ab".repeat(31),
            "../x",
        ] {
            assert!(!is_checksum(bad), "{bad:?}");
        }
    }
}
