//! The command line: parse flags, turn them into a call request (or load a
//! scenario suite), run it through [`crate::pipeline`] (or [`crate::suite`],
//! with Ctrl-C cancelling the calls' token), print the results, have the
//! outputs written, and map the outcome to the exit code (0 pass, 1 the system under
//! test failed a check, 2 the tester could not run). `doctor` audits the
//! LiveKit SIP configuration (0 clean, 1 error-level finding, 2 no access).
//! `merge` puts the run folders of `run --shard i/N` together (exit as `run`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::call::{Cancel, PreparedCall};
use crate::console::{self, MessagePrinter};
use crate::conversation::{self, Conversation, SaidExpectation, StepAction, StepRequest, Utterance, DTMF_KEYS};
use crate::exit::Exit;
use crate::livekit::doctor::{self, AuditExpectations};
use crate::livekit::{self as lk, LiveKitConfig, LiveKitOverrides, ServerApi};
use crate::media::codec::AudioCodec;
use crate::media::sdes::SrtpMode;
use crate::pipeline;
use crate::report::changes::PreviousRun;
use crate::report::outputs::{self, KeepArtifacts, KeepRule, SuiteOutputs};
use crate::report::webhook::NotifyOn;
use crate::report::{self, Report};
use crate::request::PlayStart;
use crate::request::{
    self, AgentExpectation, AuthRequest, CallRequest, Expectations, ExpectedAgent, FinalResponses, MediaExpectations,
    PlayRequest, PrepareError, SecretRef,
};
use crate::shard::Shard;
use crate::sip::Transport;
use crate::suite::{self, SuiteOptions, SuiteShard};
use crate::transcribe::{EngineChoice, Stt, SttSettings};

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
    /// Load: a scenario's calls at a rate or a ramp of concurrency levels; finds the knee.
    Load(LoadArgs),
    /// Merge the run folders of `run --shard i/N` into one run folder, as if one machine had run the suite.
    Merge(MergeArgs),
}

