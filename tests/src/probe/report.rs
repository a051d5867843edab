//! Counting good requests per style and printing the verdict.
//!
//! The output format is a contract (scripts parse it): one line
//! `STYLE: N ok of M` per style played, then indented detail lines, and
//! last a line exactly `overall: N ok of M`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;

/// How one good request (or the connection it needed) failed, in a few
/// words: the category failures are grouped by in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Failure {
    /// The TCP connection was refused or could not be made.
    Connect,
    /// The TLS handshake failed.
    Handshake,
    /// The server closed the connection before the first byte of a response.
    EmptyReply,
    /// Nothing (or not all) came back within the timeout.
    Timeout,
    /// The connection was reset.
    Reset,
    /// The connection ended in the middle of a response.
    Truncated,
    /// The response could not be parsed.
    Malformed,
    /// The response had a status other than 200.
    Status(u16),
}

impl Failure {
    /// Classifies an error of a request on an established connection.
    pub fn of_request(e: &io::Error) -> Failure {
        use io::ErrorKind::*;
        match e.kind() {
            WouldBlock | TimedOut => Failure::Timeout,
            ConnectionReset | ConnectionAborted | BrokenPipe => Failure::Reset,
            _ if e.to_string().starts_with("empty reply") => Failure::EmptyReply,
            UnexpectedEof => Failure::Truncated,
            _ => Failure::Malformed,
        }
    }

    /// Classifies an error of connecting (TCP, then the TLS handshake).
    pub fn of_connect(e: &io::Error) -> Failure {
        use io::ErrorKind::*;
        match e.kind() {
            WouldBlock | TimedOut => Failure::Timeout,
            ConnectionReset | ConnectionAborted | BrokenPipe => Failure::Reset,
            _ if e.to_string().starts_with("TLS handshake") => Failure::Handshake,
            _ => Failure::Connect,
        }
    }

    /// The category's words in the report.
    pub fn label(self) -> String {
        match self {
            Failure::Connect => "connection failed".into(),
            Failure::Handshake => "TLS handshake failed".into(),
            Failure::EmptyReply => "empty reply".into(),
            Failure::Timeout => "timeout".into(),
            Failure::Reset => "connection reset".into(),
            Failure::Truncated => "truncated response".into(),
            Failure::Malformed => "malformed response".into(),
            Failure::Status(code) => format!("status {code}"),
        }
    }
}

/// Failures of one category: how many, and the first one in full.
#[derive(Debug, Clone)]
struct Group {
    count: u64,
    sample: String,
}

/// What happened while one style was being played.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Good requests answered fully.
    pub ok: u64,
    /// Good requests sent (a connection that could not be made counts as
    /// one request sent and failed).
    pub sent: u64,
    /// Rounds in which the style was played.
    pub played: u64,
    /// Rounds skipped because the run's time budget was spent.
    pub skipped: u64,
    failures: BTreeMap<Failure, Group>,
    /// Abrupt acts that could not be carried out, with the reason.
    act_errors: Vec<String>,
}

impl Tally {
    /// Counts one good request answered fully.
    pub fn ok(&mut self) {
        self.ok += 1;
        self.sent += 1;
    }

    /// Counts one failed good request; `what` says which and how.
    pub fn failed(&mut self, failure: Failure, what: String) {
        self.sent += 1;
        self.failures
            .entry(failure)
            .and_modify(|g| g.count += 1)
            .or_insert(Group {
                count: 1,
                sample: what,
            });
    }

    /// Notes an abrupt act that could not be carried out.
    pub fn act_error(&mut self, what: String) {
        self.act_errors.push(what);
    }

    /// Adds `other` into `self`.
    pub fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.sent += other.sent;
        self.played += other.played;
        self.skipped += other.skipped;
        for (failure, group) in other.failures {
            self.failures
                .entry(failure)
                .and_modify(|g| g.count += group.count)
                .or_insert(group);
        }
        self.act_errors.extend(other.act_errors);
    }

    /// Whether every good request got its full answer.
    pub fn all_ok(&self) -> bool {
        self.ok == self.sent
    }
}

/// Most abrupt-act errors listed per style.
const MAX_ACT_ERRORS: usize = 3;

/// Renders the per-style lines (with indented details) and the final
/// `overall:` line.
pub fn render(tallies: &[(&str, Tally)]) -> String {
    let mut out = String::new();
    let mut overall = Tally::default();
    for (name, tally) in tallies {
        let _ = writeln!(out, "{name}: {} ok of {}", tally.ok, tally.sent);
        for (failure, group) in &tally.failures {
            let _ = writeln!(
                out,
                "    {} x {}, e.g. {}",
                group.count,
                failure.label(),
                group.sample
            );
        }
        if tally.skipped > 0 {
            let _ = writeln!(
                out,
                "    played {} of {} rounds: the run's time budget was spent",
                tally.played,
                tally.played + tally.skipped
            );
        }
        for error in tally.act_errors.iter().take(MAX_ACT_ERRORS) {
            let _ = writeln!(out, "    note: the abrupt client could not play: {error}");
        }
        if tally.act_errors.len() > MAX_ACT_ERRORS {
            let _ = writeln!(
                out,
                "    note: ... and {} more",
                tally.act_errors.len() - MAX_ACT_ERRORS
            );
        }
        overall.merge(tally.clone());
    }
    let _ = write!(out, "overall: {} ok of {}", overall.ok, overall.sent);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_errors() {
        let e = |kind, msg: &str| io::Error::new(kind, msg.to_owned());
        use io::ErrorKind::*;
        assert_eq!(
            Failure::of_request(&e(
                UnexpectedEof,
                "empty reply from server (connection closed)"
            )),
            Failure::EmptyReply
        );
        assert_eq!(
            Failure::of_request(&e(WouldBlock, "empty reply from server (timed out)")),
            Failure::Timeout
        );
        assert_eq!(
            Failure::of_request(&e(ConnectionReset, "x")),
            Failure::Reset
        );
        assert_eq!(
            Failure::of_request(&e(
                UnexpectedEof,
                "connection closed after 3 of 13 body bytes"
            )),
            Failure::Truncated
        );
        assert_eq!(
            Failure::of_connect(&e(Other, "TLS handshake with 127.0.0.1:1: x")),
            Failure::Handshake
        );
        assert_eq!(
            Failure::of_connect(&e(ConnectionRefused, "refused")),
            Failure::Connect
        );
    }

    #[test]
    fn renders_style_lines_then_overall() {
        let mut a = Tally::default();
        a.ok();
        a.ok();
        let mut b = Tally::default();
        b.ok();
        b.failed(
            Failure::EmptyReply,
            "round 1, request 2: empty reply".into(),
        );
        b.failed(
            Failure::EmptyReply,
            "round 1, request 3: empty reply".into(),
        );
        let text = render(&[("no-close-notify", a), ("idle-client", b)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "no-close-notify: 2 ok of 2");
        assert_eq!(lines[1], "idle-client: 1 ok of 3");
        assert_eq!(
            lines[2],
            "    2 x empty reply, e.g. round 1, request 2: empty reply"
        );
        assert_eq!(*lines.last().unwrap(), "overall: 3 ok of 5");
    }
}
