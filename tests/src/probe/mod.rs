//! `tls-probe`: checks that any HTTPS server keeps answering good clients
//! while other clients misbehave at the TLS level.
//!
//! The run plays every [`Style`] once per round. Before each abrupt act the
//! good keep-alive clients are (re)connected; after it they, and as many
//! fresh connections, send good requests whose answers are checked in full
//! (see [`good`]). A style's count is the good requests sent after its acts.
//!
//! * [`args`]: the command line;
//! * [`styles`]: the abrupt behaviours;
//! * [`good`]: the good clients;
//! * [`report`]: counting and the printed verdict.
//!
//! The run is bounded: no act starts once the time budget
//! ([`BUDGET_PER_ROUND`] per round) is spent, and every socket has a timeout.

pub mod args;
pub mod good;
pub mod report;
pub mod styles;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};

use crate::client::{tls_connector_builder_trusting, Target};
use crate::TlsClient;

use args::{Args, Command};
use good::{GoodClients, REQUESTS_PER_CONNECTION};
use report::Tally;
use styles::{Played, Stage, Style};

/// Time budget of one round: a healthy server needs a fraction of it.
pub const BUDGET_PER_ROUND: Duration = Duration::from_secs(7);

/// Longest an abrupt client waits on the server (connect, handshake, one
/// exchange), whatever `--timeout` says: a server in trouble must not
/// stretch the run.
pub const ACT_TIMEOUT: Duration = Duration::from_secs(2);

/// Shortest time a held style (stalled handshake, idle client) is held.
pub const MIN_HOLD: Duration = Duration::from_millis(500);

/// Exit status when a good request failed.
pub const EXIT_FAILED: u8 = 1;

/// Exit status for a usage error or a server that cannot be reached.
pub const EXIT_USAGE: u8 = 2;

