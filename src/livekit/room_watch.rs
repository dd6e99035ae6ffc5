//! Finding the call's room while the call runs, and keeping what happens in
//! it: poll the room list until a room holds our SIP participant (attribute
//! `lktest.id` = our `X-Lk-Test-Id`, or `sip.callIDFull` = our Call-ID), then
//! poll that room's participants and agent dispatches until the call ends.
//! Everything is recorded in absolute Unix milliseconds; relating it to the
//! call's timeline is [`super::observation`]'s job.
//!
//! The decisions (which rooms to look into, which participant is ours, what
//! changed since the last poll) are pure functions over plain lists, so they
//! are tested without a server; [`watch_call`] only adds the requests.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::{ApiError, ApiErrorKind, ServerApi};

/// `ParticipantInfo.kind` values (livekit_models.proto).
pub const KIND_SIP: i32 = 3;
pub const KIND_AGENT: i32 = 4;

/// Participant attributes LiveKit SIP and the agents framework set.
pub mod attr {
    /// Our `X-Lk-Test-Id` header, mapped by LiveKit SIP.
    pub const TEST_ID: &str = "lktest.id";
    /// The SIP Call-ID header of the INVITE.
    pub const SIP_CALL_ID_FULL: &str = "sip.callIDFull";
    /// LiveKit's own call id (`SCL_…`), not the SIP Call-ID.
    pub const LIVEKIT_CALL_ID: &str = "sip.callID";
    pub const CALL_STATUS: &str = "sip.callStatus";
    pub const TRUNK_ID: &str = "sip.trunkID";
    pub const RULE_ID: &str = "sip.ruleID";
    /// The caller's number (From).
    pub const PHONE_NUMBER: &str = "sip.phoneNumber";
    /// The called number (To), as the trunk saw it.
    pub const TRUNK_PHONE_NUMBER: &str = "sip.trunkPhoneNumber";
    pub const AGENT_NAME: &str = "lk.agent_name";
}

/// Rooms looked into per poll while the call's room is not found yet.
const MAX_ROOMS_PER_POLL: usize = 50;
/// Rooms created this long before the watch started still count as new.
const FRESH_ROOM_SLACK_MS: i64 = 10_000;
/// Older rooms (a `direct` rule's long-lived room) are looked into every Nth poll.
const OLD_ROOM_EVERY: u32 = 10;
/// ListDispatch may take this long before the last list seen is kept.
const DISPATCH_LIST_TIMEOUT: Duration = Duration::from_millis(1500);
/// Distinct API error texts kept.
const MAX_ERRORS_KEPT: usize = 10;

/// A room, from `ListRooms`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoomView {
    pub name: String,
    pub sid: String,
    pub created_unix_ms: Option<i64>,
}

/// A participant, from `ListParticipants`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParticipantView {
    pub identity: String,
    pub kind: i32,
    pub state: i32,
    /// The server's join time.
    pub joined_unix_ms: Option<i64>,
    pub attributes: BTreeMap<String, String>,
}

impl ParticipantView {
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// An agent dispatch of the room, from `ListDispatch`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DispatchView {
    pub id: String,
    /// Empty: the default dispatch the server creates for a room without
    /// `room_config.agents`; only workers registered without a name take it.
    pub agent_name: String,
    pub created_unix_ms: Option<i64>,
    /// Jobs a worker accepted for this dispatch.
    pub jobs: Vec<JobView>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobView {
    pub id: String,
    /// `JobStatus`: 0 pending, 1 running, 2 success, 3 failed.
    pub status: i32,
    pub error: String,
    pub worker_id: String,
    pub participant_identity: String,
    pub started_unix_ms: Option<i64>,
    pub ended_unix_ms: Option<i64>,
}

/// The ids our INVITE carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallIdentity {
    pub test_id: String,
    pub call_id: String,
}

