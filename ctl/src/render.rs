//! What vxctl prints: text for people and the `--json` shapes for scripts.

use std::fmt::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use vx_ctl_protocol::{FileReport, Hit, SearchMode, SearchReply, Status};
use vx_search_flags::local_time;

use vx_shell as shell;

/// Appends one line to a `String`.
macro_rules! outln {
    ($out:expr) => { $out.push('\n') };
    ($out:expr, $($arg:tt)*) => {{
        writeln!($out, $($arg)*).expect("writing to a String")
    }};
}

pub fn status(s: &Status) -> String {
    let mut out = String::new();
    let f = &s.files;
    let mood = if s.paused {
        "paused"
    } else if s.stalled.is_some() {
        "held up"
    } else if s.idle {
        "idle"
    } else {
        "working"
    };
    outln!(out, "vxd {} (pid {}) — {mood}", s.version, s.pid);
    if let Some(why) = &s.stalled {
        outln!(out, "⚠ {}", shell::printable(why));
    }
    let mut row = |label: &str, text: String| outln!(out, "{label:<10}{text}");
    for (i, w) in s.watched.iter().enumerate() {
        row(if i == 0 { "watching" } else { "" }, shell::display(w));
    }
    let done = f.done;
    let pct = if f.seen > 0 {
        100.0 * done.min(f.seen) as f64 / f.seen as f64
    } else {
        100.0
    };
    row(
        "files",
        format!(
            "{done} of {} done ({pct:.0} %) · {} indexed · {} failed · {} queued · {} in progress",
            f.seen, f.indexed, f.failed, f.queued, f.in_progress
        ),
    );
    if let (Some(rate), Some(eta)) = (s.files_per_min, s.eta_s) {
        row(
            "speed",
            format!("{rate:.1} files/min · about {} left", duration(eta)),
        );
    }
    if f.reused > 0 {
        row(
            "reused",
            format!(
                "{} file(s) matched indexed content (renames, copies)",
                f.reused
            ),
        );
    }
    for (i, c) in s.current.iter().enumerate() {
        let what = c.plugin.as_deref().unwrap_or("decoding");
        row(
            if i == 0 { "now" } else { "" },
            format!("{what}: {}", shell::display(&c.path)),
        );
    }
    row("index", bytes(s.index_bytes));
    if s.vectors > 0 || s.embed_backlog > 0 {
        let waiting = match s.embed_backlog {
            0 => String::new(),
            n => format!(" · {n} segment(s) waiting to be embedded"),
        };
        row(
            "meaning",
            format!("{} sentence vectors{waiting}", s.vectors),
        );
    }
    let b = &s.budget;
    if b.cores > 0 {
        let hosts: Vec<String> = b.hosts.iter().map(|(p, n)| format!("{p} {n}")).collect();
        let hours = b
            .index_hours
            .as_ref()
            .map(|h| format!(" · indexes {h}"))
            .unwrap_or_default();
        row(
            "budget",
            format!(
                "{} cores · hosts and decoders {} of {} at peak · hosts: {}{hours}",
                b.cores,
                bytes(b.planned_mb << 20),
                bytes(b.memory_mb << 20),
                hosts.join(", ")
            ),
        );
    }
    if let Some(c) = &s.cluster {
        if !c.connected {
            row(
                "cluster",
                format!("⚠ waiting for NATS at {}", shell::printable(&c.nats)),
            );
        }
        row(
            "cluster",
            format!(
                "{} at {} · {} job(s) waiting for a worker · {} in progress · {} sent from here",
                c.role,
                shell::printable(&c.nats),
                c.backlog,
                c.in_flight,
                c.waiting_here
            ),
        );
        for w in &c.workers {
            row(
                "",
                format!(
                    "worker {}  {} done · {} of {} slot(s) busy · load {:.2} · seen {:.0} s ago · {}",
                    shell::printable(&w.name),
                    w.done,
                    w.busy,
                    w.slots,
                    w.load,
                    w.last_seen_s,
                    w.plugins.join(", ")
                ),
            );
        }
    }
    let width = s.plugins.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for (i, p) in s.plugins.iter().enumerate() {
        let state = serde_json::to_value(p.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let pid = p.pid.map_or("-".into(), |p| p.to_string());
        let err = p
            .last_error
            .as_ref()
            .map(|e| format!("  ({})", shell::printable(e)))
            .unwrap_or_default();
        row(
            if i == 0 { "plugins" } else { "" },
            format!(
                "{:<width$}  {state:<8}  pid {pid:<7}  restarts {}  crashes {}{err}",
                p.name, p.restarts, p.crashes
            ),
        );
    }
    for (i, w) in s.warnings.iter().enumerate() {
        row(if i == 0 { "warnings" } else { "" }, shell::printable(w));
    }
    for (i, ff) in s.failed_files.iter().enumerate() {
        row(
            if i == 0 { "failed" } else { "" },
            format!(
                "{}  {}: {}",
                shell::display(&ff.path),
                ff.plugin,
                shell::printable(&ff.reason)
            ),
        );
    }
    if s.failed_files_omitted > 0 {
        row(
            "",
            format!(
                "… and {} more (vxctl status FILE shows any one)",
                s.failed_files_omitted
            ),
        );
    }
    out
}

pub fn file(r: &FileReport) -> String {
    let mut out = String::new();
    outln!(out, "{}", shell::display(&r.path));
    outln!(out, "{:<10}{}", "state", r.state);
    if let Some(i) = &r.indexed {
        let mut what = vec![i.kind.clone()];
        what.extend(i.codecs.iter().cloned());
        what.extend(i.resolution.iter().cloned());
        if let Some(d) = i.duration_s {
            what.push(duration(d));
        }
        outln!(out, "{:<10}{}", "media", what.join(" · "));
        outln!(
            out,
            "{:<10}{} bytes, content {}",
            "file",
            i.size,
            &i.content[..i.content.len().min(16)]
        );
        outln!(
            out,
            "{:<10}{} s since the epoch, by {}",
            "indexed",
            i.indexed_at,
            i.plugin_set
        );
        for (n, (plugin, count)) in i.segments.iter().enumerate() {
            outln!(
                out,
                "{:<10}{plugin}: {count} segment(s)",
                if n == 0 { "results" } else { "" }
            );
        }
        if !i.labels.is_empty() {
            outln!(out, "{:<10}{}", "found", i.labels.join(", "));
        }
        if i.faces > 0 {
            outln!(out, "{:<10}up to {} at once", "faces", i.faces);
        }
        if i.transcript_chars > 0 {
            outln!(
                out,
                "{:<10}{} characters, {} speaker(s)",
                "speech",
                i.transcript_chars,
                i.speakers
            );
        }
    }
    for (n, f) in r.failures.iter().enumerate() {
        outln!(
            out,
            "{:<10}{}: {}",
            if n == 0 { "failed" } else { "" },
            f.plugin,
            shell::printable(&f.reason)
        );
    }
    out
}

/// A live bar of files done out of seen, with the current file, until idle.
pub fn watch_progress(mut status: impl FnMut() -> anyhow::Result<Status>) -> anyhow::Result<()> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} files  {msg}")
            .expect("valid template")
            .progress_chars("█▉░"),
    );
    loop {
        let s = status()?;
        bar.set_length(s.files.seen);
        bar.set_position(s.files.done.min(s.files.seen));
        let eta = s
            .eta_s
            .map(|e| format!("  ~{} left", duration(e)))
            .unwrap_or_default();
        let now = s
            .current
            .first()
            .map(|c| shell::display(&c.path))
            .unwrap_or_default();
        bar.set_message(format!(
            "{}{eta}  {now}",
            if s.paused { "paused" } else { "" }
        ));
        if s.idle {
            bar.finish_with_message(format!("idle; {} failed", s.files.failed));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Lines for stderr about how the results were found: vxd's warnings, and
/// the ranking used when it is not the one asked for.
pub fn search_notes(reply: &SearchReply, asked: SearchMode) -> Vec<String> {
    let mut notes: Vec<String> = reply
        .warnings
        .iter()
        .map(|w| format!("warning: {}", shell::printable(w)))
        .collect();
    if reply.mode != asked {
        notes.push(format!(
            "ranked by {} instead of {}",
            describe(reply.mode),
            describe(asked)
        ));
    }
    notes
}

fn describe(mode: SearchMode) -> &'static str {
    match mode {
        SearchMode::Text => "text (the words themselves)",
        SearchMode::Semantic => "meaning (semantic)",
        SearchMode::Hybrid => "text and meaning (hybrid)",
    }
}

/// One file of a grouped reply: its hits, best first.
pub struct FileHits<'a> {
    pub hits: Vec<&'a Hit>,
}

