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
    /// SIP over TLS over TCP (RFC 3261 section 26.2; `sips:` or `;transport=tls`).
    Tls,
}

/// The default port of a SIP URI: 5061 for `sips:` or `;transport=tls`
/// (RFC 3261 section 19.1.2), else 5060.
pub fn default_port(secure: bool) -> u16 {
    if secure {
        5061
    } else {
        5060
    }
}

impl Transport {
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }
    /// The `;transport=` parameter value.
    pub fn param(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }
    pub fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Tls)
    }
}

/// Why a TLS connection could not be set up (`EndReason::TlsFailed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsProblem {
    /// The server's certificate is past its notAfter (or before notBefore).
    CertificateExpired,
    /// The certificate does not name the host we called.
    WrongHost,
    /// The certificate chain does not lead to a trusted CA.
    UnknownCa,
    /// Another certificate problem (revoked, bad signature, wrong usage …).
    BadCertificate,
    /// TCP connected but the TLS handshake did not finish in time.
    HandshakeTimeout,
    /// The handshake failed for a reason that is not the certificate
    /// (no common version or cipher, the peer sent an alert, not TLS at all).
    HandshakeFailed,
}

impl TlsProblem {
    /// Whether the server's certificate was the problem.
    pub fn is_certificate(self) -> bool {
        matches!(
            self,
            TlsProblem::CertificateExpired | TlsProblem::WrongHost | TlsProblem::UnknownCa | TlsProblem::BadCertificate
        )
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
