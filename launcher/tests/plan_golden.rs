//! Golden tests for the pure planner.
//!
//! Every case plans one launch of `org.example.Golden` on a fully synthetic host
//! and compares the plan, as pretty JSON, with `tests/golden/<case>.json`.
//! `UPDATE_GOLDEN=1 cargo test -p appbox --test plan_golden` rewrites the files.
//!
//! The goldens pin the exact plan; the targeted tests below pin the properties
//! that must survive a blind regeneration of the goldens.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use appbox::hostfacts::{parse_user_dirs, HostFacts, ROOT_SANDBOX_ID};
use appbox::metadata::AppMetadata;
use appbox::permissions::Change;
use appbox::plan::{
    plan, BindAccess, DocumentMount, LandlockAccess, LaunchRequest, MountOp, PlanError,
    SandboxPlan, SourceTrust,
};

const APP_ID: &str = "org.example.Golden";
const APP_FILES: &str = "/home/ada/.local/share/appbox/app/org.example.Golden/abc123/files";
const HOME: &str = "/home/ada";
const APP_HOME: &str = "/home/ada/.var/app/org.example.Golden";
const UPDATE_HINT: &str = "run UPDATE_GOLDEN=1 cargo test -p appbox --test plan_golden to accept";

/// Host environment variables that must never reach the app.
const LEAKY_ENV: &[&str] = &[
    "LD_PRELOAD",
    "GIO_EXTRA_MODULES",
    "PYTHONPATH",
    "SECRET_TOKEN",
];

/// Host directories that the sandbox builds itself and `filesystem=host` must never bind.
const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/etc", "/proc", "/dev", "/sys", "/tmp", "/run", "/var", "/root", "/boot", "/bin",
    "/sbin", "/lib", "/lib64", "/lib32",
];

// ---------------------------------------------------------------------------
// The synthetic host.

