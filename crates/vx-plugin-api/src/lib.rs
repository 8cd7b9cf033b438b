//! What a plugin author implements ([`Plugin`]) and the loop that serves it in
//! a `vx-plugin-host` process ([`serve`]).
//!
//! A plugin says once what it needs decoded ([`Plugin::needs`]), then sees one
//! [`JobInput`] at a time: the job's metadata plus read-only views of its
//! frames and audio in the daemon's shared memory. It returns what it found,
//! or a [`PluginError`] that the daemon records for that file only. A panic inside [`Plugin::process`] is reported for that job and then
//! ends the host with [`EXIT_PANIC`]: a plugin that panicked may hold broken
//! state, and the daemon starts a fresh host.

pub mod pixels;

use std::io::{BufReader, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use vx_plugin_protocol::{
    DaemonToHost, EXIT_PANIC, FrameRef, Hello, HostToDaemon, Job, JobReply, PROTOCOL_VERSION,
};
pub use vx_plugin_protocol::{Detection, Needs, PluginError, PluginOutput, SegmentResult};
use vx_shm::SegmentView;
use vx_wire::{FdReader, WireError, read_frame, write_frame};

/// A plugin: one model (or a few) run on one file at a time.
///
/// ```
/// use vx_plugin_api::{JobInput, Needs, Plugin, PluginError, PluginOutput, SegmentResult};
///
/// /// Tags every file that has frames.
/// struct HasPictures;
///
/// impl Plugin for HasPictures {
///     fn name(&self) -> &str { "has-pictures" }
///     fn version(&self) -> &str { "1" }
///     fn needs(&self) -> Needs { Needs::frames(64) }
///     fn process(&mut self, input: &JobInput<'_>) -> Result<PluginOutput, PluginError> {
///         let frames = input.frames()?;
///         let segments = frames
///             .first()
///             .map(|_| SegmentResult { labels: vec!["pictures".into()], ..Default::default() })
///             .into_iter()
///             .collect();
///         Ok(PluginOutput { segments })
///     }
/// }
/// ```
pub trait Plugin {
    /// The name the daemon knows this plugin by (`--plugin NAME`).
    fn name(&self) -> &str;
    /// Changes whenever the plugin's output for the same file would change.
    fn version(&self) -> &str;
    /// What vxd should decode for this plugin; asked once, when the host starts.
    fn needs(&self) -> Needs;
    /// Everything the plugin found in one file. An `Err` fails this file for
    /// this plugin only; a panic ends the host.
    fn process(&mut self, input: &JobInput<'_>) -> Result<PluginOutput, PluginError>;
    /// A text embedder's unit vectors, one per text, in order; asked only of
    /// a plugin whose [`Needs::text_embedding`] is set.
    fn embed(&mut self, texts: &[String]) -> Result<Vec<Vec<f32>>, PluginError> {
        let _ = texts;
        Err(PluginError::new(format!(
            "plugin {} does not embed text",
            self.name()
        )))
    }
    /// The protocol version announced in Hello. Only the fault-injecting test
    /// plugin overrides this.
    fn hello_protocol(&self) -> u32 {
        PROTOCOL_VERSION
    }
}

/// What a host is started with, for plugins that open models.
#[derive(Debug, Clone)]
pub struct HostContext {
    /// Where `vx_models` finds installed models and ONNX Runtime.
    pub cache_dir: std::path::PathBuf,
    /// Threads the plugin may use for inference.
    pub threads: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot connect to vxd at {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Wire(#[from] WireError),
}

/// One RGB24 frame, borrowed from shared memory.
#[derive(Clone, Copy)]
pub struct Frame<'a> {
    pub width: u32,
    pub height: u32,
    pub stride: u32,
    pub pts_s: f64,
    pub rgb: &'a [u8],
}

impl Frame<'_> {
    /// The packed `width * 3` bytes of row `y`.
    pub fn row(&self, y: u32) -> &[u8] {
        let start = y as usize * self.stride as usize;
        &self.rgb[start..start + self.width as usize * 3]
    }

    /// The `[r, g, b]` pixel at (`x`, `y`).
    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = y as usize * self.stride as usize + x as usize * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }
}

pub struct JobInput<'a> {
    pub job: &'a Job,
    view: Option<&'a SegmentView>,
}

impl<'a> JobInput<'a> {
    /// A job over a segment mapped in this process: what the host loop
    /// builds, and what a benchmark that runs a plugin in-process needs.
    pub fn new(job: &'a Job, view: Option<&'a SegmentView>) -> Self {
        Self { job, view }
    }

