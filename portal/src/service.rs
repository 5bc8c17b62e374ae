//! The daemon: its state, its names on the host bus, and its objects.

use std::path::PathBuf;
use std::sync::Arc;

use crate::backend::{installed_backends, pick_backend, ImplChooser, ImplPrompter, PORTALS_DIR};
use crate::chooser::{Answer, Chooser, ChooserError, Kind, Question, Scripted, Unavailable};
use crate::consent::{NoPrompter, Prompter, ScriptedPrompter};
use crate::device::Device;
use crate::documents::Documents;
use crate::error::PortalError;
use crate::file_chooser::FileChooser;
use crate::grant::{Chosen, GrantError, Granter};
use crate::gui_dialog::GuiDialogs;
use crate::identity::{Caller, Identities};
use crate::notification::Notification;
use crate::open_uri::{Handler, OpenUri};
use crate::settings::Settings;
use appbox::consent::ConsentStore;
use appbox::documents::DocumentStore;
use appbox::hostfacts::HostFacts;

/// The portal's names on the host bus; see `appbox::busproxy::policy::PORTAL_ALIASES`.
pub const DESKTOP_BUS_NAME: &str = "org.appbox.Portal.Desktop";
pub const DOCUMENTS_BUS_NAME: &str = "org.appbox.Portal.Documents";
pub const DESKTOP_PATH: &str = "/org/freedesktop/portal/desktop";
pub const DOCUMENTS_PATH: &str = "/org/freedesktop/portal/documents";

