//! Speech-to-text for the far end's turns, after the call (never on the
//! call's hot path: the call's timing is the same with it on or off).
//!
//! Owns the choice of engine (`--stt`, `CALLPROBE_STT`: `auto`, `whisper`,
//! `http`, `off`), the [`Transcriber`] interface both engines implement, and
//! transcribing a call's turns. Engines: [`whisper`] (embedded, offline,
//! Whisper tiny.en through CTranslate2) and [`http`] (any server speaking the
//! OpenAI-compatible `POST /v1/audio/transcriptions`).

pub mod http;
#[cfg(feature = "whisper")]
mod mel;
pub mod whisper;

use std::path::PathBuf;
use std::sync::Arc;

use crate::audio::recording::samples_in;
use crate::audio::turns::Turn;
use crate::media::session::RECORDING_RATE;
use crate::secret::{Secret, SecretError};

/// Turns shorter than this are not sent to the engine (a click, a breath).
const MIN_TURN_SAMPLES: usize = RECORDING_RATE as usize / 5;

/// What an engine heard in one turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transcript {
    pub text: String,
    /// Which engine (and model) produced it, e.g. `whisper tiny.en`.
    pub engine: String,
}

#[derive(Debug, thiserror::Error)]
pub enum TranscribeError {
    #[error("{0}")]
    Unavailable(String),
    #[error("{engine}: {detail}")]
    Failed { engine: String, detail: String },
}

/// A speech-to-text engine: 16 kHz mono PCM in, text out.
pub trait Transcriber: Send + Sync {
    /// How reports name it.
    fn engine(&self) -> String;
    fn transcribe(&self, pcm_16k: &[i16]) -> Result<String, TranscribeError>;
}

/// Which engine the user asked for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum EngineChoice {
    /// The embedded engine when its model is installed, else none.
    #[default]
    Auto,
    Whisper,
    Http,
    Off,
}

impl EngineChoice {
    pub fn parse(text: &str) -> Result<EngineChoice, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Ok(EngineChoice::Auto),
            "whisper" => Ok(EngineChoice::Whisper),
            "http" => Ok(EngineChoice::Http),
            "off" | "none" => Ok(EngineChoice::Off),
            other => Err(format!("'{other}' is not a speech-to-text engine: auto, whisper, http or off")),
        }
    }
}

/// Everything that picks and configures the engine (flags over env).
#[derive(Debug, Clone, Default)]
pub struct SttSettings {
    pub choice: EngineChoice,
    /// Whisper model directory (CTranslate2 format); default: [`whisper::default_model_dir`].
    pub model_dir: Option<PathBuf>,
    /// HTTP engine: the server's base URL (`http://127.0.0.1:8000` → `…/v1/audio/transcriptions`).
    pub url: Option<String>,
    /// HTTP engine: the `model` form field.
    pub http_model: Option<String>,
    /// HTTP engine: where the API key is read from (env var or file).
    pub api_key: Option<crate::request::SecretRef>,
}

