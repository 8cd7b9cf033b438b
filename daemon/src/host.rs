//! One model host: a `vx-plugin-host` child process and the socket to it.
//!
//! The daemon listens on a private socket, spawns the host with
//! `PR_SET_PDEATHSIG` (so it dies with vxd, even after SIGKILL) and an
//! address-space limit, accepts its connection and checks its Hello.
//!
//! The memory limit is `RLIMIT_AS`, not a cgroup: it needs no delegated cgroup
//! subtree (a vxd started from a shell has none), it applies to exactly one
//! process, and hitting it makes allocation fail inside the host, which the
//! host reports by exiting with `EXIT_OUT_OF_MEMORY`. Its cost: it counts
//! address space, not resident memory, so the cap must leave room for what a
//! model runtime reserves without touching. Each job is one request and one reply
//! under a deadline. Any transport failure — EOF, garbage, a timeout — kills
//! the host and is returned as a [`HostFailure`] naming what happened; the
//! next job starts a fresh host.

use std::io::{BufReader, ErrorKind};
use std::os::fd::{AsFd, BorrowedFd, RawFd};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use interprocess::local_socket::{
    GenericFilePath, Listener, ListenerNonblockingMode, ListenerOptions, Stream, prelude::*,
};
use vx_plugin_protocol::{
    DaemonToHost, EXIT_NO_MODEL, EXIT_OUT_OF_MEMORY, EXIT_PANIC, HostToDaemon, Job, Needs,
    PROTOCOL_VERSION, PluginError, PluginOutput,
};
use vx_wire::{WireError, read_frame, write_frame, write_frame_with_fd};

use HostFailure::HandshakeTimeout;

/// What every host is started with.
#[derive(Debug, Clone, Copy)]
pub struct HostLimits {
    pub memory_mb: u64,
    /// From spawn to Hello.
    pub start_timeout: Duration,
    pub nice: i32,
    /// The idle I/O scheduling class: disk access only when nobody else wants it.
    pub io_idle: bool,
}

impl HostLimits {
    /// The limits the config sets for every host.
    pub fn from_settings(s: &vx_config::Settings) -> Self {
        Self {
            memory_mb: s.host_memory_mb,
            start_timeout: Duration::from_secs_f64(s.host_start_timeout_s),
            nice: s.host_nice,
            io_idle: s.host_io_idle,
        }
    }
}

const IOPRIO_WHO_PROCESS: libc::c_long = 1;
const IOPRIO_CLASS_IDLE: libc::c_long = 3;
const IOPRIO_CLASS_SHIFT: libc::c_long = 13;

#[derive(Debug, thiserror::Error)]
pub enum HostFailure {
    #[error("cannot start host: {0}")]
    Spawn(std::io::Error),
    #[error("plugin {plugin} exited before handshake ({status})")]
    ExitedBeforeHandshake { plugin: String, status: String },
    #[error("plugin {plugin} sent no handshake within {secs:.1} s")]
    HandshakeTimeout { plugin: String, secs: f64 },
    #[error("plugin {plugin} speaks protocol {theirs}, vxd speaks {ours}")]
    Version {
        plugin: String,
        ours: u32,
        theirs: u32,
    },
    #[error("sent garbage: {0}")]
    Protocol(String),
    #[error("deadline {0:.1} s exceeded")]
    Deadline(f64),
    #[error("panicked: {0}")]
    Panicked(String),
    #[error("{0}")]
    Died(String),
}

pub struct Host {
    child: Child,
    conn: BufReader<Stream>,
    limits: HostLimits,
    pub version: String,
    /// What the plugin asked to have decoded for it.
    pub needs: Needs,
}

/// What a host is started with besides its limits.
pub struct HostArgs<'a> {
    pub exe: &'a Path,
    pub plugin: &'a str,
    pub socket_dir: &'a Path,
    /// Makes the socket name unique among this vxd's hosts.
    pub tag: &'a str,
    pub cache_dir: &'a Path,
    pub threads: usize,
    /// The one folder the host may write to; `None`: nowhere.
    pub artefact_dir: Option<&'a Path>,
}

