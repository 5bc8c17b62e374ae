//! The filter of the per-sandbox bus proxy, as pure logic: it is handed whole
//! messages from the app and from the proxy's upstream connection to the
//! real bus, and decides for each what passes ([`Decision`]). It owns no
//! socket and no descriptor.
//!
//! It follows xdg-dbus-proxy (`flatpak-proxy.c`): a policy level per
//! well-known name, NONE < SEE < TALK < OWN, where `org.foo.*` matches
//! `org.foo` and every name below it (not `org.foobar`); unique names get
//! the levels of the names they own; replies pass once per outstanding call;
//! calls to the bus driver are judged method by method. It is stricter where
//! that is cheap. The differences are:
//!
//! - No forged Ping round trip. xdg-dbus-proxy replaces a refused call by a
//!   Ping to the bus and swaps the Ping's reply for its error, to keep the
//!   bus's serials and order. Here the error goes straight back to the app
//!   ([`Decision::Reply`]) with the proxy's own serial. Clients match replies
//!   by REPLY_SERIAL, so nothing depends on that order. xdg-dbus-proxy also
//!   injects AddMatch/GetNameOwner/ListNames calls (and shifts every serial)
//!   to learn who owns the names in the policy. This filter never speaks on
//!   the app's connection. It learns owners from what passes anyway: replies
//!   to the app's own GetNameOwner calls (GDBusProxy makes them before
//!   calling a name's owner), NameOwnerChanged, NameAcquired and NameLost.
//!   An owner is "as last seen": when NameOwnerChanged moves a name away, its
//!   old owner loses the name's level. (xdg-dbus-proxy keeps the level
//!   forever.)
//! - A peer that calls the app (or sends it a unicast signal) becomes SEE,
//!   as in xdg-dbus-proxy. It does not become TALK: the services that call
//!   apps (the shell, for MPRIS or activation) export far more than the app
//!   should reach. The app may answer each call once.
//! - Signals from the app: a broadcast passes only while the app holds a
//!   well-known name it may OWN. (xdg-dbus-proxy passes every broadcast.) A
//!   unicast signal needs TALK on its destination, as in xdg-dbus-proxy.
//! - Incoming broadcasts need TALK on the sender, as in xdg-dbus-proxy.
//! - The portal is reached under aliases (below), not as
//!   `org.freedesktop.portal.*`: the host's other portal services would see
//!   the proxy, an unconfined host process.
//! - Bus driver: calls need `INTERFACE` (dbus-daemon would pick the first
//!   interface with that member). Hello, AddMatch/RemoveMatch (never
//!   eavesdropping, in any spelling dbus-daemon accepts), GetId,
//!   ListNames/ListActivatableNames (reply filtered to SEE), GetNameOwner and
//!   NameHasOwner (SEE, or "no such name"), RequestName/ReleaseName/
//!   ListQueuedOwners (OWN), StartServiceByName (TALK), Peer.Ping and
//!   Introspectable.Introspect pass. Everything else, including every
//!   GetConnection* credential call that xdg-dbus-proxy allows with SEE, is
//!   AccessDenied.
//! - A method call without DESTINATION is refused. dbus-daemon hands it to
//!   every connection whose match rules match it, so it is a broadcast call.
//!   xdg-dbus-proxy passes it. Calls and signals from the app that carry
//!   REPLY_SERIAL are refused too.
//! - Replies from the bus must also come from the peer that was called (or
//!   from the bus driver, for errors the bus sends itself). The session bus
//!   lets any peer send unrequested replies, and xdg-dbus-proxy trusts them.
//!   Replies from the app need the caller's name as well as the serial.
//! - A call whose serial is still waiting for its reply ends the connection.
//!   xdg-dbus-proxy ends it for any serial that does not increase.
//! - Every table is capped at [`MAX_TRACKED`] entries.
//!
//! Portal aliases ([`PORTAL_ALIASES`]): appbox's portal owns
//! `org.appbox.Portal.Desktop` and `org.appbox.Portal.Documents` on the real
//! bus, because the host's own xdg-desktop-portal may own the standard names
//! there. The app reaches it as `org.freedesktop.portal.Desktop` and
//! `org.freedesktop.portal.Documents`, under Flatpak's portal rules: it may
//! call them, and gets their broadcasts from `/org/freedesktop/portal` and
//! below. The filter judges every message in the app's names. The renaming
//! happens at its edges:
//!
//! - To the bus: a DESTINATION that is an alias, the name that GetNameOwner,
//!   NameHasOwner and StartServiceByName ask about, and the `sender=` and
//!   `arg0=` of a match rule become the bus's names. Only the renamed part of
//!   a message changes.
//! - To the app: NameOwnerChanged and ListNames replies show appbox's portal
//!   under its alias. The host's portal under the standard names does not
//!   appear at all, since the app's name does not refer to it.
//!
//! The owner learnt from GetNameOwner is kept under the alias, so the
//! portal's replies and broadcasts pass. The bus's names do not exist for the
//! app. With `socket=session-bus` nothing is renamed.
//!
//! The filter also notes the app's unique name from the bus's answer to its
//! Hello, under either policy. The proxy holds the app's other messages back
//! until that answer (see [`Filter::awaiting_hello_reply`]).
//!
//! Descriptors: a message's UNIX_FDS must equal the number of descriptors
//! that came with it (CVE-CLASSES 29). [`Decision::Forward`] keeps the count,
//! and the caller sends the descriptors along. On any other decision the
//! caller closes them.

use std::collections::{BTreeMap, BTreeSet};

use crate::busproxy::message::{
    access_denied, error_reply, is_valid_bus_name, match_rule_argument, method_return,
    parse_header, parse_match_rule, replace_body, request_name_arguments, rule_requests_eavesdrop,
    set_header_field, string_argument, Arg, ArgMatch, Header, HeaderField, MessageError,
    MessageType, BUS_INTERFACE, BUS_NAME, ERROR_ACCESS_DENIED, FLAG_NO_AUTO_START,
};
use crate::permissions::{Permissions, Socket};

/// The most entries any one table of a [`Filter`] holds: calls of the app
/// awaiting replies, calls to the app awaiting its reply, known owners,
/// names the app holds, peers that called the app.
pub const MAX_TRACKED: usize = 4096;

/// appbox's portal: the name each sandbox sees, and the name the portal owns
/// on the real bus. The host's own xdg-desktop-portal may own the standard
/// names there, and it must not mistake the proxy for a host app.
pub const PORTAL_ALIASES: &[(&str, &str)] = &[
    (
        "org.freedesktop.portal.Desktop",
        "org.appbox.Portal.Desktop",
    ),
    (
        "org.freedesktop.portal.Documents",
        "org.appbox.Portal.Documents",
    ),
];

/// Broadcasts from a portal name pass only from this path and below
/// (Flatpak's `--broadcast=org.freedesktop.portal.*=@/org/freedesktop/portal/*`).
pub const PORTAL_PATH: &str = "/org/freedesktop/portal";

const ERROR_SERVICE_UNKNOWN: &str = "org.freedesktop.DBus.Error.ServiceUnknown";
const ERROR_NAME_HAS_NO_OWNER: &str = "org.freedesktop.DBus.Error.NameHasNoOwner";
const ERROR_LIMITS_EXCEEDED: &str = "org.freedesktop.DBus.Error.LimitsExceeded";
const PEER_INTERFACE: &str = "org.freedesktop.DBus.Peer";
const INTROSPECTABLE_INTERFACE: &str = "org.freedesktop.DBus.Introspectable";

/// What the app may do with a name. Each level implies the ones before it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// The name does not exist for the app.
    #[default]
    None,
    /// It appears in ListNames, GetNameOwner, NameHasOwner and
    /// NameOwnerChanged. Calls to it get AccessDenied instead of "no such
    /// name".
    See,
    /// The app may call it and send it signals, and receives its broadcasts.
    Talk,
    /// The app may request it from the bus.
    Own,
}

/// Which broadcast signals from a name reach the app.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Broadcasts {
    None,
    /// Only from [`PORTAL_PATH`] and below.
    PortalPaths,
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Access {
    level: Level,
    broadcasts: Broadcasts,
}

impl Access {
    const NONE: Access = Access {
        level: Level::None,
        broadcasts: Broadcasts::None,
    };
    const SEE: Access = Access {
        level: Level::See,
        broadcasts: Broadcasts::None,
    };
    const TALK: Access = Access {
        level: Level::Talk,
        broadcasts: Broadcasts::All,
    };
    const OWN: Access = Access {
        level: Level::Own,
        broadcasts: Broadcasts::All,
    };
    const PORTAL: Access = Access {
        level: Level::Talk,
        broadcasts: Broadcasts::PortalPaths,
    };

    fn merge(self, other: Access) -> Access {
        Access {
            level: self.level.max(other.level),
            broadcasts: self.broadcasts.max(other.broadcasts),
        }
    }

    fn allows_broadcast(self, path: Option<&str>) -> bool {
        match self.broadcasts {
            Broadcasts::All => true,
            Broadcasts::PortalPaths => path.is_some_and(|p| {
                p.strip_prefix(PORTAL_PATH)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
            }),
            Broadcasts::None => false,
        }
    }
}

fn is_unique(name: &str) -> bool {
    name.starts_with(':')
}

/// A name the app sees and the name it stands for on the bus.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Alias {
    app: String,
    bus: String,
}

/// The static part: levels per well-known name, from the permissions, and
/// the portal's aliases.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    unfiltered: bool,
    /// Exact names.
    exact: BTreeMap<String, Access>,
    /// `org.foo.*` is stored as `org.foo`.
    subtree: BTreeMap<String, Access>,
    aliases: Vec<Alias>,
}

impl Policy {
    /// Levels from `talk-name`, `own-name` and `see-name`, plus the portal's
    /// `portal_aliases` ([`PORTAL_ALIASES`]): pairs of the name the app sees
    /// and the name on the bus. The app may TALK to each name it sees, with
    /// Flatpak's broadcast rule, and to nothing more whatever the
    /// permissions say; the names on the bus do not exist for it. Pairs that
    /// are not two different well-known names are ignored.
    /// `socket=session-bus` grants the whole bus, so it gives
    /// [`Policy::unfiltered`], which renames nothing.
    ///
    /// Grants for unique names (`:1.5`) or empty names are ignored: the
    /// permission parser refuses them, and a unique name cannot be granted in
    /// advance.
    pub fn new(permissions: &Permissions, portal_aliases: &[(&str, &str)]) -> Policy {
        if permissions.sockets.contains(&Socket::SessionBus) {
            return Policy::unfiltered();
        }
        let mut policy = Policy::default();
        for name in &permissions.see_names {
            policy.grant(name, Access::SEE);
        }
        for name in &permissions.talk_names {
            policy.grant(name, Access::TALK);
        }
        for name in &permissions.own_names {
            policy.grant(name, Access::OWN);
        }
        for &(app, bus) in portal_aliases {
            let well_known = |name: &str| {
                is_valid_bus_name(name.as_bytes()) && !is_unique(name) && name != BUS_NAME
            };
            if app == bus || !well_known(app) || !well_known(bus) {
                continue;
            }
            policy.aliases.push(Alias {
                app: app.to_owned(),
                bus: bus.to_owned(),
            });
        }
        policy
    }

    /// Everything passes (after the header checks): `socket=session-bus`.
    pub fn unfiltered() -> Policy {
        Policy {
            unfiltered: true,
            ..Policy::default()
        }
    }

    pub fn is_unfiltered(&self) -> bool {
        self.unfiltered
    }

    fn grant(&mut self, pattern: &str, access: Access) {
        let (table, name) = match pattern.strip_suffix(".*") {
            Some(prefix) => (&mut self.subtree, prefix),
            None => (&mut self.exact, pattern),
        };
        if name.is_empty() || is_unique(name) {
            return;
        }
        let entry = table.entry(name.to_owned()).or_insert(Access::NONE);
        *entry = entry.merge(access);
    }

    /// The level of a well-known name. The bus driver is always TALK. Unique
    /// names have no level of their own here: [`Filter`] derives theirs from
    /// the names they own.
    pub fn level(&self, name: &str) -> Level {
        if self.unfiltered {
            return Level::Own;
        }
        self.access(name).level
    }

    fn access(&self, name: &str) -> Access {
        if name == BUS_NAME {
            return Access::TALK;
        }
        if is_unique(name) {
            return Access::NONE;
        }
        if self.is_alias(name) {
            return Access::PORTAL;
        }
        if self.aliases.iter().any(|a| a.bus == name) {
            return Access::NONE;
        }
        let mut access = self.exact.get(name).copied().unwrap_or(Access::NONE);
        let mut prefix = name;
        loop {
            if let Some(granted) = self.subtree.get(prefix) {
                access = access.merge(*granted);
            }
            match prefix.rfind('.') {
                Some(dot) => prefix = &prefix[..dot],
                None => break,
            }
        }
        access
    }

    /// Whether the app's `name` stands for another name on the bus.
    fn is_alias(&self, name: &str) -> bool {
        self.aliases.iter().any(|a| a.app == name)
    }

    /// The bus's name for the app's `name`: itself unless it is an alias.
    fn bus_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.aliases
            .iter()
            .find(|a| a.app == name)
            .map_or(name, |a| a.bus.as_str())
    }

    /// What the app calls the bus's `name`. `None` for a name the app's
    /// aliases hide: on the bus, it is someone else's (the host's portal).
    fn app_name<'a>(&'a self, name: &'a str) -> Option<&'a str> {
        if self.is_alias(name) {
            return None;
        }
        Some(
            self.aliases
                .iter()
                .find(|a| a.bus == name)
                .map_or(name, |a| a.app.as_str()),
        )
    }
}

/// Why the proxy must close the app's connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("malformed message from the app: {0}")]
    MalformedFromApp(MessageError),
    #[error("malformed message from the bus: {0}")]
    MalformedFromBus(MessageError),
    #[error("the first message must be a Hello call to org.freedesktop.DBus that expects a reply")]
    HelloFirst,
    #[error("the app reused serial {0} while its earlier call with that serial awaits a reply")]
    SerialReused(u32),
    #[error("the bus answered {0} with a reply of the wrong signature")]
    BadBusReply(&'static str),
    #[error("cannot build a message: {0}")]
    Build(MessageError),
}

