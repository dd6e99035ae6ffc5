//! Service-level objectives over a run, declared per scenario file: rules
//! on a percentile of a timing across the run's calls of that scenario
//! (`first_audio.p95 <= 2.5s`, `agent_join.p99 <= 3s`, `mos.p50 >= 4.0`,
//! `success >= 99%`), and a regression rule against the run history
//! (`p50` more than N % worse than the median of the last runs' p50). Each
//! becomes a check of the run, with the measured value and, when the
//! history has them, the same number in the last runs.

use serde::{Deserialize, Serialize};

use crate::load::sample::{CallSample, Metric};
use crate::load::stats::Percentiles;
use crate::report::model::Call;

/// Which number of the calls a rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quantile {
    P50,
    P95,
    P99,
    Max,
    Min,
}

impl Quantile {
    fn parse(text: &str) -> Option<Quantile> {
        Some(match text {
            "p50" => Quantile::P50,
            "p95" => Quantile::P95,
            "p99" => Quantile::P99,
            "max" => Quantile::Max,
            "min" => Quantile::Min,
            _ => return None,
        })
    }

    fn of(self, mut values: Vec<f64>) -> Option<f64> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let p = Percentiles::of(values.clone())?;
        Some(match self {
            Quantile::P50 => p.p50,
            Quantile::P95 => p.p95,
            Quantile::P99 => p.p99,
            Quantile::Max => p.max,
            Quantile::Min => values[0],
        })
    }
}

/// What a rule measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SloMetric {
    /// A timing (ms) or RTP loss (%), as the load report names them.
    Call(Metric),
    /// The received-direction MOS estimate.
    Mos,
    /// Calls that passed (flaky counts as passed), percent.
    Success,
}

impl SloMetric {
    fn parse(text: &str) -> Option<SloMetric> {
        match text {
            "mos" => Some(SloMetric::Mos),
            "success" => Some(SloMetric::Success),
            _ => Metric::parse(text).map(SloMetric::Call),
        }
    }

    fn name(self) -> &'static str {
        match self {
            SloMetric::Call(m) => m.name(),
            SloMetric::Mos => "mos",
            SloMetric::Success => "success",
        }
    }

    /// The metric's value for one call.
    fn value(self, call: &Call) -> Option<f64> {
        match self {
            SloMetric::Call(m) => CallSample::from_call(0, 0, String::new(), call).value(m),
            SloMetric::Mos => call.media.mos.as_ref().map(|m| m.received.mos),
            SloMetric::Success => Some(if call.verdict.passed() { 100.0 } else { 0.0 }),
        }
    }

    /// How a value is shown: a time, a MOS, a percentage.
    fn show(self, v: f64) -> String {
        match self {
            SloMetric::Mos => format!("{v:.2}"),
            SloMetric::Success => format!("{v:.1}%"),
            SloMetric::Call(Metric::LossPercent) => format!("{v:.2}%"),
            SloMetric::Call(_) => crate::time::human_ms(v),
        }
    }

    /// Whether a larger value is worse (times, loss) or better (MOS, success).
    fn larger_is_worse(self) -> bool {
        matches!(self, SloMetric::Call(_))
    }
}

/// A call as the rules see it: whether it passed, and its values by
/// metric name (from a call of this run, or a call in the history).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Observed {
    pub passed: bool,
    pub values: Vec<(String, f64)>,
}

impl Observed {
    pub fn of(call: &Call) -> Observed {
        let mut values = Vec::new();
        for metric in Metric::ALL.iter().map(|m| SloMetric::Call(*m)).chain([SloMetric::Mos]) {
            if let Some(v) = metric.value(call) {
                values.push((metric.name().to_string(), v));
            }
        }
        Observed { passed: call.verdict.passed(), values }
    }

    fn get(&self, metric: SloMetric) -> Option<f64> {
        match metric {
            SloMetric::Success => Some(if self.passed { 100.0 } else { 0.0 }),
            m => self.values.iter().find(|(n, _)| n == m.name()).map(|(_, v)| *v),
        }
    }
}

/// One `slo = [...]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct SloRule {
    pub text: String,
    metric: SloMetric,
    /// `None` for `success` (a rate over all calls).
    quantile: Option<Quantile>,
    at_most: bool,
    limit: f64,
}

/// `[regression]`: fail when a timing's p50 is this much worse than the
/// median of the p50s of the scenario's last runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Regression {
    pub worse_percent: f64,
    pub runs: usize,
    /// Metric names; empty: every timing the run measured.
    pub metrics: Vec<String>,
}

/// A scenario file's objectives.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScenarioSlo {
    pub rules: Vec<SloRule>,
    pub regression: Option<Regression>,
}

