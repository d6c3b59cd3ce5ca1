//! Networking: typed sockets (TCP, UDP, Unix) and the helpers Curio's tutorial
//! uses: `tcp_server`, `run_server`, `unix_server`, `open_connection` …
//!
//! # Invariants
//!
//! - A server runs one task per client. The client socket belongs to the
//!   handler, so it is closed when the handler returns or panics; a handler
//!   that panics or returns an error is reported as a task crash (task, handler,
//!   peer, error) and the server goes on. Nothing a handler returns is dropped
//!   unseen.
//! - When the server ends (cancelled, or a fatal accept error) it closes its
//!   listener and cancels every handler still running, waiting for each.
//! - Host names are resolved on a lane of worker threads of their own
//!   ([`resolve`]; at most [`RESOLVER_THREADS`](crate::workers::RESOLVER_THREADS)
//!   at once, plus as many abandoned lookups), never on the kernel thread and
//!   never on the `run_in_thread` pool, so slow lookups cannot exhaust it.
//!
//! # Example
//!
//! ```
//! use curio::net::{self, TcpStream};
//! curio::run(|| -> curio::Result<()> {
//!     let listener = net::tcp_server_socket("127.0.0.1:0".parse().unwrap(), false)?;
//!     let addr = listener.local_addr()?;
//!     let server = curio::spawn(move || {
//!         net::run_server(listener, |client: TcpStream, _addr| -> curio::Result<()> {
//!             loop {
//!                 let data = client.recv(1000)?;
//!                 if data.is_empty() {
//!                     return Ok(());
//!                 }
//!                 client.sendall(&data)?;
//!             }
//!         })
//!     });
//!     let c = net::open_connection("localhost", addr.port())?;
//!     c.sendall(b"ping")?;
//!     assert_eq!(c.recv(100)?, b"ping");
//!     server.cancel()?; // closes the listener, cancels the handler
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Deref;
use std::os::fd::{AsFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use socket2::{Domain, Protocol, SockAddr, Type};

use crate::error::{Error, Result};
use crate::io::{Socket, SocketReader, SocketStream, SocketWriter};
use crate::task::{self, TaskRef};
use crate::time::disable_cancellation;

macro_rules! socket_wrapper {
    ($(#[$doc:meta])* $name:ident, $std:ty) => {
        $(#[$doc])*
        pub struct $name(Socket);

        impl $name {
            /// The untyped socket.
            pub fn into_socket(self) -> Socket {
                self.0
            }

            /// Wraps the socket in a buffered stream.
            pub fn as_stream(self) -> SocketStream {
                self.0.as_stream()
            }

            #[doc = concat!("Wraps a std `", stringify!($std), "`, switching it to non-blocking mode.")]
            pub fn from_std(s: $std) -> Result<$name> {
                Ok($name(Socket::from_socket2(socket2::Socket::from(OwnedFd::from(s)))?))
            }

            #[doc = concat!("Takes the socket out as a std `", stringify!($std), "` in blocking mode, for synchronous code:")]
            /// deregistered from the kernel first, not closed.
            pub fn into_std(self) -> Result<$std> {
                let s = self.0.into_socket2();
                s.set_nonblocking(false)?;
                Ok(<$std>::from(OwnedFd::from(s)))
            }
        }

        impl From<$name> for OwnedFd {
            /// Takes the fd out: deregistered from the kernel, not closed, still non-blocking.
            fn from(s: $name) -> OwnedFd {
                s.0.into()
            }
        }

        impl IntoRawFd for $name {
            /// Takes the fd out: deregistered from the kernel, not closed, still non-blocking.
            fn into_raw_fd(self) -> RawFd {
                self.0.into_raw_fd()
            }
        }

        impl From<$name> for Socket {
            fn from(s: $name) -> Socket {
                s.0
            }
        }

        impl Deref for $name {
            type Target = Socket;
            fn deref(&self) -> &Socket {
                &self.0
            }
        }

        impl AsFd for $name {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.0.as_fd()
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_tuple(stringify!($name)).field(&self.0.fileno()).finish()
            }
        }

        impl Read for $name {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                (&self.0).read(buf)
            }
        }

        impl Read for &$name {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                (&self.0).read(buf)
            }
        }

        impl Write for $name {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                (&self.0).write(buf)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }

        impl Write for &$name {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                (&self.0).write(buf)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
    };
}

socket_wrapper!(
    /// A TCP connection. Dereferences to [`Socket`] (`recv`, `sendall` …).
    TcpStream,
    std::net::TcpStream
);
socket_wrapper!(
    /// A listening TCP socket.
    TcpListener,
    std::net::TcpListener
);
socket_wrapper!(
    /// A UDP socket.
    UdpSocket,
    std::net::UdpSocket
);
socket_wrapper!(
    /// A Unix stream connection.
    UnixStream,
    std::os::unix::net::UnixStream
);
socket_wrapper!(
    /// A listening Unix stream socket.
    UnixListener,
    std::os::unix::net::UnixListener
);

const BACKLOG: i32 = 1024;

fn inet_addr(a: &SockAddr) -> Result<SocketAddr> {
    a.as_socket()
        .ok_or_else(|| Error::usage("expected an IPv4 or IPv6 socket address"))
}

impl TcpStream {
    /// Connects to `addr`.
    ///
    /// # Cancellation
    ///
    /// A cancel point while connecting; cancelled, the half-made socket is closed.
    pub fn connect(addr: SocketAddr) -> Result<TcpStream> {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        s.connect(&addr.into())?;
        Ok(TcpStream(s))
    }

    /// Connects to `addr` from the local address `source` (port 0: any port).
    ///
    /// # Cancellation
    ///
    /// A cancel point while connecting; cancelled, the half-made socket is closed.
    pub fn connect_from(addr: SocketAddr, source: SocketAddr) -> Result<TcpStream> {
        let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        s.socket().bind(&source.into())?;
        s.connect(&addr.into())?;
        Ok(TcpStream(s))
    }

    /// Splits the connection into a buffered read half and write half, for one
    /// task that reads and another that writes at the same time
    /// ([`Stream::into_split`](crate::Stream::into_split)).
    pub fn into_split(self) -> (SocketReader, SocketWriter) {
        self.as_stream().into_split()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> Result<SocketAddr> {
        inet_addr(&self.socket().peer_addr()?)
    }

    /// This end's address.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        inet_addr(&self.socket().local_addr()?)
    }

    /// Sets `TCP_NODELAY`.
    pub fn set_nodelay(&self, on: bool) -> Result<()> {
        Ok(self.socket().set_tcp_nodelay(on)?)
    }
}

impl TcpListener {
    /// Listens on `addr` with `SO_REUSEADDR`.
    pub fn bind(addr: SocketAddr) -> Result<TcpListener> {
        tcp_server_socket(addr, false)
    }

    /// Accepts a connection.
    ///
    /// # Cancellation
    ///
    /// A cancel point while no connection is pending; cancelled, nothing was accepted.
    pub fn accept(&self) -> Result<(TcpStream, SocketAddr)> {
        let (s, a) = self.0.accept()?;
        Ok((TcpStream(s), inet_addr(&a)?))
    }

    /// The address it listens on (useful after binding port 0).
    pub fn local_addr(&self) -> Result<SocketAddr> {
        inet_addr(&self.socket().local_addr()?)
    }
}

impl UdpSocket {
    /// A UDP socket bound to `addr`.
    pub fn bind(addr: SocketAddr) -> Result<UdpSocket> {
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        s.socket().bind(&addr.into())?;
        Ok(UdpSocket(s))
    }

    /// Receives a datagram; returns its size and sender.
    ///
    /// # Cancellation
    ///
    /// A cancel point while nothing is waiting; cancelled, nothing was read.
    pub fn recvfrom(&self, buf: &mut [u8]) -> Result<(usize, SocketAddr)> {
        let (n, a) = self.0.recvfrom(buf)?;
        Ok((n, inet_addr(&a)?))
    }

    /// Sends a datagram to `addr`.
    ///
    /// # Cancellation
    ///
    /// A cancel point while the buffer is full; cancelled, nothing was sent.
    pub fn sendto(&self, data: &[u8], addr: SocketAddr) -> Result<usize> {
        self.0.sendto(data, &addr.into())
    }

    /// The bound address.
    pub fn local_addr(&self) -> Result<SocketAddr> {
        inet_addr(&self.socket().local_addr()?)
    }
}

impl UnixStream {
    /// Connects to the Unix socket at `path`.
    ///
    /// # Cancellation
    ///
    /// A cancel point while connecting.
    pub fn connect(path: impl AsRef<Path>) -> Result<UnixStream> {
        let s = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        s.connect(&SockAddr::unix(path)?)?;
        Ok(UnixStream(s))
    }

    /// Splits the connection into a buffered read half and write half, for one
    /// task that reads and another that writes at the same time
    /// ([`Stream::into_split`](crate::Stream::into_split)).
    pub fn into_split(self) -> (SocketReader, SocketWriter) {
        self.as_stream().into_split()
    }

    /// A connected pair (like `socketpair(2)`).
    pub fn pair() -> Result<(UnixStream, UnixStream)> {
        let (a, b) = socket2::Socket::pair(Domain::UNIX, Type::STREAM, None)?;
        Ok((
            UnixStream(Socket::from_socket2(a)?),
            UnixStream(Socket::from_socket2(b)?),
        ))
    }
}

impl UnixListener {
    /// Listens on `path` (which must not exist).
    pub fn bind(path: impl AsRef<Path>) -> Result<UnixListener> {
        let s = Socket::new(Domain::UNIX, Type::STREAM, None)?;
        s.socket().bind(&SockAddr::unix(path)?)?;
        s.socket().listen(BACKLOG)?;
        Ok(UnixListener(s))
    }

    /// Accepts a connection.
    ///
    /// # Cancellation
    ///
    /// A cancel point while no connection is pending; cancelled, nothing was accepted.
    pub fn accept(&self) -> Result<(UnixStream, SockAddr)> {
        let (s, a) = self.0.accept()?;
        Ok((UnixStream(s), a))
    }
}

/// A listening TCP socket on `addr` with `SO_REUSEADDR` and, if `reuse_port`,
/// `SO_REUSEPORT` (so several kernels, one per core, can share a port), and
/// the default backlog. [`tcp_server_socket_with`] takes more options.
pub fn tcp_server_socket(addr: SocketAddr, reuse_port: bool) -> Result<TcpListener> {
    tcp_server_socket_with(addr, ListenOptions::new().reuse_port(reuse_port))
}

/// How a listening socket is set up: the `listen(2)` backlog and `SO_REUSEPORT`
/// (`SO_REUSEADDR` is always on). For [`tcp_server_socket_with`] and
/// [`tcp_server_with`].
///
/// ```
/// use curio::net::{ListenOptions, tcp_server_socket_with};
/// curio::run(|| {
///     let opts = ListenOptions::new().backlog(4096).reuse_port(true);
///     let listener = tcp_server_socket_with("127.0.0.1:0".parse().unwrap(), opts).unwrap();
///     assert!(listener.local_addr().unwrap().port() > 0);
/// });
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenOptions {
    backlog: i32,
    reuse_port: bool,
}

impl ListenOptions {
    /// A backlog of 1024 (the kernel caps it at `net.core.somaxconn`, 4096 on
    /// recent Linux) and no `SO_REUSEPORT`.
    pub fn new() -> ListenOptions {
        ListenOptions {
            backlog: BACKLOG,
            reuse_port: false,
        }
    }

    /// How many connections the kernel completes and queues before they are
    /// accepted (at least 1; values above `i32::MAX` are capped there, and the
    /// kernel caps them at `net.core.somaxconn`).
    pub fn backlog(mut self, connections: u32) -> ListenOptions {
        self.backlog = connections.clamp(1, i32::MAX as u32) as i32;
        self
    }

    /// Sets `SO_REUSEPORT`, so several kernels (one per core) can listen on
    /// the same port and share its connections.
    pub fn reuse_port(mut self, on: bool) -> ListenOptions {
        self.reuse_port = on;
        self
    }

    /// The backlog these options ask for.
    pub fn get_backlog(&self) -> u32 {
        self.backlog as u32
    }
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions::new()
    }
}

