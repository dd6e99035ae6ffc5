//! Media for callprobe: the call's media session, SDP offer/answer, codecs,
//! RTP sending and receive statistics, DTMF. What is done with the audio
//! afterwards (recordings, speech, tones, latency) is in [`crate::audio`].
//!
//! Everything here is sans-I/O: state machines and pure functions fed with
//! bytes, samples and times by the caller; nothing reads a clock or a socket.

pub mod codec;
pub mod dtmf;
pub mod g711;
pub mod pacer;
pub mod rtp;
pub mod rx_stats;
pub mod script;
pub mod sdes;
pub mod sdp;
pub mod session;
pub mod srtp;
