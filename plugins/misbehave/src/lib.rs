//! `misbehave`: a fault injector that stands in for a broken model, so tests
//! can check that vxd survives every way a plugin host can fail. It is only
//! compiled into `vx-plugin-host` with the `misbehave` cargo feature.
//!
//! Per file, by a word in the file's name:
//!
//! | word | what the host does |
//! |---|---|
//! | `segv` | dies of SIGSEGV |
//! | `abort` | dies of SIGABRT |
//! | `panic` | panics inside the plugin |
//! | `exit` | exits with status 42 |
//! | `hang` | never answers |
//! | `oom` | allocates without bound until its memory limit stops it |
//! | `garbage` | writes bytes that are not a vx frame onto the socket |
//! | `oversize` | announces a frame over the size cap |
//! | `slow` | answers normally after 3 s |
//! | `trickle` | sends a byte every 0.5 s for 30 s, never a whole frame |
//! | `hostile` | answers with what no plugin should send: times that are NaN, infinite, negative or reversed, thousands of labels, megabytes of text, terminal escapes, thumbnails outside its folder |
//! | `escape` | tries to get out of its confinement (see [`escape`]) and answers with one label per attempt that worked, or `escape-blocked` |
//!
//! Any other file gets one segment labelled `misbehave-ok`.
//!
//! Per host, by `VX_MISBEHAVE` (inherited from vxd): `die-before-hello`,
//! `silent-before-hello`, `wrong-protocol`. `VX_MISBEHAVE_VERSION` sets the
//! version it reports (default 1).

use std::io::Write;
use std::os::fd::FromRawFd;

use vx_plugin_api::{JobInput, Plugin};
use vx_plugin_api::{Needs, PluginError, PluginOutput, SegmentResult};
use vx_plugin_protocol::PROTOCOL_VERSION;

pub struct Misbehave {
    hello_protocol: u32,
    version: String,
}

impl Misbehave {
    /// Applies the per-host misbehaviour from `VX_MISBEHAVE`; may never return.
    pub fn from_env() -> Self {
        let mode = std::env::var("VX_MISBEHAVE").unwrap_or_default();
        match mode.as_str() {
            "die-before-hello" => std::process::exit(3),
            "silent-before-hello" => loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            },
            _ => {}
        }
        let hello_protocol = if mode == "wrong-protocol" {
            PROTOCOL_VERSION + 1000
        } else {
            PROTOCOL_VERSION
        };
        // Tests bump the version to check that only this plugin re-runs.
        let version = std::env::var("VX_MISBEHAVE_VERSION").unwrap_or_else(|_| "1".into());
        Self {
            hello_protocol,
            version,
        }
    }
}

impl Plugin for Misbehave {
    fn name(&self) -> &str {
        "misbehave"
    }

    fn version(&self) -> &str {
        &self.version
    }

    fn hello_protocol(&self) -> u32 {
        self.hello_protocol
    }

    fn needs(&self) -> Needs {
        Needs {
            audio: true,
            ..Needs::frames(640)
        }
    }

    fn process(&mut self, input: &JobInput<'_>) -> Result<PluginOutput, PluginError> {
        let name = input
            .job
            .path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        let has = |w: &str| name.contains(w);
        if has("segv") {
            // SAFETY: restoring the default action and raising a signal.
            unsafe {
                libc::signal(libc::SIGSEGV, libc::SIG_DFL);
                libc::raise(libc::SIGSEGV);
            }
        } else if has("abort") {
            std::process::abort();
        } else if has("panic") {
            panic!("misbehave: asked to panic by {name}");
        } else if has("exit") {
            std::process::exit(42);
        } else if has("hang") {
            loop {
                std::thread::sleep(std::time::Duration::from_secs(3600));
            }
        } else if has("oom") {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![1u8; 64 << 20]);
            }
        } else if has("garbage") {
            write_to_daemon(b"\x00\xffthis is not a vx frame\xde\xad\xbe\xef");
        } else if has("slow") {
            std::thread::sleep(std::time::Duration::from_secs(3));
        } else if has("trickle") {
            for byte in vx_wire::MAGIC.iter().cycle().take(60) {
                write_to_daemon(&[*byte]);
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
        } else if has("escape") {
            return Ok(escape(input.job));
        } else if has("hostile") {
            return Ok(hostile(input.job.duration_s.unwrap_or(0.0)));
        } else if has("oversize") {
            let mut header = vx_wire::MAGIC.to_vec();
            header.extend_from_slice(&(vx_wire::MAX_FRAME_LEN + 1).to_le_bytes());
            write_to_daemon(&header);
        }
        Ok(PluginOutput {
            segments: vec![SegmentResult {
                end_s: input.job.duration_s.unwrap_or(0.0),
                labels: vec!["misbehave-ok".into()],
                ..Default::default()
            }],
        })
    }
}

