//! `appbox-store`: carries out the store verbs of `appbox`, which execs it for
//! them. It is a separate binary because it links libostree and GLib, which
//! `appbox run` must not load.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Parser;

use appbox::appid::AppId;
use appbox::hostfacts::HostFacts;
use appbox::overrides::{self, Effective, OverrideStore};
use appbox::permissions::Change;
use appbox::store::build::{self, BuildRequest};
use appbox::store::catalog::EntryKind;
use appbox::store::cli::{BuildArgs, RepoCommand, StoreCommand};
use appbox::store::install::{Event, Events, Installation, Installed, UpdatePlan};
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
        StoreCommand::Repo(RepoCommand::Update { repo, sign_key }) => {
            repo_update(&repo, sign_key.as_deref())
        }
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
        StoreCommand::Install {
            remote,
            id,
            bundle,
            sign_pubkey,
            no_verify,
            json,
        } => match (bundle, remote, id) {
            (Some(file), _, _) => install_bundle(&file, sign_pubkey.as_deref(), no_verify, json),
            (None, Some(remote), Some(id)) => install(&remote, &id, json),
            _ => Err(anyhow::anyhow!(
                "name a remote and an app id, or pass --bundle FILE"
            )),
        },
        StoreCommand::BuildBundle { repo, id, file } => build_bundle(&repo, &id, &file),
        StoreCommand::BuildExport {
            repo,
            id,
            oci,
            insecure,
        } => build_export(&repo, &id, &oci, insecure),
        StoreCommand::Uninstall {
            id,
            delete_data,
            unused,
        } => uninstall(id.as_deref(), delete_data, unused),
        StoreCommand::List { json } => list(json),
        StoreCommand::Update { ids, yes, json } => update(&ids, yes, json),
        StoreCommand::Rollback { id } => rollback(&id),
        StoreCommand::History { json } => history(json),
        StoreCommand::Search { word, json } => search(&word, json),
        StoreCommand::Repair { json } => repair(json),
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
    installation.add_remote(name, url, &keys, !no_verify)?;
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
    installation.modify_remote(name, |remote| {
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
    Ok(())
}

fn remote_delete(name: &str) -> Result<()> {
    let (installation, _) = installation()?;
    installation.delete_remote(name)?;
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
                "\r\x1b[KPulling {id} {} {}/{} objects, {}",
                bar(progress.fraction(None)),
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

/// A 20-cell bar for a fraction of the work; empty while it is unknown.
fn bar(fraction: Option<f64>) -> String {
    const CELLS: usize = 20;
    let filled = (fraction.unwrap_or(0.0).clamp(0.0, 1.0) * CELLS as f64) as usize;
    format!("[{}{}]", "#".repeat(filled), "-".repeat(CELLS - filled))
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
    let (installation, facts) = installation()?;
    let installed: Installed = installation.info(id)?;
    // What a launch applies: the app's own permissions, then the user's overrides.
    let app_id = AppId::parse(&installed.id)?;
    let overrides = OverrideStore::new(&facts.config_home()).load(&app_id)?;
    let own = installed
        .entry
        .permissions
        .iter()
        .map(|arg| Change::parse(arg).with_context(|| format!("{id} has a bad permission")))
        .collect::<Result<Vec<_>>>()?;
    let effective = Effective::new(&own, &overrides);
    let override_args: Vec<String> = overrides.iter().map(Change::to_string).collect();
    if json {
        let mut value = serde_json::to_value(&installed)?;
        if let Some(object) = value.as_object_mut() {
            object.insert("overrides".to_owned(), override_args.into());
            object.insert("effective-permissions".to_owned(), effective.args().into());
        }
        println!("{}", serde_json::to_string_pretty(&value)?);
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
    if !override_args.is_empty() {
        println!("   Overrides: {}", override_args.join(" "));
    }
    println!("   Effective: {}", overrides::describe(&effective));
    if installed.deployments.len() > 1 {
        println!(
            " Deployments: {} (one kept for rollback)",
            installed.deployments.len()
        );
    }
    Ok(())
}

fn update(ids: &[String], yes: bool, json: bool) -> Result<()> {
    let (installation, _) = installation()?;
    let events = progress_printer(json);
    let (plans, failed) = installation.plan_updates(ids, &events)?;
    for (id, error) in &failed {
        eprintln!("appbox: warning: cannot check {id} for updates: {error}");
    }
    if plans.is_empty() {
        if !json {
            println!("Nothing to update.");
        } else {
            println!("[]");
        }
        return Ok(());
    }
    let mut done = Vec::new();
    let mut refused = Vec::new();
    for plan in &plans {
        if !json {
            print_plan(plan);
        }
        let accepted = yes || plan.added_permissions.is_empty() || (!json && confirm()?);
        if !accepted {
            refused.push(plan.id.clone());
            continue;
        }
        done.push(installation.apply_update(plan, &events)?);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "updated": done,
                "needs-confirmation": refused,
            }))?
        );
    } else {
        for installed in &done {
            println!(
                "Updated {} to {}",
                installed.id,
                Shown(&installed.entry.version)
            );
        }
    }
    if !refused.is_empty() {
        anyhow::bail!(
            "not updated, because they ask for new permissions: {}; run `appbox update --yes {}` to accept them",
            refused.join(", "),
            refused.join(" ")
        );
    }
    Ok(())
}

fn print_plan(plan: &UpdatePlan) {
    println!(
        "{}: {} -> {} ({} -> {})",
        plan.id,
        Shown(&plan.from_version),
        Shown(&plan.to_version),
        &plan.from[..12],
        &plan.to[..12]
    );
    for permission in &plan.added_permissions {
        println!("  new permission: {}", Shown(permission));
    }
    for permission in &plan.removed_permissions {
        println!("  dropped permission: {}", Shown(permission));
    }
}

