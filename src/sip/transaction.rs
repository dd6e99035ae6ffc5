//! RFC 3261 client transactions (section 17.1), sans-I/O.
//!
//! Owns retransmission and timeout timers for the requests we send: the
//! INVITE client transaction (Timers A, B, D; RFC 6026 "Accepted" state,
//! Timer M) and the non-INVITE client transaction used for BYE and CANCEL
//! (Timers E, F, K). Each is fed responses and the current time, and polled
//! for bytes to (re)send, its next deadline and whether it timed out. Over a
//! reliable transport (TCP) nothing is retransmitted and Timers D/K are zero.
//!
//! Hand-written because a tester needs to see and record every response and
//! every retransmission; general-purpose stacks hide the 407 inside their
//! dialog layer (rsipstack's dialog state stream, for one, never shows it;
//! only its bare client transactions do).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// RFC 3261 timer base values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig { t1: Duration::from_millis(500), t2: Duration::from_secs(4), t4: Duration::from_secs(5) }
    }
}

/// What a transaction tells its user after a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// New information: hand it to the call logic.
    PassUp,
    /// A retransmission the transaction already handled (e.g. re-sent the ACK).
    Absorbed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteState {
    Calling,
    Proceeding,
    /// A 2xx arrived (RFC 6026): further 2xx are passed up so the caller re-ACKs.
    Accepted,
    /// A non-2xx final arrived and was ACKed; retransmissions are re-ACKed.
    Completed,
    Terminated,
}

/// What both client transactions keep for sending: the request, how it is
/// re-sent, and what waits to go out. `Debug` shows sizes, not bytes: an
/// INVITE's SDP may carry our SRTP key.
struct Sending {
    request: Vec<u8>,
    reliable: bool,
    timers: TimerConfig,
    /// Next retransmission (Timer A or E) and its current interval; `None`
    /// over a reliable transport.
    retransmit: Option<(Instant, Duration)>,
    outbox: VecDeque<Vec<u8>>,
}

impl std::fmt::Debug for Sending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sending")
            .field("request_bytes", &self.request.len())
            .field("reliable", &self.reliable)
            .field("retransmit", &self.retransmit)
            .field("outbox", &self.outbox.len())
            .finish_non_exhaustive()
    }
}

impl Sending {
    /// The request is queued for sending at once.
    fn new(request: Vec<u8>, reliable: bool, timers: TimerConfig, now: Instant) -> Self {
        Sending {
            outbox: VecDeque::from([request.clone()]),
            request,
            reliable,
            retransmit: (!reliable).then(|| (now + timers.t1, timers.t1)),
            timers,
        }
    }

    /// When the retransmission timer has fired by `now`: queues the request
    /// again, re-arms the timer with `next(interval)` and returns true.
    fn resend_if_due(&mut self, now: Instant, next: impl FnOnce(Duration) -> Duration) -> bool {
        let Some((at, interval)) = self.retransmit.filter(|&(at, _)| now >= at) else { return false };
        self.outbox.push_back(self.request.clone());
        let next = next(interval);
        self.retransmit = Some((at + next, next));
        true
    }
}

/// INVITE client transaction.
#[derive(Debug)]
pub struct InviteClient {
    /// The INVITE; its retransmissions are Timer A.
    send: Sending,
    state: InviteState,
    /// Give-up deadline while Calling (Timer B).
    timer_b: Option<Instant>,
    /// End of Completed (Timer D) or Accepted (Timer M).
    linger_until: Option<Instant>,
    ack_for_final: Option<Vec<u8>>,
    timed_out: bool,
    retransmissions: u32,
}

impl InviteClient {
    /// Starts the transaction: the request is queued for sending at once.
    /// `timer_b` is normally 64·T1 (32 s); callprobe's `--timeout` sets it.
    pub fn start(request: Vec<u8>, reliable: bool, timers: TimerConfig, timer_b: Duration, now: Instant) -> Self {
        InviteClient {
            send: Sending::new(request, reliable, timers, now),
            state: InviteState::Calling,
            timer_b: Some(now + timer_b),
            linger_until: None,
            ack_for_final: None,
            timed_out: false,
            retransmissions: 0,
        }
    }

    pub fn state(&self) -> InviteState {
        self.state
    }

    /// Timer B fired with no response at all.
    pub fn timed_out(&self) -> bool {
        self.timed_out
    }

    pub fn retransmissions(&self) -> u32 {
        self.retransmissions
    }

