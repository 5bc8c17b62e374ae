//! The host's portal backends: the desktop's own dialogs, as
//! xdg-desktop-portal uses them. A backend (xdg-desktop-portal-gtk,
//! -gnome, -kde) owns a name such as `org.freedesktop.impl.portal.desktop.gtk`
//! and is listed in `/usr/share/xdg-desktop-portal/portals/*.portal` with the
//! `org.freedesktop.impl.portal.*` interfaces it implements.
//!
//! appbox's portal asks the backend for the file chooser and for consent
//! dialogs; what to grant stays appbox's decision.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use appbox::portal_dialog::file_uri_path;
use zbus::{Connection, OwnedObjectPath, OwnedVariant, Variant};

use crate::chooser::{Answer, Chooser, ChooserError, Kind, Question};
use crate::consent::{self, Decision, PromptError, Prompter};

pub const PORTALS_DIR: &str = "/usr/share/xdg-desktop-portal/portals";
const BACKEND_PATH: &str = "/org/freedesktop/portal/desktop";
const FILE_CHOOSER: &str = "org.freedesktop.impl.portal.FileChooser";
const ACCESS: &str = "org.freedesktop.impl.portal.Access";

#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("the desktop's portal backend {name} failed")]
    Call {
        name: String,
        #[source]
        source: zbus::Error,
    },
    #[error("the desktop's portal backend {name} answered {response}")]
    Failed { name: String, response: u32 },
    #[error("the desktop's file chooser returned {0}, which is not a local file")]
    NotAFile(String),
}

/// One `.portal` file: the backend's bus name, its interfaces, and the
/// desktops it is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendInfo {
    pub bus_name: String,
    pub interfaces: Vec<String>,
    pub use_in: Vec<String>,
}

/// Parses a `.portal` file; `None` if it has no bus name.
pub fn parse_portal_file(text: &str) -> Option<BackendInfo> {
    let mut in_portal = false;
    let (mut bus_name, mut interfaces, mut use_in) = (None, Vec::new(), Vec::new());
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_portal = line == "[portal]";
            continue;
        }
        let Some((key, value)) = line.split_once('=').filter(|_| in_portal) else {
            continue;
        };
        let list = || {
            value
                .split(';')
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        match key.trim() {
            "DBusName" => bus_name = Some(value.trim().to_owned()),
            "Interfaces" => interfaces = list(),
            "UseIn" => use_in = list(),
            _ => {}
        }
    }
    Some(BackendInfo {
        bus_name: bus_name.filter(|n| !n.is_empty())?,
        interfaces,
        use_in,
    })
}

/// The backend for `interface`: one made for a desktop in
/// `current_desktops` (`XDG_CURRENT_DESKTOP`, `:`-separated) first, else any,
/// by file name order.
pub fn pick_backend(
    backends: &[BackendInfo],
    interface: &str,
    current_desktops: &str,
) -> Option<String> {
    let desktops: Vec<String> = current_desktops
        .split(':')
        .filter(|d| !d.is_empty())
        .map(str::to_lowercase)
        .collect();
    let offering: Vec<&BackendInfo> = backends
        .iter()
        .filter(|b| b.interfaces.iter().any(|i| i == interface))
        .collect();
    offering
        .iter()
        .find(|b| {
            b.use_in
                .iter()
                .any(|d| desktops.contains(&d.to_lowercase()))
        })
        .or_else(|| offering.first())
        .map(|b| b.bus_name.clone())
}

/// The backends installed in `dir`.
pub fn installed_backends(dir: &Path) -> Vec<BackendInfo> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "portal"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .filter_map(|text| parse_portal_file(&text))
        .collect()
}

/// A call to a backend, from a blocking thread of the portal's runtime.
struct BackendCall {
    connection: Connection,
    runtime: tokio::runtime::Handle,
    bus_name: String,
}

impl BackendCall {
    fn call<B>(
        &self,
        interface: &str,
        method: &str,
        body: &B,
    ) -> Result<(u32, HashMap<String, OwnedVariant>), BackendError>
    where
        B: serde::Serialize + zbus::DynamicType,
    {
        let failed = |source| BackendError::Call {
            name: self.bus_name.clone(),
            source,
        };
        self.runtime.block_on(async {
            let reply = self
                .connection
                .call_method(
                    Some(self.bus_name.as_str()),
                    BACKEND_PATH,
                    Some(interface),
                    method,
                    body,
                )
                .await
                .map_err(failed)?;
            reply.body().deserialize().map_err(failed)
        })
    }
}

/// The desktop's file chooser.
pub struct ImplChooser(BackendCall);

impl ImplChooser {
    pub fn new(connection: Connection, runtime: tokio::runtime::Handle, bus_name: String) -> Self {
        ImplChooser(BackendCall {
            connection,
            runtime,
            bus_name,
        })
    }
}

