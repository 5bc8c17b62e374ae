//! appbox-portal's OpenURI, Notification and Settings, end to end: a real
//! dbus-daemon, the portal on it, fake host services (a URI handler, a
//! notification server, the host's own xdg-desktop-portal Settings), and a
//! GLib client inside a real sandbox that reaches the portal through the
//! sandbox's bus proxy under `org.freedesktop.portal.Desktop`.

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use appbox_tests::{chown, describe, require_programs, wait_until, SessionBus, World};

const APP_ID: &str = "org.appbox.DesktopTest";
const OTHER_ID: &str = "org.appbox.OtherTest";

/// The client, run in the sandbox by the host's python3 (GLib through
/// PyGObject, as a GTK app would call the portal). argv: an operation and
/// its arguments; prints one JSON object per result, flushed at once.
const CLIENT: &str = r#"
import json, os, sys
from gi.repository import Gio, GLib
bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
DEST = 'org.freedesktop.portal.Desktop'
PATH = '/org/freedesktop/portal/desktop'
def out(obj):
    print(json.dumps(obj), flush=True)
def call(iface, method, sig, args, reply=None, fds=None):
    rtype = GLib.VariantType(reply) if reply else None
    if fds is None:
        return bus.call_sync(DEST, PATH, iface, method, GLib.Variant(sig, args), rtype, 0, -1, None)
    return bus.call_with_unix_fd_list_sync(DEST, PATH, iface, method, GLib.Variant(sig, args), rtype, 0, -1, fds, None)[0]
counter = [0]
def with_response(method, sig, make_args, fds=None):
    counter[0] += 1
    token = 'appboxtest%d' % counter[0]
    handle = '%s/request/%s/%s' % (PATH, bus.get_unique_name()[1:].replace('.', '_'), token)
    loop = GLib.MainLoop()
    res = {}
    def on_response(conn, sender, obj, iface, signal, params):
        res['response'] = params.unpack()[0]
        loop.quit()
    sub = bus.signal_subscribe(DEST, 'org.freedesktop.portal.Request', 'Response', handle, None,
                               Gio.DBusSignalFlags.NONE, on_response)
    try:
        reply = call('org.freedesktop.portal.OpenURI', method, sig,
                     make_args({'handle_token': GLib.Variant('s', token)}), '(o)', fds)
        res['handle'] = reply.unpack()[0]
        GLib.timeout_add_seconds(20, loop.quit)
        loop.run()
    except GLib.Error as e:
        res['error'] = e.message
    bus.signal_unsubscribe(sub)
    return res
def wait_signal(iface, member):
    loop = GLib.MainLoop()
    res = {}
    def on_signal(conn, sender, obj, iface_, signal, params):
        res['signal'] = params.unpack()
        loop.quit()
    bus.signal_subscribe(DEST, iface, member, PATH, None, Gio.DBusSignalFlags.NONE, on_signal)
    # A round trip, so the match rule is in place before the test goes on.
    bus.call_sync('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'GetId',
                  None, None, 0, -1, None)
    out({'ready': True})
    GLib.timeout_add_seconds(20, loop.quit)
    loop.run()
    out(res)
def guarded(f):
    try:
        out(f())
    except GLib.Error as e:
        out({'error': e.message})
op, args = sys.argv[1], sys.argv[2:]
if op == 'open_uri':
    for uri in args:
        out(with_response('OpenURI', '(ssa{sv})', lambda o: ('', uri, o)))
elif op in ('open_file', 'open_directory'):
    method = 'OpenFile' if op == 'open_file' else 'OpenDirectory'
    for path in args:
        if path.startswith('~/'):
            path = os.path.join(os.environ['HOME'], path[2:])
            with open(path, 'w') as f:
                f.write('shared\n')
        fds = Gio.UnixFDList.new_from_array([os.open(path, os.O_RDONLY)])
        out(with_response(method, '(sha{sv})', lambda o: ('', 0, o), fds))
elif op == 'notify':
    nid, title, body = args[:3]
    n = {'title': GLib.Variant('s', title), 'body': GLib.Variant('s', body),
         'priority': GLib.Variant('s', 'urgent'), 'icon': GLib.Variant('s', 'mail-unread'),
         'default-action': GLib.Variant('s', 'open'),
         'default-action-target': GLib.Variant('s', 'inbox')}
    def add():
        call('org.freedesktop.portal.Notification', 'AddNotification', '(sa{sv})', (nid, n))
        return {'ok': True}
    guarded(add)
    if args[3:] == ['wait']:
        wait_signal('org.freedesktop.portal.Notification', 'ActionInvoked')
