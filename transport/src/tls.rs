//! Server TLS configuration: one `SSL_CTX`, built once and shared by every
//! worker (OpenSSL reference-counts it; each peer's `SSL*` takes a reference).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::error::ErrorStack;
use openssl::ex_data::Index;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::ssl::{
    select_next_proto, AlpnError, NameType, SniError, Ssl, SslAcceptor, SslAcceptorBuilder,
    SslContext, SslMethod, SslMode, SslOptions, SslVerifyMode, SslVersion,
};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
    SubjectKeyIdentifier,
};
use openssl::x509::{X509Name, X509StoreContextRef};
use openssl::x509::{X509NameBuilder, X509};

/// A TLS setting could not be applied; says which one and why.
///
/// Its [`source`](std::error::Error::source) is what OpenSSL reported (an
/// [`ErrorStack`]) or the I/O error that stopped a file from being read;
/// there is none when the setting itself was missing.
#[derive(Debug)]
pub struct TlsError {
    what: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

impl TlsError {
    /// Wraps what OpenSSL reported; an empty stack is no source at all.
    fn new(what: impl Into<String>) -> impl FnOnce(ErrorStack) -> TlsError {
        let what = what.into();
        move |stack| TlsError {
            what,
            source: (!stack.errors().is_empty())
                .then(|| Box::new(stack) as Box<dyn std::error::Error + Send + Sync>),
        }
    }

    /// An error without an underlying cause.
    fn plain(what: impl Into<String>) -> TlsError {
        TlsError {
            what: what.into(),
            source: None,
        }
    }
}

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for TlsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<TlsError> for std::io::Error {
    fn from(e: TlsError) -> std::io::Error {
        let text = match &e.source {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        };
        std::io::Error::new(std::io::ErrorKind::InvalidInput, text)
    }
}

/// The server side of TLS: a built `SSL_CTX`. Cheap to clone.
///
/// Defaults follow Mozilla's "intermediate" profile (TLS 1.2 and 1.3, AEAD
/// suites, server cipher preference), with renegotiation disabled and the
/// modes the transport relies on:
/// `SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER`
/// (a retried `SSL_write` may pass the same bytes from a moved buffer).
/// Connections idle for a second give their record buffers back
/// (`SSL_free_buffers`), so idle connections stay small.
#[derive(Clone)]
#[must_use]
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
#[must_use]
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

/// What the server speaks, in ALPN wire format and in its order of
/// preference: `http/1.1`, then `http/1.0` (which `curl --http1.0` offers
/// alone). `SSL_select_next_proto` picks the first of these the client
/// offers.
const ALPN_PROTOCOLS: &[u8] = b"\x08http/1.1\x08http/1.0";

/// [`ALPN_PROTOCOLS`] with `h2` first, for sessions created with
/// `ServerConfig::offer_h2`.
const ALPN_PROTOCOLS_H2: &[u8] = b"\x02h2\x08http/1.1\x08http/1.0";

/// The ex-data slot that marks a session whose server offers `h2`: the
/// ALPN callback belongs to the (shared, reloadable) context, the choice
/// to the server that made the session.
pub(crate) fn offer_h2_index() -> Result<Index<Ssl, ()>, ErrorStack> {
    static INDEX: OnceLock<Index<Ssl, ()>> = OnceLock::new();
    if let Some(index) = INDEX.get() {
        return Ok(*index);
    }
    let index = Ssl::new_ex_index::<()>()?;
    Ok(*INDEX.get_or_init(|| index))
}

/// The static name of an ALPN protocol the server knows.
pub(crate) fn known_alpn(protocol: &[u8]) -> Option<&'static str> {
    match protocol {
        b"h2" => Some("h2"),
        b"http/1.1" => Some("http/1.1"),
        b"http/1.0" => Some("http/1.0"),
        _ => None,
    }
}

