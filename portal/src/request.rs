//! The Request/Response pattern: each call returns at once with the path of
//! a `Request` object, and the answer comes later as that object's
//! `Response` signal, sent only to the caller.

use std::collections::HashMap;

use tokio::sync::oneshot;
use zbus::message::Header;
use zbus::object_server::ObjectServer;
use zbus::{interface, Connection, OwnedObjectPath, Variant};

use crate::error::PortalError;

pub const REQUEST_INTERFACE: &str = "org.freedesktop.portal.Request";

/// The portal's response codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    Success = 0,
    Cancelled = 1,
    Other = 2,
}

/// `/org/freedesktop/portal/desktop/request/SENDER/TOKEN`, where SENDER is
/// the caller's unique name without its `:` and with `.` as `_`. The token
/// is the app's `handle_token`, which must be a valid path element; without
/// one, the portal makes one up.
pub fn handle_path(sender: &str, token: Option<&str>) -> Result<OwnedObjectPath, PortalError> {
    let sender_part: String = sender
        .trim_start_matches(':')
        .chars()
        .map(|c| if c == '.' { '_' } else { c })
        .collect();
    let token = match token {
        Some(token) => {
            let valid = !token.is_empty()
                && token.len() <= 64
                && token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid {
                return Err(PortalError::InvalidArgument(
                    "handle_token must be 1 to 64 characters from A-Z, a-z, 0-9 and _".into(),
                ));
            }
            token.to_owned()
        }
        None => {
            use std::sync::atomic::{AtomicU64, Ordering};
            static NEXT: AtomicU64 = AtomicU64::new(0);
            format!("appbox{}", NEXT.fetch_add(1, Ordering::Relaxed))
        }
    };
    OwnedObjectPath::try_from(format!(
        "/org/freedesktop/portal/desktop/request/{sender_part}/{token}"
    ))
    .map_err(|e| PortalError::InvalidArgument(format!("bad request handle: {e}")))
}

/// A pending request. `Close` from its caller ends it without a Response.
pub struct Request {
    owner: String,
    closed: Option<oneshot::Sender<()>>,
}

#[interface(name = "org.freedesktop.portal.Request")]
impl Request {
    async fn close(&mut self, #[zbus(header)] header: Header<'_>) -> Result<(), PortalError> {
        if header.sender().map(|s| s.as_str()) != Some(self.owner.as_str()) {
            return Err(PortalError::NotAllowed(
                "only the app that made a request may close it".into(),
            ));
        }
        if let Some(closed) = self.closed.take() {
            let _ = closed.send(());
        }
        Ok(())
    }

    /// Declared for introspection; [`respond`] sends it to the owner alone.
    #[zbus(signal)]
    async fn response(
        emitter: &zbus::object_server::SignalEmitter<'_>,
        response: u32,
        results: HashMap<&str, Variant<'_>>,
    ) -> zbus::Result<()>;
}

/// Exports a Request for `owner` at `path`; the receiver fires on Close.
pub async fn export(
    server: &ObjectServer,
    path: &OwnedObjectPath,
    owner: &str,
) -> Result<oneshot::Receiver<()>, PortalError> {
    let (closed, on_close) = oneshot::channel();
    let request = Request {
        owner: owner.to_owned(),
        closed: Some(closed),
    };
    if server.at(path, request).await?.is_some() {
        return Err(PortalError::NotAllowed(format!(
            "a request at {} is still pending",
            path.as_str()
        )));
    }
    Ok(on_close)
}

/// Sends the Response to the request's owner alone, and removes the request.
pub async fn respond(
    connection: &Connection,
    path: &OwnedObjectPath,
    owner: &str,
    response: Response,
    results: HashMap<&str, Variant<'_>>,
) {
    let sent = connection
        .emit_signal(
            Some(owner),
            path.as_str(),
            REQUEST_INTERFACE,
            "Response",
            &(response as u32, results),
        )
        .await;
    if let Err(e) = sent {
        eprintln!("appbox-portal: cannot answer {}: {e}", path.as_str());
    }
    remove(connection, path).await;
}

pub async fn remove(connection: &Connection, path: &OwnedObjectPath) {
    let _ = connection
        .object_server()
        .remove::<Request, _>(path.as_str())
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handle_paths_follow_the_portal_convention() {
        assert_eq!(
            handle_path(":1.42", Some("gtk1234")).unwrap().as_str(),
            "/org/freedesktop/portal/desktop/request/1_42/gtk1234"
        );
        for bad in ["", "a/b", "a.b", "../x", "ä", &"x".repeat(65)] {
            assert!(handle_path(":1.42", Some(bad)).is_err(), "{bad:?}");
        }
        let made_up = handle_path(":1.7", None).unwrap();
        assert!(made_up
            .as_str()
            .starts_with("/org/freedesktop/portal/desktop/request/1_7/appbox"));
    }
}
