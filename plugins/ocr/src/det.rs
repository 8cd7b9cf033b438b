//! Text detection with PP-OCRv4's DB model: the frame goes in scaled to a
//! multiple of 32, a per-pixel text probability map comes out, and this
//! module turns the map into boxes.
//!
//! - **Input.** The long side is limited to [`DET_MAX_SIDE`] (never
//!   upscaled), both sides rounded to multiples of 32, pixels in BGR order
//!   normalised with ImageNet's mean and std as PaddleOCR's own det
//!   pre-processing does (RapidOCR's 0.5/0.5 gave the same boxes here).
//! - **Boxes.** The map is binarised at [`BIN_THRESH`]; each 8-connected
//!   component gets its minimum-area rotated rectangle (convex hull, then
//!   the best rectangle along each hull edge), so slightly tilted text in
//!   photos still crops cleanly. A box is kept when the mean probability
//!   inside it reaches [`BOX_THRESH`]. The DB model marks a shrunken core of
//!   each line, so kept boxes grow by `area × UNCLIP_RATIO / perimeter` on
//!   every side, and boxes whose short side is under [`MIN_SIDE`] go.

use vx_plugin_api::Frame;

use vx_plugin_api::pixels::bilinear;

/// Longest side of the det input; 720p frames go in at 960×544.
pub const DET_MAX_SIDE: usize = 960;
/// Probability above which a map pixel is text.
pub const BIN_THRESH: f32 = 0.3;
/// Mean probability inside a box for it to count as text (PaddleOCR's
/// default; 0.5 to 0.7 read the test frames the same).
pub const BOX_THRESH: f32 = 0.6;
/// How far a box grows back: `area × ratio / perimeter` on each side.
/// PaddleOCR's DB post-processing default. PP-OCR's configs use 1.5–1.6;
/// with those the boxes here are about one font size tall and the
/// recogniser dropped spaces on some lines (9 and 4 wrong characters on
/// the test frames); from 1.8 to 2.2 none, also with lines only 1.2 font
/// sizes apart.
pub const UNCLIP_RATIO: f32 = 2.0;
/// Short side, in map pixels after unclipping, below which a box is noise.
pub const MIN_SIDE: f32 = 5.0;

/// Applied to input channels 0, 1, 2 (B, G, R), as PaddleOCR does.
const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Four corners in reading order: top-left, top-right, bottom-right,
/// bottom-left, in pixels.
pub type Quad = [[f32; 2]; 4];

/// The det input size (width, height) for a `w × h` frame.
pub fn input_size(w: usize, h: usize) -> (usize, usize) {
    let scale = (DET_MAX_SIDE as f32 / w.max(h) as f32).min(1.0);
    let fit = |v: usize| ((v as f32 * scale / 32.0).round() as usize).max(1) * 32;
    (fit(w), fit(h))
}

/// The frame resized to `w × h` as a normalised NCHW BGR tensor.
pub fn input_tensor(frame: &Frame<'_>, w: usize, h: usize) -> Vec<f32> {
    let (sx, sy) = (
        frame.width as f32 / w as f32,
        frame.height as f32 / h as f32,
    );
    let mut out = vec![0f32; 3 * w * h];
    let (b, rest) = out.split_at_mut(w * h);
    let (g, r) = rest.split_at_mut(w * h);
    for y in 0..h {
        let fy = (y as f32 + 0.5) * sy - 0.5;
        for x in 0..w {
            let [pr, pg, pb] = bilinear(frame, (x as f32 + 0.5) * sx - 0.5, fy);
            let i = y * w + x;
            b[i] = (pb / 255.0 - MEAN[0]) / STD[0];
            g[i] = (pg / 255.0 - MEAN[1]) / STD[1];
            r[i] = (pr / 255.0 - MEAN[2]) / STD[2];
        }
    }
    out
}

