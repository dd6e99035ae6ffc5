//! The format of `report.json`: the contract that users' tooling reads.
//!
//! These types are the file, field for field; nothing else is serialised
//! into it. They are also the in-memory report every other output (HTML,
//! JUnit, metrics, webhook, the console's verdict block) is written from.
//! They are built from callprobe's internal types
//! ([`CallOutcome`](crate::call::CallOutcome), [`Check`](crate::verdict::checks::Check),
//! [`LiveKitObservation`](crate::livekit::observation::LiveKitObservation) …)
//! by [`Call::new`], [`Media::new`] and `From`, so renaming or reshaping an
//! internal type cannot change the file by accident: the conversion stops
//! compiling instead, and the golden test (`tests/golden/report.json`) shows
//! any change that does get through.
//!
//! Rules for changing the format:
//! - Fields are only ever added. A field that can be missing says so
//!   (`null`: the value is unknown or does not apply; *absent*: the field is
//!   left out entirely, as noted on the field).
//! - An incompatible change (a field removed, renamed, retyped or given a
//!   new meaning, an enum spelling changed) bumps [`SCHEMA_VERSION`].
//!
//! Times: unless a field says otherwise, `*_ms` values are milliseconds
//! (fractional) on the call's timeline, t = 0 when the first INVITE left;
//! `*_unix_ms` values are milliseconds since the Unix epoch (UTC). The
//! `livekit` part counts from the INVITE that got through instead (see
//! [`TimeReference`]). Internals carry [`crate::time`]'s types; the building
//! code below is the one place they become these numbers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::audio::analysis::MediaAnalysis;
use crate::call::{CallOutcome, LoggedMessage, PreparedCall};
use crate::livekit::observation as internal_lk;
use crate::livekit::room_watch::MatchedBy as InternalMatchedBy;
use crate::media::codec::AudioCodec;
use crate::sip::caller::EndReason as InternalEndReason;
use crate::time::{unix_ms, CallTime, Millis, Offset};
use crate::verdict::mos;

/// `schema_version` of the report.json this code writes. Bumped only on an
/// incompatible change (see the module documentation); added fields keep it.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole file: one run of `callprobe call` or `callprobe run`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The format's version, [`SCHEMA_VERSION`] (1). Tooling should refuse
    /// or warn on a version it does not know; fields added within a version
    /// are not a new version.
    pub schema_version: u32,
    /// Always `"callprobe"`.
    pub tool: String,
    /// The callprobe version that wrote the file (its Cargo package version).
    pub version: String,
    /// The run's verdict: the worst of the calls' verdicts (`error`, then
    /// `fail`, `flaky`, `pass`). A `flaky` run passed (exit code 0), but
    /// some call needed a retry to pass.
    pub verdict: Verdict,
    /// Which slice of the run this report holds, when it is one shard of it
    /// (`callprobe run --shard i/N`); absent otherwise (also in the report
    /// `callprobe merge` makes of the shards: that is the whole run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<ShardRun>,
    /// Every call of the run, in the order they were planned (a call that
    /// could not be placed is here too, with verdict `error`).
    pub calls: Vec<Call>,
    /// The scenario files' objectives over the run's calls (`slo = [...]`,
    /// `[regression]`), each a check of the run; absent when none is declared.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slo: Vec<crate::verdict::slo::SloResult>,
    /// `true` when some call went over TLS without verifying the server's
    /// certificate (`--tls-insecure`); absent otherwise.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls_unverified: bool,
}

/// `shard`: the slice of the run's queue of calls a shard ran: the calls
/// whose `position` modulo `count` is `index`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRun {
    /// This shard, 0-based: below `count`.
    pub index: usize,
    /// How many shards the run was split into.
    pub count: usize,
    /// Calls in the whole run's queue, every shard's (so a merge can tell
    /// which of a shard's calls were not run).
    pub queue_length: usize,
    /// The suite's name (the JUnit test suite's name).
    pub suite: String,
}

/// `pass`, `fail`, `error` (the tester could not do its job: the call
/// could not be placed, or it was interrupted) or `flaky` (`callprobe run
/// --retries N`: the call failed, then passed when tried again; its
/// `attempts` list every try).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    Error,
    Flaky,
}

impl Verdict {
    /// Whether the system under test passed in the end: `pass`, or `flaky`
    /// (passed on a retry). A run whose calls all passed so exits 0.
    pub fn passed(self) -> bool {
        matches!(self, Verdict::Pass | Verdict::Flaky)
    }

    /// How bad it is, for the run's verdict (the worst of the calls'):
    /// `pass` < `flaky` < `fail` < `error`.
    fn severity(self) -> u8 {
        match self {
            Verdict::Pass => 0,
            Verdict::Flaky => 1,
            Verdict::Fail => 2,
            Verdict::Error => 3,
        }
    }

    /// The worse of two verdicts.
    pub fn worst(self, other: Verdict) -> Verdict {
        if other.severity() > self.severity() {
            other
        } else {
            self
        }
    }
}

/// `udp`, `tcp` or `tls`: the SIP transport of the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    Tls,
}

/// `calls[].tls`: how the TLS connection of a call over TLS was checked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tls {
    /// `false` only with `--tls-insecure` (`tls_insecure = true`): the
    /// server's certificate was NOT verified.
    pub verified: bool,
    /// The name checked against the certificate (and sent as SNI when it is
    /// a DNS name): the URI host.
    pub server_name: String,
    /// What the certificate was checked against: `system` (the system's
    /// trusted roots) or the `--tls-ca` file.
    pub roots: String,
}

/// `calls[]`: one call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    /// The scenario case's name (`callprobe run`); absent for `callprobe call`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The scenario's name alone (its matrix cases and `--repeat` rounds
    /// share it: what its objectives are computed over); absent for `callprobe call`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
    /// The scenario's tags; absent when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// The call's place in the run's queue, 0-based: scenario files in
    /// order, their cases in order, then `--repeat` round after round. The
    /// same in every shard of a sharded run; the call's folder is numbered
    /// `position + 1`. Absent for `callprobe call`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub position: Option<usize>,
    /// The SIP Call-ID of the INVITE.
    pub call_id: String,
    /// The `X-Lk-Test-Id` header of the INVITE (LiveKit's participant attribute `lktest.id`).
    pub test_id: String,
    /// The Request-URI called.
    pub target: String,
    pub transport: Transport,
    /// How TLS was checked; absent unless the call went over TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Tls>,
    /// `pass` when every check that decides passed (with `expected_diagnosis`:
    /// the `diagnosis` check only), `error` when the call could not be placed
    /// or was interrupted, else `fail`. `flaky` when it failed and then
    /// passed on a retry (`--retries`); then everything else here is the
    /// passing attempt's, and `attempts` has the failed ones. A call that
    /// failed every attempt is `fail` with its last attempt's data.
    pub verdict: Verdict,
    /// When the call started, ms since the Unix epoch (for a call that was
    /// not placed: when that was found out).
    pub started_unix_ms: u64,
    pub sip: Sip,
    pub media: Media,
    /// The checks, in the order they ran.
    pub checks: Vec<Check>,
    /// Known causes the failure looks like (empty when the call passed or no
    /// rule applied), most specific first.
    pub diagnosis: Vec<Diagnosis>,
    /// The diagnosis code this call was expected to fail with (a scenario's
    /// `expect.diagnosis`); then only the `diagnosis` check decides the
    /// verdict. Absent when no diagnosis was expected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_diagnosis: Option<String>,
    /// Things that went wrong on callprobe's side without ending the call
    /// (unparseable input …), or why the call could not be placed.
    pub notes: Vec<String>,
    /// What the far end did that callprobe names (docs/failure-modes.md,
    /// items 22–24): `code`, `detail`, and `violation` (it broke the
    /// protocol: the call fails the `peer_conduct` check). Absent when there
    /// were none; added within schema version 1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<crate::finding::Finding>,
    /// What LiveKit's API showed about the call; null when LiveKit was not configured.
    pub livekit: Option<LiveKit>,
    /// Who spoke when, what the far end said and how fast it replied; null
    /// when the call had no media.
    pub conversation: Option<Conversation>,
    /// Every attempt at the call, in order, when it was tried more than once
    /// (`callprobe run --retries N`: a call that failed is tried again);
    /// the last one is the call reported above. Absent when the call was
    /// tried once.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
}

