//! The knee of a load run: the first step where a rule the user set is
//! crossed — a percentile of a timing above its limit (`first_audio.p95>2s`),
//! or the success rate below its floor (`success<99%`). Each crossing names
//! the step, the rule and the measured value.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::sample::Metric;
use super::stats::{Quantile, StepStats};

/// One `--knee` rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum KneeRule {
    /// A percentile of a metric above a limit (ms, or % for loss).
    Above { metric: Metric, quantile: Quantile, limit: f64 },
    /// The success rate below a floor (0..1).
    SuccessBelow { floor: f64 },
}

/// The rules used when none is given.
pub const DEFAULT_RULES: &[&str] =
    &["success<99%", "answer.p95>3s", "agent_join.p95>3s", "first_audio.p95>3s", "loss.p95>1%"];

impl KneeRule {
    /// `metric.pNN>limit` (limit a duration like `2s`/`800ms`, or a
    /// percentage for `loss`), or `success<NN%`.
    pub fn parse(text: &str) -> Result<KneeRule, String> {
        let text = text.trim();
        let help = || {
            let names: Vec<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
            format!(
                "--knee '{text}': expected METRIC.pNN>LIMIT (METRIC one of {}; pNN p50, p95, p99 or max; e.g. first_audio.p95>2s, loss.p99>1%) or success<PERCENT (e.g. success<99%)",
                names.join(", ")
            )
        };
        if let Some(floor) = text.strip_prefix("success<") {
            let floor = parse_percent(floor).ok_or_else(help)?;
            return Ok(KneeRule::SuccessBelow { floor: floor / 100.0 });
        }
        let (left, limit) = text.split_once('>').ok_or_else(help)?;
        let (metric, quantile) = left.trim().split_once('.').ok_or_else(help)?;
        let metric = Metric::parse(metric.trim()).ok_or_else(help)?;
        let quantile = Quantile::parse(quantile.trim()).ok_or_else(help)?;
        let limit = if metric.unit() == "%" {
            parse_percent(limit).ok_or_else(help)?
        } else {
            let d: Duration = crate::request::parse_duration(limit.trim()).map_err(|_| help())?;
            d.as_secs_f64() * 1000.0
        };
        Ok(KneeRule::Above { metric, quantile, limit })
    }

    /// The rule as the user wrote it (normalised).
    pub fn describe(&self) -> String {
        match self {
            KneeRule::Above { metric, quantile, limit } => {
                format!("{}.{} > {}", metric.name(), quantile.name(), show(*limit, metric.unit()))
            }
            KneeRule::SuccessBelow { floor } => format!("success < {}%", super::plan::trim_float(floor * 100.0)),
        }
    }

    /// The crossing in this step, if the rule is crossed there.
    pub fn crossed(&self, step: &StepStats) -> Option<Crossing> {
        let (value, crossed, unit) = match self {
            KneeRule::Above { metric, quantile, limit } => {
                let value = step.metric(*metric)?.get(*quantile);
                (value, value > *limit, metric.unit())
            }
            KneeRule::SuccessBelow { floor } => {
                if step.calls == 0 {
                    return None;
                }
                (step.success_rate * 100.0, step.success_rate < *floor, "%")
            }
        };
        crossed.then(|| Crossing {
            step: step.step,
            step_label: step.label.clone(),
            rule: self.describe(),
            measured: show(value, unit),
        })
    }
}

/// A rule crossed in a step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Crossing {
    pub step: usize,
    pub step_label: String,
    pub rule: String,
    pub measured: String,
}

/// The knee: every rule crossed at the first step where any is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Knee {
    pub step: usize,
    pub step_label: String,
    pub crossings: Vec<Crossing>,
}

/// The first step where a rule is crossed, or `None`.
pub fn find_knee(steps: &[StepStats], rules: &[KneeRule]) -> Option<Knee> {
    steps.iter().find_map(|step| {
        let crossings: Vec<Crossing> = rules.iter().filter_map(|r| r.crossed(step)).collect();
        (!crossings.is_empty()).then(|| Knee { step: step.step, step_label: step.label.clone(), crossings })
    })
}

fn parse_percent(text: &str) -> Option<f64> {
    let text = text.trim();
    let number = text.strip_suffix('%').unwrap_or(text).trim();
    number.parse::<f64>().ok().filter(|v| (0.0..=100.0).contains(v))
}

fn show(value: f64, unit: &str) -> String {
    if unit == "%" {
        format!("{}%", super::plan::trim_float(value))
    } else {
        crate::time::human_ms(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::sample::CallSample;
    use crate::report::model::Verdict;

    #[test]
    fn rules_parse() {
        assert_eq!(
            KneeRule::parse("first_audio.p95>2s"),
            Ok(KneeRule::Above { metric: Metric::FirstAudio, quantile: Quantile::P95, limit: 2000.0 })
        );
        assert_eq!(KneeRule::parse("success<99%"), Ok(KneeRule::SuccessBelow { floor: 0.99 }));
        assert_eq!(
            KneeRule::parse("loss.max>1.5%"),
            Ok(KneeRule::Above { metric: Metric::LossPercent, quantile: Quantile::Max, limit: 1.5 })
        );
        let e = KneeRule::parse("first_audio.p90>2s").unwrap_err();
        assert!(e.contains("p50, p95, p99 or max"), "{e}");
        assert!(KneeRule::parse("latency>2s").is_err());
        for rule in DEFAULT_RULES {
            assert!(KneeRule::parse(rule).is_ok(), "{rule}");
        }
    }

    fn step(i: usize, answers: &[f64], failed: usize) -> StepStats {
        let mut samples = Vec::new();
        for (n, a) in answers.iter().enumerate() {
            let mut s = CallSample::not_run(n, i, "c".into(), "x");
            s.verdict = Verdict::Pass;
            s.diagnosis.clear();
            s.answer_ms = Some(*a);
            samples.push(s);
        }
        for n in 0..failed {
            let mut s = CallSample::not_run(100 + n, i, "c".into(), "x");
            s.verdict = Verdict::Fail;
            samples.push(s);
        }
        let refs: Vec<&CallSample> = samples.iter().collect();
        StepStats::of(i, &format!("step {i}"), &refs, 1.0)
    }

    #[test]
    fn the_knee_is_the_first_step_crossing_any_rule() {
        let rules = [KneeRule::parse("answer.p95>1s").expect("rule"), KneeRule::parse("success<90%").expect("rule")];
        let steps = [step(0, &[400.0, 500.0], 0), step(1, &[400.0, 1500.0], 0), step(2, &[2000.0], 3)];
        let knee = find_knee(&steps, &rules).expect("a knee");
        assert_eq!(knee.step, 1);
        assert_eq!(knee.crossings.len(), 1);
        assert_eq!(knee.crossings[0].rule, "answer.p95 > 1.00 s");
        assert_eq!(knee.crossings[0].measured, "1.50 s");
        assert!(find_knee(&steps[..1], &rules).is_none());
        let at_two = find_knee(&steps[2..], &rules).expect("knee");
        assert_eq!(at_two.crossings.len(), 2, "both rules are named");
    }
}
