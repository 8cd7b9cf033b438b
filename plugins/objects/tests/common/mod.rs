//! Real photos as frames: decoded to RGB24 by the ffmpeg CLI, fitted inside
//! 640×640 without upscaling as vxd does, or stretched to a model's input size.

#![allow(dead_code)] // Each test file and the benchmark use a different part.

use std::path::{Path, PathBuf};
use std::process::Command;

use vx_plugin_api::{Frame, HostContext};

/// PASCAL VOC photos with ground truth, from Debian's labelme-examples.
pub const VOC: &str = "/usr/share/doc/labelme-examples/examples/bbox_detection/data_dataset_voc";

/// Where setup installed models, ONNX Runtime and test photos.
pub fn cache_dir() -> PathBuf {
    vx_config::installed_cache_dir()
}

pub fn host_context() -> HostContext {
    HostContext {
        cache_dir: cache_dir(),
        threads: 2,
    }
}

/// A test photo: an absolute path, or a name in the cache's `testdata`.
pub fn photo(name: &str) -> PathBuf {
    let p = if name.starts_with('/') {
        PathBuf::from(name)
    } else {
        cache_dir().join("testdata").join(name)
    };
    assert!(p.exists(), "{} missing: run scripts/setup.sh", p.display());
    p
}

/// The VOC photo `id` (e.g. "2011_000003").
pub fn voc_photo(id: &str) -> PathBuf {
    photo(&format!("{VOC}/JPEGImages/{id}.jpg"))
}

/// Packed RGB24 pixels.
pub struct Picture {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

impl Picture {
    pub fn frame(&self, pts_s: f64) -> Frame<'_> {
        Frame {
            width: self.width,
            height: self.height,
            stride: self.width * 3,
            pts_s,
            rgb: &self.rgb,
        }
    }

    /// The same grey everywhere.
    pub fn grey(width: u32, height: u32) -> Self {
        let rgb = vec![128; (width * height * 3) as usize];
        Self { width, height, rgb }
    }

    /// Every byte uniformly random (a fixed xorshift sequence).
    pub fn noise(width: u32, height: u32) -> Self {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let rgb = (0..width * height * 3)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 56) as u8
            })
            .collect();
        Self { width, height, rgb }
    }
}

/// `path` decoded as vxd would hand it to a plugin asking for frames of at
/// most `max_side`: aspect kept, never upscaled.
pub fn fitted(path: &Path, max_side: u32) -> Picture {
    let (w, h) = probe(path);
    let scale = (max_side as f64 / w.max(h) as f64).min(1.0);
    let (w, h) = (
        ((w as f64 * scale).round() as u32).max(1),
        ((h as f64 * scale).round() as u32).max(1),
    );
    decode(path, w, h)
}

/// `path` decoded and stretched to exactly `width × height`.
pub fn decode(path: &Path, width: u32, height: u32) -> Picture {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-vf", &format!("scale={width}:{height}")])
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .expect("ffmpeg runs (install ffmpeg)");
    assert!(
        out.status.success(),
        "ffmpeg on {}: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        out.stdout.len(),
        (width * height * 3) as usize,
        "{}",
        path.display()
    );
    Picture {
        width,
        height,
        rgb: out.stdout,
    }
}

/// Width and height of the first video stream.
fn probe(path: &Path) -> (u32, u32) {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "stream=width,height", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("ffprobe runs (install ffmpeg)");
    let text = String::from_utf8_lossy(&out.stdout);
    let dims: Vec<u32> = text
        .trim()
        .split(',')
        .filter_map(|v| v.parse().ok())
        .collect();
    match dims[..] {
        [w, h] => (w, h),
        _ => panic!("ffprobe on {}: {text:?}", path.display()),
    }
}

/// Ground-truth boxes `(class, [x0, y0, x1, y1])` from a PASCAL VOC
/// annotation, as fractions of the picture. Reads just the tags it needs.
pub fn voc_boxes(id: &str) -> Vec<(String, [f32; 4])> {
    let path = photo(&format!("{VOC}/Annotations/{id}.xml"));
    let xml = std::fs::read_to_string(&path).expect("annotation readable");
    let tag = |s: &str, name: &str| -> String {
        let open = format!("<{name}>");
        let start = s
            .find(&open)
            .unwrap_or_else(|| panic!("no <{name}> in {}", path.display()));
        let rest = &s[start + open.len()..];
        rest[..rest.find('<').expect("closing tag")]
            .trim()
            .to_owned()
    };
    let number = |s: &str, name: &str| tag(s, name).parse::<f32>().expect("a number");
    let (w, h) = (number(&xml, "width"), number(&xml, "height"));
    xml.split("<object>")
        .skip(1)
        .map(|obj| {
            let c = |n| number(obj, n);
            (
                tag(obj, "name"),
                [c("xmin") / w, c("ymin") / h, c("xmax") / w, c("ymax") / h],
            )
        })
        .collect()
}

/// Intersection over union of two `[x0, y0, x1, y1]` boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let w = (a[2].min(b[2]) - a[0].max(b[0])).max(0.0);
    let h = (a[3].min(b[3]) - a[1].max(b[1])).max(0.0);
    let union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h;
    w * h / union
}

/// Times `detect` on `frame` for every optimisation level × 1 and 2 threads,
/// interleaved (a settle pause before each run, as ort's idle threads spin
/// for a while after one), and prints the median ms per frame of each with
/// its ratio to the best. `open` wraps a session of model `model`.
pub fn compare_levels<D>(
    model: &str,
    runs: usize,
    open: impl Fn(vx_models::ort::session::Session) -> Result<D, vx_models::ModelError>,
    mut detect: impl FnMut(&mut D) -> Result<(), vx_plugin_api::PluginError>,
) -> Result<(), Box<dyn std::error::Error>> {
    use std::time::{Duration, Instant};
    use vx_models::GraphOptimizationLevel;
    const WARM_UP: usize = 3;
    const SETTLE: Duration = Duration::from_millis(100);

    let cache = cache_dir();
    let mut configs = Vec::new();
    for threads in [1, 2] {
        for (name, level) in [
            ("Disable", GraphOptimizationLevel::Disable),
            ("Level1", GraphOptimizationLevel::Level1),
            ("Level3", GraphOptimizationLevel::Level3),
        ] {
            let session = vx_models::onnx_session_at(model, &cache, threads, level)?;
            configs.push((name, threads, open(session)?));
        }
    }
    let mut times = vec![Vec::with_capacity(runs); configs.len()];
    for run in 0..WARM_UP + runs {
        for ((_, _, detector), times) in configs.iter_mut().zip(&mut times) {
            std::thread::sleep(SETTLE);
            let start = Instant::now();
            detect(detector)?;
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
    println!("median of {runs} runs each");
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