/// `calls[].attempts[]`: one try at a call that was retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// 1 for the first try, 2 for the first retry …
    pub attempt: usize,
    /// That try's own verdict: `pass`, `fail` or `error`.
    pub verdict: Verdict,
    /// When that try started, ms since the Unix epoch.
    pub started_unix_ms: u64,
    /// That try's SIP Call-ID and `X-Lk-Test-Id` (each try has its own).
    pub call_id: String,
    pub test_id: String,
    /// Its diagnoses, as `calls[].diagnosis` (empty when it passed).
    pub diagnosis: Vec<Diagnosis>,
    /// Its checks that failed (empty when it passed).
    pub failed_checks: Vec<Check>,
    /// Its files (`rx.wav`, `tx.wav`, `call.pcap`), relative to the run
    /// folder: `003-name/attempt-1` for an earlier try, the call's own
    /// folder `003-name` for the last one; null when none were written.
    pub folder: Option<String>,
}

/// `calls[].conversation`: the call as turns. A far-end turn is its speech
/// with pauses shorter than `end_of_turn_ms` inside it; our turns are the
/// clips and DTMF we sent. Times are ms since the first INVITE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// Silence that ends a far-end turn, ms.
    pub end_of_turn_ms: u64,
    /// Both sides' turns, in time order.
    pub turns: Vec<TurnReport>,
    /// For each of our turns the far end answered: end of our speech → start
    /// of its next turn, ms, in order.
    pub reply_latencies_ms: Vec<u64>,
    /// Nearest-rank percentiles and maximum of `reply_latencies_ms`; null without replies.
    pub reply_latency_p50_ms: Option<u64>,
    pub reply_latency_p95_ms: Option<u64>,
    pub reply_latency_max_ms: Option<u64>,
    /// Stretches where both sides talked at once.
    pub overlaps: Vec<Overlap>,
    /// Why the far end's turns have no text (no speech-to-text engine …);
    /// null when they were transcribed.
    pub transcripts_missing: Option<String>,
}

/// `calls[].conversation.turns[]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TurnReport {
    /// `agent` (the far end) or `us`.
    pub speaker: &'static str,
    pub start_ms: f64,
    /// When the speech ended (the end-of-turn silence not counted).
    pub end_ms: f64,
    /// Ours: the clip's file name, the quoted text, or `DTMF 1#`; null for the agent's.
    pub label: Option<String>,
    /// The agent's: what the speech-to-text engine heard; null when not transcribed.
    pub text: Option<String>,
    /// The engine that produced `text`, e.g. `whisper tiny.en`.
    pub engine: Option<String>,
    /// Why this turn has no text although an engine ran.
    pub error: Option<String>,
}

/// A turn as read from a report.json, its speaker not yet checked.
#[derive(Deserialize)]
struct TurnRead {
    speaker: String,
    start_ms: f64,
    end_ms: f64,
    label: Option<String>,
    text: Option<String>,
    engine: Option<String>,
    error: Option<String>,
}

/// By hand: a derived implementation would borrow `speaker` from the input.
impl<'de> Deserialize<'de> for TurnReport {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<TurnReport, D::Error> {
        let TurnRead { speaker, start_ms, end_ms, label, text, engine, error } = TurnRead::deserialize(deserializer)?;
        let speaker = match speaker.as_str() {
            "agent" => "agent",
            "us" => "us",
            other => {
                return Err(serde::de::Error::custom(format!("turn speaker '{other}': expected \"agent\" or \"us\"")))
            }
        };
        Ok(TurnReport { speaker, start_ms, end_ms, label, text, engine, error })
    }
}

/// `calls[].conversation.overlaps[]`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Overlap {
    pub start_ms: f64,
    pub duration_ms: u64,
}

impl Conversation {
    /// From the analysis of the call's audio and, per far-end turn, what the
    /// engine made of it (`transcripts` empty: not transcribed, `missing` says why).
    pub fn new(
        analysis: &MediaAnalysis,
        media: &crate::media::session::MediaOutcome,
        transcripts: &[Result<crate::transcribe::Transcript, String>],
        missing: Option<String>,
    ) -> Conversation {
        let mut turns: Vec<TurnReport> = analysis
            .far_turns
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let heard = transcripts.get(i);
                TurnReport {
                    speaker: "agent",
                    start_ms: t.start.ms(),
                    end_ms: t.end.ms(),
                    label: None,
                    text: heard.and_then(|h| h.as_ref().ok()).map(|h| h.text.clone()),
                    engine: heard.and_then(|h| h.as_ref().ok()).map(|h| h.engine.clone()),
                    error: heard.and_then(|h| h.as_ref().err()).cloned(),
                }
            })
            .collect();
        turns.extend(media.our_turns.iter().map(|t| TurnReport {
            speaker: "us",
            start_ms: t.speech_start.ms(),
            end_ms: t.end.map_or(t.speech_end, |e| t.speech_end.min(e)).ms(),
            label: Some(t.label.clone()),
            text: None,
            engine: None,
            error: None,
        }));
        turns.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
        let timing = &analysis.turn_timing;
        Conversation {
            end_of_turn_ms: analysis.end_of_turn.whole_ms(),
            turns,
            reply_latencies_ms: timing.latencies.iter().map(|d| d.whole_ms()).collect(),
            reply_latency_p50_ms: timing.p50.map(|d| d.whole_ms()),
            reply_latency_p95_ms: timing.p95.map(|d| d.whole_ms()),
            reply_latency_max_ms: timing.max.map(|d| d.whole_ms()),
            overlaps: timing
                .overlaps
                .iter()
                .map(|(at, d)| Overlap { start_ms: at.ms(), duration_ms: d.whole_ms() })
                .collect(),
            transcripts_missing: missing,
        }
    }
}

/// `calls[].sip`: the SIP side of the call.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sip {
    /// Final responses to our INVITEs, in order (e.g. 407 then 200).
    pub final_responses: Vec<FinalResponse>,
    /// Status codes of the provisional (1xx) responses, in order.
    pub provisional: Vec<u16>,
    /// INVITE transactions started (2 after answering one challenge).
    pub invites_sent: u32,
    /// INVITE retransmissions over UDP (Timer A), over all transactions.
    pub invite_retransmissions: u32,
    /// Whether the INVITE that was answered (2xx) carried credentials; false
    /// when the call was not answered.
    pub authenticated: bool,
    /// Our SIP address (`ip:port`); null when no socket was opened.
    pub local: Option<String>,
    /// The far end's Contact from the 2xx (where in-dialog requests went); null without one.
    pub remote_target: Option<String>,
    /// The Record-Route set of the dialog, in the order requests follow it.
    pub route_set: Vec<String>,
    /// When the 2xx was ACKed (the call was up), ms since the first INVITE; null when not answered.
    pub connected_ms: Option<f64>,
    /// When the call ended, ms since the first INVITE; null when it did not get that far.
    pub ended_ms: Option<f64>,
    /// How the call ended; null when it did not end (not placed).
    pub ended: Option<EndReason>,
    /// `ended` in words, as the console shows it; null with `ended`.
    pub ended_description: Option<String>,
    /// Every SIP message sent and received, in order.
    pub messages: Vec<Message>,
}

/// `calls[].sip.final_responses[]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinalResponse {
    /// SIP status code (200 … 699).
    pub status: u16,
    /// The reason phrase as received.
    pub reason: String,
}

/// `calls[].sip.messages[]`: one SIP message as sent or received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// When it was sent or received, ms since the first INVITE left.
    pub t_ms: f64,
    pub dir: Direction,
    /// The other side's address (`ip:port`).
    pub peer: String,
    /// The request or status line.
    pub first_line: String,
    /// The whole message (CRLF line ends). Digest `response=` values appear;
    /// passwords never do.
    pub raw: String,
}

/// `out` (we sent it) or `in` (we received it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Out,
    In,
}

