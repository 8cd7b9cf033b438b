//! Pixel helpers the vision plugins share: reading a frame into a model's
//! input, and comparing boxes.

use crate::{Frame, PluginError};

/// Intersection over union of two `[x0, y0, x1, y1]` boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let inter = w * h;
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter;
    if union > 0.0 { inter / union } else { 0.0 }
}

/// Stretches `frame` bilinearly to `w × h` into `out` as three planes (R, G,
/// B) of 0–255 values. Samples at pixel centres, like OpenCV and TF's
/// `half_pixel_centers`.
pub fn stretch_planar(
    frame: &Frame<'_>,
    w: usize,
    h: usize,
    out: &mut [f32],
) -> Result<(), PluginError> {
    let (fw, fh) = (frame.width as usize, frame.height as usize);
    if fw == 0 || fh == 0 {
        return Err("empty frame".into());
    }
    if frame.rgb.len() < (fh - 1) * frame.stride as usize + fw * 3 {
        return Err(format!("frame of {fw}×{fh} has only {} bytes", frame.rgb.len()).into());
    }
    // Per output row or column: the two source ones and the second's weight.
    let taps = |n_out: usize, n_in: usize| -> Vec<(usize, usize, f32)> {
        (0..n_out)
            .map(|o| {
                let src = ((o as f32 + 0.5) * n_in as f32 / n_out as f32 - 0.5)
                    .clamp(0.0, (n_in - 1) as f32);
                let lo = src as usize;
                (lo, (lo + 1).min(n_in - 1), src - lo as f32)
            })
            .collect()
    };
    let xs = taps(w, fw);
    let plane = w * h;
    for (y, &(y0, y1, fy)) in taps(h, fh).iter().enumerate() {
        let (r0, r1) = (frame.row(y0 as u32), frame.row(y1 as u32));
        for (x, &(x0, x1, fx)) in xs.iter().enumerate() {
            for c in 0..3 {
                let top = r0[x0 * 3 + c] as f32 * (1.0 - fx) + r0[x1 * 3 + c] as f32 * fx;
                let bottom = r1[x0 * 3 + c] as f32 * (1.0 - fx) + r1[x1 * 3 + c] as f32 * fx;
                out[c * plane + y * w + x] = top * (1.0 - fy) + bottom * fy;
            }
        }
    }
    Ok(())
}

/// The frame's `[r, g, b]` at (`x`, `y`) by bilinear interpolation, in
/// pixel-centre coordinates (pixel (0, 0) is at 0.0, 0.0); points outside
/// take the nearest edge pixel.
pub fn bilinear(f: &Frame<'_>, x: f32, y: f32) -> [f32; 3] {
    let x = x.clamp(0.0, (f.width - 1) as f32);
    let y = y.clamp(0.0, (f.height - 1) as f32);
    let (x0, y0) = (x as u32, y as u32);
    let (x1, y1) = ((x0 + 1).min(f.width - 1), (y0 + 1).min(f.height - 1));
    let (ax, ay) = (x - x0 as f32, y - y0 as f32);
    let (top, bottom) = (f.row(y0), f.row(y1));
    let (i0, i1) = (x0 as usize * 3, x1 as usize * 3);
    std::array::from_fn(|c| {
        let t = top[i0 + c] as f32 * (1.0 - ax) + top[i1 + c] as f32 * ax;
        let b = bottom[i0 + c] as f32 * (1.0 - ax) + bottom[i1 + c] as f32 * ax;
        t * (1.0 - ay) + b * ay
    })
}
