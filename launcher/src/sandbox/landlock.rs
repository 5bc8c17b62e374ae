//! Landlock: a second wall that mirrors the mounts. Even if a mount were wrong,
//! the app could only reach the paths the plan lists, with the access listed.
//!
//! ABI v1 is required; newer ABIs (refer, truncate, device ioctls, and the
//! scoping of abstract unix sockets and signals) are used when the kernel has them.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use landlock::{
    Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, Ruleset, RulesetAttr,
    RulesetCreatedAttr, RulesetStatus, Scope, ABI,
};

use crate::plan::{LandlockAccess, LandlockRule};
use crate::sandbox::mounts::Anchor;
use crate::sandbox::sys::{openat2, RESOLVE_NO_SYMLINKS};

#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    #[error("this kernel does not support Landlock (ABI v1, Linux 5.13 or later, with landlock in the lsm= boot list); appbox refuses to run apps without it")]
    Unsupported,
    #[error("cannot build the Landlock ruleset")]
    Ruleset(#[from] landlock::RulesetError),
    #[error("Landlock was not enforced")]
    NotEnforced,
}

/// The newest ABI whose rights appbox has been tested with.
const TESTED_ABI: ABI = ABI::V7;

/// The kernel's Landlock ABI version, or 0 without Landlock.
pub fn kernel_abi() -> i64 {
    const LANDLOCK_CREATE_RULESET_VERSION: u32 = 1;
    // SAFETY: with a null attribute and size 0 the call only reports the version.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    version.max(0)
}

/// Refuses to go on without Landlock ABI v1.
pub fn require_abi_v1() -> Result<(), LandlockError> {
    if kernel_abi() >= 1 {
        Ok(())
    } else {
        Err(LandlockError::Unsupported)
    }
}

fn access_rights(access: LandlockAccess) -> BitFlags<AccessFs> {
    use AccessFs::*;
    match access {
        LandlockAccess::ListOnly => ReadDir.into(),
        LandlockAccess::ReadOnly => Execute | ReadFile | ReadDir,
        LandlockAccess::ReadWrite => AccessFs::from_all(TESTED_ABI),
        LandlockAccess::Device => ReadFile | WriteFile | ReadDir | IoctlDev | Truncate,
        LandlockAccess::Proc => ReadFile | ReadDir | WriteFile,
    }
}

/// Whether granting truncation under a read-only rule grants nothing: the
/// rule is on a mount the launcher made read-only (recursively), and every
/// mount it made beneath the rule is read-only too.
///
/// The kernel refuses to truncate on a read-only mount (EROFS) before it asks
/// Landlock, and the mounts stay read-only: the app has no capabilities,
/// seccomp refuses every mount call, and a Landlock domain may not remount.
/// The grant is for speed: on each open Landlock also looks for the truncate
/// right, and where no rule grants it, it walks every directory up to `/`
/// (about 180 ns an open in the sandbox on this machine, where the walk also
/// crosses the mount of /usr; see `tests/bench/runtime.sh`). With it, the walk
/// stops at the rule. A read-only rule that is not on such a mount, say a
/// mistake in the mounts, keeps refusing truncation; so does every rule of
/// `appbox enter`, which makes no mounts.
fn truncation_is_refused_by_mounts<M>(
    rule: &LandlockRule,
    mounts: &BTreeMap<PathBuf, M>,
    is_read_only: impl Fn(&M) -> bool,
) -> bool {
    let beneath = (Bound::Excluded(rule.path.as_path()), Bound::Unbounded);
    matches!(
        rule.access,
        LandlockAccess::ReadOnly | LandlockAccess::ListOnly
    ) && mounts.get(&rule.path).is_some_and(&is_read_only)
        && mounts
            .range::<Path, _>(beneath)
            .take_while(|(path, _)| path.starts_with(&rule.path))
            .all(|(_, mount)| is_read_only(mount))
}

/// Restricts the calling process to `rules`. A rule whose path has an anchor
/// (the root of the mount that created it) is added on that descriptor;
/// others are opened by path, and skipped if the path does not exist.
pub fn restrict_self(
    rules: &[LandlockRule],
    anchors: &BTreeMap<PathBuf, Anchor>,
    skipped: &BTreeSet<PathBuf>,
) -> Result<(), LandlockError> {
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(AccessFs::from_all(TESTED_ABI))?
        .scope(Scope::from_all(TESTED_ABI))?
        .create()?;
    for rule in rules.iter().filter(|r| !skipped.contains(&r.path)) {
        let opened;
        let (fd, is_dir) = match anchors.get(&rule.path) {
            Some(anchor) => (anchor.fd.as_fd(), anchor.is_dir),
            None => {
                // Paths inside the sandbox are the app's to change: never follow a
                // symlink there. A path that is missing has nothing to grant.
                let Ok(fd) = openat2(None, &rule.path, libc::O_PATH, 0, RESOLVE_NO_SYMLINKS) else {
                    continue;
                };
                opened = fd;
                let is_dir = nix::sys::stat::fstat(&opened)
                    .is_ok_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
                (opened.as_fd(), is_dir)
            }
        };
        let mut rights = access_rights(rule.access);
        if truncation_is_refused_by_mounts(rule, anchors, |anchor| anchor.read_only) {
            rights |= AccessFs::Truncate;
        }
        if !is_dir {
            rights &= AccessFs::from_file(TESTED_ABI);
        }
        if !rights.is_empty() {
            ruleset = ruleset.add_rule(PathBeneath::new(fd, rights))?;
        }
    }
    let status = ruleset.restrict_self()?;
    if status.ruleset == RulesetStatus::NotEnforced {
        return Err(LandlockError::NotEnforced);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(path: &str, access: LandlockAccess) -> LandlockRule {
        LandlockRule {
            path: path.into(),
            access,
        }
    }

    /// Mount paths, each with whether it is read-only.
    fn mounts(list: &[(&str, bool)]) -> BTreeMap<PathBuf, bool> {
        list.iter()
            .map(|&(path, read_only)| (PathBuf::from(path), read_only))
            .collect()
    }

    #[test]
    fn truncation_is_granted_only_where_every_mount_beneath_is_read_only() {
        let mounts = mounts(&[
            ("/tmp", false),
            ("/usr", true),
            ("/usr/share/fonts", true),
            ("/usr2", false),
            ("/etc/ssl", true),
        ]);
        let refused =
            |rule: &LandlockRule| truncation_is_refused_by_mounts(rule, &mounts, |&ro| ro);

        assert!(refused(&rule("/usr", LandlockAccess::ReadOnly)));
        assert!(refused(&rule("/etc/ssl", LandlockAccess::ListOnly)));
        // `/` has the writable /tmp beneath it; /etc is no mount of its own.
        assert!(!refused(&rule("/", LandlockAccess::ReadOnly)));
        assert!(!refused(&rule("/etc", LandlockAccess::ReadOnly)));
        // A read-only rule on a writable mount is the mistake the grant must not hide.
        assert!(!refused(&rule("/usr2", LandlockAccess::ReadOnly)));
        // Only read-only rules are widened; the others grant what they say.
        assert!(!refused(&rule("/usr", LandlockAccess::Proc)));
        assert!(!refused(&rule("/usr", LandlockAccess::Device)));
    }

    #[test]
    fn a_writable_mount_beneath_keeps_truncation_refused() {
        let mounts = mounts(&[("/usr", true), ("/usr/local/cache", false)]);
        assert!(!truncation_is_refused_by_mounts(
            &rule("/usr", LandlockAccess::ReadOnly),
            &mounts,
            |&ro| ro
        ));
    }
}
