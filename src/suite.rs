//! A suite of calls (`callprobe run`): the job queue — every case `--repeat`
//! times, started in file order by `--parallel` workers, no new call after
//! a failure with `--fail-fast` or once the cancellation token fires — each
//! call through [`pipeline::execute`], its files in its own folder of the
//! run folder. A call that failed is tried again at once by its worker
//! under `--retries` ([`crate::retry`]: flaky calls), before the worker
//! takes the next call; `--fail-fast` looks at the call's final verdict.
//! What happens is told to a [`SuiteProgress`]; the runner knows
//! no terminal and writes none of the run's outputs (see
//! [`crate::report::outputs`]). With `--shard i/N` the queue is built whole
//! and only that shard's calls are kept, with their places in the whole
//! queue (and so their folder names), for `callprobe merge`.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Mutex};

use crate::call::{Cancel, PreparedCall};
use crate::pipeline::{self, ExecuteError};
use crate::report::model::ShardRun;
use crate::report::outputs::KeepArtifacts;
use crate::report::{run_dir, Call, Report};
use crate::request::CallRequest;
use crate::retry::{self, Tried, Tries};
use crate::shard::Shard;

/// How a suite runs.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    /// Calls at once (the number of workers).
    pub parallel: usize,
    /// How many times every case runs.
    pub repeat: usize,
    /// How many more times a call that failed is tried (`--retries`).
    pub retries: usize,
    /// Start no new call after the first one that did not pass.
    pub fail_fast: bool,
    /// Speech-to-text for the far end's turns.
    pub stt: crate::transcribe::Stt,
    /// Which calls keep their recordings and capture.
    pub keep: Arc<KeepArtifacts>,
    /// Run only one shard of the queue (`--shard i/N`); `--fail-fast` then
    /// stops this shard only.
    pub shard: Option<SuiteShard>,
}

/// `--shard i/N`: the slice of the queue to run, and the suite's name the
/// shard's report records for `callprobe merge`.
#[derive(Debug, Clone)]
pub struct SuiteShard {
    pub shard: Shard,
    pub suite_name: String,
}

/// What the runner tells whoever shows the suite's progress, from the one
/// task that runs the suite (calls are labelled by name, else target URI).
pub trait SuiteProgress {
    /// Before the first call: how many calls the queue holds.
    fn suite_started(&mut self, total: usize);
    /// A worker took the call from the queue and dials it.
    fn call_started(&mut self, label: &str);
    /// Try `attempt - 1` of the call failed (`why`: its diagnosis code or
    /// failed check) and it is tried again, at most `of` tries in all.
    fn call_retried(&mut self, label: &str, attempt: usize, of: usize, why: &str);
    /// The call ended: its report, or why it could not run.
    fn call_finished(&mut self, label: &str, result: Result<&Call, &ExecuteError>);
    /// The call was never started (`--fail-fast`, or cancelled).
    fn call_skipped(&mut self, label: &str);
    /// After the last call.
    fn suite_finished(&mut self);
}

/// No progress shown.
impl SuiteProgress for () {
    fn suite_started(&mut self, _: usize) {}
    fn call_started(&mut self, _: &str) {}
    fn call_retried(&mut self, _: &str, _: usize, _: usize, _: &str) {}
    fn call_finished(&mut self, _: &str, _: Result<&Call, &ExecuteError>) {}
    fn call_skipped(&mut self, _: &str) {}
    fn suite_finished(&mut self) {}
}

/// What a suite run produced.
pub struct SuiteOutcome {
    /// Every call that ran (or could not run), in queue order.
    pub report: Report,
    /// Each call's folder, relative to the run folder, in report order.
    pub call_dirs: Vec<PathBuf>,
    /// Calls not started because of `--fail-fast` or cancellation.
    pub skipped: usize,
    /// Calls that could not run (tester errors), with the reason.
    pub errors: Vec<(String, String)>,
}

/// One call of the queue.
struct Job {
    /// Position in the queue: file order, then repeat round.
    index: usize,
    /// The case's name, or the target URI.
    label: String,
    /// The call's folder, relative to the run folder.
    dir: PathBuf,
    request: CallRequest,
    spec: PreparedCall,
}

/// What a worker tells the suite's task.
enum Event {
    /// The label of the call dialled.
    Started(String),
    /// The call failed and is tried again: label, the next try's number, why.
    Retrying(String, usize, String),
    /// A call ended (boxed: a report is large).
    Finished(Box<FinishedJob>),
}

