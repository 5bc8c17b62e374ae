//! Documents: a host file granted to a running app appears inside its sandbox
//! at `/run/user/UID/doc/<docid>/<name>`, as a bind mount made from outside
//! (`appbox document-mount`, which the portal runs), and disappears again with
//! `appbox document-unmount`.
//!
//! The app is the probe, sleeping; what it sees is checked with `appbox enter`,
//! which runs host-runtime tools in the same namespaces under the same
//! confinement.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use appbox_tests::{output_with_input, running_as_root, World};

const APP: &str = "org.appbox.Probe";

/// A probe app sleeping in its sandbox, and its instance number.
struct Running<'w> {
    world: &'w World,
    child: Child,
    instance: String,
    /// The uid the app sees, which names its runtime dir.
    uid: u32,
}

impl<'w> Running<'w> {
    fn start(world: &'w World) -> Running<'w> {
        let app = world.probe_app(APP, &[]);
        let child = world
            .run_app(&app, &[], &["sleep=120"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the probe app");
        let instance = wait_for_instance(world);
        let uid = if world.user.is_root() {
            65534
        } else {
            world.user.uid
        };
        Running {
            world,
            child,
            instance,
            uid,
        }
    }

    /// `/run/user/UID/doc` inside the sandbox, or a path below it.
    fn doc(&self, rel: &str) -> String {
        if rel.is_empty() {
            format!("/run/user/{}/doc", self.uid)
        } else {
            format!("/run/user/{}/doc/{rel}", self.uid)
        }
    }

    /// Runs `argv` inside the sandbox, with `input` on its stdin.
    fn enter(&self, argv: &[&str], input: &[u8]) -> Output {
        let mut args = vec!["enter", self.instance.as_str()];
        args.extend_from_slice(argv);
        output_with_input(self.world.appbox(&args), input)
    }

    /// Runs `argv` inside the sandbox and returns its stdout; it must succeed.
    fn enter_ok(&self, argv: &[&str]) -> String {
        let output = self.enter(argv, b"");
        assert!(
            output.status.success(),
            "{argv:?} failed: {}",
            show(&output)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The names in a directory inside the sandbox.
    fn list(&self, dir: &str) -> Vec<String> {
        let mut names: Vec<String> = self
            .enter_ok(&["/usr/bin/ls", "-A", dir])
            .lines()
            .map(str::to_owned)
            .collect();
        names.sort();
        names
    }

    /// `appbox document-mount` for this instance, with `chosen` (opened now,
    /// O_PATH) on descriptor 3; `None` passes no descriptor 3.
    fn mount(
        &self,
        doc_id: &str,
        name: &str,
        path: &Path,
        writable: bool,
        chosen: Option<&Path>,
    ) -> Output {
        let chosen = chosen.map(open_path);
        self.mount_with_fd(doc_id, name, path, writable, chosen)
    }

    fn mount_with_fd(
        &self,
        doc_id: &str,
        name: &str,
        path: &Path,
        writable: bool,
        chosen: Option<OwnedFd>,
    ) -> Output {
        let mut args: Vec<&std::ffi::OsStr> = vec![
            "document-mount".as_ref(),
            "--instance".as_ref(),
            self.instance.as_ref(),
            "--doc-id".as_ref(),
            doc_id.as_ref(),
            "--name".as_ref(),
            name.as_ref(),
            "--path".as_ref(),
            path.as_os_str(),
        ];
        if writable {
            args.push("--writable".as_ref());
        }
        let mut cmd = self.world.appbox(&args);
        if let Some(fd) = &chosen {
            pass_as_fd3(&mut cmd, fd);
        }
        let output = cmd.stdin(Stdio::null()).output().expect("run appbox");
        drop(chosen);
        output
    }

    /// Mounts and asserts success, silently.
    fn mount_ok(&self, doc_id: &str, name: &str, path: &Path, writable: bool) {
        let output = self.mount(doc_id, name, path, writable, Some(path));
        assert!(
            output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
            "document-mount {doc_id} {name}: {}",
            show(&output)
        );
    }

    fn unmount(&self, doc_id: &str) -> Output {
        self.world
            .appbox([
                "document-unmount",
                "--instance",
                &self.instance,
                "--doc-id",
                doc_id,
            ])
            .stdin(Stdio::null())
            .output()
            .expect("run appbox")
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        // The sandbox dies with its launcher.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn show(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Asserts that `output` failed and its stderr says `why`.
fn assert_refused(output: &Output, why: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success() && stderr.contains(why),
        "expected a refusal mentioning {why:?}: {}",
        show(output)
    );
}

fn wait_for_instance(world: &World) -> String {
    let start = Instant::now();
    loop {
        let output = world.appbox(["ps", "--json"]).output().expect("appbox ps");
        assert!(output.status.success(), "{}", show(&output));
        let text = String::from_utf8_lossy(&output.stdout);
        if let Some(instance) = instance_of(&text, APP) {
            return instance;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{APP} never showed up in ps: {text}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The instance number of `app` in `appbox ps --json` output.
fn instance_of(json: &str, app: &str) -> Option<String> {
    let rows: serde_json::Value = serde_json::from_str(json).ok()?;
    rows.as_array()?
        .iter()
        .find(|row| row["application"] == app)
        .and_then(|row| row["instance"].as_str().map(str::to_owned))
}

/// Opens `path` with O_PATH, following symlinks, as the portal does when the
/// user picks a file.
fn open_path(path: &Path) -> OwnedFd {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string; the returned descriptor is checked and then owned.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    assert!(fd >= 0, "open {}", path.display());
    // SAFETY: `fd` was just opened and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Makes `fd` the child's descriptor 3.
fn pass_as_fd3(cmd: &mut Command, fd: &OwnedFd) {
    // A copy above 3, so dup2 always makes a fresh descriptor 3 without
    // close-on-exec, even if `fd` itself is 3.
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own returns a new one or -1.
    let high = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 10) };
    assert!(high >= 10, "duplicate the chosen file's descriptor");
    // SAFETY: `high` was just made and nothing else owns it.
    let high = unsafe { OwnedFd::from_raw_fd(high) };
    let raw = high.as_raw_fd();
    // SAFETY: dup2 is async-signal-safe and allocates nothing; `high` stays
    // open in the parent (moved into the closure) until the command is dropped.
    unsafe {
        cmd.pre_exec(move || {
            let _keep = &high;
            if libc::dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A host directory of the test user's with the files the tests grant, and a
/// secret beside them that must stay out of the sandbox.
fn documents(world: &World) -> PathBuf {
    let dir = world.home_dir("Documents");
    for (name, contents) in [
        ("report.txt", "the report\n"),
        ("notes.txt", "before\n"),
        ("secret.txt", "not granted\n"),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        appbox_tests::chown(&path, world.user);
    }
    dir
}

#[test]
fn a_granted_file_is_readable_and_writable_only_when_granted() {
    let world = World::new();
    let docs = documents(&world);
    let app = Running::start(&world);
    assert_eq!(app.list(&app.doc("")), Vec::<String>::new());

    app.mount_ok("0000000a", "report.txt", &docs.join("report.txt"), false);
    app.mount_ok("0000000b", "notes.txt", &docs.join("notes.txt"), true);
    assert_eq!(app.list(&app.doc("")), ["0000000a", "0000000b"]);

    // Read-only: the host's content, and writes fail.
    let report = app.doc("0000000a/report.txt");
    assert_eq!(app.enter_ok(&["/usr/bin/cat", &report]), "the report\n");
    let output = app.enter(&["/usr/bin/tee", &report], b"overwritten\n");
    assert!(!output.status.success(), "{}", show(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("Read-only file system"),
        "{}",
        show(&output)
    );
    assert_eq!(
        std::fs::read_to_string(docs.join("report.txt")).unwrap(),
        "the report\n"
    );

    // Writable: writes reach the host file, and host changes reach the app.
    let notes = app.doc("0000000b/notes.txt");
    assert_eq!(app.enter_ok(&["/usr/bin/cat", &notes]), "before\n");
    let output = app.enter(&["/usr/bin/tee", &notes], b"written inside\n");
    assert!(output.status.success(), "{}", show(&output));
    assert_eq!(
        std::fs::read_to_string(docs.join("notes.txt")).unwrap(),
        "written inside\n"
    );
    std::fs::write(docs.join("notes.txt"), "changed on the host\n").unwrap();
    assert_eq!(
        app.enter_ok(&["/usr/bin/cat", &notes]),
        "changed on the host\n"
    );

    // The directories are read-only to the app: no temporary files beside the
    // document, and the mount point cannot be renamed or removed.
    assert_eq!(
        app.enter_ok(&["/usr/bin/stat", "-c", "%a", &app.doc("")]),
        "555\n"
    );
    assert_eq!(
        app.enter_ok(&["/usr/bin/stat", "-c", "%a", &app.doc("0000000b")]),
        "555\n"
    );
    let probe = app.enter(
        &[
            "appbox-probe",
            &format!("readonly={}", app.doc("0000000b")),
            &format!("rename-refused={notes}"),
        ],
        b"",
    );
    assert!(probe.status.success(), "{}", show(&probe));
    let output = app.enter(&["/usr/bin/rm", "-f", &notes], b"");
    assert!(!output.status.success(), "{}", show(&output));
    assert!(docs.join("notes.txt").exists());
}

#[test]
fn nothing_else_of_the_host_directory_becomes_visible() {
    let world = World::new();
    let docs = documents(&world);
    let app = Running::start(&world);
    app.mount_ok("0000000a", "report.txt", &docs.join("report.txt"), true);
    assert_eq!(app.list(&app.doc("0000000a")), ["report.txt"]);
    let probe = app.enter(
        &[
            "appbox-probe",
            &format!("hidden={}", docs.display()),
            &format!("hidden={}", docs.join("secret.txt").display()),
            &format!("hidden={}", app.doc("0000000a/secret.txt")),
            &format!("hidden={}", app.doc("0000000a/../secret.txt")),
        ],
        b"",
    );
    assert!(probe.status.success(), "{}", show(&probe));
    // The file mounted is a file, not its directory.
    assert_eq!(
        app.enter_ok(&["/usr/bin/stat", "-c", "%F", &app.doc("0000000a/report.txt")]),
        "regular file\n"
    );
}

#[test]
fn swapped_and_symlinked_paths_are_refused() {
    let world = World::new();
    let docs = documents(&world);
    let app = Running::start(&world);
    let report = docs.join("report.txt");

    // The granted path is a symlink (to a file the user may grant).
    let link = docs.join("link.txt");
    std::os::unix::fs::symlink("report.txt", &link).unwrap();
    appbox_tests::chown(&link, world.user);
    let output = app.mount("0000000a", "link.txt", &link, false, Some(&link));
    assert_refused(&output, "symbolic link");

    // A symlink in a directory of the path.
    let linked_dir = world.home.join("Linked");
    std::os::unix::fs::symlink("Documents", &linked_dir).unwrap();
    appbox_tests::chown(&linked_dir, world.user);
    let via = linked_dir.join("report.txt");
    let output = app.mount("0000000a", "report.txt", &via, false, Some(&report));
    assert_refused(&output, "symbolic link");

    // The chosen file was replaced at its path after the user chose it: by a
    // symlink to a secret, then by another regular file.
    let chosen = open_path(&report);
    std::fs::rename(&report, docs.join("report.old")).unwrap();
    std::os::unix::fs::symlink("secret.txt", &report).unwrap();
    appbox_tests::chown(&report, world.user);
    let output = app.mount_with_fd("0000000a", "report.txt", &report, false, Some(chosen));
    assert_refused(&output, "symbolic link");
    std::fs::remove_file(&report).unwrap();
    let chosen = open_path(&docs.join("report.old"));
    std::fs::write(&report, "an impostor\n").unwrap();
    appbox_tests::chown(&report, world.user);
    let output = app.mount_with_fd("0000000a", "report.txt", &report, false, Some(chosen));
    assert_refused(&output, "no longer the file that was chosen");

    // A chosen descriptor that is not a regular file, and none at all.
    let output = app.mount("0000000a", "report.txt", &report, false, Some(&docs));
    assert_refused(&output, "not a regular file");
    let output = app.mount("0000000a", "report.txt", &report, false, None);
    assert_refused(&output, "descriptor 3 is not open");

    // Ids and names that are not one safe component.
    for (doc_id, name) in [
        ("../../..", "report.txt"),
        ("0000000A", "report.txt"),
        ("0000000a", "../report.txt"),
        ("0000000a", ".."),
        ("0000000a", "a/b"),
    ] {
        let output = app.mount(doc_id, name, &report, false, Some(&report));
        assert_refused(&output, "document");
    }

    // Nothing was mounted, or left behind.
    assert_eq!(app.list(&app.doc("")), Vec::<String>::new());
    // The real file is still grantable.
    app.mount_ok("0000000a", "report.txt", &report, false);
    assert_eq!(
        app.enter_ok(&["/usr/bin/cat", &app.doc("0000000a/report.txt")]),
        "an impostor\n"
    );
}

#[test]
fn the_app_cannot_plant_anything_where_documents_go() {
    let world = World::new();
    let docs = documents(&world);
    let app = Running::start(&world);
    let report = docs.join("report.txt");

    // The documents dir is read-only to the app.
    let output = app.enter(&["/usr/bin/mkdir", &app.doc("0000000a")], b"");
    assert!(!output.status.success(), "{}", show(&output));
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("Permission denied"),
        "{}",
        show(&output)
    );
    let output = app.enter(&["/usr/bin/ln", "-s", "/app", &app.doc("0000000a")], b"");
    assert!(!output.status.success(), "{}", show(&output));

    // An unprivileged sandbox maps one uid, so the app owns the directory the
    // setup made and may make it writable again. Whatever it then plants is
    // refused: a symlink or a file as the document's directory, a symlink or
    // a file as its name.
    app.enter_ok(&["/usr/bin/chmod", "755", &app.doc("")]);
    app.enter_ok(&["/usr/bin/ln", "-s", "/app", &app.doc("0000000a")]);
    app.enter_ok(&["/usr/bin/touch", &app.doc("0000000b")]);
    app.enter_ok(&["/usr/bin/mkdir", &app.doc("0000000c")]);
    app.enter_ok(&[
        "/usr/bin/ln",
        "-s",
        "/tmp/x",
        &app.doc("0000000c/report.txt"),
    ]);
    app.enter_ok(&["/usr/bin/mkdir", &app.doc("0000000d")]);
    app.enter_ok(&["/usr/bin/touch", &app.doc("0000000d/report.txt")]);
    let output = app.mount("0000000a", "report.txt", &report, false, Some(&report));
    assert_refused(&output, "symbolic link, not a directory");
    let output = app.mount("0000000b", "report.txt", &report, false, Some(&report));
    assert_refused(&output, "symbolic link, not a directory");
    let output = app.mount("0000000c", "report.txt", &report, false, Some(&report));
    assert_refused(&output, "already exists");
    let output = app.mount("0000000d", "report.txt", &report, false, Some(&report));
    assert_refused(&output, "already exists");
    assert_eq!(
        app.enter_ok(&["/usr/bin/readlink", &app.doc("0000000a")]),
        "/app\n"
    );
    // A plain directory the app made is used, but made read-only again.
    app.enter_ok(&["/usr/bin/mkdir", "-m", "777", &app.doc("0000000e")]);
    app.mount_ok("0000000e", "report.txt", &report, false);
    assert_eq!(
        app.enter_ok(&["/usr/bin/stat", "-c", "%a", &app.doc("0000000e")]),
        "555\n"
    );
    assert_eq!(
        app.enter_ok(&["/usr/bin/cat", &app.doc("0000000e/report.txt")]),
        "the report\n"
    );
}

/// When root starts the app, the setup's directories belong to root inside
/// and the app (nobody) cannot even make them writable.
#[test]
fn a_sandbox_started_by_root_keeps_the_documents_dir_read_only() {
    if !running_as_root() {
        eprintln!("skipped: the root case needs the tests to run as root");
        return;
    }
    let world = World::as_root();
    let docs = documents(&world);
    // The app runs as nobody: the host file must let others write.
    std::fs::set_permissions(
        docs.join("notes.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o666),
    )
    .unwrap();
    let app = Running::start(&world);
    for argv in [
        vec!["/usr/bin/chmod", "755"],
        vec!["/usr/bin/mkdir"],
        vec!["/usr/bin/touch"],
    ] {
        let target = if argv[0].ends_with("chmod") {
            app.doc("")
        } else {
            app.doc("0000000a")
        };
        let mut argv = argv.clone();
        argv.push(&target);
        let output = app.enter(&argv, b"");
        assert!(!output.status.success(), "{argv:?}: {}", show(&output));
    }
    app.mount_ok("0000000a", "notes.txt", &docs.join("notes.txt"), true);
    let notes = app.doc("0000000a/notes.txt");
    let output = app.enter(&["/usr/bin/tee", &notes], b"from nobody\n");
    assert!(output.status.success(), "{}", show(&output));
    assert_eq!(
        std::fs::read_to_string(docs.join("notes.txt")).unwrap(),
        "from nobody\n"
    );
    assert!(app.unmount("0000000a").status.success());
    assert_eq!(app.list(&app.doc("")), Vec::<String>::new());
}

#[test]
fn document_unmount_takes_the_file_out_of_the_running_sandbox() {
    let world = World::new();
    let docs = documents(&world);
    let app = Running::start(&world);
    app.mount_ok("0000000a", "report.txt", &docs.join("report.txt"), false);
    app.mount_ok("0000000b", "notes.txt", &docs.join("notes.txt"), true);

    let output = app.unmount("0000000a");
    assert!(
        output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
        "{}",
        show(&output)
    );
    assert_eq!(app.list(&app.doc("")), ["0000000b"]);
    let output = app.enter(&["/usr/bin/cat", &app.doc("0000000a/report.txt")], b"");
    assert!(!output.status.success(), "{}", show(&output));
    // The host file is untouched, and the other document stays.
    assert_eq!(
        std::fs::read_to_string(docs.join("report.txt")).unwrap(),
        "the report\n"
    );
    assert_eq!(
        app.enter_ok(&["/usr/bin/cat", &app.doc("0000000b/notes.txt")]),
        "before\n"
    );

    assert_refused(&app.unmount("0000000a"), "not in this sandbox");
    assert_refused(&app.unmount("../../.."), "document id");
    // The same document can be granted again.
    app.mount_ok("0000000a", "report.txt", &docs.join("report.txt"), false);
    assert_eq!(
        app.enter_ok(&["/usr/bin/cat", &app.doc("0000000a/report.txt")]),
        "the report\n"
    );
    // The same file granted again (as after a relaunch) is accepted, and a
    // writable grant makes the mounted document writable.
    let report = docs.join("report.txt");
    let output = app.enter(&["/usr/bin/tee", &app.doc("0000000a/report.txt")], b"x\n");
    assert!(!output.status.success(), "{}", show(&output));
    app.mount_ok("0000000a", "report.txt", &report, true);
    let output = app.enter(
        &["/usr/bin/tee", &app.doc("0000000a/report.txt")],
        b"edited\n",
    );
    assert!(output.status.success(), "{}", show(&output));
    assert_eq!(std::fs::read_to_string(&report).unwrap(), "edited\n");
    // Another file under a taken id is refused until it is unmounted.
    let notes = docs.join("notes.txt");
    let output = app.mount("0000000a", "report.txt", &notes, true, Some(&notes));
    assert_refused(&output, "already exists");
}

/// GLib's save (g_file_replace) writes a temporary file and renames it over
/// the target; renaming over a mount point fails with EBUSY. In a read-only
/// directory it cannot create the temporary file, and falls back to writing
/// in place, which reaches the host file.
#[test]
fn gio_save_writes_through_to_the_host_file() {
    appbox_tests::require_programs(&["/usr/bin/gio"]);
    let world = World::new();
    let docs = documents(&world);
    let app = Running::start(&world);
    app.mount_ok("0000000b", "notes.txt", &docs.join("notes.txt"), true);
    let notes = app.doc("0000000b/notes.txt");
    let output = app.enter(&["/usr/bin/gio", "save", &notes], b"saved by gio\n");
    assert!(output.status.success(), "gio save: {}", show(&output));
    assert_eq!(
        std::fs::read_to_string(docs.join("notes.txt")).unwrap(),
        "saved by gio\n"
    );
    assert_eq!(app.list(&app.doc("0000000b")), ["notes.txt"]);
    // A shorter save leaves nothing of the longer content behind.
    let output = app.enter(&["/usr/bin/gio", "save", &notes], b"short\n");
    assert!(output.status.success(), "gio save: {}", show(&output));
    assert_eq!(
        std::fs::read_to_string(docs.join("notes.txt")).unwrap(),
        "short\n"
    );
    // The read-only directory is what makes this work: when it is writable
    // (the app owns it in an unprivileged sandbox, and may chmod it), GLib
    // writes a temporary file and renames it over the mount point: EBUSY.
    app.enter_ok(&["/usr/bin/chmod", "755", &app.doc("0000000b")]);
    let output = app.enter(&["/usr/bin/gio", "save", &notes], b"renamed\n");
    assert!(
        !output.status.success()
            && String::from_utf8_lossy(&output.stderr).contains("Device or resource busy"),
        "{}",
        show(&output)
    );
    assert_eq!(
        std::fs::read_to_string(docs.join("notes.txt")).unwrap(),
        "short\n"
    );
    // Read-only documents stay unchanged.
    app.mount_ok("0000000a", "report.txt", &docs.join("report.txt"), false);
    let output = app.enter(
        &["/usr/bin/gio", "save", &app.doc("0000000a/report.txt")],
        b"nope\n",
    );
    assert!(!output.status.success(), "{}", show(&output));
    assert_eq!(
        std::fs::read_to_string(docs.join("report.txt")).unwrap(),
        "the report\n"
    );
}
