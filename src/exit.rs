//! How a run of callprobe ends, as the process exit status says it:
//! [`Exit::Passed`] (0), [`Exit::SystemUnderTestFailed`] (1),
//! [`Exit::TesterError`] (2). `main.rs` maps it to the process exit code.

use crate::verdict::Verdict;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Every check passed (or there was nothing to check: `--help`).
    Passed,
    /// The system under test failed a check (or `doctor` found an error).
    SystemUnderTestFailed,
    /// The tester could not run: bad input, no access, interrupted.
    TesterError,
}

impl Exit {
    /// The process exit status.
    pub fn code(self) -> u8 {
        match self {
            Exit::Passed => 0,
            Exit::SystemUnderTestFailed => 1,
            Exit::TesterError => 2,
        }
    }
}

impl From<Verdict> for Exit {
    fn from(verdict: Verdict) -> Exit {
        match verdict {
            Verdict::Pass => Exit::Passed,
            Verdict::Fail => Exit::SystemUnderTestFailed,
            Verdict::Error => Exit::TesterError,
        }
    }
}

/// The run's verdict as report.json has it.
impl From<crate::report::model::Verdict> for Exit {
    fn from(verdict: crate::report::model::Verdict) -> Exit {
        Exit::from(Verdict::from(verdict))
    }
}
