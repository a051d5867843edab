//! When the process runs out of file descriptors, the accept thread backs off
//! instead of spinning on `EMFILE`, and serves the waiting clients once
//! descriptors are available again.
//!
//! Lowers `RLIMIT_NOFILE` for the whole process, so it lives in a test file
//! (a process) of its own.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use pistachio_tests::client::Connection;
use pistachio_tests::{init_logging, open_fds, set_open_files_limit, TestServer, ThreadCpu};

#[test]
fn accept_backs_off_on_emfile_and_recovers() {
    init_logging();
    let server = TestServer::hello(1, false);
    // A new thread names itself once it runs: allow it a moment.
    let named = Instant::now() + Duration::from_secs(2);
    let accept_cpu = loop {
        match ThreadCpu::find("pistachio-acc") {
            Some(cpu) => break cpu,
            None if Instant::now() < named => std::thread::sleep(Duration::from_millis(5)),
            None => panic!("no thread named pistachio-acc"),
        }
    };
    let before = open_fds() as u64;
    let previous = set_open_files_limit(before + 24).expect("lower RLIMIT_NOFILE");

    // Each client costs two descriptors in this process: its own socket and
    // the server's accepted one. Connect until this process cannot create a
    // socket any more; the last connections then wait in the listen backlog
    // while the accept thread gets EMFILE.
    let mut clients = Vec::new();
    let exhausted = loop {
        match TcpStream::connect(server.addr()) {
            Ok(s) => clients.push(s),
            Err(e) if e.raw_os_error() == Some(libc::EMFILE) => break true,
            Err(e) => panic!("unexpected connect error: {e}"),
        }
        if clients.len() > 200 {
            break false;
        }
    };
    assert!(exhausted, "never ran out of descriptors");

    // Give the accept thread time to hit EMFILE, then measure its CPU time
    // over one second: a spinning accept loop would burn most of it.
    std::thread::sleep(Duration::from_millis(200));
    let start = accept_cpu.ticks();
    std::thread::sleep(Duration::from_secs(1));
    let used = accept_cpu.ticks() - start;
    assert!(
        used < 20,
        "accept thread used {used} ticks (1/100 s) in 1 s while out of descriptors: it spins"
    );

    // Descriptors come back: every waiting client is accepted and served.
    set_open_files_limit(previous).expect("restore RLIMIT_NOFILE");
    let deadline = Instant::now() + Duration::from_secs(5);
    for (i, client) in clients.iter_mut().enumerate().rev().take(8) {
        client
            .set_read_timeout(Some(
                deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(100),
            ))
            .unwrap();
        let mut conn = Connection::new(client);
        conn.write_raw(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
        let response = conn
            .read_response()
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert!(
            response.head.starts_with("HTTP/1.1 200 OK"),
            "client {i}: {response:?}"
        );
        response.assert_hello(&format!("client {i}"));
    }
}
