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
use std::time::Instant;

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
        let path = self.path.as_str();
        let keep_alive: Vec<Tally> = thread::scope(|s| {
            let handles: Vec<_> = self
                .slots
                .iter_mut()
                .enumerate()
                .map(|(i, slot)| {
                    s.spawn(move || {
                        let mut t = Tally::default();
                        if let Some(client) = slot.as_mut() {
                            let keep =
                                requests(client, path, &mut t, round, Conn::KeepAlive(i), deadline);
                            if !keep {
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
                                if requests(
                                    &mut client,
                                    path,
                                    &mut t,
                                    round,
                                    Conn::Fresh(i),
                                    deadline,
                                ) {
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

/// A connected good client with split records.
fn connect(target: &Target) -> Result<TlsClient, (Failure, std::io::Error)> {
    TlsClient::connect_to(target)
        .map(TlsClient::split_records)
        .map_err(|e| (Failure::of_connect(&e), e))
}

/// Up to [`REQUESTS_PER_CONNECTION`] good requests on `client`, each counted
/// in `tally`. Returns whether the connection is still usable: `false`
/// after a failure or when the server announced `Connection: close`.
fn requests(
    client: &mut TlsClient,
    path: &str,
    tally: &mut Tally,
    round: usize,
    conn: Conn,
    deadline: Instant,
) -> bool {
    for n in 1..=REQUESTS_PER_CONNECTION {
        if Instant::now() >= deadline {
            return true;
        }
        let what = |detail: String| format!("round {round}, {conn}, request {n}: {detail}");
        match client.request(path) {
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
                let body = response.text();
                let body: String = body.chars().take(60).collect();
                tally.failed(
                    Failure::Status(response.status),
                    what(format!("status {} (body {body:?})", response.status)),
                );
                return false;
            }
            Err(e) => {
                tally.failed(Failure::of_request(&e), what(e.to_string()));
                return false;
            }
        }
    }
    true
}

/// Joins a scoped client thread; a panic in one is a bug of the probe.
fn join<T>(handle: thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}
