//! [`AccessLog`]: one line per exchange through the `log` crate, in the
//! Common Log Format or as JSON.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

use pistachio_http::{End, Exchange, Hooks, Middleware, Version};

/// The `log` target access lines are written to (at `info`), so that they
/// can be routed or filtered apart from everything else
/// (`RUST_LOG=pistachio::access=info`).
pub const ACCESS_LOG_TARGET: &str = "pistachio::access";

/// How an [`AccessLog`] line looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessLogFormat {
    /// The Common Log Format of web servers, followed by the route
    /// template and the duration in milliseconds:
    ///
    /// ```text
    /// 127.0.0.1 - - [04/Dec/2026:14:55:36 +0000] "GET /users/42 HTTP/1.1" 200 17 "/users/:id" 0.214
    /// ```
    ///
    /// `-` stands for what is unknown: the request line of a request the
    /// server could not parse, an empty body, a request no route matched.
    Common,
    /// The Combined Log Format: the Common one with the request's
    /// `Referer` and `User-Agent` after the body size, then the route
    /// template and the duration as in [`Common`](Self::Common):
    ///
    /// ```text
    /// 127.0.0.1 - - [04/Dec/2026:14:55:36 +0000] "GET /users/42 HTTP/1.1" 200 17 "https://example.com/" "curl/8.9.1" "/users/:id" 0.214
    /// ```
    ///
    /// `"-"` for a field the request did not have. The two header values
    /// are kept for the log only by an access log installed endpoint-wide
    /// ([`Options::middleware`](pistachio_http::Options::middleware)),
    /// which asks for them with [`Hooks::REQUEST_HEADERS`].
    Combined,
    /// One JSON object per line, with the fields `time` (RFC 3339, UTC),
    /// `remote`, `method`, `target`, `route`, `version`, `status`,
    /// `bytes` (body bytes sent), `duration_ms`, `ttfb_ms`,
    /// `keep_alive` and `end` (`completed`, `client_gone`, `cut`);
    /// unknown values are `null`.
    Json,
}

/// An access log (tower-http's `TraceLayer` for one line per exchange):
/// a [`Middleware`] that writes one line per finished exchange to the
/// `log` crate, target [`ACCESS_LOG_TARGET`], level `info`.
///
/// Installed endpoint-wide ([`Options::middleware`]), it sees every
/// exchange, the answers the HTTP layer makes itself included (`400` for
/// a malformed request, `408`, `413`, `414`, `431`); installed on a
/// router ([`Router::layer`](crate::Router::layer)), the router's only.
/// It implements [`Middleware::on_complete`] alone, so it costs nothing
/// on the way in (the combined format only keeps the request's `Referer`
/// and `User-Agent` values for its line, [`Hooks::REQUEST_HEADERS`]).
///
/// [`Options::middleware`]: pistachio_http::Options::middleware
///
/// ```
/// use pistachio_rest::{AccessLog, Endpoint, Options, Router};
///
/// // RUST_LOG=pistachio::access=info shows the lines with env_logger.
/// let options = Options::default().threads(1).middleware(AccessLog::common());
/// let mut endpoint = Endpoint::bind("127.0.0.1:0", options)?;
/// endpoint.serve_threaded(Router::new())?;
/// endpoint.shutdown();
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct AccessLog {
    format: AccessLogFormat,
}

impl AccessLog {
    /// Lines in `format`.
    pub fn new(format: AccessLogFormat) -> AccessLog {
        AccessLog { format }
    }

    /// Lines in the Common Log Format ([`AccessLogFormat::Common`]).
    pub fn common() -> AccessLog {
        AccessLog::new(AccessLogFormat::Common)
    }

    /// Lines in the Combined Log Format ([`AccessLogFormat::Combined`]).
    pub fn combined() -> AccessLog {
        AccessLog::new(AccessLogFormat::Combined)
    }

    /// JSON lines ([`AccessLogFormat::Json`]).
    pub fn json() -> AccessLog {
        AccessLog::new(AccessLogFormat::Json)
    }

    /// The line for `exchange`, finished at `now` (what
    /// [`Middleware::on_complete`] logs).
    pub fn line(&self, exchange: &Exchange<'_>, now: SystemTime) -> String {
        let started = now.checked_sub(exchange.total()).unwrap_or(now);
        match self.format {
            AccessLogFormat::Common => common_line(exchange, started, false),
            AccessLogFormat::Combined => common_line(exchange, started, true),
            AccessLogFormat::Json => json_line(exchange, started),
        }
    }
}

