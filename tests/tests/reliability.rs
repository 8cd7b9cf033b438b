//! vxd against what goes wrong in a long unattended life: links into the
//! rest of the disk, files that vanish mid-work, plugins that stop starting,
//! and plugins that send nonsense. Each test failed before its fix.

use std::time::Duration;

use serde_json::Value;
use vx_e2e::*;

// One host per plugin: the tests follow that host.
const MISBEHAVE_TOML: &str = "plugins = [\"keyframes\", \"misbehave\"]\n\
    deadline_base_s = 10\nhost_start_timeout_s = 5.0\nhost_pool_size = 1\n";

fn misbehave() -> &'static str {
    require_misbehave();
    MISBEHAVE_TOML
}

fn seen(d: &Daemon) -> u64 {
    d.json(&["status"])["files"]["seen"].as_u64().unwrap()
}

#[test]
fn a_symlink_made_after_start_is_not_followed() {
    let d = Daemon::start(|m| make_image(&m.join("own.png")));
    d.wait_idle(60);
    // A folder elsewhere with media in it, linked into the watched folder,
    // and a link to a single file.
    let elsewhere = d.media.parent().unwrap().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    make_image(&elsewhere.join("outside.png"));
    std::os::unix::fs::symlink(&elsewhere, d.media.join("all")).unwrap();
    std::os::unix::fs::symlink(elsewhere.join("outside.png"), d.media.join("link.png")).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    d.wait_idle(60);
    assert_eq!(seen(&d), 1, "{:#}", d.json(&["status"]));
    assert!(d.search("outside").is_empty());
}

#[test]
fn a_file_deleted_while_it_is_indexed_does_not_come_back() {
    let d = Daemon::start_with(misbehave(), &[], |m| make_image(&m.join("first.png")));
    // vxd's one purge of files gone while it was down is behind it.
    d.wait_idle(60);
    // Made now, so the watcher knows it and then sees it go.
    make_images(&d.media, &["slow.bmp".into()]);
    let slow = d.media.join("slow.bmp");
    let busy = eventually(Duration::from_secs(30), || {
        d.json(&["status"])["current"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["plugin"] == "misbehave"))
    });
    assert!(busy, "{}", d.log());
    std::fs::remove_file(&slow).unwrap();
    d.wait_idle(60);
    std::thread::sleep(Duration::from_secs(1));
    let file = d.json(&["status", slow.to_str().unwrap()]);
    assert_eq!(file["indexed"], Value::Null, "{file:#}");
    assert!(d.search("slow").is_empty());
}

#[test]
fn a_plugin_that_cannot_start_leaves_its_results_alone() {
    let mut d = Daemon::start_with(misbehave(), &[], |m| {
        make_images(m, &["a.bmp".into(), "b.bmp".into()])
    });
    d.wait_idle(60);
    assert_eq!(d.search("misbehave-ok").len(), 2);

    // The plugin's host now dies before Hello, every time.
    d.signal_and_wait(libc::SIGTERM, Duration::from_secs(15));
    d.env
        .push(("VX_MISBEHAVE".into(), "die-before-hello".into()));
    d.restart_stopped();
    d.wait_idle(120);
    let status = d.json(&["status"]);
    let failed = status["failed_files"].as_array().unwrap();
    assert!(failed.is_empty(), "{status:#}");
    assert_eq!(
        d.search("misbehave-ok").len(),
        2,
        "its results stay while it is down\n{}",
        d.log()
    );
    assert_eq!(d.search("scene").len(), 2);
}

