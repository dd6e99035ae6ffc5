//! The shipped scenario suites load, expand and turn into calls; broken
//! files are reported as `file:line:col: message`. Through the library
//! (`callprobe::scenario`), and through `callprobe check` once the binary
//! has that subcommand.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard};

use callprobe::request::PlayStart;
use callprobe::request::{FinalResponses, SecretRef};
use callprobe::scenario::{self, check_path, load_path, matches_tags, ScenarioCase};

/// The tests here set and remove process environment variables.
static ENV_LOCK: Mutex<()> = Mutex::new(());

/// What the shipped suites need: the testbed's dev-only values
/// (testbed/testbed.env) and placeholders for the cloud templates.
const ENV: &[(&str, &str)] = &[
    ("LK_SIP_USER", "callprobe"),
    ("LK_SIP_PASSWORD", "testbed-dev-only-not-secret-7d41"),
    ("LIVEKIT_SIP_HOST", "example.sip.livekit.cloud"),
    ("CALLED_NUMBER", "+14144007103"),
    ("CALLED_DIGITS", "14144007103"),
    ("CALLED_NATIONAL", "4144007103"),
    ("CALLER_NUMBER", "+15550100123"),
    ("SIP_AUTH_USER", "example-user"),
    ("SIP_AUTH_PASSWORD", "placeholder-not-a-secret"),
    ("AGENT_NAME", "example-agent"),
    ("LIVEKIT_URL", "wss://example.livekit.cloud"),
    ("LIVEKIT_API_KEY", "APIexample"),
];

fn with_env() -> MutexGuard<'static, ()> {
    let guard = ENV_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    for (k, v) in ENV {
        std::env::set_var(k, v);
    }
    guard
}

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

fn load_cases(path: &str) -> Vec<ScenarioCase> {
    match load_path(&repo(path)) {
        Ok(files) => files.into_iter().flat_map(|f| f.cases).collect(),
        Err(errors) => panic!("{path}:\n{}", errors.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")),
    }
}

fn names(cases: &[ScenarioCase]) -> Vec<&str> {
    cases.iter().map(|c| c.name()).collect()
}

fn finals(codes: &[u16]) -> FinalResponses {
    FinalResponses::Exactly(codes.to_vec())
}

/// The `lk.agent_name` a case expects: `Some(None)` for any agent.
fn agent_name(case: &ScenarioCase) -> Option<Option<&str>> {
    case.call.expect.agent.as_ref().map(|a| a.name())
}

fn auth_user(case: &ScenarioCase) -> Option<&str> {
    case.call.auth.as_ref().map(|a| a.user.as_str())
}

fn case<'a>(cases: &'a [ScenarioCase], name: &str) -> &'a ScenarioCase {
    cases.iter().find(|c| c.name() == name).unwrap_or_else(|| panic!("no case {name:?} in {:?}", names(cases)))
}

#[test]
fn every_shipped_case_becomes_a_call() {
    let _env = with_env();
    for suite in ["scenarios", "scenarios/local-trunk", "scenarios/templates"] {
        for case in load_cases(suite) {
            // Secrets and fixtures are read here, as the runner will.
            if let Err(e) = case.prepare() {
                panic!("{suite}: {e}");
            }
        }
    }
}

