//! A call to make: the one model of what to dial and what the call must
//! show, built from flags (`cli`) or from a scenario case (`scenario`), with
//! one set of defaults, and [`CallRequest::prepare`]d into the ready-to-dial
//! [`PreparedCall`] (secrets and the WAV to play read, fresh ids). Also the
//! parsers both front ends share: target URIs, headers, durations, codecs.

use std::path::PathBuf;
use std::time::Duration;

use crate::audio::wav;
use crate::call::tls::{TlsClient, TlsOptions, TlsSetupError};
use crate::call::PreparedCall;
use crate::conversation::Conversation;
use crate::keylog::KeyLog;
use crate::livekit::LiveKitOverrides;
use crate::media::codec::AudioCodec;
use crate::media::script::{Clip, Script, ScriptStep};
use crate::media::sdes::SrtpMode;
use crate::media::session::RECORDING_RATE;
use crate::secret::{Secret, SecretError};
use crate::sip::caller::Credentials;
use crate::sip::message::{self, uri_target};
use crate::sip::transaction::TimerConfig;
use crate::sip::Transport;

/// The caller when none is given.
pub const DEFAULT_FROM: &str = "callprobe";
/// The codecs offered when none are given, in order.
pub const DEFAULT_CODECS: [AudioCodec; 3] = AudioCodec::ALL;
/// How long a connected call stays up.
pub const DEFAULT_HANGUP_AFTER: Duration = Duration::from_secs(5);
/// With a conversation the call hangs up after its last step; the hang-up
/// time, unless set, is only this cap.
pub const CONVERSATION_HANGUP_CAP: Duration = Duration::from_secs(120);
/// How long each INVITE waits for a final response (Timer B).
pub const DEFAULT_INVITE_TIMEOUT: Duration = Duration::from_secs(32);
/// How long an expected agent has to join.
pub const DEFAULT_AGENT_WITHIN: Duration = Duration::from_secs(5);
/// When playing starts after the call connects.
pub const DEFAULT_PLAY_AFTER: Duration = Duration::from_secs(1);

/// One call to place and what it must show.
#[derive(Debug, Clone)]
pub struct CallRequest {
    /// The scenario case's name (`None` for a one-off `callprobe call`).
    pub name: Option<String>,
    /// The scenario's name alone, for a call from a scenario file (its
    /// objectives are computed over the calls that share it).
    pub scenario: Option<String>,
    pub tags: Vec<String>,
    /// A `sip:` URI, checked by [`target_uri`].
    pub target_uri: String,
    /// A `sip:` URI, or a user/number that becomes `sip:<it>@<our address>`.
    pub from: String,
    /// `None`: the target URI's `;transport=` (TLS for `sips:`), else UDP.
    pub transport: Option<Transport>,
    /// How a TLS server is checked (calls over TLS only).
    pub tls: TlsOptions,
    /// Where TLS secrets are written (`--keylog`); `None`: nowhere.
    pub keylog: Option<KeyLog>,
    pub auth: Option<AuthRequest>,
    /// Extra INVITE headers, checked by [`parse_header`].
    pub headers: Vec<(String, String)>,
    /// Codecs to offer, in order of preference, without repeats.
    pub codecs: Vec<AudioCodec>,
    /// Whether to offer SDES-SRTP (`--srtp`, `caller.srtp`).
    pub srtp: SrtpMode,
    pub play: Option<PlayRequest>,
    /// A scripted conversation (empty: none). Not together with `play`.
    pub conversation: Conversation,
    pub hangup_after: Duration,
    pub invite_timeout: Duration,
    pub expect: Expectations,
    /// Where the LiveKit API is, over the `LIVEKIT_*` variables.
    pub livekit: LiveKitOverrides,
}

impl CallRequest {
    /// A request for `target_uri` with every default and no expectation
    /// beyond "the call is answered".
    pub fn new(target_uri: String) -> Self {
        CallRequest {
            name: None,
            scenario: None,
            tags: Vec::new(),
            target_uri,
            from: DEFAULT_FROM.to_string(),
            transport: None,
            tls: TlsOptions::default(),
            keylog: None,
            auth: None,
            headers: Vec::new(),
            codecs: DEFAULT_CODECS.to_vec(),
            srtp: SrtpMode::Off,
            play: None,
            conversation: Conversation::default(),
            hangup_after: DEFAULT_HANGUP_AFTER,
            invite_timeout: DEFAULT_INVITE_TIMEOUT,
            expect: Expectations::default(),
            livekit: LiveKitOverrides::default(),
        }
    }

