//! Everything a run writes, in one place: the call's own files (recordings
//! and packet capture, written as each call ends so a suite never holds every
//! call's audio), and, once at the end of a suite, the run folder's
//! report.json, junit.xml and index.html, the metrics file and the failure
//! webhook.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::model::{Recordings, Report};
use super::pcap::{sip_packets, write_call_pcap, CapturedPacket, CapturedProtocol};
use super::{html, junit, metrics, run_dir, webhook};
use crate::call::CallOutcome;
use crate::media::session::MediaOutcome;
use crate::report::model::Verdict;

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
/// then the metrics file and, when the run did not pass, the webhook. A run
/// folder file that cannot be written is an error; the metrics file and the
/// webhook only come back as problems (`metrics file: …`, `webhook: …`).
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
    if let (Some(url), true) = (&outputs.notify_webhook, report.verdict != Verdict::Pass) {
        if let Err(e) = webhook::notify_failure(url, report, Some(run_dir)).await {
            problems.push(format!("webhook: {e}"));
        }
    }
    Ok(problems)
}
