//! The SIP ladder diagram of one call as inline SVG, the way carriers'
//! call-flow tools draw it: a lifeline for callprobe and one per peer
//! address, one arrow per message (first line and `t_ms`), coloured by kind
//! (request, provisional, 2xx, challenge, failure), and a dashed RTP band
//! where media flowed, in time order with the messages (at the first RTP
//! packet received). Each arrow links to the raw message further down.

use std::fmt::Write;

use super::escape::text;
use crate::report::model::{Call, Direction, Message};

/// Left margin for the time labels.
const TIME_COLUMN: f64 = 92.0;
/// Centre of the callprobe lifeline.
const FIRST_LIFELINE: f64 = TIME_COLUMN + 90.0;
/// Distance between lifelines.
const LIFELINE_GAP: f64 = 470.0;
const RIGHT_MARGIN: f64 = 120.0;
const HEADER_HEIGHT: f64 = 58.0;
const ROW_HEIGHT: f64 = 30.0;
/// Average advance of the 12 px monospace label font.
const LABEL_CHAR_WIDTH: f64 = 7.3;

/// Arrowheads for every arrow kind, defined once per page (ids are global).
pub const MARKER_DEFS: &str = r##"<svg class="defs" width="0" height="0" aria-hidden="true"><defs>
<marker id="arrow-request" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#1f5fbf"/></marker>
<marker id="arrow-provisional" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#6b7280"/></marker>
<marker id="arrow-success" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#15803d"/></marker>
<marker id="arrow-challenge" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#b45309"/></marker>
<marker id="arrow-failure" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#b91c1c"/></marker>
<marker id="arrow-rtp" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#7c3aed"/></marker>
</defs></svg>"##;

/// What an arrow is, for its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ArrowKind {
    Request,
    Provisional,
    Success,
    Challenge,
    Failure,
}

impl ArrowKind {
    fn of(first_line: &str) -> ArrowKind {
        let Some(rest) = first_line.strip_prefix("SIP/2.0 ") else {
            return ArrowKind::Request;
        };
        match rest.get(..3).and_then(|code| code.parse::<u16>().ok()) {
            Some(100..=199) => ArrowKind::Provisional,
            Some(200..=299) => ArrowKind::Success,
            Some(401 | 407) => ArrowKind::Challenge,
            _ => ArrowKind::Failure,
        }
    }

    fn name(self) -> &'static str {
        match self {
            ArrowKind::Request => "request",
            ArrowKind::Provisional => "provisional",
            ArrowKind::Success => "success",
            ArrowKind::Challenge => "challenge",
            ArrowKind::Failure => "failure",
        }
    }
}

/// One row of the ladder.
enum Row<'a> {
    /// `messages[index]`.
    Message(usize),
    /// Where media flowed, between callprobe and this lifeline, from `t_ms` on.
    Rtp { lifeline: usize, label: &'a str, t_ms: f64 },
}

/// When media started, on the messages' clock: the first RTP packet
/// received, else the moment the call was answered.
fn rtp_row_time(call: &Call) -> Option<f64> {
    call.media.first_rtp_ms.or(call.sip.connected_ms)
}

/// Where the RTP row goes among the message rows: in time order (after every
/// message at or before `t_ms`), and never above the 2xx that answered the
/// call — media cannot precede the answer, though the answer time and the
/// message times are rounded apart.
fn rtp_row_index(messages: &[Message], t_ms: f64) -> usize {
    let by_time = messages.iter().rposition(|m| m.t_ms <= t_ms).map_or(0, |i| i + 1);
    let after_answer = messages
        .iter()
        .position(|m| m.dir == Direction::In && ArrowKind::of(&m.first_line) == ArrowKind::Success)
        .map_or(0, |i| i + 1);
    by_time.max(after_answer)
}

