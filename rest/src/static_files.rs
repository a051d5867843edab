//! [`ServeDir`]: files of a directory, served safely, with validators,
//! conditional requests and byte ranges (cargo feature `static-files`).
//!
//! # What a request may name
//!
//! The request path below the mount prefix is split on `/` and each
//! segment percent-decoded on its own. A request is refused with `400 Bad
//! Request` if a segment is `..` (raw or encoded, `%2e%2e`), or decodes to
//! a `/`, a `\`, a NUL byte or invalid UTF-8: no segment can reach outside
//! the one directory it is looked up in. Empty and `.` segments are
//! skipped.
//!
//! A symbolic link on the way (a directory or the file itself) answers
//! `404`, unless [`ServeDir::follow_symlinks`] is on; then the file's
//! canonical path (every link resolved, [`std::fs::canonicalize`]) must
//! still lie under the canonical root, or the answer is `404`. Either way
//! the file actually opened is checked again after opening (its device
//! and inode against the path's), so a link swapped in between the checks
//! and the open is noticed.
//!
//! # What is answered
//!
//! `GET` and `HEAD` only (other methods are not served here). A directory
//! is answered with its `index.html` ([`ServeDir::index_file`]); a
//! directory asked for without its trailing `/` is redirected (`301`) to
//! the path with it, so that relative links in the index resolve.
//!
//! Answers carry `Content-Type` (from the extension, `mime_guess`),
//! `Last-Modified`, a strong `ETag` (size and modification time) and
//! `Accept-Ranges: bytes`; the preconditions are evaluated in the order of
//! RFC 9110 §13.2.2: `If-Match` / `If-Unmodified-Since` → `412`,
//! `If-None-Match` / `If-Modified-Since` → `304` (no body), then a single
//! `Range` → `206` with `Content-Range` (unless `If-Range` names another
//! version), an unsatisfiable one → `416` with `Content-Range: bytes
//! */LEN`. A malformed `Range`, several ranges, or a date that does not
//! parse are ignored: the whole file with `200`.
//!
//! The body goes out by [`ResponseWriter::send_file`]: `sendfile(2)` on
//! plaintext connections, bounded reads encrypted piecewise over TLS.

use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use headers::{
    ETag, HeaderMapExt, IfMatch, IfModifiedSince, IfNoneMatch, IfRange, IfUnmodifiedSince,
    LastModified,
};
use http_range_header::RangeUnsatisfiableError;
use percent_encoding::percent_decode_str;
use pistachio_http::header::{
    HeaderValue, ACCEPT_RANGES, ALLOW, CONTENT_RANGE, CONTENT_TYPE, ETAG, LAST_MODIFIED, LOCATION,
    RANGE,
};
use pistachio_http::{Handler, HeaderMap, Method, Request, ResponseWriter, StatusCode};

use crate::request::RestRequest;
use crate::response::RestResponse;
use crate::router::{Flow, Router};

/// Serves the files under one directory (tower-http's `ServeDir`): safe
/// path resolution, `index.html`, `Content-Type`, `ETag` and
/// `Last-Modified`, conditional requests, single byte ranges, `HEAD`.
/// The module documentation and `docs/rest.md` ("Static files") give
/// every rule.
///
/// Mount it on a router with [`Router::serve_dir`], or serve it alone as
/// an endpoint's [`Handler`] (the whole request path is then the path in
/// the directory).
///
/// ```
/// use pistachio_rest::{Endpoint, Options, Router, ServeDir};
/// use std::io::{Read, Write};
///
/// let dir = std::env::temp_dir().join(format!("pistachio-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// std::fs::write(dir.join("hello.txt"), "hello, files")?;
///
/// let mut router = Router::new();
/// router.serve_dir("/static", ServeDir::new(&dir)?);
/// let mut endpoint = Endpoint::bind("127.0.0.1:0", Options::default().threads(1))?;
/// endpoint.serve_threaded(router)?;
///
/// let mut client = std::net::TcpStream::connect(endpoint.local_addr())?;
/// client.write_all(b"GET /static/hello.txt HTTP/1.1\r\nHost: x\r\n\
///                    Range: bytes=7-\r\nConnection: close\r\n\r\n")?;
/// let mut response = String::new();
/// client.read_to_string(&mut response)?;
/// assert!(response.starts_with("HTTP/1.1 206 Partial Content\r\n"));
/// assert!(response.contains("Content-Range: bytes 7-11/12\r\n"));
/// assert!(response.ends_with("\r\n\r\nfiles"));
/// endpoint.shutdown();
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ServeDir {
    /// Canonical: every link resolved.
    root: Arc<Path>,
    index: Option<Arc<str>>,
    follow_symlinks: bool,
}

