//! Attacks on the host side of a launch, each set up the way an app (or
//! another user) could set it up, for the CVE classes (numbered as in the
//! table of tests/README.md) that the in-sandbox probe cannot reach on its
//! own: permissions that hide or smuggle something (7, 8, 24), symlinks
//! planted in the app's data (11, 12), links aimed at a victim file (14),
//! names planted in world-writable directories and a hostile
//! `$XDG_RUNTIME_DIR/appbox` (18, 23), and appbox's own files under a
//! writable grant (26, 28). Each test also checks that nothing outside
//! changed.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use appbox_tests::{chown, chown_tree, describe, running_as_root, secret_file, SessionBus, World};

const ID: &str = "org.appbox.Probe";

/// Every path under `dir` (not following symlinks) with its kind, owner,
/// mode and, for files, contents: what an attack on the host would change.
fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return out;
    };
    let kind = if meta.file_type().is_symlink() {
        format!("link -> {}", std::fs::read_link(dir).unwrap().display())
    } else if meta.is_dir() {
        "dir".to_owned()
    } else if meta.is_file() {
        format!("file {:?}", std::fs::read(dir).unwrap_or_default())
    } else {
        format!("special {:o}", meta.mode() & libc::S_IFMT)
    };
    out.push((
        dir.to_path_buf(),
        format!(
            "{kind} {}:{} {:o}",
            meta.uid(),
            meta.gid(),
            meta.mode() & 0o7777
        ),
    ));
    if meta.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect();
        entries.sort();
        for entry in entries {
            out.extend(snapshot(&entry));
        }
    }
    out
}

/// `appbox run --app-dir APP EXTRA... -- print=ran`, which must be refused
/// with `why` in its message, without the app running and without any change
/// under `watched`.
fn refused(world: &World, app: &Path, extra: &[&str], watched: &[&Path], why: &str) {
    let before: Vec<_> = watched.iter().map(|dir| snapshot(dir)).collect();
    let output = world
        .run_app(app, extra, &["print=ran"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{extra:?}: {}",
        describe(&output)
    );
    assert!(
        !String::from_utf8_lossy(&output.stdout).contains("ran"),
        "{extra:?}: the app ran: {}",
        describe(&output)
    );
    assert!(
        stderr.starts_with("appbox: error: ") && stderr.contains(why),
        "{extra:?}: expected {why:?} in: {}",
        describe(&output)
    );
    for (dir, before) in watched.iter().zip(before) {
        assert_eq!(before, snapshot(dir), "{} changed: {stderr}", dir.display());
    }
}

fn symlink(target: &Path, link: &Path, world: &World) {
    std::os::unix::fs::symlink(target, link).unwrap();
    chown(link, world.user);
}

/// GHSA-8688-9x26-hhxj (and CVE-2024-42472 for persisted directories): the
/// app's data, config and cache dirs, or any directory above them or that
/// the launch creates in them, replaced by a symlink to `/` or to home. The
/// launch is refused before anything is created or handed over, and nothing
/// in home changes.
#[test]
fn symlinks_planted_in_the_app_data_abort_the_launch() {
    let world = World::new();
    let app = world.probe_app(ID, &[]);
    secret_file(&world.home.join(".ssh/id_ed25519"), world.user);
    let home = world.home.clone();
    let data = world.home_dir(&format!(".var/app/{ID}"));
    let root = Path::new("/");
    for (link, target) in [
        (data.join("data"), root),
        (data.join("config"), &home),
        (data.join("cache"), root),
        (data.join("data"), &home),
        // The launch makes `.local/state` in the app's data.
        (data.join(".local"), &home),
    ] {
        symlink(target, &link, &world);
        refused(&world, &app, &[], &[&home], "symbolic link");
        std::fs::remove_file(&link).unwrap();
    }
    world.home_dir(&format!(".var/app/{ID}/.local"));
    let state = data.join(".local/state");
    symlink(&home, &state, &world);
    refused(&world, &app, &[], &[&home], "symbolic link");
    std::fs::remove_file(&state).unwrap();

    // A persisted directory that became a link to ~/.ssh.
    let persisted = data.join(".mozilla");
    symlink(&home.join(".ssh"), &persisted, &world);
    refused(
        &world,
        &app,
        &["--persist=.mozilla"],
        &[&home],
        "symbolic link",
    );
    std::fs::remove_file(&persisted).unwrap();

    // The directories above the app's: ~/.var/app and ~/.var themselves.
    std::fs::remove_dir_all(home.join(".var")).unwrap();
    world.home_dir(".var");
    symlink(&home, &home.join(".var/app"), &world);
    refused(&world, &app, &[], &[&home], "symbolic link");
    std::fs::remove_dir_all(home.join(".var")).unwrap();
    symlink(root, &home.join(".var"), &world);
    refused(&world, &app, &[], &[&home], "symbolic link");
    std::fs::remove_file(home.join(".var")).unwrap();

    // With the links gone, the same app runs.
    world.probe(&app, &[], &["print=ran"]).assert_all_ok();
}

/// When root launches, the app's data dirs are handed to the sandbox's uid
/// (65534). A link planted in place of one of them must not hand over its
/// target: here a root-owned directory (never `/` itself, so that a broken
/// launcher could not damage the machine running the test).
#[test]
fn symlinks_planted_in_the_app_data_are_never_handed_over_when_root_launches() {
    if !running_as_root() {
        eprintln!("skipped: launching as root needs the tests to run as root");
        return;
    }
    let world = World::as_root();
    let app = world.probe_app(ID, &[]);
    // A first run makes the app's data and hands it over.
    world.probe(&app, &[], &["uid=65534"]).assert_all_ok();
    let data = world.home.join(".var/app").join(ID);
    assert_eq!(std::fs::metadata(data.join("data")).unwrap().uid(), 65534);
    let victim = world.root.join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("keep"), "root's\n").unwrap();
    for sub in ["data", "config", "cache", ".local"] {
        let link = data.join(sub);
        std::fs::remove_dir_all(&link).unwrap();
        symlink(&victim, &link, &world);
        refused(&world, &app, &[], &[&world.home, &victim], "symbolic link");
        std::fs::remove_file(&link).unwrap();
    }
    assert_eq!(std::fs::metadata(&victim).unwrap().uid(), 0);
}