/// Key-exchange groups of Mozilla's intermediate profile (v5), in its
/// order: OpenSSL's own default list also offers X448 and P-521.
pub(crate) const DEFAULT_GROUPS: &str = "X25519:prime256v1:secp384r1";

fn base_builder() -> Result<SslAcceptorBuilder, TlsError> {
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())
        .map_err(TlsError::new("cannot create the TLS context"))?;
    // Not SSL_MODE_RELEASE_BUFFERS: it frees and reallocates both record
    // buffers on every request of a busy connection. The transport frees
    // them itself (SSL_free_buffers) once a connection has been idle.
    builder.set_mode(SslMode::ENABLE_PARTIAL_WRITE | SslMode::ACCEPT_MOVING_WRITE_BUFFER);
    // Read ahead: one read(2) takes in whatever the socket holds (a record's
    // header and body, or several records) instead of one read for the
    // 5-byte header and another for the body. The transport reads until
    // WANT_READ, so nothing is left waiting in OpenSSL's buffer.
    builder.set_read_ahead(true);
    // The profile's versions as bounds, not only as SSL_OP_NO_TLSv1*
    // options: TLS 1.2 and up.
    builder
        .set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(TlsError::new("cannot set the minimum TLS version"))?;
    builder.set_options(
        SslOptions::NO_RENEGOTIATION
            | SslOptions::NO_COMPRESSION
            | SslOptions::CIPHER_SERVER_PREFERENCE,
    );
    Ok(builder)
}

/// Where a PEM item comes from.
#[derive(Clone)]
enum Pem {
    File(PathBuf),
    Bytes(Vec<u8>),
}

impl Pem {
    fn read(&self, what: &str) -> Result<Vec<u8>, TlsError> {
        match self {
            Pem::Bytes(b) => Ok(b.clone()),
            Pem::File(path) => std::fs::read(path).map_err(|e| TlsError {
                what: format!("cannot read {what} {}", path.display()),
                source: Some(Box::new(e)),
            }),
        }
    }
}

type PasswordFn = dyn Fn() -> Vec<u8> + Send + Sync;
type VerifyFn = dyn Fn(bool, &mut X509StoreContextRef) -> bool + Send + Sync;

/// Whether clients must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClientCerts {
    /// A client without a verified certificate fails the handshake.
    Required,
    /// A certificate is asked for and verified if presented; a client may
    /// also connect without one.
    Optional,
}

/// A TLS protocol version, for [`TlsConfigBuilder::min_version`] and
/// [`TlsConfigBuilder::max_version`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl TlsVersion {
    fn ssl(self) -> SslVersion {
        match self {
            TlsVersion::Tls12 => SslVersion::TLS1_2,
            TlsVersion::Tls13 => SslVersion::TLS1_3,
        }
    }
}

/// Builds a [`TlsConfig`] (see [`TlsConfig::builder`]).
///
/// Defaults follow Mozilla's "intermediate" profile: TLS 1.2 and 1.3, AEAD
/// cipher suites only, key exchange over X25519, P-256 or P-384, server
/// cipher preference, no compression, no renegotiation, ALPN `http/1.1`
/// (and `http/1.0`), session tickets on.
#[derive(Clone, Default)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct TlsConfigBuilder {
    chain: Option<Pem>,
    key: Option<Pem>,
    password: Option<Arc<PasswordFn>>,
    client_ca_file: Option<PathBuf>,
    client_ca_dir: Option<PathBuf>,
    client_certs: Option<ClientCerts>,
    verify: Option<Arc<VerifyFn>>,
    min_version: Option<TlsVersion>,
    max_version: Option<TlsVersion>,
    cipher_list: Option<String>,
    ciphersuites: Option<String>,
    groups: Option<String>,
    no_alpn: bool,
    no_tickets: bool,
    sni: Vec<(String, Pem, Pem)>,
}

