//! OCI images: an app or runtime commit published to, and installed from, a
//! container registry.
//!
//! An image is made by ostree-ext's encapsulation: one gzip-compressed layer
//! in ostree-ext's tar format (the same format as a bundle, see `bundle.rs`):
//! the commit object, right after it the commit's detached metadata
//! (`objects/XX/REST.commitmeta`, where the ed25519 signatures live), then
//! every other object. The image configuration carries the labels
//! `ostree.commit` and `ostree.final-diffid` that ostree-ext reads back, and
//! `org.appbox.id` / `org.appbox.ref` for people browsing the registry.
//!
//! The signatures therefore travel inside the image and come back byte for
//! byte: ostree-ext's exporter writes the `.commitmeta` object whenever the
//! commit has detached metadata (`OstreeTarWriter::append_commit_object`,
//! also used for the final layer of an encapsulated image), and its unverified
//! importer (`Importer::import_commit`) writes it back with
//! `write_commit_detached_metadata`. An export reads its image back before
//! pushing and refuses to push one that does not carry the repository's
//! detached metadata unchanged.
//!
//! Pushing: ostree-ext encapsulates into a private OCI directory and appbox
//! pushes it with `skopeo copy` itself, because ostree-ext's own push runs
//! skopeo without a way to allow a plain-HTTP registry.
//!
//! Pulling takes hostile input. ostree-ext's importer asserts on tar entries
//! that end early (and release builds abort on panics) and puts no bound on
//! what a layer unpacks to, so the image is not streamed into it from the
//! registry. Instead, through skopeo's image proxy, the manifest and the
//! configuration are checked, every blob is downloaded into a private OCI
//! directory in the repository's `tmp/` (its size and sha256 checked), and
//! every layer is decompressed and checked entry by entry within the limits
//! bundles have (`ostree_tar.rs`). Only then does ostree-ext's unverified
//! import (`SignatureSource::ContainerPolicyAllowInsecure`) read the image
//! from that directory; after it, every object the commit reaches must be
//! present. The import sets no ref and checks no signature: the caller
//! verifies the signature (`Repo::commit_bytes` + `Repo::detached_metadata`
//! + `sign::verify`) and only then deploys.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use flate2::bufread::GzDecoder;
use ostree_ext::container::store::ImageImporter;
use ostree_ext::container::{
    Config, ExportOpts, ImageReference, OstreeImageReference, SignatureSource, Transport,
    DIFFID_LABEL, OSTREE_COMMIT_LABEL,
};
use ostree_ext::containers_image_proxy::{ImageProxy, ImageProxyConfig, OpenedImage};
use ostree_ext::oci_spec::image::{
    Descriptor, DigestAlgorithm, ImageConfiguration, ImageManifest, MediaType,
};
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncReadExt;

use crate::store::bundle::{ImportedBundle, MAX_BUNDLE_BYTES, MAX_UNPACKED_BYTES};
use crate::store::catalog::{self, CatalogError};
use crate::store::ostree_tar::{
    self, check_complete, commit_to_export, imported, io_error, is_checksum, not_in_runtime,
    runtime, scan_stream, Budget, Flaw, Role, Scanned, Staging, Whole,
};
use crate::store::repo::{Repo, RepoError};

/// Layers in one image: ostree-ext's chunked images have at most 64 or so.
pub const MAX_LAYERS: usize = 128;
/// The image configuration, like containers/image's own limit.
const MAX_CONFIG_BYTES: u64 = 4 << 20;
/// The manifest, like containers/image's own limit.
const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// A docker (not OCI) plain tar layer, which ostree-ext also reads.
const DOCKER_TAR: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// The docker gzip layer type, should a proxy ever leave it unconverted.
const DOCKER_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/// The label with the app or runtime id that appbox adds to the images it
/// pushes. Informative only: an import reads the id from the signed commit.
pub const ID_LABEL: &str = "org.appbox.id";
/// The label with the ref (`app/ID/ARCH/stable`), informative only too.
pub const REF_LABEL: &str = "org.appbox.ref";
/// Staging directories are `appbox-oci-PID-N`.
const STAGING: &str = "appbox-oci";

#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    #[error("{id:?} is not a valid app or runtime id: {reason}")]
    InvalidId { id: String, reason: String },
    #[error(
        "{reference:?} is not a usable image reference: {reason}; write REGISTRY/NAME:TAG, \
         such as ghcr.io/example/org.example.app:stable or 127.0.0.1:5000/apps/org.example.app:stable"
    )]
    InvalidReference { reference: String, reason: String },
    #[error(
        "neither {app_ref} nor {runtime_ref} is in the repository {}; build it there first \
         (`appbox build`) or check the id",
        repo.display()
    )]
    NotInRepo {
        app_ref: String,
        runtime_ref: String,
        repo: PathBuf,
    },
    #[error(
        "commit {commit} carries no catalog entry (`{}` in its metadata), so it is not \
         known what it holds; only commits made by `appbox build` can be published and installed",
        catalog::COMMIT_KEY
    )]
    NoEntry { commit: String },
    #[error("the catalog entry of commit {commit} is invalid")]
    BadEntry {
        commit: String,
        #[source]
        source: CatalogError,
    },
    #[error(
        "commit {commit} of {ref_name} describes itself as {described}; rebuild it with \
         `appbox build`"
    )]
    WrongEntry {
        commit: String,
        ref_name: String,
        described: String,
    },
    #[error("cannot {what} {}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("cannot make the image of commit {commit}: {message}")]
    Encapsulate { commit: String, message: String },
    #[error(
        "the image made of commit {commit} does not carry the commit's detached metadata \
         (its signatures) unchanged; this is a bug in appbox, please report it"
    )]
    SignaturesLost { commit: String },
    #[error("cannot push {image}: {message}{hint}")]
    Push {
        image: String,
        message: String,
        hint: &'static str,
    },
    #[error(
        "{image} does not exist: the registry has no such repository or tag; check the name \
         and the tag, or publish the image first"
    )]
    NotFound { image: String },
    #[error("cannot fetch {image}: {message}{hint}")]
    Fetch {
        image: String,
        message: String,
        hint: &'static str,
    },
    #[error(
        "{image} is not an appbox image ({reason}); appbox installs images published by \
         appbox (or made by ostree-ext's encapsulation)"
    )]
    NotAppbox { image: String, reason: String },
    #[error("{image} is not a valid image: {reason}")]
    Malformed { image: String, reason: String },
    #[error("{image} {what} more than the {limit} bytes an image may have")]
    TooLarge {
        image: String,
        what: &'static str,
        limit: u64,
    },
    #[error("cannot import {image} into the repository {}: {message}", repo.display())]
    Import {
        image: String,
        repo: PathBuf,
        message: String,
    },
    #[error(
        "{image} does not hold all of commit {commit} ({reason}); it is damaged or incomplete, \
         publish it again"
    )]
    Incomplete {
        image: String,
        commit: String,
        reason: String,
    },
    #[error("cannot run the registry client: {0}")]
    Runtime(String),
}

