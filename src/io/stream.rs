//! Buffered streams over a socket, a file, or one half of a split socket.
//!
//! # Invariants
//!
//! - `rbuf[rpos..]` holds bytes read from the fd and not yet handed out; reads
//!   land in `rbuf`'s spare capacity, so nothing is zeroed first. Bytes read
//!   before a cancellation or an error stay there, so the next read returns them.
//! - A stream with nothing buffered holds no read buffer while it waits for
//!   input: `read_more` gives an empty one back (`buffers`), and the fd's
//!   `read_spare` gives back the one it borrowed when the fd has nothing to
//!   read. Idle connections cost no buffer memory.
//! - A method that hands out a borrowed slice (`readline_ref`,
//!   `read_exactly_ref`, `buffered`) only moves `rpos`; the bytes it lent are
//!   moved or dropped by the next call that takes `&mut self`, never before.
//! - `wbuf` holds bytes accepted by `write_all` but not yet written, and is
//!   used only when write buffering is on ([`Stream::set_write_buffer`]);
//!   otherwise writes go out at once, as in Curio. Bytes that could not be
//!   written stay in `wbuf` for the next flush.
//! - Read methods exist when the stream's I/O can read ([`ReadIo`]), write
//!   methods when it can write ([`WriteIo`]): the read half of a split stream
//!   has only the first, the write half only the second.
//!
//! # Example
//!
//! An incremental parser: look at what is buffered, consume what it used, ask
//! for more when a message is incomplete, answer through the write buffer.
//!
//! ```
//! use curio::net::UnixStream;
//! curio::run(|| -> curio::Result<()> {
//!     let (a, b) = UnixStream::pair()?;
//!     a.sendall(b"3:abc2:de")?;
//!     drop(a);
//!     let mut s = b.as_stream();
//!     let mut got = Vec::new();
//!     loop {
//!         let buf = s.buffered();
//!         // A message is a length, a colon and that many bytes.
//!         if let Some(colon) = buf.iter().position(|&c| c == b':') {
//!             let len: usize = std::str::from_utf8(&buf[..colon]).unwrap().parse().unwrap();
//!             if buf.len() >= colon + 1 + len {
//!                 got.push(buf[colon + 1..colon + 1 + len].to_vec());
//!                 s.consume(colon + 1 + len);
//!                 continue;
//!             }
//!         }
//!         if s.read_more()? == 0 {
//!             break; // end of file
//!         }
//!     }
//!     assert_eq!(got, [b"abc".to_vec(), b"de".to_vec()]);
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use super::{Blocking, FileIo, ReadHalf, ReadIo, Socket, WriteHalf, WriteIo};
use crate::error::{Error, Result};
use crate::sys;

/// The default longest line [`Stream::readline`] accepts.
pub const DEFAULT_MAX_LINE: usize = 64 * 1024;

use super::buffers::{self, CHUNK};

/// A buffered stream over a socket or a file (or one half of a split socket):
/// `read_some`, `read_exactly`, `readline`, lines … and `write_all`.
///
/// Bytes read before a cancellation or an error stay buffered for the next
/// read. Writes go out at once unless write buffering is on
/// ([`Stream::set_write_buffer`]). It implements `std::io::Read`, `BufRead` and
/// `Write`, with the same meaning as the inherent methods.
pub struct Stream<S> {
    io: S,
    rbuf: Vec<u8>,
    rpos: usize,
    max_line: usize,
    wbuf: Vec<u8>,
    /// Write-buffer capacity; 0: unbuffered.
    wcap: usize,
}

/// A stream over a socket ([`Socket::as_stream`]).
pub type SocketStream = Stream<Socket>;
/// A stream over a pipe, terminal or file.
pub type FileStream = Stream<FileIo>;
/// The read half of a split socket stream ([`Stream::into_split`]).
pub type SocketReader = Stream<ReadHalf<Socket>>;
/// The write half of a split socket stream ([`Stream::into_split`]).
pub type SocketWriter = Stream<WriteHalf<Socket>>;

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

/// What [`Stream::into_parts`] hands back.
#[derive(Debug)]
pub struct Parts<S> {
    /// The socket or file.
    pub io: S,
    /// Bytes read from it but not handed out.
    pub unread: Vec<u8>,
    /// Bytes accepted by `write_all` but not yet written to it.
    pub unflushed: Vec<u8>,
}

// ---------------------------------------------------------------------------
// Both directions
// ---------------------------------------------------------------------------

