//! I/O: the try-then-wait readiness loop, the [`Socket`] wrapper, and streams.
//!
//! Every operation first makes the non-blocking system call. Only when it
//! answers `WouldBlock` does the task wait for readiness (`READ_WAIT` /
//! `WRITE_WAIT`), then try again. An fd is registered with the poller the first
//! time a task has to wait on it, stays registered between waits, and is
//! deregistered when its owner is dropped.
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
//!   through `io::Error` (it never becomes `Interrupted`).
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
//!         s.write(&line)
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
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};

use mio::Token;

use crate::error::{Error, Result};
use crate::kernel;
use crate::poller::Direction;
use crate::sys;
use crate::trap;

mod blocking;

pub use blocking::Blocking;

/// An fd's registration with the poller of the kernel that first waited on it.
pub(crate) struct Registration {
    fd: RawFd,
    /// (kernel id, token), once registered.
    reg: Cell<Option<(u64, Token)>>,
    _not_send: PhantomData<*const ()>,
}

impl Registration {
    pub(crate) fn new(fd: RawFd) -> Registration {
        Registration {
            fd,
            reg: Cell::new(None),
            _not_send: PhantomData,
        }
    }

    /// Waits until the fd is ready in direction `dir`.
    fn wait(&self, dir: Direction) -> Result<()> {
        let token = trap::with_core(|core| match self.reg.get() {
            Some((k, t)) if k == core.id() => Ok(t),
            _ => {
                let t = core.register_fd(self.fd)?;
                self.reg.set(Some((core.id(), t)));
                Ok::<_, Error>(t)
            }
        })?;
        kernel::wait_fd(token, self.fd, dir)
    }

    /// Runs `op` until it does not answer `WouldBlock`, waiting for readiness
    /// in between. `Interrupted` is retried.
    pub(crate) fn retry<R>(
        &self,
        dir: Direction,
        mut op: impl FnMut() -> io::Result<R>,
    ) -> Result<R> {
        loop {
            match op() {
                Ok(v) => return Ok(v),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.wait(dir)?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some((k, t)) = self.reg.take() {
            trap::try_with_core(|core| {
                if core.id() == k {
                    core.deregister_fd(t, self.fd);
                }
            });
        }
    }
}

// ---------------------------------------------------------------------------
// Socket
// ---------------------------------------------------------------------------

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
        sock.set_nonblocking(true)?;
        Ok(Socket {
            reg: Registration::new(sock.as_raw_fd()),
            sock,
        })
    }

    /// A new socket (`socket2` domain, type and protocol), non-blocking.
    pub fn new(
        domain: socket2::Domain,
        ty: socket2::Type,
        protocol: Option<socket2::Protocol>,
    ) -> Result<Socket> {
        Socket::from_socket2(socket2::Socket::new(domain, ty, protocol)?)
    }

    /// The underlying socket2 socket, for options (`set_nodelay`, buffer sizes …).
    pub fn socket(&self) -> &socket2::Socket {
        &self.sock
    }

    /// The fd number.
    pub fn fileno(&self) -> RawFd {
        self.sock.as_raw_fd()
    }