/// `calls[].sip.ended`: how the call ended, an object whose `kind` names the
/// case; some kinds carry more fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EndReason {
    /// `hung_up`: we hung up after the hold time and the far end answered our
    /// BYE with `bye_status`.
    HungUp { bye_status: u16 },
    /// `bye_timed_out`: our BYE got no final response (Timer F).
    ByeTimedOut,
    /// `far_end_hung_up`: the far end sent BYE.
    FarEndHungUp,
    /// `rejected`: a final non-2xx response ended the call.
    Rejected { status: u16, reason: String },
    /// `challenged_without_credentials`: a 401/407 arrived and no credentials were given.
    ChallengedWithoutCredentials { status: u16 },
    /// `credentials_rejected`: credentials were sent and refused (401/403 or
    /// a second challenge for the same realm).
    CredentialsRejected { status: u16, reason: String },
    /// `unanswerable_challenge`: a challenge callprobe cannot answer
    /// (unsupported algorithm or qop, malformed), `detail` says why.
    UnanswerableChallenge { status: u16, detail: String },
    /// `no_response`: nothing came back within `waited_ms` (Timer B).
    NoResponse { waited_ms: u64 },
    /// `port_unreachable`: over UDP, the INVITE came back as ICMP port
    /// unreachable: nothing listens at `peer` (`host:port`).
    PortUnreachable { peer: String },
    /// `cancelled`: only provisional responses (the last one's status, or
    /// null) for `waited_ms`; we sent CANCEL.
    Cancelled { last_provisional: Option<u16>, waited_ms: u64 },
    /// `abandoned`: the user interrupted the call before a final response.
    Abandoned,
    /// `transport_closed`: the far end closed the TCP connection (`during`: what we were doing).
    TransportClosed { during: String },
    /// `transport_error`: sending failed (connection refused, unreachable …).
    TransportError { detail: String },
    /// `tls_failed`: the TLS connection could not be set up; `problem` is
    /// `certificate_expired`, `wrong_host`, `unknown_ca`, `bad_certificate`,
    /// `handshake_timeout` or `handshake_failed`.
    TlsFailed { problem: crate::sip::TlsProblem, detail: String },
    /// `protocol_error`: the 2xx could not be used (no To tag, unusable Contact …).
    ProtocolError { detail: String },
}

/// `calls[].media`: what the RTP side measured. Times are ms on the same
/// clock as `sip.messages[].t_ms`, except `first_audio_ms` (from the 200 OK)
/// and `response_latency_ms` (from the end of our utterance), which are
/// durations. Counters are 0 and the rest null when there was no media.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Media {
    /// The negotiated codec (`PCMU`, `PCMA`, `G722`); null without media.
    pub codec: Option<String>,
    /// Our RTP address (`ip:port`).
    pub local_rtp: Option<String>,
    /// The far end's RTP address from its SDP.
    pub remote_rtp: Option<String>,
    /// Why the call had no media (no SDP in the 200, no common codec …); null otherwise.
    pub error: Option<String>,
    /// SRTP (SDES) when the answer settled it; null for plain RTP. Added
    /// within schema version 1: older files do not have it.
    #[serde(default)]
    pub srtp: Option<Srtp>,
    /// RTP packets we sent.
    pub tx_packets: u64,
    /// Of those, packets sent one frame (20 ms) or more after their slot (a stalled sender).
    pub tx_late_packets: u64,
    /// RTP packets of the negotiated codec received from the far end.
    pub rx_packets: u64,
    /// Packets missing from the received sequence range (RFC 3550 A.3).
    pub lost: u64,
    pub duplicates: u64,
    /// Packets that arrived after a higher sequence number.
    pub reordered: u64,
    /// Interarrival jitter of the received stream (RFC 3550 A.8), ms, two decimals.
    pub jitter_ms: f64,
    /// Longest time between two received packets, ms.
    pub max_gap_ms: f64,
    /// Estimated listening quality (E-model R and MOS) per direction; null
    /// when there was no media or no RTP was received to score. Added within
    /// schema version 1: older files do not have it.
    #[serde(default)]
    pub mos: Option<Mos>,
    /// Packets not counted in the statistics above: from another address or
    /// SSRC than the first stream (their audio is still recorded), or with a
    /// payload type that is neither the codec nor telephone-event.
    pub ignored_packets: u64,
    /// Times the far end's RTP timestamps jumped away from real time (stream restarts).
    pub rx_stream_restarts: u64,
    /// Times a received packet's SSRC differed from the previous one's.
    /// Added within schema version 1.
    #[serde(default)]
    pub rx_ssrc_changes: u64,
    /// Packets from another address than the far end's SDP announced.
    /// Added within schema version 1.
    #[serde(default)]
    pub rx_unexpected_source_packets: u64,
    /// Every stream received, per (SSRC, source address), in order of first
    /// arrival (at most 16). Added within schema version 1.
    #[serde(default)]
    pub rx_streams: Vec<RxStream>,
    /// When the first RTP packet of the codec arrived, ms since the first INVITE.
    pub first_rtp_ms: Option<f64>,
    /// From the 200 OK to the far end's first speech, ms; null without speech or analysis.
    pub first_audio_ms: Option<u64>,
    /// From the end of our utterance (`utterance_end_ms`) to the next far-end speech, ms.
    pub response_latency_ms: Option<u64>,
    /// Total far-end speech, ms; null when the audio was not analysed.
    pub talk_time_ms: Option<u64>,
    /// Longest far-end silence after the 200 OK, ms; null when not analysed.
    pub longest_silence_ms: Option<u64>,
    /// Far-end speech, in order.
    pub speech_segments: Vec<SpeechSegment>,
    /// When our clip played; null when nothing was played or it was cut short.
    pub played: Option<PlayedSpan>,
    /// Our clip started but the call ended before it finished.
    pub play_cut_short: bool,
    /// When our speech in the clip ended (its trailing silence not counted),
    /// ms since the first INVITE: response latency counts from here.
    pub utterance_end_ms: Option<f64>,
    /// DTMF digits received (RFC 4733), in order (`0`-`9`, `*`, `#`, `A`-`D`).
    pub dtmf: Vec<String>,
    /// The tone looked for (`--expect-tone` / `expect.tone_hz`) and how long
    /// it was heard; null when none was asked for or there was no media.
    pub tone: Option<Tone>,
    /// The recordings, relative to the call's folder; null when none were written.
    pub recordings: Option<Recordings>,
}

/// `calls[].media.rx_streams[]`: the packets of one (SSRC, source) pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RxStream {
    pub ssrc: u32,
    /// `ip:port` the packets came from.
    pub source: String,
    pub packets: u64,
    /// Whether this is the stream the statistics above describe (the first one).
    pub tracked: bool,
}

/// `calls[].media.srtp`: the SRTP suite the SDP answer chose and what
/// protecting and unprotecting counted. Never the keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Srtp {
    /// `AES_CM_128_HMAC_SHA1_80` or `AES_CM_128_HMAC_SHA1_32`.
    pub suite: String,
    /// Packets we protected and sent.
    pub protected_packets: u64,
    /// Received packets that authenticated and were decrypted.
    pub unprotected_packets: u64,
    /// Received packets that failed authentication (tampered, or another
    /// key): dropped, never decoded.
    pub auth_failures: u64,
    /// Received packets replayed (a sequence number seen before): dropped.
    pub replayed: u64,
    /// Received packets too short or malformed for SRTP: dropped.
    pub malformed: u64,
}

/// `calls[].media.mos`: how the call's audio would sound, estimated per
/// direction from RTP loss, jitter and the codec with the ITU-T G.107
/// E-model as monitoring tools simplify it ([`crate::verdict::mos`] has the
/// formulas, the constants and their sources). An estimate, not a
/// measurement of the audio: `model` says what was assumed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mos {
    /// The model and its assumptions in one line (codec values, loss
    /// pattern, delay; for G.722 that it is scored on the narrowband scale).
    pub model: String,
    /// What callprobe heard: from our receive statistics of the far end's RTP.
    pub received: MosEstimate,
    /// What the far end heard: needs the far end's RTCP receiver reports;
    /// null when there were none (`sent_note` says so).
    pub sent: Option<MosEstimate>,
    /// Why `sent` is null; null when it is not.
    pub sent_note: Option<String>,
}

