//! Queues between tasks: [`Queue`] (FIFO), [`LifoQueue`], [`PriorityQueue`], with
//! an optional bound, `task_done` and `join`.
//!
//! These are for tasks of one kernel (`!Send`; share with an `Rc`). Between OS
//! threads and tasks, use [`crate::UniversalQueue`]. The three types have the
//! same methods and differ only in the order they hand items out.
//!
//! # Invariants
//!
//! - Getters are served in arrival order: a new getter queues behind waiting
//!   ones even when items are present. The same holds for putters on a full queue.
//! - A `put` that finds a getter waiting *reserves* the item for it and wakes
//!   it; a `get` that frees room reserves the slot for the first waiting putter.
//!   A woken waiter always succeeds, so nothing is lost between the wake and
//!   the moment it runs.
//! - A cancelled or timed-out `get` takes nothing; the next item goes to the
//!   next getter. A cancelled or timed-out `put` puts nothing and hands the item
//!   back inside its [`PutError`].
//! - The three public types wrap one private implementation generic over its
//!   ordering (`QueueCore<T, Fifo<T>>` …); only this module sees it.
//!
//! # Example
//!
//! ```
//! use std::rc::Rc;
//! use curio::Queue;
//! curio::run(|| {
//!     let q = Rc::new(Queue::new(0));
//!     let q2 = q.clone();
//!     let consumer = curio::spawn(move || -> curio::Result<u32> {
//!         let mut sum = 0;
//!         for _ in 0..3 {
//!             sum += q2.get()?;
//!             q2.task_done()?;
//!         }
//!         Ok(sum)
//!     });
//!     for n in 1..=3 {
//!         q.put(n).unwrap();
//!     }
//!     q.join().unwrap();
//!     assert_eq!(consumer.join().unwrap().unwrap(), 6);
//! });
//! ```

use std::cell::{Cell, RefCell};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;
use std::marker::PhantomData;

use crate::error::{CurioError, Error, Result};
use crate::kernel::State;
use crate::trap;
use crate::wait::WaitQueue;

/// How a queue orders its items (private: the three public queue types each
/// wrap a [`QueueCore`] over one of these).
trait Buffer<T>: Default {
    /// Adds an item.
    fn push(&mut self, item: T);
    /// Removes the next item.
    fn pop(&mut self) -> Option<T>;
    /// Number of items.
    fn len(&self) -> usize;
}

/// First in, first out.
struct Fifo<T>(VecDeque<T>);
/// Last in, first out.
struct Lifo<T>(Vec<T>);
/// Smallest first (like Python's `heapq`).
struct Priority<T>(BinaryHeap<Reverse<T>>);

impl<T> Default for Fifo<T> {
    fn default() -> Self {
        Fifo(VecDeque::new())
    }
}
impl<T> Buffer<T> for Fifo<T> {
    fn push(&mut self, item: T) {
        self.0.push_back(item)
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop_front()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T> Default for Lifo<T> {
    fn default() -> Self {
        Lifo(Vec::new())
    }
}
impl<T> Buffer<T> for Lifo<T> {
    fn push(&mut self, item: T) {
        self.0.push(item)
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

impl<T: Ord> Default for Priority<T> {
    fn default() -> Self {
        Priority(BinaryHeap::new())
    }
}
impl<T: Ord> Buffer<T> for Priority<T> {
    fn push(&mut self, item: T) {
        self.0.push(Reverse(item))
    }
    fn pop(&mut self) -> Option<T> {
        self.0.pop().map(|r| r.0)
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// The queue behind [`Queue`], [`LifoQueue`] and [`PriorityQueue`], generic
/// over its ordering; each public type wraps one and forwards every method.
struct QueueCore<T, B> {
    items: RefCell<B>,
    maxsize: usize,
    getters: RefCell<WaitQueue>,
    putters: RefCell<WaitQueue>,
    joiners: RefCell<WaitQueue>,
    /// Items promised to woken getters (still in `items`).
    reserved_items: Cell<usize>,
    /// Free slots promised to woken putters.
    reserved_slots: Cell<usize>,
    unfinished: Cell<usize>,
    _item: PhantomData<T>,
}

/// A failed `put`: the error, and the item it could not deliver.
pub struct PutError<T> {
    error: Error,
    item: Option<T>,
}

impl<T> PutError<T> {
    pub(crate) fn new(error: Error, item: T) -> PutError<T> {
        PutError {
            error,
            item: Some(item),
        }
    }

    /// Why the put failed (cancelled, timed out …).
    pub fn error(&self) -> &Error {
        &self.error
    }

    /// The item that was not put.
    pub fn into_item(self) -> Option<T> {
        self.item
    }

    /// Both parts.
    pub fn into_parts(self) -> (Error, Option<T>) {
        (self.error, self.item)
    }
}

impl<T> CurioError for PutError<T> {
    fn from_curio(e: Error) -> Self {
        PutError {
            error: e,
            item: None,
        }
    }
    fn as_curio(&self) -> Option<&Error> {
        Some(&self.error)
    }
    fn with_curio(self, e: Error) -> Self {
        PutError {
            error: e,
            item: self.item,
        }
    }
}

impl<T> From<PutError<T>> for Error {
    fn from(e: PutError<T>) -> Error {
        e.error
    }
}

impl<T> fmt::Debug for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PutError")
            .field("error", &self.error)
            .field("item_returned", &self.item.is_some())
            .finish()
    }
}

impl<T> fmt::Display for PutError<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "put failed ({}); the item is returned in this error",
            self.error
        )
    }
}

impl<T> std::error::Error for PutError<T> {}

// The docs of these methods are on the public types (the macro below).
impl<T, B: Buffer<T>> QueueCore<T, B> {
    fn new(maxsize: usize) -> Self {
        QueueCore {
            items: RefCell::new(B::default()),
            maxsize,
            getters: RefCell::default(),
            putters: RefCell::default(),
            joiners: RefCell::default(),
            reserved_items: Cell::new(0),
            reserved_slots: Cell::new(0),
            unfinished: Cell::new(0),
            _item: PhantomData,
        }
    }

