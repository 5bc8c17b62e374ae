//! The whole bundle import (`bundle::import_bundle`): the file is opened,
//! decompressed and its tar stream checked (`ostree_tar.rs`), then handed to
//! ostree-ext's importer and libostree, which write the objects into a
//! scratch bare-user-only repository, and the commit is checked complete and
//! its catalog entry read.
//!
//! The input is the tar stream (the harness gzips it, so mutations reach the
//! tar checks instead of breaking the gzip checksum), or a whole bundle file
//! when it starts with the gzip magic. The scratch repository lives in a
//! directory of this process under the system temp dir; it is made anew
//! after every input that wrote to it, so each input meets an empty one.
#![no_main]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use appbox::store::bundle::import_bundle;
use appbox::store::repo::{Mode, Repo};
use flate2::write::GzEncoder;
use libfuzzer_sys::fuzz_target;

struct Scratch {
    dir: PathBuf,
    repo: Option<Repo>,
}

impl Scratch {
    fn repo_path(&self) -> PathBuf {
        self.dir.join("repo")
    }

    fn repo(&mut self) -> &Repo {
        let path = self.repo_path();
        self.repo.get_or_insert_with(|| {
            Repo::open_or_create(&path, Mode::BareUserOnly).expect("scratch repository")
        })
    }

    /// Whether the last import left anything in the repository.
    fn dirty(&self) -> bool {
        let path = self.repo_path();
        let has_entries = |dir: &Path| fs::read_dir(dir).is_ok_and(|mut d| d.next().is_some());
        has_entries(&path.join("objects")) || has_entries(&path.join("state"))
    }

    fn reset(&mut self) {
        self.repo = None;
        fs::remove_dir_all(self.repo_path()).expect("remove the scratch repository");
    }
}

static SCRATCH: Mutex<Option<Scratch>> = Mutex::new(None);

const PREFIX: &str = "appbox-fuzz-bundle-";

/// The scratch directories of processes that are gone (libFuzzer's fork
/// mode starts a process per job, and none of them cleans up at exit).
fn remove_stale_scratch() {
    let Ok(dir) = fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        if pid.parse::<u32>().is_ok() && !Path::new("/proc").join(pid).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut guard = SCRATCH.lock().unwrap_or_else(|e| e.into_inner());
    let scratch = guard.get_or_insert_with(|| {
        remove_stale_scratch();
        let dir = std::env::temp_dir().join(format!("{PREFIX}{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("scratch directory");
        Scratch { dir, repo: None }
    });
    let file = scratch.dir.join("input.bundle");
    let bytes = if data.starts_with(&[0x1f, 0x8b]) {
        data.to_vec()
    } else {
        let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).expect("gzip");
        gz.finish().expect("gzip")
    };
    fs::write(&file, &bytes).expect("write the input");

    let repo = scratch.repo();
    let result = import_bundle(repo, &file);
    if std::env::var_os("APPBOX_FUZZ_DEBUG").is_some() {
        eprintln!("{result:?}");
    }
    match result {
        Ok(imported) => {
            assert!(imported.commit.len() == 64, "{imported:?}");
            assert!(
                imported.ref_name.contains(&imported.entry.id),
                "{imported:?}"
            );
        }
        Err(error) => {
            let _ = error.to_string();
        }
    }
    // The import leaves no staging file behind, whatever happened.
    let tmp = scratch.repo_path().join("tmp");
    if let Ok(dir) = fs::read_dir(&tmp) {
        for entry in dir.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            assert!(!name.starts_with("appbox-bundle-"), "left behind: {name}");
        }
    }
    if scratch.dirty() {
        scratch.reset();
    }
});