/// A rectangle at any angle. `u` is the unit vector along its width, chosen
/// within 45° of the x axis; the height runs along `(-u.y, u.x)` (downwards).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RotRect {
    pub center: [f32; 2],
    pub u: [f32; 2],
    pub w: f32,
    pub h: f32,
}

impl RotRect {
    fn v(&self) -> [f32; 2] {
        [-self.u[1], self.u[0]]
    }

    /// Corners in reading order: top-left, top-right, bottom-right, bottom-left.
    pub fn corners(&self) -> Quad {
        let (u, v) = (self.u, self.v());
        let (hw, hh) = (self.w / 2.0, self.h / 2.0);
        let at = |a: f32, b: f32| {
            [
                self.center[0] + a * u[0] + b * v[0],
                self.center[1] + a * u[1] + b * v[1],
            ]
        };
        [at(-hw, -hh), at(hw, -hh), at(hw, hh), at(-hw, hh)]
    }

    /// Grown by `area × ratio / perimeter` on every side, which undoes the
    /// DB model's shrinking. (PP-OCR offsets the polygon with rounded
    /// corners and takes the minimum-area box of that: this rectangle.)
    pub fn unclip(&self, ratio: f32) -> RotRect {
        let perimeter = 2.0 * (self.w + self.h);
        let d = if perimeter > 0.0 {
            self.w * self.h * ratio / perimeter
        } else {
            0.0
        };
        RotRect {
            w: self.w + 2.0 * d,
            h: self.h + 2.0 * d,
            ..*self
        }
    }

    /// Whether the pixel centre (`x`, `y`) lies inside, edges included.
    fn contains(&self, x: f32, y: f32) -> bool {
        let (dx, dy) = (x - self.center[0], y - self.center[1]);
        let (v, u) = (self.v(), self.u);
        (dx * u[0] + dy * u[1]).abs() <= self.w / 2.0 + 0.5
            && (dx * v[0] + dy * v[1]).abs() <= self.h / 2.0 + 0.5
    }
}

/// Text boxes in a `w × h` probability map, as rectangles in map pixels.
pub fn boxes(prob: &[f32], w: usize, h: usize) -> Vec<RotRect> {
    assert_eq!(prob.len(), w * h, "probability map is {w}×{h}");
    let mut mask: Vec<bool> = prob.iter().map(|&p| p > BIN_THRESH).collect();
    let mut found = vec![];
    let mut stack = vec![];
    let mut pixels: Vec<(usize, usize)> = vec![];
    for start in 0..w * h {
        if !mask[start] {
            continue;
        }
        // Flood-fill one 8-connected component, clearing it from the mask.
        mask[start] = false;
        stack.push(start);
        pixels.clear();
        while let Some(i) = stack.pop() {
            let (x, y) = (i % w, i / w);
            pixels.push((x, y));
            for ny in y.saturating_sub(1)..=(y + 1).min(h - 1) {
                for nx in x.saturating_sub(1)..=(x + 1).min(w - 1) {
                    let j = ny * w + nx;
                    if mask[j] {
                        mask[j] = false;
                        stack.push(j);
                    }
                }
            }
        }
        let Some(rect) = min_area_rect(&row_extremes(&pixels)) else {
            continue;
        };
        if mean_inside(prob, w, h, &rect) < BOX_THRESH {
            continue;
        }
        let grown = rect.unclip(UNCLIP_RATIO);
        if grown.w.min(grown.h) >= MIN_SIDE {
            found.push(grown);
        }
    }
    found
}

/// The leftmost and rightmost pixel of each row: all the convex hull needs.
fn row_extremes(pixels: &[(usize, usize)]) -> Vec<[i64; 2]> {
    let y0 = pixels.iter().map(|p| p.1).min().unwrap_or(0);
    let y1 = pixels.iter().map(|p| p.1).max().unwrap_or(0);
    let mut rows = vec![(usize::MAX, 0); y1 - y0 + 1];
    for &(x, y) in pixels {
        let r = &mut rows[y - y0];
        *r = (r.0.min(x), r.1.max(x));
    }
    let mut points = Vec::with_capacity(rows.len() * 2);
    for (dy, &(lo, hi)) in rows.iter().enumerate() {
        let y = (y0 + dy) as i64;
        points.push([lo as i64, y]);
        if hi != lo {
            points.push([hi as i64, y]);
        }
    }
    points
}

