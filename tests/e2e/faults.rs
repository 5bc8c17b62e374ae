//! Faults and load, end to end: many sandboxes and installs at once, a
//! portal flooded with good and bad requests, a portal killed in the middle
//! of a request, and a fork bomb in a sandbox.
//!
//! The tests take turns (each holds [`one_at_a_time`]): each is a load of its
//! own, and a fork bomb next to fifty launches would measure the bomb.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use appbox::plan::DEFAULT_MAX_PROCESSES;
use appbox_tests::{
    child_output_within, chown, describe, output_within, require_programs, wait_until_within,
    Nginx, SessionBus, World,
};

const SCRIPTED_CHOOSER: &str = "APPBOX_PORTAL_SCRIPTED_CHOOSER";
const SCRIPTED_CONSENT: &str = "APPBOX_PORTAL_SCRIPTED_CONSENT";

fn one_at_a_time() -> MutexGuard<'static, ()> {
    static TURN: Mutex<()> = Mutex::new(());
    // A failed test poisons the lock; the next one may still go.
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Processes a test started: killed (SIGKILL) and reaped when dropped, so
/// none outlives the test, even one that failed half-way.
#[derive(Default)]
struct Spawned(Vec<Option<Child>>);

impl Spawned {
    fn start(&mut self, cmd: &mut Command) -> usize {
        self.0.push(Some(cmd.spawn().expect("start a process")));
        self.0.len() - 1
    }

    fn get(&mut self, index: usize) -> &mut Child {
        self.0[index].as_mut().expect("a child not taken yet")
    }

    /// The child at `index`, no longer killed when this is dropped.
    fn take(&mut self, index: usize) -> Child {
        self.0[index].take().expect("a child not taken yet")
    }

    /// Waits until all of `indices` have exited or `deadline` passed; the
    /// status of each, `None` for one still running at the deadline.
    fn wait_all(&mut self, indices: &[usize], deadline: Instant) -> Vec<Option<ExitStatus>> {
        let mut statuses = vec![None; indices.len()];
        loop {
            for (slot, &index) in statuses.iter_mut().zip(indices) {
                if slot.is_none() {
                    *slot = self.get(index).try_wait().expect("try_wait");
                }
            }
            if statuses.iter().all(Option::is_some) || Instant::now() >= deadline {
                return statuses;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        for child in self.0.iter_mut().flatten() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The lines `child` writes to its stdout, as they come.
fn lines_of(child: &mut Child) -> Receiver<String> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let (send, receive) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    receive
}

fn next_line(lines: &Receiver<String>, limit: Duration, what: &str) -> String {
    lines
        .recv_timeout(limit)
        .unwrap_or_else(|e| panic!("no line from {what} within {limit:?}: {e}"))
}

/// `appbox ARGS` as the world's user on `bus` (if any); it must succeed
/// within a minute.
fn appbox_ok(world: &World, bus: Option<&SessionBus>, args: &[&str]) -> Output {
    let mut cmd = world.appbox(args);
    if let Some(bus) = bus {
        cmd.env("DBUS_SESSION_BUS_ADDRESS", bus.address());
    }
    let output = output_within(cmd, Duration::from_secs(60));
    assert!(
        output.status.success(),
        "appbox {args:?}: {}",
        describe(&output)
    );
    output
}

fn json_of(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(output)))
}

// ---------------------------------------------------------------------------
// Load: fifty launches and five installs at once.

/// What the load test installs: the sample apps and their runtime, which
/// four of the five installs need and so deploy at the same time.
const INSTALLED: &[&str] = &[
    "org.appbox.Platform",
    "org.appbox.Wc",
    "org.appbox.Fetch",
    "org.appbox.Hello",
    "org.appbox.Notes",
];
const LAUNCHES: usize = 50;
/// How long the launches and installs may take on two busy cores (they
/// take 2 to 5 s on an idle one).
const LOAD_LIMIT: Duration = Duration::from_secs(60);

/// `cmd` with its stdout and stderr going to `<dir>/<name>.out` and `.err`:
/// files never fill up and block a child the way an unread pipe does.
fn logged<'a>(cmd: &'a mut Command, dir: &Path, name: &str) -> &'a mut Command {
    let out = std::fs::File::create(dir.join(format!("{name}.out"))).unwrap();
    let err = std::fs::File::create(dir.join(format!("{name}.err"))).unwrap();
    cmd.stdin(Stdio::null()).stdout(out).stderr(err)
}

fn log_text(dir: &Path, name: &str) -> String {
    let read =
        |ext: &str| std::fs::read_to_string(dir.join(format!("{name}.{ext}"))).unwrap_or_default();
    format!("stdout:\n{}\nstderr:\n{}", read("out"), read("err"))
}

