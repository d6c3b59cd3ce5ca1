//! Thread-safe queue, event and one-shot result, usable from OS threads and
//! tasks at once: [`UniversalQueue`], [`UniversalEvent`] and [`UniversalResult`].
//!
//! Called from an OS thread, `get`, `put`, `join` and `wait` block the thread;
//! called from a curio task, they suspend only the task. Both sides may use one
//! primitive at the same time, and tasks may belong to different kernels.
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
//!   a cancelled `put` hands the item back; a cancelled `join` or
//!   [`UniversalResult::get`] changes nothing.
//! - A queue's `join` waits for the next moment its count of unfinished items
//!   is zero, recorded as an epoch that only moves forward: a joiner woken late
//!   (or spuriously) returns even if new items were put since, so no joiner
//!   sleeps through the moment it waited for.
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

use crate::error::{Error, ErrorKind, Result};
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
    joiners: Side,
    /// Items put and not yet marked done with `task_done`.
    unfinished: usize,
    /// How many times `unfinished` has dropped to zero.
    done_epoch: u64,
}

struct QueueShared<T> {
    state: Mutex<QueueState<T>>,
    maxsize: usize,
    not_empty: Condvar,
    not_full: Condvar,
    all_done: Condvar,
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
        let st = lock(&self.shared.state);
        f.debug_struct("UniversalQueue")
            .field("qsize", &st.items.len())
            .field("maxsize", &self.shared.maxsize)
            .field("unfinished", &st.unfinished)
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
                    joiners: Side::default(),
                    unfinished: 0,
                    done_epoch: 0,
                }),
                maxsize,
                not_empty: Condvar::new(),
                not_full: Condvar::new(),
                all_done: Condvar::new(),
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

    /// Stores a new item and counts it as unfinished.
    fn push(&self, st: &mut QueueState<T>, item: T) {
        st.items.push_back(item);
        st.unfinished += 1;
        self.item_added(st);
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
            self.push(&mut st, item);
            return Ok(());
        }
        loop {
            {
                let mut st = lock(&self.shared.state);
                if self.has_room(&st) {
                    self.push(&mut st, item);
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
        self.push(&mut st, item);
        Ok(())
    }

    /// Number of items put and not yet marked done with [`task_done`](Self::task_done).
    pub fn unfinished(&self) -> usize {
        lock(&self.shared.state).unfinished
    }

    /// Marks one item taken with `get` as processed. When every item put has
    /// been marked done, wakes every task and thread waiting in
    /// [`join`](Self::join). Never blocks.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`] if called more times than
    /// items were put; the count stays at zero.
    pub fn task_done(&self) -> Result<()> {
        let mut st = lock(&self.shared.state);
        if st.unfinished == 0 {
            return Err(Error::usage(
                "task_done called more times than there were items put; \
                 call it once per item taken with get",
            ));
        }
        st.unfinished -= 1;
        if st.unfinished == 0 {
            st.done_epoch += 1;
            while st.joiners.wake_task() {}
            self.shared.all_done.notify_all();
        }
        Ok(())
    }

    /// Waits until every item put has been marked done with
    /// [`task_done`](Self::task_done): suspends the task, or blocks the thread.
    /// Returns at once if nothing is unfinished. Returns once the count has
    /// been zero at some moment after the call began, even if more items were
    /// put before the joiner ran again.
    ///
    /// ```
    /// use curio::UniversalQueue;
    /// let q = UniversalQueue::new(0);
    /// let q2 = q.clone();
    /// let worker = std::thread::spawn(move || {
    ///     for _ in 0..3 {
    ///         let n: u32 = q2.get().unwrap();
    ///         println!("processed {n}");
    ///         q2.task_done().unwrap();
    ///     }
    /// });
    /// curio::run(|| {
    ///     for n in 0..3 {
    ///         q.put(n).unwrap();
    ///     }
    ///     q.join().unwrap(); // suspends the task until the thread has done all three
    ///     assert_eq!(q.unfinished(), 0);
    /// });
    /// worker.join().unwrap();
    /// ```
    ///
    /// # Cancellation
    ///
    /// From a task, a cancel point while items are unfinished. A joiner
    /// cancelled or timed out here leaves the queue as it was (no count
    /// changes, no registration remains). From a thread it cannot be cancelled.
    pub fn join(&self) -> Result<()> {
        if !trap::in_task() {
            let mut st = lock(&self.shared.state);
            let epoch = st.done_epoch;
            while st.unfinished > 0 && st.done_epoch == epoch {
                st = self
                    .shared
                    .all_done
                    .wait(st)
                    .unwrap_or_else(|e| e.into_inner());
            }
            return Ok(());
        }
        let epoch = {
            let st = lock(&self.shared.state);
            if st.unfinished == 0 {
                return Ok(());
            }
            st.done_epoch
        };
        loop {
            let r = park_task(&self.shared.state, State::QueueJoin, |st, tw| {
                if st.unfinished == 0 || st.done_epoch != epoch {
                    return false;
                }
                st.joiners.tasks.push_back(tw);
                true
            });
            match r {
                Err((e, w)) => {
                    // Every joiner is woken together: a wake-up that was
                    // already posted to us need not be passed on.
                    lock(&self.shared.state).joiners.forget(w);
                    return Err(e);
                }
                Ok(()) => {
                    let st = lock(&self.shared.state);
                    if st.unfinished == 0 || st.done_epoch != epoch {
                        return Ok(());
                    }
                }
            }
        }
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

// ---------------------------------------------------------------------------
// UniversalResult
// ---------------------------------------------------------------------------

struct ResultState<T> {
    /// Set once; `None` again after a `get` took it (then `set` stays true).
    value: Option<Result<T>>,
    set: bool,
    waiters: Side,
}

struct ResultShared<T> {
    state: Mutex<ResultState<T>>,
    cond: Condvar,
}

/// A one-shot result shared by OS threads and tasks (of any kernels): one side
/// sets a value or an error once, and a thread or a task waits for it and takes
/// it (Curio's `UniversalResult`; the thread-safe [`ResultCell`](crate::ResultCell)).
/// Cloning gives another handle to the same result.
///
/// ```
/// use curio::UniversalResult;
/// let answer = UniversalResult::new();
/// let a = answer.clone();
/// let worker = std::thread::spawn(move || a.set_value(6 * 7).unwrap());
/// let got = curio::run(|| answer.get()); // the task suspends until set
/// assert_eq!(got.unwrap(), 42);
/// worker.join().unwrap();
/// ```
pub struct UniversalResult<T> {
    shared: Arc<ResultShared<T>>,
}

impl<T> Clone for UniversalResult<T> {
    fn clone(&self) -> Self {
        UniversalResult {
            shared: self.shared.clone(),
        }
    }
}

impl<T: Send> Default for UniversalResult<T> {
    fn default() -> Self {
        UniversalResult::new()
    }
}

impl<T> fmt::Debug for UniversalResult<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.shared.state);
        let state = match &st.value {
            _ if !st.set => "unset",
            Some(Ok(_)) => "value",
            Some(Err(_)) => "error",
            None => "taken",
        };
        f.debug_struct("UniversalResult")
            .field("state", &state)
            .finish()
    }
}