/// Convex hull (Andrew's monotone chain), counter-clockwise, no collinear points.
fn convex_hull(mut points: Vec<[i64; 2]>) -> Vec<[i64; 2]> {
    points.sort_unstable();
    points.dedup();
    if points.len() < 3 {
        return points;
    }
    let cross = |o: [i64; 2], a: [i64; 2], b: [i64; 2]| {
        (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])
    };
    let mut hull: Vec<[i64; 2]> = Vec::with_capacity(points.len() + 1);
    for pass in [
        &points[..],
        &points.iter().rev().copied().collect::<Vec<_>>()[..],
    ] {
        let floor = hull.len();
        for &p in pass {
            while hull.len() >= floor + 2
                && cross(hull[hull.len() - 2], hull[hull.len() - 1], p) <= 0
            {
                hull.pop();
            }
            hull.push(p);
        }
        hull.pop();
    }
    hull
}

/// The smallest rectangle around `points`; `None` for fewer than 3
/// non-collinear points (a line has no area, and no text).
pub fn min_area_rect(points: &[[i64; 2]]) -> Option<RotRect> {
    let hull = convex_hull(points.to_vec());
    if hull.len() < 3 {
        return None;
    }
    let hull: Vec<[f32; 2]> = hull.iter().map(|p| [p[0] as f32, p[1] as f32]).collect();
    let mut best: Option<(f32, RotRect)> = None;
    for (i, a) in hull.iter().enumerate() {
        let b = hull[(i + 1) % hull.len()];
        let (ex, ey) = (b[0] - a[0], b[1] - a[1]);
        let len = (ex * ex + ey * ey).sqrt();
        // One side of the smallest rectangle lies along a hull edge; of the
        // edge and its normal, take the axis nearest to horizontal as `u`.
        let (ex, ey) = (ex / len, ey / len);
        let mut u = if ex.abs() >= ey.abs() {
            [ex, ey]
        } else {
            [-ey, ex]
        };
        if u[0] < 0.0 {
            u = [-u[0], -u[1]];
        }
        let v = [-u[1], u[0]];
        let (mut lo, mut hi) = ([f32::MAX; 2], [f32::MIN; 2]);
        for p in &hull {
            for (k, axis) in [u, v].iter().enumerate() {
                let t = p[0] * axis[0] + p[1] * axis[1];
                lo[k] = lo[k].min(t);
                hi[k] = hi[k].max(t);
            }
        }
        let (w, h) = (hi[0] - lo[0], hi[1] - lo[1]);
        if best.is_some_and(|(area, _)| area <= w * h) {
            continue;
        }
        let (cu, cv) = ((lo[0] + hi[0]) / 2.0, (lo[1] + hi[1]) / 2.0);
        let center = [cu * u[0] + cv * v[0], cu * u[1] + cv * v[1]];
        best = Some((w * h, RotRect { center, u, w, h }));
    }
    best.map(|(_, r)| r)
}

