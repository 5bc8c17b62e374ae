//! The user's permission overrides (`appbox override`, like `flatpak
//! override`) apply to every run, before the command line's, until reset.

use std::path::PathBuf;
use std::process::Output;

use appbox_tests::World;

const ID: &str = "org.appbox.Probe";

fn text(output: &Output) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// `appbox ARGS` as the world's user, which must succeed; returns its stdout.
fn appbox_ok(world: &World, args: &[&str]) -> String {
    let output = world.appbox(args).output().expect("run appbox");
    assert!(
        output.status.success(),
        "appbox {args:?}: {}",
        text(&output)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn shown(world: &World) -> Vec<String> {
    let json = appbox_ok(world, &["override", "--show", "--json", ID]);
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

fn overrides_file(world: &World) -> PathBuf {
    world
        .home
        .join(".config/appbox/overrides")
        .join(format!("{ID}.json"))
}

#[test]
fn stored_overrides_apply_to_every_run_until_reset() {
    let world = World::new();
    let app = world.probe_app(ID, &[]);
    world.probe(&app, &[], &["net-none"]).assert_all_ok();
    assert!(shown(&world).is_empty());

    appbox_ok(&world, &["override", ID, "--share=network"]);
    assert_eq!(shown(&world), ["--share=network"]);
    assert_eq!(
        appbox_ok(&world, &["override", ID]),
        "--share=network\n",
        "no options show the overrides"
    );
    // A plain run has the host's network now.
    world.probe(&app, &[], &["net-host"]).assert_all_ok();
    // The command line still wins, for that run only.
    world
        .probe(&app, &["--unshare=network"], &["net-none"])
        .assert_all_ok();
    world.probe(&app, &[], &["net-host"]).assert_all_ok();

    // A later override cancels an earlier one; the list stays minimal.
    appbox_ok(
        &world,
        &["override", ID, "--share=ipc", "--unshare=network"],
    );
    assert_eq!(shown(&world), ["--share=ipc", "--unshare=network"]);
    world.probe(&app, &[], &["net-none"]).assert_all_ok();

    appbox_ok(&world, &["override", ID, "--share=network"]);
    appbox_ok(&world, &["override", "--reset", ID]);
    assert!(shown(&world).is_empty());
    assert!(!overrides_file(&world).exists());
    world.probe(&app, &[], &["net-none"]).assert_all_ok();
}

#[test]
fn a_damaged_overrides_file_stops_the_run() {
    let world = World::new();
    let app = world.probe_app(ID, &[]);
    appbox_ok(&world, &["override", ID, "--share=network"]);
    let file = overrides_file(&world);
    std::fs::write(&file, "[\"--share=network\",\n \"--share=moon\"]\n").unwrap();

    let output = world.run_app(&app, &[], &["net-none"]).output().unwrap();
    assert!(!output.status.success(), "{}", text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&file.display().to_string()), "{stderr}");
    assert!(stderr.contains("line 2"), "{stderr}");
    assert!(
        stderr.contains(&format!("appbox override --reset {ID}")),
        "{stderr}"
    );

    // `--show` says the same; a reset makes the app run again.
    let output = world.appbox(["override", ID]).output().unwrap();
    assert!(!output.status.success(), "{}", text(&output));
    appbox_ok(&world, &["override", "--reset", ID]);
    world.probe(&app, &[], &["net-none"]).assert_all_ok();
}

#[test]
fn bad_overrides_are_refused_and_change_nothing() {
    let world = World::new();
    appbox_ok(&world, &["override", ID, "--socket=x11"]);
    for args in [
        &["override", ID, "--share=moon"][..],
        &["override", "not-an-id", "--share=network"][..],
        &["override", ID, "--filesystem=/proc"][..],
    ] {
        let output = world.appbox(args).output().unwrap();
        assert!(!output.status.success(), "{args:?}: {}", text(&output));
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("appbox: error:"),
            "{}",
            text(&output)
        );
    }
    assert_eq!(shown(&world), ["--socket=x11"]);
}