impl fmt::Debug for TlsConfigBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfigBuilder")
            .field("client_certs", &self.client_certs)
            .field("min_version", &self.min_version)
            .field("max_version", &self.max_version)
            .field(
                "sni_names",
                &self.sni.iter().map(|s| &s.0).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl TlsConfigBuilder {
    /// The certificate chain (leaf first, then intermediates), PEM file.
    pub fn cert_chain_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.chain = Some(Pem::File(path.into()));
        self
    }

    /// The certificate chain, PEM bytes.
    pub fn cert_chain_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.chain = Some(Pem::Bytes(pem.into()));
        self
    }

    /// The private key (PKCS#8 or traditional; RSA, ECDSA or Ed25519), PEM
    /// file; may be encrypted (see [`TlsConfigBuilder::key_password`]).
    pub fn key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.key = Some(Pem::File(path.into()));
        self
    }

    /// The private key, PEM bytes.
    pub fn key_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.key = Some(Pem::Bytes(pem.into()));
        self
    }

    /// The password of an encrypted private key.
    pub fn key_password(self, password: impl Into<String>) -> Self {
        let password = password.into();
        self.key_password_callback(move || password.clone().into_bytes())
    }

    /// Asks for the password of an encrypted private key when it is loaded
    /// (Pistache's `cb_password`); called once per key load.
    pub fn key_password_callback(
        mut self,
        f: impl Fn() -> Vec<u8> + Send + Sync + 'static,
    ) -> Self {
        self.password = Some(Arc::new(f));
        self
    }

    /// Verify client certificates against the CAs in this PEM file, whose
    /// names are also sent to clients as acceptable issuers (Pistache's
    /// `useSSLAuth`). Implies [`ClientCerts::Required`] unless
    /// [`TlsConfigBuilder::client_certs`] says otherwise.
    pub fn client_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_ca_file = Some(path.into());
        self
    }

    /// Verify client certificates against the CAs in this directory
    /// (OpenSSL's hashed `c_rehash` layout).
    pub fn client_ca_dir(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_ca_dir = Some(path.into());
        self
    }

    /// Whether a client certificate is required or optional (default,
    /// once a client CA is set: required).
    pub fn client_certs(mut self, mode: ClientCerts) -> Self {
        self.client_certs = Some(mode);
        self
    }

    /// Called for each certificate of the client's chain with OpenSSL's
    /// verdict; returns the final one (Pistache's verify callback).
    pub fn verify_callback(
        mut self,
        f: impl Fn(bool, &mut X509StoreContextRef) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.verify = Some(Arc::new(f));
        self
    }

    /// Lowest protocol version accepted (default TLS 1.2).
    pub fn min_version(mut self, v: TlsVersion) -> Self {
        self.min_version = Some(v);
        self
    }

    /// Highest protocol version offered (default TLS 1.3).
    pub fn max_version(mut self, v: TlsVersion) -> Self {
        self.max_version = Some(v);
        self
    }

    /// TLS 1.2 cipher list, OpenSSL syntax (default: Mozilla intermediate).
    pub fn cipher_list(mut self, list: impl Into<String>) -> Self {
        self.cipher_list = Some(list.into());
        self
    }

    /// TLS 1.3 cipher suites, OpenSSL syntax.
    pub fn ciphersuites(mut self, list: impl Into<String>) -> Self {
        self.ciphersuites = Some(list.into());
        self
    }

    /// Key exchange groups, e.g. `X25519:P-256` (default: Mozilla
    /// intermediate, `X25519:prime256v1:secp384r1`).
    pub fn groups(mut self, list: impl Into<String>) -> Self {
        self.groups = Some(list.into());
        self
    }

    /// Turns ALPN off. By default the server selects `h2` when its
    /// endpoint serves HTTP/2 and the client offers it, else `http/1.1`, or
    /// `http/1.0` for a client offering only that, and refuses, with a
    /// `no_application_protocol` alert, a client that offers only other
    /// protocols (`h2`): better than a silent mismatch. A client offering
    /// no ALPN at all is served either way.
    pub fn without_alpn(mut self) -> Self {
        self.no_alpn = true;
        self
    }

    /// Turns session tickets off (on by default: returning clients skip
    /// the full handshake).
    pub fn without_session_tickets(mut self) -> Self {
        self.no_tickets = true;
        self
    }

    /// Serves another certificate to clients asking for `server_name`
    /// (SNI); the main chain and key are the default for other names.
    pub fn sni_cert_files(
        mut self,
        server_name: impl Into<String>,
        chain: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.sni.push((
            server_name.into().to_ascii_lowercase(),
            Pem::File(chain.into()),
            Pem::File(key.into()),
        ));
        self
    }

    /// Builds the `SSL_CTX` (and one per SNI name).
    pub fn build(self) -> Result<TlsConfig, TlsError> {
        let chain = self
            .chain
            .clone()
            .ok_or_else(|| TlsError::plain("no certificate chain given"))?;
        let key = self
            .key
            .clone()
            .ok_or_else(|| TlsError::plain("no private key given"))?;
        let mut by_name = HashMap::new();
        for (name, chain, key) in &self.sni {
            let ctx = self.context(chain, key)?.build().into_context();
            by_name.insert(name.clone(), ctx);
        }
        let mut builder = self.context(&chain, &key)?;
        if !by_name.is_empty() {
            builder.set_servername_callback(move |ssl, _alert| {
                let wanted = ssl
                    .servername(NameType::HOST_NAME)
                    .map(str::to_ascii_lowercase);
                if let Some(ctx) = wanted.and_then(|n| by_name.get(&n)) {
                    ssl.set_ssl_context(ctx)
                        .map_err(|_| SniError::ALERT_FATAL)?;
                }
                Ok(())
            });
        }
        Ok(TlsConfig {
            ctx: builder.build().into_context(),
        })
    }

    fn context(&self, chain: &Pem, key: &Pem) -> Result<SslAcceptorBuilder, TlsError> {
        let mut builder = base_builder()?;
        if let Some(v) = self.min_version {
            builder
                .set_min_proto_version(Some(v.ssl()))
                .map_err(TlsError::new("cannot set the minimum TLS version"))?;
        }
        if let Some(v) = self.max_version {
            builder
                .set_max_proto_version(Some(v.ssl()))
                .map_err(TlsError::new("cannot set the maximum TLS version"))?;
        }
        if let Some(list) = &self.cipher_list {
            builder
                .set_cipher_list(list)
                .map_err(TlsError::new(format!("invalid cipher list {list:?}")))?;
        }
        if let Some(list) = &self.ciphersuites {
            builder
                .set_ciphersuites(list)
                .map_err(TlsError::new(format!(
                    "invalid TLS 1.3 cipher suites {list:?}"
                )))?;
        }
        let groups = self.groups.as_deref().unwrap_or(DEFAULT_GROUPS);
        builder
            .set_groups_list(groups)
            .map_err(TlsError::new(format!("invalid groups {groups:?}")))?;
        use_chain(&mut builder, &chain.read("certificate chain")?)?;
        let key_pem = key.read("private key")?;
        // Always through a callback: without one, OpenSSL would prompt for
        // the password of an encrypted key on the terminal.
        let key = PKey::private_key_from_pem_callback(&key_pem, |buf| {
            let Some(password) = &self.password else {
                return Ok(0);
            };
            let password = password();
            let n = password.len().min(buf.len());
            buf[..n].copy_from_slice(&password[..n]);
            Ok(n)
        })
        .map_err(TlsError::new(if self.password.is_some() {
            "cannot load the private key (wrong password?)"
        } else {
            "cannot load the private key (encrypted? set key_password)"
        }))?;
        builder.set_private_key(&key).map_err(TlsError::new(
            "cannot use the private key (does it match the certificate?)",
        ))?;
        builder
            .check_private_key()
            .map_err(TlsError::new("private key does not match the certificate"))?;
        // One session ID context for the whole server: resumption works,
        // including with client certificates.
        builder
            .set_session_id_context(b"pistachio")
            .map_err(TlsError::new("cannot set the session id context"))?;
        if self.no_tickets {
            builder.set_options(SslOptions::NO_TICKET);
        }
        if !self.no_alpn {
            builder.set_alpn_select_callback(|ssl, client| {
                let offers_h2 = offer_h2_index().is_ok_and(|i| ssl.ex_data(i).is_some());
                let ours = if offers_h2 {
                    ALPN_PROTOCOLS_H2
                } else {
                    ALPN_PROTOCOLS
                };
                select_next_proto(ours, client).ok_or(AlpnError::ALERT_FATAL)
            });
        }
        if self.client_ca_file.is_some() || self.client_ca_dir.is_some() {
            builder
                .load_verify_locations(
                    self.client_ca_file.as_deref(),
                    self.client_ca_dir.as_deref(),
                )
                .map_err(TlsError::new("cannot load the client CAs"))?;
            if let Some(file) = &self.client_ca_file {
                let names = X509Name::load_client_ca_file(file)
                    .map_err(TlsError::new("cannot read the client CA names"))?;
                builder.set_client_ca_list(names);
            }
            let mode = match self.client_certs.unwrap_or(ClientCerts::Required) {
                ClientCerts::Required => SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT,
                ClientCerts::Optional => SslVerifyMode::PEER,
            };
            match &self.verify {
                Some(verify) => {
                    let verify = Arc::clone(verify);
                    builder.set_verify_callback(mode, move |ok, store| verify(ok, store));
                }
                None => builder.set_verify(mode),
            }
        }
        Ok(builder)
    }
}

