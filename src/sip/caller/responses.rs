//! The responses to the caller's requests: provisional and final responses
//! to each INVITE attempt (recorded in the outcome), the 2xx that sets up the
//! dialog and its end-to-end ACK, 2xx retransmissions and forked 2xx, a 2xx
//! that beats our CANCEL, a final that ends the call or earns an
//! authenticated retry, and the responses to CANCEL and BYE. Once the call
//! has ended, a response to an INVITE only reaches its transaction.

use std::time::Instant;

use super::{auth, CallEvent, Caller, Dialog, EndReason, FinalResponse, NonInviteRequest, Phase, SdpBody, Transmit};
use crate::sip::message::InResponse;
use crate::sip::transaction::{Disposition, NonInviteClient};
use crate::sip::Peer;

impl Caller {
    pub(super) fn on_response(&mut self, resp: InResponse, now: Instant) {
        let Some(branch) = resp.branch() else { return };
        match resp.common.cseq_method.as_str() {
            "INVITE" => self.on_invite_response(&branch, resp, now),
            // Whatever the phase: the CANCEL may have lost the race with a 2xx.
            "CANCEL" => {
                if let Some(cancel) = &mut self.cancel {
                    if cancel.branch == branch {
                        cancel.tx.on_response(resp.status, now);
                    }
                }
            }
            "BYE" => {
                // A BYE that released a late answer: its transaction takes it.
                if let Some(release) = self.releases.iter_mut().find(|r| r.branch == branch) {
                    release.tx.on_response(resp.status, now);
                    return;
                }
                let Phase::Terminating { bye, .. } = &mut self.phase else { return };
                if bye.branch != branch || bye.tx.on_response(resp.status, now) == Disposition::Absorbed {
                    return;
                }
                if resp.status >= 200 {
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
        if self.is_ended() && (200..300).contains(&resp.status) {
            // After the end (and after the transaction may have ended too):
            // the UA core still owes this 2xx an ACK, and the call a BYE.
            self.invites[idx].tx.on_response(resp.status, Vec::new, now);
            self.on_late_answer(&resp, idx, now);
            return;
        }
        let is_current = idx + 1 == self.invites.len();
        // Only a non-2xx final is ACKed by the transaction itself.
        let ack = if resp.status >= 300 { self.ack_for_non_2xx(&self.invites[idx], &resp) } else { Vec::new() };
        let attempt = &mut self.invites[idx];
        let disposition = attempt.tx.on_response(resp.status, || ack, now);
        let authenticated = attempt.authenticated;
        if disposition == Disposition::Absorbed {
            return;
        }
        if self.is_ended() {
            // Over for good: the transaction has seen the response, nothing else does.
            return;
        }
        if resp.status >= 200 && resp.status < 300 {
            // A 2xx (also a retransmission, or one for an older attempt):
            // ACK it end-to-end; a second one only gets the same ACK again.
            if let Some(d) = self.dialog() {
                if resp.to_tag().is_none_or(|tag| tag == d.remote_tag) {
                    let ack = Transmit { to: d.ack_to.clone(), bytes: d.ack.clone() };
                    self.outbox.push_back(ack);
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
            // The CANCEL the deadline wanted can go now (RFC 3261 9.1).
            if let Phase::Inviting { cancel_wanted, .. } = &mut self.phase {
                if std::mem::take(cancel_wanted) {
                    self.send_cancel(now);
                }
            }
            return;
        }
        if matches!(self.phase, Phase::Cancelling { .. }) {
            self.end_cancelled(now);
            return;
        }
        self.on_final_failure(resp, authenticated, now);
    }

    fn record_response(&mut self, resp: &InResponse, authenticated: bool) {
        if resp.status < 200 {
            self.outcome.provisional.push(resp.status);
            if !resp.common.body.is_empty() {
                self.outcome.early_sdp = Some(SdpBody(resp.common.body.clone()));
            }
        } else {
            self.outcome.final_responses.push(FinalResponse { status: resp.status, reason: resp.reason.clone() });
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
        self.outcome.to_tag = Some(remote_tag.clone());
        self.outcome.remote_target = Some(remote_target.clone());
        self.outcome.route_set = route_set.clone();
        self.outcome.authenticated = authenticated;
        self.outcome.answer_sdp = (!resp.common.body.is_empty()).then(|| SdpBody(resp.common.body.clone()));
        // A 2xx that beat our CANCEL came after the deadline: it is recorded,
        // and the checks do not count it as answered in time.
        let beat_our_cancel = matches!(self.phase, Phase::Cancelling { .. });
        self.outcome.answered_after_deadline = beat_our_cancel && !self.abandoned;
        if self.outcome.answered_after_deadline {
            let at_ms = (now - self.started_at).as_millis();
            self.outcome.findings.add(
                "late_2xx_answered_and_hung_up",
                false,
                format!(
                    "{} {} arrived at {at_ms} ms, after our CANCEL (--timeout {} ms): ACKed and hung up with BYE",
                    resp.status,
                    resp.reason,
                    self.cfg.invite_timeout.as_millis()
                ),
            );
        }
        // The far end already sent BYE for this dialog (before our ACK).
        let bye_came_first = self.early_bye_tag.as_deref() == Some(remote_tag.as_str());
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
        self.events.push_back(CallEvent::Connected);
        // CANCEL lost the race with the 2xx (or the user stopped): hang up at once.
        // Our CANCEL's transaction (`self.cancel`) runs on beside the new phase.
        let hang_up_now = beat_our_cancel || self.abandoned || bye_came_first;
        let hangup_at = if hang_up_now { now } else { now + self.cfg.hangup_after };
        self.phase = Phase::Confirmed { dialog, hangup_at };
        if hang_up_now {
            self.send_bye(now);
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
        self.outcome.forked_answers_released += 1;
    }

    /// A 2xx after the call ended (Timer B fired, we gave up after our
    /// CANCEL, or the call ended otherwise): the far end now holds a dialog
    /// we do not want. It gets an ACK and a BYE (with its own transaction,
    /// run during the linger); a retransmission of it gets the same ACK. A
    /// retransmitted 2xx of the dialog that ended gets that dialog's ACK.
    fn on_late_answer(&mut self, resp: &InResponse, idx: usize, now: Instant) {
        let Some(tag) = resp.to_tag() else { return };
        let old_ack =
            self.ended_dialog.as_ref().filter(|d| d.remote_tag == tag).map(|d| (d.ack_to.clone(), d.ack.clone()));
        if let Some((to, bytes)) = old_ack {
            self.outbox.push_back(Transmit { to, bytes });
            return;
        }
        if let Some((_, ack)) = self.late_acks.iter().find(|(t, _)| *t == tag) {
            self.outbox.push_back(ack.clone());
            return;
        }
        if self.late_acks.len() >= super::MAX_LATE_RELEASES {
            return;
        }
        let mut route_set = resp.record_route();
        route_set.reverse();
        let late = Dialog {
            remote_tag: tag.clone(),
            remote_target: resp.contact_uri().unwrap_or_else(|| self.request_uri.clone()),
            route_set,
            ack: Vec::new(),
            ack_to: Peer::Hop(self.first_hop.clone()),
        };
        let cseq = self.invites[idx].cseq;
        let credentials = self.invites[idx].credentials.clone();
        let (ack_branch, bye_branch) = (self.new_branch(), self.new_branch());
        let Ok((bytes, to)) = self.in_dialog_request(&late, "ACK", cseq, &ack_branch, credentials, b"") else { return };
        let ack = Transmit { to, bytes };
        self.outbox.push_back(ack.clone());
        self.late_acks.push((tag.clone(), ack));
        self.local_cseq += 1;
        if let Ok((bytes, to)) = self.in_dialog_request(&late, "BYE", self.local_cseq, &bye_branch, Vec::new(), b"") {
            let tx = NonInviteClient::start(bytes, self.cfg.transport.is_reliable(), self.cfg.timers, now);
            self.releases.push(NonInviteRequest { branch: bye_branch, to, tx });
        }
        self.outcome.late_answers_released += 1;
        let ended_ms = self.ended_at.map_or(0, |e| (e - self.started_at).as_millis());
        let why = self.outcome.ended.as_ref().map_or("ended".to_string(), crate::verdict::describe_end);
        self.outcome.findings.add(
            "late_2xx_answered_and_hung_up",
            false,
            format!(
                "{} {} (To tag {tag}) arrived at {} ms, after the call had ended at {ended_ms} ms ({why}): ACKed and hung up with BYE",
                resp.status,
                resp.reason,
                (now - self.started_at).as_millis()
            ),
        );
        // Listen long enough for the BYE's answer, within the overall cap.
        if let Some(ended) = self.ended_at {
            let until = (now + super::LINGER).min(ended + super::MAX_LINGER);
            self.linger_until = Some(self.linger_until.map_or(until, |u| u.max(until)));
        }
    }

    /// A final non-2xx to the current INVITE: answer a challenge with one
    /// more INVITE (see [`super::auth`]), or end the call.
    fn on_final_failure(&mut self, resp: InResponse, authenticated: bool, now: Instant) {
        let challenged = match auth::read_challenge(&resp, authenticated, self.cfg.credentials.is_some()) {
            Ok(c) => c,
            Err(reason) => return self.end(reason),
        };
        if self.abandoned {
            // The user asked to stop: never send another INVITE.
            self.end(EndReason::Abandoned);
            return;
        }
        if let Err(reason) = self.auth.answer(challenged, authenticated, &resp) {
            self.end(reason);
            return;
        }
        if let Err(e) = self.send_invite(now) {
            self.end(EndReason::ProtocolError { detail: format!("cannot build INVITE: {e}") });
        }
    }
}
