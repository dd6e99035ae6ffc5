//! `callprobe call` against hostile far ends on 127.0.0.1: a scripted peer
//! written here with std sockets (UDP, or TCP where the case needs a
//! stream) sends garbage, truncated or oversized messages, lies in
//! Content-Length, never answers, answers without SDP or with SDP that does
//! not parse, changes its SDP between 183 and 200, floods RTP, sends RTP
//! from another address, hangs up before our ACK, or stalls mid-message.
//!
//! For every case: the real binary ends with a verdict (exit 1 with a
//! diagnosis, or 0 where the call is fine) within [`CASE_DEADLINE`]; its
//! peak memory (from `/usr/bin/time -v`, Debian package time) stays under
//! [`MAX_PEAK_RSS_KB`]; the peer sees our ACK/BYE/CANCEL where a transaction
//! or dialog exists (no ghost call); and report.json names what the peer
//! did (`calls[].findings`, `calls[].diagnosis`).

mod support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Every case's callprobe must end within this.
const CASE_DEADLINE: Duration = Duration::from_secs(15);
/// Peak resident memory callprobe may reach in any case. A plain 1 s call
/// peaks around 20 MB; the RTP flood's capture and recording are bounded.
const MAX_PEAK_RSS_KB: u64 = 200 * 1024;
const TIME: &str = "/usr/bin/time";

// ----- the far end ---------------------------------------------------------

/// One SIP message as the peer received it.
#[derive(Debug, Clone)]
struct Msg {
    text: String,
    from: SocketAddr,
}

impl Msg {
    fn first_line(&self) -> &str {
        self.text.lines().next().unwrap_or("")
    }
    fn is(&self, method: &str) -> bool {
        self.first_line().starts_with(&format!("{method} "))
    }
    fn headers(&self, name: &str) -> Vec<String> {
        let head = self.text.split("\r\n\r\n").next().unwrap_or("");
        head.lines()
            .skip(1)
            .filter_map(|l| l.split_once(':'))
            .filter(|(n, _)| n.trim().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }
    fn header(&self, name: &str) -> String {
        self.headers(name).into_iter().next().unwrap_or_default()
    }
    /// Where its SDP says to send RTP.
    fn sdp_rtp(&self) -> Option<SocketAddr> {
        let body = self.text.split_once("\r\n\r\n")?.1;
        let ip = body.lines().find_map(|l| l.strip_prefix("c=IN IP4 "))?.trim();
        let port = body.lines().find_map(|l| l.strip_prefix("m=audio "))?.split(' ').next()?;
        format!("{ip}:{port}").parse().ok()
    }
}

/// A response to `req` as a UAS builds it, with `body` and a Content-Length
/// (the true one unless `length` says otherwise).
fn response(req: &Msg, status: u16, reason: &str, contact: SocketAddr, body: &str, length: Option<usize>) -> String {
    let mut s = format!("SIP/2.0 {status} {reason}\r\n");
    for via in req.headers("Via") {
        s.push_str(&format!("Via: {via}\r\n"));
    }
    s.push_str(&format!("From: {}\r\n", req.header("From")));
    let to = req.header("To");
    if to.contains("tag=") || status == 100 {
        s.push_str(&format!("To: {to}\r\n"));
    } else {
        s.push_str(&format!("To: {to};tag=hostile\r\n"));
    }
    s.push_str(&format!("Call-ID: {}\r\nCSeq: {}\r\n", req.header("Call-ID"), req.header("CSeq")));
    if req.is("INVITE") && status >= 180 {
        s.push_str(&format!("Contact: <sip:agent@{contact}>\r\n"));
    }
    if !body.is_empty() {
        s.push_str("Content-Type: application/sdp\r\n");
    }
    s.push_str(&format!("Content-Length: {}\r\n\r\n{body}", length.unwrap_or(body.len())));
    s
}

fn sdp(rtp: SocketAddr, payload_type: u8, name: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP {payload_type}\r\na=rtpmap:{payload_type} {name}/8000\r\n",
        ip = rtp.ip(),
        port = rtp.port()
    )
}

