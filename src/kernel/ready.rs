//! The ready queue: the tasks waiting for their turn, in the order they became ready.
//!
//! It sits on the switch path, so it is as lean as it can be: entries are thin
//! pointers to task headers rather than `Rc`s (a switch moves one word, touches
//! no reference count and reads no vtable), and the deque lives in an
//! `UnsafeCell` rather than a `RefCell` (no borrow flag written and re-read on
//! every push and pop). Both are worth a measurable share of a 5 ns switch
//! (`arch-notes/benchmarks.md`).
//!
//! # Invariants
//!
//! The queue does not keep its tasks alive; the kernel does, and it keeps
//! these rules so that every pointer in the queue names a live header:
//!
//! - A task's kernel slot holds its `Rc` from spawn until `Core::finish`.
//! - `Core::finish` takes the task out of this queue ([`ReadyQueue::remove`])
//!   if it is still queued (only a forced unwind finishes a queued task).
//! - A task is queued only with state `Ready`, by spawn, by a yield, or by the
//!   end of a wait (which happens once per wait), so it is never queued twice.
//!
//! The deque itself is only ever reached through the methods below, each of
//! which finishes with it before returning and calls no code that could reach
//! the queue again (see the SAFETY comments).
#![allow(unsafe_code)]

use std::cell::UnsafeCell;
use std::collections::VecDeque;
use std::ptr::NonNull;

use super::record::TaskRecord;

/// FIFO of ready tasks (see the module docs for why entries are raw pointers).
pub(crate) struct ReadyQueue {
    /// Not `Sync` (`UnsafeCell`), so only the kernel's own thread touches it.
    tasks: UnsafeCell<VecDeque<NonNull<TaskRecord>>>,
}

impl ReadyQueue {
    pub(crate) fn new() -> ReadyQueue {
        ReadyQueue {
            tasks: UnsafeCell::new(VecDeque::new()),
        }
    }

    /// Runs `f` on the deque.
    ///
    /// This is `Cell`'s argument for a non-`Copy` value: the queue is not
    /// `Sync`, and no reference to the deque outlives `f`. Every `f` below is
    /// a plain `VecDeque` operation on `NonNull` entries (no destructor, no
    /// user code, no kernel call), so none can re-enter `with` while the
    /// `&mut` it was given is alive. (Growing the deque calls the global
    /// allocator, which, like any allocator, must not call back into a task
    /// runtime.)
    #[inline(always)]
    fn with<R>(&self, f: impl FnOnce(&mut VecDeque<NonNull<TaskRecord>>) -> R) -> R {
        // SAFETY: exclusive access for the duration of `f`, which cannot
        // re-enter (see above); `UnsafeCell` makes the queue `!Sync`.
        f(unsafe { &mut *self.tasks.get() })
    }

    /// Queues `task` at the back. The kernel keeps it alive while it is queued.
    #[inline]
    pub(crate) fn push(&self, task: &TaskRecord) {
        let p = NonNull::from(task);
        self.with(|q| q.push_back(p));
    }

    /// Takes the task at the front. The pointer names a live header (module
    /// invariants) until the kernel finishes that task.
    #[inline]
    pub(crate) fn pop(&self) -> Option<NonNull<TaskRecord>> {
        self.with(|q| q.pop_front())
    }

    /// Tasks queued.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.with(|q| q.len())
    }

    /// True if no task is ready.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.with(|q| q.is_empty())
    }

    /// Gives back spare capacity (after a peak of tasks).
    pub(crate) fn shrink(&self) {
        self.with(|q| q.shrink_to(q.len().max(64)));
    }

    /// Appends to `out` the (id, slot) of the queued tasks whose ids are in
    /// `first..end`, looking from the newest back and stopping once all of
    /// them are found (the tasks spawned since `first` was handed out, which
    /// are all still queued: only a failed spawn, whose id was taken but
    /// whose task never queued, makes it look through the whole queue).
    pub(crate) fn slots_of_ids(&self, first: u64, end: u64, out: &mut Vec<(u64, u32)>) {
        let want = end.saturating_sub(first) as usize;
        self.with(|q| {
            for p in q.iter().rev() {
                if out.len() == want {
                    break;
                }
                // SAFETY: a queued pointer names a live record (module
                // invariants); reading two of its fields calls no code.
                let r = unsafe { p.as_ref() };
                if (first..end).contains(&r.id()) {
                    out.push((r.id(), r.slot()));
                }
            }
        });
        out.sort_unstable();
    }

    /// Takes `task` out of the queue, wherever it is (a linear scan: only a
    /// forced unwind needs it).
    pub(crate) fn remove(&self, task: &TaskRecord) {
        let p = NonNull::from(task);
        self.with(|q| q.retain(|&e| e != p));
    }
}