impl Chooser for ImplChooser {
    fn choose(&self, question: &Question) -> Result<Answer, ChooserError> {
        let method = match question.kind {
            Kind::OpenFile { .. } => "OpenFile",
            Kind::SaveFile { .. } => "SaveFile",
            Kind::SaveFiles { .. } => "SaveFiles",
        };
        let handle = OwnedObjectPath::try_from(question.handle.as_str()).map_err(|source| {
            BackendError::Call {
                name: self.0.bus_name.clone(),
                source,
            }
        })?;
        let (response, results) = self.0.call(
            FILE_CHOOSER,
            method,
            &(
                handle,
                question.app_id.as_str(),
                question.parent_window.as_str(),
                question.title.as_str(),
                &question.options,
            ),
        )?;
        match response {
            0 => {}
            1 => return Ok(Answer::Cancelled),
            other => {
                return Err(BackendError::Failed {
                    name: self.0.bus_name.clone(),
                    response: other,
                }
                .into())
            }
        }
        let uris: Vec<String> = results
            .get("uris")
            .and_then(|v| v.try_clone().ok())
            .and_then(|v| Vec::<String>::try_from(v).ok())
            .unwrap_or_default();
        let paths = uris
            .iter()
            .map(|uri| file_uri_path(uri).ok_or_else(|| BackendError::NotAFile(uri.clone())))
            .collect::<Result<Vec<_>, _>>()?;
        let writable = results
            .get("writable")
            .and_then(|v| bool::try_from(v).ok())
            .unwrap_or(true);
        Ok(Answer::Chosen { paths, writable })
    }
}

/// One of AccessDialog's `choices` (`a(ssa(ss)s)`): id, label, options
/// (none makes a check box), default.
type Choice<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>, &'a str);

/// The desktop's consent dialog (`AccessDialog`), with a "remember" choice.
pub struct ImplPrompter(BackendCall);

impl ImplPrompter {
    pub fn new(connection: Connection, runtime: tokio::runtime::Handle, bus_name: String) -> Self {
        ImplPrompter(BackendCall {
            connection,
            runtime,
            bus_name,
        })
    }
}

impl Prompter for ImplPrompter {
    fn ask(&self, question: &consent::Question) -> Result<Decision, PromptError> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let handle = format!(
            "/org/freedesktop/portal/desktop/request/appbox/consent{}",
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let handle = OwnedObjectPath::try_from(handle).map_err(|source| BackendError::Call {
            name: self.0.bus_name.clone(),
            source,
        })?;
        let title = format!("Allow {} to use {}?", question.app_id, question.id);
        let body = format!(
            "The app {} asks for {} ({}). You can change this later with `appbox permission-set`.",
            question.app_id, question.id, question.table
        );
        let choices: Vec<Choice<'_>> =
            vec![("remember", "Remember this choice", Vec::new(), "false")];
        let mut options: HashMap<&str, Variant<'_>> = HashMap::new();
        options.insert("grant_label", Variant::from("Allow"));
        options.insert("deny_label", Variant::from("Deny"));
        options.insert("choices", Variant::from(choices));
        let (response, results) = self.0.call(
            ACCESS,
            "AccessDialog",
            &(
                handle,
                question.app_id.as_str(),
                "",
                title.as_str(),
                "",
                body.as_str(),
                options,
            ),
        )?;
        let remember = results
            .get("choices")
            .and_then(|v| v.try_clone().ok())
            .and_then(|v| Vec::<(String, String)>::try_from(v).ok())
            .is_some_and(|chosen| {
                chosen
                    .iter()
                    .any(|(id, value)| id == "remember" && value == "true")
            });
        Ok(Decision {
            allow: response == 0,
            remember,
        })
    }
}

impl From<BackendError> for PromptError {
    fn from(e: BackendError) -> Self {
        PromptError::Backend(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portal_files_are_read_and_backends_picked_by_desktop() {
        let gtk = parse_portal_file(
            "[portal]\nDBusName=org.freedesktop.impl.portal.desktop.gtk\nInterfaces=org.freedesktop.impl.portal.FileChooser;org.freedesktop.impl.portal.Access;\nUseIn=gnome\n",
        )
        .unwrap();
        let kde = parse_portal_file(
            "[portal]\nDBusName=org.freedesktop.impl.portal.desktop.kde\nInterfaces=org.freedesktop.impl.portal.FileChooser\nUseIn=KDE\n",
        )
        .unwrap();
        assert_eq!(gtk.use_in, ["gnome"]);
        assert!(parse_portal_file("[portal]\nInterfaces=x\n").is_none());
        assert!(parse_portal_file("[other]\nDBusName=x\n").is_none());
        let both = [gtk, kde];
        assert_eq!(
            pick_backend(&both, FILE_CHOOSER, "KDE").as_deref(),
            Some("org.freedesktop.impl.portal.desktop.kde")
        );
        assert_eq!(
            pick_backend(&both, FILE_CHOOSER, "ubuntu:GNOME").as_deref(),
            Some("org.freedesktop.impl.portal.desktop.gtk")
        );
        assert_eq!(
            pick_backend(&both, FILE_CHOOSER, "").as_deref(),
            Some("org.freedesktop.impl.portal.desktop.gtk")
        );
        assert_eq!(
            pick_backend(&both, ACCESS, "KDE").as_deref(),
            Some("org.freedesktop.impl.portal.desktop.gtk")
        );
        assert_eq!(pick_backend(&both, "org.example.None", "KDE"), None);
    }

    #[test]
    fn only_local_file_uris_become_paths() {
        assert_eq!(
            file_uri_path("file:///home/ada/a%20b%C3%A4.txt").unwrap(),
            Path::new("/home/ada/a bä.txt")
        );
        assert_eq!(
            file_uri_path("file://localhost/etc/x").unwrap(),
            Path::new("/etc/x")
        );
        for bad in [
            "http://example.org/x",
            "file://otherhost/x",
            "file:relative",
            "file:///a%00b",
            "file:///a%zz",
            "file:///a%2",
            "file:///a?q",
        ] {
            assert!(file_uri_path(bad).is_none(), "{bad}");
        }
    }
}