impl Host {
    /// Spawns `exe --plugin NAME --socket DIR/… --cache-dir … --threads N
    /// [--artefact-dir …]`
    /// and waits for its Hello and Needs.
    pub fn start(args: HostArgs<'_>, limits: HostLimits) -> Result<Host, HostFailure> {
        let HostArgs {
            exe,
            plugin,
            socket_dir,
            tag,
            cache_dir,
            threads,
            artefact_dir,
        } = args;
        let sock = socket_dir.join(format!("host-{plugin}-{}-{tag}.sock", std::process::id()));
        let name = sock
            .as_path()
            .to_fs_name::<GenericFilePath>()
            .map_err(HostFailure::Spawn)?;
        let listener = ListenerOptions::new()
            .name(name)
            .nonblocking(ListenerNonblockingMode::Accept)
            .create_sync()
            .map_err(HostFailure::Spawn)?;
        let mut cmd = Command::new(exe);
        cmd.arg("--plugin")
            .arg(plugin)
            .arg("--socket")
            .arg(&sock)
            .arg("--cache-dir")
            .arg(cache_dir)
            .arg("--threads")
            .arg(threads.to_string())
            .stdin(Stdio::null());
        if let Some(dir) = artefact_dir {
            cmd.arg("--artefact-dir").arg(dir);
        }
        limit(&mut cmd, limits);
        let mut child = cmd.spawn().map_err(HostFailure::Spawn)?;
        match accept_hello(&listener, &mut child, plugin, limits) {
            Ok((conn, version, needs)) => Ok(Host {
                child,
                conn,
                limits,
                version,
                needs,
            }),
            Err(e) => {
                kill_and_reap(&mut child);
                Err(e)
            }
        }
        // `listener` drops here and removes its socket file.
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends one job and waits up to `deadline` for the reply: the plugin's
    /// results, or its error for this file. On `Err` the host is dead and
    /// must be dropped.
    pub fn run(
        &mut self,
        job: &Job,
        deadline: Duration,
    ) -> Result<Result<PluginOutput, PluginError>, HostFailure> {
        // The segment's fd goes with the frame: a confined host cannot open
        // `/proc/<vxd>/fd/<n>`.
        let shm = (!job.frames.is_empty() || job.audio.is_some()).then_some(job.shm.fd);
        self.request(
            &DaemonToHost::Job(job.clone()),
            shm,
            deadline,
            |reply| match reply {
                HostToDaemon::Done(r) if r.id == job.id => Ok(r.outcome),
                other => Err(other),
            },
        )
    }

    /// Asks a text-embedding host for one vector per text. On `Err` the host
    /// is dead and must be dropped.
    pub fn embed(
        &mut self,
        id: u64,
        texts: Vec<String>,
        deadline: Duration,
    ) -> Result<Result<Vec<Vec<f32>>, PluginError>, HostFailure> {
        let n = texts.len();
        self.request(
            &DaemonToHost::Embed { id, texts },
            None,
            deadline,
            |reply| match reply {
                HostToDaemon::Embedded { id: got, outcome } if got == id => {
                    Ok(outcome.and_then(|vs| match vs.len() == n {
                        true => Ok(vs),
                        false => Err(PluginError::new(format!(
                            "{} vectors for {n} texts",
                            vs.len()
                        ))),
                    }))
                }
                other => Err(other),
            },
        )
    }

    /// One request and its reply under `deadline`; `accept` takes the reply
    /// or hands back what it did not expect. Any failure kills the host.
    fn request<T>(
        &mut self,
        message: &DaemonToHost,
        fd: Option<RawFd>,
        deadline: Duration,
        accept: impl FnOnce(HostToDaemon) -> Result<T, HostToDaemon>,
    ) -> Result<T, HostFailure> {
        let res = self.exchange(message, fd, deadline).and_then(|reply| {
            accept(reply).map_err(|other| match other {
                HostToDaemon::Panicked { message, .. } => HostFailure::Panicked(message),
                other => HostFailure::Protocol(
                    format!("unexpected {other:?}").chars().take(200).collect(),
                ),
            })
        });
        if res.is_err() {
            kill_and_reap(&mut self.child);
        }
        res
    }

    fn exchange(
        &mut self,
        message: &DaemonToHost,
        fd: Option<RawFd>,
        deadline: Duration,
    ) -> Result<HostToDaemon, HostFailure> {
        let until = Instant::now() + deadline;
        let stream = self.conn.get_ref();
        // A host that stops reading its socket cannot block vxd's send either.
        let sent = stream
            .set_recv_timeout(Some(deadline))
            .and_then(|()| stream.set_send_timeout(Some(deadline)))
            .map_err(WireError::from)
            .and_then(|()| match fd {
                Some(fd) => {
                    let Stream::UdSocket(sock) = stream;
                    // SAFETY: the job's segment stays open until its reply is in.
                    let fd = unsafe { BorrowedFd::borrow_raw(fd) };
                    write_frame_with_fd(sock.as_fd(), message, fd)
                }
                None => write_frame(&mut &*stream, message),
            });
        if let Err(e) = sent {
            return Err(self.died(&e.to_string()));
        }
        let mut reader = Until {
            conn: &mut self.conn,
            until,
        };
        match read_frame::<_, HostToDaemon>(&mut reader) {
            Ok(reply) => Ok(reply),
            Err(WireError::Io(e))
                if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
            {
                Err(HostFailure::Deadline(deadline.as_secs_f64()))
            }
            Err(e @ (WireError::Closed | WireError::Truncated)) => Err(self.died(&e.to_string())),
            Err(e) => Err(HostFailure::Protocol(e.to_string())),
        }
    }

    /// Describes how the host ended, after giving it a moment to finish dying.
    fn died(&mut self, fallback: &str) -> HostFailure {
        HostFailure::Died(match exit_status(&mut self.child, Duration::from_secs(2)) {
            Some(status) => describe(status, self.limits),
            None => fallback.to_owned(),
        })
    }

    /// Asks the host to exit, and kills it if it does not within a second.
    pub fn stop(mut self) {
        let _ = write_frame(self.conn.get_mut(), &DaemonToHost::Shutdown);
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        kill_and_reap(&mut self.child);
    }
}

/// Reads from a host until a wall-clock deadline for the whole reply, so a
/// host that sends a byte now and then cannot stretch it: each read waits
/// only for the time that is left.
struct Until<'a> {
    conn: &'a mut BufReader<Stream>,
    until: Instant,
}

