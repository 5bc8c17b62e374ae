//! The store window's worker does real store work: a repository published
//! and signed with the store library, a remote added with its key file, and
//! then every request through the worker thread, as the window sends them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use appbox::hostfacts::HostFacts;
use appbox::store::build::publish_tree;
use appbox::store::catalog::{Entry, EntryKind};
use appbox::store::sign::SecretKey;
use appbox_gui::worker::{self, Outcome, Reply, Request, Snapshot};

const ID: &str = "org.appbox.GuiTool";

/// Publishes version `version` of the tool, asking for `permissions`.
fn publish(root: &Path, key: &SecretKey, version: &str, permissions: &[&str]) -> PathBuf {
    let tree = root.join("tree");
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(tree.join("files/bin")).unwrap();
    std::fs::create_dir_all(tree.join("export")).unwrap();
    let quoted: Vec<String> = permissions.iter().map(|p| format!("\"{p}\"")).collect();
    std::fs::write(
        tree.join("metadata.toml"),
        format!(
            "id = \"{ID}\"\nname = \"Tool\"\ncommand = \"tool\"\nruntime = \"host\"\npermissions = [{}]\n",
            quoted.join(", ")
        ),
    )
    .unwrap();
    std::fs::copy("/usr/bin/true", tree.join("files/bin/tool")).unwrap();
    // Content that differs between versions, so an update pulls something.
    std::fs::write(tree.join("files/version"), version).unwrap();
    let entry = Entry {
        id: ID.into(),
        kind: EntryKind::App,
        name: "Tool".into(),
        summary: "Does nothing, well".into(),
        description: "A tool for the store window's tests.".into(),
        version: version.into(),
        license: "MIT".into(),
        runtime: "host".into(),
        permissions: permissions.iter().map(|p| p.to_string()).collect(),
        icon: None,
        installed_size: 1,
        published: None,
    };
    let repo = root.join("srv/repo");
    publish_tree(&repo, &tree, &entry, Some(key)).unwrap();
    repo
}

