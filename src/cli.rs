//! The command line: parse flags, turn them into a call, run it (with the
//! LiveKit watcher alongside when LiveKit is configured), print and write the
//! results, and map the outcome to the exit code (0 pass, 1 the system under
//! test failed a check, 2 the tester could not run). `doctor` audits the
//! LiveKit SIP configuration (0 clean, 1 error-level finding, 2 no access).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::call::{CallObserver, CallSpec, Direction, LoggedMessage};
use crate::doctor::{self, AuditExpectations};
use crate::media::codec::AudioCodec;
use crate::media::session::{PlayPlan, PlayStart, RECORDING_RATE};
use crate::media::wav;
use crate::observe::livekit::{self as lk, LiveKitConfig, LiveKitOverrides, ServerApi};
use crate::report::{self, Report};
use crate::run::{self, CallPlan, SuiteOptions};
use crate::secret::Secret;
use crate::sip::caller::{Credentials, Transport};
use crate::sip::transaction::TimerConfig;
use crate::verdict::checks::{AgentExpectation, Expectations, MediaExpectations};

#[derive(Debug, Parser)]
#[command(
    name = "callprobe",
    version,
    about = "Places real test calls into voice AI agents behind LiveKit SIP and says why a call failed."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

// Parsed once per process: the size difference between the variants does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Place one call and check how the endpoint answers (407 → 200 …).
    Call(CallArgs),
    /// Audit the LiveKit SIP configuration (inbound trunks, dispatch rules); read-only.
    Doctor(DoctorArgs),
    /// Validate scenario files (a file or a directory of *.toml) without calling anyone.
    Check(CheckArgs),
    /// Run scenario files: every case is a call; reports land in a timestamped run folder.
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A scenario file or a directory of them.
    pub path: PathBuf,
    /// Only cases with one of these tags (repeatable; `!tag` excludes).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Calls at once.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,
    /// Run every case this many times.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub repeat: u16,
    /// Base folder for run folders (`<base>/<UTC time>/`, and `<base>/latest`).
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub report_dir: PathBuf,
    /// Start no new call after the first failure.
    #[arg(long)]
    pub fail_fast: bool,
    /// On failure, POST a short JSON summary (Slack-compatible `text`) here.
    #[arg(long, value_name = "URL")]
    pub notify_webhook: Option<String>,
    /// Write Prometheus textfile-collector metrics here.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// Print each call's verdict block as it finishes.
    #[arg(short, long)]
    pub verbose: bool,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// A scenario file or a directory of them.
    pub path: PathBuf,
}

/// Where the LiveKit server API is; each flag overrides the LIVEKIT_* variable.
#[derive(Debug, Clone, Default, Args)]
pub struct LiveKitArgs {
    /// LiveKit server URL [default: $LIVEKIT_URL], e.g. wss://project.livekit.cloud.
    #[arg(long, value_name = "URL")]
    pub livekit_url: Option<String>,
    /// LiveKit API key [default: $LIVEKIT_API_KEY].
    #[arg(long, value_name = "KEY")]
    pub livekit_api_key: Option<String>,
    /// Environment variable holding the LiveKit API secret [default: LIVEKIT_API_SECRET].
    #[arg(long, value_name = "VAR", conflicts_with = "livekit_api_secret_file")]
    pub livekit_api_secret_env: Option<String>,
    /// File holding the LiveKit API secret.
    #[arg(long, value_name = "FILE")]
    pub livekit_api_secret_file: Option<PathBuf>,
}