fn pcmu(rtp: SocketAddr) -> String {
    sdp(rtp, 0, "PCMU")
}

/// One RTP packet of PCMU silence.
fn rtp_packet(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend(seq.to_be_bytes());
    p.extend((u32::from(seq) * 160).to_be_bytes());
    p.extend(ssrc.to_be_bytes());
    p.extend([0xffu8; 160]);
    p
}

enum Wire {
    Udp(UdpSocket),
    Tcp { listener: TcpListener, stream: Option<TcpStream>, buf: Vec<u8> },
}

/// The scripted far end: everything it receives is logged.
struct Peer {
    wire: Wire,
    addr: SocketAddr,
    log: Arc<Mutex<Vec<Msg>>>,
    /// The INVITE, once seen (for answering a CANCEL with 487).
    invite: Option<Msg>,
}

impl Peer {
    fn bind(tcp: bool) -> Peer {
        let wire = if tcp {
            Wire::Tcp { listener: TcpListener::bind("127.0.0.1:0").unwrap(), stream: None, buf: Vec::new() }
        } else {
            Wire::Udp(UdpSocket::bind("127.0.0.1:0").unwrap())
        };
        let addr = match &wire {
            Wire::Udp(s) => s.local_addr().unwrap(),
            Wire::Tcp { listener, .. } => listener.local_addr().unwrap(),
        };
        Peer { wire, addr, log: Arc::default(), invite: None }
    }

    fn uri(&self) -> String {
        let transport = if matches!(self.wire, Wire::Tcp { .. }) { ";transport=tcp" } else { "" };
        format!("sip:+14144007103@{}{transport}", self.addr)
    }

    /// The next message, within `timeout`.
    fn recv(&mut self, timeout: Duration) -> Option<Msg> {
        let until = Instant::now() + timeout;
        let msg = match &mut self.wire {
            Wire::Udp(socket) => {
                socket.set_read_timeout(Some(timeout.max(Duration::from_millis(1)))).unwrap();
                let mut buf = vec![0u8; 65_535];
                let (n, from) = socket.recv_from(&mut buf).ok()?;
                Msg { text: String::from_utf8_lossy(&buf[..n]).into_owned(), from }
            }
            Wire::Tcp { listener, stream, buf } => {
                if stream.is_none() {
                    listener.set_nonblocking(true).unwrap();
                    while stream.is_none() && Instant::now() < until {
                        match listener.accept() {
                            Ok((s, _)) => *stream = Some(s),
                            Err(_) => thread::sleep(Duration::from_millis(5)),
                        }
                    }
                }
                let s = stream.as_mut()?;
                s.set_nonblocking(false).unwrap();
                let from = s.peer_addr().ok()?;
                loop {
                    if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("Content-Length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        if buf.len() >= end + 4 + len {
                            let bytes: Vec<u8> = buf.drain(..end + 4 + len).collect();
                            break Msg { text: String::from_utf8_lossy(&bytes).into_owned(), from };
                        }
                    }
                    let left = until.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    s.set_read_timeout(Some(left)).unwrap();
                    let mut chunk = [0u8; 16 * 1024];
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return None,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            }
        };
        if msg.is("INVITE") && self.invite.is_none() {
            self.invite = Some(msg.clone());
        }
        self.log.lock().unwrap().push(msg.clone());
        Some(msg)
    }

