//! From observations to known causes: one table of rules, each naming a
//! failure mode of docs/failure-modes.md with its evidence, the fix, and
//! where to read more (`reference`: that item's anchor, the LiveKit behaviour
//! in docs/livekit-sip.md it rests on, upstream issues). Rules are data; adding a failure mode means
//! adding a row, not another `if` somewhere else.
//!
//! Observations are the SIP record and, when LiveKit is configured, what its
//! API showed (the call's room, agents, dispatches; the dispatch rule and
//! trunks read after a failure). The LiveKit-aware rows come first in the
//! table and name a specific cause; when one applies, the generic SIP-level
//! rows it explains (`ringing_without_answer`, `rejected_busy_or_timeout`,
//! `no_response`, `no_trunk_found`; see [`SUPERSEDED_BY`]) are left out: the
//! specific row's evidence already states the SIP symptom, and a second,
//! vaguer "why" would only send people down the wrong list of fixes.

use crate::call::{CallOutcome, Direction};
use crate::livekit::observation::LiveKitObservation;
use crate::livekit::sip_config::{is_number_without_e164, looks_like_phone_number, DispatchRule, SipConfig};
use crate::request::AgentExpectation;
use crate::sip::caller::EndReason;
use crate::sip::TlsProblem;
use crate::time::{Millis, Offset};
use crate::verdict::describe_end;

/// A diagnosis made: its rule's text, and what in this call shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    pub code: &'static str,
    pub summary: &'static str,
    pub evidence: String,
    pub fix: &'static str,
    pub reference: &'static str,
}

/// What a rule may look at.
pub struct Observation<'a> {
    pub record: &'a CallOutcome,
    /// What LiveKit's API showed about the call; `None`: LiveKit not configured.
    pub livekit: Option<&'a LiveKitObservation>,
    /// Trunks and dispatch rules read through the SIP API after the failure.
    pub sip_config: Option<&'a SipConfig>,
    /// `--expect-agent [NAME] --agent-within D`.
    pub expected_agent: Option<&'a AgentExpectation>,
    /// Whether the far end spoke (media analysis); `None` while unknown.
    pub far_end_speech: Option<bool>,
    /// When the far end first spoke, after the answer (media analysis).
    pub first_speech: Option<std::time::Duration>,
    /// The deadline for that (`--expect-speech-within`).
    pub speech_within: Option<std::time::Duration>,
}

impl<'a> Observation<'a> {
    /// Only the SIP record.
    pub fn new(record: &'a CallOutcome) -> Observation<'a> {
        Observation {
            record,
            livekit: None,
            sip_config: None,
            expected_agent: None,
            far_end_speech: None,
            first_speech: None,
            speech_within: None,
        }
    }
}

impl Observation<'_> {
    /// LiveKit's view of the call and its room, when the room was found.
    fn room(&self) -> Option<(&LiveKitObservation, &str)> {
        let lk = self.livekit?;
        Some((lk, lk.room.as_deref()?))
    }
    /// The agent name the user expects (`None`: any agent).
    fn agent_name(&self) -> Option<&str> {
        self.expected_agent.and_then(AgentExpectation::name).filter(|n| !n.is_empty())
    }
    /// The room was found and no agent of the expected name ever joined it.
    fn no_expected_agent(&self) -> Option<(&LiveKitObservation, &str)> {
        self.room().filter(|(lk, _)| lk.first_agent(self.agent_name()).is_none())
    }
    /// The dispatch rule the call matched (from `sip.ruleID`).
    fn matched_rule(&self) -> Option<&DispatchRule> {
        let lk = self.livekit?;
        lk.dispatch_rule.as_ref().or_else(|| self.sip_config?.rule(lk.rule_id.as_deref()?))
    }
    fn answered(&self) -> bool {
        self.last_final().is_some_and(|(s, _)| (200..300).contains(&s))
    }
    /// The SIP side in a few words, for evidence that starts from LiveKit.
    fn sip_outcome(&self) -> String {
        self.ended().map(describe_end).unwrap_or_else(|| "the call did not finish".into())
    }
    /// The user part of the Request-URI: the number we called.
    fn called_number(&self) -> Option<&str> {
        let rest = self.record.target.split_once(':')?.1;
        let user = rest.split_once('@')?.0;
        Some(user.split(';').next().unwrap_or(user))
    }
    /// RTP packets received from the far end.
    fn rx_packets(&self) -> u64 {
        self.record.rtp_packets_received
    }
    fn watched_s(&self) -> f64 {
        self.livekit.map_or(0.0, |lk| lk.watched.seconds())
    }
    fn finals(&self) -> impl Iterator<Item = (u16, &str)> {
        self.record.sip.final_responses.iter().map(|f| (f.status, f.reason.as_str()))
    }
    fn last_final(&self) -> Option<(u16, &str)> {
        self.finals().last()
    }
    /// Evidence when the INVITE's last final response has one of `statuses`.
    fn invite_answered(&self, statuses: &[u16]) -> Option<String> {
        let (status, reason) = self.last_final().filter(|(s, _)| statuses.contains(s))?;
        Some(format!("INVITE answered {status} {reason}"))
    }
    fn ended(&self) -> Option<&EndReason> {
        self.record.sip.ended.as_ref()
    }
}

/// A 500 to our authenticated INVITE whose offer had no `a=crypto`: what
/// LiveKit SIP answers a plain offer on a trunk that requires SRTP. With the
/// trunks read, only when the called number's trunk requires it; without
/// them, said as the likely cause.
fn srtp_required_by_trunk(o: &Observation) -> Option<String> {
    let answered = o.invite_answered(&[500])?;
    let offer = o.record.messages.iter().find(|m| m.dir == Direction::Out && m.first_line.starts_with("INVITE "))?;
    if offer.raw.contains("a=crypto:") {
        return None;
    }
    match o.sip_config {
        Some(config) => {
            let number = o.called_number()?;
            let trunk = config
                .trunks_for_number(number)
                .into_iter()
                .find(|t| t.media_encryption == crate::livekit::sip_config::MediaEncryption::Require)?;
            Some(format!(
                "{answered} to an offer of plain RTP; trunk {} ({}) for {number} has media_encryption REQUIRE",
                trunk.name, trunk.id
            ))
        }
        None => Some(format!(
            "{answered} to an offer of plain RTP (no a=crypto): LiveKit SIP answers 500 when it cannot start media, most often because the trunk requires SRTP"
        )),
    }
}