ostree_tar::impl_from_common_error!(OciError);

/// What an export pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciExport {
    pub commit: String,
    pub ref_name: String,
    /// The reference pushed to, as REGISTRY/NAME:TAG.
    pub image: String,
    /// The manifest digest of the pushed image ("sha256:…"); REGISTRY/NAME@DIGEST
    /// names exactly this image.
    pub digest: String,
}

/// Text from a registry, an image or a library quoting them, made safe for an
/// error message.
fn clean(text: &str) -> String {
    Whole::Image.clean(text)
}

// ---------------------------------------------------------------------------
// Image references
// ---------------------------------------------------------------------------

/// A checked REGISTRY/NAME[:TAG][@DIGEST].
#[derive(Debug, Clone, PartialEq, Eq)]
struct ImageRef {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl ImageRef {
    /// Parses and checks a reference the way the OCI distribution rules
    /// (and skopeo) read it, plus appbox's own rules: the registry is always
    /// explicit, and a tag or a digest always present.
    fn parse(text: &str) -> Result<Self, OciError> {
        Self::check(text).map_err(|reason| OciError::InvalidReference {
            reference: clean(text),
            reason,
        })
    }

    fn check(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("it is empty".into());
        }
        if text.len() > 1024 {
            return Err(format!("it is {} bytes long", text.len()));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("it contains whitespace or a control character".into());
        }
        if !text.is_ascii() {
            return Err("it contains a character outside ASCII".into());
        }
        if text.contains("://") {
            return Err("give it without a transport such as docker://".into());
        }
        if text.contains("..") {
            return Err("it contains \"..\"".into());
        }
        let (name, digest) = match text.split_once('@') {
            Some((name, digest)) => (name, Some(check_digest(digest)?)),
            None => (text, None),
        };
        let (registry, path) = name
            .split_once('/')
            .ok_or_else(|| "it names no registry (the part before the first \"/\")".to_owned())?;
        check_registry(registry)?;
        let (repository, tag) = match path.rsplit_once(':') {
            Some((repository, tag)) => (repository, Some(check_tag(tag)?)),
            None => (path, None),
        };
        for component in repository.split('/') {
            check_component(component)?;
        }
        if name.len() - tag.as_ref().map_or(0, |t| t.len() + 1) > 255 {
            return Err("its registry and name are longer than 255 characters".into());
        }
        if tag.is_none() && digest.is_none() {
            return Err("it has neither a tag nor a digest; add a tag such as :stable".into());
        }
        Ok(ImageRef {
            registry: registry.to_owned(),
            repository: repository.to_owned(),
            tag,
            digest,
        })
    }
}

fn check_registry(registry: &str) -> Result<(), String> {
    let not_a_host = || {
        format!(
            "{registry:?} is not a registry host: a registry has a dot or a port, \
             like example.com or localhost:5000"
        )
    };
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (registry, None),
    };
    if let Some(port) = port {
        let valid = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && matches!(port.parse::<u32>(), Ok(1..=65535));
        if !valid {
            return Err(format!("the registry port {port:?} is not a port number"));
        }
    }
    let labels_valid = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    if !labels_valid {
        return Err(not_a_host());
    }
    if port.is_none() && !host.contains('.') && host != "localhost" {
        return Err(not_a_host());
    }
    Ok(())
}

/// A path component of a repository name:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn check_component(component: &str) -> Result<(), String> {
    if component.is_empty() {
        return Err("its name has an empty path component".into());
    }
    if component.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!(
            "repository names must be lowercase ({:?} would do)",
            component.to_ascii_lowercase()
        ));
    }
    let bad = || {
        format!(
            "the name component {component:?} may only hold a-z, 0-9 and single \".\" or \"_\", \
             \"__\" or dashes between them"
        )
    };
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return Err(bad());
    }
    let mut separator = String::new();
    for &b in bytes {
        if alnum(b) {
            let allowed = separator.is_empty()
                || separator == "."
                || separator == "_"
                || separator == "__"
                || separator.bytes().all(|s| s == b'-');
            if !allowed {
                return Err(bad());
            }
            separator.clear();
        } else if matches!(b, b'.' | b'_' | b'-') {
            separator.push(b as char);
        } else {
            return Err(bad());
        }
    }
    Ok(())
}

fn check_tag(tag: &str) -> Result<String, String> {
    let valid = !tag.is_empty()
        && tag.len() <= 128
        && tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        && !tag.starts_with(['.', '-']);
    if valid {
        Ok(tag.to_owned())
    } else {
        Err(format!(
            "the tag {tag:?} is not a tag (up to 128 of A-Z, a-z, 0-9, \"_\", \".\" and \"-\", \
             not starting with \".\" or \"-\")"
        ))
    }
}

fn check_digest(digest: &str) -> Result<String, String> {
    let hex_len = match digest.split_once(':') {
        Some(("sha256", hex)) => Some((hex, 64)),
        Some(("sha512", hex)) => Some((hex, 128)),
        _ => None,
    };
    match hex_len {
        Some((hex, len))
            if hex.len() == len && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) =>
        {
            Ok(digest.to_owned())
        }
        _ => Err(format!(
            "{digest:?} is not a digest (sha256: and 64 lowercase hex digits)"
        )),
    }
}

// ---------------------------------------------------------------------------
// Export
// ---------------------------------------------------------------------------

