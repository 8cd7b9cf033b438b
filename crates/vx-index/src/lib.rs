//! The tantivy index: one document per media file and one per segment (a time
//! range inside a file, with what a plugin found there), and beside it the
//! segments' sentence vectors ([`VectorStore`]).
//!
//! Every document carries the file's exact path in `path`, so an update is
//! `delete_term(path)` followed by adding the new documents, and a single
//! [`MediaIndex::commit`] makes both visible atomically. The file document also
//! stores a fingerprint, written in the same commit as the results, so after a
//! crash the index never claims results it does not hold.
//!
//! Files are also known by content (a BLAKE3 hash of the bytes) together with
//! the plugin set that produced their results: a renamed file, or a second
//! copy, gets the existing documents copied under its path
//! ([`MediaIndex::copy_file`]) instead of being extracted again.
//!
//! Modules: [`schema`] declares the fields, [`write`] adds and removes files,
//! [`read`] answers what is stored, [`search`] ranks hits (words, meaning, or
//! both), [`vectors`] keeps the vectors.

mod read;
mod schema;
mod search;
mod vectors;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tantivy::{Index, IndexReader, ReloadPolicy};
pub use vx_plugin_protocol::MediaInfo;
use vx_plugin_protocol::MediaKind;

pub use search::{Query, SEMANTIC_FLOOR, Semantic};
pub use vectors::{VectorStore, text_key};

use schema::Fields;

/// Memory budget of the single index writer.
const WRITER_HEAP_BYTES: usize = 50_000_000;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("index at {dir}: {source}")]
    Open {
        dir: PathBuf,
        source: tantivy::TantivyError,
    },
    #[error("index: {0}")]
    Tantivy(#[from] tantivy::TantivyError),
    #[error("index directory: {0}")]
    Dir(#[from] tantivy::directory::error::OpenDirectoryError),
}

/// What the index keeps about one file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileRecord {
    pub path: PathBuf,
    pub kind: MediaKind,
    pub info: MediaInfo,
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub mtime: i64,
    /// Changes whenever the file or the plugin set changes; see [`MediaIndex::fingerprint`].
    pub fingerprint: String,
    /// (plugin, reason) for each plugin that failed on this file. Stored with
    /// the fingerprint, so a failed file is not retried until it changes.
    pub failures: Vec<(String, String)>,
    /// BLAKE3 of the file's bytes, hex.
    pub content: String,
    /// The plugins (name@version) whose results the documents hold.
    pub plugin_set: String,
}

/// A failure recorded in the index: (path, plugin, reason).
pub type Failure = (PathBuf, String, String);

/// Labels that say only which plugin ran, not what is in the picture.
const GENERIC_LABELS: [&str; 4] = ["scene", "speech", "text", "keyframe"];

/// The words a segment's vector stands for: what was said or read there,
/// else what was seen ("person, bus"). `None` when there is nothing to embed.
pub fn embed_text(text: &str, labels: &[String]) -> Option<String> {
    let text = text.trim();
    if !text.is_empty() {
        // The model reads 128 tokens at most; a few hundred words suffice.
        let end = text.char_indices().nth(1000).map_or(text.len(), |(i, _)| i);
        return Some(text[..end].to_owned());
    }
    let mut seen: Vec<&str> = vec![];
    for l in labels {
        if !GENERIC_LABELS.contains(&l.as_str()) && !seen.contains(&l.as_str()) {
            seen.push(l);
        }
    }
    (!seen.is_empty()).then(|| seen.join(", "))
}

pub struct MediaIndex {
    index: Index,
    writer: Mutex<write::Writer>,
    reader: IndexReader,
    f: Fields,
    /// Thumbnails whose documents were deleted since the last commit; after
    /// it, those no document refers to any more are removed...
    orphans: Mutex<Vec<String>>,
    /// ...if they lie in this folder.
    artefact_dir: Mutex<Option<PathBuf>>,
}

impl MediaIndex {
    /// Opens the index in `dir`, creating it when the directory is empty. An
    /// index of an older schema is moved aside to `dir.old` and a new one is
    /// started: its files are indexed again.
    pub fn open(dir: &Path) -> Result<Self, IndexError> {
        let (schema, f) = schema::build();
        let open_err = |e: std::io::Error| IndexError::Open {
            dir: dir.to_owned(),
            source: tantivy::TantivyError::IoError(e.into()),
        };
        std::fs::create_dir_all(dir).map_err(open_err)?;
        let mmap = tantivy::directory::MmapDirectory::open(dir)?;
        let index = match Index::open_or_create(mmap, schema.clone()) {
            Ok(index) => index,
            Err(tantivy::TantivyError::SchemaError(why)) => {
                let old = dir.with_extension("old");
                tracing::warn!(
                    "index schema changed ({why}): moving the old index to {} and indexing again",
                    old.display()
                );
                let _ = std::fs::remove_dir_all(&old);
                std::fs::rename(dir, &old).map_err(open_err)?;
                std::fs::create_dir_all(dir).map_err(open_err)?;
                let mmap = tantivy::directory::MmapDirectory::open(dir)?;
                Index::open_or_create(mmap, schema).map_err(|source| IndexError::Open {
                    dir: dir.to_owned(),
                    source,
                })?
            }
            Err(source) => {
                return Err(IndexError::Open {
                    dir: dir.to_owned(),
                    source,
                });
            }
        };
        Self::with_index(index, f)
    }

