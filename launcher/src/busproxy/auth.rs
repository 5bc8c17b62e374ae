//! Both sides of the D-Bus SASL handshake, as pure state machines over bytes.
//!
//! The proxy terminates authentication: [`ServerAuth`] is the bus as far as
//! the app can tell, and [`ClientAuth`] authenticates the proxy to the real
//! bus. Neither does any I/O. The caller reads from its socket, passes the
//! bytes to `feed`, writes [`Step::output`] back, and stops as soon as
//! [`Step::finished`] is set: `input[step.consumed..]` is then the start of the
//! binary message stream. A client may send `BEGIN` and its first message in
//! one write, so these bytes must be kept.
//!
//! The rules follow the D-Bus specification ("Authentication Protocol") and
//! dbus-daemon's parser (`dbus/dbus-auth.c`). Where the two differ, this
//! module is the stricter one. That is safe because the proxy never forwards
//! handshake bytes, so the real bus never parses them:
//!
//! - The connection starts with one NUL byte (the credentials byte);
//!   `_dbus_read_credentials_socket` refuses anything else.
//! - Lines end with `\r\n`. A line may hold printable ASCII only. dbus-daemon
//!   answers NUL and non-ASCII bytes with `ERROR` and carries on. Here any
//!   other byte ends the handshake, and so do a bare `\r` or `\n` and a line
//!   over [`MAX_LINE_LEN`] bytes.
//! - Only `EXTERNAL` is offered. The identity is the uid the caller got from
//!   `SO_PEERCRED`. The client may name that uid (hex-encoded decimal, as
//!   libdbus, GDBus and sd-bus send it) or send no identity at all. Any other
//!   identity, including a user name (which dbus-daemon would look up), is
//!   `REJECTED`.
//! - `BEGIN` ends the handshake only as the exact line `BEGIN`, after `OK`.
//!   dbus-daemon splits a line at its first blank and ignores `BEGIN`'s
//!   arguments, so it also takes `BEGIN ` and `BEGIN x`. Telling those apart
//!   differently was CVE-2018-6560. Here they are unknown commands. An exact
//!   `BEGIN` before `OK` closes the connection, as in dbus-daemon.
//! - Every `REJECTED` or `ERROR` reply counts as a failure. The sixth failure
//!   ends the handshake (dbus-daemon's `max_failures` is 6). That limit, the
//!   line limit and one `AGREE_UNIX_FD` per `OK` bound both memory and output
//!   for any input.

/// The longest auth line, without its `\r\n`: the 16 KiB dbus-daemon buffers
/// at most during authentication (`MAX_BUFFER` in `_dbus_auth_do_work`).
pub const MAX_LINE_LEN: usize = 16 * 1024;

/// The failed commands (answered `REJECTED` or `ERROR`) a client may send; the
/// last one ends the handshake.
pub const MAX_FAILURES: u32 = 6;

/// The only mechanism offered; the reply to a rejected `AUTH`.
const REJECTED: &[u8] = b"REJECTED EXTERNAL\r\n";

/// The result of feeding bytes to [`ServerAuth::feed`] or [`ClientAuth::feed`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Bytes to write to the peer, in order, before anything else.
    pub output: Vec<u8>,
    /// How many input bytes the handshake used. It is the whole input unless
    /// `finished` is set.
    pub consumed: usize,
    /// The handshake has ended successfully. `input[consumed..]` belongs to
    /// the message stream and must be handed on untouched.
    pub finished: bool,
}

/// Why a handshake ended without success. After any of these, the
/// connection must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(
        "the first byte of a D-Bus connection must be NUL (the credentials byte), not 0x{0:02x}"
    )]
    CredentialsByte(u8),
    #[error("byte 0x{0:02x} in an auth line: only printable ASCII is allowed")]
    ForbiddenByte(u8),
    #[error("an auth line ended with a bare \\n (lines end with \\r\\n)")]
    BareLineFeed,
    #[error("an auth line has a \\r that is not followed by \\n")]
    BareCarriageReturn,
    #[error("an auth line is longer than {MAX_LINE_LEN} bytes")]
    LineTooLong,
    #[error("too many failed auth commands ({0})")]
    TooManyFailures(u32),
    #[error("the client sent BEGIN before authentication succeeded")]
    BeginBeforeOk,
    #[error("the auth handshake has already finished")]
    AlreadyFinished,
    #[error("the auth handshake has already failed")]
    AlreadyFailed,
    #[error("the bus rejected EXTERNAL authentication as uid {uid} (it offers: {offered:?})")]
    Rejected { uid: u32, offered: String },
    #[error("the bus sent OK without a valid 32-digit hex GUID: {0:?}")]
    BadGuid(String),
    #[error("unexpected auth line from the bus while {state}: {line:?}")]
    Unexpected { state: &'static str, line: String },
}

/// Splits the input into `\r\n`-terminated lines of printable ASCII.
#[derive(Debug, Default)]
struct LineReader {
    line: Vec<u8>,
    saw_cr: bool,
}

impl LineReader {
    /// Takes one byte; true when `self.line` holds a whole line (without its
    /// `\r\n`).
    fn push(&mut self, byte: u8) -> Result<bool, AuthError> {
        if self.saw_cr {
            self.saw_cr = false;
            return match byte {
                b'\n' => Ok(true),
                _ => Err(AuthError::BareCarriageReturn),
            };
        }
        match byte {
            b'\r' => {
                self.saw_cr = true;
                Ok(false)
            }
            b'\n' => Err(AuthError::BareLineFeed),
            0x20..=0x7e if self.line.len() >= MAX_LINE_LEN => Err(AuthError::LineTooLong),
            0x20..=0x7e => {
                self.line.push(byte);
                Ok(false)
            }
            other => Err(AuthError::ForbiddenByte(other)),
        }
    }

    /// Hands out the finished line; give the buffer back with `recycle`.
    fn take(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.line)
    }

    fn recycle(&mut self, mut line: Vec<u8>) {
        line.clear();
        self.line = line;
    }
}

/// Splits at the first run of spaces: the command (or mechanism) and the rest.
fn split_word(line: &[u8]) -> (&[u8], &[u8]) {
    match line.iter().position(|&b| b == b' ') {
        None => (line, &[]),
        Some(end) => {
            let rest = &line[end..];
            let blanks = rest.iter().take_while(|&&b| b == b' ').count();
            (&line[..end], &rest[blanks..])
        }
    }
}

fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

fn hex_decode(hex: &[u8]) -> Option<Vec<u8>> {
    fn nibble(digit: u8) -> Option<u8> {
        match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            b'A'..=b'F' => Some(digit - b'A' + 10),
            _ => None,
        }
    }
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    hex.chunks_exact(2)
        .map(|pair| Some(nibble(pair[0])? << 4 | nibble(pair[1])?))
        .collect()
}