impl FileHits<'_> {
    fn first(&self) -> &Hit {
        self.hits[0]
    }

    pub fn best_score(&self) -> f32 {
        self.hits
            .iter()
            .map(|h| h.score)
            .fold(f32::NEG_INFINITY, f32::max)
    }
}

/// Hits grouped by file, in the order each file first appears (vxd sends a
/// file's hits together, best file first).
pub fn group(hits: &[Hit]) -> Vec<FileHits<'_>> {
    let mut files: Vec<FileHits> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for h in hits {
        let i = *index.entry(&h.path).or_insert_with(|| {
            files.push(FileHits { hits: Vec::new() });
            files.len() - 1
        });
        files[i].hits.push(h);
    }
    files
}

/// The default text: one block per file, then its moments with a command
/// that plays each. `style` adds bold highlights and dim notes (a terminal).
pub fn hits_grouped(reply: &SearchReply, style: bool) -> String {
    let mut out = String::new();
    if reply.hits.is_empty() {
        outln!(out, "no hits");
        return out;
    }
    for (i, f) in group(&reply.hits).iter().enumerate() {
        let h = f.first();
        let mut about = vec![h.kind.clone()];
        if h.time != 0 {
            about.push(local_time(h.time));
        }
        if let Some(d) = h.duration_s.filter(|&d| d > 0.0) {
            about.push(duration(d));
        }
        outln!(
            out,
            "{:>3}. {}  [{}]",
            i + 1,
            shell::display(&h.path),
            about.join(" · ")
        );
        for m in &f.hits {
            let when = match (m.start_s, m.end_s) {
                (Some(a), Some(b)) => format!("{}–{}", timestamp(a), timestamp(b)),
                _ => "whole file".into(),
            };
            outln!(
                out,
                "     {when}{}  {}{}",
                moment_notes(m),
                highlighted(&m.snippet, &m.highlights, style),
                similarity(m, style)
            );
            outln!(out, "       {}", shell::play_command(m));
        }
    }
    out
}