struct Rule {
    code: &'static str,
    /// Evidence when the rule applies.
    applies: fn(&Observation) -> Option<String>,
    summary: &'static str,
    fix: &'static str,
    reference: &'static str,
    /// Context worth a note even when every check passed (e.g. LiveKit
    /// accepted a number without `+` but hands it to the agent that way).
    also_when_passed: bool,
}

const RULES: &[Rule] = &[
    // LiveKit-aware rows: a specific cause, read from the LiveKit API.
    Rule {
        code: "called_number_not_on_trunk",
        applies: called_number_not_on_trunk,
        summary: "The called number is on no LiveKit inbound trunk: LiveKit Cloud answers 404 No trunk found, a self-hosted server drops the INVITE",
        fix: "Add the number in +E.164 form to the inbound trunk (`lk sip inbound update --id <trunk> --numbers ...`), or call a number the trunk lists; run `callprobe doctor --number <N>`",
        reference: "docs/failure-modes.md#1-404-no-trunk-found-the-trunk-does-not-match (runbook item 1); docs/livekit-sip.md#trunk-matching; livekit/sip#592",
        also_when_passed: false,
    },
    Rule {
        code: "dispatch_rule_without_agents",
        applies: dispatch_rule_without_agents,
        summary: "The call reached a room but the dispatch rule dispatches no agent (room_config.agents empty: the deprecated-fields trap), so no agent ever joins",
        fix: "Update the rule in place through the SIPDispatchRuleInfo wrapper with room_config=RoomConfiguration(agents=[RoomAgentDispatch(agent_name=...)]) (`lk.sip.update_sip_dispatch_rule(rule_id, SIPDispatchRuleInfo(...))`); check with `callprobe doctor`",
        reference: "docs/failure-modes.md#2-the-agent-never-joins-no-agent-in-the-dispatch-rule (runbook item 2); livekit/sip#401, livekit/livekit#3690",
        also_when_passed: false,
    },
    Rule {
        code: "agent_not_dispatched",
        applies: agent_not_dispatched,
        summary: "LiveKit dispatched the right agent_name, but no worker took the job: every worker of that name is full (load above its threshold) or none is running",
        fix: "Add agent capacity (more worker processes or machines, a higher load_threshold or job limit if the machine can take it) and check the workers' load; under load this is the deployment's capacity limit",
        reference: "docs/failure-modes.md#20-no-worker-takes-the-job-the-agent-deployment-is-full",
        also_when_passed: false,
    },
    Rule {
        code: "agent_name_mismatch",
        applies: agent_name_mismatch,
        summary: "The agent_name the dispatch asks for is not the agent that should answer, or no worker is registered under it",
        fix: "Use one explicit agent_name on both sides: @server.rtc_session(agent_name=NAME) and the rule's RoomAgentDispatch(agent_name=NAME); check the worker is running (`lk agent list` on Cloud, the worker log otherwise)",
        reference: "docs/failure-modes.md#4-agent_name-mismatch (runbook item 4); livekit/agents#3202",
        also_when_passed: false,
    },
    Rule {
        code: "agent_crashed_at_start",
        applies: agent_crashed_at_start,
        summary: "A worker accepted the job but the agent never stayed in the room: it crashed (or hung) at start, e.g. wait_for_participant() before ctx.connect()",
        fix: "Read the agent's log for the job id; call `await ctx.connect()` first in the entrypoint, before wait_for_participant()",
        reference: "docs/failure-modes.md#3-the-agent-crashes-at-start (runbook item 3); livekit/agents#4861",
        also_when_passed: false,
    },
    Rule {
        code: "agent_joined_late",
        applies: agent_joined_late,
        summary: "The agent joined, but later than the deadline: slow start (cold start, prewarm, model loading) or an overloaded worker",
        fix: "Load models in prewarm, keep workers warm, check the worker's load; raise --agent-within only if callers may wait that long",
        reference: "docs/failure-modes.md#13-the-agent-joins-too-late (runbook item 13); docs/livekit-sip.md#call-progress-and-answer",
        also_when_passed: false,
    },
    Rule {
        code: "agent_spoke_late",
        applies: agent_spoke_late,
        summary: "The agent spoke, but later than the deadline after the answer: a slow first turn (LLM/TTS round trip, model loading) or an overloaded worker",
        fix: "Send a fixed greeting first, prewarm TTS and models, keep the worker's load down; a load run's first-audio percentiles show at what concurrency it grows",
        reference: "docs/failure-modes.md#21-the-agent-speaks-too-late",
        also_when_passed: false,
    },
    Rule {
        code: "agent_joined_but_silent",
        applies: agent_joined_but_silent,
        summary: "The call was answered but the agent said nothing",
        fix: "Check the agent's session starts (greeting sent, TTS reachable) and the media path: the RTP address in LiveKit's SDP answer must be reachable from the caller",
        reference: "docs/failure-modes.md#15-answered-but-the-agent-is-silent (runbook item 15); docs/livekit-sip.md#codecs-and-dtmf; agent logs",
        also_when_passed: false,
    },
    Rule {
        code: "no_trunk_found",
        applies: |o| o.invite_answered(&[404]),
        summary: "LiveKit found no inbound trunk for this call: credential auth is missing on the carrier or the trunk, or the called number is not on the trunk",
        fix: "Set the same user/password on the carrier side (Telnyx FQDN connection user_name/password) and on the LiveKit inbound trunk (auth_username/auth_password); check the called number is listed on the trunk in +E.164 form (`lk sip inbound list`)",
        reference: "docs/failure-modes.md#1-404-no-trunk-found-the-trunk-does-not-match (runbook item 1); livekit/sip#592",
        also_when_passed: false,
    },
    Rule {
        code: "credentials_rejected",
        applies: |o| match o.ended() {
            Some(EndReason::CredentialsRejected { status, reason }) => Some(format!(
                "we answered the digest challenge and got {status} {reason}"
            )),
            _ => None,
        },
        summary: "The trunk refused our digest credentials: the password (or user) differs between caller and trunk",
        fix: "Make auth_username/auth_password on the LiveKit inbound trunk equal the carrier's user_name/password (`lk sip inbound update --id <trunk> --auth-user U --auth-pass P`), then call again. If the same credentials also pass, look for a concurrent call from the same caller number: LiveKit SIP keeps one challenge per From number and answers the other 401",
        reference: "docs/failure-modes.md#6-credentials-rejected (runbook item 6); docs/livekit-sip.md#wrong-credentials",
        also_when_passed: false,
    },
    Rule {
        code: "credentials_required",
        applies: |o| match o.ended() {
            Some(EndReason::ChallengedWithoutCredentials { status }) => {
                Some(format!("INVITE challenged with {status}; no credentials were given"))
            }
            _ => None,
        },
        summary: "The trunk demands digest credentials and none were sent",
        fix: "Pass --auth-user and --auth-password-env (or --auth-password-file); or, if you meant to check that the trunk demands credentials, use --expect 407",
        reference: "docs/failure-modes.md#7-credentials-required (runbook item 7); docs/livekit-sip.md#digest-challenge",
        also_when_passed: false,
    },
    Rule {
        code: "challenge_unanswerable",
        applies: |o| match o.ended() {
            Some(EndReason::UnanswerableChallenge { status, detail }) => Some(format!("{status}: {detail}")),
            _ => None,
        },
        summary: "The endpoint's digest challenge uses something callprobe cannot answer",
        fix: "Check the Proxy-Authenticate/WWW-Authenticate header in the report; LiveKit SIP sends MD5 without qop",
        reference: "docs/failure-modes.md#8-a-challenge-callprobe-cannot-answer (runbook item 8); docs/livekit-sip.md#digest-challenge; RFC 7616",
        also_when_passed: false,
    },
    Rule {
        code: "port_unreachable",
        applies: |o| match o.ended() {
            Some(EndReason::PortUnreachable { peer }) => Some(format!(
                "nothing listens on {peer}/udp: the INVITE came back as ICMP port unreachable after {} INVITE(s)",
                o.record.sip.invites_sent
            )),
            _ => None,
        },
        summary: "Nothing listens on the target's SIP port: wrong host or port, or the SIP service is down",
        fix: "Check the host and port of the SIP URI (LiveKit SIP listens on 5060, UDP and TCP) and that the SIP service is running there",
        reference: "docs/failure-modes.md#16-no-response-to-the-invite; RFC 3261 section 18.4 (ICMP errors)",
        also_when_passed: false,
    },
    Rule {
        code: "no_response",
        applies: |o| match o.ended() {
            Some(EndReason::NoResponse { waited_ms }) => Some(format!(
                "{} INVITE(s) sent over {}, {} retransmission(s), nothing came back in {} ms",
                o.record.sip.invites_sent,
                o.record.transport.via_name(),
                o.record.sip.invite_retransmissions,
                waited_ms
            )),
            _ => None,
        },
        summary: "Nothing answered the INVITE: wrong host, port or transport, or a firewall drops SIP",
        fix: "Check the SIP URI host and port (LiveKit SIP listens on 5060, UDP and TCP) and the transport the carrier uses (--transport tcp for a Telnyx FQDN connection set to TCP)",
        reference: "docs/failure-modes.md#16-no-response-to-the-invite (runbook item 16); docs/livekit-sip.md#transports",
        also_when_passed: false,
    },
    Rule {
        code: "tls_certificate_expired",
        applies: |o| tls_failed(o, TlsProblem::CertificateExpired),
        summary: "The SIP server presented an expired (or not yet valid) TLS certificate",
        fix: "Renew the server's certificate (and check the server's clock); --tls-insecure only to look past it while testing",
        reference: "docs/failure-modes.md#25-tls-certificate-or-handshake-failed; RFC 5922",
        also_when_passed: false,
    },
    Rule {
        code: "tls_wrong_host",
        applies: |o| tls_failed(o, TlsProblem::WrongHost),
        summary: "The SIP server's TLS certificate does not name the host that was called",
        fix: "Call the host name the certificate is issued for (the URI host is what is checked), or reissue the certificate with this name (or IP address) in its subjectAltName",
        reference: "docs/failure-modes.md#25-tls-certificate-or-handshake-failed; RFC 5922 section 7",
        also_when_passed: false,
    },
    Rule {
        code: "tls_unknown_ca",
        applies: |o| tls_failed(o, TlsProblem::UnknownCa),
        summary: "The SIP server's TLS certificate is not signed by a trusted CA (self-signed, private CA, or a missing intermediate)",
        fix: "Give the private CA with --tls-ca FILE (tls_ca = \"FILE\" in [target]), or make the server send its full chain",
        reference: "docs/failure-modes.md#25-tls-certificate-or-handshake-failed",
        also_when_passed: false,
    },
    Rule {
        code: "tls_bad_certificate",
        applies: |o| tls_failed(o, TlsProblem::BadCertificate),
        summary: "The SIP server's TLS certificate was refused",
        fix: "Read the detail: the certificate is revoked, badly signed, or not meant for a TLS server; reissue it",
        reference: "docs/failure-modes.md#25-tls-certificate-or-handshake-failed",
        also_when_passed: false,
    },
    Rule {
        code: "tls_handshake_timeout",
        applies: |o| tls_failed(o, TlsProblem::HandshakeTimeout),
        summary: "TCP connected but the TLS handshake never finished: the port does not speak TLS, or the server is stuck",
        fix: "Check that the port is the server's TLS port (LiveKit SIP: the TLS listener's port, often 5061) and not its TCP one",
        reference: "docs/failure-modes.md#25-tls-certificate-or-handshake-failed",
        also_when_passed: false,
    },
    Rule {
        code: "tls_handshake_failed",
        applies: |o| tls_failed(o, TlsProblem::HandshakeFailed),
        summary: "The TLS handshake failed (no common version or cipher suite, or the server sent an alert)",
        fix: "Read the detail; callprobe speaks TLS 1.2 and 1.3 — the server must offer one of them",
        reference: "docs/failure-modes.md#25-tls-certificate-or-handshake-failed",
        also_when_passed: false,
    },
    Rule {
        code: "transport_failed",
        applies: |o| match o.ended() {
            Some(EndReason::TransportError { detail }) => Some(detail.clone()),
            _ => None,
        },
        summary: "The SIP transport failed (for TCP: nothing accepts connections there)",
        fix: "Check host, port and transport; try --transport udp to see whether the endpoint listens on UDP only",
        reference: "docs/failure-modes.md#17-transport-failed-or-connection-closed (runbook item 17); docs/livekit-sip.md#transports",
        also_when_passed: false,
    },
    Rule {
        code: "connection_closed",
        applies: |o| match o.ended() {
            Some(EndReason::TransportClosed { during }) => {
                Some(format!("the {} connection closed during {during}", o.record.transport.via_name()))
            }
            _ => None,
        },
        summary: "The far end closed the TCP (or TLS) connection in the middle of the call",
        fix: "Look at the endpoint's logs at the time in the report; a proxy or load balancer with a short idle timeout also does this",
        reference: "docs/failure-modes.md#17-transport-failed-or-connection-closed (runbook item 17); RFC 3261 section 18",
        also_when_passed: false,
    },
    Rule {
        code: "ringing_without_answer",
        applies: |o| match o.ended() {
            Some(EndReason::Cancelled { last_provisional, waited_ms }) => Some(format!(
                "only provisional responses (last {}) for {} ms; LiveKit answers 200 only once the agent publishes audio",
                last_provisional.map_or("none".into(), |s| s.to_string()),
                waited_ms
            )),
            _ => None,
        },
        summary: "The call rang but was never answered: the agent was never dispatched or never joined (dispatch rule without room_config.agents, agent_name mismatch, or the agent crashed at start)",
        fix: "Run `callprobe doctor` (or `lk sip dispatch list`: the Agents column must show your agent); make the dispatch rule use the SIPDispatchRuleInfo wrapper with room_config.agents; set agent_name on both the rule and @server.rtc_session; call ctx.connect() before wait_for_participant()",
        reference: "docs/failure-modes.md#2-the-agent-never-joins-no-agent-in-the-dispatch-rule (runbook items 2, 3, 4); livekit/sip#401, livekit/livekit#3690, livekit/agents#3202, livekit/agents#4861",
        also_when_passed: false,
    },
    Rule {
        code: "rejected_busy_or_timeout",
        applies: |o| o.invite_answered(&[486]),
        summary: "LiveKit gave up ringing (trunk ringing_timeout) or the callee was busy: usually no agent answered in time",
        fix: "Check that the agent is dispatched and publishes audio promptly (`callprobe doctor`, agent logs); raise ringing_timeout only if the agent is known to be slow",
        reference: "docs/failure-modes.md#14-486-after-ringing (runbook item 14); docs/livekit-sip.md#ringing-timeout",
        also_when_passed: false,
    },
    Rule {
        code: "service_unavailable",
        applies: |o| o.invite_answered(&[503]),
        summary: "LiveKit could not dispatch the call (dispatch RPC failed) or two trunks match the same call",
        fix: "Check that no two inbound trunks share the number or credentials; check the SIP service and Redis are healthy",
        reference: "docs/failure-modes.md#10-503-two-trunks-match-or-dispatch-failed (runbook item 10); docs/livekit-sip.md#error-answers",
        also_when_passed: false,
    },
    Rule {
        code: "srtp_not_negotiated",
        applies: |o| {
            let why = o.record.media_error.as_deref()?;
            why.contains("SRTP").then(|| why.to_string())
        },
        summary: "The call was answered but SRTP could not be agreed: the answer had no usable a=crypto line for our offer (or asked for SRTP we did not offer)",
        fix: "Match the trunk's media_encryption to --srtp: required/allowed on the trunk for --srtp required; disabled on the trunk for --srtp off; --srtp optional works with both",
        reference: "docs/failure-modes.md#18-sdp-rejected-400-415-488 (runbook item 18); docs/livekit-sip.md#srtp",
        also_when_passed: false,
    },
    Rule {
        code: "srtp_required_by_trunk",
        applies: srtp_required_by_trunk,
        summary: "The trunk requires encrypted media (media_encryption REQUIRE) and our offer was plain RTP: LiveKit SIP answers 500 when it cannot agree on SRTP (no-common-crypto)",
        fix: "Call with --srtp required (or optional; srtp = \"required\" under [caller] in a scenario), or set the trunk's media_encryption to SIP_MEDIA_ENCRYPT_ALLOW if plain-RTP callers must get through",
        reference: "docs/failure-modes.md#18-sdp-rejected-400-415-488; docs/livekit-sip.md#srtp",
        also_when_passed: false,
    },
    Rule {
        code: "media_negotiation_failed",
        applies: |o| o.invite_answered(&[400, 415, 488]),
        summary: "The endpoint rejected our SDP: no common codec or a media/encryption mismatch",
        fix: "LiveKit SIP accepts G722, PCMU, PCMA (+ telephone-event); check the trunk's media.encryption (SRTP) setting against the offer",
        reference: "docs/failure-modes.md#18-sdp-rejected-400-415-488 (runbook item 18); docs/livekit-sip.md#codecs-and-dtmf, docs/livekit-sip.md#srtp",
        also_when_passed: false,
    },
    Rule {
        code: "bye_unanswered",
        applies: |o| match o.ended() {
            Some(EndReason::ByeTimedOut) => Some("BYE retransmitted until Timer F without a final response".into()),
            _ => None,
        },
        summary: "The call connected but our BYE got no answer: the route set or the far end's dialog state is broken",
        fix: "Check Record-Route handling on proxies between us and the endpoint (see the BYE's Route headers in the report)",
        reference: "docs/failure-modes.md#19-bye-unanswered (runbook item 19); RFC 3261 sections 12.2 and 16.12",
        also_when_passed: false,
    },
    Rule {
        code: "peer_protocol_violation",
        applies: |o| {
            let found: Vec<String> = o
                .record
                .findings
                .to_vec()
                .into_iter()
                .filter(|f| f.violation)
                .map(|f| format!("{}: {}", f.code, f.detail))
                .collect();
            (!found.is_empty()).then(|| found.join("; "))
        },
        summary: "The far end broke the SIP protocol: garbage or truncated messages, a Content-Length that lies, an unusable SDP answer, a BYE before our ACK, or a TCP stream that stalls mid-message",
        fix: "Read the findings and the raw messages in the report's ladder; fix the far end's SIP stack or the proxy/SBC in front of it that mangles messages",
        reference: "docs/failure-modes.md#22-the-far-end-breaks-the-sip-protocol (runbook item 22); RFC 3261 sections 7, 15 and 18.3; RFC 3264",
        also_when_passed: false,
    },
    Rule {
        code: "late_answer",
        applies: |o| {
            let late: Vec<String> = o
                .record
                .findings
                .to_vec()
                .into_iter()
                .filter(|f| f.code == "late_2xx_answered_and_hung_up")
                .map(|f| f.detail)
                .collect();
            (!late.is_empty()).then(|| late.join("; "))
        },
        summary: "The far end answered after callprobe had stopped waiting: the 2xx was ACKed and hung up at once, so it keeps no ghost call",
        fix: "The answer is too slow for --timeout: make the agent answer sooner (LiveKit answers once the agent publishes audio), or raise --timeout if callers may wait that long",
        reference: "docs/failure-modes.md#23-the-answer-comes-after-callprobe-gave-up (runbook item 23); RFC 3261 sections 13.2.2.4 and 17.1.1.2",
        also_when_passed: false,
    },
    // Context: may explain lookups that fail later in the agent.
    Rule {
        code: "number_format",
        applies: number_format,
        summary: "A phone number is not in +E.164 form: lookups keyed by +E.164 fail, and dispatch rule numbers are compared exactly",
        fix: "Normalise numbers in the agent (prefix \"+\"); set the carrier's ani_number_format \"+E.164\" and dnis_number_format \"+e164\"; dial +E.164",
        reference: "docs/failure-modes.md#5-numbers-not-in-e164-form (runbook item 5)",
        also_when_passed: true,
    },
];