/// Pushes the commit that `app/ID/ARCH/stable` (or else
/// `runtime/ID/ARCH/stable`) points to in `repo` to `image`
/// (REGISTRY/NAME:TAG, such as `127.0.0.1:5000/apps/org.appbox.wc:stable`;
/// registries want lowercase names) as an OCI image made by ostree-ext's
/// encapsulation, carrying the commit's detached metadata (its signatures).
///
/// `insecure` allows a registry that speaks plain HTTP or has a certificate
/// that is not trusted: only for a registry on this machine or a trusted
/// network. Credentials are skopeo's (`skopeo login`). Returns the commit
/// and the digest of the pushed manifest.
///
/// Runs ostree-ext's async code on a runtime of its own, so it must not be
/// called from inside a tokio runtime (it returns an error if it is).
pub fn export_image(
    repo: &Repo,
    id: &str,
    image: &str,
    insecure: bool,
) -> Result<OciExport, OciError> {
    let reference = ImageRef::parse(image)?;
    if reference.tag.is_none() || reference.digest.is_some() {
        return Err(OciError::InvalidReference {
            reference: clean(image),
            reason: "a push needs a tag and no digest (a digest names content that exists already)"
                .into(),
        });
    }
    let (exported, detached) = commit_to_export(repo, id)?;
    let ImportedBundle {
        commit, ref_name, ..
    } = exported;
    not_in_runtime("export_image")?;

    let staging = staging_dir(repo)?;
    let layout = staging.path().join("image");
    let encapsulate_error = |message: String| OciError::Encapsulate {
        commit: commit.clone(),
        message,
    };
    let layout_name = layout
        .to_str()
        .ok_or_else(|| encapsulate_error("the staging path is not UTF-8".into()))?
        .to_owned();
    let labels = BTreeMap::from([
        (ID_LABEL.to_owned(), id.to_owned()),
        (REF_LABEL.to_owned(), ref_name.clone()),
    ]);
    let config = Config {
        labels: Some(labels),
        cmd: None,
    };
    let dest = ImageReference {
        transport: Transport::OciDir,
        name: layout_name.clone(),
    };
    runtime()?
        .block_on(ostree_ext::container::encapsulate(
            repo.ostree(),
            &commit,
            &config,
            Some(ExportOpts::default()),
            &dest,
        ))
        .map_err(|e| encapsulate_error(clean(&format!("{e:#}"))))?;

    // Read the image back the way an import will: this proves the signatures
    // travel in it.
    let scanned = read_back(&layout).map_err(encapsulate_error)?;
    if scanned.commit.as_deref() != Some(commit.as_str()) {
        return Err(encapsulate_error(format!(
            "the image holds commit {} instead",
            scanned.commit.as_deref().unwrap_or("(none)")
        )));
    }
    if scanned.commitmeta != detached {
        return Err(OciError::SignaturesLost { commit });
    }

    let target = reference.to_string();
    let digest = push(&layout_name, staging.path(), &target, insecure)?;
    Ok(OciExport {
        commit,
        ref_name,
        image: target,
        digest,
    })
}

/// Reads the OCI directory ostree-ext wrote and scans its commit layer.
fn read_back(layout: &Path) -> Result<Scanned, String> {
    let read =
        |path: PathBuf| fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()));
    let index: serde_json::Value = serde_json::from_slice(&read(layout.join("index.json"))?)
        .map_err(|e| format!("its index.json does not parse: {e}"))?;
    let digest = index["manifests"][0]["digest"]
        .as_str()
        .ok_or("its index.json names no manifest")?;
    let blob = |digest: &str| -> Result<PathBuf, String> {
        match digest.strip_prefix("sha256:") {
            Some(hex) if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                Ok(layout.join("blobs/sha256").join(hex))
            }
            _ => Err(format!("{digest:?} is not a sha256 digest")),
        }
    };
    let manifest: ImageManifest = serde_json::from_slice(&read(blob(digest)?)?)
        .map_err(|e| format!("its manifest does not parse: {e}"))?;
    let layer = manifest
        .layers()
        .first()
        .ok_or("its manifest has no layer")?;
    let compression = compression_of(layer.media_type())
        .ok_or_else(|| format!("its layer has the media type {}", layer.media_type()))?;
    scan_layer(
        &blob(layer.digest().as_ref())?,
        compression,
        Role::Commit,
        &mut Budget::default(),
    )
}

/// Pushes the OCI directory `layout` to `target` with skopeo; returns the
/// manifest digest.
fn push(layout: &str, staging: &Path, target: &str, insecure: bool) -> Result<String, OciError> {
    let digest_file = staging.join("digest");
    let mut command = Command::new("skopeo");
    // The source is the image just made here, so the signature policy (which
    // is about trusting a source) has nothing to say about it.
    command.args(["copy", "--insecure-policy", "--quiet", "--digestfile"]);
    command.arg(&digest_file);
    if insecure {
        command.arg("--dest-tls-verify=false");
    }
    command.arg(format!("oci:{layout}"));
    command.arg(format!("docker://{target}"));
    command.stdin(Stdio::null()).stdout(Stdio::null());
    let failed = |message: String| OciError::Push {
        image: target.to_owned(),
        hint: hint(&message),
        message,
    };
    let output = command
        .output()
        .map_err(|e| failed(format!("cannot run skopeo: {e}; is skopeo installed?")))?;
    if !output.status.success() {
        return Err(failed(skopeo_message(&output.stderr, output.status)));
    }
    let digest = fs::read_to_string(&digest_file).map_err(io_error("read", &digest_file))?;
    let digest = digest.trim();
    check_digest(digest).map_err(|e| failed(format!("skopeo reported a bad digest: {e}")))?;
    Ok(digest.to_owned())
}

/// skopeo's error, without its log decoration.
fn skopeo_message(stderr: &[u8], status: std::process::ExitStatus) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let line = match line.split_once("msg=\"") {
        Some((_, rest)) => rest.strip_suffix('"').unwrap_or(rest).replace("\\\"", "\""),
        None => line.to_owned(),
    };
    if line.is_empty() {
        format!("skopeo failed ({status})")
    } else {
        clean(&line)
    }
}

/// What to do about a registry error, when it is clear.
fn hint(message: &str) -> &'static str {
    let has = |needle: &str| message.contains(needle);
    if has("server gave HTTP response to HTTPS client") {
        "; the registry speaks plain HTTP, which is only allowed (the insecure option) for a \
         registry on this machine or a trusted network"
    } else if has("x509:") || has("certificate") {
        "; the registry's TLS certificate is not trusted"
    } else if has("connection refused")
        || has("no such host")
        || has("i/o timeout")
        || has("network is unreachable")
    {
        "; check that the registry is running and that its host and port are right"
    } else if has("unauthorized") || has("authentication required") || has("denied") {
        "; log in first (`skopeo login REGISTRY`) or check that you may use this repository"
    } else {
        ""
    }
}

// ---------------------------------------------------------------------------
// Import
// ---------------------------------------------------------------------------

/// Pulls `image` (REGISTRY/NAME:TAG or REGISTRY/NAME@sha256:…) into `repo`
/// (the user's bare-user-only repository) and returns the commit, its ref and
/// its catalog entry.
///
/// Like `bundle::import_bundle`, it sets no refs and deploys nothing: the
/// caller verifies the signature (`Repo::commit_bytes` +
/// `Repo::detached_metadata` + `sign::verify`) and only then deploys. The
/// entry comes from the commit's metadata and the ref from the entry; the
/// image's name and labels count for nothing. `insecure` allows a
/// plain-HTTP registry or an untrusted certificate.
///
/// Runs ostree-ext's async importer on a runtime of its own, so it must not
/// be called from inside a tokio runtime (it returns an error if it is).
pub fn import_image(repo: &Repo, image: &str, insecure: bool) -> Result<ImportedBundle, OciError> {
    let reference = ImageRef::parse(image)?;
    not_in_runtime("import_image")?;
    let name = reference.to_string();
    let staging = staging_dir(repo)?;
    let layout = staging.path().join("image");
    let runtime = runtime()?;
    let scanned = runtime.block_on(fetch(&reference, insecure, &layout))?;
    let commit = runtime
        .block_on(unencapsulate(repo, &layout))
        .map_err(|message| OciError::Import {
            image: name.clone(),
            repo: repo.path().to_owned(),
            message,
        })?;
    drop(runtime);
    drop(staging);
    if commit != scanned {
        return Err(OciError::Malformed {
            image: name,
            reason: format!("its layer names commit {scanned} but it imported as {commit}"),
        });
    }
    check_complete(repo, &commit).map_err(|reason| OciError::Incomplete {
        image: name,
        commit: commit.clone(),
        reason,
    })?;
    Ok(imported(repo, commit)?)
}

