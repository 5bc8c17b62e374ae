//! Argument parsing and the subcommands. Verbs and habits follow `flatpak`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand};

use appbox::appid::AppId;
use appbox::busproxy;
use appbox::busproxy::instance::ProxySocket;
use appbox::busproxy::policy::Policy;
use appbox::deploy;
use appbox::documents::DocumentStore;
use appbox::hostfacts::HostFacts;
use appbox::instance::{self, InstanceRecord, Registry};
use appbox::overrides::OverrideStore;
use appbox::permissions::Change;
use appbox::plan;
use appbox::portal_activation;
use appbox::sandbox::{self, Layer, SandboxError};
use appbox::store::cli::StoreCommand;

use crate::grants_cli::{self, GrantCommand};

#[derive(Parser)]
#[command(
    name = "appbox",
    version,
    about = "Run desktop apps in a sandbox",
    long_about = "appbox runs desktop apps in Linux namespaces, confined by Landlock and seccomp, \
                  with only the permissions they were granted."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run an app in a sandbox
    #[command(
        after_help = "Arguments after `--` go to the app unchanged, even if they start with '-'.\n\
Permission options override the app's own permissions for this run only, in the order given."
    )]
    Run(Box<RunArgs>),
    /// List running sandboxes
    Ps {
        /// Print JSON for scripts
        #[arg(long)]
        json: bool,
    },
    /// Stop the running instances of an app, or one instance
    Kill {
        /// An app id or an instance number from `appbox ps`
        target: String,
    },
    /// Run a command inside a running sandbox
    Enter {
        /// An instance number from `appbox ps` (or an app id with one instance)
        instance: String,
        /// The command and its arguments, as seen inside the sandbox
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    #[command(flatten)]
    Store(StoreCommand),
    /// Print a shell completion script
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Print the manual page in roff format
    #[command(hide = true)]
    Man,
    #[command(flatten)]
    Grants(GrantCommand),
    /// Change an app's permissions for every run, as `flatpak override` does
    #[command(
        after_help = "The permission options are added, in the order given, to the app's \
overrides, which every `appbox run` applies after the app's own permissions and before its \
command line's. With no permission option and no --reset, the overrides are shown.\n\
They are kept in $XDG_CONFIG_HOME/appbox/overrides/ID.json."
    )]
    Override(Box<OverrideArgs>),
}

#[derive(clap::Args)]
struct OverrideArgs {
    /// Remove all of the app's overrides (before adding any given here)
    #[arg(long)]
    reset: bool,
    /// Print the overrides, one per line
    #[arg(long)]
    show: bool,
    /// Print the overrides as a JSON array
    #[arg(long)]
    json: bool,
    /// The app, such as org.example.App
    app: String,
    #[command(flatten)]
    permissions: PermissionArgs,
}

/// Permission overrides, named as in `flatpak run`.
const PERMISSION_FLAGS: &[&str] = &[
    "share",
    "unshare",
    "socket",
    "nosocket",
    "device",
    "nodevice",
    "filesystem",
    "nofilesystem",
    "talk-name",
    "no-talk-name",
    "own-name",
    "no-own-name",
    "see-name",
    "no-see-name",
    "persist",
    "env",
    "unset-env",
];

