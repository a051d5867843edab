//! Server TLS configuration: one `SSL_CTX`, built once and shared by every
//! worker (OpenSSL reference-counts it; each peer's `SSL*` takes a reference).

use std::fmt;
use std::path::Path;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::ssl::{SslAcceptor, SslAcceptorBuilder, SslContext, SslMethod, SslMode, SslOptions};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509NameBuilder, X509};

/// A TLS setting could not be applied; says which one and why.
#[derive(Debug)]
pub struct TlsError {
    what: String,
    source: ErrorStack,
}

impl TlsError {
    fn new(what: impl Into<String>) -> impl FnOnce(ErrorStack) -> TlsError {
        let what = what.into();
        move |source| TlsError { what, source }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.what)
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl From<TlsError> for std::io::Error {
    fn from(e: TlsError) -> std::io::Error {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{e}: {}", e.source),
        )
    }
}

/// The server side of TLS: a built `SSL_CTX`. Cheap to clone.
///
/// Defaults follow Mozilla's "intermediate" profile (TLS 1.2 and 1.3, AEAD
/// suites, server cipher preference), with renegotiation disabled and the
/// modes the transport relies on:
/// `SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER`
/// (a retried `SSL_write` may pass the same bytes from a moved buffer) and
/// `SSL_MODE_RELEASE_BUFFERS` (idle connections hold no record buffers).
#[derive(Clone)]
pub struct TlsConfig {
    ctx: SslContext,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig").finish_non_exhaustive()
    }
}

/// A freshly generated self-signed certificate and its key, in PEM.
#[derive(Clone)]
pub struct SelfSigned {
    /// The certificate (PEM). Clients trust it with e.g. `curl --cacert`.
    pub cert_pem: Vec<u8>,
    /// The private key (PKCS#8 PEM).
    pub key_pem: Vec<u8>,
}

impl fmt::Debug for SelfSigned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SelfSigned")
            .field("cert_pem", &String::from_utf8_lossy(&self.cert_pem))
            .finish_non_exhaustive()
    }
}

fn base_builder() -> Result<SslAcceptorBuilder, TlsError> {
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
        .map_err(TlsError::new("cannot create the TLS context"))?;
    builder.set_mode(
        SslMode::ENABLE_PARTIAL_WRITE
            | SslMode::ACCEPT_MOVING_WRITE_BUFFER
            | SslMode::RELEASE_BUFFERS,
    );
    builder.set_options(SslOptions::NO_RENEGOTIATION | SslOptions::NO_COMPRESSION);
    Ok(builder)
}

impl TlsConfig {
    /// Loads a PEM certificate chain (leaf first, then intermediates) and a
    /// PEM private key from files, and checks that they match.
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsConfig, TlsError> {
        let (cert_chain, key) = (cert_chain.as_ref(), key.as_ref());
        let mut builder = base_builder()?;
        builder
            .set_certificate_chain_file(cert_chain)
            .map_err(TlsError::new(format!(
                "cannot load certificate chain {}",
                cert_chain.display()
            )))?;
        builder
            .set_private_key_file(key, openssl::ssl::SslFiletype::PEM)
            .map_err(TlsError::new(format!(
                "cannot load private key {}",
                key.display()
            )))?;
        builder
            .check_private_key()
            .map_err(TlsError::new("private key does not match the certificate"))?;
        Ok(TlsConfig {
            ctx: builder.build().into_context(),
        })
    }