/// A call after its last try: its report (every try in `attempts`), and
/// why the tester could not run the last try, when it could not.
struct FinishedJob {
    job: Job,
    call_report: Call,
    error: Option<ExecuteError>,
}

/// Runs `calls` (each `opts.repeat` times) with at most `opts.parallel`
/// calls at once, each writing its files under `run_dir`. When `cancel`
/// fires, the calls under way hang up and no new one starts.
pub async fn run(
    calls: Vec<(CallRequest, PreparedCall)>,
    opts: &SuiteOptions,
    run_dir: &Path,
    progress: &mut dyn SuiteProgress,
    cancel: &Cancel,
) -> Result<SuiteOutcome, String> {
    let mut jobs = queue(calls, opts.repeat);
    let queue_length = jobs.len();
    if let Some(slice) = &opts.shard {
        jobs.retain(|job| slice.shard.selects(job.index));
    }
    progress.suite_started(jobs.len());
    let workers_wanted = opts.parallel.max(1).min(jobs.len());
    let queue = Arc::new(Mutex::new(VecDeque::from(jobs)));
    let stop = Arc::new(AtomicBool::new(false));
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..workers_wanted {
        let worker = Worker {
            queue: queue.clone(),
            stop: stop.clone(),
            fail_fast: opts.fail_fast,
            retries: opts.retries,
            stt: opts.stt.clone(),
            keep: opts.keep.clone(),
            run_dir: run_dir.to_path_buf(),
            cancel: cancel.clone(),
            events: events_tx.clone(),
        };
        workers.spawn(worker.run());
    }
    // The workers hold the only senders: the events end with the last worker.
    drop(events_tx);
    let mut finished: Vec<(usize, Call, PathBuf)> = Vec::new();
    let mut errors = Vec::new();
    while let Some(event) = events.recv().await {
        match event {
            Event::Started(label) => progress.call_started(&label),
            Event::Retrying(label, attempt, why) => progress.call_retried(&label, attempt, opts.retries + 1, &why),
            Event::Finished(finished_job) => {
                let FinishedJob { job, mut call_report, error } = *finished_job;
                match &error {
                    Some(e) => {
                        progress.call_finished(&job.label, Err(e));
                        errors.push((job.label.clone(), e.to_string()));
                    }
                    None => progress.call_finished(&job.label, Ok(&call_report)),
                }
                call_report.position = Some(job.index);
                finished.push((job.index, call_report, job.dir));
            }
        }
    }
    let mut joined = Ok(());
    while let Some(worker) = workers.join_next().await {
        if let Err(e) = worker {
            joined = Err(format!("a call task failed: {e}"));
        }
    }
    let not_started: Vec<Job> = queue.lock().await.drain(..).collect();
    for job in &not_started {
        progress.call_skipped(&job.label);
    }
    progress.suite_finished();
    joined?;
    finished.sort_by_key(|(index, _, _)| *index);
    let call_dirs = finished.iter().map(|(_, _, dir)| dir.clone()).collect();
    let mut report = Report::new(finished.into_iter().map(|(_, call_report, _)| call_report).collect());
    report.shard = opts.shard.as_ref().map(|slice| ShardRun {
        index: slice.shard.index(),
        count: slice.shard.count(),
        queue_length,
        suite: slice.suite_name.clone(),
    });
    Ok(SuiteOutcome { report, call_dirs, skipped: not_started.len(), errors })
}

/// Every call attempt, in file order, round after round; each gets its own
/// test id and Call-ID, and with `repeat` > 1 its round in its name.
fn queue(calls: Vec<(CallRequest, PreparedCall)>, repeat: usize) -> Vec<Job> {
    let mut jobs = Vec::new();
    for round in 1..=repeat.max(1) {
        for (request, spec) in &calls {
            let (mut request, mut spec) = (request.clone(), spec.clone());
            let (test_id, call_id) = PreparedCall::new_ids();
            spec.test_id = test_id;
            spec.call_id = call_id;
            if repeat > 1 {
                request.name = request.name.map(|n| format!("{n} #{round}"));
            }
            let index = jobs.len();
            let label = request.name.clone().unwrap_or_else(|| spec.target_uri.clone());
            let dir = PathBuf::from(run_dir::call_dir_name(index + 1, &label));
            jobs.push(Job { index, label, dir, request, spec });
        }
    }
    jobs
}

