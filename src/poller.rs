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

use mio::{Events, Poll, Token, Waker};

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

/// The poller and the receiving end of the inbox.
pub(crate) struct Poller {
    poll: Poll,
    events: Events,
    inbox: Arc<Inbox>,
    scratch: Vec<Message>,
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

    /// The registry sockets register with.
    #[allow(dead_code)] // sockets register here (io layer)
    pub(crate) fn registry(&self) -> &mio::Registry {
        self.poll.registry()
    }

    /// True when another thread has posted something not yet drained.
    #[inline]
    pub(crate) fn inbox_pending(&self) -> bool {
        self.inbox.pending.load(Ordering::Acquire)
    }

    /// Waits up to `timeout` (`None`: forever) for readiness or a message, then
    /// hands every ready token and every message to `on_token` / `on_message`.
    /// Returns how many things it handed over.
    pub(crate) fn poll(
        &mut self,
        timeout: Option<Duration>,
        mut on_token: impl FnMut(Token, &mio::event::Event),
        mut on_message: impl FnMut(Message),
    ) -> io::Result<usize> {
        let mut n = 0;
        // A message posted before we block must not be slept through: the waker
        // has fired for it, so epoll returns at once.
        match self.poll.poll(&mut self.events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        for ev in self.events.iter() {
            if ev.token() != WAKER_TOKEN {
                on_token(ev.token(), ev);
                n += 1;
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
                on_message(m);
            }
        }
        Ok(n)
    }
}
