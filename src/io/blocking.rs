//! Lending a socket or file to synchronous code: [`Blocking`], the handle that
//! [`Socket::blocking`](super::Socket::blocking) and
//! [`Stream::blocking`](super::Stream::blocking) lend.
//!
//! # Invariants
//!
//! - Lending never changes the fd's file status flags. `O_NONBLOCK` belongs to
//!   the *open file description*, which every duplicate of the fd shares
//!   (`dup`, `try_clone`, a child process's copy): switching it off for the
//!   borrower would switch it off for every task of the kernel using the same
//!   socket, and a task's `recv` would then block the whole kernel thread.
//!   Instead the handle makes *its own* calls wait: it tries the non-blocking
//!   call and, on `WouldBlock`, blocks the calling OS thread in `poll(2)` on
//!   that fd until it is ready, then tries again.
//! - So a handle (or a [`Blocking::try_clone`] of it, which owns a duplicate fd)
//!   blocks only the thread that uses it, also after `blocking()` has returned;
//!   tasks using the socket meanwhile go on as before.
//! - Bytes are not shared out fairly: a task reading the same socket at the same
//!   time as a borrower gets whatever bytes its own call returns.
//!
//! # Example
//!
//! ```
//! use std::io::{Read, Write};
//! use curio::net::UnixStream;
//! curio::run(|| -> curio::Result<()> {
//!     let (a, b) = UnixStream::pair()?;
//!     // Synchronous code on a worker thread, with its own duplicate fd.
//!     let raw = a.blocking(|raw| raw.try_clone())??;
//!     let worker = std::thread::spawn(move || {
//!         let mut buf = [0u8; 4];
//!         raw.read_exact(&mut buf)?; // blocks this thread only
//!         raw.write_all(b"pong")?;
//!         std::io::Result::Ok(buf)
//!     });
//!     b.sendall(b"ping")?;
//!     assert_eq!(b.recv(4)?, b"pong");
//!     assert_eq!(&worker.join().unwrap()?, b"ping");
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::cell::Cell;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use crate::sys;

/// A socket or file lent to synchronous code: reads and writes block the
/// calling OS thread (never the fd's other users) until they can proceed.
///
/// [`Socket::blocking`](super::Socket::blocking) lends a `Blocking<BorrowedFd>`
/// for the length of a closure; [`Blocking::try_clone`] makes a
/// `Blocking<OwnedFd>` with a duplicate fd of its own, which can be moved to a
/// worker thread and outlive the loan. Both implement [`Read`] and [`Write`]
/// (also through `&Blocking`), and have inherent `read`, `read_exact`, `write`,
/// `write_all` with the same meaning as the traits'.
///
/// Used on a kernel's own thread (inside a task), a call that has to wait
/// blocks that kernel and all its tasks, as any blocking call does: hand a
/// clone to [`run_in_thread`](crate::run_in_thread) or a thread instead.
pub struct Blocking<F: AsFd = OwnedFd> {
    fd: F,
    socket: bool,
    read_timeout: Cell<Option<Duration>>,
    write_timeout: Cell<Option<Duration>>,
}

impl<F: AsFd> Blocking<F> {
    pub(crate) fn new(fd: F, socket: bool) -> Blocking<F> {
        Blocking {
            fd,
            socket,
            read_timeout: Cell::new(None),
            write_timeout: Cell::new(None),
        }
    }

    /// A handle of its own on a duplicate of the fd (`dup(2)`), for another
    /// thread. It stays usable after the loan that made it has ended; the
    /// duplicate is closed when it is dropped. Timeouts are not copied.
    pub fn try_clone(&self) -> io::Result<Blocking<OwnedFd>> {
        Ok(Blocking::new(
            self.fd.as_fd().try_clone_to_owned()?,
            self.socket,
        ))
    }

    /// The socket, for options and addresses (`peer_addr`, `set_nodelay`,
    /// `shutdown` …). Its own I/O calls do not block: use the handle's.
    ///
    /// # Errors
    ///
    /// A usage error if the handle lends a file, not a socket.
    pub fn socket(&self) -> crate::Result<socket2::SockRef<'_>> {
        if !self.socket {
            return Err(crate::Error::usage(
                "this handle lends a file, not a socket; use as_fd() for it",
            ));
        }
        Ok(socket2::SockRef::from(&self.fd))
    }

    /// Limits how long one read waits (`None`, the default: no limit); a read
    /// that times out fails with [`io::ErrorKind::TimedOut`].
    pub fn set_read_timeout(&self, timeout: Option<Duration>) {
        self.read_timeout.set(timeout);
    }

    /// Limits how long one write waits (`None`, the default: no limit); a write
    /// that times out fails with [`io::ErrorKind::TimedOut`].
    pub fn set_write_timeout(&self, timeout: Option<Duration>) {
        self.write_timeout.set(timeout);
    }

    /// Reads some bytes into `buf`, waiting until at least one is available
    /// (0: end of file). As [`Read::read`].
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.wait_for(false, || sys::read_fd(self.fd.as_fd(), buf, self.socket))
    }

    /// Reads exactly `buf.len()` bytes. As [`Read::read_exact`].
    pub fn read_exact(&self, buf: &mut [u8]) -> io::Result<()> {
        Read::read_exact(&mut &*self, buf)
    }

    /// Writes some of `data`, waiting until at least one byte can go. As
    /// [`Write::write`].
    pub fn write(&self, data: &[u8]) -> io::Result<usize> {
        self.wait_for(true, || sys::write_fd(self.fd.as_fd(), data, self.socket))
    }

    /// Writes all of `data`. As [`Write::write_all`].
    pub fn write_all(&self, data: &[u8]) -> io::Result<()> {
        Write::write_all(&mut &*self, data)
    }

    /// Tries `op`; while it answers `WouldBlock`, blocks the thread in `poll`.
    fn wait_for(
        &self,
        write: bool,
        mut op: impl FnMut() -> io::Result<usize>,
    ) -> io::Result<usize> {
        let timeout = if write {
            self.write_timeout.get()
        } else {
            self.read_timeout.get()
        };
        loop {
            match op() {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !sys::poll_fd(self.fd.as_fd(), write, timeout)? {
                        let what = if write { "write" } else { "read" };
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("the {what} timeout set on the blocking handle passed"),
                        ));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return other,
            }
        }
    }
}

impl<F: AsFd> AsFd for Blocking<F> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl<F: AsFd> Read for &Blocking<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Blocking::read(self, buf)
    }
}

impl<F: AsFd> Read for Blocking<F> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Blocking::read(self, buf)
    }
}

impl<F: AsFd> Write for &Blocking<F> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        Blocking::write(self, data)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<F: AsFd> Write for Blocking<F> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        Blocking::write(self, data)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<F: AsFd> std::fmt::Debug for Blocking<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::os::fd::AsRawFd;
        f.debug_struct("Blocking")
            .field("fd", &self.fd.as_fd().as_raw_fd())
            .field("socket", &self.socket)
            .finish()
    }
}
