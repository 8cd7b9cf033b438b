//! How well d-vectors tell generated voices apart, for each log-mel front
//! end, and where the clustering threshold should sit.
//!
//! Every voice says the same sentences (one d-vector each, as a transcript
//! segment would get); cosine distances between d-vectors of the same voice
//! and of different voices are summarised per front end, then per pair of
//! voices for the default one.
//!
//! `cargo run --release -p vx-plugin-speech --example speakers`

#[path = "../tests/common/mod.rs"]
mod common;

use vx_plugin_speech::mel::{Log, MelConfig, MelScale, Window};
use vx_plugin_speech::speakers::{Embedder, cluster, cosine_distance};

/// espeak-ng voices: the default male voice with two accents (the same
/// timbre), and variants that change pitch and formants. (`en-gb+…` variants
/// are ignored by espeak-ng here: they give plain en-gb.)
const VOICES: &[&str] = &[
    "en-us",
    "en-gb",
    "en-us+m3",
    "en-us+m7",
    "en-us+f2",
    "en-us+f3",
    "en-us+f4",
    "en-us+klatt",
];

const SENTENCES: &[&str] = &[
    "My name is John and I live in a small house near the city.",
    "Every morning I walk to the station and take the train to work.",
    "The weather was cold and windy.",
    "She opened the window and listened to the birds in the garden.",
    "Please bring the red box.",
    "We will meet again next week at the old library.",
];

fn quantiles(v: &mut [f32]) -> String {
    v.sort_by(f32::total_cmp);
    let q = |f: f64| v[((v.len() - 1) as f64 * f).round() as usize];
    format!(
        "min {:.3}  p5 {:.3}  median {:.3}  p95 {:.3}  max {:.3}",
        q(0.0),
        q(0.05),
        q(0.5),
        q(0.95),
        q(1.0)
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cache = common::cache_dir();
    let audio: Vec<Vec<Vec<f32>>> = VOICES
        .iter()
        .map(|v| SENTENCES.iter().map(|s| common::speak(v, 130, s)).collect())
        .collect();
    let configs = [
        ("hamming slaney log10 1e-10 (recipe)", MelConfig::default()),
        (
            "hamming slaney log10 1e-6",
            MelConfig {
                floor: 1e-6,
                ..MelConfig::default()
            },
        ),
        (
            "hann slaney log10 1e-6 (upstream voicefilter)",
            MelConfig {
                window: Window::Hann,
                floor: 1e-6,
                ..MelConfig::default()
            },
        ),
        (
            "hamming htk log10 1e-10",
            MelConfig {
                scale: MelScale::Htk,
                ..MelConfig::default()
            },
        ),
        (
            "hann slaney ln 1e-6",
            MelConfig {
                window: Window::Hann,
                log: Log::Natural,
                floor: 1e-6,
                ..MelConfig::default()
            },
        ),
    ];
    for (ci, (name, config)) in configs.into_iter().enumerate() {
        let mut embedder = Embedder::with_front_end(&cache, 2, config)?;
        let mut vecs: Vec<(usize, Vec<f32>)> = Vec::new();
        for (v, sentences) in audio.iter().enumerate() {
            for s in sentences {
                let e = embedder.embed(s)?.ok_or("sentence too short")?;
                vecs.push((v, e));
            }
        }
        let (mut same, mut diff) = (Vec::new(), Vec::new());
        let mut pair = vec![vec![Vec::new(); VOICES.len()]; VOICES.len()];
        for i in 0..vecs.len() {
            for j in i + 1..vecs.len() {
                let d = cosine_distance(&vecs[i].1, &vecs[j].1);
                let (a, b) = (vecs[i].0, vecs[j].0);
                if a == b { &mut same } else { &mut diff }.push(d);
                pair[a][b].push(d);
                pair[b][a].push(d);
            }
        }
        let max_same = same.iter().copied().fold(0.0, f32::max);
        let min_diff = diff.iter().copied().fold(2.0, f32::min);
        println!("\n== {name}");
        println!("same voice      {}", quantiles(&mut same));
        println!("different voice {}", quantiles(&mut diff));
        println!(
            "margin (min different - max same) {:+.3}",
            min_diff - max_same
        );
        // How many voices clustering finds at a few thresholds.
        let all: Vec<Vec<f32>> = vecs.iter().map(|(_, v)| v.clone()).collect();
        for t in [0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4] {
            let labels = cluster(&all, t);
            let found = labels.iter().max().map_or(0, |m| m + 1);
            // Pairs put together wrongly / apart wrongly.
            let (mut merged, mut split) = (0, 0);
            for i in 0..vecs.len() {
                for j in i + 1..vecs.len() {
                    let same_voice = vecs[i].0 == vecs[j].0;
                    let same_label = labels[i] == labels[j];
                    merged += (!same_voice && same_label) as usize;
                    split += (same_voice && !same_label) as usize;
                }
            }
            println!(
                "  threshold {t:.2}: {found} clusters for {} voices, {merged} pairs wrongly merged, {split} wrongly split",
                VOICES.len()
            );
        }
        if ci == 0 {
            println!("\nmean distance per pair of voices (diagonal: same voice)");
            print!("{:>15}", "");
            for v in VOICES {
                print!("{v:>15}");
            }
            println!();
            for (a, row) in pair.iter().enumerate() {
                print!("{:>15}", VOICES[a]);
                for d in row {
                    let mean = d.iter().sum::<f32>() / d.len().max(1) as f32;
                    print!("{mean:>15.3}");
                }
                println!();
            }
        }
    }
    Ok(())
}