/// `--segments`: every moment on its own, best first.
pub fn hits_flat(reply: &SearchReply, style: bool) -> String {
    let mut out = String::new();
    if reply.hits.is_empty() {
        outln!(out, "no hits");
        return out;
    }
    for (i, h) in reply.hits.iter().enumerate() {
        let range = match (h.start_s, h.end_s) {
            (Some(a), Some(b)) => format!("  {}–{}", timestamp(a), timestamp(b)),
            _ => String::new(),
        };
        outln!(
            out,
            "{:>3}. {}  [{}]{range}{}{}",
            i + 1,
            shell::display(&h.path),
            h.kind,
            moment_notes(h),
            similarity(h, style)
        );
        let matched = if h.fields.is_empty() {
            String::new()
        } else {
            format!("  (matched: {})", h.fields.join(", "))
        };
        outln!(
            out,
            "     {}{matched}",
            highlighted(&h.snippet, &h.highlights, style)
        );
        outln!(out, "     {}", shell::play_command(h));
    }
    out
}

/// "  2 faces  speaker 1", or nothing.
fn moment_notes(h: &Hit) -> String {
    let faces = match h.faces {
        0 => String::new(),
        1 => "  1 face".into(),
        n => format!("  {n} faces"),
    };
    let speaker = h
        .speaker
        .as_ref()
        .map(|s| format!("  {}", shell::printable(s)))
        .unwrap_or_default();
    faces + &speaker
}

