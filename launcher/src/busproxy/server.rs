//! The proxy's event loop: one thread, `poll(2)`, non-blocking sockets.
//!
//! [`serve`] accepts app connections on the sandbox's socket. Each app
//! connection gets its own upstream connection to the real bus. Both
//! handshakes are terminated here ([`ServerAuth`] towards the app,
//! [`ClientAuth`] towards the bus); after them every byte is cut into whole
//! messages and judged by the connection's [`Filter`].
//!
//! Descriptors: D-Bus peers (libdbus, GDBus, sd-bus, dbus-daemon) send one
//! message per `sendmsg` when it carries descriptors, and attach them to its
//! first byte. The kernel ends a `recvmsg` right after a chunk that carried
//! descriptors. So the descriptors of one `recvmsg` belong to the last message
//! that starts within the bytes of that same `recvmsg`. Descriptors that
//! cannot belong to any message start end the connection. We send a
//! message's descriptors with its first byte, in the same way.
//!
//! One connection failing (a malformed message, a hang-up, a refused
//! handshake, an unreachable bus) closes that connection and its upstream
//! only.
//!
//! Peer records: with [`PeerRecords`], each upstream connection's unique
//! name is recorded for the portal (see [`crate::busproxy::peers`]) as soon
//! as the bus answers its Hello. The app's messages after Hello wait until
//! then, so nothing of the app's reaches the portal before the record
//! exists. A connection whose record cannot be written is closed: the portal
//! must never take a sandboxed app for a host app. The record goes when the
//! connection closes, and when [`serve`] returns.

use std::collections::VecDeque;
use std::io::{self, IoSlice, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{getsockopt, sockopt::PeerCredentials, ControlMessage, MsgFlags, UnixAddr};

use crate::busproxy::auth::{AuthError, ClientAuth, ServerAuth};
use crate::busproxy::message::{message_length, MessageError, DEFAULT_MAX_UNIX_FDS};
use crate::busproxy::peers::{PeerError, PeerRecord, PeerRecords};
use crate::busproxy::policy::{Decision, Filter, FilterError, Policy};

/// Simultaneous app connections; more are accepted and closed at once.
pub const MAX_CONNECTIONS: usize = 64;
/// Descriptors taken from one `recvmsg` (dbus-daemon's default per message).
/// More end the connection.
pub const MAX_FDS_PER_READ: usize = DEFAULT_MAX_UNIX_FDS as usize;
/// Descriptors received but not yet handed to a message, per side.
const MAX_QUEUED_FDS: usize = 4 * MAX_FDS_PER_READ;
/// A side is not read while the buffer it writes into holds more than this.
pub const HIGH_WATER: usize = 4 * 1024 * 1024;
/// Bytes taken from a socket per read.
const READ_CHUNK: usize = 64 * 1024;
/// How long to stop accepting after the process ran out of descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// How long a connection may take to authenticate (both handshakes), as
/// dbus-daemon's `auth_timeout`; one that stalls is closed, so it cannot hold
/// one of the [`MAX_CONNECTIONS`] slots for good.
#[cfg(not(test))]
const AUTH_TIMEOUT: Duration = Duration::from_secs(30);
#[cfg(test)]
const AUTH_TIMEOUT: Duration = Duration::from_millis(500);

/// Why [`serve`] gave up. Failures of single connections never end it.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot set up the listening socket: {0}")]
    Listener(io::Error),
    #[error("accepting a connection failed: {0}")]
    Accept(io::Error),
    #[error("poll failed: {0}")]
    Poll(Errno),
    #[error("the stop descriptor is invalid")]
    StopFd,
    #[error("cannot read random bytes for the server GUID: {0}")]
    Random(io::Error),
}

/// Why one connection was closed. Kept for debugging only.
#[derive(Debug)]
#[allow(dead_code)]
enum Close {
    Hangup,
    Io(io::Error),
    Auth(AuthError),
    Upstream(io::Error),
    Message(MessageError),
    Filter(FilterError),
    Fds(&'static str),
    Peer(PeerError),
}

/// What every connection needs from [`serve`].
#[derive(Clone, Copy)]
struct Ctx<'a> {
    upstream: &'a Path,
    euid: u32,
    peers: Option<&'a PeerRecords>,
}

/// Serves app connections from `listener` until `stop` becomes readable (or
/// hangs up), relaying each to a new connection to the bus socket at
/// `upstream`, filtered by `policy`, and recording each upstream
/// connection in `peers` while it lasts. When it returns, for any reason,
/// every connection is closed and its record removed.
pub fn serve(
    listener: UnixListener,
    upstream: &Path,
    policy: Policy,
    stop: Option<BorrowedFd<'_>>,
    peers: Option<&PeerRecords>,
) -> Result<(), ServerError> {
    listener
        .set_nonblocking(true)
        .map_err(ServerError::Listener)?;
    let guid = random_guid().map_err(ServerError::Random)?;
    let ctx = Ctx {
        upstream,
        euid: nix::unistd::geteuid().as_raw(),
        peers,
    };
    let mut conns: Vec<Conn> = Vec::new();
    let mut accept_paused_until: Option<Instant> = None;

    loop {
        let now = Instant::now();
        if accept_paused_until.is_some_and(|t| t <= now) {
            accept_paused_until = None;
        }
        conns.retain(|conn| !conn.auth_expired(now));
        let accepting = accept_paused_until.is_none();
        let wake_at = conns
            .iter()
            .filter_map(Conn::auth_deadline)
            .chain(accept_paused_until)
            .min();
        let timeout = match wake_at {
            Some(t) => {
                PollTimeout::try_from(t.saturating_duration_since(now)).unwrap_or(PollTimeout::MAX)
            }
            None => PollTimeout::NONE,
        };

        // Which pollfd belongs to what: stop?, listener, then per connection.
        let mut pfds = Vec::with_capacity(2 + 2 * conns.len());
        if let Some(stop) = stop {
            pfds.push(PollFd::new(stop, PollFlags::POLLIN));
        }
        let listen_idx = pfds.len();
        let listen_events = if accepting {
            PollFlags::POLLIN
        } else {
            PollFlags::empty()
        };
        pfds.push(PollFd::new(listener.as_fd(), listen_events));
        let mut slots = Vec::with_capacity(conns.len());
        for conn in &conns {
            let (app, bus) = conn.interest();
            let app_slot = app.map(|events| {
                pfds.push(PollFd::new(conn.app.sock.as_fd(), events));
                pfds.len() - 1
            });
            let bus_slot = match (bus, &conn.bus) {
                (Some(events), Some(side)) => {
                    pfds.push(PollFd::new(side.sock.as_fd(), events));
                    Some(pfds.len() - 1)
                }
                _ => None,
            };
            slots.push((app_slot, bus_slot));
        }
        match poll(&mut pfds, timeout) {
            Ok(_) => {}
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(ServerError::Poll(e)),
        }
        let revents: Vec<PollFlags> = pfds
            .iter()
            .map(|p| p.revents().unwrap_or(PollFlags::empty()))
            .collect();
        drop(pfds);

        if stop.is_some() {
            if revents[0].contains(PollFlags::POLLNVAL) {
                return Err(ServerError::StopFd);
            }
            if !revents[0].is_empty() {
                return Ok(());
            }
        }

        let get = |slot: Option<usize>| slot.map_or(PollFlags::empty(), |i| revents[i]);
        let mut i = 0;
        conns.retain_mut(|conn| {
            let (app_slot, bus_slot) = slots[i];
            i += 1;
            // A failing connection is dropped, which closes both its sockets
            // and every descriptor it still holds.
            conn.handle(get(app_slot), get(bus_slot), ctx)
                .unwrap_or(false)
        });

        let listen_rev = revents[listen_idx];
        if listen_rev.intersects(PollFlags::POLLERR | PollFlags::POLLHUP | PollFlags::POLLNVAL) {
            return Err(ServerError::Listener(io::Error::other(
                "the listening socket reported an error",
            )));
        }
        if listen_rev.contains(PollFlags::POLLIN) {
            match listener.accept() {
                Ok((stream, _)) => {
                    if conns.len() < MAX_CONNECTIONS {
                        if let Ok(conn) = Conn::new(stream, guid, policy.clone()) {
                            conns.push(conn);
                        }
                    }
                }
                Err(e) => match e.raw_os_error().map(Errno::from_raw) {
                    Some(Errno::EAGAIN | Errno::EINTR | Errno::ECONNABORTED | Errno::EPROTO) => {}
                    Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM) => {
                        accept_paused_until = Some(Instant::now() + ACCEPT_BACKOFF);
                    }
                    _ => return Err(ServerError::Accept(e)),
                },
            }
        }
    }
}

