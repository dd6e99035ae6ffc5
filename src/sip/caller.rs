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
//!
//! The call moves through phases — Inviting (the INVITE and its
//! authenticated retries), Cancelling (our CANCEL is out), Confirmed (the 2xx
//! is ACKed, the dialog held), Terminating (our BYE is out) and Ended — and
//! each phase carries what is only valid in it: the INVITE deadline, the
//! CANCEL give-up time, the dialog and hang-up time, the BYE transaction.
//! Beside the phase live what outlives one: the INVITE transactions, our
//! CANCEL's transaction (a 2xx can beat the CANCEL; we ACK and BYE it while
//! the CANCEL transaction runs to its end) and the user's "abandon", which
//! decides how the call ends whatever phase it is in. Ended is final: later
//! input reaches the transactions but reopens nothing. The caller still
//! listens for a bounded linger after the end ([`LINGER`]): a retransmitted
//! non-2xx final is re-ACKed (Timer D), a retransmitted BYE answered again,
//! and a 2xx that comes too late (after Timer B, or after we gave up on our
//! CANCEL) is ACKed and hung up with its own BYE, so the far end keeps no
//! ghost call; [`Caller::is_done`] says when the shell may stop.
//!
//! What the far end does wrong along the way (a BYE before our ACK, a
//! Content-Length that lies, bytes that are not SIP, a late 2xx) is recorded
//! as findings in the outcome ([`crate::finding`]).
//!
//! This file owns the call's state (the [`Caller`] and its phase), its
//! public inputs and outputs, the timers and the far end's requests; the
//! submodules own the messages it builds (`outgoing`), the responses it
//! handles (`responses`) and digest authentication (`auth`).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rand::{rngs::StdRng, Rng, SeedableRng};

use super::message::{self, InRequest, Inbound, LengthCheck, ParseError};
use super::transaction::{InviteClient, InviteState, NonInviteClient, TimerConfig};
use super::{HostPort, Peer, Transport};
use crate::finding::Findings;
use crate::media::sdes::redact_inline_keys;
use crate::secret::Secret;
use auth::DigestAuth;

mod auth;
mod outgoing;
mod responses;

/// How long the caller keeps listening after the call ended while an answer
/// may still come (Timer B fired, or we gave up waiting for the 487 after our
/// CANCEL): a late 2xx gets its ACK and a BYE, so the far end keeps no ghost
/// call. Over UDP it is also how long a retransmitted non-2xx final is
/// re-ACKed (RFC 3261 Timer D, 64·T1 = 32 s, capped here: the far end
/// retransmits at T1, 2·T1, 4·T1 …, so 4 s sees the first three) and a
/// retransmitted BYE of the far end is answered again. Nothing pending
/// (our BYE answered, TCP after a final, a broken transport): no linger.
pub const LINGER: Duration = Duration::from_secs(4);
/// The linger after the user pressed Ctrl-C: they want out.
pub const ABANDONED_LINGER: Duration = Duration::from_secs(1);
/// However many late 2xx arrive, the caller is done this long after the end.
pub const MAX_LINGER: Duration = Duration::from_secs(8);
/// How long, at most, we wait for the 487 after our CANCEL (RFC 3261 9.1
/// says 64·T1 = 32 s; a far end that has not answered in 4 s is not going to,
/// and a tester owes its user a verdict).
pub const CANCEL_WAIT: Duration = Duration::from_secs(4);
/// Late answers (other To tags) released after the end, at most; more are ignored.
const MAX_LATE_RELEASES: usize = 4;

/// Digest credentials for the trunk.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: String,
    pub password: Secret,
}

/// The configuration of the [`Caller`] core: everything it needs to know
/// before the first INVITE (built from a `PreparedCall` by `call::run`).
/// `Debug` stars out the SDP's SRTP keys.
#[derive(Clone)]
pub struct CallerConfig {
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

/// A message to send. `Debug` shows it as text with SRTP keys starred out.
#[derive(Clone, PartialEq, Eq)]
pub struct Transmit {
    pub to: Peer,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Transmit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = String::from_utf8_lossy(&self.bytes);
        f.debug_struct("Transmit").field("to", &self.to).field("bytes", &redact_inline_keys(&text)).finish()
    }
}