/// A file and a directory of the user's, with something in it, for links
/// planted by an app to point at.
fn victims(world: &World) -> (PathBuf, PathBuf) {
    let victim = world.home.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    chown(&victim, world.user);
    let victim_dir = world.home_dir("victim-dir");
    std::fs::write(victim_dir.join("keep"), "keep\n").unwrap();
    chown(&victim_dir.join("keep"), world.user);
    (victim, victim_dir)
}

/// CVE-2026-34079: links the app controls in its own data, pointing at a
/// victim file and directory of the user's, under the names Flatpak's host
/// side touched (`.ld.so`, `ld.so.cache`, `var`) and the names appbox's host
/// side creates. Launching, a refused launch that rolls back what it made,
/// and exiting leave the victims as they were, and the links as links.
#[test]
fn links_the_app_controls_never_lead_the_host_side_to_a_victim() {
    let world = World::new();
    let app = world.probe_app(ID, &[]);
    world.probe(&app, &[], &["print=ran"]).assert_all_ok();
    let (victim, victim_dir) = victims(&world);
    let watched: [&Path; 2] = [&victim, &victim_dir];
    let before: Vec<_> = watched.iter().map(|p| snapshot(p)).collect();
    let unchanged = |when: &str| {
        for (path, before) in watched.iter().zip(&before) {
            assert_eq!(before, &snapshot(path), "{}: {when}", path.display());
        }
    };

    // Names the launch never uses: it runs, and follows none of them.
    let data = world.home.join(".var/app").join(ID);
    let planted = [
        (data.join(".ld.so"), victim.clone()),
        (data.join("cache/ld.so.cache"), victim.clone()),
        (data.join("var"), victim_dir.clone()),
        (data.join("cache/tmp"), victim_dir.clone()),
        (data.join("data/victim"), victim.clone()),
    ];
    for (link, target) in &planted {
        symlink(target, link, &world);
    }
    let report = world.probe(&app, &[], &["print=ran"]);
    report.assert_all_ok();
    unchanged("after a launch");
    for (link, target) in &planted {
        assert_eq!(&std::fs::read_link(link).unwrap(), target);
    }

    // A name the launch creates (`.local/state`), as a link into the victim
    // directory, while `config` and `cache` are still to be made: the launch
    // makes them, is refused at the link, and removes what it made.
    std::fs::remove_dir_all(data.join("config")).unwrap();
    std::fs::remove_dir_all(data.join(".local")).unwrap();
    symlink(&victim_dir, &data.join(".local"), &world);
    refused(&world, &app, &[], &[&world.home], "symbolic link");
    unchanged("after a refused launch");
}

