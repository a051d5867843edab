//! [`Encoding`] and [`BodyEncoder`]: a response body transformed on its
//! way out (a content coding such as gzip), for whole and streamed
//! answers alike.
//!
//! The HTTP layer knows no coding itself: a handler (or a layer of the
//! REST crate, such as its compression battery) puts an [`Encoding`] on a
//! [`ResponseWriter`](crate::ResponseWriter) with
//! [`ResponseWriter::set_encoding`](crate::ResponseWriter::set_encoding).
//! When the answer's head is about to be written, after every
//! [`Middleware::on_response`](crate::Middleware::on_response), the writer
//! asks it once, with the final status and header fields, whether to
//! encode; if it returns a [`BodyEncoder`], the body bytes go through it:
//!
//! * a whole answer ([`ResponseWriter::send`](crate::ResponseWriter::send))
//!   is encoded at once and sent with the encoded length as its
//!   `Content-Length` (for a `HEAD` request too, so its head is the one a
//!   `GET` gets);
//! * a streamed answer ([`ResponseWriter::stream`](crate::ResponseWriter::stream))
//!   is encoded piece by piece: each piece handed to the connection is the
//!   encoder's output after a [`BodyEncoder::flush`], so that the client
//!   can decode everything received so far, and the end of the stream
//!   calls [`BodyEncoder::finish`]. Memory stays bounded by the encoder's
//!   own state plus the stream's buffer.
//! * files ([`ResponseWriter::serve_file`](crate::ResponseWriter::serve_file))
//!   are sent as they are (with `sendfile(2)`): the encoding is not asked.
//!
//! A writer without an encoding costs one `None` check per answer.

use std::fmt;
use std::io;

use http::{HeaderMap, StatusCode};

/// Decides, once the final status and header fields of an answer are
/// known, whether (and how) its body is encoded.
///
/// ```
/// use pistachio_http::{BodyEncoder, Encoding, HeaderMap, HeaderValue, StatusCode};
/// use std::io;
///
/// /// Upper-cases text bodies (a stand-in for a real coding).
/// struct Shout;
/// struct ShoutEncoder;
///
/// impl Encoding for Shout {
///     fn start(
///         self: Box<Self>,
///         status: StatusCode,
///         headers: &mut HeaderMap,
///         _length: Option<usize>,
///     ) -> Option<Box<dyn BodyEncoder>> {
///         if status != StatusCode::OK {
///             return None;
///         }
///         headers.insert("x-shouted", HeaderValue::from_static("yes"));
///         Some(Box::new(ShoutEncoder))
///     }
/// }
///
/// impl BodyEncoder for ShoutEncoder {
///     fn encode(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
///         out.extend(data.iter().map(u8::to_ascii_uppercase));
///         Ok(())
///     }
///     fn flush(&mut self, _out: &mut Vec<u8>) -> io::Result<()> {
///         Ok(())
///     }
///     fn finish(&mut self, _out: &mut Vec<u8>) -> io::Result<()> {
///         Ok(())
///     }
/// }
/// ```
pub trait Encoding: Send + 'static {
    /// Called once, when the head of the answer is about to be written
    /// with `status` and `headers` (after the response hooks of every
    /// middleware). `length` is the body's length for a whole answer,
    /// `None` for a streamed one.
    ///
    /// Return `None` to send the body as it is; or edit `headers` (say
    /// `Content-Encoding`, `Vary`, a weakened `ETag`) and return the
    /// encoder the body goes through. The writer owns the framing: it
    /// writes the encoded length (whole answers) or chunks (streams)
    /// itself. For a status without a body (1xx, `204`, `304`) a returned
    /// encoder is not used, but the header edits stay.
    fn start(
        self: Box<Self>,
        status: StatusCode,
        headers: &mut HeaderMap,
        length: Option<usize>,
    ) -> Option<Box<dyn BodyEncoder>>;
}

/// Encodes one answer's body, piece by piece.
///
/// Each method appends its output to `out` (possibly nothing: an encoder
/// may keep what it was given until it has enough). An `Err` ends the
/// answer: a whole answer becomes `500 Internal Server Error`, a stream
/// is cut off.
pub trait BodyEncoder: Send {
    /// Encodes `data`.
    fn encode(&mut self, data: &[u8], out: &mut Vec<u8>) -> io::Result<()>;
    /// Writes out everything given so far so that the receiver can decode
    /// it (a sync flush); called before each piece of a stream is handed
    /// to the connection.
    fn flush(&mut self, out: &mut Vec<u8>) -> io::Result<()>;
    /// Ends the encoded body (trailer, checksum); called once, last.
    fn finish(&mut self, out: &mut Vec<u8>) -> io::Result<()>;
}

/// The encoding a writer carries (a wrapper that prints).
pub(crate) struct Pending(pub(crate) Box<dyn Encoding>);

impl fmt::Debug for Pending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Encoding")
    }
}

/// A started encoder (a wrapper that prints).
pub(crate) struct Active(pub(crate) Box<dyn BodyEncoder>);

impl fmt::Debug for Active {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BodyEncoder")
    }
}

/// Encodes a whole body with `encoder`: what it outputs for `body`, then
/// for its end.
pub(crate) fn encode_whole(encoder: &mut dyn BodyEncoder, body: &[u8]) -> io::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(body.len() / 2 + 64);
    encoder.encode(body, &mut out)?;
    encoder.finish(&mut out)?;
    Ok(out)
}
