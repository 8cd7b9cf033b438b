//! Commits grouped across files. A commit costs an fsync and a new segment
//! (which tantivy later merges), so in bulk, small files would spend much of
//! their time committing. A worker puts its file in the index and goes on to
//! the next; the batch commits when nothing else waits (a lone file is not
//! held up), when it holds `commit_batch` files, or when its oldest file has
//! waited [`MAX_WAIT`].
//!
//! Crash consistency is that of a commit per file: only once a file is
//! committed does the state count it as indexed, and the commit holds its
//! fingerprint with its results, so a killed vxd does again exactly the files
//! it had not committed.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use vx_config::Settings;
use vx_index::{FileRecord, MediaIndex};
use vx_plugin_protocol::SegmentResult;

use crate::pipeline::{RETRY_PAUSE, fails_whole_file};
use crate::state::State;

/// A file put in the index is committed at most this long after.
pub const MAX_WAIT: Duration = Duration::from_secs(2);

pub struct Batch {
    index: Arc<MediaIndex>,
    state: Arc<State>,
    settings: Arc<Settings>,
    /// Put, not yet committed, with when each was put.
    files: Mutex<Vec<(FileRecord, Instant)>>,
    added: Condvar,
    /// One commit at a time, so that each file's after-commit work runs
    /// once its own commit is done.
    committing: Mutex<()>,
}

impl Batch {
    pub fn new(index: Arc<MediaIndex>, state: Arc<State>, settings: Arc<Settings>) -> Arc<Self> {
        let batch = Arc::new(Self {
            index,
            state,
            settings,
            files: Mutex::default(),
            added: Condvar::new(),
            committing: Mutex::default(),
        });
        let timer = batch.clone();
        std::thread::Builder::new()
            .name("commit-timer".into())
            .spawn(move || timer.commit_aged())
            .expect("spawning the commit timer");
        batch
    }

    /// Puts the file with its results and failures (the segments of the
    /// plugins in `keep` stay as indexed), and commits now if nothing else
    /// waits or the batch is full.
    pub fn add(&self, record: &FileRecord, segments: &[(&str, &SegmentResult)], keep: &[&str]) {
        if let Err(e) = self.index.put_file_keeping(record, segments, keep) {
            // The index keeps the change and makes it again at the commit.
            tracing::warn!("index write failed: {e}");
        }
        // Counted before it joins the batch, so that the commit that takes
        // it always finds it counted.
        let nothing_waits = {
            let mut s = self.state.lock();
            s.uncommitted += 1;
            s.queue.is_empty() && s.settling == 0
        };
        let full = {
            let mut files = self.files();
            files.push((record.clone(), Instant::now()));
            files.len() >= self.settings.commit_batch
        };
        if full || nothing_waits {
            self.commit();
        } else {
            self.added.notify_one();
        }
    }

    /// Commits every file put so far. A commit that fails (a full disk) is
    /// tried again every few seconds: indexing is held up until it works,
    /// and status says why.
    pub fn commit(&self) {
        let _one = self.committing.lock().unwrap_or_else(|e| e.into_inner());
        let files = std::mem::take(&mut *self.files());
        if files.is_empty() {
            return;
        }
        while let Err(e) = self.index.commit() {
            tracing::error!("index commit failed: {e}");
            let why = if disk_full(&self.settings.state_dir) {
                format!(
                    "state dir full ({}): indexing is paused until space is freed",
                    self.settings.state_dir.display()
                )
            } else {
                format!(
                    "the index cannot be written ({e}); trying again every {} s",
                    RETRY_PAUSE.as_secs()
                )
            };
            let mut s = self.state.lock();
            if s.shutting_down {
                return; // not committed, so done again at the next start
            }
            s.stalled = Some(why);
            drop(s);
            std::thread::sleep(RETRY_PAUSE);
        }
        {
            let mut s = self.state.lock();
            if s.stalled.take().is_some() {
                tracing::info!("the index is writable again: indexing resumes");
            }
            s.index_generation += 1;
        }
        for (record, _) in &files {
            self.committed(record);
        }
        self.state.lock().uncommitted -= files.len();
        if files.len() > 1 {
            tracing::debug!(files = files.len(), "committed together");
        }
    }

    /// Tells the state about a committed file.
    fn committed(&self, record: &FileRecord) {
        let path = &record.path;
        self.state.lock().temporary_failures.remove(path);
        // Deleted while it was decoded or read by the plugins: the watcher's
        // removal either comes after the put (and the commit made both) or
        // came before, and then the file is gone now.
        if crate::watch::gone(path, &self.settings.watch) {
            tracing::info!(path = %path.display(), "deleted while in progress: not indexed");
            self.state.forget(path);
            if let Err(e) = self.index.remove_and_commit(std::slice::from_ref(path)) {
                tracing::error!("index commit failed: {e}");
            }
            return;
        }
        let mut s = self.state.lock();
        if !record.failures.iter().any(|(p, _)| fails_whole_file(p)) {
            s.indexed.insert(path.clone());
        }
        for (plugin, reason) in &record.failures {
            s.failed
                .insert((path.clone(), plugin.clone()), reason.clone());
        }
    }

