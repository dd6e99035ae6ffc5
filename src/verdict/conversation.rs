//! The checks of a scripted conversation: one per step, each saying what
//! was expected and what happened ("step 3 (turn 2): expected /order
//! number/, heard 'I did not catch that' after 1.4 s"), and the text
//! matching behind `expect_said`/`expect_any`/`expect_like`.

use std::time::Duration;

use super::checks::Check;
use crate::audio::analysis::MediaAnalysis;
use crate::audio::turns::Turn;
use crate::conversation::{Conversation, SaidExpectation, StepAction};
use crate::media::script::StepOutcome;
use crate::media::session::MediaOutcome;
use crate::time::{human_ms, CallTime, Millis};
use crate::transcribe::Transcript;

/// What the far end's turns said, by index into `analysis.far_turns`; `None`
/// where nothing transcribed them.
pub type TurnTexts<'a> = &'a [Option<Transcript>];

/// One check per conversation step (steps not reached fail too).
pub fn conversation_checks(
    conversation: &Conversation,
    media: Option<&MediaOutcome>,
    analysis: Option<&MediaAnalysis>,
    texts: TurnTexts<'_>,
    why_no_text: &str,
) -> Vec<Check> {
    if conversation.steps.is_empty() {
        return Vec::new();
    }
    let script = media.and_then(|m| m.script.as_ref());
    let mut checks = Vec::new();
    let mut failed_at: Option<usize> = None;
    let mut agent_turns = 0;
    for (i, step) in conversation.steps.iter().enumerate() {
        let n = i + 1;
        let record = script.and_then(|s| s.records.get(i));
        if matches!(step.action, StepAction::AgentTurn { .. }) {
            agent_turns += 1;
        }
        let name = format!("step {n}: {}", action_name(&step.action));
        let Some(record) = record else {
            let why = match (media, failed_at) {
                (None, _) => "not reached: the call had no media".to_string(),
                (Some(_), Some(k)) => format!("not reached: step {k} failed"),
                (Some(_), None) => "not reached: the call ended first".to_string(),
            };
            checks.push(Check { name, passed: false, detail: why });
            continue;
        };
        let started = record.started;
        let (passed, detail) = match (&step.action, &record.outcome) {
            (_, StepOutcome::Running) => (false, format!("still running when the call ended (started {started})")),
            (StepAction::AgentTurn { within, .. }, StepOutcome::TimedOut) => {
                (false, format!("turn {agent_turns}: the agent did not speak within {} of {started}", human(*within)))
            }
            (StepAction::AgentTurn { expect, .. }, StepOutcome::Done { turn }) => {
                agent_turn(agent_turns, started, turn.as_ref(), expect.as_ref(), analysis, texts, why_no_text)
            }
            (StepAction::Say(u), StepOutcome::Done { .. }) => (true, format!("said {} at {started}", u.label())),
            (StepAction::Dtmf(keys), StepOutcome::Done { .. }) => {
                let how = media.and_then(|m| m.our_turns.iter().find(|t| t.step == i)).map_or("", |t| {
                    if t.in_band {
                        " as in-band tones"
                    } else {
                        " as RFC 4733 events"
                    }
                });
                (true, format!("sent DTMF {keys}{how} at {started}"))
            }
            (StepAction::Wait(d), StepOutcome::Done { .. }) => (true, format!("waited {}", human(*d))),
            (StepAction::Silence(d), StepOutcome::Done { .. }) => silence(started, *d, analysis),
            (StepAction::BargeIn { stop_within, .. }, StepOutcome::Done { .. }) => {
                barge_in(i, *stop_within, media, analysis)
            }
            (StepAction::BargeIn { within, .. }, StepOutcome::TimedOut) => (
                false,
                format!("the agent did not start talking within {} of {started}: nothing to interrupt", human(*within)),
            ),
            (StepAction::HangUp, _) => (true, format!("hung up at {started}")),
            (_, StepOutcome::TimedOut) => (false, "timed out".to_string()),
        };
        if !passed && failed_at.is_none() {
            failed_at = Some(n);
        }
        checks.push(Check { name, passed, detail });
    }
    checks
}

fn action_name(action: &StepAction) -> String {
    match action {
        StepAction::AgentTurn { expect: Some(e), .. } => format!("agent turn, {}", e.describe()),
        StepAction::AgentTurn { expect: None, .. } => "agent turn".into(),
        StepAction::Say(u) => format!("say {}", u.label()),
        StepAction::Dtmf(keys) => format!("DTMF {keys}"),
        StepAction::Wait(d) => format!("wait {}", human(*d)),
        StepAction::Silence(d) => format!("silence {}", human(*d)),
        StepAction::BargeIn { utterance, .. } => format!("barge in with {}", utterance.label()),
        StepAction::HangUp => "hang up".into(),
    }
}

