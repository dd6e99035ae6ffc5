//! A load run's `index.html`: self-contained (inline CSS and SVG, opens
//! from disk). The verdict and the knee, one latency-vs-load chart per
//! timing (p50/p95/p99 per step, the rule's limit drawn in), the success
//! rate per step, a table of every step, the failures grouped by diagnosis
//! with a kept call to open, and a link to the kept calls' own page.

use std::fmt::Write;

use super::knee::KneeRule;
use super::report::LoadReport;
use super::sample::Metric;
use super::stats::StepStats;
use crate::report::html::escape::text;
use crate::report::model::Verdict;
use crate::time::human_ms;

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1d232b}
main{max-width:1100px;margin:0 auto;padding:20px}h1{margin:0;font-size:22px}h2{font-size:17px;margin:28px 0 8px}
.badge{display:inline-block;padding:4px 10px;border-radius:6px;font-weight:700;color:#fff}
.pass{background:#2f8f46}.fail{background:#c4352b}.error{background:#8a6d1d}
.sub{color:#5a6470}.knee{border-left:4px solid #c4352b;background:#fff;padding:10px 14px;margin:16px 0}
.ok{border-left-color:#2f8f46}table{border-collapse:collapse;background:#fff;width:100%}
td,th{border-bottom:1px solid #e3e6ea;padding:5px 8px;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}td.l{text-align:left;white-space:normal}
.charts{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:12px}
.chart{background:#fff;padding:8px;border-radius:6px}.chart h3{font-size:13px;margin:0 0 4px}
svg text{font-size:10px;fill:#5a6470}.crossed{background:#fde8e6}";

/// The page.
pub fn render(report: &LoadReport) -> String {
    let mut page = String::new();
    let verdict = match report.verdict {
        Verdict::Pass => "pass",
        Verdict::Fail => "fail",
        Verdict::Error => "error",
        Verdict::Flaky => "flaky",
    };
    let calls = report.calls.len();
    let passed = report.calls.iter().filter(|c| c.verdict == Verdict::Pass).count();
    let _ = write!(
        page,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>callprobe load {verdict}</title><style>{STYLE}</style></head><body><main>
<div><span class="badge {verdict}" id="load-verdict">{verdict}</span> <h1 style="display:inline">callprobe load</h1></div>
<div class="sub">{plan} · {calls} calls · {passed} passed · {elapsed:.0} s · <a href="load.json">load.json</a> · <a href="junit.xml">junit.xml</a> · <a href="calls.html">kept calls</a> (failed and sampled: their recordings, capture and full report)</div>
"#,
        plan = text(&report.plan),
        elapsed = report.elapsed_s,
    );
    if report.interrupted {
        page.push_str(r#"<div class="knee">Interrupted (Ctrl-C): the calls under way were hung up; the numbers cover what ran.</div>"#);
    }
    knee(&mut page, report);
    if report.tx_late_packets > 0 {
        let _ = write!(
            page,
            r#"<div class="knee">callprobe itself fell behind: {} of our RTP packets were sent late. Latencies at these steps include the tester's own overload.</div>"#,
            report.tx_late_packets
        );
    }
    page.push_str("<h2>Latency vs load</h2><div class=\"charts\">");
    for metric in Metric::ALL {
        if report.steps.iter().any(|s| s.metric(metric).is_some()) {
            chart(&mut page, report, metric);
        }
    }
    success_chart(&mut page, &report.steps);
    page.push_str("</div>");
    steps_table(&mut page, report);
    failures(&mut page, report);
    page.push_str("</main></body></html>\n");
    page
}

fn knee(page: &mut String, report: &LoadReport) {
    let rules: Vec<String> = report.rules.iter().map(|r| text(&r.describe())).collect();
    match &report.knee {
        Some(k) => {
            let _ = write!(
                page,
                r#"<div class="knee" id="knee"><b>Knee at step {}: {}</b><ul>"#,
                k.step + 1,
                text(&k.step_label)
            );
            for c in &k.crossings {
                let _ = write!(page, "<li>{}: measured {}</li>", text(&c.rule), text(&c.measured));
            }
            let _ = write!(page, "</ul>Rules: {}</div>", rules.join(" · "));
        }
        None => {
            let _ = write!(
                page,
                r#"<div class="knee ok" id="knee"><b>No knee</b>: no rule crossed at any step. Rules: {}</div>"#,
                rules.join(" · ")
            );
        }
    }
}

/// A line of a chart: its name, colour, and which percentile it draws.
type Series = (&'static str, &'static str, fn(&super::stats::Percentiles) -> f64);

const W: f64 = 340.0;
const H: f64 = 170.0;
const LEFT: f64 = 46.0;
const BOTTOM: f64 = 26.0;

fn chart(page: &mut String, report: &LoadReport, metric: Metric) {
    let steps = &report.steps;
    let series: [Series; 3] =
        [("p50", "#2f6fb3", |p| p.p50), ("p95", "#d08a1c", |p| p.p95), ("p99", "#c4352b", |p| p.p99)];
    let limit = report.rules.iter().find_map(|r| match r {
        KneeRule::Above { metric: m, limit, .. } if *m == metric => Some(*limit),
        _ => None,
    });
    let top = steps
        .iter()
        .filter_map(|s| s.metric(metric).map(|p| p.p99))
        .chain(limit)
        .fold(0.0, f64::max)
        .max(if metric.unit() == "%" { 1.0 } else { 10.0 })
        * 1.1;
    let _ = write!(
        page,
        r#"<div class="chart"><h3>{}</h3><svg width="{W}" height="{H}" viewBox="0 0 {W} {H}">"#,
        text(metric.title())
    );
    axes(page, steps, top, metric.unit());
    if let Some(limit) = limit {
        let y = y_of(limit, top);
        let _ = write!(
            page,
            r##"<line x1="{LEFT}" x2="{W}" y1="{y:.1}" y2="{y:.1}" stroke="#c4352b" stroke-dasharray="4 3"/><text x="{:.1}" y="{:.1}">limit</text>"##,
            W - 26.0,
            y - 3.0
        );
    }
    for (name, color, get) in series {
        let points: Vec<String> = steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                s.metric(metric).map(|p| format!("{:.1},{:.1}", x_of(i, steps.len()), y_of(get(p), top)))
            })
            .collect();
        if points.is_empty() {
            continue;
        }
        let _ = write!(
            page,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"><title>{name}</title></polyline>"#,
            points.join(" ")
        );
        for p in &points {
            let (x, y) = p.split_once(',').unwrap_or(("0", "0"));
            let _ = write!(page, r#"<circle cx="{x}" cy="{y}" r="2.5" fill="{color}"/>"#);
        }
    }
    let _ = write!(
        page,
        r##"<text x="{LEFT}" y="10" fill="#2f6fb3">p50</text><text x="{}" y="10" fill="#d08a1c">p95</text><text x="{}" y="10" fill="#c4352b">p99</text>"##,
        LEFT + 28.0,
        LEFT + 56.0
    );
    page.push_str("</svg></div>");
}

fn success_chart(page: &mut String, steps: &[StepStats]) {
    let _ =
        write!(page, r#"<div class="chart"><h3>success rate</h3><svg width="{W}" height="{H}" viewBox="0 0 {W} {H}">"#);
    axes(page, steps, 100.0, "%");
    let n = steps.len();
    let bar = ((W - LEFT) / n.max(1) as f64 * 0.5).min(30.0);
    for (i, s) in steps.iter().enumerate() {
        let pct = s.success_rate * 100.0;
        let (x, y) = (x_of(i, n) - bar / 2.0, y_of(pct, 100.0));
        let color = if s.success_rate >= 0.99 { "#2f8f46" } else { "#c4352b" };
        let _ = write!(
            page,
            r#"<rect x="{x:.1}" y="{y:.1}" width="{bar:.1}" height="{:.1}" fill="{color}"><title>{pct:.1}%</title></rect>"#,
            (H - BOTTOM) - y
        );
    }
    page.push_str("</svg></div>");
}

fn x_of(i: usize, n: usize) -> f64 {
    let span = W - LEFT - 20.0;
    if n <= 1 {
        LEFT + span / 2.0
    } else {
        LEFT + 10.0 + span * i as f64 / (n - 1) as f64
    }
}

fn y_of(v: f64, top: f64) -> f64 {
    let plot = H - BOTTOM - 14.0;
    (H - BOTTOM) - plot * (v / top).clamp(0.0, 1.0)
}

fn axes(page: &mut String, steps: &[StepStats], top: f64, unit: &str) {
    let base = H - BOTTOM;
    let _ = write!(
        page,
        r##"<line x1="{LEFT}" x2="{W}" y1="{base}" y2="{base}" stroke="#aab"/><line x1="{LEFT}" x2="{LEFT}" y1="12" y2="{base}" stroke="#aab"/>"##
    );
    for frac in [0.5, 1.0] {
        let v = top / 1.1 * frac;
        let label = if unit == "%" { format!("{v:.0}%") } else { human_ms(v) };
        let _ = write!(page, r#"<text x="2" y="{:.1}">{}</text>"#, y_of(v, top) + 3.0, text(&label));
    }
    for (i, s) in steps.iter().enumerate() {
        let short = s.label.replace(" concurrent", "").replace(" CPS", "/s");
        let _ = write!(
            page,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
            x_of(i, steps.len()),
            base + 14.0,
            text(&short)
        );
    }
}

fn steps_table(page: &mut String, report: &LoadReport) {
    page.push_str("<h2>Steps</h2><table id=\"steps\"><tr><th>step</th><th>calls</th><th>passed</th><th>success</th><th>peak up</th><th>CPS</th>");
    let shown = [
        Metric::PostDialDelay,
        Metric::Answer,
        Metric::AgentJoin,
        Metric::FirstAudio,
        Metric::ReplyLatency,
        Metric::LossPercent,
        Metric::Jitter,
    ];
    for m in shown {
        let _ = write!(page, "<th>{} p50/p95/p99/max</th>", text(m.name()));
    }
    page.push_str("</tr>");
    let knee_step = report.knee.as_ref().map(|k| k.step);
    for s in &report.steps {
        let class = if Some(s.step) == knee_step { " class=\"crossed\"" } else { "" };
        let _ = write!(
            page,
            "<tr{class}><td>{}. {}</td><td>{}</td><td>{}</td><td>{:.1}%</td><td>{}</td><td>{:.2}</td>",
            s.step + 1,
            text(&s.label),
            s.calls,
            s.passed,
            s.success_rate * 100.0,
            s.peak_concurrent,
            s.achieved_cps
        );
        for m in shown {
            let cell = s.metric(m).map_or("–".to_string(), |p| {
                let f = |v: f64| if m.unit() == "%" { format!("{v:.2}") } else { format!("{v:.0}") };
                format!("{}/{}/{}/{} {}", f(p.p50), f(p.p95), f(p.p99), f(p.max), m.unit())
            });
            let _ = write!(page, "<td>{}</td>", text(&cell));
        }
        page.push_str("</tr>");
    }
    page.push_str("</table>");
}

fn failures(page: &mut String, report: &LoadReport) {
    if report.steps.iter().all(|s| s.failures.is_empty()) {
        return;
    }
    page.push_str("<h2>Failures by diagnosis</h2><table id=\"failures\"><tr><th>step</th><th>calls</th><th>diagnosis</th><th>example</th></tr>");
    for s in &report.steps {
        for f in &s.failures {
            let example = f
                .example_dir
                .as_ref()
                .map_or("–".to_string(), |d| format!(r#"<a href="{}/call.pcap">{}</a>"#, text(d), text(d)));
            let _ = write!(
                page,
                r#"<tr><td>{}. {}</td><td>{}</td><td class="l">{}</td><td class="l">{example}</td></tr>"#,
                s.step + 1,
                text(&s.label),
                f.calls,
                text(&f.key)
            );
        }
    }
    page.push_str("</table>");
}
