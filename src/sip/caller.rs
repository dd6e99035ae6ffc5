//! The calling side of one test call (a UAC), sans-I/O: INVITE, digest
//! retry, ACK, holding the dialog, BYE or CANCEL, and answering the far
//! end's in-dialog requests.
//!
//! Owns the call-level rules of RFC 3261: CSeq/branch/tag/Call-ID (the
//! authenticated retry keeps the Call-ID and From tag and increments CSeq —
//! LiveKit rejects a new Call-ID), the route set built from Record-Route, the
//! end-to-end ACK for 2xx sent to the remote target through that route set,
//! "at most one authenticated retry per challenge" (`stale=true` earns one
//! fresh retry), and what counts as the end of the call. The transaction
//! timers live in [`super::transaction`].
//!
//! Drive it with [`Caller::handle_message`], [`Caller::handle_timeout`] and
//! the transport callbacks; drain [`Caller::poll_transmit`] and
//! [`Caller::poll_event`]; sleep until [`Caller::poll_timeout`]. It never
//! reads the clock, a socket or the OS random generator: ids come from a
//! seeded generator, so tests are exact.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::{rngs::StdRng, Rng, SeedableRng};

use super::digest::{self, RequestInfo};
use super::message::{self, InRequest, InResponse, Inbound, Outgoing, ParseError, Start};
use super::transaction::{Disposition, InviteClient, InviteState, NonInviteClient, TimerConfig};
use super::{HostPort, Peer};
use crate::secret::Secret;

/// Re-exported for the modules that still name it here (cli, scenario, report).
pub use super::Transport;

/// Digest credentials for the trunk.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

/// Everything the caller needs to know before the first INVITE.
#[derive(Debug, Clone)]
pub struct CallConfig {
    /// Request-URI and To of the INVITE, e.g. `sip:+14144007103@127.0.0.1:5060`.
    pub target_uri: String,
    /// From URI, e.g. `sip:+15550100@127.0.0.1`.
    pub from_uri: String,
    pub transport: Transport,
    /// Our address as the far end should see it (Via sent-by and Contact).
    pub local_addr: SocketAddr,
    pub credentials: Option<Credentials>,
    /// Extra headers (`X-Lk-Test-Id` is added from `test_id`).
    pub extra_headers: Vec<(String, String)>,
    pub test_id: String,
    pub call_id: String,
    /// SDP offer carried by the INVITE (also our answer to a re-INVITE).
    pub sdp: Vec<u8>,
    pub timers: TimerConfig,
    /// How long each INVITE may wait for a final response (Timer B while
    /// nothing arrived; after a provisional, the call is CANCELled).
    pub invite_timeout: Duration,
    /// How long to stay connected before sending BYE.
    pub hangup_after: Duration,
    /// Seed for branches, tags and cnonces.
    pub seed: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: Peer,
    pub bytes: Vec<u8>,
}

/// How the call ended.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EndReason {
    /// We hung up after the hold time and the far end accepted our BYE.
    HungUp { bye_status: u16 },
    /// Our BYE got no final response (Timer F).
    ByeTimedOut,
    /// The far end sent BYE.
    FarEndHungUp,
    /// A final non-2xx ended the call (busy, not found, forbidden …).
    Rejected { status: u16, reason: String },
    /// A 401/407 arrived and we have no credentials to answer it.
    ChallengedWithoutCredentials { status: u16 },
    /// Credentials were sent and the far end refused them (401/403 or a
    /// second challenge for the same realm).
    CredentialsRejected { status: u16, reason: String },
    /// A challenge we cannot answer (unsupported algorithm or qop, malformed).
    UnanswerableChallenge { status: u16, detail: String },
    /// Nothing at all came back before Timer B.
    NoResponse { waited_ms: u64 },
    /// ICMP port unreachable for our INVITE (UDP): nothing listens at `peer`.
    PortUnreachable { peer: String },
    /// Provisional responses only, until our deadline: we sent CANCEL.
    Cancelled { last_provisional: Option<u16>, waited_ms: u64 },
    /// The user abandoned the call before a final response.
    Abandoned,
    /// The connection (TCP) was closed by the far end.
    TransportClosed { during: String },
    /// Sending failed (connection refused, unreachable …).
    TransportError { detail: String },
    /// The 2xx could not be used (no To tag, unusable Contact …).
    ProtocolError { detail: String },
}

/// What the call logic reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallEvent {
    /// A response to one of our INVITEs (provisional or final).
    InviteResponse {
        status: u16,
        reason: String,
        authenticated: bool,
    },
    /// The 2xx was ACKed: the call is up.
    Connected,
    /// A request from the far end that we answered (method, our status).
    FarEndRequest {
        method: String,
        answered: u16,
    },
    Ended(EndReason),
}

