//! Thread-safe queue and event, usable from OS threads and tasks at once:
//! [`UniversalQueue`] and [`UniversalEvent`].
//!
//! Called from an OS thread, `get`, `put` and `wait` block the thread; called from
//! a curio task, they suspend only the task. Both sides may use one queue at the
//! same time, and tasks may belong to different kernels.
//!
//! # Invariants
//!
//! - All state sits behind one mutex. A task checks and registers itself as a
//!   waiter under that mutex, so a wake cannot fall between the two.
//! - Threads wait on condition variables; tasks are woken through their
//!   kernel's inbox (or directly, when the waker runs on that kernel's thread).
//! - A woken waiter re-checks; a task that is cancelled or times out removes its
//!   registration, and if it had already been chosen for a wake-up it passes that
//!   wake-up on, so no item or slot is stranded. A cancelled `get` takes nothing;
//!   a cancelled `put` hands the item back.
//!
//! # Example
//!
//! ```
//! use curio::UniversalQueue;
//! let q = UniversalQueue::new(0);
//! let q2 = q.clone();
//! let producer = std::thread::spawn(move || {
//!     for n in 0..3 {
//!         q2.put(n).unwrap(); // blocks the thread if the queue were full
//!     }
//! });
//! let total = curio::run(|| (0..3).map(|_| q.get().unwrap()).sum::<i32>());
//! producer.join().unwrap();
//! assert_eq!(total, 3);
//! ```

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::error::Result;
use crate::kernel::State;
use crate::poller::InboxSender;
use crate::queue::PutError;
use crate::trap;
use crate::wait::Waiter;

/// A task registered to be woken: its kernel's inbox and its wait.
struct TaskWaiter {
    inbox: InboxSender,
    waiter: Waiter,
}

/// The waiters of one side (getters, putters, event waiters).
#[derive(Default)]
struct Side {
    tasks: VecDeque<TaskWaiter>,
}

impl Side {
    /// Wakes the oldest waiting task, if any. Returns whether one was woken.
    fn wake_task(&mut self) -> bool {
        match self.tasks.pop_front() {
            Some(t) => {
                trap::post_wake(&t.inbox, t.waiter);
                true
            }
            None => false,
        }
    }

    /// Removes `w`'s registration; false if a waker already took it.
    fn forget(&mut self, w: Waiter) -> bool {
        match self.tasks.iter().position(|t| t.waiter == w) {
            Some(i) => {
                self.tasks.remove(i);
                true
            }
            None => false,
        }
    }
}

/// Parks the current task after `check` (run under the caller's lock) says it
/// must wait; `check` registers the waiter in `side` or returns false to retry
/// at once. Returns the waiter on wake-up, or the cancellation error.
fn park_task<S>(
    shared: &Mutex<S>,
    state: State,
    mut register: impl FnMut(&mut S, TaskWaiter) -> bool,
) -> std::result::Result<(), (crate::Error, Waiter)> {
    let mut mine = None;
    let r = trap::park_external(state, |w| {
        mine = Some(w);
        let mut st = lock(shared);
        let tw = TaskWaiter {
            inbox: trap::inbox(),
            waiter: w,
        };
        if !register(&mut st, tw) {
            trap::wake(w); // the condition changed: retry without sleeping
        }
    });
    match (r, mine) {
        (Ok(()), _) => Ok(()),
        (Err(e), Some(w)) => Err((e, w)),
        // Cancelled before registering: nothing to undo.
        (Err(e), None) => Err((
            e,
            Waiter {
                slot: u32::MAX,
                wait_id: 0,
            },
        )),
    }
}

fn lock<S>(m: &Mutex<S>) -> MutexGuard<'_, S> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// UniversalQueue
// ---------------------------------------------------------------------------

struct QueueState<T> {
    items: VecDeque<T>,
    getters: Side,
    putters: Side,
}

struct QueueShared<T> {
    state: Mutex<QueueState<T>>,
    maxsize: usize,
    not_empty: Condvar,
    not_full: Condvar,
}