/// The permission options of `appbox run` and `appbox override`, named as in
/// `flatpak run`; [`overrides_in_order`] reads them back in the order given.
#[derive(clap::Args)]
struct PermissionArgs {
    /// Share a namespace with the host: network, ipc
    #[arg(long, value_name = "WHAT", help_heading = "Permissions")]
    share: Vec<String>,
    /// Do not share a namespace with the host
    #[arg(long, value_name = "WHAT", help_heading = "Permissions")]
    unshare: Vec<String>,
    /// Expose a host socket: wayland, x11, fallback-x11, pulseaudio, pipewire, session-bus, system-bus, ssh-auth, cups, gpg-agent
    #[arg(long, value_name = "SOCKET", help_heading = "Permissions")]
    socket: Vec<String>,
    /// Do not expose a host socket
    #[arg(long, value_name = "SOCKET", help_heading = "Permissions")]
    nosocket: Vec<String>,
    /// Expose devices: dri, input, usb, kvm, shm, all
    #[arg(long, value_name = "DEVICE", help_heading = "Permissions")]
    device: Vec<String>,
    /// Do not expose devices
    #[arg(long, value_name = "DEVICE", help_heading = "Permissions")]
    nodevice: Vec<String>,
    /// Expose files: home, host, host-os, host-etc, xdg-*, ~/PATH, /PATH, with :ro, :rw or :create
    #[arg(long, value_name = "LOCATION", help_heading = "Permissions")]
    filesystem: Vec<String>,
    /// Remove a filesystem grant and every grant inside it
    #[arg(long, value_name = "LOCATION", help_heading = "Permissions")]
    nofilesystem: Vec<String>,
    /// Allow talking to a D-Bus name
    #[arg(long, value_name = "NAME", help_heading = "Permissions")]
    talk_name: Vec<String>,
    /// Disallow talking to a D-Bus name
    #[arg(long, value_name = "NAME", help_heading = "Permissions")]
    no_talk_name: Vec<String>,
    /// Allow owning a D-Bus name
    #[arg(long, value_name = "NAME", help_heading = "Permissions")]
    own_name: Vec<String>,
    /// Disallow owning a D-Bus name
    #[arg(long, value_name = "NAME", help_heading = "Permissions")]
    no_own_name: Vec<String>,
    /// Allow seeing a D-Bus name
    #[arg(long, value_name = "NAME", help_heading = "Permissions")]
    see_name: Vec<String>,
    /// Disallow seeing a D-Bus name
    #[arg(long, value_name = "NAME", help_heading = "Permissions")]
    no_see_name: Vec<String>,
    /// Keep a directory of home in the app's own data (~/.var/app/ID/PATH)
    #[arg(long, value_name = "PATH", help_heading = "Permissions")]
    persist: Vec<String>,
    /// Set an environment variable in the sandbox
    #[arg(long, value_name = "VAR=VALUE", help_heading = "Permissions")]
    env: Vec<String>,
    /// Unset an environment variable in the sandbox
    #[arg(long, value_name = "VAR", help_heading = "Permissions")]
    unset_env: Vec<String>,
}

#[derive(clap::Args)]
struct RunArgs {
    /// The installed app to run, such as org.example.App
    #[arg(required_unless_present = "app_dir", conflicts_with = "app_dir")]
    app: Option<String>,
    /// Run an unpacked app: DIR/metadata.toml plus DIR/files, which becomes /app
    #[arg(long, value_name = "DIR")]
    app_dir: Option<PathBuf>,
    /// Run this command instead of the app's own (a name in /app/bin, or an absolute path)
    #[arg(long, value_name = "CMD", allow_hyphen_values = true)]
    command: Option<String>,
    #[command(flatten)]
    permissions: PermissionArgs,
    /// Print the sandbox plan as JSON (mounts, Landlock rules, seccomp policy,
    /// environment and command) instead of running the app
    #[arg(long)]
    print_plan: bool,
    /// For `appbox build`: run a build command with DIR as /run/build (the
    /// working directory) and a writable /app
    #[arg(long, value_name = "DIR", hide = true, requires = "app_dir")]
    build_dir: Option<PathBuf>,
    /// For tests only: switch a protection layer off (mounts, landlock or seccomp)
    #[arg(long, value_name = "LAYER", hide = true)]
    unsafe_disable_layer: Vec<Layer>,
    /// Arguments for the app
    #[arg(last = true, value_name = "ARGS")]
    args: Vec<String>,
}