/// `calls[].media.mos.received` / `.sent`: one direction's estimate and
/// what it was computed from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MosEstimate {
    /// Transmission rating factor R (one decimal; below 0 or above 100 possible).
    pub r: f64,
    /// Mean opinion score from R (G.107 Annex B), 1 to 4.5, two decimals.
    pub mos: f64,
    /// Packets lost, percent of those expected (two decimals).
    pub loss_percent: f64,
    /// The burst ratio used: 1 = loss taken as random (the loss pattern is not measured).
    pub burst_ratio: f64,
    /// Interarrival jitter, ms (two decimals).
    pub jitter_ms: f64,
    /// The one-way delay assumed (packetisation + jitter buffer; network
    /// transit not measured, so not counted), ms.
    pub delay_ms_assumed: f64,
    /// The codec's equipment impairment factor Ie (G.113 Appendix I).
    pub ie: f64,
    /// The packet-loss robustness factor Bpl (G.113 Appendix I) for the listener assumed.
    pub bpl: f64,
}

/// `calls[].media.speech_segments[]`: a stretch of far-end speech, ms since
/// the first INVITE (the start of `rx.wav`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeechSegment {
    pub start_ms: u64,
    pub end_ms: u64,
}

/// `calls[].media.played`: when our clip started and ended, ms since the first INVITE.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PlayedSpan {
    pub start_ms: f64,
    pub end_ms: f64,
}

/// `calls[].media.tone`: the expected tone in the far end's audio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tone {
    /// The frequency looked for, Hz.
    pub frequency_hz: f64,
    /// Total time the tone dominated the far end's audio after the 200 OK,
    /// ms (0: not heard).
    pub present_ms: u64,
}

/// `calls[].media.recordings`: WAV files (16-bit mono 16 kHz, t = 0 at the
/// first INVITE), paths relative to the call's folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recordings {
    /// What the far end sent.
    pub rx: String,
    /// What we sent.
    pub tx: String,
}

/// `calls[].checks[]`: one expectation and its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Check {
    /// Stable identifier (`final_responses`, `agent_joined`, `speech_within`, `diagnosis` …).
    pub name: String,
    pub passed: bool,
    /// What was expected and what happened, in words.
    pub detail: String,
}

/// `calls[].diagnosis[]`: a known failure mode the call looks like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnosis {
    /// Stable identifier of the failure mode (`no_trunk_found`, `dispatch_rule_without_agents` …).
    pub code: String,
    /// The cause in one sentence.
    pub summary: String,
    /// What in this call shows it.
    pub evidence: String,
    /// What to do about it.
    pub fix: String,
    /// Where to read more (docs/failure-modes.md item, upstream issues).
    pub reference: String,
}

/// `calls[].livekit`: what LiveKit's API showed about the call. Times are ms
/// after the INVITE that got through ([`TimeReference`]); fields are null
/// when the API did not show them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveKit {
    /// The LiveKit server URL watched.
    pub url: String,
    /// Looked for: the SIP participant with `lktest.id` = this …
    pub test_id: String,
    /// … or `sip.callIDFull` = this SIP Call-ID.
    pub call_id: String,
    /// What the times below count from.
    pub reference: TimeReference,
    /// The call's room name; null when no room was found.
    pub room: Option<String>,
    pub room_sid: Option<String>,
    /// When the server says the room was created.
    pub room_created_ms: Option<f64>,
    /// When a poll first saw our SIP participant in the room.
    pub room_found_ms: Option<f64>,
    /// Which attribute tied the SIP participant to our call.
    pub matched_by: Option<MatchedBy>,
    pub sip_participant: Option<SipParticipant>,
    /// `sip.trunkID`: the inbound trunk LiveKit matched.
    pub trunk_id: Option<String>,
    /// `sip.ruleID`: the dispatch rule LiveKit matched.
    pub rule_id: Option<String>,
    /// `sip.phoneNumber`: the caller's number as LiveKit saw it.
    pub phone_number: Option<String>,
    /// `sip.trunkPhoneNumber`: the called number as LiveKit saw it.
    pub trunk_phone_number: Option<String>,
    /// Participants of kind AGENT seen in the room.
    pub agents: Vec<Agent>,
    /// Agent dispatches of the room.
    pub dispatches: Vec<Dispatch>,
    /// The dispatch rule the call matched (or the rules that could apply),
    /// read through the SIP API after a failed call; null otherwise.
    pub dispatch_rule: Option<DispatchRule>,
    /// How long the room was watched, ms.
    pub watched_ms: f64,
    /// API polls made.
    pub polls: u32,
    /// Failed API requests, in order.
    pub api_errors: Vec<String>,
    /// The watch stopped early on this error; null when it did not.
    pub gave_up: Option<String>,
}

/// `calls[].livekit.reference`: t = 0 of the `livekit` times.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeReference {
    /// `invite_that_got_through` (the first transmission of the last INVITE
    /// transaction: the authenticated one after a challenge), or
    /// `call_start` when no INVITE left.
    pub kind: String,
    /// That INVITE's CSeq number; null with `call_start`.
    pub invite_cseq: Option<u32>,
    /// That INVITE's `t_ms` in `sip.messages` (ms since the first INVITE).
    pub invite_t_ms: f64,
    /// The same instant, ms since the Unix epoch.
    pub unix_ms: i64,
}

/// `calls[].livekit.matched_by`: `lktest.id` (our test id) or
/// `sip.callIDFull` (the SIP Call-ID, when a trunk dropped X- headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchedBy {
    #[serde(rename = "lktest.id")]
    TestId,
    #[serde(rename = "sip.callIDFull")]
    CallId,
}

/// `calls[].livekit.sip_participant`: LiveKit's participant for our call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SipParticipant {
    pub identity: String,
    /// The server's join time.
    pub joined_ms: Option<f64>,
    /// When a poll first found it gone.
    pub left_observed_ms: Option<f64>,
    /// Its participant attributes (`sip.*`, `lktest.id` …).
    pub attributes: BTreeMap<String, String>,
    /// `sip.callStatus` as the polls saw it change (ringing → active → hangup).
    pub call_status: Vec<CallStatus>,
}

/// `calls[].livekit.sip_participant.call_status[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallStatus {
    /// The `sip.callStatus` value.
    pub status: String,
    /// When a poll first saw it.
    pub observed_ms: f64,
}

/// `calls[].livekit.agents[]`: an agent participant in the room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Agent {
    pub identity: String,
    /// `lk.agent_name`; empty when it has none.
    pub agent_name: String,
    /// When the agent joined: `server_joined_ms` or `observed_ms`, see `joined_ms_source`.
    pub joined_ms: f64,
    pub joined_ms_source: JoinSource,
    /// The server's join time.
    pub server_joined_ms: Option<f64>,
    /// When a poll first saw the agent.
    pub observed_ms: f64,
    /// When a poll first found it gone.
    pub left_observed_ms: Option<f64>,
    pub attributes: BTreeMap<String, String>,
}

/// `calls[].livekit.agents[].joined_ms_source`: `server` (the server's
/// `joined_at`) or `poll` (when a poll first saw it: the server's clock
/// disagreed, or it gave no join time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinSource {
    Server,
    Poll,
}

/// `calls[].livekit.dispatches[]`: an agent dispatch of the room.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dispatch {
    pub id: String,
    /// Empty: the server's default dispatch for a room without agents in its config.
    pub agent_name: String,
    pub created_ms: Option<f64>,
    pub jobs: Vec<Job>,
}

/// `calls[].livekit.dispatches[].jobs[]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    /// The job's status: `pending`, `running`, `success`, `failed` (or `unknown`).
    pub status: String,
    /// The job's error; empty when none.
    pub error: String,
    pub worker_id: String,
    pub participant_identity: String,
    pub started_ms: Option<f64>,
    pub ended_ms: Option<f64>,
}

