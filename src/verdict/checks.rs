//! The checks one call must pass. Each check names what was expected and
//! what happened, so a failing line reads as its own explanation.

use crate::call::CallRecord;
use crate::sip::caller::EndReason;

use super::describe_end;

/// What the user expects from the call.
#[derive(Debug, Clone, Default)]
pub struct Expectations {
    /// The exact sequence of final responses to our INVITEs (`407,200`).
    /// `None`: the call must be answered with a 2xx.
    pub final_responses: Option<Vec<u16>>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    pub detail: String,
}

fn statuses(record: &CallRecord) -> Vec<u16> {
    record.summary.final_responses.iter().map(|f| f.status).collect()
}

fn joined(codes: &[u16]) -> String {
    if codes.is_empty() {
        "none".into()
    } else {
        codes.iter().map(|c| c.to_string()).collect::<Vec<_>>().join(",")
    }
}

pub fn evaluate(record: &CallRecord, expect: &Expectations) -> Vec<Check> {
    let got = statuses(record);
    let ended = record.summary.ended.as_ref();
    let how = ended.map(describe_end).unwrap_or_else(|| "the call did not finish".into());
    let mut checks = Vec::new();
    let answered = got.last().is_some_and(|s| (200..300).contains(s));
    match &expect.final_responses {
        Some(want) => {
            let passed = *want == got;
            let detail = if passed {
                format!("expected {}, got {}", joined(want), joined(&got))
            } else {
                format!("expected {}, got {} — {how}", joined(want), joined(&got))
            };
            checks.push(Check { name: "final_responses".into(), passed, detail });
        }
        None => {
            let detail = if answered {
                format!("answered: final responses {}", joined(&got))
            } else {
                format!("not answered: final responses {} — {how}", joined(&got))
            };
            checks.push(Check { name: "call_answered".into(), passed: answered, detail });
        }
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
