//! Load: 2,000 small files dropped at once while 50 clients search. The
//! queue drains, every search is answered, memory stays bounded. Status
//! latency while busy is printed (a measurement, not a pass/fail timing).

use std::time::{Duration, Instant};

use vx_e2e::*;

const FILES: usize = 2000;
const CLIENTS: usize = 50;

#[test]
fn two_thousand_files_at_once_drain_while_fifty_clients_search() {
    let d = Daemon::start(|_| {});
    d.wait_idle(60);
    // Made aside, then moved in at once: one folder appears with them all.
    let aside = d.root.path().join("aside");
    std::fs::create_dir_all(&aside).unwrap();
    let names: Vec<String> = (0..FILES).map(|i| format!("load{i:04}.bmp")).collect();
    make_images(&aside, &names);
    std::fs::rename(&aside, d.media.join("drop")).unwrap();

    let mut status_ms = vec![];
    std::thread::scope(|scope| {
        let searches: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let d = &d;
                scope.spawn(move || d.vxctl(&["search", &format!("load{:04}", i * 37)]))
            })
            .collect();
        for _ in 0..20 {
            let t = Instant::now();
            assert!(d.vxctl(&["status"]).status.success());
            status_ms.push(t.elapsed().as_secs_f64() * 1e3);
            std::thread::sleep(Duration::from_millis(100));
        }
        for s in searches {
            let out = s.join().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
    d.wait_idle(600);
    let status = d.json(&["status"]);
    assert_eq!(status["files"]["indexed"], FILES, "{status:#}");
    let peak_mb = peak_rss_mb(d.pid());
    status_ms.sort_by(f64::total_cmp);
    eprintln!(
        "vxctl status while busy (process start included): p50 {:.1} ms, max {:.1} ms; vxd peak RSS {peak_mb} MB",
        status_ms[status_ms.len() / 2],
        status_ms[status_ms.len() - 1]
    );
    assert!(peak_mb > 0 && peak_mb < 400, "vxd peaked at {peak_mb} MB");
}