impl std::fmt::Debug for CallerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sdp = String::from_utf8_lossy(&self.sdp);
        f.debug_struct("CallerConfig")
            .field("target_uri", &self.target_uri)
            .field("from_uri", &self.from_uri)
            .field("transport", &self.transport)
            .field("local_addr", &self.local_addr)
            .field("credentials", &self.credentials)
            .field("extra_headers", &self.extra_headers)
            .field("test_id", &self.test_id)
            .field("call_id", &self.call_id)
            .field("sdp", &redact_inline_keys(&sdp))
            .field("timers", &self.timers)
            .field("invite_timeout", &self.invite_timeout)
            .field("hangup_after", &self.hangup_after)
            .field("seed", &self.seed)
            .finish()
    }
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
    /// The TLS connection to the far end could not be set up (a bad
    /// certificate, the handshake timed out or failed).
    TlsFailed { problem: super::TlsProblem, detail: String },
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

/// What happened on the SIP side of the call, for checks and the report
/// (part of `call::CallOutcome`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SipOutcome {
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
    /// 2xx that arrived after the call had ended (Timer B fired, or we had
    /// given up after our CANCEL): each was ACKed and hung up with a BYE.
    pub late_answers_released: u32,
    /// What the far end did that is worth naming (see [`crate::finding`]).
    #[serde(skip)]
    pub findings: Findings,
    /// SDP body of the 2xx, when there was one (holds the far end's SRTP
    /// key until `call::run` stars it out of the record).
    #[serde(skip)]
    pub answer_sdp: Option<SdpBody>,
    /// SDP body of the last provisional response that carried one (early
    /// media; starred out of the record like the 2xx's).
    #[serde(skip)]
    pub early_sdp: Option<SdpBody>,
}

/// An SDP body as the far end sent it. It may hold an SRTP master key
/// (`a=crypto … inline:`), so `Debug` shows it with the key starred out.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SdpBody(pub Vec<u8>);