/// `appbox uninstall --delete-data` deletes the app's data with links in it
/// that point at a victim file and directory: the links go, the victims stay.
#[test]
fn deleting_the_app_data_deletes_links_not_their_targets() {
    let world = World::new();
    let unpacked = world.probe_app(ID, &[]);
    // Installed as the store lays it out, so uninstall can find it.
    let deployments = world.home_dir(&format!(".local/share/appbox/app/{ID}"));
    let commit = deployments.join("0".repeat(64));
    std::fs::create_dir(&commit).unwrap();
    std::fs::copy(unpacked.join("metadata.toml"), commit.join("metadata.toml")).unwrap();
    std::fs::create_dir_all(commit.join("files/bin")).unwrap();
    std::fs::copy(
        unpacked.join("files/bin/appbox-probe"),
        commit.join("files/bin/appbox-probe"),
    )
    .unwrap();
    std::os::unix::fs::symlink("0".repeat(64), deployments.join("current")).unwrap();
    chown_tree(&deployments, world.user);
    let output = world
        .appbox(["run", ID, "--", "print=ran"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));

    let (victim, victim_dir) = victims(&world);
    let before = (snapshot(&victim), snapshot(&victim_dir));
    let data = world.home.join(".var/app").join(ID);
    symlink(&victim, &data.join(".ld.so"), &world);
    symlink(&victim_dir, &data.join("cache/dir"), &world);
    symlink(&victim, &data.join("data/file"), &world);

    let output = world
        .appbox(["uninstall", ID, "--delete-data"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert!(!data.exists(), "the app's data is gone");
    assert_eq!(before, (snapshot(&victim), snapshot(&victim_dir)));
}

/// Names under `/tmp`, `/var/tmp` and `/dev/shm` that a launcher keeping
/// state there would pick, for `uid`.
fn predictable_names(uid: u32) -> Vec<PathBuf> {
    let mut names = Vec::new();
    for dir in ["/tmp", "/var/tmp", "/dev/shm"] {
        for name in [
            "appbox".to_owned(),
            format!("appbox-{uid}"),
            format!(".appbox-{uid}"),
            format!("appbox-run-{uid}"),
            format!("appbox-bus-{uid}"),
            format!(".appbox-newroot-{uid}"),
        ] {
            names.push(Path::new(dir).join(name));
        }
    }
    names
}

/// The absolute paths in one line of strace output: its quoted strings that
/// start with '/'.
fn traced_paths(line: &str) -> Vec<&str> {
    line.split('"')
        .skip(1)
        .step_by(2)
        .filter(|s| s.starts_with('/'))
        .collect()
}

/// CVE-2019-12439 and the snap-confine /tmp races (CVE-2021-44731,
/// CVE-2022-3328, CVE-2026-3888): a whole launch, with the bus proxy and the
/// portal's activation, traced with strace, touches no name in `/tmp`,
/// `/var/tmp` or `/dev/shm` other than the test's own files (the test's home
/// and runtime dir live in /tmp), and binds no abstract socket. Names a
/// launcher could predict, planted there by another user as symlinks to a
/// victim and as FIFOs, stay as they were.
#[test]
fn a_launch_keeps_nothing_in_world_writable_dirs() {
    appbox_tests::require_programs(&["/usr/bin/strace"]);
    let world = World::new();
    let _bus = SessionBus::start(&world);
    let app = world.probe_app(ID, &[]);
    let victim = world.home.join("victim");
    std::fs::write(&victim, "precious\n").unwrap();
    chown(&victim, world.user);

    // Planted by root when the tests run as root, so they belong to another
    // user than the launcher's; a name that exists already is left alone.
    let mut planted = Vec::new();
    for (i, path) in predictable_names(world.user.uid).into_iter().enumerate() {
        let made = if i % 2 == 0 {
            std::os::unix::fs::symlink(&victim, &path).is_ok()
        } else {
            let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
            // SAFETY: a valid C string.
            unsafe { libc::mkfifo(c.as_ptr(), 0o666) == 0 }
        };
        if made {
            planted.push(path);
        }
    }
    let planted_before: Vec<_> = planted.iter().map(|p| snapshot(p)).collect();
    let victim_before = snapshot(&victim);

    let out = world.root.join("trace");
    std::fs::create_dir(&out).unwrap();
    chown(&out, world.user);
    let trace = out.join("strace.txt");
    let mut cmd = std::process::Command::new("/usr/bin/strace");
    cmd.args([
        "-f",
        "-qq",
        "-s",
        "4096",
        "-e",
        "trace=%file,%network",
        "-o",
    ])
    .arg(&trace)
    .arg(world.appbox_path())
    .args(["run", "--app-dir"])
    .arg(&app)
    .args(["--", "print=ran"]);
    world.prepare(&mut cmd);
    let output = cmd.stdin(Stdio::null()).output().unwrap();
    let traced = std::fs::read_to_string(&trace).unwrap_or_default();
    let planted_after: Vec<_> = planted.iter().map(|p| snapshot(p)).collect();
    for path in &planted {
        let _ = std::fs::remove_file(path);
    }
    assert!(output.status.success(), "{}", describe(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("ran"));

    let ours = [
        world.root.clone(),
        world.appbox_path().parent().unwrap().to_path_buf(),
    ];
    let mut strays = Vec::new();
    for line in traced.lines() {
        for path in traced_paths(line) {
            let shared = ["/tmp", "/var/tmp", "/dev/shm"]
                .iter()
                .any(|dir| Path::new(path).starts_with(dir) && Path::new(path) != Path::new(dir));
            if shared && !ours.iter().any(|own| Path::new(path).starts_with(own)) {
                strays.push(line.to_owned());
            }
        }
        if line.contains("sun_path=@") {
            strays.push(line.to_owned());
        }
    }
    assert!(
        traced.contains("appbox/bus"),
        "the trace covers the bus proxy:\n{traced}"
    );
    assert!(
        strays.is_empty(),
        "the launch used shared directories:\n{}",
        strays.join("\n")
    );
    assert_eq!(planted_before, planted_after, "a planted name changed");
    assert_eq!(victim_before, snapshot(&victim));
}

/// CVE-2021-44731 and friends, the other half: appbox's state lives under
/// `$XDG_RUNTIME_DIR/appbox`, and each level of it must be the user's alone.
/// One made by someone else, or open to others, or a symlink, is refused
/// before anything is created or deleted in it, by `run` (whose bus proxy
/// makes its socket there first) and by `ps`.
#[test]
fn a_hostile_runtime_appbox_dir_is_refused() {
    let world = World::new();
    let _bus = SessionBus::start(&world);
    let app = world.probe_app(ID, &[]);
    let appbox = world.runtime_dir.join("appbox");
    // A directory of the user's with a name the bus proxy would sweep as stale
    // (no pid can be that large).
    let victim = world.home_dir("victim");
    world.home_dir("victim/bus/2147483647");
    std::fs::write(victim.join("bus/2147483647/keep"), "keep\n").unwrap();
    chown(&victim.join("bus/2147483647/keep"), world.user);

    let ps_refused = |why: &str| {
        let output = world.appbox(["ps"]).output().unwrap();
        assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains(why),
            "{}",
            describe(&output)
        );
    };
    let watched: [&Path; 2] = [&world.runtime_dir, &victim];

    // Open to others, though the user's.
    for mode in [0o777, 0o750, 0o701] {
        std::fs::create_dir(&appbox).unwrap();
        chown(&appbox, world.user);
        std::fs::set_permissions(&appbox, std::fs::Permissions::from_mode(mode)).unwrap();
        refused(&world, &app, &[], &watched, "not private to this user");
        ps_refused("not private to this user");
        std::fs::remove_dir(&appbox).unwrap();
    }
    // A symlink to a directory of the user's.
    symlink(&victim, &appbox, &world);
    refused(&world, &app, &[], &watched, "symbolic link");
    ps_refused("symbolic link");
    std::fs::remove_file(&appbox).unwrap();
    // A level below it a symlink, the other levels private. (The peer
    // records are refused by the portal that reads them; see busproxy::peers.)
    for level in ["bus", "instances"] {
        for dir in [&appbox, &appbox.join("bus"), &appbox.join("instances")] {
            std::fs::create_dir(dir).unwrap();
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).unwrap();
            chown(dir, world.user);
        }
        std::fs::remove_dir(appbox.join(level)).unwrap();
        symlink(&victim.join("bus"), &appbox.join(level), &world);
        refused(&world, &app, &[], &watched, "symbolic link");
        std::fs::remove_dir_all(&appbox).unwrap();
    }
    // Another user's, when root can make one.
    if running_as_root() {
        std::fs::create_dir(&appbox).unwrap();
        std::fs::set_permissions(&appbox, std::fs::Permissions::from_mode(0o700)).unwrap();
        refused(&world, &app, &[], &watched, "not private to this user");
        ps_refused("not private to this user");
        std::fs::remove_dir(&appbox).unwrap();
    }

    // With the hostile directory gone, the launch works and makes it private.
    world.probe(&app, &[], &["print=ran"]).assert_all_ok();
    let meta = std::fs::symlink_metadata(&appbox).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.uid(), world.user.uid);
    assert_eq!(meta.mode() & 0o077, 0);
}

