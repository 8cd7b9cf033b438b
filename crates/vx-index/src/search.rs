//! Ranking: words (BM25), meaning (cosine of sentence vectors), or both.
//!
//! Hybrid ranking fuses the two lists by reciprocal rank (RRF, k = 60): a
//! document scores `Σ 1 / (60 + rank)` over the lists it is in. BM25 scores
//! and cosines live on scales that shift with every query and corpus, and a
//! weighted sum of them needs a calibration we have no labelled data for;
//! ranks need none, and a document that both lists agree on rises to the top.
//! Two rules sit on top: a query with a quoted phrase puts the documents that
//! contain it first (the user asked for those exact words), and a vector
//! match below [`SEMANTIC_FLOOR`] is no match at all, so a query about
//! nothing in the library returns nothing, up to the chance matches that a
//! very large library holds (see the floor).

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::ops::Bound;
use std::path::Path;

use tantivy::collector::TopDocs;
use tantivy::columnar::StrColumn;
use tantivy::query::{
    AllQuery, BooleanQuery, Occur, Query as TantivyQuery, QueryParser, RangeQuery, TermQuery,
};
use tantivy::schema::{IndexRecordOption, TantivyDocument, Value};
use tantivy::snippet::SnippetGenerator;
use tantivy::{DocAddress, Searcher, Term};
use vx_ctl_protocol::{Hit, SearchFilters, SearchMode, SearchRequest};

use crate::schema::Source;
use crate::{IndexError, MediaIndex, VectorStore};

/// The lowest cosine between a query and a segment's words that counts as a
/// match. all-MiniLM-L6-v2 puts unrelated sentences near 0 and paraphrases
/// near or above 0.4 ("ocean waves" / "the sea was rough": 0.47; "a dog runs
/// on the beach" / "a puppy playing by the sea": 0.52). Transcripts are noisy:
/// whisper tiny heard "the sea was rough and the little boat rock toil died",
/// 0.33 from "ocean waves". Among 100,000 everyday segments, the best match of
/// "quantum chromodynamics lecture" scored 0.31, among 1,000,000 0.33: the
/// two overlap, and the floor sits where a paraphrase heard badly is still
/// found.
pub const SEMANTIC_FLOOR: f32 = 0.3;

/// The reciprocal-rank-fusion constant: how much the first few ranks of a
/// list outweigh the rest (60 is the value of the paper that introduced RRF).
const RRF_K: f32 = 60.0;

/// Distinct vectors a semantic search considers, best first...
const SEMANTIC_KEYS: usize = 200;
/// ...chosen from this many candidates by their sign codes.
const SEMANTIC_CANDIDATES: usize = 4000;

/// One search, as asked.
pub struct Query<'a> {
    pub text: &'a str,
    pub filters: &'a SearchFilters,
    pub mode: SearchMode,
    pub limit: usize,
    pub per_file: bool,
    pub moments_per_file: usize,
}

impl<'a> Query<'a> {
    pub fn from_request(r: &'a SearchRequest) -> Self {
        Self {
            text: &r.query,
            filters: &r.filters,
            mode: r.mode,
            limit: r.limit.clamp(1, 10_000) as usize,
            per_file: r.per_file,
            moments_per_file: r.moments_per_file.clamp(1, 100) as usize,
        }
    }
}

/// The query's vector and the store to compare it with.
pub struct Semantic<'a> {
    pub vectors: &'a VectorStore,
    pub query: &'a [f32],
}

/// A document in either ranked list.
#[derive(Default)]
struct Candidate {
    bm25: Option<(usize, f32)>,
    similarity: Option<(usize, f32)>,
    score: f32,
}