/// Generic rows and the specific rows that, when they apply, explain them.
const SUPERSEDED_BY: &[(&str, &[&str])] = &[
    ("ringing_without_answer", AGENT_CAUSES),
    ("rejected_busy_or_timeout", AGENT_CAUSES),
    ("no_response", &["called_number_not_on_trunk"]),
    ("no_trunk_found", &["called_number_not_on_trunk"]),
];

const AGENT_CAUSES: &[&str] = &[
    "called_number_not_on_trunk",
    "dispatch_rule_without_agents",
    "agent_not_dispatched",
    "agent_name_mismatch",
    "agent_crashed_at_start",
    "agent_joined_late",
];

fn called_number_not_on_trunk(o: &Observation) -> Option<String> {
    let config = o.sip_config?;
    if o.room().is_some() || config.trunks.is_empty() || o.answered() {
        return None;
    }
    let called = o.called_number().filter(|n| looks_like_phone_number(n))?;
    if !config.trunks_for_number(called).is_empty() {
        return None;
    }
    let listed: Vec<String> = config.trunks.iter().map(|t| format!("{} [{}]", t.id, t.numbers.join(", "))).collect();
    Some(format!(
        "called {called}; inbound trunks and their numbers: {}; no LiveKit room for the call; SIP: {}",
        listed.join("; "),
        o.sip_outcome()
    ))
}