/// `calls[].livekit.dispatch_rule`: a dispatch rule as read through the SIP
/// API (only the fields the diagnoses use).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DispatchRule {
    pub id: String,
    pub name: String,
    /// Trunks the rule applies to; empty: all trunks.
    pub trunk_ids: Vec<String>,
    /// Called numbers the rule applies to (matched exactly); empty: all.
    pub numbers: Vec<String>,
    /// Caller numbers the rule accepts; empty: all.
    pub inbound_numbers: Vec<String>,
    /// `individual`, `direct`, `callee` or `none`.
    pub kind: String,
    /// Room prefix (individual, callee) or room name (direct).
    pub room: String,
    /// Whether the rule has a `room_config` at all.
    pub has_room_config: bool,
    /// `room_config.agents[].agent_name`: the agents dispatched into each room.
    pub agents: Vec<String>,
}

// ------------------------------------------------------------ building

impl Report {
    /// The run's report: its verdict is the worst of the calls'.
    pub fn new(calls: Vec<Call>) -> Report {
        let verdict = calls.iter().fold(Verdict::Pass, |v, c| v.worst(c.verdict));
        Report {
            schema_version: SCHEMA_VERSION,
            tool: "callprobe".to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            verdict,
            shard: None,
            tls_unverified: calls.iter().any(Call::tls_unverified),
            calls,
            slo: Vec::new(),
        }
    }

    /// Adds the run's objective checks; a breached one fails the run.
    pub fn add_slo(&mut self, results: Vec<crate::verdict::slo::SloResult>) {
        if results.iter().any(|r| !r.passed) {
            self.verdict = self.verdict.worst(Verdict::Fail);
        }
        self.slo.extend(results);
    }

    /// Reads a report.json written by [`Report::write_json`] (of this
    /// [`SCHEMA_VERSION`]; fields it does not know are ignored).
    pub fn read_json(path: &Path) -> Result<Report, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let head: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{} is not JSON: {e}", path.display()))?;
        match head.get("schema_version").and_then(serde_json::Value::as_u64) {
            Some(v) if v == u64::from(SCHEMA_VERSION) => {}
            Some(v) => {
                return Err(format!(
                    "{}: schema_version {v}, but this callprobe reads version {SCHEMA_VERSION}",
                    path.display()
                ))
            }
            None => return Err(format!("{}: no schema_version: not a callprobe report.json", path.display())),
        }
        serde_json::from_value(head).map_err(|e| format!("{} is not a callprobe report.json: {e}", path.display()))
    }

    /// Writes `dir/report.json`.
    pub fn write_json(&self, dir: &Path) -> Result<PathBuf, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create report directory {}: {e}", dir.display()))?;
        let path = dir.join("report.json");
        let json = serde_json::to_string_pretty(self).map_err(|e| format!("cannot serialise the report: {e}"))?;
        std::fs::write(&path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }
}

impl Call {
    /// A call with its identity and verdict only: no name, tags, SIP
    /// exchange, media, checks, diagnosis, notes, LiveKit or conversation.
    pub fn bare(
        call_id: String,
        test_id: String,
        target: String,
        transport: Transport,
        verdict: Verdict,
        started_unix_ms: u64,
    ) -> Call {
        Call {
            name: None,
            scenario: None,
            tags: Vec::new(),
            position: None,
            call_id,
            test_id,
            target,
            transport,
            tls: None,
            verdict,
            started_unix_ms,
            sip: Sip::default(),
            media: Media::default(),
            checks: Vec::new(),
            diagnosis: Vec::new(),
            expected_diagnosis: None,
            notes: Vec::new(),
            findings: Vec::new(),
            livekit: None,
            conversation: None,
            attempts: Vec::new(),
        }
    }

    /// The report of a call that was placed, from its record, its media
    /// section ([`Media::new`]), checks and diagnosis; `name`, `tags` and
    /// `livekit` are left empty.
    pub fn new(
        record: &CallOutcome,
        media: Media,
        checks: Vec<crate::verdict::checks::Check>,
        diagnosis: Vec<crate::verdict::diagnose::Diagnosis>,
        expected_diagnosis: Option<String>,
    ) -> Call {
        use crate::verdict::Verdict as V;
        let deciding = |c: &&crate::verdict::checks::Check| expected_diagnosis.is_none() || c.name == "diagnosis";
        // Interrupted by the user: the tester did not finish, whatever the checks say.
        let verdict = if matches!(record.sip.ended, Some(InternalEndReason::Abandoned)) {
            V::Error
        } else if checks.iter().filter(deciding).all(|c| c.passed) {
            V::Pass
        } else {
            V::Fail
        };
        let s = &record.sip;
        Call {
            sip: Sip {
                final_responses: s
                    .final_responses
                    .iter()
                    .map(|f| FinalResponse { status: f.status, reason: f.reason.clone() })
                    .collect(),
                provisional: s.provisional.clone(),
                invites_sent: s.invites_sent,
                invite_retransmissions: s.invite_retransmissions,
                authenticated: s.authenticated,
                local: record.local_sip.map(|a| a.to_string()),
                remote_target: s.remote_target.clone(),
                route_set: s.route_set.clone(),
                connected_ms: record.connected.map(CallTime::ms),
                ended_ms: record.ended.map(CallTime::ms),
                ended: s.ended.as_ref().map(EndReason::from),
                ended_description: s.ended.as_ref().map(crate::verdict::describe_end),
                messages: record.messages.iter().map(Message::from).collect(),
            },
            media,
            checks: checks.iter().map(Check::from).collect(),
            diagnosis: diagnosis.iter().map(Diagnosis::from).collect(),
            expected_diagnosis,
            notes: record.notes.clone(),
            findings: record.findings.to_vec(),
            tls: record.tls.as_ref().map(|t| Tls {
                verified: t.verified,
                server_name: t.server_name.clone(),
                roots: t.roots.clone(),
            }),
            ..Call::bare(
                record.call_id.clone(),
                record.test_id.clone(),
                record.target.clone(),
                record.transport.into(),
                verdict.into(),
                unix_ms(record.started),
            )
        }
    }

    /// A call that callprobe could not place at all (a tester error): it still
    /// gets its line in every output, with verdict `error` and the reason.
    pub fn not_run(name: Option<String>, tags: Vec<String>, spec: &PreparedCall, why: &str) -> Call {
        Call {
            name,
            tags,
            checks: vec![Check {
                name: "call_placed".into(),
                passed: false,
                detail: format!("callprobe could not place the call: {why}"),
            }],
            notes: vec![why.to_string()],
            ..Call::bare(
                spec.call_id.clone(),
                spec.test_id.clone(),
                spec.target_uri.clone(),
                spec.transport.into(),
                Verdict::Error,
                unix_ms(SystemTime::now()),
            )
        }
    }

    /// The call went over TLS without verifying the server's certificate.
    pub fn tls_unverified(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| !t.verified)
    }

    /// How TLS was checked, in one line (console and page); `None` without TLS.
    pub fn tls_line(&self) -> Option<String> {
        let t = self.tls.as_ref()?;
        Some(if t.verified {
            let roots = if t.roots == "system" { "the system's trusted roots".to_string() } else { t.roots.clone() };
            format!("TLS certificate of {} checked against {roots}", t.server_name)
        } else {
            format!("TLS certificate NOT verified (--tls-insecure): the server {} was not authenticated", t.server_name)
        })
    }

    /// PASS, FAIL, or XFAIL for a failed check that shows the failure the
    /// call was expected to have (`expect.diagnosis`).
    pub fn check_label(&self, c: &Check) -> &'static str {
        match (c.passed, self.expected_diagnosis.is_some() && c.name != "diagnosis") {
            (true, _) => "PASS",
            (false, true) => "XFAIL",
            (false, false) => "FAIL",
        }
    }
}

