//! Both engines on frames with known text: character accuracy per font,
//! size and style (accuracy = 1 − edit distance / characters, spaces and
//! line breaks included, case-sensitive), and silence on frames without
//! text. Needs the installed PP-OCR models (scripts/setup.sh), ffmpeg, and
//! Tesseract's English data.

mod fixtures;

use std::collections::BTreeMap;

use vx_plugin_api::HostContext;
use vx_plugin_ocr::text::edit_distance;
use vx_plugin_ocr::{EngineKind, Ocr};

fn open(kind: EngineKind) -> Ocr {
    let ctx = HostContext {
        cache_dir: vx_config::installed_cache_dir(),
        threads: 2,
    };
    Ocr::with_engine(&ctx, kind).unwrap_or_else(|e| panic!("{kind:?}: {e}"))
}

/// (errors, characters) per sample group, and overall under "all".
fn accuracy(kind: EngineKind, samples: &[fixtures::Sample]) -> BTreeMap<String, (usize, usize)> {
    let mut ocr = open(kind);
    let mut groups = BTreeMap::new();
    for s in samples {
        let (want, got) = (s.text(), fixtures::read_text(&mut ocr, &s.frame()));
        let errors = edit_distance(&want, &got);
        if errors > 0 {
            eprintln!(
                "{kind:?} {}: {errors} errors\n  want {want:?}\n  got  {got:?}",
                s.group()
            );
        }
        let chars = want.chars().count();
        for key in [s.group(), "all".into()] {
            let e = groups.entry(key).or_insert((0, 0));
            *e = (e.0 + errors, e.1 + chars);
        }
    }
    groups
}

fn percent((errors, chars): (usize, usize)) -> f64 {
    100.0 * (1.0 - errors as f64 / chars as f64)
}

/// Both engines' accuracy on `samples`, printed per group (run with
/// `--nocapture` to see it); returns (PP-OCR, Tesseract) overall.
fn compare(title: &str, samples: &[fixtures::Sample]) -> (f64, f64) {
    let ppocr = accuracy(EngineKind::PpOcr, samples);
    let tesseract = accuracy(EngineKind::Tesseract, samples);
    eprintln!("{title:<28} {:>8} {:>10}", "PP-OCR", "Tesseract");
    for (group, &p) in &ppocr {
        eprintln!(
            "{group:<28} {:>7.1}% {:>9.1}%",
            percent(p),
            percent(tesseract[group])
        );
    }
    (percent(ppocr["all"]), percent(tesseract["all"]))
}

#[test]
fn the_default_engine_reads_rendered_text_with_at_least_95_percent_character_accuracy() {
    let (ppocr, tesseract) = compare("character accuracy", &fixtures::samples());
    let default = match EngineKind::default() {
        EngineKind::PpOcr => ppocr,
        EngineKind::Tesseract => tesseract,
    };
    assert!(
        default >= 95.0,
        "default engine: {default:.1}% of characters right"
    );
}

#[test]
fn ppocr_reads_captions_over_a_picture() {
    let (ppocr, _) = compare("captions over a picture", &fixtures::caption_samples());
    assert!(
        ppocr >= 95.0,
        "PP-OCR: {ppocr:.1}% of caption characters right"
    );
}

#[test]
fn blank_and_noise_frames_give_no_text() {
    let (blank, noise) = (fixtures::blank(), fixtures::noise());
    for kind in [EngineKind::PpOcr, EngineKind::Tesseract] {
        let mut ocr = open(kind);
        for (name, rgb) in [("blank", &blank), ("noise", &noise)] {
            let lines = ocr.read(&fixtures::frame(rgb)).expect("read");
            assert!(
                lines.is_empty(),
                "{kind:?} read {lines:?} in a {name} frame"
            );
        }
    }
}