fn env_of(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn root_dirs() -> Vec<String> {
    [
        "bin", "boot", "dev", "etc", "home", "lib", "media", "mnt", "opt", "proc", "root", "run",
        "srv", "sys", "tmp", "usr", "var",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

/// Ada, an ordinary user on a merged-/usr host with a Wayland session and Xwayland.
fn user_facts() -> HostFacts {
    let home = PathBuf::from(HOME);
    HostFacts {
        uid: 1000,
        gid: 1000,
        user_name: "ada".to_owned(),
        user_dirs: parse_user_dirs("", &home),
        home,
        runtime_dir: PathBuf::from("/run/user/1000"),
        env: env_of(&[
            ("DISPLAY", ":0"),
            ("WAYLAND_DISPLAY", "wayland-0"),
            ("XAUTHORITY", "/run/user/1000/.mutter-Xwaylandauth.ABC"),
            ("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/user/1000/bus"),
            ("SSH_AUTH_SOCK", "/run/user/1000/keyring/ssh"),
            ("LANG", "en_GB.UTF-8"),
            ("TERM", "xterm-256color"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
            ("HOME", HOME),
            ("PATH", "/home/ada/bin:/usr/local/bin:/usr/bin:/bin"),
            ("LD_PRELOAD", "/home/ada/evil.so"),
            ("GIO_EXTRA_MODULES", "/home/ada/gio"),
            ("PYTHONPATH", "/home/ada/py"),
            ("SECRET_TOKEN", "hunter2"),
        ]),
        hostname: "ada-laptop".to_owned(),
        merged_usr: true,
        root_dirs: root_dirs(),
        wayland_socket: Some(PathBuf::from("/run/user/1000/wayland-0")),
    }
}

/// The same host, with appbox started by root.
fn root_facts() -> HostFacts {
    let home = PathBuf::from("/root");
    HostFacts {
        uid: 0,
        gid: 0,
        user_name: "root".to_owned(),
        user_dirs: parse_user_dirs("", &home),
        home,
        runtime_dir: PathBuf::from("/run/user/0"),
        env: env_of(&[
            ("DISPLAY", ":0"),
            ("WAYLAND_DISPLAY", "wayland-0"),
            ("XAUTHORITY", "/root/.Xauthority"),
            ("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/user/0/bus"),
            ("LANG", "en_GB.UTF-8"),
            ("TERM", "xterm-256color"),
            ("LD_PRELOAD", "/root/evil.so"),
            ("SECRET_TOKEN", "hunter2"),
        ]),
        hostname: "ada-laptop".to_owned(),
        merged_usr: true,
        root_dirs: root_dirs(),
        wayland_socket: Some(PathBuf::from("/run/user/0/wayland-0")),
    }
}

// ---------------------------------------------------------------------------
// Requests.

fn metadata(permissions: &[&str]) -> AppMetadata {
    let list: Vec<String> = permissions
        .iter()
        .map(|p| serde_json::to_string(p).unwrap())
        .collect();
    let text = format!(
        "id = \"{APP_ID}\"\nname = \"Golden\"\ncommand = \"golden\"\nruntime = \"host\"\npermissions = [{}]\n",
        list.join(", ")
    );
    AppMetadata::parse(&text, Path::new("metadata.toml")).expect("test metadata parses")
}

fn request(permissions: &[&str], overrides: &[&str]) -> LaunchRequest {
    LaunchRequest {
        overrides: overrides
            .iter()
            .map(|o| Change::parse(o).expect("test override parses"))
            .collect(),
        ..LaunchRequest::new(metadata(permissions), PathBuf::from(APP_FILES))
    }
}

/// Two granted files: a read-only one, and a writable one with a space in its name.
fn two_documents() -> Vec<DocumentMount> {
    vec![
        DocumentMount {
            doc_id: "0a1b2c3d".to_owned(),
            name: "report.pdf".to_owned(),
            host_path: PathBuf::from("/home/ada/Documents/report.pdf"),
            writable: false,
        },
        DocumentMount {
            doc_id: "ffee0011".to_owned(),
            name: "notes for today.txt".to_owned(),
            host_path: PathBuf::from("/media/usb/notes for today.txt"),
            writable: true,
        },
    ]
}

struct Case {
    name: &'static str,
    request: LaunchRequest,
    facts: HostFacts,
}

fn case(name: &'static str, permissions: &[&str]) -> Case {
    Case {
        name,
        request: request(permissions, &[]),
        facts: user_facts(),
    }
}

fn cases() -> Vec<Case> {
    let mut cases = vec![
        case("no-permissions", &[]),
        case("share-network", &["--share=network"]),
        case("share-ipc", &["--share=ipc"]),
        case("socket-x11", &["--socket=x11"]),
        case("socket-fallback-x11", &["--socket=fallback-x11"]),
        case(
            "socket-fallback-x11-with-wayland",
            &["--socket=fallback-x11", "--socket=wayland"],
        ),
        case("socket-wayland", &["--socket=wayland"]),
        case("socket-pulseaudio", &["--socket=pulseaudio"]),
        case("socket-pipewire", &["--socket=pipewire"]),
        case("socket-session-bus", &["--socket=session-bus"]),
        case("socket-system-bus", &["--socket=system-bus"]),
        case("socket-ssh-auth", &["--socket=ssh-auth"]),
        case("socket-cups", &["--socket=cups"]),
        case("socket-gpg-agent", &["--socket=gpg-agent"]),
        case("device-dri", &["--device=dri"]),
        case("device-kvm", &["--device=kvm"]),
        case("device-input", &["--device=input"]),
        case("device-usb", &["--device=usb"]),
        case("device-shm", &["--device=shm"]),
        case("device-all", &["--device=all"]),
        case("filesystem-home", &["--filesystem=home"]),
        case("filesystem-home-ro", &["--filesystem=home:ro"]),
        case("filesystem-host", &["--filesystem=host"]),
        case("filesystem-host-os", &["--filesystem=host-os"]),
        case("filesystem-host-etc", &["--filesystem=host-etc"]),
        case(
            "filesystem-xdg-documents-ro",
            &["--filesystem=xdg-documents:ro"],
        ),
        case(
            "filesystem-xdg-download-subdir-create",
            &["--filesystem=xdg-download/Incoming:create"],
        ),
        case(
            "filesystem-xdg-config-sub",
            &["--filesystem=xdg-config/gtk-3.0"],
        ),
        case("filesystem-xdg-run-sub", &["--filesystem=xdg-run/gvfsd"]),
        case("filesystem-home-path-rw", &["--filesystem=~/Games"]),
        case("filesystem-absolute-ro", &["--filesystem=/srv/media:ro"]),
        case("persist", &["--persist=.mozilla"]),
        case(
            "env",
            &[
                "--env=GTK_THEME=Adwaita:dark",
                "--env=LANG=C.UTF-8",
                "--env=DROPPED=1",
                "--unset-env=DROPPED",
            ],
        ),
    ];
    cases.push(Case {
        name: "nofilesystem-resets-inherited",
        request: request(
            &[
                "--filesystem=home",
                "--filesystem=xdg-documents",
                "--filesystem=~/Games",
            ],
            &["--nofilesystem=home"],
        ),
        facts: user_facts(),
    });
    cases.push(Case {
        name: "override-order",
        request: request(
            &["--share=network"],
            &["--unshare=network", "--share=network"],
        ),
        facts: user_facts(),
    });
    let mut build = request(&[], &[]);
    build.build_dir = Some(PathBuf::from(
        "/home/ada/.cache/appbox/build/org.example.Golden",
    ));
    cases.push(Case {
        name: "build",
        request: build,
        facts: user_facts(),
    });
    let mut proxied = request(&["--talk-name=org.example.Service"], &[]);
    proxied.bus_proxy_socket = Some(PathBuf::from("/run/user/1000/appbox/bus/4242/bus"));
    cases.push(Case {
        name: "bus-proxy",
        request: proxied,
        facts: user_facts(),
    });
    let mut command = request(&[], &[]);
    command.command = Some("other".to_owned());
    command.args = vec!["--literal".to_owned(), "$(id)".to_owned()];
    cases.push(Case {
        name: "command-override-and-args",
        request: command,
        facts: user_facts(),
    });
    let mut documents = request(&[], &[]);
    documents.documents = two_documents();
    cases.push(Case {
        name: "documents",
        request: documents,
        facts: user_facts(),
    });
    cases.push(Case {
        name: "root-invoker",
        request: request(
            &["--socket=wayland", "--socket=x11", "--persist=.mozilla"],
            &[],
        ),
        facts: root_facts(),
    });
    cases
}

fn plan_case(name: &str) -> SandboxPlan {
    let case = cases()
        .into_iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no case {name}"));
    plan(&case.request, &case.facts).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn plan_user(permissions: &[&str], overrides: &[&str]) -> SandboxPlan {
    plan(&request(permissions, overrides), &user_facts()).expect("plan")
}

// ---------------------------------------------------------------------------
// Golden comparison.

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn updating() -> bool {
    std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1")
}

fn render(plan: &SandboxPlan) -> String {
    let mut json = serde_json::to_string_pretty(plan).expect("plan serializes");
    json.push('\n');
    json
}

/// A line diff (longest common subsequence) with three lines of context.
fn line_diff(expected: &str, actual: &str) -> String {
    let a: Vec<&str> = expected.lines().collect();
    let b: Vec<&str> = actual.lines().collect();
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0u32; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let mut ops: Vec<(char, &str)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && a[i] == b[j] {
            ops.push((' ', a[i]));
            i += 1;
            j += 1;
        } else if j == m || (i < n && lcs[i + 1][j] >= lcs[i][j + 1]) {
            ops.push(('-', a[i]));
            i += 1;
        } else {
            ops.push(('+', b[j]));
            j += 1;
        }
    }
    const CONTEXT: usize = 3;
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    let shown = |k: usize| changed.iter().any(|&c| c.abs_diff(k) <= CONTEXT);
    let mut out = String::from("--- golden (expected)\n+++ plan (actual)\n");
    let mut skipped = false;
    for (k, (tag, line)) in ops.iter().enumerate() {
        if shown(k) {
            if skipped {
                out.push_str("@@ ... @@\n");
                skipped = false;
            }
            out.push_str(&format!("{tag}{line}\n"));
        } else {
            skipped = true;
        }
    }
    out
}

/// Compares `actual` with the golden file `name`; returns an error message on mismatch.
fn check_golden(name: &str, actual: &str) -> Result<(), String> {
    let path = golden_dir().join(format!("{name}.json"));
    if updating() {
        std::fs::create_dir_all(golden_dir()).expect("create tests/golden");
        if std::fs::read_to_string(&path).ok().as_deref() != Some(actual) {
            std::fs::write(&path, actual)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            eprintln!("updated {}", path.display());
        }
        return Ok(());
    }
    let expected = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            return Err(format!(
                "golden {name}: cannot read {} ({e}); {UPDATE_HINT}",
                path.display()
            ))
        }
    };
    if expected == actual {
        return Ok(());
    }
    Err(format!(
        "golden {name} differs from {}:\n{}\n{UPDATE_HINT}",
        path.display(),
        line_diff(&expected, actual)
    ))
}

#[test]
fn goldens() {
    let cases = cases();
    let names: BTreeSet<&str> = cases.iter().map(|c| c.name).collect();
    assert_eq!(names.len(), cases.len(), "case names must be unique");
    let mut failures = Vec::new();
    for case in &cases {
        let plan =
            plan(&case.request, &case.facts).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        if let Err(message) = check_golden(case.name, &render(&plan)) {
            eprintln!("{message}\n");
            failures.push(case.name);
        }
    }
    // A golden without a case is stale: it would otherwise rot unnoticed.
    if let Ok(entries) = std::fs::read_dir(golden_dir()) {
        for entry in entries.filter_map(|e| e.ok()) {
            let file = entry.file_name().to_string_lossy().into_owned();
            let Some(name) = file.strip_suffix(".json") else {
                continue;
            };
            if !names.contains(name) {
                if updating() {
                    std::fs::remove_file(entry.path()).expect("remove stale golden");
                    eprintln!("removed stale {}", entry.path().display());
                } else {
                    eprintln!("stale golden {file}: no case produces it; {UPDATE_HINT}");
                    failures.push("(stale golden)");
                }
            }
        }
    }
    assert_eq!(
        failures,
        Vec::<&str>::new(),
        "golden mismatches (diffs above); {UPDATE_HINT}"
    );
}

#[test]
fn golden_diff_names_changed_lines() {
    let diff = line_diff("a\nb\nc\n", "a\nB\nc\nd\n");
    assert!(diff.contains("-b\n+B\n"), "{diff}");
    assert!(diff.contains("+d\n"), "{diff}");
}

// ---------------------------------------------------------------------------
// Invariants that every case must satisfy.

fn binds(
    plan: &SandboxPlan,
) -> impl Iterator<Item = (&Path, &Path, BindAccess, SourceTrust, bool)> {
    plan.mounts.iter().filter_map(|op| match op {
        MountOp::Bind {
            source,
            dest,
            access,
            trust,
            optional,
        } => Some((source.as_path(), dest.as_path(), *access, *trust, *optional)),
        _ => None,
    })
}

fn bind_dests(plan: &SandboxPlan) -> Vec<&Path> {
    binds(plan).map(|(_, dest, ..)| dest).collect()
}

fn is_mount(op: &MountOp) -> bool {
    matches!(
        op,
        MountOp::Bind { .. }
            | MountOp::Tmpfs { .. }
            | MountOp::Proc { .. }
            | MountOp::Devpts { .. }
    )
}

/// What the Landlock rule for a mount must grant.
fn expected_landlock(op: &MountOp) -> Option<LandlockAccess> {
    Some(match op {
        MountOp::Bind { access, .. } => match access {
            BindAccess::ReadOnly => LandlockAccess::ReadOnly,
            BindAccess::ReadWrite => LandlockAccess::ReadWrite,
            BindAccess::Device => LandlockAccess::Device,
        },
        MountOp::Tmpfs { path, .. } if path == Path::new("/dev") => LandlockAccess::ReadOnly,
        MountOp::Tmpfs { .. } => LandlockAccess::ReadWrite,
        MountOp::Proc { .. } => LandlockAccess::Proc,
        MountOp::Devpts { .. } => LandlockAccess::Device,
        _ => return None,
    })
}

fn check_invariants(name: &str, plan: &SandboxPlan, facts: &HostFacts) {
    // Every path is absolute and normalized.
    for op in &plan.mounts {
        let target = op.target();
        assert!(target.is_absolute(), "{name}: relative target {op:?}");
        assert!(
            !target
                .components()
                .any(|c| matches!(c, std::path::Component::ParentDir)),
            "{name}: '..' in {op:?}"
        );
        if let MountOp::Bind { source, .. } = op {
            assert!(source.is_absolute(), "{name}: relative source {op:?}");
        }
    }

    // Bind sources a user could have written are opened without following symlinks.
    let user_writable = [
        facts.home.as_path(),
        facts.runtime_dir.as_path(),
        Path::new("/tmp"),
    ];
    for (source, dest, _, trust, optional) in binds(plan) {
        if user_writable.iter().any(|root| source.starts_with(root)) {
            assert!(
                matches!(trust, SourceTrust::NoSymlinks | SourceTrust::RegularFile),
                "{name}: bind {} -> {} (optional {optional}) must not follow symlinks",
                source.display(),
                dest.display()
            );
        }
    }

    // Landlock mirrors the mounts.
    for op in &plan.mounts {
        if let Some(access) = expected_landlock(op) {
            assert!(
                plan.landlock
                    .iter()
                    .any(|r| r.path == op.target() && r.access == access),
                "{name}: no Landlock rule {access:?} for {op:?}"
            );
        }
    }
    for rule in &plan.landlock {
        if rule.path == Path::new("/") {
            assert_eq!(
                rule.access,
                LandlockAccess::ListOnly,
                "{name}: Landlock on / is broader than ListOnly"
            );
            continue;
        }
        if rule.path == Path::new("/etc") {
            assert_eq!(rule.access, LandlockAccess::ReadOnly, "{name}: /etc");
            continue;
        }
        let backed = plan.mounts.iter().any(|op| {
            op.target() == rule.path
                && (expected_landlock(op) == Some(rule.access)
                    || matches!(op, MountOp::Xauthority { .. })
                        && rule.access == LandlockAccess::ReadOnly)
        });
        assert!(backed, "{name}: Landlock rule {rule:?} mirrors no mount");
    }
    assert_eq!(
        plan.landlock.first().map(|r| (r.path.as_path(), r.access)),
        Some((Path::new("/"), LandlockAccess::ListOnly)),
        "{name}: the root tmpfs is list-only"
    );

    // A mount never hides an earlier operation: ancestors are mounted first.
    for (i, earlier) in plan.mounts.iter().enumerate() {
        for later in plan.mounts[i + 1..].iter().filter(|op| is_mount(op)) {
            let (e, l) = (earlier.target(), later.target());
            assert!(
                !(e != l && e.starts_with(l)),
                "{name}: {later:?} is mounted after, and hides, {earlier:?}"
            );
        }
    }

    // The system is read-only; only a build writes to /app.
    let read_only: &[&str] = if name == "build" {
        &["/usr", "/etc", "/sys"]
    } else {
        &["/usr", "/app", "/etc", "/sys"]
    };
    for (source, dest, access, ..) in binds(plan) {
        if read_only.iter().any(|p| dest.starts_with(p)) {
            assert_eq!(
                access,
                BindAccess::ReadOnly,
                "{name}: {} -> {} is writable",
                source.display(),
                dest.display()
            );
        }
    }

    // Secrets of the launcher's environment never reach the app.
    for var in LEAKY_ENV {
        assert!(!plan.env.contains_key(*var), "{name}: {var} leaked");
    }
    assert_eq!(
        plan.env.get("PATH").map(String::as_str),
        Some("/app/bin:/usr/bin:/bin")
    );
    assert!(
        plan.argv[0].starts_with('/'),
        "{name}: argv[0] is not absolute"
    );
    assert_eq!(plan.app_id.as_str(), APP_ID);
    assert_eq!(
        plan.env.get("XDG_RUNTIME_DIR").map(String::as_str),
        Some(format!("/run/user/{}", plan.ids.app_uid).as_str()),
        "{name}"
    );
    assert!(plan.namespaces.user && plan.namespaces.mount && plan.namespaces.pid);
}

#[test]
fn every_case_keeps_the_invariants() {
    for case in cases() {
        let plan =
            plan(&case.request, &case.facts).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        check_invariants(case.name, &plan, &case.facts);
    }
}

#[test]
fn plans_are_deterministic() {
    for case in cases() {
        let a = render(&plan(&case.request, &case.facts).unwrap());
        let b = render(&plan(&case.request, &case.facts).unwrap());
        assert_eq!(a, b, "{}", case.name);
    }
}

// ---------------------------------------------------------------------------
// Targeted checks.

#[test]
fn no_permissions_is_closed() {
    let plan = plan_case("no-permissions");
    assert!(plan.namespaces.net, "network must be unshared");
    assert!(plan.namespaces.ipc, "ipc must be unshared");
    assert!(plan.namespaces.uts && plan.namespaces.cgroup);
    for (source, dest, ..) in binds(&plan) {
        if source.starts_with(HOME) {
            assert!(
                source == Path::new(APP_HOME) || source == Path::new(APP_FILES),
                "unexpected home bind {} -> {}",
                source.display(),
                dest.display()
            );
        }
        assert!(
            !source.starts_with("/run/user/1000"),
            "runtime dir leaked: {}",
            source.display()
        );
        assert!(
            !source.starts_with("/tmp"),
            "host /tmp leaked: {}",
            source.display()
        );
    }
    assert!(!bind_dests(&plan).contains(&Path::new("/etc/resolv.conf")));
    assert_eq!(plan.env.get("HOME").map(String::as_str), Some(APP_HOME));
    assert_eq!(plan.cwd, Path::new(APP_HOME));
    assert_eq!(plan.argv, vec!["/app/bin/golden".to_owned()]);
    for var in [
        "DISPLAY",
        "WAYLAND_DISPLAY",
        "XAUTHORITY",
        "DBUS_SESSION_BUS_ADDRESS",
        "SSH_AUTH_SOCK",
        "PULSE_SERVER",
    ] {
        assert!(!plan.env.contains_key(var), "{var} passed without a grant");
    }
    assert_eq!(
        plan.env.get("LANG").map(String::as_str),
        Some("en_GB.UTF-8")
    );
    assert_eq!(
        plan.env.get("TERM").map(String::as_str),
        Some("xterm-256color")
    );
    assert_eq!(plan.env.get("USER").map(String::as_str), Some("ada"));
    assert!(plan.permissions.is_empty(), "{:?}", plan.permissions);
    assert_eq!(plan.ids.app_uid, 1000);
    assert!(plan.ids.deny_setgroups);
    // /dev and /dev/shm are private.
    assert!(plan
        .mounts
        .iter()
        .any(|op| matches!(op, MountOp::Tmpfs { path, .. } if path == Path::new("/dev"))));
    assert!(plan
        .mounts
        .iter()
        .any(|op| matches!(op, MountOp::Tmpfs { path, .. } if path == Path::new("/dev/shm"))));
    let host_dev: Vec<&Path> = binds(&plan)
        .filter(|(_, dest, ..)| dest.starts_with("/dev"))
        .map(|(_, dest, ..)| dest)
        .collect();
    let harmless: Vec<PathBuf> = ["null", "zero", "full", "random", "urandom", "tty"]
        .iter()
        .map(|n| Path::new("/dev").join(n))
        .collect();
    assert_eq!(
        host_dev,
        harmless.iter().map(PathBuf::as_path).collect::<Vec<_>>()
    );
    // The app's own data is writable, at the same path as on the host.
    assert!(
        binds(&plan).any(
            |(source, dest, access, trust, optional)| source == Path::new(APP_HOME)
                && dest == Path::new(APP_HOME)
                && access == BindAccess::ReadWrite
                && trust == SourceTrust::NoSymlinks
                && !optional
        )
    );
    assert!(
        binds(&plan).any(|(source, dest, access, ..)| source == Path::new(APP_FILES)
            && dest == Path::new("/app")
            && access == BindAccess::ReadOnly)
    );
    // The app's directories are created on the host, not handed to anyone else.
    assert!(plan.host_dirs.iter().all(|d| d.chown_to.is_none()));
    assert!(plan
        .host_dirs
        .iter()
        .all(|d| d.path_in_home.starts_with(".var/app/org.example.Golden")));
}

#[test]
fn share_network_and_ipc() {
    let plan = plan_case("share-network");
    assert!(!plan.namespaces.net && plan.namespaces.ipc);
    assert!(bind_dests(&plan).contains(&Path::new("/etc/resolv.conf")));
    let plan = plan_case("share-ipc");
    assert!(plan.namespaces.net && !plan.namespaces.ipc);
}

#[test]
fn later_overrides_win() {
    let plan = plan_case("override-order");
    assert!(!plan.namespaces.net, "--share=network came last");
    assert_eq!(plan.permissions, vec!["--share=network".to_owned()]);
    let plan = plan_user(&["--share=network"], &["--unshare=network"]);
    assert!(plan.namespaces.net, "--unshare=network came last");
    assert!(plan.permissions.is_empty());
}

#[test]
fn revoking_home_removes_everything_inside_it() {
    let plan = plan_case("nofilesystem-resets-inherited");
    for (source, dest, ..) in binds(&plan) {
        assert!(
            !source.starts_with(HOME)
                || source == Path::new(APP_HOME)
                || source == Path::new(APP_FILES),
            "{} -> {} survived --nofilesystem=home",
            source.display(),
            dest.display()
        );
    }
    assert!(
        plan.permissions
            .iter()
            .all(|p| !p.starts_with("--filesystem")),
        "{:?}",
        plan.permissions
    );
    assert!(plan
        .host_dirs
        .iter()
        .all(|d| !d.path_in_home.starts_with("Games")));
}

#[test]
fn command_override_and_args_are_literal() {
    let plan = plan_case("command-override-and-args");
    assert_eq!(plan.argv, vec!["/app/bin/other", "--literal", "$(id)"]);
}

#[test]
fn commands_that_look_like_options_are_refused() {
    for bad in [
        "--bind=/",
        "-c",
        "../bin/sh",
        "bin/sh",
        "/app/../usr/bin/sh",
    ] {
        let mut req = request(&[], &[]);
        req.command = Some(bad.to_owned());
        match plan(&req, &user_facts()) {
            Err(PlanError::BadCommand { command, .. }) => assert_eq!(command, bad),
            other => panic!("command {bad:?} gave {other:?}"),
        }
    }
    let mut req = request(&[], &[]);
    req.command = Some("/usr/bin/env".to_owned());
    assert_eq!(
        plan(&req, &user_facts()).unwrap().argv,
        vec!["/usr/bin/env"]
    );
}

#[test]
fn x11_is_shared_with_a_filtered_cookie() {
    for name in ["socket-x11", "socket-fallback-x11"] {
        let plan = plan_case(name);
        assert!(
            binds(&plan).any(|(source, dest, access, trust, _)| source
                == Path::new("/tmp/.X11-unix/X0")
                && dest == Path::new("/tmp/.X11-unix/X0")
                && access == BindAccess::ReadWrite
                && trust == SourceTrust::NoSymlinks),
            "{name}"
        );
        assert!(
            plan.mounts.iter().any(|op| matches!(op,
                MountOp::Xauthority { source, display, path }
                    if source == Path::new("/run/user/1000/.mutter-Xwaylandauth.ABC")
                        && display == "0"
                        && path == Path::new("/run/user/1000/Xauthority"))),
            "{name}"
        );
        assert_eq!(plan.env.get("DISPLAY").map(String::as_str), Some(":0"));
        assert_eq!(
            plan.env.get("XAUTHORITY").map(String::as_str),
            Some("/run/user/1000/Xauthority")
        );
        assert!(!plan.env.contains_key("WAYLAND_DISPLAY"), "{name}");
        // The host's own Xauthority file is never bound.
        assert!(binds(&plan).all(|(source, ..)| !source.to_string_lossy().contains("auth")));
    }
}

#[test]
fn fallback_x11_is_dropped_when_wayland_is_available() {
    let plan = plan_case("socket-fallback-x11-with-wayland");
    assert!(!plan.env.contains_key("DISPLAY"));
    assert!(!plan.env.contains_key("XAUTHORITY"));
    assert!(binds(&plan).all(|(source, ..)| !source.starts_with("/tmp/.X11-unix")));
    assert!(!plan
        .mounts
        .iter()
        .any(|op| matches!(op, MountOp::Xauthority { .. })));
    assert_eq!(
        plan.env.get("WAYLAND_DISPLAY").map(String::as_str),
        Some("wayland-0")
    );
}

/// A WAYLAND_DISPLAY whose socket is gone is no Wayland session: fallback-x11
/// then shares X11, and nothing claims a Wayland display.
#[test]
fn fallback_x11_is_kept_when_the_wayland_socket_is_missing() {
    let facts = HostFacts {
        wayland_socket: None,
        ..user_facts()
    };
    let plan = plan(
        &request(&["--socket=fallback-x11", "--socket=wayland"], &[]),
        &facts,
    )
    .expect("plan");
    assert_eq!(plan.env.get("DISPLAY").map(String::as_str), Some(":0"));
    assert!(!plan.env.contains_key("WAYLAND_DISPLAY"));
    assert!(plan.notes.iter().any(|n| n.contains("socket=wayland")));
}

#[test]
fn sockets_land_in_the_sandbox_runtime_dir() {
    let expect = |name: &str, source: &str, dest: &str, env: Option<(&str, &str)>| {
        let plan = plan_case(name);
        assert!(
            binds(&plan).any(|(s, d, access, ..)| s == Path::new(source)
                && d == Path::new(dest)
                && access == BindAccess::ReadWrite),
            "{name}: no bind {source} -> {dest}"
        );
        if let Some((var, value)) = env {
            assert_eq!(plan.env.get(var).map(String::as_str), Some(value), "{name}");
        }
    };
    expect(
        "socket-wayland",
        "/run/user/1000/wayland-0",
        "/run/user/1000/wayland-0",
        Some(("WAYLAND_DISPLAY", "wayland-0")),
    );
    expect(
        "socket-pulseaudio",
        "/run/user/1000/pulse/native",
        "/run/user/1000/pulse/native",
        Some(("PULSE_SERVER", "unix:/run/user/1000/pulse/native")),
    );
    expect(
        "socket-pipewire",
        "/run/user/1000/pipewire-0",
        "/run/user/1000/pipewire-0",
        None,
    );
    expect(
        "socket-session-bus",
        "/run/user/1000/bus",
        "/run/user/1000/bus",
        Some(("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/user/1000/bus")),
    );
    expect(
        "socket-system-bus",
        "/run/dbus/system_bus_socket",
        "/run/dbus/system_bus_socket",
        Some((
            "DBUS_SYSTEM_BUS_ADDRESS",
            "unix:path=/run/dbus/system_bus_socket",
        )),
    );
    expect(
        "socket-ssh-auth",
        "/run/user/1000/keyring/ssh",
        "/run/user/1000/ssh-auth",
        Some(("SSH_AUTH_SOCK", "/run/user/1000/ssh-auth")),
    );
    expect(
        "socket-cups",
        "/run/cups/cups.sock",
        "/run/cups/cups.sock",
        None,
    );
}

#[test]
fn devices_are_bound_one_by_one() {
    let device_binds = |name: &str| -> Vec<PathBuf> {
        let plan = plan_case(name);
        binds(&plan)
            .filter(|(_, _, access, ..)| *access == BindAccess::Device)
            .map(|(_, dest, ..)| dest.to_path_buf())
            .filter(|d| {
                !["null", "zero", "full", "random", "urandom", "tty"]
                    .iter()
                    .any(|n| d == &Path::new("/dev").join(n))
            })
            .collect()
    };
    assert!(device_binds("device-dri").contains(&PathBuf::from("/dev/dri")));
    assert!(device_binds("device-dri")
        .iter()
        .all(|d| d.starts_with("/dev/dri") || d.to_string_lossy().starts_with("/dev/nvidia")));
    assert_eq!(device_binds("device-kvm"), vec![PathBuf::from("/dev/kvm")]);
    assert_eq!(
        device_binds("device-input"),
        vec![PathBuf::from("/dev/input")]
    );
    assert_eq!(
        device_binds("device-usb"),
        vec![PathBuf::from("/dev/bus/usb")]
    );
    assert!(device_binds("device-shm").is_empty());
    assert_eq!(device_binds("device-all"), vec![PathBuf::from("/dev")]);

    let plan = plan_case("device-shm");
    assert!(
        binds(&plan).any(|(s, d, access, ..)| s == Path::new("/dev/shm")
            && d == Path::new("/dev/shm")
            && access == BindAccess::ReadWrite)
    );
    // Private devpts in every case, mounted after /dev.
    for name in ["no-permissions", "device-all"] {
        let plan = plan_case(name);
        let dev = plan
            .mounts
            .iter()
            .position(|op| op.target() == Path::new("/dev"))
            .unwrap();
        let pts = plan
            .mounts
            .iter()
            .position(|op| matches!(op, MountOp::Devpts { .. }))
            .unwrap();
        assert!(dev < pts, "{name}");
    }
}

#[test]
fn filesystem_home_is_rw_but_appbox_state_is_not() {
    let plan = plan_case("filesystem-home");
    let position = |dest: &str, access: BindAccess| {
        plan.mounts.iter().position(|op| {
            matches!(op, MountOp::Bind { dest: d, access: a, trust: SourceTrust::NoSymlinks, .. }
                if d == Path::new(dest) && *a == access)
        })
    };
    let home = position(HOME, BindAccess::ReadWrite).expect("home bound rw");
    for protected in [
        "/home/ada/.config/appbox",
        "/home/ada/.local/share/appbox",
        "/home/ada/.local/share/applications",
    ] {
        let at = position(protected, BindAccess::ReadOnly)
            .unwrap_or_else(|| panic!("{protected} not covered read-only"));
        assert!(at > home, "{protected} protected before home is bound");
    }
    let own = position(APP_HOME, BindAccess::ReadWrite).expect("app home");
    assert!(own > home);

    let plan = plan_case("filesystem-home-ro");
    assert!(binds(&plan).any(|(s, d, access, ..)| s == Path::new(HOME)
        && d == Path::new(HOME)
        && access == BindAccess::ReadOnly));
    assert!(binds(&plan)
        .any(|(s, _, access, ..)| s == Path::new(APP_HOME) && access == BindAccess::ReadWrite));
}

#[test]
fn filesystem_host_never_binds_system_dirs() {
    let mut facts = user_facts();
    facts.root_dirs.extend(
        [
            "app",
            "lib32",
            "lib64",
            "libx32",
            "lost+found",
            "sbin",
            "nix",
        ]
        .iter()
        .map(|s| (*s).to_owned()),
    );
    for access in ["", ":ro", ":create"] {
        let permission = format!("--filesystem=host{access}");
        let plan = plan(&request(&[&permission], &[]), &facts).unwrap();
        let granted: BTreeSet<&Path> = binds(&plan)
            .filter(|(_, _, _, trust, _)| *trust == SourceTrust::NoSymlinks)
            .map(|(_, dest, ..)| dest)
            .collect();
        for dir in SYSTEM_DIRS
            .iter()
            .chain(&["/app", "/lost+found", "/libx32"])
        {
            assert!(
                binds(&plan).all(
                    |(source, dest, _, trust, _)| !(trust == SourceTrust::NoSymlinks
                        && source != Path::new(APP_FILES)
                        && (source == Path::new(dir) || dest == Path::new(dir)))
                ),
                "{permission} binds {dir}"
            );
        }
        for dir in [
            "/home",
            "/media",
            "/mnt",
            "/opt",
            "/srv",
            "/nix",
            "/run/media",
        ] {
            assert!(
                granted.contains(Path::new(dir)),
                "{permission} misses {dir}"
            );
        }
        // System binds are the sandbox's own ones, never the host's whole /usr etc. as grants.
        let host_grants = binds(&plan)
            .filter(|(source, ..)| SYSTEM_DIRS.contains(&source.to_string_lossy().as_ref()))
            .map(|(source, dest, ..)| (source, dest))
            .collect::<Vec<_>>();
        assert_eq!(
            host_grants,
            vec![(Path::new("/usr"), Path::new("/usr"))],
            "{permission}: only the runtime /usr is bound from the host's system dirs"
        );
    }
}

#[test]
fn host_os_and_host_etc_stay_under_run_host() {
    let plan = plan_case("filesystem-host-os");
    let host: Vec<(&Path, BindAccess)> = binds(&plan)
        .filter(|(_, dest, ..)| dest.starts_with("/run/host"))
        .map(|(_, dest, access, ..)| (dest, access))
        .collect();
    assert!(host.iter().any(|(d, _)| *d == Path::new("/run/host/usr")));
    assert!(host.iter().all(|(_, a)| *a == BindAccess::ReadOnly));
    let plan = plan_case("filesystem-host-etc");
    assert!(binds(&plan).any(|(s, d, access, ..)| s == Path::new("/etc")
        && d == Path::new("/run/host/etc")
        && access == BindAccess::ReadOnly));
    assert!(binds(&plan).all(|(s, d, ..)| !(s == Path::new("/etc") && d == Path::new("/etc"))));
}

#[test]
fn xdg_and_home_path_grants() {
    let plan = plan_case("filesystem-xdg-documents-ro");
    assert!(binds(&plan).any(
        |(s, d, access, trust, _)| s == Path::new("/home/ada/Documents")
            && d == Path::new("/home/ada/Documents")
            && access == BindAccess::ReadOnly
            && trust == SourceTrust::NoSymlinks
    ));

    let plan = plan_case("filesystem-xdg-download-subdir-create");
    assert!(binds(&plan).any(
        |(s, _, access, ..)| s == Path::new("/home/ada/Downloads/Incoming")
            && access == BindAccess::ReadWrite
    ));
    assert!(plan
        .host_dirs
        .iter()
        .any(|d| d.path_in_home == Path::new("Downloads/Incoming") && d.chown_to.is_none()));

    let plan = plan_case("filesystem-xdg-config-sub");
    assert!(binds(&plan).any(
        |(s, d, access, ..)| s == Path::new("/home/ada/.config/gtk-3.0")
            && d == Path::new("/home/ada/.config/gtk-3.0")
            && access == BindAccess::ReadWrite
    ));

    let plan = plan_case("filesystem-xdg-run-sub");
    assert!(
        binds(&plan).any(|(s, d, access, ..)| s == Path::new("/run/user/1000/gvfsd")
            && d == Path::new("/run/user/1000/gvfsd")
            && access == BindAccess::ReadWrite)
    );
    // The whole runtime dir is never shared.
    let plan = plan_user(&["--filesystem=xdg-run"], &[]);
    assert!(binds(&plan).all(|(s, ..)| s != Path::new("/run/user/1000")));
    assert!(!plan.notes.is_empty());

    let plan = plan_case("filesystem-home-path-rw");
    assert!(
        binds(&plan).any(|(s, d, access, ..)| s == Path::new("/home/ada/Games")
            && d == Path::new("/home/ada/Games")
            && access == BindAccess::ReadWrite)
    );

    let plan = plan_case("filesystem-absolute-ro");
    assert!(
        binds(&plan).any(|(s, d, access, trust, _)| s == Path::new("/srv/media")
            && d == Path::new("/srv/media")
            && access == BindAccess::ReadOnly
            && trust == SourceTrust::NoSymlinks)
    );
}

#[test]
fn persist_maps_into_the_app_home() {
    let plan = plan_case("persist");
    assert!(binds(&plan).any(|(s, d, access, trust, optional)| s
        == Path::new("/home/ada/.var/app/org.example.Golden/.mozilla")
        && d == Path::new("/home/ada/.mozilla")
        && access == BindAccess::ReadWrite
        && trust == SourceTrust::NoSymlinks
        && !optional));
    assert!(plan
        .host_dirs
        .iter()
        .any(|d| d.path_in_home == Path::new(".var/app/org.example.Golden/.mozilla")));
}

#[test]
fn env_grants_apply_last() {
    let plan = plan_case("env");
    assert_eq!(
        plan.env.get("GTK_THEME").map(String::as_str),
        Some("Adwaita:dark")
    );
    assert_eq!(plan.env.get("LANG").map(String::as_str), Some("C.UTF-8"));
    assert!(!plan.env.contains_key("DROPPED"));
}

#[test]
fn root_invoker_runs_the_app_as_nobody() {
    let plan = plan_case("root-invoker");
    assert_eq!(plan.ids.app_uid, ROOT_SANDBOX_ID);
    assert_eq!(plan.ids.app_gid, ROOT_SANDBOX_ID);
    assert_eq!(ROOT_SANDBOX_ID, 65534);
    let map = |ranges: &[appbox::plan::IdRange]| {
        ranges
            .iter()
            .map(|r| (r.inside, r.outside, r.count))
            .collect::<Vec<_>>()
    };
    assert!(map(&plan.ids.uid_map).contains(&(0, 0, 1)));
    assert!(map(&plan.ids.uid_map).contains(&(65534, 65534, 1)));
    assert!(map(&plan.ids.gid_map).contains(&(0, 0, 1)));
    assert!(map(&plan.ids.gid_map).contains(&(65534, 65534, 1)));
    assert_eq!(plan.env.get("USER").map(String::as_str), Some("nobody"));
    assert_eq!(plan.env.get("LOGNAME").map(String::as_str), Some("nobody"));
    assert_eq!(
        plan.env.get("XDG_RUNTIME_DIR").map(String::as_str),
        Some("/run/user/65534")
    );
    assert!(!plan.host_dirs.is_empty());
    for dir in &plan.host_dirs {
        assert_eq!(dir.chown_to, Some((65534, 65534)), "{dir:?}");
    }
    assert!(plan.mounts.iter().any(|op| matches!(op,
        MountOp::Tmpfs { path, owner: Some((65534, 65534)), .. }
            if path == Path::new("/run/user/65534"))));
    // The identity files name only the unprivileged user.
    for op in &plan.mounts {
        if let MountOp::File { path, contents, .. } = op {
            if path == Path::new("/etc/passwd") || path == Path::new("/etc/group") {
                for line in contents.lines() {
                    let fields: Vec<&str> = line.split(':').collect();
                    assert_ne!(fields[0], "root", "{}: {line}", path.display());
                    assert_ne!(fields.get(2), Some(&"0"), "{}: {line}", path.display());
                }
            }
        }
    }
}

#[test]
fn seccomp_denies_the_escape_hatches() {
    let plan = plan_case("no-permissions");
    let seccomp = &plan.seccomp;
    for call in [
        "mount",
        "umount2",
        "pivot_root",
        "chroot",
        "unshare",
        "setns",
        "open_tree",
        "move_mount",
        "fsopen",
        "fsconfig",
        "fsmount",
        "fspick",
        "mount_setattr",
        "bpf",
        "io_uring_setup",
        "userfaultfd",
        "kexec_load",
        "init_module",
        "finit_module",
        "clock_settime",
        "adjtimex",
        "perf_event_open",
        "ptrace",
        "keyctl",
        "add_key",
    ] {
        assert!(
            seccomp.deny.iter().any(|c| c == call),
            "{call} is not denied"
        );
    }
    assert!(seccomp.unsupported.iter().any(|c| c == "clone3"));
    assert!(seccomp
        .deny_ioctls
        .contains(&("TIOCSTI".to_owned(), 0x5412)));
    assert!(seccomp
        .deny_ioctls
        .contains(&("TIOCLINUX".to_owned(), 0x541c)));
    assert!(seccomp.kill_foreign_abis);
    assert_ne!(seccomp.deny_clone_flags & 0x1000_0000, 0, "CLONE_NEWUSER");
    // Every case gets the same policy: no permission weakens seccomp.
    for case in cases() {
        let other = appbox::plan::plan(&case.request, &case.facts).unwrap();
        assert_eq!(&other.seccomp, seccomp, "{}", case.name);
    }
}

// ---------------------------------------------------------------------------
// Planner bugs found by review, each pinned by a test of the correct behaviour;
// shows them failing.

fn mounts_at<'p>(plan: &'p SandboxPlan, target: &str) -> Vec<&'p MountOp> {
    plan.mounts
        .iter()
        .filter(|op| op.target() == Path::new(target))
        .collect()
}

