//! Reading pixels between pixel centres.

use vx_plugin_api::Frame;

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
