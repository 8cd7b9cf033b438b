//! Search at scale: builds an index of N synthetic segments with vectors,
//! starts the real vxd on it (with the real MiniLM host for queries), and
//! measures query latency by mode through the control socket, the index's
//! size on disk, vxd's memory, and the recall@10 of the two-stage vector
//! search against scoring every vector.
//!
//! `cargo run --release -p vx-e2e --example search-scale -- SEGMENTS [DIR]`
//! (scripts/measure-search.sh runs 10k, 100k and 1M).
//!
//! The text is made from templates of spoken sentences, on-screen text and
//! label lists. Each segment joins two sentences of a pool of real sentences
//! embedded by MiniLM; its vector is the normalised sum of theirs. Embedding
//! a million texts here would take hours; a sum keeps the vectors on the
//! model's manifold (they cluster as real ones do), which is what the
//! search's speed and recall depend on.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use vx_ctl_client::Client;
use vx_ctl_protocol::{SearchFilters, SearchMode, SearchRequest};
use vx_index::{FileRecord, MediaIndex, VectorStore, embed_text, text_key};
use vx_plugin_api::HostContext;
use vx_plugin_protocol::{MediaInfo, MediaKind, SegmentResult};
use vx_plugin_text_embed::{DIMS, TextEmbed};

const SEGMENTS_PER_FILE: usize = 100;
const POOL: usize = 3000;
const QUERIES: usize = 100;
/// Must match what vxd's embedder names the store after (plugin@version).
const MODEL: &str = "text-embed@1+all-MiniLM-L6-v2";

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
}

const WHO: &[&str] = &[
    "we",
    "my sister",
    "the kids",
    "grandpa",
    "our team",
    "the teacher",
    "my friend",
    "the neighbours",
    "the guide",
    "dad",
    "mom",
    "the manager",
    "everyone",
    "the coach",
    "the driver",
];
const DID: &[&str] = &[
    "walked along",
    "talked about",
    "cleaned",
    "painted",
    "visited",
    "photographed",
    "fixed",
    "cooked dinner at",
    "argued about",
    "played near",
    "sang songs at",
    "planned the budget for",
    "looked for",
    "drove past",
    "celebrated at",
];
const WHAT: &[&str] = &[
    "the beach",
    "the old barn",
    "the birthday cake",
    "the quarterly report",
    "the mountain trail",
    "the kitchen",
    "the wedding venue",
    "the school play",
    "the new car",
    "the garden",
    "the harbour",
    "the football match",
    "the museum",
    "the tax forms",
    "the camping site",
    "the city park",
    "the christmas tree",
    "the swimming pool",
    "the train station",
    "the lake",
];
const WHEN: &[&str] = &[
    "this morning",
    "last summer",
    "on friday",
    "before the storm",
    "after lunch",
    "during the holidays",
    "at sunset",
    "in the rain",
    "next week",
    "for hours",
];
const HOW: &[&str] = &[
    "and it was wonderful",
    "but nobody came",
    "and the dog followed us",
    "while it snowed",
    "with a lot of laughter",
    "and we got lost",
    "and took many pictures",
    "until it got dark",
];
const SIGNS: &[&str] = &[
    "Q3 roadmap",
    "exit",
    "sale 50% off",
    "welcome to the conference",
    "platform 4",
    "happy birthday",
    "budget review 2024",
    "no parking",
    "open daily 9-17",
    "agenda",
];
const LABELS: &[&str] = &[
    "person", "dog", "car", "bicycle", "boat", "cake", "chair", "tv", "bus", "cat", "bird",
    "umbrella", "bottle", "laptop", "horse",
];

fn sentence(r: &mut Rng) -> String {
    match r.next() % 10 {
        0 => format!("{} · {}", r.pick(SIGNS), r.pick(SIGNS)),
        1 => format!("{}, {}, {}", r.pick(LABELS), r.pick(LABELS), r.pick(LABELS)),
        _ => format!(
            "{} {} {} {} {}.",
            r.pick(WHO),
            r.pick(DID),
            r.pick(WHAT),
            r.pick(WHEN),
            r.pick(HOW)
        ),
    }
}

fn query(r: &mut Rng) -> String {
    match r.next() % 4 {
        0 => format!(
            "{} {}",
            r.pick(WHAT).trim_start_matches("the "),
            r.pick(WHEN)
        ),
        1 => r.pick(WHAT).trim_start_matches("the ").to_owned(),
        2 => format!("{} {}", r.pick(WHO), r.pick(DID)),
        _ => r
            .pick(&[
                "a day at the seaside",
                "fixing things at home",
                "paperwork and money",
                "a party with cake",
                "hiking in the hills",
                "quantum chromodynamics lecture",
                "children playing outside",
                "rainy weather",
            ])
            .to_owned(),
    }
}

