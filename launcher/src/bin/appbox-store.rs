//! `appbox-store`: carries out the store verbs of `appbox`, which execs it for
//! them. It is a separate binary because it links libostree and GLib, which
//! `appbox run` must not load.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

use appbox::appid::AppId;
use appbox::hostfacts::HostFacts;
use appbox::store::build::{self, BuildRequest};
use appbox::store::catalog::EntryKind;
use appbox::store::cli::{BuildArgs, RepoCommand, StoreCommand};
use appbox::store::install::{Event, Events, Installation, Installed};
use appbox::store::remotes::Remote;
use appbox::store::sign::{PublicKey, SecretKey};
use appbox::text::Shown;

#[derive(Parser)]
#[command(name = "appbox", version, about = "The store commands of appbox")]
struct StoreCli {
    #[command(subcommand)]
    command: StoreCommand,
}

fn main() {
    let cli = StoreCli::parse();
    let result = match cli.command {
        StoreCommand::Build(args) => build(args),
        StoreCommand::Repo(RepoCommand::Keygen { prefix }) => keygen(&prefix),
        StoreCommand::RemoteAdd {
            name,
            url,
            sign_pubkey,
            no_verify,
        } => remote_add(&name, &url, sign_pubkey.as_deref(), no_verify),
        StoreCommand::RemoteLs { remote, json } => remote_ls(remote.as_deref(), json),
        StoreCommand::RemoteModify {
            name,
            url,
            sign_pubkey,
            enable,
            disable,
        } => remote_modify(&name, url, sign_pubkey.as_deref(), enable, disable),
        StoreCommand::RemoteDelete { name } => remote_delete(&name),
        StoreCommand::Install { remote, id, json } => install(&remote, &id, json),
        StoreCommand::Uninstall {
            id,
            delete_data,
            unused,
        } => uninstall(id.as_deref(), delete_data, unused),
        StoreCommand::List { json } => list(json),
        StoreCommand::Info { id, json } => info(&id, json),
    };
    if let Err(error) = result {
        let mut stderr = std::io::stderr().lock();
        let _ = writeln!(stderr, "appbox: error: {error}");
        for cause in error.chain().skip(1) {
            let _ = writeln!(stderr, "  caused by: {cause}");
        }
        std::process::exit(1);
    }
}

fn build(args: BuildArgs) -> Result<()> {
    let facts = HostFacts::gather()?;
    let key = args.sign_key.as_deref().map(SecretKey::load).transpose()?;
    let appbox = std::env::current_exe()
        .context("cannot find the appbox-store binary")?
        .with_file_name("appbox");
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| facts.home.join(".cache"));
    let result = build::build(&BuildRequest {
        manifest: &args.manifest,
        repo: &args.repo,
        sign_key: key.as_ref(),
        appbox: &appbox,
        work_root: &cache.join("appbox/build"),
        store: &appbox::deploy::store_dir(&facts),
        running_as_root: facts.is_root(),
    })
    .with_context(|| format!("cannot build {}", args.manifest.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&result)?);
    } else {
        println!(
            "Built {} as {} ({}{})",
            result.ref_name,
            &result.commit[..12],
            if result.signed {
                "signed"
            } else {
                "NOT signed"
            },
            if result.static_delta {
                ", with a static delta from the previous commit"
            } else {
                ""
            }
        );
    }
    Ok(())
}

fn keygen(prefix: &std::path::Path) -> Result<()> {
    let secret_path = with_suffix(prefix, ".secret");
    let public_path = with_suffix(prefix, ".pub");
    let key = SecretKey::generate();
    key.write_new(&secret_path)?;
    key.public().write_new(&public_path)?;
    println!("Secret key: {} (keep it private)", secret_path.display());
    println!("Public key: {}", public_path.display());
    println!("{}", key.public().to_base64());
    Ok(())
}

fn with_suffix(prefix: &std::path::Path, suffix: &str) -> PathBuf {
    let mut name = prefix.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn installation() -> Result<(Installation, HostFacts)> {
    let facts = HostFacts::gather()?;
    let appbox = std::env::current_exe()
        .context("cannot find the appbox-store binary")?
        .with_file_name("appbox");
    let installation = Installation::new(
        appbox::deploy::store_dir(&facts),
        &facts.config_home().join("appbox"),
        appbox,
        facts.runtime_dir.clone(),
    );
    Ok((installation, facts))
}

fn remote_add(name: &str, url: &str, key: Option<&std::path::Path>, no_verify: bool) -> Result<()> {
    let (installation, _) = installation()?;
    let keys = match key {
        Some(path) => PublicKey::load_all(path)?,
        None => Vec::new(),
    };
    let mut remotes = installation.remotes()?;
    remotes.add(name, Remote::new(url, &keys, !no_verify))?;
    remotes.save(installation.remotes_file())?;
    if no_verify {
        eprintln!("appbox: warning: remote {name} is trusted without signatures");
    }
    Ok(())
}

fn remote_modify(
    name: &str,
    url: Option<String>,
    key: Option<&std::path::Path>,
    enable: bool,
    disable: bool,
) -> Result<()> {
    let (installation, _) = installation()?;
    let keys = match key {
        Some(path) => PublicKey::load_all(path)?,
        None => Vec::new(),
    };
    let mut remotes = installation.remotes()?;
    remotes.modify(name, |remote| {
        if let Some(url) = url {
            remote.url = url;
        }
        for key in &keys {
            let key = key.to_base64();
            if !remote.keys.contains(&key) {
                remote.keys.push(key);
            }
        }
        if enable {
            remote.enabled = true;
        }
        if disable {
            remote.enabled = false;
        }
    })?;
    remotes.save(installation.remotes_file())?;
    Ok(())
}

fn remote_delete(name: &str) -> Result<()> {
    let (installation, _) = installation()?;
    let mut remotes = installation.remotes()?;
    remotes.delete(name)?;
    remotes.save(installation.remotes_file())?;
    if let Ok(repo) = installation.repo() {
        repo.delete_remote(name)?;
    }
    Ok(())
}

fn remote_ls(remote: Option<&str>, json: bool) -> Result<()> {
    let (installation, _) = installation()?;
    let Some(remote) = remote else {
        let remotes = installation.remotes()?;
        if json {
            println!("{}", serde_json::to_string_pretty(&remotes.remotes)?);
            return Ok(());
        }
        println!("{:<16} {:<8} {:<9} URL", "Name", "Enabled", "Verified");
        for (name, r) in &remotes.remotes {
            println!(
                "{:<16} {:<8} {:<9} {}",
                name,
                if r.enabled { "yes" } else { "no" },
                if r.verify { "yes" } else { "NO" },
                Shown(&r.url)
            );
        }
        return Ok(());
    };
    let events = progress_printer(false);
    let (catalog, _, _) = installation.remote_catalog(remote, &events)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&catalog.entries)?);
        return Ok(());
    }
    println!("{:<28} {:<10} {:<8} Name", "Id", "Version", "Kind");
    for entry in &catalog.entries {
        println!(
            "{:<28} {:<10} {:<8} {}",
            entry.id,
            Shown(&entry.version),
            kind_name(entry.kind),
            Shown(&entry.name)
        );
    }
    Ok(())
}

