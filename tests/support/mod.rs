//! Shared support code for callprobe's integration tests.
//! Use from a test file with `mod support;` (then `support::peers::...`).

pub mod peers;
pub mod skip;

pub use skip::record_skip;
