//! The TLS client of SIP over TLS: which certificates are trusted (the
//! system's roots from /etc/ssl/certs, or a `--tls-ca` file instead), the
//! `--tls-insecure` verifier that checks nothing, the key log, and what a
//! failed handshake means in the user's terms ([`classify`]).
//!
//! The server name checked against the certificate is the URI host: a DNS
//! name is also sent as SNI; an IP literal is matched against the
//! certificate's IP subjectAltName (no SNI is sent for it, RFC 6066).
//! rustls's own aws-lc-rs provider is used explicitly (the build has two
//! providers, so rustls would not pick one by itself).

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::keylog::KeyLog;
use crate::sip::TlsProblem;

/// How a call's TLS server is checked, as the user asked for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// Trust only this PEM file's CA certificates (instead of the system's).
    pub ca: Option<PathBuf>,
    /// Do not verify the server's certificate at all.
    pub insecure: bool,
}

/// A ready TLS client configuration (shared by the call's connections).
#[derive(Clone)]
pub struct TlsClient {
    config: Arc<ClientConfig>,
    /// `false` with `--tls-insecure`.
    pub verified: bool,
    /// `system` or the CA file's path, for the report.
    pub roots: String,
}

impl std::fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsClient").field("verified", &self.verified).field("roots", &self.roots).finish()
    }
}

/// Why the TLS client could not be set up (the tester's problem: exit 2).
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("cannot read the CA file {}: {error}", path.display())]
    CaRead { path: PathBuf, error: io::Error },
    #[error("the CA file {} holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)", path.display())]
    CaEmpty { path: PathBuf },
    #[error("the CA file {} holds no usable CA certificate: {detail}", path.display())]
    CaBad { path: PathBuf, detail: String },
    #[error("no trusted root certificates in the system store (/etc/ssl/certs): install the ca-certificates package, or give --tls-ca FILE")]
    NoSystemRoots,
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
}

impl TlsClient {
    /// The client for `options`, writing its secrets to `keylog` when given.
    pub fn new(options: &TlsOptions, keylog: Option<&KeyLog>) -> Result<TlsClient, TlsSetupError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
        let (mut config, roots) = if options.insecure {
            let verifier = Arc::new(NoVerification(provider));
            (builder.dangerous().with_custom_certificate_verifier(verifier).with_no_client_auth(), "none".to_string())
        } else {
            let (store, roots) = match &options.ca {
                Some(path) => (roots_from_file(path)?, path.display().to_string()),
                None => (system_roots()?, "system".to_string()),
            };
            (builder.with_root_certificates(store).with_no_client_auth(), roots)
        };
        if let Some(log) = keylog {
            config.key_log = Arc::new(log.clone());
        }
        Ok(TlsClient { config: Arc::new(config), verified: !options.insecure, roots })
    }

    pub fn connector(&self) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(self.config.clone())
    }
}

/// The server name to check for `host` (a DNS name or an IP literal,
/// with or without IPv6 brackets).
pub fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_string()).map_err(|e| format!("'{host}' cannot be checked against a certificate: {e}"))
}

fn roots_from_file(path: &Path) -> Result<RootCertStore, TlsSetupError> {
    let pem = std::fs::read(path).map_err(|error| TlsSetupError::CaRead { path: path.to_path_buf(), error })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsSetupError::CaBad { path: path.to_path_buf(), detail: e.to_string() })?;
    if certs.is_empty() {
        return Err(TlsSetupError::CaEmpty { path: path.to_path_buf() });
    }
    let mut store = RootCertStore::empty();
    for cert in certs {
        store.add(cert).map_err(|e| TlsSetupError::CaBad { path: path.to_path_buf(), detail: e.to_string() })?;
    }
    Ok(store)
}

fn system_roots() -> Result<RootCertStore, TlsSetupError> {
    // Unreadable single files are skipped, as every TLS client does.
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(found.certs);
    if store.is_empty() {
        return Err(TlsSetupError::NoSystemRoots);
    }
    Ok(store)
}

