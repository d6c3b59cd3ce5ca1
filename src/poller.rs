//! The kernel's window on the outside world: a mio poller, and an inbox other threads post to.
//!
//! # Invariants
//!
//! - Only the kernel thread polls. Other threads reach the kernel only through an
//!   [`InboxSender`]: they push a [`Message`] and, if the inbox was empty, wake the
//!   poller through its `mio::Waker`. Nothing else crosses threads.
//! - The `pending` flag lets the kernel skip the lock (and the `epoll_wait`) on
//!   its hot path: it is set by every sender before waking and cleared by the
//!   kernel before draining, so a message is never left behind unnoticed.
//!
//! Sockets register here in a later layer (`io.rs`); the kernel itself only knows
//! tokens.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::os::fd::RawFd;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};

use crate::wait::Waiter;

/// The token the inbox's waker is registered under.
pub(crate) const WAKER_TOKEN: Token = Token(usize::MAX);

/// A request from another thread to the kernel.
#[derive(Debug)]
pub(crate) enum Message {
    /// Resume a task parked in an external wait (thread result ready, signal …).
    /// Ignored if the task has stopped waiting (cancelled, timed out).
    Wake(Waiter),
}
struct Inbox {
    messages: Mutex<Vec<Message>>,
    pending: AtomicBool,
    waker: Waker,
}

/// A cloneable, `Send` handle that posts messages to one kernel.
#[derive(Clone)]
pub(crate) struct InboxSender {
    inbox: Arc<Inbox>,
}

impl InboxSender {
    /// Posts `m`; wakes the kernel if it may be blocked in `poll`.
    pub(crate) fn send(&self, m: Message) {
        self.inbox
            .messages
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(m);
        if !self.inbox.pending.swap(true, Ordering::AcqRel) {
            // A failed wake means the kernel is gone; the message is moot then.
            let _ = self.inbox.waker.wake();
        }
    }
}

impl InboxSender {
    /// Wakes the kernel without a message, so that it looks at what it
    /// watches besides the inbox (a monitor's requests) at its next poll.
    pub(crate) fn nudge(&self) {
        if !self.inbox.pending.swap(true, Ordering::AcqRel) {
            let _ = self.inbox.waker.wake();
        }
    }
}

/// Which way a task waits on an fd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Waiting to read (or accept).
    Read,
    /// Waiting to write (or connect).
    Write,
}

/// A registered fd: the one task waiting to read it and the one waiting to
/// write, and whether it may be ready in each direction.
#[derive(Default)]
struct IoEntry {
    in_use: bool,
    reader: Option<Waiter>,
    writer: Option<Waiter>,
    /// Per direction ([`Direction::bit`]): set when the poller reports
    /// readiness (or at registration, not knowing), cleared when an operation
    /// proves the fd drained (a short read or write on a stream socket or a
    /// pipe). Clear means: wait before trying again.
    ///
    /// A direction reported closed (end of file, hang-up, error) gets its
    /// [`Direction::closed_bit`] too, which is never cleared: it is a final
    /// state, and the event that reported it may have come together with the
    /// last bytes, so a short read of those bytes does not mean that the next
    /// read would wait (it returns end of file, and no further event comes).
    ready: u8,
}

impl Direction {
    /// This direction's bit in [`IoEntry::ready`].
    fn bit(self) -> u8 {
        match self {
            Direction::Read => 1,
            Direction::Write => 2,
        }
    }

    /// This direction's sticky "closed" bit in [`IoEntry::ready`].
    fn closed_bit(self) -> u8 {
        self.bit() << 2
    }
}

/// The poller, the fd table and the receiving end of the inbox.
pub(crate) struct Poller {
    poll: Poll,
    events: Events,
    inbox: Arc<Inbox>,
    scratch: Vec<Message>,
    io: Vec<IoEntry>,
    io_free: Vec<usize>,
}