elif op == 'remove':
    def remove():
        call('org.freedesktop.portal.Notification', 'RemoveNotification', '(s)', (args[0],))
        return {'ok': True}
    guarded(remove)
elif op == 'settings':
    def read_all():
        reply = call('org.freedesktop.portal.Settings', 'ReadAll', '(as)',
                     (['org.freedesktop.appearance', 'org.gnome.*', 'org.example.*'],), '(a{sa{sv}})')
        return {'all': reply.unpack()[0]}
    guarded(read_all)
    def read():
        reply = call('org.freedesktop.portal.Settings', 'Read', '(ss)',
                     ('org.freedesktop.appearance', 'color-scheme'), '(v)')
        return {'read': reply.unpack()[0], 'nested': reply.get_child_value(0).get_variant().get_type_string()}
    guarded(read)
    def unknown():
        call('org.freedesktop.portal.Settings', 'Read', '(ss)', ('org.example.private', 'token'), '(v)')
        return {'ok': True}
    guarded(unknown)
    wait_signal('org.freedesktop.portal.Settings', 'SettingChanged')
"#;

/// A notification server on the host bus, as a desktop has one: records
/// each call as a JSON line in the file argv[1]. `org.appbox.Test.Invoke`
/// makes it report a click (ActionInvoked) as a user's would.
const NOTIFICATION_SERVER: &str = r#"
import json, sys
from gi.repository import Gio, GLib
log = sys.argv[1]
xml = """<node>
<interface name='org.freedesktop.Notifications'>
 <method name='Notify'><arg type='s'/><arg type='u'/><arg type='s'/><arg type='s'/><arg type='s'/>
  <arg type='as'/><arg type='a{sv}'/><arg type='i'/><arg type='u' direction='out'/></method>
 <method name='CloseNotification'><arg type='u'/></method>
 <method name='GetCapabilities'><arg type='as' direction='out'/></method>
 <signal name='ActionInvoked'><arg type='u'/><arg type='s'/></signal>
 <signal name='NotificationClosed'><arg type='u'/><arg type='u'/></signal>
</interface>
<interface name='org.appbox.Test'><method name='Invoke'><arg type='u'/><arg type='s'/></method></interface>
</node>"""
node = Gio.DBusNodeInfo.new_for_xml(xml)
state = {'next': 1}
def record(entry):
    with open(log, 'a') as f:
        f.write(json.dumps(entry) + '\n')
def call(conn, sender, path, iface, method, params, inv):
    if method == 'Notify':
        app, replaces, icon, summary, body, actions, hints, timeout = params.unpack()
        nid = replaces
        if not nid:
            nid = state['next']
            state['next'] += 1
        record({'method': 'Notify', 'id': nid, 'app_name': app, 'replaces_id': replaces, 'icon': icon,
                'summary': summary, 'body': body, 'actions': actions, 'hints': hints})
        inv.return_value(GLib.Variant('(u)', (nid,)))
    elif method == 'CloseNotification':
        record({'method': 'CloseNotification', 'id': params.unpack()[0]})
        conn.emit_signal(None, path, 'org.freedesktop.Notifications', 'NotificationClosed',
                         GLib.Variant('(uu)', (params.unpack()[0], 3)))
        inv.return_value(None)
    elif method == 'GetCapabilities':
        inv.return_value(GLib.Variant('(as)', (['body', 'body-markup', 'actions'],)))
    elif method == 'Invoke':
        conn.emit_signal(None, path, 'org.freedesktop.Notifications', 'ActionInvoked', params)
        inv.return_value(None)
def acquired(conn, name):
    for iface in node.interfaces:
        conn.register_object('/org/freedesktop/Notifications', iface, call, None, None)
Gio.bus_own_name(Gio.BusType.SESSION, 'org.freedesktop.Notifications', 0, acquired, None, None)
GLib.MainLoop().run()
"#;

