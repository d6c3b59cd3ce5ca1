//! The ready queue: the tasks waiting for their turn, in the order they became ready.
//!
//! Entries are thin pointers to task headers rather than `Rc`s. A switch then
//! moves one word through the queue, touches no reference count and reads no
//! vtable; on the switch benchmark that is about a fifth of the cost of a
//! yield (`arch-notes/benchmarks.md`).
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

use std::cell::RefCell;
use std::collections::VecDeque;
use std::ptr::NonNull;

use crate::task::Header;

/// FIFO of ready tasks (see the module docs for why entries are raw pointers).
pub(crate) struct ReadyQueue {
    tasks: RefCell<VecDeque<NonNull<Header>>>,
}

impl ReadyQueue {
    pub(crate) fn new() -> ReadyQueue {
        ReadyQueue {
            tasks: RefCell::new(VecDeque::new()),
        }
    }

    /// Queues `task` at the back. The kernel keeps it alive while it is queued.
    #[inline]
    pub(crate) fn push(&self, task: &Header) {
        self.tasks.borrow_mut().push_back(NonNull::from(task));
    }

    /// Takes the task at the front. The pointer names a live header (module
    /// invariants) until the kernel finishes that task.
    #[inline]
    pub(crate) fn pop(&self) -> Option<NonNull<Header>> {
        self.tasks.borrow_mut().pop_front()
    }

    /// Tasks queued.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.tasks.borrow().len()
    }

    /// True if no task is ready.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        self.tasks.borrow().is_empty()
    }

    /// Takes `task` out of the queue, wherever it is (a linear scan: only a
    /// forced unwind needs it).
    pub(crate) fn remove(&self, task: &Header) {
        let p = NonNull::from(task);
        self.tasks.borrow_mut().retain(|&q| q != p);
    }
}
