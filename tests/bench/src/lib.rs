//! Shared flag parsing for the benchmark peers (`hyper_hello`, `actix_hello`).
//!
//! Both take the same flags as pistachio's `hello_server` example:
//! `--addr ADDR` (default `127.0.0.1:9080`), `--threads N` (default: number of
//! CPUs), `--tls-cert FILE --tls-key FILE` (serve HTTPS with this PEM chain and
//! key).

use std::path::PathBuf;

/// Body every peer answers with.
pub const BODY: &str = "Hello, World!";

/// Listen backlog every peer asks for.
pub const BACKLOG: i32 = 4096;

/// Parsed command line.
#[derive(Debug)]
pub struct Args {
    /// Listen address.
    pub addr: String,
    /// Worker threads.
    pub threads: usize,
    /// PEM certificate chain, for HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key, for HTTPS.
    pub tls_key: Option<PathBuf>,
}

/// Parses the flags, or exits with a usage message.
pub fn parse_args(name: &str) -> Args {
    parse_args_from(name, std::env::args().skip(1))
}

/// Parses the given flags (without the program name), or exits with a
/// usage message; for a peer that takes flags of its own first.
pub fn parse_args_from(name: &str, flags: impl IntoIterator<Item = String>) -> Args {
    let usage =
        format!("usage: {name} [--addr ADDR] [--threads N] [--tls-cert FILE --tls-key FILE]");
    let fail = |msg: String| -> ! {
        eprintln!("{msg}\n{usage}");
        std::process::exit(2)
    };
    let mut args = Args {
        addr: "127.0.0.1:9080".into(),
        threads: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        tls_cert: None,
        tls_key: None,
    };
    let mut it = flags.into_iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| fail(format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--addr" => args.addr = value(),
            "--threads" => {
                let v = value();
                args.threads = match v.parse() {
                    Ok(n) if n > 0 => n,
                    _ => fail(format!("--threads: not a positive number: {v}")),
                };
            }
            "--tls-cert" => args.tls_cert = Some(value().into()),
            "--tls-key" => args.tls_key = Some(value().into()),
            "-h" | "--help" => fail(String::new()),
            other => fail(format!("unknown flag {other}")),
        }
    }
    if args.tls_cert.is_some() != args.tls_key.is_some() {
        fail("--tls-cert and --tls-key go together".into());
    }
    args
}

/// An OpenSSL acceptor for the given PEM chain and key (Mozilla "intermediate"
/// settings: TLS 1.2 and 1.3).
pub fn ssl_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<openssl::ssl::SslAcceptorBuilder, openssl::error::ErrorStack> {
    use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod};
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server())?;
    b.set_certificate_chain_file(cert)?;
    b.set_private_key_file(key, SslFiletype::PEM)?;
    b.check_private_key()?;
    Ok(b)
}
