//! [`Compression`]: answers in gzip, brotli or zstd as the client accepts
//! them, and request bodies in those codings decoded (cargo feature
//! `compression`).
//!
//! A router middleware ([`Compression::into_middleware`]) that, for every
//! request:
//!
//! 1. decodes a buffered request body sent with `Content-Encoding: gzip`,
//!    `br` or `zstd` (`415 Unsupported Media Type` for any other coding,
//!    `413 Payload Too Large` once the *decoded* body would exceed
//!    [`Compression::max_decoded_body`], `400` for a body that does not
//!    decode), so that handlers see plain bytes;
//! 2. negotiates `Accept-Encoding` (q-values, `*`, `identity`) among the
//!    codings enabled, preferring zstd, then br, then gzip on a tie;
//! 3. puts an [`Encoding`] on the answer's writer, which, once the final
//!    status and header fields are known, encodes the body unless it is
//!    small ([`Compression::min_size`]), already encoded (a
//!    `Content-Encoding`), of a type that does not shrink (images, audio,
//!    video, archives, fonts), a `206`, `204`, `304` or any other status
//!    without a body, or marked `Cache-Control: no-transform`. An encoded
//!    answer gets `Content-Encoding`, a strong `ETag` made weak, and
//!    `Vary: Accept-Encoding` (which every answer of a compressible type
//!    gets, encoded or not).
//!
//! Whole answers are sent with their encoded `Content-Length` (also for
//! `HEAD`); streamed answers are encoded as they go, each piece flushed so
//! that the client can decode it at once, in bounded memory. Files sent
//! with `serve_file` are not encoded.
//!
//! # Example
//!
//! ```
//! use pistachio_rest::compression::Compression;
//! use pistachio_rest::{RestRequest, RestResponse, Router, StatusCode};
//!
//! let mut router = Router::new();
//! router.middleware(Compression::new().min_size(512).into_middleware());
//! router.get("/report", |_req: RestRequest, resp: RestResponse| {
//!     resp.send(StatusCode::OK, "a long report ".repeat(1000));
//! });
//! ```

use std::io::{self, Read, Write};
use std::sync::Arc;

use flate2::write::GzEncoder;
use pistachio_http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
    ETAG, VARY,
};
use pistachio_http::{BodyEncoder, Encoding, HeaderMap, HeaderValue, Request, StatusCode};

use crate::request::RestRequest;
use crate::response::{HttpError, RestResponse};
use crate::router::Flow;

/// A content coding this module speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Coding {
    /// `zstd` (RFC 8878).
    Zstd,
    /// `br`, brotli (RFC 7932).
    Brotli,
    /// `gzip` (RFC 1952; `x-gzip` is read as `gzip`).
    Gzip,
}

impl Coding {
    /// Server preference on equal q-values: first is best.
    const PREFERENCE: [Coding; 3] = [Coding::Zstd, Coding::Brotli, Coding::Gzip];

    /// The token in `Content-Encoding` and `Accept-Encoding`.
    pub fn token(self) -> &'static str {
        match self {
            Coding::Zstd => "zstd",
            Coding::Brotli => "br",
            Coding::Gzip => "gzip",
        }
    }

    fn of_token(token: &str) -> Option<Coding> {
        if token.eq_ignore_ascii_case("gzip") || token.eq_ignore_ascii_case("x-gzip") {
            Some(Coding::Gzip)
        } else if token.eq_ignore_ascii_case("br") {
            Some(Coding::Brotli)
        } else if token.eq_ignore_ascii_case("zstd") {
            Some(Coding::Zstd)
        } else {
            None
        }
    }
}

/// The compression battery: see the [module documentation](self).
#[derive(Debug, Clone)]
pub struct Compression {
    min_size: usize,
    codings: Vec<Coding>,
    gzip_level: u32,
    brotli_quality: u32,
    zstd_level: i32,
    max_decoded_body: Option<usize>,
}

impl Default for Compression {
    fn default() -> Self {
        Compression::new()
    }
}

