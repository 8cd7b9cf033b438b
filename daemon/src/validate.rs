//! A host is untrusted: what it sends is checked before it is indexed.
//!
//! Times must be finite, not negative and in order; counts and lengths are
//! capped; control characters (terminal escapes) are stripped from every
//! string; a thumbnail must lie inside the host's artefact folder. What had
//! to be dropped or cut is returned as notes, for the log and status.

use std::path::Path;

use vx_plugin_protocol::{Detection, SegmentResult};

/// Segments kept from one reply.
pub const MAX_SEGMENTS: usize = 1000;
/// Labels kept per segment, and characters per label.
pub const MAX_LABELS: usize = 64;
const MAX_LABEL_CHARS: usize = 64;
/// Detections kept per segment.
const MAX_DETECTIONS: usize = 256;
/// Bytes of text kept per segment (and per detection).
const MAX_TEXT_BYTES: usize = 64 * 1024;

/// The segments worth indexing, and what was wrong with the rest.
pub fn check(
    segments: Vec<SegmentResult>,
    artefact_dir: &Path,
) -> (Vec<SegmentResult>, Vec<String>) {
    let total = segments.len();
    let mut bad_times = 0;
    let mut outside = 0;
    let mut cut = 0;
    let artefacts = artefact_dir.canonicalize().ok();
    let mut out = Vec::with_capacity(total.min(MAX_SEGMENTS));
    for mut s in segments {
        if !time_range_ok(s.start_s, s.end_s) {
            bad_times += 1;
            continue;
        }
        if out.len() == MAX_SEGMENTS {
            continue;
        }
        let before = (s.labels.len(), s.text.len(), s.detections.len());
        s.text = clean(&s.text, MAX_TEXT_BYTES, true);
        s.labels = clean_labels(std::mem::take(&mut s.labels));
        s.speaker = s.speaker.map(|v| clean(&v, MAX_LABEL_CHARS, false));
        s.language = s.language.map(|v| clean(&v, MAX_LABEL_CHARS, false));
        s.detections.retain(detection_ok);
        s.detections.truncate(MAX_DETECTIONS);
        for d in &mut s.detections {
            d.label = clean(&d.label, MAX_LABEL_CHARS, false);
            d.text = clean(&d.text, MAX_TEXT_BYTES, true);
        }
        cut += usize::from(before != (s.labels.len(), s.text.len(), s.detections.len()));
        if let Some(t) = &s.thumbnail {
            let inside = match (t.canonicalize(), &artefacts) {
                (Ok(t), Some(dir)) => t.starts_with(dir),
                _ => false,
            };
            if !inside {
                outside += 1;
                s.thumbnail = None;
            }
        }
        out.push(s);
    }
    let mut notes = vec![];
    if bad_times > 0 {
        notes.push(format!(
            "dropped {bad_times} segment(s) with a time that is not a number, negative or reversed"
        ));
    }
    let over = total - bad_times - out.len();
    if over > 0 {
        notes.push(format!(
            "kept the first {MAX_SEGMENTS} of {} segments",
            total - bad_times
        ));
    }
    if cut > 0 {
        notes.push(format!(
            "cut {cut} segment(s) to the limits on labels, text and detections"
        ));
    }
    if outside > 0 {
        notes.push(format!(
            "ignored {outside} thumbnail(s) outside {}",
            artefact_dir.display()
        ));
    }
    (out, notes)
}

fn time_range_ok(start: f64, end: f64) -> bool {
    start.is_finite() && end.is_finite() && start >= 0.0 && end >= start
}

fn detection_ok(d: &Detection) -> bool {
    d.score.is_finite()
        && d.pts_s.is_finite()
        && d.bbox.iter().all(|v| v.is_finite())
        && d.landmarks.iter().flatten().all(|v| v.is_finite())
}

fn clean_labels(labels: Vec<String>) -> Vec<String> {
    let mut out: Vec<String> = vec![];
    for l in labels {
        let l = clean(&l, MAX_LABEL_CHARS, false);
        if !l.trim().is_empty() && !out.contains(&l) {
            out.push(l);
        }
        if out.len() == MAX_LABELS {
            break;
        }
    }
    out
}

/// `s` without control characters (keeping line breaks and tabs where
/// `multiline`), cut to at most `max` bytes on a character boundary.
fn clean(s: &str, max: usize, multiline: bool) -> String {
    let mut out = String::with_capacity(s.len().min(max));
    for c in s.chars() {
        let keep = !c.is_control() || (multiline && (c == '\n' || c == '\t'));
        if !keep {
            continue;
        }
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(start_s: f64, end_s: f64) -> SegmentResult {
        SegmentResult {
            start_s,
            end_s,
            labels: vec!["x".into()],
            ..Default::default()
        }
    }

    #[test]
    fn impossible_times_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (kept, notes) = check(
            vec![
                at(f64::NAN, 1.0),
                at(0.0, f64::INFINITY),
                at(-1.0, 2.0),
                at(3.0, 1.0),
                at(1.0, 1.0),
                at(0.0, 5.5),
            ],
            dir.path(),
        );
        let times: Vec<_> = kept.iter().map(|s| (s.start_s, s.end_s)).collect();
        assert_eq!(times, [(1.0, 1.0), (0.0, 5.5)]);
        assert_eq!(notes.len(), 1, "{notes:?}");
    }

    #[test]
    fn counts_lengths_and_escapes_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let mut big = at(0.0, 1.0);
        big.labels = (0..500)
            .map(|i| format!("l{i}"))
            .chain(["\u{1b}[2Jx".into()])
            .collect();
        big.text = format!(
            "\u{1b}]0;owned\u{7}line one\nline two{}",
            "é".repeat(100_000)
        );
        big.speaker = Some("\u{1b}[31mspeaker 1".into());
        let mut many = vec![big];
        many.extend((0..2000).map(|_| at(0.0, 1.0)));
        let (kept, notes) = check(many, dir.path());
        assert_eq!(kept.len(), MAX_SEGMENTS);
        let s = &kept[0];
        assert_eq!(s.labels.len(), MAX_LABELS);
        assert!(
            s.text.starts_with("]0;ownedline one\nline two"),
            "{:?}",
            &s.text[..30]
        );
        assert!(s.text.len() <= MAX_TEXT_BYTES);
        assert_eq!(s.speaker.as_deref(), Some("[31mspeaker 1"));
        assert_eq!(notes.len(), 2, "{notes:?}");
    }

    #[test]
    fn thumbnails_must_lie_in_the_artefact_folder() {
        let dir = tempfile::tempdir().unwrap();
        let artefacts = dir.path().join("thumbnails");
        std::fs::create_dir_all(&artefacts).unwrap();
        std::fs::write(artefacts.join("ok.jpg"), b"jpg").unwrap();
        std::fs::write(dir.path().join("secret"), b"no").unwrap();
        let with = |p: std::path::PathBuf| SegmentResult {
            thumbnail: Some(p),
            ..at(0.0, 1.0)
        };
        let (kept, notes) = check(
            vec![
                with(artefacts.join("ok.jpg")),
                with(artefacts.join("../secret")),
                with("/etc/passwd".into()),
                with(artefacts.join("missing.jpg")),
            ],
            &artefacts,
        );
        let thumbs: Vec<bool> = kept.iter().map(|s| s.thumbnail.is_some()).collect();
        assert_eq!(thumbs, [true, false, false, false]);
        assert_eq!(notes.len(), 1);
    }
}
