//! The command line: clap definitions and the parsers of dates, durations and
//! path prefixes that turn `vxctl search` flags into a [`SearchRequest`].

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};
use vx_ctl_protocol::{SearchFilters, SearchMode, SearchRequest};
use vx_search_flags::{absolute_prefix, check_ranges, parse_date, parse_duration};

#[derive(Parser)]
#[command(version, about = "Control and search vxd, the vx media indexer")]
pub struct Args {
    /// vxd's control socket [default: the `socket` of vxd's config, else
    /// $XDG_RUNTIME_DIR/vx/vxd.sock]
    #[arg(long, global = true, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Read the socket path from this vxd config file.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
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
    /// Print the address of vxd's search page, with its token, and open it
    /// in a browser where there is one.
    ///
    /// The page lists the matching moments with their thumbnails, plays a
    /// video from the moment clicked, and shows what `status` shows. It is
    /// served on 127.0.0.1 only (`page_port` in vxd's config); the token in
    /// the address is the key, so do not share it.
    Open {
        /// Only print the address.
        #[arg(long)]
        no_browser: bool,
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
        /// Give up after this many seconds (`inf`: never) [default: wait
        /// for ever].
        #[arg(long, value_name = "SECONDS", value_parser = parse_timeout)]
        timeout: Option<Duration>,
    },
    /// Search file names, metadata and what the plugins found: objects
    /// (`bus`, `dog`), faces, text read on screen, words spoken.
    ///
    /// Results are grouped per file: each file once, best first, with its
    /// best moments (time ranges inside a video or recording) and a command
    /// that plays each; --segments lists the moments on their own instead.
    /// The filters narrow the results; with filters alone, everything that
    /// passes them is listed.
    #[command(arg_required_else_help = true, after_long_help = SEARCH_AFTER_HELP)]
    Search(SearchArgs),
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

const SEARCH_AFTER_HELP: &str = "\
Play commands, printed under each moment:
  mpv --start=SECONDS -- 'PATH'   a moment of a video or recording
  mpv -- 'PATH'                   a whole video or recording
  xdg-open 'PATH'                 an image
The path is quoted for bash, zsh and sh, so the command pastes as is; a name
with control characters or bytes that are not UTF-8 is written $'...' with
\\xHH escapes.

JSON (--json), grouped per file:
  {\"mode\", \"warnings\": [...], \"files\": [{\"path\", \"kind\", \"time\",
   \"duration_s\", \"score\", \"moments\": [HIT...]}]}
with --segments:
  {\"mode\", \"warnings\": [...], \"hits\": [HIT...]}
HIT: {path, kind, score, start_s, end_s, snippet, fields, highlights, labels,
faces, plugin, speaker, similarity, time, duration_s, play}. \"mode\" is the
ranking vxd used, \"time\" when the file was made (seconds since the Unix
epoch), \"score\" of a file its best moment's, \"play\" the command above. A
path that is not UTF-8 has U+FFFD in \"path\"; \"play\" keeps its bytes.";

#[derive(clap::Args)]
pub struct SearchArgs {
    /// What to look for, e.g. `bus`, `"q3 roadmap"`, `h264 1920x1080` or
    /// `someone talking about the budget`.
    #[arg(num_args = 0..)]
    pub query: Vec<String>,
    /// How results are ranked.
    #[arg(long, value_enum, default_value_t = Mode::Hybrid)]
    pub mode: Mode,
    /// Only hits with this label, exactly (`person`, `bus`, `dining table`,
    /// `face`, `text`, `scene`); repeat for several.
    #[arg(long, value_name = "NAME")]
    pub label: Vec<String>,
    /// Only hits where this was found; repeat for several.
    #[arg(long, value_enum)]
    pub has: Vec<Has>,
    /// Only files of this kind.
    #[arg(long, value_enum)]
    pub kind: Option<Kind>,
    /// Only files under this folder, or whose path starts with this; a
    /// relative path is taken from the current folder.
    #[arg(long, value_name = "PREFIX")]
    pub path: Option<PathBuf>,
    /// Only files made at or after this local time: `2024`, `2024-06`,
    /// `2024-06-01`, `"2024-06-01 14:30"`, `2024-06-01T14:30:05`, `@UNIX_SECONDS`,
    /// or `7d`, `2w`, `3m`, `1y` ago (d days, w weeks, m months, y years).
    ///
    /// A file's time is when it was made, per its metadata, else when it was
    /// last modified.
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub after: Option<i64>,
    /// Only files made before this local time, in the forms of --after; a
    /// date means its start: `--before 2024-06` is before 1 June 2024.
    #[arg(long, value_name = "DATE", value_parser = parse_date)]
    pub before: Option<i64>,
    /// Only files at least this long: `90`, `90s`, `5m`, `1h30m`, `1:30`,
    /// `01:02:03`. Images, which have no duration, never pass.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub min_duration: Option<f64>,
    /// Only files at most this long, in the forms of --min-duration.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub max_duration: Option<f64>,
    /// List every matching moment on its own, best first, instead of
    /// grouping them per file.
    #[arg(long)]
    pub segments: bool,
    /// Show up to this many moments of each file.
    #[arg(long, value_name = "N", default_value_t = 3, conflicts_with = "segments",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub moments: u32,
    /// At most this many files (with --segments: moments).
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    /// Print JSON instead of text; its shape is described below.
    #[arg(long)]
    pub json: bool,
}

impl SearchArgs {
    /// The request these flags ask for; relative `--path`s are taken from `cwd`.
    pub fn request(&self, cwd: &Path) -> Result<SearchRequest, String> {
        let req = SearchRequest {
            query: self.query.join(" "),
            limit: self.limit,
            filters: SearchFilters {
                labels: self.label.clone(),
                has: self.has.iter().map(|h| h.as_str().to_owned()).collect(),
                kind: self.kind.map(|k| k.as_str().to_owned()),
                path_prefix: self.path.as_deref().map(|p| absolute_prefix(cwd, p)),
                after: self.after,
                before: self.before,
                min_duration_s: self.min_duration,
                max_duration_s: self.max_duration,
            },
            mode: self.mode.into(),
            per_file: !self.segments,
            moments_per_file: self.moments,
        };
        check_ranges(&req.filters)?;
        Ok(req)
    }
}

/// `vxctl search --mode`.
#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Mode {
    /// The words themselves (BM25): every word of the query must match.
    Text,
    /// Closeness in meaning (sentence embeddings), so `a dog barking` also
    /// finds `the puppy yelps`; hits below a similarity floor are not shown.
    Semantic,
    /// Both, fused into one ranking; hits containing a "quoted phrase" of
    /// the query come first. Falls back to text when vxd cannot rank by
    /// meaning, with a warning.
    Hybrid,
}

impl From<Mode> for SearchMode {
    fn from(m: Mode) -> Self {
        match m {
            Mode::Text => SearchMode::Text,
            Mode::Semantic => SearchMode::Semantic,
            Mode::Hybrid => SearchMode::Hybrid,
        }
    }
}

/// `vxctl search --has`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Has {
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
pub enum Kind {
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

/// `--timeout`: seconds, not negative; `inf` or anything too large to wait
/// for is the longest wait there is.
fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if secs.is_nan() || secs < 0.0 {
        return Err(format!("{s:?}: give 0 or more seconds, or inf"));
    }
    Ok(Duration::try_from_secs_f64(secs).unwrap_or(Duration::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_flags_become_the_request() {
        let args = Args::try_parse_from([
            "vxctl",
            "search",
            "red",
            "bus",
            "--mode",
            "text",
            "--path",
            "clips",
            "--after",
            "@100",
            "--before",
            "@200",
            "--min-duration",
            "1:00",
            "--moments",
            "5",
        ])
        .unwrap();
        let Command::Search(s) = args.command else {
            panic!()
        };
        let req = s.request(Path::new("/m")).unwrap();
        assert_eq!(req.query, "red bus");
        assert_eq!(req.mode, SearchMode::Text);
        assert!(req.per_file);
        assert_eq!(req.moments_per_file, 5);
        assert_eq!(req.limit, 20);
        assert_eq!(
            req.filters.path_prefix.as_deref(),
            Some(Path::new("/m/clips"))
        );
        assert_eq!(
            (req.filters.after, req.filters.before),
            (Some(100), Some(200))
        );
        assert_eq!(req.filters.min_duration_s, Some(60.0));

        let args = Args::try_parse_from(["vxctl", "search", "x", "--segments"]).unwrap();
        let Command::Search(s) = args.command else {
            panic!()
        };
        let req = s.request(Path::new("/")).unwrap();
        assert!(!req.per_file);
        assert_eq!(req.mode, SearchMode::Hybrid);

        assert!(
            Args::try_parse_from(["vxctl", "search", "x", "--segments", "--moments", "2"]).is_err()
        );
        assert!(Args::try_parse_from(["vxctl", "search", "x", "--moments", "0"]).is_err());
        let e = Args::try_parse_from(["vxctl", "search", "x", "--after", "June"])
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("`June` is not a date"), "{e}");

        let args = Args::try_parse_from([
            "vxctl", "search", "x", "--after", "@200", "--before", "@200",
        ])
        .unwrap();
        let Command::Search(s) = args.command else {
            panic!()
        };
        assert!(
            s.request(Path::new("/"))
                .unwrap_err()
                .contains("is not before")
        );
    }
}
