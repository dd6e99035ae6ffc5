//! The connection to a LiveKit server's API: where it is and with which key
//! (`LIVEKIT_URL`, `LIVEKIT_API_KEY`, `LIVEKIT_API_SECRET`, flags override;
//! the secret only from the environment or a file), the clients of the
//! `livekit-api` crate (RoomClient, SIPClient, AgentDispatchClient), and the
//! translation of their protobuf answers into callprobe's own plain types.
//!
//! `livekit-api` 0.10 does not re-export `livekit-protocol`, so its protobuf
//! types cannot be named here; every answer is converted right where it
//! arrives (closures infer the types) into the types of [`room_watch`] and
//! [`sip_config`]. Everything needed is in the crate: no raw Twirp calls.

pub mod doctor;
pub mod observation;
pub mod room_watch;
pub mod sip_config;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use livekit_api::services::agent_dispatch::AgentDispatchClient;
use livekit_api::services::room::RoomClient;
use livekit_api::services::sip::{ListSIPDispatchRuleFilter, ListSIPInboundTrunkFilter, SIPClient};
use livekit_api::services::{ServerError, ServiceError};

use crate::secret::Secret;
use room_watch::{DispatchView, JobView, ParticipantView, RoomView};
use sip_config::{DispatchRule, InboundTrunk, SipConfig};

pub const URL_VAR: &str = "LIVEKIT_URL";
pub const API_KEY_VAR: &str = "LIVEKIT_API_KEY";
pub const API_SECRET_VAR: &str = "LIVEKIT_API_SECRET";

/// How long one API request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the LiveKit server is and how to authenticate to it.
#[derive(Clone)]
pub struct LiveKitConfig {
    pub url: String,
    pub api_key: String,
    pub api_secret: Secret,
}

impl fmt::Debug for LiveKitConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveKitConfig")
            .field("url", &self.url)
            .field("api_key", &self.api_key)
            .field("api_secret", &self.api_secret)
            .finish()
    }
}

/// What the command line says about LiveKit; each field overrides the environment.
#[derive(Debug, Clone, Default)]
pub struct LiveKitOverrides {
    pub url: Option<String>,
    pub api_key: Option<String>,
    /// Read the secret from this environment variable instead of `LIVEKIT_API_SECRET`.
    pub api_secret_env: Option<String>,
    pub api_secret_file: Option<PathBuf>,
}

/// LiveKit is (partly) configured but something is missing or wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("{var} is not set (or {alternative})")]
    Missing { var: String, alternative: &'static str },
    #[error("{0} is set but empty")]
    Empty(String),
    #[error("LiveKit URL '{0}' must start with ws://, wss://, http:// or https://")]
    BadUrl(String),
    #[error("{0}")]
    SecretFile(String),
}

impl LiveKitConfig {
    /// The configuration from the process environment and the flags.
    pub fn from_env(overrides: &LiveKitOverrides) -> Result<Option<LiveKitConfig>, ConfigError> {
        Self::resolve(overrides, |var| std::env::var(var).ok())
    }

    /// `Ok(None)` when nothing at all points at LiveKit (no URL, key or
    /// secret anywhere): the call then runs without observing LiveKit.
    pub fn resolve(
        overrides: &LiveKitOverrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<LiveKitConfig>, ConfigError> {
        let secret_var = overrides.api_secret_env.as_deref().unwrap_or(API_SECRET_VAR);
        let url = overrides.url.clone().or_else(|| env(URL_VAR));
        let api_key = overrides.api_key.clone().or_else(|| env(API_KEY_VAR));
        let secret_in_env = env(secret_var);
        let anything = url.is_some()
            || api_key.is_some()
            || secret_in_env.is_some()
            || overrides.api_secret_env.is_some()
            || overrides.api_secret_file.is_some();
        if !anything {
            return Ok(None);
        }
        let url = non_empty(url, URL_VAR, "--livekit-url")?;
        if !["ws://", "wss://", "http://", "https://"].iter().any(|s| url.to_ascii_lowercase().starts_with(s)) {
            return Err(ConfigError::BadUrl(url));
        }
        let api_key = non_empty(api_key, API_KEY_VAR, "--livekit-api-key")?;
        let api_secret = match &overrides.api_secret_file {
            Some(path) => Secret::from_file(path).map_err(|e| ConfigError::SecretFile(e.to_string()))?,
            None => match secret_in_env {
                Some(v) if !v.is_empty() => Secret::new(v),
                Some(_) => return Err(ConfigError::Empty(secret_var.to_string())),
                None => {
                    return Err(ConfigError::Missing {
                        var: secret_var.to_string(),
                        alternative: "--livekit-api-secret-env VAR / --livekit-api-secret-file FILE",
                    })
                }
            },
        };
        Ok(Some(LiveKitConfig { url, api_key, api_secret }))
    }
}

fn non_empty(value: Option<String>, var: &str, flag: &'static str) -> Result<String, ConfigError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_string()),
        Some(_) => Err(ConfigError::Empty(var.to_string())),
        None => Err(ConfigError::Missing { var: var.to_string(), alternative: flag }),
    }
}