/// Which attribute tied the SIP participant to our call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchedBy {
    /// `lktest.id`
    TestId,
    /// `sip.callIDFull`
    CallId,
}

/// Our SIP participant among `participants`: kind SIP with `lktest.id` = test
/// id, or (when a trunk drops X- headers) the SIP Call-ID.
pub fn find_sip_participant<'a>(
    participants: &'a [ParticipantView],
    call: &CallIdentity,
) -> Option<(&'a ParticipantView, MatchedBy)> {
    let sip = || participants.iter().filter(|p| p.kind == KIND_SIP);
    sip().find(|p| p.attr(attr::TEST_ID) == Some(call.test_id.as_str())).map(|p| (p, MatchedBy::TestId)).or_else(|| {
        sip()
            .find(|p| {
                p.attr(attr::SIP_CALL_ID_FULL) == Some(call.call_id.as_str())
                    || p.attr(attr::LIVEKIT_CALL_ID) == Some(call.call_id.as_str())
            })
            .map(|p| (p, MatchedBy::CallId))
    })
}

/// The rooms to look into on poll number `poll` (0-based) while the call's
/// room is unknown: newest first; rooms created around or after the watch
/// started on every poll, older ones on the first and every 10th poll.
pub fn rooms_to_probe(rooms: &[RoomView], watch_started_unix_ms: i64, poll: u32) -> Vec<&RoomView> {
    let mut picked: Vec<&RoomView> = rooms
        .iter()
        .filter(|r| match r.created_unix_ms {
            Some(created) if created < watch_started_unix_ms - FRESH_ROOM_SLACK_MS => {
                poll.is_multiple_of(OLD_ROOM_EVERY)
            }
            _ => true,
        })
        .collect();
    picked.sort_by_key(|r| std::cmp::Reverse(r.created_unix_ms.unwrap_or(i64::MAX)));
    picked.truncate(MAX_ROOMS_PER_POLL);
    picked
}

/// One agent participant, as the polls saw it over time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentSighting {
    pub identity: String,
    pub agent_name: String,
    pub joined_unix_ms: Option<i64>,
    pub first_seen_unix_ms: i64,
    pub last_seen_unix_ms: i64,
    /// The first poll that no longer listed it.
    pub gone_unix_ms: Option<i64>,
    pub attributes: BTreeMap<String, String>,
}

/// A change of the SIP participant's `sip.callStatus`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSighting {
    pub status: String,
    pub observed_unix_ms: i64,
}

/// Everything the watcher saw, in Unix milliseconds.
#[derive(Debug, Clone, Default)]
pub struct RoomWatch {
    pub started_unix_ms: i64,
    pub ended_unix_ms: i64,
    pub polls: u32,
    pub room: Option<RoomView>,
    pub room_found_unix_ms: Option<i64>,
    /// The room was listed no more (deleted after the call).
    pub room_gone_unix_ms: Option<i64>,
    pub matched_by: Option<MatchedBy>,
    /// The latest snapshot of our SIP participant.
    pub sip_participant: Option<ParticipantView>,
    pub sip_participant_first_seen_unix_ms: Option<i64>,
    pub sip_participant_gone_unix_ms: Option<i64>,
    pub call_status: Vec<StatusSighting>,
    pub agents: Vec<AgentSighting>,
    /// The latest dispatch list of the room.
    pub dispatches: Vec<DispatchView>,
    pub errors: Vec<String>,
    pub error_count: u32,
    /// The watcher stopped early on this error (wrong key, no permission …).
    pub gave_up: Option<String>,
}

impl RoomWatch {
    pub fn new(started_unix_ms: i64) -> RoomWatch {
        RoomWatch { started_unix_ms, ended_unix_ms: started_unix_ms, ..Default::default() }
    }