/// A bounded, printable copy of a line from the peer, for error messages.
fn excerpt(line: &[u8]) -> String {
    String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    CredentialsByte,
    WaitingForAuth,
    WaitingForData,
    WaitingForBegin,
    Authenticated,
    Failed,
}

/// The app's side of the handshake: the proxy plays the bus.
#[derive(Debug)]
pub struct ServerAuth {
    peer_uid: u32,
    identity: Vec<u8>,
    guid: String,
    state: ServerState,
    reader: LineReader,
    failures: u32,
    unix_fd: bool,
}

impl ServerAuth {
    /// `peer_uid` is the uid the kernel reports for the client's socket
    /// (`SO_PEERCRED`); `guid` is this server's GUID, sent as 32 hex digits in
    /// `OK`.
    pub fn new(peer_uid: u32, guid: [u8; 16]) -> Self {
        Self {
            peer_uid,
            identity: peer_uid.to_string().into_bytes(),
            guid: hex_encode(&guid),
            state: ServerState::CredentialsByte,
            reader: LineReader::default(),
            failures: 0,
            unix_fd: false,
        }
    }

    /// Takes the bytes that arrived from the client. Until the result says
    /// `finished`, all of them are used.
    pub fn feed(&mut self, input: &[u8]) -> Result<Step, AuthError> {
        match self.state {
            ServerState::Authenticated => return Err(AuthError::AlreadyFinished),
            ServerState::Failed => return Err(AuthError::AlreadyFailed),
            _ => {}
        }
        let mut step = Step::default();
        for (at, &byte) in input.iter().enumerate() {
            if let Err(err) = self.take_byte(byte, &mut step.output) {
                self.state = ServerState::Failed;
                return Err(err);
            }
            if self.state == ServerState::Authenticated {
                step.consumed = at + 1;
                step.finished = true;
                return Ok(step);
            }
        }
        step.consumed = input.len();
        Ok(step)
    }

    /// The client has sent `BEGIN` after `OK`.
    pub fn is_finished(&self) -> bool {
        self.state == ServerState::Authenticated
    }

    /// The client asked for file-descriptor passing after `OK` and got
    /// `AGREE_UNIX_FD`.
    pub fn unix_fd_negotiated(&self) -> bool {
        self.unix_fd
    }

    /// The uid the client was authenticated as (the one passed to `new`).
    pub fn peer_uid(&self) -> u32 {
        self.peer_uid
    }

    /// The GUID sent in `OK`, as 32 lowercase hex digits.
    pub fn guid(&self) -> &str {
        &self.guid
    }

    fn take_byte(&mut self, byte: u8, out: &mut Vec<u8>) -> Result<(), AuthError> {
        if self.state == ServerState::CredentialsByte {
            if byte != 0 {
                return Err(AuthError::CredentialsByte(byte));
            }
            self.state = ServerState::WaitingForAuth;
            return Ok(());
        }
        if self.reader.push(byte)? {
            let line = self.reader.take();
            let result = self.handle_line(&line, out);
            self.reader.recycle(line);
            result?;
        }
        Ok(())
    }

    /// The server states of dbus-auth.c (`handle_server_state_waiting_for_*`),
    /// with `BEGIN` accepted only as an exact line.
    fn handle_line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Result<(), AuthError> {
        use ServerState::*;
        let (command, args) = split_word(line);
        match (self.state, command) {
            (_, b"BEGIN") if line != b"BEGIN" => self.error(out, "BEGIN takes no arguments"),
            (WaitingForBegin, b"BEGIN") => {
                self.state = Authenticated;
                Ok(())
            }
            (_, b"BEGIN") => Err(AuthError::BeginBeforeOk),

            (WaitingForAuth, b"AUTH") => self.auth(args, out),
            (WaitingForData, b"AUTH") => {
                self.error(out, "Sent AUTH while another AUTH in progress")
            }
            (WaitingForBegin, b"AUTH") => self.error(out, "Sent AUTH while expecting BEGIN"),

            (WaitingForData, b"DATA") => self.data(args, out),
            (WaitingForAuth, b"DATA" | b"CANCEL") => {
                self.error(out, "Not currently in an auth conversation")
            }
            (WaitingForBegin, b"DATA") => self.error(out, "Sent DATA while expecting BEGIN"),

            (WaitingForAuth, b"ERROR") => self.reject(out),
            (WaitingForData | WaitingForBegin, b"CANCEL" | b"ERROR") => self.reject(out),

            (WaitingForBegin, b"NEGOTIATE_UNIX_FD") if line != b"NEGOTIATE_UNIX_FD" => {
                self.error(out, "NEGOTIATE_UNIX_FD takes no arguments")
            }
            (WaitingForBegin, b"NEGOTIATE_UNIX_FD") if self.unix_fd => {
                self.error(out, "Unix FD passing already agreed")
            }
            (WaitingForBegin, b"NEGOTIATE_UNIX_FD") => {
                self.unix_fd = true;
                out.extend_from_slice(b"AGREE_UNIX_FD\r\n");
                Ok(())
            }
            (_, b"NEGOTIATE_UNIX_FD") => self.error(out, "Need to authenticate first"),

            _ => self.error(out, "Unknown command"),
        }
    }

    fn auth(&mut self, args: &[u8], out: &mut Vec<u8>) -> Result<(), AuthError> {
        let (mechanism, response) = split_word(args);
        if mechanism != b"EXTERNAL" {
            // Also `AUTH` alone, which asks for the list of mechanisms.
            return self.reject(out);
        }
        if response.is_empty() {
            // No initial response: ask for one with an empty challenge.
            out.extend_from_slice(b"DATA\r\n");
            self.state = ServerState::WaitingForData;
            return Ok(());
        }
        self.check_identity(response, out)
    }

    fn data(&mut self, args: &[u8], out: &mut Vec<u8>) -> Result<(), AuthError> {
        if args.is_empty() {
            // No identity given: the socket's credentials are the identity.
            return self.ok(out);
        }
        self.check_identity(args, out)
    }

    fn check_identity(&mut self, hex: &[u8], out: &mut Vec<u8>) -> Result<(), AuthError> {
        match hex_decode(hex) {
            None => self.error(out, "Invalid hex encoding"),
            Some(identity) if identity == self.identity => self.ok(out),
            Some(_) => self.reject(out),
        }
    }

    fn ok(&mut self, out: &mut Vec<u8>) -> Result<(), AuthError> {
        out.extend_from_slice(b"OK ");
        out.extend_from_slice(self.guid.as_bytes());
        out.extend_from_slice(b"\r\n");
        self.state = ServerState::WaitingForBegin;
        Ok(())
    }

    fn fail(&mut self) -> Result<(), AuthError> {
        self.failures += 1;
        if self.failures >= MAX_FAILURES {
            return Err(AuthError::TooManyFailures(self.failures));
        }
        Ok(())
    }