/// "  ≈0.62" (dim on a terminal) for a hit found by meaning.
fn similarity(h: &Hit, style: bool) -> String {
    match h.similarity {
        Some(s) if style => format!("  \x1b[2m≈{s:.2}\x1b[0m"),
        Some(s) => format!("  ≈{s:.2}"),
        None => String::new(),
    }
}

/// `snippet` with its matched ranges in bold when `style`, and no control
/// characters either way.
fn highlighted(snippet: &str, ranges: &[[u32; 2]], style: bool) -> String {
    if !style {
        return shell::printable(snippet);
    }
    let mut out = String::with_capacity(snippet.len() + ranges.len() * 8);
    let mut at = 0;
    for &[a, b] in ranges {
        let (a, b) = (a as usize, b as usize);
        let (Some(before), Some(word)) = (snippet.get(at..a), snippet.get(a..b)) else {
            continue;
        };
        out.push_str(&shell::printable(before));
        out.push_str("\x1b[1m");
        out.push_str(&shell::printable(word));
        out.push_str("\x1b[0m");
        at = b;
    }
    out.push_str(&shell::printable(snippet.get(at..).unwrap_or_default()));
    out
}

/// A hit as `--json` prints it: every protocol field, plus `play`.
#[derive(Serialize)]
pub struct JsonHit {
    #[serde(flatten)]
    hit: Hit,
    play: String,
}

impl JsonHit {
    fn new(h: &Hit) -> Self {
        // serde refuses a path that is not UTF-8; `play` keeps its bytes.
        let path = PathBuf::from(h.path.to_string_lossy().into_owned());
        JsonHit {
            hit: Hit { path, ..h.clone() },
            play: shell::play_command(h),
        }
    }
}

#[derive(Serialize)]
pub struct JsonFile {
    path: PathBuf,
    kind: String,
    time: i64,
    duration_s: Option<f64>,
    /// The best score of its moments.
    score: f32,
    moments: Vec<JsonHit>,
}

/// `vxctl search --json`.
#[derive(Serialize)]
pub struct JsonGrouped<'a> {
    mode: SearchMode,
    warnings: &'a [String],
    files: Vec<JsonFile>,
}

/// `vxctl search --segments --json`: the reply as vxd sent it, plus `play`.
#[derive(Serialize)]
pub struct JsonFlat<'a> {
    mode: SearchMode,
    warnings: &'a [String],
    hits: Vec<JsonHit>,
}

pub fn json_grouped(reply: &SearchReply) -> JsonGrouped<'_> {
    let files = group(&reply.hits)
        .iter()
        .map(|f| {
            let moments: Vec<JsonHit> = f.hits.iter().map(|h| JsonHit::new(h)).collect();
            let first = &moments[0].hit;
            JsonFile {
                path: first.path.clone(),
                kind: first.kind.clone(),
                time: first.time,
                duration_s: first.duration_s,
                score: f.best_score(),
                moments,
            }
        })
        .collect();
    JsonGrouped {
        mode: reply.mode,
        warnings: &reply.warnings,
        files,
    }
}

pub fn json_flat(reply: &SearchReply) -> JsonFlat<'_> {
    JsonFlat {
        mode: reply.mode,
        warnings: &reply.warnings,
        hits: reply.hits.iter().map(JsonHit::new).collect(),
    }
}

/// "812 B", "45.3 kB", "1.2 GB".
fn bytes(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < units.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// "42 s", "3 min 5 s", "2 h 10 min".
fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s / 60 % 60),
    }
}

