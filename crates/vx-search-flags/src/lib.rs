//! The search filters people write, parsed the same way wherever they are
//! typed: `vxctl search --after 2024-06 --min-duration 5m` and the search
//! page's filter boxes both come here.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use vx_ctl_protocol::SearchFilters;

/// Refuses ranges no file can pass: `after` not before `before`, or a
/// minimum duration over the maximum.
pub fn check_ranges(f: &SearchFilters) -> Result<(), String> {
    if let Some((a, b)) = f.after.zip(f.before).filter(|(a, b)| a >= b) {
        return Err(format!(
            "--after {} is not before --before {}: no file can match",
            local_time(a),
            local_time(b)
        ));
    }
    let durations = f.min_duration_s.zip(f.max_duration_s);
    if let Some((a, b)) = durations.filter(|(a, b)| a > b) {
        return Err(format!(
            "--min-duration ({a} s) is longer than --max-duration ({b} s): no file can match"
        ));
    }
    Ok(())
}

/// Seconds since the epoch as a local "2024-06-01 14:03".
pub fn local_time(t: i64) -> String {
    let tm = local_tm(t);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min
    )
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
            .args(["--exact", "tests::dates_in_utc_plus_3", "--ignored"])
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
}
