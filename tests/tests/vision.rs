//! The vision plugins end to end: vxd with the real models that setup
//! installs, real photos from packages and a generated video, searched
//! through vxctl.

use std::path::Path;

use serde_json::Value;
use vx_e2e::{Daemon, VOC_PHOTOS, ffmpeg, test_photo};

const PLUGINS: &str = "plugins = [\"keyframes\", \"objects\", \"faces\", \"ocr\"]";
const SANS: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// 0–4 s a photo of a person, 4–8 s a slide of text, 8–10 s black; 720p.
fn make_talk(path: &Path) {
    let photo = test_photo("astronaut.png");
    let slide = format!(
        "color=c=white:s=1280x720:d=4:r=25,\
         drawtext=fontfile={SANS}:text='Quarterly roadmap review':fontsize=56:x=120:y=260:fontcolor=black,\
         drawtext=fontfile={SANS}:text='Invoice 4471 is overdue':fontsize=56:x=120:y=380:fontcolor=black"
    );
    ffmpeg(&[
        "-loop",
        "1",
        "-t",
        "4",
        "-i",
        photo.to_str().unwrap(),
        "-f",
        "lavfi",
        "-i",
        &slide,
        "-f",
        "lavfi",
        "-i",
        "color=c=black:s=1280x720:d=2:r=25",
        "-filter_complex",
        "[0]scale=1280:720:force_original_aspect_ratio=decrease,pad=1280:720:(ow-iw)/2:(oh-ih)/2,\
         setsar=1,fps=25,format=yuv420p[a];[1]setsar=1,format=yuv420p[b];[2]setsar=1,format=yuv420p[c];\
         [a][b][c]concat=n=3:v=1:a=0",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        path.to_str().unwrap(),
    ]);
}

fn populate(media: &Path) {
    let copy = |from: &Path, to: &str| std::fs::copy(from, media.join(to)).unwrap();
    copy(&Path::new(VOC_PHOTOS).join("2011_000006.jpg"), "people.jpg");
    copy(&Path::new(VOC_PHOTOS).join("2011_000025.jpg"), "street.jpg");
    copy(&test_photo("grace_hopper.jpg"), "portrait.jpg");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=gray:s=640x480",
        "-frames:v",
        "1",
        media.join("blank.png").to_str().unwrap(),
    ]);
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "nullsrc=s=640x480,geq=lum=random(1)*255:cb=128:cr=128",
        "-frames:v",
        "1",
        media.join("noise.png").to_str().unwrap(),
    ]);
    make_talk(&media.join("talk.mp4"));
}

fn names(hits: &[Value]) -> Vec<String> {
    let mut v = vx_e2e::hit_names(hits);
    v.sort();
    v.dedup();
    v
}

fn hits(d: &Daemon, args: &[&str]) -> Vec<Value> {
    let mut args = [&["search", "--segments"], args, &["--limit", "1000"]].concat();
    args.retain(|a| !a.is_empty());
    d.json(&args)["hits"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The one segment hit in `file`, as (start, end).
fn moment(hits: &[Value], file: &str) -> (f64, f64) {
    let timed: Vec<_> = hits
        .iter()
        .filter(|h| h["path"].as_str().unwrap().ends_with(file) && !h["start_s"].is_null())
        .collect();
    assert_eq!(timed.len(), 1, "{hits:#?}");
    (
        timed[0]["start_s"].as_f64().unwrap(),
        timed[0]["end_s"].as_f64().unwrap(),
    )
}

#[test]
fn photos_and_a_video_are_searchable_by_objects_faces_and_text_at_the_right_moment() {
    let d = Daemon::start_with_models(PLUGINS, populate);
    d.wait_idle(600);
    let status = d.json(&["status"]);
    assert_eq!(status["files"]["failed"], 0, "{status:#}\n{}", d.log());

    // Objects in real photos.
    assert!(names(&hits(&d, &["bus"])).contains(&"street.jpg".into()));
    let people = names(&hits(&d, &["", "--label", "person", "--kind", "image"]));
    assert!(
        people.contains(&"people.jpg".into()) && people.contains(&"portrait.jpg".into()),
        "{people:?}"
    );
    // Faces.
    let faced = names(&hits(&d, &["", "--has", "faces"]));
    assert!(faced.contains(&"portrait.jpg".into()), "{faced:?}");
    assert!(faced.contains(&"talk.mp4".into()), "{faced:?}");

    // Blank and noise frames: nothing from any vision plugin.
    for file in ["blank.png", "noise.png"] {
        let report = d.json(&["status", d.media.join(file).to_str().unwrap()]);
        let segments = &report["indexed"]["segments"];
        for plugin in ["objects", "faces", "ocr"] {
            let n = segments
                .as_array()
                .unwrap()
                .iter()
                .find(|s| s[0] == plugin)
                .map(|s| s[1].as_u64().unwrap());
            assert_eq!(n, Some(0), "{plugin} on {file}: {report:#}");
        }
    }

    // The video: the person and the face in the first 4 s, the slide's words
    // from 4 s to 8 s, with the matched words in the snippet.
    let person = hits(&d, &["", "--label", "person", "--kind", "video"]);
    let (a, b) = moment(&person, "talk.mp4");
    assert!(a < 0.6 && (3.5..4.6).contains(&b), "person at {a}–{b}");
    let face = hits(&d, &["", "--has", "faces", "--kind", "video"]);
    let (a, b) = moment(&face, "talk.mp4");
    assert!(a < 0.6 && (3.5..4.6).contains(&b), "face at {a}–{b}");

    let slide = hits(&d, &["roadmap", "--has", "text"]);
    let (a, b) = moment(&slide, "talk.mp4");
    assert!(
        (3.5..4.6).contains(&a) && (7.5..8.6).contains(&b),
        "slide at {a}–{b}"
    );
    let snippet = slide[0]["snippet"].as_str().unwrap();
    assert!(
        snippet.contains("Quarterly roadmap review") && snippet.contains("Invoice 4471 is overdue"),
        "{snippet}"
    );
    let [x, y] = [0, 1].map(|i| slide[0]["highlights"][0][i].as_u64().unwrap() as usize);
    assert_eq!(snippet[x..y].to_lowercase(), "roadmap");
}

#[test]
fn plugins_without_their_models_are_not_started_and_status_says_how_to_install_them() {
    let d = Daemon::start(|media| vx_e2e::make_video(&media.join("clip.mp4"), 2));
    d.wait_idle(60);
    let status = d.json(&["status"]);
    let plugins = status["plugins"].as_array().unwrap();
    let state = |name: &str| plugins.iter().find(|p| p["name"] == name).cloned().unwrap();
    for (plugin, model) in [
        ("objects", "nanodet"),
        ("faces", "centerface"),
        ("ocr", "ppocr-v4-det"),
        ("speech", "whisper-tiny.en"),
    ] {
        let p = state(plugin);
        assert_eq!(p["state"], "missing", "{p:#}");
        let why = p["last_error"].as_str().unwrap();
        assert!(
            why.contains(&format!("model {model} is not installed"))
                && why.contains("scripts/setup.sh"),
            "{why}"
        );
    }
    assert_eq!(state("keyframes")["state"], "ready");
    assert_eq!(status["files"]["indexed"], 1, "{status:#}");
    let out = d.vxctl(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("missing") && text.contains("scripts/setup.sh"),
        "{text}"
    );
}