/// What happened, for checks and the report.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CallSummary {
    /// Final responses to our INVITEs, in order (`407, 200`).
    pub final_responses: Vec<FinalResponse>,
    pub provisional: Vec<u16>,
    pub invites_sent: u32,
    pub invite_retransmissions: u32,
    pub authenticated: bool,
    pub to_tag: Option<String>,
    pub remote_target: Option<String>,
    pub route_set: Vec<String>,
    pub ended: Option<EndReason>,
    /// The 2xx arrived only after `--timeout` had passed and we had sent CANCEL.
    pub answered_after_deadline: bool,
    /// 2xx from other branches of a forked INVITE, ACKed and hung up at once.
    pub forked_answers_released: u32,
    /// SDP body of the 2xx, when there was one.
    #[serde(skip)]
    pub answer_sdp: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FinalResponse {
    pub status: u16,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ChallengeKind {
    /// 401 / WWW-Authenticate → Authorization
    Www,
    /// 407 / Proxy-Authenticate → Proxy-Authorization
    Proxy,
}

/// A challenge we answer on every following INVITE.
#[derive(Debug, Clone)]
struct Answered {
    kind: ChallengeKind,
    challenge: digest::Challenge,
    nonce_count: u32,
    stale_retry_used: bool,
}

#[derive(Debug)]
struct InviteAttempt {
    branch: String,
    cseq: u32,
    tx: InviteClient,
    authenticated: bool,
    /// The (Proxy-)Authorization headers it carried; the ACK for its 2xx repeats them.
    credentials: Vec<(&'static str, String)>,
}

#[derive(Debug, Clone)]
struct Dialog {
    remote_tag: String,
    remote_target: String,
    /// Route set, in the order requests carry it (reverse of Record-Route for a UAC).
    route_set: Vec<String>,
    ack: Vec<u8>,
    ack_to: Peer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Inviting,
    Cancelling,
    Established,
    Terminating,
    Ended,
}

pub struct Caller {
    cfg: CallConfig,
    request_uri: String,
    first_hop: HostPort,
    rng: StdRng,
    local_tag: String,
    local_cseq: u32,
    phase: Phase,
    invites: Vec<InviteAttempt>,
    invite_deadline: Option<Instant>,
    cancel: Option<(String, NonInviteClient)>,
    /// When CANCEL is wanted but no provisional has arrived yet (RFC 3261 9.1).
    cancel_pending: bool,
    cancel_give_up: Option<Instant>,
    abandoned: bool,
    dialog: Option<Dialog>,
    hangup_at: Option<Instant>,
    bye: Option<(String, NonInviteClient)>,
    bye_to: Option<Peer>,
    answered: Vec<Answered>,
    started_at: Instant,
    outbox: VecDeque<Transmit>,
    events: VecDeque<CallEvent>,
    summary: CallSummary,
}

#[derive(Debug, thiserror::Error)]
pub enum CallSetupError {
    #[error("target {0}")]
    Target(ParseError),
    #[error("from URI {0}")]
    From(ParseError),
    #[error("cannot build INVITE: {0}")]
    Build(ParseError),
}

impl Caller {
    /// Prepares the call and queues the first INVITE.
    pub fn start(cfg: CallConfig, now: Instant) -> Result<Caller, CallSetupError> {
        let target = message::uri_target(&cfg.target_uri).map_err(CallSetupError::Target)?;
        message::uri_target(&cfg.from_uri).map_err(CallSetupError::From)?;
        // The Request-URI exactly as rsip renders it: the digest `uri=` must match it.
        let request_uri = rsip::Uri::try_from(cfg.target_uri.as_str())
            .map_err(|e| CallSetupError::Target(ParseError::Syntax(e.to_string())))?
            .to_string();
        let mut rng = StdRng::seed_from_u64(cfg.seed);
        let local_tag = random_token(&mut rng, 10);
        let mut caller = Caller {
            request_uri,
            first_hop: HostPort { host: target.host, port: target.port },
            rng,
            local_tag,
            local_cseq: 0,
            phase: Phase::Inviting,
            invites: Vec::new(),
            invite_deadline: None,
            cancel: None,
            cancel_pending: false,
            cancel_give_up: None,
            abandoned: false,
            dialog: None,
            hangup_at: None,
            bye: None,
            bye_to: None,
            answered: Vec::new(),
            started_at: now,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            summary: CallSummary::default(),
            cfg,
        };
        caller.send_invite(now).map_err(CallSetupError::Build)?;
        Ok(caller)
    }

    pub fn summary(&self) -> &CallSummary {
        &self.summary
    }

    pub fn is_ended(&self) -> bool {
        self.phase == Phase::Ended
    }

    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.drain_transactions();
        self.outbox.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<CallEvent> {
        self.events.pop_front()
    }

    /// The next instant at which [`Caller::handle_timeout`] must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase == Phase::Ended {
            return None;
        }
        let tx_timers = self
            .invites
            .iter()
            .filter_map(|a| a.tx.next_timeout())
            .chain(self.cancel.iter().filter_map(|(_, t)| t.next_timeout()))
            .chain(self.bye.iter().filter_map(|(_, t)| t.next_timeout()));
        tx_timers.chain(self.invite_deadline).chain(self.hangup_at).chain(self.cancel_give_up).min()
    }

    // ----- inputs -------------------------------------------------------

    /// A complete message arrived from `from`. Unparseable input is an error
    /// for the caller to record; it does not change the call.
    pub fn handle_message(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) -> Result<(), ParseError> {
        let inbound = message::parse(bytes)?;
        if inbound.common().call_id != self.cfg.call_id {
            if let Inbound::Request(req) = &inbound {
                if req.method != "ACK" {
                    self.respond(req, from, 481, "Call/Transaction Does Not Exist", false);
                }
            }
            return Ok(());
        }
        match inbound {
            // Without a Via branch a response matches no transaction (RFC 3261 17.1.3).
            Inbound::Response(resp) if resp.branch().is_none() => return Err(ParseError::MissingHeader("Via")),
            Inbound::Response(resp) => self.on_response(resp, now),
            Inbound::Request(req) => self.on_request(req, from, now),
        }
        Ok(())
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        for a in &mut self.invites {
            a.tx.on_timeout(now);
        }
        if let Some((_, t)) = &mut self.cancel {
            t.on_timeout(now);
        }
        if let Some((_, t)) = &mut self.bye {
            t.on_timeout(now);
        }
        self.drain_transactions();
        match self.phase {
            Phase::Inviting => {
                let current = self.invites.last();
                if current.is_some_and(|a| a.tx.timed_out()) {
                    let waited_ms = (now - self.started_at).as_millis() as u64;
                    self.end(EndReason::NoResponse { waited_ms });
                } else if self.invite_deadline.is_some_and(|d| now >= d) {
                    self.invite_deadline = None;
                    self.request_cancel(now);
                }
            }
            Phase::Cancelling => {
                let cancel_dead = self.cancel.as_ref().is_some_and(|(_, t)| t.timed_out());
                let invite_over = self.invites.last().is_some_and(|a| matches!(a.tx.state(), InviteState::Terminated));
                if cancel_dead || invite_over || self.cancel_give_up.is_some_and(|g| now >= g) {
                    self.end_cancelled(now);
                }
            }
            Phase::Established => {
                if self.hangup_at.is_some_and(|h| now >= h) {
                    self.hangup_at = None;
                    self.send_bye(now);
                }
            }
            Phase::Terminating => {
                if let Some((_, t)) = &self.bye {
                    if t.timed_out() {
                        self.end(EndReason::ByeTimedOut);
                    }
                }
            }
            Phase::Ended => {}
        }
    }

    /// The user wants to stop (Ctrl-C): CANCEL before a final, BYE after.
    pub fn abandon(&mut self, now: Instant) {
        self.abandoned = true;
        match self.phase {
            // CANCEL needs a provisional response first (RFC 3261 9.1); with
            // none yet there is nothing to cancel, so the call just ends.
            Phase::Inviting if self.invites.last().is_some_and(|a| a.tx.state() != InviteState::Proceeding) => {
                self.end(EndReason::Abandoned);
            }
            Phase::Inviting => self.request_cancel(now),
            Phase::Established => {
                self.hangup_at = None;
                self.send_bye(now);
            }
            _ => {}
        }
    }

    /// callprobe itself ends a connected call early (e.g. the answer's SDP is
    /// unusable): BYE now. Unlike [`Caller::abandon`] this is part of the test.
    pub fn hang_up(&mut self, now: Instant) {
        if self.phase == Phase::Established {
            self.hangup_at = None;
            self.send_bye(now);
        }
    }

    /// The connection to the far end closed (TCP).
    pub fn handle_transport_closed(&mut self) {
        if self.phase == Phase::Ended {
            return;
        }
        let during = match self.phase {
            Phase::Inviting => "waiting for a final response to INVITE",
            Phase::Cancelling => "cancelling",
            Phase::Established => "the call (after 200 OK, before our BYE)",
            Phase::Terminating => "waiting for the response to our BYE",
            Phase::Ended => "",
        };
        self.end(EndReason::TransportClosed { during: during.to_string() });
    }

    /// ICMP said nothing listens at `to` (UDP). While the INVITE has no
    /// response yet, that is why none will come: end now, not at Timer B.
    /// Later (the far end answered from there) it changes nothing.
    pub fn handle_port_unreachable(&mut self, to: SocketAddr) {
        let unanswered = self.invites.last().is_some_and(|a| a.tx.state() == InviteState::Calling);
        if self.phase == Phase::Inviting && unanswered {
            self.end(EndReason::PortUnreachable { peer: to.to_string() });
        }
    }

    /// Sending failed: the call cannot go on.
    pub fn handle_transport_error(&mut self, detail: String) {
        if self.phase != Phase::Ended {
            self.end(EndReason::TransportError { detail });
        }
    }

    // ----- responses ----------------------------------------------------

    fn on_response(&mut self, resp: InResponse, now: Instant) {
        let Some(branch) = resp.branch() else { return };
        match resp.common.cseq_method.as_str() {
            "INVITE" => self.on_invite_response(&branch, resp, now),
            "CANCEL" => {
                if let Some((b, t)) = &mut self.cancel {
                    if *b == branch {
                        t.on_response(resp.status, now);
                    }
                }
            }
            "BYE" => {
                let Some((b, t)) = &mut self.bye else { return };
                if *b != branch || t.on_response(resp.status, now) == Disposition::Absorbed {
                    return;
                }
                if resp.status >= 200 && self.phase == Phase::Terminating {
                    let reason = if self.abandoned {
                        EndReason::Abandoned
                    } else {
                        EndReason::HungUp { bye_status: resp.status }
                    };
                    self.end(reason);
                }
            }
            _ => {}
        }
    }

    fn on_invite_response(&mut self, branch: &str, resp: InResponse, now: Instant) {
        let Some(idx) = self.invites.iter().position(|a| a.branch == branch) else { return };
        let is_current = idx + 1 == self.invites.len();
        // Only a non-2xx final is ACKed by the transaction itself.
        let ack = if resp.status >= 300 { self.ack_for_non_2xx(&self.invites[idx], &resp) } else { Vec::new() };
        let attempt = &mut self.invites[idx];
        let disposition = attempt.tx.on_response(resp.status, || ack, now);
        let authenticated = attempt.authenticated;
        if disposition == Disposition::Absorbed {
            return;
        }
        if resp.status >= 200 && resp.status < 300 {
            // A 2xx (also a retransmission, or one for an older attempt):
            // ACK it end-to-end; a second one only gets the same ACK again.
            if let Some(d) = &self.dialog {
                if resp.to_tag().is_none_or(|tag| tag == d.remote_tag) {
                    self.outbox.push_back(Transmit { to: d.ack_to.clone(), bytes: d.ack.clone() });
                } else {
                    self.release_fork(&resp, idx);
                }
                return;
            }
            self.record_response(&resp, authenticated);
            self.on_answered(&resp, idx, now);
            return;
        }
        if !is_current {
            return;
        }
        self.record_response(&resp, authenticated);
        if resp.status < 200 {
            if self.cancel_pending && self.phase == Phase::Inviting {
                self.cancel_pending = false;
                self.send_cancel(now);
            }
            return;
        }
        if self.phase == Phase::Cancelling {
            self.end_cancelled(now);
            return;
        }
        self.on_final_failure(resp, authenticated, now);
    }

    fn record_response(&mut self, resp: &InResponse, authenticated: bool) {
        if resp.status < 200 {
            self.summary.provisional.push(resp.status);
        } else {
            self.summary.final_responses.push(FinalResponse { status: resp.status, reason: resp.reason.clone() });
        }
        self.events.push_back(CallEvent::InviteResponse {
            status: resp.status,
            reason: resp.reason.clone(),
            authenticated,
        });
    }

    fn on_answered(&mut self, resp: &InResponse, idx: usize, now: Instant) {
        let cseq = self.invites[idx].cseq;
        let authenticated = self.invites[idx].authenticated;
        let Some(remote_tag) = resp.to_tag() else {
            self.end(EndReason::ProtocolError { detail: "2xx to INVITE has no To tag".into() });
            return;
        };
        let remote_target = resp.contact_uri().unwrap_or_else(|| self.request_uri.clone());
        let mut route_set = resp.record_route();
        route_set.reverse();
        self.summary.to_tag = Some(remote_tag.clone());
        self.summary.remote_target = Some(remote_target.clone());
        self.summary.route_set = route_set.clone();
        self.summary.authenticated = authenticated;
        self.summary.answer_sdp = (!resp.common.body.is_empty()).then(|| resp.common.body.clone());
        // A 2xx that beat our CANCEL came after the deadline: it is recorded,
        // and the checks do not count it as answered in time.
        self.summary.answered_after_deadline = self.phase == Phase::Cancelling && !self.abandoned;
        let mut dialog =
            Dialog { remote_tag, remote_target, route_set, ack: Vec::new(), ack_to: Peer::Hop(self.first_hop.clone()) };
        let branch = self.new_branch();
        let auth = self.invites[idx].credentials.clone();
        match self.in_dialog_request(&dialog, "ACK", cseq, &branch, auth, b"") {
            Ok((bytes, to)) => {
                dialog.ack = bytes.clone();
                dialog.ack_to = to.clone();
                self.outbox.push_back(Transmit { to, bytes });
            }
            Err(e) => {
                self.end(EndReason::ProtocolError { detail: format!("cannot build ACK: {e}") });
                return;
            }
        }
        self.dialog = Some(dialog);
        self.invite_deadline = None;
        self.events.push_back(CallEvent::Connected);
        if self.phase == Phase::Cancelling || self.abandoned {
            // CANCEL lost the race with the 2xx: hang up at once.
            self.phase = Phase::Established;
            self.send_bye(now);
        } else {
            self.phase = Phase::Established;
            self.hangup_at = Some(now + self.cfg.hangup_after);
        }
    }

    /// A 2xx from a second branch of a forked INVITE (another To tag): it is
    /// a second dialog we do not want, so it gets its own ACK and a BYE at
    /// once (RFC 3261 13.2.2.4). Sent once, without retransmission.
    fn release_fork(&mut self, resp: &InResponse, idx: usize) {
        let Some(remote_tag) = resp.to_tag() else { return };
        let mut route_set = resp.record_route();
        route_set.reverse();
        let fork = Dialog {
            remote_tag,
            remote_target: resp.contact_uri().unwrap_or_else(|| self.request_uri.clone()),
            route_set,
            ack: Vec::new(),
            ack_to: Peer::Hop(self.first_hop.clone()),
        };
        let cseq = self.invites[idx].cseq;
        let credentials = self.invites[idx].credentials.clone();
        let (ack_branch, bye_branch) = (self.new_branch(), self.new_branch());
        if let Ok((bytes, to)) = self.in_dialog_request(&fork, "ACK", cseq, &ack_branch, credentials, b"") {
            self.outbox.push_back(Transmit { to, bytes });
        }
        if let Ok((bytes, to)) = self.in_dialog_request(&fork, "BYE", cseq + 1, &bye_branch, Vec::new(), b"") {
            self.outbox.push_back(Transmit { to, bytes });
        }
        self.summary.forked_answers_released += 1;
    }

    fn on_final_failure(&mut self, resp: InResponse, authenticated: bool, now: Instant) {
        let kind = match resp.status {
            401 => Some(ChallengeKind::Www),
            407 => Some(ChallengeKind::Proxy),
            _ => None,
        };
        let values = match kind {
            Some(ChallengeKind::Www) => resp.common.values("WWW-Authenticate"),
            Some(ChallengeKind::Proxy) => resp.common.values("Proxy-Authenticate"),
            None => Vec::new(),
        };
        let (Some(kind), false) = (kind, values.is_empty()) else {
            // Not a challenge. After credentials, 401/403 means they were refused.
            let reason = resp.reason.clone();
            if authenticated && matches!(resp.status, 401 | 403) {
                self.end(EndReason::CredentialsRejected { status: resp.status, reason });
            } else {
                self.end(EndReason::Rejected { status: resp.status, reason });
            }
            return;
        };
        if self.cfg.credentials.is_none() {
            self.end(EndReason::ChallengedWithoutCredentials { status: resp.status });
            return;
        }
        let challenge = match digest::strongest(&values) {
            Ok(c) => c,
            Err(e) => {
                self.end(EndReason::UnanswerableChallenge { status: resp.status, detail: e.to_string() });
                return;
            }
        };
        if self.abandoned {
            // The user asked to stop: never send another INVITE.
            self.end(EndReason::Abandoned);
            return;
        }
        // One authenticated retry per call attempt: once we have sent
        // credentials, another challenge means they were refused — unless it
        // says the nonce was merely stale, which earns one fresh retry for
        // the same challenge.
        let previous = self.answered.iter_mut().find(|a| a.kind == kind && a.challenge.realm == challenge.realm);
        match previous {
            None if !authenticated => {
                self.answered.push(Answered { kind, challenge, nonce_count: 0, stale_retry_used: false })
            }
            Some(prev) if challenge.stale && !prev.stale_retry_used => {
                prev.challenge = challenge;
                prev.nonce_count = 0;
                prev.stale_retry_used = true;
            }
            _ => {
                self.end(EndReason::CredentialsRejected { status: resp.status, reason: resp.reason.clone() });
                return;
            }
        }
        if let Err(e) = self.send_invite(now) {
            self.end(EndReason::ProtocolError { detail: format!("cannot build INVITE: {e}") });
        }
    }

    // ----- requests from the far end -------------------------------------

    fn on_request(&mut self, req: InRequest, from: SocketAddr, now: Instant) {
        if req.method == "ACK" {
            return; // ACK to our 200 for a re-INVITE: nothing to answer.
        }
        let in_this_dialog = self.dialog.as_ref().is_some_and(|d| {
            let from_tag = req.common.first("From").and_then(|v| message::param(&v, "tag"));
            let to_tag = req.common.first("To").and_then(|v| message::param(&v, "tag"));
            from_tag.as_deref() == Some(d.remote_tag.as_str()) && to_tag.as_deref() == Some(self.local_tag.as_str())
        });
        let active = matches!(self.phase, Phase::Established | Phase::Terminating);
        if !in_this_dialog || !active {
            let answered = if req.method == "OPTIONS" { 200 } else { 481 };
            let reason = if answered == 200 { "OK" } else { "Call/Transaction Does Not Exist" };
            self.respond(&req, from, answered, reason, false);
            self.events.push_back(CallEvent::FarEndRequest { method: req.method.clone(), answered });
            return;
        }
        let (status, reason, with_sdp) = match req.method.as_str() {
            "BYE" => (200, "OK", false),
            "OPTIONS" => (200, "OK", false),
            "INVITE" | "UPDATE" => (200, "OK", true),
            _ => (501, "Not Implemented", false),
        };
        self.respond(&req, from, status, reason, with_sdp);
        self.events.push_back(CallEvent::FarEndRequest { method: req.method.clone(), answered: status });
        if req.method == "BYE" {
            let _ = now;
            self.end(EndReason::FarEndHungUp);
        }
    }

    fn respond(&mut self, req: &InRequest, from: SocketAddr, status: u16, reason: &str, with_sdp: bool) {
        let mut headers: Vec<(&str, String)> = Vec::new();
        for via in req.common.raw_lines("Via") {
            headers.push(("Via", via.value.clone()));
        }
        if let Some(f) = req.common.raw_lines("From").first() {
            headers.push(("From", f.value.clone()));
        }
        if let Some(t) = req.common.raw_lines("To").first() {
            let mut to = t.value.clone();
            if message::param(&to, "tag").is_none() {
                to.push_str(&format!(";tag={}", self.local_tag));
            }
            headers.push(("To", to));
        }
        headers.push(("Call-ID", req.common.call_id.clone()));
        headers.push(("CSeq", format!("{} {}", req.common.cseq, req.common.cseq_method)));
        if status < 300 && matches!(req.method.as_str(), "INVITE" | "UPDATE" | "OPTIONS") {
            headers.push(("Contact", self.contact()));
            headers.push(("Allow", ALLOW.into()));
        }
        let body: &[u8] = if with_sdp { &self.cfg.sdp } else { b"" };
        if with_sdp {
            headers.push(("Content-Type", "application/sdp".into()));
        }
        headers.push(("User-Agent", user_agent()));
        let out = Outgoing { start: Start::Response { status, reason }, headers, body };
        if let Ok(bytes) = out.render() {
            self.outbox.push_back(Transmit { to: Peer::Addr(from), bytes });
        }
    }

    // ----- requests we send ---------------------------------------------

    fn send_invite(&mut self, now: Instant) -> Result<(), ParseError> {
        self.local_cseq += 1;
        let cseq = self.local_cseq;
        let branch = self.new_branch();
        let authenticated = !self.answered.is_empty();
        let auth = self.authorization_headers("INVITE", &self.request_uri.clone(), &self.cfg.sdp.clone());
        let credentials = auth.clone();
        let mut headers: Vec<(&str, String)> = self.common_headers(&branch, None, cseq, "INVITE");
        headers.push(("Contact", self.contact()));
        headers.push(("Allow", ALLOW.into()));
        headers.push(("X-Lk-Test-Id", self.cfg.test_id.clone()));
        for (name, value) in &self.cfg.extra_headers {
            headers.push((name.as_str(), value.clone()));
        }
        headers.extend(auth);
        headers.push(("Content-Type", "application/sdp".into()));
        let bytes = Outgoing {
            start: Start::Request { method: "INVITE", uri: &self.request_uri },
            headers,
            body: &self.cfg.sdp,
        }
        .render()?;
        let tx =
            InviteClient::start(bytes, self.cfg.transport.is_reliable(), self.cfg.timers, self.cfg.invite_timeout, now);
        self.invites.push(InviteAttempt { branch, cseq, tx, authenticated, credentials });
        self.summary.invites_sent += 1;
        self.invite_deadline = Some(now + self.cfg.invite_timeout);
        Ok(())
    }

    /// ACK for a non-2xx final: same branch, To with the response's tag (RFC 3261 17.1.1.3).
    fn ack_for_non_2xx(&self, attempt: &InviteAttempt, resp: &InResponse) -> Vec<u8> {
        let mut headers = self.common_headers(&attempt.branch, resp.to_tag().as_deref(), attempt.cseq, "ACK");
        headers.retain(|(n, _)| *n != "User-Agent");
        Outgoing { start: Start::Request { method: "ACK", uri: &self.request_uri }, headers, body: b"" }
            .render()
            .unwrap_or_default()
    }

    fn request_cancel(&mut self, now: Instant) {
        if self.phase != Phase::Inviting {
            return;
        }
        let proceeding = self.invites.last().is_some_and(|a| a.tx.state() == InviteState::Proceeding);
        if proceeding {
            self.send_cancel(now);
        } else {
            self.cancel_pending = true;
        }
    }

    fn send_cancel(&mut self, now: Instant) {
        let Some(attempt) = self.invites.last() else { return };
        // CANCEL: same branch, Request-URI, Call-ID, From, To and CSeq number as the INVITE.
        let mut headers = self.common_headers(&attempt.branch.clone(), None, attempt.cseq, "CANCEL");
        headers.retain(|(n, _)| *n != "User-Agent");
        let rendered =
            Outgoing { start: Start::Request { method: "CANCEL", uri: &self.request_uri }, headers, body: b"" }
                .render();
        let Ok(bytes) = rendered else { return };
        let branch = attempt.branch.clone();
        self.cancel =
            Some((branch, NonInviteClient::start(bytes, self.cfg.transport.is_reliable(), self.cfg.timers, now)));
        self.phase = Phase::Cancelling;
        // Give the far end 64·T1 to answer the INVITE with 487.
        self.cancel_give_up = Some(now + 64 * self.cfg.timers.t1);
    }

    fn end_cancelled(&mut self, now: Instant) {
        if self.abandoned {
            self.end(EndReason::Abandoned);
            return;
        }
        let waited_ms = (now - self.started_at).as_millis() as u64;
        let last_provisional = self.summary.provisional.last().copied();
        self.end(EndReason::Cancelled { last_provisional, waited_ms });
    }

    fn send_bye(&mut self, now: Instant) {
        let Some(dialog) = self.dialog.clone() else { return };
        self.local_cseq += 1;
        let branch = self.new_branch();
        let auth = self.authorization_headers("BYE", &dialog_request_uri(&dialog), b"");
        match self.in_dialog_request(&dialog, "BYE", self.local_cseq, &branch, auth, b"") {
            Ok((bytes, to)) => {
                let tx = NonInviteClient::start(bytes, self.cfg.transport.is_reliable(), self.cfg.timers, now);
                self.bye = Some((branch, tx));
                self.bye_to = Some(to);
                self.phase = Phase::Terminating;
            }
            Err(e) => self.end(EndReason::ProtocolError { detail: format!("cannot build BYE: {e}") }),
        }
    }

    /// Builds an in-dialog request through the route set (RFC 3261 12.2.1.1)
    /// and says where it goes.
    fn in_dialog_request(
        &self,
        dialog: &Dialog,
        method: &str,
        cseq: u32,
        branch: &str,
        auth: Vec<(&'static str, String)>,
        body: &[u8],
    ) -> Result<(Vec<u8>, Peer), ParseError> {
        let loose = dialog.route_set.first().map(|r| message::uri_target(r).map(|t| t.loose)).transpose()?;
        let (request_uri, routes): (String, Vec<String>) = match loose {
            None | Some(true) => (dialog.remote_target.clone(), dialog.route_set.clone()),
            // Strict router: it becomes the Request-URI; the remote target goes last.
            Some(false) => {
                let mut rest: Vec<String> = dialog.route_set[1..].to_vec();
                rest.push(dialog.remote_target.clone());
                (strip_uri_headers(&dialog.route_set[0]), rest)
            }
        };
        let next_hop_uri = match loose {
            Some(true) => dialog.route_set[0].clone(),
            _ => request_uri.clone(),
        };
        let hop = message::uri_target(&next_hop_uri)?;
        let mut headers = self.common_headers(branch, Some(&dialog.remote_tag), cseq, method);
        let insert_at = headers.iter().position(|(n, _)| *n == "From").unwrap_or(0);
        for (i, r) in routes.iter().enumerate() {
            headers.insert(insert_at + i, ("Route", format!("<{r}>")));
        }
        headers.extend(auth);
        let bytes = Outgoing { start: Start::Request { method, uri: &request_uri }, headers, body }.render()?;
        Ok((bytes, Peer::Hop(HostPort { host: hop.host, port: hop.port })))
    }

    /// Via, Max-Forwards, From, To, Call-ID, CSeq, User-Agent.
    fn common_headers(
        &self,
        branch: &str,
        to_tag: Option<&str>,
        cseq: u32,
        method: &str,
    ) -> Vec<(&'static str, String)> {
        let via = format!("SIP/2.0/{} {};branch={};rport", self.cfg.transport.via_name(), self.cfg.local_addr, branch);
        let to = match to_tag {
            Some(tag) => format!("<{}>;tag={}", self.cfg.target_uri, tag),
            None => format!("<{}>", self.cfg.target_uri),
        };
        vec![
            ("Via", via),
            ("Max-Forwards", "70".into()),
            ("From", format!("<{}>;tag={}", self.cfg.from_uri, self.local_tag)),
            ("To", to),
            ("Call-ID", self.cfg.call_id.clone()),
            ("CSeq", format!("{cseq} {method}")),
            ("User-Agent", user_agent()),
        ]
    }

    fn contact(&self) -> String {
        let user =
            message::uri_target(&self.cfg.from_uri).ok().and_then(|t| t.user).unwrap_or_else(|| "callprobe".into());
        match self.cfg.transport {
            Transport::Udp => format!("<sip:{}@{}>", user, self.cfg.local_addr),
            Transport::Tcp => format!("<sip:{}@{};transport=tcp>", user, self.cfg.local_addr),
        }
    }

    /// Authorization / Proxy-Authorization for every challenge answered so far.
    fn authorization_headers(&mut self, method: &str, uri: &str, body: &[u8]) -> Vec<(&'static str, String)> {
        let Some(creds) = self.cfg.credentials.clone() else { return Vec::new() };
        let mut out = Vec::new();
        for i in 0..self.answered.len() {
            let cnonce = random_token(&mut self.rng, 16);
            let a = &mut self.answered[i];
            a.nonce_count += 1;
            let auth = digest::authorize(
                &a.challenge,
                &creds.username,
                &creds.password,
                &RequestInfo { method, uri, body },
                &cnonce,
                a.nonce_count,
            );
            let name = match a.kind {
                ChallengeKind::Www => "Authorization",
                ChallengeKind::Proxy => "Proxy-Authorization",
            };
            out.push((name, auth.header_value()));
        }
        out
    }

    fn new_branch(&mut self) -> String {
        format!("z9hG4bK{}", random_token(&mut self.rng, 16))
    }

    /// Moves what the transactions want to (re)send into the outbox.
    fn drain_transactions(&mut self) {
        let first_hop = Peer::Hop(self.first_hop.clone());
        for a in &mut self.invites {
            while let Some(bytes) = a.tx.poll_transmit() {
                self.outbox.push_back(Transmit { to: first_hop.clone(), bytes });
            }
        }
        self.summary.invite_retransmissions = self.invites.iter().map(|a| a.tx.retransmissions()).sum();
        if let Some((_, t)) = &mut self.cancel {
            while let Some(bytes) = t.poll_transmit() {
                self.outbox.push_back(Transmit { to: first_hop.clone(), bytes });
            }
        }
        if let (Some((_, t)), Some(to)) = (&mut self.bye, &self.bye_to) {
            while let Some(bytes) = t.poll_transmit() {
                self.outbox.push_back(Transmit { to: to.clone(), bytes });
            }
        }
    }

    fn end(&mut self, reason: EndReason) {
        if self.phase == Phase::Ended {
            return;
        }
        self.drain_transactions();
        self.phase = Phase::Ended;
        self.summary.ended = Some(reason.clone());
        self.events.push_back(CallEvent::Ended(reason));
    }
}

const ALLOW: &str = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE";

fn user_agent() -> String {
    format!("callprobe/{}", env!("CARGO_PKG_VERSION"))
}

fn dialog_request_uri(d: &Dialog) -> String {
    match d.route_set.first().and_then(|r| message::uri_target(r).ok()) {
        Some(t) if !t.loose => strip_uri_headers(&d.route_set[0]),
        _ => d.remote_target.clone(),
    }
}

fn strip_uri_headers(uri: &str) -> String {
    uri.split('?').next().unwrap_or(uri).to_string()
}

fn random_token(rng: &mut StdRng, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}
