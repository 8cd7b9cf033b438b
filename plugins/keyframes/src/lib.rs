//! The keyframes plugin: splits a video into scenes, and for each scene picks a
//! representative frame, hashes it perceptually and writes a JPEG thumbnail.
//!
//! - **Scene cuts.** Each sampled frame gets a 64-bin colour histogram (4 levels
//!   per channel). A cut lies between two frames whose histograms differ by more
//!   than [`CUT_THRESHOLD`] in L1 distance (0 = same, 2 = disjoint). Histograms
//!   ignore motion inside a shot, so panning and moving objects do not cut.
//! - **Representative frame.** The sampled frame in the middle of the scene.
//! - **Perceptual hash.** The classic DCT hash: 32×32 grey, 2-D DCT-II, the 8×8
//!   lowest frequencies, one bit each for "above the median". Near-identical
//!   pictures get hashes a few bits apart.
//! - **Thumbnail.** At most [`THUMB_MAX_SIDE`] pixels, mozjpeg quality 80.
//!
//! A still image is one scene covering the whole file. Audio-only files have
//! no frames and give no segments.

use std::path::Path;

use vx_plugin_api::{Frame, JobInput, Needs, Plugin, PluginError, PluginOutput, SegmentResult};

pub const CUT_THRESHOLD: f32 = 0.6;
pub const THUMB_MAX_SIDE: u32 = 320;
/// Frames this size are plenty for histograms, hashes and thumbnails.
pub const FRAME_MAX_SIDE: u32 = 640;

pub struct Keyframes;

impl Plugin for Keyframes {
    fn name(&self) -> &str {
        "keyframes"
    }

    fn version(&self) -> &str {
        "1"
    }

    fn needs(&self) -> Needs {
        Needs::frames(FRAME_MAX_SIDE)
    }

    fn process(&mut self, input: &JobInput<'_>) -> Result<PluginOutput, PluginError> {
        let frames = input.frames()?;
        if frames.is_empty() {
            return Ok(PluginOutput::default());
        }
        let job = input.job;
        let spans = input.frame_spans(&frames);
        let scenes = scene_starts(&frames);
        std::fs::create_dir_all(&job.artefact_dir).map_err(|e| {
            PluginError::io(format!("cannot create {}", job.artefact_dir.display()), &e)
        })?;
        let stem = path_tag(&job.path);
        let mut segments = Vec::with_capacity(scenes.len());
        for (i, &first) in scenes.iter().enumerate() {
            let next = scenes.get(i + 1).copied();
            let last = next.map_or(frames.len() - 1, |n| n - 1);
            let rep = &frames[(first + last) / 2];
            let start_s = if i == 0 { 0.0 } else { frames[first].pts_s };
            let end_s = spans[last].1;
            let thumb = job.artefact_dir.join(format!("{stem}-{i:04}.jpg"));
            write_thumbnail(rep, &thumb)?;
            segments.push(SegmentResult {
                start_s,
                end_s,
                text: String::new(),
                labels: vec!["scene".into(), "keyframe".into()],
                phash: Some(phash(rep)),
                thumbnail: Some(thumb),
                ..Default::default()
            });
        }
        Ok(PluginOutput { segments })
    }
}

