//! Shared helpers for the end-to-end tests.
//!
//! Every sandbox test runs `appbox` as a desktop user would: unprivileged. When
//! the tests run as root (as in CI), commands run as the `appbox-test` user that
//! `tests/bootstrap.sh` creates. Each test gets its own home and runtime
//! directory in a fresh, world-readable temp dir, with private copies of the
//! `appbox` binary and the static probe.

use std::borrow::BorrowMut;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::channel;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub const TEST_USER: &str = "appbox-test";

/// Who the sandbox runs as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct User {
    pub uid: u32,
    pub gid: u32,
}

impl User {
    pub fn is_root(self) -> bool {
        self.uid == 0
    }
}

fn lookup_user(name: &str) -> Option<User> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.first() != Some(&name) || fields.len() < 4 {
            return None;
        }
        Some(User {
            uid: fields[2].parse().ok()?,
            gid: fields[3].parse().ok()?,
        })
    })
}

/// The name of `uid` in /etc/passwd.
pub fn user_name(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.len() > 2 && fields[2] == uid.to_string())
        .map(|fields| fields[0].to_owned())
        .unwrap_or_else(|| panic!("uid {uid} is not in /etc/passwd"))
}

/// The unprivileged user the tests run the sandbox as.
pub fn unprivileged_user() -> User {
    // SAFETY: getuid/getgid cannot fail.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    if uid != 0 {
        return User { uid, gid };
    }
    lookup_user(TEST_USER).unwrap_or_else(|| {
        panic!("running as root, but the user {TEST_USER} does not exist; run tests/bootstrap.sh first")
    })
}

pub fn running_as_root() -> bool {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() == 0 }
}

fn target_dir() -> PathBuf {
    // The test binary is target/<profile>/deps/<name>.
    let exe = std::env::current_exe().expect("test executable path");
    exe.ancestors()
        .nth(3)
        .expect("test binary inside a target dir")
        .to_path_buf()
}

/// A built artifact, from an environment variable or next to the test binary.
fn artifact(var: &str, default: PathBuf, hint: &str) -> PathBuf {
    let path = std::env::var_os(var).map(PathBuf::from).unwrap_or(default);
    assert!(
        path.is_file(),
        "{} not found at {}; {hint}",
        var,
        path.display()
    );
    path
}

/// A directory that every user can enter, shared by all tests of this process,
/// holding the binaries under test.
fn shared_bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe_dir = target_dir();
        let appbox = artifact(
            "APPBOX_BIN",
            exe_dir.join("debug/appbox"),
            "build it with `cargo build -p appbox` or run tests/run-tests.sh",
        );
        let probe = artifact(
            "APPBOX_PROBE",
            exe_dir.join("probe/appbox-probe"),
            "build it with tests/run-tests.sh (a static build of appbox-probe)",
        );
        // `appbox` execs the store binary that sits next to it.
        let store = artifact(
            "APPBOX_STORE_BIN",
            exe_dir.join("debug/appbox-store"),
            "build it with `cargo build -p appbox` or run tests/run-tests.sh",
        );
        // The portal execs `appbox` from its own directory too.
        let portal = artifact(
            "APPBOX_PORTAL_BIN",
            exe_dir.join("debug/appbox-portal"),
            "build it with `cargo build -p appbox-portal` or run tests/run-tests.sh",
        );
        let gui = artifact(
            "APPBOX_GUI_BIN",
            exe_dir.join("debug/appbox-gui"),
            "build it with `cargo build -p appbox-gui` or run tests/run-tests.sh",
        );
        remove_stale_bin_dirs();
        let dir = make_world_dir("bin");
        for (source, name) in [
            (appbox, "appbox"),
            (store, "appbox-store"),
            (portal, "appbox-portal"),
            (gui, "appbox-gui"),
            (probe, "appbox-probe"),
        ] {
            let dest = dir.join(name);
            std::fs::copy(&source, &dest).expect("copy test binary");
            std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        dir
    })
}