impl std::io::Read for Until<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ErrorKind::TimedOut.into());
        }
        self.conn.get_ref().set_recv_timeout(Some(left))?;
        self.conn.read(buf)
    }
}

/// Accepts the host's connection and reads its Hello and Needs: the
/// connection, the plugin's version and what it needs decoded.
fn accept_hello(
    listener: &Listener,
    child: &mut Child,
    plugin: &str,
    limits: HostLimits,
) -> Result<(BufReader<Stream>, String, Needs), HostFailure> {
    let deadline = limits.start_timeout;
    let timeout = || HandshakeTimeout {
        plugin: plugin.to_owned(),
        secs: deadline.as_secs_f64(),
    };
    let start = Instant::now();
    let mut stranger = None;
    let conn = loop {
        match listener.accept() {
            // Only the process vxd spawned may speak for the plugin: another
            // one of the same user could reach the socket too.
            Ok(c) => match peer_pid(&c) {
                Some(pid) if pid == child.id() => break c,
                other => {
                    tracing::warn!(plugin, pid = ?other, host = child.id(), "refused a connection from a process vxd did not start");
                    stranger = other.or(Some(0));
                }
            },
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(HostFailure::Spawn(e)),
        }
        let exited = child.try_wait().ok().flatten();
        if let (Some(pid), true) = (stranger, exited.is_some() || start.elapsed() > deadline) {
            return Err(HostFailure::Protocol(format!(
                "process {pid}, not the host vxd started, connected in its place"
            )));
        }
        if let Some(status) = exited {
            return Err(HostFailure::ExitedBeforeHandshake {
                plugin: plugin.to_owned(),
                status: describe(status, limits),
            });
        }
        if start.elapsed() > deadline {
            return Err(timeout());
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let left = deadline
        .saturating_sub(start.elapsed())
        .max(Duration::from_millis(100));
    conn.set_recv_timeout(Some(left))
        .map_err(HostFailure::Spawn)?;
    let mut conn = BufReader::new(conn);
    let version = read_handshake(&mut conn, child, plugin, limits, |m| match m {
        HostToDaemon::Hello(h) if h.protocol != PROTOCOL_VERSION => Err(HostFailure::Version {
            plugin: plugin.to_owned(),
            ours: PROTOCOL_VERSION,
            theirs: h.protocol,
        }),
        HostToDaemon::Hello(h) if h.plugin != plugin => Err(HostFailure::Protocol(format!(
            "host for {plugin} says it is plugin {:?}",
            h.plugin
        ))),
        HostToDaemon::Hello(h) => Ok(h.plugin_version),
        other => Err(HostFailure::Protocol(format!("{other:?} before Hello"))),
    })?;
    let needs = read_handshake(&mut conn, child, plugin, limits, |m| match m {
        HostToDaemon::Needs(n) => Ok(n),
        other => Err(HostFailure::Protocol(format!("{other:?} instead of Needs"))),
    })?;
    Ok((conn, version, needs))
}

/// The pid of the process at the other end of a unix socket.
fn peer_pid(conn: &Stream) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let Stream::UdSocket(sock) = conn;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_fd().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&raw mut cred).cast(),
            &mut len,
        )
    };
    (rc == 0 && cred.pid > 0).then_some(cred.pid as u32)
}

