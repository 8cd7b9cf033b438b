//! What vxd knows about its work, shared between the watcher, the pipeline
//! workers and the control server. One mutex: every update is a few map
//! operations.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use vx_ctl_protocol::{
    Current, FailedFile, FileCounts, MAX_LISTED_FAILURES, MAX_LISTED_WARNINGS, PluginState,
    PluginStatus, Status,
};

/// Throughput is measured over the files finished in this window.
const RATE_WINDOW: Duration = Duration::from_secs(300);

#[derive(Default)]
pub struct State {
    inner: Mutex<Inner>,
    work: Condvar,
}

#[derive(Default)]
pub struct Inner {
    pub seen: HashSet<PathBuf>,
    pub indexed: HashSet<PathBuf>,
    /// Small files first, so the first results come fast.
    pub queue: BTreeSet<(u64, PathBuf)>,
    pub settling: usize,
    /// Worker → what it is doing.
    pub working: BTreeMap<usize, Current>,
    /// (path, plugin) → reason.
    pub failed: BTreeMap<(PathBuf, String), String>,
    pub plugins: Vec<PluginStatus>,
    pub crawling: bool,
    pub shutting_down: bool,
    pub paused: bool,
    /// Queued by `vxctl retry`: run even if the index holds the fingerprint.
    pub force: HashSet<PathBuf>,
    pub reused: u64,
    pub plugin_jobs: u64,
    /// Index entries of files that vanished while vxd was down are removed
    /// once the first crawl's queue has drained (a renamed file may still
    /// need them), and only then.
    pub stale_purged: bool,
    pub warnings: Vec<String>,
    finished: VecDeque<Instant>,
    /// Counts commits, so the embedder knows which ones it has looked at
    /// for segments without vectors...
    pub index_generation: u64,
    /// ...and the last one it has looked at, all the way through.
    pub embedded_generation: u64,
    /// Segments without vectors at the embedder's last look.
    pub embed_backlog: u64,
    /// Vectors stored.
    pub vectors: u64,
    /// The text-embed host is up, so the backlog will drain.
    pub embedder_up: bool,
    /// Files vxd was working on when it last died, with how many times in
    /// a row that happened. They wait until the rest of the queue is done,
    /// and one that keeps taking vxd down fails.
    pub suspects: HashMap<PathBuf, u32>,
    /// Temporary failures (short of memory, fds or disk) per file so far.
    pub temporary_failures: HashMap<PathBuf, u32>,
    /// Files put in the index and waiting for the batch's commit.
    pub uncommitted: usize,
    /// Why indexing is held up, e.g. the state dir is full.
    pub stalled: Option<String>,
    /// What vx may use and the plan to keep to it, for status.
    pub budget: vx_ctl_protocol::Budget,
    /// Set when this vxd is part of a cluster.
    pub cluster: Option<ClusterView>,
    /// `index_hours` as minutes after midnight, local time.
    pub hours: Option<(u32, u32)>,
}

/// Whether the local time now lies in `hours` (which may wrap past midnight).
pub fn within_hours(hours: Option<(u32, u32)>) -> bool {
    let Some((start, end)) = hours else {
        return true;
    };
    // SAFETY: localtime_r fills the zeroed struct from a valid time_t.
    let now = unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        (tm.tm_hour * 60 + tm.tm_min) as u32
    };
    in_window(now, start, end)
}

fn in_window(now: u32, start: u32, end: u32) -> bool {
    if start <= end {
        (start..end).contains(&now)
    } else {
        now >= start || now < end
    }
}

/// `index_hours` as people write it, for status.
fn show_hours((start, end): (u32, u32)) -> String {
    format!(
        "{:02}:{:02}-{:02}:{:02}",
        start / 60,
        start % 60,
        end / 60,
        end % 60
    )
}

impl Inner {
    /// The failures of every file, or of `only` that one, by path.
    pub fn failed_files<'a>(
        &'a self,
        only: Option<&'a Path>,
    ) -> impl Iterator<Item = FailedFile> + 'a {
        self.failed
            .iter()
            .filter(move |((p, _), _)| only.is_none_or(|o| o == p))
            .map(|((path, plugin), reason)| FailedFile {
                path: path.clone(),
                plugin: plugin.clone(),
                reason: reason.clone(),
            })
    }

    /// Adds a warning for status, once; past [`MAX_LISTED_WARNINGS`] they
    /// only go to the log.
    pub fn warn(&mut self, warning: String) {
        if self.warnings.len() >= MAX_LISTED_WARNINGS {
            tracing::warn!("{warning}");
        } else if !self.warnings.contains(&warning) {
            tracing::warn!("{warning}");
            self.warnings.push(warning);
        }
    }

    /// (files per minute, seconds to finish the queue at that rate).
    fn rate(&self) -> (Option<f64>, Option<f64>) {
        let (Some(first), n) = (self.finished.front(), self.finished.len()) else {
            return (None, None);
        };
        let span = first.elapsed().as_secs_f64();
        if n < 2 || span < 1.0 {
            return (None, None);
        }
        let per_s = n as f64 / span;
        let left = (self.queue.len() + self.settling + self.working.len()) as f64;
        (Some(per_s * 60.0), Some(left / per_s))
    }
}

