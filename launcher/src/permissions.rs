//! The permission vocabulary, which is Flatpak's, so a manifest ports line by line.
//!
//! A permission is written as a Flatpak finish-arg, with or without the leading
//! `--`: `share=network`, `--filesystem=xdg-documents:ro`, `--nosocket=x11`.
//! Negative forms revoke, and a revoked location also removes every grant inside
//! it (Flatpak's `:reset` semantics, CVE-2022-21682).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use crate::text::{check_line, Escaped, TextError};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PermissionError {
    #[error("permission {0}: {1}")]
    Text(String, TextError),
    #[error("permission {0} is not a KEY=VALUE pair such as --share=network")]
    NoValue(String),
    #[error("unknown permission {0}; known: share, socket, device, filesystem, talk-name, own-name, see-name, persist, env and their no- forms")]
    UnknownKey(String),
    #[error("permission {key}: unknown value {value}; expected one of: {expected}")]
    UnknownValue {
        key: &'static str,
        value: String,
        expected: &'static str,
    },
    #[error("filesystem path {path}: {problem}")]
    BadPath { path: String, problem: &'static str },
    #[error("filesystem {path} is reserved for the sandbox itself; use host-os or host-etc to see the host's")]
    Reserved { path: String },
    #[error("bus name {0} is not a valid D-Bus well-known name")]
    BadBusName(String),
    #[error("env {0}: the name must match [A-Za-z_][A-Za-z0-9_]*")]
    BadEnvName(String),
}

