//! `org.freedesktop.portal.Notification`: AddNotification and
//! RemoveNotification, forwarded to the host's notification server
//! (`org.freedesktop.Notifications`, Notify and CloseNotification) on the
//! portal's own connection.
//!
//! - The app name the server shows, and its `desktop-entry` hint, are the
//!   app id appbox knows the caller by, never one the app gave.
//! - Notifications are kept per (app id, notification id): adding an id
//!   again replaces that app's notification, and an app can only withdraw
//!   its own. At most [`MAX_LIVE`] per app are on screen at once.
//! - Only `title`, `body` (each at most [`MAX_TEXT`] bytes; markup is
//!   escaped when the server renders it), `priority`, themed `icon` names,
//!   `default-action` and `buttons` are forwarded. Bytes and file icons are
//!   dropped: the server would read a file or an image chosen by the app.
//! - When the server reports ActionInvoked for one of these notifications
//!   (checked against the server that showed it), the app that added it
//!   gets `ActionInvoked(id, action, [target])`, sent to it alone. Actions
//!   named `app.*` are meant for `org.freedesktop.Application.ActivateAction`
//!   on the app's own bus name, which this portal does not call; they are
//!   reported through ActionInvoked as well.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;
use zbus::message::Header;
use zbus::object_server::SignalEmitter;
use zbus::{interface, Connection, OwnedVariant, Variant};

use crate::error::PortalError;
use crate::service::{Portal, DESKTOP_PATH};

pub const INTERFACE: &str = "org.freedesktop.portal.Notification";
pub const SERVER_NAME: &str = "org.freedesktop.Notifications";
pub const SERVER_PATH: &str = "/org/freedesktop/Notifications";
pub const SERVER_INTERFACE: &str = "org.freedesktop.Notifications";

/// The longest title or body, in bytes.
pub const MAX_TEXT: usize = 4096;
/// Notifications an app may have on screen at once.
pub const MAX_LIVE: usize = 64;
/// The longest notification id, action name or button label, in bytes.
pub const MAX_NAME: usize = 255;
pub const MAX_BUTTONS: usize = 8;
/// The largest action target, in (roughly counted) bytes.
pub const MAX_TARGET: usize = 4096;
/// How long the server has to answer.
const SERVER_TIMEOUT: Duration = Duration::from_secs(10);

