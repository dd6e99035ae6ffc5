//! A scripted conversation as the user writes it (scenario `[[step]]`
//! tables, or `callprobe call --say/--expect-said`): the steps, what each
//! expects of the words heard, and their defaults. Part of the
//! [`crate::request::CallRequest`]; prepared by [`prepare_script`] (clips
//! read, text spoken by the offline [`crate::tts`]) into the
//! [`crate::media::script`] the media session runs. Also the checks both
//! front ends share: DTMF keys ([`dtmf_keys`]) and `expect_said` regular
//! expressions ([`said_regex`]).

use std::path::PathBuf;
use std::time::Duration;

use crate::audio::turns::DEFAULT_END_OF_TURN;
use crate::audio::wav::{self, WavError};
use crate::media::script::{Clip, Script, ScriptStep};
use crate::media::session::RECORDING_RATE;
use crate::tts::{self, TtsError};

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

impl Conversation {
    /// Whether a step expects words, so the far end's turns must be transcribed.
    pub fn expects_words(&self) -> bool {
        self.steps.iter().any(|s| matches!(s.action, StepAction::AgentTurn { expect: Some(_), .. }))
    }
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

/// The DTMF keys there are, for messages.
pub const DTMF_KEYS: &str = "0-9, *, # and A-D";

/// A DTMF key we cannot send; `offset` is its byte offset in the text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DtmfKeyError {
    #[error("no DTMF keys")]
    Empty,
    #[error("'{key}' is not a DTMF key")]
    NotAKey { key: char, offset: usize },
}

/// DTMF keys as sent: `0-9 * # A-D` (`a-d` are taken as `A-D`).
pub fn dtmf_keys(text: &str) -> Result<String, DtmfKeyError> {
    if text.is_empty() {
        return Err(DtmfKeyError::Empty);
    }
    text.char_indices()
        .map(|(offset, key)| match key.to_ascii_uppercase() {
            k @ ('0'..='9' | '*' | '#' | 'A'..='D') => Ok(k),
            _ => Err(DtmfKeyError::NotAKey { key, offset }),
        })
        .collect()
}

/// An `expect_said` pattern compiled as it is matched: case-insensitive.
/// The error is one line (the `regex` crate's own is several, with a caret).
pub fn said_regex(pattern: &str) -> Result<regex::Regex, String> {
    regex::RegexBuilder::new(pattern).case_insensitive(true).build().map_err(|e| match e {
        regex::Error::Syntax(text) => {
            let reason = text.lines().rev().find_map(|l| l.trim().strip_prefix("error:")).map(str::trim);
            reason.unwrap_or("invalid syntax").to_string()
        }
        regex::Error::CompiledTooBig(limit) => format!("it compiles to more than {limit} bytes"),
        other => other.to_string(),
    })
}

/// A step whose audio could not be made ready; names where it was written.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {problem}")]
pub struct ConversationError {
    pub origin: Origin,
    pub problem: ClipError,
}

/// Why a clip could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    #[error("{}: {error}", path.display())]
    Wav { path: PathBuf, error: WavError },
    #[error("{} holds no audio", path.display())]
    EmptyWav { path: PathBuf },
    #[error("cannot speak {text:?}: {error}")]
    Tts { text: String, error: TtsError },
}

