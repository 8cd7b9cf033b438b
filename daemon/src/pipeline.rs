//! The worker: takes files off the queue, has each decoded once into shared
//! memory (by its decoder subprocess), runs every plugin host on it, and
//! commits the results.
//!
//! In a cluster the middle step moves: a coordinator's pipeline publishes
//! the file as a job and waits for its outcome instead of decoding, and a
//! worker's pipeline takes jobs from the bus instead of the queue, decodes
//! and runs its hosts, and sends the outcome back instead of indexing.
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
use vx_cluster::{Coordinator, Delivery, Outcome, Reply, Worker};
use vx_config::Settings;
use vx_decoder::Summary;
use vx_index::{FileRecord, MediaIndex};
use vx_media::{DecodeOptions, Packed};
use vx_plugin_protocol::{FrameRef, Job, MediaKind, SegmentResult, ShmRef};

use crate::batch::Batch;
use crate::decode::{Decoder, Failure};
use crate::host::{HostLimits, decoder_exe};
use crate::pool::{self, Pool};
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

/// Where a pipeline's files come from and where its work happens.
#[derive(Clone)]
pub enum Mode {
    /// Files from the queue, decoded and run here.
    Local,
    /// Files from the queue, sent to the cluster's workers.
    Coordinator(Arc<Coordinator>),
    /// Jobs from the cluster, decoded and run here, outcomes sent back.
    Worker(Arc<Worker>),
}

/// The plugins' results for one file, or why there are none.
enum Extracted {
    Results(Vec<(String, Vec<SegmentResult>)>),
    /// Not decodable: the record holds the failure; indexed by name.
    Undecodable,
    /// The machine was short of something: try the file again later.
    ShortOf(String),
    /// vxd stops: the file is planned again at the next start.
    Abandoned,
}

pub struct Pipeline {
    mode: Mode,
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
    /// Why the last decode failed for want of resources.
    short_of: Option<String>,
}

