//! The worker: takes files off the queue, has each decoded once into shared
//! memory (by its decoder subprocess), runs every plugin host on it, and
//! commits the results.
//!
//! A failure is recorded for that file and that plugin only. The file document
//! and the other plugins' results are still indexed, and the daemon moves on.
//! A failure that says the machine is short of something (memory, file
//! descriptors, disk) is not recorded: the file is tried again later.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use vx_config::Settings;
use vx_decoder::Summary;
use vx_index::{FileRecord, MediaIndex};
use vx_media::{DecodeOptions, Packed};
use vx_plugin_protocol::{FrameRef, Job, MediaKind, Needs, SegmentResult, ShmRef};

use crate::batch::Batch;
use crate::decode::{Decoder, Failure};
use crate::host::{HostLimits, decoder_exe};
use crate::pool::{Outcome, Pool};
use crate::state::{InProgress, State};

/// The "plugin" name failures of decoding itself are recorded under.
pub const DECODE: &str = "decode";
/// A commit that failed is tried again after this, and so is a file whose
/// work failed for want of memory, file descriptors or disk.
pub const RETRY_PAUSE: Duration = Duration::from_secs(5);
/// A file that fails for want of resources this many times fails for good
/// (until it changes).
const MAX_TEMPORARY_FAILURES: u32 = 5;
/// A file on which vxd itself died this many times fails for good.
const MAX_DEATHS_ON_A_FILE: u32 = 3;
/// The "plugin" name vxd's own failures (a panic, a death, a name it cannot
/// index) are recorded under.
pub const VXD: &str = "vxd";

/// A failure of the whole file (not of one plugin): it is not indexed.
pub fn fails_whole_file(plugin: &str) -> bool {
    plugin == DECODE || plugin == VXD
}

pub struct Pipeline {
    settings: Arc<Settings>,
    state: Arc<State>,
    index: Arc<MediaIndex>,
    /// One pool of hosts per plugin that reads files, shared by all workers.
    pools: Arc<Vec<Pool>>,
    /// Which of the `jobs` workers this is.
    worker: usize,
    decoder: Decoder,
    in_progress: Arc<InProgress>,
    batch: Arc<Batch>,
}

/// What is to be done for one file.
struct Plan {
    record: FileRecord,
    /// Plugins whose stored results stay: same version on an unchanged
    /// file, or down.
    keep: Vec<String>,
    /// The pools that run on it, with what each needs.
    run: Vec<(usize, Needs)>,
}

impl Pipeline {
    pub fn new(
        settings: Arc<Settings>,
        state: Arc<State>,
        index: Arc<MediaIndex>,
        pools: Arc<Vec<Pool>>,
        worker: usize,
        in_progress: Arc<InProgress>,
        batch: Arc<Batch>,
    ) -> Self {
        let decoder = Decoder::new(
            decoder_exe(),
            HostLimits::from_settings(&settings),
            Duration::from_secs_f64(settings.decode_stall_s),
        );
        Self {
            settings,
            state,
            index,
            pools,
            worker,
            decoder,
            in_progress,
            batch,
        }
    }

