//! Task synchronization: `Event`, `Lock`, `RLock`, `Semaphore`, `BoundedSemaphore`,
//! `Condition` and the one-shot `ResultCell`.
//!
//! These are for tasks of one kernel: cheap, `!Send`, never a syscall. Share one
//! between tasks with an `Rc`. (For OS threads, see `UniversalEvent` and
//! `UniversalQueue`.)
//!
//! # Invariants
//!
//! - Every wait is a cancel point and honours timeouts. A waiter that is
//!   cancelled or times out leaves the primitive exactly as if it had never
//!   waited: its queue entry goes stale (O(1), see `wait.rs`) and it acquires
//!   nothing.
//! - Releasing hands ownership straight to the first live waiter (FIFO), so a
//!   task arriving later cannot barge in, and a waiter that was woken always
//!   returns `Ok`: a cancellation arriving after the hand-off stays pending for
//!   its next cancel point.
//! - Waking never switches tasks; releasing never blocks.
//! - Acquiring a free lock or semaphore makes no trap (no cancel point).
//!
//! # Example
//!
//! ```
//! use std::rc::Rc;
//! use curio::sync::Event;
//! curio::run(|| {
//!     let go = Rc::new(Event::new());
//!     let g = go.clone();
//!     let kid = curio::spawn(move || -> curio::Result<&str> { g.wait()?; Ok("playing") });
//!     go.set();
//!     assert_eq!(kid.join().unwrap().unwrap(), "playing");
//! });
//! ```

use std::cell::{Cell, RefCell};
use std::fmt;

use crate::error::{Error, ErrorKind, Result};
use crate::kernel::State;
use crate::time::disable_cancellation;
use crate::trap;
use crate::wait::WaitQueue;

// ---------------------------------------------------------------------------
// Event
// ---------------------------------------------------------------------------

/// A flag tasks can wait for. [`Event::set`] wakes every waiter (FIFO).
#[derive(Default)]
pub struct Event {
    set: Cell<bool>,
    waiters: RefCell<WaitQueue>,
}

impl Event {
    /// A new, unset event.
    pub fn new() -> Event {
        Event::default()
    }

    /// True if set.
    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    /// Sets the flag and wakes every waiting task. Never blocks.
    #[inline]
    pub fn set(&self) {
        self.set.set(true);
        trap::wake_all(&self.waiters);
    }

    /// Clears the flag.
    #[inline]
    pub fn clear(&self) {
        self.set.set(false);
    }

    /// Waits until the event is set. Returns at once if it already is.
    ///
    /// # Cancellation
    ///
    /// A cancel point while the event is unset. A cancelled or timed-out waiter is
    /// forgotten by the event; nothing else changes.
    #[inline(always)] // the switch happens in the caller's frame (arch-notes/trap-flow.md)
    pub fn wait(&self) -> Result<()> {
        if self.set.get() {
            return Ok(());
        }
        trap::park_on(&self.waiters, State::EventWait)
    }
}

impl fmt::Debug for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("set", &self.is_set())
            .finish()
    }
}

// ---------------------------------------------------------------------------
// Lock
// ---------------------------------------------------------------------------

/// A mutual-exclusion lock for tasks. [`Lock::acquire`] returns a guard that
/// releases on drop, handing the lock to the first waiter.
///
/// ```
/// use curio::sync::Lock;
/// curio::run(|| {
///     let lock = Lock::new();
///     let guard = lock.acquire().unwrap();
///     assert!(lock.locked());
///     drop(guard);
///     assert!(!lock.locked());
/// });
/// ```
#[derive(Default)]
pub struct Lock {
    locked: Cell<bool>,
    waiters: RefCell<WaitQueue>,
}

/// Holds a [`Lock`]; dropping it releases the lock.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard<'a> {
    lock: &'a Lock,
}

impl Lock {
    /// A new, unlocked lock.
    pub fn new() -> Lock {
        Lock::default()
    }

    /// True if some task holds it.
    pub fn locked(&self) -> bool {
        self.locked.get()
    }

    /// Acquires the lock, waiting in FIFO order behind earlier waiters.
    ///
    /// # Cancellation
    ///
    /// A cancel point only when the lock is held. A waiter cancelled or timed out
    /// here does not acquire the lock and leaves no trace in its queue.
    #[inline(always)] // as `Event::wait`
    pub fn acquire(&self) -> Result<LockGuard<'_>> {
        self.acquire_raw()?;
        Ok(LockGuard { lock: self })
    }

    /// Acquires the lock if it is free, without waiting.
    pub fn try_acquire(&self) -> Option<LockGuard<'_>> {
        if self.locked.get() {
            return None;
        }
        self.locked.set(true);
        Some(LockGuard { lock: self })
    }

    #[inline(always)]
    fn acquire_raw(&self) -> Result<()> {
        if !self.locked.get() {
            self.locked.set(true);
            return Ok(());
        }
        // Woken only by `release`, which hands the lock over still locked.
        trap::park_on(&self.waiters, State::LockAcquire)
    }

    fn release(&self) {
        if trap::wake_one(&self.waiters).is_none() {
            self.locked.set(false);
        }
    }
}

