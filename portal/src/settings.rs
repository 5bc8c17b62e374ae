//! `org.freedesktop.portal.Settings`: the host's appearance settings, so
//! sandboxed GTK apps follow the host's theme.
//!
//! Served keys ([`KEYS`]): `org.freedesktop.appearance` `color-scheme` (u)
//! and `accent-color` (`(ddd)`, when the host has one), and
//! `org.gnome.desktop.interface` `gtk-theme`, `icon-theme`, `font-name`,
//! `color-scheme`, `cursor-theme`, `cursor-size`, `text-scaling-factor` and
//! `enable-animations`. Nothing else is passed, whatever the source has.
//!
//! Where the values come from, decided once at start:
//! 1. The host's own xdg-desktop-portal, if it runs on the host bus as
//!    `org.freedesktop.portal.Desktop` (it is not started for this): its
//!    ReadAll, and then its SettingChanged, taken only from the connection
//!    that owned the name at start.
//! 2. Else GSettings, through `/usr/bin/gsettings list-recursively` and a
//!    long-running `gsettings monitor` for changes, run directly (no shell)
//!    with the same sanitized environment as the URI handler.
//! 3. Else defaults: `color-scheme` 0 (no preference).
//!
//! Values are cached; each change is broadcast as SettingChanged from
//! `/org/freedesktop/portal/desktop`. Read answers a variant inside a
//! variant, as xdg-desktop-portal 1.16 (version 1 of the interface) does,
//! which toolkits expect.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use zbus::object_server::SignalEmitter;
use zbus::{interface, Connection, OwnedVariant, Variant};

use crate::error::PortalError;
use crate::service::DESKTOP_PATH;

pub const INTERFACE: &str = "org.freedesktop.portal.Settings";
pub const APPEARANCE: &str = "org.freedesktop.appearance";
pub const GNOME_INTERFACE: &str = "org.gnome.desktop.interface";
/// The host's xdg-desktop-portal, on the host bus.
pub const HOST_PORTAL: &str = "org.freedesktop.portal.Desktop";
pub const GSETTINGS: &str = "/usr/bin/gsettings";
/// The longest string value passed on.
pub const MAX_STRING: usize = 256;
const HOST_TIMEOUT: Duration = Duration::from_secs(5);

/// The type of a served key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    U32,
    I32,
    F64,
    Bool,
    Str,
    Rgb,
}

/// Every key served: namespace, key, type.
pub const KEYS: &[(&str, &str, Kind)] = &[
    (APPEARANCE, "color-scheme", Kind::U32),
    (APPEARANCE, "accent-color", Kind::Rgb),
    (GNOME_INTERFACE, "gtk-theme", Kind::Str),
    (GNOME_INTERFACE, "icon-theme", Kind::Str),
    (GNOME_INTERFACE, "font-name", Kind::Str),
    (GNOME_INTERFACE, "color-scheme", Kind::Str),
    (GNOME_INTERFACE, "cursor-theme", Kind::Str),
    (GNOME_INTERFACE, "cursor-size", Kind::I32),
    (GNOME_INTERFACE, "text-scaling-factor", Kind::F64),
    (GNOME_INTERFACE, "enable-animations", Kind::Bool),
];

/// A served value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U32(u32),
    I32(i32),
    F64(f64),
    Bool(bool),
    Str(String),
    Rgb(f64, f64, f64),
}

impl Value {
    pub fn to_variant(&self) -> Variant<'static> {
        match self {
            Value::U32(v) => Variant::from(*v),
            Value::I32(v) => Variant::from(*v),
            Value::F64(v) => Variant::from(*v),
            Value::Bool(v) => Variant::from(*v),
            Value::Str(v) => Variant::from(v.clone()),
            Value::Rgb(r, g, b) => Variant::from((*r, *g, *b)),
        }
    }
}

fn kind_of(namespace: &str, key: &str) -> Option<Kind> {
    KEYS.iter()
        .find(|(ns, k, _)| *ns == namespace && *k == key)
        .map(|(_, _, kind)| *kind)
}

