//! What the terminal shows: SIP messages as they pass (`-v`), the suite's
//! progress bar, summary table and totals, `check`'s totals, the
//! conversation part of a call's verdict block ([`conversation_lines`]),
//! and the tester's own errors. Verdict blocks come from
//! [`crate::report::verdict_block`].

use std::fmt::Display;
use std::path::Path;

use crate::call::{CallObserver, Direction, LoggedMessage};
use crate::pipeline::ExecuteError;
use crate::report::model::{Conversation, Verdict};
use crate::report::{self, Call, Report};
use crate::suite::SuiteProgress;
use crate::time::human_ms;

/// A problem of the tester's own (exit 2): `callprobe: …` on stderr.
pub fn error(message: impl Display) {
    eprintln!("callprobe: {message}");
}

/// Prints every SIP message of a call: first lines at verbosity 1, whole
/// messages from 2.
pub struct MessagePrinter {
    pub verbosity: u8,
}

impl CallObserver for MessagePrinter {
    fn message(&mut self, m: &LoggedMessage) {
        if self.verbosity == 0 {
            return;
        }
        let arrow = match m.dir {
            Direction::Out => "→",
            Direction::In => "←",
        };
        println!("{:>9.1} ms {arrow} {:<21} {}", m.at.ms(), m.peer, m.first_line);
        if self.verbosity > 1 {
            for l in m.raw.lines() {
                println!("             | {l}");
            }
        }
    }
}

/// The suite's progress bar (drawn only on a terminal): calls done of all,
/// and the last call's verdict; with `verbose`, each call's verdict block as
/// it finishes.
pub struct SuiteProgressBar {
    verbose: bool,
    bar: Option<indicatif::ProgressBar>,
}

impl SuiteProgressBar {
    pub fn new(verbose: bool) -> Self {
        SuiteProgressBar { verbose, bar: None }
    }
}

