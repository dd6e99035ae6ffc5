//! One matrix combination of a parsed scenario → one runnable
//! [`ScenarioCase`]: `${VAR}` substituted, `[[case]]` overrides applied, every
//! value checked with its position, and the result expressed as the
//! [`CallRequest`] it asks for. The `[[step]]` conversation is resolved in
//! [`steps`].

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::verdict::slo::{Regression, ScenarioSlo, SloRule};
use std::time::Duration;

use crate::call::tls::TlsOptions;
use crate::livekit::LiveKitOverrides;
use crate::media::codec::AudioCodec;
use crate::media::sdes::SrtpMode;
use crate::request::PlayStart;
use crate::request::{
    self, AgentExpectation, AuthRequest, CallRequest, Expectations, ExpectedAgent, FinalResponses, MediaExpectations,
    PlayRequest, SecretRef, DEFAULT_AGENT_WITHIN, DEFAULT_CODECS, DEFAULT_FROM, DEFAULT_HANGUP_AFTER,
    DEFAULT_INVITE_TIMEOUT, DEFAULT_PLAY_AFTER,
};
use crate::sip::Transport;

use super::env::{is_variable_name, substitute};
use super::error::{ScenarioError, Source};
use super::format::{
    RawAuth, RawCaseAuth, RawExpect, RawFinalResponses, RawLiveKit, RawScenario, RawTarget, RawTimeline, Text,
};
use super::matrix::{self, Axis};
use super::ScenarioCase;

mod steps;

const DURATION: &str = "a duration like \"1.5s\", \"500ms\" or \"2m\"";
const VARIABLE: &str = "the name of an environment variable, like \"LK_SIP_PASSWORD\"";

/// Where variables come from besides the matrix.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// Resolves the cases of one file, sharing what they have in common.
pub struct Resolver<'a> {
    pub src: Source<'a>,
    pub raw: &'a RawScenario,
    pub axes: &'a [Axis],
    pub env: EnvLookup<'a>,
    /// Every variable name a `${…}` referred to, in any case.
    pub used: BTreeSet<String>,
    pub errors: Vec<ScenarioError>,
}

/// The per-case state while one combination is resolved.
struct CaseScope<'r, 'a> {
    r: &'r mut Resolver<'a>,
    vars: Vec<(String, String)>,
}

impl<'a> Resolver<'a> {
    pub fn new(src: Source<'a>, raw: &'a RawScenario, axes: &'a [Axis], env: EnvLookup<'a>) -> Self {
        Resolver { src, raw, axes, env, used: BTreeSet::new(), errors: Vec::new() }
    }

    /// The case for one combination, or `None` after recording its errors.
    pub fn case(&mut self, combination: &[usize]) -> Option<ScenarioCase> {
        let errors_before = self.errors.len();
        let written = matrix::assignments(self.axes, combination);
        let mut vars = Vec::new();
        for (axis, value) in &written {
            let env = self.env;
            // Axis values may use the environment, not other axes.
            if let Some(v) = self.substitute_with(value, &mut |name| env(name)) {
                vars.push((axis.clone(), v));
            }
        }
        if self.errors.len() > errors_before {
            return None;
        }
        let mut scope = CaseScope { r: self, vars };
        let case = scope.resolve(combination);
        if scope.r.errors.len() > errors_before {
            None
        } else {
            case
        }
    }

    fn substitute_with(&mut self, text: &Text, lookup: &mut dyn FnMut(&str) -> Option<String>) -> Option<String> {
        let used = &mut self.used;
        let mut recording = |name: &str| {
            used.insert(name.to_string());
            lookup(name)
        };
        match substitute(text.get_ref(), &mut recording) {
            Ok(v) => Some(v),
            Err(e) => {
                let (message, expected) = e.describe();
                let at = self.src.offset_in_string(text.span(), text.get_ref(), e.offset());
                self.errors.push(self.src.error(at..at, message, Some(expected)));
                None
            }
        }
    }

