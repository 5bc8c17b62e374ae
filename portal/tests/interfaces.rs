//! The portal's D-Bus interfaces match xdg-desktop-portal's, as apps and
//! toolkits expect them: a private dbus-daemon, the built `appbox-portal`
//! on it, and its introspection compared with the interface XML that
//! xdg-desktop-portal installs (`/usr/share/dbus-1/interfaces`).
//!
//! Every `org.freedesktop.portal.*` interface the portal exports at
//! `/org/freedesktop/portal/desktop` and `/org/freedesktop/portal/documents`
//! must have an XML file and match it: the same methods with the same
//! argument types and directions in order, the same signals with the same
//! argument types, and the same properties with the same types and access.
//! Argument names may differ.
//!
//! `org.freedesktop.portal.Request` objects exist only while a call is
//! pending, so that interface is checked on an object this test exports
//! itself with the portal's own `request::export` (the same type the
//! portal exports), introspected from a second connection.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use appbox_portal::service::{DESKTOP_BUS_NAME, DESKTOP_PATH, DOCUMENTS_BUS_NAME, DOCUMENTS_PATH};
use zbus::{Connection, OwnedVariant, Variant};

const XML_DIR: &str = "/usr/share/dbus-1/interfaces";
const PREFIX: &str = "org.freedesktop.portal.";

/// A private session bus with the portal on it; both stopped when dropped.
struct PortalOnBus {
    dir: PathBuf,
    address: String,
    daemon: Child,
    portal: Option<Child>,
}

