//! Binding a listening socket (Pistache's `Tcp::Listener` options); the
//! accepting is in `accept.rs`.

use std::io;
use std::net::{SocketAddr, TcpListener as StdListener};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener as StdUnixListener;
use std::path::{Path, PathBuf};

use mio::net::{TcpListener, UnixListener};
use socket2::{Domain, Protocol as SockProtocol, Socket, Type};

use crate::socket::{Socket as Conn, UNIX_PEER_ADDR};

/// Socket options for the listening socket and accepted connections
/// (Pistache's `Tcp::Options`). Start from [`ListenerOptions::default`]
/// and set the fields you need (new fields may be added in minor releases).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ListenerOptions {
    /// `SO_REUSEADDR` (default on): rebind at once after a restart.
    pub reuse_addr: bool,
    /// `SO_REUSEPORT` (default off): several sockets share the port.
    pub reuse_port: bool,
    /// `TCP_NODELAY` on accepted connections (default on).
    pub no_delay: bool,
    /// Close-on-exec on the listening socket (default on; accepted sockets
    /// always get it, from `accept4(SOCK_CLOEXEC)`).
    pub close_on_exec: bool,
    /// `listen(2)` backlog (default 4096; the kernel caps it at
    /// `net.core.somaxconn`).
    pub backlog: i32,
    /// For an IPv6 address, accept only IPv6 (`IPV6_V6ONLY`, default on, so
    /// `[::]` and `0.0.0.0` can be bound side by side).
    pub only_v6: bool,
}

impl Default for ListenerOptions {
    fn default() -> Self {
        ListenerOptions {
            reuse_addr: true,
            reuse_port: false,
            no_delay: true,
            close_on_exec: true,
            backlog: 4096,
            only_v6: true,
        }
    }
}

/// A bound, listening TCP socket, not yet accepting. Bind first to learn the
/// port (`127.0.0.1:0` picks an ephemeral one), then hand it to a server.
#[derive(Debug)]
#[must_use = "a listener accepts nothing until handed to a server"]
pub struct Listener {
    inner: Inner,
    local_addr: SocketAddr,
    options: ListenerOptions,
}

#[derive(Debug)]
enum Inner {
    Tcp(StdListener),
    Unix(StdUnixListener, SocketFile),
}

/// A Unix domain socket's file, removed when the listener is closed if
/// this process created it (an inherited socket's file belongs to whoever
/// bound it, e.g. systemd).
#[derive(Debug)]
pub(crate) struct SocketFile {
    path: PathBuf,
    owned: bool,
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        if self.owned {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// A listening socket handed to an event loop.
#[derive(Debug)]
pub(crate) enum MioListener {
    Tcp(TcpListener),
    /// The file is held only to be removed with the listener.
    Unix(UnixListener, #[allow(dead_code)] SocketFile),
}

impl MioListener {
    /// `accept4(2)` on the listening socket.
    pub(crate) fn accept(&self) -> io::Result<(Conn, SocketAddr)> {
        match self {
            MioListener::Tcp(l) => l.accept().map(|(s, a)| (Conn::Tcp(s), a)),
            MioListener::Unix(l, _) => l.accept().map(|(s, _)| (Conn::Unix(s), UNIX_PEER_ADDR)),
        }
    }

    /// The socket, to register with a poller.
    pub(crate) fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            MioListener::Tcp(l) => l,
            MioListener::Unix(l, _) => l,
        }
    }
}

impl Listener {
    /// Binds and listens on `addr` with `options`. A busy port is an error
    /// of kind [`io::ErrorKind::AddrInUse`] naming the address.
    pub fn bind(addr: SocketAddr, options: ListenerOptions) -> io::Result<Listener> {
        let context = |e: io::Error, what: &str| {
            io::Error::new(e.kind(), format!("cannot {what} {addr}: {e}"))
        };
        let socket = Socket::new(
            Domain::for_address(addr),
            Type::STREAM,
            Some(SockProtocol::TCP),
        )
        .map_err(|e| context(e, "create a socket for"))?;
        if !options.close_on_exec {
            socket
                .set_cloexec(false)
                .map_err(|e| context(e, "clear close-on-exec on"))?;
        }
        socket
            .set_reuse_address(options.reuse_addr)
            .map_err(|e| context(e, "set SO_REUSEADDR on"))?;
        if options.reuse_port {
            socket
                .set_reuse_port(true)
                .map_err(|e| context(e, "set SO_REUSEPORT on"))?;
        }
        if addr.is_ipv6() {
            socket
                .set_only_v6(options.only_v6)
                .map_err(|e| context(e, "set IPV6_V6ONLY on"))?;
        }
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into()).map_err(|e| context(e, "bind"))?;
        socket
            .listen(options.backlog)
            .map_err(|e| context(e, "listen on"))?;
        let inner: StdListener = socket.into();
        let local_addr = inner.local_addr()?;
        Ok(Listener {
            inner: Inner::Tcp(inner),
            local_addr,
            options,
        })
    }