    /// The ready-to-dial call: the password and the WAV read, the transport
    /// decided, fresh test and call ids.
    pub fn prepare(&self) -> Result<PreparedCall, PrepareError> {
        let transport = transport_for(self.transport, &self.target_uri)?;
        let tls = match transport {
            Transport::Tls => Some(TlsClient::new(&self.tls, self.keylog.as_ref()).map_err(PrepareError::Tls)?),
            _ => None,
        };
        let credentials = match &self.auth {
            None => None,
            Some(auth) => {
                let password = auth
                    .password
                    .read()
                    .map_err(|error| PrepareError::Password { secret: auth.password.clone(), error })?;
                Some(Credentials { username: auth.user.clone(), password })
            }
        };
        let script = match &self.play {
            None if !self.conversation.steps.is_empty() => {
                Some(crate::conversation::prepare_script(&self.conversation).map_err(PrepareError::Conversation)?)
            }
            None => None,
            Some(p) => {
                let pcm_16k = wav::load_mono(&p.wav, RECORDING_RATE)
                    .map_err(|e| PrepareError::Play { path: p.wav.clone(), error: e.to_string() })?;
                Some(p.script(Clip::new(p.label(), pcm_16k), self.conversation.end_of_turn))
            }
        };
        let (test_id, call_id) = PreparedCall::new_ids();
        Ok(PreparedCall {
            keylog: self.keylog.clone(),
            target_uri: self.target_uri.clone(),
            from_uri: self.from.clone(),
            transport,
            tls,
            credentials,
            headers: self.headers.clone(),
            invite_timeout: self.invite_timeout,
            hangup_after: self.hangup_after,
            timers: TimerConfig::default(),
            test_id,
            call_id,
            codecs: self.codecs.clone(),
            srtp: self.srtp,
            script,
        })
    }
}

/// The transport: `explicit`, else the target URI's `;transport=`, else TLS
/// for a `sips:` URI and UDP for a `sip:` one. A `sips:` URI is TLS only.
pub fn transport_for(explicit: Option<Transport>, target_uri: &str) -> Result<Transport, PrepareError> {
    let parsed = uri_target(target_uri).map_err(|e| PrepareError::Target(e.to_string()))?;
    let transport = match (explicit, parsed.transport.as_deref()) {
        (Some(t), _) => t,
        (None, Some("tls")) => Transport::Tls,
        (None, Some("tcp")) if parsed.secure => Transport::Tls,
        (None, Some("tcp")) => Transport::Tcp,
        (None, None) if parsed.secure => Transport::Tls,
        (None, Some("udp") | None) => Transport::Udp,
        (None, Some(other)) => return Err(PrepareError::TargetTransport(other.to_string())),
    };
    if parsed.secure && transport != Transport::Tls {
        return Err(PrepareError::SipsNeedsTls(transport.param().to_string()));
    }
    Ok(transport)
}

/// Digest credentials, with the password only referenced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthRequest {
    pub user: String,
    pub password: SecretRef,
}

/// Where a secret is read from when the call is prepared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl SecretRef {
    pub fn read(&self) -> Result<Secret, SecretError> {
        match self {
            SecretRef::Env(var) => Secret::from_env(var),
            SecretRef::File(path) => Secret::from_file(path),
        }
    }
}

/// What to say to the far end, and when (`--play`): one clip.
#[derive(Debug, Clone, PartialEq)]
pub struct PlayRequest {
    /// Any rate, bit depth and channels; read when the call is prepared.
    pub wav: PathBuf,
    pub start: PlayStart,
}

/// When to start playing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayStart {
    /// This long after the call connected.
    AfterConnect(Duration),
    /// When the far end's first turn (the greeting) is over: it stopped
    /// talking for the end-of-turn silence.
    AfterGreeting,
}