#[test]
fn a_hostile_reply_is_checked_before_it_is_indexed() {
    let d = Daemon::start_with(misbehave(), &[], |m| {
        make_images(m, &["hostile.bmp".into(), "good.bmp".into()])
    });
    d.wait_idle(60);
    let status = d.json(&["status"]);
    assert_eq!(status["files"]["indexed"], 2, "{status:#}\n{}", d.log());
    assert!(process_alive(d.pid()));
    let hits = d.json(&["search", "misbehave", "--segments", "--limit", "100000"])["hits"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let hostile: Vec<&Value> = hits
        .iter()
        .filter(|h| h["path"].as_str().unwrap().ends_with("hostile.bmp"))
        .collect();
    assert!(!hostile.is_empty());
    assert!(
        hostile.len() <= 1000,
        "segments per reply are capped: {}",
        hostile.len()
    );
    for h in &hostile {
        let labels = h["labels"].as_array().unwrap();
        assert!(labels.len() <= 64, "labels per segment are capped");
        assert!(
            !labels.iter().any(|l| l == "misbehave-bad-time"),
            "segments with impossible times are dropped: {h:#}"
        );
        assert!(!has_control_chars(h), "{h:#}");
    }
    let file = d.json(&["status", d.media.join("hostile.bmp").to_str().unwrap()]);
    assert!(
        file["indexed"]["labels"].as_array().unwrap().len() <= 1000,
        "the file's labels are capped too"
    );
}

/// A model host is untrusted: misbehave's `escape` tries to write beside the
/// media, into the cache, the state dir and /tmp, to open IPv4, IPv6 and
/// netlink sockets and to connect to a port listening here. All must fail.
#[test]
fn a_host_cannot_write_outside_its_folder_or_reach_the_network() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let d = Daemon::start_with(misbehave(), &[("VX_MISBEHAVE_ESCAPE_PORT", &port)], |m| {
        make_images(m, &["escape.bmp".into()])
    });
    d.wait_idle(60);
    let file = d.json(&["status", d.media.join("escape.bmp").to_str().unwrap()]);
    let labels: Vec<&str> = file["indexed"]["labels"]
        .as_array()
        .map(|ls| ls.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let escape: Vec<&str> = labels
        .into_iter()
        .filter(|l| l.starts_with("escape-"))
        .collect();
    let text = d.json(&["search", "escape", "--segments"]);
    assert_eq!(
        escape,
        ["escape-blocked"],
        "{file:#}\n{text:#}\n{}",
        d.log()
    );
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "the host connected to 127.0.0.1:{port}"
    );
    // It removes what it managed to write, but check the disk as well.
    let mut left = vec![];
    let mut dirs = vec![d.root.path().to_owned(), std::env::temp_dir()];
    while let Some(dir) = dirs.pop() {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("vx-escape-") {
                left.push(e.path());
            } else if dir.starts_with(d.root.path()) && e.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(e.path());
            }
        }
    }
    assert!(left.is_empty(), "{left:?}");
    let thumbnails = d.root.path().join("cache/thumbnails");
    assert!(
        std::fs::read_dir(&thumbnails).is_ok_and(|mut t| t.next().is_some()),
        "keyframes still writes its thumbnails into {}",
        thumbnails.display()
    );
}

