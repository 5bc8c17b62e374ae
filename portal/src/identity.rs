//! Who is calling: the sandbox instance behind a unique name on the bus.
//!
//! Each sandbox reaches the bus only through its own proxy, and the proxy
//! records each of its upstream connections' unique names under
//! `$XDG_RUNTIME_DIR/appbox/peers/<bus guid>/`, naming the instance. The
//! instance's record (kept by its monitor) gives the app id and the plan.
//! Nothing the app wrote, and no PID lookup, takes part.

use std::path::{Path, PathBuf};

use appbox::appid::AppId;
use appbox::busproxy::peers::{lookup_peer, PeerError};
use appbox::instance::{self, InstanceError, InstanceRecord, Registry};

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{0} is not an app in an appbox sandbox; host apps use the host's xdg-desktop-portal")]
    NotSandboxed(String),
    #[error("cannot read the record of {0}")]
    Peer(String, #[source] PeerError),
    #[error("the sandbox of {0} is gone")]
    Instance(String, #[source] InstanceError),
}

/// A verified caller.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Its unique name on the bus.
    pub unique_name: String,
    pub app_id: AppId,
    pub instance: u64,
    /// Where granted documents appear inside its sandbox.
    pub doc_dir: PathBuf,
}

/// Maps callers to instances for one bus.
pub struct Identities {
    runtime_dir: PathBuf,
    bus_guid: String,
}

impl Identities {
    pub fn new(runtime_dir: &Path, bus_guid: &str) -> Identities {
        Identities {
            runtime_dir: runtime_dir.to_owned(),
            bus_guid: bus_guid.to_owned(),
        }
    }

    /// The instance behind `unique_name`, if it still runs.
    pub fn caller(&self, unique_name: &str) -> Result<Caller, IdentityError> {
        let instance = lookup_peer(&self.runtime_dir, &self.bus_guid, unique_name)
            .map_err(|e| IdentityError::Peer(unique_name.to_owned(), e))?
            .ok_or_else(|| IdentityError::NotSandboxed(unique_name.to_owned()))?;
        let gone = |e| IdentityError::Instance(unique_name.to_owned(), e);
        let registry = Registry::open(&self.runtime_dir).map_err(gone)?;
        let record = registry.find(&instance.to_string()).map_err(gone)?;
        // The record outlives a monitor killed with SIGKILL; the process must
        // still be the one the record names.
        instance::verified_pidfd(&record).map_err(gone)?;
        Ok(Caller {
            unique_name: unique_name.to_owned(),
            doc_dir: doc_dir(&record),
            app_id: record.plan.app_id.clone(),
            instance: record.instance,
        })
    }
}

/// `$XDG_RUNTIME_DIR/doc` as the sandbox sees it.
fn doc_dir(record: &InstanceRecord) -> PathBuf {
    let runtime = record
        .plan
        .env
        .get("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(format!("/run/user/{}", record.plan.ids.app_uid)));
    runtime.join("doc")
}
