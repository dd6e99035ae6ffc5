//! A scripted conversation as the user writes it (scenario `[[step]]`
//! tables, or `callprobe call --say/--expect-said`): the steps, what each
//! expects of the words heard, and their defaults. Part of the
//! [`crate::request::CallRequest`]; prepared (clips read, text spoken by the
//! offline TTS) into the [`crate::media::script`] the media session runs.

use std::path::PathBuf;
use std::time::Duration;

use crate::audio::turns::DEFAULT_END_OF_TURN;

/// How long a step waits for the far end when the user gives no deadline.
pub const DEFAULT_TURN_WITHIN: Duration = Duration::from_secs(10);
/// Barge-in: how long into the far end's turn we start talking.
pub const DEFAULT_BARGE_IN_AFTER: Duration = Duration::from_secs(1);
/// Barge-in: how fast the far end must stop talking once we talk over it.
pub const DEFAULT_STOP_WITHIN: Duration = Duration::from_millis(1500);
/// Similarity needed by `expect_like` when none is given.
pub const DEFAULT_SIMILARITY: f64 = 0.8;

/// The steps of one call's conversation.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub steps: Vec<StepRequest>,
    /// Silence that ends the far end's turn.
    pub end_of_turn: Duration,
}

impl Default for Conversation {
    fn default() -> Self {
        Conversation { steps: Vec::new(), end_of_turn: DEFAULT_END_OF_TURN }
    }
}

/// Where a step was written, for messages (`file:line:col` or `--say`).
pub type Origin = String;

/// One step as written.
#[derive(Debug, Clone, PartialEq)]
pub struct StepRequest {
    pub action: StepAction,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StepAction {
    /// Wait for the agent's turn; it must start within `within`.
    AgentTurn {
        within: Duration,
        expect: Option<SaidExpectation>,
    },
    Say(Utterance),
    /// DTMF keys (`0-9 * # A-D`), sent as RFC 4733 events when the far end
    /// offered telephone-event, else as in-band tones.
    Dtmf(String),
    Wait(Duration),
    /// Say nothing for this long; the far end must not speak either.
    Silence(Duration),
    /// While the agent talks (`after` into its turn, which must start
    /// within `within`), say `utterance`; the agent must stop within
    /// `stop_within` of us starting.
    BargeIn {
        utterance: Utterance,
        after: Duration,
        within: Duration,
        stop_within: Duration,
    },
    HangUp,
}

/// What we say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Utterance {
    /// A WAV file (any rate; read when the call is prepared).
    Wav(PathBuf),
    /// Text, spoken by the offline TTS when the call is prepared (cached).
    Text(String),
}

impl Utterance {
    /// How reports name it.
    pub fn label(&self) -> String {
        match self {
            Utterance::Wav(p) => p.file_name().map_or_else(|| p.display().to_string(), |n| n.to_string_lossy().into()),
            Utterance::Text(t) => format!("\"{t}\""),
        }
    }
}

/// What the agent's turn must say (matched against its transcript).
#[derive(Debug, Clone, PartialEq)]
pub enum SaidExpectation {
    /// A regular expression, case-insensitive.
    Regex(String),
    /// At least one of these words or phrases, case-insensitive.
    AnyOf(Vec<String>),
    /// Close to this sentence: word-level similarity (1 − word error rate,
    /// after normalising case, punctuation and numbers) at least `min`.
    Like { text: String, min: f64 },
}

impl SaidExpectation {
    /// How details and reports state it.
    pub fn describe(&self) -> String {
        match self {
            SaidExpectation::Regex(r) => format!("/{r}/"),
            SaidExpectation::AnyOf(words) => {
                format!("any of {}", words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(", "))
            }
            SaidExpectation::Like { text, min } => format!("like '{text}' (similarity ≥ {min:.2})"),
        }
    }
}
