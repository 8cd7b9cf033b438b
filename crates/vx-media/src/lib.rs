//! Decode a media file once, and lay the result out in shared memory.
//!
//! [`decode`] opens a file with FFmpeg (through ffmpeg-next) and produces, in a
//! single pass over its packets:
//! - RGB24 frames, sampled by the one policy below, each scaled once per
//!   distinct size the plugins asked for ([`DecodeOptions::frame_sides`]);
//! - the first audio track as 16 kHz mono `f32`, when a plugin wants it;
//! - the metadata the index keeps (duration, codecs, resolution).
//!
//! **Sampling policy.** The first frame at or after every
//! [`DecodeOptions::frame_interval_s`] mark is a candidate (long videos are
//! sampled more sparsely, so at most [`DecodeOptions::max_frames`] are kept).
//! A candidate that looks like the last kept frame is dropped: both are
//! reduced to a 16×9 grid of mean luma, and it is kept only when some cell
//! moved by at least [`DecodeOptions::still_threshold`] (0–255). A static
//! slide or a still shot is thus run once, however long it stays, while a
//! change in any ninth-by-sixteenth of the picture is seen. Comparing with the
//! last *kept* frame, not the previous candidate, means a slow fade still
//! yields a frame once it has drifted far enough. Each kept frame stands for
//! the time until the next one.
//!
//! When a candidate comes every few frames or more, frames that no other
//! frame refers to (most B-frames) are not decoded at all
//! ([`DecodeOptions::skip_unreferenced`]): a candidate is then the first
//! *decoded* frame at or after its mark: later by at most a run of B-frames
//! (3 frames, 0.12 s at 25 fps, in x264's defaults).
//!
//! Frames are fitted inside `side × side` with the aspect ratio kept and never
//! upscaled; sides that give the same size for a file share one rendition.
//!
//! [`pack`] copies that into one sealed [`vx_shm::Segment`] and returns the
//! frame and audio references that jobs carry to the model hosts.

mod jpeg;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};

use ff::format::Pixel;
use ff::format::sample::{Sample, Type as SampleType};
use ff::software::{resampling, scaling};
use ff::{ChannelLayout, codec, frame, media};
use ffmpeg_next as ff;
use vx_plugin_protocol::{AudioRef, FrameRef, MediaInfo, MediaKind};
use vx_shm::{Segment, SegmentWriter, ShmError};

/// Sample rate of the audio handed to plugins (what whisper and VAD expect).
pub const AUDIO_RATE: u32 = 16_000;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("not a media file FFmpeg can read, or a damaged one ({0})")]
    Open(ff::Error),
    #[error("the file is empty")]
    Empty,
    #[error("it holds no video or audio stream")]
    NoStreams,
    #[error("decoding failed: {0}")]
    Decode(ff::Error),
    #[error(transparent)]
    Shm(#[from] ShmError),
    #[error("picture of {width}×{height} ({mp:.0} MP) exceeds max_image_pixels ({max_mp:.0} MP)", mp = *width as f64 * *height as f64 / 1e6, max_mp = *max as f64 / 1e6)]
    TooManyPixels { width: u32, height: u32, max: u64 },
}