/// The conversation ready to run: each `Say`/`BargeIn` gets a clip of its
/// own (read from its WAV at 16 kHz, or spoken by the offline TTS, which
/// caches), steps refer to clips by index, and the call hangs up after the
/// last step. What is checked after the call (expectations of what was
/// said, `stop_within`) stays in the request: step `i` of the script is
/// step `i` of the conversation.
pub fn prepare_script(conv: &Conversation) -> Result<Script, ConversationError> {
    let mut clips = Vec::new();
    let mut steps = Vec::with_capacity(conv.steps.len());
    for step in &conv.steps {
        let mut clip_of = |utterance: &Utterance| -> Result<usize, ConversationError> {
            let pcm_16k = utterance_pcm(utterance)
                .map_err(|problem| ConversationError { origin: step.origin.clone(), problem })?;
            clips.push(Clip::new(utterance.label(), pcm_16k));
            Ok(clips.len() - 1)
        };
        steps.push(match &step.action {
            StepAction::AgentTurn { within, .. } => ScriptStep::AgentTurn { within: *within },
            StepAction::Say(utterance) => ScriptStep::Say { clip: clip_of(utterance)? },
            StepAction::Dtmf(digits) => ScriptStep::Dtmf { digits: digits.clone() },
            StepAction::Wait(d) => ScriptStep::Wait(*d),
            StepAction::Silence(d) => ScriptStep::Silence(*d),
            StepAction::BargeIn { utterance, after, within, .. } => {
                ScriptStep::BargeIn { clip: clip_of(utterance)?, after: *after, within: *within }
            }
            StepAction::HangUp => ScriptStep::HangUp,
        });
    }
    Ok(Script { steps, clips, end_of_turn: conv.end_of_turn, hang_up_at_end: true })
}

