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

/// Deterministic pseudo-random numbers (xorshift64) from `seed` (not zero),
/// for the test signals.
#[cfg(test)]
pub(crate) fn xorshift(seed: u64) -> impl Iterator<Item = u64> {
    std::iter::successors(Some(seed), |&s| {
        let s = s ^ (s << 13);
        let s = s ^ (s >> 7);
        Some(s ^ (s << 17))
    })
    .skip(1)
}
