//! Running calls end to end. [`execute`] places one call with everything
//! around it — the LiveKit watcher, checks, diagnosis, recordings and the
//! packet capture — and returns its report; [`run_suite`] runs many such
//! calls (from scenario files) in parallel, repeated, optionally stopping at
//! the first failure, and writes the run's outputs: a timestamped folder
//! with report.json, junit.xml, index.html and one folder per call, the
//! `latest` link, the metrics file and the failure webhook.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::call::{self, CallObserver, CallRecord, CallSpec, Cancel, RunError};
use crate::media::session::MediaOutcome;
use crate::observe::analysis;
use crate::observe::livekit::observation::{self, LiveKitObservation};
use crate::observe::livekit::room_watch::{self, CallIdentity, RoomWatch, WatchSettings};
use crate::observe::livekit::{self as lk, LiveKitConfig, LiveKitOverrides, ServerApi};
use crate::report::pcap::{sip_packets, write_call_pcap, CapturedPacket, CapturedProtocol};
use crate::report::{self, html, junit, metrics, run_dir, webhook, CallReport, MediaReport, Recordings, Report};
use crate::request::CallRequest;
use crate::verdict::checks;
use crate::verdict::diagnose::{self, Observation};
use crate::verdict::Verdict;

/// Why a call could not be run at all (the tester's problem: exit 2).
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    #[error("{0}")]
    Run(#[from] RunError),
    #[error("{0}")]
    LiveKit(String),
    #[error("{0}")]
    Output(String),
}

/// Places `spec` (prepared from `request`), watching LiveKit alongside when
/// it is configured, and judges it against the request's expectations. With
/// `out_dir`, the call's files (rx.wav, tx.wav, call.pcap) are written there.
pub async fn execute(
    request: &CallRequest,
    spec: &CallSpec,
    observer: &mut dyn CallObserver,
    out_dir: Option<&Path>,
    cancel: &Cancel,
) -> Result<CallReport, ExecuteError> {
    let mut notes = Vec::new();
    let livekit = livekit_for_call(&request.livekit, request.expect.agent.is_some(), &mut notes).await?;
    let (mut record, watched) = run_watched(spec, observer, livekit.as_ref(), cancel).await?;
    record.notes.extend(notes);
    let mut observed: Option<LiveKitObservation> =
        livekit.as_ref().zip(watched).map(|(api, w)| observation::relate(&w, &record, api.url()));
    let expect = &request.expect;
    let analysis = analysis::analyse(&record, expect.media.tone_hz);
    let mut checks = checks::evaluate(&record, expect);
    checks.extend(checks::media_checks(&record, analysis.as_ref(), &expect.media));
    if let Some(want) = &expect.agent {
        checks.push(checks::agent_joined(want, observed.as_ref()));
    }
    let failed = checks.iter().any(|c| !c.passed);
    // After a failure, the trunks and rules tell which LiveKit cause it is.
    let sip_config = match (&livekit, failed) {
        (Some(api), true) => match api.fetch_sip_config().await {
            Ok(config) => Some(config),
            Err(e) => {
                record.notes.push(format!("could not read the LiveKit SIP configuration for the diagnosis: {e}"));
                None
            }
        },
        _ => None,
    };
    if let (Some(seen), Some(config)) = (observed.as_mut(), sip_config.as_ref()) {
        seen.dispatch_rule = seen.rule_id.as_deref().and_then(|id| config.rule(id)).cloned();
    }
    // A scenario that expects a diagnosis is judged by it: the diagnosis
    // check decides the verdict, the others show the failure it expects.
    let observation = Observation {
        record: &record,
        livekit: observed.as_ref(),
        sip_config: sip_config.as_ref(),
        expected_agent: expect.agent.as_ref(),
        far_end_speech: analysis.as_ref().map(|a| !a.speech_segments.is_empty()),
    };
    let (diagnosis, passed_notes) = if failed {
        (diagnose::diagnose_observation(&observation), Vec::new())
    } else {
        (Vec::new(), diagnose::notes_for_passed_call(&observation))
    };
    record.notes.extend(passed_notes);
    let recordings = match out_dir {
        Some(dir) => write_call_files(dir, &record).map_err(ExecuteError::Output)?,
        None => None,
    };
    if let Some(code) = &expect.diagnosis {
        let check = checks::expected_diagnosis(code, &checks, &diagnosis);
        checks.push(check);
    }
    let mut call_report = CallReport::new(&record, checks, diagnosis, expect.diagnosis.clone());
    call_report.name = request.name.clone();
    call_report.tags = request.tags.clone();
    call_report.media = MediaReport::new(&record, analysis.as_ref(), recordings);
    call_report.livekit = observed;
    Ok(call_report)
}

