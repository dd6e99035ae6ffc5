//! callprobe: places real test calls into voice AI agents behind LiveKit SIP
//! and says, call by call, whether the chain works and, when not, why.
//!
//! Modules read in the order a call happens: `cli` and `scenario` → the
//! `request` they build (with its scripted `conversation`, whose text the
//! offline `tts` speaks) → `suite` (the job queue of `callprobe run`) →
//! `pipeline` (one call end to end; a call that failed is tried again
//! under `retry`): `call` (with the sans-I/O `sip` and
//! `media` cores, and `livekit` watching the room alongside) → `audio` (what
//! the far end said) → `verdict` → `report` (`report::outputs` writes
//! everything); `console` is what the terminal shows, `exit` how a run
//! ends. `livekit::doctor` audits the LiveKit SIP configuration. `time`
//! is how every part carries time on the call's timeline. `shard` splits a
//! suite's queue into stable slices (`run --shard i/N`), and
//! `report::merge` puts the slices' run folders back together
//! (`callprobe merge`).

pub mod audio;
pub mod call;
pub mod cli;
pub mod console;
pub mod conversation;
#[cfg(test)]
mod doc_links;
pub mod exit;
pub mod finding;
pub mod history;
pub mod keylog;
pub mod livekit;
pub mod load;
pub mod media;
pub mod pipeline;
pub mod report;
pub mod request;
pub mod retry;
pub mod scenario;
pub mod secret;
pub mod shard;
pub mod sip;
pub mod suite;
pub mod time;
pub mod transcribe;
pub mod tts;
pub mod verdict;
