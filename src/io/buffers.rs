//! Read buffers lent to streams while they read.
//!
//! A stream holds a read buffer only while it has bytes buffered or a read is
//! under way: when it is empty and its fd has nothing to read, the stream
//! gives the buffer back here, so ten thousand idle connections hold no buffer
//! memory. This thread keeps up to [`KEPT`] spare buffers of one chunk for the
//! next stream that reads, so a busy server does not pay `malloc` and `free`
//! for 8 KiB on every read (measured: about 380 instructions per request under
//! `redis-benchmark`, a quarter of the server's user-space work).

use std::cell::RefCell;

/// The least room a stream's read asks the fd to fill, and the size of the
/// buffers kept here.
pub(crate) const CHUNK: usize = 8 * 1024;

/// Spare buffers kept per thread (1 MiB).
const KEPT: usize = 128;

thread_local! {
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Gives `buf` a chunk's capacity from the spare buffers when it has none.
/// (With no spare, the read that follows allocates.)
#[inline]
pub(crate) fn lend(buf: &mut Vec<u8>) {
    if buf.capacity() != 0 {
        return;
    }
    // `try_with`: during thread-local teardown there is no pool, and the read
    // simply allocates.
    if let Ok(Some(spare)) = SPARE.try_with(|s| s.borrow_mut().pop()) {
        *buf = spare;
    }
}

/// Takes back the memory of `buf`, which must be empty: kept for the next
/// stream if it is one chunk and fewer than [`KEPT`] are kept, freed otherwise.
#[inline]
pub(crate) fn give_back(buf: &mut Vec<u8>) {
    debug_assert!(buf.is_empty());
    if buf.capacity() == 0 {
        return;
    }
    let buf = std::mem::take(buf);
    if buf.capacity() == CHUNK {
        let _ = SPARE.try_with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < KEPT {
                s.push(buf);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_buffer_comes_back_to_the_next_reader() {
        let mut a = Vec::with_capacity(CHUNK);
        let at = a.as_ptr();
        give_back(&mut a);
        assert_eq!(a.capacity(), 0);
        let mut b = Vec::new();
        lend(&mut b);
        assert_eq!((b.as_ptr(), b.capacity()), (at, CHUNK));
    }

    #[test]
    fn a_grown_buffer_is_freed_and_at_most_kept_buffers_are_kept() {
        let mut big = Vec::with_capacity(4 * CHUNK);
        give_back(&mut big);
        assert_eq!(big.capacity(), 0);
        for _ in 0..KEPT + 10 {
            give_back(&mut Vec::with_capacity(CHUNK));
        }
        assert_eq!(SPARE.with(|s| s.borrow().len()), KEPT);
    }
}
