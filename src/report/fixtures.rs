//! Report values shared by the unit tests of the console and HTML renderers.

use super::model::{Conversation, Overlap, TurnReport};

/// A turn with only its speaker and span.
pub fn turn(speaker: &'static str, start_ms: f64, end_ms: f64) -> TurnReport {
    TurnReport { speaker, start_ms, end_ms, label: None, text: None, engine: None, error: None }
}

/// The far end's greeting at 2.02–2.41 s, heard as `text`.
pub fn greeting(text: &str) -> TurnReport {
    TurnReport { text: Some(text.into()), ..turn("agent", 2016.0, 2406.0) }
}

/// Our turn at 2.74–3.70 s, labelled `label`.
pub fn ours(label: &str) -> TurnReport {
    TurnReport { label: Some(label.into()), ..turn("us", 2736.0, 3700.25) }
}

/// A far-end turn at 5.86–7.10 s whose transcription failed with `error`.
pub fn failed(error: &str) -> TurnReport {
    TurnReport { error: Some(error.into()), ..turn("agent", 5860.0, 7100.0) }
}

/// `turns` with one reply of 2.16 s, one overlap at 3.60 s and a 1 s end of turn.
pub fn conversation(turns: Vec<TurnReport>) -> Conversation {
    Conversation {
        end_of_turn_ms: 1000,
        turns,
        reply_latencies_ms: vec![2160],
        reply_latency_p50_ms: Some(2160),
        reply_latency_p95_ms: Some(2160),
        reply_latency_max_ms: Some(2160),
        overlaps: vec![Overlap { start_ms: 3600.0, duration_ms: 100 }],
        transcripts_missing: None,
    }
}