macro_rules! keyword_enum {
    ($(#[$meta:meta])* $name:ident, $key:literal { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            const EXPECTED: &'static str = concat!($($text, " "),+);

            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            fn parse(value: &str) -> Result<Self, PermissionError> {
                match value {
                    $($text => Ok($name::$variant),)+
                    _ => Err(PermissionError::UnknownValue {
                        key: $key,
                        value: Escaped(value).to_string(),
                        expected: Self::EXPECTED.trim_end(),
                    }),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

keyword_enum!(
    /// `share=`: namespaces the app may share with the host.
    Share, "share" { Network = "network", Ipc = "ipc" }
);
keyword_enum!(
    /// `socket=`: host sockets passed into the sandbox.
    Socket, "socket" {
        Wayland = "wayland",
        X11 = "x11",
        FallbackX11 = "fallback-x11",
        Pulseaudio = "pulseaudio",
        Pipewire = "pipewire",
        SessionBus = "session-bus",
        SystemBus = "system-bus",
        SshAuth = "ssh-auth",
        Cups = "cups",
        GpgAgent = "gpg-agent",
    }
);
keyword_enum!(
    /// `device=`: device nodes passed into the sandbox.
    Device, "device" {
        Dri = "dri",
        Input = "input",
        Usb = "usb",
        Kvm = "kvm",
        Shm = "shm",
        All = "all",
    }
);
keyword_enum!(
    /// The `xdg-*` locations of `filesystem=`.
    XdgDir, "filesystem" {
        Desktop = "xdg-desktop",
        Documents = "xdg-documents",
        Download = "xdg-download",
        Music = "xdg-music",
        Pictures = "xdg-pictures",
        PublicShare = "xdg-public-share",
        Templates = "xdg-templates",
        Videos = "xdg-videos",
        Config = "xdg-config",
        Cache = "xdg-cache",
        Data = "xdg-data",
        Run = "xdg-run",
    }
);

/// How a filesystem location is shared. Ordered from weakest to strongest, so
/// that two grants of one location merge to the stronger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FsAccess {
    ReadOnly,
    ReadWrite,
    /// Read-write, and the directory is created on the host if it is missing.
    Create,
}

impl FsAccess {
    pub fn is_writable(self) -> bool {
        self != FsAccess::ReadOnly
    }
}

/// A normalized relative path: no empty, `.` or `..` components.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RelPath(String);

impl RelPath {
    pub fn parse(path: &str) -> Result<Self, PermissionError> {
        let bad = |problem| PermissionError::BadPath {
            path: Escaped(path).to_string(),
            problem,
        };
        let mut parts = Vec::new();
        for part in path.split('/') {
            match part {
                "" | "." => {}
                ".." => return Err(bad("'..' is not allowed")),
                _ => parts.push(part),
            }
        }
        if path.contains(['*', '?', '[']) {
            return Err(bad("glob characters are not allowed"));
        }
        Ok(RelPath(parts.join("/")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `self` equals `other` or lies inside it.
    pub fn starts_with(&self, other: &RelPath) -> bool {
        other.0.is_empty()
            || self.0 == other.0
            || (self.0.starts_with(&other.0) && self.0.as_bytes().get(other.0.len()) == Some(&b'/'))
    }
}

/// Absolute paths the sandbox builds itself; granting them would replace the
/// sandbox's own view (Flatpak reserves the same set).
const RESERVED_PATHS: &[&str] = &[
    "",
    "app",
    "bin",
    "dev",
    "etc",
    "lib",
    "lib32",
    "lib64",
    "proc",
    "root",
    "run/host",
    "sbin",
    "sys",
    "usr",
    "tmp",
    ".flatpak-info",
    "run/appbox",
    "run/user",
    // The sandbox's /var/tmp is its own /tmp.
    "var/tmp",
];

/// Paths reserved themselves, though some paths below them may be granted
/// (such as `/run/media` or `/var/lib/foo`): granting all of `/run` or `/var`
/// would hide the sandbox's own runtime directory or its `/var/tmp`.
const RESERVED_EXACT: &[&str] = &["run", "var"];

/// Where a `filesystem=` grant points.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FsLocation {
    /// Every host path outside the sandbox's own system directories.
    Host,
    /// The host's `/usr` and friends, at `/run/host`.
    HostOs,
    /// The host's `/etc`, at `/run/host/etc`.
    HostEtc,
    /// `home`: the user's home directory.
    Home,
    /// `~/PATH`: a path under home.
    HomePath(RelPath),
    /// `xdg-NAME[/PATH]`.
    Xdg(XdgDir, RelPath),
    /// `/PATH` (stored without its leading `/`).
    Absolute(RelPath),
}

impl FsLocation {
    fn parse(text: &str) -> Result<Self, PermissionError> {
        match text {
            "host" => return Ok(FsLocation::Host),
            "host-os" => return Ok(FsLocation::HostOs),
            "host-etc" => return Ok(FsLocation::HostEtc),
            "home" | "~" => return Ok(FsLocation::Home),
            _ => {}
        }
        if let Some(rest) = text.strip_prefix("~/") {
            let rel = RelPath::parse(rest)?;
            return Ok(if rel.is_empty() {
                FsLocation::Home
            } else {
                FsLocation::HomePath(rel)
            });
        }
        if text.starts_with('/') {
            let rel = RelPath::parse(text)?;
            let reserved = RESERVED_PATHS.iter().any(|reserved| {
                let reserved = RelPath(reserved.to_string());
                rel.starts_with(&reserved) && (!reserved.is_empty() || rel.is_empty())
            }) || RESERVED_EXACT.contains(&rel.as_str());
            if reserved {
                return Err(PermissionError::Reserved {
                    path: Escaped(text).to_string(),
                });
            }
            return Ok(FsLocation::Absolute(rel));
        }
        if text.starts_with("xdg-") {
            let (name, sub) = text.split_once('/').unwrap_or((text, ""));
            return Ok(FsLocation::Xdg(XdgDir::parse(name)?, RelPath::parse(sub)?));
        }
        Err(PermissionError::UnknownValue {
            key: "filesystem",
            value: Escaped(text).to_string(),
            expected: "host host-os host-etc home ~/PATH /PATH xdg-NAME[/PATH], each optionally with :ro :rw or :create",
        })
    }

    /// Whether revoking `self` also removes a grant of `other`.
    fn covers(&self, other: &FsLocation) -> bool {
        use FsLocation::*;
        match (self, other) {
            (a, b) if a == b => true,
            (Host, _) => true,
            (Home, HomePath(_)) => true,
            (Home, Xdg(dir, _)) => *dir != XdgDir::Run,
            (HomePath(a), HomePath(b)) => b.starts_with(a),
            (Xdg(da, a), Xdg(db, b)) => da == db && b.starts_with(a),
            (Absolute(a), Absolute(b)) => b.starts_with(a),
            _ => false,
        }
    }
}

impl fmt::Display for FsLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FsLocation::Host => f.write_str("host"),
            FsLocation::HostOs => f.write_str("host-os"),
            FsLocation::HostEtc => f.write_str("host-etc"),
            FsLocation::Home => f.write_str("home"),
            FsLocation::HomePath(path) => write!(f, "~/{}", path.as_str()),
            FsLocation::Xdg(dir, sub) if sub.is_empty() => f.write_str(dir.as_str()),
            FsLocation::Xdg(dir, sub) => write!(f, "{dir}/{}", sub.as_str()),
            FsLocation::Absolute(path) => write!(f, "/{}", path.as_str()),
        }
    }
}

/// One finish-arg: a grant or a revocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Share(Share, bool),
    Socket(Socket, bool),
    Device(Device, bool),
    Filesystem(FsLocation, FsAccess),
    NoFilesystem(FsLocation),
    TalkName(String, bool),
    OwnName(String, bool),
    SeeName(String, bool),
    Persist(RelPath),
    Env(String, String),
    UnsetEnv(String),
}

impl Change {
    /// Parses a Flatpak finish-arg such as `--filesystem=xdg-documents:ro`.
    pub fn parse(arg: &str) -> Result<Self, PermissionError> {
        check_line(arg).map_err(|e| PermissionError::Text(Escaped(arg).to_string(), e))?;
        let body = arg.strip_prefix("--").unwrap_or(arg);
        let Some((key, value)) = body.split_once('=') else {
            return Err(PermissionError::NoValue(Escaped(arg).to_string()));
        };
        let change = match key {
            "share" => Change::Share(Share::parse(value)?, true),
            "unshare" => Change::Share(Share::parse(value)?, false),
            "socket" => Change::Socket(Socket::parse(value)?, true),
            "nosocket" => Change::Socket(Socket::parse(value)?, false),
            "device" => Change::Device(Device::parse(value)?, true),
            "nodevice" => Change::Device(Device::parse(value)?, false),
            "filesystem" => {
                let (location, access) = value
                    .rsplit_once(':')
                    .and_then(|(location, mode)| Some((location, fs_mode(mode)?)))
                    .unwrap_or((value, FsAccess::ReadWrite));
                Change::Filesystem(FsLocation::parse(location)?, access)
            }
            "nofilesystem" => {
                let location = value.strip_suffix(":reset").unwrap_or(value);
                Change::NoFilesystem(FsLocation::parse(location)?)
            }
            "talk-name" => Change::TalkName(bus_name(value)?, true),
            "no-talk-name" => Change::TalkName(bus_name(value)?, false),
            "own-name" => Change::OwnName(bus_name(value)?, true),
            "no-own-name" => Change::OwnName(bus_name(value)?, false),
            "see-name" => Change::SeeName(bus_name(value)?, true),
            "no-see-name" => Change::SeeName(bus_name(value)?, false),
            "persist" => {
                let path = RelPath::parse(value)?;
                if path.is_empty() {
                    return Err(PermissionError::BadPath {
                        path: Escaped(value).to_string(),
                        problem: "persist needs a directory name under home",
                    });
                }
                Change::Persist(path)
            }
            "env" => {
                let (name, val) = value.split_once('=').unwrap_or((value, ""));
                Change::Env(env_name(name)?, val.to_owned())
            }
            "unset-env" => Change::UnsetEnv(env_name(value)?),
            _ => return Err(PermissionError::UnknownKey(Escaped(key).to_string())),
        };
        Ok(change)
    }
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let no =
            |granted: bool, yes: &'static str, no: &'static str| if granted { yes } else { no };
        match self {
            Change::Share(v, g) => write!(f, "--{}={v}", no(*g, "share", "unshare")),
            Change::Socket(v, g) => write!(f, "--{}={v}", no(*g, "socket", "nosocket")),
            Change::Device(v, g) => write!(f, "--{}={v}", no(*g, "device", "nodevice")),
            Change::Filesystem(location, access) => {
                // A location that itself ends in what reads as a mode (a
                // directory named `a:ro`) keeps its own `:rw`, or it would
                // read back as that mode.
                let location = location.to_string();
                let suffix = match access {
                    FsAccess::ReadOnly => ":ro",
                    FsAccess::ReadWrite
                        if last_word(&location).is_some_and(|w| fs_mode(w).is_some()) =>
                    {
                        ":rw"
                    }
                    FsAccess::ReadWrite => "",
                    FsAccess::Create => ":create",
                };
                write!(f, "--filesystem={location}{suffix}")
            }
            Change::NoFilesystem(location) => {
                // Likewise `:reset`, which the parser strips once.
                let location = location.to_string();
                let suffix = if last_word(&location) == Some("reset") {
                    ":reset"
                } else {
                    ""
                };
                write!(f, "--nofilesystem={location}{suffix}")
            }
            Change::TalkName(n, g) => write!(f, "--{}={n}", no(*g, "talk-name", "no-talk-name")),
            Change::OwnName(n, g) => write!(f, "--{}={n}", no(*g, "own-name", "no-own-name")),
            Change::SeeName(n, g) => write!(f, "--{}={n}", no(*g, "see-name", "no-see-name")),
            Change::Persist(path) => write!(f, "--persist={}", path.as_str()),
            Change::Env(name, value) => write!(f, "--env={name}={value}"),
            Change::UnsetEnv(name) => write!(f, "--unset-env={name}"),
        }
    }
}

/// The access a `--filesystem` mode word (after the last `:`) asks for.
fn fs_mode(word: &str) -> Option<FsAccess> {
    match word {
        "ro" => Some(FsAccess::ReadOnly),
        "rw" => Some(FsAccess::ReadWrite),
        "create" => Some(FsAccess::Create),
        _ => None,
    }
}

/// What follows the last `:` of `location`, which the parser would read as
/// a mode.
fn last_word(location: &str) -> Option<&str> {
    location.rsplit_once(':').map(|(_, word)| word)
}

fn bus_name(name: &str) -> Result<String, PermissionError> {
    let body = name.strip_suffix(".*").unwrap_or(name);
    let elements: Vec<&str> = body.split('.').collect();
    let valid = name.len() <= 255
        && elements.len() >= 2
        && elements.iter().all(|e| {
            e.chars().next().is_some_and(|c| !c.is_ascii_digit())
                && e.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        });
    if valid {
        Ok(name.to_owned())
    } else {
        Err(PermissionError::BadBusName(Escaped(name).to_string()))
    }
}

fn env_name(name: &str) -> Result<String, PermissionError> {
    let valid = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(name.to_owned())
    } else {
        Err(PermissionError::BadEnvName(Escaped(name).to_string()))
    }
}

