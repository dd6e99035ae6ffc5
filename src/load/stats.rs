//! What a load step measured: success rate, percentiles of every
//! [`Metric`] over its calls, and its failures grouped by diagnosis.
//! Computed from [`CallSample`]s only, so shard reports merge by
//! concatenating their samples and computing again.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::sample::{CallSample, Metric};
use crate::report::model::Verdict;

/// p50/p95/p99/max of one metric over the calls that measured it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// Calls that measured it.
    pub n: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles; `None` without values.
    pub fn of(mut values: Vec<f64>) -> Option<Percentiles> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let rank = |p: f64| {
            let r = (p / 100.0 * values.len() as f64).ceil() as usize;
            values[r.clamp(1, values.len()) - 1]
        };
        Some(Percentiles { n: values.len(), p50: rank(50.0), p95: rank(95.0), p99: rank(99.0), max: rank(100.0) })
    }

    pub fn get(&self, which: Quantile) -> f64 {
        match which {
            Quantile::P50 => self.p50,
            Quantile::P95 => self.p95,
            Quantile::P99 => self.p99,
            Quantile::Max => self.max,
        }
    }
}

/// Which percentile a rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Quantile {
    P50,
    P95,
    P99,
    Max,
}

impl Quantile {
    pub fn parse(text: &str) -> Option<Quantile> {
        match text {
            "p50" => Some(Quantile::P50),
            "p95" => Some(Quantile::P95),
            "p99" => Some(Quantile::P99),
            "max" => Some(Quantile::Max),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Quantile::P50 => "p50",
            Quantile::P95 => "p95",
            Quantile::P99 => "p99",
            Quantile::Max => "max",
        }
    }
}

/// Calls of one step that failed the same way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureGroup {
    /// The diagnosis codes (or the failed check) the calls share.
    pub key: String,
    pub calls: usize,
    /// The first such call's folder, when its files were kept.
    pub example_dir: Option<String>,
}

/// One step, measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    pub step: usize,
    pub label: String,
    pub calls: usize,
    pub passed: usize,
    pub failed: usize,
    /// Calls the tester could not run (its own problem, not the far end's).
    pub errors: usize,
    /// passed / calls (0 without calls).
    pub success_rate: f64,
    /// Most calls under way at a start within the step.
    pub peak_concurrent: usize,
    /// Calls started per second over the step.
    pub achieved_cps: f64,
    /// By metric name.
    pub metrics: BTreeMap<String, Percentiles>,
    /// Our own RTP packets sent late, summed over the step's calls.
    pub tx_late_packets: u64,
    pub failures: Vec<FailureGroup>,
}

impl StepStats {
    /// The step's numbers from its calls' samples; `span_s` is how long the
    /// step started calls for.
    pub fn of(step: usize, label: &str, samples: &[&CallSample], span_s: f64) -> StepStats {
        let count = |v: Verdict| samples.iter().filter(|s| s.verdict == v).count();
        let (passed, failed, errors) = (count(Verdict::Pass), count(Verdict::Fail), count(Verdict::Error));
        let mut metrics = BTreeMap::new();
        for metric in Metric::ALL {
            let values: Vec<f64> = samples.iter().filter_map(|s| s.value(metric)).collect();
            if let Some(p) = Percentiles::of(values) {
                metrics.insert(metric.name().to_string(), p);
            }
        }
        let mut groups: BTreeMap<String, FailureGroup> = BTreeMap::new();
        for s in samples {
            if let Some(key) = s.failure_key() {
                let group = groups.entry(key.clone()).or_insert(FailureGroup { key, calls: 0, example_dir: None });
                group.calls += 1;
                if group.example_dir.is_none() {
                    group.example_dir = s.dir.clone();
                }
            }
        }
        let mut failures: Vec<FailureGroup> = groups.into_values().collect();
        failures.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.key.cmp(&b.key)));
        StepStats {
            step,
            label: label.to_string(),
            calls: samples.len(),
            passed,
            failed,
            errors,
            success_rate: if samples.is_empty() { 0.0 } else { passed as f64 / samples.len() as f64 },
            peak_concurrent: samples.iter().map(|s| s.concurrent_at_start).max().unwrap_or(0),
            achieved_cps: if span_s > 0.0 { samples.len() as f64 / span_s } else { 0.0 },
            metrics,
            tx_late_packets: samples.iter().map(|s| s.tx_late_packets).sum(),
            failures,
        }
    }

    pub fn metric(&self, metric: Metric) -> Option<&Percentiles> {
        self.metrics.get(metric.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let p = Percentiles::of((1..=100).map(f64::from).collect()).expect("values");
        assert_eq!((p.n, p.p50, p.p95, p.p99, p.max), (100, 50.0, 95.0, 99.0, 100.0));
        let one = Percentiles::of(vec![7.0]).expect("one value");
        assert_eq!((one.p50, one.p99, one.max), (7.0, 7.0, 7.0));
        assert!(Percentiles::of(Vec::new()).is_none());
    }

    fn sample(i: usize, verdict: Verdict, diagnosis: &[&str], answer: Option<f64>) -> CallSample {
        let mut s = CallSample::not_run(i, 0, format!("c{i}"), "x");
        s.verdict = verdict;
        s.diagnosis = diagnosis.iter().map(|d| d.to_string()).collect();
        s.answer_ms = answer;
        s.concurrent_at_start = i + 1;
        s
    }

    #[test]
    fn a_step_counts_groups_and_measures() {
        let samples = [
            sample(0, Verdict::Pass, &[], Some(100.0)),
            sample(1, Verdict::Pass, &[], Some(300.0)),
            sample(2, Verdict::Fail, &["sip_503"], None),
            sample(3, Verdict::Fail, &["sip_503"], None),
            sample(4, Verdict::Fail, &["agent_not_dispatched"], Some(200.0)),
        ];
        let refs: Vec<&CallSample> = samples.iter().collect();
        let stats = StepStats::of(0, "5 concurrent", &refs, 2.5);
        assert_eq!((stats.calls, stats.passed, stats.failed, stats.errors), (5, 2, 3, 0));
        assert!((stats.success_rate - 0.4).abs() < 1e-9);
        assert!((stats.achieved_cps - 2.0).abs() < 1e-9);
        assert_eq!(stats.peak_concurrent, 5);
        let answer = stats.metric(Metric::Answer).expect("answer measured");
        assert_eq!((answer.n, answer.p50, answer.max), (3, 200.0, 300.0));
        let keys: Vec<(&str, usize)> = stats.failures.iter().map(|g| (g.key.as_str(), g.calls)).collect();
        assert_eq!(keys, [("sip_503", 2), ("agent_not_dispatched", 1)]);
    }
}
