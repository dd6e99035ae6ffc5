//! `callprobe merge`: the run folders of a suite's shards (`callprobe run
//! --shard i/N`) back into one run — the shards' report.json files read,
//! checked to be the `N` distinct shards of one queue, their calls put in
//! queue order, and their call folders hard-linked (or copied) into the new
//! run folder under the names one run would have given them. The run
//! folder's report.json, junit.xml and index.html are then written by
//! [`super::outputs`], as for `callprobe run`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::model::{Call, Report, ShardRun};
use super::run_dir;

/// Why the given folders cannot be merged (the tester's input: exit 2).
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A folder could not be read as a shard's run folder.
    #[error("{0}")]
    Folder(String),
    /// The folders do not make up one sharded run; every problem found.
    #[error("{}", Problems(.0))]
    Inconsistent(Vec<String>),
    /// The merged run folder could not be written.
    #[error("{0}")]
    Write(String),
}

/// The problems, one per line.
struct Problems<'a>(&'a [String]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the folders are not the shards of one run; nothing was merged:")?;
        for p in self.0 {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// One shard's run folder and its report.
#[derive(Debug, Clone)]
pub struct ShardFolder {
    /// The run folder (holding report.json and the call folders).
    pub dir: PathBuf,
    pub report: Report,
}

impl ShardFolder {
    /// Reads `dir`: a run folder, or the `--report-dir` of a run (its
    /// `latest` run folder is taken).
    pub fn read(dir: &Path) -> Result<ShardFolder, MergeError> {
        let run_folder = if dir.join("report.json").is_file() {
            dir.to_path_buf()
        } else if dir.join(run_dir::LATEST_LINK).join("report.json").is_file() {
            let latest = dir.join(run_dir::LATEST_LINK);
            std::fs::canonicalize(&latest)
                .map_err(|e| MergeError::Folder(format!("cannot follow {}: {e}", latest.display())))?
        } else if !dir.is_dir() {
            return Err(MergeError::Folder(format!("{}: no such folder", dir.display())));
        } else {
            return Err(MergeError::Folder(format!(
                "{}: no report.json (give the run folder of a `callprobe run --shard i/N`, or its --report-dir \
                 with a `latest` link)",
                dir.display()
            )));
        };
        let report = Report::read_json(&run_folder.join("report.json")).map_err(MergeError::Folder)?;
        Ok(ShardFolder { dir: run_folder, report })
    }

    /// `0/3 (DIR)`, or just the folder for a report that is not a shard's.
    fn describe(&self) -> String {
        match &self.report.shard {
            Some(s) => format!("{}/{} ({})", s.index, s.count, self.dir.display()),
            None => self.dir.display().to_string(),
        }
    }
}

/// The shards put together: one run's report and where its call folders come from.
#[derive(Debug)]
pub struct MergedRun {
    /// Every call of every shard in queue order; no `shard` field.
    pub report: Report,
    /// Each call's folder, relative to the merged run folder, in report
    /// order (as `callprobe run` names them).
    pub call_dirs: Vec<PathBuf>,
    /// Each call's folder in its shard's run folder, in report order.
    sources: Vec<PathBuf>,
    /// How many shards were merged.
    pub shard_count: usize,
    /// Calls in the run's queue, every shard's.
    pub queue_length: usize,
    /// Queue positions no shard has a call for (not started there: `--fail-fast`, or interrupted).
    pub not_run: Vec<usize>,
    /// The suite's name the shards recorded.
    pub suite_name: String,
}

/// Reads the folders and merges them ([`ShardFolder::read`], [`merge`]).
pub fn read_and_merge(dirs: &[PathBuf]) -> Result<MergedRun, MergeError> {
    let shards = dirs.iter().map(|d| ShardFolder::read(d)).collect::<Result<Vec<_>, _>>()?;
    merge(shards)
}

/// The shards as one run, after checking that they are exactly the shards
/// `0/N` … `N-1/N` of one queue (same `N`, suite and queue length, each index
/// once, each call where its shard belongs); otherwise every problem found.
pub fn merge(shards: Vec<ShardFolder>) -> Result<MergedRun, MergeError> {
    if shards.is_empty() {
        return Err(MergeError::Inconsistent(vec!["no shard folders given".into()]));
    }
    let mut problems = Vec::new();
    let mut by_index: BTreeMap<usize, Vec<&ShardFolder>> = BTreeMap::new();
    let mut runs: Vec<(&ShardFolder, &ShardRun)> = Vec::new();
    for folder in &shards {
        match &folder.report.shard {
            Some(s) => {
                runs.push((folder, s));
                by_index.entry(s.index).or_default().push(folder);
            }
            None => problems.push(format!(
                "{}: its report.json names no shard (it was not run with --shard i/N)",
                folder.dir.display()
            )),
        }
    }
    let Some((_, first)) = runs.first() else {
        return Err(MergeError::Inconsistent(problems));
    };
    let count = first.count;
    let listed = |value: &dyn Fn(&ShardRun) -> String| -> Vec<String> {
        runs.iter().map(|(f, s)| format!("{} in {}", value(s), f.dir.display())).collect()
    };
    let counts: BTreeSet<usize> = runs.iter().map(|(_, s)| s.count).collect();
    if counts.len() > 1 {
        let each = listed(&|s| format!("{}/{}", s.index, s.count));
        problems.push(format!("the shard counts differ: {}", each.join(", ")));
    }
    let suites: BTreeSet<&str> = runs.iter().map(|(_, s)| s.suite.as_str()).collect();
    if suites.len() > 1 {
        problems.push(format!("the suites differ: {}", listed(&|s| format!("'{}'", s.suite)).join(", ")));
    }
    let lengths: BTreeSet<usize> = runs.iter().map(|(_, s)| s.queue_length).collect();
    if lengths.len() > 1 {
        let each = listed(&|s| format!("{} call(s)", s.queue_length));
        problems.push(format!("the queue lengths differ (other scenarios, --tag or --repeat?): {}", each.join(", ")));
    }
    for (index, folders) in &by_index {
        if folders.len() > 1 {
            let dirs: Vec<String> = folders.iter().map(|f| f.dir.display().to_string()).collect();
            problems.push(format!("shard {index}/{count} is given {} times: {}", folders.len(), dirs.join(", ")));
        }
    }
    let missing: Vec<String> =
        (0..count).filter(|i| !by_index.contains_key(i)).map(|i| format!("{i}/{count}")).collect();
    if counts.len() == 1 && !missing.is_empty() {
        let have: Vec<String> = runs.iter().map(|(f, _)| f.describe()).collect();
        problems.push(format!(
            "shard{} {} {} missing (given: {})",
            if missing.len() == 1 { "" } else { "s" },
            missing.join(", "),
            if missing.len() == 1 { "is" } else { "are" },
            have.join(", ")
        ));
    }
    for (folder, s) in &runs {
        problems.extend(misplaced_calls(folder, s));
    }
    if !problems.is_empty() {
        return Err(MergeError::Inconsistent(problems));
    }

    let (queue_length, suite_name) = (first.queue_length, first.suite.clone());
    let mut calls: Vec<(usize, Call, PathBuf)> = Vec::new();
    for folder in &shards {
        for call in &folder.report.calls {
            // Checked above: every call has a position.
            let position = call.position.unwrap_or_default();
            calls.push((position, call.clone(), folder.dir.join(call_dir(position, call))));
        }
    }
    calls.sort_by_key(|(position, _, _)| *position);
    let ran: BTreeSet<usize> = calls.iter().map(|(p, _, _)| *p).collect();
    let not_run = (0..queue_length).filter(|p| !ran.contains(p)).collect();
    let call_dirs = calls.iter().map(|(p, call, _)| PathBuf::from(call_dir(*p, call))).collect();
    let sources = calls.iter().map(|(_, _, source)| source.clone()).collect();
    let report = Report::new(calls.into_iter().map(|(_, call, _)| call).collect());
    Ok(MergedRun { report, call_dirs, sources, shard_count: count, queue_length, not_run, suite_name })
}

/// The calls of a shard's report that cannot be where they are: without a
/// queue position, outside the queue, of another shard, or twice.
fn misplaced_calls(folder: &ShardFolder, s: &ShardRun) -> Vec<String> {
    let mut problems = Vec::new();
    let mut seen = BTreeSet::new();
    for call in &folder.report.calls {
        let name = call.name.as_deref().unwrap_or(&call.target);
        match call.position {
            None => problems.push(format!("{}: call '{name}' has no queue position", folder.dir.display())),
            Some(p) if p >= s.queue_length || s.count == 0 || p % s.count != s.index => problems.push(format!(
                "{}: call '{name}' at queue position {p} is not one of shard {}/{}'s ({} call(s) in the queue)",
                folder.dir.display(),
                s.index,
                s.count,
                s.queue_length
            )),
            Some(p) if !seen.insert(p) => {
                problems.push(format!("{}: queue position {p} appears twice", folder.dir.display()))
            }
            Some(_) => {}
        }
    }
    problems
}

/// The call's folder name, as `callprobe run` gave it: its queue position
/// plus one, and its name (else its target).
fn call_dir(position: usize, call: &Call) -> String {
    run_dir::call_dir_name(position + 1, call.name.as_deref().unwrap_or(&call.target))
}

impl MergedRun {
    /// Hard-links (or, across file systems, copies) every call's folder
    /// from its shard into `run_dir`; a call whose shard has no folder for
    /// it (it could not be placed) gets none. Returns how many were taken.
    pub fn link_call_dirs(&self, run_dir: &Path) -> Result<usize, MergeError> {
        let mut taken = 0;
        for (source, name) in self.sources.iter().zip(&self.call_dirs) {
            if !source.is_dir() {
                continue;
            }
            let target = run_dir.join(name);
            link_tree(source, &target).map_err(|e| {
                MergeError::Write(format!("cannot copy {} to {}: {e}", source.display(), target.display()))
            })?;
            taken += 1;
        }
        Ok(taken)
    }
}

/// `source`'s files and folders under `target` (created; must not exist):
/// hard links where possible, else copies.
pub(crate) fn link_tree(source: &Path, target: &Path) -> io::Result<()> {
    std::fs::create_dir(target)?;
    for entry in std::fs::read_dir(source)? {
        let entry = entry?;
        let (from, to) = (entry.path(), target.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            link_tree(&from, &to)?;
        } else if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to)?;
        }
    }
    Ok(())
}

