//! Adding, copying and removing files; [`MediaIndex::commit`] makes it visible.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use tantivy::collector::Count;
use tantivy::query::TermQuery;
use tantivy::schema::{Field, IndexRecordOption, TantivyDocument, Value};
use tantivy::{IndexWriter, Term, doc};
use vx_plugin_protocol::SegmentResult;

use crate::{FileRecord, IndexError, MediaIndex, embed_text, now_s, text_key};

/// The file document's copy of all its segments' words stops here...
const MAX_FILE_TEXT_BYTES: usize = 1 << 20;
/// ...and its list of every label found in it, here.
const MAX_FILE_LABELS: usize = 1000;

/// tantivy's writer, with the changes made since the last commit. A failed
/// write rolls back every uncommitted change, other threads' too; the log
/// lets them be made again, so that no caller's change is silently lost.
pub(crate) struct Writer {
    tantivy: IndexWriter,
    pending: Vec<Change>,
    /// The writer was rolled back since `pending` was made.
    lost: bool,
}

impl Writer {
    pub(crate) fn new(tantivy: IndexWriter) -> Self {
        Self {
            tantivy,
            pending: vec![],
            lost: false,
        }
    }

    fn delete_term(&self, term: Term) {
        self.tantivy.delete_term(term);
    }
}

/// One logged change.
enum Change {
    Put {
        file: FileRecord,
        segments: Vec<(String, SegmentResult)>,
        keep: Vec<String>,
    },
    Copy {
        from: PathBuf,
        to: FileRecord,
        remove_from: bool,
    },
    Remove(Vec<PathBuf>),
}

impl Change {
    fn put(file: &FileRecord, segments: &[(&str, &SegmentResult)], keep: &[&str]) -> Self {
        Self::Put {
            file: file.clone(),
            segments: segments
                .iter()
                .map(|(p, s)| (p.to_string(), (*s).clone()))
                .collect(),
            keep: keep.iter().map(|k| k.to_string()).collect(),
        }
    }

    fn copy(from: &Path, to: &FileRecord, remove_from: bool) -> Self {
        Self::Copy {
            from: from.to_owned(),
            to: to.clone(),
            remove_from,
        }
    }
}

