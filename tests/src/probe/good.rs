//! The good clients: real TLS, HTTP/1.1 keep-alive, every answer checked.
//!
//! After each abrupt act the probe asks the server for the good path
//! [`REQUESTS_PER_CONNECTION`] times on each *keep-alive* connection (opened
//! before the act, so already established on the server's threads) and then
//! on as many *fresh* connections (whose handshakes come after the act).
//! A server that keeps a stale OpenSSL error on a worker thread fails one or
//! the other: the keep-alive connections when its handshakes clear the queue
//! on the same thread (pistachio without its fix), the fresh ones when the
//! handshake runs elsewhere (Pistache: its accept thread does `SSL_accept`).
//!
//! Every request's TLS record goes out in two TCP segments a moment apart
//! ([`TlsClient::split_records`]): the server's first `SSL_read` then finds
//! half a record and must classify `-1` as `WANT_READ`, which is the call a
//! stale error-queue entry turns into a fatal error.

use std::thread;
use std::time::{Duration, Instant};

use crate::client::Target;
use crate::TlsClient;

use super::report::{Failure, Tally};

/// Good requests on each connection after each act.
pub const REQUESTS_PER_CONNECTION: usize = 3;

/// The good keep-alive clients and what they ask for.
#[derive(Debug)]
pub struct GoodClients {
    target: Target,
    path: String,
    /// One slot per keep-alive client; `None` after its connection was lost.
    slots: Vec<Option<TlsClient>>,
}

/// Which connection a good request went out on, for failure samples.
#[derive(Debug, Clone, Copy)]
enum Conn {
    KeepAlive(usize),
    Fresh(usize),
}

impl std::fmt::Display for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Conn::KeepAlive(i) => write!(f, "keep-alive client {}", i + 1),
            Conn::Fresh(i) => write!(f, "fresh connection {}", i + 1),
        }
    }
}

impl GoodClients {
    /// `count` keep-alive clients of `target` asking for `GET {path}`; none
    /// is connected yet (see [`GoodClients::refill`]).
    pub fn new(target: Target, path: String, count: usize) -> GoodClients {
        GoodClients {
            target,
            path,
            slots: (0..count).map(|_| None).collect(),
        }
    }

    /// Connects every keep-alive client whose connection is gone (or was
    /// never made). A connection that cannot be made counts in `tally` as a
    /// failed request; `round` names the round in the failure sample.
    pub fn refill(&mut self, tally: &mut Tally, round: usize) {
        let target = &self.target;
        let results: Vec<Option<Tally>> = thread::scope(|s| {
            let handles: Vec<_> = self
                .slots
                .iter_mut()
                .enumerate()
                .map(|(i, slot)| {
                    s.spawn(move || {
                        if slot.is_some() {
                            return None;
                        }
                        let mut t = Tally::default();
                        match connect(target) {
                            Ok(client) => *slot = Some(client),
                            Err((failure, e)) => t.failed(
                                failure,
                                format!("round {round}, {}: {e}", Conn::KeepAlive(i)),
                            ),
                        }
                        Some(t)
                    })
                })
                .collect();
            handles.into_iter().map(join).collect()
        });
        for t in results.into_iter().flatten() {
            tally.merge(t);
        }
    }

    /// Runs the good requests that follow an abrupt act: first on every
    /// keep-alive client (in parallel), then on as many fresh connections
    /// (in parallel), [`REQUESTS_PER_CONNECTION`] each; no request starts
    /// after `deadline`. Lost keep-alive clients are left empty for the
    /// next [`GoodClients::refill`].
    pub fn exercise(&mut self, tally: &mut Tally, round: usize, deadline: Instant) {
        let target = &self.target;
        let turn = Turn {
            path: self.path.as_str(),
            round,
            deadline,
            timeout: target.timeout,
        };
        let keep_alive: Vec<Tally> = thread::scope(|s| {
            let handles: Vec<_> = self
                .slots
                .iter_mut()
                .enumerate()
                .map(|(i, slot)| {
                    s.spawn(move || {
                        let mut t = Tally::default();
                        if let Some(client) = slot.as_mut() {
                            if !turn.requests(client, Conn::KeepAlive(i), &mut t) {
                                *slot = None;
                            }
                        }
                        t
                    })
                })
                .collect();
            handles.into_iter().map(join).collect()
        });
        let fresh: Vec<Tally> = thread::scope(|s| {
            let handles: Vec<_> = (0..self.slots.len())
                .map(|i| {
                    s.spawn(move || {
                        let mut t = Tally::default();
                        if Instant::now() >= deadline {
                            return t;
                        }
                        match connect(target) {
                            Ok(mut client) => {
                                if turn.requests(&mut client, Conn::Fresh(i), &mut t) {
                                    // A clean close; how it goes is not the point here.
                                    let _ = client.close();
                                }
                            }
                            Err((failure, e)) => {
                                t.failed(failure, format!("round {round}, {}: {e}", Conn::Fresh(i)))
                            }
                        }
                        t
                    })
                })
                .collect();
            handles.into_iter().map(join).collect()
        });
        for t in keep_alive.into_iter().chain(fresh) {
            tally.merge(t);
        }
    }
}

/// The good requests of one turn (after one act): what to ask for, until
/// when, and the round for failure samples.
#[derive(Debug, Clone, Copy)]
struct Turn<'a> {
    path: &'a str,
    round: usize,
    deadline: Instant,
    timeout: Duration,
}

impl Turn<'_> {
    /// Up to [`REQUESTS_PER_CONNECTION`] good requests on `client`, each
    /// counted in `tally`. Returns whether the connection is still usable:
    /// `false` after a failure or when the server announced `Connection:
    /// close`.
    fn requests(&self, client: &mut TlsClient, conn: Conn, tally: &mut Tally) -> bool {
        for n in 1..=REQUESTS_PER_CONNECTION {
            if Instant::now() >= self.deadline {
                return true;
            }
            let what =
                |detail: String| format!("round {}, {conn}, request {n}: {detail}", self.round);
            match client.request(self.path) {
                Ok(response) if response.status == 200 => {
                    tally.ok();
                    let closing = response
                        .header("connection")
                        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
                    if closing {
                        return false;
                    }
                }
                Ok(response) => {
                    let body: String = response.text().chars().take(60).collect();
                    tally.failed(
                        Failure::Status(response.status),
                        what(format!("status {} (body {body:?})", response.status)),
                    );
                    return false;
                }
                Err(e) => {
                    let failure = Failure::of_request(&e);
                    let detail = match failure {
                        Failure::Timeout => {
                            format!("no response within {} s", self.timeout.as_secs())
                        }
                        _ => e.to_string(),
                    };
                    tally.failed(failure, what(detail));
                    return false;
                }
            }
        }
        true
    }
}

/// A connected good client with split records, or why there is none.
fn connect(target: &Target) -> Result<TlsClient, (Failure, String)> {
    TlsClient::connect_to(target)
        .map(TlsClient::split_records)
        .map_err(|e| {
            let failure = Failure::of_connect(&e);
            let detail = match failure {
                Failure::Timeout if e.to_string().starts_with("TLS handshake") => {
                    format!("no TLS handshake within {} s", target.timeout.as_secs())
                }
                Failure::Timeout => {
                    format!("no TCP connection within {} s", target.timeout.as_secs())
                }
                _ => e.to_string(),
            };
            (failure, detail)
        })
}

/// Joins a scoped client thread; a panic in one is a bug of the probe.
fn join<T>(handle: thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}
