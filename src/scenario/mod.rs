//! Scenario files (`scenarios/*.toml`): test calls written down once, with
//! their expectations, expanded over a matrix into runnable cases, each
//! resolved into a [`CallRequest`], as `callprobe call` builds one from its
//! flags.
//!
//! # Format
//!
//! ```toml
//! name = "smoke: credentials accepted"    # required; case names add "[AXIS=value]"
//! description = "free text"               # optional
//! tags = ["smoke"]                        # letters, digits, - _ .
//!
//! [target]                                # required
//! uri = "sip:${CALLED}@127.0.0.1:5060"    # a sip: URI
//! transport = "udp"                       # "udp" | "tcp" | "tls"; default: the URI's ;transport=,
//!                                         # else tls for a sips: URI, else udp
//! tls_ca = "certs/ca.pem"                 # TLS: trust only this PEM CA (relative to THIS FILE's
//!                                         # directory); default: the system's roots
//! tls_insecure = true                     # TLS: do NOT verify the certificate (reported as such)
//!
//! [caller]
//! from = "+15550100123"                   # number/user or sip: URI; default "callprobe"
//! headers = ["X-Customer: acme"]          # extra INVITE headers, "Name: value"
//! codecs = ["g722", "pcmu", "pcma"]       # offer order; also "ulaw", "alaw"
//! srtp = "required"                       # SDES-SRTP: "required" (RTP/SAVP), "optional"
//!                                         # (RTP/AVP + a=crypto), "off" (default)
//!
//! [auth]                                  # no [auth]: call without credentials
//! user = "${LK_SIP_USER}"
//! password_env = "LK_SIP_PASSWORD"        # or password_file = "PATH"; `password = "…"` is refused
//!
//! [expect]
//! final_responses = [407, 200]            # exact sequence of finals; "any": recorded, not checked;
//!                                         # absent: the call must be answered (2xx)
//! agent = "probe-agent"                   # lk.agent_name, or "*" for any agent
//! agent_within = "5s"                     # default 5s, counted from the INVITE that got through
//! speech_within = "3s"                    # far end speaks within this of the 200 OK
//! response_within = "2s"                  # far end answers our `play` within this of its end
//! tone_hz = 1000                          # far end plays this tone (50-7000 Hz)
//! max_loss_percent = 1.0                  # RTP quality: received packet loss, 0-100
//! max_jitter_ms = 30                      # RTP quality: interarrival jitter (RFC 3550)
//!
//! [timeline]
//! play = "../fixtures/hello_can_you_hear_me_16k.wav"  # relative to THIS FILE's directory
//! play_after = "greeting"                 # or a duration after connect; default "1s"
//! hangup_after = "8s"                     # stay connected this long; default "5s"
//! timeout = "32s"                         # per INVITE, for a final response; default "32s"
//!
//! [conversation]                          # optional, with [[step]]s
//! end_of_turn = "1s"                      # silence that ends the agent's turn; default 1s
//!
//! [[step]]                                # a scripted conversation instead of `play`: steps in
//! agent_turn = "10s"                      # order, ONE action key each; the agent's turn must
//! expect_said = "callprobe test line"     # start within 10s (true: 10s); regex, case-insensitive,
//!                                         # or expect_any = ["order", "four two seven"], or
//!                                         # expect_like = "…" with similarity = 0.8 (0 to 1)
//! [[step]]
//! say = "../fixtures/hello_can_you_hear_me_16k.wav"  # a WAV, or say_text = "…" (offline TTS)
//! [[step]]
//! dtmf = "1#"                             # 0-9 * # A-D
//! [[step]]
//! wait = "1s"                             # or silence = "2s": the far end must not speak either
//! [[step]]
//! barge_in_text = "Please stop talking."  # or barge_in = "WAV"; talk over the agent's turn,
//! after = "1s"                            # this far into it (default 1s), which must start
//! within = "10s"                          # within 10s (default), and must stop within
//! stop_within = "1.5s"                    # 1.5s of us starting (default)
//! [[step]]
//! hangup = true
//!
//! [livekit]                               # optional; each key overrides a LIVEKIT_* variable
//! url = "${LIVEKIT_URL}"
//! api_key = "${LIVEKIT_API_KEY}"
//! api_secret_env = "LIVEKIT_API_SECRET"   # or api_secret_file; `api_secret = "…"` is refused
//!
//! [matrix]                                # one case per combination of values
//! CALLED = ["+14144007103", "14144007103", "4144007103"]
//!
//! [[case]]                                # overrides for the cases `when` matches
//! when = { CALLED = "+14144007103" }      # axis = value as written; all must match
//! expect = { final_responses = [407, 200], agent = "probe-agent" }
//! auth = false                            # or a table replacing [auth]
//! tags = ["happy-path"]                   # added to the scenario's tags
//! ```
//!
//! Durations are humantime strings (`"1.5s"`, `"500ms"`, `"2m"`).
//!
//! `${NAME}` in any string value is the current case's value of matrix axis
//! `NAME`, else the environment variable `NAME`; neither is an error naming
//! the variable and its `file:line:col`. `$$` is a literal `$`. Comments,
//! keys and numbers are never substituted. Secrets are only referenced
//! (`password_env`, `password_file`) and read when the call is prepared;
//! `check` (and `run`, before calling anyone) requires the `password_env`
//! variable to be set, without reading or showing its value.
//!
//! `[[step]]` and `[timeline] play` do not go together. Each step's
//! position (`file:line:col` of its `[[step]]`) is its origin in later
//! messages; `[[case]]` does not override steps (use `${AXIS}` in them).
//!
//! A `[[case]]`'s `expect` keys replace the scenario's `[expect]` keys one by
//! one (put in `[expect]` only what holds for every case); its `auth`
//! replaces `[auth]` as a whole. Several matching `[[case]]`s apply in file
//! order. Every axis must be used by a `${AXIS}` or a `when`.
//!
//! A directory means the `*.toml` files directly in it, sorted; subdirectories
//! (`scenarios/local-trunk/`, `scenarios/templates/`) are suites of their own.
//! Case names must be unique in what is loaded.

