//! The tantivy index: one document per media file and one per segment (a time
//! range inside a file, with what a plugin found there).
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

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tantivy::collector::{Count, TopDocs};
use tantivy::query::{AllQuery, BooleanQuery, Occur, Query, QueryParser, TermQuery};
use tantivy::schema::{
    FAST, Field, IndexRecordOption, STORED, STRING, Schema, SchemaBuilder, TEXT, TantivyDocument,
    Value,
};
use tantivy::snippet::SnippetGenerator;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, Term, doc};
use vx_ctl_protocol::{Hit, IndexedFile, SearchFilters};
use vx_plugin_protocol::{MediaKind, SegmentResult};

/// The file document's copy of all its segments' words stops here.
const MAX_FILE_TEXT_BYTES: usize = 1 << 20;

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
    pub container: String,
    pub duration_s: Option<f64>,
    pub video_codec: Option<String>,
    pub audio_codec: Option<String>,
    pub width: Option<u32>,
    pub height: Option<u32>,
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

#[derive(Clone, Copy)]
struct Fields {
    path: Field,
    doc_type: Field,
    name: Field,
    path_text: Field,
    kind: Field,
    container: Field,
    codec: Field,
    resolution: Field,
    duration_s: Field,
    size: Field,
    mtime: Field,
    fingerprint: Field,
    plugin: Field,
    start_s: Field,
    end_s: Field,
    labels: Field,
    /// Each label as one exact term, for filters.
    label: Field,
    /// "faces", "text": what a document has, for filters.
    has: Field,
    faces: Field,
    /// The segment's detections as JSON (boxes, landmarks, lines of text).
    detections: Field,
    speaker: Field,
    language: Field,
    text: Field,
    phash: Field,
    thumbnail: Field,
    failure: Field,
    failed: Field,
    content: Field,
    plugin_set: Field,
    indexed_at: Field,
}

/// The searchable text fields, by the names `Hit::fields` reports.
const SEARCHABLE: [&str; 8] = [
    "name",
    "path",
    "kind",
    "container",
    "codec",
    "resolution",
    "labels",
    "text",
];

fn build_schema() -> (Schema, Fields) {
    let mut b = SchemaBuilder::new();
    let f = Fields {
        path: b.add_text_field("path_exact", STRING | STORED),
        doc_type: b.add_text_field("doc_type", STRING | STORED),
        name: b.add_text_field("name", TEXT),
        path_text: b.add_text_field("path", TEXT),
        kind: b.add_text_field("kind", TEXT | STORED),
        container: b.add_text_field("container", TEXT | STORED),
        codec: b.add_text_field("codec", TEXT | STORED),
        resolution: b.add_text_field("resolution", TEXT | STORED),
        duration_s: b.add_f64_field("duration_s", STORED | FAST),
        size: b.add_u64_field("size", STORED | FAST),
        mtime: b.add_i64_field("mtime", STORED | FAST),
        fingerprint: b.add_text_field("fingerprint", STRING | STORED),
        plugin: b.add_text_field("plugin", STRING | STORED),
        start_s: b.add_f64_field("start_s", STORED),
        end_s: b.add_f64_field("end_s", STORED),
        labels: b.add_text_field("labels", TEXT | STORED),
        label: b.add_text_field("label", STRING),
        has: b.add_text_field("has", STRING),
        faces: b.add_u64_field("faces", STORED | FAST),
        detections: b.add_text_field("detections", STORED),
        speaker: b.add_text_field("speaker", STRING | STORED),
        language: b.add_text_field("language", STRING | STORED),
        text: b.add_text_field("text", TEXT | STORED),
        phash: b.add_u64_field("phash", STORED),
        thumbnail: b.add_text_field("thumbnail", STORED),
        failure: b.add_text_field("failure", STORED),
        failed: b.add_text_field("failed", STRING | STORED), // stored so copies keep it
        content: b.add_text_field("content", STRING | STORED),
        plugin_set: b.add_text_field("plugin_set", STRING | STORED),
        indexed_at: b.add_i64_field("indexed_at", STORED),
    };
    (b.build(), f)
}

pub struct MediaIndex {
    index: Index,
    writer: Mutex<IndexWriter>,
    reader: IndexReader,
    f: Fields,
}