fn use_chain(builder: &mut SslAcceptorBuilder, pem: &[u8]) -> Result<(), TlsError> {
    let mut certs = X509::stack_from_pem(pem)
        .map_err(TlsError::new("cannot parse certificate chain PEM"))?
        .into_iter();
    let leaf = certs
        .next()
        .ok_or_else(|| TlsError::plain("certificate chain PEM holds no certificate"))?;
    builder
        .set_certificate(&leaf)
        .map_err(TlsError::new("cannot use certificate"))?;
    for intermediate in certs {
        builder
            .add_extra_chain_cert(intermediate)
            .map_err(TlsError::new("cannot add intermediate certificate"))?;
    }
    Ok(())
}

impl TlsConfig {
    /// A builder with the secure defaults (see [`TlsConfigBuilder`]).
    pub fn builder() -> TlsConfigBuilder {
        TlsConfigBuilder::default()
    }

    /// Loads a PEM certificate chain (leaf first, then intermediates) and a
    /// PEM private key from files, and checks that they match.
    pub fn from_pem_files(
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsConfig, TlsError> {
        TlsConfig::builder()
            .cert_chain_file(cert_chain.as_ref())
            .key_file(key.as_ref())
            .build()
    }

    /// Like [`TlsConfig::from_pem_files`], from PEM bytes in memory.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<TlsConfig, TlsError> {
        TlsConfig::builder()
            .cert_chain_pem(cert_chain)
            .key_pem(key)
            .build()
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

/// The TLS configuration new connections get; replaceable while serving.
#[derive(Debug)]
pub(crate) struct TlsSlot {
    current: std::sync::RwLock<TlsConfig>,
    generation: std::sync::atomic::AtomicU64,
}

impl TlsSlot {
    pub(crate) fn new(config: TlsConfig) -> TlsSlot {
        TlsSlot {
            current: std::sync::RwLock::new(config),
            generation: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Bumped on every replacement, so workers refresh their copy.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn current(&self) -> SslContext {
        let guard = self.current.read().unwrap_or_else(|p| p.into_inner());
        guard.ctx.clone()
    }

    pub(crate) fn replace(&self, config: TlsConfig) {
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = config;
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// Replaces the TLS configuration of a running server: new connections get
/// the new certificate, established ones keep theirs. Cheap to clone;
/// usable from any thread (e.g. on SIGHUP).
#[derive(Debug, Clone)]
#[must_use]
pub struct TlsReloader {
    pub(crate) slot: Arc<TlsSlot>,
}

impl TlsReloader {
    /// Serves `config` to connections accepted from now on.
    pub fn reload(&self, config: TlsConfig) {
        self.slot.replace(config);
        log::debug!("TLS configuration reloaded");
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
    // Key identifiers let a client that trusts several of these (across a
    // reload, say) match each certificate to its own trust anchor.
    let ski = SubjectKeyIdentifier::new().build(&cert.x509v3_context(None, None))?;
    cert.append_extension(ski)?;
    let aki = AuthorityKeyIdentifier::new()
        .keyid(true)
        .build(&cert.x509v3_context(None, None))?;
    cert.append_extension(aki)?;
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

    /// A client trusting two generated certificates verifies each against
    /// its own anchor (they share a subject; the key identifiers differ).
    #[test]
    fn generated_certificates_carry_key_identifiers() {
        use openssl::stack::Stack;
        use openssl::x509::store::X509StoreBuilder;
        use openssl::x509::X509StoreContext;
        let (_, a) = TlsConfig::self_signed(&["localhost"]).unwrap();
        let (_, b) = TlsConfig::self_signed(&["localhost"]).unwrap();
        let a = X509::from_pem(&a.cert_pem).unwrap();
        let b = X509::from_pem(&b.cert_pem).unwrap();
        assert!(a.subject_key_id().is_some() && a.authority_key_id().is_some());
        assert_ne!(
            a.subject_key_id().unwrap().as_slice(),
            b.subject_key_id().unwrap().as_slice()
        );
        let mut store = X509StoreBuilder::new().unwrap();
        store.add_cert(a.clone()).unwrap();
        store.add_cert(b.clone()).unwrap();
        let store = store.build();
        for cert in [&a, &b] {
            let mut ctx = X509StoreContext::new().unwrap();
            let ok = ctx
                .init(&store, cert, &Stack::new().unwrap(), |c| c.verify_cert())
                .unwrap();
            assert!(ok, "{:?}", ctx.error());
        }
    }

    /// The defaults are Mozilla's intermediate profile, v5: TLS 1.2 and
    /// 1.3, these cipher suites in this order, these groups.
    #[test]
    fn defaults_are_mozilla_intermediate_v5() {
        let (config, _) = TlsConfig::self_signed(&["localhost"]).unwrap();
        let ctx = config.context();
        assert_eq!(
            crate::sys::cipher_names(ctx),
            [
                "TLS_AES_128_GCM_SHA256",
                "TLS_AES_256_GCM_SHA384",
                "TLS_CHACHA20_POLY1305_SHA256",
                "ECDHE-ECDSA-AES128-GCM-SHA256",
                "ECDHE-RSA-AES128-GCM-SHA256",
                "ECDHE-ECDSA-AES256-GCM-SHA384",
                "ECDHE-RSA-AES256-GCM-SHA384",
                "ECDHE-ECDSA-CHACHA20-POLY1305",
                "ECDHE-RSA-CHACHA20-POLY1305",
                "DHE-RSA-AES128-GCM-SHA256",
                "DHE-RSA-AES256-GCM-SHA384",
            ]
        );
        // TLS 1.2 and up; no upper bound: the highest the library speaks,
        // TLS 1.3.
        assert_eq!(
            crate::sys::proto_versions(ctx),
            (openssl_sys::TLS1_2_VERSION, 0)
        );
        assert_eq!(DEFAULT_GROUPS, "X25519:prime256v1:secp384r1");
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
        let source = std::error::Error::source(&err).expect("the I/O error");
        assert!(source.is::<std::io::Error>(), "{source:?}");
        let err = TlsConfig::builder().build().unwrap_err();
        assert!(err.to_string().contains("no certificate chain"), "{err}");
        assert!(
            std::error::Error::source(&err).is_none(),
            "no empty ErrorStack as the source"
        );
    }
}
