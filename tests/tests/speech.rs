//! The speech plugin end to end: vxd with the real VAD, whisper and speaker
//! models, on speech made by espeak-ng, searched through vxctl.

use std::path::Path;

use vx_e2e::{Daemon, espeak, ffmpeg};

const SENTENCE: &str = "The budget meeting moved to Thursday morning.";
/// Real drum samples from Debian's python-kivy-examples.
const DRUMS: &str = "/usr/share/kivy-examples/audio";

fn populate(media: &Path) {
    let said = media.parent().unwrap().join("said.wav");
    espeak(SENTENCE, &said);
    // A video whose speech starts at 4 s.
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=25:duration=10",
        "-i",
        said.to_str().unwrap(),
        "-filter_complex",
        "[1]adelay=4000:all=1,apad[s]",
        "-map",
        "0:v",
        "-map",
        "[s]",
        "-t",
        "10",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "aac",
        media.join("call.mp4").to_str().unwrap(),
    ]);
    // 12 s of real drum samples, looped and mixed: music with no words.
    let mut samples: Vec<String> = std::fs::read_dir(DRUMS)
        .unwrap_or_else(|e| panic!("{DRUMS}: {e}: run scripts/setup.sh"))
        .map(|e| e.unwrap().path().to_string_lossy().into_owned())
        .filter(|p| {
            ["kick_mid", "clap_mid", "hat_cl"]
                .iter()
                .any(|k| p.ends_with(&format!("{k}.wav")))
        })
        .collect();
    samples.sort();
    assert_eq!(samples.len(), 3, "{samples:?}");
    let mut args: Vec<&str> = vec![];
    for wav in &samples {
        args.extend(["-stream_loop", "-1", "-t", "12", "-i", wav]);
    }
    let out = media.join("drums.flac");
    args.extend([
        "-filter_complex",
        "[0][1][2]amix=inputs=3:duration=longest",
        "-t",
        "12",
        out.to_str().unwrap(),
    ]);
    ffmpeg(&args);
}

#[test]
fn speech_in_a_video_is_found_at_its_moment_and_drums_give_no_transcript() {
    let d = Daemon::start_with_models("plugins = [\"speech\"]", populate);
    d.wait_idle(300);
    let status = d.json(&["status"]);
    assert_eq!(status["files"]["failed"], 0, "{status:#}\n{}", d.log());

    let hits = d.json(&[
        "search",
        "\"budget meeting\"",
        "--has",
        "speech",
        "--segments",
    ])["hits"]
        .as_array()
        .cloned()
        .unwrap();
    let moment: Vec<_> = hits.iter().filter(|h| !h["start_s"].is_null()).collect();
    assert_eq!(moment.len(), 1, "{hits:#?}");
    let h = moment[0];
    assert!(h["path"].as_str().unwrap().ends_with("call.mp4"));
    let start = h["start_s"].as_f64().unwrap();
    assert!(
        (start - 4.0).abs() <= 2.0,
        "spoken at 4 s, found at {start}"
    );
    assert_eq!(h["speaker"], "speaker 1");

    let call = d.json(&["status", d.media.join("call.mp4").to_str().unwrap()]);
    assert_eq!(call["indexed"]["speakers"], 1, "{call:#}");
    assert!(
        call["indexed"]["transcript_chars"].as_u64().unwrap() >= 20,
        "{call:#}"
    );

    let drums = d.json(&["status", d.media.join("drums.flac").to_str().unwrap()]);
    assert_eq!(
        drums["indexed"]["segments"],
        serde_json::json!([["speech", 0]]),
        "{drums:#}"
    );
    assert_eq!(drums["indexed"]["transcript_chars"], 0);
}
