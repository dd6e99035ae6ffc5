//! The caller's side of digest authentication: which challenge of a 401/407
//! it answers, the rule "at most one authenticated retry per challenge"
//! (`stale=true` earns one fresh retry), when a final response means the
//! credentials were refused, and the (Proxy-)Authorization headers every
//! following request carries. The digest computation itself lives in
//! [`crate::sip::digest`].

use rand::rngs::StdRng;

use super::{random_token, Credentials, EndReason};
use crate::sip::digest::{self, RequestInfo};
use crate::sip::message::InResponse;

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

/// A challenge read from a 401/407 that we have the credentials to answer.
#[derive(Debug)]
pub(super) struct Challenged {
    kind: ChallengeKind,
    challenge: digest::Challenge,
}

/// Reads a final non-2xx to an INVITE: either a challenge we can answer, or
/// why the call ends (`authenticated`: that INVITE carried credentials).
pub(super) fn read_challenge(
    resp: &InResponse,
    authenticated: bool,
    have_credentials: bool,
) -> Result<Challenged, EndReason> {
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
            return Err(EndReason::CredentialsRejected { status: resp.status, reason });
        }
        return Err(EndReason::Rejected { status: resp.status, reason });
    };
    if !have_credentials {
        return Err(EndReason::ChallengedWithoutCredentials { status: resp.status });
    }
    match digest::strongest(&values) {
        Ok(challenge) => Ok(Challenged { kind, challenge }),
        Err(e) => Err(EndReason::UnanswerableChallenge { status: resp.status, detail: e.to_string() }),
    }
}

/// The challenges answered so far in this call.
#[derive(Debug, Default)]
pub(super) struct DigestAuth {
    answered: Vec<Answered>,
}

impl DigestAuth {
    /// Whether requests carry credentials (some challenge has been answered).
    pub(super) fn is_answering(&self) -> bool {
        !self.answered.is_empty()
    }

    /// Takes `challenged` on for the next INVITE, or says the credentials
    /// were refused (`resp` is the response that carried the challenge).
    ///
    /// One authenticated retry per call attempt: once we have sent
    /// credentials, another challenge means they were refused — unless it
    /// says the nonce was merely stale, which earns one fresh retry for the
    /// same challenge.
    pub(super) fn answer(
        &mut self,
        challenged: Challenged,
        authenticated: bool,
        resp: &InResponse,
    ) -> Result<(), EndReason> {
        let Challenged { kind, challenge } = challenged;
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
            _ => return Err(EndReason::CredentialsRejected { status: resp.status, reason: resp.reason.clone() }),
        }
        Ok(())
    }

    /// Authorization / Proxy-Authorization for every challenge answered so far.
    pub(super) fn headers(
        &mut self,
        credentials: Option<&Credentials>,
        rng: &mut StdRng,
        request: &RequestInfo,
    ) -> Vec<(&'static str, String)> {
        let Some(creds) = credentials else { return Vec::new() };
        let mut out = Vec::new();
        for a in &mut self.answered {
            let cnonce = random_token(rng, 16);
            a.nonce_count += 1;
            let auth =
                digest::authorize(&a.challenge, &creds.username, &creds.password, request, &cnonce, a.nonce_count);
            let name = match a.kind {
                ChallengeKind::Www => "Authorization",
                ChallengeKind::Proxy => "Proxy-Authorization",
            };
            out.push((name, auth.header_value()));
        }
        out
    }
}