impl Drop for LockGuard<'_> {
    fn drop(&mut self) {
        self.lock.release();
    }
}

impl fmt::Debug for LockGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("lock", self.lock)
            .finish()
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("locked", &self.locked())
            .finish()
    }
}

// ---------------------------------------------------------------------------
// RLock
// ---------------------------------------------------------------------------

/// A re-entrant lock: the task holding it may acquire it again, and must release
/// it as many times. Releasing it from a task that does not hold it is an error.
///
/// ```
/// use curio::sync::RLock;
/// curio::run(|| {
///     let r = RLock::new();
///     r.acquire().unwrap();
///     r.acquire().unwrap();
///     r.release().unwrap();
///     assert!(r.locked());
///     r.release().unwrap();
///     assert!(r.release().is_err()); // not held
/// });
/// ```
#[derive(Default)]
pub struct RLock {
    owner: Cell<u64>,
    count: Cell<u32>,
    waiters: RefCell<WaitQueue>,
}

impl RLock {
    /// A new, unlocked re-entrant lock.
    pub fn new() -> RLock {
        RLock::default()
    }

    /// True if some task holds it.
    pub fn locked(&self) -> bool {
        self.count.get() > 0
    }

    /// Acquires it (again, if the caller already holds it).
    ///
    /// # Cancellation
    ///
    /// A cancel point only when another task holds it. A cancelled or timed-out
    /// waiter acquires nothing.
    #[inline(always)] // as `Event::wait`
    pub fn acquire(&self) -> Result<()> {
        let me = trap::current_id();
        if self.count.get() == 0 {
            self.owner.set(me);
            self.count.set(1);
            return Ok(());
        }
        if self.owner.get() == me {
            let Some(count) = self.count.get().checked_add(1) else {
                return Err(Error::usage(format!(
                    "task {me} acquired an RLock {} times without releasing it",
                    u32::MAX
                )));
            };
            self.count.set(count);
            return Ok(());
        }
        // `release` hands the lock over: it sets us as owner with count 1.
        trap::park_on(&self.waiters, State::LockAcquire)
    }

    /// Releases one level of ownership.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`] if the calling task does not hold the lock.
    pub fn release(&self) -> Result<()> {
        let me = trap::current_id();
        if self.count.get() == 0 || self.owner.get() != me {
            return Err(Error::usage(format!(
                "task {me} released an RLock it does not hold; release it from the task that acquired it"
            )));
        }
        self.count.set(self.count.get() - 1);
        if self.count.get() == 0 {
            match trap::wake_one(&self.waiters) {
                Some(next) => {
                    self.owner.set(next);
                    self.count.set(1);
                }
                None => self.owner.set(0),
            }
        }
        Ok(())
    }
}

impl fmt::Debug for RLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RLock");
        d.field("locked", &self.locked());
        if self.locked() {
            d.field("owner", &self.owner.get())
                .field("count", &self.count.get());
        }
        d.finish()
    }
}

// ---------------------------------------------------------------------------
// Semaphore and BoundedSemaphore
// ---------------------------------------------------------------------------

/// A counting semaphore. [`Semaphore::acquire`] takes a unit (waiting in FIFO
/// order when none is left) and returns a guard that gives it back on drop.
#[derive(Default)]
pub struct Semaphore {
    value: Cell<usize>,
    bound: Option<usize>,
    waiters: RefCell<WaitQueue>,
}

/// A unit of a [`Semaphore`]; dropping it releases the unit.
#[must_use = "the unit is released as soon as the guard is dropped"]
pub struct SemaphoreGuard<'a> {
    sem: &'a Semaphore,
}

impl Semaphore {
    /// A semaphore with `value` units.
    pub fn new(value: usize) -> Semaphore {
        Semaphore {
            value: Cell::new(value),
            bound: None,
            waiters: RefCell::default(),
        }
    }

    /// Units available now.
    pub fn value(&self) -> usize {
        self.value.get()
    }

    /// True if no unit is available.
    pub fn locked(&self) -> bool {
        self.value.get() == 0
    }