/// `calls[]`-level checks of a run: `slo[]` in report.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SloResult {
    /// The scenario the rule belongs to.
    pub scenario: String,
    /// `slo` or `regression`.
    pub kind: String,
    /// The rule as written.
    pub rule: String,
    pub passed: bool,
    /// e.g. "first_audio p95 3.10 s vs SLO 2.50 s; last 7 runs 1.90 s–2.20 s".
    pub detail: String,
}

/// The metric names a rule may use, for messages.
fn metric_names() -> String {
    let mut names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
    names.extend(["mos", "success"]);
    names.join(", ")
}

impl SloRule {
    /// `METRIC.QUANTILE <= LIMIT`, `METRIC.QUANTILE >= LIMIT`, or `success >= P%`.
    pub fn parse(text: &str) -> Result<SloRule, String> {
        let help = || {
            format!(
                "expected METRIC.pNN <= LIMIT or >= LIMIT (METRIC one of {}; pNN p50, p95, p99, max or min; e.g. first_audio.p95 <= 2.5s, mos.p50 >= 4.0, success >= 99%)",
                metric_names()
            )
        };
        let (left, at_most, right) = if let Some((l, r)) = text.split_once("<=") {
            (l, true, r)
        } else if let Some((l, r)) = text.split_once(">=") {
            (l, false, r)
        } else {
            return Err(help());
        };
        let left = left.trim();
        let (metric, quantile) = match left.split_once('.') {
            Some((m, q)) => {
                (SloMetric::parse(m.trim()).ok_or_else(help)?, Some(Quantile::parse(q.trim()).ok_or_else(help)?))
            }
            None => (SloMetric::parse(left).filter(|m| *m == SloMetric::Success).ok_or_else(help)?, None),
        };
        if (metric == SloMetric::Success) != quantile.is_none() {
            return Err(help());
        }
        let right = right.trim();
        let limit = match metric {
            SloMetric::Mos => right.parse::<f64>().ok().filter(|v| (1.0..=5.0).contains(v)).ok_or_else(help)?,
            SloMetric::Success | SloMetric::Call(Metric::LossPercent) => right
                .strip_suffix('%')
                .unwrap_or(right)
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| (0.0..=100.0).contains(v))
                .ok_or_else(help)?,
            SloMetric::Call(_) => crate::request::parse_duration(right).map_err(|_| help())?.as_secs_f64() * 1000.0,
        };
        Ok(SloRule { text: text.trim().to_string(), metric, quantile, at_most, limit })
    }

    fn measure(&self, calls: &[Observed]) -> Option<f64> {
        let values: Vec<f64> = calls.iter().filter_map(|c| c.get(self.metric)).collect();
        match self.quantile {
            Some(q) => q.of(values),
            None if values.is_empty() => None,
            None => Some(values.iter().sum::<f64>() / values.len() as f64),
        }
    }

    /// The rule over this run's calls; `past` are earlier runs' calls of the
    /// scenario (newest first), for context.
    pub fn check(&self, scenario: &str, calls: &[Observed], past: &[Vec<Observed>]) -> SloResult {
        let what = match self.quantile {
            Some(q) => format!("{} {}", self.metric.name(), quantile_name(q)),
            None => self.metric.name().to_string(),
        };
        let (passed, mut detail) = match self.measure(calls) {
            Some(v) => {
                let ok = if self.at_most { v <= self.limit } else { v >= self.limit };
                (ok, format!("{what} {} vs SLO {}", self.metric.show(v), self.metric.show(self.limit)))
            }
            None => (false, format!("{what} not measured in any of {} call(s)", calls.len())),
        };
        let earlier: Vec<f64> = past.iter().filter_map(|run| self.measure(run)).collect();
        if !earlier.is_empty() {
            let lo = earlier.iter().copied().fold(f64::MAX, f64::min);
            let hi = earlier.iter().copied().fold(f64::MIN, f64::max);
            detail.push_str(&format!(
                "; last {} run(s) {}–{}",
                earlier.len(),
                self.metric.show(lo),
                self.metric.show(hi)
            ));
        }
        SloResult { scenario: scenario.to_string(), kind: "slo".into(), rule: self.text.clone(), passed, detail }
    }
}

