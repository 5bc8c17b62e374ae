//! The per-sandbox D-Bus proxy.
//!
//! The sandbox never sees the real session bus. Each instance gets its own
//! socket, served by a filtering proxy that runs outside the sandbox (the
//! role xdg-dbus-proxy plays for Flatpak).
//!
//! xdg-dbus-proxy passes the SASL handshake through to the real bus and tries
//! to spot where it ends. In CVE-2018-6560 it read the end of the handshake
//! (`BEGIN`) differently from dbus-daemon, so messages the proxy took for
//! handshake text reached the bus unfiltered. This proxy does not forward the
//! handshake. It terminates authentication on both sides:
//!
//! - [`auth::ServerAuth`] plays the bus towards the app. The app's identity is
//!   the uid the kernel reports for the socket (`SO_PEERCRED`), never anything
//!   the app wrote.
//! - [`auth::ClientAuth`] authenticates the proxy to the real bus, as the
//!   proxy's own uid, on a separate connection.
//!
//! So the proxy alone decides where authentication ends. No byte of the app's
//! handshake reaches the real bus, and every byte after it is parsed as a
//! binary message by [`message`].
//!
//! appbox's portal owns `org.appbox.Portal.Desktop` and
//! `org.appbox.Portal.Documents` on the real bus, since the host's own
//! xdg-desktop-portal may own the standard names there. Inside the sandbox
//! the app reaches it as `org.freedesktop.portal.Desktop` and
//! `org.freedesktop.portal.Documents`. [`policy`] renames between the two,
//! and hides the host's portal from the app. With `socket=session-bus`
//! nothing is renamed.
//!
//! The portal learns which sandbox calls it from [`peers`]: for each
//! upstream connection, the proxy writes a record under
//! `$XDG_RUNTIME_DIR/appbox/peers/<bus guid>/<unique name>` that names the
//! instance. It writes it when the bus answers the connection's Hello, before
//! anything else of the app's reaches the bus. It removes it when the
//! connection closes or the proxy stops.

pub mod auth;
pub mod instance;
pub mod message;
pub mod peers;
pub mod policy;
pub mod server;
#[cfg(test)]
mod testing;
