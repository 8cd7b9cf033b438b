//! vxd's settings: one [`Settings`] struct, read from a TOML file and `VX_*`
//! environment variables, with XDG defaults; and the `VX_LOG` logging set-up
//! shared by vxd and its hosts.
//!
//! The commented example file `config/vxd.example.toml` is the documentation
//! of every key; the binary embeds it ([`EXAMPLE_TOML`]) and a test checks that
//! it parses to exactly [`Settings::default`].

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub const EXAMPLE_TOML: &str = include_str!("../../../config/vxd.example.toml");

/// Every plugin this build of vx knows, in the order they run.
pub const KNOWN_PLUGINS: &[&str] = &[
    "keyframes",
    "objects",
    "faces",
    "ocr",
    "speech",
    "text-embed",
    "misbehave",
];
/// Plugins run when the config names none (those whose models are missing
/// are not started; status says which model and how to install it).
/// `misbehave` is a fault injector for tests and only exists in hosts built
/// with its cargo feature.
pub const DEFAULT_PLUGINS: &[&str] = &[
    "keyframes",
    "objects",
    "faces",
    "ocr",
    "speech",
    "text-embed",
];
/// Where the search page listens, on 127.0.0.1 only.
pub const DEFAULT_PAGE_PORT: u16 = 7407;
/// The plugin that embeds text for search by meaning. It is sent the words
/// of indexed segments and of queries, never files.
pub const TEXT_EMBED: &str = "text-embed";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("unknown plugin {0:?} (known: {known})", known = KNOWN_PLUGINS.join(", "))]
    UnknownPlugin(String),
    #[error("{0} must be positive")]
    NotPositive(&'static str),
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub watch: Vec<PathBuf>,
    pub ignore: Vec<String>,
    pub rescan_interval_s: f64,
    pub state_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub socket: PathBuf,
    pub plugins: Vec<String>,
    pub settle_ms: u64,
    pub frame_interval_s: f64,
    pub max_frames: usize,
    pub frame_max_side: u32,
    pub still_threshold: f32,
    /// Pictures larger than this many pixels fail instead of being decoded.
    pub max_image_pixels: u64,
    /// Audio past this many seconds of a file is not decoded.
    pub max_audio_s: f64,
    /// The decoder subprocess is killed when it reads no packet for this long.
    pub decode_stall_s: f64,
    /// Files in flight at once (decoding, or waiting for the hosts).
    pub jobs: usize,
    /// Files committed to the index together when many arrive at once;
    /// 1: a commit per file.
    pub commit_batch: usize,
    /// Hosts per plugin, shared by all jobs; 0: by each model's cost.
    pub host_pool_size: usize,
    /// Inference threads per host.
    pub host_threads: usize,
    /// The share of the CPU cores vx may use (vxd, its decoders and hosts
    /// are pinned to that many cores).
    pub cpu_share: f64,
    /// `"HH:MM-HH:MM"`, local time: vx indexes only then (it may wrap past
    /// midnight). Empty: at any time.
    pub index_hours: String,
    /// MiB for all model hosts and decoders together: pools get fewer
    /// hosts to fit. 0: half the machine's memory.
    pub memory_mb: u64,
    pub host_nice: i32,
    pub host_io_idle: bool,
    pub host_memory_mb: u64,
    pub host_start_timeout_s: f64,
    pub deadline_base_s: f64,
    pub deadline_per_media_s: f64,
    /// The search page's port on 127.0.0.1; 0: no page.
    pub page_port: u16,
    /// Work shared with other machines over NATS JetStream; `None`: this
    /// machine does everything, as without the section.
    pub cluster: Option<ClusterSettings>,
}

/// What this vxd does in a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Watches, fingerprints, publishes a job per file and indexes results;
    /// runs no models.
    Coordinator,
    /// Takes jobs: decodes once, runs its host pools, sends results back.
    Worker,
    /// Both in one process.
    Both,
}

/// The `[cluster]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSettings {
    /// The NATS server, `nats://host:4222` (JetStream on).
    pub nats: String,
    pub role: Role,
    /// This machine's name in status; empty: its host name.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub password: String,
    #[serde(default)]
    pub token: String,
    /// Coordinator: folders the workers see too (shared storage, after
    /// their `path_map`). Other files go through the JetStream object store.
    #[serde(default)]
    pub shared: Vec<PathBuf>,
    /// Worker: `[["/coordinator/prefix", "/local/prefix"], …]`.
    #[serde(default)]
    pub path_map: Vec<(PathBuf, PathBuf)>,
    /// Deliveries of a job before its file fails.
    #[serde(default = "default_max_deliver")]
    pub max_deliver: u32,
    /// A worker that sends no sign of life for this long loses its job to
    /// another worker.
    #[serde(default = "default_ack_wait_s")]
    pub ack_wait_s: f64,
    /// Coordinator: jobs published and not yet answered, at most.
    #[serde(default = "default_in_flight")]
    pub in_flight: usize,
}

