//! Voice activity: Silero VAD (v6) probabilities per 32 ms window, then speech
//! regions by hysteresis ([`speech_regions`], a pure function).
//!
//! The model's contract, from silero-vad 6.2.3's `utils_vad.OnnxWrapper`: at
//! 16 kHz it takes 512 new samples per call, preceded by the last 64 samples
//! of the previous call (zeros before the first), so `input` is [1, 576];
//! `state` [2, 1, 128] carries over from one call to the next (`stateN`) and
//! starts at zero; `sr` is the scalar 16000. A last partial window is padded
//! with zeros.

use vx_models::ModelError;
use vx_models::ort::session::Session;
use vx_models::ort::value::TensorRef;

/// New samples per model call at 16 kHz.
pub const WINDOW: usize = 512;
/// Samples of the previous call repeated in front of each window.
pub const CONTEXT: usize = 64;
const STATE_LEN: usize = 2 * 128;

/// Silero VAD with its recurrent state; one per host.
pub struct Vad {
    session: Session,
    input: Vec<f32>,
    state: Vec<f32>,
}

impl Vad {
    /// Opens `silero-vad` with `threads` intra-op threads.
    pub fn open(cache_dir: &std::path::Path, threads: usize) -> Result<Self, ModelError> {
        let session = vx_models::onnx_session("silero-vad", cache_dir, threads)?;
        let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
        if names != ["input", "state", "sr"] {
            return Err(ModelError::session(
                "silero-vad",
                format!("expected inputs input, state, sr; the model has {names:?}"),
            ));
        }
        Ok(Self {
            session,
            input: vec![0.0; CONTEXT + WINDOW],
            state: vec![0.0; STATE_LEN],
        })
    }

    /// The speech probability of each 512-sample window of `audio` (16 kHz),
    /// from a fresh state.
    pub fn probabilities(&mut self, audio: &[f32]) -> Result<Vec<f32>, String> {
        self.input.fill(0.0);
        self.state.fill(0.0);
        let sr = [16_000i64];
        let mut probs = Vec::with_capacity(audio.len().div_ceil(WINDOW));
        for window in audio.chunks(WINDOW) {
            self.input.copy_within(WINDOW.., 0);
            self.input[CONTEXT..CONTEXT + window.len()].copy_from_slice(window);
            self.input[CONTEXT + window.len()..].fill(0.0);
            let inputs = vx_models::ort::inputs![
                "input" => tensor([1, CONTEXT + WINDOW], &self.input)?,
                "state" => tensor([2, 1, 128], &self.state)?,
                "sr" => TensorRef::from_array_view(((), &sr[..])).map_err(|e| e.to_string())?,
            ];
            let out = self
                .session
                .run(inputs)
                .map_err(|e| format!("silero-vad failed: {e}"))?;
            let (_, p) = out["output"]
                .try_extract_tensor::<f32>()
                .map_err(|e| format!("silero-vad output: {e}"))?;
            let (_, state) = out["stateN"]
                .try_extract_tensor::<f32>()
                .map_err(|e| format!("silero-vad state: {e}"))?;
            if p.len() != 1 || state.len() != STATE_LEN {
                return Err(format!(
                    "silero-vad gave {} probabilities and {} state values",
                    p.len(),
                    state.len()
                ));
            }
            probs.push(p[0]);
            self.state.copy_from_slice(state);
        }
        Ok(probs)
    }
}

fn tensor<const N: usize>(shape: [usize; N], data: &[f32]) -> Result<TensorRef<'_, f32>, String> {
    TensorRef::from_array_view((shape, data)).map_err(|e| format!("silero-vad input: {e}"))
}

/// How probabilities become regions; see the crate docs for the values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VadParams {
    /// Speech starts at a window at least this probable.
    pub on: f32,
    /// Once in speech, windows below this count as silence.
    pub off: f32,
    /// Regions shorter than this (before padding) are dropped.
    pub min_speech_s: f64,
    /// Speech ends after this much silence.
    pub min_silence_s: f64,
    /// Added before and after each region (halved where neighbours would meet).
    pub pad_s: f64,
    /// Longer regions are cut at their least probable window.
    pub max_region_s: f64,
}

impl Default for VadParams {
    fn default() -> Self {
        Self {
            on: 0.5,
            off: 0.35,
            min_speech_s: 0.25,
            min_silence_s: 0.4,
            pad_s: 0.2,
            max_region_s: 24.0,
        }
    }
}