/// Collects the permission flags in the order they were given, as finish-args.
fn overrides_in_order(matches: &ArgMatches) -> Result<Vec<Change>> {
    let mut ordered: Vec<(usize, String)> = Vec::new();
    for flag in PERMISSION_FLAGS {
        let id = flag.replace('-', "_");
        let (Some(indices), Some(values)) =
            (matches.indices_of(&id), matches.get_many::<String>(&id))
        else {
            continue;
        };
        for (index, value) in indices.zip(values) {
            ordered.push((index, format!("--{flag}={value}")));
        }
    }
    ordered.sort_by_key(|(index, _)| *index);
    ordered
        .iter()
        .map(|(_, arg)| Change::parse(arg).with_context(|| format!("invalid option {arg}")))
        .collect()
}

pub fn main() -> i32 {
    // appbox needs no privilege it was not started with; a setuid or setgid
    // install would hand the caller's choices to a more privileged process.
    if nix::unistd::geteuid() != nix::unistd::getuid()
        || nix::unistd::getegid() != nix::unistd::getgid()
    {
        eprintln!("appbox: error: appbox must not be installed setuid or setgid; remove the bit with `chmod ug-s`");
        return 1;
    }
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let result = match cli.command {
        Command::Run(args) => {
            let Some(("run", run_matches)) = matches.subcommand() else {
                unreachable!("clap dispatched run")
            };
            run(*args, run_matches)
        }
        Command::Ps { json } => ps(json).map(|()| 0),
        Command::Kill { target } => kill(&target).map(|()| 0),
        Command::Enter { instance, command } => enter(&instance, command),
        Command::Store(_) => exec_store(),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "appbox", &mut std::io::stdout());
            Ok(0)
        }
        Command::Man => clap_mangen::Man::new(Cli::command())
            .render(&mut std::io::stdout())
            .map(|()| 0)
            .context("cannot write the manual page"),
        Command::Grants(command) => grants_cli::run(command).map(|()| 0),
        Command::Override(args) => {
            let Some(("override", override_matches)) = matches.subcommand() else {
                unreachable!("clap dispatched override")
            };
            override_permissions(&args, override_matches).map(|()| 0)
        }
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            let code = match error.downcast_ref::<SandboxError>() {
                Some(SandboxError::Exec { code, .. }) => *code,
                Some(SandboxError::Interrupted(signal)) => 128 + signal,
                _ => 1,
            };
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "appbox: error: {error}");
            for cause in error.chain().skip(1) {
                let _ = writeln!(stderr, "  caused by: {cause}");
            }
            code
        }
    }
}

