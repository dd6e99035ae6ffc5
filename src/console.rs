//! What the terminal shows: SIP messages as they pass (`-v`), the suite's
//! progress bar, summary table and totals, `check`'s totals, and the
//! tester's own errors. Verdict blocks come from
//! [`crate::report::verdict_block`].

use std::fmt::Display;
use std::path::Path;

use crate::call::{CallObserver, Direction, LoggedMessage};
use crate::pipeline::ExecuteError;
use crate::report::model::Verdict;
use crate::report::{self, Call, Report};
use crate::suite::SuiteProgress;

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
    let passed = report.calls.iter().filter(|c| c.verdict == Verdict::Pass).count();
    println!(
        "{passed} of {} call(s) passed{}{}",
        report.calls.len(),
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

/// The summary table printed after a suite: one line per call.
pub fn summary_table(report: &Report) -> String {
    let mut out =
        format!("{:<6} {:<48} {:<14} {:>9} {:>11}  {}\n", "result", "call", "finals", "setup ms", "1st audio", "why");
    for c in &report.calls {
        let name = report::call_identity::display_name(c);
        let finals: Vec<String> = c.sip.final_responses.iter().map(|f| f.status.to_string()).collect();
        let setup = c.sip.connected_ms.map_or("-".into(), |ms| format!("{ms:.0}"));
        let first_audio = c.media.first_audio_ms.map_or("-".into(), |ms| ms.to_string());
        let why = c.diagnosis.first().map_or_else(
            || c.checks.iter().find(|k| !k.passed).map_or(String::new(), |k| k.name.clone()),
            |d| d.code.clone(),
        );
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
    out
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