/// A FIFO queue shared by OS threads and tasks (of any kernels). Cloning gives
/// another handle to the same queue.
pub struct UniversalQueue<T> {
    shared: Arc<QueueShared<T>>,
}

impl<T> Clone for UniversalQueue<T> {
    fn clone(&self) -> Self {
        UniversalQueue {
            shared: self.shared.clone(),
        }
    }
}

impl<T> fmt::Debug for UniversalQueue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UniversalQueue")
            .field("qsize", &lock(&self.shared.state).items.len())
            .finish()
    }
}

impl<T: Send> UniversalQueue<T> {
    /// A queue holding at most `maxsize` items (`0`: unbounded).
    pub fn new(maxsize: usize) -> UniversalQueue<T> {
        UniversalQueue {
            shared: Arc::new(QueueShared {
                state: Mutex::new(QueueState {
                    items: VecDeque::new(),
                    getters: Side::default(),
                    putters: Side::default(),
                }),
                maxsize,
                not_empty: Condvar::new(),
                not_full: Condvar::new(),
            }),
        }
    }

    /// Number of items now.
    pub fn qsize(&self) -> usize {
        lock(&self.shared.state).items.len()
    }

    /// True if it holds no item now.
    pub fn empty(&self) -> bool {
        self.qsize() == 0
    }

    /// True if bounded and at its bound now.
    pub fn full(&self) -> bool {
        self.shared.maxsize > 0 && self.qsize() >= self.shared.maxsize
    }

    fn has_room(&self, st: &QueueState<T>) -> bool {
        self.shared.maxsize == 0 || st.items.len() < self.shared.maxsize
    }

    /// Signals that an item arrived: one task getter and one thread getter may go.
    fn item_added(&self, st: &mut QueueState<T>) {
        st.getters.wake_task();
        self.shared.not_empty.notify_one();
    }

    /// Signals that a slot was freed.
    fn slot_freed(&self, st: &mut QueueState<T>) {
        if self.shared.maxsize > 0 {
            st.putters.wake_task();
            self.shared.not_full.notify_one();
        }
    }

    /// Takes the next item: suspends the task, or blocks the thread, while empty.
    ///
    /// # Cancellation
    ///
    /// From a task, a cancel point while the queue is empty. A getter cancelled
    /// or timed out here takes nothing. From a thread it cannot be cancelled.
    pub fn get(&self) -> Result<T> {
        if !trap::in_task() {
            let mut st = lock(&self.shared.state);
            loop {
                if let Some(item) = st.items.pop_front() {
                    self.slot_freed(&mut st);
                    return Ok(item);
                }
                st = self
                    .shared
                    .not_empty
                    .wait(st)
                    .unwrap_or_else(|e| e.into_inner());
            }
        }
        loop {
            {
                let mut st = lock(&self.shared.state);
                if let Some(item) = st.items.pop_front() {
                    self.slot_freed(&mut st);
                    return Ok(item);
                }
            }
            let r = park_task(&self.shared.state, State::QueueGet, |st, tw| {
                if !st.items.is_empty() {
                    return false;
                }
                st.getters.tasks.push_back(tw);
                true
            });
            if let Err((e, w)) = r {
                let mut st = lock(&self.shared.state);
                if !st.getters.forget(w) && !st.items.is_empty() {
                    // We had been chosen for an item: pass the wake-up on.
                    self.item_added(&mut st);
                }
                return Err(e);
            }
        }
    }

