//! The text-embed plugin: a sentence vector for any text, for search by
//! meaning.
//!
//! - **Model.** all-MiniLM-L6-v2 (manifest names `minilm-l6-v2` and
//!   `minilm-l6-v2-vocab`), converted to ONNX by setup. Its
//!   `sentence_embedding` output is already mean-pooled over the real tokens
//!   and L2-normalised: 384 dimensions, so a dot product is a cosine.
//! - **Tokens.** Our own WordPiece ([`vx_wordpiece`]), identical to
//!   HuggingFace's for this model, truncated at 128 tokens as it was trained.
//! - **Batches.** Texts are sorted by length and run [`BATCH`] at a time,
//!   each batch padded only to its longest row: short label summaries do not
//!   pay for a long transcript's padding.
//!
//! It decodes no media. vxd sends it the words of each indexed segment, and
//! each search query, as [`Plugin::embed`] requests; one warm host answers
//! queries in milliseconds instead of paying the model's load time.

use vx_models::ort::session::Session;
use vx_models::ort::value::TensorRef;
use vx_plugin_api::{HostContext, JobInput, Needs, Plugin, PluginError, PluginOutput};
use vx_wordpiece::{Padding, Tokenizer};

const MODEL: &str = "minilm-l6-v2";
const VOCAB: &str = "minilm-l6-v2-vocab";
/// Dimensions of a sentence vector.
pub const DIMS: usize = 384;
/// Texts per inference call.
pub const BATCH: usize = 32;

pub struct TextEmbed {
    session: Session,
    tokenizer: Tokenizer,
}

impl TextEmbed {
    pub fn open(ctx: &HostContext) -> Result<Self, vx_models::ModelError> {
        let vocab = vx_models::model_path(VOCAB, &ctx.cache_dir)?;
        let tokenizer = Tokenizer::from_file(&vocab)
            .map_err(|e| vx_models::ModelError::session(VOCAB, e.to_string()))?;
        let session = vx_models::onnx_session(MODEL, &ctx.cache_dir, ctx.threads)?;
        let outputs: Vec<&str> = session.outputs().iter().map(|o| o.name()).collect();
        if !outputs.contains(&"sentence_embedding") {
            return Err(vx_models::ModelError::session(
                MODEL,
                format!("has no output sentence_embedding (outputs: {outputs:?})"),
            ));
        }
        Ok(Self { session, tokenizer })
    }

    /// One unit vector per text, in order.
    pub fn embed_all(&mut self, texts: &[String]) -> Result<Vec<Vec<f32>>, PluginError> {
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| texts[i].len());
        let mut out = vec![vec![]; texts.len()];
        for chunk in order.chunks(BATCH) {
            let batch: Vec<&str> = chunk.iter().map(|&i| texts[i].as_str()).collect();
            for (&i, v) in chunk.iter().zip(self.run(&batch)?) {
                out[i] = v;
            }
        }
        Ok(out)
    }

    fn run(&mut self, texts: &[&str]) -> Result<Vec<Vec<f32>>, PluginError> {
        let b = self.tokenizer.encode_batch(texts, Padding::Longest);
        let shape = [b.rows, b.cols];
        let types = b.token_type_ids();
        fn tensor(shape: [usize; 2], data: &[i64]) -> Result<TensorRef<'_, i64>, String> {
            TensorRef::from_array_view((shape, data)).map_err(|e| format!("minilm input: {e}"))
        }
        let outputs = self
            .session
            .run(vx_models::ort::inputs![
                "input_ids" => tensor(shape, &b.input_ids)?,
                "attention_mask" => tensor(shape, &b.attention_mask)?,
                "token_type_ids" => tensor(shape, &types)?,
            ])
            .map_err(|e| format!("minilm failed: {e}"))?;
        let (shape, data) = outputs["sentence_embedding"]
            .try_extract_tensor::<f32>()
            .map_err(|e| format!("minilm output: {e}"))?;
        if **shape != [b.rows as i64, DIMS as i64] {
            return Err(format!("minilm output has shape {shape:?}").into());
        }
        Ok(data.chunks_exact(DIMS).map(<[f32]>::to_vec).collect())
    }
}

impl Plugin for TextEmbed {
    fn name(&self) -> &str {
        "text-embed"
    }

    fn version(&self) -> &str {
        "1+all-MiniLM-L6-v2"
    }

    fn needs(&self) -> Needs {
        Needs::text_embedding(DIMS as u32)
    }

    fn process(&mut self, _input: &JobInput<'_>) -> Result<PluginOutput, PluginError> {
        Err("text-embed reads no files: vxd sends it texts to embed".into())
    }

    fn embed(&mut self, texts: &[String]) -> Result<Vec<Vec<f32>>, PluginError> {
        self.embed_all(texts)
    }
}
