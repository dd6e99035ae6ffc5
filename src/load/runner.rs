//! The load scheduler: one task that starts calls step after step — on an
//! open-loop schedule (`--cps`) or whenever fewer than the step's level are
//! up (`--ramp`) — each call a tokio task through the same
//! [`pipeline::execute`] as `callprobe run` (its scenario's full check
//! set), and turns every finished call into a [`CallSample`]. Calls started
//! in a step count for that step even when they end in the next one. After
//! the last step it waits for the calls under way; Ctrl-C (the `cancel`
//! token) starts no new call and has the ones under way hang up.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use super::plan::{Arrival, LoadPlan, Step};
use super::sample::CallSample;
use crate::call::{Cancel, PreparedCall};
use crate::pipeline::{self, CallFiles};
use crate::report::model::{Call, Verdict};
use crate::report::outputs::{KeepArtifacts, KeepRule};
use crate::report::run_dir;
use crate::request::CallRequest;
use crate::transcribe::Stt;

/// How often the live progress is told.
const TICK: Duration = Duration::from_secs(1);
/// The window the live call rate is measured over.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// How a load run runs, besides its plan.
pub struct LoadOptions {
    pub plan: LoadPlan,
    /// Each call's own caller number (LiveKit SIP challenges one caller
    /// number at a time: concurrent calls from one number fail with 401).
    pub caller_numbers: Option<CallerNumbers>,
    /// Which calls keep their files; a `sample:N` is counted per step.
    pub keep: KeepRule,
    pub stt: Stt,
    /// Where calls run: one single-threaded runtime per core, calls dealt
    /// out in turn (see [`CallRuntimes`]); empty: the caller's runtime.
    pub call_runtimes: Vec<tokio::runtime::Handle>,
    /// This process's shard of a load run spread over machines: call `k`
    /// started here is numbered `k * count + index`, so the shards' calls
    /// (folders, caller numbers) never collide.
    pub shard: crate::shard::Shard,
}

/// Caller numbers counted up from a first one: `+15550200000`, `+15550200001` …
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerNumbers {
    plus: bool,
    width: usize,
    first: u64,
}

impl CallerNumbers {
    pub fn parse(text: &str) -> Result<CallerNumbers, String> {
        let text = text.trim();
        let (plus, digits) = match text.strip_prefix('+') {
            Some(d) => (true, d),
            None => (false, text),
        };
        if digits.is_empty() || digits.len() > 18 || !digits.chars().all(|c| c.is_ascii_digit()) {
            return Err(format!("--caller-numbers '{text}': expected a number like +15550200000"));
        }
        let first = digits.parse().map_err(|_| format!("--caller-numbers '{text}': not a number"))?;
        Ok(CallerNumbers { plus, width: digits.len(), first })
    }

    /// The number of call `index`.
    pub fn nth(&self, index: usize) -> String {
        format!("{}{:0width$}", if self.plus { "+" } else { "" }, self.first + index as u64, width = self.width)
    }
}

/// What is live during the run, for the progress display.
#[derive(Debug, Clone, Default)]
pub struct Live {
    pub step: usize,
    pub step_label: String,
    pub steps: usize,
    pub up: usize,
    pub started: usize,
    pub passed: usize,
    pub failed: usize,
    pub errors: usize,
    /// Calls started per second over the last few seconds.
    pub cps: f64,
    pub elapsed: Duration,
    /// Waiting for the last calls to end.
    pub draining: bool,
}

/// Whoever shows a load run's progress.
pub trait LoadProgress {
    fn tick(&mut self, live: &Live);
    fn call_finished(&mut self, sample: &CallSample);
}

impl LoadProgress for () {
    fn tick(&mut self, _: &Live) {}
    fn call_finished(&mut self, _: &CallSample) {}
}

/// What a load run produced.
pub struct LoadOutcome {
    /// Every call started, in start order.
    pub samples: Vec<CallSample>,
    /// The full reports of the calls whose files were kept, with their folder.
    pub kept: Vec<(PathBuf, Call)>,
    /// Per step: how long it started calls for, in seconds.
    pub step_spans: Vec<f64>,
    pub interrupted: bool,
    pub elapsed: Duration,
}

/// A call under way.
struct Running {
    index: usize,
    step: usize,
    label: String,
    dir: PathBuf,
    /// Whether the call's folder exists after the call: its files were kept.
    abs_dir: PathBuf,
    concurrent_at_start: usize,
    started_ms: u64,
}

type Done = (Running, Result<Call, pipeline::ExecuteError>);