impl Compression {
    /// zstd, br and gzip at fast levels, answers from 1 KiB on, request
    /// bodies decoded up to 8 MiB.
    pub fn new() -> Compression {
        Compression {
            min_size: 1024,
            codings: Coding::PREFERENCE.to_vec(),
            gzip_level: 6,
            brotli_quality: 4,
            zstd_level: 3,
            max_decoded_body: Some(8 * 1024 * 1024),
        }
    }

    /// Whole answers shorter than `bytes` are sent as they are (a
    /// streamed answer's length is unknown: it is always encoded).
    #[must_use]
    pub fn min_size(mut self, bytes: usize) -> Compression {
        self.min_size = bytes;
        self
    }

    /// The codings offered, in the server's order of preference (used on
    /// equal q-values); empty: answers are never encoded.
    #[must_use]
    pub fn codings(mut self, codings: &[Coding]) -> Compression {
        self.codings = codings.to_vec();
        self
    }

    /// gzip's level, 0 to 9 (default 6).
    #[must_use]
    pub fn gzip_level(mut self, level: u32) -> Compression {
        self.gzip_level = level.min(9);
        self
    }

    /// brotli's quality, 0 to 11 (default 4: fast enough for dynamic
    /// answers).
    #[must_use]
    pub fn brotli_quality(mut self, quality: u32) -> Compression {
        self.brotli_quality = quality.min(11);
        self
    }

    /// zstd's level, 1 to 19 (default 3).
    #[must_use]
    pub fn zstd_level(mut self, level: i32) -> Compression {
        self.zstd_level = level.clamp(1, 19);
        self
    }

    /// Request bodies with a `Content-Encoding` are decoded up to `bytes`
    /// of decoded body (`413` beyond); `None`: they are left as they are
    /// (and no `415` either).
    #[must_use]
    pub fn max_decoded_body(mut self, bytes: Option<usize>) -> Compression {
        self.max_decoded_body = bytes;
        self
    }

    /// The battery as a router middleware
    /// ([`Router::middleware`](crate::Router::middleware)).
    pub fn into_middleware(
        self,
    ) -> impl Fn(&mut RestRequest, RestResponse) -> Flow + Send + Sync + 'static {
        let this = Arc::new(self);
        move |req: &mut RestRequest, resp: RestResponse| this.handle(req, resp)
    }

    /// Decodes the request body and sets the answer's encoding (what the
    /// middleware of [`Compression::into_middleware`] does).
    pub fn handle(&self, req: &mut RestRequest, mut resp: RestResponse) -> Flow {
        if let Err(error) = self.decode_body(req.http_mut()) {
            return Flow::Reject(error);
        }
        resp.writer_mut().set_encoding(self.encoding_for(req));
        Flow::Continue(resp)
    }

    /// The answer's [`Encoding`] for `request` (negotiated from its
    /// `Accept-Encoding`), for a handler without a router:
    /// `writer.set_encoding(compression.encoding_for(&request))`.
    pub fn encoding_for(&self, request: &Request) -> impl Encoding {
        let coding = negotiate(
            request
                .headers()
                .get_all(ACCEPT_ENCODING)
                .iter()
                .filter_map(|v| v.to_str().ok()),
            &self.codings,
        );
        Negotiated {
            coding,
            settings: self.clone(),
        }
    }

    /// Decodes `request`'s buffered body as its `Content-Encoding` says
    /// (see [`Compression::max_decoded_body`]); the error is the answer to
    /// give (`413`, `415` or `400`). Does nothing when decoding is off.
    pub fn decode_body(&self, request: &mut Request) -> Result<(), HttpError> {
        match self.max_decoded_body {
            Some(limit) => decode_request(request, limit),
            None => Ok(()),
        }
    }

    fn encoder(&self, coding: Coding) -> io::Result<Box<dyn BodyEncoder>> {
        Ok(match coding {
            Coding::Gzip => Box::new(Streaming(Some(GzEncoder::new(
                Vec::new(),
                flate2::Compression::new(self.gzip_level),
            )))),
            // A 1 MiB window (lgwin 20): bounded memory per answer.
            Coding::Brotli => Box::new(Streaming(Some(brotli::CompressorWriter::new(
                Vec::new(),
                4096,
                self.brotli_quality,
                20,
            )))),
            Coding::Zstd => Box::new(Streaming(Some(zstd::stream::write::Encoder::new(
                Vec::new(),
                self.zstd_level,
            )?))),
        })
    }
}

