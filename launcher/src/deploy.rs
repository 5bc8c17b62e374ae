//! Where apps and runtimes live on disk, and turning an app into a [`LaunchRequest`].
//!
//! An app directory holds `metadata.toml` and `files/` (which becomes `/app`).
//! Installed apps and runtimes are deployed by the store under
//! `~/.local/share/appbox/{app,runtime}/ID/current/`; the launcher only reads them.

use std::path::{Path, PathBuf};

use crate::appid::AppId;
use crate::hostfacts::HostFacts;
use crate::metadata::{AppMetadata, MetadataError, Runtime};
use crate::plan::LaunchRequest;

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("{id} is not installed (no {path}); install it with `appbox install REMOTE {id}`, or run an unpacked app with `appbox run --app-dir DIR`")]
    NotInstalled { id: AppId, path: PathBuf },
    #[error("{id} needs the runtime {runtime}, which is not installed (no {path}); install it with `appbox install REMOTE {runtime}`")]
    MissingRuntime {
        id: AppId,
        runtime: AppId,
        path: PathBuf,
    },
    #[error("{path} has no files/ directory; an app directory holds metadata.toml and files/")]
    NoFiles { path: PathBuf },
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    #[error("cannot resolve {path}")]
    Resolve {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// `$XDG_DATA_HOME/appbox`, or `~/.local/share/appbox`.
pub fn store_dir(facts: &HostFacts) -> PathBuf {
    facts.data_home().join("appbox")
}

/// Resolves `current` (the store swaps this link atomically) to the deployment
/// it points at now, so the rest of the launch never follows a link again and a
/// running instance keeps its deployment even if the link moves.
fn resolve_current(dir: &Path) -> Result<PathBuf, std::io::Error> {
    std::fs::canonicalize(dir.join("current"))
}

/// An unpacked app directory.
pub fn request_for_app_dir(dir: &Path) -> Result<LaunchRequest, DeployError> {
    let dir = std::fs::canonicalize(dir).map_err(|source| DeployError::Resolve {
        path: dir.to_owned(),
        source,
    })?;
    let metadata = AppMetadata::load(&dir.join("metadata.toml"))?;
    let files = dir.join("files");
    if !files.is_dir() {
        return Err(DeployError::NoFiles { path: dir });
    }
    Ok(LaunchRequest::new(metadata, files))
}

/// An installed app, by id.
pub fn request_for_installed(store: &Path, id: &AppId) -> Result<LaunchRequest, DeployError> {
    let app_dir = store.join("app").join(id.as_str());
    let deployment = resolve_current(&app_dir).map_err(|_| DeployError::NotInstalled {
        id: id.clone(),
        path: app_dir.join("current"),
    })?;
    let metadata = AppMetadata::load(&deployment.join("metadata.toml"))?;
    if metadata.id != *id {
        return Err(DeployError::Metadata(MetadataError::Field {
            file: deployment.join("metadata.toml"),
            field: "id".into(),
            problem: format!("is {} but the app is deployed as {id}", metadata.id),
        }));
    }
    let files = deployment.join("files");
    if !files.is_dir() {
        return Err(DeployError::NoFiles { path: deployment });
    }
    Ok(LaunchRequest::new(metadata, files))
}

/// Fills in the runtime's files, which must be installed.
pub fn resolve_runtime(store: &Path, request: &mut LaunchRequest) -> Result<(), DeployError> {
    let Runtime::Installed(runtime) = &request.metadata.runtime else {
        return Ok(());
    };
    let dir = store.join("runtime").join(runtime.as_str());
    let missing = || DeployError::MissingRuntime {
        id: request.metadata.id.clone(),
        runtime: runtime.clone(),
        path: dir.join("current"),
    };
    let deployment = resolve_current(&dir).map_err(|_| missing())?;
    let files = deployment.join("files");
    if !files.is_dir() {
        return Err(missing());
    }
    request.runtime_files = Some(files);
    Ok(())
}