/// vxd built for tests panics inside its own pipeline on a file named
/// `vxd-panic…` (the `fault-injection` feature): the file fails with the
/// panic's message, and the worker lives on to index the rest.
#[test]
fn a_panic_in_the_pipeline_fails_that_file_only() {
    let d = Daemon::start(|m| {
        make_image(&m.join("a.png"));
        make_image(&m.join("vxd-panic.png"));
        make_image(&m.join("b.png"));
    });
    d.wait_idle(60);
    let status = d.json(&["status"]);
    let failed = status["failed_files"].as_array().unwrap();
    assert_eq!(
        failed.len(),
        1,
        "build vxd with --features vxd/fault-injection (scripts/test.sh does): {status:#}"
    );
    assert!(
        failed[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("vxd-panic.png")
    );
    assert!(
        failed[0]["reason"].as_str().unwrap().contains("panicked"),
        "{status:#}"
    );
    assert_eq!(status["files"]["indexed"], 2, "{status:#}");
    // Still working: a new file is indexed.
    make_image(&d.media.join("c.png"));
    assert!(eventually(Duration::from_secs(30), || d.json(&["status"])
        ["files"]["indexed"]
        == 3));
}

/// Small on disk, huge decoded: ten hours of silence, a 16000×16000 photo.
/// Audio is cut at `max_audio_s` and status says so; a picture over
/// `max_image_pixels` fails with the reason; vxd's memory stays bounded.
#[test]
fn decompression_bombs_are_capped() {
    let d = Daemon::start_with("plugins = [\"keyframes\", \"misbehave\"]\n", &[], |m| {
        require_misbehave(); // it asks for audio
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "anullsrc=r=8000:cl=mono",
            "-t",
            "36000",
            "-c:a",
            "flac",
            m.join("ten-hours.flac").to_str().unwrap(),
        ]);
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            "color=c=gray:s=16000x16000",
            "-frames:v",
            "1",
            m.join("huge.png").to_str().unwrap(),
        ]);
        make_image(&m.join("fine.png"));
    });
    d.wait_idle(300);
    let status = d.json(&["status"]);
    let peak = peak_rss_mb(d.pid());
    assert!(
        peak > 0 && peak < 1500,
        "vxd peaked at {peak} MB\n{status:#}"
    );
    let failed = status["failed_files"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{status:#}");
    assert!(failed[0]["path"].as_str().unwrap().ends_with("huge.png"));
    assert!(
        failed[0]["reason"]
            .as_str()
            .unwrap()
            .contains("max_image_pixels"),
        "{status:#}"
    );
    let warnings = status["warnings"].to_string();
    assert!(
        warnings.contains("ten-hours.flac") && warnings.contains("max_audio_s"),
        "{status:#}"
    );
    let long = d.json(&["status", d.media.join("ten-hours.flac").to_str().unwrap()]);
    assert_eq!(long["state"], "indexed", "{long:#}");
}

fn thumbnails(d: &Daemon) -> usize {
    std::fs::read_dir(d.root.path().join("cache/thumbnails"))
        .map(|e| e.count())
        .unwrap_or(0)
}

/// A deleted file's thumbnails go with it; those a copy still shows stay.
#[test]
fn thumbnails_of_deleted_files_are_removed() {
    let d = Daemon::start(|m| make_video(&m.join("clip.mp4"), 4));
    d.wait_idle(60);
    let made = thumbnails(&d);
    assert!(made > 0);
    // A copy reuses the results, thumbnails included.
    std::fs::copy(d.media.join("clip.mp4"), d.media.join("copy.mp4")).unwrap();
    assert!(eventually(Duration::from_secs(30), || seen(&d) == 2));
    d.wait_idle(60);
    std::fs::remove_file(d.media.join("clip.mp4")).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    d.wait_idle(60);
    assert_eq!(thumbnails(&d), made, "the copy still shows them");
    std::fs::remove_file(d.media.join("copy.mp4")).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || thumbnails(&d) == 0),
        "{} thumbnails left",
        thumbnails(&d)
    );
}

/// Where inotify cannot watch, vxd rescans; a folder empty at start still
/// has its first files found.
#[test]
fn rescans_find_the_first_files_of_an_empty_folder() {
    let d = Daemon::start_with(
        "rescan_interval_s = 0.5\n",
        &[("VX_SIMULATE_INOTIFY_LIMIT", "1")],
        |_| {},
    );
    d.wait_idle(60);
    make_images(&d.media, &["first.bmp".into()]);
    assert!(
        eventually(Duration::from_secs(15), || d.search("first").len() == 1),
        "rescans never found the first file\n{}",
        d.log()
    );
}

/// A watched folder that is gone when vxd starts (a disk not mounted) is
/// not taken as all its files deleted: their entries wait for it.
#[test]
fn an_unmounted_folder_does_not_empty_the_index() {
    let mut d = Daemon::start(|m| make_image(&m.join("garden.png")));
    let usb = d.media.parent().unwrap().join("usb");
    std::fs::create_dir_all(&usb).unwrap();
    make_image(&usb.join("beach.png"));
    let config = std::fs::read_to_string(&d.config).unwrap();
    let both = config.replacen("watch = [", &format!("watch = [{usb:?}, "), 1);
    std::fs::write(&d.config, both).unwrap();
    d.restart();
    d.wait_idle(60);
    assert_eq!(d.search("beach").len(), 1, "{}", d.log());

    d.signal_and_wait(libc::SIGTERM, Duration::from_secs(15));
    std::fs::rename(&usb, usb.with_extension("unplugged")).unwrap();
    d.restart_stopped();
    d.wait_idle(60);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        d.search("beach").len(),
        1,
        "purged with its folder away\n{}",
        d.log()
    );
    let status = d.json(&["status"]);
    assert!(status["warnings"].to_string().contains("usb"), "{status:#}");

    // A bare mount point (the folder there, empty) says no more than a
    // missing one (found by review).
    d.signal_and_wait(libc::SIGTERM, Duration::from_secs(15));
    std::fs::create_dir_all(&usb).unwrap();
    d.restart_stopped();
    d.wait_idle(60);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        d.search("beach").len(),
        1,
        "purged with its mount point bare\n{}",
        d.log()
    );
}