/// A listening TCP socket on `addr` with `SO_REUSEADDR` and the given options.
pub fn tcp_server_socket_with(addr: SocketAddr, options: ListenOptions) -> Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.socket().set_reuse_address(true)?;
    if options.reuse_port {
        s.socket().set_reuse_port(true)?;
    }
    s.socket().bind(&addr.into())?;
    s.socket().listen(options.backlog)?;
    Ok(TcpListener(s))
}

/// Something a server accepts connections from.
pub trait Listener {
    /// The connection type.
    type Conn: 'static;
    /// The peer address type.
    type Addr: Clone + 'static;
    /// Accepts one connection (a cancel point).
    fn accept_conn(&self) -> Result<(Self::Conn, Self::Addr)>;
    /// The peer as a failure report names it.
    fn describe_peer(addr: &Self::Addr) -> String {
        let _ = addr;
        String::from("a client")
    }
}

impl Listener for TcpListener {
    type Conn = TcpStream;
    type Addr = SocketAddr;
    fn accept_conn(&self) -> Result<(TcpStream, SocketAddr)> {
        self.accept()
    }
    fn describe_peer(addr: &SocketAddr) -> String {
        addr.to_string()
    }
}

impl Listener for UnixListener {
    type Conn = UnixStream;
    type Addr = SockAddr;
    fn accept_conn(&self) -> Result<(UnixStream, SockAddr)> {
        self.accept()
    }
    fn describe_peer(addr: &SockAddr) -> String {
        match addr.as_pathname() {
            Some(path) => path.display().to_string(),
            None => String::from("an unnamed unix socket"),
        }
    }
}

