//! JPEG pictures through mozjpeg (libjpeg-turbo's SIMD decoder) instead of
//! FFmpeg: 3.1× less CPU on the corpus's photos at full size (`vx-bench
//! jpeg`), and libjpeg scales by 1/2, 1/4 or 1/8 while it decodes, so a
//! 12-megapixel photo wanted at 1280 px costs a quarter of its pixels or
//! less. Each rendition is then fitted exactly as FFmpeg's path fits it.
//! What mozjpeg cannot read (CMYK, a damaged file) goes to FFmpeg as before,
//! which then decodes it or says why not.

use std::path::Path;
use std::sync::atomic::Ordering;

use ff::format::Pixel;
use ff::frame;
use ff::software::scaling;
use ffmpeg_next as ff;
use vx_plugin_protocol::MediaKind;

use crate::{DecodeOptions, Decoded, MediaError, RgbFrame, fit, packed_rgb, renditions_for};

/// The picture in `path` as [`crate::decode`] gives it, or `None` when it is
/// not a JPEG mozjpeg can read.
pub(crate) fn decode(path: &Path, opts: &DecodeOptions) -> Option<Result<Decoded, MediaError>> {
    let bytes = std::fs::read(path).ok()?;
    if !bytes.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    if let Some(p) = &opts.progress {
        p.fetch_add(1, Ordering::Relaxed);
    }
    // libjpeg reports errors by unwinding through mozjpeg's error handler.
    let read = std::panic::catch_unwind(|| read_rgb(&bytes, opts)).ok()?;
    let (width, height, picture) = match read? {
        Ok(read) => read,
        Err(e) => return Some(Err(e)),
    };
    let mut out = Decoded {
        kind: Some(MediaKind::Image),
        ..Decoded::default()
    };
    // What FFmpeg's image2 demuxer and mjpeg decoder would report.
    out.info.container = "image2".into();
    out.info.video_codec = Some("mjpeg".into());
    (out.info.width, out.info.height) = (Some(width), Some(height));
    if let Some((w, h, rgb)) = picture {
        let mut renditions = renditions_for(width, height, &opts.frame_sides);
        for r in &mut renditions {
            let side = r.sides[0];
            match fitted(w, h, &rgb, fit(width, height, side, side)) {
                Ok(frame) => r.frames.push(frame),
                Err(e) => return Some(Err(e)),
            }
        }
        out.renditions = renditions;
    }
    Some(Ok(out))
}

/// Decoded picture: (width, height, and its RGB at the smallest libjpeg scale
/// that is still at least the largest rendition, if any is wanted). `None`
/// when mozjpeg cannot give RGB (CMYK).
type Read = (u32, u32, Option<(u32, u32, Vec<u8>)>);

fn read_rgb(bytes: &[u8], opts: &DecodeOptions) -> Option<Result<Read, MediaError>> {
    let mut d = mozjpeg::Decompress::new_mem(bytes).ok()?;
    let (width, height) = (d.width() as u32, d.height() as u32);
    if u64::from(width) * u64::from(height) > opts.max_pixels {
        return Some(Err(MediaError::TooManyPixels {
            width,
            height,
            max: opts.max_pixels,
        }));
    }
    let Some(&largest) = opts.frame_sides.iter().max() else {
        return Some(Ok((width, height, None)));
    };
    let (tw, th) = fit(width, height, largest, largest);
    // libjpeg rounds a scaled side up.
    let scaled = |n: u32, side: u32| (side * n).div_ceil(8);
    let n = (1..=8u32)
        .find(|&n| scaled(n, width) >= tw && scaled(n, height) >= th)
        .unwrap_or(8);
    d.scale(n as u8);
    let mut started = d.rgb().ok()?;
    let (w, h) = (started.width() as u32, started.height() as u32);
    let rgb = started.read_scanlines::<u8>().ok()?;
    let _ = started.finish();
    Some(Ok((width, height, Some((w, h, rgb)))))
}

/// `rgb` (`w × h`) scaled to `size` the way FFmpeg's path scales frames.
fn fitted(w: u32, h: u32, rgb: &[u8], (tw, th): (u32, u32)) -> Result<RgbFrame, MediaError> {
    // `fit` rounds to even sides: a picture within a pixel of its size (a
    // small photo, kept whole) is cropped, not resampled.
    if tw <= w && th <= h && w - tw <= 1 && h - th <= 1 {
        let (row, out_row) = (w as usize * 3, tw as usize * 3);
        let rgb: Vec<u8> = rgb
            .chunks_exact(row)
            .take(th as usize)
            .flat_map(|line| &line[..out_row])
            .copied()
            .collect();
        return Ok(RgbFrame {
            pts_s: 0.0,
            width: tw,
            height: th,
            rgb,
        });
    }
    let mut src = frame::Video::new(Pixel::RGB24, w, h);
    let stride = src.stride(0);
    let row = w as usize * 3;
    for (y, line) in rgb.chunks_exact(row).enumerate() {
        src.data_mut(0)[y * stride..y * stride + row].copy_from_slice(line);
    }
    let mut scaler = scaling::Context::get(
        Pixel::RGB24,
        w,
        h,
        Pixel::RGB24,
        tw,
        th,
        scaling::Flags::AREA,
    )
    .map_err(MediaError::Decode)?;
    let mut dst = frame::Video::empty();
    scaler.run(&src, &mut dst).map_err(MediaError::Decode)?;
    Ok(RgbFrame {
        pts_s: 0.0,
        width: tw,
        height: th,
        rgb: packed_rgb(&dst, tw, th),
    })
}