/// Downloads `reference` into a new OCI directory at `layout`, checking the
/// manifest, the configuration and every blob and layer. Returns the commit
/// the image's commit layer holds.
async fn fetch(reference: &ImageRef, insecure: bool, layout: &Path) -> Result<String, OciError> {
    let image = reference.to_string();
    let fetch_error = |e: &dyn std::fmt::Display| {
        let message = clean(&e.to_string());
        let missing = ["manifest unknown", "name unknown", "not found"]
            .iter()
            .any(|m| message.contains(m));
        if missing {
            OciError::NotFound {
                image: image.clone(),
            }
        } else {
            OciError::Fetch {
                image: image.clone(),
                hint: hint(&message),
                message,
            }
        }
    };
    let malformed = |reason: String| OciError::Malformed {
        image: image.clone(),
        reason,
    };
    let not_appbox = |reason: String| OciError::NotAppbox {
        image: image.clone(),
        reason,
    };

    // skopeo's default credentials (`skopeo login`) and TLS settings.
    let config = ImageProxyConfig {
        insecure_skip_tls_verification: Some(insecure),
        ..Default::default()
    };
    let proxy = ImageProxy::new_with_config(config)
        .await
        .map_err(|e| OciError::Fetch {
            image: image.clone(),
            message: format!(
                "cannot start skopeo's image proxy: {}",
                clean(&e.to_string())
            ),
            hint: "; is skopeo (1.6 or later) installed?",
        })?;
    let opened = proxy
        .open_image(&format!("docker://{image}"))
        .await
        .map_err(|e| fetch_error(&e))?;
    let (_, raw_manifest) = proxy
        .fetch_manifest_raw_oci(&opened)
        .await
        .map_err(|e| fetch_error(&e))?;
    if raw_manifest.len() > MAX_MANIFEST_BYTES {
        return Err(OciError::TooLarge {
            image,
            what: "has a manifest of",
            limit: MAX_MANIFEST_BYTES as u64,
        });
    }
    let manifest: ImageManifest = serde_json::from_slice(&raw_manifest).map_err(|e| {
        malformed(format!(
            "its manifest is not an OCI image manifest: {}",
            clean(&e.to_string())
        ))
    })?;
    let compressions = check_manifest(&manifest).map_err(|flaw| match flaw {
        ManifestFlaw::Malformed(reason) => malformed(reason),
        ManifestFlaw::TooLarge => OciError::TooLarge {
            image: image.clone(),
            what: "has layers of",
            limit: MAX_BUNDLE_BYTES,
        },
    })?;

    let blobs = layout.join("blobs/sha256");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&blobs)
        .map_err(io_error("create", &blobs))?;

    // The configuration: ostree-ext finds the commit layer through its labels.
    let config_path = download(&proxy, &opened, manifest.config(), &blobs, &image).await?;
    // Its labels say whether it is an image of a commit at all; then it must
    // parse the way ostree-ext will read it.
    let raw_config = fs::read(&config_path).map_err(io_error("read", &config_path))?;
    let config: serde_json::Value = serde_json::from_slice(&raw_config).map_err(|e| {
        malformed(format!(
            "its configuration is not JSON: {}",
            clean(&e.to_string())
        ))
    })?;
    let label = |key: &str| config["config"]["Labels"][key].as_str();
    let labelled = label(OSTREE_COMMIT_LABEL)
        .ok_or_else(|| {
            not_appbox(format!(
                "its configuration has no {OSTREE_COMMIT_LABEL} label"
            ))
        })?
        .to_owned();
    if label(DIFFID_LABEL).is_none() {
        return Err(not_appbox(format!(
            "its configuration has no {DIFFID_LABEL} label"
        )));
    }
    if !is_checksum(&labelled) {
        return Err(malformed(format!(
            "its {OSTREE_COMMIT_LABEL} label is not a commit checksum"
        )));
    }
    serde_json::from_slice::<ImageConfiguration>(&raw_config).map_err(|e| {
        malformed(format!(
            "its configuration is not an OCI image configuration: {}",
            clean(&e.to_string())
        ))
    })?;

    // Every layer, checked before ostree-ext reads any. The first layer holds
    // the commit; any further layers hold objects only.
    let mut budget = Budget::default();
    let mut commit = None;
    for (index, (layer, compression)) in manifest.layers().iter().zip(compressions).enumerate() {
        let path = download(&proxy, &opened, layer, &blobs, &image).await?;
        let role = if index == 0 {
            Role::Commit
        } else {
            Role::Objects
        };
        let scanned = scan_layer(&path, compression, role, &mut budget).map_err(|reason| {
            malformed(format!(
                "layer {} ({}): {reason}",
                index + 1,
                layer.digest()
            ))
        })?;
        if index == 0 {
            commit = scanned.commit;
        }
    }
    let commit = commit.ok_or_else(|| malformed("it holds no commit".into()))?;
    if commit != labelled {
        return Err(malformed(format!(
            "its {OSTREE_COMMIT_LABEL} label says {labelled} but its layer holds commit {commit}"
        )));
    }

    // The manifest as the proxy gave it (converted to OCI), and the index
    // that makes the directory an OCI image layout.
    let manifest_digest = format!("sha256:{}", hex(&Sha256::digest(&raw_manifest)));
    write_new(
        &blobs.join(&manifest_digest["sha256:".len()..]),
        &raw_manifest,
    )?;
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": raw_manifest.len(),
        }],
    });
    write_new(&layout.join("index.json"), index.to_string().as_bytes())?;
    write_new(
        &layout.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    let _ = proxy.close_image(&opened).await;
    let _ = proxy.finalize().await;
    Ok(commit)
}

enum ManifestFlaw {
    Malformed(String),
    TooLarge,
}

