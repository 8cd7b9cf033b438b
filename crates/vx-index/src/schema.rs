//! The fields of the index, declared once.
//!
//! Two kinds of document share one schema: a *file* document per media file
//! and a *segment* document per time range a plugin found something in. Both
//! carry the file's exact path (so an update is one `delete_term`), its kind,
//! time and duration (so filters apply to either kind alike).

use tantivy::schema::{FAST, Field, INDEXED, STORED, STRING, Schema, SchemaBuilder, TEXT};

#[derive(Clone, Copy)]
pub(crate) struct Fields {
    pub path: Field,
    pub doc_type: Field,
    pub name: Field,
    pub path_text: Field,
    pub kind: Field,
    pub container: Field,
    pub codec: Field,
    pub resolution: Field,
    pub duration_s: Field,
    pub size: Field,
    pub mtime: Field,
    /// When the media was made: its metadata's creation time, else `mtime`.
    pub time: Field,
    pub fingerprint: Field,
    pub plugin: Field,
    pub start_s: Field,
    pub end_s: Field,
    pub labels: Field,
    /// Each label as one exact term, for filters.
    pub label: Field,
    /// "faces", "text", "speech": what a document has, for filters.
    pub has: Field,
    pub faces: Field,
    /// The segment's detections as JSON (boxes, landmarks, lines of text).
    pub detections: Field,
    pub speaker: Field,
    pub language: Field,
    pub text: Field,
    /// [`crate::text_key`] of the words a segment's vector embeds.
    pub embed_key: Field,
    pub phash: Field,
    pub thumbnail: Field,
    pub failure: Field,
    pub failed: Field,
    pub content: Field,
    pub plugin_set: Field,
    pub indexed_at: Field,
}

/// Where a searchable field's words come from when a hit is explained.
#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Source {
    /// Its own stored values.
    Stored,
    /// The file name (not stored: derived from the path).
    FileName,
    /// The path (not stored as words: derived from the exact path).
    Path,
}

impl Fields {
    /// The fields that query words are matched against, with the names hits
    /// report them by ([`vx_ctl_protocol::Hit::fields`]).
    pub fn searchable(&self) -> [(&'static str, Field, Source); 8] {
        [
            ("name", self.name, Source::FileName),
            ("path", self.path_text, Source::Path),
            ("kind", self.kind, Source::Stored),
            ("container", self.container, Source::Stored),
            ("codec", self.codec, Source::Stored),
            ("resolution", self.resolution, Source::Stored),
            ("labels", self.labels, Source::Stored),
            ("text", self.text, Source::Stored),
        ]
    }
}

pub(crate) fn build() -> (Schema, Fields) {
    let mut b = SchemaBuilder::new();
    let f = Fields {
        path: b.add_text_field("path_exact", STRING | STORED | FAST),
        doc_type: b.add_text_field("doc_type", STRING | STORED | FAST),
        name: b.add_text_field("name", TEXT),
        path_text: b.add_text_field("path", TEXT),
        kind: b.add_text_field("kind", TEXT | STORED),
        container: b.add_text_field("container", TEXT | STORED),
        codec: b.add_text_field("codec", TEXT | STORED),
        resolution: b.add_text_field("resolution", TEXT | STORED),
        duration_s: b.add_f64_field("duration_s", STORED | FAST),
        size: b.add_u64_field("size", STORED | FAST),
        mtime: b.add_i64_field("mtime", STORED | FAST),
        time: b.add_i64_field("time", STORED | FAST),
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
        embed_key: b.add_u64_field("embed_key", INDEXED | STORED | FAST),
        phash: b.add_u64_field("phash", STORED),
        thumbnail: b.add_text_field("thumbnail", STRING | STORED), // indexed: its references are counted
        failure: b.add_text_field("failure", STORED),
        failed: b.add_text_field("failed", STRING | STORED), // stored so copies keep it
        content: b.add_text_field("content", STRING | STORED),
        plugin_set: b.add_text_field("plugin_set", STRING | STORED),
        indexed_at: b.add_i64_field("indexed_at", STORED),
    };
    (b.build(), f)
}
