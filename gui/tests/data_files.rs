//! The store's desktop file and metainfo in `data/` pass the tools that
//! desktops and software centres validate them with.

use std::path::{Path, PathBuf};
use std::process::Command;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../data")
        .join(name)
}

fn validate(program: &str, args: &[&str], file: &Path) {
    assert!(
        Path::new(program).exists(),
        "{program} is missing; tests/bootstrap.sh installs it"
    );
    let output = Command::new(program).args(args).arg(file).output().unwrap();
    assert!(
        output.status.success(),
        "{program} {}:\n{}{}",
        file.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_desktop_file_is_valid() {
    validate(
        "/usr/bin/desktop-file-validate",
        &[],
        &data("org.appbox.Store.desktop"),
    );
}

#[test]
fn the_metainfo_is_valid() {
    validate(
        "/usr/bin/appstreamcli",
        &["validate", "--no-net", "--pedantic"],
        &data("org.appbox.Store.metainfo.xml"),
    );
}
