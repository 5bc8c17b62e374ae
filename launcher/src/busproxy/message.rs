//! D-Bus messages as the proxy sees them: framing, header validation, a small
//! body reader, the match-rule parser, and the few messages the proxy builds.
//!
//! The proxy judges a message by its header and then forwards the very same
//! bytes to dbus-daemon. Its reading must never differ from the daemon's, so
//! everything here follows dbus 1.14 line by line:
//!
//! - framing: `_dbus_header_have_message_untrusted()` (dbus-marshal-header.c);
//! - the header: `_dbus_header_load()` and `load_and_validate_field()`
//!   (dbus-marshal-header.c), with the generic value checks of
//!   `validate_body_helper()` (dbus-marshal-validate.c);
//! - the body: `load_message()` (dbus-message.c), which validates it against
//!   the SIGNATURE field;
//! - names: `_dbus_validate_{path,interface,member,error_name,bus_name}()`
//!   (dbus-marshal-validate.c) and `_dbus_string_validate_utf8()`;
//! - match rules: `bus_match_rule_parse()` (bus/signals.c).
//!
//! Where dbus-daemon accepts something the proxy cannot judge with certainty,
//! this module refuses it (each case is noted where it happens). It accepts
//! nothing dbus-daemon would refuse, provided the caller also checks the
//! descriptors that came with a message ([`Header::check_received_fds`]).
//! The tests hold this against a real dbus-daemon.

use std::fmt;

/// `DBUS_MAXIMUM_MESSAGE_LENGTH`. dbus-daemon clamps its configured
/// `max_message_size` to this (`_dbus_message_loader_set_max_message_size`).
pub const MAX_MESSAGE_SIZE: usize = 128 * 1024 * 1024;
/// `DBUS_MAXIMUM_ARRAY_LENGTH`.
pub const MAX_ARRAY_LENGTH: usize = 64 * 1024 * 1024;
/// `DBUS_MAXIMUM_SIGNATURE_LENGTH`.
pub const MAX_SIGNATURE_LENGTH: usize = 255;
/// `DBUS_MAXIMUM_NAME_LENGTH`, for interface, member, error and bus names.
pub const MAX_NAME_LENGTH: usize = 255;
/// `DBUS_DEFAULT_MESSAGE_UNIX_FDS`: dbus-daemon's per-message limit, which the
/// session bus configuration does not raise.
pub const DEFAULT_MAX_UNIX_FDS: u32 = 16;
/// The fixed part of every header: byte order, type, flags, version, body
/// length, serial and the length of the header fields array.
pub const FIXED_HEADER_SIZE: usize = 16;
/// `DBUS_MAXIMUM_MATCH_RULE_LENGTH`.
pub const MAX_MATCH_RULE_LENGTH: usize = 1024;
/// `DBUS_MAXIMUM_MATCH_RULE_ARG_NUMBER`.
pub const MAX_MATCH_RULE_ARG: u8 = 63;

/// `DBUS_MAXIMUM_TYPE_RECURSION_DEPTH`, per kind of container in a signature.
const MAX_TYPE_RECURSION_DEPTH: u32 = 32;
/// The depth limit of values, variants included (`validate_body_helper`).
const MAX_VALUE_DEPTH: u32 = 2 * MAX_TYPE_RECURSION_DEPTH;
/// `MAX_RULE_TOKENS` in bus/signals.c: dbus-daemon reads no more keys.
const MAX_RULE_TOKENS: usize = 16;
const PROTOCOL_VERSION: u8 = 1;

/// The caller expects no reply.
pub const FLAG_NO_REPLY_EXPECTED: u8 = 0x1;
/// The bus must not start a service to deliver the message.
pub const FLAG_NO_AUTO_START: u8 = 0x2;
/// The caller is prepared to wait for interactive authorization.
pub const FLAG_ALLOW_INTERACTIVE_AUTHORIZATION: u8 = 0x4;

/// The bus driver's name, and the sender of the messages the proxy builds.
pub const BUS_NAME: &str = "org.freedesktop.DBus";
/// The bus driver's object path.
pub const BUS_PATH: &str = "/org/freedesktop/DBus";
/// The bus driver's interface.
pub const BUS_INTERFACE: &str = "org.freedesktop.DBus";
/// The error the proxy answers refused calls with.
pub const ERROR_ACCESS_DENIED: &str = "org.freedesktop.DBus.Error.AccessDenied";

/// dbus-daemon refuses any INTERFACE or PATH that merely *starts* with these:
/// it compares `strlen(local)` bytes (`_dbus_string_equal_substring`).
const LOCAL_INTERFACE: &[u8] = b"org.freedesktop.DBus.Local";
const LOCAL_PATH: &[u8] = b"/org/freedesktop/DBus/Local";

/// Why a message, a value or a match rule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("message is truncated: {needed} bytes needed, {have} present")]
    Truncated { needed: usize, have: usize },
    #[error("message is {actual} bytes but its header describes {expected}")]
    LengthMismatch { expected: usize, actual: usize },
    #[error("bad byte-order mark {0:#04x} (expected 'l' or 'B')")]
    BadByteOrder(u8),
    #[error("unsupported protocol version {0}")]
    BadProtocolVersion(u8),
    #[error("header fields array of {len} bytes exceeds the limit of {max}")]
    FieldsArrayTooLong { len: u64, max: usize },
    #[error("body of {len} bytes exceeds the limit of {max}")]
    BodyTooLong { len: u64, max: usize },
    #[error("message of {len} bytes exceeds the limit of {max}")]
    MessageTooLong { len: u64, max: usize },
    #[error("message type 0 is invalid")]
    InvalidMessageType,
    #[error("unknown message type {0}")]
    UnknownMessageType(u8),
    #[error("serial number 0 is invalid")]
    ZeroSerial,
    #[error("header field code 0 is invalid")]
    InvalidFieldCode,
    #[error("header field {field} must hold type '{expected}', not '{found}'")]
    FieldWrongType {
        field: HeaderField,
        expected: char,
        found: String,
    },
    #[error("header field {0} appears twice")]
    DuplicateField(HeaderField),
    #[error("a {1} needs the header field {0}")]
    MissingField(HeaderField, MessageType),
    #[error("header field {field} holds an invalid {kind}")]
    InvalidFieldValue {
        field: HeaderField,
        kind: &'static str,
    },
    #[error("interfaces starting with org.freedesktop.DBus.Local are reserved")]
    LocalInterface,
    #[error("paths starting with /org/freedesktop/DBus/Local are reserved")]
    LocalPath,
    #[error("REPLY_SERIAL 0 is invalid")]
    ZeroReplySerial,
    #[error("invalid type signature: {0}")]
    InvalidSignature(&'static str),
    #[error("not enough data for a value at offset {0}")]
    NotEnoughData(usize),
    #[error("alignment padding at offset {0} is not zero")]
    PaddingNotZero(usize),
    #[error("boolean at offset {0} is neither 0 nor 1")]
    InvalidBoolean(usize),
    #[error("string at offset {0} is not valid UTF-8 or contains a NUL byte")]
    InvalidString(usize),
    #[error("string at offset {0} lacks its terminating NUL byte")]
    MissingNul(usize),
    #[error("invalid object path at offset {0}")]
    InvalidObjectPath(usize),
    #[error("length at offset {0} runs past the end of the data")]
    LengthOutOfBounds(usize),
    #[error("array at offset {0} is longer than 64 MiB")]
    ArrayTooLong(usize),
    #[error("array at offset {0} does not end where its length says")]
    ArrayLengthIncorrect(usize),
    #[error("variant at offset {0} must hold exactly one complete type")]
    InvalidVariant(usize),
    #[error("values are nested more than 64 deep")]
    NestedTooDeeply,
    #[error("{0} bytes of data follow the last value")]
    TooMuchData(usize),
    #[error("message claims {claimed} file descriptors; at most {max} are allowed")]
    TooManyUnixFds { claimed: u32, max: u32 },
    #[error("message claims {claimed} file descriptors but {received} came with it")]
    UnixFdCountMismatch { claimed: u32, received: usize },
    #[error("file descriptor index {index} is out of range: the message carries {count}")]
    FdIndexOutOfRange { index: u32, count: u32 },
    #[error("body signature is '{found}', expected '{expected}'")]
    UnexpectedSignature {
        expected: &'static str,
        found: String,
    },
    #[error("match rule is {0} bytes; the maximum is 1024")]
    MatchRuleTooLong(usize),
    #[error("invalid match rule: {0}")]
    InvalidMatchRule(&'static str),
    #[error("cannot build message: {0}")]
    Build(&'static str),
}

type Result<T> = std::result::Result<T, MessageError>;

/// The byte order of a message, from its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endian {
    /// `'l'`
    Little,
    /// `'B'`
    Big,
}

impl Endian {
    /// This machine's byte order.
    pub const NATIVE: Endian = if cfg!(target_endian = "big") {
        Endian::Big
    } else {
        Endian::Little
    };

    pub fn from_byte(byte: u8) -> Option<Endian> {
        match byte {
            b'l' => Some(Endian::Little),
            b'B' => Some(Endian::Big),
            _ => None,
        }
    }

    pub fn byte(self) -> u8 {
        match self {
            Endian::Little => b'l',
            Endian::Big => b'B',
        }
    }

    fn decode_u32(self, bytes: [u8; 4]) -> u32 {
        match self {
            Endian::Little => u32::from_le_bytes(bytes),
            Endian::Big => u32::from_be_bytes(bytes),
        }
    }

    fn encode_u32(self, value: u32) -> [u8; 4] {
        match self {
            Endian::Little => value.to_le_bytes(),
            Endian::Big => value.to_be_bytes(),
        }
    }
}

/// The four message types. dbus-daemon refuses type 0 and lets other unknown
/// types through; the proxy cannot judge those, so it refuses them too.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    MethodCall = 1,
    MethodReturn = 2,
    Error = 3,
    Signal = 4,
}

impl MessageType {
    pub fn from_byte(byte: u8) -> Result<MessageType> {
        match byte {
            0 => Err(MessageError::InvalidMessageType),
            1 => Ok(MessageType::MethodCall),
            2 => Ok(MessageType::MethodReturn),
            3 => Ok(MessageType::Error),
            4 => Ok(MessageType::Signal),
            other => Err(MessageError::UnknownMessageType(other)),
        }
    }

    /// The spelling used in match rules (`dbus_message_type_to_string`).
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::MethodCall => "method_call",
            MessageType::MethodReturn => "method_return",
            MessageType::Error => "error",
            MessageType::Signal => "signal",
        }
    }

    fn from_rule_value(value: &str) -> Option<MessageType> {
        match value {
            "method_call" => Some(MessageType::MethodCall),
            "method_return" => Some(MessageType::MethodReturn),
            "error" => Some(MessageType::Error),
            "signal" => Some(MessageType::Signal),
            _ => None,
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The header fields dbus-daemon knows (`DBUS_HEADER_FIELD_*`). Other codes
/// are skipped, as dbus-daemon skips them, once their value is validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderField {
    Path = 1,
    Interface = 2,
    Member = 3,
    ErrorName = 4,
    ReplySerial = 5,
    Destination = 6,
    Sender = 7,
    Signature = 8,
    UnixFds = 9,
}

impl HeaderField {
    pub fn from_code(code: u8) -> Option<HeaderField> {
        Some(match code {
            1 => HeaderField::Path,
            2 => HeaderField::Interface,
            3 => HeaderField::Member,
            4 => HeaderField::ErrorName,
            5 => HeaderField::ReplySerial,
            6 => HeaderField::Destination,
            7 => HeaderField::Sender,
            8 => HeaderField::Signature,
            9 => HeaderField::UnixFds,
            _ => return None,
        })
    }

    pub fn code(self) -> u8 {
        self as u8
    }

    /// The one type the field's variant may hold (`_dbus_header_field_types`).
    pub fn type_code(self) -> u8 {
        match self {
            HeaderField::Path => b'o',
            HeaderField::ReplySerial | HeaderField::UnixFds => b'u',
            HeaderField::Signature => b'g',
            _ => b's',
        }
    }

    fn name(self) -> &'static str {
        match self {
            HeaderField::Path => "PATH",
            HeaderField::Interface => "INTERFACE",
            HeaderField::Member => "MEMBER",
            HeaderField::ErrorName => "ERROR_NAME",
            HeaderField::ReplySerial => "REPLY_SERIAL",
            HeaderField::Destination => "DESTINATION",
            HeaderField::Sender => "SENDER",
            HeaderField::Signature => "SIGNATURE",
            HeaderField::UnixFds => "UNIX_FDS",
        }
    }
}

impl fmt::Display for HeaderField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Limits a connection applies on top of the protocol's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Clamped to [`MAX_MESSAGE_SIZE`], as dbus-daemon clamps its own.
    pub max_message_size: usize,
    /// The most file descriptors one message may carry.
    pub max_unix_fds: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: MAX_MESSAGE_SIZE,
            max_unix_fds: DEFAULT_MAX_UNIX_FDS,
        }
    }
}

/// A validated header, with owned copies of its fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub endian: Endian,
    pub message_type: MessageType,
    /// All flag bits as sent; unknown bits are kept, as dbus-daemon keeps them.
    pub flags: u8,
    pub serial: u32,
    pub path: Option<String>,
    pub interface: Option<String>,
    pub member: Option<String>,
    pub error_name: Option<String>,
    pub reply_serial: Option<u32>,
    pub destination: Option<String>,
    pub sender: Option<String>,
    pub signature: Option<String>,
    /// The UNIX_FDS field, 0 when absent.
    pub unix_fds: u32,
    /// Where the body starts: the header's length, padding included.
    pub body_offset: usize,
    pub body_len: usize,
}

impl Header {
    /// The body's signature; empty when the SIGNATURE field is absent.
    pub fn signature(&self) -> &str {
        self.signature.as_deref().unwrap_or("")
    }

    /// The length of the whole message.
    pub fn total_len(&self) -> usize {
        self.body_offset + self.body_len
    }

    /// A method call whose sender waits for an answer.
    pub fn expects_reply(&self) -> bool {
        self.message_type == MessageType::MethodCall && self.flags & FLAG_NO_REPLY_EXPECTED == 0
    }

    /// A reader over the body of `message`, the message this header came from.
    pub fn body<'a>(&self, message: &'a [u8]) -> Result<BodyReader<'a>> {
        if message.len() != self.total_len() {
            return Err(MessageError::LengthMismatch {
                expected: self.total_len(),
                actual: message.len(),
            });
        }
        Ok(BodyReader {
            data: message,
            pos: self.body_offset,
            end: message.len(),
            endian: self.endian,
        })
    }

    /// The proxy takes a message's file descriptors from the same `recvmsg`
    /// as its first byte, and the header must account for exactly those.
    /// (libdbus would let surplus descriptors wait for the next message; the
    /// proxy does not.)
    pub fn check_received_fds(&self, received: usize) -> Result<()> {
        if received == self.unix_fds as usize {
            Ok(())
        } else {
            Err(MessageError::UnixFdCountMismatch {
                claimed: self.unix_fds,
                received,
            })
        }
    }
}

fn read_u32(data: &[u8], pos: usize, endian: Endian) -> Option<u32> {
    let bytes = data.get(pos..pos.checked_add(4)?)?;
    Some(endian.decode_u32(bytes.try_into().ok()?))
}

fn align_up(pos: usize, align: usize) -> Option<usize> {
    debug_assert!(align.is_power_of_two());
    Some(pos.checked_add(align - 1)? & !(align - 1))
}

/// The total length of the message that starts with `prefix`, or `None` while
/// fewer than [`FIXED_HEADER_SIZE`] bytes are known.
///
/// Checks what `_dbus_header_have_message_untrusted()` checks (byte order, the
/// lengths against the maximum message size) plus the protocol version, which
/// dbus-daemon checks once the message is complete.
pub fn message_length(prefix: &[u8]) -> Result<Option<usize>> {
    message_length_limited(prefix, MAX_MESSAGE_SIZE)
}

/// [`message_length`] with a lower maximum message size.
pub fn message_length_limited(prefix: &[u8], max_message_size: usize) -> Result<Option<usize>> {
    let max = max_message_size.min(MAX_MESSAGE_SIZE);
    let Some(fixed) = prefix.get(..FIXED_HEADER_SIZE) else {
        return Ok(None);
    };
    let endian = Endian::from_byte(fixed[0]).ok_or(MessageError::BadByteOrder(fixed[0]))?;
    if fixed[3] != PROTOCOL_VERSION {
        return Err(MessageError::BadProtocolVersion(fixed[3]));
    }
    let body_len = u64::from(read_u32(fixed, 4, endian).unwrap_or(u32::MAX));
    let fields_len = u64::from(read_u32(fixed, 12, endian).unwrap_or(u32::MAX));
    let max64 = max as u64;
    if fields_len > max64 {
        return Err(MessageError::FieldsArrayTooLong {
            len: fields_len,
            max,
        });
    }
    if body_len > max64 {
        return Err(MessageError::BodyTooLong { len: body_len, max });
    }
    // Both lengths fit in 32 bits, so none of this can overflow a u64.
    let header_len = (FIXED_HEADER_SIZE as u64 + fields_len + 7) & !7;
    let total = header_len + body_len;
    if total > max64 {
        return Err(MessageError::MessageTooLong { len: total, max });
    }
    Ok(Some(total as usize))
}