/// What a request path names under the root.
#[derive(Debug)]
enum Found {
    /// An open regular file, its metadata, and its path (for the type).
    File(Box<(File, Metadata, PathBuf)>),
    /// A directory with an index, asked for without the trailing `/`.
    Directory,
    /// Nothing that may be served.
    Nothing,
}

impl ServeDir {
    /// Serves the directory `root` (resolved once, now, to its canonical
    /// path: a link as the root itself is fine). Fails if it is not a
    /// directory.
    pub fn new(root: impl AsRef<Path>) -> io::Result<ServeDir> {
        let root = std::fs::canonicalize(root)?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ServeDir root is not a directory",
            ));
        }
        Ok(ServeDir {
            root: root.into(),
            index: Some("index.html".into()),
            follow_symlinks: false,
        })
    }

    /// Whether symbolic links under the root are followed (default: no,
    /// a link answers `404`). A followed link must still lead to a file
    /// under the root (its canonical path is checked against the
    /// canonical root), or the answer is `404`.
    #[must_use]
    pub fn follow_symlinks(mut self, follow: bool) -> ServeDir {
        self.follow_symlinks = follow;
        self
    }

    /// The file answered for a directory (default `index.html`); `None`:
    /// directories answer `404`. A name with a `/` in it is refused like
    /// `None`.
    #[must_use]
    pub fn index_file(mut self, name: Option<&str>) -> ServeDir {
        self.index = name
            .filter(|n| !n.is_empty() && !n.contains(['/', '\0']) && *n != "..")
            .map(Into::into);
        self
    }

    /// The canonical root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Answers `request` for `rel`, the part of its raw (still
    /// percent-encoded) path under the root, with `response`. `GET` and
    /// `HEAD` only: any other method is answered `405` with `Allow: GET,
    /// HEAD`.
    pub fn answer(&self, request: &Request, rel: &str, mut response: ResponseWriter) {
        let method = request.method();
        if method != Method::GET && method != Method::HEAD {
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
            return plain(
                response,
                StatusCode::METHOD_NOT_ALLOWED,
                "Method Not Allowed",
            );
        }
        let segments = match safe_segments(rel) {
            Ok(segments) => segments,
            Err(refused) => {
                log::debug!(
                    "{}: static path {:?} refused: {refused}",
                    request.peer_addr(),
                    request.path()
                );
                return plain(response, StatusCode::BAD_REQUEST, "Bad Request");
            }
        };
        match self.resolve(&segments, request.path().ends_with('/')) {
            Found::File(found) => {
                let (file, meta, path) = *found;
                serve_opened(request, response, file, &meta, &path)
            }
            Found::Directory => {
                // The same path with a `/`: relative links in the index
                // then resolve inside the directory.
                let mut location = format!("{}/", request.path());
                if let Some(query) = request.query_string() {
                    location.push('?');
                    location.push_str(query);
                }
                if let Ok(value) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(LOCATION, value);
                }
                plain(response, StatusCode::MOVED_PERMANENTLY, "Moved Permanently");
            }
            Found::Nothing => plain(response, StatusCode::NOT_FOUND, "Not Found"),
        }
    }

    /// The file the (checked) segments name under the root.
    fn resolve(&self, segments: &[String], slash: bool) -> Found {
        let mut path = self.root.to_path_buf();
        path.extend(segments);
        let Some((path, meta)) = self.checked(path, segments.len()) else {
            return Found::Nothing;
        };
        if meta.is_file() {
            return open_checked(path, &meta);
        }
        let Some(index) = self.index.as_deref().filter(|_| meta.is_dir()) else {
            return Found::Nothing;
        };
        let index_path = path.join(index);
        match self.checked(index_path, segments.len() + 1) {
            Some((_, meta)) if meta.is_file() && !slash => Found::Directory,
            Some((index_path, meta)) if meta.is_file() => open_checked(index_path, &meta),
            _ => Found::Nothing,
        }
    }

    /// `path` (the root and `depth` more components) and its metadata, if
    /// it exists and may be served: no link on the way unless links are
    /// followed, and then the resolved path under the root.
    fn checked(&self, path: PathBuf, depth: usize) -> Option<(PathBuf, Metadata)> {
        if self.follow_symlinks {
            let resolved = std::fs::canonicalize(&path).ok()?;
            if !resolved.starts_with(&self.root) {
                log::debug!("static path {path:?} leaves the root: refused");
                return None;
            }
            let meta = std::fs::metadata(&resolved).ok()?;
            return Some((resolved, meta));
        }
        // Every component below the root, nearest to the root first, must
        // be what it says: no link.
        let mut ancestors: Vec<&Path> = path.ancestors().take(depth).collect();
        ancestors.reverse();
        let mut last = None;
        for step in ancestors {
            let meta = std::fs::symlink_metadata(step).ok()?;
            if meta.file_type().is_symlink() {
                log::debug!("static path {path:?} goes through a link: refused");
                return None;
            }
            last = Some(meta);
        }
        let meta = match last {
            Some(meta) => meta,
            None => std::fs::metadata(&path).ok()?,
        };
        Some((path, meta))
    }
}

