//! The worker: takes files off the queue, decodes each once into shared
//! memory, runs every plugin host on it, and commits the results.
//!
//! A failure is recorded for that file and that plugin only. The file document
//! and the other plugins' results are still indexed, and the daemon moves on.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use vx_config::Settings;
use vx_ctl_protocol::PluginState;
use vx_index::{FileRecord, MediaIndex};
use vx_media::DecodeOptions;
use vx_plugin_protocol::{Job, SegmentResult, ShmRef};

use crate::host::{Host, HostFailure, host_exe};
use crate::state::State;

/// A host that fails this many times in a row is disabled.
const MAX_CONSECUTIVE_FAILURES: u32 = 5;

struct Slot {
    plugin: String,
    host: Option<Host>,
    version: String,
    consecutive_failures: u32,
    started: u64,
}

pub struct Pipeline {
    settings: Arc<Settings>,
    state: Arc<State>,
    index: Arc<MediaIndex>,
    slots: Vec<Slot>,
    host_exe: PathBuf,
    socket_dir: PathBuf,
    next_job_id: u64,
}

impl Pipeline {
    pub fn new(settings: Arc<Settings>, state: Arc<State>, index: Arc<MediaIndex>, socket_dir: PathBuf) -> Self {
        let slots = settings
            .plugins
            .iter()
            .map(|p| Slot { plugin: p.clone(), host: None, version: "?".into(), consecutive_failures: 0, started: 0 })
            .collect();
        Self { settings, state, index, slots, host_exe: host_exe(), socket_dir, next_job_id: 1 }
    }

    /// Runs on its own thread until shutdown. Hosts are spawned from this
    /// thread only: PR_SET_PDEATHSIG fires when the spawning *thread* exits.
    pub fn run(mut self) {
        for i in 0..self.slots.len() {
            self.ensure_host(i);
        }
        while let Some(path) = self.state.next_job() {
            let span = tracing::info_span!("file", path = %path.display());
            let _enter = span.enter();
            self.process(&path);
            self.state.lock().in_progress = None;
        }
        for slot in &mut self.slots {
            if let Some(h) = slot.host.take() {
                h.stop();
            }
        }
    }

    fn ensure_host(&mut self, i: usize) -> bool {
        let slot = &mut self.slots[i];
        if slot.host.is_some() {
            return true;
        }
        if slot.consecutive_failures >= MAX_CONSECUTIVE_FAILURES {
            return false;
        }
        let restart = slot.started > 0;
        slot.started += 1;
        self.state.set_plugin(&slot.plugin, |p| {
            p.state = PluginState::Starting;
            p.restarts += restart as u32;
        });
        match Host::start(&self.host_exe, &slot.plugin, &self.socket_dir, slot.started) {
            Ok(h) => {
                tracing::info!(plugin = %slot.plugin, pid = h.pid(), "host ready");
                slot.version = h.version.clone();
                let pid = h.pid();
                self.state.set_plugin(&slot.plugin, |p| {
                    p.pid = Some(pid);
                    p.state = PluginState::Ready;
                });
                slot.host = Some(h);
                true
            }
            Err(e) => {
                self.host_failed(i, &e);
                false
            }
        }
    }

    fn host_failed(&mut self, i: usize, e: &HostFailure) {
        let slot = &mut self.slots[i];
        slot.host = None;
        slot.consecutive_failures += 1;
        let disabled = slot.consecutive_failures >= MAX_CONSECUTIVE_FAILURES;
        tracing::warn!(plugin = %slot.plugin, disabled, "host failed: {e}");
        self.state.set_plugin(&slot.plugin, |p| {
            p.pid = None;
            p.crashes += 1;
            p.state = if disabled { PluginState::Disabled } else { PluginState::Exited };
            p.last_error = Some(e.to_string());
        });
    }

    /// Names the plugin set, so a plugin upgrade changes every fingerprint.
    fn fingerprint(&self, meta: &std::fs::Metadata) -> String {
        let plugins: Vec<String> = self.slots.iter().map(|s| format!("{}@{}", s.plugin, s.version)).collect();
        format!("{}:{}.{:09}:{}", meta.len(), meta.mtime(), meta.mtime_nsec(), plugins.join(","))
    }