    /// `REJECTED`, which also cancels the current attempt (even after `OK`).
    fn reject(&mut self, out: &mut Vec<u8>) -> Result<(), AuthError> {
        self.fail()?;
        out.extend_from_slice(REJECTED);
        self.state = ServerState::WaitingForAuth;
        self.unix_fd = false;
        Ok(())
    }

    /// `ERROR "message"`; the state does not change. The message is always
    /// one of ours, never text from the client.
    fn error(&mut self, out: &mut Vec<u8>, message: &'static str) -> Result<(), AuthError> {
        self.fail()?;
        out.extend_from_slice(b"ERROR \"");
        out.extend_from_slice(message.as_bytes());
        out.extend_from_slice(b"\"\r\n");
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    WaitingForOk,
    WaitingForReject,
    WaitingForAgreeUnixFd,
    Authenticated,
    Failed,
}

impl ClientState {
    fn describe(self) -> &'static str {
        match self {
            Self::WaitingForOk => "waiting for OK",
            Self::WaitingForReject => "waiting for REJECTED after CANCEL",
            Self::WaitingForAgreeUnixFd => "waiting for AGREE_UNIX_FD",
            Self::Authenticated => "authenticated",
            Self::Failed => "failed",
        }
    }
}

/// The bus side of the handshake: the proxy authenticates to the real bus
/// with `EXTERNAL`, as libdbus does.
#[derive(Debug)]
pub struct ClientAuth {
    uid: u32,
    want_unix_fd: bool,
    state: ClientState,
    reader: LineReader,
    answered_data: bool,
    guid: Option<String>,
    unix_fd: bool,
}

impl ClientAuth {
    /// `uid` is the identity to claim: the proxy's effective uid, which is
    /// what the bus sees through `SO_PEERCRED`. With `negotiate_unix_fd`,
    /// file-descriptor passing is asked for after `OK`.
    pub fn new(uid: u32, negotiate_unix_fd: bool) -> Self {
        Self {
            uid,
            want_unix_fd: negotiate_unix_fd,
            state: ClientState::WaitingForOk,
            reader: LineReader::default(),
            answered_data: false,
            guid: None,
            unix_fd: false,
        }
    }

    /// What to write first: the credentials byte and `AUTH EXTERNAL` with the
    /// uid as its initial response.
    pub fn initial_output(&self) -> Vec<u8> {
        let mut out = b"\0AUTH EXTERNAL ".to_vec();
        out.extend_from_slice(hex_encode(self.uid.to_string().as_bytes()).as_bytes());
        out.extend_from_slice(b"\r\n");
        out
    }

    /// Takes the bytes that arrived from the bus. Until the result says
    /// `finished`, all of them are used.
    pub fn feed(&mut self, input: &[u8]) -> Result<Step, AuthError> {
        match self.state {
            ClientState::Authenticated => return Err(AuthError::AlreadyFinished),
            ClientState::Failed => return Err(AuthError::AlreadyFailed),
            _ => {}
        }
        let mut step = Step::default();
        for (at, &byte) in input.iter().enumerate() {
            if let Err(err) = self.take_byte(byte, &mut step.output) {
                self.state = ClientState::Failed;
                return Err(err);
            }
            if self.state == ClientState::Authenticated {
                step.consumed = at + 1;
                step.finished = true;
                return Ok(step);
            }
        }
        step.consumed = input.len();
        Ok(step)
    }

    /// `BEGIN` has been produced: after writing it, the connection carries
    /// messages.
    pub fn is_finished(&self) -> bool {
        self.state == ClientState::Authenticated
    }

    /// The GUID the bus sent in `OK` (32 hex digits), once it has.
    pub fn server_guid(&self) -> Option<&str> {
        self.guid.as_deref()
    }

    /// The bus agreed to file-descriptor passing.
    pub fn unix_fd_negotiated(&self) -> bool {
        self.unix_fd
    }

    fn take_byte(&mut self, byte: u8, out: &mut Vec<u8>) -> Result<(), AuthError> {
        if self.reader.push(byte)? {
            let line = self.reader.take();
            let result = self.handle_line(&line, out);
            self.reader.recycle(line);
            result?;
        }
        Ok(())
    }

    /// The client states of dbus-auth.c; where libdbus would answer
    /// `ERROR "Unknown command"`, the bus is not followed further.
    fn handle_line(&mut self, line: &[u8], out: &mut Vec<u8>) -> Result<(), AuthError> {
        use ClientState::*;
        let (command, args) = split_word(line);
        match (self.state, command) {
            (WaitingForOk, b"OK") => {
                let valid = args.len() == 32 && args.iter().all(u8::is_ascii_hexdigit);
                if !valid {
                    return Err(AuthError::BadGuid(excerpt(args)));
                }
                self.guid = Some(excerpt(args));
                if self.want_unix_fd {
                    out.extend_from_slice(b"NEGOTIATE_UNIX_FD\r\n");
                    self.state = WaitingForAgreeUnixFd;
                } else {
                    self.begin(out);
                }
                Ok(())
            }
            (WaitingForOk, b"DATA") if !self.answered_data => {
                // A challenge after our initial response: an empty answer
                // means "the identity my socket credentials show".
                self.answered_data = true;
                out.extend_from_slice(b"DATA\r\n");
                Ok(())
            }
            (WaitingForOk, b"DATA" | b"ERROR") => {
                out.extend_from_slice(b"CANCEL\r\n");
                self.state = WaitingForReject;
                Ok(())
            }
            (WaitingForOk | WaitingForReject, b"REJECTED") => Err(AuthError::Rejected {
                uid: self.uid,
                offered: excerpt(args),
            }),
            (WaitingForAgreeUnixFd, b"AGREE_UNIX_FD") if args.is_empty() => {
                self.unix_fd = true;
                self.begin(out);
                Ok(())
            }
            (WaitingForAgreeUnixFd, b"ERROR") => {
                // The bus will not pass fds; carry on without them (libdbus).
                self.begin(out);
                Ok(())
            }
            (state, _) => Err(AuthError::Unexpected {
                state: state.describe(),
                line: excerpt(line),
            }),
        }
    }

    fn begin(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"BEGIN\r\n");
        self.state = ClientState::Authenticated;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::busproxy::testing::XorShift;

    const UID: u32 = 1000;
    const GUID: [u8; 16] = [
        0x0f, 0x1e, 0x2d, 0x3c, 0x4b, 0x5a, 0x69, 0x78, 0x87, 0x96, 0xa5, 0xb4, 0xc3, 0xd2, 0xe1,
        0xf0,
    ];
    const GUID_HEX: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

    /// "1000", hex-encoded, as libdbus sends it.
    const AUTH_OK: &[u8] = b"\0AUTH EXTERNAL 31303030\r\n";