#[test]
fn device_all_keeps_dev_shm_private() {
    let plan = plan_case("device-all");
    assert!(
        mounts_at(&plan, "/dev/shm")
            .iter()
            .any(|op| matches!(op, MountOp::Tmpfs { .. })),
        "host /dev/shm is visible through the /dev bind"
    );
    let plan = plan_user(&["--device=all", "--device=shm"], &[]);
    assert!(mounts_at(&plan, "/dev/shm").is_empty());
}

#[test]
fn absolute_grants_over_home_protect_appbox_state() {
    for grant in [
        "--filesystem=/home",
        "--filesystem=/home/ada",
        "--filesystem=/home/ada/.config",
        "--filesystem=/home/ada/.local",
    ] {
        let plan = plan_user(&[grant], &[]);
        for protected in ["/home/ada/.config/appbox", "/home/ada/.local/share/appbox"] {
            if !(Path::new(protected).starts_with(grant.trim_start_matches("--filesystem="))) {
                continue;
            }
            assert!(
                binds(&plan).any(|(_, dest, access, ..)| dest == Path::new(protected)
                    && access == BindAccess::ReadOnly),
                "{grant}: {protected} stays writable"
            );
        }
    }
}

#[test]
fn grants_never_cover_the_sandbox_runtime_dir() {
    for grant in [
        "--filesystem=/run",
        "--filesystem=/run/user",
        "--filesystem=/run/user/1000",
    ] {
        let err = Change::parse(grant).unwrap_err().to_string();
        assert!(err.contains("reserved"), "{grant}: {err}");
    }
    let plan = plan_user(&["--filesystem=/run/media", "--socket=wayland"], &[]);
    check_invariants("run-media", &plan, &user_facts());
    assert!(
        binds(&plan).all(|(source, ..)| source != Path::new("/run/user/1000")
            && source != Path::new("/run/user")
            && source != Path::new("/run"))
    );
}