/// The host's own xdg-desktop-portal, as far as Settings go: dark colour
/// scheme, a theme, and keys appbox must not pass on. Its ReadAll ignores
/// the namespaces asked for. `org.appbox.Test.Change` makes it announce a
/// change, as it does when the user switches the scheme.
const HOST_SETTINGS: &str = r#"
from gi.repository import Gio, GLib
xml = """<node>
<interface name='org.freedesktop.portal.Settings'>
 <method name='ReadAll'><arg type='as'/><arg type='a{sa{sv}}' direction='out'/></method>
 <method name='Read'><arg type='s'/><arg type='s'/><arg type='v' direction='out'/></method>
 <signal name='SettingChanged'><arg type='s'/><arg type='s'/><arg type='v'/></signal>
</interface>
<interface name='org.appbox.Test'><method name='Change'><arg type='s'/><arg type='s'/><arg type='u'/></method></interface>
</node>"""
node = Gio.DBusNodeInfo.new_for_xml(xml)
values = {
    'org.freedesktop.appearance': {'color-scheme': GLib.Variant('u', 1), 'contrast': GLib.Variant('u', 1)},
    'org.gnome.desktop.interface': {'gtk-theme': GLib.Variant('s', 'HostTheme'),
                                    'gtk-im-module': GLib.Variant('s', 'evil')},
    'org.example.private': {'token': GLib.Variant('s', 'secret')},
}
def call(conn, sender, path, iface, method, params, inv):
    if method == 'ReadAll':
        inv.return_value(GLib.Variant('(a{sa{sv}})', (values,)))
    elif method == 'Read':
        ns, key = params.unpack()
        inv.return_value(GLib.Variant('(v)', (GLib.Variant('v', values[ns][key]),)))
    elif method == 'Change':
        ns, key, value = params.unpack()
        conn.emit_signal(None, path, 'org.freedesktop.portal.Settings', 'SettingChanged',
                         GLib.Variant('(ssv)', (ns, key, GLib.Variant('u', value))))
        inv.return_value(None)
def acquired(conn, name):
    for iface in node.interfaces:
        conn.register_object('/org/freedesktop/portal/desktop', iface, call, None, None)
Gio.bus_own_name(Gio.BusType.SESSION, 'org.freedesktop.portal.Desktop', 0, acquired, None, None)
GLib.MainLoop().run()
"#;

/// What a host-side helper must never get from the portal, which the test
/// starts with all of them set (CVE-2021-21261, CVE-2020-11934).
const HOSTILE_ENV: &[(&str, &str)] = &[
    ("LD_PRELOAD", "/nonexistent.so"),
    ("LD_LIBRARY_PATH", "/evil"),
    ("PYTHONPATH", "/evil"),
    ("GIO_EXTRA_MODULES", "/evil"),
    ("GTK_MODULES", "evil"),
    ("XDG_DATA_DIRS", "/evil"),
    ("XDG_CONFIG_DIRS", "/evil"),
    ("PATH", "/evil/bin:/usr/bin:/bin"),
];

/// Every variable a handler may get.
const ALLOWED_ENV: &[&str] = &[
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "XAUTHORITY",
    "XDG_RUNTIME_DIR",
    "DBUS_SESSION_BUS_ADDRESS",
    "XDG_CURRENT_DESKTOP",
    "XDG_SESSION_TYPE",
    "PATH",
    "XDG_DATA_DIRS",
    "XDG_CONFIG_DIRS",
];

/// A world with a bus, fake host services, the portal and two apps.
struct Desktop {
    world: World,
    bus: SessionBus,
    app: PathBuf,
    other: PathBuf,
    /// Where the URI handler writes one JSON line per call.
    opened: PathBuf,
    /// Where the notification server writes one JSON line per call.
    notified: PathBuf,
}

