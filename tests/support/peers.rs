//! Real-peer SIP fixtures for callprobe's integration tests (std only).
//!
//! Two kinds of peer, both on 127.0.0.1, each on its own free port(s) and in
//! its own temporary directory, run in the foreground and stopped on `Drop`:
//!
//! * [`Kamailio`] — a LiveKit-like SIP inbound trunk / carrier proxy
//!   (`tests/peers/kamailio/trunk.cfg`) configured by a [`TrunkConfig`]:
//!   number check (`404 No trunk found`), digest challenge (`407` +
//!   `Proxy-Authenticate`), Record-Route, relay to a SIPp UAS over UDP,
//!   loose routing of in-dialog requests both ways (caller on UDP or TCP).
//! * [`Sipp`] (alias [`SippUas`]) — a SIPp process running one scenario from
//!   `tests/peers/sipp/` (`-m 1`, bounded `-timeout` with `-timeout_error`);
//!   [`Sipp::wait`] returns a [`SippOutcome`] whose `success` is SIPp's exit
//!   code 0 and whose `log` (message trace + errors) is meant for assertion
//!   messages.
//!
//! Typical test:
//!
//! ```ignore
//! mod support;                       // tests/support/mod.rs: `pub mod peers;`
//! use support::peers::*;
//!
//! let uas = SippUas::start("uas_answer.xml", free_port(false))?;
//! let trunk = Kamailio::start(TrunkConfig::new(uas.port()))?;
//! // ... run callprobe against trunk.uri("+14144007103") with
//! //     trunk.config().user / .password ...
//! let out = uas.wait(Duration::from_secs(20));
//! assert!(out.success, "UAS scenario failed:\n{}\n--- kamailio ---\n{}", out.log, trunk.log());
//! ```
//!
//! Notes:
//! * Binaries: `sipp` (Debian package `sip-tester`) and `kamailio` (Debian
//!   package `kamailio`) are looked up in `$PATH`, `/usr/sbin`, `/sbin`,
//!   `/usr/local/sbin`; `CALLPROBE_SIPP` / `CALLPROBE_KAMAILIO` override the
//!   path. A missing binary gives an `io::ErrorKind::NotFound` error naming the
//!   package. Tests call [`require_tools`] first (with the [`Tool`]s they
//!   need): a missing program then fails the test with one message saying what
//!   to install — or skips it under `CALLPROBE_ALLOW_SKIP=1` (see
//!   `support::skip_or_fail`).
//! * `CALLPROBE_PEERS_DIR` overrides [`peers_dir`]; `CALLPROBE_KEEP_PEER_DIRS=1`
//!   keeps the temporary directories (logs, traces) after the test.
//! * Create peers inside the test that uses them (not in a `static`: statics
//!   are never dropped, so their processes would outlive the test binary).
//! * Process clean-up: every peer runs in its own process group; `Drop`
//!   sends SIGTERM to the group, waits (Kamailio's main process stops its
//!   children), then SIGKILLs the group and reaps the child. No zombies, no
//!   orphans — unless the test binary itself is SIGKILLed.
#![allow(dead_code)]

use std::collections::HashSet;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The only address the peers use.
pub const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Numbers accepted by default by [`TrunkConfig::new`].
pub const DEFAULT_NUMBERS: [&str; 2] = ["+14144007103", "+13658253552"];

/// How long [`Kamailio::start`] / [`Sipp::start`] wait for the peer to be ready.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(10);

// ---------------------------------------------------------------------------
// paths, ports, temp dirs
// ---------------------------------------------------------------------------

/// `tests/peers` of the crate under test (`$CARGO_MANIFEST_DIR/tests/peers`),
/// or `$CALLPROBE_PEERS_DIR` if set.
pub fn peers_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CALLPROBE_PEERS_DIR") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests").join("peers")
}

/// A 127.0.0.1 port that is free for UDP (and for TCP too if `udp_and_tcp`).
///
/// Ports are drawn at random from 20000..32000, i.e. below Linux's ephemeral
/// range (32768..60999), so they never clash with ports the kernel hands out
/// for `bind(0)` / outgoing connections; a port is verified by binding it and
/// is never handed out twice within one test process. (Another process could
/// still grab it between this check and the peer's bind; `Kamailio::start`
/// retries with a new port when that happens.)
pub fn free_port(udp_and_tcp: bool) -> u16 {
    free_port_range(1, udp_and_tcp)
}