/// What a server's connection handler returns: `()`, or a `Result` (of
/// `()` or of another `HandlerResult`). An `Err` is not dropped: it is
/// reported on stderr as a task crash is, naming the handler's task (named
/// after the handler), the peer and the error (with its `Debug`, which for
/// [`curio::Error`](Error) reads like a message). A cancellation
/// ([`ErrorKind::Cancelled`](crate::ErrorKind::Cancelled)) is how a server
/// stops its handlers, and is not reported.
///
/// Like [`std::process::Termination`] for `main`.
pub trait HandlerResult: 'static {
    /// The failure to report, if the handler failed.
    fn failure(self) -> Option<String>;
}

impl HandlerResult for () {
    fn failure(self) -> Option<String> {
        None
    }
}

impl<T: HandlerResult, E: fmt::Debug + 'static> HandlerResult for std::result::Result<T, E> {
    fn failure(self) -> Option<String> {
        match self {
            Ok(rest) => rest.failure(),
            Err(e) if is_cancelled(&e) => None,
            Err(e) => Some(format!("{e:?}")),
        }
    }
}

/// A `curio::Error` of kind `Cancelled`, bare or inside an `io::Error`.
fn is_cancelled(e: &dyn Any) -> bool {
    let curio = e.downcast_ref::<Error>().or_else(|| {
        e.downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<Error>())
    });
    curio.is_some_and(Error::is_cancelled)
}

