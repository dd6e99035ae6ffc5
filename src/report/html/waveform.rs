//! The waveform of one call as inline SVG: what the far end sent (rx) above
//! what we sent (tx), on the call timeline (t = 0 at the first INVITE, like
//! the recordings), each drawn as the min/max of the samples under every
//! pixel column. Marked on top: the far end's speech segments, our played
//! clip, both sides' conversation turns (a strip along the bottom of each
//! lane), and the key times (connected, first audio, response, agent
//! joined, end). Clicking the waveform seeks the page's audio players (page script).

use std::fmt::Write;
use std::path::Path;

use super::escape::text;
use crate::audio::wav::read_mono;

/// Left margin for the lane names.
const LEFT: f64 = 92.0;
/// One column per pixel of the plot.
const COLUMNS: usize = 1000;
const RIGHT: f64 = 16.0;
const LABEL_ROW_HEIGHT: f64 = 14.0;
const LABEL_ROWS: usize = 3;
const LANE_HEIGHT: f64 = 96.0;
const LANE_GAP: f64 = 10.0;
/// Conversation turns: a strip this high along the bottom of their lane.
const TURN_STRIP_HEIGHT: f64 = 7.0;
/// Quieter tracks are not blown up beyond this peak (−20 dBFS), so silence stays flat.
const MIN_NORMALISATION_PEAK: f64 = 3277.0;

/// One recording, mono.
pub struct Track {
    pub samples: Vec<i16>,
    pub sample_rate: u32,
}

impl Track {
    /// Reads a WAV file at its own rate (mixed down to mono).
    pub fn read(path: &Path) -> Result<Track, String> {
        let reader = hound::WavReader::open(path).map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let sample_rate = reader.spec().sample_rate;
        if sample_rate == 0 {
            return Err(format!("{} has a sample rate of 0", path.display()));
        }
        let samples = read_mono(reader, sample_rate).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Ok(Track { samples, sample_rate })
    }

    pub fn duration_ms(&self) -> f64 {
        self.samples.len() as f64 * 1000.0 / f64::from(self.sample_rate)
    }

    /// (min, max) of the samples between two times, `None` past the end.
    fn range(&self, from_ms: f64, to_ms: f64) -> Option<(i16, i16)> {
        let index = |ms: f64| (ms * f64::from(self.sample_rate) / 1000.0) as usize;
        let start = index(from_ms);
        if start >= self.samples.len() {
            return None;
        }
        let end = index(to_ms).clamp(start + 1, self.samples.len());
        let slice = &self.samples[start..end];
        Some((slice.iter().copied().min()?, slice.iter().copied().max()?))
    }

    fn peak(&self) -> f64 {
        self.samples.iter().map(|s| f64::from(*s).abs()).fold(0.0, f64::max)
    }
}

/// A lane's recording, or why there is none.
pub type Lane<'a> = Result<&'a Track, &'a str>;

/// A moment to mark across both lanes.
pub struct KeyTime {
    pub at_ms: f64,
    pub label: String,
    /// CSS class: `connected`, `first-audio`, `response`, `agent`, `ended`.
    pub class: &'static str,
}

/// One turn of the conversation (`calls[].conversation.turns[]`).
pub struct TurnSpan {
    pub start_ms: f64,
    pub end_ms: f64,
    /// The agent's (drawn on the rx lane); else ours (tx lane).
    pub far_end: bool,
    /// The tooltip: who, when, what was said.
    pub title: String,
}

/// Everything marked on the waveform (ms on the call timeline).
#[derive(Default)]
pub struct Marks {
    pub speech_segments: Vec<(f64, f64)>,
    pub played: Option<(f64, f64)>,
    pub turns: Vec<TurnSpan>,
    pub key_times: Vec<KeyTime>,
}