#[test]
fn testbed_smoke_suite() {
    let _env = with_env();
    let cases = load_cases("scenarios");
    assert_eq!(
        names(&cases),
        [
            "smoke: agent greets and answers",
            "smoke: conversation, turn by turn",
            "smoke: credentials [credentials=with]",
            "smoke: credentials [credentials=without]",
            "smoke: credentials [credentials=wrong-password]",
            "smoke: called number +14144007103",
            "smoke: called number 14144007103",
            "smoke: called number 4144007103",
            "smoke: unknown number is refused",
        ]
    );
    assert!(cases.iter().all(|c| c.tags().iter().any(|t| t == "smoke")));
    assert!(cases.iter().all(|c| c.call.target_uri.contains("@127.0.0.1:5060")));
    let with = case(&cases, "smoke: credentials [credentials=with]");
    assert_eq!(with.call.expect.final_responses, finals(&[407, 200]));
    assert_eq!(agent_name(with), Some(Some("probe-agent")));
    assert_eq!(auth_user(with), Some("callprobe"));
    let without = case(&cases, "smoke: credentials [credentials=without]");
    assert_eq!(without.call.expect.final_responses, finals(&[407]));
    assert!(without.call.auth.is_none() && without.call.expect.agent.is_none());
    let talk = case(&cases, "smoke: agent greets and answers");
    assert!(talk.call.play.as_ref().is_some_and(|p| p.start == PlayStart::AfterGreeting && p.wav.is_file()));
    assert_eq!(talk.call.expect.media.max_loss_percent, Some(1.0));
    let dialog = case(&cases, "smoke: conversation, turn by turn");
    assert_eq!(dialog.call.conversation.steps.len(), 5);
    assert!(dialog.call.conversation.expects_words() && dialog.call.play.is_none());
    assert_eq!(dialog.call.hangup_after, callprobe::request::CONVERSATION_HANGUP_CAP, "the script ends the call");
    let e164 = case(&cases, "smoke: called number +14144007103");
    assert_eq!(e164.call.expect.final_responses, finals(&[407, 200]));
    let bare = case(&cases, "smoke: called number 4144007103");
    assert_eq!(bare.call.target_uri, "sip:4144007103@127.0.0.1:5060");
    assert_eq!(bare.call.expect.diagnosis.as_deref(), Some("called_number_not_on_trunk"));
    let wrong = case(&cases, "smoke: credentials [credentials=wrong-password]");
    assert_eq!(wrong.call.expect.diagnosis.as_deref(), Some("credentials_rejected"));
    let password = wrong.call.auth.as_ref().map(|a| &a.password);
    assert!(matches!(password, Some(SecretRef::File(p)) if p.is_file()), "{password:?}");
    let unknown = case(&cases, "smoke: unknown number is refused");
    assert_eq!(unknown.call.expect.diagnosis.as_deref(), Some("called_number_not_on_trunk"));
    let runbook5: Vec<_> = cases.iter().filter(|c| matches_tags(c, &["runbook-5".into()])).collect();
    assert_eq!(runbook5.len(), 3);
}

#[test]
fn local_trunk_suite_expects_what_the_demo_trunk_does() {
    let _env = with_env();
    let cases = load_cases("scenarios/local-trunk");
    let expected: Vec<(&str, Option<String>)> = cases
        .iter()
        .map(|c| match &c.call.expect.final_responses {
            FinalResponses::Exactly(codes) => {
                (c.name(), Some(codes.iter().map(u16::to_string).collect::<Vec<_>>().join(",")))
            }
            FinalResponses::Answered | FinalResponses::Any => (c.name(), None),
        })
        .collect();
    let expected: Vec<(&str, Option<&str>)> = expected.iter().map(|(n, f)| (*n, f.as_deref())).collect();
    assert_eq!(
        expected,
        [
            ("stand-in (not LiveKit): credentials [credentials=with]", Some("407,200")),
            ("stand-in (not LiveKit): credentials [credentials=without]", Some("407")),
            ("stand-in (not LiveKit): credentials [credentials=wrong-user]", Some("407,407")),
            ("stand-in (not LiveKit): the agent greets within 3 s", Some("407,200")),
            ("stand-in (not LiveKit): called number +14144007103", Some("407,200")),
            ("stand-in (not LiveKit): called number 14144007103", Some("404")),
            ("stand-in (not LiveKit): called number 4144007103", Some("404")),
            ("stand-in (not LiveKit): credentials over TCP", Some("407,200")),
            ("stand-in (not LiveKit): unknown number is refused", Some("404")),
        ]
    );
    for c in &cases {
        assert!(c.call.target_uri.contains("@127.0.0.1:5070"), "{}", c.name());
        // No agent there (no LiveKit); only the greeting case plays and listens.
        assert!(c.call.expect.agent.is_none(), "{}", c.name());
        let media = c.name() == "stand-in (not LiveKit): the agent greets within 3 s";
        assert_eq!(c.call.play.is_some(), media, "{}", c.name());
        assert_eq!(c.call.expect.media.speech_within.is_some(), media, "{}", c.name());
        assert_ne!(c.call.expect.final_responses, FinalResponses::Any, "{}", c.name());
    }
    let wrong = case(&cases, "stand-in (not LiveKit): credentials [credentials=wrong-user]");
    assert_eq!(auth_user(wrong), Some("not-callprobe"));
}