    fn frame_at(&self, r: &FrameRef) -> Result<Frame<'a>, PluginError> {
        let view = self.view.ok_or("job has no shared memory")?;
        if (r.stride as u64) < r.width as u64 * 3 {
            return Err(format!("frame stride {} < 3 × width {}", r.stride, r.width).into());
        }
        let rgb = view
            .slice(r.offset, r.byte_len())
            .map_err(|e| e.to_string())?;
        Ok(Frame {
            width: r.width,
            height: r.height,
            stride: r.stride,
            pts_s: r.pts_s,
            rgb,
        })
    }

    /// Every sampled frame, in presentation order. Near-identical frames in
    /// a row were sent once, so a frame stands for the time until the next.
    pub fn frames(&self) -> Result<Vec<Frame<'a>>, PluginError> {
        self.job.frames.iter().map(|r| self.frame_at(r)).collect()
    }

    /// The time each frame stands for: from its own time to the next frame's,
    /// the last one to the end of the file. A still's one frame covers 0 to 0.
    pub fn frame_spans(&self, frames: &[Frame<'_>]) -> Vec<(f64, f64)> {
        let end_of_file = self
            .job
            .duration_s
            .unwrap_or(0.0)
            .max(frames.last().map_or(0.0, |f| f.pts_s));
        (0..frames.len())
            .map(|i| {
                let end = frames.get(i + 1).map_or(end_of_file, |n| n.pts_s);
                (frames[i].pts_s, end)
            })
            .collect()
    }

    /// The audio track as mono samples, if the file has one.
    pub fn audio(&self) -> Result<Option<Vec<f32>>, PluginError> {
        let (Some(a), Some(view)) = (self.job.audio, self.view) else {
            return Ok(None);
        };
        let bytes = view
            .slice(a.offset, a.samples * 4)
            .map_err(|e| e.to_string())?;
        Ok(Some(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        ))
    }
}

/// Connects to the daemon's socket at `socket`. A host connects before it
/// confines itself, so the socket's folder need not stay reachable.
pub fn connect(socket: &Path) -> Result<UnixStream, HostError> {
    UnixStream::connect(socket).map_err(|source| HostError::Connect {
        path: socket.display().to_string(),
        source,
    })
}

/// Says Hello on `conn` and serves jobs until the daemon says Shutdown or
/// closes the socket. Each job's shared memory arrives as an fd with its frame.
pub fn serve(plugin: &mut dyn Plugin, conn: &UnixStream) -> Result<(), HostError> {
    let mut reader = BufReader::new(FdReader::new(conn.as_fd()));
    serve_with(plugin, &mut reader, &mut &*conn, |r| r.get_mut().take_fd())
}

/// The host loop over any byte transport; unit tests drive it with buffers.
/// Jobs find their shared memory through `/proc/<pid>/fd/<fd>`.
pub fn serve_on(
    plugin: &mut dyn Plugin,
    reader: &mut impl Read,
    writer: &mut impl Write,
) -> Result<(), HostError> {
    serve_with(plugin, reader, writer, |_| None)
}

/// The host loop; `take_fd` yields the fd that came with the last job, if any.
fn serve_with<R: Read>(
    plugin: &mut dyn Plugin,
    reader: &mut R,
    writer: &mut impl Write,
    mut take_fd: impl FnMut(&mut R) -> Option<OwnedFd>,
) -> Result<(), HostError> {
    let hello = Hello {
        protocol: plugin.hello_protocol(),
        plugin: plugin.name().to_owned(),
        plugin_version: plugin.version().to_owned(),
    };
    write_frame(writer, &HostToDaemon::Hello(hello))?;
    write_frame(writer, &HostToDaemon::Needs(plugin.needs()))?;
    loop {
        let (id, outcome) = match read_frame(reader) {
            Ok(DaemonToHost::Job(job)) => {
                let shm = take_fd(reader);
                let span = tracing::info_span!("job", id = job.id, path = %job.path.display());
                let _enter = span.enter();
                (
                    job.id,
                    run_job(plugin, &job, shm).map(|o| {
                        HostToDaemon::Done(JobReply {
                            id: job.id,
                            outcome: o,
                        })
                    }),
                )
            }
            Ok(DaemonToHost::Embed { id, texts }) => (
                id,
                guarded(|| plugin.embed(&texts)).map(|o| HostToDaemon::Embedded { id, outcome: o }),
            ),
            Ok(DaemonToHost::Shutdown) | Err(WireError::Closed) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        match outcome {
            JobOutcome::Finished(reply) => write_frame(writer, &reply)?,
            JobOutcome::Panicked(message) => {
                write_frame(writer, &HostToDaemon::Panicked { id, message })?;
                std::process::exit(EXIT_PANIC);
            }
        }
    }
}

/// How one request ended inside the host.
enum JobOutcome<T> {
    /// The plugin returned, with its results or its error for this request.
    Finished(T),
    /// The plugin panicked, with this message; the host must exit.
    Panicked(String),
}

impl<T> JobOutcome<T> {
    fn map<U>(self, f: impl FnOnce(T) -> U) -> JobOutcome<U> {
        match self {
            JobOutcome::Finished(t) => JobOutcome::Finished(f(t)),
            JobOutcome::Panicked(m) => JobOutcome::Panicked(m),
        }
    }
}

/// Runs `f`, catching a panic as [`JobOutcome::Panicked`].
fn guarded<T>(f: impl FnOnce() -> T) -> JobOutcome<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(t) => JobOutcome::Finished(t),
        Err(payload) => JobOutcome::Panicked(
            payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into()),
        ),
    }
}