impl std::fmt::Debug for SdpBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = String::from_utf8_lossy(&self.0);
        f.debug_tuple("SdpBody").field(&redact_inline_keys(&text)).finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FinalResponse {
    pub status: u16,
    pub reason: String,
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

/// One of our non-INVITE requests (CANCEL, BYE) and its client transaction.
#[derive(Debug)]
struct NonInviteRequest {
    branch: String,
    /// Where it and its retransmissions go.
    to: Peer,
    tx: NonInviteClient,
}

/// Where the call stands, with what is only valid there.
// One per call, moved rarely: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
enum Phase {
    /// An INVITE is out (the first or an authenticated retry), no 2xx yet.
    Inviting {
        /// When to stop waiting for a final response and CANCEL (`invite_timeout`,
        /// restarted by each INVITE); `None` once it has passed.
        deadline: Option<Instant>,
        /// The deadline passed before any provisional response: CANCEL as soon
        /// as one arrives (a CANCEL needs one first, RFC 3261 9.1).
        cancel_wanted: bool,
    },
    /// Our CANCEL is out (its transaction is the caller's `cancel`); waiting
    /// for the INVITE's 487.
    Cancelling {
        /// When to stop waiting for the 487 (64·T1 after the CANCEL).
        give_up: Instant,
    },
    /// The 2xx is ACKed: the call is up. The far end's in-dialog requests are answered.
    Confirmed { dialog: Dialog, hangup_at: Instant },
    /// Our BYE is out. The far end's in-dialog requests are still answered.
    Terminating { dialog: Dialog, bye: NonInviteRequest },
    /// Over for good: nothing but the INVITE and CANCEL transactions reacts to
    /// input any more. Why it ended is `summary.ended`.
    Ended,
}

pub struct Caller {
    cfg: CallerConfig,
    request_uri: String,
    first_hop: HostPort,
    rng: StdRng,
    local_tag: String,
    local_cseq: u32,
    phase: Phase,
    /// Every INVITE sent; each transaction lives on (in every phase) to
    /// re-ACK retransmitted finals and to count retransmissions.
    invites: Vec<InviteAttempt>,
    /// Our CANCEL, from the moment it is sent. Not data of `Cancelling`: when
    /// a 2xx beats it, the call moves on (ACK, BYE) while this transaction
    /// must still retransmit the CANCEL and absorb its response.
    cancel: Option<NonInviteRequest>,
    /// The user abandoned the call (Ctrl-C). It holds across phases: no new
    /// INVITE is sent, and the CANCEL or BYE it caused (or one already out)
    /// ends the call as [`EndReason::Abandoned`].
    abandoned: bool,
    auth: DigestAuth,
    started_at: Instant,
    /// The time of the latest input (what `end` stamps the end with).
    last_now: Instant,
    /// After the end: listen until then (see [`LINGER`]); `None`: done.
    linger_until: Option<Instant>,
    ended_at: Option<Instant>,
    /// The dialog the call had, kept after the end to re-ACK its 2xx and
    /// answer a retransmitted BYE.
    ended_dialog: Option<Dialog>,
    /// BYEs for late answers (after the end), each with its transaction.
    releases: Vec<NonInviteRequest>,
    /// The ACK sent for each late answer, by its To tag (re-sent on retransmission).
    late_acks: Vec<(String, Transmit)>,
    /// The far end sent BYE (with this From tag) before its 2xx: when the
    /// 2xx comes, it is ACKed and hung up at once.
    early_bye_tag: Option<String>,
    outbox: VecDeque<Transmit>,
    events: VecDeque<CallEvent>,
    outcome: SipOutcome,
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
    pub fn start(cfg: CallerConfig, now: Instant) -> Result<Caller, CallSetupError> {
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
            phase: Phase::Inviting { deadline: None, cancel_wanted: false },
            invites: Vec::new(),
            cancel: None,
            abandoned: false,
            auth: DigestAuth::default(),
            started_at: now,
            last_now: now,
            linger_until: None,
            ended_at: None,
            ended_dialog: None,
            releases: Vec::new(),
            late_acks: Vec::new(),
            early_bye_tag: None,
            outbox: VecDeque::new(),
            events: VecDeque::new(),
            outcome: SipOutcome::default(),
            cfg,
        };
        caller.send_invite(now).map_err(CallSetupError::Build)?;
        Ok(caller)
    }

    pub fn outcome(&self) -> &SipOutcome {
        &self.outcome
    }

    /// The call is over (its end reason is known); it may still linger.
    pub fn is_ended(&self) -> bool {
        matches!(self.phase, Phase::Ended)
    }

    /// Ended and no longer listening (the linger is over): the shell may stop.
    pub fn is_done(&self) -> bool {
        self.is_ended() && self.linger_until.is_none()
    }

    /// Records something the far end did that the shell or the driver saw
    /// (e.g. an unusable SDP answer).
    pub fn record_finding(&mut self, code: &str, violation: bool, detail: impl Into<String>) {
        self.outcome.findings.add(code, violation, detail);
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
        let phase_timer = match &self.phase {
            Phase::Inviting { deadline, .. } => *deadline,
            Phase::Cancelling { give_up } => Some(*give_up),
            Phase::Confirmed { hangup_at, .. } => Some(*hangup_at),
            Phase::Terminating { bye, .. } => bye.tx.next_timeout(),
            // Lingering: the transactions' timers until the linger ends.
            Phase::Ended => Some(self.linger_until?),
        };
        let invites = self.invites.iter().filter_map(|a| a.tx.next_timeout());
        let requests = self.cancel.iter().chain(&self.releases).filter_map(|r| r.tx.next_timeout());
        invites.chain(requests).chain(phase_timer).min()
    }

    // ----- inputs -------------------------------------------------------

    /// A complete message arrived from `from`. Unparseable input is an error
    /// for the caller to record; it does not change the call.
    pub fn handle_message(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) -> Result<(), ParseError> {
        self.last_now = now;
        let at_ms = (now - self.started_at).as_millis();
        // RFC 3261 18.3: a datagram shorter than its Content-Length is
        // discarded; bytes past it are dropped.
        let bytes = match message::check_length(bytes) {
            LengthCheck::Exact | LengthCheck::Absent => bytes,
            LengthCheck::TooLong { announced, carried } => {
                let e = ParseError::ContentLength { announced, carried };
                let detail = format!("{} from {from} at {at_ms} ms: {e}; discarded", message::first_line(bytes));
                self.outcome.findings.add("content_length_mismatch", true, detail);
                return Err(e);
            }
            LengthCheck::TooShort { announced, carried, end } => {
                let detail = format!(
                    "{} from {from} at {at_ms} ms: Content-Length {announced} but {carried} body bytes; \
                     the {} bytes past it were dropped",
                    message::first_line(bytes),
                    carried - announced
                );
                self.outcome.findings.add("content_length_mismatch", true, detail);
                &bytes[..end]
            }
        };
        let inbound = match message::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                let detail = format!("{} bytes from {from} at {at_ms} ms: {e}", bytes.len());
                self.outcome.findings.add("unparseable_message", true, detail);
                return Err(e);
            }
        };
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
        self.last_now = now;
        for a in &mut self.invites {
            a.tx.on_timeout(now);
        }
        for request in self.cancel.iter_mut().chain(&mut self.releases) {
            request.tx.on_timeout(now);
        }
        if let Phase::Terminating { bye, .. } = &mut self.phase {
            bye.tx.on_timeout(now);
        }
        self.drain_transactions();
        match &mut self.phase {
            Phase::Inviting { deadline, .. } => {
                let current = self.invites.last();
                if current.is_some_and(|a| a.tx.timed_out()) {
                    let waited_ms = (now - self.started_at).as_millis() as u64;
                    self.end(EndReason::NoResponse { waited_ms });
                } else if deadline.is_some_and(|d| now >= d) {
                    *deadline = None;
                    self.request_cancel(now);
                }
            }
            Phase::Cancelling { give_up } => {
                let given_up = now >= *give_up;
                let cancel_dead = self.cancel.as_ref().is_some_and(|c| c.tx.timed_out());
                let invite_over = self.invites.last().is_some_and(|a| matches!(a.tx.state(), InviteState::Terminated));
                if cancel_dead || invite_over || given_up {
                    self.end_cancelled(now);
                }
            }
            Phase::Confirmed { hangup_at, .. } => {
                if now >= *hangup_at {
                    self.send_bye(now);
                }
            }
            Phase::Terminating { bye, .. } => {
                if bye.tx.timed_out() {
                    self.end(EndReason::ByeTimedOut);
                }
            }
            Phase::Ended => {
                if self.linger_until.is_some_and(|until| now >= until) {
                    self.linger_until = None;
                }
            }
        }
    }

    /// The user wants to stop (Ctrl-C): CANCEL before a final, BYE after.
    pub fn abandon(&mut self, now: Instant) {
        self.last_now = now;
        self.abandoned = true;
        // Lingering: the user wants out now.
        if let (Some(until), Some(ended)) = (self.linger_until, self.ended_at) {
            self.linger_until = Some(until.min((ended + ABANDONED_LINGER).max(now)));
        }
        match self.phase {
            // CANCEL needs a provisional response first (RFC 3261 9.1); with
            // none yet there is nothing to cancel, so the call just ends.
            Phase::Inviting { .. } if self.invites.last().is_some_and(|a| a.tx.state() != InviteState::Proceeding) => {
                self.end(EndReason::Abandoned);
            }
            Phase::Inviting { .. } => self.request_cancel(now),
            Phase::Confirmed { .. } => self.send_bye(now),
            // The CANCEL or BYE already out will end it (as Abandoned).
            Phase::Cancelling { .. } | Phase::Terminating { .. } | Phase::Ended => {}
        }
    }

    /// callprobe itself ends a connected call early (e.g. the answer's SDP is
    /// unusable): BYE now. Unlike [`Caller::abandon`] this is part of the test.
    pub fn hang_up(&mut self, now: Instant) {
        self.last_now = now;
        if matches!(self.phase, Phase::Confirmed { .. }) {
            self.send_bye(now);
        }
    }

    /// The connection to the far end closed (TCP).
    pub fn handle_transport_closed(&mut self) {
        let during = match self.phase {
            Phase::Inviting { .. } => "waiting for a final response to INVITE",
            Phase::Cancelling { .. } => "cancelling",
            Phase::Confirmed { .. } => "the call (after 200 OK, before our BYE)",
            Phase::Terminating { .. } => "waiting for the response to our BYE",
            Phase::Ended => return,
        };
        self.end(EndReason::TransportClosed { during: during.to_string() });
    }

    /// ICMP said nothing listens at `to` (UDP). While the INVITE has no
    /// response yet, that is why none will come: end now, not at Timer B.
    /// Later (the far end answered from there) it changes nothing.
    pub fn handle_port_unreachable(&mut self, to: SocketAddr) {
        let unanswered = self.invites.last().is_some_and(|a| a.tx.state() == InviteState::Calling);
        if matches!(self.phase, Phase::Inviting { .. }) && unanswered {
            self.end(EndReason::PortUnreachable { peer: to.to_string() });
        }
    }

    /// A TLS connection the call needs could not be set up (a bad
    /// certificate, a stuck handshake): the call cannot go on.
    pub fn handle_tls_failure(&mut self, problem: super::TlsProblem, detail: String) {
        if !self.is_ended() {
            self.end(EndReason::TlsFailed { problem, detail });
        }
    }

    /// Sending failed: the call cannot go on.
    pub fn handle_transport_error(&mut self, detail: String) {
        if !self.is_ended() {
            self.end(EndReason::TransportError { detail });
        }
    }

    // ----- requests from the far end -------------------------------------

    fn on_request(&mut self, req: InRequest, from: SocketAddr, now: Instant) {
        if req.method == "ACK" {
            return; // ACK to our 200 for a re-INVITE: nothing to answer.
        }
        // Only Confirmed and Terminating hold a dialog to match.
        let in_this_dialog = self.dialog().is_some_and(|d| {
            let from_tag = req.common.first("From").and_then(|v| message::param(&v, "tag"));
            let to_tag = req.common.first("To").and_then(|v| message::param(&v, "tag"));
            from_tag.as_deref() == Some(d.remote_tag.as_str()) && to_tag.as_deref() == Some(self.local_tag.as_str())
        });
        let from_tag = req.common.first("From").and_then(|v| message::param(&v, "tag"));
        let to_us =
            req.common.first("To").and_then(|v| message::param(&v, "tag")).as_deref() == Some(self.local_tag.as_str());
        // A retransmitted BYE for the dialog that ended: answer it again.
        let ended_dialog =
            self.ended_dialog.as_ref().is_some_and(|d| from_tag.as_deref() == Some(d.remote_tag.as_str()));
        if self.is_ended() && ended_dialog && to_us && req.method == "BYE" {
            self.respond(&req, from, 200, "OK", false);
            return;
        }
        // A BYE for the dialog its 2xx has not set up yet: the far end hangs
        // up before our ACK (RFC 3261 15: not before the ACK). There is no
        // dialog to end (481); its 2xx, when it comes, is ACKed and hung up.
        let answering = matches!(self.phase, Phase::Inviting { .. } | Phase::Cancelling { .. });
        if req.method == "BYE" && answering && to_us && !in_this_dialog {
            if let Some(tag) = from_tag {
                let at_ms = (now - self.started_at).as_millis();
                self.outcome.findings.add(
                    "bye_before_ack",
                    true,
                    format!(
                        "the far end sent BYE (From tag {tag}) at {at_ms} ms, before its 2xx was ACKed; answered 481"
                    ),
                );
                self.early_bye_tag = Some(tag);
            }
        }
        if !in_this_dialog {
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
            self.end(EndReason::FarEndHungUp);
        }
    }

    // ----- the call's own transitions ----------------------------------

    /// The dialog, in the phases that hold one (Confirmed, Terminating).
    fn dialog(&self) -> Option<&Dialog> {
        match &self.phase {
            Phase::Confirmed { dialog, .. } | Phase::Terminating { dialog, .. } => Some(dialog),
            _ => None,
        }
    }

    fn request_cancel(&mut self, now: Instant) {
        let proceeding = self.invites.last().is_some_and(|a| a.tx.state() == InviteState::Proceeding);
        let Phase::Inviting { cancel_wanted, .. } = &mut self.phase else { return };
        if proceeding {
            self.send_cancel(now);
        } else {
            *cancel_wanted = true;
        }
    }

    fn end_cancelled(&mut self, now: Instant) {
        if self.abandoned {
            self.end(EndReason::Abandoned);
            return;
        }
        let waited_ms = (now - self.started_at).as_millis() as u64;
        let last_provisional = self.outcome.provisional.last().copied();
        self.end(EndReason::Cancelled { last_provisional, waited_ms });
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
        self.outcome.invite_retransmissions = self.invites.iter().map(|a| a.tx.retransmissions()).sum();
        let bye = match &mut self.phase {
            Phase::Terminating { bye, .. } => Some(bye),
            _ => None,
        };
        for request in self.cancel.iter_mut().chain(&mut self.releases).chain(bye) {
            while let Some(bytes) = request.tx.poll_transmit() {
                self.outbox.push_back(Transmit { to: request.to.clone(), bytes });
            }
        }
    }

    fn end(&mut self, reason: EndReason) {
        if self.is_ended() {
            return;
        }
        // Flush what the transactions hold before the phase (and a BYE's) goes.
        self.drain_transactions();
        let linger = self.linger_for(&reason);
        for a in &mut self.invites {
            a.tx.stop_retransmitting();
        }
        let now = self.last_now;
        self.ended_dialog = self.dialog().cloned();
        self.phase = Phase::Ended;
        self.ended_at = Some(now);
        self.linger_until = (!linger.is_zero()).then(|| now + linger);
        self.outcome.ended = Some(reason.clone());
        self.events.push_back(CallEvent::Ended(reason));
    }

    /// How long to keep listening after the call ended with `reason` (see [`LINGER`]).
    fn linger_for(&self, reason: &EndReason) -> Duration {
        let udp = !self.cfg.transport.is_reliable();
        let timer_d = (64 * self.cfg.timers.t1).min(LINGER);
        let last = self.invites.last().map(|a| a.tx.state());
        // The INVITE has no final response: its 2xx may still come.
        let unanswered = matches!(last, Some(InviteState::Calling | InviteState::Proceeding | InviteState::Terminated))
            && self.dialog().is_none();
        let linger = match reason {
            EndReason::PortUnreachable { .. }
            | EndReason::TransportClosed { .. }
            | EndReason::TransportError { .. } => Duration::ZERO,
            _ if unanswered => LINGER,
            EndReason::FarEndHungUp if udp => timer_d,
            _ if udp && last == Some(InviteState::Completed) => timer_d,
            _ => Duration::ZERO,
        };
        if self.abandoned {
            linger.min(ABANDONED_LINGER)
        } else {
            linger
        }
    }
}

fn random_token(rng: &mut StdRng, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..len).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}
