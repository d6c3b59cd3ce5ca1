//! I/O: the try-then-wait readiness loop, the [`Socket`] wrapper, and streams.
//!
//! Every operation first makes the non-blocking system call. Only when it
//! answers `WouldBlock` does the task wait for readiness (`READ_WAIT` /
//! `WRITE_WAIT`), then try again; after a short read or write on a stream
//! socket or pipe (the kernel buffer was drained), the next operation waits
//! first, so a request costs one read, not two. An fd is registered with the
//! poller the first time a task has to wait on it (or drains it), stays
//! registered between waits, and is deregistered when its owner is dropped or
//! its fd is taken out (`into_socket2`, `OwnedFd::from`).
//!
//! # Invariants
//!
//! - One task may wait to read and one to write on an fd at a time; a second
//!   gets [`ErrorKind::ResourceBusy`](crate::ErrorKind::ResourceBusy).
//! - A wait is a cancel point. A cancelled or timed-out wait leaves the task
//!   registered as waiter on nothing; the fd stays registered for the next wait.
//! - Operations that fail after partial progress say how far they got
//!   ([`Error::bytes_done`]); a stream keeps bytes it read before a cancellation
//!   or an error in its buffer, so the next read returns them.
//! - Sockets and streams implement `std::io::Read` and `Write` (streams also
//!   `BufRead`) by suspending the task, and a cancellation survives the trip
//!   through `io::Error` (it never becomes `Interrupted`). No inherent method
//!   shadows a `Read`/`Write` method with another meaning.
//! - Lending an fd to synchronous code ([`Socket::blocking`],
//!   [`Stream::blocking`]) never changes its file status flags, which every
//!   duplicate shares: the lent [`Blocking`] handle waits in `poll(2)` itself,
//!   so other tasks using the fd are never stalled by the loan.
//!
//! # Example
//!
//! ```
//! use curio::net::{TcpListener, TcpStream};
//! curio::run(|| -> curio::Result<()> {
//!     let listener = TcpListener::bind("127.0.0.1:0".parse().unwrap())?;
//!     let addr = listener.local_addr()?;
//!     let server = curio::spawn(move || -> curio::Result<()> {
//!         let (client, _) = listener.accept()?;
//!         let mut s = client.as_stream();
//!         let line = s.readline()?;
//!         s.write_all(&line)
//!     });
//!     let c = TcpStream::connect(addr)?;
//!     c.sendall(b"hello\n")?;
//!     assert_eq!(c.recv(100)?, b"hello\n");
//!     server.join()?
//! })
//! .unwrap();
//! ```

use std::cell::Cell;
use std::fs::File;
use std::io::{self, Read, Write};
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};

use mio::Token;

use crate::error::{Error, Result};
use crate::poller::Direction;
use crate::sys;
use crate::trap;

mod blocking;
mod buffers;
mod split;
mod stream;

pub use blocking::Blocking;
pub use split::{ReadHalf, WriteHalf};
pub use stream::{
    DEFAULT_MAX_LINE, FileStream, Lines, Parts, SocketReader, SocketStream, SocketWriter, Stream,
};

/// An fd's registration with the poller of the kernel that first waited on it,
/// and the try-then-wait loop every operation on it goes through.
///
/// Discussion: one system call per read. The poller records, per fd and
/// direction, whether it may be ready (`trap::fd_ready`): set by every
/// readiness event, whether or not a task waits, and cleared when an operation
/// proves the fd drained. A read from a stream socket or a pipe that returns
/// fewer bytes than it asked for means the kernel buffer was empty at that
/// moment (likewise a short write: the send buffer was full), so it clears the
/// bit, as tokio does, and the next operation in that direction waits at once
/// instead of trying and getting `EAGAIN` (it gets one only when the bit lied:
/// another reader took the bytes). Only registrations that drained an fd look
/// the bit up (`unready`), so other I/O pays nothing for it. Bytes that arrive
/// after that read make the edge-triggered poller report the fd again, and that
/// report sets the bit even while no task waits (the kernel polls only between
/// run slices, so no report can fall between an operation and the bookkeeping
/// that follows it in the same slice). Datagram sockets, terminals and regular
/// files are never marked drained by a short transfer: a short datagram or a
/// line from a terminal says nothing about what else is queued.
pub(crate) struct Registration {
    fd: RawFd,
    /// (kernel id, token), once registered.
    reg: Cell<Option<(u64, Token)>>,
    /// A transfer shorter than asked drains the fd (stream sockets, pipes).
    short_drains: bool,
    /// Directions ([`dir_bit`]) this registration last told the poller were
    /// not ready, and has not seen ready since. Only then does an operation
    /// ask the poller before trying, so the common path (nothing drained)
    /// does not reach the kernel's state at all.
    unready: Cell<u8>,
    _not_send: PhantomData<*const ()>,
}