#[test]
fn grants_of_one_path_merge_to_the_stronger() {
    let plan = plan_user(
        &["--filesystem=~/Documents:ro", "--filesystem=xdg-documents"],
        &[],
    );
    let documents: Vec<BindAccess> = binds(&plan)
        .filter(|(_, dest, ..)| *dest == Path::new("/home/ada/Documents"))
        .map(|(_, _, access, ..)| access)
        .collect();
    assert_eq!(documents, vec![BindAccess::ReadWrite]);
}

#[test]
fn persist_is_mounted_before_narrower_grants() {
    let plan = plan_user(
        &["--persist=.mozilla", "--filesystem=~/.mozilla/plugins:ro"],
        &[],
    );
    check_invariants("persist+grant", &plan, &user_facts());
}

#[test]
fn gpg_agent_shares_only_the_agent_socket() {
    let plan = plan_case("socket-gpg-agent");
    assert!(
        binds(&plan).all(|(source, ..)| source != Path::new("/run/user/1000/gnupg")),
        "the whole gnupg dir (S.gpg-agent.ssh, S.gpg-agent.extra, S.keyboxd, ...) is bound read-write"
    );
    assert!(binds(&plan).any(|(source, dest, ..)| source
        == Path::new("/run/user/1000/gnupg/S.gpg-agent")
        && dest == Path::new("/run/user/1000/gnupg/S.gpg-agent")));
}

