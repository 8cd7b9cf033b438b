//! The page's JSON: a search, asked with the same words and filters as
//! `vxctl search` and answered by the same [`Control::search`], with what a
//! browser needs beside it (thumbnail and media URLs, whether it can play
//! the file, the `mpv` command when it cannot).

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::json;
use vx_ctl_protocol::{Hit, Reply, SearchFilters, SearchMode, SearchRequest};

use super::http::{Request, Response, percent_encode_path};
use super::media::unplayable;
use crate::control::Control;

/// Files per search unless `limit` says otherwise, and the most it may say.
const DEFAULT_FILES: u32 = 20;
const MAX_FILES: u32 = 200;
/// Moments shown per file.
const MOMENTS_PER_FILE: u32 = 6;

/// The search the query string asks for: `q`, `mode`, `label` and `has`
/// (repeatable), `kind`, `path`, `after`, `before`, `min_duration`,
/// `max_duration`, `limit`, in the forms `vxctl search` takes.
pub fn search_request(r: &Request) -> Result<SearchRequest, String> {
    let mode = match r.param("mode").as_deref() {
        None | Some("hybrid") => SearchMode::Hybrid,
        Some("text") => SearchMode::Text,
        Some("semantic") => SearchMode::Semantic,
        Some(m) => return Err(format!("mode `{m}`: use text, semantic or hybrid")),
    };
    let one_of = |name: &str, allowed: &[&str]| -> Result<Vec<String>, String> {
        let values: Vec<String> = r
            .params(name)
            .into_iter()
            .filter(|v| !v.is_empty())
            .collect();
        match values.iter().find(|v| !allowed.contains(&v.as_str())) {
            Some(v) => Err(format!("{name} `{v}`: use {}", allowed.join(", "))),
            None => Ok(values),
        }
    };
    let date = |name| {
        r.param(name)
            .map(|v| vx_search_flags::parse_date(&v))
            .transpose()
    };
    let duration = |name| {
        r.param(name)
            .map(|v| vx_search_flags::parse_duration(&v))
            .transpose()
    };
    let path_prefix = match r.param("path") {
        Some(p) if !p.starts_with('/') => {
            return Err(format!("path `{p}`: give the folder from the root, /…"));
        }
        p => p.map(|p| vx_search_flags::absolute_prefix(Path::new("/"), Path::new(&p))),
    };
    let limit = match r.param("limit") {
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| (1..=MAX_FILES).contains(l))
            .ok_or_else(|| format!("limit `{l}`: give 1 to {MAX_FILES}"))?,
        None => DEFAULT_FILES,
    };
    let req = SearchRequest {
        query: r.param("q").unwrap_or_default(),
        limit,
        filters: SearchFilters {
            labels: r
                .params("label")
                .into_iter()
                .filter(|l| !l.is_empty())
                .collect(),
            has: one_of("has", &["faces", "text", "speech"])?,
            kind: one_of("kind", &["video", "audio", "image"])?.pop(),
            path_prefix,
            after: date("after")?,
            before: date("before")?,
            min_duration_s: duration("min_duration")?,
            max_duration_s: duration("max_duration")?,
        },
        mode,
        per_file: true,
        moments_per_file: MOMENTS_PER_FILE,
    };
    vx_search_flags::check_ranges(&req.filters)?;
    Ok(req)
}

#[derive(Serialize)]
struct FileResult {
    path: PathBuf,
    name: String,
    kind: String,
    time: i64,
    duration_s: Option<f64>,
    /// Where the browser gets the file.
    media: String,
    /// Why the browser cannot play it; `play` is the command that can.
    unplayable: Option<String>,
    play: String,
    moments: Vec<Moment>,
}

#[derive(Serialize)]
struct Moment {
    start_s: Option<f64>,
    end_s: Option<f64>,
    /// The snippet in pieces, every other one a match: [plain, match, plain…].
    snippet: Vec<String>,
    labels: Vec<String>,
    speaker: Option<String>,
    plugin: Option<String>,
    thumb: Option<String>,
    play: String,
}

/// `GET /api/search`: the files found, each with its moments.
pub fn search(control: &Control, r: &Request) -> Response {
    let req = match search_request(r) {
        Ok(req) => req,
        Err(e) => return Response::json(400, &json!({ "error": e })),
    };
    let reply = match control.search(&req) {
        Reply::Search(s) => s,
        Reply::Error(e) => return Response::json(400, &json!({ "error": e })),
        _ => return Response::json(500, &json!({ "error": "unexpected reply" })),
    };
    let mut files: Vec<FileResult> = vec![];
    for hit in &reply.hits {
        if files.last().is_none_or(|f| f.path != hit.path) {
            files.push(file_result(control, hit));
        }
        let file = files.last_mut().expect("pushed above");
        file.moments.push(moment(control, hit));
    }
    Response::json(
        200,
        &json!({ "mode": reply.mode, "warnings": reply.warnings, "files": files }),
    )
}

