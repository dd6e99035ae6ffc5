//! `callprobe call` over SIP over TLS against real peers on 127.0.0.1:
//! Kamailio's tls module as the trunk (digest challenge, Record-Route) in
//! front of a SIPp answering UAS, with certificates made here by rcgen: a
//! test CA, a good server certificate (127.0.0.1 and localhost), an expired
//! one, one for another host, and one from another CA. Each test starts its
//! own peers on free ports.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use serde_json::Value;
use support::peers::{free_port, require_tools, Kamailio, Sipp, TempDir, Tool, TrunkConfig, TrunkTls};

const PASSWORD_VAR: &str = "CALLPROBE_TEST_TRUNK_PASSWORD";
const NUMBER: &str = "+14144007103";

/// A CA and the server certificates of the tests, as PEM files in a temp dir.
struct Pki {
    dir: TempDir,
}

/// Which server certificate the trunk presents.
#[derive(Clone, Copy, Debug)]
enum ServerCert {
    /// 127.0.0.1 and localhost, from the test CA, valid now.
    Good,
    /// Same names and CA, expired in 2021.
    Expired,
    /// Only `sip.other.test`, from the test CA.
    WrongHost,
    /// 127.0.0.1 and localhost, from another CA.
    OtherCa,
}

impl ServerCert {
    fn name(self) -> &'static str {
        match self {
            ServerCert::Good => "good",
            ServerCert::Expired => "expired",
            ServerCert::WrongHost => "wrong-host",
            ServerCert::OtherCa => "other-ca",
        }
    }
}

fn ca(name: &str) -> (CertificateParams, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    (params, key)
}

impl Pki {
    fn new() -> Pki {
        let dir = TempDir::new("tls-pki").unwrap();
        let (ca_params, ca_key) = ca("callprobe test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        std::fs::write(dir.path().join("ca.pem"), ca_cert.pem()).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let (other_params, other_key) = ca("another CA");
        let other = Issuer::new(other_params, other_key);
        let local = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        for cert in [ServerCert::Good, ServerCert::Expired, ServerCert::WrongHost, ServerCert::OtherCa] {
            let names =
                if matches!(cert, ServerCert::WrongHost) { vec!["sip.other.test".into()] } else { local.clone() };
            let mut params = CertificateParams::new(names).unwrap();
            params.distinguished_name.push(DnType::CommonName, format!("callprobe test trunk ({})", cert.name()));
            if matches!(cert, ServerCert::Expired) {
                params.not_before = rcgen::date_time_ymd(2020, 1, 1);
                params.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
            let key = KeyPair::generate().unwrap();
            let signed = match cert {
                ServerCert::OtherCa => params.signed_by(&key, &other),
                _ => params.signed_by(&key, &issuer),
            }
            .unwrap();
            std::fs::write(dir.path().join(format!("{}.pem", cert.name())), signed.pem()).unwrap();
            std::fs::write(dir.path().join(format!("{}.key", cert.name())), key.serialize_pem()).unwrap();
        }
        Pki { dir }
    }

    fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    fn trunk_tls(&self, cert: ServerCert) -> TrunkTls {
        TrunkTls {
            cert: self.dir.path().join(format!("{}.pem", cert.name())),
            key: self.dir.path().join(format!("{}.key", cert.name())),
        }
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    report: Option<Value>,
}

impl Run {
    fn report(&self) -> &Value {
        self.report.as_ref().unwrap_or_else(|| panic!("no report.json\n{}", self.explain()))
    }
    fn call(&self) -> &Value {
        &self.report()["calls"][0]
    }
    fn diagnosis_codes(&self) -> Vec<String> {
        self.call()["diagnosis"].as_array().unwrap().iter().map(|d| d["code"].as_str().unwrap().to_string()).collect()
    }
    fn sent(&self, method: &str) -> Vec<String> {
        self.call()["sip"]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["dir"] == "out" && m["first_line"].as_str().unwrap().starts_with(method))
            .map(|m| m["raw"].as_str().unwrap().to_string())
            .collect()
    }
    fn explain(&self) -> String {
        format!("exit {}\nstdout:\n{}\nstderr:\n{}", self.code, self.stdout, self.stderr)
    }
}

fn callprobe(args: &[&str]) -> Run {
    let dir = TempDir::new("callprobe-report").unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_callprobe"));
    cmd.args(args).arg("--report-dir").arg(dir.path()).env(PASSWORD_VAR, "callprobe-secret");
    for var in ["LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"] {
        cmd.env_remove(var);
    }
    let out = cmd.output().expect("run callprobe");
    let report_text = std::fs::read_to_string(dir.path().join("report.json")).unwrap_or_default();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        report: serde_json::from_str(&report_text).ok(),
    }
}

/// The trunk serving `cert` over TLS, in front of a SIPp UAS when `uas`.
fn tls_trunk(pki: &Pki, cert: ServerCert, uas: bool) -> (Kamailio, Option<Sipp>) {
    let uas_port = free_port(false);
    let sipp = uas.then(|| Sipp::start("uas_answer_test_id.xml", uas_port).expect("start SIPp"));
    let mut cfg = TrunkConfig::new(uas_port);
    cfg.tls = Some(pki.trunk_tls(cert));
    let trunk = Kamailio::start(cfg).expect("start Kamailio with its tls module (Debian kamailio-tls-modules)");
    (trunk, sipp)
}

fn authed<'a>(uri: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec!["call", uri, "--auth-user", "callprobe", "--auth-password-env", PASSWORD_VAR];
    v.extend(["--hangup-after", "1s", "--expect", "407,200"]);
    v.extend_from_slice(extra);
    v
}