impl LiveKitArgs {
    pub fn overrides(&self) -> LiveKitOverrides {
        LiveKitOverrides {
            url: self.livekit_url.clone(),
            api_key: self.livekit_api_key.clone(),
            api_secret_env: self.livekit_api_secret_env.clone(),
            api_secret_file: self.livekit_api_secret_file.clone(),
        }
    }
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// The agent_name every dispatch rule should dispatch.
    #[arg(long, value_name = "NAME")]
    pub agent: Option<String>,
    /// A number that must reach a trunk and a dispatch rule, e.g. +14144007103 (repeatable).
    #[arg(long = "number", value_name = "NUMBER")]
    pub numbers: Vec<String>,
    /// Print JSON instead of tables.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub livekit: LiveKitArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TransportArg {
    Udp,
    Tcp,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// Who to call, e.g. sip:+14144007103@127.0.0.1:5060 (";transport=tcp" also selects TCP).
    pub target: String,
    /// Caller: a SIP URI or a number/user (becomes sip:<it>@<our address>).
    #[arg(long, default_value = "callprobe")]
    pub from: String,
    /// SIP transport; default UDP, or the target URI's transport parameter.
    #[arg(long, value_enum)]
    pub transport: Option<TransportArg>,
    /// Digest user name for the trunk.
    #[arg(long)]
    pub auth_user: Option<String>,
    /// Environment variable holding the digest password.
    #[arg(long, value_name = "VAR", conflicts_with = "auth_password_file")]
    pub auth_password_env: Option<String>,
    /// File holding the digest password.
    #[arg(long, value_name = "FILE")]
    pub auth_password_file: Option<PathBuf>,
    /// Exact sequence of final responses to expect, e.g. 407,200. Default: the call is answered (2xx).
    #[arg(long, value_name = "CODES")]
    pub expect: Option<String>,
    /// How long to stay connected before hanging up.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub hangup_after: Duration,
    /// How long each INVITE may wait for a final response (Timer B; after ringing, we CANCEL).
    #[arg(long, default_value = "32s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Extra header for the INVITE, e.g. 'X-Name: value' (repeatable).
    #[arg(long = "header", value_name = "'NAME: VALUE'")]
    pub headers: Vec<String>,
    /// Require a LiveKit agent (of this lk.agent_name, or any) in the call's room;
    /// write --expect-agent=NAME or put it after the target.
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "")]
    pub expect_agent: Option<String>,
    /// Deadline for --expect-agent, counted from the INVITE that got through.
    #[arg(long, default_value = "5s", value_parser = parse_duration, requires = "expect_agent")]
    pub agent_within: Duration,
    #[command(flatten)]
    pub livekit: LiveKitArgs,
    #[command(flatten)]
    pub media: MediaArgs,
    /// Write report.json (and the recordings, call.pcap) here.
    #[arg(long, value_name = "DIR")]
    pub report_dir: Option<PathBuf>,
    /// Print every SIP message (-v: first lines, -vv: whole messages).
    #[arg(short, long, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// A problem with the tester's own input or environment (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Runs the CLI; returns the process exit code.
pub fn main() -> i32 {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    init_tracing();
    match cli.command {
        Command::Call(args) => run_call(args),
        Command::Doctor(args) => run_doctor(args),
        Command::Check(args) => run_check(&args),
        Command::Run(args) => run_suite(&args),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CALLPROBE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn run_call(args: CallArgs) -> i32 {
    let (spec, expect) = match call_spec(&args) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("callprobe: {e}");
            return 2;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("callprobe: cannot start the async runtime: {e}");
            return 2;
        }
    };
    let plan = CallPlan { name: None, tags: Vec::new(), spec, expect, livekit: args.livekit.clone() };
    let mut printer = MessagePrinter { verbosity: args.verbose };
    let call_report = match runtime.block_on(run::execute(&plan, &mut printer, args.report_dir.as_deref())) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("callprobe: {e}");
            return 2;
        }
    };
    print!("{}", report::verdict_block(&call_report));
    let report = Report::new(vec![call_report]);
    if let Some(dir) = &args.report_dir {
        match report.write_json(dir) {
            Ok(path) => println!("report   {}", path.display()),
            Err(e) => {
                eprintln!("callprobe: {e}");
                return 2;
            }
        }
    }
    report.verdict.exit_code()
}

fn run_doctor(args: DoctorArgs) -> i32 {
    let config = match LiveKitConfig::from_env(&args.livekit.overrides()) {
        Ok(Some(c)) => c,
        Ok(None) => {
            eprintln!(
                "callprobe doctor: LiveKit is not configured: {} is not set (set {}, {}, {} or use the --livekit-* flags)",
                lk::URL_VAR,
                lk::URL_VAR,
                lk::API_KEY_VAR,
                lk::API_SECRET_VAR
            );
            return 2;
        }
        Err(e) => {
            eprintln!("callprobe doctor: {e}");
            return 2;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("callprobe doctor: cannot start the async runtime: {e}");
            return 2;
        }
    };
    let expect = AuditExpectations { agent: args.agent.clone(), numbers: args.numbers.clone() };
    let report = match runtime.block_on(doctor::run(&ServerApi::new(&config), &expect)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("callprobe doctor: cannot read the SIP configuration: {e}");
            return 2;
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("callprobe doctor: cannot serialise the report: {e}");
                return 2;
            }
        }
    } else {
        print!("{}", report.table());
    }
    report.exit_code()
}

