//! The command line: clap definitions and the parsers of dates, durations and
//! path prefixes that turn `vxctl search` flags into a [`SearchRequest`].

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};
use vx_ctl_protocol::{SearchFilters, SearchMode, SearchRequest};

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
        if let Some((a, b)) = self.after.zip(self.before).filter(|(a, b)| a >= b) {
            return Err(format!(
                "--after {} is not before --before {}: no file can match",
                crate::render::local_time(a),
                crate::render::local_time(b)
            ));
        }
        let durations = self.min_duration.zip(self.max_duration);
        if let Some((a, b)) = durations.filter(|(a, b)| a > b) {
            return Err(format!(
                "--min-duration ({a} s) is longer than --max-duration ({b} s): no file can match"
            ));
        }
        Ok(SearchRequest {
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
        })
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

/// `p` made absolute against `cwd`, with `.` and `..` resolved by name (it
/// need not exist). A trailing `/` is kept: it says "this folder, not
/// `name*`" to a prefix match on text.
pub fn absolute_prefix(cwd: &Path, p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in cwd.join(p).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    let trailing = p.as_os_str().as_bytes().ends_with(b"/");
    if trailing && out.parent().is_some() {
        let mut s = OsString::from(out);
        s.push("/");
        out = s.into();
    }
    out
}

/// Seconds since the Unix epoch for a `--after`/`--before` value, read in
/// local time; a date without a time is its start.
pub fn parse_date(s: &str) -> Result<i64, String> {
    let s = s.trim();
    let bad = || {
        format!(
            "`{s}` is not a date: use YYYY, YYYY-MM, YYYY-MM-DD, \"YYYY-MM-DD HH:MM[:SS]\", \
             @UNIX_SECONDS, or an age like 7d, 2w, 3m, 1y"
        )
    };
    if let Some(secs) = s.strip_prefix('@') {
        return secs.parse().map_err(|_| bad());
    }
    if let Some(t) = parse_age(s) {
        return t;
    }
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t.trim_start())),
        None => (s, None),
    };
    let mut d = date.split('-');
    let year = num(d.next(), 4..=4).ok_or_else(bad)?;
    let month = match d.next() {
        Some(m) => num(Some(m), 1..=2).ok_or_else(bad)?,
        None => 1,
    };
    let day = match d.next() {
        Some(x) => num(Some(x), 1..=2).ok_or_else(bad)?,
        None => 1,
    };
    if d.next().is_some() || (time.is_some() && date.split('-').count() != 3) {
        return Err(bad());
    }
    let (hour, min, sec) = match time {
        None => (0, 0, 0),
        Some(t) => {
            let mut t = t.split(':');
            let h = num(t.next(), 1..=2).ok_or_else(bad)?;
            let m = num(t.next(), 1..=2).ok_or_else(bad)?;
            let sec = match t.next() {
                Some(x) => num(Some(x), 1..=2).ok_or_else(bad)?,
                None => 0,
            };
            if t.next().is_some() {
                return Err(bad());
            }
            (h, m, sec)
        }
    };
    if !(1..=12).contains(&month) || hour > 23 || min > 59 || sec > 59 {
        return Err(format!("`{s}` is not a valid date or time"));
    }
    let mut tm = zeroed_tm();
    tm.tm_year = year - 1900;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    let t = mktime(&mut tm).ok_or_else(|| format!("`{s}` is out of range"))?;
    // mktime rolls 31 April over to 1 May; refuse instead.
    if day < 1 || tm.tm_mday != day || tm.tm_mon != month - 1 {
        return Err(format!("`{s}` is not a valid date"));
    }
    Ok(t)
}

/// `7d`, `2w`, `3m`, `1y`: that long before now, by the local calendar.
/// `None` when `s` is not of that form.
fn parse_age(s: &str) -> Option<Result<i64, String>> {
    let unit = s.chars().last()?;
    let n: i32 = s[..s.len() - unit.len_utf8()].parse().ok()?;
    if !matches!(unit, 'd' | 'w' | 'm' | 'y') || n < 0 {
        return None;
    }
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let mut tm = local_tm(now);
    match unit {
        'd' => tm.tm_mday -= n,
        'w' => tm.tm_mday -= n.checked_mul(7)?,
        'm' => tm.tm_mon -= n,
        _ => tm.tm_year -= n,
    }
    Some(mktime(&mut tm).ok_or_else(|| format!("`{s}` ago is out of range")))
}

