//! A scenario's `[[step]]` tables (and `[conversation]`) → the call's
//! [`Conversation`]: one action key per step, its options checked against
//! the action, every value checked at its `file:line:col`, and the step's
//! own position kept as its origin for later messages.

use std::ops::Range;
use std::time::Duration;

use toml::Spanned;

use crate::audio::turns::DEFAULT_END_OF_TURN;
use crate::conversation::{
    self, Conversation, DtmfKeyError, SaidExpectation, StepAction, StepRequest, Utterance, DEFAULT_BARGE_IN_AFTER,
    DEFAULT_SIMILARITY, DEFAULT_STOP_WITHIN, DEFAULT_TURN_WITHIN, DTMF_KEYS,
};
use crate::scenario::error::Position;
use crate::scenario::format::{RawStep, RawTurn, Text};

use super::CaseScope;

/// The action keys of a `[[step]]`, as messages list them.
const ACTIONS: &str =
    "one of agent_turn, say, say_text, dtmf, wait, silence, barge_in, barge_in_text, hangup (one per [[step]])";

/// A step's key, and its value's span.
type ActionKey = (&'static str, Range<usize>);

impl CaseScope<'_, '_> {
    /// The conversation of the `[[step]]`s (empty without any), or `None`
    /// after recording errors.
    pub(super) fn conversation(&mut self) -> Option<Conversation> {
        let raw = self.r.raw;
        let errors_before = self.r.errors.len();
        if let (Some(conv), true) = (&raw.conversation, raw.steps.is_empty()) {
            self.r.error(
                conv.span(),
                "[conversation] without [[step]]",
                Some("[[step]] tables, the conversation these settings are for"),
            );
        }
        if let (Some(play), Some(first)) = (&raw.timeline.play, raw.steps.first()) {
            let at = self.r.key_before(play.span(), "play");
            let step = Position::at(self.r.src.text, first.span().start);
            self.r.error(
                at,
                format!("[timeline] play and the [[step]] conversation (line {}) both say something", step.line),
                Some(
                    "one of them: for a conversation, a [[step]] say = \"WAV\" where play is \
                     (after an agent_turn step for play_after = \"greeting\"); else play without [[step]]",
                ),
            );
        }
        let end_of_turn = match raw.conversation.as_ref().and_then(|c| c.get_ref().end_of_turn.as_ref()) {
            Some(d) => self.positive_duration(d, "end_of_turn"),
            None => Some(DEFAULT_END_OF_TURN),
        };
        let steps: Vec<StepRequest> = raw.steps.iter().filter_map(|step| self.step(step)).collect();
        if self.r.errors.len() > errors_before {
            return None;
        }
        Some(Conversation { steps, end_of_turn: end_of_turn? })
    }

    fn step(&mut self, step: &Spanned<RawStep>) -> Option<StepRequest> {
        let s = step.get_ref();
        let errors_before = self.r.errors.len();
        let span = |t: &Text| t.span();
        let mut actions: Vec<ActionKey> = [
            ("agent_turn", s.agent_turn.as_ref().map(Spanned::span)),
            ("say", s.say.as_ref().map(span)),
            ("say_text", s.say_text.as_ref().map(span)),
            ("dtmf", s.dtmf.as_ref().map(span)),
            ("wait", s.wait.as_ref().map(span)),
            ("silence", s.silence.as_ref().map(span)),
            ("barge_in", s.barge_in.as_ref().map(span)),
            ("barge_in_text", s.barge_in_text.as_ref().map(span)),
            ("hangup", s.hangup.as_ref().map(Spanned::span)),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key, value?)))
        .collect();
        // In the order written, so that "both A and B" reads as the file does.
        actions.sort_by_key(|(_, value)| value.start);
        let action = match actions.as_slice() {
            [] => {
                self.r.error(step.span(), "this [[step]] has no action", Some(ACTIONS));
                return None;
            }
            [one] => one.0,
            [(first, _), (second, value), ..] => {
                let at = self.r.key_before(value.clone(), second);
                self.r.error(
                    at,
                    format!("a [[step]] does one thing: this one has both {first} and {second}"),
                    Some(&format!("{second} in a [[step]] of its own")),
                );
                return None;
            }
        };
        self.options_belong_to(action, s);
        if self.r.errors.len() > errors_before {
            return None;
        }
        let action = match action {
            "agent_turn" => {
                let turn = s.agent_turn.as_ref()?;
                let within = self.turn_within(turn);
                let expect = self.said_expectation(s);
                StepAction::AgentTurn { within: within?, expect: expect? }
            }
            "say" => StepAction::Say(Utterance::Wav(self.wav_file(s.say.as_ref()?)?)),
            "say_text" => StepAction::Say(Utterance::Text(self.spoken_text(s.say_text.as_ref()?, "say_text")?)),
            "dtmf" => StepAction::Dtmf(self.dtmf(s.dtmf.as_ref()?)?),
            "wait" => StepAction::Wait(self.positive_duration(s.wait.as_ref()?, "wait")?),
            "silence" => StepAction::Silence(self.positive_duration(s.silence.as_ref()?, "silence")?),
            "barge_in" | "barge_in_text" => {
                let utterance = match (&s.barge_in, &s.barge_in_text) {
                    (Some(wav), _) => self.wav_file(wav).map(Utterance::Wav),
                    (None, Some(text)) => self.spoken_text(text, "barge_in_text").map(Utterance::Text),
                    (None, None) => None,
                };
                let after = s.after.as_ref().map_or(Some(DEFAULT_BARGE_IN_AFTER), |d| self.duration(d));
                let within =
                    s.within.as_ref().map_or(Some(DEFAULT_TURN_WITHIN), |d| self.positive_duration(d, "within"));
                let stop_within = s
                    .stop_within
                    .as_ref()
                    .map_or(Some(DEFAULT_STOP_WITHIN), |d| self.positive_duration(d, "stop_within"));
                StepAction::BargeIn { utterance: utterance?, after: after?, within: within?, stop_within: stop_within? }
            }
            _ => {
                let hangup = s.hangup.as_ref()?;
                if !*hangup.get_ref() {
                    self.r.error(
                        hangup.span(),
                        "hangup = false does nothing",
                        Some("hangup = true, or no such [[step]]"),
                    );
                    return None;
                }
                StepAction::HangUp
            }
        };
        let at = Position::at(self.r.src.text, step.span().start);
        Some(StepRequest { action, origin: format!("{}:{}:{}", self.r.src.path.display(), at.line, at.col) })
    }

    /// Options of one action written in a step of another, and options of
    /// the same kind written twice.
    fn options_belong_to(&mut self, action: &str, s: &RawStep) {
        let mut expects: Vec<ActionKey> = [
            ("expect_said", s.expect_said.as_ref().map(Spanned::span)),
            ("expect_any", s.expect_any.as_ref().map(Spanned::span)),
            ("expect_like", s.expect_like.as_ref().map(Spanned::span)),
        ]
        .into_iter()
        .filter_map(|(key, value)| Some((key, value?)))
        .collect();
        expects.sort_by_key(|(_, value)| value.start);
        if action != "agent_turn" {
            for (key, value) in &expects {
                let at = self.r.key_before(value.clone(), key);
                self.r.error(
                    at,
                    format!("{key} is only for agent_turn steps, not {action}"),
                    Some(&format!("{key} in a [[step]] with agent_turn = \"10s\": what the agent says in its turn")),
                );
            }
        } else if let [(first, _), (second, value), ..] = expects.as_slice() {
            let at = self.r.key_before(value.clone(), second);
            self.r.error(
                at,
                format!("an agent turn has one expectation: this one has both {first} and {second}"),
                Some("one of expect_said, expect_any, expect_like"),
            );
        }
        if let (Some(similarity), None) = (&s.similarity, &s.expect_like) {
            let at = self.r.key_before(similarity.span(), "similarity");
            self.r.error(at, "similarity without expect_like", Some("expect_like = \"…\" in the same [[step]]"));
        }
        let barge_in = matches!(action, "barge_in" | "barge_in_text");
        for (key, value) in [("after", &s.after), ("within", &s.within), ("stop_within", &s.stop_within)] {
            let Some(value) = value.as_ref().filter(|_| !barge_in) else { continue };
            let at = self.r.key_before(value.span(), key);
            let expected = if action == "agent_turn" && key == "within" {
                "agent_turn = \"10s\": the turn's deadline is its value".to_string()
            } else {
                format!("{key} in a [[step]] with barge_in or barge_in_text")
            };
            self.r.error(at, format!("{key} is only for barge_in steps, not {action}"), Some(&expected));
        }
    }

    /// `agent_turn = "10s"`, or `true` for the default deadline.
    fn turn_within(&mut self, turn: &Spanned<RawTurn>) -> Option<Duration> {
        match turn.get_ref() {
            RawTurn::Within(text) => self.positive_duration(&Spanned::new(turn.span(), text.clone()), "agent_turn"),
            RawTurn::Default(true) => Some(DEFAULT_TURN_WITHIN),
            RawTurn::Default(false) => {
                self.r.error(
                    turn.span(),
                    "agent_turn = false does nothing",
                    Some(&format!(
                        "a deadline for the agent's turn to start, like \"10s\", or true for the default ({})",
                        humantime::format_duration(DEFAULT_TURN_WITHIN)
                    )),
                );
                None
            }
        }
    }

    /// The agent turn's expectation of what is said: `Some(None)` for none.
    fn said_expectation(&mut self, s: &RawStep) -> Option<Option<SaidExpectation>> {
        if let Some(pattern) = &s.expect_said {
            let value = self.text(pattern)?;
            let expected = "a regular expression (case-insensitive), like \"order number|account\"";
            if value.trim().is_empty() {
                self.r.error(pattern.span(), "expect_said is empty", Some(expected));
                return None;
            }
            if let Err(reason) = conversation::said_regex(&value) {
                self.r.error(
                    pattern.span(),
                    format!("'{value}' is not a regular expression: {reason}"),
                    Some(expected),
                );
                return None;
            }
            return Some(Some(SaidExpectation::Regex(value)));
        }
        if let Some(list) = &s.expect_any {
            let expected = "words or phrases the agent says, like [\"order\", \"four two seven\"]";
            if list.get_ref().is_empty() {
                self.r.error(list.span(), "expect_any is empty", Some(expected));
                return None;
            }
            let mut words = Vec::new();
            for item in list.get_ref() {
                match self.text(item) {
                    Some(w) if w.trim().is_empty() => self.r.error(item.span(), "an empty phrase", Some(expected)),
                    Some(w) => words.push(w.trim().to_string()),
                    None => {}
                }
            }
            return (words.len() == list.get_ref().len()).then_some(Some(SaidExpectation::AnyOf(words)));
        }
        if let Some(like) = &s.expect_like {
            let text = self.text(like)?;
            if text.trim().is_empty() {
                self.r.error(like.span(), "expect_like is empty", Some("the sentence the agent should say"));
                return None;
            }
            let min = match &s.similarity {
                Some(_) => self.bounded(
                    s.similarity.as_ref(),
                    0.0,
                    1.0,
                    "similarity",
                    "a number from 0 to 1, like 0.8 (1 - word error rate)",
                )?,
                None => DEFAULT_SIMILARITY,
            };
            return Some(Some(SaidExpectation::Like { text: text.trim().to_string(), min }));
        }
        Some(None)
    }

    /// Text for the offline TTS.
    fn spoken_text(&mut self, text: &Text, key: &str) -> Option<String> {
        let value = self.text(text)?;
        if value.trim().is_empty() {
            self.r.error(
                text.span(),
                format!("{key} is empty"),
                Some("the words to say, like \"What is my order number?\""),
            );
            return None;
        }
        Some(value.trim().to_string())
    }

    fn dtmf(&mut self, keys: &Text) -> Option<String> {
        let value = self.text(keys)?;
        let expected = format!("DTMF keys: {DTMF_KEYS}, like \"1#\"");
        match conversation::dtmf_keys(&value) {
            Ok(keys) => Some(keys),
            Err(DtmfKeyError::Empty) => {
                self.r.error(keys.span(), "dtmf is empty", Some(&expected));
                None
            }
            Err(e @ DtmfKeyError::NotAKey { offset, .. }) => {
                let at = self.r.src.offset_in_string(keys.span(), &value, offset);
                self.r.error(at..at, e.to_string(), Some(&expected));
                None
            }
        }
    }
}
