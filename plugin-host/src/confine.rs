//! Confines a model host before it opens a model: Landlock for files and TCP,
//! a seccomp filter for socket families and a few kernel interfaces.
//!
//! Both are applied while the host has one thread, so every thread that a
//! model runtime starts later (ONNX Runtime, whisper.cpp, FFTW) inherits
//! them: Landlock on this kernel (ABI < 8) restricts only the calling thread.
//!
//! What a host may do afterwards:
//! - read, not write: the system (`/usr`, `/lib*`, `/etc`), `/proc`, `/sys`,
//!   and the cache dir with what its top-level links point to (models and
//!   ONNX Runtime);
//! - write: its artefact folder only (created first), and `/dev/null`;
//! - execute nothing, bind or connect no TCP port, reach no abstract unix
//!   socket and signal no process outside its own domain (Landlock ABI 6);
//! - create sockets of family `AF_UNIX` only (seccomp answers EPERM), and
//!   not use ptrace, mount, namespaces, io_uring (which can open sockets
//!   behind seccomp's back), bpf, perf events, keyrings or module loading.
//!
//! Its shared memory arrives as an fd with each job: Landlock forbids a
//! sandboxed process to open `/proc/<vxd>/fd/<n>` (it counts as ptrace).
//! A kernel without Landlock or seccomp degrades to what it has, with a
//! warning; the host still runs.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// What a host may reach besides the system.
pub struct Paths<'a> {
    pub cache_dir: &'a Path,
    pub artefact_dir: Option<&'a Path>,
}

/// Confines this process (and every thread it starts later). Must run
/// before any other thread exists.
pub fn confine(paths: &Paths<'_>) {
    // Both Landlock and seccomp require it of an unprivileged process, and
    // it is right for a host anyway: nothing it executes gains privileges.
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        tracing::warn!(
            "not confined: PR_SET_NO_NEW_PRIVS failed: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    match landlock::restrict(paths) {
        Ok(abi) => tracing::info!("landlock ABI {abi}: files and TCP confined"),
        Err(landlock::Error::Unsupported) => tracing::warn!(
            "the kernel lacks Landlock: this model host can write wherever its user can"
        ),
        Err(landlock::Error::Failed(what, e)) => {
            tracing::warn!(
                "Landlock not applied ({what}: {e}): this model host is not confined to its folders"
            )
        }
    }
    match seccomp::install() {
        Ok(()) => tracing::info!("seccomp: AF_UNIX sockets only"),
        Err(e) => tracing::warn!(
            "seccomp filter not installed ({e}): this model host may open network sockets"
        ),
    }
}

mod landlock {
    //! The Landlock uapi (linux/landlock.h), by raw syscalls.

    use std::os::unix::fs::OpenOptionsExt;

    use super::*;

    // Filesystem rights, with the ABI that introduced them.
    const EXECUTE: u64 = 1 << 0;
    const WRITE_FILE: u64 = 1 << 1;
    const READ_FILE: u64 = 1 << 2;
    const READ_DIR: u64 = 1 << 3;
    const REMOVE_DIR: u64 = 1 << 4;
    const REMOVE_FILE: u64 = 1 << 5;
    const MAKE_CHAR: u64 = 1 << 6;
    const MAKE_DIR: u64 = 1 << 7;
    const MAKE_REG: u64 = 1 << 8;
    const MAKE_SOCK: u64 = 1 << 9;
    const MAKE_FIFO: u64 = 1 << 10;
    const MAKE_BLOCK: u64 = 1 << 11;
    const MAKE_SYM: u64 = 1 << 12;
    const REFER: u64 = 1 << 13; // ABI 2
    const TRUNCATE: u64 = 1 << 14; // ABI 3
    const IOCTL_DEV: u64 = 1 << 15; // ABI 5
    /// The rights that apply to a file (not a directory) in a rule.
    const FILE_RIGHTS: u64 = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV;
    // TCP rights, ABI 4.
    const BIND_TCP: u64 = 1 << 0;
    const CONNECT_TCP: u64 = 1 << 1;
    // Scopes, ABI 6.
    const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
    const SCOPE_SIGNAL: u64 = 1 << 1;

    const CREATE_RULESET_VERSION: u32 = 1 << 0;
    const RULE_PATH_BENEATH: libc::c_int = 1;

    #[repr(C)]
    struct RulesetAttr {
        handled_access_fs: u64,
        handled_access_net: u64,
        scoped: u64,
    }

    #[repr(C, packed)]
    struct PathBeneathAttr {
        allowed_access: u64,
        parent_fd: i32,
    }

