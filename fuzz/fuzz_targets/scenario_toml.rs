//! Fuzz target: loading a scenario file from its text (src/scenario:
//! TOML parsing, matrix expansion, resolving every case), through
//! `scenario::load_str`; nothing is read from disk except the existence
//! check of a `play` WAV path. `${VAR}` resolves to a fixed value, except
//! for variables whose name starts with `UNSET`.
//!
//! Invariants beyond "no panic":
//! - a file that loads has 1..=MAX_CASES_PER_FILE cases with non-empty,
//!   distinct names;
//! - every error renders, names the file, and points inside the text.

#![no_main]

use std::collections::HashSet;
use std::path::Path;

use callprobe::scenario::{load_str, MAX_CASES_PER_FILE};
use libfuzzer_sys::fuzz_target;

fn env(name: &str) -> Option<String> {
    (!name.starts_with("UNSET")).then(|| format!("v-{name}"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = Path::new("fuzz-scenarios/case.toml");
    match load_str(path, text, &env) {
        Ok(file) => {
            assert!(!file.cases.is_empty() && file.cases.len() <= MAX_CASES_PER_FILE, "{} cases", file.cases.len());
            let mut names = HashSet::new();
            for case in &file.cases {
                assert!(!case.name().is_empty(), "empty case name");
                assert!(names.insert(case.name().to_string()), "case name {:?} twice in one file", case.name());
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "an error result without errors");
            let lines = text.matches('\n').count() + 1;
            for e in &errors {
                assert!(e.to_string().starts_with("fuzz-scenarios/case.toml"));
                if let Some(p) = e.position {
                    assert!(p.line >= 1 && p.line <= lines && p.col >= 1, "{e} outside the text");
                }
            }
        }
    }
});
