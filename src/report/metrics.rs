//! `--metrics-file`: the run as Prometheus metrics for node_exporter's
//! textfile collector (text format 0.0.4, encoded by prometheus-client;
//! written to a temporary file and renamed, so the collector never reads a
//! half-written file).
//!
//! One series per scenario and target (`scenario` is the call's scenario
//! name, or its target when it has none: never the per-call test id, which
//! would start a new series on every run). A timing that was not measured
//! (no answer, no speech, no LiveKit) is left out rather than written as 0.
//! The estimated MOS has a `direction` label besides (`received`; `sent`
//! only when the far end's RTCP reports were read).
//! A flaky call (passed on a retry) counts as passed, and is counted again
//! as flaky (`callprobe_call_flaky`, `callprobe_run_flaky_calls`).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::call_identity::scenario_label;
use super::model::{Call, Report};
use crate::report::model::Verdict;

type Labels = Vec<(String, String)>;
type GaugeF64 = Gauge<f64, AtomicU64>;

/// Writes the run's metrics to `path` (atomically: temp file + rename).
pub fn write_metrics(report: &Report, path: &Path) -> Result<(), String> {
    let text = metrics_text(report)?;
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let file_name = path.file_name().ok_or_else(|| format!("metrics file {} has no file name", path.display()))?;
    // The textfile collector only reads `*.prom`, so a `.tmp` name is never picked up.
    let temporary = dir.join(format!(".{}.{}.tmp", file_name.to_string_lossy(), std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&temporary);
        return Err(format!("cannot write {}: {e}", temporary.display()));
    }
    std::fs::rename(&temporary, path).map_err(|e| {
        let _ = std::fs::remove_file(&temporary);
        format!("cannot move {} to {}: {e}", temporary.display(), path.display())
    })
}

/// What one scenario/target pair measured in this run.
#[derive(Default)]
struct ScenarioValues {
    passed: bool,
    flaky: bool,
    setup_seconds: Option<f64>,
    agent_join_seconds: Option<f64>,
    first_audio_seconds: Option<f64>,
    response_latency_seconds: Option<f64>,
    /// Estimated MOS of what callprobe heard, and of what the far end heard.
    mos_received: Option<f64>,
    mos_sent: Option<f64>,
}

impl ScenarioValues {
    fn of(call: &Call) -> ScenarioValues {
        ScenarioValues {
            passed: call.verdict.passed(),
            flaky: call.verdict == Verdict::Flaky,
            setup_seconds: call.sip.connected_ms.map(seconds),
            agent_join_seconds: call.livekit.as_ref().and_then(|lk| lk.agents.first()).map(|a| seconds(a.joined_ms)),
            first_audio_seconds: call.media.first_audio_ms.map(|ms| seconds(ms as f64)),
            response_latency_seconds: call.media.response_latency_ms.map(|ms| seconds(ms as f64)),
            mos_received: call.media.mos.as_ref().map(|m| m.received.mos),
            mos_sent: call.media.mos.as_ref().and_then(|m| m.sent.map(|e| e.mos)),
        }
    }

    /// The same scenario and target twice in one run: passed only if both
    /// passed; the later call's timings win where it has them.
    fn merge(&mut self, later: ScenarioValues) {
        self.passed &= later.passed;
        self.flaky |= later.flaky;
        self.setup_seconds = later.setup_seconds.or(self.setup_seconds);
        self.agent_join_seconds = later.agent_join_seconds.or(self.agent_join_seconds);
        self.first_audio_seconds = later.first_audio_seconds.or(self.first_audio_seconds);
        self.response_latency_seconds = later.response_latency_seconds.or(self.response_latency_seconds);
        self.mos_received = later.mos_received.or(self.mos_received);
        self.mos_sent = later.mos_sent.or(self.mos_sent);
    }
}