impl Desktop {
    /// `host_settings`: whether the host's own portal runs on the bus
    /// (it must be there before appbox's portal starts).
    fn start(host_settings: bool) -> Desktop {
        require_programs(&["/usr/bin/python3", "/usr/bin/gdbus"]);
        let world = World::new();
        let out = world.root.join("out");
        std::fs::create_dir(&out).unwrap();
        chown(&out, world.user);
        let opened = out.join("opened.jsonl");
        let notified = out.join("notified.jsonl");
        let handler = world.root.join("uri-handler");
        world.write(
            &handler,
            &format!(
                "#!/usr/bin/python3\n\
                 import json, os, sys\n\
                 entry = {{'argv': sys.argv[1:], 'env': dict(os.environ),\n\
                 \x20         'session_leader': os.getsid(0) == os.getpid(),\n\
                 \x20         'stdin': os.readlink('/proc/self/fd/0'), 'cwd': os.getcwd()}}\n\
                 with open({:?}, 'a') as f:\n\
                 \x20   f.write(json.dumps(entry) + '\\n')\n",
                opened.display().to_string()
            ),
        );
        std::fs::set_permissions(&handler, std::fs::Permissions::from_mode(0o755)).unwrap();

        let mut bus = SessionBus::start(&world);
        let python = Path::new("/usr/bin/python3");
        let notified_arg = notified.display().to_string();
        bus.spawn(
            &world,
            python,
            &["-c", NOTIFICATION_SERVER, &notified_arg],
            &[],
        );
        bus.wait_for_name(&world, "org.freedesktop.Notifications");
        if host_settings {
            bus.spawn(&world, python, &["-c", HOST_SETTINGS], &[]);
            bus.wait_for_name(&world, "org.freedesktop.portal.Desktop");
        }
        let mut env: Vec<(&str, &OsStr)> = HOSTILE_ENV
            .iter()
            .map(|(k, v)| (*k, OsStr::new(v)))
            .collect();
        env.push(("APPBOX_PORTAL_URI_HANDLER", handler.as_os_str()));
        bus.spawn(&world, &world.portal_path(), &[], &env);
        bus.wait_for_name(&world, "org.appbox.Portal.Desktop");
        let app = world.host_app(APP_ID, "/usr/bin/python3", &[]);
        let other = world.host_app(OTHER_ID, "/usr/bin/python3", &[]);
        Desktop {
            world,
            bus,
            app,
            other,
            opened,
            notified,
        }
    }

    fn client(&self, app: &Path, args: &[&str]) -> Command {
        self.bus.python_in(&self.world, app, CLIENT, args)
    }

    /// Runs the client in `app`'s sandbox; its JSON lines.
    fn run(&self, app: &Path, args: &[&str]) -> Vec<serde_json::Value> {
        let output = self.client(app, args).output().unwrap();
        assert!(output.status.success(), "{}", describe(&output));
        json_lines(&String::from_utf8_lossy(&output.stdout))
    }

    /// Starts the client, and waits until it listens for a signal.
    fn start_waiting(&self, app: &Path, args: &[&str]) -> Waiting {
        let mut child = self
            .client(app, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().map(BufReader::new);
        let mut waiting = Waiting {
            child,
            stdout,
            before: Vec::new(),
        };
        loop {
            let line = waiting.line();
            assert!(
                !line.is_empty(),
                "the client ended before it listened; it printed {:?}",
                waiting.before
            );
            let value: serde_json::Value = serde_json::from_str(line.trim()).unwrap();
            if value["ready"] == true {
                return waiting;
            }
            waiting.before.push(value);
        }
    }

    /// `gdbus call` on the host bus, as the world's user.
    fn host_call(&self, dest: &str, path: &str, method: &str, args: &[&str]) {
        let mut cmd = Command::new("/usr/bin/gdbus");
        cmd.args([
            "call",
            "--session",
            "--dest",
            dest,
            "--object-path",
            path,
            "--method",
            method,
        ])
        .args(args);
        self.world.prepare(&mut cmd);
        cmd.env("DBUS_SESSION_BUS_ADDRESS", self.bus.address());
        let output = cmd.output().unwrap();
        assert!(output.status.success(), "{}", describe(&output));
    }

    fn handler_calls(&self) -> Vec<serde_json::Value> {
        json_lines(&std::fs::read_to_string(&self.opened).unwrap_or_default())
    }

    fn server_calls(&self) -> Vec<serde_json::Value> {
        json_lines(&std::fs::read_to_string(&self.notified).unwrap_or_default())
    }
}

/// A client waiting for a signal; killed if the test ends first.
struct Waiting {
    child: Child,
    stdout: Option<BufReader<ChildStdout>>,
    /// What it printed before it listened.
    before: Vec<serde_json::Value>,
}

impl Waiting {
    /// Its next line, or "" at its end.
    fn line(&mut self) -> String {
        let mut line = String::new();
        if let Some(stdout) = self.stdout.as_mut() {
            stdout.read_line(&mut line).unwrap();
        }
        line
    }

    /// What it received (or `{}` after its 20 s timeout).
    fn result(mut self) -> serde_json::Value {
        let line = self.line();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "the client failed: {status}");
        serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}

fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect()
}