struct MessagePrinter {
    verbosity: u8,
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
        println!("{:>9.1} ms {arrow} {:<21} {}", m.t_ms, m.peer, m.first_line);
        if self.verbosity > 1 {
            for l in m.raw.lines() {
                println!("             | {l}");
            }
        }
    }
}

/// Resolves flags into a call: secrets from env/file, parsed expectations and headers.
pub fn call_spec(args: &CallArgs) -> Result<(CallSpec, Expectations), UsageError> {
    let target_uri = target_uri(&args.target).map_err(|e| UsageError(format!("bad target: {e}")))?;
    let parsed = crate::sip::message::uri_target(&target_uri).map_err(|e| UsageError(format!("bad target: {e}")))?;
    let transport = match (args.transport, parsed.transport.as_deref()) {
        (Some(TransportArg::Udp), _) => Transport::Udp,
        (Some(TransportArg::Tcp), _) => Transport::Tcp,
        (None, Some("tcp")) => Transport::Tcp,
        (None, Some("udp") | None) => Transport::Udp,
        (None, Some(other)) => {
            return Err(UsageError(format!("transport {other} in the target URI is not supported (udp, tcp)")))
        }
    };
    let password = match (&args.auth_password_env, &args.auth_password_file) {
        (Some(var), _) => Some(Secret::from_env(var).map_err(|e| UsageError(format!("--auth-password-env: {e}")))?),
        (None, Some(path)) => {
            Some(Secret::from_file(path).map_err(|e| UsageError(format!("--auth-password-file: {e}")))?)
        }
        (None, None) => None,
    };
    let credentials = match (&args.auth_user, password) {
        (Some(username), Some(password)) => Some(Credentials { username: username.clone(), password }),
        (None, None) => None,
        (Some(_), None) => {
            return Err(UsageError("--auth-user needs --auth-password-env VAR or --auth-password-file FILE".into()))
        }
        (None, Some(_)) => return Err(UsageError("a password was given without --auth-user".into())),
    };
    if args.agent_within.is_zero() {
        return Err(UsageError("--agent-within must be more than zero".into()));
    }
    let agent = args.expect_agent.as_ref().map(|name| AgentExpectation {
        name: Some(name.trim().to_string()).filter(|n| !n.is_empty()),
        within: args.agent_within,
    });
    let (codecs, play, media_expect) = media_spec(&args.media)?;
    let expect = Expectations {
        final_responses: args.expect.as_deref().map(parse_expect).transpose()?,
        any_final_response: false,
        agent,
        media: media_expect,
        diagnosis: None,
    };
    let headers = args.headers.iter().map(|h| parse_header(h)).collect::<Result<Vec<_>, _>>()?;
    let from_uri = if args.from.to_ascii_lowercase().starts_with("sip:") {
        crate::sip::message::uri_target(&args.from).map_err(|e| UsageError(format!("bad --from: {e}")))?;
        args.from.clone()
    } else {
        args.from.clone()
    };
    let (test_id, call_id) = CallSpec::new_ids();
    if args.timeout.is_zero() {
        return Err(UsageError("--timeout must be more than zero".into()));
    }
    Ok((
        CallSpec {
            target_uri,
            from_uri,
            transport,
            credentials,
            headers,
            invite_timeout: args.timeout,
            hangup_after: args.hangup_after,
            timers: TimerConfig::default(),
            test_id,
            call_id,
            codecs,
            play,
        },
        expect,
    ))
}

const TARGET_EXAMPLE: &str = "write sip:NUMBER@HOST[:PORT], e.g. sip:+14144007103@sip.example.com";

