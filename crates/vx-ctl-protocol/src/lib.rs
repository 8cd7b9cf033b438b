//! Messages between `vxctl` and `vxd` on the control socket. Types only, no I/O.
//!
//! Every connection opens with [`ClientHello`] → [`DaemonHello`]; both shapes are
//! frozen so that a `vxctl` and a `vxd` of different versions can always say
//! which one is older. After that the client sends [`Request`]s and reads one
//! [`Reply`] each. Fields are only ever appended: scripts read the JSON form of
//! these structs (`vxctl … --json`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change to the messages below.
pub const PROTOCOL_VERSION: u32 = 6;

/// The file beside the control socket (in vxd's 0700 runtime folder) that
/// holds the search page's address with its token, while vxd serves it:
/// `http://127.0.0.1:PORT/?token=…`. Readable by vxd's user only (0600).
pub const PAGE_URL_FILE: &str = "page-url";

/// Frozen: never add, remove or reorder fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientHello {
    pub protocol: u32,
    pub client_version: String,
}

/// Frozen: never add, remove or reorder fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DaemonHello {
    pub protocol: u32,
    pub daemon_version: String,
    pub pid: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Request {
    Status,
    Search(SearchRequest),
    Retry(RetryRequest),
    /// Finish the files in progress, then start no new one until Resume.
    Pause,
    Resume,
    /// Everything known about one file.
    File(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Reply {
    Status(Status),
    Search(SearchReply),
    Error(String),
    Retry(RetryReply),
    File(FileReport),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileReport {
    pub path: PathBuf,
    /// "indexed", "failed" (it could not be decoded: `failures` says why),
    /// "queued", "settling", "in progress", "not indexed", or "not watched"
    /// (outside the watched folders or not a media file).
    pub state: String,
    pub indexed: Option<IndexedFile>,
    pub failures: Vec<FailedFile>,
}

/// What the index holds for a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexedFile {
    pub kind: String,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub mtime: i64,
    pub indexed_at: i64,
    pub duration_s: Option<f64>,
    pub container: String,
    pub codecs: Vec<String>,
    pub resolution: Option<String>,
    /// BLAKE3 of the bytes.
    pub content: String,
    /// `plugin@version` list the results came from.
    pub plugin_set: String,
    /// Segments indexed per plugin.
    pub segments: Vec<(String, u64)>,
    /// Characters of transcript (spoken words).
    pub transcript_chars: u64,
    /// Different voices heard.
    pub speakers: u32,
    /// The most faces visible at once.
    pub faces: u32,
    /// Everything the plugins labelled in it ("bus", "face", "speech", …).
    pub labels: Vec<String>,
}

/// Index these files again even though they are unchanged; with `all`, every
/// file in `failed_files`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryRequest {
    pub paths: Vec<PathBuf>,
    pub all_failed: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RetryReply {
    pub queued: Vec<PathBuf>,
    /// Paths that are not media files vxd watches, with why.
    pub refused: Vec<(PathBuf, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchRequest {
    /// Words, tantivy query syntax (`"an exact phrase"`, `label:bus`), or
    /// empty for "anything that passes the filters".
    pub query: String,
    /// Hits, or files when `per_file` is set.
    pub limit: u32,
    pub filters: SearchFilters,
    pub mode: SearchMode,
    /// Group hits by file: each file once, in the order of its best hit,
    /// followed by up to `moments_per_file` of its best moments.
    pub per_file: bool,
    pub moments_per_file: u32,
}

/// How hits are ranked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// BM25 over words: every query word must match.
    Text,
    /// Closeness in meaning (MiniLM sentence embeddings), above a floor.
    Semantic,
    /// Both lists fused by reciprocal rank; hits that contain a quoted
    /// phrase of the query come first.
    #[default]
    Hybrid,
}

impl SearchMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SearchMode::Text => "text",
            SearchMode::Semantic => "semantic",
            SearchMode::Hybrid => "hybrid",
        }
    }
}