    /// Takes one unit, waiting if none is left.
    ///
    /// # Cancellation
    ///
    /// A cancel point only when no unit is left. A cancelled or timed-out waiter
    /// takes nothing.
    #[inline(always)] // as `Event::wait`
    pub fn acquire(&self) -> Result<SemaphoreGuard<'_>> {
        if self.value.get() > 0 {
            self.value.set(self.value.get() - 1);
        } else {
            // `release` hands its unit straight to us.
            trap::park_on(&self.waiters, State::SemaAcquire)?;
        }
        Ok(SemaphoreGuard { sem: self })
    }

    /// Gives back a unit taken without a guard (see [`SemaphoreGuard::forget`]).
    ///
    /// # Errors
    ///
    /// For a [`BoundedSemaphore`], [`ErrorKind::Usage`] if this would raise the
    /// value above its initial value.
    pub fn release(&self) -> Result<()> {
        if trap::wake_one(&self.waiters).is_some() {
            return Ok(());
        }
        if let Some(bound) = self.bound {
            if self.value.get() >= bound {
                return Err(Error::usage(format!(
                    "a BoundedSemaphore was released more times than it was acquired (bound {bound})"
                )));
            }
        }
        let Some(value) = self.value.get().checked_add(1) else {
            return Err(Error::usage(
                "a Semaphore was released more times than it can count",
            ));
        };
        self.value.set(value);
        Ok(())
    }
}

impl fmt::Debug for Semaphore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Semaphore");
        d.field("value", &self.value());
        if let Some(bound) = self.bound {
            d.field("bound", &bound);
        }
        d.finish()
    }
}

impl SemaphoreGuard<'_> {
    /// Keeps the unit: the guard no longer releases it on drop.
    pub fn forget(self) {
        std::mem::forget(self);
    }
}

impl Drop for SemaphoreGuard<'_> {
    fn drop(&mut self) {
        // A guard always stands for a unit taken, so this cannot exceed a bound.
        let _ = self.sem.release();
    }
}

impl fmt::Debug for SemaphoreGuard<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SemaphoreGuard")
            .field("semaphore", self.sem)
            .finish()
    }
}

/// A semaphore that refuses to be released above its initial value.
///
/// ```
/// use curio::sync::BoundedSemaphore;
/// curio::run(|| {
///     let s = BoundedSemaphore::new(1);
///     s.acquire().unwrap().forget();
///     s.release().unwrap();
///     assert!(s.release().is_err());
/// });
/// ```
#[derive(Debug)]
pub struct BoundedSemaphore;

impl BoundedSemaphore {
    /// A [`Semaphore`] bounded by its initial `value`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(value: usize) -> Semaphore {
        Semaphore {
            value: Cell::new(value),
            bound: Some(value),
            waiters: RefCell::default(),
        }
    }
}

// ---------------------------------------------------------------------------
// Condition
// ---------------------------------------------------------------------------

/// A condition variable over a [`Lock`]. Waiting releases the lock and always
/// re-acquires it before returning, also when cancelled or timed out.
///
/// ```
/// use std::{cell::Cell, rc::Rc};
/// use curio::sync::Condition;
/// curio::run(|| {
///     let cond = Rc::new(Condition::new());
///     let ready = Rc::new(Cell::new(false));
///     let (c, r) = (cond.clone(), ready.clone());
///     let kid = curio::spawn(move || -> curio::Result<()> {
///         let mut g = c.lock()?;
///         c.wait_for(&mut g, || r.get())
///     });
///     curio::yield_now().unwrap();
///     let g = cond.lock().unwrap();
///     ready.set(true);
///     cond.notify(&g, 1).unwrap();
///     drop(g);
///     kid.join().unwrap().unwrap();
/// });
/// ```
#[derive(Default)]
pub struct Condition {
    lock: Lock,
    waiters: RefCell<WaitQueue>,
}

impl Condition {
    /// A condition with its own lock.
    pub fn new() -> Condition {
        Condition::default()
    }

