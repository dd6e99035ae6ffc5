//! Audio as callprobe hears and keeps it, apart from the wire: WAV files
//! (`wav`), the call's recordings on one timeline with resampling
//! (`recording`), speech detection (`vad`), tone detection (`tone`),
//! response latency (`latency`), and the analysis of what the far end said
//! that the checks read (`analysis`). Sans-I/O except `wav`'s file helpers.

pub mod analysis;
pub mod latency;
pub mod recording;
pub mod tone;
pub mod turns;
pub mod vad;
pub mod wav;