    fn error(&mut self, text_span: std::ops::Range<usize>, message: impl Into<String>, expected: Option<&str>) {
        self.errors.push(self.src.error(text_span, message, expected));
    }

    /// The span of `key` written before the value at `value` (`key = "…"`),
    /// for errors about the setting rather than its text; else the value's.
    fn key_before(&self, value: std::ops::Range<usize>, key: &str) -> std::ops::Range<usize> {
        let before = self.src.text.get(..value.start).unwrap_or("");
        match before.rfind(key) {
            Some(at) => at..at + key.len(),
            None => value,
        }
    }

    fn base_dir(&self) -> PathBuf {
        self.src.path.parent().map(Path::to_path_buf).unwrap_or_default()
    }
}

impl CaseScope<'_, '_> {
    fn text(&mut self, text: &Text) -> Option<String> {
        let (vars, env) = (&self.vars, self.r.env);
        let mut lookup =
            |name: &str| vars.iter().find(|(axis, _)| axis == name).map(|(_, v)| v.clone()).or_else(|| env(name));
        self.r.substitute_with(text, &mut lookup)
    }

    fn duration(&mut self, text: &Text) -> Option<Duration> {
        let value = self.text(text)?;
        match humantime::parse_duration(value.trim()) {
            Ok(d) if d <= request::MAX_DURATION => Some(d),
            Ok(_) => {
                self.r.error(text.span(), format!("'{value}' is longer than a day"), Some(DURATION));
                None
            }
            Err(_) => {
                self.r.error(text.span(), format!("'{value}' is not a duration"), Some(DURATION));
                None
            }
        }
    }

    fn positive_duration(&mut self, text: &Text, key: &str) -> Option<Duration> {
        let d = self.duration(text)?;
        if d.is_zero() {
            self.r.error(text.span(), format!("{key} must be more than zero"), Some(DURATION));
            return None;
        }
        Some(d)
    }

    /// A path in the file, relative to the file's directory.
    fn path(&mut self, text: &Text) -> Option<PathBuf> {
        let value = self.text(text)?;
        if value.trim().is_empty() {
            self.r.error(text.span(), "the path is empty", Some("a file path, relative to this scenario file"));
            return None;
        }
        let path = Path::new(&value);
        Some(if path.is_absolute() { path.to_path_buf() } else { self.r.base_dir().join(path) })
    }

    /// A WAV file's path (relative to the scenario file), which must exist;
    /// it is read when the call is prepared.
    fn wav_file(&mut self, text: &Text) -> Option<PathBuf> {
        let path = self.path(text)?;
        if !path.is_file() {
            self.r.error(
                text.span(),
                format!("{} is not a file", path.display()),
                Some("a WAV file, relative to this scenario file"),
            );
            return None;
        }
        Some(path)
    }

    /// The name of the variable holding the digest password, which must be
    /// set: `run` would fail without it (its value is only read, never shown).
    fn password_env(&mut self, text: &Text) -> Option<String> {
        let name = self.variable_name(text)?;
        let env = self.r.env;
        let problem = match env(&name) {
            Some(value) if !value.is_empty() => return Some(name),
            Some(_) => "is empty",
            None => "is not set",
        };
        let at = self.r.key_before(text.span(), "password_env");
        self.r.error(
            at,
            format!("password_env: environment variable {name} {problem}"),
            Some(&format!("{name} set to the trunk's digest password, or password_file = \"PATH\"")),
        );
        None
    }

    fn variable_name(&mut self, text: &Text) -> Option<String> {
        let name = self.text(text)?;
        if !is_variable_name(&name) {
            self.r.error(text.span(), format!("'{name}' is not an environment variable name"), Some(VARIABLE));
            return None;
        }
        Some(name)
    }

