//! Living with vxd: throttling, pause/resume, status a person wants,
//! watching that cannot fail silently.

use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use vx_e2e::*;

/// Field 19 of /proc/PID/stat is the nice value.
fn nice_of(pid: i32) -> i64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat.rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .nth(16)
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn model_hosts_run_at_low_cpu_and_idle_io_priority() {
    let d = Daemon::start(|m| make_image(&m.join("a.png")));
    d.wait_idle(60);
    let pid = d.json(&["status"])["plugins"][0]["pid"].as_i64().unwrap() as i32;
    assert_eq!(nice_of(pid), 10);
    assert_eq!(nice_of(d.pid()), 0, "vxd itself stays responsive");
    let out = std::process::Command::new("ionice")
        .arg("-p")
        .arg(pid.to_string())
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "idle");
}

#[test]
fn pause_holds_new_work_until_resume() {
    let d = Daemon::start(|m| make_image(&m.join("first.png")));
    d.wait_idle(60);
    let out = d.vxctl(&["pause"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("paused"));
    make_images(&d.media, &["later.bmp".into()]);
    assert!(eventually(Duration::from_secs(10), || d.json(&["status"])
        ["files"]["queued"]
        .as_u64()
        == Some(1)));
    std::thread::sleep(Duration::from_millis(800));
    let status = d.json(&["status"]);
    assert_eq!(status["paused"], true);
    assert_eq!(status["idle"], false);
    assert_eq!(
        status["files"]["indexed"].as_u64(),
        Some(1),
        "indexed while paused: {status:#}"
    );
    assert_eq!(d.json(&["resume"])["paused"], false);
    let watch = d.vxctl(&["status", "--watch"]);
    assert!(
        watch.status.success(),
        "status --watch returns once idle: {}",
        String::from_utf8_lossy(&watch.stderr)
    );
    d.wait_idle(30);
    assert_eq!(d.json(&["status"])["files"]["indexed"].as_u64(), Some(2));
}

#[test]
fn status_path_says_what_ran_on_a_file_and_status_reports_progress_fields() {
    let d = Daemon::start(|m| {
        make_video(&m.join("clip.mp4"), 4);
        std::fs::write(m.join("broken.mp4"), b"not a video").unwrap();
    });
    d.wait_idle(60);
    let r = d.json(&["status", d.media.join("clip.mp4").to_str().unwrap()]);
    assert_eq!(r["state"], "indexed");
    let i = &r["indexed"];
    assert_eq!(i["kind"], "video");
    assert_eq!(i["resolution"], "320x240");
    assert_eq!(i["segments"], serde_json::json!([["keyframes", 2]]));
    assert_eq!(i["content"].as_str().unwrap().len(), 64);
    assert!(i["indexed_at"].as_i64().unwrap() > 1_700_000_000);

    let r = d.json(&["status", d.media.join("broken.mp4").to_str().unwrap()]);
    assert_eq!(r["failures"][0]["plugin"], "decode");
    let r = d.json(&["status", "/etc/hostname"]);
    assert_eq!(r["state"], "not watched");

    let status = d.json(&["status"]);
    assert!(status["index_bytes"].as_u64().unwrap() > 0);
    assert!(status["current"].as_array().unwrap().is_empty());
    assert!(status["eta_s"].is_null(), "no ETA when idle");
    let text = String::from_utf8_lossy(&d.vxctl(&["status"]).stdout).into_owned();
    assert!(
        text.contains("2 of 2 done (100 %)") && text.contains("index"),
        "{text}"
    );
}

#[test]
fn an_inotify_limit_is_reported_and_the_folder_rescanned() {
    let d = Daemon::start_with(
        "rescan_interval_s = 0.5\n",
        &[("VX_SIMULATE_INOTIFY_LIMIT", "1")],
        |m| make_image(&m.join("before.png")),
    );
    d.wait_idle(60);
    let w = d.json(&["status"])["warnings"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        w.contains("fs.inotify.max_user_watches") && w.contains("Rescanning"),
        "{w}"
    );
    make_images(&d.media, &["after.bmp".into()]);
    assert!(
        eventually(Duration::from_secs(15), || d.search("after").len() == 1),
        "rescan never found the new file"
    );
    std::fs::remove_file(d.media.join("before.png")).unwrap();
    assert!(
        eventually(Duration::from_secs(15), || d.search("before").is_empty()),
        "rescan never noticed the deletion"
    );
}

#[test]
fn ignored_and_symlinked_paths_are_skipped_and_non_utf8_names_failed() {
    let d = Daemon::start_with("ignore = [\"**/proxies/**\", \"*.lrv.mp4\"]\n", &[], |m| {
        make_images(m, &["keep.bmp".into(), "second.bmp".into()]);
        std::fs::create_dir(m.join("proxies")).unwrap();
        make_images(&m.join("proxies"), &["proxy.bmp".into()]);
        std::fs::copy(m.join("keep.bmp"), m.join("clip.lrv.mp4")).unwrap();
        std::fs::write(m.join(std::ffi::OsStr::from_bytes(b"caf\xe9.bmp")), b"x").unwrap();
        std::os::unix::fs::symlink(m, m.join("loop")).unwrap(); // a symlink loop
        std::os::unix::fs::symlink(m.join("keep.bmp"), m.join("link.bmp")).unwrap();
    });
    d.wait_idle(60);
    let status = d.json(&["status"]);
    assert_eq!(
        status["files"]["seen"].as_u64(),
        Some(3),
        "keep.bmp, second.bmp and the non-UTF-8 name only (links are not followed): {status:#}"
    );
    assert_eq!(status["files"]["indexed"].as_u64(), Some(2), "{status:#}");
    assert!(d.search("proxy").is_empty() && d.search("lrv").is_empty());
    let failed = status["failed_files"].to_string();
    assert!(
        failed.contains("caf\u{fffd}.bmp") && failed.contains("not valid UTF-8"),
        "{failed}"
    );
}

/// A file written with pauses may be looked at half way, but it ends up
/// indexed as it is once its writer closes it.
#[test]
fn a_file_written_with_pauses_ends_up_indexed_whole() {
    use std::io::Write;
    let d = Daemon::start(|_| {});
    d.wait_idle(60);
    let made = d.root.path().join("whole.mp4");
    make_video(&made, 3);
    let bytes = std::fs::read(&made).unwrap();
    let path = d.media.join("slow-copy.mp4");
    let mut f = std::fs::File::create(&path).unwrap();
    f.write_all(&bytes[..bytes.len() / 2]).unwrap();
    std::thread::sleep(Duration::from_secs(1)); // longer than settle_ms
    f.write_all(&bytes[bytes.len() / 2..]).unwrap();
    drop(f);
    assert!(
        eventually(Duration::from_secs(30), || {
            let report = d.json(&["status", path.to_str().unwrap()]);
            report["indexed"]["size"].as_u64() == Some(bytes.len() as u64)
                && report["state"] == "indexed"
        }),
        "{:#}\n{}",
        d.json(&["status", path.to_str().unwrap()]),
        d.log()
    );
}
