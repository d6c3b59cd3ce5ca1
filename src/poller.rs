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

use std::cell::Cell;
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

/// Which way a task waits on an fd.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    /// Waiting to read (or accept).
    Read,
    /// Waiting to write (or connect).
    Write,
}

/// A registered fd: the one task waiting to read it and the one waiting to write.
#[derive(Default)]
struct IoEntry {
    in_use: bool,
    reader: Option<Waiter>,
    writer: Option<Waiter>,
    /// A poll has reported the read side closed (or an error): final, and
    /// kept even if nobody was waiting (see [`Poller::read_closed`]).
    read_closed: bool,
}

thread_local! {
    /// How many times the kernel on this thread has polled (see [`polls`]).
    static POLLS: Cell<u64> = const { Cell::new(0) };
}

/// How many times the kernel on this thread has polled for readiness.
///
/// Discussion: epoll is edge-triggered, and an edge harvested while no task
/// waits on the fd is dropped. But an edge that arrives after a task found an
/// fd drained (a read shorter than asked for) stays queued inside epoll until
/// the next poll. So while this count has not moved since the short read, the
/// task may wait for readiness without first trying a read that would only
/// answer `EAGAIN` (the TLS layer does; tokio clears readiness on a short read
/// for the same saving). Any poll in between, and the task must try first.
pub(crate) fn polls() -> u64 {
    POLLS.with(Cell::get)
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

    /// True once a poll has reported `token`'s read side closed (end of file
    /// or an error). An edge for that cannot come again, so a reader that
    /// skips its first try (see [`polls`]) must not wait on it.
    pub(crate) fn read_closed(&self, token: Token) -> bool {
        self.io
            .get(token.0)
            .is_some_and(|e| e.in_use && e.read_closed)
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
            read_closed: false,
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
        POLLS.with(|p| p.set(p.get() + 1));
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
            if ev.is_read_closed() || ev.is_error() {
                entry.read_closed = true;
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                wake.extend(entry.reader.take());
            }
            if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
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
