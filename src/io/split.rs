//! The two halves of a split stream: [`ReadHalf`] and [`WriteHalf`] share one
//! socket or file, so one task may read while another writes.
//!
//! # Invariants
//!
//! - Both halves hold the same I/O object (an `Rc`: the halves stay on the
//!   kernel thread that made them); it is closed when both are dropped.
//! - A read half only reads and a write half only writes, so the one-reader,
//!   one-writer rule of the fd table is kept by construction.
//!
//! # Example
//!
//! ```
//! use curio::net::UnixStream;
//! curio::run(|| -> curio::Result<()> {
//!     let (a, b) = UnixStream::pair()?;
//!     let (mut rd, mut wr) = a.into_split();
//!     wr.write_all(b"ping\n")?;
//!     let mut b = b.as_stream();
//!     assert_eq!(b.readline()?, b"ping\n");
//!     b.write_all(b"pong\n")?;
//!     assert_eq!(rd.readline()?, b"pong\n");
//!     assert_eq!(rd.get_ref().fileno(), wr.get_ref().fileno());
//!     Ok(())
//! })
//! .unwrap();
//! ```

use std::ops::Deref;
use std::os::fd::{AsFd, BorrowedFd};
use std::rc::Rc;

use super::{ReadIo, StreamIo, WriteIo};
use crate::error::Result;

/// The reading half of a split socket or file ([`Stream::into_split`](super::Stream::into_split)).
/// Dereferences to the shared socket or file (addresses, options, `shutdown`).
pub struct ReadHalf<S>(Rc<S>);

/// The writing half of a split socket or file ([`Stream::into_split`](super::Stream::into_split)).
/// Dereferences to the shared socket or file (addresses, options, `shutdown`).
pub struct WriteHalf<S>(Rc<S>);

/// Splits `io` into its two halves.
pub(super) fn halves<S>(io: S) -> (ReadHalf<S>, WriteHalf<S>) {
    let io = Rc::new(io);
    (ReadHalf(io.clone()), WriteHalf(io))
}

impl<S: StreamIo> ReadIo for ReadHalf<S> {
    fn read_some(&self, buf: &mut [u8]) -> Result<usize> {
        self.0.read_some(buf)
    }
    fn read_spare(&self, buf: &mut Vec<u8>, max: usize) -> Result<usize> {
        self.0.read_spare(buf, max)
    }
}

impl<S: StreamIo> WriteIo for WriteHalf<S> {
    fn write_all_of(&self, data: &[u8]) -> Result<()> {
        self.0.write_all_of(data)
    }
}

macro_rules! half_common {
    ($half:ident) => {
        impl<S> Deref for $half<S> {
            type Target = S;
            fn deref(&self) -> &S {
                &self.0
            }
        }

        impl<S: AsFd> AsFd for $half<S> {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.0.as_fd()
            }
        }

        impl<S: std::fmt::Debug> std::fmt::Debug for $half<S> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_tuple(stringify!($half)).field(&*self.0).finish()
            }
        }
    };
}

half_common!(ReadHalf);
half_common!(WriteHalf);
