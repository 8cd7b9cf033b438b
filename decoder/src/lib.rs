//! Decoding in a subprocess: `vx-decoder` opens each file with FFmpeg,
//! packs the frames and audio into a sealed memfd and passes the fd back to
//! vxd over a unix socket (`SCM_RIGHTS`). A crash or hang in FFmpeg on a
//! hostile file then costs one decoder process and fails one file; vxd and
//! its queue go on.
//!
//! The conversation on the socket, per file: vxd sends a [`Request`]; the
//! decoder sends [`Reply::Working`] each second in which it read packets,
//! then [`Reply::Decoded`] with the segment's fd attached, or
//! [`Reply::Failed`]. Silence past vxd's `decode_stall_s` means FFmpeg is
//! stuck, and vxd kills the decoder.

use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use vx_media::DecodeOptions;
use vx_plugin_protocol::{AudioRef, FrameRef, MediaInfo, MediaKind, Needs};
use vx_wire::{WireError, read_frame, write_frame, write_frame_with_fd};

/// The fd on which the decoder finds its end of the socket.
pub const SOCKET_FD: i32 = 3;

/// How often a busy decoder says it is still reading.
pub const PROGRESS_INTERVAL: Duration = Duration::from_secs(1);

/// What to decode for hosts with these needs, within the config's limits:
/// each frame size they ask for once (at most `frame_max_side`), and audio if
/// any of them wants it. vxd and the benchmark decode with these.
pub fn options_for<'a>(
    settings: &vx_config::Settings,
    needs: impl IntoIterator<Item = &'a Needs>,
) -> DecodeOptions {
    let mut frame_sides = vec![];
    let mut audio = false;
    for n in needs {
        frame_sides.extend(
            n.frame_max_side
                .map(|side| side.min(settings.frame_max_side)),
        );
        audio |= n.audio;
    }
    frame_sides.sort_unstable();
    frame_sides.dedup();
    DecodeOptions {
        frame_sides,
        frame_interval_s: settings.frame_interval_s,
        max_frames: settings.max_frames,
        still_threshold: settings.still_threshold,
        audio,
        max_pixels: settings.max_image_pixels,
        max_audio_s: settings.max_audio_s,
        ..DecodeOptions::default()
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Request {
    pub path: PathBuf,
    pub opts: DecodeOptions,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum Reply {
    /// Packets read so far: FFmpeg is not stuck.
    Working { packets: u64 },
    /// The file's summary; the segment's fd comes with this frame.
    Decoded(Summary),
    Failed {
        reason: String,
        /// The machine ran short (memory, file descriptors), not the file
        /// at fault: try again later.
        temporary: bool,
    },
}

/// What vxd keeps of a decoded file, and where its frames and audio lie in
/// the segment that comes with it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub kind: MediaKind,
    pub info: MediaInfo,
    pub audio_cut: bool,
    /// Seconds of media actually decoded.
    pub decoded_s: f64,
    /// Per rendition: the sides it serves and its frames.
    pub renditions: Vec<(Vec<u32>, Vec<FrameRef>)>,
    pub audio: Option<AudioRef>,
    /// Bytes in the segment.
    pub len: u64,
}

/// The decoder's loop: one request at a time until vxd closes the socket.
pub fn serve(sock: UnixStream) -> Result<(), WireError> {
    let mut reader = sock.try_clone()?;
    let writer = Mutex::new(sock);
    loop {
        let request: Request = match read_frame(&mut reader) {
            Ok(r) => r,
            Err(WireError::Closed) => return Ok(()),
            Err(e) => return Err(e),
        };
        let packets = Arc::new(AtomicU64::new(0));
        let opts = DecodeOptions {
            progress: Some(packets.clone()),
            ..request.opts
        };
        let (done, until_done) = mpsc::channel::<()>();
        let outcome = std::thread::scope(|scope| {
            scope.spawn(|| report_progress(&writer, &packets, until_done));
            let outcome = decode_and_pack(&request.path, &opts);
            drop(done);
            outcome
        });
        let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
        match outcome {
            Ok((summary, packed)) => {
                // SAFETY: the segment stays open until this call returns.
                let fd = unsafe { BorrowedFd::borrow_raw(packed.segment.fd()) };
                write_frame_with_fd(w.as_fd(), &Reply::Decoded(summary), fd)?;
            }
            Err(e) => write_frame(
                &mut *w,
                &Reply::Failed {
                    reason: e.to_string(),
                    temporary: e.is_temporary(),
                },
            )?,
        }
    }
}

/// Sends [`Reply::Working`] each interval in which packets were read, until
/// `until_done` closes.
fn report_progress(
    writer: &Mutex<UnixStream>,
    packets: &AtomicU64,
    until_done: mpsc::Receiver<()>,
) {
    let mut last = 0;
    while let Err(mpsc::RecvTimeoutError::Timeout) = until_done.recv_timeout(PROGRESS_INTERVAL) {
        let now = packets.load(Ordering::Relaxed);
        if now != last {
            last = now;
            let mut w = writer.lock().unwrap_or_else(|e| e.into_inner());
            if write_frame(&mut *w, &Reply::Working { packets: now }).is_err() {
                return; // vxd is gone; the main loop finds out too
            }
        }
    }
}

fn decode_and_pack(
    path: &Path,
    opts: &DecodeOptions,
) -> Result<(Summary, vx_media::Packed), vx_media::MediaError> {
    #[cfg(feature = "fault-injection")]
    fault_injection(path)?;
    let decoded = vx_media::decode(path, opts)?;
    let packed = vx_media::pack(&decoded)?;
    let summary = Summary {
        kind: decoded.kind(),
        info: decoded.info.clone(),
        audio_cut: decoded.audio_cut,
        decoded_s: decoded.decoded_s(),
        renditions: packed.renditions.clone(),
        audio: packed.audio,
        len: packed.segment.len(),
    };
    Ok((summary, packed))
}

/// Stands in for FFmpeg failing in the ways a hostile file can make it.
#[cfg(feature = "fault-injection")]
fn fault_injection(path: &Path) -> Result<(), vx_media::MediaError> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    if name.starts_with("decoder-segv") {
        // SAFETY: restoring the default action and raising a signal.
        unsafe {
            libc::signal(libc::SIGSEGV, libc::SIG_DFL);
            libc::raise(libc::SIGSEGV);
        }
    }
    if name.starts_with("decoder-slow") {
        std::thread::sleep(Duration::from_secs(2)); // time to change the file
    }
    if name.starts_with("decoder-hang") {
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    // Short of memory while `NAME.busy` exists beside the file.
    let mut busy = path.as_os_str().to_owned();
    busy.push(".busy");
    if name.starts_with("decoder-busy") && Path::new(&busy).exists() {
        return Err(vx_media::MediaError::Shm(vx_shm::ShmError::Create(
            std::io::Error::from_raw_os_error(libc::ENOMEM),
        )));
    }
    Ok(())
}
