//! HTTP and HTTPS over a Unix domain socket listener.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use pistachio_rest::http::{Endpoint, Options, Request, ResponseWriter, StatusCode};
use pistachio_tests::client::{Connection, ReadTimeout, RequestBuilder};
use pistachio_tests::init_logging;

fn socket_path(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("pistachio-{name}-{}.sock", std::process::id()))
}

fn hello(req: Request, resp: ResponseWriter) {
    resp.send(
        StatusCode::OK,
        format!("hello {} from {}", req.path(), req.peer_addr()),
    );
}

/// Sends `GET {path}` with `Connection: close` over `stream` and checks the
/// answer: `200`, `hello {path} from 0.0.0.0:0`, then the server's close
/// with nothing after the body.
fn get_and_check<S: Read + Write + ReadTimeout>(stream: S, path: &str) {
    let mut conn = Connection::new(stream);
    conn.write_raw(&RequestBuilder::get(path).close().to_bytes())
        .unwrap();
    let resp = conn.read_response().unwrap();
    assert!(resp.head.starts_with("HTTP/1.1 200 OK\r\n"), "{resp:?}");
    assert_eq!(
        resp.text(),
        format!("hello {path} from 0.0.0.0:0"),
        "{resp:?}"
    );
    conn.assert_closed(path);
}

#[test]
fn plain_http_over_a_unix_socket_and_the_file_is_cleaned_up() {
    init_logging();
    let path = socket_path("plain");
    // A stale file from a dead server is replaced.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let mut endpoint = Endpoint::bind_unix(&path, Options::default().threads(2)).unwrap();
    endpoint.serve_threaded(hello).unwrap();
    // A second server on the same live path is refused.
    let busy = Endpoint::bind_unix(&path, Options::default()).unwrap_err();
    assert_eq!(busy.kind(), std::io::ErrorKind::AddrInUse, "{busy}");

    for i in 0..4 {
        let c = UnixStream::connect(&path).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        get_and_check(c, &format!("/u{i}"));
    }
    // libcurl through the socket file (curl --unix-socket).
    let mut easy = curl::easy::Easy::new();
    easy.unix_socket(path.to_str().unwrap()).unwrap();
    easy.url("http://localhost/curl").unwrap();
    let body = pistachio_tests::libcurl::perform(&mut easy).unwrap();
    assert_eq!(easy.response_code().unwrap(), 200);
    assert_eq!(body, b"hello /curl from 0.0.0.0:0");

    endpoint.shutdown();
    assert!(!path.exists(), "socket file left behind");
}

#[test]
fn https_over_a_unix_socket() {
    init_logging();
    let path = socket_path("tls");
    let options = Options::default()
        .threads(1)
        .tls(pistachio_tests::server::server_tls_config());
    let mut endpoint = Endpoint::bind_unix(&path, options).unwrap();
    endpoint.serve_threaded(hello).unwrap();
    let connector = pistachio_tests::client::tls_connector().unwrap();
    let stream = UnixStream::connect(&path).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let tls = connector.connect("localhost", stream).unwrap();
    get_and_check(tls, "/secure");
    let report = endpoint.shutdown_graceful(Duration::from_secs(2));
    assert_eq!(report.connections_cut, 0);
    assert!(!path.exists());
}
