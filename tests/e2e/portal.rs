//! appbox-portal, end to end: a real dbus-daemon, the portal on it with a
//! scripted chooser, and a GLib client inside a real sandbox that reaches
//! the portal through the sandbox's bus proxy under the standard names.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use appbox_tests::{chown, describe, require_programs, SessionBus, World};

const APP_ID: &str = "org.appbox.PortalTest";
const SCRIPTED: &str = "APPBOX_PORTAL_SCRIPTED_CHOOSER";
const SCRIPTED_CONSENT: &str = "APPBOX_PORTAL_SCRIPTED_CONSENT";

/// The client, run in the sandbox by the host's python3 (GLib through
/// PyGObject, as a GTK app would call it). argv: method, text to write.
/// It subscribes to the Response before calling, as GTK does, waits for it,
/// then reads and writes the file it was given. Prints one JSON object.
const CLIENT: &str = r#"
import json, os, sys
from gi.repository import Gio, GLib
method, text = sys.argv[1], sys.argv[2]
bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
token = 'appboxtest'
path = '/org/freedesktop/portal/desktop/request/%s/%s' % (bus.get_unique_name()[1:].replace('.', '_'), token)
loop = GLib.MainLoop()
out = {}
def on_response(conn, sender, obj, iface, signal, params):
    out['response'], out['results'] = params.unpack()
    loop.quit()
bus.signal_subscribe('org.freedesktop.portal.Desktop', 'org.freedesktop.portal.Request', 'Response',
                     path, None, Gio.DBusSignalFlags.NONE, on_response)
options = {'handle_token': GLib.Variant('s', token)}
if method == 'SaveFile':
    options['current_name'] = GLib.Variant('s', 'new.txt')
try:
    reply = bus.call_sync('org.freedesktop.portal.Desktop', '/org/freedesktop/portal/desktop',
                          'org.freedesktop.portal.FileChooser', method,
                          GLib.Variant('(ssa{sv})', ('', 'Pick a file', options)),
                          GLib.VariantType('(o)'), 0, -1, None)
    out['handle'] = reply.unpack()[0]
    GLib.timeout_add_seconds(20, loop.quit)
    loop.run()
except GLib.Error as e:
    out['error'] = e.message
if out.get('response') == 0:
    name = GLib.filename_from_uri(out['results']['uris'][0])[0]
    out['path'] = name
    with open(name) as f:
        out['content'] = f.read()
    with open(name, 'w') as f:
        f.write(text)
    doc = os.path.dirname(os.path.dirname(name))
    out['docs'] = sorted(os.listdir(doc))
    out['in_doc'] = sorted(os.listdir(os.path.dirname(name)))
print(json.dumps(out))
"#;

/// A world with a session bus, the portal on it, and the client app.
struct Setup {
    world: World,
    bus: SessionBus,
    app: PathBuf,
    /// The scripted chooser's answers, one JSON object per line.
    queue: PathBuf,
}

impl Setup {
    /// The portal started by the test.
    fn new() -> Setup {
        let mut setup = Setup::on_bus(false);
        setup.start_portal(&[]);
        setup
    }

    /// Starts the portal on the bus, with the scripted chooser and consent
    /// and `extra` in its environment, and waits for its name.
    fn start_portal(&mut self, extra: &[(&str, &OsStr)]) {
        let queue = self.queue.as_os_str().to_owned();
        let consent = self.consent_queue();
        let mut env = vec![
            (SCRIPTED, queue.as_os_str()),
            (SCRIPTED_CONSENT, consent.as_os_str()),
        ];
        env.extend_from_slice(extra);
        self.bus
            .spawn(&self.world, &self.world.portal_path(), &[], &env);
        self.bus
            .wait_for_name(&self.world, "org.appbox.Portal.Desktop");
    }

    /// No portal yet; with `activatable`, the bus can start it (and gives
    /// it the scripted chooser).
    fn on_bus(activatable: bool) -> Setup {
        require_programs(&["/usr/bin/python3", "/usr/bin/gdbus"]);
        let world = World::new();
        let chooser = world.root.join("chooser");
        std::fs::create_dir(&chooser).unwrap();
        chown(&chooser, world.user);
        let queue = chooser.join("answers");
        std::fs::write(&queue, "").unwrap();
        chown(&queue, world.user);
        // dbus-daemon finds the user's services dir from the user database's
        // home unless told; the world's home is elsewhere.
        let data_home = world.home.join(".local/share");
        let bus = if activatable {
            SessionBus::start_with_env(
                &world,
                &[
                    (SCRIPTED, queue.as_os_str()),
                    ("XDG_DATA_HOME", data_home.as_os_str()),
                ],
            )
        } else {
            SessionBus::start(&world)
        };
        let app = world.host_app(APP_ID, "/usr/bin/python3", &[]);
        Setup {
            world,
            bus,
            app,
            queue,
        }
    }