fn dispatch_rule_without_agents(o: &Observation) -> Option<String> {
    let (lk, room) = o.room()?;
    if !lk.agents.is_empty() {
        return None;
    }
    let rule = o.matched_rule();
    let rule_has_no_agents = rule.is_some_and(|r| r.agents.is_empty());
    let only_default_dispatch = !lk.dispatches.is_empty() && lk.dispatches.iter().all(|d| d.agent_name.is_empty());
    if !(rule_has_no_agents || (rule.is_none() && only_default_dispatch)) {
        return None;
    }
    let mut evidence = format!("room {room}: no AGENT participant in {:.1} s", o.watched_s());
    if let Some(r) = rule.filter(|r| r.agents.is_empty()) {
        evidence.push_str(&format!("; rule {} \"{}\" room_config.agents = {}", r.id, r.name, r.agents_text()));
    }
    if only_default_dispatch {
        evidence.push_str("; the room's only dispatch has agent_name \"\" (the server's default: only workers registered without a name take it)");
    }
    evidence.push_str(&format!("; SIP: {}", o.sip_outcome()));
    Some(evidence)
}

/// The room's dispatch for the expected agent name got no job: the name is
/// right (so it is not a mismatch), no worker took it.
fn agent_not_dispatched(o: &Observation) -> Option<String> {
    let (lk, room) = o.no_expected_agent()?;
    let want = o.agent_name()?;
    let rule_agrees = o.matched_rule().is_none_or(|r| r.agents.iter().any(|a| a == want));
    let idle: Vec<String> = lk
        .dispatches
        .iter()
        .filter(|d| d.agent_name == want && d.jobs.is_empty())
        .map(|d| format!("dispatch {} for agent_name \"{want}\"", d.id))
        .collect();
    if !rule_agrees || idle.is_empty() || !lk.agents.is_empty() {
        return None;
    }
    Some(format!(
        "room {room}: {} got no job in {:.1} s (no worker of that name took it); SIP: {}",
        idle.join(", "),
        o.watched_s(),
        o.sip_outcome()
    ))
}