/// A position in a recording: "1:02.6", "1:02:03.0".
fn timestamp(s: f64) -> String {
    let tenths = (s.max(0.0) * 10.0).round() as u64;
    let (h, m, sec, t) = (
        tenths / 36_000,
        tenths / 600 % 60,
        tenths / 10 % 60,
        tenths % 10,
    );
    if h > 0 {
        format!("{h}:{m:02}:{sec:02}.{t}")
    } else {
        format!("{m}:{sec:02}.{t}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sizes_read_like_a_person_says_them() {
        assert_eq!(bytes(812), "812 B");
        assert_eq!(bytes(45_300), "45.3 kB");
        assert_eq!(bytes(1_234_000_000), "1.2 GB");
    }

    #[test]
    fn durations_read_like_a_person_says_them() {
        assert_eq!(duration(42.4), "42 s");
        assert_eq!(duration(185.0), "3 min 5 s");
        assert_eq!(duration(7800.0), "2 h 10 min");
    }

    #[test]
    fn timestamps_read_like_a_player() {
        assert_eq!(timestamp(0.0), "0:00.0");
        assert_eq!(timestamp(62.55), "1:02.6");
        assert_eq!(timestamp(3723.0), "1:02:03.0");
    }

    fn hit(path: &str, score: f32, start_s: Option<f64>) -> Hit {
        Hit {
            path: path.into(),
            kind: "video".into(),
            score,
            start_s,
            end_s: start_s.map(|s| s + 4.5),
            snippet: "a red bus".into(),
            fields: vec!["labels".into()],
            highlights: vec![[6, 9]],
            labels: vec!["bus".into()],
            faces: 0,
            plugin: Some("objects".into()),
            speaker: None,
            similarity: start_s.map(|_| 0.625),
            time: 1_717_200_000,
            duration_s: Some(120.0),
        }
    }

    fn reply() -> SearchReply {
        SearchReply {
            hits: vec![
                hit("/m/a.mp4", 3.0, Some(83.04)),
                hit("/m/a.mp4", 2.0, None),
                hit("/m/b'x.mp4", 2.5, Some(1.0)),
                hit("/m/a.mp4", 1.0, Some(5.0)),
            ],
            mode: SearchMode::Text,
            warnings: vec!["semantic search unavailable: no embedder".into()],
        }
    }

    #[test]
    fn grouping_keeps_each_files_hits_together_in_first_seen_order() {
        let r = reply();
        let g = group(&r.hits);
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].hits.len(), 3);
        assert_eq!(g[0].best_score(), 3.0);
        assert_eq!(g[1].first().path, PathBuf::from("/m/b'x.mp4"));
    }

    #[test]
    fn grouped_json_has_files_with_their_moments() {
        let v = serde_json::to_value(json_grouped(&reply())).unwrap();
        assert_eq!(v["mode"], "text");
        assert_eq!(
            v["warnings"],
            json!(["semantic search unavailable: no embedder"])
        );
        let files = v["files"].as_array().unwrap();
        assert_eq!(files.len(), 2);
        let a = &files[0];
        let mut keys: Vec<&str> = a.as_object().unwrap().keys().map(|k| k.as_str()).collect();
        keys.sort();
        assert_eq!(
            keys,
            ["duration_s", "kind", "moments", "path", "score", "time"]
        );
        assert_eq!(a["path"], "/m/a.mp4");
        assert_eq!(a["kind"], "video");
        assert_eq!(a["time"], 1_717_200_000);
        assert_eq!(a["duration_s"], 120.0);
        assert_eq!(a["score"], 3.0);
        let m = &a["moments"][0];
        assert_eq!(m["play"], "mpv --start=83.0 -- '/m/a.mp4'");
        assert_eq!(m["start_s"], 83.04);
        assert_eq!(m["similarity"], 0.625);
        assert_eq!(a["moments"][1]["play"], "mpv -- '/m/a.mp4'");
        assert_eq!(a["moments"][1]["similarity"], serde_json::Value::Null);
        assert_eq!(
            files[1]["moments"][0]["play"],
            r"mpv --start=1.0 -- '/m/b'\''x.mp4'"
        );
        assert!(v.get("hits").is_none());
    }

    #[test]
    fn flat_json_keeps_every_field_of_a_hit_and_adds_play() {
        let v = serde_json::to_value(json_flat(&reply())).unwrap();
        assert_eq!(v["mode"], "text");
        let hits = v["hits"].as_array().unwrap();
        assert_eq!(hits.len(), 4);
        let mut keys: Vec<&str> = hits[0]
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "duration_s",
                "end_s",
                "faces",
                "fields",
                "highlights",
                "kind",
                "labels",
                "path",
                "play",
                "plugin",
                "score",
                "similarity",
                "snippet",
                "speaker",
                "start_s",
                "time",
            ]
        );
        assert_eq!(hits[0]["highlights"], json!([[6, 9]]));
        assert_eq!(hits[3]["path"], "/m/a.mp4");
    }

    #[test]
    fn json_survives_a_path_that_is_not_utf8() {
        use std::os::unix::ffi::OsStringExt;
        let mut r = reply();
        r.hits[0].path = std::ffi::OsString::from_vec(b"/m/\xff.mp4".to_vec()).into();
        let v = serde_json::to_value(json_flat(&r)).unwrap();
        assert_eq!(v["hits"][0]["path"], "/m/\u{FFFD}.mp4");
        assert_eq!(v["hits"][0]["play"], r"mpv --start=83.0 -- $'/m/\xff.mp4'");
    }

    #[test]
    fn grouped_text_shows_each_file_once_with_its_moments() {
        let text = hits_grouped(&reply(), false);
        let lines: Vec<&str> = text.lines().collect();
        let when = local_time(1_717_200_000);
        assert_eq!(
            lines[0],
            format!("  1. /m/a.mp4  [video · {when} · 2 min 0 s]")
        );
        assert_eq!(lines[1], "     1:23.0–1:27.5  a red bus  ≈0.62");
        assert_eq!(lines[2], "       mpv --start=83.0 -- '/m/a.mp4'");
        assert_eq!(lines[3], "     whole file  a red bus");
        assert_eq!(lines[4], "       mpv -- '/m/a.mp4'");
        assert!(lines[7].starts_with("  2. /m/b'x.mp4  [video"), "{text}");
        assert_eq!(lines.len(), 10);
        assert_eq!(hits_grouped(&SearchReply::default(), false), "no hits\n");
    }

    #[test]
    fn flat_text_lists_every_moment_with_its_play_command() {
        let text = hits_flat(&reply(), false);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "  1. /m/a.mp4  [video]  1:23.0–1:27.5  ≈0.62");
        assert_eq!(lines[1], "     a red bus  (matched: labels)");
        assert_eq!(lines[2], "     mpv --start=83.0 -- '/m/a.mp4'");
        assert_eq!(lines.len(), 12);
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let mut r = reply();
        r.hits[0].path = "/m/\x1b]0;pwned\x07.mp4".into();
        r.hits[0].snippet = "a \x1b[2Jbus".into();
        r.hits[0].highlights = vec![[6, 9]];
        for text in [hits_grouped(&r, true), hits_flat(&r, false)] {
            let bad: Vec<&str> = text
                .split("\x1b[1m")
                .flat_map(|s| s.split("\x1b[0m"))
                .flat_map(|s| s.split("\x1b[2m"))
                .filter(|s| s.chars().any(|c| c.is_control() && c != '\n'))
                .collect();
            assert!(bad.is_empty(), "{text:?}");
        }
        assert!(hits_grouped(&r, true).contains("a \\x1b[2J\x1b[1mbus\x1b[0m"));
    }

    #[test]
    fn notes_say_when_the_ranking_differs() {
        let r = reply();
        let notes = search_notes(&r, SearchMode::Hybrid);
        assert_eq!(notes.len(), 2);
        assert!(notes[0].starts_with("warning: semantic search unavailable"));
        assert!(notes[1].starts_with("ranked by text"));
        assert_eq!(search_notes(&r, SearchMode::Text).len(), 1);
    }
}