impl MediaIndex {
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
        self.change(Change::put(file, segments, keep), false)
            .map(drop)
    }

    /// [`put_file_keeping`](Self::put_file_keeping) and a commit, with no
    /// other change in between. When the commit fails, the change stays
    /// pending like every other: [`commit`](Self::commit) makes it again.
    pub fn put_and_commit(
        &self,
        file: &FileRecord,
        segments: &[(&str, &SegmentResult)],
        keep: &[&str],
    ) -> Result<(), IndexError> {
        self.change(Change::put(file, segments, keep), true)
            .map(drop)
    }

    fn put(
        &self,
        writer: &mut Writer,
        file: &FileRecord,
        segments: &[(String, SegmentResult)],
        keep: &[String],
    ) -> Result<usize, IndexError> {
        let f = self.f;
        let path = file.path.to_string_lossy();
        let time = file.info.created.unwrap_or(file.mtime);
        let mut kept = vec![];
        // What the file as a whole shows: every label and the most faces.
        let mut labels = BTreeSet::new();
        let mut faces = 0u64;
        if !keep.is_empty() {
            for d in self.all_docs(&self.file_query(&file.path))? {
                if keep.iter().any(|k| *k == self.str_of(&d, f.plugin)) {
                    labels.extend(self.strs_of(&d, f.labels));
                    faces = faces.max(d.get_first(f.faces).and_then(|v| v.as_u64()).unwrap_or(0));
                    kept.push(self.rebuilt(&d, &[]));
                }
            }
        }
        for (_, s) in segments {
            labels.extend(s.labels.iter().cloned());
            faces = faces.max(u64::from(s.faces));
        }
        let labels: BTreeSet<String> = labels.into_iter().take(MAX_FILE_LABELS).collect();
        // The file document also holds all the words (the full transcript,
        // the text read on screen), so a file can be found as a whole.
        let mut all_text = String::new();
        let kept_text: Vec<String> = kept.iter().flat_map(|d| self.strs_of(d, f.text)).collect();
        for t in kept_text
            .iter()
            .map(String::as_str)
            .chain(segments.iter().map(|(_, s)| s.text.as_str()))
        {
            if all_text.len() + t.len() > MAX_FILE_TEXT_BYTES {
                break;
            }
            if !t.trim().is_empty() {
                all_text.push_str(t.trim());
                all_text.push('\n');
            }
        }
        self.orphan_thumbnails_of(&file.path)?;
        writer.delete_term(Term::from_field_text(f.path, &path));
        for d in kept {
            self.add(writer, d)?;
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
            f.container => file.info.container.as_str(),
            f.size => file.size,
            f.mtime => file.mtime,
            f.time => time,
            f.fingerprint => file.fingerprint.as_str(),
            f.content => file.content.as_str(),
            f.plugin_set => file.plugin_set.as_str(),
            f.indexed_at => now_s(),
        );
        if let Some(duration) = file.info.duration_s {
            d.add_f64(f.duration_s, duration);
        }
        for c in file.info.video_codec.iter().chain(&file.info.audio_codec) {
            d.add_text(f.codec, c);
        }
        if let (Some(w), Some(h)) = (file.info.width, file.info.height) {
            d.add_text(f.resolution, format!("{w}x{h}"));
        }
        for (plugin, reason) in &file.failures {
            d.add_text(f.failure, format!("{plugin}\t{reason}"));
        }
        if !file.failures.is_empty() {
            d.add_text(f.failed, "yes");
        }
        self.add_findings(&mut d, &labels, faces, !all_text.is_empty());
        d.add_text(f.text, all_text);
        self.add(writer, d)?;
        for (plugin, s) in segments {
            let mut d = doc!(
                f.path => path.as_ref(),
                f.doc_type => "segment",
                f.kind => file.kind.as_str(),
                f.time => time,
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
            if let Some(duration) = file.info.duration_s {
                d.add_f64(f.duration_s, duration);
            }
            if let Some(words) = embed_text(&s.text, &s.labels) {
                d.add_u64(f.embed_key, text_key(&words));
            }
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
            self.add(writer, d)?;
        }
        Ok(1 + segments.len())
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

    /// A committed document made anew from its stored fields, but for those
    /// in `skip`. The filter terms (`label`, `has`) are not stored, so they
    /// are derived again from the stored labels, faces and text.
    fn rebuilt(&self, stored: &TantivyDocument, skip: &[Field]) -> TantivyDocument {
        let f = self.f;
        let mut d = TantivyDocument::new();
        for (field, value) in stored.field_values() {
            if !skip.contains(&field) && field != f.labels && field != f.faces {
                d.add_field_value(field, value);
            }
        }
        let labels = self.strs_of(stored, f.labels);
        let faces = stored
            .get_first(f.faces)
            .and_then(|v| v.as_u64())
            .unwrap_or(0);
        let has_text = self
            .strs_of(stored, f.text)
            .iter()
            .any(|t| !t.trim().is_empty());
        self.add_findings(&mut d, &labels, faces, has_text);
        d
    }

    /// Indexes `to` with every document of the committed file `from` (its
    /// metadata, results, failures and vector keys), under `to`'s own path,
    /// size, mtime and fingerprint. Returns the number of documents written.
    /// Visible after the next commit; `from` is left as it is.
    pub fn copy_file(&self, from: &Path, to: &FileRecord) -> Result<usize, IndexError> {
        self.change(Change::copy(from, to, false), false)
    }

    /// [`copy_file`](Self::copy_file), then (for a rename) removing `from`,
    /// then a commit, with no other change in between. A copy of nothing
    /// (`from` is gone) is not committed.
    pub fn copy_and_commit(
        &self,
        from: &Path,
        to: &FileRecord,
        remove_from: bool,
    ) -> Result<usize, IndexError> {
        self.change(Change::copy(from, to, remove_from), true)
    }

    fn copy(
        &self,
        writer: &mut Writer,
        from: &Path,
        to: &FileRecord,
        remove_from: bool,
    ) -> Result<usize, IndexError> {
        let f = self.f;
        let docs = self.all_docs(&self.file_query(from))?;
        let path = to.path.to_string_lossy();
        let name = to
            .path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        // A time from the media's metadata belongs to the content; one taken
        // from the old file's mtime does not.
        let old_file = docs.iter().find(|d| self.str_of(d, f.doc_type) == "file");
        let i64_of = |field| old_file.and_then(|d| d.get_first(field).and_then(|v| v.as_i64()));
        let time = match (i64_of(f.time), i64_of(f.mtime)) {
            (Some(t), Some(m)) if t != m => t,
            _ => to.info.created.unwrap_or(to.mtime),
        };
        let per_path = [
            f.path,
            f.name,
            f.path_text,
            f.size,
            f.mtime,
            f.time,
            f.fingerprint,
            f.indexed_at,
        ];
        self.orphan_thumbnails_of(&to.path)?;
        if remove_from {
            self.orphan_thumbnails_of(from)?;
        }
        writer.delete_term(Term::from_field_text(f.path, &path));
        for old in &docs {
            let mut new = self.rebuilt(old, &per_path);
            new.add_text(f.path, &path);
            new.add_i64(f.time, time);
            if self.str_of(old, f.doc_type) == "file" {
                new.add_text(f.name, &name);
                new.add_text(f.path_text, &path);
                new.add_u64(f.size, to.size);
                new.add_i64(f.mtime, to.mtime);
                new.add_text(f.fingerprint, &to.fingerprint);
                new.add_i64(f.indexed_at, now_s());
            }
            self.add(writer, new)?;
        }
        if remove_from && !docs.is_empty() {
            writer.delete_term(Term::from_field_text(f.path, &from.to_string_lossy()));
        }
        Ok(docs.len())
    }

    /// Removes a file and its segments, and after the next commit its
    /// thumbnails unless another file shows them. Visible after that commit.
    pub fn remove_file(&self, path: &Path) -> Result<(), IndexError> {
        self.change(Change::Remove(vec![path.to_owned()]), false)
            .map(drop)
    }

    /// Removes these files and their segments, and commits, with no other
    /// change in between.
    pub fn remove_and_commit(&self, paths: &[PathBuf]) -> Result<(), IndexError> {
        self.change(Change::Remove(paths.to_vec()), true).map(drop)
    }

    fn remove(&self, writer: &mut Writer, paths: &[PathBuf]) -> Result<usize, IndexError> {
        for p in paths {
            self.orphan_thumbnails_of(p)?;
        }
        for p in paths {
            writer.delete_term(Term::from_field_text(self.f.path, &p.to_string_lossy()));
        }
        Ok(0)
    }

    /// Logs `change`, makes it (after the pending ones, if a failed write
    /// rolled those back) and commits if asked. Returns the number of
    /// documents the change wrote. A copy of nothing (`from` is gone) is not
    /// committed.
    fn change(&self, change: Change, commit: bool) -> Result<usize, IndexError> {
        let mut writer = self.writer();
        writer.pending.push(change);
        let from = if writer.lost {
            0
        } else {
            writer.pending.len() - 1
        };
        let written = self.make_pending(&mut writer, from)?;
        let empty_copy = matches!(writer.pending.last(), Some(Change::Copy { .. })) && written == 0;
        if commit && !empty_copy {
            self.commit_locked(&mut writer)?;
        }
        Ok(written)
    }

    /// Makes the pending changes from `from` on; returns what the last one
    /// wrote. A failure rolls the writer back, so all of them are made again
    /// before the next commit.
    fn make_pending(&self, writer: &mut Writer, from: usize) -> Result<usize, IndexError> {
        let pending = std::mem::take(&mut writer.pending);
        let mut written = Ok(0);
        for change in &pending[from..] {
            written = match change {
                Change::Put {
                    file,
                    segments,
                    keep,
                } => self.put(writer, file, segments, keep),
                Change::Copy {
                    from,
                    to,
                    remove_from,
                } => self.copy(writer, from, to, *remove_from),
                Change::Remove(paths) => self.remove(writer, paths),
            };
            if written.is_err() {
                break;
            }
        }
        writer.pending = pending;
        writer.lost = written.is_err();
        written
    }

    /// Notes the thumbnails of `path`'s committed documents, which are about
    /// to be deleted. Called with the writer held, so that no commit comes
    /// between noting them and deleting the documents: a commit in between
    /// would find them still shown, drop them from the list, and leak them.
    fn orphan_thumbnails_of(&self, path: &Path) -> Result<(), IndexError> {
        let thumbs: Vec<String> = self
            .all_docs(&self.file_query(path))?
            .iter()
            .flat_map(|d| self.strs_of(d, self.f.thumbnail))
            .collect();
        self.orphans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(thumbs);
        Ok(())
    }

    /// Removes the noted thumbnails that no committed document shows.
    fn remove_orphans(&self) {
        let orphans = std::mem::take(&mut *self.orphans.lock().unwrap_or_else(|e| e.into_inner()));
        let Some(dir) = self
            .artefact_dir
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
        else {
            return;
        };
        let Ok(dir) = dir.canonicalize() else {
            return;
        };
        let searcher = self.reader.searcher();
        for thumb in orphans {
            let term = Term::from_field_text(self.f.thumbnail, &thumb);
            let query = TermQuery::new(term, IndexRecordOption::Basic);
            let shown = searcher.search(&query, &Count).map_or(true, |n| n > 0);
            // Resolved now, not when the host named it: a folder swapped
            // for a link since then cannot lead outside the artefact folder.
            let inside = Path::new(&thumb)
                .canonicalize()
                .is_ok_and(|real| real.starts_with(&dir));
            if !shown && inside {
                let _ = std::fs::remove_file(&thumb);
            }
        }
    }

    /// Makes every change since the last commit durable and searchable. If
    /// that fails (a full disk), tantivy's writer is rolled back (it can be
    /// left unable to add documents otherwise, dropping them silently), and
    /// the changes stay pending: the next commit makes them again.
    pub fn commit(&self) -> Result<(), IndexError> {
        self.commit_locked(&mut self.writer())
    }

    /// Whether changes wait for a commit.
    pub fn has_pending(&self) -> bool {
        !self.writer().pending.is_empty()
    }

    fn commit_locked(&self, writer: &mut Writer) -> Result<(), IndexError> {
        if writer.lost {
            self.make_pending(writer, 0)?;
        }
        if let Err(e) = writer.tantivy.commit() {
            self.roll_back(writer);
            return Err(e.into());
        }
        writer.pending.clear();
        self.reader.reload()?;
        self.remove_orphans();
        Ok(())
    }

    /// Adds a document. If that fails, the uncommitted changes are rolled
    /// back as after a failed commit: tantivy's indexing thread dies when it
    /// cannot open its segment files (a full disk), and every later add
    /// fails until the writer is replaced.
    fn add(&self, writer: &mut Writer, doc: TantivyDocument) -> Result<(), IndexError> {
        writer.tantivy.add_document(doc).map(drop).map_err(|e| {
            self.roll_back(writer);
            e.into()
        })
    }

    /// Drops every change since the last commit, with a fresh writer. The
    /// changes stay logged, to be made again.
    fn roll_back(&self, writer: &mut Writer) {
        writer.lost = true;
        if let Err(e) = writer.tantivy.rollback() {
            tracing::error!("index rollback after a failed write failed too: {e}");
        }
        self.orphans
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}
