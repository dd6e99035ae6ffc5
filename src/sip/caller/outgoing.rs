//! Every message the caller builds: the INVITE (and its authenticated
//! retries), the ACK for a non-2xx final, CANCEL, in-dialog requests (the ACK
//! for a 2xx, BYE) routed through the route set (RFC 3261 12.2.1.1), and the
//! responses to the far end's requests. Sending a CANCEL or BYE starts its
//! transaction and moves the call to the matching phase.

use std::net::SocketAddr;
use std::time::Instant;

use super::{Caller, Dialog, EndReason, InviteAttempt, NonInviteRequest, Phase, Transmit};
use crate::sip::digest::RequestInfo;
use crate::sip::message::{self, InRequest, InResponse, Outgoing, ParseError, Start};
use crate::sip::transaction::{InviteClient, NonInviteClient};
use crate::sip::{HostPort, Peer, Transport};

impl Caller {
    pub(super) fn send_invite(&mut self, now: Instant) -> Result<(), ParseError> {
        self.local_cseq += 1;
        let cseq = self.local_cseq;
        let branch = self.new_branch();
        let authenticated = self.auth.is_answering();
        let request = RequestInfo { method: "INVITE", uri: &self.request_uri, body: &self.cfg.sdp };
        let auth = self.auth.headers(self.cfg.credentials.as_ref(), &mut self.rng, &request);
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
        self.outcome.invites_sent += 1;
        // Each INVITE gets the whole `invite_timeout` (a wanted CANCEL stays wanted).
        if let Phase::Inviting { deadline, .. } = &mut self.phase {
            *deadline = Some(now + self.cfg.invite_timeout);
        }
        Ok(())
    }

    /// ACK for a non-2xx final: same branch, To with the response's tag (RFC 3261 17.1.1.3).
    pub(super) fn ack_for_non_2xx(&self, attempt: &InviteAttempt, resp: &InResponse) -> Vec<u8> {
        let mut headers = self.common_headers(&attempt.branch, resp.to_tag().as_deref(), attempt.cseq, "ACK");
        headers.retain(|(n, _)| *n != "User-Agent");
        Outgoing { start: Start::Request { method: "ACK", uri: &self.request_uri }, headers, body: b"" }
            .render()
            .unwrap_or_default()
    }

    pub(super) fn send_cancel(&mut self, now: Instant) {
        let Some(attempt) = self.invites.last() else { return };
        // CANCEL: same branch, Request-URI, Call-ID, From, To and CSeq number as the INVITE.
        let mut headers = self.common_headers(&attempt.branch.clone(), None, attempt.cseq, "CANCEL");
        headers.retain(|(n, _)| *n != "User-Agent");
        let rendered =
            Outgoing { start: Start::Request { method: "CANCEL", uri: &self.request_uri }, headers, body: b"" }
                .render();
        let Ok(bytes) = rendered else { return };
        let branch = attempt.branch.clone();
        let tx = NonInviteClient::start(bytes, self.cfg.transport.is_reliable(), self.cfg.timers, now);
        self.cancel = Some(NonInviteRequest { branch, to: Peer::Hop(self.first_hop.clone()), tx });
        // Give the far end 64·T1 to answer the INVITE with 487 (RFC 3261
        // 9.1), capped: one that has not answered in CANCEL_WAIT will not, and
        // the linger after the end still catches a late 2xx.
        self.phase = Phase::Cancelling { give_up: now + (64 * self.cfg.timers.t1).min(super::CANCEL_WAIT) };
    }

    /// BYE for the confirmed dialog: Confirmed → Terminating (nothing in other phases).
    pub(super) fn send_bye(&mut self, now: Instant) {
        let Phase::Confirmed { dialog, .. } = &self.phase else { return };
        let dialog = dialog.clone();
        self.local_cseq += 1;
        let branch = self.new_branch();
        let uri = dialog_request_uri(&dialog);
        let request = RequestInfo { method: "BYE", uri: &uri, body: b"" };
        let auth = self.auth.headers(self.cfg.credentials.as_ref(), &mut self.rng, &request);
        match self.in_dialog_request(&dialog, "BYE", self.local_cseq, &branch, auth, b"") {
            Ok((bytes, to)) => {
                let tx = NonInviteClient::start(bytes, self.cfg.transport.is_reliable(), self.cfg.timers, now);
                self.phase = Phase::Terminating { dialog, bye: NonInviteRequest { branch, to, tx } };
            }
            Err(e) => self.end(EndReason::ProtocolError { detail: format!("cannot build BYE: {e}") }),
        }
    }

    /// Builds an in-dialog request through the route set (RFC 3261 12.2.1.1)
    /// and says where it goes.
    pub(super) fn in_dialog_request(
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
        // RFC 3261 section 8.1.1.8 / RFC 5630 section 3.1.3: a sips: Request-URI
        // needs a sips: Contact; otherwise TLS is said with ;transport=tls.
        let sips = self.cfg.target_uri.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("sips:"));
        match self.cfg.transport {
            Transport::Tls if sips => format!("<sips:{}@{}>", user, self.cfg.local_addr),
            Transport::Udp => format!("<sip:{}@{}>", user, self.cfg.local_addr),
            t => format!("<sip:{}@{};transport={}>", user, self.cfg.local_addr, t.param()),
        }
    }

    pub(super) fn respond(&mut self, req: &InRequest, from: SocketAddr, status: u16, reason: &str, with_sdp: bool) {
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
