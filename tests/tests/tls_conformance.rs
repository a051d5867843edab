//! What a TLS client sees of the server's defaults, checked with real
//! clients on `127.0.0.1`: ALPN (`http/1.1`, `http/1.0`, nothing, or
//! nothing the server speaks), the key-exchange groups, cipher suites and
//! protocol versions of Mozilla's intermediate profile (v5), and the
//! answer to a plaintext HTTP request sent to the TLS port.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::Duration;

use openssl::ssl::{SslConnectorBuilder, SslVersion};
use pistachio_tests::client::{alpn_wire, connect_tcp, read_to_close, tls_connector_builder};
use pistachio_tests::{certs, init_logging, TestServer, TlsClient, HELLO_BODY};

/// A client trusting only the test CA.
fn client() -> SslConnectorBuilder {
    tls_connector_builder().expect("client connector")
}

/// Connects with `builder`, makes one request, and returns the protocol
/// ALPN selected; an error if the handshake or the request failed.
fn exchange(server: &TestServer, builder: SslConnectorBuilder) -> io::Result<Option<Vec<u8>>> {
    let mut client = TlsClient::connect_with(server.port(), &builder.build(), "localhost")?;
    let response = client.request("/")?;
    if response.status != 200 || response.text() != HELLO_BODY {
        return Err(io::Error::other(format!("status {}", response.status)));
    }
    let selected = client
        .ssl_stream()
        .ssl()
        .selected_alpn_protocol()
        .map(<[u8]>::to_vec);
    client.close()?;
    Ok(selected)
}

// ---------------------------------------------------------------------------
// ALPN
// ---------------------------------------------------------------------------

/// An endpoint with HTTP/2 off selects `http/1.1` when offered, `http/1.0`
/// for a client offering only that (what `curl --http1.0` does), nothing
/// for a client without ALPN, and refuses with `no_application_protocol`
/// only a client offering nothing it speaks. With HTTP/2 on (the default)
/// `h2` comes first.
#[test]
fn alpn_selects_what_the_server_speaks() {
    init_logging();
    let h2_server = TestServer::hello(1, true);
    let h2_cases: &[(&[&str], &[u8])] = &[
        (&["h2"], b"h2"),
        (&["http/1.1", "http/1.0", "h2"], b"h2"),
        (&["http/1.0", "http/1.1"], b"http/1.1"),
    ];
    for (offered, selected) in h2_cases {
        let mut builder = client();
        builder.set_alpn_protos(&alpn_wire(offered)).unwrap();
        let mut tls = TlsClient::connect_with(h2_server.port(), &builder.build(), "localhost")
            .unwrap_or_else(|e| panic!("offering {offered:?}: {e}"));
        let got = tls
            .ssl_stream()
            .ssl()
            .selected_alpn_protocol()
            .map(<[u8]>::to_vec);
        assert_eq!(got.as_deref(), Some(*selected), "offering {offered:?}");
    }
    let options = pistachio_http::Options::default()
        .threads(1)
        .handshake_timeout(pistachio_tests::server::HANDSHAKE_TIMEOUT)
        .tls(pistachio_tests::server::server_tls_config())
        .http2(false);
    let server = TestServer::start_with(
        1,
        true,
        options,
        |_, resp: pistachio_http::ResponseWriter| {
            resp.send(pistachio_http::StatusCode::OK, HELLO_BODY)
        },
    );
    let cases: &[(&[&str], Option<&[u8]>)] = &[
        (&["http/1.0"], Some(b"http/1.0")),
        (&["http/1.1"], Some(b"http/1.1")),
        (&["http/1.0", "http/1.1"], Some(b"http/1.1")),
        (&["h2", "http/1.1", "http/1.0"], Some(b"http/1.1")),
        (&["h2", "http/1.0"], Some(b"http/1.0")),
        (&[], None),
    ];
    for (offered, selected) in cases {
        for max in [SslVersion::TLS1_2, SslVersion::TLS1_3] {
            let mut builder = client();
            builder.set_max_proto_version(Some(max)).unwrap();
            if !offered.is_empty() {
                builder.set_alpn_protos(&alpn_wire(offered)).unwrap();
            }
            let got = exchange(&server, builder)
                .unwrap_or_else(|e| panic!("offering {offered:?} ({max:?}): {e}"));
            assert_eq!(got.as_deref(), *selected, "offering {offered:?} ({max:?})");
        }
    }
    let mut h2 = client();
    h2.set_alpn_protos(&alpn_wire(&["h2"])).unwrap();
    let err = exchange(&server, h2).expect_err("an h2-only client is refused");
    assert!(
        format!("{err:?}").contains("no application protocol"),
        "{err:?}"
    );
}

