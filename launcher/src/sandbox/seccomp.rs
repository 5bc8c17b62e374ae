//! Compiles a [`SeccompPolicy`] to BPF with seccompiler, and installs it.
//!
//! seccompiler gives one action per filter, so the policy becomes one filter per
//! error code. The kernel runs them all and the strictest answer wins.

use std::collections::BTreeMap;

use seccompiler::{
    sock_filter, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition,
    SeccompFilter, SeccompRule, TargetArch,
};

use crate::seccomp_policy::SeccompPolicy;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("the seccomp policy names an unknown system call {0}")]
    UnknownSyscall(String),
    #[error("cannot build the seccomp filter")]
    Build(#[from] seccompiler::BackendError),
    #[error("cannot compile the seccomp filter")]
    Compile(#[from] seccompiler::Error),
    #[error("seccomp is only supported on x86_64 so far")]
    UnsupportedArch,
}

fn syscall_number(name: &str) -> Option<i64> {
    let nr = match name {
        "syslog" => libc::SYS_syslog,
        "uselib" => libc::SYS_uselib,
        "acct" => libc::SYS_acct,
        "quotactl" => libc::SYS_quotactl,
        "add_key" => libc::SYS_add_key,
        "keyctl" => libc::SYS_keyctl,
        "request_key" => libc::SYS_request_key,
        "move_pages" => libc::SYS_move_pages,
        "mbind" => libc::SYS_mbind,
        "get_mempolicy" => libc::SYS_get_mempolicy,
        "set_mempolicy" => libc::SYS_set_mempolicy,
        "migrate_pages" => libc::SYS_migrate_pages,
        "unshare" => libc::SYS_unshare,
        "setns" => libc::SYS_setns,
        "mount" => libc::SYS_mount,
        "umount2" => libc::SYS_umount2,
        "pivot_root" => libc::SYS_pivot_root,
        "chroot" => libc::SYS_chroot,
        "open_tree" => libc::SYS_open_tree,
        "move_mount" => libc::SYS_move_mount,
        "fsopen" => libc::SYS_fsopen,
        "fsconfig" => libc::SYS_fsconfig,
        "fsmount" => libc::SYS_fsmount,
        "fspick" => libc::SYS_fspick,
        "mount_setattr" => libc::SYS_mount_setattr,
        "perf_event_open" => libc::SYS_perf_event_open,
        "ptrace" => libc::SYS_ptrace,
        "bpf" => libc::SYS_bpf,
        "io_uring_setup" => libc::SYS_io_uring_setup,
        "io_uring_enter" => libc::SYS_io_uring_enter,
        "io_uring_register" => libc::SYS_io_uring_register,
        "userfaultfd" => libc::SYS_userfaultfd,
        "kexec_load" => libc::SYS_kexec_load,
        "kexec_file_load" => libc::SYS_kexec_file_load,
        "init_module" => libc::SYS_init_module,
        "finit_module" => libc::SYS_finit_module,
        "delete_module" => libc::SYS_delete_module,
        "clock_settime" => libc::SYS_clock_settime,
        "clock_adjtime" => libc::SYS_clock_adjtime,
        "adjtimex" => libc::SYS_adjtimex,
        "settimeofday" => libc::SYS_settimeofday,
        "swapon" => libc::SYS_swapon,
        "swapoff" => libc::SYS_swapoff,
        "reboot" => libc::SYS_reboot,
        "open_by_handle_at" => libc::SYS_open_by_handle_at,
        "name_to_handle_at" => libc::SYS_name_to_handle_at,
        "lookup_dcookie" => libc::SYS_lookup_dcookie,
        "vhangup" => libc::SYS_vhangup,
        "iopl" => libc::SYS_iopl,
        "ioperm" => libc::SYS_ioperm,
        "fanotify_init" => libc::SYS_fanotify_init,
        "clone3" => libc::SYS_clone3,
        _ => return None,
    };
    Some(nr)
}

fn number(name: &str) -> Result<i64, SeccompError> {
    syscall_number(name).ok_or_else(|| SeccompError::UnknownSyscall(name.to_owned()))
}

fn condition(
    arg: u8,
    len: SeccompCmpArgLen,
    op: SeccompCmpOp,
    value: u64,
) -> Result<SeccompCondition, SeccompError> {
    Ok(SeccompCondition::new(arg, len, op, value)?)
}

fn filter(rules: BTreeMap<i64, Vec<SeccompRule>>, errno: i32) -> Result<BpfProgram, SeccompError> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        TargetArch::x86_64,
    )?;
    Ok(filter.try_into()?)
}

