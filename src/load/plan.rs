//! What a load run asks for: its steps — open-loop arrivals at a rate
//! (`--cps`), or a ramp of concurrency levels (`--ramp 1,2,4`) — and when
//! each step ends (a duration or a number of calls started).

use std::time::Duration;

/// How a step starts its calls.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Arrival {
    /// Open loop: a call every 1/cps seconds, whatever the calls under way do.
    Rate { cps: f64 },
    /// Keep this many calls up: start one whenever fewer are under way (new
    /// calls at most `max_cps` per second, so a step's first calls do not
    /// arrive as one burst).
    Concurrency { level: usize, max_cps: f64 },
}

/// One step of the plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub arrival: Arrival,
    /// The step starts no new call after this long.
    pub duration: Option<Duration>,
    /// The step starts no new call after this many.
    pub calls: Option<usize>,
}

impl Step {
    /// `2 CPS` or `8 concurrent`.
    pub fn label(&self) -> String {
        match self.arrival {
            Arrival::Rate { cps } => format!("{} CPS", trim_float(cps)),
            Arrival::Concurrency { level, .. } => format!("{level} concurrent"),
        }
    }

    /// Whether the step has started all it may start, `started` calls
    /// `elapsed` after its start.
    pub fn is_over(&self, started: usize, elapsed: Duration) -> bool {
        self.calls.is_some_and(|n| started >= n) || self.duration.is_some_and(|d| elapsed >= d)
    }

    /// When (from the step's start) an open-loop step starts its call number
    /// `started` (0-based); `None` for a concurrency step.
    pub fn scheduled_start(&self, started: usize) -> Option<Duration> {
        match self.arrival {
            Arrival::Rate { cps } => Some(Duration::from_secs_f64(started as f64 / cps)),
            Arrival::Concurrency { .. } => None,
        }
    }
}

/// The whole run, step after step.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadPlan {
    pub steps: Vec<Step>,
}

/// The most calls a load run keeps up at once (file descriptors: two
/// sockets per call).
pub const MAX_CONCURRENCY: usize = 5_000;
/// The highest arrival rate.
pub const MAX_CPS: f64 = 1_000.0;

impl LoadPlan {
    /// `--cps R` with `--duration`/`--calls`.
    pub fn rate(cps: f64, duration: Option<Duration>, calls: Option<usize>) -> Result<LoadPlan, String> {
        if !(cps > 0.0 && cps <= MAX_CPS) {
            return Err(format!("--cps {cps}: expected more than 0 and at most {MAX_CPS}"));
        }
        bounded(duration, calls)?;
        Ok(LoadPlan { steps: vec![Step { arrival: Arrival::Rate { cps }, duration, calls }] })
    }

    /// `--ramp 1,2,4` with `--step-duration`/`--step-calls` and `--max-cps`.
    pub fn ramp(
        levels: &str,
        duration: Option<Duration>,
        calls: Option<usize>,
        max_cps: f64,
    ) -> Result<LoadPlan, String> {
        if !(max_cps > 0.0 && max_cps <= MAX_CPS) {
            return Err(format!("--max-cps {max_cps}: expected more than 0 and at most {MAX_CPS}"));
        }
        bounded(duration, calls)?;
        let mut steps = Vec::new();
        for part in levels.split(',') {
            let level: usize = part.trim().parse().map_err(|_| {
                format!("--ramp '{levels}': '{}' is not a number of calls (e.g. --ramp 1,2,4,8)", part.trim())
            })?;
            if level == 0 || level > MAX_CONCURRENCY {
                return Err(format!("--ramp '{levels}': {level} is not between 1 and {MAX_CONCURRENCY}"));
            }
            steps.push(Step { arrival: Arrival::Concurrency { level, max_cps }, duration, calls });
        }
        Ok(LoadPlan { steps })
    }

    /// The plan as one line: `ramp 1, 2, 4 concurrent, 30s per step`.
    pub fn describe(&self) -> String {
        let labels: Vec<String> = self.steps.iter().map(Step::label).collect();
        let end = self.steps.first().map(|s| end_text(s.duration, s.calls)).unwrap_or_default();
        format!("{} ({end} per step)", labels.join(" → "))
    }

