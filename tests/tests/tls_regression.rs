//! TLS regression suite: clients that close without `close_notify` must not
//! break other connections (Pistache issue #1309, fixed by PR #1310).
//!
//! The failure being guarded against: a peer that closes without
//! `close_notify` makes `SSL_read` fail and leaves an entry in the worker
//! thread's OpenSSL error queue. If the server does not clear the queue before
//! its next SSL call, `SSL_get_error` on a *different* connection of the same
//! worker reports `SSL_ERROR_SSL`, the server drops that connection, and its
//! client sees an empty reply.
//!
//! OpenSSL clears the thread's error queue when a new handshake starts, so a
//! fresh connection on that worker hides the problem; only connections
//! already established on it show it. Every test here therefore opens one
//! long-lived keep-alive connection per worker *first* (new connections are
//! handed to workers round-robin, so the first `threads` connections land one
//! on each worker) and sends a request on each of them after every
//! misbehaving client, before any fresh connection.
//!
//! Those long-lived clients send each request's TLS record in two TCP
//! segments a moment apart (`TlsClient::split_records`), as a network may
//! cut it: the server's first `SSL_read` then finds half a record and must
//! classify `-1` as `WANT_READ`, which is the call a stale queue entry turns
//! into a fatal `SSL_ERROR_SSL`. (A request that arrives whole is read in one
//! `read(2)` and, the socket being empty, no `SSL_read` that fails follows:
//! the transport skips that `EAGAIN` read, so whole records alone would not
//! show the bug.)
//!
//! Built with `--features unhygienic-error-queue` (a debug-only switch that
//! skips the error-queue clearing), these tests are expected to fail.

use std::thread;

use pistachio_tests::abrupt::SETTLE;
use pistachio_tests::client::{get_once, AnyClient};
use pistachio_tests::libcurl::{
    assert_curl_at_least_8_9, curl_get, curl_get_wrong_name, is_certificate_rejection,
};
use pistachio_tests::{init_logging, AbruptClose, TestServer, TlsClient, HELLO_BODY};

/// Good libcurl requests per round, as in Pistache's test.
const GOOD_REQUESTS: usize = 10;

/// Abrupt closes per matrix case: enough to land on every worker.
const ABRUPT_ROUNDS: usize = 5;

/// Opens one long-lived keep-alive TLS connection per worker and checks each
/// answers. Must be the first connections made to `server`.
fn tls_clients_on_every_worker(server: &TestServer) -> Vec<TlsClient> {
    let mut clients: Vec<TlsClient> = (0..server.threads())
        .map(|worker| {
            TlsClient::connect(server.port())
                .unwrap_or_else(|e| panic!("long-lived client for worker {worker}: {e}"))
                .split_records()
        })
        .collect();
    check_tls_clients(&mut clients, "first request");
    clients
}

/// One request on every long-lived TLS client; each must get the hello answer.
#[track_caller]
fn check_tls_clients(clients: &mut [TlsClient], context: &str) {
    for (worker, client) in clients.iter_mut().enumerate() {
        let what = format!("{context}: long-lived client on worker {worker}");
        client
            .request("/")
            .unwrap_or_else(|e| panic!("{what}: {e}"))
            .assert_hello(&what);
    }
}

/// One libcurl request (fresh handle, quiet shutdown) that must succeed, then
/// a pause so the server sees the connection close before the next step.
#[track_caller]
fn good_curl_request(port: u16, context: &str) {
    let response = curl_get(port, "/").unwrap_or_else(|e| panic!("{context}: libcurl: {e}"));
    assert_eq!(response.status, 200, "{context}: status");
    assert_eq!(response.body, HELLO_BODY, "{context}: body");
    thread::sleep(SETTLE);
}

/// Pistache's `basic_tls_requests_with_no_shutdown_from_peer` (PR #1310):
/// sequential libcurl requests that never send `close_notify`, with the
/// long-lived connections of the module docs added.
#[test]
fn basic_tls_requests_with_no_shutdown_from_peer() {
    init_logging();
    assert_curl_at_least_8_9();
    for threads in [1, 2] {
        let server = TestServer::hello(threads, true);
        let mut long_lived = tls_clients_on_every_worker(&server);
        for i in 0..GOOD_REQUESTS {
            let context = format!("{threads} worker(s), request {i}");
            good_curl_request(server.port(), &context);
            check_tls_clients(&mut long_lived, &context);
        }
    }
}

/// libcurl rejects the server under a wrong name and drops the connection
/// mid-handshake without `close_notify`; every later request must still work.
#[test]
fn hostname_verification_failure_then_good_requests() {
    init_logging();
    assert_curl_at_least_8_9();
    for threads in [1, 2] {
        let server = TestServer::hello(threads, true);
        let mut long_lived = tls_clients_on_every_worker(&server);
        // One bad and GOOD_REQUESTS good connections per cycle: an odd count,
        // so with two workers the bad one alternates between them.
        for cycle in 0..2 * threads {
            let context = format!("{threads} worker(s), cycle {cycle}");
            match curl_get_wrong_name(server.port(), "/") {
                Ok(response) => {
                    panic!("{context}: request under a wrong name succeeded: {response:?}")
                }
                Err(e) => assert!(
                    is_certificate_rejection(&e),
                    "{context}: expected a certificate verification error, got {e} ({:?})",
                    e.extra_description()
                ),
            }
            thread::sleep(SETTLE);
            check_tls_clients(
                &mut long_lived,
                &format!("{context}, after the bad request"),
            );
            for i in 0..GOOD_REQUESTS {
                let context = format!("{context}, good request {i}");
                good_curl_request(server.port(), &context);
                check_tls_clients(&mut long_lived, &context);
            }
        }
    }
}