/// The call's target as a SIP URI (`sip:` is added to `user@host`), or what
/// is wrong with it in the user's terms: a web URL, `sip:` without a host, a
/// port out of range, a bare phone number.
pub fn target_uri(text: &str) -> Result<String, String> {
    let text = text.trim();
    let (has_scheme, rest) = match text.split_once(':') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("sip") => (true, rest),
        Some((scheme, _)) if scheme.eq_ignore_ascii_case("sips") => {
            return Err(format!(
                "'{text}' is a sips: URI: SIP over TLS is not supported; use a sip: URI (with ;transport=tcp for TCP)"
            ))
        }
        Some((scheme, rest)) if looks_like_scheme(scheme, rest) => {
            return Err(format!("'{text}' is not a SIP URI: only sip: URIs are supported; {TARGET_EXAMPLE}"))
        }
        _ => (false, text),
    };
    let address = rest.split([';', '?']).next().unwrap_or(rest);
    let (user, host_port) = match address.rsplit_once('@') {
        Some((user, host_port)) => (Some(user), host_port),
        None => (None, address),
    };
    let (host, port) = match host_port.strip_prefix('[') {
        // [IPv6]:port
        Some(v6) => match v6.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => (host_port, None),
        },
        None => match host_port.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (host_port, None),
        },
    };
    if host.is_empty() {
        return Err(format!("'{text}' names no host: {TARGET_EXAMPLE}"));
    }
    if let Some(port) = port {
        match port.parse::<u32>() {
            Ok(1..=65535) => {}
            Ok(_) => return Err(format!("'{text}' has port {port}: a port must be 1-65535")),
            Err(_) => return Err(format!("'{text}' has port '{port}': a port must be a number, 1-65535")),
        }
    }
    let phone_number = host.starts_with(|c: char| c == '+' || c.is_ascii_digit())
        && host.chars().all(|c| c.is_ascii_digit() || "+-".contains(c));
    if user.is_none() && phone_number {
        return Err(format!(
            "'{text}' is a phone number, not a SIP URI: write sip:{host}@HOST, where HOST is the SIP endpoint (e.g. PROJECT.sip.livekit.cloud)"
        ));
    }
    let uri = if has_scheme { text.to_string() } else { format!("sip:{text}") };
    match crate::sip::message::uri_target(&uri) {
        Ok(_) => Ok(uri),
        Err(e) => {
            let detail = match e {
                crate::sip::message::ParseError::Syntax(detail) => detail,
                other => other.to_string(),
            };
            Err(format!("'{text}' is not a valid SIP URI ({detail}); {TARGET_EXAMPLE}"))
        }
    }
}

/// Whether `scheme:rest` starts with a URI scheme other than a host name
/// followed by a port (`example.com:5060`, `localhost:5070`).
fn looks_like_scheme(scheme: &str, rest: &str) -> bool {
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        && (rest.starts_with("//") || !rest.starts_with(|c: char| c.is_ascii_digit()))
}

/// `407,200` → [407, 200].
pub fn parse_expect(text: &str) -> Result<Vec<u16>, UsageError> {
    text.split(',')
        .map(|s| {
            let s = s.trim();
            match s.parse::<u16>() {
                Ok(code) if (200..700).contains(&code) => Ok(code),
                Ok(code) => Err(UsageError(format!(
                    "--expect lists final responses (200-699); {code} is not one (provisional responses are recorded, not expected)"
                ))),
                Err(_) => Err(UsageError(format!("--expect: '{s}' is not a status code (example: --expect 407,200)"))),
            }
        })
        .collect()
}

/// `'X-Name: value'` → ("X-Name", "value").
pub fn parse_header(text: &str) -> Result<(String, String), UsageError> {
    let (name, value) =
        text.split_once(':').ok_or_else(|| UsageError(format!("--header '{text}': expected 'Name: value'")))?;
    let name = name.trim();
    let token = |c: char| c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(UsageError(format!("--header '{text}': '{name}' is not a valid header name")));
    }
    if value.contains(['\r', '\n']) {
        return Err(UsageError(format!("--header '{name}': the value must be one line")));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expect_lists() {
        assert_eq!(parse_expect("407,200").unwrap(), vec![407, 200]);
        assert_eq!(parse_expect(" 404 ").unwrap(), vec![404]);
        assert!(parse_expect("180").is_err());
        assert!(parse_expect("abc").is_err());
    }

    #[test]
    fn targets_new_users_write() {
        assert_eq!(target_uri("sip:+1@127.0.0.1:5070").as_deref(), Ok("sip:+1@127.0.0.1:5070"));
        assert_eq!(target_uri("+1@example.com").as_deref(), Ok("sip:+1@example.com"));
        assert_eq!(target_uri("example.com:5060").as_deref(), Ok("sip:example.com:5060"));
        let err = |t: &str| target_uri(t).err().unwrap_or_default();
        assert!(err("sip:").starts_with("'sip:' names no host: write sip:NUMBER@HOST"), "{}", err("sip:"));
        assert!(err("sip:1@").contains("names no host"), "{}", err("sip:1@"));
        let web = err("http://example.com");
        assert!(web.starts_with("'http://example.com' is not a SIP URI: only sip: URIs"), "{web}");
        assert!(web.contains("sip:+14144007103@"), "{web}");
        assert!(err("tel:+14144007103").contains("is not a SIP URI"));
        assert_eq!(err("sip:1@127.0.0.1:99999"), "'sip:1@127.0.0.1:99999' has port 99999: a port must be 1-65535");
        assert!(err("sip:1@127.0.0.1:0").contains("a port must be 1-65535"));
        assert!(err("sip:1@h:x").contains("has port 'x': a port must be a number, 1-65535"));
        let number = err("+14144007103");
        assert!(number.starts_with("'+14144007103' is a phone number, not a SIP URI: write sip:+14144007103@HOST"));
        assert!(err("sip:14144007103").contains("write sip:14144007103@HOST"));
        assert!(err("sips:1@h").contains("not supported"));
    }

    #[test]
    fn headers() {
        assert_eq!(parse_header("X-Lk-Foo: bar baz").unwrap(), ("X-Lk-Foo".into(), "bar baz".into()));
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("Bad Name: x").is_err());
    }
}

