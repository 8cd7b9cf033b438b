//! The cluster on loopback: a real `nats-server` with JetStream, a
//! coordinator vxd and worker vxds, each a real process with its own state,
//! cache and host pools (keyframes, plus the misbehave fault injector where a
//! job must take a while).

use std::time::{Duration, Instant};

use vx_e2e::*;

/// Models need not load for the cluster's mechanics: keyframes runs without
/// one (and `jobs` is the default 2 on 2 cores).
const KEYFRAMES: &str = "plugins = ['keyframes']";
/// misbehave answers a `slow` file after 3 s: time to kill its worker.
const WITH_MISBEHAVE: &str = "plugins = ['keyframes', 'misbehave']";

#[test]
fn two_workers_share_two_hundred_files_and_each_is_indexed_once() {
    let nats = Nats::start();
    let c = nats.coordinator(KEYFRAMES, true, "", false);
    let w1 = nats.worker("w1", KEYFRAMES, "", false);
    let w2 = nats.worker("w2", KEYFRAMES, "", false);
    assert!(
        eventually(Duration::from_secs(30), || done_by(&c).len() == 2),
        "the coordinator never heard both workers: {}",
        cluster_status(&c)
    );
    let names: Vec<String> = (0..200).map(|i| format!("share{i:03}.bmp")).collect();
    let started = Instant::now();
    drop_images(&c, &names);
    c.wait_idle(240);
    let wall = started.elapsed().as_secs_f64();
    let split = done_by(&c);
    println!("200 files in {wall:.1} s with 2 workers; split {split:?}");
    assert_eq!(indexed(&c), 200, "{}", c.log());
    let total: u64 = split.iter().map(|(_, n)| n).sum();
    assert_eq!(total, 200, "each file answered once: {split:?}");
    for (name, n) in &split {
        assert!(*n >= 20, "{name} did only {n} of 200: {split:?}");
    }
    assert_eq!(files_named(&c, "share123").len(), 1);
    // The workers index nothing themselves.
    for w in [&w1, &w2] {
        assert_eq!(indexed(w), 0);
        assert_eq!(cluster_status(w)["role"], "worker");
    }
    let text = String::from_utf8(c.vxctl(&["status"]).stdout).unwrap();
    assert!(
        text.contains("worker w1") && text.contains("worker w2"),
        "{text}"
    );
}

#[test]
fn a_worker_killed_mid_job_loses_it_to_another_and_it_is_indexed_once() {
    require_misbehave();
    let nats = Nats::start();
    let c = nats.coordinator(WITH_MISBEHAVE, true, "", false);
    let mut first = nats.worker("first", WITH_MISBEHAVE, "", false);
    assert!(eventually(Duration::from_secs(30), || done_by(&c).len() == 1));
    // misbehave answers `slow` files after 3 s: time to kill the worker.
    drop_images(&c, &["slow-one.bmp".to_owned()]);
    assert!(
        eventually(Duration::from_secs(20), || {
            cluster_status(&c)["workers"][0]["busy"].as_u64() == Some(1)
        }),
        "the first worker never took the job"
    );
    first.signal_and_wait(libc::SIGKILL, Duration::from_secs(5));
    let _second = nats.worker("second", WITH_MISBEHAVE, "", false);
    c.wait_idle(60);
    let split = done_by(&c);
    println!("after the kill: {split:?}");
    assert!(split.contains(&("second".to_owned(), 1)), "{split:?}");
    assert!(split.contains(&("first".to_owned(), 0)), "{split:?}");
    assert_eq!(files_named(&c, "slow").len(), 1);
    let hits = c.search("misbehave-ok");
    assert_eq!(hits.len(), 1, "one segment, not one per delivery: {hits:?}");
    assert_eq!(c.json(&["status"])["files"]["failed"], 0);
}

#[test]
fn no_job_is_lost_when_nats_server_restarts_mid_run() {
    let mut nats = Nats::start();
    let c = nats.coordinator(KEYFRAMES, true, "", false);
    let _w = nats.worker("w", KEYFRAMES, "", false);
    assert!(eventually(Duration::from_secs(30), || done_by(&c).len() == 1));
    let names: Vec<String> = (0..80).map(|i| format!("restart{i:02}.bmp")).collect();
    drop_images(&c, &names);
    assert!(
        eventually(Duration::from_secs(60), || indexed(&c) >= 5),
        "nothing indexed before the restart"
    );
    let before = indexed(&c);
    nats.restart();
    c.wait_idle(180);
    println!("{before} of 80 indexed when nats-server restarted");
    assert!(before < 80, "the restart came too late to test anything");
    assert_eq!(indexed(&c), 80, "{}", c.log());
    assert_eq!(c.json(&["status"])["files"]["failed"], 0);
    assert_eq!(files_named(&c, "restart42").len(), 1);
}