#[derive(Debug, Args)]
pub struct LoadArgs {
    /// A scenario file or a directory of them; the calls take the cases in turn.
    pub path: PathBuf,
    /// Only cases with one of these tags (repeatable; `!tag` excludes).
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Open loop: start this many calls per second, whatever the calls under way do.
    #[arg(long, value_name = "CPS", conflicts_with = "ramp", required_unless_present = "ramp")]
    pub cps: Option<f64>,
    /// Steps of concurrency levels, e.g. 1,2,4,8: each keeps that many calls up.
    #[arg(long, value_name = "LEVELS")]
    pub ramp: Option<String>,
    /// How long each step starts calls (with --cps: the run).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<FlagDuration>,
    /// How many calls each step starts (with --cps: the run).
    #[arg(long, value_name = "N")]
    pub calls: Option<usize>,
    /// With --ramp: new calls per second at most, so a step does not start as one burst.
    #[arg(long, value_name = "CPS", default_value_t = 10.0)]
    pub max_cps: f64,
    /// A rule whose crossing marks the knee (repeatable): METRIC.pNN>LIMIT
    /// (e.g. first_audio.p95>2s, loss.p99>1%) or success<PERCENT. Default:
    /// success<99%, answer.p95>3s, agent_join.p95>3s, first_audio.p95>3s, loss.p95>1%.
    #[arg(long = "knee", value_name = "RULE")]
    pub knee: Vec<String>,
    /// Give each call its own caller number, counting up from this one (e.g.
    /// +15550200000). LiveKit SIP challenges one caller number at a time.
    #[arg(long, value_name = "NUMBER")]
    pub caller_numbers: Option<String>,
    /// Which calls keep their recordings and capture: all, failed, or
    /// sample:N (the failed ones and N passed ones per step).
    #[arg(long, value_name = "RULE", default_value = "sample:3")]
    pub keep_artifacts: KeepRule,
    /// Base folder for run folders (`<base>/<UTC time>/`, and `<base>/latest`).
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub report_dir: PathBuf,
    #[command(flatten)]
    pub stt: SttArgs,
    /// Run shard i of N of the load (0-based), e.g. one per machine: rates,
    /// levels and call counts are divided by N; auto/N takes i from
    /// $JOB_COMPLETION_INDEX. Then `callprobe merge` the shards' folders.
    #[arg(long, value_name = "i/N")]
    pub shard: Option<Shard>,
    /// Append the TLS session secrets (SSLKEYLOGFILE format, for Wireshark)
    /// and SRTP master keys of every call to FILE. Holds secrets: only when asked for.
    #[arg(long, value_name = "FILE")]
    pub keylog: Option<PathBuf>,
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
    /// Try a call that failed a check again, up to N more times (at most 5); one
    /// that passes on a retry is reported as flaky (exit 0). Calls that could not
    /// run (tester errors) are not retried.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=i64::from(crate::retry::MAX_RETRIES)))]
    pub retries: u16,
    /// Base folder for run folders (`<base>/<UTC time>/`, and `<base>/latest`).
    #[arg(long, value_name = "DIR", default_value = "reports")]
    pub report_dir: PathBuf,
    /// Start no new call after the first failure.
    #[arg(long)]
    pub fail_fast: bool,
    /// POST a short JSON summary (Slack-compatible `text` and `blocks`) here; when: --notify-on.
    #[arg(long, value_name = "URL")]
    pub notify_webhook: Option<String>,
    /// When to call --notify-webhook: fail (the run did not pass), change (a call's
    /// state changed since the previous run in --report-dir), or always.
    #[arg(long, value_name = "WHEN", default_value = "fail", requires = "notify_webhook")]
    pub notify_on: NotifyOn,
    /// Write Prometheus textfile-collector metrics here.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
    /// Which calls keep their recordings and capture: all, failed, or
    /// sample:N (the failed ones and N that passed).
    #[arg(long, value_name = "RULE", default_value = "all")]
    pub keep_artifacts: KeepRule,
    /// Print each call's verdict block as it finishes.
    #[arg(short, long)]
    pub verbose: bool,
    #[command(flatten)]
    pub stt: SttArgs,
    /// Runs the history keeps (history.sqlite and index.html in --report-dir).
    #[arg(long, value_name = "N", default_value_t = crate::history::DEFAULT_KEEP_RUNS)]
    pub history_keep: usize,
    /// Age beyond which the history forgets a run, e.g. 90d.
    #[arg(long, value_name = "AGE", default_value = "90d", value_parser = humantime::parse_duration)]
    pub history_max_age: std::time::Duration,
    /// Run only shard i of N of the calls (0-based: 0/3, 1/3, 2/3), e.g. one per machine;
    /// auto/N takes i from $JOB_COMPLETION_INDEX (Kubernetes Indexed Jobs). Then `callprobe merge`.
    #[arg(long, value_name = "i/N")]
    pub shard: Option<Shard>,
    /// Append the TLS session secrets (SSLKEYLOGFILE format, for Wireshark)
    /// and SRTP master keys of every call to FILE. Holds secrets: only when asked for.
    #[arg(long, value_name = "FILE")]
    pub keylog: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// The shards' run folders (or each shard's --report-dir: its `latest` run folder is taken).
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Write the merged run folder exactly here (a new or empty folder).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Base folder for the merged run folder (`<base>/<UTC time>/`, and `<base>/latest`), as `run` writes; not with --out.
    #[arg(long, value_name = "DIR", default_value = "reports", conflicts_with = "out")]
    pub report_dir: PathBuf,
    /// The JUnit test suite's name [default: the suite's name the shards recorded].
    #[arg(long, value_name = "NAME")]
    pub junit_name: Option<String>,
    /// POST a short JSON summary (Slack-compatible `text` and `blocks`) here; when: --notify-on.
    #[arg(long, value_name = "URL")]
    pub notify_webhook: Option<String>,
    /// When to call --notify-webhook: fail (the run did not pass), change (a call's
    /// state changed since the previous run in --report-dir; not with --out), or always.
    #[arg(long, value_name = "WHEN", default_value = "fail", requires = "notify_webhook")]
    pub notify_on: NotifyOn,
    /// Write Prometheus textfile-collector metrics of the whole run here.
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,
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

/// Speech-to-text for the far end's turns; each flag overrides its
/// CALLPROBE_STT* variable.
#[derive(Debug, Clone, Default, Args)]
pub struct SttArgs {
    /// Engine: auto (Whisper when its model is installed), whisper, http or off [default: $CALLPROBE_STT or auto].
    #[arg(long, value_name = "ENGINE")]
    pub stt: Option<String>,
    /// Whisper model directory [default: $CALLPROBE_STT_MODEL, else ~/.cache/callprobe/models/whisper-tiny.en].
    #[arg(long, value_name = "DIR")]
    pub stt_model: Option<PathBuf>,
    /// Base URL of an OpenAI-compatible transcription server, for --stt http [default: $CALLPROBE_STT_URL].
    #[arg(long, value_name = "URL")]
    pub stt_url: Option<String>,
    /// File holding that server's API key [default: $CALLPROBE_STT_API_KEY_FILE, or the key in $CALLPROBE_STT_API_KEY].
    #[arg(long, value_name = "FILE")]
    pub stt_api_key_file: Option<PathBuf>,
}

impl SttArgs {
    /// The engine these flags and the environment ask for, loaded.
    pub fn open(&self, needs_text: bool) -> Result<Stt, UsageError> {
        let mut settings = SttSettings::from_env().map_err(UsageError)?;
        if let Some(engine) = &self.stt {
            settings.choice = EngineChoice::parse(engine).map_err(|e| UsageError(format!("--stt: {e}")))?;
        }
        if let Some(dir) = &self.stt_model {
            settings.model_dir = Some(dir.clone());
        }
        if let Some(url) = &self.stt_url {
            settings.url = Some(url.clone());
        }
        if let Some(file) = &self.stt_api_key_file {
            settings.api_key = Some(SecretRef::File(file.clone()));
        }
        if settings.url.is_some() && settings.choice == EngineChoice::Auto {
            settings.choice = EngineChoice::Http;
        }
        let stt = Stt::open(&settings).map_err(|e| UsageError(e.to_string()))?;
        if needs_text && stt.engine().is_none() {
            return Err(UsageError(format!(
                "the conversation expects words (expect_said/expect_any/expect_like), but {}",
                stt.why_none()
            )));
        }
        Ok(stt)
    }
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
    Tls,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// Who to call, e.g. sip:+14144007103@127.0.0.1:5060 (";transport=tcp" also selects TCP;
    /// a sips: URI or ";transport=tls" selects TLS, default port 5061).
    pub target: String,
    /// Caller: a SIP URI or a number/user (becomes sip:<it>@<our address>).
    #[arg(long, default_value = request::DEFAULT_FROM)]
    pub from: String,
    /// SIP transport; default UDP, or the target URI's transport parameter (TLS for sips:).
    #[arg(long, value_enum)]
    pub transport: Option<TransportArg>,
    /// TLS: trust only the CA certificates in this PEM file (a private CA)
    /// instead of the system's roots.
    #[arg(long, value_name = "FILE", conflicts_with = "tls_insecure")]
    pub tls_ca: Option<PathBuf>,
    /// TLS: do NOT verify the server's certificate (reported as "certificate NOT verified").
    #[arg(long)]
    pub tls_insecure: bool,
    /// Append the TLS session secrets (SSLKEYLOGFILE format, for Wireshark)
    /// and the SRTP master keys to FILE. Holds secrets: only when asked for.
    #[arg(long, value_name = "FILE")]
    pub keylog: Option<PathBuf>,
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
    /// How long to stay connected before hanging up [default: 5s]. With
    /// --say/--dtmf/--expect-said the call hangs up after the last step, and
    /// this is only a cap [default: 2m].
    #[arg(long, value_parser = parse_duration)]
    pub hangup_after: Option<FlagDuration>,
    /// How long each INVITE may wait for a final response (Timer B; after ringing, we CANCEL).
    #[arg(long, default_value_t = request::DEFAULT_INVITE_TIMEOUT.into(), value_parser = parse_duration)]
    pub timeout: FlagDuration,
    /// Extra header for the INVITE, e.g. 'X-Name: value' (repeatable).
    #[arg(long = "header", value_name = "'NAME: VALUE'")]
    pub headers: Vec<String>,
    /// Require a LiveKit agent (of this lk.agent_name, or any) in the call's room;
    /// write --expect-agent=NAME or put it after the target.
    #[arg(long, value_name = "NAME", num_args = 0..=1, default_missing_value = "")]
    pub expect_agent: Option<String>,
    /// Deadline for --expect-agent, counted from the INVITE that got through.
    #[arg(long, default_value_t = request::DEFAULT_AGENT_WITHIN.into(), value_parser = parse_duration, requires = "expect_agent")]
    pub agent_within: FlagDuration,
    #[command(flatten)]
    pub livekit: LiveKitArgs,
    #[command(flatten)]
    pub stt: SttArgs,
    #[command(flatten)]
    pub media: MediaArgs,
    #[command(flatten)]
    pub conversation: ConversationArgs,
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

/// Runs the CLI; says how the run ended.
pub fn main() -> Exit {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { Exit::TesterError } else { Exit::Passed };
        }
    };
    init_tracing();
    if let Command::Check(args) = &cli.command {
        return run_check(args);
    }
    let runtime = match async_runtime() {
        Ok(r) => r,
        Err(e) => {
            console::error(format!("cannot start the async runtime: {e}"));
            return Exit::TesterError;
        }
    };
    match cli.command {
        Command::Call(args) => run_call(&runtime, args),
        Command::Doctor(args) => run_doctor(&runtime, args),
        Command::Check(args) => run_check(&args),
        Command::Run(args) => run_suite(&runtime, &args),
        Command::Load(args) => run_load(&runtime, &args),
        Command::Merge(args) => run_merge(&runtime, &args),
    }
}