/// A value from a source, if the key is served and the value has its type
/// (and is sane: short strings without control characters, colours in
/// range).
pub fn accept(namespace: &str, key: &str, value: &Variant<'_>) -> Option<Value> {
    let kind = kind_of(namespace, key)?;
    let value = match value {
        Variant::Variant(inner) => inner,
        v => v,
    };
    match (kind, value) {
        (Kind::U32, Variant::U32(v)) => Some(Value::U32(*v)),
        (Kind::I32, Variant::I32(v)) => Some(Value::I32(*v)),
        (Kind::F64, Variant::F64(v)) if v.is_finite() => Some(Value::F64(*v)),
        (Kind::Bool, Variant::Bool(v)) => Some(Value::Bool(*v)),
        (Kind::Str, Variant::Str(s)) => {
            let s = s.as_str();
            (s.len() <= MAX_STRING && !s.chars().any(char::is_control))
                .then(|| Value::Str(s.to_owned()))
        }
        (Kind::Rgb, Variant::Structure(st)) => match st.fields() {
            [Variant::F64(r), Variant::F64(g), Variant::F64(b)]
                if [r, g, b].iter().all(|c| (0.0..=1.0).contains(*c)) =>
            {
                Some(Value::Rgb(*r, *g, *b))
            }
            _ => None,
        },
        _ => None,
    }
}

/// Whether `namespace` matches one of `patterns`, as xdg-desktop-portal
/// matches them: no pattern or an empty one matches all, and a trailing
/// `*` matches any namespace that starts with what comes before it.
pub fn namespace_matches(namespace: &str, patterns: &[String]) -> bool {
    patterns.is_empty()
        || patterns.iter().any(|p| {
            p.is_empty()
                || p == namespace
                || p.strip_suffix('*')
                    .is_some_and(|prefix| namespace.starts_with(prefix))
        })
}

type Values = BTreeMap<(String, String), Value>;

/// `org.gnome.desktop.interface color-scheme` as the portal's number.
fn appearance_scheme(gnome: &str) -> u32 {
    match gnome {
        "prefer-dark" => 1,
        "prefer-light" => 2,
        _ => 0,
    }
}

/// A value in GVariant's text format, as gsettings prints them, for a
/// served key of `org.gnome.desktop.interface`.
pub fn parse_gsettings_value(key: &str, text: &str) -> Option<Value> {
    let text = text.trim();
    match kind_of(GNOME_INTERFACE, key)? {
        Kind::Str => unquote(text).map(Value::Str),
        Kind::I32 => text.parse().ok().map(Value::I32),
        Kind::F64 => text
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(Value::F64),
        Kind::Bool => text.parse().ok().map(Value::Bool),
        Kind::U32 | Kind::Rgb => None,
    }
}

/// A GVariant text string: '...' or "...", with backslash escapes.
fn unquote(text: &str) -> Option<String> {
    let quote = text.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let inner = text.strip_prefix(quote)?.strip_suffix(quote)?;
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            other => out.push(other),
        }
    }
    (out.len() <= MAX_STRING && !out.chars().any(char::is_control)).then_some(out)
}

/// Parses one line of `gsettings list-recursively SCHEMA` (`schema key
/// value`) or of `gsettings monitor SCHEMA` (`key: value`) into the values
/// it sets: the GNOME key, plus the portal's color-scheme for it.
pub fn parse_gsettings_line(line: &str) -> Vec<(String, String, Value)> {
    let (key, text) = match line.strip_prefix(GNOME_INTERFACE) {
        Some(rest) => match rest.trim_start().split_once(' ') {
            Some(pair) => pair,
            None => return vec![],
        },
        None => match line.split_once(": ") {
            Some(pair) => pair,
            None => return vec![],
        },
    };
    let Some(value) = parse_gsettings_value(key, text) else {
        return vec![];
    };
    let mut out = Vec::new();
    if let (true, Value::Str(scheme)) = (key == "color-scheme", &value) {
        out.push((
            APPEARANCE.to_owned(),
            "color-scheme".to_owned(),
            Value::U32(appearance_scheme(scheme)),
        ));
    }
    out.push((GNOME_INTERFACE.to_owned(), key.to_owned(), value));
    out
}

/// Where the values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    HostPortal,
    GSettings,
    Defaults,
}

pub struct Settings {
    values: Arc<RwLock<Values>>,
}