impl MediaError {
    /// The machine, not the file, is short of something (memory, file
    /// descriptors): the same file may well decode later.
    pub fn is_temporary(&self) -> bool {
        match self {
            Self::Shm(ShmError::Create(e) | ShmError::Map(e)) => {
                vx_plugin_protocol::is_short_of_resources(e)
            }
            Self::Open(ff::Error::Other { errno }) | Self::Decode(ff::Error::Other { errno }) => {
                vx_plugin_protocol::is_short_of_resources(&std::io::Error::from_raw_os_error(
                    *errno,
                ))
            }
            _ => false,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct DecodeOptions {
    /// Each kept frame is fitted inside `side × side` for every side listed
    /// here. Empty: no frames are decoded.
    pub frame_sides: Vec<u32>,
    pub frame_interval_s: f64,
    /// Cap on frames kept per file: long videos are sampled more sparsely.
    pub max_frames: usize,
    /// A candidate frame is kept only if some cell of its 16×9 luma grid
    /// differs from the last kept frame's by at least this (0–255); 0 keeps
    /// every candidate.
    pub still_threshold: f32,
    /// Decode the audio track.
    pub audio: bool,
    /// Decoding threads per file (frame threading). One: on the corpus, two
    /// cost 24 % more CPU and were slower even alone (`vx-bench decode`).
    pub decoder_threads: usize,
    /// Skip frames no other frame refers to when the sampling interval
    /// spans at least [`SKIP_FRAMES_FROM`] frames.
    pub skip_unreferenced: bool,
    /// Pictures larger than this are refused before they are decoded: a
    /// small file can declare a huge one.
    pub max_pixels: u64,
    /// Audio past this many seconds is not decoded (16 kHz f32 costs
    /// 230 MB an hour); [`Decoded::audio_cut`] says when that happened.
    pub max_audio_s: f64,
    /// Counts the packets read, for a watchdog in another thread: a count
    /// that stops moving means FFmpeg is stuck.
    #[serde(skip)]
    pub progress: Option<Arc<AtomicU64>>,
}

/// Unreferenced frames are skipped when a sampling interval spans this many
/// frames: one skipped frame then shifts a candidate by a fraction of the
/// interval (at 25 fps and 0.5 s, 12.5 frames span it).
pub const SKIP_FRAMES_FROM: f64 = 4.0;

impl Default for DecodeOptions {
    fn default() -> Self {
        Self {
            frame_sides: vec![640],
            frame_interval_s: 0.5,
            max_frames: 240,
            still_threshold: 3.0,
            audio: true,
            decoder_threads: 1,
            skip_unreferenced: true,
            max_pixels: 100_000_000,
            max_audio_s: 3.0 * 3600.0,
            progress: None,
        }
    }
}

pub struct RgbFrame {
    pub pts_s: f64,
    pub width: u32,
    pub height: u32,
    /// Packed rows of `width * 3` bytes.
    pub rgb: Vec<u8>,
}

/// The kept frames at one size, serving the requested sides listed.
pub struct Rendition {
    pub sides: Vec<u32>,
    pub frames: Vec<RgbFrame>,
}

#[derive(Default)]
pub struct Decoded {
    pub kind: Option<MediaKind>,
    pub info: MediaInfo,
    /// One per distinct frame size; all hold the same frame times.
    pub renditions: Vec<Rendition>,
    pub audio: Option<Vec<f32>>,
    /// Set when the audio was cut at [`DecodeOptions::max_audio_s`].
    pub audio_cut: bool,
}

impl Decoded {
    pub fn kind(&self) -> MediaKind {
        self.kind.unwrap_or(MediaKind::Audio)
    }

    /// The frames fitted inside `side × side`; empty if `side` was not asked for.
    pub fn frames_for(&self, side: u32) -> &[RgbFrame] {
        self.renditions
            .iter()
            .find(|r| r.sides.contains(&side))
            .map_or(&[], |r| &r.frames)
    }

    /// Seconds of media actually decoded: to the last kept frame, or the
    /// end of the decoded audio, whichever is later.
    pub fn decoded_s(&self) -> f64 {
        let frames = self
            .renditions
            .first()
            .and_then(|r| r.frames.last())
            .map_or(0.0, |f| f.pts_s);
        let audio = self
            .audio
            .as_ref()
            .map_or(0.0, |a| a.len() as f64 / f64::from(AUDIO_RATE));
        frames.max(audio)
    }

    /// How many frames were kept.
    pub fn frame_count(&self) -> usize {
        self.renditions.first().map_or(0, |r| r.frames.len())
    }
}

/// File extensions vxd treats as media, by kind.
pub fn kind_from_extension(path: &Path) -> Option<MediaKind> {
    let ext = path.extension()?.to_str()?.to_ascii_lowercase();
    Some(match ext.as_str() {
        "mp4" | "m4v" | "mkv" | "webm" | "mov" | "avi" | "mpg" | "mpeg" | "ts" | "wmv" | "flv"
        | "3gp" | "ogv" => MediaKind::Video,
        "mp3" | "wav" | "flac" | "ogg" | "oga" | "opus" | "m4a" | "aac" | "wma" | "aiff" => {
            MediaKind::Audio
        }
        "jpg" | "jpeg" | "png" | "webp" | "bmp" | "gif" | "tif" | "tiff" => MediaKind::Image,
        _ => return None,
    })
}

fn init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        ff::init().expect("FFmpeg initialises");
        ff::util::log::set_level(ff::util::log::Level::Fatal);
    });
}

