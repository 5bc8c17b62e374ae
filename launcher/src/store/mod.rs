//! The store: manifests, signed OSTree repositories, remotes, installs.
//!
//! Only the `appbox-store` binary and the GUI link this code's OSTree side;
//! `appbox run` never does, because loading libostree and GLib would cost it
//! more than the whole launch (see README, "Two binaries").

use std::path::{Path, PathBuf};

pub mod build;
pub mod bundle;
pub mod catalog;
pub mod cli;
pub mod export;
pub mod gvariant;
pub mod install;
pub mod manifest;
pub mod oci;
pub mod ostree_tar;
pub mod remotes;
pub mod repo;
pub mod sign;
pub mod sources;

/// Replaces `path` with `contents` atomically: the bytes are written beside it
/// and renamed over it, so a crash leaves the old file or the new one.
pub(crate) fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut staging = path.as_os_str().to_owned();
    staging.push(format!(".tmp{}", std::process::id()));
    let staging = PathBuf::from(staging);
    std::fs::write(&staging, contents)?;
    std::fs::rename(&staging, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&staging);
    })
}