    fn other_app(&self, id: &str) -> PathBuf {
        self.world.host_app(id, "/usr/bin/python3", &[])
    }

    /// The scripted consent answers, next to the chooser's.
    fn consent_queue(&self) -> PathBuf {
        let queue = self.queue.with_file_name("consent");
        if !queue.exists() {
            std::fs::write(&queue, "").unwrap();
            chown(&queue, self.world.user);
        }
        queue
    }

    fn answer(&self, line: &str) {
        std::fs::write(&self.queue, format!("{line}\n")).unwrap();
    }

    /// What the portal asked its chooser, one JSON object per question.
    fn questions(&self) -> Vec<serde_json::Value> {
        let log = self.queue.with_file_name("answers.log");
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// Runs `command ARGS` in the app's sandbox, on the bus.
    fn run_in_sandbox(&self, command: &str, args: &[&str]) -> Output {
        let mut cmd = self.world.run_app(&self.app, &["--command", command], args);
        cmd.env("DBUS_SESSION_BUS_ADDRESS", self.bus.address());
        cmd.stdin(Stdio::null()).output().unwrap()
    }

    fn client(&self, method: &str, text: &str) -> serde_json::Value {
        let output = self.run_in_sandbox("/usr/bin/python3", &["-c", CLIENT, method, text]);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{}", describe(&output));
        serde_json::from_str(stdout.trim()).unwrap_or_else(|e| panic!("{e}: {}", describe(&output)))
    }

    /// A file in the user's home, owned by them.
    fn host_file(&self, rel: &str, contents: &str) -> PathBuf {
        let path = self.world.home_dir("Documents").join(rel);
        std::fs::write(&path, contents).unwrap();
        chown(&path, self.world.user);
        path
    }

    fn documents_json(&self) -> serde_json::Value {
        let path = self.world.home.join(".local/share/appbox/documents.json");
        std::fs::read_to_string(path)
            .map(|text| serde_json::from_str(&text).unwrap())
            .unwrap_or(serde_json::Value::Null)
    }
}

fn doc_prefix(world: &World) -> String {
    format!("file:///run/user/{}/doc/", world.user.uid)
}

#[test]
fn a_sandboxed_app_opens_and_writes_the_host_file_the_user_chose() {
    let setup = Setup::new();
    let host = setup.host_file("notes.txt", "from the host\n");
    setup.answer(&format!("{{\"paths\": [{:?}]}}", host));

    let out = setup.client("OpenFile", "written in the sandbox\n");
    assert_eq!(out["response"], 0, "{out}");
    let uri = out["results"]["uris"][0].as_str().unwrap();
    assert!(uri.starts_with(&doc_prefix(&setup.world)), "{uri}");
    assert!(uri.ends_with("/notes.txt"), "{uri}");
    assert_eq!(out["results"]["writable"], true, "{out}");
    assert_eq!(out["content"], "from the host\n", "{out}");
    assert_eq!(
        std::fs::read_to_string(&host).unwrap(),
        "written in the sandbox\n"
    );
    // Only that file: one document, holding one name.
    assert_eq!(out["docs"].as_array().unwrap().len(), 1, "{out}");
    assert_eq!(out["in_doc"], serde_json::json!(["notes.txt"]), "{out}");

    // The portal knew the app from appbox's records, not from the message.
    let questions = setup.questions();
    assert_eq!(questions.len(), 1);
    assert_eq!(questions[0]["app_id"], APP_ID);
    assert_eq!(questions[0]["method"], "OpenFile");
    assert_eq!(questions[0]["title"], "Pick a file");

    // The grant is kept, under the id the app saw.
    let docs = setup.documents_json();
    let id = uri
        .trim_start_matches(&doc_prefix(&setup.world))
        .split('/')
        .next()
        .unwrap();
    let doc = &docs["documents"][id];
    assert_eq!(doc["path"], host.to_str().unwrap(), "{docs}");
    assert_eq!(doc["apps"][APP_ID]["writable"], true, "{docs}");

    // The next launch mounts it again, at the same place.
    let in_sandbox = out["path"].as_str().unwrap();
    let again = setup.run_in_sandbox("/usr/bin/cat", &[in_sandbox]);
    assert!(again.status.success(), "{}", describe(&again));
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        "written in the sandbox\n"
    );

    // Another app sees none of it.
    let other = setup.other_app("org.appbox.Other");
    let mut cmd = setup.world.run_app(
        &other,
        &["--command", "/usr/bin/ls"],
        &["-A", &format!("/run/user/{}/doc", setup.world.user.uid)],
    );
    cmd.env("DBUS_SESSION_BUS_ADDRESS", setup.bus.address());
    let listing = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(listing.status.success(), "{}", describe(&listing));
    assert_eq!(
        String::from_utf8_lossy(&listing.stdout),
        "",
        "{}",
        describe(&listing)
    );
}