impl<S> Stream<S> {
    /// A stream over `io`, with writes unbuffered.
    pub fn new(io: S) -> Stream<S> {
        Stream {
            io,
            rbuf: Vec::new(),
            rpos: 0,
            max_line: DEFAULT_MAX_LINE,
            wbuf: Vec::new(),
            wcap: 0,
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

    /// Bytes read from the fd but not yet handed out. A parser may look at them
    /// and [`consume`](Stream::consume) what it used.
    pub fn buffered(&self) -> &[u8] {
        &self.rbuf[self.rpos..]
    }

    /// Marks the first `n` buffered bytes as used (at most all of them).
    pub fn consume(&mut self, n: usize) {
        self.rpos += n.min(self.rbuf.len() - self.rpos);
    }

    /// Bytes written but not yet flushed (write buffering only).
    pub fn unflushed(&self) -> &[u8] {
        &self.wbuf
    }

    /// Turns write buffering on (`capacity` > 0) or off (0, the default).
    ///
    /// With buffering on, [`write_all`](Stream::write_all) collects bytes until
    /// `capacity` would be exceeded and writes them out then, or at
    /// [`flush`](Stream::flush) or [`close`](Stream::close): a server that
    /// answers pipelined requests makes one write per batch. Flush before
    /// waiting for the peer's next request. Turning it off does not flush.
    pub fn set_write_buffer(&mut self, capacity: usize) {
        self.wcap = capacity;
        if capacity > self.wbuf.capacity() {
            self.wbuf.reserve(capacity - self.wbuf.len());
        }
    }

    /// Splits the stream into a read half and a write half that two tasks may
    /// use at once (one reading, one writing), each with the stream methods of
    /// its direction. Buffered bytes go with their half. The socket closes
    /// when both halves are dropped.
    ///
    /// ```
    /// use curio::net::UnixStream;
    /// curio::run(|| -> curio::Result<()> {
    ///     let (a, b) = UnixStream::pair()?;
    ///     let (mut reader, mut writer) = a.into_split();
    ///     let echo = curio::spawn(move || -> curio::Result<()> {
    ///         let line = reader.readline()?; // one task reads …
    ///         assert_eq!(line, b"hi\n");
    ///         Ok(())
    ///     });
    ///     writer.write_all(b"to b\n")?; // … while another writes
    ///     let mut b = b.as_stream();
    ///     assert_eq!(b.readline()?, b"to b\n");
    ///     b.write_all(b"hi\n")?;
    ///     echo.join()?
    /// })
    /// .unwrap();
    /// ```
    pub fn into_split(self) -> (Stream<ReadHalf<S>>, Stream<WriteHalf<S>>) {
        let Stream {
            io,
            rbuf,
            rpos,
            max_line,
            wbuf,
            wcap,
        } = self;
        let (r, w) = super::split::halves(io);
        let reader = Stream {
            io: r,
            rbuf,
            rpos,
            max_line,
            wbuf: Vec::new(),
            wcap: 0,
        };
        let writer = Stream {
            io: w,
            rbuf: Vec::new(),
            rpos: 0,
            max_line: DEFAULT_MAX_LINE,
            wbuf,
            wcap,
        };
        (reader, writer)
    }

    /// Gives back the socket or file, the bytes read but not handed out, and the
    /// bytes written but not flushed.
    pub fn into_parts(self) -> Parts<S> {
        let Stream {
            io,
            mut rbuf,
            rpos,
            wbuf,
            ..
        } = self;
        rbuf.drain(..rpos);
        Parts {
            io,
            unread: rbuf,
            unflushed: wbuf,
        }
    }

    /// Lends the socket or file to synchronous code, as
    /// [`Socket::blocking`] does: `f` gets a [`Blocking`] handle whose calls
    /// block the calling OS thread, while the fd stays non-blocking for the
    /// kernel's tasks.
    ///
    /// # Errors
    ///
    /// Refuses (a [`Usage`](crate::ErrorKind::Usage) error; `f` does not run)
    /// while the stream holds unread buffered bytes, which `f` would otherwise
    /// silently skip (read them first: [`Stream::buffered`] shows them, or take
    /// them with [`Stream::into_parts`]), or written bytes not yet flushed
    /// ([`Stream::flush`] first).
    ///
    /// # Cancellation
    ///
    /// Not a cancel point itself; `f` may contain cancel points.
    pub fn blocking<R>(&mut self, f: impl FnOnce(&Blocking<BorrowedFd<'_>>) -> R) -> Result<R>
    where
        S: AsFd,
    {
        let unread = self.buffered().len();
        if unread > 0 {
            return Err(Error::usage(format!(
                "there is unread buffered data ({unread} bytes); read it before \
                 lending the fd, or take it with into_parts"
            )));
        }
        if !self.wbuf.is_empty() {
            return Err(Error::usage(format!(
                "there is written data not yet flushed ({} bytes); flush() before \
                 lending the fd",
                self.wbuf.len()
            )));
        }
        let fd = self.io.as_fd();
        let socket = sys::fd_kind(fd) == sys::FdKind::Socket;
        Ok(f(&Blocking::new(fd, socket)))
    }
}

// ---------------------------------------------------------------------------
// Reading
// ---------------------------------------------------------------------------

impl<S: ReadIo> Stream<S> {
    /// Reads more from the fd into the buffer, keeping the bytes already
    /// buffered (unlike `BufRead::fill_buf`, which reads only when the buffer is
    /// empty); returns how many new bytes came (0: end of file). The buffer
    /// grows as needed: a parser bounds what it accepts by looking at
    /// [`buffered`](Stream::buffered)`().len()`.
    ///
    /// # Cancellation
    ///
    /// A cancel point while nothing is ready. Cancelled, the buffer is unchanged.
    pub fn read_more(&mut self) -> Result<usize> {
        if self.rpos == self.rbuf.len() {
            // Empty: give its memory back, so a stream that waits for input
            // holds no buffer (10 000 idle connections would keep 80 MB); the
            // read borrows a chunk again (`buffers`).
            self.rbuf.clear();
            buffers::give_back(&mut self.rbuf);
            self.rpos = 0;
        } else if self.rpos > 0 && self.rbuf.capacity() - self.rbuf.len() < CHUNK {
            // Move the unread bytes to the front rather than grow.
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
        }
        let room = (self.rbuf.capacity() - self.rbuf.len()).max(CHUNK);
        self.io.read_spare(&mut self.rbuf, room)
    }

    /// Reads until at least `n` bytes are buffered or the end of file, the
    /// buffer growing no faster than data arrives (never to `n` up front, so a
    /// peer that announces a huge message and sends nothing costs nothing).
    /// Returns how many bytes are buffered. Consumes nothing: cancelled or
    /// failed, every byte read stays buffered. (For message framing.)
    pub(crate) fn fill_to(&mut self, n: usize) -> Result<usize> {
        while self.buffered().len() < n {
            if self.read_more()? == 0 {
                break;
            }
        }
        Ok(self.buffered().len())
    }

    /// Drops the first `n` buffered bytes (at most what is buffered).
    pub(crate) fn discard(&mut self, n: usize) {
        let n = n.min(self.buffered().len());
        self.rpos += n;
    }

    /// Takes the first `n` buffered bytes (`n` at most what is buffered).
    pub(crate) fn take_buffered(&mut self, n: usize) -> Vec<u8> {
        self.take(n)
    }

    fn take(&mut self, n: usize) -> Vec<u8> {
        let out = self.rbuf[self.rpos..self.rpos + n].to_vec();
        self.rpos += n;
        out
    }

    fn take_ref(&mut self, n: usize) -> &[u8] {
        let start = self.rpos;
        self.rpos += n;
        &self.rbuf[start..start + n]
    }

    /// Reads up to `maxbytes`: buffered bytes first, else whatever one read
    /// brings. An empty vector means end of file. (Curio's `read`; for reading
    /// into your own buffer, use `std::io::Read::read`.)
    ///
    /// # Cancellation
    ///
    /// A cancel point while nothing is buffered or ready. Cancelled, nothing is lost.
    pub fn read_some(&mut self, maxbytes: usize) -> Result<Vec<u8>> {
        if self.buffered().is_empty() {
            self.read_more()?;
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
        let mut buf = Vec::with_capacity(bytes.len() + self.buffered().len());
        buf.extend_from_slice(bytes);
        buf.extend_from_slice(self.buffered());
        self.rbuf = buf;
        self.rpos = 0;
    }

    /// One read's worth: buffered bytes, else one read from the fd.
    fn read_short(&mut self, buf: &mut [u8]) -> Result<usize> {
        if self.buffered().is_empty() {
            if buf.len() >= CHUNK {
                return self.io.read_some(buf);
            }
            self.read_more()?;
        }
        let n = self.buffered().len().min(buf.len());
        buf[..n].copy_from_slice(&self.rbuf[self.rpos..self.rpos + n]);
        self.rpos += n;
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
            match self.read_more() {
                Ok(0) => return Ok(self.take(self.buffered().len())),
                Ok(_) => {}
                Err(e) => return Err(e.with_progress(self.buffered().len())),
            }
        }
    }

    /// Buffers at least `n` bytes, unless end of file comes first.
    fn want(&mut self, n: usize) -> Result<()> {
        while self.buffered().len() < n {
            match self.read_more() {
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
        Ok(())
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
        self.want(n)?;
        Ok(self.take(n))
    }

    /// [`read_exactly`](Stream::read_exactly) without a copy: the bytes are
    /// lent from the stream's buffer until the next call on the stream.
    ///
    /// # Errors and cancellation
    ///
    /// As [`Stream::read_exactly`].
    pub fn read_exactly_ref(&mut self, n: usize) -> Result<&[u8]> {
        self.want(n)?;
        Ok(self.take_ref(n))
    }

    /// The length of the next line (newline included), once buffered; 0 at end
    /// of file with nothing buffered.
    fn line_len(&mut self) -> Result<usize> {
        let mut searched = 0;
        loop {
            // Only the first `max_line` bytes may hold the end of the line,
            // however the data arrived.
            let unread = self.buffered();
            let window = &unread[..unread.len().min(self.max_line)];
            if let Some(i) = window[searched..].iter().position(|&b| b == b'\n') {
                return Ok(searched + i + 1);
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
            match self.read_more() {
                Ok(0) => return Ok(self.buffered().len()),
                Ok(_) => {}
                Err(e) => return Err(e.with_progress(self.buffered().len())),
            }
        }
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
        let n = self.line_len()?;
        Ok(self.take(n))
    }

    /// [`readline`](Stream::readline) without a copy: the line is lent from the
    /// stream's buffer until the next call on the stream. Empty at end of file.
    ///
    /// ```
    /// use curio::net::UnixStream;
    /// curio::run(|| -> curio::Result<()> {
    ///     let (a, b) = UnixStream::pair()?;
    ///     a.sendall(b"PING\r\nECHO hi\r\n")?;
    ///     let mut s = b.as_stream();
    ///     assert_eq!(s.readline_ref()?, b"PING\r\n");
    ///     assert_eq!(s.readline_ref()?, b"ECHO hi\r\n");
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    ///
    /// # Errors and cancellation
    ///
    /// As [`Stream::readline`].
    pub fn readline_ref(&mut self) -> Result<&[u8]> {
        let n = self.line_len()?;
        Ok(self.take_ref(n))
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

    /// The next line (newline included), or `None` at end of file: Curio's
    /// `async for line in stream` for a loop that also writes to the stream,
    /// which [`lines`](Stream::lines) cannot do because its iterator holds the
    /// stream borrowed.
    ///
    /// ```
    /// use curio::net::UnixStream;
    /// curio::run(|| -> curio::Result<()> {
    ///     let (a, b) = UnixStream::pair()?;
    ///     a.sendall(b"one\ntwo\n")?;
    ///     drop(a);
    ///     let mut s = b.as_stream();
    ///     let mut seen = Vec::new();
    ///     while let Some(line) = s.next_line()? {
    ///         seen.push(line);
    ///     }
    ///     assert_eq!(seen, [b"one\n".to_vec(), b"two\n".to_vec()]);
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    ///
    /// # Errors and cancellation
    ///
    /// As [`Stream::readline`].
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>> {
        let line = self.readline()?;
        Ok((!line.is_empty()).then_some(line))
    }

    /// An iterator over lines (newline included) until end of file.
    pub fn lines(&mut self) -> Lines<'_, S> {
        Lines { stream: self }
    }
}

/// Lines of a [`Stream`], from [`Stream::lines`].
pub struct Lines<'a, S: ReadIo> {
    stream: &'a mut Stream<S>,
}

impl<S: ReadIo> Iterator for Lines<'_, S> {
    type Item = Result<Vec<u8>>;
    fn next(&mut self) -> Option<Result<Vec<u8>>> {
        match self.stream.readline() {
            Ok(line) if line.is_empty() => None,
            other => Some(other),
        }
    }
}

impl<S: ReadIo> std::fmt::Debug for Lines<'_, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lines").finish_non_exhaustive()
    }
}

impl<S: ReadIo> Read for Stream<S> {
    /// A short read, as `Read` expects (unlike [`Stream::readinto`]).
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(self.read_short(buf)?)
    }
}

impl<S: ReadIo> io::BufRead for Stream<S> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        if self.buffered().is_empty() {
            self.read_more()?;
        }
        Ok(self.buffered())
    }
    fn consume(&mut self, amt: usize) {
        Stream::consume(self, amt);
    }
}