    /// Receives up to `maxsize` bytes; an empty vector means the peer closed.
    ///
    /// # Cancellation
    ///
    /// A cancel point while no data is available. Cancelled, nothing was read.
    pub fn recv(&self, maxsize: usize) -> Result<Vec<u8>> {
        let mut buf = vec![0; maxsize];
        let n = self.recv_into(&mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    /// Receives into `buf`; returns the count (0: the peer closed).
    ///
    /// # Cancellation
    ///
    /// As [`Socket::recv`].
    pub fn recv_into(&self, buf: &mut [u8]) -> Result<usize> {
        self.reg.retry(Direction::Read, || (&self.sock).read(buf))
    }

    /// Sends some of `data`; returns how much.
    ///
    /// # Cancellation
    ///
    /// A cancel point while the send buffer is full. Cancelled, nothing was sent.
    pub fn send(&self, data: &[u8]) -> Result<usize> {
        self.reg.retry(Direction::Write, || self.sock.send(data))
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
        Ok((Socket::from_socket2(s)?, addr))
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
        Ok(FileIo {
            reg: Registration::new(file.as_raw_fd()),
            file,
        })
    }
}

/// What a [`Stream`] reads from and writes to: a [`Socket`] or a [`FileIo`].
pub trait StreamIo {
    /// Reads some bytes (0 at end of file), suspending the task while none are ready.
    fn read_some(&self, buf: &mut [u8]) -> Result<usize>;
    /// Writes all of `data`; on failure the error says how much was written.
    fn write_all_of(&self, data: &[u8]) -> Result<()>;
    /// The fd, for [`Stream::blocking`].
    fn fd(&self) -> BorrowedFd<'_>;
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
}

impl StreamIo for FileIo {
    fn read_some(&self, buf: &mut [u8]) -> Result<usize> {
        self.reg.retry(Direction::Read, || (&self.file).read(buf))
    }
    fn write_all_of(&self, data: &[u8]) -> Result<()> {
        let mut done = 0;
        while done < data.len() {
            match self
                .reg
                .retry(Direction::Write, || (&self.file).write(&data[done..]))
            {
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
}

// ---------------------------------------------------------------------------
// Streams
// ---------------------------------------------------------------------------

/// The default longest line [`Stream::readline`] accepts.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

const CHUNK: usize = 8 * 1024;

/// A buffered stream over a socket or a file: `read`, `read_exactly`,
/// `readline`, lines … and `write`. Bytes read before a cancellation or an
/// error stay buffered for the next read.
pub struct Stream<S: StreamIo> {
    io: S,
    /// Always fully initialised; `buf[pos..end]` is what has been read but
    /// not handed out. Reads land in `buf[end..]`, so the buffer is zeroed
    /// only when it grows, not on every read.
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    max_line: usize,
}

/// A stream over a socket ([`Socket::as_stream`]).
pub type SocketStream = Stream<Socket>;
/// A stream over a pipe, terminal or file.
pub type FileStream = Stream<FileIo>;

impl FileStream {
    /// A stream over `fd` (a pipe end, a child's stdout …), made non-blocking.
    pub fn from_fd(fd: impl Into<OwnedFd>) -> Result<FileStream> {
        Ok(Stream::new(FileIo::new(fd)?))
    }

    /// A stream over a duplicate of this process's standard input.
    pub fn stdin() -> Result<FileStream> {
        FileStream::from_fd(io::stdin().as_fd().try_clone_to_owned()?)
    }

    /// A stream over a duplicate of this process's standard output.
    pub fn stdout() -> Result<FileStream> {
        FileStream::from_fd(io::stdout().as_fd().try_clone_to_owned()?)
    }
}

impl<S: StreamIo> Stream<S> {
    /// A stream over `io`.
    pub fn new(io: S) -> Stream<S> {
        Stream {
            io,
            buf: Vec::new(),
            end: 0,
            pos: 0,
            max_line: DEFAULT_MAX_LINE,
        }
    }

    /// Sets the longest line `readline` accepts (bytes, newline included).
    pub fn set_max_line(&mut self, bytes: usize) {
        self.max_line = bytes.max(1);
    }

    /// The socket or file underneath.
    pub fn get_ref(&self) -> &S {
        &self.io
    }

    /// Bytes read from the fd but not yet handed out.
    pub fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let out = self.buf[self.pos..self.pos + n].to_vec();
        self.consume_buf(n);
        out
    }

    fn consume_buf(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.end {
            self.pos = 0;
            self.end = 0;
        }
    }

    /// Reads more into the buffer; returns how many bytes came (0: end of file).
    fn fill(&mut self) -> Result<usize> {
        if self.pos > 0 && self.buf.len() - self.end < CHUNK {
            self.buf.copy_within(self.pos..self.end, 0);
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.buf.len() - self.end < CHUNK {
            self.buf.resize(self.end + CHUNK, 0);
        }
        let n = self.io.read_some(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Reads up to `maxbytes`: buffered bytes first, else whatever one read
    /// brings. An empty vector means end of file.
    ///
    /// # Cancellation
    ///
    /// A cancel point while nothing is buffered or ready. Cancelled, nothing is lost.
    pub fn read(&mut self, maxbytes: usize) -> Result<Vec<u8>> {
        if self.buffered().is_empty() {
            self.fill()?;
        }
        let n = self.buffered().len().min(maxbytes);
        Ok(self.take(n))
    }

    /// Reads into `buf` until it is full or the end of file; returns the count
    /// (less than `buf.len()` only at end of file).
    ///
    /// # Cancellation
    ///
    /// A cancel point. Cancelled (or failed), the bytes already copied into
    /// `buf` are put back in the stream's buffer, so the next read returns them;
    /// [`Error::bytes_done`] counts them.
    pub fn readinto(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut done = 0;
        while done < buf.len() {
            match self.read_short(&mut buf[done..]) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) => {
                    self.unread(&buf[..done]);
                    return Err(e.with_progress(done));
                }
            }
        }
        Ok(done)
    }

    /// Puts `bytes` back in front of the buffer.
    fn unread(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let mut buf = Vec::with_capacity(bytes.len() + self.end - self.pos);
        buf.extend_from_slice(bytes);
        buf.extend_from_slice(self.buffered());
        self.end = buf.len();
        self.pos = 0;
        self.buf = buf;
    }

    /// One read's worth: buffered bytes, else one read from the fd.
    fn read_short(&mut self, buf: &mut [u8]) -> Result<usize> {
        if self.buffered().is_empty() {
            if buf.len() >= CHUNK {
                return self.io.read_some(buf);
            }
            self.fill()?;
        }
        let n = self.buffered().len().min(buf.len());
        buf[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.consume_buf(n);
        Ok(n)
    }

    /// Reads until end of file.
    ///
    /// # Cancellation
    ///
    /// A cancel point. Cancelled (or failed), everything read so far stays
    /// buffered, and the error's [`Error::bytes_done`] says how much.
    pub fn read_all(&mut self) -> Result<Vec<u8>> {
        loop {
            match self.fill() {
                Ok(0) => return Ok(self.take(self.buffered().len())),
                Ok(_) => {}
                Err(e) => return Err(e.with_progress(self.buffered().len())),
            }
        }
    }

    /// Reads exactly `n` bytes.
    ///
    /// # Errors
    ///
    /// End of file first: an I/O error of kind `UnexpectedEof` whose
    /// [`Error::bytes_done`] is the number of bytes that did arrive; they stay
    /// buffered.
    ///
    /// # Cancellation
    ///
    /// A cancel point. Cancelled, the bytes read so far stay buffered.
    pub fn read_exactly(&mut self, n: usize) -> Result<Vec<u8>> {
        while self.buffered().len() < n {
            match self.fill() {
                Ok(0) => {
                    let got = self.buffered().len();
                    let e = io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!("end of file after {got} of {n} bytes; they stay buffered"),
                    );
                    return Err(Error::from(e).with_progress(got));
                }
                Ok(_) => {}
                Err(e) => return Err(e.with_progress(self.buffered().len())),
            }
        }
        Ok(self.take(n))
    }

    /// Reads one line, newline included; at end of file, the rest (possibly
    /// empty: an empty vector means end of file).
    ///
    /// # Errors
    ///
    /// A line longer than the limit ([`Stream::set_max_line`], 64 KiB by
    /// default) is an I/O error of kind `InvalidData`; its bytes stay buffered.
    ///
    /// # Cancellation
    ///
    /// A cancel point. Cancelled, a partial line stays buffered.
    pub fn readline(&mut self) -> Result<Vec<u8>> {
        let mut searched = 0;
        loop {
            // Only the first `max_line` bytes may hold the end of the line,
            // however the data arrived.
            let unread = self.buffered();
            let window = &unread[..unread.len().min(self.max_line)];
            if let Some(i) = window[searched..].iter().position(|&b| b == b'\n') {
                return Ok(self.take(searched + i + 1));
            }
            searched = window.len();
            if searched >= self.max_line {
                let e = io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "line longer than {} bytes; raise the limit with set_max_line",
                        self.max_line
                    ),
                );
                return Err(Error::from(e).with_progress(searched));
            }
            match self.fill() {
                Ok(0) => return Ok(self.take(self.buffered().len())),
                Ok(_) => {}
                Err(e) => return Err(e.with_progress(self.buffered().len())),
            }
        }
    }

    /// Reads every line until end of file.
    ///
    /// # Cancellation
    ///
    /// A cancel point. Cancelled (or failed), the lines already read are put
    /// back in the buffer, so nothing is lost; [`Error::bytes_done`] counts them.
    pub fn readlines(&mut self) -> Result<Vec<Vec<u8>>> {
        let mut lines = Vec::new();
        loop {
            match self.readline() {
                Ok(line) if line.is_empty() => return Ok(lines),
                Ok(line) => lines.push(line),
                Err(e) => {
                    let back: Vec<u8> = lines.concat();
                    self.unread(&back);
                    return Err(e.with_progress(back.len()));
                }
            }
        }
    }

    /// An iterator over lines (newline included) until end of file.
    pub fn lines(&mut self) -> Lines<'_, S> {
        Lines { stream: self }
    }

    /// Writes all of `data` (streams do not buffer writes).
    ///
    /// # Cancellation
    ///
    /// A cancel point while the fd is not writable; the error's
    /// [`Error::bytes_done`] says how much was written.
    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        self.io.write_all_of(data)
    }

    /// Writes each item in turn.
    ///
    /// # Cancellation
    ///
    /// As [`Stream::write`]; [`Error::bytes_done`] counts all bytes written.
    pub fn writelines<I, B>(&mut self, lines: I) -> Result<()>
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        let mut total = 0;
        for l in lines {
            let l = l.as_ref();
            if let Err(e) = self.io.write_all_of(l) {
                let done = e.bytes_done().unwrap_or(0);
                return Err(e.with_progress(total + done));
            }
            total += l.len();
        }
        Ok(())
    }