/// The coding to answer in for these `Accept-Encoding` values, among
/// `offered` (in the server's order of preference); `None`: identity.
///
/// Entries that do not parse (a bad q-value, garbage) are ignored; `*`
/// stands for every coding not named; a q-value of 0 refuses. No
/// `Accept-Encoding` at all means no coding.
pub fn negotiate<'a>(values: impl Iterator<Item = &'a str>, offered: &[Coding]) -> Option<Coding> {
    let mut named: Vec<(Coding, u16)> = Vec::new();
    let mut star: Option<u16> = None;
    for entry in values.flat_map(|v| v.split(',')) {
        let mut parts = entry.split(';');
        let token = parts.next().unwrap_or("").trim();
        if token.is_empty() {
            continue;
        }
        let mut q = Some(1000);
        for param in parts {
            let Some((name, value)) = param.split_once('=') else {
                q = None;
                break;
            };
            if name.trim().eq_ignore_ascii_case("q") {
                q = crate::problem::parse_q(value.trim());
            }
        }
        let Some(q) = q else {
            continue;
        };
        if token == "*" {
            star = Some(q);
        } else if let Some(coding) = Coding::of_token(token) {
            if !named.iter().any(|(c, _)| *c == coding) {
                named.push((coding, q));
            }
        }
    }
    let mut best: Option<(Coding, u16)> = None;
    for &coding in offered {
        let q = named
            .iter()
            .find(|(c, _)| *c == coding)
            .map(|(_, q)| *q)
            .or(star)
            .unwrap_or(0);
        if q > 0 && best.map_or(true, |(_, b)| q > b) {
            best = Some((coding, q));
        }
    }
    best.map(|(coding, _)| coding)
}

/// Content types that do not shrink (already compressed).
fn incompressible(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "image/svg+xml" {
        return false;
    }
    let (kind, sub) = essence.split_once('/').unwrap_or((&essence, ""));
    matches!(kind, "image" | "audio" | "video" | "font")
        || matches!(
            sub,
            "zip"
                | "gzip"
                | "x-gzip"
                | "zstd"
                | "x-bzip2"
                | "x-xz"
                | "x-7z-compressed"
                | "x-rar-compressed"
                | "vnd.rar"
                | "x-compress"
                | "x-brotli"
                | "pdf"
                | "octet-stream+zip"
                | "wasm+gzip"
        )
        || sub.ends_with("+zip")
        || sub.ends_with("+gzip")
        || sub.starts_with("font-")
        || sub.starts_with("x-font")
}

/// What one request accepts, waiting for the answer's head.
struct Negotiated {
    coding: Option<Coding>,
    settings: Compression,
}

impl Encoding for Negotiated {
    fn start(
        self: Box<Self>,
        status: StatusCode,
        headers: &mut HeaderMap,
        length: Option<usize>,
    ) -> Option<Box<dyn BodyEncoder>> {
        let no_body = status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED;
        if status == StatusCode::PARTIAL_CONTENT
            || headers.contains_key(CONTENT_RANGE)
            || headers.contains_key(CONTENT_ENCODING)
            || no_transform(headers)
        {
            return None;
        }
        if headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(incompressible)
        {
            return None;
        }
        if !self.settings.codings.is_empty() {
            add_vary(headers);
        }
        if no_body || length.is_some_and(|n| n < self.settings.min_size) {
            return None;
        }
        let coding = self.coding?;
        let encoder = match self.settings.encoder(coding) {
            Ok(encoder) => encoder,
            Err(e) => {
                log::warn!("starting a {} encoder failed: {e}", coding.token());
                return None;
            }
        };
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static(coding.token()));
        headers.remove(CONTENT_LENGTH);
        weaken_etag(headers);
        Some(encoder)
    }
}

fn no_transform(headers: &HeaderMap) -> bool {
    headers.get_all(CACHE_CONTROL).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',')
                .any(|d| d.trim().eq_ignore_ascii_case("no-transform"))
        })
    })
}

