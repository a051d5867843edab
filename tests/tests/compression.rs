//! The compression battery (`pistachio_rest::compression`) with real
//! clients: reqwest and curl decoding each coding, raw requests checking
//! the headers, a long streamed answer in bounded memory, and request
//! bodies in gzip, br and zstd (a zip bomb is refused with `413`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use pistachio_rest::compression::Compression;
use pistachio_rest::header::{CONTENT_ENCODING, CONTENT_TYPE, ETAG};
use pistachio_rest::{
    Endpoint, HeaderValue, Options, RestRequest, RestResponse, Router, StatusCode,
};
use pistachio_tests::client::{Connection, PlainClient, RequestBuilder, Response};
use pistachio_tests::init_logging;

/// The streamed test measures this process's memory: the tests run one
/// at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A text body that compresses well.
fn text() -> String {
    (0..4000)
        .map(|i| format!("line {i} of the report\n"))
        .collect()
}

/// Signals the streamed route's producer that the client decoded its
/// first piece.
static FIRST_SEEN: Mutex<Option<mpsc::Receiver<()>>> = Mutex::new(None);

/// Size of the long streamed answer.
const STREAMED: usize = 32 << 20;

fn serve() -> Endpoint {
    init_logging();
    let mut router = Router::new();
    router.middleware(
        Compression::new()
            .min_size(256)
            .max_decoded_body(Some(1 << 20))
            .into_middleware(),
    );
    router
        .get("/text", |_req: RestRequest, mut resp: RestResponse| {
            resp.set_mime("text/plain; charset=utf-8");
            resp.headers_mut()
                .insert(ETAG, HeaderValue::from_static("\"v1\""));
            resp.send(StatusCode::OK, text());
        })
        .get("/small", |_req: RestRequest, resp: RestResponse| {
            resp.send(StatusCode::OK, "short")
        })
        .get("/png", |_req: RestRequest, mut resp: RestResponse| {
            resp.set_mime("image/png");
            resp.send(StatusCode::OK, text());
        })
        .get("/encoded", |_req: RestRequest, mut resp: RestResponse| {
            resp.headers_mut()
                .insert(CONTENT_ENCODING, HeaderValue::from_static("identity-ish"));
            resp.send(StatusCode::OK, text());
        })
        .get("/partial", |_req: RestRequest, mut resp: RestResponse| {
            resp.headers_mut().insert(
                "content-range",
                HeaderValue::from_static("bytes 0-87999/100000"),
            );
            resp.send(StatusCode::PARTIAL_CONTENT, text());
        })
        .get("/nothing", |_req: RestRequest, resp: RestResponse| {
            resp.send(StatusCode::NO_CONTENT, "")
        })
        .get(
            "/not-modified",
            |_req: RestRequest, mut resp: RestResponse| {
                // A stream: its length is unknown, so only the status says
                // that there is no body to encode.
                resp.headers_mut()
                    .insert(ETAG, HeaderValue::from_static("\"v1\""));
                resp.into_writer().stream(StatusCode::NOT_MODIFIED).end();
            },
        )
        .get("/stream", |_req: RestRequest, resp: RestResponse| {
            let mut stream = resp.into_writer().stream(StatusCode::OK);
            let seen = FIRST_SEEN.lock().unwrap().take();
            std::thread::spawn(move || {
                stream.send_chunk("first piece\n").unwrap();
                stream.flush();
                if let Some(seen) = seen {
                    // The client decodes the first piece before the rest is
                    // made: the encoder flushed it.
                    if seen.recv_timeout(Duration::from_secs(10)).is_err() {
                        return; // dropped: cut off, the test fails
                    }
                }
                let mut state = 1u64;
                let mut line = Vec::with_capacity(64 * 1024);
                let mut sent = 0;
                while sent < STREAMED {
                    line.clear();
                    while line.len() < 64 * 1024 {
                        state = state.wrapping_mul(6364136223846793005).wrapping_add(1);
                        writeln!(line, "{state:016x}").unwrap();
                    }
                    if stream.send_chunk(&line).is_err() {
                        return;
                    }
                    sent += line.len();
                }
                stream.end();
            });
        })
        .post("/echo", |req: RestRequest, resp: RestResponse| {
            let body = req.body().to_vec();
            resp.send(StatusCode::OK, body)
        });
    let mut endpoint = Endpoint::bind("127.0.0.1:0", Options::default().threads(1)).unwrap();
    endpoint.serve_threaded(router).unwrap();
    endpoint
}