fn agent_spoke_late(o: &Observation) -> Option<String> {
    let (within, first) = (o.speech_within?, o.first_speech?);
    if !o.answered() || first <= within {
        return None;
    }
    Some(format!("the far end first spoke {:.0} ms after the 200 OK, deadline {:.0} ms", first.ms(), within.ms()))
}

fn agent_name_mismatch(o: &Observation) -> Option<String> {
    let (lk, room) = o.no_expected_agent()?;
    let want = o.agent_name();
    let rule = o.matched_rule();
    if rule.is_some_and(|r| r.agents.is_empty()) {
        return None; // dispatch_rule_without_agents
    }
    let mut why = Vec::new();
    if let (Some(want), Some(r)) = (want, rule) {
        if !r.agents.iter().any(|a| a == want) {
            why.push(format!("rule {} \"{}\" dispatches {}, expected \"{want}\"", r.id, r.name, r.agents_text()));
        }
    }
    if want.is_some() {
        for a in &lk.agents {
            why.push(format!("agent \"{}\" ({}) joined at {:.0} ms instead", a.agent_name, a.identity, a.joined.ms()));
        }
    }
    // A dispatch under the expected name that got no job is a capacity
    // problem (`agent_not_dispatched`), not a mismatch.
    for d in lk
        .dispatches
        .iter()
        .filter(|d| !d.agent_name.is_empty() && d.jobs.is_empty() && Some(d.agent_name.as_str()) != want)
    {
        why.push(format!(
            "dispatch {} for agent_name \"{}\" got no job in {:.1} s: no worker is registered under that name",
            d.id,
            d.agent_name,
            o.watched_s()
        ));
    }
    if why.is_empty() {
        return None;
    }
    Some(format!("room {room}: {}; SIP: {}", why.join("; "), o.sip_outcome()))
}

