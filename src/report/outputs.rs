//! Everything a run writes, in one place: the call's own files (recordings
//! and packet capture, written as each call ends so a suite never holds every
//! call's audio), and, once at the end of a suite, the run folder's
//! report.json, junit.xml and index.html, the metrics file and the webhook
//! (when `--notify-on` says so, with what changed since the previous run).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use super::changes::{self, PreviousRun};
use super::model::{Recordings, Report};
use super::pcap::{sip_packets, write_call_pcap, CapturedPacket, CapturedProtocol};
use super::webhook::NotifyOn;
use super::{html, junit, metrics, run_dir, webhook};
use crate::call::CallOutcome;
use crate::media::session::MediaOutcome;
use crate::report::model::Verdict;

/// Which calls keep their files (recordings and capture), `--keep-artifacts`:
/// `all`, `failed` (calls that did not pass), or `sample:N` (those, plus
/// the first N calls that passed). A load run of thousands of calls keeps
/// what explains its failures and a few good calls to compare them with,
/// not gigabytes. Shared by the calls of a run (the sample is counted
/// across them).
#[derive(Debug)]
pub struct KeepArtifacts {
    rule: KeepRule,
    passed_kept: AtomicUsize,
}

/// The rule of a [`KeepArtifacts`], as written on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepRule {
    All,
    Failed,
    Sample(usize),
}

impl std::str::FromStr for KeepRule {
    type Err = String;

    fn from_str(text: &str) -> Result<KeepRule, String> {
        let text = text.trim();
        match text {
            "all" => Ok(KeepRule::All),
            "failed" => Ok(KeepRule::Failed),
            _ => match text.strip_prefix("sample:").map(|n| n.trim().parse::<usize>()) {
                Some(Ok(n)) => Ok(KeepRule::Sample(n)),
                _ => Err(format!(
                    "'{text}': expected all, failed or sample:N (N passed calls kept besides the failed ones)"
                )),
            },
        }
    }
}

impl std::fmt::Display for KeepRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeepRule::All => f.write_str("all"),
            KeepRule::Failed => f.write_str("failed"),
            KeepRule::Sample(n) => write!(f, "sample:{n}"),
        }
    }
}

impl KeepArtifacts {
    pub fn new(rule: KeepRule) -> KeepArtifacts {
        KeepArtifacts { rule, passed_kept: AtomicUsize::new(0) }
    }

    /// Every call keeps its files.
    pub fn all() -> KeepArtifacts {
        KeepArtifacts::new(KeepRule::All)
    }

    pub fn rule(&self) -> KeepRule {
        self.rule
    }

    /// Whether a call with this verdict keeps its files; a kept passed call
    /// counts against the sample.
    pub fn keeps(&self, verdict: Verdict) -> bool {
        match (self.rule, verdict) {
            (KeepRule::All, _) => true,
            (_, Verdict::Fail | Verdict::Error | Verdict::Flaky) => true,
            (KeepRule::Failed, Verdict::Pass) => false,
            (KeepRule::Sample(n), Verdict::Pass) => {
                self.passed_kept.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |k| (k < n).then_some(k + 1)).is_ok()
            }
        }
    }
}

/// `DIR/rx.wav` (what the far end said), `DIR/tx.wav` (what we sent) — 16-bit
/// mono 16 kHz, both starting at the first INVITE — and `DIR/call.pcap`
/// (SIP and RTP as sent and received).
pub fn write_call_files(dir: &Path, record: &CallOutcome) -> Result<Option<Recordings>, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    write_call_pcap(&dir.join("call.pcap"), &captured_packets(record))?;
    let Some(media) = &record.media else { return Ok(None) };
    let (rx, tx) = (dir.join("rx.wav"), dir.join("tx.wav"));
    let (mut rx_audio, mut tx_audio) = (media.rx_audio.clone(), media.tx_audio.clone());
    crate::audio::recording::pad_to_common_length(&mut rx_audio, &mut tx_audio);
    rx_audio.write_wav(&rx).map_err(|e| format!("cannot write {}: {e}", rx.display()))?;
    tx_audio.write_wav(&tx).map_err(|e| format!("cannot write {}: {e}", tx.display()))?;
    Ok(Some(Recordings { rx: "rx.wav".into(), tx: "tx.wav".into() }))
}