    /// An index in any tantivy directory (tests use one that fails its
    /// writes on demand).
    pub fn in_directory(dir: Box<dyn tantivy::directory::Directory>) -> Result<Self, IndexError> {
        let (schema, f) = schema::build();
        let index = Index::open_or_create(dir, schema)?;
        Self::with_index(index, f)
    }

    /// An index that lives only in memory, for tests.
    pub fn in_ram() -> Result<Self, IndexError> {
        let (schema, f) = schema::build();
        Self::with_index(Index::create_in_ram(schema), f)
    }

    fn with_index(index: Index, f: Fields) -> Result<Self, IndexError> {
        let writer = index.writer_with_num_threads(1, WRITER_HEAP_BYTES)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(Self {
            index,
            writer: Mutex::new(write::Writer::new(writer)),
            reader,
            f,
            orphans: Mutex::default(),
            artefact_dir: Mutex::default(),
        })
    }

    /// Thumbnails in `dir` are removed with the last document showing them.
    pub fn set_artefact_dir(&self, dir: &Path) {
        *self.artefact_dir.lock().unwrap_or_else(|e| e.into_inner()) = Some(dir.to_owned());
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, write::Writer> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use vx_ctl_protocol::{Hit, SearchFilters, SearchMode, SearchRequest};
    use vx_plugin_protocol::SegmentResult;

    use super::*;

    fn video(path: &str) -> FileRecord {
        FileRecord {
            path: PathBuf::from(path),
            kind: MediaKind::Video,
            info: MediaInfo {
                container: "mov,mp4,m4a,3gp,3g2,mj2".into(),
                duration_s: Some(10.0),
                video_codec: Some("h264".into()),
                audio_codec: Some("aac".into()),
                width: Some(1280),
                height: Some(720),
                created: None,
            },
            size: 12345,
            mtime: 1_700_000_000,
            fingerprint: "fp-1".into(),
            failures: vec![],
            content: format!("content-of-{path}"),
            plugin_set: "keyframes@1".into(),
        }
    }

    fn scene(start: f64, end: f64) -> SegmentResult {
        SegmentResult {
            start_s: start,
            end_s: end,
            labels: vec!["scene".into()],
            phash: Some(42),
            ..Default::default()
        }
    }

    /// Words only, every moment.
    fn find(
        idx: &MediaIndex,
        text: &str,
        filters: &SearchFilters,
        limit: usize,
    ) -> Result<Vec<Hit>, IndexError> {
        let q = Query {
            text,
            filters,
            mode: SearchMode::Text,
            limit,
            per_file: false,
            moments_per_file: 3,
        };
        idx.search(&q, None)
    }

    fn none() -> SearchFilters {
        SearchFilters::default()
    }

    fn found(start: f64, end: f64, labels: &[&str], faces: u32, text: &str) -> SegmentResult {
        SegmentResult {
            start_s: start,
            end_s: end,
            labels: labels.iter().map(|l| l.to_string()).collect(),
            faces,
            text: text.into(),
            ..Default::default()
        }
    }

    #[test]
    fn filters_narrow_hits_by_label_faces_text_and_kind() {
        let idx = MediaIndex::in_ram().unwrap();
        let bus = found(2.0, 4.5, &["bus"], 0, "");
        let people = found(5.0, 8.0, &["person", "dining table"], 0, "");
        let faces = found(5.0, 7.0, &["face"], 2, "");
        let slide = found(8.0, 12.0, &["text"], 0, "Q3 roadmap: ship search by June");
        idx.put_file(
            &video("/m/street.mp4"),
            &[
                ("objects", &bus),
                ("objects", &people),
                ("faces", &faces),
                ("ocr", &slide),
            ],
        )
        .unwrap();
        let mut photo = video("/m/photo.jpg");
        photo.kind = MediaKind::Image;
        idx.put_file(&photo, &[("objects", &found(0.0, 0.0, &["bus"], 0, ""))])
            .unwrap();
        idx.commit().unwrap();

        let only = |labels: &[&str], has: &[&str], kind: Option<&str>| SearchFilters {
            labels: labels.iter().map(|s| s.to_string()).collect(),
            has: has.iter().map(|s| s.to_string()).collect(),
            kind: kind.map(str::to_owned),
            ..Default::default()
        };
        // The moment with the bus, and the file as a whole (its labels).
        // The moment with the bus; the file's own document also holds the
        // label, but its moments already stand for it.
        let hits = find(&idx, "bus", &only(&[], &[], Some("video")), 10).unwrap();
        let moments: Vec<_> = hits.iter().map(|h| (h.start_s, h.end_s)).collect();
        assert_eq!(moments, [(Some(2.0), Some(4.5))]);
        assert_eq!(find(&idx, "bus", &none(), 10).unwrap().len(), 2);
        assert_eq!(
            find(&idx, "bus", &only(&[], &[], Some("image")), 10)
                .unwrap()
                .len(),
            1
        );
        // A file hit on its name stays.
        assert_eq!(find(&idx, "street", &none(), 10).unwrap().len(), 1);

        let faced = find(&idx, "", &only(&[], &["faces"], None), 10).unwrap();
        assert_eq!(faced.len(), 1, "{faced:?}");
        assert_eq!((faced[0].faces, faced[0].start_s), (2, Some(5.0)));

        let tables = find(&idx, "", &only(&["Dining Table"], &[], None), 10).unwrap();
        assert_eq!(tables.len(), 1);
        assert!(
            find(&idx, "", &only(&["table"], &[], None), 10)
                .unwrap()
                .is_empty()
        );

        let slides = find(&idx, "roadmap", &only(&[], &["text"], None), 10).unwrap();
        assert_eq!(slides.len(), 1);
        let h = &slides[0];
        assert_eq!((h.start_s, h.end_s), (Some(8.0), Some(12.0)));
        assert_eq!(h.plugin.as_deref(), Some("ocr"));
        let [a, b] = h.highlights[0];
        assert_eq!(&h.snippet[a as usize..b as usize], "roadmap", "{h:?}");
    }

    fn said(start: f64, end: f64, text: &str) -> SegmentResult {
        found(start, end, &["speech"], 0, text)
    }

    fn ask(text: &str, mode: SearchMode, filters: &SearchFilters) -> SearchRequest {
        SearchRequest {
            query: text.into(),
            limit: 10,
            filters: filters.clone(),
            mode,
            per_file: false,
            moments_per_file: 3,
        }
    }

    /// A store whose vectors stand in for MiniLM's: `meaning` maps each
    /// text to a direction of a small space.
    fn store_for(dir: &Path, idx: &MediaIndex, meaning: &dyn Fn(&str) -> Vec<f32>) -> VectorStore {
        let mut store = VectorStore::open(&dir.join("v"), "test", 4).unwrap();
        let (_, backlog) = idx.missing_embeddings(|k| store.contains(k), 1000).unwrap();
        let items: Vec<_> = backlog.iter().map(|(k, t)| (*k, meaning(t))).collect();
        store.insert(&items).unwrap();
        store
    }

    #[test]
    fn hybrid_finds_by_meaning_keeps_exact_phrases_first_and_has_a_floor() {
        let idx = MediaIndex::in_ram().unwrap();
        let sea = said(10.0, 14.0, "the sea was rough that morning");
        let waves_words = said(20.0, 24.0, "we talked about ocean waves and tides");
        let tax = said(30.0, 34.0, "the tax deadline is friday");
        idx.put_file(&video("/m/trip.mp4"), &[("speech", &sea), ("speech", &tax)])
            .unwrap();
        idx.put_file(&video("/m/talk.mp4"), &[("speech", &waves_words)])
            .unwrap();
        idx.commit().unwrap();
        // Directions: sea-ish, tax-ish, and one nothing is near.
        let meaning = |t: &str| -> Vec<f32> {
            if t.contains("sea") || t.contains("ocean") {
                vec![1.0, 0.1, 0.0, 0.0]
            } else if t.contains("tax") {
                vec![0.0, 1.0, 0.0, 0.0]
            } else {
                vec![0.0, 0.0, 0.0, 1.0]
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let store = store_for(dir.path(), &idx, &meaning);
        assert_eq!(store.len(), 3);
        let run = |text: &str, mode| {
            let req = ask(text, mode, &none());
            let q = meaning(text);
            idx.search(
                &Query::from_request(&req),
                Some(Semantic {
                    vectors: &store,
                    query: &q,
                }),
            )
            .unwrap()
        };
        // No word of "ocean waves" is in the first transcript; its meaning is.
        let by_meaning = run("ocean waves", SearchMode::Semantic);
        let starts: Vec<_> = by_meaning.iter().map(|h| h.start_s).collect();
        assert_eq!(starts.len(), 2, "{by_meaning:?}");
        assert!(starts.contains(&Some(10.0)) && starts.contains(&Some(20.0)));
        assert!(
            by_meaning
                .iter()
                .all(|h| h.similarity.unwrap() > SEMANTIC_FLOOR)
        );
        let by_words = run("ocean waves", SearchMode::Text);
        assert_eq!(by_words.len(), 1);
        // Hybrid: both, the one that matches both ways first.
        let both = run("ocean waves", SearchMode::Hybrid);
        assert_eq!(both.len(), 2);
        assert_eq!(both[0].start_s, Some(20.0));
        // A quoted phrase ranks its exact match first, whatever the meaning says.
        let quoted = run("\"sea was rough\"", SearchMode::Hybrid);
        assert_eq!(quoted[0].start_s, Some(10.0), "{quoted:?}");
        // Nothing near, no words: nothing at all, not the least bad.
        assert!(run("quantum chromodynamics", SearchMode::Hybrid).is_empty());
        assert!(run("quantum chromodynamics", SearchMode::Semantic).is_empty());

        // A deleted file's moments are gone, even though its vectors stay
        // until compaction.
        idx.remove_file(Path::new("/m/talk.mp4")).unwrap();
        idx.commit().unwrap();
        let after = run("ocean waves", SearchMode::Hybrid);
        assert!(
            after.iter().all(|h| h.path == Path::new("/m/trip.mp4")),
            "{after:?}"
        );
        let live = idx.live_embed_keys().unwrap();
        assert_eq!(live.len(), 2);
    }

    #[test]
    fn filters_by_path_time_and_duration_and_groups_by_file() {
        let idx = MediaIndex::in_ram().unwrap();
        let mut a = video("/lib/2023/a.mp4");
        a.info.created = Some(1_690_000_000); // July 2023, from metadata
        a.info.duration_s = Some(30.0);
        let mut b = video("/lib/2024/b.mp4");
        b.mtime = 1_720_000_000; // July 2024
        b.info.duration_s = Some(600.0);
        let mut c = video("/lib/2024-old/c.jpg");
        c.kind = MediaKind::Image;
        c.info.duration_s = None;
        let bus = |t| found(t, t + 1.0, &["bus"], 0, "");
        idx.put_file(&a, &[("objects", &bus(1.0)), ("objects", &bus(5.0))])
            .unwrap();
        idx.put_file(
            &b,
            &[
                ("objects", &bus(2.0)),
                ("objects", &bus(8.0)),
                ("objects", &bus(9.0)),
            ],
        )
        .unwrap();
        idx.put_file(&c, &[("objects", &bus(0.0))]).unwrap();
        idx.commit().unwrap();
        let paths = |f: SearchFilters| -> BTreeSet<String> {
            find(&idx, "bus", &f, 50)
                .unwrap()
                .iter()
                .map(|h| h.path.to_string_lossy().into_owned())
                .collect()
        };
        let set = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        let under = |p: &str| SearchFilters {
            path_prefix: Some(p.into()),
            ..none()
        };
        assert_eq!(paths(under("/lib/2024/")), set(&["/lib/2024/b.mp4"]));
        assert_eq!(
            paths(under("/lib/2024")),
            set(&["/lib/2024/b.mp4", "/lib/2024-old/c.jpg"])
        );
        assert_eq!(paths(under("/elsewhere")), set(&[]));
        let between = |after, before| SearchFilters {
            after,
            before,
            ..none()
        };
        assert_eq!(
            paths(between(Some(1_680_000_000), Some(1_700_000_000))),
            set(&["/lib/2023/a.mp4"])
        );
        assert_eq!(
            paths(between(Some(1_700_000_000), None)),
            set(&["/lib/2024/b.mp4", "/lib/2024-old/c.jpg"])
        );
        let lasting = |min, max| SearchFilters {
            min_duration_s: min,
            max_duration_s: max,
            ..none()
        };
        assert_eq!(paths(lasting(Some(60.0), None)), set(&["/lib/2024/b.mp4"]));
        assert_eq!(paths(lasting(None, Some(60.0))), set(&["/lib/2023/a.mp4"]));

        // Grouped: one entry per file, at most two moments each.
        let mut req = ask("bus", SearchMode::Text, &none());
        req.per_file = true;
        req.moments_per_file = 2;
        req.limit = 2;
        let hits = idx.search(&Query::from_request(&req), None).unwrap();
        let files: Vec<_> = hits.iter().map(|h| h.path.clone()).collect();
        let mut distinct = files.clone();
        distinct.dedup();
        assert_eq!(
            distinct.len(),
            2,
            "two files, each once, in a run: {files:?}"
        );
        assert!(hits.len() <= 4 && hits.len() >= 3, "{hits:?}");
    }

    /// A directory whose writes fail while `full` is set, like a full disk.
    #[derive(Clone, Debug)]
    struct FullDisk {
        inner: tantivy::directory::RamDirectory,
        full: std::sync::Arc<std::sync::atomic::AtomicBool>,
    }

    impl FullDisk {
        fn check(&self, path: &Path) -> std::io::Result<()> {
            match self.full.load(std::sync::atomic::Ordering::SeqCst) {
                true => Err(std::io::Error::new(
                    std::io::ErrorKind::StorageFull,
                    format!("no space left for {}", path.display()),
                )),
                false => Ok(()),
            }
        }
    }

    impl tantivy::directory::Directory for FullDisk {
        fn get_file_handle(
            &self,
            path: &Path,
        ) -> Result<
            std::sync::Arc<dyn tantivy::directory::FileHandle>,
            tantivy::directory::error::OpenReadError,
        > {
            self.inner.get_file_handle(path)
        }
        fn delete(&self, path: &Path) -> Result<(), tantivy::directory::error::DeleteError> {
            self.inner.delete(path)
        }
        fn exists(&self, path: &Path) -> Result<bool, tantivy::directory::error::OpenReadError> {
            self.inner.exists(path)
        }
        fn open_write(
            &self,
            path: &Path,
        ) -> Result<tantivy::directory::WritePtr, tantivy::directory::error::OpenWriteError>
        {
            self.check(path).map_err(|e| {
                tantivy::directory::error::OpenWriteError::wrap_io_error(e, path.to_owned())
            })?;
            self.inner.open_write(path)
        }
        fn atomic_read(
            &self,
            path: &Path,
        ) -> Result<Vec<u8>, tantivy::directory::error::OpenReadError> {
            self.inner.atomic_read(path)
        }
        fn atomic_write(&self, path: &Path, data: &[u8]) -> std::io::Result<()> {
            self.check(path)?;
            self.inner.atomic_write(path, data)
        }
        fn sync_directory(&self) -> std::io::Result<()> {
            self.inner.sync_directory()
        }
        fn watch(
            &self,
            cb: tantivy::directory::WatchCallback,
        ) -> tantivy::Result<tantivy::directory::WatchHandle> {
            self.inner.watch(cb)
        }
    }

    /// After a commit fails (a full disk), the index still takes new files:
    /// in tantivy a failed commit can leave the writer unable to add
    /// documents, which would then be dropped while their files count as
    /// indexed.
    #[test]
    fn a_failed_commit_leaves_the_index_writable() {
        let disk = FullDisk {
            inner: tantivy::directory::RamDirectory::create(),
            full: Default::default(),
        };
        let idx = MediaIndex::in_directory(Box::new(disk.clone())).unwrap();
        idx.put_file(&video("/m/one.mp4"), &[("keyframes", &scene(0.0, 1.0))])
            .unwrap();
        idx.commit().unwrap();
        disk.full.store(true, std::sync::atomic::Ordering::SeqCst);
        idx.put_file(&video("/m/two.mp4"), &[("keyframes", &scene(0.0, 1.0))])
            .unwrap();
        assert!(idx.commit().is_err(), "the disk is full");
        // tantivy's indexing thread dies when it cannot open its segment
        // files, so an add after that fails before any commit is tried.
        idx.put_file(&video("/m/three.mp4"), &[("keyframes", &scene(0.0, 1.0))])
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(100));
        let four = idx.put_and_commit(
            &video("/m/four.mp4"),
            &[("keyframes", &scene(0.0, 1.0))],
            &[],
        );
        assert!(four.is_err(), "the disk is full");
        disk.full.store(false, std::sync::atomic::Ordering::SeqCst);
        for i in 0..3 {
            let path = format!("/m/after-{i}.mp4");
            idx.put_file(&video(&path), &[("keyframes", &scene(0.0, 1.0))])
                .unwrap();
            idx.commit().unwrap();
            assert_eq!(
                idx.doc_count(Path::new(&path)).unwrap(),
                2,
                "{path} indexed"
            );
        }
        assert_eq!(idx.doc_count(Path::new("/m/one.mp4")).unwrap(), 2);
    }

    /// What was changed while the disk was full is committed once it is not,
    /// without being made again by the caller: a failed write rolls back
    /// other threads' changes too, and they must not be lost.
    #[test]
    fn changes_a_failed_write_rolled_back_are_made_again() {
        let disk = FullDisk {
            inner: tantivy::directory::RamDirectory::create(),
            full: Default::default(),
        };
        let idx = MediaIndex::in_directory(Box::new(disk.clone())).unwrap();
        idx.put_and_commit(
            &video("/m/gone.mp4"),
            &[("keyframes", &scene(0.0, 1.0))],
            &[],
        )
        .unwrap();
        disk.full.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = idx.put_file(&video("/m/a.mp4"), &[("keyframes", &scene(0.0, 1.0))]);
        std::thread::sleep(std::time::Duration::from_millis(100));
        // Another thread's write fails, and takes a.mp4's change down with it.
        let b = idx.put_and_commit(&video("/m/b.mp4"), &[("keyframes", &scene(0.0, 1.0))], &[]);
        assert!(b.is_err(), "the disk is full");
        assert!(
            idx.remove_and_commit(&[PathBuf::from("/m/gone.mp4")])
                .is_err()
        );
        assert!(idx.has_pending());
        disk.full.store(false, std::sync::atomic::Ordering::SeqCst);
        idx.commit().unwrap();
        assert!(!idx.has_pending());
        assert_eq!(idx.doc_count(Path::new("/m/a.mp4")).unwrap(), 2);
        assert_eq!(idx.doc_count(Path::new("/m/b.mp4")).unwrap(), 2);
        assert_eq!(idx.doc_count(Path::new("/m/gone.mp4")).unwrap(), 0);
    }

    /// Highlights point at the matched words after line breaks are shown
    /// as " / " (found by review: they were two bytes off per line).
    #[test]
    fn highlights_survive_multi_line_text() {
        let idx = MediaIndex::in_ram().unwrap();
        let slide = found(0.0, 5.0, &["text"], 0, "Agenda\nBudget review\nQ3 roadmap");
        idx.put_file(&video("/m/slides.mp4"), &[("ocr", &slide)])
            .unwrap();
        idx.commit().unwrap();
        let hits = find(&idx, "roadmap", &none(), 10).unwrap();
        let h = &hits[0];
        let [a, b] = h.highlights[0];
        assert_eq!(&h.snippet[a as usize..b as usize], "roadmap", "{h:?}");
    }

    #[test]
    fn transcripts_are_found_at_their_moment_with_speaker_and_counted_per_file() {
        let idx = MediaIndex::in_ram().unwrap();
        let said = |start, end, text: &str, who: &str| SegmentResult {
            speaker: Some(who.into()),
            language: Some("en".into()),
            ..found(start, end, &["speech"], 0, text)
        };
        let segs = [
            said(
                5.0,
                8.0,
                "The budget meeting moved to Thursday.",
                "speaker 1",
            ),
            said(
                9.0,
                12.0,
                "Thanks, the tax deadline is Friday.",
                "speaker 2",
            ),
        ];
        let path = Path::new("/m/call.mp4");
        idx.put_file(
            &video("/m/call.mp4"),
            &[("speech", &segs[0]), ("speech", &segs[1])],
        )
        .unwrap();
        idx.commit().unwrap();

        let hits = find(&idx, "\"tax deadline\"", &none(), 10).unwrap();
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!((hits[0].start_s, hits[0].end_s), (Some(9.0), Some(12.0)));
        assert_eq!(hits[0].speaker.as_deref(), Some("speaker 2"));
        // Words spread over two moments still find the file, by its transcript.
        let whole = find(&idx, "budget friday", &none(), 10).unwrap();
        assert_eq!(whole.len(), 1);
        assert_eq!((whole[0].start_s, whole[0].plugin.as_deref()), (None, None));

        let speech = SearchFilters {
            has: vec!["speech".into()],
            ..none()
        };
        assert_eq!(find(&idx, "", &speech, 10).unwrap().len(), 2);
        let info = idx.file_info(path).unwrap().unwrap();
        assert_eq!(info.speakers, 2);
        let chars = segs
            .iter()
            .map(|s| s.text.chars().count() as u64)
            .sum::<u64>();
        assert_eq!(info.transcript_chars, chars);
    }

    #[test]
    fn file_and_segments_round_trip_through_search() {
        let idx = MediaIndex::in_ram().unwrap();
        let segs = [scene(0.0, 2.5), scene(2.5, 10.0)];
        idx.put_file(
            &video("/media/holiday/beach_walk.mp4"),
            &[("keyframes", &segs[0]), ("keyframes", &segs[1])],
        )
        .unwrap();
        idx.commit().unwrap();

        let hits = find(&idx, "beach", &none(), 10).unwrap();
        assert_eq!(hits.len(), 1);
        let h = &hits[0];
        assert_eq!(h.path, Path::new("/media/holiday/beach_walk.mp4"));
        assert_eq!(h.kind, "video");
        assert_eq!((h.start_s, h.end_s), (None, None));
        assert!(h.fields.contains(&"name".to_string()), "{:?}", h.fields);
        assert!(h.snippet.contains("1280x720"), "{}", h.snippet);

        let hits = find(&idx, "h264", &none(), 10).unwrap();
        assert_eq!(hits[0].fields, ["codec"]);

        let mut scenes = find(&idx, "scene", &none(), 10).unwrap();
        scenes.sort_by(|a, b| a.start_s.partial_cmp(&b.start_s).unwrap());
        let ranges: Vec<_> = scenes.iter().map(|h| (h.start_s, h.end_s)).collect();
        assert_eq!(ranges, [(Some(0.0), Some(2.5)), (Some(2.5), Some(10.0))]);
        assert_eq!(
            idx.fingerprint(Path::new("/media/holiday/beach_walk.mp4"))
                .unwrap()
                .as_deref(),
            Some("fp-1")
        );
    }

    #[test]
    fn put_replaces_old_documents_and_remove_deletes_them() {
        let idx = MediaIndex::in_ram().unwrap();
        let p = Path::new("/m/a.mp4");
        let s = scene(0.0, 1.0);
        idx.put_file(&video("/m/a.mp4"), &[("keyframes", &s), ("keyframes", &s)])
            .unwrap();
        idx.commit().unwrap();
        assert_eq!(idx.doc_count(p).unwrap(), 3);

        let mut changed = video("/m/a.mp4");
        changed.fingerprint = "fp-2".into();
        idx.put_file(&changed, &[("keyframes", &s)]).unwrap();
        idx.commit().unwrap();
        assert_eq!(idx.doc_count(p).unwrap(), 2);
        assert_eq!(idx.fingerprint(p).unwrap().as_deref(), Some("fp-2"));

        idx.remove_file(p).unwrap();
        idx.commit().unwrap();
        assert_eq!(idx.doc_count(p).unwrap(), 0);
        assert!(find(&idx, "a", &none(), 10).unwrap().is_empty());
    }

    #[test]
    fn all_query_words_must_match_and_bad_syntax_does_not_error() {
        let idx = MediaIndex::in_ram().unwrap();
        idx.put_file(&video("/m/red_car.mp4"), &[]).unwrap();
        idx.put_file(&video("/m/red_boat.mp4"), &[]).unwrap();
        idx.commit().unwrap();
        assert_eq!(find(&idx, "red", &none(), 10).unwrap().len(), 2);
        assert_eq!(find(&idx, "red car", &none(), 10).unwrap().len(), 1);
        assert!(find(&idx, "car AND (", &none(), 10).is_ok());
    }

    #[test]
    fn failures_are_stored_with_the_file_and_replaced_with_it() {
        let idx = MediaIndex::in_ram().unwrap();
        let mut bad = video("/m/bad.mp4");
        bad.failures = vec![
            ("faces".into(), "killed by SIGSEGV".into()),
            ("ocr".into(), "deadline 3.0 s exceeded".into()),
        ];
        idx.put_file(&bad, &[]).unwrap();
        idx.put_file(&video("/m/good.mp4"), &[]).unwrap();
        idx.commit().unwrap();
        let mut f = idx.failures().unwrap();
        f.sort();
        assert_eq!(
            f,
            [
                (
                    PathBuf::from("/m/bad.mp4"),
                    "faces".into(),
                    "killed by SIGSEGV".into()
                ),
                (
                    PathBuf::from("/m/bad.mp4"),
                    "ocr".into(),
                    "deadline 3.0 s exceeded".into()
                ),
            ]
        );
        assert_eq!(idx.failures_of(Path::new("/m/bad.mp4")).unwrap().len(), 2);
        assert!(
            idx.failures_of(Path::new("/m/good.mp4"))
                .unwrap()
                .is_empty()
        );
        idx.put_file(&video("/m/bad.mp4"), &[]).unwrap();
        idx.commit().unwrap();
        assert!(idx.failures().unwrap().is_empty());
    }

    #[test]
    fn copying_by_content_gives_the_new_path_every_result() {
        let idx = MediaIndex::in_ram().unwrap();
        let s = scene(1.0, 2.0);
        let mut orig = video("/m/orig.mp4");
        orig.failures = vec![("ocr".into(), "deadline 3.0 s exceeded".into())];
        idx.put_file(&orig, &[("keyframes", &s)]).unwrap();
        idx.commit().unwrap();
        let content = orig.content.clone();
        assert_eq!(
            idx.find_content(&content, "keyframes@1", Path::new("/x"))
                .unwrap(),
            Some(PathBuf::from("/m/orig.mp4"))
        );
        assert_eq!(
            idx.find_content(&content, "keyframes@2", Path::new("/x"))
                .unwrap(),
            None,
            "other plugin versions"
        );
        assert_eq!(
            idx.find_content(&content, "keyframes@1", Path::new("/m/orig.mp4"))
                .unwrap(),
            None
        );

        let copy = FileRecord {
            path: PathBuf::from("/m/renamed clip.mp4"),
            fingerprint: "fp-copy".into(),
            size: 999,
            ..orig.clone()
        };
        assert_eq!(idx.copy_file(Path::new("/m/orig.mp4"), &copy).unwrap(), 2);
        idx.commit().unwrap();
        let hits = find(&idx, "renamed", &none(), 10).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].path, Path::new("/m/renamed clip.mp4"));
        let scenes = find(&idx, "scene", &none(), 10).unwrap();
        let mut paths: Vec<_> = scenes.iter().map(|h| h.path.clone()).collect();
        paths.sort();
        // The copy keeps its filter terms too (found by review: they are not
        // stored, so a copy made from stored fields lost them).
        let scene_label = SearchFilters {
            labels: vec!["scene".into()],
            ..none()
        };
        let filtered: BTreeSet<_> = find(&idx, "", &scene_label, 10)
            .unwrap()
            .into_iter()
            .map(|h| h.path)
            .collect();
        assert!(
            filtered.contains(Path::new("/m/renamed clip.mp4")),
            "{filtered:?}"
        );
        assert_eq!(
            paths,
            [
                PathBuf::from("/m/orig.mp4"),
                PathBuf::from("/m/renamed clip.mp4")
            ]
        );
        assert_eq!(
            idx.fingerprint(Path::new("/m/renamed clip.mp4"))
                .unwrap()
                .as_deref(),
            Some("fp-copy")
        );
        assert_eq!(
            idx.failures().unwrap().len(),
            2,
            "the failure travels with the content"
        );
        let mut all = idx.paths().unwrap();
        all.sort();
        assert_eq!(
            all,
            [
                PathBuf::from("/m/orig.mp4"),
                PathBuf::from("/m/renamed clip.mp4")
            ]
        );
    }

