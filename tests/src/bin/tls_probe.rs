//! `tls-probe`: points abrupt TLS clients and checked good clients at any
//! HTTPS server and reports whether every good request got its full answer.
//!
//! ```text
//! cargo run -p pistachio-tests --release --bin tls-probe -- https://localhost:9080/ --ca CA.pem
//! ```
//!
//! `--help` lists the options and the styles; [`pistachio_tests::probe`]
//! holds the program.

use std::process::ExitCode;

fn main() -> ExitCode {
    pistachio_tests::probe::main()
}