    /// Feeds a response that matched this transaction. For a non-2xx final,
    /// `ack` is the ACK to send (same branch, RFC 3261 17.1.1.3); it is
    /// re-sent for every retransmission of that final.
    pub fn on_response(&mut self, status: u16, ack: impl FnOnce() -> Vec<u8>, now: Instant) -> Disposition {
        match (self.state, status) {
            (InviteState::Calling | InviteState::Proceeding, 100..=199) => {
                self.state = InviteState::Proceeding;
                self.send.retransmit = None;
                self.timer_b = None;
                Disposition::PassUp
            }
            (InviteState::Calling | InviteState::Proceeding, 200..=299) => {
                self.state = InviteState::Accepted;
                self.send.retransmit = None;
                self.timer_b = None;
                self.linger_until = Some(now + 64 * self.send.timers.t1);
                Disposition::PassUp
            }
            (InviteState::Calling | InviteState::Proceeding, _) => {
                self.state = InviteState::Completed;
                self.send.retransmit = None;
                self.timer_b = None;
                // An ACK the caller could not build is empty: send nothing
                // rather than an empty datagram (found by the sip_message
                // fuzz target: a far end's To tag with a line break).
                let ack = Some(ack()).filter(|a| !a.is_empty());
                if let Some(ack) = &ack {
                    self.send.outbox.push_back(ack.clone());
                }
                self.ack_for_final = ack;
                let d = if self.send.reliable { Duration::ZERO } else { Duration::from_secs(32) };
                self.linger_until = Some(now + d);
                Disposition::PassUp
            }
            (InviteState::Accepted, 200..=299) => Disposition::PassUp,
            (InviteState::Completed, 300..=699) => {
                if let Some(ack) = &self.ack_for_final {
                    self.send.outbox.push_back(ack.clone());
                }
                Disposition::Absorbed
            }
            _ => Disposition::Absorbed,
        }
    }

    /// The call is over: stop re-sending the INVITE and drop Timer B. A
    /// transaction that has a final keeps re-ACKing its retransmissions.
    pub fn stop_retransmitting(&mut self) {
        self.send.retransmit = None;
        self.timer_b = None;
    }

    /// The transport reported an error: the transaction is over (RFC 3261 17.1.4).
    pub fn on_transport_error(&mut self) {
        self.state = InviteState::Terminated;
        self.send.retransmit = None;
        self.timer_b = None;
        self.linger_until = None;
    }

    /// Advances timers to `now`.
    pub fn on_timeout(&mut self, now: Instant) {
        if due(self.timer_b, now) {
            self.timed_out = true;
            self.on_transport_error();
            return;
        }
        if self.send.resend_if_due(now, |interval| interval * 2) {
            self.retransmissions += 1;
        }
        if take_due(&mut self.linger_until, now) {
            self.state = InviteState::Terminated;
        }
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        earliest(self.send.retransmit, self.timer_b, self.linger_until)
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.send.outbox.pop_front()
    }
}

/// Whether the timer `deadline` (if set) has fired by `now`.
fn due(deadline: Option<Instant>, now: Instant) -> bool {
    deadline.is_some_and(|at| now >= at)
}

/// [`due`], and then the timer is cleared.
fn take_due(deadline: &mut Option<Instant>, now: Instant) -> bool {
    let fired = due(*deadline, now);
    if fired {
        *deadline = None;
    }
    fired
}

