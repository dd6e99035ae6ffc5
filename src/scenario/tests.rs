//! Scenario files end to end: good files, each kind of error at its exact
//! line:col, substitution, matrix expansion and per-value expectations.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::load::load_file;
use super::*;
use crate::conversation::{
    SaidExpectation, StepAction, Utterance, DEFAULT_BARGE_IN_AFTER, DEFAULT_SIMILARITY, DEFAULT_STOP_WITHIN,
    DEFAULT_TURN_WITHIN,
};
use crate::media::codec::AudioCodec;
use crate::request::PlayStart;
use crate::request::{AuthRequest, ExpectedAgent, FinalResponses, SecretRef};
use crate::sip::Transport;

/// The `lk.agent_name` a case expects: `Some(None)` for any agent.
fn expected_agent(case: &ScenarioCase) -> Option<Option<&str>> {
    case.call.expect.agent.as_ref().map(|a| a.name())
}

fn finals(codes: &[u16]) -> FinalResponses {
    FinalResponses::Exactly(codes.to_vec())
}

fn env(name: &str) -> Option<String> {
    match name {
        "LK_SIP_USER" => Some("callprobe".into()),
        "LK_SIP_HOST" => Some("127.0.0.1:5060".into()),
        "DOLLAR_USER" => Some("u$er".into()),
        // Password variables must be set for a file to load; values never matter here.
        "LK_SIP_PASSWORD" | "PW" | "WRONG_PASSWORD" => Some("not-a-secret".into()),
        "EMPTY_PASSWORD" => Some(String::new()),
        _ => None,
    }
}

fn load(text: &str) -> Result<Vec<ScenarioCase>, Vec<String>> {
    load_file(Path::new("s/a.toml"), text, &env)
        .map(|(f, _)| f.cases)
        .map_err(|errors| errors.iter().map(|e| e.to_string()).collect())
}

fn one(text: &str) -> ScenarioCase {
    match load(text) {
        Ok(mut cases) if cases.len() == 1 => cases.remove(0),
        other => panic!("expected one case, got {other:?}"),
    }
}

/// The errors of a file that must not load.
fn errors(text: &str) -> Vec<String> {
    match load(text) {
        Ok(cases) => panic!("expected errors, got {} cases", cases.len()),
        Err(e) => e,
    }
}

fn single_error(text: &str) -> String {
    let e = errors(text);
    assert_eq!(e.len(), 1, "{e:#?}");
    e[0].clone()
}

/// `text` has one error, and it starts with `want`.
#[track_caller]
fn assert_single_error(text: &str, want: &str) {
    let e = single_error(text);
    assert!(e.starts_with(want), "{e}");
}

/// For each `(extra, want)`: [`MINIMAL`] followed by `extra` has one error, starting with `want`.
fn assert_minimal_plus_errs(cases: &[(&str, &str)]) {
    for (extra, want) in cases {
        let e = single_error(&format!("{MINIMAL}{extra}\n"));
        assert!(e.starts_with(want), "{extra}\n got: {e}\nwant: {want}");
    }
}

const MINIMAL: &str = r#"
name = "minimal"
[target]
uri = "sip:+14144007103@127.0.0.1:5070"
"#;