/// firejail #7154 (and CVE-2019-12589): an app granted all of home, or all of
/// `xdg-config` or `xdg-data`, still cannot change the files appbox keeps and
/// later trusts: its remotes, the overrides of apps, the deployments, the
/// document grants and device answers, the launchers it exports and the
/// user's launchers, and the session bus's activation files, which start
/// appbox's portal (the one service every app may start) outside any sandbox.
/// It can neither write nor delete them, rename them away, nor create files
/// beside them; its grant is writable elsewhere.
#[test]
fn a_writable_grant_cannot_rewrite_appbox_files() {
    let world = World::new();
    // A bus, so `appbox run` writes the portal's activation files for real.
    let _bus = SessionBus::start(&world);
    let app = world.probe_app(ID, &[]);
    let output = world
        .appbox(["override", ID, "--env=OVERRIDDEN=1"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));

    let config = world.home.join(".config");
    let data = world.home.join(".local/share");
    let report = world.home_dir("Documents").join("report.txt");
    std::fs::write(&report, "report\n").unwrap();
    chown(&report, world.user);
    appbox::documents::DocumentStore::new(&data)
        .update(|docs| docs.grant(&report, &appbox::appid::AppId::parse(ID).unwrap(), false))
        .unwrap();
    let files = [
        (config.join("appbox/remotes.toml"), "[remotes]\n"),
        (data.join("appbox/permissions.json"), "{}\n"),
        (
            data.join("appbox/app/org.example.App/current/metadata.toml"),
            "id = \"org.example.App\"\n",
        ),
        (
            data.join("appbox/exports/share/applications/org.example.App.desktop"),
            "[Desktop Entry]\n",
        ),
        (
            data.join("applications/org.example.App.desktop"),
            "[Desktop Entry]\n",
        ),
    ];
    for (path, contents) in &files {
        world.write(path, contents);
    }
    chown_tree(&config, world.user);
    chown_tree(&world.home.join(".local"), world.user);
    // A first run writes the activation files.
    world
        .probe(&app, &[], &["env=OVERRIDDEN=1"])
        .assert_all_ok();
    let services = data.join("dbus-1/services");
    let activation = services.join("org.appbox.Portal.Desktop.service");
    assert!(activation.is_file(), "appbox run registers the portal");

    let mut protected: Vec<PathBuf> = files.iter().map(|(path, _)| path.clone()).collect();
    protected.extend([
        config.join(format!("appbox/overrides/{ID}.json")),
        data.join("appbox/documents.json"),
        activation.clone(),
    ]);
    let before: Vec<_> = protected.iter().map(|p| snapshot(p)).collect();

    for (grant, writable) in [
        ("--filesystem=home", world.home.clone()),
        ("--filesystem=xdg-config", config.clone()),
        ("--filesystem=xdg-data", data.clone()),
    ] {
        let mut checks = vec![format!("writable={}", writable.display())];
        for file in protected.iter().filter(|f| f.starts_with(&writable)) {
            checks.push(format!("unwritable={}", file.display()));
            checks.push(format!("rename-refused={}", file.display()));
            checks.push(format!("readonly={}", file.parent().unwrap().display()));
        }
        let checks: Vec<&str> = checks.iter().map(String::as_str).collect();
        world.probe(&app, &[grant], &checks).assert_all_ok();
    }
    let after: Vec<_> = protected.iter().map(|p| snapshot(p)).collect();
    assert_eq!(before, after);

    // A writable grant of the bus's activation files themselves is refused.
    for grant in [
        "--filesystem=xdg-data/dbus-1",
        "--filesystem=xdg-data/dbus-1/services:create",
        "--filesystem=xdg-run/dbus-1",
    ] {
        refused(&world, &app, &[grant], &[&world.home], "appbox's own state");
    }
}