fn random_guid() -> io::Result<[u8; 16]> {
    let mut guid = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut guid)?;
    Ok(guid)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The app is authenticating to us.
    AppAuth,
    /// We are authenticating to the bus; the app waits.
    BusAuth,
    /// Messages flow.
    Relay,
}

/// One app connection and its upstream connection.
struct Conn {
    app: Side,
    bus: Option<Side>,
    phase: Phase,
    server: ServerAuth,
    client: Option<ClientAuth>,
    filter: Filter,
    /// The upstream connection's peer record, once written; removed when
    /// the connection is dropped.
    record: Option<PeerRecord>,
    /// Descriptors may pass (negotiated with both the app and the bus).
    fds_ok: bool,
    /// The app hung up: flush what goes to the bus, then close.
    app_done: bool,
    /// The bus hung up: flush what goes to the app, then close.
    bus_done: bool,
    accepted: Instant,
}

impl Conn {
    fn new(stream: UnixStream, guid: [u8; 16], policy: Policy) -> Result<Conn, Close> {
        stream.set_nonblocking(true).map_err(Close::Io)?;
        let creds = getsockopt(&stream, PeerCredentials).map_err(|e| Close::Io(e.into()))?;
        Ok(Conn {
            app: Side::new(stream),
            bus: None,
            phase: Phase::AppAuth,
            server: ServerAuth::new(creds.uid(), guid),
            client: None,
            filter: Filter::new(policy),
            record: None,
            fds_ok: false,
            app_done: false,
            bus_done: false,
            accepted: Instant::now(),
        })
    }

    /// When the handshakes must be over, while they are not.
    fn auth_deadline(&self) -> Option<Instant> {
        (self.phase != Phase::Relay).then_some(self.accepted + AUTH_TIMEOUT)
    }

    fn auth_expired(&self, now: Instant) -> bool {
        self.auth_deadline().is_some_and(|deadline| deadline <= now)
    }

    fn app_out_bytes(&self) -> usize {
        self.app.out.bytes
    }

    fn bus_out_bytes(&self) -> usize {
        self.bus.as_ref().map_or(0, |b| b.out.bytes)
    }

    /// The poll events wanted on (app, bus); `None` leaves a socket out.
    fn interest(&self) -> (Option<PollFlags>, Option<PollFlags>) {
        let out = |side: &Side| {
            if side.out.is_empty() {
                PollFlags::empty()
            } else {
                PollFlags::POLLOUT
            }
        };
        let read_app = match self.phase {
            Phase::AppAuth => true,
            Phase::BusAuth => false,
            Phase::Relay => {
                !self.app_done
                    && !self.bus_done
                    && !self.filter.awaiting_hello_reply()
                    && self.app_out_bytes() <= HIGH_WATER
                    && self.bus_out_bytes() <= HIGH_WATER
            }
        };
        let read_bus = match self.phase {
            Phase::AppAuth => false,
            Phase::BusAuth => true,
            Phase::Relay => !self.app_done && !self.bus_done && self.app_out_bytes() <= HIGH_WATER,
        };
        let app = if self.app_done {
            None
        } else {
            let mut events = out(&self.app);
            if read_app {
                events |= PollFlags::POLLIN;
            }
            Some(events)
        };
        let bus = match &self.bus {
            Some(side) if !self.bus_done => {
                let mut events = out(side);
                if read_bus {
                    events |= PollFlags::POLLIN;
                }
                Some(events)
            }
            _ => None,
        };
        (app, bus)
    }

    /// Handles readiness; `Ok(false)` when the connection is over.
    fn handle(
        &mut self,
        app_rev: PollFlags,
        bus_rev: PollFlags,
        ctx: Ctx<'_>,
    ) -> Result<bool, Close> {
        let trouble = PollFlags::POLLHUP | PollFlags::POLLERR | PollFlags::POLLNVAL;
        let (want_app, want_bus) = self.interest();
        let wants_in = |w: Option<PollFlags>| w.is_some_and(|f| f.contains(PollFlags::POLLIN));

        if !app_rev.is_empty() {
            if wants_in(want_app) && app_rev.intersects(PollFlags::POLLIN | trouble) {
                self.read_app(ctx)?;
            } else if app_rev.intersects(trouble) {
                // A hang-up while we were not reading: nothing can be delivered.
                return Err(Close::Hangup);
            }
        }
        if !bus_rev.is_empty() && self.bus.is_some() {
            if wants_in(want_bus) && bus_rev.intersects(PollFlags::POLLIN | trouble) {
                self.read_bus(ctx)?;
            } else if bus_rev.intersects(trouble) {
                return Err(Close::Hangup);
            }
        }

        if !self.app_done {
            self.app.out.flush(self.app.sock.as_fd())?;
        }
        if let Some(bus) = &mut self.bus {
            if !self.bus_done {
                bus.out.flush(bus.sock.as_fd())?;
            }
        }
        let finished = (self.app_done && (self.bus_done || self.bus_out_bytes() == 0))
            || (self.bus_done && (self.app_done || self.app.out.is_empty()));
        Ok(!finished)
    }