/// Every SIP message and RTP datagram of the call, as on the wire.
fn captured_packets(record: &CallOutcome) -> Vec<CapturedPacket> {
    let mut packets = Vec::new();
    if let Some(local) = record.local_sip {
        packets.extend(sip_packets(&record.messages, local, record.transport, record.started));
    }
    if let Some(MediaOutcome { local_rtp, wire, .. }) = &record.media {
        for d in wire {
            let (src, dst) = if d.outbound { (*local_rtp, d.peer) } else { (d.peer, *local_rtp) };
            packets.push(CapturedPacket {
                at: record.started + d.at.since_start(),
                src,
                dst,
                protocol: CapturedProtocol::Udp,
                payload: d.bytes.clone(),
            });
        }
    }
    packets
}

/// What a suite's run folder and the other outputs need besides the report.
#[derive(Debug, Clone)]
pub struct SuiteOutputs {
    /// The JUnit test suite's name.
    pub suite_name: String,
    pub notify_webhook: Option<String>,
    /// When the webhook is called.
    pub notify_on: NotifyOn,
    /// The run `latest` pointed at before this one (read before this run's
    /// folder was created), to say what changed; `None` for a first run.
    pub previous: Option<PreviousRun>,
    pub metrics_file: Option<PathBuf>,
}

/// Creates the suite's run folder (`<base>/<UTC time>/`, and `<base>/latest`)
/// before the first call, so the calls can write their files into it.
pub fn create_run_folder(report_base: &Path) -> Result<PathBuf, String> {
    run_dir::create_run_dir(report_base, SystemTime::now())
        .map_err(|e| format!("cannot create a run folder under {}: {e}", report_base.display()))
}

/// After the last call: report.json, junit.xml and index.html in `run_dir`
/// (`call_dirs` are the calls' folders, relative to it, in report order),
/// then the metrics file and, when `notify_on` says so, the webhook (with the
/// changes since `outputs.previous`). A run folder file that cannot be
/// written is an error; the metrics file and the webhook only come back as
/// problems (`metrics file: …`, `webhook: …`).
pub async fn write_suite_outputs(
    report: &Report,
    run_dir: &Path,
    call_dirs: &[PathBuf],
    outputs: &SuiteOutputs,
) -> Result<Vec<String>, String> {
    report.write_json(run_dir)?;
    junit::write_junit(report, &outputs.suite_name, &run_dir.join("junit.xml"))?;
    html::write_index(report, run_dir, call_dirs)?;
    let mut problems = Vec::new();
    if let Some(path) = &outputs.metrics_file {
        if let Err(e) = metrics::write_metrics(report, path) {
            problems.push(format!("metrics file: {e}"));
        }
    }
    if let Some(url) = &outputs.notify_webhook {
        let changes = outputs.previous.as_ref().map(|previous| changes::between(previous, report, run_dir));
        if outputs.notify_on.fires(report, changes.as_deref()) {
            let body = webhook::body(report, Some(run_dir), changes.as_deref());
            if let Err(e) = webhook::notify(url, &body).await {
                problems.push(format!("webhook: {e}"));
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::{KeepArtifacts, KeepRule};
    use crate::report::model::Verdict;

    #[test]
    fn keep_rules_parse_and_keep_what_they_say() {
        assert_eq!("sample:2".parse::<KeepRule>(), Ok(KeepRule::Sample(2)));
        assert_eq!("failed".parse::<KeepRule>(), Ok(KeepRule::Failed));
        assert!("sample:x".parse::<KeepRule>().unwrap_err().contains("sample:N"));
        let keep = KeepArtifacts::new(KeepRule::Sample(2));
        let passed: Vec<bool> = (0..4).map(|_| keep.keeps(Verdict::Pass)).collect();
        assert_eq!(passed, [true, true, false, false]);
        assert!(keep.keeps(Verdict::Fail) && keep.keeps(Verdict::Error) && keep.keeps(Verdict::Flaky));
        let failed_only = KeepArtifacts::new(KeepRule::Failed);
        assert!(!failed_only.keeps(Verdict::Pass) && failed_only.keeps(Verdict::Fail));
        assert!(KeepArtifacts::all().keeps(Verdict::Pass));
    }
}
