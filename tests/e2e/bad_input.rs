//! Bad input gets a clear error naming what was wrong, and nothing on the host
//! changes. Planted symlinks in the app's data are refused (CVE-2024-42472,
//! GHSA-8688-9x26-hhxj), and so is a mount point behind a symlink (CVE-2026-87766).

use std::path::{Path, PathBuf};

use appbox_tests::{chown, World};

/// Every path under `dir`, with its kind, to compare the host before and after.
fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let kind = if meta.file_type().is_symlink() {
            format!("link -> {}", std::fs::read_link(&path).unwrap().display())
        } else if meta.is_dir() {
            "dir".to_owned()
        } else {
            format!("file {}", meta.len())
        };
        out.push((path.clone(), kind));
        if meta.is_dir() {
            out.extend(snapshot(&path));
        }
    }
    out.sort();
    out
}

struct Refusal {
    stderr: String,
}

/// Runs `appbox run --app-dir APP EXTRA...`, which must fail without changing HOME.
fn refused(world: &World, app: &Path, extra: &[&str]) -> Refusal {
    let before = snapshot(&world.home);
    let mut args = vec!["run", "--app-dir", app.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["--", "print=ran"]);
    let output = world.appbox(&args).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "expected a refusal, got {stdout}");
    assert!(!stdout.contains("ran"), "the app ran: {stdout}");
    assert!(stderr.starts_with("appbox: error: "), "{stderr}");
    assert_eq!(before, snapshot(&world.home), "HOME changed: {stderr}");
    Refusal { stderr }
}

impl Refusal {
    fn says(&self, words: &[&str]) {
        for word in words {
            assert!(
                self.stderr.contains(word),
                "expected {word:?} in:\n{}",
                self.stderr
            );
        }
    }
}

fn app_with_metadata(world: &World, metadata: &str) -> PathBuf {
    let app = world.probe_app("org.appbox.Probe", &[]);
    world.write(&app.join("metadata.toml"), metadata);
    app
}

const GOOD: &str = r#"id = "org.appbox.Probe"
name = "Probe"
command = "appbox-probe"
runtime = "host"
permissions = []
"#;

#[test]
fn malformed_metadata_is_refused_with_file_and_problem() {
    let world = World::new();
    let app = app_with_metadata(&world, "id = \"org.appbox.Probe\"\nname = [");
    refused(&world, &app, &[]).says(&["metadata.toml", "TOML"]);
    let app = app_with_metadata(&world, &format!("{GOOD}colour = \"red\"\n"));
    refused(&world, &app, &[]).says(&["metadata.toml", "unknown field `colour`"]);
}

#[test]
fn unknown_permissions_are_refused_with_the_field() {
    let world = World::new();
    let app = app_with_metadata(&world, &GOOD.replace("[]", "[\"--socket=x12\"]"));
    refused(&world, &app, &[]).says(&["field `permissions[0]`", "x12"]);
    let app = world.probe_app("org.appbox.Probe", &[]);
    refused(&world, &app, &["--device=gpu"]).says(&["--device=gpu", "gpu"]);
}

