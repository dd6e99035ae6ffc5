//! Secrets (SIP passwords, API secrets): where they come from and how they
//! are kept out of logs, reports and panics.
//!
//! A [`Secret`] never prints its value: `Debug` and `Display` show `***`, so a
//! stray `{:?}` in a trace cannot leak it. Secrets are read only from an
//! environment variable or a file — never from a command-line value.

use std::fmt;
use std::path::Path;

/// A value that must never be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the one place that needs it (hashing).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Reads the secret from environment variable `var`.
    pub fn from_env(var: &str) -> Result<Secret, SecretError> {
        match std::env::var(var) {
            Ok(v) if !v.is_empty() => Ok(Secret(v)),
            Ok(_) => Err(SecretError::EmptyEnv(var.to_string())),
            Err(_) => Err(SecretError::MissingEnv(var.to_string())),
        }
    }

    /// Reads the secret from a file; one trailing newline is dropped.
    pub fn from_file(path: &Path) -> Result<Secret, SecretError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SecretError::File { path: path.display().to_string(), reason: e.to_string() })?;
        let value = text.strip_suffix('\n').unwrap_or(&text);
        let value = value.strip_suffix('\r').unwrap_or(value);
        if value.is_empty() {
            return Err(SecretError::EmptyFile(path.display().to_string()));
        }
        Ok(Secret(value.to_string()))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set")]
    MissingEnv(String),
    #[error("environment variable {0} is empty")]
    EmptyEnv(String),
    #[error("cannot read secret file {path}: {reason}")]
    File { path: String, reason: String },
    #[error("secret file {0} is empty")]
    EmptyFile(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "*** ***");
    }

    #[test]
    fn file_drops_one_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("callprobe-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("pw");
        std::fs::write(&p, "pa ss\n").unwrap();
        assert_eq!(Secret::from_file(&p).unwrap().expose(), "pa ss");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