/// A try the tester could not run: the call's line in the report, and why.
struct NotRun {
    call_report: Call,
    error: ExecuteError,
}

/// Takes calls from the queue, front first, one at a time, until it is
/// empty, a call failed under `--fail-fast`, or the token is cancelled.
struct Worker {
    queue: Arc<Mutex<VecDeque<Job>>>,
    stop: Arc<AtomicBool>,
    fail_fast: bool,
    retries: usize,
    stt: crate::transcribe::Stt,
    keep: Arc<KeepArtifacts>,
    run_dir: PathBuf,
    cancel: Cancel,
    events: mpsc::UnboundedSender<Event>,
}

impl Worker {
    async fn run(self) {
        while let Some(job) = self.next_job().await {
            // The suite's task outlives every worker: sending cannot fail.
            let _ = self.events.send(Event::Started(job.label.clone()));
            let Tries { earlier, last } = retry::run(
                self.retries,
                &self.cancel,
                |number| self.attempt(&job, number),
                |failed, next| self.before_retry(&job, failed, next),
            )
            .await;
            let (last, error) = match last {
                Ok(call_report) => (call_report, None),
                Err(NotRun { call_report, error }) => (call_report, Some(error)),
            };
            let folder = if earlier.is_empty() { None } else { retry::last_try_folder(&self.run_dir, &job.dir) };
            let call_report = retry::combine(earlier, Tried { call: last, folder });
            if !call_report.verdict.passed() && self.fail_fast {
                self.stop.store(true, Ordering::SeqCst);
            }
            let _ = self.events.send(Event::Finished(Box::new(FinishedJob { job, call_report, error })));
        }
    }

    /// Try `number` of the call (1 = the first); every retry gets its own
    /// test id and Call-ID.
    async fn attempt(&self, job: &Job, number: usize) -> Result<Call, NotRun> {
        let spec = if number == 1 {
            Cow::Borrowed(&job.spec)
        } else {
            let mut spec = job.spec.clone();
            (spec.test_id, spec.call_id) = PreparedCall::new_ids();
            Cow::Owned(spec)
        };
        let dir = self.run_dir.join(&job.dir);
        let files = pipeline::CallFiles { dir: &dir, keep: &self.keep };
        let result = pipeline::execute(&job.request, &spec, &mut (), Some(files), &self.cancel, &self.stt).await;
        result.map_err(|error| {
            let (name, tags) = (job.request.name.clone(), job.request.tags.clone());
            NotRun { call_report: Call::not_run(name, tags, &spec, &error.to_string()), error }
        })
    }

    /// Before try `next`: the failed try's files go to `attempt-<next - 1>/`
    /// (a failure to move them is noted on that try), and the progress is told.
    fn before_retry(&self, job: &Job, failed: &mut Call, next: usize) -> Option<String> {
        let folder = match retry::set_aside(&self.run_dir, &job.dir, next - 1) {
            Ok(folder) => folder,
            Err(e) => {
                failed.notes.push(format!("this try's files could not be set aside for the retry: {e}"));
                None
            }
        };
        let _ = self.events.send(Event::Retrying(job.label.clone(), next, retry::why_it_failed(failed)));
        folder
    }