#[test]
fn fifty_launches_and_five_installs_at_once_all_finish_and_agree() {
    let _turn = one_at_a_time();
    let world = World::new();
    let published = appbox_tests::publish_samples(&world, INSTALLED);
    let nginx = Nginx::serve(&world, &world.root.join("srv"));
    appbox_ok(
        &world,
        None,
        &[
            "remote-add",
            "test",
            &nginx.url("repo"),
            "--sign-pubkey",
            published.public_key.to_str().unwrap(),
        ],
    );
    let app = world.probe_app("org.appbox.Load", &[]);
    let logs = world.root.join("logs");
    std::fs::create_dir(&logs).unwrap();

    let mut spawned = Spawned::default();
    let start = Instant::now();
    let installs: Vec<usize> = INSTALLED
        .iter()
        .map(|id| {
            spawned.start(logged(
                &mut world.appbox(["install", "test", id]),
                &logs,
                &format!("install-{id}"),
            ))
        })
        .collect();
    let launches: Vec<usize> = (0..LAUNCHES)
        .map(|n| {
            spawned.start(logged(
                &mut world.run_app(&app, &[], &[&format!("print=launch-{n}")]),
                &logs,
                &format!("launch-{n}"),
            ))
        })
        .collect();
    let deadline = start + LOAD_LIMIT;
    let launched = spawned.wait_all(&launches, deadline);
    let launches_took = start.elapsed();
    let installed = spawned.wait_all(&installs, deadline);
    let took = start.elapsed();
    eprintln!(
        "{LAUNCHES} launches finished in {launches_took:?}, all with {} installs in {took:?}",
        INSTALLED.len()
    );

    for (n, status) in launched.iter().enumerate() {
        let name = format!("launch-{n}");
        let status = status.unwrap_or_else(|| {
            panic!(
                "{name} still runs after {LOAD_LIMIT:?}: {}",
                log_text(&logs, &name)
            )
        });
        let stdout = std::fs::read_to_string(logs.join(format!("{name}.out"))).unwrap();
        assert!(
            status.success() && stdout.starts_with(&format!("{name}\nok print={name}:")),
            "{name}: {status:?}\n{}",
            log_text(&logs, &name)
        );
    }
    for (id, status) in INSTALLED.iter().zip(&installed) {
        let name = format!("install-{id}");
        let status = status.unwrap_or_else(|| {
            panic!(
                "{name} still runs after {LOAD_LIMIT:?}: {}",
                log_text(&logs, &name)
            )
        });
        // The runtime's own install may come second to an app's, which
        // installs the runtime it needs first; then it is refused as
        // already installed, which is the right answer.
        let log = log_text(&logs, &name);
        let runtime_came_with_an_app =
            *id == INSTALLED[0] && log.contains(&format!("{id} is already installed"));
        assert!(
            status.success() || runtime_came_with_an_app,
            "{name}: {status:?}\n{log}"
        );
    }

    // One view of the store: `list` shows each exactly once, deployed where
    // it says; `repair` finds nothing to mend; nothing is left running.
    let listed = json_of(&appbox_ok(&world, None, &["list", "--json"]));
    let mut ids: Vec<&str> = listed
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {listed}"))
        .iter()
        .map(|entry| entry["id"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let mut wanted = INSTALLED.to_vec();
    wanted.sort_unstable();
    assert_eq!(ids, wanted, "{listed}");
    for entry in listed.as_array().unwrap() {
        // `path` is the current deployment, named by its commit.
        let path = PathBuf::from(entry["path"].as_str().unwrap());
        let commit = entry["commit"].as_str().unwrap();
        let dir = path.parent().unwrap();
        let current = std::fs::read_link(dir.join("current"))
            .unwrap_or_else(|e| panic!("{}: no current link ({e}): {entry}", dir.display()));
        assert_eq!(current.to_str(), Some(commit), "{entry}");
        assert_eq!(path, dir.join(commit), "{entry}");
        assert!(path.join("files").is_dir(), "{entry}");
    }
    let repair = json_of(&appbox_ok(&world, None, &["repair", "--json"]));
    assert_eq!(repair["problems"], serde_json::json!([]), "{repair}");
    let ps = json_of(&appbox_ok(&world, None, &["ps", "--json"]));
    assert_eq!(
        ps,
        serde_json::json!([]),
        "finished launches leave no records"
    );

    // The runtime the installs deployed together works.
    let input = world.root.join("wc-input");
    std::fs::write(&input, "one two\nthree\n").unwrap();
    let counted = child_output_within(
        world
            .appbox(["run", "org.appbox.Wc"])
            .stdin(std::fs::File::open(&input).unwrap())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("start Wc"),
        Duration::from_secs(60),
        "Wc",
    );
    assert!(counted.status.success(), "{}", describe(&counted));
    let counts: Vec<String> = String::from_utf8_lossy(&counted.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(counts[..3], ["2", "3", "14"], "{}", describe(&counted));
    assert!(
        took < LOAD_LIMIT,
        "the load took {took:?}, more than {LOAD_LIMIT:?}"
    );
}

// ---------------------------------------------------------------------------
// The portal: a world with a session bus and the scripted chooser.

/// A world with its session bus; the portal, if started, runs on it.
struct PortalWorld {
    world: World,
    bus: SessionBus,
    /// The scripted chooser's answers, one JSON object per line.
    answers: PathBuf,
}

impl PortalWorld {
    /// The bus starts the portal on demand (and gives it the scripts). The
    /// scripted consent answers come from a FIFO nobody writes to: asked,
    /// the portal waits for ever.
    fn activatable_with_waiting_consent() -> PortalWorld {
        let world = World::new();
        let answers = Self::answers_file(&world);
        let consent = answers.with_file_name("consent");
        let c_path = std::ffi::CString::new(consent.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a valid C string; mkfifo only creates the node.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        chown(&consent, world.user);
        let data_home = world.home.join(".local/share");
        let bus = SessionBus::start_with_env(
            &world,
            &[
                (SCRIPTED_CHOOSER, answers.as_os_str()),
                (SCRIPTED_CONSENT, consent.as_os_str()),
                // dbus-daemon finds the user's services dir from the user
                // database's home unless told; the world's home is elsewhere.
                ("XDG_DATA_HOME", data_home.as_os_str()),
            ],
        );
        PortalWorld {
            world,
            bus,
            answers,
        }
    }

    /// The portal started by the test.
    fn started() -> PortalWorld {
        let world = World::new();
        let answers = Self::answers_file(&world);
        let mut bus = SessionBus::start(&world);
        bus.spawn(
            &world,
            &world.portal_path(),
            &[],
            &[(SCRIPTED_CHOOSER, answers.as_os_str())],
        );
        bus.wait_for_name(&world, "org.appbox.Portal.Desktop");
        PortalWorld {
            world,
            bus,
            answers,
        }
    }

    fn answers_file(world: &World) -> PathBuf {
        require_programs(&["/usr/bin/python3", "/usr/bin/dbus-send"]);
        let dir = world.root.join("chooser");
        std::fs::create_dir(&dir).unwrap();
        chown(&dir, world.user);
        let answers = dir.join("answers");
        std::fs::write(&answers, "").unwrap();
        chown(&answers, world.user);
        answers
    }

    /// Queues `lines` for the scripted chooser, after what is queued.
    fn answer(&self, lines: &[String]) {
        let mut text = std::fs::read_to_string(&self.answers).unwrap_or_default();
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        let staging = self.answers.with_extension("queued");
        std::fs::write(&staging, text).unwrap();
        chown(&staging, self.world.user);
        std::fs::rename(&staging, &self.answers).unwrap();
    }

    /// What the portal asked its chooser, one JSON object per question.
    fn questions(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.answers.with_file_name("answers.log"))
            .unwrap_or_default()
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// `python3 -c SCRIPT ARGS` in the sandbox of `app`, on the bus.
    fn python_in(&self, app: &Path, script: &str, args: &[&str]) -> Command {
        self.bus.python_in(&self.world, app, script, args)
    }

    /// `python3 -c SCRIPT ARGS` on the host, as the user, on the bus.
    fn python_on_host(&self, script: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg("-c").arg(script).args(args);
        self.world.prepare(&mut cmd);
        cmd.env("DBUS_SESSION_BUS_ADDRESS", self.bus.address());
        cmd.stdin(Stdio::null());
        cmd
    }

    /// The pid of the process that owns the portal's name now, if any.
    fn portal_pid(&self) -> Option<u32> {
        self.bus
            .owner_pid(&self.world, "org.appbox.Portal.Desktop")
            .ok()
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.starts_with(" Z"))
    })
}

/// `VmRSS` of `pid`, in KiB.
fn resident_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS for {pid}"))
}

// ---------------------------------------------------------------------------
// Portal flood: a thousand good requests next to a stream of garbage.

/// A well-behaved app, run in the sandbox by the host's python3 (GLib
/// through PyGObject). argv: how many requests, how many in flight at
/// once, its app id. A third each of Settings.Read, Documents.List and
/// FileChooser.OpenFile (whose scripted answer is "cancel", so each ends
/// with Response 1). Prints one JSON object.
const GOOD_CLIENT: &str = r#"
import json, sys, time
from gi.repository import Gio, GLib
total, window, app_id = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
D, P = 'org.freedesktop.portal.Desktop', '/org/freedesktop/portal/desktop'
DOC, DP = 'org.freedesktop.portal.Documents', '/org/freedesktop/portal/documents'
prefix = '%s/request/%s/' % (P, bus.get_unique_name()[1:].replace('.', '_'))
loop = GLib.MainLoop()
s = {'sent': 0, 'answered': 0, 'settings': 0, 'documents': 0, 'chooser': 0, 'responses': 0, 'errors': []}
waiting = set()
def maybe_done():
    if s['answered'] == total and s['responses'] == s['chooser']:
        loop.quit()
def on_response(conn, sender, path, iface, signal, params):
    code = params.unpack()[0]
    if path in waiting:
        waiting.discard(path)
        s['responses'] += 1
        if code != 1:
            s['errors'].append('Response %d, not 1 (cancelled), on %s' % (code, path))
    else:
        s['errors'].append('unexpected Response %d on %s' % (code, path))
    maybe_done()
bus.signal_subscribe(D, 'org.freedesktop.portal.Request', 'Response', None, None,
                     Gio.DBusSignalFlags.NONE, on_response)
def answered(kind, check):
    def done(conn, result):
        try:
            reply = conn.call_finish(result).unpack()
            if check(reply):
                s[kind] += 1
            else:
                s['errors'].append('%s: wrong answer %r' % (kind, reply))
        except GLib.Error as e:
            s['errors'].append('%s: %s' % (kind, e.message))
        s['answered'] += 1
        send()
        maybe_done()
    return done
def send():
    if s['sent'] >= total:
        return
    n = s['sent']
    s['sent'] += 1
    kind = ('settings', 'documents', 'chooser')[n % 3]
    if kind == 'settings':
        bus.call(D, P, 'org.freedesktop.portal.Settings', 'Read',
                 GLib.Variant('(ss)', ('org.freedesktop.appearance', 'color-scheme')),
                 GLib.VariantType('(v)'), 0, 30000, None,
                 answered(kind, lambda r: isinstance(r[0], int)))
    elif kind == 'documents':
        bus.call(DOC, DP, DOC, 'List', GLib.Variant('(s)', (app_id,)),
                 GLib.VariantType('(a{say})'), 0, 30000, None,
                 answered(kind, lambda r: r[0] == {}))
    else:
        token = 'flood%d' % n
        waiting.add(prefix + token)
        bus.call(D, P, 'org.freedesktop.portal.FileChooser', 'OpenFile',
                 GLib.Variant('(ssa{sv})', ('', 'Flood', {'handle_token': GLib.Variant('s', token)})),
                 GLib.VariantType('(o)'), 0, 30000, None,
                 answered(kind, lambda r: r[0] == prefix + token))
start = time.monotonic()
for _ in range(window):
    send()
GLib.timeout_add_seconds(120, loop.quit)
loop.run()
s['seconds'] = round(time.monotonic() - start, 2)
s['errors'] = s['errors'][:10]
print(json.dumps(s))
"#;

/// A hostile app: garbage on its bus connection. argv: `sandbox` (through
/// the sandbox's bus proxy, to the portal's standard names) or `host`
/// (straight to the bus, to the portal's own names), the most rounds, a
/// seed. Raw sockets get random bytes, before and after authenticating,
/// and complete but malformed messages; proper connections send wrong
/// signatures and huge arrays. Prints `ready`, goes on round after round
/// until SIGUSR1 (or the most rounds), then prints one JSON object: the
/// rounds, each kind of garbage, and how many times each outcome came of it.
const GARBAGE_CLIENT: &str = r#"
import json, os, random, signal, socket, struct, sys
from gi.repository import Gio, GLib
mode, most, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
stop = []
signal.signal(signal.SIGUSR1, lambda *_: stop.append(True))
rng = random.Random(seed)
address = os.environ['DBUS_SESSION_BUS_ADDRESS']
path = address.split('path=', 1)[1].split(',')[0]
if mode == 'sandbox':
    D, DOC = 'org.freedesktop.portal.Desktop', 'org.freedesktop.portal.Documents'
else:
    D, DOC = 'org.appbox.Portal.Desktop', 'org.appbox.Portal.Documents'
P, DP = '/org/freedesktop/portal/desktop', '/org/freedesktop/portal/documents'
out = {'garbage': {}, 'huge_bytes': 0}
def tally(kind, outcome):
    out['garbage'].setdefault(kind, {})
    out['garbage'][kind][outcome] = out['garbage'][kind].get(outcome, 0) + 1
def pad(data, n=8):
    return data + b'\0' * (-len(data) % n)
def field(code, sig, text):
    # Each field starts 8-aligned: code, signature, then its value.
    head = bytes([code, 1]) + sig + b'\0'
    if sig == b'g':
        return head + bytes([len(text)]) + text + b'\0'
    return head + struct.pack('<I', len(text)) + text + b'\0'
def message(fields, body=b'', kind=1, version=1, serial=2, endian=b'l', body_len=None, fields_len=None):
    data = b''
    for f in fields:
        data = pad(data) + f
    head = endian + bytes([kind, 0, version]) + struct.pack(
        '<III', len(body) if body_len is None else body_len, serial,
        len(data) if fields_len is None else fields_len)
    return pad(head + data) + body
def call(member, iface=b'org.freedesktop.DBus', dest=b'org.freedesktop.DBus', path_=b'/org/freedesktop/DBus'):
    return [field(1, b'o', path_), field(2, b's', iface), field(3, b's', member), field(6, b's', dest)]
HELLO = message(call(b'Hello'), serial=1)
portal = dict(dest=D.encode(), path_=P.encode(), iface=b'org.freedesktop.portal.Settings')
MALFORMED = {
    'bad endianness': message(call(b'Read', **portal), endian=b'X'),
    'bad version': message(call(b'Read', **portal), version=9),
    'invalid type': message(call(b'Read', **portal), kind=0),
    'serial zero': message(call(b'Read', **portal), serial=0),
    'body past the limit': message(call(b'Read', **portal), body_len=0x7ffffff0),
    'fields past the limit': message(call(b'Read', **portal), fields_len=0x7ffffff0),
    'no member': message([field(1, b'o', P.encode()), field(6, b's', D.encode())]),
    'bad path': message(call(b'Read', dest=D.encode(), path_=b'//x/', iface=b'a.b')),
    'member not utf-8': message(call(b'\xff\xfe', **portal)),
    'body shorter than its signature': message(
        call(b'Read', **portal) + [field(8, b'g', b'ss')], body=struct.pack('<I', 1000) + b'x' * 4),
    'string without its nul': message(
        call(b'Read', **portal) + [field(8, b'g', b's')], body=struct.pack('<I', 3) + b'abcd'),
}
def raw(payload, authenticate, hang_up):
    conn = socket.socket(socket.AF_UNIX)
    conn.settimeout(10)
    try:
        conn.connect(path)
        if authenticate:
            uid = str(os.getuid()).encode().hex().encode()
            conn.sendall(b'\0AUTH EXTERNAL ' + uid + b'\r\n')
            line = conn.recv(256)
            if not line.startswith(b'OK'):
                return 'auth refused'
            conn.sendall(b'BEGIN\r\n' + HELLO)
        conn.sendall(payload)
        if hang_up:
            conn.shutdown(socket.SHUT_WR)
        got = 0
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                return 'closed'
            got += len(chunk)
            if got > 1 << 20:
                return 'flooded back'
    except socket.timeout:
        return 'hung'
    except OSError:
        return 'closed'
    finally:
        conn.close()
def connection():
    flags = Gio.DBusConnectionFlags.AUTHENTICATION_CLIENT | Gio.DBusConnectionFlags.MESSAGE_BUS_CONNECTION
    return Gio.DBusConnection.new_for_address_sync(address, flags, None, None)
def gcall(kind, dest, path_, iface, method, args):
    if kind.startswith('huge'):
        out['huge_bytes'] += args.get_size()
    # A connection of its own: the proxy may close it.
    try:
        conn = connection()
        conn.call_sync(dest, path_, iface, method, args, None, 0, 30000, None)
        tally(kind, 'answered')
    except GLib.Error as e:
        name = Gio.DBusError.get_remote_error(e)
        tally(kind, name or ('closed' if 'close' in e.message.lower() else e.message[:80]))
huge_strings = ['org.garbage.%07d.*' % n for n in range(100000)]
huge_options = {'junk%06d' % n: GLib.Variant('s', 'x' * 16) for n in range(50000)}
huge_options['multiple'] = GLib.Variant('s', 'not a boolean')
print('ready', flush=True)
out['rounds'] = 0
while not stop and out['rounds'] < most:
    out['rounds'] += 1
    for size in (1, 64, 4096):
        tally('random bytes before auth', raw(rng.randbytes(size), False, True))
        tally('random bytes after auth', raw(rng.randbytes(size), True, True))
    for name, payload in MALFORMED.items():
        tally('malformed: ' + name, raw(payload, True, False))
    gcall('wrong signature: Settings.Read(u)', D, P, 'org.freedesktop.portal.Settings', 'Read', GLib.Variant('(u)', (7,)))
    gcall('wrong signature: Documents.List(as)', DOC, DP, 'org.freedesktop.portal.Documents', 'List', GLib.Variant('(as)', (['x'],)))
    gcall('wrong signature: OpenFile(i)', D, P, 'org.freedesktop.portal.FileChooser', 'OpenFile', GLib.Variant('(i)', (1,)))
    gcall('wrong signature: OpenDevice()', D, P, 'org.appbox.portal.Device', 'OpenDevice', None)
    gcall('unknown method', D, P, 'org.freedesktop.portal.Settings', 'Explode', None)
    gcall('huge: ReadAll of 100000 namespaces', D, P, 'org.freedesktop.portal.Settings', 'ReadAll', GLib.Variant('(as)', (huge_strings,)))
    gcall('huge: OpenFile with 50000 options', D, P, 'org.freedesktop.portal.FileChooser', 'OpenFile', GLib.Variant('(ssa{sv})', ('', 'x', huge_options)))
    gcall('huge: a 4 MiB app id', DOC, DP, 'org.freedesktop.portal.Documents', 'List', GLib.Variant('(s)', ('a' * (4 << 20),)))
print(json.dumps(out), flush=True)
"#;

const GOOD_ID: &str = "org.appbox.FloodGood";
const GARBAGE_ID: &str = "org.appbox.FloodGarbage";
const FLOOD: usize = 1000;

/// Starts the good client with `total` requests, all sent at once (a
/// flood, not a stream), after queueing a "cancel" for each of its file
/// chooser requests.
fn good_client(setup: &PortalWorld, app: &Path, total: usize) -> Child {
    let cancels = total / 3;
    setup.answer(&vec!["{\"cancel\": true}".to_owned(); cancels]);
    let total = total.to_string();
    setup
        .python_in(app, GOOD_CLIENT, &[&total, &total, GOOD_ID])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn assert_all_served(output: &Output, total: usize) {
    assert!(output.status.success(), "{}", describe(output));
    let report: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", describe(output)));
    let third = |n: usize| (total + 2 - n) / 3;
    let expected = serde_json::json!({
        "sent": total,
        "answered": total,
        "settings": third(0),
        "documents": third(1),
        "chooser": third(2),
        "responses": third(2),
        "errors": [],
    });
    let mut got = report.clone();
    got.as_object_mut().unwrap().remove("seconds");
    assert_eq!(got, expected, "{}", describe(output));
    eprintln!("{total} requests answered in {} s", report["seconds"]);
}

/// Asserts the garbage client's report: every raw connection was closed
/// (none hung, none got flooded back), every wrong call was refused. The
/// bytes of huge messages it sent.
fn assert_refused(output: &Output) -> u64 {
    assert!(output.status.success(), "{}", describe(output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok())
        .unwrap_or_else(|| panic!("no report: {}", describe(output)));
    eprintln!("garbage: {report}");
    let rounds = report["rounds"].as_u64().unwrap() as usize;
    assert!(rounds >= 1, "{report}");
    for (kind, outcomes) in report["garbage"].as_object().unwrap() {
        let outcomes = outcomes.as_object().unwrap();
        let count: u64 = outcomes.values().map(|n| n.as_u64().unwrap()).sum();
        let expected = if kind.starts_with("random bytes") {
            3 * rounds
        } else {
            rounds
        };
        assert_eq!(count as usize, expected, "{kind}: {report}");
        if kind.starts_with("random bytes") || kind.starts_with("malformed") {
            assert_eq!(
                outcomes.keys().collect::<Vec<_>>(),
                ["closed"],
                "{kind}: {report}"
            );
        } else if kind.starts_with("huge") {
            // Refused, or answered: either way within the call's timeout.
            for outcome in outcomes.keys() {
                assert!(
                    outcome == "answered"
                        || outcome == "closed"
                        || outcome.starts_with("org.freedesktop"),
                    "{kind}: {report}"
                );
                assert!(
                    !outcome.contains("NoReply") && !outcome.contains("Timeout"),
                    "{kind}: {report}"
                );
            }
        } else {
            for outcome in outcomes.keys() {
                assert!(
                    outcome.contains("InvalidArgs")
                        || outcome.contains("UnknownMethod")
                        || outcome == "closed",
                    "{kind}: {report}"
                );
            }
        }
    }
    report["huge_bytes"].as_u64().unwrap()
}

#[test]
fn a_thousand_requests_are_answered_while_garbage_is_refused() {
    let _turn = one_at_a_time();
    let setup = PortalWorld::started();
    let good = setup.world.host_app(GOOD_ID, "/usr/bin/python3", &[]);
    let garbage = setup.world.host_app(GARBAGE_ID, "/usr/bin/python3", &[]);
    let pid = setup.portal_pid().expect("the portal's pid");

    // Warm up: the first calls set up what the portal keeps for good.
    let warm = child_output_within(
        good_client(&setup, &good, 30),
        Duration::from_secs(60),
        "warm-up",
    );
    assert_all_served(&warm, 30);
    let rss_before = resident_kib(pid);

    let seed = std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos() as u64 % 1_000_000;
    eprintln!("garbage from seed {seed}");
    let seed = seed.to_string();
    let mut spawned = Spawned::default();
    let mut garbage_clients = Vec::new();
    for mut cmd in [
        setup.python_in(&garbage, GARBAGE_CLIENT, &["sandbox", "30", &seed]),
        setup.python_on_host(GARBAGE_CLIENT, &["host", "30", &seed]),
    ] {
        let index = spawned.start(cmd.stdout(Stdio::piped()).stderr(Stdio::piped()));
        let lines = lines_of(spawned.get(index));
        let ready = next_line(&lines, Duration::from_secs(30), "a garbage client");
        assert_eq!(ready, "ready");
        garbage_clients.push((index, lines));
    }
    // The flood, while garbage keeps coming.
    let start = Instant::now();
    let flood = child_output_within(
        good_client(&setup, &good, FLOOD),
        Duration::from_secs(120),
        "the good client",
    );
    let flood_took = start.elapsed();
    let mut garbage_outputs = Vec::new();
    for (index, lines) in &garbage_clients {
        let child = spawned.get(*index);
        if child.try_wait().unwrap().is_some() {
            let output = spawned.take(*index).wait_with_output().unwrap();
            panic!(
                "the garbage stopped before the flood did: {}",
                describe(&output)
            );
        }
        // SAFETY: kill with our child's pid and a signal number; `appbox
        // run` passes SIGUSR1 on to the app.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGUSR1) };
        let report = next_line(lines, Duration::from_secs(120), "a garbage client's report");
        let mut output = child_output_within(
            spawned.take(*index),
            Duration::from_secs(30),
            "a garbage client",
        );
        output.stdout = report.into_bytes();
        garbage_outputs.push(output);
    }
    eprintln!("flood took {flood_took:?}, garbage {:?}", start.elapsed());

    assert_all_served(&flood, FLOOD);
    let mut huge_bytes: u64 = garbage_outputs.iter().map(assert_refused).sum();

    // The same portal, still up, serves the next client.
    assert!(alive(pid), "the portal died");
    assert_eq!(
        setup.portal_pid(),
        Some(pid),
        "another process owns the portal's name"
    );
    let after = child_output_within(
        good_client(&setup, &good, 30),
        Duration::from_secs(60),
        "the next client",
    );
    assert_all_served(&after, 30);
    // Garbage never reached the chooser: each question was a good one.
    let questions = setup.questions();
    assert_eq!(questions.len(), 10 + FLOOD / 3 + 10);
    assert!(questions
        .iter()
        .all(|q| q["app_id"] == GOOD_ID && q["title"] == "Flood"));

    // What the garbage cost stays bounded: after more rounds of it, the
    // portal holds far less than the huge messages it read. (The allocator
    // keeps some freed memory: some 16 MiB here; 32 MiB is half of what the
    // huge messages alone would come to, had the portal kept them.)
    let more = child_output_within(
        setup
            .python_on_host(GARBAGE_CLIENT, &["host", "8", &seed])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
        Duration::from_secs(120),
        "more garbage",
    );
    huge_bytes += assert_refused(&more);
    let rss_after = resident_kib(pid);
    eprintln!(
        "portal VmRSS: {rss_before} KiB before, {rss_after} KiB after {} MiB of huge messages",
        huge_bytes >> 20
    );
    const BOUND_KIB: u64 = 32 * 1024;
    assert!(
        huge_bytes / 1024 > 2 * BOUND_KIB,
        "too little garbage ({huge_bytes} bytes) for the bound to mean anything"
    );
    assert!(
        rss_after < rss_before + BOUND_KIB,
        "the portal grew from {rss_before} KiB to {rss_after} KiB"
    );
}

// ---------------------------------------------------------------------------
// kill -9 of the portal in the middle of a request.

const KILLED_ID: &str = "org.appbox.PortalKilled";

/// The app, run in the sandbox by the host's python3. Prints one JSON
/// object per step, flushed at once: a file it gets from the chooser, a
/// device it asks for (the consent question never gets an answer, the
/// portal is killed meanwhile), its documents, and another file.
const KILLED_CLIENT: &str = r#"
import json, sys, time
from gi.repository import Gio, GLib
app_id = sys.argv[1]
bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
D, P = 'org.freedesktop.portal.Desktop', '/org/freedesktop/portal/desktop'
DOC, DP = 'org.freedesktop.portal.Documents', '/org/freedesktop/portal/documents'
prefix = '%s/request/%s/' % (P, bus.get_unique_name()[1:].replace('.', '_'))
def out(step, **fields):
    fields['step'] = step
    print(json.dumps(fields), flush=True)
def open_file(token):
    loop = GLib.MainLoop()
    got = {}
    def on_response(conn, sender, path, iface, signal, params):
        got['response'], results = params.unpack()
        got['uris'] = results.get('uris', [])
        loop.quit()
    sub = bus.signal_subscribe(D, 'org.freedesktop.portal.Request', 'Response', prefix + token, None,
                               Gio.DBusSignalFlags.NONE, on_response)
    try:
        bus.call_sync(D, P, 'org.freedesktop.portal.FileChooser', 'OpenFile',
                      GLib.Variant('(ssa{sv})', ('', 'Pick', {'handle_token': GLib.Variant('s', token)})),
                      GLib.VariantType('(o)'), 0, 30000, None)
        GLib.timeout_add_seconds(20, loop.quit)
        loop.run()
    except GLib.Error as e:
        got['error'] = e.message
    bus.signal_unsubscribe(sub)
    return got
out('granted', **open_file('first'))
start = time.monotonic()
try:
    bus.call_with_unix_fd_list_sync(D, P, 'org.appbox.portal.Device', 'OpenDevice',
                                    GLib.Variant('(sa{sv})', ('kvm', {})), GLib.VariantType('(h)'),
                                    0, 60000, None, None)
    out('pending', reply='a descriptor')
except GLib.Error as e:
    out('pending', error=Gio.DBusError.get_remote_error(e) or e.message, message=e.message,
        seconds=round(time.monotonic() - start, 1))
try:
    docs = bus.call_sync(DOC, DP, DOC, 'List', GLib.Variant('(s)', (app_id,)),
                         GLib.VariantType('(a{say})'), 0, 30000, None).unpack()[0]
    out('listed', documents=sorted(docs))
except GLib.Error as e:
    out('listed', error=e.message)
out('granted again', **open_file('second'))
"#;

#[test]
fn a_portal_killed_mid_request_fails_that_call_and_the_next_call_restarts_it() {
    let _turn = one_at_a_time();
    let setup = PortalWorld::activatable_with_waiting_consent();
    let consent_log = setup.answers.with_file_name("consent.log");

    let app = setup.world.host_app(KILLED_ID, "/usr/bin/python3", &[]);
    let documents = setup.world.home_dir("Documents");
    let mut files = Vec::new();
    for (name, text) in [
        ("before.txt", "granted before the kill\n"),
        ("after.txt", "granted after\n"),
    ] {
        let path = documents.join(name);
        std::fs::write(&path, text).unwrap();
        chown(&path, setup.world.user);
        files.push(path);
    }
    setup.answer(&[format!("{{\"paths\": [{:?}]}}", files[0])]);
    assert!(
        setup.portal_pid().is_none(),
        "no portal before the app asks"
    );

    let mut spawned = Spawned::default();
    let client = spawned.start(
        setup
            .python_in(&app, KILLED_CLIENT, &[KILLED_ID])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let lines = lines_of(spawned.get(client));
    let step = |limit: u64| -> serde_json::Value {
        let line = next_line(&lines, Duration::from_secs(limit), "the app");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"))
    };
    let granted = step(60);
    assert_eq!(granted["step"], "granted", "{granted}");
    assert_eq!(granted["response"], 0, "{granted}");
    let first_uri = granted["uris"][0].as_str().unwrap().to_owned();
    let first_id = first_uri.rsplit('/').nth(1).unwrap().to_owned();

    // The portal has the consent question, and the app's call is pending.
    appbox_tests::wait_until("the consent question", || {
        std::fs::read_to_string(&consent_log).is_ok_and(|log| log.contains("\"kvm\""))
    });
    let killed = setup.portal_pid().expect("the portal's pid");
    setup.answer(&[format!("{{\"paths\": [{:?}]}}", files[1])]);
    // SAFETY: kill with a pid and a signal number.
    assert_eq!(
        unsafe { libc::kill(killed as libc::pid_t, libc::SIGKILL) },
        0
    );

    // The pending call fails at once (not after its 60 s timeout).
    let pending = step(30);
    assert_eq!(pending["step"], "pending", "{pending}");
    assert_eq!(
        pending["error"], "org.freedesktop.DBus.Error.NoReply",
        "{pending}"
    );
    assert!(pending["seconds"].as_f64().unwrap() < 20.0, "{pending}");

    // The next calls start a new portal, which knows the grant.
    let listed = step(30);
    assert_eq!(
        listed["documents"],
        serde_json::json!([first_id]),
        "{listed}"
    );
    let again = step(60);
    assert_eq!(again["response"], 0, "{again}");
    let second_uri = again["uris"][0].as_str().unwrap().to_owned();
    let status = spawned
        .wait_all(&[client], Instant::now() + Duration::from_secs(20))
        .remove(0)
        .expect("the app exits");
    assert!(status.success(), "{status:?}");
    let restarted = setup.portal_pid().expect("a portal again");
    assert_ne!(restarted, killed);
    assert!(alive(restarted) && !alive(killed));

    // Both grants are kept, and the next launch mounts them.
    let listed = json_of(&appbox_ok(
        &setup.world,
        Some(&setup.bus),
        &["documents", "--json"],
    ));
    let mut kept: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|doc| {
            (
                doc["path"].as_str().unwrap(),
                doc["apps"][KILLED_ID].as_str().unwrap(),
            )
        })
        .collect();
    kept.sort_unstable();
    assert_eq!(
        kept,
        [
            (files[1].to_str().unwrap(), "read-write"),
            (files[0].to_str().unwrap(), "read-write")
        ],
        "{listed}"
    );
    for (uri, text) in [
        (&first_uri, "granted before the kill\n"),
        (&second_uri, "granted after\n"),
    ] {
        let in_sandbox = uri.strip_prefix("file://").unwrap();
        let mut cat = setup
            .world
            .run_app(&app, &["--command", "/usr/bin/cat"], &[in_sandbox]);
        cat.env("DBUS_SESSION_BUS_ADDRESS", setup.bus.address());
        let output = output_within(cat, Duration::from_secs(60));
        assert!(output.status.success(), "{}", describe(&output));
        assert_eq!(String::from_utf8_lossy(&output.stdout), text);
    }
}

// ---------------------------------------------------------------------------
// A fork bomb.

const BOMB_ID: &str = "org.appbox.ForkBomb";
/// Host processes of the test user while the bomb goes off.
const HOST_SLEEPERS: usize = 20;

/// Tasks (threads included) whose real uid is `uid`, and, with `userns`,
/// only those in that user namespace.
fn tasks_of(uid: u32, userns: Option<&Path>) -> u64 {
    let mut count = 0;
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let dir = entry.path();
        if let Some(userns) = userns {
            if std::fs::read_link(dir.join("ns/user")).ok().as_deref() != Some(userns) {
                continue;
            }
        }
        let Ok(status) = std::fs::read_to_string(dir.join("status")) else {
            continue; // gone meanwhile
        };
        let value = |key: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(key))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse::<u64>().ok())
        };
        if value("Uid:") == Some(u64::from(uid)) {
            count += value("Threads:").unwrap_or(1);
        }
    }
    count
}

