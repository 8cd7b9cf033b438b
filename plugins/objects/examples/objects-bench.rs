//! Milliseconds per frame of the objects plugin (resize, NanoDet, decoding) on
//! a real photo at the model's input size, for each graph optimisation level
//! and intra-op thread count. The configurations take turns frame by frame,
//! so that a change in the machine's load hits them all alike. Each run
//! waits 100 ms first: after a run, ONNX Runtime's idle intra-op threads
//! spin for about 50 ms, and they would take a core from the next
//! configuration's run in this process. Interleaved without the pause, three
//! 2-thread sessions each ran about 2× slower.
//!
//! `cargo run --release -p vx-plugin-objects --example objects-bench [-- RUNS]`

#[path = "../tests/common/mod.rs"]
mod common;

use vx_plugin_objects::{INPUT_SIDE, Objects};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 30,
    };
    let side = INPUT_SIDE as u32;
    let picture = common::decode(&common::voc_photo("2011_000006"), side, side);
    let frame = picture.frame(0.0);
    print!("nanodet {side}×{side}, ");
    common::compare_levels("nanodet", runs, Objects::with_session, |o| {
        o.detect(&frame).map(drop)
    })
}
