//! Watching the far side of a call through the platform's own API while the
//! SIP call runs: which room the call landed in, who joined it and when, and
//! how the platform is configured. What is seen here is evidence for the
//! verdict; it never changes the call itself.

pub mod analysis;
pub mod livekit;
