//! The decoder subprocess, seen from vxd. Each worker keeps one
//! `vx-decoder` running (spawned like a model host: dying with vxd, with an
//! address-space cap and low priority) and asks it for one file at a time.
//! The segment comes back as an fd attached to the reply, and is checked to
//! be sealed before a host maps it.
//!
//! A decoder that dies on a file is replaced and the file tried once more;
//! a second death, or a decoder that reads nothing for `decode_stall_s`,
//! fails that file with the reason. Nothing FFmpeg does reaches vxd.

use std::io::ErrorKind;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use vx_decoder::{Reply, Request, SOCKET_FD, Summary};
use vx_media::{DecodeOptions, Packed};
use vx_shm::Segment;
use vx_wire::{FdReader, WireError, read_frame, write_frame};

use crate::host::{HostLimits, describe, exit_status, kill_and_reap, limit};

/// Why a file got nothing from a step (decoding it, or one plugin).
#[derive(Debug)]
pub enum Failure {
    /// Because of the file; recorded with it until it changes.
    File(String),
    /// The machine is short of something (memory, file descriptors, a
    /// process): the file is tried again later.
    Temporary(String),
}

pub struct Decoder {
    exe: PathBuf,
    limits: HostLimits,
    stall: Duration,
    running: Option<(Child, UnixStream)>,
}

/// How a conversation with the decoder ended, when it did not answer.
enum Lost {
    /// It died (or broke the protocol); how, for the failure's reason.
    Died(String),
    Stalled,
}

impl Decoder {
    pub fn new(exe: PathBuf, limits: HostLimits, stall: Duration) -> Self {
        Self {
            exe,
            limits,
            stall,
            running: None,
        }
    }

    /// Starts the subprocess ahead of the first file; it is started on
    /// demand otherwise.
    pub fn start(&mut self) {
        match self.spawn() {
            Ok(started) => self.running = Some(started),
            Err(e) => tracing::warn!("cannot start the decoder (tried again per file): {e}"),
        }
    }

    /// Decodes `path` in the subprocess: the file's summary, and its frames
    /// and audio in a sealed segment.
    pub fn decode(
        &mut self,
        path: &Path,
        opts: &DecodeOptions,
    ) -> Result<(Summary, Packed), Failure> {
        let request = Request {
            path: path.to_owned(),
            opts: opts.clone(),
        };
        for attempt in 1..=2 {
            if self.running.is_none() {
                let started = self
                    .spawn()
                    .map_err(|e| Failure::Temporary(format!("cannot start the decoder: {e}")))?;
                self.running = Some(started);
            }
            let (_, sock) = self.running.as_mut().expect("started above");
            match exchange(sock, &request, self.stall) {
                Ok(Ok(decoded)) => return Ok(decoded),
                Ok(Err(failure)) => return Err(failure),
                Err(lost) => {
                    let (mut child, _) = self.running.take().expect("running");
                    let why = match lost {
                        Lost::Stalled => {
                            kill_and_reap(&mut child);
                            return Err(Failure::File(format!(
                                "the decoder read nothing for {:.0} s: stuck on this file",
                                self.stall.as_secs_f64()
                            )));
                        }
                        Lost::Died(why) => why,
                    };
                    let how = match exit_status(&mut child, Duration::from_secs(1)) {
                        Some(status) => describe(status, self.limits),
                        None => {
                            // Alive, but broke the protocol.
                            kill_and_reap(&mut child);
                            why
                        }
                    };
                    tracing::warn!(attempt, "the decoder died on this file: {how}");
                    if attempt == 2 {
                        return Err(Failure::File(format!(
                            "the decoder died on this file twice ({how})"
                        )));
                    }
                }
            }
        }
        unreachable!("the second attempt returns")
    }

    fn spawn(&self) -> std::io::Result<(Child, UnixStream)> {
        let (ours, theirs) = UnixStream::pair()?;
        let mut cmd = Command::new(&self.exe);
        cmd.stdin(Stdio::null());
        limit(&mut cmd, self.limits);
        let fd = theirs.as_raw_fd();
        // SAFETY: dup2 and fcntl are async-signal-safe; `theirs` lives until
        // spawn returns.
        unsafe {
            cmd.pre_exec(move || {
                // dup2 clears close-on-exec on the copy; when the fd is
                // already SOCKET_FD it is a no-op, so clear it by hand.
                if fd == SOCKET_FD {
                    libc::fcntl(fd, libc::F_SETFD, 0);
                } else if libc::dup2(fd, SOCKET_FD) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        drop(theirs);
        Ok((child, ours))
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        if let Some((mut child, sock)) = self.running.take() {
            drop(sock); // EOF: it exits by itself
            if !matches!(child.try_wait(), Ok(Some(_))) {
                std::thread::sleep(Duration::from_millis(50));
            }
            kill_and_reap(&mut child);
        }
    }
}

/// One request and its replies: Ok(outcome) when the decoder answered.
fn exchange(
    sock: &mut UnixStream,
    request: &Request,
    stall: Duration,
) -> Result<Result<(Summary, Packed), Failure>, Lost> {
    let lost = |e: WireError| match e {
        WireError::Io(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            Lost::Stalled
        }
        e => Lost::Died(e.to_string()),
    };
    write_frame(sock, request).map_err(lost)?;
    sock.set_read_timeout(Some(stall))
        .map_err(|e| Lost::Died(e.to_string()))?;
    let mut reader = FdReader::new(sock.as_fd());
    loop {
        match read_frame::<_, Reply>(&mut reader).map_err(lost)? {
            Reply::Working { .. } => continue,
            Reply::Failed { reason, temporary } => {
                return Ok(Err(if temporary {
                    Failure::Temporary(reason)
                } else {
                    Failure::File(reason)
                }));
            }
            Reply::Decoded(summary) => {
                let fd = reader
                    .take_fd()
                    .ok_or_else(|| Lost::Died("sent no segment".into()))?;
                let segment = Segment::from_fd(fd, summary.len)
                    .map_err(|e| Lost::Died(format!("sent a bad segment: {e}")))?;
                let packed = Packed {
                    segment,
                    renditions: summary.renditions.clone(),
                    audio: summary.audio,
                };
                return Ok(Ok((summary, packed)));
            }
        }
    }
}