impl Settings {
    /// Reads the settings from the first source that has them, and starts
    /// following its changes.
    pub async fn start(connection: &Connection) -> Settings {
        let values = Arc::new(RwLock::new(Values::new()));
        let source = match from_host_portal(connection, &values).await {
            Ok(true) => Source::HostPortal,
            Ok(false) => from_gsettings(connection, &values),
            Err(e) => {
                eprintln!("appbox-portal: cannot read the host portal's settings: {e}");
                from_gsettings(connection, &values)
            }
        };
        let mut all = values.write().unwrap_or_else(|e| e.into_inner());
        all.entry((APPEARANCE.to_owned(), "color-scheme".to_owned()))
            .or_insert(Value::U32(0));
        drop(all);
        eprintln!("appbox-portal: settings from {source:?}");
        Settings { values }
    }

    /// Serves fixed values (tests).
    pub fn with_values(values: impl IntoIterator<Item = (String, String, Value)>) -> Settings {
        let values = values
            .into_iter()
            .map(|(ns, key, value)| ((ns, key), value))
            .collect();
        Settings {
            values: Arc::new(RwLock::new(values)),
        }
    }

    fn values(&self) -> std::sync::RwLockReadGuard<'_, Values> {
        self.values.read().unwrap_or_else(|e| e.into_inner())
    }
}

#[interface(name = "org.freedesktop.portal.Settings")]
impl Settings {
    fn read_all(
        &self,
        namespaces: Vec<String>,
    ) -> Result<HashMap<String, HashMap<String, OwnedVariant>>, PortalError> {
        let mut out: HashMap<String, HashMap<String, OwnedVariant>> = HashMap::new();
        for ((ns, key), value) in self.values().iter() {
            if namespace_matches(ns, &namespaces) {
                let value = OwnedVariant::try_from(value.to_variant())
                    .map_err(|e| PortalError::Failed(e.to_string()))?;
                out.entry(ns.clone())
                    .or_default()
                    .insert(key.clone(), value);
            }
        }
        Ok(out)
    }

    fn read(&self, namespace: &str, key: &str) -> Result<OwnedVariant, PortalError> {
        let values = self.values();
        let value = values
            .get(&(namespace.to_owned(), key.to_owned()))
            .ok_or_else(|| {
                PortalError::NotFound(format!("there is no setting {key:?} in {namespace:?}"))
            })?;
        OwnedVariant::try_from(Variant::Variant(Box::new(value.to_variant())))
            .map_err(|e| PortalError::Failed(e.to_string()))
    }

    #[zbus(signal)]
    async fn setting_changed(
        emitter: &SignalEmitter<'_>,
        namespace: &str,
        key: &str,
        value: Variant<'_>,
    ) -> zbus::Result<()>;

    #[zbus(property(emits_changed_signal = "const"), name = "version")]
    fn version(&self) -> u32 {
        1
    }
}

/// Stores `value` and broadcasts it if it changed.
async fn update(
    connection: &Connection,
    values: &RwLock<Values>,
    ns: String,
    key: String,
    value: Value,
) {
    {
        let mut all = values.write().unwrap_or_else(|e| e.into_inner());
        let slot = (ns.clone(), key.clone());
        if all.get(&slot) == Some(&value) {
            return;
        }
        all.insert(slot, value.clone());
    }
    let sent = match SignalEmitter::new(connection, DESKTOP_PATH) {
        Ok(emitter) => Settings::setting_changed(&emitter, &ns, &key, value.to_variant()).await,
        Err(e) => Err(e),
    };
    if let Err(e) = sent {
        eprintln!("appbox-portal: cannot announce the change of {ns} {key}: {e}");
    }
}