fn run(args: RunArgs, matches: &ArgMatches) -> Result<i32> {
    let facts = HostFacts::gather()?;
    let store = deploy::store_dir(&facts);
    let mut request = match (&args.app_dir, &args.app) {
        (Some(dir), _) => deploy::request_for_app_dir(dir)?,
        (None, Some(id)) => {
            let id = AppId::parse(id)?;
            deploy::request_for_installed(&store, &id)?
        }
        (None, None) => bail!("name an app to run, or pass --app-dir DIR"),
    };
    deploy::resolve_runtime(&store, &mut request)?;
    // The user's stored overrides come first, then the command line's. A
    // build command runs as its manifest says, whatever the user chose.
    request.overrides = if args.build_dir.is_none() {
        OverrideStore::new(&facts.config_home()).load(&request.metadata.id)?
    } else {
        Vec::new()
    };
    request.overrides.extend(overrides_in_order(matches)?);
    request.command = args.command;
    request.args = args.args;
    request.build_dir = args
        .build_dir
        .map(|dir| {
            std::fs::canonicalize(&dir).with_context(|| format!("cannot resolve {}", dir.display()))
        })
        .transpose()?;
    // The files the user handed to the app through the portal come back.
    match DocumentStore::new(&facts.data_home()).load() {
        Ok(documents) => request.documents = documents.mounts_for(&request.metadata.id),
        Err(e) => eprintln!(
            "appbox: warning: {}; the app's documents are left out",
            sandbox::chain(&e)
        ),
    }
    // The sandbox's session bus is a filtering proxy of the host's, when the
    // host has one. Its socket exists before the sandbox (which mounts it);
    // the proxy itself is forked once the app runs.
    let upstream = plan::host_session_bus(&facts);
    let host_has_bus = upstream
        .symlink_metadata()
        .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()));
    if host_has_bus && !args.print_plan {
        make_portal_activatable(&facts);
    }
    let bus_socket = if host_has_bus && !args.print_plan {
        Some(ProxySocket::bind(&facts.runtime_dir)?)
    } else {
        None
    };
    request.bus_proxy_socket = match &bus_socket {
        Some(socket) => Some(socket.path()),
        None => host_has_bus.then(|| busproxy::instance::socket_path(&facts.runtime_dir)),
    };

    let plan = plan::plan(&request, &facts)?;
    for note in &plan.notes {
        eprintln!("appbox: note: {note}");
    }
    if args.print_plan {
        println!("{}", serde_json::to_string_pretty(&plan)?);
        return Ok(0);
    }
    let disabled: BTreeSet<Layer> = args.unsafe_disable_layer.into_iter().collect();
    for layer in &disabled {
        eprintln!(
            "appbox: warning: the {layer:?} layer is switched off; this app is NOT fully sandboxed"
        );
    }
    let registry = Registry::open(&facts.runtime_dir)?;
    let running = sandbox::launch(&plan, &facts.home, &disabled)?;
    // The instance record comes before the bus proxy, which records its
    // connections to the bus under the instance's number, for the portal.
    let record = InstanceRecord {
        instance: 0,
        app_id: plan.app_id.to_string(),
        pid: running.pid.as_raw(),
        start_time: instance::process_start_time(running.pid.as_raw()).unwrap_or(0),
        monitor_pid: std::process::id() as i32,
        started_at: std::time::UNIX_EPOCH.elapsed().map_or(0, |d| d.as_secs()),
        plan,
    };
    let guard = registry.create(record);
    if let Err(e) = &guard {
        eprintln!("appbox: warning: {e}; `appbox ps` will not list this app");
    }
    // Without an instance number the proxy records nothing, and the portal
    // takes the app for nobody it serves.
    let peers = guard
        .as_ref()
        .ok()
        .map(|guard| busproxy::peers::PeerRecords::new(&facts.runtime_dir, guard.number()));
    let proxy = match bus_socket {
        Some(socket) => Some(socket.serve(&upstream, bus_policy(&request), peers)?),
        None => None,
    };
    let code = running.wait();
    // The proxy's records name the instance, so they go first.
    drop(proxy);
    drop(guard);
    Ok(code)
}

/// `appbox override`: resets, adds, and shows the user's overrides of an app.
fn override_permissions(args: &OverrideArgs, matches: &ArgMatches) -> Result<()> {
    let id = AppId::parse(&args.app)?;
    let changes = overrides_in_order(matches)?;
    let facts = HostFacts::gather()?;
    let store = OverrideStore::new(&facts.config_home());
    if args.reset {
        store.reset(&id)?;
    }
    let mut list = None;
    if !changes.is_empty() {
        list = Some(store.add(&id, &changes)?);
    }
    if !(args.show || args.json || (changes.is_empty() && !args.reset)) {
        return Ok(());
    }
    let list = match list {
        Some(list) => list,
        None => store.load(&id)?,
    };
    let args_list: Vec<String> = list.iter().map(Change::to_string).collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(&args_list)?)?;
    } else {
        for arg in &args_list {
            writeln!(out, "{arg}")?;
        }
    }
    Ok(())
}

