//! What the committed index holds: files, their results and failures, and
//! the vector keys that search by meaning needs.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use tantivy::collector::{Count, TopDocs};
use tantivy::query::{BooleanQuery, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, TantivyDocument, Value};
use tantivy::{DocAddress, Term};
use vx_ctl_protocol::IndexedFile;

use crate::{Failure, IndexError, MediaIndex, embed_text};

impl MediaIndex {
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

    /// The scenes of `path` that have a thumbnail, by start: (start, end,
    /// thumbnail). A still image is one scene.
    pub fn thumbnails(&self, path: &Path) -> Result<Vec<(f64, f64, PathBuf)>, IndexError> {
        let secs = |d: &TantivyDocument, field| d.get_first(field).and_then(|v| v.as_f64());
        let mut scenes: Vec<_> = self
            .all_docs(&self.file_query(path))?
            .iter()
            .filter_map(|d| {
                let thumb = d.get_first(self.f.thumbnail)?.as_str()?;
                let start = secs(d, self.f.start_s).unwrap_or(0.0);
                Some((
                    start,
                    secs(d, self.f.end_s).unwrap_or(start),
                    PathBuf::from(thumb),
                ))
            })
            .collect();
        scenes.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(scenes)
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
    pub(crate) fn all_docs(&self, q: &dyn Query) -> Result<Vec<TantivyDocument>, IndexError> {
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

    pub(crate) fn file_query(&self, path: &Path) -> TermQuery {
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

    /// The first string value of `field`, or "".
    pub(crate) fn str_of<'a>(&self, d: &'a TantivyDocument, field: Field) -> &'a str {
        d.get_first(field)
            .and_then(|v| v.as_str())
            .unwrap_or_default()
    }

    /// Every string value of `field`.
    pub(crate) fn strs_of(&self, d: &TantivyDocument, field: Field) -> Vec<String> {
        d.get_all(field)
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect()
    }

    /// Every vector key that a live segment refers to.
    pub fn live_embed_keys(&self) -> Result<HashSet<u64>, IndexError> {
        let mut keys = HashSet::new();
        self.scan_embed_keys(|_, key| {
            keys.insert(key);
        })?;
        Ok(keys)
    }

    /// The embedding backlog: how many segments have a vector key that
    /// `have` says has no vector, and up to `limit` (key, words) pairs of them.
    pub fn missing_embeddings(
        &self,
        have: impl Fn(u64) -> bool,
        limit: usize,
    ) -> Result<(u64, Vec<(u64, String)>), IndexError> {
        let mut missing: HashMap<u64, DocAddress> = HashMap::new();
        let mut waiting = 0;
        self.scan_embed_keys(|addr, key| {
            if !have(key) {
                waiting += 1;
                if missing.len() < limit {
                    missing.entry(key).or_insert(addr);
                }
            }
        })?;
        let searcher = self.reader.searcher();
        let mut out = Vec::with_capacity(missing.len());
        for (key, addr) in missing {
            let d: TantivyDocument = searcher.doc(addr)?;
            let labels = self.strs_of(&d, self.f.labels);
            if let Some(words) = embed_text(self.str_of(&d, self.f.text), &labels) {
                out.push((key, words));
            }
        }
        Ok((waiting, out))
    }

    /// Calls `each` with every live document's vector key, from the fast
    /// field: a million documents take milliseconds.
    fn scan_embed_keys(&self, mut each: impl FnMut(DocAddress, u64)) -> Result<(), IndexError> {
        let searcher = self.reader.searcher();
        for (ord, segment) in searcher.segment_readers().iter().enumerate() {
            let column = segment.fast_fields().u64("embed_key")?;
            let alive = segment.alive_bitset();
            for doc in 0..segment.max_doc() {
                if alive.is_some_and(|a| a.is_deleted(doc)) {
                    continue;
                }
                if let Some(key) = column.first(doc) {
                    each(DocAddress::new(ord as u32, doc), key);
                }
            }
        }
        Ok(())
    }
}