/// Reads the host portal's settings, if it runs; `Ok(false)` if not.
async fn from_host_portal(
    connection: &Connection,
    values: &Arc<RwLock<Values>>,
) -> zbus::Result<bool> {
    let dbus = |method: &'static str| {
        connection.call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus"),
            method,
            &(HOST_PORTAL,),
        )
    };
    if !dbus("NameHasOwner").await?.body().deserialize::<bool>()? {
        return Ok(false);
    }
    let owner: String = dbus("GetNameOwner").await?.body().deserialize()?;
    // Listen before reading, so no change falls in between.
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .sender(owner.as_str())
        .interface(INTERFACE)
        .member("SettingChanged")
        .path(DESKTOP_PATH)
        .build()?;
    let stream = zbus::MessageStream::for_match_rule(rule, connection, None).await?;
    // Asked by its unique name, so nothing is started for it.
    let reply = tokio::time::timeout(
        HOST_TIMEOUT,
        connection.call_method(
            Some(owner.as_str()),
            DESKTOP_PATH,
            Some(INTERFACE),
            "ReadAll",
            &(vec![APPEARANCE, GNOME_INTERFACE],),
        ),
    )
    .await
    .map_err(|_| zbus::Error::Failure("the host portal did not answer ReadAll".into()))??;
    let all: HashMap<String, HashMap<String, OwnedVariant>> = reply.body().deserialize()?;
    {
        let mut stored = values.write().unwrap_or_else(|e| e.into_inner());
        for (ns, keys) in &all {
            for (key, value) in keys {
                if let Some(value) = accept(ns, key, value) {
                    stored.insert((ns.clone(), key.clone()), value);
                }
            }
        }
    }
    let connection = connection.clone();
    let values = values.clone();
    tokio::spawn(async move {
        let mut stream = stream;
        while let Some(message) = crate::notification::next(&mut stream).await {
            let Ok(message) = message else { continue };
            // The rule names the sender, but the stream may see others'
            // messages matched by other rules; check it here too.
            if message.header().sender().map(|s| s.as_str()) != Some(owner.as_str()) {
                continue;
            }
            let Ok((ns, key, value)) = message
                .body()
                .deserialize::<(String, String, OwnedVariant)>()
            else {
                continue;
            };
            if let Some(value) = accept(&ns, &key, &value) {
                update(&connection, &values, ns, key, value).await;
            }
        }
    });
    Ok(true)
}

/// `gsettings ARGS` with the sanitized host environment; its stdout.
fn gsettings_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(GSETTINGS);
    cmd.args(args)
        .env_clear()
        .envs(crate::open_uri::host_env(std::env::vars_os()))
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    cmd
}

/// Reads GSettings and follows its changes; Defaults if it cannot.
fn from_gsettings(connection: &Connection, values: &Arc<RwLock<Values>>) -> Source {
    let listed = gsettings_command(&["list-recursively", GNOME_INTERFACE]).output();
    let output = match listed {
        Ok(output) if output.status.success() => output,
        Ok(output) => {
            eprintln!(
                "appbox-portal: {GSETTINGS} cannot read {GNOME_INTERFACE} ({}); using default settings",
                output.status
            );
            return Source::Defaults;
        }
        Err(e) => {
            eprintln!("appbox-portal: cannot run {GSETTINGS} ({e}); using default settings");
            return Source::Defaults;
        }
    };
    {
        let mut stored = values.write().unwrap_or_else(|e| e.into_inner());
        for line in String::from_utf8_lossy(&output.stdout).lines() {
            for (ns, key, value) in parse_gsettings_line(line) {
                stored.insert((ns, key), value);
            }
        }
    }
    follow_gsettings(connection, values);
    Source::GSettings
}

