//! Store work off the main thread. The `appbox` store library is not
//! thread-safe (it holds libostree objects), so one worker thread owns an
//! `Installation` and answers requests in order; replies come back to the
//! main loop through a channel the window awaits.

use std::collections::BTreeMap;
use std::path::PathBuf;

use appbox::hostfacts::HostFacts;
use appbox::store::install::{Events, Installation};

use crate::model::catalog::CatalogItem;

pub enum Request {
    /// Every enabled remote's catalog, with what is installed.
    LoadCatalog,
}

pub enum Reply {
    /// The catalog, and the remotes that could not be read, with why.
    Catalog {
        items: Vec<CatalogItem>,
        failures: Vec<String>,
    },
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

/// Starts the worker; replies arrive on the returned receiver.
pub fn start() -> (Worker, async_channel::Receiver<Reply>) {
    let (requests, incoming) = std::sync::mpsc::channel::<Request>();
    let (replies, receiver) = async_channel::unbounded();
    std::thread::spawn(move || {
        let installation = match open_installation() {
            Ok(installation) => installation,
            Err(e) => {
                let _ = replies.send_blocking(Reply::Failed(e));
                return;
            }
        };
        while let Ok(request) = incoming.recv() {
            let reply = match request {
                Request::LoadCatalog => load_catalog(&installation),
            };
            if replies.send_blocking(reply).is_err() {
                return;
            }
        }
    });
    (Worker { requests }, receiver)
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
