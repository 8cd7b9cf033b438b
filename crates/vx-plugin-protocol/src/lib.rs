//! Messages between `vxd` and a `vx-plugin-host` process. Types only, no I/O.
//!
//! The conversation on one socket:
//!
//! 1. the host connects and sends [`HostToDaemon::Hello`] (its shape is frozen
//!    so that any two versions can at least tell each other apart);
//! 2. the daemon checks [`Hello::protocol`] against [`PROTOCOL_VERSION`];
//! 3. the host says what it needs decoded ([`HostToDaemon::Needs`]): frames at
//!    which size, and whether audio; vxd decodes each file once for all hosts;
//! 4. the daemon sends [`DaemonToHost::Job`]s one at a time and the host answers
//!    each with [`HostToDaemon::Done`]; a plugin's failure on one file is data in
//!    that reply, not a transport error;
//! 5. [`DaemonToHost::Shutdown`] (or EOF) ends the host.
//!
//! A text-embedding host (one whose [`Needs::text_embedding`] is set) gets
//! no files: it answers [`DaemonToHost::Embed`] with
//! [`HostToDaemon::Embedded`], a unit vector per text.
//!
//! A plugin that panics is answered with [`HostToDaemon::Panicked`] instead,
//! and its host exits: the daemon treats that like a crash.
//!
//! Pixels and samples never travel on the socket: a [`Job`] names a shared
//! memory segment ([`ShmRef`]) and where each frame and the audio lie in it.
//! Enum variants are append-only; bincode encodes them by index.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change to the messages below.
pub const PROTOCOL_VERSION: u32 = 4;

/// Exit status of a host whose plugin panicked (after it sent
/// [`HostToDaemon::Panicked`]).
pub const EXIT_PANIC: i32 = 70;
/// Exit status of a host whose allocator failed: it hit its memory limit.
pub const EXIT_OUT_OF_MEMORY: i32 = 71;
/// Exit status of a host whose plugin could not open its models (it says
/// why on stderr before Hello).
pub const EXIT_NO_MODEL: i32 = 72;

/// First message from a host. Frozen: never add, remove or reorder fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hello {
    pub protocol: u32,
    pub plugin: String,
    pub plugin_version: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DaemonToHost {
    Job(Job),
    Shutdown,
    /// Embed each text (a text-embedding host only).
    Embed {
        id: u64,
        texts: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum HostToDaemon {
    Hello(Hello),
    Done(JobReply),
    /// The plugin panicked on job `id`; the host exits with [`EXIT_PANIC`] next.
    Panicked {
        id: u64,
        message: String,
    },
    /// Sent once, right after Hello.
    Needs(Needs),
    /// One unit vector per text of [`DaemonToHost::Embed`] `id`, in order.
    Embedded {
        id: u64,
        outcome: Result<Vec<Vec<f32>>, PluginError>,
    },
}

/// What a plugin wants decoded for it. vxd decodes each file once and scales
/// its frames once per distinct size that its hosts ask for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Needs {
    /// Frames fitted inside `max_side × max_side` (aspect kept, never
    /// upscaled); `None` for a plugin that looks at no pictures.
    pub frame_max_side: Option<u32>,
    /// The 16 kHz mono audio track.
    pub audio: bool,
    /// A text embedder, with vectors of this many dimensions: it is sent
    /// texts to embed, never files.
    pub text_embedding: Option<u32>,
}

impl Needs {
    /// Frames fitted inside `max_side × max_side`, and nothing else.
    pub fn frames(max_side: u32) -> Self {
        Self {
            frame_max_side: Some(max_side),
            ..Self::default()
        }
    }

    /// The audio track, and nothing else.
    pub fn audio() -> Self {
        Self {
            audio: true,
            ..Self::default()
        }
    }

    /// No files: texts to embed into vectors of `dims` dimensions.
    pub fn text_embedding(dims: u32) -> Self {
        Self {
            text_embedding: Some(dims),
            ..Self::default()
        }
    }
}

/// Why a plugin could not process one file: data in its reply, recorded for
/// that file and plugin only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginError {
    pub message: String,
    /// What the user can do about it, if anything.
    pub help: Option<String>,
    /// The machine was short of something (memory, file descriptors, disk):
    /// vxd tries the file again later instead of recording the failure.
    pub temporary: bool,
}