#[test]
fn empty_command_is_refused() {
    let mut req = request(&[], &[]);
    req.command = Some(String::new());
    assert!(matches!(
        plan(&req, &user_facts()),
        Err(PlanError::BadCommand { .. })
    ));
}

#[test]
fn writable_grants_of_appbox_state_are_refused() {
    for grant in [
        "--filesystem=xdg-config/appbox",
        "--filesystem=xdg-data/appbox/app:create",
        "--filesystem=~/.local/share/applications",
        "--filesystem=xdg-run/appbox",
        "--filesystem=xdg-run/appbox/instances:ro",
    ] {
        let result = plan(&request(&[grant], &[]), &user_facts());
        assert!(
            matches!(result, Err(appbox::plan::PlanError::StateGrant { .. })),
            "{grant}: {result:?}"
        );
    }
    // Reading is allowed.
    assert!(plan(
        &request(&["--filesystem=xdg-data/applications:ro"], &[]),
        &user_facts()
    )
    .is_ok());
}

/// The session bus starts what the activation files in its service dirs name,
/// outside any sandbox, and every app may start appbox's portal: those dirs
/// are appbox's state too (firejail #7154). A home grant covers the data
/// home's read-only (made beforehand, so the app cannot make it first), and a
/// writable grant of either is refused.
#[test]
fn bus_activation_dirs_stay_read_only() {
    for grant in ["--filesystem=home", "--filesystem=xdg-data"] {
        let plan = plan_user(&[grant], &[]);
        assert!(
            binds(&plan).any(|(_, dest, access, ..)| dest
                == Path::new("/home/ada/.local/share/dbus-1")
                && access == BindAccess::ReadOnly),
            "{grant}: the bus's activation files stay writable"
        );
        assert!(plan
            .host_dirs
            .iter()
            .any(|d| d.path_in_home == Path::new(".local/share/dbus-1")));
    }
    for grant in [
        "--filesystem=xdg-data/dbus-1",
        "--filesystem=xdg-data/dbus-1/services:create",
        "--filesystem=~/.local/share/dbus-1/services",
        "--filesystem=xdg-run/dbus-1",
        "--filesystem=xdg-run/dbus-1/services",
    ] {
        let result = plan(&request(&[grant], &[]), &user_facts());
        assert!(
            matches!(result, Err(appbox::plan::PlanError::StateGrant { .. })),
            "{grant}: {result:?}"
        );
    }
    // Reading them is allowed.
    assert!(plan(
        &request(&["--filesystem=xdg-data/dbus-1:ro"], &[]),
        &user_facts()
    )
    .is_ok());
}

