//! What a load run publishes in its run folder: `load.json` (the plan, the
//! rules, every step's numbers, the knee, and one row per call — enough to
//! merge shards and compute again), `junit.xml` (one test case per step:
//! failed where a rule is crossed) and `index.html` (see [`super::page`]).
//! The calls that kept their files are in the run's usual `report.json`
//! and `calls.html` (written by the caller with the suite writers).

use std::path::{Path, PathBuf};
use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, TestCase, TestCaseStatus, TestSuite};
use serde::{Deserialize, Serialize};

use super::knee::{find_knee, Knee, KneeRule};
use super::runner::LoadOutcome;
use super::sample::CallSample;
use super::stats::StepStats;
use crate::report::model::Verdict;

/// load.json's layout version; only additions keep it.
pub const LOAD_SCHEMA_VERSION: u32 = 1;

/// Which shard of a sharded load run this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardOf {
    pub index: usize,
    pub count: usize,
}

/// `load.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadReport {
    pub schema_version: u32,
    pub tool: String,
    pub version: String,
    /// `pass`: no rule crossed; `fail`: the knee was found; `error`: interrupted.
    pub verdict: Verdict,
    /// The plan, one line.
    pub plan: String,
    /// The steps' labels, in order (also those no call started in).
    pub step_labels: Vec<String>,
    /// How long each step started calls for, seconds.
    pub step_spans_s: Vec<f64>,
    pub rules: Vec<KneeRule>,
    pub started_unix_ms: u64,
    pub elapsed_s: f64,
    pub interrupted: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub shard: Option<ShardOf>,
    pub steps: Vec<StepStats>,
    pub knee: Option<Knee>,
    /// Our own RTP packets sent late, over the run (the tester's overload).
    pub tx_late_packets: u64,
    pub calls: Vec<CallSample>,
}

impl LoadReport {
    /// The report of a finished run.
    pub fn new(
        plan: String,
        step_labels: Vec<String>,
        rules: Vec<KneeRule>,
        started_unix_ms: u64,
        outcome: &LoadOutcome,
        shard: Option<ShardOf>,
    ) -> LoadReport {
        let mut report = LoadReport {
            schema_version: LOAD_SCHEMA_VERSION,
            tool: "callprobe".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            verdict: Verdict::Pass,
            plan,
            step_labels,
            step_spans_s: outcome.step_spans.clone(),
            rules,
            started_unix_ms,
            elapsed_s: outcome.elapsed.as_secs_f64(),
            interrupted: outcome.interrupted,
            shard,
            steps: Vec::new(),
            knee: None,
            tx_late_packets: 0,
            calls: outcome.samples.clone(),
        };
        report.compute();
        report
    }

    /// Steps, knee, verdict from the calls (again, after a merge).
    fn compute(&mut self) {
        self.steps = (0..self.step_labels.len())
            .map(|i| {
                let samples: Vec<&CallSample> = self.calls.iter().filter(|c| c.step == i).collect();
                let span = self.step_spans_s.get(i).copied().unwrap_or(0.0);
                StepStats::of(i, &self.step_labels[i], &samples, span)
            })
            .filter(|s| s.calls > 0)
            .collect();
        self.knee = find_knee(&self.steps, &self.rules);
        self.tx_late_packets = self.calls.iter().map(|c| c.tx_late_packets).sum();
        self.verdict = if self.interrupted {
            Verdict::Error
        } else if self.knee.is_some() {
            Verdict::Fail
        } else {
            Verdict::Pass
        };
    }

    /// Shards of one load run, as one run: calls together in start order,
    /// each step's span the longest of the shards'.
    pub fn merge(shards: Vec<LoadReport>) -> Result<LoadReport, String> {
        let Some(first) = shards.first().cloned() else { return Err("nothing to merge".into()) };
        let count = first.shard.map_or(1, |s| s.count);
        let mut seen = vec![false; count];
        for s in &shards {
            let Some(shard) = s.shard.filter(|sh| sh.count == count && sh.index < count) else {
                return Err(format!("every load report must be a shard of {count} (--shard i/{count})"));
            };
            if std::mem::replace(&mut seen[shard.index], true) {
                return Err(format!("shard {}/{count} is given twice", shard.index));
            }
            if s.plan != first.plan || s.step_labels.len() != first.step_labels.len() {
                return Err(format!("shard {}/{count} ran another plan: '{}'", shard.index, s.plan));
            }
        }
        let missing: Vec<String> =
            seen.iter().enumerate().filter(|(_, s)| !**s).map(|(i, _)| format!("{i}/{count}")).collect();
        if !missing.is_empty() {
            return Err(format!("missing shard(s) {}", missing.join(", ")));
        }
        let mut merged = first.clone();
        merged.shard = None;
        merged.calls = shards.iter().flat_map(|s| s.calls.iter().cloned()).collect();
        merged.calls.sort_by_key(|c| (c.started_ms, c.index));
        merged.step_spans_s = (0..first.step_labels.len())
            .map(|i| shards.iter().filter_map(|s| s.step_spans_s.get(i).copied()).fold(0.0, f64::max))
            .collect();
        merged.interrupted = shards.iter().any(|s| s.interrupted);
        merged.started_unix_ms = shards.iter().map(|s| s.started_unix_ms).min().unwrap_or(0);
        merged.elapsed_s = shards.iter().map(|s| s.elapsed_s).fold(0.0, f64::max);
        merged.compute();
        Ok(merged)
    }

