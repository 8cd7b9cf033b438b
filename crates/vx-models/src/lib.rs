//! Models: the manifest (`models/manifest.toml`, embedded here), where an
//! installed model lives, and the one way vx opens an ONNX Runtime session.
//!
//! Fetching, converting and verifying models is `models/vxmodels.py`'s job;
//! this crate only finds the results. A model that is not installed is an
//! error naming the command that installs it, never a panic.
//!
//! Every session is built the same way ([`onnx_session`]): graph optimisation
//! at the highest level (+29–38 % on NanoDet, measured), a small intra-op
//! thread count because several hosts share the machine, and the CPU
//! provider; the `cuda` and `tensorrt` features put GPU providers in front
//! of it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;

pub use ort;

/// The manifest as built into this binary.
pub const MANIFEST: &str = include_str!("../../../models/manifest.toml");
/// The ONNX Runtime release vx is built against (`api-31`), from the PyPI wheel.
pub const ORT_VERSION: &str = "1.31.1";
/// What installs missing models.
pub const FETCH_HINT: &str = "scripts/setup.sh (or models/vxmodels.py fetch)";

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model {name} is not installed (no {path}): run {FETCH_HINT}")]
    NotInstalled { name: String, path: PathBuf },
    #[error(
        "model {name} at {path} is {actual} bytes, expected {expected}: run {FETCH_HINT} to fetch it again"
    )]
    WrongSize {
        name: String,
        path: PathBuf,
        actual: u64,
        expected: u64,
    },
    #[error("unknown model {0:?}: not in models/manifest.toml")]
    Unknown(String),
    #[error("ONNX Runtime {ORT_VERSION} is not installed (no {0}): run scripts/setup.sh")]
    RuntimeMissing(PathBuf),
    #[error("cannot load ONNX Runtime from {path}: {message}")]
    Runtime { path: PathBuf, message: String },
    #[error("cannot open model {name}: {message}")]
    Session { name: String, message: String },
}

impl ModelError {
    /// Model `name` could not be opened, or is not what the code expects.
    pub fn session(name: &str, message: impl Into<String>) -> Self {
        ModelError::Session {
            name: name.to_owned(),
            message: message.into(),
        }
    }
}

/// The name of `session`'s first input, after checking that it is a tensor
/// of exactly `shape`: a model with other fixed dimensions than the code
/// feeds is an error when it opens, not on the first frame.
pub fn tensor_input<'s>(
    session: &'s ort::session::Session,
    model: &str,
    shape: &[i64],
) -> Result<&'s str, ModelError> {
    let input = session.inputs().first();
    let (Some(input), Some(actual)) = (input, input.and_then(|i| i.dtype().tensor_shape())) else {
        return Err(ModelError::session(model, "the model has no tensor input"));
    };
    if **actual != *shape {
        return Err(ModelError::session(
            model,
            format!("input {} is {actual:?}, expected {shape:?}", input.name()),
        ));
    }
    Ok(input.name())
}

#[derive(Debug, Clone, Deserialize)]
pub struct ModelSpec {
    pub name: String,
    pub task: String,
    pub file: String,
    pub sha256: String,
    pub size: u64,
    pub license: String,
    #[serde(default)]
    pub default: bool,
    /// The plugin that cannot start without this model, for default models.
    #[serde(default)]
    pub plugin: Option<String>,
}

#[derive(Deserialize)]
struct Manifest {
    model: Vec<ModelSpec>,
}

/// Every model in the manifest.
pub fn manifest() -> &'static [ModelSpec] {
    static PARSED: OnceLock<Vec<ModelSpec>> = OnceLock::new();
    PARSED.get_or_init(|| {
        toml::from_str::<Manifest>(MANIFEST)
            .expect("models/manifest.toml parses")
            .model
    })
}

pub fn spec(name: &str) -> Result<&'static ModelSpec, ModelError> {
    manifest()
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| ModelError::Unknown(name.to_owned()))
}

/// `cache_dir/models`, where `vxmodels.py` installs.
pub fn models_dir(cache_dir: &Path) -> PathBuf {
    cache_dir.join("models")
}

/// The installed file of model `name`. Checks presence and size (cheap);
/// `vxmodels.py verify` checks the sha256.
pub fn model_path(name: &str, cache_dir: &Path) -> Result<PathBuf, ModelError> {
    let spec = spec(name)?;
    let path = models_dir(cache_dir).join(&spec.file);
    let meta = std::fs::metadata(&path).map_err(|_| ModelError::NotInstalled {
        name: name.to_owned(),
        path: path.clone(),
    })?;
    if meta.len() != spec.size {
        return Err(ModelError::WrongSize {
            name: name.to_owned(),
            path,
            actual: meta.len(),
            expected: spec.size,
        });
    }
    Ok(path)
}