/// Runs `gsettings monitor` for as long as the portal runs, and applies
/// each change it prints.
fn follow_gsettings(connection: &Connection, values: &Arc<RwLock<Values>>) {
    let (changes, mut received) = tokio::sync::mpsc::unbounded_channel();
    let watcher = std::thread::Builder::new()
        .name("appbox-gsettings-monitor".into())
        .spawn(move || {
            let mut cmd = gsettings_command(&["monitor", GNOME_INTERFACE]);
            // SAFETY: runs in the forked child before exec and only calls
            // prctl, which is async-signal-safe. The parent-death signal
            // is tied to this thread, which lives as long as the monitor.
            unsafe {
                cmd.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let mut child = match cmd.spawn() {
                Ok(child) => child,
                Err(e) => {
                    eprintln!("appbox-portal: cannot follow GSettings changes: {e}");
                    return;
                }
            };
            if let Some(stdout) = child.stdout.take() {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    for change in parse_gsettings_line(&line) {
                        if changes.send(change).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = child.kill();
            let _ = child.wait();
        });
    if let Err(e) = watcher {
        eprintln!("appbox-portal: cannot follow GSettings changes: {e}");
        return;
    }
    let connection = connection.clone();
    let values = values.clone();
    tokio::spawn(async move {
        while let Some((ns, key, value)) = received.recv().await {
            update(&connection, &values, ns, key, value).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaces_match_like_xdg_desktop_portal() {
        let p = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(namespace_matches(APPEARANCE, &p(&[])));
        assert!(namespace_matches(APPEARANCE, &p(&[""])));
        assert!(namespace_matches(APPEARANCE, &p(&[APPEARANCE])));
        assert!(namespace_matches(GNOME_INTERFACE, &p(&["org.gnome.*"])));
        assert!(namespace_matches(GNOME_INTERFACE, &p(&["*"])));
        assert!(!namespace_matches(APPEARANCE, &p(&["org.gnome.*"])));
        assert!(!namespace_matches(APPEARANCE, &p(&["org.freedesktop"])));
        assert!(!namespace_matches("org.gnomeish", &p(&["org.gnome.*"])));
    }

    #[test]
    fn only_served_keys_of_the_right_type_are_accepted() {
        assert_eq!(
            accept(APPEARANCE, "color-scheme", &Variant::from(1u32)),
            Some(Value::U32(1))
        );
        // Sources may wrap once more, as Read does.
        assert_eq!(
            accept(
                APPEARANCE,
                "color-scheme",
                &Variant::Variant(Box::new(Variant::from(2u32)))
            ),
            Some(Value::U32(2))
        );
        assert_eq!(
            accept(APPEARANCE, "color-scheme", &Variant::from("dark")),
            None
        );
        assert_eq!(accept(APPEARANCE, "secret", &Variant::from(1u32)), None);
        assert_eq!(
            accept("org.example", "color-scheme", &Variant::from(1u32)),
            None
        );
        assert_eq!(
            accept(APPEARANCE, "accent-color", &Variant::from((0.1, 0.2, 0.3))),
            Some(Value::Rgb(0.1, 0.2, 0.3))
        );
        assert_eq!(
            accept(APPEARANCE, "accent-color", &Variant::from((0.1, 2.0, 0.3))),
            None
        );
        assert_eq!(
            accept(
                GNOME_INTERFACE,
                "gtk-theme",
                &Variant::from("Adwaita\u{1b}[31m")
            ),
            None
        );
        assert_eq!(
            accept(
                GNOME_INTERFACE,
                "gtk-theme",
                &Variant::from("x".repeat(MAX_STRING + 1))
            ),
            None
        );
    }

    #[test]
    fn gsettings_output_is_parsed() {
        let listed = "org.gnome.desktop.interface color-scheme 'prefer-dark'\n\
                      org.gnome.desktop.interface cursor-size 24\n\
                      org.gnome.desktop.interface font-name 'Cantarell 11'\n\
                      org.gnome.desktop.interface gtk-theme \"Adwaita's\"\n\
                      org.gnome.desktop.interface text-scaling-factor 1.25\n\
                      org.gnome.desktop.interface enable-animations false\n\
                      org.gnome.desktop.interface clock-format '24h'\n\
                      org.gnome.desktop.interface scaling-factor uint32 0\n";
        let parsed: Vec<_> = listed.lines().flat_map(parse_gsettings_line).collect();
        let get = |ns: &str, key: &str| {
            parsed
                .iter()
                .find(|(n, k, _)| n == ns && k == key)
                .map(|(_, _, v)| v.clone())
        };
        assert_eq!(get(APPEARANCE, "color-scheme"), Some(Value::U32(1)));
        assert_eq!(
            get(GNOME_INTERFACE, "color-scheme"),
            Some(Value::Str("prefer-dark".into()))
        );
        assert_eq!(get(GNOME_INTERFACE, "cursor-size"), Some(Value::I32(24)));
        assert_eq!(
            get(GNOME_INTERFACE, "font-name"),
            Some(Value::Str("Cantarell 11".into()))
        );
        assert_eq!(
            get(GNOME_INTERFACE, "gtk-theme"),
            Some(Value::Str("Adwaita's".into()))
        );
        assert_eq!(
            get(GNOME_INTERFACE, "text-scaling-factor"),
            Some(Value::F64(1.25))
        );
        assert_eq!(
            get(GNOME_INTERFACE, "enable-animations"),
            Some(Value::Bool(false))
        );
        assert_eq!(get(GNOME_INTERFACE, "clock-format"), None);
        assert_eq!(parsed.len(), 7);
        // `gsettings monitor` prints `key: value`.
        assert_eq!(
            parse_gsettings_line("color-scheme: 'prefer-light'"),
            vec![
                (APPEARANCE.into(), "color-scheme".into(), Value::U32(2)),
                (
                    GNOME_INTERFACE.into(),
                    "color-scheme".into(),
                    Value::Str("prefer-light".into())
                ),
            ]
        );
        assert!(parse_gsettings_line("gtk-theme: 'a\\nb'").is_empty());
    }
}