/// `--out DIR`: the merged run folder itself, created, and empty.
pub fn create_out_folder(dir: &Path) -> Result<PathBuf, MergeError> {
    std::fs::create_dir_all(dir).map_err(|e| MergeError::Write(format!("cannot create {}: {e}", dir.display())))?;
    let mut entries =
        std::fs::read_dir(dir).map_err(|e| MergeError::Write(format!("cannot read {}: {e}", dir.display())))?;
    if entries.next().is_some() {
        return Err(MergeError::Write(format!(
            "--out {}: the folder is not empty (give a new or empty folder)",
            dir.display()
        )));
    }
    Ok(dir.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::model::{Transport, Verdict};

    fn call(name: &str, position: usize, verdict: Verdict) -> Call {
        let mut call = Call::bare(
            format!("{name}@cp"),
            format!("cp-{name}"),
            "sip:1@127.0.0.1".into(),
            Transport::Udp,
            verdict,
            1,
        );
        call.name = Some(name.into());
        call.position = Some(position);
        call
    }

    /// Shard `index` of `count` of a queue of `len` calls named `c0`, `c1` …,
    /// every one passing except those in `failing`.
    fn shard(index: usize, count: usize, len: usize, failing: &[usize]) -> ShardFolder {
        let calls = (index..len)
            .step_by(count)
            .map(|p| call(&format!("c{p}"), p, if failing.contains(&p) { Verdict::Fail } else { Verdict::Pass }))
            .collect();
        let mut report = Report::new(calls);
        report.shard = Some(ShardRun { index, count, queue_length: len, suite: "smoke".into() });
        ShardFolder { dir: PathBuf::from(format!("/results/shard-{index}")), report }
    }

    fn problems(shards: Vec<ShardFolder>) -> Vec<String> {
        match merge(shards) {
            Err(MergeError::Inconsistent(p)) => p,
            other => panic!("expected problems, got {other:?}"),
        }
    }

    #[test]
    fn shards_merge_in_queue_order() {
        let merged = merge(vec![shard(2, 3, 7, &[]), shard(0, 3, 7, &[5]), shard(1, 3, 7, &[4])]).expect("merges");
        let names: Vec<&str> = merged.report.calls.iter().filter_map(|c| c.name.as_deref()).collect();
        assert_eq!(names, ["c0", "c1", "c2", "c3", "c4", "c5", "c6"]);
        assert_eq!(merged.report.verdict, Verdict::Fail, "a shard's failure fails the run");
        assert_eq!(merged.report.shard, None, "the merged report is the whole run");
        assert_eq!(merged.call_dirs[4], PathBuf::from("005-c4"));
        assert_eq!(merged.sources[4], PathBuf::from("/results/shard-1/005-c4"));
        assert_eq!((merged.shard_count, merged.queue_length, merged.suite_name.as_str()), (3, 7, "smoke"));
        assert!(merged.not_run.is_empty());
        let passing = merge(vec![shard(0, 2, 3, &[]), shard(1, 2, 3, &[])]).expect("merges");
        assert_eq!(passing.report.verdict, Verdict::Pass);
    }

    #[test]
    fn calls_a_shard_did_not_start_are_counted() {
        let mut stopped = shard(1, 2, 6, &[1]);
        stopped.report.calls.truncate(1);
        let merged = merge(vec![shard(0, 2, 6, &[]), stopped]).expect("merges");
        assert_eq!(merged.not_run, [3, 5]);
        assert_eq!(merged.report.calls.len(), 4);
    }

    #[test]
    fn a_missing_or_doubled_shard_is_named() {
        let p = problems(vec![shard(0, 3, 7, &[]), shard(2, 3, 7, &[])]);
        assert_eq!(p, ["shard 1/3 is missing (given: 0/3 (/results/shard-0), 2/3 (/results/shard-2))"]);
        let p = problems(vec![shard(0, 3, 7, &[]), shard(0, 3, 7, &[])]);
        assert!(p.contains(&"shard 0/3 is given 2 times: /results/shard-0, /results/shard-0".to_string()), "{p:?}");
        assert!(p.iter().any(|l| l.starts_with("shards 1/3, 2/3 are missing")), "{p:?}");
    }

    #[test]
    fn shards_of_different_runs_do_not_merge() {
        let p = problems(vec![shard(0, 2, 4, &[]), shard(1, 3, 4, &[])]);
        assert_eq!(p, ["the shard counts differ: 0/2 in /results/shard-0, 1/3 in /results/shard-1"]);
        let mut other = shard(1, 2, 5, &[]);
        other.report.shard = other.report.shard.map(|s| ShardRun { suite: "nightly".into(), ..s });
        let p = problems(vec![shard(0, 2, 4, &[]), other]);
        assert!(p.iter().any(|l| l.starts_with("the suites differ: 'smoke'")), "{p:?}");
        assert!(p
            .iter()
            .any(|l| l.starts_with("the queue lengths differ (other scenarios, --tag or --repeat?): 4 call(s)")));
        let mut plain = shard(1, 2, 4, &[]);
        plain.report.shard = None;
        let p = problems(vec![shard(0, 2, 4, &[]), plain]);
        assert!(p[0].ends_with("its report.json names no shard (it was not run with --shard i/N)"), "{p:?}");
        assert!(p[1].starts_with("shard 1/2 is missing"), "{p:?}");
    }

    #[test]
    fn a_call_out_of_place_is_named() {
        let mut odd = shard(1, 2, 4, &[]);
        odd.report.calls[0].position = Some(2);
        odd.report.calls[1].position = None;
        let p = problems(vec![shard(0, 2, 4, &[]), odd]);
        assert_eq!(
            p,
            [
                "/results/shard-1: call 'c1' at queue position 2 is not one of shard 1/2's (4 call(s) in the queue)",
                "/results/shard-1: call 'c3' has no queue position",
            ]
        );
        let message = MergeError::Inconsistent(p).to_string();
        assert!(message.starts_with("the folders are not the shards of one run; nothing was merged:\n  - "));
    }
}
