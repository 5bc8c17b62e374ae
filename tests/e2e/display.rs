//! Display servers: X11 through Xvfb with access control on, and Wayland through
//! a headless weston. An app reaches a display only with the matching socket
//! permission, and then gets only the Xauthority cookie of its own display.
//!
//! The servers run as the world's user, like a desktop session, and are killed
//! (with their process groups) even when an assertion fails.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use appbox_tests::{
    artifacts_dir, chown, output_within, require_programs, running_as_root, SessionBus, World,
};

/// The bound of every wait in this file.
const TIMEOUT: Duration = Duration::from_secs(10);

const X11_TOOLS: &[&str] = &[
    "/usr/bin/Xvfb",
    "/usr/bin/xauth",
    "/usr/bin/xlogo",
    "/usr/bin/xwininfo",
    "/usr/bin/xdpyinfo",
    "/usr/bin/import",
    "/usr/bin/identify",
];

const WAYLAND_TOOLS: &[&str] = &["/usr/bin/weston", "/usr/bin/wayland-info"];

fn unique() -> u32 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Polls `done` every 20 ms until it returns a value or `limit` passes.
fn poll<T>(limit: Duration, mut done: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    loop {
        if let Some(value) = done() {
            return Some(value);
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process this test started, in a process group of its own. Dropping it
/// kills the group (SIGTERM, then SIGKILL) and reaps the process.
struct Spawned {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Spawned {
    /// Starts `cmd` with stdout and stderr going to `log`.
    fn start(name: String, mut cmd: Command, log: PathBuf) -> Self {
        let file = std::fs::File::create(&log).expect("create log file");
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Spawned { name, child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("wait for child")
    }

    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        poll(limit, || self.try_wait())
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: signalling our own child, which is not reaped yet.
        unsafe { libc::kill(self.child.id() as i32, signal) };
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if self.try_wait().is_some() {
            return;
        }
        // Ask the process itself first, so a server can stop its own clients.
        self.signal(libc::SIGTERM);
        let pid = self.child.id() as libc::pid_t;
        let exited = poll(Duration::from_secs(5), || {
            exited_unreaped(pid).then_some(())
        });
        if exited.is_none() {
            eprintln!("{} ignored SIGTERM; killing it", self.name);
        }
        // Until it is reaped, the pid and so the process group are still ours:
        // kill whatever of the group is left.
        // SAFETY: signalling the process group of our own, unreaped child.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

/// Whether our child `pid` has exited, without reaping it.
fn exited_unreaped(pid: libc::pid_t) -> bool {
    // SAFETY: an all-zero siginfo_t is valid; waitid only writes into it.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer; WNOWAIT leaves the child waitable.
    let ret = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    // SAFETY: waitid filled in a SIGCHLD siginfo (or left it zeroed).
    ret == 0 && unsafe { info.si_pid() } != 0
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn describe(output: &Output) -> String {
    format!(
        "{}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    )
}

/// `appbox run --app-dir APP OPTIONS...` as the world's user, with `env` added
/// to its clean environment, run to completion.
fn run_app(world: &World, app: &Path, options: &[&str], env: &[(&str, &str)]) -> Output {
    output_within(app_command(world, app, options, env), TIMEOUT)
}

fn app_command(world: &World, app: &Path, options: &[&str], env: &[(&str, &str)]) -> Command {
    let mut args = vec!["run".to_owned(), "--app-dir".to_owned()];
    args.push(app.display().to_string());
    args.extend(options.iter().map(|s| s.to_string()));
    let mut cmd = world.appbox(&args);
    cmd.envs(env.iter().copied());
    cmd
}

// ---------------------------------------------------------------------------
// X11

/// A running Xvfb with access control on: only clients holding `cookie` get in.
struct Xvfb {
    display: u32,
    cookie: String,
    /// The user's Xauthority (`~/.Xauthority`), holding the cookie.
    xauthority: PathBuf,
    server: Spawned,
}

/// 32 random hex digits.
fn random_cookie() -> String {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `xauth -f FILE add DISPLAY . COOKIE` as the world's user.
fn xauth_add(world: &World, file: &Path, display: &str, cookie: &str) {
    let mut cmd = Command::new("/usr/bin/xauth");
    cmd.arg("-f").arg(file).args(["add", display, ".", cookie]);
    world.prepare(&mut cmd);
    let output = output_within(cmd, TIMEOUT);
    assert!(output.status.success(), "xauth add: {}", describe(&output));
}

/// Display numbers handed out in this process, from 90 up; a number whose
/// socket or lock file exists belongs to someone else and is skipped.
fn free_display() -> u32 {
    static NEXT: Mutex<u32> = Mutex::new(90);
    let mut next = NEXT.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let n = *next;
        *next += 1;
        let taken = [format!("/tmp/.X11-unix/X{n}"), format!("/tmp/.X{n}-lock")]
            .iter()
            .any(|p| std::fs::symlink_metadata(p).is_ok());
        if !taken {
            return n;
        }
    }
}

/// An X server run by a user cannot create /tmp/.X11-unix properly; as root,
/// create it the way a system would (root-owned, sticky, world-writable).
fn ensure_x11_unix_dir() {
    let dir = Path::new("/tmp/.X11-unix");
    if !running_as_root() || dir.exists() {
        return;
    }
    match std::fs::create_dir(dir) {
        Ok(()) => std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o1777)).unwrap(),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => panic!("create {}: {e}", dir.display()),
    }
}

impl Xvfb {
    /// Starts Xvfb on a free display as the world's user. The server reads its
    /// cookie from a file of its own; the same cookie goes into `~/.Xauthority`.
    fn start(world: &World) -> Self {
        require_programs(X11_TOOLS);
        ensure_x11_unix_dir();
        let cookie = random_cookie();
        let xauthority = world.home.join(".Xauthority");
        let mut failures = String::new();
        for _attempt in 0..5 {
            let display = free_display();
            let server_auth = world.home.join(format!("xvfb-{display}.auth"));
            xauth_add(world, &server_auth, &format!(":{display}"), &cookie);
            xauth_add(world, &xauthority, &format!(":{display}"), &cookie);
            let mut cmd = Command::new("/usr/bin/Xvfb");
            cmd.arg(format!(":{display}"))
                .arg("-auth")
                .arg(&server_auth)
                .args(["-screen", "0", "640x480x24", "-nolisten", "tcp", "-noreset"]);
            world.prepare(&mut cmd);
            let mut server = Spawned::start(
                format!("Xvfb :{display}"),
                cmd,
                world.root.join(format!("xvfb-{display}.log")),
            );
            let socket = PathBuf::from(format!("/tmp/.X11-unix/X{display}"));
            let up = poll(TIMEOUT, || {
                if socket.exists() {
                    Some(true)
                } else {
                    server.try_wait().map(|_| false)
                }
            });
            match up {
                Some(true) => {
                    return Xvfb {
                        display,
                        cookie,
                        xauthority,
                        server,
                    }
                }
                // Exited: most likely someone else took the display meanwhile.
                Some(false) => {
                    failures.push_str(&format!("Xvfb :{display} exited:\n{}\n", server.log()))
                }
                None => panic!(
                    "Xvfb :{display} did not create {} within {TIMEOUT:?}:\n{}",
                    socket.display(),
                    server.log()
                ),
            }
        }
        panic!("could not start Xvfb:\n{failures}");
    }

    fn display_name(&self) -> String {
        format!(":{}", self.display)
    }

    /// The environment a desktop session gives its apps for this display.
    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("DISPLAY", self.display_name()),
            ("XAUTHORITY", self.xauthority.display().to_string()),
        ]
    }

    /// A host X client, run as the world's user with this display's cookie.
    fn client(&self, world: &World, program: &str) -> Command {
        let mut cmd = Command::new(program);
        world.prepare(&mut cmd);
        cmd.envs(self.env());
        cmd
    }

    fn assert_running(&mut self) {
        if let Some(status) = self.server.try_wait() {
            panic!("Xvfb exited ({status}):\n{}", self.server.log());
        }
    }
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Names of the top-level windows on the display.
fn window_tree(world: &World, x: &Xvfb) -> String {
    let mut cmd = x.client(world, "/usr/bin/xwininfo");
    cmd.args(["-display", &x.display_name(), "-root", "-tree"]);
    text(&output_within(cmd, TIMEOUT).stdout)
}

/// A PNG screenshot of the whole screen.
fn screenshot(world: &World, x: &Xvfb) -> Vec<u8> {
    let mut cmd = x.client(world, "/usr/bin/import");
    cmd.args(["-display", &x.display_name(), "-window", "root", "png:-"]);
    let output = output_within(cmd, TIMEOUT);
    assert!(output.status.success(), "import: {}", describe(&output));
    output.stdout
}

/// Width, height and number of distinct colours of an image file.
fn image_facts(path: &Path) -> (u32, u32, u64) {
    let mut cmd = Command::new("/usr/bin/identify");
    cmd.args(["-format", "%w %h %k"]).arg(path);
    let output = output_within(cmd, TIMEOUT);
    assert!(output.status.success(), "identify: {}", describe(&output));
    let out = text(&output.stdout);
    let fields: Vec<u64> = out
        .split_whitespace()
        .map(|f| {
            f.parse()
                .unwrap_or_else(|_| panic!("identify said {out:?}"))
        })
        .collect();
    assert_eq!(fields.len(), 3, "identify said {out:?}");
    (fields[0] as u32, fields[1] as u32, fields[2])
}

#[test]
fn x11_app_draws_a_window_with_socket_x11() {
    let world = World::new();
    let mut x = Xvfb::start(&world);
    let app = world.host_app("org.appbox.XLogo", "/usr/bin/xlogo", &["--socket=x11"]);
    let env = x.env();
    let mut xlogo = Spawned::start(
        "appbox run (xlogo)".to_owned(),
        app_command(&world, &app, &[], &env_refs(&env)),
        world.root.join("xlogo.log"),
    );

    let window = poll(TIMEOUT, || {
        if xlogo.try_wait().is_some() {
            return Some(false);
        }
        window_tree(&world, &x)
            .contains("\"xlogo\"")
            .then_some(true)
    });
    assert_eq!(
        window,
        Some(true),
        "no xlogo window appeared on :{}; appbox said:\n{}\nwindows:\n{}",
        x.display,
        xlogo.log(),
        window_tree(&world, &x)
    );

    // The window is mapped before xlogo draws into it: shoot until the screen
    // is no longer a single colour (Xvfb's root is plain black).
    let png = artifacts_dir().join("display-x11-xlogo.png");
    let drawn = poll(TIMEOUT, || {
        std::fs::write(&png, screenshot(&world, &x)).unwrap();
        let facts = image_facts(&png);
        (facts.2 > 1).then_some(facts)
    });
    x.assert_running();

    xlogo.signal(libc::SIGTERM);
    let status = xlogo
        .wait(TIMEOUT)
        .unwrap_or_else(|| panic!("appbox did not exit after SIGTERM:\n{}", xlogo.log()));
    assert_eq!(
        status.code(),
        Some(128 + libc::SIGTERM),
        "appbox should report xlogo's death by SIGTERM ({status}, signal {:?}):\n{}",
        status.signal(),
        xlogo.log()
    );
    drop(x);

    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    // An all-black 640x480 PNG is about 190 bytes.
    assert!(size > 400, "{} is only {size} bytes", png.display());
    let (width, height, colours) = drawn.unwrap_or_else(|| image_facts(&png));
    assert_eq!((width, height), (640, 480), "{}", png.display());
    assert!(
        colours > 1,
        "{} is a single colour: xlogo drew nothing",
        png.display()
    );
    eprintln!("screenshot: {}", png.display());
}

#[test]
fn x11_is_refused_without_the_permission() {
    let world = World::new();
    let x = Xvfb::start(&world);
    let env = x.env();
    let env = env_refs(&env);

    // The fixture really has access control on: no cookie, no entry.
    let mut cmd = x.client(&world, "/usr/bin/xdpyinfo");
    cmd.env("XAUTHORITY", "/dev/null");
    let output = output_within(cmd, TIMEOUT);
    assert!(
        !output.status.success(),
        "Xvfb let in a client without a cookie: {}",
        describe(&output)
    );

    let plain = world.host_app("org.appbox.NoX", "/usr/bin/xdpyinfo", &[]);
    let display_env = format!("--env=DISPLAY={}", x.display_name());
    for options in [&[][..], &[display_env.as_str()][..]] {
        let output = run_app(&world, &plain, options, &env);
        assert!(
            !output.status.success() && text(&output.stderr).contains("unable to open display"),
            "xdpyinfo without socket=x11 ({options:?}) should not reach the display: {}",
            describe(&output)
        );
    }

    let granted = world.host_app("org.appbox.X", "/usr/bin/xdpyinfo", &["--socket=x11"]);
    let output = run_app(&world, &granted, &["--nosocket=x11"], &env);
    assert!(
        !output.status.success() && text(&output.stderr).contains("unable to open display"),
        "--nosocket=x11 should take the display away: {}",
        describe(&output)
    );

    // With the permission, the filtered Xauthority gets xdpyinfo in.
    for (app, options) in [(&granted, &[][..]), (&plain, &["--socket=x11"][..])] {
        let output = run_app(&world, app, options, &env);
        assert!(
            output.status.success(),
            "xdpyinfo with socket=x11 ({options:?}) should reach the display: {}",
            describe(&output)
        );
        let stdout = text(&output.stdout);
        assert!(
            stdout.contains(&format!("name of display:    :{}", x.display)),
            "{stdout}"
        );
    }
}

#[test]
fn xauthority_holds_only_the_granted_display() {
    let world = World::new();
    let x = Xvfb::start(&world);
    let n = x.display;
    let m = n + 1000;
    let other_display = random_cookie();
    let other_host = random_cookie();
    // A session with several displays, and a cookie for display N of another host.
    xauth_add(&world, &x.xauthority, &format!(":{m}"), &other_display);
    xauth_add(
        &world,
        &x.xauthority,
        &format!("appbox-e2e-elsewhere/unix:{n}"),
        &other_host,
    );
    let env = x.env();
    let env = env_refs(&env);

    let uid = world.user.uid;
    let sandbox_file = format!("/run/user/{uid}/Xauthority");
    let app = world.host_app("org.appbox.Xauth", "/usr/bin/xauth", &["--socket=x11"]);
    let output = run_app(&world, &app, &["--", "-f", &sandbox_file, "list"], &env);
    assert!(output.status.success(), "xauth list: {}", describe(&output));
    let listing = text(&output.stdout);
    let entries: Vec<&str> = listing.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(
        entries.len(),
        1,
        "expected one cookie in the sandbox:\n{listing}"
    );
    let fields: Vec<&str> = entries[0].split_whitespace().collect();
    assert_eq!(fields.len(), 3, "{listing}");
    assert!(
        fields[0].ends_with(&format!(":{n}")),
        "the cookie is not for display :{n}:\n{listing}"
    );
    assert_eq!(fields[1], "MIT-MAGIC-COOKIE-1", "{listing}");
    assert_eq!(fields[2], x.cookie, "{listing}");
    for (what, cookie) in [
        ("display :M", &other_display),
        ("another host", &other_host),
    ] {
        assert!(
            !listing.contains(cookie.as_str()),
            "the cookie of {what} leaked:\n{listing}"
        );
    }
    assert!(!listing.contains(&format!(":{m}")), "{listing}");

    // The server knows only display N's cookie, so getting in proves it was kept.
    let output = run_app(&world, &app, &["--command=/usr/bin/xdpyinfo"], &env);
    assert!(
        output.status.success(),
        "xdpyinfo with the filtered Xauthority: {}",
        describe(&output)
    );
}

// ---------------------------------------------------------------------------
// Wayland

#[test]
fn wayland_client_connects_with_socket_wayland() {
    require_programs(WAYLAND_TOOLS);
    let world = World::new();
    let name = format!("wayland-appbox-e2e-{}-{}", std::process::id(), unique());
    let mut cmd = Command::new("/usr/bin/weston");
    cmd.args([
        "--backend=headless-backend.so",
        &format!("--socket={name}"),
        "--idle-time=0",
        "--no-config",
    ]);
    world.prepare(&mut cmd);
    let mut weston = Spawned::start("weston".to_owned(), cmd, world.root.join("weston.log"));
    let socket = world.runtime_dir.join(&name);
    let up = poll(TIMEOUT, || {
        if socket.exists() {
            Some(true)
        } else {
            weston.try_wait().map(|_| false)
        }
    });
    assert_eq!(
        up,
        Some(true),
        "weston did not create {}:\n{}",
        socket.display(),
        weston.log()
    );
    let env = [("WAYLAND_DISPLAY", name.as_str())];

    let granted = world.host_app(
        "org.appbox.Wayland",
        "/usr/bin/wayland-info",
        &["--socket=wayland"],
    );
    let output = run_app(&world, &granted, &[], &env);
    assert!(
        output.status.success() && text(&output.stdout).contains("wl_compositor"),
        "wayland-info with socket=wayland should list the compositor's interfaces: {}\nweston:\n{}",
        describe(&output),
        weston.log()
    );

    let plain = world.host_app("org.appbox.NoWayland", "/usr/bin/wayland-info", &[]);
    // Even pointed at the host's socket by path, the app cannot reach it.
    let by_path = format!("--env=WAYLAND_DISPLAY={}", socket.display());
    for (app, options) in [
        (&plain, &[][..]),
        (&plain, &[by_path.as_str()][..]),
        (&granted, &["--nosocket=wayland"][..]),
    ] {
        let output = run_app(&world, app, options, &env);
        assert!(
            !output.status.success(),
            "wayland-info without socket=wayland ({options:?}) should fail: {}",
            describe(&output)
        );
        assert!(
            !text(&output.stdout).contains("wl_compositor"),
            "{}",
            describe(&output)
        );
    }
    if let Some(status) = weston.try_wait() {
        panic!("weston exited ({status}):\n{}", weston.log());
    }
}

/// What the notes editor needs to show its window on Xvfb.
const NOTES_ON_X11: &[&str] = &[
    "--socket=x11",
    "--share=ipc",
    "--env=GSK_RENDERER=cairo",
    "--env=GTK_A11Y=none",
];

/// The notes editor in its sandbox on `x`, with `bus` as the host's session
/// bus, once its window is up.
fn notes_on_bus(world: &World, x: &Xvfb, bus: &SessionBus) -> Spawned {
    let app = notes_app(world, NOTES_ON_X11);
    let address = bus.address();
    let display_env = x.env();
    let mut env = env_refs(&display_env);
    env.push(("DBUS_SESSION_BUS_ADDRESS", &address));
    let mut notes = Spawned::start(
        "appbox run (notes)".to_owned(),
        app_command(world, &app, &[], &env),
        world.root.join("notes.log"),
    );
    wait_for_window(world, x, &mut notes, "Notes");
    notes
}

/// A session bus whose daemon has the display: what it activates (the
/// desktop's portal backend) shows its dialogs on `x`.
fn bus_on_display(world: &World, x: &Xvfb) -> SessionBus {
    let display_env = x.env();
    let env: Vec<(&str, &std::ffi::OsStr)> = display_env
        .iter()
        .map(|(k, v)| (*k, std::ffi::OsStr::new(v.as_str())))
        .collect();
    SessionBus::start_with_env(world, &env)
}

/// The GTK4 notes editor from `manifests/`, with its text to open in /app.
fn notes_app(world: &World, permissions: &[&str]) -> PathBuf {
    let app = world.host_app("org.appbox.Notes", "/app/bin/appbox-notes", permissions);
    let bin = app.join("files/bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(appbox_tests::notes_binary(), bin.join("appbox-notes")).unwrap();
    world.write(
        &app.join("files/share/welcome.txt"),
        "Hello from a file inside the sandbox.\n",
    );
    appbox_tests::make_readable(&app);
    app
}

#[test]
fn the_notes_editor_opens_a_file_in_the_sandbox() {
    let world = World::new();
    let mut x = Xvfb::start(&world);
    let app = notes_app(&world, NOTES_ON_X11);
    let env = x.env();
    let mut notes = Spawned::start(
        "appbox run (notes)".to_owned(),
        app_command(
            &world,
            &app,
            &["--", "/app/share/welcome.txt"],
            &env_refs(&env),
        ),
        world.root.join("notes.log"),
    );
    let window = poll(TIMEOUT, || {
        if notes.try_wait().is_some() {
            return Some(false);
        }
        window_tree(&world, &x)
            .contains("welcome.txt — Notes")
            .then_some(true)
    });
    assert_eq!(
        window,
        Some(true),
        "no notes window titled after the file appeared; appbox said:\n{}\nwindows:\n{}",
        notes.log(),
        window_tree(&world, &x)
    );
    let png = artifacts_dir().join("display-x11-notes.png");
    let drawn = poll(TIMEOUT, || {
        std::fs::write(&png, screenshot(&world, &x)).unwrap();
        (image_facts(&png).2 > 2).then_some(())
    });
    assert!(
        drawn.is_some(),
        "the notes window drew nothing: {}",
        png.display()
    );
    x.assert_running();
    notes.signal(libc::SIGTERM);
    notes
        .wait(TIMEOUT)
        .unwrap_or_else(|| panic!("appbox did not exit after SIGTERM:\n{}", notes.log()));
    eprintln!("screenshot: {}", png.display());
}

/// Runs xdotool on the display; the test fails if it does. Its output.
fn xdotool(world: &World, x: &Xvfb, args: &[&str]) -> String {
    let mut cmd = x.client(world, "/usr/bin/xdotool");
    cmd.args(args);
    let output = output_within(cmd, TIMEOUT);
    assert!(
        output.status.success(),
        "xdotool {args:?}: {}",
        describe(&output)
    );
    text(&output.stdout)
}

/// The xdotool words that focus the visible window named `name`.
fn focusing(name: &str) -> [&str; 7] {
    [
        "search",
        "--sync",
        "--onlyvisible",
        "--name",
        name,
        "windowfocus",
        "--sync",
    ]
}

/// Types `keys` (xdotool key names) into the window named `name`.
fn press(world: &World, x: &Xvfb, name: &str, keys: &[&str]) {
    let focus = focusing(name);
    xdotool(
        world,
        x,
        &[&focus[..], &["key", "--clearmodifiers"], keys].concat(),
    );
}

#[test]
fn the_notes_editor_opens_and_saves_a_host_file_through_the_portal() {
    require_programs(&["/usr/bin/xdotool"]);
    let world = World::new();
    let mut x = Xvfb::start(&world);
    let mut bus = SessionBus::start(&world);
    let chooser = world.root.join("chooser");
    std::fs::create_dir(&chooser).unwrap();
    chown(&chooser, world.user);
    let host = world.home_dir("Documents").join("shopping.txt");
    std::fs::write(&host, "eggs\n").unwrap();
    chown(&host, world.user);
    let secret = world.home_dir("Documents").join("diary.txt");
    std::fs::write(&secret, "private\n").unwrap();
    chown(&secret, world.user);
    let queue = chooser.join("answers");
    std::fs::write(&queue, format!("{{\"paths\": [{host:?}]}}\n")).unwrap();
    chown(&queue, world.user);
    bus.spawn(
        &world,
        &world.portal_path(),
        &[],
        &[("APPBOX_PORTAL_SCRIPTED_CHOOSER", queue.as_os_str())],
    );
    bus.wait_for_name(&world, "org.appbox.Portal.Desktop");

    let mut notes = notes_on_bus(&world, &x, &bus);

    // Ctrl+O: GTK's native chooser asks the portal, which asks its
    // (scripted) chooser on the host, then mounts the file into the sandbox.
    press(&world, &x, "Notes", &["ctrl+o"]);
    wait_for_window(&world, &x, &mut notes, "shopping.txt — Notes");
    let png = artifacts_dir().join("portal-notes-opened.png");
    std::fs::write(&png, screenshot(&world, &x)).unwrap();

    // Type at the start of the text and save in place through the mount.
    press(
        &world,
        &x,
        "shopping.txt",
        &["m", "i", "l", "k", "Return", "ctrl+s"],
    );
    let saved = poll(TIMEOUT, || {
        let text = std::fs::read_to_string(&host).unwrap();
        (text == "milk\neggs\n").then_some(())
    });
    assert!(
        saved.is_some(),
        "the host file was not saved: {:?}\nappbox said:\n{}",
        std::fs::read_to_string(&host),
        notes.log()
    );
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "private\n");
    let questions = std::fs::read_to_string(chooser.join("answers.log")).unwrap();
    assert!(
        questions.contains("\"app_id\":\"org.appbox.Notes\"")
            && questions.contains("\"method\":\"OpenFile\""),
        "{questions}"
    );

    // Only that file became visible: the app's doc dir holds one document.
    let instance = only_instance(&world);
    let doc_dir = format!("/run/user/{}/doc", world.user.uid);
    let listing = output_within(
        world.appbox(["enter", &instance, "/usr/bin/find", &doc_dir]),
        TIMEOUT,
    );
    assert!(listing.status.success(), "{}", describe(&listing));
    let found: Vec<&str> = std::str::from_utf8(&listing.stdout)
        .unwrap()
        .lines()
        .collect();
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(found[2].ends_with("/shopping.txt"), "{found:?}");

    let png = artifacts_dir().join("portal-notes-saved.png");
    std::fs::write(&png, screenshot(&world, &x)).unwrap();
    x.assert_running();
    notes.signal(libc::SIGTERM);
    notes
        .wait(TIMEOUT)
        .unwrap_or_else(|| panic!("appbox did not exit after SIGTERM:\n{}", notes.log()));
    eprintln!("screenshots: {}", png.display());
}

/// Waits for a window whose name contains `title`, while `app` runs.
fn wait_for_window(world: &World, x: &Xvfb, app: &mut Spawned, title: &str) {
    let seen = poll(TIMEOUT, || {
        if app.try_wait().is_some() {
            return Some(false);
        }
        window_tree(world, x).contains(title).then_some(true)
    });
    assert_eq!(
        seen,
        Some(true),
        "no window titled {title:?}; appbox said:\n{}\nwindows:\n{}",
        app.log(),
        window_tree(world, x)
    );
}

/// The instance number of the world's only running sandbox.
fn only_instance(world: &World) -> String {
    let output = output_within(world.appbox(["ps", "--json"]), TIMEOUT);
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    rows[0]["instance"].as_str().unwrap().to_owned()
}

/// Types `text` into the window named `name`.
fn type_text(world: &World, x: &Xvfb, name: &str, text: &str) {
    let focus = focusing(name);
    xdotool(
        world,
        x,
        &[&focus[..], &["type", "--delay", "20", text]].concat(),
    );
}

/// Without a scripted chooser, the portal asks the desktop's own backend
/// (xdg-desktop-portal-gtk here), whose dialog the user drives.
#[test]
fn the_desktops_file_chooser_picks_the_file_for_the_sandboxed_app() {
    require_programs(&["/usr/bin/xdotool", "/usr/libexec/xdg-desktop-portal-gtk"]);
    let world = World::new();
    let mut x = Xvfb::start(&world);
    // The backend is activated by the bus and shows its dialog on this display.
    let mut bus = bus_on_display(&world, &x);
    let host = world.home_dir("Documents").join("letter.txt");
    std::fs::write(&host, "Dear Ada,\n").unwrap();
    chown(&host, world.user);
    bus.spawn(&world, &world.portal_path(), &[], &[]);
    bus.wait_for_name(&world, "org.appbox.Portal.Desktop");

    let mut notes = notes_on_bus(&world, &x, &bus);
    press(&world, &x, "Notes", &["ctrl+o"]);
    // The backend's GTK 3 dialog, with the app's title.
    wait_for_window(&world, &x, &mut notes, "Open a Text File");
    let png = artifacts_dir().join("portal-backend-chooser.png");
    std::fs::write(&png, screenshot(&world, &x)).unwrap();
    press(&world, &x, "Open a Text File", &["ctrl+l"]);
    type_text(&world, &x, "Open a Text File", host.to_str().unwrap());
    // The first Return may only close the entry's completion popup.
    let opened = poll(TIMEOUT, || {
        if !window_tree(&world, &x).contains("Open a Text File") {
            return Some(());
        }
        press(&world, &x, "Open a Text File", &["Return"]);
        std::thread::sleep(Duration::from_millis(300));
        None
    });
    assert!(opened.is_some(), "the dialog stayed open");
    wait_for_window(&world, &x, &mut notes, "letter.txt — Notes");
    let png = artifacts_dir().join("portal-backend-opened.png");
    std::fs::write(&png, screenshot(&world, &x)).unwrap();
    x.assert_running();
    notes.signal(libc::SIGTERM);
    notes
        .wait(TIMEOUT)
        .unwrap_or_else(|| panic!("appbox did not exit after SIGTERM:\n{}", notes.log()));
}

/// Without scripted answers, consent comes from the desktop's dialog (the
/// backend's AccessDialog); allowing it hands the app a working KVM.
#[test]
fn the_desktops_consent_dialog_decides_about_a_device() {
    require_programs(&[
        "/usr/bin/xdotool",
        "/usr/libexec/xdg-desktop-portal-gtk",
        "/usr/bin/python3",
    ]);
    let world = World::new();
    let mut x = Xvfb::start(&world);
    let mut bus = bus_on_display(&world, &x);
    bus.spawn(&world, &world.portal_path(), &[], &[]);
    bus.wait_for_name(&world, "org.appbox.Portal.Desktop");
    let script = "import fcntl\nfrom gi.repository import Gio, GLib\nbus = Gio.bus_get_sync(Gio.BusType.SESSION, None)\nreply, fds = bus.call_with_unix_fd_list_sync('org.freedesktop.portal.Desktop', '/org/freedesktop/portal/desktop', 'org.appbox.portal.Device', 'OpenDevice', GLib.Variant('(sa{sv})', ('kvm', {})), GLib.VariantType('(h)'), 0, 20000, None, None)\nprint(fcntl.ioctl(fds.get(reply.unpack()[0]), 0xAE00))\n";
    let app = world.host_app("org.appbox.KvmUser", "/usr/bin/python3", &[]);
    let address = bus.address();
    let display_env = x.env();
    let mut env = env_refs(&display_env);
    env.push(("DBUS_SESSION_BUS_ADDRESS", &address));
    let mut client = Spawned::start(
        "appbox run (kvm client)".to_owned(),
        app_command(&world, &app, &["--", "-c", script], &env),
        world.root.join("kvm.log"),
    );
    // The dialog has no window title; it is the backend's visible window.
    let dialog = poll(TIMEOUT, || {
        let mut cmd = x.client(&world, "/usr/bin/xdotool");
        cmd.args([
            "search",
            "--onlyvisible",
            "--classname",
            "xdg-desktop-portal-gtk",
        ]);
        let found = text(&output_within(cmd, TIMEOUT).stdout);
        found.lines().next().map(str::to_owned)
    })
    .unwrap_or_else(|| panic!("no consent dialog appeared:\n{}", window_tree(&world, &x)));
    std::fs::write(
        artifacts_dir().join("portal-backend-consent.png"),
        screenshot(&world, &x),
    )
    .unwrap();
    // Click "Allow": the right half of the button row along the bottom.
    let geometry = xdotool(&world, &x, &["getwindowgeometry", "--shell", &dialog]);
    let size = |key: &str| -> u32 {
        geometry
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {geometry}"))
    };
    let (width, height) = (size("WIDTH="), size("HEIGHT="));
    let (across, down) = ((width * 3 / 4).to_string(), (height - 15).to_string());
    xdotool(
        &world,
        &x,
        &[
            "mousemove",
            "--window",
            &dialog,
            &across,
            &down,
            "click",
            "1",
        ],
    );
    let status = client
        .wait(TIMEOUT)
        .unwrap_or_else(|| panic!("the client did not finish:\n{}", client.log()));
    assert!(status.success(), "{}", client.log());
    assert!(
        client.log().contains("12"),
        "KVM_GET_API_VERSION: {}",
        client.log()
    );
    x.assert_running();
}

// ---------------------------------------------------------------------------
// appbox's own portal dialogs, from `appbox-gui --portal-dialog`

/// The portal on `bus`, with the display of `x` but no portal backend: its
/// `.portal` directory is empty. Its dialogs come from the appbox-gui next
/// to it. The bus itself has no display, so nothing it activates shows one.
fn portal_with_gui_dialogs(world: &World, x: &Xvfb, bus: &mut SessionBus) {
    let no_backends = world.root.join("no-portal-backends");
    std::fs::create_dir(&no_backends).unwrap();
    let display_env = x.env();
    let mut env: Vec<(&str, &std::ffi::OsStr)> = display_env
        .iter()
        .map(|(k, v)| (*k, std::ffi::OsStr::new(v.as_str())))
        .collect();
    env.push(("XDG_DESKTOP_PORTAL_DIR", no_backends.as_os_str()));
    bus.spawn(world, &world.portal_path(), &[], &env);
    bus.wait_for_name(world, "org.appbox.Portal.Desktop");
}

/// A host-runtime python3 app in its sandbox on `bus`, running `script`
/// with `args`. The app has no display: the dialogs are the portal's.
fn python_in_sandbox(
    world: &World,
    bus: &SessionBus,
    id: &str,
    script: &str,
    args: &[&str],
    log: &str,
) -> Spawned {
    let app = world.host_app(id, "/usr/bin/python3", &[]);
    let address = bus.address();
    let mut options = vec!["--", "-c", script];
    options.extend_from_slice(args);
    Spawned::start(
        format!("appbox run ({id})"),
        app_command(
            world,
            &app,
            &options,
            &[("DBUS_SESSION_BUS_ADDRESS", &address)],
        ),
        world.root.join(log),
    )
}

/// The JSON the client printed after `RESULT `, once it has exited.
fn client_result(client: &mut Spawned) -> serde_json::Value {
    let status = client
        .wait(TIMEOUT)
        .unwrap_or_else(|| panic!("the client did not finish:\n{}", client.log()));
    let log = client.log();
    assert!(status.success(), "{status}:\n{log}");
    let line = log
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no result:\n{log}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {log}"))
}

/// Presses `keys` in the window named `name` when they may close it: the
/// window is focused first, then the keys go to whatever has the focus.
/// Sent to the window itself, a key that closes it fails to be released
/// (BadWindow), stays down, and repeats into the next window.
fn press_answering(world: &World, x: &Xvfb, name: &str, keys: &[&str]) {
    xdotool(world, x, &focusing(name));
    press_in_focus(world, x, keys);
}

/// Presses `keys` in whatever window has the focus.
fn press_in_focus(world: &World, x: &Xvfb, keys: &[&str]) {
    xdotool(world, x, &[&["key", "--clearmodifiers"][..], keys].concat());
}

/// Waits for the visible window named `title`, asserts it is appbox-gui's
/// (not some backend's), and saves a screenshot as `png`.
fn wait_for_gui_dialog(world: &World, x: &Xvfb, client: &mut Spawned, title: &str, png: &str) {
    wait_for_window(world, x, client, title);
    // xwininfo shows each window as `ID "NAME": ("INSTANCE" "CLASS")`.
    let ours = poll(TIMEOUT, || {
        window_tree(world, x)
            .lines()
            .any(|line| line.contains(&format!("\"{title}")) && line.contains("(\"appbox-gui\" "))
            .then_some(())
    });
    assert!(
        ours.is_some(),
        "the window {title:?} is not appbox-gui's:\n{}",
        window_tree(world, x)
    );
    // Mapped comes before drawn: shoot until the screen is more than black.
    let png = artifacts_dir().join(png);
    let drawn = poll(TIMEOUT, || {
        std::fs::write(&png, screenshot(world, x)).unwrap();
        (image_facts(&png).2 > 2).then_some(())
    });
    assert!(
        drawn.is_some(),
        "the dialog drew nothing: {}",
        png.display()
    );
}

/// Calls FileChooser.OpenFile as a GTK app does (subscribing to the
/// Response first) with the title argv[1], then reads the file it got.
const OPEN_FILE_CLIENT: &str = r#"
import json, sys
from gi.repository import Gio, GLib
bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
token = 'appboxdialog'
path = '/org/freedesktop/portal/desktop/request/%s/%s' % (bus.get_unique_name()[1:].replace('.', '_'), token)
loop = GLib.MainLoop()
out = {}
def on_response(conn, sender, obj, iface, signal, params):
    out['response'], results = params.unpack()
    out['uris'] = results.get('uris', [])
    out['writable'] = results.get('writable')
    loop.quit()
bus.signal_subscribe('org.freedesktop.portal.Desktop', 'org.freedesktop.portal.Request', 'Response',
                     path, None, Gio.DBusSignalFlags.NONE, on_response)
options = {'handle_token': GLib.Variant('s', token), 'accept_label': GLib.Variant('s', '_Read It'),
           'filters': GLib.Variant('a(sa(us))', [('Letters', [(0, '*.txt'), (1, 'text/plain')])])}
try:
    bus.call_sync('org.freedesktop.portal.Desktop', '/org/freedesktop/portal/desktop',
                  'org.freedesktop.portal.FileChooser', 'OpenFile',
                  GLib.Variant('(ssa{sv})', ('', sys.argv[1], options)),
                  GLib.VariantType('(o)'), 0, -1, None)
    GLib.timeout_add_seconds(60, loop.quit)
    loop.run()
except GLib.Error as e:
    out['error'] = e.message
if out.get('response') == 0:
    with open(GLib.filename_from_uri(out['uris'][0])[0]) as f:
        out['content'] = f.read()
print('RESULT ' + json.dumps(out))
"#;

/// With no portal backend on the host, the file chooser is appbox-gui's:
/// the user types a path, the sandboxed app gets that file (and only
/// through its document mount); cancelling answers 1.
#[test]
fn the_portal_dialog_chooser_picks_a_host_file_for_the_sandboxed_app() {
    require_programs(&["/usr/bin/xdotool", "/usr/bin/python3"]);
    let world = World::new();
    let mut x = Xvfb::start(&world);
    let mut bus = SessionBus::start(&world);
    portal_with_gui_dialogs(&world, &x, &mut bus);
    let letter = world.home_dir("Documents").join("letter.txt");
    std::fs::write(&letter, "Dear Ada,\n").unwrap();
    chown(&letter, world.user);
    let app = "org.appbox.DialogUser";

    let title = "Pick a letter";
    let mut client = python_in_sandbox(
        &world,
        &bus,
        app,
        OPEN_FILE_CLIENT,
        &[title],
        "open-file.log",
    );
    wait_for_gui_dialog(&world, &x, &mut client, title, "portal-dialog-chooser.png");
    press(&world, &x, title, &["ctrl+l"]);
    type_text(&world, &x, title, letter.to_str().unwrap());
    std::fs::write(
        artifacts_dir().join("portal-dialog-chooser-typed.png"),
        screenshot(&world, &x),
    )
    .unwrap();
    // The first Return may only close the entry's completion popup. The
    // chooser keeps the focus, so the keys need not find it again.
    let accepted = poll(TIMEOUT, || {
        if !window_tree(&world, &x).contains(title) {
            return Some(());
        }
        press_in_focus(&world, &x, &["Return"]);
        std::thread::sleep(Duration::from_millis(300));
        None
    });
    assert!(accepted.is_some(), "the chooser stayed open");
    let out = client_result(&mut client);
    assert_eq!(out["response"], 0, "{out}");
    assert_eq!(out["content"], "Dear Ada,\n", "{out}");
    assert_eq!(out["writable"], true, "{out}");
    let uri = out["uris"][0].as_str().unwrap_or_default();
    assert!(
        uri.starts_with(&format!("file:///run/user/{}/doc/", world.user.uid))
            && uri.ends_with("/letter.txt"),
        "the app should get the file as a document, not its host path: {out}"
    );
    // The grant is the portal's usual one: a document of this app.
    let docs = output_within(world.appbox(["documents", app, "--json"]), TIMEOUT);
    assert!(docs.status.success(), "{}", describe(&docs));
    assert!(
        text(&docs.stdout).contains(letter.to_str().unwrap()),
        "{}",
        describe(&docs)
    );

    // Cancelled: response 1, and no file.
    let other = "Pick another letter";
    let mut client = python_in_sandbox(
        &world,
        &bus,
        app,
        OPEN_FILE_CLIENT,
        &[other],
        "open-file-cancel.log",
    );
    wait_for_gui_dialog(
        &world,
        &x,
        &mut client,
        other,
        "portal-dialog-chooser-cancel.png",
    );
    press_answering(&world, &x, other, &["Escape"]);
    let out = client_result(&mut client);
    assert_eq!(out["response"], 1, "{out}");
    assert_eq!(out["uris"], serde_json::json!([]), "{out}");
    x.assert_running();
}

/// Asks for KVM and, given a descriptor, checks it is the real KVM.
const KVM_CLIENT: &str = r#"
import fcntl, json
from gi.repository import Gio, GLib
bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
out = {}
try:
    reply, fds = bus.call_with_unix_fd_list_sync(
        'org.freedesktop.portal.Desktop', '/org/freedesktop/portal/desktop',
        'org.appbox.portal.Device', 'OpenDevice', GLib.Variant('(sa{sv})', ('kvm', {})),
        GLib.VariantType('(h)'), 0, 60000, None, None)
    out['api'] = fcntl.ioctl(fds.get(reply.unpack()[0]), 0xAE00)  # KVM_GET_API_VERSION
except GLib.Error as e:
    out['error'] = e.message
print('RESULT ' + json.dumps(out))
"#;

/// The answers stored for `app` in the devices table, as `appbox permissions` lists them.
fn stored_device_answers(world: &World, app: &str) -> Vec<serde_json::Value> {
    let output = output_within(world.appbox(["permissions", "devices", "--json"]), TIMEOUT);
    assert!(output.status.success(), "{}", describe(&output));
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", describe(&output)));
    rows.as_array()
        .unwrap()
        .iter()
        .filter(|row| row["app"] == app)
        .cloned()
        .collect()
}

/// With no portal backend on the host, consent is asked through
/// appbox-gui's dialog, from the keyboard: Allow hands over the device
/// once; Deny with "Remember this choice" refuses and is stored, so the
/// next request is refused without a dialog.
#[test]
fn the_portal_dialog_asks_consent_for_a_device() {
    require_programs(&["/usr/bin/xdotool", "/usr/bin/python3", "/usr/bin/test"]);
    let world = World::new();
    let mut can_use = Command::new("/usr/bin/test");
    can_use.args(["-r", "/dev/kvm", "-a", "-w", "/dev/kvm"]);
    world.prepare(&mut can_use);
    assert!(
        output_within(can_use, TIMEOUT).status.success(),
        "the test user needs read-write access to /dev/kvm (tests/bootstrap.sh gives it an ACL)"
    );
    let mut x = Xvfb::start(&world);
    let mut bus = SessionBus::start(&world);
    portal_with_gui_dialogs(&world, &x, &mut bus);
    let app = "org.appbox.KvmUser";
    let title = format!("Allow {app} to use KVM");

    // Allowed once: a working KVM, and nothing stored.
    let mut client = python_in_sandbox(&world, &bus, app, KVM_CLIENT, &[], "kvm-allow.log");
    wait_for_gui_dialog(&world, &x, &mut client, &title, "portal-dialog-consent.png");
    press_answering(&world, &x, &title, &["alt+a"]);
    let out = client_result(&mut client);
    assert_eq!(out["api"], 12, "{out}");
    assert_eq!(
        stored_device_answers(&world, app),
        Vec::<serde_json::Value>::new()
    );

    // Denied and remembered: refused, and the answer is stored.
    let mut client = python_in_sandbox(&world, &bus, app, KVM_CLIENT, &[], "kvm-deny.log");
    wait_for_gui_dialog(
        &world,
        &x,
        &mut client,
        &title,
        "portal-dialog-consent-again.png",
    );
    press(&world, &x, &title, &["alt+r"]);
    std::fs::write(
        artifacts_dir().join("portal-dialog-consent-remember.png"),
        screenshot(&world, &x),
    )
    .unwrap();
    press_answering(&world, &x, &title, &["alt+d"]);
    let out = client_result(&mut client);
    let error = out["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("NotAllowed") && out.get("api").is_none(),
        "{out}"
    );
    let stored = stored_device_answers(&world, app);
    assert_eq!(stored.len(), 1, "{stored:?}");
    assert_eq!(stored[0]["id"], "kvm", "{stored:?}");
    assert_eq!(stored[0]["permission"], "deny", "{stored:?}");

    // Remembered: refused at once, with no dialog to answer.
    let mut client = python_in_sandbox(&world, &bus, app, KVM_CLIENT, &[], "kvm-remembered.log");
    let out = client_result(&mut client);
    assert!(
        out["error"]
            .as_str()
            .unwrap_or_default()
            .contains("permission-set devices kvm"),
        "{out}"
    );
    assert!(!window_tree(&world, &x).contains(&title));
    x.assert_running();
}
/// The store window starts, reads the remotes through the store library on
/// its worker thread, and says why a remote could not be read.
#[test]
fn the_store_window_starts_and_reports_an_unreadable_remote() {
    let world = World::new();
    let mut x = Xvfb::start(&world);
    let remotes = world.home_dir(".config/appbox").join("remotes.toml");
    std::fs::write(
        &remotes,
        "[remotes.gone]\nurl = \"file:///nonexistent/repo\"\nverify = false\nkeys = []\nenabled = true\n",
    )
    .unwrap();
    chown(&remotes, world.user);
    let mut gui = start_store(&world, &x);
    // First "Loading the catalog…", then the worker's answer: the screen changes.
    let png = artifacts_dir().join("store-window-no-apps.png");
    let first = screenshot(&world, &x);
    let answered = poll(TIMEOUT, || {
        let now = screenshot(&world, &x);
        std::fs::write(&png, &now).unwrap();
        (now != first && image_facts(&png).2 > 2).then_some(())
    });
    assert!(
        answered.is_some(),
        "the store window never showed the worker's answer: {}",
        png.display()
    );
    x.assert_running();
    gui.signal(libc::SIGTERM);
    gui.wait(TIMEOUT)
        .unwrap_or_else(|| panic!("appbox-gui did not exit after SIGTERM:\n{}", gui.log()));
}

/// The store window, from the keyboard alone: type a search, Enter opens
/// the best match, Enter installs it (the details page focuses its main
/// action), and the app is deployed; then Remove takes it away.
#[test]
fn the_store_window_installs_and_removes_an_app_from_the_keyboard() {
    use appbox::store::catalog::{Entry, EntryKind};
    let world = World::new();
    let mut x = Xvfb::start(&world);
    let id = "org.appbox.KeyboardTool";
    let tree = world.root.join("tree");
    std::fs::create_dir_all(tree.join("files/bin")).unwrap();
    std::fs::create_dir_all(tree.join("export")).unwrap();
    std::fs::write(
        tree.join("metadata.toml"),
        format!(
            "id = \"{id}\"\nname = \"Keyboard Tool\"\ncommand = \"tool\"\nruntime = \"host\"\npermissions = [\"--filesystem=home\"]\n"
        ),
    )
    .unwrap();
    std::fs::copy("/usr/bin/true", tree.join("files/bin/tool")).unwrap();
    let entry = Entry {
        id: id.into(),
        kind: EntryKind::App,
        name: "Keyboard Tool".into(),
        summary: "Installed without a mouse".into(),
        description: "A tool for the store window's tests.".into(),
        version: "1.0".into(),
        license: "MIT".into(),
        runtime: "host".into(),
        permissions: vec!["--filesystem=home".into()],
        icon: None,
        installed_size: 1,
        published: None,
    };
    let key = appbox::store::sign::SecretKey::generate();
    let repo = world.root.join("srv/repo");
    appbox::store::build::publish_tree(&repo, &tree, &entry, Some(&key)).unwrap();
    appbox_tests::make_readable(&world.root.join("srv"));
    let config = world.home_dir(".config/appbox");
    let remotes = config.join("remotes.toml");
    let mut list = appbox::store::remotes::Remotes::default();
    list.add(
        "local",
        appbox::store::remotes::Remote::new(
            &format!("file://{}", repo.display()),
            &[key.public()],
            true,
        ),
    )
    .unwrap();
    list.save(&remotes).unwrap();
    chown(&remotes, world.user);

    let mut gui = start_store(&world, &x);
    let deployed = world.home.join(format!(
        ".local/share/appbox/app/{id}/current/metadata.toml"
    ));
    // The catalog loads on the worker; typing before it arrives only filters later.
    type_text(&world, &x, "appbox Store", "keyboard");
    let installed = poll(Duration::from_secs(30), || {
        if deployed.exists() {
            return Some(());
        }
        press(&world, &x, "appbox Store", &["Return"]);
        std::thread::sleep(Duration::from_millis(300));
        None
    });
    std::fs::write(
        artifacts_dir().join("store-details-installed.png"),
        screenshot(&world, &x),
    )
    .unwrap();
    assert!(
        installed.is_some(),
        "the app was not installed from the keyboard:\n{}",
        gui.log()
    );
    // Installed: the page now focuses Open; Remove is the next button.
    let removed = poll(Duration::from_secs(30), || {
        if !deployed.exists() {
            return Some(());
        }
        press(&world, &x, "appbox Store", &["Tab", "Return"]);
        std::thread::sleep(Duration::from_millis(500));
        None
    });
    std::fs::write(
        artifacts_dir().join("store-details-removed.png"),
        screenshot(&world, &x),
    )
    .unwrap();
    assert!(removed.is_some(), "the app was not removed:\n{}", gui.log());
    x.assert_running();
    gui.signal(libc::SIGTERM);
    gui.wait(TIMEOUT)
        .unwrap_or_else(|| panic!("appbox-gui did not exit after SIGTERM:\n{}", gui.log()));
}

// ---------------------------------------------------------------------------
// The store window through AT-SPI, as a screen reader user drives it

/// The AT-SPI driver: Debian's python3 with pyatspi, run as the world's user.
const ATSPI_DRIVER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/e2e/atspi-driver.py");

const ATSPI_TOOLS: &[&str] = &[
    "/usr/bin/python3",
    "/usr/bin/xdotool",
    "/usr/libexec/at-spi-bus-launcher",
    "/usr/libexec/at-spi2-registryd",
    "/usr/lib/python3/dist-packages/pyatspi/__init__.py",
];

/// The sample app of these tests.
const SLEEPER: &str = "org.appbox.Sleeper";

/// An app whose pull takes the slowed-down server half a minute.
const HEAVY: &str = "org.appbox.Heavy";

/// The largest file of a published app's payload.
const PAYLOAD_PART: usize = 512 * 1024;

/// How long an install or update from the slowed-down server may take.
const PULL_TIMEOUT: Duration = Duration::from_secs(60);

/// The store window with accessibility on, and the driver that reads and
/// works it. The window's session bus activates the accessibility bus
/// (at-spi-bus-launcher) that the driver reads the window through.
/// Dropped in field order: the window, then its bus, then the display.
struct StoreUi<'a> {
    gui: Spawned,
    bus: SessionBus,
    x: Xvfb,
    world: &'a World,
}

impl<'a> StoreUi<'a> {
    fn start(world: &'a World) -> Self {
        require_programs(ATSPI_TOOLS);
        let x = Xvfb::start(world);
        let bus = bus_on_display(world, &x);
        let address = bus.address();
        // GTK_A11Y unset: GTK's AT-SPI backend, which finds the accessibility
        // bus through the session bus.
        let gui = store_with_env(world, &x, &[("DBUS_SESSION_BUS_ADDRESS", &address)]);
        StoreUi { gui, bus, x, world }
    }

    /// Runs the driver with `args`; `wait` bounds each of its waits.
    fn drive(&self, wait: Duration, args: &[&str]) -> Output {
        let mut cmd = self.x.client(self.world, "/usr/bin/python3");
        cmd.arg(ATSPI_DRIVER)
            .args(["--timeout", &wait.as_secs().to_string()])
            .args(args)
            .env("DBUS_SESSION_BUS_ADDRESS", self.bus.address());
        output_within(cmd, wait + TIMEOUT)
    }

    /// Runs the driver, failing the test with its view of the window (and a
    /// screenshot) if it fails; returns what it printed.
    fn ok(&mut self, args: &[&str]) -> String {
        let output = self.drive(TIMEOUT, args);
        if !output.status.success() {
            self.shot("failed");
            self.x.assert_running();
            panic!(
                "atspi-driver {args:?}: {}\nappbox-gui said:\n{}",
                describe(&output),
                self.gui.log()
            );
        }
        text(&output.stdout)
    }

    /// Saves the screen as the artifact `store-atspi-NAME.png`.
    fn shot(&self, name: &str) {
        let png = artifacts_dir().join(format!("store-atspi-{name}.png"));
        std::fs::write(&png, screenshot(self.world, &self.x)).unwrap();
    }

    /// Waits for the toast `message`; fails at once on a "Failed: " toast.
    fn toast(&mut self, message: &str) {
        let seen = poll(PULL_TIMEOUT, || {
            let output = self.drive(Duration::ZERO, &["read", "frame:appbox Store"]);
            let said = text(&output.stdout);
            said.lines()
                .find(|line| *line == message || line.starts_with("Failed: "))
                .map(str::to_owned)
        });
        if seen.as_deref() != Some(message) {
            self.shot("failed");
            panic!(
                "no toast {message:?} but {seen:?}:\n{}\nappbox-gui said:\n{}",
                describe(&self.drive(TIMEOUT, &["dump"])),
                self.gui.log()
            );
        }
    }

    /// The progress bar's value, if the bar is on screen. GTK 4.8 exposes
    /// its fraction, not its text.
    fn progress(&self) -> Option<f64> {
        let output = self.drive(Duration::ZERO, &["read", "progress bar:Progress"]);
        text(&output.stdout)
            .lines()
            .find_map(|line| line.strip_prefix("value ")?.parse().ok())
    }

    /// Waits for a progress value that `seen` accepts.
    fn sees_progress(&mut self, what: &str, seen: impl Fn(f64) -> bool) {
        if poll(PULL_TIMEOUT, || self.progress().filter(|v| seen(*v))).is_none() {
            self.shot("failed");
            panic!(
                "the progress bar never showed {what}:\n{}\nappbox-gui said:\n{}",
                describe(&self.drive(TIMEOUT, &["dump"])),
                self.gui.log()
            );
        }
    }

    /// Ends the window with SIGTERM, as a desktop session would.
    fn close(mut self) {
        self.x.assert_running();
        self.gui.signal(libc::SIGTERM);
        let status = self.gui.wait(TIMEOUT);
        assert!(
            status.is_some(),
            "appbox-gui did not exit after SIGTERM:\n{}",
            self.gui.log()
        );
    }
}

/// Stops the app's sandboxes when dropped: the window starts them, and
/// they would outlive a failed test.
struct KillApp<'a>(&'a World, &'a str);

impl Drop for KillApp<'_> {
    fn drop(&mut self) {
        let _ = output_within(self.0.appbox(["kill", self.1]), TIMEOUT);
    }
}

/// A signed remote named "local" served by a slow nginx (the progress of a
/// pull stays on screen for a while), holding the sleeper app.
struct SlowRemote {
    repo: PathBuf,
    key: appbox::store::sign::SecretKey,
    nginx: appbox_tests::Nginx,
}

impl SlowRemote {
    fn start(world: &World) -> Self {
        let srv = world.root.join("srv");
        let repo = srv.join("repo");
        let key = appbox::store::sign::SecretKey::generate();
        let remote = SlowRemote {
            repo,
            key,
            nginx: appbox_tests::Nginx::serve_with(world, &srv, "limit_rate 128k;"),
        };
        remote.publish(world, "1.0", &["--filesystem=home"]);
        remote.publish_app(world, HEAVY, "Heavy", "1.0", &[], 32 << 20);
        let mut list = appbox::store::remotes::Remotes::default();
        list.add(
            "local",
            appbox::store::remotes::Remote::new(
                &remote.nginx.url("repo"),
                &[remote.key.public()],
                true,
            ),
        )
        .unwrap();
        let remotes = world.home_dir(".config/appbox").join("remotes.toml");
        list.save(&remotes).unwrap();
        chown(&remotes, world.user);
        remote
    }

    /// Commits `version` of the sleeper app: a script that sleeps a while,
    /// and 2 MiB of random bytes that take the server sixteen seconds, so
    /// that a slow driver still sees the bar on its way.
    fn publish(&self, world: &World, version: &str, permissions: &[&str]) {
        self.publish_app(world, SLEEPER, "Sleeper", version, permissions, 2 << 20);
    }

    /// Commits `version` of app `id`: a script that sleeps a while, and
    /// `payload` random bytes (128 KiB take the server a second).
    fn publish_app(
        &self,
        world: &World,
        id: &str,
        name: &str,
        version: &str,
        permissions: &[&str],
        payload: usize,
    ) {
        use appbox::store::catalog::{Entry, EntryKind};
        let tree = world.root.join(format!("tree-{id}-{version}"));
        std::fs::create_dir_all(tree.join("files/bin")).unwrap();
        std::fs::create_dir_all(tree.join("files/share")).unwrap();
        std::fs::create_dir_all(tree.join("export")).unwrap();
        let quoted: Vec<String> = permissions.iter().map(|p| format!("{p:?}")).collect();
        std::fs::write(
            tree.join("metadata.toml"),
            format!(
                "id = \"{id}\"\nname = \"{name}\"\ncommand = \"sleeper\"\nruntime = \"host\"\npermissions = [{}]\n",
                quoted.join(", ")
            ),
        )
        .unwrap();
        let script = tree.join("files/bin/sleeper");
        std::fs::write(&script, "#!/bin/sh\nexec sleep 60\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        // Files of at most 512 KiB: libostree notices a cancel between
        // objects, not in the middle of one.
        let mut random = std::fs::File::open("/dev/urandom").expect("open /dev/urandom");
        for (part, start) in (0..payload).step_by(PAYLOAD_PART).enumerate() {
            let mut bytes = vec![0u8; PAYLOAD_PART.min(payload - start)];
            random.read_exact(&mut bytes).expect("read /dev/urandom");
            std::fs::write(tree.join(format!("files/share/payload-{part}.bin")), &bytes).unwrap();
        }
        let entry = Entry {
            id: id.into(),
            kind: EntryKind::App,
            name: name.into(),
            summary: "Sleeps in its sandbox".into(),
            description: "An app for the store window's accessibility tests.".into(),
            version: version.into(),
            license: "MIT".into(),
            runtime: "host".into(),
            permissions: permissions.iter().map(|p| p.to_string()).collect(),
            icon: None,
            installed_size: payload as u64,
            published: None,
        };
        appbox::store::build::publish_tree(&self.repo, &tree, &entry, Some(&self.key)).unwrap();
        appbox_tests::make_readable(self.repo.parent().unwrap());
    }
}

/// `appbox info --json ID` as the world's user, or None if it is not installed.
fn app_info(world: &World, id: &str) -> Option<serde_json::Value> {
    let output = output_within(world.appbox(["info", "--json", id]), TIMEOUT);
    output
        .status
        .success()
        .then(|| serde_json::from_slice(&output.stdout).expect("appbox info --json"))
}

/// The apps of the world's running sandboxes, from `appbox ps --json`.
fn running(world: &World) -> Vec<String> {
    let output = output_within(world.appbox(["ps", "--json"]), TIMEOUT);
    assert!(output.status.success(), "{}", describe(&output));
    let rows: serde_json::Value = serde_json::from_slice(&output.stdout).expect("ps --json");
    rows.as_array()
        .expect("a list")
        .iter()
        .map(|row| row["application"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The store issue's acceptance test, driven through the window's
/// accessibility tree as a screen reader user would: search, install
/// (watching the progress), open, set a permission, update after a new
/// commit (allowing its new permission), and remove.
#[test]
fn the_store_window_works_through_atspi_from_install_to_removal() {
    let world = World::new();
    let remote = SlowRemote::start(&world);
    let _sandboxes = KillApp(&world, SLEEPER);
    let mut ui = StoreUi::start(&world);

    // 1. Search: the app's row is listed.
    ui.ok(&["set-text", "entry:Search apps", "sleep"]);
    ui.ok(&["wait", "list:Apps", "list item:Sleeper"]);
    ui.shot("explore");

    // 2. Enter in the search opens the best match; Install shows the pull's
    // progress, then Open.
    ui.ok(&["key", "entry:Search apps", "Return"]);
    ui.ok(&["click", "push button:Install"]);
    ui.sees_progress("a pull half done", |v| v > 0.0 && v < 1.0);
    ui.shot("installing");
    ui.toast(&format!("Installed {SLEEPER}"));
    ui.ok(&["wait", "push button:Open"]);
    ui.ok(&["gone", "progress bar:Progress"]);
    ui.shot("installed");
    let info = app_info(&world, SLEEPER).expect("installed");
    assert_eq!(info["entry"]["version"], "1.0", "{info}");

    // 3. Open: the app runs in its sandbox.
    ui.ok(&["click", "push button:Open"]);
    let opened = poll(TIMEOUT, || (running(&world) == [SLEEPER]).then_some(()));
    assert!(
        opened.is_some(),
        "Open started no sandbox:\n{}",
        ui.gui.log()
    );

    // 4. A switch of "Your choices" becomes the user's override.
    ui.ok(&["click", "list:Your choices", "check box:Network"]);
    let overrides = poll(TIMEOUT, || {
        let info = app_info(&world, SLEEPER)?;
        (info["overrides"] == serde_json::json!(["--share=network"])).then_some(())
    });
    ui.shot("choices");
    assert!(
        overrides.is_some(),
        "the Network switch stored no override: {:?}",
        app_info(&world, SLEEPER)
    );
    let shown = output_within(world.appbox(["info", SLEEPER]), TIMEOUT);
    assert!(
        text(&shown.stdout).contains("Overrides: --share=network"),
        "{}",
        describe(&shown)
    );

    // 5. A new commit asks for X11: the Updates page lists it, the window
    // asks before granting more, and the update keeps the user's choice.
    remote.publish(&world, "1.1", &["--filesystem=home", "--socket=x11"]);
    ui.ok(&["click", "push button:Back"]);
    ui.ok(&["click", "page tab:Updates"]);
    ui.ok(&["click", "push button:Check for Updates"]);
    let row = ui.ok(&["read", "list:Updates", "list item:Sleeper"]);
    assert!(row.contains("1.0 → 1.1"), "{row}");
    ui.shot("updates");
    ui.ok(&[
        "click",
        "list:Updates",
        "list item:Sleeper",
        "push button:Update",
    ]);
    let asked = ui.ok(&["read", "dialog:*"]);
    assert!(
        asked.contains("Allow New Permissions?") && asked.contains("X11"),
        "{asked}"
    );
    ui.shot("new-permissions");
    ui.ok(&["click", "dialog:*", "push button:Update"]);
    // A static delta is one object: the bar follows its bytes.
    ui.sees_progress("the update half done", |v| v > 0.0 && v < 1.0);
    ui.shot("updating");
    ui.toast(&format!("Updated {SLEEPER}"));
    ui.ok(&["wait", "list:Updates", "list item:Everything is up to date"]);
    ui.shot("updated");
    let info = app_info(&world, SLEEPER).expect("still installed");
    assert_eq!(info["entry"]["version"], "1.1", "{info}");
    assert_eq!(
        info["overrides"],
        serde_json::json!(["--share=network"]),
        "{info}"
    );

    // 6. Close the app (the store refuses to remove a running one), then
    // remove it from the details the Installed page opens.
    let closed = output_within(world.appbox(["kill", SLEEPER]), TIMEOUT);
    assert!(closed.status.success(), "{}", describe(&closed));
    assert!(
        poll(TIMEOUT, || running(&world).is_empty().then_some(())).is_some(),
        "the app still runs: {:?}",
        running(&world)
    );
    ui.ok(&["click", "page tab:Installed"]);
    ui.ok(&[
        "key",
        "list:Installed apps and runtimes",
        "list item:Sleeper",
        "Return",
    ]);
    ui.ok(&["click", "push button:Remove"]);
    ui.toast(&format!("Removed {SLEEPER}"));
    ui.ok(&["wait", "push button:Install"]);
    ui.shot("removed");
    assert_eq!(app_info(&world, SLEEPER), None);

    // The app's data stayed; Storage offers to delete it, after asking.
    let data = world.home.join(".var/app").join(SLEEPER);
    assert!(data.is_dir(), "{} is missing", data.display());
    ui.ok(&["click", "push button:Back"]);
    ui.ok(&["click", "page tab:Remotes"]);
    ui.ok(&["wait", "label:Add a Remote"]);
    ui.shot("remotes");
    ui.ok(&["click", "page tab:Storage"]);
    let delete = format!("push button:Delete the data of {SLEEPER}");
    ui.ok(&["wait", &delete]);
    ui.shot("storage");
    ui.ok(&["click", &delete]);
    ui.ok(&["click", "dialog:*", "push button:Delete"]);
    ui.toast(&format!("Deleted the data of {SLEEPER}"));
    assert!(!data.exists(), "{} is still there", data.display());

    // Cancel stops a pull under way and installs nothing. The heavy app
    // takes the server half a minute, so the pull is surely still running.
    ui.ok(&["click", "page tab:Explore"]);
    ui.ok(&["set-text", "entry:Search apps", "heavy"]);
    ui.ok(&["wait", "list:Apps", "list item:Heavy"]);
    ui.ok(&["key", "entry:Search apps", "Return"]);
    ui.ok(&["click", "push button:Install"]);
    ui.sees_progress("a pull under way", |v| v < 1.0);
    ui.ok(&["click", "push button:Cancel"]);
    ui.toast("Cancelled");
    ui.ok(&["wait", "push button:Install"]);
    ui.shot("cancelled");
    assert_eq!(app_info(&world, HEAVY), None);
    ui.close();
}

/// The store window as the world's user, with `env` added, once it is on
/// screen. The text cursor does not blink, so the screen changes only with
/// what it shows.
fn store_with_env(world: &World, x: &Xvfb, env: &[(&str, &str)]) -> Spawned {
    let settings = world.home_dir(".config/gtk-4.0").join("settings.ini");
    std::fs::write(&settings, "[Settings]\ngtk-cursor-blink=false\n").unwrap();
    chown(&settings, world.user);
    let mut cmd = x.client(world, world.gui_path().to_str().unwrap());
    cmd.env("GSK_RENDERER", "cairo").envs(env.iter().copied());
    let mut gui = Spawned::start("appbox-gui".to_owned(), cmd, world.root.join("gui.log"));
    wait_for_window(world, x, &mut gui, "appbox Store");
    gui
}

/// The store window without accessibility, once it is on screen.
fn start_store(world: &World, x: &Xvfb) -> Spawned {
    store_with_env(world, x, &[("GTK_A11Y", "none")])
}
