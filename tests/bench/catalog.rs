//! Makes a signed archive repository offering COUNT small apps, for
//! `tests/bench/gui.sh`: each with its own name, summary, description and
//! icon, as a real catalog would have. The apps share one tree, so their
//! objects are stored once and the summary is written once, at the end.
//!
//! Usage: bench-catalog REPO COUNT PUBLIC_KEY_FILE

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use appbox::store::build::{commit_tree, publish_summary};
use appbox::store::catalog::{Entry, EntryKind, Icon};
use appbox::store::sign::SecretKey;

const WORDS: &[&str] = &[
    "Notes", "Paint", "Mail", "Music", "Photo", "Chess", "Maps", "Clock", "Weather", "Terminal",
    "Editor", "Reader", "Player", "Camera", "Calendar", "Contacts", "Files", "Budget", "Recipes",
    "Podcasts",
];
const ADJECTIVES: &[&str] = &[
    "Quick", "Tiny", "Bright", "Calm", "Solid", "Open", "Smart", "Plain", "Happy", "Swift",
    "Clear", "Free", "Neat", "Good", "Simple",
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [repo, count, public] = args.as_slice() else {
        bail!("usage: bench-catalog REPO COUNT PUBLIC_KEY_FILE");
    };
    let count: usize = count.parse().context("COUNT must be a number")?;
    let repo = PathBuf::from(repo);
    let key = SecretKey::generate();
    key.public().write_new(Path::new(public))?;

    let icon_svg = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../manifests/org.appbox.Notes/org.appbox.Notes.svg"),
    )?;
    use base64::Engine;
    let icon = Icon {
        mime: "image/svg+xml".into(),
        data: base64::engine::general_purpose::STANDARD.encode(icon_svg),
    };

    let tree = repo.with_extension("tree");
    let _ = std::fs::remove_dir_all(&tree);
    std::fs::create_dir_all(tree.join("files/bin"))?;
    std::fs::create_dir_all(tree.join("export"))?;
    std::fs::copy("/usr/bin/true", tree.join("files/bin/tool"))?;
    for n in 0..count {
        let word = WORDS[n % WORDS.len()];
        let adjective = ADJECTIVES[(n / WORDS.len()) % ADJECTIVES.len()];
        let id = format!("org.bench.{adjective}{word}{n}");
        let entry = Entry {
            id: id.clone(),
            kind: EntryKind::App,
            name: format!("{adjective} {word} {n}"),
            summary: format!(
                "A {} {} app for the benchmark",
                adjective.to_lowercase(),
                word.to_lowercase()
            ),
            description: format!(
                "Number {n} of {count}: keeps {word} things {adjective} and out of the way."
            ),
            version: "1.0".into(),
            license: "MIT".into(),
            runtime: "host".into(),
            permissions: vec!["--share=network".into()],
            icon: Some(icon.clone()),
            installed_size: 4096,
            published: None,
        };
        std::fs::write(
            tree.join("metadata.toml"),
            format!(
                "id = \"{id}\"\nname = \"{}\"\ncommand = \"tool\"\nruntime = \"host\"\npermissions = [\"--share=network\"]\n",
                entry.name
            ),
        )?;
        commit_tree(&repo, &tree, &entry, Some(&key))?;
    }
    let repo = appbox::store::repo::Repo::open(&repo)?;
    let catalog = publish_summary(&repo, Some(&key))?;
    println!("published {} apps", catalog.entries.len());
    std::fs::remove_dir_all(&tree)?;
    Ok(())
}
