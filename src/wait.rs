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
/// The oldest waiter is kept inline: most queues (a join, a lock, an event)
/// hold one waiter at a time, and then no allocation is made.
#[derive(Debug, Default)]
pub(crate) struct WaitQueue {
    /// The oldest entry, when the queue is not empty.
    head: Option<Waiter>,
    /// The entries after `head`, in order.
    rest: VecDeque<Waiter>,
    /// Sweep stale entries when `rest` grows past this.
    sweep_at: usize,
}

const MIN_SWEEP: usize = 32;

impl WaitQueue {
    pub(crate) const fn new() -> WaitQueue {
        WaitQueue {
            head: None,
            rest: VecDeque::new(),
            sweep_at: MIN_SWEEP,
        }
    }

    /// Removes and returns the oldest entry, live or stale.
    pub(crate) fn pop_any(&mut self) -> Option<Waiter> {
        match self.head.take() {
            Some(w) => {
                self.head = self.rest.pop_front();
                Some(w)
            }
            None => None,
        }
    }

    /// Appends a waiter. When the queue has doubled since the last sweep, drops the
    /// entries `is_live` rejects first (amortised O(1) per push).
    pub(crate) fn push(&mut self, w: Waiter, is_live: impl Fn(Waiter) -> bool) {
        if self.head.is_none() {
            self.head = Some(w);
            return;
        }
        if self.rest.len() >= self.sweep_at.max(MIN_SWEEP) {
            self.rest.retain(|&w| is_live(w));
            self.sweep_at = (self.rest.len() * 2).max(MIN_SWEEP);
            if self.head.is_some_and(|h| !is_live(h)) {
                self.head = self.rest.pop_front();
            }
            if self.head.is_none() {
                self.head = Some(w);
                return;
            }
        }
        self.rest.push_back(w);
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
        while let Some(w) = self.head {
            if is_live(w) {
                return Some(w);
            }
            self.pop_any();
        }
        None
    }

    /// Removes every entry, live or not, oldest first.
    pub(crate) fn drain(&mut self) -> impl Iterator<Item = Waiter> + '_ {
        self.head.take().into_iter().chain(self.rest.drain(..))
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
            wait_id: n,
        }
    }

    #[test]
    fn pops_in_fifo_order_skipping_stale() {
        let live = RefCell::new(HashSet::from([1, 2, 3]));
        let is_live = |x: Waiter| live.borrow().contains(&x.wait_id);
        let mut q = WaitQueue::new();
        for i in 1..=3 {
            q.push(w(i), is_live);
        }
        live.borrow_mut().remove(&1);
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
            q.push(w(i), |x| x.wait_id == 0 || x.wait_id == i - 1);
        }
        assert!(q.rest.len() < 100, "queue grew to {}", q.rest.len());
    }
}