/// What was wrong with a notification.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NotificationError {
    #[error("the notification id must be 1 to {MAX_NAME} bytes without control characters")]
    BadId,
    #[error("{0} has the wrong type")]
    WrongType(&'static str),
    #[error("{0} is longer than {MAX_TEXT} bytes")]
    TooLong(&'static str),
    #[error("{0} must be 1 to {MAX_NAME} bytes without control characters")]
    BadName(&'static str),
    #[error("priority {0:?} is not one of low, normal, high, urgent")]
    BadPriority(String),
    #[error("a notification has at most {MAX_BUTTONS} buttons")]
    TooManyButtons,
    #[error("a button needs a label and an action")]
    BadButton,
    #[error("an action target holds a file descriptor or is larger than {MAX_TARGET} bytes")]
    BadTarget,
    #[error("the app has {MAX_LIVE} notifications on screen already; remove some first")]
    TooMany,
}

impl From<NotificationError> for PortalError {
    fn from(e: NotificationError) -> PortalError {
        match e {
            NotificationError::TooMany => PortalError::NotAllowed(e.to_string()),
            _ => PortalError::InvalidArgument(e.to_string()),
        }
    }
}

/// One action of a shown notification: what the app named, and its target.
#[derive(Debug, PartialEq)]
pub struct Action {
    pub name: String,
    pub target: Option<OwnedVariant>,
}

/// A notification as the server will get it.
#[derive(Debug, PartialEq)]
pub struct Prepared {
    pub summary: String,
    pub body: String,
    /// A themed icon name, or empty.
    pub icon: String,
    /// 0 low, 1 normal, 2 critical.
    pub urgency: u8,
    /// The server's action keys and labels, in order.
    pub server_actions: Vec<String>,
    /// The server's action key → the app's action.
    pub actions: HashMap<String, Action>,
}

type Vardict = HashMap<String, OwnedVariant>;

/// Checks an app's notification and turns it into what the server gets.
/// `markup`: whether the server renders markup in bodies, which is then
/// escaped.
pub fn prepare(notification: &Vardict, markup: bool) -> Result<Prepared, NotificationError> {
    let text = |key: &'static str| -> Result<String, NotificationError> {
        let Some(value) = notification.get(key) else {
            return Ok(String::new());
        };
        let Variant::Str(s) = &**value else {
            return Err(NotificationError::WrongType(key));
        };
        if s.len() > MAX_TEXT {
            return Err(NotificationError::TooLong(key));
        }
        Ok(clean_text(s.as_str()))
    };
    let summary = text("title")?;
    let mut body = text("body")?;
    if markup {
        body = escape_markup(&body);
    }
    let urgency = match notification.get("priority").map(|v| &**v) {
        None => 1,
        Some(Variant::Str(p)) => match p.as_str() {
            "low" => 0,
            "normal" | "high" => 1,
            "urgent" => 2,
            other => return Err(NotificationError::BadPriority(other.to_owned())),
        },
        Some(_) => return Err(NotificationError::WrongType("priority")),
    };
    let icon = notification
        .get("icon")
        .map(|v| themed_icon(v))
        .transpose()?
        .flatten()
        .unwrap_or_default();
    let mut server_actions = Vec::new();
    let mut actions = HashMap::new();
    if let Some(value) = notification.get("default-action") {
        let Variant::Str(name) = &**value else {
            return Err(NotificationError::WrongType("default-action"));
        };
        let name = checked_name(name.as_str(), "default-action")?;
        let target = notification
            .get("default-action-target")
            .map(|v| target(v))
            .transpose()?;
        server_actions.extend(["default".to_owned(), String::new()]);
        actions.insert("default".to_owned(), Action { name, target });
    }
    if let Some(value) = notification.get("buttons") {
        let Variant::Array(buttons) = &**value else {
            return Err(NotificationError::WrongType("buttons"));
        };
        if buttons.len() > MAX_BUTTONS {
            return Err(NotificationError::TooManyButtons);
        }
        for (i, button) in buttons.inner().iter().enumerate() {
            let Variant::Dict(button) = button else {
                return Err(NotificationError::WrongType("buttons"));
            };
            let mut label = None;
            let mut name = None;
            let mut button_target = None;
            for (key, value) in button.iter() {
                let Variant::Str(key) = key else {
                    return Err(NotificationError::WrongType("buttons"));
                };
                match (key.as_str(), unwrap_variant(value)) {
                    ("label", Variant::Str(s)) => label = Some(checked_name(s.as_str(), "label")?),
                    ("action", Variant::Str(s)) => name = Some(checked_name(s.as_str(), "action")?),
                    ("target", v) => button_target = Some(target(v)?),
                    ("label" | "action", _) => return Err(NotificationError::WrongType("buttons")),
                    _ => {}
                }
            }
            let (Some(label), Some(name)) = (label, name) else {
                return Err(NotificationError::BadButton);
            };
            let key = format!("button{i}");
            server_actions.extend([key.clone(), label]);
            actions.insert(
                key,
                Action {
                    name,
                    target: button_target,
                },
            );
        }
    }
    Ok(Prepared {
        summary,
        body,
        icon,
        urgency,
        server_actions,
        actions,
    })
}

/// Text without control characters other than newline and tab.
fn clean_text(s: &str) -> String {
    s.chars()
        .filter(|&c| !c.is_control() || c == '\n' || c == '\t')
        .collect()
}

fn escape_markup(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

fn checked_name(s: &str, what: &'static str) -> Result<String, NotificationError> {
    if s.is_empty() || s.len() > MAX_NAME || s.chars().any(char::is_control) {
        return Err(NotificationError::BadName(what));
    }
    Ok(s.to_owned())
}

/// A themed icon's first usable name. GIO serializes a themed icon as a
/// plain string or as `("themed", <["name", ...]>)`; other icons (bytes,
/// files) are dropped.
fn themed_icon(value: &Variant<'_>) -> Result<Option<String>, NotificationError> {
    let usable = |name: &str| {
        !name.is_empty()
            && name.len() <= MAX_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.+".contains(&b))
            && !name.starts_with('.')
    };
    match value {
        Variant::Str(name) => Ok(usable(name.as_str()).then(|| name.to_string())),
        Variant::Structure(s) => match s.fields() {
            [Variant::Str(kind), names] if kind.as_str() == "themed" => {
                let Variant::Array(names) = unwrap_variant(names) else {
                    return Err(NotificationError::WrongType("icon"));
                };
                Ok(names.inner().iter().find_map(|name| match name {
                    Variant::Str(name) if usable(name.as_str()) => Some(name.to_string()),
                    _ => None,
                }))
            }
            [Variant::Str(_), _] => Ok(None),
            _ => Err(NotificationError::WrongType("icon")),
        },
        _ => Err(NotificationError::WrongType("icon")),
    }
}

/// The value inside a `v`, however the decoder nested it.
fn unwrap_variant<'a>(value: &'a Variant<'a>) -> &'a Variant<'a> {
    match value {
        Variant::Variant(inner) => inner,
        v => v,
    }
}

/// An action target: no descriptors, and small.
fn target(value: &Variant<'_>) -> Result<OwnedVariant, NotificationError> {
    fn size(v: &Variant<'_>, budget: &mut usize) -> bool {
        let cost = match v {
            Variant::Fd(_) => return false,
            Variant::Str(s) => s.len() + 4,
            Variant::ObjectPath(p) => p.as_str().len() + 4,
            Variant::Signature(s) => s.to_string().len() + 1,
            _ => 8,
        };
        if cost > *budget {
            return false;
        }
        *budget -= cost;
        match v {
            Variant::Variant(inner) => size(inner, budget),
            Variant::Array(a) => a.inner().iter().all(|e| size(e, budget)),
            Variant::Structure(s) => s.fields().iter().all(|e| size(e, budget)),
            Variant::Dict(d) => d.iter().all(|(k, v)| size(k, budget) && size(v, budget)),
            _ => true,
        }
    }
    let mut budget = MAX_TARGET;
    if !size(value, &mut budget) {
        return Err(NotificationError::BadTarget);
    }
    value
        .try_to_owned()
        .map_err(|_| NotificationError::BadTarget)
}

/// A notification on screen.
struct Live {
    server_id: u32,
    /// The unique name of the server that showed it.
    server: String,
    /// Who added it last: the app's connection, which gets ActionInvoked.
    owner: String,
    actions: HashMap<String, Action>,
}

#[derive(Default)]
struct Shown {
    /// (app id, the app's notification id) → the notification.
    live: HashMap<(String, String), Live>,
}

impl Shown {
    fn count(&self, app: &str) -> usize {
        self.live.keys().filter(|(a, _)| a == app).count()
    }

    fn by_server_id(&self, server: &str, id: u32) -> Option<(&(String, String), &Live)> {
        self.live
            .iter()
            .find(|(_, live)| live.server_id == id && live.server == server)
    }
}

pub struct Notification {
    portal: Arc<Portal>,
    shown: Arc<Mutex<Shown>>,
}

impl Notification {
    /// Starts listening to the server's signals on `connection`.
    pub async fn start(portal: Arc<Portal>, connection: &Connection) -> Notification {
        let shown = Arc::new(Mutex::new(Shown::default()));
        match server_signals(connection).await {
            Ok(stream) => {
                tokio::spawn(relay_signals(connection.clone(), stream, shown.clone()));
            }
            Err(e) => eprintln!(
                "appbox-portal: cannot listen to the notification server; apps get no ActionInvoked: {e}"
            ),
        }
        Notification { portal, shown }
    }
}

#[interface(name = "org.freedesktop.portal.Notification")]
impl Notification {
    async fn add_notification(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        id: &str,
        notification: Vardict,
    ) -> Result<(), PortalError> {
        let caller = self.portal.caller(&header)?;
        let sender = caller.unique_name.clone();
        checked_id(id)?;
        let app = caller.app_id.to_string();
        let markup = server_has_markup(connection).await;
        let prepared = prepare(&notification, markup)?;
        let mut shown = self.shown.lock().await;
        let key = (app.clone(), id.to_owned());
        let replaces = shown.live.get(&key).map_or(0, |live| live.server_id);
        if replaces == 0 && shown.count(&app) >= MAX_LIVE {
            return Err(NotificationError::TooMany.into());
        }
        let mut hints: HashMap<&str, Variant<'_>> = HashMap::new();
        hints.insert("urgency", Variant::U8(prepared.urgency));
        hints.insert("desktop-entry", Variant::from(app.as_str()));
        let reply = tokio::time::timeout(
            SERVER_TIMEOUT,
            connection.call_method(
                Some(SERVER_NAME),
                SERVER_PATH,
                Some(SERVER_INTERFACE),
                "Notify",
                &(
                    app.as_str(),
                    replaces,
                    prepared.icon.as_str(),
                    prepared.summary.as_str(),
                    prepared.body.as_str(),
                    &prepared.server_actions,
                    hints,
                    -1i32,
                ),
            ),
        )
        .await
        .map_err(|_| PortalError::Failed("the notification server did not answer".into()))?
        .map_err(|e| PortalError::Failed(format!("the notification server refused: {e}")))?;
        let server_id: u32 = reply.body().deserialize().map_err(|e| {
            PortalError::Failed(format!("the notification server answered oddly: {e}"))
        })?;
        let server = reply
            .header()
            .sender()
            .map(|s| s.to_string())
            .unwrap_or_default();
        shown.live.insert(
            key,
            Live {
                server_id,
                server,
                owner: sender,
                actions: prepared.actions,
            },
        );
        Ok(())
    }

    async fn remove_notification(
        &self,
        #[zbus(header)] header: Header<'_>,
        #[zbus(connection)] connection: &Connection,
        id: &str,
    ) -> Result<(), PortalError> {
        let caller = self.portal.caller(&header)?;
        checked_id(id)?;
        let key = (caller.app_id.to_string(), id.to_owned());
        let Some(live) = self.shown.lock().await.live.remove(&key) else {
            // Like xdg-desktop-portal: withdrawing what is not there is no error.
            return Ok(());
        };
        let closed = tokio::time::timeout(
            SERVER_TIMEOUT,
            connection.call_method(
                Some(live.server.as_str()),
                SERVER_PATH,
                Some(SERVER_INTERFACE),
                "CloseNotification",
                &(live.server_id,),
            ),
        )
        .await;
        match closed {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(PortalError::Failed(format!(
                "the notification server refused to close it: {e}"
            ))),
            Err(_) => Err(PortalError::Failed(
                "the notification server did not answer".into(),
            )),
        }
    }

    #[zbus(signal)]
    async fn action_invoked(
        emitter: &SignalEmitter<'_>,
        id: &str,
        action: &str,
        parameter: Vec<Variant<'_>>,
    ) -> zbus::Result<()>;

    #[zbus(property(emits_changed_signal = "const"), name = "version")]
    fn version(&self) -> u32 {
        1
    }
}

fn checked_id(id: &str) -> Result<(), NotificationError> {
    if id.is_empty() || id.len() > MAX_NAME || id.chars().any(char::is_control) {
        return Err(NotificationError::BadId);
    }
    Ok(())
}

/// Whether the server renders markup in bodies; if it cannot be asked, the
/// body is escaped all the same.
async fn server_has_markup(connection: &Connection) -> bool {
    let reply = tokio::time::timeout(
        SERVER_TIMEOUT,
        connection.call_method(
            Some(SERVER_NAME),
            SERVER_PATH,
            Some(SERVER_INTERFACE),
            "GetCapabilities",
            &(),
        ),
    )
    .await;
    match reply {
        Ok(Ok(reply)) => reply
            .body()
            .deserialize::<Vec<String>>()
            .map(|caps| caps.iter().any(|c| c == "body-markup"))
            .unwrap_or(true),
        _ => true,
    }
}

async fn server_signals(connection: &Connection) -> zbus::Result<zbus::MessageStream> {
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface(SERVER_INTERFACE)
        .path(SERVER_PATH)
        .build()?;
    zbus::MessageStream::for_match_rule(rule, connection, None).await
}

/// The next item of a stream (the portal has no stream utilities of its own).
pub(crate) async fn next<S>(stream: &mut S) -> Option<S::Item>
where
    S: futures_core::Stream + Unpin,
{
    std::future::poll_fn(|cx| std::pin::Pin::new(&mut *stream).poll_next(cx)).await
}

/// Passes the server's ActionInvoked on to the app that added the
/// notification, and forgets closed notifications.
async fn relay_signals(
    connection: Connection,
    mut stream: zbus::MessageStream,
    shown: Arc<Mutex<Shown>>,
) {
    while let Some(message) = next(&mut stream).await {
        let Ok(message) = message else { continue };
        let header = message.header();
        let Some(server) = header.sender().map(|s| s.to_string()) else {
            continue;
        };
        match header.member().map(|m| m.as_str()) {
            Some("ActionInvoked") => {
                let Ok((server_id, key)) = message.body().deserialize::<(u32, String)>() else {
                    continue;
                };
                let shown = shown.lock().await;
                let Some(((app, id), live)) = shown.by_server_id(&server, server_id) else {
                    continue;
                };
                let Some(action) = live.actions.get(&key) else {
                    continue;
                };
                let parameter: Vec<Variant<'_>> = action
                    .target
                    .iter()
                    .filter_map(|t| Variant::try_from(t).ok())
                    .collect();
                let sent = connection
                    .emit_signal(
                        Some(live.owner.as_str()),
                        DESKTOP_PATH,
                        INTERFACE,
                        "ActionInvoked",
                        &(id.as_str(), action.name.as_str(), parameter),
                    )
                    .await;
                if let Err(e) = sent {
                    eprintln!("appbox-portal: cannot tell {app} its action was invoked: {e}");
                }
            }
            Some("NotificationClosed") => {
                let Ok((server_id, _reason)) = message.body().deserialize::<(u32, u32)>() else {
                    continue;
                };
                let mut shown = shown.lock().await;
                shown
                    .live
                    .retain(|_, live| !(live.server_id == server_id && live.server == server));
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict(entries: Vec<(&str, Variant<'static>)>) -> Vardict {
        entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), OwnedVariant::try_from(v).unwrap()))
            .collect()
    }

    #[test]
    fn title_body_priority_and_themed_icons_are_forwarded() {
        let icon = zbus::Structure::builder()
            .add_field("themed")
            .append_field(Variant::Variant(Box::new(Variant::from(vec![
                "../evil",
                "mail-unread",
            ]))))
            .build()
            .unwrap();
        let n = dict(vec![
            ("title", Variant::from("New mail")),
            ("body", Variant::from("a <b> & c\u{1b}[31m\nd")),
            ("priority", Variant::from("urgent")),
            ("icon", Variant::Structure(icon)),
        ]);
        let p = prepare(&n, true).unwrap();
        assert_eq!(p.summary, "New mail");
        assert_eq!(p.body, "a &lt;b&gt; &amp; c[31m\nd");
        assert_eq!(p.urgency, 2);
        assert_eq!(p.icon, "mail-unread");
        assert!(p.server_actions.is_empty());
        assert_eq!(prepare(&n, false).unwrap().body, "a <b> & c[31m\nd");

        let simple = dict(vec![("icon", Variant::from("dialog-information"))]);
        assert_eq!(prepare(&simple, true).unwrap().icon, "dialog-information");
        let bytes = zbus::Structure::builder()
            .add_field("bytes")
            .append_field(Variant::Variant(Box::new(Variant::from(vec![1u8, 2, 3]))))
            .build()
            .unwrap();
        let bytes = dict(vec![("icon", Variant::Structure(bytes))]);
        assert_eq!(prepare(&bytes, true).unwrap().icon, "");
        let path = dict(vec![("icon", Variant::from("/home/u/.ssh/id_rsa"))]);
        assert_eq!(prepare(&path, true).unwrap().icon, "");
    }

    #[test]
    fn sizes_types_and_names_are_bounded() {
        let long = "x".repeat(MAX_TEXT + 1);
        let cases = [
            (
                dict(vec![("title", Variant::from(long.clone()))]),
                NotificationError::TooLong("title"),
            ),
            (
                dict(vec![("body", Variant::from(long.clone()))]),
                NotificationError::TooLong("body"),
            ),
            (
                dict(vec![("title", Variant::from(3u32))]),
                NotificationError::WrongType("title"),
            ),
            (
                dict(vec![("priority", Variant::from("very"))]),
                NotificationError::BadPriority("very".into()),
            ),
            (
                dict(vec![("default-action", Variant::from(""))]),
                NotificationError::BadName("default-action"),
            ),
        ];
        for (n, error) in cases {
            assert_eq!(prepare(&n, true), Err(error));
        }
        assert_eq!(checked_id(""), Err(NotificationError::BadId));
        assert_eq!(checked_id("a\nb"), Err(NotificationError::BadId));
        assert_eq!(
            checked_id(&"x".repeat(MAX_NAME + 1)),
            Err(NotificationError::BadId)
        );
        assert_eq!(checked_id("new-mail"), Ok(()));
    }

    #[test]
    fn actions_get_server_keys_and_keep_their_targets() {
        let mut button = HashMap::new();
        button.insert("label", Variant::from("Reply"));
        button.insert("action", Variant::from("reply"));
        button.insert("target", Variant::from(7u32));
        let n = dict(vec![
            ("default-action", Variant::from("app.open")),
            ("default-action-target", Variant::from("inbox")),
            ("buttons", Variant::from(vec![button])),
        ]);
        let p = prepare(&n, true).unwrap();
        assert_eq!(p.server_actions, ["default", "", "button0", "Reply"]);
        assert_eq!(p.actions["default"].name, "app.open");
        assert_eq!(
            p.actions["default"].target,
            Some(OwnedVariant::try_from(Variant::from("inbox")).unwrap())
        );
        assert_eq!(p.actions["button0"].name, "reply");
        assert_eq!(p.actions["button0"].target, Some(OwnedVariant::from(7u32)));

        let big = dict(vec![
            ("default-action", Variant::from("a")),
            (
                "default-action-target",
                Variant::from("x".repeat(MAX_TARGET + 1)),
            ),
        ]);
        assert_eq!(prepare(&big, true), Err(NotificationError::BadTarget));
    }
}
