//! Compiles a [`SeccompPolicy`] to BPF with seccompiler, and installs it.
//!
//! seccompiler gives one action per filter, so the policy becomes one filter per
//! error code. They are then chained into a single program, where a filter's
//! "allow" jumps on to the next filter: the kernel then JIT-compiles and runs
//! one program instead of three. The filters name disjoint system calls, so the
//! result is the same as stacking them.

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
        // Linux 6.15; newer than the libc crate's table.
        "open_tree_attr" => 467,
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

// The classic BPF instructions the programs here are made of.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JMP_JA: u16 = 0x05;
const BPF_JMP_JEQ_K: u16 = 0x15;
const BPF_JMP_JGE_K: u16 = 0x35;
const BPF_RET_K: u16 = 0x06;

/// Joins filters into one program: every "allow" of a filter but the last
/// becomes a jump to the start of the next one, whose own arch check (the
/// first three instructions, already done) is dropped.
fn chain(programs: Vec<BpfProgram>) -> BpfProgram {
    let count = programs.len();
    let mut chained = BpfProgram::new();
    for (index, mut program) in programs.into_iter().enumerate() {
        if index > 0 {
            program.drain(..3);
        }
        if index + 1 < count {
            let len = program.len();
            for (pc, insn) in program.iter_mut().enumerate() {
                if insn.code == BPF_RET_K && insn.k == libc::SECCOMP_RET_ALLOW {
                    *insn = sock_filter {
                        code: BPF_JMP_JA,
                        jt: 0,
                        jf: 0,
                        k: (len - pc - 1) as u32,
                    };
                }
            }
        }
        chained.extend(program);
    }
    chained
}

/// Compiles the policy into one BPF program.
pub fn compile(policy: &SeccompPolicy) -> Result<BpfProgram, SeccompError> {
    compile_with(policy, true)
}

/// [`compile`], with or without the fast path (see [`fast_allow`]), which
/// must change no decision.
fn compile_with(policy: &SeccompPolicy, fast_path: bool) -> Result<BpfProgram, SeccompError> {
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

    let filtered: Vec<u32> = eperm
        .keys()
        .chain(enosys.keys())
        .chain(families.keys())
        .map(|nr| *nr as u32)
        .collect();
    let mut first = filter(eperm, libc::EPERM)?;
    if policy.kill_foreign_abis {
        kill_x32(&mut first);
    }
    let mut program = chain(vec![
        first,
        filter(enosys, libc::ENOSYS)?,
        filter(families, libc::EAFNOSUPPORT)?,
    ]);
    // Right after the checks of the arch (and of x32), where the filters begin.
    let at = if policy.kill_foreign_abis { 6 } else { 3 };
    if let Some(fast) = fast_allow(&filtered).filter(|_| fast_path) {
        let at = at.min(program.len());
        program.splice(at..at, fast);
    }
    Ok(program)
}

/// Where a jump of the fast path goes.
#[derive(Clone, Copy)]
enum Target {
    /// The next instruction plus this many.
    Skip(usize),
    /// The fast path's "allow".
    Allow,
    /// The filters, for a call they have a rule for.
    Filters,
}

/// A binary search over the numbers the filters have rules for, run before
/// them: seccompiler tests a call against each rule in turn, so every
/// allowed call (nearly all of them) paid for some 60 comparisons; now it
/// pays for about seven, and only the filtered calls go on to the filters.
/// `None` if the search would not fit BPF's 8-bit jumps.
fn fast_allow(filtered: &[u32]) -> Option<Vec<sock_filter>> {
    let mut numbers = filtered.to_vec();
    numbers.sort_unstable();
    numbers.dedup();
    if numbers.is_empty() {
        return None;
    }
    // (code, jump if true, jump if false, k)
    type Insn = (u16, Target, Target, u32);
    fn search(numbers: &[u32]) -> Vec<Insn> {
        if numbers.len() <= 2 {
            let mut code: Vec<Insn> = numbers
                .iter()
                .map(|nr| (BPF_JMP_JEQ_K, Target::Filters, Target::Skip(0), *nr))
                .collect();
            code.push((BPF_JMP_JA, Target::Allow, Target::Allow, 0));
            return code;
        }
        let (low, high) = numbers.split_at(numbers.len() / 2);
        let (left, right) = (search(low), search(high));
        let mut code = vec![(
            BPF_JMP_JGE_K,
            Target::Skip(left.len()),
            Target::Skip(0),
            high[0],
        )];
        code.extend(left);
        code.extend(right);
        code
    }
    let mut code = vec![(BPF_LD_W_ABS, Target::Skip(0), Target::Skip(0), 0)];
    code.extend(search(&numbers));
    let allow = code.len();
    let offset = |pc: usize, target: Target| match target {
        Target::Skip(n) => n,
        Target::Allow => allow - pc - 1,
        Target::Filters => allow - pc,
    };
    let mut program = Vec::with_capacity(code.len() + 1);
    for (pc, (op, if_true, if_false, k)) in code.into_iter().enumerate() {
        program.push(if op == BPF_JMP_JA {
            sock_filter {
                code: op,
                jt: 0,
                jf: 0,
                k: offset(pc, if_true) as u32,
            }
        } else {
            sock_filter {
                code: op,
                jt: u8::try_from(offset(pc, if_true)).ok()?,
                jf: u8::try_from(offset(pc, if_false)).ok()?,
                k,
            }
        });
    }
    program.push(sock_filter {
        code: BPF_RET_K,
        jt: 0,
        jf: 0,
        k: libc::SECCOMP_RET_ALLOW,
    });
    Some(program)
}

