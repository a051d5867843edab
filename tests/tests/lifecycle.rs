//! Server lifecycle: `shutdown()` joins every thread it started and releases
//! every file descriptor it opened.
//!
//! This file holds a single test so that it runs in a process of its own:
//! it counts the process's threads and descriptors, which other tests
//! running in parallel would disturb.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read};
use std::thread;
use std::time::{Duration, Instant};

use pistachio_rest::http::{Endpoint, Options, Request, ResponseWriter, StatusCode};
use pistachio_tests::client::get_once;
use pistachio_tests::server::server_tls_config;
use pistachio_tests::{init_logging, TestServer, TlsClient, HELLO_BODY};

/// Number of entries in a `/proc` directory.
fn count_entries(dir: &str) -> usize {
    fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {dir}: {e}"))
        .count()
}

/// The names (`comm`) of this process's threads.
fn thread_names() -> Vec<String> {
    fs::read_dir("/proc/self/task")
        .expect("reading /proc/self/task")
        .filter_map(|entry| {
            let path = entry.ok()?.path().join("comm");
            // A thread may exit between listing and reading.
            fs::read_to_string(path)
                .ok()
                .map(|s| s.trim_end().to_owned())
        })
        .collect()
}

fn pistachio_threads() -> BTreeSet<String> {
    thread_names()
        .into_iter()
        .filter(|n| n.starts_with("pistachio-"))
        .collect()
}

fn open_fds() -> Vec<String> {
    fs::read_dir("/proc/self/fd")
        .map(|dir| {
            dir.filter_map(|e| {
                let e = e.ok()?;
                let target = fs::read_link(e.path()).ok()?;
                Some(format!(
                    "{} -> {}",
                    e.file_name().to_string_lossy(),
                    target.display()
                ))
            })
            .collect()
        })
        .unwrap_or_default()
}

/// A 3-worker TLS endpoint: its threads exist while it serves, and after
/// `shutdown()` returns they are gone, every descriptor it opened is closed,
/// and a client still connected was closed with it.
#[test]
fn shutdown_joins_workers_and_releases_fds_and_threads() {
    init_logging();
    // Warm up what the process sets up once (OpenSSL, the client connector,
    // logging), so that it is not counted against the server.
    {
        let warm = TestServer::hello(1, true);
        get_once(warm.port(), true, "/")
            .expect("warm-up request")
            .assert_hello("warm-up");
    }

    let fds_before = count_entries("/proc/self/fd");
    let tasks_before = count_entries("/proc/self/task");
    assert_eq!(
        pistachio_threads(),
        BTreeSet::new(),
        "server threads left over before the test"
    );

    let mut endpoint = Endpoint::bind(
        "127.0.0.1:0",
        Options::default()
            .threads(3)
            .tls(server_tls_config())
            .handshake_timeout(Duration::from_secs(2)),
    )
    .expect("binding");
    let port = endpoint.local_addr().port();
    endpoint
        .serve_threaded(|_req: Request, resp: ResponseWriter| {
            resp.send(StatusCode::OK, HELLO_BODY);
        })
        .expect("serving");

    // A thread names itself once it runs, which may be a moment after
    // serve_threaded() has returned.
    let expected: BTreeSet<String> = ["pistachio-w0", "pistachio-w1", "pistachio-w2"]
        .into_iter()
        .map(str::to_owned)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(1);
    let names = loop {
        let names = pistachio_threads();
        if names.is_superset(&expected) || Instant::now() >= deadline {
            break names;
        }
        thread::sleep(Duration::from_millis(10));
    };
    assert!(
        names.is_superset(&expected),
        "worker threads while serving: {names:?}; expected {expected:?}"
    );
    assert!(
        !names.contains("pistachio-w3"),
        "more workers than asked for: {names:?}"
    );

    let mut held = TlsClient::connect(port).expect("long-lived client");
    held.request("/").unwrap().assert_hello("held, first");
    for i in 0..4 {
        get_once(port, true, "/")
            .unwrap_or_else(|e| panic!("request {i}: {e}"))
            .assert_hello(&format!("request {i}"));
    }
    held.request("/").unwrap().assert_hello("held, second");
    assert!(
        count_entries("/proc/self/fd") > fds_before,
        "the server holds no descriptors while serving?"
    );

    let started = Instant::now();
    endpoint.shutdown();
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(3),
        "shutdown took {took:?} with one idle client connected"
    );

    // The held connection was closed by the server (close_notify, or at
    // least EOF), not left dangling.
    held.tcp()
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut buf = [0u8; 64];
    match held.ssl_stream().read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("after shutdown the held client read {n} byte(s) of data"),
        Err(e) => assert!(
            !matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "after shutdown the held connection is still open: {e}"
        ),
    }
    drop(held);

    // Every descriptor the server opened (listener, pollers, wakers,
    // accepted sockets) is closed once shutdown() has returned.
    let fds_after = count_entries("/proc/self/fd");
    assert_eq!(
        fds_after,
        fds_before,
        "descriptors before and after shutdown; open now: {:#?}",
        open_fds()
    );

    // Joined threads leave /proc/self/task when the kernel reaps them, a
    // moment after pthread_join has returned: allow that moment.
    let deadline = Instant::now() + Duration::from_millis(500);
    loop {
        let tasks_after = count_entries("/proc/self/task");
        let names = pistachio_threads();
        if tasks_after == tasks_before && names.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "threads after shutdown: {tasks_after} (before: {tasks_before}); \
             server threads still present: {names:?}; all: {:?}",
            thread_names()
        );
        thread::sleep(Duration::from_millis(10));
    }
}