fn default_max_deliver() -> u32 {
    3
}
fn default_ack_wait_s() -> f64 {
    30.0
}
fn default_in_flight() -> usize {
    32
}

impl ClusterSettings {
    pub fn coordinates(&self) -> bool {
        self.role != Role::Worker
    }
    pub fn works(&self) -> bool {
        self.role != Role::Coordinator
    }
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            watch: vec![],
            ignore: vec![],
            rescan_interval_s: 60.0,
            state_dir: PathBuf::new(),
            cache_dir: PathBuf::new(),
            socket: PathBuf::new(),
            plugins: vec![],
            settle_ms: 1000,
            frame_interval_s: 0.5,
            max_frames: 240,
            frame_max_side: 1280,
            still_threshold: 3.0,
            max_image_pixels: 100_000_000,
            max_audio_s: 3.0 * 3600.0,
            decode_stall_s: 60.0,
            jobs: 0,
            commit_batch: 64,
            host_pool_size: 0,
            host_threads: 0,
            cpu_share: 1.0,
            index_hours: String::new(),
            memory_mb: 0,
            host_nice: 10,
            host_io_idle: true,
            host_memory_mb: 4096,
            host_start_timeout_s: 20.0,
            deadline_base_s: 30.0,
            deadline_per_media_s: 2.0,
            page_port: DEFAULT_PAGE_PORT,
            cluster: None,
        }
    }
}

/// The machine's memory in MiB (0 if unknown).
pub fn physical_memory_mb() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let (pages, page) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    (pages.max(0) as u64).saturating_mul(page.max(0) as u64) >> 20
}

impl Settings {
    /// The cores vx may use: `cpu_share` of the machine's, at least one.
    pub fn cores(&self) -> usize {
        let all = std::thread::available_parallelism().map_or(1, |n| n.get());
        ((all as f64 * self.cpu_share).round() as usize).clamp(1, all)
    }

    /// `index_hours` as minutes after midnight (start, end), when set.
    pub fn hours(&self) -> Option<(u32, u32)> {
        let minutes = |hm: &str| {
            let (h, m) = hm.trim().split_once(':')?;
            let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
            (h < 24 && m < 60).then_some(h * 60 + m)
        };
        let (start, end) = self.index_hours.split_once('-')?;
        Some((minutes(start)?, minutes(end)?))
    }

    /// Where plugins write artefacts (thumbnails), under the cache.
    pub fn artefact_dir(&self) -> PathBuf {
        self.cache_dir.join("thumbnails")
    }