    fn read_app(&mut self, ctx: Ctx<'_>) -> Result<(), Close> {
        let mut buf = vec![0u8; READ_CHUNK];
        let Some((n, fds)) = self.app.recv(&mut buf)? else {
            return Ok(());
        };
        if n == 0 {
            if self.phase != Phase::Relay {
                return Err(Close::Hangup);
            }
            self.app_done = true;
            return Ok(());
        }
        match self.phase {
            Phase::AppAuth => {
                let step = self.server.feed(&buf[..n]).map_err(Close::Auth)?;
                self.app.out.push(step.output, Vec::new());
                if step.finished {
                    let rest = &buf[step.consumed..n];
                    if !rest.is_empty() && self.server.unix_fd_negotiated() {
                        self.app.input.push(rest, fds)?;
                    } else {
                        self.app.input.push(rest, Vec::new())?;
                    }
                    let stream = UnixStream::connect(ctx.upstream).map_err(Close::Upstream)?;
                    stream.set_nonblocking(true).map_err(Close::Upstream)?;
                    let client = ClientAuth::new(ctx.euid, self.server.unix_fd_negotiated());
                    let mut bus = Side::new(stream);
                    bus.out.push(client.initial_output(), Vec::new());
                    self.bus = Some(bus);
                    self.client = Some(client);
                    self.phase = Phase::BusAuth;
                }
                Ok(())
            }
            Phase::BusAuth => Ok(()),
            Phase::Relay => {
                let fds = if self.fds_ok { fds } else { Vec::new() };
                self.app.input.push(&buf[..n], fds)?;
                self.relay_from_app()
            }
        }
    }

    fn read_bus(&mut self, ctx: Ctx<'_>) -> Result<(), Close> {
        let Some(bus) = self.bus.as_mut() else {
            return Ok(());
        };
        let mut buf = vec![0u8; READ_CHUNK];
        let Some((n, fds)) = bus.recv(&mut buf)? else {
            return Ok(());
        };
        if n == 0 {
            if self.phase != Phase::Relay {
                return Err(Close::Hangup);
            }
            self.bus_done = true;
            return Ok(());
        }
        match self.phase {
            Phase::AppAuth => Ok(()),
            Phase::BusAuth => {
                let Some(client) = self.client.as_mut() else {
                    return Ok(());
                };
                let step = client.feed(&buf[..n]).map_err(Close::Auth)?;
                bus.out.push(step.output, Vec::new());
                if step.finished {
                    self.fds_ok = self.server.unix_fd_negotiated() && client.unix_fd_negotiated();
                    let rest = &buf[step.consumed..n];
                    let fds = if self.fds_ok && !rest.is_empty() {
                        fds
                    } else {
                        Vec::new()
                    };
                    bus.input.push(rest, fds)?;
                    self.phase = Phase::Relay;
                    self.relay_from_app()?;
                    self.relay_from_bus(ctx)?;
                }
                Ok(())
            }
            Phase::Relay => {
                let fds = if self.fds_ok { fds } else { Vec::new() };
                bus.input.push(&buf[..n], fds)?;
                self.relay_from_bus(ctx)
            }
        }
    }

    /// Passes the complete messages from the app through the filter: all
    /// of them, but none after a Hello the bus has not answered yet.
    fn relay_from_app(&mut self) -> Result<(), Close> {
        let Some(bus) = self.bus.as_mut() else {
            return Ok(());
        };
        relay(
            &mut self.app.input,
            &mut bus.out,
            &mut self.app.out,
            &mut self.filter,
            Origin::App,
        )
    }

    /// Passes every complete message from the bus through the filter. Once
    /// the bus has answered Hello, records the peer, and then lets the app's
    /// held messages go.
    fn relay_from_bus(&mut self, ctx: Ctx<'_>) -> Result<(), Close> {
        let Some(bus) = self.bus.as_mut() else {
            return Ok(());
        };
        relay(
            &mut bus.input,
            &mut self.app.out,
            &mut bus.out,
            &mut self.filter,
            Origin::Bus,
        )?;
        self.record_peer(ctx)?;
        self.relay_from_app()
    }

    /// Writes the peer record, once the app's unique name is known.
    fn record_peer(&mut self, ctx: Ctx<'_>) -> Result<(), Close> {
        let Some(peers) = ctx.peers else {
            return Ok(());
        };
        if self.record.is_some() {
            return Ok(());
        }
        let Some(name) = self.filter.app_name() else {
            return Ok(());
        };
        // Checked by ClientAuth (32 hex digits) before the handshake ended.
        let guid = self
            .client
            .as_ref()
            .and_then(ClientAuth::server_guid)
            .unwrap_or_default();
        let record = peers.write(guid, name).map_err(Close::Peer)?;
        self.record = Some(record);
        Ok(())
    }
}

/// Where the messages [`relay`] judges come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    App,
    Bus,
}

/// Judges every complete message in `input`: forwarded ones go to `onward`
/// with their fds, replies the filter makes go `back` to where it came from.
/// Messages from the app stay in `input` while the filter awaits the answer
/// to the app's Hello.
fn relay(
    input: &mut Input,
    onward: &mut Output,
    back: &mut Output,
    filter: &mut Filter,
    from: Origin,
) -> Result<(), Close> {
    let mut pos = 0;
    let result = loop {
        if from == Origin::App && filter.awaiting_hello_reply() {
            break Ok(());
        }
        let Some((len, fds)) = (match input.next_message(pos) {
            Ok(next) => next,
            Err(e) => break Err(e),
        }) else {
            break Ok(());
        };
        let msg = &input.buf[pos..pos + len];
        pos += len;
        let decision = match from {
            Origin::App => filter.from_app_with_fds(msg, fds.len()),
            Origin::Bus => filter.from_bus_with_fds(msg, fds.len()),
        };
        match decision {
            Decision::Forward(bytes) => onward.push(bytes, fds),
            Decision::Reply(bytes) => back.push(bytes, Vec::new()),
            Decision::Drop => {}
            Decision::Disconnect(e) => break Err(Close::Filter(e)),
        }
    };
    input.consume(pos);
    result
}

/// One socket of a connection with its buffers.
struct Side {
    sock: UnixStream,
    input: Input,
    out: Output,
}

impl Side {
    fn new(sock: UnixStream) -> Side {
        Side {
            sock,
            input: Input::default(),
            out: Output::default(),
        }
    }