    fn resolve(&mut self, combination: &[usize]) -> Option<ScenarioCase> {
        let raw = self.r.raw;
        let matching: Vec<_> = raw.cases.iter().filter(|c| matrix::case_matches(c, self.r.axes, combination)).collect();

        let scenario = self.text(&raw.name);
        if scenario.as_deref().is_some_and(|n| n.trim().is_empty()) {
            self.r.error(
                raw.name.span(),
                "the scenario name is empty",
                Some("a short name like \"smoke: credentials accepted\""),
            );
        }
        let description = raw.description.as_ref().and_then(|d| self.text(d));
        let mut tags = Vec::new();
        for tag in raw.tags.iter().chain(matching.iter().flat_map(|c| c.tags.iter())) {
            if let Some(t) = self.tag(tag) {
                if !tags.contains(&t) {
                    tags.push(t);
                }
            }
        }

        let target = self.target_uri(&raw.target.uri);
        let transport = raw.target.transport.as_ref().and_then(|t| self.transport(t));
        let tls = self.tls_options(&raw.target);
        let from = match &raw.caller.from {
            Some(from) => self.from(from),
            None => Some(DEFAULT_FROM.to_string()),
        };
        let headers: Vec<(String, String)> = raw.caller.headers.iter().filter_map(|h| self.header(h)).collect();
        let codecs = self.codecs();
        let srtp = match &raw.caller.srtp {
            Some(mode) => self.srtp(mode),
            None => Some(SrtpMode::Off),
        };

        let auth = match matching.iter().rev().find_map(|c| c.auth.as_ref()) {
            Some(over) => match over.get_ref() {
                RawCaseAuth::Without => None,
                RawCaseAuth::With(auth) => Some((auth, over.span())),
            },
            None => raw.auth.as_ref().map(|a| (a.get_ref(), a.span())),
        };
        let auth = auth.and_then(|(auth, span)| self.auth(auth, span));

        let expect = matching.iter().fold(raw.expect.clone(), |acc, c| acc.overridden_by(&c.expect));
        let timeline = self.timeline(&raw.timeline);
        let expectations = self.expect(&expect, raw.timeline.play.is_some());
        let livekit = raw.livekit.as_ref().map(|l| self.livekit(l)).unwrap_or_default();
        let conversation = self.conversation();

        let (scenario, target, from, codecs, srtp, timeline, expectations, conversation) =
            (scenario?, target?, from?, codecs?, srtp?, timeline?, expectations?, conversation?);
        let tls = tls?;
        let name = self.case_name(&scenario);
        let call = CallRequest {
            name: Some(name),
            scenario: Some(scenario.clone()),
            tags,
            target_uri: target,
            from,
            transport,
            tls,
            keylog: None,
            auth,
            headers,
            codecs,
            srtp,
            play: timeline.play,
            hangup_after: match &raw.timeline.hangup_after {
                None if !conversation.steps.is_empty() => request::CONVERSATION_HANGUP_CAP,
                _ => timeline.hangup_after,
            },
            conversation,
            invite_timeout: timeline.timeout,
            expect: expectations,
            livekit,
        };
        let slo = self.slo()?;
        Some(ScenarioCase {
            slo,
            scenario,
            description,
            file: self.r.src.path.to_path_buf(),
            matrix: self.vars.clone(),
            call,
        })
    }

    /// `slo = [...]` and `[regression]`: the scenario's objectives.
    fn slo(&mut self) -> Option<ScenarioSlo> {
        let raw = self.r.raw;
        let mut out = ScenarioSlo::default();
        let mut ok = true;
        for text in &raw.slo {
            match SloRule::parse(text.get_ref()) {
                Ok(rule) => out.rules.push(rule),
                Err(e) => {
                    self.r.error(text.span(), format!("bad objective '{}'", text.get_ref()), Some(&e));
                    ok = false;
                }
            }
        }
        if let Some(reg) = &raw.regression {
            let r = reg.get_ref();
            let worse = r.worse_than_median_percent;
            if !(worse > 0.0 && worse <= 1000.0) {
                self.r.error(
                    reg.span(),
                    "worse_than_median_percent must be more than 0",
                    Some("e.g. 30 (fail when p50 is 30 % worse)"),
                );
                ok = false;
            }
            let runs = r.runs.unwrap_or(7);
            if runs == 0 {
                self.r.error(
                    reg.span(),
                    "runs must be at least 1",
                    Some("how many earlier runs to compare with, e.g. 7"),
                );
                ok = false;
            }
            for m in r.metrics.iter().flatten() {
                if SloRule::parse(&format!("{m}.p50 <= 1s")).is_err()
                    && SloRule::parse(&format!("{m}.p50 >= 1")).is_err()
                {
                    self.r.error(reg.span(), format!("unknown metric '{m}' in [regression] metrics"), Some("post_dial_delay, answer, auth_rtt, first_audio, agent_join, reply_latency, loss, jitter or mos"));
                    ok = false;
                }
            }
            out.regression =
                Some(Regression { worse_percent: worse, runs, metrics: r.metrics.clone().unwrap_or_default() });
        }
        ok.then_some(out)
    }