/// The app reaches appbox's portal through its bus; the bus starts the
/// portal on the first call, if it knows where the portal is.
fn make_portal_activatable(facts: &HostFacts) {
    let Ok(me) = std::env::current_exe() else {
        return;
    };
    let portal = me.with_file_name("appbox-portal");
    if !portal.is_file() {
        return;
    }
    let system_dirs =
        portal_activation::system_service_dirs(facts.env.get("XDG_DATA_DIRS").map(String::as_str));
    // The bus rescans its service directories when an unknown name is
    // called, so the files count from the app's first call.
    if let Err(e) =
        portal_activation::ensure_user_activation(&facts.data_home(), &system_dirs, &portal)
    {
        eprintln!("appbox: warning: cannot register the portal with the session bus ({e}); file choosers will not work in the app");
    }
}

/// The store verbs live in `appbox-store`, next to this binary: it links
/// libostree and GLib, whose loading alone would cost `appbox run` more than a
/// whole launch. The arguments, already checked, are passed on unchanged.
fn exec_store() -> Result<i32> {
    use std::os::unix::process::CommandExt;
    let me = std::env::current_exe().context("cannot find the appbox binary")?;
    let store = me.with_file_name("appbox-store");
    let error = std::process::Command::new(&store)
        .arg0("appbox")
        .args(std::env::args_os().skip(1))
        .exec();
    Err(error).with_context(|| {
        format!(
            "cannot run {}, which carries out the store commands; reinstall appbox so that it sits next to {}",
            store.display(),
            me.display()
        )
    })
}

/// What the app may do on its session bus: its effective permissions, plus,
/// as Flatpak does, its own names (GApplication and MPRIS ask for them), and
/// appbox's portal under the standard portal names (the proxy renames them
/// to the names the portal owns on the host bus). No other portal names: on
/// the host bus, the host's xdg-desktop-portal would see the proxy, an
/// unconfined host process, and grant the app what it grants host apps.
fn bus_policy(request: &plan::LaunchRequest) -> Policy {
    let mut permissions = plan::effective_permissions(&request.metadata, &request.overrides);
    let id = request.metadata.id.as_str();
    permissions.own_names.insert(format!("{id}.*"));
    permissions
        .own_names
        .insert(format!("org.mpris.MediaPlayer2.{id}.*"));
    Policy::new(&permissions, busproxy::policy::PORTAL_ALIASES)
}

fn ps(json: bool) -> Result<()> {
    let facts = HostFacts::gather()?;
    let registry = Registry::open(&facts.runtime_dir)?;
    let records = registry.list();
    let mut out = std::io::stdout().lock();
    if json {
        let rows: Vec<serde_json::Value> = records
            .iter()
            .map(|r| {
                serde_json::json!({
                    "instance": r.instance.to_string(),
                    "pid": r.pid,
                    "application": r.app_id,
                    "started": r.started_at,
                    "permissions": r.plan.permissions,
                })
            })
            .collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&rows)?)?;
        return Ok(());
    }
    writeln!(out, "{:<12} {:<8} Application", "Instance", "PID")?;
    for r in &records {
        writeln!(out, "{:<12} {:<8} {}", r.instance, r.pid, r.app_id)?;
    }
    Ok(())
}

fn kill(target: &str) -> Result<()> {
    let facts = HostFacts::gather()?;
    let registry = Registry::open(&facts.runtime_dir)?;
    let records = registry.find_all(target);
    if records.is_empty() {
        bail!(instance::InstanceError::NotFound(target.to_owned()));
    }
    for record in &records {
        instance::signal(record, libc::SIGKILL)?;
    }
    Ok(())
}

fn enter(target: &str, command: Vec<String>) -> Result<i32> {
    let facts = HostFacts::gather()?;
    let registry = Registry::open(&facts.runtime_dir)?;
    let record = registry.find(target)?;
    let pidfd = instance::verified_pidfd(&record)?;
    let mut plan = record.plan;
    if command.first().is_some_and(|c| c.starts_with('-')) {
        bail!("the command to enter must not start with '-'");
    }
    plan.argv = command;
    let running = sandbox::enter(&plan, &pidfd)?;
    Ok(running.wait())
}
