//! actix-web 4 hello world, a benchmark peer for pistachio's `hello_server`.
//!
//! `.workers(--threads)`, `.backlog(4096)`, `TCP_NODELAY` on accepted
//! sockets (as hyper_hello, pistachio and nginx), HTTP/1.1 keep-alive (idle
//! timeout 60 s, as pistachio's default, instead of actix's 5 s so that the
//! idle-connection measurement sees every connection), TLS through actix's
//! `openssl` feature when `--tls-cert`/`--tls-key` are given. Answers every
//! request with `200 Hello, World!` and a Content-Length.

use std::time::Duration;

use actix_web::http::KeepAlive;
use actix_web::{web, App, HttpResponse, HttpServer};
use pistachio_bench::{parse_args, ssl_acceptor, BACKLOG, BODY};

async fn hello() -> HttpResponse {
    HttpResponse::Ok().body(BODY)
}

fn main() -> std::io::Result<()> {
    let args = parse_args("actix_hello");
    let threads = args.threads;
    actix_web::rt::System::new().block_on(async move {
        let server = HttpServer::new(|| App::new().default_service(web::to(hello)))
            .workers(threads)
            .backlog(BACKLOG as u32)
            .tcp_nodelay(true)
            .keep_alive(KeepAlive::Timeout(Duration::from_secs(60)))
            .shutdown_timeout(1);
        let scheme;
        let server = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => {
                scheme = "https";
                let builder = ssl_acceptor(cert, key).map_err(std::io::Error::other)?;
                server.bind_openssl(args.addr.as_str(), builder)?
            }
            _ => {
                scheme = "http";
                server.bind(args.addr.as_str())?
            }
        };
        println!(
            "actix_hello listening on {scheme}://{}/ with {threads} workers",
            args.addr
        );
        server.run().await
    })
}