/// First of `count` consecutive free 127.0.0.1 ports (UDP, and TCP too if
/// `udp_and_tcp`); same rules as [`free_port`]. [`Sipp`] uses it for its RTP
/// ports (`-mp`): SIPp binds audio at the base port and video at base + 2,
/// and its default 6000 races between parallel SIPps ("Unable to bind audio
/// RTP socket").
pub fn free_port_range(count: u16, udp_and_tcp: bool) -> u16 {
    static HANDED_OUT: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let handed_out = HANDED_OUT.get_or_init(|| Mutex::new(HashSet::new()));
    let count = count.max(1);
    let mut rng = seed();
    'candidates: for _ in 0..5000 {
        let base = 20000 + (xorshift(&mut rng) % (12000 - count as u64)) as u16;
        let mut set = handed_out.lock().unwrap_or_else(|e| e.into_inner());
        let mut held = Vec::new(); // keep sockets bound until every port is checked
        for port in base..base + count {
            if set.contains(&port) {
                continue 'candidates;
            }
            match UdpSocket::bind((LOCALHOST, port)) {
                Ok(s) => held.push(s),
                Err(_) => continue 'candidates,
            }
            if udp_and_tcp && TcpListener::bind((LOCALHOST, port)).is_err() {
                continue 'candidates;
            }
        }
        set.extend(base..base + count);
        return base;
    }
    panic!("free_port_range: no {count} free 127.0.0.1 port(s) found in 20000..32000");
}

fn seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let s = nanos ^ ((std::process::id() as u64) << 32) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    if s == 0 {
        0x1234_5678
    } else {
        s
    }
}

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

/// A uniquely named directory under `std::env::temp_dir()`, removed on drop
/// (kept when `CALLPROBE_KEEP_PEER_DIRS` is set).
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(prefix: &str) -> io::Result<TempDir> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("callprobe-{prefix}-{}-{n}-{nanos}", std::process::id()));
        fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("CALLPROBE_KEEP_PEER_DIRS").is_none() {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

// ---------------------------------------------------------------------------
// processes
// ---------------------------------------------------------------------------

unsafe extern "C" {
    // libc's kill(2); std already links libc.
    fn kill(pid: i32, sig: i32) -> i32;
}
const SIGTERM: i32 = 15;
const SIGKILL: i32 = 9;

fn signal_group(pgid: u32, sig: i32) {
    if pgid > 1 {
        // SAFETY: plain syscall; a negative pid addresses the process group
        // that `spawn_in_group` created for our own child.
        unsafe {
            kill(-(pgid as i32), sig);
        }
    }
}

fn spawn_in_group(cmd: &mut Command) -> io::Result<Child> {
    cmd.stdin(Stdio::null()).process_group(0).spawn()
}

/// SIGTERM the child's process group, wait up to `grace`, then SIGKILL the
/// group and reap the child.
fn stop_group(child: &mut Child, grace: Duration) -> Option<ExitStatus> {
    let pgid = child.id();
    if let Ok(Some(status)) = child.try_wait() {
        signal_group(pgid, SIGKILL); // stragglers, if any
        return Some(status);
    }
    signal_group(pgid, SIGTERM);
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                signal_group(pgid, SIGKILL);
                return Some(status);
            }
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            _ => break,
        }
    }
    signal_group(pgid, SIGKILL);
    let _ = child.kill();
    child.wait().ok()
}

/// Path of the `sipp` binary, or a `NotFound` error telling to install the
/// Debian package `sip-tester`. Handy to skip tests on machines without it.
pub fn sipp_binary() -> io::Result<PathBuf> {
    find_binary("sipp", "CALLPROBE_SIPP", "sip-tester")
}

/// Path of the `kamailio` binary, or a `NotFound` error telling to install
/// the Debian package `kamailio`.
pub fn kamailio_binary() -> io::Result<PathBuf> {
    find_binary("kamailio", "CALLPROBE_KAMAILIO", "kamailio")
}

/// An external program that some tests need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// SIPp, Debian package `sip-tester` (`CALLPROBE_SIPP` overrides the path).
    Sipp,
    /// Kamailio, Debian package `kamailio` (`CALLPROBE_KAMAILIO` overrides the path).
    Kamailio,
    /// tshark (Wireshark's CLI), Debian package `tshark`.
    Tshark,
    /// Chromium (`chromium` or `chromium-browser`), Debian package `chromium`.
    Chromium,
}