mod env;
mod error;
mod format;
mod load;
mod matrix;
mod resolve;
mod tags;

#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use crate::call::PreparedCall;
use crate::request::{CallRequest, PrepareError, SecretRef};

pub use error::{Position, ScenarioError};
pub use matrix::MAX_CASES_PER_FILE;
pub use tags::matches_tags;

/// One scenario file and the cases it expands to.
#[derive(Debug)]
pub struct ScenarioFile {
    pub path: PathBuf,
    pub cases: Vec<ScenarioCase>,
}

/// One runnable call of a scenario (one matrix combination).
#[derive(Debug, Clone)]
pub struct ScenarioCase {
    /// The scenario's name alone (shared by the cases of a matrix).
    pub scenario: String,
    /// Its objectives over the run (`slo = [...]`, `[regression]`).
    pub slo: crate::verdict::slo::ScenarioSlo,
    pub description: Option<String>,
    pub file: PathBuf,
    /// This case's axis values (substituted), in file order.
    pub matrix: Vec<(String, String)>,
    /// The call; its `name` is always set.
    pub call: CallRequest,
}

impl ScenarioCase {
    /// The scenario's name (substituted), plus `[AXIS=value, …]` for the
    /// axes it does not show itself; unique in a loaded suite.
    pub fn name(&self) -> &str {
        self.call.name.as_deref().unwrap_or(&self.scenario)
    }

    /// The scenario's tags and those of the matching `[[case]]`s.
    pub fn tags(&self) -> &[String] {
        &self.call.tags
    }

    /// The ready-to-dial call (reads the secret and the WAV to play; fresh
    /// test and call ids), or what stops it as `file: case "name": message`.
    pub fn prepare(&self) -> Result<PreparedCall, ScenarioError> {
        self.call.prepare().map_err(|e| {
            // The settings came from the file: name its keys.
            let message = match &e {
                PrepareError::Password { secret: SecretRef::Env(_), error } => {
                    format!("[auth] password_env: {error}")
                }
                PrepareError::Password { secret: SecretRef::File(_), error } => {
                    format!("[auth] password_file: {error}")
                }
                PrepareError::Play { .. } => format!("[timeline] play {e}"),
                PrepareError::Conversation(_) => e.to_string(),
                PrepareError::Target(_) | PrepareError::TargetTransport(_) | PrepareError::SipsNeedsTls(_) => {
                    e.to_string()
                }
                PrepareError::Tls(_) => format!("[target] tls_ca: {e}"),
            };
            ScenarioError::in_file(&self.file, format!("case \"{}\": {message}", self.name()))
        })
    }
}

/// Loads a scenario file, or every `*.toml` directly in a directory, with
/// `${VAR}` taken from the process environment. All errors of all files.
pub fn load_path(path: &Path) -> Result<Vec<ScenarioFile>, Vec<ScenarioError>> {
    load_path_with_env(path, &|name| std::env::var(name).ok())
}

/// [`load_path`] with the variables from `env` instead of the process
/// environment.
pub fn load_path_with_env(
    path: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<ScenarioFile>, Vec<ScenarioError>> {
    let loaded = load::load(path, env);
    if loaded.errors.is_empty() {
        Ok(loaded.files)
    } else {
        Err(loaded.errors)
    }
}

/// Loads one scenario file from its text, with `${VAR}` taken from `env`:
/// [`load_path`] without the reading (used by the fuzz targets in `fuzz/`).
/// `path` is only named in errors and is the base of relative paths (a
/// `play` WAV must exist there); nothing else is read.
pub fn load_str(
    path: &Path,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<ScenarioFile, Vec<ScenarioError>> {
    load::load_file(path, text, env).map(|(file, _)| file)
}

/// For `callprobe check PATH`: (files read, cases of the files without
/// errors, every error). Exit 0 when the errors are empty, else 2.
pub fn check_path(path: &Path) -> (usize, usize, Vec<ScenarioError>) {
    check_path_with_env(path, &|name| std::env::var(name).ok())
}

/// [`check_path`] with the variables from `env`.
pub fn check_path_with_env(path: &Path, env: &dyn Fn(&str) -> Option<String>) -> (usize, usize, Vec<ScenarioError>) {
    let loaded = load::load(path, env);
    let cases = loaded.files.iter().map(|f| f.cases.len()).sum();
    (loaded.files_read, cases, loaded.errors)
}

/// Every case of `files`, in order.
pub fn cases(files: &[ScenarioFile]) -> impl Iterator<Item = &ScenarioCase> {
    files.iter().flat_map(|f| f.cases.iter())
}
