//! Each permission opens exactly what it names, and nothing without it.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use appbox_tests::{chown, World};

fn check(world: &World, app: &Path, extra: &[&str], checks: &[String]) {
    let checks: Vec<&str> = checks.iter().map(String::as_str).collect();
    world.probe(app, extra, &checks).assert_all_ok();
}

/// A listening unix socket at `path`, owned by the test user.
fn listener(world: &World, path: &Path) -> UnixListener {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    chown(path.parent().unwrap(), world.user);
    let listener = UnixListener::bind(path).unwrap();
    chown(path, world.user);
    listener
}

fn sandbox_runtime_dir(world: &World) -> PathBuf {
    PathBuf::from(format!("/run/user/{}", world.user.uid))
}

#[test]
fn audio_sockets_appear_only_when_granted() {
    let world = World::new();
    let _pulse = listener(&world, &world.runtime_dir.join("pulse/native"));
    let _pipewire = listener(&world, &world.runtime_dir.join("pipewire-0"));
    let inside = sandbox_runtime_dir(&world);
    let pulse = inside.join("pulse/native");
    let pipewire = inside.join("pipewire-0");

    let granted = world.probe_app(
        "org.appbox.Audio",
        &["--socket=pulseaudio", "--socket=pipewire"],
    );
    check(
        &world,
        &granted,
        &[],
        &[
            format!("unix-connects={}", pulse.display()),
            format!("unix-connects={}", pipewire.display()),
            format!("env=PULSE_SERVER=unix:{}", pulse.display()),
            format!("hidden={}", world.runtime_dir.display()),
        ],
    );
    // Revoked for one run, as `flatpak run --nosocket` does.
    check(
        &world,
        &granted,
        &["--nosocket=pulseaudio"],
        &[
            format!("hidden={}", pulse.display()),
            format!("unix-connects={}", pipewire.display()),
            "env-absent=PULSE_SERVER".to_owned(),
        ],
    );
    let closed = world.probe_app("org.appbox.Closed", &[]);
    check(
        &world,
        &closed,
        &[],
        &[
            format!("hidden={}", pulse.display()),
            format!("hidden={}", pipewire.display()),
        ],
    );
}

#[test]
fn devices_appear_only_when_granted() {
    let world = World::new();
    let app = world.probe_app("org.appbox.Probe", &[]);
    check(&world, &app, &[], &["hidden=/dev/kvm".to_owned()]);
    check(
        &world,
        &app,
        &["--device=kvm"],
        &["exists=/dev/kvm".to_owned()],
    );
    // Devices missing on this host are skipped, not an error.
    check(
        &world,
        &app,
        &["--device=dri", "--device=input"],
        &["hidden=/dev/dri".to_owned(), "hidden=/dev/kvm".to_owned()],
    );
    // device=all shows the host's /dev, but shared memory stays private.
    let marker = format!("/dev/shm/appbox-e2e-{}", std::process::id());
    std::fs::write(&marker, "host").unwrap();
    let all = world.probe(
        &app,
        &["--device=all"],
        &["exists=/dev/kvm", &format!("hidden={marker}")],
    );
    let _ = std::fs::remove_file(&marker);
    all.assert_all_ok();
}

#[test]
fn filesystem_grants_expose_what_they_name_with_their_access() {
    let world = World::new();
    let docs = world.home_dir("Documents");
    let music = world.home_dir("Music");
    let games = world.home.join("Games");
    let app = world.probe_app("org.appbox.Probe", &[]);
    // The user's own file under a read-only grant: its mount refuses writing,
    // truncating and deleting it, whatever the file's mode says.
    let notes = docs.join("notes.txt");
    std::fs::write(&notes, "keep me").unwrap();
    chown(&notes, world.user);

    check(
        &world,
        &app,
        &[
            "--filesystem=xdg-documents:ro",
            "--filesystem=~/Games:create",
        ],
        &[
            format!("readonly={}", docs.display()),
            format!("unwritable={}", notes.display()),
            format!("writable={}", games.display()),
            format!("hidden={}", music.display()),
        ],
    );
    assert!(games.is_dir(), ":create made the directory on the host");
    assert_eq!(std::fs::read_to_string(&notes).unwrap(), "keep me");

    check(
        &world,
        &app,
        &["--filesystem=home:ro", "--filesystem=xdg-music"],
        &[
            format!("readonly={}", world.home.display()),
            format!("readonly={}", docs.display()),
            format!("writable={}", music.display()),
        ],
    );

    // An absolute grant needs a directory outside /tmp and home that the test
    // user can own: only root can make one.
    if appbox_tests::running_as_root() {
        let shared = PathBuf::from(format!("/srv/appbox-e2e-share-{}", std::process::id()));
        std::fs::create_dir_all(&shared).unwrap();
        chown(&shared, world.user);
        let report = world.probe(
            &app,
            &[&format!("--filesystem={}:ro", shared.display())],
            &[
                &format!("readonly={}", shared.display()),
                "hidden=/srv/other",
            ],
        );
        let _ = std::fs::remove_dir_all(&shared);
        report.assert_all_ok();
    }
}