/// Installs the program on the calling thread. no_new_privs must already be set.
pub fn install(program: &BpfProgram) -> Result<(), SeccompError> {
    Ok(seccompiler::apply_filter(program)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const AUDIT_ARCH_I386: u32 = 0x4000_0003;

    /// Runs a classic BPF program, as the kernel would, on one system call.
    fn run(program: &BpfProgram, arch: u32, nr: i64, args: [u64; 6]) -> u32 {
        let mut data = Vec::new();
        data.extend_from_slice(&(nr as i32).to_ne_bytes());
        data.extend_from_slice(&arch.to_ne_bytes());
        data.extend_from_slice(&0u64.to_ne_bytes());
        for arg in args {
            data.extend_from_slice(&arg.to_ne_bytes());
        }
        let mut acc: u32 = 0;
        let mut pc = 0usize;
        loop {
            let insn = &program[pc];
            let (jt, jf, k) = (insn.jt as usize, insn.jf as usize, insn.k);
            pc += 1;
            match insn.code {
                0x20 => {
                    let at = k as usize;
                    acc = u32::from_ne_bytes(data[at..at + 4].try_into().unwrap());
                }
                0x54 => acc &= k,
                0x05 => pc += k as usize,
                0x15 => pc += if acc == k { jt } else { jf },
                0x25 => pc += if acc > k { jt } else { jf },
                0x35 => pc += if acc >= k { jt } else { jf },
                0x06 => return k,
                code => panic!("unexpected BPF instruction {code:#x}"),
            }
        }
    }

    fn errno(e: i32) -> u32 {
        libc::SECCOMP_RET_ERRNO | e as u32
    }

    #[test]
    fn the_chained_program_decides_like_the_policy() {
        let program = compile(&SeccompPolicy::default_for_apps()).unwrap();
        assert!(program.len() < 4096);
        let allow = libc::SECCOMP_RET_ALLOW;
        let kill = libc::SECCOMP_RET_KILL_PROCESS;
        let call = |nr: i64, args: [u64; 6]| run(&program, AUDIT_ARCH_X86_64, nr, args);
        let none = [0; 6];
        assert_eq!(call(libc::SYS_read, none), allow);
        assert_eq!(call(libc::SYS_mount, none), errno(libc::EPERM));
        assert_eq!(call(libc::SYS_bpf, none), errno(libc::EPERM));
        assert_eq!(call(libc::SYS_clone3, none), errno(libc::ENOSYS));
        assert_eq!(call(libc::SYS_socket, [1, 1, 0, 0, 0, 0]), allow, "AF_UNIX");
        assert_eq!(
            call(libc::SYS_socket, [10, 2, 0, 0, 0, 0]),
            allow,
            "AF_INET6"
        );
        assert_eq!(
            call(libc::SYS_socket, [17, 3, 0, 0, 0, 0]),
            errno(libc::EAFNOSUPPORT),
            "AF_PACKET"
        );
        assert_eq!(
            call(libc::SYS_ioctl, [0, 0x5412, 0, 0, 0, 0]),
            errno(libc::EPERM)
        );
        assert_eq!(
            call(libc::SYS_ioctl, [0, 0x5412 | 1 << 32, 0, 0, 0, 0]),
            errno(libc::EPERM),
            "TIOCSTI with high bits"
        );
        assert_eq!(
            call(libc::SYS_ioctl, [0, 0x541c, 0, 0, 0, 0]),
            errno(libc::EPERM)
        );
        assert_eq!(
            call(libc::SYS_ioctl, [0, 0x5413, 0, 0, 0, 0]),
            allow,
            "TIOCGWINSZ"
        );
        assert_eq!(
            call(libc::SYS_clone, [0x1000_0000, 0, 0, 0, 0, 0]),
            errno(libc::EPERM)
        );
        assert_eq!(call(libc::SYS_clone, [0x11, 0, 0, 0, 0, 0]), allow);
        assert_eq!(call(libc::SYS_personality, [0, 0, 0, 0, 0, 0]), allow);
        assert_eq!(
            call(libc::SYS_personality, [0xffff_ffff, 0, 0, 0, 0, 0]),
            allow
        );
        assert_eq!(
            call(libc::SYS_personality, [8, 0, 0, 0, 0, 0]),
            errno(libc::EPERM)
        );
        assert_eq!(call(0x4000_0000 | libc::SYS_getpid, none), kill, "x32");
        assert_eq!(run(&program, AUDIT_ARCH_I386, 20, none), kill, "i386");
    }

    #[test]
    fn the_fast_path_changes_no_decision() {
        let policy = SeccompPolicy::default_for_apps();
        let with = compile(&policy).unwrap();
        let without = compile_with(&policy, false).unwrap();
        assert!(with.len() > without.len(), "no fast path");
        let arg_sets: [[u64; 6]; 5] = [
            [0; 6],
            [1, 1, 0, 0, 0, 0],
            [17, 0x5412, 0, 0, 0, 0],
            [0x1000_0000, 0x541c, 0, 0, 0, 0],
            [8, 0x5412 | 1 << 32, 0, 0, 0, 0],
        ];
        for nr in 0..600 {
            for args in arg_sets {
                assert_eq!(
                    run(&with, AUDIT_ARCH_X86_64, nr, args),
                    run(&without, AUDIT_ARCH_X86_64, nr, args),
                    "system call {nr} with {args:?}"
                );
            }
        }
    }

    #[test]
    fn x32_check_follows_the_arch_check() {
        let program = compile(&SeccompPolicy::default_for_apps()).unwrap();
        assert_eq!(program[2].k, libc::SECCOMP_RET_KILL_PROCESS, "arch check");
        assert_eq!(program[4].k, 0x4000_0000, "x32 bit");
        assert_eq!(program[5].k, libc::SECCOMP_RET_KILL_PROCESS);
    }
}
