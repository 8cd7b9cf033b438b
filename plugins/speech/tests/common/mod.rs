//! Audio made on the spot: speech with known words from espeak-ng, tones,
//! silence, and Debian's drum samples, all as 16 kHz mono f32 through the
//! ffmpeg CLI. No media is committed.

#![allow(dead_code)] // Each test file and example uses a different part.

use std::path::{Path, PathBuf};
use std::process::Command;

use vx_plugin_api::HostContext;
use vx_plugin_speech::Speech;

/// Drum samples from Debian's python-kivy-examples (installed by setup).
pub const DRUMS: &str = "/usr/share/kivy-examples/audio";
pub const RATE: usize = 16_000;

/// Where setup installed models and ONNX Runtime.
pub fn cache_dir() -> PathBuf {
    vx_config::installed_cache_dir()
}

pub fn host_context() -> HostContext {
    HostContext {
        cache_dir: cache_dir(),
        threads: 2,
    }
}

/// The plugin as a host opens it; a clear failure when models are missing.
pub fn open() -> Speech {
    Speech::open(&host_context())
        .unwrap_or_else(|e| panic!("cannot open the speech plugin: {e} (run scripts/setup.sh)"))
}

fn run(cmd: &mut Command) {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (run scripts/setup.sh)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Any audio file ffmpeg reads, as 16 kHz mono f32 samples.
pub fn decode(path: &Path) -> Vec<f32> {
    let dir = tempfile::tempdir().expect("temp dir");
    let raw = dir.path().join("a.f32");
    run(Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y", "-i"])
        .arg(path)
        .args(["-ar", "16000", "-ac", "1", "-f", "f32le"])
        .arg(&raw));
    read_f32(&raw)
}

pub fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path)
        .expect("raw audio")
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

pub fn write_f32(path: &Path, samples: &[f32]) {
    let bytes: Vec<u8> = samples.iter().flat_map(|s| s.to_le_bytes()).collect();
    std::fs::write(path, bytes).expect("write raw audio");
}

/// `text` spoken by espeak-ng `voice` at `wpm` words per minute.
pub fn speak(voice: &str, wpm: u32, text: &str) -> Vec<f32> {
    let dir = tempfile::tempdir().expect("temp dir");
    let wav = dir.path().join("s.wav");
    run(Command::new("espeak-ng")
        .args(["-v", voice, "-s", &wpm.to_string(), "-w"])
        .arg(&wav)
        .arg(text));
    decode(&wav)
}

pub fn silence(seconds: f64) -> Vec<f32> {
    vec![0.0; (seconds * RATE as f64) as usize]
}

/// A sine at `hz`, amplitude `amp`.
pub fn tone(hz: f64, seconds: f64, amp: f32) -> Vec<f32> {
    (0..(seconds * RATE as f64) as usize)
        .map(|i| (2.0 * std::f64::consts::PI * hz * i as f64 / RATE as f64).sin() as f32 * amp)
        .collect()
}

/// Deterministic white noise in [-amp, amp].
pub fn noise(seconds: f64, amp: f32) -> Vec<f32> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..(seconds * RATE as f64) as usize)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * amp
        })
        .collect()
}

/// A drum loop about `seconds` long: the kivy samples one after another,
/// again and again, with a little air between hits.
pub fn drums(seconds: f64) -> Vec<f32> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(DRUMS)
        .unwrap_or_else(|e| panic!("{DRUMS}: {e} (run scripts/setup.sh)"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wav"))
        .collect();
    files.sort();
    assert!(files.len() >= 10, "too few drum samples in {DRUMS}");
    let hits: Vec<Vec<f32>> = files.iter().map(|f| decode(f)).collect();
    let want = (seconds * RATE as f64) as usize;
    let mut out = Vec::with_capacity(want);
    'fill: loop {
        for h in &hits {
            out.extend_from_slice(&h[..h.len().min(RATE / 2)]);
            out.extend(std::iter::repeat_n(0.0, RATE / 8));
            if out.len() >= want {
                break 'fill;
            }
        }
    }
    out.truncate(want);
    out
}

/// Three drum samples (kick, clap, closed hat), each looped, played
/// together for `seconds`: a denser beat than [`drums`].
pub fn drum_kit(seconds: f64) -> Vec<f32> {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("kit.wav");
    let t = seconds.to_string();
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-v", "error", "-nostdin", "-y"]);
    for name in ["kick_mid", "clap_mid", "hat_cl"] {
        let wav = std::fs::read_dir(DRUMS)
            .unwrap_or_else(|e| panic!("{DRUMS}: {e} (run scripts/setup.sh)"))
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.to_string_lossy().ends_with(&format!("{name}.wav")))
            .unwrap_or_else(|| panic!("no {name} sample in {DRUMS}"));
        cmd.args(["-stream_loop", "-1", "-t", &t, "-i"]).arg(wav);
    }
    cmd.args([
        "-filter_complex",
        "[0][1][2]amix=inputs=3:duration=longest",
        "-t",
        &t,
    ])
    .arg(&out);
    run(&mut cmd);
    decode(&out)
}

/// Word error rate: word-level edit distance over the reference's length,
/// after lower-casing and dropping punctuation.
pub fn wer(reference: &str, hypothesis: &str) -> f64 {
    let norm = |s: &str| -> Vec<String> {
        s.split(|c: char| c.is_whitespace() || c == '-')
            .map(|w| {
                w.chars()
                    .filter(|c| c.is_alphanumeric())
                    .collect::<String>()
                    .to_lowercase()
            })
            .filter(|w| !w.is_empty())
            .collect()
    };
    let (r, h) = (norm(reference), norm(hypothesis));
    let mut prev: Vec<usize> = (0..=h.len()).collect();
    for i in 1..=r.len() {
        let mut cur = vec![i; h.len() + 1];
        for j in 1..=h.len() {
            let sub = prev[j - 1] + (r[i - 1] != h[j - 1]) as usize;
            cur[j] = sub.min(prev[j] + 1).min(cur[j - 1] + 1);
        }
        prev = cur;
    }
    prev[h.len()] as f64 / r.len().max(1) as f64
}

/// Sentences for transcription tests: plain words, no numbers or names
/// with several spellings.
pub const SCRIPT: &[&str] = &[
    "My name is John and I live in a small house near the city.",
    "Every morning I walk to the station and take the train to work.",
    "The weather was cold and windy, so we stayed inside and read a book.",
    "She opened the window and listened to the birds in the garden.",
];

/// The sentences of `script` spoken by `voices` in turn, each followed by
/// `pause_s` of silence, with `lead_s` of silence first.
pub fn dialogue(voices: &[&str], wpm: u32, script: &[&str], lead_s: f64, pause_s: f64) -> Vec<f32> {
    let mut audio = silence(lead_s);
    for (i, sentence) in script.iter().enumerate() {
        audio.extend(speak(voices[i % voices.len()], wpm, sentence));
        audio.extend(silence(pause_s));
    }
    audio
}
