//! One test per TLS option of `TlsConfigBuilder` and per TLS-related
//! `Options` setting, with real clients (OpenSSL's `SslConnector` over
//! `std::net::TcpStream`, and libcurl) on `127.0.0.1`; also Pistache's
//! `https_server_test` cases (chained server certificate, client
//! certificates accepted / missing / untrusted, verify callback,
//! password-protected key).
//!
//! Pistache's `listener_tls_test` (a silent client is dropped after the
//! handshake timeout and delays nobody) is in `server.rs`.
//!
//! Every blocking read has a timeout, and every timing assertion is a
//! functional bound far from what a working server needs.

use std::io;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openssl::nid::Nid;
use openssl::pkey::Id;
use openssl::ssl::{SslConnectorBuilder, SslFiletype, SslStream, SslVersion};
use openssl::x509::X509;
use pistachio_rest::http::{Endpoint, Options, Request, ResponseWriter, StatusCode};
use pistachio_rest::transport::{ClientCerts, TlsConfig, TlsConfigBuilder, TlsVersion};
use pistachio_tests::certs;
use pistachio_tests::client::{
    alpn_wire, connect_tcp, tls_connector_builder, wait_for_close, Connection, RequestBuilder,
};
use pistachio_tests::resume::ResumingConnector;
use pistachio_tests::{init_logging, TlsClient, HELLO_BODY};

/// Handshake timeout of the servers here (the cap test sets its own).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Answers with what the server knows of the connection's TLS:
/// `subject=…`, `version=…`, `cipher=…` lines (`none` when absent).
fn tls_facts(req: Request, resp: ResponseWriter) {
    let (version, cipher) = req
        .tls()
        .map_or(("none", "none"), |t| (t.version, t.cipher));
    let subject = req.client_subject().unwrap_or("none").to_owned();
    resp.send(
        StatusCode::OK,
        format!("subject={subject}\nversion={version}\ncipher={cipher}\n"),
    );
}

/// The value of line `name=…` of a [`tls_facts`] answer.
fn fact(body: &str, name: &str) -> String {
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {name} in {body:?}"))
        .to_owned()
}

/// A serving endpoint on `127.0.0.1:0` running [`tls_facts`]; dropping it
/// shuts it down.
fn serve(threads: usize, options: Options) -> Endpoint {
    let options = options.threads(threads);
    let mut endpoint = Endpoint::bind("127.0.0.1:0", options).expect("bind 127.0.0.1:0");
    endpoint.serve_threaded(tls_facts).expect("serve");
    endpoint
}

/// [`serve`] with one worker, this TLS configuration and the default
/// handshake timeout of this file.
fn serve_tls(tls: TlsConfig) -> Endpoint {
    serve(
        1,
        Options::default()
            .handshake_timeout(HANDSHAKE_TIMEOUT)
            .tls(tls),
    )
}

fn port(endpoint: &Endpoint) -> u16 {
    endpoint.local_addr().port()
}

/// The builder for the test PKI's default server: `server-chain.pem` +
/// `server.key`.
fn server_builder() -> TlsConfigBuilder {
    TlsConfig::builder()
        .cert_chain_file(certs::server_chain_pem())
        .key_file(certs::server_key())
}

fn build(builder: TlsConfigBuilder) -> TlsConfig {
    builder
        .build()
        .unwrap_or_else(|e| panic!("building the TLS configuration: {e}: {e:?}"))
}

/// A client connector builder trusting only `ca.pem` (see
/// [`tls_connector_builder`]).
fn trusting_client() -> SslConnectorBuilder {
    tls_connector_builder().expect("client connector")
}

/// [`client`] presenting `cert` and `key`.
fn client_with_cert(cert: PathBuf, key: PathBuf) -> SslConnectorBuilder {
    let mut builder = trusting_client();
    builder
        .set_certificate_file(cert, SslFiletype::PEM)
        .expect("client certificate");
    builder
        .set_private_key_file(key, SslFiletype::PEM)
        .expect("client key");
    builder
}

/// Connects with `builder` as `name`, sends `GET /`, and returns the client
/// (still open) and the body of a `200` answer.
fn get(port: u16, builder: SslConnectorBuilder, name: &str) -> io::Result<(TlsClient, String)> {
    let mut client = TlsClient::connect_with(port, &builder.build(), name)?;
    let response = client.request("/")?;
    if response.status != 200 {
        return Err(io::Error::other(format!("status {}", response.status)));
    }
    let body = response.text();
    Ok((client, body))
}

/// Like [`get`], but the server must refuse: the handshake fails, or (TLS
/// 1.3 with client certificates, where the client finishes first) the
/// connection dies before an answer. Returns the client's error text, and
/// asserts the refusal came well before the handshake timeout.
#[track_caller]
fn refused(port: u16, builder: SslConnectorBuilder, name: &str, what: &str) -> String {
    let started = Instant::now();
    let outcome = get(port, builder, name);
    let took = started.elapsed();
    match outcome {
        Ok((_, body)) => panic!("{what}: served, with {body:?}"),
        Err(e) => {
            assert!(
                took < HANDSHAKE_TIMEOUT,
                "{what}: refused only after {took:?} ({e})"
            );
            e.to_string()
        }
    }
}

/// The common name of the certificate the server presented.
fn peer_cn<S>(stream: &SslStream<S>) -> String {
    let cert = stream
        .ssl()
        .peer_certificate()
        .expect("a server certificate");
    common_name(&cert)
}

fn common_name(cert: &X509) -> String {
    cert.subject_name()
        .entries_by_nid(Nid::COMMONNAME)
        .next()
        .expect("a CN")
        .data()
        .to_string()
        .expect("UTF-8 CN")
}