impl Media {
    /// What the RTP side measured, from the call's record and the analysis
    /// of its audio (`None`: not analysed), with the recordings written.
    pub fn new(record: &CallOutcome, analysis: Option<&MediaAnalysis>, recordings: Option<Recordings>) -> Media {
        let mut r = Media {
            local_rtp: record.local_rtp.map(|a| a.to_string()),
            error: record.media_error.clone(),
            rx_packets: record.rtp_packets_received,
            first_rtp_ms: record.first_rtp.map(CallTime::ms),
            recordings,
            ..Media::default()
        };
        if let Some(m) = &record.media {
            r.codec = Some(m.codec.to_string());
            r.remote_rtp = Some(m.remote_rtp.to_string());
            r.tx_packets = m.tx_packets;
            r.tx_late_packets = m.tx_late_packets;
            r.lost = m.rx.lost;
            r.duplicates = m.rx.duplicates;
            r.reordered = m.rx.reordered;
            r.jitter_ms = (m.rx.jitter_ms * 100.0).round() / 100.0;
            r.mos = Mos::of_received(m.codec, m.rx.expected, m.rx.lost, m.rx.jitter_ms);
            r.max_gap_ms = m.rx.max_arrival_gap.ms();
            r.ignored_packets = m.rx.other_source_packets + m.rx.other_ssrc_packets + m.other_payload_packets;
            r.rx_stream_restarts = m.rx_timeline_resets;
            r.rx_ssrc_changes = m.rx.ssrc_changes;
            r.rx_unexpected_source_packets = m.rx.unexpected_source_packets;
            r.rx_streams =
                m.rx.streams
                    .iter()
                    .enumerate()
                    .map(|(i, s)| RxStream {
                        ssrc: s.ssrc,
                        source: s.source.to_string(),
                        packets: s.packets,
                        tracked: i == 0,
                    })
                    .collect();
            r.played = m.played.map(|(start, end)| PlayedSpan { start_ms: start.ms(), end_ms: end.ms() });
            r.play_cut_short = m.play_started.is_some() && m.played.is_none();
            r.utterance_end_ms = m.utterance_end.map(CallTime::ms);
            r.dtmf = m.dtmf.clone();
            r.srtp = m.srtp.map(|s| Srtp {
                suite: s.suite.name().to_string(),
                protected_packets: s.protected,
                unprotected_packets: s.unprotected,
                auth_failures: s.auth_failures,
                replayed: s.replayed,
                malformed: s.malformed,
            });
        }
        if let Some(a) = analysis {
            r.first_audio_ms = a.first_audio.map(|d| d.whole_ms());
            r.response_latency_ms = a.response_latency.map(|d| d.whole_ms());
            r.talk_time_ms = Some(a.talk_time.whole_ms());
            r.longest_silence_ms = Some(a.longest_silence.whole_ms());
            r.speech_segments = a.speech_segments.iter().map(SpeechSegment::from).collect();
            r.tone = a.tone.as_ref().map(|t| Tone { frequency_hz: t.frequency_hz, present_ms: t.present.whole_ms() });
        }
        r
    }
}

/// Why `mos.sent` is null: callprobe has no report from the far end of what it received.
pub const MOS_SENT_NOTE: &str = "no RTCP receiver report from the far end: callprobe does not read RTCP \
     (and LiveKit SIP v1.0.0 sends none), so what the far end heard is unknown";

impl Mos {
    /// The estimate for a call whose far end sent `codec` RTP: `expected`
    /// packets (RFC 3550 A.3), `lost` of them, with `jitter_ms` of
    /// interarrival jitter. `None` when nothing was received (`expected` 0).
    /// The sent direction is left out ([`MOS_SENT_NOTE`]).
    pub fn of_received(codec: AudioCodec, expected: u64, lost: u64, jitter_ms: f64) -> Option<Mos> {
        if expected == 0 {
            return None;
        }
        let path = mos::PathQuality {
            loss_percent: lost.min(expected) as f64 * 100.0 / expected as f64,
            burst_ratio: 1.0,
            jitter_ms,
            network_delay_ms: None,
        };
        Some(Mos {
            model: mos::model_description(codec),
            received: MosEstimate::new(codec, mos::Concealment::G711AppendixI, &path),
            sent: None,
            sent_note: Some(MOS_SENT_NOTE.to_string()),
        })
    }
}

impl MosEstimate {
    fn new(codec: AudioCodec, concealment: mos::Concealment, path: &mos::PathQuality) -> MosEstimate {
        let estimate = mos::estimate(codec, concealment, path);
        let impairment = mos::codec_impairment(codec, concealment);
        let round = |x: f64, decimals: i32| {
            let scale = 10f64.powi(decimals);
            (x * scale).round() / scale
        };
        MosEstimate {
            r: round(estimate.r, 1),
            mos: round(estimate.mos, 2),
            loss_percent: round(path.loss_percent, 2),
            burst_ratio: path.burst_ratio,
            jitter_ms: round(path.jitter_ms, 2),
            delay_ms_assumed: round(estimate.delay_ms, 1),
            ie: impairment.ie,
            bpl: impairment.bpl,
        }
    }
}

impl Transport {
    /// `UDP` or `TCP`, as in a Via header.
    pub fn via_name(self) -> &'static str {
        crate::sip::Transport::from(self).via_name()
    }
}

// ------------------------------------------------------------ conversions

/// `flaky` is a pass to the exit code: the system under test passed in the end.
impl From<Verdict> for crate::verdict::Verdict {
    fn from(v: Verdict) -> crate::verdict::Verdict {
        match v {
            Verdict::Pass | Verdict::Flaky => crate::verdict::Verdict::Pass,
            Verdict::Fail => crate::verdict::Verdict::Fail,
            Verdict::Error => crate::verdict::Verdict::Error,
        }
    }
}

impl From<Transport> for crate::sip::Transport {
    fn from(t: Transport) -> crate::sip::Transport {
        match t {
            Transport::Udp => crate::sip::Transport::Udp,
            Transport::Tcp => crate::sip::Transport::Tcp,
            Transport::Tls => crate::sip::Transport::Tls,
        }
    }
}

impl From<&crate::audio::vad::SpeechSegment> for SpeechSegment {
    fn from(s: &crate::audio::vad::SpeechSegment) -> SpeechSegment {
        SpeechSegment { start_ms: s.start.whole_ms(), end_ms: s.end.whole_ms() }
    }
}

impl From<crate::verdict::Verdict> for Verdict {
    fn from(v: crate::verdict::Verdict) -> Verdict {
        match v {
            crate::verdict::Verdict::Pass => Verdict::Pass,
            crate::verdict::Verdict::Fail => Verdict::Fail,
            crate::verdict::Verdict::Error => Verdict::Error,
        }
    }
}

impl From<crate::sip::Transport> for Transport {
    fn from(t: crate::sip::Transport) -> Transport {
        match t {
            crate::sip::Transport::Udp => Transport::Udp,
            crate::sip::Transport::Tcp => Transport::Tcp,
            crate::sip::Transport::Tls => Transport::Tls,
        }
    }
}

impl From<&LoggedMessage> for Message {
    fn from(m: &LoggedMessage) -> Message {
        Message {
            t_ms: m.at.ms(),
            dir: match m.dir {
                crate::call::Direction::Out => Direction::Out,
                crate::call::Direction::In => Direction::In,
            },
            peer: m.peer.clone(),
            first_line: m.first_line.clone(),
            raw: m.raw.clone(),
        }
    }
}

impl From<&InternalEndReason> for EndReason {
    fn from(e: &InternalEndReason) -> EndReason {
        use InternalEndReason as E;
        match e {
            E::HungUp { bye_status } => EndReason::HungUp { bye_status: *bye_status },
            E::ByeTimedOut => EndReason::ByeTimedOut,
            E::FarEndHungUp => EndReason::FarEndHungUp,
            E::Rejected { status, reason } => EndReason::Rejected { status: *status, reason: reason.clone() },
            E::ChallengedWithoutCredentials { status } => EndReason::ChallengedWithoutCredentials { status: *status },
            E::CredentialsRejected { status, reason } => {
                EndReason::CredentialsRejected { status: *status, reason: reason.clone() }
            }
            E::UnanswerableChallenge { status, detail } => {
                EndReason::UnanswerableChallenge { status: *status, detail: detail.clone() }
            }
            E::NoResponse { waited_ms } => EndReason::NoResponse { waited_ms: *waited_ms },
            E::PortUnreachable { peer } => EndReason::PortUnreachable { peer: peer.clone() },
            E::Cancelled { last_provisional, waited_ms } => {
                EndReason::Cancelled { last_provisional: *last_provisional, waited_ms: *waited_ms }
            }
            E::Abandoned => EndReason::Abandoned,
            E::TransportClosed { during } => EndReason::TransportClosed { during: during.clone() },
            E::TransportError { detail } => EndReason::TransportError { detail: detail.clone() },
            E::TlsFailed { problem, detail } => EndReason::TlsFailed { problem: *problem, detail: detail.clone() },
            E::ProtocolError { detail } => EndReason::ProtocolError { detail: detail.clone() },
        }
    }
}

