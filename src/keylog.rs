//! The key log (`--keylog FILE`): session secrets written in the NSS key log
//! format (the `SSLKEYLOGFILE` format Wireshark reads) so that a capture of
//! the call can be decrypted. Written only when asked for.
//!
//! Format: one line per secret, `LABEL <client_random hex> <secret hex>`
//! (https://www.ietf.org/archive/id/draft-ietf-tls-keylogfile-02.html).
//! TLS 1.3 writes `CLIENT_HANDSHAKE_TRAFFIC_SECRET`,
//! `SERVER_HANDSHAKE_TRAFFIC_SECRET`, `CLIENT_TRAFFIC_SECRET_0`,
//! `SERVER_TRAFFIC_SECRET_0` and `EXPORTER_SECRET`; TLS 1.2 `CLIENT_RANDOM`.
//! Other protocols append their own lines: SRTP master keys through
//! [`KeyLog::write_text_line`] as `SRTP <call-id> <out|in> <suite> <base64
//! key||salt>` (docs/keylog.md); a reader that does not know a label skips
//! its line, as Wireshark does.
//!
//! The file is opened for appending, created with mode 0600 (it holds
//! secrets), and shared by every call of the process; each line is one write.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// An open key log file. Cloning shares the file.
#[derive(Clone)]
pub struct KeyLog {
    path: PathBuf,
    file: Arc<Mutex<File>>,
}

impl std::fmt::Debug for KeyLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets: only where they go.
        f.debug_struct("KeyLog").field("path", &self.path).finish()
    }
}

impl KeyLog {
    /// Opens (creates, or appends to) the key log at `path`.
    pub fn open(path: &Path) -> std::io::Result<KeyLog> {
        let mut options = OpenOptions::new();
        options.create(true).append(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let file = options.open(path)?;
        Ok(KeyLog { path: path.to_path_buf(), file: Arc::new(Mutex::new(file)) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `LABEL <id hex> <secret hex>`. Errors are dropped: a key log
    /// that cannot be written must not fail the call.
    pub fn write_line(&self, label: &str, id: &[u8], secret: &[u8]) {
        let line = format_line(label, id, secret);
        if let Ok(mut file) = self.file.lock() {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

impl KeyLog {
    /// Appends one line of another shape (SRTP: `SRTP <call-id> <out|in>
    /// <suite> <base64 key||salt>`); the newline is added. Errors are dropped
    /// as in [`KeyLog::write_line`].
    pub fn write_text_line(&self, line: &str) {
        if let Ok(mut file) = self.file.lock() {
            let _ = file.write_all(format!("{line}\n").as_bytes());
        }
    }
}

/// One key log line, newline included.
pub fn format_line(label: &str, id: &[u8], secret: &[u8]) -> String {
    let mut line = String::with_capacity(label.len() + 2 * (id.len() + secret.len()) + 3);
    line.push_str(label);
    line.push(' ');
    hex(&mut line, id);
    line.push(' ');
    hex(&mut line, secret);
    line.push('\n');
    line
}

fn hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

/// rustls calls this with each TLS secret of a connection.
impl rustls::KeyLog for KeyLog {
    fn log(&self, label: &str, client_random: &[u8], secret: &[u8]) {
        self.write_line(label, client_random, secret);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_label_and_lowercase_hex() {
        assert_eq!(format_line("CLIENT_RANDOM", &[0x00, 0xab], &[0xff, 0x01]), "CLIENT_RANDOM 00ab ff01\n");
    }

    #[test]
    fn appends_and_debug_hides_secrets() {
        let dir = std::env::temp_dir().join(format!("callprobe-keylog-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("keys.log");
        let _ = std::fs::remove_file(&path);
        let log = KeyLog::open(&path).unwrap();
        log.write_line("A", &[1], &[2]);
        KeyLog::open(&path).unwrap().write_line("B", &[3], &[4]);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "A 01 02\nB 03 04\n");
        assert!(format!("{log:?}").starts_with("KeyLog { path: "));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