/// Checks a manifest before anything it names is downloaded; returns how
/// each layer is compressed.
fn check_manifest(manifest: &ImageManifest) -> Result<Vec<Compression>, ManifestFlaw> {
    let malformed = |reason: String| ManifestFlaw::Malformed(reason);
    if manifest.schema_version() != 2 {
        return Err(malformed(format!(
            "its manifest has schema version {}",
            manifest.schema_version()
        )));
    }
    let layers = manifest.layers();
    if layers.is_empty() {
        return Err(malformed("its manifest lists no layer".into()));
    }
    if layers.len() > MAX_LAYERS {
        return Err(malformed(format!(
            "it has {} layers, more than the {MAX_LAYERS} allowed",
            layers.len()
        )));
    }
    if manifest.config().size() > MAX_CONFIG_BYTES {
        return Err(malformed(format!(
            "its configuration is {} bytes, more than the {MAX_CONFIG_BYTES} allowed",
            manifest.config().size()
        )));
    }
    let mut seen = BTreeSet::new();
    let mut total = 0u64;
    let mut compressions = Vec::new();
    for descriptor in std::iter::once(manifest.config()).chain(layers) {
        if *descriptor.digest().algorithm() != DigestAlgorithm::Sha256 {
            return Err(malformed(format!(
                "it uses {} digests; appbox reads sha256 ones",
                clean(descriptor.digest().algorithm().as_ref())
            )));
        }
        if !seen.insert(descriptor.digest().digest().to_owned()) {
            return Err(malformed(format!(
                "its manifest lists {} twice",
                descriptor.digest()
            )));
        }
    }
    for layer in layers {
        total = total.saturating_add(layer.size());
        if layer.size() > MAX_BUNDLE_BYTES || total > MAX_BUNDLE_BYTES {
            return Err(ManifestFlaw::TooLarge);
        }
        let compression = compression_of(layer.media_type()).ok_or_else(|| {
            malformed(format!(
                "a layer has the media type {}; appbox reads gzip-compressed or plain tar layers",
                clean(layer.media_type().as_ref())
            ))
        })?;
        compressions.push(compression);
    }
    Ok(compressions)
}

/// Reads an image manifest the way an import does before it downloads
/// anything it names: the JSON, then [`check_manifest`]. Returns the number
/// of layers, or why it is refused. Only for the fuzz targets (`tests/fuzz`).
#[doc(hidden)]
pub fn check_untrusted_manifest(json: &[u8]) -> Result<usize, String> {
    if json.len() > MAX_MANIFEST_BYTES {
        return Err("too large".into());
    }
    let manifest: ImageManifest =
        serde_json::from_slice(json).map_err(|e| clean(&e.to_string()))?;
    check_manifest(&manifest)
        .map(|compressions| compressions.len())
        .map_err(|flaw| match flaw {
            ManifestFlaw::Malformed(reason) => reason,
            ManifestFlaw::TooLarge => "its layers are too large".into(),
        })
}

/// Parses an image reference (REGISTRY/NAME[:TAG][@DIGEST]) as
/// `import_image` and `export_image` do; returns it as they print it. Only
/// for the fuzz targets (`tests/fuzz`).
#[doc(hidden)]
pub fn parse_image_reference(text: &str) -> Result<String, String> {
    ImageRef::parse(text)
        .map(|image| image.to_string())
        .map_err(|e| e.to_string())
}

/// How a layer of `media_type` is compressed, when appbox reads it.
fn compression_of(media_type: &MediaType) -> Option<Compression> {
    match media_type {
        MediaType::ImageLayerGzip => Some(Compression::Gzip),
        MediaType::ImageLayer => Some(Compression::None),
        MediaType::Other(t) if t == DOCKER_TAR => Some(Compression::None),
        MediaType::Other(t) if t == DOCKER_TAR_GZIP => Some(Compression::Gzip),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes the new file `path` (never following or replacing anything).
fn write_new(path: &Path, contents: &[u8]) -> Result<(), OciError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error("create", path))?;
    file.write_all(contents).map_err(io_error("write", path))?;
    Ok(())
}

/// Downloads the blob `descriptor` names into `blobs`, checking its size and
/// sha256 as it comes. Returns its path.
async fn download(
    proxy: &ImageProxy,
    opened: &OpenedImage,
    descriptor: &Descriptor,
    blobs: &Path,
    image: &str,
) -> Result<PathBuf, OciError> {
    let expected = descriptor.digest().digest().to_owned();
    let size = descriptor.size();
    let path = blobs.join(&expected);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_error("create", &path))?;
    let (mut reader, driver) = proxy
        .get_blob(opened, descriptor.digest(), size)
        .await
        .map_err(|e| OciError::Fetch {
            image: image.to_owned(),
            message: format!(
                "cannot fetch blob {}: {}",
                descriptor.digest(),
                clean(&e.to_string())
            ),
            hint: "",
        })?;
    let copy = async {
        let mut hasher = Sha256::new();
        let mut total = 0u64;
        let mut buffer = vec![0u8; 1 << 17];
        loop {
            let n = reader
                .read(&mut buffer)
                .await
                .map_err(|e| format!("reading it failed: {e}"))?;
            if n == 0 {
                break;
            }
            total += n as u64;
            if total > size {
                return Err(format!(
                    "it is larger than the {size} bytes its manifest says"
                ));
            }
            hasher.update(&buffer[..n]);
            file.write_all(&buffer[..n])
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        }
        if total != size {
            return Err(format!(
                "it is {total} bytes, not the {size} its manifest says"
            ));
        }
        if hex(&hasher.finalize()) != expected {
            return Err("its content does not match its digest".to_owned());
        }
        Ok(())
    };
    // The reader and the proxy's end of the pipe must make progress together.
    let (copied, driven) = tokio::join!(copy, driver);
    let failure = match (copied, driven) {
        (Err(reason), _) => Some(reason),
        (Ok(()), Err(e)) => Some(clean(&e.to_string())),
        (Ok(()), Ok(())) => None,
    };
    match failure {
        None => Ok(path),
        Some(reason) => Err(OciError::Malformed {
            image: image.to_owned(),
            reason: format!("blob {}: {reason}", descriptor.digest()),
        }),
    }
}

/// Runs ostree-ext's unverified import of the checked OCI directory at
/// `layout`. Returns the imported commit.
async fn unencapsulate(repo: &Repo, layout: &Path) -> Result<String, String> {
    let name = layout
        .to_str()
        .ok_or("the staging path is not UTF-8")?
        .to_owned();
    let imgref = OstreeImageReference {
        sigverify: SignatureSource::ContainerPolicyAllowInsecure,
        imgref: ImageReference {
            transport: Transport::OciDir,
            name,
        },
    };
    // ostree-ext panics when the repository already has this image (it never
    // does: the directory's name is new, and nothing here writes image refs).
    match ostree_ext::container::store::query_image(repo.ostree(), &imgref.imgref) {
        Ok(None) => {}
        _ => return Err("the repository already has an image of this name".into()),
    }
    // The directory is local and private: no credentials, and skopeo runs as
    // this user (ostree-ext would otherwise run it as `nobody` for root
    // under systemd, which cannot read the repository's tmp/).
    let config = ImageProxyConfig {
        auth_anonymous: true,
        skopeo_cmd: Some(Command::new("skopeo")),
        ..Default::default()
    };
    let importer = ImageImporter::new(repo.ostree(), &imgref, config)
        .await
        .map_err(|e| clean(&format!("{e:#}")))?;
    let import = importer
        .unencapsulate()
        .await
        .map_err(|e| clean(&format!("{e:#}")))?;
    Ok(import.ostree_commit)
}

