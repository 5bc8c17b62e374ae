//! appbox: a sandbox for Linux desktop apps.
//!
//! The pieces, in the order a launch uses them:
//! - [`metadata`] and [`permissions`] read what an app is and may do;
//! - [`deploy`] finds the app and its runtime on disk;
//! - [`hostfacts`] gathers what the planner needs to know about the host;
//! - [`plan`] turns all of that into a [`plan::SandboxPlan`], without side effects;
//! - [`sandbox`] applies the plan to the kernel and watches the app;
//! - [`instance`] records running sandboxes for `ps`, `kill` and `enter`;
//! - [`documents`] keeps the files the portal granted to apps.

pub mod appdata;
pub mod appid;
pub mod busproxy;
pub mod consent;
pub mod deploy;
pub mod documents;
pub mod grants;
pub mod hostfacts;
pub mod instance;
pub mod jsonstore;
pub mod metadata;
pub mod overrides;
pub mod permissions;
pub mod plan;
pub mod portal_activation;
pub mod portal_dialog;
pub mod private_dir;
pub mod sandbox;
pub mod seccomp_policy;
pub mod store;
pub mod text;
pub mod xauth;
