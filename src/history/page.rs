//! The report folder's `index.html`: the run history as one static page
//! (inline CSS and SVG, opens from disk, no server). The runs newest first
//! with their pass rate; per scenario a strip of its last verdicts (each a
//! link to that run's page) and its flake rate; per objective of a scenario
//! file (`slo`, `[regression]`) a strip of met/breached with the latest
//! detail; and per scenario the trend of its key timings (post-dial delay,
//! answer, agent join, first audio, reply latency, MOS) as small charts
//! with the latest value. Each table fits a 1200 px window.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::{History, ObjectiveRow, RunRow, TIMINGS};
use crate::report::html::escape::text;
use crate::report::utc::UtcDateTime;

/// Runs shown in the list and used for the strips and trends.
const RECENT_RUNS: usize = 30;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
main{max-width:1150px;margin:0 auto;padding:20px}h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:26px 0 8px}
.sub{color:#5a6470}table{border-collapse:collapse;background:#fff;width:100%}
td,th{border-bottom:1px solid #e3e6ea;padding:5px 8px;text-align:left;white-space:nowrap}td.detail{white-space:normal;min-width:18em}
.wrap{overflow-x:auto}.badge{display:inline-block;padding:1px 8px;border-radius:5px;color:#fff;font-weight:600}
.pass{background:#2f8f46}.fail{background:#c4352b}.error{background:#8a6d1d}.flaky{background:#d08a1c}.none{background:#c9ced6}
.strip a,.strip span{display:inline-block;width:12px;height:18px;margin-right:2px;border-radius:2px}
svg text{font-size:10px;fill:#5a6470}.num{text-align:right}";

/// The page, from what the history holds.
pub fn render(history: &History) -> Result<String, String> {
    let runs = history.runs(RECENT_RUNS)?;
    // Oldest first for strips and trends.
    let chronological: Vec<&RunRow> = runs.iter().rev().collect();
    let ids: Vec<i64> = chronological.iter().map(|r| r.id).collect();
    let calls = history.calls_of(&ids)?;
    let mut page = String::new();
    let _ = write!(
        page,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>callprobe history</title><style>{STYLE}</style></head><body><main>
<h1>callprobe history</h1><div class="sub">the last {} run(s) of this report folder, newest first; each run's own page has the calls, recordings and diagnoses</div>
"#,
        runs.len()
    );
    scenarios(&mut page, &chronological, &calls);
    objectives(&mut page, &chronological, &history.objectives_of(&ids)?);
    trends(&mut page, &chronological, &calls);
    page.push_str(r#"<h2>Runs</h2><div class="wrap"><table id="runs"><tr><th>started (UTC)</th><th>suite</th><th>verdict</th><th class="num">passed</th><th class="num">flaky</th><th class="num">pass rate</th><th>report</th></tr>"#);
    for r in &runs {
        let rate = if r.calls == 0 { 0.0 } else { 100.0 * (r.passed + r.flaky) as f64 / r.calls as f64 };
        let _ = write!(
            page,
            r#"<tr><td>{when}</td><td>{suite}</td><td><span class="badge {v}">{v}</span></td><td class="num">{p}/{n}</td><td class="num">{f}</td><td class="num">{rate:.0}%</td><td><a href="{folder}/index.html">{folder}</a></td></tr>"#,
            when = text(&UtcDateTime::from_unix_seconds(r.started_unix_ms / 1000).readable()),
            suite = text(&r.suite),
            v = class(&r.verdict),
            p = r.passed,
            n = r.calls,
            f = r.flaky,
            folder = text(&r.folder),
        );
    }
    page.push_str("</table></div></main></body></html>\n");
    Ok(page)
}

fn class(verdict: &str) -> &'static str {
    match verdict {
        "pass" => "pass",
        "fail" => "fail",
        "flaky" => "flaky",
        "error" => "error",
        _ => "none",
    }
}

/// Per scenario: the strip of verdicts, the flake rate, the trends.
fn scenarios(page: &mut String, runs: &[&RunRow], calls: &[super::CallRow]) {
    let mut by_name: BTreeMap<&str, Vec<&super::CallRow>> = BTreeMap::new();
    for c in calls {
        by_name.entry(c.name.as_str()).or_default().push(c);
    }
    let folder_of = |run_id: i64| runs.iter().find(|r| r.id == run_id).map(|r| r.folder.as_str()).unwrap_or("");
    let _ = write!(
        page,
        r#"<h2>Scenarios</h2><div class="wrap"><table id="scenarios"><tr><th>scenario</th><th>last {} runs (oldest → newest)</th><th class="num">flaky</th></tr>"#,
        runs.len()
    );
    for (name, rows) in &by_name {
        let _ = write!(page, r#"<tr><td>{}</td><td class="strip">"#, text(name));
        for run in runs {
            match rows.iter().find(|c| c.run_id == run.id) {
                Some(c) => {
                    let title = if c.diagnosis.is_empty() {
                        format!("{}: {}", run.folder, c.verdict)
                    } else {
                        format!("{}: {} ({})", run.folder, c.verdict, c.diagnosis.join(", "))
                    };
                    let _ = write!(
                        page,
                        r#"<a class="{}" href="{}/index.html" title="{}"></a>"#,
                        class(&c.verdict),
                        text(folder_of(c.run_id)),
                        text(&title)
                    );
                }
                None => page.push_str(r#"<span class="none" title="not in this run"></span>"#),
            }
        }
        let flaky = rows.iter().filter(|c| c.verdict == "flaky").count();
        let _ =
            write!(page, r#"</td><td class="num">{:.0}%</td></tr>"#, 100.0 * flaky as f64 / rows.len().max(1) as f64);
    }
    page.push_str("</table></div>");
}

/// Per objective (scenario + rule): met/breached per run, and the latest detail.
fn objectives(page: &mut String, runs: &[&RunRow], results: &[ObjectiveRow]) {
    if results.is_empty() {
        return;
    }
    let mut by_rule: BTreeMap<(&str, &str, &str), Vec<&ObjectiveRow>> = BTreeMap::new();
    for o in results {
        by_rule.entry((o.scenario.as_str(), o.kind.as_str(), o.rule.as_str())).or_default().push(o);
    }
    page.push_str(
        r#"<h2>Objectives</h2><div class="wrap"><table id="objectives"><tr><th>scenario</th><th>rule</th><th>met / breached (oldest → newest)</th><th>latest</th></tr>"#,
    );
    for ((scenario, kind, rule), rows) in &by_rule {
        let _ =
            write!(page, r#"<tr><td>{}</td><td>{}: {}</td><td class="strip">"#, text(scenario), text(kind), text(rule));
        for run in runs {
            match rows.iter().find(|o| o.run_id == run.id) {
                Some(o) => {
                    let (class, word) = if o.passed { ("pass", "met") } else { ("fail", "breached") };
                    let _ = write!(
                        page,
                        r#"<a class="{class}" href="{}/index.html" title="{}"></a>"#,
                        text(&run.folder),
                        text(&format!("{}: {word}; {}", run.folder, o.detail))
                    );
                }
                None => page.push_str(r#"<span class="none" title="not checked in this run"></span>"#),
            }
        }
        let latest = rows.last().map(|o| (o.passed, o.detail.as_str()));
        let (class, word, detail) = match latest {
            Some((true, d)) => ("pass", "met", d),
            Some((false, d)) => ("fail", "breached", d),
            None => ("none", "–", ""),
        };
        let _ = write!(
            page,
            r#"</td><td class="detail"><span class="badge {class}">{word}</span> {}</td></tr>"#,
            text(detail)
        );
    }
    page.push_str("</table></div>");
}

/// Per scenario: the trend of each key timing over the runs.
fn trends(page: &mut String, runs: &[&RunRow], calls: &[super::CallRow]) {
    let mut by_name: BTreeMap<&str, Vec<&super::CallRow>> = BTreeMap::new();
    for c in calls {
        by_name.entry(c.name.as_str()).or_default().push(c);
    }
    page.push_str(r#"<h2>Trends</h2><div class="wrap"><table id="trends"><tr><th>scenario</th>"#);
    for t in TIMINGS {
        let _ = write!(page, "<th>{}</th>", text(t));
    }
    page.push_str("</tr>");
    for (name, rows) in &by_name {
        let _ = write!(page, r#"<tr><td>{}</td>"#, text(name));
        for (i, metric) in TIMINGS.iter().enumerate() {
            let values: Vec<Option<f64>> =
                runs.iter().map(|run| rows.iter().find(|c| c.run_id == run.id).and_then(|c| c.timings[i])).collect();
            page.push_str("<td>");
            sparkline(page, &values, metric);
            page.push_str("</td>");
        }
        page.push_str("</tr>");
    }
    page.push_str("</table></div>");
}

/// A small trend chart with its latest value (ms, or MOS).
fn sparkline(page: &mut String, values: &[Option<f64>], metric: &str) {
    let known: Vec<(usize, f64)> = values.iter().enumerate().filter_map(|(i, v)| v.map(|v| (i, v))).collect();
    let Some(&(_, last)) = known.last() else {
        page.push('–');
        return;
    };
    let (w, h) = (70.0, 22.0);
    let max = known.iter().map(|(_, v)| *v).fold(f64::MIN, f64::max);
    let min = known.iter().map(|(_, v)| *v).fold(f64::MAX, f64::min);
    let span = (max - min).max(if metric == "mos" { 0.1 } else { 1.0 });
    let n = values.len().max(2) - 1;
    let points: Vec<String> = known
        .iter()
        .map(|(i, v)| format!("{:.1},{:.1}", w * *i as f64 / n as f64, h - 2.0 - (h - 4.0) * (v - min) / span))
        .collect();
    let label = if metric == "mos" { format!("{last:.2}") } else { crate::time::human_ms(last) };
    let _ = write!(
        page,
        r##"<svg width="{w}" height="{h}" viewBox="0 0 {w} {h}" class="trend" data-metric="{m}"><polyline fill="none" stroke="#2f6fb3" stroke-width="1.5" points="{p}"/></svg> {l}"##,
        m = text(metric),
        p = points.join(" "),
        l = text(&label)
    );
}