/// Validates a complete message (exactly one) and returns its header.
pub fn parse_header(message: &[u8]) -> Result<Header> {
    parse_header_limited(message, &Limits::default())
}

/// [`parse_header`] under the given limits.
pub fn parse_header_limited(message: &[u8], limits: &Limits) -> Result<Header> {
    let total = message_length_limited(message, limits.max_message_size)?.ok_or(
        MessageError::Truncated {
            needed: FIXED_HEADER_SIZE,
            have: message.len(),
        },
    )?;
    if message.len() < total {
        return Err(MessageError::Truncated {
            needed: total,
            have: message.len(),
        });
    }
    if message.len() > total {
        return Err(MessageError::LengthMismatch {
            expected: total,
            actual: message.len(),
        });
    }
    let truncated = || MessageError::Truncated {
        needed: FIXED_HEADER_SIZE,
        have: message.len(),
    };
    let endian = Endian::from_byte(message[0]).ok_or(MessageError::BadByteOrder(message[0]))?;
    let message_type = MessageType::from_byte(message[1])?;
    let flags = message[2];
    let body_len = read_u32(message, 4, endian).ok_or_else(truncated)? as usize;
    let serial = read_u32(message, 8, endian).ok_or_else(truncated)?;
    let fields_len = read_u32(message, 12, endian).ok_or_else(truncated)? as usize;
    if serial == 0 {
        return Err(MessageError::ZeroSerial);
    }

    let fields_end = FIXED_HEADER_SIZE + fields_len;
    let body_offset = total - body_len;
    let values = Values {
        data: message,
        endian,
        unix_fds: None,
    };
    let mut fields = FieldSet::default();
    // The fields array, `a(yv)`. Its length was checked against the message
    // size above; the 64 MiB array limit applies as to any array.
    if fields_len > MAX_ARRAY_LENGTH {
        return Err(MessageError::ArrayTooLong(12));
    }
    let field_sig = Sig::new(b"(yv)")?;
    let mut pos = FIXED_HEADER_SIZE;
    while pos < fields_end {
        // Depths as in dbus-daemon, which validates the header as a body of
        // signature `yyyyuua(yv)`: elements at 1, their members at 2, the
        // variant's content at 3.
        let (_, next) = values.one(&field_sig, 0, pos, fields_end, 1)?;
        let start = align_up(pos, 8).ok_or(MessageError::NotEnoughData(pos))?;
        fields.load(&values, start)?;
        pos = next;
    }
    if pos != fields_end {
        return Err(MessageError::ArrayLengthIncorrect(12));
    }
    if let Some(at) = message
        .get(fields_end..body_offset)
        .ok_or(MessageError::NotEnoughData(fields_end))?
        .iter()
        .position(|&b| b != 0)
    {
        return Err(MessageError::PaddingNotZero(fields_end + at));
    }

    fields.check_mandatory(message_type)?;
    let unix_fds = fields.unix_fds.unwrap_or(0);
    if unix_fds > limits.max_unix_fds {
        return Err(MessageError::TooManyUnixFds {
            claimed: unix_fds,
            max: limits.max_unix_fds,
        });
    }

    // The body, against the SIGNATURE field (empty when absent). Beyond
    // dbus-daemon, every `h` must index one of the message's descriptors: the
    // portal acts on descriptors, so a dangling index is refused here.
    let signature = Sig::new(fields.signature.as_deref().unwrap_or("").as_bytes())?;
    let body_values = Values {
        unix_fds: Some(unix_fds),
        ..values
    };
    let mut sig_pos = 0;
    let mut pos = body_offset;
    while sig_pos < signature.len() {
        (sig_pos, pos) = body_values.one(&signature, sig_pos, pos, total, 0)?;
    }
    if pos != total {
        return Err(MessageError::TooMuchData(total - pos));
    }

    Ok(Header {
        endian,
        message_type,
        flags,
        serial,
        path: fields.path,
        interface: fields.interface,
        member: fields.member,
        error_name: fields.error_name,
        reply_serial: fields.reply_serial,
        destination: fields.destination,
        sender: fields.sender,
        signature: fields.signature,
        unix_fds,
        body_offset,
        body_len,
    })
}

#[derive(Default)]
struct FieldSet {
    path: Option<String>,
    interface: Option<String>,
    member: Option<String>,
    error_name: Option<String>,
    reply_serial: Option<u32>,
    destination: Option<String>,
    sender: Option<String>,
    signature: Option<String>,
    unix_fds: Option<u32>,
}

impl FieldSet {
    /// One `(yv)` element at `start`, already validated as a value.
    fn load(&mut self, values: &Values<'_>, start: usize) -> Result<()> {
        let data = values.data;
        let code = *data.get(start).ok_or(MessageError::NotEnoughData(start))?;
        if code == 0 {
            return Err(MessageError::InvalidFieldCode);
        }
        let Some(field) = HeaderField::from_code(code) else {
            return Ok(());
        };
        let (sig, value_pos) = values
            .variant_parts(start + 1)
            .ok_or(MessageError::NotEnoughData(start))?;
        if sig != [field.type_code()] {
            return Err(MessageError::FieldWrongType {
                field,
                expected: char::from(field.type_code()),
                found: String::from_utf8_lossy(sig).into_owned(),
            });
        }
        let duplicate = match field {
            HeaderField::Path => self.path.is_some(),
            HeaderField::Interface => self.interface.is_some(),
            HeaderField::Member => self.member.is_some(),
            HeaderField::ErrorName => self.error_name.is_some(),
            HeaderField::ReplySerial => self.reply_serial.is_some(),
            HeaderField::Destination => self.destination.is_some(),
            HeaderField::Sender => self.sender.is_some(),
            HeaderField::Signature => self.signature.is_some(),
            HeaderField::UnixFds => self.unix_fds.is_some(),
        };
        if duplicate {
            return Err(MessageError::DuplicateField(field));
        }

        if field.type_code() == b'u' {
            let value = read_u32(data, value_pos, values.endian)
                .ok_or(MessageError::NotEnoughData(value_pos))?;
            if field == HeaderField::ReplySerial {
                if value == 0 {
                    return Err(MessageError::ZeroReplySerial);
                }
                self.reply_serial = Some(value);
            } else {
                self.unix_fds = Some(value);
            }
            return Ok(());
        }

        let bytes = values
            .string_at(field.type_code(), value_pos)
            .ok_or(MessageError::NotEnoughData(value_pos))?;
        let invalid = |kind| MessageError::InvalidFieldValue { field, kind };
        // Object paths and signatures were validated as values of their type.
        match field {
            HeaderField::Path if bytes.starts_with(LOCAL_PATH) => {
                return Err(MessageError::LocalPath)
            }
            HeaderField::Interface if bytes.starts_with(LOCAL_INTERFACE) => {
                return Err(MessageError::LocalInterface)
            }
            HeaderField::Interface if !is_valid_interface(bytes) => {
                return Err(invalid("interface name"))
            }
            HeaderField::Member if !is_valid_member(bytes) => return Err(invalid("member name")),
            HeaderField::ErrorName if !is_valid_error_name(bytes) => {
                return Err(invalid("error name"))
            }
            HeaderField::Destination | HeaderField::Sender if !is_valid_bus_name(bytes) => {
                return Err(invalid("bus name"))
            }
            _ => {}
        }
        let text = String::from_utf8(bytes.to_vec()).map_err(|_| invalid("string"))?;
        let slot = match field {
            HeaderField::Path => &mut self.path,
            HeaderField::Interface => &mut self.interface,
            HeaderField::Member => &mut self.member,
            HeaderField::ErrorName => &mut self.error_name,
            HeaderField::Destination => &mut self.destination,
            HeaderField::Sender => &mut self.sender,
            HeaderField::Signature => &mut self.signature,
            HeaderField::ReplySerial | HeaderField::UnixFds => return Err(invalid("string")),
        };
        *slot = Some(text);
        Ok(())
    }

    /// `check_mandatory_fields()`.
    fn check_mandatory(&self, message_type: MessageType) -> Result<()> {
        let missing = |field| Err(MessageError::MissingField(field, message_type));
        match message_type {
            MessageType::Signal if self.interface.is_none() => missing(HeaderField::Interface),
            MessageType::Signal | MessageType::MethodCall if self.path.is_none() => {
                missing(HeaderField::Path)
            }
            MessageType::Signal | MessageType::MethodCall if self.member.is_none() => {
                missing(HeaderField::Member)
            }
            MessageType::Error if self.error_name.is_none() => missing(HeaderField::ErrorName),
            MessageType::Error | MessageType::MethodReturn if self.reply_serial.is_none() => {
                missing(HeaderField::ReplySerial)
            }
            _ => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------
// Signatures and values
// ---------------------------------------------------------------------------

fn is_basic_type(code: u8) -> bool {
    matches!(
        code,
        b'y' | b'b' | b'n' | b'q' | b'i' | b'u' | b'x' | b't' | b'd' | b'h' | b's' | b'o' | b'g'
    )
}

fn fixed_size(code: u8) -> Option<usize> {
    match code {
        b'y' => Some(1),
        b'n' | b'q' => Some(2),
        b'b' | b'i' | b'u' | b'h' => Some(4),
        b'x' | b't' | b'd' => Some(8),
        _ => None,
    }
}

fn alignment_of(code: u8) -> usize {
    match code {
        b'y' | b'g' | b'v' => 1,
        b'n' | b'q' => 2,
        b'x' | b't' | b'd' | b'(' | b'{' => 8,
        _ => 4,
    }
}

/// Validates a type signature as `_dbus_validate_signature_with_reason()`
/// does: at most 255 bytes; known type codes; at most 32 nested arrays,
/// structs and dict entries each; no empty struct; dict entries only as array
/// elements, with a basic key and exactly two members; brackets closed in
/// the order they were opened, so `(a{s)i}` is refused (the fix for
/// CVE-2022-42010, in dbus 1.14.4).
pub fn validate_signature(sig: &[u8]) -> Result<()> {
    use MessageError::InvalidSignature as Bad;
    if sig.len() > MAX_SIGNATURE_LENGTH {
        return Err(Bad("longer than 255 bytes"));
    }
    let mut array_depth = 0u32;
    let mut struct_depth = 0u32;
    let mut dict_depth = 0u32;
    // Open containers and how many complete types each holds so far.
    let mut open: Vec<(u8, u32)> = Vec::new();
    let mut last = 0u8;
    for (i, &code) in sig.iter().enumerate() {
        match code {
            b'v' => {}
            c if is_basic_type(c) => {}
            b'a' => {
                array_depth += 1;
                if array_depth > MAX_TYPE_RECURSION_DEPTH {
                    return Err(Bad("more than 32 nested arrays"));
                }
            }
            b'(' => {
                struct_depth += 1;
                if struct_depth > MAX_TYPE_RECURSION_DEPTH {
                    return Err(Bad("more than 32 nested structs"));
                }
                open.push((b'(', 0));
            }
            b')' => {
                if last == b'(' {
                    return Err(Bad("struct without members"));
                }
                match open.pop() {
                    Some((b'(', _)) => struct_depth = struct_depth.saturating_sub(1),
                    _ => return Err(Bad("')' without a matching '('")),
                }
            }
            b'{' => {
                if last != b'a' {
                    return Err(Bad("dict entry outside an array"));
                }
                dict_depth += 1;
                if dict_depth > MAX_TYPE_RECURSION_DEPTH {
                    return Err(Bad("more than 32 nested dict entries"));
                }
                open.push((b'{', 0));
            }
            b'}' => match open.pop() {
                Some((b'{', 2)) => dict_depth = dict_depth.saturating_sub(1),
                Some((b'{', _)) => return Err(Bad("dict entry without exactly two members")),
                _ => return Err(Bad("'}' without a matching '{'")),
            },
            _ => return Err(Bad("unknown type code")),
        }
        if !matches!(code, b'a' | b'(' | b'{') {
            if let Some(top) = open.last_mut() {
                top.1 += 1;
            }
        }
        if array_depth > 0 {
            if code == b'a' {
                if matches!(sig.get(i + 1), Some(b')' | b'}')) {
                    return Err(Bad("array without element type"));
                }
            } else {
                array_depth = 0;
            }
        }
        if last == b'{' && !is_basic_type(code) {
            return Err(Bad("dict entry key must be a basic type"));
        }
        last = code;
    }
    if array_depth > 0 {
        return Err(Bad("array without element type"));
    }
    if !open.is_empty() {
        return Err(Bad("unclosed struct or dict entry"));
    }
    Ok(())
}

/// A valid signature, with where the complete type starting at each position
/// ends, so that validating each element of a large array costs no walk over
/// its type.
struct Sig<'s> {
    codes: &'s [u8],
    ends: [u8; MAX_SIGNATURE_LENGTH + 1],
}

impl<'s> Sig<'s> {
    /// `codes` must already have passed [`validate_signature`].
    fn new(codes: &'s [u8]) -> Result<Sig<'s>> {
        let mut sig = Sig {
            codes,
            ends: [0; MAX_SIGNATURE_LENGTH + 1],
        };
        let mut pos = 0;
        while pos < codes.len() {
            pos = sig
                .mark(pos)
                .ok_or(MessageError::InvalidSignature("malformed"))?;
        }
        Ok(sig)
    }

    /// Records the end of the type at `pos`; recursion is bounded by the
    /// signature's length.
    fn mark(&mut self, pos: usize) -> Option<usize> {
        let end = match *self.codes.get(pos)? {
            b'a' => self.mark(pos + 1)?,
            open @ (b'(' | b'{') => {
                let close = if open == b'(' { b')' } else { b'}' };
                let mut p = pos + 1;
                while *self.codes.get(p)? != close {
                    p = self.mark(p)?;
                }
                p + 1
            }
            b')' | b'}' => return None,
            _ => pos + 1,
        };
        *self.ends.get_mut(pos)? = u8::try_from(end).ok()?;
        Some(end)
    }

    fn code(&self, pos: usize) -> Result<u8> {
        self.codes
            .get(pos)
            .copied()
            .ok_or(MessageError::InvalidSignature("truncated"))
    }

    fn end_of(&self, pos: usize) -> Result<usize> {
        match self.ends.get(pos) {
            Some(&end) if end != 0 => Ok(usize::from(end)),
            _ => Err(MessageError::InvalidSignature("truncated")),
        }
    }

    fn len(&self) -> usize {
        self.codes.len()
    }
}

/// Marshalled data under validation. Offsets are from the message start,
/// which is where alignment is counted from.
#[derive(Clone, Copy)]
struct Values<'a> {
    data: &'a [u8],
    endian: Endian,
    /// When set, every `h` must be below this count.
    unix_fds: Option<u32>,
}

impl<'a> Values<'a> {
    /// Skips zero padding up to `align`, which must not pass `end`.
    fn align(&self, pos: usize, align: usize, end: usize) -> Result<usize> {
        let aligned = align_up(pos, align).ok_or(MessageError::NotEnoughData(pos))?;
        if aligned > end {
            return Err(MessageError::NotEnoughData(pos));
        }
        let padding = self
            .data
            .get(pos..aligned)
            .ok_or(MessageError::NotEnoughData(pos))?;
        match padding.iter().position(|&b| b != 0) {
            Some(at) => Err(MessageError::PaddingNotZero(pos + at)),
            None => Ok(aligned),
        }
    }

    fn u32_at(&self, pos: usize, end: usize) -> Result<u32> {
        if pos.checked_add(4).is_none_or(|stop| stop > end) {
            return Err(MessageError::NotEnoughData(pos));
        }
        read_u32(self.data, pos, self.endian).ok_or(MessageError::NotEnoughData(pos))
    }

    fn check_u32_value(&self, code: u8, pos: usize) -> Result<()> {
        let value =
            read_u32(self.data, pos, self.endian).ok_or(MessageError::NotEnoughData(pos))?;
        match code {
            b'b' if value > 1 => Err(MessageError::InvalidBoolean(pos)),
            b'h' => match self.unix_fds {
                Some(count) if value >= count => Err(MessageError::FdIndexOutOfRange {
                    index: value,
                    count,
                }),
                _ => Ok(()),
            },
            _ => Ok(()),
        }
    }

    /// A signature value (`g`, or a variant's type): length byte, bytes, NUL.
    /// Returns the signature and the offset after it.
    fn signature_at(&self, pos: usize, end: usize) -> Result<(&'a [u8], usize)> {
        if pos >= end {
            return Err(MessageError::NotEnoughData(pos));
        }
        let len = usize::from(*self.data.get(pos).ok_or(MessageError::NotEnoughData(pos))?);
        let start = pos + 1;
        if len + 1 > end.saturating_sub(start) {
            return Err(MessageError::LengthOutOfBounds(pos));
        }
        let sig = self
            .data
            .get(start..start + len)
            .ok_or(MessageError::LengthOutOfBounds(pos))?;
        validate_signature(sig)?;
        if self.data.get(start + len) != Some(&0) {
            return Err(MessageError::MissingNul(pos));
        }
        Ok((sig, start + len + 1))
    }

    /// Validates the value of the single complete type at `sig[sig_pos..]`,
    /// found at `pos` and ending by `end`, as `validate_body_helper()` does.
    /// Returns the positions after the type and after the value.
    fn one(
        &self,
        sig: &Sig<'_>,
        sig_pos: usize,
        pos: usize,
        end: usize,
        depth: u32,
    ) -> Result<(usize, usize)> {
        if depth > MAX_VALUE_DEPTH {
            return Err(MessageError::NestedTooDeeply);
        }
        let code = sig.code(sig_pos)?;
        if pos >= end {
            return Err(MessageError::NotEnoughData(pos));
        }
        match code {
            b'y' => Ok((sig_pos + 1, pos + 1)),
            b'b' | b'n' | b'q' | b'i' | b'u' | b'h' | b'x' | b't' | b'd' => {
                let size = fixed_size(code).unwrap_or(4);
                let at = self.align(pos, size, end)?;
                if at + size > end {
                    return Err(MessageError::NotEnoughData(at));
                }
                self.check_u32_value(code, at)?;
                Ok((sig_pos + 1, at + size))
            }
            b's' | b'o' => {
                let at = self.align(pos, 4, end)?;
                let len = self.u32_at(at, end)? as usize;
                let start = at + 4;
                if len > end - start {
                    return Err(MessageError::LengthOutOfBounds(at));
                }
                let bytes = self
                    .data
                    .get(start..start + len)
                    .ok_or(MessageError::LengthOutOfBounds(at))?;
                if code == b'o' {
                    if !is_valid_object_path(bytes) {
                        return Err(MessageError::InvalidObjectPath(at));
                    }
                } else if !is_valid_string(bytes) {
                    return Err(MessageError::InvalidString(at));
                }
                let nul = start + len;
                if nul >= end {
                    return Err(MessageError::NotEnoughData(nul));
                }
                if self.data.get(nul) != Some(&0) {
                    return Err(MessageError::MissingNul(at));
                }
                Ok((sig_pos + 1, nul + 1))
            }
            b'g' => {
                let (_, next) = self.signature_at(pos, end)?;
                Ok((sig_pos + 1, next))
            }
            b'v' => {
                let (inner, after) = self.signature_at(pos, end)?;
                let first = *inner.first().ok_or(MessageError::InvalidVariant(pos))?;
                let at = self.align(after, alignment_of(first), end)?;
                let inner = Sig::new(inner)?;
                let (consumed, next) = self.one(&inner, 0, at, end, depth + 1)?;
                if consumed != inner.len() {
                    return Err(MessageError::InvalidVariant(pos));
                }
                Ok((sig_pos + 1, next))
            }
            b'a' => {
                let at = self.align(pos, 4, end)?;
                let len = self.u32_at(at, end)? as usize;
                let elem_pos = sig_pos + 1;
                let elem = sig.code(elem_pos)?;
                let sig_next = sig.end_of(elem_pos)?;
                let start = self.align(at + 4, alignment_of(elem), end)?;
                if len > end - start {
                    return Err(MessageError::LengthOutOfBounds(at));
                }
                if len == 0 {
                    return Ok((sig_next, start));
                }
                if len > MAX_ARRAY_LENGTH {
                    return Err(MessageError::ArrayTooLong(at));
                }
                let array_end = start + len;
                let mut p = start;
                match fixed_size(elem) {
                    // A whole number of fixed-size elements (the fix for
                    // CVE-2022-42011); dbus-daemon looks inside only at
                    // booleans, the proxy at descriptor indices too.
                    Some(size) => {
                        if !len.is_multiple_of(size) {
                            return Err(MessageError::ArrayLengthIncorrect(at));
                        }
                        if matches!(elem, b'b' | b'h') {
                            while p < array_end {
                                self.check_u32_value(elem, p)?;
                                p += size;
                            }
                        } else {
                            p = array_end;
                        }
                    }
                    None => {
                        while p < array_end {
                            (_, p) = self.one(sig, elem_pos, p, array_end, depth + 1)?;
                        }
                    }
                }
                if p != array_end {
                    return Err(MessageError::ArrayLengthIncorrect(at));
                }
                Ok((sig_next, p))
            }
            b'(' | b'{' => {
                let close = if code == b'(' { b')' } else { b'}' };
                let mut p = self.align(pos, 8, end)?;
                let mut sp = sig_pos + 1;
                while sig.code(sp)? != close {
                    (sp, p) = self.one(sig, sp, p, end, depth + 1)?;
                }
                Ok((sp + 1, p))
            }
            _ => Err(MessageError::InvalidSignature("unknown type code")),
        }
    }

    /// The signature and value offset of an already validated variant.
    fn variant_parts(&self, pos: usize) -> Option<(&'a [u8], usize)> {
        let len = usize::from(*self.data.get(pos)?);
        let sig = self.data.get(pos + 1..pos + 1 + len)?;
        let value_pos = align_up(pos + 2 + len, alignment_of(*sig.first()?))?;
        Some((sig, value_pos))
    }

    /// The bytes of an already validated `s`, `o` or `g` at its aligned offset.
    fn string_at(&self, code: u8, pos: usize) -> Option<&'a [u8]> {
        let (len, start) = if code == b'g' {
            (usize::from(*self.data.get(pos)?), pos + 1)
        } else {
            (read_u32(self.data, pos, self.endian)? as usize, pos + 4)
        };
        self.data.get(start..start.checked_add(len)?)
    }
}

// ---------------------------------------------------------------------------
// Names (dbus-marshal-validate.c)
// ---------------------------------------------------------------------------

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

fn is_bus_name_start(c: u8) -> bool {
    is_name_start(c) || c == b'-'
}

fn is_bus_name_char(c: u8) -> bool {
    is_name_char(c) || c == b'-'
}

/// Valid UTF-8 without NUL bytes (`_dbus_string_validate_utf8`, which, like
/// Rust, refuses overlong forms, surrogates and code points past U+10FFFF).
pub fn is_valid_string(bytes: &[u8]) -> bool {
    !bytes.contains(&0) && std::str::from_utf8(bytes).is_ok()
}

/// `/`, or `/`-separated non-empty elements of `[A-Za-z0-9_]`, with no
/// trailing slash (`_dbus_validate_path`).
pub fn is_valid_object_path(path: &[u8]) -> bool {
    match path {
        [b'/'] => true,
        [b'/', rest @ ..] => rest
            .split(|&c| c == b'/')
            .all(|element| !element.is_empty() && element.iter().all(|&c| is_name_char(c))),
        _ => false,
    }
}

/// At least two `.`-separated elements of `[A-Za-z0-9_]` not starting with a
/// digit, at most 255 bytes (`_dbus_validate_interface`).
pub fn is_valid_interface(name: &[u8]) -> bool {
    if name.is_empty() || name.len() > MAX_NAME_LENGTH {
        return false;
    }
    let mut elements = 0;
    for element in name.split(|&c| c == b'.') {
        match element.split_first() {
            Some((&first, rest))
                if is_name_start(first) && rest.iter().all(|&c| is_name_char(c)) =>
            {
                elements += 1
            }
            _ => return false,
        }
    }
    elements >= 2
}

/// Error names follow the interface-name rules (`_dbus_validate_error_name`).
pub fn is_valid_error_name(name: &[u8]) -> bool {
    is_valid_interface(name)
}

/// One element of `[A-Za-z0-9_]` not starting with a digit, at most 255
/// bytes (`_dbus_validate_member`).
pub fn is_valid_member(name: &[u8]) -> bool {
    match name.split_first() {
        Some((&first, rest)) => {
            name.len() <= MAX_NAME_LENGTH
                && is_name_start(first)
                && rest.iter().all(|&c| is_name_char(c))
        }
        None => false,
    }
}

/// A unique (`:1.23`) or well-known bus name, exactly as
/// `_dbus_validate_bus_name` reads it. Note that it accepts unique names the
/// specification does not (`:`, `:abc`): they name no connection, so the
/// daemon answers ServiceUnknown.
pub fn is_valid_bus_name(name: &[u8]) -> bool {
    validate_bus_name(name, false)
}

/// A prefix of a well-known name, possibly without a dot, as `arg0namespace`
/// takes (`_dbus_validate_bus_namespace`).
pub fn is_valid_bus_namespace(name: &[u8]) -> bool {
    validate_bus_name(name, true)
}

fn validate_bus_name(name: &[u8], is_namespace: bool) -> bool {
    if name.is_empty() || name.len() > MAX_NAME_LENGTH {
        return false;
    }
    if let Some(rest) = name.strip_prefix(b":") {
        // Every '.' must be followed by a name character; nothing else.
        let mut i = 0;
        while i < rest.len() {
            if rest[i] == b'.' {
                match rest.get(i + 1) {
                    Some(&c) if is_bus_name_char(c) => i += 1,
                    _ => return false,
                }
            } else if !is_bus_name_char(rest[i]) {
                return false;
            }
            i += 1;
        }
        return true;
    }
    let mut elements = 0;
    for element in name.split(|&c| c == b'.') {
        match element.split_first() {
            Some((&first, rest))
                if is_bus_name_start(first) && rest.iter().all(|&c| is_bus_name_char(c)) =>
            {
                elements += 1
            }
            _ => return false,
        }
    }
    is_namespace || elements >= 2
}

// ---------------------------------------------------------------------------
// Reading bodies
// ---------------------------------------------------------------------------

/// Reads basic values one after the other, validating each exactly as the
/// header parser (and dbus-daemon) does.
#[derive(Clone, Debug)]
pub struct BodyReader<'a> {
    /// The whole message: alignment counts from its start.
    data: &'a [u8],
    pos: usize,
    end: usize,
    endian: Endian,
}

