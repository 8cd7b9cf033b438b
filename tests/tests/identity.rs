//! Files are known by content: renames, copies, edits and restarts do only
//! the work they must. `plugin_jobs` in status counts every job sent to a
//! model host, so "no re-extraction" is a number that could fail.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use vx_e2e::*;

fn jobs(d: &Daemon) -> u64 {
    d.json(&["status"])["plugin_jobs"].as_u64().unwrap()
}

fn paths_of(hits: &[Value]) -> Vec<String> {
    let mut v: Vec<String> = hits
        .iter()
        .map(|h| h["path"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v.dedup();
    v
}

fn scene_paths(d: &Daemon) -> Vec<String> {
    paths_of(&d.search("scene"))
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_owned()
}

#[test]
fn a_renamed_file_keeps_its_results_without_running_any_plugin() {
    let d = Daemon::start(|m| make_video(&m.join("holiday.mp4"), 4));
    d.wait_idle(60);
    let before = jobs(&d);
    assert_eq!(before, 1, "one keyframes job for one file");

    let (old, new) = (d.media.join("holiday.mp4"), d.media.join("beach trip.mp4"));
    std::fs::rename(&old, &new).unwrap();
    assert!(
        eventually(Duration::from_secs(20), || paths_of(&d.search("beach"))
            == [s(&new)]),
        "{}",
        d.log()
    );
    d.wait_idle(30);
    assert!(d.search("holiday").is_empty(), "old name still found");
    assert_eq!(scene_paths(&d), [s(&new)], "the scenes moved with the file");
    let status = d.json(&["status"]);
    assert_eq!(
        status["plugin_jobs"].as_u64(),
        Some(before),
        "a rename ran a plugin: {status:#}"
    );
    assert_eq!(status["files"]["reused"].as_u64(), Some(1));
    assert_eq!(status["files"]["seen"].as_u64(), Some(1));
}

#[test]
fn an_identical_copy_is_a_second_path_of_the_same_content() {
    let d = Daemon::start(|m| make_video(&m.join("original.mp4"), 4));
    d.wait_idle(60);
    let before = jobs(&d);
    std::fs::create_dir(d.media.join("backup")).unwrap();
    let copy = d.media.join("backup/copy.mp4");
    std::fs::copy(d.media.join("original.mp4"), &copy).unwrap();
    assert!(
        eventually(Duration::from_secs(20), || scene_paths(&d).len() == 2),
        "{}",
        d.log()
    );
    d.wait_idle(30);
    assert_eq!(
        scene_paths(&d),
        [s(&copy), s(&d.media.join("original.mp4"))]
    );
    assert_eq!(jobs(&d), before, "the copy was extracted again");
    assert_eq!(d.json(&["status"])["files"]["reused"].as_u64(), Some(1));
}

#[test]
fn a_rename_while_vxd_was_down_is_recognised_on_restart() {
    let mut d = Daemon::start(|m| {
        make_video(&m.join("a.mp4"), 4);
        make_image(&m.join("gone.bmp"));
    });
    d.wait_idle(60);
    d.signal_and_wait(libc::SIGTERM, Duration::from_secs(15));
    std::fs::rename(d.media.join("a.mp4"), d.media.join("renamed.mp4")).unwrap();
    std::fs::remove_file(d.media.join("gone.bmp")).unwrap();
    d.restart_stopped();
    d.wait_idle(60);
    let status = d.json(&["status"]);
    assert_eq!(
        status["plugin_jobs"].as_u64(),
        Some(0),
        "{status:#}\n{}",
        d.log()
    );
    assert_eq!(
        status["files"]["reused"].as_u64(),
        Some(1),
        "{status:#}\n{}",
        d.log()
    );
    assert_eq!(scene_paths(&d), [s(&d.media.join("renamed.mp4"))]);
    assert!(
        d.search("gone").is_empty(),
        "a file deleted while vxd was down is still found"
    );
}

#[test]
fn a_changed_file_is_extracted_again_and_its_old_segments_go() {
    let d = Daemon::start(|m| make_video(&m.join("clip.mp4"), 4));
    d.wait_idle(60);
    assert_eq!(d.search("scene").len(), 2, "two shots");
    // Same name, new content: one shot only.
    let tmp = d.root.path().join("one-shot.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=320x240:rate=25:duration=3",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        tmp.to_str().unwrap(),
    ]);
    std::fs::copy(&tmp, d.media.join("clip.mp4")).unwrap();
    assert!(
        eventually(Duration::from_secs(30), || d.search("scene").len() == 1),
        "{}",
        d.log()
    );
    d.wait_idle(30);
    assert_eq!(jobs(&d), 2);
}

#[test]
fn restarting_on_an_indexed_folder_of_fifty_files_runs_no_plugin_job() {
    let names: Vec<String> = (0..50).map(|i| format!("photo{i:02}.bmp")).collect();
    let mut d = Daemon::start(|m| make_images(m, &names));
    d.wait_idle(120);
    assert_eq!(jobs(&d), 50);
    let started = std::time::Instant::now();
    d.restart();
    d.wait_idle(60);
    println!(
        "resume on 50 indexed files: idle {:.2} s after restart",
        started.elapsed().as_secs_f64()
    );
    let status = d.json(&["status"]);
    assert_eq!(status["plugin_jobs"].as_u64(), Some(0), "{status:#}");
    assert_eq!(status["files"]["indexed"].as_u64(), Some(50));
}

#[test]
fn a_plugin_whose_version_changed_re_runs_alone_on_every_file() {
    require_misbehave();
    let misbehave = "plugins = [\"keyframes\", \"misbehave\"]\n";
    let names: Vec<String> = (0..3).map(|i| format!("f{i}.bmp")).collect();
    let mut d = Daemon::start_with(misbehave, &[], |m| make_images(m, &names));
    d.wait_idle(60);
    assert_eq!(jobs(&d), 6, "2 plugins × 3 files");
    let before = d.thumbnail_mtimes();

    d.signal_and_wait(libc::SIGTERM, Duration::from_secs(15));
    d.env.push(("VX_MISBEHAVE_VERSION".into(), "2".into()));
    d.restart_stopped();
    d.wait_idle(60);
    let status = d.json(&["status"]);
    assert_eq!(
        status["plugin_jobs"].as_u64(),
        Some(3),
        "only misbehave re-ran: {status:#}"
    );
    assert_eq!(d.thumbnail_mtimes(), before, "keyframes re-ran");
    assert_eq!(d.search("scene").len(), 3, "keyframes results kept");
    assert_eq!(
        d.search("misbehave").len(),
        3,
        "misbehave results replaced, not lost"
    );
    let r = d.json(&["status", d.media.join("f0.bmp").to_str().unwrap()]);
    assert_eq!(r["indexed"]["plugin_set"], "keyframes@1,misbehave@2");
}
