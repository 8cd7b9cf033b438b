//! `vx-claims jpeg|fft FILE_LIST`: two claims of the plan vx grew from,
//! measured in our setting:
//! - [`jpeg`]: JPEG decoding by FFmpeg, mozjpeg and the `image` crate
//!   (zune-jpeg), each to RGB; and what vx-media now does for vxd (mozjpeg,
//!   scaling while it decodes) against FFmpeg at the same sizes;
//! - [`fft`]: the FFT of the speech plugin's mel front end (512-point real,
//!   f64, every 10 ms) by FFTW (what vx does) against rustfft (`realfft`).
//!
//! Each variant takes its turn on every input, a different one first each
//! time; CPU seconds are summed per variant.

use std::path::{Path, PathBuf};

use fftw::array::AlignedVec;
use fftw::plan::{R2CPlan, R2CPlan64};
use fftw::types::{Flag, c64};
use serde_json::json;
use vx_media::DecodeOptions;
use vx_plugin_speech::mel::{HOP, LogMel, MelConfig, N_FFT, frame_count};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, mode, list] = &args[..] else {
        eprintln!("usage: vx-claims jpeg|fft FILE_LIST");
        std::process::exit(2);
    };
    let files: Vec<PathBuf> = std::fs::read_to_string(list)
        .unwrap_or_else(|e| fail(e))
        .lines()
        .filter(|l| !l.is_empty())
        .map(PathBuf::from)
        .collect();
    let report = match mode.as_str() {
        "jpeg" => jpeg(&files, &vxd_sizes(), 5),
        "fft" => fft(&files, 5),
        _ => fail(format!("unknown mode {mode}")),
    };
    println!("{report}");
}

/// What vxd asks for with the default plugins: keyframes, objects and faces
/// at 640 px, OCR at 1280.
fn vxd_sizes() -> DecodeOptions {
    DecodeOptions {
        frame_sides: vec![640, 1280],
        ..DecodeOptions::default()
    }
}

fn fail(e: impl std::fmt::Display) -> ! {
    eprintln!("vx-claims: {e}");
    std::process::exit(1);
}

/// CPU seconds this process has used, all threads.
fn cpu_s() -> f64 {
    // SAFETY: getrusage fills the zeroed struct.
    let u = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// Runs `variants` on each of `inputs` in rotating order; CPU seconds each.
fn take_turns<T>(inputs: &[T], variants: &mut [&mut dyn FnMut(&T)]) -> Vec<f64> {
    let n = variants.len();
    let mut cpu = vec![0.0; n];
    for (i, input) in inputs.iter().enumerate() {
        for k in 0..n {
            let v = (i + k) % n;
            let before = cpu_s();
            variants[v](input);
            cpu[v] += cpu_s() - before;
        }
    }
    cpu
}

/// Decodes each JPEG in `files` `rounds` times with each decoder, to RGB: at
/// full size by FFmpeg, mozjpeg and the `image` crate, and at the sizes vxd
/// asks for (`opts`) by FFmpeg and by vx-media (mozjpeg, scaling while it
/// decodes). FFmpeg's path is vx-media's on a copy named `.bin`, which vx
/// does not take for a picture.
fn jpeg(files: &[PathBuf], opts: &DecodeOptions, rounds: usize) -> serde_json::Value {
    let work = std::env::temp_dir().join(format!("vx-bench-jpeg-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap_or_else(|e| fail(e));
    // (as a picture, as something else, its bytes)
    let jpegs: Vec<(PathBuf, PathBuf, Vec<u8>)> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "jpg" || e == "jpeg"))
        .enumerate()
        .map(|(i, p)| {
            let bin = work.join(format!("{i}.bin"));
            std::fs::copy(p, &bin).unwrap_or_else(|e| fail(e));
            let bytes = std::fs::read(p).unwrap_or_else(|e| fail(e));
            (p.clone(), bin, bytes)
        })
        .collect();
    let inputs: Vec<&(PathBuf, PathBuf, Vec<u8>)> = (0..rounds).flat_map(|_| &jpegs).collect();
    let full_size = DecodeOptions {
        frame_sides: vec![16_384],
        still_threshold: 0.0,
        audio: false,
        ..DecodeOptions::default()
    };
    let vx_media = |path: &Path, opts: &DecodeOptions| {
        vx_media::decode(path, opts).unwrap_or_else(|e| fail(e));
    };
    let mut ffmpeg_full = |(_, bin, _): &&(PathBuf, PathBuf, Vec<u8>)| vx_media(bin, &full_size);
    let mut mozjpeg_full = |(_, _, bytes): &&(PathBuf, PathBuf, Vec<u8>)| {
        std::panic::catch_unwind(|| {
            let d = mozjpeg::Decompress::new_mem(bytes).expect("a JPEG");
            let mut started = d.rgb().expect("RGB output");
            let _: Vec<[u8; 3]> = started.read_scanlines().expect("scanlines");
            let _ = started.finish();
        })
        .unwrap_or_else(|_| fail("mozjpeg could not decode a photo"));
    };
    let mut image_full = |(_, _, bytes): &&(PathBuf, PathBuf, Vec<u8>)| {
        let d = image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg)
            .unwrap_or_else(|e| fail(e));
        let _ = d.to_rgb8();
    };
    let mut ffmpeg_sized = |(_, bin, _): &&(PathBuf, PathBuf, Vec<u8>)| vx_media(bin, opts);
    let mut ours_sized = |(jpg, _, _): &&(PathBuf, PathBuf, Vec<u8>)| vx_media(jpg, opts);
    let cpu = take_turns(
        &inputs,
        &mut [
            &mut ffmpeg_full,
            &mut mozjpeg_full,
            &mut image_full,
            &mut ffmpeg_sized,
            &mut ours_sized,
        ],
    );
    let _ = std::fs::remove_dir_all(&work);
    json!({
        "photos": jpegs.len(),
        "rounds": rounds,
        "sides": opts.frame_sides,
        "cpu_s_full_size": {"ffmpeg": cpu[0], "mozjpeg": cpu[1], "image (zune-jpeg)": cpu[2]},
        "cpu_s_at_vxd_sizes": {"ffmpeg (before)": cpu[3], "vx-media, mozjpeg scaling (now)": cpu[4]},
        "ffmpeg_over": {"mozjpeg": cpu[0] / cpu[1], "image": cpu[0] / cpu[2], "vx-media at vxd's sizes": cpu[3] / cpu[4]},
    })
}