impl<'a> BodyReader<'a> {
    /// Reads `data[start..end]`; alignment counts from `data[0]`.
    pub fn new(data: &'a [u8], start: usize, end: usize, endian: Endian) -> Result<Self> {
        if start > end || end > data.len() {
            return Err(MessageError::NotEnoughData(start));
        }
        Ok(BodyReader {
            data,
            pos: start,
            end,
            endian,
        })
    }

    fn values(&self) -> Values<'a> {
        Values {
            data: self.data,
            endian: self.endian,
            unix_fds: None,
        }
    }

    /// Validates one value of `sig` and returns where its data starts.
    fn take(&mut self, sig: &[u8]) -> Result<usize> {
        let (_, next) = self
            .values()
            .one(&Sig::new(sig)?, 0, self.pos, self.end, 0)?;
        let first = *sig.first().ok_or(MessageError::InvalidSignature("empty"))?;
        let at =
            align_up(self.pos, alignment_of(first)).ok_or(MessageError::NotEnoughData(self.pos))?;
        self.pos = next;
        Ok(at)
    }

    fn take_u32(&mut self, code: u8) -> Result<u32> {
        let at = self.take(&[code])?;
        read_u32(self.data, at, self.endian).ok_or(MessageError::NotEnoughData(at))
    }

    fn take_str(&mut self, code: u8) -> Result<&'a str> {
        let at = self.take(&[code])?;
        let bytes = self
            .values()
            .string_at(code, at)
            .ok_or(MessageError::NotEnoughData(at))?;
        std::str::from_utf8(bytes).map_err(|_| MessageError::InvalidString(at))
    }

    pub fn read_byte(&mut self) -> Result<u8> {
        let at = self.take(b"y")?;
        self.data
            .get(at)
            .copied()
            .ok_or(MessageError::NotEnoughData(at))
    }

    pub fn read_bool(&mut self) -> Result<bool> {
        Ok(self.take_u32(b'b')? == 1)
    }

    pub fn read_u32(&mut self) -> Result<u32> {
        self.take_u32(b'u')
    }

    pub fn read_i32(&mut self) -> Result<i32> {
        Ok(self.take_u32(b'i')? as i32)
    }

    pub fn read_str(&mut self) -> Result<&'a str> {
        self.take_str(b's')
    }

    pub fn read_object_path(&mut self) -> Result<&'a str> {
        self.take_str(b'o')
    }

    pub fn read_signature(&mut self) -> Result<&'a str> {
        self.take_str(b'g')
    }

    /// An `as`. The result is bounded by the message size.
    pub fn read_string_array(&mut self) -> Result<Vec<&'a str>> {
        let at = self.take(b"as")?;
        let len = read_u32(self.data, at, self.endian).ok_or(MessageError::NotEnoughData(at))?;
        let array_end = at + 4 + len as usize;
        let mut items = BodyReader {
            data: self.data,
            pos: at + 4,
            end: array_end,
            endian: self.endian,
        };
        let mut out = Vec::new();
        while items.pos < array_end {
            out.push(items.read_str()?);
        }
        Ok(out)
    }

    /// Bytes left to read.
    pub fn remaining(&self) -> usize {
        self.end - self.pos
    }

    /// Fails if anything is left unread.
    pub fn finish(self) -> Result<()> {
        match self.remaining() {
            0 => Ok(()),
            left => Err(MessageError::TooMuchData(left)),
        }
    }
}

fn expect_signature(header: &Header, expected: &'static str) -> Result<()> {
    // dbus-daemon's driver refuses a call whose signature differs in any way
    // (`dbus_message_has_signature` in bus/driver.c).
    if header.signature() == expected {
        Ok(())
    } else {
        Err(MessageError::UnexpectedSignature {
            expected,
            found: header.signature().to_owned(),
        })
    }
}

/// The single string argument of a call such as `AddMatch`, `RemoveMatch`,
/// `GetNameOwner`, `NameHasOwner` or `ReleaseName`.
pub fn string_argument<'a>(message: &'a [u8], header: &Header) -> Result<&'a str> {
    expect_signature(header, "s")?;
    let mut body = header.body(message)?;
    let value = body.read_str()?;
    body.finish()?;
    Ok(value)
}

/// The `(name, flags)` arguments of `RequestName`.
pub fn request_name_arguments<'a>(message: &'a [u8], header: &Header) -> Result<(&'a str, u32)> {
    expect_signature(header, "su")?;
    let mut body = header.body(message)?;
    let name = body.read_str()?;
    let flags = body.read_u32()?;
    body.finish()?;
    Ok((name, flags))
}

/// The rule an `AddMatch` or `RemoveMatch` call carries, parsed.
pub fn match_rule_argument(message: &[u8], header: &Header) -> Result<MatchRule> {
    parse_match_rule(string_argument(message, header)?)
}

// ---------------------------------------------------------------------------
// Match rules (bus/signals.c)
// ---------------------------------------------------------------------------

/// `path=` or `path_namespace=`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathMatch {
    Path(String),
    Namespace(String),
}

/// `argN=`, `argNpath=` or `arg0namespace=`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ArgMatch {
    String(String),
    Path(String),
    Namespace(String),
}

/// A match rule as dbus-daemon reads it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MatchRule {
    pub message_type: Option<MessageType>,
    pub sender: Option<String>,
    pub interface: Option<String>,
    pub member: Option<String>,
    pub path: Option<PathMatch>,
    pub destination: Option<String>,
    /// The last `eavesdrop=` value, as dbus-daemon keeps it.
    pub eavesdrop: bool,
    /// Sorted by argument number.
    pub args: Vec<(u8, ArgMatch)>,
}

fn is_rule_space(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\n' | b'\r')
}

/// Splits a rule into `(key, value)` pairs as `tokenize_rule()`, `find_key()`
/// and `find_value()` do:
/// - whitespace around a key is skipped, but not after the `=`;
/// - outside quotes, `,` ends the value and `\'` is a literal apostrophe;
///   any other backslash stays a backslash;
/// - inside `'...'` everything is literal, and quoted and unquoted runs join
///   (`tr'ue'` is `true`).
///
/// dbus-daemon silently ignores the rest of a rule after 16 keys, and after
/// an empty key (`=x`); a proxy that read on would judge a different rule, so
/// both are refused.
fn tokenize_rule(text: &str) -> Result<Vec<(String, String)>> {
    let b = text.as_bytes();
    if b.len() > MAX_MATCH_RULE_LENGTH {
        return Err(MessageError::MatchRuleTooLong(b.len()));
    }
    if b.contains(&0) {
        return Err(MessageError::InvalidMatchRule("NUL byte"));
    }
    let to_string = |bytes: Vec<u8>| {
        String::from_utf8(bytes).map_err(|_| MessageError::InvalidMatchRule("invalid UTF-8"))
    };
    let mut tokens = Vec::new();
    let mut pos = 0;
    let mut slots = 0;
    while slots < MAX_RULE_TOKENS && pos < b.len() {
        slots += 1;
        let mut p = pos;
        while p < b.len() && is_rule_space(b[p]) {
            p += 1;
        }
        let key_start = p;
        while p < b.len() && b[p] != b'=' && !is_rule_space(b[p]) {
            p += 1;
        }
        let key_end = p;
        while p < b.len() && is_rule_space(b[p]) {
            p += 1;
        }
        if key_start == key_end {
            if p < b.len() {
                return Err(MessageError::InvalidMatchRule(
                    "empty key (dbus-daemon would ignore the rest of the rule)",
                ));
            }
            pos = p;
            continue;
        }
        if b.get(p) != Some(&b'=') {
            return Err(MessageError::InvalidMatchRule("key without '='"));
        }
        p += 1;

        let mut value = Vec::new();
        let mut state = 0u8;
        while p < b.len() {
            let c = b[p];
            p += 1;
            match state {
                0 => match c {
                    b'\'' => state = b'\'',
                    b'\\' => state = b'\\',
                    b',' => break,
                    _ => value.push(c),
                },
                b'\\' => {
                    if c != b'\'' {
                        value.push(b'\\');
                    }
                    value.push(c);
                    state = 0;
                }
                _ => {
                    if c == b'\'' {
                        state = 0;
                    } else {
                        value.push(c);
                    }
                }
            }
        }
        match state {
            b'\\' => value.push(b'\\'),
            b'\'' => return Err(MessageError::InvalidMatchRule("unbalanced quotation marks")),
            _ => {}
        }
        tokens.push((
            to_string(b[key_start..key_end].to_vec())?,
            to_string(value)?,
        ));
        pos = p;
    }
    if b[pos..].iter().any(|&c| !is_rule_space(c)) {
        return Err(MessageError::InvalidMatchRule(
            "more than 16 keys (dbus-daemon would ignore the rest of the rule)",
        ));
    }
    Ok(tokens)
}