impl<T: Send> UniversalResult<T> {
    /// A new, unset result.
    pub fn new() -> UniversalResult<T> {
        UniversalResult {
            shared: Arc::new(ResultShared {
                state: Mutex::new(ResultState {
                    value: None,
                    set: false,
                    waiters: Side::default(),
                }),
                cond: Condvar::new(),
            }),
        }
    }

    /// True once a value or an error has been set (even if a `get` took it since).
    pub fn is_set(&self) -> bool {
        lock(&self.shared.state).set
    }

    fn set(&self, r: Result<T>) -> Result<()> {
        let mut st = lock(&self.shared.state);
        if st.set {
            return Err(Error::usage(
                "the UniversalResult was already set; it holds one result only \
                 (use a UniversalQueue for a stream of values)",
            ));
        }
        st.value = Some(r);
        st.set = true;
        while st.waiters.wake_task() {}
        self.shared.cond.notify_all();
        Ok(())
    }

    /// Sets the value and wakes every waiting task and thread. Never blocks;
    /// callable from a thread or a task.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`] if already set (the value is dropped; the result
    /// keeps what was set first).
    pub fn set_value(&self, value: T) -> Result<()> {
        self.set(Ok(value))
    }

    /// Sets an error and wakes every waiting task and thread (Curio's
    /// `set_exception`). Never blocks.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`] if already set.
    pub fn set_error(&self, error: Error) -> Result<()> {
        self.set(Err(error))
    }

    fn take(st: &mut ResultState<T>) -> Result<T> {
        match st.value.take() {
            Some(r) => r,
            None => Err(Error::new(
                ErrorKind::ResultTaken,
                "an earlier get took this UniversalResult's result",
            )),
        }
    }

    /// Waits until set, then takes the value, or returns the error that was
    /// set: suspends the task, or blocks the thread (Curio's `unwrap`).
    ///
    /// # Errors
    ///
    /// The error that was set; [`ErrorKind::ResultTaken`] if an earlier `get`
    /// (by any thread or task) took the result; the task's cancellation or
    /// timeout.
    ///
    /// # Cancellation
    ///
    /// From a task, a cancel point while unset. A waiter cancelled or timed out
    /// here takes nothing and leaves no registration: the result stays for the
    /// next `get`. From a thread it cannot be cancelled.
    pub fn get(&self) -> Result<T> {
        if !trap::in_task() {
            let mut st = lock(&self.shared.state);
            while !st.set {
                st = self.shared.cond.wait(st).unwrap_or_else(|e| e.into_inner());
            }
            return Self::take(&mut st);
        }
        loop {
            {
                let mut st = lock(&self.shared.state);
                if st.set {
                    return Self::take(&mut st);
                }
            }
            let r = park_task(&self.shared.state, State::EventWait, |st, tw| {
                if st.set {
                    return false;
                }
                st.waiters.tasks.push_back(tw);
                true
            });
            if let Err((e, w)) = r {
                // Every waiter is woken by `set`: nothing to pass on.
                lock(&self.shared.state).waiters.forget(w);
                return Err(e);
            }
        }
    }
}