/// Runs the probe with the process's arguments and returns its exit status.
pub fn main() -> ExitCode {
    let command = match args::parse(std::env::args().skip(1)) {
        Ok(command) => command,
        Err(msg) => {
            eprintln!("tls-probe: {msg}\n(tls-probe --help explains the options)");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    match command {
        Command::Help => {
            println!("{}", args::help());
            ExitCode::SUCCESS
        }
        Command::Run(args) => match run(&args) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(EXIT_FAILED),
            Err(msg) => {
                eprintln!("tls-probe: {msg}");
                ExitCode::from(EXIT_USAGE)
            }
        },
    }
}

/// Probes the server `args` names and prints the report. `Ok(true)` when
/// every good request got its full answer; `Err` when the server cannot be
/// used at all (bad address, unreachable, no good first answer).
pub fn run(args: &Args) -> Result<bool, String> {
    let candidates = resolve(args)?;
    let connector = connector(args)?;
    let target = first_answer(
        &candidates,
        Target {
            addr: candidates[0],
            connector,
            server_name: args.url.host.clone(),
            host_header: args.url.host_header(),
            timeout: args.timeout,
        },
        &args.url.path,
    )?;
    let addr = target.addr;

    let stage = Stage {
        target: Target {
            timeout: args.timeout.min(ACT_TIMEOUT),
            ..target.clone()
        },
        path: args.url.path.clone(),
        download_path: args.download_path.clone(),
        curl_ca: args.ca.clone(),
    };
    print_header(args, addr);

    let started = Instant::now();
    let budget = BUDGET_PER_ROUND * args.rounds as u32;
    let mut good = GoodClients::new(target, args.url.path.clone(), args.clients);
    let mut tallies: Vec<(Style, Tally)> =
        args.styles.iter().map(|&s| (s, Tally::default())).collect();
    for round in 1..=args.rounds {
        for (style, tally) in tallies.iter_mut() {
            if started.elapsed() >= budget {
                tally.skipped += 1;
                continue;
            }
            play(*style, &stage, &mut good, tally, round, args.timeout);
        }
        eprintln!(
            "tls-probe: round {round} of {} done after {:.1} s",
            args.rounds,
            started.elapsed().as_secs_f64()
        );
    }

    let named: Vec<(&str, Tally)> = tallies
        .into_iter()
        .map(|(style, tally)| (style.name(), tally))
        .collect();
    let all_ok = named.iter().all(|(_, t)| t.all_ok());
    println!("{}", report::render(&named));
    Ok(all_ok)
}

/// One act of `style` and the good requests after it (and, for a held
/// style, during it).
fn play(
    style: Style,
    stage: &Stage,
    good: &mut GoodClients,
    tally: &mut Tally,
    round: usize,
    timeout: Duration,
) {
    tally.played += 1;
    good.refill(tally, round);
    // Room for every request to take its full timeout, and no more.
    let phase = || Instant::now() + timeout * (REQUESTS_PER_CONNECTION as u32 + 1);
    match style.play(stage) {
        Ok(Played::Done) => good.exercise(tally, round, phase()),
        Ok(Played::Held(held)) => {
            let held_since = Instant::now();
            good.exercise(tally, round, phase());
            if let Some(rest) = MIN_HOLD.checked_sub(held_since.elapsed()) {
                std::thread::sleep(rest);
            }
            if let Err(e) = held.release() {
                tally.act_error(format!("round {round}, releasing: {e}"));
            }
            good.refill(tally, round);
            good.exercise(tally, round, phase());
        }
        Err(e) => {
            tally.act_error(format!("round {round}: {e}"));
            good.exercise(tally, round, phase());
        }
    }
}

/// The server's possible addresses: the URL's host resolved, only the
/// loopback ones unless `--allow-remote`.
fn resolve(args: &Args) -> Result<Vec<SocketAddr>, String> {
    let url = &args.url;
    let all: Vec<SocketAddr> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", url.host))?
        .collect();
    let usable: Vec<SocketAddr> = all
        .iter()
        .copied()
        .filter(|a| args.allow_remote || a.ip().is_loopback())
        .collect();
    if usable.is_empty() {
        let list: Vec<String> = all.iter().map(|a| a.ip().to_string()).collect();
        return Err(format!(
            "{} is not a loopback address ({}); pass --allow-remote to probe it",
            url.host,
            list.join(", ")
        ));
    }
    Ok(usable)
}

/// The good clients' TLS configuration: `--insecure`, `--ca FILE`, or the
/// system's roots.
fn connector(args: &Args) -> Result<SslConnector, String> {
    let builder = if args.insecure {
        let mut builder =
            SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?;
        builder.set_verify(SslVerifyMode::NONE);
        builder
    } else if let Some(ca) = &args.ca {
        tls_connector_builder_trusting(ca).map_err(|e| format!("--ca: {e}"))?
    } else {
        SslConnector::builder(SslMethod::tls_client()).map_err(|e| e.to_string())?
    };
    Ok(builder.build())
}

/// One good request before anything else, on the first of `candidates`
/// that takes a TCP connection: `target` with that address, or why the
/// server cannot be probed (unreachable, wrong trust, wrong path, not TLS).
fn first_answer(candidates: &[SocketAddr], target: Target, path: &str) -> Result<Target, String> {
    let mut last_error = String::from("no address");
    for &addr in candidates {
        let target = Target {
            addr,
            ..target.clone()
        };
        let mut client = match TlsClient::connect_to(&target) {
            Ok(client) => client,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                last_error = format!("cannot connect to {addr}: {e}");
                continue;
            }
            Err(e) => return Err(format!("cannot reach the server: {e}")),
        };
        let response = client
            .request(path)
            .map_err(|e| format!("first request GET {path}: {e}"))?;
        if response.status != 200 {
            return Err(format!(
                "first request GET {path}: status {} instead of 200",
                response.status
            ));
        }
        let _ = client.close();
        return Ok(target);
    }
    Err(last_error)
}

fn print_header(args: &Args, addr: SocketAddr) {
    let trust = match (&args.ca, args.insecure) {
        (_, true) => "good clients do not verify the server".to_owned(),
        (Some(ca), false) => format!("verified with {}", ca.display()),
        (None, false) => "verified with the system's roots".to_owned(),
    };
    println!(
        "tls-probe: https://{}{} at {addr} ({trust})",
        args.url.host_header(),
        args.url.path
    );
    println!(
        "good requests: GET {} -> 200 with its full body; after every abrupt act, \
         {} each on {} keep-alive connections and on {} fresh ones; timeout {} s",
        args.url.path,
        REQUESTS_PER_CONNECTION,
        args.clients,
        args.clients,
        args.timeout.as_secs()
    );
    let names: Vec<&str> = args.styles.iter().map(|s| s.name()).collect();
    println!(
        "styles ({} round{}): {}",
        args.rounds,
        if args.rounds == 1 { "" } else { "s" },
        names.join(", ")
    );
    if let Some(path) = &args.download_path {
        println!("download path for rst-mid-download: {path}");
    }
}
