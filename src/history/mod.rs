//! The run history: every `callprobe run` appends a compact summary of its
//! calls (verdict, diagnosis codes, key timings) to `history.sqlite` beside
//! the run folders, keeps it within a number of runs and an age, and
//! rewrites `index.html` there (see [`page`]): the runs newest first, and
//! per scenario its last verdicts and the trend of its timings.
//!
//! The objectives' results (`slo = [...]`, `[regression]`) are kept per
//! run and scenario too, so the page can say when an objective was last
//! breached.
//!
//! An embedded SQLite database (rusqlite, SQLite built in): one file that
//! concurrent runs in the same folder can share safely, queried by age and
//! scenario without reading every run folder.

pub mod page;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection};

use crate::load::sample::CallSample;
use crate::report::call_identity::scenario_label;
use crate::report::model::{Call, Report};

/// The store's file name in the report folder.
pub const FILE_NAME: &str = "history.sqlite";
/// Runs kept by default.
pub const DEFAULT_KEEP_RUNS: usize = 500;
/// Age kept by default.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(90 * 24 * 3600);

/// How much history is kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    pub runs: usize,
    pub max_age: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { runs: DEFAULT_KEEP_RUNS, max_age: DEFAULT_MAX_AGE }
    }
}

/// The timings kept per call, by name (the load report's names).
pub const TIMINGS: [&str; 6] = ["post_dial_delay", "answer", "agent_join", "first_audio", "reply_latency", "mos"];

/// One run as the history keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub id: i64,
    /// The run folder's name (relative to the report folder).
    pub folder: String,
    pub suite: String,
    pub started_unix_ms: u64,
    pub verdict: String,
    pub calls: usize,
    pub passed: usize,
    pub flaky: usize,
}

/// One call of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRow {
    pub run_id: i64,
    pub name: String,
    pub verdict: String,
    pub diagnosis: Vec<String>,
    /// The call's folder, relative to the run folder, when it has one.
    pub dir: Option<String>,
    /// By [`TIMINGS`] order; `None`: not measured.
    pub timings: [Option<f64>; 6],
}

/// One objective's result in a run.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectiveRow {
    pub run_id: i64,
    pub scenario: String,
    /// `slo` or `regression`.
    pub kind: String,
    pub rule: String,
    pub passed: bool,
    pub detail: String,
}

/// The history store of one report folder.
pub struct History {
    db: Connection,
    base: PathBuf,
}

impl History {
    /// Opens (creating) `<base>/history.sqlite`.
    pub fn open(base: &Path) -> Result<History, String> {
        let path = base.join(FILE_NAME);
        let db = Connection::open(&path).map_err(|e| format!("cannot open the history {}: {e}", path.display()))?;
        db.busy_timeout(Duration::from_secs(10)).map_err(|e| format!("history {}: {e}", path.display()))?;
        db.execute_batch(SCHEMA).map_err(|e| format!("cannot set up the history {}: {e}", path.display()))?;
        // A history from before the scenario column: add it (already there: fine).
        let _ = db.execute_batch("ALTER TABLE calls ADD COLUMN scenario TEXT");
        Ok(History { db, base: base.to_path_buf() })
    }