    fn process(&mut self, path: &Path) {
        let meta = match std::fs::metadata(path) {
            Ok(m) if m.is_file() => m,
            _ => {
                // Gone before its turn came.
                self.state.forget(path);
                self.index.remove_file(path);
                self.commit();
                return;
            }
        };
        let fingerprint = self.fingerprint(&meta);
        if self.index.fingerprint(path).ok().flatten().as_deref() == Some(fingerprint.as_str()) {
            tracing::debug!("up to date");
            self.state.lock().indexed.insert(path.to_owned());
            return;
        }
        self.state.lock().failed.retain(|(p, _), _| p != path);

        let started = Instant::now();
        let opts = DecodeOptions {
            max_width: self.settings.frame_max_side,
            max_height: self.settings.frame_max_side,
            frame_interval_s: self.settings.frame_interval_s,
            max_frames: self.settings.max_frames,
            ..DecodeOptions::default()
        };
        let decoded = match vx_media::decode(path, &opts).and_then(|d| vx_media::pack(&d).map(|p| (d, p))) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("cannot decode: {e}");
                self.record_failure(path, "decode", e.to_string());
                return;
            }
        };
        let (decoded, packed) = decoded;
        let decode_s = started.elapsed().as_secs_f64();
        let kind = decoded.kind();
        let duration = decoded.duration_s;
        let job = Job {
            id: 0,
            path: path.to_owned(),
            kind,
            duration_s: duration,
            shm: ShmRef { pid: std::process::id(), fd: packed.segment.fd(), len: packed.segment.len() },
            frames: packed.frames.clone(),
            audio: packed.audio,
            artefact_dir: self.settings.cache_dir.join("thumbnails"),
        };
        // Generous until per-plugin deadlines are configurable.
        let deadline = Duration::from_secs_f64(60.0 + 5.0 * duration.unwrap_or(0.0));

        let mut results: Vec<(String, Vec<SegmentResult>)> = vec![];
        for i in 0..self.slots.len() {
            let plugin = self.slots[i].plugin.clone();
            if !self.ensure_host(i) {
                self.record_failure(path, &plugin, "plugin is not running".into());
                continue;
            }
            let job = Job { id: self.next_job_id, ..job.clone() };
            self.next_job_id += 1;
            self.state.set_plugin(&plugin, |p| p.state = PluginState::Busy);
            let host = self.slots[i].host.as_mut().expect("ensured above");
            match host.run(&job, deadline) {
                Ok(Ok(out)) => {
                    self.slots[i].consecutive_failures = 0;
                    self.state.set_plugin(&plugin, |p| p.state = PluginState::Ready);
                    results.push((plugin, out.segments));
                }
                Ok(Err(msg)) => {
                    self.state.set_plugin(&plugin, |p| p.state = PluginState::Ready);
                    self.record_failure(path, &plugin, msg);
                }
                Err(e) => {
                    self.host_failed(i, &e);
                    self.record_failure(path, &plugin, e.to_string());
                }
            }
        }
        drop(packed); // every host has answered or died: release the segment

        let record = FileRecord {
            path: path.to_owned(),
            kind,
            container: decoded.container.clone(),
            duration_s: duration,
            video_codec: decoded.video_codec.clone(),
            audio_codec: decoded.audio_codec.clone(),
            width: decoded.width,
            height: decoded.height,
            size: meta.len(),
            mtime: meta.mtime(),
            fingerprint,
        };
        let segments: Vec<(&str, &SegmentResult)> =
            results.iter().flat_map(|(p, segs)| segs.iter().map(move |s| (p.as_str(), s))).collect();
        if let Err(e) = self.index.put_file(&record, &segments) {
            self.record_failure(path, "index", e.to_string());
            return;
        }
        if self.commit() {
            self.state.lock().indexed.insert(path.to_owned());
        }
        tracing::info!(
            kind = kind.as_str(),
            segments = segments.len(),
            decode_s = format!("{decode_s:.2}"),
            total_s = format!("{:.2}", started.elapsed().as_secs_f64()),
            "indexed"
        );
    }

    fn record_failure(&self, path: &Path, plugin: &str, reason: String) {
        self.state.lock().failed.insert((path.to_owned(), plugin.to_owned()), reason);
    }

    fn commit(&self) -> bool {
        match self.index.commit() {
            Ok(()) => true,
            Err(e) => {
                tracing::error!("index commit failed: {e}");
                false
            }
        }
    }
}
