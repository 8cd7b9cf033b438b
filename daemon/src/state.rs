//! What vxd knows about its work, shared between the watcher, the pipeline and
//! the control server. One mutex: every update is a few map operations.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex, MutexGuard};

use vx_ctl_protocol::{FailedFile, FileCounts, PluginState, PluginStatus, Status};

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
    pub in_progress: Option<PathBuf>,
    /// (path, plugin) → reason.
    pub failed: BTreeMap<(PathBuf, String), String>,
    pub plugins: Vec<PluginStatus>,
    pub crawling: bool,
    pub shutting_down: bool,
    /// Queued by `vxctl retry`: run even if the index holds the fingerprint.
    pub force: HashSet<PathBuf>,
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

    /// Blocks until a file is queued (and returns it, now in progress) or
    /// shutdown begins (returns `None`).
    pub fn next_job(&self) -> Option<PathBuf> {
        let mut s = self.lock();
        loop {
            if s.shutting_down {
                return None;
            }
            if let Some(first) = s.queue.pop_first() {
                s.in_progress = Some(first.1.clone());
                return Some(first.1);
            }
            s = self.work.wait(s).unwrap_or_else(|e| e.into_inner());
        }
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

    pub fn set_plugin(&self, name: &str, update: impl FnOnce(&mut PluginStatus)) {
        let mut s = self.lock();
        let idx = match s.plugins.iter().position(|p| p.name == name) {
            Some(i) => i,
            None => {
                s.plugins.push(PluginStatus {
                    name: name.to_owned(),
                    pid: None,
                    state: PluginState::Starting,
                    restarts: 0,
                    crashes: 0,
                    last_error: None,
                });
                s.plugins.len() - 1
            }
        };
        update(&mut s.plugins[idx]);
    }

    pub fn snapshot(&self, watched: &[PathBuf]) -> Status {
        let s = self.lock();
        let failed_paths: HashSet<&PathBuf> = s.failed.keys().map(|(p, _)| p).collect();
        let queued = (s.queue.len() + s.settling) as u64;
        let in_progress = s.in_progress.is_some() as u64;
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
            },
            plugins: s.plugins.clone(),
            failed_files: s
                .failed
                .iter()
                .map(|((path, plugin), reason)| FailedFile {
                    path: path.clone(),
                    plugin: plugin.clone(),
                    reason: reason.clone(),
                })
                .collect(),
            idle: !s.crawling && queued == 0 && in_progress == 0,
        }
    }
}