    /// This shard's part of the plan: rates and levels divided by the
    /// shard count (rounded so the shards add up to the whole), call
    /// counts likewise. A level that leaves nothing to this shard keeps 0
    /// calls for that step.
    pub fn shard(&self, index: usize, count: usize) -> LoadPlan {
        let part = |total: usize| total / count + usize::from(index < total % count);
        let steps = self
            .steps
            .iter()
            .map(|s| Step {
                arrival: match s.arrival {
                    Arrival::Rate { cps } => Arrival::Rate { cps: cps / count as f64 },
                    Arrival::Concurrency { level, max_cps } => {
                        Arrival::Concurrency { level: part(level), max_cps: max_cps / count as f64 }
                    }
                },
                duration: s.duration,
                calls: s.calls.map(part),
            })
            .collect();
        LoadPlan { steps }
    }
}

/// A load run must stop by itself.
fn bounded(duration: Option<Duration>, calls: Option<usize>) -> Result<(), String> {
    if duration.is_none() && calls.is_none() {
        return Err("a load step needs an end: --duration/--step-duration or --calls/--step-calls".into());
    }
    if duration.is_some_and(|d| d.is_zero()) || calls == Some(0) {
        return Err("a load step must last more than zero seconds and calls".into());
    }
    Ok(())
}

fn end_text(duration: Option<Duration>, calls: Option<usize>) -> String {
    match (duration, calls) {
        (Some(d), Some(n)) => format!("{} or {n} calls", humantime::format_duration(d)),
        (Some(d), None) => humantime::format_duration(d).to_string(),
        (None, Some(n)) => format!("{n} calls"),
        (None, None) => String::new(),
    }
}

/// A number with at most two decimals and no trailing zeros (`2`, `0.5`, `99.25`).
pub(crate) fn trim_float(x: f64) -> String {
    let text = format!("{x:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ramp_is_one_step_per_level() {
        let plan = LoadPlan::ramp("1, 2,4", Some(Duration::from_secs(10)), None, 5.0).expect("valid");
        let labels: Vec<String> = plan.steps.iter().map(Step::label).collect();
        assert_eq!(labels, ["1 concurrent", "2 concurrent", "4 concurrent"]);
        assert_eq!(plan.describe(), "1 concurrent → 2 concurrent → 4 concurrent (10s per step)");
    }

    #[test]
    fn bad_plans_say_what_is_wrong() {
        assert!(LoadPlan::ramp("1,x", Some(Duration::from_secs(1)), None, 5.0).unwrap_err().contains("'x'"));
        assert!(LoadPlan::ramp("0", Some(Duration::from_secs(1)), None, 5.0).unwrap_err().contains("between 1"));
        assert!(LoadPlan::rate(2.0, None, None).unwrap_err().contains("needs an end"));
        assert!(LoadPlan::rate(0.0, Some(Duration::from_secs(1)), None).unwrap_err().contains("--cps"));
    }

    #[test]
    fn open_loop_starts_follow_the_rate_not_the_calls() {
        let plan = LoadPlan::rate(4.0, None, Some(10)).expect("valid");
        let step = &plan.steps[0];
        assert_eq!(step.scheduled_start(0), Some(Duration::ZERO));
        assert_eq!(step.scheduled_start(6), Some(Duration::from_millis(1500)));
        assert!(!step.is_over(9, Duration::from_secs(100)) || step.duration.is_some());
        assert!(step.is_over(10, Duration::ZERO));
    }

    #[test]
    fn shards_add_up_to_the_plan() {
        let plan = LoadPlan::ramp("1,5", None, Some(7), 10.0).expect("valid");
        let levels = |i| {
            let shard = plan.shard(i, 3);
            shard
                .steps
                .iter()
                .map(|s| match s.arrival {
                    Arrival::Concurrency { level, .. } => (level, s.calls.unwrap_or(0)),
                    Arrival::Rate { .. } => (0, 0),
                })
                .collect::<Vec<_>>()
        };
        let all: Vec<Vec<(usize, usize)>> = (0..3).map(levels).collect();
        for step in 0..2 {
            let level: usize = all.iter().map(|s| s[step].0).sum();
            let calls: usize = all.iter().map(|s| s[step].1).sum();
            assert_eq!((level, calls), ([1, 5][step], 7));
        }
    }
}
