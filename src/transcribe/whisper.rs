//! The embedded speech-to-text engine: Whisper tiny.en in CTranslate2
//! format, run in-process through `ct2rs`'s low-level model (int8, one
//! thread, CPU) with Whisper's own front end (`super::mel`), offline.
//!
//! Why this engine (measured here, 2 cores): no ggml Whisper model is
//! available from the package registries this project may use, and the
//! engines that fetch models at run time do not work offline; the
//! CTranslate2 tiny.en model ships in a PyPI package (see
//! `scripts/install-stt-model`), transcribes a 1–5 s telephone utterance in
//! about 1.1 s of CPU (the encoder always sees a 30 s window), and its word
//! error rate on 12 phone-agent sentences in 3 voices was 9.6 % over G.711
//! and 3.8 % over G.722 (festival slt, our fixtures' voice: 5.2 / 2.6 %).
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
    use super::super::mel::{LogMel, N_FRAMES, N_SAMPLES};
    use super::*;
    use ct2rs::tokenizers::hf::Tokenizer as HfTokenizer;
    use ct2rs::{sys, ComputeType, Config, Tokenizer, WhisperOptions};

    /// A window whose first token is "no speech" with at least this
    /// probability is silence or a tone (measured: 0.68–0.93 for those,
    /// at most 0.49 for speech); Whisper would otherwise invent words.
    const NO_SPEECH: f32 = 0.6;

    /// The model, its tokenizer and the front end. CTranslate2's model is
    /// not `Sync`: one transcription at a time.
    pub struct WhisperTranscriber {
        model: Mutex<sys::Whisper>,
        tokenizer: HfTokenizer,
        mel: LogMel,
    }

    pub fn load(dir: &Path) -> Result<Box<dyn Transcriber>, TranscribeError> {
        let unavailable = |what: &str, e: &dyn std::fmt::Display| {
            TranscribeError::Unavailable(format!("cannot load the Whisper {what} in {}: {e}", dir.display()))
        };
        let config = Config {
            // The weights are float16; without int8 they silently become float32 (18 % more CPU).
            compute_type: ComputeType::INT8,
            // One thread: the least CPU per utterance on 2 cores (CTranslate2's default was the worst).
            num_threads_per_replica: 1,
            ..Default::default()
        };
        let model = sys::Whisper::new(dir, config).map_err(|e| unavailable("model", &e))?;
        let tokenizer = HfTokenizer::new(dir).map_err(|e| unavailable("tokenizer", &e))?;
        let mel = LogMel::new(model.n_mels());
        Ok(Box::new(WhisperTranscriber { model: Mutex::new(model), tokenizer, mel }))
    }

    impl Transcriber for WhisperTranscriber {
        fn engine(&self) -> String {
            ENGINE_NAME.to_string()
        }

        fn transcribe(&self, pcm_16k: &[i16]) -> Result<String, TranscribeError> {
            let fail = |detail: String| TranscribeError::Failed { engine: ENGINE_NAME.into(), detail };
            let samples: Vec<f32> = pcm_16k.iter().map(|s| f32::from(*s) / 32768.0).collect();
            // An English-only model takes no language or task tokens.
            let prompt = vec!["<|startoftranscript|>".to_string(), "<|notimestamps|>".to_string()];
            let options = WhisperOptions { beam_size: 1, return_no_speech_prob: true, ..Default::default() };
            let model = self.model.lock().map_err(|_| fail("an earlier transcription panicked".into()))?;
            let mut text = String::new();
            for window in samples.chunks(N_SAMPLES) {
                let mut features = self.mel.compute(window);
                let view = sys::StorageView::new(&[1, self.mel.n_mels(), N_FRAMES], &mut features, Default::default())
                    .map_err(|e| fail(e.to_string()))?;
                let results =
                    model.generate(&view, std::slice::from_ref(&prompt), &options).map_err(|e| fail(e.to_string()))?;
                let Some(result) = results.into_iter().next() else { continue };
                if result.no_speech_prob >= NO_SPEECH {
                    continue;
                }
                if let Some(tokens) = result.sequences.into_iter().next() {
                    let words = self.tokenizer.decode(tokens).map_err(|e| fail(e.to_string()))?;
                    text.push_str(words.trim());
                    text.push(' ');
                }
            }
            Ok(text.trim().to_string())
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