impl PlayRequest {
    /// How reports name the clip: its file name.
    pub fn label(&self) -> String {
        crate::conversation::Utterance::Wav(self.wav.clone()).label()
    }

    /// The one-clip script that plays it. The call still hangs up at its
    /// hang-up time, not when the clip is over.
    pub fn script(&self, clip: Clip, end_of_turn: Duration) -> Script {
        let wait = match self.start {
            PlayStart::AfterConnect(delay) => ScriptStep::Wait(delay),
            PlayStart::AfterGreeting => ScriptStep::AgentTurn { within: MAX_DURATION },
        };
        Script { steps: vec![wait, ScriptStep::Say { clip: 0 }], clips: vec![clip], end_of_turn, hang_up_at_end: false }
    }
}

/// Why a request could not be prepared; each front end names the setting.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("bad target: {0}")]
    Target(String),
    #[error("transport {0} in the target URI is not supported (udp, tcp, tls)")]
    TargetTransport(String),
    #[error("a sips: target must be called over TLS, not {0}: drop the transport setting or use a sip: URI")]
    SipsNeedsTls(String),
    /// The TLS client could not be set up (the CA file …).
    #[error("{0}")]
    Tls(TlsSetupError),
    #[error("{error}")]
    Password { secret: SecretRef, error: SecretError },
    #[error("{}: {error}", path.display())]
    Play { path: PathBuf, error: String },
    /// A step's clip could not be read or spoken (the error names the step).
    #[error("{0}")]
    Conversation(crate::conversation::ConversationError),
}

/// What the user expects from the call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Expectations {
    pub final_responses: FinalResponses,
    /// Checked by [`crate::verdict::checks::agent_joined`] against what
    /// LiveKit's API showed, which is not part of the SIP record.
    pub agent: Option<AgentExpectation>,
    /// What the far end's audio must show.
    pub media: MediaExpectations,
    /// The call must fail with this diagnosis code: checked by
    /// [`crate::verdict::checks::expected_diagnosis`]; the other checks then
    /// describe the expected failure and do not decide the verdict.
    pub diagnosis: Option<String>,
}

/// The final responses to our INVITEs the call must get.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FinalResponses {
    /// The call is answered with a 2xx.
    #[default]
    Answered,
    /// Exactly this sequence (`407,200`).
    Exactly(Vec<u16>),
    /// Any: recorded, not checked (e.g. to see what a trunk does with a
    /// number format).
    Any,
}

/// What the far end's audio must show.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MediaExpectations {
    pub speech_within: Option<Duration>,
    pub response_within: Option<Duration>,
    pub tone_hz: Option<f64>,
    /// Minimum RTP quality of what the far end sent.
    pub max_loss_percent: Option<f64>,
    pub max_jitter_ms: Option<f64>,
}

/// An agent must be in the call's room within a deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentExpectation {
    pub agent: ExpectedAgent,
    /// Counted from the INVITE that got through.
    pub within: Duration,
}

impl AgentExpectation {
    /// The `lk.agent_name` it must have; `None`: any participant of kind AGENT.
    pub fn name(&self) -> Option<&str> {
        match &self.agent {
            ExpectedAgent::Any => None,
            ExpectedAgent::Named(name) => Some(name),
        }
    }
}

/// Which agent must join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExpectedAgent {
    Any,
    /// This `lk.agent_name`.
    Named(String),
}

const TARGET_EXAMPLE: &str = "write sip:NUMBER@HOST[:PORT], e.g. sip:+14144007103@sip.example.com";