/// What a failed TLS connection means: the problem and a sentence for the report.
pub fn classify(error: &io::Error, server: &str) -> (TlsProblem, String) {
    let rustls_error = error.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>());
    let problem = match rustls_error {
        Some(rustls::Error::InvalidCertificate(c)) => certificate_problem(c),
        _ if error.kind() == io::ErrorKind::TimedOut => TlsProblem::HandshakeTimeout,
        _ => TlsProblem::HandshakeFailed,
    };
    let what = match problem {
        TlsProblem::CertificateExpired => format!("the certificate {server} presented has expired (or is not valid yet)"),
        TlsProblem::WrongHost => format!("the certificate presented is not valid for {server}"),
        TlsProblem::UnknownCa => format!("the certificate {server} presented is not signed by a trusted CA"),
        // A self-signed certificate made with `openssl req -x509` says CA:TRUE.
        TlsProblem::BadCertificate if format!("{error:?}").contains("CaUsedAsEndEntity") => format!(
            "the certificate {server} presented is a CA certificate (CA:TRUE, e.g. self-signed with openssl req -x509): \
             the server needs a server certificate issued by a CA, and that CA given with --tls-ca"
        ),
        TlsProblem::BadCertificate => format!("the certificate {server} presented was refused"),
        TlsProblem::HandshakeTimeout => format!("the TLS handshake with {server} did not finish"),
        TlsProblem::HandshakeFailed => format!("the TLS handshake with {server} failed"),
    };
    (problem, format!("{what} ({error})"))
}

fn certificate_problem(c: &CertificateError) -> TlsProblem {
    match c {
        CertificateError::Expired
        | CertificateError::ExpiredContext { .. }
        | CertificateError::NotValidYet
        | CertificateError::NotValidYetContext { .. } => TlsProblem::CertificateExpired,
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => TlsProblem::WrongHost,
        CertificateError::UnknownIssuer => TlsProblem::UnknownCa,
        _ => TlsProblem::BadCertificate,
    }
}

/// `--tls-insecure`: any certificate is accepted; the handshake's own
/// signatures are still checked (they prove the peer holds the key it shows).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_of(e: rustls::Error) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }

    #[test]
    fn certificate_errors_become_problems() {
        let cert = |c| classify(&io_of(rustls::Error::InvalidCertificate(c)), "sip.example.com").0;
        assert_eq!(cert(CertificateError::Expired), TlsProblem::CertificateExpired);
        assert_eq!(cert(CertificateError::NotValidYet), TlsProblem::CertificateExpired);
        assert_eq!(cert(CertificateError::NotValidForName), TlsProblem::WrongHost);
        assert_eq!(cert(CertificateError::UnknownIssuer), TlsProblem::UnknownCa);
        assert_eq!(cert(CertificateError::Revoked), TlsProblem::BadCertificate);
        let timeout = io::Error::new(io::ErrorKind::TimedOut, "no TLS handshake within 5s");
        let (problem, detail) = classify(&timeout, "127.0.0.1:5061");
        assert_eq!(problem, TlsProblem::HandshakeTimeout);
        assert!(detail.starts_with("the TLS handshake with 127.0.0.1:5061 did not finish"), "{detail}");
        let alert = io_of(rustls::Error::AlertReceived(rustls::AlertDescription::HandshakeFailure));
        assert_eq!(classify(&alert, "h").0, TlsProblem::HandshakeFailed);
    }

    #[test]
    fn server_names_for_dns_names_and_ip_literals() {
        assert!(matches!(server_name("sip.example.com"), Ok(ServerName::DnsName(_))));
        assert!(matches!(server_name("127.0.0.1"), Ok(ServerName::IpAddress(_))));
        assert!(matches!(server_name("[::1]"), Ok(ServerName::IpAddress(_))));
        assert!(server_name("bad name!").is_err());
    }

    #[test]
    fn ca_file_errors_name_the_file() {
        let missing = TlsOptions { ca: Some("/nonexistent/ca.pem".into()), insecure: false };
        let e = TlsClient::new(&missing, None).unwrap_err().to_string();
        assert!(e.starts_with("cannot read the CA file /nonexistent/ca.pem: "), "{e}");
        let dir = std::env::temp_dir().join(format!("callprobe-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let e = TlsClient::new(&TlsOptions { ca: Some(empty.clone()), insecure: false }, None).unwrap_err();
        assert!(matches!(e, TlsSetupError::CaEmpty { .. }), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn insecure_says_so_and_system_roots_load() {
        let c = TlsClient::new(&TlsOptions { ca: None, insecure: true }, None).unwrap();
        assert!(!c.verified);
        // This machine has /etc/ssl/certs (ca-certificates).
        if std::path::Path::new("/etc/ssl/certs").is_dir() {
            let c = TlsClient::new(&TlsOptions::default(), None).unwrap();
            assert!(c.verified && c.roots == "system");
        }
    }
}