    /// Takes one participant list of `room` into account. Returns whether
    /// `room` is the call's room (it holds, or held, our SIP participant).
    pub fn absorb(&mut self, room: &RoomView, participants: &[ParticipantView], call: &CallIdentity, now: i64) -> bool {
        match &self.room {
            Some(ours) if ours.name != room.name => return false,
            Some(_) => {}
            None => match find_sip_participant(participants, call) {
                Some((_, by)) => {
                    self.room = Some(room.clone());
                    self.room_found_unix_ms = Some(now);
                    self.matched_by = Some(by);
                }
                None => return false,
            },
        }
        match find_sip_participant(participants, call) {
            Some((p, _)) => {
                self.sip_participant_first_seen_unix_ms.get_or_insert(now);
                self.sip_participant_gone_unix_ms = None;
                let status = p.attr(attr::CALL_STATUS).unwrap_or("").to_string();
                if self.call_status.last().map(|s| &s.status) != Some(&status) {
                    self.call_status.push(StatusSighting { status, observed_unix_ms: now });
                }
                self.sip_participant = Some(p.clone());
            }
            None => {
                if self.sip_participant.is_some() && self.sip_participant_gone_unix_ms.is_none() {
                    self.sip_participant_gone_unix_ms = Some(now);
                }
            }
        }
        for p in participants.iter().filter(|p| p.kind == KIND_AGENT) {
            let agent_name = p.attr(attr::AGENT_NAME).unwrap_or("").to_string();
            match self.agents.iter_mut().find(|a| a.identity == p.identity && a.gone_unix_ms.is_none()) {
                Some(seen) => {
                    seen.last_seen_unix_ms = now;
                    seen.attributes = p.attributes.clone();
                    if seen.agent_name.is_empty() {
                        seen.agent_name = agent_name;
                    }
                }
                None => self.agents.push(AgentSighting {
                    identity: p.identity.clone(),
                    agent_name,
                    joined_unix_ms: p.joined_unix_ms,
                    first_seen_unix_ms: now,
                    last_seen_unix_ms: now,
                    gone_unix_ms: None,
                    attributes: p.attributes.clone(),
                }),
            }
        }
        for seen in self.agents.iter_mut().filter(|a| a.gone_unix_ms.is_none()) {
            if !participants.iter().any(|p| p.kind == KIND_AGENT && p.identity == seen.identity) {
                seen.gone_unix_ms = Some(now);
            }
        }
        true
    }

    /// The call's room is no longer there.
    pub fn room_gone(&mut self, now: i64) {
        self.room_gone_unix_ms.get_or_insert(now);
        if self.sip_participant.is_some() {
            self.sip_participant_gone_unix_ms.get_or_insert(now);
        }
        for a in self.agents.iter_mut() {
            a.gone_unix_ms.get_or_insert(now);
        }
    }

    pub fn note_error(&mut self, e: &ApiError) {
        self.error_count += 1;
        let text = e.to_string();
        if self.errors.len() < MAX_ERRORS_KEPT && !self.errors.contains(&text) {
            self.errors.push(text);
        }
    }
}

/// How often to poll and how long to wait.
#[derive(Debug, Clone)]
pub struct WatchSettings {
    pub poll_interval: Duration,
    /// Longest wait between polls while the API keeps failing.
    pub max_backoff: Duration,
    /// The poll after the call ended may take this long.
    pub final_poll_timeout: Duration,
}

impl Default for WatchSettings {
    fn default() -> Self {
        WatchSettings {
            poll_interval: Duration::from_millis(300),
            max_backoff: Duration::from_secs(3),
            final_poll_timeout: Duration::from_secs(3),
        }
    }
}

/// Our clock, in the API's unit (whole ms since the Unix epoch).
pub fn now_unix_ms() -> i64 {
    i64::try_from(crate::time::unix_ms(SystemTime::now())).unwrap_or(i64::MAX)
}