    /// The scenario name, plus `[AXIS=value, …]` for each axis the name
    /// does not already show through `${AXIS}`.
    fn case_name(&self, scenario: &str) -> String {
        let written = self.r.raw.name.get_ref();
        let shown: Vec<String> = self
            .vars
            .iter()
            .filter(|(axis, _)| !written.contains(&format!("${{{axis}}}")))
            .map(|(axis, value)| format!("{axis}={value}"))
            .collect();
        if shown.is_empty() {
            scenario.to_string()
        } else {
            format!("{scenario} [{}]", shown.join(", "))
        }
    }

    fn tag(&mut self, tag: &Text) -> Option<String> {
        let value = self.text(tag)?;
        let mut chars = value.chars();
        let ok = chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !ok {
            self.r.error(
                tag.span(),
                format!("'{value}' is not a tag"),
                Some("letters, digits, '-', '_' and '.', starting with a letter or digit, like \"smoke\" or \"runbook-5\""),
            );
            return None;
        }
        Some(value)
    }

    fn target_uri(&mut self, uri: &Text) -> Option<String> {
        let value = self.text(uri)?;
        let expected = "a SIP URI like \"sip:+14144007103@127.0.0.1:5060\"";
        let scheme_ok = |n: usize, scheme: &str| value.get(..n).is_some_and(|s| s.eq_ignore_ascii_case(scheme));
        if !scheme_ok(4, "sip:") && !scheme_ok(5, "sips:") {
            self.r.error(uri.span(), format!("'{value}' is not a sip: URI"), Some(expected));
            return None;
        }
        match request::target_uri(&value) {
            Ok(_) => Some(value),
            Err(e) => {
                self.r.error(uri.span(), format!("bad target URI: {e}"), Some(expected));
                None
            }
        }
    }

    fn transport(&mut self, transport: &Text) -> Option<Transport> {
        let value = self.text(transport)?;
        match value.to_ascii_lowercase().as_str() {
            "udp" => Some(Transport::Udp),
            "tcp" => Some(Transport::Tcp),
            "tls" => Some(Transport::Tls),
            _ => {
                self.r.error(
                    transport.span(),
                    format!("transport '{value}' is not supported"),
                    Some("\"udp\", \"tcp\" or \"tls\""),
                );
                None
            }
        }
    }

    /// `tls_ca` and `tls_insecure` of `[target]`; not both.
    fn tls_options(&mut self, target: &RawTarget) -> Option<TlsOptions> {
        let insecure = target.tls_insecure.as_ref().is_some_and(|i| *i.get_ref());
        let ca = match &target.tls_ca {
            None => None,
            Some(text) => {
                let path = self.path(text)?;
                if !path.is_file() {
                    self.r.error(
                        text.span(),
                        format!("{} is not a file", path.display()),
                        Some("a PEM file of CA certificates, relative to this scenario file"),
                    );
                    return None;
                }
                Some(path)
            }
        };
        if let (Some(_), Some(flag)) = (&ca, target.tls_insecure.as_ref().filter(|_| insecure)) {
            self.r.error(
                flag.span(),
                "tls_insecure = true together with tls_ca",
                Some("either tls_ca = \"CA.pem\" (verify against that CA) or tls_insecure = true (verify nothing)"),
            );
            return None;
        }
        Some(TlsOptions { ca, insecure })
    }

