//! FFmpeg (and mozjpeg, for JPEGs) through vx-media on arbitrary bytes, as
//! a file of each kind vxd accepts: an error is fine, a crash is what the
//! decode subprocess of the reliability plan is for. The last byte picks the
//! kind, so that a JPEG's first bytes can be its own.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let ext =
        ["mp4", "mkv", "jpg", "png", "wav", "flac"][data.last().map_or(0, |b| *b as usize % 6)];
    let path = dir.path().join(format!("input.{ext}"));
    std::fs::write(&path, data).unwrap();
    let opts = vx_media::DecodeOptions {
        max_frames: 8,
        max_pixels: 4_000_000,
        max_audio_s: 60.0,
        decoder_threads: 1,
        ..vx_media::DecodeOptions::default()
    };
    if let Ok(decoded) = vx_media::decode(&path, &opts) {
        let _ = vx_media::pack(&decoded);
    }
});