/// Serves connections from `listener`, running `handler(conn, addr)` in a new
/// task for each. Runs until cancelled (or a fatal accept error), then closes
/// the listener and cancels every handler still running, waiting for each.
///
/// A handler that returns an error, or panics, is reported as a task crash
/// (see [`HandlerResult`]) and the server goes on:
///
/// ```text
/// curio: task crash: Task(id=3, name='resp_server::serve_client', state=RUNNING) failed:
/// serving 127.0.0.1:50412: line longer than 65536 bytes
/// ```
///
/// Each handler's task is named after the handler (its type name: the path of
/// a function, or `…::{{closure}}`).
///
/// The connection is closed when the handler returns or panics.
///
/// # Cancellation
///
/// Cancelling the server's task is how a server is stopped: it returns the
/// cancellation error after its handlers have finished.
pub fn run_server<L, F, R>(listener: L, handler: F) -> Result<()>
where
    L: Listener,
    F: Fn(L::Conn, L::Addr) -> R + 'static,
    R: HandlerResult,
{
    serve(listener, std::any::type_name::<F>(), handler)
}

/// [`run_server`] whose handler tasks are called `name`.
pub(crate) fn serve<L, F, R>(listener: L, name: &'static str, handler: F) -> Result<()>
where
    L: Listener,
    F: Fn(L::Conn, L::Addr) -> R + 'static,
    R: HandlerResult,
{
    let handler = Rc::new(handler);
    let live: Rc<RefCell<HashMap<u64, TaskRef>>> = Rc::default();
    let result = loop {
        match listener.accept_conn() {
            Ok((conn, addr)) => {
                let (h, live2) = (handler.clone(), live.clone());
                let spawned = task::Builder::new().name(name).spawn(move || {
                    struct Leave(Rc<RefCell<HashMap<u64, TaskRef>>>, u64);
                    impl Drop for Leave {
                        fn drop(&mut self) {
                            self.0.borrow_mut().remove(&self.1);
                        }
                    }
                    let _leave = Leave(live2, crate::trap::current_id());
                    if let Some(failure) = h(conn, addr.clone()).failure() {
                        crate::trap::report_failure(&format!(
                            "serving {}: {failure}",
                            L::describe_peer(&addr)
                        ));
                    }
                });
                match spawned {
                    Ok(t) if !t.is_terminated() => {
                        live.borrow_mut().insert(t.id(), t.as_task_ref().clone());
                    }
                    Ok(_) => {}
                    // No stack for a handler: the connection is closed (it
                    // went with the closure); like a failed accept, wait a
                    // little for memory to come back.
                    Err(e) => {
                        eprintln!(
                            "curio: server could not start a handler ({e}); \
                             closed the connection, going on in 100 ms"
                        );
                        if let Err(e) = crate::time::sleep(Duration::from_millis(100)) {
                            break Err(e);
                        }
                    }
                }
            }
            Err(e) if is_transient(&e) => {
                eprintln!("curio: server accept failed ({e}); retrying in 100 ms");
                if let Err(e) = crate::time::sleep(Duration::from_millis(100)) {
                    break Err(e);
                }
            }
            Err(e) => break Err(e),
        }
    };
    drop(listener);
    let handlers: Vec<TaskRef> = live.borrow().values().cloned().collect();
    for t in &handlers {
        t.cancel_nowait();
    }
    disable_cancellation(|| {
        for t in &handlers {
            let _ = t.wait();
        }
    });
    result
}

fn is_transient(e: &Error) -> bool {
    let Some(io) = e.io_error() else { return false };
    io.kind() == io::ErrorKind::ConnectionAborted
        || matches!(
            io.raw_os_error(),
            Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
        )
}

/// Listens on `addr` and serves each client with `handler` in its own task
/// (see [`run_server`]). The tutorial's `tcp_server('', 25000, echo_client)`.
///
/// # Cancellation
///
/// As [`run_server`].
pub fn tcp_server<F, R>(addr: SocketAddr, handler: F) -> Result<()>
where
    F: Fn(TcpStream, SocketAddr) -> R + 'static,
    R: HandlerResult,
{
    run_server(tcp_server_socket(addr, false)?, handler)
}

/// [`tcp_server`] with listen options (backlog, `SO_REUSEPORT`).
///
/// # Cancellation
///
/// As [`run_server`].
pub fn tcp_server_with<F, R>(addr: SocketAddr, options: ListenOptions, handler: F) -> Result<()>
where
    F: Fn(TcpStream, SocketAddr) -> R + 'static,
    R: HandlerResult,
{
    run_server(tcp_server_socket_with(addr, options)?, handler)
}

/// Listens on the Unix socket `path` and serves each client with `handler`.
///
/// # Cancellation
///
/// As [`run_server`].
pub fn unix_server<F, R>(path: impl AsRef<Path>, handler: F) -> Result<()>
where
    F: Fn(UnixStream, SockAddr) -> R + 'static,
    R: HandlerResult,
{
    run_server(UnixListener::bind(path)?, handler)
}

/// Resolves `host` (on a worker thread) and connects to the first address that
/// accepts, trying each in turn. The same as `Connect::new(host, port).open()`;
/// [`Connect`] also opens TLS connections.
///
/// # Cancellation
///
/// A cancel point while resolving and while connecting.
pub fn open_connection(host: &str, port: u16) -> Result<TcpStream> {
    create_connection(&resolve(host, port)?)
}

/// Resolves `host` and `port` to socket addresses (`getaddrinfo`) on the
/// kernel's name-lookup threads, which are kept apart from the
/// [`run_in_thread`](crate::run_in_thread) pool: at most
/// [`RESOLVER_THREADS`](crate::workers::RESOLVER_THREADS) lookups run at once,
/// further ones wait for a thread.
///
/// ```
/// curio::run(|| {
///     let addrs = curio::net::resolve("localhost", 80).unwrap();
///     assert!(addrs.iter().all(|a| a.port() == 80 && a.ip().is_loopback()));
/// });
/// ```
///
/// # Cancellation
///
/// A cancel point. Cancelled or timed out, it returns at once; a lookup already
/// running finishes on its thread and its answer is dropped (that thread is
/// busy until then).
pub fn resolve(host: &str, port: u16) -> Result<Vec<SocketAddr>> {
    let target = (host.to_string(), port);
    crate::workers::run_in_resolver(move || target.to_socket_addrs().map(|a| a.collect()))?
        .map_err(Error::from)
}

/// [`open_connection`] from the local address `source` (Curio's `source_addr`;
/// port 0: any port).
///
/// # Cancellation
///
/// As [`open_connection`].
pub fn open_connection_from(host: &str, port: u16, source: SocketAddr) -> Result<TcpStream> {
    create_connection_from(&resolve(host, port)?, source)
}

/// An outgoing connection to make: Curio's `open_connection(host, port,
/// ssl=…, server_hostname=…)` as a builder, so that plain and TLS connections
/// are opened the same way.
///
/// [`Connect::open`] makes a plain TCP connection; `.tls()` (or `.tls_with`,
/// in [`crate::tls`]) turns the builder into a
/// [`TlsConnect`](crate::tls::TlsConnect), whose `open` also runs the TLS
/// handshake, verifying the server's certificate for the name `host` unless
/// told another name.
///
/// ```no_run
/// use curio::net::Connect;
/// curio::run(|| -> curio::Result<()> {
///     let plain = Connect::new("example.com", 80).open()?; // a TcpStream
///     let tls = Connect::new("example.com", 443).tls().open()?; // a TlsStream
///     let local = Connect::new("127.0.0.1", 8443).tls().server_name("localhost").open()?;
///     # drop((plain, tls, local));
///     Ok(())
/// })
/// .unwrap();
/// ```
#[derive(Clone, Debug)]
pub struct Connect {
    pub(crate) host: String,
    pub(crate) port: u16,
}

impl Connect {
    /// A connection to `host` (a name or an address) on `port`.
    pub fn new(host: impl Into<String>, port: u16) -> Connect {
        Connect {
            host: host.into(),
            port,
        }
    }

    /// Resolves the host and connects over TCP (see [`open_connection`]).
    ///
    /// # Cancellation
    ///
    /// A cancel point while resolving and while connecting; cancelled, no
    /// socket is left open.
    pub fn open(&self) -> Result<TcpStream> {
        open_connection(&self.host, self.port)
    }
}

/// Connects to the first of `addrs` that accepts; the error of the last one
/// otherwise.
///
/// # Cancellation
///
/// A cancel point while connecting; a cancellation stops the whole attempt.
pub fn create_connection(addrs: &[SocketAddr]) -> Result<TcpStream> {
    connect_first(addrs, TcpStream::connect)
}

/// [`create_connection`] from the local address `source` (Curio's
/// `source_address`; port 0: any port). Addresses of the other family than
/// `source` fail, and the next is tried.
///
/// # Cancellation
///
/// As [`create_connection`].
pub fn create_connection_from(addrs: &[SocketAddr], source: SocketAddr) -> Result<TcpStream> {
    connect_first(addrs, |a| TcpStream::connect_from(a, source))
}

fn connect_first(
    addrs: &[SocketAddr],
    connect: impl Fn(SocketAddr) -> Result<TcpStream>,
) -> Result<TcpStream> {
    let mut last = None;
    for &a in addrs {
        match connect(a) {
            Ok(s) => return Ok(s),
            Err(e) if e.is_cancellation() => return Err(e),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, "no address to connect to").into()
    }))
}

/// Connects to the Unix socket at `path`.
///
/// # Cancellation
///
/// A cancel point while connecting.
pub fn open_unix_connection(path: impl AsRef<Path>) -> Result<UnixStream> {
    UnixStream::connect(path)
}
