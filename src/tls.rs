//! TLS shared by every probe and notifier: one crypto provider, trust roots, client configs, and
//! what a peer's certificate chain says.
//!
//! honeyguide compiles exactly one rustls crypto provider, *ring* (the lighter build); with two,
//! rustls panics at the first handshake unless a default is installed. [`install_crypto_provider`]
//! is still called first thing in `main` and in tests, because reqwest is built without a
//! provider of its own and uses the process default.

use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

/// Installs *ring* as the process-wide rustls provider. Idempotent.
pub fn install_crypto_provider() {
    // An error only means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The operating system's trusted roots (`/etc/ssl/certs` on Debian). Certificates that fail to
/// parse are skipped; an empty store makes every verified handshake fail with a clear error.
pub fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    for error in &loaded.errors {
        tracing::warn!(%error, "could not load some system root certificates");
    }
    let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
    if ignored > 0 {
        tracing::debug!(
            added,
            ignored,
            "skipped unparsable system root certificates"
        );
    }
    roots
}

/// Roots from a PEM file (a private CA, e.g. for a test server or an internal registry).
pub fn roots_from_pem_file(path: &Path) -> Result<RootCertStore, String> {
    let pem =
        std::fs::read(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let mut roots = RootCertStore::empty();
    let mut found = 0;
    for cert in rustls_pemfile_certs(&pem) {
        roots
            .add(cert)
            .map_err(|error| format!("bad certificate in {}: {error}", path.display()))?;
        found += 1;
    }
    if found == 0 {
        return Err(format!("no PEM certificates found in {}", path.display()));
    }
    Ok(roots)
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

/// Whether to check the peer's certificate chain and name.
#[derive(Clone, Debug)]
pub enum Verification {
    /// Verify against these roots (the usual case).
    Roots(Arc<RootCertStore>),
    /// Accept any certificate (`tls_verify = false`): the handshake still happens and the
    /// certificate is still observed (e.g. its expiry), but it is not trusted.
    Disabled,
}

/// A client config with the given verification and ALPN protocols (e.g. `h2`, `http/1.1`).
pub fn client_config(verification: &Verification, alpn: &[&[u8]]) -> Result<ClientConfig, String> {
    client_config_with(verification, alpn, None)
}

/// A certificate chain and its key that a client presents (mutual TLS: a kubeconfig user's
/// `client-certificate-data`).
#[derive(Debug)]
pub struct Identity {
    /// The client's certificate first, then any intermediates.
    pub chain: Vec<CertificateDer<'static>>,
    /// Its private key.
    pub key: rustls::pki_types::PrivateKeyDer<'static>,
}

impl Identity {
    /// The identity in PEM `certificates` and `key`, or what is wrong with them.
    pub fn from_pem(certificates: &[u8], key: &[u8]) -> Result<Self, String> {
        use rustls::pki_types::pem::PemObject;
        let chain = rustls_pemfile_certs(certificates);
        if chain.is_empty() {
            return Err("no PEM certificate in the client certificate".to_owned());
        }
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key)
            .map_err(|error| format!("no usable PEM private key in the client key: {error}"))?;
        Ok(Self { chain, key })
    }
}

/// [`client_config`], presenting `identity` when the server asks for a client certificate.
pub fn client_config_with(
    verification: &Verification,
    alpn: &[&[u8]],
    identity: Option<&Identity>,
) -> Result<ClientConfig, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| format!("tls setup: {error}"))?;
    let builder = match verification {
        Verification::Roots(roots) => builder.with_root_certificates(roots.clone()),
        Verification::Disabled => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider()))),
    };
    let mut config = match identity {
        None => builder.with_no_client_auth(),
        Some(identity) => builder
            .with_client_auth_cert(identity.chain.clone(), identity.key.clone_key())
            .map_err(|error| format!("the client certificate or key is unusable: {error}"))?,
    };
    config.alpn_protocols = alpn.iter().map(|protocol| protocol.to_vec()).collect();
    Ok(config)
}

/// The verifier [`client_config`] installs for `verification`, for a caller that wraps it (to
/// record the chain a server presents, say). `None` when there is nothing to verify against (no
/// roots at all): a config built from such a `verification` rejects every chain by itself.
pub fn server_verifier(verification: &Verification) -> Option<Arc<dyn ServerCertVerifier>> {
    match verification {
        Verification::Roots(roots) => {
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider())
                .build()
                .ok()
                .map(|verifier| verifier as Arc<dyn ServerCertVerifier>)
        }
        Verification::Disabled => Some(Arc::new(AcceptAnyCertificate(provider()))),
    }
}

/// The earliest `notAfter` in a presented chain, as Unix seconds: what
/// `probe_ssl_earliest_cert_expiry` reports.
pub fn earliest_expiry(chain: &[CertificateDer<'_>]) -> Option<i64> {
    chain
        .iter()
        .filter_map(|cert| {
            x509_parser::parse_x509_certificate(cert.as_ref())
                .ok()
                .map(|(_, parsed)| parsed.validity().not_after.timestamp())
        })
        .min()
}

/// Describes a rustls error for a probe message: expired, wrong name, unknown issuer, ...
pub fn describe_error(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InvalidCertificate(reason) => describe_certificate_error(reason),
        rustls::Error::AlertReceived(alert) => {
            format!("the server refused the TLS handshake (alert: {alert:?})")
        }
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            format!("the server did not answer with TLS (is this a plain-text port?): {error}")
        }
        other => other.to_string(),
    }
}

/// Says why a certificate was rejected in the words an operator searches for: "certificate
/// expired", "not valid for name", with the dates and names involved.
fn describe_certificate_error(reason: &rustls::CertificateError) -> String {
    use rustls::CertificateError;
    match reason {
        CertificateError::Expired => "certificate expired".to_owned(),
        CertificateError::ExpiredContext { not_after, .. } => {
            format!(
                "certificate expired (not valid after {})",
                unix_time(*not_after)
            )
        }
        CertificateError::NotValidYet => "certificate not valid yet".to_owned(),
        CertificateError::NotValidYetContext { not_before, .. } => {
            format!(
                "certificate not valid yet (not before {})",
                unix_time(*not_before)
            )
        }
        CertificateError::NotValidForName => "certificate not valid for name".to_owned(),
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => format!(
            "certificate not valid for name {} (it is valid for {})",
            expected.to_str(),
            if presented.is_empty() {
                "no names".to_owned()
            } else {
                presented
                    .iter()
                    .map(|name| bare_name(name))
                    .collect::<Vec<_>>()
                    .join(", ")
            }
        ),
        CertificateError::UnknownIssuer => {
            "certificate issued by an unknown authority (not in the trusted roots)".to_owned()
        }
        CertificateError::Revoked => "certificate revoked".to_owned(),
        CertificateError::BadSignature => "certificate has a bad signature".to_owned(),
        other => format!("invalid certificate: {other}"),
    }
}

/// rustls lists presented names as `DnsName("a.example")` or `IpAddress(192.0.2.1)`; the
/// operator wants `a.example`.
fn bare_name(presented: &str) -> &str {
    presented
        .split_once('(')
        .and_then(|(_, rest)| rest.strip_suffix(')'))
        .map_or(presented, |inner| inner.trim_matches('"'))
}

fn unix_time(time: UnixTime) -> String {
    let seconds = i64::try_from(time.as_secs()).unwrap_or(i64::MAX);
    jiff::Timestamp::from_second(seconds).map_or_else(
        |_| format!("{seconds} (Unix)"),
        |timestamp| timestamp.to_string(),
    )
}

#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
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
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