#[test]
fn cloud_templates_use_only_references() {
    let _env = with_env();
    let cases = load_cases("scenarios/templates");
    assert_eq!(cases.len(), 5);
    for c in &cases {
        assert!(c.call.target_uri.ends_with("@example.sip.livekit.cloud"), "{}", c.call.target_uri);
        assert_eq!(c.call.livekit.api_secret_env.as_deref(), Some("LIVEKIT_API_SECRET"));
    }
    let with = case(&cases, "cloud: credentials [credentials=with]");
    assert_eq!(with.call.auth.as_ref().map(|a| &a.password), Some(&SecretRef::Env("SIP_AUTH_PASSWORD".into())));
    assert_eq!(agent_name(with), Some(Some("example-agent")));
    let text: String = ["livekit-cloud-telnyx.toml", "livekit-cloud-telnyx-number-formats.toml"]
        .iter()
        .map(|f| std::fs::read_to_string(repo("scenarios/templates").join(f)).unwrap_or_default())
        .collect();
    assert!(!text.contains("testbed-dev-only"), "a template holds the testbed password");
    assert!(
        !text.lines().any(|l| {
            let l = l.trim_start();
            l.starts_with("password ") || l.starts_with("password=")
        }),
        "a template has a password key"
    );
}

#[test]
fn a_missing_variable_names_itself_and_the_file() {
    let _env = with_env();
    std::env::remove_var("LIVEKIT_SIP_HOST");
    let (files, cases, errors) = check_path(&repo("scenarios/templates"));
    std::env::set_var("LIVEKIT_SIP_HOST", "example.sip.livekit.cloud");
    assert_eq!((files, cases), (2, 0));
    let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    let file = repo("scenarios/templates/livekit-cloud-telnyx.toml");
    assert!(
        lines.iter().any(|l| l.starts_with(&format!("{}:25:29:", file.display()))
            && l.contains("variable ${LIVEKIT_SIP_HOST} is not set")),
        "{lines:#?}"
    );
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn broken_suite() -> Scratch {
    let dir = std::env::temp_dir().join(format!("callprobe-scenario-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let files = [
        ("a-good.toml", "name = \"good\"\n[target]\nuri = \"sip:+14144007103@127.0.0.1:5070\"\n"),
        ("b-syntax.toml", "name = \"syntax\"\n[target\n"),
        (
            "c-semantic.toml",
            "name = \"semantic\"\n[target]\nuri = \"sip:+1@h\"\ntransport = \"sctp\"\n[timeline]\nhangup_after = \"soon\"\n",
        ),
        ("d-secret.toml", "name = \"secret\"\n[target]\nuri = \"sip:+1@h\"\n[auth]\nuser = \"u\"\npassword = \"hunter2\"\n"),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).expect("scratch file");
    }
    Scratch(dir)
}

#[test]
fn broken_files_are_reported_with_positions() {
    let _env = with_env();
    let suite = broken_suite();
    let (files, cases, errors) = check_path(&suite.0);
    assert_eq!((files, cases), (4, 1));
    let at = |name: &str| suite.0.join(name).display().to_string();
    let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(lines.len(), 4, "{lines:#?}");
    assert!(lines[0].starts_with(&format!("{}:2:8: ", at("b-syntax.toml"))), "{}", lines[0]);
    assert_eq!(
        lines[1],
        format!(
            "{}:4:13: transport 'sctp' is not supported (expected \"udp\", \"tcp\" or \"tls\")",
            at("c-semantic.toml")
        )
    );
    assert!(lines[2].starts_with(&format!("{}:6:16: 'soon' is not a duration", at("c-semantic.toml"))), "{}", lines[2]);
    assert!(
        lines[3].starts_with(&format!("{}:6:12: a literal password is not allowed", at("d-secret.toml"))),
        "{}",
        lines[3]
    );
    assert!(lines.iter().all(|l| !l.contains("hunter2")));
    assert!(scenario::load_path(&suite.0).is_err());
}

/// Whether the binary has `check` yet (the runner is wired separately).
fn binary_has_check() -> bool {
    Command::new(env!("CARGO_BIN_EXE_callprobe")).args(["check", "--help"]).output().is_ok_and(|o| o.status.success())
}

#[test]
fn check_subcommand_when_present() {
    if !binary_has_check() {
        eprintln!("callprobe has no `check` subcommand yet; tested through the library only");
        return;
    }
    let _env = with_env();
    let run = |path: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_callprobe")).arg("check").arg(path).output().expect("run callprobe");
        (out.status.code(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
    };
    for suite in ["scenarios", "scenarios/local-trunk", "scenarios/templates"] {
        let (code, text) = run(&repo(suite));
        assert_eq!(code, Some(0), "{suite}: {text}");
    }
    let suite = broken_suite();
    let (code, text) = run(&suite.0);
    assert_eq!(code, Some(2), "{text}");
    assert!(
        text.contains(&format!(
            "{}:4:13: transport 'sctp' is not supported",
            suite.0.join("c-semantic.toml").display()
        )),
        "{text}"
    );
}

/// A scenario whose `password_env` names a variable nobody set.
fn unset_password_suite() -> Scratch {
    let dir = std::env::temp_dir().join(format!("callprobe-scenario-unset-pw-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let text = "name = \"needs a password\"\n[target]\nuri = \"sip:+14144007103@127.0.0.1:5070\"\n\
                [auth]\nuser = \"callprobe\"\npassword_env = \"CALLPROBE_TEST_UNSET_PASSWORD\"\n";
    std::fs::write(dir.join("pw.toml"), text).expect("scratch file");
    Scratch(dir)
}

#[test]
fn an_unset_password_env_fails_check_and_run_at_its_key() {
    let _env = with_env();
    std::env::remove_var("CALLPROBE_TEST_UNSET_PASSWORD");
    let suite = unset_password_suite();
    let file = suite.0.join("pw.toml");
    let expected =
        format!("{}:6:1: password_env: environment variable CALLPROBE_TEST_UNSET_PASSWORD is not set", file.display());
    let (files, cases, errors) = check_path(&suite.0);
    assert_eq!((files, cases), (1, 0));
    let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(lines[0].starts_with(&expected), "{lines:#?}");

    for sub in ["check", "run"] {
        let out = Command::new(env!("CARGO_BIN_EXE_callprobe"))
            .arg(sub)
            .arg(&suite.0)
            .args(if sub == "run" { vec!["--report-dir".into(), suite.0.join("reports")] } else { vec![] })
            .env_remove("CALLPROBE_TEST_UNSET_PASSWORD")
            .output()
            .expect("run callprobe");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(out.status.code(), Some(2), "{sub}: {text}");
        assert!(text.contains(&expected), "{sub}: {text}");
        assert!(!text.contains("--auth-password-env"), "{sub} names a flag the user did not give: {text}");
        assert!(!text.contains(": ok"), "{sub}: {text}");
    }
}

/// A suite with a conversation that loads and one whose steps are broken.
fn conversation_suite() -> Scratch {
    let dir = std::env::temp_dir().join(format!("callprobe-scenario-steps-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let wav = repo("fixtures/hello_can_you_hear_me_16k.wav");
    let good = format!(
        "name = \"conversation\"\n[target]\nuri = \"sip:+14144007103@127.0.0.1:5060\"\n\
         [[step]]\nagent_turn = \"10s\"\nexpect_said = \"callprobe test line\"\n\
         [[step]]\nsay = \"{}\"\n\
         [[step]]\nagent_turn = true\nexpect_any = [\"order\", \"four two seven\"]\n",
        wav.display()
    );
    let bad = "name = \"broken conversation\"\n[target]\nuri = \"sip:+14144007103@127.0.0.1:5060\"\n\
               [[step]]\nwait = \"1s\"\ndtmf = \"1\"\n\
               [[step]]\ndtmf = \"12x\"\n";
    std::fs::write(dir.join("a-good.toml"), good).expect("scratch file");
    std::fs::write(dir.join("b-bad.toml"), bad).expect("scratch file");
    Scratch(dir)
}

#[test]
fn conversations_load_and_broken_steps_are_reported_at_their_place() {
    let _env = with_env();
    let suite = conversation_suite();
    let files = load_path(&suite.0.join("a-good.toml")).unwrap_or_else(|e| panic!("{e:?}"));
    let case = &files[0].cases[0];
    assert_eq!(case.call.conversation.steps.len(), 3);
    let origin = &case.call.conversation.steps[1].origin;
    assert_eq!(*origin, format!("{}:7:1", suite.0.join("a-good.toml").display()));

    let bad = suite.0.join("b-bad.toml").display().to_string();
    let expected = [
        format!("{bad}:6:1: a [[step]] does one thing: this one has both wait and dtmf"),
        format!("{bad}:8:11: 'x' is not a DTMF key"),
    ];
    let (files, cases, errors) = check_path(&suite.0);
    assert_eq!((files, cases), (2, 1));
    let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    for (line, want) in lines.iter().zip(&expected) {
        assert!(line.starts_with(want.as_str()), "{line}\nwant: {want}");
    }
    if binary_has_check() {
        let out = Command::new(env!("CARGO_BIN_EXE_callprobe")).arg("check").arg(&suite.0).output().expect("run");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(expected.iter().all(|want| text.contains(want.as_str())), "{text}");
    }
}
