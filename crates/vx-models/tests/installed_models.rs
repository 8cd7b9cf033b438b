//! The installed models, loaded the way vx loads them: ONNX models through
//! [`vx_models::onnx_session`], the whisper ggml file through whisper-rs.
//! `scripts/setup.sh` installs them; a missing model fails here with the
//! command that installs it.

use std::path::PathBuf;
use std::process::Command;

use vx_models::ort::value::Tensor;
use vx_models::{model_path, onnx_session};

fn cache() -> PathBuf {
    vx_config::installed_cache_dir()
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Word error rate: word-level edit distance over the reference length.
fn wer(reference: &str, hypothesis: &str) -> f64 {
    let norm = |s: &str| -> Vec<String> {
        s.split_whitespace()
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
    prev[h.len()] as f64 / r.len() as f64
}

#[test]
fn whisper_tiny_en_conversion_transcribes_clear_speech() {
    transcribes_clear_speech("whisper-tiny.en");
}

/// whisper-base is not a default model; scripts/test.sh fetches it.
#[test]
fn whisper_base_conversion_transcribes_clear_speech() {
    transcribes_clear_speech("whisper-base");
}

/// The quantised variants come from our own converter (scripts/test.sh
/// fetches them): whisper.cpp must load them and still hear the sentence.
#[test]
fn whisper_tiny_en_quantised_conversions_transcribe_clear_speech() {
    transcribes_clear_speech("whisper-tiny.en-q8_0");
    transcribes_clear_speech("whisper-tiny.en-q5_0");
}

fn transcribes_clear_speech(name: &str) {
    let model = model_path(name, &cache()).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let sentence = "My name is John and I live in a small house near the city.";
    let wav = dir.path().join("s.wav");
    let raw = dir.path().join("s.f32");
    run(Command::new("espeak-ng")
        .args(["-v", "en-us", "-s", "120", "-w"])
        .arg(&wav)
        .arg(sentence));
    run(Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-i"])
        .arg(&wav)
        .args(["-ar", "16000", "-ac", "1", "-f", "f32le"])
        .arg(&raw));
    let audio: Vec<f32> = std::fs::read(&raw)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();

    let ctx =
        whisper_rs::WhisperContext::new_with_params(model.to_str().unwrap(), Default::default())
            .expect("whisper.cpp loads the converted ggml file");
    let mut state = ctx.create_state().unwrap();
    let mut params =
        whisper_rs::FullParams::new(whisper_rs::SamplingStrategy::Greedy { best_of: 1 });
    params.set_n_threads(2);
    params.set_language(Some("en"));
    params.set_print_progress(false);
    params.set_print_realtime(false);
    params.set_print_special(false);
    state.full(params, &audio).unwrap();
    let text: String = state
        .as_iter()
        .map(|s| s.to_str_lossy().unwrap().into_owned())
        .collect();
    let rate = wer(sentence, &text);
    println!("{name} heard {text:?}: WER {:.0} %", rate * 100.0);
    assert!(rate <= 0.2, "WER {rate:.2} for {text:?}");
}

#[test]
fn wer_counts_substitutions_insertions_and_deletions() {
    assert_eq!(wer("a b c d", "a b c d"), 0.0);
    assert_eq!(wer("a b c d", "a x c"), 0.5);
    assert_eq!(wer("Hello, world.", "hello world"), 0.0);
}

/// Token ids of lower-case words that are whole tokens in the vocabulary.
fn token_ids(vocab: &[String], sentence: &str) -> Vec<i64> {
    let id = |w: &str| {
        vocab
            .iter()
            .position(|v| v == w)
            .unwrap_or_else(|| panic!("{w} not in vocab")) as i64
    };
    let mut ids = vec![id("[CLS]")];
    ids.extend(sentence.split_whitespace().map(id));
    ids.push(id("[SEP]"));
    ids
}

#[test]
fn minilm_embeds_similar_sentences_close_and_unrelated_ones_apart() {
    let vocab: Vec<String> =
        std::fs::read_to_string(model_path("minilm-l6-v2-vocab", &cache()).unwrap())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
    let mut session = onnx_session("minilm-l6-v2", &cache(), 2).unwrap_or_else(|e| panic!("{e}"));
    let sentences = [
        "a dog runs on the beach",
        "a puppy playing by the sea",
        "the tax deadline is in april",
    ];
    let mut embeddings = vec![];
    for s in sentences {
        let ids = token_ids(&vocab, s);
        let n = ids.len();
        let t = |v: Vec<i64>| Tensor::from_array(([1usize, n], v)).unwrap();
        let out = session
            .run(vx_models::ort::inputs![
                "input_ids" => t(ids.clone()),
                "attention_mask" => t(vec![1; n]),
                "token_type_ids" => t(vec![0; n]),
            ])
            .unwrap();
        let (shape, data) = out["sentence_embedding"]
            .try_extract_tensor::<f32>()
            .unwrap();
        assert_eq!(&shape[..], &[1, 384]);
        embeddings.push(data.to_vec());
    }
    let cos = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
    for e in &embeddings {
        assert!((cos(e, e) - 1.0).abs() < 1e-4, "not L2-normalised");
    }
    let (close, far) = (
        cos(&embeddings[0], &embeddings[1]),
        cos(&embeddings[0], &embeddings[2]),
    );
    println!("cos(dog, puppy) = {close:.3}, cos(dog, tax) = {far:.3}");
    assert!(close > 0.4 && far < 0.2, "close {close}, far {far}");
}

#[test]
fn every_onnx_model_loads_and_runs_at_its_input_size() {
    let cases: [(&str, &[(&str, &[usize])]); 4] = [
        ("nanodet", &[("input_1", &[1, 3, 416, 416])]),
        ("centerface", &[("input.1", &[1, 3, 480, 640])]),
        ("ppocr-v4-det", &[("x", &[1, 3, 320, 320])]),
        ("ppocr-v4-rec", &[("x", &[1, 3, 48, 320])]),
    ];
    for (name, inputs) in cases {
        let mut session = onnx_session(name, &cache(), 2).unwrap_or_else(|e| panic!("{e}"));
        let (input, shape) = inputs[0];
        let len = shape.iter().product();
        let out = session.run(vx_models::ort::inputs![input => Tensor::from_array((shape.to_vec(), vec![0.5f32; len])).unwrap()]).unwrap();
        let shapes: Vec<Vec<i64>> = out
            .values()
            .map(|v| v.try_extract_tensor::<f32>().unwrap().0.to_vec())
            .collect();
        println!("{name}: {shapes:?}");
        match name {
            "nanodet" => assert_eq!(
                shapes,
                [
                    [1, 2704, 80],
                    [1, 676, 80],
                    [1, 169, 80],
                    [1, 2704, 44],
                    [1, 676, 44],
                    [1, 169, 44]
                ]
            ),
            "centerface" => assert_eq!(shapes[0], [1, 1, 120, 160]),
            "ppocr-v4-det" => assert_eq!(shapes[0], [1, 1, 320, 320]),
            _ => assert_eq!(shapes[0], [1, 40, 6625]),
        }
    }
    // The two speech models take windows, not images.
    for name in ["silero-vad", "speaker-embedder"] {
        let session = onnx_session(name, &cache(), 1).unwrap_or_else(|e| panic!("{e}"));
        assert!(!session.inputs().is_empty(), "{name}");
    }
}
