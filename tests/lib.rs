//! Helpers for the end-to-end tests: locate the built binaries, generate real
//! media with the ffmpeg CLI, and run `vxd` in a temp dir and `vxctl` against it.

pub mod webdriver;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// `target/release` (or whichever profile built this test).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test exe path");
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>")
        .to_owned();
    assert!(
        dir.join("vxd").exists()
            && dir.join("vxctl").exists()
            && dir.join("vx-plugin-host").exists()
            && dir.join("vx-decoder").exists(),
        "binaries missing in {}: run `cargo build --release --workspace` first (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// Where setup installed models, ONNX Runtime and test photos.
pub fn installed_cache() -> PathBuf {
    vx_config::installed_cache_dir()
}

/// A real photo from a package that setup installs.
pub fn test_photo(path: &str) -> PathBuf {
    let p = if path.starts_with('/') {
        PathBuf::from(path)
    } else {
        installed_cache().join("testdata").join(path)
    };
    assert!(p.exists(), "{} missing: run scripts/setup.sh", p.display());
    p
}

/// PASCAL VOC photos with ground truth, from Debian's labelme-examples.
pub const VOC_PHOTOS: &str =
    "/usr/share/doc/labelme-examples/examples/bbox_detection/data_dataset_voc/JPEGImages";

/// Runs ffmpeg with `args`, panicking with its stderr on failure.
pub fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A video of two clearly different shots (test card, then colour bars),
/// `secs` long in total, with a sine tone.
pub fn make_video(path: &Path, secs: u32) {
    let half = (secs / 2).max(1).to_string();
    let rest = (secs - secs / 2).max(1).to_string();
    let args: &[&str] = &[
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc=size=320x240:rate=25:duration={half}"),
        "-f",
        "lavfi",
        "-i",
        &format!("smptebars=size=320x240:rate=25:duration={rest}"),
        "-f",
        "lavfi",
        "-i",
        &format!("sine=frequency=440:duration={secs}"),
        "-filter_complex",
        "[0:v][1:v]concat=n=2:v=1:a=0[v]",
        "-map",
        "[v]",
        "-map",
        "2:a",
    ];
    ffmpeg(&[args, FAST_H264, &["-c:a", "aac", path.to_str().unwrap()]].concat());
}

/// ffmpeg's output options for H.264 that every player (and browser) reads,
/// encoded fast.
pub const FAST_H264: &[&str] = &[
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-pix_fmt",
    "yuv420p",
];

pub fn make_audio(path: &Path, secs: u32) {
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &format!("sine=frequency=300:duration={secs}"),
        path.to_str().unwrap(),
    ]);
}