/// The call's target as a SIP URI (`sip:` is added to `user@host`), or what
/// is wrong with it in the user's terms: a web URL, `sip:` without a host, a
/// port out of range, a bare phone number.
pub fn target_uri(text: &str) -> Result<String, String> {
    let text = text.trim();
    let (has_scheme, rest) = match text.split_once(':') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") => {
            (true, rest)
        }
        Some((scheme, rest)) if looks_like_scheme(scheme, rest) => {
            return Err(format!("'{text}' is not a SIP URI: only sip: and sips: URIs are supported; {TARGET_EXAMPLE}"))
        }
        _ => (false, text),
    };
    let address = rest.split([';', '?']).next().unwrap_or(rest);
    let (user, host_port) = match address.rsplit_once('@') {
        Some((user, host_port)) => (Some(user), host_port),
        None => (None, address),
    };
    let (host, port) = match host_port.strip_prefix('[') {
        // [IPv6]:port
        Some(v6) => match v6.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => (host_port, None),
        },
        None => match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    if host.is_empty() {
        return Err(format!("'{text}' names no host: {TARGET_EXAMPLE}"));
    }
    if let Some(port) = port {
        match port.parse::<u32>() {
            Ok(1..=65535) => {}
            Ok(_) => return Err(format!("'{text}' has port {port}: a port must be 1-65535")),
            Err(_) => return Err(format!("'{text}' has port '{port}': a port must be a number, 1-65535")),
        }
    }
    let phone_number = host.starts_with(|c: char| c == '+' || c.is_ascii_digit())
        && host.chars().all(|c| c.is_ascii_digit() || "+-".contains(c));
    if user.is_none() && phone_number {
        return Err(format!(
            "'{text}' is a phone number, not a SIP URI: write sip:{host}@HOST, where HOST is the SIP endpoint (e.g. PROJECT.sip.livekit.cloud)"
        ));
    }
    let uri = if has_scheme { text.to_string() } else { format!("sip:{text}") };
    match uri_target(&uri) {
        Ok(_) => Ok(uri),
        Err(e) => {
            let detail = match e {
                message::ParseError::Syntax(detail) => detail,
                other => other.to_string(),
            };
            Err(format!("'{text}' is not a valid SIP URI ({detail}); {TARGET_EXAMPLE}"))
        }
    }
}