/// The effective permissions of one launch, after the metadata and every override.
/// Ordered collections keep plans deterministic.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    pub shares: BTreeSet<Share>,
    pub sockets: BTreeSet<Socket>,
    pub devices: BTreeSet<Device>,
    pub filesystems: BTreeMap<FsLocation, FsAccess>,
    pub talk_names: BTreeSet<String>,
    pub own_names: BTreeSet<String>,
    pub see_names: BTreeSet<String>,
    pub persist: BTreeSet<RelPath>,
    pub env: BTreeMap<String, String>,
}

fn toggle<T: Ord>(set: &mut BTreeSet<T>, value: T, granted: bool) {
    if granted {
        set.insert(value);
    } else {
        set.remove(&value);
    }
}

impl Permissions {
    pub fn apply(&mut self, change: &Change) {
        match change.clone() {
            Change::Share(v, g) => toggle(&mut self.shares, v, g),
            Change::Socket(v, g) => toggle(&mut self.sockets, v, g),
            Change::Device(v, g) => toggle(&mut self.devices, v, g),
            Change::Filesystem(location, access) => {
                let entry = self.filesystems.entry(location).or_insert(access);
                *entry = (*entry).max(access);
            }
            Change::NoFilesystem(revoked) => self
                .filesystems
                .retain(|location, _| !revoked.covers(location)),
            Change::TalkName(n, g) => toggle(&mut self.talk_names, n, g),
            Change::OwnName(n, g) => toggle(&mut self.own_names, n, g),
            Change::SeeName(n, g) => toggle(&mut self.see_names, n, g),
            Change::Persist(path) => {
                self.persist.insert(path);
            }
            Change::Env(name, value) => {
                self.env.insert(name, value);
            }
            Change::UnsetEnv(name) => {
                self.env.remove(&name);
            }
        }
    }