fn agent_crashed_at_start(o: &Observation) -> Option<String> {
    let (lk, room) = o.room()?;
    let want = o.agent_name();
    let mut why = Vec::new();
    if lk.first_agent(want).is_none() {
        for (d, j) in lk.jobs_for(want) {
            let mut job = format!(
                "dispatch {} (\"{}\") job {} accepted by worker {} [{}",
                d.id, d.agent_name, j.id, j.worker_id, j.status
            );
            if !j.error.is_empty() {
                job.push_str(&format!(": {}", j.error));
            }
            job.push(']');
            why.push(job);
        }
        if !why.is_empty() {
            why.push(format!("no AGENT participant joined in {:.1} s", o.watched_s()));
        }
    }
    // Joined, then left while the caller was still there and before the answer.
    // The answer counts from the first INVITE, `left` from the INVITE that got
    // through: they differ by the time before the last INVITE (as it always was).
    let answered_at = o.record.connected.map(|t| Offset::from(t.since_start()));
    for a in lk.agents_named(want) {
        if let Some(left) = a.left_observed {
            let caller_left = lk.sip_participant.as_ref().and_then(|p| p.left_observed);
            let before_answer = answered_at.is_none_or(|t| left < t);
            if before_answer && caller_left.is_none_or(|c| left < c) {
                why.push(format!(
                    "agent {} (\"{}\") joined at {:.0} ms and left at about {:.0} ms, before the call was answered",
                    a.identity,
                    a.agent_name,
                    a.joined.ms(),
                    left.ms()
                ));
            }
        }
    }
    if why.is_empty() {
        return None;
    }
    Some(format!("room {room}: {}; SIP: {}", why.join("; "), o.sip_outcome()))
}

fn agent_joined_late(o: &Observation) -> Option<String> {
    let want = o.expected_agent?;
    let (lk, room) = o.room()?;
    let agent = lk.first_agent(o.agent_name())?;
    (agent.joined > Offset::from(want.within)).then(|| {
        format!(
            "room {room}: agent \"{}\" joined {:.0} ms after the INVITE, deadline {:.0} ms",
            agent.agent_name,
            agent.joined.ms(),
            want.within.ms()
        )
    })
}

fn agent_joined_but_silent(o: &Observation) -> Option<String> {
    if !o.answered() {
        return None;
    }
    let agent = o.room().and_then(|(lk, room)| lk.first_agent(o.agent_name()).map(|a| (room, a)));
    let who = match agent {
        Some((room, a)) => format!("agent \"{}\" joined room {room} at {:.0} ms", a.agent_name, a.joined.ms()),
        None => "answered".to_string(),
    };
    match o.far_end_speech {
        Some(false) => Some(format!("{who}; no speech in the audio received ({} RTP packets)", o.rx_packets())),
        Some(true) => None,
        // Without speech analysis, only an agent LiveKit saw join makes "silent" the likely reading.
        None if agent.is_some() && o.rx_packets() == 0 => {
            Some(format!("{who}; 0 RTP packets received (silent agent, or the media path to our RTP port is blocked)"))
        }
        None => None,
    }
}

fn number_format(o: &Observation) -> Option<String> {
    let mut seen = Vec::new();
    if let Some(n) = o.called_number().filter(|n| is_number_without_e164(n)) {
        seen.push(format!("we called {n}"));
    }
    if let Some(lk) = o.livekit {
        if let Some(n) = lk.trunk_phone_number.as_deref().filter(|n| is_number_without_e164(n)) {
            seen.push(format!("sip.trunkPhoneNumber = {n}"));
        }
        if let Some(n) = lk.phone_number.as_deref().filter(|n| is_number_without_e164(n)) {
            seen.push(format!("sip.phoneNumber = {n}"));
        }
    }
    (!seen.is_empty()).then(|| seen.join("; "))
}