    /// One `recvmsg`: the bytes (0 at end of stream) and the descriptors;
    /// `None` if nothing was there after all.
    fn recv(&mut self, buf: &mut [u8]) -> Result<Option<(usize, Vec<OwnedFd>)>, Close> {
        loop {
            match recv_with_fds(self.sock.as_fd(), buf) {
                Ok((_, _, true)) => return Err(Close::Fds("too many descriptors in one read")),
                Ok((n, fds, false)) => return Ok(Some((n, fds))),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(Close::Io(e)),
            }
        }
    }
}

/// Descriptors that came with the bytes `start..end` of the message stream.
struct FdBatch {
    start: u64,
    end: u64,
    fds: Vec<OwnedFd>,
}

/// Bytes received and not yet cut into messages.
#[derive(Default)]
struct Input {
    buf: Vec<u8>,
    /// The stream offset of `buf[0]`.
    base: u64,
    batches: VecDeque<FdBatch>,
    queued_fds: usize,
}

impl Input {
    fn push(&mut self, bytes: &[u8], fds: Vec<OwnedFd>) -> Result<(), Close> {
        let start = self.base + self.buf.len() as u64;
        self.buf.extend_from_slice(bytes);
        if fds.is_empty() {
            return Ok(());
        }
        if bytes.is_empty() {
            return Err(Close::Fds("descriptors without bytes"));
        }
        self.queued_fds += fds.len();
        if self.queued_fds > MAX_QUEUED_FDS {
            return Err(Close::Fds("too many descriptors queued"));
        }
        self.batches.push_back(FdBatch {
            start,
            end: start + bytes.len() as u64,
            fds,
        });
        Ok(())
    }

    /// The length of the complete message at `buf[pos..]`, if there is one,
    /// and its descriptors.
    #[allow(clippy::type_complexity)]
    fn next_message(&mut self, pos: usize) -> Result<Option<(usize, Vec<OwnedFd>)>, Close> {
        let rest = &self.buf[pos..];
        let len = match message_length(rest) {
            Ok(Some(len)) => len,
            Ok(None) => return Ok(None),
            Err(e) => return Err(Close::Message(e)),
        };
        if rest.len() < len {
            return Ok(None);
        }
        let start = self.base + pos as u64;
        let end = start + len as u64;
        let mut fds = Vec::new();
        while let Some(batch) = self.batches.front() {
            // A batch belongs to the last message starting in its bytes.
            if batch.end <= start || (batch.start > start && batch.end <= end) {
                return Err(Close::Fds("descriptors that belong to no message"));
            }
            if batch.start <= start && batch.end <= end {
                let batch = self.batches.pop_front().expect("front exists");
                self.queued_fds -= batch.fds.len();
                fds = batch.fds;
                continue;
            }
            break;
        }
        Ok(Some((len, fds)))
    }

    fn consume(&mut self, n: usize) {
        self.buf.drain(..n);
        self.base += n as u64;
    }
}

struct Pending {
    bytes: Vec<u8>,
    fds: Vec<OwnedFd>,
    sent: usize,
}

/// Messages waiting to be written.
#[derive(Default)]
struct Output {
    queue: VecDeque<Pending>,
    bytes: usize,
}

impl Output {
    fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    fn push(&mut self, bytes: Vec<u8>, fds: Vec<OwnedFd>) {
        if bytes.is_empty() {
            return;
        }
        self.bytes += bytes.len();
        self.queue.push_back(Pending {
            bytes,
            fds,
            sent: 0,
        });
    }