    pub fn from_changes<'a>(changes: impl IntoIterator<Item = &'a Change>) -> Self {
        let mut permissions = Permissions::default();
        for change in changes {
            permissions.apply(change);
        }
        permissions
    }

    /// The grants as canonical finish-args: what is displayed is exactly what applies.
    pub fn to_args(&self) -> Vec<String> {
        let mut args = Vec::new();
        args.extend(
            self.shares
                .iter()
                .map(|v| Change::Share(*v, true).to_string()),
        );
        args.extend(
            self.sockets
                .iter()
                .map(|v| Change::Socket(*v, true).to_string()),
        );
        args.extend(
            self.devices
                .iter()
                .map(|v| Change::Device(*v, true).to_string()),
        );
        args.extend(
            self.filesystems
                .iter()
                .map(|(l, a)| Change::Filesystem(l.clone(), *a).to_string()),
        );
        args.extend(
            self.talk_names
                .iter()
                .map(|n| Change::TalkName(n.clone(), true).to_string()),
        );
        args.extend(
            self.own_names
                .iter()
                .map(|n| Change::OwnName(n.clone(), true).to_string()),
        );
        args.extend(
            self.see_names
                .iter()
                .map(|n| Change::SeeName(n.clone(), true).to_string()),
        );
        args.extend(
            self.persist
                .iter()
                .map(|p| Change::Persist(p.clone()).to_string()),
        );
        args.extend(
            self.env
                .iter()
                .map(|(n, v)| Change::Env(n.clone(), v.clone()).to_string()),
        );
        args
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(args: &[&str]) -> Permissions {
        let changes: Vec<Change> = args.iter().map(|a| Change::parse(a).unwrap()).collect();
        Permissions::from_changes(&changes)
    }

    #[test]
    fn finish_args_parse_with_and_without_dashes() {
        assert_eq!(
            Change::parse("--filesystem=xdg-documents:ro"),
            Ok(Change::Filesystem(
                FsLocation::Xdg(XdgDir::Documents, RelPath::default()),
                FsAccess::ReadOnly
            ))
        );
        assert_eq!(
            Change::parse("share=network"),
            Ok(Change::Share(Share::Network, true))
        );
        assert_eq!(
            Change::parse("--nosocket=x11"),
            Ok(Change::Socket(Socket::X11, false))
        );
        assert_eq!(
            Change::parse("--filesystem=~/Games:create"),
            Ok(Change::Filesystem(
                FsLocation::HomePath(RelPath("Games".into())),
                FsAccess::Create
            ))
        );
        assert_eq!(
            Change::parse("--env=GTK_THEME=Adwaita:dark"),
            Ok(Change::Env("GTK_THEME".into(), "Adwaita:dark".into()))
        );
    }

    #[test]
    fn canonical_form_round_trips() {
        for arg in [
            "--share=ipc",
            "--socket=pulseaudio",
            "--device=kvm",
            "--filesystem=/srv/media:ro",
            "--filesystem=xdg-download/Incoming:create",
            "--filesystem=home",
            "--nofilesystem=host",
            "--talk-name=org.freedesktop.Notifications",
            "--own-name=org.example.App.*",
            "--persist=.mozilla",
            "--env=A=b=c",
            "--unset-env=A",
        ] {
            assert_eq!(Change::parse(arg).unwrap().to_string(), arg);
        }
    }

    #[test]
    fn bad_permissions_are_named() {
        let err = |a: &str| Change::parse(a).unwrap_err().to_string();
        assert!(err("--socket=x12").contains("unknown value \"x12\""));
        assert!(err("--sharre=network").contains("unknown permission \"sharre\""));
        assert!(err("--filesystem=/home/../etc").contains("'..' is not allowed"));
        assert!(err("--filesystem=/usr/lib").contains("reserved"));
        assert!(err("--filesystem=/").contains("reserved"));
        assert!(err("--filesystem=/run").contains("reserved"));
        assert!(err("--filesystem=/run/user/1000").contains("reserved"));
        assert!(Change::parse("--filesystem=/run/media").is_ok());
        assert!(err("--filesystem=/var/tmp/x").contains("reserved"));
        assert!(err("--filesystem=Documents").contains("unknown value"));
        assert!(err("--filesystem=~/a\u{1b}[2J").contains("escape"));
        assert!(err("--env=1X=y").contains("env"));
        assert!(err("--talk-name=org").contains("bus name"));
        assert!(err("--persist=..").contains("'..'"));
        assert!(err("--share").contains("KEY=VALUE"));
    }

    #[test]
    fn revoking_a_location_removes_every_grant_inside_it() {
        let p = perms(&[
            "--filesystem=home",
            "--filesystem=~/Music:ro",
            "--filesystem=xdg-documents",
            "--filesystem=/srv/data",
            "--nofilesystem=home",
        ]);
        let left: Vec<String> = p.to_args();
        assert_eq!(left, vec!["--filesystem=/srv/data"]);
        let p = perms(&[
            "--filesystem=host",
            "--filesystem=/mnt",
            "--filesystem=host-etc",
            "--nofilesystem=host:reset",
        ]);
        assert!(p.filesystems.is_empty(), "{:?}", p.filesystems);
    }

    #[test]
    fn repeated_grants_merge_to_the_stronger_and_revocations_apply_in_order() {
        let p = perms(&[
            "--filesystem=/srv:ro",
            "--filesystem=/srv",
            "--filesystem=/srv:ro",
        ]);
        assert_eq!(p.to_args(), vec!["--filesystem=/srv"]);
        let p = perms(&["--share=network", "--unshare=network", "--socket=x11"]);
        assert_eq!(p.to_args(), vec!["--socket=x11"]);
    }
}