// ---------------------------------------------------------------------------
// Layer checks
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compression {
    Gzip,
    None,
}

/// Decompresses the layer at `path` and checks its tar stream (see
/// [`scan_stream`]).
fn scan_layer(
    path: &Path,
    compression: Compression,
    role: Role,
    budget: &mut Budget,
) -> Result<Scanned, String> {
    let file = File::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let file = BufReader::with_capacity(1 << 17, file);
    let mut inner: Box<dyn Read> = match compression {
        Compression::Gzip => Box::new(GzDecoder::new(file)),
        Compression::None => Box::new(file),
    };
    scan_stream(&mut inner, None, role, budget, Whole::Image).map_err(|flaw| match flaw {
        Flaw::Truncated(reason) | Flaw::Malformed(reason) => reason,
        Flaw::Damaged(reason) => format!("it is damaged: {}", clean(&reason)),
        Flaw::Copy(e) | Flaw::Read(e) => format!("it is damaged: {}", clean(&e.to_string())),
        Flaw::TooLarge => {
            format!("the image's layers unpack to more than the {MAX_UNPACKED_BYTES} bytes allowed")
        }
    })
}

// ---------------------------------------------------------------------------
// Staging
// ---------------------------------------------------------------------------

/// A private directory (mode 0700) for an image on its way. It lives in the
/// repository's `tmp/`, on the same filesystem as the objects; skopeo's `oci:`
/// transport reads a ":" in a path as a tag, so a path with one falls back to
/// the system's temporary directory.
fn staging_dir(repo: &Repo) -> Result<Staging, OciError> {
    let usable = |dir: &Path| dir.is_dir() && dir.to_str().is_some_and(|s| !s.contains(':'));
    let tmp = repo.path().join("tmp");
    let dir = [tmp, repo.path().to_owned(), std::env::temp_dir()]
        .into_iter()
        .find(|dir| usable(dir))
        .ok_or_else(|| OciError::Io {
            what: "find a staging directory (one whose path has no \":\") for",
            path: repo.path().to_owned(),
            source: io::Error::other("no usable directory"),
        })?;
    Ok(Staging::new_dir(&dir, STAGING)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::build::ref_name;
    use crate::store::catalog::Entry;
    use crate::store::manifest::Kind;
    use crate::store::ostree_tar::test_support::{
        self, assert_arrived, dest_repo, gzip, tar_of, truncated_tar, TempDir,
    };
    use crate::store::ostree_tar::NO_CANCEL;
    use crate::store::sign::SecretKey;
    use std::net::{TcpListener, TcpStream};
    use std::process::Child;
    use std::time::{Duration, Instant};

    const ID: &str = "org.example.Pushed";

    /// A `docker-registry` serving plain HTTP on a free loopback port, with
    /// its storage in a temporary directory. Dropping it (also when a test
    /// fails) stops the registry by pid (SIGTERM, then waits) and removes the
    /// directory.
    struct Registry {
        child: Child,
        port: u16,
        dir: TempDir,
    }

    impl Registry {
        const BINARY: &'static str = "/usr/bin/docker-registry";

        /// None when docker-registry or skopeo is not installed.
        fn start() -> Option<Self> {
            let skopeo = Command::new("skopeo")
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !Path::new(Self::BINARY).exists() || !skopeo {
                eprintln!("skipping: {} or skopeo is not installed", Self::BINARY);
                return None;
            }
            // The port is free when asked for, but someone may take it before
            // the registry binds it: try a few.
            let mut log = String::new();
            for _ in 0..5 {
                let dir = TempDir::new("registry");
                let port = TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port();
                let config = dir.join("config.yml");
                fs::write(
                    &config,
                    format!(
                        "version: 0.1\n\
                         log:\n  level: error\n  accesslog:\n    disabled: true\n\
                         storage:\n  filesystem:\n    rootdirectory: {}\n\
                         http:\n  addr: 127.0.0.1:{port}\n",
                        dir.join("storage").display()
                    ),
                )
                .unwrap();
                let log_file = File::create(dir.join("registry.log")).unwrap();
                let child = Command::new(Self::BINARY)
                    .arg("serve")
                    .arg(&config)
                    .stdin(Stdio::null())
                    .stdout(log_file.try_clone().unwrap())
                    .stderr(log_file)
                    .spawn()
                    .unwrap();
                let mut registry = Registry { child, port, dir };
                if registry.wait_ready() {
                    return Some(registry);
                }
                registry.stop();
                log = fs::read_to_string(registry.dir.join("registry.log")).unwrap_or_default();
            }
            panic!("docker-registry did not start: {log}");
        }

        /// Waits until `GET /v2/` answers 200; false when the registry exited
        /// or did not answer within 20 seconds.
        fn wait_ready(&mut self) -> bool {
            let deadline = Instant::now() + Duration::from_secs(20);
            while Instant::now() < deadline {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return false;
                }
                if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
                    let request =
                        "GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
                    let mut answer = String::new();
                    if stream.write_all(request.as_bytes()).is_ok()
                        && stream.read_to_string(&mut answer).is_ok()
                        && answer.starts_with("HTTP/1.1 200")
                    {
                        return true;
                    }
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            false
        }

        fn stop(&mut self) {
            if matches!(self.child.try_wait(), Ok(None)) {
                let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                let deadline = Instant::now() + Duration::from_secs(10);
                while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                if matches!(self.child.try_wait(), Ok(None)) {
                    // SIGKILL, by pid.
                    let _ = self.child.kill();
                }
            }
            let _ = self.child.wait();
        }

        fn image(&self, name: &str) -> String {
            format!("127.0.0.1:{}/{name}", self.port)
        }
    }

    impl Drop for Registry {
        fn drop(&mut self) {
            self.stop();
        }
    }

    fn entry() -> Entry {
        test_support::entry(ID, "Pushed", "Travels through a registry")
    }

    /// The source repository with one signed commit of `ID` and its catalog
    /// entry.
    fn source_repo(dir: &TempDir, key: &SecretKey) -> (Repo, String) {
        test_support::source_repo(dir, &entry(), Some(key), true)
    }

    fn assert_no_leftovers(repo: &Repo) {
        test_support::assert_no_leftovers(repo, STAGING);
    }

    /// Runs skopeo; its output, or a panic with its message.
    fn skopeo(args: &[&str]) -> Vec<u8> {
        let output = Command::new("skopeo")
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "skopeo {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        output.stdout
    }

    fn skopeo_inspect(image: &str) -> serde_json::Value {
        let image = format!("docker://{image}");
        serde_json::from_slice(&skopeo(&["inspect", "--tls-verify=false", &image])).unwrap()
    }

    fn sha256(bytes: &[u8]) -> String {
        format!("sha256:{}", hex(&Sha256::digest(bytes)))
    }

    /// Writes an OCI directory holding one image of one gzip layer made of
    /// `tar` with `labels`, and pushes it to `image` with skopeo.
    fn push_handmade(dir: &Path, tar: &[u8], labels: serde_json::Value, image: &str) {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).unwrap();
        let put = |bytes: &[u8]| {
            let digest = sha256(bytes);
            fs::write(blobs.join(&digest[7..]), bytes).unwrap();
            serde_json::json!({ "digest": digest, "size": bytes.len() })
        };
        let layer = gzip(tar);
        let config = serde_json::json!({
            "architecture": "amd64",
            "os": "linux",
            "config": { "Labels": labels },
            "rootfs": { "type": "layers", "diff_ids": [sha256(tar)] },
            "history": [{ "created_by": "hand" }],
        });
        let mut config_descriptor = put(config.to_string().as_bytes());
        config_descriptor["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
        let mut layer_descriptor = put(&layer);
        layer_descriptor["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip".into();
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": config_descriptor,
            "layers": [layer_descriptor],
        });
        let mut manifest_descriptor = put(manifest.to_string().as_bytes());
        manifest_descriptor["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
        fs::write(
            dir.join("index.json"),
            serde_json::json!({ "schemaVersion": 2, "manifests": [manifest_descriptor] })
                .to_string(),
        )
        .unwrap();
        fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        skopeo(&[
            "copy",
            "--insecure-policy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci:{}", dir.display()),
            &format!("docker://{image}"),
        ]);
    }

    #[test]
    fn a_signed_app_round_trips_through_a_registry() {
        let started = Instant::now();
        let Some(registry) = Registry::start() else {
            return;
        };
        let dir = TempDir::new("roundtrip");
        let key = SecretKey::generate();
        let (source, commit) = source_repo(&dir, &key);
        let image = registry.image("apps/org.example.pushed:stable");

        let pushed = export_image(&source, ID, &image, true).unwrap();
        assert_eq!(pushed.commit, commit);
        assert_eq!(pushed.ref_name, ref_name(Kind::App, ID));
        assert_eq!(pushed.image, image);
        check_digest(&pushed.digest).unwrap();
        // Nothing of the export stays in the source repository's tmp/.
        assert!(!fs::read_dir(source.path().join("tmp")).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(&format!("{STAGING}-"))));

        // What skopeo sees: the digest export reported, and the labels.
        let inspected = skopeo_inspect(&image);
        assert_eq!(inspected["Digest"], pushed.digest.as_str());
        assert_eq!(inspected["Labels"][OSTREE_COMMIT_LABEL], commit.as_str());
        assert_eq!(inspected["Labels"][ID_LABEL], ID);
        assert_eq!(
            inspected["Labels"][REF_LABEL],
            ref_name(Kind::App, ID).as_str()
        );

        let dest = dest_repo(&dir, "dest");
        let imported = import_image(&dest, &image, true).unwrap();
        assert_eq!(imported.commit, commit);
        assert_eq!(imported.ref_name, ref_name(Kind::App, ID));
        assert_eq!(imported.entry, entry());
        assert_no_leftovers(&dest);

        let detached = assert_arrived(&dir, &source, &dest, &commit, &key);

        // By digest, into another repository: the same commit.
        let by_digest = format!(
            "{}@{}",
            registry.image("apps/org.example.pushed"),
            pushed.digest
        );
        let other = dest_repo(&dir, "other");
        assert_eq!(import_image(&other, &by_digest, true).unwrap(), imported);
        assert_eq!(
            other.detached_metadata(&commit).unwrap().as_ref(),
            Some(&detached)
        );

        // A missing image, a missing tag: a clear error.
        for missing in [
            registry.image("apps/org.example.absent:stable"),
            registry.image("apps/org.example.pushed:beta"),
        ] {
            let err = import_image(&dest, &missing, true).unwrap_err();
            assert!(matches!(err, OciError::NotFound { .. }), "{err}");
            assert!(err.to_string().contains(&missing), "{err}");
        }

        // Plain HTTP without the insecure option: refused, with the reason.
        let err = import_image(&dest, &image, false).unwrap_err();
        assert!(matches!(err, OciError::Fetch { .. }), "{err}");
        assert!(err.to_string().contains("plain HTTP"), "{err}");
        let err = export_image(&source, ID, &image, false).unwrap_err();
        assert!(matches!(err, OciError::Push { .. }), "{err}");
        assert!(err.to_string().contains("plain HTTP"), "{err}");

        // A container image that is not an appbox image.
        let plain = registry.image("apps/plain:latest");
        push_handmade(
            &dir.join("plain"),
            &tar_of(&[("etc/passwd", 0o644, b"root\n")]),
            serde_json::json!({ "maintainer": "someone" }),
            &plain,
        );
        let err = import_image(&dest, &plain, true).unwrap_err();
        assert!(matches!(err, OciError::NotAppbox { .. }), "{err}");

        // A hostile layer that ostree-ext would read a short entry of: an
        // error, not a panic, and nothing of it is imported.
        let hostile = registry.image("apps/hostile:latest");
        let tar = truncated_tar(&commit);
        push_handmade(
            &dir.join("hostile"),
            &tar,
            serde_json::json!({
                OSTREE_COMMIT_LABEL: commit,
                DIFFID_LABEL: sha256(&tar),
            }),
            &hostile,
        );
        let fresh = dest_repo(&dir, "fresh");
        let err = import_image(&fresh, &hostile, true).unwrap_err();
        assert!(matches!(err, OciError::Malformed { .. }), "{err}");
        assert!(
            err.to_string().contains("ends after 100 of its 4096"),
            "{err}"
        );
        assert!(!fresh
            .ostree()
            .has_object(ostree_ext::ostree::ObjectType::Commit, &commit, NO_CANCEL)
            .unwrap());
        assert_no_leftovers(&fresh);

        // A registry that is not there.
        let port = registry.port;
        drop(registry);
        let gone = format!("127.0.0.1:{port}/apps/org.example.pushed:stable");
        let err = import_image(&dest, &gone, true).unwrap_err();
        assert!(matches!(err, OciError::Fetch { .. }), "{err}");
        assert!(err.to_string().contains("registry is running"), "{err}");
        assert_no_leftovers(&dest);
        eprintln!("registry round trip took {:?}", started.elapsed());
    }

    #[test]
    fn references_are_checked() {
        for good in [
            "127.0.0.1:5000/apps/org.appbox.wc:stable",
            "localhost/app:1.0",
            "ghcr.io/example/deep/path/app-name__x:v1.2-rc_3",
            "registry.example.com:443/a/b@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "example.com/a:tag@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            let parsed = ImageRef::parse(good).unwrap();
            assert_eq!(parsed.to_string(), good);
        }
        let parsed = ImageRef::parse("127.0.0.1:5000/apps/app:stable").unwrap();
        assert_eq!(parsed.registry, "127.0.0.1:5000");
        assert_eq!(parsed.repository, "apps/app");
        assert_eq!(parsed.tag.as_deref(), Some("stable"));

        for (bad, why) in [
            ("", "empty"),
            ("127.0.0.1:5000/apps/org.appbox.Wc:stable", "lowercase"),
            ("127.0.0.1:5000/apps/app", "neither a tag nor a digest"),
            ("apps/app:stable", "not a registry host"),
            ("app:stable", "names no registry"),
            ("docker://example.com/app:stable", "transport"),
            ("example.com/../app:stable", ".."),
            ("example.com/a..b:stable", ".."),
            ("example.com/app: stable", "whitespace"),
            ("example.com/app:sta\nble", "whitespace"),
            ("example.com/app\u{7}:stable", "control"),
            ("example.com/äpp:stable", "ASCII"),
            ("example.com:99999/app:stable", "port"),
            ("example.com:/app:stable", "port"),
            ("exa_mple.com/app:stable", "registry host"),
            ("example.com//app:stable", "empty path component"),
            ("example.com/app-:stable", "name component"),
            ("example.com/a___b:stable", "name component"),
            ("example.com/app:-x", "not a tag"),
            ("example.com/app:", "not a tag"),
            ("example.com/app@sha256:abc", "not a digest"),
            ("example.com/app@md5:0123", "not a digest"),
        ] {
            let err = ImageRef::parse(bad).unwrap_err();
            assert!(
                matches!(err, OciError::InvalidReference { .. }),
                "{bad}: {err}"
            );
            let message = err.to_string();
            assert!(message.contains(why), "{bad:?}: {message}");
            assert!(message.contains("REGISTRY/NAME:TAG"), "{message}");
            assert!(
                !message.contains('\n') && !message.contains('\u{7}'),
                "{message}"
            );
        }
        let long = format!("example.com/{}:x", "a".repeat(300));
        assert!(ImageRef::parse(&long).is_err());
    }

    #[test]
    fn exports_are_checked_before_anything_is_made() {
        let dir = TempDir::new("export-checks");
        let key = SecretKey::generate();
        let (source, _) = source_repo(&dir, &key);
        let image = "127.0.0.1:9/apps/app:stable";
        let err = export_image(&source, ID, "127.0.0.1:9/apps/app", true).unwrap_err();
        assert!(matches!(err, OciError::InvalidReference { .. }), "{err}");
        let digest = "127.0.0.1:9/apps/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let err = export_image(&source, ID, digest, true).unwrap_err();
        assert!(err.to_string().contains("needs a tag"), "{err}");
        let err = export_image(&source, "../etc", image, true).unwrap_err();
        assert!(matches!(err, OciError::InvalidId { .. }), "{err}");
        let err = export_image(&source, "org.example.Absent", image, true).unwrap_err();
        assert!(matches!(err, OciError::NotInRepo { .. }), "{err}");
        assert!(
            err.to_string().contains("runtime/org.example.Absent/"),
            "{err}"
        );
    }

    #[test]
    fn calling_from_inside_a_runtime_is_an_error() {
        let dir = TempDir::new("runtime");
        let dest = dest_repo(&dir, "dest");
        let runtime = runtime().unwrap();
        let err = runtime
            .block_on(async { import_image(&dest, "127.0.0.1:9/apps/app:stable", true) })
            .unwrap_err();
        assert!(matches!(err, OciError::Runtime(_)), "{err}");
    }

    #[test]
    fn a_damaged_gzip_layer_is_refused() {
        let c = "a86d80a3e9ff77c2e3144c787b7769b300f91ffd770221aac27bab854960b964";
        let dir = TempDir::new("scan");
        let layer = dir.join("layer");
        let mut bytes = gzip(&truncated_tar(c));
        let last = bytes.len() - 5;
        bytes[last] ^= 0xff;
        fs::write(&layer, &bytes).unwrap();
        let err = scan_layer(
            &layer,
            Compression::Gzip,
            Role::Commit,
            &mut Budget::default(),
        )
        .unwrap_err();
        assert!(
            err.contains("damaged") || err.contains("ends after"),
            "{err}"
        );
    }

    #[test]
    fn manifests_are_checked_before_any_download() {
        let digest = |n: u8| format!("sha256:{}", format!("{n:02x}").repeat(32));
        let manifest = |layers: serde_json::Value| -> ImageManifest {
            serde_json::from_value(serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": digest(0),
                    "size": 100,
                },
                "layers": layers,
            }))
            .unwrap()
        };
        let layer = |n: u8, media: &str, size: u64| serde_json::json!({ "mediaType": media, "digest": digest(n), "size": size });
        let gz = "application/vnd.oci.image.layer.v1.tar+gzip";

        let ok = manifest(serde_json::json!([
            layer(1, gz, 10),
            layer(2, "application/vnd.oci.image.layer.v1.tar", 10)
        ]));
        assert!(matches!(
            check_manifest(&ok).ok().as_deref(),
            Some([Compression::Gzip, Compression::None])
        ));
        let flaw = |m: &ImageManifest| match check_manifest(m) {
            Err(ManifestFlaw::Malformed(reason)) => reason,
            Err(ManifestFlaw::TooLarge) => "too large".into(),
            Ok(_) => "accepted".into(),
        };
        assert!(flaw(&manifest(serde_json::json!([]))).contains("no layer"));
        let zstd = manifest(serde_json::json!([layer(
            1,
            "application/vnd.oci.image.layer.v1.tar+zstd",
            10
        )]));
        assert!(flaw(&zstd).contains("media type"));
        let twice = manifest(serde_json::json!([layer(1, gz, 10), layer(1, gz, 10)]));
        assert!(flaw(&twice).contains("twice"));
        let huge = manifest(serde_json::json!([layer(1, gz, MAX_BUNDLE_BYTES + 1)]));
        assert_eq!(flaw(&huge), "too large");
        let many: Vec<_> = (1..=(MAX_LAYERS + 1) as u8)
            .map(|n| layer(n, gz, 1))
            .collect();
        assert!(flaw(&manifest(serde_json::json!(many))).contains("layers"));
    }
}
