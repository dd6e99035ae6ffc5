//! Turning what a call did into a verdict: the checks the user asked for
//! ([`checks`]) and, when one fails, which known failure it looks like
//! ([`diagnose`]); how the call's audio would sound, estimated from its RTP
//! statistics ([`mos`]).

pub mod checks;
pub mod conversation;
pub mod diagnose;
pub mod mos;
pub mod slo;

use crate::sip::caller::EndReason;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    Error,
}

impl Verdict {
    /// The worst of two verdicts (error > fail > pass).
    pub fn worst(self, other: Verdict) -> Verdict {
        let rank = |v: Verdict| match v {
            Verdict::Pass => 0,
            Verdict::Fail => 1,
            Verdict::Error => 2,
        };
        if rank(other) > rank(self) {
            other
        } else {
            self
        }
    }
}

/// How a call ended, in words for people.
pub fn describe_end(reason: &EndReason) -> String {
    match reason {
        EndReason::HungUp { bye_status } => format!("we hung up (BYE answered {bye_status})"),
        EndReason::ByeTimedOut => "our BYE was never answered (Timer F)".into(),
        EndReason::FarEndHungUp => "the far end hung up (BYE)".into(),
        EndReason::Rejected { status, reason } => format!("rejected with {status} {reason}"),
        EndReason::ChallengedWithoutCredentials { status } => {
            format!("challenged with {status}; no credentials were given, so the call stopped there")
        }
        EndReason::CredentialsRejected { status, reason } => {
            format!("credentials rejected: {status} {reason} after we answered the challenge")
        }
        EndReason::UnanswerableChallenge { status, detail } => {
            format!("cannot answer the {status} challenge: {detail}")
        }
        EndReason::NoResponse { waited_ms } => {
            format!("no response at all to INVITE within {:.1} s (Timer B)", *waited_ms as f64 / 1000.0)
        }
        EndReason::PortUnreachable { peer } => {
            format!("nothing listens on {peer}/udp: wrong host or port, or the SIP service is down")
        }
        EndReason::Cancelled { last_provisional, waited_ms } => format!(
            "no final response within {:.1} s (last provisional {}); we sent CANCEL",
            *waited_ms as f64 / 1000.0,
            last_provisional.map_or("none".to_string(), |s| s.to_string())
        ),
        EndReason::Abandoned => "abandoned by the user".into(),
        EndReason::TransportClosed { during } => format!("the connection closed during {during}"),
        EndReason::TransportError { detail } => format!("transport error: {detail}"),
        EndReason::TlsFailed { detail, .. } => format!("TLS failed: {detail}"),
        EndReason::ProtocolError { detail } => format!("protocol error: {detail}"),
    }
}