    fn from(&mut self, from: &Text) -> Option<String> {
        let value = self.text(from)?;
        let expected = "a number or user like \"+15550100123\", or a SIP URI";
        if value.get(..4).is_some_and(|s| s.eq_ignore_ascii_case("sip:")) {
            if let Err(e) = crate::sip::message::uri_target(&value) {
                self.r.error(from.span(), format!("bad caller URI: {e}"), Some(expected));
                return None;
            }
        } else if value.is_empty() || value.contains(|c: char| c.is_whitespace() || "@<>;:\"".contains(c)) {
            self.r.error(from.span(), format!("'{value}' is not a caller number or user"), Some(expected));
            return None;
        }
        Some(value)
    }

    fn header(&mut self, header: &Text) -> Option<(String, String)> {
        let value = self.text(header)?;
        match request::parse_header(&value) {
            Ok(parsed) => Some(parsed),
            Err(e) => {
                self.r.error(
                    header.span(),
                    format!("bad header {e}"),
                    Some("\"Name: value\", like \"X-Customer: acme\""),
                );
                None
            }
        }
    }

    /// `caller.srtp`: required, optional or off.
    fn srtp(&mut self, mode: &Text) -> Option<SrtpMode> {
        let value = self.text(mode)?;
        let parsed = SrtpMode::parse(&value);
        if parsed.is_none() {
            self.r.error(
                mode.span(),
                format!("srtp '{value}' is not an SRTP mode"),
                Some("\"required\", \"optional\" or \"off\""),
            );
        }
        parsed
    }

    /// The codecs to offer, in order, without repeats.
    fn codecs(&mut self) -> Option<Vec<AudioCodec>> {
        let Some(list) = &self.r.raw.caller.codecs else {
            return Some(DEFAULT_CODECS.to_vec());
        };
        let expected = "g722, pcmu (or ulaw), pcma (or alaw)";
        if list.get_ref().is_empty() {
            self.r.error(list.span(), "codecs is empty", Some(&format!("at least one of {expected}")));
            return None;
        }
        let mut codecs = Vec::new();
        let mut known = 0;
        for codec in list.get_ref() {
            let value = self.text(codec)?;
            match request::codec_named(&value) {
                Some(c) => {
                    known += 1;
                    if !codecs.contains(&c) {
                        codecs.push(c);
                    }
                }
                None => self.r.error(codec.span(), format!("unknown codec '{value}'"), Some(expected)),
            }
        }
        (known == list.get_ref().len()).then_some(codecs)
    }

    /// The credentials, with the password only referenced.
    fn auth(&mut self, auth: &RawAuth, table: std::ops::Range<usize>) -> Option<AuthRequest> {
        let none = None;
        if let Some(literal) = &auth.password {
            self.r.error(
                literal.span(),
                "a literal password is not allowed in a scenario file",
                Some("password_env = \"VAR\" or password_file = \"PATH\""),
            );
            return none;
        }
        let user = auth.user.as_ref().and_then(|u| {
            let value = self.text(u)?;
            if value.trim().is_empty() {
                self.r.error(u.span(), "the auth user is empty", Some("the trunk's digest user name"));
                return None;
            }
            Some(value)
        });
        let password_env = auth.password_env.as_ref().and_then(|v| self.password_env(v));
        let password_file = auth.password_file.as_ref().and_then(|f| self.path(f));
        if let (Some(_), Some(file)) = (&auth.password_env, &auth.password_file) {
            self.r.error(file.span(), "both password_env and password_file are set", Some("only one of them"));
            return none;
        }
        let password_given = auth.password_env.as_ref().or(auth.password_file.as_ref());
        match (&auth.user, password_given) {
            (Some(u), None) => self.r.error(
                u.span(),
                "an auth user without a password",
                Some("password_env = \"VAR\" or password_file = \"PATH\" next to it"),
            ),
            (None, Some(p)) => {
                self.r.error(p.span(), "a password without an auth user", Some("user = \"…\" next to it"))
            }
            (None, None) => self.r.error(
                table,
                "the auth table is empty",
                Some("user and password_env or password_file (or no auth table, to call without credentials)"),
            ),
            (Some(_), Some(_)) => {
                let password = match (password_env, password_file) {
                    (Some(var), _) => SecretRef::Env(var),
                    (None, Some(path)) => SecretRef::File(path),
                    (None, None) => return none,
                };
                return Some(AuthRequest { user: user?, password });
            }
        }
        none
    }