/// One cell of the abrupt-close matrix: on a hello server with `threads`
/// workers, `kind` is performed [`ABRUPT_ROUNDS`] times; after each, every
/// long-lived client, then `threads` fresh clients, then the long-lived
/// clients again must get `200 Hello, World!`.
///
/// Each round makes `1 + threads` connections, a count coprime with
/// `threads`, so round-robin puts the abrupt close on a different worker
/// each round until every worker has had one.
fn abrupt_close_case(kind: AbruptClose, threads: usize, tls: bool) {
    init_logging();
    let server = TestServer::hello(threads, tls);
    let port = server.port();
    let mut long_lived: Vec<AnyClient> = (0..threads)
        .map(|worker| {
            AnyClient::connect_split(port, tls)
                .unwrap_or_else(|e| panic!("long-lived client for worker {worker}: {e}"))
        })
        .collect();
    let mut check_long_lived = |context: &str| {
        for (worker, client) in long_lived.iter_mut().enumerate() {
            let what = format!("{context}: long-lived client on worker {worker}");
            client
                .request("/")
                .unwrap_or_else(|e| panic!("{what}: {e}"))
                .assert_hello(&what);
        }
    };
    check_long_lived("first request");
    for round in 0..ABRUPT_ROUNDS {
        let context = format!("{kind:?}, round {round}");
        kind.perform(port, tls)
            .unwrap_or_else(|e| panic!("{context}: performing the abrupt close: {e}"));
        check_long_lived(&context);
        for fresh in 0..threads {
            let what = format!("{context}: fresh client {fresh}");
            get_once(port, tls, "/")
                .unwrap_or_else(|e| panic!("{what}: {e}"))
                .assert_hello(&what);
        }
        check_long_lived(&format!("{context}, after the fresh clients"));
    }
}

/// Generates one `#[test]` per matrix cell, and `MATRIX` listing the cells.
macro_rules! abrupt_close_matrix {
    ($($name:ident => $kind:ident, $threads:literal, $tls:literal;)*) => {
        $(
            #[test]
            fn $name() {
                abrupt_close_case(AbruptClose::$kind, $threads, $tls);
            }
        )*

        /// Every (kind, threads, tls) cell that has a test.
        const MATRIX: &[(AbruptClose, usize, bool)] = &[
            $((AbruptClose::$kind, $threads, $tls),)*
        ];
    };
}

abrupt_close_matrix! {
    abrupt_tls_fin_after_exchange_1_worker => FinAfterExchange, 1, true;
    abrupt_tls_fin_after_exchange_2_workers => FinAfterExchange, 2, true;
    abrupt_tls_fin_after_handshake_1_worker => FinAfterHandshake, 1, true;
    abrupt_tls_fin_after_handshake_2_workers => FinAfterHandshake, 2, true;
    abrupt_tls_half_client_hello_then_fin_1_worker => HalfClientHelloThenFin, 1, true;
    abrupt_tls_half_client_hello_then_fin_2_workers => HalfClientHelloThenFin, 2, true;
    abrupt_tls_fin_mid_request_1_worker => FinMidRequest, 1, true;
    abrupt_tls_fin_mid_request_2_workers => FinMidRequest, 2, true;
    abrupt_tls_rst_mid_handshake_1_worker => RstMidHandshake, 1, true;
    abrupt_tls_rst_mid_handshake_2_workers => RstMidHandshake, 2, true;
    abrupt_tls_rst_mid_request_1_worker => RstMidRequest, 1, true;
    abrupt_tls_rst_mid_request_2_workers => RstMidRequest, 2, true;
    abrupt_tls_rst_after_response_1_worker => RstAfterResponse, 1, true;
    abrupt_tls_rst_after_response_2_workers => RstAfterResponse, 2, true;
    abrupt_tls_random_bytes_1_worker => RandomBytes, 1, true;
    abrupt_tls_random_bytes_2_workers => RandomBytes, 2, true;
    abrupt_tls_plaintext_to_tls_port_1_worker => PlaintextToTls, 1, true;
    abrupt_tls_plaintext_to_tls_port_2_workers => PlaintextToTls, 2, true;
    abrupt_plain_fin_after_exchange_1_worker => FinAfterExchange, 1, false;
    abrupt_plain_fin_after_exchange_2_workers => FinAfterExchange, 2, false;
    abrupt_plain_fin_mid_request_1_worker => FinMidRequest, 1, false;
    abrupt_plain_fin_mid_request_2_workers => FinMidRequest, 2, false;
    abrupt_plain_rst_mid_request_1_worker => RstMidRequest, 1, false;
    abrupt_plain_rst_mid_request_2_workers => RstMidRequest, 2, false;
    abrupt_plain_rst_after_response_1_worker => RstAfterResponse, 1, false;
    abrupt_plain_rst_after_response_2_workers => RstAfterResponse, 2, false;
    abrupt_plain_random_bytes_1_worker => RandomBytes, 1, false;
    abrupt_plain_random_bytes_2_workers => RandomBytes, 2, false;
}

/// The matrix has a test for every kind on TLS and every plain-applicable
/// kind on plain HTTP, each with one and two workers.
#[test]
fn abrupt_close_matrix_is_complete() {
    for kind in AbruptClose::ALL {
        for threads in [1, 2] {
            assert!(
                MATRIX.contains(&(kind, threads, true)),
                "no TLS test for {kind:?} with {threads} worker(s)"
            );
            assert_eq!(
                MATRIX.contains(&(kind, threads, false)),
                kind.applies_to_plain(),
                "plain test for {kind:?} with {threads} worker(s)"
            );
        }
    }
}