    fn ok_line() -> Vec<u8> {
        format!("OK {GUID_HEX}\r\n").into_bytes()
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// What a whole conversation with a `ServerAuth` came to.
    #[derive(Debug, Default, PartialEq, Eq)]
    struct Outcome {
        output: Vec<u8>,
        finished: bool,
        /// Bytes after the handshake: the message stream.
        rest: Vec<u8>,
        error: Option<AuthError>,
        unix_fd: bool,
    }

    /// Feeds `chunks` in order, as a caller would, checking `Step`'s promises.
    fn run_server(chunks: &[&[u8]]) -> Outcome {
        let mut auth = ServerAuth::new(UID, GUID);
        let mut outcome = Outcome::default();
        for chunk in chunks {
            if outcome.finished {
                outcome.rest.extend_from_slice(chunk);
                continue;
            }
            match auth.feed(chunk) {
                Ok(step) => {
                    assert!(step.consumed <= chunk.len());
                    outcome.output.extend_from_slice(&step.output);
                    if step.finished {
                        assert!(auth.is_finished());
                        outcome.finished = true;
                        outcome.rest.extend_from_slice(&chunk[step.consumed..]);
                    } else {
                        assert_eq!(step.consumed, chunk.len());
                    }
                }
                Err(err) => {
                    assert_eq!(auth.feed(b"BEGIN\r\n"), Err(AuthError::AlreadyFailed));
                    outcome.error = Some(err);
                    break;
                }
            }
        }
        outcome.unix_fd = auth.unix_fd_negotiated();
        outcome
    }

    fn whole(input: &[u8]) -> Outcome {
        run_server(&[input])
    }

    fn bytewise(input: &[u8]) -> Outcome {
        run_server(&input.chunks(1).collect::<Vec<_>>())
    }

    /// The same input in one chunk, byte by byte, and split at every point
    /// must come to the same end. (Output sent before a fatal error may
    /// differ: it depends on which earlier chunks came back.)
    fn assert_split_invariant(input: &[u8]) -> Outcome {
        let one = whole(input);
        let mut splits = vec![bytewise(input)];
        for at in 0..=input.len() {
            splits.push(run_server(&[&input[..at], &input[at..]]));
        }
        for other in splits {
            assert_eq!(one.finished, other.finished, "input {input:?}");
            assert_eq!(one.rest, other.rest, "input {input:?}");
            assert_eq!(one.error, other.error, "input {input:?}");
            assert_eq!(one.unix_fd, other.unix_fd, "input {input:?}");
            if one.error.is_none() {
                assert_eq!(one.output, other.output, "input {input:?}");
            }
        }
        one
    }

    #[test]
    fn libdbus_style_initial_response() {
        let out = assert_split_invariant(&cat(&[AUTH_OK, b"BEGIN\r\n"]));
        assert_eq!(out.output, ok_line());
        assert!(out.finished);
        assert!(out.rest.is_empty());
        assert!(!out.unix_fd);
    }

    #[test]
    fn no_initial_response_then_empty_data() {
        let out = assert_split_invariant(b"\0AUTH EXTERNAL\r\nDATA\r\nBEGIN\r\n");
        assert_eq!(out.output, cat(&[b"DATA\r\n", &ok_line()]));
        assert!(out.finished);
    }

    #[test]
    fn identity_in_data_reply() {
        let out = assert_split_invariant(b"\0AUTH EXTERNAL\r\nDATA 31303030\r\nBEGIN\r\n");
        assert_eq!(out.output, cat(&[b"DATA\r\n", &ok_line()]));
        assert!(out.finished);
    }

    #[test]
    fn gdbus_style_asks_for_mechanisms_first() {
        let out = assert_split_invariant(
            b"\0AUTH\r\nAUTH EXTERNAL 31303030\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n",
        );
        assert_eq!(
            out.output,
            cat(&[REJECTED, &ok_line(), b"AGREE_UNIX_FD\r\n"])
        );
        assert!(out.finished);
        assert!(out.unix_fd);
    }

    #[test]
    fn pipelined_handshake_hands_back_the_first_message() {
        // sd-bus (busctl, systemd 255) writes its whole handshake in one
        // sendmsg() without waiting for replies; a client may add its Hello.
        let message: &[u8] = b"l\x01\x00\x01\x00\x00\x00\x00\x01\x00\x00\x00\r\n\0BEGIN\r\n\xff";
        let sd_bus: &[u8] = b"\0AUTH EXTERNAL\r\nDATA\r\nNEGOTIATE_UNIX_FD\r\nBEGIN\r\n";
        let out = assert_split_invariant(&cat(&[sd_bus, message]));
        assert_eq!(
            out.output,
            cat(&[b"DATA\r\n", &ok_line(), b"AGREE_UNIX_FD\r\n"])
        );
        assert!(out.finished);
        assert!(out.unix_fd);
        assert_eq!(out.rest, message);

        let input = cat(&[AUTH_OK, b"NEGOTIATE_UNIX_FD\r\nBEGIN\r\n", message]);
        let out = assert_split_invariant(&input);
        assert!(out.finished);
        assert!(out.unix_fd);
        assert_eq!(out.rest, message);

        let mut auth = ServerAuth::new(UID, GUID);
        let step = auth.feed(&input).unwrap();
        assert_eq!(&input[step.consumed..], message);
        assert_eq!(auth.feed(b"x"), Err(AuthError::AlreadyFinished));
    }

    #[test]
    fn spoofed_uid_is_rejected() {
        let spoofs: [&[u8]; 9] = [
            b"30",               // "0": root
            b"31303031",         // "1001"
            b"3031303030",       // "01000"
            b"3130303020",       // "1000 "
            b"2b31303030",       // "+1000"
            b"313030300a",       // "1000\n"
            b"31303030003",      // odd length
            b"726f6f74",         // "root": dbus-daemon would look the name up
            b"3130303030303030", // "10000000"
        ];
        for spoof in spoofs {
            for prefix in [&b"\0AUTH EXTERNAL "[..], b"\0AUTH EXTERNAL\r\nDATA "] {
                let input = cat(&[prefix, spoof, b"\r\n"]);
                let out = assert_split_invariant(&input);
                assert!(!out.finished);
                assert_eq!(out.error, None);
                assert!(
                    out.output.ends_with(REJECTED)
                        || out.output.ends_with(b"\"Invalid hex encoding\"\r\n"),
                    "{spoof:?}: {:?}",
                    String::from_utf8_lossy(&out.output)
                );
                assert!(!out.output.windows(3).any(|w| w == b"OK "));
                let then_begin = assert_split_invariant(&cat(&[&input, b"BEGIN\r\n"]));
                assert_eq!(then_begin.error, Some(AuthError::BeginBeforeOk));
            }
        }
        // A server for another uid does not accept this uid either.
        let mut auth = ServerAuth::new(0, GUID);
        let step = auth.feed(AUTH_OK).unwrap();
        assert_eq!(step.output, REJECTED);
    }

    #[test]
    fn other_mechanisms_are_rejected() {
        for line in [
            &b"AUTH ANONYMOUS 6c6962646275732031"[..],
            b"AUTH DBUS_COOKIE_SHA1 31303030",
            b"AUTH external 31303030",
            b"AUTH EXTERNALX 31303030",
            b"AUTH",
            b"AUTH ",
        ] {
            let out = assert_split_invariant(&cat(&[b"\0", line, b"\r\n"]));
            assert_eq!(out.output, REJECTED, "{line:?}");
        }
    }

    #[test]
    fn begin_variants_do_not_finish() {
        let after_ok: [&[u8]; 24] = [
            b"BEGIN \r\n",
            b"BEGIN  \r\n",
            b"BEGIN x\r\n",
            b"begin\r\n",
            b"Begin\r\n",
            b"BEGIN\n",
            b"BEGIN\r",
            b"BEGIN\rX\r\n",
            b"BEGIN\r\r\n",
            b" BEGIN\r\n",
            b"\tBEGIN\r\n",
            b"BEGIN\t\r\n",
            b"BEGIN\0\r\n",
            b"BEGIN\0",
            b"BEGINX\r\n",
            b"BEGI\r\nN\r\n",
            b"BEG\0IN\r\n",
            b"BEGIN\x7f\r\n",
            b"BEGIN\xc2\xa0\r\n",
            b"\xefBEGIN\r\n",
            b"BEGIN",
            b"\n\rBEGIN\r\n",
            b"\r\nBEGIN",
            b"BEGIN\n\r\n",
        ];
        for variant in after_ok {
            let input = cat(&[AUTH_OK, variant]);
            let out = assert_split_invariant(&input);
            assert!(!out.finished, "{variant:?} finished the handshake");
            // CVE-2018-6560: what follows a non-BEGIN is not a message.
            let message = b"l\x01\x00\x01\x00\x00\x00\x00\x01\x00\x00\x00";
            let out = assert_split_invariant(&cat(&[&input, message]));
            assert!(!out.finished, "{variant:?} finished the handshake");
            assert!(out.rest.is_empty());
        }
        // An exact BEGIN before OK ends the handshake, like dbus-daemon.
        for input in [
            &b"\0BEGIN\r\n"[..],
            b"\0AUTH EXTERNAL\r\nBEGIN\r\n",
            b"\0AUTH EXTERNAL 30\r\nBEGIN\r\n",
            b"\0AUTH\r\nBEGIN\r\n",
            b"\0NEGOTIATE_UNIX_FD\r\nBEGIN\r\n",
        ] {
            let out = assert_split_invariant(input);
            assert!(!out.finished);
            assert_eq!(out.error, Some(AuthError::BeginBeforeOk), "{input:?}");
        }
        // "BEGIN " before OK is not BEGIN either.
        let out = assert_split_invariant(b"\0BEGIN \r\n");
        assert!(!out.finished);
        assert_eq!(out.output, b"ERROR \"BEGIN takes no arguments\"\r\n");
    }

    #[test]
    fn malformed_lines_end_the_handshake() {
        let cases: [(&[u8], AuthError); 7] = [
            (b"\0AUTH\n", AuthError::BareLineFeed),
            (b"\0AUTH\rEXTERNAL\r\n", AuthError::BareCarriageReturn),
            (b"\0AUTH\tEXTERNAL\r\n", AuthError::ForbiddenByte(b'\t')),
            (b"\0AUTH EXTERNAL \x80\r\n", AuthError::ForbiddenByte(0x80)),
            (b"\0\0AUTH\r\n", AuthError::ForbiddenByte(0)),
            (b"\0\x1b[2J\r\n", AuthError::ForbiddenByte(0x1b)),
            (b"\0AUTH\x7f\r\n", AuthError::ForbiddenByte(0x7f)),
        ];
        for (input, error) in cases {
            let out = assert_split_invariant(input);
            assert_eq!(out.error, Some(error), "{input:?}");
            assert!(!out.finished);
        }
    }

    #[test]
    fn credentials_byte_must_be_a_single_nul() {
        for (input, error) in [
            (
                &b"AUTH EXTERNAL 31303030\r\n"[..],
                AuthError::CredentialsByte(b'A'),
            ),
            (b"\x01", AuthError::CredentialsByte(1)),
            (b"\xff\0AUTH\r\n", AuthError::CredentialsByte(0xff)),
            (b"\0\0", AuthError::ForbiddenByte(0)),
        ] {
            assert_eq!(assert_split_invariant(input).error, Some(error));
        }
        // Nothing yet is not an error.
        assert_eq!(ServerAuth::new(UID, GUID).feed(b""), Ok(Step::default()));
    }

    #[test]
    fn line_length_is_bounded() {
        let mut longest = b"\0".to_vec();
        longest.resize(1 + MAX_LINE_LEN, b'A');
        longest.extend_from_slice(b"\r\n");
        let out = whole(&longest);
        assert_eq!(out.error, None);
        assert_eq!(out.output, b"ERROR \"Unknown command\"\r\n");

        let mut too_long = b"\0".to_vec();
        too_long.resize(2 + MAX_LINE_LEN, b'A');
        assert_eq!(whole(&too_long).error, Some(AuthError::LineTooLong));
        // One byte at a time stops at the same place, never buffering more.
        assert_eq!(bytewise(&too_long).error, Some(AuthError::LineTooLong));
        let mut auth = ServerAuth::new(UID, GUID);
        auth.feed(&too_long[..=MAX_LINE_LEN]).unwrap();
        assert_eq!(auth.feed(b"B"), Err(AuthError::LineTooLong));
    }

    #[test]
    fn failures_are_limited() {
        for line in [
            &b"AUTH FOO\r\n"[..],
            b"HELLO\r\n",
            b"\r\n",
            b"DATA\r\n",
            b"NEGOTIATE_UNIX_FD\r\n",
            b"AUTH EXTERNAL 30\r\n",
            b"AUTH EXTERNAL zz\r\n",
            b"ERROR\r\n",
            b"BEGIN \r\n",
        ] {
            let mut input = b"\0".to_vec();
            for _ in 0..MAX_FAILURES - 1 {
                input.extend_from_slice(line);
            }
            let out = assert_split_invariant(&input);
            assert_eq!(out.error, None, "{line:?}");
            input.extend_from_slice(line);
            let out = assert_split_invariant(&input);
            assert_eq!(
                out.error,
                Some(AuthError::TooManyFailures(MAX_FAILURES)),
                "{line:?}"
            );
        }
        // A flood in one chunk stops at the limit, with bounded output.
        let flood = cat(&[b"\0", &b"X\r\n".repeat(100_000)]);
        let mut auth = ServerAuth::new(UID, GUID);
        assert_eq!(
            auth.feed(&flood),
            Err(AuthError::TooManyFailures(MAX_FAILURES))
        );
    }

    #[test]
    fn unix_fd_negotiation() {
        let before_ok = assert_split_invariant(b"\0NEGOTIATE_UNIX_FD\r\n");
        assert_eq!(
            before_ok.output,
            b"ERROR \"Need to authenticate first\"\r\n"
        );
        assert!(!before_ok.unix_fd);

        let out = assert_split_invariant(&cat(&[
            AUTH_OK,
            b"NEGOTIATE_UNIX_FD\r\nNEGOTIATE_UNIX_FD\r\nNEGOTIATE_UNIX_FD x\r\n",
        ]));
        assert_eq!(
            out.output,
            cat(&[
                &ok_line(),
                b"AGREE_UNIX_FD\r\n",
                b"ERROR \"Unix FD passing already agreed\"\r\n",
                b"ERROR \"NEGOTIATE_UNIX_FD takes no arguments\"\r\n",
            ])
        );
        assert!(out.unix_fd);
    }

    #[test]
    fn cancel_after_ok_starts_over() {
        let out = assert_split_invariant(&cat(&[
            AUTH_OK,
            b"NEGOTIATE_UNIX_FD\r\nCANCEL\r\nBEGIN\r\n",
        ]));
        assert_eq!(out.error, Some(AuthError::BeginBeforeOk));
        let out = assert_split_invariant(&cat(&[AUTH_OK, b"ERROR \"no\"\r\n"]));
        assert_eq!(out.output, cat(&[&ok_line(), REJECTED]));
        assert!(!out.unix_fd);
        let out = assert_split_invariant(
            b"\0AUTH EXTERNAL\r\nCANCEL\r\nAUTH EXTERNAL 31303030\r\nBEGIN\r\n",
        );
        assert_eq!(out.output, cat(&[b"DATA\r\n", REJECTED, &ok_line()]));
        assert!(out.finished);
    }

    #[test]
    fn wrong_state_commands_get_errors() {
        let out = assert_split_invariant(&cat(&[
            AUTH_OK,
            b"AUTH EXTERNAL 31303030\r\nDATA\r\nOK\r\nREJECTED\r\nAGREE_UNIX_FD\r\nBEGIN\r\n",
        ]));
        assert_eq!(
            out.output,
            cat(&[
                &ok_line(),
                b"ERROR \"Sent AUTH while expecting BEGIN\"\r\n",
                b"ERROR \"Sent DATA while expecting BEGIN\"\r\n",
                b"ERROR \"Unknown command\"\r\n",
                b"ERROR \"Unknown command\"\r\n",
                b"ERROR \"Unknown command\"\r\n",
            ])
        );
        // Failures do not reset on success: this was five.
        assert!(out.finished);
        let out = assert_split_invariant(b"\0AUTH EXTERNAL\r\nAUTH EXTERNAL\r\nDATA\r\nBEGIN\r\n");
        assert_eq!(
            out.output,
            cat(&[
                b"DATA\r\n",
                b"ERROR \"Sent AUTH while another AUTH in progress\"\r\n",
                &ok_line(),
            ])
        );
        assert!(out.finished);
    }

    #[test]
    fn random_conversations_never_finish_without_ok_and_exact_begin() {
        let pieces: [&[u8]; 22] = [
            b"AUTH EXTERNAL 31303030\r\n",
            b"AUTH EXTERNAL 30\r\n",
            b"AUTH EXTERNAL\r\n",
            b"AUTH\r\n",
            b"DATA\r\n",
            b"DATA 31303030\r\n",
            b"CANCEL\r\n",
            b"ERROR\r\n",
            b"NEGOTIATE_UNIX_FD\r\n",
            b"BEGIN\r\n",
            b"BEGIN \r\n",
            b"begin\r\n",
            b"BEGIN",
            b"\r\n",
            b"\r",
            b"\n",
            b" ",
            b"\0",
            b"\xff",
            b"l\x01\x00\x01",
            b"OK 0123\r\n",
            b"AGREE_UNIX_FD\r\n",
        ];
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..3000 {
            let mut input = if rng.below(8) == 0 {
                Vec::new()
            } else {
                b"\0".to_vec()
            };
            for _ in 0..rng.below(10) {
                input.extend_from_slice(pieces[rng.below(pieces.len())]);
            }
            let one = whole(&input);
            let mut chunks = Vec::new();
            let mut rest = &input[..];
            while !rest.is_empty() {
                let (head, tail) = rest.split_at(1 + rng.below(rest.len()));
                chunks.push(head);
                rest = tail;
            }
            let split = run_server(&chunks);
            assert_eq!(one.finished, split.finished, "{input:?}");
            assert_eq!(one.rest, split.rest, "{input:?}");
            assert_eq!(one.error, split.error, "{input:?}");
            if one.finished {
                // Finished only on an exact BEGIN line, after an OK.
                let handshake = &input[..input.len() - one.rest.len()];
                assert!(handshake.ends_with(b"\r\nBEGIN\r\n"), "{input:?}");
                assert!(one.output.windows(3).any(|w| w == b"OK "), "{input:?}");
            }
        }
    }

    /// What a whole conversation with a `ClientAuth` came to.
    fn run_client(fd: bool, chunks: &[&[u8]]) -> (Result<Vec<u8>, AuthError>, Vec<u8>, bool) {
        let mut auth = ClientAuth::new(UID, fd);
        let mut output = Vec::new();
        let mut rest = Vec::new();
        for chunk in chunks {
            if auth.is_finished() {
                rest.extend_from_slice(chunk);
                continue;
            }
            match auth.feed(chunk) {
                Ok(step) => {
                    output.extend_from_slice(&step.output);
                    if step.finished {
                        rest.extend_from_slice(&chunk[step.consumed..]);
                    } else {
                        assert_eq!(step.consumed, chunk.len());
                    }
                }
                Err(err) => return (Err(err), rest, false),
            }
        }
        let finished = auth.is_finished();
        if finished {
            assert_eq!(auth.server_guid(), Some(GUID_HEX));
        }
        (Ok(output), rest, finished)
    }

    fn client_both_ways(fd: bool, input: &[u8]) -> (Result<Vec<u8>, AuthError>, Vec<u8>, bool) {
        let one = run_client(fd, &[input]);
        let bytes = run_client(fd, &input.chunks(1).collect::<Vec<_>>());
        assert_eq!(one.0.is_ok(), bytes.0.is_ok(), "{input:?}");
        if one.0.is_err() {
            assert_eq!(one.0, bytes.0, "{input:?}");
        }
        assert_eq!((&one.1, one.2), (&bytes.1, bytes.2), "{input:?}");
        one
    }

    #[test]
    fn client_sends_uid_as_initial_response() {
        assert_eq!(ClientAuth::new(UID, false).initial_output(), AUTH_OK);
        assert_eq!(
            ClientAuth::new(0, true).initial_output(),
            b"\0AUTH EXTERNAL 30\r\n"
        );
    }

    #[test]
    fn client_without_fds() {
        let (output, rest, finished) = client_both_ways(false, &ok_line());
        assert_eq!(output.unwrap(), b"BEGIN\r\n");
        assert!(rest.is_empty());
        assert!(finished);
    }

    #[test]
    fn client_with_fds_hands_back_trailing_bytes() {
        let input = cat(&[&ok_line(), b"AGREE_UNIX_FD\r\nl\x02\x01\x01\r\n"]);
        let (output, rest, finished) = client_both_ways(true, &input);
        assert_eq!(output.unwrap(), b"NEGOTIATE_UNIX_FD\r\nBEGIN\r\n");
        assert_eq!(rest, b"l\x02\x01\x01\r\n");
        assert!(finished);

        let mut auth = ClientAuth::new(UID, true);
        auth.feed(&input).unwrap();
        assert!(auth.unix_fd_negotiated());

        // A bus that will not pass fds still gets BEGIN.
        let mut auth = ClientAuth::new(UID, true);
        let step = auth
            .feed(&cat(&[&ok_line(), b"ERROR \"no fds\"\r\n"]))
            .unwrap();
        assert_eq!(step.output, b"NEGOTIATE_UNIX_FD\r\nBEGIN\r\n");
        assert!(step.finished);
        assert!(!auth.unix_fd_negotiated());
        assert_eq!(auth.feed(b""), Err(AuthError::AlreadyFinished));
    }

    #[test]
    fn client_handles_rejection_data_and_errors() {
        let (output, _, _) = client_both_ways(false, b"REJECTED EXTERNAL ANONYMOUS\r\n");
        assert_eq!(
            output,
            Err(AuthError::Rejected {
                uid: UID,
                offered: "EXTERNAL ANONYMOUS".into()
            })
        );

        let (output, _, finished) = client_both_ways(false, b"ERROR \"what\"\r\n");
        assert_eq!(output.unwrap(), b"CANCEL\r\n");
        assert!(!finished);
        let (output, _, _) = client_both_ways(false, b"ERROR \"what\"\r\nREJECTED EXTERNAL\r\n");
        assert!(matches!(output, Err(AuthError::Rejected { .. })));
        let (output, _, _) = client_both_ways(false, b"ERROR \"what\"\r\nOK 00\r\n");
        assert!(matches!(output, Err(AuthError::Unexpected { .. })));

        let input = cat(&[b"DATA\r\n", &ok_line()]);
        let (output, _, finished) = client_both_ways(false, &input);
        assert_eq!(output.unwrap(), b"DATA\r\nBEGIN\r\n");
        assert!(finished);
        let (output, _, _) = client_both_ways(false, b"DATA\r\nDATA\r\n");
        assert_eq!(output.unwrap(), b"DATA\r\nCANCEL\r\n");
    }

    #[test]
    fn client_refuses_hostile_servers() {
        let hostile: [&[u8]; 12] = [
            b"OK\r\n",
            b"OK \r\n",
            b"OK 0123\r\n",
            b"OK 0f1e2d3c4b5a69788796a5b4c3d2e1f0 x\r\n",
            b"OK 0f1e2d3c4b5a69788796a5b4c3d2e1fg\r\n",
            b"OK 0f1e2d3c4b5a69788796a5b4c3d2e1f0\n",
            b"BEGIN\r\n",
            b"AGREE_UNIX_FD\r\n",
            b"ok 0f1e2d3c4b5a69788796a5b4c3d2e1f0\r\n",
            b"\0OK 0f1e2d3c4b5a69788796a5b4c3d2e1f0\r\n",
            b"OK 0f1e2d3c4b5a69788796a5b4c3d2e1f0\r\nAGREE_UNIX_FD x\r\n",
            b"OK 0f1e2d3c4b5a69788796a5b4c3d2e1f0\r\nOK 0f1e2d3c4b5a69788796a5b4c3d2e1f0\r\n",
        ];
        for input in hostile {
            let (output, _, finished) = client_both_ways(true, input);
            assert!(output.is_err(), "{input:?}");
            assert!(!finished);
        }
        let mut endless = vec![b'D'; MAX_LINE_LEN + 1];
        endless.extend_from_slice(b"\r\n");
        assert_eq!(
            client_both_ways(false, &endless).0,
            Err(AuthError::LineTooLong)
        );
    }

    #[test]
    fn client_and_server_agree() {
        for fd in [false, true] {
            let mut server = ServerAuth::new(UID, GUID);
            let mut client = ClientAuth::new(UID, fd);
            let mut to_server = client.initial_output();
            let mut rounds = 0;
            loop {
                let step = server.feed(&to_server).unwrap();
                if step.finished {
                    assert_eq!(step.consumed, to_server.len());
                    break;
                }
                let reply = client.feed(&step.output).unwrap();
                to_server = reply.output;
                rounds += 1;
                assert!(rounds < 4, "the handshake does not end");
            }
            assert!(client.is_finished());
            assert_eq!(client.server_guid(), Some(server.guid()));
            assert_eq!(client.unix_fd_negotiated(), fd);
            assert_eq!(server.unix_fd_negotiated(), fd);
            assert_eq!(server.peer_uid(), UID);
        }
    }

    /// Real-world peers: dbus-daemon as the bus, libdbus, GDBus and sd-bus as
    /// clients.
    mod interop {
        use super::super::*;
        use crate::busproxy::testing::{have, start_daemon, ChildGuard, Daemon, TempDir};
        use std::io::{self, Read, Write};
        use std::os::unix::net::{UnixListener, UnixStream};
        use std::process::{Command, Stdio};
        use std::time::{Duration, Instant};

        const TIMEOUT: Duration = Duration::from_secs(20);

        trait Handshake {
            fn feed(&mut self, input: &[u8]) -> Result<Step, AuthError>;
        }

        impl Handshake for ServerAuth {
            fn feed(&mut self, input: &[u8]) -> Result<Step, AuthError> {
                ServerAuth::feed(self, input)
            }
        }

        impl Handshake for ClientAuth {
            fn feed(&mut self, input: &[u8]) -> Result<Step, AuthError> {
                ClientAuth::feed(self, input)
            }
        }

        /// Runs a handshake over a socket, as the proxy will; returns the
        /// bytes that came after it.
        fn drive(stream: &mut UnixStream, auth: &mut impl Handshake) -> io::Result<Vec<u8>> {
            let mut buf = [0u8; 4096];
            loop {
                let n = stream.read(&mut buf)?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                let step = auth.feed(&buf[..n]).map_err(io::Error::other)?;
                stream.write_all(&step.output)?;
                if step.finished {
                    return Ok(buf[step.consumed..n].to_vec());
                }
            }
        }

        fn connect_to_bus(daemon: &Daemon, fd: bool) -> (UnixStream, ClientAuth, Vec<u8>) {
            let mut bus = UnixStream::connect(&daemon.socket).unwrap();
            bus.set_read_timeout(Some(TIMEOUT)).unwrap();
            let mut auth = ClientAuth::new(nix::unistd::geteuid().as_raw(), fd);
            bus.write_all(&auth.initial_output()).unwrap();
            let rest = drive(&mut bus, &mut auth).unwrap();
            (bus, auth, rest)
        }

        /// org.freedesktop.DBus.Hello, little-endian, serial 1, no body.
        fn hello() -> Vec<u8> {
            fn pad(m: &mut Vec<u8>) {
                while !m.len().is_multiple_of(8) {
                    m.push(0);
                }
            }
            // Endianness, METHOD_CALL, no flags, protocol 1, body length 0,
            // serial 1, then the header field array's length (set below).
            let mut m = vec![b'l', 1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0];
            for (code, signature, value) in [
                (1u8, b'o', "/org/freedesktop/DBus"),
                (2, b's', "org.freedesktop.DBus"),
                (3, b's', "Hello"),
                (6, b's', "org.freedesktop.DBus"),
            ] {
                pad(&mut m);
                m.extend_from_slice(&[code, 1, signature, 0]);
                m.extend_from_slice(&(value.len() as u32).to_le_bytes());
                m.extend_from_slice(value.as_bytes());
                m.push(0);
            }
            let fields_len = (m.len() - 16) as u32;
            m[12..16].copy_from_slice(&fields_len.to_le_bytes());
            pad(&mut m);
            m
        }

        #[test]
        fn client_auth_against_dbus_daemon() {
            let daemon = start_daemon();
            for fd in [false, true] {
                let (mut bus, auth, rest) = connect_to_bus(&daemon, fd);
                assert!(rest.is_empty());
                assert_eq!(auth.server_guid().map(str::len), Some(32));
                assert_eq!(auth.unix_fd_negotiated(), fd);

                bus.write_all(&hello()).unwrap();
                let mut reply = Vec::new();
                let mut buf = [0u8; 4096];
                while reply.len() < 16 || !reply.windows(3).any(|w| w == b":1.") {
                    let n = bus.read(&mut buf).unwrap();
                    assert!(n > 0, "the bus hung up: {reply:?}");
                    reply.extend_from_slice(&buf[..n]);
                }
                assert_eq!(reply[0], b'l');
                assert_eq!(reply[1], 2, "not a method return: {reply:?}");
            }
        }

        /// Accepts one connection, giving up if `tool` exits first.
        fn accept(listener: &UnixListener, tool: &mut ChildGuard) -> UnixStream {
            listener.set_nonblocking(true).unwrap();
            let deadline = Instant::now() + TIMEOUT;
            loop {
                match listener.accept() {
                    Ok((stream, _)) => {
                        stream.set_nonblocking(false).unwrap();
                        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
                        return stream;
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        if let Some(status) = tool.child().try_wait().unwrap() {
                            panic!("the client exited without connecting: {status}");
                        }
                        assert!(Instant::now() < deadline, "no connection");
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(err) => panic!("accept: {err}"),
                }
            }
        }

        /// A real client talks to `ServerAuth`; once both handshakes are done,
        /// its bytes are spliced to dbus-daemon (authenticated by `ClientAuth`)
        /// and its call must succeed.
        fn through_both_handshakes(program: &str, args: &[&str], expect: &str) {
            if !have(&format!("/usr/bin/{program}")) {
                return;
            }
            let daemon = start_daemon();
            let dir = TempDir::new("proxy");
            let proxy = dir.0.join("proxy");
            let listener = UnixListener::bind(&proxy).unwrap();
            let address = format!("unix:path={}", proxy.display());
            let args: Vec<String> = args
                .iter()
                .map(|a| a.replace("@ADDRESS@", &address))
                .collect();
            let mut tool = ChildGuard::spawn(
                Command::new(program)
                    .args(&args)
                    .env_remove("DBUS_SESSION_BUS_ADDRESS")
                    .env_remove("DBUS_SYSTEM_BUS_ADDRESS")
                    .stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped()),
            );
            let mut app = accept(&listener, &mut tool);
            let creds =
                nix::sys::socket::getsockopt(&app, nix::sys::socket::sockopt::PeerCredentials)
                    .unwrap();
            let mut server = ServerAuth::new(creds.uid(), [7; 16]);
            let from_app = drive(&mut app, &mut server).unwrap();

            let (mut bus, _, from_bus) = connect_to_bus(&daemon, server.unix_fd_negotiated());
            bus.write_all(&from_app).unwrap();
            app.write_all(&from_bus).unwrap();
            app.set_read_timeout(None).unwrap();
            bus.set_read_timeout(None).unwrap();
            let pumps = [
                (app.try_clone().unwrap(), bus.try_clone().unwrap()),
                (bus.try_clone().unwrap(), app.try_clone().unwrap()),
            ]
            .map(|(mut from, mut to)| {
                std::thread::spawn(move || {
                    let _ = io::copy(&mut from, &mut to);
                    let _ = to.shutdown(std::net::Shutdown::Write);
                })
            });

            let deadline = Instant::now() + TIMEOUT;
            let status = loop {
                if let Some(status) = tool.child().try_wait().unwrap() {
                    break status;
                }
                assert!(Instant::now() < deadline, "{program} did not finish");
                std::thread::sleep(Duration::from_millis(20));
            };
            let _ = app.shutdown(std::net::Shutdown::Both);
            let _ = bus.shutdown(std::net::Shutdown::Both);
            for pump in pumps {
                pump.join().unwrap();
            }
            let mut stdout = String::new();
            let mut stderr = String::new();
            tool.child()
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut stdout)
                .unwrap();
            tool.child()
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut stderr)
                .unwrap();
            assert!(status.success(), "{program}: {status}: {stderr}");
            assert!(stdout.contains(expect), "{program} printed {stdout:?}");
        }

        #[test]
        fn libdbus_client_through_server_auth() {
            through_both_handshakes(
                "dbus-send",
                &[
                    "--bus=@ADDRESS@",
                    "--print-reply",
                    "--dest=org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus.ListNames",
                ],
                "\"org.freedesktop.DBus\"",
            );
        }

        #[test]
        fn gdbus_client_through_server_auth() {
            through_both_handshakes(
                "gdbus",
                &[
                    "call",
                    "--address",
                    "@ADDRESS@",
                    "--dest",
                    "org.freedesktop.DBus",
                    "--object-path",
                    "/org/freedesktop/DBus",
                    "--method",
                    "org.freedesktop.DBus.ListNames",
                ],
                "'org.freedesktop.DBus'",
            );
        }

        #[test]
        fn sd_bus_client_through_server_auth() {
            through_both_handshakes(
                "busctl",
                &[
                    "--address=@ADDRESS@",
                    "--no-pager",
                    "call",
                    "org.freedesktop.DBus",
                    "/org/freedesktop/DBus",
                    "org.freedesktop.DBus",
                    "ListNames",
                ],
                "\"org.freedesktop.DBus\"",
            );
        }
    }
}