/// A scratch directory with a fixture, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("callprobe-scenario-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("fixtures")).expect("scratch dir");
        Scratch(dir)
    }
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, text).expect("scratch file");
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `load_str` (the fuzz targets' entry) reads text the way a file on disk is read.
#[test]
fn load_str_reads_text_without_a_file() {
    let file = load_str(Path::new("nowhere/x.toml"), MINIMAL, &env).expect("loads");
    assert_eq!(file.path, Path::new("nowhere/x.toml"));
    assert_eq!(file.cases.len(), 1);
    let errors = load_str(Path::new("nowhere/x.toml"), "name = 1", &env).expect_err("a number is no name");
    assert!(errors[0].to_string().starts_with("nowhere/x.toml:1:"), "{}", errors[0]);
}

#[test]
fn minimal_file_gets_the_cli_defaults() {
    let case = one(MINIMAL);
    assert_eq!(case.name(), "minimal");
    assert_eq!(case.file, Path::new("s/a.toml"));
    assert!(case.tags().is_empty() && case.matrix.is_empty());
    let c = &case.call;
    assert_eq!(c.target_uri, "sip:+14144007103@127.0.0.1:5070");
    assert_eq!(c.from, "callprobe");
    assert!(c.transport.is_none() && c.auth.is_none() && c.expect.agent.is_none());
    assert_eq!(c.expect.final_responses, FinalResponses::Answered);
    assert_eq!((c.hangup_after, c.invite_timeout), (Duration::from_secs(5), Duration::from_secs(32)));
    assert_eq!(c.codecs, [AudioCodec::G722, AudioCodec::Pcmu, AudioCodec::Pcma]);
    assert!(c.play.is_none() && c.headers.is_empty() && c.expect.diagnosis.is_none());
}

#[test]
fn full_file_maps_every_key() {
    let scratch = Scratch::new("full");
    std::fs::write(scratch.0.join("fixtures/hello.wav"), b"RIFF").expect("fixture");
    let path = scratch.write(
        "full.toml",
        r#"
name = "full"
description = "every key"
tags = ["smoke", "agent"]
[target]
uri = "sip:+14144007103@${LK_SIP_HOST}"
transport = "TCP"
[caller]
from = "+15550100123"
headers = ["X-Customer: acme", "X-Note: a: b"]
codecs = ["PCMU", "g722"]
srtp = "Required"
[auth]
user = "${LK_SIP_USER}"
password_env = "LK_SIP_PASSWORD"
[expect]
final_responses = [407, 200]
agent = "probe-agent"
agent_within = "7s"
speech_within = "3s"
response_within = "2s"
tone_hz = 1000
max_loss_percent = 1.5
max_jitter_ms = 30
[timeline]
play = "fixtures/hello.wav"
play_after = "greeting"
hangup_after = "8s"
timeout = "1.5s"
[livekit]
url = "wss://example.livekit.cloud"
api_key = "APIkey"
api_secret_env = "LIVEKIT_API_SECRET"
"#,
    );
    let files = load_path_with_env(&path, &env).unwrap_or_else(|e| panic!("{e:#?}"));
    let case = &files[0].cases[0];
    assert_eq!(case.description.as_deref(), Some("every key"));
    assert_eq!(case.tags(), ["smoke", "agent"]);
    let c = &case.call;
    assert_eq!(c.target_uri, "sip:+14144007103@127.0.0.1:5060");
    assert_eq!(c.transport, Some(Transport::Tcp));
    assert_eq!(c.from, "+15550100123");
    let header = |n: &str, v: &str| (n.to_string(), v.to_string());
    assert_eq!(c.headers, [header("X-Customer", "acme"), header("X-Note", "a: b")]);
    assert_eq!(c.codecs, [AudioCodec::Pcmu, AudioCodec::G722]);
    assert_eq!(c.srtp, crate::media::sdes::SrtpMode::Required);
    assert_eq!(
        c.auth,
        Some(AuthRequest { user: "callprobe".into(), password: SecretRef::Env("LK_SIP_PASSWORD".into()) })
    );
    assert_eq!(c.expect.final_responses, finals(&[407, 200]));
    assert_eq!(expected_agent(case), Some(Some("probe-agent")));
    assert_eq!(c.expect.agent.as_ref().map(|a| a.within), Some(Duration::from_secs(7)));
    assert_eq!(c.expect.media.speech_within, Some(Duration::from_secs(3)));
    assert_eq!(c.expect.media.response_within, Some(Duration::from_secs(2)));
    assert_eq!(c.expect.media.tone_hz, Some(1000.0));
    assert_eq!((c.expect.media.max_loss_percent, c.expect.media.max_jitter_ms), (Some(1.5), Some(30.0)));
    let play = c.play.as_ref().expect("play");
    assert_eq!(play.wav, scratch.0.join("fixtures/hello.wav"));
    assert_eq!(play.start, PlayStart::AfterGreeting);
    assert_eq!((c.hangup_after, c.invite_timeout), (Duration::from_secs(8), Duration::from_millis(1500)));
    assert_eq!(c.livekit.url.as_deref(), Some("wss://example.livekit.cloud"));
    assert_eq!(c.livekit.api_secret_env.as_deref(), Some("LIVEKIT_API_SECRET"));
}

#[test]
fn cases_are_prepared_for_dialling() {
    let scratch = Scratch::new("spec");
    scratch.write("pw", "hunter2\n");
    let path = scratch.write(
        "a.toml",
        r#"
name = "spec"
[target]
uri = "sip:+14144007103@127.0.0.1:5070;transport=tcp"
[auth]
user = "callprobe"
password_file = "pw"
[expect]
final_responses = [407, 200]
agent = "*"
max_jitter_ms = 20
"#,
    );
    let files = load_path_with_env(&path, &env).unwrap_or_else(|e| panic!("{e:#?}"));
    let spec = files[0].cases[0].prepare().unwrap_or_else(|e| panic!("{e}"));
    let expect = &files[0].cases[0].call.expect;
    assert_eq!(spec.transport, crate::sip::Transport::Tcp);
    assert_eq!(spec.credentials.as_ref().map(|c| c.password.expose()), Some("hunter2"));
    assert_eq!(expect.final_responses, finals(&[407, 200]));
    assert_eq!(
        expect.agent.as_ref().map(|a| (&a.agent, a.within)),
        Some((&ExpectedAgent::Any, Duration::from_secs(5)))
    );
    assert_eq!(expect.media.max_jitter_ms, Some(20.0));

    // What only preparing finds comes back as `file: case "name": message`.
    std::fs::remove_file(scratch.0.join("pw")).expect("remove pw");
    let e = files[0].cases[0].prepare().err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        e.starts_with(&format!("{}: case \"spec\": [auth] password_file: cannot read secret file", path.display())),
        "{e}"
    );
    assert!(!e.contains("--auth"), "the setting came from the file, not a flag: {e}");
}

#[test]
fn an_unset_password_env_is_an_error_at_its_key() {
    let e = single_error(&format!("{MINIMAL}[auth]\nuser = \"u\"\npassword_env = \"NOT_SET_PW\"\n"));
    assert_eq!(
        e,
        "s/a.toml:7:1: password_env: environment variable NOT_SET_PW is not set (expected NOT_SET_PW set to the trunk's digest password, or password_file = \"PATH\")"
    );
    assert_single_error(
        &format!("{MINIMAL}[auth]\nuser = \"u\"\npassword_env = \"EMPTY_PASSWORD\"\n"),
        "s/a.toml:7:1: password_env: environment variable EMPTY_PASSWORD is empty",
    );
    // In an inline table of a [[case]], the key is found on its line too.
    assert_single_error(&format!(
        "{MINIMAL}[matrix]\nX = [\"a\"]\n[[case]]\nwhen = {{ X = \"a\" }}\nauth = {{ user = \"u\", password_env = \"NOT_SET_PW\" }}\n"
    ), "s/a.toml:9:22: password_env: environment variable NOT_SET_PW is not set");
    // A case that drops the auth table needs no password.
    let cases = load(&format!(
        "{MINIMAL}[auth]\nuser = \"u\"\npassword_env = \"NOT_SET_PW\"\n[matrix]\nX = [\"a\"]\n[[case]]\nwhen = {{ X = \"a\" }}\nauth = false\n"
    ));
    assert!(cases.is_ok(), "{cases:?}");
}