impl From<&crate::verdict::checks::Check> for Check {
    fn from(c: &crate::verdict::checks::Check) -> Check {
        Check { name: c.name.clone(), passed: c.passed, detail: c.detail.clone() }
    }
}

impl From<&crate::verdict::diagnose::Diagnosis> for Diagnosis {
    fn from(d: &crate::verdict::diagnose::Diagnosis) -> Diagnosis {
        Diagnosis {
            code: d.code.into(),
            summary: d.summary.into(),
            evidence: d.evidence.clone(),
            fix: d.fix.into(),
            reference: d.reference.into(),
        }
    }
}

impl From<&internal_lk::LiveKitObservation> for LiveKit {
    fn from(lk: &internal_lk::LiveKitObservation) -> LiveKit {
        LiveKit {
            url: lk.url.clone(),
            test_id: lk.test_id.clone(),
            call_id: lk.call_id.clone(),
            reference: TimeReference {
                kind: lk.reference.kind.to_string(),
                invite_cseq: lk.reference.invite_cseq,
                invite_t_ms: lk.reference.invite.ms(),
                unix_ms: lk.reference.unix_ms,
            },
            room: lk.room.clone(),
            room_sid: lk.room_sid.clone(),
            room_created_ms: lk.room_created.map(Offset::ms),
            room_found_ms: lk.room_found.map(Offset::ms),
            matched_by: lk.matched_by.map(|m| match m {
                InternalMatchedBy::TestId => MatchedBy::TestId,
                InternalMatchedBy::CallId => MatchedBy::CallId,
            }),
            sip_participant: lk.sip_participant.as_ref().map(|p| SipParticipant {
                identity: p.identity.clone(),
                joined_ms: p.joined.map(Offset::ms),
                left_observed_ms: p.left_observed.map(Offset::ms),
                attributes: p.attributes.clone(),
                call_status: p
                    .call_status
                    .iter()
                    .map(|s| CallStatus { status: s.status.clone(), observed_ms: s.observed.ms() })
                    .collect(),
            }),
            trunk_id: lk.trunk_id.clone(),
            rule_id: lk.rule_id.clone(),
            phone_number: lk.phone_number.clone(),
            trunk_phone_number: lk.trunk_phone_number.clone(),
            agents: lk.agents.iter().map(Agent::from).collect(),
            dispatches: lk.dispatches.iter().map(Dispatch::from).collect(),
            dispatch_rule: lk.dispatch_rule.as_ref().map(DispatchRule::from),
            watched_ms: lk.watched.ms(),
            polls: lk.polls,
            api_errors: lk.api_errors.clone(),
            gave_up: lk.gave_up.clone(),
        }
    }
}

impl From<&internal_lk::AgentReport> for Agent {
    fn from(a: &internal_lk::AgentReport) -> Agent {
        Agent {
            identity: a.identity.clone(),
            agent_name: a.agent_name.clone(),
            joined_ms: a.joined.ms(),
            joined_ms_source: match a.joined_source {
                internal_lk::JoinSource::Server => JoinSource::Server,
                internal_lk::JoinSource::Poll => JoinSource::Poll,
            },
            server_joined_ms: a.server_joined.map(Offset::ms),
            observed_ms: a.observed.ms(),
            left_observed_ms: a.left_observed.map(Offset::ms),
            attributes: a.attributes.clone(),
        }
    }
}

impl From<&internal_lk::DispatchReport> for Dispatch {
    fn from(d: &internal_lk::DispatchReport) -> Dispatch {
        Dispatch {
            id: d.id.clone(),
            agent_name: d.agent_name.clone(),
            created_ms: d.created.map(Offset::ms),
            jobs: d
                .jobs
                .iter()
                .map(|j| Job {
                    id: j.id.clone(),
                    status: j.status.to_string(),
                    error: j.error.clone(),
                    worker_id: j.worker_id.clone(),
                    participant_identity: j.participant_identity.clone(),
                    started_ms: j.started.map(Offset::ms),
                    ended_ms: j.ended.map(Offset::ms),
                })
                .collect(),
        }
    }
}