impl Regression {
    /// Each metric's p50 in this run against the median of the p50s of
    /// the last `runs` runs (`past`, newest first).
    pub fn check(&self, scenario: &str, calls: &[Observed], past: &[Vec<Observed>]) -> Vec<SloResult> {
        let metrics: Vec<SloMetric> = if self.metrics.is_empty() {
            Metric::ALL.iter().map(|m| SloMetric::Call(*m)).chain([SloMetric::Mos]).collect()
        } else {
            self.metrics.iter().filter_map(|m| SloMetric::parse(m)).collect()
        };
        let rule =
            format!("p50 not more than {}% worse than the median of the last {} runs", self.worse_percent, self.runs);
        let past = &past[..past.len().min(self.runs)];
        let mut out = Vec::new();
        for metric in metrics {
            let p50 = |cs: &[Observed]| Quantile::P50.of(cs.iter().filter_map(|c| c.get(metric)).collect());
            let Some(now) = p50(calls) else { continue };
            let mut earlier: Vec<f64> = past.iter().filter_map(|run| p50(run)).collect();
            if earlier.is_empty() {
                continue;
            }
            earlier.sort_by(f64::total_cmp);
            let median = earlier[earlier.len() / 2];
            let factor = self.worse_percent / 100.0;
            let worse =
                if metric.larger_is_worse() { now > median * (1.0 + factor) } else { now < median * (1.0 - factor) };
            out.push(SloResult {
                scenario: scenario.to_string(),
                kind: "regression".into(),
                rule: format!("{}: {rule}", metric.name()),
                passed: !worse,
                detail: format!(
                    "{} p50 {} vs median {} of the last {} run(s) ({}–{})",
                    metric.name(),
                    metric.show(now),
                    metric.show(median),
                    earlier.len(),
                    metric.show(earlier[0]),
                    metric.show(earlier[earlier.len() - 1])
                ),
            });
        }
        out
    }
}

fn quantile_name(q: Quantile) -> &'static str {
    match q {
        Quantile::P50 => "p50",
        Quantile::P95 => "p95",
        Quantile::P99 => "p99",
        Quantile::Max => "max",
        Quantile::Min => "min",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::{Direction, Message, Verdict};

    fn call(answer_ms: f64, verdict: Verdict) -> Observed {
        Observed::of(&full_call(answer_ms, verdict))
    }

    fn full_call(answer_ms: f64, verdict: Verdict) -> Call {
        let request = crate::request::CallRequest::new("sip:+1@127.0.0.1:9".into());
        let spec = request.prepare().expect("prepares");
        let mut c = Call::not_run(Some("s".into()), Vec::new(), &spec, "x");
        c.verdict = verdict;
        c.sip.connected_ms = Some(answer_ms);
        c.sip.messages = vec![Message {
            t_ms: 10.0,
            dir: Direction::In,
            peer: String::new(),
            first_line: "SIP/2.0 180 Ringing".into(),
            raw: String::new(),
        }];
        c
    }

    #[test]
    fn rules_parse_and_say_what_is_wrong() {
        assert!(SloRule::parse("first_audio.p95 <= 2.5s").is_ok());
        assert!(SloRule::parse("mos.p50 >= 4.0").is_ok());
        assert!(SloRule::parse("success >= 99%").is_ok());
        assert!(SloRule::parse("loss.max <= 1%").is_ok());
        for bad in [
            "first_audio.p90 <= 2s",
            "latency.p95 <= 2s",
            "mos.p50 >= 7",
            "success.p50 >= 9%",
            "answer <= 2s",
            "answer.p95 < 2s",
        ] {
            let e = SloRule::parse(bad).unwrap_err();
            assert!(e.contains("expected METRIC.pNN"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_breach_names_the_value_the_limit_and_the_last_runs() {
        let now = [call(400.0, Verdict::Pass), call(3_100.0, Verdict::Pass)];
        let past = vec![vec![call(1_900.0, Verdict::Pass)], vec![call(2_200.0, Verdict::Pass)]];
        let r = SloRule::parse("answer.p95 <= 2.5s").expect("rule").check("smoke", &now, &past);
        assert!(!r.passed);
        assert_eq!(r.detail, "answer p95 3.10 s vs SLO 2.50 s; last 2 run(s) 1.90 s–2.20 s");
        let ok = SloRule::parse("answer.p50 <= 2.5s").expect("rule").check("smoke", &now, &[]);
        assert!(ok.passed, "{}", ok.detail);
        let rate = SloRule::parse("success >= 99%").expect("rule");
        let mixed = [call(400.0, Verdict::Pass), call(400.0, Verdict::Fail)];
        let r = rate.check("smoke", &mixed, &[]);
        assert!(!r.passed && r.detail.starts_with("success 50.0% vs SLO 99.0%"), "{}", r.detail);
    }

    #[test]
    fn regression_compares_p50_with_the_median_of_the_last_runs() {
        let rule = Regression { worse_percent: 30.0, runs: 7, metrics: vec!["answer".into()] };
        let past: Vec<Vec<Observed>> =
            [1_000.0, 1_100.0, 900.0].iter().map(|a| vec![call(*a, Verdict::Pass)]).collect();
        let slow = [call(1_400.0, Verdict::Pass)];
        let r = rule.check("smoke", &slow, &past);
        assert_eq!(r.len(), 1);
        assert!(!r[0].passed, "1.4 s > 1.3 × 1.0 s");
        assert!(r[0].detail.contains("answer p50 1.40 s vs median 1.00 s of the last 3 run(s)"), "{}", r[0].detail);
        let fine = [call(1_250.0, Verdict::Pass)];
        assert!(rule.check("smoke", &fine, &past)[0].passed);
        assert!(rule.check("smoke", &fine, &[]).is_empty(), "no history, no verdict");
    }
}
