//! Decoding real files made by the ffmpeg CLI.

use std::path::Path;
use std::process::Command;

use vx_media::{AUDIO_RATE, DecodeOptions, decode};
use vx_plugin_protocol::MediaKind;

fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg on PATH");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Sign changes per second of a pure tone are twice its frequency.
fn zero_crossings_per_s(samples: &[f32]) -> f64 {
    let n = samples
        .windows(2)
        .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
        .count();
    n as f64 / (samples.len() as f64 / AUDIO_RATE as f64)
}

#[test]
fn video_with_audio_gives_sampled_scaled_frames_and_16k_mono() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v.mkv");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=1280x720:rate=25:duration=3",
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=48000:duration=3",
        "-ac",
        "2",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-c:a",
        "flac",
        p.to_str().unwrap(),
    ]);
    let d = decode(&p, &DecodeOptions::default()).unwrap();
    assert_eq!(d.kind(), MediaKind::Video);
    assert_eq!((d.info.width, d.info.height), (Some(1280), Some(720)));
    assert_eq!(d.info.video_codec.as_deref(), Some("h264"));
    assert_eq!(d.info.audio_codec.as_deref(), Some("flac"));
    assert!(
        (d.info.duration_s.unwrap() - 3.0).abs() < 0.1,
        "{:?}",
        d.info.duration_s
    );

    // The first frame at or after each 0.5 s mark (frames are 0.04 s apart).
    let pts: Vec<f64> = d.frames_for(640).iter().map(|f| f.pts_s).collect();
    assert_eq!(pts.len(), 6, "{pts:?}");
    for (i, t) in pts.iter().enumerate() {
        let mark = i as f64 * 0.5;
        assert!(*t >= mark - 1e-6 && *t < mark + 0.04, "{pts:?}");
    }
    for f in d.frames_for(640) {
        assert_eq!((f.width, f.height), (640, 360));
        assert_eq!(f.rgb.len(), 640 * 360 * 3);
    }
    // testsrc's top-left corner is not black: the pixels really are decoded.
    assert!(d.frames_for(640)[0].rgb[..300].iter().any(|&b| b > 30));

    let audio = d.audio.unwrap();
    let secs = audio.len() as f64 / AUDIO_RATE as f64;
    assert!((secs - 3.0).abs() < 0.05, "{secs} s of audio");
    let zc = zero_crossings_per_s(&audio);
    assert!(
        (zc - 880.0).abs() < 10.0,
        "440 Hz tone resampled to {zc} crossings/s"
    );
}

#[test]
fn long_video_is_sampled_more_sparsely_to_respect_max_frames() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("long.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc=size=160x120:rate=10:duration=20",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        p.to_str().unwrap(),
    ]);
    let opts = DecodeOptions {
        max_frames: 5,
        ..DecodeOptions::default()
    };
    let d = decode(&p, &opts).unwrap();
    let pts: Vec<f64> = d.frames_for(640).iter().map(|f| f.pts_s).collect();
    assert_eq!(pts, [0.0, 4.0, 8.0, 12.0, 16.0]);
    assert!(d.audio.is_none());
}

#[test]
fn audio_only_and_still_images_get_their_kind() {
    let dir = tempfile::tempdir().unwrap();
    let mp3 = dir.path().join("a.mp3");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=1000:duration=2",
        mp3.to_str().unwrap(),
    ]);
    let d = decode(&mp3, &DecodeOptions::default()).unwrap();
    assert_eq!(d.kind(), MediaKind::Audio);
    assert_eq!(d.frame_count(), 0);
    let zc = zero_crossings_per_s(&d.audio.unwrap());
    assert!((zc - 2000.0).abs() < 20.0, "{zc}");

    let jpg = dir.path().join("p.jpg");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1000x500",
        "-frames:v",
        "1",
        jpg.to_str().unwrap(),
    ]);
    let d = decode(&jpg, &DecodeOptions::default()).unwrap();
    assert_eq!(d.kind(), MediaKind::Image);
    assert_eq!(d.info.duration_s, None);
    assert_eq!(d.frame_count(), 1);
    let f = &d.frames_for(640)[0];
    assert_eq!((f.width, f.height), (640, 320));
}