fn dir_bit(dir: Direction) -> u8 {
    match dir {
        Direction::Read => 1,
        Direction::Write => 2,
    }
}

impl Registration {
    /// A registration for `fd`; transfers shorter than asked say nothing about
    /// what is left (the safe default for any fd). The entry point for
    /// services that wait on other kinds of fd.
    #[allow(dead_code)]
    pub(crate) fn new(fd: RawFd) -> Registration {
        Registration::with_short_drains(fd, false)
    }

    /// A registration for `fd` that treats a short read or write as proof that
    /// the kernel buffer was drained (true for stream sockets and pipes only).
    pub(crate) fn with_short_drains(fd: RawFd, short_drains: bool) -> Registration {
        Registration {
            fd,
            reg: Cell::new(None),
            short_drains,
            unready: Cell::new(0),
            _not_send: PhantomData,
        }
    }

    /// The fd's token in this thread's kernel, registering it there first if
    /// need be.
    fn token(&self) -> Result<Token> {
        let kernel = trap::kernel_id();
        match self.reg.get() {
            Some((k, t)) if Some(k) == kernel => Ok(t),
            _ => {
                let (k, t) = trap::register_fd(self.fd)?;
                self.reg.set(Some((k, t)));
                Ok(t)
            }
        }
    }

    /// The fd is not ready in direction `dir` (an operation answered
    /// `WouldBlock`, or it is known to be drained): waits until the poller
    /// reports it ready.
    ///
    /// An `EAGAIN` does not clear the poller's bit: the wait that follows does
    /// not look at it, and leaving it saves the kernel a store on the common
    /// path. (After a cancelled wait the next operation therefore tries first.)
    #[inline]
    fn wait(&self, dir: Direction) -> Result<()> {
        let token = self.token()?;
        trap::wait_fd(token, self.fd, dir)?;
        // Woken by a readiness report, which set the poller's bit again.
        self.unready.set(self.unready.get() & !dir_bit(dir));
        Ok(())
    }

    /// True if the fd is registered in this kernel and known not to be ready
    /// in direction `dir`.
    #[inline]
    fn known_unready(&self, dir: Direction) -> bool {
        self.unready.get() & dir_bit(dir) != 0 && self.ask_unready(dir)
    }

    /// The slow part of [`known_unready`](Registration::known_unready): ask the
    /// poller whether a report came since.
    #[inline(never)]
    fn ask_unready(&self, dir: Direction) -> bool {
        let unready = match self.reg.get() {
            None => false,
            Some((k, t)) => !trap::fd_ready(k, t, dir),
        };
        if !unready {
            self.unready.set(self.unready.get() & !dir_bit(dir));
        }
        unready
    }

