#[path = "../tests/fixtures/mod.rs"]
mod fixtures;
use vx_plugin_ocr::{Ocr, tesseract::Tesseract, text::edit_distance};
fn main() {
    let mut ocr: Ocr = Tesseract::new().unwrap().into();
    for set in [fixtures::samples(), fixtures::caption_samples()] {
        let (mut e, mut n) = (0, 0);
        for s in &set {
            let plain: Vec<String> = ocr.read(&s.frame()).unwrap().into_iter().map(|l| l.text).collect();
            e += edit_distance(&s.text(), &plain.join("\n")); n += s.text().chars().count();
        }
        print!("{:.1}% ", 100.0 * (1.0 - e as f64 / n as f64));
    }
    println!();
}