impl State {
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn enqueue(&self, path: PathBuf, size: u64) {
        let mut s = self.lock();
        s.seen.insert(path.clone());
        if s.queue.iter().all(|(_, p)| p != &path) {
            s.queue.insert((size, path));
        }
        drop(s);
        self.work.notify_all();
    }

    /// Blocks until a file is queued, vxd is not paused and the time is
    /// within `index_hours`, then hands it to `worker`; `None` once shutdown
    /// begins.
    pub fn next_job(&self, worker: usize) -> Option<PathBuf> {
        let mut s = self.lock();
        loop {
            if s.shutting_down {
                return None;
            }
            if !s.paused && within_hours(s.hours) {
                // Skip a file another worker holds (it was queued again while in progress).
                let busy: HashSet<PathBuf> = s.working.values().map(|c| c.path.clone()).collect();
                let free = |p: &PathBuf| !busy.contains(p);
                // A file that vxd died on runs alone, after the others: a
                // death then names it, and not whatever ran beside it.
                let suspect = |p: &PathBuf| s.suspects.contains_key(p);
                let next = if busy.iter().any(suspect) {
                    None
                } else {
                    s.queue
                        .iter()
                        .find(|(_, p)| free(p) && !suspect(p))
                        .or_else(|| s.queue.iter().find(|_| busy.is_empty()))
                        .cloned()
                };
                if let Some(next) = next {
                    s.queue.remove(&next);
                    s.working.insert(
                        worker,
                        Current {
                            path: next.1.clone(),
                            plugin: None,
                        },
                    );
                    return Some(next.1);
                }
            }
            s = match s.hours {
                // Look at the clock again now and then.
                Some(_) => {
                    self.work
                        .wait_timeout(s, Duration::from_secs(30))
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.work.wait(s).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }

    /// `worker` is done with its file.
    pub fn finish(&self, worker: usize) {
        let mut s = self.lock();
        s.working.remove(&worker);
        let now = Instant::now();
        s.finished.push_back(now);
        while s
            .finished
            .front()
            .is_some_and(|t| now.duration_since(*t) > RATE_WINDOW)
        {
            s.finished.pop_front();
        }
        drop(s);
        self.work.notify_all();
    }

    /// Tells status what a crawl could not index.
    pub fn report(&self, problem: crate::watch::Problem) {
        use crate::watch::Problem;
        let mut s = self.lock();
        match problem {
            Problem::Folder(warning) => s.warn(warning),
            Problem::File(path, why) => {
                s.seen.insert(path.clone());
                s.failed.insert((path, crate::pipeline::VXD.into()), why);
            }
        }
    }

    pub fn set_paused(&self, paused: bool) {
        self.lock().paused = paused;
        self.work.notify_all();
    }

    pub fn shut_down(&self) {
        self.lock().shutting_down = true;
        self.work.notify_all();
    }

    /// Forgets a deleted file everywhere.
    pub fn forget(&self, path: &Path) {
        let mut s = self.lock();
        s.seen.remove(path);
        s.indexed.remove(path);
        s.queue.retain(|(_, p)| p != path);
        s.failed.retain(|(p, _), _| p != path);
    }

    /// Forgets `path` and everything below it (a folder that went away);
    /// returns the files it knew there.
    pub fn forget_under(&self, prefix: &Path) -> Vec<PathBuf> {
        let mut s = self.lock();
        let gone: Vec<PathBuf> = s
            .seen
            .iter()
            .filter(|p| p.starts_with(prefix))
            .cloned()
            .collect();
        s.seen.retain(|p| !p.starts_with(prefix));
        s.indexed.retain(|p| !p.starts_with(prefix));
        s.queue.retain(|(_, p)| !p.starts_with(prefix));
        s.failed.retain(|(p, _), _| !p.starts_with(prefix));
        gone
    }

    pub fn set_plugin(&self, name: &str, worker: usize, update: impl FnOnce(&mut PluginStatus)) {
        let mut s = self.lock();
        let worker = worker as u32;
        let idx = match s
            .plugins
            .iter()
            .position(|p| p.name == name && p.worker == worker)
        {
            Some(i) => i,
            None => {
                s.plugins.push(PluginStatus {
                    name: name.to_owned(),
                    pid: None,
                    state: PluginState::Starting,
                    restarts: 0,
                    crashes: 0,
                    last_error: None,
                    worker,
                });
                s.plugins.len() - 1
            }
        };
        update(&mut s.plugins[idx]);
    }

    /// `plugin` is not started: a model it needs is not installed (`why`).
    pub fn set_missing(&self, plugin: &str, worker: usize, why: String) {
        self.set_plugin(plugin, worker, |p| {
            p.state = PluginState::Missing;
            p.last_error = Some(why);
        });
    }

    pub fn snapshot(&self, watched: &[PathBuf], index_bytes: u64) -> Status {
        let s = self.lock();
        let failed_paths: HashSet<&PathBuf> = s.failed.keys().map(|(p, _)| p).collect();
        let queued = (s.queue.len() + s.settling) as u64;
        let in_progress = s.working.len() as u64;
        let (files_per_min, eta_s) = s.rate();
        Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            pid: std::process::id(),
            protocol: vx_ctl_protocol::PROTOCOL_VERSION,
            watched: watched.to_vec(),
            files: FileCounts {
                seen: s.seen.len() as u64,
                indexed: s.indexed.len() as u64,
                failed: failed_paths.len() as u64,
                queued,
                in_progress,
                reused: s.reused,
                done: s
                    .indexed
                    .iter()
                    .chain(failed_paths.iter().copied())
                    .collect::<HashSet<_>>()
                    .len() as u64,
            },
            plugins: s.plugins.clone(),
            failed_files: s.failed_files(None).take(MAX_LISTED_FAILURES).collect(),
            idle: !s.crawling
                && queued == 0
                && in_progress == 0
                && s.uncommitted == 0
                && !(s.embedder_up
                    && (s.embedded_generation != s.index_generation || s.embed_backlog > 0)),
            plugin_jobs: s.plugin_jobs,
            paused: s.paused,
            current: s.working.values().cloned().collect(),
            files_per_min: if queued + in_progress > 0 {
                files_per_min
            } else {
                None
            },
            eta_s: if queued + in_progress > 0 {
                eta_s
            } else {
                None
            },
            warnings: s.warnings.clone(),
            index_bytes,
            vectors: s.vectors,
            embed_backlog: s.embed_backlog,
            failed_files_omitted: s.failed.len().saturating_sub(MAX_LISTED_FAILURES) as u64,
            budget: s.budget.clone(),
            cluster: s.cluster.as_ref().map(ClusterView::status),
            stalled: s.stalled.clone().or_else(|| {
                let hours = s.hours?;
                (!within_hours(Some(hours)) && queued > 0).then(|| {
                    format!(
                        "outside index_hours {}: indexing waits until then",
                        show_hours(hours)
                    )
                })
            }),
        }
    }
}

/// Where each worker notes the file it is working on, so that after vxd
/// itself died (a crash in a library, the OOM killer) the next vxd knows
/// which files were in progress. One small file per worker: a count of
/// deaths on that file so far, a newline, then the path's bytes.
pub struct InProgress {
    dir: PathBuf,
}

impl InProgress {
    /// Opens `dir`, and returns the files that were in progress when the
    /// last vxd stopped without finishing them, each with its deaths so far
    /// (this one included).
    pub fn open(dir: PathBuf) -> std::io::Result<(Self, HashMap<PathBuf, u32>)> {
        use std::os::unix::ffi::OsStrExt;
        std::fs::create_dir_all(&dir)?;
        let mut left = HashMap::new();
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let bytes = std::fs::read(&path)?;
            std::fs::remove_file(&path)?;
            let Some(nl) = bytes.iter().position(|&b| b == b'\n') else {
                continue; // torn while written: vxd died before the file began
            };
            let deaths: u32 = std::str::from_utf8(&bytes[..nl])
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let file = PathBuf::from(std::ffi::OsStr::from_bytes(&bytes[nl + 1..]));
            left.insert(file, deaths + 1);
        }
        Ok((Self { dir }, left))
    }

    pub fn begin(&self, worker: usize, path: &Path, deaths: u32) {
        use std::os::unix::ffi::OsStrExt;
        let mut bytes = format!("{deaths}\n").into_bytes();
        bytes.extend_from_slice(path.as_os_str().as_bytes());
        // Without it a file that kills vxd is retried in a loop: say so.
        if let Err(e) = std::fs::write(self.dir.join(worker.to_string()), bytes) {
            tracing::warn!("cannot note the file in progress: {e}");
        }
    }

    pub fn end(&self, worker: usize) {
        let _ = std::fs::remove_file(self.dir.join(worker.to_string()));
    }
}

/// What status shows of the cluster.
pub struct ClusterView {
    pub bus: Arc<vx_cluster::Bus>,
    /// Set on a coordinator, which hears the workers.
    pub coordinator: Option<Arc<vx_cluster::Coordinator>>,
}

impl ClusterView {
    fn status(&self) -> vx_ctl_protocol::ClusterStatus {
        match &self.coordinator {
            Some(c) => c.status(),
            None => vx_ctl_protocol::ClusterStatus {
                nats: self.bus.settings().nats.clone(),
                role: "worker".into(),
                connected: self.bus.is_ready(),
                ..Default::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn status_fits_in_one_frame_however_many_files_failed() {
        let state = State::default();
        {
            let mut s = state.lock();
            for i in 0..200_000 {
                let path = PathBuf::from(format!("/media/some/long/folder/name/clip-{i:06}.mp4"));
                s.failed.insert((path, "decode".into()), "x".repeat(100));
                s.warn(format!("warning number {i}"));
            }
        }
        let status = state.snapshot(&[], 0);
        let bytes = vx_wire::encode(&status).expect("status encodes within the frame cap");
        assert!(
            bytes.len() < vx_wire::MAX_FRAME_LEN as usize / 4,
            "{}",
            bytes.len()
        );
        assert_eq!(status.files.failed, 200_000, "the count is still exact");
        assert_eq!(
            status.failed_files.len() as u64 + status.failed_files_omitted,
            200_000
        );
    }

    #[test]
    fn files_left_in_progress_are_found_with_their_deaths_counted() {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join("in-progress");
        let (notes, left) = InProgress::open(journal.clone()).unwrap();
        assert!(left.is_empty());
        let odd = PathBuf::from("/m/a name\nwith a newline.mp4");
        notes.begin(0, &odd, 0);
        notes.begin(1, Path::new("/m/b.mp4"), 2);
        notes.begin(2, Path::new("/m/done.mp4"), 0);
        notes.end(2);
        drop(notes); // vxd dies here
        let (_, left) = InProgress::open(journal.clone()).unwrap();
        assert_eq!(left.len(), 2, "{left:?}");
        assert_eq!(left[&odd], 1);
        assert_eq!(left[Path::new("/m/b.mp4")], 3);
        let (_, again) = InProgress::open(journal).unwrap();
        assert!(again.is_empty(), "each death is counted once");
    }

    #[test]
    fn index_hours_may_wrap_past_midnight() {
        let (one, seven) = (60, 420);
        assert!(in_window(120, one, seven));
        assert!(!in_window(420, one, seven), "the end is excluded");
        assert!(!in_window(1000, one, seven));
        let (ten_pm, six) = (1320, 360);
        assert!(in_window(1400, ten_pm, six));
        assert!(in_window(30, ten_pm, six));
        assert!(!in_window(720, ten_pm, six));
        assert_eq!(show_hours((60, 450)), "01:00-07:30");
    }

    #[test]
    fn a_suspect_runs_alone_after_the_rest_of_the_queue() {
        let state = Arc::new(State::default());
        state.lock().suspects.insert("/m/a.mp4".into(), 1);
        state.enqueue("/m/a.mp4".into(), 1);
        state.enqueue("/m/b.mp4".into(), 100);
        assert_eq!(state.next_job(0), Some(PathBuf::from("/m/b.mp4")));
        // Worker 1 does not take the suspect while worker 0 is busy...
        let waiting = {
            let state = state.clone();
            std::thread::spawn(move || state.next_job(1))
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(!waiting.is_finished());
        // ...only once it is alone, and then nothing runs beside it.
        state.finish(0);
        assert_eq!(waiting.join().unwrap(), Some(PathBuf::from("/m/a.mp4")));
        state.enqueue("/m/c.mp4".into(), 1);
        let beside = {
            let state = state.clone();
            std::thread::spawn(move || state.next_job(0))
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(!beside.is_finished());
        state.finish(1);
        assert_eq!(beside.join().unwrap(), Some(PathBuf::from("/m/c.mp4")));
    }
}
