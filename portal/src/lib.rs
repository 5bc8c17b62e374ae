//! appbox-portal: the xdg-desktop-portal API for apps in appbox sandboxes.
//!
//! It owns its own names on the host's session bus
//! ([`service::DESKTOP_BUS_NAME`], [`service::DOCUMENTS_BUS_NAME`]), so it never
//! clashes with the host's xdg-desktop-portal. Each sandbox's bus proxy shows
//! these names to the app under the standard ones
//! (`org.freedesktop.portal.Desktop`, `org.freedesktop.portal.Documents`).
//!
//! Who calls is never taken from the message: the caller's unique name is
//! the proxy's connection for one sandbox instance, and the proxy recorded
//! which instance that is ([`identity`]).

pub mod backend;
pub mod chooser;
pub mod consent;
pub mod device;
pub mod documents;
pub mod error;
pub mod file_chooser;
pub mod grant;
pub mod gui_dialog;
pub mod identity;
pub mod notification;
pub mod open_uri;
pub mod request;
pub mod script;
pub mod service;
pub mod settings;