/// A 3 s still title, then 2 s of motion, at 720p.
fn still_then_moving(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("still_then_moving.mp4");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "color=c=navy:size=1280x720:rate=25:duration=3",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1280x720:rate=25:duration=2",
        "-filter_complex",
        "[0][1]concat=n=2:v=1:a=0",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        p.to_str().unwrap(),
    ]);
    p
}

#[test]
fn a_still_shot_is_sampled_once_and_motion_every_interval() {
    let dir = tempfile::tempdir().unwrap();
    let p = still_then_moving(dir.path());
    let d = decode(&p, &DecodeOptions::default()).unwrap();
    let pts: Vec<f64> = d.frames_for(640).iter().map(|f| f.pts_s).collect();
    // One frame for the 3 s still, then one per 0.5 s of testsrc2.
    assert_eq!(pts.len(), 5, "{pts:?}");
    assert_eq!(pts[0], 0.0);
    assert!((pts[1] - 3.0).abs() < 0.05, "{pts:?}");

    let every = DecodeOptions {
        still_threshold: 0.0,
        ..DecodeOptions::default()
    };
    assert_eq!(decode(&p, &every).unwrap().frame_count(), 10);
}

#[test]
fn each_size_is_scaled_once_and_unwanted_audio_is_not_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let p = still_then_moving(dir.path());
    let opts = DecodeOptions {
        frame_sides: vec![1280, 640, 1920],
        audio: false,
        ..DecodeOptions::default()
    };
    let d = decode(&p, &opts).unwrap();
    // 1280 and 1920 both give the source's own 1280×720: one rendition.
    assert_eq!(d.renditions.len(), 2);
    let small = d.frames_for(640);
    let large = d.frames_for(1920);
    assert_eq!((small[0].width, large[0].width), (640, 1280));
    assert_eq!(d.frames_for(1280).len(), small.len());
    let times = |fs: &[vx_media::RgbFrame]| fs.iter().map(|f| f.pts_s).collect::<Vec<_>>();
    assert_eq!(times(small), times(large));
    assert!(d.frames_for(320).is_empty());

    let packed = vx_media::pack(&d).unwrap();
    assert_eq!(packed.frames_for(1280).len(), small.len());
    assert_eq!(packed.frames_for(640)[0].width, 640);

    let no_frames = DecodeOptions {
        frame_sides: vec![],
        ..DecodeOptions::default()
    };
    let d = decode(&p, &no_frames).unwrap();
    assert_eq!((d.kind(), d.frame_count()), (MediaKind::Video, 0));
    assert_eq!(d.info.video_codec.as_deref(), Some("h264"));
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.mp4");
    std::fs::write(&p, [0u8, 1, 2, 3, 4, 5, 6, 7]).unwrap();
    assert!(decode(&p, &DecodeOptions::default()).is_err());
    assert!(
        decode(
            Path::new("/nonexistent/file.mp4"),
            &DecodeOptions::default()
        )
        .is_err()
    );
}

