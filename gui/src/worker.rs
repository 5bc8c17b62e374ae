//! Store work off the main thread. The `appbox` store library is not
//! thread-safe (it holds libostree objects), so one worker thread owns an
//! `Installation` and answers requests in order; replies come back to the
//! main loop through a channel the window awaits.

use std::collections::BTreeMap;
use std::path::PathBuf;

use appbox::hostfacts::HostFacts;
use appbox::store::install::{Event, Events, Installation};

use crate::model::catalog::CatalogItem;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Every enabled remote's catalog, with what is installed.
    LoadCatalog,
    /// Installs an app (and the runtime it needs) from a remote.
    Install { remote: String, id: String },
    /// Removes an installed app; its data stays.
    Uninstall { id: String },
}

#[derive(Debug)]
pub enum Reply {
    /// The catalog, and the remotes that could not be read, with why.
    Catalog {
        items: Vec<CatalogItem>,
        failures: Vec<String>,
    },
    /// A pull under way: objects fetched of those requested, and bytes.
    Progress {
        id: String,
        fetched: u32,
        requested: u32,
        bytes: u64,
    },
    /// An install or uninstall ended; a fresh `Catalog` follows.
    Finished {
        request: Request,
        error: Option<String>,
    },
    /// The store itself cannot be used.
    Failed(String),
}

/// Sends requests to the worker thread.
#[derive(Clone)]
pub struct Worker {
    requests: std::sync::mpsc::Sender<Request>,
}

impl Worker {
    pub fn send(&self, request: Request) {
        // The thread outlives the window; a closed channel means it died,
        // which its last reply has already reported.
        let _ = self.requests.send(request);
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

/// Starts the worker; replies arrive on the returned receiver.
pub fn start() -> (Worker, async_channel::Receiver<Reply>, WorkerThread) {
    let (requests, incoming) = std::sync::mpsc::channel::<Request>();
    let (replies, receiver) = async_channel::unbounded();
    let thread = std::thread::spawn(move || {
        let installation = match open_installation() {
            Ok(installation) => installation,
            Err(e) => {
                let _ = replies.send_blocking(Reply::Failed(e));
                return;
            }
        };
        while let Ok(request) = incoming.recv() {
            let mut out = Vec::new();
            match &request {
                Request::LoadCatalog => {}
                Request::Install { remote, id } => {
                    let error = install(&installation, remote, id, &replies).err();
                    out.push(Reply::Finished { request, error });
                }
                Request::Uninstall { id } => {
                    let error = installation
                        .uninstall(id, None)
                        .err()
                        .map(|e| appbox::sandbox::chain(&e));
                    out.push(Reply::Finished { request, error });
                }
            }
            // Whatever changed, the window shows the catalog as it is now.
            out.push(load_catalog(&installation));
            for reply in out {
                if replies.send_blocking(reply).is_err() {
                    return;
                }
            }
        }
    });
    (Worker { requests }, receiver, WorkerThread(thread))
}

fn open_installation() -> Result<Installation, String> {
    let facts = HostFacts::gather().map_err(|e| appbox::sandbox::chain(&e))?;
    // The store runs apps with the `appbox` next to it.
    let appbox = std::env::current_exe()
        .map(|exe| exe.with_file_name("appbox"))
        .unwrap_or_else(|_| PathBuf::from("appbox"));
    Ok(Installation::new(
        appbox::deploy::store_dir(&facts),
        &facts.config_home().join("appbox"),
        appbox,
        facts.runtime_dir.clone(),
    ))
}

fn install(
    installation: &Installation,
    remote: &str,
    id: &str,
    replies: &async_channel::Sender<Reply>,
) -> Result<(), String> {
    let app = appbox::appid::AppId::parse(id).map_err(|e| e.to_string())?;
    let progress = replies.clone();
    let events: Events = std::rc::Rc::new(move |event| {
        if let Event::Pulling { id, progress: p } = event {
            let _ = progress.send_blocking(Reply::Progress {
                id,
                fetched: p.fetched,
                requested: p.requested,
                bytes: p.bytes,
            });
        }
    });
    installation
        .install(remote, &app, &events)
        .map(|_| ())
        .map_err(|e| appbox::sandbox::chain(&e))
}

fn load_catalog(installation: &Installation) -> Reply {
    let remotes = match installation.remotes() {
        Ok(remotes) => remotes,
        Err(e) => return Reply::Failed(appbox::sandbox::chain(&e)),
    };
    let installed: BTreeMap<String, String> = installation
        .list()
        .unwrap_or_default()
        .into_iter()
        .map(|app| (app.id, app.entry.version))
        .collect();
    let events: Events = std::rc::Rc::new(|_| {});
    let mut items = Vec::new();
    let mut failures = Vec::new();
    for (name, remote) in &remotes.remotes {
        if !remote.enabled {
            continue;
        }
        match installation.remote_catalog(name, &events) {
            Ok((catalog, _, _)) => {
                items.extend(catalog.entries.into_iter().map(|entry| CatalogItem {
                    remote: name.clone(),
                    installed: installed.get(&entry.id).cloned(),
                    entry,
                }))
            }
            Err(e) => failures.push(format!("{name}: {}", appbox::sandbox::chain(&e))),
        }
    }
    Reply::Catalog { items, failures }
}