    /// Adds an item: suspends the task, or blocks the thread, while full.
    ///
    /// # Cancellation
    ///
    /// From a task, a cancel point while the queue is full. A putter cancelled
    /// or timed out here puts nothing; the item comes back in the error.
    pub fn put(&self, item: T) -> std::result::Result<(), PutError<T>> {
        if !trap::in_task() {
            let mut st = lock(&self.shared.state);
            while !self.has_room(&st) {
                st = self
                    .shared
                    .not_full
                    .wait(st)
                    .unwrap_or_else(|e| e.into_inner());
            }
            st.items.push_back(item);
            self.item_added(&mut st);
            return Ok(());
        }
        loop {
            {
                let mut st = lock(&self.shared.state);
                if self.has_room(&st) {
                    st.items.push_back(item);
                    self.item_added(&mut st);
                    return Ok(());
                }
            }
            let r = park_task(&self.shared.state, State::QueuePut, |st, tw| {
                if self.has_room(st) {
                    return false;
                }
                st.putters.tasks.push_back(tw);
                true
            });
            if let Err((e, w)) = r {
                let mut st = lock(&self.shared.state);
                if !st.putters.forget(w) && self.has_room(&st) {
                    self.slot_freed(&mut st);
                }
                return Err(PutError::new(e, item));
            }
        }
    }

    /// Takes an item if one is there now.
    pub fn try_get(&self) -> Option<T> {
        let mut st = lock(&self.shared.state);
        let item = st.items.pop_front()?;
        self.slot_freed(&mut st);
        Some(item)
    }

    /// Adds an item if there is room now; otherwise hands it back.
    pub fn try_put(&self, item: T) -> std::result::Result<(), T> {
        let mut st = lock(&self.shared.state);
        if !self.has_room(&st) {
            return Err(item);
        }
        st.items.push_back(item);
        self.item_added(&mut st);
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// UniversalEvent
// ---------------------------------------------------------------------------

struct EventState {
    set: bool,
    waiters: Side,
}

struct EventShared {
    state: Mutex<EventState>,
    cond: Condvar,
}

/// An event shared by OS threads and tasks (of any kernels). Cloning gives
/// another handle to the same event.
///
/// ```
/// use curio::UniversalEvent;
/// let evt = UniversalEvent::new();
/// let e2 = evt.clone();
/// let t = std::thread::spawn(move || e2.wait().unwrap()); // blocks the thread
/// curio::run(|| evt.set());
/// t.join().unwrap();
/// ```
#[derive(Clone)]
pub struct UniversalEvent {
    shared: Arc<EventShared>,
}

impl Default for UniversalEvent {
    fn default() -> Self {
        UniversalEvent::new()
    }
}

impl fmt::Debug for UniversalEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UniversalEvent")
            .field("set", &self.is_set())
            .finish()
    }
}

impl UniversalEvent {
    /// A new, unset event.
    pub fn new() -> UniversalEvent {
        UniversalEvent {
            shared: Arc::new(EventShared {
                state: Mutex::new(EventState {
                    set: false,
                    waiters: Side::default(),
                }),
                cond: Condvar::new(),
            }),
        }
    }

    /// True if set.
    pub fn is_set(&self) -> bool {
        lock(&self.shared.state).set
    }

    /// Sets the flag and wakes every waiting task and thread. Never blocks.
    pub fn set(&self) {
        let mut st = lock(&self.shared.state);
        st.set = true;
        while st.waiters.wake_task() {}
        self.shared.cond.notify_all();
    }

    /// Clears the flag.
    pub fn clear(&self) {
        lock(&self.shared.state).set = false;
    }

    /// Waits until set: suspends the task, or blocks the thread.
    ///
    /// # Cancellation
    ///
    /// From a task, a cancel point while unset; a cancelled waiter is forgotten
    /// by the event. From a thread it cannot be cancelled.
    pub fn wait(&self) -> Result<()> {
        if !trap::in_task() {
            let mut st = lock(&self.shared.state);
            while !st.set {
                st = self.shared.cond.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            return Ok(());
        }
        if self.is_set() {
            return Ok(());
        }
        let r = park_task(&self.shared.state, State::EventWait, |st, tw| {
            if st.set {
                return false;
            }
            st.waiters.tasks.push_back(tw);
            true
        });
        match r {
            Ok(()) => Ok(()),
            Err((e, w)) => {
                lock(&self.shared.state).waiters.forget(w);
                Err(e)
            }
        }
    }
}