/// What an utterance sounds like, mono at 16 kHz.
fn utterance_pcm(utterance: &Utterance) -> Result<Vec<i16>, ClipError> {
    match utterance {
        Utterance::Wav(path) => {
            let pcm =
                wav::load_mono(path, RECORDING_RATE).map_err(|error| ClipError::Wav { path: path.clone(), error })?;
            if pcm.is_empty() {
                return Err(ClipError::EmptyWav { path: path.clone() });
            }
            Ok(pcm)
        }
        Utterance::Text(text) => tts::speak(text).map_err(|error| ClipError::Tts { text: text.clone(), error }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name)
    }

    fn step(action: StepAction, origin: &str) -> StepRequest {
        StepRequest { action, origin: origin.into() }
    }

    #[test]
    fn dtmf_keys_are_checked_and_upper_cased() {
        assert_eq!(dtmf_keys("0123456789*#ABCD").as_deref(), Ok("0123456789*#ABCD"));
        assert_eq!(dtmf_keys("1a#").as_deref(), Ok("1A#"));
        assert_eq!(dtmf_keys(""), Err(DtmfKeyError::Empty));
        assert_eq!(dtmf_keys("12 3"), Err(DtmfKeyError::NotAKey { key: ' ', offset: 2 }));
        assert_eq!(dtmf_keys("1é9"), Err(DtmfKeyError::NotAKey { key: 'é', offset: 1 }));
        assert_eq!(dtmf_keys("E").map_err(|e| e.to_string()), Err("'E' is not a DTMF key".into()));
    }

    #[test]
    fn said_regexes_are_case_insensitive_and_errors_are_one_line() {
        let re = said_regex("callprobe test line").unwrap_or_else(|e| panic!("{e}"));
        assert!(re.is_match("Thank you for calling the CallProbe Test Line."));
        assert_eq!(said_regex("(order").err().as_deref(), Some("unclosed group"));
        assert_eq!(
            said_regex("a{2,1}").err().as_deref(),
            Some("invalid repetition count range, the start must be <= the end")
        );
    }

    #[test]
    fn a_conversation_becomes_a_script_with_a_clip_per_utterance() {
        let hello = fixture("hello_can_you_hear_me_16k.wav");
        let conv = Conversation {
            steps: vec![
                step(StepAction::AgentTurn { within: Duration::from_secs(3), expect: None }, "a:1:1"),
                step(StepAction::Say(Utterance::Wav(hello.clone())), "a:3:1"),
                step(StepAction::Dtmf("1#".into()), "a:5:1"),
                step(StepAction::Wait(Duration::from_millis(500)), "a:7:1"),
                step(StepAction::Silence(Duration::from_secs(2)), "a:9:1"),
                step(
                    StepAction::BargeIn {
                        utterance: Utterance::Wav(fixture("hello_test_caller_tell_me_the_time_8k.wav")),
                        after: DEFAULT_BARGE_IN_AFTER,
                        within: DEFAULT_TURN_WITHIN,
                        stop_within: DEFAULT_STOP_WITHIN,
                    },
                    "a:11:1",
                ),
                // The same WAV again: a clip of its own.
                step(StepAction::Say(Utterance::Wav(hello.clone())), "a:13:1"),
                step(StepAction::HangUp, "a:15:1"),
            ],
            end_of_turn: Duration::from_millis(700),
        };
        let script = prepare_script(&conv).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            script.steps,
            [
                ScriptStep::AgentTurn { within: Duration::from_secs(3) },
                ScriptStep::Say { clip: 0 },
                ScriptStep::Dtmf { digits: "1#".into() },
                ScriptStep::Wait(Duration::from_millis(500)),
                ScriptStep::Silence(Duration::from_secs(2)),
                ScriptStep::BargeIn { clip: 1, after: DEFAULT_BARGE_IN_AFTER, within: DEFAULT_TURN_WITHIN },
                ScriptStep::Say { clip: 2 },
                ScriptStep::HangUp,
            ]
        );
        let labels: Vec<&str> = script.clips.iter().map(|c| c.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "hello_can_you_hear_me_16k.wav",
                "hello_test_caller_tell_me_the_time_8k.wav",
                "hello_can_you_hear_me_16k.wav"
            ]
        );
        let expected = wav::load_mono(&hello, RECORDING_RATE).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(script.clips[0].pcm_16k, expected);
        assert_eq!(script.clips[2].pcm_16k, expected);
        // The 8 kHz fixture comes out at 16 kHz: about twice its samples.
        let reader = hound::WavReader::open(fixture("hello_test_caller_tell_me_the_time_8k.wav")).expect("fixture");
        let ratio = script.clips[1].pcm_16k.len() as f64 / f64::from(reader.duration());
        assert!((1.95..2.05).contains(&ratio), "{ratio}");
        assert_eq!(script.end_of_turn, Duration::from_millis(700));
        assert!(script.hang_up_at_end);
    }

    #[test]
    fn an_empty_conversation_is_an_empty_script() {
        let script = prepare_script(&Conversation::default()).unwrap_or_else(|e| panic!("{e}"));
        assert!(script.steps.is_empty() && script.clips.is_empty());
        assert_eq!(script.end_of_turn, DEFAULT_END_OF_TURN);
    }

    #[test]
    fn text_is_spoken_by_the_offline_tts() {
        if let Err(e) = tts::available() {
            eprintln!("skipped: {e}");
            return;
        }
        let conv = Conversation {
            steps: vec![step(StepAction::Say(Utterance::Text("What is my order number?".into())), "s.toml:4:1")],
            ..Conversation::default()
        };
        let script = prepare_script(&conv).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(script.clips[0].label, "\"What is my order number?\"");
        let seconds = script.clips[0].pcm_16k.len() as f64 / f64::from(RECORDING_RATE);
        assert!((0.8..5.0).contains(&seconds), "{seconds}");
    }

    #[test]
    fn errors_name_the_step() {
        let missing = PathBuf::from("/nonexistent/nope.wav");
        let conv = Conversation {
            steps: vec![
                step(StepAction::AgentTurn { within: DEFAULT_TURN_WITHIN, expect: None }, "s.toml:2:1"),
                step(StepAction::Say(Utterance::Wav(missing)), "s.toml:5:1"),
            ],
            ..Conversation::default()
        };
        let e = prepare_script(&conv).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.starts_with("s.toml:5:1: /nonexistent/nope.wav: WAV file: "), "{e}");
        let conv = Conversation {
            steps: vec![step(StepAction::Say(Utterance::Text(" ".into())), "--say")],
            ..Conversation::default()
        };
        let e = prepare_script(&conv).err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(e, "--say: cannot speak \" \": nothing to say: the text is empty");
    }
}