fn file_result(control: &Control, hit: &Hit) -> FileResult {
    let info = control.index.file_info(&hit.path).ok().flatten();
    let unplayable = info
        .as_ref()
        .map_or(Some("it is not in the index yet".into()), |i| {
            unplayable(&i.container, &i.codecs)
        });
    let whole = Hit {
        start_s: None,
        ..hit.clone()
    };
    FileResult {
        path: hit.path.clone(),
        name: hit
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        kind: hit.kind.clone(),
        time: hit.time,
        duration_s: hit.duration_s,
        media: format!(
            "/media{}",
            percent_encode_path(hit.path.as_os_str().as_bytes())
        ),
        unplayable,
        play: vx_shell::play_command(&whole),
        moments: vec![],
    }
}

fn moment(control: &Control, hit: &Hit) -> Moment {
    let scenes = control.index.thumbnails(&hit.path).unwrap_or_default();
    // The scene the moment starts in, else the one nearest to it.
    let at = hit.start_s.unwrap_or(0.0);
    let scene = scenes
        .iter()
        .find(|(start, end, _)| *start <= at && at < *end)
        .or_else(|| {
            scenes
                .iter()
                .min_by(|a, b| (a.0 - at).abs().total_cmp(&(b.0 - at).abs()))
        });
    // The thumbnail's mtime in its URL: a file indexed again gets new
    // pictures under the same names, and browsers keep thumbnails a day.
    let thumb = scene.and_then(|(_, _, t)| {
        let name = t.file_name()?.as_bytes();
        let modified = t.metadata().and_then(|m| m.modified()).ok()?;
        let v = modified
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_millis();
        Some(format!("/thumb/{}?v={v}", percent_encode_path(name)))
    });
    Moment {
        start_s: hit.start_s,
        end_s: hit.end_s,
        snippet: split_highlights(&hit.snippet, &hit.highlights),
        labels: hit.labels.clone(),
        speaker: hit.speaker.clone(),
        plugin: hit.plugin.clone(),
        thumb,
        play: vx_shell::play_command(hit),
    }
}

/// `snippet` cut at its highlighted byte ranges: plain, match, plain, …
/// (ranges out of order, overlapping or off a character boundary are
/// skipped), so the page marks matches without parsing any HTML.
fn split_highlights(snippet: &str, ranges: &[[u32; 2]]) -> Vec<String> {
    let mut parts = vec![];
    let mut at = 0;
    for &[a, b] in ranges {
        let (a, b) = (a as usize, b as usize);
        if a < at || b <= a || !snippet.is_char_boundary(a) || !snippet.is_char_boundary(b) {
            continue;
        }
        let Some(matched) = snippet.get(a..b) else {
            continue;
        };
        parts.push(snippet[at..a].to_owned());
        parts.push(matched.to_owned());
        at = b;
    }
    parts.push(snippet[at..].to_owned());
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(query: &str) -> Request {
        let raw = format!("GET /api/search?{query} HTTP/1.1\r\nHost: x\r\n\r\n");
        super::super::http::read_request(&mut raw.as_bytes()).unwrap()
    }

    #[test]
    fn the_query_string_takes_vxctls_forms() {
        let req = search_request(&request(
            "q=red+bus&mode=text&has=faces&kind=video&label=dining%20table\
             &path=%2Fm%2Fclips%2F..%2Ftrips&after=%40100&before=%40200&min_duration=1%3A00",
        ))
        .unwrap();
        assert_eq!(req.query, "red bus");
        assert_eq!(req.mode, SearchMode::Text);
        assert_eq!(req.filters.has, ["faces"]);
        assert_eq!(req.filters.kind.as_deref(), Some("video"));
        assert_eq!(req.filters.labels, ["dining table"]);
        assert_eq!(
            req.filters.path_prefix.as_deref(),
            Some(Path::new("/m/trips"))
        );
        assert_eq!(
            (req.filters.after, req.filters.before),
            (Some(100), Some(200))
        );
        assert_eq!(req.filters.min_duration_s, Some(60.0));
        assert!(req.per_file);
        assert_eq!(req.limit, DEFAULT_FILES);
        let empty = search_request(&request("q=&kind=&has=")).unwrap();
        assert_eq!((empty.query.as_str(), empty.filters.kind), ("", None));
    }

    #[test]
    fn bad_filters_say_what_works() {
        for (query, says) in [
            ("after=June", "`June` is not a date"),
            ("min_duration=long", "is not a duration"),
            ("after=%40200&before=%40100", "is not before"),
            ("kind=movie", "use video, audio, image"),
            ("has=cats", "use faces, text, speech"),
            ("mode=fuzzy", "use text, semantic or hybrid"),
            ("path=clips", "from the root"),
            ("limit=0", "give 1 to"),
        ] {
            let e = search_request(&request(query)).unwrap_err();
            assert!(e.contains(says), "{query}: {e}");
        }
    }

    #[test]
    fn snippets_split_at_their_highlights() {
        assert_eq!(
            split_highlights("a red bus here", &[[2, 5], [6, 9]]),
            ["a ", "red", " ", "bus", " here"]
        );
        assert_eq!(split_highlights("plain", &[]), ["plain"]);
        // é is two bytes: a range inside it is skipped, not a panic.
        assert_eq!(split_highlights("é x", &[[1, 2], [3, 4]]), ["é ", "x", ""]);
        assert_eq!(split_highlights("abc", &[[1, 2], [0, 1]]), ["a", "b", "c"]);
    }
}