/// Evidence when the TLS setup failed with `problem`.
fn tls_failed(o: &Observation, problem: TlsProblem) -> Option<String> {
    match o.ended() {
        Some(EndReason::TlsFailed { problem: p, detail }) if *p == problem => Some(detail.clone()),
        _ => None,
    }
}

/// Context rows that are worth a note even when every check passed (a number
/// that LiveKit accepted but hands to the agent without `+`): one line each,
/// `code: evidence — fix`.
pub fn notes_for_passed_call(obs: &Observation) -> Vec<String> {
    RULES
        .iter()
        .filter(|r| r.also_when_passed)
        .filter_map(|r| (r.applies)(obs).map(|evidence| format!("{}: {evidence} — {}", r.code, r.fix)))
        .collect()
}

/// Every diagnosis code callprobe can produce, in table order.
pub fn codes() -> impl Iterator<Item = &'static str> {
    RULES.iter().map(|r| r.code)
}

/// The diagnoses that apply to a call whose checks failed (SIP record only).
pub fn diagnose(record: &CallOutcome) -> Vec<Diagnosis> {
    diagnose_observation(&Observation::new(record))
}

/// The diagnoses that apply, specific causes first; a generic row is left
/// out when a row that supersedes it applies.
pub fn diagnose_observation(obs: &Observation) -> Vec<Diagnosis> {
    let applied: Vec<(&Rule, String)> =
        RULES.iter().filter_map(|r| (r.applies)(obs).map(|evidence| (r, evidence))).collect();
    let superseded = |code: &str| {
        SUPERSEDED_BY
            .iter()
            .filter(|(generic, _)| *generic == code)
            .any(|(_, specific)| applied.iter().any(|(r, _)| specific.contains(&r.code)))
    };
    applied
        .iter()
        .filter(|(r, _)| !superseded(r.code))
        .map(|(r, evidence)| Diagnosis {
            code: r.code,
            summary: r.summary,
            evidence: evidence.clone(),
            fix: r.fix,
            reference: r.reference,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::livekit::observation::tests::{agent, observation_with_room, record_with_invites};
    use crate::livekit::observation::{AgentReport, DispatchReport, JobReport};

    fn rang_and_cancelled() -> CallOutcome {
        let mut r = record_with_invites(Duration::ZERO, &[(0.0, 1), (30.0, 2)]);
        r.sip.ended = Some(EndReason::Cancelled { last_provisional: Some(180), waited_ms: 10_000 });
        r
    }

    fn room_without_agents() -> LiveKitObservation {
        observation_with_room()
    }

    fn config(rule_agents: &[&str]) -> SipConfig {
        SipConfig::for_tests(&["+14144007103"], rule_agents)
    }

    fn dispatch(name: &str, jobs: usize) -> DispatchReport {
        DispatchReport {
            id: "AD_1".into(),
            agent_name: name.into(),
            created: Some(Offset::from_ms(25.0)),
            jobs: (0..jobs)
                .map(|k| JobReport {
                    id: format!("AJ_{k}"),
                    status: "running",
                    error: String::new(),
                    worker_id: "AW_1".into(),
                    participant_identity: "agent-AJ_0".into(),
                    started: Some(Offset::from_ms(40.0)),
                    ended: None,
                })
                .collect(),
        }
    }

    fn codes(
        record: &CallOutcome,
        lk: Option<&LiveKitObservation>,
        cfg: Option<&SipConfig>,
        want: Option<&AgentExpectation>,
    ) -> Vec<&'static str> {
        let obs = Observation { livekit: lk, sip_config: cfg, expected_agent: want, ..Observation::new(record) };
        diagnose_observation(&obs).into_iter().map(|d| d.code).collect()
    }

    fn probe_agent(within_s: u64) -> AgentExpectation {
        AgentExpectation {
            agent: crate::request::ExpectedAgent::Named("probe-agent".into()),
            within: Duration::from_secs(within_s),
        }
    }

    #[test]
    fn every_reference_points_at_a_docs_heading() {
        crate::doc_links::assert_references("diagnosis", RULES.iter().map(|r| (r.code, r.reference)));
    }

    #[test]
    fn without_livekit_the_generic_row_stays() {
        assert_eq!(codes(&rang_and_cancelled(), None, None, None), ["ringing_without_answer"]);
    }

    #[test]
    fn rule_without_agents_replaces_the_generic_row() {
        let mut lk = room_without_agents();
        lk.dispatches = vec![dispatch("", 0)];
        let cfg = config(&[]);
        let want = probe_agent(5);
        assert_eq!(codes(&rang_and_cancelled(), Some(&lk), Some(&cfg), Some(&want)), ["dispatch_rule_without_agents"]);
        // Without the rule, the server's default dispatch alone tells it.
        assert_eq!(codes(&rang_and_cancelled(), Some(&lk), None, None), ["dispatch_rule_without_agents"]);
    }

    #[test]
    fn other_agent_name() {
        let mut lk = room_without_agents();
        lk.dispatches = vec![dispatch("other-agent", 0)];
        let cfg = config(&["other-agent"]);
        let want = probe_agent(5);
        let obs = Observation {
            record: &rang_and_cancelled(),
            livekit: Some(&lk),
            sip_config: Some(&cfg),
            expected_agent: Some(&want),
            far_end_speech: None,
            first_speech: None,
            speech_within: None,
        };
        let d = diagnose_observation(&obs);
        assert_eq!(d.iter().map(|d| d.code).collect::<Vec<_>>(), ["agent_name_mismatch"]);
        assert!(d[0].evidence.contains("other-agent") && d[0].evidence.contains("no worker"), "{}", d[0].evidence);
        // The rule is right but no worker takes its dispatch: no name
        // differs, so it is no mismatch but missing capacity (or no worker
        // running), `agent_not_dispatched`.
        let cfg = config(&["probe-agent"]);
        lk.dispatches = vec![dispatch("probe-agent", 0)];
        assert_eq!(codes(&rang_and_cancelled(), Some(&lk), Some(&cfg), Some(&want)), ["agent_not_dispatched"]);
    }

    #[test]
    fn accepted_job_without_agent_is_a_crash() {
        let mut lk = room_without_agents();
        lk.dispatches = vec![dispatch("probe-agent", 1)];
        let cfg = config(&["probe-agent"]);
        let want = probe_agent(5);
        assert_eq!(codes(&rang_and_cancelled(), Some(&lk), Some(&cfg), Some(&want)), ["agent_crashed_at_start"]);
        // Joined, then left before the answer: also a crash.
        lk.agents = vec![AgentReport { left_observed: Some(Offset::from_ms(900.0)), ..agent("probe-agent", 500.0) }];
        assert_eq!(codes(&rang_and_cancelled(), Some(&lk), Some(&cfg), Some(&want)), ["agent_crashed_at_start"]);
    }

    #[test]
    fn late_agent() {
        let mut lk = room_without_agents();
        lk.dispatches = vec![dispatch("probe-agent", 1)];
        lk.agents = vec![agent("probe-agent", 7_000.0)];
        let want = probe_agent(5);
        assert_eq!(
            codes(&rang_and_cancelled(), Some(&lk), Some(&config(&["probe-agent"])), Some(&want)),
            ["agent_joined_late"]
        );
    }

    #[test]
    fn called_number_not_on_any_trunk() {
        let mut record = record_with_invites(Duration::ZERO, &[(0.0, 1)]);
        record.sip.ended = Some(EndReason::NoResponse { waited_ms: 32_000 });
        let lk = LiveKitObservation { room: None, ..room_without_agents() };
        let mut cfg = config(&["probe-agent"]);
        cfg.trunks[0].numbers = vec!["+13658253552".into()];
        assert_eq!(codes(&record, Some(&lk), Some(&cfg), None), ["called_number_not_on_trunk"]);
        cfg.trunks[0].numbers.push("+14144007103".into());
        assert_eq!(codes(&record, Some(&lk), Some(&cfg), None), ["no_response"]);
    }

    #[test]
    fn numbers_without_plus_are_context() {
        let mut record = rang_and_cancelled();
        record.target = "sip:14144007103@127.0.0.1:5060".into();
        assert_eq!(codes(&record, None, None, None), ["ringing_without_answer", "number_format"]);
    }

    #[test]
    fn a_passed_call_gets_only_the_context_notes() {
        let mut record = record_with_invites(Duration::ZERO, &[(0.0, 1)]);
        record.sip.final_responses = vec![crate::sip::caller::FinalResponse { status: 200, reason: "OK".into() }];
        record.sip.ended = Some(EndReason::HungUp { bye_status: 200 });
        record.target = "sip:14144007103@127.0.0.1:5060".into();
        let notes = notes_for_passed_call(&Observation::new(&record));
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].starts_with("number_format: we called 14144007103 — Normalise numbers"), "{notes:?}");
        record.target = "sip:+14144007103@127.0.0.1:5060".into();
        assert!(notes_for_passed_call(&Observation::new(&record)).is_empty());
    }

    #[test]
    fn answered_but_no_rtp() {
        let mut record = record_with_invites(Duration::ZERO, &[(0.0, 1)]);
        record.sip.final_responses = vec![crate::sip::caller::FinalResponse { status: 200, reason: "OK".into() }];
        record.sip.ended = Some(EndReason::HungUp { bye_status: 200 });
        let mut lk = room_without_agents();
        lk.agents = vec![agent("probe-agent", 800.0)];
        assert_eq!(codes(&record, Some(&lk), None, None), ["agent_joined_but_silent"]);
        let obs = Observation {
            record: &record,
            livekit: Some(&lk),
            sip_config: None,
            expected_agent: None,
            far_end_speech: Some(true),
            first_speech: None,
            speech_within: None,
        };
        assert!(diagnose_observation(&obs).is_empty());
    }

    #[test]
    fn a_dispatch_of_the_right_name_without_a_job_is_no_worker_capacity() {
        let mut lk = room_without_agents();
        lk.dispatches = vec![dispatch("probe-agent", 0)];
        let cfg = config(&["probe-agent"]);
        let want = probe_agent(5);
        assert_eq!(codes(&rang_and_cancelled(), Some(&lk), Some(&cfg), Some(&want)), ["agent_not_dispatched"]);
        let evidence = diagnose_observation(&Observation {
            livekit: Some(&lk),
            sip_config: Some(&cfg),
            expected_agent: Some(&want),
            ..Observation::new(&rang_and_cancelled())
        });
        assert!(evidence[0].evidence.contains("got no job"), "{evidence:?}");
        // Another name in the dispatch is still a mismatch.
        lk.dispatches = vec![dispatch("other-agent", 0)];
        let other = config(&["other-agent"]);
        assert_eq!(codes(&rang_and_cancelled(), Some(&lk), Some(&other), Some(&want)), ["agent_name_mismatch"]);
    }

    #[test]
    fn speech_after_the_deadline_is_late_audio() {
        let mut record = record_with_invites(Duration::ZERO, &[(0.0, 1)]);
        record.sip.final_responses = vec![crate::sip::caller::FinalResponse { status: 200, reason: "OK".into() }];
        record.sip.ended = Some(EndReason::HungUp { bye_status: 200 });
        let late = Observation {
            far_end_speech: Some(true),
            first_speech: Some(Duration::from_millis(3400)),
            speech_within: Some(Duration::from_secs(3)),
            ..Observation::new(&record)
        };
        let found = diagnose_observation(&late);
        assert_eq!(found.iter().map(|d| d.code).collect::<Vec<_>>(), ["agent_spoke_late"]);
        assert!(found[0].evidence.contains("3400 ms after the 200 OK, deadline 3000 ms"), "{found:?}");
        let in_time = Observation { first_speech: Some(Duration::from_millis(2900)), ..late };
        assert!(diagnose_observation(&in_time).is_empty());
    }
}
