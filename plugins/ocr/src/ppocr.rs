//! PP-OCRv4 through ONNX Runtime: one det and one rec session, opened once.

use std::path::Path;

use vx_models::ort::session::Session;
use vx_models::ort::value::TensorRef;
use vx_models::{GraphOptimizationLevel, ModelError};
use vx_plugin_api::Frame;

use crate::Line;
use crate::det::{self, Quad};
use crate::rec::{self, REC_HEIGHT};

/// Lines whose recognition confidence is under this are dropped (RapidOCR's
/// `text_score`).
pub const MIN_TEXT_SCORE: f32 = 0.5;

const DET_MODEL: &str = "ppocr-v4-det";
const REC_MODEL: &str = "ppocr-v4-rec";

pub struct PpOcr {
    det: Session,
    rec: Session,
    /// Class index → text: blank, the model's characters, space.
    dict: Vec<String>,
}

impl PpOcr {
    /// Opens both models with vx's session settings.
    pub fn open(cache_dir: &Path, threads: usize) -> Result<Self, ModelError> {
        Self::open_at(cache_dir, threads, GraphOptimizationLevel::Level3)
    }

    /// [`PpOcr::open`] at another graph optimisation level (benchmarks).
    pub fn open_at(
        cache_dir: &Path,
        threads: usize,
        level: GraphOptimizationLevel,
    ) -> Result<Self, ModelError> {
        let det = vx_models::onnx_session_at(DET_MODEL, cache_dir, threads, level)?;
        let rec = vx_models::onnx_session_at(REC_MODEL, cache_dir, threads, level)?;
        let err = |message: String| ModelError::session(REC_MODEL, message);
        let characters = rec
            .metadata()
            .map_err(|e| err(e.to_string()))?
            .custom("character")
            .ok_or_else(|| err("no `character` key in its metadata".into()))?;
        let dict = rec::dictionary(&characters);
        let classes = rec.outputs()[0]
            .dtype()
            .tensor_shape()
            .and_then(|s| s.last().copied());
        if classes != Some(dict.len() as i64) {
            return Err(err(format!(
                "it has {classes:?} output classes but {} characters with blank and space",
                dict.len()
            )));
        }
        Ok(Self { det, rec, dict })
    }

    /// The lines of text in `frame`, in no particular order.
    pub fn read(&mut self, frame: &Frame<'_>) -> Result<Vec<Line>, String> {
        if frame.width == 0 || frame.height == 0 {
            return Ok(vec![]);
        }
        let mut strips: Vec<(Quad, rec::Strip)> = self
            .detect(frame)?
            .into_iter()
            .map(|q| (q, rec::strip(frame, &q)))
            .collect();
        strips.sort_by_key(|(_, s)| s.width);
        let widths: Vec<usize> = strips.iter().map(|(_, s)| s.width).collect();
        let mut lines = vec![];
        for batch in rec::batches(&widths) {
            let batch = &strips[batch];
            let read = self.recognise(batch.iter().map(|(_, s)| s))?;
            for ((quad, _), (text, score)) in batch.iter().zip(read) {
                let text = text.trim();
                if score >= MIN_TEXT_SCORE && !text.is_empty() {
                    lines.push(Line {
                        text: text.to_owned(),
                        score,
                        bbox: bounds(quad, frame),
                    });
                }
            }
        }
        Ok(lines)
    }

    /// Text and confidence of each strip, run as one batch.
    fn recognise<'s>(
        &mut self,
        strips: impl ExactSizeIterator<Item = &'s rec::Strip> + Clone,
    ) -> Result<Vec<(String, f32)>, String> {
        let n = strips.len();
        let (input, width) = rec::batch(strips);
        let tensor = TensorRef::from_array_view(([n, 3, REC_HEIGHT, width], &*input))
            .map_err(|e| e.to_string())?;
        let outputs = self
            .rec
            .run(vx_models::ort::inputs![tensor])
            .map_err(|e| format!("text recognition failed: {e}"))?;
        let (_, probs) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| e.to_string())?;
        Ok(probs
            .chunks_exact(probs.len() / n)
            .map(|p| rec::ctc_greedy(p, &self.dict))
            .collect())
    }

    /// Text boxes in frame pixels, clamped to the frame.
    fn detect(&mut self, frame: &Frame<'_>) -> Result<Vec<Quad>, String> {
        let (w, h) = det::input_size(frame.width as usize, frame.height as usize);
        let input = det::input_tensor(frame, w, h);
        let tensor =
            TensorRef::from_array_view(([1, 3, h, w], &*input)).map_err(|e| e.to_string())?;
        let outputs = self
            .det
            .run(vx_models::ort::inputs![tensor])
            .map_err(|e| format!("text detection failed: {e}"))?;
        let (shape, prob) = outputs[0]
            .try_extract_tensor::<f32>()
            .map_err(|e| e.to_string())?;
        if **shape != [1, 1, h as i64, w as i64] {
            return Err(format!(
                "text detection gave a {shape:?} map for a {w}×{h} input"
            ));
        }
        let (sx, sy) = (
            frame.width as f32 / w as f32,
            frame.height as f32 / h as f32,
        );
        let (fw, fh) = (frame.width as f32, frame.height as f32);
        Ok(det::boxes(prob, w, h)
            .into_iter()
            .map(|rect| {
                rect.corners()
                    .map(|[x, y]| [(x * sx).clamp(0.0, fw), (y * sy).clamp(0.0, fh)])
            })
            .collect())
    }
}

/// The quad's axis-aligned bounds as fractions of the frame.
fn bounds(quad: &Quad, frame: &Frame<'_>) -> [f32; 4] {
    let xs = quad.map(|p| p[0] / frame.width as f32);
    let ys = quad.map(|p| p[1] / frame.height as f32);
    [
        xs.into_iter().fold(1.0, f32::min),
        ys.into_iter().fold(1.0, f32::min),
        xs.into_iter().fold(0.0, f32::max),
        ys.into_iter().fold(0.0, f32::max),
    ]
}
