//! Errors in scenario files, each pointing at the place it is about:
//! `file:line:col: message (expected …)`, or `file: message` when there is
//! no single place (an unreadable file, a failure found only when the call
//! is prepared).

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A 1-based line and column (columns count characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Position {
    pub line: usize,
    pub col: usize,
}

impl Position {
    /// The position of byte `offset` in `text` (clamped to the text).
    pub fn at(text: &str, offset: usize) -> Position {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        Position { line: before.matches('\n').count() + 1, col: before[line_start..].chars().count() + 1 }
    }
}

/// One problem in one scenario file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    pub file: PathBuf,
    /// Where in the file; `None` when the problem is the file as a whole.
    pub position: Option<Position>,
    pub message: String,
    /// What would have been accepted, e.g. `a duration like "1.5s" or "500ms"`.
    pub expected: Option<String>,
}

impl ScenarioError {
    /// A problem with the file as a whole.
    pub fn in_file(file: &Path, message: impl Into<String>) -> ScenarioError {
        ScenarioError { file: file.to_path_buf(), position: None, message: message.into(), expected: None }
    }
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(p) = self.position {
            write!(f, ":{}:{}", p.line, p.col)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(expected) = &self.expected {
            write!(f, " (expected {expected})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioError {}

/// A scenario file's text, to turn byte spans into positions.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub path: &'a Path,
    pub text: &'a str,
}

impl Source<'_> {
    /// An error at the start of `span`.
    pub fn error(&self, span: Range<usize>, message: impl Into<String>, expected: Option<&str>) -> ScenarioError {
        ScenarioError {
            file: self.path.to_path_buf(),
            position: Some(Position::at(self.text, span.start)),
            message: message.into(),
            expected: expected.map(str::to_string),
        }
    }

    /// The file offset of byte `offset` of a string value whose token is at
    /// `span`: exact when the value appears verbatim in its token (no escape
    /// sequences), else the token's start.
    pub fn offset_in_string(&self, span: Range<usize>, value: &str, offset: usize) -> usize {
        let token = self.text.get(span.clone()).unwrap_or("");
        match token.find(value) {
            Some(at) if !value.is_empty() => span.start + at + offset,
            _ => span.start,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "a = 1\nnäme = \"x\"\n";
        assert_eq!(Position::at(text, 0), Position { line: 1, col: 1 });
        assert_eq!(Position::at(text, 6), Position { line: 2, col: 1 });
        let quote = text.find('"').unwrap_or(0);
        assert_eq!(Position::at(text, quote), Position { line: 2, col: 8 });
        assert_eq!(Position::at(text, 999), Position { line: 3, col: 1 });
    }

    #[test]
    fn display_with_and_without_a_position() {
        let mut e = ScenarioError::in_file(Path::new("s/a.toml"), "cannot read");
        assert_eq!(e.to_string(), "s/a.toml: cannot read");
        e.position = Some(Position { line: 3, col: 7 });
        e.expected = Some("udp or tcp".into());
        assert_eq!(e.to_string(), "s/a.toml:3:7: cannot read (expected udp or tcp)");
    }
}
