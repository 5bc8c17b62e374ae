//! The probe attacks the sandbox from inside, as an unprivileged user, and as
//! root in a separate case. Each layer is also switched off once to show that
//! the probe notices.

use appbox_tests::{running_as_root, secret_file, World};

/// Attacks that must all fail inside any appbox sandbox (CVE-CLASSES.md 1–4, 19, 27).
const SECCOMP_ATTACKS: &[&str] = &[
    "tiocsti",
    "tioclinux",
    "mount-api",
    "clone3",
    "clone-newuser",
    "syscalls",
    "foreign-abi",
];

const PROCESS_CHECKS: &[&str] = &[
    "caps",
    "nnp",
    "seccomp-mode",
    "fds",
    "uid-unprivileged",
    "pidns",
    "no-ptrace-init",
    "net-none",
];

fn filesystem_checks(world: &World) -> Vec<String> {
    let other_app = world.home_dir(".var/app/org.example.Other").join("secret");
    secret_file(&other_app, world.user);
    let host_tmp = std::env::temp_dir().join(format!("appbox-e2e-marker-{}", std::process::id()));
    let _ = std::fs::write(&host_tmp, "host tmp");
    let ssh = world.home_dir(".ssh");
    secret_file(&ssh.join("id_ed25519"), world.user);
    vec![
        "hidden=/etc/shadow".into(),
        format!("hidden={}", ssh.display()),
        format!("hidden={}", other_app.display()),
        format!(
            "hidden={}",
            world.home.join(".var/app/org.example.Other").display()
        ),
        format!("hidden={}", host_tmp.display()),
        format!("hidden={}", world.runtime_dir.join("appbox").display()),
        format!("hidden={}", world.appbox_path().display()),
        "readonly=/usr".into(),
        "readonly=/app".into(),
        "readonly=/etc".into(),
        "readonly=/".into(),
        "writable=/tmp".into(),
        "readable=/etc/passwd".into(),
        "unreadable=/proc/1/environ".into(),
        "unreadable=/proc/1/mem".into(),
    ]
}

fn full_probe(world: &World, extra_checks: &[String]) -> appbox_tests::ProbeReport {
    let app = world.probe_app("org.appbox.Probe", &[]);
    let home = world.home.join(".var/app/org.appbox.Probe");
    let mut checks: Vec<String> = SECCOMP_ATTACKS.iter().map(|s| s.to_string()).collect();
    checks.extend(PROCESS_CHECKS.iter().map(|s| s.to_string()));
    checks.extend(filesystem_checks(world));
    checks.push(format!("writable={}", home.display()));
    checks.push(format!("env=HOME={}", home.display()));
    // A minimal /etc and /dev, a private runtime dir, a session of its own.
    let (user, uid) = if world.user.is_root() {
        ("nobody".to_owned(), 65534)
    } else {
        (appbox_tests::user_name(world.user.uid), world.user.uid)
    };
    checks.push(format!("file-contains=/etc/passwd:{user}:x:{uid}:"));
    checks.push(format!("file-contains=/etc/passwd:{}", home.display()));
    checks.push("hidden=/etc/shadow".to_owned());
    for node in [
        "null", "zero", "full", "random", "urandom", "tty", "pts/ptmx", "ptmx", "shm",
    ] {
        checks.push(format!("exists=/dev/{node}"));
    }
    for node in ["mem", "kmsg", "vda", "sda", "kvm", "fuse"] {
        checks.push(format!("hidden=/dev/{node}"));
    }
    checks.push("writable=/dev/shm".to_owned());
    checks.push(format!("writable=/run/user/{uid}"));
    checks.push("session-leader".to_owned());
    checks.extend(extra_checks.iter().cloned());
    let checks: Vec<&str> = checks.iter().map(String::as_str).collect();
    world.probe(&app, &[], &checks)
}

#[test]
fn probe_finds_no_way_out_as_an_unprivileged_user() {
    let world = World::new();
    let report = full_probe(&world, &[format!("uid={}", world.user.uid)]);
    report.assert_all_ok();
}

#[test]
fn probe_finds_no_way_out_when_root_starts_the_app() {
    if !running_as_root() {
        eprintln!("skipped: the root case needs the tests to run as root");
        return;
    }
    let world = World::as_root();
    let report = full_probe(&world, &["uid=65534".to_owned()]);
    report.assert_all_ok();
}