/// Digits only, as many as `width` allows.
fn num(s: Option<&str>, width: std::ops::RangeInclusive<usize>) -> Option<i32> {
    let s = s?;
    let ok = width.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
    ok.then(|| s.parse().ok()).flatten()
}

fn zeroed_tm() -> libc::tm {
    // SAFETY: tm is plain integers and a nullable pointer; all-zero is valid.
    unsafe { std::mem::zeroed() }
}

/// The broken-down local time of `t`.
pub fn local_tm(t: i64) -> libc::tm {
    let mut tm = zeroed_tm();
    let t = t as libc::time_t;
    // SAFETY: both pointers are valid for the call; localtime_r is thread-safe.
    unsafe { libc::localtime_r(&t, &mut tm) };
    tm
}

/// `tm` as local time, normalised in place; DST decided by the zone rules.
fn mktime(tm: &mut libc::tm) -> Option<i64> {
    tm.tm_isdst = -1;
    // SAFETY: tm is a valid, exclusively borrowed struct.
    let t = unsafe { libc::mktime(tm) };
    (t != -1).then_some(t as i64)
}

/// Seconds in `90`, `90s`, `1.5m`, `1h30m`, `1:30` or `01:02:03`.
pub fn parse_duration(s: &str) -> Result<f64, String> {
    let s = s.trim();
    let bad =
        || format!("`{s}` is not a duration: use seconds (90, 90s), 5m, 1h30m, 1:30 or 01:02:03");
    let number = |x: &str| -> Option<f64> {
        let ok = !x.is_empty()
            && x.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && x.bytes().filter(|&b| b == b'.').count() <= 1
            && x != ".";
        ok.then(|| x.parse().ok()).flatten()
    };
    if s.is_empty() {
        return Err(bad());
    }
    if s.contains(':') {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() > 3 {
            return Err(bad());
        }
        let mut total = 0.0;
        for (i, p) in parts.iter().enumerate() {
            let last = i == parts.len() - 1;
            let v = if last {
                number(p)
            } else {
                num(Some(p), if i == 0 { 1..=6 } else { 1..=2 }).map(f64::from)
            }
            .ok_or_else(bad)?;
            // Everything after the first field is minutes or seconds.
            if i > 0 && v >= 60.0 {
                return Err(bad());
            }
            total = total * 60.0 + v;
        }
        return Ok(total);
    }
    if let Some(v) = number(s) {
        return Ok(v);
    }
    let mut total = 0.0;
    let mut rest = s;
    let mut units = "hms";
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let v = number(&rest[..end]).ok_or_else(bad)?;
        let unit = rest[end..].chars().next().ok_or_else(bad)?;
        // Each unit once, largest first.
        let at = units.find(unit).ok_or_else(bad)?;
        units = &units[at + 1..];
        total += v * [3600.0, 60.0, 1.0][2 - units.len()];
        rest = &rest[end + 1..];
    }
    Ok(total)
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

    /// 2024-06-01 00:00 local, checked against localtime_r.
    fn assert_local(t: i64, want: (i32, i32, i32, i32, i32, i32)) {
        let tm = local_tm(t);
        let got = (
            tm.tm_year + 1900,
            tm.tm_mon + 1,
            tm.tm_mday,
            tm.tm_hour,
            tm.tm_min,
            tm.tm_sec,
        );
        assert_eq!(got, want, "{t}");
    }

    #[test]
    fn dates_are_the_start_of_their_period_in_local_time() {
        assert_local(parse_date("2024").unwrap(), (2024, 1, 1, 0, 0, 0));
        assert_local(parse_date("2024-06").unwrap(), (2024, 6, 1, 0, 0, 0));
        assert_local(parse_date("2024-06-15").unwrap(), (2024, 6, 15, 0, 0, 0));
        assert_local(
            parse_date("2024-06-15 14:30").unwrap(),
            (2024, 6, 15, 14, 30, 0),
        );
        assert_local(
            parse_date("2024-06-15T14:30:05").unwrap(),
            (2024, 6, 15, 14, 30, 5),
        );
        assert_local(parse_date("2024-2-9").unwrap(), (2024, 2, 9, 0, 0, 0));
        assert_eq!(parse_date("@1717200000"), Ok(1_717_200_000));
        assert_eq!(parse_date("@-5"), Ok(-5));
    }

    /// Run by `dates_follow_the_local_zone` in a child with TZ set.
    #[test]
    #[ignore = "run with TZ set, by dates_follow_the_local_zone"]
    fn dates_in_utc_plus_3() {
        assert_eq!(std::env::var("TZ").as_deref(), Ok("XST-3"));
        // 2024-06-01T00:00:00Z is 1717200000.
        assert_eq!(parse_date("2024-06"), Ok(1_717_200_000 - 3 * 3600));
        assert_eq!(
            parse_date("2024-06-01 03:00"),
            Ok(1_717_200_000),
            "03:00 at UTC+3 is midnight UTC"
        );
    }

    #[test]
    fn dates_follow_the_local_zone() {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "cli::tests::dates_in_utc_plus_3", "--ignored"])
            .env("TZ", "XST-3")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("1 passed"),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    #[test]
    fn ages_count_back_from_now() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let week = parse_date("1w").unwrap();
        // A DST change in between moves it by up to an hour.
        assert!((now - week - 7 * 86400).abs() <= 3601, "{}", now - week);
        let day = parse_date("0d").unwrap();
        assert!((now - day).abs() <= 2);
        let year = parse_date("1y").unwrap();
        assert!((now - year - 365 * 86400).abs() <= 86400 + 3601);
    }

    #[test]
    fn bad_dates_are_refused_with_the_forms_that_work() {
        for s in [
            "",
            "yesterday",
            "24-06",
            "2024-6-1-1",
            "2024/06/01",
            "2024-06-01 14",
            "2024 14:00",
            "2024-06-01 14:00:00:00",
            "@",
            "@12x",
            "7x",
            "d",
            "2024-06-01 1a:00",
        ] {
            let e = parse_date(s).unwrap_err();
            assert!(e.contains("is not a date"), "{s}: {e}");
        }
        for s in [
            "2024-13",
            "2024-00",
            "2024-02-30",
            "2023-02-29",
            "2024-04-31",
            "2024-06-00",
            "2024-06-01 24:00",
            "2024-06-01 12:60",
        ] {
            let e = parse_date(s).unwrap_err();
            assert!(e.contains("not a valid date"), "{s}: {e}");
        }
        assert!(parse_date("2024-02-29").is_ok());
    }

    #[test]
    fn durations_in_the_forms_people_write() {
        for (s, want) in [
            ("90", 90.0),
            ("90s", 90.0),
            ("1.5", 1.5),
            ("5m", 300.0),
            ("1.5m", 90.0),
            ("1h", 3600.0),
            ("1h30m", 5400.0),
            ("1h30m15s", 5415.0),
            ("2m5s", 125.0),
            ("1:30", 90.0),
            ("01:02:03", 3723.0),
            ("0:00:07.5", 7.5),
            ("90:00", 5400.0),
            ("0", 0.0),
        ] {
            assert_eq!(parse_duration(s), Ok(want), "{s}");
        }
        for s in [
            "", "s", "m5", "5x", "1m1h", "1h1h", "1:2:3:4", "1:60", "1:", ":30", "-5", "1.2.3",
            "5 m", "1h30", ".", "1::2",
        ] {
            let e = parse_duration(s).unwrap_err();
            assert!(e.contains("is not a duration"), "{s}: {e}");
        }
    }

    #[test]
    fn path_prefixes_are_absolute_and_resolved_by_name() {
        let cwd = Path::new("/home/me/videos");
        assert_eq!(
            absolute_prefix(cwd, Path::new("trips")),
            Path::new("/home/me/videos/trips")
        );
        assert_eq!(
            absolute_prefix(cwd, Path::new("./a/../b")),
            Path::new("/home/me/videos/b")
        );
        assert_eq!(
            absolute_prefix(cwd, Path::new("../music")),
            Path::new("/home/me/music")
        );
        assert_eq!(
            absolute_prefix(cwd, Path::new("/srv/x/")).as_os_str(),
            "/srv/x/"
        );
        assert_eq!(
            absolute_prefix(cwd, Path::new(".")).as_os_str(),
            "/home/me/videos"
        );
        assert_eq!(absolute_prefix(cwd, Path::new("/")).as_os_str(), "/");
        assert_eq!(absolute_prefix(cwd, Path::new("/../..")).as_os_str(), "/");
    }

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