/// Runs the plan over `cases` (taken round robin), each call's folder under
/// `run_dir`.
pub async fn run(
    cases: &[(CallRequest, PreparedCall)],
    opts: &LoadOptions,
    run_dir: &Path,
    progress: &mut dyn LoadProgress,
    cancel: &Cancel,
) -> LoadOutcome {
    let started = Instant::now();
    let mut state = State {
        in_flight: JoinSet::new(),
        samples: Vec::new(),
        kept: Vec::new(),
        live: Live { steps: opts.plan.steps.len(), ..Live::default() },
        recent_starts: std::collections::VecDeque::new(),
        next_tick: started + TICK,
    };
    let mut step_spans = Vec::new();
    let mut next_index = 0usize;
    for (step_index, step) in opts.plan.steps.iter().enumerate() {
        if cancel.is_cancelled() {
            break;
        }
        state.live.step = step_index;
        state.live.step_label = step.label();
        let keep = Arc::new(KeepArtifacts::new(opts.keep));
        let step_start = Instant::now();
        let mut started_in_step = 0usize;
        let mut last_start: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if cancel.is_cancelled() || step.is_over(started_in_step, now - step_start) {
                break;
            }
            let step_end = step.duration.map(|d| step_start + d);
            let next_start = next_start_at(step, step_start, started_in_step, last_start, state.in_flight.len(), now);
            let wake = [next_start, step_end, Some(state.next_tick)].into_iter().flatten().min().unwrap_or(now + TICK);
            if next_start.is_some_and(|at| at <= now) {
                let (request, spec) = &cases[next_index % cases.len()];
                let call = CallToStart {
                    index: next_index * opts.shard.count() + opts.shard.index(),
                    step: step_index,
                    request,
                    spec,
                    caller_numbers: opts.caller_numbers.as_ref(),
                    runtime: opts.call_runtimes.get(next_index % opts.call_runtimes.len().max(1)),
                };
                state.start(call, run_dir, &keep, &opts.stt, cancel, started);
                next_index += 1;
                started_in_step += 1;
                last_start = Some(now);
                continue;
            }
            state.wait_until(wake, cancel, progress, started).await;
        }
        step_spans.push(step_start.elapsed().as_secs_f64());
    }
    state.live.draining = true;
    while !state.in_flight.is_empty() {
        let far = Instant::now() + TICK;
        state.wait_until(far, cancel, progress, started).await;
    }
    state.tell(progress, started);
    state.samples.sort_by_key(|s| s.index);
    LoadOutcome {
        samples: state.samples,
        kept: state.kept,
        step_spans,
        interrupted: cancel.is_cancelled(),
        elapsed: started.elapsed(),
    }
}

/// When the step's next call may start: its slot on the open-loop
/// schedule, or (a concurrency step) now if fewer than the level are up and
/// the start rate allows; `None`: only when a call ends.
fn next_start_at(
    step: &Step,
    step_start: Instant,
    started_in_step: usize,
    last_start: Option<Instant>,
    up: usize,
    now: Instant,
) -> Option<Instant> {
    match step.arrival {
        Arrival::Rate { .. } => step.scheduled_start(started_in_step).map(|at| step_start + at),
        Arrival::Concurrency { level, max_cps } => {
            if up >= level {
                return None;
            }
            let spacing = Duration::from_secs_f64(1.0 / max_cps);
            Some(last_start.map_or(now, |last| (last + spacing).max(now)))
        }
    }
}

struct CallToStart<'a> {
    index: usize,
    step: usize,
    request: &'a CallRequest,
    spec: &'a PreparedCall,
    caller_numbers: Option<&'a CallerNumbers>,
    runtime: Option<&'a tokio::runtime::Handle>,
}

struct State {
    in_flight: JoinSet<Done>,
    samples: Vec<CallSample>,
    kept: Vec<(PathBuf, Call)>,
    live: Live,
    recent_starts: std::collections::VecDeque<Instant>,
    next_tick: Instant,
}

impl State {
    fn start(
        &mut self,
        call: CallToStart<'_>,
        run_dir: &Path,
        keep: &Arc<KeepArtifacts>,
        stt: &Stt,
        cancel: &Cancel,
        run_start: Instant,
    ) {
        let call_runtime = call.runtime;
        let mut request = call.request.clone();
        let mut spec = call.spec.clone();
        let (test_id, call_id) = PreparedCall::new_ids();
        spec.test_id = test_id;
        spec.call_id = call_id;
        if let Some(numbers) = call.caller_numbers {
            let number = numbers.nth(call.index);
            spec.from_uri = number.clone();
            request.from = number;
        }
        let label = request.name.clone().unwrap_or_else(|| spec.target_uri.clone());
        let dir_name = run_dir::call_dir_name(call.index + 1, &label);
        let running = Running {
            index: call.index,
            step: call.step,
            label,
            dir: PathBuf::from(&dir_name),
            abs_dir: run_dir.join(&dir_name),
            concurrent_at_start: self.in_flight.len() + 1,
            started_ms: run_start.elapsed().as_millis() as u64,
        };
        let dir = run_dir.join(&dir_name);
        let (keep, stt, cancel) = (keep.clone(), stt.clone(), cancel.clone());
        let call = async move {
            let files = CallFiles { dir: &dir, keep: &keep };
            let result = pipeline::execute(&request, &spec, &mut (), Some(files), &cancel, &stt).await;
            (running, result)
        };
        match call_runtime {
            Some(runtime) => self.in_flight.spawn_on(call, runtime),
            None => self.in_flight.spawn(call),
        };
        self.live.started += 1;
        self.live.up = self.in_flight.len();
        self.recent_starts.push_back(Instant::now());
    }

