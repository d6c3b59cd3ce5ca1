//! Wait queues: FIFO lists of parked tasks whose cancelled members are dropped lazily, in O(1).
//!
//! # Invariants
//!
//! - A [`Waiter`] names one particular wait of one task: the task's slot and the
//!   kernel-wide unique id of that wait. When the task is woken, cancelled or
//!   times out, the kernel forgets the id, so every copy of the waiter left in a
//!   queue (or the timer heap) becomes stale at once. That is the whole of
//!   "removal" (Curio's `sched.py` tombstones, without touching the queue).
//! - Stale entries are skipped when popped and swept out when they outnumber the
//!   live ones, so a task that waits with a timeout in a loop cannot grow a queue
//!   without bound.
//! - This module knows nothing of the kernel: liveness and waking are passed in.
//!
//! # Example
//!
//! ```text
//! let mut q = WaitQueue::new();
//! q.push(w1, |w| kernel.is_waiting(w));
//! q.push(w2, |w| kernel.is_waiting(w));
//! // w1 is cancelled: the kernel forgets its wait id; nothing touches `q`.
//! assert_eq!(q.pop_live(|w| kernel.is_waiting(w)), Some(w2));
//! ```

use std::collections::VecDeque;

/// One wait of one task: its kernel slot and the unique id of the wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Waiter {
    pub(crate) slot: u32,
    pub(crate) wait_id: u64,
}

/// A FIFO of waiters with lazy removal.
///
/// The oldest waiter is kept inline, and the rest (rare: most queues, a join, a
/// lock, an event, hold one waiter at a time) in a box made on first need, so
/// an empty or one-waiter queue costs 24 bytes and no allocation. Task records
/// and every sync primitive carry one.
#[derive(Debug, Default)]
pub(crate) struct WaitQueue {
    /// The oldest entry; `wait_id == 0` when the queue is empty (wait ids
    /// start at 1).
    head: Waiter,
    /// The entries after `head`, in order.
    rest: Option<Box<Rest>>,
}

#[derive(Debug)]
struct Rest {
    queue: VecDeque<Waiter>,
    /// Sweep stale entries when `queue` grows past this.
    sweep_at: usize,
}

const MIN_SWEEP: usize = 32;

/// No waiter (an empty head).
const NONE: Waiter = Waiter {
    slot: 0,
    wait_id: 0,
};

impl Default for Waiter {
    fn default() -> Self {
        NONE
    }
}

impl WaitQueue {
    pub(crate) const fn new() -> WaitQueue {
        WaitQueue {
            head: NONE,
            rest: None,
        }
    }

    /// True if the queue holds no entry, live or stale.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.head.wait_id == 0
    }

    #[inline]
    fn head(&self) -> Option<Waiter> {
        (self.head.wait_id != 0).then_some(self.head)
    }

    /// Removes and returns the oldest entry, live or stale.
    #[inline]
    pub(crate) fn pop_any(&mut self) -> Option<Waiter> {
        let w = self.head()?;
        self.head = match &mut self.rest {
            Some(r) => r.queue.pop_front().unwrap_or(NONE),
            None => NONE,
        };
        Some(w)
    }

    /// Appends a waiter. When the queue has doubled since the last sweep, drops the
    /// entries `is_live` rejects first (amortised O(1) per push).
    #[inline]
    pub(crate) fn push(&mut self, w: Waiter, is_live: impl Fn(Waiter) -> bool) {
        debug_assert_ne!(w.wait_id, 0, "wait ids start at 1");
        if self.head().is_none() {
            self.head = w;
            return;
        }
        self.push_rest(w, is_live);
    }

    fn push_rest(&mut self, w: Waiter, is_live: impl Fn(Waiter) -> bool) {
        let rest = self.rest.get_or_insert_with(|| {
            Box::new(Rest {
                queue: VecDeque::new(),
                sweep_at: MIN_SWEEP,
            })
        });
        if rest.queue.len() >= rest.sweep_at.max(MIN_SWEEP) {
            rest.queue.retain(|&w| is_live(w));
            rest.sweep_at = (rest.queue.len() * 2).max(MIN_SWEEP);
            if !is_live(self.head) {
                self.head = rest.queue.pop_front().unwrap_or(NONE);
            }
            if self.head.wait_id == 0 {
                self.head = w;
                return;
            }
        }
        rest.queue.push_back(w);
    }

    /// Removes and returns the oldest waiter still live.
    #[cfg(test)]
    pub(crate) fn pop_live(&mut self, is_live: impl Fn(Waiter) -> bool) -> Option<Waiter> {
        while let Some(w) = self.pop_any() {
            if is_live(w) {
                return Some(w);
            }
        }
        None
    }

    /// The oldest live waiter, left in place (stale ones in front are dropped).
    pub(crate) fn first_live(&mut self, is_live: impl Fn(Waiter) -> bool) -> Option<Waiter> {
        while let Some(w) = self.head() {
            if is_live(w) {
                return Some(w);
            }
            self.pop_any();
        }
        None
    }

    /// Removes every entry, live or not, oldest first.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Waiter> + '_ {
        let head = self.head();
        self.head = NONE;
        let rest = self.rest.as_mut().map(|r| r.queue.drain(..));
        head.into_iter().chain(rest.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use std::collections::HashSet;

    fn w(n: u64) -> Waiter {
        Waiter {
            slot: n as u32,
            wait_id: n + 1, // wait ids start at 1
        }
    }

    #[test]
    fn pops_in_fifo_order_skipping_stale() {
        let live = RefCell::new(HashSet::from([2, 3, 4]));
        let is_live = |x: Waiter| live.borrow().contains(&x.wait_id);
        let mut q = WaitQueue::new();
        for i in 1..=3 {
            q.push(w(i), is_live);
        }
        live.borrow_mut().remove(&2); // w(1) is stale now
        assert_eq!(q.pop_live(is_live), Some(w(2)));
        assert_eq!(q.first_live(is_live), Some(w(3)));
        assert_eq!(q.pop_live(is_live), Some(w(3)));
        assert_eq!(q.pop_live(is_live), None);
    }

    #[test]
    fn stale_entries_do_not_accumulate() {
        let mut q = WaitQueue::new();
        // One live waiter; a million waits that were each cancelled before the next.
        q.push(w(0), |_| true);
        for i in 1..1_000_000u64 {
            // w(0) stays live; only the newest other wait is.
            q.push(w(i), |x| x.wait_id == 1 || x.wait_id == i);
        }
        let len = q.rest.as_ref().map_or(0, |r| r.queue.len());
        assert!(len < 100, "queue grew to {len}");
    }
}