impl Tool {
    /// The program's name, as the message about it says it.
    pub fn name(self) -> &'static str {
        match self {
            Tool::Sipp => "sipp",
            Tool::Kamailio => "kamailio",
            Tool::Tshark => "tshark",
            Tool::Chromium => "chromium",
        }
    }

    /// The Debian package that installs it (what `scripts/install-deps` installs).
    pub fn debian_package(self) -> &'static str {
        match self {
            Tool::Sipp => "sip-tester",
            Tool::Kamailio => "kamailio",
            Tool::Tshark => "tshark",
            Tool::Chromium => "chromium",
        }
    }

    /// Where the program is, or why it is not there.
    pub fn find(self) -> io::Result<PathBuf> {
        match self {
            Tool::Sipp => sipp_binary(),
            Tool::Kamailio => kamailio_binary(),
            Tool::Tshark => find_in_path(&["tshark"]),
            Tool::Chromium => find_in_path(&["chromium", "chromium-browser"]),
        }
    }
}

/// The first of `names` found in `$PATH`.
fn find_in_path(names: &[&str]) -> io::Result<PathBuf> {
    let dirs: Vec<PathBuf> = std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    names
        .iter()
        .flat_map(|name| dirs.iter().map(move |d| d.join(name)))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("{} not found in $PATH", names.join(" / "))))
}

/// Those of `tools` that are not installed.
pub fn missing_tools(tools: &[Tool]) -> Vec<Tool> {
    tools.iter().copied().filter(|t| t.find().is_err()).collect()
}

/// `true` when every one of `tools` is installed. Otherwise `false`, after
/// one message naming every missing program and how to install them went to
/// [`super::skip_or_fail`] — which fails the test unless
/// `CALLPROBE_ALLOW_SKIP=1`; on `false` the test returns.
pub fn require_tools(test: &str, tools: &[Tool]) -> bool {
    let missing = missing_tools(tools);
    if missing.is_empty() {
        return true;
    }
    let names: Vec<&str> = missing.iter().map(|t| t.name()).collect();
    let packages: Vec<&str> = missing.iter().map(|t| t.debian_package()).collect();
    super::skip_or_fail(
        test,
        &format!(
            "needs {} (not installed): run scripts/install-deps, or apt-get install {}",
            names.join(", "),
            packages.join(" ")
        ),
    );
    false
}

/// Locate a peer binary; the error names the Debian package to install.
fn find_binary(name: &str, env_override: &str, debian_package: &str) -> io::Result<PathBuf> {
    if let Some(p) = std::env::var_os(env_override) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(io::Error::new(io::ErrorKind::NotFound, format!("{env_override}={} does not exist", p.display())))
        };
    }
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    // sbin directories are often missing from a non-root $PATH (kamailio
    // lives there); everything else is found through $PATH alone, so a test
    // run with a $PATH that lacks a program sees it as missing.
    for d in ["/usr/sbin", "/sbin", "/usr/local/sbin"] {
        dirs.push(PathBuf::from(d));
    }
    for d in dirs {
        let candidate = d.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::NotFound,
        format!(
            "`{name}` not found in $PATH or /usr/sbin: install the Debian package \
             `{debian_package}` (apt-get install {debian_package}) or set {env_override}"
        ),
    ))
}

fn read_lossy(path: &Path) -> String {
    fs::read(path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
}

/// Is a socket bound on 127.0.0.1/0.0.0.0:`port` (UDP) or listening (TCP)?
/// Reads /proc/net/{udp,udp6,tcp,tcp6}: no probing bind that could race
/// with the peer's own bind.
fn port_in_use(port: u16, tcp: bool) -> bool {
    let files: &[&str] = if tcp { &["/proc/net/tcp", "/proc/net/tcp6"] } else { &["/proc/net/udp", "/proc/net/udp6"] };
    for f in files {
        let Ok(text) = fs::read_to_string(f) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 4 {
                continue;
            }
            let Some((_, hex_port)) = cols[1].rsplit_once(':') else {
                continue;
            };
            if u16::from_str_radix(hex_port, 16).ok() != Some(port) {
                continue;
            }
            if !tcp || cols[3] == "0A" {
                return true;
            }
        }
    }
    false
}

// ---------------------------------------------------------------------------
// transport
// ---------------------------------------------------------------------------

/// SIP transport between the caller and the trunk (the trunk always talks to
/// the UAS over UDP).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    /// `"udp"` / `"tcp"` (URI `transport=` parameter value).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }

    fn sipp_mode(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
        }
    }
}

// ---------------------------------------------------------------------------
// Kamailio trunk
// ---------------------------------------------------------------------------

/// Digest `qop` offered in the trunk's challenge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Qop {
    /// No `qop` in `Proxy-Authenticate` (like LiveKit): RFC 2069 style
    /// response = H(HA1:nonce:HA2).
    None,
    /// `qop="auth"`: the client must send `qop=auth, nc=, cnonce=`.
    Auth,
}