/// CVE-2021-4120 (paths from a package injected into a policy) and
/// CVE-2021-43860 (a NUL byte hiding the rest of a permission): a permission
/// whose path holds `..`, a glob character or a control character, or that
/// holds a NUL byte, is refused, from the app's metadata and from the command
/// line alike, before anything runs. appbox hands no path to a policy
/// language (mounts and Landlock rules take descriptors), so this refuses
/// what another reader of the same text could take differently.
#[test]
fn permission_paths_that_a_policy_could_misread_are_refused() {
    let world = World::new();
    let cases = [
        ("--filesystem=~/Music/../.ssh", "'..' is not allowed"),
        ("--filesystem=~/Music/*", "glob characters"),
        ("--filesystem=/srv/data?:ro", "glob characters"),
        ("--filesystem=xdg-documents/[ab]", "glob characters"),
        ("--filesystem=~/a\nb", "control character"),
        ("--persist=.cache\r", "control character"),
        ("--share=network\0--filesystem=host", "NUL"),
    ];
    for (permission, why) in cases {
        // In the metadata, as TOML escapes.
        let escaped: String = permission
            .chars()
            .map(|c| match c {
                '\n' => "\\n".to_owned(),
                '\r' => "\\r".to_owned(),
                '\0' => "\\u0000".to_owned(),
                c => c.to_string(),
            })
            .collect();
        let app = world.probe_app(ID, &[]);
        world.write(
            &app.join("metadata.toml"),
            &format!(
                "id = \"{ID}\"\nname = \"Probe\"\ncommand = \"appbox-probe\"\nruntime = \"host\"\npermissions = [\"{escaped}\"]\n"
            ),
        );
        refused(&world, &app, &[], &[&world.home], why);
        // On the command line (argv cannot hold a NUL byte).
        if !permission.contains('\0') {
            let app = world.probe_app(ID, &[]);
            refused(&world, &app, &[permission], &[&world.home], why);
        }
    }
}