impl MediaIndex {
    /// Opens the index in `dir`, creating it when the directory is empty.
    pub fn open(dir: &Path) -> Result<Self, IndexError> {
        let (schema, f) = build_schema();
        std::fs::create_dir_all(dir).map_err(|e| IndexError::Open {
            dir: dir.to_owned(),
            source: tantivy::TantivyError::IoError(e.into()),
        })?;
        let mmap = tantivy::directory::MmapDirectory::open(dir)?;
        let index = Index::open_or_create(mmap, schema).map_err(|source| IndexError::Open {
            dir: dir.to_owned(),
            source,
        })?;
        Self::with_index(index, f)
    }

    /// An index that lives only in memory, for tests.
    pub fn in_ram() -> Result<Self, IndexError> {
        let (schema, f) = build_schema();
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
            writer: Mutex::new(writer),
            reader,
            f,
        })
    }

    fn writer(&self) -> std::sync::MutexGuard<'_, IndexWriter> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces everything indexed for `file.path` with this file and these
    /// segments. Visible after the next [`commit`](Self::commit).
    pub fn put_file(
        &self,
        file: &FileRecord,
        segments: &[(&str, &SegmentResult)],
    ) -> Result<(), IndexError> {
        self.put_file_keeping(file, segments, &[])
    }

    /// Like [`put_file`](Self::put_file), but the committed segments of the
    /// plugins in `keep` stay as they are: only the other plugins re-ran.
    pub fn put_file_keeping(
        &self,
        file: &FileRecord,
        segments: &[(&str, &SegmentResult)],
        keep: &[&str],
    ) -> Result<(), IndexError> {
        let f = self.f;
        let path = file.path.to_string_lossy();
        let mut kept = vec![];
        // What the file as a whole shows: every label and the most faces.
        let mut labels = BTreeSet::new();
        let mut faces = 0u64;
        if !keep.is_empty() {
            for d in self.all_docs(&self.file_query(&file.path))? {
                let plugin = d
                    .get_first(f.plugin)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default();
                if keep.contains(&plugin) {
                    labels.extend(
                        d.get_all(f.labels)
                            .filter_map(|v| v.as_str().map(str::to_owned)),
                    );
                    faces = faces.max(d.get_first(f.faces).and_then(|v| v.as_u64()).unwrap_or(0));
                    kept.push(d);
                }
            }
        }
        for (_, s) in segments {
            labels.extend(s.labels.iter().cloned());
            faces = faces.max(u64::from(s.faces));
        }
        // The file document also holds all the words (the full transcript,
        // the text read on screen), so a file can be found as a whole.
        let mut all_text = String::new();
        let kept_text = kept
            .iter()
            .flat_map(|d| d.get_all(f.text).filter_map(|v| v.as_str()));
        for t in kept_text.chain(segments.iter().map(|(_, s)| s.text.as_str())) {
            if all_text.len() + t.len() > MAX_FILE_TEXT_BYTES {
                break;
            }
            if !t.trim().is_empty() {
                all_text.push_str(t.trim());
                all_text.push('\n');
            }
        }
        let writer = self.writer();
        writer.delete_term(Term::from_field_text(f.path, &path));
        for d in kept {
            writer.add_document(d)?;
        }
        let name = file
            .path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let mut d = doc!(
            f.path => path.as_ref(),
            f.doc_type => "file",
            f.name => name.as_ref(),
            f.path_text => path.as_ref(),
            f.kind => file.kind.as_str(),
            f.container => file.container.as_str(),
            f.size => file.size,
            f.mtime => file.mtime,
            f.fingerprint => file.fingerprint.as_str(),
            f.content => file.content.as_str(),
            f.plugin_set => file.plugin_set.as_str(),
            f.indexed_at => now_s(),
        );
        for c in file.video_codec.iter().chain(&file.audio_codec) {
            d.add_text(f.codec, c);
        }
        if let (Some(w), Some(h)) = (file.width, file.height) {
            d.add_text(f.resolution, format!("{w}x{h}"));
        }
        if let Some(dur) = file.duration_s {
            d.add_f64(f.duration_s, dur);
        }
        for (plugin, reason) in &file.failures {
            d.add_text(f.failure, format!("{plugin}\t{reason}"));
        }
        if !file.failures.is_empty() {
            d.add_text(f.failed, "yes");
        }
        self.add_findings(&mut d, &labels, faces, !all_text.is_empty());
        d.add_text(f.text, all_text);
        writer.add_document(d)?;
        for (plugin, s) in segments {
            let mut d = doc!(
                f.path => path.as_ref(),
                f.doc_type => "segment",
                f.kind => file.kind.as_str(),
                f.plugin => *plugin,
                f.start_s => s.start_s,
                f.end_s => s.end_s,
                f.text => s.text.as_str(),
            );
            self.add_findings(
                &mut d,
                &s.labels,
                u64::from(s.faces),
                !s.text.trim().is_empty(),
            );
            if let Some(speaker) = &s.speaker {
                d.add_text(f.speaker, speaker);
            }
            if let Some(language) = &s.language {
                d.add_text(f.language, language);
            }
            if !s.detections.is_empty() {
                let json = serde_json::to_string(&s.detections).unwrap_or_default();
                d.add_text(f.detections, json);
            }
            if let Some(h) = s.phash {
                d.add_u64(f.phash, h);
            }
            if let Some(t) = &s.thumbnail {
                d.add_text(f.thumbnail, t.to_string_lossy());
            }
            writer.add_document(d)?;
        }
        Ok(())
    }

    /// Labels (searchable and exact), the face count and what the document
    /// has, for search and filters.
    fn add_findings<'a>(
        &self,
        d: &mut TantivyDocument,
        labels: impl IntoIterator<Item = &'a String>,
        faces: u64,
        has_text: bool,
    ) {
        let f = self.f;
        for l in labels {
            d.add_text(f.labels, l);
            d.add_text(f.label, l.to_lowercase());
            if l == "speech" {
                d.add_text(f.has, "speech");
            }
        }
        d.add_u64(f.faces, faces);
        if faces > 0 {
            d.add_text(f.has, "faces");
        }
        if has_text {
            d.add_text(f.has, "text");
        }
    }

    /// A committed file with this content whose results came from this
    /// plugin set, other than `except`.
    pub fn find_content(
        &self,
        content: &str,
        plugin_set: &str,
        except: &Path,
    ) -> Result<Option<PathBuf>, IndexError> {
        let term = |field, text: &str| -> Box<dyn Query> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, text),
                IndexRecordOption::Basic,
            ))
        };
        let q = BooleanQuery::intersection(vec![
            term(self.f.content, content),
            term(self.f.plugin_set, plugin_set),
        ]);
        let searcher = self.reader.searcher();
        for (_, addr) in searcher.search(&q, &TopDocs::with_limit(8))? {
            let d: TantivyDocument = searcher.doc(addr)?;
            let path = PathBuf::from(
                d.get_first(self.f.path)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default(),
            );
            if path != except {
                return Ok(Some(path));
            }
        }
        Ok(None)
    }

    /// Indexes `to` with every document of the committed file `from` (its
    /// metadata, results and failures), under `to`'s own path, size, mtime and
    /// fingerprint. Returns the number of documents written. Visible after the
    /// next commit; `from` is left as it is.
    pub fn copy_file(&self, from: &Path, to: &FileRecord) -> Result<usize, IndexError> {
        let f = self.f;
        let docs = self.all_docs(&self.file_query(from))?;
        let path = to.path.to_string_lossy();
        let name = to
            .path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let per_path = [
            f.path,
            f.name,
            f.path_text,
            f.size,
            f.mtime,
            f.fingerprint,
            f.indexed_at,
        ];
        let writer = self.writer();
        writer.delete_term(Term::from_field_text(f.path, &path));
        for old in &docs {
            let mut new = TantivyDocument::new();
            for (field, value) in old.field_values() {
                if !per_path.contains(&field) {
                    new.add_field_value(field, value);
                }
            }
            new.add_text(f.path, &path);
            if old.get_first(f.doc_type).and_then(|v| v.as_str()) == Some("file") {
                new.add_text(f.name, &name);
                new.add_text(f.path_text, &path);
                new.add_u64(f.size, to.size);
                new.add_i64(f.mtime, to.mtime);
                new.add_text(f.fingerprint, &to.fingerprint);
                new.add_i64(f.indexed_at, now_s());
            }
            writer.add_document(new)?;
        }
        Ok(docs.len())
    }

    /// What the committed index holds for `path`, if anything.
    pub fn file_info(&self, path: &Path) -> Result<Option<IndexedFile>, IndexError> {
        let f = self.f;
        let mut info: Option<IndexedFile> = None;
        let mut segments: BTreeMap<String, u64> = BTreeMap::new();
        let mut speakers = BTreeSet::new();
        let mut transcript_chars = 0u64;
        for d in self.all_docs(&self.file_query(path))? {
            let text = |field| {
                d.get_first(field)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            if text(f.doc_type) == "segment" {
                *segments.entry(text(f.plugin)).or_default() += 1;
                if !text(f.speaker).is_empty() {
                    speakers.insert(text(f.speaker));
                    transcript_chars += text(f.text).chars().count() as u64;
                }
                continue;
            }
            let resolution = text(f.resolution);
            info = Some(IndexedFile {
                kind: text(f.kind),
                size: d.get_first(f.size).and_then(|v| v.as_u64()).unwrap_or(0),
                mtime: d.get_first(f.mtime).and_then(|v| v.as_i64()).unwrap_or(0),
                indexed_at: d
                    .get_first(f.indexed_at)
                    .and_then(|v| v.as_i64())
                    .unwrap_or(0),
                duration_s: d.get_first(f.duration_s).and_then(|v| v.as_f64()),
                container: text(f.container),
                codecs: d
                    .get_all(f.codec)
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                resolution: (!resolution.is_empty()).then_some(resolution),
                content: text(f.content),
                plugin_set: text(f.plugin_set),
                segments: vec![],
                transcript_chars: 0,
                speakers: 0,
                faces: d.get_first(f.faces).and_then(|v| v.as_u64()).unwrap_or(0) as u32,
                labels: d
                    .get_all(f.labels)
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
            });
        }
        Ok(info.map(|mut i| {
            // Every plugin that ran is listed, with 0 when it found nothing.
            for entry in i.plugin_set.split(',').filter(|e| !e.is_empty()) {
                let name = entry.split('@').next().unwrap_or(entry).to_owned();
                let n = segments.remove(&name).unwrap_or(0);
                i.segments.push((name, n));
            }
            i.segments.extend(segments);
            i.speakers = speakers.len() as u32;
            i.transcript_chars = transcript_chars;
            i
        }))
    }

    /// Every path with a committed file document.
    pub fn paths(&self) -> Result<Vec<PathBuf>, IndexError> {
        let q = TermQuery::new(
            Term::from_field_text(self.f.doc_type, "file"),
            IndexRecordOption::Basic,
        );
        let docs = self.all_docs(&q)?;
        Ok(docs
            .iter()
            .filter_map(|d| {
                d.get_first(self.f.path)
                    .and_then(|v| v.as_str())
                    .map(PathBuf::from)
            })
            .collect())
    }

    /// Removes a file and its segments. Visible after the next commit.
    pub fn remove_file(&self, path: &Path) {
        self.writer()
            .delete_term(Term::from_field_text(self.f.path, &path.to_string_lossy()));
    }

    /// Makes every change since the last commit durable and searchable.
    pub fn commit(&self) -> Result<(), IndexError> {
        self.writer().commit()?;
        self.reader.reload()?;
        Ok(())
    }

    /// The fingerprint stored with the committed file document for `path`.
    pub fn fingerprint(&self, path: &Path) -> Result<Option<String>, IndexError> {
        Ok(self.stored(path)?.map(|(fp, _)| fp))
    }

    /// (fingerprint, plugin set) of the committed file document for `path`.
    pub fn stored(&self, path: &Path) -> Result<Option<(String, String)>, IndexError> {
        let searcher = self.reader.searcher();
        let q = BooleanQuery::intersection(vec![
            Box::new(self.file_query(path)),
            Box::new(TermQuery::new(
                Term::from_field_text(self.f.doc_type, "file"),
                IndexRecordOption::Basic,
            )),
        ]);
        let top = searcher.search(&q, &TopDocs::with_limit(1))?;
        let Some((_, addr)) = top.first() else {
            return Ok(None);
        };
        let d: TantivyDocument = searcher.doc(*addr)?;
        let text = |field| {
            d.get_first(field)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        Ok(Some((text(self.f.fingerprint), text(self.f.plugin_set))))
    }

    /// Every failure stored in the committed index.
    pub fn failures(&self) -> Result<Vec<Failure>, IndexError> {
        self.failures_matching(&self.failed_query())
    }

    /// The (plugin, reason) failures stored for `path`.
    pub fn failures_of(&self, path: &Path) -> Result<Vec<(String, String)>, IndexError> {
        let q = BooleanQuery::intersection(vec![
            Box::new(self.file_query(path)),
            Box::new(self.failed_query()),
        ]);
        Ok(self
            .failures_matching(&q)?
            .into_iter()
            .map(|(_, plugin, reason)| (plugin, reason))
            .collect())
    }

    /// Every committed document matching `q`, however many.
    fn all_docs(&self, q: &dyn Query) -> Result<Vec<TantivyDocument>, IndexError> {
        let searcher = self.reader.searcher();
        let n = searcher.search(q, &Count)?;
        let top = searcher.search(q, &TopDocs::with_limit(n.max(1)))?;
        top.into_iter()
            .map(|(_, addr)| Ok(searcher.doc(addr)?))
            .collect()
    }

    fn failed_query(&self) -> TermQuery {
        TermQuery::new(
            Term::from_field_text(self.f.failed, "yes"),
            IndexRecordOption::Basic,
        )
    }

    fn failures_matching(&self, q: &dyn Query) -> Result<Vec<Failure>, IndexError> {
        let mut out = vec![];
        for d in self.all_docs(q)? {
            let path = PathBuf::from(
                d.get_first(self.f.path)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default(),
            );
            for v in d.get_all(self.f.failure).filter_map(|v| v.as_str()) {
                let (plugin, reason) = v.split_once('\t').unwrap_or((v, ""));
                out.push((path.clone(), plugin.to_owned(), reason.to_owned()));
            }
        }
        Ok(out)
    }

    fn file_query(&self, path: &Path) -> TermQuery {
        TermQuery::new(
            Term::from_field_text(self.f.path, &path.to_string_lossy()),
            IndexRecordOption::Basic,
        )
    }

    /// How many documents, file and segment, are indexed for `path`.
    pub fn doc_count(&self, path: &Path) -> Result<usize, IndexError> {
        Ok(self
            .reader
            .searcher()
            .search(&self.file_query(path), &Count)?)
    }

    /// Full-text search over names, paths, metadata words and segment text,
    /// narrowed by `filters`. All query words must match (AND); tantivy's
    /// query syntax is accepted, anything it cannot parse is searched as
    /// plain words, and an empty query matches everything the filters pass.
    pub fn search(
        &self,
        query: &str,
        filters: &SearchFilters,
        limit: usize,
    ) -> Result<Vec<Hit>, IndexError> {
        let f = self.f;
        let fields = [
            f.name,
            f.path_text,
            f.kind,
            f.container,
            f.codec,
            f.resolution,
            f.labels,
            f.text,
        ];
        let mut parser = QueryParser::for_index(&self.index, fields.to_vec());
        parser.set_conjunction_by_default();
        let words: Box<dyn Query> = if query.trim().is_empty() {
            Box::new(AllQuery)
        } else {
            parser.parse_query_lenient(query).0
        };
        let exact = |field, value: &str| -> (Occur, Box<dyn Query>) {
            let term = Term::from_field_text(field, value);
            (
                Occur::Must,
                Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
            )
        };
        let mut clauses = vec![(Occur::Must, words.box_clone())];
        clauses.extend(
            filters
                .labels
                .iter()
                .map(|l| exact(f.label, &l.to_lowercase())),
        );
        clauses.extend(filters.has.iter().map(|h| exact(f.has, h)));
        clauses.extend(
            filters
                .kind
                .iter()
                .map(|k| exact(f.kind, &k.to_lowercase())),
        );
        let q = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let top = searcher.search(&q, &TopDocs::with_limit(limit.max(1)))?;
        let mut snippets = SnippetGenerator::create(&searcher, &*words, f.text)?;
        snippets.set_max_num_chars(160);
        let words = self.tokens(query);
        let mut hits = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let d: TantivyDocument = searcher.doc(addr)?;
            hits.push(self.hit(&d, score, &words, &snippets));
        }
        // A file that matched only through what its moments show or say is
        // listed by those moments; the whole-file hit would repeat them.
        let with_moments: BTreeSet<PathBuf> = hits
            .iter()
            .filter(|h| h.plugin.is_some())
            .map(|h| h.path.clone())
            .collect();
        hits.retain(|h| {
            h.plugin.is_some()
                || !with_moments.contains(&h.path)
                || h.fields.iter().any(|f| f != "labels" && f != "text")
        });
        Ok(hits)
    }

    fn tokens(&self, text: &str) -> BTreeSet<String> {
        let mut analyzer = self
            .index
            .tokenizer_for_field(self.f.name)
            .expect("name is a text field");
        let mut stream = analyzer.token_stream(text);
        let mut out = BTreeSet::new();
        while let Some(t) = stream.next() {
            out.insert(t.text.clone());
        }
        out
    }

    fn hit(
        &self,
        d: &TantivyDocument,
        score: f32,
        words: &BTreeSet<String>,
        snippets: &SnippetGenerator,
    ) -> Hit {
        let f = self.f;
        let text = |field: Field| -> Vec<String> {
            d.get_all(field)
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        };
        let f64_of = |field: Field| d.get_first(field).and_then(|v| v.as_f64());
        let path = PathBuf::from(text(f.path).concat());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let is_segment = text(f.doc_type).first().map(String::as_str) == Some("segment");
        // A still's one segment is the whole file: no time range to show.
        let timed = is_segment && text(f.kind).first().map(String::as_str) != Some("image");
        let values: [Vec<String>; 8] = [
            vec![name.clone()],
            vec![path.to_string_lossy().into_owned()],
            text(f.kind),
            text(f.container),
            text(f.codec),
            text(f.resolution),
            text(f.labels),
            text(f.text),
        ];
        let matched = SEARCHABLE
            .iter()
            .zip(&values)
            .filter(|(_, vals)| vals.iter().any(|v| !self.tokens(v).is_disjoint(words)))
            .map(|(name, _)| name.to_string())
            .filter(|n| !(is_segment && (n == "name" || n == "path")))
            .collect();
        let mut highlights = vec![];
        let snippet = if is_segment {
            // Labels, then the stretch of text around the matched words.
            let mut snippet = text(f.labels).join(" · ");
            let full = text(f.text).concat();
            if !full.trim().is_empty() {
                let matched = snippets.snippet_from_doc(d);
                let (fragment, ranges) = if matched.is_empty() {
                    let end = full.char_indices().nth(160).map_or(full.len(), |(i, _)| i);
                    (full[..end].to_owned(), vec![])
                } else {
                    (
                        matched.fragment().to_owned(),
                        matched.highlighted().to_vec(),
                    )
                };
                if !snippet.is_empty() {
                    snippet.push_str(" · ");
                }
                let shift = snippet.len();
                highlights = ranges
                    .iter()
                    .map(|r| [(shift + r.start) as u32, (shift + r.end) as u32])
                    .collect();
                snippet.push_str(&fragment.replace('\n', " / "));
            }
            snippet
        } else {
            let mut parts = vec![name];
            parts.extend(text(f.codec));
            parts.extend(text(f.resolution));
            if let Some(d) = f64_of(f.duration_s) {
                parts.push(format!("{d:.1} s"));
            }
            parts.join(" · ")
        };
        Hit {
            path,
            kind: text(f.kind).concat(),
            score,
            start_s: if timed { f64_of(f.start_s) } else { None },
            end_s: if timed { f64_of(f.end_s) } else { None },
            snippet,
            fields: matched,
            highlights,
            labels: text(f.labels),
            faces: d.get_first(f.faces).and_then(|v| v.as_u64()).unwrap_or(0) as u32,
            plugin: text(f.plugin).into_iter().next(),
            speaker: text(f.speaker).into_iter().next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn video(path: &str) -> FileRecord {
        FileRecord {
            path: PathBuf::from(path),
            kind: MediaKind::Video,
            container: "mov,mp4,m4a,3gp,3g2,mj2".into(),
            duration_s: Some(10.0),
            video_codec: Some("h264".into()),
            audio_codec: Some("aac".into()),
            width: Some(1280),
            height: Some(720),
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
        };
        // The moment with the bus, and the file as a whole (its labels).
        // The moment with the bus; the file's own document also holds the
        // label, but its moments already stand for it.
        let hits = idx
            .search("bus", &only(&[], &[], Some("video")), 10)
            .unwrap();
        let moments: Vec<_> = hits.iter().map(|h| (h.start_s, h.end_s)).collect();
        assert_eq!(moments, [(Some(2.0), Some(4.5))]);
        assert_eq!(idx.search("bus", &none(), 10).unwrap().len(), 2);
        assert_eq!(
            idx.search("bus", &only(&[], &[], Some("image")), 10)
                .unwrap()
                .len(),
            1
        );
        // A file hit on its name stays.
        assert_eq!(idx.search("street", &none(), 10).unwrap().len(), 1);

        let faced = idx.search("", &only(&[], &["faces"], None), 10).unwrap();
        assert_eq!(faced.len(), 1, "{faced:?}");
        assert_eq!((faced[0].faces, faced[0].start_s), (2, Some(5.0)));

        let tables = idx
            .search("", &only(&["Dining Table"], &[], None), 10)
            .unwrap();
        assert_eq!(tables.len(), 1);
        assert!(
            idx.search("", &only(&["table"], &[], None), 10)
                .unwrap()
                .is_empty()
        );

        let slides = idx
            .search("roadmap", &only(&[], &["text"], None), 10)
            .unwrap();
        assert_eq!(slides.len(), 1);
        let h = &slides[0];
        assert_eq!((h.start_s, h.end_s), (Some(8.0), Some(12.0)));
        assert_eq!(h.plugin.as_deref(), Some("ocr"));
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

        let hits = idx.search("\"tax deadline\"", &none(), 10).unwrap();
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert_eq!((hits[0].start_s, hits[0].end_s), (Some(9.0), Some(12.0)));
        assert_eq!(hits[0].speaker.as_deref(), Some("speaker 2"));
        // Words spread over two moments still find the file, by its transcript.
        let whole = idx.search("budget friday", &none(), 10).unwrap();
        assert_eq!(whole.len(), 1);
        assert_eq!((whole[0].start_s, whole[0].plugin.as_deref()), (None, None));

        let speech = SearchFilters {
            has: vec!["speech".into()],
            ..none()
        };
        assert_eq!(idx.search("", &speech, 10).unwrap().len(), 2);
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

        let hits = idx.search("beach", &none(), 10).unwrap();
        assert_eq!(hits.len(), 1);
        let h = &hits[0];
        assert_eq!(h.path, Path::new("/media/holiday/beach_walk.mp4"));
        assert_eq!(h.kind, "video");
        assert_eq!((h.start_s, h.end_s), (None, None));
        assert!(h.fields.contains(&"name".to_string()), "{:?}", h.fields);
        assert!(h.snippet.contains("1280x720"), "{}", h.snippet);

        let hits = idx.search("h264", &none(), 10).unwrap();
        assert_eq!(hits[0].fields, ["codec"]);

        let mut scenes = idx.search("scene", &none(), 10).unwrap();
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

        idx.remove_file(p);
        idx.commit().unwrap();
        assert_eq!(idx.doc_count(p).unwrap(), 0);
        assert!(idx.search("a", &none(), 10).unwrap().is_empty());
    }

    #[test]
    fn all_query_words_must_match_and_bad_syntax_does_not_error() {
        let idx = MediaIndex::in_ram().unwrap();
        idx.put_file(&video("/m/red_car.mp4"), &[]).unwrap();
        idx.put_file(&video("/m/red_boat.mp4"), &[]).unwrap();
        idx.commit().unwrap();
        assert_eq!(idx.search("red", &none(), 10).unwrap().len(), 2);
        assert_eq!(idx.search("red car", &none(), 10).unwrap().len(), 1);
        assert!(idx.search("car AND (", &none(), 10).is_ok());
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
        let hits = idx.search("renamed", &none(), 10).unwrap();
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].path, Path::new("/m/renamed clip.mp4"));
        let scenes = idx.search("scene", &none(), 10).unwrap();
        let mut paths: Vec<_> = scenes.iter().map(|h| h.path.clone()).collect();
        paths.sort();
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
            idx.search("scene", &none(), 10).unwrap().len(),
            1,
            "keyframes kept"
        );
        assert!(
            idx.search("oldlabel", &none(), 10).unwrap().is_empty(),
            "old objects gone"
        );
        assert_eq!(idx.search("newlabel", &none(), 10).unwrap().len(), 1);
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
        assert_eq!(idx.search("kept", &none(), 10).unwrap().len(), 1);
    }
}

fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
