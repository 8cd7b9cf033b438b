//! Text recognition with PP-OCRv4's CTC model: each detected box is cut out
//! as a horizontal strip [`REC_HEIGHT`] pixels tall, the strips go through
//! the model, and greedy CTC decoding reads the text.
//!
//! - **Strips.** The box's four corners are mapped onto a `48 × W` strip,
//!   `W` keeping the box's aspect (capped at [`REC_MAX_WIDTH`]), sampling the
//!   frame bilinearly: rectifying and resizing in one step. A box standing
//!   upright (height ≥ 1.5 × width) is read turned a quarter anticlockwise,
//!   as PP-OCR does. Pixels are BGR, scaled to `(x / 255 − 0.5) / 0.5`.
//! - **Batches.** Strips narrower than [`REC_MIN_WIDTH`] (PP-OCR's training
//!   width) are padded to it with zeros on the right; strips of one padded
//!   width go through the model together ([`batches`]).
//! - **Decoding.** Per time step the most likely class; repeats collapse,
//!   blanks drop. Confidence is the mean probability of the kept steps.

use std::ops::Range;

use vx_plugin_api::Frame;

use crate::det::Quad;
use vx_plugin_api::pixels::bilinear;

/// Height of a recognition strip, fixed by the model.
pub const REC_HEIGHT: usize = 48;
/// Narrowest batch; PP-OCR's training width.
pub const REC_MIN_WIDTH: usize = 320;
/// Widest strip (240 time steps); a box more than 40 times as wide as it
/// is tall is squeezed to fit.
pub const REC_MAX_WIDTH: usize = 1920;

/// The model's classes: index 0 is the CTC blank, then the characters from
/// the model's `character` metadata (one per line), then a space, which
/// PP-OCR appends and the metadata leaves out.
pub fn dictionary(character_metadata: &str) -> Vec<String> {
    std::iter::once("")
        .chain(character_metadata.split('\n'))
        .chain(std::iter::once(" "))
        .map(str::to_owned)
        .collect()
}

/// One strip: `3 × REC_HEIGHT × width` values, channel-major.
pub struct Strip {
    pub width: usize,
    pub data: Vec<f32>,
}

fn dist(a: [f32; 2], b: [f32; 2]) -> f32 {
    ((a[0] - b[0]).powi(2) + (a[1] - b[1]).powi(2)).sqrt()
}

/// The text inside `quad` (corners in reading order, frame pixels) as a
/// normalised horizontal strip.
pub fn strip(frame: &Frame<'_>, quad: &Quad) -> Strip {
    let [tl, tr, br, bl] = *quad;
    let w = dist(tl, tr).max(dist(bl, br));
    let h = dist(tl, bl).max(dist(tr, br));
    // An upright box is read rotated: its right edge becomes the top.
    let (w, h, [tl, tr, br, bl]) = if h >= 1.5 * w {
        (h, w, [tr, br, bl, tl])
    } else {
        (w, h, [tl, tr, br, bl])
    };
    let width = ((REC_HEIGHT as f32 * w / h.max(1.0)).ceil() as usize).clamp(1, REC_MAX_WIDTH);
    let plane = REC_HEIGHT * width;
    let mut data = vec![0f32; 3 * plane];
    let lerp =
        |a: [f32; 2], b: [f32; 2], t: f32| [a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t];
    for j in 0..width {
        let s = (j as f32 + 0.5) / width as f32;
        let (top, bottom) = (lerp(tl, tr, s), lerp(bl, br, s));
        for i in 0..REC_HEIGHT {
            let p = lerp(top, bottom, (i as f32 + 0.5) / REC_HEIGHT as f32);
            let [r, g, b] = bilinear(frame, p[0], p[1]);
            let at = i * width + j;
            for (c, v) in [b, g, r].into_iter().enumerate() {
                data[c * plane + at] = v / 127.5 - 1.0;
            }
        }
    }
    Strip { width, data }
}

/// Index ranges of the batches for strips of `sorted_widths` (ascending):
/// strips that pad to the same width share a run of the model. Padding
/// strips to the widest of a frame was slower on 2 cores (more columns to
/// compute) and changed results (the model mixes context along the whole
/// strip, padding included), so strips of different widths go one by one.
pub fn batches(sorted_widths: &[usize]) -> Vec<Range<usize>> {
    let padded = |i: usize| sorted_widths[i].max(REC_MIN_WIDTH);
    let mut out: Vec<Range<usize>> = vec![];
    for i in 0..sorted_widths.len() {
        match out.last_mut() {
            Some(b) if padded(i) == padded(b.start) => b.end = i + 1,
            _ => out.push(i..i + 1),
        }
    }
    out
}