fn unit(v: Vec<f32>) -> Vec<f32> {
    let n = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.into_iter().map(|x| x / n).collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn du(path: &Path) -> u64 {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => std::fs::read_dir(path)
            .map(|d| d.flatten().map(|e| du(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args
        .next()
        .and_then(|a| a.replace('_', "").parse().ok())
        .expect("usage: search-scale SEGMENTS [DIR]");
    let root = PathBuf::from(
        args.next()
            .unwrap_or_else(|| format!("/tmp/vx-search-scale-{n}")),
    );
    let _ = std::fs::remove_dir_all(&root);
    let (state, files_dir, cache) = (root.join("state"), root.join("files"), root.join("cache"));
    for d in [&state, &files_dir, &cache, &root.join("watched")] {
        std::fs::create_dir_all(d).unwrap();
    }
    for d in ["models", "onnxruntime"] {
        std::os::unix::fs::symlink(vx_e2e::installed_cache().join(d), cache.join(d)).unwrap();
    }

    // The pool: real sentence vectors.
    let ctx = HostContext {
        cache_dir: vx_e2e::installed_cache(),
        threads: 2,
    };
    let mut model = TextEmbed::open(&ctx).expect("MiniLM installed (scripts/setup.sh)");
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut seen = HashSet::new();
    let mut pool = vec![];
    while pool.len() < POOL {
        let s = sentence(&mut rng);
        if seen.insert(s.clone()) {
            pool.push(s);
        }
    }
    let t = Instant::now();
    let pool_vecs = model.embed_all(&pool).unwrap();
    eprintln!(
        "embedded a pool of {POOL} sentences in {:.1} s",
        t.elapsed().as_secs_f64()
    );

    // The index and the vectors.
    let t = Instant::now();
    let index = MediaIndex::open(&state.join("index")).unwrap();
    let mut store = VectorStore::open(&state.join("index.vectors"), MODEL, DIMS).unwrap();
    let files = n.div_ceil(SEGMENTS_PER_FILE);
    let mut batch = vec![];
    let mut made = 0;
    for f in 0..files {
        let path = files_dir.join(format!("clip-{f:07}.mp4"));
        std::fs::write(&path, b"").unwrap(); // exists, so vxd does not purge it
        let count = SEGMENTS_PER_FILE.min(n - made);
        let mut segments = Vec::with_capacity(count);
        for s in 0..count {
            let (a, b) = (rng.next() as usize % POOL, rng.next() as usize % POOL);
            let text = format!("{} {}", pool[a], pool[b]);
            let v: Vec<f32> = pool_vecs[a]
                .iter()
                .zip(&pool_vecs[b])
                .map(|(x, y)| x + y)
                .collect();
            if let Some(words) = embed_text(&text, &[]) {
                batch.push((text_key(&words), unit(v)));
            }
            segments.push(SegmentResult {
                start_s: s as f64 * 6.0,
                end_s: s as f64 * 6.0 + 6.0,
                text,
                labels: vec!["speech".into()],
                ..Default::default()
            });
        }
        made += count;
        let record = FileRecord {
            path,
            kind: MediaKind::Video,
            info: MediaInfo {
                container: "mov,mp4".into(),
                duration_s: Some(600.0),
                video_codec: Some("h264".into()),
                audio_codec: Some("aac".into()),
                width: Some(1280),
                height: Some(720),
                created: None,
            },
            size: 0,
            mtime: 1_600_000_000 + f as i64 * 3600,
            fingerprint: "synthetic".into(),
            failures: vec![],
            content: format!("synthetic-{f}"),
            plugin_set: "speech@synthetic".into(),
        };
        let refs: Vec<(&str, &SegmentResult)> = segments.iter().map(|s| ("speech", s)).collect();
        index.put_file(&record, &refs).unwrap();
        if f % 1000 == 999 || f + 1 == files {
            index.commit().unwrap();
            store.insert(&batch).unwrap();
            batch.clear();
            eprint!("\r{made} segments");
        }
    }
    eprintln!(
        "\nbuilt {n} segments in {files} files, {} vectors, in {:.1} s",
        store.len(),
        t.elapsed().as_secs_f64()
    );
    drop(index);

    // Recall of the two-stage search, and its own time, in-process.
    let mut qrng = Rng(42);
    let queries: Vec<String> = (0..QUERIES).map(|_| query(&mut qrng)).collect();
    let qvecs = model.embed_all(&queries).unwrap();
    let mut recall = 0.0;
    let mut two_stage = vec![];
    let mut exact_ms = vec![];
    for q in &qvecs {
        let t = Instant::now();
        let fast: HashSet<u64> = store
            .nearest(q, 10, -1.0, 4000)
            .iter()
            .map(|h| h.0)
            .collect();
        two_stage.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        let exact = store.nearest_exact(q, 10, -1.0);
        exact_ms.push(t.elapsed().as_secs_f64() * 1e3);
        recall +=
            exact.iter().filter(|h| fast.contains(&h.0)).count() as f64 / exact.len().max(1) as f64;
    }
    two_stage.sort_by(f64::total_cmp);
    exact_ms.sort_by(f64::total_cmp);
    let vectors_bytes = store.disk_bytes();
    drop(store);
    drop(model);

    // vxd on it, with only the text embedder, through the control socket.
    let socket = root.join("run/vxd.sock");
    let config = root.join("vxd.toml");
    std::fs::write(
        &config,
        format!(
            "watch = [{:?}]\nstate_dir = {state:?}\ncache_dir = {cache:?}\nsocket = {socket:?}\nplugins = [\"text-embed\"]\n",
            root.join("watched")
        ),
    )
    .unwrap();
    let mut vxd = vx_e2e::spawn_vxd_with(&config, &root, &[]);
    let started = Instant::now();
    let mut client = loop {
        if let Ok(c) = Client::connect(&socket) {
            break c;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "vxd did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    loop {
        let s = client.status().unwrap();
        let ready = s
            .plugins
            .iter()
            .any(|p| p.name == "text-embed" && p.pid.is_some());
        if ready && s.idle {
            assert_eq!(s.embed_backlog, 0);
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "vxd not ready: {s:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("vxd ready in {:.1} s", started.elapsed().as_secs_f64());
    let pid = vxd.id();
    let ask = |mode| SearchRequest {
        query: String::new(),
        limit: 10,
        filters: SearchFilters::default(),
        mode,
        per_file: true,
        moments_per_file: 3,
    };
    println!(
        "segments {n}: index {:.0} MB + vectors {:.0} MB on disk",
        du(&state.join("index")) as f64 / 1e6,
        vectors_bytes as f64 / 1e6
    );
    for mode in [SearchMode::Text, SearchMode::Semantic, SearchMode::Hybrid] {
        let mut ms = vec![];
        let mut empty = 0;
        for round in 0..3 {
            for q in &queries {
                let t = Instant::now();
                let reply = client
                    .search(SearchRequest {
                        query: q.clone(),
                        ..ask(mode)
                    })
                    .unwrap();
                if round > 0 {
                    ms.push(t.elapsed().as_secs_f64() * 1e3); // the first round warms caches
                } else if reply.hits.is_empty() {
                    empty += 1;
                }
                assert_eq!(reply.mode, mode, "{:?}", reply.warnings);
            }
        }
        ms.sort_by(f64::total_cmp);
        println!(
            "  {:<8} p50 {:6.1} ms  p99 {:6.1} ms  ({} queries, {empty} of {QUERIES} with no hits)",
            mode.as_str(),
            percentile(&ms, 0.5),
            percentile(&ms, 0.99),
            ms.len()
        );
    }
    for q in ["quantum chromodynamics lecture", "tax deadline"] {
        let reply = client
            .search(SearchRequest {
                query: q.into(),
                per_file: false,
                ..ask(SearchMode::Semantic)
            })
            .unwrap();
        let best = reply.hits.first();
        println!(
            "  {q:?} by meaning: {} hits, best {:.3} {:?}",
            reply.hits.len(),
            best.and_then(|h| h.similarity).unwrap_or(0.0),
            best.map(|h| h.snippet.as_str()).unwrap_or("")
        );
    }
    println!(
        "  vectors: two-stage p50 {:.1} ms p99 {:.1} ms, exact p50 {:.1} ms; recall@10 {:.3}",
        percentile(&two_stage, 0.5),
        percentile(&two_stage, 0.99),
        percentile(&exact_ms, 0.5),
        recall / QUERIES as f64
    );
    println!(
        "  vxd memory: VmRSS {:.0} MB (anon {:.0} MB, file {:.0} MB), VmHWM {:.0} MB",
        vx_e2e::proc_status(pid, "VmRSS:") as f64 / 1024.0,
        vx_e2e::proc_status(pid, "RssAnon:") as f64 / 1024.0,
        vx_e2e::proc_status(pid, "RssFile:") as f64 / 1024.0,
        vx_e2e::proc_status(pid, "VmHWM:") as f64 / 1024.0
    );
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let _ = vxd.wait();
}
