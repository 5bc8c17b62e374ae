//! The store end to end: build the sample apps into a signed OSTree repo,
//! serve it with a real nginx, add it as a remote, install, run, uninstall;
//! and refuse remotes and commits that are not signed by a trusted key.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use appbox_tests::{chown_tree, make_readable, Nginx, World};

fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests")
}

fn text(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn ok(world: &World, args: &[&str]) -> Output {
    let output = world.appbox(args).stdin(Stdio::null()).output().unwrap();
    assert!(
        output.status.success(),
        "appbox {args:?} failed: {}",
        text(&output)
    );
    output
}

fn fails(world: &World, args: &[&str]) -> String {
    let output = world.appbox(args).stdin(Stdio::null()).output().unwrap();
    assert!(
        !output.status.success(),
        "appbox {args:?} should fail: {}",
        text(&output)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A publisher's side: a key pair and a repo with the sample apps, built as
/// the test user from a copy of `manifests/`.
struct Published {
    repo: PathBuf,
    public_key: PathBuf,
    secret_key: PathBuf,
}

fn publish(world: &World, ids: &[&str]) -> Published {
    let source = world.root.join("manifests");
    copy_dir(&manifests_dir(), &source);
    make_readable(&source);
    chown_tree(&source, world.user);
    let keys = world.root.join("keys");
    std::fs::create_dir(&keys).unwrap();
    chown_tree(&keys, world.user);
    let prefix = keys.join("publisher");
    ok(world, &["repo", "keygen", prefix.to_str().unwrap()]);
    let published = Published {
        repo: world.root.join("srv/repo"),
        public_key: keys.join("publisher.pub"),
        secret_key: keys.join("publisher.secret"),
    };
    std::fs::create_dir(world.root.join("srv")).unwrap();
    chown_tree(&world.root.join("srv"), world.user);
    for id in ids {
        let manifest = source.join(format!("{id}.toml"));
        ok(
            world,
            &[
                "build",
                manifest.to_str().unwrap(),
                "--repo",
                published.repo.to_str().unwrap(),
                "--sign-key",
                published.secret_key.to_str().unwrap(),
            ],
        );
    }
    published
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn store_dir(world: &World) -> PathBuf {
    world.home.join(".local/share/appbox")
}

#[test]
fn publish_install_run_and_uninstall_over_http() {
    let world = World::new();
    let published = publish(&world, &["org.appbox.Wc", "org.appbox.Fetch"]);
    let nginx = Nginx::serve(&world, &world.root.join("srv"));
    let url = nginx.url("repo");

    ok(
        &world,
        &[
            "remote-add",
            "test",
            &url,
            "--sign-pubkey",
            published.public_key.to_str().unwrap(),
        ],
    );
    let listing = ok(&world, &["remote-ls", "test", "--json"]);
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.contains("\"org.appbox.Wc\"") && listing.contains("\"org.appbox.Fetch\""),
        "{listing}"
    );
    assert!(
        listing.contains("--share=network"),
        "Fetch's permission is in the catalog: {listing}"
    );

    let installed = ok(&world, &["install", "test", "org.appbox.Wc"]);
    assert!(String::from_utf8_lossy(&installed.stdout).contains("Installed org.appbox.Wc"));
    assert!(
        nginx.access_log().contains("/repo/summary"),
        "the summary came over HTTP"
    );

    // The installed app runs in the sandbox, from its deployment.
    let mut child = world
        .appbox(["run", "org.appbox.Wc"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"one two\nthree\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", text(&output));
    let counts: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(counts[..3], ["2", "3", "14"], "{}", text(&output));

    let list = ok(&world, &["list", "--json"]);
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(
        list.contains("\"org.appbox.Wc\"") && !list.contains("org.appbox.Fetch"),
        "{list}"
    );
    let info = ok(&world, &["info", "org.appbox.Wc"]);
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
    assert!(validate.status.success(), "{}", text(&validate));

    ok(&world, &["uninstall", "org.appbox.Wc"]);
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
    let published = publish(&world, &["org.appbox.Wc"]);
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
    ok(&world, &["repo", "keygen", other.to_str().unwrap()]);
    ok(
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
    ok(
        &world,
        &[
            "remote-add",
            "test",
            &url,
            "--sign-pubkey",
            published.public_key.to_str().unwrap(),
        ],
    );
    let commitmeta: Vec<PathBuf> = appbox_tests::walk(&published.repo.join("objects"))
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "commitmeta"))
        .collect();
    assert_eq!(commitmeta.len(), 1, "{commitmeta:?}");
    let mut bytes = std::fs::read(&commitmeta[0]).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 0xff;
    std::fs::write(&commitmeta[0], bytes).unwrap();
    let error = fails(&world, &["install", "test", "org.appbox.Wc"]);
    assert!(error.contains("is not signed by a trusted key"), "{error}");
    assert!(!store_dir(&world).join("app/org.appbox.Wc").exists());
    assert!(
        !nginx.access_log().contains(".filez"),
        "no file content was fetched for an unverified commit:\n{}",
        nginx.access_log()
    );

    // --no-verify is an explicit choice, and then the damaged signature is not checked.
    ok(&world, &["remote-add", "unverified", &url, "--no-verify"]);
    ok(&world, &["install", "unverified", "org.appbox.Wc"]);
    assert!(store_dir(&world).join("app/org.appbox.Wc/current").exists());
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
        assert!(output.status.success(), "{}", text(&output));
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