/// What vxd writes (the index, the vectors, thumbnails) is for its user
/// only, whatever umask it was started with.
#[test]
fn a_foreground_vxd_keeps_its_files_private() {
    let d = Daemon::start(|m| make_video(&m.join("clip.mp4"), 2));
    d.wait_idle(60);
    let mut checked = 0;
    let mut stack = vec![
        d.root.path().join("state"),
        d.root.path().join("cache/thumbnails"),
    ];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                stack.push(e.path());
            }
            let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions());
            assert_eq!(mode & 0o077, 0, "{} is {mode:o}", e.path().display());
            checked += 1;
        }
    }
    assert!(checked > 5);
}

fn threads(pid: i32) -> u64 {
    proc_status(pid as u32, "Threads:")
}

/// Connections that never say hello are closed, so they cannot pile up
/// threads; vxctl keeps working meanwhile.
#[test]
fn silent_control_connections_are_closed() {
    let d = Daemon::start(|m| make_image(&m.join("a.png")));
    d.wait_idle(60);
    let before = threads(d.pid());
    let silent: Vec<_> = (0..100)
        .map(|_| std::os::unix::net::UnixStream::connect(&d.socket).unwrap())
        .collect();
    // Most of them get a thread at once (the count can include a thread or
    // two that was ending when `before` was taken).
    assert!(eventually(Duration::from_secs(10), || threads(d.pid()) >= before + 90));
    assert!(d.vxctl(&["status"]).status.success());
    assert!(
        eventually(Duration::from_secs(20), || threads(d.pid()) <= before + 2),
        "{} threads, {before} before",
        threads(d.pid())
    );
    drop(silent);
}

/// Whether any string in `v` holds a control character (a terminal escape).
fn has_control_chars(v: &Value) -> bool {
    match v {
        Value::String(s) => s.chars().any(|c| c.is_control() && c != '\n'),
        Value::Array(a) => a.iter().any(has_control_chars),
        Value::Object(o) => o.values().any(has_control_chars),
        _ => false,
    }
}

fn failure_of<'a>(status: &'a Value, name: &str) -> Option<&'a str> {
    status["failed_files"]
        .as_array()?
        .iter()
        .find(|f| f["path"].as_str().is_some_and(|p| p.ends_with(name)))
        .and_then(|f| f["reason"].as_str())
}

/// Decoding runs in a subprocess (vxd built for tests makes it die of
/// SIGSEGV on `decoder-segv…` and hang on `decoder-hang…`): each such file
/// fails with the reason, vxd lives on, and the other files are indexed.
#[test]
fn a_decoder_that_crashes_or_hangs_fails_that_file_only() {
    let d = Daemon::start_with("decode_stall_s = 2\n", &[], |m| {
        let names = ["a.bmp", "decoder-segv.bmp", "decoder-hang.bmp", "b.bmp"];
        make_images(m, &names.map(String::from));
    });
    d.wait_idle(60);
    let status = d.json(&["status"]);
    let segv = failure_of(&status, "decoder-segv.bmp").unwrap_or_default();
    assert!(
        segv.contains("decoder died on this file twice") && segv.contains("SIGSEGV"),
        "build with --features vxd/fault-injection (scripts/test.sh does): {status:#}"
    );
    let hang = failure_of(&status, "decoder-hang.bmp").unwrap_or_default();
    assert!(hang.contains("read nothing for 2 s"), "{status:#}");
    assert_eq!(status["files"]["indexed"], 2, "{status:#}");
    assert!(process_alive(d.pid()));
    make_image(&d.media.join("c.png"));
    assert!(eventually(Duration::from_secs(30), || d.json(&["status"])
        ["files"]["indexed"]
        == 3));
}

/// vxd idle, or not running any more.
fn idle_or_gone(d: &Daemon) -> bool {
    if !process_alive(d.pid()) {
        return true;
    }
    let out = d.vxctl(&["status", "--json"]);
    out.status.success()
        && serde_json::from_slice::<Value>(&out.stdout).is_ok_and(|s| s["idle"] == true)
}