#[test]
fn bad_ids_are_refused() {
    let world = World::new();
    for id in [
        "../x",
        "org.example",
        "org.ex\\u001bample.App",
        "org.exa\\nmple.App",
    ] {
        let app = app_with_metadata(&world, &GOOD.replace("org.appbox.Probe", id));
        refused(&world, &app, &[]).says(&["field `id`"]);
    }
    let output = world.appbox(["run", "../x"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("app id \"../x\""));
}

#[test]
fn control_characters_and_escapes_are_refused() {
    let world = World::new();
    let app = app_with_metadata(&world, &GOOD.replace("\"Probe\"", "\"Pro\\u0000be\""));
    refused(&world, &app, &[]).says(&["field `name`", "NUL"]);
    let app = app_with_metadata(&world, &GOOD.replace("\"Probe\"", "\"\\u001b[2J\""));
    refused(&world, &app, &[]).says(&["field `name`", "escape"]);
    let app = world.probe_app("org.appbox.Probe", &[]);
    refused(&world, &app, &["--env=X=\u{1b}[31m"]).says(&["escape"]);
}

#[test]
fn paths_with_dotdot_are_refused() {
    let world = World::new();
    let app = world.probe_app("org.appbox.Probe", &[]);
    refused(&world, &app, &["--filesystem=~/../../etc"]).says(&["'..' is not allowed"]);
    refused(&world, &app, &["--filesystem=/srv/../etc:ro"]).says(&["'..' is not allowed"]);
    refused(&world, &app, &["--persist=../.ssh"]).says(&["'..' is not allowed"]);
    refused(&world, &app, &["--filesystem=/usr"]).says(&["reserved"]);
}

#[test]
fn a_missing_runtime_or_app_is_named() {
    let world = World::new();
    let app = app_with_metadata(&world, &GOOD.replace("\"host\"", "\"org.appbox.Platform\""));
    refused(&world, &app, &[]).says(&["runtime org.appbox.Platform", "not installed"]);
    let output = world
        .appbox(["run", "org.example.Missing"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr.contains("org.example.Missing is not installed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("--app-dir"),
        "the error says what to do next: {stderr}"
    );
}

/// The app's data dir, or a directory in it, replaced by a symlink to somewhere
/// it must not reach: the next launch refuses and leaves the target alone.
#[test]
fn a_symlinked_app_data_dir_is_refused() {
    let world = World::new();
    let app = world.probe_app("org.appbox.Probe", &[]);
    let ssh = world.home_dir(".ssh");
    world.home_dir(".var/app");
    let data = world.home.join(".var/app/org.appbox.Probe");
    std::os::unix::fs::symlink(&ssh, &data).unwrap();
    chown(&data, world.user);
    refused(&world, &app, &[]).says(&["symbolic link", "org.appbox.Probe"]);

    std::fs::remove_file(&data).unwrap();
    world.home_dir(".var/app/org.appbox.Probe");
    for sub in ["data", "config", "cache"] {
        let link = data.join(sub);
        std::os::unix::fs::symlink("/", &link).unwrap();
        chown(&link, world.user);
        refused(&world, &app, &[]).says(&["symbolic link", sub]);
        std::fs::remove_file(&link).unwrap();
    }
}

/// A grant mounted inside a persisted directory: the mount point lies in the
/// app's own data, where the app planted a symlink. Mounting must not follow it.
#[test]
fn a_mount_point_behind_a_symlink_is_refused() {
    let world = World::new();
    let app = world.probe_app("org.appbox.Probe", &[]);
    world.home_dir(".mozilla/plugins");
    let persisted = world.home_dir(".var/app/org.appbox.Probe/.mozilla");
    let planted = persisted.join("plugins");
    std::os::unix::fs::symlink("/etc", &planted).unwrap();
    chown(&planted, world.user);
    refused(
        &world,
        &app,
        &["--persist=.mozilla", "--filesystem=~/.mozilla/plugins:ro"],
    )
    .says(&["mount point", "symbolic link"]);
}

/// A granted path with a symlink in it is refused rather than followed.
#[test]
fn a_granted_path_through_a_symlink_is_refused() {
    let world = World::new();
    let app = world.probe_app("org.appbox.Probe", &[]);
    let link = world.home.join("Documents");
    std::os::unix::fs::symlink("/etc", &link).unwrap();
    chown(&link, world.user);
    refused(&world, &app, &["--filesystem=xdg-documents"]).says(&["symbolic link"]);
}

#[test]
fn bad_command_lines_get_usage_errors() {
    let world = World::new();
    let output = world.appbox(["run"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("Usage"));
    let output = world.appbox(["frobnicate"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let output = world.appbox(["run", "--help"]).output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--app-dir",
        "--command",
        "--filesystem",
        "--socket",
        "--share",
    ] {
        assert!(help.contains(flag), "{flag} missing from help:\n{help}");
    }
    let app = world.probe_app("org.appbox.Probe", &[]);
    let output = world
        .appbox([
            "run",
            "--print-plan",
            "--app-dir",
            app.to_str().unwrap(),
            "--socket=x11",
        ])
        .output()
        .unwrap();
    let plan = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        plan.contains("\"argv\"") && plan.contains("/app/bin/appbox-probe"),
        "{plan}"
    );
    assert!(
        !world.home.join(".var").exists(),
        "printing the plan runs nothing and creates nothing"
    );
    for command in [
        &["--help"][..],
        &["ps", "--help"],
        &["kill", "--help"],
        &["enter", "--help"],
        &["completions", "--help"],
    ] {
        let output = world.appbox(command).output().unwrap();
        assert!(output.status.success(), "{command:?}");
        assert!(String::from_utf8_lossy(&output.stdout).contains("Usage"));
    }
    let output = world.appbox(["completions", "bash"]).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains("complete"));
    let output = world.appbox(["man"]).output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).contains(".TH appbox"));
}

/// A FIFO (or a device) planted where the X authority file should be cannot
/// hang the launch.
#[test]
fn a_planted_fifo_as_xauthority_does_not_hang_the_launch() {
    let world = World::new();
    let fifo = world.home.join(".Xauthority");
    let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    chown(&fifo, world.user);
    let app = world.probe_app("org.appbox.Probe", &["--socket=x11"]);
    let mut child = world
        .run_app(&app, &[], &["print=ran"])
        .env("DISPLAY", ":97")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > std::time::Duration::from_secs(10) {
            let _ = child.kill();
            panic!("the launch hung on a FIFO");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(String::from_utf8_lossy(&output.stdout).contains("ran"));
    assert!(
        stderr.contains("cannot read the X authority file"),
        "{stderr}"
    );
}