/// Digest algorithm of the trunk's challenge (Kamailio auth `algorithm`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    /// MD5, `algorithm=MD5` present in the challenge (LiveKit does this).
    Md5,
    /// MD5 with no `algorithm=` parameter at all (RFC default).
    Md5Implicit,
    /// `algorithm=SHA-256` (RFC 8760; supported by Kamailio 5.6's auth).
    Sha256,
}

/// Configuration of the Kamailio trunk. Build with [`TrunkConfig::new`] and
/// adjust the public fields.
#[derive(Clone, Debug)]
pub struct TrunkConfig {
    /// Digest username the trunk accepts (any other username fails like a
    /// wrong password).
    pub user: String,
    /// Digest password.
    pub password: String,
    /// Realm put in the challenge.
    pub realm: String,
    pub qop: Qop,
    pub algorithm: Algorithm,
    /// Answer `403 Forbidden` instead of a fresh `407` when the INVITE
    /// carries credentials for our realm that do not verify (wrong
    /// password/username). Default `false` (re-challenge, like LiveKit).
    pub reject_with_403: bool,
    /// 127.0.0.1 UDP port of the SIPp UAS that authenticated INVITEs go to.
    pub uas_port: u16,
    /// Request-URI users (`$rU`, exact match) accepted on the trunk; any
    /// other gets `404 No trunk found` before authentication.
    pub numbers: Vec<String>,
    /// Port for UDP+TCP; `None` (default) = a [`free_port`].
    pub port: Option<u16>,
    /// For callers on TCP, add `;alias=` to their Contact so that in-dialog
    /// requests towards them (e.g. the far end's BYE) reuse their TCP
    /// connection, as carriers do. Default `true`; with `false` Kamailio
    /// opens a new connection to the Contact address.
    pub tcp_contact_alias: bool,
    /// Kamailio debug level (`debug=`): 2 = info (default, one line per
    /// request/reply), 3 = debug.
    pub log_level: i32,
    /// Nonce lifetime (whole seconds, at least 1; default 300 s). Credentials
    /// with an expired nonce get a fresh `407` with `stale=true`.
    pub nonce_expire: Duration,
    /// Also listen for SIP over TLS on `tls:127.0.0.1:<free port>` with this
    /// certificate (`None`, the default: no TLS).
    pub tls: Option<TrunkTls>,
}

/// The certificate the trunk's TLS socket presents.
#[derive(Clone, Debug)]
pub struct TrunkTls {
    /// PEM certificate (chain), server first.
    pub cert: PathBuf,
    /// PEM private key of `cert`.
    pub key: PathBuf,
}

impl TrunkConfig {
    /// Defaults: user `callprobe`, password `callprobe-secret`, realm
    /// `trunk.test`, no qop, `algorithm=MD5`, re-challenge on bad
    /// credentials, numbers [`DEFAULT_NUMBERS`], free port, TCP alias on,
    /// log level 2, nonce lifetime 300 s.
    pub fn new(uas_port: u16) -> TrunkConfig {
        TrunkConfig {
            user: "callprobe".into(),
            password: "callprobe-secret".into(),
            realm: "trunk.test".into(),
            qop: Qop::None,
            algorithm: Algorithm::Md5,
            reject_with_403: false,
            uas_port,
            numbers: DEFAULT_NUMBERS.iter().map(|s| s.to_string()).collect(),
            port: None,
            tcp_contact_alias: true,
            log_level: 2,
            nonce_expire: Duration::from_secs(300),
            tls: None,
        }
    }