    /// Writes until the queue is empty or the socket is full.
    fn flush(&mut self, sock: BorrowedFd<'_>) -> Result<(), Close> {
        let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT;
        while let Some(front) = self.queue.front_mut() {
            let data = &front.bytes[front.sent..];
            let result = if front.fds.is_empty() {
                nix::sys::socket::send(sock.as_raw_fd(), data, flags)
            } else {
                let raw: Vec<RawFd> = front.fds.iter().map(|fd| fd.as_raw_fd()).collect();
                nix::sys::socket::sendmsg::<UnixAddr>(
                    sock.as_raw_fd(),
                    &[IoSlice::new(data)],
                    &[ControlMessage::ScmRights(&raw)],
                    flags,
                    None,
                )
            };
            match result {
                Ok(n) => {
                    if n > 0 {
                        // The descriptors went with the first byte.
                        front.fds.clear();
                    }
                    front.sent += n;
                    self.bytes -= n;
                    if front.sent == front.bytes.len() {
                        self.queue.pop_front();
                    }
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return Ok(()),
                Err(e) => return Err(Close::Io(e.into())),
            }
        }
        Ok(())
    }
}

/// `recvmsg` with room for [`MAX_FDS_PER_READ`] descriptors, all CLOEXEC.
/// Returns the byte count, the descriptors and whether some were cut off
/// (the kernel closes those).
fn recv_with_fds(sock: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>, bool)> {
    const FD_SIZE: usize = std::mem::size_of::<RawFd>();
    // u64 words keep the control buffer aligned for cmsghdr.
    let mut control = [0u64; 16];
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE((MAX_FDS_PER_READ * FD_SIZE) as u32) } as usize;
    assert!(space <= std::mem::size_of_val(&control));
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg points to valid buffers of the given sizes.
    let n = unsafe {
        libc::recvmsg(
            sock.as_raw_fd(),
            &mut msg,
            libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut fds = Vec::new();
    // SAFETY: the kernel filled msg_control and set msg_controllen; CMSG_*
    // walk only within it.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg);
                let len = (*cmsg).cmsg_len as usize - (data as usize - cmsg as usize);
                for i in 0..len / FD_SIZE {
                    let raw = std::ptr::read_unaligned(data.add(i * FD_SIZE).cast::<RawFd>());
                    fds.push(OwnedFd::from_raw_fd(raw));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    let truncated = msg.msg_flags & libc::MSG_CTRUNC != 0;
    Ok((n as usize, fds, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::busproxy::message::{
        build_message, parse_header, Arg, Endian, Header, MessageType, OutgoingFields,
    };
    use crate::busproxy::peers::{lookup_peer, peers_dir};
    use crate::busproxy::policy::PORTAL_ALIASES;
    use crate::busproxy::testing::{have, start_daemon, ChildGuard, Daemon, TempDir};
    use crate::permissions::{Change, Permissions};
    use std::io::{BufRead, BufReader, Write};
    use std::path::PathBuf;
    use std::process::{Command, Output, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;
    use std::thread::JoinHandle;

    const TIMEOUT: Duration = Duration::from_secs(20);
    const HIDDEN: &str = "org.example.Hidden";

    // ---- descriptor association, without sockets -------------------------

    fn fd() -> OwnedFd {
        std::fs::File::open("/dev/null").unwrap().into()
    }

    /// A message with no body: 16-byte fixed header, empty field array.
    fn empty_message() -> Vec<u8> {
        vec![b'l', 1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0]
    }

    #[test]
    fn descriptors_go_to_the_last_message_starting_in_their_read() {
        let m = empty_message();
        let mut input = Input::default();
        // One read holding two messages and two descriptors: the second
        // message gets them.
        input
            .push(&[m.clone(), m.clone()].concat(), vec![fd(), fd()])
            .unwrap();
        assert_eq!(input.next_message(0).unwrap().unwrap().1.len(), 0);
        assert_eq!(input.next_message(16).unwrap().unwrap().1.len(), 2);
        input.consume(32);
        assert_eq!(input.queued_fds, 0);
        // A message split over two reads, descriptors with the first.
        input.push(&m[..4], vec![fd()]).unwrap();
        assert!(input.next_message(0).unwrap().is_none());
        input.push(&m[4..], vec![]).unwrap();
        assert_eq!(input.next_message(0).unwrap().unwrap().1.len(), 1);
        input.consume(16);
        // Descriptors that arrived in the middle of a message.
        input.push(&m[..4], vec![]).unwrap();
        input.push(&m[4..8], vec![fd()]).unwrap();
        input.push(&m[8..], vec![]).unwrap();
        assert!(matches!(input.next_message(0), Err(Close::Fds(_))));
    }

    #[test]
    fn too_many_queued_descriptors_are_refused() {
        let mut input = Input::default();
        let mut result = Ok(());
        for _ in 0..=MAX_QUEUED_FDS / MAX_FDS_PER_READ {
            let fds = (0..MAX_FDS_PER_READ).map(|_| fd()).collect();
            result = input.push(b"x", fds);
        }
        assert!(matches!(result, Err(Close::Fds(_))));
    }

    // ---- against dbus-daemon ----------------------------------------------

    /// `serve` on a thread; stopped (through its stop socket) and joined on drop.
    struct Proxy {
        socket: PathBuf,
        stop: Option<UnixStream>,
        thread: Option<JoinHandle<Result<(), ServerError>>>,
    }

    impl Proxy {
        fn start(daemon: &Daemon, policy: Policy) -> Proxy {
            Proxy::start_with(daemon, policy, None)
        }

        fn start_with(daemon: &Daemon, policy: Policy, peers: Option<PeerRecords>) -> Proxy {
            static COUNT: AtomicUsize = AtomicUsize::new(0);
            let socket = daemon
                .dir
                .0
                .join(format!("proxy{}", COUNT.fetch_add(1, Ordering::Relaxed)));
            let listener = UnixListener::bind(&socket).unwrap();
            let (stop, stop_rx) = UnixStream::pair().unwrap();
            let upstream = daemon.socket.clone();
            let thread = std::thread::spawn(move || {
                serve(
                    listener,
                    &upstream,
                    policy,
                    Some(stop_rx.as_fd()),
                    peers.as_ref(),
                )
            });
            Proxy {
                socket,
                stop: Some(stop),
                thread: Some(thread),
            }
        }

        fn stop(mut self) -> Result<(), ServerError> {
            self.stop.take();
            self.thread.take().unwrap().join().unwrap()
        }
    }

    impl Drop for Proxy {
        fn drop(&mut self) {
            self.stop.take();
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    /// The policy appbox gives: `changes` and the portal's aliases.
    fn policy(changes: &[&str]) -> Policy {
        let mut permissions = Permissions::default();
        for change in changes {
            permissions.apply(&Change::parse(change).unwrap());
        }
        Policy::new(&permissions, PORTAL_ALIASES)
    }

    /// `program` with the session bus at `socket`.
    fn on_bus(program: &str, socket: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}", socket.display()),
            )
            .stdin(Stdio::null());
        command
    }

    fn dbus_send(socket: &Path, args: &[&str]) -> Output {
        Command::new("dbus-send")
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}", socket.display()),
            )
            .args(["--session", "--print-reply", "--reply-timeout=10000"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn list_names(socket: &Path) -> String {
        let out = dbus_send(
            socket,
            &[
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.ListNames",
            ],
        );
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    fn call_hidden(socket: &Path) -> Output {
        dbus_send(
            socket,
            &[
                "--dest=org.example.Hidden",
                "/org/example/Object",
                "org.example.Iface.Ping",
            ],
        )
    }

    /// A minimal blocking D-Bus client built from the proxy's own parts.
    struct Client {
        stream: UnixStream,
        buf: Vec<u8>,
        serial: u32,
        name: String,
        /// The GUID the server sent in `OK`.
        guid: String,
    }

    impl Client {
        fn connect(path: &Path) -> Client {
            let mut client = Client::authenticate(path);
            let (_, reply) = client.call(
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "Hello",
                &[],
            );
            let header = parse_header(&reply).unwrap();
            let mut body = header.body(&reply).unwrap();
            client.name = body.read_str().unwrap().to_owned();
            client
        }

        /// Connected and authenticated, but not yet registered (no Hello).
        fn authenticate(path: &Path) -> Client {
            let mut stream = UnixStream::connect(path).unwrap();
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            let mut auth = ClientAuth::new(nix::unistd::geteuid().as_raw(), false);
            stream.write_all(&auth.initial_output()).unwrap();
            let mut chunk = [0u8; 4096];
            let buf = loop {
                let n = stream.read(&mut chunk).unwrap();
                assert!(n > 0, "hang-up during the handshake");
                let step = auth.feed(&chunk[..n]).unwrap();
                stream.write_all(&step.output).unwrap();
                if step.finished {
                    break chunk[step.consumed..n].to_vec();
                }
            };
            Client {
                stream,
                buf,
                serial: 0,
                name: String::new(),
                guid: auth.server_guid().unwrap().to_owned(),
            }
        }

        fn send(
            &mut self,
            message_type: MessageType,
            fields: OutgoingFields<'_>,
            body: &[Arg<'_>],
        ) -> u32 {
            self.serial += 1;
            let msg = build_message(
                message_type,
                self.serial,
                &fields,
                body,
                crate::busproxy::message::Endian::Little,
            )
            .unwrap();
            self.stream.write_all(&msg).unwrap();
            self.serial
        }

        /// Calls a method and waits for its reply.
        fn call(
            &mut self,
            destination: &str,
            path: &str,
            interface: &str,
            member: &str,
            body: &[Arg<'_>],
        ) -> (Header, Vec<u8>) {
            let fields = OutgoingFields {
                path: Some(path),
                interface: Some(interface),
                member: Some(member),
                destination: Some(destination),
                ..OutgoingFields::default()
            };
            let serial = self.send(MessageType::MethodCall, fields, body);
            let deadline = Instant::now() + TIMEOUT;
            loop {
                match self.read_message() {
                    Ok((header, msg)) if header.reply_serial == Some(serial) => {
                        return (header, msg)
                    }
                    Ok(_) => {}
                    Err(e) if is_timeout(&e) && Instant::now() < deadline => {}
                    Err(e) => panic!("no reply to {member}: {e}"),
                }
            }
        }

        fn read_message(&mut self) -> io::Result<(Header, Vec<u8>)> {
            loop {
                if let Some(len) = message_length(&self.buf).map_err(io::Error::other)? {
                    if self.buf.len() >= len {
                        let msg: Vec<u8> = self.buf.drain(..len).collect();
                        let header = parse_header(&msg).map_err(io::Error::other)?;
                        return Ok((header, msg));
                    }
                }
                let mut chunk = [0u8; 4096];
                let n = self.stream.read(&mut chunk)?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                self.buf.extend_from_slice(&chunk[..n]);
            }
        }
    }

    fn is_timeout(e: &io::Error) -> bool {
        matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )
    }

    /// What a service answers a call with.
    type Answer = Box<dyn Fn(&Header) -> String + Send>;

    /// A request to a service to broadcast a signal on a path, and where to
    /// say it is done.
    type Emit = (String, mpsc::Sender<()>);

    /// A connection to the real bus that owns a name, answers every call to
    /// it with a string, and broadcasts signals when asked. Stops on drop.
    struct Service {
        /// Its unique name.
        unique: String,
        emit: mpsc::Sender<Emit>,
        shutdown: UnixStream,
        thread: Option<JoinHandle<()>>,
    }

    impl Service {
        /// Owns org.example.Hidden and answers "pong".
        fn start(daemon: &Daemon) -> Service {
            Service::owning(daemon, HIDDEN, Box::new(|_| "pong".to_owned()))
        }

        fn owning(daemon: &Daemon, name: &str, answer: Answer) -> Service {
            let mut client = Client::connect(&daemon.socket);
            let (header, reply) = client.call(
                "org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus",
                "RequestName",
                &[Arg::Str(name), Arg::Uint32(4)],
            );
            assert_eq!(header.message_type, MessageType::MethodReturn);
            // 1: DBUS_REQUEST_NAME_REPLY_PRIMARY_OWNER
            assert_eq!(header.body(&reply).unwrap().read_u32().unwrap(), 1);
            // Short reads, so that requests to emit are seen.
            client
                .stream
                .set_read_timeout(Some(Duration::from_millis(20)))
                .unwrap();
            let shutdown = client.stream.try_clone().unwrap();
            let unique = client.name.clone();
            let name = name.to_owned();
            let (emit, requests) = mpsc::channel::<Emit>();
            let thread = std::thread::spawn(move || loop {
                match client.read_message() {
                    Ok((header, _)) => {
                        if header.message_type != MessageType::MethodCall
                            || header.destination.as_deref() != Some(name.as_str())
                        {
                            continue;
                        }
                        let text = answer(&header);
                        let fields = OutgoingFields {
                            reply_serial: Some(header.serial),
                            destination: header.sender.as_deref(),
                            ..OutgoingFields::default()
                        };
                        client.send(MessageType::MethodReturn, fields, &[Arg::Str(&text)]);
                    }
                    Err(e) if is_timeout(&e) => {}
                    Err(_) => break,
                }
                while let Ok((path, done)) = requests.try_recv() {
                    let fields = OutgoingFields {
                        path: Some(&path),
                        interface: Some("org.freedesktop.portal.Request"),
                        member: Some("Response"),
                        ..OutgoingFields::default()
                    };
                    client.send(MessageType::Signal, fields, &[Arg::Uint32(0)]);
                    // Once the bus answers, it has dispatched the signal.
                    client.call(
                        "org.freedesktop.DBus",
                        "/org/freedesktop/DBus",
                        "org.freedesktop.DBus",
                        "GetId",
                        &[],
                    );
                    let _ = done.send(());
                }
            });
            Service {
                unique,
                emit,
                shutdown,
                thread: Some(thread),
            }
        }

        /// Broadcasts a portal Response signal on `path`; returns once the
        /// bus has dispatched it.
        fn emit(&self, path: &str) {
            let (done, wait) = mpsc::channel();
            self.emit.send((path.to_owned(), done)).unwrap();
            wait.recv_timeout(TIMEOUT).expect("the service emitted");
        }
    }

    impl Drop for Service {
        fn drop(&mut self) {
            let _ = self.shutdown.shutdown(std::net::Shutdown::Both);
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    #[test]
    fn bus_driver_is_reachable_and_unlisted_names_are_hidden() {
        let daemon = start_daemon();
        let _service = Service::start(&daemon);
        let proxy = Proxy::start(&daemon, policy(&[]));

        let names = list_names(&proxy.socket);
        assert!(names.contains("org.freedesktop.DBus"), "{names}");
        assert!(!names.contains(HIDDEN), "{names}");
        assert!(list_names(&daemon.socket).contains(HIDDEN));

        let out = call_hidden(&proxy.socket);
        assert!(!out.status.success(), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("ServiceUnknown"), "{stderr}");
        assert!(!String::from_utf8_lossy(&out.stdout).contains("pong"));

        proxy.stop().unwrap();
    }

    #[test]
    fn talk_name_reaches_the_service() {
        let daemon = start_daemon();
        let _service = Service::start(&daemon);
        let proxy = Proxy::start(&daemon, policy(&["--talk-name=org.example.Hidden"]));
        let out = call_hidden(&proxy.socket);
        assert!(out.status.success(), "{out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("\"pong\""),
            "{out:?}"
        );
        assert!(list_names(&proxy.socket).contains(HIDDEN));
        proxy.stop().unwrap();
    }

    #[test]
    fn eavesdropping_is_refused() {
        let daemon = start_daemon();
        let proxy = Proxy::start(&daemon, policy(&[]));
        let out = dbus_send(
            &proxy.socket,
            &[
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.AddMatch",
                "string:eavesdrop=true",
            ],
        );
        assert!(!out.status.success(), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("AccessDenied"), "{stderr}");
        // A plain match rule passes.
        let out = dbus_send(
            &proxy.socket,
            &[
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.AddMatch",
                "string:type='signal'",
            ],
        );
        assert!(out.status.success(), "{out:?}");
        proxy.stop().unwrap();
    }

    #[test]
    fn garbage_closes_only_its_own_connection() {
        let daemon = start_daemon();
        let proxy = Proxy::start(&daemon, policy(&[]));
        let mut good = Client::connect(&proxy.socket);
        let mut bad = Client::connect(&proxy.socket);
        assert!(good.name.starts_with(":1."), "{}", good.name);

        let mut garbage = vec![0u8; 4096];
        std::fs::File::open("/dev/urandom")
            .unwrap()
            .read_exact(&mut garbage)
            .unwrap();
        garbage[0] = 0xff; // never a valid byte-order mark
        bad.stream.write_all(&garbage).unwrap();
        // Signals sent before the garbage (NameAcquired) may still come;
        // then the connection ends.
        let err = loop {
            match bad.read_message() {
                Ok((header, _)) => assert_eq!(header.message_type, MessageType::Signal),
                Err(e) => break e,
            }
        };
        assert!(
            matches!(
                err.kind(),
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
            ),
            "{err:?}"
        );

        let (header, _) = good.call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "GetId",
            &[],
        );
        assert_eq!(header.message_type, MessageType::MethodReturn);
        assert!(list_names(&proxy.socket).contains("org.freedesktop.DBus"));
        proxy.stop().unwrap();
    }

    #[test]
    fn refused_handshake_and_stop() {
        let daemon = start_daemon();
        let proxy = Proxy::start(&daemon, policy(&[]));
        let mut raw = UnixStream::connect(&proxy.socket).unwrap();
        raw.set_read_timeout(Some(TIMEOUT)).unwrap();
        raw.write_all(b"X").unwrap(); // not the credentials byte
        let mut buf = [0u8; 64];
        assert_eq!(raw.read(&mut buf).unwrap_or(0), 0);
        assert!(list_names(&proxy.socket).contains("org.freedesktop.DBus"));
        proxy.stop().unwrap();
    }

    #[test]
    fn a_stalled_handshake_is_closed() {
        let daemon = start_daemon();
        let proxy = Proxy::start(&daemon, policy(&[]));
        let mut stalled = UnixStream::connect(&proxy.socket).unwrap();
        stalled.set_read_timeout(Some(TIMEOUT)).unwrap();
        // The credentials byte and half a line, then nothing.
        stalled.write_all(b"\0AUTH EXTER").unwrap();
        let started = Instant::now();
        let mut buf = [0u8; 64];
        assert_eq!(
            stalled.read(&mut buf).unwrap_or(0),
            0,
            "closed, not answered"
        );
        assert!(
            started.elapsed() >= AUTH_TIMEOUT / 2,
            "{:?}",
            started.elapsed()
        );
        assert!(started.elapsed() < TIMEOUT);
        // Others are served meanwhile and after.
        assert!(list_names(&proxy.socket).contains("org.freedesktop.DBus"));
        proxy.stop().unwrap();
    }

    // ---- the portal's aliases ---------------------------------------------

    const PORTAL: &str = "org.freedesktop.portal.Desktop";
    const PORTAL_ON_BUS: &str = "org.appbox.Portal.Desktop";
    const PORTAL_OBJECT: &str = "/org/freedesktop/portal/desktop";
    const RESPONSE_PATH: &str = "/org/freedesktop/portal/desktop/request/1_42/t";
    /// Debian's python3, which has python3-gi (a pyenv one may come first
    /// on PATH).
    const PYTHON: &str = "/usr/bin/python3";

    fn answer(text: &'static str) -> Answer {
        Box::new(move |_| text.to_owned())
    }

    #[test]
    fn the_portal_is_reached_under_its_standard_name_only() {
        let daemon = start_daemon();
        let appbox = Service::owning(&daemon, PORTAL_ON_BUS, answer("appbox"));
        // The host's own portal, under the standard name on the real bus.
        let host = Service::owning(&daemon, PORTAL, answer("host"));
        let proxy = Proxy::start(&daemon, policy(&[]));
        let ping = [PORTAL_OBJECT, "org.freedesktop.portal.Test.Ping"];

        // GDBus, through the proxy, reaches appbox's portal.
        let out = on_bus("gdbus", &proxy.socket)
            .args(["call", "--session", "--dest", PORTAL, "--object-path"])
            .args([PORTAL_OBJECT, "--method", ping[1]])
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "('appbox',)");
        // So does libdbus.
        let dest = format!("--dest={PORTAL}");
        let out = dbus_send(&proxy.socket, &[&dest, ping[0], ping[1]]);
        assert!(out.status.success(), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("\"appbox\""));
        // Outside the proxy, the standard name is the host's portal.
        let out = dbus_send(&daemon.socket, &[&dest, ping[0], ping[1]]);
        assert!(String::from_utf8_lossy(&out.stdout).contains("\"host\""));

        // The name appbox's portal has on the bus does not exist inside.
        let out = dbus_send(
            &proxy.socket,
            &[&format!("--dest={PORTAL_ON_BUS}"), ping[0], ping[1]],
        );
        assert!(!out.status.success(), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("ServiceUnknown") || stderr.contains("NameHasNoOwner"),
            "{stderr}"
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("appbox"));

        // The standard name's owner is appbox's portal; the name is listed
        // once, and neither the bus's name nor the host's portal is.
        let out = dbus_send(
            &proxy.socket,
            &[
                "--dest=org.freedesktop.DBus",
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.GetNameOwner",
                &format!("string:{PORTAL}"),
            ],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains(&format!("\"{}\"", appbox.unique)),
            "{out:?}"
        );
        let names = list_names(&proxy.socket);
        assert_eq!(
            names.matches(&format!("\"{PORTAL}\"")).count(),
            1,
            "{names}"
        );
        assert!(!names.contains(PORTAL_ON_BUS), "{names}");
        assert!(!names.contains(&format!("\"{}\"", host.unique)), "{names}");
        proxy.stop().unwrap();
    }

    /// Subscribes, as a GTK app's portal code does, to Response signals by
    /// the portal's standard name, and to every NameOwnerChanged; prints
    /// what arrives, and ends at the first Response.
    const GIO_CLIENT: &str = r#"
import sys
from gi.repository import Gio, GLib

conn = Gio.bus_get_sync(Gio.BusType.SESSION, None)
loop = GLib.MainLoop()
got = []

def on_owner(conn, sender, path, iface, member, params):
    name, old, new = params.unpack()
    print("owner", name, old or "-", new or "-", flush=True)

def on_response(conn, sender, path, iface, member, params):
    print("response", sender, path, flush=True)
    got.append(sender)
    loop.quit()

def on_timeout():
    print("timeout", flush=True)
    loop.quit()
    return False

conn.signal_subscribe("org.freedesktop.DBus", "org.freedesktop.DBus", "NameOwnerChanged",
                      "/org/freedesktop/DBus", None, Gio.DBusSignalFlags.NONE, on_owner)
conn.signal_subscribe("org.freedesktop.portal.Desktop", "org.freedesktop.portal.Request",
                      "Response", None, None, Gio.DBusSignalFlags.NONE, on_response)
# Answered once the match rules above are in place.
conn.call_sync("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
               "GetId", None, None, Gio.DBusCallFlags.NONE, -1, None)
print("ready", flush=True)
GLib.timeout_add_seconds(15, on_timeout)
loop.run()
sys.exit(0 if got else 1)
"#;

    #[test]
    fn a_gio_client_gets_the_portals_signals_by_its_standard_name() {
        let has_gi = have(PYTHON)
            && Command::new(PYTHON)
                .args(["-c", "from gi.repository import Gio"])
                .output()
                .is_ok_and(|out| out.status.success());
        if !has_gi {
            eprintln!("skipped: python3-gi is not installed");
            return;
        }
        let daemon = start_daemon();
        let proxy = Proxy::start(&daemon, policy(&[]));
        let mut client = ChildGuard::spawn(
            on_bus(PYTHON, &proxy.socket)
                .args(["-c", GIO_CLIENT])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
        );
        let mut stdout = BufReader::new(client.child().stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");

        // The host's portal comes, speaks on a portal path, goes, and comes
        // back to stay.
        let host = Service::owning(&daemon, PORTAL, answer("host"));
        host.emit(RESPONSE_PATH);
        let first_host = host.unique.clone();
        drop(host);
        let host = Service::owning(&daemon, PORTAL, answer("host"));
        host.emit(RESPONSE_PATH);
        // appbox's portal appears (GLib learns its owner from the renamed
        // NameOwnerChanged) and responds.
        let appbox = Service::owning(&daemon, PORTAL_ON_BUS, answer("appbox"));
        let deadline = Instant::now() + TIMEOUT;
        while !client.exited() && Instant::now() < deadline {
            appbox.emit(RESPONSE_PATH);
            std::thread::sleep(Duration::from_millis(100));
        }
        let out = client.finish(TIMEOUT);
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        assert!(out.status.success(), "{rest}{out:?}");
        let lines: Vec<&str> = rest.lines().collect();
        assert_eq!(
            lines.first().copied(),
            Some(format!("owner {PORTAL} - {}", appbox.unique).as_str()),
            "{rest}"
        );
        assert_eq!(
            lines.last().copied(),
            Some(format!("response {} {RESPONSE_PATH}", appbox.unique).as_str()),
            "{rest}"
        );
        for name in [&first_host, &host.unique] {
            assert!(
                !lines.iter().any(|l| l.split(' ').any(|w| w == name)),
                "{name} seen: {rest}"
            );
        }
        assert!(!rest.contains(PORTAL_ON_BUS), "{rest}");
        proxy.stop().unwrap();
    }

    // ---- peer records -----------------------------------------------------

    #[test]
    fn peer_records_follow_the_apps_connections() {
        let daemon = start_daemon();
        // The records are keyed by the GUID the bus sends in SASL's OK.
        // dbus-daemon answers GetId with another ID (the bus's, the same on
        // every address it listens on), so that is not the key.
        let mut direct = Client::connect(&daemon.socket);
        let guid = direct.guid.clone();
        assert_eq!(guid.len(), 32);
        let (_, reply) = direct.call(
            "org.freedesktop.DBus",
            "/org/freedesktop/DBus",
            "org.freedesktop.DBus",
            "GetId",
            &[],
        );
        let id = parse_header(&reply)
            .unwrap()
            .body(&reply)
            .unwrap()
            .read_str()
            .unwrap()
            .to_owned();
        assert_ne!(id, guid);

        for changes in [&[][..], &["--socket=session-bus"][..]] {
            let runtime = TempDir::new("runtime");
            let peers = PeerRecords::new(&runtime.0, 4242);
            let proxy = Proxy::start_with(&daemon, policy(changes), Some(peers));
            let lookup = |name: &str| lookup_peer(&runtime.0, &guid, name).unwrap();
            let dir = peers_dir(&runtime.0).join(&guid);

            // Written before the app learnt its name.
            let first = Client::connect(&proxy.socket);
            assert_eq!(first.guid.len(), 32);
            assert_ne!(first.guid, guid, "the proxy is a server of its own");
            let record = dir.join(&first.name);
            assert_eq!(std::fs::read_to_string(&record).unwrap(), "4242\n");
            assert_eq!(lookup(&first.name), Some(4242));
            let second = Client::connect(&proxy.socket);
            assert_eq!(lookup(&second.name), Some(4242));

            // Gone when the app's connection closes.
            drop(first);
            let deadline = Instant::now() + TIMEOUT;
            while record.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            assert!(!record.exists());
            assert_eq!(lookup(&second.name), Some(4242));

            // And all of them when the proxy stops.
            proxy.stop().unwrap();
            assert_eq!(lookup(&second.name), None);
            assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        }
    }

    #[test]
    fn messages_after_hello_wait_for_the_peer_record() {
        let daemon = start_daemon();
        let runtime = TempDir::new("runtime");
        let guid = Client::connect(&daemon.socket).guid;
        // Answers each call with what the portal would learn of its caller.
        let (root, key) = (runtime.0.clone(), guid.clone());
        let _service = Service::owning(
            &daemon,
            HIDDEN,
            Box::new(move |h| {
                let caller = h.sender.as_deref().unwrap_or("");
                format!("{:?}", lookup_peer(&root, &key, caller).ok().flatten())
            }),
        );
        for changes in [
            &["--talk-name=org.example.Hidden"][..],
            &["--socket=session-bus"][..],
        ] {
            let peers = PeerRecords::new(&runtime.0, 4242);
            let proxy = Proxy::start_with(&daemon, policy(changes), Some(peers));
            let mut client = Client::authenticate(&proxy.socket);
            // Hello and a call at once, without waiting for Hello's answer.
            let hello = OutgoingFields {
                path: Some("/org/freedesktop/DBus"),
                interface: Some("org.freedesktop.DBus"),
                member: Some("Hello"),
                destination: Some("org.freedesktop.DBus"),
                ..OutgoingFields::default()
            };
            let ping = OutgoingFields {
                path: Some("/org/example/Object"),
                interface: Some("org.example.Iface"),
                member: Some("Ping"),
                destination: Some(HIDDEN),
                ..OutgoingFields::default()
            };
            let both = [
                build_message(MessageType::MethodCall, 1, &hello, &[], Endian::Little).unwrap(),
                build_message(MessageType::MethodCall, 2, &ping, &[], Endian::Little).unwrap(),
            ]
            .concat();
            client.stream.write_all(&both).unwrap();
            let reply = loop {
                let (header, msg) = client.read_message().unwrap();
                if header.reply_serial == Some(2) {
                    break header.body(&msg).unwrap().read_str().unwrap().to_owned();
                }
            };
            assert_eq!(reply, "Some(4242)", "{changes:?}");
            proxy.stop().unwrap();
        }
    }
}
