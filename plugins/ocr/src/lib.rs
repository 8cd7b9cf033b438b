//! The ocr plugin: reads the text shown in frames and indexes it as
//! segments, one per stretch of frames showing the same text.
//!
//! Two engines, chosen with `VX_OCR_ENGINE` when the host starts:
//! - `ppocr` (default): PP-OCRv4 text detection ([`det`]) and recognition
//!   ([`rec`]) through ONNX Runtime ([`ppocr`]);
//! - `tesseract`: Tesseract 5's LSTM engine through libtesseract
//!   ([`tesseract`]).
//!
//! PP-OCR is the default because it reads what people film, not only clean
//! slides. On the rendered test frames (`tests/accuracy.rs`: plain text on
//! flat backgrounds, 2 fonts × 2 sizes × 2 polarities at 1280×720) both are
//! near perfect: Tesseract 100 %, PP-OCR 99.8 % (two "on" read as "0n"). On
//! captions over a picture PP-OCR reads 100 % and Tesseract 56.7 %, and on
//! the project's test photos PP-OCR reads a bus's plate where Tesseract
//! finds nothing. Tesseract is about 2× faster per frame with one thread.

//! OCR needs about 720p: at 640×360, PP-OCR drops the spaces between small
//! words, so the plugin asks for frames up to 1280 pixels.
//!
//! Lines come back top to bottom, then left to right; a frame's text is its
//! lines joined with newlines; [`segments`] merges runs of frames.

pub mod det;
pub mod ppocr;
pub mod rec;
pub mod segments;
pub mod tesseract;
pub mod text;

use vx_models::ModelError;
use vx_plugin_api::{Frame, HostContext, JobInput, Needs, Plugin, PluginError, PluginOutput};

use crate::ppocr::PpOcr;
use crate::segments::FrameText;
use crate::tesseract::Tesseract;

/// Frames fitted in this square: 720p for 16:9 video.
pub const FRAME_MAX_SIDE: u32 = 1280;

/// One line of text read in a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub text: String,
    /// The engine's confidence, 0 to 1.
    pub score: f32,
    /// x0, y0, x1, y1 as fractions of the frame's width and height.
    pub bbox: [f32; 4],
}

/// Which OCR engine reads the frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EngineKind {
    #[default]
    PpOcr,
    Tesseract,
}

impl EngineKind {
    /// From `VX_OCR_ENGINE`; the default when it is unset.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var("VX_OCR_ENGINE") {
            Ok(value) => Self::parse(&value),
            Err(std::env::VarError::NotPresent) => Ok(Self::default()),
            Err(e) => Err(format!("VX_OCR_ENGINE: {e}")),
        }
    }

    /// `ppocr` or `tesseract`; empty means the default.
    pub fn parse(value: &str) -> Result<Self, String> {
        match value {
            "" => Ok(Self::default()),
            "ppocr" => Ok(Self::PpOcr),
            "tesseract" => Ok(Self::Tesseract),
            other => Err(format!(
                "VX_OCR_ENGINE is {other:?}; use ppocr or tesseract"
            )),
        }
    }
}

enum Engine {
    PpOcr(Box<PpOcr>),
    Tesseract(Tesseract),
}

pub struct Ocr {
    engine: Engine,
}

impl Ocr {
    /// Opens the plugin's models once; the host reuses them for every file.
    /// The engine comes from `VX_OCR_ENGINE`.
    pub fn open(ctx: &HostContext) -> Result<Self, ModelError> {
        let kind = EngineKind::from_env().map_err(|message| ModelError::session("ocr", message))?;
        Self::with_engine(ctx, kind)
    }

    /// Opens the given engine.
    pub fn with_engine(ctx: &HostContext, kind: EngineKind) -> Result<Self, ModelError> {
        Ok(match kind {
            EngineKind::PpOcr => PpOcr::open(&ctx.cache_dir, ctx.threads)?.into(),
            EngineKind::Tesseract => Tesseract::new()
                .map_err(|message| ModelError::session("tesseract", message))?
                .into(),
        })
    }

    /// The lines of text in `frame`, in reading order.
    pub fn read(&mut self, frame: &Frame<'_>) -> Result<Vec<Line>, PluginError> {
        let mut lines = match &mut self.engine {
            Engine::PpOcr(p) => p.read(frame)?,
            Engine::Tesseract(t) => t.read(frame)?,
        };
        sort_reading_order(&mut lines);
        Ok(lines)
    }
}

impl From<PpOcr> for Ocr {
    fn from(p: PpOcr) -> Self {
        Self {
            engine: Engine::PpOcr(Box::new(p)),
        }
    }
}

impl From<Tesseract> for Ocr {
    fn from(t: Tesseract) -> Self {
        Self {
            engine: Engine::Tesseract(t),
        }
    }
}

/// Top to bottom; lines whose vertical centres lie within half a line
/// height of the first line of a row count as one row, left to right.
pub fn sort_reading_order(lines: &mut [Line]) {
    let mid = |l: &Line| (l.bbox[1] + l.bbox[3]) / 2.0;
    let height = |l: &Line| l.bbox[3] - l.bbox[1];
    lines.sort_by(|a, b| mid(a).total_cmp(&mid(b)));
    let mut start = 0;
    while start < lines.len() {
        let first = &lines[start];
        let end = start
            + lines[start..]
                .iter()
                .take_while(|l| (mid(l) - mid(first)).abs() <= height(first).min(height(l)) / 2.0)
                .count();
        lines[start..end].sort_by(|a, b| a.bbox[0].total_cmp(&b.bbox[0]));
        start = end;
    }
}

impl Plugin for Ocr {
    fn name(&self) -> &str {
        "ocr"
    }

    fn version(&self) -> &str {
        "1"
    }

    fn needs(&self) -> Needs {
        Needs::frames(FRAME_MAX_SIDE)
    }

    fn process(&mut self, input: &JobInput<'_>) -> Result<PluginOutput, PluginError> {
        let frames = input.frames()?;
        let spans = input.frame_spans(&frames);
        let read = frames
            .iter()
            .zip(spans)
            .map(|(f, span)| {
                Ok(FrameText {
                    pts_s: f.pts_s,
                    span,
                    lines: self.read(f)?,
                })
            })
            .collect::<Result<Vec<_>, PluginError>>()?;
        Ok(PluginOutput {
            segments: segments::segments(&read),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, x0: f32, y0: f32, x1: f32, y1: f32) -> Line {
        Line {
            text: text.into(),
            score: 1.0,
            bbox: [x0, y0, x1, y1],
        }
    }

    #[test]
    fn engine_names_parse_and_unknown_ones_are_refused() {
        assert_eq!(EngineKind::parse("tesseract"), Ok(EngineKind::Tesseract));
        assert_eq!(EngineKind::parse("ppocr"), Ok(EngineKind::PpOcr));
        assert_eq!(EngineKind::parse(""), Ok(EngineKind::default()));
        let err = EngineKind::parse("easyocr").unwrap_err();
        assert!(err.contains("ppocr or tesseract"), "{err}");
    }

    #[test]
    fn lines_sort_top_to_bottom_then_left_to_right_within_a_row() {
        let mut lines = vec![
            line("second row", 0.1, 0.30, 0.5, 0.36),
            line("right", 0.6, 0.11, 0.9, 0.17),
            line("left", 0.1, 0.10, 0.5, 0.16),
        ];
        sort_reading_order(&mut lines);
        let order: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
        assert_eq!(order, ["left", "right", "second row"]);
    }
}
