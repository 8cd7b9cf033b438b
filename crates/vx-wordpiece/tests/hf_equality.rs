//! vx-wordpiece against HuggingFace `tokenizers` with all-MiniLM-L6-v2's
//! tokenizer.json: every sentence of `fixture/hf-minilm.jsonl.gz` (written by
//! `fixture/generate.py`, which says how to regenerate it) must give HF's
//! input ids and attention mask, padded to a fixed 128.
//!
//! Uses the vocab that `scripts/setup.sh` installs; without it the test fails.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::Instant;

use vx_wordpiece::{MAX_LEN, Padding, Tokenizer};

struct Case {
    kind: String,
    text: String,
    /// HF's ids up to the last one with attention mask 1: [PAD] and mask 0 follow.
    ids: Vec<i64>,
}

fn vocab_path() -> PathBuf {
    let path = vx_config::installed_cache_dir().join("models/all-MiniLM-L6-v2.vocab.txt");
    assert!(
        path.exists(),
        "{} missing: run scripts/setup.sh",
        path.display()
    );
    path
}

fn fixture() -> Vec<Case> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixture/hf-minilm.jsonl.gz");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    BufReader::new(flate2::read::GzDecoder::new(file))
        .lines()
        .enumerate()
        .map(|(n, line)| {
            let line = line.unwrap_or_else(|e| panic!("{} line {}: {e}", path.display(), n + 1));
            let mut v: serde_json::Value = serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("{} line {}: {e}", path.display(), n + 1));
            let field = |v: &mut serde_json::Value, key: &str| v[key].take();
            let (kind, text, ids) = (
                field(&mut v, "k"),
                field(&mut v, "text"),
                field(&mut v, "ids"),
            );
            let ids: Vec<i64> = serde_json::from_value(ids).expect("ids");
            assert!(ids.len() <= MAX_LEN, "line {}: {} ids", n + 1, ids.len());
            Case {
                kind: kind.as_str().expect("k").to_owned(),
                text: text.as_str().expect("text").to_owned(),
                ids,
            }
        })
        .collect()
}

#[test]
fn ids_and_mask_equal_huggingface() {
    let tokenizer = Tokenizer::from_file(vocab_path()).expect("vocab loads");
    let cases = fixture();
    let varied = cases.iter().filter(|c| c.kind != "sweep").count();
    assert!(
        varied >= 10_000,
        "fixture has {varied} sentences besides the code point sweep, want ≥ 10000"
    );

    let started = Instant::now();
    let mut mismatches = Vec::new();
    for chunk in cases.chunks(256) {
        let texts: Vec<&str> = chunk.iter().map(|c| c.text.as_str()).collect();
        let batch = tokenizer.encode_batch(&texts, Padding::Fixed(MAX_LEN));
        assert_eq!((batch.rows, batch.cols), (chunk.len(), MAX_LEN));
        for (row, case) in chunk.iter().enumerate() {
            let mut ids = case.ids.clone();
            ids.resize(MAX_LEN, 0);
            let mut mask = vec![1; case.ids.len()];
            mask.resize(MAX_LEN, 0);
            if batch.ids(row) != ids || batch.mask(row) != mask {
                mismatches.push((case, batch.ids(row).to_vec(), batch.mask(row).to_vec()));
            }
        }
    }
    let elapsed = started.elapsed();
    eprintln!(
        "{} sentences ({varied} varied, {} in the code point sweep): {} mismatches; encoded in {elapsed:.2?}",
        cases.len(),
        cases.len() - varied,
        mismatches.len()
    );

    let report: Vec<String> = mismatches
        .iter()
        .take(8)
        .map(|(case, ids, mask)| {
            let trim = |v: &[i64]| v[..mask.iter().filter(|&&m| m == 1).count()].to_vec();
            format!(
                "[{}] {:?}\n  expected {:?}\n  got      {:?}\n  got mask ones {}",
                case.kind,
                case.text,
                case.ids,
                trim(ids),
                mask.iter().filter(|&&m| m == 1).count(),
            )
        })
        .collect();
    assert!(
        mismatches.is_empty(),
        "{} of {} sentences differ from HF; first ones:\n{}",
        mismatches.len(),
        cases.len(),
        report.join("\n")
    );
}
