//! Crash consistency: vxd is SIGKILLed at 20 seeded random moments while it
//! indexes small files (committed in batches; more come whenever it is found
//! idle), and restarted each time.
//! At the end every file is in the index exactly once, status agrees with
//! the index, and no host or decoder process is left over.

use std::time::Duration;

use vx_e2e::*;

const FILES: usize = 300;
/// Files added when vxd is found idle at a moment chosen for a kill.
const MORE: usize = 50;
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
    let name = |i: usize| format!("crash{i:04}.bmp");
    let mut names: Vec<String> = (0..FILES).map(name).collect();
    let mut d = Daemon::start(|m| make_images(m, &names));
    // xorshift, seeded: the same kill times on every run.
    let mut seed = 0x5eed_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // Every kill lands while vxd works: when it is idle at the chosen moment
    // (small files in batches go fast), it gets more files instead.
    let mut kills = 0;
    for attempt in 0.. {
        assert!(attempt < 10 * KILLS, "vxd was idle at {attempt} moments");
        std::thread::sleep(Duration::from_millis(next() % 400));
        if d.json(&["status"])["idle"] == true {
            let more: Vec<String> = (names.len()..names.len() + MORE).map(name).collect();
            make_images(&d.media, &more);
            names.extend(more);
            continue;
        }
        let status = d.signal_and_wait(libc::SIGKILL, Duration::from_secs(10));
        assert_eq!(status.code(), None, "killed, not exited");
        d.restart_stopped();
        kills += 1;
        if kills == KILLS {
            break;
        }
    }
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
    assert_eq!(
        status["files"]["indexed"],
        names.len(),
        "{status:#}\n{}",
        d.log()
    );
    assert_eq!(status["files"]["failed"], 0, "{status:#}");
    for picture in &names {
        let hits = d.search(picture.trim_end_matches(".bmp"));
        assert_eq!(hits.len(), 1, "{picture} is indexed once: {hits:#?}");
        let file = d.json(&["status", d.media.join(picture).to_str().unwrap()]);
        assert_eq!(
            file["indexed"]["segments"],
            serde_json::json!([["keyframes", 1]]),
            "{picture}: {file:#}"
        );
    }
    d.signal_and_wait(libc::SIGTERM, Duration::from_secs(15));
    assert!(
        eventually(Duration::from_secs(5), || hosts_of(&d) == 0),
        "hosts left after vxd stopped"
    );
}