/// The Prometheus text exposition of the run.
pub fn metrics_text(report: &Report) -> Result<String, String> {
    let mut per_scenario: BTreeMap<(String, String), ScenarioValues> = BTreeMap::new();
    for call in &report.calls {
        let values = ScenarioValues::of(call);
        match per_scenario.entry((scenario_label(call), call.target.clone())) {
            std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().merge(values),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(values);
            }
        }
    }

    let mut registry = Registry::default();
    let mut family = |name: &str, help: &str| {
        let f = Family::<Labels, GaugeF64>::default();
        registry.register(name, help, f.clone());
        f
    };
    let passed = family(
        "callprobe_call_passed",
        "1 when every check of the scenario's call passed (also on a retry: see callprobe_call_flaky), else 0",
    );
    let flaky = family("callprobe_call_flaky", "1 when the scenario's call failed and then passed on a retry, else 0");
    let setup = family("callprobe_call_setup_seconds", "From the first INVITE to the 2xx being ACKed");
    let agent_join = family(
        "callprobe_agent_join_seconds",
        "From the INVITE that got through to the first agent joining the LiveKit room",
    );
    let first_audio = family("callprobe_first_audio_seconds", "From the 200 OK to the far end's first speech");
    let response =
        family("callprobe_response_latency_seconds", "From the end of our utterance to the far end's next speech");
    let mos = family(
        "callprobe_call_mos",
        "Estimated MOS (ITU-T G.107 E-model from RTP loss, jitter and codec; 1 to 4.5) by direction: \
         received = what callprobe heard, sent = what the far end heard (only with its RTCP reports)",
    );
    for ((scenario, target), v) in &per_scenario {
        let labels: Labels = vec![("scenario".into(), scenario.clone()), ("target".into(), target.clone())];
        passed.get_or_create(&labels).set(bool_value(v.passed));
        flaky.get_or_create(&labels).set(bool_value(v.flaky));
        let series = [
            (&setup, v.setup_seconds),
            (&agent_join, v.agent_join_seconds),
            (&first_audio, v.first_audio_seconds),
            (&response, v.response_latency_seconds),
        ];
        for (metric, value) in series {
            if let Some(value) = value.filter(|x| x.is_finite()) {
                metric.get_or_create(&labels).set(value);
            }
        }
        for (direction, value) in [("received", v.mos_received), ("sent", v.mos_sent)] {
            if let Some(value) = value.filter(|x| x.is_finite()) {
                let mut labels = labels.clone();
                labels.push(("direction".into(), direction.into()));
                mos.get_or_create(&labels).set(value);
            }
        }
    }

    let run_gauge = |registry: &mut Registry, name: &str, help: &str, value: f64| {
        let g = GaugeF64::default();
        g.set(value);
        registry.register(name, help, g);
    };
    let failed = report.calls.iter().filter(|c| !c.verdict.passed()).count();
    let flaky_calls = report.calls.iter().filter(|c| c.verdict == Verdict::Flaky).count();
    run_gauge(
        &mut registry,
        "callprobe_run_passed",
        "1 when every call of the run passed (flaky calls too), else 0",
        bool_value(report.verdict.passed()),
    );
    run_gauge(&mut registry, "callprobe_run_calls", "Calls placed in the run", report.calls.len() as f64);
    run_gauge(&mut registry, "callprobe_run_failed_calls", "Calls of the run that did not pass", failed as f64);
    run_gauge(
        &mut registry,
        "callprobe_run_flaky_calls",
        "Calls of the run that failed and then passed on a retry",
        flaky_calls as f64,
    );
    run_gauge(
        &mut registry,
        "callprobe_run_timestamp_seconds",
        "When the run started (its first call), Unix time",
        run_started_seconds(report),
    );

    let mut text = String::new();
    prometheus_text::encode(&mut text, &registry).map_err(|e| format!("cannot encode the metrics: {e}"))?;
    Ok(text)
}

/// Milliseconds → seconds, rounded to the microsecond (no `0.30560000000000004`).
fn seconds(ms: f64) -> f64 {
    (ms * 1000.0).round() / 1_000_000.0
}

fn bool_value(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// The earliest call start; now when the run has no calls.
fn run_started_seconds(report: &Report) -> f64 {
    match report.calls.iter().map(|c| c.started_unix_ms).filter(|&ms| ms > 0).min() {
        Some(ms) => ms as f64 / 1000.0,
        None => SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0),
    }
}