fn get(port: u16, path: &str, accept: Option<&str>) -> Response {
    let mut client = PlainClient::connect(port).unwrap();
    let mut request = RequestBuilder::get(path);
    if let Some(accept) = accept {
        request = request.header("Accept-Encoding", accept);
    }
    client.write_raw(&request.to_bytes()).unwrap();
    client.read_response().unwrap()
}

fn decode(coding: &str, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match coding {
        "gzip" => flate2::read::GzDecoder::new(body)
            .read_to_end(&mut out)
            .unwrap(),
        "br" => brotli::Decompressor::new(body, 4096)
            .read_to_end(&mut out)
            .unwrap(),
        "zstd" => zstd::stream::read::Decoder::new(body)
            .unwrap()
            .read_to_end(&mut out)
            .unwrap(),
        other => panic!("unexpected coding {other}"),
    };
    out
}

#[test]
fn each_coding_is_chosen_by_accept_encoding_and_decodes() {
    let _serial = serial();
    let endpoint = serve();
    let port = endpoint.local_addr().port();
    for (accept, coding) in [
        ("gzip", "gzip"),
        ("br", "br"),
        ("zstd", "zstd"),
        ("gzip, br, zstd", "zstd"),
        ("gzip;q=1.0, br;q=0.9, zstd;q=0.1", "gzip"),
        ("*;q=0.5, zstd;q=0", "br"),
    ] {
        let response = get(port, "/text", Some(accept));
        assert_eq!(response.status, 200, "{accept}");
        assert_eq!(
            response.header("content-encoding"),
            Some(coding),
            "{accept}"
        );
        assert_eq!(response.header("vary"), Some("Accept-Encoding"), "{accept}");
        assert_eq!(response.header("etag"), Some("W/\"v1\""), "{accept}");
        let length: usize = response.header("content-length").unwrap().parse().unwrap();
        assert_eq!(length, response.body.len());
        assert!(length < text().len() / 4, "{accept}: {length} bytes");
        assert_eq!(
            decode(coding, &response.body),
            text().as_bytes(),
            "{accept}"
        );
    }
    // No Accept-Encoding, identity only, or refusing everything: as is.
    for accept in [None, Some("identity"), Some("identity;q=0, *;q=0")] {
        let response = get(port, "/text", accept);
        assert_eq!(response.header("content-encoding"), None, "{accept:?}");
        assert_eq!(response.header("vary"), Some("Accept-Encoding"));
        assert_eq!(response.header("etag"), Some("\"v1\""));
        assert_eq!(response.body, text().as_bytes());
    }
}

#[test]
fn reqwest_decodes_each_coding() {
    let _serial = serial();
    let endpoint = serve();
    let url = format!("http://127.0.0.1:{}/text", endpoint.local_addr().port());
    for coding in ["gzip", "br", "zstd"] {
        let client = reqwest::blocking::Client::builder()
            .gzip(coding == "gzip")
            .brotli(coding == "br")
            .zstd(coding == "zstd")
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        // reqwest asks for its codings and removes `Content-Encoding`
        // once it decoded: look at the raw length too.
        let response = client.get(&url).send().unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("content-encoding").is_none());
        assert_eq!(response.text().unwrap(), text(), "{coding}");
        let raw = get(endpoint.local_addr().port(), "/text", Some(coding));
        assert_eq!(raw.header("content-encoding"), Some(coding));
    }
}

#[test]
fn curl_compressed_gets_a_decodable_answer() {
    let _serial = serial();
    let endpoint = serve();
    let url = format!("http://127.0.0.1:{}/text", endpoint.local_addr().port());
    let out = Command::new("curl")
        .args(["-s", "--compressed", "-D", "-", "--max-time", "10", &url])
        .output()
        .expect("curl runs");
    assert!(out.status.success(), "{out:?}");
    let text_out = String::from_utf8_lossy(&out.stdout);
    let (head, body) = text_out.split_once("\r\n\r\n").expect("head and body");
    assert!(
        head.to_ascii_lowercase().contains("content-encoding: "),
        "{head}"
    );
    assert_eq!(body, text());
}