/// The one tokio runtime of the process (two workers: suites run calls in
/// parallel).
fn async_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()
}

/// A token cancelled when the user presses Ctrl-C: the calls hang up.
fn cancel_on_ctrl_c(runtime: &tokio::runtime::Runtime) -> Cancel {
    let cancel = Cancel::new();
    let on_signal = cancel.clone();
    runtime.spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    cancel
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("CALLPROBE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

fn run_call(runtime: &tokio::runtime::Runtime, args: CallArgs) -> Exit {
    let prepared = call_request(&args).and_then(|request| Ok((prepare(&request)?, request)));
    let (spec, request) = match prepared {
        Ok(v) => v,
        Err(e) => {
            console::error(e);
            return Exit::TesterError;
        }
    };
    let stt = match args.stt.open(request.conversation.expects_words()) {
        Ok(stt) => stt,
        Err(e) => {
            console::error(e);
            return Exit::TesterError;
        }
    };
    let mut printer = MessagePrinter { verbosity: args.verbose };
    let cancel = cancel_on_ctrl_c(runtime);
    let keep = KeepArtifacts::all();
    let files = args.report_dir.as_deref().map(|dir| pipeline::CallFiles { dir, keep: &keep });
    let call = pipeline::execute(&request, &spec, &mut printer, files, &cancel, &stt);
    let call_report = match runtime.block_on(call) {
        Ok(r) => r,
        Err(e) => {
            console::error(e);
            return Exit::TesterError;
        }
    };
    print!("{}", report::verdict_block(&call_report));
    let report = Report::new(vec![call_report]);
    if let Some(dir) = &args.report_dir {
        match report.write_json(dir) {
            Ok(path) => println!("report   {}", path.display()),
            Err(e) => {
                console::error(e);
                return Exit::TesterError;
            }
        }
    }
    Exit::from(report.verdict)
}

fn run_doctor(runtime: &tokio::runtime::Runtime, args: DoctorArgs) -> Exit {
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
            return Exit::TesterError;
        }
        Err(e) => {
            eprintln!("callprobe doctor: {e}");
            return Exit::TesterError;
        }
    };
    let expect = AuditExpectations { agent: args.agent.clone(), numbers: args.numbers.clone() };
    let report = match runtime.block_on(doctor::run(&ServerApi::new(&config), &expect)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("callprobe doctor: cannot read the SIP configuration: {e}");
            return Exit::TesterError;
        }
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => println!("{json}"),
            Err(e) => {
                eprintln!("callprobe doctor: cannot serialise the report: {e}");
                return Exit::TesterError;
            }
        }
    } else {
        print!("{}", report.table());
    }
    report.exit()
}