/// A span of samples, `start..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    pub start: usize,
    pub end: usize,
}

impl Region {
    pub fn len(&self) -> usize {
        self.end - self.start
    }
    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// Speech regions, in samples of 16 kHz audio `n_samples` long, from one
/// probability per [`WINDOW`]. Hysteresis: speech starts at a window `≥ on`
/// and ends at the first window of a run of windows `< off` (windows in
/// between continue a started run) that lasts `min_silence_s`. Regions
/// shorter than `min_speech_s` go; longer than `max_region_s` are split at
/// their least probable window; then each is padded by `pad_s`, except that
/// two neighbours closer than two pads share the gap equally.
pub fn speech_regions(probs: &[f32], n_samples: usize, p: &VadParams) -> Vec<Region> {
    let samples = |s: f64| (s * 16_000.0).round() as usize;
    let min_silence = samples(p.min_silence_s).div_ceil(WINDOW).max(1);
    // Windows [start, end) of raw speech.
    let mut raw: Vec<(usize, usize)> = Vec::new();
    let mut start: Option<usize> = None;
    let mut silence_from: Option<usize> = None;
    for (i, &prob) in probs.iter().enumerate() {
        match start {
            None if prob >= p.on => start = Some(i),
            None => {}
            Some(s) => {
                if prob < p.off {
                    let from = *silence_from.get_or_insert(i);
                    if i + 1 - from >= min_silence {
                        raw.push((s, from));
                        start = None;
                        silence_from = None;
                    }
                } else if prob >= p.on {
                    silence_from = None;
                }
            }
        }
    }
    if let Some(s) = start {
        raw.push((s, silence_from.unwrap_or(probs.len())));
    }

    let max_windows = (samples(p.max_region_s) / WINDOW).max(2);
    let mut split = Vec::with_capacity(raw.len());
    for (s, e) in raw {
        split_long(probs, s, e, max_windows, &mut split);
    }

    let min_speech = samples(p.min_speech_s);
    let mut regions: Vec<Region> = split
        .into_iter()
        .map(|(s, e)| Region {
            start: s * WINDOW,
            end: (e * WINDOW).min(n_samples),
        })
        .filter(|r| r.end > r.start && r.len() >= min_speech)
        .collect();

    let pad = samples(p.pad_s);
    let originals = regions.clone();
    for (i, r) in regions.iter_mut().enumerate() {
        r.start = match i.checked_sub(1).map(|j| originals[j].end) {
            Some(prev) if r.start - prev < 2 * pad => r.start - (r.start - prev) / 2,
            _ => r.start.saturating_sub(pad),
        };
        r.end = match originals.get(i + 1).map(|n| n.start) {
            Some(next) if next - r.end < 2 * pad => r.end + (next - r.end) / 2,
            _ => (r.end + pad).min(n_samples),
        };
    }
    regions
}

/// `start..end` (samples) with its ends moved off non-speech: an end that
/// falls outside every region moves inwards to the nearest region's edge.
/// Whisper's segment times are coarse (often whole seconds, a pause
/// included); the regions are accurate to a window plus their padding.
/// Unchanged if no region lies inside.
pub fn snap_to_speech(start: usize, end: usize, regions: &[Region]) -> (usize, usize) {
    let inside = |t: usize| regions.iter().any(|r| r.start <= t && t < r.end);
    let s = if inside(start) {
        Some(start)
    } else {
        regions.iter().find(|r| r.start > start).map(|r| r.start)
    };
    let e = if end > 0 && inside(end - 1) {
        Some(end)
    } else {
        regions.iter().rev().find(|r| r.end < end).map(|r| r.end)
    };
    match (s, e) {
        (Some(s), Some(e)) if s < e => (s, e),
        _ => (start, end),
    }
}

/// Appends `[s, e)` to `out`, cut into pieces of at most `max` windows, each
/// cut at the least probable window of the second half of the piece.
fn split_long(probs: &[f32], mut s: usize, e: usize, max: usize, out: &mut Vec<(usize, usize)>) {
    while e - s > max {
        let lo = s + max / 2;
        let cut = (lo..s + max)
            .min_by(|&a, &b| probs[a].total_cmp(&probs[b]))
            .unwrap_or(s + max);
        out.push((s, cut));
        s = cut;
    }
    out.push((s, e));
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: usize = WINDOW;

    fn params() -> VadParams {
        VadParams {
            pad_s: 0.0,
            ..VadParams::default()
        }
    }

    /// Probabilities from a pattern: '#' = 0.9, '-' = 0.4 (between the
    /// thresholds), '.' = 0.1.
    fn probs(pattern: &str) -> Vec<f32> {
        pattern
            .chars()
            .map(|c| match c {
                '#' => 0.9,
                '-' => 0.4,
                _ => 0.1,
            })
            .collect()
    }

    fn windows(regions: &[Region]) -> Vec<(usize, usize)> {
        regions
            .iter()
            .map(|r| (r.start / W, r.end.div_ceil(W)))
            .collect()
    }

    #[test]
    fn speech_needs_the_on_threshold_to_start_and_the_off_threshold_to_end() {
        // 0.4 alone never starts speech; after speech it does not end it.
        let p = probs("..----..########------------..............");
        let r = speech_regions(&p, p.len() * W, &params());
        assert_eq!(windows(&r), [(8, 16 + 12)]);
    }

    #[test]
    fn a_pause_shorter_than_min_silence_does_not_split() {
        // 400 ms = 12.5 windows, so 13 windows of silence end speech.
        let p = probs("########............########.............########");
        let r = speech_regions(&p, p.len() * W, &params());
        assert_eq!(windows(&r), [(0, 28), (41, 49)]);
    }

    #[test]
    fn short_blips_are_dropped() {
        // 250 ms = 7.8 windows: 7 windows are too short, 8 are enough.
        let p = probs("#######..............########..............");
        let r = speech_regions(&p, p.len() * W, &params());
        assert_eq!(windows(&r), [(21, 29)]);
    }

    #[test]
    fn padding_grows_regions_but_never_joins_them() {
        let p = probs("..........########..............########......");
        let n = p.len() * W;
        let params = VadParams {
            pad_s: 0.2,
            ..VadParams::default()
        };
        let r = speech_regions(&p, n, &params);
        let pad = 3200;
        assert_eq!(r[0].start, 10 * W - pad);
        assert_eq!(r[1].end, n); // clipped to the audio
        // 14 windows (448 ms) apart, more than two pads: both get a full pad.
        assert_eq!(r[0].end, 18 * W + pad);
        assert_eq!(r[1].start, 32 * W - pad);
        assert_eq!(
            speech_regions(&probs("##########"), 10 * W, &params)[0].start,
            0
        );
        // Closer than two pads (a 320 ms pause, with 300 ms enough to
        // split): they meet halfway.
        let params = VadParams {
            min_silence_s: 0.3,
            ..params
        };
        let p = probs("########..........########");
        let r = speech_regions(&p, p.len() * W, &params);
        assert_eq!(r[0].end, r[1].start);
        assert_eq!(r[0].end, 13 * W);
    }

    #[test]
    fn speech_running_to_the_end_ends_with_the_audio() {
        let p = probs("....#########");
        let r = speech_regions(&p, p.len() * W - 100, &params());
        assert_eq!(
            r,
            [Region {
                start: 4 * W,
                end: p.len() * W - 100
            }]
        );
        assert!(speech_regions(&probs("......"), 6 * W, &params()).is_empty());
        assert!(speech_regions(&[], 0, &params()).is_empty());
    }

    #[test]
    fn segment_ends_in_silence_move_to_the_speech() {
        let r = [
            Region {
                start: 100,
                end: 200,
            },
            Region {
                start: 300,
                end: 400,
            },
        ];
        assert_eq!(snap_to_speech(50, 450, &r), (100, 400));
        assert_eq!(snap_to_speech(150, 350, &r), (150, 350), "inside: kept");
        assert_eq!(snap_to_speech(150, 250, &r), (150, 200));
        assert_eq!(snap_to_speech(250, 380, &r), (300, 380));
        assert_eq!(snap_to_speech(210, 290, &r), (210, 290), "no speech: kept");
        assert_eq!(snap_to_speech(0, 50, &[]), (0, 50));
    }

    #[test]
    fn long_speech_is_cut_at_its_least_probable_window() {
        let mut p = vec![0.9f32; 100];
        p[70] = 0.36; // a dip that is not silence
        p[30] = 0.37;
        let params = VadParams {
            max_region_s: 80.0 * W as f64 / 16_000.0,
            ..params()
        };
        let r = speech_regions(&p, 100 * W, &params);
        assert_eq!(windows(&r), [(0, 70), (70, 100)]);
    }
}