/// Names the queue file of the scripted chooser (tests only). It is read
/// from the portal's own environment, which no sandbox can set.
pub const SCRIPTED_CHOOSER_ENV: &str = "APPBOX_PORTAL_SCRIPTED_CHOOSER";
/// Names the queue file of scripted consent answers (tests only), likewise.
pub const SCRIPTED_CONSENT_ENV: &str = "APPBOX_PORTAL_SCRIPTED_CONSENT";
/// Names the directory of the backends' `.portal` files instead of
/// [`PORTALS_DIR`], the variable xdg-desktop-portal itself reads. Read from
/// the portal's own environment, which no sandbox can set.
pub const PORTALS_DIR_ENV: &str = "XDG_DESKTOP_PORTAL_DIR";

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("cannot find the host's directories")]
    Host(#[from] appbox::hostfacts::HostFactsError),
    #[error("cannot find the appbox binary next to this one")]
    NoAppbox(#[source] std::io::Error),
    #[error("cannot connect to the session bus or take the portal's names (is another appbox-portal running?)")]
    Bus(#[from] zbus::Error),
}

/// What every interface shares.
pub struct Portal {
    identities: Identities,
    chooser: Box<dyn Chooser>,
    granter: Granter,
}

/// What the user chose, as the app will see it.
pub struct Choice {
    pub uris: Vec<String>,
    pub writable: bool,
}

impl Portal {
    pub fn new(identities: Identities, chooser: Box<dyn Chooser>, granter: Granter) -> Portal {
        Portal {
            identities,
            chooser,
            granter,
        }
    }

    pub fn granter(&self) -> &Granter {
        &self.granter
    }

    /// The verified caller of the call whose header this is, or NotAllowed.
    pub fn caller(&self, header: &zbus::message::Header<'_>) -> Result<Caller, PortalError> {
        let sender = header
            .sender()
            .ok_or_else(|| PortalError::NotAllowed("a call without a sender".into()))?;
        self.identities
            .caller(sender.as_str())
            .map_err(|e| PortalError::NotAllowed(appbox::sandbox::chain(&e)))
    }

    /// Asks the user, then grants and mounts what they chose. `None` when
    /// they cancelled. Blocks.
    pub fn choose(
        &self,
        caller: &Caller,
        question: &Question,
    ) -> Result<Option<Choice>, ChoiceError> {
        let (paths, writable) = match self.chooser.choose(question)? {
            Answer::Cancelled => return Ok(None),
            Answer::Chosen { paths, writable } => (paths, writable),
        };
        let opening = matches!(question.kind, Kind::OpenFile { .. });
        let single = matches!(
            question.kind,
            Kind::OpenFile {
                multiple: false,
                ..
            } | Kind::SaveFile { .. }
        );
        if single && paths.len() > 1 {
            return Err(ChoiceError::TooMany(paths.len()));
        }
        // Saving needs writing; opening writes only if the user allowed it.
        let writable = writable || !opening;
        let uris = paths
            .iter()
            .map(|path| {
                let chosen = if opening {
                    Chosen::existing(path)?
                } else {
                    Chosen::for_saving(path)?
                };
                self.granter.grant(caller, &chosen, writable)
            })
            .collect::<Result<_, _>>()?;
        Ok(Some(Choice { uris, writable }))
    }
}

/// Why a choice could not be carried out.
#[derive(Debug, thiserror::Error)]
pub enum ChoiceError {
    #[error(transparent)]
    Chooser(#[from] ChooserError),
    #[error(transparent)]
    Grant(#[from] GrantError),
    #[error("the chooser returned {0} files for a one-file request")]
    TooMany(usize),
}

/// Connects to the session bus, takes the portal's names and serves until
/// the bus goes away.
pub async fn serve() -> Result<(), ServiceError> {
    let facts = HostFacts::gather()?;
    let appbox = std::env::current_exe()
        .map_err(ServiceError::NoAppbox)?
        .with_file_name("appbox");
    let connection = zbus::connection::Builder::session().build().await?;
    let runtime = tokio::runtime::Handle::current();
    let portals_dir = std::env::var_os(PORTALS_DIR_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(PORTALS_DIR));
    let backends = installed_backends(&portals_dir);
    let desktops = facts
        .env
        .get("XDG_CURRENT_DESKTOP")
        .cloned()
        .unwrap_or_default();
    let backend = |interface: &str| pick_backend(&backends, interface, &desktops);
    // Without a backend, appbox's own dialogs, if there is a display to show them.
    let dialogs = GuiDialogs::find();
    let from_dialogs = |what: &str| {
        if let Some(dialogs) = &dialogs {
            eprintln!(
                "appbox-portal: no portal backend offers {what}; asking through {}",
                dialogs.program().display()
            );
        }
        dialogs.clone()
    };
    let chooser: Box<dyn Chooser> = match std::env::var_os(SCRIPTED_CHOOSER_ENV) {
        Some(queue) => {
            eprintln!(
                "appbox-portal: answering file choosers from {} (tests only)",
                PathBuf::from(&queue).display()
            );
            Box::new(Scripted::new(&PathBuf::from(queue)))
        }
        None => match backend("org.freedesktop.impl.portal.FileChooser") {
            Some(name) => Box::new(ImplChooser::new(connection.clone(), runtime.clone(), name)),
            None => match from_dialogs("a file chooser") {
                Some(dialogs) => Box::new(dialogs),
                None => Box::new(Unavailable),
            },
        },
    };
    let identities = Identities::new(&facts.runtime_dir, connection.server_guid().as_str());
    let granter = Granter::new(DocumentStore::new(&facts.data_home()), appbox);
    let portal = Arc::new(Portal::new(identities, chooser, granter));
    let server = connection.object_server();
    server
        .at(DESKTOP_PATH, FileChooser::new(portal.clone()))
        .await?;
    server
        .at(
            DESKTOP_PATH,
            OpenUri::new(portal.clone(), Handler::from_env()),
        )
        .await?;
    server
        .at(
            DESKTOP_PATH,
            Notification::start(portal.clone(), &connection).await,
        )
        .await?;
    server
        .at(DESKTOP_PATH, Settings::start(&connection).await)
        .await?;
    let prompter: Arc<dyn Prompter> = match std::env::var_os(SCRIPTED_CONSENT_ENV) {
        Some(queue) => Arc::new(ScriptedPrompter::new(&PathBuf::from(queue))),
        None => match backend("org.freedesktop.impl.portal.Access") {
            Some(name) => Arc::new(ImplPrompter::new(connection.clone(), runtime, name)),
            None => match from_dialogs("consent dialogs") {
                Some(dialogs) => Arc::new(dialogs),
                None => Arc::new(NoPrompter),
            },
        },
    };
    server
        .at(
            DESKTOP_PATH,
            Device::new(
                portal.clone(),
                ConsentStore::new(&facts.data_home()),
                prompter,
            ),
        )
        .await?;
    server.at(DOCUMENTS_PATH, Documents::new(portal)).await?;
    // The names come last, so no call arrives before the objects exist.
    connection.request_name(DESKTOP_BUS_NAME).await?;
    connection.request_name(DOCUMENTS_BUS_NAME).await?;
    // The portal lives as long as the session bus: one the bus started
    // would otherwise outlive it.
    connection.closed().await;
    Ok(())
}
