//! TLS to Postgres, for the set-up connection (tokio-postgres + rustls) and the replication connection
//! (pgwire-replication), from one set of settings: libpq's `sslmode` and `sslrootcert` in `pg_url`, and
//! [`SourceConfig::ssl_root_cert`](crate::SourceConfig::ssl_root_cert).
//!
//! | `sslmode`     | TLS                          | server certificate checked          |
//! |---------------|------------------------------|-------------------------------------|
//! | `disable`     | never                        | -                                   |
//! | `prefer`      | when the server offers it    | no                                  |
//! | `require`     | always                       | no (like `verify-ca` with a root)   |
//! | `verify-ca`   | always                       | chain, against the roots            |
//! | `verify-full` | always                       | chain and host name                 |
//!
//! As in libpq, `prefer` is the default, `allow` is taken as `prefer`, and `require` with a root certificate
//! verifies like `verify-ca`. Unlike libpq, a root certificate given without any `sslmode` means
//! `verify-full` (a configured CA that is silently not used would be worse), and without a root certificate
//! the Mozilla roots (webpki-roots) are trusted; `sslrootcert=system` asks for them explicitly.

use crate::WalError;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// libpq's `sslmode`: whether the connections to Postgres use TLS, and what they check.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SslMode {
    /// Plain TCP only.
    Disable,
    /// TLS when the server offers it, without checking its certificate; plain otherwise.
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is not checked.
    Require,
    /// TLS, with the server certificate's chain checked against the trusted roots.
    VerifyCa,
    /// TLS, with the chain and the host name checked.
    VerifyFull,
}

impl SslMode {
    /// Parses a libpq `sslmode` value (`allow` is taken as `prefer`).
    pub fn parse(value: &str) -> Result<SslMode, WalError> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" | "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            other => {
                return Err(WalError::Config(format!(
                "sslmode={other:?} in source.pg_url: use disable, prefer, require, verify-ca or verify-full"
            )))
            }
        })
    }

    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// True when the connection fails rather than going without TLS.
    pub fn requires_tls(self) -> bool {
        matches!(self, SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull)
    }

    /// tokio-postgres knows only disable/prefer/require: the checking is done by our rustls configuration.
    pub(crate) fn for_tokio_postgres(self) -> tokio_postgres::config::SslMode {
        use tokio_postgres::config::SslMode as Pg;
        match self {
            SslMode::Disable => Pg::Disable,
            SslMode::Prefer => Pg::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => Pg::Require,
        }
    }
}

impl std::fmt::Display for SslMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The effective TLS settings of both connections to Postgres.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// The effective mode (after the rules in the module docs).
    pub mode: SslMode,
    /// PEM file of the trusted root certificates; `None`: the Mozilla roots.
    pub root_cert: Option<PathBuf>,
}

/// The TLS parameters found in `pg_url`, before the rules are applied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct UrlTls {
    /// `sslmode`, when given.
    pub(crate) mode: Option<SslMode>,
    /// `sslrootcert`, when given (`system` included).
    pub(crate) root_cert: Option<String>,
}

impl TlsSettings {
    /// Applies the rules of the module docs; `ssl_root_cert` (the config field) wins over `sslrootcert`.
    pub(crate) fn resolve(url: UrlTls, ssl_root_cert: Option<&Path>) -> TlsSettings {
        let explicit_root = ssl_root_cert.is_some() || url.root_cert.is_some();
        let root_cert = match ssl_root_cert {
            Some(path) => Some(path.to_path_buf()),
            None => url.root_cert.filter(|r| r != "system").map(PathBuf::from),
        };
        let mode = match url.mode {
            None if explicit_root => SslMode::VerifyFull,
            None => SslMode::Prefer,
            Some(SslMode::Require) if root_cert.is_some() => SslMode::VerifyCa,
            Some(mode) => mode,
        };
        TlsSettings { mode, root_cert }
    }

    /// The rustls configuration of the set-up connection. With `verify-*`, fails when the root certificate
    /// file cannot be read or holds no certificate (the other modes do not read it).
    pub(crate) fn rustls_config(&self) -> Result<ClientConfig, WalError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| WalError::Config(format!("TLS set-up: {e}")))?;
        let verifier: Arc<dyn ServerCertVerifier> = match self.mode {
            SslMode::VerifyFull => {
                return Ok(builder
                    .with_root_certificates(self.roots()?)
                    .with_no_client_auth());
            }
            SslMode::VerifyCa => Arc::new(ChainOnly(
                WebPkiServerVerifier::builder_with_provider(Arc::new(self.roots()?), Arc::clone(&provider))
                    .build()
                    .map_err(|e| WalError::Config(format!("TLS set-up: {e}")))?,
            )),
            SslMode::Disable | SslMode::Prefer | SslMode::Require => Arc::new(AnyCertificate(provider)),
        };
        Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth())
    }

    fn roots(&self) -> Result<RootCertStore, WalError> {
        let mut roots = RootCertStore::empty();
        let Some(path) = &self.root_cert else {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            return Ok(roots);
        };
        let bad = |why: String| {
            WalError::Config(format!(
                "source.ssl_root_cert (or sslrootcert in pg_url) = {}: {why}",
                path.display()
            ))
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(format!("cannot read it: {e}")))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("not a PEM file of certificates: {e}")))?;
        let (added, _) = roots.add_parsable_certificates(certs);
        if added == 0 {
            return Err(bad("holds no usable certificate".into()));
        }
        Ok(roots)
    }

    /// The same settings for the replication connection. With `verify-full` and a host given as an IP
    /// address, the address is passed as the name to check (pgwire-replication refuses it otherwise).
    pub(crate) fn for_replication(&self, host: &str) -> pgwire_replication::TlsConfig {
        use pgwire_replication::SslMode as R;
        let mode = match self.mode {
            SslMode::Disable => R::Disable,
            SslMode::Prefer => R::Prefer,
            SslMode::Require => R::Require,
            SslMode::VerifyCa => R::VerifyCa,
            SslMode::VerifyFull => R::VerifyFull,
        };
        let ip_host = host.parse::<std::net::IpAddr>().is_ok();
        pgwire_replication::TlsConfig {
            mode,
            ca_pem_path: self.root_cert.clone(),
            sni_hostname: (self.mode == SslMode::VerifyFull && ip_host).then(|| host.to_string()),
            ..Default::default()
        }
    }
}

/// `prefer` and `require`: any certificate is accepted (the handshake signatures are still checked).
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
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

/// `verify-ca`: the chain must lead to a trusted root; the name in the certificate is not compared.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
#[path = "tls_tests.rs"]
mod tests;