/// Media flags of `call`: what to offer, what to say, what to expect to hear.
#[derive(Debug, Args)]
pub struct MediaArgs {
    /// Codecs to offer, in order (g722, pcmu, pcma); telephone-event is always offered.
    #[arg(long, value_delimiter = ',', default_value = "g722,pcmu,pcma")]
    pub codecs: Vec<String>,
    /// WAV file to say to the far end once connected (any rate, bit depth, channels).
    #[arg(long, value_name = "WAV")]
    pub play: Option<PathBuf>,
    /// Start playing this long after the call connects.
    #[arg(long, value_parser = parse_duration, default_value = "1s", conflicts_with = "play_after_greeting")]
    pub play_after: Duration,
    /// Start playing when the far end's greeting has ended (speech detection).
    #[arg(long, requires = "play")]
    pub play_after_greeting: bool,
    /// The far end must start speaking within this time of the 200 OK.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub expect_speech_within: Option<Duration>,
    /// The far end must answer our played utterance within this time of its end.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", requires = "play")]
    pub expect_response_within: Option<Duration>,
    /// The far end must play a tone of this frequency (Hz) for at least half a second.
    #[arg(long, value_name = "HZ")]
    pub expect_tone: Option<f64>,
    /// Most RTP loss from the far end allowed, in percent of expected packets.
    #[arg(long, value_name = "PERCENT")]
    pub max_loss_percent: Option<f64>,
    /// Most RFC 3550 interarrival jitter from the far end allowed, in ms.
    #[arg(long, value_name = "MS")]
    pub max_jitter_ms: Option<f64>,
}

fn media_spec(args: &MediaArgs) -> Result<(Vec<AudioCodec>, Option<PlayPlan>, MediaExpectations), UsageError> {
    let mut codecs = Vec::new();
    for name in &args.codecs {
        let codec = match name.trim().to_ascii_lowercase().as_str() {
            "g722" => AudioCodec::G722,
            "pcmu" | "ulaw" => AudioCodec::Pcmu,
            "pcma" | "alaw" => AudioCodec::Pcma,
            other => return Err(UsageError(format!("--codecs: unknown codec '{other}' (g722, pcmu, pcma)"))),
        };
        if !codecs.contains(&codec) {
            codecs.push(codec);
        }
    }
    if codecs.is_empty() {
        return Err(UsageError("--codecs needs at least one codec".into()));
    }
    let play = match &args.play {
        None => None,
        Some(path) => {
            let pcm_16k = wav::load_mono(path, RECORDING_RATE)
                .map_err(|e| UsageError(format!("--play {}: {e}", path.display())))?;
            let start = if args.play_after_greeting {
                PlayStart::AfterGreeting
            } else {
                PlayStart::AfterConnect(args.play_after)
            };
            Some(PlayPlan { pcm_16k, start })
        }
    };
    if let Some(hz) = args.expect_tone {
        if !(50.0..=7000.0).contains(&hz) {
            return Err(UsageError(format!("--expect-tone {hz}: use a frequency between 50 and 7000 Hz")));
        }
    }
    let expect = MediaExpectations {
        speech_within: args.expect_speech_within,
        response_within: args.expect_response_within,
        tone_hz: args.expect_tone,
        max_loss_percent: args.max_loss_percent,
        max_jitter_ms: args.max_jitter_ms,
    };
    Ok((codecs, play, expect))
}