#[test]
fn toml_syntax_and_unknown_keys_point_at_their_place() {
    assert_single_error("name = \"x\"\n[target\nuri = \"sip:a@b\"\n", "s/a.toml:2:8: ");
    assert_single_error(
        "name = \"x\"\n[target]\nuri = \"sip:a@b\"\nport = 5060\n",
        "s/a.toml:4:1: unknown field `port`, expected",
    );
    assert_single_error("name = \"x\"\n", "s/a.toml:1:1: missing field `target`");
    assert_single_error(
        &format!("{MINIMAL}[expect]\ntone_hz = \"loud\"\n"),
        "s/a.toml:6:11: invalid type: string \"loud\", expected f64",
    );
}

#[test]
fn each_semantic_error_has_its_exact_line_and_column() {
    let cases: &[(&str, &str)] = &[
        ("[timeline]\nhangup_after = \"8 parsecs\"", "s/a.toml:6:16: '8 parsecs' is not a duration (expected a duration like \"1.5s\", \"500ms\" or \"2m\")"),
        ("[timeline]\ntimeout = \"0s\"", "s/a.toml:6:11: timeout must be more than zero"),
        ("[caller]\ncodecs = [\"pcmu\", \"opus\"]", "s/a.toml:6:19: unknown codec 'opus' (expected g722, pcmu (or ulaw), pcma (or alaw))"),
        ("[caller]\ncodecs = []", "s/a.toml:6:10: codecs is empty"),
        ("[caller]\nsrtp = \"sdes\"", "s/a.toml:6:8: srtp 'sdes' is not an SRTP mode (expected \"required\", \"optional\" or \"off\")"),
        ("[expect]\nfinal_responses = [407, 180]", "s/a.toml:6:25: 180 is not a final response (provisional responses are recorded, not expected) (expected a SIP status code from 200 to 699)"),
        ("[expect]\nfinal_responses = \"some\"", "s/a.toml:6:19: invalid value: string \"some\", expected a list of final status codes like [407, 200], or \"any\""),
        ("[expect]\nfinal_responses = []", "s/a.toml:6:19: final_responses is empty"),
        ("[caller]\nheaders = [\"X-Ok: 1\", \"Bad Name: x\"]", "s/a.toml:6:23: bad header 'Bad Name: x': 'Bad Name' is not a valid header name"),
        ("[caller]\nfrom = \"Bob <sip:bob@x>\"", "s/a.toml:6:8: 'Bob <sip:bob@x>' is not a caller number or user"),
        ("[expect]\nagent_within = \"5s\"", "s/a.toml:6:16: agent_within without agent"),
        ("[expect]\nresponse_within = \"2s\"", "s/a.toml:6:19: response_within without something to respond to"),
        ("[expect]\ntone_hz = 20", "s/a.toml:6:11: tone_hz 20 is out of range"),
        ("[expect]\nmax_loss_percent = 101", "s/a.toml:6:20: max_loss_percent 101 is out of range"),
        ("[timeline]\nplay = \"nope.wav\"", "s/a.toml:6:8: s/nope.wav is not a file (expected a WAV file, relative to this scenario file)"),
        ("[timeline]\nplay_after = \"greeting\"", "s/a.toml:6:14: play_after without play"),
        ("[livekit]\nurl = \"example.com\"", "s/a.toml:6:7: 'example.com' is not a LiveKit URL"),
        ("[expect]\ndiagnosis = \"no_trunk\"", "s/a.toml:6:13: 'no_trunk' is not a diagnosis callprobe makes (expected one of called_number_not_on_trunk, "),
    ];
    assert_minimal_plus_errs(cases);
}

#[test]
fn tags_are_checked() {
    assert_single_error(&format!("tags = [\"ok\", \"not ok\"]\n{MINIMAL}"), "s/a.toml:1:15: 'not ok' is not a tag");
}

#[test]
fn target_uri_and_transport_are_checked() {
    let e = single_error("name = \"x\"\n[target]\nuri = \"tel:+14144007103\"\n");
    assert_eq!(e, "s/a.toml:3:7: 'tel:+14144007103' is not a sip: URI (expected a SIP URI like \"sip:+14144007103@127.0.0.1:5060\")");
    assert_single_error("name = \"x\"\n[target]\nuri = \"sip:a@b:notaport\"\n", "s/a.toml:3:7: bad target URI: ");
    let e = single_error("name = \"x\"\n[target]\nuri = \"sip:a@b\"\ntransport = \"sctp\"\n");
    assert_eq!(e, "s/a.toml:4:13: transport 'sctp' is not supported (expected \"udp\", \"tcp\" or \"tls\")");
}

