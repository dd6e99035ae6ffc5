//! The checks one call must pass. Each check names what was expected and
//! what happened, so a failing line reads as its own explanation.

use std::time::Duration;

use crate::audio::analysis::{MediaAnalysis, TONE_MIN};
use crate::call::CallOutcome;
use crate::livekit::observation::{JoinSource, LiveKitObservation};
use crate::sip::caller::EndReason;
use crate::time::{Millis, Offset};

use crate::request::{AgentExpectation, Expectations, FinalResponses, MediaExpectations};

use super::describe_end;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

fn statuses(record: &CallOutcome) -> Vec<u16> {
    record.sip.final_responses.iter().map(|f| f.status).collect()
}

fn joined(codes: &[u16]) -> String {
    if codes.is_empty() {
        "none".into()
    } else {
        codes.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
    }
}

pub fn evaluate(record: &CallOutcome, expect: &Expectations) -> Vec<Check> {
    let got = statuses(record);
    let ended = record.sip.ended.as_ref();
    let how = ended.map(describe_end).unwrap_or_else(|| "the call did not finish".into());
    let mut checks = Vec::new();
    let answered = got.last().is_some_and(|s| (200..300).contains(s));
    match &expect.final_responses {
        FinalResponses::Any => {
            let detail = format!("recorded (any final response accepted): {} — {how}", joined(&got));
            checks.push(Check { name: "final_responses".into(), passed: true, detail });
        }
        FinalResponses::Exactly(want) => {
            let passed = *want == got;
            let detail = if passed {
                format!("expected {}, got {}", joined(want), joined(&got))
            } else {
                format!("expected {}, got {} — {how}", joined(want), joined(&got))
            };
            checks.push(Check { name: "final_responses".into(), passed, detail });
        }
        FinalResponses::Answered => {
            let detail = if answered {
                format!("answered: final responses {}", joined(&got))
            } else {
                format!("not answered: final responses {} — {how}", joined(&got))
            };
            checks.push(Check { name: "call_answered".into(), passed: answered, detail });
        }
    }
    if answered && record.sip.answered_after_deadline {
        checks.push(Check {
            name: "answered_in_time".into(),
            passed: false,
            detail: "the 2xx arrived only after --timeout, when our CANCEL was already on its way".into(),
        });
    }
    let violations: Vec<String> =
        record.findings.to_vec().into_iter().filter(|f| f.violation).map(|f| f.code).collect();
    if !violations.is_empty() {
        let mut codes = violations.clone();
        codes.sort();
        codes.dedup();
        checks.push(Check {
            name: "peer_conduct".into(),
            passed: false,
            detail: format!("the far end broke the SIP protocol: {} (see findings)", codes.join(", ")),
        });
    }
    if answered {
        let (passed, detail) = match ended {
            Some(EndReason::HungUp { bye_status }) if (200..300).contains(bye_status) => (true, how.clone()),
            Some(EndReason::FarEndHungUp) => (true, how.clone()),
            _ => (false, how.clone()),
        };
        checks.push(Check { name: "call_ended_cleanly".into(), passed, detail });
    }
    checks
}

/// `diagnosis`: the call failed, and with the expected diagnosis among the
/// ones that apply.
pub fn expected_diagnosis(code: &str, other_checks: &[Check], diagnoses: &[super::diagnose::Diagnosis]) -> Check {
    let check = |passed: bool, detail: String| Check { name: "diagnosis".into(), passed, detail };
    let failed: Vec<&str> = other_checks.iter().filter(|c| !c.passed).map(|c| c.name.as_str()).collect();
    if failed.is_empty() {
        return check(false, format!("expected the call to fail with {code}, but every check passed"));
    }
    match diagnoses.iter().find(|d| d.code == code) {
        Some(d) => check(true, format!("failed as expected ({}) with {code}: {}", failed.join(", "), d.evidence)),
        None => {
            let got: Vec<&str> = diagnoses.iter().map(|d| d.code).collect();
            let got = if got.is_empty() { "no diagnosis".to_string() } else { got.join(", ") };
            check(false, format!("expected diagnosis {code}, got {got} (failed checks: {})", failed.join(", ")))
        }
    }
}