/// Decodes `path` once: sampled frames, 16 kHz mono audio, metadata.
pub fn decode(path: &Path, opts: &DecodeOptions) -> Result<Decoded, MediaError> {
    init();
    if std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
        return Err(MediaError::Empty);
    }
    if kind_from_extension(path) == Some(MediaKind::Image)
        && let Some(decoded) = jpeg::decode(path, opts)
    {
        return decoded;
    }
    let mut input = ff::format::input(path).map_err(MediaError::Open)?;
    let mut out = Decoded::default();
    out.info.container = input.format().name().to_owned();
    if input.duration() > 0 {
        out.info.duration_s = Some(input.duration() as f64 / f64::from(ff::ffi::AV_TIME_BASE));
    }
    let stamp =
        |tags: ff::DictionaryRef<'_>| tags.get("creation_time").and_then(parse_creation_time);
    out.info.created =
        stamp(input.metadata()).or_else(|| input.streams().find_map(|s| stamp(s.metadata())));
    let video_stream = input
        .streams()
        .filter(|_| !opts.frame_sides.is_empty())
        .filter(|s| s.parameters().medium() == media::Type::Video)
        .find(|s| {
            !s.disposition()
                .contains(ff::format::stream::Disposition::ATTACHED_PIC)
        })
        .map(|s| s.index());
    let has_video = input
        .streams()
        .any(|s| s.parameters().medium() == media::Type::Video);
    let audio_stream = input.streams().best(media::Type::Audio).map(|s| s.index());
    if !has_video && audio_stream.is_none() {
        return Err(MediaError::NoStreams);
    }
    // Metadata of streams no plugin wants decoded.
    for s in input.streams() {
        let medium = s.parameters().medium();
        if medium == media::Type::Video && video_stream.is_none() && out.info.video_codec.is_none()
        {
            out.info.video_codec = Some(s.parameters().id().name().to_owned());
            let dec = codec::Context::from_parameters(s.parameters())
                .and_then(|c| c.decoder().video())
                .map_err(MediaError::Decode)?;
            (out.info.width, out.info.height) = (Some(dec.width()), Some(dec.height()));
        }
        if medium == media::Type::Audio && !opts.audio && Some(s.index()) == audio_stream {
            out.info.audio_codec = Some(s.parameters().id().name().to_owned());
        }
    }
    let audio_stream = audio_stream.filter(|_| opts.audio);
    let is_still = kind_from_extension(path) == Some(MediaKind::Image);

    let mut video = match video_stream {
        Some(i) => {
            let s = input.stream(i).expect("stream exists");
            let mut ctx =
                codec::Context::from_parameters(s.parameters()).map_err(MediaError::Decode)?;
            // The kind must be named: ffmpeg-next's `Config::count` leaves it
            // at none, which FFmpeg takes as no threading at all.
            ctx.set_threading(codec::threading::Config {
                kind: codec::threading::Type::Frame,
                count: opts.decoder_threads,
                ..Default::default()
            });
            let mut dec = ctx.decoder().video().map_err(MediaError::Decode)?;
            let (width, height) = (dec.width(), dec.height());
            if u64::from(width) * u64::from(height) > opts.max_pixels {
                return Err(MediaError::TooManyPixels {
                    width,
                    height,
                    max: opts.max_pixels,
                });
            }
            out.info.video_codec = Some(s.parameters().id().name().to_owned());
            out.info.width = Some(dec.width());
            out.info.height = Some(dec.height());
            let interval = match out.info.duration_s {
                Some(d) if !is_still => opts.frame_interval_s.max(d / opts.max_frames as f64),
                _ => opts.frame_interval_s,
            };
            let rate = s.avg_frame_rate();
            let frames_per_interval = match (rate.numerator(), rate.denominator()) {
                (n, d) if n > 0 && d > 0 => interval * f64::from(n) / f64::from(d),
                _ => 0.0,
            };
            if opts.skip_unreferenced && frames_per_interval >= SKIP_FRAMES_FROM {
                dec.skip_frame(ff::Discard::NonReference);
            }
            Some(VideoSampler::new(
                dec,
                s.time_base(),
                interval,
                opts.clone(),
            ))
        }
        None => None,
    };
    let mut audio = match audio_stream {
        Some(i) => {
            let s = input.stream(i).expect("stream exists");
            let ctx =
                codec::Context::from_parameters(s.parameters()).map_err(MediaError::Decode)?;
            let dec = ctx.decoder().audio().map_err(MediaError::Decode)?;
            out.info.audio_codec = Some(s.parameters().id().name().to_owned());
            Some(AudioMixer::new(dec))
        }
        None => None,
    };

    for (stream, packet) in input.packets() {
        if let Some(p) = &opts.progress {
            p.fetch_add(1, Ordering::Relaxed);
        }
        if Some(stream.index()) == video_stream {
            let v = video.as_mut().expect("video decoder");
            v.decoder.send_packet(&packet).map_err(MediaError::Decode)?;
            v.drain()?;
            if is_still && v.kept > 0 {
                break;
            }
        } else if Some(stream.index()) == audio_stream && !out.audio_cut {
            let a = audio.as_mut().expect("audio decoder");
            a.decoder.send_packet(&packet).map_err(MediaError::Decode)?;
            a.drain()?;
            if a.samples.len() as f64 >= opts.max_audio_s * f64::from(AUDIO_RATE) {
                a.samples
                    .truncate((opts.max_audio_s * f64::from(AUDIO_RATE)) as usize);
                out.audio_cut = true;
                if video_stream.is_none() {
                    break;
                }
            }
        }
    }
    if let Some(mut v) = video {
        if v.decoder.send_eof().is_ok() {
            v.drain()?;
        }
        out.renditions = v.renditions;
    }
    if let Some(mut a) = audio {
        if !out.audio_cut && a.decoder.send_eof().is_ok() {
            a.drain()?;
        }
        out.audio = Some(a.finish()?);
    }

    out.kind = Some(
        if is_still || (has_video && out.frame_count() <= 1 && out.info.duration_s.is_none()) {
            MediaKind::Image
        } else if has_video {
            MediaKind::Video
        } else {
            MediaKind::Audio
        },
    );
    if out.kind == Some(MediaKind::Image) {
        out.info.duration_s = None;
    } else if out.info.duration_s.is_none() {
        out.info.duration_s = out
            .audio
            .as_ref()
            .map(|a| a.len() as f64 / AUDIO_RATE as f64);
    }
    Ok(out)
}