/// A file on which vxd itself dies (vxd built for tests aborts on
/// `vxd-abort…`, as on a crash in a library) waits until the other files
/// are done, and after three deaths fails with the reason instead of
/// taking every later vxd down with it.
#[test]
fn a_file_that_keeps_killing_vxd_fails_instead_of_looping() {
    let mut d =
        Daemon::start(|m| make_images(m, &["a.bmp", "vxd-abort.bmp", "b.bmp"].map(String::from)));
    let mut deaths = 0;
    loop {
        assert!(
            eventually(Duration::from_secs(60), || idle_or_gone(&d)),
            "{}",
            d.log()
        );
        if process_alive(d.pid()) {
            break;
        }
        deaths += 1;
        let how = d.child.wait().unwrap();
        assert!(
            deaths <= 3,
            "vxd keeps dying on the same file (pid {}, {how:?})\n{}",
            d.pid(),
            d.log()
        );
        d.restart_stopped();
    }
    assert_eq!(deaths, 3, "{}", d.log());
    let status = d.json(&["status"]);
    let reason = failure_of(&status, "vxd-abort.bmp").unwrap_or_default();
    assert!(reason.contains("vxd stopped 3 times"), "{status:#}");
    assert_eq!(status["files"]["indexed"], 2, "{status:#}");
    // The failure is kept with the file: the next vxd does not try it again.
    d.restart();
    d.wait_idle(60);
    assert!(process_alive(d.pid()), "{}", d.log());
    let status = d.json(&["status"]);
    assert!(failure_of(&status, "vxd-abort.bmp").is_some(), "{status:#}");
}

/// Out of memory, file descriptors or disk for a moment is not the file's
/// fault: vxd built for tests makes the decoder report ENOMEM on
/// `decoder-busy…` while a `.busy` file lies beside it. The file is tried
/// again, is never listed as failed, and is indexed once memory is back.
#[test]
fn a_file_that_met_a_short_of_memory_machine_is_tried_again() {
    let d = Daemon::start(|m| {
        make_images(m, &["a.bmp", "decoder-busy.bmp"].map(String::from));
        std::fs::write(m.join("decoder-busy.bmp.busy"), b"").unwrap();
    });
    let warned = eventually(Duration::from_secs(30), || {
        let status = d.json(&["status"]);
        status["warnings"].to_string().contains("decoder-busy.bmp")
    });
    assert!(warned, "{:#}", d.json(&["status"]));
    std::thread::sleep(Duration::from_secs(6)); // a retry or two
    let status = d.json(&["status"]);
    assert!(
        failure_of(&status, "decoder-busy.bmp").is_none(),
        "not a failure of the file: {status:#}"
    );
    assert_eq!(status["files"]["indexed"], 1, "{status:#}");
    std::fs::remove_file(d.media.join("decoder-busy.bmp.busy")).unwrap();
    assert!(
        eventually(
            Duration::from_secs(30),
            || d.json(&["status"])["files"]["indexed"] == 2
        ),
        "{:#}",
        d.json(&["status"])
    );
}

/// A tmpfs mounted over a folder for the length of a test.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "cannot mount a tmpfs on {}", dir.display());
        Tmpfs(dir.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Writes to `path` until the disk is full.
fn fill(path: &std::path::Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0u8; 64 << 10];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.write_all(&[0u8; 512]);
}