impl MediaIndex {
    /// Hits for `q`, best first. Words are matched in names, paths, metadata
    /// and segment text; all must match (AND). Tantivy's query syntax is
    /// accepted and anything it cannot parse is searched as plain words. An
    /// empty query matches everything the filters pass. Meaning is compared
    /// only when `semantic` is given and the mode asks for it.
    pub fn search(
        &self,
        q: &Query<'_>,
        semantic: Option<Semantic<'_>>,
    ) -> Result<Vec<Hit>, IndexError> {
        let f = self.f;
        let searcher = self.reader.searcher();
        let filters = self.filter_clauses(q.filters);
        let with_filters = |q: Box<dyn TantivyQuery>| -> Box<dyn TantivyQuery> {
            let mut clauses = vec![(Occur::Must, q)];
            clauses.extend(filters.iter().map(|c| (Occur::Must, c.box_clone())));
            Box::new(BooleanQuery::new(clauses))
        };
        // Enough of each list to fill `limit` hits (or files) after fusion.
        let depth = if q.per_file {
            q.limit * q.moments_per_file * 4
        } else {
            q.limit * 2
        }
        .clamp(50, 2000);
        let words = self.parse(q.text);
        let use_words = q.mode != SearchMode::Semantic || words.is_none();
        let semantic = semantic.filter(|_| q.mode != SearchMode::Text && words.is_some());

        // The two lists side by side: each takes a core.
        let by_words = || -> Result<Vec<(f32, DocAddress)>, IndexError> {
            if !use_words {
                return Ok(vec![]);
            }
            let query = words
                .as_ref()
                .map_or_else(|| Box::new(AllQuery) as _, |w| w.box_clone());
            Ok(searcher.search(&*with_filters(query), &TopDocs::with_limit(depth))?)
        };
        let by_meaning = || -> Result<Vec<(f32, DocAddress)>, IndexError> {
            let Some(s) = &semantic else {
                return Ok(vec![]);
            };
            let mut out = vec![];
            let nearest =
                s.vectors
                    .nearest(s.query, SEMANTIC_KEYS, SEMANTIC_FLOOR, SEMANTIC_CANDIDATES);
            for (key, cos) in nearest {
                let term = TermQuery::new(
                    Term::from_field_u64(f.embed_key, key),
                    IndexRecordOption::Basic,
                );
                let limit = TopDocs::with_limit(depth - out.len());
                let docs = searcher.search(&*with_filters(Box::new(term)), &limit)?;
                out.extend(docs.into_iter().map(|(_, addr)| (cos, addr)));
                if out.len() >= depth {
                    break;
                }
            }
            Ok(out)
        };
        let (lexical, meaning) = std::thread::scope(|scope| {
            let meaning = scope.spawn(by_meaning);
            let lexical = by_words();
            (
                lexical,
                meaning.join().expect("semantic search does not panic"),
            )
        });
        let mut candidates: HashMap<DocAddress, Candidate> = HashMap::new();
        for (rank, (score, addr)) in lexical?.into_iter().enumerate() {
            candidates.entry(addr).or_default().bm25 = Some((rank, score));
        }
        for (rank, (cos, addr)) in meaning?.into_iter().enumerate() {
            candidates.entry(addr).or_default().similarity = Some((rank, cos));
        }

        let phrase_first = q.mode == SearchMode::Hybrid && q.text.contains('"');
        for c in candidates.values_mut() {
            let rrf = |r: Option<(usize, f32)>| {
                r.map_or(0.0, |(rank, _)| 1.0 / (RRF_K + rank as f32 + 1.0))
            };
            c.score = match q.mode {
                SearchMode::Text => c.bm25.map_or(0.0, |(_, s)| s),
                SearchMode::Semantic if semantic.is_some() => c.similarity.map_or(0.0, |(_, s)| s),
                SearchMode::Semantic => c.bm25.map_or(0.0, |(_, s)| s),
                SearchMode::Hybrid => rrf(c.bm25) + rrf(c.similarity),
            };
        }
        let mut ranked: Vec<(DocAddress, Candidate)> = candidates.into_iter().collect();
        ranked.sort_by(|(a_addr, a), (b_addr, b)| {
            let first = |c: &Candidate| phrase_first && c.bm25.is_some();
            first(b)
                .cmp(&first(a))
                .then(b.score.total_cmp(&a.score))
                .then(a_addr.cmp(b_addr))
        });
        let tokens = self.tokens(q.text);
        let chosen = self.choose(&searcher, ranked, q, &tokens)?;

        let snippets = match &words {
            Some(w) => {
                let mut g = SnippetGenerator::create(&searcher, &**w, f.text)?;
                g.set_max_num_chars(160);
                Some(g)
            }
            None => None,
        };
        let mut hits = Vec::with_capacity(chosen.len());
        for (addr, c) in chosen {
            let d: TantivyDocument = searcher.doc(addr)?;
            let mut hit = self.hit(&d, c.score, &tokens, snippets.as_ref());
            hit.similarity = c.similarity.map(|(_, s)| s);
            hits.push(hit);
        }
        // A file that matched only through what its moments show or say is
        // listed by those moments; the whole-file hit would repeat them.
        let with_moments: BTreeSet<_> = hits
            .iter()
            .filter(|h| h.plugin.is_some())
            .map(|h| h.path.clone())
            .collect();
        hits.retain(|h| {
            h.plugin.is_some()
                || !with_moments.contains(&h.path)
                || !self.only_by_findings(&h.fields)
        });
        Ok(hits)
    }

