//! What the far side of a call did, seen from outside the SIP dialog: the
//! platform's own API while the call runs ([`livekit`]: which room the call
//! landed in, who joined it and when, how the platform is configured) and
//! the audio it sent ([`analysis`]). Evidence for the verdict; nothing here
//! changes the call itself.

pub mod analysis;
pub mod livekit;
