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
    ClientHello, DaemonHello, Hit, PROTOCOL_VERSION, Reply, Request, RetryReply, RetryRequest, SearchReply,
    SearchRequest, Status,
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
    /// Show progress, plugins and failed files.
    Status {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Wait until vxd has nothing queued or in progress.
    ///
    /// Exits 0 once vxd is idle, and 3 if the timeout passes first.
    Wait {
        /// Give up after this many seconds [default: wait for ever].
        #[arg(long, value_name = "SECONDS")]
        timeout: Option<f64>,
    },
    /// Search file names, metadata and what the plugins found.
    ///
    /// All words must match. Hits inside a video carry the time range.
    Search {
        /// What to look for, e.g. `beach` or `h264 1920x1080`.
        #[arg(required = true, num_args = 1..)]
        query: Vec<String>,
        /// Print JSON: {"hits":[{path, kind, score, start_s, end_s, snippet, fields}]}.
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

fn run(args: Args) -> anyhow::Result<ExitCode> {
    let socket = match args.socket {
        Some(s) => s,
        None => vx_config::Settings::load(args.config.as_deref())?.socket,
    };
    match args.command {
        Command::Status { json } => {
            let status = Client::connect(&socket)?.status()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status);
            }
        }
        Command::Wait { timeout } => {
            let deadline = timeout.map(|t| Instant::now() + Duration::from_secs_f64(t.max(0.0)));
            let mut client = Client::connect(&socket)?;
            while !client.status()?.idle {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    eprintln!("vxctl: vxd is still busy after {:.1} s", timeout.unwrap_or(0.0));
                    return Ok(ExitCode::from(EXIT_TIMEOUT));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Command::Search { query, json, limit } => {
            let reply = Client::connect(&socket)?.search(&query.join(" "), limit)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reply)?);
            } else {
                print_hits(&reply.hits);
            }
        }
        Command::Retry { paths, all, json } => {
            let cwd = std::env::current_dir()?;
            let paths = paths.into_iter().map(|p| cwd.join(p)).collect();
            let reply = Client::connect(&socket)?.retry(RetryRequest { paths, all_failed: all })?;
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
        let hello = ClientHello { protocol: PROTOCOL_VERSION, client_version: env!("CARGO_PKG_VERSION").into() };
        write_frame(&mut conn.get_ref(), &hello).context("sending hello to vxd")?;
        let theirs: DaemonHello = read_frame(&mut conn).context("reading vxd's hello")?;
        if theirs.protocol != PROTOCOL_VERSION {
            let which = if theirs.protocol < PROTOCOL_VERSION { "older" } else { "newer" };
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

    fn search(&mut self, query: &str, limit: u32) -> anyhow::Result<SearchReply> {
        match self.call(&Request::Search(SearchRequest { query: query.to_owned(), limit }))? {
            Reply::Search(s) => Ok(s),
            other => bail!("unexpected reply from vxd: {other:?}"),
        }
    }
}

fn print_status(s: &Status) {
    let f = &s.files;
    println!("vxd {} (pid {}) — {}", s.version, s.pid, if s.idle { "idle" } else { "working" });
    for (i, w) in s.watched.iter().enumerate() {
        println!("{:<10}{}", if i == 0 { "watching" } else { "" }, w.display());
    }
    println!(
        "{:<10}{} indexed of {} seen · {} failed · {} queued · {} in progress",
        "files", f.indexed, f.seen, f.failed, f.queued, f.in_progress
    );
    let width = s.plugins.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for (i, p) in s.plugins.iter().enumerate() {
        let state = serde_json::to_value(p.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        let pid = p.pid.map_or("-".into(), |p| p.to_string());
        print!(
            "{:<10}{:<width$}  {:<8}  pid {:<7}  restarts {}  crashes {}",
            if i == 0 { "plugins" } else { "" },
            p.name,
            state,
            pid,
            p.restarts,
            p.crashes
        );
        match &p.last_error {
            Some(e) => println!("  ({e})"),
            None => println!(),
        }
    }
    for (i, ff) in s.failed_files.iter().enumerate() {
        println!("{:<10}{}  {}: {}", if i == 0 { "failed" } else { "" }, ff.path.display(), ff.plugin, ff.reason);
    }
}

fn timestamp(s: f64) -> String {
    let tenths = (s.max(0.0) * 10.0).round() as u64;
    let (h, m, sec, t) = (tenths / 36_000, tenths / 600 % 60, tenths / 10 % 60, tenths % 10);
    if h > 0 { format!("{h}:{m:02}:{sec:02}.{t}") } else { format!("{m}:{sec:02}.{t}") }
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
        println!("{:>3}. {}  [{}]{range}", i + 1, h.path.display(), h.kind);
        println!("     {}  (matched: {})", h.snippet, h.fields.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::timestamp;

    #[test]
    fn timestamps_read_like_a_player() {
        assert_eq!(timestamp(0.0), "0:00.0");
        assert_eq!(timestamp(62.55), "1:02.6");
        assert_eq!(timestamp(3723.0), "1:02:03.0");
    }
}