    /// The hits to show, in order: the first `limit`, or with `per_file`,
    /// the first `limit` files, each followed by its best moments. Paths and
    /// document types come from fast fields, so a deep list costs little.
    fn choose(
        &self,
        searcher: &Searcher,
        ranked: Vec<(DocAddress, Candidate)>,
        q: &Query<'_>,
        tokens: &BTreeSet<String>,
    ) -> Result<Vec<(DocAddress, Candidate)>, IndexError> {
        if !q.per_file {
            return Ok(ranked.into_iter().take(q.limit).collect());
        }
        let mut columns = HashMap::new();
        let mut groups: Vec<(String, Vec<(DocAddress, Candidate, bool)>)> = vec![];
        for (addr, c) in ranked {
            let path = fast_str(searcher, &mut columns, "path_exact", addr)?;
            let is_file = fast_str(searcher, &mut columns, "doc_type", addr)? == "file";
            match groups.iter_mut().find(|(p, _)| *p == path) {
                Some((_, hits)) => hits.push((addr, c, is_file)),
                None => groups.push((path, vec![(addr, c, is_file)])),
            }
        }
        let mut out = vec![];
        for (_, hits) in groups.into_iter().take(q.limit) {
            let has_moments = hits.iter().any(|(_, _, is_file)| !is_file);
            let mut kept = 0;
            for (addr, c, is_file) in hits {
                if kept == q.moments_per_file {
                    break;
                }
                if is_file && has_moments {
                    let d: TantivyDocument = searcher.doc(addr)?;
                    if self.only_by_findings(&self.matched_fields(&d, tokens)) {
                        continue;
                    }
                }
                out.push((addr, c));
                kept += 1;
            }
        }
        Ok(out)
    }

    /// A file matched only through what its moments show or say: its moments
    /// stand for it, and a whole-file hit would repeat them.
    fn only_by_findings(&self, fields: &[String]) -> bool {
        fields.iter().all(|f| f == "labels" || f == "text")
    }

    /// The query's words, or `None` for an empty query.
    fn parse(&self, query: &str) -> Option<Box<dyn TantivyQuery>> {
        if query.trim().is_empty() {
            return None;
        }
        let fields = self
            .f
            .searchable()
            .iter()
            .map(|(_, field, _)| *field)
            .collect();
        let mut parser = QueryParser::for_index(&self.index, fields);
        parser.set_conjunction_by_default();
        Some(parser.parse_query_lenient(query).0)
    }