impl SttSettings {
    /// From `CALLPROBE_STT`, `CALLPROBE_STT_MODEL`, `CALLPROBE_STT_URL`,
    /// `CALLPROBE_STT_HTTP_MODEL`, `CALLPROBE_STT_API_KEY` (the variable
    /// holding the key) or `CALLPROBE_STT_API_KEY_FILE`.
    pub fn from_env() -> Result<SttSettings, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let choice = match var("CALLPROBE_STT") {
            Some(v) => EngineChoice::parse(&v).map_err(|e| format!("CALLPROBE_STT: {e}"))?,
            None => EngineChoice::Auto,
        };
        let api_key = match (var("CALLPROBE_STT_API_KEY_FILE"), std::env::var_os("CALLPROBE_STT_API_KEY")) {
            (Some(file), _) => Some(crate::request::SecretRef::File(file.into())),
            (None, Some(_)) => Some(crate::request::SecretRef::Env("CALLPROBE_STT_API_KEY".into())),
            (None, None) => None,
        };
        Ok(SttSettings {
            choice,
            model_dir: var("CALLPROBE_STT_MODEL").map(PathBuf::from),
            url: var("CALLPROBE_STT_URL"),
            http_model: var("CALLPROBE_STT_HTTP_MODEL"),
            api_key,
        })
    }

    /// The engine, or `None` when off (or `auto` without a model). A choice
    /// that cannot be honoured is an error naming what is missing.
    pub fn engine(&self) -> Result<Option<Box<dyn Transcriber>>, TranscribeError> {
        match self.choice {
            EngineChoice::Off => Ok(None),
            EngineChoice::Http => {
                let url = self.url.clone().ok_or_else(|| {
                    TranscribeError::Unavailable(
                        "the http speech-to-text engine needs a server: set CALLPROBE_STT_URL (or --stt-url)".into(),
                    )
                })?;
                let key = match &self.api_key {
                    None => None,
                    Some(r) => Some(r.read().map_err(|e: SecretError| {
                        TranscribeError::Unavailable(format!("speech-to-text API key: {e}"))
                    })?),
                };
                Ok(Some(Box::new(http::HttpTranscriber::new(url, self.http_model.clone(), key))))
            }
            EngineChoice::Whisper => Ok(Some(whisper::load(self.model_dir.as_deref())?)),
            EngineChoice::Auto => match whisper::load(self.model_dir.as_deref()) {
                Ok(engine) => Ok(Some(engine)),
                Err(_) => Ok(None),
            },
        }
    }
}

/// The engine a run uses (loaded once), or why there is none.
#[derive(Clone)]
pub struct Stt {
    engine: Option<Arc<dyn Transcriber>>,
    why_none: String,
}

impl Stt {
    /// Loads the engine `settings` ask for; an engine asked for by name that
    /// cannot be loaded is an error (the tester cannot do what it was told).
    pub fn open(settings: &SttSettings) -> Result<Stt, TranscribeError> {
        let engine = settings.engine()?.map(Arc::from);
        Ok(Stt { engine, why_none: why_no_engine(settings) })
    }

    /// No engine, for this reason.
    pub fn none(why: impl Into<String>) -> Stt {
        Stt { engine: None, why_none: why.into() }
    }

    pub fn engine(&self) -> Option<Arc<dyn Transcriber>> {
        self.engine.clone()
    }

    pub fn why_none(&self) -> &str {
        &self.why_none
    }
}

impl std::fmt::Debug for Stt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.engine {
            Some(e) => write!(f, "Stt({})", e.engine()),
            None => write!(f, "Stt(none: {})", self.why_none),
        }
    }
}

/// Why a call's turns have no text, for the report when there is no engine.
pub fn why_no_engine(settings: &SttSettings) -> String {
    match settings.choice {
        EngineChoice::Off => "speech-to-text is off (--stt off)".into(),
        _ => format!(
            "no speech-to-text engine: the Whisper model is not installed ({}); run scripts/install-stt-model, or use --stt http with an OpenAI-compatible server",
            whisper::model_dir_hint(settings.model_dir.as_deref())
        ),
    }
}

/// Transcribes each turn of `rx` (16 kHz, t0 at sample 0). Turns too short
/// to hold a word get an empty text; an engine error is that turn's result.
pub fn transcribe_turns(
    engine: &dyn Transcriber,
    rx_16k: &[i16],
    turns: &[Turn],
) -> Vec<Result<Transcript, TranscribeError>> {
    turns
        .iter()
        .map(|turn| {
            let from = samples_in(turn.start.since_start(), RECORDING_RATE).min(rx_16k.len());
            let to = samples_in(turn.end.since_start(), RECORDING_RATE).clamp(from, rx_16k.len());
            let pcm = &rx_16k[from..to];
            let text = if pcm.len() < MIN_TURN_SAMPLES { Ok(String::new()) } else { engine.transcribe(pcm) };
            text.map(|text| Transcript { text: text.trim().to_string(), engine: engine.engine() })
        })
        .collect()
}

/// The key, for engines that send one; never logged.
pub(crate) fn bearer(key: &Option<Secret>) -> Option<String> {
    key.as_ref().map(|k| format!("Bearer {}", k.expose()))
}