/// The ladder as an `<svg>` element; `anchor_prefix` names the raw-message
/// anchors (`{prefix}-msg-{index}`).
pub fn ladder_svg(call: &Call, anchor_prefix: &str) -> String {
    let messages = &call.sip.messages;
    let mut peers: Vec<&str> = Vec::new();
    for m in messages {
        if !peers.contains(&m.peer.as_str()) {
            peers.push(&m.peer);
        }
    }
    let lifeline_x = |column: usize| FIRST_LIFELINE + LIFELINE_GAP * column as f64;
    let column_of = |peer: &str| peers.iter().position(|p| *p == peer).map_or(1, |i| i + 1);

    let rtp_label = rtp_label(call);
    let mut rows: Vec<Row> = (0..messages.len()).map(Row::Message).collect();
    if let (Some(label), Some(t_ms)) = (rtp_label.as_deref(), rtp_row_time(call)) {
        let at = rtp_row_index(messages, t_ms);
        let answering_peer = messages
            .iter()
            .rev()
            .find(|m| m.dir == Direction::In && ArrowKind::of(&m.first_line) == ArrowKind::Success)
            .or(messages.first())
            .map_or(1, |m| column_of(&m.peer));
        rows.insert(at, Row::Rtp { lifeline: answering_peer, label, t_ms });
    }

    let width = lifeline_x(peers.len().max(1)) + RIGHT_MARGIN;
    let height = HEADER_HEIGHT + ROW_HEIGHT * (rows.len() as f64 + 1.0);
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="ladder" viewBox="0 0 {width:.0} {height:.0}" width="{width:.0}" role="img" aria-label="SIP ladder diagram">"#
    );
    let local = call.sip.local.as_deref().unwrap_or("");
    lifeline(&mut svg, lifeline_x(0), height, "callprobe", local);
    for (i, peer) in peers.iter().enumerate() {
        let title = if peers.len() == 1 { "far end".to_string() } else { format!("peer {}", i + 1) };
        lifeline(&mut svg, lifeline_x(i + 1), height, &title, peer);
    }

    for (row_index, row) in rows.iter().enumerate() {
        let y = HEADER_HEIGHT + ROW_HEIGHT * (row_index as f64 + 1.0);
        match row {
            Row::Message(index) => {
                let m = &messages[*index];
                let kind = ArrowKind::of(&m.first_line);
                let peer_x = lifeline_x(column_of(&m.peer));
                let (from, to) = match m.dir {
                    Direction::Out => (lifeline_x(0), peer_x),
                    Direction::In => (peer_x, lifeline_x(0)),
                };
                let _ = write!(
                    svg,
                    r##"<a href="#{prefix}-msg-{index}" class="arrow {kind}"><title>{title}</title><text class="time" x="{tx:.1}" y="{ty:.1}">{t:.1} ms</text><line x1="{from:.1}" y1="{y:.1}" x2="{to:.1}" y2="{y:.1}" marker-end="url(#arrow-{kind})"/><text class="label" x="{lx:.1}" y="{ly:.1}">{label}</text></a>"##,
                    prefix = text(anchor_prefix),
                    kind = kind.name(),
                    title = text(&format!("{:.1} ms {} {}\n{}", m.t_ms, arrow_word(m.dir), m.peer, m.first_line)),
                    tx = TIME_COLUMN - 8.0,
                    ty = y + 4.0,
                    t = m.t_ms,
                    lx = (from + to) / 2.0,
                    ly = y - 6.0,
                    label = text(&fit(&m.first_line, (to - from).abs())),
                );
            }
            Row::Rtp { lifeline, label, t_ms } => {
                let (from, to) = (lifeline_x(0), lifeline_x(*lifeline));
                let _ = write!(
                    svg,
                    r#"<g class="arrow rtp"><title>{title}</title><text class="time" x="{tx:.1}" y="{ty:.1}">{t_ms:.1} ms</text><line x1="{from:.1}" y1="{y:.1}" x2="{to:.1}" y2="{y:.1}" marker-start="url(#arrow-rtp)" marker-end="url(#arrow-rtp)"/><text class="label" x="{lx:.1}" y="{ly:.1}">{label}</text></g>"#,
                    title = text(&format!("{t_ms:.1} ms {label}")),
                    tx = TIME_COLUMN - 8.0,
                    ty = y + 4.0,
                    lx = (from + to) / 2.0,
                    ly = y - 6.0,
                    label = text(&fit(label, to - from)),
                );
            }
        }
    }
    svg.push_str("</svg>");
    svg
}

fn arrow_word(dir: Direction) -> &'static str {
    match dir {
        Direction::Out => "→",
        Direction::In => "←",
    }
}

/// `RTP PCMU ⇄ 10.0.0.2:16000 · sent 250 · received 248` (`SRTP PCMU …`
/// when SRTP was negotiated), when media was negotiated.
fn rtp_label(call: &Call) -> Option<String> {
    let media = &call.media;
    let codec = media.codec.as_deref()?;
    Some(format!(
        "{} {codec} ⇄ {} · sent {} · received {}",
        if media.srtp.is_some() { "SRTP" } else { "RTP" },
        media.remote_rtp.as_deref().unwrap_or("?"),
        media.tx_packets,
        media.rx_packets
    ))
}

fn lifeline(svg: &mut String, x: f64, height: f64, title: &str, address: &str) {
    let _ = write!(
        svg,
        r#"<g class="lifeline"><rect x="{rx:.1}" y="6" width="180" height="40" rx="6"/><text class="who" x="{x:.1}" y="22">{title}</text><text class="addr" x="{x:.1}" y="38">{address}</text><line x1="{x:.1}" y1="46" x2="{x:.1}" y2="{bottom:.1}"/></g>"#,
        rx = x - 90.0,
        title = text(title),
        address = text(&fit(address, 176.0)),
        bottom = height - 4.0,
    );
}