fn human(d: Duration) -> String {
    human_ms(d.ms())
}

/// The offline turn (from the recording) that best matches the live one.
fn matching_turn(live: &Turn, analysis: Option<&MediaAnalysis>) -> Option<usize> {
    let turns = &analysis?.far_turns;
    let overlap = |t: &Turn| t.end.min(live.end) - t.start.max(live.start);
    turns.iter().enumerate().filter(|(_, t)| !overlap(t).is_zero()).max_by_key(|(_, t)| overlap(t)).map(|(i, _)| i)
}

fn agent_turn(
    number: usize,
    started: CallTime,
    live: Option<&Turn>,
    expect: Option<&SaidExpectation>,
    analysis: Option<&MediaAnalysis>,
    texts: TurnTexts<'_>,
    why_no_text: &str,
) -> (bool, String) {
    let Some(live) = live else { return (false, format!("turn {number}: no agent turn")) };
    let after = live.start - started;
    let spoke = format!("spoke {}–{} ({} after the step began)", live.start, live.end, human(after));
    let Some(expect) = expect else { return (true, format!("turn {number}: the agent {spoke}")) };
    let heard = matching_turn(live, analysis).and_then(|i| texts.get(i).cloned().flatten());
    let Some(heard) = heard else {
        return (
            false,
            format!("turn {number}: expected {}, but the turn has no transcript: {why_no_text}", expect.describe()),
        );
    };
    let (ok, how) = said_matches(expect, &heard.text);
    let detail = if ok {
        format!("turn {number}: heard '{}' {how} after {}", heard.text, human(after))
    } else {
        format!("turn {number}: expected {}, heard '{}' {how} after {}", expect.describe(), heard.text, human(after))
    };
    (ok, detail)
}

/// Far-end speech during a silence step fails it.
fn silence(started: CallTime, length: Duration, analysis: Option<&MediaAnalysis>) -> (bool, String) {
    let end = started + length;
    let Some(a) = analysis else { return (false, "the audio was not analysed".into()) };
    let spoke = a
        .speech_segments
        .iter()
        .map(|s| (CallTime::after(s.start), CallTime::after(s.end)))
        .find(|(s, e)| *s < end && *e > started);
    match spoke {
        None => (true, format!("no far-end speech {started}–{end}")),
        Some((s, e)) => (false, format!("the far end spoke {s}–{e}, during the silence {started}–{end}")),
    }
}

/// How fast the far end stopped once we talked over it.
fn barge_in(
    step: usize,
    stop_within: Duration,
    media: Option<&MediaOutcome>,
    analysis: Option<&MediaAnalysis>,
) -> (bool, String) {
    let Some(ours) = media.and_then(|m| m.our_turns.iter().find(|t| t.step == step)) else {
        return (false, "we never started talking".into());
    };
    let Some(a) = analysis else { return (false, "the audio was not analysed".into()) };
    // From when our words start (the clip's leading silence not counted).
    let we_start = ours.speech_start;
    // The far end's speech that was going on when we started.
    let talking = a
        .speech_segments
        .iter()
        .map(|s| (CallTime::after(s.start), CallTime::after(s.end)))
        .find(|(s, e)| *s <= we_start && *e > we_start);
    let limit = human(stop_within);
    match talking {
        None => (false, format!("the far end was not talking when we started at {we_start}: nothing was interrupted")),
        Some((_, stopped)) => {
            let took = stopped - we_start;
            let ours_end = ours.end.unwrap_or(ours.speech_end);
            if stopped >= ours_end {
                (false, format!("the far end kept talking over us: still speaking when we stopped at {ours_end} (limit {limit})"))
            } else if took <= stop_within {
                (
                    true,
                    format!(
                        "the far end stopped {} after we started talking at {we_start} (limit {limit})",
                        human(took)
                    ),
                )
            } else {
                (
                    false,
                    format!(
                        "the far end stopped only {} after we started talking at {we_start}, later than {limit}",
                        human(took)
                    ),
                )
            }
        }
    }
}