    fn timeline(&mut self, timeline: &RawTimeline) -> Option<ResolvedTimeline> {
        let errors_before = self.r.errors.len();
        let play = timeline.play.as_ref().and_then(|p| self.wav_file(p));
        let (play_after, play_after_greeting) = match &timeline.play_after {
            None => (DEFAULT_PLAY_AFTER, false),
            Some(after) if timeline.play.is_none() => {
                self.r.error(after.span(), "play_after without play", Some("play = \"WAV\" in [timeline]"));
                (DEFAULT_PLAY_AFTER, false)
            }
            Some(after) => match self.text(after) {
                Some(v) if v.trim() == "greeting" => (DEFAULT_PLAY_AFTER, true),
                Some(_) => (self.duration(after).unwrap_or(DEFAULT_PLAY_AFTER), false),
                None => (DEFAULT_PLAY_AFTER, false),
            },
        };
        let hangup_after = match &timeline.hangup_after {
            Some(d) => self.duration(d),
            None => Some(DEFAULT_HANGUP_AFTER),
        };
        let timeout = match &timeline.timeout {
            Some(d) => self.positive_duration(d, "timeout"),
            None => Some(DEFAULT_INVITE_TIMEOUT),
        };
        if self.r.errors.len() > errors_before {
            return None;
        }
        let start = if play_after_greeting { PlayStart::AfterGreeting } else { PlayStart::AfterConnect(play_after) };
        let play = play.map(|wav| PlayRequest { wav, start });
        Some(ResolvedTimeline { play, hangup_after: hangup_after?, timeout: timeout? })
    }

