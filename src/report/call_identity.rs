//! How a call is named in the outputs (JUnit test case, HTML heading,
//! metrics label, webhook line).

use crate::report::model::Call;

/// The scenario's name for the call, when it has one.
pub fn call_name(call: &Call) -> Option<&str> {
    call.name.as_deref()
}

/// The scenario's tags for the call.
pub fn call_tags(call: &Call) -> &[String] {
    &call.tags
}

/// A name people can tell calls apart by: the scenario name, or the target
/// and test id.
pub fn display_name(call: &Call) -> String {
    match call_name(call) {
        Some(name) => name.to_string(),
        None => format!("{} [{}]", call.target, call.test_id),
    }
}

/// A stable label for time series: the scenario name, or the target (never
/// the per-call test id, which would make a new series on every run).
pub fn scenario_label(call: &Call) -> String {
    call_name(call).map_or_else(|| call.target.clone(), str::to_string)
}