    /// Waits for a request `method` (other messages are logged and skipped).
    fn wait_for(&mut self, method: &str, timeout: Duration) -> Msg {
        let until = Instant::now() + timeout;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the peer waited {timeout:?} for {method} in vain");
            if let Some(m) = self.recv(left) {
                if m.is(method) {
                    return m;
                }
            }
        }
    }

    fn send(&mut self, bytes: &[u8], to: SocketAddr) {
        match &mut self.wire {
            Wire::Udp(socket) => {
                socket.send_to(bytes, to).unwrap();
            }
            Wire::Tcp { stream: Some(s), .. } => {
                let _ = s.write_all(bytes);
            }
            Wire::Tcp { .. } => panic!("no TCP connection to send on"),
        }
    }

    fn reply(&mut self, req: &Msg, status: u16, reason: &str, body: &str) {
        let r = response(req, status, reason, self.addr, body, None);
        self.send(r.as_bytes(), req.from);
    }

    /// Behaves until `stop`: BYE → 200, CANCEL → 200 and 487 for the INVITE.
    fn serve(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let Some(m) = self.recv(Duration::from_millis(50)) else { continue };
            if m.is("BYE") {
                self.reply(&m, 200, "OK", "");
            } else if m.is("CANCEL") {
                self.reply(&m, 200, "OK", "");
                if let Some(inv) = self.invite.clone() {
                    self.reply(&inv, 487, "Request Terminated", "");
                }
            }
        }
    }

    /// Like [`Peer::serve`] but answers nothing at all.
    fn ignore(&mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            self.recv(Duration::from_millis(50));
        }
    }
}

// ----- callprobe -----------------------------------------------------------

struct Run {
    code: i32,
    elapsed: Duration,
    peak_rss_kb: Option<u64>,
    report: Value,
    output: String,
}

impl Run {
    fn call(&self) -> &Value {
        &self.report["calls"][0]
    }
    fn codes(&self, field: &str) -> Vec<String> {
        self.call()[field]
            .as_array()
            .map_or(Vec::new(), |a| a.iter().map(|f| f["code"].as_str().unwrap_or_default().to_string()).collect())
    }
    fn findings(&self) -> Vec<String> {
        self.codes("findings")
    }
    fn diagnoses(&self) -> Vec<String> {
        self.codes("diagnosis")
    }
    fn finding_detail(&self, code: &str) -> String {
        let all = self.call()["findings"].as_array().cloned().unwrap_or_default();
        all.iter().find(|f| f["code"] == code).map(|f| f["detail"].to_string()).unwrap_or_default()
    }
    fn ended(&self) -> String {
        self.call()["sip"]["ended"]["kind"].as_str().unwrap_or_default().to_string()
    }
    fn explain(&self) -> String {
        format!("exit {} after {:?}\n{}\nreport: {:#}", self.code, self.elapsed, self.output, self.call())
    }
}

