//! How vxd spends the machine: the first results of a file are searchable
//! before its slow plugins finish, and the budget settings (`cpu_share`,
//! `memory_mb`, `index_hours`) hold.

use std::time::Duration;

use vx_e2e::*;

/// The misbehave plugin answers `slow…` files after 3 s.
#[test]
fn a_file_is_findable_before_its_slow_plugin_finishes() {
    require_misbehave();
    let d = Daemon::start_with("plugins = [\"keyframes\", \"misbehave\"]\n", &[], |_| {});
    d.wait_idle(60);
    let staging = d.root.path().join("staging");
    std::fs::create_dir(&staging).unwrap();
    make_images(&staging, &["slow-early.bmp".into()]);
    std::fs::rename(
        staging.join("slow-early.bmp"),
        d.media.join("slow-early.bmp"),
    )
    .unwrap();
    let path = d.media.join("slow-early.bmp");
    let early = eventually(Duration::from_secs(3), || {
        let still_working = d.json(&["status", path.to_str().unwrap()])["state"] == "in progress";
        still_working && !d.search("early").is_empty()
    });
    assert!(early, "not findable while misbehave worked\n{}", d.log());
    d.wait_idle(60);
    let hits = d.json(&["search", "misbehave-ok", "--segments"])["hits"].clone();
    assert_eq!(hits.as_array().map(Vec::len), Some(1), "{hits:#}");
    let file = d.json(&["status", path.to_str().unwrap()]);
    let plugins = file["indexed"]["plugin_set"].as_str().unwrap_or_default();
    assert!(
        plugins.contains("keyframes@") && plugins.contains("misbehave@"),
        "{file:#}"
    );
}

/// The CPUs `pid` may run on, from /proc (e.g. "0" or "0-1").
fn cpus_allowed(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn cpu_share_keeps_vxd_and_its_hosts_on_that_many_cores() {
    let cores = std::thread::available_parallelism().unwrap().get();
    if cores < 2 {
        eprintln!("skipped: one core cannot be shared");
        return;
    }
    let d = Daemon::start_with("cpu_share = 0.5\n", &[], |m| make_image(&m.join("a.png")));
    d.wait_idle(60);
    let status = d.json(&["status"]);
    let host = status["plugins"][0]["pid"]
        .as_u64()
        .expect("a running host") as u32;
    let want = cores / 2;
    for (who, pid) in [("vxd", d.pid() as u32), ("host", host)] {
        let allowed = cpus_allowed(pid);
        let n: usize = allowed
            .split(',')
            .map(|r| match r.split_once('-') {
                Some((a, b)) => b.parse::<usize>().unwrap() - a.parse::<usize>().unwrap() + 1,
                None => 1,
            })
            .sum();
        assert_eq!(n, want, "{who} may run on {allowed}");
    }
    assert_eq!(status["budget"]["cores"], want, "{status:#}");
    let text = String::from_utf8_lossy(&d.vxctl(&["status"]).stdout).into_owned();
    assert!(text.contains(&format!("budget    {want} cores")), "{text}");
}

/// A memory budget too small even for one host of each plugin and the
/// decoders is said in status, and indexing goes on with one host each.
#[test]
fn a_memory_budget_below_one_host_each_is_a_warning_not_a_stop() {
    let d = Daemon::start_with("memory_mb = 100\n", &[], |m| make_image(&m.join("a.png")));
    d.wait_idle(60);
    let status = d.json(&["status"]);
    assert_eq!(status["files"]["indexed"], 1, "{status:#}");
    assert_eq!(status["budget"]["memory_mb"], 100, "{status:#}");
    assert_eq!(
        status["budget"]["hosts"],
        serde_json::json!([["keyframes", 1]])
    );
    assert!(
        status["budget"]["planned_mb"].as_u64().unwrap() > 100,
        "{status:#}"
    );
    let warnings = status["warnings"].to_string();
    assert!(warnings.contains("memory_mb = 100"), "{status:#}");
}

#[test]
fn outside_index_hours_files_wait_and_status_says_why() {
    // A window that starts in two hours and lasts one.
    // SAFETY: localtime_r fills the zeroed struct from a valid time_t.
    let now = unsafe {
        let t = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&t, &mut tm);
        tm.tm_hour
    };
    let hours = format!(
        "index_hours = \"{:02}:00-{:02}:00\"\n",
        (now + 2) % 24,
        (now + 3) % 24
    );
    let d = Daemon::start_with(&hours, &[], |m| make_image(&m.join("a.png")));
    let waiting = eventually(Duration::from_secs(10), || {
        d.json(&["status"])["stalled"]
            .as_str()
            .is_some_and(|s| s.contains("outside index_hours"))
    });
    let status = d.json(&["status"]);
    assert!(waiting, "{status:#}");
    assert_eq!(status["files"]["indexed"], 0, "{status:#}");
    assert_eq!(status["idle"], false, "{status:#}");
}