/// Opens the regular file at `path`, and makes sure the file opened is
/// the one checked (no link swapped in meanwhile).
fn open_checked(path: PathBuf, checked: &Metadata) -> Found {
    let Ok(file) = File::open(&path) else {
        return Found::Nothing;
    };
    match file.metadata() {
        Ok(meta)
            if meta.is_file() && meta.dev() == checked.dev() && meta.ino() == checked.ino() =>
        {
            Found::File(Box::new((file, meta, path)))
        }
        _ => Found::Nothing,
    }
}

/// Why a request path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    DotDot,
    EncodedSeparator,
    Nul,
    NotUtf8,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::DotDot => "a `..` segment",
            Refused::EncodedSeparator => "a separator inside a segment",
            Refused::Nul => "a NUL byte",
            Refused::NotUtf8 => "not UTF-8",
        })
    }
}

/// The decoded segments of a raw path, each a plain file name: `..`,
/// separators (`/` encoded, `\` in any form), NUL and invalid UTF-8 are
/// refused; empty and `.` segments dropped.
fn safe_segments(raw: &str) -> Result<Vec<String>, Refused> {
    let mut segments = Vec::new();
    for raw_segment in raw.split('/') {
        let bytes: Vec<u8> = percent_decode_str(raw_segment).collect();
        if bytes.contains(&0) {
            return Err(Refused::Nul);
        }
        if bytes.contains(&b'/') || bytes.contains(&b'\\') {
            return Err(Refused::EncodedSeparator);
        }
        let segment = String::from_utf8(bytes).map_err(|_| Refused::NotUtf8)?;
        match segment.as_str() {
            "" | "." => {}
            ".." => return Err(Refused::DotDot),
            _ => segments.push(segment),
        }
    }
    Ok(segments)
}

/// A short `text/plain` answer.
fn plain(mut response: ResponseWriter, status: StatusCode, body: &str) {
    response.set_mime("text/plain; charset=utf-8");
    response.send(status, body);
}

/// What the preconditions and the `Range` field decide (RFC 9110 §13.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// `200` with the whole file.
    Whole,
    /// `206`: bytes `start..=end`.
    Part(u64, u64),
    /// `304`, no body.
    NotModified,
    /// `412`.
    PreconditionFailed,
    /// `416`.
    Unsatisfiable,
}

/// The validators of one version of a file.
#[derive(Debug, Clone)]
struct Validators {
    etag: ETag,
    etag_text: String,
    /// Whole seconds (the precision of HTTP dates).
    modified: Option<SystemTime>,
    len: u64,
}