#[test]
fn appbox_state_follows_the_xdg_base_dirs() {
    let mut facts = user_facts();
    facts
        .env
        .insert("XDG_DATA_HOME".into(), "/home/ada/.data".into());
    let plan = plan(&request(&["--filesystem=home"], &[]), &facts).expect("plan");
    for (path, access) in [
        ("/home/ada/.data", BindAccess::ReadWrite),
        ("/home/ada/.data/appbox", BindAccess::ReadOnly),
        ("/home/ada/.data/applications", BindAccess::ReadOnly),
        ("/home/ada/.config", BindAccess::ReadWrite),
        ("/home/ada/.config/appbox", BindAccess::ReadOnly),
    ] {
        assert!(
            binds(&plan).any(|(_, dest, a, ..)| dest == Path::new(path) && a == access),
            "{path} should be bound {access:?}"
        );
    }
    assert!(plan
        .host_dirs
        .iter()
        .any(|d| d.path_in_home == Path::new(".data/appbox")));
}

#[test]
fn persist_under_a_home_grant_is_left_to_the_grant() {
    let plan = plan_user(&["--filesystem=home:ro", "--persist=.mozilla"], &[]);
    assert!(binds(&plan).all(|(_, dest, ..)| dest != Path::new("/home/ada/.mozilla")));
    assert!(plan.notes.iter().any(|n| n.contains("persist=.mozilla")));
}