impl SuiteProgress for SuiteProgressBar {
    fn suite_started(&mut self, total: usize) {
        let bar = indicatif::ProgressBar::new(total as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        self.bar = Some(bar);
    }

    fn call_started(&mut self, _label: &str) {}

    /// One line per retry, also in logs: a retry is news even when the call
    /// passes in the end.
    fn call_retried(&mut self, label: &str, attempt: usize, of: usize, why: &str) {
        let line = format!("retry    {label}: try {} failed ({why}); try {attempt} of {of}", attempt - 1);
        match &self.bar {
            Some(bar) => bar.suspend(|| println!("{line}")),
            None => println!("{line}"),
        }
    }

    fn call_finished(&mut self, label: &str, result: Result<&Call, &ExecuteError>) {
        let Some(bar) = &self.bar else { return };
        match result {
            Ok(r) => {
                bar.set_message(format!("{label}: {:?}", r.verdict).to_lowercase());
                if self.verbose {
                    bar.suspend(|| print!("{}", report::verdict_block(r)));
                }
            }
            Err(_) => bar.set_message(format!("{label}: error")),
        }
        bar.inc(1);
    }

    fn call_skipped(&mut self, _label: &str) {
        if let Some(bar) = &self.bar {
            bar.inc(1);
        }
    }

    fn suite_finished(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// `callprobe check`'s last line, and why nothing was checked.
pub fn check_totals(files: usize, cases: usize, errors: usize, path: &Path) {
    println!(
        "checked {files} file{}, {cases} case{}: {}",
        if files == 1 { "" } else { "s" },
        if cases == 1 { "" } else { "s" },
        if errors == 0 { "ok".to_string() } else { format!("{errors} error(s)") }
    );
    if files == 0 && errors == 0 {
        println!("no scenario files (*.toml) in {}", path.display());
    }
}

/// After a suite: the table, the totals line, what could not run, and
/// where the report is.
pub fn suite_summary(
    report: &Report,
    skipped: usize,
    interrupted: bool,
    errors: &[(String, String)],
    output_problems: &[String],
    index: &Path,
) {
    print!("{}", summary_table(report));
    for r in &report.slo {
        println!(
            "{:<8} {} {}: {} — {}",
            if r.passed { "SLO ok" } else { "SLO FAIL" },
            r.scenario,
            r.kind,
            r.rule,
            r.detail
        );
    }
    println!(
        "{}{}{}",
        passed_line(report),
        match (skipped, interrupted) {
            (0, _) => String::new(),
            (n, true) => format!(", {n} not run (interrupted)"),
            (n, false) => format!(", {n} not run (--fail-fast)"),
        },
        if errors.is_empty() { String::new() } else { format!(", {} could not run", errors.len()) }
    );
    for (name, e) in errors {
        error(format!("{name}: {e}"));
    }
    for p in output_problems {
        error(p);
    }
    println!("report   {}", index.display());
    if interrupted {
        error("interrupted; the run is incomplete");
    }
}

/// `3 of 4 call(s) passed, 1 flaky (passed on a retry), 1 failed every
/// try`: the totals line of a suite (a flaky call passed, but is
/// never counted silently).
pub fn passed_line(report: &Report) -> String {
    let count = |f: &dyn Fn(&Call) -> bool| report.calls.iter().filter(|c| f(c)).count();
    let passed = count(&|c| c.verdict.passed());
    let mut line = format!("{passed} of {} call(s) passed", report.calls.len());
    match count(&|c| c.verdict == Verdict::Flaky) {
        0 => {}
        n => line.push_str(&format!(", {n} flaky (passed on a retry)")),
    }
    match count(&|c| c.verdict == Verdict::Fail && !c.attempts.is_empty()) {
        0 => {}
        n => line.push_str(&format!(", {n} failed every try")),
    }
    line
}

/// The summary table printed after a suite: one line per call.
pub fn summary_table(report: &Report) -> String {
    let mut out =
        format!("{:<6} {:<48} {:<14} {:>9} {:>11}  {}\n", "result", "call", "finals", "setup ms", "1st audio", "why");
    for c in &report.calls {
        let name = report::call_identity::display_name(c);
        let finals: Vec<String> = c.sip.final_responses.iter().map(|f| f.status.to_string()).collect();
        let setup = c.sip.connected_ms.map_or("-".into(), |ms| format!("{ms:.0}"));
        let first_audio = c.media.first_audio_ms.map_or("-".into(), |ms| ms.to_string());
        let why = match crate::retry::why_it_was_flaky(c) {
            Some(flaky) if c.verdict == Verdict::Flaky => flaky,
            _ => c.diagnosis.first().map_or_else(
                || c.checks.iter().find(|k| !k.passed).map_or(String::new(), |k| k.name.clone()),
                |d| d.code.clone(),
            ),
        };
        out.push_str(&format!(
            "{:<6} {:<48} {:<14} {:>9} {:>11}  {}\n",
            format!("{:?}", c.verdict).to_uppercase(),
            truncate(&name, 48),
            finals.join(","),
            setup,
            first_audio,
            why
        ));
    }
    let unverified = report.calls.iter().filter(|c| c.tls_unverified()).count();
    if unverified > 0 {
        out.push_str(&format!(
            "TLS: {unverified} call(s) with the server's certificate NOT verified (--tls-insecure / tls_insecure)\n"
        ));
    }
    out
}

/// The conversation in a call's verdict block (after the checks): a heading
/// with the end-of-turn silence, the reply latencies and the overlaps, then
/// one line per turn in time order — when, who, what the agent said (or why
/// there is no text), or what we sent.
pub fn conversation_lines(c: &Conversation) -> Vec<String> {
    let mut facts = vec![format!("end of turn {}", human_ms(c.end_of_turn_ms as f64))];
    match (c.reply_latency_p50_ms, c.reply_latency_p95_ms, c.reply_latency_max_ms) {
        (Some(p50), Some(p95), Some(max)) => facts.push(format!(
            "reply latency p50 {}, p95 {}, max {}",
            human_ms(p50 as f64),
            human_ms(p95 as f64),
            human_ms(max as f64)
        )),
        _ => facts.push("no replies".into()),
    }
    if !c.overlaps.is_empty() {
        let at: Vec<String> = c
            .overlaps
            .iter()
            .map(|o| format!("{:.2} s for {}", o.start_ms / 1000.0, human_ms(o.duration_ms as f64)))
            .collect();
        facts.push(format!("overlap{} at {}", if at.len() == 1 { "" } else { "s" }, at.join(", ")));
    }
    if let Some(why) = &c.transcripts_missing {
        facts.push(format!("not transcribed: {}", one_line(why)));
    }
    let mut lines = vec![format!("  conversation ({})", facts.join("; "))];
    let mut turns: Vec<_> = c.turns.iter().collect();
    turns.sort_by(|a, b| a.start_ms.total_cmp(&b.start_ms));
    for t in turns {
        let agent = t.speaker != "us";
        let said = if !agent {
            one_line(t.label.as_deref().unwrap_or("?"))
        } else {
            match (&t.text, &t.error) {
                (Some(heard), _) if heard.trim().is_empty() => "(heard no words)".to_string(),
                (Some(heard), _) => format!("\"{}\"", one_line(heard)),
                (None, Some(error)) => format!("(no text: {})", one_line(error)),
                (None, None) => "(not transcribed)".to_string(),
            }
        };
        let when = format!("{:.2}–{:.2} s", t.start_ms / 1000.0, t.end_ms / 1000.0);
        lines.push(format!("    {when:>13}  {:<5}  {said}", if agent { "agent" } else { "us" }));
    }
    if c.turns.is_empty() {
        lines.push("    no turns: neither side spoke".into());
    }
    lines
}

/// `s` on one line: runs of whitespace (newlines too) become one space.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// A load run's live progress: a status line on a terminal (redrawn every
/// second), else one line every ten seconds (logs of nightly jobs).
pub struct LoadProgressLine {
    bar: Option<indicatif::ProgressBar>,
    last_line: Option<std::time::Duration>,
}

impl LoadProgressLine {
    pub fn new() -> Self {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar
        });
        LoadProgressLine { bar, last_line: None }
    }

    pub fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

impl Default for LoadProgressLine {
    fn default() -> Self {
        Self::new()
    }
}

/// `[  12s] step 2/4 (2 concurrent) · up 2 · started 14 · passed 11 · failed 0 · errors 0 · 0.8 CPS`
pub fn load_status(live: &crate::load::runner::Live) -> String {
    let step = if live.draining {
        "waiting for the last calls".to_string()
    } else {
        format!("step {}/{} ({})", live.step + 1, live.steps, live.step_label)
    };
    format!(
        "[{:>5.0}s] {step} · up {} · started {} · passed {} · failed {} · errors {} · {:.1} CPS",
        live.elapsed.as_secs_f64(),
        live.up,
        live.started,
        live.passed,
        live.failed,
        live.errors,
        live.cps
    )
}

impl crate::load::runner::LoadProgress for LoadProgressLine {
    fn tick(&mut self, live: &crate::load::runner::Live) {
        let line = load_status(live);
        match &self.bar {
            Some(bar) => bar.set_message(line),
            None => {
                let due = self.last_line.is_none_or(|t| live.elapsed >= t + std::time::Duration::from_secs(10));
                if due || live.draining && live.up == 0 {
                    eprintln!("{line}");
                    self.last_line = Some(live.elapsed);
                }
            }
        }
    }

    fn call_finished(&mut self, _sample: &crate::load::sample::CallSample) {}
}

/// The load run's closing lines: per step, the knee, where the report is.
pub fn load_summary(report: &crate::load::report::LoadReport, page: &Path, problems: &[String]) {
    use crate::load::sample::Metric;
    println!();
    println!(
        "{:<18} {:>6} {:>8} {:>9} {:>11} {:>11} {:>11}",
        "step", "calls", "success", "peak up", "answer p95", "join p95", "audio p95"
    );
    for s in &report.steps {
        let p95 = |m: Metric| s.metric(m).map_or("–".into(), |p| crate::time::human_ms(p.p95));
        println!(
            "{:<18} {:>6} {:>7.1}% {:>9} {:>11} {:>11} {:>11}",
            s.label,
            s.calls,
            s.success_rate * 100.0,
            s.peak_concurrent,
            p95(Metric::Answer),
            p95(Metric::AgentJoin),
            p95(Metric::FirstAudio)
        );
        for f in s.failures.iter().take(3) {
            println!("{:<18}   {} call(s): {}", "", f.calls, f.key);
        }
    }
    match &report.knee {
        Some(k) => {
            let what: Vec<String> =
                k.crossings.iter().map(|c| format!("{} (measured {})", c.rule, c.measured)).collect();
            println!("knee     step {} ({}): {}", k.step + 1, k.step_label, what.join("; "));
        }
        None => println!("knee     none: no rule crossed"),
    }
    if report.tx_late_packets > 0 {
        println!(
            "warning  callprobe sent {} RTP packets late: the tester itself was overloaded",
            report.tx_late_packets
        );
    }
    if report.interrupted {
        println!("interrupted: the calls under way were hung up; the report covers what ran");
    }
    for p in problems {
        println!("problem  {p}");
    }
    println!("report   {}", page.display());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::fixtures::{conversation, failed, greeting, ours, turn};

    /// Flaky calls passed, and the totals line says how many of them.
    #[test]
    fn the_totals_line_counts_flaky_calls() {
        use crate::report::model::Transport;
        let call = |v: Verdict| Call::bare("c@cp".into(), "cp".into(), "sip:1@h".into(), Transport::Udp, v, 1);
        let mut failed_every_try = call(Verdict::Fail);
        failed_every_try.attempts = crate::retry::combine(
            vec![crate::retry::Tried { call: call(Verdict::Fail), folder: None }],
            crate::retry::Tried { call: call(Verdict::Fail), folder: None },
        )
        .attempts;
        let report =
            Report::new(vec![call(Verdict::Pass), call(Verdict::Flaky), call(Verdict::Flaky), failed_every_try]);
        assert_eq!(passed_line(&report), "3 of 4 call(s) passed, 2 flaky (passed on a retry), 1 failed every try");
        assert_eq!(
            passed_line(&Report::new(vec![call(Verdict::Flaky)])),
            "1 of 1 call(s) passed, 1 flaky (passed on a retry)"
        );
        assert_eq!(passed_line(&Report::new(vec![call(Verdict::Pass)])), "1 of 1 call(s) passed");
        assert!(summary_table(&Report::new(vec![call(Verdict::Flaky)])).contains("FLAKY "));
    }

    #[test]
    fn conversation_lines_show_each_turn_after_a_summary() {
        let mut greeting = greeting("Thank you for\ncalling.");
        greeting.engine = Some("whisper tiny.en".into());
        let ours = ours("hello_can_you_hear_me_16k.wav");
        let failed = failed("http whisper-1 (http://127.0.0.1:9/v1/audio/transcriptions): HTTP 503");
        let mut late = turn("agent", 12_500.0, 13_020.0);
        late.text = Some(" ".into());
        let c = conversation(vec![greeting, ours, failed, late]);
        assert_eq!(
            conversation_lines(&c).join("\n"),
            [
                "  conversation (end of turn 1.00 s; reply latency p50 2.16 s, p95 2.16 s, max 2.16 s; overlap at 3.60 s for 100 ms)",
                "      2.02–2.41 s  agent  \"Thank you for calling.\"",
                "      2.74–3.70 s  us     hello_can_you_hear_me_16k.wav",
                "      5.86–7.10 s  agent  (no text: http whisper-1 (http://127.0.0.1:9/v1/audio/transcriptions): HTTP 503)",
                "    12.50–13.02 s  agent  (heard no words)",
            ]
            .join("\n")
        );
    }

    #[test]
    fn conversation_lines_without_replies_or_transcripts() {
        let c = Conversation {
            end_of_turn_ms: 800,
            turns: vec![turn("agent", 866.0, 2236.0)],
            reply_latencies_ms: Vec::new(),
            reply_latency_p50_ms: None,
            reply_latency_p95_ms: None,
            reply_latency_max_ms: None,
            overlaps: Vec::new(),
            transcripts_missing: Some("no speech-to-text engine (--stt)".into()),
        };
        assert_eq!(
            conversation_lines(&c),
            [
                "  conversation (end of turn 800 ms; no replies; not transcribed: no speech-to-text engine (--stt))",
                "      0.87–2.24 s  agent  (not transcribed)",
            ]
        );
        let silent = Conversation { turns: Vec::new(), ..c };
        assert_eq!(conversation_lines(&silent)[1], "    no turns: neither side spoke");
    }

    /// In the verdict block the conversation comes right after the checks.
    #[test]
    fn verdict_block_shows_the_conversation_after_the_checks() {
        let record = crate::livekit::observation::tests::record_with_invites(
            std::time::Duration::from_secs(1_741_944_413),
            &[(0.2, 1)],
        );
        let checks = vec![crate::verdict::checks::Check {
            name: "step 1: agent turn".into(),
            passed: true,
            detail: "turn 1: heard 'Thank you for calling.'".into(),
        }];
        let mut call = Call::new(&record, crate::report::model::Media::default(), checks, Vec::new(), None);
        let mut greeting = turn("agent", 2016.0, 2406.0);
        greeting.text = Some("Thank you for calling.".into());
        call.conversation = Some(Conversation {
            end_of_turn_ms: 1000,
            turns: vec![greeting],
            reply_latencies_ms: Vec::new(),
            reply_latency_p50_ms: None,
            reply_latency_p95_ms: None,
            reply_latency_max_ms: None,
            overlaps: Vec::new(),
            transcripts_missing: None,
        });
        let block = report::verdict_block(&call);
        let lines: Vec<&str> = block.lines().collect();
        let check = lines.iter().position(|l| l.contains("step 1: agent turn")).expect("the check line");
        assert_eq!(lines[check + 1], "  conversation (end of turn 1.00 s; no replies)", "{block}");
        assert_eq!(lines[check + 2], "      2.02–2.41 s  agent  \"Thank you for calling.\"", "{block}");
        assert!(lines[check + 3].starts_with("verdict"), "{block}");
    }
}