/// Reads one handshake message within the start timeout left on `conn`.
fn read_handshake<T>(
    conn: &mut BufReader<Stream>,
    child: &mut Child,
    plugin: &str,
    limits: HostLimits,
    accept: impl FnOnce(HostToDaemon) -> Result<T, HostFailure>,
) -> Result<T, HostFailure> {
    match read_frame::<_, HostToDaemon>(conn) {
        Ok(message) => accept(message),
        Err(WireError::Io(e))
            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
        {
            Err(HandshakeTimeout {
                plugin: plugin.to_owned(),
                secs: limits.start_timeout.as_secs_f64(),
            })
        }
        Err(WireError::Closed | WireError::Truncated) => {
            let status = child
                .wait()
                .map(|s| describe(s, limits))
                .unwrap_or_else(|e| e.to_string());
            Err(HostFailure::ExitedBeforeHandshake {
                plugin: plugin.to_owned(),
                status,
            })
        }
        Err(e) => Err(HostFailure::Protocol(e.to_string())),
    }
}

/// Makes `cmd`'s child die with vxd, and caps its address space and its CPU
/// and I/O priority: for model hosts and the decoder alike.
pub fn limit(cmd: &mut Command, limits: HostLimits) {
    let bytes = limits.memory_mb.saturating_mul(1 << 20);
    // SAFETY: prctl, setrlimit, setpriority and ioprio_set are plain
    // syscalls, async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            let check = |rc: libc::c_long| {
                if rc < 0 {
                    Err(std::io::Error::last_os_error())
                } else {
                    Ok(())
                }
            };
            check(libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) as libc::c_long)?;
            let cap = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            check(libc::setrlimit(libc::RLIMIT_AS, &cap) as libc::c_long)?;
            // Best effort: a vxd already niced lower than `nice` may not
            // raise its children's priority back (EACCES), and that must
            // not stop the host from starting.
            libc::setpriority(libc::PRIO_PROCESS, 0, limits.nice);
            if limits.io_idle {
                let prio = IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT;
                libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, prio);
            }
            Ok(())
        });
    }
}

/// How `child` ended, given up to `wait` to finish dying.
pub fn exit_status(child: &mut Child, wait: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + wait;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(5));
            }
            _ => return None,
        }
    }
}

pub fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// "exit status 3", "killed by SIGSEGV", "memory limit 2048 MiB exceeded".
pub fn describe(status: ExitStatus, limits: HostLimits) -> String {
    match status.code() {
        Some(EXIT_OUT_OF_MEMORY) => {
            return format!("memory limit {} MiB exceeded", limits.memory_mb);
        }
        Some(EXIT_PANIC) => return "panicked".into(),
        Some(EXIT_NO_MODEL) => return "cannot open its models (see vxd's log)".into(),
        Some(code) => return format!("exit status {code}"),
        None => {}
    }
    let sig = status.signal().unwrap_or(0);
    let name = match sig {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGTERM => "SIGTERM",
        _ => return format!("killed by signal {sig}"),
    };
    format!("killed by {name}")
}

/// The `vx-plugin-host` binary beside this `vxd`, or `VX_PLUGIN_HOST`.
pub fn host_exe() -> PathBuf {
    sibling_exe("VX_PLUGIN_HOST", "vx-plugin-host")
}

/// The `vx-decoder` binary beside this `vxd`, or `VX_DECODER`.
pub fn decoder_exe() -> PathBuf {
    sibling_exe("VX_DECODER", "vx-decoder")
}

fn sibling_exe(var: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(var) {
        return p.into();
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .unwrap_or_else(|| PathBuf::from(name))
}