/// The strips as one `[n, 3, REC_HEIGHT, width]` batch, zero-padded on the
/// right; returns the batch width too.
pub fn batch<'s>(strips: impl Iterator<Item = &'s Strip> + Clone) -> (Vec<f32>, usize) {
    let width = strips
        .clone()
        .map(|s| s.width)
        .max()
        .unwrap_or(0)
        .max(REC_MIN_WIDTH);
    let mut out = vec![];
    for s in strips {
        let at = out.len();
        out.resize(at + 3 * REC_HEIGHT * width, 0.0);
        for (r, row) in s.data.chunks_exact(s.width).enumerate() {
            let start = at + r * width;
            out[start..start + s.width].copy_from_slice(row);
        }
    }
    (out, width)
}

/// Greedy CTC decoding of one strip's `[steps, classes]` probabilities:
/// the text and its confidence (mean probability of the kept steps, 0 for
/// no text).
pub fn ctc_greedy(probs: &[f32], dict: &[String]) -> (String, f32) {
    let mut text = String::new();
    let (mut sum, mut n) = (0f32, 0u32);
    let mut prev = 0;
    for step in probs.chunks_exact(dict.len()) {
        let (best, p) = step
            .iter()
            .copied()
            .enumerate()
            .fold((0, f32::MIN), |a, b| if b.1 > a.1 { b } else { a });
        if best != 0 && best != prev {
            text.push_str(&dict[best]);
            sum += p;
            n += 1;
        }
        prev = best;
    }
    (text, if n == 0 { 0.0 } else { sum / n as f32 })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dict() -> Vec<String> {
        dictionary("a\nb\nc")
    }

    /// One time step certain of `class` at probability `p`.
    fn step(class: usize, p: f32) -> Vec<f32> {
        let mut v = vec![(1.0 - p) / 4.0; 5];
        v[class] = p;
        v
    }

    #[test]
    fn dictionary_puts_blank_first_and_space_last() {
        assert_eq!(dict(), ["", "a", "b", "c", " "]);
    }

    #[test]
    fn ctc_collapses_repeats_drops_blanks_and_keeps_letters_split_by_blank() {
        // a a _ a b b _ _ ␣ c  →  "aab c"
        let steps = [
            (1, 0.9),
            (1, 0.8),
            (0, 0.9),
            (1, 0.7),
            (2, 0.6),
            (2, 0.9),
            (0, 0.9),
            (0, 0.9),
            (4, 0.5),
            (3, 0.8),
        ];
        let probs: Vec<f32> = steps.iter().flat_map(|&(c, p)| step(c, p)).collect();
        let (text, conf) = ctc_greedy(&probs, &dict());
        assert_eq!(text, "aab c");
        // Kept steps: the first of each run: 0.9, 0.7, 0.6, 0.5, 0.8.
        assert!((conf - 0.7).abs() < 1e-6, "{conf}");
        let blanks: Vec<f32> = (0..4).flat_map(|_| step(0, 0.99)).collect();
        assert_eq!(ctc_greedy(&blanks, &dict()), (String::new(), 0.0));
    }

    #[test]
    fn batch_pads_each_strip_row_to_the_widest() {
        let a = Strip {
            width: 2,
            data: vec![1.0; 3 * REC_HEIGHT * 2],
        };
        let b = Strip {
            width: 400,
            data: vec![2.0; 3 * REC_HEIGHT * 400],
        };
        let (data, width) = batch([a, b].iter());
        assert_eq!(width, 400);
        assert_eq!(data.len(), 2 * 3 * REC_HEIGHT * 400);
        // Strip a, channel 2, row 47: two ones, then zeros.
        let row = (2 * REC_HEIGHT + 47) * width;
        assert_eq!(&data[row..row + 3], &[1.0, 1.0, 0.0]);
        assert!(data[3 * REC_HEIGHT * width..].iter().all(|&v| v == 2.0));
    }

    #[test]
    fn batches_group_strips_that_pad_to_the_same_width() {
        // Everything up to REC_MIN_WIDTH pads to the same width.
        assert_eq!(batches(&[40, 200, 320, 400, 400, 900]), [0..3, 3..5, 5..6]);
        assert!(batches(&[]).is_empty());
    }

    #[test]
    fn strips_of_upright_boxes_are_turned_to_read_horizontally() {
        // A 10×40 frame: left half black, right half white; the box is the
        // whole frame, upright, so its right edge (white) becomes the top.
        let (w, h) = (10u32, 40u32);
        let rgb: Vec<u8> = (0..w * h)
            .flat_map(|i| if i % w < 5 { [0; 3] } else { [255; 3] })
            .collect();
        let frame = Frame {
            width: w,
            height: h,
            stride: w * 3,
            pts_s: 0.0,
            rgb: &rgb,
        };
        let s = strip(&frame, &[[0.0, 0.0], [9.0, 0.0], [9.0, 39.0], [0.0, 39.0]]);
        assert_eq!(s.width, 4 * REC_HEIGHT + 16); // ceil(48 × 39 / 9)
        let row = |i: usize| &s.data[i * s.width..(i + 1) * s.width];
        assert!(row(0).iter().all(|&v| v == 1.0), "top row white");
        assert!(
            row(REC_HEIGHT - 1).iter().all(|&v| v == -1.0),
            "bottom row black"
        );
    }
}
