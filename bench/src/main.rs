//! `vx-bench lower-bound|old FILE_LIST VXD_CONFIG`: the in-process half of
//! the benchmark that `bench/run.py` drives.
//!
//! - `lower-bound` decodes each file once with the options vxd would use
//!   (every configured plugin's needs, the config's sampling), then runs each
//!   plugin on exactly the frames and audio vxd would send it, in this
//!   process: no sockets, no scheduling. It prints the CPU seconds of the
//!   decoding and of each model. Their sum over the cores is the time no
//!   pipeline could beat.
//! - `old` is the architecture vx replaces: for each file, each plugin in
//!   turn decodes the file itself and runs, one after another, every model
//!   with all cores. It prints the wall time.
//!
//! - `decode` weighs the decode levers (threads, skipping unreferenced
//!   frames): each file is decoded with each variant in
//!   turn, a different one first each time, and it prints each variant's CPU
//!   and wall time against one thread decoding every frame, and how far the
//!   kept frames' times moved.
//!
//!
//! Models are opened before the clock starts in both, as vxd's hosts are.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;
use vx_config::Settings;
use vx_media::{DecodeOptions, Packed};
use vx_plugin_api::{HostContext, JobInput, Plugin};
use vx_plugin_protocol::{Job, Needs, ShmRef};
use vx_shm::SegmentView;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, list, config] = &args[..] else {
        eprintln!("usage: vx-bench lower-bound|old|decode FILE_LIST VXD_CONFIG");
        std::process::exit(2);
    };
    let settings = Settings::load(Some(Path::new(config))).unwrap_or_else(|e| fail(e));
    let files: Vec<PathBuf> = std::fs::read_to_string(list)
        .unwrap_or_else(|e| fail(e))
        .lines()
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .collect();
    let cores = settings.cores();
    let report = match mode.as_str() {
        "lower-bound" => lower_bound(&settings, &files, settings.host_threads),
        "old" => old_architecture(&settings, &files, cores),
        "decode" => decode_levers(&settings, &files),
        _ => fail(format!("unknown mode {mode}")),
    };
    let _ = std::fs::remove_dir_all(artefacts());
    println!("{report}");
}

/// The decode options vxd uses with every configured plugin.
fn vxd_options(settings: &Settings) -> DecodeOptions {
    let needs: Vec<Needs> = open_plugins(settings, 1)
        .iter()
        .map(|(_, p)| p.needs())
        .collect();
    vx_decoder::options_for(settings, &needs)
}

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("vx-bench: {e}");
    std::process::exit(1);
}

/// The configured plugins that read files, opened with `threads` each.
fn open_plugins(settings: &Settings, threads: usize) -> Vec<(String, Box<dyn Plugin>)> {
    let ctx = HostContext {
        cache_dir: settings.cache_dir.clone(),
        threads,
    };
    settings
        .plugins
        .iter()
        .filter(|p| *p != vx_config::TEXT_EMBED)
        .map(|name| {
            let open =
                vx_plugin_host::opener(name).unwrap_or_else(|| fail(format!("no plugin {name}")));
            let plugin = open(&ctx).unwrap_or_else(|e| fail(format!("{name}: {e}")));
            (name.clone(), plugin)
        })
        .collect()
}

/// Runs `plugin` on the decoded file, as a host would on vxd's job.
fn run(settings: &Settings, plugin: &mut dyn Plugin, path: &Path, packed: &Packed) {
    let needs = plugin.needs();
    let job = Job {
        id: 1,
        path: path.to_owned(),
        kind: vx_media::kind_from_extension(path).unwrap_or(vx_plugin_protocol::MediaKind::Video),
        duration_s: None,
        shm: ShmRef {
            pid: std::process::id(),
            fd: packed.segment.fd(),
            len: packed.segment.len(),
        },
        frames: needs
            .frame_max_side
            .map(|side| {
                packed
                    .frames_for(side.min(settings.frame_max_side))
                    .to_vec()
            })
            .unwrap_or_default(),
        audio: packed.audio.filter(|_| needs.audio),
        artefact_dir: artefacts(),
    };
    let view = SegmentView::open(
        std::process::id(),
        packed.segment.fd(),
        packed.segment.len(),
    )
    .unwrap_or_else(|e| fail(e));
    if let Err(e) = plugin.process(&JobInput::new(&job, Some(&view))) {
        eprintln!("vx-bench: {} on {}: {e}", plugin.name(), path.display());
    }
}

/// Where the plugins' thumbnails go for the run.
fn artefacts() -> PathBuf {
    std::env::temp_dir().join(format!("vx-bench-{}", std::process::id()))
}