/// Conditions every hit must meet, besides matching the query.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchFilters {
    /// Each of these labels, exactly ("bus", "dining table", "face").
    pub labels: Vec<String>,
    /// Each of these: "faces" (someone's face is visible), "text" (words were
    /// read or heard), "speech" (someone speaks).
    pub has: Vec<String>,
    /// "video", "audio" or "image".
    pub kind: Option<String>,
    /// Only files whose path starts with this.
    pub path_prefix: Option<PathBuf>,
    /// Only files made at or after / before this time (seconds since the
    /// Unix epoch): the creation time in the media's metadata where it has
    /// one, else the file's modification time.
    pub after: Option<i64>,
    pub before: Option<i64>,
    /// Only files at least / at most this long, in seconds (stills, which
    /// have no duration, never pass).
    pub min_duration_s: Option<f64>,
    pub max_duration_s: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SearchReply {
    pub hits: Vec<Hit>,
    /// The ranking actually used: `text` when semantic search was asked for
    /// but is unavailable.
    pub mode: SearchMode,
    /// Why the results may be incomplete, e.g. the text-embed host is down.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    pub path: PathBuf,
    /// "video", "audio" or "image".
    pub kind: String,
    /// Higher is better; comparable only within one reply.
    pub score: f32,
    /// A time range inside the file; both `None` for a whole-file hit.
    pub start_s: Option<f64>,
    pub end_s: Option<f64>,
    pub snippet: String,
    /// The indexed fields the query words matched, e.g. `["name", "codec"]`.
    pub fields: Vec<String>,
    /// Byte ranges of `snippet` that matched the query words.
    pub highlights: Vec<[u32; 2]>,
    /// What was found there ("bus", "face", "text", "scene").
    pub labels: Vec<String>,
    /// The most faces visible at once there.
    pub faces: u32,
    /// The plugin that found it; `None` for a whole-file hit.
    pub plugin: Option<String>,
    /// Who speaks there ("speaker 1"), for transcript hits.
    pub speaker: Option<String>,
    /// Cosine similarity of the query and this moment's words, when it was
    /// found by meaning.
    pub similarity: Option<f32>,
    /// When the file was made (seconds since the Unix epoch): see
    /// [`SearchFilters::after`].
    pub time: i64,
    pub duration_s: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub version: String,
    pub pid: u32,
    pub protocol: u32,
    pub watched: Vec<PathBuf>,
    pub files: FileCounts,
    pub plugins: Vec<PluginStatus>,
    pub failed_files: Vec<FailedFile>,
    /// True when nothing is queued, settling or in progress, and the
    /// text-embed host (when running) has embedded every segment.
    pub idle: bool,
    /// Jobs sent to model hosts since vxd started (retries included).
    pub plugin_jobs: u64,
    pub paused: bool,
    /// What each worker is doing now.
    pub current: Vec<Current>,
    /// Files finished per minute, over the last few minutes of work.
    pub files_per_min: Option<f64>,
    /// Seconds until the queue is done at that rate.
    pub eta_s: Option<f64>,
    /// Problems that do not stop vxd but that you should know about,
    /// e.g. folders that cannot be watched.
    pub warnings: Vec<String>,
    /// Bytes the index takes on disk.
    pub index_bytes: u64,
    /// Sentence vectors stored, for search by meaning.
    pub vectors: u64,
    /// Segments whose words still wait for their vector.
    pub embed_backlog: u64,
    /// Failures not listed in `failed_files`, which holds the first
    /// [`MAX_LISTED_FAILURES`] by path (`vxctl status FILE` shows any one).
    pub failed_files_omitted: u64,
    /// Why indexing is held up and waits, e.g. the state dir is full.
    pub stalled: Option<String>,
    pub budget: Budget,
    /// The cluster this vxd belongs to (a `[cluster]` section), if any.
    pub cluster: Option<ClusterStatus>,
}

/// The cluster, as this vxd sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterStatus {
    pub nats: String,
    /// "coordinator", "worker" or "both".
    pub role: String,
    /// The NATS server answered and the streams are set up.
    pub connected: bool,
    /// The workers heard from (coordinator).
    pub workers: Vec<WorkerStatus>,
    /// Files this coordinator has sent out and waits for.
    pub waiting_here: usize,
    /// Jobs no worker has taken yet.
    pub backlog: u64,
    /// Jobs taken and not yet answered.
    pub in_flight: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkerStatus {
    pub name: String,
    /// `name@version` of each plugin it runs.
    pub plugins: Vec<String>,
    /// Jobs it takes at once, and those it has now.
    pub slots: usize,
    pub busy: usize,
    /// Its machine's load average over a minute.
    pub load: f64,
    pub last_seen_s: f64,
    /// Jobs it answered for this coordinator since it started.
    pub done: u64,
}

/// What vx may use, from the config, and how vxd plans to stay within it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// CPU cores vx is pinned to (`cpu_share`).
    pub cores: u32,
    /// MiB for all model hosts and decoders together (`memory_mb`).
    pub memory_mb: u64,
    /// Their expected peak with the planned pools, MiB.
    pub planned_mb: u64,
    /// Hosts per plugin.
    pub hosts: Vec<(String, u32)>,
    /// `index_hours`, when set.
    pub index_hours: Option<String>,
}

/// Failures listed in a [`Status`], so that it stays small however many
/// files fail.
pub const MAX_LISTED_FAILURES: usize = 1000;
/// Warnings listed in a [`Status`].
pub const MAX_LISTED_WARNINGS: usize = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Current {
    pub path: PathBuf,
    /// The plugin running on it now; `None` while decoding.
    pub plugin: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileCounts {
    /// Media files found by the crawl or the watcher.
    pub seen: u64,
    /// Files whose results are committed to the index.
    pub indexed: u64,
    pub failed: u64,
    pub queued: u64,
    pub in_progress: u64,
    /// Files indexed by reusing the results of identical content (a rename,
    /// a copy) instead of running plugins.
    pub reused: u64,
    /// Files finished, indexed or failed (a file can be both: its other
    /// plugins' results are indexed).
    pub done: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PluginStatus {
    pub name: String,
    pub pid: Option<u32>,
    pub state: PluginState,
    pub restarts: u32,
    pub crashes: u32,
    pub last_error: Option<String>,
    /// Which worker's host this is (0 unless `jobs` > 1).
    pub worker: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PluginState {
    Starting,
    Ready,
    Busy,
    Exited,
    Disabled,
    /// Not started: a model it needs is not installed (`last_error` says
    /// which, and the command that installs it).
    Missing,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedFile {
    pub path: PathBuf,
    /// The plugin that failed, or "decode" when the file could not be read.
    pub plugin: String,
    pub reason: String,
}