impl From<&crate::livekit::sip_config::DispatchRule> for DispatchRule {
    fn from(r: &crate::livekit::sip_config::DispatchRule) -> DispatchRule {
        DispatchRule {
            id: r.id.clone(),
            name: r.name.clone(),
            trunk_ids: r.trunk_ids.clone(),
            numbers: r.numbers.clone(),
            inbound_numbers: r.inbound_numbers.clone(),
            kind: r.kind.clone(),
            room: r.room.clone(),
            has_room_config: r.has_room_config,
            agents: r.agents.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every `sip.ended` kind, spelled as report.json has always spelled it.
    #[test]
    fn end_reasons_keep_their_spelling() {
        use InternalEndReason as E;
        let cases = [
            (E::HungUp { bye_status: 200 }, json!({"kind": "hung_up", "bye_status": 200})),
            (E::ByeTimedOut, json!({"kind": "bye_timed_out"})),
            (E::FarEndHungUp, json!({"kind": "far_end_hung_up"})),
            (
                E::Rejected { status: 486, reason: "Busy Here".into() },
                json!({"kind": "rejected", "status": 486, "reason": "Busy Here"}),
            ),
            (
                E::ChallengedWithoutCredentials { status: 407 },
                json!({"kind": "challenged_without_credentials", "status": 407}),
            ),
            (
                E::CredentialsRejected { status: 403, reason: "Forbidden".into() },
                json!({"kind": "credentials_rejected", "status": 403, "reason": "Forbidden"}),
            ),
            (
                E::UnanswerableChallenge { status: 401, detail: "algorithm AKAv1-MD5".into() },
                json!({"kind": "unanswerable_challenge", "status": 401, "detail": "algorithm AKAv1-MD5"}),
            ),
            (E::NoResponse { waited_ms: 32000 }, json!({"kind": "no_response", "waited_ms": 32000})),
            (
                E::PortUnreachable { peer: "127.0.0.1:9".into() },
                json!({"kind": "port_unreachable", "peer": "127.0.0.1:9"}),
            ),
            (
                E::Cancelled { last_provisional: None, waited_ms: 30000 },
                json!({"kind": "cancelled", "last_provisional": null, "waited_ms": 30000}),
            ),
            (E::Abandoned, json!({"kind": "abandoned"})),
            (
                E::TransportClosed { during: "the call".into() },
                json!({"kind": "transport_closed", "during": "the call"}),
            ),
            (
                E::TransportError { detail: "connection refused".into() },
                json!({"kind": "transport_error", "detail": "connection refused"}),
            ),
            (E::ProtocolError { detail: "no To tag".into() }, json!({"kind": "protocol_error", "detail": "no To tag"})),
        ];
        for (internal, want) in cases {
            let got = serde_json::to_value(EndReason::from(&internal)).expect("serialise");
            assert_eq!(got, want, "{internal:?}");
        }
    }

    #[test]
    fn enum_spellings_are_stable() {
        assert_eq!(
            serde_json::to_value([Verdict::Pass, Verdict::Fail, Verdict::Error, Verdict::Flaky]).expect("serialise"),
            json!(["pass", "fail", "error", "flaky"])
        );
        assert_eq!(serde_json::to_value([Transport::Udp, Transport::Tcp]).expect("serialise"), json!(["udp", "tcp"]));
        assert_eq!(serde_json::to_value([Direction::Out, Direction::In]).expect("serialise"), json!(["out", "in"]));
        assert_eq!(
            serde_json::to_value([MatchedBy::TestId, MatchedBy::CallId]).expect("serialise"),
            json!(["lktest.id", "sip.callIDFull"])
        );
        assert_eq!(
            serde_json::to_value([JoinSource::Server, JoinSource::Poll]).expect("serialise"),
            json!(["server", "poll"])
        );
    }

    /// The call's times become the report's milliseconds here: message times
    /// as logged (to 0.1 ms), the others as measured.
    #[test]
    fn call_times_become_report_milliseconds() {
        let mut record = crate::livekit::observation::tests::record_with_invites(
            std::time::Duration::from_secs(1_741_944_413),
            &[(0.2, 1), (1.1, 2)],
        );
        record.connected = Some(CallTime::from_ms(305.612_345));
        record.ended = Some(CallTime::from_ms(6020.5));
        let call = Call::new(&record, Media::default(), Vec::new(), Vec::new(), None);
        let json = serde_json::to_value(&call).expect("serialise");
        assert_eq!(json["started_unix_ms"], json!(1_741_944_413_000u64));
        assert_eq!(json["sip"]["connected_ms"], json!(305.612345));
        assert_eq!(json["sip"]["ended_ms"], json!(6020.5));
        let times: Vec<f64> = call.sip.messages.iter().map(|m| m.t_ms).collect();
        assert_eq!(times, [0.2, 1.1]);
    }

    /// What report.json says is what reading it back gives (`callprobe
    /// merge` rewrites the shards' reports from what it read): the golden
    /// file, field for field.
    #[test]
    fn a_report_reads_back_as_written() {
        let golden = include_str!("../../tests/golden/report.json");
        let report: Report = serde_json::from_str(golden).expect("the golden report.json reads");
        assert_eq!(report.calls.len(), 4);
        let again = serde_json::to_string_pretty(&report).expect("serialise");
        assert_eq!(again.trim_end(), golden.replace("\r\n", "\n").trim_end());
        let bad = golden.replacen("\"speaker\": \"agent\"", "\"speaker\": \"robot\"", 1);
        let e = serde_json::from_str::<Report>(&bad).expect_err("unknown speaker").to_string();
        assert!(e.contains("\"agent\" or \"us\""), "{e}");
    }

    /// A shard's report names the shard and each call's queue position;
    /// other reports have neither field.
    #[test]
    fn shard_and_position_are_written_only_when_known() {
        let mut call = Call::bare("c@cp".into(), "cp-1".into(), "sip:1@h".into(), Transport::Udp, Verdict::Pass, 1);
        let plain = serde_json::to_value(Report::new(vec![call.clone()])).expect("serialise");
        assert!(plain.get("shard").is_none() && plain["calls"][0].get("position").is_none(), "{plain}");
        call.position = Some(4);
        let mut report = Report::new(vec![call]);
        report.shard = Some(ShardRun { index: 1, count: 3, queue_length: 9, suite: "smoke".into() });
        let json = serde_json::to_value(&report).expect("serialise");
        assert_eq!(json["shard"], json!({"index": 1, "count": 3, "queue_length": 9, "suite": "smoke"}));
        assert_eq!(json["calls"][0]["position"], json!(4));
        assert_eq!(serde_json::from_value::<Report>(json).expect("reads back"), report);
    }

    /// `media.mos`: the received direction scored from the receive
    /// statistics, the sent direction null with the reason. 2 of 286 lost
    /// (0.699 %), 0.42 ms of jitter: Ie,eff = 95·0.699/(0.699 + 25.1) = 2.575,
    /// Id(40 ms) = 0.96, R = 93.2 − 0.96 − 2.575 = 89.665, MOS 4.33.
    #[test]
    fn mos_scores_what_we_received_and_explains_the_missing_sent_direction() {
        let mos = Mos::of_received(AudioCodec::Pcmu, 286, 2, 0.42).expect("packets were expected");
        let json = serde_json::to_value(&mos).expect("serialise");
        assert_eq!(
            json["received"],
            json!({"r": 89.7, "mos": 4.33, "loss_percent": 0.7, "burst_ratio": 1.0, "jitter_ms": 0.42,
                   "delay_ms_assumed": 40.0, "ie": 0.0, "bpl": 25.1})
        );
        assert_eq!(json["sent"], serde_json::Value::Null);
        assert!(json["sent_note"].as_str().is_some_and(|n| n.contains("RTCP receiver report")), "{json}");
        assert!(json["model"].as_str().is_some_and(|m| m.starts_with("ITU-T G.107 E-model")), "{json}");
        assert_eq!(serde_json::from_value::<Mos>(json).expect("reads back"), mos);
        assert_eq!(Mos::of_received(AudioCodec::Pcmu, 0, 0, 0.0), None, "nothing received, nothing to score");
        let g722 = Mos::of_received(AudioCodec::G722, 286, 2, 0.42).expect("packets were expected");
        assert_eq!(g722.received, mos.received);
        assert!(g722.model.contains("narrowband"), "{}", g722.model);
    }

    /// A report written before `media.mos` existed still reads (as null).
    #[test]
    fn media_without_mos_reads_as_null() {
        let mut json = serde_json::to_value(Media::default()).expect("serialise");
        json.as_object_mut().expect("an object").remove("mos");
        assert_eq!(serde_json::from_value::<Media>(json).expect("reads").mos, None);
    }

    /// A flaky call does not fail the run, but the run says so: `error` >
    /// `fail` > `flaky` > `pass`, and a flaky run passed.
    #[test]
    fn the_run_verdict_ranks_flaky_between_pass_and_fail() {
        let call = |v| Call::bare("c@cp".into(), "cp-1".into(), "sip:1@h".into(), Transport::Udp, v, 1);
        let run = |vs: &[Verdict]| Report::new(vs.iter().map(|v| call(*v)).collect()).verdict;
        assert_eq!(run(&[Verdict::Pass, Verdict::Flaky]), Verdict::Flaky);
        assert_eq!(run(&[Verdict::Flaky, Verdict::Fail, Verdict::Pass]), Verdict::Fail);
        assert_eq!(run(&[Verdict::Error, Verdict::Flaky]), Verdict::Error);
        assert_eq!(run(&[Verdict::Pass]), Verdict::Pass);
        assert!(Verdict::Flaky.passed() && Verdict::Pass.passed());
        assert!(!Verdict::Fail.passed() && !Verdict::Error.passed());
        assert_eq!(crate::verdict::Verdict::from(Verdict::Flaky), crate::verdict::Verdict::Pass);
    }

    /// `attempts` is written only for a call tried more than once, and reads back.
    #[test]
    fn attempts_are_written_only_for_retried_calls() {
        let mut call = Call::bare("c@cp".into(), "cp-2".into(), "sip:1@h".into(), Transport::Udp, Verdict::Flaky, 2);
        let once = serde_json::to_value(&Call { verdict: Verdict::Pass, ..call.clone() }).expect("serialise");
        assert!(once.get("attempts").is_none(), "{once}");
        call.attempts = vec![Attempt {
            attempt: 1,
            verdict: Verdict::Fail,
            started_unix_ms: 1,
            call_id: "b@cp".into(),
            test_id: "cp-1".into(),
            diagnosis: Vec::new(),
            failed_checks: vec![Check { name: "final_responses".into(), passed: false, detail: "got 503".into() }],
            folder: Some("001-x/attempt-1".into()),
        }];
        let json = serde_json::to_value(&call).expect("serialise");
        assert_eq!(json["verdict"], json!("flaky"));
        assert_eq!(json["attempts"][0]["folder"], json!("001-x/attempt-1"));
        assert_eq!(json["attempts"][0]["failed_checks"][0]["name"], json!("final_responses"));
        assert_eq!(serde_json::from_value::<Call>(json).expect("reads back"), call);
    }

    /// The top level starts with `schema_version`, and an empty run is still a whole file.
    #[test]
    fn schema_version_comes_first() {
        let report = Report::new(Vec::new());
        let text = serde_json::to_string(&report).expect("serialise");
        assert!(text.starts_with(&format!("{{\"schema_version\":{SCHEMA_VERSION},\"tool\":\"callprobe\"")), "{text}");
        assert_eq!(
            serde_json::to_value(&report).expect("serialise"),
            json!({"schema_version": 1, "tool": "callprobe", "version": env!("CARGO_PKG_VERSION"), "verdict": "pass", "calls": []})
        );
    }
}