#[test]
fn read_only_choices_cancels_and_saving() {
    let setup = Setup::new();
    let host = setup.host_file("report.txt", "original\n");

    // The user ticked "read only": the app reads, its write fails.
    setup.answer(&format!("{{\"paths\": [{:?}], \"writable\": false}}", host));
    let output = setup.run_in_sandbox(
        "/usr/bin/python3",
        &["-c", CLIENT, "OpenFile", "overwritten"],
    );
    assert!(!output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("Read-only file system"),
        "{}",
        describe(&output)
    );
    assert_eq!(std::fs::read_to_string(&host).unwrap(), "original\n");

    // Chosen again with writing allowed: the launch mounted it read-only
    // already; the same mount becomes writable.
    setup.answer(&format!("{{\"paths\": [{:?}]}}", host));
    let out = setup.client("OpenFile", "overwritten\n");
    assert_eq!(out["response"], 0, "{out}");
    assert_eq!(out["content"], "original\n", "{out}");
    assert_eq!(std::fs::read_to_string(&host).unwrap(), "overwritten\n");

    // Cancelled: response 1, nothing granted.
    setup.answer("{\"cancel\": true}");
    let out = setup.client("OpenFile", "x");
    assert_eq!(out["response"], 1, "{out}");
    let granted = setup.documents_json();
    assert_eq!(
        granted["documents"].as_object().map_or(0, |d| d.len()),
        1,
        "{granted}"
    );

    // Saving to a file that does not exist yet creates it for the app.
    let target = setup.world.home.join("Documents/new.txt");
    setup.answer(&format!("{{\"paths\": [{:?}]}}", target));
    let out = setup.client("SaveFile", "saved from the sandbox\n");
    assert_eq!(out["response"], 0, "{out}");
    assert_eq!(out["content"], "", "{out}");
    assert_eq!(
        std::fs::read_to_string(&target).unwrap(),
        "saved from the sandbox\n"
    );
    let questions = setup.questions();
    assert_eq!(questions.last().unwrap()["method"], "SaveFile");
    assert_eq!(questions.last().unwrap()["current_name"], "new.txt");
}

/// `gdbus call` from inside the sandbox.
fn gdbus(setup: &Setup, dest: &str, path: &str, method: &str, args: &[&str]) -> Output {
    let mut all = vec![
        "call",
        "--session",
        "--dest",
        dest,
        "--object-path",
        path,
        "--method",
        method,
    ];
    all.extend_from_slice(args);
    setup.run_in_sandbox("/usr/bin/gdbus", &all)
}

#[test]
fn inside_the_sandbox_only_the_portal_is_reachable() {
    let setup = Setup::new();
    let version = gdbus(
        &setup,
        "org.freedesktop.portal.Desktop",
        "/org/freedesktop/portal/desktop",
        "org.freedesktop.DBus.Properties.Get",
        &["org.freedesktop.portal.FileChooser", "version"],
    );
    assert!(version.status.success(), "{}", describe(&version));
    assert!(
        String::from_utf8_lossy(&version.stdout).contains("uint32 3"),
        "{}",
        describe(&version)
    );
    let mount_point = gdbus(
        &setup,
        "org.freedesktop.portal.Documents",
        "/org/freedesktop/portal/documents",
        "org.freedesktop.portal.Documents.GetMountPoint",
        &[],
    );
    assert!(mount_point.status.success(), "{}", describe(&mount_point));
    assert!(
        String::from_utf8_lossy(&mount_point.stdout)
            .contains(&format!("/run/user/{}/doc", setup.world.user.uid)),
        "{}",
        describe(&mount_point)
    );
    // The portal's host name, the bus's other names and made-up ones are out of reach.
    for dest in [
        "org.appbox.Portal.Desktop",
        "org.freedesktop.Notifications",
        "org.freedesktop.portal.Flatpak",
    ] {
        let denied = gdbus(
            &setup,
            dest,
            "/org/freedesktop/portal/desktop",
            "org.freedesktop.DBus.Peer.Ping",
            &[],
        );
        assert!(!denied.status.success(), "{dest}: {}", describe(&denied));
    }
}

#[test]
fn host_processes_are_not_served() {
    let setup = Setup::new();
    let mut cmd = Command::new("/usr/bin/gdbus");
    cmd.args([
        "call",
        "--session",
        "--dest",
        "org.appbox.Portal.Desktop",
        "--object-path",
        "/org/freedesktop/portal/desktop",
        "--method",
        "org.freedesktop.portal.FileChooser.OpenFile",
        "",
        "title",
        "{}",
    ]);
    setup.world.prepare(&mut cmd);
    cmd.env("DBUS_SESSION_BUS_ADDRESS", setup.bus.address());
    let output = cmd.output().unwrap();
    assert!(!output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("org.freedesktop.portal.Error.NotAllowed")
            && stderr.contains("not an app in an appbox sandbox"),
        "{}",
        describe(&output)
    );
    assert!(setup.questions().is_empty());
}