/// Whether `scheme:rest` starts with a URI scheme other than a host name
/// followed by a port (`example.com:5060`, `localhost:5070`).
fn looks_like_scheme(scheme: &str, rest: &str) -> bool {
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && (rest.starts_with("//") || !rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// What is wrong with a header; the front end says where it was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("'{0}': expected 'Name: value'")]
    NoColon(String),
    #[error("'{text}': '{name}' is not a valid header name")]
    BadName { text: String, name: String },
    #[error("'{0}': the value must be one line")]
    MultiLine(String),
}

/// `'X-Name: value'` → ("X-Name", "value").
pub fn parse_header(text: &str) -> Result<(String, String), HeaderError> {
    let (name, value) = text.split_once(':').ok_or_else(|| HeaderError::NoColon(text.to_string()))?;
    let name = name.trim();
    let token = |c: char| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(HeaderError::BadName { text: text.to_string(), name: name.to_string() });
    }
    if value.contains(['\r', '\n']) {
        return Err(HeaderError::MultiLine(name.to_string()));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

/// A duration (`5s`, `1m30s`, `500ms`), at most a day: longer values are
/// typos, and would overflow the clock arithmetic.
/// The longest duration callprobe accepts anywhere (flags and scenarios).
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d > MAX_DURATION {
        return Err(format!("{text} is longer than a day"));
    }
    Ok(d)
}

/// `g722`, `pcmu` (or `ulaw`), `pcma` (or `alaw`), in any case.
pub fn codec_named(name: &str) -> Option<AudioCodec> {
    match name.trim().to_ascii_lowercase().as_str() {
        "g722" => Some(AudioCodec::G722),
        "pcmu" | "ulaw" => Some(AudioCodec::Pcmu),
        "pcma" | "alaw" => Some(AudioCodec::Pcma),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_new_users_write() {
        assert_eq!(target_uri("sip:+1@127.0.0.1:5070").as_deref(), Ok("sip:+1@127.0.0.1:5070"));
        assert_eq!(target_uri("+1@example.com").as_deref(), Ok("sip:+1@example.com"));
        assert_eq!(target_uri("example.com:5060").as_deref(), Ok("sip:example.com:5060"));
        let err = |t: &str| target_uri(t).err().unwrap_or_default();
        assert!(err("sip:").starts_with("'sip:' names no host: write sip:NUMBER@HOST"), "{}", err("sip:"));
        assert!(err("sip:1@").contains("names no host"), "{}", err("sip:1@"));
        let web = err("http://example.com");
        assert!(web.starts_with("'http://example.com' is not a SIP URI: only sip: and sips: URIs"), "{web}");
        assert!(web.contains("sip:+14144007103@"), "{web}");
        assert!(err("tel:+14144007103").contains("is not a SIP URI"));
        assert_eq!(err("sip:1@127.0.0.1:99999"), "'sip:1@127.0.0.1:99999' has port 99999: a port must be 1-65535");
        assert!(err("sip:1@127.0.0.1:0").contains("a port must be 1-65535"));
        assert!(err("sip:1@h:x").contains("has port 'x': a port must be a number, 1-65535"));
        let number = err("+14144007103");
        assert!(number.starts_with("'+14144007103' is a phone number, not a SIP URI: write sip:+14144007103@HOST"));
        assert!(err("sip:14144007103").contains("write sip:14144007103@HOST"));
        assert_eq!(target_uri("sips:1@sip.example.com").as_deref(), Ok("sips:1@sip.example.com"));
    }

    #[test]
    fn tls_from_the_uri() {
        let t = |explicit, uri: &str| transport_for(explicit, uri).map_err(|e| e.to_string());
        assert_eq!(t(None, "sips:1@h"), Ok(Transport::Tls));
        assert_eq!(t(None, "sip:1@h;transport=tls"), Ok(Transport::Tls));
        assert_eq!(t(None, "sip:1@h;transport=TLS"), Ok(Transport::Tls));
        assert_eq!(t(None, "sips:1@h;transport=tcp"), Ok(Transport::Tls));
        assert_eq!(t(Some(Transport::Tls), "sip:1@h"), Ok(Transport::Tls));
        assert!(t(Some(Transport::Udp), "sips:1@h").unwrap_err().contains("must be called over TLS, not udp"));
        assert_eq!(uri_target("sips:1@h").ok().map(|u| u.port), Some(5061));
        assert_eq!(uri_target("sip:1@h;transport=tls").ok().map(|u| u.port), Some(5061));
        assert_eq!(uri_target("sips:1@h:5071").ok().map(|u| u.port), Some(5071));
        assert_eq!(uri_target("sip:1@h").ok().map(|u| u.port), Some(5060));
    }

    #[test]
    fn a_missing_ca_file_stops_preparing() {
        let mut r = CallRequest::new("sips:1@127.0.0.1".into());
        r.tls.ca = Some("/nonexistent/ca.pem".into());
        let e = r.prepare().unwrap_err();
        assert!(matches!(e, PrepareError::Tls(TlsSetupError::CaRead { .. })), "{e}");
        // Not over TLS: the file is not read.
        let mut r = CallRequest::new("sip:1@127.0.0.1".into());
        r.tls.ca = Some("/nonexistent/ca.pem".into());
        assert!(r.prepare().is_ok());
    }

    #[test]
    fn headers() {
        assert_eq!(parse_header("X-Lk-Foo: bar baz").unwrap(), ("X-Lk-Foo".into(), "bar baz".into()));
        assert_eq!(parse_header("no colon").unwrap_err().to_string(), "'no colon': expected 'Name: value'");
        assert_eq!(
            parse_header("Bad Name: x").unwrap_err().to_string(),
            "'Bad Name: x': 'Bad Name' is not a valid header name"
        );
    }

    #[test]
    fn codecs_by_name() {
        assert_eq!(codec_named(" ULAW"), Some(AudioCodec::Pcmu));
        assert_eq!(codec_named("alaw"), Some(AudioCodec::Pcma));
        assert_eq!(codec_named("opus"), None);
    }

    #[test]
    fn one_set_of_defaults() {
        let r = CallRequest::new("sip:1@127.0.0.1".into());
        assert_eq!((r.from.as_str(), r.codecs.as_slice()), (DEFAULT_FROM, &DEFAULT_CODECS[..]));
        assert_eq!(r.expect.final_responses, FinalResponses::Answered);
        let spec = r.prepare().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(spec.transport, Transport::Udp);
        assert_eq!(spec.invite_timeout, DEFAULT_INVITE_TIMEOUT);
    }
}