/// A persisted directory is the app's own data: it never pulls the host's
/// appbox state into the sandbox.
#[test]
fn persist_never_exposes_appbox_state() {
    let plan = plan_user(&["--persist=.config", "--persist=.local/share"], &[]);
    // (The app's own files come from the store, at /app.)
    assert!(binds(&plan)
        .filter(|(_, dest, ..)| *dest != Path::new("/app"))
        .all(
            |(source, ..)| !source.starts_with("/home/ada/.config/appbox")
                && !source.starts_with("/home/ada/.local/share/appbox")
                && !source.starts_with("/home/ada/.local/share/applications")
        ));
}

// ---------------------------------------------------------------------------
// Documents granted through the portal.

fn documents_dir_op(plan: &SandboxPlan, app_uid: u32) -> usize {
    let runtime = PathBuf::from(format!("/run/user/{app_uid}"));
    let tmpfs = plan
        .mounts
        .iter()
        .position(|op| matches!(op, MountOp::Tmpfs { path, .. } if *path == runtime))
        .expect("the runtime dir is a tmpfs");
    let doc = plan
        .mounts
        .iter()
        .position(
            |op| matches!(op, MountOp::Dir { path, mode: 0o555 } if *path == runtime.join("doc")),
        )
        .expect("the documents dir is made read-only by the setup");
    assert!(tmpfs < doc, "the documents dir is made before its tmpfs");
    doc
}