/// What is to be done for one file.
struct Plan {
    record: FileRecord,
    /// Plugins whose stored results stay: same version on an unchanged
    /// file, or down.
    keep: Vec<String>,
    /// The plugins that run on it.
    run: Vec<String>,
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
            mode: Mode::Local,
            settings,
            state,
            index,
            pools,
            worker,
            decoder,
            in_progress,
            batch,
            short_of: None,
        }
    }

    /// This pipeline, in a cluster's `mode` (it starts [`Mode::Local`]).
    pub fn in_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Runs on its own thread until shutdown.
    pub fn run(mut self) {
        if !matches!(self.mode, Mode::Coordinator(_)) {
            self.decoder.start();
            for pool in self.pools.iter() {
                pool.wait_first_start();
            }
        }
        if let Mode::Worker(worker) = self.mode.clone() {
            self.take_jobs(&worker);
            return;
        }
        if let Mode::Coordinator(c) = &self.mode
            && !c.wait_for_workers(|| self.state.lock().shutting_down)
        {
            return;
        }
        // A coordinator decodes nothing: no file can kill it.
        let notes = !matches!(self.mode, Mode::Coordinator(_));
        while let Some(path) = self.state.next_job(self.worker) {
            let span = tracing::info_span!("file", worker = self.worker, path = %path.display());
            let _enter = span.enter();
            let deaths = self.state.lock().suspects.get(&path).copied();
            if notes {
                self.in_progress
                    .begin(self.worker, &path, deaths.unwrap_or(0));
            }
            let run =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.process(&path)));
            if let Err(payload) = run {
                self.panicked(&path, payload.as_ref());
            }
            if notes {
                self.in_progress.end(self.worker);
            }
            self.state.lock().suspects.remove(&path);
            self.state.finish(self.worker);
            self.purge_stale_once();
        }
    }

    /// A bug in vxd itself, met on `path`: that file fails with the panic's
    /// message, and the worker goes on.
    fn panicked(&mut self, path: &Path, payload: &(dyn std::any::Any + Send)) {
        let message = panic_message(payload);
        tracing::error!("vxd panicked on this file: {message}");
        self.record_failure(
            path,
            VXD,
            format!("vxd panicked: {message} (please report this)"),
        );
    }

    /// The running plugins and their versions, e.g. `keyframes@1,ocr@2`:
    /// this machine's, or for a coordinator, what its workers run.
    fn plugin_set(&self) -> String {
        match &self.mode {
            Mode::Coordinator(c) => c.plugins().unwrap_or_default().join(","),
            _ => running_plugins(&self.pools).join(","),
        }
    }

    /// Configured plugins not in `plugin_set` (see [`plugin_set`](Self::plugin_set)):
    /// their hosts never started, or were disabled after failing again and
    /// again (for a coordinator: no worker runs them).
    fn down_plugins(&self, plugin_set: &str) -> Vec<String> {
        let running: Vec<&str> = plugin_set
            .split(',')
            .filter_map(|e| e.split('@').next())
            .collect();
        self.settings
            .plugins
            .iter()
            .filter(|p| *p != vx_config::TEXT_EMBED && !running.contains(&p.as_str()))
            .cloned()
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
        let extracted = match self.mode.clone() {
            Mode::Coordinator(c) => self.send_out(&c, &mut plan),
            _ => self.extract(&mut plan, None),
        };
        let results = match extracted {
            Extracted::Results(r) => r,
            Extracted::Undecodable => vec![],
            Extracted::ShortOf(why) => return self.retry_later(&plan.record, why),
            Extracted::Abandoned => return,
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
            total_s = format!("{:.2}", started.elapsed().as_secs_f64()),
            "indexed"
        );
    }

    /// Decodes the file once and runs the plugins of the plan on it. A
    /// worker's `delivery` is kept alive for as long as the plugins may take.
    fn extract(&mut self, plan: &mut Plan, delivery: Option<&Delivery>) -> Extracted {
        let Some((summary, packed)) = self.decode_for(plan) else {
            return match self.short_of.take() {
                Some(why) => Extracted::ShortOf(format!("decoding: {why}")),
                None => Extracted::Undecodable,
            };
        };
        self.run_plugins(plan, &summary, packed, delivery)
    }

    /// The coordinator's middle step: the file goes out as a job (through
    /// the object store unless the workers share its folder), and the plan's
    /// record takes what the worker found.
    fn send_out(&mut self, coordinator: &Coordinator, plan: &mut Plan) -> Extracted {
        let cluster = self
            .settings
            .cluster
            .as_ref()
            .expect("a coordinator has [cluster]");
        let record = &mut plan.record;
        let job = vx_cluster::Job {
            id: String::new(),
            path: record.path.clone(),
            content: record.content.clone(),
            size: record.size,
            plugins: plan.run.clone(),
            in_store: false,
        };
        let upload = !vx_cluster::shared_with_workers(&record.path, &cluster.shared);
        let reply = coordinator.submit(job, upload);
        let reply = loop {
            match reply.recv_timeout(Duration::from_millis(500)) {
                Ok(r) => break r,
                Err(crossbeam_channel::RecvTimeoutError::Timeout)
                    if !self.state.lock().shutting_down => {}
                // Shutting down: the job stays queued; this vxd asks again
                // after its restart.
                Err(_) => return Extracted::Abandoned,
            }
        };
        let outcome = match reply {
            Reply::Done(outcome) => outcome,
            Reply::Failed(why) => {
                record.failures.push((VXD.into(), why));
                return Extracted::Undecodable;
            }
        };
        let Outcome {
            kind,
            info,
            plugins,
            mut results,
            failures,
            thumbnails,
            ..
        } = *outcome;
        record.kind = kind;
        record.info = info;
        record.failures.extend(failures);
        // What ran on the worker, and what was kept here: a plugin the
        // worker lacks stays missing, and runs when the file is next planned.
        let kept = record.plugin_set.split(',').filter(|e| {
            plan.keep
                .iter()
                .any(|k| e.split('@').next() == Some(k.as_str()))
        });
        record.plugin_set = plugins
            .iter()
            .map(String::as_str)
            .chain(kept)
            .collect::<Vec<_>>()
            .join(",");
        let dir = self.settings.artefact_dir();
        let _ = std::fs::create_dir_all(&dir);
        for (name, bytes) in thumbnails {
            // A bare file name, whatever the message says.
            let Some(name) = Path::new(&name).file_name() else {
                continue;
            };
            if let Err(e) = std::fs::write(dir.join(name), bytes) {
                tracing::warn!("cannot store thumbnail {name:?}: {e}");
            }
        }
        for seg in results.iter_mut().flat_map(|(_, s)| s.iter_mut()) {
            if let Some(name) = seg.thumbnail.as_ref().and_then(|t| t.file_name()) {
                seg.thumbnail = Some(dir.join(name));
            }
        }
        match record.failures.iter().any(|(p, _)| fails_whole_file(p)) {
            true => Extracted::Undecodable,
            false => Extracted::Results(results),
        }
    }

    /// A worker's loop: each job from the bus is decoded and run here, and
    /// its outcome sent back; nothing is indexed on this machine.
    fn take_jobs(&mut self, worker: &Worker) {
        let inbox = cluster_inbox(&self.settings);
        while let Some(mut delivery) = worker.next() {
            let job = delivery.job.clone();
            let span = tracing::info_span!("job", worker = self.worker, path = %job.path.display(), attempt = delivery.attempt);
            let _enter = span.enter();
            let path = match delivery.fetch(&inbox) {
                Ok(p) => p,
                // Another worker may see it (a wrong path_map, a share not
                // mounted here, the store restarting).
                Err(why) if !delivery.is_last() => {
                    tracing::warn!("cannot get the file: {why}; the job goes back to the queue");
                    self.state
                        .lock()
                        .warn(format!("{}: {why}", job.path.display()));
                    delivery.give_back(RETRY_PAUSE);
                    continue;
                }
                Err(why) => {
                    tracing::warn!("cannot get the file: {why}");
                    let outcome =
                        self.outcome(&job, &Plan::for_job(&job, job.path.clone(), vec![]), vec![]);
                    delivery.finish(Outcome {
                        failures: vec![(DECODE.into(), why)],
                        ..outcome
                    });
                    continue;
                }
            };
            self.state.lock().working.insert(
                self.worker,
                vx_ctl_protocol::Current {
                    path: job.path.clone(),
                    plugin: None,
                },
            );
            let run: Vec<String> = job
                .plugins
                .iter()
                .filter(|p| self.pool(p).is_some_and(|pool| pool.is_running()))
                .cloned()
                .collect();
            let mut plan = Plan::for_job(&job, path, run);
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                self.extract(&mut plan, Some(&delivery))
            }));
            let results = match run {
                Ok(Extracted::Results(r)) => r,
                Ok(Extracted::Undecodable) => vec![],
                Ok(Extracted::ShortOf(why)) if !delivery.is_last() => {
                    tracing::warn!("{why}: the job goes back to the queue");
                    self.state.finish(self.worker);
                    delivery.give_back(RETRY_PAUSE);
                    continue;
                }
                Ok(Extracted::ShortOf(why)) => {
                    plan.record.failures.push((VXD.into(), why));
                    vec![]
                }
                Ok(Extracted::Abandoned) => vec![],
                Err(payload) => {
                    let message = panic_message(payload.as_ref());
                    plan.record.failures.push((
                        VXD.into(),
                        format!("vxd panicked: {message} (please report this)"),
                    ));
                    vec![]
                }
            };
            let outcome = self.outcome(&job, &plan, results);
            delivery.finish(outcome);
            self.state.finish(self.worker);
        }
    }

    /// What a worker sends back for `job`: the plan's record and the
    /// results, with the thumbnails they refer to (moved, not copied).
    fn outcome(
        &self,
        job: &vx_cluster::Job,
        plan: &Plan,
        results: Vec<(String, Vec<SegmentResult>)>,
    ) -> Outcome {
        let thumbnails = results
            .iter()
            .flat_map(|(_, segs)| segs.iter().filter_map(|s| s.thumbnail.as_ref()))
            .filter_map(|t| {
                let bytes = std::fs::read(t).ok()?;
                // Only the coordinator's copy is ever shown.
                let _ = std::fs::remove_file(t);
                Some((t.file_name()?.to_string_lossy().into_owned(), bytes))
            })
            .collect();
        Outcome {
            job: job.id.clone(),
            worker: self
                .settings
                .cluster
                .as_ref()
                .map(|c| c.name.clone())
                .unwrap_or_default(),
            kind: plan.record.kind,
            info: plan.record.info.clone(),
            plugins: running_plugins(&self.pools)
                .into_iter()
                .filter(|e| plan.run.iter().any(|p| e.split('@').next() == Some(p)))
                .collect(),
            results,
            failures: plan.record.failures.clone(),
            thumbnails,
        }
    }

    fn pool(&self, plugin: &str) -> Option<&Pool> {
        self.pools.iter().find(|p| p.plugin() == plugin)
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
        let down = self.down_plugins(&plugin_set);
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
        let run = current
            .iter()
            .filter_map(|e| e.split('@').next())
            .filter(|p| !keep.iter().any(|k| k == p))
            .map(str::to_owned)
            .collect();
        Some(Plan { record, keep, run })
    }

    /// Decodes once for every plugin that runs: each size any of them asked
    /// for, and the audio if one wants it. A file that cannot be decoded
    /// gets the failure in its record (indexed by name with it, so it is not
    /// retried until it changes), or, when the machine was short of
    /// something, `short_of` says what.
    fn decode_for(&mut self, plan: &mut Plan) -> Option<(Summary, Packed)> {
        let path = plan.record.path.clone();
        let needs: Vec<_> = plan
            .run
            .iter()
            .filter_map(|p| Some(self.pool(p)?.hello()?.1))
            .collect();
        let opts = vx_decoder::options_for(&self.settings, needs.iter());
        let (summary, packed) = match self.decode(&path, &opts) {
            Ok(d) => d,
            Err((_, Failure::Temporary(why))) if self.may_retry(&path) => {
                self.short_of = Some(why);
                return None;
            }
            Err((plugin, Failure::File(reason) | Failure::Temporary(reason))) => {
                tracing::warn!("cannot decode: {reason}");
                plan.record.failures.push((plugin.into(), reason));
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
        delivery: Option<&Delivery>,
    ) -> Extracted {
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
        if let Some(d) = delivery {
            d.extend(deadline);
        }
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
        let mut pending: Vec<(String, Receiver<pool::Outcome>)> = plan
            .run
            .iter()
            .filter_map(|p| {
                let pool = self.pool(p)?;
                let needs = pool.hello()?.1;
                let job = Job {
                    frames: needs
                        .frame_max_side
                        .map(|side| frames_nearest(&packed, side.min(self.settings.frame_max_side)))
                        .unwrap_or_default(),
                    audio: packed.audio.filter(|_| needs.audio),
                    ..job.clone()
                };
                Some((pool.plugin().to_owned(), pool.submit(job, deadline)))
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
                    if results.len() == 1 && !pending.is_empty() && delivery.is_none() {
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
        match short_of {
            Some(why) => Extracted::ShortOf(why),
            None => Extracted::Results(results),
        }
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
    fn show_running(&self, pending: &[(String, Receiver<pool::Outcome>)]) {
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

impl Plan {
    /// A worker's plan for a job: everything runs, nothing is kept.
    fn for_job(job: &vx_cluster::Job, path: PathBuf, run: Vec<String>) -> Self {
        Plan {
            record: FileRecord {
                kind: vx_media::kind_from_extension(&job.path).unwrap_or(MediaKind::Video),
                info: Default::default(),
                size: job.size,
                mtime: 0,
                fingerprint: String::new(),
                failures: vec![],
                content: job.content.clone(),
                plugin_set: String::new(),
                path,
            },
            keep: vec![],
            run,
        }
    }
}

/// Where a worker keeps files fetched from the object store while it works
/// on them.
pub fn cluster_inbox(settings: &Settings) -> PathBuf {
    settings.state_dir.join("cluster-inbox")
}

/// `name@version` of each plugin whose hosts run.
pub fn running_plugins(pools: &[Pool]) -> Vec<String> {
    pools
        .iter()
        .filter(|p| p.is_running())
        .filter_map(|p| p.hello().map(|(v, _)| format!("{}@{v}", p.plugin())))
        .collect()
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
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