    /// Writes are unbuffered, so there is nothing to flush.
    pub fn flush(&mut self) -> Result<()> {
        Ok(())
    }

    /// Closes the stream and its fd (the same as dropping it).
    pub fn close(self) {}

    /// Gives back the socket or file, with any bytes still buffered.
    pub fn into_inner(self) -> (S, Vec<u8>) {
        let rest = self.buffered().to_vec();
        (self.io, rest)
    }

    /// Lends the socket or file to synchronous code, as [`Socket::blocking`]
    /// does: `f` gets a [`Blocking`] handle whose calls block the calling OS
    /// thread, while the fd stays non-blocking for everyone else.
    ///
    /// # Errors
    ///
    /// Refuses (a [`Usage`](crate::ErrorKind::Usage) error, and `f` does not
    /// run) while the stream holds unread buffered bytes, which `f` would
    /// otherwise silently skip: read them first ([`Stream::buffered`] shows
    /// them), or take them with [`Stream::into_inner`].
    ///
    /// # Cancellation
    ///
    /// Not a cancel point itself; `f` may contain cancel points.
    pub fn blocking<R>(&mut self, f: impl FnOnce(&Blocking<BorrowedFd<'_>>) -> R) -> Result<R> {
        let unread = self.buffered().len();
        if unread > 0 {
            return Err(Error::usage(format!(
                "there is unread buffered data ({unread} bytes); read it before \
                 lending the fd, or take it with into_inner"
            )));
        }
        let fd = self.io.fd();
        let socket = sys::fd_kind(fd) == sys::FdKind::Socket;
        Ok(f(&Blocking::new(fd, socket)))
    }
}

/// Lines of a [`Stream`], from [`Stream::lines`].
pub struct Lines<'a, S: StreamIo> {
    stream: &'a mut Stream<S>,
}

impl<S: StreamIo> Iterator for Lines<'_, S> {
    type Item = Result<Vec<u8>>;
    fn next(&mut self) -> Option<Result<Vec<u8>>> {
        match self.stream.readline() {
            Ok(line) if line.is_empty() => None,
            other => Some(other),
        }
    }
}

impl<S: StreamIo> Read for Stream<S> {
    /// A short read, as `Read` expects (unlike [`Stream::readinto`]).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.read_short(buf)?)
    }
}

impl<S: StreamIo> io::BufRead for Stream<S> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.buffered().is_empty() {
            self.fill()?;
        }
        Ok(self.buffered())
    }
    fn consume(&mut self, amt: usize) {
        self.consume_buf(amt.min(self.buffered().len()));
    }
}

impl<S: StreamIo> Write for Stream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.io.write_all_of(buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<S: StreamIo> std::fmt::Debug for Stream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("buffered", &self.buffered().len())
            .finish()
    }
}