/// The waveform figure's SVG. `duration_ms` is the length of the time axis.
pub fn waveform_svg(rx: Lane, tx: Lane, marks: &Marks, duration_ms: f64) -> String {
    let duration_ms = duration_ms.max(1.0);
    let plot_width = COLUMNS as f64;
    let width = LEFT + plot_width + RIGHT;
    let labels_height = LABEL_ROW_HEIGHT * LABEL_ROWS as f64 + 4.0;
    let rx_top = labels_height;
    let tx_top = rx_top + LANE_HEIGHT + LANE_GAP;
    let axis_y = tx_top + LANE_HEIGHT + 4.0;
    let height = axis_y + 20.0;
    let x_of = |ms: f64| LEFT + (ms / duration_ms).clamp(0.0, 1.0) * plot_width;

    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="wave" viewBox="0 0 {width:.0} {height:.0}" data-duration-ms="{duration_ms:.1}" data-plot-left="{LEFT}" data-plot-width="{plot_width}" role="img" aria-label="waveform of both directions">"#
    );

    lane(&mut svg, "far end (rx)", rx, rx_top, duration_ms, "rx");
    lane(&mut svg, "we sent (tx)", tx, tx_top, duration_ms, "tx");
    for &(start, end) in &marks.speech_segments {
        let _ = write!(
            svg,
            r#"<rect class="speech" x="{x:.1}" y="{rx_top:.1}" width="{w:.1}" height="{LANE_HEIGHT}"><title>far-end speech {start:.0}–{end:.0} ms</title></rect>"#,
            x = x_of(start),
            w = (x_of(end) - x_of(start)).max(1.0),
        );
    }
    if let Some((start, end)) = marks.played {
        let _ = write!(
            svg,
            r#"<rect class="played" x="{x:.1}" y="{tx_top:.1}" width="{w:.1}" height="{LANE_HEIGHT}"><title>our clip played {start:.0}–{end:.0} ms</title></rect>"#,
            x = x_of(start),
            w = (x_of(end) - x_of(start)).max(1.0),
        );
    }

    for turn in &marks.turns {
        let (class, top) = if turn.far_end { ("agent", rx_top) } else { ("us", tx_top) };
        let _ = write!(
            svg,
            r#"<rect class="turn {class}" x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{TURN_STRIP_HEIGHT}"><title>{title}</title></rect>"#,
            x = x_of(turn.start_ms),
            y = top + LANE_HEIGHT - TURN_STRIP_HEIGHT,
            w = (x_of(turn.end_ms) - x_of(turn.start_ms)).max(1.0),
            title = text(&turn.title),
        );
    }

    // Key times: a line across both lanes, the label in the first row above where it fits.
    let mut row_ends = [f64::MIN; LABEL_ROWS];
    let mut key_times: Vec<&KeyTime> = marks.key_times.iter().filter(|k| k.at_ms.is_finite()).collect();
    key_times.sort_by(|a, b| a.at_ms.total_cmp(&b.at_ms));
    for key in key_times {
        let x = x_of(key.at_ms);
        let label_width = key.label.chars().count() as f64 * 6.2 + 8.0;
        // Labels near the right edge go to the left of their line.
        let flipped = x + label_width > width;
        let (start, end) = if flipped { (x - label_width, x) } else { (x, x + label_width) };
        let row = row_ends.iter().position(|&e| e < start).unwrap_or(LABEL_ROWS - 1);
        row_ends[row] = end;
        let label_y = LABEL_ROW_HEIGHT * (row as f64 + 1.0);
        let _ = write!(
            svg,
            r#"<g class="key {class}"><title>{title}</title><line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{axis_y:.1}"/><text x="{tx:.1}" y="{label_y:.1}"{anchor}>{label}</text></g>"#,
            class = key.class,
            title = text(&format!("{} at {:.0} ms", key.label, key.at_ms)),
            top = label_y - 10.0,
            tx = if flipped { x - 2.0 } else { x + 2.0 },
            anchor = if flipped { r#" text-anchor="end""# } else { "" },
            label = text(&key.label),
        );
    }

    axis(&mut svg, axis_y, duration_ms, &x_of);
    let _ = write!(
        svg,
        r#"<line class="playhead" x1="{LEFT}" y1="{rx_top:.1}" x2="{LEFT}" y2="{axis_y:.1}" visibility="hidden"/></svg>"#
    );
    svg
}

