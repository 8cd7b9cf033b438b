//! Milliseconds per frame of the faces plugin (resize, CenterFace, decoding) on
//! a real photo at the model's input size, for each graph optimisation level
//! and intra-op thread count. The configurations take turns frame by frame,
//! so that a change in the machine's load hits them all alike. Each run
//! waits 100 ms first: after a run, ONNX Runtime's idle intra-op threads
//! spin for about 50 ms, and they would take a core from the next
//! configuration's run in this process. Interleaved without the pause, three
//! 2-thread sessions each ran about 2× slower.
//!
//! `cargo run --release -p vx-plugin-faces --example faces-bench [-- RUNS]`

#[path = "../../objects/tests/common/mod.rs"]
mod common;

use vx_plugin_faces::{Faces, INPUT_HEIGHT, INPUT_WIDTH};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let runs: usize = match std::env::args().nth(1) {
        Some(n) => n.parse()?,
        None => 30,
    };
    let (w, h) = (INPUT_WIDTH as u32, INPUT_HEIGHT as u32);
    let picture = common::decode(&common::voc_photo("2011_000006"), w, h);
    let frame = picture.frame(0.0);
    print!("centerface {w}×{h}, ");
    common::compare_levels("centerface", runs, Faces::with_session, |f| {
        f.detect(&frame).map(drop)
    })
}
