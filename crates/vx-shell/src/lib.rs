//! File names made safe to print and to paste into a shell.

use std::ffi::OsStr;
use std::fmt::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use vx_ctl_protocol::Hit;

/// Characters a terminal would act on or hide: controls (C0, DEL, C1) and
/// the invisible marks that reorder or hide text (bidi overrides, zero
/// width).
fn unprintable(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2060}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// True when `s` is UTF-8 without [`unprintable`] characters.
fn plain(s: &OsStr) -> bool {
    std::str::from_utf8(s.as_bytes()).is_ok_and(|s| !s.chars().any(unprintable))
}

/// `s` as one shell word that pastes back to exactly its bytes: `'…'` with
/// `'\''` for a quote, or bash's `$'…'` with `\xHH` escapes when it is not
/// UTF-8 or holds characters a terminal would act on.
pub fn quote(s: &OsStr) -> String {
    if plain(s) {
        let s = s.to_str().expect("plain is UTF-8");
        return format!("'{}'", s.replace('\'', r"'\''"));
    }
    let mut out = String::from("$'");
    for chunk in s.as_bytes().utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\'' => out.push_str(r"\'"),
                '\\' => out.push_str(r"\\"),
                c if unprintable(c) => {
                    let mut buf = [0; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        write!(out, "\\x{b:02x}").expect("writing to a String");
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            write!(out, "\\x{b:02x}").expect("writing to a String");
        }
    }
    out.push('\'');
    out
}

/// `p` for people to read: as is when plain, else in its [`quote`]d form,
/// so that no control character of a file name reaches the terminal.
pub fn display(p: &Path) -> String {
    if plain(p.as_os_str()) {
        p.display().to_string()
    } else {
        quote(p.as_os_str())
    }
}

/// `s` with characters a terminal would act on shown as `\xHH` / `\u{…}`.
pub fn printable(s: &str) -> String {
    if !s.chars().any(unprintable) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            c if !unprintable(c) => out.push(c),
            c if (c as u32) < 0x100 => write!(out, "\\x{:02x}", c as u32).expect("String"),
            c => write!(out, "\\u{{{:x}}}", c as u32).expect("String"),
        }
    }
    out
}

/// A command that shows the hit: `mpv --start=S -- 'PATH'` for a moment of
/// a video or recording, `mpv -- 'PATH'` for the whole of one, and
/// `xdg-open 'PATH'` for anything else (images).
pub fn play_command(h: &Hit) -> String {
    let path = quote(h.path.as_os_str());
    match (h.kind.as_str(), h.start_s) {
        // Rounded down, so that playback starts before the moment, not in it.
        ("video" | "audio", Some(s)) => {
            format!(
                "mpv --start={:.1} -- {path}",
                (s.max(0.0) * 10.0).floor() / 10.0
            )
        }
        ("video" | "audio", None) => format!("mpv -- {path}"),
        _ => format!("xdg-open {path}"),
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;
    use std::process::Command;

    use super::*;

    /// What bash makes of `quoted` as one word, byte for byte.
    fn through_bash(quoted: &str) -> Vec<u8> {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!("printf %s {quoted}"))
            .output()
            .expect("bash runs");
        assert!(out.status.success(), "{quoted}: {out:?}");
        out.stdout
    }

    #[test]
    fn quoted_names_paste_back_to_their_exact_bytes() {
        let names: Vec<Vec<u8>> = vec![
            b"/m/plain.mp4".to_vec(),
            b"/m/with space & $HOME `x` \"q\".mp4".to_vec(),
            b"/m/it's here.mp4".to_vec(),
            b"/m/''.mp4".to_vec(),
            b"/m/back\\slash\\'.mp4".to_vec(),
            b"/m/new\nline.mp4".to_vec(),
            b"/m/\x1b[31mred\x1b[0m.mp4".to_vec(),
            b"/m/tab\there\r.mp4".to_vec(),
            b"/m/latin1 \xe9t\xe9.mp4".to_vec(),
            b"/m/\xff\xfe'\x01.mp4".to_vec(),
            "/m/caf\u{e9} \u{1F68C}.mp4".as_bytes().to_vec(),
            "/m/evil\u{202E}4pm.exe".as_bytes().to_vec(),
            "/m/c1\u{9b}31m.mp4".as_bytes().to_vec(),
            b"/m/\x1bfa.mp4".to_vec(),
            b"-n".to_vec(),
            b"!event".to_vec(),
        ];
        for name in names {
            let os = OsString::from_vec(name.clone());
            let q = quote(&os);
            assert!(
                !q.bytes().any(|b| b < 0x20 || b == 0x7f),
                "control byte in {q:?}"
            );
            assert_eq!(through_bash(&q), name, "{q}");
        }
    }

    #[test]
    fn plain_names_get_posix_quotes_and_the_rest_ansi_c() {
        assert_eq!(quote(OsStr::new("/a/b c.mp4")), "'/a/b c.mp4'");
        assert_eq!(quote(OsStr::new("/a/it's")), r"'/a/it'\''s'");
        assert_eq!(quote(OsStr::new("/a/x\ny'")), r"$'/a/x\x0ay\''");
        assert_eq!(
            quote(&OsString::from_vec(b"/a/\xe9\x1b".to_vec())),
            r"$'/a/\xe9\x1b'"
        );
        assert_eq!(quote(OsStr::new("/é/\u{202E}")), r"$'/é/\xe2\x80\xae'");
    }

    #[test]
    fn names_shown_to_people_carry_no_control_characters() {
        assert_eq!(display(Path::new("/a/b c.mp4")), "/a/b c.mp4");
        assert_eq!(display(Path::new("/a/\x1b[2J")), r"$'/a/\x1b[2J'");
        assert_eq!(printable("a\x1b[2Jb\u{202E}c é"), r"a\x1b[2Jb\u{202e}c é");
    }

    fn hit(kind: &str, start_s: Option<f64>, path: &str) -> Hit {
        Hit {
            path: path.into(),
            kind: kind.into(),
            score: 1.0,
            start_s,
            end_s: start_s.map(|s| s + 5.0),
            snippet: String::new(),
            fields: vec![],
            highlights: vec![],
            labels: vec![],
            faces: 0,
            plugin: None,
            speaker: None,
            similarity: None,
            time: 0,
            duration_s: None,
        }
    }

    #[test]
    fn play_commands_start_at_the_moment() {
        assert_eq!(
            play_command(&hit("video", Some(83.04), "/m/it's.mp4")),
            r"mpv --start=83.0 -- '/m/it'\''s.mp4'"
        );
        assert_eq!(
            play_command(&hit("audio", Some(9.99), "/m/a.flac")),
            "mpv --start=9.9 -- '/m/a.flac'"
        );
        assert_eq!(
            play_command(&hit("video", None, "/m/v.mp4")),
            "mpv -- '/m/v.mp4'"
        );
        assert_eq!(
            play_command(&hit("image", None, "/m/p.jpg")),
            "xdg-open '/m/p.jpg'"
        );
    }
}