/// The mel front end's FFTs over the 16 kHz audio of `files`, `rounds` times,
/// by FFTW and by rustfft; also the whole front end's time, for the FFT's share.
fn fft(files: &[PathBuf], rounds: usize) -> serde_json::Value {
    let audio_only = DecodeOptions {
        frame_sides: vec![],
        ..DecodeOptions::default()
    };
    let audio: Vec<Vec<f32>> = files
        .iter()
        .filter_map(|p| vx_media::decode(p, &audio_only).ok()?.audio)
        .collect();
    let seconds: f64 = audio.iter().map(|a| a.len() as f64 / 16_000.0).sum();
    let inputs: Vec<&Vec<f32>> = (0..rounds).flat_map(|_| &audio).collect();

    let mut frame = AlignedVec::<f64>::new(N_FFT);
    let mut spectrum = AlignedVec::<c64>::new(N_FFT / 2 + 1);
    let mut plan = R2CPlan64::new(&[N_FFT], &mut frame, &mut spectrum, Flag::MEASURE)
        .unwrap_or_else(|e| fail(e));
    let (mut sum_fftw, mut sum_rustfft) = (0.0, 0.0);
    let mut fftw = |a: &&Vec<f32>| {
        for t in 0..frame_count(a.len()) {
            for (x, s) in frame.iter_mut().zip(&a[t * HOP..t * HOP + N_FFT]) {
                *x = f64::from(*s);
            }
            plan.r2c(&mut frame, &mut spectrum)
                .unwrap_or_else(|e| fail(e));
            sum_fftw += spectrum.iter().map(|c| c.norm_sqr()).sum::<f64>();
        }
    };
    let real = realfft::RealFftPlanner::<f64>::new().plan_fft_forward(N_FFT);
    let (mut input, mut output) = (real.make_input_vec(), real.make_output_vec());
    let mut scratch = real.make_scratch_vec();
    let mut rustfft = |a: &&Vec<f32>| {
        for t in 0..frame_count(a.len()) {
            for (x, s) in input.iter_mut().zip(&a[t * HOP..t * HOP + N_FFT]) {
                *x = f64::from(*s);
            }
            real.process_with_scratch(&mut input, &mut output, &mut scratch)
                .unwrap_or_else(|e| fail(e));
            sum_rustfft += output.iter().map(|c| c.norm_sqr()).sum::<f64>();
        }
    };
    let mut mel = LogMel::new(MelConfig::default()).unwrap_or_else(|e| fail(e));
    let mut front_end = |a: &&Vec<f32>| {
        mel.compute(a).unwrap_or_else(|e| fail(e));
    };
    let cpu = take_turns(&inputs, &mut [&mut fftw, &mut rustfft, &mut front_end]);
    json!({
        "audio_s": seconds,
        "rounds": rounds,
        "cpu_s": {"fftw (vx)": cpu[0], "rustfft": cpu[1], "whole log-mel front end (fftw)": cpu[2]},
        "rustfft_over_fftw": cpu[1] / cpu[0],
        "fft_share_of_front_end": cpu[0] / cpu[2],
        "same_power": (sum_fftw - sum_rustfft).abs() <= 1e-9 * sum_fftw.abs(),
    })
}