/// The DNS names of the certificate the server presented.
fn peer_dns_names<S>(stream: &SslStream<S>) -> Vec<String> {
    let cert = stream
        .ssl()
        .peer_certificate()
        .expect("a server certificate");
    cert.subject_alt_names()
        .map(|names| {
            names
                .iter()
                .filter_map(|n| n.dnsname().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// `GET /` with `Connection: close` over an established TLS stream; reads
/// the answer and then to the server's close_notify (nothing may follow the
/// answer), answers with ours, and returns the head and body as text.
fn get_and_close(stream: &mut SslStream<TcpStream>) -> io::Result<String> {
    let mut conn = Connection::new(&mut *stream);
    conn.write_raw(&RequestBuilder::get("/").close().to_bytes())?;
    let response = conn.read_response()?;
    let rest = conn.read_to_end()?;
    if !rest.is_empty() {
        return Err(io::Error::other(format!(
            "bytes after the response: {:?}",
            String::from_utf8_lossy(&rest)
        )));
    }
    // A clean shutdown from our side too: OpenSSL marks the session of a
    // connection freed without one as not resumable.
    let _ = stream.shutdown();
    Ok(format!("{}{}", response.head, response.text()))
}

// ---------------------------------------------------------------------------
// Certificates and keys
// ---------------------------------------------------------------------------

/// Pistache's chained-certificate case: the server sends leaf +
/// intermediate; a client trusting only the root verifies it. Without the
/// intermediate in the file, the same client refuses the server.
#[test]
fn chained_certificate_is_verified_by_a_client_trusting_only_the_root() {
    init_logging();
    let server = serve_tls(build(server_builder()));
    let (mut client, body) =
        get(port(&server), trusting_client(), "localhost").expect("chained server");
    assert_eq!(fact(&body, "subject"), "none");
    let chain = client
        .ssl_stream()
        .ssl()
        .peer_cert_chain()
        .expect("peer chain");
    let names: Vec<String> = chain.iter().map(|c| common_name(&c.to_owned())).collect();
    assert_eq!(
        names,
        ["localhost", "pistachio test intermediate CA"],
        "the server sends its leaf and the intermediate, not the root"
    );
    client.close().expect("clean close");

    // libcurl, as in Pistache's test.
    let r = pistachio_tests::libcurl::curl_get(port(&server), "/").expect("libcurl over TLS");
    assert_eq!(r.status, 200);
    assert!(r.body.contains("version=TLSv1.3"), "{}", r.body);

    // The leaf alone: the client cannot build a path to the root.
    let leaf_only = serve_tls(build(
        TlsConfig::builder()
            .cert_chain_file(certs::server_pem())
            .key_file(certs::server_key()),
    ));
    let err = refused(
        port(&leaf_only),
        trusting_client(),
        "localhost",
        "a leaf without its intermediate",
    );
    assert!(err.contains("certificate verify failed"), "{err}");
}

/// PEM bytes work like files (`cert_chain_pem`, `key_pem`).
#[test]
fn certificate_and_key_from_pem_bytes() {
    init_logging();
    let chain = std::fs::read(certs::server_chain_pem()).unwrap();
    let key = std::fs::read(certs::server_key()).unwrap();
    let server = serve_tls(build(
        TlsConfig::builder().cert_chain_pem(chain).key_pem(key),
    ));
    let (client, _) = get(port(&server), trusting_client(), "localhost").expect("served");
    client.close().unwrap();
}

/// A password-protected key (Pistache's `cb_password`), PKCS#8 and
/// traditional PEM encryption, with `key_password` and with
/// `key_password_callback` (called once per load); a wrong password is a
/// clear build error.
#[test]
fn encrypted_key_with_password_or_callback() {
    init_logging();
    for key in [
        certs::server_encrypted_key(),
        certs::server_encrypted_traditional_key(),
    ] {
        let what = key.file_name().unwrap().to_string_lossy().into_owned();
        let with_password = build(
            TlsConfig::builder()
                .cert_chain_file(certs::server_chain_pem())
                .key_file(&key)
                .key_password(certs::SERVER_KEY_PASSWORD),
        );
        let server = serve_tls(with_password);
        let (client, _) = get(port(&server), trusting_client(), "localhost")
            .unwrap_or_else(|e| panic!("{what} with key_password: {e}"));
        client.close().unwrap();
        drop(server);

        let calls = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&calls);
        let with_callback = build(
            TlsConfig::builder()
                .cert_chain_file(certs::server_chain_pem())
                .key_file(&key)
                .key_password_callback(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                    certs::SERVER_KEY_PASSWORD.as_bytes().to_vec()
                }),
        );
        assert_eq!(calls.load(Ordering::SeqCst), 1, "{what}: callback calls");
        let server = serve_tls(with_callback);
        let (client, _) = get(port(&server), trusting_client(), "localhost")
            .unwrap_or_else(|e| panic!("{what} with key_password_callback: {e}"));
        client.close().unwrap();
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "{what}: the password is not asked for per connection"
        );

        let err = TlsConfig::builder()
            .cert_chain_file(certs::server_chain_pem())
            .key_file(&key)
            .key_password("not the password")
            .build()
            .expect_err("a wrong password must fail the build");
        assert!(
            err.to_string().contains("password"),
            "{what}: wrong password error: {err}"
        );
    }
}

/// An encrypted key without any password configured must fail the build
/// with a clear error, never wait for someone to type a pass phrase.
#[test]
fn encrypted_key_without_password_is_a_clear_error() {
    let err = TlsConfig::builder()
        .cert_chain_file(certs::server_chain_pem())
        .key_file(certs::server_encrypted_key())
        .build()
        .expect_err("an encrypted key without a password must fail the build");
    assert!(err.to_string().contains("password"), "{err}");
}

/// RSA and ECDSA keys, each as PKCS#8 and in its traditional format, load
/// and serve; the client sees a certificate of that key type.
#[test]
fn rsa_and_ecdsa_keys_in_pkcs8_and_traditional_formats() {
    init_logging();
    let cases = [
        (certs::server_chain_pem(), certs::server_key(), Id::EC),
        (
            certs::server_chain_pem(),
            certs::server_traditional_key(),
            Id::EC,
        ),
        (
            certs::server_rsa_chain_pem(),
            certs::server_rsa_key(),
            Id::RSA,
        ),
        (
            certs::server_rsa_chain_pem(),
            certs::server_rsa_traditional_key(),
            Id::RSA,
        ),
    ];
    for (chain, key, kind) in cases {
        let what = key.file_name().unwrap().to_string_lossy().into_owned();
        let pem = std::fs::read(&key).unwrap();
        let traditional = !String::from_utf8_lossy(&pem).contains("BEGIN PRIVATE KEY");
        assert_eq!(
            traditional,
            what.contains("traditional"),
            "{what} is not in the format its name says"
        );
        let server = serve_tls(build(
            TlsConfig::builder().cert_chain_file(chain).key_file(&key),
        ));
        // TLS 1.2 too, where the key type also picks the cipher suites.
        for max in [SslVersion::TLS1_2, SslVersion::TLS1_3] {
            let mut builder = trusting_client();
            builder.set_max_proto_version(Some(max)).unwrap();
            let (mut client, body) = get(port(&server), builder, "localhost")
                .unwrap_or_else(|e| panic!("{what}, {max:?}: {e}"));
            let cert = client.ssl_stream().ssl().peer_certificate().unwrap();
            assert_eq!(cert.public_key().unwrap().id(), kind, "{what}");
            let cipher = fact(&body, "cipher");
            if max == SslVersion::TLS1_2 {
                let auth = if kind == Id::RSA {
                    "ECDHE-RSA-"
                } else {
                    "ECDHE-ECDSA-"
                };
                assert!(cipher.starts_with(auth), "{what}: {cipher}");
            }
            client.close().unwrap();
        }
    }
}

/// Build errors name what is wrong.
#[test]
fn configuration_errors_are_clear() {
    let missing_key = TlsConfig::builder()
        .cert_chain_file(certs::server_chain_pem())
        .build()
        .unwrap_err();
    assert!(missing_key.to_string().contains("key"), "{missing_key}");
    let wrong_key = TlsConfig::builder()
        .cert_chain_file(certs::server_chain_pem())
        .key_file(certs::other_key())
        .build()
        .unwrap_err();
    assert!(wrong_key.to_string().contains("private key"), "{wrong_key}");
    let source = std::error::Error::source(&wrong_key).unwrap().to_string();
    assert!(source.contains("mismatch"), "{source}");
    let no_ca = server_builder()
        .client_ca_file("/nonexistent/ca.pem")
        .build()
        .unwrap_err();
    assert!(no_ca.to_string().contains("client CA"), "{no_ca}");
    let bad_ciphers = server_builder()
        .cipher_list("NO-SUCH-CIPHER")
        .build()
        .unwrap_err();
    assert!(bad_ciphers.to_string().contains("cipher"), "{bad_ciphers}");
    let bad_suites = server_builder()
        .ciphersuites("TLS_NO_SUCH_SUITE")
        .build()
        .unwrap_err();
    assert!(bad_suites.to_string().contains("suites"), "{bad_suites}");
    let bad_groups = server_builder()
        .groups("no-such-group")
        .build()
        .unwrap_err();
    assert!(bad_groups.to_string().contains("groups"), "{bad_groups}");
    let bad_sni = server_builder()
        .sni_cert_files("other.test", "/nonexistent/other.pem", certs::other_key())
        .build()
        .unwrap_err();
    assert!(
        bad_sni.to_string().contains("/nonexistent/other.pem"),
        "{bad_sni}"
    );
}

// ---------------------------------------------------------------------------
// Client certificates
// ---------------------------------------------------------------------------

/// Pistache's `useSSLAuth` cases: with a client CA (required by default) a
/// valid client certificate is served and its subject reaches the request;
/// no certificate, or one from another CA, is refused; the server is
/// unharmed by the refusals.
#[test]
fn required_client_certificate() {
    init_logging();
    let server = serve_tls(build(server_builder().client_ca_file(certs::ca_pem())));
    let port = port(&server);
    let valid = || client_with_cert(certs::client_pem(), certs::client_key());

    let (mut client, body) = get(port, valid(), "localhost").expect("valid client certificate");
    assert_eq!(
        fact(&body, "subject"),
        "O=pistachio tests, CN=pistachio-test-client"
    );

    refused(
        port,
        trusting_client(),
        "localhost",
        "no client certificate",
    );
    refused(
        port,
        client_with_cert(certs::untrusted_client_pem(), certs::untrusted_client_key()),
        "localhost",
        "a client certificate from an untrusted CA",
    );

    // The first client's connection is unharmed; libcurl with a client
    // certificate is served too.
    let again = client.request("/again").expect("established client");
    assert!(again.text().contains("CN=pistachio-test-client"));
    client.close().unwrap();
    assert_eq!(curl_with_client_cert(port).as_deref(), Ok("subject"));
}

/// `GET /` through libcurl presenting `client.pem`; the name of the first
/// fact line of the answer.
fn curl_with_client_cert(port: u16) -> Result<String, String> {
    let mut easy = curl::easy::Easy::new();
    let mut resolve = curl::easy::List::new();
    resolve
        .append(&format!("localhost:{port}:127.0.0.1"))
        .unwrap();
    easy.resolve(resolve).unwrap();
    easy.url(&format!("https://localhost:{port}/")).unwrap();
    easy.cainfo(certs::ca_pem()).unwrap();
    easy.ssl_cert(certs::client_pem()).unwrap();
    easy.ssl_key(certs::client_key()).unwrap();
    easy.timeout(Duration::from_secs(5)).unwrap();
    easy.signal(false).unwrap();
    let body = pistachio_tests::libcurl::perform(&mut easy).map_err(|e| e.to_string())?;
    let body = String::from_utf8_lossy(&body).into_owned();
    if !fact(&body, "subject").contains("CN=pistachio-test-client") {
        return Err(body);
    }
    Ok(body.split('=').next().unwrap_or_default().to_owned())
}

/// `ClientCerts::Optional`: a client without a certificate is served with
/// no subject; one with a valid certificate gets its subject; an invalid
/// certificate is still refused.
#[test]
fn optional_client_certificate() {
    init_logging();
    let server = serve_tls(build(
        server_builder()
            .client_ca_file(certs::ca_pem())
            .client_certs(ClientCerts::Optional),
    ));
    let port = port(&server);
    let (client_a, body) =
        get(port, trusting_client(), "localhost").expect("no certificate, optional");
    assert_eq!(fact(&body, "subject"), "none");
    let (client_b, body) = get(
        port,
        client_with_cert(certs::client_pem(), certs::client_key()),
        "localhost",
    )
    .expect("valid certificate, optional");
    assert!(fact(&body, "subject").contains("CN=pistachio-test-client"));
    refused(
        port,
        client_with_cert(certs::untrusted_client_pem(), certs::untrusted_client_key()),
        "localhost",
        "an untrusted certificate, even when optional",
    );
    client_a.close().unwrap();
    client_b.close().unwrap();
}

/// `client_ca_dir`: CAs found in a hashed directory (`HASH.0` files, as
/// `openssl rehash` makes).
#[test]
fn client_ca_directory() {
    init_logging();
    let dir = std::env::temp_dir().join(format!("pistachio-client-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = X509::from_pem(&std::fs::read(certs::ca_pem()).unwrap()).unwrap();
    let hashed = dir.join(format!("{:08x}.0", ca.subject_name_hash()));
    std::fs::copy(certs::ca_pem(), &hashed).unwrap();

    let result = std::panic::catch_unwind(|| client_ca_directory_case(&dir));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

fn client_ca_directory_case(dir: &Path) {
    let server = serve_tls(build(server_builder().client_ca_dir(dir)));
    let port = port(&server);
    let (client, body) = get(
        port,
        client_with_cert(certs::client_pem(), certs::client_key()),
        "localhost",
    )
    .expect("client certificate verified through the CA directory");
    assert!(fact(&body, "subject").contains("CN=pistachio-test-client"));
    client.close().unwrap();
    refused(
        port,
        client_with_cert(certs::untrusted_client_pem(), certs::untrusted_client_key()),
        "localhost",
        "a certificate from a CA not in the directory",
    );
    refused(port, trusting_client(), "localhost", "no certificate");
}

/// The verify callback sees every certificate of the client's chain with
/// OpenSSL's verdict, and its answer is final: returning `false` refuses a
/// valid client.
#[test]
fn verify_callback_is_invoked_and_can_reject() {
    init_logging();
    let calls = Arc::new(AtomicUsize::new(0));
    let preverified = Arc::new(AtomicUsize::new(0));
    let (c, p) = (Arc::clone(&calls), Arc::clone(&preverified));
    let accepting = serve_tls(build(
        server_builder()
            .client_ca_file(certs::ca_pem())
            .verify_callback(move |ok, _store| {
                c.fetch_add(1, Ordering::SeqCst);
                if ok {
                    p.fetch_add(1, Ordering::SeqCst);
                }
                ok
            }),
    ));
    let (client, body) = get(
        port(&accepting),
        client_with_cert(certs::client_pem(), certs::client_key()),
        "localhost",
    )
    .expect("the callback passes OpenSSL's verdict through");
    assert!(fact(&body, "subject").contains("CN=pistachio-test-client"));
    client.close().unwrap();
    // client.pem is signed by the root: depth 1 (root) and depth 0 (leaf).
    assert!(
        calls.load(Ordering::SeqCst) >= 2,
        "callback calls: {}",
        calls.load(Ordering::SeqCst)
    );
    assert_eq!(
        calls.load(Ordering::SeqCst),
        preverified.load(Ordering::SeqCst),
        "OpenSSL approved every certificate of a valid chain"
    );

    let rejections = Arc::new(AtomicUsize::new(0));
    let r = Arc::clone(&rejections);
    let rejecting = serve_tls(build(
        server_builder()
            .client_ca_file(certs::ca_pem())
            .verify_callback(move |_ok, store| {
                r.fetch_add(1, Ordering::SeqCst);
                // Refuse the leaf by name, accept the CA.
                let leaf = store.error_depth() == 0;
                !(leaf
                    && store
                        .current_cert()
                        .is_some_and(|c| common_name(&c.to_owned()) == "pistachio-test-client"))
            }),
    ));
    refused(
        port(&rejecting),
        client_with_cert(certs::client_pem(), certs::client_key()),
        "localhost",
        "a client the verify callback rejects",
    );
    assert!(rejections.load(Ordering::SeqCst) >= 1);
}

// ---------------------------------------------------------------------------
// Protocol versions, ciphers, groups
// ---------------------------------------------------------------------------

/// `min_version(Tls13)` refuses a TLS 1.2 client; `max_version(Tls12)`
/// negotiates TLS 1.2, as `Request::tls` reports; the default is TLS 1.3.
#[test]
fn min_and_max_version() {
    init_logging();
    let default = serve_tls(build(server_builder()));
    let (client_a, body) = get(port(&default), trusting_client(), "localhost").unwrap();
    assert_eq!(fact(&body, "version"), "TLSv1.3");
    client_a.close().unwrap();
    let mut tls12_client = trusting_client();
    tls12_client
        .set_max_proto_version(Some(SslVersion::TLS1_2))
        .unwrap();
    let (client_b, body) = get(port(&default), tls12_client, "localhost").unwrap();
    assert_eq!(
        fact(&body, "version"),
        "TLSv1.2",
        "TLS 1.2 is on by default"
    );
    client_b.close().unwrap();

    let min13 = serve_tls(build(server_builder().min_version(TlsVersion::Tls13)));
    let mut tls12_client = trusting_client();
    tls12_client
        .set_max_proto_version(Some(SslVersion::TLS1_2))
        .unwrap();
    let err = refused(
        port(&min13),
        tls12_client,
        "localhost",
        "a TLS 1.2 client of a TLS 1.3-only server",
    );
    assert!(err.contains("protocol version"), "{err}");
    let (client_c, body) = get(port(&min13), trusting_client(), "localhost").unwrap();
    assert_eq!(fact(&body, "version"), "TLSv1.3");
    client_c.close().unwrap();

    let max12 = serve_tls(build(server_builder().max_version(TlsVersion::Tls12)));
    let (mut client_d, body) = get(port(&max12), trusting_client(), "localhost").unwrap();
    assert_eq!(fact(&body, "version"), "TLSv1.2");
    assert_eq!(client_d.ssl_stream().ssl().version_str(), "TLSv1.2");
    client_d.close().unwrap();
}

/// `cipher_list` restricts TLS 1.2 suites (the negotiated one is reported
/// by `Request::tls`), the server's order wins over the client's, and
/// non-AEAD suites are off by default; `ciphersuites` does the same for
/// TLS 1.3.
#[test]
fn cipher_configuration() {
    init_logging();
    let tls12 = |ciphers: &str| {
        let mut builder = trusting_client();
        builder
            .set_max_proto_version(Some(SslVersion::TLS1_2))
            .unwrap();
        builder.set_cipher_list(ciphers).unwrap();
        builder
    };

    let one = serve_tls(build(
        server_builder().cipher_list("ECDHE-ECDSA-AES128-GCM-SHA256"),
    ));
    let (client_a, body) = get(
        port(&one),
        tls12("ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256"),
        "localhost",
    )
    .unwrap();
    assert_eq!(fact(&body, "cipher"), "ECDHE-ECDSA-AES128-GCM-SHA256");
    client_a.close().unwrap();
    refused(
        port(&one),
        tls12("ECDHE-ECDSA-AES256-GCM-SHA384"),
        "localhost",
        "a client without the one TLS 1.2 suite",
    );

    // Server preference: the client prefers AES, the server ChaCha20.
    let ordered = serve_tls(build(
        server_builder().cipher_list("ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256"),
    ));
    let (client_b, body) = get(
        port(&ordered),
        tls12("ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305"),
        "localhost",
    )
    .unwrap();
    assert_eq!(fact(&body, "cipher"), "ECDHE-ECDSA-CHACHA20-POLY1305");
    client_b.close().unwrap();

    // Defaults: AEAD only (a CBC-only client is refused), server preference.
    let default = serve_tls(build(server_builder()));
    refused(
        port(&default),
        tls12("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384"),
        "localhost",
        "a client offering only CBC suites",
    );

    // TLS 1.3 suites.
    let chacha = serve_tls(build(
        server_builder().ciphersuites("TLS_CHACHA20_POLY1305_SHA256"),
    ));
    let (client_c, body) = get(port(&chacha), trusting_client(), "localhost").unwrap();
    assert_eq!(fact(&body, "version"), "TLSv1.3");
    assert_eq!(fact(&body, "cipher"), "TLS_CHACHA20_POLY1305_SHA256");
    client_c.close().unwrap();
}

/// `groups` restricts key exchange groups: a client without any of them is
/// refused, one with them is served.
#[test]
fn key_exchange_groups() {
    init_logging();
    let server = serve_tls(build(server_builder().groups("P-384")));
    for max in [SslVersion::TLS1_2, SslVersion::TLS1_3] {
        let mut x25519 = trusting_client();
        x25519.set_max_proto_version(Some(max)).unwrap();
        x25519.set_groups_list("X25519").unwrap();
        refused(
            port(&server),
            x25519,
            "localhost",
            &format!("an X25519-only client of a P-384 server ({max:?})"),
        );
        let mut both = trusting_client();
        both.set_max_proto_version(Some(max)).unwrap();
        // P-256 too: with TLS 1.2 the client's groups also bound the curve
        // of an ECDSA certificate (server.pem is P-256).
        both.set_groups_list("X25519:P-256:P-384").unwrap();
        let (c, _) = get(port(&server), both, "localhost")
            .unwrap_or_else(|e| panic!("X25519:P-256:P-384 client ({max:?}): {e}"));
        c.close().unwrap();
    }
}

// ---------------------------------------------------------------------------
// ALPN
// ---------------------------------------------------------------------------

/// A client offering `protocols` by ALPN (none if empty).
fn alpn_client(protocols: &[&str]) -> SslConnectorBuilder {
    let mut builder = trusting_client();
    if !protocols.is_empty() {
        builder.set_alpn_protos(&alpn_wire(protocols)).unwrap();
    }
    builder
}

/// [`serve_tls`] with HTTP/2 off: the endpoint speaks HTTP/1.x only.
fn serve_tls_http1(tls: TlsConfig) -> Endpoint {
    serve(
        1,
        Options::default()
            .handshake_timeout(HANDSHAKE_TIMEOUT)
            .http2(false)
            .tls(tls),
    )
}

/// An endpoint serving HTTP/2 (the default) selects `h2` for a client
/// offering it, in whatever order; `http/1.1` for a client offering only
/// that; nothing, and HTTP/1.1, for a client offering no ALPN.
#[test]
fn alpn_prefers_h2_when_the_endpoint_serves_http2() {
    init_logging();
    let server = serve_tls(build(server_builder()));
    for offer in [
        &["h2"][..],
        &["http/1.1", "h2"],
        &["h2", "http/1.1", "http/1.0"],
    ] {
        let mut stream =
            TlsClient::connect_with(port(&server), &alpn_client(offer).build(), "localhost")
                .unwrap_or_else(|e| panic!("{offer:?}: {e}"));
        assert_eq!(
            stream.ssl_stream().ssl().selected_alpn_protocol(),
            Some(&b"h2"[..]),
            "{offer:?}"
        );
    }
    let (mut http1, _) = get(port(&server), alpn_client(&["http/1.1"]), "localhost").unwrap();
    assert_eq!(
        http1.ssl_stream().ssl().selected_alpn_protocol(),
        Some(&b"http/1.1"[..])
    );
    http1.close().unwrap();
    let (mut none, _) = get(port(&server), alpn_client(&[]), "localhost").unwrap();
    assert_eq!(none.ssl_stream().ssl().selected_alpn_protocol(), None);
    none.close().unwrap();
}

/// With HTTP/2 off the server selects `http/1.1`; a client offering only
/// `h2` gets a fatal `no_application_protocol` alert (no hang); a client
/// offering nothing is served without ALPN. With `without_alpn` nothing is
/// selected and an `h2`-only client is served (HTTP/1.1 regardless).
#[test]
fn alpn_selects_http11_and_refuses_h2_only_clients() {
    init_logging();
    let server = serve_tls_http1(build(server_builder()));
    let err = refused(
        port(&server),
        alpn_client(&["h2"]),
        "localhost",
        "an h2-only client",
    );
    assert!(err.contains("no application protocol"), "{err}");

    let (mut both, _) = get(port(&server), alpn_client(&["h2", "http/1.1"]), "localhost").unwrap();
    assert_eq!(
        both.ssl_stream().ssl().selected_alpn_protocol(),
        Some(&b"http/1.1"[..])
    );
    both.close().unwrap();

    let (mut none, _) = get(port(&server), alpn_client(&[]), "localhost").unwrap();
    assert_eq!(none.ssl_stream().ssl().selected_alpn_protocol(), None);
    none.close().unwrap();

    // TLS 1.2 takes the same path.
    let mut h2_tls12 = alpn_client(&["h2"]);
    h2_tls12
        .set_max_proto_version(Some(SslVersion::TLS1_2))
        .unwrap();
    refused(
        port(&server),
        h2_tls12,
        "localhost",
        "an h2-only TLS 1.2 client",
    );

    let no_alpn = serve_tls(build(server_builder().without_alpn()));
    // (HTTP/2 on or off: without ALPN every client gets HTTP/1.1.)
    let (mut h2, _) = get(port(&no_alpn), alpn_client(&["h2"]), "localhost")
        .expect("without ALPN an h2-only client is not refused");
    assert_eq!(h2.ssl_stream().ssl().selected_alpn_protocol(), None);
    h2.close().unwrap();
}

// ---------------------------------------------------------------------------
// SNI
// ---------------------------------------------------------------------------

/// A client connector that checks the chain but not the host name (for
/// names no certificate carries).
fn connect_without_name_check(port: u16, name: &str) -> io::Result<SslStream<TcpStream>> {
    let connector = trusting_client().build();
    let config = connector
        .configure()
        .map_err(io::Error::other)?
        .verify_hostname(false);
    config
        .connect(name, connect_tcp(port)?)
        .map_err(|e| io::Error::other(e.to_string()))
}

/// Two certificates: `other.test` (asked for in any letter case) gets the
/// second; `localhost`, an unknown name, or no SNI at all get the default.
/// The SNI certificate's context keeps the server's settings (ALPN).
#[test]
fn sni_selects_the_certificate_by_server_name() {
    init_logging();
    let server = serve_tls_http1(build(server_builder().sni_cert_files(
        "other.test",
        certs::other_chain_pem(),
        certs::other_key(),
    )));
    let port = port(&server);

    let (mut other, _) = get(port, trusting_client(), "other.test").expect("other.test");
    assert_eq!(peer_cn(other.ssl_stream()), "other.test");
    assert_eq!(peer_dns_names(other.ssl_stream()), ["other.test"]);
    assert_eq!(
        other.ssl_stream().ssl().selected_alpn_protocol(),
        None,
        "no ALPN offered"
    );
    other.close().unwrap();

    let (mut upper, _) = get(port, trusting_client(), "OTHER.Test").expect("OTHER.Test");
    assert_eq!(peer_cn(upper.ssl_stream()), "other.test");
    upper.close().unwrap();

    let (mut local, _) = get(port, trusting_client(), "localhost").expect("localhost");
    assert_eq!(peer_cn(local.ssl_stream()), "localhost");
    local.close().unwrap();

    let unknown = connect_without_name_check(port, "unknown.test").expect("unknown name");
    assert_eq!(peer_cn(&unknown), "localhost");
    assert!(peer_dns_names(&unknown).contains(&"localhost".to_owned()));
    drop(unknown);

    // An IP address is never sent as SNI: the default certificate.
    let by_ip = connect_without_name_check(port, "127.0.0.1").expect("by address");
    assert_eq!(peer_cn(&by_ip), "localhost");
    drop(by_ip);

    // ALPN still applies under the SNI certificate.
    let (mut alpn_other, _) =
        get(port, alpn_client(&["h2", "http/1.1"]), "other.test").expect("other.test with ALPN");
    assert_eq!(
        alpn_other.ssl_stream().ssl().selected_alpn_protocol(),
        Some(&b"http/1.1"[..])
    );
    alpn_other.close().unwrap();
    refused(
        port,
        alpn_client(&["h2"]),
        "other.test",
        "an h2-only client of the SNI certificate",
    );
}

// ---------------------------------------------------------------------------
// Session resumption
// ---------------------------------------------------------------------------

/// Makes a first connection, then a second one offering its session;
/// returns whether the second resumed it.
fn second_connection_resumes(port: u16, max: SslVersion) -> bool {
    let mut builder = trusting_client();
    builder.set_max_proto_version(Some(max)).unwrap();
    let connector = ResumingConnector::new(builder.build());
    let mut first = connector.connect(port, "localhost", None).expect("first");
    assert!(!first.ssl().session_reused());
    let response = get_and_close(&mut first).expect("first request");
    assert!(response.contains(HELLO_BODY), "{response}");
    let session = connector
        .session_of(&first)
        .expect("a session from the first connection");
    drop(first);
    let mut second = connector
        .connect(port, "localhost", Some(&session))
        .expect("second");
    let reused = second.ssl().session_reused();
    let response = get_and_close(&mut second).expect("second request");
    assert!(response.contains(HELLO_BODY), "{response}");
    reused
}

fn hello(_req: Request, resp: ResponseWriter) {
    resp.send(StatusCode::OK, HELLO_BODY);
}

fn serve_hello(tls: TlsConfig, threads: usize) -> Endpoint {
    let options = Options::default()
        .threads(threads)
        .handshake_timeout(HANDSHAKE_TIMEOUT)
        .tls(tls);
    let mut endpoint = Endpoint::bind("127.0.0.1:0", options).unwrap();
    endpoint.serve_threaded(hello).unwrap();
    endpoint
}

/// A returning client resumes its session (TLS 1.3 and 1.2), also on
/// another worker (one `SSL_CTX` for all). With `without_session_tickets`
/// resumption still works, from OpenSSL's server-side session cache:
/// TLS 1.2 by session ID, TLS 1.3 by stateful tickets.
#[test]
fn session_resumption() {
    init_logging();
    let server = serve_hello(build(server_builder()), 2);
    for max in [SslVersion::TLS1_3, SslVersion::TLS1_2] {
        assert!(
            second_connection_resumes(port(&server), max),
            "{max:?}: the session was not resumed"
        );
    }
    let no_tickets = serve_hello(build(server_builder().without_session_tickets()), 2);
    for max in [SslVersion::TLS1_3, SslVersion::TLS1_2] {
        assert!(
            second_connection_resumes(port(&no_tickets), max),
            "{max:?} without tickets: the session was not resumed from the cache"
        );
    }
}

/// A session of one server is not resumed by another one (different
/// ticket keys and session caches): a full handshake follows.
#[test]
fn session_of_another_server_is_not_resumed() {
    init_logging();
    let a = serve_hello(build(server_builder()), 1);
    let b = serve_hello(build(server_builder()), 1);
    let connector = ResumingConnector::new(trusting_client().build());
    let mut first = connector.connect(port(&a), "localhost", None).unwrap();
    get_and_close(&mut first).unwrap();
    let session = connector.session_of(&first).unwrap();
    drop(first);
    let mut second = connector
        .connect(port(&b), "localhost", Some(&session))
        .unwrap();
    assert!(!second.ssl().session_reused());
    assert!(get_and_close(&mut second).unwrap().contains(HELLO_BODY));
}

// ---------------------------------------------------------------------------
// Reload
// ---------------------------------------------------------------------------

/// `Endpoint::tls_reloader`: after a reload new connections (on every
/// worker) get the new certificate; an established connection keeps its
/// session and goes on working.
#[test]
fn reload_serves_the_new_certificate_to_new_connections_only() {
    init_logging();
    let server = serve(
        2,
        Options::default()
            .handshake_timeout(HANDSHAKE_TIMEOUT)
            .tls(build(server_builder())),
    );
    let port = port(&server);
    // One established connection per worker (round-robin).
    let (mut first, _) = get(port, trusting_client(), "localhost").unwrap();
    let (mut second, _) = get(port, trusting_client(), "localhost").unwrap();
    assert_eq!(peer_cn(first.ssl_stream()), "localhost");

    let reloader = server
        .tls_reloader()
        .expect("a TLS endpoint has a reloader");
    reloader.reload(build(
        TlsConfig::builder()
            .cert_chain_file(certs::other_chain_pem())
            .key_file(certs::other_key()),
    ));

    for i in 0..4 {
        let (mut c, _) = get(port, trusting_client(), "other.test")
            .unwrap_or_else(|e| panic!("new connection {i} after the reload: {e}"));
        assert_eq!(peer_cn(c.ssl_stream()), "other.test");
        c.close().unwrap();
    }
    let err = refused(
        port,
        trusting_client(),
        "localhost",
        "a client expecting the old certificate",
    );
    assert!(err.contains("certificate verify failed"), "{err}");

    for (what, c) in [("first", &mut first), ("second", &mut second)] {
        let r = c
            .request("/after-reload")
            .unwrap_or_else(|e| panic!("{what} established connection: {e}"));
        assert_eq!(r.status, 200);
        assert_eq!(peer_cn(c.ssl_stream()), "localhost");
    }
    first.close().unwrap();
    second.close().unwrap();

    // A plaintext endpoint has nothing to reload.
    let plain = serve(1, Options::default());
    assert!(plain.tls_reloader().is_none());
}

// ---------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------

/// `max_handshakes(2)` on one worker: with two silent clients holding both
/// handshake slots, further connections are closed at once (long before the
/// handshake timeout), and an established connection is still served. Once
/// the silent ones time out, new clients are served again.
#[test]
fn handshake_cap_closes_connections_beyond_it() {
    init_logging();
    const TIMEOUT: Duration = Duration::from_millis(1500);
    let server = serve(
        1,
        Options::default()
            .handshake_timeout(TIMEOUT)
            .max_handshakes(2)
            .tls(build(server_builder())),
    );
    let port = port(&server);
    let (mut established, _) = get(port, trusting_client(), "localhost").unwrap();

    let silent_since = Instant::now();
    let silent: Vec<TcpStream> = (0..2).map(|_| connect_tcp(port).unwrap()).collect();
    // Let the worker take them in.
    std::thread::sleep(Duration::from_millis(200));

    for i in 0..3 {
        let extra = connect_tcp(port).unwrap();
        let started = Instant::now();
        assert!(
            wait_for_close(&extra, Duration::from_millis(800)),
            "silent connection {} beyond the cap was still open after {:?}",
            i + 3,
            started.elapsed()
        );
    }
    let started = Instant::now();
    let beyond = get(port, trusting_client(), "localhost");
    assert!(
        beyond.is_err(),
        "a TLS client beyond the handshake cap was served"
    );
    assert!(
        started.elapsed() < Duration::from_millis(800),
        "refusing a client beyond the cap took {:?}",
        started.elapsed()
    );

    let r = established
        .request("/during-flood")
        .expect("established connection during the flood");
    assert_eq!(r.status, 200);

    for (i, s) in silent.iter().enumerate() {
        assert!(
            wait_for_close(s, Duration::from_secs(3)),
            "silent client {i} was not dropped after the handshake timeout"
        );
    }
    let after = silent_since.elapsed();
    assert!(
        after >= TIMEOUT - Duration::from_millis(100),
        "the silent clients were dropped after {after:?}, before the handshake timeout"
    );
    let (c, _) =
        get(port, trusting_client(), "localhost").expect("a client once the slots are free");
    c.close().unwrap();
    established.close().unwrap();
}

/// Polls `endpoint.connections()` until it is `n`, for up to 2 s.
fn wait_for_connections(endpoint: &Endpoint, n: usize) -> bool {
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        if endpoint.connections() == n {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// `max_connections(3)`: three keep-alive TLS clients are served; a fourth
/// connection is closed at once without an answer; once one of the three
/// leaves, a new client is served.
#[test]
fn max_connections_closes_connections_beyond_it() {
    init_logging();
    let server = serve(
        2,
        Options::default()
            .handshake_timeout(HANDSHAKE_TIMEOUT)
            .max_connections(3)
            .tls(build(server_builder())),
    );
    let port = port(&server);
    let mut clients: Vec<TlsClient> = (0..3)
        .map(|i| {
            get(port, trusting_client(), "localhost")
                .unwrap_or_else(|e| panic!("client {i} within the limit: {e}"))
                .0
        })
        .collect();
    assert!(wait_for_connections(&server, 3), "{}", server.connections());

    let started = Instant::now();
    let fourth = get(port, trusting_client(), "localhost");
    assert!(fourth.is_err(), "a fourth connection was served");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "closing the fourth connection took {:?}",
        started.elapsed()
    );
    let raw = connect_tcp(port).unwrap();
    assert!(
        wait_for_close(&raw, Duration::from_secs(1)),
        "a plain TCP connection beyond the limit stayed open"
    );

    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(
            c.request("/").unwrap_or_else(|e| panic!("{i}: {e}")).status,
            200
        );
    }
    clients.pop().unwrap().close().unwrap();
    assert!(
        wait_for_connections(&server, 2),
        "connections after one left: {}",
        server.connections()
    );
    let (newcomer, _) = get(port, trusting_client(), "localhost").expect("a client once one left");
    for c in &mut clients {
        assert_eq!(c.request("/").unwrap().status, 200);
    }
    newcomer.close().unwrap();
    for c in clients {
        c.close().unwrap();
    }
}

// ---------------------------------------------------------------------------
// A caller-built SSL_CTX
// ---------------------------------------------------------------------------

/// `TlsConfig::from_context` with the modes the transport requires serves
/// like a built configuration (a 64 KiB answer crosses several records).
#[test]
fn caller_built_context() {
    init_logging();
    let ctx = pistachio_tests::server::server_acceptor_builder();
    let tls = TlsConfig::from_context(ctx.build().into_context());
    let options = Options::default()
        .threads(1)
        .handshake_timeout(HANDSHAKE_TIMEOUT)
        .tls(tls);
    let mut endpoint = Endpoint::bind("127.0.0.1:0", options).unwrap();
    endpoint
        .serve_threaded(|_req: Request, resp: ResponseWriter| {
            resp.send(StatusCode::OK, "x".repeat(64 * 1024));
        })
        .unwrap();
    let mut c = TlsClient::connect(port(&endpoint)).unwrap();
    for _ in 0..3 {
        let r = c.request("/").unwrap();
        assert_eq!(r.body.len(), 64 * 1024);
    }
    c.close().unwrap();
}