/// The earliest of a transaction's retransmit timer and its two deadlines.
fn earliest(retransmit: Option<(Instant, Duration)>, a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    [retransmit.map(|(at, _)| at), a, b].into_iter().flatten().min()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// Non-INVITE client transaction (BYE, CANCEL).
#[derive(Debug)]
pub struct NonInviteClient {
    /// The request; its retransmissions are Timer E.
    send: Sending,
    state: NonInviteState,
    timer_f: Option<Instant>,
    timer_k: Option<Instant>,
    timed_out: bool,
    final_status: Option<u16>,
}

impl NonInviteClient {
    pub fn start(request: Vec<u8>, reliable: bool, timers: TimerConfig, now: Instant) -> Self {
        NonInviteClient {
            send: Sending::new(request, reliable, timers, now),
            state: NonInviteState::Trying,
            timer_f: Some(now + 64 * timers.t1),
            timer_k: None,
            timed_out: false,
            final_status: None,
        }
    }

    pub fn state(&self) -> NonInviteState {
        self.state
    }

    pub fn timed_out(&self) -> bool {
        self.timed_out
    }

    /// The final status, once one arrived.
    pub fn final_status(&self) -> Option<u16> {
        self.final_status
    }

    pub fn on_response(&mut self, status: u16, now: Instant) -> Disposition {
        match (self.state, status) {
            (NonInviteState::Trying | NonInviteState::Proceeding, 100..=199) => {
                self.state = NonInviteState::Proceeding;
                Disposition::PassUp
            }
            (NonInviteState::Trying | NonInviteState::Proceeding, _) => {
                self.state = NonInviteState::Completed;
                self.final_status = Some(status);
                self.send.retransmit = None;
                self.timer_f = None;
                let k = if self.send.reliable { Duration::ZERO } else { self.send.timers.t4 };
                self.timer_k = Some(now + k);
                Disposition::PassUp
            }
            _ => Disposition::Absorbed,
        }
    }

    pub fn next_timeout(&self) -> Option<Instant> {
        earliest(self.send.retransmit, self.timer_f, self.timer_k)
    }

    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.send.outbox.pop_front()
    }

    pub fn on_timeout(&mut self, now: Instant) {
        if take_due(&mut self.timer_f, now) {
            self.timed_out = true;
            self.state = NonInviteState::Terminated;
            self.send.retransmit = None;
            return;
        }
        // Trying: double up to T2. Proceeding: every T2.
        let (state, t2) = (self.state, self.send.timers.t2);
        self.send.resend_if_due(now, |interval| match state {
            NonInviteState::Trying => (interval * 2).min(t2),
            _ => t2,
        });
        if take_due(&mut self.timer_k, now) {
            self.state = NonInviteState::Terminated;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// What [`drive`] needs of a client transaction.
    trait Timed {
        fn poll_transmit(&mut self) -> Option<Vec<u8>>;
        fn next_timeout(&self) -> Option<Instant>;
        fn on_timeout(&mut self, now: Instant);
    }

    macro_rules! timed {
        ($($t:ty),*) => {$(
            impl Timed for $t {
                fn poll_transmit(&mut self) -> Option<Vec<u8>> {
                    <$t>::poll_transmit(self)
                }
                fn next_timeout(&self) -> Option<Instant> {
                    <$t>::next_timeout(self)
                }
                fn on_timeout(&mut self, now: Instant) {
                    <$t>::on_timeout(self, now)
                }
            }
        )*};
    }
    timed!(InviteClient, NonInviteClient);

    /// Runs the transaction on simulated time until `end` (or until it
    /// waits for nothing), returning the offsets (ms) at which something was
    /// transmitted and when its last timer fired.
    fn drive(tx: &mut impl Timed, t0: Instant, end: Duration) -> (Vec<u128>, Instant) {
        let mut sent = Vec::new();
        let mut now = t0;
        loop {
            while tx.poll_transmit().is_some() {
                sent.push((now - t0).as_millis());
            }
            match tx.next_timeout() {
                Some(at) if at - t0 <= end => {
                    now = at;
                    tx.on_timeout(now);
                }
                _ => return (sent, now),
            }
        }
    }

    /// An INVITE transaction started at `t0` with the default timers and Timer B.
    fn invite(reliable: bool, t0: Instant) -> InviteClient {
        InviteClient::start(b"INVITE".to_vec(), reliable, TimerConfig::default(), ms(32_000), t0)
    }

    /// [`invite`] over UDP, with the INVITE taken off for sending.
    fn invite_sent(t0: Instant) -> InviteClient {
        let mut tx = invite(false, t0);
        tx.poll_transmit();
        tx
    }

    /// [`invite_sent`] now, answered `status` (passed up) `after` that;
    /// also returns when it started.
    fn invite_answered(status: u16, after: Duration) -> (InviteClient, Instant) {
        let t0 = Instant::now();
        let mut tx = invite_sent(t0);
        assert_eq!(tx.on_response(status, Vec::new, t0 + after), Disposition::PassUp);
        (tx, t0)
    }

    /// [`drive`], the offsets only.
    fn drive_invite(tx: &mut InviteClient, t0: Instant, end: Duration) -> Vec<u128> {
        drive(tx, t0, end).0
    }

    /// Fuzz find (sip_message): an ACK that could not be built (empty) was
    /// sent as an empty datagram, again for each retransmitted final.
    #[test]
    fn an_empty_ack_is_never_sent() {
        let t0 = Instant::now();
        let mut tx = invite_sent(t0);
        assert_eq!(tx.on_response(486, Vec::new, t0), Disposition::PassUp);
        assert_eq!(tx.poll_transmit(), None);
        assert_eq!(tx.on_response(486, Vec::new, t0 + ms(10)), Disposition::Absorbed);
        assert_eq!(tx.poll_transmit(), None);
        assert_eq!(tx.state(), InviteState::Completed);
    }

    #[test]
    fn invite_retransmits_doubling_until_timer_b() {
        let t0 = Instant::now();
        let mut tx = invite(false, t0);
        let sent = drive_invite(&mut tx, t0, ms(40_000));
        // A doubles without the T2 cap: 0, .5, 1.5, 3.5, 7.5, 15.5, 31.5 s; B at 32 s.
        assert_eq!(sent, vec![0, 500, 1500, 3500, 7500, 15500, 31500]);
        assert!(tx.timed_out());
        assert_eq!(tx.state(), InviteState::Terminated);
        assert_eq!(tx.retransmissions(), 6);
    }

    #[test]
    fn invite_over_tcp_never_retransmits() {
        let t0 = Instant::now();
        let mut tx = invite(true, t0);
        assert_eq!(drive_invite(&mut tx, t0, ms(40_000)), vec![0]);
        assert!(tx.timed_out());
    }

    #[test]
    fn provisional_stops_retransmission_and_timer_b() {
        let (tx, _) = invite_answered(100, ms(100));
        assert_eq!(tx.state(), InviteState::Proceeding);
        assert_eq!(tx.next_timeout(), None, "no timers while Proceeding: the caller decides when to CANCEL");
    }

    #[test]
    fn non_2xx_final_is_acked_and_reacked_on_retransmission() {
        let t0 = Instant::now();
        let mut tx = invite_sent(t0);
        assert_eq!(tx.on_response(407, || b"ACK".to_vec(), t0 + ms(10)), Disposition::PassUp);
        assert_eq!(tx.poll_transmit().as_deref(), Some(&b"ACK"[..]));
        assert_eq!(tx.state(), InviteState::Completed);
        assert_eq!(tx.on_response(407, || unreachable!(), t0 + ms(600)), Disposition::Absorbed);
        assert_eq!(tx.poll_transmit().as_deref(), Some(&b"ACK"[..]));
        // Timer D: 32 s over UDP.
        assert_eq!(tx.next_timeout(), Some(t0 + ms(32_010)));
        tx.on_timeout(t0 + ms(32_010));
        assert_eq!(tx.state(), InviteState::Terminated);
    }

    #[test]
    fn timer_d_is_zero_over_tcp() {
        let t0 = Instant::now();
        let mut tx = invite(true, t0);
        tx.on_response(486, || b"ACK".to_vec(), t0 + ms(5));
        assert_eq!(tx.next_timeout(), Some(t0 + ms(5)));
    }

    #[test]
    fn retransmitted_2xx_is_passed_up_for_a_new_ack() {
        let (mut tx, t0) = invite_answered(200, ms(50));
        assert_eq!(tx.state(), InviteState::Accepted);
        assert_eq!(tx.on_response(200, Vec::new, t0 + ms(550)), Disposition::PassUp);
        assert!(tx.poll_transmit().is_none(), "the transaction never ACKs a 2xx itself");
        tx.on_timeout(t0 + ms(50) + ms(32_000));
        assert_eq!(tx.state(), InviteState::Terminated);
    }

    #[test]
    fn non_invite_schedule_caps_at_t2_and_times_out_with_timer_f() {
        let t0 = Instant::now();
        let mut tx = NonInviteClient::start(b"BYE".to_vec(), false, TimerConfig::default(), t0);
        let (sent, now) = drive(&mut tx, t0, Duration::MAX);
        assert_eq!(sent, vec![0, 500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]);
        assert!(tx.timed_out());
        assert_eq!((now - t0).as_millis(), 32_000);
    }

    #[test]
    fn non_invite_completes_and_lingers_t4() {
        let t0 = Instant::now();
        let mut tx = NonInviteClient::start(b"BYE".to_vec(), false, TimerConfig::default(), t0);
        tx.poll_transmit();
        assert_eq!(tx.on_response(200, t0 + ms(20)), Disposition::PassUp);
        assert_eq!(tx.final_status(), Some(200));
        assert_eq!(tx.on_response(200, t0 + ms(40)), Disposition::Absorbed);
        assert_eq!(tx.next_timeout(), Some(t0 + ms(5020)));
        let mut tcp = NonInviteClient::start(b"BYE".to_vec(), true, TimerConfig::default(), t0);
        assert_eq!(tcp.next_timeout(), Some(t0 + ms(32_000)), "TCP: only Timer F");
        tcp.on_response(200, t0);
        tcp.on_timeout(t0);
        assert_eq!(tcp.state(), NonInviteState::Terminated);
    }
}