/// Polls until `stop` turns true (or its sender is dropped), then polls once
/// more and returns what it saw. Transient API errors slow the polling down;
/// a permanent one (wrong key, no permission) ends the watch early.
pub async fn watch_call(
    api: &ServerApi,
    call: &CallIdentity,
    settings: &WatchSettings,
    mut stop: watch::Receiver<bool>,
) -> RoomWatch {
    let mut seen = RoomWatch::new(now_unix_ms());
    let mut delay = settings.poll_interval;
    let mut stopping = *stop.borrow();
    loop {
        let result = if stopping {
            match tokio::time::timeout(settings.final_poll_timeout, poll_once(api, call, &mut seen)).await {
                Ok(r) => r,
                Err(_) => Err(ApiError {
                    operation: "final poll".into(),
                    url: api.url().to_string(),
                    kind: ApiErrorKind::Unreachable,
                    detail: format!("no answer within {} s", settings.final_poll_timeout.as_secs()),
                }),
            }
        } else {
            poll_once(api, call, &mut seen).await
        };
        tracing::debug!(
            poll = seen.polls,
            stopping,
            room = seen.room.as_ref().map(|r| r.name.as_str()),
            agents = seen.agents.len(),
            ok = result.is_ok(),
            "livekit poll"
        );
        match result {
            Ok(()) => delay = settings.poll_interval,
            Err(e) => {
                tracing::debug!(error = %e, "livekit poll failed");
                seen.note_error(&e);
                if !e.is_transient() {
                    seen.gave_up = Some(e.to_string());
                    break;
                }
                delay = (delay * 2).min(settings.max_backoff);
            }
        }
        if stopping {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            changed = stop.changed() => {
                if changed.is_err() {
                    stopping = true;
                }
            }
        }
        stopping = stopping || *stop.borrow();
    }
    seen.ended_unix_ms = now_unix_ms();
    seen
}