/// `agent_joined`: a participant of kind AGENT (named as expected) was in the
/// call's room within the deadline, counted from the INVITE that got through.
pub fn agent_joined(want: &AgentExpectation, livekit: Option<&LiveKitObservation>) -> Check {
    let deadline = humantime::format_duration(want.within).to_string();
    let what = match want.name() {
        Some(n) if !n.is_empty() => format!("agent \"{n}\""),
        _ => "an agent".to_string(),
    };
    let fail = |detail: String| Check { name: "agent_joined".into(), passed: false, detail };
    let Some(lk) = livekit else {
        return fail("LiveKit was not observed, so the agent cannot be checked".into());
    };
    let Some(room) = lk.room.as_deref() else {
        let mut detail = format!(
            "no LiveKit room found for test id {} (lktest.id) or Call-ID {} after {:.1} s ({} polls)",
            lk.test_id,
            lk.call_id,
            lk.watched.seconds(),
            lk.polls
        );
        if let Some(e) = lk.gave_up.as_ref().or(lk.api_errors.last()) {
            detail.push_str(&format!("; LiveKit API: {e}"));
        }
        return fail(detail);
    };
    match lk.first_agent(want.name()) {
        Some(a) => {
            let passed = a.joined <= Offset::from(want.within);
            let source = match a.joined_source {
                JoinSource::Server => "server join time",
                JoinSource::Poll => "first seen by a poll",
            };
            let detail = format!(
                "{what} ({}) joined room {room} {:.0} ms after the INVITE ({source}); deadline {deadline}{}",
                a.identity,
                a.joined.ms(),
                if passed { "" } else { ": too late" }
            );
            Check { name: "agent_joined".into(), passed, detail }
        }
        None => {
            let others: Vec<String> =
                lk.agents.iter().map(|a| format!("\"{}\" at {:.0} ms", a.agent_name, a.joined.ms())).collect();
            let mut detail = format!(
                "no AGENT participant{} in room {room} after {:.1} s (deadline {deadline})",
                match want.name() {
                    Some(n) if !n.is_empty() => format!(" named \"{n}\""),
                    _ => String::new(),
                },
                lk.watched.seconds()
            );
            if !others.is_empty() {
                detail.push_str(&format!("; other agents: {}", others.join(", ")));
            }
            fail(detail)
        }
    }
}

/// Checks on the media of an answered call: usable SDP, and what the far
/// end's audio must show.
pub fn media_checks(record: &CallOutcome, analysis: Option<&MediaAnalysis>, want: &MediaExpectations) -> Vec<Check> {
    let answered = record.sip.final_responses.last().is_some_and(|f| (200..300).contains(&f.status));
    if !answered {
        return Vec::new();
    }
    let mut checks = Vec::new();
    match (&record.media_error, &record.media) {
        (Some(why), _) => checks.push(Check { name: "media_negotiated".into(), passed: false, detail: why.clone() }),
        (None, Some(m)) => checks.push(Check {
            name: "media_negotiated".into(),
            passed: true,
            detail: match &m.srtp {
                None => format!("{} with {}", m.codec, m.remote_rtp),
                Some(srtp) => format!("{} with {}, SRTP {}", m.codec, m.remote_rtp, srtp.suite),
            },
        }),
        (None, None) => {}
    }
    let rx_packets = record.media.as_ref().map_or(0, |m| m.rx.received);
    if let Some(within) = want.speech_within {
        let limit = within.whole_ms();
        let first = analysis.and_then(|a| a.first_audio);
        let (passed, detail) = match first.map(|d| (d, d.whole_ms())) {
            Some((d, ms)) if d <= within => (true, format!("far end spoke {ms} ms after 200 OK (limit {limit} ms)")),
            Some((_, ms)) => (false, format!("far end first spoke {ms} ms after 200 OK, later than {limit} ms")),
            None => {
                (false, format!("no far-end speech after 200 OK ({rx_packets} RTP packets received); limit {limit} ms"))
            }
        };
        checks.push(Check { name: "speech_within".into(), passed, detail });
    }
    if let Some(within) = want.response_within {
        let limit = within.whole_ms();
        let media = record.media.as_ref();
        let started = media.and_then(|m| m.play_started).map(|t| t.ms());
        let utterance_end = media.and_then(|m| m.utterance_end).map(|t| t.ms());
        let latency = analysis.and_then(|a| a.response_latency).map(|d| (d, d.whole_ms()));
        let (passed, detail) = match (started, utterance_end, latency) {
            (None, _, _) => (
                false,
                "our utterance was never played (the call ended first, or the greeting never ended)".to_string(),
            ),
            (Some(at), None, _) => {
                (false, format!("our utterance (started {at:.0} ms) was cut short: the call ended before it finished"))
            }
            (Some(_), Some(_), Some((d, ms))) if d <= within => {
                (true, format!("far end answered {ms} ms after our utterance ended (limit {limit} ms)"))
            }
            (Some(_), Some(_), Some((_, ms))) => {
                (false, format!("far end answered {ms} ms after our utterance ended, later than {limit} ms"))
            }
            (Some(_), Some(end), None) => {
                (false, format!("no far-end speech after our utterance ended at {end:.0} ms; limit {limit} ms"))
            }
        };
        checks.push(Check { name: "response_within".into(), passed, detail });
    }
    if want.max_loss_percent.is_some() || want.max_jitter_ms.is_some() {
        checks.push(rtp_quality(record, want));
    }
    if let Some(hz) = want.tone_hz {
        let present = analysis.and_then(|a| a.tone.as_ref()).map_or(Duration::ZERO, |t| t.present);
        let passed = present >= TONE_MIN;
        let detail = format!("{hz} Hz tone present for {} ms (needs {} ms)", present.whole_ms(), TONE_MIN.whole_ms());
        checks.push(Check { name: "tone".into(), passed, detail });
    }
    checks
}