fn kind_name(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::App => "app",
        EntryKind::Runtime => "runtime",
    }
}

/// Progress on stderr: one updating line on a terminal, nothing otherwise.
fn progress_printer(quiet: bool) -> Events {
    use std::io::IsTerminal;
    let terminal = std::io::stderr().is_terminal() && !quiet;
    std::rc::Rc::new(move |event: Event| match event {
        Event::Fetching { remote } if !quiet => {
            eprintln!("Fetching the catalog of {remote}...");
        }
        Event::Pulling { id, progress } if terminal => {
            let mut stderr = std::io::stderr().lock();
            let _ = write!(
                stderr,
                "\r\x1b[KPulling {id}: {}/{} objects, {}",
                progress.fetched,
                progress.requested,
                human_bytes(progress.bytes)
            );
            let _ = stderr.flush();
        }
        Event::Deployed { id, commit } if !quiet => {
            if terminal {
                eprintln!();
            }
            eprintln!("Deployed {id} at {}", &commit[..12]);
        }
        _ => {}
    })
}

fn human_bytes(bytes: u64) -> String {
    match bytes {
        0..=9_999 => format!("{bytes} B"),
        10_000..=9_999_999 => format!("{:.1} kB", bytes as f64 / 1e3),
        _ => format!("{:.1} MB", bytes as f64 / 1e6),
    }
}

fn install(remote: &str, id: &str, json: bool) -> Result<()> {
    let (installation, _) = installation()?;
    let id = AppId::parse(id)?;
    let done = installation.install(remote, &id, &progress_printer(json))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else {
        for installed in &done {
            println!(
                "Installed {} {} from {remote}",
                installed.id,
                Shown(&installed.entry.version)
            );
        }
    }
    Ok(())
}

fn uninstall(id: Option<&str>, delete_data: bool, unused: bool) -> Result<()> {
    let (installation, facts) = installation()?;
    let ids = match id {
        Some(id) => vec![AppId::parse(id)?.to_string()],
        None if unused => installation.unused_runtimes()?,
        None => Vec::new(),
    };
    if ids.is_empty() {
        println!("Nothing unused to uninstall");
    }
    for id in ids {
        let home = delete_data.then_some(facts.home.as_path());
        let removed = installation.uninstall(&id, home)?;
        println!("Uninstalled {}", removed.id);
    }
    Ok(())
}

fn list(json: bool) -> Result<()> {
    let (installation, _) = installation()?;
    let all = installation.list()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    println!(
        "{:<28} {:<10} {:<8} {:<12} Origin",
        "Id", "Version", "Kind", "Commit"
    );
    for i in &all {
        println!(
            "{:<28} {:<10} {:<8} {:<12} {}",
            i.id,
            Shown(&i.entry.version),
            kind_name(i.kind),
            &i.commit[..12],
            i.origin.as_ref().map_or("-", |o| o.remote.as_str())
        );
    }
    Ok(())
}

fn info(id: &str, json: bool) -> Result<()> {
    let (installation, _) = installation()?;
    let installed: Installed = installation.info(id)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&installed)?);
        return Ok(());
    }
    let e = &installed.entry;
    println!("{} - {}", Shown(&e.name), Shown(&e.summary));
    println!();
    println!("          ID: {}", installed.id);
    println!("        Kind: {}", kind_name(installed.kind));
    println!("     Version: {}", Shown(&e.version));
    println!("     License: {}", Shown(&e.license));
    println!("     Runtime: {}", Shown(&e.runtime));
    if let Some(origin) = &installed.origin {
        println!("      Origin: {} ({})", origin.remote, origin.ref_name);
    }
    println!("      Commit: {}", installed.commit);
    println!("Installed in: {}", installed.path.display());
    println!("        Size: {}", human_bytes(e.installed_size));
    println!(
        " Permissions: {}",
        if e.permissions.is_empty() {
            "none".to_owned()
        } else {
            e.permissions.join(" ")
        }
    );
    if installed.deployments.len() > 1 {
        println!(
            " Deployments: {} (one kept for rollback)",
            installed.deployments.len()
        );
    }
    Ok(())
}
