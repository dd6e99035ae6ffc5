//! Reading scenario files: one file, or every `*.toml` directly in a
//! directory (sorted by name; subdirectories are separate suites), each
//! parsed, expanded into cases and checked. Every error of every file is
//! collected, not just the first.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use super::error::{Position, ScenarioError, Source};
use super::format::RawScenario;
use super::matrix;
use super::resolve::{EnvLookup, Resolver};
use super::ScenarioFile;

/// What loading a path produced: the files that loaded cleanly, how many
/// files were read, and every error.
pub(crate) struct Loaded {
    pub files: Vec<ScenarioFile>,
    pub files_read: usize,
    pub errors: Vec<ScenarioError>,
}

pub(crate) fn load(path: &Path, env: EnvLookup) -> Loaded {
    let paths = match scenario_paths(path) {
        Ok(p) => p,
        Err(e) => return Loaded { files: Vec::new(), files_read: 0, errors: vec![e] },
    };
    let mut loaded = Loaded { files: Vec::new(), files_read: paths.len(), errors: Vec::new() };
    // Case name → where its scenario is named, to refuse duplicates.
    let mut seen: HashMap<String, (PathBuf, Position)> = HashMap::new();
    for path in paths {
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) => {
                loaded.errors.push(ScenarioError::in_file(&path, format!("cannot read: {e}")));
                continue;
            }
        };
        match load_file(&path, &text, env) {
            Ok((file, name_at)) => {
                let mut duplicate = false;
                for case in &file.cases {
                    if let Some((first_file, first_at)) = seen.get(case.name()) {
                        duplicate = true;
                        loaded.errors.push(ScenarioError {
                            file: path.clone(),
                            position: Some(name_at),
                            message: format!(
                                "case name \"{}\" is already used at {}:{}:{}",
                                case.name(),
                                first_file.display(),
                                first_at.line,
                                first_at.col
                            ),
                            expected: Some("a name unique in the suite".into()),
                        });
                    } else {
                        seen.insert(case.name().to_string(), (path.clone(), name_at));
                    }
                }
                if !duplicate {
                    loaded.files.push(file);
                }
            }
            Err(errors) => loaded.errors.extend(errors),
        }
    }
    loaded
}

/// `path` itself, or the `*.toml` files directly in it, sorted.
fn scenario_paths(path: &Path) -> Result<Vec<PathBuf>, ScenarioError> {
    let meta = std::fs::metadata(path).map_err(|e| ScenarioError::in_file(path, format!("cannot read: {e}")))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    let entries = std::fs::read_dir(path).map_err(|e| ScenarioError::in_file(path, format!("cannot list: {e}")))?;
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| ScenarioError::in_file(path, format!("cannot list: {e}")))?;
        let p = entry.path();
        if p.extension().is_some_and(|x| x == "toml") && p.is_file() {
            paths.push(p);
        }
    }
    if paths.is_empty() {
        let mut e = ScenarioError::in_file(path, "no scenario files here");
        e.expected = Some("*.toml files directly in the directory (subdirectories are not searched)".into());
        return Err(e);
    }
    paths.sort();
    Ok(paths)
}

/// One file → its cases, and where its name is (for duplicate-name errors).
pub(crate) fn load_file(
    path: &Path,
    text: &str,
    env: EnvLookup,
) -> Result<(ScenarioFile, Position), Vec<ScenarioError>> {
    let src = Source { path, text };
    let raw: RawScenario = toml::from_str(text).map_err(|e| {
        let message = e.message().trim().to_string();
        vec![ScenarioError {
            file: path.to_path_buf(),
            position: e.span().map(|s| Position::at(text, s.start)),
            message,
            expected: None,
        }]
    })?;
    let mut errors = Vec::new();
    let axes = matrix::axes(&raw.matrix, &src, &mut errors);
    matrix::check_cases(&raw.cases, &axes, &src, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut resolver = Resolver::new(src, &raw, &axes, env);
    let cases: Vec<_> = matrix::combinations(&axes).iter().filter_map(|c| resolver.case(c)).collect();
    for axis in &axes {
        let in_when = raw.cases.iter().any(|c| c.when.get_ref().keys().any(|k| *k.get_ref() == axis.name));
        if !resolver.used.contains(&axis.name) && !in_when {
            resolver.errors.push(src.error(
                axis.name_span.clone(),
                format!("matrix axis {} is not used", axis.name),
                Some(&format!("${{{}}} in a value, or a [[case]] with {} in `when`", axis.name, axis.name)),
            ));
        }
    }
    let mut errors = resolver.errors;
    if !errors.is_empty() {
        // Every case repeats the errors of what they share: report each once.
        let mut unique: Vec<ScenarioError> = Vec::new();
        for e in errors.drain(..) {
            if !unique.contains(&e) {
                unique.push(e);
            }
        }
        unique.sort_by_key(|e| e.position);
        return Err(unique);
    }
    let name_at = Position::at(text, raw.name.span().start);
    let file = ScenarioFile { path: path.to_path_buf(), cases };
    Ok((file, name_at))
}
