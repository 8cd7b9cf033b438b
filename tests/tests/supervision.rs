//! Model hosts that misbehave must never hurt vxd, in the style of Baloo's and
//! LocalSearch's extractor tests: the `misbehave` plugin crashes, hangs, leaks
//! or lies on the files named for it, and exactly those files are flagged.
//! Needs `vx-plugin-host` built with `--features vx-plugin-host/misbehave`.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use vx_e2e::*;

// One host per plugin: the tests follow that host's crashes and restarts.
const MISBEHAVE_TOML: &str = "plugins = [\"keyframes\", \"misbehave\"]\n\
    deadline_base_s = 1.5\ndeadline_per_media_s = 0.0\nhost_memory_mb = 512\nhost_start_timeout_s = 2.0\n\
    host_pool_size = 1\n";

fn plugin<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap()
}

/// Config for the misbehave tests; checks the host has the plugin first.
fn misbehave() -> String {
    require_misbehave();
    MISBEHAVE_TOML.to_owned()
}

/// (file name, plugin, reason) of every failed file, sorted.
fn failures(status: &Value) -> Vec<(String, String, String)> {
    let mut v: Vec<_> = status["failed_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let name = Path::new(f["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (
                name,
                f["plugin"].as_str().unwrap().to_owned(),
                f["reason"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

/// One poison file and one good file: the poison file fails for `misbehave`
/// only, with `reason`, after one retry in a fresh host; everything else is
/// indexed and vxd lives on.
fn poison_file_is_flagged_for_that_plugin_only(word: &str, reason: &str) {
    let poison = format!("{word}_clip.bmp");
    let d = Daemon::start_with(&misbehave(), &[], |m| {
        make_images(m, &["good.bmp".into(), poison.clone()])
    });
    d.wait_idle(60);
    let status = d.json(&["status"]);
    let f = failures(&status);
    assert_eq!(f.len(), 1, "{status:#}\n{}", d.log());
    assert_eq!(
        (f[0].0.as_str(), f[0].1.as_str()),
        (poison.as_str(), "misbehave")
    );
    assert!(
        f[0].2.contains(reason),
        "reason {:?} lacks {reason:?}",
        f[0].2
    );
    assert_eq!(status["files"]["indexed"].as_u64(), Some(2), "{status:#}");
    assert_eq!(status["pid"].as_i64(), Some(d.pid() as i64));
    assert!(process_alive(d.pid()));
    assert_eq!(
        plugin(&status, "misbehave")["crashes"].as_u64(),
        Some(2),
        "first try and one retry"
    );
    assert_eq!(plugin(&status, "keyframes")["crashes"].as_u64(), Some(0));

    // The other plugin's results for the poison file are indexed; misbehave's
    // own result exists for the good file only.
    let scenes = d.search("scene");
    assert!(
        scenes
            .iter()
            .any(|h| h["path"].as_str().unwrap().ends_with(&poison)),
        "{scenes:?}"
    );
    let ok: Vec<_> = d
        .search("misbehave")
        .iter()
        .map(|h| h["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert!(ok[0].ends_with("good.bmp"));
    assert_eq!(segment_fds(d.pid()), 0);
}

#[test]
fn segfault_is_flagged() {
    poison_file_is_flagged_for_that_plugin_only("segv", "killed by SIGSEGV");
}

#[test]
fn abort_is_flagged() {
    poison_file_is_flagged_for_that_plugin_only("abort", "killed by SIGABRT");
}

#[test]
fn panic_is_flagged_with_its_message() {
    poison_file_is_flagged_for_that_plugin_only("panic", "panicked: misbehave: asked to panic");
}

#[test]
fn nonzero_exit_is_flagged() {
    poison_file_is_flagged_for_that_plugin_only("exit", "exit status 42");
}

#[test]
fn hang_is_killed_at_the_deadline() {
    poison_file_is_flagged_for_that_plugin_only("hang", "deadline 1.5 s exceeded");
}

#[test]
fn unbounded_allocation_hits_the_memory_limit() {
    poison_file_is_flagged_for_that_plugin_only("oom", "memory limit 512 MiB exceeded");
}

#[test]
fn garbage_reply_is_flagged() {
    poison_file_is_flagged_for_that_plugin_only("garbage", "sent garbage: bad frame magic");
}

#[test]
fn oversize_frame_is_refused() {
    poison_file_is_flagged_for_that_plugin_only("oversize", "exceeds the limit of 16777216 bytes");
}

/// A host that never completes the handshake is retried with backoff, then
/// disabled with the error in status; the other plugin indexes everything,
/// and the files wait for the broken plugin instead of failing for it.
fn broken_host_is_disabled(mode: &str, error: &str) {
    let d = Daemon::start_with(&misbehave(), &[("VX_MISBEHAVE", mode)], |m| {
        make_images(m, &["a.bmp".into(), "b.bmp".into()])
    });
    d.wait_idle(120);
    let status = d.json(&["status"]);
    let p = plugin(&status, "misbehave");
    assert_eq!(p["state"].as_str(), Some("disabled"), "{status:#}");
    assert!(p["last_error"].as_str().unwrap().contains(error), "{p}");
    assert_eq!(p["crashes"].as_u64(), Some(3), "{p}");
    assert_eq!(status["files"]["indexed"].as_u64(), Some(2));
    assert_eq!(d.search("scene").len(), 2, "keyframes still ran");
    assert_eq!(failures(&status), [], "a plugin that is down fails no file");
    let a = d.json(&["status", d.media.join("a.bmp").to_str().unwrap()]);
    let ran = a["indexed"]["plugin_set"].as_str().unwrap();
    assert!(!ran.contains("misbehave"), "pending for misbehave: {a:#}");
}

/// A host that sends a byte now and then, never a whole reply, is stopped at
/// the job's deadline, not kept alive by each byte.
#[test]
fn trickling_host_is_killed_at_the_deadline() {
    let started = Instant::now();
    poison_file_is_flagged_for_that_plugin_only("trickle", "deadline 1.5 s exceeded");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "two tries of 1.5 s each took {:?}",
        started.elapsed()
    );
}

#[test]
fn host_dying_before_hello_is_named_and_disabled() {
    broken_host_is_disabled(
        "die-before-hello",
        "plugin misbehave exited before handshake (exit status 3)",
    );
}

#[test]
fn host_silent_before_hello_times_out_and_is_disabled() {
    broken_host_is_disabled(
        "silent-before-hello",
        "plugin misbehave sent no handshake within 2.0 s",
    );
}

#[test]
fn host_speaking_another_protocol_is_refused_with_both_versions() {
    let ours = vx_plugin_protocol::PROTOCOL_VERSION;
    broken_host_is_disabled(
        "wrong-protocol",
        &format!(
            "plugin misbehave speaks protocol {}, vxd speaks {ours}",
            ours + 1000
        ),
    );
}

#[test]
fn forty_files_with_four_poison_flags_exactly_those_four() {
    let poison = [
        "m10_segv.bmp",
        "m20_hang.bmp",
        "m30_oom.bmp",
        "m35_garbage.bmp",
    ];
    let mut names: Vec<String> = (0..36)
        .map(|i| format!("m{:02}_ok.bmp", i + (i >= 10) as usize))
        .collect();
    names.extend(poison.iter().map(|s| s.to_string()));
    let started = Instant::now();
    let d = Daemon::start_with(&misbehave(), &[], |m| make_images(m, &names));
    let pid = d.pid();
    d.wait_idle(180);
    println!(
        "40 files with 4 poison: idle after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let status = d.json(&["status"]);
    assert_eq!(status["pid"].as_i64(), Some(pid as i64));
    assert_eq!(status["files"]["seen"].as_u64(), Some(40));
    assert_eq!(status["files"]["indexed"].as_u64(), Some(40));
    assert_eq!(status["files"]["failed"].as_u64(), Some(4));
    assert_eq!(
        status["files"]["done"].as_u64(),
        Some(40),
        "failed files with indexed results count once"
    );
    let f = failures(&status);
    let got: Vec<(&str, &str)> = f.iter().map(|(n, p, _)| (n.as_str(), p.as_str())).collect();
    assert_eq!(
        got,
        [
            ("m10_segv.bmp", "misbehave"),
            ("m20_hang.bmp", "misbehave"),
            ("m30_oom.bmp", "misbehave"),
            ("m35_garbage.bmp", "misbehave")
        ]
    );
    for ((_, _, reason), want) in f.iter().zip([
        "killed by SIGSEGV",
        "deadline 1.5 s exceeded",
        "memory limit 512 MiB",
        "sent garbage",
    ]) {
        assert!(reason.contains(want), "{reason:?} lacks {want:?}");
    }
    assert_eq!(
        d.search("misbehave").len(),
        36,
        "the 36 good files have misbehave's result"
    );
    assert_eq!(d.search("scene").len(), 40, "keyframes indexed all 40");
    assert_ne!(
        plugin(&status, "misbehave")["state"].as_str(),
        Some("disabled")
    );
}

#[test]
fn poison_file_is_not_retried_on_restart_until_it_changes_or_vxctl_retry() {
    let mut d = Daemon::start_with(&misbehave(), &[], |m| {
        make_images(m, &["ok.bmp".into(), "x_segv.bmp".into()])
    });
    d.wait_idle(60);
    assert_eq!(failures(&d.json(&["status"])).len(), 1);

    d.restart();
    d.wait_idle(60);
    let status = d.json(&["status"]);
    assert_eq!(
        failures(&status).len(),
        1,
        "failure survives restart: {status:#}"
    );
    assert_eq!(
        plugin(&status, "misbehave")["crashes"].as_u64(),
        Some(0),
        "not retried on restart"
    );

    let out = d.vxctl(&["retry", "--all"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    d.wait_idle(60);
    let status = d.json(&["status"]);
    assert_eq!(
        plugin(&status, "misbehave")["crashes"].as_u64(),
        Some(2),
        "retried on request"
    );
    assert_eq!(failures(&status).len(), 1);

    let out = d.vxctl(&["retry", "/etc/passwd"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a media file in a watched folder"));

    // A rename is the same content: the failure moves with it, nothing re-runs.
    std::fs::rename(d.media.join("x_segv.bmp"), d.media.join("x_fixed.bmp")).unwrap();
    let moved = || {
        failures(&d.json(&["status"])).first().map(|f| f.0.clone()) == Some("x_fixed.bmp".into())
    };
    assert!(
        eventually(Duration::from_secs(20), moved),
        "{:?}",
        failures(&d.json(&["status"]))
    );
    d.wait_idle(60);
    assert_eq!(
        plugin(&d.json(&["status"]), "misbehave")["crashes"].as_u64(),
        Some(2)
    );
    // New content under the harmless name: it runs again, and succeeds.
    let spare = d.root.path().join("spare");
    std::fs::create_dir(&spare).unwrap();
    make_images(&spare, &["0.bmp".into(), "1.bmp".into(), "new.bmp".into()]); // index 2: unlike both files above
    std::fs::rename(spare.join("new.bmp"), d.media.join("x_fixed.bmp")).unwrap();
    assert!(eventually(Duration::from_secs(20), || failures(
        &d.json(&["status"])
    )
    .is_empty()));
    d.wait_idle(60);
    assert!(failures(&d.json(&["status"])).is_empty());
}

#[test]
fn indexing_a_hundred_files_leaves_segments_and_fds_where_they_started() {
    let d = Daemon::start(|m| make_image(&m.join("first.bmp")));
    d.wait_idle(60);
    let before = fd_count(d.pid());
    let tmp = d.root.path().join("batch");
    std::fs::create_dir(&tmp).unwrap();
    let names: Vec<String> = (0..100).map(|i| format!("p{i:03}.bmp")).collect();
    make_images(&tmp, &names);
    for n in &names {
        std::fs::rename(tmp.join(n), d.media.join(n)).unwrap();
    }
    assert!(eventually(Duration::from_secs(120), || d.json(&["status"])
        ["files"]["indexed"]
        .as_u64()
        == Some(101)));
    d.wait_idle(60);
    assert_eq!(segment_fds(d.pid()), 0);
    assert!(
        eventually(Duration::from_secs(5), || fd_count(d.pid()) == before),
        "vxd had {before} fds before, {} after",
        fd_count(d.pid())
    );
}
