//! The embedded speech-to-text engine: Whisper tiny.en in CTranslate2
//! format, run in-process through `ct2rs` (int8, CPU), offline.
//!
//! Why this engine (measured here, 2 cores): no ggml Whisper model is
//! available from the package registries this project may use, and the
//! engines that fetch models at run time do not work offline; the
//! CTranslate2 tiny.en model ships in a PyPI package (see
//! `scripts/install-stt-model`), transcribes a 2–4 s telephone utterance in
//! about 1 s of CPU (0.45 CPU-s per audio-s), and its word error rate over
//! G.711 on the festival voice of our fixtures is a few percent.
//!
//! The model directory holds `model.bin`, `config.json`, `tokenizer.json`,
//! `vocabulary.txt` and `preprocessor_config.json`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::{TranscribeError, Transcriber};

/// What reports call this engine.
pub const ENGINE_NAME: &str = "whisper tiny.en";
const MODEL_FILES: [&str; 4] = ["model.bin", "config.json", "tokenizer.json", "preprocessor_config.json"];

/// Where `scripts/install-stt-model` puts the model.
pub fn default_model_dir() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("callprobe").join("models").join("whisper-tiny.en"))
}

/// The directory looked in, for messages.
pub fn model_dir_hint(configured: Option<&Path>) -> String {
    configured.map(Path::to_path_buf).or_else(default_model_dir).map_or_else(
        || "no model directory: set CALLPROBE_STT_MODEL".to_string(),
        |d| format!("looked in {}", d.display()),
    )
}

/// Loads the model from `model_dir` (default: [`default_model_dir`]).
pub fn load(model_dir: Option<&Path>) -> Result<Box<dyn Transcriber>, TranscribeError> {
    let dir = model_dir.map(Path::to_path_buf).or_else(default_model_dir).ok_or_else(|| {
        TranscribeError::Unavailable("no Whisper model directory: set CALLPROBE_STT_MODEL or HOME".into())
    })?;
    let missing: Vec<&str> = MODEL_FILES.iter().copied().filter(|f| !dir.join(f).is_file()).collect();
    if !missing.is_empty() {
        return Err(TranscribeError::Unavailable(format!(
            "no Whisper model in {} (missing {}): run scripts/install-stt-model",
            dir.display(),
            missing.join(", ")
        )));
    }
    engine::load(&dir)
}

#[cfg(feature = "whisper")]
mod engine {
    use super::*;
    use ct2rs::{ComputeType, Config, Whisper, WhisperOptions};

    /// ct2rs's model is not `Sync`: one transcription at a time.
    pub struct WhisperTranscriber {
        model: Mutex<Whisper>,
    }

    pub fn load(dir: &Path) -> Result<Box<dyn Transcriber>, TranscribeError> {
        let config = Config {
            compute_type: ComputeType::INT8,
            // 0: CTranslate2's default (up to 4 threads, capped by the cores).
            num_threads_per_replica: 0,
            ..Default::default()
        };
        let model = Whisper::new(dir, config).map_err(|e| {
            TranscribeError::Unavailable(format!("cannot load the Whisper model in {}: {e}", dir.display()))
        })?;
        Ok(Box::new(WhisperTranscriber { model: Mutex::new(model) }))
    }

    impl Transcriber for WhisperTranscriber {
        fn engine(&self) -> String {
            ENGINE_NAME.to_string()
        }

        fn transcribe(&self, pcm_16k: &[i16]) -> Result<String, TranscribeError> {
            let samples: Vec<f32> = pcm_16k.iter().map(|s| f32::from(*s) / 32768.0).collect();
            let options = WhisperOptions { beam_size: 1, ..Default::default() };
            let model = self.model.lock().map_err(|_| TranscribeError::Failed {
                engine: ENGINE_NAME.into(),
                detail: "the model lock is poisoned (an earlier transcription panicked)".into(),
            })?;
            let parts = model
                .generate(&samples, Some("en"), false, &options)
                .map_err(|e| TranscribeError::Failed { engine: ENGINE_NAME.into(), detail: e.to_string() })?;
            Ok(parts.join(" ").trim().to_string())
        }
    }
}

#[cfg(not(feature = "whisper"))]
mod engine {
    use super::*;

    pub fn load(dir: &Path) -> Result<Box<dyn Transcriber>, TranscribeError> {
        let _ = (dir, Mutex::new(()));
        Err(TranscribeError::Unavailable(
            "this callprobe was built without the embedded Whisper engine (cargo feature `whisper`)".into(),
        ))
    }
}
