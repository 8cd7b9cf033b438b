//! vxd end to end: the real daemon, plugin host, sockets, FFmpeg and tantivy
//! on generated media.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use vx_e2e::*;

fn hit_for<'a>(hits: &'a [Value], path: &Path) -> Option<&'a Value> {
    hits.iter()
        .find(|h| h["path"].as_str() == Some(path.to_str().unwrap()))
}

fn plugin_pids(status: &Value) -> Vec<i32> {
    status["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["pid"].as_i64())
        .map(|p| p as i32)
        .collect()
}

#[test]
fn indexes_a_folder_then_picks_up_new_and_deleted_files_and_stops_cleanly() {
    let mut d = Daemon::start(|m| {
        make_video(&m.join("beach_walk.mp4"), 4);
        make_audio(&m.join("voice_memo.wav"), 2);
        make_image(&m.join("sunset_photo.png"));
        std::fs::write(m.join("notes.txt"), "not media").unwrap();
        std::fs::create_dir(m.join(".hidden")).unwrap();
        make_image(&m.join(".hidden/secret.png"));
    });
    d.wait_idle(120);

    let status = d.json(&["status"]);
    assert_eq!(status["pid"].as_i64(), Some(d.pid() as i64));
    assert!(status["version"].is_string());
    assert_eq!(
        status["watched"][0].as_str(),
        Some(d.media.to_str().unwrap())
    );
    let files = &status["files"];
    assert_eq!(
        (
            files["seen"].as_u64(),
            files["indexed"].as_u64(),
            files["failed"].as_u64()
        ),
        (Some(3), Some(3), Some(0)),
        "status: {status:#}\nlog:\n{}",
        d.log()
    );
    assert_eq!(
        (files["queued"].as_u64(), files["in_progress"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(status["idle"], Value::Bool(true));
    assert!(status["failed_files"].as_array().unwrap().is_empty());
    let plugin = status["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "keyframes")
        .unwrap();
    assert_eq!(
        (plugin["name"].as_str(), plugin["state"].as_str()),
        (Some("keyframes"), Some("ready"))
    );
    let host_pids = plugin_pids(&status);
    assert!(
        host_pids.iter().all(|&p| process_alive(p)),
        "host pids {host_pids:?} not running"
    );
    assert_eq!(segment_fds(d.pid()), 0, "segments still open after idle");

    // Each file is found by a word of its name, with its kind; the video by its codec.
    for (word, name, kind) in [
        ("beach", "beach_walk.mp4", "video"),
        ("memo", "voice_memo.wav", "audio"),
        ("sunset", "sunset_photo.png", "image"),
    ] {
        let hits = d.search(word);
        let h = hit_for(&hits, &d.media.join(name)).unwrap_or_else(|| panic!("{word}: {hits:?}"));
        assert_eq!(h["kind"].as_str(), Some(kind));
        assert!(
            h["start_s"].is_null() && h["end_s"].is_null(),
            "whole-file hit: {h}"
        );
        assert!(
            h["fields"].as_array().unwrap().iter().any(|f| f == "name"),
            "{h}"
        );
    }
    let h264 = d.search("h264");
    assert_eq!(h264.len(), 1, "{h264:?}");
    assert_eq!(h264[0]["fields"], serde_json::json!(["codec"]));
    assert!(d.search("secret").is_empty(), "hidden folder was indexed");

    // Keyframes: two shots → two scenes with time ranges inside the video,
    // each with a thumbnail on disk.
    let mut scenes: Vec<Value> = d
        .search("scene")
        .into_iter()
        .filter(|h| h["kind"] == "video")
        .collect();
    scenes.sort_by(|a, b| {
        a["start_s"]
            .as_f64()
            .partial_cmp(&b["start_s"].as_f64())
            .unwrap()
    });
    let ranges: Vec<(f64, f64)> = scenes
        .iter()
        .map(|h| (h["start_s"].as_f64().unwrap(), h["end_s"].as_f64().unwrap()))
        .collect();
    assert_eq!(ranges.len(), 2, "{ranges:?}");
    assert_eq!(ranges[0].0, 0.0);
    assert!((ranges[0].1 - 2.0).abs() <= 0.5, "cut at {ranges:?}");
    assert!((ranges[1].1 - 4.0).abs() <= 0.2, "end at {ranges:?}");
    let thumbs = std::fs::read_dir(d.root.path().join("cache/thumbnails"))
        .unwrap()
        .count();
    assert_eq!(thumbs, 3, "2 scenes + 1 image");

    // A file written while vxd runs is indexed once it settles.
    let dropped = Instant::now();
    let tmp = d.root.path().join("new_clip.mp4");
    make_video(&tmp, 10);
    let new = d.media.join("harbour_tour.mp4");
    std::fs::copy(&tmp, &new).unwrap();
    assert!(
        eventually(Duration::from_secs(60), || hit_for(
            &d.search("harbour"),
            &new
        )
        .is_some()),
        "new file never searchable\n{}",
        d.log()
    );
    println!(
        "10 s video dropped in → searchable after {:.2} s",
        dropped.elapsed().as_secs_f64()
    );
    d.wait_idle(60);
    assert_eq!(d.json(&["status"])["files"]["indexed"].as_u64(), Some(4));

    // A deleted file leaves the index.
    std::fs::remove_file(d.media.join("voice_memo.wav")).unwrap();
    assert!(
        eventually(Duration::from_secs(20), || d.search("memo").is_empty()),
        "deleted file still found"
    );
    assert_eq!(d.json(&["status"])["files"]["seen"].as_u64(), Some(3));

    // SIGTERM: a clean exit, no host left, no socket left.
    let status = d.signal_and_wait(libc::SIGTERM, Duration::from_secs(15));
    assert!(status.success(), "vxd exit status {status:?}\n{}", d.log());
    for pid in host_pids {
        assert!(
            eventually(Duration::from_secs(5), || !process_alive(pid)),
            "host {pid} survived vxd"
        );
    }
    assert!(!d.socket.exists(), "socket left behind");
}

#[test]
fn restart_on_an_indexed_folder_keeps_the_index_and_redoes_nothing() {
    let mut d = Daemon::start(|m| {
        make_video(&m.join("kept.mp4"), 2);
        make_image(&m.join("still.png"));
    });
    d.wait_idle(120);
    let before = d.thumbnail_mtimes();
    let first_run = d.log().len(); // the log holds every run
    d.restart();
    d.wait_idle(60);
    let status = d.json(&["status"]);
    assert_eq!(status["files"]["indexed"].as_u64(), Some(2), "{status:#}");
    assert_eq!(
        hit_for(&d.search("kept"), &d.media.join("kept.mp4")).map(|h| h["kind"].clone()),
        Some("video".into())
    );
    assert_eq!(
        before,
        d.thumbnail_mtimes(),
        "restart re-ran the keyframes plugin"
    );
    assert!(
        !d.log()[first_run..].contains("indexed kind"),
        "restart re-indexed a file:\n{}",
        d.log()
    );
}

#[test]
fn a_second_vxd_on_the_same_state_dir_refuses_clearly() {
    let d = Daemon::start(|_| {});
    d.wait_idle(30);
    let out = Command::new(bin_dir().join("vxd"))
        .arg("--config")
        .arg(&d.config)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another vxd") && err.contains(&d.pid().to_string()),
        "{err}"
    );
}

#[test]
fn sigkill_of_vxd_takes_its_plugin_hosts_down() {
    let mut d = Daemon::start(|m| make_image(&m.join("a.png")));
    d.wait_idle(60);
    let hosts = plugin_pids(&d.json(&["status"]));
    assert!(!hosts.is_empty());
    d.signal_and_wait(libc::SIGKILL, Duration::from_secs(5));
    for pid in hosts {
        assert!(
            eventually(Duration::from_secs(5), || !process_alive(pid)),
            "host {pid} outlived SIGKILLed vxd"
        );
    }
}

#[test]
fn undecodable_file_is_reported_as_failed_and_the_rest_are_indexed() {
    let d = Daemon::start(|m| {
        std::fs::write(m.join("broken.mp4"), b"this is not a video at all").unwrap();
        make_image(&m.join("fine.png"));
    });
    d.wait_idle(60);
    let status = d.json(&["status"]);
    assert_eq!(status["files"]["indexed"].as_u64(), Some(1), "{status:#}");
    assert_eq!(status["files"]["failed"].as_u64(), Some(1));
    let failed = &status["failed_files"][0];
    assert_eq!(
        failed["path"].as_str(),
        Some(d.media.join("broken.mp4").to_str().unwrap())
    );
    assert_eq!(failed["plugin"].as_str(), Some("decode"));
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("not a media file"),
        "{failed}"
    );
    assert_eq!(d.search("fine").len(), 1);
}