// ---------------------------------------------------------------------------
// Writing
// ---------------------------------------------------------------------------

impl<S: WriteIo> Stream<S> {
    /// Writes all of `data`: at once, or into the write buffer when buffering
    /// is on ([`Stream::set_write_buffer`]), writing the buffer out first if
    /// `data` does not fit. (Curio's `write`.)
    ///
    /// # Cancellation
    ///
    /// A cancel point while the fd is not writable. Unbuffered, the error's
    /// [`Error::bytes_done`] says how much of `data` was written. Buffered, a
    /// failure while writing out earlier bytes leaves `data` not accepted
    /// (`bytes_done` 0) and the bytes not yet written in the buffer.
    pub fn write_all(&mut self, data: &[u8]) -> Result<()> {
        if self.wbuf.len() + data.len() <= self.wcap {
            self.wbuf.extend_from_slice(data);
            return Ok(());
        }
        if !self.wbuf.is_empty() {
            self.flush().map_err(|e| e.with_progress(0))?;
        }
        if data.len() < self.wcap {
            self.wbuf.extend_from_slice(data);
            return Ok(());
        }
        self.io.write_all_of(data)
    }

    /// Writes each item in turn, as [`Stream::write_all`].
    ///
    /// # Cancellation
    ///
    /// As [`Stream::write_all`]; [`Error::bytes_done`] counts all bytes
    /// written (or accepted into the write buffer).
    pub fn writelines<I, B>(&mut self, lines: I) -> Result<()>
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        let mut total = 0;
        for l in lines {
            let l = l.as_ref();
            if let Err(e) = self.write_all(l) {
                let done = e.bytes_done().unwrap_or(0);
                return Err(e.with_progress(total + done));
            }
            total += l.len();
        }
        Ok(())
    }

    /// Writes out the write buffer, then whatever the layer underneath holds
    /// back (nothing for sockets and files; for TLS, records queued by a write
    /// that was cancelled while sending them).
    ///
    /// # Cancellation
    ///
    /// A cancel point while the fd is not writable. Cancelled, the bytes not
    /// yet written stay buffered for the next flush; [`Error::bytes_done`] says
    /// how many were written.
    pub fn flush(&mut self) -> Result<()> {
        if self.wbuf.is_empty() {
            return self.io.flush();
        }
        let r = self.io.write_all_of(&self.wbuf);
        match r {
            Ok(()) => {
                self.wbuf.clear();
                self.io.flush()
            }
            Err(e) => {
                let done = e.bytes_done().unwrap_or(0).min(self.wbuf.len());
                self.wbuf.drain(..done);
                Err(e)
            }
        }
    }

    /// Flushes, then closes the stream and its fd. Dropping a stream closes it
    /// too, but discards bytes still in the write buffer.
    ///
    /// # Cancellation
    ///
    /// As [`Stream::flush`]; the fd is closed either way.
    pub fn close(mut self) -> Result<()> {
        self.flush()
    }
}

