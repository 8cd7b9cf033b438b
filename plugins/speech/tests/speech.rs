//! The plugin end to end on generated audio: espeak-ng speech with known
//! words, silence, a tone, noise and drum loops. Needs the installed models
//! (scripts/setup.sh), espeak-ng and ffmpeg.

mod common;

use vx_plugin_api::{Plugin, SegmentResult};

use common::{SCRIPT, dialogue, silence, speak};

fn describe(segments: &[SegmentResult]) -> String {
    segments
        .iter()
        .map(|s| {
            format!(
                "  {:6.2}–{:6.2} {} {:?} {:?}\n",
                s.start_s,
                s.end_s,
                s.speaker.as_deref().unwrap_or("-"),
                s.language.as_deref().unwrap_or("-"),
                s.text
            )
        })
        .collect()
}

fn speakers(segments: &[SegmentResult]) -> Vec<&str> {
    let mut found: Vec<&str> = segments
        .iter()
        .filter_map(|s| s.speaker.as_deref())
        .collect();
    found.sort();
    found.dedup();
    found
}

#[test]
fn the_plugin_asks_for_audio_only() {
    let speech = common::open();
    assert_eq!(speech.name(), "speech");
    assert_eq!(speech.version(), format!("1+{}", speech.whisper_model()));
    let needs = speech.needs();
    assert!(needs.audio);
    assert_eq!(needs.frame_max_side, None);
    let model = std::env::var(vx_plugin_speech::MODEL_VAR).unwrap_or_default();
    let want = match model.trim() {
        "" => "whisper-tiny.en",
        m => m,
    };
    assert_eq!(speech.whisper_model(), want);
}

#[test]
fn a_missing_or_unknown_model_is_an_error_that_says_what_to_do() {
    let empty = tempfile::tempdir().expect("temp dir");
    let ctx = vx_plugin_api::HostContext {
        cache_dir: empty.path().to_owned(),
        threads: 1,
    };
    let err = vx_plugin_speech::Speech::open(&ctx)
        .err()
        .expect("no models here");
    assert!(err.to_string().contains("scripts/setup.sh"), "{err}");
    let ctx = common::host_context();
    let err = vx_plugin_speech::Speech::with_model(&ctx, "whisper-huge")
        .err()
        .expect("unknown");
    assert!(err.to_string().contains("unknown model"), "{err}");
    let err = vx_plugin_speech::Speech::with_model(&ctx, "nanodet")
        .err()
        .expect("not whisper");
    assert!(err.to_string().contains("not a whisper model"), "{err}");
}

/// Clear, slow speech from two voices: within 20 % WER each, every segment
/// labelled speech, in English, and one voice is one speaker.
#[test]
fn clear_speech_is_transcribed_within_20_percent_wer_per_voice() {
    let mut speech = common::open();
    let reference = SCRIPT.join(" ");
    for voice in ["en-us", "en-gb"] {
        let audio = dialogue(&[voice], 120, SCRIPT, 0.5, 0.7);
        let segments = speech.analyse(&audio).expect("analyse");
        print!("{voice}:\n{}", describe(&segments));
        let heard: Vec<&str> = segments.iter().map(|s| s.text.as_str()).collect();
        let rate = common::wer(&reference, &heard.join(" "));
        println!("{voice}: WER {:.1} %", rate * 100.0);
        assert!(rate <= 0.2, "{voice}: WER {rate:.2}");
        for s in &segments {
            assert_eq!(s.labels, ["speech"]);
            assert_eq!(s.language.as_deref(), Some("en"));
            assert!(s.start_s < s.end_s && s.end_s <= audio.len() as f64 / 16_000.0);
            assert_eq!(s.text.trim(), s.text);
        }
        assert_eq!(speakers(&segments), ["speaker 1"], "one voice, one speaker");
    }
}

#[test]
fn speech_after_five_seconds_of_silence_starts_at_five_seconds() {
    let mut speech = common::open();
    let mut audio = silence(5.0);
    audio.extend(speak("en-us", 120, SCRIPT[0]));
    audio.extend(silence(1.0));
    let segments = speech.analyse(&audio).expect("analyse");
    print!("{}", describe(&segments));
    let first = segments.first().expect("a segment");
    assert!(
        (first.start_s - 5.0).abs() <= 1.0,
        "first segment starts at {:.2} s",
        first.start_s
    );
    assert!(
        common::wer(SCRIPT[0], &first.text) <= 0.2,
        "{:?}",
        first.text
    );
}

/// Nothing reaches the index for audio without speech.
#[test]
fn music_tones_noise_and_silence_give_no_segments() {
    let mut speech = common::open();
    let mut tones = common::tone(440.0, 5.0, 0.5);
    tones.extend(common::tone(1000.0, 5.0, 0.3));
    let cases = [
        ("drum loop", common::drums(15.0)),
        ("drum kit", common::drum_kit(12.0)),
        ("tones", tones),
        ("noise", common::noise(5.0, 0.05)),
        ("silence", silence(10.0)),
        ("nothing", Vec::new()),
    ];
    for (name, audio) in cases {
        let segments = speech.analyse(&audio).expect("analyse");
        assert!(segments.is_empty(), "{name}:\n{}", describe(&segments));
    }
}

/// Two voices taking turns are two speakers, in order of appearance, and
/// each sentence is labelled with its own voice.
#[test]
fn two_voices_taking_turns_are_two_speakers() {
    let mut speech = common::open();
    let voices = ["en-us", "en-us+f3"];
    let mut audio = silence(0.5);
    let mut turns = Vec::new(); // (start s, end s, voice)
    for (i, sentence) in SCRIPT.iter().enumerate() {
        let start = audio.len() as f64 / 16_000.0;
        audio.extend(speak(voices[i % 2], 120, sentence));
        turns.push((start, audio.len() as f64 / 16_000.0, i % 2));
        audio.extend(silence(0.8));
    }
    let segments = speech.analyse(&audio).expect("analyse");
    print!("{}", describe(&segments));
    assert_eq!(speakers(&segments), ["speaker 1", "speaker 2"]);
    for s in &segments {
        // The turn this segment overlaps most.
        let overlap = |&(a, b, _): &(f64, f64, usize)| (s.end_s.min(b) - s.start_s.max(a)).max(0.0);
        let turn = turns
            .iter()
            .max_by(|x, y| overlap(x).total_cmp(&overlap(y)))
            .expect("turns");
        let want = format!("speaker {}", turn.2 + 1);
        assert_eq!(s.speaker.as_deref(), Some(want.as_str()), "{s:?}");
    }
}