    fn qsize(&self) -> usize {
        self.items.borrow().len()
    }

    fn empty(&self) -> bool {
        self.qsize() == 0
    }

    fn full(&self) -> bool {
        self.maxsize > 0 && self.qsize() >= self.maxsize
    }

    fn maxsize(&self) -> usize {
        self.maxsize
    }

    fn free_items(&self) -> usize {
        self.qsize() - self.reserved_items.get()
    }

    fn has_room(&self) -> bool {
        self.maxsize == 0 || self.qsize() + self.reserved_slots.get() < self.maxsize
    }

    fn take(&self) -> T {
        let item = self
            .items
            .borrow_mut()
            .pop()
            .expect("an item was available or reserved");
        if self.maxsize > 0 && trap::wake_one(&self.putters).is_some() {
            self.reserved_slots.set(self.reserved_slots.get() + 1);
        }
        item
    }

    fn add(&self, item: T) {
        self.items.borrow_mut().push(item);
        self.unfinished.set(self.unfinished.get() + 1);
        if trap::wake_one(&self.getters).is_some() {
            self.reserved_items.set(self.reserved_items.get() + 1);
        }
    }

    #[inline(always)] // the switch happens in the caller's frame (arch-notes/trap-flow.md)
    fn get(&self) -> Result<T> {
        if self.free_items() > 0 && !trap::has_waiters(&self.getters) {
            return Ok(self.take());
        }
        trap::park_on(&self.getters, State::QueueGet)?;
        self.reserved_items.set(self.reserved_items.get() - 1);
        Ok(self.take())
    }

    fn try_get(&self) -> Option<T> {
        if self.free_items() > 0 && !trap::has_waiters(&self.getters) {
            Some(self.take())
        } else {
            None
        }
    }

    #[inline(always)] // as `get`
    fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
        if self.maxsize > 0 && (!self.has_room() || trap::has_waiters(&self.putters)) {
            if let Err(error) = trap::park_on(&self.putters, State::QueuePut) {
                return Err(PutError {
                    error,
                    item: Some(item),
                });
            }
            self.reserved_slots.set(self.reserved_slots.get() - 1);
        }
        self.add(item);
        Ok(())
    }

    fn try_put(&self, item: T) -> std::result::Result<(), T> {
        if self.maxsize > 0 && (!self.has_room() || trap::has_waiters(&self.putters)) {
            return Err(item);
        }
        self.add(item);
        Ok(())
    }

    fn task_done(&self) -> Result<()> {
        let n = self.unfinished.get();
        if n == 0 {
            return Err(Error::usage(
                "task_done called more times than there were items put; \
                 call it once per item taken with get",
            ));
        }
        self.unfinished.set(n - 1);
        if n == 1 {
            trap::wake_all(&self.joiners);
        }
        Ok(())
    }

    fn unfinished(&self) -> usize {
        self.unfinished.get()
    }

    fn join(&self) -> Result<()> {
        if self.unfinished.get() == 0 {
            return Ok(());
        }
        trap::park_on(&self.joiners, State::QueueJoin)
    }
}