    fn validate(&self) -> io::Result<()> {
        let bad = |what: &str, v: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("TrunkConfig.{what} = {v:?}: must be non-empty without '\"', '\\\\' or control characters"),
            )
        };
        for (what, v) in [("user", &self.user), ("password", &self.password), ("realm", &self.realm)] {
            if v.is_empty() || v.chars().any(|c| c == '"' || c == '\\' || c.is_control()) {
                return Err(bad(what, v));
            }
        }
        if self.numbers.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "TrunkConfig.numbers is empty"));
        }
        for n in &self.numbers {
            if n.is_empty()
                || n.chars().any(|c| c == ',' || c == '"' || c == '\\' || c.is_whitespace() || c.is_control())
            {
                return Err(bad("numbers[..]", n));
            }
        }
        if self.uas_port == 0 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "TrunkConfig.uas_port is 0"));
        }
        Ok(())
    }

    /// The `-A NAME=value` defines passed to `trunk.cfg` (see its header).
    fn defines(&self, port: u16) -> Vec<String> {
        let mut d = vec![
            format!("TRUNK_PORT={port}"),
            format!("UAS_PORT={}", self.uas_port),
            format!("AUTH_USER=\"{}\"", self.user),
            format!("AUTH_PASSWORD=\"{}\"", self.password),
            format!("AUTH_REALM=\"{}\"", self.realm),
            format!("TRUNK_NUMBERS=\"{}\"", self.numbers.join(",")),
            format!("CHALLENGE_FLAGS={}", if self.qop == Qop::Auth { 1 } else { 0 }),
            format!("LOG_LEVEL={}", self.log_level),
            format!("NONCE_EXPIRE={}", self.nonce_expire.as_secs().max(1)),
        ];
        match self.algorithm {
            Algorithm::Md5 => d.push("AUTH_ALGORITHM=\"MD5\"".into()),
            Algorithm::Sha256 => d.push("AUTH_ALGORITHM=\"SHA-256\"".into()),
            Algorithm::Md5Implicit => {}
        }
        if self.reject_with_403 {
            d.push("REJECT_WITH_403".into());
        }
        if !self.tcp_contact_alias {
            d.push("NO_TCP_ALIAS".into());
        }
        if let Some(tls) = &self.tls {
            d.push(format!("TLS_CERT=\"{}\"", tls.cert.display()));
            d.push(format!("TLS_KEY=\"{}\"", tls.key.display()));
        }
        d
    }
}

/// A running Kamailio trunk (see `tests/peers/kamailio/trunk.cfg`).
/// Stopped (SIGTERM to its process group, then SIGKILL) on drop.
pub struct Kamailio {
    /// UDP and TCP port on 127.0.0.1.
    pub port: u16,
    /// TLS port on 127.0.0.1, when [`TrunkConfig::tls`] is set.
    pub tls_port: Option<u16>,
    config: TrunkConfig,
    child: Option<Child>,
    startup: Duration,
    log_path: PathBuf,
    dir: TempDir,
}

impl Kamailio {
    /// Start Kamailio with `cfg` and wait (at most [`STARTUP_TIMEOUT`]) until
    /// it answers an OPTIONS over UDP with 200 and listens on TCP.
    pub fn start(cfg: TrunkConfig) -> io::Result<Kamailio> {
        cfg.validate()?;
        let bin = kamailio_binary()?;
        let cfg_file = peers_dir().join("kamailio").join("trunk.cfg");
        if !cfg_file.is_file() {
            return Err(io::Error::new(io::ErrorKind::NotFound, format!("{} not found", cfg_file.display())));
        }
        let attempts = if cfg.port.is_some() { 1 } else { 3 };
        let mut last_err = None;
        for attempt in 0..attempts {
            let port = cfg.port.unwrap_or_else(|| free_port(true));
            let dir = TempDir::new("kamailio")?;
            match Self::spawn(&bin, &cfg_file, &cfg, port, dir, attempt) {
                Ok(k) => return Ok(k),
                Err(e) => last_err = Some(e),
            }
        }
        Err(last_err.unwrap())
    }

