//! Milliseconds per frame of the objects plugin (resize, NanoDet, decoding) on
//! a real photo at the model's input size, for each graph optimisation level
//! and intra-op thread count. The configurations take turns frame by frame,
//! so that a change in the machine's load hits them all alike. Each run
//! waits [`SETTLE`] first: after a run, ONNX Runtime's idle intra-op threads
//! spin for about 50 ms, and they would take a core from the next
//! configuration's run in this process. Interleaved without the pause, three
//! 2-thread sessions each ran about 2× slower.
//!
//! `cargo run --release -p vx-plugin-objects --example objects-bench [-- RUNS]`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use vx_models::GraphOptimizationLevel;
use vx_plugin_objects::{INPUT_SIDE, Objects};

const WARM_UP: usize = 3;
const SETTLE: Duration = Duration::from_millis(100);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 30,
    };
    let side = INPUT_SIDE as u32;
    let picture = common::decode(&common::voc_photo("2011_000006"), side, side);
    let frame = picture.frame(0.0);
    let cache = common::cache_dir();
    let mut configs = Vec::new();
    for threads in [1, 2] {
        for (name, level) in [
            ("Disable", GraphOptimizationLevel::Disable),
            ("Level1", GraphOptimizationLevel::Level1),
            ("Level3", GraphOptimizationLevel::Level3),
        ] {
            let session = vx_models::onnx_session_at("nanodet", &cache, threads, level)?;
            configs.push((name, threads, Objects::with_session(session)?));
        }
    }
    let mut times = vec![Vec::with_capacity(runs); configs.len()];
    for run in 0..WARM_UP + runs {
        for ((_, _, objects), times) in configs.iter_mut().zip(&mut times) {
            std::thread::sleep(SETTLE);
            let start = Instant::now();
            objects.detect(&frame)?;
            if run >= WARM_UP {
                times.push(start.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    let medians: Vec<f64> = times
        .iter_mut()
        .map(|t| {
            t.sort_by(f64::total_cmp);
            t[t.len() / 2]
        })
        .collect();
    let best = medians.iter().copied().fold(f64::INFINITY, f64::min);
    println!("nanodet {side}×{side}, median of {runs} runs each");
    println!(
        "{:<8} {:>7} {:>10} {:>7}",
        "level", "threads", "ms/frame", "× best"
    );
    for ((name, threads, _), median) in configs.iter().zip(&medians) {
        println!(
            "{name:<8} {threads:>7} {median:>10.1} {:>7.2}",
            median / best
        );
    }
    Ok(())
}