    /// Acquires the condition's lock.
    ///
    /// # Cancellation
    ///
    /// As [`Lock::acquire`].
    pub fn lock(&self) -> Result<LockGuard<'_>> {
        self.lock.acquire()
    }

    fn check_guard(&self, guard: &LockGuard<'_>) -> Result<()> {
        if std::ptr::eq(guard.lock, &self.lock) {
            Ok(())
        } else {
            Err(Error::usage(
                "the guard passed to a Condition is not for that condition's lock",
            ))
        }
    }

    /// Releases the lock, waits to be notified, re-acquires the lock.
    ///
    /// # Cancellation
    ///
    /// A cancel point. Cancelled or timed out, the waiter stops waiting, still
    /// re-acquires the lock (with cancellation masked) and then returns the error:
    /// `guard` is valid in every case.
    pub fn wait(&self, guard: &mut LockGuard<'_>) -> Result<()> {
        self.check_guard(guard)?;
        trap::cancel_point()?;
        self.lock.release();
        let r = trap::park_on(&self.waiters, State::CondWait);
        disable_cancellation(|| self.lock.acquire_raw())
            .expect("a masked lock acquire cannot be interrupted");
        r
    }

    /// Waits until `predicate` holds, checking it each time the condition is notified.
    ///
    /// # Cancellation
    ///
    /// As [`Condition::wait`].
    pub fn wait_for(
        &self,
        guard: &mut LockGuard<'_>,
        mut predicate: impl FnMut() -> bool,
    ) -> Result<()> {
        while !predicate() {
            self.wait(guard)?;
        }
        Ok(())
    }

    /// Wakes up to `n` waiters (they run once the lock is released).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`] if `guard` is not for this condition's lock.
    pub fn notify(&self, guard: &LockGuard<'_>, n: usize) -> Result<()> {
        self.check_guard(guard)?;
        for _ in 0..n {
            if trap::wake_one(&self.waiters).is_none() {
                break;
            }
        }
        Ok(())
    }

    /// Wakes every waiter.
    ///
    /// # Errors
    ///
    /// As [`Condition::notify`].
    pub fn notify_all(&self, guard: &LockGuard<'_>) -> Result<()> {
        self.check_guard(guard)?;
        trap::wake_all(&self.waiters);
        Ok(())
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Condition")
            .field("locked", &self.lock.locked())
            .finish()
    }
}

// ---------------------------------------------------------------------------
// ResultCell
// ---------------------------------------------------------------------------

/// A one-shot result: one task sets a value or an error, another waits for it
/// and takes it with [`get`](ResultCell::get) (Curio's `Result`, whose
/// `unwrap` is `get` here). Between threads, use [`crate::UniversalResult`].
///
/// ```
/// use std::rc::Rc;
/// use curio::sync::ResultCell;
/// curio::run(|| {
///     let cell = Rc::new(ResultCell::new());
///     let c = cell.clone();
///     curio::spawn(move || c.set_value(42).unwrap());
///     assert_eq!(cell.get().unwrap(), 42); // waits until set
/// });
/// ```
pub struct ResultCell<T> {
    value: RefCell<Option<Result<T>>>,
    ready: Event,
}

impl<T> Default for ResultCell<T> {
    fn default() -> Self {
        ResultCell {
            value: RefCell::new(None),
            ready: Event::new(),
        }
    }
}

impl<T> ResultCell<T> {
    /// An empty cell.
    pub fn new() -> ResultCell<T> {
        ResultCell::default()
    }

    /// True once a value or error has been set.
    pub fn is_set(&self) -> bool {
        self.ready.is_set()
    }

    fn set(&self, r: Result<T>) -> Result<()> {
        if self.is_set() {
            return Err(Error::usage(
                "the ResultCell was already set; it holds one result only",
            ));
        }
        *self.value.borrow_mut() = Some(r);
        self.ready.set();
        Ok(())
    }

    /// Sets the value and wakes the waiters.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`] if already set.
    pub fn set_value(&self, value: T) -> Result<()> {
        self.set(Ok(value))
    }

    /// Sets an error and wakes the waiters.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`] if already set.
    pub fn set_error(&self, error: Error) -> Result<()> {
        self.set(Err(error))
    }

    /// Waits until set, then takes the value (or returns the error that was
    /// set). Returns at once if already set.
    ///
    /// # Errors
    ///
    /// The error that was set; [`ErrorKind::ResultTaken`] after an earlier
    /// `get` took the result; the caller's cancellation or timeout.
    ///
    /// # Cancellation
    ///
    /// A cancel point until set; a cancelled or timed-out waiter takes nothing,
    /// and the result stays for the next `get`.
    pub fn get(&self) -> Result<T> {
        self.ready.wait()?;
        match self.value.borrow_mut().take() {
            Some(r) => r,
            None => Err(Error::new(
                ErrorKind::ResultTaken,
                "an earlier get took this ResultCell's result",
            )),
        }
    }
}

impl<T> fmt::Debug for ResultCell<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.value.try_borrow().as_deref() {
            _ if !self.is_set() => "unset",
            Ok(Some(Ok(_))) => "value",
            Ok(Some(Err(_))) => "error",
            Ok(None) => "taken",
            Err(_) => "being taken",
        };
        f.debug_struct("ResultCell").field("state", &state).finish()
    }
}