/// What kind of failure an API request had; decides whether to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiErrorKind {
    /// No HTTP answer (connection refused, timeout, DNS).
    Unreachable,
    /// Key or secret wrong, or the key lacks the grant.
    Unauthenticated,
    NotFound,
    /// The server answered that it cannot serve now (5xx, `unavailable`).
    Unavailable,
    /// The server refused the request for another reason.
    Rejected,
    /// The request could not even be built (token, URL).
    Local,
}

/// A failed LiveKit API request, with the operation it was part of.
#[derive(Debug, Clone, thiserror::Error)]
#[error("LiveKit {operation} at {url}: {detail}")]
pub struct ApiError {
    pub operation: String,
    pub url: String,
    pub kind: ApiErrorKind,
    pub detail: String,
}

impl ApiError {
    /// Worth trying again later (the server may come back).
    pub fn is_transient(&self) -> bool {
        matches!(self.kind, ApiErrorKind::Unreachable | ApiErrorKind::Unavailable)
    }

    fn from_service(operation: &str, url: &str, e: ServiceError) -> ApiError {
        let (kind, detail) = match &e {
            ServiceError::Twirp(ServerError::Twirp(code)) => {
                let kind = match code.code.as_str() {
                    "unauthenticated" | "permission_denied" => ApiErrorKind::Unauthenticated,
                    "not_found" => ApiErrorKind::NotFound,
                    "unavailable" | "internal" | "unknown" | "deadline_exceeded" | "resource_exhausted" => {
                        ApiErrorKind::Unavailable
                    }
                    _ => ApiErrorKind::Rejected,
                };
                (kind, format!("{}: {}", code.code, code.msg))
            }
            // The crate reads a non-200 answer as Twirp JSON; LiveKit's auth
            // layer answers a bad token with plain text (`401 invalid
            // authorization token`), which then fails to decode.
            ServiceError::Twirp(ServerError::Request(r)) if r.is_decode() => (
                ApiErrorKind::Unauthenticated,
                "the server refused the request with a non-Twirp answer, as LiveKit does for a token it \
                 cannot verify (401 invalid authorization token): check the API key and secret"
                    .to_string(),
            ),
            ServiceError::Twirp(ServerError::Request(r)) => {
                let kind = if r.is_connect() || r.is_timeout() || r.is_request() {
                    ApiErrorKind::Unreachable
                } else if r.status().is_some_and(|s| s.as_u16() == 401 || s.as_u16() == 403) {
                    ApiErrorKind::Unauthenticated
                } else if r.status().is_some_and(|s| s.is_server_error()) {
                    ApiErrorKind::Unavailable
                } else {
                    ApiErrorKind::Rejected
                };
                (kind, error_chain(r))
            }
            ServiceError::Twirp(other) => (ApiErrorKind::Rejected, other.to_string()),
            ServiceError::AccessToken(t) => (ApiErrorKind::Local, format!("cannot sign an access token: {t}")),
            ServiceError::Env(v) => (ApiErrorKind::Local, v.to_string()),
        };
        ApiError { operation: operation.to_string(), url: url.to_string(), kind, detail }
    }
}

/// An error with its sources ("error sending request: connection refused").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// The API clients for one LiveKit server. The secret is handed to the
/// clients (which sign a short-lived token per request) and kept nowhere else.
pub struct ServerApi {
    url: String,
    rooms: RoomClient,
    sip: SIPClient,
    dispatch: AgentDispatchClient,
}

