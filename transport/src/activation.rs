//! Listening sockets handed over by a service manager: systemd socket
//! activation (`sd_listen_fds(3)`).
//!
//! The manager binds and listens, then starts the service with the
//! sockets as descriptors 3, 4, … and three variables: `LISTEN_PID` (the
//! process they are meant for), `LISTEN_FDS` (how many) and, optionally,
//! `LISTEN_FDNAMES` (their names, `:`-separated). Because the manager keeps
//! the sockets open across restarts of the service, connections that
//! arrive while the service restarts wait in the kernel's backlog instead
//! of being refused.
//!
//! The parsing is a pure function ([`parse`]); [`systemd_listeners`] reads
//! the variables, unsets them, and takes the descriptors.

use std::io;
use std::os::fd::RawFd;
use std::sync::Mutex;

use log::debug;

use crate::listener::{Listener, ListenerOptions};
use crate::sys;

/// The first descriptor systemd passes (`SD_LISTEN_FDS_START`).
pub const SD_LISTEN_FDS_START: RawFd = 3;

/// The variables of the protocol; all are unset once read.
const VARS: [&str; 4] = [
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    "LISTEN_PIDFDID",
];

/// Held while the variables are read and the descriptors taken, so that
/// each descriptor gets one owner even if two threads ask at once.
static TAKING: Mutex<()> = Mutex::new(());

/// A listening socket inherited from the service manager.
#[derive(Debug)]
#[non_exhaustive]
pub struct InheritedListener {
    /// The descriptor it came as (3, 4, …).
    pub fd: RawFd,
    /// Its name from `LISTEN_FDNAMES` (`FileDescriptorName=` in the
    /// `.socket` unit; systemd's default is the unit's name), or
    /// `"unknown"` when the manager gave no names.
    pub name: String,
    /// The socket, ready to hand to a server.
    pub listener: Listener,
}

/// Takes the listening sockets systemd passed to this process (socket
/// activation), as `sd_listen_fds(3)` with `unset_environment` does:
///
/// * no `LISTEN_PID`, or one naming another process (the variables were
///   inherited from a parent that did not use them): no sockets, `Ok`
///   with an empty list;
/// * otherwise descriptors 3 … 3 + `LISTEN_FDS` − 1, each checked to be a
///   listening stream socket (TCP or Unix domain) and made non-blocking
///   and close-on-exec (as `options.close_on_exec` says), named from
///   `LISTEN_FDNAMES`;
/// * malformed variables, or a descriptor that is not a listening stream
///   socket, are an [`io::ErrorKind::InvalidInput`] error naming the
///   variable or the descriptor: a service started with the wrong
///   sockets should stop, not bind somewhere else.
///
/// In every case `LISTEN_PID`, `LISTEN_FDS`, `LISTEN_FDNAMES` (and
/// `LISTEN_PIDFDID`) are removed from the environment, so child processes
/// do not see them and a second call finds nothing. Changing the
/// environment is not safe while other threads read it: call this at the
/// start of `main`, before any thread is spawned.
///
/// `options` apply to each socket as [`Listener::from_fd`] says
/// (`no_delay` for accepted connections, `close_on_exec`).
pub fn systemd_listeners(options: &ListenerOptions) -> io::Result<Vec<InheritedListener>> {
    let _taking = TAKING.lock().unwrap_or_else(|p| p.into_inner());
    let [pid, fds, names, _] = VARS.map(std::env::var_os);
    for var in VARS {
        std::env::remove_var(var);
    }
    let plan = parse(
        pid.as_deref(),
        fds.as_deref(),
        names.as_deref(),
        std::process::id(),
    )?;
    let mut listeners = Vec::with_capacity(plan.len());
    for (fd, name) in plan {
        let owned = sys::take_inherited_fd(fd).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot serve on fd {fd} ({name}) from LISTEN_FDS: {e}"),
            )
        })?;
        let listener = Listener::from_fd(owned, options.clone())
            .map_err(|e| io::Error::new(e.kind(), format!("{e} ({name}, from LISTEN_FDS)")))?;
        debug!(
            "fd {fd} ({name}): listening socket from the service manager on {}",
            listener.local_addr()
        );
        listeners.push(InheritedListener { fd, name, listener });
    }
    Ok(listeners)
}