#[test]
fn appbox_run_makes_the_portal_start_on_demand() {
    let setup = Setup::on_bus(true);
    let host = setup.host_file("todo.txt", "buy milk\n");
    setup.answer(&format!("{{\"paths\": [{:?}]}}", host));
    assert!(!setup.bus.names(&setup.world).contains("org.appbox.Portal"));

    let out = setup.client("OpenFile", "bought\n");
    assert_eq!(out["response"], 0, "{out}");
    assert_eq!(out["content"], "buy milk\n", "{out}");
    assert_eq!(std::fs::read_to_string(&host).unwrap(), "bought\n");

    let service = setup
        .world
        .home
        .join(".local/share/dbus-1/services/org.appbox.Portal.Desktop.service");
    let text = std::fs::read_to_string(&service).unwrap();
    assert!(
        text.contains(&format!("Exec={}\n", setup.world.portal_path().display())),
        "{text}"
    );
    assert!(setup
        .bus
        .names(&setup.world)
        .contains("org.appbox.Portal.Documents"));

    // The bus started it; it ends with the bus.
    let pid = setup
        .bus
        .owner_pid(&setup.world, "org.appbox.Portal.Desktop")
        .unwrap_or_else(|e| panic!("{e}"));
    let Setup { world, bus, .. } = setup;
    drop(bus);
    appbox_tests::wait_until("the portal to exit with its bus", || {
        !std::path::Path::new(&format!("/proc/{pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .is_ok_and(|s| s.contains(") Z "))
    });
    drop(world);
}

/// CVE-2026-34078: while the portal grants a chosen file, a racer with write
/// access to a directory on its path keeps swapping that directory for a
/// symlink to a secret one. The app gets the chosen file or an error, never
/// the secret.
#[test]
fn a_symlink_swapped_in_during_the_grant_hands_out_nothing_else() {
    let setup = Setup::new();
    let documents = setup.world.home_dir("Documents");
    let secret_dir = setup.world.home_dir("Secret");
    std::fs::write(secret_dir.join("notes.txt"), "secret\n").unwrap();
    let real = setup.world.home_dir("Documents/shared");
    setup.host_file("shared/notes.txt", "public\n");
    let alternate = documents.join("shared.alt");
    std::os::unix::fs::symlink(&secret_dir, &alternate).unwrap();
    let chosen = real.join("notes.txt");

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let racer = {
        let stop = stop.clone();
        let (a, b) = (
            std::ffi::CString::new(real.to_str().unwrap()).unwrap(),
            std::ffi::CString::new(alternate.to_str().unwrap()).unwrap(),
        );
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // SAFETY: two valid C strings; RENAME_EXCHANGE swaps them atomically.
                let ret = unsafe {
                    libc::renameat2(
                        libc::AT_FDCWD,
                        a.as_ptr(),
                        libc::AT_FDCWD,
                        b.as_ptr(),
                        libc::RENAME_EXCHANGE,
                    )
                };
                assert_eq!(ret, 0, "{}", std::io::Error::last_os_error());
                swaps += 1;
            }
            swaps
        })
    };
    let mut granted = 0;
    for _ in 0..20 {
        setup.answer(&format!("{{\"paths\": [{chosen:?}]}}"));
        let out = setup.client("OpenFile", "public\n");
        match out["response"].as_u64() {
            Some(0) => {
                assert_eq!(out["content"], "public\n", "{out}");
                granted += 1;
            }
            Some(2) => {}
            _ => panic!("unexpected answer: {out}"),
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = racer.join().unwrap();
    assert!(swaps > 100, "the racer barely ran ({swaps} swaps)");
    assert_eq!(
        std::fs::read_to_string(secret_dir.join("notes.txt")).unwrap(),
        "secret\n"
    );
    eprintln!("{granted} of 20 grants went through, {swaps} swaps");
}

/// `appbox documents`, `permissions`, `permission-remove`, `permission-set`
/// and `permission-reset`, against a running instance that got a document.
#[test]
fn the_cli_lists_and_revokes_grants_even_in_running_sandboxes() {
    let setup = Setup::new();
    let host = setup.host_file("plan.txt", "step one\n");
    let mut sleeper = setup
        .world
        .run_app(&setup.app, &["--command", "/usr/bin/sleep"], &["60"]);
    sleeper.env("DBUS_SESSION_BUS_ADDRESS", setup.bus.address());
    let mut sleeper = sleeper.stdin(Stdio::null()).spawn().unwrap();
    let instance = wait_for_instance(&setup.world);

    // A process entered into the instance asks the portal; the file lands in
    // that instance.
    setup.answer(&format!("{{\"paths\": [{host:?}]}}"));
    let entered = appbox_ok(
        &setup,
        &[
            "enter",
            &instance,
            "/usr/bin/python3",
            "-c",
            CLIENT,
            "OpenFile",
            "step two\n",
        ],
    );
    let out: serde_json::Value = serde_json::from_str(entered.trim()).unwrap();
    assert_eq!(out["response"], 0, "{out}");
    let in_sandbox = out["path"].as_str().unwrap().to_owned();
    let id = in_sandbox.split('/').nth_back(1).unwrap().to_owned();

    let listed: serde_json::Value =
        serde_json::from_str(&appbox_ok(&setup, &["documents", "--json"])).unwrap();
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
    assert_eq!(listed[0]["path"], host.to_str().unwrap(), "{listed}");
    assert_eq!(listed[0]["apps"][APP_ID], "read-write", "{listed}");
    let table = appbox_ok(&setup, &["documents"]);
    assert!(
        table.contains(&id) && table.contains(&format!("{APP_ID} (read-write)")),
        "{table}"
    );
    let other: serde_json::Value = serde_json::from_str(&appbox_ok(
        &setup,
        &["documents", "org.appbox.Other", "--json"],
    ))
    .unwrap();
    assert_eq!(other, serde_json::json!([]));
    let rows: serde_json::Value =
        serde_json::from_str(&appbox_ok(&setup, &["permissions", "documents", "--json"])).unwrap();
    assert_eq!(rows[0]["app"], APP_ID, "{rows}");
    assert_eq!(rows[0]["permission"], "read-write", "{rows}");

    // Revoked: gone from the store and from the running sandbox.
    appbox_ok(&setup, &["permission-remove", "documents", &id]);
    let cat = setup
        .world
        .appbox(["enter", &instance, "/usr/bin/cat", &in_sandbox])
        .output()
        .unwrap();
    assert!(!cat.status.success(), "{}", describe(&cat));
    assert_eq!(appbox_ok(&setup, &["documents", "--json"]).trim(), "[]");
    assert_eq!(std::fs::read_to_string(&host).unwrap(), "step two\n");

    // Answers: set, listed, reset.
    appbox_ok(
        &setup,
        &["permission-set", "devices", "kvm", APP_ID, "allow"],
    );
    let rows = appbox_ok(&setup, &["permissions", "devices"]);
    assert!(
        rows.contains("kvm") && rows.contains(APP_ID) && rows.contains("allow"),
        "{rows}"
    );
    appbox_ok(&setup, &["permission-reset", APP_ID]);
    assert!(!appbox_ok(&setup, &["permissions"]).contains(APP_ID));

    // Bad input names what was wrong.
    for (args, says) in [
        (
            &["permission-set", "devices", "../x", APP_ID, "allow"][..],
            "not an entry of the devices table",
        ),
        (
            &["permission-set", "devices", "kvm", APP_ID, "maybe"][..],
            "use allow, deny or ask",
        ),
        (
            &["permission-remove", "documents", "../../etc"][..],
            "not a document id",
        ),
        (
            &["permission-remove", "documents", "0a1b2c3d"][..],
            "no app holds document",
        ),
        (&["permissions", "secrets"][..], "not a permission table"),
        (&["documents", "not an id"][..], "app id"),
    ] {
        let output = setup.world.appbox(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(says),
            "{args:?}: {}",
            describe(&output)
        );
    }
    let _ = sleeper.kill();
    let _ = sleeper.wait();
}

/// `appbox ARGS` as the world's user; it must succeed. Its stdout.
fn appbox_ok(setup: &Setup, args: &[&str]) -> String {
    let mut cmd = setup.world.appbox(args);
    cmd.env("DBUS_SESSION_BUS_ADDRESS", setup.bus.address());
    let output = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(
        output.status.success(),
        "appbox {args:?}: {}",
        describe(&output)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The instance number of the world's only running sandbox.
fn wait_for_instance(world: &World) -> String {
    let mut instance = None;
    appbox_tests::wait_until("the instance to start", || {
        let output = world.appbox(["ps", "--json"]).output().unwrap();
        let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_default();
        instance = rows[0]["instance"].as_str().map(str::to_owned);
        instance.is_some()
    });
    instance.unwrap()
}

/// Asks for a device and, given one, checks it is the real KVM.
const DEVICE_CLIENT: &str = r#"
import fcntl, json, sys
from gi.repository import Gio, GLib
bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
out = {}
try:
    reply, fds = bus.call_with_unix_fd_list_sync(
        'org.freedesktop.portal.Desktop', '/org/freedesktop/portal/desktop',
        'org.appbox.portal.Device', 'OpenDevice', GLib.Variant('(sa{sv})', (sys.argv[1], {})),
        GLib.VariantType('(h)'), 0, -1, None, None)
    fd = fds.get(reply.unpack()[0])
    out['api'] = fcntl.ioctl(fd, 0xAE00)  # KVM_GET_API_VERSION
except GLib.Error as e:
    out['error'] = e.message
try:
    open('/dev/kvm', 'r+b')
    out['direct'] = 'opened'
except OSError as e:
    out['direct'] = e.strerror
print(json.dumps(out))
"#;

impl Setup {
    fn device(&self, app: &std::path::Path, kind: &str) -> serde_json::Value {
        let mut cmd = self.world.run_app(
            app,
            &["--command", "/usr/bin/python3"],
            &["-c", DEVICE_CLIENT, kind],
        );
        cmd.env("DBUS_SESSION_BUS_ADDRESS", self.bus.address());
        let output = cmd.stdin(Stdio::null()).output().unwrap();
        assert!(output.status.success(), "{}", describe(&output));
        serde_json::from_slice(&output.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", describe(&output)))
    }

    fn consent_questions(&self) -> usize {
        let log = self.queue.with_file_name("consent.log");
        std::fs::read_to_string(log).map_or(0, |text| text.lines().count())
    }

    fn consent(&self, line: &str) {
        std::fs::write(self.consent_queue(), format!("{line}\n")).unwrap();
    }
}

#[test]
fn devices_are_handed_over_as_descriptors_after_the_user_agrees() {
    let setup = Setup::new();
    let mut can_use = Command::new("/usr/bin/test");
    can_use.args(["-r", "/dev/kvm", "-a", "-w", "/dev/kvm"]);
    setup.world.prepare(&mut can_use);
    assert!(
        can_use.status().unwrap().success(),
        "the test user needs read-write access to /dev/kvm (tests/bootstrap.sh gives it an ACL)"
    );

    // Asked, allowed once: a working KVM descriptor; the app still cannot open the node.
    setup.consent("{\"answer\": \"allow\"}");
    let out = setup.device(&setup.app, "kvm");
    assert_eq!(out["api"], 12, "{out}");
    assert_ne!(out["direct"], "opened", "{out}");
    assert_eq!(setup.consent_questions(), 1);
    let log = std::fs::read_to_string(setup.queue.with_file_name("consent.log")).unwrap();
    assert!(
        log.contains(&format!("\"app_id\":\"{APP_ID}\"")) && log.contains("\"id\":\"kvm\""),
        "{log}"
    );

    // Denied and remembered: no descriptor, and no second question.
    setup.consent("{\"answer\": \"deny\", \"remember\": true}");
    let out = setup.device(&setup.app, "kvm");
    assert!(
        out["error"].as_str().unwrap().contains("NotAllowed"),
        "{out}"
    );
    let out = setup.device(&setup.app, "kvm");
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .contains("permission-set devices kvm"),
        "{out}"
    );
    assert_eq!(setup.consent_questions(), 2);

    // Allowed from the command line: no question.
    appbox_ok(
        &setup,
        &["permission-set", "devices", "kvm", APP_ID, "allow"],
    );
    assert_eq!(setup.device(&setup.app, "kvm")["api"], 12);
    assert_eq!(setup.consent_questions(), 2);

    // Another app has its own answers: asked, and with no answer, refused.
    let other = setup.other_app("org.appbox.Other");
    let out = setup.device(&other, "kvm");
    assert!(
        out["error"].as_str().unwrap().contains("NotAllowed"),
        "{out}"
    );
    assert_eq!(setup.consent_questions(), 3);

    // Bad requests name what was wrong.
    let out = setup.device(&setup.app, "../../dev/mem");
    assert!(
        out["error"].as_str().unwrap().contains("not a device kind"),
        "{out}"
    );
    let out = setup.device(&setup.app, "input");
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .contains("needs the option path"),
        "{out}"
    );
}

/// An app trying every way it has to pass for another, or to upset the
/// portal: fake Flatpak info files, another app id in arguments, taking the
/// portal's names, a forged sender, an out-of-range fd index, wrong
/// signatures, and a sub-sandbox (CVE-2021-41133).
const HOSTILE: &str = r#"
import ctypes, json, os
from gi.repository import Gio, GLib
out = {}
for path in ('/tmp/.flatpak-info', os.path.expanduser('~/.flatpak-info')):
    with open(path, 'w') as f:
        f.write('[Application]\nname=org.victim.App\n')
try:
    open('/.flatpak-info', 'w')
    out['root_info'] = 'written'
except OSError as e:
    out['root_info'] = e.strerror
bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
D, P = 'org.freedesktop.portal.Desktop', '/org/freedesktop/portal/desktop'
DOC, DP = 'org.freedesktop.portal.Documents', '/org/freedesktop/portal/documents'
def call(dest, path, iface, method, args, fds=None):
    try:
        reply = bus.call_with_unix_fd_list_sync(dest, path, iface, method, args, None, 0, 5000, fds, None)
        return 'ok: %s' % (reply[0].unpack(),)
    except GLib.Error as e:
        return e.message
def send(message):
    # On a connection of its own: the proxy may close it.
    flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
    own = Gio.DBusConnection.new_for_address_sync(os.environ['DBUS_SESSION_BUS_ADDRESS'], flags, None, None)
    try:
        reply = own.send_message_with_reply_sync(message, 0, 5000, None)[0]
        return reply.get_error_name() or 'ok'
    except GLib.Error as e:
        return 'closed: ' + e.message
out['list_victim'] = call(DOC, DP, DOC, 'List', GLib.Variant('(s)', ('org.victim.App',)))
out['add_full'] = call(DOC, DP, DOC, 'AddFull', GLib.Variant('(ahusas)', ([], 0, 'org.victim.App', ['read'])), Gio.UnixFDList.new())
for name in (D, 'org.appbox.Portal.Desktop'):
    out['own ' + name] = call('org.freedesktop.DBus', '/org/freedesktop/DBus', 'org.freedesktop.DBus', 'RequestName', GLib.Variant('(su)', (name, 4)))
forged = Gio.DBusMessage.new_method_call(D, P, 'org.freedesktop.portal.FileChooser', 'OpenFile')
forged.set_body(GLib.Variant('(ssa{sv})', ('', 'forged', {'handle_token': GLib.Variant('s', 'forged')})))
forged.set_sender(':1.1')
out['forged_sender'] = send(forged)
bad_fd = Gio.DBusMessage.new_method_call(DOC, DP, DOC, 'Add')
bad_fd.set_body(GLib.Variant('(hbb)', (7, False, False)))
out['bad_fd_index'] = send(bad_fd)
out['bad_signature'] = call(D, P, 'org.freedesktop.portal.FileChooser', 'OpenFile', GLib.Variant('(s)', ('x',)))
out['bad_option_type'] = call(D, P, 'org.freedesktop.portal.FileChooser', 'OpenFile', GLib.Variant('(ssa{sv})', ('', 't', {'multiple': GLib.Variant('s', 'yes')})))
out['bad_token'] = call(D, P, 'org.freedesktop.portal.FileChooser', 'OpenFile', GLib.Variant('(ssa{sv})', ('', 't', {'handle_token': GLib.Variant('s', '../../x')})))
libc = ctypes.CDLL(None, use_errno=True)
out['unshare_user'] = libc.unshare(0x10000000)
# Claiming to be root (uid 0, hex "30") in the handshake: the proxy takes the
# uid from the socket (SO_PEERCRED), never from the text (CVE-2019-7304).
import socket
raw = socket.socket(socket.AF_UNIX)
raw.connect(os.environ['DBUS_SESSION_BUS_ADDRESS'].split('=', 1)[1])
raw.sendall(b'\0AUTH EXTERNAL 30\r\n')
out['auth_as_root'] = raw.recv(64).decode(errors='replace').strip()
print(json.dumps(out))
"#;

#[test]
fn apps_cannot_pass_for_others_or_break_the_portal() {
    let setup = Setup::new();
    let mut cmd = setup.world.run_app(
        &setup.app,
        &[
            "--command",
            "/usr/bin/python3",
            "--env=FLATPAK_ID=org.victim.App",
            "--env=APPBOX_ID=org.victim.App",
        ],
        &["-c", HOSTILE],
    );
    cmd.env("DBUS_SESSION_BUS_ADDRESS", setup.bus.address());
    let output = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let out: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();

    assert_ne!(out["root_info"], "written", "{out}");
    assert_eq!(out["list_victim"], "ok: ({},)", "{out}");
    assert!(
        out["add_full"].as_str().unwrap().contains("NotAllowed"),
        "{out}"
    );
    for name in [
        "org.freedesktop.portal.Desktop",
        "org.appbox.Portal.Desktop",
    ] {
        assert!(
            out[format!("own {name}")]
                .as_str()
                .unwrap()
                .contains("AccessDenied"),
            "{out}"
        );
    }
    // An fd index past the message's descriptors is malformed, as
    // dbus-daemon would judge it: the proxy closes that connection.
    assert!(
        out["bad_fd_index"].as_str().unwrap().starts_with("closed"),
        "{out}"
    );
    // A forged sender is replaced by the bus; the chooser (below) saw the real app.
    assert_eq!(out["forged_sender"], "ok", "{out}");
    assert!(
        out["bad_signature"]
            .as_str()
            .unwrap()
            .contains("InvalidArgs"),
        "{out}"
    );
    assert!(
        out["bad_option_type"]
            .as_str()
            .unwrap()
            .contains("InvalidArgument"),
        "{out}"
    );
    assert!(
        out["bad_token"].as_str().unwrap().contains("handle_token"),
        "{out}"
    );
    assert_eq!(out["unshare_user"], -1, "{out}");
    assert!(
        out["auth_as_root"]
            .as_str()
            .unwrap()
            .starts_with("REJECTED"),
        "{out}"
    );

    // Whatever got through to the chooser was asked for the real app.
    for question in setup.questions() {
        assert_eq!(question["app_id"], APP_ID, "{question}");
    }
    // And the portal still serves, this app and the next.
    let host = setup.host_file("after.txt", "still here\n");
    setup.answer(&format!("{{\"paths\": [{host:?}]}}"));
    assert_eq!(
        setup.client("OpenFile", "still here\n")["content"],
        "still here\n"
    );
    let other = setup.other_app("org.appbox.Other");
    let mut cmd = setup.world.run_app(
        &other,
        &["--command", "/usr/bin/gdbus"],
        &[
            "call",
            "--session",
            "--dest",
            "org.freedesktop.portal.Documents",
            "--object-path",
            "/org/freedesktop/portal/documents",
            "--method",
            "org.freedesktop.portal.Documents.List",
            "org.appbox.PortalTest",
        ],
    );
    cmd.env("DBUS_SESSION_BUS_ADDRESS", setup.bus.address());
    let listing = cmd.stdin(Stdio::null()).output().unwrap();
    assert!(listing.status.success(), "{}", describe(&listing));
    assert_eq!(
        String::from_utf8_lossy(&listing.stdout).trim(),
        "(@a{say} {},)",
        "{}",
        describe(&listing)
    );
}

/// A library that, preloaded, leaves an empty file named after the pid in
/// `marks` in every `appbox document-mount` process it is loaded into.
const MARKER: &str = r#"
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
__attribute__((constructor)) static void mark(void) {
    char cmdline[4096];
    int fd = open("/proc/self/cmdline", O_RDONLY);
    if (fd < 0) return;
    ssize_t n = read(fd, cmdline, sizeof cmdline - 1);
    close(fd);
    if (n <= 0) return;
    for (ssize_t i = 0; i < n; i++) if (cmdline[i] == 0) cmdline[i] = ' ';
    cmdline[n] = 0;
    const char *kind = strstr(cmdline, "document-mount") ? "helper"
                     : strstr(cmdline, "appbox-portal") ? "portal" : NULL;
    if (!kind) return;
    char path[4096];
    snprintf(path, sizeof path, "%s/%s-%d", MARKS, kind, (int)getpid());
    int out = open(path, O_WRONLY | O_CREAT, 0644);
    if (out >= 0) close(out);
}
"#;

/// CVE-2021-21261: the portal's environment is the session's, which may hold
/// LD_PRELOAD and the like; none of it reaches the helper the portal starts
/// on behalf of an app (`appbox document-mount`, which mounts the chosen
/// file). The portal runs with a real preloaded library that marks the
/// portal and every helper it gets into: a grant goes through and leaves the
/// portal's mark alone, while the same helper started with that environment
/// is marked.
#[test]
fn the_helper_the_portal_starts_gets_none_of_its_environment() {
    require_programs(&["/usr/bin/cc"]);
    let mut setup = Setup::on_bus(false);
    let dir = setup.world.root.join("preload");
    let marks = dir.join("marks");
    std::fs::create_dir_all(&marks).unwrap();
    chown(&marks, setup.world.user);
    std::fs::write(dir.join("mark.c"), MARKER).unwrap();
    let library = dir.join("libmark.so");
    let built = Command::new("/usr/bin/cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&library)
        .arg(format!("-DMARKS=\"{}\"", marks.display()))
        .arg(dir.join("mark.c"))
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", describe(&built));
    appbox_tests::make_readable(&dir);

    setup.start_portal(&[("LD_PRELOAD", library.as_os_str())]);
    let host = setup.host_file("notes.txt", "from the host\n");
    setup.answer(&format!("{{\"paths\": [{host:?}]}}"));
    let out = setup.client("OpenFile", "from the sandbox\n");
    assert_eq!(out["response"], 0, "{out}");
    assert_eq!(out["content"], "from the host\n", "{out}");
    let marked = |kind: &str| -> Vec<String> {
        std::fs::read_dir(&marks)
            .unwrap()
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(&format!("{kind}-")))
            .collect()
    };
    // The library was in the portal, so the helper could have inherited it.
    assert_eq!(marked("portal").len(), 1, "the portal was not preloaded");
    let helpers = marked("helper");
    assert!(helpers.is_empty(), "the helper got LD_PRELOAD: {helpers:?}");

    // The library does mark a helper that inherits it.
    let mut helper = setup.world.appbox(["document-mount", "--help"]);
    helper.env("LD_PRELOAD", &library);
    assert!(helper.output().unwrap().status.success());
    assert_eq!(marked("helper").len(), 1);
}