#[test]
fn open_uri_hands_the_link_to_the_host_handler_with_a_sanitized_environment() {
    let desk = Desktop::start(false);
    let uri = "https://example.org/a%20b?q=1#top";
    let out = desk.run(&desk.app, &["open_uri", uri]);
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0]["response"], 0, "{out:?}");
    wait_until("the URI handler", || !desk.handler_calls().is_empty());
    let calls = desk.handler_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(call["argv"], serde_json::json!([uri]));

    // Its environment came from the portal's, through the allowlist only:
    // nothing of LD_*, PYTHON*, GIO_*, GTK_*, and the host's own defaults for
    // PATH and the XDG dirs, although the portal had hostile values of all.
    let env = call["env"].as_object().unwrap();
    let names: BTreeSet<&str> = env.keys().map(String::as_str).collect();
    let unexpected: Vec<&&str> = names
        .iter()
        .filter(|n| !ALLOWED_ENV.contains(n) && !n.starts_with("LC_"))
        .collect();
    assert!(
        unexpected.is_empty(),
        "unexpected variables {unexpected:?} in {env:?}"
    );
    for name in [
        "LD_PRELOAD",
        "LD_LIBRARY_PATH",
        "PYTHONPATH",
        "GIO_EXTRA_MODULES",
        "GTK_MODULES",
    ] {
        assert!(
            !env.contains_key(name),
            "{name} reached the handler: {env:?}"
        );
    }
    assert_eq!(env["PATH"], "/usr/local/bin:/usr/bin:/bin");
    assert_eq!(env["XDG_DATA_DIRS"], "/usr/local/share:/usr/share");
    assert_eq!(env["XDG_CONFIG_DIRS"], "/etc/xdg");
    assert_eq!(env["HOME"], desk.world.home.to_str().unwrap());
    assert_eq!(
        env["XDG_RUNTIME_DIR"],
        desk.world.runtime_dir.to_str().unwrap()
    );
    assert_eq!(env["DBUS_SESSION_BUS_ADDRESS"], desk.bus.address().as_str());
    assert_eq!(env["LANG"], "C.UTF-8");
    // Detached: its own session, no stdin from the portal, cwd /.
    assert_eq!(call["session_leader"], true, "{call}");
    assert_eq!(call["stdin"], "/dev/null", "{call}");
    assert_eq!(call["cwd"], "/", "{call}");
}

#[test]
fn file_uris_bad_uris_and_files_the_app_cannot_name_are_refused() {
    let desk = Desktop::start(false);
    let refused = [
        "file:///etc/passwd",
        "FILE:///etc/passwd",
        "https://example.org/\u{1b}[31mred",
        "https://example.org/\nx",
        "https://example.org/a b",
        "/etc/passwd",
        "-x:y",
    ];
    let mut args = vec!["open_uri"];
    args.extend_from_slice(&refused);
    let out = desk.run(&desk.app, &args);
    assert_eq!(out.len(), refused.len(), "{out:?}");
    for (uri, result) in refused.iter().zip(&out) {
        let error = result["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{uri:?} was not refused: {result}"));
        assert!(error.contains("InvalidArgument"), "{uri:?}: {error}");
    }
    assert!(
        out[0]["error"].as_str().unwrap().contains("OpenFile"),
        "{out:?}"
    );
    assert!(
        out[2]["error"].as_str().unwrap().contains("control"),
        "{out:?}"
    );

    // A file of the app's own, passed as a descriptor, opens by its host
    // path; OpenDirectory shows its directory. The sandbox's /etc/passwd is
    // not the host's, so it is refused.
    let out = desk.run(&desk.app, &["open_file", "~/shared.txt", "/etc/passwd"]);
    assert_eq!(out[0]["response"], 0, "{out:?}");
    let error = out[1]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("{out:?}"));
    assert!(
        error.contains("NotAllowed") && error.contains("/etc/passwd"),
        "{error}"
    );
    let out = desk.run(&desk.app, &["open_directory", "~/shared.txt"]);
    assert_eq!(out[0]["response"], 0, "{out:?}");

    wait_until("the URI handler", || desk.handler_calls().len() == 2);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let calls = desk.handler_calls();
    let var = desk.world.home.join(".var/app").join(APP_ID);
    let argv: Vec<&serde_json::Value> = calls.iter().map(|c| &c["argv"]).collect();
    assert_eq!(
        argv,
        [
            &serde_json::json!([format!("file://{}/shared.txt", var.display())]),
            &serde_json::json!([format!("file://{}", var.display())]),
        ],
        "only the app's own file and its directory reached the handler"
    );
}