/// CVE-2022-21682: a deny override (`--nofilesystem=home`, stored with
/// `appbox override`) takes away every grant the app's metadata made inside
/// home, not only the one it names; a grant elsewhere is kept.
#[test]
fn a_deny_override_removes_every_inherited_grant_inside_it() {
    let world = World::new();
    let music = world.home_dir("Music");
    let documents = world.home_dir("Documents");
    let app = world.probe_app(
        ID,
        &[
            "--filesystem=home:ro",
            "--filesystem=~/Music",
            "--filesystem=xdg-documents",
            "--filesystem=xdg-run/appbox-e2e-kept",
        ],
    );
    let kept = world.runtime_dir.join("appbox-e2e-kept");
    std::fs::create_dir(&kept).unwrap();
    chown(&kept, world.user);
    let kept_inside = format!("/run/user/{}/appbox-e2e-kept", world.user.uid);
    let granted = |what: &str, path: &Path| format!("{what}={}", path.display());
    world
        .probe(
            &app,
            &[],
            &[
                &granted("readonly", &world.home),
                &granted("writable", &music),
                &granted("writable", &documents),
                &format!("writable={kept_inside}"),
            ],
        )
        .assert_all_ok();

    let output = world
        .appbox(["override", ID, "--nofilesystem=home"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    world
        .probe(
            &app,
            &[],
            &[
                &granted("hidden", &music),
                &granted("hidden", &documents),
                &granted("hidden", &world.home.join(".config")),
                &format!("writable={kept_inside}"),
            ],
        )
        .assert_all_ok();
}