#[test]
fn a_file_that_kills_every_worker_fails_after_the_maximum_deliveries() {
    let nats = Nats::start();
    let c = nats.coordinator(KEYFRAMES, true, "max_deliver = 2\n", false);
    // vxd (built with fault injection) aborts on a file named vxd-abort…:
    // each worker it reaches dies. Three workers, two deliveries: the third
    // is alive to pull, which is when the server gives the job up. One job
    // at a time each, so the poison takes no other file with it.
    let workers: Vec<Daemon> = ["a", "b", "c"]
        .iter()
        .map(|n| {
            nats.worker(
                n,
                "plugins = ['keyframes']\njobs = 1",
                "max_deliver = 2\n",
                false,
            )
        })
        .collect();
    assert!(eventually(Duration::from_secs(30), || done_by(&c).len() == 3));
    drop_images(
        &c,
        &["vxd-abort-poison.bmp".to_owned(), "fine.bmp".to_owned()],
    );
    c.wait_idle(120);
    let status = c.json(&["status"]);
    let failed = status["failed_files"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{status}");
    let reason = failed[0]["reason"].as_str().unwrap();
    println!("poison: {reason}");
    assert!(
        failed[0]["path"]
            .as_str()
            .unwrap()
            .ends_with("vxd-abort-poison.bmp")
    );
    assert!(reason.contains("failed on 2 workers"), "{reason}");
    let dead = workers.iter().filter(|w| !process_alive(w.pid())).count();
    assert_eq!(dead, 2, "each delivery killed its worker");
    assert_eq!(files_named(&c, "fine").len(), 1);
}

#[test]
fn a_worker_without_the_path_gets_the_file_from_the_object_store() {
    let nats = Nats::start();
    let c = nats.coordinator(KEYFRAMES, false, "", false);
    let w = nats.worker("far", KEYFRAMES, "", false);
    assert!(eventually(Duration::from_secs(30), || done_by(&c).len() == 1));
    let names: Vec<String> = (0..5).map(|i| format!("remote{i}.bmp")).collect();
    let aside = c.root.path().join("aside");
    std::fs::create_dir_all(&aside).unwrap();
    make_images(&aside, &names);
    // The same content twice: stored once if both are in flight at once.
    std::fs::copy(aside.join("remote0.bmp"), aside.join("remote0-copy.bmp")).unwrap();
    std::fs::rename(&aside, c.media.join("drop")).unwrap();
    c.wait_idle(60);
    assert_eq!(indexed(&c), 6, "{}\n{}", c.log(), w.log());
    let done = done_by(&c);
    assert!(
        done == [("far".to_owned(), 6)] || done == [("far".to_owned(), 5)],
        "a job each, or the copy's results reused: {done:?}"
    );
    // The worker's copies are gone, and the coordinator holds the
    // thumbnails its index refers to.
    let inbox = w.root.path().join("state/cluster-inbox");
    let left = std::fs::read_dir(&inbox).map_or(0, |d| d.count());
    assert_eq!(left, 0, "files left in {}", inbox.display());
    assert!(
        (5..=6).contains(&c.thumbnail_mtimes().len()),
        "the pictures' thumbnails, here"
    );
    assert_eq!(w.thumbnail_mtimes().len(), 0, "and not left on the worker");
}

#[test]
fn vxd_starts_while_nats_is_down_and_works_once_it_is_up() {
    let mut nats = Nats::not_yet();
    let c = nats.coordinator(KEYFRAMES, true, "", false);
    let _w = nats.worker("w", KEYFRAMES, "", false);
    // Both answer vxctl meanwhile, and say what they wait for.
    assert_eq!(cluster_status(&c)["connected"], false);
    let text = String::from_utf8(c.vxctl(&["status"]).stdout).unwrap();
    assert!(text.contains("waiting for NATS"), "{text}");
    drop_images(&c, &["early.bmp".to_owned()]);
    std::thread::sleep(Duration::from_secs(1));
    nats.come_up();
    c.wait_idle(60);
    assert_eq!(cluster_status(&c)["connected"], true);
    assert_eq!(files_named(&c, "early").len(), 1, "{}", c.log());
}