    pub fn read(path: &Path) -> Result<LoadReport, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{} is not a load report: {e}", path.display()))
    }

    /// load.json, junit.xml and index.html in `run_dir`.
    pub fn write(&self, run_dir: &Path, suite_name: &str) -> Result<PathBuf, String> {
        let json = serde_json::to_string_pretty(self).map_err(|e| format!("cannot serialise the load report: {e}"))?;
        write_file(&run_dir.join("load.json"), json.as_bytes())?;
        write_file(&run_dir.join("junit.xml"), self.junit(suite_name)?.as_bytes())?;
        let page = run_dir.join("index.html");
        write_file(&page, super::page::render(self).as_bytes())?;
        Ok(page)
    }

    fn junit(&self, suite_name: &str) -> Result<String, String> {
        let mut suite = TestSuite::new(suite_name);
        for step in &self.steps {
            let crossings: Vec<String> = self
                .rules
                .iter()
                .filter_map(|r| r.crossed(step))
                .map(|c| format!("{}: measured {}", c.rule, c.measured))
                .collect();
            let status = if crossings.is_empty() {
                TestCaseStatus::success()
            } else {
                let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                status.set_message(crossings.join("; "));
                let failures: Vec<String> =
                    step.failures.iter().map(|f| format!("{} call(s): {}", f.calls, f.key)).collect();
                status.set_description(failures.join("\n"));
                status
            };
            let mut case = TestCase::new(format!("step {}: {}", step.step + 1, step.label), status);
            case.set_classname(suite_name);
            case.set_time(Duration::from_secs_f64(self.step_spans_s.get(step.step).copied().unwrap_or(0.0)));
            case.set_assertions(self.rules.len());
            case.add_property(Property::new("calls", step.calls.to_string().as_str()));
            case.add_property(Property::new("passed", step.passed.to_string().as_str()));
            suite.add_test_case(case);
        }
        let mut junit = quick_junit::Report::new(suite_name);
        junit.add_test_suite(suite);
        junit.to_string().map_err(|e| format!("cannot serialise the JUnit report: {e}"))
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(index: usize, calls: &[(usize, u64, Verdict)]) -> LoadReport {
        let samples = calls
            .iter()
            .map(|(i, at, v)| {
                let mut s = CallSample::not_run(*i, 0, "c".into(), "x");
                s.verdict = *v;
                s.diagnosis.clear();
                s.started_ms = *at;
                s
            })
            .collect();
        let outcome = LoadOutcome {
            samples,
            kept: Vec::new(),
            step_spans: vec![2.0 + index as f64],
            interrupted: false,
            elapsed: Duration::from_secs(3),
        };
        let rules = vec![KneeRule::parse("success<100%").expect("rule")];
        LoadReport::new("2 CPS".into(), vec!["2 CPS".into()], rules, 1000, &outcome, Some(ShardOf { index, count: 2 }))
    }

    #[test]
    fn shards_merge_into_one_run() {
        let a = shard(0, &[(0, 0, Verdict::Pass), (2, 1000, Verdict::Pass)]);
        let b = shard(1, &[(1, 500, Verdict::Fail)]);
        assert_eq!(a.verdict, Verdict::Pass);
        let merged = LoadReport::merge(vec![b.clone(), a.clone()]).expect("merges");
        assert_eq!(merged.calls.iter().map(|c| c.index).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!((merged.steps[0].calls, merged.steps[0].passed), (3, 2));
        assert_eq!(merged.step_spans_s, [3.0]);
        assert_eq!(merged.verdict, Verdict::Fail, "the merged run crosses success<100%");
        assert!(merged.shard.is_none());
        let e = LoadReport::merge(vec![a.clone()]).unwrap_err();
        assert!(e.contains("missing shard(s) 1/2"), "{e}");
        let e = LoadReport::merge(vec![a.clone(), a]).unwrap_err();
        assert!(e.contains("given twice"), "{e}");
    }
}