/// Defines a public queue type wrapping a [`QueueCore`] over `$buffer`, with
/// every method documented once for all three.
macro_rules! queue_type {
    ($(#[$attr:meta])* $name:ident, $buffer:ident $(, $bound:path)?) => {
        $(#[$attr])*
        pub struct $name<T> {
            core: QueueCore<T, $buffer<T>>,
        }

        impl<T $(: $bound)?> $name<T> {
            /// A queue holding at most `maxsize` items (`0`: unbounded).
            pub fn new(maxsize: usize) -> Self {
                $name {
                    core: QueueCore::new(maxsize),
                }
            }

            /// Number of items in the queue.
            pub fn qsize(&self) -> usize {
                self.core.qsize()
            }

            /// True if the queue holds no item.
            pub fn empty(&self) -> bool {
                self.core.empty()
            }

            /// True if the queue is bounded and at its bound.
            pub fn full(&self) -> bool {
                self.core.full()
            }

            /// The bound (`0`: unbounded).
            pub fn maxsize(&self) -> usize {
                self.core.maxsize()
            }

            /// Takes the next item, waiting for one if the queue is empty or
            /// earlier getters are waiting.
            ///
            /// # Cancellation
            ///
            /// A cancel point when it has to wait. A getter cancelled or timed
            /// out here takes nothing; the next item goes to the next getter.
            #[inline(always)] // the switch happens in the caller's frame (arch-notes/trap-flow.md)
            pub fn get(&self) -> Result<T> {
                self.core.get()
            }

            /// Takes the next item if one is free now.
            pub fn try_get(&self) -> Option<T> {
                self.core.try_get()
            }

            /// Adds an item, waiting for room if the queue is bounded and full
            /// (or earlier putters are waiting).
            ///
            /// # Errors
            ///
            /// The caller's cancellation or timeout, with the item handed back.
            ///
            /// # Cancellation
            ///
            /// A cancel point when it has to wait. A putter cancelled or timed
            /// out here puts nothing: the item comes back in
            /// [`PutError::into_item`].
            #[inline(always)] // as `get`
            pub fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
                self.core.put(item)
            }

            /// Adds an item if there is room now; otherwise hands it back.
            pub fn try_put(&self, item: T) -> std::result::Result<(), T> {
                self.core.try_put(item)
            }

            /// Marks one item taken with `get` as processed. When every item
            /// put has been marked done, wakes every task waiting in
            /// [`join`](Self::join). Never blocks.
            ///
            /// # Errors
            ///
            /// [`ErrorKind::Usage`](crate::ErrorKind::Usage) if called more
            /// times than items were put; the count stays at zero.
            pub fn task_done(&self) -> Result<()> {
                self.core.task_done()
            }

            /// Number of items put and not yet marked done with
            /// [`task_done`](Self::task_done).
            pub fn unfinished(&self) -> usize {
                self.core.unfinished()
            }

            /// Waits until every item put has been marked done with
            /// [`task_done`](Self::task_done). Returns at once if none is
            /// unfinished.
            ///
            /// # Cancellation
            ///
            /// A cancel point while items are unfinished; a cancelled joiner
            /// changes nothing.
            pub fn join(&self) -> Result<()> {
                self.core.join()
            }
        }

        impl<T $(: $bound)?> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("qsize", &self.qsize())
                    .field("maxsize", &self.maxsize())
                    .field("unfinished", &self.unfinished())
                    .finish()
            }
        }
    };
}

queue_type! {
    /// A first-in, first-out queue between tasks of one kernel (share it with
    /// an `Rc`). See the [module docs](self) for the rules and an example.
    Queue, Fifo
}

queue_type! {
    /// A last-in, first-out queue (a stack) between tasks of one kernel.
    ///
    /// ```
    /// use curio::LifoQueue;
    /// curio::run(|| {
    ///     let q = LifoQueue::new(0);
    ///     for n in 1..=3 {
    ///         q.put(n).unwrap();
    ///     }
    ///     assert_eq!([q.get().unwrap(), q.get().unwrap(), q.get().unwrap()], [3, 2, 1]);
    /// });
    /// ```
    LifoQueue, Lifo
}

queue_type! {
    /// A queue between tasks of one kernel that hands out its smallest item
    /// first (like Python's `heapq`; wrap items in [`std::cmp::Reverse`] for
    /// the largest first).
    ///
    /// ```
    /// use curio::PriorityQueue;
    /// curio::run(|| {
    ///     let q = PriorityQueue::new(0);
    ///     for job in [(2, "later"), (1, "first"), (3, "last")] {
    ///         q.put(job).unwrap();
    ///     }
    ///     assert_eq!(q.get().unwrap(), (1, "first"));
    ///     assert_eq!(q.get().unwrap(), (2, "later"));
    /// });
    /// ```
    PriorityQueue, Priority, Ord
}