impl Validators {
    fn of(meta: &Metadata) -> Validators {
        let modified = meta.modified().ok();
        let nanos = modified
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let etag_text = format!("\"{:x}-{:x}\"", meta.len(), nanos);
        let etag = etag_text.parse().expect("a quoted hex tag is an ETag");
        let modified = modified.and_then(|t| {
            let secs = t.duration_since(UNIX_EPOCH).ok()?.as_secs();
            Some(UNIX_EPOCH + std::time::Duration::from_secs(secs))
        });
        Validators {
            etag,
            etag_text,
            modified,
            len: meta.len(),
        }
    }
}

/// Evaluates the preconditions, then the range, of a `GET` or `HEAD`.
/// Fields that do not parse are ignored (RFC 9110 §13.1.3, §14.2).
fn decide(method: &Method, headers: &HeaderMap, v: &Validators) -> Decision {
    // 1. If-Match, else 2. If-Unmodified-Since.
    if headers.contains_key(pistachio_http::header::IF_MATCH) {
        if let Some(if_match) = headers.typed_get::<IfMatch>() {
            if !if_match.precondition_passes(&v.etag) {
                return Decision::PreconditionFailed;
            }
        }
    } else if let (Some(since), Some(modified)) =
        (headers.typed_get::<IfUnmodifiedSince>(), v.modified)
    {
        if !since.precondition_passes(modified) {
            return Decision::PreconditionFailed;
        }
    }
    // 3. If-None-Match, else 4. If-Modified-Since (GET and HEAD only,
    // which is all this serves).
    if headers.contains_key(pistachio_http::header::IF_NONE_MATCH) {
        if let Some(none_match) = headers.typed_get::<IfNoneMatch>() {
            if !none_match.precondition_passes(&v.etag) {
                return Decision::NotModified;
            }
        }
    } else if let (Some(since), Some(modified)) =
        (headers.typed_get::<IfModifiedSince>(), v.modified)
    {
        if !since.is_modified(modified) {
            return Decision::NotModified;
        }
    }
    // 5. Range, for GET only, if If-Range (when sent) names this version.
    if *method != Method::GET {
        return Decision::Whole;
    }
    let Some(range) = headers.get(RANGE).and_then(|r| r.to_str().ok()) else {
        return Decision::Whole;
    };
    if headers.contains_key(pistachio_http::header::IF_RANGE) {
        let last_modified = v.modified.map(LastModified::from);
        match headers.typed_get::<IfRange>() {
            Some(if_range) if !if_range.is_modified(Some(&v.etag), last_modified.as_ref()) => {}
            _ => return Decision::Whole,
        }
    }
    let parsed = match http_range_header::parse_range_header(range) {
        Ok(parsed) => parsed,
        // Malformed or intolerable: ignored.
        Err(_) => return Decision::Whole,
    };
    match parsed.validate(v.len) {
        Ok(ranges) => match ranges.as_slice() {
            [one] => Decision::Part(*one.start(), *one.end()),
            // Several ranges (or an empty file): the whole file, which a
            // server may always send instead (RFC 9110 §14.2).
            _ => Decision::Whole,
        },
        Err(RangeUnsatisfiableError::Unsatisfiable) => Decision::Unsatisfiable,
        Err(_) => Decision::Whole,
    }
}

