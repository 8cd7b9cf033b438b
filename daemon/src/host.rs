//! One model host: a `vx-plugin-host` child process and the socket to it.
//!
//! The daemon listens on a private socket, spawns the host with
//! `PR_SET_PDEATHSIG` (so it dies with vxd, even after SIGKILL), accepts its
//! connection and checks its Hello. Each job is one request and one reply
//! under a deadline. Any transport failure — EOF, garbage, a timeout — kills
//! the host and is returned as a [`HostFailure`] naming what happened; the
//! next job starts a fresh host.

use std::io::{BufReader, ErrorKind};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use interprocess::local_socket::{
    GenericFilePath, Listener, ListenerNonblockingMode, ListenerOptions, Stream, prelude::*,
};
use vx_plugin_protocol::{DaemonToHost, HostToDaemon, Job, PROTOCOL_VERSION, PluginOutput};
use vx_wire::{WireError, read_frame, write_frame};

/// How long a host may take from spawn to Hello.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug, thiserror::Error)]
pub enum HostFailure {
    #[error("cannot start host: {0}")]
    Spawn(std::io::Error),
    #[error("plugin {plugin} exited before handshake ({status})")]
    ExitedBeforeHandshake { plugin: String, status: String },
    #[error("plugin {plugin} sent no handshake within {secs:.1} s")]
    HandshakeTimeout { plugin: String, secs: f64 },
    #[error("plugin {plugin} speaks protocol {theirs}, vxd speaks {ours}")]
    Version { plugin: String, ours: u32, theirs: u32 },
    #[error("host {plugin} sent an unexpected message: {0}", plugin = .1)]
    Protocol(String, String),
    #[error("deadline {0:.1} s exceeded")]
    Deadline(f64),
    #[error("{0}")]
    Died(String),
}

pub struct Host {
    plugin: String,
    child: Child,
    conn: BufReader<Stream>,
    pub version: String,
}

impl Host {
    /// Spawns `exe --plugin NAME --socket DIR/…` and waits for its Hello.
    pub fn start(exe: &Path, plugin: &str, socket_dir: &Path, seq: u64) -> Result<Host, HostFailure> {
        let sock = socket_dir.join(format!("host-{plugin}-{}-{seq}.sock", std::process::id()));
        let name = sock.as_path().to_fs_name::<GenericFilePath>().map_err(HostFailure::Spawn)?;
        let listener = ListenerOptions::new()
            .name(name)
            .nonblocking(ListenerNonblockingMode::Accept)
            .create_sync()
            .map_err(HostFailure::Spawn)?;
        let mut cmd = Command::new(exe);
        cmd.arg("--plugin").arg(plugin).arg("--socket").arg(&sock).stdin(Stdio::null());
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn().map_err(HostFailure::Spawn)?;
        match accept_hello(&listener, &mut child, plugin) {
            Ok((conn, version)) => Ok(Host { plugin: plugin.to_owned(), child, conn, version }),
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

    /// Sends one job and waits up to `deadline` for the reply. On `Err` the
    /// host is dead and must be dropped.
    pub fn run(&mut self, job: &Job, deadline: Duration) -> Result<Result<PluginOutput, String>, HostFailure> {
        let res = self.exchange(job, deadline);
        if res.is_err() {
            kill_and_reap(&mut self.child);
        }
        res
    }

    fn exchange(&mut self, job: &Job, deadline: Duration) -> Result<Result<PluginOutput, String>, HostFailure> {
        let stream = self.conn.get_ref();
        let sent = stream
            .set_recv_timeout(Some(deadline))
            .map_err(WireError::from)
            .and_then(|()| write_frame(&mut &*stream, &DaemonToHost::Job(job.clone())));
        if let Err(e) = sent {
            return Err(self.died(&e.to_string()));
        }
        match read_frame::<_, HostToDaemon>(&mut self.conn) {
            Ok(HostToDaemon::Done(reply)) if reply.id == job.id => Ok(reply.outcome),
            Ok(other) => Err(HostFailure::Protocol(format!("{other:?}").chars().take(200).collect(), self.plugin.clone())),
            Err(WireError::Io(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(HostFailure::Deadline(deadline.as_secs_f64()))
            }
            Err(e @ (WireError::Closed | WireError::Truncated)) => Err(self.died(&e.to_string())),
            Err(e) => Err(HostFailure::Protocol(e.to_string(), self.plugin.clone())),
        }
    }

    /// Describes how the host ended, after giving it a moment to finish dying.
    fn died(&mut self, fallback: &str) -> HostFailure {
        let until = Instant::now() + Duration::from_secs(2);
        while Instant::now() < until {
            if let Ok(Some(status)) = self.child.try_wait() {
                return HostFailure::Died(describe(status));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        HostFailure::Died(fallback.to_owned())
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

fn accept_hello(listener: &Listener, child: &mut Child, plugin: &str) -> Result<(BufReader<Stream>, String), HostFailure> {
    let start = Instant::now();
    let conn = loop {
        match listener.accept() {
            Ok(c) => break c,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(e) => return Err(HostFailure::Spawn(e)),
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(HostFailure::ExitedBeforeHandshake { plugin: plugin.to_owned(), status: describe(status) });
        }
        if start.elapsed() > HANDSHAKE_DEADLINE {
            return Err(HostFailure::HandshakeTimeout { plugin: plugin.to_owned(), secs: HANDSHAKE_DEADLINE.as_secs_f64() });
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let left = HANDSHAKE_DEADLINE.saturating_sub(start.elapsed()).max(Duration::from_millis(100));
    conn.set_recv_timeout(Some(left)).map_err(HostFailure::Spawn)?;
    let mut conn = BufReader::new(conn);
    match read_frame::<_, HostToDaemon>(&mut conn) {
        Ok(HostToDaemon::Hello(h)) if h.protocol != PROTOCOL_VERSION => {
            Err(HostFailure::Version { plugin: plugin.to_owned(), ours: PROTOCOL_VERSION, theirs: h.protocol })
        }
        Ok(HostToDaemon::Hello(h)) if h.plugin != plugin => {
            Err(HostFailure::Protocol(format!("says it is plugin {:?}", h.plugin), plugin.to_owned()))
        }
        Ok(HostToDaemon::Hello(h)) => Ok((conn, h.plugin_version)),
        Ok(other) => Err(HostFailure::Protocol(format!("{other:?} before Hello"), plugin.to_owned())),
        Err(WireError::Io(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Err(HostFailure::HandshakeTimeout { plugin: plugin.to_owned(), secs: HANDSHAKE_DEADLINE.as_secs_f64() })
        }
        Err(WireError::Closed | WireError::Truncated) => {
            let status = child.wait().map(describe).unwrap_or_else(|e| e.to_string());
            Err(HostFailure::ExitedBeforeHandshake { plugin: plugin.to_owned(), status })
        }
        Err(e) => Err(HostFailure::Protocol(e.to_string(), plugin.to_owned())),
    }
}

fn kill_and_reap(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// "exit status 3", "killed by SIGSEGV".
pub fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
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
    if let Some(p) = std::env::var_os("VX_PLUGIN_HOST") {
        return p.into();
    }
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("vx-plugin-host")))
        .unwrap_or_else(|| PathBuf::from("vx-plugin-host"))
}