/// Loss and jitter of the far end's RTP against the limits.
fn rtp_quality(record: &CallOutcome, want: &MediaExpectations) -> Check {
    let Some(m) = &record.media else {
        return Check { name: "rtp_quality".into(), passed: false, detail: "no media to measure".into() };
    };
    let expected = m.rx.expected.max(1);
    let loss = m.rx.lost as f64 * 100.0 / expected as f64;
    let jitter = m.rx.jitter_ms;
    let mut problems = Vec::new();
    if m.rx.received == 0 {
        problems.push("no RTP received".to_string());
    }
    if let Some(max) = want.max_loss_percent {
        if loss > max {
            problems.push(format!("loss {loss:.2}% > {max}%"));
        }
    }
    if let Some(max) = want.max_jitter_ms {
        if jitter > max {
            problems.push(format!("jitter {jitter:.1} ms > {max} ms"));
        }
    }
    let measured = format!(
        "{} packets received, {} lost ({loss:.2}%), jitter {jitter:.1} ms, {} duplicates, {} reordered",
        m.rx.received, m.rx.lost, m.rx.duplicates, m.rx.reordered
    );
    Check {
        name: "rtp_quality".into(),
        passed: problems.is_empty(),
        detail: if problems.is_empty() { measured } else { format!("{}: {measured}", problems.join(", ")) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::livekit::observation::tests::{agent, observation_with_room};
    use crate::request::ExpectedAgent;
    use std::time::Duration;

    fn want(name: Option<&str>) -> AgentExpectation {
        let agent = name.map_or(ExpectedAgent::Any, |n| ExpectedAgent::Named(n.to_string()));
        AgentExpectation { agent, within: Duration::from_secs(5) }
    }

    #[test]
    fn agent_joined_within_the_deadline() {
        let mut lk = observation_with_room();
        lk.agents = vec![agent("probe-agent", 812.0)];
        let c = agent_joined(&want(Some("probe-agent")), Some(&lk));
        assert!(c.passed, "{}", c.detail);
        assert!(c.detail.contains("812 ms") && c.detail.contains("deadline 5s"), "{}", c.detail);
        assert!(agent_joined(&want(None), Some(&lk)).passed);
    }

    #[test]
    fn agent_too_late_wrong_name_or_no_room() {
        let mut lk = observation_with_room();
        lk.agents = vec![agent("probe-agent", 7_000.0)];
        let c = agent_joined(&want(Some("probe-agent")), Some(&lk));
        assert!(!c.passed && c.detail.contains("too late"), "{}", c.detail);
        lk.agents = vec![agent("other-agent", 700.0)];
        let c = agent_joined(&want(Some("probe-agent")), Some(&lk));
        assert!(!c.passed && c.detail.contains("no AGENT participant named \"probe-agent\""), "{}", c.detail);
        assert!(c.detail.contains("other-agent"), "{}", c.detail);
        lk.room = None;
        let c = agent_joined(&want(None), Some(&lk));
        assert!(!c.passed && c.detail.contains("no LiveKit room found for test id cp-1"), "{}", c.detail);
        assert!(!agent_joined(&want(None), None).passed);
    }
}
