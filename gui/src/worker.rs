//! Store work off the main thread. The `appbox` store library is not
//! thread-safe (it holds libostree objects), so one worker thread owns an
//! `Installation` and answers requests in order; replies come back to the
//! main loop through a channel the window awaits. After every request the
//! worker sends a [`Snapshot`] of the store as it is now; its costly parts
//! (update plans, the sizes of apps' data) are read again only when the
//! request may have changed them (see `Rereads`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use appbox::appdata::{self, AppData};
use appbox::appid::AppId;
use appbox::hostfacts::HostFacts;
use appbox::store::catalog::EntryKind;
use appbox::store::install::{Event, Events, InstallError, Installation, Installed, UpdatePlan};
use appbox::store::repo::{Cancel, PullProgress, RepoError};
use appbox::store::sign::PublicKey;

use crate::model::catalog::CatalogItem;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Reads everything again, with every remote's summary fetched afresh
    /// (which is how new updates are found).
    Refresh,
    /// Installs an app (and the runtime it needs) from a remote.
    Install {
        remote: String,
        id: String,
    },
    /// Updates to exactly the commits these plans show, in order.
    Update {
        plans: Vec<UpdatePlan>,
    },
    /// Removes an installed app or runtime; the app's data stays.
    Uninstall {
        id: String,
    },
    /// Adds a remote that must sign with the keys in `key_file`.
    AddRemote {
        name: String,
        url: String,
        key_file: PathBuf,
    },
    SetRemoteEnabled {
        name: String,
        enabled: bool,
    },
    DeleteRemote {
        name: String,
    },
    /// Removes every runtime no installed app needs.
    RemoveUnusedRuntimes,
    /// Deletes `~/.var/app/ID` of an app that is not installed.
    DeleteData {
        id: String,
    },
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Done,
    Cancelled,
    Failed(String),
}

/// An installed app or runtime and the disk space it takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledItem {
    pub installed: Installed,
    /// The objects of its current deployment.
    pub bytes: u64,
    /// Its data in `~/.var/app` (apps only).
    pub data_bytes: Option<u64>,
}

/// A remote as the Remotes page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteItem {
    pub name: String,
    pub url: String,
    pub enabled: bool,
    /// Whether its summaries and commits must be signed.
    pub verify: bool,
}

/// The store as it is now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub catalog: Vec<CatalogItem>,
    /// Remotes that could not be read, with why.
    pub failures: Vec<String>,
    pub installed: Vec<InstalledItem>,
    pub updates: Vec<UpdatePlan>,
    pub remotes: Vec<RemoteItem>,
    pub unused_runtimes: Vec<String>,
    /// Data left by apps that are no longer installed.
    pub leftover_data: Vec<AppData>,
}

#[derive(Debug)]
pub enum Reply {
    Snapshot(Box<Snapshot>),
    /// A pull under way.
    Progress {
        id: String,
        progress: PullProgress,
    },
    /// A request other than Refresh ended; a fresh `Snapshot` follows.
    Finished {
        request: Request,
        outcome: Outcome,
    },
    /// The store itself cannot be used.
    Failed(String),
}

/// Sends requests to the worker thread, and cancels its pulls.
#[derive(Clone)]
pub struct Worker {
    requests: std::sync::mpsc::Sender<Request>,
    cancel: Cancel,
}

impl Worker {
    pub fn send(&self, request: Request) {
        // The thread outlives the window; a closed channel means it died,
        // which its last reply has already reported.
        let _ = self.requests.send(request);
    }

    /// Stops the pull under way; its request ends as `Outcome::Cancelled`.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }
}

/// The worker thread, to wait for at exit: it ends once every [`Worker`]
/// is dropped and its current request is done.
pub struct WorkerThread(std::thread::JoinHandle<()>);