impl Poller {
    pub(crate) fn new() -> io::Result<Poller> {
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER_TOKEN)?;
        let inbox = Arc::new(Inbox {
            messages: Mutex::new(Vec::new()),
            pending: AtomicBool::new(false),
            waker,
        });
        Ok(Poller {
            poll,
            events: Events::with_capacity(1024),
            inbox,
            scratch: Vec::new(),
            io: Vec::new(),
            io_free: Vec::new(),
        })
    }

    pub(crate) fn sender(&self) -> InboxSender {
        InboxSender {
            inbox: self.inbox.clone(),
        }
    }

    /// True if `sender` posts to this poller's inbox.
    pub(crate) fn owns(&self, sender: &InboxSender) -> bool {
        Arc::ptr_eq(&self.inbox, &sender.inbox)
    }

    /// True when another thread has posted something not yet drained.
    #[inline]
    pub(crate) fn inbox_pending(&self) -> bool {
        self.inbox.pending.load(Ordering::Acquire)
    }

    /// Registers `fd` for read and write readiness (edge-triggered); returns its token.
    pub(crate) fn register_fd(&mut self, fd: RawFd) -> io::Result<Token> {
        let i = match self.io_free.pop() {
            Some(i) => i,
            None => {
                self.io.push(IoEntry::default());
                self.io.len() - 1
            }
        };
        let token = Token(i);
        let r = self.poll.registry().register(
            &mut SourceFd(&fd),
            token,
            Interest::READABLE | Interest::WRITABLE,
        );
        if let Err(e) = r {
            self.io_free.push(i);
            return Err(e);
        }
        self.io[i] = IoEntry {
            in_use: true,
            reader: None,
            writer: None,
            // Not known yet: the first operation in each direction tries.
            ready: Direction::Read.bit() | Direction::Write.bit(),
        };
        Ok(token)
    }

    /// Forgets `fd`'s registration (before it is closed).
    pub(crate) fn deregister_fd(&mut self, token: Token, fd: RawFd) {
        let _ = self.poll.registry().deregister(&mut SourceFd(&fd));
        if let Some(e) = self.io.get_mut(token.0) {
            if e.in_use {
                *e = IoEntry::default();
                self.io_free.push(token.0);
            }
        }
    }

    /// The waiter slot of `token` for direction `dir`.
    pub(crate) fn waiter_slot(&mut self, token: Token, dir: Direction) -> &mut Option<Waiter> {
        let e = &mut self.io[token.0];
        debug_assert!(e.in_use);
        match dir {
            Direction::Read => &mut e.reader,
            Direction::Write => &mut e.writer,
        }
    }

    /// Whether `token`'s fd may be ready in direction `dir`: true unless an
    /// operation found it not ready and no readiness was reported since.
    pub(crate) fn is_ready(&self, token: Token, dir: Direction) -> bool {
        self.io
            .get(token.0)
            .is_none_or(|e| !e.in_use || e.ready & (dir.bit() | dir.closed_bit()) != 0)
    }

    /// Records that an operation found `token`'s fd drained in direction `dir`
    /// (a short read or write); the next readiness event sets it again. A
    /// closed direction stays ready.
    pub(crate) fn clear_ready(&mut self, token: Token, dir: Direction) {
        if let Some(e) = self.io.get_mut(token.0) {
            e.ready &= !dir.bit();
        }
    }

    /// Waits up to `timeout` (`None`: forever) for readiness or a message, and
    /// appends to `wake` every waiter that should now run: readers and writers of
    /// ready fds, and the waiters named by inbox messages. Returns how many
    /// events and messages there were.
    pub(crate) fn poll(
        &mut self,
        timeout: Option<Duration>,
        wake: &mut Vec<Waiter>,
    ) -> io::Result<usize> {
        let mut n = 0;
        // A message posted before we block must not be slept through: the waker
        // has fired for it, so epoll returns at once.
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            // Discussion: an interrupted poll means a signal handler ran on
            // this thread. If it was a signal a `SignalSet` watches, the
            // handler has just made the set's socket readable, and only the
            // next poll reports it. Counted as an event, so that a virtual
            // clock waiting for the outside world does not take the
            // interruption for silence and jump ahead of it.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => n += 1,
            Err(e) => return Err(e),
        }
        for ev in self.events.iter() {
            if ev.token() == WAKER_TOKEN {
                continue;
            }
            n += 1;
            let Some(entry) = self.io.get_mut(ev.token().0) else {
                continue;
            };
            // Readiness is recorded whether or not a task waits: under
            // edge-triggered polling this event is not repeated, and a task
            // that skips its next try on a drained fd relies on it.
            let (r, w) = (Direction::Read, Direction::Write);
            let mut bits = 0;
            if ev.is_readable() {
                bits |= r.bit();
            }
            if ev.is_writable() {
                bits |= w.bit();
            }
            if ev.is_read_closed() {
                bits |= r.bit() | r.closed_bit();
            }
            if ev.is_write_closed() {
                bits |= w.bit() | w.closed_bit();
            }
            if ev.is_error() {
                bits |= r.bit() | r.closed_bit() | w.bit() | w.closed_bit();
            }
            entry.ready |= bits;
            if bits & r.bit() != 0 {
                wake.extend(entry.reader.take());
            }
            if bits & w.bit() != 0 {
                wake.extend(entry.writer.take());
            }
        }
        if self.inbox.pending.swap(false, Ordering::AcqRel) {
            std::mem::swap(
                &mut self.scratch,
                &mut *self
                    .inbox
                    .messages
                    .lock()
                    .unwrap_or_else(|e| e.into_inner()),
            );
            n += self.scratch.len();
            for m in self.scratch.drain(..) {
                match m {
                    Message::Wake(w) => wake.push(w),
                }
            }
        }
        Ok(n)
    }
}