/// Answers a `GET` or `HEAD` for an open, checked file.
fn serve_opened(
    request: &Request,
    mut response: ResponseWriter,
    file: File,
    meta: &Metadata,
    path: &Path,
) {
    let v = Validators::of(meta);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&v.etag_text) {
        headers.insert(ETAG, value);
    }
    if let Some(modified) = v.modified {
        if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(modified)) {
            headers.insert(LAST_MODIFIED, value);
        }
    }
    match decide(request.method(), request.headers(), &v) {
        Decision::NotModified => response.send(StatusCode::NOT_MODIFIED, ""),
        Decision::PreconditionFailed => plain(
            response,
            StatusCode::PRECONDITION_FAILED,
            "Precondition Failed",
        ),
        Decision::Unsatisfiable => {
            let value = format!("bytes */{}", v.len);
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(CONTENT_RANGE, value);
            }
            plain(
                response,
                StatusCode::RANGE_NOT_SATISFIABLE,
                "Range Not Satisfiable",
            );
        }
        decision => {
            let headers = response.headers_mut();
            let mime = mime_guess::from_path(path).first_or_octet_stream();
            if let Ok(value) = HeaderValue::from_str(mime.essence_str()) {
                headers.insert(CONTENT_TYPE, value);
            }
            headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            let (status, offset, len) = match decision {
                Decision::Part(start, end) => {
                    let value = format!("bytes {start}-{end}/{}", v.len);
                    if let Ok(value) = HeaderValue::from_str(&value) {
                        headers.insert(CONTENT_RANGE, value);
                    }
                    (StatusCode::PARTIAL_CONTENT, start, end - start + 1)
                }
                _ => (StatusCode::OK, 0, v.len),
            };
            if let Err(e) = response.send_file(status, file, offset, len) {
                log::debug!("{}: static file {path:?}: {e}", request.peer_addr());
            }
        }
    }
}

/// Serves the directory alone: the request's whole path is the path
/// under the root.
impl Handler for ServeDir {
    fn on_request(&self, request: Request, response: ResponseWriter) {
        let path = request.path().to_owned();
        self.answer(&request, &path, response);
    }
}

/// The part of `path` under `prefix` (segment-wise: `/static` is not a
/// prefix of `/statics`), if `prefix` is one.
fn under<'p>(prefix: &str, path: &'p str) -> Option<&'p str> {
    let rest = path.strip_prefix(prefix)?;
    (rest.is_empty() || rest.starts_with('/') || prefix.ends_with('/')).then_some(rest)
}

