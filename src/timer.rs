//! The deadline heap: sleeps and timeouts ordered by `(deadline, sequence)`, deleted lazily.
//!
//! # Invariants
//!
//! - Deadlines are kernel-clock nanoseconds. Equal deadlines pop in insertion order.
//! - Nothing is removed from the middle. A sleep that was cancelled, or a timeout
//!   block that ended, leaves its entry behind; the kernel recognises it as stale
//!   when it pops (its wait id or armed deadline no longer matches) and ignores it.
//! - Stale entries are counted as they are made, and the heap is rebuilt without
//!   them when they are more than half of it, so a loop of short timeout blocks
//!   with long deadlines keeps the heap small (Curio's `timequeue.py` discusses the
//!   same workload).

use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Debug)]
struct Entry<T> {
    deadline: u64,
    seq: u64,
    item: T,
}

impl<T> PartialEq for Entry<T> {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.seq) == (other.deadline, other.seq)
    }
}
impl<T> Eq for Entry<T> {}
impl<T> PartialOrd for Entry<T> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Entry<T> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline, self.seq).cmp(&(other.deadline, other.seq))
    }
}

/// A min-heap of deadlines carrying an item each.
#[derive(Debug)]
pub(crate) struct TimerHeap<T> {
    heap: BinaryHeap<Reverse<Entry<T>>>,
    seq: u64,
    stale: usize,
}

const MIN_REBUILD: usize = 1024;

impl<T> TimerHeap<T> {
    pub(crate) fn new() -> Self {
        TimerHeap {
            heap: BinaryHeap::new(),
            seq: 0,
            stale: 0,
        }
    }

    pub(crate) fn push(&mut self, deadline: u64, item: T) {
        self.seq += 1;
        self.heap.push(Reverse(Entry {
            deadline,
            seq: self.seq,
            item,
        }));
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The earliest entry, for the caller to check whether it is stale.
    pub(crate) fn peek(&self) -> Option<(u64, &T)> {
        self.heap.peek().map(|e| (e.0.deadline, &e.0.item))
    }

    /// Pops the earliest entry if its deadline is at or before `now`.
    pub(crate) fn pop_expired(&mut self, now: u64) -> Option<(u64, T)> {
        if self.heap.peek()?.0.deadline > now {
            return None;
        }
        let e = self.heap.pop()?.0;
        Some((e.deadline, e.item))
    }

    /// Pops the earliest entry whatever its deadline (used to drop stale tops).
    pub(crate) fn pop(&mut self) -> Option<(u64, T)> {
        self.heap.pop().map(|e| (e.0.deadline, e.0.item))
    }

    /// Records that one entry has become stale; rebuilds the heap when more than half is.
    pub(crate) fn mark_stale(&mut self, is_live: impl Fn(u64, &T) -> bool) {
        self.stale += 1;
        if self.stale > MIN_REBUILD && self.stale * 2 > self.heap.len() {
            let entries = std::mem::take(&mut self.heap).into_vec();
            self.heap = entries
                .into_iter()
                .filter(|e| is_live(e.0.deadline, &e.0.item))
                .collect();
            self.stale = 0;
            // The filter reuses the old allocation: give back what a peak left.
            if self.heap.capacity() > 4 * self.heap.len().max(MIN_REBUILD) {
                self.heap.shrink_to(2 * self.heap.len().max(MIN_REBUILD));
            }
        }
    }

    /// Every entry, live or stale, in no particular order (the monitor's
    /// snapshot reads sleeping tasks' deadlines).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (u64, &T)> {
        self.heap.iter().map(|e| (e.0.deadline, &e.0.item))
    }

    /// Entries held, live or stale.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Gives back spare capacity (after a peak of timers).
    pub(crate) fn shrink(&mut self) {
        let keep = (2 * self.heap.len()).max(64);
        if self.heap.capacity() > keep {
            self.heap.shrink_to(keep);
        }
    }

    /// Notes that a stale entry was popped and discarded.
    pub(crate) fn discarded_stale(&mut self) {
        self.stale = self.stale.saturating_sub(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pops_in_deadline_then_insertion_order() {
        let mut h = TimerHeap::new();
        h.push(20, "b");
        h.push(10, "a");
        h.push(20, "c");
        assert_eq!(h.pop_expired(5), None);
        assert_eq!(h.pop_expired(25), Some((10, "a")));
        assert_eq!(h.pop_expired(25), Some((20, "b")));
        assert_eq!(h.pop_expired(25), Some((20, "c")));
        assert!(h.is_empty());
    }

    #[test]
    fn rebuild_drops_stale_entries() {
        let mut h = TimerHeap::new();
        for i in 0..10_000u64 {
            h.push(1_000_000 + i, i);
            if i > 0 {
                h.mark_stale(|_, &item| item == i);
            }
        }
        assert!(
            h.heap.len() < 2 * MIN_REBUILD + 2,
            "heap kept {} entries",
            h.heap.len()
        );
        assert!(h.pop_expired(u64::MAX).is_some());
    }
}
