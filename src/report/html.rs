//! `index.html`: one self-contained page per run (inline CSS, JS and SVG;
//! nothing loaded from elsewhere, only the calls' WAV files next to it).
//! Per call: the verdict and checks, the diagnoses, a SIP ladder diagram, a
//! waveform of both directions with speech, turns and key times marked,
//! audio players, the conversation turn by turn (what the agent said, what
//! we sent, reply latencies), what LiveKit showed, and the raw SIP messages.
//! A call tried more than once (`--retries`) lists its tries, each with its
//! verdict, why it failed and its files; a flaky call has its own badge
//! colour. All text from the call goes through [`escape::text`].

mod conversation;
pub(crate) mod escape;
mod ladder;
mod waveform;

use std::fmt::Write;
use std::path::{Path, PathBuf};

use self::escape::{is_safe_link, text, url_path};
use self::waveform::{KeyTime, Marks, Track};
use super::call_identity::{call_tags, display_name};
use super::model::{Call, Mos, MosEstimate, Report};
use super::utc::UtcDateTime;
use crate::report::model::Direction;
use crate::report::model::Verdict;
use crate::time::human_ms;

const STYLE: &str = include_str!("html/page.css");
const SCRIPT: &str = include_str!("html/page.js");

/// Writes `run_dir/index.html`. `call_dirs[i]` (relative to `run_dir`) is
/// where call `i`'s `rx.wav`/`tx.wav`/`call.pcap` live; a call without an
/// entry is shown without recordings.
pub fn write_index(report: &Report, run_dir: &Path, call_dirs: &[PathBuf]) -> Result<PathBuf, String> {
    let html = index_html(report, run_dir, call_dirs);
    let path = run_dir.join("index.html");
    std::fs::write(&path, html).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}

/// The page for `report`; recordings are read from `run_dir/call_dirs[i]`.
pub fn index_html(report: &Report, run_dir: &Path, call_dirs: &[PathBuf]) -> String {
    let started = report.calls.iter().map(|c| c.started_unix_ms).filter(|&ms| ms > 0).min();
    let when = started.map(|ms| UtcDateTime::from_unix_seconds(ms / 1000).readable()).unwrap_or_default();
    let verdict = verdict_word(report.verdict);
    let failed = report.calls.iter().filter(|c| !c.verdict.passed()).count();
    let flaky = report.calls.iter().filter(|c| c.verdict == Verdict::Flaky).count();

    let mut page = String::new();
    let _ = write!(
        page,
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>callprobe {verdict} · {when}</title>
<style>{STYLE}</style></head>
<body>{defs}<main>
<div class="run-header"><span class="badge big {class}" id="run-verdict">{verdict}</span><div><h1>callprobe run</h1>
<div class="sub">{when} · {calls} call{s} · {passed} passed{flaky} · {failed} failed · {tool} {version} · <a href="report.json">report.json</a> · <a href="junit.xml">junit.xml</a></div></div></div>
"#,
        verdict = verdict,
        when = text(&when),
        defs = ladder::MARKER_DEFS,
        class = verdict_class(report.verdict),
        calls = report.calls.len(),
        s = if report.calls.len() == 1 { "" } else { "s" },
        passed = report.calls.len() - failed,
        flaky = if flaky == 0 { String::new() } else { format!(" ({flaky} flaky)") },
        tool = text(&report.tool),
        version = text(&report.version),
    );
    if report.tls_unverified {
        page.push_str(
            "<div class=\"ids tls warn\">Some calls went over TLS with the certificate NOT verified (--tls-insecure).</div>\n",
        );
    }
    objectives(&mut page, report);
    calls_index(&mut page, report);
    for (index, call) in report.calls.iter().enumerate() {
        call_section(&mut page, index, call, run_dir, call_dirs.get(index).map(PathBuf::as_path));
    }
    let _ = write!(
        page,
        "<footer>Times are ms since the first INVITE left, except first audio (from the 200 OK) and response latency (from the end of our clip). Dates are UTC.</footer>\n</main><script>{SCRIPT}</script></body></html>\n"
    );
    page
}