    #[test]
    fn file_info_reports_metadata_and_segments_per_plugin() {
        let idx = MediaIndex::in_ram().unwrap();
        let s = scene(0.0, 1.0);
        let mut rec = video("/m/info.mp4");
        rec.plugin_set = "keyframes@1,ocr@2".into();
        idx.put_file(&rec, &[("keyframes", &s), ("keyframes", &s)])
            .unwrap();
        idx.commit().unwrap();
        let info = idx.file_info(Path::new("/m/info.mp4")).unwrap().unwrap();
        assert_eq!(info.kind, "video");
        assert_eq!(info.codecs, ["h264", "aac"]);
        assert_eq!(info.resolution.as_deref(), Some("1280x720"));
        assert_eq!(
            info.segments,
            [("keyframes".to_string(), 2), ("ocr".to_string(), 0)]
        );
        assert!(info.indexed_at > 1_700_000_000);
        assert!(idx.file_info(Path::new("/m/other.mp4")).unwrap().is_none());
    }

    #[test]
    fn a_partial_update_keeps_the_other_plugins_segments() {
        let idx = MediaIndex::in_ram().unwrap();
        let kf = scene(0.0, 1.0);
        let old = SegmentResult {
            labels: vec!["oldlabel".into()],
            ..Default::default()
        };
        let mut rec = video("/m/p.mp4");
        rec.plugin_set = "keyframes@1,objects@1".into();
        idx.put_file(&rec, &[("keyframes", &kf), ("objects", &old)])
            .unwrap();
        idx.commit().unwrap();
        let new = SegmentResult {
            labels: vec!["newlabel".into()],
            ..Default::default()
        };
        rec.plugin_set = "keyframes@1,objects@2".into();
        idx.put_file_keeping(&rec, &[("objects", &new)], &["keyframes"])
            .unwrap();
        idx.commit().unwrap();
        assert_eq!(
            find(&idx, "scene", &none(), 10).unwrap().len(),
            1,
            "keyframes kept"
        );
        assert!(
            find(&idx, "oldlabel", &none(), 10).unwrap().is_empty(),
            "old objects gone"
        );
        assert_eq!(find(&idx, "newlabel", &none(), 10).unwrap().len(), 1);
        assert_eq!(
            idx.stored(Path::new("/m/p.mp4")).unwrap().unwrap().1,
            "keyframes@1,objects@2"
        );
        assert_eq!(idx.doc_count(Path::new("/m/p.mp4")).unwrap(), 3);
    }

    #[test]
    fn index_on_disk_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let idx = MediaIndex::open(dir.path()).unwrap();
            idx.put_file(&video("/m/kept.mp4"), &[]).unwrap();
            idx.commit().unwrap();
        }
        let idx = MediaIndex::open(dir.path()).unwrap();
        assert_eq!(find(&idx, "kept", &none(), 10).unwrap().len(), 1);
    }
}