/// Waits for the next reply, failing after a minute. It polls rather than
/// blocks, so the test itself can give up on a worker that hangs.
fn next(replies: &async_channel::Receiver<Reply>) -> Reply {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match replies.try_recv() {
            Ok(reply) => return reply,
            Err(async_channel::TryRecvError::Empty) => {}
            Err(async_channel::TryRecvError::Closed) => {
                panic!("the worker ended without answering")
            }
        }
        if std::time::Instant::now() >= deadline {
            panic!("the worker did not answer within a minute");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Replies until the next snapshot, which ends every request's answer, and
/// the outcome among them (Refresh has none).
fn until_snapshot(replies: &async_channel::Receiver<Reply>) -> (Option<Outcome>, Snapshot) {
    let mut outcome = None;
    loop {
        match next(replies) {
            Reply::Snapshot(snapshot) => return (outcome, *snapshot),
            Reply::Failed(error) => panic!("the store failed: {error}"),
            Reply::Finished { outcome: o, .. } => outcome = Some(o),
            Reply::Progress { .. } => {}
        }
    }
}

fn catalog(snapshot: &Snapshot) -> Vec<(String, Option<String>)> {
    assert!(snapshot.failures.is_empty(), "{:?}", snapshot.failures);
    snapshot
        .catalog
        .iter()
        .map(|item| (item.entry.id.clone(), item.installed.clone()))
        .collect()
}

#[test]
fn the_worker_installs_updates_cancels_and_removes() {
    let root = std::env::temp_dir().join(format!("appbox-gui-worker-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (home, run) = (root.join("home"), root.join("run"));
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&run).unwrap();
    std::fs::set_permissions(&run, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    // The only test of this binary: the environment is its own.
    std::env::set_var("HOME", &home);
    std::env::set_var("XDG_RUNTIME_DIR", &run);
    for var in ["XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"] {
        std::env::remove_var(var);
    }
    let key = SecretKey::generate();
    let repo = publish(&root, &key, "1.0", &["--share=network"]);
    let key_file = root.join("key.pub");
    key.public().write_new(&key_file).unwrap();
    let url = format!("file://{}", repo.display());

    let facts = HostFacts::gather().map_err(|e| appbox::sandbox::chain(&e));
    let (worker, replies, thread) = worker::start(facts);
    worker.send(Request::Refresh);
    let (_, snapshot) = until_snapshot(&replies);
    assert!(snapshot.catalog.is_empty() && snapshot.remotes.is_empty());

    // A remote added with its key file.
    worker.send(Request::AddRemote {
        name: "local".into(),
        url: url.clone(),
        key_file: key_file.clone(),
    });
    let (outcome, snapshot) = until_snapshot(&replies);
    assert_eq!(outcome, Some(Outcome::Done));
    assert_eq!(catalog(&snapshot), [(ID.to_owned(), None)]);
    assert_eq!(snapshot.remotes.len(), 1);
    assert!(snapshot.remotes[0].enabled && snapshot.remotes[0].verify);

    // Cancel pressed before the install starts its pull stops it, and
    // installs nothing.
    let install = Request::Install {
        remote: "local".into(),
        id: ID.into(),
    };
    worker.cancel();
    worker.send(install.clone());
    let (outcome, snapshot) = until_snapshot(&replies);
    assert_eq!(outcome, Some(Outcome::Cancelled));
    assert_eq!(catalog(&snapshot), [(ID.to_owned(), None)]);

    worker.send(install);
    let (outcome, snapshot) = until_snapshot(&replies);
    assert_eq!(outcome, Some(Outcome::Done));
    assert_eq!(
        catalog(&snapshot),
        [(ID.to_owned(), Some("1.0".to_owned()))]
    );
    let deployed = home.join(format!(
        ".local/share/appbox/app/{ID}/current/metadata.toml"
    ));
    assert!(deployed.is_file(), "{} is missing", deployed.display());
    assert_eq!(snapshot.installed.len(), 1);
    assert!(snapshot.installed[0].bytes > 0, "{:?}", snapshot.installed);
    assert_eq!(snapshot.installed[0].data_bytes, Some(0));
    assert!(snapshot.updates.is_empty());

    // An app the remote does not have: the error names it.
    worker.send(Request::Install {
        remote: "local".into(),
        id: "org.appbox.Missing".into(),
    });
    match until_snapshot(&replies).0 {
        Some(Outcome::Failed(error)) => assert!(error.contains("org.appbox.Missing"), "{error}"),
        other => panic!("{other:?}"),
    }

    // A new version that asks for more: Refresh finds it, with the difference.
    publish(
        &root,
        &key,
        "2.0",
        &["--share=network", "--filesystem=home"],
    );
    worker.send(Request::Refresh);
    let (_, snapshot) = until_snapshot(&replies);
    let [plan] = snapshot.updates.as_slice() else {
        panic!("{:?}", snapshot.updates);
    };
    assert_eq!(
        (plan.from_version.as_str(), plan.to_version.as_str()),
        ("1.0", "2.0")
    );
    assert_eq!(plan.added_permissions, ["--filesystem=home"]);
    // A request that changes nothing installed carries the plans forward.
    worker.send(Request::Install {
        remote: "local".into(),
        id: "org.appbox.Missing".into(),
    });
    let (outcome, carried) = until_snapshot(&replies);
    assert!(matches!(outcome, Some(Outcome::Failed(_))), "{outcome:?}");
    assert_eq!(carried.updates, snapshot.updates);
    worker.send(Request::Update {
        plans: snapshot.updates.clone(),
    });
    let (outcome, snapshot) = until_snapshot(&replies);
    assert_eq!(outcome, Some(Outcome::Done));
    assert!(snapshot.updates.is_empty(), "{:?}", snapshot.updates);
    assert_eq!(
        catalog(&snapshot),
        [(ID.to_owned(), Some("2.0".to_owned()))]
    );

    // Removing keeps the data; the Storage page then offers to delete it.
    let data = home.join(format!(".var/app/{ID}/config"));
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("settings"), vec![7u8; 20_000]).unwrap();
    worker.send(Request::DeleteData { id: ID.into() });
    match until_snapshot(&replies).0 {
        Some(Outcome::Failed(error)) => assert!(error.contains("is installed"), "{error}"),
        other => panic!("an installed app's data was deleted: {other:?}"),
    }
    assert!(data.exists());
    worker.send(Request::Uninstall { id: ID.into() });
    let (outcome, snapshot) = until_snapshot(&replies);
    assert_eq!(outcome, Some(Outcome::Done));
    assert_eq!(catalog(&snapshot), [(ID.to_owned(), None)]);
    assert!(!deployed.exists());
    let [leftover] = snapshot.leftover_data.as_slice() else {
        panic!("{:?}", snapshot.leftover_data);
    };
    assert_eq!(leftover.id, ID);
    assert!(leftover.bytes >= 20_000, "{leftover:?}");
    worker.send(Request::DeleteData { id: ID.into() });
    let (outcome, snapshot) = until_snapshot(&replies);
    assert_eq!(outcome, Some(Outcome::Done));
    assert!(snapshot.leftover_data.is_empty());
    assert!(!home.join(format!(".var/app/{ID}")).exists());

    // A disabled remote lists nothing; a removed one is gone.
    worker.send(Request::SetRemoteEnabled {
        name: "local".into(),
        enabled: false,
    });
    let (_, snapshot) = until_snapshot(&replies);
    assert!(snapshot.catalog.is_empty() && !snapshot.remotes[0].enabled);
    worker.send(Request::DeleteRemote {
        name: "local".into(),
    });
    let (outcome, snapshot) = until_snapshot(&replies);
    assert_eq!(outcome, Some(Outcome::Done));
    assert!(snapshot.remotes.is_empty());

    // Dropping the window's handle ends the thread, which says so by
    // closing the channel.
    drop(worker);
    assert!(replies.recv_blocking().is_err());
    assert!(thread.finish(Duration::from_secs(10)));
    let _ = std::fs::remove_dir_all(&root);
}