/// Mean probability over the map pixels inside `rect`.
fn mean_inside(prob: &[f32], w: usize, h: usize, rect: &RotRect) -> f32 {
    let corners = rect.corners();
    let span = |k: usize, max: usize| {
        let lo = corners
            .iter()
            .map(|c| c[k])
            .fold(f32::MAX, f32::min)
            .floor();
        let hi = corners.iter().map(|c| c[k]).fold(f32::MIN, f32::max).ceil();
        (lo.max(0.0) as usize, (hi.max(0.0) as usize).min(max - 1))
    };
    let ((x0, x1), (y0, y1)) = (span(0, w), span(1, h));
    let (mut sum, mut n) = (0f32, 0u32);
    for y in y0..=y1 {
        for x in x0..=x1 {
            if rect.contains(x as f32, y as f32) {
                sum += prob[y * w + x];
                n += 1;
            }
        }
    }
    if n == 0 { 0.0 } else { sum / n as f32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f32) -> bool {
        (a - b).abs() < 1e-3
    }

    #[test]
    fn unclip_grows_each_side_by_area_times_ratio_over_perimeter() {
        let r = RotRect {
            center: [50.0, 20.0],
            u: [1.0, 0.0],
            w: 100.0,
            h: 10.0,
        };
        // d = 1000 × 1.5 / 220 = 6.818…
        let g = r.unclip(1.5);
        assert!(close(g.w, 100.0 + 2.0 * 6.818_182), "{g:?}");
        assert!(close(g.h, 10.0 + 2.0 * 6.818_182), "{g:?}");
        assert_eq!((g.center, g.u), (r.center, r.u));
        // A degenerate box stays degenerate rather than dividing by zero.
        let flat = RotRect {
            w: 0.0,
            h: 0.0,
            ..r
        }
        .unclip(1.5);
        assert_eq!((flat.w, flat.h), (0.0, 0.0));
    }

    #[test]
    fn min_area_rect_finds_a_tilted_rectangle_and_orders_corners() {
        // The corners of a 40×10 rectangle turned by atan(3/4) ≈ 36.9°.
        let (c, s) = (0.8f32, 0.6f32);
        let pts: Vec<[i64; 2]> = [(-20.0, -5.0), (20.0, -5.0), (20.0, 5.0), (-20.0, 5.0)]
            .iter()
            .map(|&(a, b): &(f32, f32)| {
                [
                    (100.0 + a * c - b * s).round() as i64,
                    (100.0 + a * s + b * c).round() as i64,
                ]
            })
            .collect();
        let r = min_area_rect(&pts).unwrap();
        assert!(
            (r.w - 40.0).abs() < 1.5 && (r.h - 10.0).abs() < 1.5,
            "{r:?}"
        );
        assert!(
            (r.u[0] - c).abs() < 0.05 && (r.u[1] - s).abs() < 0.05,
            "{r:?}"
        );
        let [tl, tr, br, bl] = r.corners();
        assert!(tl[0] < tr[0] && bl[0] < br[0] && tl[1] < bl[1] && tr[1] < br[1]);
        assert!(
            min_area_rect(&[[0, 0], [5, 0], [9, 0]]).is_none(),
            "collinear"
        );
    }

    #[test]
    fn boxes_finds_one_box_per_blob_and_drops_faint_and_tiny_ones() {
        let (w, h) = (64, 32);
        let mut prob = vec![0f32; w * h];
        let mut fill = |x0: usize, x1: usize, y0: usize, y1: usize, p: f32| {
            for y in y0..y1 {
                for x in x0..x1 {
                    prob[y * w + x] = p;
                }
            }
        };
        fill(4, 40, 4, 10, 0.9); // a line of text
        fill(4, 40, 16, 22, 0.4); // above BIN_THRESH, below BOX_THRESH
        fill(50, 51, 26, 27, 0.9); // one pixel
        let found = boxes(&prob, w, h);
        assert_eq!(found.len(), 1, "{found:?}");
        let r = found[0];
        // Pixel centres 4..=39 × 4..=9: 35 × 5, unclipped by 175 × ratio / 80.
        let d = 175.0 * UNCLIP_RATIO / 80.0;
        assert!(close(r.center[0], 21.5) && close(r.center[1], 6.5), "{r:?}");
        assert!(
            close(r.w, 35.0 + 2.0 * d) && close(r.h, 5.0 + 2.0 * d),
            "{r:?}"
        );
    }

    #[test]
    fn input_size_limits_the_long_side_and_rounds_to_32() {
        assert_eq!(input_size(1280, 720), (960, 544));
        assert_eq!(input_size(640, 360), (640, 352));
        assert_eq!(input_size(10, 10), (32, 32));
    }
}