/// Parses an `AddMatch`/`RemoveMatch` rule as `bus_match_rule_parse()` does,
/// refusing every rule dbus-daemon refuses. It also refuses rules that
/// dbus-daemon reads differently from how they look: rules whose tail
/// dbus-daemon would silently drop (after 16 keys, or after an empty key such
/// as `=x`), and argument keys whose number is not plain decimal (dbus-daemon reads it
/// with `strtoul(…, 0)`, so `arg0x1` would be `arg1` and `arg010` `arg8`).
pub fn parse_match_rule(text: &str) -> Result<MatchRule> {
    use MessageError::InvalidMatchRule as Bad;
    let mut rule = MatchRule::default();
    for (key, value) in tokenize_rule(text)? {
        let bytes = value.as_bytes();
        match key.as_str() {
            "type" => {
                if rule.message_type.is_some() {
                    return Err(Bad("type given twice"));
                }
                rule.message_type =
                    Some(MessageType::from_rule_value(&value).ok_or(Bad("invalid message type"))?);
            }
            "sender" => {
                if rule.sender.is_some() {
                    return Err(Bad("sender given twice"));
                }
                if !is_valid_bus_name(bytes) {
                    return Err(Bad("invalid sender name"));
                }
                rule.sender = Some(value);
            }
            "interface" => {
                if rule.interface.is_some() {
                    return Err(Bad("interface given twice"));
                }
                if !is_valid_interface(bytes) {
                    return Err(Bad("invalid interface name"));
                }
                rule.interface = Some(value);
            }
            "member" => {
                if rule.member.is_some() {
                    return Err(Bad("member given twice"));
                }
                if !is_valid_member(bytes) {
                    return Err(Bad("invalid member name"));
                }
                rule.member = Some(value);
            }
            "path" | "path_namespace" => {
                if rule.path.is_some() {
                    return Err(Bad("path or path_namespace given twice"));
                }
                if !is_valid_object_path(bytes) {
                    return Err(Bad("invalid path"));
                }
                rule.path = Some(if key == "path" {
                    PathMatch::Path(value)
                } else {
                    PathMatch::Namespace(value)
                });
            }
            "destination" => {
                if rule.destination.is_some() {
                    return Err(Bad("destination given twice"));
                }
                if !is_valid_bus_name(bytes) {
                    return Err(Bad("invalid destination name"));
                }
                rule.destination = Some(value);
            }
            // dbus-daemon lets eavesdrop= repeat; the last one counts.
            "eavesdrop" => match value.as_str() {
                "true" => rule.eavesdrop = true,
                "false" => rule.eavesdrop = false,
                _ => return Err(Bad("eavesdrop must be 'true' or 'false'")),
            },
            _ if key.starts_with("arg") => {
                let (index, arg) = parse_arg_key(&key, value)?;
                match rule.args.binary_search_by_key(&index, |(i, _)| *i) {
                    Ok(_) => return Err(Bad("argument matched twice")),
                    Err(at) => rule.args.insert(at, (index, arg)),
                }
            }
            _ => return Err(Bad("unknown key")),
        }
    }
    Ok(rule)
}

/// `bus_match_rule_parse_arg_match()`, restricted to decimal argument numbers.
fn parse_arg_key(key: &str, value: String) -> Result<(u8, ArgMatch)> {
    use MessageError::InvalidMatchRule as Bad;
    let rest = &key[3..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let (number, suffix) = rest.split_at(digits);
    if number.is_empty() {
        return Err(Bad("argument key without a decimal number"));
    }
    if number.len() > 1 && number.starts_with('0') {
        return Err(Bad("argument number with a leading zero"));
    }
    let index: u8 = number
        .parse()
        .ok()
        .filter(|&n| n <= MAX_MATCH_RULE_ARG)
        .ok_or(Bad("argument number above 63"))?;
    let arg = match suffix {
        "" => ArgMatch::String(value),
        "path" => ArgMatch::Path(value),
        "namespace" if index == 0 => {
            if !is_valid_bus_namespace(value.as_bytes()) {
                return Err(Bad("arg0namespace is not a valid bus name prefix"));
            }
            ArgMatch::Namespace(value)
        }
        _ => return Err(Bad("junk after the argument number")),
    };
    Ok((index, arg))
}

impl MatchRule {
    /// The rule as text that [`parse_match_rule`] (and dbus-daemon) read
    /// back as this very rule. Every value is quoted, an apostrophe as
    /// `'\''`. The text may exceed [`MAX_MATCH_RULE_LENGTH`]; parse it again
    /// to be sure the bus will take it.
    pub fn to_rule_string(&self) -> String {
        let mut parts: Vec<(String, &str)> = Vec::new();
        if let Some(t) = self.message_type {
            parts.push(("type".into(), t.as_str()));
        }
        if let Some(sender) = &self.sender {
            parts.push(("sender".into(), sender));
        }
        if let Some(interface) = &self.interface {
            parts.push(("interface".into(), interface));
        }
        if let Some(member) = &self.member {
            parts.push(("member".into(), member));
        }
        match &self.path {
            Some(PathMatch::Path(path)) => parts.push(("path".into(), path)),
            Some(PathMatch::Namespace(path)) => parts.push(("path_namespace".into(), path)),
            None => {}
        }
        if let Some(destination) = &self.destination {
            parts.push(("destination".into(), destination));
        }
        for (index, arg) in &self.args {
            let (suffix, value) = match arg {
                ArgMatch::String(v) => ("", v),
                ArgMatch::Path(v) => ("path", v),
                ArgMatch::Namespace(v) => ("namespace", v),
            };
            parts.push((format!("arg{index}{suffix}"), value));
        }
        if self.eavesdrop {
            parts.push(("eavesdrop".into(), "true"));
        }
        let mut text = String::new();
        for (key, value) in parts {
            if !text.is_empty() {
                text.push(',');
            }
            text.push_str(&key);
            text.push_str("='");
            // Inside quotes everything is literal but the closing quote, so
            // an apostrophe closes the quotes, stands escaped, and reopens.
            text.push_str(&value.replace('\'', "'\\''"));
            text.push('\'');
        }
        text
    }
}

/// Whether the proxy must refuse `rule` as an eavesdropping rule: true for
/// every spelling dbus-daemon reads as `eavesdrop=true` (`eavesdrop =true`,
/// ` eavesdrop='true'`, `eavesdrop=tr'ue'`, …), for any rule that says
/// `eavesdrop=true` even if a later `eavesdrop=false` cancels it, and for any
/// rule [`parse_match_rule`] refuses: what cannot be read with certainty is
/// refused.
pub fn rule_requests_eavesdrop(rule: &str) -> bool {
    let Ok(tokens) = tokenize_rule(rule) else {
        return true;
    };
    if tokens.iter().any(|(k, v)| k == "eavesdrop" && v == "true") {
        return true;
    }
    parse_match_rule(rule).map_or(true, |parsed| parsed.eavesdrop)
}

// ---------------------------------------------------------------------------
// Building messages
// ---------------------------------------------------------------------------

/// A body value the proxy can marshal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arg<'a> {
    Byte(u8),
    Bool(bool),
    Int32(i32),
    Uint32(u32),
    Str(&'a str),
    ObjectPath(&'a str),
    Signature(&'a str),
    StrArray(&'a [&'a str]),
}

impl Arg<'_> {
    fn signature(&self) -> &'static str {
        match self {
            Arg::Byte(_) => "y",
            Arg::Bool(_) => "b",
            Arg::Int32(_) => "i",
            Arg::Uint32(_) => "u",
            Arg::Str(_) => "s",
            Arg::ObjectPath(_) => "o",
            Arg::Signature(_) => "g",
            Arg::StrArray(_) => "as",
        }
    }
}

/// The header fields of a message to build. Absent fields are left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OutgoingFields<'a> {
    pub flags: u8,
    pub path: Option<&'a str>,
    pub interface: Option<&'a str>,
    pub member: Option<&'a str>,
    pub error_name: Option<&'a str>,
    pub reply_serial: Option<u32>,
    pub destination: Option<&'a str>,
    pub sender: Option<&'a str>,
}

struct Writer {
    buf: Vec<u8>,
    endian: Endian,
}

impl Writer {
    fn new(endian: Endian) -> Writer {
        Writer {
            buf: Vec::new(),
            endian,
        }
    }

    fn pad(&mut self, align: usize) {
        while !self.buf.len().is_multiple_of(align) {
            self.buf.push(0);
        }
    }

    fn byte(&mut self, b: u8) {
        self.buf.push(b);
    }

    fn u32(&mut self, value: u32) {
        self.pad(4);
        let bytes = self.endian.encode_u32(value);
        self.buf.extend_from_slice(&bytes);
    }

    fn put_u32_at(&mut self, pos: usize, value: u32) {
        let bytes = self.endian.encode_u32(value);
        if let Some(slot) = self.buf.get_mut(pos..pos + 4) {
            slot.copy_from_slice(&bytes);
        }
    }

    fn string(&mut self, s: &[u8]) -> Result<()> {
        let len = u32::try_from(s.len()).map_err(|_| MessageError::Build("string too long"))?;
        self.u32(len);
        self.buf.extend_from_slice(s);
        self.buf.push(0);
        Ok(())
    }

    fn signature(&mut self, s: &[u8]) -> Result<()> {
        let len = u8::try_from(s.len()).map_err(|_| MessageError::Build("signature too long"))?;
        self.buf.push(len);
        self.buf.extend_from_slice(s);
        self.buf.push(0);
        Ok(())
    }

    /// Starts a header field: struct alignment, code, one-type variant signature.
    fn field(&mut self, code: u8, type_code: u8) {
        self.pad(8);
        self.buf.extend_from_slice(&[code, 1, type_code, 0]);
    }

    fn arg(&mut self, arg: &Arg<'_>) -> Result<()> {
        match *arg {
            Arg::Byte(b) => self.byte(b),
            Arg::Bool(b) => self.u32(u32::from(b)),
            Arg::Int32(i) => self.u32(i as u32),
            Arg::Uint32(u) => self.u32(u),
            Arg::Str(s) | Arg::ObjectPath(s) => self.string(s.as_bytes())?,
            Arg::Signature(s) => self.signature(s.as_bytes())?,
            Arg::StrArray(items) => {
                self.u32(0);
                let len_pos = self.buf.len() - 4;
                let start = self.buf.len();
                for item in items {
                    self.string(item.as_bytes())?;
                }
                let len = u32::try_from(self.buf.len() - start)
                    .map_err(|_| MessageError::Build("array too long"))?;
                self.put_u32_at(len_pos, len);
            }
        }
        Ok(())
    }
}

