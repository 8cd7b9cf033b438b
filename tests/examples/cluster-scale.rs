//! The cluster's throughput with one and with two workers on the same files,
//! and the rate at which the coordinator's one index writer takes results.
//!
//! `cargo run --release -p vx-e2e --example cluster-scale -- [MEDIA_DIR]`
//!
//! With MEDIA_DIR (say bench/corpus.sh's corpus), its files are indexed with
//! every default plugin and the installed models; without it, 300 small
//! pictures with keyframes only (what the cluster itself costs). Each run
//! starts a fresh nats-server, a coordinator and its workers on this
//! machine, all real processes; the time runs from the files landing in the
//! watched folder to the coordinator being idle.
//!
//! The coordinator's own work per file, in-process: the index writer (files
//! of 20 segments each, about a minute of video, put into a fresh index on
//! disk and committed every 64 files as vxd's batches are), and MiniLM
//! embedding those segments' words for search by meaning (on 1 thread, as
//! vxd's text-embed host runs on 2 cores).

use std::path::Path;
use std::time::{Duration, Instant};

use vx_e2e::*;
use vx_index::{FileRecord, MediaIndex};
use vx_plugin_api::HostContext;
use vx_plugin_protocol::{MediaInfo, MediaKind, SegmentResult};
use vx_plugin_text_embed::TextEmbed;

const PICTURES: usize = 300;
const WRITER_FILES: usize = 4000;
const SEGMENTS_PER_FILE: usize = 20;
const EMBEDDED: usize = 2000;
const WORDS: [&str; 7] = [
    "roadmap", "deadline", "bus", "garden", "meeting", "invoice", "station",
];

fn main() {
    let media = std::env::args().nth(1);
    let (local, files, _) = run(0, media.as_deref());
    println!("one vxd, no cluster: {files} files in {local:.1} s");
    let mut walls = vec![];
    for workers in [1, 2] {
        let (wall, files, split) = run(workers, media.as_deref());
        println!(
            "{workers} worker(s): {files} files in {wall:.1} s ({:.2} files/s); split {split:?}",
            files as f64 / wall
        );
        walls.push(wall);
    }
    println!(
        "2 workers / 1 worker throughput: {:.2}; 1 worker / no cluster: {:.2}",
        walls[0] / walls[1],
        local / walls[0]
    );
    let (docs_per_s, files_per_s) = writer_rate();
    println!(
        "index writer: {docs_per_s:.0} documents/s ({files_per_s:.0} files of {SEGMENTS_PER_FILE} segments/s)"
    );
    let embedded = embed_rate();
    println!(
        "MiniLM, 1 thread: {embedded:.0} segments/s ({:.1} files of {SEGMENTS_PER_FILE} segments/s)",
        embedded / SEGMENTS_PER_FILE as f64
    );
}

/// The words of a synthetic segment: what OCR or speech would give.
fn segment_text(f: usize, s: usize) -> String {
    format!(
        "the {} for the {} is on slide {s} of talk {f}",
        WORDS[(f + s) % 7],
        WORDS[s % 7]
    )
}

/// Segments' words embedded per second, in batches of 64 as vxd sends them.
fn embed_rate() -> f64 {
    let ctx = HostContext {
        cache_dir: installed_cache(),
        threads: 1,
    };
    let mut model = TextEmbed::open(&ctx).expect("MiniLM installed (scripts/setup.sh)");
    let texts: Vec<String> = (0..EMBEDDED)
        .map(|i| segment_text(i / 20, i % 20))
        .collect();
    let started = Instant::now();
    for batch in texts.chunks(64) {
        model.embed_all(batch).unwrap();
    }
    EMBEDDED as f64 / started.elapsed().as_secs_f64()
}

/// One cluster run (no workers: one vxd on its own): wall seconds, files
/// indexed, jobs per worker.
fn run(workers: usize, media: Option<&str>) -> (f64, u64, Vec<(String, u64)>) {
    let nats = Nats::start();
    let models = media.is_some();
    let config = if models {
        ""
    } else {
        "plugins = ['keyframes']"
    };
    let c = match workers {
        0 => Daemon::launch(config, &[], models, |_| {}),
        _ => nats.coordinator(config, true, "", models),
    };
    let _workers: Vec<Daemon> = (0..workers)
        .map(|i| nats.worker(&format!("w{i}"), config, "", models))
        .collect();
    assert!(
        eventually(Duration::from_secs(60), || match workers {
            // On its own, vxd takes files once its hosts are up: so that the
            // time counts no model loading, as with workers heard from.
            0 => c.json(&["status"])["plugins"]
                .as_array()
                .is_some_and(|p| p.iter().all(|p| p["state"] == "ready")),
            _ => done_by(&c).len() == workers,
        }),
        "the hosts never came up, or the workers were not heard"
    );
    let aside = c.root.path().join("aside");
    std::fs::create_dir_all(&aside).unwrap();
    match media {
        Some(dir) => copy_media(Path::new(dir), &aside),
        None => make_images(
            &aside,
            &(0..PICTURES)
                .map(|i| format!("p{i:03}.bmp"))
                .collect::<Vec<_>>(),
        ),
    }
    let started = Instant::now();
    std::fs::rename(&aside, c.media.join("drop")).unwrap();
    c.wait_idle(3600);
    let wall = started.elapsed().as_secs_f64();
    let split = if workers == 0 { vec![] } else { done_by(&c) };
    (wall, indexed(&c), split)
}

fn copy_media(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_media(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Documents and files per second through one index writer.
fn writer_rate() -> (f64, f64) {
    let dir = tempfile::tempdir().unwrap();
    let index = MediaIndex::open(dir.path()).unwrap();
    let started = Instant::now();
    for f in 0..WRITER_FILES {
        let segments: Vec<SegmentResult> = (0..SEGMENTS_PER_FILE)
            .map(|s| SegmentResult {
                start_s: s as f64 * 3.0,
                end_s: s as f64 * 3.0 + 3.0,
                text: segment_text(f, s),
                labels: vec!["person".into()],
                ..Default::default()
            })
            .collect();
        let record = FileRecord {
            path: format!("/media/clip{f:05}.mp4").into(),
            kind: MediaKind::Video,
            info: MediaInfo {
                duration_s: Some(60.0),
                ..Default::default()
            },
            size: 1,
            mtime: 0,
            fingerprint: "f".into(),
            failures: vec![],
            content: format!("content-{f}"),
            plugin_set: "ocr@1".into(),
        };
        let refs: Vec<(&str, &SegmentResult)> = segments.iter().map(|s| ("ocr", s)).collect();
        index.put_file(&record, &refs).unwrap();
        if f % 64 == 63 {
            index.commit().unwrap();
        }
    }
    index.commit().unwrap();
    let secs = started.elapsed().as_secs_f64();
    let docs = WRITER_FILES * (SEGMENTS_PER_FILE + 1);
    (docs as f64 / secs, WRITER_FILES as f64 / secs)
}