/// The state dir fills up mid-run: vxd says so in status, holds indexing
/// (losing nothing it committed, and no file), and goes on by itself once
/// there is space again. Needs root, for the tmpfs.
#[test]
fn a_full_state_dir_pauses_indexing_until_space_returns() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: mounting a small tmpfs as the state dir needs root");
        return;
    }
    let mut tmpfs = None;
    let d = Daemon::start(|m| {
        tmpfs = Some(Tmpfs::mount(&m.parent().unwrap().join("state"), "8m"));
        // Distinct content, so the later files are not copies of the first.
        let later = m.parent().unwrap().join("later");
        std::fs::create_dir_all(&later).unwrap();
        make_images(
            &later,
            &["before.bmp", "during1.bmp", "during2.bmp"].map(String::from),
        );
        std::fs::rename(later.join("before.bmp"), m.join("before.bmp")).unwrap();
    });
    let _tmpfs = tmpfs;
    d.wait_idle(60);
    assert_eq!(d.search("before").len(), 1);
    let ballast = d.root.path().join("state/ballast");
    fill(&ballast);
    for name in ["during1.bmp", "during2.bmp"] {
        std::fs::rename(d.root.path().join("later").join(name), d.media.join(name)).unwrap();
    }
    let held = eventually(Duration::from_secs(30), || {
        d.json(&["status"])["stalled"]
            .as_str()
            .is_some_and(|s| s.contains("state dir full"))
    });
    let status = d.json(&["status"]);
    assert!(held, "{status:#}\n{}", d.log());
    assert_eq!(status["idle"], false, "{status:#}");
    assert!(
        d.vxctl(&["status"])
            .stdout
            .windows(14)
            .any(|w| w == b"state dir full"),
        "vxctl status says it"
    );
    // What was committed is still there, and searchable.
    assert_eq!(d.search("before").len(), 1, "{}", d.log());
    assert!(process_alive(d.pid()));

    std::fs::remove_file(&ballast).unwrap();
    d.wait_idle(60);
    let status = d.json(&["status"]);
    assert_eq!(status["stalled"], Value::Null, "{status:#}");
    assert_eq!(status["files"]["indexed"], 3, "{status:#}\n{}", d.log());
    assert!(
        status["failed_files"].as_array().unwrap().is_empty(),
        "{status:#}"
    );
    assert_eq!(d.search("during1").len(), 1);
}

/// A process other than the host vxd spawned cannot speak for a plugin:
/// here the "host" vxd starts is a script whose child connects instead.
#[test]
fn only_the_host_vxd_started_may_say_hello() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("not-the-host.sh");
    let real = bin_dir().join("vx-plugin-host");
    std::fs::write(&script, format!("#!/bin/sh\n{real:?} \"$@\" &\nwait\n")).unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let d = Daemon::start_with(
        "host_start_timeout_s = 3.0\n",
        &[("VX_PLUGIN_HOST", script.to_str().unwrap())],
        |m| make_images(m, &["a.bmp".into()]),
    );
    d.wait_idle(60);
    let status = d.json(&["status"]);
    let keyframes = status["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "keyframes")
        .cloned()
        .unwrap();
    assert!(
        keyframes["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("not the host vxd started"),
        "{status:#}"
    );
    assert_ne!(keyframes["state"], "ready", "{status:#}");
}

/// The size vxd indexed `name` at.
fn indexed_size(d: &Daemon, name: &str) -> Option<u64> {
    let path = d.media.join(name);
    d.json(&["status", path.to_str().unwrap()])["indexed"]["size"].as_u64()
}

/// Files cut short or replaced while the decoder works on them (vxd built
/// for tests has it wait 2 s on `decoder-slow…`) end up indexed as they are
/// on disk afterwards, not as they were when decoding began.
#[test]
fn a_file_changed_while_it_is_decoded_is_indexed_as_it_ends_up() {
    let d = Daemon::start(|m| {
        make_video(&m.join("decoder-slow-cut.mp4"), 3);
        make_video(&m.join("decoder-slow-swap.mp4"), 3);
    });
    let decoding = eventually(Duration::from_secs(30), || {
        d.json(&["status"])["current"]
            .as_array()
            .is_some_and(|c| !c.is_empty())
    });
    assert!(decoding, "{}", d.log());
    let cut = d.media.join("decoder-slow-cut.mp4");
    let bytes = std::fs::read(&cut).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let other = d.root.path().join("other.png");
    make_image(&other);
    std::fs::rename(&other, d.media.join("decoder-slow-swap.mp4")).unwrap();
    d.wait_idle(60);
    std::thread::sleep(Duration::from_secs(2)); // past settle_ms, then idle again
    d.wait_idle(60);
    for name in ["decoder-slow-cut.mp4", "decoder-slow-swap.mp4"] {
        let on_disk = std::fs::metadata(d.media.join(name)).unwrap().len();
        assert_eq!(
            indexed_size(&d, name),
            Some(on_disk),
            "{name}: {:#}\n{}",
            d.json(&["status", d.media.join(name).to_str().unwrap()]),
            d.log()
        );
    }
    let swapped = d.json(&[
        "status",
        d.media.join("decoder-slow-swap.mp4").to_str().unwrap(),
    ]);
    assert_eq!(swapped["indexed"]["kind"], "image", "{swapped:#}");
    assert!(process_alive(d.pid()));
}
