//! systemd socket activation: the `rest_server` example (built from
//! `rest/examples/rest_server/` as this package's `rest_server` binary)
//! serves on the listening socket it is handed as fd 3 with `LISTEN_PID`,
//! `LISTEN_FDS` and `LISTEN_FDNAMES`; the socket outlives the process, so a
//! client that connects between two processes is served by the second;
//! sockets meant for another process are ignored; a descriptor that is not
//! a socket is refused with a clear error.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pistachio_tests::activation::{socket_activated, ListenPid};
use pistachio_tests::client::{get_once, read_to_close};
use pistachio_tests::TempDir;

const SERVER: &str = env!("CARGO_BIN_EXE_rest_server");

/// A running `rest_server`, killed if a test fails before stopping it.
struct Running {
    child: Child,
    /// The port of its `listening on` banner.
    port: u16,
    /// What it prints after the banner (kept, so its stdout stays open).
    _lines: Option<mpsc::Receiver<String>>,
}

impl Running {
    fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting rest_server");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let banner = lines
            .recv_timeout(Duration::from_secs(10))
            .expect("rest_server printed no banner");
        let port = banner
            .strip_prefix("rest_server listening on http://localhost:")
            .and_then(|rest| rest.trim_end_matches('/').parse().ok())
            .unwrap_or_else(|| panic!("unexpected banner {banner:?}"));
        Running {
            child,
            port,
            _lines: Some(lines),
        }
    }

    /// SIGTERM, then a clean exit.
    fn stop(mut self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: `kill` has no memory-safety preconditions; the pid is our child's.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let status = wait_at_most(&mut self.child, Duration::from_secs(15));
        assert!(status.success(), "rest_server exited with {status}");
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_at_most(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("waiting for rest_server") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("rest_server still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `rest_server` over plain HTTP with one worker, told to bind `addr`.
fn activated(
    fd3: &impl std::os::fd::AsRawFd,
    pid: ListenPid,
    addr: &str,
    data: &TempDir,
) -> Command {
    let mut cmd = socket_activated(SERVER, fd3, "http", pid);
    cmd.args(["--no-tls", "--threads", "1", "--addr", addr])
        .arg("--data-dir")
        .arg(data.path());
    cmd
}

fn status_and_body(port: u16, path: &str) -> (u16, String) {
    let r = get_once(port, false, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    (r.status, r.text())
}

#[test]
fn the_inherited_socket_is_served_and_outlives_the_process() {
    let data = TempDir::new("pistachio-activation");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // `--addr` names a port another socket listens on: binding it would
    // fail, so serving at all shows the inherited socket is used.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();

    let first = Running::start(activated(&listener, ListenPid::Program, &addr, &data));
    assert_eq!(first.port, port, "the banner names the inherited socket");
    assert_eq!(status_and_body(port, "/healthz"), (200, "ok".into()));
    assert_eq!(status_and_body(port, "/readyz"), (200, "ready".into()));
    first.stop();

    // No process serves now, but the socket is still listening (this test
    // holds it, as systemd would): a client connects and sends its
    // request, which waits in the backlog.
    let mut waiting = TcpStream::connect(("127.0.0.1", port)).expect("the socket still listens");
    waiting
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();

    let second = Running::start(activated(&listener, ListenPid::Program, &addr, &data));
    assert_eq!(second.port, port);
    let answer = String::from_utf8_lossy(&read_to_close(&mut waiting)).into_owned();
    assert!(
        answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("\r\n\r\nok"),
        "the client that connected between the processes got {answer:?}"
    );
    second.stop();
}

#[test]
fn a_socket_meant_for_another_process_is_ignored() {
    let data = TempDir::new("pistachio-activation");
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Pid 1 is never the server's.
    let server = Running::start(activated(
        &listener,
        ListenPid::Other(1),
        "127.0.0.1:0",
        &data,
    ));
    assert_ne!(
        server.port, port,
        "served the socket LISTEN_PID gave another process"
    );
    assert_eq!(status_and_body(server.port, "/healthz"), (200, "ok".into()));
    server.stop();
}

#[test]
fn a_descriptor_that_is_not_a_socket_is_refused_with_a_clear_error() {
    let data = TempDir::new("pistachio-activation");
    let not_a_socket = std::fs::File::open("/dev/null").unwrap();
    let mut child = activated(&not_a_socket, ListenPid::Program, "127.0.0.1:0", &data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_at_most(&mut child, Duration::from_secs(10));
    let mut stdout = String::new();
    let mut stderr = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(!status.success(), "started anyway: {stdout}");
    assert!(!stdout.contains("listening on"), "{stdout}");
    assert!(
        stderr.contains("fd 3") && stderr.contains("not a socket"),
        "unclear error: {stderr:?}"
    );
}

/// The same, with systemd's own launcher when it is installed (Debian's
/// `systemd` package): it binds, waits for the first connection, then
/// starts the server with the socket.
#[test]
fn systemd_socket_activate_starts_a_server_that_serves() {
    let data = TempDir::new("pistachio-activation");
    let launcher = Path::new("/usr/bin/systemd-socket-activate");
    if !launcher.exists() {
        eprintln!("skipped: {} is not installed", launcher.display());
        return;
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut cmd = Command::new(launcher);
    cmd.args(["-l", &format!("127.0.0.1:{port}"), "--fdname=http"])
        .arg(SERVER)
        .args(["--no-tls", "--threads", "1", "--addr", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(data.path())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    let mut launcher = Running {
        child: cmd.spawn().unwrap(),
        port,
        _lines: None,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    let (status, body) = loop {
        match get_once(port, false, "/healthz") {
            Ok(r) => break (r.status, r.text()),
            Err(e) if Instant::now() > deadline => panic!("never served: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    assert_eq!((status, body.as_str()), (200, "ok"));
    assert_eq!(
        status_and_body(launcher.port, "/readyz"),
        (200, "ready".into())
    );
    // The launcher exec()s the server: SIGTERM reaches it directly.
    let pid = libc::pid_t::try_from(launcher.child.id()).unwrap();
    // SAFETY: `kill` has no memory-safety preconditions; the pid is our child's.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = wait_at_most(&mut launcher.child, Duration::from_secs(15));
    assert!(status.success(), "exited with {status}");
}