    /// Reads `path` (or the XDG config file when `None` and it exists),
    /// applies `VX_*` overrides, fills in XDG defaults and validates.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let path = path.map(Path::to_owned).or_else(|| {
            let p = xdg_dir("XDG_CONFIG_HOME", ".config").join("vx/vxd.toml");
            p.exists().then_some(p)
        });
        let mut s = match &path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.clone(),
                    source,
                })?;
                Self::from_toml(&text).map_err(|message| ConfigError::Parse {
                    path: p.clone(),
                    message,
                })?
            }
            None => Self::default(),
        };
        s.apply_env(|k| std::env::var_os(k));
        s.finish()
    }

    pub fn from_toml(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    fn apply_env(&mut self, var: impl Fn(&str) -> Option<std::ffi::OsString>) {
        if let Some(v) = var("VX_WATCH") {
            self.watch = std::env::split_paths(&v).collect();
        }
        if let Some(v) = var("VX_STATE_DIR") {
            self.state_dir = v.into();
        }
        if let Some(v) = var("VX_CACHE_DIR") {
            self.cache_dir = v.into();
        }
        if let Some(v) = var("VX_SOCKET") {
            self.socket = v.into();
        }
        if let Some(v) = var("VX_PLUGINS") {
            let v = v.to_string_lossy();
            self.plugins = v
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
        }
    }

    fn finish(mut self) -> Result<Self, ConfigError> {
        self.watch = self.watch.iter().map(|p| expand_home(p)).collect();
        if self.state_dir.as_os_str().is_empty() {
            self.state_dir = xdg_dir("XDG_STATE_HOME", ".local/state").join("vx");
        }
        if self.cache_dir.as_os_str().is_empty() {
            self.cache_dir = default_cache_dir();
        }
        if self.socket.as_os_str().is_empty() {
            self.socket = default_socket();
        }
        self.state_dir = expand_home(&self.state_dir);
        self.cache_dir = expand_home(&self.cache_dir);
        self.socket = expand_home(&self.socket);
        if self.plugins.is_empty() {
            self.plugins = DEFAULT_PLUGINS.iter().map(|s| s.to_string()).collect();
        }
        if let Some(p) = self
            .plugins
            .iter()
            .find(|p| !KNOWN_PLUGINS.contains(&p.as_str()))
        {
            return Err(ConfigError::UnknownPlugin(p.clone()));
        }
        for (name, v) in [
            ("frame_interval_s", self.frame_interval_s),
            ("host_start_timeout_s", self.host_start_timeout_s),
            ("deadline_base_s", self.deadline_base_s),
            ("rescan_interval_s", self.rescan_interval_s),
            ("decode_stall_s", self.decode_stall_s),
        ] {
            if v.is_nan() || v <= 0.0 {
                return Err(ConfigError::NotPositive(name));
            }
        }
        if self.deadline_per_media_s.is_nan() || self.deadline_per_media_s < 0.0 {
            return Err(ConfigError::NotPositive("deadline_per_media_s"));
        }
        if self.cpu_share.is_nan() || self.cpu_share <= 0.0 || self.cpu_share > 1.0 {
            return Err(ConfigError::NotPositive("cpu_share (over 0, at most 1)"));
        }
        if !self.index_hours.is_empty() && self.hours().is_none() {
            return Err(ConfigError::NotPositive(
                "index_hours (\"HH:MM-HH:MM\", e.g. \"01:00-07:00\")",
            ));
        }
        let cores = self.cores();
        if self.jobs == 0 {
            // Two files in flight even on one core: one decodes while the
            // hosts work on the other.
            self.jobs = (cores / 2).max(2);
        }
        if self.memory_mb == 0 {
            self.memory_mb = physical_memory_mb() / 2;
        }
        if self.host_threads == 0 {
            self.host_threads = (cores / 2).max(1);
        }
        if !(0..=19).contains(&self.host_nice) {
            return Err(ConfigError::NotPositive("host_nice (0 to 19)"));
        }
        if self.host_memory_mb < 64 {
            return Err(ConfigError::NotPositive("host_memory_mb (at least 64)"));
        }
        if self.max_frames == 0 {
            return Err(ConfigError::NotPositive("max_frames"));
        }
        if self.commit_batch == 0 {
            return Err(ConfigError::NotPositive("commit_batch"));
        }
        if let Some(c) = &mut self.cluster {
            if !c.nats.starts_with("nats://") {
                return Err(ConfigError::NotPositive(
                    "[cluster] nats (an address \"nats://host:4222\")",
                ));
            }
            if c.max_deliver == 0 || c.in_flight == 0 || c.ack_wait_s.is_nan() || c.ack_wait_s < 1.0
            {
                return Err(ConfigError::NotPositive(
                    "[cluster] max_deliver, in_flight and ack_wait_s (at least 1 s)",
                ));
            }
            if c.name.is_empty() {
                c.name = host_name();
            }
        }
        if self.frame_max_side < 16 {
            return Err(ConfigError::NotPositive("frame_max_side (at least 16)"));
        }
        if self.still_threshold.is_nan() || self.still_threshold < 0.0 {
            return Err(ConfigError::NotPositive("still_threshold (0 or more)"));
        }
        if self.max_image_pixels == 0 {
            return Err(ConfigError::NotPositive("max_image_pixels"));
        }
        if self.max_audio_s.is_nan() || self.max_audio_s <= 0.0 {
            return Err(ConfigError::NotPositive("max_audio_s"));
        }
        Ok(self)
    }
}