struct VideoSampler {
    decoder: ff::decoder::Video,
    time_base: f64,
    interval: f64,
    next_t: f64,
    opts: DecodeOptions,
    /// One per distinct output size, with the scaler that makes it.
    renditions: Vec<Rendition>,
    scalers: Vec<Option<(scaling::Context, (u32, u32, Pixel))>>,
    /// The luma grid of the last kept frame.
    last_kept: Option<[f32; GRID_CELLS]>,
    kept: usize,
    decoded: frame::Video,
}

/// The still-frame test's grid: 16 × 9 cells.
const GRID: (usize, usize) = (16, 9);
const GRID_CELLS: usize = GRID.0 * GRID.1;

impl VideoSampler {
    fn new(
        decoder: ff::decoder::Video,
        tb: ff::Rational,
        interval: f64,
        opts: DecodeOptions,
    ) -> Self {
        let time_base = f64::from(tb.numerator()) / f64::from(tb.denominator().max(1));
        // Sides that fit this source to the same size share a rendition; the
        // smallest comes first, as it is the cheapest to compare.
        let renditions = renditions_for(decoder.width(), decoder.height(), &opts.frame_sides);
        Self {
            decoder,
            time_base,
            interval,
            next_t: 0.0,
            opts,
            scalers: renditions.iter().map(|_| None).collect(),
            renditions,
            last_kept: None,
            kept: 0,
            decoded: frame::Video::empty(),
        }
    }

