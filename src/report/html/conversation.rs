//! A call's conversation in the page (`calls[].conversation`): a table of
//! both sides' turns in time order — what the agent said (or why there is no
//! text), what we sent — and a line with the reply latencies and the
//! overlaps; also the turns as marks for the waveform. All text from the
//! call goes through [`text`].

use std::fmt::Write;

use super::escape::text;
use super::waveform::TurnSpan;
use crate::report::model::{Conversation, TurnReport};
use crate::time::human_ms;

/// The "Conversation" heading, the turns table and the latency line.
pub fn section(page: &mut String, conversation: &Conversation) {
    page.push_str(r#"<h3>Conversation</h3><div class="conversation">"#);
    let turns = in_time_order(conversation);
    if turns.is_empty() {
        page.push_str(r#"<p class="sub">No turns: neither side spoke.</p>"#);
    } else {
        page.push_str(r#"<table class="turns"><tr><th>who</th><th>when</th><th>said</th></tr>"#);
        for turn in turns {
            let agent = is_agent(turn);
            let _ = write!(
                page,
                r#"<tr class="turn {class}"><td class="who">{who}</td><td class="when">{when}</td><td class="said">{said}</td></tr>"#,
                class = if agent { "agent" } else { "us" },
                who = if agent { "Agent" } else { "Us" },
                when = text(&span_seconds(turn)),
                said = said_html(turn, conversation.transcripts_missing.as_deref()),
            );
        }
        page.push_str("</table>");
    }
    let _ = write!(page, r#"<p class="turn-stats">{}</p></div>"#, text(&stats_line(conversation)));
}

/// The turns as spans on the waveform: the agent's on the rx lane, ours on the tx lane.
pub fn turn_spans(conversation: &Conversation) -> Vec<TurnSpan> {
    in_time_order(conversation)
        .into_iter()
        .map(|turn| {
            let agent = is_agent(turn);
            let what = if agent {
                turn.text.as_ref().map(|t| format!(": “{}”", t.trim())).unwrap_or_default()
            } else {
                turn.label.as_ref().map(|l| format!(": {l}")).unwrap_or_default()
            };
            TurnSpan {
                start_ms: turn.start_ms,
                end_ms: turn.end_ms,
                far_end: agent,
                title: format!("{} turn {}{what}", if agent { "agent" } else { "our" }, span_seconds(turn)),
            }
        })
        .collect()
}

fn in_time_order(conversation: &Conversation) -> Vec<&TurnReport> {
    let mut turns: Vec<&TurnReport> = conversation.turns.iter().collect();
    turns.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
    turns
}

fn is_agent(turn: &TurnReport) -> bool {
    turn.speaker != "us"
}

/// `2.02–2.41 s`.
fn span_seconds(turn: &TurnReport) -> String {
    format!("{:.2}–{:.2} s", turn.start_ms / 1000.0, turn.end_ms / 1000.0)
}

/// The third column: the agent's words (or why there are none), or our clip, text or keys.
fn said_html(turn: &TurnReport, missing: Option<&str>) -> String {
    if !is_agent(turn) {
        return format!(r#"<span class="ours">{}</span>"#, text(turn.label.as_deref().unwrap_or("—")));
    }
    match (&turn.text, &turn.error, missing) {
        (Some(heard), _, _) if heard.trim().is_empty() => {
            format!(r#"<span class="sub">heard no words{}</span>"#, engine_html(turn))
        }
        (Some(heard), _, _) => format!(r#"<q class="heard">{}</q>{}"#, text(heard.trim()), engine_html(turn)),
        (None, Some(error), _) => format!(r#"<span class="sub no-text">no text: {}</span>"#, text(error)),
        (None, None, Some(why)) => format!(r#"<span class="sub no-text">not transcribed: {}</span>"#, text(why)),
        (None, None, None) => r#"<span class="sub no-text">not transcribed</span>"#.to_string(),
    }
}

fn engine_html(turn: &TurnReport) -> String {
    turn.engine.as_ref().map(|e| format!(r#" <span class="engine">{}</span>"#, text(e))).unwrap_or_default()
}

/// `reply latency p50 2.16 s · p95 2.16 s · max 2.16 s (1 reply) · 1 overlap: 3.60 s for 100 ms · …`.
fn stats_line(c: &Conversation) -> String {
    let mut parts = Vec::new();
    match (c.reply_latency_p50_ms, c.reply_latency_p95_ms, c.reply_latency_max_ms) {
        (Some(p50), Some(p95), Some(max)) => {
            let replies = c.reply_latencies_ms.len();
            parts.push(format!(
                "reply latency p50 {} · p95 {} · max {} ({replies} repl{})",
                human_ms(p50 as f64),
                human_ms(p95 as f64),
                human_ms(max as f64),
                if replies == 1 { "y" } else { "ies" }
            ));
        }
        _ => parts.push("reply latency: no replies to our turns".into()),
    }
    if c.overlaps.is_empty() {
        parts.push("no overlaps".into());
    } else {
        let at: Vec<String> = c
            .overlaps
            .iter()
            .map(|o| format!("{:.2} s for {}", o.start_ms / 1000.0, human_ms(o.duration_ms as f64)))
            .collect();
        parts.push(format!(
            "{} overlap{}: {}",
            c.overlaps.len(),
            if c.overlaps.len() == 1 { "" } else { "s" },
            at.join(", ")
        ));
    }
    parts.push(format!("a turn ends after {} of silence", human_ms(c.end_of_turn_ms as f64)));
    parts.join(" · ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::{conversation, failed, greeting, ours, turn};

    #[test]
    fn turns_are_listed_in_time_order_with_escaped_text() {
        let ours = ours("\"<b>What is my order?</b>\"");
        let mut greeting = greeting(" Thank you <script>x</script> ");
        greeting.engine = Some("whisper tiny.en".into());
        let failed = failed("HTTP 503");
        let mut page = String::new();
        section(&mut page, &conversation(vec![ours, failed, greeting]));
        let rows: Vec<&str> = page.split("<tr class=\"turn ").skip(1).collect();
        assert_eq!(rows.len(), 3, "{page}");
        assert!(rows[0].starts_with("agent\"") && rows[0].contains("2.02–2.41 s"), "{}", rows[0]);
        assert!(rows[0].contains("<q class=\"heard\">Thank you &lt;script&gt;x&lt;/script&gt;</q>"), "{}", rows[0]);
        assert!(rows[0].contains("whisper tiny.en"));
        assert!(rows[1].starts_with("us\"") && rows[1].contains("&quot;&lt;b&gt;What is my order?&lt;/b&gt;&quot;"));
        assert!(rows[2].contains("no text: HTTP 503"), "{}", rows[2]);
        assert!(!page.contains("<script>") && !page.contains("<b>"));
        assert!(
            page.contains(
                "reply latency p50 2.16 s · p95 2.16 s · max 2.16 s (1 reply) · 1 overlap: 3.60 s for 100 ms · a turn ends after 1.00 s of silence"
            ),
            "{page}"
        );
    }

    #[test]
    fn untranscribed_turns_say_why_and_a_silent_call_says_so() {
        let mut c = conversation(vec![turn("agent", 100.0, 900.0)]);
        c.transcripts_missing = Some("no speech-to-text engine".into());
        c.reply_latencies_ms.clear();
        (c.reply_latency_p50_ms, c.reply_latency_p95_ms, c.reply_latency_max_ms) = (None, None, None);
        c.overlaps.clear();
        let mut page = String::new();
        section(&mut page, &c);
        assert!(page.contains("not transcribed: no speech-to-text engine"), "{page}");
        assert!(page.contains("reply latency: no replies to our turns · no overlaps"), "{page}");

        let mut silent = String::new();
        section(&mut silent, &conversation(Vec::new()));
        assert!(silent.contains("No turns") && !silent.contains("<table"), "{silent}");
    }

    #[test]
    fn turn_spans_put_the_agent_on_the_far_end_lane() {
        let greeting = greeting("Thank you for calling.");
        let ours = ours("DTMF 1#");
        let spans = turn_spans(&conversation(vec![ours, greeting]));
        let got: Vec<(bool, &str)> = spans.iter().map(|s| (s.far_end, s.title.as_str())).collect();
        assert_eq!(
            got,
            [(true, "agent turn 2.02–2.41 s: “Thank you for calling.”"), (false, "our turn 2.74–3.70 s: DTMF 1#")]
        );
    }
}
