//! From text per frame to segments: a run of consecutive frames showing the
//! same text becomes one segment.
//!
//! "The same" means a [`similarity`] of at least [`SAME_TEXT`] between the
//! whitespace-collapsed text of a frame and that of the run's first frame,
//! so a letter misread in one frame does not split a caption in two, while a
//! changed word in a short caption does. Comparing with the first frame,
//! not the previous one, keeps slowly scrolling text from chaining into one
//! long segment. Frames with no text end a run and give nothing.

use std::ops::Range;

use vx_plugin_api::{Detection, SegmentResult};

use crate::Line;
use crate::text::{normalise, similarity};

/// Least similarity for two frames' texts to be one segment.
pub const SAME_TEXT: f32 = 0.9;

/// What was read in one frame, and the time it stands for.
#[derive(Debug, Clone)]
pub struct FrameText {
    pub pts_s: f64,
    pub span: (f64, f64),
    pub lines: Vec<Line>,
}

impl FrameText {
    fn text(&self) -> String {
        self.lines
            .iter()
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn mean_score(&self) -> f32 {
        self.lines.iter().map(|l| l.score).sum::<f32>() / self.lines.len().max(1) as f32
    }
}

/// Index ranges of the runs of consecutive frames with the same, non-empty text.
pub fn runs(texts: &[String]) -> Vec<Range<usize>> {
    let texts: Vec<String> = texts.iter().map(|t| normalise(t)).collect();
    let mut runs: Vec<Range<usize>> = vec![];
    let mut open = false;
    for (i, t) in texts.iter().enumerate() {
        if t.is_empty() {
            open = false;
            continue;
        }
        match runs.last_mut() {
            Some(run) if open && similarity(&texts[run.start], t) >= SAME_TEXT => run.end = i + 1,
            _ => {
                runs.push(i..i + 1);
                open = true;
            }
        }
    }
    runs
}

/// One segment per run: its time from the run's first to last frame, its
/// text and line detections from the run's most confident frame.
pub fn segments(frames: &[FrameText]) -> Vec<SegmentResult> {
    let texts: Vec<String> = frames.iter().map(FrameText::text).collect();
    runs(&texts)
        .into_iter()
        .map(|run| {
            let best = run
                .clone()
                .max_by(|&a, &b| {
                    frames[a]
                        .mean_score()
                        .total_cmp(&frames[b].mean_score())
                        .then(b.cmp(&a))
                })
                .expect("runs are not empty");
            let frame = &frames[best];
            SegmentResult {
                start_s: frames[run.start].span.0,
                end_s: frames[run.end - 1].span.1,
                text: texts[best].clone(),
                labels: vec!["text".into()],
                detections: frame
                    .lines
                    .iter()
                    .map(|l| Detection {
                        label: "text".into(),
                        score: l.score,
                        bbox: l.bbox,
                        text: l.text.clone(),
                        pts_s: frame.pts_s,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(t: f64, lines: &[(&str, f32)]) -> FrameText {
        FrameText {
            pts_s: t,
            span: (t, t + 1.0),
            lines: lines
                .iter()
                .map(|&(text, score)| Line {
                    text: text.into(),
                    score,
                    bbox: [0.1, 0.2, 0.9, 0.3],
                })
                .collect(),
        }
    }

    #[test]
    fn runs_merge_near_identical_text_and_split_on_change_or_blank() {
        let t = |s: &str| s.to_owned();
        let texts = [
            t("Invoice 4471 is overdue"),
            t("Invoice  4471 is\noverdue"), // whitespace only
            t("Invoice 4471 is overdve"),   // one letter misread: 96 %
            t("Invoice 9999 is overdue"),   // four characters changed: 83 %
            t(""),
            t("Invoice 9999 is overdue"), // same text after a gap: a new run
            t("Q3 roadmap"),
        ];
        assert_eq!(runs(&texts), [0..3, 3..4, 5..6, 6..7]);
        assert!(runs(&[t(""), t(" \n")]).is_empty());
    }

    #[test]
    fn segment_spans_its_run_and_takes_the_most_confident_frame() {
        let frames = [
            frame(0.0, &[("Invoice 4471 is overdve", 0.7)]),
            frame(1.0, &[("Invoice 4471 is overdue", 0.95)]),
            frame(2.0, &[("Invoice 4471 is overdue", 0.9)]),
            frame(3.0, &[]),
            frame(4.0, &[("Q3 roadmap:", 0.9), ("ship search by June", 0.8)]),
        ];
        let segs = segments(&frames);
        assert_eq!(segs.len(), 2);
        assert_eq!((segs[0].start_s, segs[0].end_s), (0.0, 3.0));
        assert_eq!(segs[0].text, "Invoice 4471 is overdue");
        assert_eq!(segs[0].labels, ["text"]);
        assert_eq!(segs[0].detections.len(), 1);
        let d = &segs[0].detections[0];
        assert_eq!(
            (d.label.as_str(), d.text.as_str(), d.score, d.pts_s),
            ("text", "Invoice 4471 is overdue", 0.95, 1.0)
        );
        assert_eq!(d.bbox, [0.1, 0.2, 0.9, 0.3]);
        assert_eq!((segs[1].start_s, segs[1].end_s), (4.0, 5.0));
        assert_eq!(segs[1].text, "Q3 roadmap:\nship search by June");
        assert_eq!(segs[1].detections.len(), 2);
    }
}