    fn spawn(
        bin: &Path,
        cfg_file: &Path,
        cfg: &TrunkConfig,
        port: u16,
        dir: TempDir,
        attempt: u32,
    ) -> io::Result<Kamailio> {
        let log_path = dir.path().join("kamailio.log");
        let log = File::create(&log_path)?;
        let mut cmd = Command::new(bin);
        cmd.arg("-f")
            .arg(cfg_file)
            .args(["-DD", "-E", "-m", "32", "-M", "4"])
            .arg("-Y")
            .arg(dir.path())
            .arg("-P")
            .arg(dir.path().join("kamailio.pid"))
            .arg("-w")
            .arg(dir.path())
            .arg("-l")
            .arg(format!("udp:127.0.0.1:{port}"))
            .arg("-l")
            .arg(format!("tcp:127.0.0.1:{port}"));
        let tls_port = cfg.tls.as_ref().map(|_| free_port(true));
        if let Some(tls_port) = tls_port {
            cmd.arg("-l").arg(format!("tls:127.0.0.1:{tls_port}"));
        }
        for d in cfg.defines(port) {
            cmd.arg("-A").arg(d);
        }
        cmd.stdout(log.try_clone()?).stderr(log);
        let started = Instant::now();
        let child = spawn_in_group(&mut cmd)?;
        let mut k = Kamailio {
            port,
            tls_port,
            config: cfg.clone(),
            child: Some(child),
            startup: Duration::ZERO,
            log_path,
            dir,
        };
        k.wait_ready(started).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "kamailio on port {port} (attempt {}) not ready: {e}\n--- kamailio log ---\n{}",
                    attempt + 1,
                    k.log()
                ),
            )
        })?;
        k.startup = started.elapsed();
        Ok(k)
    }

    fn wait_ready(&mut self, started: Instant) -> io::Result<()> {
        let sock = UdpSocket::bind((LOCALHOST, 0))?;
        sock.set_read_timeout(Some(Duration::from_millis(100)))?;
        let local = sock.local_addr()?;
        let deadline = started + STARTUP_TIMEOUT;
        let mut udp_ok = false;
        let mut n = 0u32;
        let mut buf = [0u8; 4096];
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                return Err(io::Error::other(format!("kamailio exited with {status}")));
            }
            if Instant::now() > deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no OPTIONS reply / TCP listener"));
            }
            if !udp_ok {
                n += 1;
                let msg = format!(
                    "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\n\
                     Via: SIP/2.0/UDP {local};rport;branch=z9hG4bK-ready-{n}\r\n\
                     Max-Forwards: 70\r\n\
                     From: <sip:harness@127.0.0.1>;tag=ready{n}\r\n\
                     To: <sip:127.0.0.1:{port}>\r\n\
                     Call-ID: ready-{n}-{port}@127.0.0.1\r\n\
                     CSeq: {n} OPTIONS\r\n\
                     Content-Length: 0\r\n\r\n",
                    port = self.port
                );
                let _ = sock.send_to(msg.as_bytes(), (LOCALHOST, self.port));
                if let Ok((len, _)) = sock.recv_from(&mut buf) {
                    udp_ok = buf[..len].starts_with(b"SIP/2.0 200");
                }
            } else if port_in_use(self.port, true) && self.tls_port.is_none_or(|p| port_in_use(p, true)) {
                return Ok(());
            } else {
                thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// `sip:<number>@127.0.0.1:<port>` — Request-URI / target for the caller.
    pub fn uri(&self, number: &str) -> String {
        format!("sip:{number}@127.0.0.1:{}", self.port)
    }

    /// Like [`Kamailio::uri`] with a `;transport=` parameter.
    pub fn uri_with_transport(&self, number: &str, transport: Transport) -> String {
        format!("sip:{number}@127.0.0.1:{};transport={}", self.port, transport.as_str())
    }

    /// `sips:<number>@<host>:<tls port>` (`host`: `127.0.0.1` or `localhost`,
    /// what the certificate is checked against). Panics without TLS.
    pub fn sips_uri(&self, number: &str, host: &str) -> String {
        format!("sips:{number}@{host}:{}", self.tls_port.expect("the trunk was started without TLS"))
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::V4(SocketAddrV4::new(LOCALHOST, self.port))
    }

    pub fn config(&self) -> &TrunkConfig {
        &self.config
    }

    /// Time from spawn until ready.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// Kamailio's stderr so far (startup + one `<script>:` line per request
    /// and reply, e.g. `auth failed rc=-2 user='alice'`).
    pub fn log(&self) -> String {
        read_lossy(&self.log_path)
    }

    /// The temp dir (pid file, runtime dir, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stop now and return the full log.
    pub fn stop(mut self) -> String {
        self.shutdown();
        self.log()
    }

    fn shutdown(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_group(&mut child, Duration::from_secs(5));
        }
    }
}

impl Drop for Kamailio {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl fmt::Debug for Kamailio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_peer(f, "Kamailio", self.port, ("config", &self.config), &self.dir)
    }
}

/// A peer process's `Debug`: `name { port, <what>, dir }`.
fn debug_peer(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    port: u16,
    what: (&str, &dyn fmt::Debug),
    dir: &TempDir,
) -> fmt::Result {
    f.debug_struct(name).field("port", &port).field(what.0, what.1).field("dir", &dir.path()).finish()
}

// ---------------------------------------------------------------------------
// SIPp
// ---------------------------------------------------------------------------

/// Options for [`Sipp::start_with`].
#[derive(Clone, Debug)]
pub struct SippOptions {
    /// SIPp's own global `-timeout` (with `-timeout_error`): the scenario
    /// fails (exit 255) if it is not finished by then. Default 30 s.
    pub timeout: Duration,
    /// Transport SIPp listens/sends on (`-t u1` / `-t t1`). Default UDP.
    pub transport: Transport,
    /// `None` (default): server mode (UAS, waits for a call). `Some(addr)`:
    /// client mode, the scenario sends to `addr` (`sipp ... 127.0.0.1:port`).
    pub remote: Option<SocketAddr>,
    /// Extra SIPp arguments, e.g. `["-s", "+14144007103", "-au", "u", "-ap", "p"]`.
    pub extra_args: Vec<String>,
}