/// Tries what a confined host must not manage, and says what worked: one
/// label per escape (`escape-wrote:<place>`, `escape-socket:<family>`,
/// `escape-connected`) with details in the text, or only `escape-blocked`.
///
/// It writes a file beside the media file (`media`), into the cache, its
/// artefact folder's parent (`cache`), into the state dir as the tests lay
/// it out, beside the cache (`state`), and into the temp dir (`tmp`), and
/// removes any it could make. It opens IPv4, IPv6 and netlink sockets, and
/// connects to 127.0.0.1 on the port in `VX_MISBEHAVE_ESCAPE_PORT`, if set.
fn escape(job: &vx_plugin_protocol::Job) -> PluginOutput {
    let name = format!("vx-escape-{}", std::process::id());
    let targets = [
        ("media", job.path.with_file_name(&name)),
        ("cache", job.artefact_dir.join("..").join(&name)),
        ("state", job.artefact_dir.join("../../state").join(&name)),
        ("tmp", std::env::temp_dir().join(&name)),
    ];
    let mut escaped = vec![];
    let mut text = String::new();
    for (place, path) in targets {
        if std::fs::write(&path, b"escaped").is_ok() {
            let _ = std::fs::remove_file(&path);
            escaped.push(format!("escape-wrote:{place}"));
            text += &format!("wrote {}\n", path.display());
        }
    }
    for (family, kind, label) in [
        (libc::AF_INET, libc::SOCK_STREAM, "inet"),
        (libc::AF_INET6, libc::SOCK_STREAM, "inet6"),
        (libc::AF_NETLINK, libc::SOCK_RAW, "netlink"),
    ] {
        // SAFETY: socket takes plain integers.
        let fd = unsafe { libc::socket(family, kind | libc::SOCK_CLOEXEC, 0) };
        if fd >= 0 {
            // SAFETY: closing the fd just made.
            unsafe { libc::close(fd) };
            escaped.push(format!("escape-socket:{label}"));
        }
    }
    let port = std::env::var("VX_MISBEHAVE_ESCAPE_PORT").ok();
    if let Some(port) = port.and_then(|p| p.parse::<u16>().ok()) {
        match std::net::TcpStream::connect(("127.0.0.1", port)) {
            Ok(_) => {
                escaped.push("escape-connected".into());
                text += &format!("connected to 127.0.0.1:{port}\n");
            }
            Err(e) => text += &format!("connect: {e}\n"),
        }
    }
    if escaped.is_empty() {
        escaped.push("escape-blocked".into());
    }
    PluginOutput {
        segments: vec![SegmentResult {
            end_s: job.duration_s.unwrap_or(0.0),
            labels: escaped,
            text,
            ..Default::default()
        }],
    }
}

/// Everything a reply can get wrong at once.
fn hostile(duration_s: f64) -> PluginOutput {
    let bad = |start_s: f64, end_s: f64| SegmentResult {
        start_s,
        end_s,
        labels: vec!["misbehave-bad-time".into()],
        ..Default::default()
    };
    let mut segments = vec![
        bad(f64::NAN, 1.0),
        bad(0.0, f64::INFINITY),
        bad(-5.0, 1.0),
        bad(3.0, 1.0),
        SegmentResult {
            end_s: duration_s,
            text: format!("\x1b]0;owned\x07\x1b[31mred{}", "word ".repeat(400_000)),
            labels: (0..5000).map(|i| format!("misbehave-label-{i}")).collect(),
            speaker: Some("\x1b[2Jspeaker".into()),
            thumbnail: Some("/etc/passwd".into()),
            ..Default::default()
        },
    ];
    segments.extend((0..20_000).map(|i| SegmentResult {
        start_s: 0.0,
        end_s: duration_s,
        labels: vec![format!("misbehave-many-{i}")],
        thumbnail: Some(format!("../../escape-{i}.jpg").into()),
        ..Default::default()
    }));
    PluginOutput { segments }
}

/// Writes raw bytes onto the host's socket to vxd, behind the host loop's
/// back: the one socket among this process's fds.
fn write_to_daemon(bytes: &[u8]) {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    for e in fds.flatten() {
        let is_socket =
            std::fs::read_link(e.path()).is_ok_and(|t| t.to_string_lossy().starts_with("socket:"));
        let fd: i32 = e.file_name().to_string_lossy().parse().unwrap_or(-1);
        if is_socket && fd >= 0 {
            // SAFETY: the fd is open; ManuallyDrop keeps the host loop's socket open.
            let mut f = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
            let _ = f.write_all(bytes);
            return;
        }
    }
}