#[test]
fn a_fork_bomb_stops_at_the_sandbox_limit_and_the_host_goes_on() {
    let _turn = one_at_a_time();
    let world = World::new();
    let uid = world.user.uid;
    let limit = DEFAULT_MAX_PROCESSES;
    let bomb = world.probe_app(BOMB_ID, &[]);
    let mut spawned = Spawned::default();

    // The user's own processes on the host: the sandbox's limit must not
    // count them.
    for _ in 0..HOST_SLEEPERS {
        let mut sleeper = Command::new("/usr/bin/sleep");
        sleeper.arg("300").stdin(Stdio::null());
        world.prepare(&mut sleeper);
        spawned.start(&mut sleeper);
    }
    let on_host = tasks_of(uid, None);
    assert!(on_host >= HOST_SLEEPERS as u64);

    // A safety net for when the sandbox's limit is broken: a limit set
    // before the sandbox's user namespace exists caps the user's tasks as
    // counted from inside it, far below kernel.pid_max. The probe stops
    // itself at three times the limit too.
    let safety_net = on_host + 2 * limit + 512;
    let mut cmd = world.run_app(&bomb, &[], &[&format!("fork-bomb={}", 3 * limit)]);
    // SAFETY: the closure only calls setrlimit, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let net = libc::rlimit {
                rlim_cur: safety_net,
                rlim_max: safety_net,
            };
            if libc::setrlimit(libc::RLIMIT_NPROC, &net) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let start = Instant::now();
    let launcher = spawned.start(
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
    );
    let lines = lines_of(spawned.get(launcher));
    let verdict = next_line(&lines, Duration::from_secs(60), "the fork bomb");
    eprintln!("after {:?}: {verdict}", start.elapsed());
    assert!(
        verdict.starts_with("ok fork-bomb=")
            && verdict.contains("refused with EAGAIN")
            && verdict.ends_with(&format!("RLIMIT_NPROC {limit}/{limit}")),
        "{verdict}"
    );

    // The sandbox holds exactly its limit: its pid 1 and the bomb.
    let listed = json_of(&appbox_ok(&world, None, &["ps", "--json"]));
    let pid = listed[0]["pid"]
        .as_u64()
        .unwrap_or_else(|| panic!("{listed}"));
    let userns = std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap();
    let mut in_sandbox = 0;
    wait_until_within("the sandbox to fill up", Duration::from_secs(30), || {
        in_sandbox = tasks_of(uid, Some(&userns));
        in_sandbox >= limit
    });
    assert_eq!(in_sandbox, limit);
    // The limit counts the sandbox alone: had it counted the user's tasks
    // outside, the sandbox would have stopped `on_host` tasks short of it.
    let all = tasks_of(uid, None);
    assert!(
        all >= on_host + limit,
        "{all} tasks of the user, {on_host} outside and {limit} inside"
    );

    // The host goes on: the same user starts processes that start processes,
    // and another sandbox.
    let mut forks = Command::new("/usr/bin/timeout");
    forks.args(["10", "/bin/true"]);
    world.prepare(&mut forks);
    let forked = output_within(forks, Duration::from_secs(30));
    assert!(forked.status.success(), "{}", describe(&forked));
    let bystander = world.probe_app("org.appbox.Bystander", &[]);
    let output = output_within(
        world.run_app(&bystander, &[], &["print=still starts", "pidns"]),
        Duration::from_secs(60),
    );
    appbox_tests::ProbeReport::from_output(output).assert_all_ok();
    assert_eq!(
        tasks_of(uid, Some(&userns)),
        limit,
        "the bomb got past its limit"
    );
    eprintln!(
        "the host went on while {limit} tasks filled the sandbox ({on_host} of the user's outside)"
    );

    // And the bomb goes with `appbox kill`, every last process of it.
    appbox_ok(&world, None, &["kill", BOMB_ID]);
    let status = spawned
        .wait_all(&[launcher], Instant::now() + Duration::from_secs(30))
        .remove(0)
        .expect("the launcher exits after kill");
    assert_eq!(status.code(), Some(128 + 9));
    wait_until_within(
        "the bomb's processes to go",
        Duration::from_secs(30),
        || tasks_of(uid, Some(&userns)) == 0,
    );
    assert_eq!(
        json_of(&appbox_ok(&world, None, &["ps", "--json"])),
        serde_json::json!([])
    );
    eprintln!("bomb contained and removed in {:?}", start.elapsed());
}
