//! SIP signalling, sans-I/O: messages, digest auth, transactions and the
//! caller's call state machine. Nothing here touches a socket or the clock.

pub mod caller;
pub mod digest;
pub mod framing;
pub mod message;
pub mod transaction;

#[cfg(test)]
mod caller_tests;