/// Every sandbox has a read-only `/run/user/UID/doc` made by the setup, so the
/// app can never pre-create it, even with no documents.
#[test]
fn every_sandbox_has_a_read_only_documents_dir() {
    for case in cases() {
        let plan = plan(&case.request, &case.facts).unwrap();
        documents_dir_op(&plan, plan.ids.app_uid);
    }
    let plan = plan_case("root-invoker");
    documents_dir_op(&plan, ROOT_SANDBOX_ID);
}

#[test]
fn documents_are_bound_file_by_file_in_read_only_dirs() {
    let plan = plan_case("documents");
    let doc_dir = documents_dir_op(&plan, 1000);
    for doc in two_documents() {
        let dir = PathBuf::from(format!("/run/user/1000/doc/{}", doc.doc_id));
        let dest = dir.join(&doc.name);
        let made = plan
            .mounts
            .iter()
            .position(|op| matches!(op, MountOp::Dir { path, mode: 0o555 } if *path == dir))
            .unwrap_or_else(|| panic!("no read-only {}", dir.display()));
        let bound = plan
            .mounts
            .iter()
            .position(|op| op.target() == dest)
            .unwrap_or_else(|| panic!("no mount at {}", dest.display()));
        assert!(doc_dir < made && made < bound);
        let expected = MountOp::Bind {
            source: doc.host_path.clone(),
            dest: dest.clone(),
            access: if doc.writable {
                BindAccess::ReadWrite
            } else {
                BindAccess::ReadOnly
            },
            trust: SourceTrust::RegularFile,
            optional: true,
        };
        assert_eq!(plan.mounts[bound], expected);
    }
    // Landlock already lets the app write below its runtime dir, which covers
    // documents injected later; each planned document gets its own rule too.
    assert!(plan
        .landlock
        .iter()
        .any(|r| r.path == Path::new("/run/user/1000") && r.access == LandlockAccess::ReadWrite));
    // Nothing else changes: the plan without documents is the same but for them.
    let without = plan_case("no-permissions");
    let extra: Vec<&MountOp> = plan
        .mounts
        .iter()
        .filter(|op| !without.mounts.contains(op))
        .collect();
    assert_eq!(extra.len(), 4, "{extra:#?}");
    assert!(extra
        .iter()
        .all(|op| op.target().starts_with("/run/user/1000/doc/")));
}

#[test]
fn bad_documents_are_refused() {
    let good = &two_documents()[0];
    let with = |change: &dyn Fn(&mut DocumentMount)| {
        let mut doc = good.clone();
        change(&mut doc);
        let mut request = request(&[], &[]);
        request.documents = vec![doc];
        plan(&request, &user_facts())
    };
    for bad in [
        "",
        "0A1B2C3D",
        "0a1b2c3",
        "0a1b2c3d4",
        "../../x",
        "0a1b2c3/",
    ] {
        let result = with(&|d| d.doc_id = bad.to_owned());
        assert!(
            matches!(result, Err(PlanError::BadDocument { .. })),
            "id {bad:?}: {result:?}"
        );
    }
    for bad in ["", ".", "..", "a/b", "../../../etc/passwd", "a\0b"] {
        let result = with(&|d| d.name = bad.to_owned());
        assert!(
            matches!(result, Err(PlanError::BadDocument { .. })),
            "name {bad:?}: {result:?}"
        );
    }
    for bad in ["report.pdf", "/home/ada/../../etc/shadow", "/"] {
        let result = with(&|d| d.host_path = PathBuf::from(bad));
        assert!(
            matches!(result, Err(PlanError::BadDocument { .. })),
            "host path {bad:?}: {result:?}"
        );
    }
    let mut request = request(&[], &[]);
    request.documents = vec![good.clone(), good.clone()];
    assert!(matches!(
        plan(&request, &user_facts()),
        Err(PlanError::DuplicateDocument(_))
    ));
}

/// A host directory bound over the sandbox's `doc` would receive the
/// directories and mount points that appbox creates there.
#[test]
fn the_documents_dir_is_never_granted() {
    for grant in [
        "--filesystem=xdg-run/doc",
        "--filesystem=xdg-run/doc/0a1b2c3d",
    ] {
        let mut request = request(&[grant], &[]);
        request.documents = two_documents();
        let plan = plan(&request, &user_facts()).unwrap();
        assert!(
            binds(&plan).all(|(source, ..)| !source.starts_with("/run/user/1000/doc")),
            "{grant}"
        );
        assert!(
            plan.notes.iter().any(|n| n.contains("granted documents")),
            "{grant}: {:?}",
            plan.notes
        );
    }
    // Other names in the runtime dir that merely start with "doc" are shared.
    let plan = plan_user(&["--filesystem=xdg-run/docs"], &[]);
    assert!(binds(&plan).any(|(source, ..)| source == Path::new("/run/user/1000/docs")));
}