impl<S: WriteIo> Write for Stream<S> {
    /// Writes all of `buf` (or buffers it), as [`Stream::write_all`].
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Stream::write_all(self, buf)?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(Stream::flush(self)?)
    }
}

impl<S> std::fmt::Debug for Stream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("buffered", &self.buffered().len())
            .field("unflushed", &self.wbuf.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::net::UnixStream;

    #[test]
    fn a_stream_waiting_for_input_holds_no_read_buffer() {
        crate::run(|| -> crate::Result<()> {
            let (a, b) = UnixStream::pair()?;
            let mut s = b.as_stream();
            let wait = |s: &mut super::SocketStream| {
                let r = crate::timeout_after(Duration::from_millis(1), || s.read_more());
                assert!(r.unwrap_err().is_timeout());
                s.rbuf.capacity()
            };
            // Nothing ever read: the fd answers EAGAIN and the buffer goes back.
            assert_eq!(wait(&mut s), 0);
            // A line read and consumed: the next read waits with no buffer.
            a.sendall(b"hello\n")?;
            assert_eq!(s.readline()?, b"hello\n");
            assert!(s.rbuf.capacity() > 0);
            assert_eq!(wait(&mut s), 0);
            // Bytes still buffered keep theirs.
            a.sendall(b"partial")?;
            s.read_more()?;
            assert!(wait(&mut s) > 0);
            assert_eq!(s.buffered(), b"partial");
            a.sendall(b" line\n")?;
            assert_eq!(s.readline()?, b"partial line\n");
            Ok(())
        })
        .unwrap();
    }
}
