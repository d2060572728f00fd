//! The sandbox's seccomp filters: system calls that Terraform, providers, git and hooks
//! have no use for and an attacker does (debugging other processes, the kernel keyring,
//! mounts, new namespaces through `unshare`, `setns` or `clone`'s flags, kernel modules,
//! BPF, perf, userfaultfd, typing into a terminal with TIOCSTI) fail with EPERM, and
//! `clone3` with ENOSYS. bubblewrap loads them (`--add-seccomp-fd FD`) right before it
//! starts the runner, after its own setup.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

/// Refused whatever their arguments.
const REFUSED: [i64; 19] = [
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_userfaultfd,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_open_by_handle_at,
];

/// Namespace flags of `clone`: refused like `unshare`. (CLONE_NEWTIME shares its bit
/// with the exit signal in `clone` and is reachable only through `clone3`.)
const NEW_NAMESPACE_FLAGS: [u64; 7] = [
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWCGROUP as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
];

/// The two filters, as the raw `struct sock_filter` arrays bubblewrap reads
/// (`--add-seccomp-fd`, once each). Compiled once per process, not per sandbox.
pub fn programs() -> Result<&'static [Vec<u8>; 2], String> {
    static PROGRAMS: LazyLock<Result<[Vec<u8>; 2], String>> =
        LazyLock::new(|| Ok(filters()?.map(|program| to_bytes(&program))));
    PROGRAMS.as_ref().map_err(Clone::clone)
}

/// What fails with EPERM; and `clone3`, which fails with ENOSYS: its flags sit in
/// memory a filter cannot read, and ENOSYS is what makes the C library fall back to
/// `clone`, whose flags the first filter checks.
fn filters() -> Result<[BpfProgram; 2], String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())?;
    let mut refused: BTreeMap<i64, Vec<SeccompRule>> =
        REFUSED.iter().map(|&call| (call, Vec::new())).collect();
    // The request's type differs between C libraries (an unsigned long with glibc).
    #[allow(clippy::unnecessary_cast)]
    refused.insert(
        libc::SYS_ioctl,
        vec![rule(1, SeccompCmpOp::Eq, libc::TIOCSTI as u64)?],
    );
    let new_namespaces = NEW_NAMESPACE_FLAGS
        .iter()
        .map(|&flag| rule(0, SeccompCmpOp::MaskedEq(flag), flag))
        .collect::<Result<_, _>>()?;
    refused.insert(libc::SYS_clone, new_namespaces);
    let unavailable = BTreeMap::from([(libc::SYS_clone3, Vec::new())]);
    Ok([
        compile(refused, libc::EPERM, arch)?,
        compile(unavailable, libc::ENOSYS, arch)?,
    ])
}

/// A rule on one argument's low 32 bits (where every flag and request above lives).
fn rule(argument: u8, operation: SeccompCmpOp, value: u64) -> Result<SeccompRule, String> {
    let condition = SeccompCondition::new(argument, SeccompCmpArgLen::Dword, operation, value)
        .map_err(|e| e.to_string())?;
    SeccompRule::new(vec![condition]).map_err(|e| e.to_string())
}

/// A filter that fails the calls of `rules` with `errno` and allows everything else.
fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    errno: i32,
    arch: TargetArch,
) -> Result<BpfProgram, String> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        arch,
    )
    .map_err(|e| e.to_string())?;
    filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| e.to_string())
}

fn to_bytes(program: &BpfProgram) -> Vec<u8> {
    program
        .iter()
        .flat_map(|instruction| {
            let mut bytes = Vec::with_capacity(8);
            bytes.extend_from_slice(&instruction.code.to_ne_bytes());
            bytes.push(instruction.jt);
            bytes.push(instruction.jf);
            bytes.extend_from_slice(&instruction.k.to_ne_bytes());
            bytes
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Set in the process that probes the filters (this test binary, started again).
    const PROBE: &str = "ENVPLANE_SECCOMP_PROBE";

    #[test]
    fn the_filters_compile_for_this_machine() {
        for program in programs().unwrap() {
            assert!(!program.is_empty());
            assert_eq!(program.len() % 8, 0);
        }
    }

    /// The filters are applied in a process of their own (this binary, running only
    /// `probe`): new namespaces through `unshare` and `clone` are refused, `clone3` is
    /// unavailable, and what every program needs (fork, threads) still works.
    #[test]
    fn new_namespaces_are_refused_and_processes_and_threads_still_start() {
        let output = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "seccomp::tests::probe",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(PROBE, "1")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        for expected in [
            "unshare: EPERM",
            "clone(CLONE_NEWUSER): EPERM",
            "clone(CLONE_NEWNET): EPERM",
            "clone3: ENOSYS",
            "fork: ok",
            "thread: ok",
            "ptrace: EPERM",
        ] {
            assert!(
                stdout.contains(expected),
                "{expected} missing from\n{stdout}"
            );
        }
    }

    #[test]
    fn probe() {
        if std::env::var_os(PROBE).is_none() {
            return;
        }
        for program in filters().unwrap() {
            seccompiler::apply_filter(&program).unwrap();
        }
        let errno = || std::io::Error::last_os_error().raw_os_error();
        let name = |result: libc::c_long| match (result, errno()) {
            (-1, Some(libc::EPERM)) => "EPERM".to_string(),
            (-1, Some(libc::ENOSYS)) => "ENOSYS".to_string(),
            (-1, other) => format!("errno {other:?}"),
            (0, _) => {
                // A child that got through: it leaves at once.
                unsafe { libc::_exit(0) }
            }
            (pid, _) => {
                unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), libc::__WALL) };
                "allowed".to_string()
            }
        };
        // SAFETY: raw system calls whose children (if any slip through) exit at once.
        unsafe {
            println!(
                "unshare: {}",
                name(libc::syscall(libc::SYS_unshare, libc::CLONE_NEWUSER))
            );
            for (flag, label) in [
                (libc::CLONE_NEWUSER, "CLONE_NEWUSER"),
                (libc::CLONE_NEWNET, "CLONE_NEWNET"),
            ] {
                let flags = (flag | libc::SIGCHLD) as libc::c_ulong;
                let result = libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0);
                println!("clone({label}): {}", name(result));
            }
            let args = [0u64; 11];
            let result = libc::syscall(
                libc::SYS_clone3,
                args.as_ptr(),
                std::mem::size_of_val(&args),
            );
            println!("clone3: {}", name(result));
            let fork = libc::fork();
            if fork == 0 {
                libc::_exit(0);
            }
            println!("fork: {}", if fork > 0 { "ok" } else { "failed" });
            libc::waitpid(fork, std::ptr::null_mut(), 0);
            println!(
                "ptrace: {}",
                name(libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0))
            );
        }
        let thread = std::thread::spawn(|| 42).join().unwrap();
        println!("thread: {}", if thread == 42 { "ok" } else { "failed" });
    }
}