/// Whether `heard` satisfies `expect`, and how well (for the detail).
pub fn said_matches(expect: &SaidExpectation, heard: &str) -> (bool, String) {
    match expect {
        SaidExpectation::Regex(pattern) => {
            let re = regex::RegexBuilder::new(pattern).case_insensitive(true).build();
            match re {
                Ok(re) => (re.is_match(heard) || re.is_match(&normalise(heard)), String::new()),
                Err(e) => (false, format!("(bad pattern: {e})")),
            }
        }
        SaidExpectation::AnyOf(words) => {
            let heard_n = format!(" {} ", normalise(heard));
            let found = words.iter().find(|w| heard_n.contains(&format!(" {} ", normalise(w))));
            match found {
                Some(w) => (true, format!("('{w}')")),
                None => (false, String::new()),
            }
        }
        SaidExpectation::Like { text, min } => {
            let sim = similarity(text, heard);
            (sim >= *min, format!("(similarity {sim:.2}, needs {min:.2})"))
        }
    }
}

/// Lower case, punctuation gone, digits as words ("427" → "four two seven").
pub fn normalise(text: &str) -> String {
    const DIGITS: [&str; 10] = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"];
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if let Some(d) = c.to_digit(10) {
            out.push(' ');
            out.push_str(DIGITS[d as usize]);
            out.push(' ');
        } else if c.is_alphanumeric() || c == '\'' {
            out.extend(c.to_lowercase());
        } else {
            out.push(' ');
        }
    }
    out.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// 1 − word error rate of `heard` against `expected` (after [`normalise`]),
/// floored at 0: 1.0 is word for word.
pub fn similarity(expected: &str, heard: &str) -> f64 {
    let e = normalise(expected);
    let h = normalise(heard);
    let e: Vec<&str> = e.split_whitespace().collect();
    let h: Vec<&str> = h.split_whitespace().collect();
    if e.is_empty() {
        return if h.is_empty() { 1.0 } else { 0.0 };
    }
    (1.0 - word_errors(&e, &h) as f64 / e.len() as f64).max(0.0)
}

/// Word-level edit distance (substitutions + deletions + insertions).
pub fn word_errors(reference: &[&str], hypothesis: &[&str]) -> usize {
    let mut prev: Vec<usize> = (0..=hypothesis.len()).collect();
    for (i, r) in reference.iter().enumerate() {
        let mut cur = vec![i + 1; hypothesis.len() + 1];
        for (j, h) in hypothesis.iter().enumerate() {
            let sub = prev[j] + usize::from(r != h);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[hypothesis.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalising_text() {
        assert_eq!(normalise("Your order number is 427."), "your order number is four two seven");
        assert_eq!(normalise("  Thank you, for calling!  "), "thank you for calling");
    }

    #[test]
    fn word_error_rate_counts_edits() {
        fn w(s: &str) -> Vec<&str> {
            s.split_whitespace().collect()
        }
        assert_eq!(word_errors(&w("a b c d"), &w("a b c d")), 0);
        assert_eq!(word_errors(&w("a b c d"), &w("a x c")), 2, "one substitution, one deletion");
        assert_eq!(word_errors(&w("a b"), &w("a b c")), 1);
        assert!((similarity("thank you for calling", "Thank you for calling.") - 1.0).abs() < 1e-9);
        assert!((similarity("you pressed one", "you pressed 1") - 1.0).abs() < 1e-9);
        assert!((similarity("a b c d", "a x c") - 0.5).abs() < 1e-9);
        assert_eq!(similarity("a b", "c d e f g"), 0.0);
    }

    #[test]
    fn said_expectations() {
        let heard = "Your order number is 427.";
        assert!(said_matches(&SaidExpectation::Regex("order number".into()), heard).0);
        assert!(said_matches(&SaidExpectation::Regex("four two seven".into()), heard).0, "digits as words too");
        assert!(!said_matches(&SaidExpectation::Regex("^goodbye".into()), heard).0);
        let any = SaidExpectation::AnyOf(vec!["refund".into(), "Order".into()]);
        assert_eq!(said_matches(&any, heard), (true, "('Order')".into()));
        assert!(!said_matches(&SaidExpectation::AnyOf(vec!["ord".into()]), heard).0, "whole words only");
        let like = SaidExpectation::Like { text: "your order number is four two seven".into(), min: 0.8 };
        assert_eq!(said_matches(&like, heard), (true, "(similarity 1.00, needs 0.80)".into()));
        let like = SaidExpectation::Like { text: "sorry I did not catch that".into(), min: 0.8 };
        assert!(!said_matches(&like, heard).0);
    }
}
