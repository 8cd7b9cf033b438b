//! The bad-input suite (written by tests/bad-inputs.sh) through the real
//! daemon: every file ends up indexed, or failed with a reason a person can
//! read; vxd lives, stays within its memory, and prints no raw control
//! characters of a hostile name.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use vx_e2e::*;

/// Every regular file under `dir`, without following links.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn every_bad_input_is_indexed_or_failed_with_a_reason() {
    let d = Daemon::start(|m| {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bad-inputs.sh");
        let out = Command::new(script).arg(m).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
    d.wait_idle(300);
    assert!(process_alive(d.pid()));
    let peak_kb = proc_status(d.pid() as u32, "VmHWM:");
    assert!(
        peak_kb > 0 && peak_kb < 1_500_000,
        "vxd peaked at {} MB",
        peak_kb / 1024
    );

    let status = d.json(&["status"]);
    let mut outcome = BTreeMap::new();
    for f in files(&d.media) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let Some(path) = f.to_str() else {
            // Neither the index nor JSON holds such a name: it is listed as
            // failed under its printable form.
            let printable = f.to_string_lossy();
            let failure = status["failed_files"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["path"] == *printable)
                .unwrap_or_else(|| panic!("{printable} is not listed: {status:#}"));
            let reason = failure["reason"].as_str().unwrap().to_owned();
            outcome.insert(name, ("failed".into(), vec![reason]));
            continue;
        };
        let report = d.json(&["status", path]);
        let reasons: Vec<String> = report["failures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| format!("{}: {}", x["plugin"], x["reason"].as_str().unwrap()))
            .collect();
        let state = report["state"].as_str().unwrap().to_owned();
        assert!(
            state == "indexed" || state == "failed" && reasons.iter().all(|r| r.len() > 12),
            "{name}: {state}, {reasons:?}\n{}",
            d.log()
        );
        outcome.insert(name, (state, reasons));
    }
    eprintln!("{outcome:#?}");
    for fine in [
        "good.png",
        "whole.mp4",
        "audio-only.mp4",
        "video-only.mp4",
        "with spaces.png",
        "new\nline.png",
        "escape\u{1b}[31m\u{1b}]0;title\u{7}.png",
        "unreadable.png",
        "inside.png",
    ] {
        let (state, reasons) = &outcome[fine];
        assert!(
            state == "indexed" && reasons.is_empty(),
            "{fine:?}: {state} {reasons:?}"
        );
    }
    let long = outcome
        .keys()
        .find(|n| n.starts_with("nnnn"))
        .expect("the long path");
    assert_eq!(outcome[long].0, "indexed");
    let latin1 = &outcome["latin1-\u{fffd}t\u{fffd}.png"].1;
    assert!(latin1[0].contains("not valid UTF-8"), "{latin1:?}");
    let huge = &outcome["huge.jpg"].1;
    assert!(
        huge.iter().any(|r| r.contains("max_image_pixels")),
        "{huge:?}"
    );
    for broken in [
        "empty.mp4",
        "random.mp4",
        "random.jpg",
        "random.wav",
        "text.mkv",
        "no-av-streams.mkv",
    ] {
        assert!(
            !outcome[broken].1.is_empty(),
            "{broken} should fail: {:?}",
            outcome[broken]
        );
    }
    // Nothing outside the folder was followed into.
    let seen = d.json(&["status"])["files"]["seen"].as_u64().unwrap();
    assert_eq!(seen as usize, outcome.len());

    // A hostile name never reaches the terminal raw.
    for args in [
        &["status"][..],
        &["search", "escape"][..],
        &["search", "png", "--segments"][..],
    ] {
        let out = d.vxctl(args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "vxctl {args:?}: {text}"
        );
    }
}