/// Asks on the terminal; anything but yes, or no terminal, is a no.
fn confirm() -> Result<bool> {
    use std::io::{BufRead, IsTerminal};
    if !std::io::stdin().is_terminal() {
        return Ok(false);
    }
    print!("Allow the new permissions? [y/N] ");
    std::io::stdout().flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}

fn rollback(id: &str) -> Result<()> {
    let (installation, _) = installation()?;
    let installed = installation.rollback(id)?;
    println!(
        "Rolled {} back to {} ({})",
        installed.id,
        Shown(&installed.entry.version),
        &installed.commit[..12]
    );
    Ok(())
}

fn history(json: bool) -> Result<()> {
    let (installation, _) = installation()?;
    let entries = installation.history();
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    println!("{:<20} {:<10} {:<28} Change", "Time (UTC)", "Action", "Id");
    let short = |c: &Option<String>| {
        c.as_deref()
            .map_or("-".to_owned(), |c| c.chars().take(12).collect())
    };
    for e in &entries {
        println!(
            "{:<20} {:<10} {:<28} {} -> {}",
            utc(e.time),
            Shown(&e.action),
            Shown(&e.id),
            short(&e.from),
            short(&e.to)
        );
    }
    Ok(())
}

/// Seconds since the epoch as YYYY-MM-DD HH:MM:SS (UTC), without a date crate.
fn utc(seconds: u64) -> String {
    let days = seconds / 86_400;
    let rest = seconds % 86_400;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn search(word: &str, json: bool) -> Result<()> {
    let (installation, _) = installation()?;
    let (found, failed) = installation.search(word, &progress_printer(true))?;
    for (remote, error) in &failed {
        eprintln!("appbox: warning: cannot search remote {remote}: {error}");
    }
    if json {
        let rows: Vec<serde_json::Value> = found
            .iter()
            .map(|(remote, entry)| serde_json::json!({ "remote": remote, "entry": entry }))
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if found.is_empty() {
        println!("No matches for {}", Shown(word));
        return Ok(());
    }
    println!(
        "{:<28} {:<10} {:<12} Name - Summary",
        "Id", "Version", "Remote"
    );
    for (remote, e) in &found {
        println!(
            "{:<28} {:<10} {:<12} {} - {}",
            e.id,
            Shown(&e.version),
            remote,
            Shown(&e.name),
            Shown(&e.summary)
        );
    }
    Ok(())
}

fn install_bundle(
    file: &std::path::Path,
    key: Option<&std::path::Path>,
    no_verify: bool,
    json: bool,
) -> Result<()> {
    let (installation, _) = installation()?;
    let trusted = match (key, no_verify) {
        (_, true) => None,
        (Some(path), false) => Some(PublicKey::load_all(path)?),
        (None, false) => {
            let keys = installation.remote_keys()?;
            if keys.is_empty() {
                anyhow::bail!(
                    "no key to check the bundle with: pass --sign-pubkey FILE, add the publisher's remote, or pass --no-verify"
                );
            }
            Some(keys)
        }
    };
    if trusted.is_none() {
        eprintln!(
            "appbox: warning: installing {} without checking its signature",
            file.display()
        );
    }
    let installed =
        installation.install_bundle(file, trusted.as_deref(), &progress_printer(json))?;
    if json {
        println!("{}", serde_json::to_string_pretty(&installed)?);
    } else {
        println!(
            "Installed {} {} from {}",
            installed.id,
            Shown(&installed.entry.version),
            file.display()
        );
    }
    Ok(())
}

fn build_bundle(repo: &std::path::Path, id: &str, file: &std::path::Path) -> Result<()> {
    let repo = appbox::store::repo::Repo::open(repo)?;
    let bundle = appbox::store::bundle::write_bundle(&repo, id, file)?;
    println!(
        "Wrote {} ({} {}, commit {})",
        file.display(),
        bundle.entry.id,
        Shown(&bundle.entry.version),
        &bundle.commit[..12]
    );
    Ok(())
}

fn repair(json: bool) -> Result<()> {
    let (installation, _) = installation()?;
    let report = installation.repair()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for line in &report.fixed {
            println!("fixed: {line}");
        }
        for line in &report.problems {
            println!("problem: {line}");
        }
        println!(
            "{} fixed, {} problems, {} freed",
            report.fixed.len(),
            report.problems.len(),
            human_bytes(report.freed_bytes)
        );
    }
    if !report.problems.is_empty() {
        anyhow::bail!("some problems remain; reinstall the apps named above");
    }
    Ok(())
}

fn build_export(repo: &std::path::Path, id: &str, image: &str, insecure: bool) -> Result<()> {
    let repo = appbox::store::repo::Repo::open(repo)?;
    let pushed = appbox::store::oci::export_image(&repo, id, image, insecure)?;
    println!(
        "Pushed {} (commit {}) to {} as {}",
        id,
        &pushed.commit[..12],
        pushed.image,
        pushed.digest
    );
    Ok(())
}

fn repo_update(repo: &std::path::Path, key: Option<&std::path::Path>) -> Result<()> {
    let key = key.map(SecretKey::load).transpose()?;
    let repo = appbox::store::repo::Repo::open(repo)?;
    let catalog = build::publish_summary(&repo, key.as_ref())?;
    println!(
        "Updated the summary of {}: {} entries{}",
        repo.path().display(),
        catalog.entries.len(),
        if key.is_some() {
            ", signed"
        } else {
            ", NOT signed"
        }
    );
    Ok(())
}
