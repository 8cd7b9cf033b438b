//! `vxctl`: asks a running `vxd` what it is doing, and searches its index.
//!
//! It talks to vxd only through the control socket and `vx-ctl-protocol`; it
//! never opens the index itself. Every command has a `--json` form whose
//! fields are only ever added to, so scripts can rely on it.

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use interprocess::local_socket::{GenericFilePath, Stream, prelude::*};
use vx_ctl_protocol::{
    ClientHello, DaemonHello, FileReport, Hit, PROTOCOL_VERSION, Reply, Request, RetryReply,
    RetryRequest, SearchFilters, SearchReply, SearchRequest, Status,
};
use vx_wire::{read_frame, write_frame};

/// Exit status of `vxctl wait` when the timeout passes first.
const EXIT_TIMEOUT: u8 = 3;

#[derive(Parser)]
#[command(version, about = "Control and search vxd, the vx media indexer")]
struct Args {
    /// vxd's control socket [default: the `socket` of vxd's config, else
    /// $XDG_RUNTIME_DIR/vx/vxd.sock]
    #[arg(long, global = true, value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Read the socket path from this vxd config file.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show progress, plugins and failed files, or everything about one file.
    Status {
        /// A file to report on instead: which plugins ran, when, what they
        /// found, and any errors.
        path: Option<PathBuf>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Keep a live progress bar on screen until vxd is idle (or Ctrl-C).
        #[arg(long, conflicts_with_all = ["json", "path"])]
        watch: bool,
    },
    /// Let the files in progress finish, then start no new one.
    Pause {
        /// Print the resulting status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start indexing again after `pause`.
    Resume {
        /// Print the resulting status as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Install vxd as a systemd user service (~/.config/systemd/user/vxd.service).
    InstallService {
        /// The vxd binary the service runs [default: the vxd beside this vxctl].
        #[arg(long, value_name = "PATH")]
        vxd: Option<PathBuf>,
        /// Print the unit instead of writing it.
        #[arg(long)]
        print: bool,
    },
    /// Wait until vxd has nothing queued or in progress.
    ///
    /// Exits 0 once vxd is idle, and 3 if the timeout passes first.
    Wait {
        /// Give up after this many seconds [default: wait for ever].
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<f64>,
    },
    /// Search file names, metadata and what the plugins found: objects
    /// (`bus`, `dog`), faces, text read on screen.
    ///
    /// All words must match; `"exact phrase"` in quotes matches the phrase.
    /// Hits inside a video carry the time range. The filters narrow the hits;
    /// with filters alone, everything that passes them is listed.
    #[command(arg_required_else_help = true)]
    Search {
        /// What to look for, e.g. `bus`, `"q3 roadmap"` or `h264 1920x1080`.
        #[arg(num_args = 0..)]
        query: Vec<String>,
        /// Only hits with this label, exactly (`person`, `bus`, `dining table`,
        /// `face`, `text`, `scene`); repeat for several.
        #[arg(long, value_name = "NAME")]
        label: Vec<String>,
        /// Only hits where this was found; repeat for several.
        #[arg(long, value_enum)]
        has: Vec<Has>,
        /// Only files of this kind.
        #[arg(long, value_enum)]
        kind: Option<Kind>,
        /// Print JSON: {"hits":[{path, kind, score, start_s, end_s, snippet,
        /// highlights, fields, labels, faces, plugin}]}.
        #[arg(long)]
        json: bool,
        /// At most this many hits.
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Index files again although they are unchanged, e.g. after a plugin
    /// failed on them. Failed files are otherwise not retried until they change.
    Retry {
        /// Files to index again.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        paths: Vec<PathBuf>,
        /// Every file listed under failed files in `vxctl status`.
        #[arg(long)]
        all: bool,
        /// Print JSON: {"queued":[paths], "refused":[[path, why]]}.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vxctl: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The hardened user unit, with `%h/.local/bin/vxd` as the placeholder binary.
const UNIT_TEMPLATE: &str = include_str!("../../systemd/vxd.service");

fn install_service(vxd: Option<PathBuf>, print: bool) -> anyhow::Result<()> {
    let vxd = match vxd {
        Some(p) => p,
        None => std::env::current_exe()?.with_file_name("vxd"),
    };
    let vxd = vxd
        .canonicalize()
        .with_context(|| format!("no vxd at {}", vxd.display()))?;
    let unit = UNIT_TEMPLATE.replace(
        "ExecStart=%h/.local/bin/vxd",
        &format!("ExecStart={}", vxd.display()),
    );
    if print {
        print!("{unit}");
        return Ok(());
    }
    let config_home = match std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from) {
        Some(p) if p.is_absolute() => p,
        _ => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".config"),
    };
    let dir = config_home.join("systemd/user");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("vxd.service");
    std::fs::write(&path, unit).with_context(|| format!("cannot write {}", path.display()))?;
    println!("wrote {}", path.display());
    if !config_home.join("vx/vxd.toml").exists() {
        println!(
            "next, say what to index: {} --print-config > {} and set `watch`",
            vxd.display(),
            config_home.join("vx/vxd.toml").display()
        );
    }
    println!("then: systemctl --user daemon-reload && systemctl --user enable --now vxd");
    Ok(())
}

fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Command::InstallService { vxd, print } = args.command {
        install_service(vxd, print)?;
        return Ok(ExitCode::SUCCESS);
    }
    let socket = match args.socket {
        Some(s) => s,
        None => vx_config::Settings::load(args.config.as_deref())?.socket,
    };
    match args.command {
        Command::Status {
            path: Some(path),
            json,
            ..
        } => {
            let path = std::env::current_dir()?.join(path);
            let report = Client::connect(&socket)?.file(path)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print_file(&report);
            }
        }
        Command::Status { watch: true, .. } => watch_progress(&mut Client::connect(&socket)?)?,
        Command::Status { json, .. } => {
            let status = Client::connect(&socket)?.status()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status);
            }
        }
        Command::InstallService { .. } => unreachable!("handled before connecting"),
        Command::Pause { json } | Command::Resume { json } => {
            let pause = matches!(args.command, Command::Pause { .. });
            let req = if pause {
                Request::Pause
            } else {
                Request::Resume
            };
            let Reply::Status(status) = Client::connect(&socket)?.call(&req)? else {
                bail!("unexpected reply from vxd")
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
                return Ok(ExitCode::SUCCESS);
            }
            let busy = status.files.in_progress;
            match (pause, busy) {
                (true, 0) => println!("paused"),
                (true, n) => println!("paused; {n} file(s) in progress will finish"),
                (false, _) => println!("resumed: {} file(s) queued", status.files.queued),
            }
        }
        Command::Wait { timeout } => {
            let deadline = timeout.map(|t| Instant::now() + Duration::from_secs_f64(t.max(0.0)));
            let mut client = Client::connect(&socket)?;
            while !client.status()?.idle {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    eprintln!(
                        "vxctl: vxd is still busy after {:.1} s",
                        timeout.unwrap_or(0.0)
                    );
                    return Ok(ExitCode::from(EXIT_TIMEOUT));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Command::Search {
            query,
            label,
            has,
            kind,
            json,
            limit,
        } => {
            let filters = SearchFilters {
                labels: label,
                has: has.iter().map(|h| h.as_str().to_owned()).collect(),
                kind: kind.map(|k| k.as_str().to_owned()),
            };
            let reply = Client::connect(&socket)?.search(SearchRequest {
                query: query.join(" "),
                limit,
                filters,
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                print_hits(&reply.hits);
            }
        }
        Command::Retry { paths, all, json } => {
            let cwd = std::env::current_dir()?;
            let paths = paths.into_iter().map(|p| cwd.join(p)).collect();
            let reply = Client::connect(&socket)?.retry(RetryRequest {
                paths,
                all_failed: all,
            })?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                println!("queued {} file(s) for indexing", reply.queued.len());
                for (p, why) in &reply.refused {
                    eprintln!("vxctl: not queued: {}: {why}", p.display());
                }
            }
            if !reply.refused.is_empty() {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

struct Client {
    conn: BufReader<Stream>,
}

impl Client {
    fn connect(socket: &Path) -> anyhow::Result<Self> {
        if !socket.exists() {
            bail!("vxd is not running (no socket at {})", socket.display());
        }
        let name = socket.to_fs_name::<GenericFilePath>()?;
        let conn = Stream::connect(name).map_err(|e| match e.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                anyhow::anyhow!("vxd is not running (stale socket at {})", socket.display())
            }
            _ => anyhow::anyhow!("cannot connect to vxd at {}: {e}", socket.display()),
        })?;
        conn.set_recv_timeout(Some(Duration::from_secs(30)))?;
        let mut conn = BufReader::new(conn);
        let hello = ClientHello {
            protocol: PROTOCOL_VERSION,
            client_version: env!("CARGO_PKG_VERSION").into(),
        };
        write_frame(&mut conn.get_ref(), &hello).context("sending hello to vxd")?;
        let theirs: DaemonHello = read_frame(&mut conn).context("reading vxd's hello")?;
        if theirs.protocol != PROTOCOL_VERSION {
            let which = if theirs.protocol < PROTOCOL_VERSION {
                "older"
            } else {
                "newer"
            };
            bail!(
                "vxd {} (pid {}) is {which} than vxctl {}: it speaks control protocol {}, vxctl speaks {}; \
                 restart vxd or use the matching vxctl",
                theirs.daemon_version,
                theirs.pid,
                env!("CARGO_PKG_VERSION"),
                theirs.protocol,
                PROTOCOL_VERSION
            );
        }
        Ok(Self { conn })
    }

    fn call(&mut self, req: &Request) -> anyhow::Result<Reply> {
        write_frame(&mut self.conn.get_ref(), req).context("sending request to vxd")?;
        match read_frame(&mut self.conn).context("reading vxd's reply")? {
            Reply::Error(e) => bail!("vxd: {e}"),
            reply => Ok(reply),
        }
    }

    fn status(&mut self) -> anyhow::Result<Status> {
        match self.call(&Request::Status)? {
            Reply::Status(s) => Ok(s),
            other => bail!("unexpected reply from vxd: {other:?}"),
        }
    }

    fn retry(&mut self, req: RetryRequest) -> anyhow::Result<RetryReply> {
        match self.call(&Request::Retry(req))? {
            Reply::Retry(r) => Ok(r),
            other => bail!("unexpected reply from vxd: {other:?}"),
        }
    }

    fn file(&mut self, path: PathBuf) -> anyhow::Result<FileReport> {
        match self.call(&Request::File(path))? {
            Reply::File(r) => Ok(r),
            other => bail!("unexpected reply from vxd: {other:?}"),
        }
    }

    fn search(&mut self, req: SearchRequest) -> anyhow::Result<SearchReply> {
        match self.call(&Request::Search(req))? {
            Reply::Search(s) => Ok(s),
            other => bail!("unexpected reply from vxd: {other:?}"),
        }
    }
}

fn print_status(s: &Status) {
    let f = &s.files;
    let mood = if s.paused {
        "paused"
    } else if s.idle {
        "idle"
    } else {
        "working"
    };
    println!("vxd {} (pid {}) — {mood}", s.version, s.pid);
    let row = |label: &str, text: String| println!("{label:<10}{text}");
    for (i, w) in s.watched.iter().enumerate() {
        row(
            if i == 0 { "watching" } else { "" },
            w.display().to_string(),
        );
    }
    let done = f.done;
    let pct = if f.seen > 0 {
        100.0 * done.min(f.seen) as f64 / f.seen as f64
    } else {
        100.0
    };
    row(
        "files",
        format!(
            "{done} of {} done ({pct:.0} %) · {} indexed · {} failed · {} queued · {} in progress",
            f.seen, f.indexed, f.failed, f.queued, f.in_progress
        ),
    );
    if let (Some(rate), Some(eta)) = (s.files_per_min, s.eta_s) {
        row(
            "speed",
            format!("{rate:.1} files/min · about {} left", duration(eta)),
        );
    }
    if f.reused > 0 {
        row(
            "reused",
            format!(
                "{} file(s) matched indexed content (renames, copies)",
                f.reused
            ),
        );
    }
    for (i, c) in s.current.iter().enumerate() {
        let what = c.plugin.as_deref().unwrap_or("decoding");
        row(
            if i == 0 { "now" } else { "" },
            format!("{what}: {}", c.path.display()),
        );
    }
    row("index", bytes(s.index_bytes));
    let width = s.plugins.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for (i, p) in s.plugins.iter().enumerate() {
        let state = serde_json::to_value(p.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let pid = p.pid.map_or("-".into(), |p| p.to_string());
        let err = p
            .last_error
            .as_ref()
            .map(|e| format!("  ({e})"))
            .unwrap_or_default();
        row(
            if i == 0 { "plugins" } else { "" },
            format!(
                "{:<width$}  {state:<8}  pid {pid:<7}  restarts {}  crashes {}{err}",
                p.name, p.restarts, p.crashes
            ),
        );
    }
    for (i, w) in s.warnings.iter().enumerate() {
        row(if i == 0 { "warnings" } else { "" }, w.clone());
    }
    for (i, ff) in s.failed_files.iter().enumerate() {
        row(
            if i == 0 { "failed" } else { "" },
            format!("{}  {}: {}", ff.path.display(), ff.plugin, ff.reason),
        );
    }
}

fn print_file(r: &FileReport) {
    println!("{}", r.path.display());
    println!("{:<10}{}", "state", r.state);
    if let Some(i) = &r.indexed {
        let mut what = vec![i.kind.clone()];
        what.extend(i.codecs.iter().cloned());
        what.extend(i.resolution.iter().cloned());
        if let Some(d) = i.duration_s {
            what.push(duration(d));
        }
        println!("{:<10}{}", "media", what.join(" · "));
        println!(
            "{:<10}{} bytes, content {}",
            "file",
            i.size,
            &i.content[..i.content.len().min(16)]
        );
        println!(
            "{:<10}{} s since the epoch, by {}",
            "indexed", i.indexed_at, i.plugin_set
        );
        for (n, (plugin, count)) in i.segments.iter().enumerate() {
            println!(
                "{:<10}{plugin}: {count} segment(s)",
                if n == 0 { "results" } else { "" }
            );
        }
        if !i.labels.is_empty() {
            println!("{:<10}{}", "found", i.labels.join(", "));
        }
        if i.faces > 0 {
            println!("{:<10}up to {} at once", "faces", i.faces);
        }
        if i.transcript_chars > 0 {
            println!(
                "{:<10}{} characters, {} speaker(s)",
                "speech", i.transcript_chars, i.speakers
            );
        }
    }
    for (n, f) in r.failures.iter().enumerate() {
        println!(
            "{:<10}{}: {}",
            if n == 0 { "failed" } else { "" },
            f.plugin,
            f.reason
        );
    }
}

/// A live bar of files done out of seen, with the current file, until idle.
fn watch_progress(client: &mut Client) -> anyhow::Result<()> {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} files  {msg}")
            .expect("valid template")
            .progress_chars("█▉░"),
    );
    loop {
        let s = client.status()?;
        bar.set_length(s.files.seen);
        bar.set_position(s.files.done.min(s.files.seen));
        let eta = s
            .eta_s
            .map(|e| format!("  ~{} left", duration(e)))
            .unwrap_or_default();
        let now = s
            .current
            .first()
            .map(|c| c.path.display().to_string())
            .unwrap_or_default();
        bar.set_message(format!(
            "{}{eta}  {now}",
            if s.paused { "paused" } else { "" }
        ));
        if s.idle {
            bar.finish_with_message(format!("idle; {} failed", s.files.failed));
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// "812 B", "45.3 kB", "1.2 GB".
fn bytes(n: u64) -> String {
    let units = ["B", "kB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < units.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", units[u])
    }
}

/// "42 s", "3 min 5 s", "2 h 10 min".
fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s / 60 % 60),
    }
}

fn timestamp(s: f64) -> String {
    let tenths = (s.max(0.0) * 10.0).round() as u64;
    let (h, m, sec, t) = (
        tenths / 36_000,
        tenths / 600 % 60,
        tenths / 10 % 60,
        tenths % 10,
    );
    if h > 0 {
        format!("{h}:{m:02}:{sec:02}.{t}")
    } else {
        format!("{m}:{sec:02}.{t}")
    }
}

fn print_hits(hits: &[Hit]) {
    if hits.is_empty() {
        println!("no hits");
        return;
    }
    for (i, h) in hits.iter().enumerate() {
        let range = match (h.start_s, h.end_s) {
            (Some(a), Some(b)) => format!("  {}–{}", timestamp(a), timestamp(b)),
            _ => String::new(),
        };
        let faces = match h.faces {
            0 => String::new(),
            1 => "  1 face".into(),
            n => format!("  {n} faces"),
        };
        let speaker = h
            .speaker
            .as_ref()
            .map(|s| format!("  {s}"))
            .unwrap_or_default();
        println!(
            "{:>3}. {}  [{}]{range}{faces}{speaker}",
            i + 1,
            h.path.display(),
            h.kind
        );
        let matched = if h.fields.is_empty() {
            String::new()
        } else {
            format!("  (matched: {})", h.fields.join(", "))
        };
        println!("     {}{matched}", highlighted(&h.snippet, &h.highlights));
    }
}

/// `snippet` with its matched ranges in bold on a terminal, else as is.
fn highlighted(snippet: &str, ranges: &[[u32; 2]]) -> String {
    use std::io::IsTerminal;
    if !std::io::stdout().is_terminal() {
        return snippet.to_owned();
    }
    let mut out = String::with_capacity(snippet.len() + ranges.len() * 8);
    let mut at = 0;
    for &[a, b] in ranges {
        let (a, b) = (a as usize, b as usize);
        let (Some(before), Some(word)) = (snippet.get(at..a), snippet.get(a..b)) else {
            continue;
        };
        out.push_str(before);
        out.push_str("\x1b[1m");
        out.push_str(word);
        out.push_str("\x1b[0m");
        at = b;
    }
    out.push_str(snippet.get(at..).unwrap_or_default());
    out
}

/// `vxctl search --has`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Has {
    /// A face is visible.
    Faces,
    /// Words were read on screen or heard.
    Text,
    /// Someone speaks.
    Speech,
}

impl Has {
    fn as_str(self) -> &'static str {
        match self {
            Has::Faces => "faces",
            Has::Text => "text",
            Has::Speech => "speech",
        }
    }
}

/// `vxctl search --kind`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Kind {
    Video,
    Audio,
    Image,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Video => "video",
            Kind::Audio => "audio",
            Kind::Image => "image",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::timestamp;

    #[test]
    fn sizes_read_like_a_person_says_them() {
        assert_eq!(super::bytes(812), "812 B");
        assert_eq!(super::bytes(45_300), "45.3 kB");
        assert_eq!(super::bytes(1_234_000_000), "1.2 GB");
    }

    #[test]
    fn durations_read_like_a_person_says_them() {
        assert_eq!(super::duration(42.4), "42 s");
        assert_eq!(super::duration(185.0), "3 min 5 s");
        assert_eq!(super::duration(7800.0), "2 h 10 min");
    }

    #[test]
    fn timestamps_read_like_a_player() {
        assert_eq!(timestamp(0.0), "0:00.0");
        assert_eq!(timestamp(62.55), "1:02.6");
        assert_eq!(timestamp(3723.0), "1:02:03.0");
    }
}
