//! The sandbox's session bus is appbox's filtering proxy: a real dbus-daemon
//! on the host, a real service on it, and dbus-send inside the sandbox.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use appbox_tests::{describe, require_programs, SessionBus, World};

const SERVICE: &str = r#"
from gi.repository import Gio, GLib
xml = "<node><interface name='org.example.Service'><method name='Ping'><arg type='s' direction='out'/></method></interface></node>"
interface = Gio.DBusNodeInfo.new_for_xml(xml).interfaces[0]
def call(conn, sender, path, iface, method, params, invocation):
    invocation.return_value(GLib.Variant('(s)', ('pong',)))
def bus_acquired(conn, name):
    conn.register_object('/org/example/Service', interface, call, None, None)
Gio.bus_own_name(Gio.BusType.SESSION, 'org.example.Service', 0, bus_acquired, None, None)
GLib.MainLoop().run()
"#;

/// A session bus with a service owning `org.example.Service` on it.
fn bus_with_service(world: &World) -> SessionBus {
    require_programs(&["/usr/bin/python3"]);
    let mut bus = SessionBus::start(world);
    bus.spawn(world, Path::new("/usr/bin/python3"), &["-c", SERVICE], &[]);
    bus.wait_for_name(world, "org.example.Service");
    bus
}

/// An unpacked app whose command is the host's dbus-send.
fn dbus_send_app(world: &World, permissions: &[&str]) -> PathBuf {
    world.host_app("org.appbox.BusTest", "/usr/bin/dbus-send", permissions)
}

fn run(world: &World, bus: Option<&SessionBus>, app: &Path, args: &[&str]) -> Output {
    let mut cmd = world.run_app(app, &[], args);
    if let Some(bus) = bus {
        cmd.env("DBUS_SESSION_BUS_ADDRESS", bus.address());
    }
    cmd.stdin(Stdio::null()).output().unwrap()
}

const LIST_NAMES: &[&str] = &[
    "--session",
    "--print-reply",
    "--dest=org.freedesktop.DBus",
    "/org/freedesktop/DBus",
    "org.freedesktop.DBus.ListNames",
];
const PING: &[&str] = &[
    "--session",
    "--print-reply",
    "--dest=org.example.Service",
    "/org/example/Service",
    "org.example.Service.Ping",
];

#[test]
fn the_sandbox_bus_shows_only_what_the_app_may_talk_to() {
    let world = World::new();
    let bus = bus_with_service(&world);

    // No bus permissions: the service is neither listed nor reachable.
    let plain = dbus_send_app(&world, &[]);
    let names = run(&world, Some(&bus), &plain, LIST_NAMES);
    assert!(names.status.success(), "{}", describe(&names));
    let listed = String::from_utf8_lossy(&names.stdout);
    assert!(
        listed.contains("org.freedesktop.DBus") && !listed.contains("org.example.Service"),
        "{listed}"
    );
    let ping = run(&world, Some(&bus), &plain, PING);
    assert!(!ping.status.success(), "{}", describe(&ping));
    assert!(
        String::from_utf8_lossy(&ping.stderr).contains("ServiceUnknown"),
        "{}",
        describe(&ping)
    );

    // Eavesdropping is refused, in the spelling xdg-dbus-proxy 0.1.7 let through too.
    for rule in ["eavesdrop=true", "eavesdrop =true"] {
        let mut args = LIST_NAMES[..4].to_vec();
        args.push("org.freedesktop.DBus.AddMatch");
        let arg = format!("string:{rule}");
        args.push(&arg);
        let output = run(&world, Some(&bus), &plain, &args);
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("AccessDenied"),
            "{rule}: {}",
            describe(&output)
        );
    }

    // talk-name reaches the service.
    let talker = dbus_send_app(&world, &["--talk-name=org.example.Service"]);
    let ping = run(&world, Some(&bus), &talker, PING);
    assert!(ping.status.success(), "{}", describe(&ping));
    assert!(
        String::from_utf8_lossy(&ping.stdout).contains("pong"),
        "{}",
        describe(&ping)
    );

    // socket=session-bus: the whole bus, still through the proxy.
    let everything = dbus_send_app(&world, &["--socket=session-bus"]);
    let names = run(&world, Some(&bus), &everything, LIST_NAMES);
    assert!(
        String::from_utf8_lossy(&names.stdout).contains("org.example.Service"),
        "{}",
        describe(&names)
    );
    let ping = run(&world, Some(&bus), &everything, PING);
    assert!(ping.status.success(), "{}", describe(&ping));
}

#[test]
fn without_a_host_bus_the_sandbox_has_none() {
    let world = World::new();
    let app = dbus_send_app(&world, &[]);
    let output = run(&world, None, &app, LIST_NAMES);
    assert!(!output.status.success(), "{}", describe(&output));
    let proxies = world.runtime_dir.join("appbox/bus");
    let left = std::fs::read_dir(&proxies).map(|d| d.count()).unwrap_or(0);
    assert_eq!(left, 0, "no proxy socket is left behind");
}
