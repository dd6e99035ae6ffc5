//! Media for callprobe: SDP offer/answer, codecs, RTP sending and receive
//! statistics, DTMF, recordings, and analysis of the far end's audio (speech
//! segments, tones, latency measures).
//!
//! Everything here is sans-I/O: state machines and pure functions fed with
//! bytes, samples and times by the caller; nothing reads a clock or a socket.

pub mod codec;
pub mod dtmf;
pub mod g711;
pub mod latency;
pub mod pacer;
pub mod recording;
pub mod rtp;
pub mod rx_stats;
pub mod sdp;
pub mod session;
pub mod tone;
pub mod vad;
pub mod wav;
