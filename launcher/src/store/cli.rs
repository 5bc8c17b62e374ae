//! The store verbs' arguments. They are defined here, in the library, so that
//! `appbox` (which parses, completes and documents every verb) and
//! `appbox-store` (which carries the store verbs out) agree on them.

use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub enum StoreCommand {
    /// Build an app from a manifest and commit it to an OSTree repository
    #[command(
        after_help = "The build commands run inside the appbox sandbox, on the manifest's runtime, \
with /app writable and without network unless a source asks for it. The repository is created \
(archive mode) when it does not exist; its summary, catalog and static deltas are updated."
    )]
    Build(BuildArgs),
    /// Manage a repository that you publish
    #[command(subcommand)]
    Repo(RepoCommand),
    /// Add a remote repository to install apps from
    #[command(name = "remote-add")]
    RemoteAdd {
        /// A short name for the remote, such as appbox
        name: String,
        /// http(s):// or file:/// URL of an OSTree repository
        url: String,
        /// Trust the ed25519 public key in FILE (from `appbox repo keygen`)
        #[arg(long, value_name = "FILE", required_unless_present = "no_verify")]
        sign_pubkey: Option<PathBuf>,
        /// Trust the remote without signatures (not recommended)
        #[arg(long, conflicts_with = "sign_pubkey")]
        no_verify: bool,
    },
    /// List the remotes, or what one remote offers
    #[command(name = "remote-ls")]
    RemoteLs {
        /// List the apps and runtimes this remote offers
        remote: Option<String>,
        /// Print JSON for scripts
        #[arg(long)]
        json: bool,
    },
    /// Change a remote
    #[command(name = "remote-modify")]
    RemoteModify {
        name: String,
        /// A new URL
        #[arg(long)]
        url: Option<String>,
        /// Trust another ed25519 public key from FILE
        #[arg(long, value_name = "FILE")]
        sign_pubkey: Option<PathBuf>,
        /// Use the remote again
        #[arg(long, conflicts_with = "disable")]
        enable: bool,
        /// Stop using the remote, without removing it
        #[arg(long)]
        disable: bool,
    },
    /// Remove a remote
    #[command(name = "remote-delete")]
    RemoteDelete { name: String },
    /// Install an app, and the runtime it needs, from a remote (or from a bundle file)
    #[command(
        after_help = "A bundle must be signed by the key given with --sign-pubkey or, without it, \
by the key of one of your remotes; --no-verify installs it unchecked."
    )]
    Install {
        /// The remote to install from
        #[arg(required_unless_present = "bundle")]
        remote: Option<String>,
        /// The app (or runtime) id
        #[arg(required_unless_present = "bundle")]
        id: Option<String>,
        /// Install this bundle file (from `appbox build-bundle`) instead
        #[arg(long, value_name = "FILE", conflicts_with_all = ["remote", "id"])]
        bundle: Option<PathBuf>,
        /// For a bundle: trust the ed25519 public key in FILE
        #[arg(long, value_name = "FILE", requires = "bundle")]
        sign_pubkey: Option<PathBuf>,
        /// For a bundle: install it without checking its signature (not recommended)
        #[arg(long, requires = "bundle", conflicts_with = "sign_pubkey")]
        no_verify: bool,
        /// Print JSON for scripts
        #[arg(long)]
        json: bool,
    },
    /// Push an app or runtime from a repository to an OCI registry as an image
    #[command(
        name = "build-export",
        after_help = "For an OCI remote oci://HOST[:PORT]/PREFIX, push app ID as \
HOST[:PORT]/PREFIX/ID-in-lowercase:stable. The image carries the commit's signature."
    )]
    BuildExport {
        /// The OSTree repository (from `appbox build`)
        repo: PathBuf,
        /// The app or runtime id
        id: String,
        /// The image to push: REGISTRY/NAME:TAG
        #[arg(long, value_name = "REGISTRY/NAME:TAG")]
        oci: String,
        /// The registry speaks plain HTTP (a local test registry)
        #[arg(long)]
        insecure: bool,
    },
    /// Write an app or runtime from a repository as a single-file bundle
    #[command(name = "build-bundle")]
    BuildBundle {
        /// The OSTree repository (from `appbox build`)
        repo: PathBuf,
        /// The app or runtime id
        id: String,
        /// The bundle file to write
        file: PathBuf,
    },
    /// Update installed apps and runtimes, or the ones named
    #[command(
        after_help = "An update that asks for new permissions shows them and goes ahead only with \
--yes or a yes at the prompt."
    )]
    Update {
        /// Apps or runtimes to update (all when none is named)
        ids: Vec<String>,
        /// Accept new permissions without asking
        #[arg(long, short = 'y')]
        yes: bool,
        /// Print JSON for scripts (new permissions then need --yes)
        #[arg(long)]
        json: bool,
    },
    /// Go back to the previous deployment of an app or runtime
    Rollback { id: String },
    /// Show what was installed, updated, rolled back and removed
    History {
        /// Print JSON for scripts
        #[arg(long)]
        json: bool,
    },
    /// Bring the installation back to a consistent state after a crash
    Repair {
        /// Print JSON for scripts
        #[arg(long)]
        json: bool,
    },
    /// Search the catalogs of all remotes
    Search {
        /// A word to look for in ids, names, summaries and descriptions
        word: String,
        /// Print JSON for scripts
        #[arg(long)]
        json: bool,
    },
    /// Remove an installed app or runtime
    Uninstall {
        /// The app or runtime id
        #[arg(required_unless_present = "unused")]
        id: Option<String>,
        /// Also delete the app's data in ~/.var/app/ID
        #[arg(long)]
        delete_data: bool,
        /// Remove every runtime that no installed app needs
        #[arg(long, conflicts_with = "id")]
        unused: bool,
    },
    /// List installed apps and runtimes
    List {
        /// Print JSON for scripts
        #[arg(long)]
        json: bool,
    },
    /// Show an installed app or runtime
    Info {
        id: String,
        /// Print JSON for scripts
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// The manifest, such as manifests/org.example.App.toml
    pub manifest: PathBuf,
    /// The OSTree repository to commit to
    #[arg(long, value_name = "DIR")]
    pub repo: PathBuf,
    /// Sign the commit and the summary with this ed25519 secret key (from `appbox repo keygen`)
    #[arg(long, value_name = "FILE")]
    pub sign_key: Option<PathBuf>,
    /// Print the result as JSON for scripts
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Subcommand, Debug)]
pub enum RepoCommand {
    /// Regenerate a repository's summary and catalog from its refs, and sign it
    Update {
        /// The OSTree repository
        repo: PathBuf,
        /// Sign the summary with this ed25519 secret key
        #[arg(long, value_name = "FILE")]
        sign_key: Option<PathBuf>,
    },
    /// Write a new ed25519 key pair: PREFIX.secret (mode 0600) and PREFIX.pub
    Keygen {
        /// Where to write the keys, without the extension
        prefix: PathBuf,
    },
}
