//! Finding work: the crawl at start, and notify events afterwards.
//!
//! Crawled files go straight to the queue. Files the watcher reports wait in
//! the [`Settler`] until their size and mtime have been stable for
//! `settle_ms`, so a file still being written or copied is not decoded half
//! way. Deleted files leave the index at once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use notify::event::{EventKind, ModifyKind, RenameMode};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use vx_index::MediaIndex;

use crate::state::State;

/// Whether vxd indexes this path: a media extension, no hidden component
/// below the watched root, not a partial download.
pub fn wanted(path: &Path, roots: &[PathBuf]) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return false };
    let partial = [".part", ".crdownload", ".tmp", ".download"].iter().any(|s| name.ends_with(s));
    let rel = roots.iter().find_map(|r| path.strip_prefix(r).ok()).unwrap_or(path);
    let hidden = rel.components().any(|c| c.as_os_str().to_str().is_some_and(|s| s.starts_with('.')));
    !partial && !hidden && vx_media::kind_from_extension(path).is_some()
}

/// Walks `dir` without following symlinks, calling `found` for each wanted file.
pub fn crawl(dir: &Path, roots: &[PathBuf], found: &mut dyn FnMut(PathBuf, u64)) {
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(dir = %d.display(), "cannot read folder: {e}");
                continue;
            }
        };
        for entry in entries.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            let path = entry.path();
            if ft.is_dir() {
                if wanted_dir(&path, roots) {
                    stack.push(path);
                }
            } else if ft.is_file() && wanted(&path, roots) {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                found(path, size);
            }
        }
    }
}

fn wanted_dir(path: &Path, roots: &[PathBuf]) -> bool {
    let rel = roots.iter().find_map(|r| path.strip_prefix(r).ok()).unwrap_or(path);
    !rel.components().any(|c| c.as_os_str().to_str().is_some_and(|s| s.starts_with('.')))
}

/// Files reported by the watcher, waiting for their size and mtime to settle.
pub struct Settler {
    state: Arc<State>,
    window: Duration,
    pending: HashMap<PathBuf, (u64, Option<SystemTime>, Instant)>,
}

impl Settler {
    pub fn new(state: Arc<State>, window: Duration) -> Self {
        Self { state, window, pending: HashMap::new() }
    }

    pub fn touch(&mut self, path: PathBuf) {
        self.pending.entry(path).or_insert((u64::MAX, None, Instant::now()));
        self.publish();
    }

    pub fn forget(&mut self, path: &Path) {
        self.pending.remove(path);
        self.publish();
    }

    /// Queues every file that has been stable for the window.
    pub fn tick(&mut self) {
        let now = Instant::now();
        let mut ready = vec![];
        self.pending.retain(|path, (size, mtime, since)| {
            let Ok(meta) = std::fs::metadata(path) else { return false };
            let (s, m) = (meta.len(), meta.modified().ok());
            if (s, m) != (*size, *mtime) {
                (*size, *mtime, *since) = (s, m, now);
                return true;
            }
            if now.duration_since(*since) >= self.window {
                ready.push((path.clone(), s));
                return false;
            }
            true
        });
        for (path, size) in ready {
            self.state.enqueue(path, size);
        }
        self.publish();
    }

    fn publish(&self) {
        self.state.lock().settling = self.pending.len();
    }
}

/// Starts notify on every root and a thread that turns its events into work.
pub fn start(
    roots: Vec<PathBuf>,
    state: Arc<State>,
    index: Arc<MediaIndex>,
    settle: Duration,
) -> notify::Result<RecommendedWatcher> {
    let (tx, rx) = crossbeam_channel::unbounded();
    let mut watcher = notify::recommended_watcher(move |ev| {
        let _ = tx.send(ev);
    })?;
    for root in &roots {
        if let Err(e) = watcher.watch(root, RecursiveMode::Recursive) {
            tracing::warn!(dir = %root.display(), "cannot watch: {e}");
        }
    }
    std::thread::Builder::new()
        .name("watch".into())
        .spawn(move || {
            let mut settler = Settler::new(state.clone(), settle);
            let tick = Duration::from_millis(100);
            loop {
                match rx.recv_timeout(tick) {
                    Ok(Ok(ev)) => handle(ev, &roots, &mut settler, &state, &index),
                    Ok(Err(e)) => tracing::warn!("watch error: {e}"),
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => return,
                }
                settler.tick();
            }
        })
        .expect("spawn watch thread");
    Ok(watcher)
}

fn handle(ev: notify::Event, roots: &[PathBuf], settler: &mut Settler, state: &State, index: &MediaIndex) {
    let gone = |path: &Path, settler: &mut Settler| {
        settler.forget(path);
        if state.lock().seen.contains(path) {
            state.forget(path);
            index.remove_file(path);
            if let Err(e) = index.commit() {
                tracing::error!("index commit failed: {e}");
            }
        }
    };
    let appeared = |path: &Path, settler: &mut Settler| {
        if path.is_dir() {
            // Files may land in a new folder before its watch exists.
            crawl(path, roots, &mut |p, _| settler.touch(p));
        } else if wanted(path, roots) {
            settler.touch(path.to_owned());
        }
    };
    match ev.kind {
        EventKind::Remove(_) | EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
            ev.paths.iter().for_each(|p| gone(p, settler));
        }
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) if ev.paths.len() == 2 => {
            gone(&ev.paths[0], settler);
            appeared(&ev.paths[1], settler);
        }
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Access(notify::event::AccessKind::Close(_)) => {
            for p in &ev.paths {
                if p.exists() { appeared(p, settler) } else { gone(p, settler) }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_partial_and_non_media_files_are_skipped() {
        let roots = [PathBuf::from("/home/u/.media")];
        assert!(wanted(Path::new("/home/u/.media/a/clip.mp4"), &roots), "hidden root itself is fine");
        assert!(!wanted(Path::new("/home/u/.media/.cache/clip.mp4"), &roots));
        assert!(!wanted(Path::new("/home/u/.media/clip.mp4.part"), &roots));
        assert!(!wanted(Path::new("/home/u/.media/notes.txt"), &roots));
        assert!(wanted(Path::new("/home/u/.media/Photo.JPG"), &roots));
    }
}