/// The call `callprobe call` asks for, from its flags; what only reading
/// files shows comes from [`prepare`].
pub fn call_request(args: &CallArgs) -> Result<CallRequest, UsageError> {
    let target_uri = request::target_uri(&args.target).map_err(|e| UsageError(format!("bad target: {e}")))?;
    let transport = args.transport.map(|t| match t {
        TransportArg::Udp => Transport::Udp,
        TransportArg::Tcp => Transport::Tcp,
        TransportArg::Tls => Transport::Tls,
    });
    // A target's unusable ;transport= is reported before the other flags.
    request::transport_for(transport, &target_uri).map_err(|e| UsageError(e.to_string()))?;
    let password = match (&args.auth_password_env, &args.auth_password_file) {
        (Some(var), _) => Some(SecretRef::Env(var.clone())),
        (None, Some(path)) => Some(SecretRef::File(path.clone())),
        (None, None) => None,
    };
    let auth = match (&args.auth_user, password) {
        (Some(user), Some(password)) => Some(AuthRequest { user: user.clone(), password }),
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
        agent: match name.trim() {
            "" => ExpectedAgent::Any,
            name => ExpectedAgent::Named(name.to_string()),
        },
        within: *args.agent_within,
    });
    let (codecs, play, media) = media_request(&args.media)?;
    let conversation = conversation_request(&args.conversation)?;
    let hangup_after = match args.hangup_after {
        Some(d) => *d,
        None if !conversation.steps.is_empty() => request::CONVERSATION_HANGUP_CAP,
        None => request::DEFAULT_HANGUP_AFTER,
    };
    let final_responses = match args.expect.as_deref() {
        Some(codes) => FinalResponses::Exactly(parse_expect(codes)?),
        None => FinalResponses::Answered,
    };
    let headers = args
        .headers
        .iter()
        .map(|h| request::parse_header(h).map_err(|e| UsageError(format!("--header {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    if args.from.to_ascii_lowercase().starts_with("sip:") {
        crate::sip::message::uri_target(&args.from).map_err(|e| UsageError(format!("bad --from: {e}")))?;
    }
    if args.timeout.is_zero() {
        return Err(UsageError("--timeout must be more than zero".into()));
    }
    let keylog = args.keylog.as_deref().map(open_keylog).transpose()?;
    Ok(CallRequest {
        name: None,
        scenario: None,
        tags: Vec::new(),
        target_uri,
        from: args.from.clone(),
        transport,
        tls: crate::call::tls::TlsOptions { ca: args.tls_ca.clone(), insecure: args.tls_insecure },
        keylog,
        auth,
        headers,
        codecs,
        srtp: args.media.srtp,
        play,
        conversation,
        hangup_after,
        invite_timeout: *args.timeout,
        expect: Expectations { final_responses, agent, media, diagnosis: None },
        livekit: args.livekit.overrides(),
    })
}

/// The ready-to-dial call, with what stops it named by the flag it came from.
pub fn prepare(request: &CallRequest) -> Result<PreparedCall, UsageError> {
    request.prepare().map_err(|e| {
        UsageError(match &e {
            PrepareError::Password { secret: SecretRef::Env(_), error } => format!("--auth-password-env: {error}"),
            PrepareError::Password { secret: SecretRef::File(_), error } => format!("--auth-password-file: {error}"),
            PrepareError::Play { .. } => format!("--play {e}"),
            PrepareError::Conversation(_) => e.to_string(),
            PrepareError::Target(_) | PrepareError::TargetTransport(_) | PrepareError::SipsNeedsTls(_) => e.to_string(),
            PrepareError::Tls(_) => format!("--tls-ca: {e}"),
        })
    })
}

/// Opens `--keylog FILE` for appending.
pub fn open_keylog(path: &std::path::Path) -> Result<crate::keylog::KeyLog, UsageError> {
    crate::keylog::KeyLog::open(path).map_err(|e| UsageError(format!("--keylog {}: {e}", path.display())))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srtp_modes() {
        assert_eq!(parse_srtp("Required"), Ok(SrtpMode::Required));
        assert_eq!(parse_srtp("optional"), Ok(SrtpMode::Optional));
        assert_eq!(parse_srtp("sdes"), Err("'sdes' is not an SRTP mode (required, optional, off)".to_string()));
        let cli = Cli::try_parse_from(["callprobe", "call", "sip:1@127.0.0.1", "--srtp", "optional"]).unwrap();
        let Command::Call(args) = cli.command else { panic!("not a call") };
        assert_eq!(call_request(&args).unwrap().srtp, SrtpMode::Optional);
        let cli = Cli::try_parse_from(["callprobe", "call", "sip:1@127.0.0.1"]).unwrap();
        let Command::Call(args) = cli.command else { panic!("not a call") };
        assert_eq!(call_request(&args).unwrap().srtp, SrtpMode::Off, "off by default");
    }

    #[test]
    fn expect_lists() {
        assert_eq!(parse_expect("407,200").unwrap(), vec![407, 200]);
        assert_eq!(parse_expect(" 404 ").unwrap(), vec![404]);
        assert!(parse_expect("180").is_err());
        assert!(parse_expect("abc").is_err());
    }

    fn conversation_of(say: &[&str], expect_said: &[&str], dtmf: Option<&str>) -> Result<Conversation, String> {
        let args = ConversationArgs {
            say: say.iter().map(|s| s.to_string()).collect(),
            expect_said: expect_said.iter().map(|s| s.to_string()).collect(),
            dtmf: dtmf.map(str::to_string),
        };
        conversation_request(&args).map_err(|e| e.0)
    }

    /// Each step as `origin: what`, to compare whole conversations at a glance.
    fn outline(conv: &Conversation) -> Vec<String> {
        conv.steps
            .iter()
            .map(|s| {
                let what = match &s.action {
                    StepAction::AgentTurn { within, expect } => {
                        assert_eq!(*within, conversation::DEFAULT_TURN_WITHIN);
                        format!("turn {}", expect.as_ref().map_or("-".into(), |e| e.describe()))
                    }
                    StepAction::Say(u) => format!("say {}", u.label()),
                    StepAction::Dtmf(keys) => format!("dtmf {keys}"),
                    other => format!("{other:?}"),
                };
                format!("{}: {what}", s.origin)
            })
            .collect()
    }

    #[test]
    fn say_and_expect_said_make_turns_in_order() {
        assert_eq!(conversation_of(&[], &[], None), Ok(Conversation::default()));
        let greeting = conversation_of(&[], &["test line"], None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outline(&greeting), ["--expect-said: turn /test line/"]);

        let wav = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/hello_can_you_hear_me_16k.wav");
        let two = conversation_of(&[wav, "What is my order number?"], &["test line", "hear you"], Some("1#"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            outline(&two),
            [
                "--expect-said #1: turn /test line/",
                "--say #1: say hello_can_you_hear_me_16k.wav",
                "--expect-said #2: turn /hear you/",
                "--say #2: say \"What is my order number?\"",
                "--say #2: turn -",
                "--dtmf: dtmf 1#",
                "--dtmf: turn -",
            ]
        );
        let one = conversation_of(&["hello"], &[], None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outline(&one), ["--say: turn -", "--say: say \"hello\"", "--say: turn -"]);
        let dtmf = conversation_of(&[], &[], Some("9")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outline(&dtmf), ["--dtmf: turn -", "--dtmf: dtmf 9", "--dtmf: turn -"]);
    }

    #[test]
    fn conversation_flag_mistakes_name_the_flag() {
        let e = conversation_of(&["hi"], &["a", "b", "c"], None).err().unwrap_or_default();
        assert!(e.starts_with("--expect-said is given 3 times, but the agent has 2 turn(s) here"), "{e}");
        assert!(conversation_of(&["hi"], &["a", "b"], None).is_ok());
        let e = conversation_of(&[], &["a["], None).err().unwrap_or_default();
        assert!(e.starts_with("--expect-said 'a[' is not a regular expression: unclosed character class"), "{e}");
        assert!(conversation_of(&[], &[" "], None)
            .is_err_and(|e| e.contains("--expect-said: the regular expression is empty")));
        let e = conversation_of(&["nope/missing.WAV"], &[], None).err().unwrap_or_default();
        assert!(e.starts_with("--say nope/missing.WAV: no such WAV file"), "{e}");
        assert!(conversation_of(&[""], &[], None).is_err_and(|e| e.starts_with("--say: nothing to say")));
        let e = conversation_of(&[], &[], Some("1 2")).err().unwrap_or_default();
        assert_eq!(e, "--dtmf '1 2': ' ' is not a DTMF key (the keys are 0-9, *, # and A-D)");
    }
}

/// Media flags of `call`: what to offer, what to say, what to expect to hear.
#[derive(Debug, Args)]
pub struct MediaArgs {
    /// Codecs to offer, in order (g722, pcmu, pcma); telephone-event is always offered.
    #[arg(long, value_delimiter = ',', default_value = default_codecs())]
    pub codecs: Vec<String>,
    /// SRTP with SDES keys (RFC 4568): required (RTP/SAVP offer; an answer
    /// without a=crypto fails the call), optional (RTP/AVP offer with
    /// a=crypto lines: SRTP when the answer takes it), or off.
    #[arg(long, value_name = "MODE", default_value = "off", value_parser = parse_srtp)]
    pub srtp: SrtpMode,
    /// WAV file to say to the far end once connected (any rate, bit depth, channels).
    #[arg(long, value_name = "WAV")]
    pub play: Option<PathBuf>,
    /// Start playing this long after the call connects.
    #[arg(long, value_parser = parse_duration, default_value_t = request::DEFAULT_PLAY_AFTER.into(), conflicts_with = "play_after_greeting")]
    pub play_after: FlagDuration,
    /// Start playing when the far end's greeting has ended (speech detection).
    #[arg(long, requires = "play")]
    pub play_after_greeting: bool,
    /// The far end must start speaking within this time of the 200 OK.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
    pub expect_speech_within: Option<FlagDuration>,
    /// The far end must answer our played utterance within this time of its end.
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", requires = "play")]
    pub expect_response_within: Option<FlagDuration>,
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

fn parse_srtp(text: &str) -> Result<SrtpMode, String> {
    SrtpMode::parse(text).ok_or_else(|| format!("'{text}' is not an SRTP mode ({})", SrtpMode::NAMES))
}

fn media_request(args: &MediaArgs) -> Result<(Vec<AudioCodec>, Option<PlayRequest>, MediaExpectations), UsageError> {
    let mut codecs = Vec::new();
    for name in &args.codecs {
        let codec = request::codec_named(name).ok_or_else(|| {
            UsageError(format!("--codecs: unknown codec '{}' (g722, pcmu, pcma)", name.trim().to_ascii_lowercase()))
        })?;
        if !codecs.contains(&codec) {
            codecs.push(codec);
        }
    }
    if codecs.is_empty() {
        return Err(UsageError("--codecs needs at least one codec".into()));
    }
    let play = args.play.as_ref().map(|wav| PlayRequest {
        wav: wav.clone(),
        start: if args.play_after_greeting {
            PlayStart::AfterGreeting
        } else {
            PlayStart::AfterConnect(*args.play_after)
        },
    });
    if let Some(hz) = args.expect_tone {
        if !(50.0..=7000.0).contains(&hz) {
            return Err(UsageError(format!("--expect-tone {hz}: use a frequency between 50 and 7000 Hz")));
        }
    }
    let expect = MediaExpectations {
        speech_within: args.expect_speech_within.map(|d| *d),
        response_within: args.expect_response_within.map(|d| *d),
        tone_hz: args.expect_tone,
        max_loss_percent: args.max_loss_percent,
        max_jitter_ms: args.max_jitter_ms,
    };
    Ok((codecs, play, expect))
}

/// A short conversation on the command line; a scenario file's `[[step]]`s
/// say more.
#[derive(Debug, Args)]
pub struct ConversationArgs {
    /// Say this to the agent once its turn is over: a WAV file (a value ending in .wav), else
    /// text spoken by the offline TTS (festival). Repeatable: each waits for the agent's next
    /// turn, and the call waits for the reply to the last one before hanging up.
    #[arg(long = "say", value_name = "WAV_OR_TEXT", conflicts_with = "play")]
    pub say: Vec<String>,
    /// The agent's turn must say this: a regular expression, case-insensitive. Repeatable, in
    /// the order of the agent's turns: the greeting, then the reply to each --say (and --dtmf).
    #[arg(long = "expect-said", value_name = "REGEX", conflicts_with = "play")]
    pub expect_said: Vec<String>,
    /// Send these DTMF keys (0-9 * # A-D) after the --say steps, then wait for the agent's reply.
    #[arg(long, value_name = "KEYS", conflicts_with = "play")]
    pub dtmf: Option<String>,
}

/// The conversation of `--say`, `--expect-said` and `--dtmf`: for each
/// `--say`, the agent's turn and then what we say; then the agent's turn
/// that answers the last `--say` (or, alone, the greeting); with `--dtmf`,
/// the keys and the agent's turn after them. The `--expect-said`s go to
/// the agent's turns in order.
pub fn conversation_request(args: &ConversationArgs) -> Result<Conversation, UsageError> {
    if args.say.is_empty() && args.expect_said.is_empty() && args.dtmf.is_none() {
        return Ok(Conversation::default());
    }
    let numbered = |flag: &str, i: usize, count: usize| {
        if count > 1 {
            format!("{flag} #{}", i + 1)
        } else {
            flag.to_string()
        }
    };
    let mut expectations = Vec::new();
    for (i, pattern) in args.expect_said.iter().enumerate() {
        if pattern.trim().is_empty() {
            return Err(UsageError("--expect-said: the regular expression is empty".into()));
        }
        conversation::said_regex(pattern)
            .map_err(|reason| UsageError(format!("--expect-said '{pattern}' is not a regular expression: {reason}")))?;
        let origin = numbered("--expect-said", i, args.expect_said.len());
        expectations.push((origin, SaidExpectation::Regex(pattern.clone())));
    }
    let mut expectations = expectations.into_iter();
    let mut steps = Vec::new();
    let mut agent_turn = |steps: &mut Vec<StepRequest>, origin: &str| {
        let (origin, expect) = match expectations.next() {
            Some((origin, expect)) => (origin, Some(expect)),
            None => (origin.to_string(), None),
        };
        let within = conversation::DEFAULT_TURN_WITHIN;
        steps.push(StepRequest { action: StepAction::AgentTurn { within, expect }, origin });
    };
    // The origin of a turn with no --expect-said: the step it answers.
    let mut last = if args.dtmf.is_some() { "--dtmf" } else { "--expect-said" }.to_string();
    for (i, say) in args.say.iter().enumerate() {
        let origin = numbered("--say", i, args.say.len());
        agent_turn(&mut steps, &origin);
        steps.push(StepRequest { action: StepAction::Say(said_utterance(say)?), origin: origin.clone() });
        last = origin;
    }
    agent_turn(&mut steps, &last);
    if let Some(keys) = &args.dtmf {
        let digits = conversation::dtmf_keys(keys)
            .map_err(|e| UsageError(format!("--dtmf '{keys}': {e} (the keys are {DTMF_KEYS})")))?;
        steps.push(StepRequest { action: StepAction::Dtmf(digits), origin: "--dtmf".into() });
        agent_turn(&mut steps, "--dtmf");
    }
    let turns = steps.iter().filter(|s| matches!(s.action, StepAction::AgentTurn { .. })).count();
    if args.expect_said.len() > turns {
        return Err(UsageError(format!(
            "--expect-said is given {} times, but the agent has {turns} turn(s) here: the greeting, and a reply to \
             each --say and to --dtmf (add a --say for each further reply to check)",
            args.expect_said.len()
        )));
    }
    Ok(Conversation { steps, ..Conversation::default() })
}

/// `--say`'s value: a WAV file when it ends in `.wav`, else text.
fn said_utterance(value: &str) -> Result<Utterance, UsageError> {
    let path = std::path::Path::new(value);
    if path.extension().is_some_and(|x| x.eq_ignore_ascii_case("wav")) {
        if !path.is_file() {
            return Err(UsageError(format!(
                "--say {value}: no such WAV file (a value ending in .wav is read as a file; \
                 to have the words spoken, leave out .wav)"
            )));
        }
        return Ok(Utterance::Wav(path.to_path_buf()));
    }
    if value.trim().is_empty() {
        return Err(UsageError("--say: nothing to say (a WAV file, or words for the offline TTS)".into()));
    }
    Ok(Utterance::Text(value.trim().to_string()))
}

/// `callprobe check PATH`: every problem as `file:line:col: message`; exit 2 when any.
fn run_check(args: &CheckArgs) -> Exit {
    let (files, cases, errors) = crate::scenario::check_path(&args.path);
    for e in &errors {
        println!("{e}");
    }
    console::check_totals(files, cases, errors.len(), &args.path);
    if errors.is_empty() && files > 0 {
        Exit::Passed
    } else {
        Exit::TesterError
    }
}

/// `callprobe run PATH`: the scenario suite, its summary, and the run folder.
fn run_suite(runtime: &tokio::runtime::Runtime, args: &RunArgs) -> Exit {
    let files = match crate::scenario::load_path(&args.path) {
        Ok(f) => f,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            console::error(format!("{} error(s) in the scenario files; nothing was called", errors.len()));
            return Exit::TesterError;
        }
    };
    // Objectives are per scenario: its matrix cases and rounds share them.
    let mut objectives = std::collections::BTreeMap::new();
    for case in crate::scenario::cases(&files).filter(|c| crate::scenario::matches_tags(c, &args.tags)) {
        if !case.slo.rules.is_empty() || case.slo.regression.is_some() {
            objectives.insert(case.scenario.clone(), case.slo.clone());
        }
    }
    let mut plans = Vec::new();
    let mut problems = Vec::new();
    let keylog = match args.keylog.as_deref().map(open_keylog).transpose() {
        Ok(k) => k,
        Err(e) => {
            console::error(e);
            return Exit::TesterError;
        }
    };
    for case in crate::scenario::cases(&files).filter(|c| crate::scenario::matches_tags(c, &args.tags)) {
        let mut case = case.clone();
        case.call.keylog = keylog.clone();
        match case.prepare() {
            Ok(spec) => plans.push((case.call.clone(), spec)),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{p}");
        }
        console::error(format!("{} case(s) cannot run; nothing was called", problems.len()));
        return Exit::TesterError;
    }
    if plans.is_empty() {
        console::error(format!("no case in {} matches the tags {:?}", args.path.display(), args.tags));
        return Exit::TesterError;
    }
    let stt = match args.stt.open(plans.iter().any(|(request, _)| request.conversation.expects_words())) {
        Ok(stt) => stt,
        Err(e) => {
            console::error(e);
            return Exit::TesterError;
        }
    };
    let suite_name = args.path.file_stem().map_or("callprobe".into(), |s| s.to_string_lossy().into_owned());
    let options = SuiteOptions {
        parallel: usize::from(args.parallel),
        repeat: usize::from(args.repeat),
        retries: usize::from(args.retries),
        fail_fast: args.fail_fast,
        stt,
        keep: std::sync::Arc::new(KeepArtifacts::new(args.keep_artifacts)),
        shard: args.shard.map(|shard| SuiteShard { shard, suite_name: suite_name.clone() }),
    };
    let written = SuiteOutputs {
        suite_name,
        notify_webhook: args.notify_webhook.clone(),
        notify_on: args.notify_on,
        // Read before this run's folder becomes `latest`.
        previous: previous_run(&args.report_dir, &args.notify_webhook, args.notify_on),
        metrics_file: args.metrics_file.clone(),
    };
    let total = plans.len() * options.repeat;
    match &args.shard {
        Some(s) => println!(
            "running shard {s}: {} of {total} call(s) from {}",
            s.positions(total).count(),
            args.path.display()
        ),
        None => println!("running {total} call(s) from {}", args.path.display()),
    }
    let cancel = cancel_on_ctrl_c(runtime);
    let run_dir = match outputs::create_run_folder(&args.report_dir) {
        Ok(dir) => dir,
        Err(e) => {
            console::error(e);
            return Exit::TesterError;
        }
    };
    let mut progress = console::SuiteProgressBar::new(args.verbose);
    let ran = runtime.block_on(async {
        let mut outcome = suite::run(plans, &options, &run_dir, &mut progress, &cancel).await?;
        // The scenarios' objectives over the run, with the history's last runs.
        let slo_results = evaluate_objectives(&objectives, &outcome.report, &args.report_dir, &run_dir);
        outcome.report.add_slo(slo_results);
        let problems = outputs::write_suite_outputs(&outcome.report, &run_dir, &outcome.call_dirs, &written).await?;
        Ok::<_, String>((outcome, problems))
    });
    let (outcome, mut output_problems) = match ran {
        Ok(v) => v,
        Err(e) => {
            console::error(e);
            return Exit::TesterError;
        }
    };
    // The run joins the report folder's history and its index page.
    let retention = crate::history::Retention { runs: args.history_keep, max_age: args.history_max_age };
    if let Err(e) = record_history(&args.report_dir, &run_dir, &written.suite_name, &outcome, retention) {
        output_problems.push(e);
    }
    // Ctrl-C until the outputs are written counts: the run is incomplete.
    let interrupted = cancel.is_cancelled();
    console::suite_summary(
        &outcome.report,
        outcome.skipped,
        interrupted,
        &outcome.errors,
        &output_problems,
        &run_dir.join("index.html"),
    );
    let passed = outcome.report.verdict.passed();
    if interrupted || (!output_problems.is_empty() && passed) {
        Exit::TesterError
    } else if outcome.skipped > 0 && passed {
        Exit::SystemUnderTestFailed
    } else {
        Exit::from(outcome.report.verdict)
    }
}

/// The run `<report_dir>/latest` points at, to tell the webhook what
/// changed; read only for a webhook. A first run has none; one that cannot
/// be read is said (with `--notify-on change`) and left out.
fn previous_run(report_dir: &std::path::Path, webhook: &Option<String>, notify_on: NotifyOn) -> Option<PreviousRun> {
    webhook.as_ref()?;
    match PreviousRun::read(report_dir) {
        Ok(previous) => previous,
        Err(e) => {
            if notify_on == NotifyOn::Change {
                console::error(format!("no previous run to compare with: {e}"));
            }
            None
        }
    }
}

/// The cases of a scenario path that match the tags, prepared; or the
/// errors, already printed.
fn prepared_cases(path: &std::path::Path, tags: &[String]) -> Result<Vec<(CallRequest, PreparedCall)>, Exit> {
    let files = crate::scenario::load_path(path).map_err(|errors| {
        for e in &errors {
            eprintln!("{e}");
        }
        console::error(format!("{} error(s) in the scenario files; nothing was called", errors.len()));
        Exit::TesterError
    })?;
    let mut plans = Vec::new();
    let mut problems = Vec::new();
    for case in crate::scenario::cases(&files).filter(|c| crate::scenario::matches_tags(c, tags)) {
        match case.prepare() {
            Ok(spec) => plans.push((case.call.clone(), spec)),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("{p}");
        }
        console::error(format!("{} case(s) cannot run; nothing was called", problems.len()));
        return Err(Exit::TesterError);
    }
    if plans.is_empty() {
        console::error(format!("no case in {} matches the tags {:?}", path.display(), tags));
        return Err(Exit::TesterError);
    }
    Ok(plans)
}

/// `callprobe load PATH`: the plan, its live progress, the load report.
fn run_load(runtime: &tokio::runtime::Runtime, args: &LoadArgs) -> Exit {
    use crate::load::{knee::KneeRule, plan::LoadPlan, report::LoadReport, runner};
    let cases = match prepared_cases(&args.path, &args.tags) {
        Ok(c) => c,
        Err(exit) => return exit,
    };
    let duration = args.duration.map(|d| *d);
    let plan = match (&args.ramp, args.cps) {
        (Some(levels), _) => LoadPlan::ramp(levels, duration, args.calls, args.max_cps),
        (None, Some(cps)) => LoadPlan::rate(cps, duration, args.calls),
        (None, None) => Err("give --cps or --ramp".to_string()),
    };
    let rules: Result<Vec<KneeRule>, String> = if args.knee.is_empty() {
        crate::load::knee::DEFAULT_RULES.iter().map(|r| KneeRule::parse(r)).collect()
    } else {
        args.knee.iter().map(|r| KneeRule::parse(r)).collect()
    };
    let numbers = args.caller_numbers.as_deref().map(runner::CallerNumbers::parse).transpose();
    let (plan, rules, caller_numbers) = match (plan, rules, numbers) {
        (Ok(p), Ok(r), Ok(n)) => (p, r, n),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            console::error(e);
            return Exit::TesterError;
        }
    };
    // Words are transcribed only when a case checks them: under load the
    // engine's CPU would be part of what is measured.
    let needs_text = cases.iter().any(|(request, _)| request.conversation.expects_words());
    let stt = if needs_text {
        match args.stt.open(true) {
            Ok(stt) => stt,
            Err(e) => {
                console::error(e);
                return Exit::TesterError;
            }
        }
    } else {
        Stt::none("no case checks the agent's words: not transcribed under load")
    };
    // Labels and description are the whole plan's: shards merge into it.
    let step_labels: Vec<String> = plan.steps.iter().map(|s| s.label()).collect();
    let described = plan.describe();
    let shard = args.shard.unwrap_or_else(Shard::whole);
    let plan = if shard.count() > 1 { plan.shard(shard.index(), shard.count()) } else { plan };
    let cores = std::thread::available_parallelism().map_or(2, usize::from);
    let call_runtimes = match runner::CallRuntimes::start(cores) {
        Ok(r) => r,
        Err(e) => {
            console::error(format!("cannot start the calls' runtimes: {e}"));
            return Exit::TesterError;
        }
    };
    let options = runner::LoadOptions {
        plan,
        caller_numbers,
        keep: args.keep_artifacts,
        stt,
        call_runtimes: call_runtimes.handles(),
        shard,
    };
    let run_dir = match outputs::create_run_folder(&args.report_dir) {
        Ok(dir) => dir,
        Err(e) => {
            console::error(e);
            return Exit::TesterError;
        }
    };
    println!("load     {described} · {} case(s) from {} · {}", cases.len(), args.path.display(), run_dir.display());
    let cancel = cancel_on_ctrl_c(runtime);
    let started_unix_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let mut progress = console::LoadProgressLine::new();
    let outcome = runtime.block_on(runner::run(&cases, &options, &run_dir, &mut progress, &cancel));
    progress.finish();
    let shard_of = args.shard.map(|s| crate::load::report::ShardOf { index: s.index(), count: s.count() });
    let report = LoadReport::new(described, step_labels, rules, started_unix_ms, &outcome, shard_of);
    let suite_name = args.path.file_stem().map_or("callprobe-load".into(), |s| s.to_string_lossy().into_owned());
    let mut problems = Vec::new();
    let page = match report.write(&run_dir, &suite_name) {
        Ok(page) => page,
        Err(e) => {
            console::error(e);
            return Exit::TesterError;
        }
    };
    if let Err(e) = write_kept_calls(&outcome.kept, &run_dir) {
        problems.push(e);
    }
    console::load_summary(&report, &page, &problems);
    match report.verdict {
        _ if !problems.is_empty() => Exit::TesterError,
        v => Exit::from(v),
    }
}

/// The kept calls' own report and page: `report.json` and `calls.html`.
fn write_kept_calls(kept: &[(PathBuf, crate::report::model::Call)], run_dir: &std::path::Path) -> Result<(), String> {
    let mut kept: Vec<&(PathBuf, crate::report::model::Call)> = kept.iter().collect();
    kept.sort_by(|a, b| a.0.cmp(&b.0));
    let dirs: Vec<PathBuf> = kept.iter().map(|(d, _)| d.clone()).collect();
    let calls = Report::new(kept.iter().map(|(_, c)| c.clone()).collect());
    calls.write_json(run_dir)?;
    let html = crate::report::html::index_html(&calls, run_dir, &dirs);
    let path = run_dir.join("calls.html");
    std::fs::write(&path, html).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `callprobe merge DIR…` of `load --shard` folders: one load run folder.
fn run_load_merge(args: &MergeArgs) -> Exit {
    let run_dir = match &args.out {
        Some(dir) => crate::report::merge::create_out_folder(dir).map_err(|e| e.to_string()),
        None => outputs::create_run_folder(&args.report_dir),
    };
    let name = args.junit_name.clone().unwrap_or_else(|| "callprobe-load".into());
    let merged = run_dir.and_then(|dir| crate::load::merge::merge_into(&args.dirs, &dir, &name));
    match merged {
        Ok((report, page)) => {
            println!("merged   {} load shard(s): {} call(s)", args.dirs.len(), report.calls.len());
            console::load_summary(&report, &page, &[]);
            Exit::from(report.verdict)
        }
        Err(e) => {
            console::error(e);
            Exit::TesterError
        }
    }
}

/// `callprobe merge DIR…`: the shards' run folders as one run folder, and
/// the exit code `run` would have given the whole suite.
fn run_merge(runtime: &tokio::runtime::Runtime, args: &MergeArgs) -> Exit {
    use crate::report::merge;
    if args.dirs.iter().all(|d| crate::load::merge::load_folder(d).is_some()) {
        return run_load_merge(args);
    }
    let merged = match merge::read_and_merge(&args.dirs) {
        Ok(m) => m,
        Err(e) => {
            console::error(e);
            return Exit::TesterError;
        }
    };
    println!(
        "merging {} shard(s) of {}: {} of {} call(s) ran",
        merged.shard_count,
        merged.suite_name,
        merged.report.calls.len(),
        merged.queue_length
    );
    // Before the merged run's folder becomes `latest` (with --out there is none).
    let previous = match &args.out {
        Some(_) => None,
        None => previous_run(&args.report_dir, &args.notify_webhook, args.notify_on),
    };
    let run_dir = match &args.out {
        Some(dir) => merge::create_out_folder(dir).map_err(|e| e.to_string()),
        None => outputs::create_run_folder(&args.report_dir),
    };
    let written = SuiteOutputs {
        suite_name: args.junit_name.clone().unwrap_or_else(|| merged.suite_name.clone()),
        notify_webhook: args.notify_webhook.clone(),
        notify_on: args.notify_on,
        previous,
        metrics_file: args.metrics_file.clone(),
    };
    let wrote = run_dir.and_then(|run_dir| {
        merged.link_call_dirs(&run_dir).map_err(|e| e.to_string())?;
        let problems =
            runtime.block_on(outputs::write_suite_outputs(&merged.report, &run_dir, &merged.call_dirs, &written))?;
        Ok((run_dir, problems))
    });
    let (run_dir, output_problems) = match wrote {
        Ok(v) => v,
        Err(e) => {
            console::error(e);
            return Exit::TesterError;
        }
    };
    print!("{}", console::summary_table(&merged.report));
    let not_run = merged.not_run.len();
    println!(
        "{}{}",
        console::passed_line(&merged.report),
        if not_run == 0 { String::new() } else { format!(", {not_run} not run in their shard") }
    );
    for p in &output_problems {
        console::error(p);
    }
    println!("report   {}", run_dir.join("index.html").display());
    let passed = merged.report.verdict.passed();
    if !output_problems.is_empty() && passed {
        Exit::TesterError
    } else if not_run > 0 && passed {
        Exit::SystemUnderTestFailed
    } else {
        Exit::from(merged.report.verdict)
    }
}

/// Each scenario's objectives (`slo`, `[regression]`) over this run's calls
/// of it; the history of `report_dir` gives the last runs (a history that
/// cannot be read only leaves the context out).
fn evaluate_objectives(
    objectives: &std::collections::BTreeMap<String, crate::verdict::slo::ScenarioSlo>,
    report: &Report,
    report_dir: &std::path::Path,
    run_dir: &std::path::Path,
) -> Vec<crate::verdict::slo::SloResult> {
    use crate::verdict::slo::Observed;
    if objectives.is_empty() {
        return Vec::new();
    }
    let history = crate::history::History::open(report_dir).ok();
    let mut results = Vec::new();
    for (scenario, spec) in objectives {
        let calls: Vec<Observed> = report
            .calls
            .iter()
            .filter(|c| c.scenario.as_deref() == Some(scenario.as_str()))
            .map(Observed::of)
            .collect();
        if calls.is_empty() {
            continue;
        }
        let wanted = spec.regression.as_ref().map_or(7, |r| r.runs).max(7);
        let past = history.as_ref().and_then(|h| h.past_runs(scenario, wanted, run_dir).ok()).unwrap_or_default();
        for rule in &spec.rules {
            results.push(rule.check(scenario, &calls, &past));
        }
        if let Some(regression) = &spec.regression {
            results.extend(regression.check(scenario, &calls, &past));
        }
    }
    results
}

/// Appends the run to `<report_dir>/history.sqlite`, applies the retention,
/// and rewrites `<report_dir>/index.html`.
fn record_history(
    report_dir: &std::path::Path,
    run_dir: &std::path::Path,
    suite: &str,
    outcome: &suite::SuiteOutcome,
    retention: crate::history::Retention,
) -> Result<(), String> {
    let mut history = crate::history::History::open(report_dir)?;
    history.record(run_dir, suite, &outcome.report, &outcome.call_dirs)?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    history.prune(retention, now)?;
    history.write_index().map(|_| ())
}

/// A duration flag (`5s`, `1m30s`, `500ms`), at most a day.
fn parse_duration(text: &str) -> Result<FlagDuration, String> {
    request::parse_duration(text).map(FlagDuration::from)
}

/// A duration as a flag takes and shows it (`5s`).
type FlagDuration = humantime::Duration;

/// `--codecs`' default, as written on the command line.
fn default_codecs() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| request::DEFAULT_CODECS.iter().map(|c| codec_flag_name(*c)).collect::<Vec<_>>().join(","))
}

fn codec_flag_name(codec: AudioCodec) -> &'static str {
    match codec {
        AudioCodec::G722 => "g722",
        AudioCodec::Pcmu => "pcmu",
        AudioCodec::Pcma => "pcma",
    }
}