    async fn next_job(&self) -> Option<Job> {
        let mut queue = self.queue.lock().await;
        if self.stop.load(Ordering::SeqCst) || self.cancel.is_cancelled() {
            return None;
        }
        queue.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the runner told, in order.
    #[derive(Default)]
    struct Told(Vec<String>);

    impl SuiteProgress for Told {
        fn suite_started(&mut self, total: usize) {
            self.0.push(format!("suite {total}"));
        }
        fn call_started(&mut self, label: &str) {
            self.0.push(format!("started {label}"));
        }
        fn call_retried(&mut self, label: &str, attempt: usize, of: usize, why: &str) {
            self.0.push(format!("retried {label} {attempt}/{of} {why}"));
        }
        fn call_finished(&mut self, label: &str, _: Result<&Call, &ExecuteError>) {
            self.0.push(format!("finished {label}"));
        }
        fn call_skipped(&mut self, label: &str) {
            self.0.push(format!("skipped {label}"));
        }
        fn suite_finished(&mut self) {
            self.0.push("done".into());
        }
    }

    fn case(name: Option<&str>, target: &str) -> (CallRequest, PreparedCall) {
        let mut request = CallRequest::new(target.to_string());
        request.name = name.map(str::to_string);
        let spec = request.prepare().expect("a request without files prepares");
        (request, spec)
    }

    #[test]
    fn the_queue_keeps_file_order_round_after_round() {
        let calls = vec![case(Some("first"), "sip:1@127.0.0.1:9"), case(None, "sip:2@127.0.0.1:9")];
        let jobs = queue(calls, 2);
        let labels: Vec<&str> = jobs.iter().map(|j| j.label.as_str()).collect();
        assert_eq!(labels, ["first #1", "sip:2@127.0.0.1:9", "first #2", "sip:2@127.0.0.1:9"]);
        assert_eq!(jobs.iter().map(|j| j.index).collect::<Vec<_>>(), [0, 1, 2, 3]);
        assert_eq!(jobs[0].dir, PathBuf::from(run_dir::call_dir_name(1, "first #1")));
        let mut call_ids: Vec<&str> = jobs.iter().map(|j| j.spec.call_id.as_str()).collect();
        call_ids.sort_unstable();
        call_ids.dedup();
        assert_eq!(call_ids.len(), 4, "every attempt has its own Call-ID");
    }

    #[test]
    fn one_round_keeps_the_names() {
        let jobs = queue(vec![case(Some("first"), "sip:1@127.0.0.1:9")], 1);
        assert_eq!(jobs[0].label, "first");
    }

    #[tokio::test]
    async fn a_cancelled_token_starts_no_call() {
        let cancel = Cancel::new();
        cancel.cancel();
        let calls = vec![case(Some("a"), "sip:1@127.0.0.1:9"), case(Some("b"), "sip:2@127.0.0.1:9")];
        let opts = SuiteOptions {
            parallel: 2,
            repeat: 1,
            retries: 0,
            fail_fast: false,
            stt: crate::transcribe::Stt::none("off in tests"),
            keep: Arc::new(KeepArtifacts::all()),
            shard: None,
        };
        let mut told = Told::default();
        let dir = std::env::temp_dir();
        let outcome = run(calls, &opts, &dir, &mut told, &cancel).await.expect("the suite runs");
        assert_eq!(outcome.skipped, 2);
        assert!(outcome.report.calls.is_empty() && outcome.call_dirs.is_empty() && outcome.errors.is_empty());
        assert_eq!(told.0, ["suite 2", "skipped a", "skipped b", "done"]);
    }

    /// A shard keeps its slice of the whole queue (file order × rounds) and
    /// its report says which slice of how long a queue.
    #[tokio::test]
    async fn a_shard_takes_its_slice_of_the_whole_queue() {
        let cancel = Cancel::new();
        cancel.cancel();
        let calls = ["a", "b", "c"].map(|n| case(Some(n), "sip:1@127.0.0.1:9")).to_vec();
        let shard = Shard::new(1, 2).expect("1/2");
        let opts = SuiteOptions {
            parallel: 1,
            repeat: 2,
            retries: 0,
            fail_fast: false,
            stt: crate::transcribe::Stt::none("off in tests"),
            keep: Arc::new(KeepArtifacts::all()),
            shard: Some(SuiteShard { shard, suite_name: "smoke".into() }),
        };
        let mut told = Told::default();
        let outcome = run(calls, &opts, &std::env::temp_dir(), &mut told, &cancel).await.expect("the suite runs");
        // The queue: a #1, b #1, c #1, a #2, b #2, c #2; shard 1/2 takes positions 1, 3, 5.
        assert_eq!(told.0, ["suite 3", "skipped b #1", "skipped a #2", "skipped c #2", "done"]);
        assert_eq!(outcome.report.shard, Some(ShardRun { index: 1, count: 2, queue_length: 6, suite: "smoke".into() }));
        let jobs: Vec<Job> = queue(vec![case(Some("a"), "sip:1@127.0.0.1:9")], 4);
        let kept: Vec<(usize, PathBuf)> =
            jobs.into_iter().filter(|j| shard.selects(j.index)).map(|j| (j.index, j.dir)).collect();
        assert_eq!(kept, [(1, PathBuf::from("002-a-2")), (3, PathBuf::from("004-a-4"))]);
    }
}