/// `callprobe check PATH`: every problem as `file:line:col: message`; exit 2 when any.
fn run_check(args: &CheckArgs) -> i32 {
    let (files, cases, errors) = crate::scenario::check_path(&args.path);
    for e in &errors {
        println!("{e}");
    }
    println!(
        "checked {files} file{}, {cases} case{}: {}",
        if files == 1 { "" } else { "s" },
        if cases == 1 { "" } else { "s" },
        if errors.is_empty() { "ok".to_string() } else { format!("{} error(s)", errors.len()) }
    );
    if errors.is_empty() && files > 0 {
        0
    } else {
        if files == 0 && errors.is_empty() {
            println!("no scenario files (*.toml) in {}", args.path.display());
        }
        2
    }
}

/// `callprobe run PATH`: the scenario suite, its summary, and the run folder.
fn run_suite(args: &RunArgs) -> i32 {
    let files = match crate::scenario::load_path(&args.path) {
        Ok(f) => f,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!("callprobe: {} error(s) in the scenario files; nothing was called", errors.len());
            return 2;
        }
    };
    let mut plans = Vec::new();
    let mut problems = Vec::new();
    for case in crate::scenario::cases(&files).filter(|c| crate::scenario::matches_tags(c, &args.tags)) {
        match case.call_spec() {
            Ok((spec, mut expect)) => {
                expect.any_final_response = case.any_final_response;
                expect.diagnosis = case.expect_diagnosis.clone();
                plans.push(CallPlan {
                    name: Some(case.name.clone()),
                    tags: case.tags.clone(),
                    spec,
                    expect,
                    livekit: case.call.livekit.clone(),
                });
            }
            Err(e) => problems.push(e.to_string()),
        }
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{p}");
        }
        eprintln!("callprobe: {} case(s) cannot run; nothing was called", problems.len());
        return 2;
    }
    if plans.is_empty() {
        eprintln!("callprobe: no case in {} matches the tags {:?}", args.path.display(), args.tags);
        return 2;
    }
    let suite_name = args.path.file_stem().map_or("callprobe".into(), |s| s.to_string_lossy().into_owned());
    let options = SuiteOptions {
        parallel: usize::from(args.parallel),
        repeat: usize::from(args.repeat),
        fail_fast: args.fail_fast,
        report_base: args.report_dir.clone(),
        suite_name,
        notify_webhook: args.notify_webhook.clone(),
        metrics_file: args.metrics_file.clone(),
        verbose: args.verbose,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("callprobe: cannot start the async runtime: {e}");
            return 2;
        }
    };
    println!("running {} call(s) from {}", plans.len() * options.repeat, args.path.display());
    let outcome = match runtime.block_on(run::run_suite(plans, &options)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("callprobe: {e}");
            return 2;
        }
    };
    print!("{}", run::summary_table(&outcome.report));
    let passed = outcome.report.calls.iter().filter(|c| c.verdict == crate::verdict::Verdict::Pass).count();
    println!(
        "{passed} of {} call(s) passed{}{}",
        outcome.report.calls.len(),
        match (outcome.skipped, outcome.interrupted) {
            (0, _) => String::new(),
            (n, true) => format!(", {n} not run (interrupted)"),
            (n, false) => format!(", {n} not run (--fail-fast)"),
        },
        if outcome.errors.is_empty() { String::new() } else { format!(", {} could not run", outcome.errors.len()) }
    );
    for (name, e) in &outcome.errors {
        eprintln!("callprobe: {name}: {e}");
    }
    for p in &outcome.output_problems {
        eprintln!("callprobe: {p}");
    }
    println!("report   {}", outcome.run_dir.join("index.html").display());
    if outcome.interrupted {
        eprintln!("callprobe: interrupted; the run is incomplete");
        return 2;
    }
    if !outcome.output_problems.is_empty() && outcome.report.verdict == crate::verdict::Verdict::Pass {
        return 2;
    }
    if outcome.skipped > 0 && outcome.report.verdict == crate::verdict::Verdict::Pass {
        return 1;
    }
    outcome.report.verdict.exit_code()
}

/// A duration flag (`5s`, `1m30s`, `500ms`), at most a day: longer values are
/// typos, and would overflow the clock arithmetic.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d > Duration::from_secs(24 * 3600) {
        return Err(format!("{text} is longer than a day"));
    }
    Ok(d)
}
