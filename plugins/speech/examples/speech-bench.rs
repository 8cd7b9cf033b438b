//! Real-time factors (seconds of work per second of audio) of each stage of
//! the speech plugin on about 60 s of generated speech (two espeak-ng voices
//! taking turns), at 1 and 2 threads, and one whisper decoding state with
//! all threads against two states side by side with half each. The
//! configurations take turns run by run, so that a change in the machine's
//! load hits them all alike; medians are printed. Also the WER of each
//! whisper model on the clip.
//!
//! `cargo run --release -p vx-plugin-speech --example speech-bench [-- RUNS [MODEL...]]`
//! (models: whisper-tiny.en and whisper-base unless named).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use vx_plugin_speech::chunks::{self, ChunkParams};
use vx_plugin_speech::mel::{LogMel, MelConfig};
use vx_plugin_speech::speakers::Embedder;
use vx_plugin_speech::transcribe::Whisper;
use vx_plugin_speech::vad::{self, Vad, VadParams};

const SENTENCES: &[&str] = &[
    "My name is John and I live in a small house near the city.",
    "Every morning I walk to the station and take the train to work.",
    "The weather was cold and windy, so we stayed inside and read a book.",
    "She opened the window and listened to the birds in the garden.",
    "We will meet again next week at the old library on the hill.",
    "The children played football in the park until it was dark.",
    "He bought fresh bread, some cheese and a bottle of milk.",
    "The meeting was moved to Friday because the manager was ill.",
    "Please turn off the lights when you leave the office tonight.",
    "My sister is learning to play the piano and the guitar.",
    "The river was so high after the rain that the bridge was closed.",
    "They planted apple trees along the road behind the school.",
];

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 3,
    };
    let cache = common::cache_dir();
    let voices = ["en-us", "en-us+f3"];
    let mut audio = common::silence(0.5);
    let mut spans = Vec::new();
    for (i, s) in SENTENCES.iter().enumerate() {
        let start = audio.len();
        audio.extend(common::speak(voices[i % 2], 130, s));
        spans.push(start..audio.len());
        audio.extend(common::silence(0.6));
    }
    let seconds = audio.len() as f64 / 16_000.0;
    let reference = SENTENCES.join(" ");
    println!(
        "clip: {seconds:.1} s, {} sentences, voices {voices:?}",
        SENTENCES.len()
    );

    let mut vads = Vec::new();
    let mut embedders = Vec::new();
    for threads in [1, 2] {
        vads.push(Vad::open(&cache, threads)?);
        embedders.push(Embedder::open(&cache, threads)?);
    }
    let mut mel = LogMel::new(MelConfig::default())?;
    let probs = vads[0].probabilities(&audio)?;
    let regions = vad::speech_regions(&probs, audio.len(), &VadParams::default());
    let chunks = chunks::chunks(&regions, &ChunkParams::default());
    let chunk_lens: Vec<String> = chunks
        .iter()
        .map(|c| format!("{:.1}", c.len() as f64 / 16_000.0))
        .collect();
    println!(
        "{} speech regions, {} chunks of {} s",
        regions.len(),
        chunks.len(),
        chunk_lens.join(", ")
    );

    let mut models: Vec<String> = std::env::args().skip(2).collect();
    if models.is_empty() {
        models = vec!["whisper-tiny.en".into(), "whisper-base".into()];
    }
    let mut whispers: Vec<Whisper> = Vec::new();
    for name in &models {
        match Whisper::open(name, &cache) {
            Ok(w) => whispers.push(w),
            Err(e) => println!("{name}: skipped ({e})"),
        }
    }

    // (stage, threads, workers) → seconds per run.
    let mut rows: Vec<(String, usize, Vec<f64>)> = Vec::new();
    let mut record = |name: &str, threads: usize, secs: f64| match rows
        .iter_mut()
        .find(|(n, t, _)| n == name && *t == threads)
    {
        Some((_, _, v)) => v.push(secs),
        None => rows.push((name.to_owned(), threads, vec![secs])),
    };
    let mut texts: Vec<(String, String)> = Vec::new();
    for run in 0..=runs {
        let warm = run > 0;
        for (i, threads) in [1usize, 2].into_iter().enumerate() {
            let t = Instant::now();
            vads[i].probabilities(&audio)?;
            if warm {
                record("VAD (Silero)", threads, t.elapsed().as_secs_f64());
            }
            let t = Instant::now();
            for s in &spans {
                embedders[i].embed(&audio[s.clone()])?;
            }
            if warm {
                record(
                    "speaker embedding (incl. mel)",
                    threads,
                    t.elapsed().as_secs_f64(),
                );
            }
        }
        let t = Instant::now();
        for s in &spans {
            mel.compute(&audio[s.clone()])?;
        }
        if warm {
            record("log-mel (FFTW)", 1, t.elapsed().as_secs_f64());
        }
        for w in &mut whispers {
            for (threads, workers) in [(1, 1), (2, 1), (2, 2)] {
                let t = Instant::now();
                let out = w.transcribe(&audio, &chunks, threads, workers)?;
                let secs = t.elapsed().as_secs_f64();
                let name = match workers {
                    1 => w.name().to_owned(),
                    n => format!("{}, {n} states", w.name()),
                };
                if warm {
                    record(&name, threads, secs);
                }
                if run == 0 && threads == 2 {
                    let text: Vec<String> = out.into_iter().map(|t| t.text).collect();
                    texts.push((name, text.join(" ")));
                }
            }
        }
    }

    println!("\nreal-time factor (median of {runs} runs; seconds of work per second of audio)");
    println!("{:<36} {:>16} {:>16}", "stage", "1 thread", "2 threads");
    let mut names: Vec<String> = Vec::new();
    for (n, _, _) in &rows {
        if !names.contains(n) {
            names.push(n.clone());
        }
    }
    for name in names {
        print!("{name:<36}");
        for threads in [1, 2] {
            match rows
                .iter_mut()
                .find(|(n, t, _)| *n == name && *t == threads)
            {
                Some((_, _, v)) => {
                    let m = median(v);
                    print!(" {:>7.4} ({:5.2} s)", m / seconds, m);
                }
                None => print!(" {:>16}", "—"),
            }
        }
        println!();
    }
    println!("\nWER on the clip (2 threads)");
    for (name, text) in texts {
        println!(
            "{name:<36} {:5.1} %",
            common::wer(&reference, &text) * 100.0
        );
    }
    Ok(())
}
