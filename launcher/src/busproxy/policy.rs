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
//!   The portal names get Flatpak's rules: `--call=org.freedesktop.portal.*=*`
//!   and `--broadcast=org.freedesktop.portal.*=@/org/freedesktop/portal/*`.
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
//! Descriptors: a message's UNIX_FDS must equal the number of descriptors
//! that came with it (CVE-CLASSES 29). [`Decision::Forward`] keeps the count,
//! and the caller sends the descriptors along. On any other decision the
//! caller closes them.

use std::collections::{BTreeMap, BTreeSet};

use crate::busproxy::message::{
    access_denied, build_message, error_reply, method_return, parse_header, request_name_arguments,
    rule_requests_eavesdrop, string_argument, Arg, Header, MessageError, MessageType,
    OutgoingFields, BUS_INTERFACE, BUS_NAME, ERROR_ACCESS_DENIED, FLAG_NO_AUTO_START,
};
use crate::permissions::{Permissions, Socket};

/// The most entries any one table of a [`Filter`] holds: calls of the app
/// awaiting replies, calls to the app awaiting its reply, known owners,
/// names the app holds, peers that called the app.
pub const MAX_TRACKED: usize = 4096;

/// The portal's names, which every sandbox may TALK to (Flatpak's
/// `--call=org.freedesktop.portal.*=*`).
pub const DEFAULT_PORTAL_NAMES: &[&str] = &["org.freedesktop.portal.*"];

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

/// The static part: levels per well-known name, from the permissions.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    unfiltered: bool,
    /// Exact names.
    exact: BTreeMap<String, Access>,
    /// `org.foo.*` is stored as `org.foo`.
    subtree: BTreeMap<String, Access>,
}

impl Policy {
    /// Levels from `talk-name`, `own-name` and `see-name`, plus TALK for the
    /// portal names in `portal_names` (with Flatpak's broadcast rule), such
    /// as [`DEFAULT_PORTAL_NAMES`] once appbox's portal serves them. `socket=session-bus` grants
    /// the whole bus, so it gives [`Policy::unfiltered`].
    ///
    /// Grants for unique names (`:1.5`) or empty names are ignored: the
    /// permission parser refuses them, and a unique name cannot be granted in
    /// advance.
    pub fn new(permissions: &Permissions, portal_names: &[&str]) -> Policy {
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
        for name in portal_names {
            policy.grant(name, Access::PORTAL);
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

    /// The app's unique name, once the bus has answered its Hello.
    pub fn app_name(&self) -> Option<&str> {
        self.app_name.as_deref()
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
            return Decision::Forward(msg.to_vec());
        }
        if !self.hello_sent {
            if !is_hello(&header) {
                return Decision::Disconnect(FilterError::HelloFirst);
            }
            self.hello_sent = true;
            return self.forward_call(&header, msg, Kind::Hello);
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
        if allowed {
            Decision::Forward(msg.to_vec())
        } else {
            Decision::Drop
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

    /// Forwards a call and remembers it if it expects a reply.
    fn forward_call(&mut self, header: &Header, msg: &[u8], kind: Kind) -> Decision {
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
        Decision::Forward(msg.to_vec())
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
        let fields = OutgoingFields {
            flags: header.flags,
            reply_serial: header.reply_serial,
            destination: header.destination.as_deref(),
            sender: header.sender.as_deref(),
            ..OutgoingFields::default()
        };
        match build_message(
            MessageType::MethodReturn,
            header.serial,
            &fields,
            &[Arg::StrArray(&kept)],
            header.endian,
        ) {
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
        let Some((name, _old, new)) = three_strings(msg, header) else {
            return Decision::Drop;
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
    use crate::busproxy::message::{Endian, FLAG_NO_REPLY_EXPECTED};
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
            DEFAULT_PORTAL_NAMES,
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
        forwarded(f.from_app(&ask), &ask);
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
            &["org.freedesktop.portal.*", "org.appbox.Portal"],
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
        // The portal, by default and by name.
        assert_eq!(p.level("org.freedesktop.portal.Desktop"), Level::Talk);
        assert_eq!(p.level("org.freedesktop.portal.Documents"), Level::Talk);
        assert_eq!(p.level("org.freedesktop.portals"), Level::None);
        assert_eq!(p.level("org.appbox.Portal"), Level::Talk);
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
                (5, "org.freedesktop.portal.Desktop"),
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
                "org.freedesktop.portal.Desktop",
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
