//! Benchmark (not a test) of RTP send pacing: how far the gaps between
//! consecutive packets of one stream stray from 20 ms, for 1 and 100
//! concurrent streams on loopback, for callprobe's media sender and for
//! SIPp's own RTP streamer (`rtp_stream`) measured in the same run, with
//! the same receiver. Reported as p50/p99/max of |interval − 20 ms| and as
//! callprobe/SIPp ratios.
//!
//! Run: `cargo bench --bench pacing` (BENCH_SECONDS=10 by default; needs
//! `sipp` and `sox`). Numbers depend on the machine's load; compare the
//! ratios, not the absolute values.

use std::collections::HashMap;
use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use callprobe::call::media::{MediaPort, MediaSession};
use callprobe::media::codec::AudioCodec;
use callprobe::media::sdp::{MediaDirection, NegotiatedAudio};

type Arrivals = Arc<Mutex<HashMap<u32, Vec<Instant>>>>;

/// Receives RTP on a loopback port and timestamps every packet per SSRC.
fn start_receiver() -> (SocketAddr, Arrivals, Arc<std::sync::atomic::AtomicBool>) {
    let socket = UdpSocket::bind("127.0.0.1:0").expect("bind receiver");
    socket.set_read_timeout(Some(Duration::from_millis(100))).expect("timeout");
    let addr = socket.local_addr().expect("addr");
    let arrivals: Arrivals = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (a, s) = (arrivals.clone(), stop.clone());
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !s.load(std::sync::atomic::Ordering::Relaxed) {
            if let Ok((n, _)) = socket.recv_from(&mut buf) {
                let now = Instant::now();
                if n >= 12 {
                    let ssrc = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
                    a.lock().expect("lock").entry(ssrc).or_default().push(now);
                }
            }
        }
    });
    (addr, arrivals, stop)
}

/// |interval − 20 ms| in µs over all streams, skipping each stream's first second.
fn deviations(arrivals: &HashMap<u32, Vec<Instant>>) -> Vec<u64> {
    let mut out = Vec::new();
    for times in arrivals.values() {
        let Some(&first) = times.first() else { continue };
        for pair in times.windows(2) {
            if pair[0] - first < Duration::from_secs(1) {
                continue;
            }
            let interval = (pair[1] - pair[0]).as_micros() as i64;
            out.push((interval - 20_000).unsigned_abs());
        }
    }
    out.sort_unstable();
    out
}

#[derive(Debug, Clone, Copy)]
struct Summary {
    streams: usize,
    intervals: usize,
    p50_us: u64,
    p99_us: u64,
    max_us: u64,
}

