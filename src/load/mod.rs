//! `callprobe load`: many calls of a scenario at a rate or a ramp of
//! concurrency levels, each through the same checks as `callprobe run`, and
//! what broke first — per step the success rate and percentiles of every
//! timing, failures grouped by diagnosis, and the knee where a rule the user
//! set is crossed.
//!
//! In the order a load run happens: [`plan`] (the steps), [`runner`] (the
//! scheduler), [`sample`] (a finished call as a row), [`stats`] (a step's
//! numbers), [`knee`] (the rules), [`report`] and [`page`] (what is written),
//! [`merge`] (shards of one load run as one).

pub mod knee;
pub mod merge;
pub mod page;
pub mod plan;
pub mod report;
pub mod runner;
pub mod sample;
pub mod stats;