/// Runs `callprobe call <uri> --timeout 2s <extra>` (`--hangup-after 1s`
/// unless `extra` says otherwise), under
/// `/usr/bin/time -v` (for the peak memory; without it the case fails).
fn callprobe(uri: &str, extra: &[&str]) -> Run {
    let dir = support::peers::TempDir::new("hostile").unwrap();
    let time_file = dir.path().join("time.txt");
    let timed = Path::new(TIME).exists();
    let mut cmd = if timed {
        let mut c = Command::new(TIME);
        c.arg("-v").arg("-o").arg(&time_file).arg(env!("CARGO_BIN_EXE_callprobe"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_callprobe"))
    };
    cmd.args(["call", uri, "--timeout", "2s"]);
    if !extra.contains(&"--hangup-after") {
        cmd.args(["--hangup-after", "1s"]);
    }
    cmd.args(extra);
    cmd.arg("--report-dir").arg(dir.path().join("report"));
    for var in ["LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"] {
        cmd.env_remove(var);
    }
    let started = Instant::now();
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("start callprobe");
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > CASE_DEADLINE + Duration::from_secs(5) {
            let _ = child.kill();
            panic!("callprobe did not end within {CASE_DEADLINE:?}");
        }
        thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let out = child.wait_with_output().unwrap();
    let peak_rss_kb = std::fs::read_to_string(&time_file).ok().and_then(|t| {
        t.lines().find_map(|l| l.trim().strip_prefix("Maximum resident set size (kbytes):")?.trim().parse().ok())
    });
    let report = std::fs::read_to_string(dir.path().join("report/report.json"))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    Run {
        code: status.code().unwrap_or(-1),
        elapsed,
        peak_rss_kb,
        report,
        output: String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    }
}

/// One case: the peer runs `script` and then `serve`s (or ignores, when
/// `answer_after` is false) until callprobe has ended. Returns the run and
/// everything the peer received.
fn case(
    name: &str,
    tcp: bool,
    extra: &[&str],
    answer_after: bool,
    script: impl FnOnce(&mut Peer) + Send + 'static,
) -> (Run, Vec<Msg>) {
    let mut peer = Peer::bind(tcp);
    let uri = peer.uri();
    let log = peer.log.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let stopped = stop.clone();
    let far_end = thread::spawn(move || {
        script(&mut peer);
        if answer_after {
            peer.serve(&stopped);
        } else {
            peer.ignore(&stopped);
        }
    });
    let run = callprobe(&uri, extra);
    // Let the last retransmissions arrive before the peer stops.
    thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let script_ok = far_end.join();
    let seen = log.lock().unwrap().clone();
    assert!(script_ok.is_ok(), "{name}: the peer's script failed\n{}", run.explain());
    assert!(run.elapsed < CASE_DEADLINE, "{name}: took {:?}\n{}", run.elapsed, run.explain());
    // Memory must be measured: a missing /usr/bin/time is a failure, not a pass.
    let kb = run.peak_rss_kb.unwrap_or_else(|| {
        panic!("{name}: peak memory not measured: {TIME} -v is needed (Debian package time; scripts/install-deps)")
    });
    assert!(kb < MAX_PEAK_RSS_KB, "{name}: peak RSS {kb} kB\n{}", run.explain());
    assert!(!run.report.is_null(), "{name}: no report.json\n{}", run.explain());
    println!(
        "{name}: exit {} in {:.2} s, peak RSS {}, ended {}, findings {:?}, diagnosis {:?}",
        run.code,
        run.elapsed.as_secs_f64(),
        run.peak_rss_kb.map_or("unmeasured".into(), |kb| format!("{:.1} MB", kb as f64 / 1024.0)),
        run.ended(),
        run.findings(),
        run.diagnoses()
    );
    (run, seen)
}

fn count(seen: &[Msg], method: &str) -> usize {
    seen.iter().filter(|m| m.is(method)).count()
}

/// The INVITE, then `100 Trying`.
fn invited(p: &mut Peer) -> Msg {
    let inv = p.wait_for("INVITE", Duration::from_secs(5));
    p.reply(&inv, 100, "Trying", "");
    inv
}

// ----- the cases -----------------------------------------------------------

#[test]
fn garbage_and_truncated_messages_are_named_and_the_call_goes_on() {
    let (run, seen) = case("garbage", false, &[], true, |p| {
        let inv = invited(p);
        p.send(b"\x00\xff\x13garbage that is not SIP at all\r\n\r\n", inv.from);
        // A 180 cut off in the middle of its headers.
        let ringing = response(&inv, 180, "Ringing", p.addr, "", None);
        p.send(&ringing.as_bytes()[..ringing.len() / 2], inv.from);
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        p.reply(&inv, 200, "OK", &pcmu(rtp.local_addr().unwrap()));
        p.wait_for("ACK", Duration::from_secs(3));
    });
    assert_eq!(run.code, 1, "{}", run.explain());
    assert!(run.findings().contains(&"unparseable_message".to_string()), "{}", run.explain());
    assert!(run.diagnoses().contains(&"peer_protocol_violation".to_string()), "{}", run.explain());
    assert_eq!(run.ended(), "hung_up", "the call went on and ended with our BYE");
    assert_eq!((count(&seen, "ACK"), count(&seen, "BYE")), (1, 1));
}

#[test]
fn oversized_headers_over_tcp_end_the_connection_not_the_process() {
    let (run, seen) = case("oversized headers", true, &[], false, |p| {
        let inv = invited(p);
        let ok = response(&inv, 180, "Ringing", p.addr, "", None);
        let pad = format!("X-Pad: {}\r\n", "a".repeat(70 * 1024));
        let huge = ok.replacen("\r\n", &format!("\r\n{pad}"), 1);
        p.send(huge.as_bytes(), inv.from);
    });
    assert_eq!(run.code, 1, "{}", run.explain());
    assert!(run.findings().contains(&"unframeable_stream".to_string()), "{}", run.explain());
    assert!(run.finding_detail("unframeable_stream").contains("larger than 65536"), "{}", run.explain());
    assert_eq!(run.ended(), "transport_closed");
    assert_eq!(count(&seen, "INVITE"), 1);
}

#[test]
fn oversized_headers_over_udp_are_one_ignored_datagram() {
    let (run, seen) = case("oversized datagram", false, &[], true, |p| {
        let inv = invited(p);
        let ringing = response(&inv, 180, "Ringing", p.addr, "", None);
        let pad = format!("X-Pad: {}\r\n", "a".repeat(60 * 1024));
        p.send(ringing.replacen("\r\n", &format!("\r\n{pad}"), 1).as_bytes(), inv.from);
        // Nothing else: the call is CANCELled after --timeout.
    });
    assert_eq!(run.code, 1, "{}", run.explain());
    assert_eq!(run.ended(), "cancelled", "{}", run.explain());
    assert_eq!(count(&seen, "CANCEL"), 1, "the far end sees our CANCEL");
    assert!(count(&seen, "ACK") >= 1, "and the ACK for its 487");
}

#[test]
fn a_content_length_that_lies_is_named_both_ways() {
    // Too long: the 200 is discarded (RFC 3261 18.3); the retransmission
    // with the right length is taken.
    let (run, seen) = case("content-length too long", false, &[], true, |p| {
        let inv = invited(p);
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let body = pcmu(rtp.local_addr().unwrap());
        let lie = response(&inv, 200, "OK", p.addr, &body, Some(body.len() + 100));
        p.send(lie.as_bytes(), inv.from);
        thread::sleep(Duration::from_millis(300));
        p.reply(&inv, 200, "OK", &body);
        p.wait_for("ACK", Duration::from_secs(3));
    });
    assert_eq!(run.code, 1, "{}", run.explain());
    assert!(run.findings().contains(&"content_length_mismatch".to_string()), "{}", run.explain());
    assert!(run.finding_detail("content_length_mismatch").contains("discarded"), "{}", run.explain());
    assert_eq!(run.ended(), "hung_up");
    assert_eq!((count(&seen, "ACK"), count(&seen, "BYE")), (1, 1));

    // Too short: the SDP is cut at the announced length; what is left is not a usable answer.
    let (run, seen) = case("content-length too short", false, &[], true, |p| {
        let inv = invited(p);
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let body = pcmu(rtp.local_addr().unwrap());
        p.send(response(&inv, 200, "OK", p.addr, &body, Some(20)).as_bytes(), inv.from);
        p.wait_for("ACK", Duration::from_secs(3));
    });
    assert_eq!(run.code, 1, "{}", run.explain());
    let f = run.findings();
    assert!(f.contains(&"content_length_mismatch".to_string()), "{}", run.explain());
    assert!(f.contains(&"unparseable_sdp_answer".to_string()), "{}", run.explain());
    assert_eq!((count(&seen, "ACK"), count(&seen, "BYE")), (1, 1), "ACKed and hung up");
}

#[test]
fn trying_forever_is_cancelled_within_the_deadline() {
    let (run, seen) = case("100 forever", false, &[], false, |p| {
        let inv = invited(p);
        // 100 Trying every 200 ms, no final, CANCEL ignored.
        let until = Instant::now() + Duration::from_secs(9);
        while Instant::now() < until {
            p.reply(&inv, 100, "Trying", "");
            p.recv(Duration::from_millis(200));
        }
    });
    assert_eq!(run.code, 1, "{}", run.explain());
    assert_eq!(run.ended(), "cancelled");
    assert!(run.diagnoses().contains(&"ringing_without_answer".to_string()), "{}", run.explain());
    assert!(count(&seen, "CANCEL") >= 1, "the far end sees our CANCEL");
}

#[test]
fn a_200_without_sdp_is_acked_hung_up_and_named() {
    let (run, seen) = case("200 without SDP", false, &[], true, |p| {
        let inv = invited(p);
        p.reply(&inv, 200, "OK", "");
        p.wait_for("ACK", Duration::from_secs(3));
    });
    assert_eq!(run.code, 1, "{}", run.explain());
    assert!(run.findings().contains(&"answer_without_sdp".to_string()), "{}", run.explain());
    assert!(run.diagnoses().contains(&"peer_protocol_violation".to_string()));
    assert_eq!((count(&seen, "ACK"), count(&seen, "BYE")), (1, 1));
}

#[test]
fn a_200_with_unparseable_sdp_is_acked_hung_up_and_named() {
    let (run, seen) = case("unparseable SDP", false, &[], true, |p| {
        let inv = invited(p);
        p.reply(&inv, 200, "OK", "v=0\r\nthis is not SDP\r\nm=audio banana RTP/AVP 0\r\n");
        p.wait_for("ACK", Duration::from_secs(3));
    });
    assert_eq!(run.code, 1, "{}", run.explain());
    assert!(run.findings().contains(&"unparseable_sdp_answer".to_string()), "{}", run.explain());
    assert!(
        run.finding_detail("unparseable_sdp_answer").contains("peer sent unparseable SDP in 200 OK"),
        "{}",
        run.explain()
    );
    assert_eq!((count(&seen, "ACK"), count(&seen, "BYE")), (1, 1));
}

#[test]
fn an_sdp_that_changes_between_183_and_200_is_followed_and_noted() {
    let (run, _) = case("183 then other SDP", false, &[], true, |p| {
        let inv = invited(p);
        let early = UdpSocket::bind("127.0.0.1:0").unwrap();
        let real = UdpSocket::bind("127.0.0.1:0").unwrap();
        p.reply(&inv, 183, "Session Progress", &pcmu(early.local_addr().unwrap()));
        thread::sleep(Duration::from_millis(100));
        p.reply(&inv, 200, "OK", &pcmu(real.local_addr().unwrap()));
        p.wait_for("ACK", Duration::from_secs(3));
        // Media comes from the 200's address (ours goes there too).
        let ours = real.local_addr().ok();
        real.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut buf = [0u8; 2048];
        let (_, to) = real.recv_from(&mut buf).expect("callprobe sends RTP to the 200 OK's address");
        for seq in 0..40u16 {
            real.send_to(&rtp_packet(seq, 7), to).unwrap();
            thread::sleep(Duration::from_millis(20));
        }
        let _ = ours;
    });
    assert_eq!(run.code, 0, "legal: the 183's SDP was early media\n{}", run.explain());
    assert!(run.findings().contains(&"answer_sdp_changed".to_string()), "{}", run.explain());
    assert!(run.call()["media"]["rx_packets"].as_u64().unwrap() > 0);
}

#[test]
fn an_rtp_flood_is_counted_with_bounded_memory() {
    let (run, _) = case("RTP flood", false, &["--hangup-after", "3s"], true, |p| {
        let inv = invited(p);
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        p.reply(&inv, 200, "OK", &pcmu(rtp.local_addr().unwrap()));
        p.wait_for("ACK", Duration::from_secs(3));
        let to = inv.sdp_rtp().expect("the INVITE's SDP");
        // ~100k packets/s for 1.5 s (as fast as this thread can, capped).
        let started = Instant::now();
        let mut sent = 0u32;
        while started.elapsed() < Duration::from_millis(1500) && sent < 150_000 {
            let _ = rtp.send_to(&rtp_packet(sent as u16, 0xf100d), to);
            sent += 1;
            if sent.is_multiple_of(100) {
                let due = Duration::from_micros(u64::from(sent) * 10);
                if let Some(ahead) = due.checked_sub(started.elapsed()) {
                    thread::sleep(ahead);
                }
            }
        }
        println!("flood: {sent} packets in {:?}", started.elapsed());
    });
    assert!(run.code == 0 || run.code == 1, "{}", run.explain());
    assert!(run.findings().contains(&"rtp_flood".to_string()), "{}", run.explain());
    assert_eq!(run.ended(), "hung_up");
    let counted: u64 =
        run.call()["media"]["rx_streams"].as_array().unwrap().iter().map(|s| s["packets"].as_u64().unwrap()).sum();
    println!("flood: callprobe counted {counted} packets; {}", run.finding_detail("rtp_flood"));
    assert!(counted > 10_000, "the flood was received and counted: {counted}");
}

#[test]
fn rtp_from_the_wrong_address_and_a_new_ssrc_are_counted_apart() {
    let (run, _) = case("RTP wrong address", false, &[], true, |p| {
        let inv = invited(p);
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
        p.reply(&inv, 200, "OK", &pcmu(rtp.local_addr().unwrap()));
        p.wait_for("ACK", Duration::from_secs(3));
        let to = inv.sdp_rtp().expect("the INVITE's SDP");
        for seq in 0..30u16 {
            rtp.send_to(&rtp_packet(seq, 1), to).unwrap();
            stranger.send_to(&rtp_packet(seq, 2), to).unwrap();
            if seq >= 20 {
                rtp.send_to(&rtp_packet(seq, 3), to).unwrap();
            }
            thread::sleep(Duration::from_millis(20));
        }
    });
    assert_eq!(run.code, 0, "{}", run.explain());
    let media = &run.call()["media"];
    assert!(run.findings().contains(&"rtp_from_unexpected_address".to_string()), "{}", run.explain());
    assert!(run.findings().contains(&"rtp_ssrc_changed".to_string()), "{}", run.explain());
    assert_eq!(media["rx_unexpected_source_packets"], 30, "{media:#}");
    assert_eq!(media["rx_streams"].as_array().unwrap().len(), 3, "{media:#}");
    assert_eq!(media["rx_packets"], 30, "only the first stream is in the statistics: {media:#}");
}

#[test]
fn a_bye_before_our_ack_leaves_no_ghost_call() {
    let (run, seen) = case("BYE before ACK", false, &[], true, |p| {
        let inv = invited(p);
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        // The BYE for the dialog goes out before its 200 OK.
        let ok = response(&inv, 200, "OK", p.addr, &pcmu(rtp.local_addr().unwrap()), None);
        let from_us = inv.header("From");
        let bye = format!(
            "BYE {contact} SIP/2.0\r\nVia: SIP/2.0/UDP {me};branch=z9hG4bKhostilebye\r\nFrom: {to};tag=hostile\r\nTo: {from_us}\r\nCall-ID: {cid}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
            contact = inv.header("Contact").trim_matches(|c| c == '<' || c == '>'),
            me = p.addr,
            to = inv.header("To"),
            cid = inv.header("Call-ID"),
        );
        p.send(bye.as_bytes(), inv.from);
        p.send(ok.as_bytes(), inv.from);
        p.wait_for("ACK", Duration::from_secs(3));
    });
    assert_eq!(run.code, 1, "{}", run.explain());
    assert!(run.findings().contains(&"bye_before_ack".to_string()), "{}", run.explain());
    assert_eq!((count(&seen, "ACK"), count(&seen, "BYE")), (1, 1), "its 2xx was ACKed and hung up");
}

#[test]
fn a_tcp_peer_that_stalls_mid_message_gets_a_verdict() {
    let (run, _) = case("TCP stall", true, &[], false, |p| {
        let inv = invited(p);
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let ok = response(&inv, 200, "OK", p.addr, &pcmu(rtp.local_addr().unwrap()), None);
        // Half of the 200 OK, then nothing (the connection stays open).
        p.send(&ok.as_bytes()[..ok.len() / 2], inv.from);
    });
    assert_eq!(run.code, 1, "{}", run.explain());
    assert!(run.findings().contains(&"tcp_stalled_mid_message".to_string()), "{}", run.explain());
    // The 100 Trying came whole: after --timeout, CANCEL, unanswered too.
    assert_eq!(run.ended(), "cancelled", "{}", run.explain());
}

#[test]
fn a_2xx_after_timer_b_is_acked_and_hung_up() {
    let (run, seen) = case("late 2xx", false, &[], true, |p| {
        let inv = p.wait_for("INVITE", Duration::from_secs(5));
        // Nothing until Timer B (--timeout 2s) has fired, then 200 OK.
        thread::sleep(Duration::from_millis(2600));
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        p.reply(&inv, 200, "OK", &pcmu(rtp.local_addr().unwrap()));
        p.wait_for("ACK", Duration::from_secs(3));
    });
    assert_eq!(run.code, 1, "{}", run.explain());
    assert_eq!(run.ended(), "no_response");
    assert!(run.findings().contains(&"late_2xx_answered_and_hung_up".to_string()), "{}", run.explain());
    assert!(run.diagnoses().contains(&"late_answer".to_string()), "{}", run.explain());
    assert_eq!(count(&seen, "BYE"), 1, "no ghost call: {seen:?}");
}

#[test]
fn a_retransmitted_final_is_re_acked_after_the_end() {
    let (run, seen) = case("486 retransmitted", false, &[], true, |p| {
        let inv = invited(p);
        p.reply(&inv, 486, "Busy Here", "");
        p.wait_for("ACK", Duration::from_secs(3));
        thread::sleep(Duration::from_millis(500));
        p.reply(&inv, 486, "Busy Here", "");
        p.wait_for("ACK", Duration::from_secs(3));
    });
    assert_eq!(run.code, 1, "{}", run.explain());
    assert_eq!(count(&seen, "ACK"), 2, "Timer D: the retransmitted 486 is ACKed again");
    assert!(run.elapsed < Duration::from_secs(6), "the linger is bounded: {:?}", run.elapsed);
}

#[test]
fn a_bye_on_a_new_tcp_connection_reaches_the_call() {
    let (run, _) = case("BYE on a new TCP connection", true, &["--hangup-after", "5s"], true, |p| {
        let inv = invited(p);
        let rtp = UdpSocket::bind("127.0.0.1:0").unwrap();
        p.reply(&inv, 200, "OK", &pcmu(rtp.local_addr().unwrap()));
        p.wait_for("ACK", Duration::from_secs(3));
        // Open a new connection to our Contact and hang up on it.
        let contact = inv.header("Contact");
        let addr = contact.split('@').nth(1).unwrap().split([';', '>']).next().unwrap();
        let mut conn = TcpStream::connect(addr).expect("callprobe's Contact accepts TCP");
        let bye = format!(
            "BYE sip:{addr};transport=tcp SIP/2.0\r\nVia: SIP/2.0/TCP {me};branch=z9hG4bKnewconn\r\nFrom: {to};tag=hostile\r\nTo: {from}\r\nCall-ID: {cid}\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n",
            me = p.addr,
            to = inv.header("To"),
            from = inv.header("From"),
            cid = inv.header("Call-ID"),
        );
        conn.write_all(bye.as_bytes()).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut buf = [0u8; 4096];
        let n = conn.read(&mut buf).unwrap_or(0);
        let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(answer.starts_with("SIP/2.0 200"), "the BYE's answer comes back on its connection: {answer:?}");
    });
    assert_eq!(run.code, 0, "{}", run.explain());
    assert_eq!(run.ended(), "far_end_hung_up", "{}", run.explain());
    assert!(run.elapsed < Duration::from_secs(4), "ended by the far end, not the 5 s hold: {:?}", run.elapsed);
}