/// The run's objectives (`slo`, `[regression]`), when any is declared.
fn objectives(page: &mut String, report: &Report) {
    if report.slo.is_empty() {
        return;
    }
    page.push_str(r#"<section id="slo"><h2>Objectives</h2><table class="checks"><tr><th></th><th>scenario</th><th>rule</th><th>measured</th></tr>"#);
    for r in &report.slo {
        let (class, word) = if r.passed { ("pass", "met") } else { ("fail", "breached") };
        let _ = write!(
            page,
            r#"<tr><td><span class="badge {class}">{word}</span></td><td>{}</td><td>{}: {}</td><td>{}</td></tr>"#,
            text(&r.scenario),
            text(&r.kind),
            text(&r.rule),
            text(&r.detail)
        );
    }
    page.push_str("</table></section>");
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::Error => "ERROR",
        Verdict::Flaky => "FLAKY",
    }
}

fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Error => "error",
        Verdict::Flaky => "flaky",
    }
}

/// `call-3`: the id of call `index`'s section (0-based index).
pub fn call_anchor(index: usize) -> String {
    format!("call-{}", index + 1)
}

/// The table of calls at the top, each row linking to its section.
fn calls_index(page: &mut String, report: &Report) {
    page.push_str(r#"<table class="calls-index"><tr><th>#</th><th>verdict</th><th>call</th><th>why</th><th>setup</th><th>first audio</th></tr>"#);
    for (index, call) in report.calls.iter().enumerate() {
        let why = match call.diagnosis.first() {
            _ if call.verdict == Verdict::Flaky => {
                format!(
                    "passed on try {}; {}",
                    call.attempts.len(),
                    crate::retry::why_it_was_flaky(call).unwrap_or_default()
                )
            }
            Some(d) if call.expected_diagnosis.is_some() => format!("expected: [{}] {}", d.code, d.summary),
            Some(d) => format!("[{}] {}", d.code, d.summary),
            None => call.checks.iter().find(|c| !c.passed).map(|c| c.name.clone()).unwrap_or_default(),
        };
        let _ = write!(
            page,
            r##"<tr><td>{n}</td><td><span class="badge {class}">{verdict}</span></td><td><a href="#{anchor}">{name}</a></td><td>{why}</td><td>{setup}</td><td>{first_audio}</td></tr>"##,
            n = index + 1,
            class = verdict_class(call.verdict),
            verdict = verdict_word(call.verdict),
            anchor = call_anchor(index),
            name = text(&display_name(call)),
            why = text(&why),
            setup = text(&call.sip.connected_ms.map(human_ms).unwrap_or_default()),
            first_audio = text(&call.media.first_audio_ms.map(|v| human_ms(v as f64)).unwrap_or_default()),
        );
    }
    page.push_str("</table>\n");
}

fn call_section(page: &mut String, index: usize, call: &Call, run_dir: &Path, call_dir: Option<&Path>) {
    let anchor = call_anchor(index);
    let started = UtcDateTime::from_unix_seconds(call.started_unix_ms / 1000).readable();
    let tags = call_tags(call);
    let _ = write!(
        page,
        r#"<section class="call {class}" id="{anchor}"><h2><span class="badge {class}">{verdict}</span> {name}</h2>
<div class="ids">{target} over {transport} · test id <code>{test_id}</code> · Call-ID <code>{call_id}</code> · started {started}{tags}</div>
"#,
        class = verdict_class(call.verdict),
        verdict = verdict_word(call.verdict),
        name = text(&display_name(call)),
        target = text(&call.target),
        transport = call.transport.via_name(),
        test_id = text(&call.test_id),
        call_id = text(&call.call_id),
        started = text(&started),
        tags = if tags.is_empty() { String::new() } else { format!(" · tags {}", text(&tags.join(", "))) },
    );
    if let Some(tls) = call.tls_line() {
        let class = if call.tls_unverified() { " warn" } else { "" };
        let _ = writeln!(page, r#"<div class="ids tls{class}">{}</div>"#, text(&tls));
    }
    facts(page, call);
    if !call.attempts.is_empty() {
        attempts(page, call, run_dir);
    }
    if !call.diagnosis.is_empty() {
        page.push_str("<h3>Why</h3>");
        diagnoses(page, call);
    }
    checks(page, call);
    page.push_str("<h3>SIP ladder</h3>");
    if call.sip.messages.is_empty() {
        page.push_str("<p class=\"sub\">No SIP message was sent or received.</p>");
    } else {
        let _ = write!(page, r#"<div class="scroll">{}</div>"#, ladder::ladder_svg(call, &anchor));
    }
    audio(page, call, run_dir, call_dir);
    if let Some(c) = &call.conversation {
        conversation::section(page, c);
    }
    if let Some(lk) = &call.livekit {
        livekit(page, lk);
    }
    if !call.notes.is_empty() {
        page.push_str("<h3>Notes</h3><ul>");
        for n in &call.notes {
            let _ = write!(page, r#"<li class="note">{}</li>"#, text(n));
        }
        page.push_str("</ul>");
    }
    raw_messages(page, call, &anchor);
    page.push_str("</section>\n");
}

/// The call's numbers at a glance.
fn facts(page: &mut String, call: &Call) {
    let sip = &call.sip;
    let media = &call.media;
    let finals: Vec<String> = sip.final_responses.iter().map(|f| format!("{} {}", f.status, f.reason)).collect();
    let provisional: Vec<String> = sip.provisional.iter().map(u16::to_string).collect();
    let or_dash = |s: String| if s.is_empty() { "—".to_string() } else { s };
    let mut items: Vec<(&str, String)> = vec![
        ("final responses", or_dash(finals.join(" → "))),
        ("provisional", or_dash(provisional.join(", "))),
        ("ended", or_dash(sip.ended_description.clone().unwrap_or_default())),
        ("setup (INVITE → ACK of 2xx)", or_dash(sip.connected_ms.map(human_ms).unwrap_or_default())),
        (
            "INVITEs",
            format!(
                "{} sent, {} retransmitted{}",
                sip.invites_sent,
                sip.invite_retransmissions,
                if sip.authenticated { ", authenticated" } else { "" }
            ),
        ),
    ];
    match (&media.codec, &media.error) {
        (Some(codec), _) => {
            items.push(("codec", codec.clone()));
            items.push((
                "RTP",
                format!(
                    "{} → {}",
                    media.local_rtp.as_deref().unwrap_or("?"),
                    media.remote_rtp.as_deref().unwrap_or("?")
                ),
            ));
            items.push((
                "packets",
                format!(
                    "sent {} ({} late) · received {} · lost {} · jitter {:.1} ms",
                    media.tx_packets, media.tx_late_packets, media.rx_packets, media.lost, media.jitter_ms
                ),
            ));
            items.push((
                "SRTP",
                match &media.srtp {
                    None => "off (plain RTP)".to_string(),
                    Some(s) => format!(
                        "{} (SDES) · {} auth failures · {} replayed{}",
                        s.suite,
                        s.auth_failures,
                        s.replayed,
                        if s.malformed > 0 { format!(" · {} malformed", s.malformed) } else { String::new() }
                    ),
                },
            ));
        }
        (None, Some(error)) => items.push(("media", error.clone())),
        (None, None) => items.push(("media", "none".into())),
    }
    if let Some(mos) = &media.mos {
        items.push(("MOS (E-model estimate)", mos_fact(mos)));
    }
    let optional = [
        ("first audio (after 200 OK)", media.first_audio_ms.map(|v| human_ms(v as f64))),
        ("response latency", media.response_latency_ms.map(|v| human_ms(v as f64))),
        ("far-end talk time", media.talk_time_ms.map(|v| human_ms(v as f64))),
        ("longest silence", media.longest_silence_ms.map(|v| human_ms(v as f64))),
        ("DTMF received", (!media.dtmf.is_empty()).then(|| media.dtmf.join(" "))),
        (
            "tone",
            media.tone.as_ref().map(|t| format!("{:.0} Hz present {}", t.frequency_hz, human_ms(t.present_ms as f64))),
        ),
    ];
    items.extend(optional.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))));
    page.push_str(r#"<dl class="facts">"#);
    for (k, v) in items {
        let _ = write!(page, "<div><dt>{}</dt><dd>{}</dd></div>", text(k), text(&v));
    }
    page.push_str("</dl>");
}

/// `4.33 received (R 89.7: loss 0.70 %, jitter 0.4 ms, delay 40 ms assumed) · sent unknown: …`
fn mos_fact(mos: &Mos) -> String {
    let direction = |name: &str, e: &MosEstimate| {
        format!(
            "{:.2} {name} (R {:.1}: loss {:.2} %, jitter {:.1} ms, delay {:.0} ms assumed)",
            e.mos, e.r, e.loss_percent, e.jitter_ms, e.delay_ms_assumed
        )
    };
    let sent = match &mos.sent {
        Some(e) => direction("sent", e),
        None => format!("sent unknown: {}", mos.sent_note.as_deref().unwrap_or("no data")),
    };
    format!("{} · {sent}", direction("received", &mos.received))
}

/// The tries of a retried call: verdict, start, ids, why it failed, files.
fn attempts(page: &mut String, call: &Call, run_dir: &Path) {
    let _ = write!(
        page,
        "<h3>Tries</h3><p class=\"sub\">{}</p>",
        text(&match call.verdict {
            Verdict::Flaky =>
                format!("Flaky: failed, then passed on try {}. The page shows that try.", call.attempts.len()),
            _ => format!("Failed all {} tries. The page shows the last one.", call.attempts.len()),
        })
    );
    page.push_str("<table class=\"attempts\"><tr><th>try</th><th>verdict</th><th>started</th><th>Call-ID</th><th>why</th><th>files</th></tr>");
    for a in &call.attempts {
        let why: Vec<String> = if a.diagnosis.is_empty() {
            a.failed_checks.iter().map(|c| format!("{}: {}", c.name, c.detail)).collect()
        } else {
            a.diagnosis.iter().map(|d| format!("[{}] {} — fix: {}", d.code, d.summary, d.fix)).collect()
        };
        let files = match &a.folder {
            Some(folder) => {
                let mut links = format!(r#"<a href="{0}/">{1}</a>"#, text(&url_path(Path::new(folder))), text(folder));
                for name in ["call.pcap", "rx.wav", "tx.wav"] {
                    let file = Path::new(folder).join(name);
                    if run_dir.join(&file).is_file() {
                        let _ = write!(links, r#" · <a href="{}">{name}</a>"#, text(&url_path(&file)));
                    }
                }
                links
            }
            None => "—".into(),
        };
        let _ = write!(
            page,
            r#"<tr><td>{n}</td><td><span class="badge {class}">{verdict}</span></td><td>{started}</td><td><code>{call_id}</code></td><td>{why}</td><td>{files}</td></tr>"#,
            n = a.attempt,
            class = verdict_class(a.verdict),
            verdict = verdict_word(a.verdict),
            started = text(&UtcDateTime::from_unix_seconds(a.started_unix_ms / 1000).readable()),
            call_id = text(&a.call_id),
            why = if why.is_empty() { "—".to_string() } else { text(&why.join("; ")) },
        );
    }
    page.push_str("</table>");
}

fn diagnoses(page: &mut String, call: &Call) {
    for d in &call.diagnosis {
        let reference = if is_safe_link(&d.reference) {
            format!(r#"<a href="{0}">{0}</a>"#, text(&d.reference))
        } else {
            format!("<code>{}</code>", text(&d.reference))
        };
        let _ = write!(
            page,
            r#"<div class="diagnosis"><span class="code">{code}</span> {summary}<dl><dt>evidence</dt><dd>{evidence}</dd><dt>fix</dt><dd>{fix}</dd><dt>see</dt><dd>{reference}</dd></dl></div>"#,
            code = text(&d.code),
            summary = text(&d.summary),
            evidence = text(&d.evidence),
            fix = text(&d.fix),
        );
    }
}

fn checks(page: &mut String, call: &Call) {
    page.push_str("<h3>Checks</h3>");
    if call.checks.is_empty() {
        page.push_str("<p class=\"sub\">No checks.</p>");
        return;
    }
    page.push_str("<table class=\"checks\"><tr><th>result</th><th>check</th><th>detail</th></tr>");
    for c in &call.checks {
        let _ = write!(
            page,
            "<tr><td class=\"{}\">{}</td><td><code>{}</code></td><td>{}</td></tr>",
            match call.check_label(c) {
                "PASS" => "ok",
                "XFAIL" => "xfail",
                _ => "bad",
            },
            call.check_label(c),
            text(&c.name),
            text(&c.detail)
        );
    }
    page.push_str("</table>");
}

/// The waveform and the players, from the call folder's recordings.
fn audio(page: &mut String, call: &Call, run_dir: &Path, call_dir: Option<&Path>) {
    page.push_str("<h3>Audio</h3>");
    let (rx_name, tx_name) = match &call.media.recordings {
        Some(r) => (r.rx.as_str(), r.tx.as_str()),
        None => ("rx.wav", "tx.wav"),
    };
    let Some(call_dir) = call_dir else {
        page.push_str("<p class=\"sub\">No call folder, so no recordings.</p>");
        return;
    };
    let no_media = call.media.error.clone().unwrap_or_else(|| "the call had no media".into());
    let load = |name: &str| -> Result<Track, String> {
        let path = run_dir.join(call_dir).join(name);
        if !path.exists() {
            return Err(format!("no {name}: {no_media}"));
        }
        Track::read(&path)
    };
    let rx = load(rx_name);
    let tx = load(tx_name);
    if rx.is_err() && tx.is_err() {
        let why = rx.err().unwrap_or_default();
        let _ = write!(page, "<p class=\"sub\">No recordings ({}).</p>", text(&why));
        return;
    }
    let duration = [
        rx.as_ref().map(Track::duration_ms).unwrap_or(0.0),
        tx.as_ref().map(Track::duration_ms).unwrap_or(0.0),
        call.sip.ended_ms.unwrap_or(0.0),
        call.media.played.as_ref().map_or(0.0, |p| p.end_ms),
    ]
    .into_iter()
    .fold(1000.0, f64::max);
    let svg = waveform::waveform_svg(
        rx.as_ref().map_err(String::as_str),
        tx.as_ref().map_err(String::as_str),
        &marks(call),
        duration,
    );
    page.push_str(&svg);
    let turns_legend = if call.conversation.as_ref().is_some_and(|c| !c.turns.is_empty()) {
        r#"<span><i class="swatch turn agent"></i>agent's turn</span><span><i class="swatch turn us"></i>our turn</span>"#
    } else {
        ""
    };
    let _ = write!(
        page,
        r#"<div class="legend"><span><i class="swatch" style="background:#10b98133"></i>far-end speech</span><span><i class="swatch" style="background:#3b82f633"></i>our clip</span>{turns_legend}<span>click the waveform to seek both players</span></div><div class="players">"#,
    );
    for (label, name, ok) in [("far end · ", rx_name, rx.is_ok()), ("we sent · ", tx_name, tx.is_ok())] {
        if ok {
            let _ = write!(
                page,
                r#"<figure><figcaption>{label}{name}</figcaption><audio controls preload="metadata" src="{src}"></audio></figure>"#,
                name = text(name),
                src = text(&url_path(&call_dir.join(name))),
            );
        }
    }
    page.push_str("</div>");
}

/// Speech, the played clip, the conversation's turns and key times, on the call timeline.
fn marks(call: &Call) -> Marks {
    let media = &call.media;
    let mut key_times = Vec::new();
    if let Some(connected) = call.sip.connected_ms {
        key_times.push(KeyTime { at_ms: connected, label: "connected".into(), class: "connected" });
        if let Some(first) = media.first_audio_ms {
            key_times.push(KeyTime {
                at_ms: connected + first as f64,
                label: format!("first audio +{}", human_ms(first as f64)),
                class: "first-audio",
            });
        }
    }
    if let (Some(played), Some(latency)) = (&media.played, media.response_latency_ms) {
        key_times.push(KeyTime {
            at_ms: played.end_ms + latency as f64,
            label: format!("response +{}", human_ms(latency as f64)),
            class: "response",
        });
    }
    if let Some(lk) = &call.livekit {
        for agent in &lk.agents {
            key_times.push(KeyTime {
                at_ms: lk.reference.invite_t_ms + agent.joined_ms,
                label: format!("agent {} joined", agent.agent_name),
                class: "agent",
            });
        }
    }
    if let Some(ended) = call.sip.ended_ms {
        key_times.push(KeyTime { at_ms: ended, label: "ended".into(), class: "ended" });
    }
    Marks {
        speech_segments: media.speech_segments.iter().map(|s| (s.start_ms as f64, s.end_ms as f64)).collect(),
        played: media.played.as_ref().map(|p| (p.start_ms, p.end_ms)),
        turns: call.conversation.as_ref().map(conversation::turn_spans).unwrap_or_default(),
        key_times,
    }
}

/// What LiveKit showed: a summary, then the whole observation as JSON.
fn livekit(page: &mut String, lk: &super::model::LiveKit) {
    page.push_str("<h3>LiveKit</h3><dl class=\"facts\">");
    let status: Vec<&str> = lk
        .sip_participant
        .as_ref()
        .map(|p| p.call_status.iter().map(|s| s.status.as_str()).collect())
        .unwrap_or_default();
    let agents: Vec<String> = lk
        .agents
        .iter()
        .map(|a| format!("\"{}\" {} joined at {}", a.agent_name, a.identity, human_ms(a.joined_ms)))
        .collect();
    let dispatches: Vec<String> = lk
        .dispatches
        .iter()
        .map(|d| {
            let jobs: Vec<String> = d.jobs.iter().map(|j| format!("{} {}", j.id, j.status)).collect();
            format!("{} agent \"{}\" jobs [{}]", d.id, d.agent_name, jobs.join(", "))
        })
        .collect();
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "—".into());
    let items = [
        (
            "room",
            lk.room.clone().unwrap_or_else(|| format!("not found for test id {} ({} polls)", lk.test_id, lk.polls)),
        ),
        ("trunk", opt(&lk.trunk_id)),
        ("dispatch rule", opt(&lk.rule_id)),
        ("called (trunk number)", opt(&lk.trunk_phone_number)),
        ("caller", opt(&lk.phone_number)),
        ("SIP call status", if status.is_empty() { "—".into() } else { status.join(" → ") }),
        (
            "agents (after the INVITE that got through)",
            if agents.is_empty() { "none".into() } else { agents.join("; ") },
        ),
        ("dispatches", if dispatches.is_empty() { "none".into() } else { dispatches.join("; ") }),
        ("API errors", if lk.api_errors.is_empty() { "none".into() } else { lk.api_errors.join("; ") }),
    ];
    for (k, v) in items {
        let _ = write!(page, "<div><dt>{}</dt><dd>{}</dd></div>", text(k), text(&v));
    }
    page.push_str("</dl>");
    // As report.json has it (`calls[].livekit`).
    let json = serde_json::to_string_pretty(lk).unwrap_or_else(|e| format!("cannot show the observation: {e}"));
    let _ = write!(page, "<details><summary>LiveKit observation (JSON)</summary><pre>{}</pre></details>", text(&json));
}

fn raw_messages(page: &mut String, call: &Call, anchor: &str) {
    if call.sip.messages.is_empty() {
        return;
    }
    let _ = write!(page, "<details class=\"raw\"><summary>SIP messages ({})</summary>", call.sip.messages.len());
    for (i, m) in call.sip.messages.iter().enumerate() {
        let arrow = match m.dir {
            Direction::Out => "→",
            Direction::In => "←",
        };
        let _ = write!(
            page,
            r#"<div class="raw-message" id="{anchor}-msg-{i}"><h4>{t:.1} ms {arrow} {peer} · {first}</h4><pre>{raw}</pre></div>"#,
            anchor = text(anchor),
            t = m.t_ms,
            peer = text(&m.peer),
            first = text(&m.first_line),
            raw = text(m.raw.trim_end()),
        );
    }
    page.push_str("</details>");
}