    /// Takes finished calls until `until` (or the next progress tick).
    async fn wait_until(
        &mut self,
        until: Instant,
        cancel: &Cancel,
        progress: &mut dyn LoadProgress,
        run_start: Instant,
    ) {
        let until = until.min(self.next_tick);
        tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => {}
            _ = cancel.cancelled(), if !cancel.is_cancelled() => {}
            // A finished call: a concurrency step may start the next one now.
            done = self.in_flight.join_next(), if !self.in_flight.is_empty() => {
                match done {
                    Some(Ok(done)) => self.finished(done, progress),
                    Some(Err(e)) => self.live.errors += usize::from(e.is_panic()),
                    None => {}
                }
                self.live.up = self.in_flight.len();
            }
        }
        if Instant::now() >= self.next_tick {
            self.next_tick = Instant::now() + TICK;
            self.tell(progress, run_start);
        }
    }

    fn finished(&mut self, (running, result): Done, progress: &mut dyn LoadProgress) {
        let Running { index, step, label, dir, abs_dir, concurrent_at_start, started_ms } = running;
        let mut sample = match &result {
            Ok(call) => CallSample::from_call(index, step, label, call),
            Err(e) => CallSample::not_run(index, step, label, &e.to_string()),
        };
        sample.concurrent_at_start = concurrent_at_start;
        sample.started_ms = started_ms;
        match sample.verdict {
            Verdict::Pass | Verdict::Flaky => self.live.passed += 1,
            Verdict::Fail => self.live.failed += 1,
            Verdict::Error => self.live.errors += 1,
        }
        if let Ok(call) = result {
            if abs_dir.is_dir() {
                sample.dir = Some(dir.display().to_string());
                self.kept.push((dir, call));
            }
        }
        progress.call_finished(&sample);
        self.samples.push(sample);
    }

    fn tell(&mut self, progress: &mut dyn LoadProgress, run_start: Instant) {
        let now = Instant::now();
        while self.recent_starts.front().is_some_and(|t| now - *t > RATE_WINDOW) {
            self.recent_starts.pop_front();
        }
        let window = RATE_WINDOW.min(now - run_start).as_secs_f64().max(1.0);
        self.live.cps = self.recent_starts.len() as f64 / window;
        self.live.elapsed = now - run_start;
        self.live.up = self.in_flight.len();
        progress.tick(&self.live);
    }
}

/// One single-threaded tokio runtime per core, each on its own thread, for
/// the calls of a load run. A call's sockets, timers and tasks then stay on
/// one thread: no wake-ups across threads for every RTP packet (measured
/// with the multi-threaded runtime: a sixth of the CPU went to the kernel
/// switching and waking threads). Dropped: the runtimes stop.
pub struct CallRuntimes {
    handles: Vec<tokio::runtime::Handle>,
    stops: Vec<tokio::sync::oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl CallRuntimes {
    pub fn start(count: usize) -> std::io::Result<CallRuntimes> {
        let mut runtimes = CallRuntimes { handles: Vec::new(), stops: Vec::new(), threads: Vec::new() };
        for i in 0..count.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            runtimes.handles.push(runtime.handle().clone());
            runtimes.stops.push(stop);
            let thread = std::thread::Builder::new().name(format!("calls-{i}")).spawn(move || {
                let _ = runtime.block_on(stopped);
            })?;
            runtimes.threads.push(thread);
        }
        Ok(runtimes)
    }

    pub fn handles(&self) -> Vec<tokio::runtime::Handle> {
        self.handles.clone()
    }
}

impl Drop for CallRuntimes {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caller_numbers_count_up_and_keep_their_width() {
        let n = CallerNumbers::parse("+15550200000").expect("valid");
        assert_eq!(n.nth(0), "+15550200000");
        assert_eq!(n.nth(123), "+15550200123");
        assert_eq!(CallerNumbers::parse("0099").expect("valid").nth(1), "0100");
        assert!(CallerNumbers::parse("+1555x").is_err());
        assert!(CallerNumbers::parse("").is_err());
    }

    #[test]
    fn a_concurrency_step_starts_only_below_its_level_and_rate() {
        let step = Step { arrival: Arrival::Concurrency { level: 2, max_cps: 10.0 }, duration: None, calls: Some(5) };
        let t = Instant::now();
        assert_eq!(next_start_at(&step, t, 0, None, 0, t), Some(t));
        assert_eq!(next_start_at(&step, t, 1, Some(t), 1, t), Some(t + Duration::from_millis(100)));
        assert_eq!(next_start_at(&step, t, 2, Some(t), 2, t), None);
        let rate = Step { arrival: Arrival::Rate { cps: 2.0 }, duration: None, calls: Some(5) };
        assert_eq!(next_start_at(&rate, t, 3, Some(t), 40, t), Some(t + Duration::from_millis(1500)));
    }
}
