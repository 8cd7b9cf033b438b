//! Finding work: the crawl at start, notify events afterwards, and periodic
//! rescans where the kernel will not watch.
//!
//! Crawled files go straight to the queue, and so do files the watcher sees
//! closed after writing or renamed into place: their writer is done. Other
//! files the watcher reports wait in the [`Settler`] until their size and
//! mtime have been stable for `settle_ms`, so a file still being written or
//! copied is not decoded half way. Deleted files leave the index at once; a file renamed or moved keeps
//! its documents for a moment, and its new path reuses them by content.
//!
//! Watching must not fail silently: when inotify runs out of watches (ENOSPC)
//! or instances (EMFILE), status shows a warning naming the sysctl to raise,
//! and the affected folders are rescanned every `rescan_interval_s` instead.
//! Unreadable folders are reported the same way and skipped; a media file
//! whose name is not UTF-8 is listed as failed, since neither the index nor
//! vxctl's JSON can hold its name. Symlinks are never followed, so links
//! cannot loop.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use globset::{Glob, GlobSet, GlobSetBuilder};
use notify::event::{EventKind, ModifyKind, RenameMode};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use vx_index::MediaIndex;

use crate::state::State;

/// Which paths vxd indexes.
pub struct Filter {
    pub roots: Vec<PathBuf>,
    ignore: GlobSet,
}

impl Filter {
    /// `ignore` globs match a path relative to its watched folder (`**/cache/**`)
    /// or a bare file name (`*.lrv`).
    pub fn new(roots: Vec<PathBuf>, ignore: &[String]) -> Result<Self, globset::Error> {
        let mut b = GlobSetBuilder::new();
        for g in ignore {
            b.add(Glob::new(g)?);
        }
        Ok(Self {
            roots,
            ignore: b.build()?,
        })
    }

    fn relative<'a>(&self, path: &'a Path) -> Option<&'a Path> {
        self.roots.iter().find_map(|r| path.strip_prefix(r).ok())
    }

    fn hidden_or_ignored(&self, rel: &Path) -> bool {
        rel.components()
            .any(|c| c.as_os_str().to_str().is_some_and(|s| s.starts_with('.')))
            || self.ignore.is_match(rel)
            || rel.file_name().is_some_and(|n| self.ignore.is_match(n))
    }

    /// A media file below a watched folder, not hidden, ignored or a partial
    /// download, with a UTF-8 name.
    pub fn wants_file(&self, path: &Path) -> bool {
        let (Some(rel), Some(name)) = (
            self.relative(path),
            path.file_name().and_then(|n| n.to_str()),
        ) else {
            return false;
        };
        let partial = [".part", ".crdownload", ".tmp", ".download"]
            .iter()
            .any(|s| name.ends_with(s));
        path.to_str().is_some()
            && !partial
            && !self.hidden_or_ignored(rel)
            && vx_media::kind_from_extension(path).is_some()
    }

    pub fn wants_dir(&self, path: &Path) -> bool {
        self.relative(path)
            .is_some_and(|rel| !self.hidden_or_ignored(rel))
    }
}

/// Walks `dir` without following symlinks, calling `found` for each wanted
/// file and `problem` for what it had to skip.
/// What a crawl met and could not index.
#[derive(Debug)]
pub enum Problem {
    /// A folder it cannot read: a warning.
    Folder(String),
    /// A media file it cannot index (its name, made printable), and why.
    File(PathBuf, String),
}

/// A media file whose name is not UTF-8, as a problem to report.
fn not_utf8(path: &Path) -> Problem {
    Problem::File(
        PathBuf::from(path.to_string_lossy().into_owned()),
        "its name is not valid UTF-8, which vx cannot index: rename it".into(),
    )
}

pub fn crawl(
    dir: &Path,
    filter: &Filter,
    found: &mut dyn FnMut(PathBuf, u64),
    problem: &mut dyn FnMut(Problem),
) {
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) => {
                problem(Problem::Folder(format!(
                    "cannot read folder {}: {e}",
                    d.display()
                )));
                continue;
            }
        };
        for entry in entries.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            let path = entry.path();
            if path.to_str().is_none() && ft.is_dir() {
                problem(Problem::Folder(format!(
                    "skipped folder {} (its name is not UTF-8)",
                    path.to_string_lossy()
                )));
            } else if path.to_str().is_none() && vx_media::kind_from_extension(&path).is_some() {
                problem(not_utf8(&path));
            } else if ft.is_dir() {
                if filter.wants_dir(&path) {
                    stack.push(path);
                }
            } else if ft.is_file() && filter.wants_file(&path) {
                let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                found(path, size);
            }
        }
    }
}

