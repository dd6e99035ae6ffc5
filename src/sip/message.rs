//! SIP messages as callprobe sees them: parse what the far end sent into the
//! few fields the call logic needs, and render what we send.
//!
//! rsip does the parsing and rendering of start lines, header framing and
//! URIs. Header *values* are read here from rsip's untyped headers as plain
//! strings, because rsip 0.4's typed layer has gaps that real peers hit:
//! compact names (`i:`, `v:` …) arrive as `Other`, a Via/Record-Route line
//! with two values keeps only the first, and the status code drops the
//! reason phrase ("No trunk found" is the diagnosis, so we keep it from the
//! raw start line).

use std::fmt::Write as _;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("not a SIP message: {0}")]
    Syntax(String),
    #[error("SIP message lacks header {0}")]
    MissingHeader(&'static str),
    #[error("bad CSeq header: {0}")]
    BadCSeq(String),
    #[error("Content-Length {announced} but only {carried} body bytes")]
    ContentLength { announced: usize, carried: usize },
}

/// How a whole message's body compares with its Content-Length (RFC 3261 18.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthCheck {
    /// The body is exactly as long as announced.
    Exact,
    /// No Content-Length (allowed over UDP), or no header/body separator to
    /// measure against (the parser will say what is wrong).
    Absent,
    /// Fewer body bytes than announced: over UDP, the message is discarded.
    TooLong { announced: usize, carried: usize },
    /// More body bytes than announced: the message ends at `end`; the rest is dropped.
    TooShort { announced: usize, carried: usize, end: usize },
}

/// Compares the body of `bytes` (one datagram or one frame) with its
/// Content-Length header (`l:` too).
pub fn check_length(bytes: &[u8]) -> LengthCheck {
    let Some(head_end) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else { return LengthCheck::Absent };
    let Some(announced) = super::framing::content_length(&bytes[..head_end]) else { return LengthCheck::Absent };
    let body_start = head_end + 4;
    let carried = bytes.len() - body_start;
    match announced.cmp(&carried) {
        std::cmp::Ordering::Equal => LengthCheck::Exact,
        std::cmp::Ordering::Greater => LengthCheck::TooLong { announced, carried },
        std::cmp::Ordering::Less => LengthCheck::TooShort { announced, carried, end: body_start + announced },
    }
}

/// A header as it appeared: canonical name (compact forms expanded) and raw value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderLine {
    pub name: String,
    pub value: String,
}

/// Fields shared by requests and responses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    pub headers: Vec<HeaderLine>,
    pub call_id: String,
    pub cseq: u32,
    pub cseq_method: String,
    pub body: Vec<u8>,
}

impl Common {
    /// All values of header `name` (case-insensitive), comma-separated values split.
    pub fn values(&self, name: &str) -> Vec<String> {
        self.headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case(name))
            .flat_map(|h| if is_comma_list(name) { split_list(&h.value) } else { vec![h.value.trim().to_string()] })
            .collect()
    }

    pub fn first(&self, name: &str) -> Option<String> {
        self.values(name).into_iter().next()
    }

    /// The raw header lines named `name`, values unsplit, as they arrived.
    pub fn raw_lines(&self, name: &str) -> Vec<&HeaderLine> {
        self.headers.iter().filter(|h| h.name.eq_ignore_ascii_case(name)).collect()
    }
}

/// A response from the far end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InResponse {
    pub status: u16,
    pub reason: String,
    pub common: Common,
}

impl InResponse {
    /// `branch` parameter of the top Via: the transaction this answers.
    pub fn branch(&self) -> Option<String> {
        self.common.first("Via").and_then(|v| param(&v, "branch"))
    }
    pub fn to_tag(&self) -> Option<String> {
        self.common.first("To").and_then(|v| param(&v, "tag"))
    }
    /// URI of the first Contact.
    pub fn contact_uri(&self) -> Option<String> {
        self.common.first("Contact").map(|c| name_addr_uri(&c))
    }
    /// Record-Route URIs in the order received.
    pub fn record_route(&self) -> Vec<String> {
        self.common.values("Record-Route").iter().map(|v| name_addr_uri(v)).collect()
    }
}

