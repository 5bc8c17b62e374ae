//! The store window's worker does real store work: a repository published
//! and signed with the store library, a remote that trusts its key, and then
//! LoadCatalog, Install and Uninstall through the worker thread, as the
//! window sends them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use appbox::store::build::publish_tree;
use appbox::store::catalog::{Entry, EntryKind};
use appbox::store::remotes::{Remote, Remotes};
use appbox::store::sign::SecretKey;
use appbox_gui::worker::{self, Reply, Request};

const ID: &str = "org.appbox.GuiTool";

fn publish(root: &Path, key: &SecretKey) -> PathBuf {
    let tree = root.join("tree");
    std::fs::create_dir_all(tree.join("files/bin")).unwrap();
    std::fs::create_dir_all(tree.join("export")).unwrap();
    std::fs::write(
        tree.join("metadata.toml"),
        format!("id = \"{ID}\"\nname = \"Tool\"\ncommand = \"tool\"\nruntime = \"host\"\npermissions = [\"--share=network\"]\n"),
    )
    .unwrap();
    std::fs::copy("/usr/bin/true", tree.join("files/bin/tool")).unwrap();
    let entry = Entry {
        id: ID.into(),
        kind: EntryKind::App,
        name: "Tool".into(),
        summary: "Does nothing, well".into(),
        description: "A tool for the store window's tests.".into(),
        version: "1.0".into(),
        license: "MIT".into(),
        runtime: "host".into(),
        permissions: vec!["--share=network".into()],
        icon: None,
        installed_size: 1,
        published: None,
    };
    let repo = root.join("srv/repo");
    publish_tree(&repo, &tree, &entry, Some(key)).unwrap();
    repo
}

/// Replies until the next catalog, which ends every request's answer.
fn until_catalog(
    replies: &async_channel::Receiver<Reply>,
) -> (Vec<Reply>, Vec<(String, Option<String>)>) {
    let mut before = Vec::new();
    loop {
        let reply = std::thread::scope(|scope| {
            let waiter = scope.spawn(|| replies.recv_blocking());
            let start = std::time::Instant::now();
            while !waiter.is_finished() {
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "the worker did not answer"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
            waiter.join().unwrap().expect("the worker is alive")
        });
        match reply {
            Reply::Catalog { items, failures } => {
                assert!(failures.is_empty(), "{failures:?}");
                let apps = items
                    .into_iter()
                    .map(|item| (item.entry.id, item.installed))
                    .collect();
                return (before, apps);
            }
            Reply::Failed(error) => panic!("the store failed: {error}"),
            other => before.push(other),
        }
    }
}

#[test]
fn the_worker_installs_and_removes_an_app() {
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
    let repo = publish(&root, &key);
    let remotes_file = home.join(".config/appbox/remotes.toml");
    std::fs::create_dir_all(remotes_file.parent().unwrap()).unwrap();
    let mut remotes = Remotes::load(&remotes_file).unwrap();
    remotes
        .add(
            "local",
            Remote::new(&format!("file://{}", repo.display()), &[key.public()], true),
        )
        .unwrap();
    remotes.save(&remotes_file).unwrap();

    let (worker, replies, thread) = worker::start();
    worker.send(Request::LoadCatalog);
    let (_, apps) = until_catalog(&replies);
    assert_eq!(apps, [(ID.to_owned(), None)]);

    worker.send(Request::Install {
        remote: "local".into(),
        id: ID.into(),
    });
    let (replies_before, apps) = until_catalog(&replies);
    let finished = replies_before
        .iter()
        .find_map(|r| match r {
            Reply::Finished { request, error } => Some((request.clone(), error.clone())),
            _ => None,
        })
        .expect("a Finished reply");
    assert_eq!(finished.1, None, "{replies_before:?}");
    assert_eq!(apps, [(ID.to_owned(), Some("1.0".to_owned()))]);
    let deployed = home.join(format!(
        ".local/share/appbox/app/{ID}/current/metadata.toml"
    ));
    assert!(deployed.is_file(), "{} is missing", deployed.display());

    // An app the remote does not have: the error names it.
    worker.send(Request::Install {
        remote: "local".into(),
        id: "org.appbox.Missing".into(),
    });
    let (replies_before, _) = until_catalog(&replies);
    let error = replies_before
        .iter()
        .find_map(|r| match r {
            Reply::Finished { error, .. } => error.clone(),
            _ => None,
        })
        .expect("an error");
    assert!(error.contains("org.appbox.Missing"), "{error}");

    worker.send(Request::Uninstall { id: ID.into() });
    let (_, apps) = until_catalog(&replies);
    assert_eq!(apps, [(ID.to_owned(), None)]);
    assert!(!deployed.exists());
    // Dropping the window's handle ends the thread, which says so by
    // closing the channel.
    drop(worker);
    assert!(replies.recv_blocking().is_err());
    assert!(thread.finish(Duration::from_secs(10)));
    let _ = std::fs::remove_dir_all(&root);
}