    pub enum Error {
        Unsupported,
        Failed(&'static str, std::io::Error),
    }

    fn handled_fs(abi: i64) -> u64 {
        // Everything ABI 1 knows: what is not granted below is refused.
        let mut all = EXECUTE
            | WRITE_FILE
            | READ_FILE
            | READ_DIR
            | REMOVE_DIR
            | REMOVE_FILE
            | MAKE_CHAR
            | MAKE_DIR
            | MAKE_REG
            | MAKE_SOCK
            | MAKE_FIFO
            | MAKE_BLOCK
            | MAKE_SYM;
        if abi >= 2 {
            all |= REFER;
        }
        if abi >= 3 {
            all |= TRUNCATE;
        }
        if abi >= 5 {
            all |= IOCTL_DEV;
        }
        all
    }

    /// Applies the ruleset; returns the kernel's Landlock ABI.
    pub fn restrict(paths: &Paths<'_>) -> Result<i64, Error> {
        // SAFETY: the version query takes no attribute.
        let abi = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<RulesetAttr>(),
                0usize,
                CREATE_RULESET_VERSION,
            )
        };
        if abi < 1 {
            return Err(Error::Unsupported);
        }
        let fs = handled_fs(abi);
        let attr = RulesetAttr {
            handled_access_fs: fs,
            // No TCP rule follows, so every bind and connect is refused.
            handled_access_net: if abi >= 4 { BIND_TCP | CONNECT_TCP } else { 0 },
            scoped: if abi >= 6 {
                SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
            } else {
                0
            },
        };
        // Older kernels reject a larger struct with fields they do not know.
        let size = match abi {
            1..=3 => size_of::<u64>(),
            4..=5 => 2 * size_of::<u64>(),
            _ => size_of::<RulesetAttr>(),
        };
        // SAFETY: `attr` is valid for `size` bytes.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                size,
                0u32,
            )
        };
        if fd < 0 {
            return Err(Error::Failed(
                "create ruleset",
                std::io::Error::last_os_error(),
            ));
        }
        // SAFETY: a fresh fd the kernel just gave us.
        let ruleset: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(fd as i32) };

        let read = READ_FILE | READ_DIR;
        let mut rules: Vec<(PathBuf, u64)> = ["/usr", "/lib", "/lib64", "/etc", "/proc", "/sys"]
            .iter()
            .map(|p| (PathBuf::from(p), read))
            .collect();
        rules.push(("/dev/null".into(), READ_FILE | WRITE_FILE));
        rules.push(("/dev/zero".into(), READ_FILE));
        rules.push(("/dev/urandom".into(), READ_FILE));
        // GPU builds of ONNX Runtime (the `cuda` feature) talk to these.
        if let Ok(dev) = std::fs::read_dir("/dev") {
            for e in dev.flatten() {
                let name = e.file_name();
                let name = name.to_string_lossy();
                if name.starts_with("nvidia") || name == "dri" {
                    rules.push((e.path(), read | WRITE_FILE | IOCTL_DEV));
                }
            }
        }
        // Rules bind inodes: a link in the cache (tests link `models` and
        // `onnxruntime` to an installed cache) needs its target's rule.
        rules.push((paths.cache_dir.to_owned(), read));
        if let Ok(entries) = std::fs::read_dir(paths.cache_dir) {
            for e in entries.flatten() {
                if e.file_type().is_ok_and(|t| t.is_symlink()) {
                    rules.push((e.path(), read));
                }
            }
        }
        if let Some(dir) = paths.artefact_dir {
            let write = read
                | WRITE_FILE
                | TRUNCATE
                | MAKE_REG
                | MAKE_DIR
                | REMOVE_FILE
                | REMOVE_DIR
                | REFER;
            rules.push((dir.to_owned(), write));
        }
        for (path, access) in rules {
            add_path_rule(&ruleset, &path, access & fs)?;
        }
        // SAFETY: a ruleset fd we own; no pointer arguments.
        if unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32) }
            != 0
        {
            return Err(Error::Failed(
                "restrict self",
                std::io::Error::last_os_error(),
            ));
        }
        Ok(abi)
    }

    /// Allows `access` beneath `path`; a path that does not exist is skipped.
    fn add_path_rule(ruleset: &OwnedFd, path: &Path, mut access: u64) -> Result<(), Error> {
        let Ok(file) = std::fs::File::options()
            .read(true)
            .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
            .open(path)
        else {
            return Ok(());
        };
        if !file.metadata().is_ok_and(|m| m.is_dir()) {
            access &= FILE_RIGHTS;
        }
        let attr = PathBeneathAttr {
            allowed_access: access,
            parent_fd: file.as_raw_fd(),
        };
        // SAFETY: `attr` lives across the call; both fds are open.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                ruleset.as_raw_fd(),
                RULE_PATH_BENEATH,
                &attr as *const PathBeneathAttr,
                0u32,
            )
        };
        if rc != 0 {
            return Err(Error::Failed("add rule", std::io::Error::last_os_error()));
        }
        Ok(())
    }
}