    fn filter_clauses(&self, filters: &SearchFilters) -> Vec<Box<dyn TantivyQuery>> {
        let f = self.f;
        let exact = |field, value: &str| -> Box<dyn TantivyQuery> {
            Box::new(TermQuery::new(
                Term::from_field_text(field, value),
                IndexRecordOption::Basic,
            ))
        };
        let mut out: Vec<Box<dyn TantivyQuery>> = vec![];
        out.extend(
            filters
                .labels
                .iter()
                .map(|l| exact(f.label, &l.to_lowercase())),
        );
        out.extend(filters.has.iter().map(|h| exact(f.has, h)));
        out.extend(
            filters
                .kind
                .iter()
                .map(|k| exact(f.kind, &k.to_lowercase())),
        );
        if let Some(prefix) = &filters.path_prefix {
            let prefix = prefix.to_string_lossy();
            let upper = match successor(&prefix) {
                Some(next) => Bound::Excluded(Term::from_field_text(f.path, &next)),
                None => Bound::Unbounded,
            };
            out.push(Box::new(RangeQuery::new(
                Bound::Included(Term::from_field_text(f.path, &prefix)),
                upper,
            )));
        }
        let bound = |v: Option<i64>, inclusive: bool| match v {
            Some(t) if inclusive => Bound::Included(Term::from_field_i64(f.time, t)),
            Some(t) => Bound::Excluded(Term::from_field_i64(f.time, t)),
            None => Bound::Unbounded,
        };
        if filters.after.is_some() || filters.before.is_some() {
            out.push(Box::new(RangeQuery::new(
                bound(filters.after, true),
                bound(filters.before, false),
            )));
        }
        let seconds = |v: Option<f64>| match v {
            Some(s) => Bound::Included(Term::from_field_f64(f.duration_s, s)),
            None => Bound::Unbounded,
        };
        if filters.min_duration_s.is_some() || filters.max_duration_s.is_some() {
            out.push(Box::new(RangeQuery::new(
                seconds(filters.min_duration_s),
                seconds(filters.max_duration_s),
            )));
        }
        out
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

    /// The searchable fields whose words include one of `words`.
    fn matched_fields(&self, d: &TantivyDocument, words: &BTreeSet<String>) -> Vec<String> {
        let path = self.str_of(d, self.f.path);
        let name = Path::new(path)
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let is_segment = self.str_of(d, self.f.doc_type) == "segment";
        self.f
            .searchable()
            .into_iter()
            .filter(|(name, _, _)| !(is_segment && (*name == "name" || *name == "path")))
            .filter(|(_, field, source)| {
                let values = match source {
                    Source::FileName => vec![name.to_string()],
                    Source::Path => vec![path.to_owned()],
                    Source::Stored => self.strs_of(d, *field),
                };
                values.iter().any(|v| !self.tokens(v).is_disjoint(words))
            })
            .map(|(name, _, _)| name.to_owned())
            .collect()
    }

    fn hit(
        &self,
        d: &TantivyDocument,
        score: f32,
        words: &BTreeSet<String>,
        snippets: Option<&SnippetGenerator>,
    ) -> Hit {
        let f = self.f;
        let f64_of = |field| d.get_first(field).and_then(|v| v.as_f64());
        let path = std::path::PathBuf::from(self.str_of(d, f.path));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let kind = self.str_of(d, f.kind).to_owned();
        let is_segment = self.str_of(d, f.doc_type) == "segment";
        // A still's one segment is the whole file: no time range to show.
        let timed = is_segment && kind != "image";
        let matched = self.matched_fields(d, words);
        let labels = self.strs_of(d, f.labels);
        let mut highlights = vec![];
        let snippet = if is_segment {
            // Labels, then the stretch of text around the matched words.
            let mut snippet = labels.join(" · ");
            let full = self.strs_of(d, f.text).concat();
            if !full.trim().is_empty() {
                let matched = snippets
                    .map(|s| s.snippet_from_doc(d))
                    .filter(|s| !s.is_empty());
                let (fragment, ranges) = match matched {
                    Some(m) => (m.fragment().to_owned(), m.highlighted().to_vec()),
                    None => {
                        let end = full.char_indices().nth(160).map_or(full.len(), |(i, _)| i);
                        (full[..end].to_owned(), vec![])
                    }
                };
                if !snippet.is_empty() {
                    snippet.push_str(" · ");
                }
                // Lines become " / " (two bytes longer each), so a range
                // moves by two bytes per line break before it.
                let shift = snippet.len();
                let at = |i: usize| shift + i + 2 * fragment[..i].matches('\n').count();
                highlights = ranges
                    .iter()
                    .map(|r| [at(r.start) as u32, at(r.end) as u32])
                    .collect();
                snippet.push_str(&fragment.replace('\n', " / "));
            }
            snippet
        } else {
            let mut parts = vec![name];
            parts.extend(self.strs_of(d, f.codec));
            parts.extend(self.strs_of(d, f.resolution));
            if let Some(d) = f64_of(f.duration_s) {
                parts.push(format!("{d:.1} s"));
            }
            parts.join(" · ")
        };
        let first = |field| self.strs_of(d, field).into_iter().next();
        Hit {
            path,
            kind,
            score,
            start_s: if timed { f64_of(f.start_s) } else { None },
            end_s: if timed { f64_of(f.end_s) } else { None },
            snippet,
            fields: matched,
            highlights,
            labels,
            faces: d.get_first(f.faces).and_then(|v| v.as_u64()).unwrap_or(0) as u32,
            plugin: first(f.plugin),
            speaker: first(f.speaker),
            similarity: None,
            time: d.get_first(f.time).and_then(|v| v.as_i64()).unwrap_or(0),
            duration_s: f64_of(f.duration_s),
        }
    }
}

/// The string value of `field` for `addr`, through a per-segment cache of
/// fast-field columns.
fn fast_str(
    searcher: &Searcher,
    columns: &mut HashMap<(u32, &'static str), Option<StrColumn>>,
    field: &'static str,
    addr: DocAddress,
) -> Result<String, IndexError> {
    let column = match columns.entry((addr.segment_ord, field)) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => e.insert(
            searcher
                .segment_reader(addr.segment_ord)
                .fast_fields()
                .str(field)?,
        ),
    };
    let mut out = String::new();
    if let Some(col) = column.as_ref()
        && let Some(ord) = col.term_ords(addr.doc_id).next()
    {
        col.ord_to_str(ord, &mut out)
            .map_err(|e| tantivy::TantivyError::IoError(e.into()))?;
    }
    Ok(out)
}

/// The least string greater than every string that starts with `prefix`
/// (its last character that can be, plus one); `None` if there is none.
fn successor(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = (last as u32 + 1..=char::MAX as u32).find_map(char::from_u32);
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}