impl WorkerThread {
    /// Waits up to `limit` for the thread to end; an install still running
    /// is left to the kernel (installs are atomic, so stopping one loses
    /// nothing). Whether it ended.
    pub fn finish(self, limit: std::time::Duration) -> bool {
        let start = std::time::Instant::now();
        while !self.0.is_finished() {
            if start.elapsed() >= limit {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.0.join().is_ok()
    }
}

/// What the worker keeps between requests.
struct Store {
    facts: HostFacts,
    cancel: Cancel,
    installation: Installation,
    /// Disk use of deployments, by commit: a commit never changes.
    sizes: BTreeMap<String, u64>,
    /// The update plans last made; `None` before the first. Planning fetches
    /// every remote afresh, and re-imports the images of apps installed from
    /// OCI registries, so it is done on Refresh only.
    updates: Option<Vec<UpdatePlan>>,
    /// `~/.var/app` as last walked; `None` before the first walk.
    data: Option<Vec<AppData>>,
}

/// Starts the worker on the host's facts, gathered by the caller (an error
/// is the worker's first and last reply); replies arrive on the returned
/// receiver.
pub fn start(
    facts: Result<HostFacts, String>,
) -> (Worker, async_channel::Receiver<Reply>, WorkerThread) {
    let (requests, incoming) = std::sync::mpsc::channel::<Request>();
    let (replies, receiver) = async_channel::unbounded();
    let cancel = Cancel::default();
    let thread_cancel = cancel.clone();
    let thread = std::thread::spawn(move || {
        let facts = match facts {
            Ok(facts) => facts,
            Err(e) => {
                let _ = replies.send_blocking(Reply::Failed(e));
                return;
            }
        };
        let mut store = Store {
            installation: open_installation(&facts, &thread_cancel),
            facts,
            cancel: thread_cancel,
            sizes: BTreeMap::new(),
            updates: None,
            data: None,
        };
        while let Ok(request) = incoming.recv() {
            let mut out = Vec::new();
            let outcome = store.carry_out(&request, &replies);
            let rereads = Rereads::after(&request);
            // Refresh ends with its snapshot alone.
            if request != Request::Refresh {
                // A Cancel pressed while this waited in the queue stopped it
                // too; the next request starts afresh.
                store.cancel.reset();
                out.push(Reply::Finished { request, outcome });
            }
            // Whatever changed, the window shows the store as it is now.
            out.push(store.snapshot(rereads));
            for reply in out {
                if replies.send_blocking(reply).is_err() {
                    return;
                }
            }
        }
    });
    (Worker { requests, cancel }, receiver, WorkerThread(thread))
}

/// The `appbox` next to this program: the store runs apps, and takes
/// documents out of sandboxes, with the launcher it was installed with.
pub fn appbox_binary() -> PathBuf {
    std::env::current_exe()
        .map(|exe| exe.with_file_name("appbox"))
        .unwrap_or_else(|_| PathBuf::from("appbox"))
}

fn open_installation(facts: &HostFacts, cancel: &Cancel) -> Installation {
    Installation::new(
        appbox::deploy::store_dir(facts),
        &facts.config_home().join("appbox"),
        appbox_binary(),
        facts.runtime_dir.clone(),
    )
    .with_cancel(cancel.clone())
}

fn outcome(result: Result<(), InstallError>) -> Outcome {
    match result {
        Ok(()) => Outcome::Done,
        Err(InstallError::Repo(RepoError::Cancelled)) => Outcome::Cancelled,
        Err(e) => Outcome::Failed(appbox::sandbox::chain(&e)),
    }
}

/// What a snapshot reads again, rather than carrying it forward from the
/// last one.
#[derive(Debug, Clone, Copy)]
struct Rereads {
    /// Plan updates afresh.
    updates: bool,
    /// Walk `~/.var/app` again.
    data: bool,
}

impl Rereads {
    fn after(request: &Request) -> Rereads {
        Rereads {
            // Only Refresh finds new updates. Requests that change what is
            // installed can only make earlier plans stale, and the snapshot
            // drops those (see `still_applies`).
            updates: *request == Request::Refresh,
            // An uninstall leaves the app's data behind as leftover; other
            // requests do not touch `~/.var/app`.
            data: matches!(
                request,
                Request::Refresh | Request::Uninstall { .. } | Request::DeleteData { .. }
            ),
        }
    }
}

/// Whether `plan`, made earlier, still applies to what is installed now:
/// its app is still installed from the same remote, at the commit the plan
/// updates from. An Install, Update or Uninstall since then may have
/// changed that; nothing else does.
fn still_applies(plan: &UpdatePlan, installed: &[Installed]) -> bool {
    installed.iter().any(|item| {
        item.id == plan.id
            && item.commit == plan.from
            && item.origin.as_ref().map(|o| o.remote.as_str()) == Some(plan.remote.as_str())
    })
}

impl Store {
    fn carry_out(&mut self, request: &Request, replies: &async_channel::Sender<Reply>) -> Outcome {
        let installation = &self.installation;
        let events = progress_events(replies);
        match request {
            Request::Refresh => {
                // A new handle forgets the summaries the old one fetched, so
                // the snapshot fetches every remote afresh.
                self.installation = open_installation(&self.facts, &self.cancel);
                Outcome::Done
            }
            Request::Install { remote, id } => match AppId::parse(id) {
                Ok(app) => outcome(installation.install(remote, &app, &events).map(drop)),
                Err(e) => Outcome::Failed(e.to_string()),
            },
            Request::Update { plans } => {
                for plan in plans {
                    match outcome(installation.apply_update(plan, &events).map(drop)) {
                        Outcome::Done => {}
                        Outcome::Failed(e) => return Outcome::Failed(format!("{}: {e}", plan.id)),
                        Outcome::Cancelled => return Outcome::Cancelled,
                    }
                }
                Outcome::Done
            }
            Request::Uninstall { id } => outcome(installation.uninstall(id, None).map(drop)),
            Request::AddRemote {
                name,
                url,
                key_file,
            } => match PublicKey::load_all(key_file) {
                Ok(keys) => outcome(installation.add_remote(name, url, &keys, true)),
                Err(e) => Outcome::Failed(appbox::sandbox::chain(&e)),
            },
            Request::SetRemoteEnabled { name, enabled } => {
                outcome(installation.modify_remote(name, |remote| remote.enabled = *enabled))
            }
            Request::DeleteRemote { name } => outcome(installation.delete_remote(name)),
            Request::RemoveUnusedRuntimes => {
                let result = installation.unused_runtimes().and_then(|unused| {
                    unused
                        .iter()
                        .try_for_each(|id| installation.uninstall(id, None).map(drop))
                });
                outcome(result)
            }
            Request::DeleteData { id } => self.delete_data(id),
        }
    }

    /// Deletes the data of an app that is not installed; an installed app's
    /// data is in use, and goes only with the app.
    fn delete_data(&self, id: &str) -> Outcome {
        let app = match AppId::parse(id) {
            Ok(app) => app,
            Err(e) => return Outcome::Failed(e.to_string()),
        };
        if self.installation.info(id).is_ok() {
            return Outcome::Failed(format!(
                "{id} is installed; its data goes when you remove it"
            ));
        }
        match appdata::delete(&self.facts.home, &app) {
            Ok(_) => Outcome::Done,
            Err(e) => Outcome::Failed(appbox::sandbox::chain(&e)),
        }
    }

    /// The store as it is now. Catalogs come from the summaries this
    /// handle already holds (fetched again after Refresh), and deployment
    /// sizes from `sizes`; update plans and data sizes are read again only
    /// as `rereads` says (or when never read yet), else the last ones are
    /// carried forward.
    fn snapshot(&mut self, rereads: Rereads) -> Reply {
        let installation = &self.installation;
        let remotes = match installation.remotes() {
            Ok(remotes) => remotes,
            Err(e) => return Reply::Failed(appbox::sandbox::chain(&e)),
        };
        let installed = installation.list().unwrap_or_default();
        let versions: BTreeMap<&str, &str> = installed
            .iter()
            .map(|app| (app.id.as_str(), app.entry.version.as_str()))
            .collect();
        let quiet: Events = std::rc::Rc::new(|_| {});
        let mut snapshot = Snapshot::default();
        for (name, remote) in &remotes.remotes {
            snapshot.remotes.push(RemoteItem {
                name: name.clone(),
                url: remote.url.clone(),
                enabled: remote.enabled,
                verify: remote.verify,
            });
            if !remote.enabled {
                continue;
            }
            match installation.remote_catalog(name, &quiet) {
                Ok((catalog, _, _)) => {
                    snapshot
                        .catalog
                        .extend(catalog.entries.into_iter().map(|entry| CatalogItem {
                            remote: name.clone(),
                            installed: versions.get(entry.id.as_str()).map(|v| v.to_string()),
                            entry,
                        }))
                }
                Err(e) => snapshot
                    .failures
                    .push(format!("{name}: {}", appbox::sandbox::chain(&e))),
            }
        }
        let updates = match self.updates.take() {
            Some(earlier) if !rereads.updates => earlier
                .into_iter()
                .filter(|plan| still_applies(plan, &installed))
                .collect(),
            // The catalogs just read are reused: no second fetch.
            _ => installation
                .plan_updates(&[], &quiet)
                .map(|(updates, _)| updates)
                .unwrap_or_default(),
        };
        snapshot.updates = updates.clone();
        self.updates = Some(updates);
        snapshot.unused_runtimes = installation.unused_runtimes().unwrap_or_default();
        let data = match self.data.take() {
            Some(earlier) if !rereads.data => earlier,
            _ => appdata::list(&self.facts.home).unwrap_or_default(),
        };
        let data_of = |id: &str| data.iter().find(|d| d.id == id).map(|d| d.bytes);
        for item in &installed {
            let bytes = self.deployment_size(&item.commit);
            snapshot.installed.push(InstalledItem {
                data_bytes: (item.kind == EntryKind::App).then(|| data_of(&item.id).unwrap_or(0)),
                installed: item.clone(),
                bytes,
            });
        }
        snapshot.leftover_data = data
            .iter()
            .filter(|d| !versions.contains_key(d.id.as_str()))
            .cloned()
            .collect();
        self.data = Some(data);
        Reply::Snapshot(Box::new(snapshot))
    }

    fn deployment_size(&mut self, commit: &str) -> u64 {
        if let Some(size) = self.sizes.get(commit) {
            return *size;
        }
        let size = self
            .installation
            .repo()
            .and_then(|repo| Ok(repo.stored_size(commit)?))
            .unwrap_or(0);
        self.sizes.insert(commit.to_owned(), size);
        size
    }
}

/// Events that report pulls to the window.
fn progress_events(replies: &async_channel::Sender<Reply>) -> Events {
    let progress = replies.clone();
    std::rc::Rc::new(move |event| {
        if let Event::Pulling { id, progress: p } = event {
            let _ = progress.send_blocking(Reply::Progress { id, progress: p });
        }
    })
}