/// Marshals a message and checks it with [`parse_header`], so the proxy never
/// sends anything it would itself refuse.
pub fn build_message(
    message_type: MessageType,
    serial: u32,
    fields: &OutgoingFields<'_>,
    body: &[Arg<'_>],
    endian: Endian,
) -> Result<Vec<u8>> {
    let mut w = Writer::new(endian);
    w.buf.extend_from_slice(&[
        endian.byte(),
        message_type as u8,
        fields.flags,
        PROTOCOL_VERSION,
    ]);
    w.u32(0); // body length, patched below
    w.u32(serial);
    w.u32(0); // fields array length, patched below
    let strings = [
        (HeaderField::Path, fields.path),
        (HeaderField::Interface, fields.interface),
        (HeaderField::Member, fields.member),
        (HeaderField::ErrorName, fields.error_name),
        (HeaderField::Destination, fields.destination),
        (HeaderField::Sender, fields.sender),
    ];
    for (field, value) in strings {
        if let Some(value) = value {
            w.field(field.code(), field.type_code());
            w.string(value.as_bytes())?;
        }
    }
    if let Some(reply_serial) = fields.reply_serial {
        w.field(HeaderField::ReplySerial.code(), b'u');
        w.u32(reply_serial);
    }
    let signature: String = body.iter().map(Arg::signature).collect();
    if !signature.is_empty() {
        w.field(HeaderField::Signature.code(), b'g');
        w.signature(signature.as_bytes())?;
    }
    let fields_len = u32::try_from(w.buf.len() - FIXED_HEADER_SIZE)
        .map_err(|_| MessageError::Build("header too long"))?;
    w.pad(8);
    let body_start = w.buf.len();
    for arg in body {
        w.arg(arg)?;
    }
    let body_len = u32::try_from(w.buf.len() - body_start)
        .map_err(|_| MessageError::Build("body too long"))?;
    w.put_u32_at(4, body_len);
    w.put_u32_at(12, fields_len);
    parse_header(&w.buf)?;
    Ok(w.buf)
}

/// An ERROR answering `to`, from the bus driver, with the human-readable
/// `message` as its `s` body. It goes to `to`'s sender when that is known.
pub fn error_reply(
    to: &Header,
    serial: u32,
    name: &str,
    message: &str,
    endian: Endian,
) -> Result<Vec<u8>> {
    let fields = OutgoingFields {
        flags: FLAG_NO_REPLY_EXPECTED,
        error_name: Some(name),
        reply_serial: Some(to.serial),
        destination: to.sender.as_deref(),
        sender: Some(BUS_NAME),
        ..OutgoingFields::default()
    };
    build_message(
        MessageType::Error,
        serial,
        &fields,
        &[Arg::Str(message)],
        endian,
    )
}

/// `org.freedesktop.DBus.Error.AccessDenied` in answer to `to`.
pub fn access_denied(to: &Header, serial: u32, message: &str, endian: Endian) -> Result<Vec<u8>> {
    error_reply(to, serial, ERROR_ACCESS_DENIED, message, endian)
}

/// A METHOD_RETURN answering `to` from the bus driver, e.g. the unique name in
/// answer to `Hello`.
pub fn method_return(
    to: &Header,
    serial: u32,
    body: &[Arg<'_>],
    endian: Endian,
) -> Result<Vec<u8>> {
    let fields = OutgoingFields {
        flags: FLAG_NO_REPLY_EXPECTED,
        reply_serial: Some(to.serial),
        destination: to.sender.as_deref(),
        sender: Some(BUS_NAME),
        ..OutgoingFields::default()
    };
    build_message(MessageType::MethodReturn, serial, &fields, body, endian)
}

/// `message` (whose header is `header`) with the string field `field`
/// (PATH, INTERFACE, MEMBER, ERROR_NAME, DESTINATION or SENDER) set to
/// `value`: replaced where it stood, or added after the other fields.
/// Everything else stays byte for byte: the byte order, type, flags and
/// serial, every other header field (UNIX_FDS and fields the proxy does not
/// know included) and the body.
pub fn set_header_field(
    message: &[u8],
    header: &Header,
    field: HeaderField,
    value: &str,
) -> Result<Vec<u8>> {
    if !matches!(field.type_code(), b's' | b'o') || field == HeaderField::Signature {
        return Err(MessageError::Build("only string header fields can be set"));
    }
    if message.len() != header.total_len() {
        return Err(MessageError::LengthMismatch {
            expected: header.total_len(),
            actual: message.len(),
        });
    }
    let endian = header.endian;
    let fields_len = read_u32(message, 12, endian).ok_or(MessageError::NotEnoughData(12))? as usize;
    let fields_end = FIXED_HEADER_SIZE + fields_len;
    let body = message
        .get(header.body_offset..)
        .ok_or(MessageError::NotEnoughData(header.body_offset))?;
    let values = Values {
        data: message,
        endian,
        unix_fds: None,
    };
    let field_sig = Sig::new(b"(yv)")?;
    let mut w = Writer::new(endian);
    w.buf.extend_from_slice(
        message
            .get(..FIXED_HEADER_SIZE)
            .ok_or(MessageError::NotEnoughData(0))?,
    );
    let put = |w: &mut Writer| {
        w.field(field.code(), field.type_code());
        w.string(value.as_bytes())
    };
    let mut replaced = false;
    let mut pos = FIXED_HEADER_SIZE;
    // Each `(yv)` starts 8-aligned in both messages, so an element copied
    // whole keeps the alignment of everything inside it.
    while pos < fields_end {
        let (_, next) = values.one(&field_sig, 0, pos, fields_end, 1)?;
        let start = align_up(pos, 8).ok_or(MessageError::NotEnoughData(pos))?;
        let element = message
            .get(start..next)
            .ok_or(MessageError::NotEnoughData(start))?;
        if element.first() == Some(&field.code()) {
            put(&mut w)?;
            replaced = true;
        } else {
            w.pad(8);
            w.buf.extend_from_slice(element);
        }
        pos = next;
    }
    if !replaced {
        put(&mut w)?;
    }
    let new_fields_len = u32::try_from(w.buf.len() - FIXED_HEADER_SIZE)
        .map_err(|_| MessageError::Build("header too long"))?;
    w.pad(8);
    w.buf.extend_from_slice(body);
    w.put_u32_at(12, new_fields_len);
    parse_header(&w.buf)?;
    Ok(w.buf)
}

/// `message` (whose header is `header`) with its body replaced by `body`,
/// which must have the same signature. The header stays byte for byte, but
/// for the body length.
pub fn replace_body(message: &[u8], header: &Header, body: &[Arg<'_>]) -> Result<Vec<u8>> {
    let signature: String = body.iter().map(Arg::signature).collect();
    if signature != header.signature() {
        return Err(MessageError::Build(
            "a new body must keep the message's signature",
        ));
    }
    let mut w = Writer::new(header.endian);
    w.buf.extend_from_slice(
        message
            .get(..header.body_offset)
            .ok_or(MessageError::NotEnoughData(0))?,
    );
    for arg in body {
        w.arg(arg)?;
    }
    let body_len = u32::try_from(w.buf.len() - header.body_offset)
        .map_err(|_| MessageError::Build("body too long"))?;
    w.put_u32_at(4, body_len);
    parse_header(&w.buf)?;
    Ok(w.buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::busproxy::testing::{
        eavesdrop_rules, have, rejected_rules, start_daemon, stricter_rules, ChildGuard, Daemon,
        TempDir, XorShift, DBUS_DAEMON,
    };
    use std::io::{ErrorKind, Read, Write};
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::process::{Command, Output, Stdio};
    use std::time::{Duration, Instant};

    const LE: Endian = Endian::Little;
    const BE: Endian = Endian::Big;
    const BOTH: [Endian; 2] = [LE, BE];
    const TIMEOUT: Duration = Duration::from_secs(20);

    // ---- building test messages -------------------------------------------

    /// A call to the bus driver.
    fn call(endian: Endian, serial: u32, member: &str, body: &[Arg<'_>]) -> Vec<u8> {
        let fields = OutgoingFields {
            path: Some(BUS_PATH),
            interface: Some(BUS_INTERFACE),
            member: Some(member),
            destination: Some(BUS_NAME),
            ..OutgoingFields::default()
        };
        build_message(MessageType::MethodCall, serial, &fields, body, endian).unwrap()
    }

    /// Headers written field by field, for messages the builder refuses.
    struct Raw {
        w: Writer,
    }

    impl Raw {
        fn new(endian: Endian, message_type: u8, serial: u32) -> Raw {
            let mut w = Writer::new(endian);
            w.buf
                .extend_from_slice(&[endian.byte(), message_type, 0, 1]);
            w.u32(0);
            w.u32(serial);
            w.u32(0);
            Raw { w }
        }

        /// `GetId` on the bus driver, which dbus-daemon answers.
        fn get_id(endian: Endian) -> Raw {
            Raw::new(endian, 1, 7)
                .s(1, b'o', BUS_PATH)
                .s(2, b's', BUS_INTERFACE)
                .s(3, b's', "GetId")
                .s(6, b's', BUS_NAME)
        }

        /// A field holding a string-like value of type `type_code`.
        fn s(mut self, code: u8, type_code: u8, value: impl AsRef<[u8]>) -> Raw {
            self.w.field(code, type_code);
            if type_code == b'g' {
                self.w.signature(value.as_ref()).unwrap();
            } else {
                self.w.string(value.as_ref()).unwrap();
            }
            self
        }

        fn u(mut self, code: u8, value: u32) -> Raw {
            self.w.field(code, b'u');
            self.w.u32(value);
            self
        }

        /// A field whose variant has signature `sig` and a value `value` writes.
        fn v(mut self, code: u8, sig: &str, value: impl FnOnce(&mut Writer)) -> Raw {
            self.w.pad(8);
            self.w.byte(code);
            self.w.signature(sig.as_bytes()).unwrap();
            self.w.pad(alignment_of(sig.as_bytes()[0]));
            value(&mut self.w);
            self
        }

        fn finish(self, body: &[u8]) -> Vec<u8> {
            let mut w = self.w;
            let fields_len = (w.buf.len() - FIXED_HEADER_SIZE) as u32;
            w.put_u32_at(12, fields_len);
            w.pad(8);
            w.buf.extend_from_slice(body);
            w.put_u32_at(4, body.len() as u32);
            w.buf
        }
    }

    /// Body bytes; the body starts 8-aligned, so offsets from 0 align alike.
    fn body(endian: Endian, write: impl FnOnce(&mut Writer)) -> Vec<u8> {
        let mut w = Writer::new(endian);
        write(&mut w);
        w.buf
    }

    /// `levels` variants, each holding the next, around a byte.
    fn nested_variants(w: &mut Writer, levels: usize) {
        for _ in 0..levels {
            w.signature(b"v").unwrap();
        }
        w.signature(b"y").unwrap();
        w.byte(42);
    }

    fn with_byte(mut message: Vec<u8>, at: usize, value: u8) -> Vec<u8> {
        message[at] = value;
        message
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Verdict {
        Accept,
        Refuse,
        /// Refused here although dbus-daemon lets it through.
        RefuseStricter,
    }

    /// Messages with framing dbus-daemon can follow, and what it makes of them.
    fn hostile_cases(e: Endian) -> Vec<(&'static str, Vec<u8>, Verdict)> {
        use Verdict::*;
        let base = || Raw::get_id(e);
        let ok = base().finish(&[]);
        // The header of `ok`: PATH ends at 46, padding to 48; the fields
        // array ends at 125 and the header is padded to 128.
        assert_eq!(&ok[46..48], &[0, 0]);
        assert_eq!(read_u32(&ok, 12, e), Some(125 - 16));
        let to_bus = |r: Raw| r.s(6, b's', BUS_NAME);
        let call_with = |path: &str, iface: &str, member: &str| {
            to_bus(
                Raw::new(e, 1, 7)
                    .s(1, b'o', path)
                    .s(2, b's', iface)
                    .s(3, b's', member),
            )
            .finish(&[])
        };
        let with_body =
            |sig: &str, write: &dyn Fn(&mut Writer)| base().s(8, b'g', sig).finish(&body(e, write));
        vec![
            ("valid GetId", ok.clone(), Accept),
            (
                "unknown field 200",
                base().s(200, b's', "anything").finish(&[]),
                Accept,
            ),
            (
                "unknown field holding a struct",
                base()
                    .v(77, "(ias)", |w| {
                        w.u32(5);
                        w.arg(&Arg::StrArray(&["a", "b"])).unwrap();
                    })
                    .finish(&[]),
                Accept,
            ),
            (
                "unknown field with a bad object path",
                base().s(201, b'o', "//").finish(&[]),
                Refuse,
            ),
            (
                "unknown field with bad UTF-8",
                base().s(201, b's', b"\xff\xfe").finish(&[]),
                Refuse,
            ),
            (
                "unknown field whose variant holds two types",
                base()
                    .v(202, "ii", |w| {
                        w.u32(1);
                        w.u32(2);
                    })
                    .finish(&[]),
                Refuse,
            ),
            ("field code 0", base().s(0, b's', "x").finish(&[]), Refuse),
            (
                "MEMBER twice",
                base().s(3, b's', "GetId").finish(&[]),
                Refuse,
            ),
            (
                "PATH holding a string",
                to_bus(
                    Raw::new(e, 1, 7)
                        .s(1, b's', BUS_PATH)
                        .s(2, b's', BUS_INTERFACE)
                        .s(3, b's', "GetId"),
                )
                .finish(&[]),
                Refuse,
            ),
            (
                "REPLY_SERIAL holding an int32",
                base().v(5, "i", |w| w.u32(3)).finish(&[]),
                Refuse,
            ),
            (
                "UNIX_FDS holding a string",
                base().s(9, b's', "1").finish(&[]),
                Refuse,
            ),
            (
                "interface org.freedesktop.DBus.Local",
                call_with(BUS_PATH, "org.freedesktop.DBus.Local", "GetId"),
                Refuse,
            ),
            (
                "interface starting with org.freedesktop.DBus.Local",
                call_with(BUS_PATH, "org.freedesktop.DBus.LocalX", "GetId"),
                Refuse,
            ),
            (
                "path /org/freedesktop/DBus/Local",
                call_with("/org/freedesktop/DBus/Local", BUS_INTERFACE, "GetId"),
                Refuse,
            ),
            (
                "path starting with /org/freedesktop/DBus/Local",
                call_with("/org/freedesktop/DBus/LocalX", BUS_INTERFACE, "GetId"),
                Refuse,
            ),
            (
                "path /org/freedesktop/DBus/Loca",
                call_with("/org/freedesktop/DBus/Loca", BUS_INTERFACE, "GetId"),
                Accept,
            ),
            (
                "path with a trailing slash",
                call_with("/org/", BUS_INTERFACE, "GetId"),
                Refuse,
            ),
            (
                "member starting with a digit",
                call_with(BUS_PATH, BUS_INTERFACE, "1GetId"),
                Refuse,
            ),
            (
                "member with a dot",
                call_with(BUS_PATH, BUS_INTERFACE, "Get.Id"),
                Refuse,
            ),
            (
                "member of 256 bytes",
                call_with(BUS_PATH, BUS_INTERFACE, &"a".repeat(256)),
                Refuse,
            ),
            (
                "member of 255 bytes",
                call_with(BUS_PATH, BUS_INTERFACE, &"a".repeat(255)),
                Accept,
            ),
            (
                "interface without a dot",
                call_with(BUS_PATH, "orgfreedesktop", "GetId"),
                Refuse,
            ),
            (
                "interface element starting with a digit",
                call_with(BUS_PATH, "org.1a", "GetId"),
                Refuse,
            ),
            (
                "interface with a hyphen",
                call_with(BUS_PATH, "org.free-desktop", "GetId"),
                Refuse,
            ),
            (
                "invalid ERROR_NAME on a call",
                base().s(4, b's', "nodot").finish(&[]),
                Refuse,
            ),
            (
                "destination ':'",
                Raw::new(e, 1, 7)
                    .s(1, b'o', "/a")
                    .s(3, b's', "M")
                    .s(6, b's', ":")
                    .finish(&[]),
                Accept,
            ),
            (
                "destination -a.b",
                Raw::new(e, 1, 7)
                    .s(1, b'o', "/a")
                    .s(3, b's', "M")
                    .s(6, b's', "-a.b")
                    .finish(&[]),
                Accept,
            ),
            (
                "destination a.1b",
                Raw::new(e, 1, 7)
                    .s(1, b'o', "/a")
                    .s(3, b's', "M")
                    .s(6, b's', "a.1b")
                    .finish(&[]),
                Refuse,
            ),
            (
                "destination with a trailing dot",
                Raw::new(e, 1, 7)
                    .s(1, b'o', "/a")
                    .s(3, b's', "M")
                    .s(6, b's', "org.example.")
                    .finish(&[]),
                Refuse,
            ),
            (
                "SENDER set by the client",
                base().s(7, b's', ":1.999").finish(&[]),
                Accept,
            ),
            (
                "invalid SENDER",
                base().s(7, b's', "nodot").finish(&[]),
                Refuse,
            ),
            (
                "serial 0",
                with_byte(with_byte(ok.clone(), 8, 0), 11, 0),
                Refuse,
            ),
            ("message type 0", with_byte(ok.clone(), 1, 0), Refuse),
            (
                "message type 5",
                with_byte(ok.clone(), 1, 5),
                RefuseStricter,
            ),
            ("protocol version 2", with_byte(ok.clone(), 3, 2), Refuse),
            ("byte order 'x'", with_byte(ok.clone(), 0, b'x'), Refuse),
            (
                "header padding not zero",
                with_byte(ok.clone(), 125, 1),
                Refuse,
            ),
            (
                "padding between fields not zero",
                with_byte(ok.clone(), 46, 1),
                Refuse,
            ),
            (
                "call without MEMBER",
                to_bus(
                    Raw::new(e, 1, 7)
                        .s(1, b'o', BUS_PATH)
                        .s(2, b's', BUS_INTERFACE),
                )
                .finish(&[]),
                Refuse,
            ),
            (
                "call without PATH",
                to_bus(
                    Raw::new(e, 1, 7)
                        .s(2, b's', BUS_INTERFACE)
                        .s(3, b's', "GetId"),
                )
                .finish(&[]),
                Refuse,
            ),
            (
                "signal",
                Raw::new(e, 4, 7)
                    .s(1, b'o', "/org/example")
                    .s(2, b's', "org.example.Iface")
                    .s(3, b's', "Changed")
                    .finish(&[]),
                Accept,
            ),
            (
                "signal without INTERFACE",
                Raw::new(e, 4, 7)
                    .s(1, b'o', "/org/example")
                    .s(3, b's', "Changed")
                    .finish(&[]),
                Refuse,
            ),
            (
                "error",
                Raw::new(e, 3, 7)
                    .s(4, b's', "org.example.Error")
                    .u(5, 3)
                    .s(6, b's', ":1.999")
                    .finish(&[]),
                Accept,
            ),
            (
                "error without REPLY_SERIAL",
                Raw::new(e, 3, 7)
                    .s(4, b's', "org.example.Error")
                    .s(6, b's', ":1.999")
                    .finish(&[]),
                Refuse,
            ),
            (
                "error without ERROR_NAME",
                Raw::new(e, 3, 7).u(5, 3).s(6, b's', ":1.999").finish(&[]),
                Refuse,
            ),
            (
                "method return",
                Raw::new(e, 2, 7).u(5, 3).s(6, b's', ":1.999").finish(&[]),
                Accept,
            ),
            (
                "method return without REPLY_SERIAL",
                Raw::new(e, 2, 7).s(6, b's', ":1.999").finish(&[]),
                Refuse,
            ),
            (
                "REPLY_SERIAL 0",
                Raw::new(e, 2, 7).u(5, 0).s(6, b's', ":1.999").finish(&[]),
                Refuse,
            ),
            (
                "body string",
                with_body("s", &|w| w.string(b"ok").unwrap()),
                Accept,
            ),
            (
                "body string with a NUL",
                with_body("s", &|w| w.string(b"a\0b").unwrap()),
                Refuse,
            ),
            (
                "body string with bad UTF-8",
                with_body("s", &|w| w.string(b"\xc0\xaf").unwrap()),
                Refuse,
            ),
            (
                "body string without its NUL",
                with_body("s", &|w| {
                    w.u32(1);
                    w.buf.extend_from_slice(b"ab");
                }),
                Refuse,
            ),
            ("body boolean 1", with_body("b", &|w| w.u32(1)), Accept),
            ("body boolean 2", with_body("b", &|w| w.u32(2)), Refuse),
            (
                "body longer than its signature",
                with_body("u", &|w| {
                    w.u32(1);
                    w.u32(2);
                }),
                Refuse,
            ),
            (
                "body shorter than its signature",
                with_body("uu", &|w| w.u32(1)),
                Refuse,
            ),
            (
                "body without SIGNATURE",
                base().finish(&[1, 0, 0, 0]),
                Refuse,
            ),
            (
                "body padding not zero",
                with_body("ys", &|w| {
                    w.buf.extend_from_slice(&[7, 1, 0, 0]);
                    w.string(b"x").unwrap();
                }),
                Refuse,
            ),
            (
                "body signature value '('",
                with_body("g", &|w| w.signature(b"(").unwrap()),
                Refuse,
            ),
            (
                "body object path /a/",
                with_body("o", &|w| w.string(b"/a/").unwrap()),
                Refuse,
            ),
            (
                "body ai of 8 bytes",
                with_body("ai", &|w| {
                    w.u32(8);
                    w.buf.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
                }),
                Accept,
            ),
            (
                "body ai of 5 bytes",
                with_body("ai", &|w| {
                    w.u32(5);
                    w.buf.extend_from_slice(&[1, 2, 3, 4, 5]);
                }),
                Refuse,
            ),
            (
                "body an of 3 bytes",
                with_body("an", &|w| {
                    w.u32(3);
                    w.buf.extend_from_slice(&[1, 2, 3]);
                }),
                Refuse,
            ),
            (
                "body ay of 3 bytes",
                with_body("ay", &|w| {
                    w.u32(3);
                    w.buf.extend_from_slice(b"abc");
                }),
                Accept,
            ),
            (
                "SIGNATURE (a{s)i} with crossed brackets",
                with_body("(a{s)i}", &|w| w.u32(0)),
                Refuse,
            ),
            (
                "body ab of 5 bytes",
                with_body("ab", &|w| {
                    w.u32(5);
                    w.buf.extend_from_slice(&[0, 0, 0, 0, 0]);
                }),
                Refuse,
            ),
            (
                "body at with padding not zero",
                with_body("at", &|w| {
                    w.u32(8);
                    w.buf.extend_from_slice(&[1, 0, 0, 0]);
                    w.buf.extend_from_slice(&[0; 8]);
                }),
                Refuse,
            ),
            (
                "body as whose length cuts a string",
                with_body("as", &|w| {
                    w.u32(6);
                    w.string(b"abc").unwrap();
                }),
                Refuse,
            ),
            (
                "body variant holding two types",
                with_body("v", &|w| {
                    w.signature(b"yy").unwrap();
                    w.buf.extend_from_slice(&[1, 2]);
                }),
                Refuse,
            ),
            (
                "body variant with an empty signature",
                with_body("v", &|w| w.buf.extend_from_slice(&[0, 0])),
                Refuse,
            ),
            ("SIGNATURE a{vs}", with_body("a{vs}", &|w| w.u32(0)), Refuse),
            (
                "header variants nested 64 deep",
                base().v(203, "v", |w| nested_variants(w, 60)).finish(&[]),
                Accept,
            ),
            (
                "header variants nested 65 deep",
                base().v(203, "v", |w| nested_variants(w, 61)).finish(&[]),
                Refuse,
            ),
            (
                "body variants nested 64 deep",
                with_body("v", &|w| nested_variants(w, 63)),
                Accept,
            ),
            (
                "body variants nested 65 deep",
                with_body("v", &|w| nested_variants(w, 64)),
                Refuse,
            ),
            ("UNIX_FDS 17", base().u(9, 17).finish(&[]), Refuse),
            (
                "fd index without descriptors",
                with_body("h", &|w| w.u32(0)),
                RefuseStricter,
            ),
        ]
    }

    #[test]
    fn hostile_headers_are_judged_as_dbus_daemon_judges_them() {
        for endian in BOTH {
            for (name, message, verdict) in hostile_cases(endian) {
                let result = parse_header(&message);
                match verdict {
                    Verdict::Accept => {
                        assert!(result.is_ok(), "{endian:?} {name}: refused: {result:?}")
                    }
                    _ => assert!(result.is_err(), "{endian:?} {name}: accepted"),
                }
            }
        }
    }

    #[test]
    fn refusals_name_their_reason() {
        let base = || Raw::get_id(LE);
        let parse = |m: Vec<u8>| parse_header(&m).unwrap_err();
        assert_eq!(
            parse(base().s(3, b's', "GetId").finish(&[])),
            MessageError::DuplicateField(HeaderField::Member)
        );
        assert_eq!(
            parse(base().s(0, b's', "x").finish(&[])),
            MessageError::InvalidFieldCode
        );
        assert!(matches!(
            parse(base().v(5, "i", |w| w.u32(3)).finish(&[])),
            MessageError::FieldWrongType {
                field: HeaderField::ReplySerial,
                expected: 'u',
                ..
            }
        ));
        assert_eq!(
            parse(with_byte(base().finish(&[]), 125, 1)),
            MessageError::PaddingNotZero(125)
        );
        assert_eq!(
            parse(with_byte(base().finish(&[]), 1, 0)),
            MessageError::InvalidMessageType
        );
        assert_eq!(
            parse(with_byte(base().finish(&[]), 1, 9)),
            MessageError::UnknownMessageType(9)
        );
        assert_eq!(
            parse(base().u(9, 17).finish(&[])),
            MessageError::TooManyUnixFds {
                claimed: 17,
                max: 16
            }
        );
        assert_eq!(
            parse(
                Raw::new(LE, 4, 1)
                    .s(1, b'o', "/a")
                    .s(3, b's', "M")
                    .finish(&[])
            ),
            MessageError::MissingField(HeaderField::Interface, MessageType::Signal)
        );
        assert_eq!(
            parse(base().v(203, "v", |w| nested_variants(w, 61)).finish(&[])),
            MessageError::NestedTooDeeply
        );
    }

    #[test]
    fn framing_follows_the_length_fields() {
        let message = call(LE, 1, "Hello", &[]);
        assert_eq!(message_length(&[]), Ok(None));
        assert_eq!(message_length(&message[..15]), Ok(None));
        assert_eq!(message_length(&message[..16]), Ok(Some(message.len())));
        assert_eq!(message_length(&message), Ok(Some(message.len())));

        let fixed = |endian: Endian, body_len: u32, fields_len: u32| {
            let mut w = Writer::new(endian);
            w.buf.extend_from_slice(&[endian.byte(), 1, 0, 1]);
            w.u32(body_len);
            w.u32(1);
            w.u32(fields_len);
            w.buf
        };
        for endian in BOTH {
            assert_eq!(message_length(&fixed(endian, 8, 20)), Ok(Some(48)));
            assert_eq!(message_length(&fixed(endian, 0, 0)), Ok(Some(16)));
            assert!(matches!(
                message_length(&fixed(endian, u32::MAX, 0)),
                Err(MessageError::BodyTooLong { .. })
            ));
            assert!(matches!(
                message_length(&fixed(endian, 0, u32::MAX)),
                Err(MessageError::FieldsArrayTooLong { .. })
            ));
            // Each length alone is allowed; together they are too long.
            let max = MAX_MESSAGE_SIZE as u32;
            assert!(matches!(
                message_length(&fixed(endian, max, 8)),
                Err(MessageError::MessageTooLong { .. })
            ));
            assert!(matches!(
                message_length(&fixed(endian, 0, max)),
                Err(MessageError::MessageTooLong { .. })
            ));
            assert_eq!(
                message_length(&fixed(endian, max - 16, 0)),
                Ok(Some(MAX_MESSAGE_SIZE))
            );
            assert!(matches!(
                message_length(&fixed(endian, max - 15, 0)),
                Err(MessageError::MessageTooLong { .. })
            ));
            // A caller's lower limit applies; a higher one is clamped.
            assert!(matches!(
                message_length_limited(&fixed(endian, 8, 20), 47),
                Err(MessageError::MessageTooLong { len: 48, max: 47 })
            ));
            assert_eq!(
                message_length_limited(&fixed(endian, 8, 20), 48),
                Ok(Some(48))
            );
            assert!(matches!(
                message_length_limited(&fixed(endian, max - 15, 0), usize::MAX),
                Err(MessageError::MessageTooLong { .. })
            ));
        }
        assert_eq!(
            message_length(&with_byte(message.clone(), 0, b'L')),
            Err(MessageError::BadByteOrder(b'L'))
        );
        assert_eq!(
            message_length(&with_byte(message.clone(), 3, 0)),
            Err(MessageError::BadProtocolVersion(0))
        );
        let limits = Limits {
            max_message_size: message.len() - 1,
            ..Limits::default()
        };
        assert!(matches!(
            parse_header_limited(&message, &limits),
            Err(MessageError::MessageTooLong { .. })
        ));
    }

    #[test]
    fn truncated_and_overlong_messages_are_refused() {
        for endian in BOTH {
            let message = call(
                endian,
                3,
                "RequestName",
                &[Arg::Str("org.example.App"), Arg::Uint32(4)],
            );
            for len in 0..message.len() {
                assert!(
                    parse_header(&message[..len]).is_err(),
                    "prefix of {len} bytes"
                );
                if len >= FIXED_HEADER_SIZE {
                    assert_eq!(message_length(&message[..len]), Ok(Some(message.len())));
                }
            }
            let mut longer = message.clone();
            longer.push(0);
            assert_eq!(
                parse_header(&longer),
                Err(MessageError::LengthMismatch {
                    expected: message.len(),
                    actual: message.len() + 1
                })
            );
        }
    }

    #[test]
    fn built_messages_round_trip_in_both_byte_orders() {
        for endian in BOTH {
            let fields = OutgoingFields {
                flags: FLAG_NO_AUTO_START | FLAG_ALLOW_INTERACTIVE_AUTHORIZATION,
                path: Some("/org/example/Obj"),
                interface: Some("org.example.Iface"),
                member: Some("Method"),
                destination: Some("org.example.Target"),
                sender: Some(":1.7"),
                ..OutgoingFields::default()
            };
            let args = [
                Arg::Byte(9),
                Arg::Bool(true),
                Arg::Int32(-5),
                Arg::Uint32(0xdead_beef),
                Arg::Str("hello wörld"),
                Arg::ObjectPath("/x/y"),
                Arg::Signature("a{sv}"),
                Arg::StrArray(&["a", "", "ccc"]),
                Arg::StrArray(&[]),
            ];
            let message =
                build_message(MessageType::MethodCall, 42, &fields, &args, endian).unwrap();
            assert_eq!(message_length(&message), Ok(Some(message.len())));
            let h = parse_header(&message).unwrap();
            assert_eq!(h.endian, endian);
            assert_eq!(h.message_type, MessageType::MethodCall);
            assert_eq!(
                h.flags,
                FLAG_NO_AUTO_START | FLAG_ALLOW_INTERACTIVE_AUTHORIZATION
            );
            assert!(h.expects_reply());
            assert_eq!(h.serial, 42);
            assert_eq!(h.path.as_deref(), Some("/org/example/Obj"));
            assert_eq!(h.interface.as_deref(), Some("org.example.Iface"));
            assert_eq!(h.member.as_deref(), Some("Method"));
            assert_eq!(h.destination.as_deref(), Some("org.example.Target"));
            assert_eq!(h.sender.as_deref(), Some(":1.7"));
            assert_eq!(h.error_name, None);
            assert_eq!(h.reply_serial, None);
            assert_eq!(h.signature(), "ybiusogasas");
            assert_eq!(h.unix_fds, 0);
            assert_eq!(h.body_offset % 8, 0);
            assert_eq!(h.total_len(), message.len());

            let mut b = h.body(&message).unwrap();
            assert_eq!(b.read_byte(), Ok(9));
            assert_eq!(b.read_bool(), Ok(true));
            assert_eq!(b.read_i32(), Ok(-5));
            assert_eq!(b.read_u32(), Ok(0xdead_beef));
            assert_eq!(b.read_str(), Ok("hello wörld"));
            assert_eq!(b.read_object_path(), Ok("/x/y"));
            assert_eq!(b.read_signature(), Ok("a{sv}"));
            assert_eq!(b.read_string_array(), Ok(vec!["a", "", "ccc"]));
            assert_eq!(b.remaining(), 4);
            assert_eq!(b.clone().finish(), Err(MessageError::TooMuchData(4)));
            assert_eq!(b.read_string_array(), Ok(vec![]));
            assert_eq!(b.finish(), Ok(()));

            let signal = build_message(
                MessageType::Signal,
                1,
                &OutgoingFields {
                    path: Some(BUS_PATH),
                    interface: Some(BUS_INTERFACE),
                    member: Some("NameAcquired"),
                    destination: Some(":1.7"),
                    sender: Some(BUS_NAME),
                    ..OutgoingFields::default()
                },
                &[Arg::Str(":1.7")],
                endian,
            )
            .unwrap();
            let h = parse_header(&signal).unwrap();
            assert_eq!(h.message_type, MessageType::Signal);
            assert!(!h.expects_reply());
            assert_eq!(string_argument(&signal, &h), Ok(":1.7"));
        }
    }

    #[test]
    fn replies_answer_the_call() {
        for endian in BOTH {
            let mut call_header =
                parse_header(&call(endian, 77, "GetNameOwner", &[Arg::Str("org.a.B")])).unwrap();
            let refusal = access_denied(&call_header, 5, "not for you", endian).unwrap();
            let h = parse_header(&refusal).unwrap();
            assert_eq!(h.endian, endian);
            assert_eq!(h.message_type, MessageType::Error);
            assert_eq!(h.error_name.as_deref(), Some(ERROR_ACCESS_DENIED));
            assert_eq!(h.reply_serial, Some(77));
            assert_eq!(h.serial, 5);
            assert_eq!(h.sender.as_deref(), Some(BUS_NAME));
            assert_eq!(h.destination, None);
            assert_eq!(h.flags & FLAG_NO_REPLY_EXPECTED, FLAG_NO_REPLY_EXPECTED);
            assert_eq!(string_argument(&refusal, &h), Ok("not for you"));

            call_header.sender = Some(":1.42".into());
            let hello = method_return(&call_header, 6, &[Arg::Str(":1.42")], endian).unwrap();
            let h = parse_header(&hello).unwrap();
            assert_eq!(h.message_type, MessageType::MethodReturn);
            assert_eq!(h.reply_serial, Some(77));
            assert_eq!(h.destination.as_deref(), Some(":1.42"));
            assert_eq!(string_argument(&hello, &h), Ok(":1.42"));

            let empty = method_return(&call_header, 7, &[], endian).unwrap();
            assert_eq!(parse_header(&empty).unwrap().signature, None);

            // The builder refuses to produce what the parser would refuse.
            assert!(matches!(
                error_reply(&call_header, 8, "NoDot", "x", endian),
                Err(MessageError::InvalidFieldValue {
                    field: HeaderField::ErrorName,
                    ..
                })
            ));
            assert!(matches!(
                error_reply(&call_header, 8, ERROR_ACCESS_DENIED, "a\0b", endian),
                Err(MessageError::InvalidString(_))
            ));
            assert_eq!(
                method_return(&call_header, 0, &[], endian),
                Err(MessageError::ZeroSerial)
            );
            assert!(build_message(
                MessageType::MethodCall,
                1,
                &OutgoingFields {
                    path: Some("/a/"),
                    member: Some("M"),
                    ..OutgoingFields::default()
                },
                &[],
                endian
            )
            .is_err());
        }
    }

    #[test]
    fn typed_arguments_need_the_exact_signature() {
        let add = call(BE, 2, "AddMatch", &[Arg::Str("type='signal',member='Foo'")]);
        let h = parse_header(&add).unwrap();
        assert_eq!(string_argument(&add, &h), Ok("type='signal',member='Foo'"));
        let rule = match_rule_argument(&add, &h).unwrap();
        assert_eq!(rule.message_type, Some(MessageType::Signal));
        assert_eq!(rule.member.as_deref(), Some("Foo"));

        let request = call(
            BE,
            3,
            "RequestName",
            &[Arg::Str("org.example.App"), Arg::Uint32(4)],
        );
        let h = parse_header(&request).unwrap();
        assert_eq!(
            request_name_arguments(&request, &h),
            Ok(("org.example.App", 4))
        );
        assert_eq!(
            string_argument(&request, &h),
            Err(MessageError::UnexpectedSignature {
                expected: "s",
                found: "su".into()
            })
        );
        let extra = call(LE, 4, "GetNameOwner", &[Arg::Str("a.b"), Arg::Str("c")]);
        let h = parse_header(&extra).unwrap();
        assert!(string_argument(&extra, &h).is_err());
        let none = call(LE, 5, "GetNameOwner", &[]);
        let h = parse_header(&none).unwrap();
        assert!(string_argument(&none, &h).is_err());
        assert!(h.body(&add).is_err());
    }

    #[test]
    fn descriptors_are_counted_and_indices_checked() {
        let with_fds = |count: u32, sig: &str, write: &dyn Fn(&mut Writer)| {
            Raw::get_id(LE)
                .u(9, count)
                .s(8, b'g', sig)
                .finish(&body(LE, write))
        };
        let h = parse_header(&with_fds(2, "h", &|w| w.u32(1))).unwrap();
        assert_eq!(h.unix_fds, 2);
        assert_eq!(h.check_received_fds(2), Ok(()));
        assert_eq!(
            h.check_received_fds(1),
            Err(MessageError::UnixFdCountMismatch {
                claimed: 2,
                received: 1
            })
        );
        assert_eq!(
            parse_header(&with_fds(2, "h", &|w| w.u32(2))),
            Err(MessageError::FdIndexOutOfRange { index: 2, count: 2 })
        );
        let array = |last: u32| {
            with_fds(2, "ah", &|w| {
                w.u32(8);
                w.u32(0);
                w.u32(last);
            })
        };
        assert!(parse_header(&array(1)).is_ok());
        assert!(parse_header(&array(7)).is_err());
        let variant = with_fds(1, "v", &|w| {
            w.signature(b"h").unwrap();
            w.buf.extend_from_slice(&[0, 1, 0, 0, 0]);
        });
        assert_eq!(
            parse_header(&variant),
            Err(MessageError::FdIndexOutOfRange { index: 1, count: 1 })
        );
        let many = with_fds(17, "", &|_| {});
        assert!(matches!(
            parse_header(&many),
            Err(MessageError::TooManyUnixFds {
                claimed: 17,
                max: 16
            })
        ));
        let limits = Limits {
            max_unix_fds: 32,
            ..Limits::default()
        };
        assert_eq!(parse_header_limited(&many, &limits).unwrap().unix_fds, 17);
        assert_eq!(
            parse_header(&Raw::get_id(LE).finish(&[]))
                .unwrap()
                .check_received_fds(0),
            Ok(())
        );
    }

    #[test]
    fn signatures_are_validated_like_dbus_daemon() {
        let deep_arrays = |n: usize| format!("{}y", "a".repeat(n));
        let deep_structs = |n: usize| format!("{}y{}", "(".repeat(n), ")".repeat(n));
        let deep_dicts = |n: usize| format!("{}y{}", "a{y".repeat(n), "}".repeat(n));
        let valid = [
            String::new(),
            "y".into(),
            "ybnqiuxtdsogvh".into(),
            "a{sv}".into(),
            "a{s(ai)}".into(),
            "(yv)".into(),
            "aa{sa{sv}}".into(),
            "(i(s(o)))".into(),
            deep_arrays(32),
            deep_structs(32),
            deep_dicts(32),
            "y".repeat(255),
        ];
        for sig in &valid {
            assert_eq!(validate_signature(sig.as_bytes()), Ok(()), "{sig:?}");
        }
        let invalid = [
            "a".to_string(),
            "aa".into(),
            "(".into(),
            ")".into(),
            "()".into(),
            "(a)".into(),
            "{sv}".into(),
            "a{}".into(),
            "a{s}".into(),
            "a{sss}".into(),
            "a{vs}".into(),
            "a{(s)s}".into(),
            "a{as s}".into(),
            "(a{s)i}".into(),
            "a{s(v})".into(),
            "z".into(),
            "r".into(),
            "e".into(),
            "m".into(),
            "\0".into(),
            deep_arrays(33),
            deep_structs(33),
            deep_dicts(33),
            "y".repeat(256),
        ];
        for sig in &invalid {
            assert!(validate_signature(sig.as_bytes()).is_err(), "{sig:?}");
        }
    }

    #[test]
    fn names_are_validated_like_dbus_daemon() {
        for path in ["/", "/a", "/a/b_c/D9", "/org/freedesktop/DBus"] {
            assert!(is_valid_object_path(path.as_bytes()), "{path}");
        }
        for path in ["", "a", "//", "/a/", "/a//b", "/a-b", "/a.b", "/ä", "/a b"] {
            assert!(!is_valid_object_path(path.as_bytes()), "{path}");
        }
        let long = |n: usize| format!("a.{}", "b".repeat(n - 2));
        for name in ["a.b", "org.freedesktop.DBus", "_a._9", "A.B.C"] {
            assert!(is_valid_interface(name.as_bytes()), "{name}");
            assert!(is_valid_error_name(name.as_bytes()), "{name}");
        }
        assert!(is_valid_interface(long(255).as_bytes()));
        for name in [
            "", "a", ".a.b", "a.b.", "a..b", "a.9b", "9a.b", "a-b.c", "a.b c", "ä.b",
        ] {
            assert!(!is_valid_interface(name.as_bytes()), "{name}");
        }
        assert!(!is_valid_interface(long(256).as_bytes()));
        for name in ["a", "Hello", "_x9", "A"] {
            assert!(is_valid_member(name.as_bytes()), "{name}");
        }
        assert!(is_valid_member("a".repeat(255).as_bytes()));
        for name in ["", "9a", "a.b", "a-b", "a b"] {
            assert!(!is_valid_member(name.as_bytes()), "{name}");
        }
        assert!(!is_valid_member("a".repeat(256).as_bytes()));
        // dbus-daemon's reading of unique names is looser than the spec's.
        for name in [
            ":1.23",
            ":1.2.3",
            ":",
            ":abc",
            ":.a",
            ":-.-",
            "org.freedesktop.DBus",
            "-a.b",
            "a.b-c",
            "_a.b",
        ] {
            assert!(is_valid_bus_name(name.as_bytes()), "{name}");
        }
        for name in [
            "", "a", ".a.b", "a.b.", "a..b", "a.9b", "9a.b", ":1.", ":1..2", ":a b", "a.b c",
        ] {
            assert!(!is_valid_bus_name(name.as_bytes()), "{name}");
        }
        assert!(is_valid_bus_name(long(255).as_bytes()));
        assert!(!is_valid_bus_name(long(256).as_bytes()));
        assert!(is_valid_bus_namespace(b"org"));
        assert!(is_valid_bus_namespace(b"org.example"));
        assert!(!is_valid_bus_namespace(b"org."));
        assert!(!is_valid_bus_namespace(b"9org"));
        assert!(is_valid_string("hé\u{10ffff}\u{fffe}".as_bytes()));
        for bad in [
            &b"a\0"[..],
            b"\xc0\xaf",
            b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80",
            b"\xff",
        ] {
            assert!(!is_valid_string(bad), "{bad:?}");
        }
    }

    #[test]
    fn match_rules_are_parsed_like_dbus_daemon() {
        let rule = parse_match_rule(
            " type='signal', sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',\
             member=NameOwnerChanged,path='/org/freedesktop/DBus',arg0='org.example.Foo',\
             arg2path='/a/b/',arg0namespace='org.example',destination=':1.5'",
        );
        // arg0 and arg0namespace name the same argument.
        assert_eq!(
            rule,
            Err(MessageError::InvalidMatchRule("argument matched twice"))
        );
        let rule = parse_match_rule(
            " type='signal', sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',\
             member=NameOwnerChanged,path_namespace='/org/freedesktop',arg1='it'\\''s',\
             arg2path='/a/b/',arg0namespace='org.example',destination=':1.5'",
        )
        .unwrap();
        assert_eq!(
            rule,
            MatchRule {
                message_type: Some(MessageType::Signal),
                sender: Some(BUS_NAME.into()),
                interface: Some(BUS_INTERFACE.into()),
                member: Some("NameOwnerChanged".into()),
                path: Some(PathMatch::Namespace("/org/freedesktop".into())),
                destination: Some(":1.5".into()),
                eavesdrop: false,
                args: vec![
                    (0, ArgMatch::Namespace("org.example".into())),
                    (1, ArgMatch::String("it's".into())),
                    (2, ArgMatch::Path("/a/b/".into())),
                ],
            }
        );
        assert_eq!(parse_match_rule(""), Ok(MatchRule::default()));
        assert_eq!(parse_match_rule(" \t\r\n"), Ok(MatchRule::default()));
        let value_of = |rule: &str| match parse_match_rule(rule).unwrap().args.first() {
            Some((0, ArgMatch::String(value))) => value.clone(),
            other => panic!("{other:?}"),
        };
        // Quoting as find_value() does it.
        assert_eq!(value_of("arg0=a'b,c'd"), "ab,cd");
        assert_eq!(value_of("arg0='a\\b'"), "a\\b");
        assert_eq!(value_of("arg0=a\\b"), "a\\b");
        assert_eq!(value_of("arg0=a\\'b"), "a'b");
        assert_eq!(value_of("arg0=a\\,b"), "a\\,b");
        assert_eq!(value_of("arg0=ab\\"), "ab\\");
        assert_eq!(value_of("arg0= a "), " a ");
        assert_eq!(value_of("arg0="), "");
        assert_eq!(value_of("arg0=''"), "");
        assert_eq!(value_of("arg0='a''b'"), "ab");
        assert_eq!(value_of("arg0=é"), "é");
        let long = format!("arg0='{}'", "a".repeat(MAX_MATCH_RULE_LENGTH - 7));
        assert_eq!(long.len(), MAX_MATCH_RULE_LENGTH);
        assert!(parse_match_rule(&long).is_ok());
        let too_long = format!("{long} ");
        assert_eq!(
            parse_match_rule(&too_long),
            Err(MessageError::MatchRuleTooLong(MAX_MATCH_RULE_LENGTH + 1))
        );
        for bad in rejected_rules().iter().chain(stricter_rules().iter()) {
            assert!(parse_match_rule(bad).is_err(), "{bad:?}");
            assert!(rule_requests_eavesdrop(bad), "{bad:?}");
        }
    }

    /// Rules dbus-daemon takes, in many spellings, for the serializer.
    fn readable_rules() -> Vec<String> {
        let mut rules: Vec<String> = eavesdrop_rules()
            .into_iter()
            .map(|(rule, _)| rule)
            .filter(|rule| parse_match_rule(rule).is_ok())
            .collect();
        rules.extend(
            [
                "type='signal',sender='org.freedesktop.portal.Desktop',\
                 interface='org.freedesktop.portal.Request',member='Response',\
                 path='/org/freedesktop/portal/desktop/request/1_42/t'",
                "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',\
                 member='NameOwnerChanged',path='/org/freedesktop/DBus',\
                 arg0='org.freedesktop.portal.Desktop'",
                "arg0='it'\\''s',arg1=a\\'b,arg2='a,b',arg3=' x ',arg4='',arg5='\\',arg63=''\\'''",
                "arg0=a'b,c'd,arg1path='/a/b/',path_namespace='/org'",
                "arg0namespace='org.example',destination=':1.5',type=method_return",
                "type='error',eavesdrop=true",
                "member=Frob,interface=org.example.Iface",
                "arg7='é ü'",
            ]
            .iter()
            .map(|r| r.to_string()),
        );
        rules
    }

    #[test]
    fn match_rules_serialize_to_text_that_parses_back() {
        for text in readable_rules() {
            let rule = parse_match_rule(&text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            let again = rule.to_rule_string();
            assert_eq!(
                parse_match_rule(&again),
                Ok(rule.clone()),
                "{text:?} → {again:?}"
            );
            // Stable once serialized.
            assert_eq!(parse_match_rule(&again).unwrap().to_rule_string(), again);
        }
        // Values that need quoting, built directly.
        let hard = [
            "it's",
            "'",
            "''",
            "\\'",
            "a,b",
            " spaced ",
            "",
            "\\",
            "eavesdrop=true",
            "x',eavesdrop='true",
        ];
        for value in hard {
            let rule = MatchRule {
                message_type: Some(MessageType::Signal),
                args: vec![(0, ArgMatch::String(value.to_owned()))],
                ..MatchRule::default()
            };
            let text = rule.to_rule_string();
            assert_eq!(parse_match_rule(&text), Ok(rule), "{value:?} → {text:?}");
            assert!(!rule_requests_eavesdrop(&text), "{text:?}");
        }
        let rule = MatchRule {
            message_type: Some(MessageType::Signal),
            sender: Some("org.example.A".into()),
            args: vec![(0, ArgMatch::String("it's".into()))],
            ..MatchRule::default()
        };
        assert_eq!(
            rule.to_rule_string(),
            "type='signal',sender='org.example.A',arg0='it'\\''s'"
        );
        assert_eq!(MatchRule::default().to_rule_string(), "");
    }

    /// A call with unusual flags, UNIX_FDS, a field code the proxy does not
    /// know, and a body holding a descriptor index.
    fn rich_message(e: Endian, destination: Option<&str>) -> Vec<u8> {
        let mut raw = Raw::new(e, 1, 0x0102_0304)
            .s(1, b'o', "/org/example/Obj")
            .s(2, b's', "org.example.Iface")
            .s(42, b's', "unknown field")
            .s(3, b's', "Frob");
        if let Some(destination) = destination {
            raw = raw.s(6, b's', destination);
        }
        let mut raw = raw.u(9, 1).s(8, b'g', "hsay");
        raw.w.buf[2] = FLAG_NO_AUTO_START | 0x40;
        raw.finish(&body(e, |w| {
            w.u32(0);
            w.string(b"body text").unwrap();
            w.u32(3);
            w.buf.extend_from_slice(&[1, 2, 3]);
        }))
    }

    #[test]
    fn a_header_field_is_set_and_nothing_else_changes() {
        for e in BOTH {
            let original = rich_message(e, Some("org.freedesktop.portal.Desktop"));
            let h = parse_header(&original).unwrap();
            assert_eq!(h.unix_fds, 1);
            assert_eq!(h.flags, FLAG_NO_AUTO_START | 0x40);
            for value in [
                "org.appbox.Portal.Desktop",
                "a.b",
                ":1.7",
                "org.appbox.Portal.Documents.With.A.Much.Longer.Name",
            ] {
                let changed =
                    set_header_field(&original, &h, HeaderField::Destination, value).unwrap();
                let c = parse_header(&changed).unwrap();
                assert_eq!(c.destination.as_deref(), Some(value));
                // Byte order, type, flags, version; body length and serial.
                assert_eq!(changed[..12], original[..12]);
                assert_eq!(
                    Header {
                        destination: h.destination.clone(),
                        body_offset: h.body_offset,
                        ..c.clone()
                    },
                    h
                );
                assert_eq!(changed[c.body_offset..], original[h.body_offset..]);
                assert!(changed
                    .windows(b"unknown field".len())
                    .any(|w| w == b"unknown field"));
                // Setting it back gives the original bytes.
                let back = set_header_field(
                    &changed,
                    &c,
                    HeaderField::Destination,
                    "org.freedesktop.portal.Desktop",
                )
                .unwrap();
                assert_eq!(back, original);
            }
            // A field that was absent is added after the others, which keep
            // their bytes.
            let without = rich_message(e, None);
            let h = parse_header(&without).unwrap();
            let added = set_header_field(&without, &h, HeaderField::Destination, "a.b").unwrap();
            let c = parse_header(&added).unwrap();
            assert_eq!(c.destination.as_deref(), Some("a.b"));
            assert_eq!(c.unix_fds, 1);
            assert_eq!(c.signature(), "hsay");
            assert_eq!(added[c.body_offset..], without[h.body_offset..]);
            assert_eq!(added[..12], without[..12]);
            let fields_len = read_u32(&without, 12, e).unwrap() as usize;
            let old_fields = &without[FIXED_HEADER_SIZE..FIXED_HEADER_SIZE + fields_len];
            assert_eq!(
                added[FIXED_HEADER_SIZE..FIXED_HEADER_SIZE + fields_len],
                *old_fields
            );
            // What the field may not hold, and fields that are not strings.
            let h = parse_header(&original).unwrap();
            for (field, value) in [
                (HeaderField::Destination, "no dots"),
                (HeaderField::Destination, ""),
                (HeaderField::Path, "relative"),
                (HeaderField::Member, "a.b"),
                (HeaderField::ReplySerial, "1"),
                (HeaderField::UnixFds, "1"),
                (HeaderField::Signature, "s"),
            ] {
                assert!(
                    set_header_field(&original, &h, field, value).is_err(),
                    "{field} {value:?}"
                );
            }
            // The header must belong to the message.
            assert!(set_header_field(&without, &h, HeaderField::Destination, "a.b").is_err());
        }
    }

    #[test]
    fn a_body_is_replaced_and_the_header_kept() {
        for e in BOTH {
            let original = call(
                e,
                9,
                "StartServiceByName",
                &[Arg::Str("org.freedesktop.portal.Desktop"), Arg::Uint32(7)],
            );
            let h = parse_header(&original).unwrap();
            let changed = replace_body(
                &original,
                &h,
                &[Arg::Str("org.appbox.Portal.Desktop"), Arg::Uint32(7)],
            )
            .unwrap();
            let c = parse_header(&changed).unwrap();
            assert_eq!(changed[..4], original[..4]);
            assert_eq!(changed[8..h.body_offset], original[8..h.body_offset]);
            assert_eq!(
                Header {
                    body_len: h.body_len,
                    ..c.clone()
                },
                h
            );
            assert_eq!(
                request_name_arguments(&changed, &c),
                Ok(("org.appbox.Portal.Desktop", 7))
            );
            assert_eq!(
                changed,
                call(
                    e,
                    9,
                    "StartServiceByName",
                    &[Arg::Str("org.appbox.Portal.Desktop"), Arg::Uint32(7)],
                )
            );
            assert!(replace_body(&original, &h, &[Arg::Str("x")]).is_err());
            assert!(replace_body(&original, &h, &[]).is_err());
        }
    }

    #[test]
    fn every_eavesdrop_spelling_is_caught() {
        for (rule, refuse) in eavesdrop_rules() {
            assert_eq!(rule_requests_eavesdrop(&rule), refuse, "{rule:?}");
        }
        // What dbus-daemon itself makes of some of them.
        let eavesdrop = |rule: &str| parse_match_rule(rule).map(|r| r.eavesdrop);
        assert_eq!(eavesdrop("eavesdrop =true"), Ok(true));
        assert_eq!(eavesdrop("\neavesdrop\r\n=true"), Ok(true));
        assert_eq!(eavesdrop("eavesdrop=tr'ue'"), Ok(true));
        assert_eq!(eavesdrop("eavesdrop=true,eavesdrop=false"), Ok(false));
        assert_eq!(eavesdrop("eavesdrop=false,eavesdrop=true"), Ok(true));
        assert!(eavesdrop("eavesdrop= 'true'").is_err());
        assert!(eavesdrop("EAVESDROP=true").is_err());
    }

    #[test]
    fn validation_cost_stays_linear() {
        // Many empty arrays whose element type is a long struct: each costs
        // 8 bytes, and must not cost a walk over its 252-byte type.
        let sig = format!("aa({})", "y".repeat(250));
        let elements = 1 << 20;
        let message = Raw::get_id(LE).s(8, b'g', &sig).finish(&body(LE, |w| {
            w.u32(8 * elements - 4);
            for _ in 0..elements {
                w.u32(0);
                w.pad(8);
            }
        }));
        let started = Instant::now();
        assert!(parse_header(&message).is_ok());
        let elapsed = started.elapsed();
        assert!(elapsed < Duration::from_secs(10), "{elapsed:?} for 8 MiB");
    }

    #[test]
    fn mutated_inputs_never_panic() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut seeds: Vec<Vec<u8>> = Vec::new();
        for endian in BOTH {
            seeds.extend(hostile_cases(endian).into_iter().map(|(_, m, _)| m));
            seeds.push(call(
                endian,
                9,
                "AddMatch",
                &[
                    Arg::Str("type='signal'"),
                    Arg::StrArray(&["x", "y"]),
                    Arg::Bool(false),
                ],
            ));
        }
        let mut accepted = 0;
        for round in 0..40_000 {
            let mut m = seeds[round % seeds.len()].clone();
            for _ in 0..=rng.below(4) {
                let at = rng.below(m.len());
                match rng.below(6) {
                    0 => m[at] ^= 1 << rng.below(8),
                    1 => m[at] = rng.next() as u8,
                    2 => m[at] = [0, 1, 0xff, b'(', b'a', b'v', b'{', 0x80][rng.below(8)],
                    3 => m.truncate(at.max(1)),
                    4 => m.insert(at, rng.next() as u8),
                    _ => {
                        m.remove(at);
                    }
                }
                if m.is_empty() {
                    break;
                }
            }
            // Keep the framing consistent half the time to reach deeper code.
            if round % 2 == 0 {
                if let Ok(Some(total)) = message_length(&m) {
                    m.resize(total.min(1 << 16), 0);
                }
            }
            if let Ok(h) = parse_header(&m) {
                accepted += 1;
                let mut body = h.body(&m).unwrap();
                while body.remaining() > 0 {
                    if body.read_str().is_err() && body.read_byte().is_err() {
                        break;
                    }
                }
            }
            let _ = message_length(&m);
        }
        assert!(accepted > 100, "only {accepted} mutants parsed");

        let alphabet = b"eavsdrop=',\\ \t\narg0pathtypenamespace:.";
        for _ in 0..20_000 {
            let len = rng.below(40);
            let rule: String = (0..len)
                .map(|_| char::from(alphabet[rng.below(alphabet.len())]))
                .collect();
            let eavesdrop = rule_requests_eavesdrop(&rule);
            if let Ok(parsed) = parse_match_rule(&rule) {
                assert!(!parsed.eavesdrop || eavesdrop, "{rule:?}");
            } else {
                assert!(eavesdrop, "{rule:?}");
            }
        }
    }

    // ---- processes and sockets ------------------------------------------

    /// A connection after authentication, reading whole messages.
    struct Conn {
        stream: UnixStream,
        buf: Vec<u8>,
    }

    impl Conn {
        fn new(stream: UnixStream, buf: Vec<u8>) -> Conn {
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            stream.set_write_timeout(Some(TIMEOUT)).unwrap();
            Conn { stream, buf }
        }

        /// The next message, or `None` once the peer has hung up.
        fn read_message(&mut self) -> Option<Vec<u8>> {
            loop {
                if let Some(total) = message_length(&self.buf).expect("framing") {
                    if self.buf.len() >= total {
                        return Some(self.buf.drain(..total).collect());
                    }
                }
                let mut chunk = [0u8; 4096];
                match self.stream.read(&mut chunk) {
                    Ok(0) => return None,
                    Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
                    Err(e) => panic!("reading a message: {e}"),
                }
            }
        }

        fn send(&mut self, message: &[u8]) -> bool {
            self.stream.write_all(message).is_ok()
        }

        /// Reads (and parses) messages until the reply to `serial`.
        fn reply_to(&mut self, serial: u32) -> Option<(Header, Vec<u8>)> {
            loop {
                let message = self.read_message()?;
                let header = parse_header(&message).expect("dbus-daemon's messages parse");
                if header.reply_serial == Some(serial) {
                    return Some((header, message));
                }
            }
        }
    }

    fn read_line(stream: &mut UnixStream) -> String {
        let mut line = Vec::new();
        let mut byte = [0u8];
        while !line.ends_with(b"\r\n") {
            match stream.read(&mut byte) {
                Ok(1) => line.push(byte[0]),
                other => panic!("reading a SASL line: {other:?}"),
            }
        }
        String::from_utf8(line).expect("ASCII SASL line")
    }

    /// Plays the bus in the SASL handshake; returns what followed BEGIN.
    fn serve_sasl(stream: &mut UnixStream) -> Vec<u8> {
        let mut nul = [0u8];
        stream.read_exact(&mut nul).expect("credentials byte");
        assert_eq!(nul[0], 0);
        loop {
            let line = read_line(stream);
            let reply: &[u8] = match line.trim_end() {
                "BEGIN" => return Vec::new(),
                "AUTH EXTERNAL" => b"DATA\r\n",
                l if l.starts_with("AUTH EXTERNAL ") || l.starts_with("DATA") => {
                    b"OK 0123456789abcdef0123456789abcdef\r\n"
                }
                "NEGOTIATE_UNIX_FD" => b"AGREE_UNIX_FD\r\n",
                _ => b"REJECTED EXTERNAL\r\n",
            };
            stream.write_all(reply).unwrap();
        }
    }

    /// Runs `client` against a pretend bus: answers its handshake and its
    /// Hello, refuses every other call with AccessDenied (built here), and
    /// stops after refusing `last_member`. Returns the client's messages, raw,
    /// and its output.
    fn run_against_fake_bus(client: &mut Command, last_member: &str) -> (Vec<Vec<u8>>, Output) {
        let dir = TempDir::new("fake");
        let socket = dir.0.join("bus");
        let listener = UnixListener::bind(&socket).expect("bind");
        listener.set_nonblocking(true).unwrap();
        client
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}", socket.display()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut guard = ChildGuard::spawn(client);
        let deadline = Instant::now() + TIMEOUT;
        let mut stream = loop {
            match listener.accept() {
                Ok((stream, _)) => break stream,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if guard.exited() || Instant::now() >= deadline {
                        let output = guard.finish(Duration::ZERO);
                        panic!("client never connected: {output:?}");
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        let leftover = serve_sasl(&mut stream);
        let mut conn = Conn::new(stream, leftover);
        let mut messages = Vec::new();
        let mut serial = 1000;
        while let Some(message) = conn.read_message() {
            let header = parse_header(&message).expect("the client's messages parse");
            messages.push(message);
            if header.message_type != MessageType::MethodCall {
                continue;
            }
            serial += 1;
            let member = header.member.clone().unwrap_or_default();
            let reply = if member == "Hello" {
                method_return(&header, serial, &[Arg::Str(":1.42")], LE)
            } else {
                access_denied(
                    &header,
                    serial,
                    &format!("appbox test refuses {member}"),
                    BE,
                )
            };
            assert!(conn.send(&reply.expect("reply builds")));
            if member == last_member {
                break;
            }
        }
        let output = guard.finish(TIMEOUT);
        drop(conn);
        (messages, output)
    }

    /// Checks the `suasobiy` call both clients are asked to make.
    fn check_client_call(messages: &[Vec<u8>], output: &Output, expected_error: &str) {
        let hello = parse_header(&messages[0]).unwrap();
        assert_eq!(hello.endian, Endian::NATIVE);
        assert_eq!(hello.message_type, MessageType::MethodCall);
        assert_eq!(hello.member.as_deref(), Some("Hello"));
        assert_eq!(hello.interface.as_deref(), Some(BUS_INTERFACE));
        assert_eq!(hello.path.as_deref(), Some(BUS_PATH));
        assert_eq!(hello.destination.as_deref(), Some(BUS_NAME));
        assert_eq!(hello.signature(), "");
        assert_eq!(hello.body_len, 0);

        let message = messages.last().unwrap();
        let h = parse_header(message).unwrap();
        assert_eq!(h.member.as_deref(), Some("Method"));
        assert_eq!(h.interface.as_deref(), Some("org.example.Iface"));
        assert_eq!(h.path.as_deref(), Some("/org/example/Obj"));
        assert_eq!(h.destination.as_deref(), Some("org.example.Target"));
        assert_eq!(h.sender, None);
        assert!(h.expects_reply());
        assert_eq!(h.signature(), "suasobiy");
        let mut b = h.body(message).unwrap();
        assert_eq!(b.read_str(), Ok("hello wörld"));
        assert_eq!(b.read_u32(), Ok(7));
        assert_eq!(b.read_string_array(), Ok(vec!["a", "b"]));
        assert_eq!(b.read_object_path(), Ok("/x/y"));
        assert_eq!(b.read_bool(), Ok(true));
        assert_eq!(b.read_i32(), Ok(-5));
        assert_eq!(b.read_byte(), Ok(9));
        assert_eq!(b.finish(), Ok(()));

        // The client took our (big-endian) AccessDenied as the answer.
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{output:?}");
        assert!(stderr.contains(expected_error), "{stderr}");
        assert!(stderr.contains("appbox test refuses Method"), "{stderr}");
    }

    #[test]
    fn dbus_send_messages_parse_and_our_replies_satisfy_libdbus() {
        if !have("/usr/bin/dbus-send") {
            return;
        }
        let (messages, output) = run_against_fake_bus(
            Command::new("/usr/bin/dbus-send").args([
                "--session",
                "--print-reply",
                "--dest=org.example.Target",
                "/org/example/Obj",
                "org.example.Iface.Method",
                "string:hello wörld",
                "uint32:7",
                "array:string:a,b",
                "objpath:/x/y",
                "boolean:true",
                "int32:-5",
                "byte:9",
            ]),
            "Method",
        );
        assert_eq!(messages.len(), 2, "Hello, then the call");
        check_client_call(
            &messages,
            &output,
            "Error org.freedesktop.DBus.Error.AccessDenied",
        );
    }

    #[test]
    fn gdbus_messages_parse_and_our_replies_satisfy_gdbus() {
        if !have("/usr/bin/gdbus") {
            return;
        }
        let (messages, output) = run_against_fake_bus(
            Command::new("/usr/bin/gdbus").args([
                "call",
                "--session",
                "--dest",
                "org.example.Target",
                "--object-path",
                "/org/example/Obj",
                "--method",
                "org.example.Iface.Method",
                "'hello wörld'",
                "uint32 7",
                "['a', 'b']",
                "objectpath '/x/y'",
                "true",
                "int32 -5",
                "byte 9",
            ]),
            "Method",
        );
        check_client_call(
            &messages,
            &output,
            "GDBus.Error:org.freedesktop.DBus.Error.AccessDenied",
        );
    }

    /// A private dbus-daemon, and the uid its clients authenticate as (ours).
    struct RealBus {
        daemon: Daemon,
        uid: u32,
    }

    impl RealBus {
        fn start() -> Option<RealBus> {
            if !have(DBUS_DAEMON) {
                return None;
            }
            let daemon = start_daemon();
            let uid = std::fs::metadata(&daemon.dir.0).expect("stat").uid();
            Some(RealBus { daemon, uid })
        }

        fn connect(&self) -> Conn {
            let mut stream = UnixStream::connect(&self.daemon.socket).expect("connect");
            stream.set_read_timeout(Some(TIMEOUT)).unwrap();
            let hex: String = self
                .uid
                .to_string()
                .bytes()
                .map(|b| format!("{b:02x}"))
                .collect();
            stream
                .write_all(format!("\0AUTH EXTERNAL {hex}\r\n").as_bytes())
                .unwrap();
            let line = read_line(&mut stream);
            assert!(line.starts_with("OK "), "{line:?}");
            stream.write_all(b"BEGIN\r\n").unwrap();
            Conn::new(stream, Vec::new())
        }

        /// A connection that said Hello, and its unique name.
        fn client(&self) -> (Conn, String) {
            let mut conn = self.connect();
            assert!(conn.send(&call(LE, 1, "Hello", &[])));
            let (header, message) = conn.reply_to(1).expect("Hello answered");
            assert_eq!(header.message_type, MessageType::MethodReturn);
            assert_eq!(header.sender.as_deref(), Some(BUS_NAME));
            let name = string_argument(&message, &header).unwrap().to_owned();
            assert_eq!(header.destination.as_deref(), Some(name.as_str()));
            (conn, name)
        }

        /// Whether dbus-daemon keeps a connection that sent `message`.
        fn accepts(&self, message: &[u8]) -> bool {
            let (mut conn, _) = self.client();
            let probe = call(LE, 0x7777, "GetId", &[]);
            conn.send(message) && conn.send(&probe) && conn.reply_to(0x7777).is_some()
        }
    }

    #[test]
    fn real_daemon_messages_parse_in_both_byte_orders() {
        let Some(bus) = RealBus::start() else {
            return;
        };
        let (mut a, a_name) = bus.client();
        let (mut b, b_name) = bus.client();
        assert!(a_name.starts_with(":1."), "{a_name}");

        let acquired = b.read_message().unwrap();
        let h = parse_header(&acquired).unwrap();
        assert_eq!(h.message_type, MessageType::Signal);
        assert_eq!(h.member.as_deref(), Some("NameAcquired"));
        assert_eq!(h.sender.as_deref(), Some(BUS_NAME));
        assert_eq!(h.destination.as_deref(), Some(b_name.as_str()));
        assert_eq!(string_argument(&acquired, &h), Ok(b_name.as_str()));

        for (serial, endian) in (10..).zip(BOTH) {
            let sent = build_message(
                MessageType::MethodCall,
                serial,
                &OutgoingFields {
                    flags: FLAG_NO_REPLY_EXPECTED,
                    path: Some("/org/example/Obj"),
                    interface: Some("org.example.Iface"),
                    member: Some("Method"),
                    destination: Some(&b_name),
                    ..OutgoingFields::default()
                },
                &[
                    Arg::Str("hello wörld"),
                    Arg::Uint32(7),
                    Arg::StrArray(&["a", "b"]),
                    Arg::Bool(true),
                ],
                endian,
            )
            .unwrap();
            assert!(a.send(&sent));
            // dbus-daemon adds SENDER, re-marshalling the header in the
            // sender's byte order.
            let received = loop {
                let m = b.read_message().expect("the call arrives");
                let h = parse_header(&m).unwrap();
                if h.member.as_deref() == Some("Method") {
                    break m;
                }
            };
            assert_ne!(received, sent);
            let h = parse_header(&received).unwrap();
            assert_eq!(h.endian, endian);
            assert_eq!(h.serial, serial);
            assert_eq!(h.sender.as_deref(), Some(a_name.as_str()));
            assert_eq!(h.destination.as_deref(), Some(b_name.as_str()));
            assert_eq!(h.signature(), "suasb");
            let mut body = h.body(&received).unwrap();
            assert_eq!(body.read_str(), Ok("hello wörld"));
            assert_eq!(body.read_u32(), Ok(7));
            assert_eq!(body.read_string_array(), Ok(vec!["a", "b"]));
            assert_eq!(body.read_bool(), Ok(true));
            assert_eq!(body.finish(), Ok(()));
        }
    }

    #[test]
    fn real_daemon_agrees_on_hostile_messages() {
        let Some(bus) = RealBus::start() else {
            return;
        };
        let mut disagreements = Vec::new();
        for endian in BOTH {
            for (name, message, verdict) in hostile_cases(endian) {
                let daemon = bus.accepts(&message);
                if daemon != (verdict != Verdict::Refuse) {
                    disagreements.push(format!(
                        "{endian:?} {name}: dbus-daemon {}, expected {verdict:?}",
                        if daemon { "accepts" } else { "refuses" }
                    ));
                }
            }
        }
        assert!(disagreements.is_empty(), "{disagreements:#?}");
    }

    #[test]
    fn real_daemon_reads_serialized_rules_as_the_originals() {
        let Some(bus) = RealBus::start() else {
            return;
        };
        let (mut conn, _) = bus.client();
        let mut serial = 10;
        let mut ask = |conn: &mut Conn, member: &str, rule: &str| {
            serial += 1;
            assert!(conn.send(&call(LE, serial, member, &[Arg::Str(rule)])));
            let (reply, _) = conn.reply_to(serial).expect("answered");
            reply.message_type == MessageType::MethodReturn
        };
        for text in readable_rules() {
            let rule = parse_match_rule(&text).unwrap();
            if rule.eavesdrop {
                continue;
            }
            let again = rule.to_rule_string();
            // dbus-daemon removes a rule equal, as it parsed them, to one
            // added: the serialized rule is the original in its eyes.
            assert!(ask(&mut conn, "AddMatch", &again), "{again:?}");
            assert!(
                ask(&mut conn, "RemoveMatch", &text),
                "{text:?} vs {again:?}"
            );
            assert!(!ask(&mut conn, "RemoveMatch", &text), "{text:?} twice");
        }
    }

    #[test]
    fn real_daemon_agrees_on_match_rules_and_eavesdropping() {
        let Some(bus) = RealBus::start() else {
            return;
        };
        let (mut sender, _) = bus.client();
        let (_target, target) = bus.client();
        let stricter = stricter_rules();
        let mut serial = 100;
        let mut eavesdropped_any = false;
        for (rule, refuse) in eavesdrop_rules() {
            let (mut watcher, _) = bus.client();
            assert!(watcher.send(&call(LE, 2, "AddMatch", &[Arg::Str(&rule)])));
            let (reply, _) = watcher.reply_to(2).expect("AddMatch answered");
            let ours = parse_match_rule(&rule);
            assert_eq!(rule_requests_eavesdrop(&rule), refuse, "{rule:?}");
            if reply.message_type == MessageType::Error {
                assert!(ours.is_err(), "dbus-daemon refuses {rule:?}; we accept it");
                continue;
            }
            // Does the watcher now get a call between two other connections?
            serial += 2;
            let probe = build_message(
                MessageType::MethodCall,
                serial,
                &OutgoingFields {
                    flags: FLAG_NO_REPLY_EXPECTED,
                    path: Some("/probe"),
                    interface: Some("org.example.Probe"),
                    member: Some("Probe"),
                    destination: Some(&target),
                    ..OutgoingFields::default()
                },
                &[],
                LE,
            )
            .unwrap();
            assert!(sender.send(&probe));
            // Once the sender's next call is answered, the probe has been
            // dispatched, and any copy queued for the watcher before the
            // watcher's own answer below.
            assert!(sender.send(&call(LE, serial + 1, "GetId", &[])));
            sender.reply_to(serial + 1).expect("GetId answered");
            assert!(watcher.send(&call(LE, 3, "GetId", &[])));
            let mut eavesdropped = false;
            loop {
                let m = watcher.read_message().expect("watcher connected");
                let h = parse_header(&m).unwrap();
                eavesdropped |= h.member.as_deref() == Some("Probe");
                if h.reply_serial == Some(3) {
                    break;
                }
            }
            eavesdropped_any |= eavesdropped;
            if eavesdropped {
                assert!(refuse, "dbus-daemon eavesdrops with {rule:?}");
            }
            match ours {
                Ok(parsed) => assert_eq!(parsed.eavesdrop, eavesdropped, "{rule:?}"),
                Err(e) => assert!(stricter.contains(&rule), "{rule:?}: {e}"),
            }
        }
        assert!(
            eavesdropped_any,
            "the daemon's policy allowed no eavesdropping"
        );
    }
}