impl fmt::Debug for ServerApi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerApi").field("url", &self.url).finish_non_exhaustive()
    }
}

impl ServerApi {
    pub fn new(config: &LiveKitConfig) -> ServerApi {
        let secret = config.api_secret.expose();
        ServerApi {
            url: config.url.clone(),
            rooms: RoomClient::with_api_key(&config.url, &config.api_key, secret).with_request_timeout(REQUEST_TIMEOUT),
            sip: SIPClient::with_api_key(&config.url, &config.api_key, secret).with_request_timeout(REQUEST_TIMEOUT),
            dispatch: AgentDispatchClient::with_api_key(&config.url, &config.api_key, secret)
                .with_request_timeout(REQUEST_TIMEOUT),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn error(&self, operation: &str, e: ServiceError) -> ApiError {
        ApiError::from_service(operation, &self.url, e)
    }

    /// One cheap authenticated request: proves the URL, key and secret work
    /// before a call depends on them.
    pub async fn preflight(&self) -> Result<(), ApiError> {
        self.rooms
            .list_rooms(vec!["callprobe-preflight".to_string()])
            .await
            .map(|_| ())
            .map_err(|e| self.error("ListRooms", e))
    }

    pub async fn list_rooms(&self) -> Result<Vec<RoomView>, ApiError> {
        let rooms = self.rooms.list_rooms(Vec::new()).await.map_err(|e| self.error("ListRooms", e))?;
        Ok(rooms
            .into_iter()
            .map(|r| RoomView {
                created_unix_ms: unix_ms(r.creation_time_ms, r.creation_time),
                name: r.name,
                sid: r.sid,
            })
            .collect())
    }

    pub async fn list_participants(&self, room: &str) -> Result<Vec<ParticipantView>, ApiError> {
        let participants = self.rooms.list_participants(room).await.map_err(|e| self.error("ListParticipants", e))?;
        Ok(participants
            .into_iter()
            .map(|p| ParticipantView {
                joined_unix_ms: unix_ms(p.joined_at_ms, p.joined_at),
                identity: p.identity,
                kind: p.kind,
                state: p.state,
                attributes: p.attributes.into_iter().collect::<BTreeMap<_, _>>(),
            })
            .collect())
    }

    pub async fn list_dispatches(&self, room: &str) -> Result<Vec<DispatchView>, ApiError> {
        let dispatches = self.dispatch.list_dispatch(room).await.map_err(|e| self.error("ListDispatch", e))?;
        Ok(dispatches
            .into_iter()
            .map(|d| {
                let (created_unix_ms, jobs) = match d.state {
                    Some(state) => (
                        nanos_to_ms(state.created_at),
                        state
                            .jobs
                            .into_iter()
                            .map(|j| {
                                let state = j.state.unwrap_or_default();
                                JobView {
                                    id: j.id,
                                    status: state.status,
                                    error: state.error,
                                    worker_id: state.worker_id,
                                    participant_identity: state.participant_identity,
                                    started_unix_ms: nanos_to_ms(state.started_at),
                                    ended_unix_ms: nanos_to_ms(state.ended_at),
                                }
                            })
                            .collect(),
                    ),
                    None => (None, Vec::new()),
                };
                DispatchView { id: d.id, agent_name: d.agent_name, created_unix_ms, jobs }
            })
            .collect())
    }

    /// Every inbound trunk and dispatch rule (read-only). Passwords are
    /// reduced to "set / not set" here and never kept.
    pub async fn fetch_sip_config(&self) -> Result<SipConfig, ApiError> {
        let trunks = self
            .sip
            .list_sip_inbound_trunk(ListSIPInboundTrunkFilter::All)
            .await
            .map_err(|e| self.error("ListSIPInboundTrunk", e))?;
        let rules = self
            .sip
            .list_sip_dispatch_rule(ListSIPDispatchRuleFilter::All)
            .await
            .map_err(|e| self.error("ListSIPDispatchRule", e))?;
        let trunks = trunks
            .into_iter()
            .map(|t| {
                // `media.encryption` when set, else the older `media_encryption`,
                // which LiveKit SIP v1.0.0 still reads (and the testbed sets):
                // deprecated in the protocol, not in the servers.
                #[allow(deprecated)]
                let legacy = t.media_encryption;
                let encryption = t.media.as_ref().and_then(|m| m.encryption).unwrap_or(legacy);
                InboundTrunk {
                    id: t.sip_trunk_id,
                    name: t.name,
                    numbers: t.numbers,
                    allowed_addresses: t.allowed_addresses,
                    allowed_numbers: t.allowed_numbers,
                    auth_username: t.auth_username,
                    auth_password_set: !t.auth_password.is_empty(),
                    media_encryption: sip_config::MediaEncryption::from_proto(encryption),
                }
            })
            .collect();
        let rules = rules
            .into_iter()
            .map(|r| {
                // The rule kind is a protobuf oneof whose enum cannot be named
                // (see the module doc); its JSON form names the variant.
                let (kind, room) = r
                    .rule
                    .as_ref()
                    .and_then(|rule| serde_json::to_value(rule).ok())
                    .map(|v| sip_config::rule_kind_from_json(&v))
                    .unwrap_or_else(|| ("none".to_string(), String::new()));
                let (has_room_config, agents) = match r.room_config {
                    Some(rc) => (true, rc.agents.into_iter().map(|a| a.agent_name).collect()),
                    None => (false, Vec::new()),
                };
                DispatchRule {
                    id: r.sip_dispatch_rule_id,
                    name: r.name,
                    trunk_ids: r.trunk_ids,
                    numbers: r.numbers,
                    inbound_numbers: r.inbound_numbers,
                    kind,
                    room,
                    has_room_config,
                    agents,
                }
            })
            .collect();
        Ok(SipConfig { trunks, rules })
    }
}

/// A time LiveKit gives in milliseconds, or (older servers) only in seconds;
/// zero means unset.
fn unix_ms(ms: i64, secs: i64) -> Option<i64> {
    if ms > 0 {
        Some(ms)
    } else {
        (secs > 0).then_some(secs * 1000)
    }
}

fn nanos_to_ms(nanos: i64) -> Option<i64> {
    (nanos > 0).then_some(nanos / 1_000_000)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn nothing_configured_means_no_livekit() {
        assert!(LiveKitConfig::resolve(&LiveKitOverrides::default(), env_of(&[])).unwrap().is_none());
    }

    #[test]
    fn from_the_conventional_variables() {
        let cfg = LiveKitConfig::resolve(
            &LiveKitOverrides::default(),
            env_of(&[(URL_VAR, "ws://127.0.0.1:7880"), (API_KEY_VAR, "devkey"), (API_SECRET_VAR, "s3cret")]),
        )
        .unwrap()
        .unwrap();
        assert_eq!(cfg.url, "ws://127.0.0.1:7880");
        assert_eq!(cfg.api_key, "devkey");
        assert_eq!(cfg.api_secret.expose(), "s3cret");
        assert!(!format!("{cfg:?}").contains("s3cret"));
    }

    #[test]
    fn flags_override_and_name_the_missing_variable() {
        let o = LiveKitOverrides {
            url: Some("https://x.livekit.cloud".into()),
            api_key: Some("k".into()),
            api_secret_env: Some("MY_SECRET".into()),
            api_secret_file: None,
        };
        let cfg =
            LiveKitConfig::resolve(&o, env_of(&[(URL_VAR, "ws://ignored"), ("MY_SECRET", "v")])).unwrap().unwrap();
        assert_eq!(cfg.url, "https://x.livekit.cloud");
        assert_eq!(cfg.api_secret.expose(), "v");
        let err = LiveKitConfig::resolve(&o, env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("MY_SECRET is not set"), "{err}");
        let err =
            LiveKitConfig::resolve(&LiveKitOverrides::default(), env_of(&[(URL_VAR, "ws://h:7880")])).unwrap_err();
        assert!(err.to_string().contains("LIVEKIT_API_KEY"), "{err}");
        let err =
            LiveKitConfig::resolve(&LiveKitOverrides::default(), env_of(&[(API_KEY_VAR, "k"), (API_SECRET_VAR, "s")]))
                .unwrap_err();
        assert!(err.to_string().contains("LIVEKIT_URL"), "{err}");
        let err = LiveKitConfig::resolve(
            &LiveKitOverrides::default(),
            env_of(&[(URL_VAR, "127.0.0.1:7880"), (API_KEY_VAR, "k"), (API_SECRET_VAR, "s")]),
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::BadUrl(_)));
    }
}