/// Adds `Accept-Encoding` to `Vary` unless it (or `*`) is there.
fn add_vary(headers: &mut HeaderMap) {
    let present = headers.get_all(VARY).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            v.split(',').any(|f| {
                let f = f.trim();
                f == "*" || f.eq_ignore_ascii_case("accept-encoding")
            })
        })
    });
    if !present {
        headers.append(VARY, HeaderValue::from_static("Accept-Encoding"));
    }
}

/// A strong `ETag` names the unencoded bytes: the encoded ones get it
/// weak (`W/"…"`), as they are equivalent, not identical.
fn weaken_etag(headers: &mut HeaderMap) {
    let Some(tag) = headers.get(ETAG) else {
        return;
    };
    if tag.as_bytes().starts_with(b"W/") {
        return;
    }
    let mut weak = b"W/".to_vec();
    weak.extend_from_slice(tag.as_bytes());
    if let Ok(weak) = HeaderValue::from_bytes(&weak) {
        headers.insert(ETAG, weak);
    }
}

/// Moves what a `Vec`-backed encoder wrote so far into `out`.
fn drain(buf: &mut Vec<u8>, out: &mut Vec<u8>) {
    if out.is_empty() {
        std::mem::swap(buf, out);
    } else {
        out.append(buf);
    }
}

fn finished() -> io::Error {
    io::Error::other("the encoder is finished")
}

/// A compressor that writes into a `Vec`: what [`Streaming`] needs of
/// each coding's encoder.
trait Compressor: Write + Send {
    /// What it has written so far.
    fn buffer(&mut self) -> &mut Vec<u8>;
    /// Ends the stream; the rest of the output.
    fn end(self) -> io::Result<Vec<u8>>;
}

impl Compressor for GzEncoder<Vec<u8>> {
    fn buffer(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
    fn end(self) -> io::Result<Vec<u8>> {
        self.finish()
    }
}

impl Compressor for brotli::CompressorWriter<Vec<u8>> {
    fn buffer(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
    fn end(self) -> io::Result<Vec<u8>> {
        Ok(self.into_inner())
    }
}

impl Compressor for zstd::stream::write::Encoder<'static, Vec<u8>> {
    fn buffer(&mut self) -> &mut Vec<u8> {
        self.get_mut()
    }
    fn end(self) -> io::Result<Vec<u8>> {
        self.finish()
    }
}

/// A body encoded piece by piece by a [`Compressor`]; `None` once ended.
struct Streaming<C>(Option<C>);

impl<C: Compressor> BodyEncoder for Streaming<C> {
    fn encode(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
        let encoder = self.0.as_mut().ok_or_else(finished)?;
        encoder.write_all(data)?;
        drain(encoder.buffer(), out);
        Ok(())
    }
    fn flush(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let encoder = self.0.as_mut().ok_or_else(finished)?;
        encoder.flush()?;
        drain(encoder.buffer(), out);
        Ok(())
    }
    fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        let mut rest = self.0.take().ok_or_else(finished)?.end()?;
        drain(&mut rest, out);
        Ok(())
    }
}

/// Decodes `req`'s buffered body as its `Content-Encoding` says, up to
/// `limit` decoded bytes.
fn decode_request(request: &mut Request, limit: usize) -> Result<(), HttpError> {
    let Some(value) = request.headers().get(CONTENT_ENCODING) else {
        return Ok(());
    };
    let Ok(value) = value.to_str() else {
        return Err(unsupported());
    };
    let mut codings = Vec::new();
    for token in value.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if token.eq_ignore_ascii_case("identity") {
            continue;
        }
        codings.push(Coding::of_token(token).ok_or_else(unsupported)?);
    }
    let mut bytes = request.set_body(Vec::new());
    // Applied in the order listed: decoded in the reverse order.
    for coding in codings.iter().rev() {
        bytes = decode(*coding, &bytes, limit)?;
    }
    let headers = request.headers_mut();
    headers.remove(CONTENT_ENCODING);
    headers.insert(CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    request.set_body(bytes);
    Ok(())
}

fn unsupported() -> HttpError {
    HttpError::unsupported_media_type("unsupported Content-Encoding (gzip, br or zstd)")
}