/// The file names of search hits (`--json`), in order.
pub fn hit_names(hits: &[Value]) -> Vec<String> {
    hits.iter()
        .map(|h| {
            Path::new(h["path"].as_str().unwrap_or_default())
                .file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

/// `text` spoken by espeak-ng (British English, slowly) into `wav`.
pub fn espeak(text: &str, wav: &Path) {
    let out = Command::new("espeak-ng")
        .args(["-v", "en-gb", "-s", "120", "-w"])
        .arg(wav)
        .arg(text)
        .output()
        .expect("espeak-ng runs (scripts/setup.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn make_image(path: &Path) {
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=400x300",
        "-frames:v",
        "1",
        path.to_str().unwrap(),
    ]);
}

/// A small image of its own (distinct bytes) under each of `names` in
/// `dir`, as 24-bit BMP: a gradient whose phase depends on the file's index.
pub fn make_images(dir: &Path, names: &[String]) {
    const W: usize = 96;
    const H: usize = 64;
    for (i, n) in names.iter().enumerate() {
        assert!(n.ends_with(".bmp"), "make_images writes BMP: {n}");
        let row = W * 3; // already a multiple of 4
        let mut b = Vec::with_capacity(54 + row * H);
        b.extend_from_slice(b"BM");
        b.extend_from_slice(&((54 + row * H) as u32).to_le_bytes());
        b.extend_from_slice(&[0; 4]);
        b.extend_from_slice(&54u32.to_le_bytes());
        b.extend_from_slice(&40u32.to_le_bytes());
        b.extend_from_slice(&(W as i32).to_le_bytes());
        b.extend_from_slice(&(H as i32).to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&24u16.to_le_bytes());
        b.extend_from_slice(&[0; 24]);
        for y in 0..H {
            for x in 0..W {
                b.extend_from_slice(&[
                    (x * 2 + i * 7) as u8,
                    (y * 3 + i * 13) as u8,
                    ((x + y) ^ i) as u8,
                ]);
            }
        }
        b[54..57].copy_from_slice(&[i as u8, (i >> 8) as u8, 77]); // distinct beyond 256 files
        std::fs::write(dir.join(n), b).unwrap();
    }
}

/// The number of open fds of `pid`.
pub fn fd_count(pid: i32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// A running vxd on its own temp dirs; killed on drop if still running.
pub struct Daemon {
    pub root: tempfile::TempDir,
    pub media: PathBuf,
    pub socket: PathBuf,
    pub config: PathBuf,
    pub env: Vec<(String, String)>,
    pub child: Child,
}

impl Daemon {
    /// Writes a config watching `root/media` (which `populate` fills first)
    /// and starts vxd on it.
    pub fn start(populate: impl FnOnce(&Path)) -> Daemon {
        Self::start_with("", &[], populate)
    }

    /// Like [`start`](Self::start), with extra config lines and environment.
    /// Its cache has no models, so only plugins without models run.
    pub fn start_with(
        extra_toml: &str,
        env: &[(&str, &str)],
        populate: impl FnOnce(&Path),
    ) -> Daemon {
        Self::launch(extra_toml, env, false, populate)
    }

    /// Like [`start_with`](Self::start_with), with the models and ONNX
    /// Runtime that setup installed.
    pub fn start_with_models(extra_toml: &str, populate: impl FnOnce(&Path)) -> Daemon {
        Self::launch(extra_toml, &[], true, populate)
    }

    pub fn launch(
        extra_toml: &str,
        env: &[(&str, &str)],
        models: bool,
        populate: impl FnOnce(&Path),
    ) -> Daemon {
        let root = tempfile::tempdir().expect("temp dir");
        if models {
            let cache = root.path().join("cache");
            std::fs::create_dir_all(&cache).unwrap();
            for dir in ["models", "onnxruntime"] {
                let installed = installed_cache().join(dir);
                assert!(
                    installed.is_dir(),
                    "{} missing: run scripts/setup.sh",
                    installed.display()
                );
                std::os::unix::fs::symlink(installed, cache.join(dir)).unwrap();
            }
        }
        let media = root.path().join("media");
        std::fs::create_dir_all(&media).unwrap();
        populate(&media);
        let socket = root.path().join("run/vxd.sock");
        let config = root.path().join("vxd.toml");
        // Tests run side by side: no search page unless a test asks for one.
        let page = match extra_toml.contains("page_port") {
            true => "",
            false => "page_port = 0\n",
        };
        std::fs::write(
            &config,
            format!(
                "watch = [{media:?}]\nstate_dir = {:?}\ncache_dir = {:?}\nsocket = {socket:?}\nsettle_ms = 300\n{page}{extra_toml}\n",
                root.path().join("state"),
                root.path().join("cache"),
            ),
        )
        .unwrap();
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let child = spawn_vxd_with(&config, root.path(), &env);
        let d = Daemon {
            root,
            media,
            socket,
            config,
            env,
            child,
        };
        d.wait_for_socket();
        d
    }

    /// Waits until vxd accepts connections: a socket file left by a killed
    /// vxd exists before the new one listens.
    fn wait_for_socket(&self) {
        let start = Instant::now();
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "vxd never listened on {}\n{}",
                self.socket.display(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops vxd with SIGTERM and starts it again on the same dirs.
    pub fn restart(&mut self) {
        let status = self.signal_and_wait(libc::SIGTERM, Duration::from_secs(15));
        assert!(
            status.success(),
            "vxd exit status {status:?}\n{}",
            self.log()
        );
        self.restart_stopped();
    }

    /// Starts vxd again after it was stopped.
    pub fn restart_stopped(&mut self) {
        self.child = spawn_vxd_with(&self.config, self.root.path(), &self.env);
        self.wait_for_socket();
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn vxctl(&self, args: &[&str]) -> Output {
        Command::new(bin_dir().join("vxctl"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("vxctl runs")
    }

    /// `vxctl … --json`, parsed; panics with stderr when vxctl fails.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut args = args.to_vec();
        args.push("--json");
        let out = self.vxctl(&args);
        assert!(
            out.status.success(),
            "vxctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("vxctl prints JSON")
    }

    pub fn wait_idle(&self, timeout_s: u32) {
        let out = self.vxctl(&["wait", "--timeout", &timeout_s.to_string()]);
        assert!(
            out.status.success(),
            "vxd not idle in {timeout_s} s: {}\nvxd's log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    pub fn search(&self, query: &str) -> Vec<Value> {
        self.json(&["search", query, "--segments", "--limit", "1000"])["hits"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The modification times of every thumbnail, sorted: unchanged means no
    /// keyframes job ran.
    pub fn thumbnail_mtimes(&self) -> Vec<std::time::SystemTime> {
        let dir = self.root.path().join("cache/thumbnails");
        let mut v: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().modified().unwrap())
            .collect();
        v.sort();
        v
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.path().join("vxd.log")).unwrap_or_default()
    }

    /// Sends `sig` and waits (bounded) for the exit status.
    pub fn signal_and_wait(&mut self, sig: i32, timeout: Duration) -> ExitStatus {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(self.pid(), sig) };
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < timeout,
                "vxd did not exit within {timeout:?} of signal {sig}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn spawn_vxd_with(config: &Path, log_dir: &Path, env: &[(String, String)]) -> Child {
    // Appended to, so that a test that restarts vxd keeps every run's log.
    let log = std::fs::File::options()
        .append(true)
        .create(true)
        .open(log_dir.join("vxd.log"))
        .unwrap();
    Command::new(bin_dir().join("vxd"))
        .arg("--config")
        .arg(config)
        .env("VX_LOG", "info,tantivy=warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("vxd starts")
}

pub fn process_alive(pid: i32) -> bool {
    // A zombie still "exists" for kill(0); look at its state instead.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
        Err(_) => false,
    }
}

/// Open fds of `pid` that are vx shared-memory segments.
pub fn segment_fds(pid: i32) -> usize {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    dir.flatten()
        .filter_map(|e| std::fs::read_link(e.path()).ok())
        .filter(|t| t.to_string_lossy().contains("memfd:vx-media"))
        .count()
}

/// The number after `key` (e.g. `"VmHWM:"`, in kB, or `"Threads:"`) in
/// `/proc/PID/status`; 0 if the process or the key is not there.
pub fn proc_status(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The most memory `pid` has held at once, in MB.
pub fn peak_rss_mb(pid: i32) -> u64 {
    proc_status(pid as u32, "VmHWM:") / 1024
}

/// Waits until `check` holds, polling; false on timeout.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    check()
}

/// Fails clearly when the host was built without the fault injector.
pub fn require_misbehave() {
    let out = Command::new(bin_dir().join("vx-plugin-host"))
        .args([
            "--plugin",
            "misbehave",
            "--socket",
            "/nonexistent/vx-test.sock",
        ])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("not built into this host"),
        "vx-plugin-host lacks the misbehave plugin: build with --features vx-plugin-host/misbehave (scripts/test.sh does)"
    );
}

/// A `nats-server -js` on a free loopback port, its store in a temp dir.
pub struct Nats {
    pub port: u16,
    store: tempfile::TempDir,
    /// `None` while it is down.
    child: Option<Child>,
}

impl Nats {
    pub fn start() -> Nats {
        let mut nats = Self::not_yet();
        nats.come_up();
        nats
    }

    /// A port and a store for a server not started yet.
    pub fn not_yet() -> Nats {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let store = tempfile::tempdir().unwrap();
        Nats {
            port,
            store,
            child: None,
        }
    }

    /// Starts the server.
    pub fn come_up(&mut self) {
        self.child = Some(Self::spawn(self.port, self.store.path()));
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

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGTERM) and starts it again on the same port and
    /// store, as a reboot of the NAS would.
    pub fn restart(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            child.wait().unwrap();
        }
        self.come_up();
    }
}

impl Nats {
    fn cluster_toml(&self, role: &str, name: &str, extra: &str) -> String {
        format!(
            "[cluster]\nnats = \"{}\"\nrole = \"{role}\"\nname = \"{name}\"\nack_wait_s = 2.0\n{extra}\n",
            self.url()
        )
    }

    /// A coordinator watching its media folder, with `config` lines and
    /// `cluster` lines in its `[cluster]` section; `shared` says whether
    /// workers read files by path (they share this machine's disk) or get
    /// them from the object store.
    pub fn coordinator(&self, config: &str, shared: bool, cluster: &str, models: bool) -> Daemon {
        let mut d = Daemon::launch(config, &[], models, |_| {});
        let shared = match shared {
            true => format!("shared = [{:?}]\n", d.media),
            false => String::new(),
        };
        let toml = std::fs::read_to_string(&d.config).unwrap();
        let cluster = self.cluster_toml("coordinator", "coordinator", &(shared + cluster));
        std::fs::write(&d.config, toml + &cluster).unwrap();
        d.restart();
        d
    }

    /// A worker called `name`, with `config` lines and `cluster` lines in
    /// its `[cluster]` section.
    pub fn worker(&self, name: &str, config: &str, cluster: &str, models: bool) -> Daemon {
        let toml = format!("{config}\n{}", self.cluster_toml("worker", name, cluster));
        Daemon::launch(&toml, &[], models, |_| {})
    }
}

/// A vxd's view of its cluster (`vxctl status --json`).
pub fn cluster_status(d: &Daemon) -> Value {
    d.json(&["status"])["cluster"].clone()
}

/// Jobs each worker answered for coordinator `d`, by name.
pub fn done_by(d: &Daemon) -> Vec<(String, u64)> {
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

/// Puts `names` (BMP pictures) into `d`'s watched folder at once.
pub fn drop_images(d: &Daemon, names: &[String]) {
    let aside = d.root.path().join("aside");
    std::fs::create_dir_all(&aside).unwrap();
    make_images(&aside, names);
    std::fs::rename(&aside, d.media.join("drop")).unwrap();
}

/// Files indexed, as status counts them.
pub fn indexed(d: &Daemon) -> u64 {
    d.json(&["status"])["files"]["indexed"].as_u64().unwrap()
}

/// File documents in `d`'s index whose name holds `word`.
pub fn files_named(d: &Daemon, word: &str) -> Vec<PathBuf> {
    d.json(&["search", word, "--mode", "text", "--limit", "1000"])["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| PathBuf::from(f["path"].as_str().unwrap()))
        .collect()
}

impl Drop for Nats {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