/// The LiveKit API for this call, checked with one request before the call.
/// `--expect-agent` needs it (a tester error when missing); otherwise it is
/// used when configured, and a broken configuration only leaves a note.
async fn livekit_for_call(
    overrides: &LiveKitOverrides,
    required: bool,
    notes: &mut Vec<String>,
) -> Result<Option<ServerApi>, ExecuteError> {
    let needed = |why: String| {
        ExecuteError::LiveKit(format!(
            "--expect-agent needs the LiveKit API ({}, {}, {}, or the --livekit-* flags): {why}",
            lk::URL_VAR,
            lk::API_KEY_VAR,
            lk::API_SECRET_VAR
        ))
    };
    let config = match LiveKitConfig::from_env(overrides) {
        Ok(Some(c)) => c,
        Ok(None) if required => return Err(needed(format!("{} is not set", lk::URL_VAR))),
        Ok(None) => return Ok(None),
        Err(e) if required => return Err(needed(e.to_string())),
        Err(e) => {
            notes.push(format!("LiveKit not observed: {e}"));
            return Ok(None);
        }
    };
    let api = ServerApi::new(&config);
    match api.preflight().await {
        Ok(()) => Ok(Some(api)),
        Err(e) if required => Err(needed(e.to_string())),
        Err(e) => {
            notes.push(format!("LiveKit not observed: {e}"));
            Ok(None)
        }
    }
}

/// Runs the call and, alongside, the LiveKit watcher; the watcher stops
/// (after one last poll) when the call ends.
async fn run_watched(
    spec: &CallSpec,
    observer: &mut dyn CallObserver,
    livekit: Option<&ServerApi>,
    cancel: &Cancel,
) -> Result<(CallRecord, Option<RoomWatch>), RunError> {
    let (call_ended, watch_stop) = tokio::sync::watch::channel(false);
    let call = async {
        let record = call::run(spec, observer, cancel).await;
        let _ = call_ended.send(true);
        record
    };
    let who = CallIdentity { test_id: spec.test_id.clone(), call_id: spec.call_id.clone() };
    let settings = WatchSettings::default();
    let watch = async {
        match livekit {
            Some(api) => Some(room_watch::watch_call(api, &who, &settings, watch_stop).await),
            None => None,
        }
    };
    let (record, watched) = tokio::join!(call, watch);
    Ok((record?, watched))
}

/// `DIR/rx.wav` (what the far end said), `DIR/tx.wav` (what we sent) — 16-bit
/// mono 16 kHz, both starting at the first INVITE — and `DIR/call.pcap`
/// (SIP and RTP as sent and received).
fn write_call_files(dir: &Path, record: &CallRecord) -> Result<Option<Recordings>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    write_call_pcap(&dir.join("call.pcap"), &captured_packets(record))?;
    let Some(media) = &record.media else { return Ok(None) };
    let (rx, tx) = (dir.join("rx.wav"), dir.join("tx.wav"));
    let (mut rx_audio, mut tx_audio) = (media.rx_audio.clone(), media.tx_audio.clone());
    crate::media::recording::pad_to_common_length(&mut rx_audio, &mut tx_audio);
    rx_audio.write_wav(&rx).map_err(|e| format!("cannot write {}: {e}", rx.display()))?;
    tx_audio.write_wav(&tx).map_err(|e| format!("cannot write {}: {e}", tx.display()))?;
    Ok(Some(Recordings { rx: "rx.wav".into(), tx: "tx.wav".into() }))
}

/// Every SIP message and RTP datagram of the call, as on the wire.
fn captured_packets(record: &CallRecord) -> Vec<CapturedPacket> {
    let at = |t_ms: f64| record.started + Duration::from_secs_f64(t_ms.max(0.0) / 1000.0);
    let mut packets = Vec::new();
    if let Some(local) = record.local_sip {
        packets.extend(sip_packets(&record.messages, local, record.transport, record.started));
    }
    if let Some(MediaOutcome { local_rtp, wire, .. }) = &record.media {
        for d in wire {
            let (src, dst) = if d.outbound { (*local_rtp, d.peer) } else { (d.peer, *local_rtp) };
            packets.push(CapturedPacket {
                at: at(d.t_ms),
                src,
                dst,
                protocol: CapturedProtocol::Udp,
                payload: d.bytes.clone(),
            });
        }
    }
    packets
}

/// How a suite runs.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    pub parallel: usize,
    pub repeat: usize,
    pub fail_fast: bool,
    /// Base folder of the timestamped run folders (and the `latest` link).
    pub report_base: PathBuf,
    pub suite_name: String,
    pub notify_webhook: Option<String>,
    pub metrics_file: Option<PathBuf>,
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
    let run_dir = run_dir::create_run_dir(&opts.report_base, SystemTime::now())
        .map_err(|e| format!("cannot create a run folder under {}: {e}", opts.report_base.display()))?;
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
    report.write_json(&run_dir)?;
    junit::write_junit(&report, &opts.suite_name, &run_dir.join("junit.xml"))?;
    html::write_index(&report, &run_dir, &call_dirs)?;
    let mut output_problems = Vec::new();
    if let Some(path) = &opts.metrics_file {
        if let Err(e) = metrics::write_metrics(&report, path) {
            output_problems.push(format!("metrics file: {e}"));
        }
    }
    if let (Some(url), true) = (&opts.notify_webhook, report.verdict != Verdict::Pass) {
        if let Err(e) = webhook::notify_failure(url, &report, Some(&run_dir)).await {
            output_problems.push(format!("webhook: {e}"));
        }
    }
    let interrupted = cancel.is_cancelled();
    Ok(SuiteOutcome { report, run_dir, skipped, interrupted, errors, output_problems })
}