    /// The timer's thread: commits a batch whose oldest file waited
    /// [`MAX_WAIT`] (the workers are busy with long files, say).
    fn commit_aged(&self) {
        let mut files = self.files();
        loop {
            let wait = match files.first() {
                Some((_, put)) => MAX_WAIT.saturating_sub(put.elapsed()),
                None => MAX_WAIT,
            };
            if wait.is_zero() {
                drop(files);
                self.commit();
                files = self.files();
                continue;
            }
            files = self
                .added
                .wait_timeout(files, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn files(&self) -> MutexGuard<'_, Vec<(FileRecord, Instant)>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether the file system under `dir` is (nearly) out of space. Asked after
/// a commit failed: tantivy's errors do not always keep the cause.
fn disk_full(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statvfs fills the zeroed struct; `c` is a valid C string.
    unsafe {
        let mut st: libc::statvfs = std::mem::zeroed();
        libc::statvfs(c.as_ptr(), &mut st) == 0
            && (st.f_bavail as u64).saturating_mul(st.f_frsize as u64) < DISK_FULL_BELOW
    }
}

/// Less free space than this under the state dir counts as full: a commit
/// needs room for new segment files before it frees the old ones.
const DISK_FULL_BELOW: u64 = 4 << 20;

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use vx_plugin_protocol::{MediaInfo, MediaKind};

    use super::*;

    fn photo(name: &str) -> FileRecord {
        FileRecord {
            path: PathBuf::from("/nowhere/photos").join(name),
            kind: MediaKind::Image,
            info: MediaInfo::default(),
            size: 1,
            mtime: 0,
            fingerprint: "1:0".into(),
            failures: vec![],
            content: name.into(),
            plugin_set: "keyframes@1".into(),
        }
    }

    fn batch_of(size: usize) -> (Arc<Batch>, Arc<State>, Arc<MediaIndex>) {
        let index = Arc::new(MediaIndex::in_ram().unwrap());
        let state = Arc::new(State::default());
        let settings = Arc::new(Settings {
            commit_batch: size,
            watch: vec![PathBuf::from("/nowhere")],
            ..Settings::default()
        });
        (
            Batch::new(index.clone(), state.clone(), settings),
            state,
            index,
        )
    }

    fn committed(index: &MediaIndex, name: &str) -> bool {
        index
            .doc_count(&PathBuf::from("/nowhere/photos").join(name))
            .unwrap()
            > 0
    }

    #[test]
    fn files_wait_for_a_full_batch_while_others_are_queued() {
        let (batch, state, index) = batch_of(3);
        state.enqueue("/nowhere/photos/next.jpg".into(), 1);
        batch.add(&photo("a.jpg"), &[], &[]);
        batch.add(&photo("b.jpg"), &[], &[]);
        assert!(!committed(&index, "a.jpg") && !committed(&index, "b.jpg"));
        assert!(index.has_pending());
        {
            let s = state.lock();
            assert!(s.indexed.is_empty(), "counted before its commit");
            assert_eq!(s.uncommitted, 2);
        }
        batch.add(&photo("c.jpg"), &[], &[]);
        assert!(
            ["a.jpg", "b.jpg", "c.jpg"]
                .iter()
                .all(|n| committed(&index, n))
        );
        let s = state.lock();
        assert_eq!(s.indexed.len(), 3);
        assert_eq!(s.uncommitted, 0);
        assert_eq!(s.index_generation, 1, "one commit");
    }

    #[test]
    fn a_lone_file_is_committed_at_once() {
        let (batch, state, index) = batch_of(64);
        batch.add(&photo("a.jpg"), &[], &[]);
        assert!(committed(&index, "a.jpg"));
        assert_eq!(state.lock().indexed.len(), 1);
    }

    #[test]
    fn the_timer_commits_a_batch_that_waited_long_enough() {
        let (batch, state, index) = batch_of(64);
        state.enqueue("/nowhere/photos/next.jpg".into(), 1);
        batch.add(&photo("a.jpg"), &[], &[]);
        assert!(!committed(&index, "a.jpg"));
        let until = Instant::now() + MAX_WAIT * 3;
        while !committed(&index, "a.jpg") && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(committed(&index, "a.jpg"), "not committed by the timer");
        assert_eq!(state.lock().uncommitted, 0);
    }
}