    fn drain(&mut self) -> Result<(), MediaError> {
        while self.decoder.receive_frame(&mut self.decoded).is_ok() {
            let pts_s = self
                .decoded
                .timestamp()
                .map_or(0.0, |t| t as f64 * self.time_base)
                .max(0.0);
            if pts_s + 1e-6 < self.next_t || self.kept >= self.opts.max_frames {
                continue;
            }
            self.next_t = if self.last_kept.is_none() {
                pts_s + self.interval
            } else {
                self.next_t + self.interval
            };
            self.next_t = self.next_t.max(pts_s);
            let smallest = self.to_rgb(0, pts_s)?;
            let grid = luma_grid(&smallest);
            if let Some(last) = &self.last_kept {
                let moved = grid
                    .iter()
                    .zip(last)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                if moved < self.opts.still_threshold {
                    continue;
                }
            }
            self.last_kept = Some(grid);
            self.kept += 1;
            self.renditions[0].frames.push(smallest);
            for i in 1..self.renditions.len() {
                let f = self.to_rgb(i, pts_s)?;
                self.renditions[i].frames.push(f);
            }
        }
        Ok(())
    }

    /// The decoded frame scaled for rendition `i`.
    fn to_rgb(&mut self, i: usize, pts_s: f64) -> Result<RgbFrame, MediaError> {
        let src = (
            self.decoded.width(),
            self.decoded.height(),
            self.decoded.format(),
        );
        let side = self.renditions[i].sides[0];
        let (w, h) = fit(src.0, src.1, side, side);
        if self.scalers[i].as_ref().map(|(_, k)| *k) != Some(src) {
            let ctx = scaling::Context::get(
                src.2,
                src.0,
                src.1,
                Pixel::RGB24,
                w,
                h,
                scaling::Flags::AREA,
            )
            .map_err(MediaError::Decode)?;
            self.scalers[i] = Some((ctx, src));
        }
        let (scaler, _) = self.scalers[i].as_mut().expect("scaler set above");
        let mut rgb = frame::Video::empty();
        scaler
            .run(&self.decoded, &mut rgb)
            .map_err(MediaError::Decode)?;
        Ok(RgbFrame {
            pts_s,
            width: w,
            height: h,
            rgb: packed_rgb(&rgb, w, h),
        })
    }
}

/// One empty rendition per distinct size that `sides` fit a `w × h` source
/// to, smallest first (the cheapest to compare), each listing its sides.
fn renditions_for(w: u32, h: u32, sides: &[u32]) -> Vec<Rendition> {
    let (w, h) = (w.max(1), h.max(1));
    let mut sides = sides.to_vec();
    sides.sort_unstable();
    sides.dedup();
    let mut renditions: Vec<Rendition> = vec![];
    for side in sides {
        match renditions.last_mut() {
            Some(r) if fit(w, h, r.sides[0], r.sides[0]) == fit(w, h, side, side) => {
                r.sides.push(side)
            }
            _ => renditions.push(Rendition {
                sides: vec![side],
                frames: vec![],
            }),
        }
    }
    renditions
}

/// The `w × h` RGB24 picture in `frame`, rows packed without padding.
fn packed_rgb(frame: &frame::Video, w: u32, h: u32) -> Vec<u8> {
    let stride = frame.stride(0);
    let row = w as usize * 3;
    let data = frame.data(0);
    let mut packed = Vec::with_capacity(row * h as usize);
    for y in 0..h as usize {
        packed.extend_from_slice(&data[y * stride..y * stride + row]);
    }
    packed
}

/// Mean luma of each cell of a [`GRID`] over the frame.
fn luma_grid(f: &RgbFrame) -> [f32; GRID_CELLS] {
    let (w, h) = (f.width as usize, f.height as usize);
    let mut sum = [0f32; GRID_CELLS];
    let mut count = [0u32; GRID_CELLS];
    for y in 0..h {
        let cy = y * GRID.1 / h;
        for (x, p) in f.rgb[y * w * 3..(y + 1) * w * 3]
            .chunks_exact(3)
            .enumerate()
        {
            let cell = cy * GRID.0 + x * GRID.0 / w;
            sum[cell] += 0.299 * p[0] as f32 + 0.587 * p[1] as f32 + 0.114 * p[2] as f32;
            count[cell] += 1;
        }
    }
    std::array::from_fn(|i| sum[i] / count[i].max(1) as f32)
}

/// Largest size inside `max_w × max_h` with the source's aspect, never larger
/// than the source, with even dimensions (what most scalers prefer).
fn fit(w: u32, h: u32, max_w: u32, max_h: u32) -> (u32, u32) {
    let scale = (max_w as f64 / w as f64)
        .min(max_h as f64 / h as f64)
        .min(1.0);
    let even = |v: f64| ((v.round() as u32) & !1).max(2);
    (even(w as f64 * scale), even(h as f64 * scale))
}