    /// Runs on its own thread until shutdown.
    pub fn run(mut self) {
        self.decoder.start();
        for pool in self.pools.iter() {
            pool.wait_first_start();
        }
        while let Some(path) = self.state.next_job(self.worker) {
            let span = tracing::info_span!("file", worker = self.worker, path = %path.display());
            let _enter = span.enter();
            let deaths = self.state.lock().suspects.get(&path).copied();
            self.in_progress
                .begin(self.worker, &path, deaths.unwrap_or(0));
            let run =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.process(&path)));
            if let Err(payload) = run {
                self.panicked(&path, payload.as_ref());
            }
            self.in_progress.end(self.worker);
            self.state.lock().suspects.remove(&path);
            self.state.finish(self.worker);
            self.purge_stale_once();
        }
    }

    /// A bug in vxd itself, met on `path`: that file fails with the panic's
    /// message, and the worker goes on.
    fn panicked(&mut self, path: &Path, payload: &(dyn std::any::Any + Send)) {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        tracing::error!("vxd panicked on this file: {message}");
        self.record_failure(
            path,
            VXD,
            format!("vxd panicked: {message} (please report this)"),
        );
    }

    /// The running plugins and their versions, e.g. `keyframes@1,ocr@2`.
    fn plugin_set(&self) -> String {
        let plugins: Vec<String> = self
            .pools
            .iter()
            .filter(|p| p.is_running())
            .filter_map(|p| p.hello().map(|(v, _)| format!("{}@{v}", p.plugin())))
            .collect();
        plugins.join(",")
    }

    /// Configured plugins that cannot run now: their hosts never started, or
    /// they were disabled after failing again and again.
    fn down_plugins(&self) -> Vec<String> {
        self.pools
            .iter()
            .filter(|p| !p.is_running())
            .map(|p| p.plugin().to_owned())
            .collect()
    }

    /// Size and mtime: what changes when the file does.
    fn fingerprint(meta: &std::fs::Metadata) -> String {
        format!("{}:{}.{:09}", meta.len(), meta.mtime(), meta.mtime_nsec())
    }

    /// Indexes `record.path` with the results already held for identical
    /// content at another path, if any; true when it did. A source path that
    /// no longer exists was a rename, and leaves the index.
    fn reuse_by_content(&self, record: &FileRecord) -> bool {
        let path = &record.path;
        let Ok(Some(src)) = self
            .index
            .find_content(&record.content, &record.plugin_set, path)
        else {
            return false;
        };
        let moved = crate::watch::gone(&src, &self.settings.watch);
        match self.index.copy_and_commit(&src, record, moved) {
            Ok(0) => return false, // gone in the meantime: extract it afresh
            Ok(_) => self.state.lock().index_generation += 1,
            Err(e) => {
                tracing::warn!(from = %src.display(), "cannot reuse results: {e}");
                return false;
            }
        }
        if moved {
            self.state.forget(&src);
        }
        let failures = self.index.failures_of(path).unwrap_or_default();
        let mut state = self.state.lock();
        state.indexed.insert(path.clone());
        state.reused += 1;
        for (plugin, reason) in failures {
            state.failed.insert((path.clone(), plugin), reason);
        }
        drop(state);
        tracing::info!(from = %src.display(), "{} identical content: results reused", if moved { "moved from" } else { "copy of" });
        true
    }

    /// After the first crawl's queue drains, drops index entries of files
    /// that no longer exist (deleted while vxd was not running).
    fn purge_stale_once(&self) {
        {
            let mut s = self.state.lock();
            if s.stale_purged
                || s.crawling
                || !s.queue.is_empty()
                || s.settling > 0
                || !s.working.is_empty()
            {
                return;
            }
            s.stale_purged = true;
        }
        let stale: Vec<PathBuf> = self
            .index
            .paths()
            .unwrap_or_default()
            .into_iter()
            .filter(|p| crate::watch::gone(p, &self.settings.watch))
            .collect();
        if stale.is_empty() {
            return;
        }
        for p in &stale {
            self.state.forget(p);
        }
        self.remove_and_commit(&stale);
        tracing::info!(
            files = stale.len(),
            "removed files that disappeared while vxd was down"
        );
    }

    /// One file: plan, decode, run the plugins, index. Each step records
    /// what stops the file, so this only reads as the sequence.
    fn process(&mut self, path: &Path) {
        #[cfg(feature = "fault-injection")]
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("vxd-panic"))
        {
            panic!("fault injection: {}", path.display());
        }
        let Some(mut plan) = self.plan(path) else {
            return;
        };
        let started = Instant::now();
        let Some((summary, packed)) = self.decode_for(&mut plan) else {
            return;
        };
        let decode_s = started.elapsed().as_secs_f64();
        let Some(results) = self.run_plugins(&mut plan, &summary, packed) else {
            return;
        };
        let segments: Vec<(&str, &SegmentResult)> = results
            .iter()
            .flat_map(|(p, segs)| segs.iter().map(move |s| (p.as_str(), s)))
            .collect();
        let keep: Vec<&str> = plan.keep.iter().map(String::as_str).collect();
        self.batch.add(&plan.record, &segments, &keep);
        tracing::info!(
            kind = plan.record.kind.as_str(),
            segments = segments.len(),
            failures = plan.record.failures.len(),
            decode_s = format!("{decode_s:.2}"),
            total_s = format!("{:.2}", started.elapsed().as_secs_f64()),
            "indexed"
        );
    }

    /// Decides what the file needs: nothing (gone, unreadable, up to date,
    /// or a copy of content already indexed, which is reused here), or the
    /// plugins to run and the results to keep.
    fn plan(&mut self, path: &Path) -> Option<Plan> {
        let meta = match std::fs::metadata(path) {
            Ok(m) if m.is_file() => m,
            _ if crate::watch::gone(path, &self.settings.watch) => {
                // Gone before its turn came.
                self.state.forget(path);
                self.remove_and_commit(&[path.to_owned()]);
                return None;
            }
            Ok(_) => return None, // not a file (any more): nothing to index
            Err(e) => {
                // Unreadable for now (a permission, a disk away): its entries stay.
                self.record_failure(path, "read", e.to_string());
                return None;
            }
        };
        let fingerprint = Self::fingerprint(&meta);
        let plugin_set = self.plugin_set();
        let down = self.down_plugins();
        let forced = self.state.lock().force.remove(path);
        let stored = if forced {
            None
        } else {
            self.index.stored(path).ok().flatten()
        };
        let name_of = |entry: &str| entry.split('@').next().unwrap_or(entry).to_owned();
        let current: Vec<&str> = plugin_set.split(',').filter(|e| !e.is_empty()).collect();
        // For an unchanged file: the stored entries that stay, those of
        // plugins at the same version and those of plugins that are down
        // (their results wait for them, rather than being wiped).
        let kept_entries: Vec<&str> = match &stored {
            Some((fp, set)) if *fp == fingerprint => set
                .split(',')
                .filter(|e| current.contains(e) || down.contains(&name_of(e)))
                .collect(),
            _ => vec![],
        };
        let keep: Vec<String> = kept_entries.iter().map(|e| name_of(e)).collect();
        let up_to_date = matches!(&stored, Some((fp, _)) if *fp == fingerprint)
            && current.iter().all(|e| kept_entries.contains(e));
        if up_to_date {
            tracing::debug!("up to date");
            let mut state = self.state.lock();
            let failed = state
                .failed
                .range((path.to_owned(), String::new())..)
                .take_while(|((p, _), _)| p == path)
                .any(|((_, plugin), _)| fails_whole_file(plugin));
            if !failed {
                state.indexed.insert(path.to_owned());
            }
            return None;
        }
        // A plugin that is down stays recorded at the version of the results
        // kept for it; one with none is missing, so it runs when it is back.
        let plugin_set = current
            .iter()
            .copied()
            .chain(
                kept_entries
                    .iter()
                    .copied()
                    .filter(|e| !current.contains(e)),
            )
            .collect::<Vec<_>>()
            .join(",");
        let content = match content_hash(path) {
            Ok(h) => h,
            Err(e) => {
                self.record_failure(path, "read", e.to_string());
                return None;
            }
        };
        self.state
            .lock()
            .failed
            .retain(|(p, plugin), _| p != path || keep.contains(plugin));
        let mut record = FileRecord {
            path: path.to_owned(),
            kind: vx_media::kind_from_extension(path).unwrap_or(MediaKind::Video),
            info: Default::default(),
            size: meta.len(),
            mtime: meta.mtime(),
            fingerprint,
            failures: vec![],
            content,
            plugin_set,
        };
        if keep.is_empty() {
            if !forced && self.reuse_by_content(&record) {
                return None;
            }
        } else {
            tracing::info!(
                kept = keep.join(","),
                "only plugins whose version changed run"
            );
            let failures = self.index.failures_of(path).unwrap_or_default();
            record.failures.extend(
                failures
                    .into_iter()
                    .filter(|(plugin, _)| keep.contains(plugin)),
            );
        }
        let run = self
            .pools
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_running() && !keep.contains(&p.plugin().to_owned()))
            .filter_map(|(i, p)| Some((i, p.hello()?.1)))
            .collect();
        Some(Plan { record, keep, run })
    }

    /// Decodes once for every plugin that runs: each size any of them asked
    /// for, and the audio if one wants it. A file that cannot be decoded is
    /// indexed by name with the failure (or tried again later, when the
    /// machine was short of something).
    fn decode_for(&mut self, plan: &mut Plan) -> Option<(Summary, Packed)> {
        let path = plan.record.path.clone();
        let opts = vx_decoder::options_for(&self.settings, plan.run.iter().map(|(_, n)| n));
        let (summary, packed) = match self.decode(&path, &opts) {
            Ok(d) => d,
            Err((_, Failure::Temporary(why))) if self.may_retry(&path) => {
                self.retry_later(&plan.record, why);
                return None;
            }
            Err((plugin, Failure::File(reason) | Failure::Temporary(reason))) => {
                tracing::warn!("cannot decode: {reason}");
                // Indexed by name with the failure, so it is not retried until it changes.
                plan.record.failures.push((plugin.into(), reason));
                // The results of the plugins that did not need to run stay.
                let keep: Vec<&str> = plan.keep.iter().map(String::as_str).collect();
                self.batch.add(&plan.record, &[], &keep);
                return None;
            }
        };
        if summary.audio_cut {
            self.state.lock().warn(format!(
                "{}: only the first {:.0} s of audio were decoded (max_audio_s)",
                path.display(),
                self.settings.max_audio_s
            ));
        }
        plan.record.kind = summary.kind;
        plan.record.info = summary.info.clone();
        Some((summary, packed))
    }

    /// Sends the file to every plugin that runs at once (their hosts share
    /// the segment) and gathers the results as they come. A plugin's failure
    /// is recorded with the file; a host short of resources sends the whole
    /// file back to the queue.
    fn run_plugins(
        &mut self,
        plan: &mut Plan,
        summary: &Summary,
        packed: Packed,
    ) -> Option<Vec<(String, Vec<SegmentResult>)>> {
        let path = plan.record.path.clone();
        // Per second of media that was actually decoded: a container that
        // claims to last a year does not buy its plugins a year.
        let media_s = summary
            .info
            .duration_s
            .map_or(summary.decoded_s, |d| d.min(summary.decoded_s + 1.0));
        let deadline = Duration::from_secs_f64(
            self.settings.deadline_base_s + self.settings.deadline_per_media_s * media_s,
        );
        let job = Job {
            id: 0,
            path: path.clone(),
            kind: plan.record.kind,
            duration_s: plan.record.info.duration_s,
            shm: ShmRef {
                pid: std::process::id(),
                fd: packed.segment.fd(),
                len: packed.segment.len(),
            },
            frames: vec![],
            audio: None,
            artefact_dir: self.settings.artefact_dir(),
        };
        let mut pending: Vec<(String, Receiver<Outcome>)> = plan
            .run
            .iter()
            .map(|&(i, needs)| {
                let pool = &self.pools[i];
                let job = Job {
                    frames: needs
                        .frame_max_side
                        .map(|side| frames_nearest(&packed, side.min(self.settings.frame_max_side)))
                        .unwrap_or_default(),
                    audio: packed.audio.filter(|_| needs.audio),
                    ..job.clone()
                };
                (pool.plugin().to_owned(), pool.submit(job, deadline))
            })
            .collect();
        let mut results = vec![];
        let mut short_of = None;
        while !pending.is_empty() {
            self.show_running(&pending);
            let mut select = crossbeam_channel::Select::new();
            for (_, rx) in &pending {
                select.recv(rx);
            }
            let ready = select.select();
            let i = ready.index();
            let outcome = ready
                .recv(&pending[i].1)
                .unwrap_or_else(|_| Err(Failure::File("vxd is shutting down".into())));
            let (plugin, _) = pending.swap_remove(i);
            match outcome {
                Ok(segments) => {
                    results.push((plugin, segments));
                    if results.len() == 1 && !pending.is_empty() {
                        self.commit_early(plan, &results);
                    }
                }
                Err(Failure::Temporary(why)) if self.may_retry(&path) => {
                    short_of = Some(format!("plugin {plugin}: {why}"));
                }
                Err(Failure::File(reason) | Failure::Temporary(reason)) => {
                    plan.record.failures.push((plugin, reason));
                }
            }
        }
        drop(packed); // every host has answered or died: release the segment
        if let Some(why) = short_of {
            self.retry_later(&plan.record, why);
            return None;
        }
        Some(results)
    }

    /// Makes the file findable by its name, metadata and the first plugin's
    /// results while slower plugins still work, when nothing else waits (in
    /// bulk, one commit per file is cheaper). The plugin set records only the
    /// plugins whose results are in, so a vxd killed before the final commit
    /// runs just the others again.
    fn commit_early(&self, plan: &Plan, results: &[(String, Vec<SegmentResult>)]) {
        {
            let s = self.state.lock();
            if !s.queue.is_empty() || s.settling > 0 {
                return;
            }
        }
        let done = |entry: &&str| {
            let name = entry.split('@').next().unwrap_or(entry);
            plan.keep.iter().any(|k| k == name) || results.iter().any(|(p, _)| p == name)
        };
        let record = FileRecord {
            plugin_set: plan
                .record
                .plugin_set
                .split(',')
                .filter(done)
                .collect::<Vec<_>>()
                .join(","),
            ..plan.record.clone()
        };
        let segments: Vec<(&str, &SegmentResult)> = results
            .iter()
            .flat_map(|(p, segs)| segs.iter().map(move |s| (p.as_str(), s)))
            .collect();
        let keep: Vec<&str> = plan.keep.iter().map(String::as_str).collect();
        match self.index.put_and_commit(&record, &segments, &keep) {
            Ok(()) => self.state.lock().index_generation += 1,
            // The final commit tries again, and reports.
            Err(e) => tracing::debug!("early commit failed: {e}"),
        }
    }

    /// Status shows the plugins still working on this worker's file.
    fn show_running(&self, pending: &[(String, Receiver<Outcome>)]) {
        let names: Vec<&str> = pending.iter().map(|(p, _)| p.as_str()).collect();
        if let Some(c) = self.state.lock().working.get_mut(&self.worker) {
            c.plugin = Some(names.join(", "));
        }
    }

    /// Decodes `path` in the subprocess, unless vxd itself died on it too
    /// often. A failure comes with the name it is recorded under.
    fn decode(
        &mut self,
        path: &Path,
        opts: &DecodeOptions,
    ) -> Result<(Summary, Packed), (&'static str, Failure)> {
        let deaths = self.state.lock().suspects.get(path).copied().unwrap_or(0);
        if deaths >= MAX_DEATHS_ON_A_FILE {
            return Err((
                VXD,
                Failure::File(format!(
                    "vxd stopped {deaths} times while working on this file (a crash, or \
                     killed for memory); it is not tried again until it changes"
                )),
            ));
        }
        #[cfg(feature = "fault-injection")]
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("vxd-abort"))
        {
            std::process::abort(); // as a crash inside vxd would
        }
        self.decoder.decode(path, opts).map_err(|f| (DECODE, f))
    }

    /// Whether a file that failed for want of resources gets another try.
    fn may_retry(&self, path: &Path) -> bool {
        let tries = self.state.lock().temporary_failures.get(path).copied();
        tries.unwrap_or(0) + 1 < MAX_TEMPORARY_FAILURES
    }

    /// The machine was short of something while this file was worked on:
    /// nothing is recorded, and the file is queued again after a pause that
    /// also gives the machine room.
    fn retry_later(&self, record: &FileRecord, why: String) {
        let path = &record.path;
        {
            let mut s = self.state.lock();
            *s.temporary_failures.entry(path.clone()).or_default() += 1;
            s.warn(format!("{}: {why}; it will be tried again", path.display()));
        }
        std::thread::sleep(RETRY_PAUSE);
        self.state.enqueue(path.clone(), record.size);
    }

    fn record_failure(&self, path: &Path, plugin: &str, reason: String) {
        self.state
            .lock()
            .failed
            .insert((path.to_owned(), plugin.to_owned()), reason);
    }

    fn remove_and_commit(&self, paths: &[PathBuf]) {
        if let Err(e) = self.index.remove_and_commit(paths) {
            tracing::error!("index commit failed: {e}");
        }
    }
}

/// The frames fitted to `side`, or, for a host that started after the file
/// was decoded and asked for a size nobody else did, the closest size there is.
fn frames_nearest(packed: &Packed, side: u32) -> Vec<FrameRef> {
    let exact = packed.frames_for(side);
    if !exact.is_empty() || packed.renditions.is_empty() {
        return exact.to_vec();
    }
    packed
        .renditions
        .iter()
        .min_by_key(|(sides, _)| sides[0].abs_diff(side))
        .map(|(_, frames)| frames.clone())
        .unwrap_or_default()
}

/// BLAKE3 of the whole file. Exact, so a copy is never confused with an edit
/// of the same length; and cheap next to decoding, which reads it all anyway.
fn content_hash(path: &Path) -> std::io::Result<String> {
    let mut hasher = blake3::Hasher::new();
    hasher.update_reader(std::fs::File::open(path)?)?;
    Ok(hasher.finalize().to_hex().to_string())
}