/// Indices of the frames that open a scene; always starts with 0.
pub fn scene_starts(frames: &[Frame<'_>]) -> Vec<usize> {
    let hists: Vec<[f32; 64]> = frames.iter().map(histogram).collect();
    let mut starts = vec![0];
    for i in 1..hists.len() {
        let d: f32 = hists[i]
            .iter()
            .zip(&hists[i - 1])
            .map(|(a, b)| (a - b).abs())
            .sum();
        if d > CUT_THRESHOLD {
            starts.push(i);
        }
    }
    starts
}

fn histogram(f: &Frame<'_>) -> [f32; 64] {
    let mut h = [0u32; 64];
    // Every second row and column is plenty for a histogram.
    for y in (0..f.height).step_by(2) {
        for px in f.row(y).chunks_exact(6) {
            let bin = (px[0] as usize >> 6) << 4 | (px[1] as usize >> 6) << 2 | px[2] as usize >> 6;
            h[bin] += 1;
        }
    }
    let total = h.iter().sum::<u32>().max(1) as f32;
    h.map(|c| c as f32 / total)
}

/// Mean of each box of the frame's luma, resampled to `n × n`.
fn grey_thumb(f: &Frame<'_>, n: usize) -> Vec<f32> {
    let (w, h) = (f.width as usize, f.height as usize);
    let mut out = vec![0f32; n * n];
    for (cy, row_out) in out.chunks_exact_mut(n).enumerate() {
        let (y0, y1) = (cy * h / n, ((cy + 1) * h / n).max(cy * h / n + 1).min(h));
        for (cx, cell) in row_out.iter_mut().enumerate() {
            let (x0, x1) = (cx * w / n, ((cx + 1) * w / n).max(cx * w / n + 1).min(w));
            let mut sum = 0f32;
            for y in y0..y1 {
                let row = f.row(y as u32);
                for x in x0..x1 {
                    let p = &row[x * 3..x * 3 + 3];
                    sum += 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32;
                }
            }
            *cell = sum / ((y1 - y0) * (x1 - x0)) as f32;
        }
    }
    out
}

/// 64-bit DCT perceptual hash.
pub fn phash(f: &Frame<'_>) -> u64 {
    const N: usize = 32;
    const K: usize = 8;
    let g = grey_thumb(f, N);
    // cos table: c[k][x] = cos(pi * (2x + 1) * k / 2N)
    let c: Vec<[f32; N]> = (0..K)
        .map(|k| {
            std::array::from_fn(|x| {
                (std::f32::consts::PI * (2 * x + 1) as f32 * k as f32 / (2 * N) as f32).cos()
            })
        })
        .collect();
    // Rows first (N×K), then columns (K×K).
    let mut rows = vec![[0f32; K]; N];
    for y in 0..N {
        for (k, ck) in c.iter().enumerate() {
            rows[y][k] = (0..N).map(|x| g[y * N + x] * ck[x]).sum();
        }
    }
    let mut coeffs = [0f32; K * K];
    for v in 0..K {
        for u in 0..K {
            coeffs[v * K + u] = (0..N).map(|y| rows[y][u] * c[v][y]).sum();
        }
    }
    // The DC term says only "how bright", so it is left out of the median.
    let mut sorted = coeffs[1..].to_vec();
    sorted.sort_by(f32::total_cmp);
    let median = sorted[sorted.len() / 2];
    coeffs
        .iter()
        .enumerate()
        .fold(0u64, |h, (i, &v)| if v > median { h | 1 << i } else { h })
}

/// Box-filters the frame down to at most `THUMB_MAX_SIDE` and writes a JPEG.
fn write_thumbnail(f: &Frame<'_>, path: &Path) -> Result<(), PluginError> {
    let scale = (THUMB_MAX_SIDE as f32 / f.width.max(f.height) as f32).min(1.0);
    let (tw, th) = (
        ((f.width as f32 * scale) as usize).max(1),
        ((f.height as f32 * scale) as usize).max(1),
    );
    let (w, h) = (f.width as usize, f.height as usize);
    let mut rgb = Vec::with_capacity(tw * th * 3);
    for ty in 0..th {
        let (y0, y1) = (ty * h / th, ((ty + 1) * h / th).max(ty * h / th + 1));
        for tx in 0..tw {
            let (x0, x1) = (tx * w / tw, ((tx + 1) * w / tw).max(tx * w / tw + 1));
            let mut acc = [0u32; 3];
            for y in y0..y1 {
                let row = f.row(y as u32);
                for x in x0..x1 {
                    for c in 0..3 {
                        acc[c] += row[x * 3 + c] as u32;
                    }
                }
            }
            let n = ((y1 - y0) * (x1 - x0)) as u32;
            rgb.extend(acc.map(|a| (a / n) as u8));
        }
    }
    let jpeg =
        encode_jpeg(&rgb, tw, th).map_err(|e| PluginError::io("jpeg encoding failed", &e))?;
    // Write then rename, so a reader never sees half a thumbnail.
    let tmp = path.with_extension("jpg.tmp");
    std::fs::write(&tmp, jpeg)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|e| PluginError::io(format!("cannot write {}", path.display()), &e))
}

