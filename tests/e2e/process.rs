//! The app behaves as if run natively: exit codes, signals, stdio and a pty;
//! and it never outlives its launcher. Also `ps`, `kill` and `enter`.

use std::io::{BufRead, BufReader, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use appbox_tests::{output_with_input, running_as_root, World};

fn run_probe(world: &World, checks: &[&str]) -> appbox_tests::ProbeReport {
    let app = world.probe_app("org.appbox.Probe", &[]);
    world.probe(&app, &[], checks)
}

fn spawn_probe(world: &World, checks: &[&str]) -> Child {
    spawn_probe_with(world, &[], checks)
}

fn spawn_probe_with(world: &World, permissions: &[&str], checks: &[&str]) -> Child {
    let app = world.probe_app("org.appbox.Probe", permissions);
    let mut args = vec!["run", "--app-dir", app.to_str().unwrap(), "--"];
    args.extend_from_slice(checks);
    world
        .appbox(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_with_timeout(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn exit_codes_are_propagated() {
    let world = World::new();
    assert_eq!(run_probe(&world, &["exit=0"]).code(), Some(0));
    assert_eq!(run_probe(&world, &["exit=3"]).code(), Some(3));
    assert_eq!(run_probe(&world, &["exit=255"]).code(), Some(255));
}

#[test]
fn death_by_signal_is_reported_as_128_plus_the_signal() {
    let world = World::new();
    assert_eq!(
        run_probe(&world, &["kill-self=TERM"]).code(),
        Some(128 + 15)
    );
    assert_eq!(run_probe(&world, &["kill-self=KILL"]).code(), Some(128 + 9));
    assert_eq!(
        run_probe(&world, &["kill-self=SEGV"]).code(),
        Some(128 + 11)
    );
}

fn signal_reaches_the_app(signal: libc::c_int, name: &str) {
    let world = World::new();
    let mut child = spawn_probe(&world, &[&format!("wait-signal={name}")]);
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "probe did not start");
    // SAFETY: sending a signal to our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
    let status = wait_with_timeout(&mut child, Duration::from_secs(10)).expect("app exits");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert!(rest.contains(&format!("got signal {name}")), "{rest}");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn sigterm_to_the_launcher_reaches_the_app() {
    signal_reaches_the_app(libc::SIGTERM, "TERM");
}

#[test]
fn sigint_and_sigusr1_reach_the_app() {
    signal_reaches_the_app(libc::SIGINT, "INT");
    signal_reaches_the_app(libc::SIGUSR1, "USR1");
}

#[test]
fn stdin_stdout_and_stderr_pass_through() {
    let world = World::new();
    let app = world.probe_app("org.appbox.Probe", &[]);
    let output = output_with_input(
        world.run_app(&app, &[], &["cat", "eprint=to-stderr"]),
        b"line one\nline two\n",
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stdout.starts_with("line one\nline two\n"), "{stdout}");
    assert!(stderr.contains("to-stderr"), "{stderr}");
    assert_eq!(output.status.code(), Some(0));
}

fn open_pty() -> (OwnedFd, OwnedFd) {
    let mut master = -1;
    let mut slave = -1;
    // SAFETY: out-pointers to two ints; no name, termios or winsize.
    let ret = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(ret, 0, "openpty");
    // SAFETY: both descriptors were just returned by openpty and are ours.
    unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) }
}

/// On a terminal, the app sees a tty on all three streams, and still cannot
/// push keystrokes into it (CVE-2017-5226).
#[test]
fn a_pty_works_and_tiocsti_is_refused_on_it() {
    let world = World::new();
    let (master, slave) = open_pty();
    if running_as_root() {
        let name = std::fs::read_link(format!("/proc/self/fd/{}", slave.as_raw_fd())).unwrap();
        appbox_tests::chown(&name, world.user);
    }
    let app = world.probe_app("org.appbox.Probe", &[]);
    let mut child = world
        .run_app(&app, &[], &["isatty", "tiocsti", "tioclinux"])
        .stdin(Stdio::from(slave.try_clone().unwrap()))
        .stdout(Stdio::from(slave.try_clone().unwrap()))
        .stderr(Stdio::from(slave))
        .spawn()
        .unwrap();
    let status = wait_with_timeout(&mut child, Duration::from_secs(10)).expect("app exits");
    let mut output = Vec::new();
    let mut master = std::fs::File::from(master);
    // SAFETY: set the master non-blocking so reading stops at the end of the output.
    unsafe { libc::fcntl(master.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) };
    let mut buf = [0u8; 4096];
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        output.extend_from_slice(&buf[..n]);
    }
    let output = String::from_utf8_lossy(&output);
    assert!(output.contains("isatty 0=true 1=true 2=true"), "{output}");
    assert!(output.contains("ok tiocsti"), "{output}");
    assert!(output.contains("ok tioclinux"), "{output}");
    assert_eq!(status.code(), Some(0), "{output}");
}

#[test]
fn background_children_die_with_the_app() {
    let world = World::new();
    let mut child = spawn_probe(&world, &["fork-and-exit"]);
    // The forked child keeps stdout open: if it survived, this read would hang.
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let status = wait_with_timeout(&mut child, Duration::from_secs(10)).expect("app exits");
    assert_eq!(status.code(), Some(0));
    let start = Instant::now();
    while !reader.is_finished() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "a background process outlived the sandbox"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[derive(Debug)]
struct Listed {
    instance: String,
    pid: i32,
    application: String,
}

fn ps(world: &World) -> Vec<Listed> {
    let output = world.appbox(["ps", "--json"]).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    // A tiny reader for the fields we need, to keep the test crate dependency-free.
    text.split('{')
        .skip(1)
        .map(|object| {
            let field = |name: &str| {
                let start = object.find(&format!("\"{name}\"")).unwrap() + name.len() + 2;
                let rest = object[start..].trim_start_matches([':', ' ']);
                rest.split([',', '\n', '}'])
                    .next()
                    .unwrap()
                    .trim()
                    .trim_matches('"')
                    .to_owned()
            };
            Listed {
                instance: field("instance"),
                pid: field("pid").parse().unwrap(),
                application: field("application"),
            }
        })
        .collect()
}

fn wait_for_instance(world: &World, app: &str) -> Listed {
    let start = Instant::now();
    loop {
        if let Some(found) = ps(world).into_iter().find(|l| l.application == app) {
            return found;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{app} never showed up in ps"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn process_exists(pid: i32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn ps_enter_and_kill_manage_a_running_instance() {
    let world = World::new();
    let mut child = spawn_probe(&world, &["sleep=60"]);
    let listed = wait_for_instance(&world, "org.appbox.Probe");
    assert!(process_exists(listed.pid));

    let output = world
        .appbox([
            "enter",
            &listed.instance,
            "appbox-probe",
            "pidns",
            "caps",
            "nnp",
            "seccomp-mode",
            "fds",
            "net-none",
            "hidden=/etc/shadow",
            "readonly=/app",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let report = appbox_tests::ProbeReport::from_output(output);
    report.assert_all_ok();

    let output = world.appbox(["kill", "org.appbox.Probe"]).output().unwrap();
    assert!(output.status.success(), "{output:?}");
    let status = wait_with_timeout(&mut child, Duration::from_secs(10)).expect("killed app exits");
    assert_eq!(status.code(), Some(128 + 9));
    assert!(
        ps(&world).is_empty(),
        "the record of a killed instance stays"
    );
}

/// A shared namespace is the host's: `enter` joins only those the sandbox made.
#[test]
fn enter_works_when_the_app_shares_ipc_and_network() {
    let world = World::new();
    let mut child = spawn_probe_with(&world, &["--share=ipc", "--share=network"], &["sleep=60"]);
    let listed = wait_for_instance(&world, "org.appbox.Probe");
    let output = world
        .appbox([
            "enter",
            &listed.instance,
            "appbox-probe",
            "pidns",
            "caps",
            "nnp",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    appbox_tests::ProbeReport::from_output(output).assert_all_ok();
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn the_sandbox_dies_with_its_launcher() {
    let world = World::new();
    let mut child = spawn_probe(&world, &["sleep=60"]);
    let listed = wait_for_instance(&world, "org.appbox.Probe");
    child.kill().unwrap();
    let _ = child.wait();
    let start = Instant::now();
    while process_exists(listed.pid) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the sandbox outlived its launcher"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// CVE-2022-31214: `enter` trusts only records and the kernel. A record naming
/// a process whose start time does not match is refused.
#[test]
fn enter_refuses_a_forged_instance_record() {
    let world = World::new();
    assert!(world.appbox(["ps"]).output().unwrap().status.success());
    let mut sleeper = std::process::Command::new("sleep");
    world.prepare(&mut sleeper);
    let mut sleeper = sleeper.arg("30").spawn().unwrap();
    let dir = world.runtime_dir.join("appbox/instances/1234567890");
    std::fs::create_dir(&dir).unwrap();
    appbox_tests::chown(&dir, world.user);
    let record = format!(
        r#"{{"instance":1234567890,"app_id":"org.example.Fake","pid":{},"start_time":1,"monitor_pid":1,"started_at":0,"plan":null}}"#,
        sleeper.id()
    );
    std::fs::write(dir.join("info.json"), record).unwrap();
    appbox_tests::chown(&dir.join("info.json"), world.user);
    let output = world
        .appbox(["enter", "1234567890", "/usr/bin/true"])
        .output()
        .unwrap();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no running instance matches"), "{stderr}");
}

/// CVE-2024-32462 and CVE-2020-17368: what looks like an option or shell syntax
/// stays a literal argument, and a command cannot start with '-'.
#[test]
fn arguments_are_literal_and_commands_cannot_be_options() {
    let world = World::new();
    let app = world.probe_app("org.appbox.Probe", &[]);
    let output = world
        .run_app(
            &app,
            &[],
            &["args", "--bind=/", "$(id)", "; touch /tmp/pwned", "`id`"],
        )
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    for literal in ["--bind=/", "$(id)", "; touch /tmp/pwned", "`id`"] {
        assert!(stdout.contains(&format!("arg: {literal}\n")), "{stdout}");
    }

    let output = world
        .appbox([
            "run",
            "--app-dir",
            app.to_str().unwrap(),
            "--command=--bind=/",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("must not start with '-'"), "{stderr}");
}

/// CVE-2020-5291: appbox never runs with more privilege than its caller.
#[test]
fn a_setuid_install_refuses_to_run() {
    if !running_as_root() {
        eprintln!("skipped: making a setuid-root copy needs root");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let world = World::new();
    let copy = world.root.join("appbox-setuid");
    std::fs::copy(world.appbox_path(), &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o4755)).unwrap();
    let mut cmd = std::process::Command::new(&copy);
    world.prepare(&mut cmd);
    let output = cmd.arg("ps").output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("setuid"));
}
