//! Which files the page may serve, and what a browser can do with them.
//!
//! A media URL is `/media` followed by the file's absolute path, each
//! segment percent-encoded. It is served only when the index holds exactly
//! that path and the file, resolved through every link, still lies inside
//! the (resolved) watched folder it was found under. Everything else is a
//! plain 404, so the answer says nothing about what exists outside.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::http::percent_decode;

/// The path a `/media/…` URL names, or `None` when a segment is empty,
/// `.` or `..`, or decodes to something holding `/` or NUL (an encoded
/// slash).
pub fn path_of_url(rest: &str) -> Option<PathBuf> {
    let rest = rest.strip_prefix('/')?;
    let mut path = PathBuf::from("/");
    for segment in rest.split('/') {
        let bytes = percent_decode(segment, false)?;
        if bytes.is_empty()
            || bytes == b"."
            || bytes == b".."
            || bytes.contains(&b'/')
            || bytes.contains(&0)
        {
            return None;
        }
        path.push(OsStr::from_bytes(&bytes));
    }
    Some(path)
}

/// The file to open for `path`, a path the index holds: its resolved form,
/// when that is a regular file inside the resolved watched folder that
/// `path` lies under.
pub fn inside_watched(path: &Path, roots: &[PathBuf]) -> Option<PathBuf> {
    let real = path.canonicalize().ok()?;
    let inside = roots
        .iter()
        .filter(|root| path.starts_with(root))
        .filter_map(|root| root.canonicalize().ok())
        .any(|root| real.starts_with(root));
    (inside && real.metadata().ok()?.is_file()).then_some(real)
}

/// The Content-Type to serve a file with, by its extension.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(OsStr::to_str)
        .unwrap_or_default()
        .to_ascii_lowercase();
    match ext.as_str() {
        "mp4" | "m4v" | "mov" => "video/mp4",
        "webm" => "video/webm",
        "mkv" => "video/x-matroska",
        "ogv" => "video/ogg",
        "ogg" | "oga" | "opus" => "audio/ogg",
        "mp3" => "audio/mpeg",
        "m4a" | "aac" => "audio/mp4",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "bmp" => "image/bmp",
        "avif" => "image/avif",
        "mpg" | "mpeg" | "m2v" | "vob" => "video/mpeg",
        "ts" | "m2ts" | "mts" => "video/mp2t",
        _ => "application/octet-stream",
    }
}

/// Codecs Chromium decodes by itself (FFmpeg's names; the index keeps the
/// first video and audio stream's).
const BROWSER_CODECS: &[&str] = &[
    "h264",
    "vp8",
    "vp9",
    "av1",
    "theora",
    "aac",
    "mp3",
    "opus",
    "vorbis",
    "flac",
    "pcm_s16le",
    "pcm_s24le",
    "pcm_s32le",
    "pcm_f32le",
    "pcm_u8",
    "mjpeg",
    "png",
    "gif",
    "webp",
    "bmp",
];
/// Containers it reads (substrings of FFmpeg's format names).
const BROWSER_CONTAINERS: &[&str] = &[
    "mp4", "webm", "matroska", "ogg", "wav", "mp3", "flac", "image2", "jpeg", "png", "gif", "webp",
    "bmp",
];

/// Why a browser cannot play or show this file, from the container and
/// codecs the index holds; `None` when it can.
pub fn unplayable(container: &str, codecs: &[String]) -> Option<String> {
    if let Some(c) = codecs
        .iter()
        .find(|c| !BROWSER_CODECS.contains(&c.as_str()))
    {
        return Some(format!("browsers cannot decode {c}"));
    }
    if !BROWSER_CONTAINERS.iter().any(|c| container.contains(c)) {
        return Some(format!("browsers cannot read the {container} format"));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_urls_name_absolute_paths_without_tricks() {
        assert_eq!(
            path_of_url("/m/a%20b/c.mp4"),
            Some(PathBuf::from("/m/a b/c.mp4"))
        );
        for bad in [
            "/m/../etc/passwd",
            "/m/%2e%2e/etc/passwd",
            "/m/./a.mp4",
            "/m//a.mp4",
            "/m%2Fa.mp4",
            "/m/a%00.mp4",
            "/m/%zz",
            "m/a.mp4",
            "/",
        ] {
            assert_eq!(path_of_url(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_files_inside_a_resolved_watched_folder_pass() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("media");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/a.mp4"), b"x").unwrap();
        std::fs::write(dir.path().join("secret.mp4"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret.mp4"), root.join("out.mp4")).unwrap();
        std::os::unix::fs::symlink(root.join("sub/a.mp4"), root.join("in.mp4")).unwrap();
        let roots = [root.clone()];
        let real = root.canonicalize().unwrap();
        assert_eq!(
            inside_watched(&root.join("sub/a.mp4"), &roots),
            Some(real.join("sub/a.mp4"))
        );
        assert_eq!(
            inside_watched(&root.join("in.mp4"), &roots),
            Some(real.join("sub/a.mp4"))
        );
        assert_eq!(inside_watched(&root.join("out.mp4"), &roots), None);
        assert_eq!(inside_watched(&dir.path().join("secret.mp4"), &roots), None);
        assert_eq!(inside_watched(&root.join("sub"), &roots), None);
        assert_eq!(inside_watched(&root.join("gone.mp4"), &roots), None);
    }

    #[test]
    fn mpeg2_is_not_for_browsers_h264_is() {
        let mp4 = "mov,mp4,m4a,3gp,3g2,mj2";
        assert_eq!(unplayable(mp4, &["h264".into(), "aac".into()]), None);
        assert_eq!(
            unplayable("mpeg", &["mpeg2video".into(), "mp2".into()]).as_deref(),
            Some("browsers cannot decode mpeg2video")
        );
        assert!(unplayable("avi", &["h264".into()]).is_some());
        assert_eq!(unplayable("image2", &["mjpeg".into()]), None);
    }
}
