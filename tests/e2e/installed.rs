//! `appbox run ID` runs an installed app from its deployment, as the store will
//! lay it out: `~/.local/share/appbox/app/ID/current/` holding `metadata.toml`
//! and `files/`, and runtimes under `runtime/ID/current/files`, which becomes `/usr`.

use std::path::Path;

use appbox_tests::{chown, chown_tree, World};

/// Deploys the probe app as installed, on `runtime`, like the store would.
fn deploy(world: &World, id: &str, runtime: &str) {
    let unpacked = world.probe_app(id, &[]);
    let metadata = std::fs::read_to_string(unpacked.join("metadata.toml"))
        .unwrap()
        .replace("runtime = \"host\"", &format!("runtime = \"{runtime}\""));
    let deployments = world.home_dir(&format!(".local/share/appbox/app/{id}"));
    let commit = deployments.join("0123abcd");
    std::fs::create_dir(&commit).unwrap();
    std::fs::write(commit.join("metadata.toml"), metadata).unwrap();
    copy_tree(&unpacked.join("files"), &commit.join("files"));
    std::os::unix::fs::symlink("0123abcd", deployments.join("current")).unwrap();
    chown_tree(&commit, world.user);
    chown(&deployments.join("current"), world.user);
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

#[test]
fn an_installed_app_runs_by_id() {
    let world = World::new();
    deploy(&world, "org.appbox.Installed", "host");
    let output = world
        .appbox([
            "run",
            "org.appbox.Installed",
            "--",
            "readonly=/app",
            "caps",
            "print=installed",
        ])
        .output()
        .unwrap();
    let report = appbox_tests::ProbeReport::from_output(output);
    report.assert_all_ok();
    assert!(report.stdout.contains("installed"));
}

#[test]
fn an_installed_runtime_becomes_usr() {
    let world = World::new();
    let runtime = world.home_dir(".local/share/appbox/runtime/org.appbox.Platform");
    let files = runtime.join("1/files");
    std::fs::create_dir_all(files.join("share")).unwrap();
    std::fs::write(files.join("share/runtime-marker"), "platform").unwrap();
    std::os::unix::fs::symlink("1", runtime.join("current")).unwrap();
    chown_tree(&runtime, world.user);
    deploy(&world, "org.appbox.OnRuntime", "org.appbox.Platform");
    let output = world
        .appbox([
            "run",
            "org.appbox.OnRuntime",
            "--",
            "file-contains=/usr/share/runtime-marker:platform",
            "readonly=/usr",
            "hidden=/usr/bin/sh",
        ])
        .output()
        .unwrap();
    appbox_tests::ProbeReport::from_output(output).assert_all_ok();
}

/// A deployment whose metadata names another app is refused: the id on disk and
/// the id asked for must agree.
#[test]
fn a_deployment_with_a_foreign_id_is_refused() {
    let world = World::new();
    deploy(&world, "org.appbox.Installed", "host");
    let dir = world.home.join(".local/share/appbox/app/org.appbox.Other");
    std::fs::create_dir_all(dir.parent().unwrap()).unwrap();
    std::fs::rename(
        world
            .home
            .join(".local/share/appbox/app/org.appbox.Installed"),
        &dir,
    )
    .unwrap();
    let output = world.appbox(["run", "org.appbox.Other"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr.contains("deployed as org.appbox.Other"), "{stderr}");
}
