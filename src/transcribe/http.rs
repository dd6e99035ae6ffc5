//! The HTTP speech-to-text engine: any server speaking the OpenAI-compatible
//! `POST {url}/v1/audio/transcriptions` (multipart: `file` = a WAV, `model`,
//! `language=en`, `response_format=json`; answer `{"text": "…"}`), which
//! hosted and self-hosted STT servers share. The API key (optional) goes in
//! `Authorization: Bearer`, read from an env var or a file, never logged.

use std::io::Cursor;
use std::time::Duration;

use super::{bearer, TranscribeError, Transcriber};
use crate::media::session::RECORDING_RATE;
use crate::secret::Secret;

/// The model name sent when none is configured.
pub const DEFAULT_MODEL: &str = "whisper-1";
const TIMEOUT: Duration = Duration::from_secs(60);

pub struct HttpTranscriber {
    endpoint: String,
    model: String,
    key: Option<Secret>,
}

impl HttpTranscriber {
    /// `url`: the server's base URL, or the full endpoint.
    pub fn new(url: String, model: Option<String>, key: Option<Secret>) -> HttpTranscriber {
        let base = url.trim_end_matches('/');
        let endpoint = if base.ends_with("/audio/transcriptions") {
            base.to_string()
        } else if base.ends_with("/v1") {
            format!("{base}/audio/transcriptions")
        } else {
            format!("{base}/v1/audio/transcriptions")
        };
        HttpTranscriber { endpoint, model: model.unwrap_or_else(|| DEFAULT_MODEL.to_string()), key }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn fail(&self, detail: String) -> TranscribeError {
        TranscribeError::Failed { engine: self.engine(), detail }
    }
}

#[derive(serde::Deserialize)]
struct Answer {
    text: String,
}

impl Transcriber for HttpTranscriber {
    fn engine(&self) -> String {
        format!("http {} ({})", self.model, self.endpoint)
    }

    /// Blocking: call it off the async runtime (`spawn_blocking`).
    fn transcribe(&self, pcm_16k: &[i16]) -> Result<String, TranscribeError> {
        let mut wav = Cursor::new(Vec::new());
        crate::audio::wav::write_mono_to(&mut wav, RECORDING_RATE, pcm_16k)
            .map_err(|e| self.fail(format!("cannot encode the turn as WAV: {e}")))?;
        let part = reqwest::blocking::multipart::Part::bytes(wav.into_inner())
            .file_name("turn.wav")
            .mime_str("audio/wav")
            .map_err(|e| self.fail(e.to_string()))?;
        let form = reqwest::blocking::multipart::Form::new()
            .part("file", part)
            .text("model", self.model.clone())
            .text("language", "en")
            .text("response_format", "json");
        let client = reqwest::blocking::Client::builder()
            .timeout(TIMEOUT)
            .build()
            .map_err(|e| self.fail(format!("cannot build an HTTP client: {e}")))?;
        let mut request = client.post(&self.endpoint).multipart(form);
        if let Some(auth) = bearer(&self.key) {
            request = request.header(reqwest::header::AUTHORIZATION, auth);
        }
        let response = request.send().map_err(|e| self.fail(format!("request failed: {e}")))?;
        let status = response.status();
        if !status.is_success() {
            let body: String = response.text().unwrap_or_default().chars().take(300).collect();
            return Err(self.fail(format!("HTTP {status}: {body}")));
        }
        let answer: Answer = response.json().map_err(|e| self.fail(format!("answer is not {{\"text\": …}}: {e}")))?;
        Ok(answer.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::io::{Read, Write};
    use std::net::TcpListener;

    /// A one-request OpenAI-compatible server on loopback: answers `reply`
    /// with `status` and hands back the request it got.
    fn server(status: u16, reply: &'static str) -> (String, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
        let url = format!("http://{}", listener.local_addr().unwrap_or_else(|e| panic!("{e}")));
        let handle = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap_or_else(|e| panic!("accept: {e}"));
            conn.set_read_timeout(Some(Duration::from_secs(10))).ok();
            let mut request = Vec::new();
            let mut buf = [0u8; 65536];
            // Read the headers, then as much body as Content-Length says.
            loop {
                let n = conn.read(&mut buf).unwrap_or(0);
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let length = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= end + 4 + length {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let answer = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
            conn.write_all(answer.as_bytes()).ok();
            String::from_utf8_lossy(&request).into_owned()
        });
        (url, handle)
    }

    #[test]
    fn posts_the_turn_as_a_wav_with_the_key_and_reads_the_text() {
        let (url, server) = server(200, r#"{"text": " You pressed one. "}"#);
        let engine = HttpTranscriber::new(url, Some("tiny".into()), Some(Secret::new("sk-test-123")));
        let text = engine.transcribe(&vec![0i16; 16000]).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(text, " You pressed one. ");
        let request = server.join().unwrap_or_default();
        assert!(request.starts_with("POST /v1/audio/transcriptions HTTP/1.1"), "{request}");
        assert!(request.to_ascii_lowercase().contains("authorization: bearer sk-test-123"), "{request}");
        assert!(request.contains("name=\"model\"\r\n\r\ntiny"), "{request}");
        assert!(request.contains("filename=\"turn.wav\"") && request.contains("RIFF"), "a WAV file part");
        assert!(!engine.engine().contains("sk-test"), "the key is not part of the engine's name");
    }

    #[test]
    fn a_server_error_is_the_turns_error() {
        let (url, server) = server(503, r#"{"error": "busy"}"#);
        let engine = HttpTranscriber::new(url, None, None);
        let err = engine.transcribe(&vec![0i16; 1600]).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("HTTP 503") && err.contains("busy"), "{err}");
        let request = server.join().unwrap_or_default();
        assert!(!request.to_ascii_lowercase().contains("authorization"), "no key, no header: {request}");
    }

    #[test]
    fn endpoint_from_base_url() {
        let e = |u: &str| HttpTranscriber::new(u.into(), None, None).endpoint().to_string();
        assert_eq!(e("http://127.0.0.1:8000"), "http://127.0.0.1:8000/v1/audio/transcriptions");
        assert_eq!(e("http://h/v1/"), "http://h/v1/audio/transcriptions");
        assert_eq!(e("http://h/v1/audio/transcriptions"), "http://h/v1/audio/transcriptions");
    }
}
