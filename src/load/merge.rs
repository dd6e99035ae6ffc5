//! `callprobe merge` for load runs: the run folders of `load --shard i/N`
//! (each holding load.json) as one load run — calls together, every step's
//! numbers and the knee computed again from them, the kept calls' folders
//! linked in, and their report.json and page written as one.

use std::path::{Path, PathBuf};

use super::report::LoadReport;
use crate::report::merge::link_tree;
use crate::report::model::Report;
use crate::report::run_dir;

/// The run folder of `dir` that holds load.json: `dir` itself or its `latest`.
pub fn load_folder(dir: &Path) -> Option<PathBuf> {
    [dir.to_path_buf(), dir.join(run_dir::LATEST_LINK)]
        .into_iter()
        .find(|d| d.join("load.json").is_file())
        .map(|d| std::fs::canonicalize(&d).unwrap_or(d))
}

/// Merges the shards in `dirs` into `out` (an empty run folder); returns
/// the merged report and the page written.
pub fn merge_into(dirs: &[PathBuf], out: &Path, suite_name: &str) -> Result<(LoadReport, PathBuf), String> {
    let mut reports = Vec::new();
    let mut kept = Vec::new();
    for dir in dirs {
        let folder =
            load_folder(dir).ok_or_else(|| format!("{}: no load.json (not a load run folder)", dir.display()))?;
        reports.push(LoadReport::read(&folder.join("load.json"))?);
        let calls_json = folder.join("report.json");
        if calls_json.is_file() {
            let text = std::fs::read_to_string(&calls_json)
                .map_err(|e| format!("cannot read {}: {e}", calls_json.display()))?;
            let calls: Report =
                serde_json::from_str(&text).map_err(|e| format!("{} is not a report: {e}", calls_json.display()))?;
            kept.push((folder, calls));
        }
    }
    let merged = LoadReport::merge(reports)?;
    let mut calls = Vec::new();
    let mut call_dirs = Vec::new();
    for (folder, report) in kept {
        for call in report.calls {
            let dir = merged
                .calls
                .iter()
                .find(|c| c.call_id.as_deref() == Some(call.call_id.as_str()))
                .and_then(|c| c.dir.clone());
            if let Some(dir) = &dir {
                let (from, to) = (folder.join(dir), out.join(dir));
                if from.is_dir() && !to.exists() {
                    link_tree(&from, &to)
                        .map_err(|e| format!("cannot link {} into {}: {e}", from.display(), out.display()))?;
                }
            }
            call_dirs.push(dir.map(PathBuf::from).unwrap_or_default());
            calls.push(call);
        }
    }
    let page = merged.write(out, suite_name)?;
    let kept_report = Report::new(calls);
    kept_report.write_json(out)?;
    let html = crate::report::html::index_html(&kept_report, out, &call_dirs);
    let path = out.join("calls.html");
    std::fs::write(&path, html).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok((merged, page))
}