/// Why `plugin` cannot start here: its first default model that is missing or
/// damaged. `None` when everything it needs is installed.
pub fn missing_for_plugin(plugin: &str, cache_dir: &Path) -> Option<ModelError> {
    manifest()
        .iter()
        .filter(|m| m.default && m.plugin.as_deref() == Some(plugin))
        .find_map(|m| model_path(&m.name, cache_dir).err())
        .or_else(|| {
            let needs_runtime = manifest()
                .iter()
                .any(|m| m.plugin.as_deref() == Some(plugin) && m.file.ends_with(".onnx"));
            let lib = runtime_path(cache_dir);
            (needs_runtime && !lib.exists()).then_some(ModelError::RuntimeMissing(lib))
        })
}

/// Whether every file of `names` is installed.
pub fn installed(names: &[&str], cache_dir: &Path) -> bool {
    names.iter().all(|n| model_path(n, cache_dir).is_ok())
}

/// Where setup puts the ONNX Runtime library; `ORT_DYLIB_PATH` overrides it.
pub fn runtime_path(cache_dir: &Path) -> PathBuf {
    match std::env::var_os("ORT_DYLIB_PATH") {
        Some(p) => PathBuf::from(p),
        None => cache_dir
            .join("onnxruntime")
            .join(format!("libonnxruntime.so.{ORT_VERSION}")),
    }
}

/// Loads ONNX Runtime once per process.
pub fn runtime(cache_dir: &Path) -> Result<&'static ort::environment::Environment, ModelError> {
    static ENV: OnceLock<ort::environment::Environment> = OnceLock::new();
    if let Some(env) = ENV.get() {
        return Ok(env);
    }
    let path = runtime_path(cache_dir);
    if !path.exists() {
        return Err(ModelError::RuntimeMissing(path));
    }
    let runtime_err = |message: String| ModelError::Runtime {
        path: path.clone(),
        message,
    };
    let env = ort::init_from(&path).map_err(|e| runtime_err(e.to_string()))?;
    let env = env
        .with_name("vx")
        .build()
        .map_err(|e| runtime_err(e.to_string()))?;
    Ok(ENV.get_or_init(|| env))
}

/// Opens model `name` with vx's session settings and `threads` intra-op threads.
pub fn onnx_session(
    name: &str,
    cache_dir: &Path,
    threads: usize,
) -> Result<ort::session::Session, ModelError> {
    onnx_session_at(name, cache_dir, threads, GraphOptimizationLevel::Level3)
}

pub use ort::session::builder::GraphOptimizationLevel;

/// [`onnx_session`] at another graph optimisation level; for benchmarks
/// that compare levels.
pub fn onnx_session_at(
    name: &str,
    cache_dir: &Path,
    threads: usize,
    level: GraphOptimizationLevel,
) -> Result<ort::session::Session, ModelError> {
    let path = model_path(name, cache_dir)?;
    let env = runtime(cache_dir)?;
    let err = |message: String| ModelError::session(name, message);
    let builder = ort::session::Session::builder(env).map_err(|e| err(e.to_string()))?;
    #[cfg(feature = "cuda")]
    let builder = builder
        .with_execution_providers([
            #[cfg(feature = "tensorrt")]
            ort::ep::TensorRT::default().build(),
            ort::ep::CUDA::default().build(),
        ])
        .map_err(|e| err(e.to_string()))?;
    builder
        .with_optimization_level(level)
        .map_err(|e| err(e.to_string()))?
        .with_intra_threads(threads.max(1))
        .map_err(|e| err(e.to_string()))?
        .with_inter_threads(1)
        .map_err(|e| err(e.to_string()))?
        .commit_from_file(&path)
        .map_err(|e| err(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_is_complete_and_consistent() {
        let m = manifest();
        assert!(m.len() >= 8);
        for spec in m {
            assert_eq!(spec.sha256.len(), 64, "{}", spec.name);
            assert!(
                spec.sha256.bytes().all(|b| b.is_ascii_hexdigit()),
                "{}",
                spec.name
            );
            assert!(spec.size > 0, "{}", spec.name);
            assert!(!spec.license.is_empty(), "{}", spec.name);
        }
        let mut names: Vec<_> = m.iter().map(|s| &s.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), m.len(), "duplicate model names");
    }

    #[test]
    fn a_plugin_is_missing_its_first_absent_model_and_nothing_without_models() {
        let dir = tempfile::tempdir().unwrap();
        let err = missing_for_plugin("ocr", dir.path()).unwrap().to_string();
        assert!(err.contains("model ppocr-v4-det is not installed"), "{err}");
        assert!(missing_for_plugin("keyframes", dir.path()).is_none());
    }

    #[test]
    fn a_missing_model_says_how_to_install_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = model_path("silero-vad", dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model silero-vad is not installed") && err.contains("scripts/setup.sh"),
            "{err}"
        );
        std::fs::create_dir_all(models_dir(dir.path())).unwrap();
        std::fs::write(models_dir(dir.path()).join("silero_vad.onnx"), b"short").unwrap();
        let err = model_path("silero-vad", dir.path())
            .unwrap_err()
            .to_string();
        assert!(err.contains("is 5 bytes"), "{err}");
        assert!(matches!(
            model_path("nope", dir.path()),
            Err(ModelError::Unknown(_))
        ));
    }
}