/// libcurl asked for HTTP/1.0 over HTTPS (`curl --http1.0`) is served.
///
/// The bundled libcurl (8.22) offers `http/1.0, http/1.1` for HTTP/1.0 and
/// so gets `http/1.1`; a curl that offers `http/1.0` alone is the OpenSSL
/// client case of [`alpn_selects_what_the_server_speaks`]. What libcurl
/// offered and got is checked from its verbose log.
#[test]
fn libcurl_http10_is_served() {
    use curl::easy::{Easy, HttpVersion, List};
    init_logging();
    let server = TestServer::hello(1, true);
    let mut easy = Easy::new();
    let mut resolve = List::new();
    resolve
        .append(&format!("localhost:{}:127.0.0.1", server.port()))
        .unwrap();
    easy.resolve(resolve).unwrap();
    easy.url(&format!("https://localhost:{}/", server.port()))
        .unwrap();
    easy.cainfo(certs::ca_pem()).unwrap();
    easy.http_version(HttpVersion::V10).unwrap();
    easy.timeout(Duration::from_secs(5)).unwrap();
    easy.forbid_reuse(true).unwrap();
    easy.verbose(true).unwrap();
    let mut body = Vec::new();
    let mut log = String::new();
    {
        let mut transfer = easy.transfer();
        transfer
            .write_function(|data| {
                body.extend_from_slice(data);
                Ok(data.len())
            })
            .unwrap();
        transfer
            .debug_function(|kind, data| {
                if matches!(kind, curl::easy::InfoType::Text) {
                    log.push_str(&String::from_utf8_lossy(data));
                }
            })
            .unwrap();
        transfer
            .perform()
            .unwrap_or_else(|e| panic!("curl --http1.0: {e}"));
    }
    assert_eq!(easy.response_code().unwrap(), 200);
    assert_eq!(String::from_utf8_lossy(&body), HELLO_BODY);
    let offers = log
        .lines()
        .find(|l| l.contains("ALPN: curl offers"))
        .unwrap_or_else(|| panic!("no ALPN offer in {log}"));
    assert!(offers.contains("http/1.0"), "{offers}");
}

// ---------------------------------------------------------------------------
// Mozilla intermediate (v5): groups, ciphers, versions
// ---------------------------------------------------------------------------

/// Key exchange over X25519, P-256 and P-384 only: a TLS 1.3 client
/// offering a single other group (X448, P-521) is refused.
#[test]
fn default_groups_are_mozilla_intermediate() {
    init_logging();
    let server = TestServer::hello(1, true);
    for (group, served) in [
        ("X25519", true),
        ("prime256v1", true),
        ("secp384r1", true),
        ("X448", false),
        ("secp521r1", false),
    ] {
        let mut builder = client();
        builder
            .set_min_proto_version(Some(SslVersion::TLS1_3))
            .unwrap();
        builder.set_groups_list(group).unwrap();
        let outcome = exchange(&server, builder);
        assert_eq!(
            outcome.is_ok(),
            served,
            "a {group}-only client: {outcome:?}"
        );
    }
}

/// The TLS 1.2 cipher list and TLS 1.3 suites of the profile are served
/// (those the test server's ECDSA certificate can use), and nothing else.
#[test]
fn default_ciphers_are_mozilla_intermediate() {
    init_logging();
    let server = TestServer::hello(1, true);
    let tls12 = |ciphers: &str| {
        let mut builder = client();
        builder
            .set_max_proto_version(Some(SslVersion::TLS1_2))
            .unwrap();
        builder.set_cipher_list(ciphers).unwrap();
        exchange(&server, builder)
    };
    for cipher in [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ] {
        tls12(cipher).unwrap_or_else(|e| panic!("TLS 1.2 {cipher}: {e}"));
    }
    for cipher in [
        "ECDHE-ECDSA-AES128-SHA256",
        "ECDHE-ECDSA-AES256-SHA",
        "ECDHE-ECDSA-AES128-CCM",
        "AES128-GCM-SHA256",
    ] {
        assert!(tls12(cipher).is_err(), "TLS 1.2 {cipher} is not offered");
    }
    let tls13 = |suite: &str| {
        let mut builder = client();
        builder
            .set_min_proto_version(Some(SslVersion::TLS1_3))
            .unwrap();
        builder.set_ciphersuites(suite).unwrap();
        exchange(&server, builder)
    };
    for suite in [
        "TLS_AES_128_GCM_SHA256",
        "TLS_AES_256_GCM_SHA384",
        "TLS_CHACHA20_POLY1305_SHA256",
    ] {
        tls13(suite).unwrap_or_else(|e| panic!("TLS 1.3 {suite}: {e}"));
    }
    assert!(tls13("TLS_AES_128_CCM_SHA256").is_err());
}