/// Whether `path` was deleted, as far as can be known: it is not found, and
/// the watched folder it lies in can be read and is not empty. A folder that
/// is missing, unreadable or empty (a disk not mounted, leaving its mount
/// point bare; a permission lost) says nothing about the files in it, and
/// neither does any error but "not found".
pub fn gone(path: &Path, roots: &[PathBuf]) -> bool {
    let roots_there = roots
        .iter()
        .filter(|r| path.starts_with(r))
        .all(|r| std::fs::read_dir(r).is_ok_and(|mut entries| entries.next().is_some()));
    roots_there
        && matches!(std::fs::symlink_metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// Files reported by the watcher, waiting for their size and mtime to settle.
pub struct Settler {
    state: Arc<State>,
    window: Duration,
    pending: HashMap<PathBuf, (u64, Option<SystemTime>, Instant)>,
}

impl Settler {
    pub fn new(state: Arc<State>, window: Duration) -> Self {
        Self {
            state,
            window,
            pending: HashMap::new(),
        }
    }

    pub fn touch(&mut self, path: PathBuf) {
        self.pending
            .entry(path)
            .or_insert((u64::MAX, None, Instant::now()));
        self.publish();
    }

    /// Queues `path` at once: its writer closed it, or it was renamed into
    /// place whole.
    pub fn complete(&mut self, path: PathBuf) {
        self.pending.remove(&path);
        match std::fs::metadata(&path) {
            Ok(meta) => self.state.enqueue(path, meta.len()),
            Err(_) => self.touch(path), // looked at again on the next tick
        }
        self.publish();
    }

    pub fn forget(&mut self, path: &Path) {
        self.pending.retain(|p, _| !p.starts_with(path));
        self.publish();
    }

    /// Queues every file that has been stable for the window.
    pub fn tick(&mut self) {
        let now = Instant::now();
        let mut ready = vec![];
        self.pending.retain(|path, (size, mtime, since)| {
            let Ok(meta) = std::fs::metadata(path) else {
                return false;
            };
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

/// Folders that are rescanned on a timer because the kernel will not watch them.
struct Rescan {
    roots: Vec<PathBuf>,
    every: Duration,
    last: Instant,
    known: HashMap<PathBuf, (u64, Option<SystemTime>)>,
    /// The first run only learns what is there (the crawl queues it).
    baseline_done: bool,
}

impl Rescan {
    /// New and changed files go to the settler; vanished ones are returned.
    fn run(&mut self, filter: &Filter, settler: &mut Settler, state: &State) -> Vec<PathBuf> {
        self.last = Instant::now();
        let mut now = HashMap::new();
        for root in &self.roots {
            crawl(
                root,
                filter,
                &mut |p, _| {
                    let m = std::fs::metadata(&p).ok();
                    now.insert(
                        p,
                        (
                            m.as_ref().map_or(0, |m| m.len()),
                            m.and_then(|m| m.modified().ok()),
                        ),
                    );
                },
                &mut |p| state.report(p),
            );
        }
        for (p, sig) in &now {
            if self.known.get(p) != Some(sig) && self.baseline_done {
                settler.touch(p.clone());
            }
        }
        self.baseline_done = true;
        // Missing from this crawl is not enough: a folder may be unreadable.
        let vanished = self
            .known
            .keys()
            .filter(|p| !now.contains_key(*p) && gone(p, &self.roots))
            .cloned()
            .collect();
        self.known = now;
        vanished
    }
}

pub struct WatchOptions {
    pub filter: Arc<Filter>,
    pub settle: Duration,
    pub rescan_every: Duration,
}

fn limit_warning(dir: &Path, e: &notify::Error) -> Option<String> {
    let limit = matches!(e.kind, notify::ErrorKind::MaxFilesWatch)
        || matches!(&e.kind, notify::ErrorKind::Io(io) if matches!(io.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EMFILE)));
    limit.then(|| {
        format!(
            "cannot watch {}: the inotify limit is reached ({e}); raise fs.inotify.max_user_watches \
             (or fs.inotify.max_user_instances) with sysctl. Rescanning it periodically instead.",
            dir.display()
        )
    })
}

/// For tests: `VX_SIMULATE_INOTIFY_LIMIT=1` makes every watch fail as if
/// the kernel's watch limit were reached (the error is simulated at this
/// boundary; nothing in the kernel changes).
fn simulated_limit() -> Option<notify::Error> {
    (std::env::var_os("VX_SIMULATE_INOTIFY_LIMIT").is_some_and(|v| v == "1"))
        .then(|| notify::Error::new(notify::ErrorKind::MaxFilesWatch))
}

/// Starts notify on every root (falling back to rescans) and a thread that
/// turns events into work.
pub fn start(
    opts: WatchOptions,
    state: Arc<State>,
    index: Arc<MediaIndex>,
) -> Option<RecommendedWatcher> {
    let filter = opts.filter.clone();
    let (tx, rx) = crossbeam_channel::unbounded();
    let config = notify::Config::default().with_follow_symlinks(false);
    let mut watcher = match RecommendedWatcher::new(
        move |ev| {
            let _ = tx.send(ev);
        },
        config,
    ) {
        Ok(w) => Some(w),
        Err(e) => {
            let w = limit_warning(Path::new("any folder"), &e).unwrap_or_else(|| {
                format!("cannot start watching ({e}); rescanning periodically instead")
            });
            state.lock().warn(w);
            None
        }
    };
    let mut rescan_roots = vec![];
    for root in &filter.roots {
        let res = match (&mut watcher, simulated_limit()) {
            (_, Some(e)) => Err(e),
            (Some(w), None) => w.watch(root, RecursiveMode::Recursive),
            (None, None) => Err(notify::Error::generic("no watcher")),
        };
        if let Err(e) = res {
            match limit_warning(root, &e) {
                Some(w) => state.lock().warn(w),
                None if watcher.is_some() => state.lock().warn(format!(
                    "cannot watch {}: {e}; rescanning periodically instead",
                    root.display()
                )),
                None => {}
            }
            rescan_roots.push(root.clone());
        }
    }
    let mut rescan = Rescan {
        roots: rescan_roots,
        every: opts.rescan_every,
        last: Instant::now(),
        known: HashMap::new(),
        baseline_done: false,
    };
    std::thread::Builder::new()
        .name("watch".into())
        .spawn(move || {
            let mut settler = Settler::new(state.clone(), opts.settle);
            let mut moved = MovedAway::default();
            if !rescan.roots.is_empty() {
                rescan.run(&filter, &mut settler, &state); // the baseline; the crawl queues these
            }
            let tick = Duration::from_millis(100);
            loop {
                match rx.recv_timeout(tick) {
                    Ok(Ok(ev)) => handle(ev, &filter, &mut settler, &mut moved, &state, &index),
                    Ok(Err(e)) => match limit_warning(Path::new("a new folder"), &e) {
                        Some(w) => {
                            state.lock().warn(w);
                            rescan.roots = filter.roots.clone();
                        }
                        None => tracing::warn!("watch error: {e}"),
                    },
                    Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected)
                        if rescan.roots.is_empty() =>
                    {
                        return;
                    }
                    Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                        std::thread::sleep(tick)
                    }
                }
                if !rescan.roots.is_empty() && rescan.last.elapsed() >= rescan.every {
                    for p in rescan.run(&filter, &mut settler, &state) {
                        remove_from_index(&p, &state, &index);
                    }
                }
                settler.tick();
                moved.expire(&state, &index);
            }
        })
        .expect("spawn watch thread");
    watcher
}

/// Forgets a path that went away — a file, or a folder with files below it.
fn remove_from_index(path: &Path, state: &State, index: &MediaIndex) {
    let mut known = state.forget_under(path);
    if known.as_slice() != [path] {
        // A folder, or a path vxd already forgot (moved away): its index
        // entries can only be found by listing them.
        known.extend(
            index
                .paths()
                .unwrap_or_default()
                .into_iter()
                .filter(|p| p.starts_with(path)),
        );
        known.sort();
        known.dedup();
    }
    if !known.is_empty() {
        if let Err(e) = index.remove_and_commit(&known) {
            tracing::error!("index commit failed: {e}");
        }
    }
}

/// A rename's "from" half arrives before its "to" half (inotify pairs them
/// by cookie). The old path's documents are kept this long, so that the new
/// path can reuse them by content; unpaired, the path is removed.
const MOVE_GRACE: Duration = Duration::from_secs(2);

/// Paths moved away whose index entries wait out [`MOVE_GRACE`].
#[derive(Default)]
struct MovedAway(HashMap<PathBuf, Instant>);

impl MovedAway {
    fn expire(&mut self, state: &State, index: &MediaIndex) {
        let now = Instant::now();
        let due: Vec<PathBuf> = self
            .0
            .iter()
            .filter(|(_, t)| now.duration_since(**t) >= MOVE_GRACE)
            .map(|(p, _)| p.clone())
            .collect();
        for p in due {
            self.0.remove(&p);
            // The new path may have reused (and removed) them already.
            if !p.exists() {
                remove_from_index(&p, state, index);
            }
        }
    }
}

fn handle(
    ev: notify::Event,
    filter: &Filter,
    settler: &mut Settler,
    moved: &mut MovedAway,
    state: &State,
    index: &MediaIndex,
) {
    let gone = |path: &Path, settler: &mut Settler| {
        settler.forget(path);
        remove_from_index(path, state, index);
    };
    // `whole`: the writer is done with it (closed after writing, or renamed
    // into place), so it need not settle.
    let appeared = |path: &Path, settler: &mut Settler, whole: bool| {
        // Never through a symlink: one to `/` would crawl the whole disk.
        let Ok(meta) = std::fs::symlink_metadata(path) else {
            return;
        };
        if meta.file_type().is_symlink() {
            tracing::debug!(path = %path.display(), "symlink not followed");
        } else if meta.is_dir() {
            // Files may land in a new folder before its watch exists.
            if filter.wants_dir(path) {
                let found = &mut |p, _| match whole {
                    true => settler.complete(p),
                    false => settler.touch(p),
                };
                crawl(path, filter, found, &mut |p| state.report(p));
            }
        } else if filter.wants_file(path) && whole {
            settler.complete(path.to_owned());
        } else if filter.wants_file(path) {
            settler.touch(path.to_owned());
        } else if path.to_str().is_none() && vx_media::kind_from_extension(path).is_some() {
            state.report(not_utf8(path));
        }
    };
    match ev.kind {
        EventKind::Remove(_) => ev.paths.iter().for_each(|p| gone(p, settler)),
        EventKind::Modify(ModifyKind::Name(RenameMode::From)) => {
            for p in &ev.paths {
                settler.forget(p);
                state.forget_under(p);
                moved.0.insert(p.clone(), Instant::now());
            }
        }
        EventKind::Modify(ModifyKind::Name(RenameMode::To)) => {
            ev.paths.iter().for_each(|p| appeared(p, settler, true))
        }
        EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {}
        EventKind::Create(_)
        | EventKind::Modify(_)
        | EventKind::Access(notify::event::AccessKind::Close(_)) => {
            let whole = matches!(
                ev.kind,
                EventKind::Access(notify::event::AccessKind::Close(
                    notify::event::AccessMode::Write
                ))
            );
            for p in &ev.paths {
                if p.exists() {
                    appeared(p, settler, whole)
                } else {
                    gone(p, settler)
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_partial_ignored_and_non_media_files_are_skipped() {
        let f = Filter::new(
            vec![PathBuf::from("/home/u/.media")],
            &["**/proxies/**".into(), "*.lrv.mp4".into()],
        )
        .unwrap();
        assert!(
            f.wants_file(Path::new("/home/u/.media/a/clip.mp4")),
            "a hidden root itself is fine"
        );
        assert!(!f.wants_file(Path::new("/home/u/.media/.cache/clip.mp4")));
        assert!(!f.wants_file(Path::new("/home/u/.media/clip.mp4.part")));
        assert!(!f.wants_file(Path::new("/home/u/.media/notes.txt")));
        assert!(f.wants_file(Path::new("/home/u/.media/Photo.JPG")));
        assert!(
            !f.wants_file(Path::new("/home/u/.media/a/proxies/b/clip.mp4")),
            "glob on the relative path"
        );
        assert!(
            !f.wants_file(Path::new("/home/u/.media/a/GX01.lrv.mp4")),
            "glob on the name"
        );
        assert!(
            !f.wants_file(Path::new("/elsewhere/clip.mp4")),
            "outside every root"
        );
    }

    #[test]
    fn non_utf8_names_are_failed_with_a_printable_name_by_the_crawl() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path()
                .join(std::ffi::OsStr::from_bytes(b"bad\xffname.mp4")),
            b"x",
        )
        .unwrap();
        std::fs::write(dir.path().join("good.mp4"), b"x").unwrap();
        let f = Filter::new(vec![dir.path().to_owned()], &[]).unwrap();
        let (mut found, mut problems) = (vec![], vec![]);
        crawl(dir.path(), &f, &mut |p, _| found.push(p), &mut |p| {
            problems.push(p)
        });
        assert_eq!(found, [dir.path().join("good.mp4")]);
        assert!(
            matches!(&problems[..], [Problem::File(p, why)]
                if p.to_str().is_some() && why.contains("not valid UTF-8")),
            "{problems:?}"
        );
    }
}
