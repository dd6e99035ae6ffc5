//! One call's pipeline, in the order it happens: place the call (with the
//! LiveKit watcher alongside when LiveKit is configured), judge it (checks,
//! then the diagnosis), write the call's files, and return its report.
//! `callprobe call` runs it once; [`crate::suite`] runs it per scenario case.

use std::path::Path;

use crate::audio::analysis;
use crate::call::{self, CallObserver, CallOutcome, Cancel, PreparedCall, RunError};
use crate::livekit::observation::{self, LiveKitObservation};
use crate::livekit::room_watch::{self, CallIdentity, RoomWatch, WatchSettings};
use crate::livekit::{self as lk, LiveKitConfig, LiveKitOverrides, ServerApi};
use crate::report::model::{Call, Conversation, LiveKit, Media};
use crate::report::outputs::{write_call_files, KeepArtifacts};
use crate::request::CallRequest;
use crate::transcribe::{self, Stt, Transcript};
use crate::verdict::checks;
use crate::verdict::conversation::conversation_checks;
use crate::verdict::diagnose::{self, Observation};

/// Where a call's files go, and which calls keep them.
#[derive(Clone, Copy)]
pub struct CallFiles<'a> {
    pub dir: &'a Path,
    pub keep: &'a KeepArtifacts,
}

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
/// `files`, the call's files (rx.wav, tx.wav, call.pcap) are written to its
/// folder when its policy keeps them for the call's verdict.
pub async fn execute(
    request: &CallRequest,
    spec: &PreparedCall,
    observer: &mut dyn CallObserver,
    files: Option<CallFiles<'_>>,
    cancel: &Cancel,
    stt: &Stt,
) -> Result<Call, ExecuteError> {
    let mut notes = Vec::new();
    let livekit = livekit_for_call(&request.livekit, request.expect.agent.is_some(), &mut notes).await?;
    let (mut record, watched) = run_watched(spec, observer, livekit.as_ref(), cancel).await?;
    record.notes.extend(notes);
    let mut observed: Option<LiveKitObservation> =
        livekit.as_ref().zip(watched).map(|(api, w)| observation::relate(&w, &record, api.url()));
    let expect = &request.expect;
    // The far end's speech found in the whole recording is CPU-bound (the
    // VAD over the call): on a blocking thread, so that it never holds up
    // the runtime that paces the RTP of the calls still under way.
    let tone_hz = expect.media.tone_hz;
    let (mut record, analysis) = tokio::task::spawn_blocking(move || {
        let analysis = analysis::analyse(&record, tone_hz);
        (record, analysis)
    })
    .await
    .map_err(|e| ExecuteError::Output(format!("the media analysis task failed: {e}")))?;
    // After the call, off the call's path: what the far end said, per turn.
    let (transcripts, missing) = transcripts(&record, analysis.as_ref(), stt).await;
    let texts: Vec<Option<Transcript>> = transcripts.iter().map(|t| t.as_ref().ok().cloned()).collect();
    let mut checks = checks::evaluate(&record, expect);
    checks.extend(checks::media_checks(&record, analysis.as_ref(), &expect.media));
    checks.extend(conversation_checks(
        &request.conversation,
        record.media.as_ref(),
        analysis.as_ref(),
        &texts,
        missing.as_deref().unwrap_or("not transcribed"),
    ));
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
        first_speech: analysis.as_ref().and_then(|a| a.first_audio),
        speech_within: expect.media.speech_within,
    };
    let (diagnosis, passed_notes) = if failed {
        (diagnose::diagnose_observation(&observation), Vec::new())
    } else {
        (Vec::new(), diagnose::notes_for_passed_call(&observation))
    };
    record.notes.extend(passed_notes);
    if let Some(code) = &expect.diagnosis {
        let check = checks::expected_diagnosis(code, &checks, &diagnosis);
        checks.push(check);
    }
    let media = Media::new(&record, analysis.as_ref(), None);
    let mut call_report = Call::new(&record, media, checks, diagnosis, expect.diagnosis.clone());
    call_report.name = request.name.clone();
    call_report.scenario = request.scenario.clone();
    call_report.tags = request.tags.clone();
    call_report.livekit = observed.as_ref().map(LiveKit::from);
    call_report.conversation = analysis
        .as_ref()
        .zip(record.media.as_ref())
        .map(|(a, m)| Conversation::new(a, m, &transcripts, missing.clone()));
    // The verdict is known: the policy says whether this call keeps its
    // files. Written on a blocking thread (encoding, disk), off the runtime.
    if let Some(files) = files {
        if files.keep.keeps(call_report.verdict) {
            let dir = files.dir.to_path_buf();
            let written = tokio::task::spawn_blocking(move || write_call_files(&dir, &record))
                .await
                .map_err(|e| ExecuteError::Output(format!("the task writing the call's files failed: {e}")))?;
            call_report.media.recordings = written.map_err(ExecuteError::Output)?;
        }
    }
    Ok(call_report)
}

/// Each far-end turn through the speech-to-text engine (on a blocking
/// thread: engines are CPU-bound or blocking HTTP), or why there is no text.
async fn transcripts(
    record: &CallOutcome,
    analysis: Option<&analysis::MediaAnalysis>,
    stt: &Stt,
) -> (Vec<Result<Transcript, String>>, Option<String>) {
    let (Some(media), Some(analysis)) = (record.media.as_ref(), analysis) else { return (Vec::new(), None) };
    if analysis.far_turns.is_empty() {
        return (Vec::new(), None);
    }
    let Some(engine) = stt.engine() else { return (Vec::new(), Some(stt.why_none().to_string())) };
    let rx = media.rx_audio.samples().to_vec();
    let turns = analysis.far_turns.clone();
    let done = tokio::task::spawn_blocking(move || transcribe::transcribe_turns(engine.as_ref(), &rx, &turns)).await;
    match done {
        Ok(results) => (results.into_iter().map(|r| r.map_err(|e| e.to_string())).collect(), None),
        Err(e) => (Vec::new(), Some(format!("the speech-to-text task failed: {e}"))),
    }
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
    spec: &PreparedCall,
    observer: &mut dyn CallObserver,
    livekit: Option<&ServerApi>,
    cancel: &Cancel,
) -> Result<(CallOutcome, Option<RoomWatch>), RunError> {
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
