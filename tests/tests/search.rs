//! Search end to end: vxd with the real speech models and the real MiniLM
//! text-embed host, on sentences spoken by espeak-ng, searched through vxctl
//! by meaning, by words, and with filters.

use std::path::Path;
use std::process::Command;

use serde_json::Value;
use vx_e2e::{Daemon, espeak, ffmpeg, hit_names as names};

const SEA: &str = "The sea was rough and the little boat rocked all night.";
const TAX: &str = "Remember to send the tax return before the deadline on Friday.";
const GARDEN: &str = "My grandmother planted tomatoes and roses in her garden.";

fn populate(media: &Path) {
    espeak(SEA, &media.join("sea.wav"));
    std::fs::create_dir_all(media.join("office")).unwrap();
    espeak(TAX, &media.join("office/tax.wav"));
    // The garden: 20 s long (speech, then silence), and from 2019.
    let said = media.parent().unwrap().join("garden-said.wav");
    espeak(GARDEN, &said);
    let garden = media.join("garden.flac");
    ffmpeg(&[
        "-i",
        said.to_str().unwrap(),
        "-af",
        "apad",
        "-t",
        "20",
        garden.to_str().unwrap(),
    ]);
    let touched = Command::new("touch")
        .args(["-d", "2019-05-04 12:00"])
        .arg(&garden)
        .status()
        .unwrap();
    assert!(touched.success());
}

/// `vxctl search QUERY ARGS… --segments --json`: (mode, warnings, hits).
fn search(d: &Daemon, query: &str, args: &[&str]) -> (String, Vec<Value>, Vec<Value>) {
    let mut all = vec!["search", query, "--segments", "--limit", "50"];
    all.extend(args);
    let v = d.json(&all);
    let list = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    (
        v["mode"].as_str().unwrap_or("").to_owned(),
        list("warnings"),
        list("hits"),
    )
}

#[test]
fn finds_by_meaning_and_words_filters_and_follows_renames() {
    let d = Daemon::start_with_models("plugins = [\"speech\", \"text-embed\"]", populate);
    d.wait_idle(300);
    let status = d.json(&["status"]);
    assert_eq!(status["files"]["failed"], 0, "{status:#}\n{}", d.log());
    assert_eq!(status["embed_backlog"], 0, "{status:#}");
    assert!(status["vectors"].as_u64().unwrap() >= 3, "{status:#}");

    // No word of the query is in the transcript; its meaning is.
    let (mode, warnings, hits) = search(&d, "ocean waves", &["--mode", "semantic"]);
    assert_eq!((mode.as_str(), warnings.len()), ("semantic", 0));
    assert_eq!(
        names(&hits).first().map(String::as_str),
        Some("sea.wav"),
        "{hits:#?}"
    );
    assert!(hits[0]["similarity"].as_f64().unwrap() > 0.3);
    assert!(
        hits[0]["start_s"].is_number(),
        "lands on the moment: {:#}",
        hits[0]
    );
    assert!(
        hits[0]["play"]
            .as_str()
            .unwrap()
            .starts_with("mpv --start=")
    );
    let (_, _, by_words) = search(&d, "ocean waves", &["--mode", "text"]);
    assert!(by_words.is_empty(), "{by_words:#?}");
    // Hybrid, the default, finds it too.
    let (mode, _, hybrid) = search(&d, "ocean waves", &[]);
    assert_eq!(mode, "hybrid");
    assert_eq!(names(&hybrid).first().map(String::as_str), Some("sea.wav"));

    // An exact phrase ranks its match first.
    let (_, _, phrase) = search(&d, "\"tax return\"", &[]);
    assert_eq!(
        names(&phrase).first().map(String::as_str),
        Some("tax.wav"),
        "{phrase:#?}"
    );
    // Nothing in the library is about this: no hits at all.
    let (_, _, none) = search(&d, "quantum chromodynamics lecture", &[]);
    assert!(none.is_empty(), "{none:#?}");

    // Filters, by meaning.
    let office = d.media.join("office");
    let (_, _, under) = search(&d, "filing my taxes", &["--path", office.to_str().unwrap()]);
    assert_eq!(names(&under), ["tax.wav"], "{under:#?}");
    let (_, _, old) = search(&d, "flowers", &["--before", "2020-01-01"]);
    assert_eq!(names(&old), ["garden.flac"], "{old:#?}");
    let (_, _, recent) = search(&d, "flowers", &["--after", "2020-01-01"]);
    assert!(
        !names(&recent).contains(&"garden.flac".to_owned()),
        "{recent:#?}"
    );
    let (_, _, long) = search(&d, "", &["--has", "speech", "--min-duration", "15s"]);
    assert_eq!(names(&long), ["garden.flac"], "{long:#?}");
    let (_, _, short) = search(&d, "", &["--has", "speech", "--max-duration", "15"]);
    let mut short = names(&short);
    short.sort();
    assert_eq!(short, ["sea.wav", "tax.wav"]);
    let (_, _, video) = search(&d, "boat", &["--kind", "video"]);
    assert!(video.is_empty());

    // Grouped by default: each file once, with its moments.
    let grouped = d.json(&["search", "ocean waves"]);
    let files = grouped["files"].as_array().unwrap();
    assert!(
        files[0]["path"].as_str().unwrap().ends_with("sea.wav"),
        "{grouped:#}"
    );
    assert!(!files[0]["moments"].as_array().unwrap().is_empty());

    // A rename keeps the vectors (same words, same keys) under the new
    // path; a deleted file is gone from every kind of search.
    std::fs::rename(d.media.join("sea.wav"), d.media.join("storm.wav")).unwrap();
    std::fs::remove_file(office.join("tax.wav")).unwrap();
    let vectors_before = status["vectors"].as_u64().unwrap();
    let gone = |d: &Daemon| {
        let (_, _, hits) = search(d, "ocean waves", &["--mode", "semantic"]);
        names(&hits).first().map(String::as_str) == Some("storm.wav")
            && search(d, "tax deadline", &[]).2.is_empty()
    };
    assert!(
        vx_e2e::eventually(std::time::Duration::from_secs(60), || gone(&d)),
        "{}",
        d.log()
    );
    d.wait_idle(60);
    let status = d.json(&["status"]);
    assert_eq!(
        status["vectors"].as_u64().unwrap(),
        vectors_before,
        "nothing embedded again"
    );

    // With the embedder down, words still answer, and the reply says why.
    let pid = status["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "text-embed")
        .and_then(|p| p["pid"].as_i64())
        .expect("text-embed host running");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    let (mode, warnings, hits) = search(&d, "boat", &[]);
    assert_eq!(mode, "text");
    assert!(
        warnings
            .iter()
            .any(|w| w.as_str().unwrap().contains("unavailable")),
        "{warnings:?}"
    );
    assert_eq!(names(&hits), ["storm.wav"]);
}
