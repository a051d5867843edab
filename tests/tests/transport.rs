//! The transport on its own: a protocol that panics loses only its own
//! connection.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use pistachio_transport::{Conn, Listener, Protocol, Server, ServerConfig};

/// Echoes input, and panics on the word "boom".
struct Echo;

impl Protocol for Echo {
    type Message = ();
    fn on_input(&mut self, conn: &mut Conn<'_, ()>, data: &[u8]) {
        if data.windows(4).any(|w| w == b"boom") {
            panic!("protocol bug triggered by input");
        }
        conn.write(data);
    }
    fn on_message(&mut self, _: &mut Conn<'_, ()>, _: ()) {}
}

fn echo(stream: &mut TcpStream, msg: &[u8]) -> Vec<u8> {
    stream.write_all(msg).unwrap();
    let mut buf = vec![0u8; msg.len()];
    stream.read_exact(&mut buf).unwrap();
    buf
}

#[test]
fn a_panicking_protocol_loses_only_its_own_connection() {
    let _ = env_logger::builder().is_test(true).try_init();
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
    let addr = listener.local_addr();
    let mut config = ServerConfig::default();
    config.threads = 1;
    let mut server = Server::start(listener, config, |_| Echo).unwrap();

    let mut bystander = TcpStream::connect(addr).unwrap();
    bystander
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(echo(&mut bystander, b"hello"), b"hello");

    let mut victim = TcpStream::connect(addr).unwrap();
    victim
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    victim.write_all(b"boom").unwrap();
    let mut buf = [0u8; 16];
    // The victim's connection is dropped...
    assert!(matches!(victim.read(&mut buf), Ok(0) | Err(_)));
    // ...while the worker and the other connection carry on.
    assert_eq!(echo(&mut bystander, b"still here"), b"still here");
    let mut late = TcpStream::connect(addr).unwrap();
    late.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(echo(&mut late, b"new"), b"new");
    server.shutdown();
}