mod seccomp {
    //! A classic-BPF seccomp filter: allow everything except the calls below.

    #[cfg(target_arch = "x86_64")]
    pub fn install() -> std::io::Result<()> {
        use libc::{
            BPF_ABS, BPF_JEQ, BPF_JGE, BPF_JMP, BPF_K, BPF_LD, BPF_RET, BPF_W, sock_filter,
            sock_fprog,
        };

        /// `AUDIT_ARCH_X86_64` from linux/audit.h.
        const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
        /// Set in the number of an x32 call: the same kernel, other numbers.
        const X32_SYSCALL_BIT: u32 = 0x4000_0000;
        // Offsets in `struct seccomp_data`.
        const NR: u32 = 0;
        const ARCH: u32 = 4;
        /// Low 32 bits of the first argument (little-endian): the int `domain`.
        const ARG0: u32 = 16;
        const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
        const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
        const KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;

        // None of these has a use in a model host; most need privileges anyway.
        const DENIED: &[libc::c_long] = &[
            libc::SYS_ptrace,
            libc::SYS_process_vm_readv,
            libc::SYS_process_vm_writev,
            libc::SYS_mount,
            libc::SYS_umount2,
            libc::SYS_pivot_root,
            libc::SYS_chroot,
            libc::SYS_open_tree,
            libc::SYS_move_mount,
            libc::SYS_fsopen,
            libc::SYS_fsconfig,
            libc::SYS_fsmount,
            libc::SYS_fspick,
            libc::SYS_mount_setattr,
            libc::SYS_unshare,
            libc::SYS_setns,
            libc::SYS_io_uring_setup,
            libc::SYS_io_uring_enter,
            libc::SYS_io_uring_register,
            libc::SYS_bpf,
            libc::SYS_perf_event_open,
            libc::SYS_userfaultfd,
            libc::SYS_keyctl,
            libc::SYS_add_key,
            libc::SYS_request_key,
            libc::SYS_open_by_handle_at,
            libc::SYS_kexec_load,
            libc::SYS_kexec_file_load,
            libc::SYS_init_module,
            libc::SYS_finit_module,
            libc::SYS_delete_module,
        ];

        let stmt = |code: u32, k: u32| sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        };
        let jeq = |k: u32, jt: u8, jf: u8| sock_filter {
            code: (BPF_JMP | BPF_JEQ | BPF_K) as u16,
            jt,
            jf,
            k,
        };
        let mut f = vec![
            // Another architecture's calls would mean other numbers: kill.
            stmt(BPF_LD | BPF_W | BPF_ABS, ARCH),
            jeq(AUDIT_ARCH_X86_64, 1, 0),
            stmt(BPF_RET | BPF_K, KILL),
            stmt(BPF_LD | BPF_W | BPF_ABS, NR),
            sock_filter {
                code: (BPF_JMP | BPF_JGE | BPF_K) as u16,
                jt: 0,
                jf: 1,
                k: X32_SYSCALL_BIT,
            },
            stmt(BPF_RET | BPF_K, EPERM),
        ];
        for &nr in DENIED {
            f.push(jeq(nr as u32, 0, 1));
            f.push(stmt(BPF_RET | BPF_K, EPERM));
        }
        // socket(domain, …): AF_UNIX only.
        f.push(jeq(libc::SYS_socket as u32, 0, 3));
        f.push(stmt(BPF_LD | BPF_W | BPF_ABS, ARG0));
        f.push(jeq(libc::AF_UNIX as u32, 1, 0));
        f.push(stmt(BPF_RET | BPF_K, EPERM));
        f.push(stmt(BPF_RET | BPF_K, ALLOW));

        let prog = sock_fprog {
            len: f.len() as u16,
            filter: f.as_mut_ptr(),
        };
        // SAFETY: `prog` points at `f`, alive across the call. TSYNC makes
        // sure no thread is left out, should one exist already.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                libc::SECCOMP_FILTER_FLAG_TSYNC,
                &prog as *const sock_fprog,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }

    #[cfg(not(target_arch = "x86_64"))]
    pub fn install() -> std::io::Result<()> {
        Err(std::io::Error::other(
            "the filter is written for x86_64 only",
        ))
    }
}