#[test]
fn host_processes_are_invisible_and_cannot_be_signalled() {
    let world = World::new();
    let mut sleeper = std::process::Command::new("sleep");
    world.prepare(&mut sleeper);
    let mut sleeper = sleeper.arg("30").spawn().unwrap();
    let pid = sleeper.id();
    let app = world.probe_app("org.appbox.Probe", &[]);
    let report = world.probe(
        &app,
        &[],
        &[&format!("no-pid={pid}"), &format!("signal-refused={pid}")],
    );
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    report.assert_all_ok();
}

#[test]
fn without_the_mount_layer_the_probe_sees_the_host() {
    let world = World::new();
    let app = world.probe_app("org.appbox.Probe", &[]);
    let report = world.probe(
        &app,
        &["--unsafe-disable-layer=mounts", &host_probe_command(&app)],
        &["hidden=/etc/shadow", "hidden=/work", "readonly=/tmp"],
    );
    assert!(
        report.stderr.contains("NOT fully sandboxed"),
        "{}",
        report.stderr
    );
    report.assert_failed("hidden=/etc/shadow");
}

#[test]
fn without_seccomp_the_probe_gets_through() {
    let world = World::new();
    let app = world.probe_app("org.appbox.Probe", &[]);
    // Every attack of the full probe is stopped by seccomp alone.
    let mut checks = SECCOMP_ATTACKS.to_vec();
    checks.push("seccomp-mode");
    let report = world.probe(&app, &["--unsafe-disable-layer=seccomp"], &checks);
    for check in checks {
        report.assert_failed(check);
    }
}

/// With the host network shared, only Landlock's scoping keeps the app away from
/// the host's abstract unix sockets (such as an X server's or a D-Bus bus).
#[test]
fn landlock_scoping_blocks_host_abstract_sockets() {
    let world = World::new();
    let name = format!("appbox-e2e-abstract-{}", std::process::id());
    let listener = abstract_listener(&name);
    let app = world.probe_app("org.appbox.Probe", &["--share=network"]);
    let check = format!("abstract-refused={name}");

    let report = world.probe(&app, &[], &["net-host", &check]);
    report.assert_all_ok();

    let report = world.probe(&app, &["--unsafe-disable-layer=landlock"], &[&check]);
    report.assert_failed(&check);
    drop(listener);
}

#[test]
fn landlock_confines_even_without_the_mount_layer() {
    let world = World::new();
    // Outside every path the plan mounts (the test world itself lives under /tmp).
    let secret =
        std::path::PathBuf::from(format!("/var/tmp/appbox-e2e-secret-{}", std::process::id()));
    let _ = std::fs::remove_file(&secret);
    secret_file(&secret, world.user);
    let app = world.probe_app("org.appbox.Probe", &[]);
    let check = format!("unreadable={}", secret.display());
    // The app's own file on a writable mount, under a rule that grants no writing: a
    // mount the plan got wrong. Landlock alone must refuse writing, truncating and
    // deleting it (it grants truncation only where a read-only mount refuses it too).
    let unwritable = format!("unwritable={}", secret.display());
    // Mounts off, Landlock on: the host is visible, but its files cannot be opened.
    let command = host_probe_command(&app);
    let report = world.probe(
        &app,
        &["--unsafe-disable-layer=mounts", &command],
        &[&check, &unwritable],
    );
    report.assert_all_ok();
    // Both off: the probe reads it, so the check above can fail.
    let report = world.probe(
        &app,
        &[
            "--unsafe-disable-layer=mounts",
            "--unsafe-disable-layer=landlock",
            &command,
        ],
        &[&check, &unwritable],
    );
    let _ = std::fs::remove_file(&secret);
    report.assert_failed(&check);
    report.assert_failed(&unwritable);
}

/// Without the mount layer there is no /app: run the probe by its host path.
fn host_probe_command(app: &std::path::Path) -> String {
    format!("--command={}", app.join("files/bin/appbox-probe").display())
}

fn abstract_listener(name: &str) -> std::os::unix::net::UnixListener {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    std::os::unix::net::UnixListener::bind_addr(&addr).unwrap()
}