/// Frames no other frame refers to (here non-reference B-frames) are not
/// decoded when a candidate comes every 12.5 frames: the same frames are
/// kept, some up to a run of B-frames (3 here) later. At 2 fps every frame may be a candidate, and
/// none is skipped.
#[test]
fn unreferenced_frames_are_skipped_only_when_sampling_is_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let times = |path: &Path, skip: bool| -> Vec<f64> {
        let opts = DecodeOptions {
            skip_unreferenced: skip,
            still_threshold: 0.0,
            ..DecodeOptions::default()
        };
        let d = decode(path, &opts).unwrap();
        d.frames_for(640).iter().map(|f| f.pts_s).collect()
    };
    for (fps, may_shift) in [(25, true), (2, false)] {
        let p = dir.path().join(format!("b{fps}.mp4"));
        ffmpeg(&[
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc=size=160x120:rate={fps}:duration=6"),
            "-c:v",
            "libx264",
            "-x264-params",
            "bframes=3:b-pyramid=none:b-adapt=0:threads=1",
            p.to_str().unwrap(),
        ]);
        let (all, skipping) = (times(&p, false), times(&p, true));
        assert_eq!(all.len(), skipping.len(), "{fps} fps: {all:?} {skipping:?}");
        let shifts: Vec<f64> = all.iter().zip(&skipping).map(|(a, s)| s - a).collect();
        let frame = 1.0 / fps as f64;
        assert!(
            shifts
                .iter()
                .all(|d| (-1e-6..=3.0 * frame + 1e-6).contains(d)),
            "{fps} fps: a kept frame moved past the run of B-frames: {shifts:?}"
        );
        let moved = shifts.iter().any(|d| *d > 1e-6);
        assert_eq!(moved, may_shift, "{fps} fps: {shifts:?}");
    }
}

/// JPEGs go through mozjpeg, scaled by libjpeg while decoding: the same
/// metadata and rendition sizes as FFmpeg's path (which a JPEG under a name
/// vx does not take for a picture still goes through), and nearly the same
/// pixels.
#[test]
fn jpeg_through_mozjpeg_matches_ffmpeg() {
    let dir = tempfile::tempdir().unwrap();
    let jpg = dir.path().join("photo.jpg");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=1000x750",
        "-frames:v",
        "1",
        "-q:v",
        "2",
        jpg.to_str().unwrap(),
    ]);
    let through_ffmpeg = dir.path().join("photo.bin");
    std::fs::copy(&jpg, &through_ffmpeg).unwrap();
    let opts = DecodeOptions {
        frame_sides: vec![320, 640, 4096],
        ..DecodeOptions::default()
    };
    let ours = decode(&jpg, &opts).unwrap();
    let reference = decode(&through_ffmpeg, &opts).unwrap();
    assert_eq!(ours.kind(), MediaKind::Image);
    assert_eq!(ours.info.container, "image2");
    assert_eq!(ours.info.video_codec.as_deref(), Some("mjpeg"));
    assert_eq!((ours.info.width, ours.info.height), (Some(1000), Some(750)));
    assert_eq!(ours.info.duration_s, None);
    for side in [320, 640, 4096] {
        let (a, b) = (&ours.frames_for(side)[0], &reference.frames_for(side)[0]);
        assert_eq!((a.width, a.height), (b.width, b.height), "side {side}");
        let diff: u64 = a
            .rgb
            .iter()
            .zip(&b.rgb)
            .map(|(x, y)| u64::from(x.abs_diff(*y)))
            .sum();
        let mean = diff as f64 / a.rgb.len() as f64;
        assert!(mean < 3.0, "side {side}: mean difference {mean:.2} of 255");
        if side == 640 {
            // libjpeg scaled this one by 6/8 while decoding, then fitted it:
            // not FFmpeg's pixels, so mozjpeg made it.
            assert!(mean > 0.0, "side {side}: FFmpeg's own pixels");
        }
    }
    // The pixel cap is checked from the header, before decoding.
    let capped = DecodeOptions {
        max_pixels: 1000 * 750 - 1,
        ..opts
    };
    assert!(matches!(
        decode(&jpg, &capped),
        Err(vx_media::MediaError::TooManyPixels { .. })
    ));
    // A JPEG cut short is not a panic.
    let bytes = std::fs::read(&jpg).unwrap();
    let cut = dir.path().join("cut.jpg");
    std::fs::write(&cut, &bytes[..bytes.len() / 3]).unwrap();
    let _ = decode(&cut, &DecodeOptions::default());
}