/// What to do with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Send these bytes on to the other side (the message itself, or a
    /// rewritten reply), with the message's descriptors.
    Forward(Vec<u8>),
    /// Send these bytes back to the side the message came from, instead of
    /// the message. Only `from_app*` returns this: an error or an answer the
    /// proxy makes up for a call it refused.
    Reply(Vec<u8>),
    /// Discard the message (and close its descriptors).
    Drop,
    /// Close the app's connection.
    Disconnect(FilterError),
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Normal,
    Hello,
    /// ListNames or ListActivatableNames: the reply is filtered.
    ListNames,
    /// The reply names the owner of this name.
    GetNameOwner(String),
}

#[derive(Clone, Debug)]
struct Pending {
    destination: String,
    kind: Kind,
}

/// The filter for one app connection. Feed it every message, in order.
#[derive(Clone, Debug)]
pub struct Filter {
    policy: Policy,
    hello_sent: bool,
    /// The serial of the app's Hello, until the bus answers it.
    hello_serial: Option<u32>,
    /// The app's unique name, from the reply to its Hello.
    app_name: Option<String>,
    /// The serial of the next message the proxy makes up.
    next_serial: u32,
    /// The app's calls that await a reply, by serial.
    outgoing: BTreeMap<u32, Pending>,
    /// Calls to the app that await its reply: (caller, serial).
    incoming: BTreeSet<(String, u32)>,
    /// Owners of well-known names the app may SEE, as last seen.
    owners: BTreeMap<String, String>,
    /// Well-known names the app holds (NameAcquired, until NameLost).
    held: BTreeSet<String>,
    /// Peers that sent the app a call or a unicast signal: SEE.
    callers: BTreeSet<String>,
}

