//! The FFTW log-mel front end against `mel_reference.py`, an independent
//! numpy (float64) version of the same recipe, run with setup's venv.

mod common;

use std::process::Command;

use vx_plugin_speech::mel::{self, Log, LogMel, MelConfig, MelScale, Window};

/// The venv scripts/setup.sh makes, with numpy.
fn python() -> std::path::PathBuf {
    let p = common::cache_dir().join("venv/bin/python");
    assert!(p.exists(), "{} missing: run scripts/setup.sh", p.display());
    p
}

/// 3 s of mixed test signal: a sweep, two tones, noise, silence and speech.
fn signal() -> Vec<f32> {
    let mut a: Vec<f32> = (0..16_000)
        .map(|i| {
            let t = i as f64 / 16_000.0;
            (2.0 * std::f64::consts::PI * (100.0 + 3000.0 * t) * t).sin() as f32 * 0.4
        })
        .collect();
    let tones = common::tone(440.0, 0.5, 0.3);
    a.extend(
        tones
            .iter()
            .zip(common::tone(5000.0, 0.5, 0.2))
            .map(|(x, y)| x + y),
    );
    a.extend(common::noise(0.5, 0.1));
    a.extend(common::silence(0.3));
    let words = common::speak("en-us", 160, "seven");
    a.extend(&words[..words.len().min(11_200)]);
    a
}

#[test]
fn log_mel_matches_the_numpy_reference_to_1e_4() {
    let audio = signal();
    let dir = tempfile::tempdir().expect("temp dir");
    let input = dir.path().join("in.f32");
    common::write_f32(&input, &audio);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mel_reference.py");
    let configs = [
        (
            MelConfig::default(),
            ["hamming", "slaney", "log10", "1e-10"],
        ),
        (
            MelConfig {
                window: Window::Hann,
                scale: MelScale::Htk,
                log: Log::Natural,
                floor: 1e-6,
            },
            ["hann", "htk", "ln", "1e-6"],
        ),
    ];
    for (config, args) in configs {
        let output = dir.path().join("out.f32");
        let out = Command::new(python())
            .arg(script)
            .arg(&input)
            .arg(&output)
            .args(args)
            .output()
            .expect("python runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want = common::read_f32(&output);
        let got = LogMel::new(config)
            .expect("FFTW plan")
            .compute(&audio)
            .expect("log-mel");
        assert_eq!(got.len(), mel::frame_count(audio.len()) * mel::N_MELS);
        assert_eq!(got.len(), want.len(), "{args:?}");
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!(
            "{args:?}: {} frames, max |diff| {worst:.2e}",
            got.len() / mel::N_MELS
        );
        assert!(worst <= 1e-4, "{args:?}: max |diff| {worst}");
    }
}
