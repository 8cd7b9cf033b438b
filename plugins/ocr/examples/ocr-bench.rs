//! `cargo run --release -p vx-plugin-ocr --example ocr-bench`: milliseconds per
//! frame and character accuracy of PP-OCR (det + rec) at three graph
//! optimisation levels × 1 and 2 threads, and of Tesseract, on the frames
//! of `tests/accuracy.rs`. Engines take turns frame by frame, rounds
//! rotate who goes first, and each figure is a median. Tesseract's threads
//! come from OpenMP: set `OMP_THREAD_LIMIT` to cap them. `BENCH_ROUNDS`
//! (default 3) sets the rounds.

#[path = "../tests/fixtures/mod.rs"]
mod fixtures;

use std::time::Instant;

use vx_models::GraphOptimizationLevel;
use vx_plugin_ocr::Ocr;
use vx_plugin_ocr::ppocr::PpOcr;
use vx_plugin_ocr::tesseract::Tesseract;
use vx_plugin_ocr::text::edit_distance;

struct Entry {
    name: String,
    ocr: Ocr,
    ms: Vec<f64>,
}

/// (wrong characters, characters) over `samples`.
fn errors(ocr: &mut Ocr, samples: &[fixtures::Sample]) -> (usize, usize) {
    samples.iter().fold((0, 0), |(e, n), s| {
        let got = fixtures::read_text(ocr, &s.frame());
        (
            e + edit_distance(&s.text(), &got),
            n + s.text().chars().count(),
        )
    })
}

fn percent((errors, chars): (usize, usize)) -> f64 {
    100.0 * (1.0 - errors as f64 / chars as f64)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let cache_dir = vx_config::installed_cache_dir();
    let samples = fixtures::samples();
    let captions = fixtures::caption_samples();

    let mut entries = vec![];
    for threads in [1, 2] {
        for (level_name, level) in [
            ("off", GraphOptimizationLevel::Disable),
            ("level 1", GraphOptimizationLevel::Level1),
            ("level 3", GraphOptimizationLevel::Level3),
        ] {
            let p = PpOcr::open_at(&cache_dir, threads, level).unwrap_or_else(|e| panic!("{e}"));
            entries.push(Entry {
                name: format!("PP-OCR, {threads} thread(s), graph opt {level_name}"),
                ocr: p.into(),
                ms: vec![],
            });
        }
    }
    let omp = std::env::var("OMP_THREAD_LIMIT").unwrap_or_else(|_| "unset".into());
    entries.push(Entry {
        name: format!("Tesseract, OMP_THREAD_LIMIT {omp}"),
        ocr: Tesseract::new().expect("tesseract").into(),
        ms: vec![],
    });

    // The accuracy pass doubles as warm-up.
    let accuracy: Vec<_> = entries
        .iter_mut()
        .map(|e| (errors(&mut e.ocr, &samples), errors(&mut e.ocr, &captions)))
        .collect();

    for round in 0..rounds {
        for s in &samples {
            let frame = s.frame();
            let n = entries.len();
            for k in 0..n {
                let e = &mut entries[(k + round) % n];
                let t = Instant::now();
                std::hint::black_box(e.ocr.read(&frame).expect("read"));
                e.ms.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }

    let medians: Vec<f64> = entries.iter_mut().map(|e| median(&mut e.ms)).collect();
    let best = medians.iter().copied().fold(f64::MAX, f64::min);
    println!(
        "{} frames of {}×{}, {rounds} rounds; accuracy = 1 − edit distance / characters",
        samples.len(),
        fixtures::WIDTH,
        fixtures::HEIGHT
    );
    println!(
        "{:<44} {:>9} {:>8} {:>10} {:>10}",
        "engine", "ms/frame", "× best", "accuracy", "captions"
    );
    for ((e, m), (a, c)) in entries.iter().zip(&medians).zip(&accuracy) {
        println!(
            "{:<44} {:>9.0} {:>8.2} {:>9.1}% {:>9.1}%",
            e.name,
            m,
            m / best,
            percent(*a),
            percent(*c)
        );
    }
}