    fn expect(&mut self, expect: &RawExpect, plays: bool) -> Option<Expectations> {
        let errors_before = self.r.errors.len();
        let final_responses = match &expect.final_responses {
            None => FinalResponses::Answered,
            Some(finals) => match finals.get_ref() {
                RawFinalResponses::Any => FinalResponses::Any,
                RawFinalResponses::Codes(codes) if codes.is_empty() => {
                    self.r.error(finals.span(), "final_responses is empty", Some("a list like [407, 200], or \"any\""));
                    FinalResponses::Answered
                }
                RawFinalResponses::Codes(codes) => {
                    for code in codes {
                        if !(200..700).contains(code.get_ref()) {
                            self.r.error(
                                code.span(),
                                format!(
                                    "{} is not a final response (provisional responses are recorded, not expected)",
                                    code.get_ref()
                                ),
                                Some("a SIP status code from 200 to 699"),
                            );
                        }
                    }
                    FinalResponses::Exactly(codes.iter().filter_map(|c| u16::try_from(*c.get_ref()).ok()).collect())
                }
            },
        };
        let agent = expect.agent.as_ref().and_then(|a| {
            let value = self.text(a)?;
            let expected = "the agent's lk.agent_name, like \"probe-agent\", or \"*\" for any agent";
            if value.trim().is_empty() || value.contains(char::is_whitespace) {
                self.r.error(a.span(), format!("'{value}' is not an agent name"), Some(expected));
                return None;
            }
            Some(if value == "*" { ExpectedAgent::Any } else { ExpectedAgent::Named(value) })
        });
        let agent_within = match &expect.agent_within {
            Some(d) if expect.agent.is_none() => {
                self.r.error(
                    d.span(),
                    "agent_within without agent",
                    Some("agent = \"NAME\" (or \"*\") in the same table"),
                );
                None
            }
            Some(d) => self.positive_duration(d, "agent_within"),
            None => Some(DEFAULT_AGENT_WITHIN),
        };
        let speech_within = expect.speech_within.as_ref().and_then(|d| self.duration(d));
        let response_within = match &expect.response_within {
            Some(d) if !plays => {
                self.r.error(
                    d.span(),
                    "response_within without something to respond to",
                    Some("play = \"WAV\" in [timeline]"),
                );
                None
            }
            Some(d) => self.duration(d),
            None => None,
        };
        let tone_hz = expect.tone_hz.as_ref().and_then(|hz| {
            let value = *hz.get_ref();
            if !(50.0..=7000.0).contains(&value) {
                self.r.error(
                    hz.span(),
                    format!("tone_hz {value} is out of range"),
                    Some("a frequency from 50 to 7000 Hz"),
                );
                return None;
            }
            Some(value)
        });
        let max_loss_percent = self.bounded(
            expect.max_loss_percent.as_ref(),
            0.0,
            100.0,
            "max_loss_percent",
            "a percentage from 0 to 100",
        );
        let max_jitter_ms =
            self.bounded(expect.max_jitter_ms.as_ref(), 0.0, 10_000.0, "max_jitter_ms", "milliseconds from 0 to 10000");
        let diagnosis = expect.diagnosis.as_ref().and_then(|d| {
            let code = self.text(d)?;
            if !crate::verdict::diagnose::codes().any(|c| c == code) {
                let known: Vec<&str> = crate::verdict::diagnose::codes().collect();
                let expected = format!("one of {}", known.join(", "));
                self.r.error(d.span(), format!("'{code}' is not a diagnosis callprobe makes"), Some(&expected));
                return None;
            }
            Some(code)
        });
        if self.r.errors.len() > errors_before {
            return None;
        }
        let agent_within = agent_within?;
        Some(Expectations {
            final_responses,
            agent: agent.map(|agent| AgentExpectation { agent, within: agent_within }),
            media: MediaExpectations { speech_within, response_within, tone_hz, max_loss_percent, max_jitter_ms },
            diagnosis,
        })
    }

    fn bounded(
        &mut self,
        value: Option<&toml::Spanned<f64>>,
        min: f64,
        max: f64,
        key: &str,
        expected: &str,
    ) -> Option<f64> {
        let value = value?;
        let v = *value.get_ref();
        if !(min..=max).contains(&v) {
            self.r.error(value.span(), format!("{key} {v} is out of range"), Some(expected));
            return None;
        }
        Some(v)
    }

    fn livekit(&mut self, lk: &RawLiveKit) -> LiveKitOverrides {
        if let Some(literal) = &lk.api_secret {
            self.r.error(
                literal.span(),
                "a literal API secret is not allowed in a scenario file",
                Some("api_secret_env = \"VAR\" or api_secret_file = \"PATH\""),
            );
        }
        if let (Some(_), Some(file)) = (&lk.api_secret_env, &lk.api_secret_file) {
            self.r.error(file.span(), "both api_secret_env and api_secret_file are set", Some("only one of them"));
        }
        let url = lk.url.as_ref().and_then(|u| {
            let value = self.text(u)?;
            let schemes = ["ws://", "wss://", "http://", "https://"];
            if !schemes.iter().any(|s| value.to_ascii_lowercase().starts_with(s)) {
                self.r.error(
                    u.span(),
                    format!("'{value}' is not a LiveKit URL"),
                    Some("a URL like \"wss://project.livekit.cloud\""),
                );
                return None;
            }
            Some(value)
        });
        LiveKitOverrides {
            url,
            api_key: lk.api_key.as_ref().and_then(|k| self.text(k)),
            api_secret_env: lk.api_secret_env.as_ref().and_then(|v| self.variable_name(v)),
            api_secret_file: lk.api_secret_file.as_ref().and_then(|f| self.path(f)),
        }
    }
}

struct ResolvedTimeline {
    play: Option<PlayRequest>,
    hangup_after: Duration,
    timeout: Duration,
}
