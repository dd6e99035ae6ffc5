//! The embedded speech-to-text engine (placeholder until the CTranslate2
//! build lands): Whisper tiny.en.

use std::path::{Path, PathBuf};

use super::{TranscribeError, Transcriber};

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

pub fn load(model_dir: Option<&Path>) -> Result<Box<dyn Transcriber>, TranscribeError> {
    Err(TranscribeError::Unavailable(format!(
        "the embedded Whisper engine is not built in ({})",
        model_dir_hint(model_dir)
    )))
}