/// CPU seconds this process has used, all threads.
fn cpu_s() -> f64 {
    // SAFETY: getrusage fills the zeroed struct.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn decode(path: &Path, opts: &DecodeOptions) -> Option<(f64, Packed)> {
    let decoded = vx_media::decode(path, opts)
        .map_err(|e| eprintln!("vx-bench: {}: {e}", path.display()))
        .ok()?;
    let media_s = decoded.info.duration_s.unwrap_or(0.0);
    Some((
        media_s,
        vx_media::pack(&decoded).unwrap_or_else(|e| fail(e)),
    ))
}

fn lower_bound(settings: &Settings, files: &[PathBuf], threads: usize) -> serde_json::Value {
    let mut plugins = open_plugins(settings, threads);
    let needs: Vec<Needs> = plugins.iter().map(|(_, p)| p.needs()).collect();
    let opts = vx_decoder::options_for(settings, &needs);
    let (mut decode_cpu, mut media_s) = (0.0, 0.0);
    let mut model_cpu = vec![0.0; plugins.len()];
    for path in files {
        let before = cpu_s();
        let Some((seconds, packed)) = decode(path, &opts) else {
            continue;
        };
        decode_cpu += cpu_s() - before;
        media_s += seconds;
        for ((_, plugin), cpu) in plugins.iter_mut().zip(&mut model_cpu) {
            let before = cpu_s();
            run(settings, plugin.as_mut(), path, &packed);
            *cpu += cpu_s() - before;
        }
    }
    json!({
        "files": files.len(),
        "media_s": media_s,
        "decode_cpu_s": decode_cpu,
        "model_cpu_s": plugins
            .iter()
            .zip(model_cpu)
            .map(|((name, _), cpu)| (name.clone(), json!(cpu)))
            .collect::<serde_json::Map<_, _>>(),
        "threads_per_model": threads,
    })
}

/// The decode levers, each against decoding every frame on one thread (what
/// vxd did before they were pulled).
fn decode_levers(settings: &Settings, files: &[PathBuf]) -> serde_json::Value {
    let shipped = vxd_options(settings);
    let variant = |threads, skip| DecodeOptions {
        decoder_threads: threads,
        skip_unreferenced: skip,
        ..shipped.clone()
    };
    let variants = [
        ("1 thread, all frames", variant(1, false)),
        ("1 thread, skipping unreferenced (vxd)", variant(1, true)),
        ("2 frame threads, all frames", variant(2, false)),
        ("2 frame threads, skipping", variant(2, true)),
    ];
    let n = variants.len();
    let (mut cpu, mut wall, mut kept) = (vec![0.0; n], vec![0.0; n], vec![0usize; n]);
    let (mut max_shift_s, mut same_frames) = (vec![0.0f64; n], vec![0usize; n]);
    for (f, path) in files.iter().enumerate() {
        let mut times: Vec<Vec<f64>> = vec![vec![]; n];
        // A different variant goes first for each file.
        for k in 0..n {
            let v = (f + k) % n;
            let (before, started) = (cpu_s(), Instant::now());
            times[v] = vx_media::decode(path, &variants[v].1).map_or(vec![], |d| {
                d.renditions
                    .first()
                    .map_or(vec![], |r| r.frames.iter().map(|f| f.pts_s).collect())
            });
            cpu[v] += cpu_s() - before;
            wall[v] += started.elapsed().as_secs_f64();
        }
        for v in 0..n {
            kept[v] += times[v].len();
            if times[v].len() == times[0].len() {
                same_frames[v] += 1;
                for (a, b) in times[0].iter().zip(&times[v]) {
                    max_shift_s[v] = max_shift_s[v].max((b - a).abs());
                }
            }
        }
    }
    let rows: Vec<serde_json::Value> = (0..n)
        .map(|v| {
            json!({
                "variant": variants[v].0,
                "cpu_s": cpu[v],
                "wall_s": wall[v],
                "cpu_vs_first": cpu[0] / cpu[v],
                "wall_vs_first": wall[0] / wall[v],
                "frames_kept": kept[v],
                "files_with_the_first_frame_count": same_frames[v],
                "max_shift_s": max_shift_s[v],
            })
        })
        .collect();
    json!({"files": files.len(), "variants": rows})
}

fn old_architecture(settings: &Settings, files: &[PathBuf], cores: usize) -> serde_json::Value {
    let mut plugins = open_plugins(settings, cores);
    let started = Instant::now();
    for path in files {
        for (_, plugin) in plugins.iter_mut() {
            let opts = vx_decoder::options_for(settings, &[plugin.needs()]);
            if let Some((_, packed)) = decode(path, &opts) {
                run(settings, plugin.as_mut(), path, &packed);
            }
        }
    }
    json!({
        "files": files.len(),
        "wall_s": started.elapsed().as_secs_f64(),
        "threads_per_model": cores,
    })
}
