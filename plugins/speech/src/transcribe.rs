//! Transcription with whisper.cpp (whisper-rs): one call per [`Chunk`], its
//! segments mapped back to file time, noise-only text dropped.

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use vx_models::ModelError;
use whisper_rs::{FullParams, SamplingStrategy, WhisperContext, WhisperState};

use crate::chunks::Chunk;

/// The whisper model used unless `VX_WHISPER_MODEL` names another.
pub const DEFAULT_MODEL: &str = "whisper-tiny.en";
/// The whisper models in the manifest.
pub const MODELS: &[&str] = &[
    "whisper-tiny.en",
    "whisper-tiny.en-q8_0",
    "whisper-tiny.en-q5_0",
    "whisper-base",
];
/// whisper.cpp refuses shorter input (100 ms) and does poorly on very short
/// input; shorter chunks are padded with silence to this many samples (1 s).
const MIN_SAMPLES: usize = 16_000;

/// One transcript segment, in file samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    pub start: usize,
    pub end: usize,
    pub text: String,
    /// ISO 639-1 code: "en" for English-only models, detected otherwise.
    pub language: String,
}

/// A whisper model, loaded once, and the decoding states that reuse it.
pub struct Whisper {
    ctx: WhisperContext,
    name: String,
    multilingual: bool,
    states: Vec<WhisperState>,
}

impl Whisper {
    /// Loads whisper model `name` (one of [`MODELS`]) from `cache_dir`.
    pub fn open(name: &str, cache_dir: &Path) -> Result<Self, ModelError> {
        if !MODELS.contains(&name) {
            return Err(match vx_models::spec(name) {
                Err(e) => e,
                Ok(_) => ModelError::session(
                    name,
                    format!("not a whisper model (choose one of {MODELS:?})"),
                ),
            });
        }
        let path = vx_models::model_path(name, cache_dir)?;
        let err = |message: String| ModelError::session(name, message);
        // Sends whisper.cpp's and ggml's own logging (a screenful per load)
        // nowhere; errors still come back as results.
        whisper_rs::install_logging_hooks();
        let path_str = path
            .to_str()
            .ok_or_else(|| err(format!("path {} is not UTF-8", path.display())))?;
        let ctx = WhisperContext::new_with_params(path_str, Default::default())
            .map_err(|e| err(format!("whisper.cpp cannot load {}: {e}", path.display())))?;
        let multilingual = ctx.is_multilingual();
        let state = ctx
            .create_state()
            .map_err(|e| err(format!("whisper.cpp state: {e}")))?;
        Ok(Self {
            ctx,
            name: name.to_owned(),
            multilingual,
            states: vec![state],
        })
    }

    /// The model's manifest name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Transcribes each chunk of `audio` (the file's 16 kHz samples) on up
    /// to `workers` decoding states side by side (no more than there are
    /// chunks), each with `threads / workers` threads (at least one), also
    /// when fewer chunks leave states unused. Segments come back in file
    /// order.
    pub fn transcribe(
        &mut self,
        audio: &[f32],
        chunks: &[Chunk],
        threads: usize,
        workers: usize,
    ) -> Result<Vec<Transcript>, String> {
        let workers = workers.max(1);
        let threads = (threads / workers).max(1);
        let workers = workers.min(chunks.len()).max(1);
        while self.states.len() < workers {
            let state = self
                .ctx
                .create_state()
                .map_err(|e| format!("whisper.cpp state: {e}"))?;
            self.states.push(state);
        }
        let multilingual = self.multilingual;
        let mut out = Vec::new();
        if workers == 1 {
            for chunk in chunks {
                out.extend(run_chunk(
                    &mut self.states[0],
                    multilingual,
                    threads,
                    audio,
                    chunk,
                )?);
            }
        } else {
            let next = AtomicUsize::new(0);
            let results = Mutex::new(Vec::with_capacity(chunks.len()));
            std::thread::scope(|s| {
                for state in &mut self.states[..workers] {
                    let (next, results) = (&next, &results);
                    s.spawn(move || {
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            let Some(chunk) = chunks.get(i) else { break };
                            let r = run_chunk(state, multilingual, threads, audio, chunk);
                            results
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push((i, r));
                        }
                    });
                }
            });
            let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
            results.sort_by_key(|(i, _)| *i);
            for (_, r) in results {
                out.extend(r?);
            }
        }
        out.sort_by_key(|t| (t.start, t.end));
        Ok(out)
    }
}

