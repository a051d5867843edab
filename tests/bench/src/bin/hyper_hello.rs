//! hyper 1.x hello world, a benchmark peer for pistachio's `hello_server`.
//!
//! hyper-util + tokio multi-thread runtime with `--threads` worker threads,
//! HTTP/1.1 keep-alive, listen backlog 4096, TLS via tokio-openssl when
//! `--tls-cert`/`--tls-key` are given. Answers every request with
//! `200 Hello, World!` and a Content-Length.
//!
//! `--http2` (for `h2load.sh`) serves HTTP/2 as well: over TLS the server
//! selects ALPN `h2` (or `http/1.1`) and the connection is served by hyper's
//! `http2` or `http1` builder accordingly; over plain TCP every connection
//! is HTTP/2 with prior knowledge (h2c), as nginx's `listen ... http2`.
//! Without the flag nothing changes: HTTP/1.1 only, no ALPN.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use openssl::ssl::{select_next_proto, AlpnError, Ssl, SslAcceptor};
use pistachio_bench::{parse_args_from, ssl_acceptor, BACKLOG, BODY};
use socket2::{Domain, Socket, Type};

async fn hello(_req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    // `Full` has an exact size hint, so hyper writes a Content-Length.
    Ok(Response::new(Full::new(Bytes::from_static(
        BODY.as_bytes(),
    ))))
}

fn listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// ALPN protocols the server offers with `--http2`, in its order of
/// preference (wire format).
const ALPN_H2_H1: &[u8] = b"\x02h2\x08http/1.1";

async fn serve(
    std_listener: std::net::TcpListener,
    acceptor: Option<Arc<SslAcceptor>>,
    h2: bool,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(std_listener)?;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: back off briefly rather than spin.
                eprintln!("hyper_hello: accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let conn = http1::Builder::new();
            match acceptor {
                None if h2 => {
                    let _ = http2::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service_fn(hello))
                        .await;
                }
                None => {
                    let _ = conn
                        .serve_connection(TokioIo::new(stream), service_fn(hello))
                        .await;
                }
                Some(acceptor) => {
                    let Ok(ssl) = Ssl::new(acceptor.context()) else {
                        return;
                    };
                    let Ok(mut tls) = tokio_openssl::SslStream::new(ssl, stream) else {
                        return;
                    };
                    if Pin::new(&mut tls).accept().await.is_err() {
                        return;
                    }
                    if tls.ssl().selected_alpn_protocol() == Some(b"h2") {
                        let _ = http2::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(tls), service_fn(hello))
                            .await;
                        return;
                    }
                    let _ = conn
                        .serve_connection(TokioIo::new(tls), service_fn(hello))
                        .await;
                }
            }
        });
    }
}

fn main() {
    let mut flags: Vec<String> = std::env::args().skip(1).collect();
    let before = flags.len();
    flags.retain(|f| f != "--http2");
    let h2 = flags.len() != before;
    let args = parse_args_from("hyper_hello", flags);
    let addr: SocketAddr = args.addr.parse().unwrap_or_else(|e| {
        eprintln!("hyper_hello: --addr {}: {e}", args.addr);
        std::process::exit(2)
    });
    let acceptor = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => match ssl_acceptor(cert, key) {
            Ok(mut b) => {
                if h2 {
                    b.set_alpn_select_callback(|_, client| {
                        select_next_proto(ALPN_H2_H1, client).ok_or(AlpnError::NOACK)
                    });
                }
                Some(Arc::new(b.build()))
            }
            Err(e) => {
                eprintln!("hyper_hello: TLS setup: {e}");
                std::process::exit(1)
            }
        },
        _ => None,
    };
    let std_listener = listener(addr).unwrap_or_else(|e| {
        eprintln!("hyper_hello: listen on {addr}: {e}");
        std::process::exit(1)
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let scheme = if acceptor.is_some() { "https" } else { "http" };
    let protocols = match (h2, acceptor.is_some()) {
        (false, _) => "HTTP/1.1",
        (true, true) => "ALPN h2 or http/1.1",
        (true, false) => "HTTP/2 with prior knowledge",
    };
    println!(
        "hyper_hello listening on {scheme}://{addr}/ ({protocols}) with {} threads",
        args.threads
    );
    if let Err(e) = rt.block_on(serve(std_listener, acceptor, h2)) {
        eprintln!("hyper_hello: {e}");
        std::process::exit(1);
    }
}