struct AudioMixer {
    decoder: ff::decoder::Audio,
    resampler: Option<resampling::Context>,
    decoded: frame::Audio,
    samples: Vec<f32>,
}

impl AudioMixer {
    fn new(decoder: ff::decoder::Audio) -> Self {
        Self {
            decoder,
            resampler: None,
            decoded: frame::Audio::empty(),
            samples: Vec::new(),
        }
    }

    fn target() -> Sample {
        Sample::F32(SampleType::Packed)
    }

    fn drain(&mut self) -> Result<(), MediaError> {
        while self.decoder.receive_frame(&mut self.decoded).is_ok() {
            if self.decoded.channel_layout().is_empty() {
                let n = self.decoded.channels().max(1);
                self.decoded
                    .set_channel_layout(ChannelLayout::default(n as i32));
            }
            if self.resampler.is_none() {
                let r = resampling::Context::get(
                    self.decoded.format(),
                    self.decoded.channel_layout(),
                    self.decoded.rate(),
                    Self::target(),
                    ChannelLayout::MONO,
                    AUDIO_RATE,
                )
                .map_err(MediaError::Decode)?;
                self.resampler = Some(r);
            }
            let rate = self.decoded.rate().max(1) as usize;
            let capacity = self.decoded.samples() * AUDIO_RATE as usize / rate + 64;
            let mut out = frame::Audio::new(Self::target(), capacity, ChannelLayout::MONO);
            let r = self.resampler.as_mut().expect("resampler set above");
            r.run(&self.decoded, &mut out).map_err(MediaError::Decode)?;
            push_samples(&mut self.samples, &out);
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<f32>, MediaError> {
        if let Some(r) = self.resampler.as_mut() {
            loop {
                let mut out = frame::Audio::new(Self::target(), 4096, ChannelLayout::MONO);
                r.flush(&mut out).map_err(MediaError::Decode)?;
                if out.samples() == 0 {
                    break;
                }
                push_samples(&mut self.samples, &out);
            }
        }
        Ok(self.samples)
    }
}

fn push_samples(dst: &mut Vec<f32>, frame: &frame::Audio) {
    let bytes = &frame.data(0)[..frame.samples() * 4];
    dst.extend(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_ne_bytes(c.try_into().unwrap())),
    );
}

/// Where a decoded file's frames and audio lie inside its segment.
pub struct Packed {
    pub segment: Segment,
    /// Per rendition: the sides it serves and its frames.
    pub renditions: Vec<(Vec<u32>, Vec<FrameRef>)>,
    pub audio: Option<AudioRef>,
}

impl Packed {
    /// The frames fitted inside `side × side`; empty if `side` was not asked for.
    pub fn frames_for(&self, side: u32) -> &[FrameRef] {
        self.renditions
            .iter()
            .find(|(sides, _)| sides.contains(&side))
            .map_or(&[], |(_, frames)| frames)
    }
}

/// Copies every rendition's frames and the audio into one sealed
/// shared-memory segment.
pub fn pack(decoded: &Decoded) -> Result<Packed, MediaError> {
    let mut offset = 0u64;
    let mut renditions = Vec::with_capacity(decoded.renditions.len());
    for r in &decoded.renditions {
        let mut refs = Vec::with_capacity(r.frames.len());
        for f in &r.frames {
            refs.push(FrameRef {
                offset,
                width: f.width,
                height: f.height,
                stride: f.width * 3,
                pts_s: f.pts_s,
            });
            offset += f.rgb.len() as u64;
        }
        renditions.push((r.sides.clone(), refs));
    }
    offset = offset.next_multiple_of(4); // f32 samples start aligned
    let audio = decoded
        .audio
        .as_ref()
        .filter(|a| !a.is_empty())
        .map(|a| AudioRef {
            offset,
            samples: a.len() as u64,
            sample_rate: AUDIO_RATE,
        });
    let total = offset + audio.map_or(0, |a| a.samples * 4);
    let mut writer = SegmentWriter::create(total)?;
    let bytes = writer.bytes_mut();
    for (r, (_, refs)) in decoded.renditions.iter().zip(&renditions) {
        for (f, fr) in r.frames.iter().zip(refs) {
            bytes[fr.offset as usize..][..f.rgb.len()].copy_from_slice(&f.rgb);
        }
    }
    if let (Some(samples), Some(a)) = (&decoded.audio, audio) {
        let dst = &mut bytes[a.offset as usize..][..samples.len() * 4];
        for (chunk, s) in dst.chunks_exact_mut(4).zip(samples) {
            chunk.copy_from_slice(&s.to_le_bytes());
        }
    }
    Ok(Packed {
        segment: writer.seal()?,
        renditions,
        audio,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn creation_times_parse_and_unset_clocks_say_nothing() {
        assert_eq!(
            parse_creation_time("2024-06-01T12:34:56.000000Z"),
            Some(1_717_245_296)
        );
        assert_eq!(parse_creation_time("2000-02-29"), Some(951_782_400));
        assert_eq!(parse_creation_time("1904-01-01T00:00:00.000000Z"), None);
        assert_eq!(parse_creation_time("1970-01-01T00:00:00Z"), None);
        assert_eq!(parse_creation_time("June 2024"), None);
        assert_eq!(parse_creation_time("2024-13-01T00:00:00Z"), None);
    }

    use super::*;

    #[test]
    fn fit_keeps_aspect_never_upscales_and_stays_even() {
        assert_eq!(fit(1920, 1080, 640, 640), (640, 360));
        assert_eq!(fit(320, 240, 640, 640), (320, 240));
        assert_eq!(fit(1080, 1920, 640, 640), (360, 640));
        assert_eq!(fit(641, 3, 640, 640), (640, 2));
    }

    #[test]
    fn extensions_map_to_kinds_case_insensitively() {
        assert_eq!(
            kind_from_extension(Path::new("a/b.MP4")),
            Some(MediaKind::Video)
        );
        assert_eq!(
            kind_from_extension(Path::new("x.flac")),
            Some(MediaKind::Audio)
        );
        assert_eq!(
            kind_from_extension(Path::new("x.jpeg")),
            Some(MediaKind::Image)
        );
        assert_eq!(kind_from_extension(Path::new("notes.txt")), None);
        assert_eq!(kind_from_extension(Path::new("README")), None);
    }

    #[test]
    fn pack_lays_out_frames_then_aligned_audio() {
        let decoded = Decoded {
            renditions: vec![Rendition {
                sides: vec![640],
                frames: vec![
                    RgbFrame {
                        pts_s: 0.0,
                        width: 1,
                        height: 1,
                        rgb: vec![1, 2, 3],
                    },
                    RgbFrame {
                        pts_s: 0.5,
                        width: 1,
                        height: 1,
                        rgb: vec![4, 5, 6],
                    },
                ],
            }],
            audio: Some(vec![0.25, -1.0]),
            ..Default::default()
        };
        let packed = pack(&decoded).unwrap();
        assert_eq!(packed.frames_for(640)[1].offset, 3);
        assert!(packed.frames_for(1280).is_empty());
        let a = packed.audio.unwrap();
        assert_eq!((a.offset, a.samples), (8, 2));
        let view = vx_shm::SegmentView::open(
            std::process::id(),
            packed.segment.fd(),
            packed.segment.len(),
        )
        .unwrap();
        assert_eq!(view.slice(0, 6).unwrap(), &[1, 2, 3, 4, 5, 6]);
        assert_eq!(view.slice(12, 4).unwrap(), &(-1.0f32).to_le_bytes());
    }
}

/// Seconds since the Unix epoch of an ISO 8601 UTC time as FFmpeg writes
/// `creation_time` ("2024-06-01T12:34:56.000000Z"). Cameras that never set
/// their clock write 1904-01-01 or 1970-01-01 (a zero in QuickTime's or
/// Unix's epoch): those say nothing and give `None`.
pub fn parse_creation_time(s: &str) -> Option<i64> {
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = match s.len() >= 19 {
        true => (num(11..13)?, num(14..16)?, num(17..19)?),
        false => (0, 0, 0),
    };
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    // Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
    // days_from_civil).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let t = days * 86_400 + h * 3600 + mi * 60 + sec;
    (t > 86_400).then_some(t)
}