/// TLS 1.2 and 1.3 are served; TLS 1.1 is refused.
#[test]
fn default_versions_are_mozilla_intermediate() {
    init_logging();
    let server = TestServer::hello(1, true);
    for (version, served) in [
        (SslVersion::TLS1_1, false),
        (SslVersion::TLS1_2, true),
        (SslVersion::TLS1_3, true),
    ] {
        let mut builder = client();
        if version == SslVersion::TLS1_1 {
            // OpenSSL's default security level forbids TLS 1.1 in the
            // client itself; level 0 lets it ask.
            builder.set_cipher_list("DEFAULT:@SECLEVEL=0").unwrap();
        }
        builder.set_min_proto_version(Some(version)).unwrap();
        builder.set_max_proto_version(Some(version)).unwrap();
        let outcome = exchange(&server, builder);
        assert_eq!(outcome.is_ok(), served, "{version:?}: {outcome:?}");
    }
}

// ---------------------------------------------------------------------------
// Plaintext HTTP on the TLS port
// ---------------------------------------------------------------------------

const PLAIN_REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";

/// Checks the whole answer to a plaintext request on the TLS port.
#[track_caller]
fn assert_plain_http_answer(raw: &[u8]) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete answer: {text:?}"));
    let mut lines = head.split("\r\n");
    assert_eq!(lines.next(), Some("HTTP/1.1 400 Bad Request"), "{text:?}");
    let headers: Vec<&str> = lines.collect();
    assert!(
        headers.contains(&"Content-Type: text/plain; charset=utf-8"),
        "{headers:?}"
    );
    assert!(headers.contains(&"Connection: close"), "{headers:?}");
    assert!(
        headers.contains(&format!("Content-Length: {}", body.len()).as_str()),
        "{headers:?} for a body of {}",
        body.len()
    );
    assert!(
        body.contains("The plain HTTP request was sent to HTTPS port"),
        "{body:?}"
    );
}

/// A plaintext request gets a `400` saying the port speaks HTTPS, then a
/// clean close (FIN, not RST, even though the request was never read by a
/// protocol); the server goes on serving TLS.
#[test]
fn plain_http_to_the_tls_port_gets_a_400() {
    init_logging();
    let server = TestServer::hello(1, true);
    let mut tcp = connect_tcp(server.port()).unwrap();
    tcp.write_all(PLAIN_REQUEST).unwrap();
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw)
        .expect("the answer, then a clean close");
    assert_plain_http_answer(&raw);
    exchange(&server, client()).expect("TLS still served");
}

/// A request whose method arrives in pieces is still recognised: the
/// server never decides on a short first read.
#[test]
fn plain_http_split_across_reads_gets_a_400() {
    init_logging();
    let server = TestServer::hello(1, true);
    for split in [1, 2, 3, 4] {
        let mut tcp = connect_tcp(server.port()).unwrap();
        tcp.write_all(&PLAIN_REQUEST[..split]).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        tcp.write_all(&PLAIN_REQUEST[split..]).unwrap();
        let raw = read_to_close(&mut tcp);
        assert_plain_http_answer(&raw);
    }
}

/// A method prefix followed by FIN is not a request: the connection is
/// closed at once, without an answer and without waiting for the
/// handshake timeout.
#[test]
fn a_method_prefix_then_fin_is_closed() {
    init_logging();
    let server = TestServer::hello(1, true);
    let mut tcp = connect_tcp(server.port()).unwrap();
    tcp.write_all(b"GE").unwrap();
    tcp.shutdown(Shutdown::Write).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut raw = Vec::new();
    let closed = match tcp.read_to_end(&mut raw) {
        Ok(_) => true,
        Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
    };
    assert!(closed, "still open after 1 s");
    assert!(!raw.starts_with(b"HTTP/"), "{raw:?}");
}