/// `data` decoded from `coding`, at most `limit` bytes of it.
fn decode(coding: Coding, data: &[u8], limit: usize) -> Result<Vec<u8>, HttpError> {
    let reader: Box<dyn Read + '_> = match coding {
        Coding::Gzip => Box::new(flate2::read::MultiGzDecoder::new(data)),
        Coding::Brotli => Box::new(brotli::Decompressor::new(data, 4096)),
        Coding::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::new(data)
                .map_err(|_| HttpError::internal("zstd decoder"))?;
            // At most an 8 MiB window (the format allows 2 GiB).
            decoder
                .window_log_max(23)
                .map_err(|_| HttpError::internal("zstd decoder"))?;
            Box::new(decoder)
        }
    };
    let mut out = Vec::new();
    let read = reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| {
            HttpError::bad_request(format!(
                "request body does not decode as {}: {e}",
                coding.token()
            ))
        })?;
    if read > limit {
        return Err(HttpError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("decoded request body exceeds {limit} bytes"),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Coding; 3] = Coding::PREFERENCE;

    fn pick(accept: &str) -> Option<Coding> {
        negotiate(std::iter::once(accept), &ALL)
    }

    #[test]
    fn accept_encoding_is_negotiated_with_q_values() {
        assert_eq!(pick("gzip"), Some(Coding::Gzip));
        assert_eq!(pick("gzip, br"), Some(Coding::Brotli));
        assert_eq!(pick("gzip, br, zstd"), Some(Coding::Zstd));
        assert_eq!(pick("gzip;q=1, br;q=0.5"), Some(Coding::Gzip));
        assert_eq!(pick("br;q=0, gzip;q=0.1"), Some(Coding::Gzip));
        assert_eq!(pick("*"), Some(Coding::Zstd));
        assert_eq!(pick("*;q=0.5, zstd;q=0, br;q=0"), Some(Coding::Gzip));
        assert_eq!(pick("identity"), None);
        assert_eq!(pick("identity;q=0"), None);
        assert_eq!(pick(""), None);
        assert_eq!(pick("x-gzip"), Some(Coding::Gzip));
        assert_eq!(pick("GZIP;Q=0.5"), Some(Coding::Gzip));
    }

    #[test]
    fn bad_q_values_and_garbage_are_ignored() {
        assert_eq!(pick("gzip;q=2"), None);
        assert_eq!(pick("gzip;q=-1"), None);
        assert_eq!(pick("gzip;q=0.1234"), None);
        assert_eq!(pick("gzip;q=abc, br;q=0.2"), Some(Coding::Brotli));
        assert_eq!(pick("gzip;q"), None);
        assert_eq!(pick(",,;;==,\u{7f}"), None);
        assert_eq!(pick("gzip;q=1.001"), None);
        assert_eq!(pick("gzip;q=1.000"), Some(Coding::Gzip));
        assert_eq!(crate::problem::parse_q("0.5"), Some(500));
        assert_eq!(crate::problem::parse_q("1."), Some(1000));
    }

    #[test]
    fn compressed_types_are_skipped() {
        assert!(incompressible("image/png"));
        assert!(incompressible("video/mp4"));
        assert!(incompressible("application/zip"));
        assert!(incompressible("application/gzip"));
        assert!(!incompressible("image/svg+xml"));
        assert!(!incompressible("text/html; charset=utf-8"));
        assert!(!incompressible("application/json"));
    }

    #[test]
    fn every_coding_round_trips() {
        let body = "hello, compressed world ".repeat(500);
        for coding in ALL {
            let mut encoder = Compression::new().encoder(coding).unwrap();
            let mut out = Vec::new();
            encoder.encode(body.as_bytes(), &mut out).unwrap();
            encoder.flush(&mut out).unwrap();
            encoder.finish(&mut out).unwrap();
            assert!(out.len() < body.len() / 4, "{coding:?}");
            assert_eq!(decode(coding, &out, body.len()).unwrap(), body.as_bytes());
            let over = decode(coding, &out, body.len() - 1).unwrap_err();
            assert_eq!(over.status(), StatusCode::PAYLOAD_TOO_LARGE);
        }
    }
}