impl PortalOnBus {
    fn start(tag: &str) -> PortalOnBus {
        let dir = std::env::temp_dir().join(format!(
            "appbox-portal-interfaces-{tag}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["home", "run"] {
            std::fs::create_dir_all(dir.join(sub)).unwrap();
            std::fs::set_permissions(dir.join(sub), std::fs::Permissions::from_mode(0o700))
                .unwrap();
        }
        let socket = dir.join("bus");
        let address = format!("unix:path={}", socket.display());
        let daemon = Command::new("/usr/bin/dbus-daemon")
            .args(["--session", "--nofork", "--nopidfile"])
            .arg(format!("--address={address}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("start dbus-daemon (install the dbus package)");
        let mut bus = PortalOnBus {
            dir,
            address,
            daemon,
            portal: None,
        };
        wait_until("the bus socket", || socket.exists());
        let portal = Command::new(env!("CARGO_BIN_EXE_appbox-portal"))
            .env_clear()
            .env("HOME", bus.dir.join("home"))
            .env("XDG_RUNTIME_DIR", bus.dir.join("run"))
            .env("PATH", "/usr/bin:/bin")
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .stdin(Stdio::null())
            .spawn()
            .expect("start appbox-portal");
        bus.portal = Some(portal);
        bus
    }

    async fn connect(&self) -> Connection {
        zbus::connection::Builder::address(self.address.as_str())
            .build()
            .await
            .expect("connect to the private bus")
    }

    async fn wait_for_portal(&mut self, connection: &Connection) {
        let start = Instant::now();
        loop {
            let reply = connection
                .call_method(
                    Some("org.freedesktop.DBus"),
                    "/org/freedesktop/DBus",
                    Some("org.freedesktop.DBus"),
                    "NameHasOwner",
                    &(DOCUMENTS_BUS_NAME,),
                )
                .await
                .unwrap();
            if reply.body().deserialize::<bool>().unwrap() {
                return;
            }
            if let Some(status) = self.portal.as_mut().unwrap().try_wait().unwrap() {
                panic!("appbox-portal exited with {status} before taking its names");
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "appbox-portal did not take its names"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for PortalOnBus {
    fn drop(&mut self) {
        if let Some(portal) = self.portal.as_mut() {
            let _ = portal.kill();
            let _ = portal.wait();
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// An interface as the comparison sees it: names and types, no arg names.
#[derive(Debug, Default, PartialEq, Eq)]
struct Shape {
    /// Method → its args' (type, direction), in order.
    methods: BTreeMap<String, Vec<(String, String)>>,
    /// Signal → its args' types, in order.
    signals: BTreeMap<String, Vec<String>>,
    /// Property → (type, access).
    properties: BTreeMap<String, (String, String)>,
}

/// The interfaces of an introspection document's root node (not of its
/// child nodes).
fn shapes(xml: &str) -> BTreeMap<String, Shape> {
    let doc = roxmltree::Document::parse_with_options(
        xml,
        roxmltree::ParsingOptions {
            allow_dtd: true,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("bad introspection XML ({e}):\n{xml}"));
    fn elements<'a, 'i>(node: roxmltree::Node<'a, 'i>, name: &str) -> Vec<roxmltree::Node<'a, 'i>> {
        node.children()
            .filter(|n| n.is_element() && n.tag_name().name() == name)
            .collect()
    }
    fn attr(node: roxmltree::Node<'_, '_>, name: &str) -> String {
        node.attribute(name).unwrap_or("").to_owned()
    }
    let mut out = BTreeMap::new();
    for iface in elements(doc.root_element(), "interface") {
        let mut shape = Shape::default();
        for method in elements(iface, "method") {
            let args = elements(method, "arg")
                .into_iter()
                .map(|arg| {
                    let direction = arg.attribute("direction").unwrap_or("in").to_owned();
                    (attr(arg, "type"), direction)
                })
                .collect();
            shape.methods.insert(attr(method, "name"), args);
        }
        for signal in elements(iface, "signal") {
            let args = elements(signal, "arg")
                .into_iter()
                .map(|arg| attr(arg, "type"))
                .collect();
            shape.signals.insert(attr(signal, "name"), args);
        }
        for property in elements(iface, "property") {
            shape.properties.insert(
                attr(property, "name"),
                (attr(property, "type"), attr(property, "access")),
            );
        }
        out.insert(attr(iface, "name"), shape);
    }
    out
}

/// What differs between the portal's interface and the XML's, one line each.
fn differences(name: &str, portal: &Shape, xml: &Shape) -> Vec<String> {
    let mut out = Vec::new();
    fn compare<V: PartialEq + std::fmt::Debug>(
        out: &mut Vec<String>,
        what: &str,
        portal: &BTreeMap<String, V>,
        xml: &BTreeMap<String, V>,
    ) {
        for (member, expected) in xml {
            match portal.get(member) {
                None => out.push(format!("{what} {member} is missing")),
                Some(got) if got != expected => out.push(format!(
                    "{what} {member}: the portal has {got:?}, the XML {expected:?}"
                )),
                Some(_) => {}
            }
        }
        for member in portal.keys().filter(|m| !xml.contains_key(*m)) {
            out.push(format!("{what} {member} is not in the XML"));
        }
    }
    compare(&mut out, "method", &portal.methods, &xml.methods);
    compare(&mut out, "signal", &portal.signals, &xml.signals);
    compare(&mut out, "property", &portal.properties, &xml.properties);
    out.into_iter().map(|d| format!("{name}: {d}")).collect()
}

async fn introspect(connection: &Connection, destination: &str, path: &str) -> String {
    connection
        .call_method(
            Some(destination),
            path,
            Some("org.freedesktop.DBus.Introspectable"),
            "Introspect",
            &(),
        )
        .await
        .unwrap_or_else(|e| panic!("introspect {path}: {e}"))
        .body()
        .deserialize()
        .unwrap()
}

/// A connection, on a thread and runtime of its own, that exports one
/// Request with the portal's `request::export`; it ends when dropped.
struct RequestOwner {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RequestOwner {
    fn start(address: &str) -> (String, String, RequestOwner) {
        let (ready, exported) = std::sync::mpsc::channel();
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let address = address.to_owned();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let owner = zbus::connection::Builder::address(address.as_str())
                    .build()
                    .await
                    .unwrap();
                let unique = owner.unique_name().unwrap().to_string();
                let path =
                    appbox_portal::request::handle_path(&unique, Some("interfaces")).unwrap();
                let _closed = appbox_portal::request::export(owner.object_server(), &path, &unique)
                    .await
                    .unwrap();
                ready.send((unique, path.to_string())).unwrap();
                while let Err(std::sync::mpsc::TryRecvError::Empty) = stopped.try_recv() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
        });
        let (unique, path) = exported.recv().expect("export a Request");
        let owner = RequestOwner {
            stop: Some(stop),
            thread: Some(thread),
        };
        (unique, path, owner)
    }
}

impl Drop for RequestOwner {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Compares every portal interface in `xml` (an introspection) with its
/// file; the names checked, and the differences found.
fn check(xml: &str, checked: &mut Vec<String>, problems: &mut Vec<String>) {
    for (name, shape) in shapes(xml) {
        if !name.starts_with(PREFIX) {
            continue;
        }
        let file = Path::new(XML_DIR).join(format!("{name}.xml"));
        let Ok(text) = std::fs::read_to_string(&file) else {
            problems.push(format!(
                "{name} is exported, but there is no {} to check it against",
                file.display()
            ));
            continue;
        };
        let expected = shapes(&text);
        let Some(expected) = expected.get(&name) else {
            problems.push(format!("{} does not define {name}", file.display()));
            continue;
        };
        problems.extend(differences(&name, &shape, expected));
        checked.push(name);
    }
}

#[tokio::test]
async fn every_portal_interface_matches_xdg_desktop_portal() {
    assert!(
        Path::new(XML_DIR)
            .join("org.freedesktop.portal.FileChooser.xml")
            .is_file(),
        "{XML_DIR} has no portal interfaces; install xdg-desktop-portal-dev (tests/bootstrap.sh does)"
    );
    let mut bus = PortalOnBus::start("all");
    let client = bus.connect().await;
    bus.wait_for_portal(&client).await;

    let mut checked = Vec::new();
    let mut problems = Vec::new();
    let desktop = introspect(&client, DESKTOP_BUS_NAME, DESKTOP_PATH).await;
    check(&desktop, &mut checked, &mut problems);
    let documents = introspect(&client, DOCUMENTS_BUS_NAME, DOCUMENTS_PATH).await;
    check(&documents, &mut checked, &mut problems);

    // A Request, exported by the portal's own code on a connection of ours,
    // served by a thread of its own.
    let (unique, path, _owner) = RequestOwner::start(&bus.address);
    // zbus starts a connection's object server in a task of its own, and
    // drops calls that arrive before that task listens: ask until it does.
    let mut request = None;
    for _ in 0..10 {
        let call = introspect(&client, &unique, &path);
        if let Ok(xml) = tokio::time::timeout(Duration::from_secs(2), call).await {
            request = Some(xml);
            break;
        }
    }
    let request = request.expect("the Request object never answered Introspect");
    check(&request, &mut checked, &mut problems);

    eprintln!("checked against {XML_DIR}: {}", checked.join(", "));
    assert!(problems.is_empty(), "mismatches:\n{}", problems.join("\n"));
    for expected in [
        "FileChooser",
        "OpenURI",
        "Notification",
        "Settings",
        "Documents",
        "Request",
    ] {
        let name = format!("{PREFIX}{expected}");
        assert!(
            checked.contains(&name),
            "{name} was not exported; checked {checked:?}"
        );
    }
}

#[test]
fn the_comparison_catches_changed_types_directions_and_members() {
    let xml = r#"<node><interface name="org.freedesktop.portal.X">
        <method name="M"><arg type="s" name="a"/><arg type="o" direction="out"/></method>
        <signal name="S"><arg type="u"/></signal>
        <property name="version" type="u" access="read"/>
    </interface></node>"#;
    let base = &shapes(xml)["org.freedesktop.portal.X"];
    assert!(differences("X", base, base).is_empty());
    for changed in [
        xml.replace(r#"type="s" name="a""#, r#"type="u" name="a""#),
        xml.replace(r#"direction="out""#, r#"direction="in""#),
        xml.replace(
            r#"<signal name="S"><arg type="u"/>"#,
            r#"<signal name="S"><arg type="s"/>"#,
        ),
        xml.replace(r#"access="read""#, r#"access="readwrite""#),
        xml.replace(r#"name="M""#, r#"name="N""#),
        xml.replace(r#"<arg type="s" name="a"/>"#, ""),
    ] {
        let other = &shapes(&changed)["org.freedesktop.portal.X"];
        assert!(!differences("X", other, base).is_empty(), "{changed}");
    }
    // Argument names do not matter.
    let renamed = xml.replace(r#"name="a""#, r#"name="b""#);
    assert!(differences("X", &shapes(&renamed)["org.freedesktop.portal.X"], base).is_empty());
}

/// Settings answer host callers too (they are not sensitive): Read wraps
/// its value in a second variant, as xdg-desktop-portal 1.16 does, and an
/// unknown key is NotFound.
#[tokio::test]
async fn settings_read_and_read_all() {
    let mut bus = PortalOnBus::start("settings");
    let client = bus.connect().await;
    bus.wait_for_portal(&client).await;
    let call = |method: &'static str, body: (Vec<&'static str>,)| {
        let client = client.clone();
        async move {
            client
                .call_method(
                    Some(DESKTOP_BUS_NAME),
                    DESKTOP_PATH,
                    Some("org.freedesktop.portal.Settings"),
                    method,
                    &body,
                )
                .await
        }
    };
    let all = call("ReadAll", (vec!["org.freedesktop.*"],)).await.unwrap();
    let all: BTreeMap<String, BTreeMap<String, OwnedVariant>> = all.body().deserialize().unwrap();
    assert_eq!(
        all.keys().collect::<Vec<_>>(),
        ["org.freedesktop.appearance"],
        "{all:?}"
    );
    assert!(matches!(
        &*all["org.freedesktop.appearance"]["color-scheme"],
        Variant::U32(0..=2)
    ));
    let read = |ns: &'static str, key: &'static str| {
        let client = client.clone();
        async move {
            client
                .call_method(
                    Some(DESKTOP_BUS_NAME),
                    DESKTOP_PATH,
                    Some("org.freedesktop.portal.Settings"),
                    "Read",
                    &(ns, key),
                )
                .await
        }
    };
    let value = read("org.freedesktop.appearance", "color-scheme")
        .await
        .unwrap();
    let value: OwnedVariant = value.body().deserialize().unwrap();
    assert!(
        matches!(&*value, Variant::Variant(inner) if matches!(**inner, Variant::U32(0..=2))),
        "{value:?}"
    );
    for (ns, key) in [
        ("org.freedesktop.appearance", "no-such-key"),
        ("org.example.None", "color-scheme"),
    ] {
        let err = read(ns, key).await.unwrap_err().to_string();
        assert!(
            err.contains("org.freedesktop.portal.Error.NotFound"),
            "{ns} {key}: {err}"
        );
    }
}
