//! The command line: parse flags, turn them into a call, run it, print and
//! write the results, and map the outcome to the exit code
//! (0 pass, 1 the system under test failed a check, 2 the tester could not run).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::call::{self, CallObserver, CallSpec, Direction, LoggedMessage};
use crate::report::{self, CallReport, Report};
use crate::secret::Secret;
use crate::sip::caller::{Credentials, Transport};
use crate::sip::transaction::TimerConfig;
use crate::verdict::checks::{self, Expectations};
use crate::verdict::diagnose;

#[derive(Debug, Parser)]
#[command(name = "callprobe", version, about = "Places real test calls into voice AI agents behind LiveKit SIP and says why a call failed.")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Place one call and check how the endpoint answers (407 → 200 …).
    Call(CallArgs),
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
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub hangup_after: Duration,
    /// How long each INVITE may wait for a final response (Timer B; after ringing, we CANCEL).
    #[arg(long, default_value = "32s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Extra header for the INVITE, e.g. 'X-Name: value' (repeatable).
    #[arg(long = "header", value_name = "'NAME: VALUE'")]
    pub headers: Vec<String>,
    /// Write report.json here.
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
    let mut printer = MessagePrinter { verbosity: args.verbose };
    let record = match runtime.block_on(call::run(&spec, &mut printer)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("callprobe: {e}");
            return 2;
        }
    };
    let checks = checks::evaluate(&record, &expect);
    let failed = checks.iter().any(|c| !c.passed);
    let diagnosis = if failed { diagnose::diagnose(&record) } else { Vec::new() };
    let call_report = CallReport::new(&record, checks, diagnosis);
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
    let target_uri = if args.target.contains(':') && args.target.split(':').next().is_some_and(|s| s.eq_ignore_ascii_case("sip") || s.eq_ignore_ascii_case("sips")) {
        args.target.clone()
    } else {
        format!("sip:{}", args.target)
    };
    let parsed = crate::sip::message::uri_target(&target_uri).map_err(|e| UsageError(format!("bad target: {e}")))?;
    let transport = match (args.transport, parsed.transport.as_deref()) {
        (Some(TransportArg::Udp), _) => Transport::Udp,
        (Some(TransportArg::Tcp), _) => Transport::Tcp,
        (None, Some("tcp")) => Transport::Tcp,
        (None, Some("udp") | None) => Transport::Udp,
        (None, Some(other)) => return Err(UsageError(format!("transport {other} in the target URI is not supported (udp, tcp)"))),
    };
    let password = match (&args.auth_password_env, &args.auth_password_file) {
        (Some(var), _) => Some(Secret::from_env(var).map_err(|e| UsageError(format!("--auth-password-env: {e}")))?),
        (None, Some(path)) => Some(Secret::from_file(path).map_err(|e| UsageError(format!("--auth-password-file: {e}")))?),
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
    let expect = Expectations { final_responses: args.expect.as_deref().map(parse_expect).transpose()? };
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
        },
        expect,
    ))
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
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| UsageError(format!("--header '{text}': expected 'Name: value'")))?;
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
    fn headers() {
        assert_eq!(parse_header("X-Lk-Foo: bar baz").unwrap(), ("X-Lk-Foo".into(), "bar baz".into()));
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("Bad Name: x").is_err());
    }
}