fn encode_jpeg(rgb: &[u8], w: usize, h: usize) -> std::io::Result<Vec<u8>> {
    // libjpeg reports errors by unwinding through mozjpeg's error handler.
    std::panic::catch_unwind(|| {
        let mut c = mozjpeg::Compress::new(mozjpeg::ColorSpace::JCS_RGB);
        c.set_size(w, h);
        c.set_quality(80.0);
        let mut started = c.start_compress(Vec::new())?;
        started.write_scanlines(rgb)?;
        started.finish()
    })
    .unwrap_or_else(|_| Err(std::io::Error::other("libjpeg error")))
}

/// A short stable tag for a path, so thumbnails of different files never clash.
fn path_tag(path: &Path) -> String {
    // FNV-1a: stable across runs and platforms, unlike std's hasher.
    let h = path
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
            (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
        });
    let name: String = path
        .file_stem()
        .map(|s| {
            s.to_string_lossy()
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(24)
                .collect()
        })
        .unwrap_or_default();
    format!("{name}-{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(w: u32, h: u32, rgb: [u8; 3]) -> Vec<u8> {
        rgb.iter()
            .copied()
            .cycle()
            .take((w * h * 3) as usize)
            .collect()
    }

    fn frame(data: &[u8], w: u32, h: u32, pts: f64) -> Frame<'_> {
        Frame {
            width: w,
            height: h,
            stride: w * 3,
            pts_s: pts,
            rgb: data,
        }
    }

    /// Diagonal gradient with a bright square whose position is `shift`.
    fn pattern(w: u32, h: u32, shift: u32) -> Vec<u8> {
        let mut v = Vec::new();
        for y in 0..h {
            for x in 0..w {
                let inside = (x + shift) % w < w / 3 && y < h / 2;
                let g = ((x + y) * 255 / (w + h)) as u8;
                v.extend(if inside {
                    [250, 250, 250]
                } else {
                    [g, g / 2, 255 - g]
                });
            }
        }
        v
    }

    #[test]
    fn cuts_between_different_shots_but_not_within_a_moving_shot() {
        let (w, h) = (64, 48);
        let a: Vec<Vec<u8>> = (0..4).map(|i| pattern(w, h, i * 3)).collect();
        let red = solid(w, h, [220, 20, 20]);
        let mut frames: Vec<Frame<'_>> = a
            .iter()
            .enumerate()
            .map(|(i, d)| frame(d, w, h, i as f64))
            .collect();
        frames.push(frame(&red, w, h, 4.0));
        frames.push(frame(&red, w, h, 5.0));
        assert_eq!(scene_starts(&frames), [0, 4]);
    }

    #[test]
    fn phash_is_stable_under_small_changes_and_differs_across_pictures() {
        let (w, h) = (96, 64);
        let base = pattern(w, h, 0);
        let mut noisy = base.clone();
        for (i, b) in noisy.iter_mut().enumerate() {
            *b = b.saturating_add((i % 7) as u8);
        }
        let other = pattern(w, h, 40);
        let hb = phash(&frame(&base, w, h, 0.0));
        let hn = phash(&frame(&noisy, w, h, 0.0));
        let ho = phash(&frame(&other, w, h, 0.0));
        assert!(
            (hb ^ hn).count_ones() <= 4,
            "noise moved the hash {} bits",
            (hb ^ hn).count_ones()
        );
        assert!(
            (hb ^ ho).count_ones() >= 10,
            "different pictures only {} bits apart",
            (hb ^ ho).count_ones()
        );
    }

    #[test]
    fn thumbnail_is_a_jpeg_of_bounded_size() {
        let (w, h) = (640, 360);
        let data = pattern(w, h, 0);
        let dir = std::env::temp_dir().join(format!("vx-kf-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.jpg");
        write_thumbnail(&frame(&data, w, h, 0.0), &p).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[..3], &[0xff, 0xd8, 0xff], "JPEG SOI marker");
        // SOF0/SOF2 carries height then width, big-endian.
        let sof = bytes
            .windows(2)
            .position(|m| m == [0xff, 0xc0] || m == [0xff, 0xc2])
            .unwrap();
        let th = u16::from_be_bytes([bytes[sof + 5], bytes[sof + 6]]);
        let tw = u16::from_be_bytes([bytes[sof + 7], bytes[sof + 8]]);
        assert_eq!((tw, th), (320, 180));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