#[test]
fn notifications_reach_the_host_server_as_the_app_and_only_their_app_removes_them() {
    let desk = Desktop::start(false);
    let waiting = desk.start_waiting(
        &desk.app,
        &["notify", "mail", "New mail", "from <b>Ann</b> & co", "wait"],
    );
    assert_eq!(waiting.before, [serde_json::json!({"ok": true})]);
    let calls = desk.server_calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    let notify = &calls[0];
    assert_eq!(notify["method"], "Notify");
    assert_eq!(notify["app_name"], APP_ID);
    assert_eq!(notify["summary"], "New mail");
    assert_eq!(notify["body"], "from &lt;b&gt;Ann&lt;/b&gt; &amp; co");
    assert_eq!(notify["icon"], "mail-unread");
    assert_eq!(notify["hints"]["urgency"], 2);
    assert_eq!(notify["hints"]["desktop-entry"], APP_ID);
    assert_eq!(notify["actions"], serde_json::json!(["default", ""]));
    let server_id = notify["id"].as_u64().unwrap().to_string();

    // The user clicks it: the app that added it hears of it.
    desk.host_call(
        "org.freedesktop.Notifications",
        "/org/freedesktop/Notifications",
        "org.appbox.Test.Invoke",
        &[&server_id, "default"],
    );
    let got = waiting.result();
    assert_eq!(
        got["signal"],
        serde_json::json!(["mail", "open", ["inbox"]]),
        "{got}"
    );

    // Another app cannot withdraw it under the same id.
    let out = desk.run(&desk.other, &["remove", "mail"]);
    assert_eq!(out, [serde_json::json!({"ok": true})]);
    assert_eq!(desk.server_calls().len(), 1, "{:?}", desk.server_calls());

    // Adding it again replaces it; its app withdraws it.
    let out = desk.run(&desk.app, &["notify", "mail", "Newer mail", "x"]);
    assert_eq!(out, [serde_json::json!({"ok": true})]);
    let out = desk.run(&desk.app, &["remove", "mail"]);
    assert_eq!(out, [serde_json::json!({"ok": true})]);
    let calls = desk.server_calls();
    assert_eq!(calls.len(), 3, "{calls:?}");
    assert_eq!(calls[1]["method"], "Notify");
    assert_eq!(calls[1]["replaces_id"], notify["id"]);
    assert_eq!(calls[1]["summary"], "Newer mail");
    assert_eq!(calls[2]["method"], "CloseNotification");
    assert_eq!(calls[2]["id"], notify["id"]);

    // Oversized text is refused before it reaches the server.
    let long = "x".repeat(5000);
    let out = desk.run(&desk.app, &["notify", "big", &long, "x"]);
    assert!(
        out[0]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("longer than 4096"),
        "{out:?}"
    );
    assert_eq!(desk.server_calls().len(), 3);
}

#[test]
fn settings_come_from_the_host_portal_and_changes_follow() {
    let desk = Desktop::start(true);
    let waiting = desk.start_waiting(&desk.app, &["settings"]);
    let before = &waiting.before;
    assert_eq!(before.len(), 3, "{before:?}");
    assert_eq!(
        before[0]["all"],
        serde_json::json!({
            "org.freedesktop.appearance": {"color-scheme": 1},
            "org.gnome.desktop.interface": {"gtk-theme": "HostTheme"},
        }),
        "only the served keys, with the host's values"
    );
    // Read nests the value in a second variant, as xdg-desktop-portal 1.16.
    assert_eq!(before[1]["read"], 1, "{before:?}");
    assert_eq!(before[1]["nested"], "v", "{before:?}");
    let error = before[2]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("org.freedesktop.portal.Error.NotFound"),
        "{before:?}"
    );

    // The host switches to light: the sandbox hears it from appbox's portal.
    desk.host_call(
        "org.freedesktop.portal.Desktop",
        "/org/freedesktop/portal/desktop",
        "org.appbox.Test.Change",
        &["org.freedesktop.appearance", "color-scheme", "2"],
    );
    let got = waiting.result();
    assert_eq!(
        got["signal"],
        serde_json::json!(["org.freedesktop.appearance", "color-scheme", 2]),
        "{got}"
    );
}
