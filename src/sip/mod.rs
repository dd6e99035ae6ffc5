//! SIP signalling, sans-I/O: messages, digest auth, transactions and the
//! caller's call state machine. Nothing here touches a socket or the clock.
//!
//! This file owns the addressing vocabulary shared by the caller and the
//! shell: the [`Transport`] a call runs over and where a message goes
//! ([`Peer`], [`HostPort`]).

pub mod caller;
pub mod digest;
pub mod framing;
pub mod message;
pub mod transaction;

#[cfg(test)]
mod caller_tests;

use std::net::SocketAddr;

/// The transport SIP runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
        }
    }
    pub fn is_reliable(self) -> bool {
        self == Transport::Tcp
    }
}

/// A next hop the shell must resolve (a URI's host and port).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub host: String,
    pub port: u16,
}

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// A request: to a URI's host and port.
    Hop(HostPort),
    /// A response: back to where the request came from.
    Addr(SocketAddr),
}
