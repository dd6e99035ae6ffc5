//! Running a suite: [`run_suite`] runs many calls (from scenario files,
//! each through [`crate::pipeline::execute`]) in parallel, repeated,
//! optionally stopping at the first failure, and has the run's outputs
//! written ([`crate::report::outputs`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::call::{CallSpec, Cancel};
use crate::pipeline::execute;
use crate::report::outputs::{self, SuiteOutputs};
use crate::report::{self, run_dir, CallReport, Report};
use crate::request::CallRequest;
use crate::verdict::Verdict;

/// How a suite runs.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    pub parallel: usize,
    pub repeat: usize,
    pub fail_fast: bool,
    pub outputs: SuiteOutputs,
    /// Print each call's verdict block as it finishes.
    pub verbose: bool,
}

/// What a suite run produced.
pub struct SuiteOutcome {
    pub report: Report,
    pub run_dir: PathBuf,
    /// Calls not started because of `--fail-fast` or Ctrl-C.
    pub skipped: usize,
    /// The user pressed Ctrl-C.
    pub interrupted: bool,
    /// Calls that could not run (tester errors), with the reason.
    pub errors: Vec<(String, String)>,
    /// Problems with the outputs after the calls (metrics, webhook).
    pub output_problems: Vec<String>,
}

/// Runs `calls` (each `repeat` times) with at most `parallel` calls at once.
/// When `cancel` fires, the calls under way hang up and no new one starts.
pub async fn run_suite(
    calls: Vec<(CallRequest, CallSpec)>,
    opts: &SuiteOptions,
    cancel: &Cancel,
) -> Result<SuiteOutcome, String> {
    let run_dir = outputs::create_run_folder(&opts.outputs.report_base)?;
    let mut queue: Vec<(CallRequest, CallSpec)> = Vec::new();
    for round in 1..=opts.repeat.max(1) {
        for (request, spec) in &calls {
            let (mut request, mut spec) = (request.clone(), spec.clone());
            // Every call attempt gets its own test id and Call-ID.
            let (test_id, call_id) = CallSpec::new_ids();
            spec.test_id = test_id;
            spec.call_id = call_id;
            if opts.repeat > 1 {
                request.name = request.name.map(|n| format!("{n} #{round}"));
            }
            queue.push((request, spec));
        }
    }
    let total = queue.len();
    let progress = indicatif::ProgressBar::new(total as u64);
    progress.set_style(
        indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let limit = Arc::new(tokio::sync::Semaphore::new(opts.parallel.max(1)));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Calls start in file order: the next one waits for a free slot here,
    // so `--fail-fast` with `--parallel 1` stops exactly after the first failure.
    let mut tasks = tokio::task::JoinSet::new();
    let mut skipped = 0;
    for (index, (request, spec)) in queue.into_iter().enumerate() {
        let permit = limit.clone().acquire_owned().await;
        let Ok(permit) = permit else { break };
        if stop.load(std::sync::atomic::Ordering::SeqCst) || cancel.is_cancelled() {
            skipped += 1;
            progress.inc(1);
            continue;
        }
        let (stop, run_dir, progress, cancel) = (stop.clone(), run_dir.clone(), progress.clone(), cancel.clone());
        let (fail_fast, verbose) = (opts.fail_fast, opts.verbose);
        tasks.spawn(async move {
            let _slot = permit;
            let label = request.name.clone().unwrap_or_else(|| spec.target_uri.clone());
            let dir = run_dir.join(run_dir::call_dir_name(index + 1, &label));
            let result = execute(&request, &spec, &mut (), Some(&dir), &cancel).await;
            let failed = !matches!(&result, Ok(r) if r.verdict == Verdict::Pass);
            if failed && fail_fast {
                stop.store(true, std::sync::atomic::Ordering::SeqCst);
            }
            match &result {
                Ok(r) => {
                    progress.set_message(format!("{label}: {:?}", r.verdict).to_lowercase());
                    if verbose {
                        progress.suspend(|| print!("{}", report::verdict_block(r)));
                    }
                }
                Err(_) => progress.set_message(format!("{label}: error")),
            }
            progress.inc(1);
            (index, result, dir, request, spec)
        });
    }
    let mut finished: Vec<(usize, CallReport, PathBuf)> = Vec::new();
    let mut errors = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (index, result, dir, request, spec) = joined.map_err(|e| format!("a call task failed: {e}"))?;
        match result {
            Ok(call_report) => finished.push((index, call_report, dir)),
            Err(e) => {
                let label = request.name.clone().unwrap_or_else(|| spec.target_uri.clone());
                let not_run = CallReport::not_run(request.name.clone(), request.tags.clone(), &spec, &e.to_string());
                finished.push((index, not_run, dir));
                errors.push((label, e.to_string()));
            }
        }
    }
    progress.finish_and_clear();
    finished.sort_by_key(|(i, _, _)| *i);
    let call_dirs: Vec<PathBuf> = finished
        .iter()
        .map(|(_, _, dir)| dir.strip_prefix(&run_dir).map(Path::to_path_buf).unwrap_or_else(|_| dir.clone()))
        .collect();
    let report = Report::new(finished.into_iter().map(|(_, r, _)| r).collect());
    let output_problems = outputs::write_suite_outputs(&report, &run_dir, &call_dirs, &opts.outputs).await?;
    let interrupted = cancel.is_cancelled();
    Ok(SuiteOutcome { report, run_dir, skipped, interrupted, errors, output_problems })
}
