//! The scenario file as written: serde structs that mirror the TOML one to
//! one (`deny_unknown_fields` everywhere, so a misspelt key is an error at
//! its position). Values whose meaning is checked later (durations, codecs,
//! status codes, URIs, headers, transport, tags) keep their spans; strings
//! are stored before `${VAR}` substitution. The format itself is documented
//! in [`crate::scenario`].

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use toml::Spanned;

/// A string value with its place in the file.
pub type Text = Spanned<String>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    pub name: Text,
    pub description: Option<Text>,
    #[serde(default)]
    pub tags: Vec<Text>,
    pub target: RawTarget,
    #[serde(default)]
    pub caller: RawCaller,
    pub auth: Option<Spanned<RawAuth>>,
    #[serde(default)]
    pub expect: RawExpect,
    #[serde(default)]
    pub timeline: RawTimeline,
    pub livekit: Option<RawLiveKit>,
    /// Settings of the `[[step]]` conversation.
    pub conversation: Option<Spanned<RawConversation>>,
    /// `[[step]]`: a scripted conversation, one action per step.
    #[serde(default, rename = "step")]
    pub steps: Vec<Spanned<RawStep>>,
    /// Axis name → its values.
    #[serde(default)]
    pub matrix: BTreeMap<Text, Spanned<Vec<Text>>>,
    /// `[[case]]`: overrides for the matrix cases they match.
    #[serde(default, rename = "case")]
    pub cases: Vec<RawCase>,
    /// Objectives over the run's calls of this scenario, e.g.
    /// `"first_audio.p95 <= 2.5s"`.
    #[serde(default)]
    pub slo: Vec<Text>,
    /// Fail when a timing's p50 is this much worse than the last runs'.
    pub regression: Option<Spanned<RawRegression>>,
}

/// `[regression]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegression {
    pub worse_than_median_percent: f64,
    pub runs: Option<usize>,
    pub metrics: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTarget {
    pub uri: Text,
    pub transport: Option<Text>,
    /// TLS: a PEM file of the CA to trust, relative to the scenario file.
    pub tls_ca: Option<Text>,
    /// TLS: do not verify the server's certificate.
    pub tls_insecure: Option<Spanned<bool>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCaller {
    pub from: Option<Text>,
    #[serde(default)]
    pub headers: Vec<Text>,
    pub codecs: Option<Spanned<Vec<Text>>>,
    pub srtp: Option<Text>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub user: Option<Text>,
    pub password_env: Option<Text>,
    pub password_file: Option<Text>,
    /// Only here to be rejected with a clear message: never a literal secret.
    pub password: Option<Spanned<IgnoredAny>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    pub final_responses: Option<Spanned<RawFinalResponses>>,
    pub agent: Option<Text>,
    pub agent_within: Option<Text>,
    pub speech_within: Option<Text>,
    pub response_within: Option<Text>,
    pub tone_hz: Option<Spanned<f64>>,
    pub max_loss_percent: Option<Spanned<f64>>,
    pub max_jitter_ms: Option<Spanned<f64>>,
    /// The call must fail with this diagnosis code.
    pub diagnosis: Option<Text>,
}

impl RawExpect {
    /// `self` with every key that `over` sets replaced by `over`'s value.
    pub fn overridden_by(&self, over: &RawExpect) -> RawExpect {
        fn pick<T: Clone>(base: &Option<T>, over: &Option<T>) -> Option<T> {
            over.clone().or_else(|| base.clone())
        }
        RawExpect {
            final_responses: pick(&self.final_responses, &over.final_responses),
            agent: pick(&self.agent, &over.agent),
            agent_within: pick(&self.agent_within, &over.agent_within),
            speech_within: pick(&self.speech_within, &over.speech_within),
            response_within: pick(&self.response_within, &over.response_within),
            tone_hz: pick(&self.tone_hz, &over.tone_hz),
            max_loss_percent: pick(&self.max_loss_percent, &over.max_loss_percent),
            max_jitter_ms: pick(&self.max_jitter_ms, &over.max_jitter_ms),
            diagnosis: pick(&self.diagnosis, &over.diagnosis),
        }
    }
}

/// `final_responses = [407, 200]` or `final_responses = "any"`.
#[derive(Debug, Clone)]
pub enum RawFinalResponses {
    Any,
    Codes(Vec<Spanned<i64>>),
}

impl<'de> Deserialize<'de> for RawFinalResponses {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct FinalsVisitor;
        impl<'de> Visitor<'de> for FinalsVisitor {
            type Value = RawFinalResponses;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a list of final status codes like [407, 200], or \"any\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                match v {
                    "any" => Ok(RawFinalResponses::Any),
                    _ => Err(E::invalid_value(de::Unexpected::Str(v), &self)),
                }
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut codes = Vec::new();
                while let Some(code) = seq.next_element::<Spanned<i64>>()? {
                    codes.push(code);
                }
                Ok(RawFinalResponses::Codes(codes))
            }
        }
        deserializer.deserialize_any(FinalsVisitor)
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTimeline {
    pub play: Option<Text>,
    pub play_after: Option<Text>,
    pub hangup_after: Option<Text>,
    pub timeout: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConversation {
    pub end_of_turn: Option<Text>,
}

/// One `[[step]]`: exactly one action key (checked when resolving, with
/// the keys' positions), and the options of that action.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    /// `agent_turn = "10s"` (its turn must start within that), or `true`
    /// for the default deadline.
    pub agent_turn: Option<Spanned<RawTurn>>,
    pub expect_said: Option<Text>,
    pub expect_any: Option<Spanned<Vec<Text>>>,
    pub expect_like: Option<Text>,
    pub similarity: Option<Spanned<f64>>,
    pub say: Option<Text>,
    pub say_text: Option<Text>,
    pub dtmf: Option<Text>,
    pub wait: Option<Text>,
    pub silence: Option<Text>,
    pub barge_in: Option<Text>,
    pub barge_in_text: Option<Text>,
    pub after: Option<Text>,
    pub within: Option<Text>,
    pub stop_within: Option<Text>,
    pub hangup: Option<Spanned<bool>>,
}