/// x32 system calls share x86_64's audit arch but set bit 30 of the number;
/// without this check they would miss every rule (seccompiler only checks the arch).
fn kill_x32(program: &mut BpfProgram) {
    // BPF_LD|BPF_W|BPF_ABS, BPF_JMP|BPF_JGE|BPF_K and BPF_RET|BPF_K.
    const BPF_LD_W_ABS: u16 = 0x20;
    const BPF_JMP_JGE_K: u16 = 0x35;
    const BPF_RET_K: u16 = 0x06;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    let check = [
        sock_filter {
            code: BPF_LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        sock_filter {
            code: BPF_JMP_JGE_K,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        sock_filter {
            code: BPF_RET_K,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_KILL_PROCESS,
        },
    ];
    // seccompiler's program opens with a three-instruction arch check that kills
    // foreign arches (i386); the x32 check goes right after it.
    let at = 3.min(program.len());
    program.splice(at..at, check);
}

/// Compiles the policy into the filters to install, in order.
pub fn compile(policy: &SeccompPolicy) -> Result<Vec<BpfProgram>, SeccompError> {
    if !cfg!(target_arch = "x86_64") {
        return Err(SeccompError::UnsupportedArch);
    }
    let mut eperm: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for name in &policy.deny {
        eperm.insert(number(name)?, Vec::new());
    }
    let ioctl_rules = policy
        .deny_ioctls
        .iter()
        .map(|(_, request)| {
            Ok(SeccompRule::new(vec![condition(
                1,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                u64::from(*request),
            )?])?)
        })
        .collect::<Result<Vec<_>, SeccompError>>()?;
    eperm.insert(libc::SYS_ioctl, ioctl_rules);
    eperm.insert(
        libc::SYS_clone,
        vec![SeccompRule::new(vec![condition(
            0,
            SeccompCmpArgLen::Qword,
            SeccompCmpOp::MaskedEq(policy.deny_clone_flags),
            policy.deny_clone_flags,
        )?])?],
    );
    let personality_conditions = policy
        .allowed_personalities
        .iter()
        .map(|p| condition(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, u64::from(*p)))
        .collect::<Result<Vec<_>, _>>()?;
    eperm.insert(
        libc::SYS_personality,
        vec![SeccompRule::new(personality_conditions)?],
    );

    let mut enosys: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for name in &policy.unsupported {
        enosys.insert(number(name)?, Vec::new());
    }

    // Socket families: refuse every family outside the allowlist.
    let family_conditions = policy
        .allowed_socket_families
        .iter()
        .map(|f| condition(0, SeccompCmpArgLen::Dword, SeccompCmpOp::Ne, u64::from(*f)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut families: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    families.insert(libc::SYS_socket, vec![SeccompRule::new(family_conditions)?]);

    let mut first = filter(eperm, libc::EPERM)?;
    if policy.kill_foreign_abis {
        kill_x32(&mut first);
    }
    Ok(vec![
        first,
        filter(enosys, libc::ENOSYS)?,
        filter(families, libc::EAFNOSUPPORT)?,
    ])
}

/// Installs the filters on the calling thread. no_new_privs must already be set.
pub fn install(programs: &[BpfProgram]) -> Result<(), SeccompError> {
    for program in programs {
        seccompiler::apply_filter(program)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_name_is_known_and_compiles() {
        let policy = SeccompPolicy::default_for_apps();
        let programs = compile(&policy).unwrap();
        assert_eq!(programs.len(), 3);
        assert!(programs.iter().all(|p| p.len() < 4096));
    }

    #[test]
    fn x32_check_follows_the_arch_check() {
        let programs = compile(&SeccompPolicy::default_for_apps()).unwrap();
        let first = &programs[0];
        assert_eq!(first[2].k, libc::SECCOMP_RET_KILL_PROCESS, "arch check");
        assert_eq!(first[4].k, 0x4000_0000, "x32 bit");
        assert_eq!(first[5].k, libc::SECCOMP_RET_KILL_PROCESS);
    }
}