impl PluginError {
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            help: None,
            temporary: false,
        }
    }

    /// `context: e`, temporary when `e` says the system is short of a
    /// resource rather than that the input is bad.
    pub fn io(context: impl std::fmt::Display, e: &std::io::Error) -> Self {
        Self {
            temporary: is_short_of_resources(e),
            ..Self::new(format!("{context}: {e}"))
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)?;
        match &self.help {
            Some(help) => write!(f, " ({help})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for PluginError {}

/// Out of memory, of file descriptors or of disk space: the system is short
/// of something for now, and the same work may well succeed later.
pub fn is_short_of_resources(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{OutOfMemory, QuotaExceeded, StorageFull};
    // EMFILE and ENFILE have no ErrorKind of their own.
    const EMFILE: i32 = 24;
    const ENFILE: i32 = 23;
    matches!(e.kind(), OutOfMemory | StorageFull | QuotaExceeded)
        || matches!(e.raw_os_error(), Some(EMFILE | ENFILE))
}

impl From<String> for PluginError {
    fn from(message: String) -> Self {
        Self::new(message)
    }
}

impl From<&str> for PluginError {
    fn from(message: &str) -> Self {
        Self::new(message)
    }
}

/// A sealed memfd in the daemon, reachable as `/proc/{pid}/fd/{fd}`. vxd
/// also sends the fd itself with the job's frame (`SCM_RIGHTS`), which is
/// what a confined host uses: it may not look into vxd's `/proc` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShmRef {
    pub pid: u32,
    pub fd: i32,
    pub len: u64,
}

/// One sampled video frame (or a still image) as packed RGB24 rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FrameRef {
    pub offset: u64,
    pub width: u32,
    pub height: u32,
    /// Bytes per row; `>= width * 3`.
    pub stride: u32,
    /// Presentation time in seconds from the start of the file (0 for stills).
    pub pts_s: f64,
}

impl FrameRef {
    pub fn byte_len(&self) -> u64 {
        self.stride as u64 * self.height as u64
    }
}

/// Mono `f32` little-endian samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AudioRef {
    pub offset: u64,
    pub samples: u64,
    pub sample_rate: u32,
}

/// What a media file's container and streams say about it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct MediaInfo {
    pub container: String,
    pub duration_s: Option<f64>,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    /// Size of the source picture, before scaling.
    pub width: Option<u32>,
    pub height: Option<u32>,
    /// When it was recorded (seconds since the Unix epoch), from the
    /// container's or a stream's `creation_time` tag, if it has one.
    pub created: Option<i64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MediaKind {
    Video,
    Audio,
    Image,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MediaKind::Video => "video",
            MediaKind::Audio => "audio",
            MediaKind::Image => "image",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    pub path: PathBuf,
    pub kind: MediaKind,
    pub duration_s: Option<f64>,
    pub shm: ShmRef,
    pub frames: Vec<FrameRef>,
    pub audio: Option<AudioRef>,
    /// A directory the plugin may write artefacts into (thumbnails).
    pub artefact_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobReply {
    pub id: u64,
    pub outcome: Result<PluginOutput, PluginError>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PluginOutput {
    pub segments: Vec<SegmentResult>,
}

/// A time range inside the file and what the plugin found there.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SegmentResult {
    pub start_s: f64,
    pub end_s: f64,
    /// Words to index as full text (transcript, OCR).
    pub text: String,
    /// Short tags to index (object classes, "scene").
    pub labels: Vec<String>,
    /// 64-bit perceptual hash of the representative frame.
    pub phash: Option<u64>,
    pub thumbnail: Option<PathBuf>,
    /// The most faces visible at once in this range.
    pub faces: u32,
    /// Who speaks in this range ("speaker 1"), for transcripts.
    pub speaker: Option<String>,
    /// The spoken language (ISO 639-1, "en"), for transcripts.
    pub language: Option<String>,
    /// What was found, with where: boxes of objects and faces, lines of text.
    pub detections: Vec<Detection>,
}

/// One thing found in one frame. Coordinates are fractions of the frame's
/// width and height (0 to 1), so they hold at any decoded size.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    /// "person", "bus", "face", "text", …
    pub label: String,
    pub score: f32,
    /// x0, y0, x1, y1.
    pub bbox: [f32; 4],
    /// Points of interest inside the box (a face's eyes, nose and mouth
    /// corners), as (x, y).
    pub landmarks: Vec<[f32; 2]>,
    /// The words read inside the box (OCR).
    pub text: String,
    /// When the frame it was found in was shown, in seconds.
    pub pts_s: f64,
}