impl Filter {
    pub fn new(policy: Policy) -> Filter {
        Filter {
            policy,
            hello_sent: false,
            hello_serial: None,
            app_name: None,
            next_serial: 1,
            outgoing: BTreeMap::new(),
            incoming: BTreeSet::new(),
            owners: BTreeMap::new(),
            held: BTreeSet::new(),
            callers: BTreeSet::new(),
        }
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The app's unique name, once the bus has answered its Hello (with
    /// either policy).
    pub fn app_name(&self) -> Option<&str> {
        self.app_name.as_deref()
    }

    /// The app's Hello has been forwarded and the bus has not answered it
    /// yet. The proxy holds the app's next messages back until then, so
    /// that the app's unique name is known (and its peer record written)
    /// before anything else of the app's reaches the bus.
    pub fn awaiting_hello_reply(&self) -> bool {
        self.hello_serial.is_some()
    }

    /// How many entries the filter tracks, all tables together; never more
    /// than 5 × [`MAX_TRACKED`].
    pub fn tracked_entries(&self) -> usize {
        self.outgoing.len()
            + self.incoming.len()
            + self.owners.len()
            + self.held.len()
            + self.callers.len()
    }

    /// The level the app has on `name`, well-known or unique, now.
    pub fn level_of(&self, name: &str) -> Level {
        if self.policy.unfiltered {
            return Level::Own;
        }
        self.access_of(name).level
    }

    /// A message from the app that came without descriptors.
    pub fn from_app(&mut self, msg: &[u8]) -> Decision {
        self.from_app_with_fds(msg, 0)
    }

    /// A message from the app, with the number of descriptors that arrived
    /// with its first byte.
    pub fn from_app_with_fds(&mut self, msg: &[u8], fds_received: usize) -> Decision {
        let header = match parse_header(msg) {
            Ok(header) => header,
            Err(e) => return Decision::Disconnect(FilterError::MalformedFromApp(e)),
        };
        if let Err(e) = header.check_received_fds(fds_received) {
            return self.refuse(&header, ERROR_ACCESS_DENIED, &format!("appbox: {e}"));
        }
        if self.policy.unfiltered {
            // Everything passes as it is; only the app's name is noted.
            if !self.hello_sent {
                self.hello_sent = true;
                if is_hello(&header) {
                    self.hello_serial = Some(header.serial);
                }
            }
            return Decision::Forward(msg.to_vec());
        }
        if !self.hello_sent {
            if !is_hello(&header) {
                return Decision::Disconnect(FilterError::HelloFirst);
            }
            self.hello_sent = true;
            let decision = self.forward_call(&header, msg, Kind::Hello);
            if matches!(decision, Decision::Forward(_)) {
                self.hello_serial = Some(header.serial);
            }
            return decision;
        }
        match header.message_type {
            MessageType::MethodCall => self.app_call(&header, msg),
            MessageType::Signal => self.app_signal(&header, msg),
            MessageType::MethodReturn | MessageType::Error => self.app_reply(&header, msg),
        }
    }

    /// A message from the bus that came without descriptors.
    pub fn from_bus(&mut self, msg: &[u8]) -> Decision {
        self.from_bus_with_fds(msg, 0)
    }

    /// A message from the bus, with the number of descriptors that arrived
    /// with it. A mismatch there means the connection is out of step, so it
    /// ends the connection.
    pub fn from_bus_with_fds(&mut self, msg: &[u8], fds_received: usize) -> Decision {
        let header = match parse_header(msg) {
            Ok(header) => header,
            Err(e) => return Decision::Disconnect(FilterError::MalformedFromBus(e)),
        };
        if let Err(e) = header.check_received_fds(fds_received) {
            return Decision::Disconnect(FilterError::MalformedFromBus(e));
        }
        if self.policy.unfiltered {
            if self.hello_serial.is_some()
                && header.reply_serial == self.hello_serial
                && header.sender.as_deref() == Some(BUS_NAME)
            {
                self.hello_serial = None;
                if header.message_type == MessageType::MethodReturn {
                    if let Ok(name) = string_argument(msg, &header) {
                        self.app_name = Some(name.to_owned());
                    }
                }
            }
            return Decision::Forward(msg.to_vec());
        }
        match header.message_type {
            MessageType::MethodReturn | MessageType::Error => self.bus_reply(&header, msg),
            MessageType::Signal => self.bus_signal(&header, msg),
            MessageType::MethodCall => self.bus_call(&header, msg),
        }
    }

    // ---- from the app ------------------------------------------------------

    fn app_call(&mut self, header: &Header, msg: &[u8]) -> Decision {
        if header.reply_serial.is_some() {
            return self.deny(header, "a method call cannot carry REPLY_SERIAL");
        }
        let Some(destination) = header.destination.as_deref() else {
            return self.deny(header, "a method call must name its destination");
        };
        if destination == BUS_NAME {
            return self.driver_call(header, msg);
        }
        match self.access_of(destination).level {
            Level::Talk | Level::Own => self.forward_call(header, msg, Kind::Normal),
            Level::See => self.deny(header, &format!("the app may not talk to {destination}")),
            Level::None => self.hide(header, destination),
        }
    }

    fn driver_call(&mut self, header: &Header, msg: &[u8]) -> Decision {
        let member = header.member.as_deref().unwrap_or("");
        match header.interface.as_deref() {
            Some(BUS_INTERFACE) => {}
            Some(PEER_INTERFACE) if member == "Ping" => {
                return self.forward_call(header, msg, Kind::Normal)
            }
            Some(INTROSPECTABLE_INTERFACE) if member == "Introspect" => {
                return self.forward_call(header, msg, Kind::Normal)
            }
            _ => return self.deny(header, &format!("{member} on the bus is not allowed")),
        }
        match member {
            // A second Hello: the bus answers it with an error.
            "Hello" | "GetId" => self.forward_call(header, msg, Kind::Normal),
            "ListNames" | "ListActivatableNames" => self.forward_call(header, msg, Kind::ListNames),
            "AddMatch" | "RemoveMatch" => match string_argument(msg, header) {
                Ok(rule) if !rule_requests_eavesdrop(rule) => {
                    self.forward_call(header, msg, Kind::Normal)
                }
                Ok(_) => self.deny(header, "eavesdropping is not allowed"),
                Err(e) => self.deny(header, &format!("unreadable match rule: {e}")),
            },
            "GetNameOwner" | "NameHasOwner" => {
                let name = match string_argument(msg, header) {
                    Ok(name) => name,
                    Err(e) => return self.deny(header, &format!("unreadable arguments: {e}")),
                };
                if self.access_of(name).level >= Level::See {
                    let kind = if member == "GetNameOwner" {
                        Kind::GetNameOwner(name.to_owned())
                    } else {
                        Kind::Normal
                    };
                    self.forward_call(header, msg, kind)
                } else if member == "GetNameOwner" {
                    self.refuse(
                        header,
                        ERROR_NAME_HAS_NO_OWNER,
                        &format!("Could not get owner of name '{name}': no such name"),
                    )
                } else {
                    self.answer(header, &[Arg::Bool(false)])
                }
            }
            "RequestName" | "StartServiceByName" => {
                let name = match request_name_arguments(msg, header) {
                    Ok((name, _flags)) => name,
                    Err(e) => return self.deny(header, &format!("unreadable arguments: {e}")),
                };
                let needed = if member == "RequestName" {
                    Level::Own
                } else {
                    Level::Talk
                };
                if self.policy.level(name) >= needed {
                    self.forward_call(header, msg, Kind::Normal)
                } else {
                    self.deny(header, &format!("{member} {name} is not allowed"))
                }
            }
            "ReleaseName" | "ListQueuedOwners" => match string_argument(msg, header) {
                Ok(name) if self.policy.level(name) >= Level::Own => {
                    self.forward_call(header, msg, Kind::Normal)
                }
                Ok(name) => self.deny(header, &format!("{member} {name} is not allowed")),
                Err(e) => self.deny(header, &format!("unreadable arguments: {e}")),
            },
            _ => self.deny(header, &format!("{member} on the bus is not allowed")),
        }
    }

    fn app_signal(&mut self, header: &Header, msg: &[u8]) -> Decision {
        if header.reply_serial.is_some() {
            return Decision::Drop;
        }
        let allowed = match header.destination.as_deref() {
            None => self
                .held
                .iter()
                .any(|name| self.policy.level(name) == Level::Own),
            Some(BUS_NAME) => false,
            Some(destination) => self.access_of(destination).level >= Level::Talk,
        };
        if !allowed {
            return Decision::Drop;
        }
        match self.to_bus_names(header, msg) {
            Ok(bytes) => Decision::Forward(bytes),
            Err(_) => Decision::Drop,
        }
    }

    fn app_reply(&mut self, header: &Header, msg: &[u8]) -> Decision {
        let (Some(destination), Some(reply_serial)) =
            (header.destination.as_deref(), header.reply_serial)
        else {
            return Decision::Drop;
        };
        if self
            .incoming
            .remove(&(destination.to_owned(), reply_serial))
        {
            Decision::Forward(msg.to_vec())
        } else {
            Decision::Drop
        }
    }

    /// Forwards a call, in the bus's names, and remembers it if it expects a
    /// reply.
    fn forward_call(&mut self, header: &Header, msg: &[u8], kind: Kind) -> Decision {
        let bytes = match self.to_bus_names(header, msg) {
            Ok(bytes) => bytes,
            Err(e) => return self.deny(header, &format!("cannot pass this call on: {e}")),
        };
        if header.expects_reply() {
            if self.outgoing.contains_key(&header.serial) {
                return Decision::Disconnect(FilterError::SerialReused(header.serial));
            }
            if self.outgoing.len() >= MAX_TRACKED {
                return self.refuse(
                    header,
                    ERROR_LIMITS_EXCEEDED,
                    "appbox: too many calls await a reply",
                );
            }
            let destination = header.destination.clone().unwrap_or_default();
            self.outgoing
                .insert(header.serial, Pending { destination, kind });
        }
        Decision::Forward(bytes)
    }

    /// The app's message as the bus must see it: a destination that is an
    /// alias, and the name a bus driver call is about (GetNameOwner,
    /// NameHasOwner, StartServiceByName, and the `sender=` and `arg0=` of
    /// a match rule), become the bus's name. Judged already, in the app's
    /// names; unchanged when nothing is aliased.
    fn to_bus_names(&self, header: &Header, msg: &[u8]) -> Result<Vec<u8>, MessageError> {
        let Some(destination) = header.destination.as_deref() else {
            return Ok(msg.to_vec());
        };
        if self.policy.aliases.is_empty() {
            return Ok(msg.to_vec());
        }
        if destination != BUS_NAME {
            let bus = self.policy.bus_name(destination);
            if bus == destination {
                return Ok(msg.to_vec());
            }
            return set_header_field(msg, header, HeaderField::Destination, bus);
        }
        if header.message_type != MessageType::MethodCall
            || header.interface.as_deref() != Some(BUS_INTERFACE)
        {
            return Ok(msg.to_vec());
        }
        match header.member.as_deref() {
            Some("GetNameOwner" | "NameHasOwner") => {
                let name = string_argument(msg, header)?;
                let bus = self.policy.bus_name(name);
                if bus == name {
                    return Ok(msg.to_vec());
                }
                replace_body(msg, header, &[Arg::Str(bus)])
            }
            Some("StartServiceByName") => {
                let (name, flags) = request_name_arguments(msg, header)?;
                let bus = self.policy.bus_name(name);
                if bus == name {
                    return Ok(msg.to_vec());
                }
                replace_body(msg, header, &[Arg::Str(bus), Arg::Uint32(flags)])
            }
            Some("AddMatch" | "RemoveMatch") => {
                let mut rule = match_rule_argument(msg, header)?;
                let mut renamed = false;
                if let Some(sender) = rule.sender.as_mut() {
                    let bus = self.policy.bus_name(sender);
                    if bus != sender.as_str() {
                        *sender = bus.to_owned();
                        renamed = true;
                    }
                }
                for (index, arg) in rule.args.iter_mut() {
                    if let (0, ArgMatch::String(value)) = (*index, arg) {
                        let bus = self.policy.bus_name(value);
                        if bus != value.as_str() {
                            *value = bus.to_owned();
                            renamed = true;
                        }
                    }
                }
                if !renamed {
                    return Ok(msg.to_vec());
                }
                // Only rules that name an alias are written anew; the bus
                // must read the new text as the renamed rule.
                let text = rule.to_rule_string();
                if parse_match_rule(&text)? != rule {
                    return Err(MessageError::InvalidMatchRule("cannot be renamed"));
                }
                replace_body(msg, header, &[Arg::Str(&text)])
            }
            _ => Ok(msg.to_vec()),
        }
    }

    fn deny(&mut self, header: &Header, why: &str) -> Decision {
        self.refuse(header, ERROR_ACCESS_DENIED, &format!("appbox: {why}"))
    }

    /// Answers a call to a name the app may not see as dbus-daemon answers a
    /// call to a name nobody owns.
    fn hide(&mut self, header: &Header, destination: &str) -> Decision {
        if is_unique(destination) || header.flags & FLAG_NO_AUTO_START != 0 {
            self.refuse(
                header,
                ERROR_NAME_HAS_NO_OWNER,
                &format!("Name \"{destination}\" does not exist"),
            )
        } else {
            self.refuse(
                header,
                ERROR_SERVICE_UNKNOWN,
                &format!("The name {destination} was not provided by any .service files"),
            )
        }
    }

    /// The header the made-up messages answer: addressed to the app.
    fn to_app(&self, header: &Header) -> Header {
        let mut to = header.clone();
        to.sender = self.app_name.clone();
        to
    }

    fn take_serial(&mut self) -> u32 {
        let serial = self.next_serial;
        self.next_serial = self.next_serial.checked_add(1).unwrap_or(1);
        serial
    }

    /// An error instead of `header`'s call, or nothing when it expects none.
    fn refuse(&mut self, header: &Header, error_name: &str, text: &str) -> Decision {
        if !header.expects_reply() {
            return Decision::Drop;
        }
        let to = self.to_app(header);
        let serial = self.take_serial();
        let built = if error_name == ERROR_ACCESS_DENIED {
            access_denied(&to, serial, text, header.endian)
        } else {
            error_reply(&to, serial, error_name, text, header.endian)
        };
        match built {
            Ok(reply) => Decision::Reply(reply),
            Err(e) => Decision::Disconnect(FilterError::Build(e)),
        }
    }

    /// A made-up METHOD_RETURN instead of `header`'s call.
    fn answer(&mut self, header: &Header, body: &[Arg<'_>]) -> Decision {
        if !header.expects_reply() {
            return Decision::Drop;
        }
        let to = self.to_app(header);
        let serial = self.take_serial();
        match method_return(&to, serial, body, header.endian) {
            Ok(reply) => Decision::Reply(reply),
            Err(e) => Decision::Disconnect(FilterError::Build(e)),
        }
    }

    // ---- from the bus ------------------------------------------------------

    fn bus_reply(&mut self, header: &Header, msg: &[u8]) -> Decision {
        let (Some(reply_serial), Some(sender)) = (header.reply_serial, header.sender.as_deref())
        else {
            return Decision::Drop;
        };
        let Some(pending) = self.outgoing.get(&reply_serial) else {
            return Decision::Drop;
        };
        let called = pending.destination.as_str();
        let from_callee = sender == called
            // A well-known name answers from its owner's unique name.
            || (!is_unique(called) && called != BUS_NAME && is_unique(sender))
            // The bus's own errors: no such name, no reply, access denied.
            || (header.message_type == MessageType::Error && sender == BUS_NAME);
        // The reply to Hello is addressed to the name it announces.
        let to_app = pending.kind == Kind::Hello || self.is_app(header.destination.as_deref());
        if !from_callee || !to_app {
            return Decision::Drop;
        }
        let Some(pending) = self.outgoing.remove(&reply_serial) else {
            return Decision::Drop;
        };
        let is_return = header.message_type == MessageType::MethodReturn;
        match pending.kind {
            Kind::Normal => {}
            Kind::Hello => {
                self.hello_serial = None;
                if is_return {
                    if let Ok(name) = string_argument(msg, header) {
                        self.app_name = Some(name.to_owned());
                    }
                }
            }
            Kind::GetNameOwner(name) => {
                if is_return {
                    match string_argument(msg, header) {
                        Ok(owner) => self.set_owner(&name, owner),
                        Err(_) => {
                            return Decision::Disconnect(FilterError::BadBusReply("GetNameOwner"))
                        }
                    }
                } else if header.error_name.as_deref() == Some(ERROR_NAME_HAS_NO_OWNER) {
                    self.owners.remove(&name);
                }
            }
            Kind::ListNames if is_return => return self.filter_name_list(header, msg),
            Kind::ListNames => {}
        }
        Decision::Forward(msg.to_vec())
    }

    /// The reply to ListNames or ListActivatableNames, keeping only the
    /// names the app may see.
    fn filter_name_list(&self, header: &Header, msg: &[u8]) -> Decision {
        let names = if header.signature() == "as" {
            header.body(msg).and_then(|mut body| {
                let names = body.read_string_array()?;
                body.finish()?;
                Ok(names)
            })
        } else {
            Err(MessageError::UnexpectedSignature {
                expected: "as",
                found: header.signature().to_owned(),
            })
        };
        let Ok(names) = names else {
            return Decision::Disconnect(FilterError::BadBusReply("ListNames"));
        };
        // In the app's names: an alias for each name it stands for, and
        // nothing for the names the aliases hide.
        let names: Vec<&str> = names
            .into_iter()
            .filter_map(|name| self.policy.app_name(name))
            .collect();
        // Unique names by the names they own, computed once for the list.
        let mut owned: BTreeMap<&str, Access> = BTreeMap::new();
        for (name, owner) in &self.owners {
            let entry = owned.entry(owner.as_str()).or_insert(Access::NONE);
            *entry = entry.merge(self.policy.access(name));
        }
        let kept: Vec<&str> = names
            .into_iter()
            .filter(|name| {
                let access = if is_unique(name) {
                    self.unique_base(name)
                        .merge(owned.get(name).copied().unwrap_or(Access::NONE))
                } else {
                    self.policy.access(name)
                };
                access.level >= Level::See
            })
            .collect();
        match replace_body(msg, header, &[Arg::StrArray(&kept)]) {
            Ok(rewritten) => Decision::Forward(rewritten),
            Err(e) => Decision::Disconnect(FilterError::Build(e)),
        }
    }

    fn bus_signal(&mut self, header: &Header, msg: &[u8]) -> Decision {
        let Some(sender) = header.sender.as_deref() else {
            return Decision::Drop;
        };
        if sender == BUS_NAME && header.interface.as_deref() == Some(BUS_INTERFACE) {
            match header.member.as_deref() {
                Some("NameOwnerChanged") => return self.name_owner_changed(header, msg),
                Some(member @ ("NameAcquired" | "NameLost")) => {
                    return self.name_acquired_or_lost(header, msg, member == "NameAcquired")
                }
                _ => {}
            }
        }
        match header.destination.as_deref() {
            Some(destination) => {
                if !self.is_app(Some(destination)) {
                    return Decision::Drop;
                }
                self.note_caller(sender);
                Decision::Forward(msg.to_vec())
            }
            None => {
                if self
                    .access_of(sender)
                    .allows_broadcast(header.path.as_deref())
                {
                    Decision::Forward(msg.to_vec())
                } else {
                    Decision::Drop
                }
            }
        }
    }

    fn name_owner_changed(&mut self, header: &Header, msg: &[u8]) -> Decision {
        if header.destination.is_some() && !self.is_app(header.destination.as_deref()) {
            return Decision::Drop;
        }
        let Some((bus_name, old, new)) = three_strings(msg, header) else {
            return Decision::Drop;
        };
        // In the app's names. A name an alias hides is someone else's on the
        // bus: its changes say nothing about the name the app knows.
        let Some(name) = self.policy.app_name(bus_name).map(str::to_owned) else {
            return Decision::Drop;
        };
        let name = name.as_str();
        let renamed;
        let msg = if name == bus_name {
            msg
        } else {
            match replace_body(msg, header, &[Arg::Str(name), Arg::Str(old), Arg::Str(new)]) {
                Ok(bytes) => {
                    renamed = bytes;
                    &renamed
                }
                Err(e) => return Decision::Disconnect(FilterError::Build(e)),
            }
        };
        // Judged before the change: the app sees its callers leave.
        let visible = self.access_of(name).level >= Level::See;
        if is_unique(name) {
            if new.is_empty() {
                self.forget_peer(name);
            }
        } else if new.is_empty() {
            self.owners.remove(name);
        } else {
            self.set_owner(name, new);
        }
        if visible {
            Decision::Forward(msg.to_vec())
        } else {
            Decision::Drop
        }
    }

    fn name_acquired_or_lost(&mut self, header: &Header, msg: &[u8], acquired: bool) -> Decision {
        if !self.is_app(header.destination.as_deref()) {
            return Decision::Drop;
        }
        let Ok(name) = string_argument(msg, header) else {
            return Decision::Drop;
        };
        if self.access_of(name).level < Level::See {
            return Decision::Drop;
        }
        if !is_unique(name) {
            if acquired {
                if self.held.len() < MAX_TRACKED {
                    self.held.insert(name.to_owned());
                }
                if let Some(app) = self.app_name.clone() {
                    self.set_owner(name, &app);
                }
            } else {
                self.held.remove(name);
                if self
                    .owners
                    .get(name)
                    .is_some_and(|owner| self.is_app(Some(owner)))
                {
                    self.owners.remove(name);
                }
            }
        }
        Decision::Forward(msg.to_vec())
    }

    fn bus_call(&mut self, header: &Header, msg: &[u8]) -> Decision {
        let Some(sender) = header.sender.as_deref() else {
            return Decision::Drop;
        };
        if !self.is_app(header.destination.as_deref()) {
            return Decision::Drop;
        }
        if header.expects_reply() {
            let key = (sender.to_owned(), header.serial);
            if !self.incoming.contains(&key) && self.incoming.len() >= MAX_TRACKED {
                return Decision::Drop;
            }
            self.incoming.insert(key);
        }
        self.note_caller(sender);
        Decision::Forward(msg.to_vec())
    }

    // ---- state -------------------------------------------------------------

    /// Whether `destination` is the app: its unique name or a name it holds.
    fn is_app(&self, destination: Option<&str>) -> bool {
        destination.is_some_and(|d| self.app_name.as_deref() == Some(d) || self.held.contains(d))
    }

    fn access_of(&self, name: &str) -> Access {
        if !is_unique(name) {
            return self.policy.access(name);
        }
        let mut access = self.unique_base(name);
        for (owned, owner) in &self.owners {
            if owner == name {
                access = access.merge(self.policy.access(owned));
            }
        }
        access
    }

    /// A unique name's access apart from the names it owns.
    fn unique_base(&self, name: &str) -> Access {
        if self.app_name.as_deref() == Some(name) {
            Access::TALK
        } else if self.callers.contains(name) {
            Access::SEE
        } else {
            Access::NONE
        }
    }

    /// Records `owner` as the owner of the well-known `name`, if the app may
    /// see the name (no other owner matters) and the table has room.
    fn set_owner(&mut self, name: &str, owner: &str) {
        if is_unique(name)
            || !is_unique(owner)
            || name == BUS_NAME
            || self.policy.access(name).level < Level::See
        {
            return;
        }
        if let Some(known) = self.owners.get_mut(name) {
            owner.clone_into(known);
        } else if self.owners.len() < MAX_TRACKED {
            self.owners.insert(name.to_owned(), owner.to_owned());
        }
    }

    fn note_caller(&mut self, sender: &str) {
        if is_unique(sender)
            && self.app_name.as_deref() != Some(sender)
            && self.callers.len() < MAX_TRACKED
        {
            self.callers.insert(sender.to_owned());
        }
    }

    /// A unique name left the bus.
    fn forget_peer(&mut self, name: &str) {
        self.callers.remove(name);
        self.owners.retain(|_, owner| owner != name);
    }
}

fn is_hello(header: &Header) -> bool {
    header.message_type == MessageType::MethodCall
        && header.expects_reply()
        && header.reply_serial.is_none()
        && header.destination.as_deref() == Some(BUS_NAME)
        && header.interface.as_deref() == Some(BUS_INTERFACE)
        && header.member.as_deref() == Some("Hello")
}

/// The `(sss)` body of NameOwnerChanged.
fn three_strings<'a>(msg: &'a [u8], header: &Header) -> Option<(&'a str, &'a str, &'a str)> {
    if header.signature() != "sss" {
        return None;
    }
    let mut body = header.body(msg).ok()?;
    let strings = (
        body.read_str().ok()?,
        body.read_str().ok()?,
        body.read_str().ok()?,
    );
    body.finish().ok()?;
    Some(strings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::busproxy::message::{
        build_message, parse_match_rule, Endian, MatchRule, OutgoingFields, FLAG_NO_REPLY_EXPECTED,
        MAX_MATCH_RULE_LENGTH,
    };
    use crate::busproxy::testing::{eavesdrop_rules, XorShift};

    const LE: Endian = Endian::Little;
    const BE: Endian = Endian::Big;
    const BOTH: [Endian; 2] = [LE, BE];
    /// The app's unique name.
    const APP: &str = ":1.42";
    const PATH: &str = "/org/example/Object";
    const IFACE: &str = "org.example.Iface";

    // ---- building messages -------------------------------------------------

    fn perms(talk: &[&str], own: &[&str], see: &[&str]) -> Permissions {
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect();
        Permissions {
            talk_names: set(talk),
            own_names: set(own),
            see_names: set(see),
            ..Permissions::default()
        }
    }

    /// The policy most tests use.
    fn policy() -> Policy {
        Policy::new(
            &perms(
                &["org.example.Talk", "org.example.wild.*"],
                &["org.example.App", "org.example.App.*"],
                &["org.example.Seen"],
            ),
            PORTAL_ALIASES,
        )
    }

    fn msg(
        e: Endian,
        t: MessageType,
        serial: u32,
        f: OutgoingFields<'_>,
        body: &[Arg<'_>],
    ) -> Vec<u8> {
        build_message(t, serial, &f, body, e).unwrap()
    }

    /// A call from the app.
    fn call(e: Endian, serial: u32, destination: &str, flags: u8) -> Vec<u8> {
        let f = OutgoingFields {
            flags,
            path: Some(PATH),
            interface: Some(IFACE),
            member: Some("Frob"),
            destination: Some(destination),
            ..OutgoingFields::default()
        };
        msg(e, MessageType::MethodCall, serial, f, &[])
    }

    /// A call from the app to the bus driver.
    fn driver(
        e: Endian,
        serial: u32,
        interface: Option<&str>,
        member: &str,
        body: &[Arg<'_>],
    ) -> Vec<u8> {
        let f = OutgoingFields {
            path: Some("/org/freedesktop/DBus"),
            interface,
            member: Some(member),
            destination: Some(BUS_NAME),
            ..OutgoingFields::default()
        };
        msg(e, MessageType::MethodCall, serial, f, body)
    }

    fn bus(e: Endian, serial: u32, member: &str, body: &[Arg<'_>]) -> Vec<u8> {
        driver(e, serial, Some(BUS_INTERFACE), member, body)
    }

    /// A METHOD_RETURN from `sender` to `destination`.
    fn ret(
        e: Endian,
        serial: u32,
        sender: &str,
        destination: &str,
        reply_serial: u32,
        body: &[Arg<'_>],
    ) -> Vec<u8> {
        let f = OutgoingFields {
            reply_serial: Some(reply_serial),
            sender: Some(sender),
            destination: Some(destination),
            ..OutgoingFields::default()
        };
        msg(e, MessageType::MethodReturn, serial, f, body)
    }

    fn err(
        e: Endian,
        serial: u32,
        sender: &str,
        destination: &str,
        reply_serial: u32,
        name: &str,
    ) -> Vec<u8> {
        let f = OutgoingFields {
            error_name: Some(name),
            reply_serial: Some(reply_serial),
            sender: Some(sender),
            destination: Some(destination),
            ..OutgoingFields::default()
        };
        msg(e, MessageType::Error, serial, f, &[Arg::Str("x")])
    }

    /// A signal on `path`, from `sender`, to `destination` or broadcast.
    fn signal(
        e: Endian,
        serial: u32,
        sender: Option<&str>,
        destination: Option<&str>,
        path: &str,
    ) -> Vec<u8> {
        let f = OutgoingFields {
            path: Some(path),
            interface: Some(IFACE),
            member: Some("Changed"),
            sender,
            destination,
            ..OutgoingFields::default()
        };
        msg(e, MessageType::Signal, serial, f, &[])
    }

    /// A signal from the bus driver.
    fn driver_signal(
        e: Endian,
        serial: u32,
        destination: Option<&str>,
        member: &str,
        body: &[Arg<'_>],
    ) -> Vec<u8> {
        let f = OutgoingFields {
            path: Some("/org/freedesktop/DBus"),
            interface: Some(BUS_INTERFACE),
            member: Some(member),
            sender: Some(BUS_NAME),
            destination,
            ..OutgoingFields::default()
        };
        msg(e, MessageType::Signal, serial, f, body)
    }

    fn owner_changed(e: Endian, serial: u32, name: &str, old: &str, new: &str) -> Vec<u8> {
        driver_signal(
            e,
            serial,
            None,
            "NameOwnerChanged",
            &[Arg::Str(name), Arg::Str(old), Arg::Str(new)],
        )
    }

    /// A call from a peer to `destination`.
    fn peer_call(e: Endian, serial: u32, sender: &str, destination: &str, flags: u8) -> Vec<u8> {
        let f = OutgoingFields {
            flags,
            path: Some(PATH),
            interface: Some(IFACE),
            member: Some("Poke"),
            sender: Some(sender),
            destination: Some(destination),
            ..OutgoingFields::default()
        };
        msg(e, MessageType::MethodCall, serial, f, &[])
    }

    /// `message` with a UNIX_FDS field of `n` appended to its header.
    fn with_unix_fds(message: &[u8], n: u32, e: Endian) -> Vec<u8> {
        let decode = |b: &[u8]| {
            let b: [u8; 4] = b.try_into().unwrap();
            match e {
                Endian::Little => u32::from_le_bytes(b),
                Endian::Big => u32::from_be_bytes(b),
            }
        };
        let encode = |v: u32| match e {
            Endian::Little => v.to_le_bytes(),
            Endian::Big => v.to_be_bytes(),
        };
        let fields_len = decode(&message[12..16]) as usize;
        let body_start = (16 + fields_len + 7) & !7;
        let mut out = message[..body_start].to_vec();
        out.extend_from_slice(&[9, 1, b'u', 0]);
        out.extend_from_slice(&encode(n));
        out[12..16].copy_from_slice(&encode((body_start - 16 + 8) as u32));
        out.extend_from_slice(&message[body_start..]);
        assert_eq!(parse_header(&out).unwrap().unix_fds, n);
        out
    }

    // ---- checking decisions ------------------------------------------------

    fn forwarded(d: Decision, original: &[u8]) {
        assert_eq!(d, Decision::Forward(original.to_vec()));
    }

    fn reply_header(d: &Decision) -> Header {
        match d {
            Decision::Reply(bytes) => parse_header(bytes).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    /// A made-up error `name` answering `serial`, in the call's byte order.
    fn refused(d: Decision, name: &str, serial: u32, e: Endian) -> Header {
        let h = reply_header(&d);
        assert_eq!(h.message_type, MessageType::Error, "{h:?}");
        assert_eq!(h.error_name.as_deref(), Some(name), "{h:?}");
        assert_eq!(h.reply_serial, Some(serial));
        assert_eq!(h.sender.as_deref(), Some(BUS_NAME));
        assert_eq!(h.endian, e);
        h
    }

    fn denied(d: Decision, serial: u32, e: Endian) {
        let h = refused(d, ERROR_ACCESS_DENIED, serial, e);
        assert_eq!(h.destination.as_deref(), Some(APP));
    }

    /// A filter after Hello, with the app named [`APP`]. The app's next
    /// serial is 2, the bus's 2.
    fn started(policy: Policy, e: Endian) -> Filter {
        let mut f = Filter::new(policy);
        let hello = bus(e, 1, "Hello", &[]);
        forwarded(f.from_app(&hello), &hello);
        let welcome = ret(e, 1, BUS_NAME, APP, 1, &[Arg::Str(APP)]);
        forwarded(f.from_bus(&welcome), &welcome);
        assert_eq!(f.app_name(), Some(APP));
        let acquired = driver_signal(e, 2, Some(APP), "NameAcquired", &[Arg::Str(APP)]);
        forwarded(f.from_bus(&acquired), &acquired);
        f
    }

    /// Makes `owner` the owner of `name` through the app's own GetNameOwner.
    fn learn_owner(f: &mut Filter, e: Endian, serial: u32, name: &str, owner: &str) {
        let ask = bus(e, serial, "GetNameOwner", &[Arg::Str(name)]);
        // An alias is asked about under the bus's name.
        let on_the_bus = f.policy.bus_name(name).to_owned();
        let sent = bus(e, serial, "GetNameOwner", &[Arg::Str(&on_the_bus)]);
        forwarded(f.from_app(&ask), &sent);
        let answer = ret(e, 900 + serial, BUS_NAME, APP, serial, &[Arg::Str(owner)]);
        forwarded(f.from_bus(&answer), &answer);
    }

    // ---- the policy --------------------------------------------------------

    #[test]
    fn levels_come_from_see_talk_own_and_the_portal() {
        let p = Policy::new(
            &perms(
                &["org.example.Talk", "org.example.wild.*", "org.example.Both"],
                &["org.example.Own.*", "org.example.Both"],
                &["org.example.Seen", "org.example.Talk"],
            ),
            PORTAL_ALIASES,
        );
        assert!(!p.is_unfiltered());
        assert_eq!(p.level("org.example.Seen"), Level::See);
        // The strongest grant wins: own ⊃ talk ⊃ see.
        assert_eq!(p.level("org.example.Talk"), Level::Talk);
        assert_eq!(p.level("org.example.Both"), Level::Own);
        assert_eq!(p.level("org.example.Unknown"), Level::None);
        // `.*` covers the name itself and every name below it, nothing else.
        for name in [
            "org.example.wild",
            "org.example.wild.a",
            "org.example.wild.a.b",
        ] {
            assert_eq!(p.level(name), Level::Talk, "{name}");
        }
        for name in ["org.example.wilder", "org.example", "org.example.wil"] {
            assert_eq!(p.level(name), Level::None, "{name}");
        }
        assert_eq!(p.level("org.example.Own"), Level::Own);
        assert_eq!(p.level("org.example.Own.Sub"), Level::Own);
        assert_eq!(p.level("org.example.Owner"), Level::None);
        // The portal, under the names the app sees; not the host's other
        // portal services, nor the names appbox's portal has on the bus.
        assert_eq!(p.level("org.freedesktop.portal.Desktop"), Level::Talk);
        assert_eq!(p.level("org.freedesktop.portal.Documents"), Level::Talk);
        for name in [
            "org.freedesktop.portal",
            "org.freedesktop.portal.Settings",
            "org.freedesktop.portal.Desktop.Sub",
            "org.freedesktop.portals",
            "org.appbox.Portal.Desktop",
            "org.appbox.Portal.Documents",
        ] {
            assert_eq!(p.level(name), Level::None, "{name}");
        }
        assert_eq!(p.level(BUS_NAME), Level::Talk);
        // Unique names have no level of their own.
        assert_eq!(p.level(":1.5"), Level::None);

        // Grants of unique or empty names are ignored.
        let odd = Policy::new(&perms(&[":1.5", ".*", ""], &[":1.*"], &[]), &[]);
        assert_eq!(odd.level(":1.5"), Level::None);
        assert_eq!(odd.level(":1.6"), Level::None);

        // socket=session-bus grants the whole bus.
        let mut all = perms(&[], &[], &[]);
        all.sockets.insert(Socket::SessionBus);
        assert!(Policy::new(&all, &[]).is_unfiltered());
        assert_eq!(Policy::unfiltered(), Policy::new(&all, &[]));
        assert_eq!(Policy::unfiltered(), Policy::new(&all, PORTAL_ALIASES));
    }

    #[test]
    fn aliases_are_talk_only_and_hide_their_bus_names() {
        // Grants cannot widen an alias, nor reach the names on the bus.
        let p = Policy::new(
            &perms(
                &["org.appbox.*", "org.freedesktop.*"],
                &["org.freedesktop.portal.*", "org.appbox.Portal.Desktop"],
                &["org.appbox.Portal.Documents"],
            ),
            PORTAL_ALIASES,
        );
        assert_eq!(p.access("org.freedesktop.portal.Desktop"), Access::PORTAL);
        assert_eq!(p.access("org.freedesktop.portal.Documents"), Access::PORTAL);
        assert_eq!(p.level("org.appbox.Portal.Desktop"), Level::None);
        assert_eq!(p.level("org.appbox.Portal.Documents"), Level::None);
        // Other names under the grants keep them.
        assert_eq!(p.level("org.freedesktop.portal.Settings"), Level::Own);
        assert_eq!(p.level("org.appbox.Other"), Level::Talk);
        // Pairs that are not two different well-known names are ignored.
        let odd = Policy::new(
            &perms(&[], &[], &[]),
            &[
                ("org.example.A", "org.example.A"),
                (":1.5", "org.example.B"),
                ("org.example.C", ":1.6"),
                ("nodots", "org.example.D"),
                (BUS_NAME, "org.example.E"),
                ("org.example.F", BUS_NAME),
            ],
        );
        assert_eq!(odd, Policy::new(&perms(&[], &[], &[]), &[]));
    }

    // ---- Hello -------------------------------------------------------------

    #[test]
    fn the_first_message_must_be_hello() {
        for e in BOTH {
            let not_hello = [
                bus(e, 1, "GetId", &[]),
                call(e, 1, "org.example.Talk", 0),
                signal(e, 1, None, None, PATH),
                // Hello found without an interface.
                driver(e, 1, None, "Hello", &[]),
            ];
            for m in &not_hello {
                let mut f = Filter::new(policy());
                assert_eq!(f.from_app(m), Decision::Disconnect(FilterError::HelloFirst));
            }
            // Hello that wants no reply: the app could never learn its name.
            let mut f = Filter::new(policy());
            let quiet = OutgoingFields {
                flags: FLAG_NO_REPLY_EXPECTED,
                path: Some("/org/freedesktop/DBus"),
                interface: Some(BUS_INTERFACE),
                member: Some("Hello"),
                destination: Some(BUS_NAME),
                ..OutgoingFields::default()
            };
            let quiet = msg(e, MessageType::MethodCall, 1, quiet, &[]);
            assert_eq!(
                f.from_app(&quiet),
                Decision::Disconnect(FilterError::HelloFirst)
            );

            let mut f = Filter::new(policy());
            let hello = bus(e, 1, "Hello", &[]);
            forwarded(f.from_app(&hello), &hello);
            assert_eq!(f.app_name(), None);
            // A reply that is not the bus's is not the Hello reply.
            let fake = ret(e, 1, ":1.9", ":1.666", 1, &[Arg::Str(":1.666")]);
            assert_eq!(f.from_bus(&fake), Decision::Drop);
            assert_eq!(f.app_name(), None);
            let welcome = ret(e, 1, BUS_NAME, APP, 1, &[Arg::Str(APP)]);
            forwarded(f.from_bus(&welcome), &welcome);
            assert_eq!(f.app_name(), Some(APP));
            // One reply per call.
            assert_eq!(f.from_bus(&welcome), Decision::Drop);
            // A second Hello is the bus's business (it answers with an error).
            let again = bus(e, 2, "Hello", &[]);
            forwarded(f.from_app(&again), &again);
        }
    }

    // ---- calls from the app ------------------------------------------------

    #[test]
    fn calls_pass_with_talk_and_are_refused_or_hidden_otherwise() {
        for e in BOTH {
            let mut f = started(policy(), e);
            for (serial, name) in [
                (2, "org.example.Talk"),
                (3, "org.example.wild.deep.Name"),
                (4, "org.example.App"),
                (5, "org.example.wild"),
                (6, APP),
            ] {
                let m = call(e, serial, name, 0);
                forwarded(f.from_app(&m), &m);
            }
            // SEE: AccessDenied.
            denied(f.from_app(&call(e, 7, "org.example.Seen", 0)), 7, e);
            // NONE: as if nobody owned the name.
            refused(
                f.from_app(&call(e, 8, "org.example.Hidden", 0)),
                ERROR_SERVICE_UNKNOWN,
                8,
                e,
            );
            refused(
                f.from_app(&call(e, 9, "org.example.Hidden", FLAG_NO_AUTO_START)),
                ERROR_NAME_HAS_NO_OWNER,
                9,
                e,
            );
            refused(
                f.from_app(&call(e, 10, ":1.7", 0)),
                ERROR_NAME_HAS_NO_OWNER,
                10,
                e,
            );
            // Refused calls that want no reply are dropped.
            for (serial, name) in [
                (11, "org.example.Seen"),
                (12, "org.example.Hidden"),
                (13, ":1.7"),
            ] {
                let m = call(e, serial, name, FLAG_NO_REPLY_EXPECTED);
                assert_eq!(f.from_app(&m), Decision::Drop);
            }
            // A call without destination would reach every matching rule.
            let nowhere = OutgoingFields {
                path: Some(PATH),
                member: Some("Frob"),
                ..OutgoingFields::default()
            };
            denied(
                f.from_app(&msg(e, MessageType::MethodCall, 14, nowhere, &[])),
                14,
                e,
            );
            // A call carrying REPLY_SERIAL.
            let odd = OutgoingFields {
                path: Some(PATH),
                member: Some("Frob"),
                destination: Some("org.example.Talk"),
                reply_serial: Some(3),
                ..OutgoingFields::default()
            };
            denied(
                f.from_app(&msg(e, MessageType::MethodCall, 15, odd, &[])),
                15,
                e,
            );
        }
    }

    #[test]
    fn a_reused_serial_ends_the_connection() {
        for e in BOTH {
            let mut f = started(policy(), e);
            let first = call(e, 5, "org.example.Talk", 0);
            forwarded(f.from_app(&first), &first);
            // A ListNames with the same serial would get the first call's
            // reply unfiltered.
            assert_eq!(
                f.from_app(&bus(e, 5, "ListNames", &[])),
                Decision::Disconnect(FilterError::SerialReused(5))
            );
            // Once answered, the serial is free again.
            let answer = ret(e, 50, ":1.7", APP, 5, &[]);
            forwarded(f.from_bus(&answer), &answer);
            let again = bus(e, 5, "ListNames", &[]);
            forwarded(f.from_app(&again), &again);
        }
    }

    #[test]
    fn only_safe_bus_driver_calls_pass() {
        for e in BOTH {
            let mut f = started(policy(), e);
            let pass = [
                bus(e, 2, "GetId", &[]),
                bus(e, 3, "AddMatch", &[Arg::Str("type='signal'")]),
                bus(e, 4, "RemoveMatch", &[Arg::Str("type='signal'")]),
                bus(e, 5, "ListNames", &[]),
                bus(e, 6, "ListActivatableNames", &[]),
                bus(e, 7, "GetNameOwner", &[Arg::Str("org.example.Seen")]),
                bus(e, 8, "NameHasOwner", &[Arg::Str("org.example.Talk")]),
                bus(
                    e,
                    9,
                    "RequestName",
                    &[Arg::Str("org.example.App"), Arg::Uint32(4)],
                ),
                bus(e, 10, "ReleaseName", &[Arg::Str("org.example.App")]),
                bus(
                    e,
                    11,
                    "ListQueuedOwners",
                    &[Arg::Str("org.example.App.Sub")],
                ),
                bus(
                    e,
                    12,
                    "StartServiceByName",
                    &[Arg::Str("org.example.Talk"), Arg::Uint32(0)],
                ),
                driver(e, 13, Some(PEER_INTERFACE), "Ping", &[]),
                driver(e, 14, Some(INTROSPECTABLE_INTERFACE), "Introspect", &[]),
                bus(e, 15, "GetNameOwner", &[Arg::Str(APP)]),
            ];
            for m in &pass {
                forwarded(f.from_app(m), m);
            }
            let refuse = [
                driver(
                    e,
                    20,
                    Some("org.freedesktop.DBus.Monitoring"),
                    "BecomeMonitor",
                    &[Arg::StrArray(&[]), Arg::Uint32(0)],
                ),
                driver(
                    e,
                    21,
                    None,
                    "BecomeMonitor",
                    &[Arg::StrArray(&[]), Arg::Uint32(0)],
                ),
                bus(
                    e,
                    22,
                    "BecomeMonitor",
                    &[Arg::StrArray(&[]), Arg::Uint32(0)],
                ),
                bus(e, 23, "UpdateActivationEnvironment", &[]),
                bus(e, 24, "GetConnectionUnixUser", &[Arg::Str(APP)]),
                bus(
                    e,
                    25,
                    "GetConnectionUnixProcessID",
                    &[Arg::Str("org.example.Talk")],
                ),
                bus(e, 26, "GetConnectionCredentials", &[Arg::Str(":1.7")]),
                bus(e, 27, "GetAdtAuditSessionData", &[Arg::Str(":1.7")]),
                bus(
                    e,
                    28,
                    "GetConnectionSELinuxSecurityContext",
                    &[Arg::Str(":1.7")],
                ),
                bus(e, 29, "ReloadConfig", &[]),
                bus(
                    e,
                    30,
                    "StartServiceByName",
                    &[Arg::Str("org.example.Hidden"), Arg::Uint32(0)],
                ),
                bus(
                    e,
                    31,
                    "StartServiceByName",
                    &[Arg::Str("org.example.Seen"), Arg::Uint32(0)],
                ),
                // Members found without an interface, or on other interfaces.
                driver(e, 32, None, "GetId", &[]),
                driver(e, 33, None, "Hello", &[]),
                driver(e, 34, Some(PEER_INTERFACE), "GetMachineId", &[]),
                driver(
                    e,
                    35,
                    Some("org.freedesktop.DBus.Properties"),
                    "GetAll",
                    &[Arg::Str(BUS_INTERFACE)],
                ),
                driver(
                    e,
                    36,
                    Some("org.freedesktop.DBus.Debug.Stats"),
                    "GetStats",
                    &[],
                ),
                driver(
                    e,
                    37,
                    Some("org.freedesktop.DBus.Verbose"),
                    "EnableVerbose",
                    &[],
                ),
                // Arguments that cannot be read are refused.
                bus(e, 38, "GetNameOwner", &[Arg::Uint32(1)]),
                bus(e, 39, "RequestName", &[Arg::Str("org.example.App")]),
                bus(e, 40, "AddMatch", &[]),
            ];
            for m in &refuse {
                let serial = parse_header(m).unwrap().serial;
                denied(f.from_app(m), serial, e);
            }
            // Unsafe calls from the bus's point of view, without reply: dropped.
            let quiet = OutgoingFields {
                flags: FLAG_NO_REPLY_EXPECTED,
                path: Some("/org/freedesktop/DBus"),
                interface: Some(BUS_INTERFACE),
                member: Some("UpdateActivationEnvironment"),
                destination: Some(BUS_NAME),
                ..OutgoingFields::default()
            };
            assert_eq!(
                f.from_app(&msg(e, MessageType::MethodCall, 41, quiet, &[])),
                Decision::Drop
            );
        }
    }

    #[test]
    fn every_eavesdrop_spelling_is_refused() {
        for e in BOTH {
            let mut f = started(policy(), e);
            let mut serial = 2;
            for (rule, refuse) in eavesdrop_rules() {
                for member in ["AddMatch", "RemoveMatch"] {
                    let m = bus(e, serial, member, &[Arg::Str(&rule)]);
                    let d = f.from_app(&m);
                    if refuse {
                        denied(d, serial, e);
                    } else {
                        forwarded(d, &m);
                    }
                    serial += 1;
                }
            }
        }
    }

    #[test]
    fn name_owner_queries_hide_names_the_app_may_not_see() {
        for e in BOTH {
            let mut f = started(policy(), e);
            // Hidden: answered as if the name did not exist.
            let h = refused(
                f.from_app(&bus(
                    e,
                    2,
                    "GetNameOwner",
                    &[Arg::Str("org.example.Hidden")],
                )),
                ERROR_NAME_HAS_NO_OWNER,
                2,
                e,
            );
            assert_eq!(h.destination.as_deref(), Some(APP));
            let d = f.from_app(&bus(
                e,
                3,
                "NameHasOwner",
                &[Arg::Str("org.example.Hidden")],
            ));
            let h = reply_header(&d);
            assert_eq!(h.message_type, MessageType::MethodReturn);
            assert_eq!(h.reply_serial, Some(3));
            assert_eq!(h.endian, e);
            let Decision::Reply(bytes) = &d else {
                unreachable!()
            };
            let mut body = h.body(bytes).unwrap();
            assert!(!body.read_bool().unwrap());
            // A unique name nobody made visible.
            refused(
                f.from_app(&bus(e, 4, "GetNameOwner", &[Arg::Str(":1.7")])),
                ERROR_NAME_HAS_NO_OWNER,
                4,
                e,
            );
            // Made-up replies take fresh serials of their own.
            let quiet = OutgoingFields {
                flags: FLAG_NO_REPLY_EXPECTED,
                path: Some("/org/freedesktop/DBus"),
                interface: Some(BUS_INTERFACE),
                member: Some("NameHasOwner"),
                destination: Some(BUS_NAME),
                ..OutgoingFields::default()
            };
            let quiet = msg(
                e,
                MessageType::MethodCall,
                5,
                quiet,
                &[Arg::Str("org.example.Hidden")],
            );
            assert_eq!(f.from_app(&quiet), Decision::Drop);

            // Seen: forwarded, and the answer records the owner.
            learn_owner(&mut f, e, 6, "org.example.Seen", ":1.7");
            assert_eq!(f.level_of(":1.7"), Level::See);
            let has = bus(e, 7, "NameHasOwner", &[Arg::Str(":1.7")]);
            forwarded(f.from_app(&has), &has);
            // A NameHasNoOwner answer forgets it.
            let ask = bus(e, 8, "GetNameOwner", &[Arg::Str("org.example.Seen")]);
            forwarded(f.from_app(&ask), &ask);
            let none = err(e, 80, BUS_NAME, APP, 8, ERROR_NAME_HAS_NO_OWNER);
            forwarded(f.from_bus(&none), &none);
            assert_eq!(f.level_of(":1.7"), Level::None);
        }
    }

    #[test]
    fn unique_names_need_an_owned_name_the_app_may_talk_to() {
        for e in BOTH {
            let mut f = started(policy(), e);
            // A peer the app never heard of is hidden.
            refused(
                f.from_app(&call(e, 2, ":1.7", 0)),
                ERROR_NAME_HAS_NO_OWNER,
                2,
                e,
            );
            assert_eq!(
                f.from_app(&call(e, 3, ":1.7", FLAG_NO_REPLY_EXPECTED)),
                Decision::Drop
            );
            // The owner of a TALK name, learnt from GetNameOwner.
            learn_owner(&mut f, e, 4, "org.example.Talk", ":1.7");
            let m = call(e, 5, ":1.7", 0);
            forwarded(f.from_app(&m), &m);
            // The owner of a SEE name only: AccessDenied.
            learn_owner(&mut f, e, 6, "org.example.Seen", ":1.8");
            denied(f.from_app(&call(e, 7, ":1.8", 0)), 7, e);
            // Learnt from NameOwnerChanged, under a wildcard.
            let moved = owner_changed(e, 10, "org.example.wild.x", "", ":1.9");
            forwarded(f.from_bus(&moved), &moved);
            let m = call(e, 8, ":1.9", 0);
            forwarded(f.from_app(&m), &m);
            // As last seen: once the name moves on, its old owner is hidden.
            let moved = owner_changed(e, 11, "org.example.Talk", ":1.7", ":1.10");
            forwarded(f.from_bus(&moved), &moved);
            refused(
                f.from_app(&call(e, 9, ":1.7", 0)),
                ERROR_NAME_HAS_NO_OWNER,
                9,
                e,
            );
            let m = call(e, 10, ":1.10", 0);
            forwarded(f.from_app(&m), &m);
            // A peer's own broadcast that looks like NameOwnerChanged changes
            // nothing, and does not reach the app.
            let forged = OutgoingFields {
                path: Some("/org/freedesktop/DBus"),
                interface: Some(BUS_INTERFACE),
                member: Some("NameOwnerChanged"),
                sender: Some(":1.66"),
                ..OutgoingFields::default()
            };
            let forged = msg(
                e,
                MessageType::Signal,
                12,
                forged,
                &[
                    Arg::Str("org.example.Talk"),
                    Arg::Str(":1.10"),
                    Arg::Str(":1.66"),
                ],
            );
            assert_eq!(f.from_bus(&forged), Decision::Drop);
            refused(
                f.from_app(&call(e, 11, ":1.66", 0)),
                ERROR_NAME_HAS_NO_OWNER,
                11,
                e,
            );
            // The owner leaves the bus: its names go with it.
            let gone = owner_changed(e, 13, ":1.9", ":1.9", "");
            forwarded(f.from_bus(&gone), &gone);
            refused(
                f.from_app(&call(e, 12, ":1.9", 0)),
                ERROR_NAME_HAS_NO_OWNER,
                12,
                e,
            );
        }
    }

    #[test]
    fn peers_that_call_the_app_get_one_reply_per_call_and_only_see() {
        for e in BOTH {
            let mut f = started(policy(), e);
            let poke = peer_call(e, 70, ":1.7", APP, 0);
            forwarded(f.from_bus(&poke), &poke);
            // The caller is now visible, but not callable.
            assert_eq!(f.level_of(":1.7"), Level::See);
            let has = bus(e, 2, "NameHasOwner", &[Arg::Str(":1.7")]);
            forwarded(f.from_app(&has), &has);
            denied(f.from_app(&call(e, 3, ":1.7", 0)), 3, e);
            // A reply with a forged reply_serial, or to someone else.
            assert_eq!(f.from_app(&ret(e, 4, APP, ":1.7", 71, &[])), Decision::Drop);
            assert_eq!(f.from_app(&ret(e, 5, APP, ":1.8", 70, &[])), Decision::Drop);
            let no_destination = OutgoingFields {
                reply_serial: Some(70),
                ..OutgoingFields::default()
            };
            assert_eq!(
                f.from_app(&msg(e, MessageType::MethodReturn, 6, no_destination, &[])),
                Decision::Drop
            );
            // The real one, once.
            let answer = ret(e, 7, APP, ":1.7", 70, &[Arg::Str("ok")]);
            forwarded(f.from_app(&answer), &answer);
            assert_eq!(f.from_app(&answer), Decision::Drop);
            let error = err(e, 8, APP, ":1.7", 70, "org.example.Error");
            assert_eq!(f.from_app(&error), Decision::Drop);
            // Calls that want no reply get none.
            let quiet = peer_call(e, 72, ":1.7", APP, FLAG_NO_REPLY_EXPECTED);
            forwarded(f.from_bus(&quiet), &quiet);
            assert_eq!(f.from_app(&ret(e, 9, APP, ":1.7", 72, &[])), Decision::Drop);
            // An error is a reply too.
            let poke = peer_call(e, 73, ":1.7", APP, 0);
            forwarded(f.from_bus(&poke), &poke);
            let error = err(e, 10, APP, ":1.7", 73, "org.example.Error");
            forwarded(f.from_app(&error), &error);
            // Calls addressed to someone else never reach the app.
            assert_eq!(
                f.from_bus(&peer_call(e, 74, ":1.7", ":1.8", 0)),
                Decision::Drop
            );
            assert_eq!(
                f.from_bus(&peer_call(e, 75, ":1.7", "org.example.App", 0)),
                Decision::Drop
            );
            // Calls to a name the app holds do.
            let acquired = driver_signal(
                e,
                20,
                Some(APP),
                "NameAcquired",
                &[Arg::Str("org.example.App")],
            );
            forwarded(f.from_bus(&acquired), &acquired);
            let poke = peer_call(e, 76, ":1.11", "org.example.App", 0);
            forwarded(f.from_bus(&poke), &poke);
            let answer = ret(e, 11, APP, ":1.11", 76, &[]);
            forwarded(f.from_app(&answer), &answer);
            // The caller leaves: it is gone from view.
            let gone = owner_changed(e, 21, ":1.7", ":1.7", "");
            forwarded(f.from_bus(&gone), &gone);
            assert_eq!(f.level_of(":1.7"), Level::None);
        }
    }

    #[test]
    fn replies_from_the_bus_pass_once_and_only_for_the_apps_calls() {
        for e in BOTH {
            let mut f = started(policy(), e);
            // Nothing was asked.
            assert_eq!(f.from_bus(&ret(e, 30, ":1.7", APP, 2, &[])), Decision::Drop);
            assert_eq!(
                f.from_bus(&err(e, 31, BUS_NAME, APP, 2, ERROR_ACCESS_DENIED)),
                Decision::Drop
            );
            // The app calls a unique name.
            learn_owner(&mut f, e, 2, "org.example.Talk", ":1.7");
            let m = call(e, 3, ":1.7", 0);
            forwarded(f.from_app(&m), &m);
            // A forged reply_serial, another sender, another destination.
            assert_eq!(f.from_bus(&ret(e, 32, ":1.7", APP, 4, &[])), Decision::Drop);
            assert_eq!(f.from_bus(&ret(e, 33, ":1.8", APP, 3, &[])), Decision::Drop);
            assert_eq!(
                f.from_bus(&ret(e, 34, BUS_NAME, APP, 3, &[])),
                Decision::Drop
            );
            assert_eq!(
                f.from_bus(&ret(e, 35, ":1.7", ":1.99", 3, &[])),
                Decision::Drop
            );
            // The real reply, once.
            let answer = ret(e, 36, ":1.7", APP, 3, &[Arg::Str("x")]);
            forwarded(f.from_bus(&answer), &answer);
            assert_eq!(f.from_bus(&answer), Decision::Drop);

            // A well-known name answers from its owner's unique name; the bus
            // answers errors of its own.
            let m = call(e, 4, "org.example.Talk", 0);
            forwarded(f.from_app(&m), &m);
            let answer = ret(e, 37, ":1.12", APP, 4, &[]);
            forwarded(f.from_bus(&answer), &answer);
            let m = call(e, 5, "org.example.Talk", 0);
            forwarded(f.from_app(&m), &m);
            let no_reply = err(
                e,
                38,
                BUS_NAME,
                APP,
                5,
                "org.freedesktop.DBus.Error.NoReply",
            );
            forwarded(f.from_bus(&no_reply), &no_reply);
            // Calls to the bus are answered by the bus alone.
            let m = bus(e, 6, "GetId", &[]);
            forwarded(f.from_app(&m), &m);
            assert_eq!(
                f.from_bus(&ret(e, 39, ":1.7", APP, 6, &[Arg::Str("x")])),
                Decision::Drop
            );
            let id = ret(e, 40, BUS_NAME, APP, 6, &[Arg::Str("x")]);
            forwarded(f.from_bus(&id), &id);
            // No reply was expected.
            let m = call(e, 7, "org.example.Talk", FLAG_NO_REPLY_EXPECTED);
            forwarded(f.from_app(&m), &m);
            assert_eq!(f.from_bus(&ret(e, 41, ":1.7", APP, 7, &[])), Decision::Drop);
            assert_eq!(f.tracked_entries(), f.owners.len());
        }
    }

    fn names_in(d: &Decision) -> (Header, Vec<String>) {
        let Decision::Forward(bytes) = d else {
            panic!("expected a forward, got {d:?}");
        };
        let h = parse_header(bytes).unwrap();
        let mut body = h.body(bytes).unwrap();
        let names = body
            .read_string_array()
            .unwrap()
            .into_iter()
            .map(String::from)
            .collect();
        body.finish().unwrap();
        (h, names)
    }

    #[test]
    fn list_names_replies_keep_only_what_the_app_may_see() {
        for e in BOTH {
            let mut f = started(policy(), e);
            learn_owner(&mut f, e, 2, "org.example.Talk", ":1.7");
            learn_owner(&mut f, e, 3, "org.example.Seen", ":1.8");
            let poke = peer_call(e, 70, ":1.13", APP, FLAG_NO_REPLY_EXPECTED);
            forwarded(f.from_bus(&poke), &poke);
            let all = [
                BUS_NAME,
                APP,
                ":1.7",
                ":1.8",
                ":1.9",
                ":1.13",
                "org.example.Talk",
                "org.example.Seen",
                "org.example.Hidden",
                "org.example.wild.a",
                "org.example.wilder",
                // The host's portal: hidden; appbox's: under the alias.
                "org.freedesktop.portal.Desktop",
                "org.appbox.Portal.Desktop",
                "org.gnome.Shell",
            ];
            let visible = [
                BUS_NAME,
                APP,
                ":1.7",
                ":1.8",
                ":1.13",
                "org.example.Talk",
                "org.example.Seen",
                "org.example.wild.a",
                "org.freedesktop.portal.Desktop",
            ];
            for (serial, member) in [(4, "ListNames"), (5, "ListActivatableNames")] {
                let ask = bus(e, serial, member, &[]);
                forwarded(f.from_app(&ask), &ask);
                let answer = ret(
                    e,
                    100 + serial,
                    BUS_NAME,
                    APP,
                    serial,
                    &[Arg::StrArray(&all)],
                );
                let d = f.from_bus(&answer);
                let (h, names) = names_in(&d);
                assert_eq!(names, visible);
                assert_eq!(h.serial, 100 + serial);
                assert_eq!(h.reply_serial, Some(serial));
                assert_eq!(h.sender.as_deref(), Some(BUS_NAME));
                assert_eq!(h.destination.as_deref(), Some(APP));
                assert_eq!(h.endian, e);
                // Once.
                assert_eq!(f.from_bus(&answer), Decision::Drop);
            }
            // Errors pass unchanged.
            let ask = bus(e, 6, "ListNames", &[]);
            forwarded(f.from_app(&ask), &ask);
            let failed = err(
                e,
                106,
                BUS_NAME,
                APP,
                6,
                "org.freedesktop.DBus.Error.Failed",
            );
            forwarded(f.from_bus(&failed), &failed);
            // A ListNames reply the app did not ask for is not rewritten: it
            // is dropped.
            let stray = ret(e, 107, BUS_NAME, APP, 7, &[Arg::StrArray(&all)]);
            assert_eq!(f.from_bus(&stray), Decision::Drop);
            // An unreadable reply from the bus ends the connection.
            let ask = bus(e, 8, "ListNames", &[]);
            forwarded(f.from_app(&ask), &ask);
            let bad = ret(e, 108, BUS_NAME, APP, 8, &[Arg::Str("x")]);
            assert_eq!(
                f.from_bus(&bad),
                Decision::Disconnect(FilterError::BadBusReply("ListNames"))
            );
        }
    }

    #[test]
    fn request_name_needs_own() {
        for e in BOTH {
            let mut f = started(policy(), e);
            for (serial, name) in [(2, "org.example.App"), (3, "org.example.App.Sub.Deeper")] {
                let m = bus(e, serial, "RequestName", &[Arg::Str(name), Arg::Uint32(0)]);
                forwarded(f.from_app(&m), &m);
            }
            for (serial, name) in [
                (4, "org.example.Talk"),
                (5, "org.example.Seen"),
                (6, "org.example.Unowned"),
                (7, "org.example.Apps"),
                (8, "org.freedesktop.portal.Desktop"),
                (9, ":1.42"),
            ] {
                let m = bus(e, serial, "RequestName", &[Arg::Str(name), Arg::Uint32(0)]);
                denied(f.from_app(&m), serial, e);
                let m = bus(e, serial + 100, "ReleaseName", &[Arg::Str(name)]);
                denied(f.from_app(&m), serial + 100, e);
                let m = bus(e, serial + 200, "ListQueuedOwners", &[Arg::Str(name)]);
                denied(f.from_app(&m), serial + 200, e);
            }
        }
    }

    #[test]
    fn the_app_broadcasts_only_while_it_holds_a_name_it_may_own() {
        for e in BOTH {
            let mut f = started(policy(), e);
            let broadcast = signal(e, 2, None, None, PATH);
            assert_eq!(f.from_app(&broadcast), Decision::Drop);
            let acquired = driver_signal(
                e,
                10,
                Some(APP),
                "NameAcquired",
                &[Arg::Str("org.example.App")],
            );
            forwarded(f.from_bus(&acquired), &acquired);
            forwarded(f.from_app(&broadcast), &broadcast);
            let lost = driver_signal(e, 11, Some(APP), "NameLost", &[Arg::Str("org.example.App")]);
            forwarded(f.from_bus(&lost), &lost);
            assert_eq!(f.from_app(&broadcast), Decision::Drop);
            // Unicast signals need TALK on the destination.
            let to_talk = signal(e, 3, None, Some("org.example.Talk"), PATH);
            forwarded(f.from_app(&to_talk), &to_talk);
            let to_self = signal(e, 4, None, Some(APP), PATH);
            forwarded(f.from_app(&to_self), &to_self);
            for (serial, to) in [
                (5, "org.example.Seen"),
                (6, "org.example.Hidden"),
                (7, ":1.7"),
                (8, BUS_NAME),
            ] {
                assert_eq!(
                    f.from_app(&signal(e, serial, None, Some(to), PATH)),
                    Decision::Drop,
                    "{to}"
                );
            }
            // A NameAcquired for someone else, or forged by a peer, counts
            // for nothing.
            let elsewhere = driver_signal(
                e,
                12,
                Some(":1.7"),
                "NameAcquired",
                &[Arg::Str("org.example.App")],
            );
            assert_eq!(f.from_bus(&elsewhere), Decision::Drop);
            let forged = OutgoingFields {
                path: Some("/org/freedesktop/DBus"),
                interface: Some(BUS_INTERFACE),
                member: Some("NameAcquired"),
                sender: Some(":1.7"),
                destination: Some(APP),
                ..OutgoingFields::default()
            };
            let forged = msg(
                e,
                MessageType::Signal,
                13,
                forged,
                &[Arg::Str("org.example.App")],
            );
            // It reaches the app as any unicast signal would, but the app
            // still holds nothing.
            forwarded(f.from_bus(&forged), &forged);
            assert_eq!(f.from_app(&signal(e, 9, None, None, PATH)), Decision::Drop);
        }
    }

    #[test]
    fn signals_from_the_bus_need_talk_or_an_address() {
        for e in BOTH {
            let mut f = started(policy(), e);
            learn_owner(&mut f, e, 2, "org.example.Talk", ":1.7");
            learn_owner(&mut f, e, 3, "org.example.Seen", ":1.8");
            learn_owner(&mut f, e, 4, "org.freedesktop.portal.Desktop", ":1.20");
            let from_talk = signal(e, 50, Some(":1.7"), None, PATH);
            forwarded(f.from_bus(&from_talk), &from_talk);
            // SEE is not enough for broadcasts (as in xdg-dbus-proxy).
            assert_eq!(
                f.from_bus(&signal(e, 51, Some(":1.8"), None, PATH)),
                Decision::Drop
            );
            assert_eq!(
                f.from_bus(&signal(e, 52, Some(":1.9"), None, PATH)),
                Decision::Drop
            );
            assert_eq!(f.from_bus(&signal(e, 53, None, None, PATH)), Decision::Drop);
            // The portal broadcasts from its own paths only.
            for path in ["/org/freedesktop/portal/desktop", "/org/freedesktop/portal"] {
                let m = signal(e, 54, Some(":1.20"), None, path);
                forwarded(f.from_bus(&m), &m);
            }
            for path in ["/org/freedesktop/portals", "/org/freedesktop", PATH] {
                let m = signal(e, 55, Some(":1.20"), None, path);
                assert_eq!(f.from_bus(&m), Decision::Drop, "{path}");
            }
            // Unicast signals addressed to the app pass, from anyone, and
            // make the sender visible; others are dropped.
            let to_app = signal(e, 56, Some(":1.9"), Some(APP), PATH);
            forwarded(f.from_bus(&to_app), &to_app);
            assert_eq!(f.level_of(":1.9"), Level::See);
            assert_eq!(
                f.from_bus(&signal(e, 57, Some(":1.9"), Some(":1.10"), PATH)),
                Decision::Drop
            );
            // The bus driver's own broadcasts.
            let changed = driver_signal(e, 58, None, "ActivatableServicesChanged", &[]);
            forwarded(f.from_bus(&changed), &changed);
            // NameOwnerChanged only about names the app may see.
            for name in [
                "org.example.Seen",
                "org.example.Talk",
                "org.example.wild.b",
                APP,
                ":1.9",
            ] {
                let m = owner_changed(e, 59, name, "", ":1.30");
                forwarded(f.from_bus(&m), &m);
            }
            for name in ["org.example.Hidden", ":1.31", "org.gnome.Shell"] {
                let m = owner_changed(e, 60, name, "", ":1.30");
                assert_eq!(f.from_bus(&m), Decision::Drop, "{name}");
            }
            let bad = driver_signal(
                e,
                61,
                None,
                "NameOwnerChanged",
                &[Arg::Str("org.example.Seen")],
            );
            assert_eq!(f.from_bus(&bad), Decision::Drop);
            // NameAcquired and NameLost only about names the app may see.
            let hidden = driver_signal(
                e,
                62,
                Some(APP),
                "NameAcquired",
                &[Arg::Str("org.example.Hidden")],
            );
            assert_eq!(f.from_bus(&hidden), Decision::Drop);
            let hidden = driver_signal(
                e,
                63,
                Some(APP),
                "NameLost",
                &[Arg::Str("org.example.Hidden")],
            );
            assert_eq!(f.from_bus(&hidden), Decision::Drop);
            let seen = driver_signal(
                e,
                64,
                Some(APP),
                "NameLost",
                &[Arg::Str("org.example.Seen")],
            );
            forwarded(f.from_bus(&seen), &seen);
        }
    }

    // ---- the portal's aliases ----------------------------------------------

    const DESKTOP: &str = "org.freedesktop.portal.Desktop";
    const DESKTOP_ON_BUS: &str = "org.appbox.Portal.Desktop";
    const DOCUMENTS: &str = "org.freedesktop.portal.Documents";
    const DOCUMENTS_ON_BUS: &str = "org.appbox.Portal.Documents";
    const PORTAL_OBJECT: &str = "/org/freedesktop/portal/desktop";

    /// The rule text the app's `rule` becomes on the bus.
    fn forwarded_rule(d: &Decision) -> MatchRule {
        let Decision::Forward(bytes) = d else {
            panic!("expected a forward, got {d:?}");
        };
        let h = parse_header(bytes).unwrap();
        parse_match_rule(string_argument(bytes, &h).unwrap()).unwrap()
    }

    #[test]
    fn calls_to_the_portal_go_to_its_name_on_the_bus() {
        for e in BOTH {
            let mut f = started(policy(), e);
            // Under the names the app sees: renamed, all else unchanged.
            for (serial, flags) in [(2, 0), (3, FLAG_NO_AUTO_START), (4, FLAG_NO_REPLY_EXPECTED)] {
                let m = call(e, serial, DESKTOP, flags);
                forwarded(f.from_app(&m), &call(e, serial, DESKTOP_ON_BUS, flags));
            }
            let m = call(e, 5, DOCUMENTS, 0);
            forwarded(f.from_app(&m), &call(e, 5, DOCUMENTS_ON_BUS, 0));
            // With descriptors, which stay counted.
            let m = with_unix_fds(&call(e, 6, DESKTOP, 0), 2, e);
            forwarded(
                f.from_app_with_fds(&m, 2),
                &with_unix_fds(&call(e, 6, DESKTOP_ON_BUS, 0), 2, e),
            );
            // The replies come from the portal's unique name, to the calls
            // as the app made them.
            let answer = ret(e, 40, ":1.20", APP, 2, &[Arg::Str("ok")]);
            forwarded(f.from_bus(&answer), &answer);
            let failed = err(e, 41, BUS_NAME, APP, 3, ERROR_SERVICE_UNKNOWN);
            forwarded(f.from_bus(&failed), &failed);
            // Under the bus's names, the portal does not exist.
            refused(
                f.from_app(&call(e, 7, DESKTOP_ON_BUS, 0)),
                ERROR_SERVICE_UNKNOWN,
                7,
                e,
            );
            refused(
                f.from_app(&call(e, 8, DOCUMENTS_ON_BUS, FLAG_NO_AUTO_START)),
                ERROR_NAME_HAS_NO_OWNER,
                8,
                e,
            );
            // Nor do the host's other portal services.
            refused(
                f.from_app(&call(e, 9, "org.freedesktop.portal.Settings", 0)),
                ERROR_SERVICE_UNKNOWN,
                9,
                e,
            );
            // Unicast signals to the portal are renamed too.
            let m = signal(e, 10, None, Some(DESKTOP), PATH);
            forwarded(
                f.from_app(&m),
                &signal(e, 10, None, Some(DESKTOP_ON_BUS), PATH),
            );
            assert_eq!(
                f.from_app(&signal(e, 11, None, Some(DESKTOP_ON_BUS), PATH)),
                Decision::Drop
            );
            // The app may not own the portal's names, either of them.
            for (serial, name) in [(12, DESKTOP), (13, DESKTOP_ON_BUS)] {
                let m = bus(e, serial, "RequestName", &[Arg::Str(name), Arg::Uint32(0)]);
                denied(f.from_app(&m), serial, e);
            }
        }
    }

    #[test]
    fn bus_driver_calls_about_the_portal_use_its_name_on_the_bus() {
        for e in BOTH {
            let mut f = started(policy(), e);
            for (serial, member) in [(2, "GetNameOwner"), (3, "NameHasOwner")] {
                let m = bus(e, serial, member, &[Arg::Str(DESKTOP)]);
                let sent = bus(e, serial, member, &[Arg::Str(DESKTOP_ON_BUS)]);
                forwarded(f.from_app(&m), &sent);
            }
            // The owner is kept under the name the app knows.
            let owner = ret(e, 50, BUS_NAME, APP, 2, &[Arg::Str(":1.20")]);
            forwarded(f.from_bus(&owner), &owner);
            assert_eq!(f.owners.get(DESKTOP).map(String::as_str), Some(":1.20"));
            assert_eq!(f.owners.get(DESKTOP_ON_BUS), None);
            assert_eq!(f.level_of(":1.20"), Level::Talk);
            let m = call(e, 4, ":1.20", 0);
            forwarded(f.from_app(&m), &m);
            let m = bus(
                e,
                5,
                "StartServiceByName",
                &[Arg::Str(DOCUMENTS), Arg::Uint32(0)],
            );
            let sent = bus(
                e,
                5,
                "StartServiceByName",
                &[Arg::Str(DOCUMENTS_ON_BUS), Arg::Uint32(0)],
            );
            forwarded(f.from_app(&m), &sent);
            // The bus's names are unknown names.
            refused(
                f.from_app(&bus(e, 6, "GetNameOwner", &[Arg::Str(DESKTOP_ON_BUS)])),
                ERROR_NAME_HAS_NO_OWNER,
                6,
                e,
            );
            let d = f.from_app(&bus(e, 7, "NameHasOwner", &[Arg::Str(DESKTOP_ON_BUS)]));
            let Decision::Reply(bytes) = &d else {
                panic!("{d:?}");
            };
            let h = parse_header(bytes).unwrap();
            assert!(!h.body(bytes).unwrap().read_bool().unwrap());
            let m = bus(
                e,
                8,
                "StartServiceByName",
                &[Arg::Str(DESKTOP_ON_BUS), Arg::Uint32(0)],
            );
            denied(f.from_app(&m), 8, e);
            // Other names pass as they are.
            let m = bus(e, 9, "GetNameOwner", &[Arg::Str("org.example.Talk")]);
            forwarded(f.from_app(&m), &m);
        }
    }

    #[test]
    fn match_rules_naming_the_portal_are_renamed() {
        for e in BOTH {
            let mut f = started(policy(), e);
            let mut serial = 1;
            for member in ["AddMatch", "RemoveMatch"] {
                // GDBus's rule for a signal subscription with a sender, and
                // its rule for watching the sender's owner.
                let by_sender = format!(
                    "type='signal',sender='{DESKTOP}',interface='org.freedesktop.portal.Request',\
                     member='Response',path='{PORTAL_OBJECT}/request/1_42/t'"
                );
                let watch = format!(
                    "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',\
                     member='NameOwnerChanged',path='/org/freedesktop/DBus',arg0='{DESKTOP}'"
                );
                let unquoted = format!("sender={DOCUMENTS},arg0={DOCUMENTS},arg1=it\\'s");
                for text in [&by_sender, &watch, &unquoted] {
                    serial += 1;
                    let d = f.from_app(&bus(e, serial, member, &[Arg::Str(text)]));
                    let mut expected = parse_match_rule(text).unwrap();
                    for name in expected.sender.iter_mut() {
                        *name = f.policy.bus_name(name).to_owned();
                    }
                    if let Some((0, ArgMatch::String(name))) = expected.args.first_mut() {
                        *name = f.policy.bus_name(name).to_owned();
                    }
                    assert_ne!(expected, parse_match_rule(text).unwrap());
                    assert_eq!(forwarded_rule(&d), expected, "{text}");
                    // The rest of the message is the app's.
                    let Decision::Forward(bytes) = &d else {
                        unreachable!()
                    };
                    let h = parse_header(bytes).unwrap();
                    assert_eq!(h.serial, serial);
                    assert_eq!(h.member.as_deref(), Some(member));
                    assert_eq!(h.endian, e);
                }
                // Rules that do not name an alias in sender= or arg0= pass
                // byte for byte, however they are spelled.
                for text in [
                    format!("type='signal',sender={DESKTOP_ON_BUS}"),
                    format!("arg0namespace='{DESKTOP}'"),
                    format!("arg1='{DESKTOP}',sender=org.example.Talk"),
                    format!("arg0path='/org/x',path='{PORTAL_OBJECT}'"),
                    "type=signal,member=Changed,path_namespace='/org'".to_owned(),
                ] {
                    serial += 1;
                    let m = bus(e, serial, member, &[Arg::Str(&text)]);
                    forwarded(f.from_app(&m), &m);
                }
                // Eavesdropping stays refused.
                serial += 1;
                let m = bus(
                    e,
                    serial,
                    member,
                    &[Arg::Str(&format!("sender='{DESKTOP}',eavesdrop=true"))],
                );
                denied(f.from_app(&m), serial, e);
                // A rule whose new text would be too long for the bus.
                serial += 1;
                let head = format!("sender={DESKTOP},arg1=x,arg2=x,arg3=x,arg4=x,arg5=x,arg6=x,arg7=x,arg8=x,arg9=x,arg10=");
                let long = format!("{head}{}", "y".repeat(MAX_MATCH_RULE_LENGTH - head.len()));
                assert!(parse_match_rule(&long).is_ok());
                let m = bus(e, serial, member, &[Arg::Str(&long)]);
                denied(f.from_app(&m), serial, e);
            }
        }
    }

    #[test]
    fn the_portal_is_seen_under_its_alias_and_the_hosts_not_at_all() {
        for e in BOTH {
            let mut f = started(policy(), e);
            // appbox's portal appears: renamed, and its owner is learnt.
            let appeared = owner_changed(e, 30, DESKTOP_ON_BUS, "", ":1.20");
            forwarded(
                f.from_bus(&appeared),
                &owner_changed(e, 30, DESKTOP, "", ":1.20"),
            );
            assert_eq!(f.level_of(":1.20"), Level::Talk);
            // The host's portal under the standard name: never seen, and it
            // changes nothing.
            for (serial, old, new) in [(31, "", ":1.5"), (32, ":1.5", ":1.6"), (33, ":1.6", "")] {
                let host = owner_changed(e, serial, DESKTOP, old, new);
                assert_eq!(f.from_bus(&host), Decision::Drop);
            }
            assert_eq!(f.owners.get(DESKTOP).map(String::as_str), Some(":1.20"));
            assert_eq!(f.level_of(":1.5"), Level::None);
            assert_eq!(f.level_of(":1.6"), Level::None);
            // Broadcasts from appbox's portal pass on its paths; the host's
            // portal is nobody.
            let response = signal(
                e,
                34,
                Some(":1.20"),
                None,
                "/org/freedesktop/portal/desktop/request/1_42/t",
            );
            forwarded(f.from_bus(&response), &response);
            assert_eq!(
                f.from_bus(&signal(e, 35, Some(":1.20"), None, PATH)),
                Decision::Drop
            );
            assert_eq!(
                f.from_bus(&signal(e, 36, Some(":1.5"), None, PORTAL_OBJECT)),
                Decision::Drop
            );
            // appbox's portal leaves: the app sees its alias go.
            let gone = owner_changed(e, 37, DESKTOP_ON_BUS, ":1.20", "");
            forwarded(
                f.from_bus(&gone),
                &owner_changed(e, 37, DESKTOP, ":1.20", ""),
            );
            assert_eq!(f.level_of(":1.20"), Level::None);
            assert_eq!(f.owners.get(DESKTOP), None);
        }
    }

    #[test]
    fn name_lists_show_the_portal_under_its_alias() {
        for e in BOTH {
            let mut f = started(policy(), e);
            learn_owner(&mut f, e, 2, DESKTOP, ":1.20");
            let all = [
                BUS_NAME,
                APP,
                DESKTOP,
                DESKTOP_ON_BUS,
                ":1.20",
                ":1.5",
                DOCUMENTS_ON_BUS,
                "org.freedesktop.portal.Settings",
                DOCUMENTS,
            ];
            let visible = [BUS_NAME, APP, DESKTOP, ":1.20", DOCUMENTS];
            for (serial, member) in [(3, "ListNames"), (4, "ListActivatableNames")] {
                let ask = bus(e, serial, member, &[]);
                forwarded(f.from_app(&ask), &ask);
                let answer = ret(
                    e,
                    60 + serial,
                    BUS_NAME,
                    APP,
                    serial,
                    &[Arg::StrArray(&all)],
                );
                let (h, names) = names_in(&f.from_bus(&answer));
                assert_eq!(names, visible);
                let asked = parse_header(&answer).unwrap();
                assert_eq!(
                    Header {
                        body_len: asked.body_len,
                        ..h
                    },
                    asked
                );
            }
        }
    }

    #[test]
    fn the_unfiltered_policy_renames_nothing() {
        for e in BOTH {
            let mut f = Filter::new(Policy::new(
                &Permissions {
                    sockets: [Socket::SessionBus].into_iter().collect(),
                    ..Permissions::default()
                },
                PORTAL_ALIASES,
            ));
            let hello = bus(e, 1, "Hello", &[]);
            forwarded(f.from_app(&hello), &hello);
            let welcome = ret(e, 1, BUS_NAME, APP, 1, &[Arg::Str(APP)]);
            forwarded(f.from_bus(&welcome), &welcome);
            assert_eq!(f.app_name(), Some(APP));
            for m in [
                call(e, 2, DESKTOP, 0),
                call(e, 3, DESKTOP_ON_BUS, 0),
                bus(e, 4, "GetNameOwner", &[Arg::Str(DESKTOP)]),
                bus(
                    e,
                    5,
                    "AddMatch",
                    &[Arg::Str(&format!("sender='{DESKTOP}'"))],
                ),
            ] {
                forwarded(f.from_app(&m), &m);
            }
            for m in [
                owner_changed(e, 6, DESKTOP, "", ":1.5"),
                owner_changed(e, 7, DESKTOP_ON_BUS, "", ":1.20"),
            ] {
                forwarded(f.from_bus(&m), &m);
            }
        }
    }

    #[test]
    fn the_app_waits_for_the_answer_to_its_hello() {
        for e in BOTH {
            for open in [false, true] {
                let mut f = Filter::new(if open { Policy::unfiltered() } else { policy() });
                assert!(!f.awaiting_hello_reply());
                let hello = bus(e, 5, "Hello", &[]);
                forwarded(f.from_app(&hello), &hello);
                assert!(f.awaiting_hello_reply());
                // Other replies do not count.
                let other = ret(e, 1, BUS_NAME, APP, 4, &[Arg::Str(":1.9")]);
                let _ = f.from_bus(&other);
                let forged = ret(e, 2, ":1.9", APP, 5, &[Arg::Str(":1.9")]);
                let _ = f.from_bus(&forged);
                assert!(f.awaiting_hello_reply());
                assert_eq!(f.app_name(), None);
                let welcome = ret(e, 3, BUS_NAME, APP, 5, &[Arg::Str(APP)]);
                forwarded(f.from_bus(&welcome), &welcome);
                assert!(!f.awaiting_hello_reply());
                assert_eq!(f.app_name(), Some(APP));

                // An error answers it too, and names nobody.
                let mut f = Filter::new(if open { Policy::unfiltered() } else { policy() });
                forwarded(f.from_app(&hello), &hello);
                let refusal = err(e, 3, BUS_NAME, APP, 5, ERROR_ACCESS_DENIED);
                forwarded(f.from_bus(&refusal), &refusal);
                assert!(!f.awaiting_hello_reply());
                assert_eq!(f.app_name(), None);
            }
            // Unfiltered, a first message that is not Hello is no Hello.
            let mut f = Filter::new(Policy::unfiltered());
            let m = call(e, 1, "org.example.Talk", 0);
            forwarded(f.from_app(&m), &m);
            let hello = bus(e, 2, "Hello", &[]);
            forwarded(f.from_app(&hello), &hello);
            assert!(!f.awaiting_hello_reply());
        }
    }

    // ---- descriptors -------------------------------------------------------

    #[test]
    fn descriptor_counts_must_match_the_header() {
        for e in BOTH {
            let mut f = started(policy(), e);
            let with_two = with_unix_fds(&call(e, 2, "org.example.Talk", 0), 2, e);
            // The bytes pass unchanged, UNIX_FDS included.
            forwarded(f.from_app_with_fds(&with_two, 2), &with_two);
            for (serial, received) in [(3, 0), (4, 1), (5, 3)] {
                let m = with_unix_fds(&call(e, serial, "org.example.Talk", 0), 2, e);
                denied(f.from_app_with_fds(&m, received), serial, e);
            }
            // from_app means no descriptors came.
            let m = with_unix_fds(&call(e, 6, "org.example.Talk", 0), 1, e);
            denied(f.from_app(&m), 6, e);
            // Descriptors the header does not mention.
            denied(
                f.from_app_with_fds(&call(e, 7, "org.example.Talk", 0), 1),
                7,
                e,
            );
            let quiet = with_unix_fds(
                &call(e, 8, "org.example.Talk", FLAG_NO_REPLY_EXPECTED),
                1,
                e,
            );
            assert_eq!(f.from_app_with_fds(&quiet, 0), Decision::Drop);
            // The refused calls were never tracked: a reply to them is dropped.
            for serial in 3..=8 {
                assert_eq!(
                    f.from_bus(&ret(e, 40 + serial, ":1.7", APP, serial, &[])),
                    Decision::Drop
                );
            }
            // Policy still applies to messages with matching descriptors.
            let hidden = with_unix_fds(&call(e, 9, "org.example.Hidden", 0), 1, e);
            refused(f.from_app_with_fds(&hidden, 1), ERROR_SERVICE_UNKNOWN, 9, e);
            // From the bus, a mismatch means the stream is out of step.
            let poke = with_unix_fds(&peer_call(e, 70, ":1.7", APP, 0), 1, e);
            forwarded(f.from_bus_with_fds(&poke, 1), &poke);
            assert!(matches!(
                f.from_bus_with_fds(&poke, 0),
                Decision::Disconnect(FilterError::MalformedFromBus(
                    MessageError::UnixFdCountMismatch { .. }
                ))
            ));
            // Even the unfiltered proxy checks them.
            let mut open = Filter::new(Policy::unfiltered());
            denied_without_name(open.from_app_with_fds(&with_two, 1), 2, e);
            forwarded(open.from_app_with_fds(&with_two, 2), &with_two);
        }
    }

    /// AccessDenied before the app has a name.
    fn denied_without_name(d: Decision, serial: u32, e: Endian) {
        let h = refused(d, ERROR_ACCESS_DENIED, serial, e);
        assert_eq!(h.destination, None);
    }

    // ---- malformed input, bounds, fuzzing ---------------------------------

    #[test]
    fn malformed_messages_end_the_connection() {
        for e in BOTH {
            let good = call(e, 2, "org.example.Talk", 0);
            let mut zero_serial = good.clone();
            zero_serial[8..12].copy_from_slice(&[0; 4]);
            let mut bad_order = good.clone();
            bad_order[0] = b'x';
            let mut bad_type = good.clone();
            bad_type[1] = 9;
            let cases = [
                Vec::new(),
                good[..10].to_vec(),
                good[..good.len() - 1].to_vec(),
                [good.clone(), vec![0]].concat(),
                zero_serial,
                bad_order,
                bad_type,
            ];
            for m in &cases {
                let mut f = started(policy(), e);
                assert!(matches!(
                    f.from_app(m),
                    Decision::Disconnect(FilterError::MalformedFromApp(_))
                ));
                assert!(matches!(
                    f.from_bus(m),
                    Decision::Disconnect(FilterError::MalformedFromBus(_))
                ));
                let mut open = Filter::new(Policy::unfiltered());
                assert!(matches!(open.from_app(m), Decision::Disconnect(_)));
            }
        }
    }

    #[test]
    fn the_unfiltered_policy_passes_everything_well_formed() {
        for e in BOTH {
            let mut f = Filter::new(Policy::unfiltered());
            let all = [
                bus(e, 1, "BecomeMonitor", &[Arg::StrArray(&[]), Arg::Uint32(0)]),
                bus(e, 2, "AddMatch", &[Arg::Str("eavesdrop=true")]),
                call(e, 3, "org.example.Hidden", 0),
                signal(e, 4, None, None, PATH),
            ];
            for m in &all {
                forwarded(f.from_app(m), m);
            }
            let stray = ret(e, 5, ":1.7", APP, 99, &[]);
            forwarded(f.from_bus(&stray), &stray);
            assert_eq!(f.level_of("org.example.Hidden"), Level::Own);
            assert_eq!(f.tracked_entries(), 0);
        }
    }

    #[test]
    fn tracked_state_is_capped() {
        let e = LE;
        let mut f = started(policy(), e);
        // Outstanding calls of the app.
        for serial in 2..2 + MAX_TRACKED as u32 {
            let m = call(e, serial, "org.example.Talk", 0);
            assert!(matches!(f.from_app(&m), Decision::Forward(_)));
        }
        let next = 2 + MAX_TRACKED as u32;
        refused(
            f.from_app(&call(e, next, "org.example.Talk", 0)),
            ERROR_LIMITS_EXCEEDED,
            next,
            e,
        );
        // Calls that want no reply still pass; an answer frees a slot.
        let quiet = call(e, next + 1, "org.example.Talk", FLAG_NO_REPLY_EXPECTED);
        forwarded(f.from_app(&quiet), &quiet);
        let answer = ret(e, 9, ":1.7", APP, 2, &[]);
        forwarded(f.from_bus(&answer), &answer);
        let m = call(e, next + 2, "org.example.Talk", 0);
        forwarded(f.from_app(&m), &m);
        assert_eq!(f.outgoing.len(), MAX_TRACKED);

        // Calls to the app awaiting its reply.
        for serial in 1..=MAX_TRACKED as u32 {
            let m = peer_call(e, serial, ":1.7", APP, 0);
            assert!(matches!(f.from_bus(&m), Decision::Forward(_)));
        }
        assert_eq!(
            f.from_bus(&peer_call(e, 99_999, ":1.7", APP, 0)),
            Decision::Drop
        );
        assert_eq!(f.incoming.len(), MAX_TRACKED);

        // Owners (under a wildcard), callers.
        for i in 0..MAX_TRACKED + 10 {
            let name = format!("org.example.wild.n{i}");
            let owner = format!(":2.{i}");
            assert!(matches!(
                f.from_bus(&owner_changed(e, 5, &name, "", &owner)),
                Decision::Forward(_) | Decision::Drop
            ));
            let caller = format!(":3.{i}");
            let m = peer_call(e, 5, &caller, APP, FLAG_NO_REPLY_EXPECTED);
            assert!(matches!(f.from_bus(&m), Decision::Forward(_)));
        }
        assert_eq!(f.owners.len(), MAX_TRACKED);
        assert_eq!(f.callers.len(), MAX_TRACKED);
        assert!(f.tracked_entries() <= 5 * MAX_TRACKED);
    }

    #[test]
    fn random_mutated_messages_never_panic_and_state_stays_bounded() {
        let mut pool: Vec<(bool, Vec<u8>)> = Vec::new();
        for e in BOTH {
            for serial in [2, 3, 7, 4096, 70_000] {
                let app = [
                    call(e, serial, "org.example.Talk", 0),
                    call(e, serial, ":1.7", 0),
                    call(e, serial, "org.example.Seen", FLAG_NO_AUTO_START),
                    bus(e, serial, "ListNames", &[]),
                    bus(e, serial, "GetNameOwner", &[Arg::Str("org.example.Talk")]),
                    bus(e, serial, "NameHasOwner", &[Arg::Str("org.example.Hidden")]),
                    bus(e, serial, "AddMatch", &[Arg::Str("eavesdrop='true'")]),
                    bus(e, serial, "AddMatch", &[Arg::Str("type='signal'")]),
                    bus(
                        e,
                        serial,
                        "RequestName",
                        &[Arg::Str("org.example.App"), Arg::Uint32(0)],
                    ),
                    bus(
                        e,
                        serial,
                        "BecomeMonitor",
                        &[Arg::StrArray(&[]), Arg::Uint32(0)],
                    ),
                    signal(e, serial, None, None, PATH),
                    ret(e, serial, APP, ":1.7", 70, &[Arg::Str("x")]),
                    with_unix_fds(&call(e, serial, "org.example.Talk", 0), 1, e),
                ];
                pool.extend(app.into_iter().map(|m| (true, m)));
                let from_bus = [
                    ret(e, serial, BUS_NAME, APP, serial, &[Arg::Str(":1.7")]),
                    ret(
                        e,
                        serial,
                        BUS_NAME,
                        APP,
                        serial,
                        &[Arg::StrArray(&[APP, ":1.7", "org.example.Talk", "x.y"])],
                    ),
                    ret(e, serial, ":1.7", APP, serial, &[]),
                    err(e, serial, BUS_NAME, APP, serial, ERROR_NAME_HAS_NO_OWNER),
                    peer_call(e, serial, ":1.7", APP, 0),
                    peer_call(e, serial, ":1.8", "org.example.App", 0),
                    owner_changed(e, serial, "org.example.Talk", "", ":1.7"),
                    owner_changed(e, serial, ":1.7", ":1.7", ""),
                    owner_changed(e, serial, "org.example.wild.q", "", ":1.9"),
                    driver_signal(
                        e,
                        serial,
                        Some(APP),
                        "NameAcquired",
                        &[Arg::Str("org.example.App")],
                    ),
                    driver_signal(
                        e,
                        serial,
                        Some(APP),
                        "NameLost",
                        &[Arg::Str("org.example.App")],
                    ),
                    signal(e, serial, Some(":1.7"), None, PATH),
                    signal(
                        e,
                        serial,
                        Some(":1.20"),
                        None,
                        "/org/freedesktop/portal/desktop",
                    ),
                ];
                pool.extend(from_bus.into_iter().map(|m| (false, m)));
            }
        }
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut f = started(policy(), LE);
        let mut disconnects = 0;
        for round in 0..40_000u32 {
            let (from_app, original) = &pool[rng.below(pool.len())];
            let mut m = original.clone();
            match rng.below(8) {
                // Unchanged, with a fresh serial so that calls pile up.
                0 | 1 => {
                    let serial = (round + 2).to_le_bytes();
                    m[8..12].copy_from_slice(&serial);
                }
                2 => {
                    for _ in 0..1 + rng.below(4) {
                        let at = rng.below(m.len());
                        m[at] ^= 1 << rng.below(8);
                    }
                }
                3 => {
                    let at = 16 + rng.below(m.len() - 16);
                    m[at] = rng.next() as u8;
                }
                4 => m.truncate(rng.below(m.len())),
                5 => m.extend((0..1 + rng.below(16)).map(|_| rng.next() as u8)),
                6 => m[0] = if m[0] == b'l' { b'B' } else { b'l' },
                _ => {}
            }
            let fds = rng.below(3);
            let d = if *from_app {
                f.from_app_with_fds(&m, fds)
            } else {
                f.from_bus_with_fds(&m, fds)
            };
            match &d {
                Decision::Forward(bytes) | Decision::Reply(bytes) => {
                    parse_header(bytes).unwrap();
                }
                Decision::Disconnect(_) => disconnects += 1,
                Decision::Drop => {}
            }
            assert!(f.outgoing.len() <= MAX_TRACKED);
            assert!(f.incoming.len() <= MAX_TRACKED);
            assert!(f.owners.len() <= MAX_TRACKED);
            assert!(f.held.len() <= MAX_TRACKED);
            assert!(f.callers.len() <= MAX_TRACKED);
            assert!(f.tracked_entries() <= 5 * MAX_TRACKED);
        }
        assert!(disconnects > 0);
        assert!(f.outgoing.len() > 100, "{}", f.outgoing.len());
    }
}