/// Shortens `label` to what fits in `width` px, with an ellipsis.
fn fit(label: &str, width: f64) -> String {
    let max_chars = ((width - 16.0) / LABEL_CHAR_WIDTH).max(4.0) as usize;
    if label.chars().count() <= max_chars {
        label.to_string()
    } else {
        let mut short: String = label.chars().take(max_chars - 1).collect();
        short.push('…');
        short
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrows_are_classified_by_first_line() {
        assert_eq!(ArrowKind::of("INVITE sip:x SIP/2.0"), ArrowKind::Request);
        assert_eq!(ArrowKind::of("SIP/2.0 100 Trying"), ArrowKind::Provisional);
        assert_eq!(ArrowKind::of("SIP/2.0 200 OK"), ArrowKind::Success);
        assert_eq!(ArrowKind::of("SIP/2.0 407 Proxy Authentication Required"), ArrowKind::Challenge);
        assert_eq!(ArrowKind::of("SIP/2.0 404 Not Found"), ArrowKind::Failure);
        assert_eq!(ArrowKind::of("SIP/2.0 garbage"), ArrowKind::Failure);
    }

    fn message(t_ms: f64, dir: Direction, first_line: &str) -> Message {
        Message {
            t_ms,
            dir,
            peer: "127.0.0.1:5060".into(),
            first_line: first_line.into(),
            raw: format!("{first_line}\r\n\r\n"),
        }
    }

    fn answered_call(connected_ms: f64, first_rtp_ms: Option<f64>) -> Call {
        use crate::report::model::{Media, Sip, Transport, Verdict};
        let messages = vec![
            message(0.0, Direction::Out, "INVITE sip:+14144007103@127.0.0.1:5060 SIP/2.0"),
            message(2.1, Direction::In, "SIP/2.0 100 Processing"),
            message(7.4, Direction::In, "SIP/2.0 180 Ringing"),
            message(480.1, Direction::In, "SIP/2.0 200 OK"),
            message(480.3, Direction::Out, "ACK sip:+14144007103@127.0.0.1:5060 SIP/2.0"),
            message(5000.0, Direction::Out, "BYE sip:+14144007103@127.0.0.1:5060 SIP/2.0"),
            message(5001.2, Direction::In, "SIP/2.0 200 OK"),
        ];
        let target = "sip:+14144007103@127.0.0.1:5060".into();
        Call {
            sip: Sip { connected_ms: Some(connected_ms), messages, ..Sip::default() },
            media: Media {
                codec: Some("PCMU".into()),
                remote_rtp: Some("127.0.0.1:16000".into()),
                first_rtp_ms,
                ..Media::default()
            },
            ..Call::bare("c1@callprobe".into(), "cp-1".into(), target, Transport::Udp, Verdict::Pass, 0)
        }
    }

    /// The y of the row that starts with `marker` in the SVG.
    fn row_y(svg: &str, marker: &str) -> f64 {
        let at = svg.find(marker).unwrap_or_else(|| panic!("{marker} not in {svg}"));
        let y1 = &svg[at..][svg[at..].find("y1=\"").map(|k| k + 4).unwrap_or_else(|| panic!("no y1 after {marker}"))..];
        y1[..y1.find('"').unwrap_or(0)].parse().unwrap_or_else(|e| panic!("y1 after {marker}: {e}"))
    }

    #[test]
    fn rtp_row_is_drawn_at_the_first_rtp_packet() {
        // The answer time is a hair earlier than the logged 200 OK (rounding);
        // the first RTP came ~600 ms after the 200 OK.
        let svg = ladder_svg(&answered_call(480.04, Some(1080.5)), "c1");
        let ok = row_y(&svg, r##"href="#c1-msg-3""##);
        let ack = row_y(&svg, r##"href="#c1-msg-4""##);
        let rtp = row_y(&svg, r#"class="arrow rtp""#);
        let bye = row_y(&svg, r##"href="#c1-msg-5""##);
        assert!(ok < ack && ack < rtp && rtp < bye, "200 OK {ok}, ACK {ack}, RTP {rtp}, BYE {bye}");
        assert!(svg.contains("1080.5 ms</text>"), "the RTP row shows its time");
        // RTP that came before the ACK went out is drawn before the ACK.
        let svg = ladder_svg(&answered_call(480.04, Some(480.2)), "c1");
        let (ok, rtp, ack) = (
            row_y(&svg, r##"href="#c1-msg-3""##),
            row_y(&svg, r#"class="arrow rtp""#),
            row_y(&svg, r##"href="#c1-msg-4""##),
        );
        assert!(ok < rtp && rtp < ack, "200 OK {ok}, RTP {rtp}, ACK {ack}");
    }

    #[test]
    fn rtp_row_without_packets_is_never_above_the_answer() {
        // Nothing received: the row goes at the answer, which must not put it
        // above the 200 OK although connected_ms < the 200 OK's rounded t_ms.
        let svg = ladder_svg(&answered_call(480.04, None), "c1");
        let ok = row_y(&svg, r##"href="#c1-msg-3""##);
        let rtp = row_y(&svg, r#"class="arrow rtp""#);
        let ack = row_y(&svg, r##"href="#c1-msg-4""##);
        assert!(ok < rtp && rtp < ack, "200 OK {ok}, RTP {rtp}, ACK {ack}");
    }

    #[test]
    fn long_labels_are_shortened() {
        assert_eq!(fit("INVITE", 400.0), "INVITE");
        let short = fit(&"x".repeat(200), 200.0);
        assert!(short.ends_with('…') && short.chars().count() < 30);
    }
}