fn lane(svg: &mut String, name: &str, track: Lane, top: f64, duration_ms: f64, class: &str) {
    let middle = top + LANE_HEIGHT / 2.0;
    let _ = write!(
        svg,
        r#"<rect class="lane" x="{LEFT}" y="{top:.1}" width="{COLUMNS}" height="{LANE_HEIGHT}"/><text class="lane-name" x="{nx:.1}" y="{ny:.1}">{name}</text>"#,
        nx = LEFT - 8.0,
        ny = middle + 4.0,
        name = text(name),
    );
    let track = match track {
        Ok(t) => t,
        Err(why) => {
            let _ = write!(
                svg,
                r#"<text class="missing" x="{x:.1}" y="{y:.1}">{why}</text>"#,
                x = LEFT + 12.0,
                y = middle + 4.0,
                why = text(why),
            );
            return;
        }
    };
    let half = LANE_HEIGHT / 2.0 - 2.0;
    let scale = half / track.peak().max(MIN_NORMALISATION_PEAK);
    let mut path = String::new();
    for column in 0..COLUMNS {
        let from = column as f64 * duration_ms / COLUMNS as f64;
        let to = (column + 1) as f64 * duration_ms / COLUMNS as f64;
        let Some((low, high)) = track.range(from, to) else {
            break;
        };
        let y_top = middle - f64::from(high) * scale;
        let y_bottom = (middle - f64::from(low) * scale).max(y_top + 0.6);
        let x = LEFT + column as f64 + 0.5;
        let _ = write!(path, "M{x:.1} {y_top:.1}V{y_bottom:.1}");
    }
    let _ = write!(svg, r#"<path class="signal {class}" d="{path}"/>"#);
}

/// Ticks at a round step, labelled in seconds.
fn axis(svg: &mut String, y: f64, duration_ms: f64, x_of: &dyn Fn(f64) -> f64) {
    const STEPS_MS: [f64; 12] = [100.0, 200.0, 500.0, 1e3, 2e3, 5e3, 10e3, 15e3, 30e3, 60e3, 120e3, 300e3];
    let step = STEPS_MS.iter().copied().find(|s| duration_ms / s <= 12.0).unwrap_or(600e3);
    let _ = write!(
        svg,
        r#"<g class="axis"><line x1="{LEFT}" y1="{y:.1}" x2="{x2:.1}" y2="{y:.1}"/>"#,
        x2 = x_of(duration_ms)
    );
    let mut t = 0.0;
    while t <= duration_ms + 0.5 {
        let x = x_of(t);
        let label = if step < 1000.0 { format!("{:.1} s", t / 1000.0) } else { format!("{:.0} s", t / 1000.0) };
        let _ = write!(
            svg,
            r#"<line x1="{x:.1}" y1="{y:.1}" x2="{x:.1}" y2="{y2:.1}"/><text x="{x:.1}" y="{ty:.1}">{label}</text>"#,
            y2 = y + 4.0,
            ty = y + 16.0,
        );
        t += step;
    }
    svg.push_str("</g>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_hold_min_and_max_of_their_samples() {
        // 1 s at 1 kHz: a ramp, so each 1 ms column holds exactly one sample.
        let track = Track { samples: (0..1000).map(|i| i as i16 * 10).collect(), sample_rate: 1000 };
        assert_eq!(track.range(0.0, 1.0), Some((0, 0)));
        assert_eq!(track.range(10.0, 20.0), Some((100, 190)));
        assert_eq!(track.range(999.0, 2000.0), Some((9990, 9990)));
        assert_eq!(track.range(1000.0, 1001.0), None);
    }

    #[test]
    fn marks_and_missing_lanes_are_drawn() {
        let track = Track { samples: vec![0, 1000, -1000, 0], sample_rate: 8000 };
        let marks = Marks {
            speech_segments: vec![(100.0, 400.0)],
            played: Some((500.0, 900.0)),
            turns: vec![
                TurnSpan { start_ms: 100.0, end_ms: 450.0, far_end: true, title: "agent turn: “<hi>”".into() },
                TurnSpan { start_ms: 500.0, end_ms: 880.0, far_end: false, title: "our turn".into() },
            ],
            key_times: vec![KeyTime { at_ms: 50.0, label: "connected <x>".into(), class: "connected" }],
        };
        let svg = waveform_svg(Ok(&track), Err("no tx.wav"), &marks, 1000.0);
        assert!(svg.contains(r#"class="speech""#) && svg.contains(r#"class="played""#));
        assert!(svg.contains(r#"class="turn agent""#) && svg.contains(r#"class="turn us""#));
        assert!(svg.contains("agent turn: “&lt;hi&gt;”") && !svg.contains("<hi>"));
        assert!(svg.contains("connected &lt;x&gt;") && !svg.contains("<x>"));
        assert!(svg.contains("no tx.wav"));
        assert_eq!(svg.matches("<svg").count(), 1);
    }
}