/// The GTK4 notes editor from `manifests/org.appbox.Notes`, as cargo built it.
pub fn notes_binary() -> PathBuf {
    artifact(
        "APPBOX_NOTES_BIN",
        target_dir().join("debug/appbox-notes"),
        "build it with `cargo build -p appbox-notes` or run tests/run-tests.sh",
    )
}

/// Binary dirs of test processes that are gone: nothing removes them at exit
/// (they live as long as the process), so each run clears its predecessors'.
fn remove_stale_bin_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix("appbox-e2e-")
            .and_then(|rest| rest.split_once("-bin-"))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn make_world_dir(tag: &str) -> PathBuf {
    // A fresh directory: a kept world of an earlier run may carry the same
    // pid and counter, so an existing name is skipped, never reused.
    loop {
        let base = std::env::temp_dir().join(format!(
            "appbox-e2e-{}-{tag}-{}",
            std::process::id(),
            unique()
        ));
        match std::fs::create_dir(&base) {
            Ok(()) => {
                std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
                return base;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => panic!("cannot create {}: {e}", base.display()),
        }
    }
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Hands `dir` and everything below it to `user`.
pub fn chown_tree(dir: &Path, user: User) {
    for path in walk(dir) {
        chown(&path, user);
    }
}

pub fn chown(path: &Path, user: User) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string; lchown does not follow a final symlink.
    let ret = unsafe { libc::lchown(c.as_ptr(), user.uid, user.gid) };
    assert_eq!(ret, 0, "chown {}", path.display());
}

/// One test's world: a home, a runtime dir and app dirs, owned by the test user.
pub struct World {
    pub root: PathBuf,
    pub user: User,
    pub home: PathBuf,
    pub runtime_dir: PathBuf,
}

impl World {
    /// A world for the unprivileged test user.
    pub fn new() -> Self {
        Self::for_user(unprivileged_user())
    }

    /// A world where appbox itself runs as root (the separate root case).
    pub fn as_root() -> Self {
        assert!(
            running_as_root(),
            "World::as_root needs the tests to run as root"
        );
        Self::for_user(User { uid: 0, gid: 0 })
    }

    fn for_user(user: User) -> Self {
        let root = make_world_dir("world");
        let home = root.join("home");
        let runtime_dir = root.join("run");
        for dir in [&home, &runtime_dir] {
            std::fs::create_dir(dir).unwrap();
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
            chown(dir, user);
        }
        World {
            root,
            user,
            home,
            runtime_dir,
        }
    }

    pub fn appbox_path(&self) -> PathBuf {
        shared_bin_dir().join("appbox")
    }

    pub fn probe_path(&self) -> PathBuf {
        shared_bin_dir().join("appbox-probe")
    }

    pub fn portal_path(&self) -> PathBuf {
        shared_bin_dir().join("appbox-portal")
    }

    pub fn gui_path(&self) -> PathBuf {
        shared_bin_dir().join("appbox-gui")
    }

    /// Writes an unpacked app whose command is the probe, with the given
    /// permissions (Flatpak finish-args). Returns its directory.
    pub fn probe_app(&self, id: &str, permissions: &[&str]) -> PathBuf {
        let dir = self.root.join("apps").join(id);
        let bin = dir.join("files/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(self.probe_path(), bin.join("appbox-probe")).unwrap();
        let permissions: Vec<String> = permissions.iter().map(|p| format!("{p:?}")).collect();
        self.write(
            &dir.join("metadata.toml"),
            &format!(
                "id = \"{id}\"\nname = \"Probe\"\ncommand = \"appbox-probe\"\nruntime = \"host\"\npermissions = [{}]\n",
                permissions.join(", ")
            ),
        );
        make_readable(&self.root.join("apps"));
        dir
    }

    /// Writes an unpacked app on the host runtime whose command is a host
    /// program (an absolute path: the sandbox's /usr is the host's), with the
    /// given permissions (Flatpak finish-args). Returns its directory.
    pub fn host_app(&self, id: &str, command: &str, permissions: &[&str]) -> PathBuf {
        let dir = self.root.join("apps").join(id);
        std::fs::create_dir_all(dir.join("files")).unwrap();
        let permissions: Vec<String> = permissions.iter().map(|p| format!("{p:?}")).collect();
        self.write(
            &dir.join("metadata.toml"),
            &format!(
                "id = \"{id}\"\nname = \"Test app\"\ncommand = \"{command}\"\nruntime = \"host\"\npermissions = [{}]\n",
                permissions.join(", ")
            ),
        );
        make_readable(&self.root.join("apps"));
        dir
    }

    /// Writes a file readable by everyone.
    pub fn write(&self, path: &Path, contents: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }

    /// Creates a directory (and parents) under the test user's home, owned by them.
    pub fn home_dir(&self, rel: &str) -> PathBuf {
        let mut path = self.home.clone();
        for part in Path::new(rel).components() {
            path.push(part);
            if !path.exists() {
                std::fs::create_dir(&path).unwrap();
                chown(&path, self.user);
            }
        }
        path
    }

    /// `appbox ARGS` as the world's user, with a clean desktop-like environment.
    pub fn appbox<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(self.appbox_path());
        cmd.args(args);
        self.prepare(&mut cmd);
        cmd
    }

    /// Applies the user, environment and working directory of this world.
    pub fn prepare(&self, cmd: &mut Command) {
        cmd.env_clear()
            .env("HOME", &self.home)
            .env("XDG_RUNTIME_DIR", &self.runtime_dir)
            .env("PATH", "/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .env("TERM", "xterm")
            .current_dir(&self.root);
        if running_as_root() && !self.user.is_root() {
            // std drops supplementary groups when it changes the uid as root.
            cmd.uid(self.user.uid).gid(self.user.gid);
        }
    }

    /// `appbox run --app-dir APP EXTRA... -- ARGS...` as the world's user.
    pub fn run_app(&self, app: &Path, extra: &[&str], args: &[&str]) -> Command {
        let mut all: Vec<&OsStr> = vec!["run".as_ref(), "--app-dir".as_ref(), app.as_os_str()];
        all.extend(extra.iter().map(OsStr::new));
        all.push("--".as_ref());
        all.extend(args.iter().map(OsStr::new));
        self.appbox(all)
    }

    /// Runs the probe app with `checks` and returns its report.
    pub fn probe(&self, app: &Path, extra: &[&str], checks: &[&str]) -> ProbeReport {
        let output = self
            .run_app(app, extra, checks)
            .stdin(Stdio::null())
            .output()
            .expect("run appbox");
        ProbeReport::from_output(output)
    }
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test world kept for inspection: {}", self.root.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

pub fn make_readable(dir: &Path) {
    for entry in walk(dir) {
        let meta = std::fs::symlink_metadata(&entry).unwrap();
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode();
        let extra = if meta.is_dir() || mode & 0o100 != 0 {
            0o755
        } else {
            0o644
        };
        std::fs::set_permissions(&entry, std::fs::Permissions::from_mode(mode | extra)).unwrap();
    }
}

/// `dir` and everything below it.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// Runs `cmd` with `input` on its stdin (then closed) and collects its output.
pub fn output_with_input(mut cmd: Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the command");
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).expect("write stdin");
    }
    child.wait_with_output().expect("wait for the command")
}

/// The parsed output of one probe run.
#[derive(Debug)]
pub struct ProbeReport {
    pub output: Output,
    pub stdout: String,
    pub stderr: String,
}

impl ProbeReport {
    pub fn from_output(output: Output) -> Self {
        ProbeReport {
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            output,
        }
    }

    pub fn code(&self) -> Option<i32> {
        self.output.status.code()
    }

    fn line(&self, check: &str) -> Option<&str> {
        self.stdout.lines().find(|line| {
            line.strip_prefix("ok ")
                .or_else(|| line.strip_prefix("FAIL "))
                .is_some_and(|rest| {
                    rest.strip_prefix(check)
                        .is_some_and(|after| after.starts_with(':'))
                })
        })
    }

    /// Whether `check` ran and passed.
    pub fn passed(&self, check: &str) -> bool {
        self.line(check).is_some_and(|l| l.starts_with("ok "))
    }

    /// Whether `check` ran and failed.
    pub fn failed(&self, check: &str) -> bool {
        self.line(check).is_some_and(|l| l.starts_with("FAIL "))
    }

    /// Asserts that every check passed and the probe exited 0.
    pub fn assert_all_ok(&self) {
        assert!(
            self.code() == Some(0)
                && !self.stdout.contains("\nFAIL ")
                && !self.stdout.starts_with("FAIL "),
            "probe reported failures (exit {:?}):\n{}\nstderr:\n{}",
            self.code(),
            self.stdout,
            self.stderr
        );
    }

    /// Asserts that `check` ran and failed: the protection it tests is gone.
    pub fn assert_failed(&self, check: &str) {
        assert!(
            self.failed(check),
            "expected {check} to FAIL:\n{}\nstderr:\n{}",
            self.stdout,
            self.stderr
        );
    }
}

/// Creates an empty file only the owner can read, for markers the sandbox must not see.
pub fn secret_file(path: &Path, owner: User) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .unwrap();
    chown(path, owner);
}