impl Default for SippOptions {
    fn default() -> Self {
        SippOptions {
            timeout: Duration::from_secs(30),
            transport: Transport::Udp,
            remote: None,
            extra_args: Vec::new(),
        }
    }
}

/// A running SIPp scenario (one call, `-m 1`). Killed on drop.
pub struct Sipp {
    port: u16,
    scenario: PathBuf,
    child: Option<Child>,
    startup: Duration,
    dir: TempDir,
}

/// The brief's name for a SIPp answering peer: `SippUas::start(scenario, port)`.
pub type SippUas = Sipp;

/// Result of a SIPp run.
#[derive(Clone, Debug)]
pub struct SippOutcome {
    /// SIPp exited with 0: the scenario (all its checks) succeeded.
    pub success: bool,
    /// SIPp's exit code: 0 ok; 1 call failed (e.g. a `check_it` regexp did
    /// not match, unexpected message); 97 stopped by the scenario's
    /// fail-fast (`stop_now`, e.g. ACK/BYE that bypassed the trunk); 99 no
    /// call processed; 255 fatal error or SIPp's global `-timeout`.
    /// `None` if killed by a signal.
    pub exit_code: Option<i32>,
    /// The harness had to kill SIPp because [`Sipp::wait`]'s timeout expired.
    pub timed_out: bool,
    /// `-trace_msg` message trace (every SIP message sent and received).
    pub messages: String,
    /// `-trace_err` error file (failed checks, unexpected messages).
    pub errors: String,
    /// Summary for assertion messages: scenario, exit code, errors, trace.
    pub log: String,
}

impl Sipp {
    /// Start `scenario` (a file name under `tests/peers/sipp/`, or a path) as a
    /// UDP UAS on 127.0.0.1:`port` with default [`SippOptions`], and wait until
    /// the port is bound.
    pub fn start(scenario: &str, port: u16) -> io::Result<Sipp> {
        Sipp::start_with(scenario, port, SippOptions::default())
    }

    /// Start with explicit options (local port `port`; client mode when
    /// `opts.remote` is set).
    pub fn start_with(scenario: &str, port: u16, opts: SippOptions) -> io::Result<Sipp> {
        let bin = sipp_binary()?;
        let scenario_path =
            if scenario.contains('/') { PathBuf::from(scenario) } else { peers_dir().join("sipp").join(scenario) };
        if !scenario_path.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("SIPp scenario {} not found", scenario_path.display()),
            ));
        }
        let dir = TempDir::new("sipp")?;
        let secs = opts.timeout.as_secs().max(1);
        let mut cmd = Command::new(bin);
        cmd.arg("-sf")
            .arg(&scenario_path)
            .args(["-i", "127.0.0.1", "-bind_local"])
            .arg("-p")
            .arg(port.to_string())
            .arg("-mp")
            .arg(free_port_range(4, false).to_string())
            .args(["-t", opts.transport.sipp_mode()])
            .args(["-m", "1", "-nostdin"])
            .arg("-timeout")
            .arg(format!("{secs}s"))
            .arg("-timeout_error")
            .arg("-trace_msg")
            .arg("-message_file")
            .arg(dir.path().join("messages.log"))
            .arg("-trace_err")
            .arg("-error_file")
            .arg(dir.path().join("errors.log"))
            .args(&opts.extra_args);
        if let Some(remote) = opts.remote {
            cmd.arg(remote.to_string());
        }
        cmd.current_dir(dir.path())
            .stdout(File::create(dir.path().join("screen.log"))?)
            .stderr(File::create(dir.path().join("stderr.log"))?);
        let started = Instant::now();
        let child = spawn_in_group(&mut cmd)?;
        let mut sipp = Sipp { port, scenario: scenario_path, child: Some(child), startup: Duration::ZERO, dir };
        if opts.remote.is_none() {
            let tcp = opts.transport == Transport::Tcp;
            let deadline = started + STARTUP_TIMEOUT;
            while !port_in_use(port, tcp) {
                let exited = sipp.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                if exited.is_some() || Instant::now() > deadline {
                    let out = sipp.finish(Duration::ZERO);
                    return Err(io::Error::other(format!("sipp did not bind 127.0.0.1:{port}:\n{}", out.log)));
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
        sipp.startup = started.elapsed();
        Ok(sipp)
    }

    /// Local port (the UAS port to give to [`TrunkConfig::new`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Time from spawn until the port was bound.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// The temp dir (messages.log, errors.log, screen.log, stderr.log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Message trace so far.
    pub fn messages(&self) -> String {
        read_lossy(&self.dir.path().join("messages.log"))
    }

    /// Wait up to `timeout` for SIPp to finish (kill it after that) and
    /// collect the outcome.
    pub fn wait(mut self, timeout: Duration) -> SippOutcome {
        self.finish(timeout)
    }

    fn finish(&mut self, timeout: Duration) -> SippOutcome {
        let mut timed_out = false;
        let mut status = None;
        if let Some(mut child) = self.child.take() {
            let deadline = Instant::now() + timeout;
            loop {
                match child.try_wait() {
                    Ok(Some(s)) => {
                        status = Some(s);
                        break;
                    }
                    Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                    _ => {
                        timed_out = true;
                        status = stop_group(&mut child, Duration::from_secs(2));
                        break;
                    }
                }
            }
        }
        let exit_code = status.and_then(|s| s.code());
        let d = self.dir.path();
        let messages = read_lossy(&d.join("messages.log"));
        let errors = read_lossy(&d.join("errors.log"));
        let stderr = read_lossy(&d.join("stderr.log"));
        let screen = read_lossy(&d.join("screen.log"));
        let screen_tail: String = {
            let lines: Vec<&str> = screen.lines().collect();
            lines[lines.len().saturating_sub(40)..].join("\n")
        };
        let log = format!(
            "=== sipp {} (port {}): exit code {:?}{}\n\
             === errors ===\n{}\n=== stderr ===\n{}\n=== message trace ===\n{}\n=== screen (tail) ===\n{}\n",
            self.scenario.file_name().map(|f| f.to_string_lossy()).unwrap_or_default(),
            self.port,
            exit_code,
            if timed_out { " (killed by the harness: wait timeout)" } else { "" },
            errors.trim_end(),
            stderr.trim_end(),
            messages.trim_end(),
            screen_tail,
        );
        SippOutcome { success: exit_code == Some(0) && !timed_out, exit_code, timed_out, messages, errors, log }
    }
}

impl Drop for Sipp {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop_group(&mut child, Duration::from_secs(2));
        }
    }
}