/// Decoding settings: greedy, no carried context (a chunk's hallucination
/// cannot seed the next one's), blank and non-speech tokens suppressed.
fn params<'a, 'b>(multilingual: bool, threads: usize) -> FullParams<'a, 'b> {
    let mut p = FullParams::new(SamplingStrategy::Greedy { best_of: 1 });
    p.set_n_threads(threads as i32);
    // English-only models keep the default language, "en" (setting it
    // again would leak a CString per call in whisper-rs 0.16); multilingual
    // ones detect it per chunk.
    if multilingual {
        p.set_language(None);
    }
    p.set_no_context(true);
    p.set_suppress_blank(true);
    p.set_suppress_nst(true);
    p.set_print_special(false);
    p.set_print_progress(false);
    p.set_print_realtime(false);
    p.set_print_timestamps(false);
    p
}

fn run_chunk(
    state: &mut WhisperState,
    multilingual: bool,
    threads: usize,
    audio: &[f32],
    chunk: &Chunk,
) -> Result<Vec<Transcript>, String> {
    let mut samples = chunk.audio(audio);
    if samples.is_empty() {
        return Ok(Vec::new());
    }
    if samples.len() < MIN_SAMPLES {
        samples.resize(MIN_SAMPLES, 0.0);
    }
    state
        .full(params(multilingual, threads), &samples)
        .map_err(|e| format!("whisper.cpp failed: {e}"))?;
    let language = if multilingual {
        whisper_rs::get_lang_str(state.full_lang_id_from_state()).unwrap_or("en")
    } else {
        "en"
    };
    let mut out = Vec::new();
    for segment in state.as_iter() {
        let raw = segment
            .to_str_lossy()
            .map_err(|e| format!("whisper.cpp segment text: {e}"))?;
        let Some(text) = clean_text(&raw) else {
            continue;
        };
        // Centiseconds from the chunk's start.
        let at = |cs: i64| (cs.max(0) as usize * 160).min(chunk.len());
        let (t0, t1) = (at(segment.start_timestamp()), at(segment.end_timestamp()));
        let start = chunk.to_file(t0, false);
        let end = chunk.to_file(t1.max(t0), true).max(start);
        out.push(Transcript {
            start,
            end,
            text,
            language: language.to_owned(),
        });
    }
    Ok(out)
}

/// A segment's text without annotations whisper writes for non-speech:
/// anything in brackets or parentheses (`[Music]`, `(upbeat music)`), music
/// notes; whitespace collapsed. `None` when no letter or digit is left.
pub fn clean_text(raw: &str) -> Option<String> {
    let mut kept = String::with_capacity(raw.len());
    let mut depth = 0usize;
    for c in raw.chars() {
        match c {
            '[' | '(' | '{' => depth += 1,
            ']' | ')' | '}' => depth = depth.saturating_sub(1),
            '♪' | '♫' | '♬' | '♩' => {}
            _ if depth == 0 => kept.push(c),
            _ => {}
        }
    }
    let text = kept.split_whitespace().collect::<Vec<_>>().join(" ");
    text.chars().any(char::is_alphanumeric).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_annotations_are_not_text() {
        for noise in [
            "",
            "  ",
            "[Music]",
            " (upbeat music)",
            "♪ ♪",
            "[BLANK_AUDIO]",
            "...",
            " - (sighs) -",
        ] {
            assert_eq!(clean_text(noise), None, "{noise:?}");
        }
        assert_eq!(clean_text(" Hello, world."), Some("Hello, world.".into()));
        assert_eq!(
            clean_text(" ♪ And so (laughs) it  goes ♪"),
            Some("And so it goes".into())
        );
        assert_eq!(
            clean_text("It costs 5 euros."),
            Some("It costs 5 euros.".into())
        );
    }
}