async fn poll_once(api: &ServerApi, call: &CallIdentity, seen: &mut RoomWatch) -> Result<(), ApiError> {
    let poll = seen.polls;
    seen.polls += 1;
    match seen.room.clone() {
        Some(room) if seen.room_gone_unix_ms.is_none() => match api.list_participants(&room.name).await {
            Ok(participants) => {
                seen.absorb(&room, &participants, call, now_unix_ms());
            }
            Err(e) if e.kind == ApiErrorKind::NotFound => seen.room_gone(now_unix_ms()),
            Err(e) => return Err(e),
        },
        Some(_) => return Ok(()),
        None => {
            let rooms = api.list_rooms().await?;
            for room in rooms_to_probe(&rooms, seen.started_unix_ms, poll) {
                match api.list_participants(&room.name).await {
                    Ok(participants) => {
                        if seen.absorb(room, &participants, call, now_unix_ms()) {
                            break;
                        }
                    }
                    // Deleted between the two requests.
                    Err(e) if e.kind == ApiErrorKind::NotFound => continue,
                    Err(e) => return Err(e),
                }
            }
        }
    }
    // Once our SIP participant has left, the room is closing: ListDispatch
    // then hangs until the server gives up on the room's node ("no response
    // from servers", 3 s), so the last list seen is kept instead. Dispatches
    // are secondary evidence: their errors are noted, not fatal to the poll.
    let closing = seen.sip_participant_gone_unix_ms.is_some();
    if let (Some(room), None, false) = (seen.room.clone(), seen.room_gone_unix_ms, closing) {
        match tokio::time::timeout(DISPATCH_LIST_TIMEOUT, api.list_dispatches(&room.name)).await {
            Ok(Ok(dispatches)) => seen.dispatches = dispatches,
            Ok(Err(e)) if e.kind == ApiErrorKind::NotFound => seen.room_gone(now_unix_ms()),
            Ok(Err(e)) if e.is_transient() => seen.note_error(&e),
            Ok(Err(e)) => return Err(e),
            Err(_) => tracing::debug!(room = %room.name, "ListDispatch too slow; keeping the last list"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call() -> CallIdentity {
        CallIdentity { test_id: "cp-1".into(), call_id: "abc@callprobe".into() }
    }

    fn participant(identity: &str, kind: i32, attrs: &[(&str, &str)], joined: i64) -> ParticipantView {
        ParticipantView {
            identity: identity.into(),
            kind,
            state: 2,
            joined_unix_ms: Some(joined),
            attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    fn room(name: &str, created: i64) -> RoomView {
        RoomView { name: name.into(), sid: format!("RM_{name}"), created_unix_ms: Some(created) }
    }

    #[test]
    fn finds_our_sip_participant_by_test_id_then_call_id() {
        let ps = vec![
            participant("sip_other", KIND_SIP, &[(attr::TEST_ID, "cp-2")], 1),
            participant("agent", KIND_AGENT, &[(attr::TEST_ID, "cp-1")], 1),
            participant("sip_ours", KIND_SIP, &[(attr::TEST_ID, "cp-1")], 1),
        ];
        let (p, by) = find_sip_participant(&ps, &call()).unwrap();
        assert_eq!((p.identity.as_str(), by), ("sip_ours", MatchedBy::TestId));
        let ps = vec![participant("sip_x", KIND_SIP, &[(attr::SIP_CALL_ID_FULL, "abc@callprobe")], 1)];
        assert_eq!(find_sip_participant(&ps, &call()).unwrap().1, MatchedBy::CallId);
        let ps = vec![participant("std", 0, &[(attr::TEST_ID, "cp-1")], 1)];
        assert!(find_sip_participant(&ps, &call()).is_none());
    }

    #[test]
    fn old_rooms_are_probed_only_now_and_then() {
        let rooms = vec![room("old", 1_000), room("new", 100_000), room("newer", 100_500)];
        let names = |poll| rooms_to_probe(&rooms, 100_000, poll).iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(0), ["newer", "new", "old"]);
        assert_eq!(names(1), ["newer", "new"]);
        assert_eq!(names(10), ["newer", "new", "old"]);
    }

    #[test]
    fn tracks_status_agents_and_departures() {
        let mut w = RoomWatch::new(1_000);
        let r = room("call-_x", 1_000);
        let sip =
            |status| participant("sip_1", KIND_SIP, &[(attr::TEST_ID, "cp-1"), (attr::CALL_STATUS, status)], 1_100);
        // Another room first: not ours.
        assert!(!w.absorb(&room("other", 900), &[participant("p", 0, &[], 1)], &call(), 1_050));
        assert!(w.absorb(&r, &[sip("ringing")], &call(), 1_200));
        let agent = participant("agent-AJ_1", KIND_AGENT, &[(attr::AGENT_NAME, "probe-agent")], 1_700);
        assert!(w.absorb(&r, &[sip("ringing"), agent.clone()], &call(), 1_800));
        assert!(w.absorb(&r, &[sip("active"), agent], &call(), 2_100));
        // A different room is ignored once ours is known.
        assert!(!w.absorb(&room("other", 900), &[sip("active")], &call(), 2_200));
        assert!(w.absorb(&r, &[sip("hangup")], &call(), 2_400));
        assert_eq!(w.room.as_ref().unwrap().name, "call-_x");
        assert_eq!(w.room_found_unix_ms, Some(1_200));
        assert_eq!(
            w.call_status.iter().map(|s| (s.status.as_str(), s.observed_unix_ms)).collect::<Vec<_>>(),
            [("ringing", 1_200), ("active", 2_100), ("hangup", 2_400)]
        );
        assert_eq!(w.agents.len(), 1);
        let a = &w.agents[0];
        assert_eq!(
            (a.agent_name.as_str(), a.joined_unix_ms, a.first_seen_unix_ms),
            ("probe-agent", Some(1_700), 1_800)
        );
        assert_eq!(a.gone_unix_ms, Some(2_400));
        w.room_gone(3_000);
        assert_eq!(w.sip_participant_gone_unix_ms, Some(3_000));
    }
}