/// The descriptors and names the variables announce to process `me`.
pub(crate) fn parse(
    pid: Option<&std::ffi::OsStr>,
    fds: Option<&std::ffi::OsStr>,
    names: Option<&std::ffi::OsStr>,
    me: u32,
) -> io::Result<Vec<(RawFd, String)>> {
    let invalid = |what: String| io::Error::new(io::ErrorKind::InvalidInput, what);
    let text = |name: &str, value: &std::ffi::OsStr| {
        value
            .to_str()
            .map(str::to_owned)
            .ok_or_else(|| invalid(format!("{name} is not valid UTF-8")))
    };
    let Some(pid) = pid else {
        return Ok(Vec::new());
    };
    let pid = text("LISTEN_PID", pid)?;
    let pid: u32 = pid
        .parse()
        .ok()
        .filter(|&p| p > 0)
        .ok_or_else(|| invalid(format!("LISTEN_PID={pid:?} is not a process id")))?;
    if pid != me {
        debug!("LISTEN_PID={pid} names another process (this is {me}): no inherited sockets");
        return Ok(Vec::new());
    }
    let Some(fds) = fds else {
        return Ok(Vec::new());
    };
    let fds = text("LISTEN_FDS", fds)?;
    let count: RawFd = fds
        .parse()
        .ok()
        .filter(|&n| n > 0 && n <= RawFd::MAX - SD_LISTEN_FDS_START)
        .ok_or_else(|| invalid(format!("LISTEN_FDS={fds:?} is not a number of sockets")))?;
    let names: Vec<String> = match names {
        None => vec!["unknown".to_owned(); count as usize],
        Some(names) => {
            let names = text("LISTEN_FDNAMES", names)?;
            let names: Vec<String> = names.split(':').map(str::to_owned).collect();
            if names.len() != count as usize {
                return Err(invalid(format!(
                    "LISTEN_FDNAMES names {} sockets, LISTEN_FDS={count}",
                    names.len()
                )));
            }
            names
        }
    };
    Ok((SD_LISTEN_FDS_START..)
        .zip(names)
        .take(count as usize)
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    fn plan(
        pid: Option<&str>,
        fds: Option<&str>,
        names: Option<&str>,
    ) -> io::Result<Vec<(RawFd, String)>> {
        parse(
            pid.map(OsStr::new),
            fds.map(OsStr::new),
            names.map(OsStr::new),
            42,
        )
    }

    #[test]
    fn sockets_for_this_process_are_numbered_from_3_with_their_names() {
        assert_eq!(
            plan(Some("42"), Some("2"), Some("http:admin")).unwrap(),
            [(3, "http".to_owned()), (4, "admin".to_owned())]
        );
        assert_eq!(
            plan(Some("42"), Some("1"), None).unwrap(),
            [(3, "unknown".to_owned())]
        );
    }

    #[test]
    fn sockets_for_another_process_or_none_at_all_are_ignored() {
        assert!(plan(None, None, None).unwrap().is_empty());
        assert!(plan(None, Some("1"), None).unwrap().is_empty());
        assert!(plan(Some("41"), Some("1"), None).unwrap().is_empty());
        assert!(plan(Some("42"), None, None).unwrap().is_empty());
    }

    #[test]
    fn malformed_variables_are_clear_errors() {
        for (pid, fds, names, says) in [
            ("x", "1", None, "LISTEN_PID=\"x\""),
            ("0", "1", None, "LISTEN_PID=\"0\""),
            ("42", "0", None, "LISTEN_FDS=\"0\""),
            ("42", "-1", None, "LISTEN_FDS=\"-1\""),
            ("42", "two", None, "LISTEN_FDS=\"two\""),
            (
                "42",
                "2",
                Some("only-one"),
                "LISTEN_FDNAMES names 1 sockets",
            ),
        ] {
            let err = plan(Some(pid), Some(fds), names).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
            assert!(err.to_string().contains(says), "{err}");
        }
    }
}