/// A method prefix that never goes on is bounded by the handshake timeout
/// (2 s on the test server): the connection is closed, without an answer.
#[test]
fn a_method_prefix_alone_is_closed_by_the_handshake_timeout() {
    init_logging();
    let server = TestServer::hello(1, true);
    let mut tcp = connect_tcp(server.port()).unwrap();
    tcp.write_all(b"GE").unwrap();
    // A functional bound, far above the 2 s timeout.
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut raw = Vec::new();
    let closed = match tcp.read_to_end(&mut raw) {
        Ok(_) => true,
        Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
    };
    assert!(closed, "still open after 20 s");
    assert!(!raw.starts_with(b"HTTP/"), "{raw:?}");
    exchange(&server, client()).expect("TLS still served");
}

/// libcurl asked for `http://` on the TLS port sees the `400`.
#[test]
fn libcurl_plain_http_to_the_tls_port_gets_a_400() {
    use curl::easy::Easy;
    init_logging();
    let server = TestServer::hello(1, true);
    let mut easy = Easy::new();
    easy.url(&format!("http://127.0.0.1:{}/", server.port()))
        .unwrap();
    easy.timeout(Duration::from_secs(5)).unwrap();
    let mut body = Vec::new();
    {
        let mut transfer = easy.transfer();
        transfer
            .write_function(|data| {
                body.extend_from_slice(data);
                Ok(data.len())
            })
            .unwrap();
        transfer.perform().unwrap_or_else(|e| panic!("curl: {e}"));
    }
    assert_eq!(easy.response_code().unwrap(), 400);
    assert!(String::from_utf8_lossy(&body).contains("HTTPS port"));
}

// ---------------------------------------------------------------------------
// What the protocol hears of a TLS failure
// ---------------------------------------------------------------------------

/// A connection that fails the handshake closes with `CloseReason::Tls`
/// carrying OpenSSL's codes (library `ERR_LIB_SSL`, a reason), and text
/// only when displayed.
#[test]
fn a_failed_handshake_closes_with_the_codes() {
    use pistachio_transport::{CloseReason, Conn, Listener, Protocol, Server, ServerConfig};
    use std::sync::mpsc;

    struct Record(
        mpsc::Sender<String>,
        mpsc::Sender<(Option<i32>, Option<i32>)>,
    );
    impl Protocol for Record {
        type Message = ();
        fn on_input(&mut self, _: &mut Conn<'_, ()>, _: &[u8]) {}
        fn on_message(&mut self, _: &mut Conn<'_, ()>, _: ()) {}
        fn on_close(&mut self, reason: &CloseReason) {
            if let CloseReason::Tls(failure) = reason {
                let _ = self.1.send((failure.library(), failure.reason()));
            }
            let _ = self.0.send(reason.to_string());
        }
    }

    init_logging();
    let (text_tx, text_rx) = mpsc::channel();
    let (codes_tx, codes_rx) = mpsc::channel();
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    let port = listener.local_addr().port();
    let mut config = ServerConfig::default();
    config.threads = 1;
    config.tls = Some(pistachio_tests::server::server_tls_config());
    let text_tx = std::sync::Mutex::new(text_tx);
    let codes_tx = std::sync::Mutex::new(codes_tx);
    let mut server = Server::start(listener, config, move |_| {
        Record(
            text_tx.lock().unwrap().clone(),
            codes_tx.lock().unwrap().clone(),
        )
    })
    .unwrap();
    let mut tcp = connect_tcp(port).unwrap();
    // Not a TLS record and not an HTTP request: OpenSSL refuses it.
    tcp.write_all(b"hello, this is not TLS\r\n\r\n").unwrap();
    let _ = read_to_close(&mut tcp);
    let codes = codes_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("closed with CloseReason::Tls");
    assert_eq!(codes.0, Some(20), "ERR_LIB_SSL: {codes:?}");
    assert!(codes.1.is_some_and(|r| r > 0), "{codes:?}");
    let text = text_rx.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(
        text.contains("SSL_ERROR_SSL") && text.contains("error:"),
        "{text}"
    );
    server.shutdown();
}