fn run_job(
    plugin: &mut dyn Plugin,
    job: &Job,
    shm: Option<OwnedFd>,
) -> JobOutcome<Result<PluginOutput, PluginError>> {
    let view = if job.frames.is_empty() && job.audio.is_none() {
        None
    } else {
        let opened = match shm {
            Some(fd) => SegmentView::from_fd(fd, job.shm.len),
            None => SegmentView::open(job.shm.pid, job.shm.fd, job.shm.len),
        };
        match opened {
            Ok(v) => Some(v),
            Err(e) => return JobOutcome::Finished(Err(PluginError::new(e.to_string()))),
        }
    };
    let input = JobInput {
        job,
        view: view.as_ref(),
    };
    guarded(|| plugin.process(&input))
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;
    use std::path::PathBuf;

    use vx_plugin_protocol::{MediaKind, ShmRef};
    use vx_wire::encode;

    use super::*;

    struct Counter;
    impl Plugin for Counter {
        fn name(&self) -> &str {
            "counter"
        }
        fn version(&self) -> &str {
            "1"
        }
        fn needs(&self) -> Needs {
            Needs::frames(32)
        }
        fn process(&mut self, input: &JobInput<'_>) -> Result<PluginOutput, PluginError> {
            let n = input.frames()?.len();
            Ok(PluginOutput {
                segments: vec![SegmentResult {
                    labels: vec![format!("{n} frames")],
                    ..Default::default()
                }],
            })
        }
    }

    fn empty_job(id: u64) -> Job {
        Job {
            id,
            path: PathBuf::from("/x.png"),
            kind: MediaKind::Image,
            duration_s: None,
            shm: ShmRef {
                pid: 0,
                fd: -1,
                len: 0,
            },
            frames: vec![],
            audio: None,
            artefact_dir: PathBuf::from("/tmp"),
        }
    }

    fn replies(out: Vec<u8>) -> Vec<HostToDaemon> {
        let mut r = Cursor::new(out);
        let mut msgs = vec![];
        while let Ok(m) = read_frame::<_, HostToDaemon>(&mut r) {
            msgs.push(m);
        }
        msgs
    }

    #[test]
    fn host_says_hello_first_then_answers_each_job_in_order() {
        let mut input = encode(&DaemonToHost::Job(empty_job(1))).unwrap();
        input.extend(encode(&DaemonToHost::Job(empty_job(2))).unwrap());
        input.extend(encode(&DaemonToHost::Shutdown).unwrap());
        let mut out = vec![];
        serve_on(&mut Counter, &mut Cursor::new(input), &mut out).unwrap();
        let msgs = replies(out);
        assert!(
            matches!(&msgs[0], HostToDaemon::Hello(h) if h.protocol == PROTOCOL_VERSION && h.plugin == "counter")
        );
        assert_eq!(msgs[1], HostToDaemon::Needs(Counter.needs()));
        let ids: Vec<u64> = msgs[2..]
            .iter()
            .map(|m| match m {
                HostToDaemon::Done(r) => r.id,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(ids, [1, 2]);
    }

    #[test]
    fn unreadable_shared_memory_is_a_per_job_error_not_a_host_failure() {
        let mut job = empty_job(9);
        job.frames.push(FrameRef {
            offset: 0,
            width: 1,
            height: 1,
            stride: 3,
            pts_s: 0.0,
        });
        job.shm = ShmRef {
            pid: std::process::id(),
            fd: 987_654,
            len: 3,
        };
        let input = encode(&DaemonToHost::Job(job)).unwrap();
        let mut out = vec![];
        serve_on(&mut Counter, &mut Cursor::new(input), &mut out).unwrap();
        match &replies(out)[2] {
            HostToDaemon::Done(JobReply {
                id: 9,
                outcome: Err(e),
            }) => assert!(e.message.contains("/proc/"), "{e}"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn garbage_from_the_daemon_is_an_error() {
        let mut out = vec![];
        let res = serve_on(
            &mut Counter,
            &mut Cursor::new(b"nonsense".to_vec()),
            &mut out,
        );
        assert!(matches!(res, Err(HostError::Wire(WireError::BadMagic(_)))));
    }
}