    /// Appends a finished run; `call_dirs[i]` is call `i`'s folder.
    pub fn record(
        &mut self,
        run_dir: &Path,
        suite: &str,
        report: &Report,
        call_dirs: &[PathBuf],
    ) -> Result<i64, String> {
        let folder = run_dir.strip_prefix(&self.base).unwrap_or(run_dir).to_string_lossy().into_owned();
        let started = report.calls.iter().map(|c| c.started_unix_ms).filter(|&t| t > 0).min().unwrap_or_else(now_ms);
        let verdict = word(&report.verdict);
        let passed = report.calls.iter().filter(|c| word(&c.verdict) == "pass").count();
        let flaky = report.calls.iter().filter(|c| word(&c.verdict) == "flaky").count();
        let tx = self.db.transaction().map_err(db_error)?;
        tx.execute(
            "INSERT INTO runs (folder, suite, started_unix_ms, verdict, calls, passed, flaky) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(folder) DO UPDATE SET suite = excluded.suite, started_unix_ms = excluded.started_unix_ms,
               verdict = excluded.verdict, calls = excluded.calls, passed = excluded.passed, flaky = excluded.flaky",
            params![folder, suite, started as i64, verdict, report.calls.len() as i64, passed as i64, flaky as i64],
        )
        .map_err(db_error)?;
        let run_id: i64 =
            tx.query_row("SELECT id FROM runs WHERE folder = ?1", params![folder], |r| r.get(0)).map_err(db_error)?;
        tx.execute("DELETE FROM calls WHERE run_id = ?1", params![run_id]).map_err(db_error)?;
        for (i, call) in report.calls.iter().enumerate() {
            let t = timings(call);
            let dir = call_dirs.get(i).map(|d| d.to_string_lossy().into_owned());
            tx.execute(
                "INSERT INTO calls (run_id, position, name, verdict, diagnosis, dir,
                   post_dial_delay_ms, answer_ms, agent_join_ms, first_audio_ms, reply_latency_ms, mos, scenario)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
                params![
                    run_id,
                    i as i64,
                    scenario_label(call),
                    word(&call.verdict),
                    call.diagnosis.iter().map(|d| d.code.as_str()).collect::<Vec<_>>().join(","),
                    dir,
                    t[0],
                    t[1],
                    t[2],
                    t[3],
                    t[4],
                    t[5],
                    call.scenario
                ],
            )
            .map_err(db_error)?;
        }
        tx.execute("DELETE FROM objectives WHERE run_id = ?1", params![run_id]).map_err(db_error)?;
        for o in &report.slo {
            tx.execute(
                "INSERT INTO objectives (run_id, scenario, kind, rule, passed, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![run_id, o.scenario, o.kind, o.rule, o.passed, o.detail],
            )
            .map_err(db_error)?;
        }
        tx.commit().map_err(db_error)?;
        Ok(run_id)
    }

    /// Drops runs beyond the newest `keep.runs` and older than `keep.max_age`.
    pub fn prune(&mut self, keep: Retention, now_unix_ms: u64) -> Result<usize, String> {
        let oldest = now_unix_ms.saturating_sub(keep.max_age.as_millis() as u64) as i64;
        let tx = self.db.transaction().map_err(db_error)?;
        let doomed = "SELECT id FROM runs WHERE started_unix_ms < ?1 OR id IN
                        (SELECT id FROM runs ORDER BY started_unix_ms DESC, id DESC LIMIT -1 OFFSET ?2)";
        let ids: Vec<i64> = {
            let mut stmt = tx.prepare(doomed).map_err(db_error)?;
            let rows = stmt.query_map(params![oldest, keep.runs as i64], |r| r.get(0)).map_err(db_error)?;
            rows.collect::<Result<_, _>>().map_err(db_error)?
        };
        for id in &ids {
            tx.execute("DELETE FROM calls WHERE run_id = ?1", params![id]).map_err(db_error)?;
            tx.execute("DELETE FROM objectives WHERE run_id = ?1", params![id]).map_err(db_error)?;
            tx.execute("DELETE FROM runs WHERE id = ?1", params![id]).map_err(db_error)?;
        }
        tx.commit().map_err(db_error)?;
        Ok(ids.len())
    }

    /// Runs, newest first (at most `limit`).
    pub fn runs(&self, limit: usize) -> Result<Vec<RunRow>, String> {
        let mut stmt = self
            .db
            .prepare(
                "SELECT id, folder, suite, started_unix_ms, verdict, calls, passed, flaky FROM runs
                 ORDER BY started_unix_ms DESC, id DESC LIMIT ?1",
            )
            .map_err(db_error)?;
        let rows = stmt
            .query_map(params![limit as i64], |r| {
                Ok(RunRow {
                    id: r.get(0)?,
                    folder: r.get(1)?,
                    suite: r.get(2)?,
                    started_unix_ms: r.get::<_, i64>(3)?.max(0) as u64,
                    verdict: r.get(4)?,
                    calls: r.get::<_, i64>(5)?.max(0) as usize,
                    passed: r.get::<_, i64>(6)?.max(0) as usize,
                    flaky: r.get::<_, i64>(7)?.max(0) as usize,
                })
            })
            .map_err(db_error)?;
        rows.collect::<Result<_, _>>().map_err(db_error)
    }

    /// Every call of the given runs, in run then queue order.
    pub fn calls_of(&self, run_ids: &[i64]) -> Result<Vec<CallRow>, String> {
        let mut out = Vec::new();
        let mut stmt = self
            .db
            .prepare(
                "SELECT run_id, name, verdict, diagnosis, dir, post_dial_delay_ms, answer_ms, agent_join_ms,
                   first_audio_ms, reply_latency_ms, mos FROM calls WHERE run_id = ?1 ORDER BY position",
            )
            .map_err(db_error)?;
        for id in run_ids {
            let rows = stmt
                .query_map(params![id], |r| {
                    let diagnosis: String = r.get(3)?;
                    Ok(CallRow {
                        run_id: r.get(0)?,
                        name: r.get(1)?,
                        verdict: r.get(2)?,
                        diagnosis: diagnosis.split(',').filter(|s| !s.is_empty()).map(str::to_string).collect(),
                        dir: r.get(4)?,
                        timings: [r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?, r.get(9)?, r.get(10)?],
                    })
                })
                .map_err(db_error)?;
            for row in rows {
                out.push(row.map_err(db_error)?);
            }
        }
        Ok(out)
    }

    /// Every objective result of the given runs, in run order then as the run listed them.
    pub fn objectives_of(&self, run_ids: &[i64]) -> Result<Vec<ObjectiveRow>, String> {
        let mut out = Vec::new();
        let mut stmt = self
            .db
            .prepare(
                "SELECT run_id, scenario, kind, rule, passed, detail FROM objectives WHERE run_id = ?1 ORDER BY rowid",
            )
            .map_err(db_error)?;
        for id in run_ids {
            let rows = stmt
                .query_map(params![id], |r| {
                    Ok(ObjectiveRow {
                        run_id: r.get(0)?,
                        scenario: r.get(1)?,
                        kind: r.get(2)?,
                        rule: r.get(3)?,
                        passed: r.get(4)?,
                        detail: r.get(5)?,
                    })
                })
                .map_err(db_error)?;
            for row in rows {
                out.push(row.map_err(db_error)?);
            }
        }
        Ok(out)
    }

    /// The calls of `scenario` in its last `runs` recorded runs (newest
    /// first), `this_run` (the run being judged) left out, as the
    /// objectives see them.
    pub fn past_runs(
        &self,
        scenario: &str,
        runs: usize,
        this_run: &Path,
    ) -> Result<Vec<Vec<crate::verdict::slo::Observed>>, String> {
        let this = this_run.strip_prefix(&self.base).unwrap_or(this_run).to_string_lossy().into_owned();
        let mut stmt = self
            .db
            .prepare(
                "SELECT DISTINCT r.id FROM runs r JOIN calls c ON c.run_id = r.id
                 WHERE c.scenario = ?1 AND r.folder != ?2 ORDER BY r.started_unix_ms DESC, r.id DESC LIMIT ?3",
            )
            .map_err(db_error)?;
        let ids: Vec<i64> = stmt
            .query_map(params![scenario, this, runs as i64], |r| r.get(0))
            .map_err(db_error)?
            .collect::<Result<_, _>>()
            .map_err(db_error)?;
        let mut out = Vec::new();
        let mut calls = self
            .db
            .prepare(
                "SELECT verdict, post_dial_delay_ms, answer_ms, agent_join_ms, first_audio_ms, reply_latency_ms, mos
                 FROM calls WHERE run_id = ?1 AND scenario = ?2 ORDER BY position",
            )
            .map_err(db_error)?;
        for id in ids {
            let rows = calls
                .query_map(params![id, scenario], |r| {
                    let verdict: String = r.get(0)?;
                    let mut values = Vec::new();
                    for (i, name) in TIMINGS.iter().enumerate() {
                        if let Some(v) = r.get::<_, Option<f64>>(i + 1)? {
                            values.push((name.to_string(), v));
                        }
                    }
                    Ok(crate::verdict::slo::Observed { passed: verdict == "pass" || verdict == "flaky", values })
                })
                .map_err(db_error)?;
            out.push(rows.collect::<Result<_, _>>().map_err(db_error)?);
        }
        Ok(out)
    }

    /// Rewrites `<base>/index.html`.
    pub fn write_index(&self) -> Result<PathBuf, String> {
        let html = page::render(self)?;
        let path = self.base.join("index.html");
        std::fs::write(&path, html).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY,
  folder TEXT NOT NULL UNIQUE,
  suite TEXT NOT NULL,
  started_unix_ms INTEGER NOT NULL,
  verdict TEXT NOT NULL,
  calls INTEGER NOT NULL,
  passed INTEGER NOT NULL,
  flaky INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS calls (
  run_id INTEGER NOT NULL REFERENCES runs(id),
  position INTEGER NOT NULL,
  name TEXT NOT NULL,
  verdict TEXT NOT NULL,
  diagnosis TEXT NOT NULL,
  dir TEXT,
  post_dial_delay_ms REAL,
  answer_ms REAL,
  agent_join_ms REAL,
  first_audio_ms REAL,
  reply_latency_ms REAL,
  mos REAL
);
CREATE TABLE IF NOT EXISTS objectives (
  run_id INTEGER NOT NULL REFERENCES runs(id),
  scenario TEXT NOT NULL,
  kind TEXT NOT NULL,
  rule TEXT NOT NULL,
  passed INTEGER NOT NULL,
  detail TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_by_run ON calls(run_id);
CREATE INDEX IF NOT EXISTS objectives_by_run ON objectives(run_id);
CREATE INDEX IF NOT EXISTS calls_by_name ON calls(name);
";

/// The key timings of a call, in [`TIMINGS`] order.
fn timings(call: &Call) -> [Option<f64>; 6] {
    let s = CallSample::from_call(0, 0, String::new(), call);
    [
        s.post_dial_delay_ms,
        s.answer_ms,
        s.agent_join_ms,
        s.first_audio_ms,
        s.reply_latency_ms,
        call.media.mos.as_ref().map(|m| m.received.mos),
    ]
}

/// A verdict as report.json writes it (`pass`, `fail`, …).
fn word<T: serde::Serialize>(verdict: &T) -> String {
    serde_json::to_value(verdict).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_else(|| "unknown".into())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn db_error(e: rusqlite::Error) -> String {
    format!("history: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("callprobe-history-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        dir
    }

    fn report(verdicts: &[(&str, crate::report::model::Verdict, u64)]) -> Report {
        let calls = verdicts
            .iter()
            .map(|(name, verdict, at)| {
                let request = crate::request::CallRequest::new("sip:+1@127.0.0.1:9".into());
                let spec = request.prepare().expect("prepares");
                let mut call = Call::not_run(Some(name.to_string()), Vec::new(), &spec, "x");
                call.verdict = *verdict;
                call.started_unix_ms = *at;
                call
            })
            .collect();
        Report::new(calls)
    }

    #[test]
    fn runs_are_recorded_listed_newest_first_and_pruned() {
        use crate::report::model::Verdict::{Fail, Pass};
        let base = scratch("record");
        let mut h = History::open(&base).expect("opens");
        for (i, v) in [Pass, Fail, Pass].into_iter().enumerate() {
            let run = base.join(format!("run-{i}"));
            h.record(&run, "smoke", &report(&[("a", v, 1_000 + i as u64), ("b", Pass, 1_000 + i as u64)]), &[])
                .expect("records");
        }
        let runs = h.runs(10).expect("runs");
        assert_eq!(runs.iter().map(|r| r.folder.as_str()).collect::<Vec<_>>(), ["run-2", "run-1", "run-0"]);
        assert_eq!((runs[1].verdict.as_str(), runs[1].passed, runs[1].calls), ("fail", 1, 2));
        let calls = h.calls_of(&[runs[1].id]).expect("calls");
        assert_eq!(
            calls.iter().map(|c| (c.name.as_str(), c.verdict.as_str())).collect::<Vec<_>>(),
            [("a", "fail"), ("b", "pass")]
        );
        // Recording the same folder again replaces it.
        h.record(&base.join("run-2"), "smoke", &report(&[("a", Fail, 1_002)]), &[]).expect("records");
        assert_eq!(h.runs(10).expect("runs").len(), 3);
        assert_eq!(h.calls_of(&[runs[0].id]).expect("calls").len(), 1);
        // Retention: two runs by count, then by age.
        let dropped = h.prune(Retention { runs: 2, max_age: Duration::from_secs(3600) }, 2_000).expect("prunes");
        assert_eq!(dropped, 1);
        assert_eq!(h.runs(10).expect("runs").len(), 2);
        let dropped = h.prune(Retention { runs: 10, max_age: Duration::from_millis(500) }, 1_502).expect("prunes");
        assert_eq!(dropped, 1, "run-1 (1001) is older than 500 ms before 1502");
        let _ = std::fs::remove_dir_all(&base);
    }

    #[test]
    fn objectives_are_kept_per_run_and_pruned_with_it() {
        use crate::report::model::Verdict::Pass;
        use crate::verdict::slo::SloResult;
        let base = scratch("objectives");
        let mut h = History::open(&base).expect("opens");
        for (i, met) in [true, false].into_iter().enumerate() {
            let mut r = report(&[("a", Pass, 1_000 + i as u64)]);
            r.slo.push(SloResult {
                scenario: "greets".into(),
                kind: "slo".into(),
                rule: "agent_join.p95 <= 3s".into(),
                passed: met,
                detail: format!("agent_join p95 run {i}"),
            });
            h.record(&base.join(format!("run-{i}")), "smoke", &r, &[]).expect("records");
        }
        let runs = h.runs(10).expect("runs");
        let ids: Vec<i64> = runs.iter().rev().map(|r| r.id).collect();
        let rows = h.objectives_of(&ids).expect("objectives");
        assert_eq!(
            rows.iter().map(|o| (o.passed, o.detail.as_str())).collect::<Vec<_>>(),
            [(true, "agent_join p95 run 0"), (false, "agent_join p95 run 1")]
        );
        assert_eq!(h.prune(Retention { runs: 1, max_age: Duration::from_secs(3600) }, 2_000).expect("prunes"), 1);
        assert_eq!(h.objectives_of(&ids).expect("objectives").len(), 1);
        let _ = std::fs::remove_dir_all(&base);
    }
}