/// `<target dir>/test-artifacts/`, created if needed: screenshots and other files
/// a test leaves behind for a human to look at.
pub fn artifacts_dir() -> PathBuf {
    let dir = target_dir().join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create the test artifacts dir");
    dir
}

/// Fails the test, naming every missing one, unless all these programs exist.
/// Missing tools are a broken test setup, not a reason to skip.
pub fn require_programs(paths: &[&str]) {
    let missing: Vec<&str> = paths
        .iter()
        .copied()
        .filter(|path| !Path::new(path).is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "missing {}; run tests/bootstrap.sh to install the test dependencies",
        missing.join(", ")
    );
}

/// A real nginx serving `root` on a free loopback port, as the world's user,
/// stopped when dropped.
pub struct Nginx {
    child: std::process::Child,
    pub port: u16,
    dir: PathBuf,
}

impl Nginx {
    pub fn serve(world: &World, root: &Path) -> Nginx {
        Self::serve_with(world, root, "")
    }

    /// Like `serve`, with more directives for the server block, such as
    /// `limit_rate 1m;` to make downloads take a while.
    pub fn serve_with(world: &World, root: &Path, directives: &str) -> Nginx {
        require_programs(&["/usr/sbin/nginx"]);
        let dir = world.root.join(format!("nginx-{}", unique()));
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config = format!(
            "daemon off;\npid {dir}/nginx.pid;\nerror_log {dir}/error.log;\nworker_processes 1;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n  access_log {dir}/access.log;\n  client_body_temp_path {dir}/body;\n  \
             proxy_temp_path {dir}/proxy;\n  fastcgi_temp_path {dir}/fastcgi;\n  uwsgi_temp_path {dir}/uwsgi;\n  \
             scgi_temp_path {dir}/scgi;\n  types {{ application/octet-stream bin; }}\n  \
             server {{ listen 127.0.0.1:{port}; root {root}; {directives} }}\n}}\n",
            dir = dir.display(),
            root = root.display(),
        );
        std::fs::write(dir.join("nginx.conf"), config).unwrap();
        chown_tree(&dir, world.user);
        let mut cmd = Command::new("/usr/sbin/nginx");
        cmd.arg("-e")
            .arg(dir.join("error.log"))
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(dir.join("nginx.conf"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        world.prepare(&mut cmd);
        let child = cmd.spawn().expect("start nginx");
        let nginx = Nginx { child, port, dir };
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return nginx;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let dir = nginx.dir.clone();
        drop(nginx);
        panic!(
            "nginx did not start: {}",
            std::fs::read_to_string(dir.join("error.log")).unwrap_or_default()
        );
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{path}", self.port)
    }

    /// The access log, for tests that check what was downloaded.
    pub fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers before it exits; SIGKILL would
        // leave them running.
        // SAFETY: kill with our child's pid and a signal number.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// A real docker-registry (Debian's, v2.8) on a free loopback port, speaking
/// plain HTTP, run as the world's user; stopped when dropped.
pub struct Registry {
    child: std::process::Child,
    pub port: u16,
    dir: PathBuf,
}

impl Registry {
    pub fn start(world: &World) -> Registry {
        require_programs(&["/usr/bin/docker-registry", "/usr/bin/skopeo"]);
        let dir = world.root.join(format!("registry-{}", unique()));
        std::fs::create_dir_all(dir.join("storage")).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.join("storage").display()
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        chown_tree(&dir, world.user);
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let mut cmd = Command::new("/usr/bin/docker-registry");
        cmd.arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        world.prepare(&mut cmd);
        let child = cmd.spawn().expect("start docker-registry");
        let registry = Registry { child, port, dir };
        for _ in 0..400 {
            if registry.answers() {
                return registry;
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        let log = std::fs::read_to_string(registry.dir.join("registry.log")).unwrap_or_default();
        drop(registry);
        panic!("docker-registry did not start: {log}");
    }

    /// Whether `GET /v2/` answers 200.
    fn answers(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(std::time::Duration::from_secs(2)));
        let mut answer = String::new();
        stream
            .write_all(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            .is_ok()
            && stream.read_to_string(&mut answer).is_ok()
            && answer.starts_with("HTTP/1.1 200")
    }

    /// `127.0.0.1:PORT`, the registry part of image names.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        // SAFETY: kill with our child's pid and a signal number.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Polls `done` every 20 ms; fails the test after 20 s, naming `what`.
pub fn wait_until(what: &str, done: impl FnMut() -> bool) {
    wait_until_within(what, Duration::from_secs(20), done);
}

/// Polls `done` every 20 ms; fails the test after `limit`, naming `what`.
pub fn wait_until_within(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process's exit status and output, for a failure message.
pub fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Runs `cmd` (a `Command` or a `&mut Command`) like `Command::output`, its
/// stdin from `/dev/null`, in a process group of its own; fails the test,
/// with what it printed, if it does not finish within `limit`, after killing
/// that whole group.
pub fn output_within(mut cmd: impl BorrowMut<Command>, limit: Duration) -> Output {
    let cmd = cmd.borrow_mut();
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    child_output_within(child, limit, &format!("{cmd:?}"))
}

/// Waits for `child` to exit and close its piped stdout and stderr (read
/// meanwhile, so a full pipe never stalls it), all within `limit`: its
/// output. Else fails the test naming `what`, after killing the child, and
/// its whole process group if it leads one.
pub fn child_output_within(mut child: Child, limit: Duration, what: &str) -> Output {
    let deadline = Instant::now() + limit;
    let readers = [
        child
            .stdout
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|r| Box::new(r) as Box<dyn Read + Send>),
    ]
    .map(|pipe| {
        let (send, receive) = channel();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            let _ = send.send(bytes);
        });
        receive
    });
    let mut status = None;
    while status.is_none() && Instant::now() < deadline {
        status = child.try_wait().expect("wait for a child");
        if status.is_none() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let exited = status.is_some();
    if !exited {
        let pid = child.id() as libc::pid_t;
        // SAFETY: getpgid and kill with the pid of our child, unreaped, so
        // still ours; its group only if it leads one.
        unsafe {
            let target = if libc::getpgid(pid) == pid { -pid } else { pid };
            libc::kill(target, libc::SIGKILL);
        }
        status = Some(child.wait().expect("wait for a child"));
    }
    // What is left of the time, and a little more for a killed child's pipes.
    let mut closed = true;
    let [stdout, stderr] = readers.map(|receive| {
        let left = deadline.saturating_duration_since(Instant::now());
        receive
            .recv_timeout(left.max(Duration::from_secs(1)))
            .unwrap_or_else(|_| {
                closed = false;
                Vec::new()
            })
    });
    let output = Output {
        status: status.unwrap(),
        stdout,
        stderr,
    };
    if !exited {
        panic!("{what} still ran after {limit:?}: {}", describe(&output));
    }
    assert!(
        closed,
        "{what} exited, but its output was still open after {limit:?}: {}",
        describe(&output)
    );
    output
}

/// `appbox ARGS` as the world's user, its stdin from `/dev/null`; it must
/// succeed.
pub fn appbox_ok(world: &World, args: &[&str]) -> Output {
    let output = world.appbox(args).stdin(Stdio::null()).output().unwrap();
    assert!(
        output.status.success(),
        "appbox {args:?} failed: {}",
        describe(&output)
    );
    output
}

/// A session bus for one world: a real dbus-daemon at `$XDG_RUNTIME_DIR/bus`
/// (where a desktop session has it), run as the world's user. Stopped when
/// dropped, with everything started on it through [`SessionBus::spawn`].
pub struct SessionBus {
    pub socket: PathBuf,
    children: Vec<Child>,
}

impl SessionBus {
    /// `python3 -c SCRIPT ARGS`, the host's python3, in the sandbox of `app`
    /// on this bus, with stdin from /dev/null.
    pub fn python_in(&self, world: &World, app: &Path, script: &str, args: &[&str]) -> Command {
        let mut all = vec!["-c", script];
        all.extend_from_slice(args);
        let mut cmd = world.run_app(app, &["--command", "/usr/bin/python3"], &all);
        cmd.env("DBUS_SESSION_BUS_ADDRESS", self.address());
        cmd.stdin(Stdio::null());
        cmd
    }

    pub fn start(world: &World) -> SessionBus {
        Self::start_with_env(world, &[])
    }

    /// A bus whose daemon also has `env`, which services it activates inherit.
    pub fn start_with_env(world: &World, env: &[(&str, &OsStr)]) -> SessionBus {
        require_programs(&["/usr/bin/dbus-daemon", "/usr/bin/dbus-send"]);
        let socket = world.runtime_dir.join("bus");
        let mut daemon = Command::new("/usr/bin/dbus-daemon");
        daemon
            .args(["--session", "--nofork", "--nopidfile"])
            .arg(format!("--address=unix:path={}", socket.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        world.prepare(&mut daemon);
        daemon.envs(env.iter().copied());
        let bus = SessionBus {
            socket,
            children: vec![daemon.spawn().unwrap()],
        };
        wait_until("the session bus", || bus.socket.exists());
        bus
    }

    pub fn address(&self) -> String {
        format!("unix:path={}", self.socket.display())
    }

    /// Starts `program ARGS` as the world's user on this bus, with `env`
    /// added to the world's environment; it is killed with the bus.
    pub fn spawn(&mut self, world: &World, program: &Path, args: &[&str], env: &[(&str, &OsStr)]) {
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null());
        world.prepare(&mut cmd);
        cmd.env("DBUS_SESSION_BUS_ADDRESS", self.address());
        cmd.envs(env.iter().copied());
        self.children.push(cmd.spawn().unwrap());
    }

    /// ListNames on the bus itself, as dbus-send prints it.
    pub fn names(&self, world: &World) -> String {
        let mut cmd = Command::new("/usr/bin/dbus-send");
        cmd.args(["--session", "--print-reply", "--dest=org.freedesktop.DBus"])
            .args(["/org/freedesktop/DBus", "org.freedesktop.DBus.ListNames"]);
        world.prepare(&mut cmd);
        cmd.env("DBUS_SESSION_BUS_ADDRESS", self.address());
        String::from_utf8_lossy(&cmd.output().unwrap().stdout).into_owned()
    }

    /// The pid of the process that owns `name` on this bus now, as the bus
    /// tells (GetConnectionUnixProcessID); else what dbus-send printed.
    pub fn owner_pid(&self, world: &World, name: &str) -> Result<u32, String> {
        let mut cmd = Command::new("/usr/bin/dbus-send");
        cmd.args(["--session", "--print-reply", "--reply-timeout=10000"])
            .arg("--dest=org.freedesktop.DBus")
            .args([
                "/org/freedesktop/DBus",
                "org.freedesktop.DBus.GetConnectionUnixProcessID",
            ])
            .arg(format!("string:{name}"));
        world.prepare(&mut cmd);
        cmd.env("DBUS_SESSION_BUS_ADDRESS", self.address());
        let output = cmd.stdin(Stdio::null()).output().unwrap();
        let pid = String::from_utf8_lossy(&output.stdout)
            .split_whitespace()
            .last()
            .and_then(|pid| pid.parse().ok());
        match pid {
            Some(pid) if output.status.success() => Ok(pid),
            _ => Err(format!("no pid for {name}: {}", describe(&output))),
        }
    }

    /// Waits until `name` has an owner on this bus.
    pub fn wait_for_name(&self, world: &World, name: &str) {
        let quoted = format!("\"{name}\"");
        wait_until(name, || self.names(world).contains(&quoted));
    }
}

impl Drop for SessionBus {
    fn drop(&mut self) {
        // Services first, the daemon (the first child) last.
        for child in self.children.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A publisher's side: a key pair and a repo with the sample apps, built as
/// the test user from a copy of `manifests/`.
pub struct Published {
    pub repo: PathBuf,
    pub public_key: PathBuf,
    pub secret_key: PathBuf,
}

/// Builds the sample apps `ids` from `manifests/` into a signed repo at
/// `<world>/srv/repo`, as the world's user.
pub fn publish_samples(world: &World, ids: &[&str]) -> Published {
    let source = world.root.join("manifests");
    copy_manifests(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests"),
        &source,
    );
    if ids.contains(&"org.appbox.Notes") {
        // As tests/run-sample.sh does: the notes editor is compiled by cargo
        // and handed to its manifest as a prebuilt file.
        let prebuilt = source.join("org.appbox.Notes/prebuilt");
        std::fs::create_dir_all(&prebuilt).unwrap();
        std::fs::copy(notes_binary(), prebuilt.join("appbox-notes")).unwrap();
    }
    make_readable(&source);
    chown_tree(&source, world.user);
    let keys = world.root.join("keys");
    std::fs::create_dir(&keys).unwrap();
    chown_tree(&keys, world.user);
    let prefix = keys.join("publisher");
    appbox_ok(world, &["repo", "keygen", prefix.to_str().unwrap()]);
    let published = Published {
        repo: world.root.join("srv/repo"),
        public_key: keys.join("publisher.pub"),
        secret_key: keys.join("publisher.secret"),
    };
    std::fs::create_dir(world.root.join("srv")).unwrap();
    chown_tree(&world.root.join("srv"), world.user);
    for id in ids {
        rebuild_sample(world, &published, id);
    }
    published
}

/// `appbox build` of the sample `id` into the published repo, again.
pub fn rebuild_sample(world: &World, published: &Published, id: &str) -> Output {
    let manifest = world.root.join(format!("manifests/{id}.toml"));
    appbox_ok(
        world,
        &[
            "build",
            manifest.to_str().unwrap(),
            "--repo",
            published.repo.to_str().unwrap(),
            "--sign-key",
            published.secret_key.to_str().unwrap(),
            "--json",
        ],
    )
}

fn copy_manifests(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == "prebuilt" {
            continue; // a staged binary of the developer's; tests stage their own
        }
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_manifests(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