fn path_str(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A full call over TLS: 407 → authenticated INVITE → 200, ACK and BYE
/// through the trunk's Record-Route, all on the TLS connection.
fn full_call(test: &str, host: &str, uri_of: impl Fn(&Kamailio) -> String, extra: &[&str]) -> (Run, Kamailio) {
    let _ = test;
    let pki = Pki::new();
    let (trunk, uas) = tls_trunk(&pki, ServerCert::Good, true);
    let uri = uri_of(&trunk);
    let ca = pki.ca();
    let mut args = authed(&uri, &["--tls-ca", path_str(&ca)]);
    args.extend_from_slice(extra);
    let run = callprobe(&args);
    let outcome = uas.unwrap().wait(Duration::from_secs(15));
    assert_eq!(run.code, 0, "{}\nkamailio:\n{}", run.explain(), trunk.log());
    assert!(outcome.success, "UAS scenario (ACK/BYE through the trunk): {}", outcome.log);
    let call = run.call();
    assert_eq!(call["transport"], "tls");
    assert_eq!(call["tls"]["verified"], true);
    assert_eq!(call["tls"]["server_name"], host);
    assert_eq!(call["sip"]["ended"]["kind"], "hung_up");
    let invites = run.sent("INVITE");
    assert_eq!(invites.len(), 2, "one challenge, one authenticated retry");
    assert!(invites[1].contains("Proxy-Authorization: Digest"));
    for m in invites.iter().chain(&run.sent("ACK")).chain(&run.sent("BYE")) {
        assert!(m.contains("Via: SIP/2.0/TLS 127.0.0.1:"), "not a TLS Via: {m}");
    }
    for m in ["ACK", "BYE"] {
        let sent = run.sent(m);
        assert!(sent.iter().any(|r| r.contains("Route: <sip") && r.contains(";transport=tls")), "{sent:?}");
    }
    // Every message went to the trunk's TLS port.
    let tls_port = trunk.tls_port.unwrap();
    for m in run.call()["sip"]["messages"].as_array().unwrap() {
        assert_eq!(m["peer"], format!("127.0.0.1:{tls_port}"), "{m}");
    }
    assert!(run.stdout.contains("tls      TLS certificate of"), "{}", run.explain());
    (run, trunk)
}

#[test]
fn sips_call_with_digest_auth_over_tls_passes() {
    if !require_tools("sips_call_with_digest_auth_over_tls_passes", &[Tool::Sipp, Tool::Kamailio]) {
        return;
    }
    let (run, _trunk) =
        full_call("sips_call_with_digest_auth_over_tls_passes", "127.0.0.1", |t| t.sips_uri(NUMBER, "127.0.0.1"), &[]);
    // A sips: Request-URI: our Contact is sips: too (RFC 5630).
    let invite = &run.sent("INVITE")[0];
    assert!(invite.starts_with(&format!("INVITE sips:{NUMBER}@127.0.0.1:")), "{invite}");
    assert!(invite.contains("Contact: <sips:callprobe@127.0.0.1:"), "{invite}");
    assert!(run.report()["tls_unverified"].is_null(), "verified calls leave the run-level flag out");
}

#[test]
fn transport_tls_to_localhost_writes_the_keylog() {
    if !require_tools("transport_tls_to_localhost_writes_the_keylog", &[Tool::Sipp, Tool::Kamailio]) {
        return;
    }
    let keys = TempDir::new("keylog").unwrap();
    let keylog = keys.path().join("keys.log");
    let (run, _trunk) = full_call(
        "transport_tls_to_localhost_writes_the_keylog",
        "localhost",
        |t| format!("sip:{NUMBER}@localhost:{};transport=tls", t.tls_port.unwrap()),
        &["--keylog", path_str(&keylog)],
    );
    let invite = &run.sent("INVITE")[0];
    assert!(invite.contains(";transport=tls>"), "Contact says TLS: {invite}");
    let lines = std::fs::read_to_string(&keylog).unwrap();
    let labels: Vec<&str> = lines.lines().filter_map(|l| l.split(' ').next()).collect();
    assert!(
        labels.contains(&"CLIENT_TRAFFIC_SECRET_0") || labels.contains(&"CLIENT_RANDOM"),
        "no TLS secret in the key log: {labels:?}"
    );
    for l in lines.lines() {
        let parts: Vec<&str> = l.split(' ').collect();
        assert_eq!(parts.len(), 3, "{l}");
        assert!(parts[1].len() == 64 && parts[2].chars().all(|c| c.is_ascii_hexdigit()), "{l}");
    }
    println!("{} key log lines", lines.lines().count());
}

/// A trunk presenting `cert`: the call fails (exit 1) with `code`.
fn bad_certificate(test: &str, cert: ServerCert, with_ca: bool, problem: &str, code: &str) -> Run {
    let _ = test;
    let pki = Pki::new();
    let (trunk, _) = tls_trunk(&pki, cert, false);
    let uri = trunk.sips_uri(NUMBER, "127.0.0.1");
    let ca = pki.ca();
    let mut args = vec!["call", uri.as_str()];
    if with_ca {
        args.extend(["--tls-ca", path_str(&ca)]);
    }
    let run = callprobe(&args);
    assert_eq!(run.code, 1, "{}", run.explain());
    let ended = &run.call()["sip"]["ended"];
    assert_eq!(ended["kind"], "tls_failed", "{}", run.explain());
    assert_eq!(ended["problem"], problem, "{}", run.explain());
    assert_eq!(run.diagnosis_codes(), vec![code.to_string()], "{}", run.explain());
    assert!(run.sent("INVITE").is_empty(), "nothing is sent over a connection that is not trusted");
    assert!(run.stdout.contains(&format!("why    [{code}]")), "{}", run.explain());
    run
}

#[test]
fn expired_certificate_fails_with_its_diagnosis() {
    if !require_tools("expired_certificate_fails_with_its_diagnosis", &[Tool::Kamailio]) {
        return;
    }
    let run = bad_certificate(
        "expired_certificate_fails_with_its_diagnosis",
        ServerCert::Expired,
        true,
        "certificate_expired",
        "tls_certificate_expired",
    );
    assert!(run.stdout.contains("has expired"), "{}", run.explain());
}

#[test]
fn wrong_host_certificate_fails_with_its_diagnosis() {
    if !require_tools("wrong_host_certificate_fails_with_its_diagnosis", &[Tool::Kamailio]) {
        return;
    }
    let run = bad_certificate(
        "wrong_host_certificate_fails_with_its_diagnosis",
        ServerCert::WrongHost,
        true,
        "wrong_host",
        "tls_wrong_host",
    );
    assert!(run.stdout.contains("is not valid for 127.0.0.1"), "{}", run.explain());
}

#[test]
fn unknown_ca_fails_with_its_diagnosis() {
    if !require_tools("unknown_ca_fails_with_its_diagnosis", &[Tool::Kamailio]) {
        return;
    }
    // Signed by a CA other than the one given with --tls-ca …
    bad_certificate("unknown_ca_fails_with_its_diagnosis", ServerCert::OtherCa, true, "unknown_ca", "tls_unknown_ca");
    // … and a private CA checked against the system's roots.
    let run =
        bad_certificate("unknown_ca_fails_with_its_diagnosis", ServerCert::Good, false, "unknown_ca", "tls_unknown_ca");
    assert_eq!(run.call()["tls"]["roots"], "system");
    assert!(run.stdout.contains("--tls-ca FILE"), "the fix names the flag: {}", run.explain());
}

#[test]
fn tls_insecure_passes_a_wrong_host_but_says_not_verified() {
    let test = "tls_insecure_passes_a_wrong_host_but_says_not_verified";
    if !require_tools(test, &[Tool::Sipp, Tool::Kamailio]) {
        return;
    }
    let pki = Pki::new();
    let (trunk, uas) = tls_trunk(&pki, ServerCert::WrongHost, true);
    let uri = trunk.sips_uri(NUMBER, "127.0.0.1");
    let run = callprobe(&authed(&uri, &["--tls-insecure"]));
    let outcome = uas.unwrap().wait(Duration::from_secs(15));
    assert_eq!(run.code, 0, "{}\nkamailio:\n{}", run.explain(), trunk.log());
    assert!(outcome.success, "{}", outcome.log);
    assert_eq!(run.call()["tls"]["verified"], false);
    assert_eq!(run.report()["tls_unverified"], true);
    assert!(run.stdout.contains("certificate NOT verified"), "{}", run.explain());
}

#[test]
fn tls_handshake_timeout_fails_with_its_diagnosis() {
    // Accepts TCP, never speaks TLS.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Holds the connection open past callprobe's deadline; never joined, so
    // a callprobe that does not connect cannot hang the test.
    std::thread::spawn(move || {
        if let Ok((stream, _)) = listener.accept() {
            std::thread::sleep(Duration::from_secs(20));
            drop(stream);
        }
    });
    let started = Instant::now();
    let run = callprobe(&["call", &format!("sips:{NUMBER}@127.0.0.1:{port}")]);
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{}", run.explain());
    assert_eq!(run.call()["sip"]["ended"]["problem"], "handshake_timeout", "{}", run.explain());
    assert_eq!(run.diagnosis_codes(), vec!["tls_handshake_timeout".to_string()]);
    assert!(took < Duration::from_secs(15), "gave up after {took:?}");
    println!("handshake timeout reported after {took:?}");
}

#[test]
fn missing_ca_file_is_a_tester_error() {
    let run = callprobe(&["call", "sips:+1@127.0.0.1", "--tls-ca", "/nonexistent/ca.pem"]);
    assert_eq!(run.code, 2, "{}", run.explain());
    assert!(run.stderr.contains("--tls-ca: cannot read the CA file /nonexistent/ca.pem"), "{}", run.explain());
    assert!(run.report.is_none());
    let run = callprobe(&["call", "sips:+1@127.0.0.1", "--transport", "udp"]);
    assert_eq!(run.code, 2, "{}", run.explain());
    assert!(run.stderr.contains("must be called over TLS"), "{}", run.explain());
}

#[test]
fn scenario_file_gives_the_ca() {
    let test = "scenario_file_gives_the_ca";
    if !require_tools(test, &[Tool::Sipp, Tool::Kamailio]) {
        return;
    }
    let pki = Pki::new();
    let (trunk, uas) = tls_trunk(&pki, ServerCert::Good, true);
    let dir = TempDir::new("tls-scenario").unwrap();
    std::fs::copy(pki.ca(), dir.path().join("trunk-ca.pem")).unwrap();
    let scenario = format!(
        "name = \"tls trunk\"\n[target]\nuri = \"{}\"\ntls_ca = \"trunk-ca.pem\"\n\
         [auth]\nuser = \"callprobe\"\npassword_env = \"{PASSWORD_VAR}\"\n\
         [expect]\nfinal_responses = [407, 200]\n[timeline]\nhangup_after = \"1s\"\n",
        trunk.sips_uri(NUMBER, "localhost")
    );
    std::fs::write(dir.path().join("tls.toml"), scenario).unwrap();
    let reports = TempDir::new("tls-scenario-reports").unwrap();
    let keylog = reports.path().join("keys.log");
    let out = Command::new(env!("CARGO_BIN_EXE_callprobe"))
        .args(["run", path_str(&dir.path().join("tls.toml")), "--report-dir", path_str(reports.path())])
        .args(["--keylog", path_str(&keylog)])
        .env(PASSWORD_VAR, "callprobe-secret")
        .env_remove("LIVEKIT_URL")
        .output()
        .unwrap();
    let outcome = uas.unwrap().wait(Duration::from_secs(15));
    let text = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{text}\nkamailio:\n{}", trunk.log());
    assert!(outcome.success, "{}", outcome.log);
    let keys = std::fs::read_to_string(&keylog).unwrap_or_default();
    assert!(keys.lines().count() >= 1, "callprobe run --keylog wrote nothing");
    let pages = html_files(reports.path());
    assert!(
        pages.iter().any(|p| std::fs::read_to_string(p)
            .unwrap_or_default()
            .contains("TLS certificate of localhost checked against")),
        "no page shows how TLS was checked: {pages:?}"
    );
}

fn html_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(html_files(&path));
        } else if path.extension().is_some_and(|e| e == "html") {
            found.push(path);
        }
    }
    found
}