    /// Like [`TlsConfig::from_pem_files`], from PEM bytes in memory.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<TlsConfig, TlsError> {
        let mut certs = X509::stack_from_pem(cert_chain)
            .map_err(TlsError::new("cannot parse certificate chain PEM"))?
            .into_iter();
        let leaf = certs.next().ok_or_else(|| TlsError {
            what: "certificate chain PEM holds no certificate".into(),
            source: ErrorStack::get(),
        })?;
        let key = PKey::private_key_from_pem(key)
            .map_err(TlsError::new("cannot parse private key PEM"))?;
        let mut builder = base_builder()?;
        builder
            .set_certificate(&leaf)
            .map_err(TlsError::new("cannot use certificate"))?;
        for intermediate in certs {
            builder
                .add_extra_chain_cert(intermediate)
                .map_err(TlsError::new("cannot add intermediate certificate"))?;
        }
        builder
            .set_private_key(&key)
            .map_err(TlsError::new("cannot use private key"))?;
        builder
            .check_private_key()
            .map_err(TlsError::new("private key does not match the certificate"))?;
        Ok(TlsConfig {
            ctx: builder.build().into_context(),
        })
    }

    /// Wraps an `SSL_CTX` the caller built. The caller is responsible for
    /// setting `SSL_MODE_ENABLE_PARTIAL_WRITE |
    /// SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER`, which the transport relies on.
    pub fn from_context(ctx: SslContext) -> TlsConfig {
        TlsConfig { ctx }
    }

    /// Generates a self-signed certificate (ECDSA P-256, valid 30 days) for
    /// the given DNS names and IP addresses, and a config serving it.
    pub fn self_signed(names: &[&str]) -> Result<(TlsConfig, SelfSigned), TlsError> {
        let generated = generate_self_signed(names)
            .map_err(TlsError::new("cannot generate a self-signed certificate"))?;
        let config = TlsConfig::from_pem(&generated.cert_pem, &generated.key_pem)?;
        Ok((config, generated))
    }

    /// The built `SSL_CTX`.
    pub fn context(&self) -> &SslContext {
        &self.ctx
    }
}

fn generate_self_signed(names: &[&str]) -> Result<SelfSigned, ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;

    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_text("O", "pistachio")?;
    name.append_entry_by_text("CN", names.first().copied().unwrap_or("localhost"))?;
    let name = name.build();

    let mut cert = X509::builder()?;
    cert.set_version(2)?;
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    let serial = serial.to_asn1_integer()?;
    cert.set_serial_number(&serial)?;
    cert.set_subject_name(&name)?;
    cert.set_issuer_name(&name)?;
    cert.set_pubkey(&key)?;
    let not_before = Asn1Time::days_from_now(0)?;
    let not_after = Asn1Time::days_from_now(30)?;
    cert.set_not_before(&not_before)?;
    cert.set_not_after(&not_after)?;
    // A CA:TRUE self-signed leaf is what `curl --cacert cert.pem` accepts
    // as its own trust anchor.
    cert.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    cert.append_extension(
        KeyUsage::new()
            .critical()
            .digital_signature()
            .key_cert_sign()
            .build()?,
    )?;
    cert.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    let mut san = SubjectAlternativeName::new();
    for n in names {
        if n.parse::<std::net::IpAddr>().is_ok() {
            san.ip(n);
        } else {
            san.dns(n);
        }
    }
    let san = san.build(&cert.x509v3_context(None, None))?;
    cert.append_extension(san)?;
    cert.sign(&key, MessageDigest::sha256())?;
    let cert = cert.build();
    Ok(SelfSigned {
        cert_pem: cert.to_pem()?,
        key_pem: key.private_key_to_pem_pkcs8()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_certificate_names_every_host() {
        let (_, generated) = TlsConfig::self_signed(&["localhost", "127.0.0.1", "::1"]).unwrap();
        let cert = X509::from_pem(&generated.cert_pem).unwrap();
        let sans = cert.subject_alt_names().unwrap();
        let dns: Vec<_> = sans.iter().filter_map(|n| n.dnsname()).collect();
        let ips: Vec<_> = sans.iter().filter_map(|n| n.ipaddress()).collect();
        assert_eq!(dns, ["localhost"]);
        assert_eq!(
            ips,
            [
                &[127, 0, 0, 1][..],
                &std::net::Ipv6Addr::LOCALHOST.octets()[..]
            ]
        );
    }

    #[test]
    fn mismatched_key_is_a_clear_error() {
        let (_, a) = TlsConfig::self_signed(&["localhost"]).unwrap();
        let (_, b) = TlsConfig::self_signed(&["localhost"]).unwrap();
        let err = TlsConfig::from_pem(&a.cert_pem, &b.key_pem).unwrap_err();
        assert!(err.to_string().contains("private key"), "{err}");
        let source = std::error::Error::source(&err).unwrap().to_string();
        assert!(source.contains("mismatch"), "{source}");
        let err =
            TlsConfig::from_pem_files("/nonexistent/cert.pem", "/nonexistent/key.pem").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }
}