#[test]
fn answers_that_must_not_be_encoded_are_sent_as_they_are() {
    let _serial = serial();
    let endpoint = serve();
    let port = endpoint.local_addr().port();
    let small = get(port, "/small", Some("gzip"));
    assert_eq!(small.header("content-encoding"), None);
    assert_eq!(small.text(), "short");

    let png = get(port, "/png", Some("gzip"));
    assert_eq!(png.header("content-encoding"), None);
    assert_eq!(png.body, text().as_bytes());

    let encoded = get(port, "/encoded", Some("gzip"));
    assert_eq!(encoded.header("content-encoding"), Some("identity-ish"));
    assert_eq!(encoded.body, text().as_bytes());

    let partial = get(port, "/partial", Some("gzip"));
    assert_eq!(partial.status, 206);
    assert_eq!(partial.header("content-encoding"), None);
    assert_eq!(partial.body, text().as_bytes());

    let nothing = get(port, "/nothing", Some("gzip"));
    assert_eq!(nothing.status, 204);
    assert_eq!(nothing.header("content-encoding"), None);
    assert!(nothing.body.is_empty());

    let not_modified = get(port, "/not-modified", Some("gzip"));
    assert_eq!(not_modified.status, 304);
    assert_eq!(not_modified.header("content-encoding"), None);
    assert_eq!(not_modified.header("etag"), Some("\"v1\""));
    assert!(not_modified.body.is_empty());
}

#[test]
fn a_head_answer_has_the_head_of_the_get_answer() {
    let _serial = serial();
    let endpoint = serve();
    let port = endpoint.local_addr().port();
    let got = get(port, "/text", Some("br"));
    let mut client = PlainClient::connect(port).unwrap();
    let head = RequestBuilder::new("HEAD", "/text").header("Accept-Encoding", "br");
    client.write_raw(&head.to_bytes()).unwrap();
    let headed = client.read_head_response().unwrap();
    assert_eq!(headed.status, 200);
    assert!(headed.body.is_empty());
    for field in ["content-encoding", "content-length", "vary", "etag"] {
        assert_eq!(headed.header(field), got.header(field), "{field}");
    }
    // The connection is still in step: a GET after it is answered.
    let mut next = RequestBuilder::get("/small").to_bytes();
    client.write_raw(&std::mem::take(&mut next)).unwrap();
    assert_eq!(client.read_response().unwrap().text(), "short");
}

#[test]
fn garbage_accept_encoding_is_never_an_error() {
    let _serial = serial();
    let endpoint = serve();
    let port = endpoint.local_addr().port();
    for accept in [
        "gzip;q=2",
        "gzip;q=-0.5",
        "br;q=0.0001",
        "zstd;q=abc",
        ";;;,,,===",
        "gzip;q",
        "gzip;q=0.5;q=junk",
        "x-unknown, gzip;q=1.5",
    ] {
        let response = get(port, "/text", Some(accept));
        assert_eq!(response.status, 200, "{accept:?}");
        assert_eq!(response.header("content-encoding"), None, "{accept:?}");
        assert_eq!(response.body, text().as_bytes(), "{accept:?}");
    }
}

/// A producer streams 32 MiB, encoded with zstd as it goes; the client
/// decodes the first piece before the rest is produced (each handed-over
/// piece is flushed) and the server's memory stays bounded.
#[test]
fn a_long_streamed_answer_is_encoded_in_bounded_memory() {
    let _serial = serial();
    let endpoint = serve();
    let (tell, seen) = mpsc::channel();
    *FIRST_SEEN.lock().unwrap() = Some(seen);
    let mut client = PlainClient::connect(endpoint.local_addr().port()).unwrap();
    client
        .get_mut()
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let request = RequestBuilder::get("/stream")
        .header("Accept-Encoding", "zstd")
        .close();
    client.write_raw(&request.to_bytes()).unwrap();
    let head = client.read_head().unwrap();
    assert_eq!(head.header("content-encoding"), Some("zstd"));
    assert_eq!(head.header("transfer-encoding"), Some("chunked"));
    let before = pistachio_tests::rss_kib();
    let mut decoder = zstd::stream::read::Decoder::new(Dechunk::new(client)).unwrap();
    let mut first = [0u8; 12];
    decoder.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"first piece\n");
    tell.send(()).unwrap();
    let mut buf = vec![0u8; 256 * 1024];
    let (mut total, mut peak) = (0usize, before);
    loop {
        let n = decoder.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n;
        peak = peak.max(pistachio_tests::rss_kib());
    }
    assert!(total >= STREAMED, "decoded {total} bytes");
    let grew = peak.saturating_sub(before);
    assert!(grew < 12 * 1024, "RSS grew by {grew} KiB while streaming");
}