#[test]
fn tls_target_settings() {
    let dir = std::env::temp_dir().join(format!("callprobe-scenario-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
    let file = format!("name = \"x\"\n[target]\nuri = \"sips:+1@sip.example.com\"\ntls_ca = \"{}\"\n", ca.display());
    let case = one(&file);
    let call = &case.call;
    assert_eq!(call.tls.ca.as_deref(), Some(ca.as_path()));
    let e = single_error("name = \"x\"\n[target]\nuri = \"sips:+1@h\"\ntls_ca = \"certs/ca.pem\"\n");
    assert_eq!(
        e,
        "s/a.toml:4:10: s/certs/ca.pem is not a file (expected a PEM file of CA certificates, relative to this scenario file)"
    );
    assert!(!call.tls.insecure);
    assert_eq!(crate::request::transport_for(call.transport, &call.target_uri).unwrap(), Transport::Tls);
    let case = one("name = \"x\"\n[target]\nuri = \"sip:+1@h\"\ntransport = \"TLS\"\ntls_insecure = true\n");
    assert_eq!((case.call.transport, case.call.tls.insecure), (Some(Transport::Tls), true));
    let both =
        format!("name = \"x\"\n[target]\nuri = \"sips:+1@h\"\ntls_ca = \"{}\"\ntls_insecure = true\n", ca.display());
    let e = single_error(&both);
    assert!(e.starts_with("s/a.toml:5:16: tls_insecure = true together with tls_ca (expected either tls_ca"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
    let e = single_error("name = \"x\"\n[target]\nuri = \"sips:+1@h\"\ntls_insecure = \"yes\"\n");
    assert!(e.starts_with("s/a.toml:4:"), "{e}");
}

#[test]
fn several_errors_in_one_file_are_all_reported_in_order() {
    let e =
        errors(&format!("{MINIMAL}[timeline]\nhangup_after = \"x\"\ntimeout = \"y\"\n[caller]\ncodecs = [\"opus\"]\n"));
    let at: Vec<&str> = e.iter().map(|e| e.split(": ").next().unwrap_or("")).collect();
    assert_eq!(at, ["s/a.toml:6:16", "s/a.toml:7:11", "s/a.toml:9:11"]);
}

#[test]
fn missing_variable_names_it_and_points_at_the_dollar() {
    let e = single_error("name = \"x\"\n[target]\nuri = \"sip:+1@${LIVEKIT_SIP_HOST}\"\n");
    assert_eq!(
        e,
        "s/a.toml:3:15: variable ${LIVEKIT_SIP_HOST} is not set (expected a matrix axis or an environment variable of that name)"
    );
    assert_single_error("name = \"x\"\n[target]\nuri = \"sip:${BROKEN@h\"\n", "s/a.toml:3:12: unterminated ${");
    // Comments are not substituted; $$ is a literal $.
    let case = one("# uri = \"sip:${NOT_SET}@h\"\nname = \"cost $$5 ${DOLLAR_USER}\"\n[target]\nuri = \"sip:a@b\"\n");
    assert_eq!(case.name(), "cost $5 u$er");
}

#[test]
fn literal_secrets_are_refused() {
    let e = single_error(&format!("{MINIMAL}[auth]\nuser = \"callprobe\"\npassword = \"hunter2\"\n"));
    assert_eq!(
        e,
        "s/a.toml:7:12: a literal password is not allowed in a scenario file (expected password_env = \"VAR\" or password_file = \"PATH\")"
    );
    assert!(!e.contains("hunter2"));
    assert_single_error(
        &format!("{MINIMAL}[livekit]\napi_secret = \"s3cret\"\n"),
        "s/a.toml:6:14: a literal API secret is not allowed",
    );
    assert_single_error(&format!("{MINIMAL}[matrix]\nA = [\"x\"]\n[[case]]\nwhen = {{ A = \"x\" }}\nauth = {{ user = \"u\", password = \"p\" }}\n"), "s/a.toml:9:33: a literal password is not allowed");
}

#[test]
fn auth_needs_a_user_and_exactly_one_password_reference() {
    assert_single_error(
        &format!("{MINIMAL}[auth]\nuser = \"callprobe\"\n"),
        "s/a.toml:6:8: an auth user without a password",
    );
    assert_single_error(
        &format!("{MINIMAL}[auth]\npassword_env = \"PW\"\n"),
        "s/a.toml:6:16: a password without an auth user",
    );
    assert_single_error(
        &format!("{MINIMAL}[auth]\nuser = \"u\"\npassword_env = \"PW\"\npassword_file = \"pw\"\n"),
        "s/a.toml:8:17: both password_env and password_file are set",
    );
    let e = single_error(&format!("{MINIMAL}[auth]\nuser = \"u\"\npassword_env = \"not a var\"\n"));
    assert!(e.starts_with("s/a.toml:7:16: 'not a var' is not an environment variable name"), "{e}");
}

const NUMBER_FORMATS: &str = r#"
name = "number formats ${CALLED}"
tags = ["runbook-5"]
[target]
uri = "sip:${CALLED}@127.0.0.1:5070"
[auth]
user = "${LK_SIP_USER}"
password_env = "LK_SIP_PASSWORD"
[expect]
final_responses = [404]
[matrix]
CALLED = ["+14144007103", "14144007103", "4144007103"]
[[case]]
when = { CALLED = "+14144007103" }
expect = { final_responses = [407, 200], agent = "probe-agent" }
tags = ["happy-path"]
"#;

#[test]
fn matrix_expands_with_per_value_expectations() {
    let cases = load(NUMBER_FORMATS).unwrap_or_else(|e| panic!("{e:#?}"));
    let names: Vec<&str> = cases.iter().map(|c| c.name()).collect();
    // The name shows ${CALLED} itself, so no "[CALLED=…]" suffix.
    assert_eq!(names, ["number formats +14144007103", "number formats 14144007103", "number formats 4144007103"]);
    assert_eq!(cases[0].call.target_uri, "sip:+14144007103@127.0.0.1:5070");
    assert_eq!(cases[0].call.expect.final_responses, finals(&[407, 200]));
    assert_eq!(expected_agent(&cases[0]), Some(Some("probe-agent")));
    assert_eq!(cases[0].tags(), ["runbook-5", "happy-path"]);
    assert_eq!(cases[1].call.expect.final_responses, finals(&[404]));
    assert!(cases[1].call.expect.agent.is_none());
    assert_eq!(cases[1].tags(), ["runbook-5"]);
    assert_eq!(cases[2].matrix, [("CALLED".to_string(), "4144007103".to_string())]);
    assert!(cases.iter().all(|c| c.scenario.starts_with("number formats ")));
}

#[test]
fn credentials_axis_drops_auth_per_value() {
    let cases = load(
        r#"
name = "credentials"
[target]
uri = "sip:+14144007103@127.0.0.1:5070"
[auth]
user = "callprobe"
password_env = "LK_SIP_PASSWORD"
[matrix]
credentials = ["with", "without", "wrong"]
[[case]]
when = { credentials = "with" }
expect.final_responses = [407, 200]
[[case]]
when = { credentials = "without" }
auth = false
expect.final_responses = [407]
[[case]]
when = { credentials = "wrong" }
auth = { user = "callprobe", password_env = "WRONG_PASSWORD" }
expect.final_responses = "any"
"#,
    )
    .unwrap_or_else(|e| panic!("{e:#?}"));
    let names: Vec<&str> = cases.iter().map(|c| c.name()).collect();
    assert_eq!(
        names,
        ["credentials [credentials=with]", "credentials [credentials=without]", "credentials [credentials=wrong]"]
    );
    let password = |c: &ScenarioCase| c.call.auth.as_ref().map(|a| a.password.clone());
    assert_eq!(password(&cases[0]), Some(SecretRef::Env("LK_SIP_PASSWORD".into())));
    assert_eq!(cases[0].call.expect.final_responses, finals(&[407, 200]));
    assert!(cases[1].call.auth.is_none());
    assert_eq!(cases[1].call.expect.final_responses, finals(&[407]));
    assert_eq!(password(&cases[2]), Some(SecretRef::Env("WRONG_PASSWORD".into())));
    assert_eq!(cases[2].call.expect.final_responses, FinalResponses::Any);
}

#[test]
fn two_axes_make_the_product_in_file_order() {
    let cases = load(
        r#"
name = "grid"
[target]
uri = "sip:${NUMBER}@127.0.0.1:5070"
transport = "${TRANSPORT}"
[matrix]
TRANSPORT = ["udp", "tcp"]
NUMBER = ["+14144007103", "+13658253552", "+19999999999"]
[[case]]
when = { NUMBER = "+19999999999" }
expect.final_responses = [404]
[[case]]
when = { NUMBER = "+19999999999", TRANSPORT = "tcp" }
tags = ["tcp-404"]
"#,
    )
    .unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(cases.len(), 6);
    assert_eq!(cases[0].name(), "grid [TRANSPORT=udp, NUMBER=+14144007103]");
    assert_eq!(cases[5].name(), "grid [TRANSPORT=tcp, NUMBER=+19999999999]");
    assert_eq!(cases[5].call.transport, Some(Transport::Tcp));
    assert_eq!(cases[2].call.expect.final_responses, finals(&[404]));
    assert_eq!(cases[5].tags(), ["tcp-404"]);
    assert!(cases[2].tags().is_empty());
}

#[test]
fn matrix_mistakes_point_at_the_axis_or_value() {
    let base = "name = \"m\"\n[target]\nuri = \"sip:${A}@h\"\n[matrix]\n";
    assert_single_error(&format!("{base}A = [\"1\"]\nB = [\"x\", \"y\"]\n"), "s/a.toml:6:1: matrix axis B is not used");
    assert_single_error(&format!("{base}A = []\n"), "s/a.toml:5:5: matrix axis A has no values");
    assert_single_error(&format!("{base}A = [\"1\", \"1\"]\n"), "s/a.toml:5:11: matrix axis A lists '1' twice");
    let e = single_error(&format!("{base}A = [\"1\", \"2\"]\n[[case]]\nwhen = {{ A = \"3\" }}\n"));
    assert_eq!(e, "s/a.toml:7:14: '3' is not a value of matrix axis A (expected one of: \"1\", \"2\")");
    let e = single_error(&format!("{base}A = [\"1\"]\n[[case]]\nwhen = {{ Z = \"1\" }}\n"));
    assert_eq!(e, "s/a.toml:7:10: `when` names 'Z', which is not a matrix axis (expected one of: A)");
    assert_single_error(
        &format!("{MINIMAL}[[case]]\nwhen = {{ A = \"1\" }}\n"),
        "s/a.toml:6:8: [[case]] overrides matrix cases, but this file has no [matrix]",
    );
    assert_single_error(
        &format!("{base}A = [\"1\"]\n[[case]]\nwhen = {{ A = \"1\" }}\nauth = true\n"),
        "s/a.toml:8:8: invalid value: boolean `true`, expected false",
    );
    let axis = (0..300).map(|i| format!("\"{i}\"")).collect::<Vec<_>>().join(",");
    let e = single_error(&format!("{base}A = [{axis}]\n"));
    assert!(
        e.starts_with("s/a.toml:5:1: the matrix expands to 300 cases (expected at most 256 cases per file)"),
        "{e}"
    );
}

#[test]
fn a_missing_variable_in_a_matrix_file_is_reported_once() {
    let e = errors("name = \"m\"\n[target]\nuri = \"sip:${A}@${NOPE}\"\n[matrix]\nA = [\"1\", \"2\", \"3\"]\n");
    assert_eq!(
        e,
        ["s/a.toml:3:17: variable ${NOPE} is not set (expected a matrix axis or an environment variable of that name)"]
    );
}

#[test]
fn directories_load_sorted_non_recursive_with_unique_names() {
    let scratch = Scratch::new("dir");
    scratch.write("b.toml", &MINIMAL.replace("minimal", "second"));
    scratch.write("a.toml", MINIMAL);
    scratch.write("notes.txt", "not a scenario");
    std::fs::create_dir_all(scratch.0.join("sub")).expect("subdir");
    scratch.write("sub/c.toml", "broken = ");
    let files = load_path_with_env(&scratch.0, &env).unwrap_or_else(|e| panic!("{e:#?}"));
    let names: Vec<&str> = cases(&files).map(|c| c.name()).collect();
    assert_eq!(names, ["minimal", "second"]);
    assert_eq!(check_path_with_env(&scratch.0, &env), (2, 2, Vec::new()));

    scratch.write("c.toml", MINIMAL);
    let (files, cases, errors) = check_path_with_env(&scratch.0, &env);
    assert_eq!((files, cases), (3, 2));
    let c = scratch.0.join("c.toml");
    let a = scratch.0.join("a.toml");
    assert_eq!(
        errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
        [format!(
            "{}:2:8: case name \"minimal\" is already used at {}:2:8 (expected a name unique in the suite)",
            c.display(),
            a.display()
        )]
    );

    let empty = scratch.0.join("sub/empty");
    std::fs::create_dir_all(&empty).expect("empty dir");
    let (_, _, errors) = check_path_with_env(&empty, &env);
    assert!(errors[0].to_string().ends_with(
        "no scenario files here (expected *.toml files directly in the directory (subdirectories are not searched))"
    ));
    let (files, _, errors) = check_path_with_env(&scratch.0.join("missing.toml"), &env);
    assert_eq!(files, 0);
    assert!(errors[0].to_string().contains("missing.toml: cannot read: "), "{}", errors[0]);
}

#[test]
fn tag_filters_include_any_and_exclude_all() {
    let mut case = one(MINIMAL);
    case.call.tags = vec!["smoke".into(), "slow".into()];
    let f = |tags: &[&str]| matches_tags(&case, &tags.iter().map(|t| t.to_string()).collect::<Vec<_>>());
    assert!(f(&[]));
    assert!(f(&["smoke"]));
    assert!(f(&["agent", "smoke"]));
    assert!(f(&["agent,smoke"]));
    assert!(!f(&["agent"]));
    assert!(!f(&["smoke", "!slow"]));
    assert!(!f(&["!slow"]));
    assert!(f(&["!flaky"]));
}

#[test]
fn an_empty_auth_table_is_an_error() {
    let e = single_error(&format!("{MINIMAL}[auth]\n"));
    assert_eq!(
        e,
        "s/a.toml:5:1: the auth table is empty (expected user and password_env or password_file (or no auth table, to call without credentials))"
    );
}

#[test]
fn an_expected_diagnosis_is_carried_to_the_case() {
    let case = one(&format!("{MINIMAL}[expect]\ndiagnosis = \"no_trunk_found\"\n"));
    assert_eq!(case.call.expect.diagnosis.as_deref(), Some("no_trunk_found"));
    assert_eq!(one(MINIMAL).call.expect.diagnosis, None);
}

/// Every step action and option, as the README shows them.
const CONVERSATION: &str = r#"
[conversation]
end_of_turn = "700ms"

[[step]]
agent_turn = "10s"
expect_said = "callprobe test line"

[[step]]
say = "fixtures/ask.wav"

[[step]]
agent_turn = true
expect_any = ["order", "four two seven"]

[[step]]
say_text = "What is my order number?"

[[step]]
agent_turn = "8s"
expect_like = "your order number is four two seven"
similarity = 0.7

[[step]]
dtmf = "1#a"

[[step]]
agent_turn = "5s"
expect_like = "thank you"

[[step]]
wait = "1s"

[[step]]
silence = "2s"

[[step]]
barge_in = "fixtures/ask.wav"
after = "500ms"
within = "6s"
stop_within = "1s"

[[step]]
barge_in_text = "Please stop talking."

[[step]]
hangup = true
"#;

#[test]
fn steps_become_the_conversation_in_order() {
    let scratch = Scratch::new("steps");
    std::fs::write(scratch.0.join("fixtures/ask.wav"), b"RIFF").expect("fixture");
    let path = scratch.write("conv.toml", &format!("{MINIMAL}{CONVERSATION}"));
    let files = load_path_with_env(&path, &env).unwrap_or_else(|e| panic!("{e:#?}"));
    let conv = &files[0].cases[0].call.conversation;
    assert_eq!(conv.end_of_turn, Duration::from_millis(700));
    let wav = scratch.0.join("fixtures/ask.wav");
    let turn = |secs: u64, expect: Option<SaidExpectation>| StepAction::AgentTurn {
        within: Duration::from_secs(secs),
        expect,
    };
    let actions: Vec<&StepAction> = conv.steps.iter().map(|s| &s.action).collect();
    assert_eq!(
        actions,
        [
            &turn(10, Some(SaidExpectation::Regex("callprobe test line".into()))),
            &StepAction::Say(Utterance::Wav(wav.clone())),
            &StepAction::AgentTurn {
                within: DEFAULT_TURN_WITHIN,
                expect: Some(SaidExpectation::AnyOf(vec!["order".into(), "four two seven".into()])),
            },
            &StepAction::Say(Utterance::Text("What is my order number?".into())),
            &turn(8, Some(SaidExpectation::Like { text: "your order number is four two seven".into(), min: 0.7 })),
            &StepAction::Dtmf("1#A".into()),
            &turn(5, Some(SaidExpectation::Like { text: "thank you".into(), min: DEFAULT_SIMILARITY })),
            &StepAction::Wait(Duration::from_secs(1)),
            &StepAction::Silence(Duration::from_secs(2)),
            &StepAction::BargeIn {
                utterance: Utterance::Wav(wav),
                after: Duration::from_millis(500),
                within: Duration::from_secs(6),
                stop_within: Duration::from_secs(1),
            },
            &StepAction::BargeIn {
                utterance: Utterance::Text("Please stop talking.".into()),
                after: DEFAULT_BARGE_IN_AFTER,
                within: DEFAULT_TURN_WITHIN,
                stop_within: DEFAULT_STOP_WITHIN,
            },
            &StepAction::HangUp,
        ]
    );
    // Each step's origin is its [[step]] header.
    let origins: Vec<String> = conv.steps.iter().map(|s| s.origin.clone()).collect();
    let at = |line: usize| format!("{}:{line}:1", path.display());
    assert_eq!(origins[0], at(9));
    assert_eq!(origins[1], at(13));
    assert_eq!(origins[11], at(50));
    assert!(files[0].cases[0].call.play.is_none());
}

#[test]
fn a_file_without_steps_has_no_conversation() {
    let case = one(MINIMAL);
    assert!(case.call.conversation.steps.is_empty());
    assert_eq!(case.call.conversation, crate::conversation::Conversation::default());
}

#[test]
fn step_values_are_substituted_per_case() {
    let cases = load(&format!(
        "{MINIMAL}[matrix]\nORDER = [\"427\", \"913\"]\n[[step]]\nagent_turn = \"4s\"\n\
         expect_said = \"order ${{ORDER}}\"\n[[step]]\nsay_text = \"my order is ${{ORDER}}, ${{LK_SIP_USER}}\"\n"
    ))
    .unwrap_or_else(|e| panic!("{e:#?}"));
    assert_eq!(cases.len(), 2);
    let said = |c: &ScenarioCase| match &c.call.conversation.steps[1].action {
        StepAction::Say(Utterance::Text(t)) => t.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(said(&cases[0]), "my order is 427, callprobe");
    assert_eq!(said(&cases[1]), "my order is 913, callprobe");
    assert_eq!(
        cases[1].call.conversation.steps[0].action,
        StepAction::AgentTurn {
            within: Duration::from_secs(4),
            expect: Some(SaidExpectation::Regex("order 913".into()))
        }
    );
    assert_single_error(
        &format!("{MINIMAL}[[step]]\nsay_text = \"hi ${{NOPE}}\"\n"),
        "s/a.toml:6:16: variable ${NOPE} is not set",
    );
}

#[test]
fn each_step_error_has_its_exact_line_and_column() {
    let cases: &[(&str, &str)] = &[
        ("[[step]]\nwait = \"1s\"\ndtmf = \"1\"", "s/a.toml:7:1: a [[step]] does one thing: this one has both wait and dtmf (expected dtmf in a [[step]] of its own)"),
        ("[[step]]\nsay_text = \"hi\"\nsay = \"x.wav\"", "s/a.toml:7:1: a [[step]] does one thing: this one has both say_text and say"),
        ("[[step]]\nexpect_said = \"hello\"", "s/a.toml:5:1: this [[step]] has no action (expected one of agent_turn, say, say_text, dtmf, wait, silence, barge_in, barge_in_text, hangup (one per [[step]]))"),
        ("[[step]]\nsay_text = \"hi\"\nexpect_said = \"x\"", "s/a.toml:7:1: expect_said is only for agent_turn steps, not say_text (expected expect_said in a [[step]] with agent_turn = \"10s\": what the agent says in its turn)"),
        ("[[step]]\ndtmf = \"1\"\nexpect_any = [\"x\"]", "s/a.toml:7:1: expect_any is only for agent_turn steps, not dtmf"),
        ("[[step]]\nagent_turn = \"5s\"\nexpect_said = \"x\"\nexpect_like = \"y\"", "s/a.toml:8:1: an agent turn has one expectation: this one has both expect_said and expect_like"),
        ("[[step]]\nagent_turn = \"5s\"\nexpect_said = \"(order\"", "s/a.toml:7:15: '(order' is not a regular expression: unclosed group (expected a regular expression (case-insensitive), like \"order number|account\")"),
        ("[[step]]\nagent_turn = \"5s\"\nexpect_said = \"\"", "s/a.toml:7:15: expect_said is empty"),
        ("[[step]]\nagent_turn = \"5s\"\nexpect_any = []", "s/a.toml:7:14: expect_any is empty"),
        ("[[step]]\nagent_turn = \"5s\"\nexpect_any = [\"a\", \" \"]", "s/a.toml:7:20: an empty phrase"),
        ("[[step]]\nagent_turn = \"5s\"\nexpect_like = \"hello there\"\nsimilarity = 1.5", "s/a.toml:8:14: similarity 1.5 is out of range (expected a number from 0 to 1, like 0.8 (1 - word error rate))"),
        ("[[step]]\nagent_turn = \"5s\"\nexpect_like = \"hi\"\nsimilarity = -0.1", "s/a.toml:8:14: similarity -0.1 is out of range"),
        ("[[step]]\nagent_turn = \"5s\"\nsimilarity = 0.5", "s/a.toml:7:1: similarity without expect_like (expected expect_like = \"…\" in the same [[step]])"),
        ("[[step]]\nagent_turn = \"0s\"", "s/a.toml:6:14: agent_turn must be more than zero"),
        ("[[step]]\nagent_turn = \"soon\"", "s/a.toml:6:14: 'soon' is not a duration"),
        ("[[step]]\nagent_turn = false", "s/a.toml:6:14: agent_turn = false does nothing (expected a deadline for the agent's turn to start, like \"10s\", or true for the default (10s))"),
        ("[[step]]\nagent_turn = 10", "s/a.toml:6:14: invalid type: integer `10`, expected a deadline like \"10s\", or true for the default"),
        ("[[step]]\nagent_turn = \"5s\"\nwithin = \"5s\"", "s/a.toml:7:1: within is only for barge_in steps, not agent_turn (expected agent_turn = \"10s\": the turn's deadline is its value)"),
        ("[[step]]\nsay_text = \"hi\"\nafter = \"1s\"", "s/a.toml:7:1: after is only for barge_in steps, not say_text (expected after in a [[step]] with barge_in or barge_in_text)"),
        ("[[step]]\ndtmf = \"12x\"", "s/a.toml:6:11: 'x' is not a DTMF key (expected DTMF keys: 0-9, *, # and A-D, like \"1#\")"),
        ("[[step]]\ndtmf = \"\"", "s/a.toml:6:8: dtmf is empty"),
        ("[[step]]\nsay = \"nope.wav\"", "s/a.toml:6:7: s/nope.wav is not a file (expected a WAV file, relative to this scenario file)"),
        ("[[step]]\nbarge_in = \"nope.wav\"", "s/a.toml:6:12: s/nope.wav is not a file"),
        ("[[step]]\nsay_text = \"  \"", "s/a.toml:6:12: say_text is empty"),
        ("[[step]]\nbarge_in_text = \"stop\"\nstop_within = \"0s\"", "s/a.toml:7:15: stop_within must be more than zero"),
        ("[[step]]\nwait = \"0s\"", "s/a.toml:6:8: wait must be more than zero"),
        ("[[step]]\nsilence = \"2 fortnights\"", "s/a.toml:6:11: '2 fortnights' is not a duration"),
        ("[[step]]\nhangup = false", "s/a.toml:6:10: hangup = false does nothing (expected hangup = true, or no such [[step]])"),
        ("[[step]]\nsay_txt = \"hi\"", "s/a.toml:6:1: unknown field `say_txt`, expected one of"),
        ("[conversation]\nend_of_turn = \"1s\"", "s/a.toml:5:1: [conversation] without [[step]] (expected [[step]] tables, the conversation these settings are for)"),
        ("[conversation]\nend_of_turn = \"0s\"\n[[step]]\nhangup = true", "s/a.toml:6:15: end_of_turn must be more than zero"),
    ];
    assert_minimal_plus_errs(cases);
}

#[test]
fn steps_and_timeline_play_conflict() {
    let scratch = Scratch::new("steps-play");
    std::fs::write(scratch.0.join("fixtures/hello.wav"), b"RIFF").expect("fixture");
    let path = scratch.write(
        "a.toml",
        &format!("{MINIMAL}[timeline]\nplay = \"fixtures/hello.wav\"\n[[step]]\nagent_turn = \"5s\"\n"),
    );
    let e = load_path_with_env(&path, &env).err().unwrap_or_default();
    let e: Vec<String> = e.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        e,
        [format!(
            "{}:6:1: [timeline] play and the [[step]] conversation (line 7) both say something (expected one of them: \
             for a conversation, a [[step]] say = \"WAV\" where play is (after an agent_turn step for play_after = \
             \"greeting\"); else play without [[step]])",
            path.display()
        )]
    );
}

#[test]
fn every_broken_step_is_reported() {
    let e = errors(&format!(
        "{MINIMAL}[[step]]\ndtmf = \"x\"\n[[step]]\nwait = \"0s\"\n[[step]]\n[[step]]\nhangup = true\n"
    ));
    let at: Vec<&str> = e.iter().map(|e| e.split(": ").next().unwrap_or("")).collect();
    assert_eq!(at, ["s/a.toml:6:9", "s/a.toml:8:8", "s/a.toml:9:1"]);
}

#[test]
fn the_documented_step_examples_load() {
    let scratch = Scratch::new("doc-steps");
    std::fs::create_dir_all(scratch.0.join("sub")).expect("subdir");
    for doc in ["README.md", "scenarios/README.md"] {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(doc)).expect("doc");
        let block = text
            .split("```toml\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .find(|b| b.contains("[[step]]"))
            .unwrap_or_else(|| panic!("{doc}: no [[step]] example"));
        // The WAVs it names, as empty stand-ins: only their existence is checked here.
        for name in block.split('"').filter(|s| s.starts_with("../fixtures/")) {
            std::fs::write(scratch.0.join("sub").join(name), b"RIFF").expect("stand-in");
        }
        let path = scratch.write("sub/doc.toml", &format!("{MINIMAL}{block}"));
        let files = load_path_with_env(&path, &env).unwrap_or_else(|e| panic!("{doc}: {e:#?}"));
        assert_eq!(files[0].cases[0].call.conversation.steps.len(), 7, "{doc}");
    }
}

#[test]
fn objectives_parse_and_a_bad_one_is_pointed_at() {
    let case = one(&format!(
        "slo = [\"first_audio.p95 <= 2.5s\", \"success >= 99%\"]\n{MINIMAL}[regression]\nworse_than_median_percent = 30\n"
    ));
    assert_eq!(case.slo.rules.len(), 2);
    let regression = case.slo.regression.as_ref().expect("[regression]");
    assert_eq!((regression.worse_percent, regression.runs), (30.0, 7));
    assert_eq!(case.call.scenario.as_deref(), Some("minimal"));
    let e = single_error(&format!("slo = [\"latency.p95 <= 2s\"]\n{MINIMAL}"));
    assert!(e.contains(":1:") && e.contains("bad objective 'latency.p95 <= 2s'") && e.contains("METRIC.pNN"), "{e}");
    let e = single_error(&format!("{MINIMAL}[regression]\nworse_than_median_percent = 30\nmetrics = [\"latency\"]\n"));
    assert!(e.contains("unknown metric 'latency'"), "{e}");
}