fn summarize(arrivals: &HashMap<u32, Vec<Instant>>) -> Summary {
    let d = deviations(arrivals);
    let pct = |p: f64| d.get(((d.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0);
    Summary {
        streams: arrivals.len(),
        intervals: d.len(),
        p50_us: pct(0.5),
        p99_us: pct(0.99),
        max_us: d.last().copied().unwrap_or(0),
    }
}

fn run_callprobe(streams: usize, seconds: u64) -> Summary {
    let (rx, arrivals, stop) = start_receiver();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    runtime.block_on(async {
        let mut sessions = Vec::new();
        for _ in 0..streams {
            let port = MediaPort::bind("127.0.0.1".parse().expect("ip")).await.expect("bind");
            let audio = NegotiatedAudio {
                codec: AudioCodec::Pcmu,
                payload_type: 0,
                telephone_event_payload_type: None,
                remote_rtp: rx,
                ptime_ms: Some(20),
                direction: MediaDirection::SendRecv,
                protocol: "RTP/AVP".into(),
                srtp: None,
            };
            let now = Instant::now();
            let (hang_up, _) = tokio::sync::mpsc::unbounded_channel();
            sessions.push(MediaSession::start(port, audio, None, now, now, hang_up));
        }
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        for s in sessions {
            s.stop().await;
        }
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(200));
    let map = arrivals.lock().expect("lock").clone();
    summarize(&map)
}

fn run_sipp(streams: usize, seconds: u64, work: &PathBuf) -> Result<Summary, String> {
    let (rx, arrivals, stop) = start_receiver();
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let stream_file = work.join("tone_ulaw.wav");
    let sox = Command::new("sox")
        .arg(here.join("fixtures/tone_440hz_8k.wav"))
        .args(["-e", "u-law", "-r", "8000", "-c", "1"])
        .arg(&stream_file)
        .status()
        .map_err(|e| format!("sox: {e}"))?;
    if !sox.success() {
        return Err("sox failed".into());
    }
    let uac = std::fs::read_to_string(here.join("benches/sipp/uac_bench.xml"))
        .map_err(|e| e.to_string())?
        .replace("[stream_file]", &stream_file.display().to_string())
        .replace("[hold_ms]", &(seconds * 1000).to_string());
    let uac_path = work.join("uac_bench.xml");
    std::fs::write(&uac_path, uac).map_err(|e| e.to_string())?;
    let uas_port = 25_000 + (std::process::id() % 1000) as u16;
    let mut uas = Command::new("sipp")
        .arg("-sf")
        .arg(here.join("benches/sipp/uas_bench.xml"))
        .args(["-i", "127.0.0.1", "-p", &uas_port.to_string(), "-m", &streams.to_string(), "-nostdin"])
        .args(["-key", "rx_port", &rx.port().to_string(), "-mp", "26000"])
        .current_dir(work)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("sipp uas: {e}"))?;
    std::thread::sleep(Duration::from_millis(300));
    let uac = Command::new("sipp")
        .arg("-sf")
        .arg(&uac_path)
        .arg(format!("127.0.0.1:{uas_port}"))
        .args(["-i", "127.0.0.1", "-p", &(uas_port + 1).to_string(), "-m", &streams.to_string()])
        .args(["-l", &streams.to_string(), "-r", &streams.to_string(), "-nostdin", "-mp", "28000", "-mi", "127.0.0.1"])
        .args(["-timeout", &format!("{}s", seconds + 30)])
        .current_dir(work)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("sipp uac: {e}"))?;
    let _ = uas.kill();
    let _ = uas.wait();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(200));
    if !uac.success() {
        return Err(format!("sipp uac exited {uac}"));
    }
    let map = arrivals.lock().expect("lock").clone();
    Ok(summarize(&map))
}

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let work = std::env::temp_dir().join(format!("callprobe-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work).expect("work dir");
    println!("RTP send pacing, |interval - 20 ms| in microseconds, {seconds} s per run, loopback");
    println!("{:<10} {:>7} {:>9} {:>8} {:>8} {:>8}", "sender", "streams", "intervals", "p50", "p99", "max");
    for streams in [1usize, 100] {
        let ours = run_callprobe(streams, seconds);
        println!(
            "{:<10} {:>7} {:>9} {:>8} {:>8} {:>8}",
            "callprobe", ours.streams, ours.intervals, ours.p50_us, ours.p99_us, ours.max_us
        );
        match run_sipp(streams, seconds, &work) {
            Ok(sipp) => {
                println!(
                    "{:<10} {:>7} {:>9} {:>8} {:>8} {:>8}",
                    "sipp", sipp.streams, sipp.intervals, sipp.p50_us, sipp.p99_us, sipp.max_us
                );
                let ratio = |a: u64, b: u64| if b == 0 { f64::NAN } else { a as f64 / b as f64 };
                println!(
                    "ratio callprobe/sipp at {streams} stream(s): p50 {:.2}, p99 {:.2}",
                    ratio(ours.p50_us, sipp.p50_us),
                    ratio(ours.p99_us, sipp.p99_us)
                );
            }
            Err(e) => println!("sipp       {streams:>7}  could not run: {e}"),
        }
    }
    let _ = std::fs::remove_dir_all(&work);
}
