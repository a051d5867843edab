//! Starting a program the way systemd's socket activation does: a listening
//! socket as descriptor 3, and `LISTEN_PID`, `LISTEN_FDS=1` and
//! `LISTEN_FDNAMES` in its environment.

use std::ffi::OsStr;
use std::os::fd::AsRawFd;
use std::process::Command;

use crate::ffi;

/// Which process `LISTEN_PID` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenPid {
    /// The started program itself, as systemd sets it.
    Program,
    /// Another process: the program must ignore the socket.
    Other(u32),
}

/// A command that runs `program` with `fd3` as its descriptor 3, named
/// `name` in `LISTEN_FDNAMES`. The program's pid is only known once it
/// runs, so a `/bin/sh` sets `LISTEN_PID` to its own pid and `exec`s the
/// program, which keeps that pid. Add the program's arguments with
/// `.args()`; keep `fd3` open until the command is spawned.
pub fn socket_activated(
    program: impl AsRef<OsStr>,
    fd3: &impl AsRawFd,
    name: &str,
    pid: ListenPid,
) -> Command {
    let listen_pid = match pid {
        ListenPid::Program => "$$".to_owned(),
        ListenPid::Other(pid) => pid.to_string(),
    };
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(format!(
            "export LISTEN_PID={listen_pid}; exec \"$0\" \"$@\""
        ))
        .arg(program)
        .env("LISTEN_FDS", "1")
        .env("LISTEN_FDNAMES", name);
    ffi::inherit_as_fd3(&mut cmd, fd3.as_raw_fd());
    cmd
}