/// Logs to stderr through `tracing`, filtered by `VX_LOG` (an `EnvFilter`
/// directive such as `debug` or `info,vxd=trace`), else by `default`.
pub fn init_logging(default: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VX_LOG")
                .unwrap_or_else(|_| default.into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

fn expand_home(p: &Path) -> PathBuf {
    match p.strip_prefix("~") {
        Ok(rest) => home().join(rest),
        Err(_) => p.to_owned(),
    }
}

fn xdg_dir(var: &str, fallback: &str) -> PathBuf {
    match std::env::var_os(var).map(PathBuf::from) {
        Some(p) if p.is_absolute() => p,
        _ => home().join(fallback),
    }
}

/// `$XDG_CACHE_HOME/vx`: thumbnails, models and the ONNX Runtime library.
pub fn default_cache_dir() -> PathBuf {
    xdg_dir("XDG_CACHE_HOME", ".cache").join("vx")
}

/// Where `scripts/setup.sh` installs ONNX Runtime, the models and the test
/// photos: `VX_CACHE_DIR`, else [`default_cache_dir`]. Setup reads the same.
pub fn installed_cache_dir() -> PathBuf {
    std::env::var_os("VX_CACHE_DIR").map_or_else(default_cache_dir, PathBuf::from)
}

/// `$XDG_RUNTIME_DIR/vx/vxd.sock`, or `/tmp/vx-$UID/vxd.sock` without a runtime dir.
pub fn default_socket() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(p) if p.is_absolute() => p.join("vx/vxd.sock"),
        _ => {
            // SAFETY: getuid has no preconditions and cannot fail.
            let uid = unsafe { libc::getuid() };
            PathBuf::from(format!("/tmp/vx-{uid}/vxd.sock"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_example_parses_to_the_defaults() {
        assert_eq!(
            Settings::from_toml(EXAMPLE_TOML).unwrap(),
            Settings::default()
        );
    }

    #[test]
    fn unknown_keys_and_plugins_are_clear_errors() {
        let err = Settings::from_toml("wacth = []").unwrap_err();
        assert!(err.contains("wacth"), "{err}");
        let s = Settings {
            plugins: vec!["nope".into()],
            ..Default::default()
        };
        let err = s.finish().unwrap_err().to_string();
        assert!(err.contains("nope") && err.contains("keyframes"), "{err}");
    }

    #[test]
    fn the_cluster_section_is_read_and_checked() {
        let s = Settings::from_toml(
            "[cluster]\nnats = 'nats://127.0.0.1:4222'\nrole = 'worker'\n\
             path_map = [['/srv/media', '/mnt/media']]",
        )
        .unwrap()
        .finish()
        .unwrap();
        let c = s.cluster.unwrap();
        assert_eq!(c.role, Role::Worker);
        assert!(c.works() && !c.coordinates());
        assert_eq!(c.max_deliver, 3);
        assert!(!c.name.is_empty(), "the host name by default");
        assert_eq!(c.path_map, [("/srv/media".into(), "/mnt/media".into())]);
        let err = Settings::from_toml("[cluster]\nnats = 'nats://x:1'\nrole = 'boss'").unwrap_err();
        assert!(err.contains("coordinator"), "{err}");
        let bad = Settings::from_toml("[cluster]\nnats = 'http://x'\nrole = 'both'").unwrap();
        assert!(bad.finish().unwrap_err().to_string().contains("nats://"));
    }

    #[test]
    fn env_overrides_file_and_defaults_fill_the_rest() {
        let mut s = Settings::from_toml("watch = ['/a']\nsocket = '/s/x.sock'").unwrap();
        s.apply_env(|k| match k {
            "VX_WATCH" => Some("/b:/c".into()),
            "VX_PLUGINS" => Some(" keyframes, ".into()),
            _ => None,
        });
        let s = s.finish().unwrap();
        assert_eq!(s.watch, [PathBuf::from("/b"), PathBuf::from("/c")]);
        assert_eq!(s.socket, PathBuf::from("/s/x.sock"));
        assert_eq!(s.plugins, ["keyframes"]);
        assert!(s.state_dir.ends_with("vx"));
    }

    #[test]
    fn defaults_follow_the_cores_and_the_share() {
        let cores = std::thread::available_parallelism().unwrap().get();
        let s = Settings::default().finish().unwrap();
        assert_eq!(s.jobs, (cores / 2).max(2));
        assert_eq!(s.host_pool_size, 0, "chosen per plugin by vxd");
        assert_eq!(s.host_threads, (cores / 2).max(1));
        let half = Settings {
            cpu_share: 0.01,
            ..Default::default()
        };
        assert_eq!(half.cores(), 1, "at least one core");
        let s = Settings {
            jobs: 3,
            ..Default::default()
        }
        .finish()
        .unwrap();
        assert_eq!(s.jobs, 3);
    }

    #[test]
    fn index_hours_are_parsed_or_refused() {
        let hours = |h: &str| Settings {
            index_hours: h.into(),
            ..Default::default()
        };
        assert_eq!(hours("01:00-07:30").hours(), Some((60, 450)));
        assert_eq!(hours("22:00-06:00").hours(), Some((1320, 360)));
        for bad in ["1-7", "25:00-07:00", "01:00", "01:60-02:00"] {
            assert!(hours(bad).finish().is_err(), "{bad}");
        }
        assert!(hours("").finish().is_ok());
    }

    #[test]
    fn nonsense_numbers_are_refused() {
        let s = Settings {
            frame_interval_s: 0.0,
            ..Default::default()
        };
        assert!(matches!(s.finish(), Err(ConfigError::NotPositive(_))));
    }
}

/// The machine's host name ("vx" if it has none).
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "vx".into())
}