#[test]
fn the_network_is_private_unless_shared() {
    let world = World::new();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let target = format!("127.0.0.1:{port}");
    let name = format!("appbox-e2e-net-{}", std::process::id());
    let abstract_socket = abstract_listener(&name);

    let private = world.probe_app("org.appbox.Private", &[]);
    world
        .probe(
            &private,
            &[],
            &[
                "net-none",
                &format!("tcp-refused={target}"),
                &format!("abstract-refused={name}"),
            ],
        )
        .assert_all_ok();

    let shared = world.probe_app("org.appbox.Shared", &["--share=network"]);
    world
        .probe(
            &shared,
            &[],
            &["net-host", &format!("tcp-connects={target}")],
        )
        .assert_all_ok();
    drop(abstract_socket);
}

/// CVE-2019-12439 and friends: names pre-created in the host's /tmp change nothing.
#[test]
fn planted_names_in_host_tmp_change_nothing() {
    let world = World::new();
    let tmp = std::env::temp_dir();
    let planted = [
        tmp.join(".X11-unix-appbox-e2e"),
        tmp.join("appbox"),
        tmp.join(".appbox-newroot"),
    ];
    for (i, path) in planted.iter().enumerate() {
        let _ = std::fs::remove_file(path);
        if i == 0 {
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid C string.
            unsafe { libc::mkfifo(c.as_ptr(), 0o666) };
        } else {
            let _ = std::os::unix::fs::symlink("/etc", path);
        }
    }
    let app = world.probe_app("org.appbox.Probe", &[]);
    let report = world.probe(
        &app,
        &[],
        &[
            "writable=/tmp",
            "hidden=/tmp/appbox",
            "hidden=/tmp/.appbox-newroot",
            "hidden=/tmp/.X11-unix-appbox-e2e",
            "hidden=/etc/shadow",
        ],
    );
    for path in &planted {
        let _ = std::fs::remove_file(path);
    }
    report.assert_all_ok();
}

fn host_namespace(kind: &str) -> String {
    let link = std::fs::read_link(format!("/proc/self/ns/{kind}")).unwrap();
    format!("{kind}={}", link.display())
}

/// User, mount, pid, ipc, uts, cgroup and net namespaces are the sandbox's own;
/// `share=ipc` and `share=network` keep the host's.
#[test]
fn every_namespace_is_private_unless_shared() {
    let world = World::new();
    const ALL: [&str; 7] = [
        "user",
        "mnt",
        "pid_for_children",
        "ipc",
        "uts",
        "cgroup",
        "net",
    ];
    let app = world.probe_app("org.appbox.Probe", &[]);
    let private: Vec<String> = ALL
        .iter()
        .map(|kind| format!("ns-private={}", host_namespace(kind)))
        .collect();
    let checks: Vec<&str> = private.iter().map(String::as_str).collect();
    world.probe(&app, &[], &checks).assert_all_ok();

    let shared_ipc = format!("ns-shared={}", host_namespace("ipc"));
    let shared_net = format!("ns-shared={}", host_namespace("net"));
    let private_user = format!("ns-private={}", host_namespace("user"));
    world
        .probe(
            &app,
            &["--share=ipc", "--share=network"],
            &[&shared_ipc, &shared_net, &private_user],
        )
        .assert_all_ok();
}

/// Without Landlock (an old kernel answers its system calls with ENOSYS), the
/// launch is refused with a clear message, before anything runs.
#[test]
fn a_kernel_without_landlock_is_refused() {
    use std::os::unix::process::CommandExt;
    let world = World::new();
    let app = world.probe_app("org.appbox.Probe", &[]);
    // Built before the fork: the child only installs it.
    let filter = seccompiler::SeccompFilter::new(
        [(libc::SYS_landlock_create_ruleset, vec![])]
            .into_iter()
            .collect(),
        seccompiler::SeccompAction::Allow,
        seccompiler::SeccompAction::Errno(libc::ENOSYS as u32),
        seccompiler::TargetArch::x86_64,
    )
    .unwrap();
    let program: seccompiler::BpfProgram = filter.try_into().unwrap();
    let mut command = world.run_app(&app, &[], &["print=ran"]);
    // SAFETY: the closure allocates nothing: it hands a prebuilt program to the
    // kernel (prctl and seccomp) between fork and exec.
    unsafe {
        command
            .pre_exec(move || seccompiler::apply_filter(&program).map_err(std::io::Error::other));
    }
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stdout}{stderr}");
    assert!(!stdout.contains("ran"), "the app ran without Landlock");
    assert!(stderr.contains("does not support Landlock"), "{stderr}");
    assert!(
        !world.home.join(".var").exists(),
        "nothing was created on the host"
    );
}