    /// Runs `op` until it does not answer `WouldBlock`, waiting for readiness
    /// in between (and first, if the fd is known not to be ready). `Interrupted`
    /// is retried.
    pub(crate) fn retry<R>(
        &self,
        dir: Direction,
        mut op: impl FnMut() -> io::Result<R>,
    ) -> Result<R> {
        if self.known_unready(dir) {
            self.wait(dir)?;
        }
        loop {
            match op() {
                Ok(v) => return Ok(v),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(dir)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// [`Registration::retry`] whose waits show as `state` (`SIGNAL_WAIT` for
    /// a signal set's doorbell). The caller makes sure one task at a time
    /// waits on the fd in direction `dir`.
    pub(crate) fn retry_as<R>(
        &self,
        dir: Direction,
        state: crate::kernel::State,
        mut op: impl FnMut() -> io::Result<R>,
    ) -> Result<R> {
        loop {
            match op() {
                Ok(v) => return Ok(v),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    let token = self.token()?;
                    trap::wait_fd_as(token, dir, state)?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Records that an operation made outside [`Registration::retry_transfer`]
    /// (a TLS layer's own reads) found the fd drained in direction `dir`, if
    /// this fd's kind says a short transfer means drained: the next operation
    /// waits first.
    pub(crate) fn mark_drained(&self, dir: Direction) {
        if self.short_drains {
            self.drained(dir);
        }
    }

    /// [`retry`](Registration::retry) for a read or write of up to `want`
    /// bytes: one that moves some but fewer marks the fd drained in `dir`, if
    /// this fd's kind says that a short transfer means drained.
    pub(crate) fn retry_transfer(
        &self,
        dir: Direction,
        want: usize,
        op: impl FnMut() -> io::Result<usize>,
    ) -> Result<usize> {
        let n = self.retry(dir, op)?;
        self.note_transfer(dir, n, want);
        Ok(n)
    }

    /// Records a transfer of `n` of `want` bytes made outside `retry` (see
    /// [`retry_transfer`](Registration::retry_transfer)).
    #[inline]
    fn note_transfer(&self, dir: Direction, n: usize, want: usize) {
        if self.short_drains && n > 0 && n < want {
            self.drained(dir);
        }
    }

    #[inline(never)]
    fn drained(&self, dir: Direction) {
        let marked = self.token().map(|t| trap::set_fd_unready(t, dir)).is_ok();
        if marked {
            self.unready.set(self.unready.get() | dir_bit(dir));
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some((k, t)) = self.reg.take() {
            trap::deregister_fd(k, t, self.fd);
        }
    }
}

// ---------------------------------------------------------------------------
// Socket
// ---------------------------------------------------------------------------

/// The most one [`Socket::recv`] reads.
const RECV_CHUNK: usize = 64 * 1024;

/// True for `SOCK_STREAM` (with or without the `SOCK_NONBLOCK`/`SOCK_CLOEXEC`
/// flags): a byte stream, where a short read means the buffer was drained.
fn is_stream_type(ty: socket2::Type) -> bool {
    i32::from(ty) & !(libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC) == libc::SOCK_STREAM
}

/// A non-blocking socket with Curio's methods. Blocking calls suspend the task.
///
/// The typed wrappers in [`crate::net`] (`TcpStream`, `TcpListener`,
/// `UdpSocket`, `UnixStream`, `UnixListener`) dereference to this. Dropping it
/// deregisters and closes it.
pub struct Socket {
    // Declared first: deregistered before the socket closes.
    reg: Registration,
    sock: socket2::Socket,
}

impl Socket {
    /// Wraps a socket2 socket, switching it to non-blocking mode.
    pub fn from_socket2(sock: socket2::Socket) -> Result<Socket> {
        let stream = sock.r#type().is_ok_and(is_stream_type);
        Socket::wrap(sock, stream)
    }

    /// Wraps `sock` (a stream socket if `stream`), switching it to non-blocking mode.
    fn wrap(sock: socket2::Socket, stream: bool) -> Result<Socket> {
        sock.set_nonblocking(true)?;
        Ok(Socket {
            reg: Registration::with_short_drains(sock.as_raw_fd(), stream),
            sock,
        })
    }

    /// A new socket (`socket2` domain, type and protocol), non-blocking.
    pub fn new(
        domain: socket2::Domain,
        ty: socket2::Type,
        protocol: Option<socket2::Protocol>,
    ) -> Result<Socket> {
        let stream = is_stream_type(ty);
        Socket::wrap(socket2::Socket::new(domain, ty, protocol)?, stream)
    }

    /// The underlying socket2 socket, for options (`set_nodelay`, buffer sizes …).
    pub fn socket(&self) -> &socket2::Socket {
        &self.sock
    }

    /// The poller registration, for protocol layers over this socket (TLS)
    /// that make their own non-blocking calls and wait with `retry`.
    pub(crate) fn registration(&self) -> &Registration {
        &self.reg
    }

    /// The fd number.
    pub fn fileno(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Receives up to `maxsize` bytes (at most 64 KiB per call); an empty
    /// vector means the peer closed.
    ///
    /// # Cancellation
    ///
    /// A cancel point while no data is available. Cancelled, nothing was read.
    pub fn recv(&self, maxsize: usize) -> Result<Vec<u8>> {
        // At most RECV_CHUNK per call (a receive returns what is there, and
        // a short receive is normal), read into memory not zeroed first; the
        // vector returned holds what came, not `maxsize` of capacity, so a
        // `recv(1 << 30)` neither allocates a gigabyte nor keeps one alive.
        let want = maxsize.min(RECV_CHUNK);
        let mut buf = Vec::new();
        self.recv_append(&mut buf, want)?;
        if buf.capacity() > 2 * buf.len().max(64) {
            buf.shrink_to_fit();
        }
        Ok(buf)
    }

    /// Receives into `buf`; returns the count (0: the peer closed).
    ///
    /// # Cancellation
    ///
    /// As [`Socket::recv`].
    pub fn recv_into(&self, buf: &mut [u8]) -> Result<usize> {
        let want = buf.len();
        self.reg.retry_transfer(Direction::Read, want, || {
            sys::read_fd(self.sock.as_fd(), buf, true)
        })
    }

    /// Receives into uninitialised memory (no need to zero a buffer first);
    /// returns the part of `buf` that was filled (empty: the peer closed).
    ///
    /// ```
    /// use std::mem::MaybeUninit;
    /// use curio::net::UnixStream;
    /// curio::run(|| -> curio::Result<()> {
    ///     let (a, b) = UnixStream::pair()?;
    ///     a.sendall(b"raw")?;
    ///     let mut buf = [MaybeUninit::<u8>::uninit(); 64];
    ///     assert_eq!(b.recv_uninit(&mut buf)?, b"raw");
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    ///
    /// # Cancellation
    ///
    /// As [`Socket::recv`].
    pub fn recv_uninit<'a>(&self, buf: &'a mut [MaybeUninit<u8>]) -> Result<&'a mut [u8]> {
        let want = buf.len();
        if self.reg.known_unready(Direction::Read) {
            self.reg.wait(Direction::Read)?;
        }
        let got = sys::read_uninit(self.sock.as_fd(), buf, true, || {
            self.reg.wait(Direction::Read)
        })?;
        self.reg.note_transfer(Direction::Read, got.len(), want);
        Ok(got)
    }

    /// Receives at most `max` bytes into the spare capacity of `buf`, appending
    /// them (the vector grows if it must; nothing is zeroed first); returns how
    /// many came (0: the peer closed).
    ///
    /// # Cancellation
    ///
    /// As [`Socket::recv`]; `buf` is unchanged.
    pub fn recv_append(&self, buf: &mut Vec<u8>, max: usize) -> Result<usize> {
        self.reg.retry_transfer(Direction::Read, max, || {
            sys::read_to_spare(self.sock.as_fd(), buf, max, true)
        })
    }

    /// Sends some of `data`; returns how much.
    ///
    /// # Cancellation
    ///
    /// A cancel point while the send buffer is full. Cancelled, nothing was sent.
    pub fn send(&self, data: &[u8]) -> Result<usize> {
        // MSG_NOSIGNAL: a closed peer is an EPIPE error, never a SIGPIPE that
        // kills a program which restored SIGPIPE's default action.
        self.reg.retry_transfer(Direction::Write, data.len(), || {
            self.sock.send_with_flags(data, libc::MSG_NOSIGNAL)
        })
    }

    /// Sends all of `data`.
    ///
    /// # Cancellation
    ///
    /// A cancel point while the send buffer is full. Cancelled or failed part
    /// way, the error's [`Error::bytes_done`] says how many bytes were sent.
    pub fn sendall(&self, data: &[u8]) -> Result<()> {
        let mut sent = 0;
        while sent < data.len() {
            match self.send(&data[sent..]) {
                Ok(n) => sent += n,
                Err(e) => return Err(e.with_progress(sent)),
            }
        }
        Ok(())
    }

    /// Accepts a connection.
    ///
    /// # Cancellation
    ///
    /// A cancel point while no connection is pending. Cancelled, nothing was accepted.
    pub fn accept(&self) -> Result<(Socket, socket2::SockAddr)> {
        let (s, addr) = self.reg.retry(Direction::Read, || self.sock.accept())?;
        // A connection has the listener's type.
        Ok((Socket::wrap(s, self.reg.short_drains)?, addr))
    }

    /// Connects to `addr`.
    ///
    /// # Cancellation
    ///
    /// A cancel point while the connection is in progress. Cancelled, the socket
    /// is left half-connected: drop it.
    pub fn connect(&self, addr: &socket2::SockAddr) -> Result<()> {
        match self.sock.connect(addr) {
            Ok(()) => return Ok(()),
            Err(e)
                if e.raw_os_error() == Some(libc::EINPROGRESS)
                    || e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e.into()),
        }
        self.reg.wait(Direction::Write)?;
        match self.sock.take_error()? {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }

    /// Receives a datagram into `buf`; returns its size and sender.
    ///
    /// # Cancellation
    ///
    /// A cancel point while no datagram is waiting. Cancelled, nothing was read.
    pub fn recvfrom(&self, buf: &mut [u8]) -> Result<(usize, socket2::SockAddr)> {
        self.reg
            .retry(Direction::Read, || sys::recv_from(&self.sock, buf))
    }

    /// Sends a datagram to `addr`.
    ///
    /// # Cancellation
    ///
    /// A cancel point while the send buffer is full. Cancelled, nothing was sent.
    pub fn sendto(&self, data: &[u8], addr: &socket2::SockAddr) -> Result<usize> {
        self.reg
            .retry(Direction::Write, || self.sock.send_to(data, addr))
    }

    /// Shuts down reading, writing or both.
    pub fn shutdown(&self, how: Shutdown) -> Result<()> {
        Ok(self.sock.shutdown(how)?)
    }

    /// Deregisters and closes the socket (the same as dropping it).
    pub fn close(self) {}

    /// Takes the socket out without closing it: deregistered from the kernel
    /// first, so it can be handed to other code, another kernel or another
    /// thread. It stays in non-blocking mode; call `set_nonblocking(false)` on
    /// it for code that expects a blocking socket.
    pub fn into_socket2(self) -> socket2::Socket {
        let Socket { reg, sock } = self;
        drop(reg); // deregisters while the fd is still open
        sock
    }

    /// Wraps the socket in a buffered [`SocketStream`].
    pub fn as_stream(self) -> SocketStream {
        Stream::new(self)
    }

    /// Lends the socket to synchronous code: `f` gets a [`Blocking`] handle
    /// whose reads and writes wait until they can proceed, by blocking the
    /// calling OS thread. Hand a [`Blocking::try_clone`] of it to a worker
    /// thread ([`run_in_thread`](crate::run_in_thread)) to keep the kernel free;
    /// the clone keeps blocking there after `blocking` returns.
    ///
    /// The socket itself stays in non-blocking mode (that mode belongs to the
    /// open file description every duplicate shares), so other tasks using it
    /// meanwhile are never turned into calls that block the kernel. See
    /// `arch-notes/io-readiness.md`.
    ///
    /// ```
    /// use curio::net::UnixStream;
    /// curio::run(|| -> curio::Result<()> {
    ///     let (a, b) = UnixStream::pair()?;
    ///     a.blocking(|raw| raw.write_all(b"from sync code"))??;
    ///     assert_eq!(b.recv(100)?, b"from sync code");
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// Never fails today; the `Result` matches [`Stream::blocking`].
    ///
    /// # Cancellation
    ///
    /// Not a cancel point itself; `f` may contain cancel points.
    pub fn blocking<R>(&self, f: impl FnOnce(&Blocking<BorrowedFd<'_>>) -> R) -> Result<R> {
        Ok(f(&Blocking::new(self.sock.as_fd(), true)))
    }
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("fd", &self.fileno())
            .finish()
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl From<Socket> for OwnedFd {
    /// As [`Socket::into_socket2`]: deregistered, not closed.
    fn from(s: Socket) -> OwnedFd {
        s.into_socket2().into()
    }
}

impl IntoRawFd for Socket {
    /// As [`Socket::into_socket2`]: deregistered, not closed; the caller owns the fd.
    fn into_raw_fd(self) -> RawFd {
        self.into_socket2().into_raw_fd()
    }
}

impl Read for &Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.recv_into(buf)?)
    }
}

impl Write for &Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(self.send(buf)?)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Files and pipes
// ---------------------------------------------------------------------------

/// A pipe, terminal or file fd in non-blocking mode (what [`FileStream`] reads
/// and writes). Regular files never block, so they are read directly.
pub struct FileIo {
    reg: Registration,
    file: File,
}

impl FileIo {
    /// Takes ownership of `fd` and makes it non-blocking. Note that
    /// non-blocking mode belongs to the open file description: a shared
    /// terminal or pipe becomes non-blocking for every process using it.
    pub fn new(fd: impl Into<OwnedFd>) -> Result<FileIo> {
        let file = File::from(fd.into());
        sys::set_nonblocking(file.as_fd(), true)?;
        let short_drains = match sys::fd_kind(file.as_fd()) {
            sys::FdKind::Pipe => true,
            sys::FdKind::Socket => socket2::SockRef::from(&file)
                .r#type()
                .is_ok_and(is_stream_type),
            sys::FdKind::Other => false,
        };
        Ok(FileIo {
            reg: Registration::with_short_drains(file.as_raw_fd(), short_drains),
            file,
        })
    }

    /// Takes the fd out without closing it (deregistered first). It stays in
    /// non-blocking mode.
    pub fn into_owned_fd(self) -> OwnedFd {
        let FileIo { reg, file } = self;
        drop(reg);
        file.into()
    }
}

impl From<FileIo> for OwnedFd {
    fn from(f: FileIo) -> OwnedFd {
        f.into_owned_fd()
    }
}

impl AsFd for FileIo {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

impl std::fmt::Debug for FileIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileIo")
            .field("fd", &self.file.as_raw_fd())
            .finish()
    }
}

// ---------------------------------------------------------------------------
// What streams read from and write to
// ---------------------------------------------------------------------------

/// What a [`Stream`] reads from and writes to: a [`Socket`], a [`FileIo`], or
/// anything else that reads and writes by suspending the task.
///
/// Every `StreamIo` is also a [`ReadIo`] and a [`WriteIo`]; the two halves of a
/// split stream ([`ReadHalf`], [`WriteHalf`]) are one each.
pub trait StreamIo {
    /// Reads some bytes (0 at end of file), suspending the task while none are ready.
    fn read_some(&self, buf: &mut [u8]) -> Result<usize>;
    /// Writes all of `data`; on failure the error says how much was written.
    fn write_all_of(&self, data: &[u8]) -> Result<()>;
    /// The fd.
    fn fd(&self) -> BorrowedFd<'_>;
    /// Sends anything the layer has accepted but not yet written (a TLS
    /// connection's queued records after a cancelled write). Sockets and files
    /// keep nothing back, so the default does nothing.
    fn flush(&self) -> Result<()> {
        Ok(())
    }
    /// Reads at most `max` bytes into the spare capacity of `buf`, appending
    /// them; returns how many came (0 at end of file). The default reads
    /// through [`StreamIo::read_some`] into zeroed space; sockets and files read
    /// into the spare capacity directly.
    fn read_spare(&self, buf: &mut Vec<u8>, max: usize) -> Result<usize> {
        let len = buf.len();
        buf.resize(len + max, 0);
        let r = self.read_some(&mut buf[len..]);
        buf.truncate(len + *r.as_ref().unwrap_or(&0));
        r
    }
}

/// The reading side of a [`Stream`]: what its read methods need. Every
/// [`StreamIo`] is one, and so is a [`ReadHalf`].
pub trait ReadIo {
    /// As [`StreamIo::read_some`].
    fn read_some(&self, buf: &mut [u8]) -> Result<usize>;
    /// As [`StreamIo::read_spare`].
    fn read_spare(&self, buf: &mut Vec<u8>, max: usize) -> Result<usize>;
}

/// The writing side of a [`Stream`]: what its write methods need. Every
/// [`StreamIo`] is one, and so is a [`WriteHalf`].
pub trait WriteIo {
    /// As [`StreamIo::write_all_of`].
    fn write_all_of(&self, data: &[u8]) -> Result<()>;
    /// As [`StreamIo::flush`].
    fn flush(&self) -> Result<()> {
        Ok(())
    }
}

impl<T: StreamIo + ?Sized> ReadIo for T {
    fn read_some(&self, buf: &mut [u8]) -> Result<usize> {
        StreamIo::read_some(self, buf)
    }
    fn read_spare(&self, buf: &mut Vec<u8>, max: usize) -> Result<usize> {
        StreamIo::read_spare(self, buf, max)
    }
}

impl<T: StreamIo + ?Sized> WriteIo for T {
    fn write_all_of(&self, data: &[u8]) -> Result<()> {
        StreamIo::write_all_of(self, data)
    }
    fn flush(&self) -> Result<()> {
        StreamIo::flush(self)
    }
}

impl StreamIo for Socket {
    fn read_some(&self, buf: &mut [u8]) -> Result<usize> {
        self.recv_into(buf)
    }
    fn write_all_of(&self, data: &[u8]) -> Result<()> {
        self.sendall(data)
    }
    fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
    fn read_spare(&self, buf: &mut Vec<u8>, max: usize) -> Result<usize> {
        self.reg.retry_transfer(Direction::Read, max, || {
            read_to_stream_buffer(self.sock.as_fd(), buf, max, true)
        })
    }
}

/// `sys::read_to_spare` for a stream's read buffer, borrowed from
/// [`buffers`] when it has none and given back when it is empty and the fd has
/// nothing to read: a stream holds no buffer while it waits for input.
fn read_to_stream_buffer(
    fd: BorrowedFd<'_>,
    buf: &mut Vec<u8>,
    max: usize,
    socket: bool,
) -> io::Result<usize> {
    buffers::lend(buf);
    let r = sys::read_to_spare(fd, buf, max, socket);
    if buf.is_empty() && matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock) {
        buffers::give_back(buf);
    }
    r
}

impl StreamIo for FileIo {
    fn read_some(&self, buf: &mut [u8]) -> Result<usize> {
        let want = buf.len();
        self.reg.retry_transfer(Direction::Read, want, || {
            sys::read_fd(self.file.as_fd(), buf, false)
        })
    }
    fn write_all_of(&self, data: &[u8]) -> Result<()> {
        let mut done = 0;
        while done < data.len() {
            match self
                .reg
                .retry_transfer(Direction::Write, data.len() - done, || {
                    sys::write_fd(self.file.as_fd(), &data[done..], false)
                }) {
                Ok(0) => {
                    let e = Error::from(io::Error::from(io::ErrorKind::WriteZero));
                    return Err(e.with_progress(done));
                }
                Ok(n) => done += n,
                Err(e) => return Err(e.with_progress(done)),
            }
        }
        Ok(())
    }
    fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
    fn read_spare(&self, buf: &mut Vec<u8>, max: usize) -> Result<usize> {
        self.reg.retry_transfer(Direction::Read, max, || {
            read_to_stream_buffer(self.file.as_fd(), buf, max, false)
        })
    }
}
