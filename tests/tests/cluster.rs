//! The cluster on loopback: a real `nats-server` with JetStream, a
//! coordinator vxd and worker vxds, each a real process with its own state,
//! cache and host pools (keyframes, plus the misbehave fault injector where a
//! job must take a while).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use vx_e2e::*;

/// A `nats-server -js` on a free loopback port, its store in a temp dir.
struct Nats {
    port: u16,
    store: tempfile::TempDir,
    child: Child,
}

impl Nats {
    fn start() -> Nats {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = tempfile::tempdir().unwrap();
        let child = Self::spawn(port, store.path());
        Nats { port, store, child }
    }

    fn spawn(port: u16, store: &Path) -> Child {
        let child = Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server runs (scripts/setup.sh installs it)");
        assert!(
            eventually(Duration::from_secs(10), || {
                std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
            }),
            "nats-server never listened on {port}"
        );
        child
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGTERM) and starts it again on the same port and
    /// store, as a reboot of the NAS would.
    fn restart(&mut self) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap();
        self.child = Self::spawn(self.port, self.store.path());
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn cluster_toml(nats: &Nats, role: &str, name: &str, extra: &str) -> String {
    format!(
        "[cluster]\nnats = \"{}\"\nrole = \"{role}\"\nname = \"{name}\"\nack_wait_s = 2.0\n{extra}\n",
        nats.url()
    )
}

/// A coordinator watching its media folder; `shared` says whether workers
/// read files by path (they share this machine's disk) or get them from the
/// object store.
fn coordinator(nats: &Nats, plugins: &str, shared: bool, extra: &str) -> Daemon {
    let d = Daemon::start_with(&format!("plugins = {plugins}\n"), &[], |_| {});
    let media = d.media.clone();
    let shared = match shared {
        true => format!("shared = [{media:?}]\n"),
        false => String::new(),
    };
    std::fs::write(
        &d.config,
        std::fs::read_to_string(&d.config).unwrap()
            + &cluster_toml(nats, "coordinator", "coordinator", &(shared + extra)),
    )
    .unwrap();
    let mut d = d;
    d.restart();
    d
}

/// A worker taking `jobs` jobs at once.
fn worker(nats: &Nats, name: &str, plugins: &str, jobs: usize, extra: &str) -> Daemon {
    Daemon::start_with(
        &format!(
            "plugins = {plugins}\njobs = {jobs}\n{}",
            cluster_toml(nats, "worker", name, extra)
        ),
        &[],
        |_| {},
    )
}

fn cluster_status(d: &Daemon) -> Value {
    d.json(&["status"])["cluster"].clone()
}

/// Jobs each worker answered, by name.
fn done_by(d: &Daemon) -> Vec<(String, u64)> {
    cluster_status(d)["workers"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|w| {
            (
                w["name"].as_str().unwrap().to_owned(),
                w["done"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Puts `names` (BMP pictures) into the coordinator's folder at once.
fn drop_images(d: &Daemon, names: &[String]) {
    let aside = d.root.path().join("aside");
    std::fs::create_dir_all(&aside).unwrap();
    make_images(&aside, names);
    std::fs::rename(&aside, d.media.join("drop")).unwrap();
}

fn indexed(d: &Daemon) -> u64 {
    d.json(&["status"])["files"]["indexed"].as_u64().unwrap()
}

/// File documents in the coordinator's index whose name holds `word`.
fn files_named(d: &Daemon, word: &str) -> Vec<PathBuf> {
    d.json(&["search", word, "--mode", "text", "--limit", "1000"])["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| PathBuf::from(f["path"].as_str().unwrap()))
        .collect()
}

#[test]
fn two_workers_share_two_hundred_files_and_each_is_indexed_once() {
    let nats = Nats::start();
    let c = coordinator(&nats, "['keyframes']", true, "");
    let w1 = worker(&nats, "w1", "['keyframes']", 2, "");
    let w2 = worker(&nats, "w2", "['keyframes']", 2, "");
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
    let plugins = "['keyframes', 'misbehave']";
    let c = coordinator(&nats, plugins, true, "");
    let mut first = worker(&nats, "first", plugins, 2, "");
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
    let _second = worker(&nats, "second", plugins, 2, "");
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
    let c = coordinator(&nats, "['keyframes']", true, "");
    let _w = worker(&nats, "w", "['keyframes']", 2, "");
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
    let c = coordinator(&nats, "['keyframes']", true, "max_deliver = 2\n");
    // vxd (built with fault injection) aborts on a file named vxd-abort…:
    // each worker it reaches dies. Three workers, two deliveries: the third
    // is alive to pull, which is when the server gives the job up. One job
    // at a time each, so the poison takes no other file with it.
    let workers: Vec<Daemon> = ["a", "b", "c"]
        .iter()
        .map(|n| worker(&nats, n, "['keyframes']", 1, "max_deliver = 2\n"))
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
    let c = coordinator(&nats, "['keyframes']", false, "");
    let w = worker(&nats, "far", "['keyframes']", 2, "");
    assert!(eventually(Duration::from_secs(30), || done_by(&c).len() == 1));
    let names: Vec<String> = (0..5).map(|i| format!("remote{i}.bmp")).collect();
    drop_images(&c, &names);
    c.wait_idle(60);
    assert_eq!(indexed(&c), 5, "{}\n{}", c.log(), w.log());
    assert_eq!(done_by(&c), [("far".to_owned(), 5)]);
    // The worker's copies are gone, and the coordinator holds the
    // thumbnails its index refers to.
    let inbox = w.root.path().join("state/cluster-inbox");
    let left = std::fs::read_dir(&inbox).map_or(0, |d| d.count());
    assert_eq!(left, 0, "files left in {}", inbox.display());
    assert_eq!(
        c.thumbnail_mtimes().len(),
        5,
        "the pictures' thumbnails, here"
    );
}