impl fmt::Debug for Sipp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_peer(f, "Sipp", self.port, ("scenario", &self.scenario), &self.dir)
    }
}

impl SippOutcome {
    /// Panic with the full log unless the scenario succeeded.
    pub fn assert_success(&self) {
        assert!(self.success, "SIPp scenario failed:\n{}", self.log);
    }

    /// Every SIP message SIPp received, in order (from the trace).
    pub fn received(&self) -> Vec<String> {
        self.trace_entries(" message received")
    }

    /// Every SIP message SIPp sent, in order (from the trace).
    pub fn sent(&self) -> Vec<String> {
        self.trace_entries(" message sent")
    }

    /// First received request with this method (e.g. `"INVITE"`), if any.
    pub fn received_request(&self, method: &str) -> Option<String> {
        let prefix = format!("{method} ");
        self.received().into_iter().find(|m| m.starts_with(&prefix))
    }

    /// Value of header `name` in the first received `method` request, e.g.
    /// `request_header("INVITE", "X-Lk-Test-Id")`.
    pub fn request_header(&self, method: &str, name: &str) -> Option<String> {
        self.received_request(method).and_then(|m| header(&m, name))
    }

    fn trace_entries(&self, kind: &str) -> Vec<String> {
        // Entries look like:
        // ----------------------------------------------- <timestamp>
        // UDP message received [711] bytes :
        // <blank>
        // <SIP message with CRLF line ends>
        let mut out = Vec::new();
        let mut blocks = self.messages.split("\n----------------------------------------------- ");
        if let Some(first) = blocks.next() {
            // first block still starts with the dashes
            let first = first.trim_start_matches("----------------------------------------------- ");
            push_entry(first, kind, &mut out);
        }
        for b in blocks {
            push_entry(b, kind, &mut out);
        }
        out
    }
}

fn push_entry(block: &str, kind: &str, out: &mut Vec<String>) {
    let mut lines = block.splitn(3, '\n');
    let _timestamp = lines.next();
    let Some(what) = lines.next() else { return };
    if !what.contains(kind) {
        return;
    }
    let body = lines.next().unwrap_or("").trim_start_matches(['\n', '\r']);
    out.push(body.trim_end().to_string());
}

/// Value of the first header `name` (case-insensitive; compact forms are
/// not expanded) in a SIP message, trimmed.
pub fn header(message: &str, name: &str) -> Option<String> {
    for line in message.lines().skip(1) {
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            break;
        }
        match line.split_once(':') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case(name) => return Some(v.trim().to_string()),
            _ => {}
        }
    }
    None
}
