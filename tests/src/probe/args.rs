//! The probe's command line: `tls-probe URL [options]`.

use std::path::PathBuf;
use std::time::Duration;

use super::styles::Style;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Probe a server.
    Run(Args),
    /// Print [`help`] and exit successfully.
    Help,
}

/// The options of a probe run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// The server and the good path.
    pub url: ProbeUrl,
    /// PEM CA file the good clients (and libcurl) verify the server with.
    pub ca: Option<PathBuf>,
    /// Good clients do not verify the server.
    pub insecure: bool,
    /// A path answering a large body, for `rst-mid-download`.
    pub download_path: Option<String>,
    /// How many times every style is played.
    pub rounds: usize,
    /// Good keep-alive clients (and fresh connections after each act).
    pub clients: usize,
    /// Timeout of every good request (and its connect and handshake).
    pub timeout: Duration,
    /// The styles to play, in the order given.
    pub styles: Vec<Style>,
    /// Accept addresses that are not loopback.
    pub allow_remote: bool,
}

/// An `https://HOST[:PORT][/PATH]` URL, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeUrl {
    /// The host as written, without IPv6 brackets.
    pub host: String,
    /// The port (443 if the URL names none).
    pub port: u16,
    /// The path and query, starting with `/`.
    pub path: String,
}

