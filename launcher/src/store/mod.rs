//! The store: manifests, signed OSTree repositories, remotes, installs.
//!
//! Only the `appbox-store` binary and the GUI link this code's OSTree side;
//! `appbox run` never does, because loading libostree and GLib would cost it
//! more than the whole launch (see README, "Two binaries").

pub mod build;
pub mod catalog;
pub mod cli;
pub mod export;
pub mod gvariant;
pub mod install;
pub mod manifest;
pub mod remotes;
pub mod repo;
pub mod sign;
pub mod sources;