    /// Binds and listens on a Unix domain socket at `path` (for a local
    /// reverse proxy, say). A stale socket file left by a dead server is
    /// replaced; one a live server answers on is an
    /// [`io::ErrorKind::AddrInUse`] error. The file is removed when the
    /// server stops. Connections report [`UNIX_PEER_ADDR`] as their peer.
    pub fn bind_unix(path: impl AsRef<Path>, options: ListenerOptions) -> io::Result<Listener> {
        let path = path.as_ref();
        let context = |e: io::Error, what: &str| {
            io::Error::new(e.kind(), format!("cannot {what} {}: {e}", path.display()))
        };
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "cannot bind {}: a server is listening there",
                        path.display()
                    ),
                ));
            }
            let is_socket = std::fs::symlink_metadata(path)
                .map(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
                .unwrap_or(false);
            if !is_socket {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("cannot bind {}: not a socket file", path.display()),
                ));
            }
            std::fs::remove_file(path).map_err(|e| context(e, "remove the stale socket"))?;
        }
        let socket = Socket::new(Domain::UNIX, Type::STREAM, None)
            .map_err(|e| context(e, "create a socket for"))?;
        if !options.close_on_exec {
            socket
                .set_cloexec(false)
                .map_err(|e| context(e, "clear close-on-exec on"))?;
        }
        socket.set_nonblocking(true)?;
        let addr = socket2::SockAddr::unix(path).map_err(|e| context(e, "use the path"))?;
        socket.bind(&addr).map_err(|e| context(e, "bind"))?;
        socket
            .listen(options.backlog)
            .map_err(|e| context(e, "listen on"))?;
        Ok(Listener {
            inner: Inner::Unix(
                socket.into(),
                SocketFile {
                    path: path.to_owned(),
                    owned: true,
                },
            ),
            local_addr: UNIX_PEER_ADDR,
            options,
        })
    }

    /// Serves on a listening socket that was opened elsewhere: inherited
    /// from a service manager (see [`crate::systemd_listeners`], which
    /// calls this) or handed over by a parent process.
    ///
    /// `fd` must be a stream socket (TCP over IPv4 or IPv6, or Unix domain)
    /// on which `listen(2)` was called; anything else is an
    /// [`io::ErrorKind::InvalidInput`] error that names the descriptor and
    /// what it is. The socket is made non-blocking, and close-on-exec as
    /// `options.close_on_exec` says. The options that shape binding
    /// (`reuse_addr`, `backlog`, `only_v6`) do not apply: the socket is
    /// bound already; `reuse_port` is read back from the socket. A Unix
    /// domain socket's file is left in place when the listener closes (it
    /// belongs to whoever bound it).
    pub fn from_fd(fd: OwnedFd, mut options: ListenerOptions) -> io::Result<Listener> {
        let raw = fd.as_raw_fd();
        let socket = Socket::from(fd);
        let refuse = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("cannot serve on fd {raw}: {what}"),
            )
        };
        let context = |e: io::Error, what: &str| {
            io::Error::new(e.kind(), format!("fd {raw}: cannot {what}: {e}"))
        };
        let kind = match socket.r#type() {
            Ok(kind) => kind,
            Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => {
                return Err(refuse("not a socket"));
            }
            Err(e) => return Err(context(e, "read its socket type")),
        };
        if kind != Type::STREAM {
            return Err(refuse("not a stream socket"));
        }
        if !socket
            .is_listener()
            .map_err(|e| context(e, "read SO_ACCEPTCONN"))?
        {
            return Err(refuse("a stream socket that is not listening"));
        }
        socket
            .set_cloexec(options.close_on_exec)
            .map_err(|e| context(e, "set close-on-exec"))?;
        socket
            .set_nonblocking(true)
            .map_err(|e| context(e, "make it non-blocking"))?;
        options.reuse_port = socket.reuse_port().unwrap_or(false);
        let domain = socket.domain().map_err(|e| context(e, "read its domain"))?;
        if domain == Domain::IPV4 || domain == Domain::IPV6 {
            let inner: StdListener = socket.into();
            let local_addr = inner
                .local_addr()
                .map_err(|e| context(e, "read its address"))?;
            Ok(Listener {
                inner: Inner::Tcp(inner),
                local_addr,
                options,
            })
        } else if domain == Domain::UNIX {
            let inner: StdUnixListener = socket.into();
            let path = inner
                .local_addr()
                .map_err(|e| context(e, "read its address"))?
                .as_pathname()
                .map(Path::to_path_buf)
                .unwrap_or_default();
            Ok(Listener {
                inner: Inner::Unix(inner, SocketFile { path, owned: false }),
                local_addr: UNIX_PEER_ADDR,
                options,
            })
        } else {
            Err(refuse("neither an IP nor a Unix domain socket"))
        }
    }

    /// The path of a Unix domain socket listener.
    pub fn unix_path(&self) -> Option<&Path> {
        match &self.inner {
            Inner::Unix(_, file) => Some(&file.path),
            Inner::Tcp(_) => None,
        }
    }

    /// The bound address, with the real port when bound to port 0
    /// ([`UNIX_PEER_ADDR`] for a Unix domain socket).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The options it was bound with.
    pub fn options(&self) -> &ListenerOptions {
        &self.options
    }

    /// Another listener on the same address (`SO_REUSEPORT` must be on).
    pub(crate) fn sibling(&self) -> io::Result<Listener> {
        if self.unix_path().is_some() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a Unix domain socket cannot be shared by per-worker listeners",
            ));
        }
        Listener::bind(self.local_addr, self.options.clone())
    }

    pub(crate) fn into_mio(self) -> MioListener {
        match self.inner {
            Inner::Tcp(l) => MioListener::Tcp(TcpListener::from_std(l)),
            Inner::Unix(l, path) => MioListener::Unix(UnixListener::from_std(l), path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_zero_is_ephemeral_and_readable_back() {
        let l = Listener::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
        assert_ne!(l.local_addr().port(), 0);
        let l6 = Listener::bind("[::1]:0".parse().unwrap(), Default::default());
        if let Ok(l6) = l6 {
            assert!(l6.local_addr().is_ipv6());
            assert_ne!(l6.local_addr().port(), 0);
        }
    }

    #[test]
    fn busy_port_is_a_clear_error() {
        let no_reuse = ListenerOptions {
            reuse_addr: false,
            ..Default::default()
        };
        let first = Listener::bind("127.0.0.1:0".parse().unwrap(), no_reuse.clone()).unwrap();
        let err = Listener::bind(first.local_addr(), no_reuse).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(
            err.to_string().contains(&first.local_addr().to_string()),
            "{err}"
        );
    }

    #[test]
    fn from_fd_takes_a_listening_socket_and_refuses_anything_else() {
        // A listening TCP socket: served, at its own address.
        let bound = Listener::bind("127.0.0.1:0".parse().unwrap(), Default::default()).unwrap();
        let addr = bound.local_addr();
        let Inner::Tcp(std) = bound.inner else {
            unreachable!()
        };
        let l = Listener::from_fd(OwnedFd::from(std), Default::default()).unwrap();
        assert_eq!(l.local_addr(), addr);
        assert!(!l.options().reuse_port);

        let refused = |fd: OwnedFd, says: &str| {
            let err = Listener::from_fd(fd, Default::default()).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{err}");
            assert!(err.to_string().contains(says), "{err}");
        };
        let file = std::fs::File::open("/dev/null").unwrap();
        refused(OwnedFd::from(file), "not a socket");
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        refused(OwnedFd::from(udp), "not a stream socket");
        let unlistened = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        unlistened
            .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        refused(OwnedFd::from(unlistened), "not listening");
    }

    #[test]
    fn an_inherited_unix_socket_keeps_its_file() {
        let path =
            std::env::temp_dir().join(format!("pistachio-inherit-{}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let std = StdUnixListener::bind(&path).unwrap();
        let l = Listener::from_fd(OwnedFd::from(std), Default::default()).unwrap();
        assert_eq!(l.unix_path(), Some(path.as_path()));
        drop(l);
        assert!(path.exists(), "the file belongs to whoever bound it");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn reuse_port_lets_two_listeners_share_a_port() {
        let opts = ListenerOptions {
            reuse_port: true,
            ..Default::default()
        };
        let a = Listener::bind("127.0.0.1:0".parse().unwrap(), opts.clone()).unwrap();
        let b = Listener::bind(a.local_addr(), opts).unwrap();
        assert_eq!(a.local_addr(), b.local_addr());
    }
}