/// A request from the far end (in-dialog BYE, OPTIONS, re-INVITE …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InRequest {
    pub method: String,
    pub uri: String,
    pub common: Common,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    Request(InRequest),
    Response(InResponse),
}

impl Inbound {
    pub fn common(&self) -> &Common {
        match self {
            Inbound::Request(r) => &r.common,
            Inbound::Response(r) => &r.common,
        }
    }
}

/// Expands compact header names (RFC 3261 section 7.3.3).
fn canonical_name(name: &str) -> String {
    let full = match name.to_ascii_lowercase().as_str() {
        "i" => "Call-ID",
        "v" => "Via",
        "f" => "From",
        "t" => "To",
        "m" => "Contact",
        "l" => "Content-Length",
        "c" => "Content-Type",
        "k" => "Supported",
        "s" => "Subject",
        "call-id" => "Call-ID",
        _ => return name.to_string(),
    };
    full.to_string()
}

/// Headers whose value may be a comma-separated list of entries.
fn is_comma_list(name: &str) -> bool {
    ["Via", "Record-Route", "Route", "Contact", "Allow", "Supported"].iter().any(|n| n.eq_ignore_ascii_case(name))
}

/// Splits a header value at commas outside quotes and `<...>`.
pub fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut in_quote, mut in_angle) = (false, false);
    for c in value.chars() {
        match c {
            '"' => in_quote = !in_quote,
            '<' if !in_quote => in_angle = true,
            '>' if !in_quote => in_angle = false,
            ',' if !in_quote && !in_angle => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// The URI inside a name-addr (`"Bob" <sip:b@h;lr>;tag=1` → `sip:b@h;lr`), or
/// the addr-spec without header params when there are no angle brackets.
pub fn name_addr_uri(value: &str) -> String {
    if let (Some(start), Some(end)) = (value.find('<'), value.rfind('>')) {
        if start < end {
            return value[start + 1..end].trim().to_string();
        }
    }
    value.split(';').next().unwrap_or(value).trim().to_string()
}

/// A header parameter (`;tag=…`, `;branch=…`) outside the angle brackets.
pub fn param(value: &str, name: &str) -> Option<String> {
    let tail = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    tail.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

/// The start line of a message, for logs and reports.
pub fn first_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    text.lines().next().unwrap_or("").trim_end().to_string()
}

/// Parses one complete SIP message (a UDP datagram or one TCP frame).
pub fn parse(bytes: &[u8]) -> Result<Inbound, ParseError> {
    let msg = rsip::SipMessage::try_from(bytes).map_err(|e| ParseError::Syntax(e.to_string()))?;
    use rsip::message::HasHeaders;
    let headers: Vec<HeaderLine> = msg
        .headers()
        .iter()
        .map(|h| {
            let rendered = h.to_string();
            let (name, value) = rendered.split_once(':').unwrap_or((rendered.as_str(), ""));
            HeaderLine { name: canonical_name(name.trim()), value: value.trim().to_string() }
        })
        .collect();
    let find = |n: &str| headers.iter().find(|h| h.name.eq_ignore_ascii_case(n)).map(|h| h.value.clone());
    let call_id = find("Call-ID").ok_or(ParseError::MissingHeader("Call-ID"))?;
    let cseq_raw = find("CSeq").ok_or(ParseError::MissingHeader("CSeq"))?;
    let mut parts = cseq_raw.split_whitespace();
    let cseq = parts.next().and_then(|n| n.parse::<u32>().ok()).ok_or_else(|| ParseError::BadCSeq(cseq_raw.clone()))?;
    let cseq_method = parts.next().ok_or_else(|| ParseError::BadCSeq(cseq_raw.clone()))?.to_string();
    let common = Common { headers, call_id, cseq, cseq_method, body: msg.body().clone() };
    let start = first_line(bytes);
    Ok(match msg {
        rsip::SipMessage::Response(r) => {
            // RFC 3261 section 7.2: 1xx..6xx. A status such as 000 would be
            // taken for a final response that no ACK can answer (found by
            // the sip_message fuzz target).
            let status = r.status_code.code();
            if !(100..=699).contains(&status) {
                return Err(ParseError::Syntax(format!("status code {status} is not 100..699")));
            }
            // "SIP/2.0 404 No trunk found": keep the reason phrase as sent.
            let reason = start.splitn(3, ' ').nth(2).unwrap_or("").to_string();
            Inbound::Response(InResponse { status, reason, common })
        }
        rsip::SipMessage::Request(r) => {
            Inbound::Request(InRequest { method: r.method.to_string(), uri: r.uri.to_string(), common })
        }
    })
}

/// Where a request goes, read from a SIP URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UriTarget {
    pub host: String,
    pub port: u16,
    /// `;transport=` parameter, lower-cased, when present.
    pub transport: Option<String>,
    /// `;lr` present (loose router).
    pub loose: bool,
    /// A `sips:` URI: TLS to the host, and TLS on every hop (RFC 3261 section 26.2).
    pub secure: bool,
    pub user: Option<String>,
}

/// Parses a `sip:` URI with rsip and extracts where it points.
pub fn uri_target(uri: &str) -> Result<UriTarget, ParseError> {
    let parsed = rsip::Uri::try_from(uri).map_err(|e| ParseError::Syntax(format!("{uri}: {e}")))?;
    let secure = match parsed.scheme {
        Some(rsip::Scheme::Sip) => false,
        Some(rsip::Scheme::Sips) => true,
        None => return Err(ParseError::Syntax(format!("{uri}: not a sip: URI"))),
        Some(other) => {
            return Err(ParseError::Syntax(format!("{uri}: scheme {other} is not supported (use sip: or sips:)")))
        }
    };
    let host = parsed.host_with_port.host.to_string();
    let mut transport = None;
    let mut loose = false;
    for p in &parsed.params {
        let rendered = p.to_string();
        let rendered = rendered.trim_start_matches(';');
        let (k, v) = rendered.split_once('=').unwrap_or((rendered, ""));
        if k.eq_ignore_ascii_case("transport") {
            transport = Some(v.to_ascii_lowercase());
        } else if k.eq_ignore_ascii_case("lr") {
            loose = true;
        }
    }
    let port = parsed
        .host_with_port
        .port
        .map(|p| *p.value())
        .unwrap_or_else(|| super::default_port(secure || transport.as_deref() == Some("tls")));
    Ok(UriTarget { host, port, transport, loose, secure, user: parsed.user().map(|u| u.to_string()) })
}

/// A message we send, rendered with rsip. Headers are given in order; Content-Length
/// is added here (rsip does not).
pub struct Outgoing<'a> {
    pub start: Start<'a>,
    pub headers: Vec<(&'a str, String)>,
    pub body: &'a [u8],
}

pub enum Start<'a> {
    Request { method: &'a str, uri: &'a str },
    Response { status: u16, reason: &'a str },
}

impl Outgoing<'_> {
    fn uri_text(&self) -> &str {
        match &self.start {
            Start::Request { uri, .. } => uri,
            Start::Response { .. } => "",
        }
    }

    pub fn render(&self) -> Result<Vec<u8>, ParseError> {
        let mut headers = rsip::Headers::default();
        for (name, value) in &self.headers {
            // A far end's Record-Route can carry line breaks into our Route
            // headers (found by the sip_message fuzz target): no injection.
            if value.contains(['\r', '\n']) {
                return Err(ParseError::Syntax(format!("header {name} would contain a line break")));
            }
            headers.push(rsip::Header::Other((*name).to_string(), value.clone()));
        }
        headers.push(rsip::Header::Other("Content-Length".into(), self.body.len().to_string()));
        let text = match &self.start {
            Start::Request { method, uri } => {
                let method: rsip::Method =
                    method.parse().map_err(|_| ParseError::Syntax(format!("unknown method {method}")))?;
                let uri = rsip::Uri::try_from(*uri).map_err(|e| ParseError::Syntax(format!("{uri}: {e}")))?;
                let text = rsip::Request { method, uri, version: rsip::Version::V2, headers, body: self.body.to_vec() }
                    .to_string();
                // Never send what we cannot read back (a last guard; found by
                // the sip_message fuzz target).
                rsip::SipMessage::try_from(text.as_str())
                    .map_err(|e| ParseError::Syntax(format!("request to {} would not parse: {e}", self.uri_text())))?;
                text
            }
            Start::Response { status, reason } => {
                // rsip would print its own reason phrase; ours is the one we mean.
                let mut s = format!("SIP/2.0 {status} {reason}\r\n");
                for h in headers.iter() {
                    let _ = write!(s, "{h}\r\n");
                }
                s.push_str("\r\n");
                s.push_str(&String::from_utf8_lossy(self.body));
                s
            }
        };
        Ok(text.into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KAMAILIO_407: &str = "SIP/2.0 407 Proxy Authentication Required\r\n\
Via: SIP/2.0/UDP 127.0.0.1:40000;branch=z9hG4bKabc;rport=40000\r\n\
From: <sip:callprobe@127.0.0.1>;tag=f1\r\n\
To: <sip:+14144007103@127.0.0.1>;tag=srv\r\n\
Call-ID: cid-1\r\n\
CSeq: 1 INVITE\r\n\
Proxy-Authenticate: Digest realm=\"LiveKit\", nonce=\"123-cid-1\", algorithm=MD5\r\n\
Server: kamailio (5.6.3 (x86_64/linux))\r\n\
Content-Length: 0\r\n\r\n";

    #[test]
    fn parses_a_challenge_response() {
        let Inbound::Response(r) = parse(KAMAILIO_407.as_bytes()).unwrap() else { panic!() };
        assert_eq!((r.status, r.reason.as_str()), (407, "Proxy Authentication Required"));
        assert_eq!(r.common.call_id, "cid-1");
        assert_eq!((r.common.cseq, r.common.cseq_method.as_str()), (1, "INVITE"));
        assert_eq!(r.branch().as_deref(), Some("z9hG4bKabc"));
        assert_eq!(r.to_tag().as_deref(), Some("srv"));
        assert_eq!(r.common.values("Proxy-Authenticate").len(), 1);
    }

    #[test]
    fn keeps_reason_phrase_and_reads_compact_and_listed_headers() {
        let text = "SIP/2.0 200 OK\r\nv: SIP/2.0/UDP 127.0.0.1:1;branch=z9hG4bK1\r\n\
f: <sip:a@b>;tag=1\r\nt: <sip:c@d>;tag=2\r\ni: x@y\r\nCSeq: 2 INVITE\r\n\
Record-Route: <sip:10.0.0.1;lr>, <sip:10.0.0.2;lr;ftag=1>\r\nRecord-Route: <sip:10.0.0.3;lr>\r\n\
m: <sip:uas@127.0.0.1:5080;transport=udp>\r\nl: 0\r\n\r\n";
        let Inbound::Response(r) = parse(text.as_bytes()).unwrap() else { panic!() };
        assert_eq!(r.common.call_id, "x@y");
        assert_eq!(r.record_route(), vec!["sip:10.0.0.1;lr", "sip:10.0.0.2;lr;ftag=1", "sip:10.0.0.3;lr"]);
        assert_eq!(r.contact_uri().as_deref(), Some("sip:uas@127.0.0.1:5080;transport=udp"));
        let Inbound::Response(nf) =
            parse(b"SIP/2.0 404 No trunk found\r\nCall-ID: a\r\nCSeq: 1 INVITE\r\n\r\n").unwrap()
        else {
            panic!()
        };
        assert_eq!(nf.reason, "No trunk found");
    }

    #[test]
    fn parses_an_in_dialog_request() {
        let text = "BYE sip:callprobe@127.0.0.1:4000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKp, SIP/2.0/UDP 127.0.0.1:5080;branch=z9hG4bKu\r\n\
From: <sip:c@d>;tag=2\r\nTo: <sip:a@b>;tag=1\r\nCall-ID: x@y\r\nCSeq: 7 BYE\r\nContent-Length: 0\r\n\r\n";
        let Inbound::Request(r) = parse(text.as_bytes()).unwrap() else { panic!() };
        assert_eq!(r.method, "BYE");
        assert_eq!(r.common.values("Via").len(), 2);
        assert_eq!(r.common.raw_lines("Via").len(), 1);
    }

    /// Fuzz find (sip_message): a Record-Route value holding line breaks
    /// became a Route header of our ACK and split it into two messages.
    #[test]
    fn render_refuses_line_breaks_in_header_values() {
        let route = "<sip:127.0.0.1:5060;transp;lr\r\n\r\nFrom: <sip://x@127.0.0.1>".to_string();
        let out = Outgoing {
            start: Start::Request { method: "ACK", uri: "sip:agent@127.0.0.1:5070" },
            headers: vec![("Route", format!("<{route}>")), ("Call-ID", "a".into()), ("CSeq", "1 ACK".into())],
            body: b"",
        };
        assert!(matches!(out.render(), Err(ParseError::Syntax(_))));
    }

    /// Fuzz find (sip_message): status 000 was parsed, and the caller took
    /// it for a final response and sent an empty "ACK".
    #[test]
    fn rejects_status_codes_outside_100_to_699() {
        for status in ["000", "099", "700", "999"] {
            let text = format!(
                "SIP/2.0 {status} OK\r\nVia: SIP/2.0/TCP 127.0.0.1:40000;branch=z9hG4bK1\r\n\
From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: call-abc\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
            );
            assert!(matches!(parse(text.as_bytes()), Err(ParseError::Syntax(_))), "{status}");
        }
    }

    #[test]
    fn rejects_garbage_and_missing_headers() {
        assert!(parse(b"hello").is_err());
        assert_eq!(parse(b"SIP/2.0 200 OK\r\nCSeq: 1 INVITE\r\n\r\n"), Err(ParseError::MissingHeader("Call-ID")));
    }

    #[test]
    fn content_length_is_checked_against_the_body() {
        let with = |cl: &str, body: &str| format!("SIP/2.0 200 OK\r\nCall-ID: a\r\nl: {cl}\r\n\r\n{body}");
        assert_eq!(check_length(with("3", "v=0").as_bytes()), LengthCheck::Exact);
        assert_eq!(check_length(with("30", "v=0").as_bytes()), LengthCheck::TooLong { announced: 30, carried: 3 });
        let short = with("1", "v=0");
        let LengthCheck::TooShort { announced: 1, carried: 3, end } = check_length(short.as_bytes()) else { panic!() };
        assert_eq!(&short[end - 1..end], "v");
        assert_eq!(check_length(b"SIP/2.0 200 OK\r\nCall-ID: a\r\n\r\n"), LengthCheck::Absent);
        assert_eq!(check_length(b"garbage"), LengthCheck::Absent);
    }

    #[test]
    fn uri_targets() {
        let t = uri_target("sip:+14144007103@127.0.0.1:5070;transport=TCP").unwrap();
        assert_eq!((t.host.as_str(), t.port, t.transport.as_deref()), ("127.0.0.1", 5070, Some("tcp")));
        assert_eq!(t.user.as_deref(), Some("+14144007103"));
        let r = uri_target("sip:127.0.0.1;lr;ftag=x").unwrap();
        assert!(r.loose);
        assert_eq!(r.port, 5060);
        assert!(uri_target("not a uri").is_err());
    }

    #[test]
    fn renders_with_content_length() {
        let out = Outgoing {
            start: Start::Request { method: "INVITE", uri: "sip:+14144007103@127.0.0.1:5060" },
            headers: vec![("Call-ID", "abc".into()), ("CSeq", "1 INVITE".into())],
            body: b"v=0\r\n",
        }
        .render()
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("INVITE sip:+14144007103@127.0.0.1:5060 SIP/2.0\r\n"), "{text}");
        assert!(text.contains("Content-Length: 5\r\n\r\nv=0\r\n"), "{text}");
        let resp =
            Outgoing { start: Start::Response { status: 501, reason: "Not Implemented" }, headers: vec![], body: b"" }
                .render()
                .unwrap();
        assert_eq!(String::from_utf8(resp).unwrap(), "SIP/2.0 501 Not Implemented\r\nContent-Length: 0\r\n\r\n");
    }
}