/// `agent_turn = "10s"` or `agent_turn = true`.
#[derive(Debug, Clone)]
pub enum RawTurn {
    Within(String),
    Default(bool),
}

impl<'de> Deserialize<'de> for RawTurn {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TurnVisitor;
        impl Visitor<'_> for TurnVisitor {
            type Value = RawTurn;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a deadline like \"10s\", or true for the default")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(RawTurn::Within(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(RawTurn::Default(v))
            }
        }
        deserializer.deserialize_any(TurnVisitor)
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLiveKit {
    pub url: Option<Text>,
    pub api_key: Option<Text>,
    pub api_secret_env: Option<Text>,
    pub api_secret_file: Option<Text>,
    /// Only here to be rejected with a clear message: never a literal secret.
    pub api_secret: Option<Spanned<IgnoredAny>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCase {
    /// Axis name → value; the case applies where every one matches.
    pub when: Spanned<BTreeMap<Text, Text>>,
    pub auth: Option<Spanned<RawCaseAuth>>,
    #[serde(default)]
    pub expect: RawExpect,
    #[serde(default)]
    pub tags: Vec<Text>,
}

/// `auth = false` (call without credentials) or an auth table that
/// replaces the scenario's `[auth]`.
#[derive(Debug, Clone)]
pub enum RawCaseAuth {
    Without,
    With(RawAuth),
}

impl<'de> Deserialize<'de> for RawCaseAuth {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CaseAuthVisitor;
        impl<'de> Visitor<'de> for CaseAuthVisitor {
            type Value = RawCaseAuth;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("false (no credentials) or a table { user = \"…\", password_env = \"VAR\" }")
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                match v {
                    false => Ok(RawCaseAuth::Without),
                    true => Err(E::invalid_value(de::Unexpected::Bool(true), &self)),
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawAuth::deserialize(de::value::MapAccessDeserializer::new(map)).map(RawCaseAuth::With)
            }
        }
        deserializer.deserialize_any(CaseAuthVisitor)
    }
}