/// Reads the chunked body that follows a head already read.
struct Dechunk<R> {
    from: R,
    left: usize,
    done: bool,
}

impl Dechunk<BufReader<std::io::Chain<std::io::Cursor<Vec<u8>>, TcpStream>>> {
    fn new(client: Connection<TcpStream>) -> Self {
        let buffered = client.buffered().to_vec();
        let tcp = client.into_inner();
        Dechunk {
            from: BufReader::new(std::io::Cursor::new(buffered).chain(tcp)),
            left: 0,
            done: false,
        }
    }
}

impl<R: BufRead> Read for Dechunk<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.done {
            return Ok(0);
        }
        if self.left == 0 {
            let mut line = String::new();
            self.from.read_line(&mut line)?;
            self.left = usize::from_str_radix(line.trim(), 16).expect("chunk size");
            if self.left == 0 {
                self.done = true;
                return Ok(0);
            }
        }
        let n = buf.len().min(self.left);
        let n = self.from.read(&mut buf[..n])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.left -= n;
        if self.left == 0 {
            let mut crlf = [0u8; 2];
            self.from.read_exact(&mut crlf)?;
        }
        Ok(n)
    }
}

fn post(port: u16, encoding: &str, body: &[u8]) -> Response {
    let mut client = PlainClient::connect(port).unwrap();
    let request = RequestBuilder::new("POST", "/echo")
        .header("Content-Encoding", encoding)
        .header(CONTENT_TYPE.as_str(), "text/plain")
        .body(body);
    client.write_raw(&request.to_bytes()).unwrap();
    client.read_response().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[test]
fn request_bodies_are_decoded_and_bombs_refused() {
    let _serial = serial();
    let endpoint = serve();
    let port = endpoint.local_addr().port();
    let plain = text();
    let br = {
        let mut w = brotli::CompressorWriter::new(Vec::new(), 4096, 5, 20);
        w.write_all(plain.as_bytes()).unwrap();
        w.into_inner()
    };
    let zst = zstd::encode_all(plain.as_bytes(), 3).unwrap();
    for (coding, body) in [("gzip", gzip(plain.as_bytes())), ("br", br), ("zstd", zst)] {
        let response = post(port, coding, &body);
        assert_eq!(response.status, 200, "{coding}: {}", response.text());
        assert_eq!(response.body, plain.as_bytes(), "{coding}");
    }
    // 64 MiB of zeros in 64 KiB: refused once 1 MiB is decoded.
    let bomb = {
        let zeros = vec![0u8; 64 * 1024];
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        for _ in 0..1024 {
            encoder.write_all(&zeros).unwrap();
        }
        encoder.finish().unwrap()
    };
    assert!(bomb.len() < 128 * 1024);
    let response = post(port, "gzip", &bomb);
    assert_eq!(response.status, 413, "{}", response.text());
    // Codings the server does not speak, and bodies that do not decode.
    let response = post(port, "compress", b"whatever");
    assert_eq!(response.status, 415);
    let response = post(port, "gzip", b"not gzip at all");
    assert_eq!(response.status, 400, "{}", response.text());
}

/// Without a router: a plain handler asks the battery for the encoding
/// and the decoded body itself.
#[test]
fn a_plain_handler_uses_the_battery_directly() {
    let _serial = serial();
    init_logging();
    let compression = Compression::new().min_size(16);
    let mut endpoint = Endpoint::bind("127.0.0.1:0", Options::default().threads(1)).unwrap();
    endpoint
        .serve_threaded(
            move |mut req: pistachio_rest::Request, mut resp: pistachio_rest::ResponseWriter| {
                if let Err(e) = compression.decode_body(&mut req) {
                    return resp.send(e.status(), e.reason());
                }
                resp.set_encoding(compression.encoding_for(&req));
                let body = req.body().repeat(4);
                resp.send(StatusCode::OK, body);
            },
        )
        .unwrap();
    let port = endpoint.local_addr().port();
    let mut client = PlainClient::connect(port).unwrap();
    let request = RequestBuilder::new("POST", "/")
        .header("Content-Encoding", "gzip")
        .header("Accept-Encoding", "gzip")
        .body(&gzip(b"plain handler "));
    client.write_raw(&request.to_bytes()).unwrap();
    let response = client.read_response().unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-encoding"), Some("gzip"));
    assert_eq!(decode("gzip", &response.body), b"plain handler ".repeat(4));
}