impl Router {
    /// Serves the files of `dir` under the path `prefix` (`"/static"`:
    /// `GET /static/css/site.css` answers `<root>/css/site.css`); see
    /// [`ServeDir`] for the rules.
    ///
    /// The mount is a request middleware ([`Router::middleware`]): it runs
    /// in the order added, before routing, so routes under `prefix` are
    /// not reached by `GET` and `HEAD`, and request middleware added
    /// before it (authentication, say) sees the file requests too. Other
    /// methods pass on to the routes. Exchanges it answers report the
    /// route template `{prefix}/*` to middleware
    /// ([`RequestInfo::route`](pistachio_http::RequestInfo::route)).
    pub fn serve_dir(&mut self, prefix: &str, dir: ServeDir) -> &mut Self {
        let prefix = prefix.trim_end_matches('/').to_owned();
        let template: Arc<str> = format!("{prefix}/*").into();
        self.middleware(move |req: &mut RestRequest, resp: RestResponse| {
            let method = req.method();
            if method != Method::GET && method != Method::HEAD {
                return Flow::Continue(resp);
            }
            let Some(rel) = under(&prefix, req.path()) else {
                return Flow::Continue(resp);
            };
            let rel = rel.to_owned();
            let mut writer = resp.into_writer();
            writer.set_route(Arc::clone(&template));
            dir.answer(req.http(), &rel, writer);
            Flow::Stop
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_refuse_what_could_leave_a_directory() {
        let ok: &[(&str, &[&str])] = &[
            ("", &[]),
            ("/", &[]),
            ("/a/b.txt", &["a", "b.txt"]),
            ("//a/./b/", &["a", "b"]),
            ("/a%20b", &["a b"]),
            ("/%2e", &[]),
            ("/...", &["..."]),
            ("/a..b", &["a..b"]),
        ];
        for (raw, expected) in ok {
            let segments = safe_segments(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert_eq!(segments, *expected, "{raw}");
        }
        let refused: &[(&str, Refused)] = &[
            ("/..", Refused::DotDot),
            ("/a/../b", Refused::DotDot),
            ("/%2e%2e/etc", Refused::DotDot),
            ("/%2E%2E", Refused::DotDot),
            ("/.%2e", Refused::DotDot),
            ("/..%2Fetc%2Fpasswd", Refused::EncodedSeparator),
            ("/a%2fb", Refused::EncodedSeparator),
            ("/a%5Cb", Refused::EncodedSeparator),
            ("/..\\..\\x", Refused::EncodedSeparator),
            ("/a%00.txt", Refused::Nul),
            ("/%ff", Refused::NotUtf8),
        ];
        for (raw, why) in refused {
            assert_eq!(safe_segments(raw), Err(*why), "{raw}");
        }
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert_eq!(under("/static", "/static"), Some(""));
        assert_eq!(under("/static", "/static/a"), Some("/a"));
        assert_eq!(under("/static", "/statics/a"), None);
        assert_eq!(under("", "/a"), Some("/a"));
        assert_eq!(under("/static", "/other"), None);
    }

    fn validators(len: u64, modified_secs: u64) -> Validators {
        Validators {
            etag: "\"v1\"".parse().unwrap(),
            etag_text: "\"v1\"".into(),
            modified: Some(UNIX_EPOCH + std::time::Duration::from_secs(modified_secs)),
            len,
        }
    }

    fn decide_with(method: Method, fields: &[(&'static str, &str)]) -> Decision {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            headers.append(*name, HeaderValue::from_str(value).unwrap());
        }
        // Modified at Sun, 06 Nov 1994 08:49:37 GMT.
        decide(&method, &headers, &validators(100, 784_111_777))
    }

    #[test]
    fn preconditions_follow_rfc_9110_order() {
        use Decision::*;
        let date = "Sun, 06 Nov 1994 08:49:37 GMT";
        let earlier = "Sun, 06 Nov 1994 08:49:36 GMT";
        let get = Method::GET;
        let cases: &[(&[(&str, &str)], Decision)] = &[
            (&[], Whole),
            (&[("if-match", "\"v1\"")], Whole),
            (&[("if-match", "*")], Whole),
            (&[("if-match", "\"v0\"")], PreconditionFailed),
            (&[("if-match", "W/\"v1\"")], PreconditionFailed),
            (&[("if-unmodified-since", date)], Whole),
            (&[("if-unmodified-since", earlier)], PreconditionFailed),
            (&[("if-unmodified-since", "yesterday")], Whole),
            // If-Match wins over If-Unmodified-Since.
            (
                &[("if-match", "\"v1\""), ("if-unmodified-since", earlier)],
                Whole,
            ),
            (&[("if-none-match", "\"v1\"")], NotModified),
            (&[("if-none-match", "W/\"v1\"")], NotModified),
            (&[("if-none-match", "\"a\", \"v1\"")], NotModified),
            (&[("if-none-match", "*")], NotModified),
            (&[("if-none-match", "\"v0\"")], Whole),
            (&[("if-modified-since", date)], NotModified),
            (&[("if-modified-since", earlier)], Whole),
            (&[("if-modified-since", "not a date")], Whole),
            // If-None-Match wins over If-Modified-Since.
            (
                &[("if-none-match", "\"v0\""), ("if-modified-since", date)],
                Whole,
            ),
            (&[("range", "bytes=0-9")], Part(0, 9)),
            (&[("range", "bytes=90-")], Part(90, 99)),
            (&[("range", "bytes=-10")], Part(90, 99)),
            (&[("range", "bytes=50-500")], Part(50, 99)),
            (&[("range", "bytes=100-")], Unsatisfiable),
            (&[("range", "bytes=0-1,5-6")], Whole),
            (&[("range", "bytes=9-0")], Whole),
            (&[("range", "bytes=x")], Whole),
            (&[("range", "lines=1-2")], Whole),
            (
                &[("range", "bytes=0-9"), ("if-range", "\"v1\"")],
                Part(0, 9),
            ),
            (&[("range", "bytes=0-9"), ("if-range", "\"v0\"")], Whole),
            (&[("range", "bytes=0-9"), ("if-range", date)], Part(0, 9)),
            (&[("range", "bytes=0-9"), ("if-range", earlier)], Whole),
            (&[("range", "bytes=0-9"), ("if-range", "garbage")], Whole),
        ];
        for (fields, expected) in cases {
            assert_eq!(decide_with(get.clone(), fields), *expected, "{fields:?}");
        }
        // HEAD ignores Range.
        assert_eq!(decide_with(Method::HEAD, &[("range", "bytes=0-9")]), Whole);
    }
}