impl ProbeUrl {
    /// Parses `https://HOST[:PORT][/PATH]`; `HOST` may be a name, an IPv4
    /// address or a bracketed IPv6 address.
    pub fn parse(url: &str) -> Result<ProbeUrl, String> {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| format!("{url:?}: the URL must start with https://"))?;
        let (authority, path) = match rest.find('/') {
            Some(slash) => (&rest[..slash], &rest[slash..]),
            None => (rest, "/"),
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("{url:?}: unclosed '[' in the host"))?;
            let port = match after {
                "" => None,
                p => Some(
                    p.strip_prefix(':')
                        .ok_or_else(|| format!("{url:?}: junk after ']'"))?,
                ),
            };
            (host, port)
        } else {
            match authority.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (authority, None),
            }
        };
        if host.is_empty() || host.contains('@') {
            return Err(format!("{url:?}: no usable host"));
        }
        let port = match port {
            None => 443,
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("{url:?}: bad port {p:?}"))?,
        };
        Ok(ProbeUrl {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    /// The `Host` header for this URL: `host:port`, IPv6 in brackets.
    pub fn host_header(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// The `--help` text: usage, options, one line per style, exit statuses.
pub fn help() -> String {
    let mut text = String::from(
        "\
tls-probe: checks that an HTTPS server keeps answering good clients while
other clients misbehave at the TLS level (no close_notify, resets, garbage,
stalled handshakes, a libcurl hostname-mismatch drop, ...).

usage: tls-probe https://HOST:PORT[/PATH] [options]

  --ca FILE             PEM CA to verify the server with (default: system roots)
  --insecure            good clients do not verify the server
  --download-path PATH  a path with a large body (>= 1 MiB), for rst-mid-download
  --rounds N            times each style is played (default 3)
  --clients N           good keep-alive clients (default 4)
  --timeout SECS        timeout of each good request (default 5)
  --styles a,b,...      play only these styles (default: all)
  --allow-remote        allow a server that is not on loopback
  -h, --help            this text

Good requests are GET PATH (default /) and must get 200 with a complete body.
Every abrupt act is followed by requests on the keep-alive clients (opened
before the act) and on as many fresh connections.

styles:
",
    );
    for style in Style::ALL {
        text.push_str(&format!("  {:<24}{}\n", style.name(), style.describe()));
    }
    text.push_str(
        "
exit status: 0 every good request got its full answer; 1 some did not;
2 usage error or the server cannot be reached.",
    );
    text
}

/// Parses the arguments after the program name.
pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut url = None;
    let mut parsed = Args {
        url: ProbeUrl {
            host: String::new(),
            port: 0,
            path: String::new(),
        },
        ca: None,
        insecure: false,
        download_path: None,
        rounds: 3,
        clients: 4,
        timeout: Duration::from_secs(5),
        styles: Style::ALL.to_vec(),
        allow_remote: false,
    };
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| it.next().ok_or_else(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "-h" | "--help" => return Ok(Command::Help),
            "--ca" => parsed.ca = Some(PathBuf::from(value("--ca")?)),
            "--insecure" => parsed.insecure = true,
            "--allow-remote" => parsed.allow_remote = true,
            "--download-path" => {
                let path = value("--download-path")?;
                if !path.starts_with('/') {
                    return Err(format!("--download-path {path:?}: must start with /"));
                }
                parsed.download_path = Some(path);
            }
            "--rounds" => parsed.rounds = number("--rounds", &value("--rounds")?, 1, 1000)?,
            "--clients" => parsed.clients = number("--clients", &value("--clients")?, 1, 64)?,
            "--timeout" => {
                let secs = number("--timeout", &value("--timeout")?, 1, 300)?;
                parsed.timeout = Duration::from_secs(secs as u64);
            }
            "--styles" => parsed.styles = styles(&value("--styles")?)?,
            flag if flag.starts_with('-') => return Err(format!("unknown option {flag}")),
            positional => {
                if url.is_some() {
                    return Err(format!("a second URL: {positional}"));
                }
                url = Some(ProbeUrl::parse(positional)?);
            }
        }
    }
    parsed.url = url.ok_or("no URL given")?;
    Ok(Command::Run(parsed))
}

fn number(flag: &str, text: &str, min: usize, max: usize) -> Result<usize, String> {
    text.parse::<usize>()
        .ok()
        .filter(|n| (min..=max).contains(n))
        .ok_or_else(|| format!("{flag} {text:?}: expected a number from {min} to {max}"))
}

fn styles(list: &str) -> Result<Vec<Style>, String> {
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let style = Style::from_name(name).ok_or_else(|| {
            let known: Vec<&str> = Style::ALL.iter().map(|s| s.name()).collect();
            format!("unknown style {name:?} (known: {})", known.join(", "))
        })?;
        if !out.contains(&style) {
            out.push(style);
        }
    }
    if out.is_empty() {
        return Err("--styles: no style named".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<Args, String> {
        match parse(args.iter().map(|a| a.to_string()))? {
            Command::Run(args) => Ok(args),
            Command::Help => Err("help".into()),
        }
    }

    #[test]
    fn parses_urls() {
        let u = ProbeUrl::parse("https://localhost:9080").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("localhost", 9080, "/")
        );
        let u = ProbeUrl::parse("https://[::1]:8443/big?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 8443, "/big?x=1")
        );
        assert_eq!(u.host_header(), "[::1]:8443");
        assert_eq!(ProbeUrl::parse("https://example.org/").unwrap().port, 443);
        for bad in [
            "http://x:1/",
            "https://:1/",
            "https://x:0/",
            "https://x:y/",
            "https://[::1/",
        ] {
            assert!(ProbeUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_options() {
        let a = run(&[
            "https://127.0.0.1:1/",
            "--rounds",
            "1",
            "--styles",
            "idle-client,no-close-notify",
            "--timeout",
            "2",
            "--insecure",
        ])
        .unwrap();
        assert_eq!(a.rounds, 1);
        assert_eq!(a.styles, vec![Style::IdleClient, Style::NoCloseNotify]);
        assert_eq!(a.timeout, Duration::from_secs(2));
        assert!(a.insecure && !a.allow_remote);
        assert_eq!(run(&["https://h:1", "-h"]), Err("help".into()));
        assert!(run(&[]).is_err());
        assert!(run(&["https://h:1", "--styles", "nope"]).is_err());
        assert!(run(&["https://h:1", "--rounds", "0"]).is_err());
        assert!(run(&["https://h:1", "--bogus"]).is_err());
    }

    #[test]
    fn help_names_every_style() {
        let text = help();
        for style in Style::ALL {
            assert!(text.contains(style.name()), "{}", style.name());
        }
    }
}
