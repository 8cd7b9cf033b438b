//! Crash consistency: vxd is SIGKILLed at seeded random moments while it
//! indexes 300 small files (committed in batches), and restarted each time.
//! At the end every file is in the index exactly once, status agrees with
//! the index, and no host or decoder process is left over.

use std::time::Duration;

use vx_e2e::*;

/// Enough that vxd is still busy at most kills: small files go fast in
/// batches (about 5 ms each here).
const FILES: usize = 300;
const KILLS: usize = 20;

/// The host processes started for this test's vxd, found by the socket
/// folder in their command line.
fn hosts_of(d: &Daemon) -> usize {
    let marker = d.root.path().to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .filter(|c| {
            let c = String::from_utf8_lossy(c);
            c.contains("vx-plugin-host") && c.contains(&marker)
        })
        .count()
}

/// (command name, parent pid) of a process.
fn comm_and_parent(pid: &str) -> Option<(String, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (head, tail) = stat.rsplit_once(')')?;
    let comm = head.split_once('(')?.1.to_owned();
    let ppid = tail.split_whitespace().nth(1)?.to_owned();
    Some((comm, ppid))
}

/// Decoder processes whose vxd is gone (other tests' vxds may be running,
/// with their own decoders).
fn orphaned_decoders() -> usize {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| comm_and_parent(&e.file_name().to_string_lossy()))
        .filter(|(comm, ppid)| {
            comm == "vx-decoder" && comm_and_parent(ppid).is_none_or(|(parent, _)| parent != "vxd")
        })
        .count()
}

#[test]
fn sigkill_at_random_moments_loses_and_duplicates_nothing() {
    let names: Vec<String> = (0..FILES).map(|i| format!("crash{i:03}.bmp")).collect();
    let mut d = Daemon::start(|m| make_images(m, &names));
    // xorshift, seeded: the same kill times on every run.
    let mut seed = 0x5eed_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut busy_kills = 0;
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(next() % 400));
        busy_kills += usize::from(d.json(&["status"])["idle"] == false);
        let status = d.signal_and_wait(libc::SIGKILL, Duration::from_secs(10));
        assert_eq!(status.code(), None, "killed, not exited");
        d.restart_stopped();
    }
    assert!(
        busy_kills >= 5,
        "only {busy_kills} kills landed while vxd was busy"
    );
    d.wait_idle(120);
    // The live vxd's own hosts, as planned.
    let planned: u64 = d.json(&["status"])["budget"]["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h[1].as_u64().unwrap())
        .sum();
    assert!(
        eventually(Duration::from_secs(5), || hosts_of(&d) <= planned as usize),
        "hosts of killed vxds are left: {} (vxd runs {planned})",
        hosts_of(&d)
    );
    assert!(
        eventually(Duration::from_secs(5), || orphaned_decoders() == 0),
        "decoders of killed vxds are left: {}",
        orphaned_decoders()
    );

    let status = d.json(&["status"]);
    assert_eq!(status["files"]["indexed"], FILES, "{status:#}\n{}", d.log());
    assert_eq!(status["files"]["failed"], 0, "{status:#}");
    for name in &names {
        let stem = name.trim_end_matches(".bmp");
        let hits = d.search(stem);
        assert_eq!(hits.len(), 1, "{name} is indexed once: {hits:#?}");
        let file = d.json(&["status", d.media.join(name).to_str().unwrap()]);
        assert_eq!(
            file["indexed"]["segments"],
            serde_json::json!([["keyframes", 1]]),
            "{name}: {file:#}"
        );
    }
    d.signal_and_wait(libc::SIGTERM, Duration::from_secs(15));
    assert!(
        eventually(Duration::from_secs(5), || hosts_of(&d) == 0),
        "hosts left after vxd stopped"
    );
}