impl Middleware for AccessLog {
    fn on_complete(&self, exchange: &Exchange<'_>) {
        if log::log_enabled!(target: ACCESS_LOG_TARGET, log::Level::Info) {
            let line = self.line(exchange, SystemTime::now());
            log::info!(target: ACCESS_LOG_TARGET, "{line}");
        }
    }

    fn hooks(&self) -> Hooks {
        match self.format {
            AccessLogFormat::Combined => Hooks::ON_COMPLETE | Hooks::REQUEST_HEADERS,
            _ => Hooks::ON_COMPLETE,
        }
    }
}

fn version_str(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `[day/Mon/year:hh:mm:ss +0000]` from an HTTP date
/// (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn clf_time(t: SystemTime) -> String {
    let date = httpdate_fields(t);
    format!(
        "{}/{}/{}:{} +0000",
        date.day, date.month, date.year, date.time
    )
}

/// `1994-11-06T08:49:37Z`.
fn rfc3339_time(t: SystemTime) -> String {
    let date = httpdate_fields(t);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == date.month).unwrap_or(0) + 1;
    format!("{}-{month:02}-{}T{}Z", date.year, date.day, date.time)
}

struct DateFields {
    day: String,
    month: String,
    year: String,
    time: String,
}

fn httpdate_fields(t: SystemTime) -> DateFields {
    // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT".
    let text = httpdate::fmt_http_date(t);
    let mut parts = text.split(' ').skip(1);
    let mut next = || parts.next().unwrap_or("").to_owned();
    DateFields {
        day: next(),
        month: next(),
        year: next(),
        time: next(),
    }
}

fn common_line(ex: &Exchange<'_>, started: SystemTime, combined: bool) -> String {
    let req = ex.request;
    let mut line = String::with_capacity(128);
    let _ = write!(
        line,
        "{} - - [{}] ",
        req.peer_addr().ip(),
        clf_time(started)
    );
    match (req.method(), req.target()) {
        (Some(method), Some(target)) => {
            line.push('"');
            line.push_str(method.as_str());
            line.push(' ');
            push_escaped(&mut line, target);
            line.push(' ');
            line.push_str(version_str(req.version()));
            line.push('"');
        }
        _ => line.push_str("\"-\""),
    }
    let _ = write!(line, " {} ", ex.status.as_u16());
    if ex.body_bytes == 0 {
        line.push('-');
    } else {
        let _ = write!(line, "{}", ex.body_bytes);
    }
    if combined {
        for value in [req.referer(), req.user_agent()] {
            line.push_str(" \"");
            push_escaped(&mut line, value.unwrap_or("-"));
            line.push('"');
        }
    }
    match req.route() {
        Some(route) => {
            line.push_str(" \"");
            push_escaped(&mut line, route);
            line.push('"');
        }
        None => line.push_str(" -"),
    }
    let _ = write!(line, " {:.3}", millis(ex.total()));
    line
}

/// Appends `text` with `"`, `\` and control characters escaped (a target
/// is printable ASCII once parsed, but a line must stay one line whatever
/// it holds).
fn push_escaped(line: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '"' => line.push_str("\\\""),
            '\\' => line.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(line, "\\x{:02x}", c as u32);
            }
            c => line.push(c),
        }
    }
}

fn json_line(ex: &Exchange<'_>, started: SystemTime) -> String {
    let req = ex.request;
    let value = serde_json::json!({
        "time": rfc3339_time(started),
        "remote": req.peer_addr().to_string(),
        "method": req.method().map(|m| m.as_str()),
        "target": req.target(),
        "route": req.route(),
        "version": version_str(req.version()),
        "status": ex.status.as_u16(),
        "bytes": ex.body_bytes,
        "duration_ms": millis(ex.total()),
        "ttfb_ms": ex.time_to_first_byte().map(millis),
        "keep_alive": ex.keep_alive,
        "end": match ex.end {
            End::Completed => "completed",
            End::ClientGone => "client_gone",
            End::Cut => "cut",
            _ => "other",
        },
    });
    value.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    #[test]
    fn times_in_both_formats() {
        let t = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(clf_time(t), "06/Nov/1994:08:49:37 +0000");
        assert_eq!(rfc3339_time(t), "1994-11-06T08:49:37Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(rfc3339_time(t), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn escaping_keeps_one_line() {
        let mut line = String::new();
        push_escaped(&mut line, "/a\"b\\c\nd");
        assert_eq!(line, "/a\\\"b\\\\c\\x0ad");
    }
}