/// firejail #7154: even with all of home writable, appbox's own state is not,
/// and the directories above it cannot be renamed away and replaced.
#[test]
fn a_writable_home_cannot_rewrite_appbox_state() {
    let world = World::new();
    let config = world.home.join(".config/appbox");
    let store = world.home.join(".local/share/appbox");
    let launchers = world.home.join(".local/share/applications");
    let app = world.probe_app("org.appbox.Probe", &[]);
    check(
        &world,
        &app,
        &["--filesystem=home"],
        &[
            format!("writable={}", world.home.display()),
            format!("readonly={}", config.display()),
            format!("readonly={}", store.display()),
            format!("readonly={}", launchers.display()),
            format!("rename-refused={}", world.home.join(".config").display()),
            format!("rename-refused={}", world.home.join(".local").display()),
            format!(
                "rename-refused={}",
                world.home.join(".local/share").display()
            ),
            format!("rename-refused={}", config.display()),
            format!("writable={}", world.home.join(".config").display()),
        ],
    );
    // The state dirs were made beforehand, so the app could not make them first.
    for dir in [&config, &store, &launchers] {
        assert!(dir.is_dir(), "{} exists", dir.display());
    }
}

/// A writable grant of appbox's own state, or of anything inside it, is refused.
#[test]
fn writable_grants_of_appbox_state_are_refused() {
    let world = World::new();
    let app = world.probe_app("org.appbox.Probe", &[]);
    for grant in [
        "--filesystem=xdg-data/applications:create",
        "--filesystem=xdg-data/appbox/app",
        "--filesystem=xdg-config/appbox",
        "--filesystem=~/.local/share/applications",
        "--filesystem=xdg-run/appbox",
    ] {
        let output = world
            .appbox([
                "run",
                "--app-dir",
                app.to_str().unwrap(),
                grant,
                "--",
                "print=ran",
            ])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{grant}: {stderr}");
        assert!(stderr.contains("appbox's own state"), "{grant}: {stderr}");
    }
}

/// When root launches, `:create` hands only a directory it made to the app's
/// uid; a directory of root's that exists already stays root's.
#[test]
fn create_never_hands_over_an_existing_directory() {
    if !appbox_tests::running_as_root() {
        eprintln!("skipped: needs root to launch as root");
        return;
    }
    use std::os::unix::fs::MetadataExt;
    let world = World::as_root();
    let ssh = world.home.join(".ssh");
    std::fs::create_dir(&ssh).unwrap();
    let app = world.probe_app("org.appbox.Probe", &[]);
    let made = world.home.join("Made");
    check(
        &world,
        &app,
        &["--filesystem=~/.ssh:create", "--filesystem=~/Made:create"],
        &[format!("writable={}", made.display())],
    );
    assert_eq!(
        std::fs::metadata(&ssh).unwrap().uid(),
        0,
        "~/.ssh stays root's"
    );
    assert_eq!(std::fs::metadata(&made).unwrap().uid(), 65534);
}

#[test]
fn persist_keeps_a_home_directory_in_the_app_data() {
    let world = World::new();
    let app = world.probe_app("org.appbox.Probe", &[]);
    let inside = world.home.join(".mozilla");
    check(
        &world,
        &app,
        &["--persist=.mozilla"],
        &[format!("writable={}", inside.display())],
    );
    assert!(world
        .home
        .join(".var/app/org.appbox.Probe/.mozilla")
        .is_dir());
    assert!(!inside.exists(), "nothing was created in the real home");
}

#[test]
fn env_permissions_set_and_unset_variables() {
    let world = World::new();
    let app = world.probe_app("org.appbox.Probe", &["--env=GREETING=hello world"]);
    check(
        &world,
        &app,
        &["--env=EXTRA=1"],
        &[
            "env=GREETING=hello world".to_owned(),
            "env=EXTRA=1".to_owned(),
            "env-absent=LD_PRELOAD".to_owned(),
        ],
    );
    check(
        &world,
        &app,
        &["--unset-env=GREETING"],
        &["env-absent=GREETING".to_owned()],
    );
}

#[test]
fn host_environment_does_not_leak() {
    let world = World::new();
    let app = world.probe_app("org.appbox.Probe", &[]);
    let output = world
        .run_app(
            &app,
            &[],
            &[
                "env-absent=LD_PRELOAD",
                "env-absent=SECRET_TOKEN",
                "env-absent=DBUS_SESSION_BUS_ADDRESS",
                "env=LANG=C.UTF-8",
            ],
        )
        .env("LD_PRELOAD", "/tmp/evil.so")
        .env("SECRET_TOKEN", "hunter2")
        .env("DBUS_SESSION_BUS_ADDRESS", "unix:path=/run/user/0/bus")
        .output()
        .unwrap();
    appbox_tests::ProbeReport::from_output(output).assert_all_ok();
}
