//! Task groups: supervise a set of tasks, collect their results, and make sure
//! none outlives the group.
//!
//! # Invariants
//!
//! - When [`TaskGroup::join`] ends, whether normally, by the joiner's own
//!   cancellation or timeout, or because a member failed, every member still
//!   running (daemons included) has been cancelled and driven to completion. The
//!   waits of that clean-up run with cancellation masked, so they cannot be cut
//!   short.
//! - Dropping a group that was never joined (inside a task) cancels every
//!   member still running, then joins it, like Curio's `async with` when its
//!   body raises. [`TaskGroup::scope`] goes further: it is a function,
//!   so it cannot be leaked, and its members may borrow from the caller's stack.
//! - Members report their end through the group link the kernel calls when a
//!   member terminates; the group keeps the completion order.
//!
//! # Example
//!
//! ```
//! use curio::{TaskGroup, Wait};
//! curio::run(|| {
//!     let g = TaskGroup::with_wait(Wait::Any);
//!     g.spawn(|| { curio::sleep(std::time::Duration::from_millis(50))?; Ok(1) }).unwrap();
//!     g.spawn(|| Ok::<_, curio::Error>(2)).unwrap();
//!     g.join().unwrap();
//!     assert_eq!(g.result().unwrap().unwrap(), 2); // the first to finish
//!     // the slow one was cancelled when the group ended
//!     assert!(g.tasks().iter().all(|t| t.is_terminated()));
//! });
//! ```

use std::cell::{Cell, RefCell};
use std::marker::PhantomData;
use std::rc::{Rc, Weak};

use crate::error::{Error, ErrorKind, Result};
use crate::kernel::{GroupLink, State};
use crate::task::{self, Task, TaskRef};
use crate::time::disable_cancellation;
use crate::trap;
use crate::wait::WaitQueue;

/// When [`TaskGroup::join`] stops waiting. Whatever the policy, a member that
/// fails (panics, or returns a failure per [`Outcome`]) stops the wait, and every
/// member still running is then cancelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Wait {
    /// Wait for every member (the default).
    #[default]
    All,
    /// Stop at the first member to finish, whatever its outcome.
    Any,
    /// Stop at the first member that produces a value ([`Outcome::is_value`]),
    /// Curio's `wait=object`.
    FirstValue,
    /// Do not wait: cancel all members at once.
    None,
}

/// How a group reads a member's return value.
///
/// Implemented for `()` (never a value, never a failure), `Result<T, E>` (a
/// value when `Ok`, a failure when `Err`), `Option<T>` (a value when `Some`),
/// and plain data (numbers, `bool`, `char`, `String`, `Vec<T>`, `Box<T>`:
/// always a value). Implement it for your own types to use them in a group.
pub trait Outcome {
    /// True if this outcome should stop the group's wait as a failure.
    fn is_failure(&self) -> bool;
    /// True if this outcome counts as a value for [`Wait::FirstValue`].
    fn is_value(&self) -> bool;
}

impl Outcome for () {
    fn is_failure(&self) -> bool {
        false
    }
    fn is_value(&self) -> bool {
        false
    }
}

impl<T, E> Outcome for std::result::Result<T, E> {
    fn is_failure(&self) -> bool {
        self.is_err()
    }
    fn is_value(&self) -> bool {
        self.is_ok()
    }
}

impl<T> Outcome for Option<T> {
    fn is_failure(&self) -> bool {
        false
    }
    fn is_value(&self) -> bool {
        self.is_some()
    }
}

macro_rules! plain_values {
    ($($t:ty),*) => {$(
        impl Outcome for $t {
            fn is_failure(&self) -> bool { false }
            fn is_value(&self) -> bool { true }
        }
    )*};
}
plain_values!(
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    f32,
    f64,
    bool,
    char,
    String,
    &'static str
);

impl<T> Outcome for Vec<T> {
    fn is_failure(&self) -> bool {
        false
    }
    fn is_value(&self) -> bool {
        true
    }
}

impl<T> Outcome for Box<T> {
    fn is_failure(&self) -> bool {
        false
    }
    fn is_value(&self) -> bool {
        true
    }
}

struct Inner<T: 'static> {
    wait: Wait,
    /// Members still in the group, in spawn/add order.
    members: RefCell<Vec<Task<T>>>,
    /// How far `next_done` has read `finished`.
    next_done: Cell<usize>,
    /// Every member's completion, in order: read by `join`'s policy and by
    /// `next_done` (each with its own cursor).
    finished: RefCell<Vec<u64>>,
    waiters: RefCell<WaitQueue>,
    joined: Cell<bool>,
    completed: RefCell<Option<Task<T>>>,
}

/// A supervised set of tasks returning `T` (see the module docs).
pub struct TaskGroup<T: Outcome + 'static> {
    inner: Rc<Inner<T>>,
}

impl<T: Outcome + 'static> std::fmt::Debug for TaskGroup<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskGroup")
            .field("wait", &self.inner.wait)
            .field("members", &self.inner.members.borrow().len())
            .field("joined", &self.inner.joined.get())
            .finish()
    }
}

impl<T: Outcome + 'static> Default for TaskGroup<T> {
    fn default() -> Self {
        TaskGroup::new()
    }
}

impl<T: Outcome + 'static> TaskGroup<T> {
    /// An empty group that waits for all members.
    pub fn new() -> TaskGroup<T> {
        TaskGroup::with_wait(Wait::All)
    }

    /// An empty group with the given wait policy.
    pub fn with_wait(wait: Wait) -> TaskGroup<T> {
        TaskGroup {
            inner: Rc::new(Inner {
                wait,
                members: RefCell::new(Vec::new()),
                next_done: Cell::new(0),
                finished: RefCell::new(Vec::new()),
                waiters: RefCell::new(WaitQueue::new()),
                joined: Cell::new(false),
                completed: RefCell::new(None),
            }),
        }
    }

    /// Spawns `f` as a member. Never switches.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`] once the group has been joined.
    pub fn spawn<F>(&self, f: F) -> Result<Task<T>>
    where
        F: FnOnce() -> T + 'static,
    {
        self.spawn_with(task::Builder::new(), f)
    }

    /// Spawns `f` as a member with task options (name, daemon, stack size).
    /// Daemon members are ignored by the wait policy and the results, and
    /// cancelled when the group ends.
    pub fn spawn_with<F>(&self, builder: task::Builder, f: F) -> Result<Task<T>>
    where
        F: FnOnce() -> T + 'static,
    {
        self.check_open()?;
        let t = builder.spawn(f)?;
        self.adopt(&t);
        Ok(t)
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.joined.get() {
            return Err(Error::usage("the task group has already been joined"));
        }
        Ok(())
    }

    /// Adds an existing task, finished or not, to the group.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`] if it is already in a group or the group was joined.
    pub fn add_task(&self, task: &Task<T>) -> Result<()> {
        self.check_open()?;
        if task.record().in_group() {
            return Err(Error::usage("the task is already part of a task group"));
        }
        self.adopt(task);
        Ok(())
    }

    fn adopt(&self, t: &Task<T>) {
        let h = t.record();
        let link: Weak<dyn GroupLink> = Rc::downgrade(&self.inner) as Weak<dyn GroupLink>;
        h.join_group(link);
        self.inner.members.borrow_mut().push(clone_task(t));
        if h.is_terminated() {
            self.inner.member_finished(h.id());
        }
    }

    fn running_members(&self) -> usize {
        self.inner
            .members
            .borrow()
            .iter()
            .filter(|t| !t.is_daemon() && !t.is_terminated())
            .count()
    }

    fn member(&self, id: u64) -> Option<Task<T>> {
        self.inner
            .members
            .borrow()
            .iter()
            .find(|t| t.id() == id)
            .map(clone_task)
    }

    fn park(&self) -> Result<()> {
        trap::park_on(&self.inner.waiters, State::GroupWait)
    }

    /// Waits for the next member to finish and removes it from the group.
    /// Returns `None` when no non-daemon member is left.
    ///
    /// # Cancellation
    ///
    /// A cancel point. A caller cancelled here takes nothing: the members run on
    /// and stay in the group.
    pub fn next_done(&self) -> Result<Option<Task<T>>> {
        loop {
            let cursor = self.inner.next_done.get();
            let next = self.inner.finished.borrow().get(cursor).copied();
            if let Some(id) = next {
                self.inner.next_done.set(cursor + 1);
                let mut members = self.inner.members.borrow_mut();
                if let Some(i) = members.iter().position(|t| t.id() == id && !t.is_daemon()) {
                    let t = members.remove(i);
                    t.record().leave_group();
                    return Ok(Some(t));
                }
                continue;
            }
            if self.running_members() == 0 {
                return Ok(None);
            }
            self.park()?;
        }
    }

    /// [`TaskGroup::next_done`], then the finished member's value.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`] when no member is left; [`ErrorKind::TaskPanicked`]
    /// if it panicked.
    pub fn next_result(&self) -> Result<T> {
        match self.next_done()? {
            Some(t) => t.join(),
            None => Err(Error::usage("no task available in the group")),
        }
    }

    /// Cancels every running non-daemon member (all requests first, then waits
    /// for each) and removes them from the group. Daemons are left running.
    ///
    /// # Cancellation
    ///
    /// The waits run with cancellation masked: this returns only once every
    /// member has finished.
    pub fn cancel_remaining(&self) {
        let victims: Vec<Task<T>> = {
            let mut members = self.inner.members.borrow_mut();
            let (running, rest): (Vec<_>, Vec<_>) = members
                .drain(..)
                .partition(|t| !t.is_daemon() && !t.is_terminated());
            *members = rest;
            running
        };
        for t in &victims {
            t.record().leave_group();
        }
        cancel_and_wait(victims.iter().map(|t| t.as_task_ref()));
    }

    /// Waits per the group's [`Wait`] policy, then cancels every member still
    /// running (daemons too) and waits for each. Marks the group joined. Never
    /// fails because a member failed: look at [`TaskGroup::results`].
    ///
    /// # Cancellation
    ///
    /// If the caller is cancelled or times out while waiting, the members are
    /// still all cancelled and waited for (masked), then the error is returned.
    pub fn join(&self) -> Result<()> {
        if self.inner.joined.get() {
            return Ok(());
        }
        let r = self.wait_policy();
        self.inner.joined.set(true);
        let members: Vec<Task<T>> = self.inner.members.borrow().iter().map(clone_task).collect();
        cancel_and_wait(members.iter().map(|t| t.as_task_ref()));
        r
    }

    fn wait_policy(&self) -> Result<()> {
        let wait = self.inner.wait;
        if wait == Wait::None {
            return Ok(());
        }
        let mut seen = 0;
        loop {
            loop {
                let id = match self.inner.finished.borrow().get(seen) {
                    Some(&id) => id,
                    None => break,
                };
                seen += 1;
                let Some(t) = self.member(id) else { continue };
                if t.is_daemon() {
                    continue;
                }
                let failed =
                    t.cell().panicked() || t.cell().with_result(|v| v.is_some_and(T::is_failure));
                let value = t.cell().with_result(|v| v.is_some_and(T::is_value));
                let counts = wait != Wait::FirstValue || failed || value;
                if counts && self.inner.completed.borrow().is_none() {
                    *self.inner.completed.borrow_mut() = Some(clone_task(&t));
                }
                if failed || wait == Wait::Any || (wait == Wait::FirstValue && value) {
                    return Ok(());
                }
            }
            if self.running_members() == 0 {
                return Ok(());
            }
            self.park()?;
        }
    }

    /// The member that ended the wait of [`TaskGroup::join`] (for [`Wait::All`],
    /// the first to finish), if any.
    pub fn completed(&self) -> Option<TaskRef> {
        self.inner
            .completed
            .borrow()
            .as_ref()
            .map(|t| t.as_task_ref().clone())
    }

    /// The value of [`TaskGroup::completed`].
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`] before `join` or if no member completed;
    /// [`ErrorKind::TaskPanicked`] if it panicked; [`ErrorKind::ResultTaken`] if
    /// its value was already taken.
    pub fn result(&self) -> Result<T> {
        if !self.inner.joined.get() {
            return Err(Error::usage("the task group has not been joined yet"));
        }
        match &*self.inner.completed.borrow() {
            Some(t) => t.cell().take_result(),
            None => Err(Error::usage("no task in the group completed")),
        }
    }

    /// The values of the non-daemon members still in the group, by task id
    /// (members taken by `next_done` or `cancel_remaining` are not included).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`] before `join`; the first member's panic as
    /// [`ErrorKind::TaskPanicked`].
    pub fn results(&self) -> Result<Vec<T>> {
        if !self.inner.joined.get() {
            return Err(Error::usage("the task group has not been joined yet"));
        }
        self.sorted_members()
            .iter()
            .map(|t| t.cell().take_result())
            .collect()
    }

    /// For each non-daemon member still in the group, by task id: `Some` with
    /// the panic if it panicked, else `None`. Failures returned as values (an
    /// `Err` result) are in the values.
    pub fn exceptions(&self) -> Vec<Option<Error>> {
        self.sorted_members()
            .iter()
            .map(|t| {
                t.cell()
                    .panic_text()
                    .map(|msg| Error::new(ErrorKind::TaskPanicked, msg))
            })
            .collect()
    }

    fn sorted_members(&self) -> Vec<Task<T>> {
        let mut v: Vec<Task<T>> = self
            .inner
            .members
            .borrow()
            .iter()
            .filter(|t| !t.is_daemon())
            .map(clone_task)
            .collect();
        v.sort_by_key(|t| t.id());
        v
    }

    /// The non-daemon members still in the group, by id.
    pub fn tasks(&self) -> Vec<TaskRef> {
        self.sorted_members()
            .iter()
            .map(|t| t.as_task_ref().clone())
            .collect()
    }

    /// Runs `f` with a group whose members may borrow from the caller, like
    /// [`std::thread::scope`], and leaves the group as Curio's `async with`
    /// does:
    ///
    /// - `f` returns `Ok`: the group is joined (members waited for per `wait`,
    ///   then the rest cancelled and waited for), and `scope` returns `f`'s
    ///   value, or the join's error if the caller was cancelled meanwhile;
    /// - `f` returns `Err` (a `?` inside it): every member still running is
    ///   cancelled first, then the group is joined, and `scope` returns `f`'s
    ///   error;
    /// - `f` panics: the same as `Err`, then the panic goes on.
    ///
    /// Either way no member is running when `scope` returns, so nothing
    /// borrowed can be freed while a member uses it. Inside `f`, the scope
    /// dereferences to its [`TaskGroup`], so `g.join()`, `g.results()` and
    /// `g.next_done()` work on it directly.
    ///
    /// ```
    /// use curio::{TaskGroup, Wait};
    /// curio::run(|| -> curio::Result<()> {
    ///     let words = vec!["a".to_string(), "bb".to_string()];
    ///     let total = TaskGroup::<usize>::scope(Wait::All, |g| {
    ///         for w in &words {
    ///             g.spawn(move || w.len())?; // borrows `words`
    ///         }
    ///         g.join()?;
    ///         Ok::<_, curio::Error>(g.results()?.iter().sum::<usize>())
    ///     })?;
    ///     assert_eq!(total, 3);
    ///     Ok(())
    /// })
    /// .unwrap();
    /// ```
    ///
    /// # Cancellation
    ///
    /// The final join is a cancel point as [`TaskGroup::join`] is: cancelled or
    /// timed out there, the members are still all cancelled and waited for
    /// (masked) before the error is returned.
    pub fn scope<'env, R, E>(
        wait: Wait,
        f: impl FnOnce(&Scope<'_, 'env, T>) -> std::result::Result<R, E>,
    ) -> std::result::Result<R, E>
    where
        E: From<Error>,
    {
        /// However `scope` is left, every member it spawned has ended first:
        /// no member may outlive the borrows it holds. On the normal paths the
        /// join below has ended them all and this finds nothing to do. On a
        /// panic (in `f`, or in the join: a user `Outcome` impl) it cancels
        /// the members, as Curio's `async with` does on an exception, and
        /// waits for each, running no user code meanwhile.
        struct EndMembers<'a, 's, 'env, T: Outcome + 'static>(&'a Scope<'s, 'env, T>);
        impl<T: Outcome + 'static> Drop for EndMembers<'_, '_, '_, T> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    self.0.group.cancel_remaining();
                }
                self.0.end_members();
            }
        }
        let group = TaskGroup::with_wait(wait);
        let scope = Scope {
            group: &group,
            members: RefCell::new(Vec::new()),
            _env: PhantomData,
        };
        let end = EndMembers(&scope);
        let r = match f(&scope) {
            Ok(v) => group.join().map(|()| v).map_err(E::from),
            Err(e) => {
                // The body failed: cancel first, then join (Curio's `__aexit__`).
                group.cancel_remaining();
                let _ = group.join();
                Err(e)
            }
        };
        drop(end);
        r
    }
}

impl<T: Outcome + 'static> Drop for TaskGroup<T> {
    /// A group dropped without being joined was left by an error (a `?`, an
    /// early `return`) or a panic, since the normal way out is
    /// [`TaskGroup::join`]. As Curio's `async with` does when its body raises,
    /// every member still running is cancelled, then the group is joined
    /// (masked), so no member outlives it.
    fn drop(&mut self) {
        if self.inner.joined.get() || !trap::in_task() {
            return;
        }
        if std::thread::panicking() {
            // Left by a panic: cancel every member and wait for each, running
            // no user code (`Outcome`), since a second panic would abort.
            self.inner.joined.set(true);
            let members: Vec<Task<T>> =
                self.inner.members.borrow().iter().map(clone_task).collect();
            cancel_and_wait(members.iter().map(|t| t.as_task_ref()));
            return;
        }
        self.cancel_remaining();
        let _ = disable_cancellation(|| self.join());
    }
}

/// The handle [`TaskGroup::scope`] lends to its closure.
pub struct Scope<'scope, 'env: 'scope, T: Outcome + 'static> {
    group: &'scope TaskGroup<T>,
    /// Every member spawned through this scope, whatever the body later does
    /// with the group (`next_done`, `cancel_remaining` and `join` take members
    /// out of the group's own list): `scope` waits for each before it returns.
    members: RefCell<Vec<TaskRef>>,
    _env: PhantomData<&'env mut &'env ()>,
}

impl<'scope, 'env, T: Outcome + 'static> Scope<'scope, 'env, T> {
    /// Spawns a member that may borrow anything that outlives the scope.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Usage`] once the group has been joined (inside the scope,
    /// through [`Scope::group`]), or while the kernel is force-unwinding its
    /// tasks; an I/O error if no stack could be mapped.
    #[allow(unsafe_code)]
    pub fn spawn<F>(&self, f: F) -> Result<Task<T>>
    where
        F: FnOnce() -> T + 'env,
    {
        self.group.check_open()?;
        if trap::is_unwinding() {
            return Err(Error::usage(
                "the kernel is tearing its tasks down; a scoped member cannot start now",
            ));
        }
        // SAFETY: the member is recorded in `self.members` before any code
        // runs, and `TaskGroup::scope` does not return (normally or by
        // unwinding) before every recorded member has terminated:
        // `end_members` waits for each, masked, re-checking termination after
        // every wake-up, and aborts the process in the one case it cannot
        // wait (which the argument in arch-notes/task-groups.md shows is not
        // reachable). So nothing borrowed for 'env goes while the member runs.
        // The scope cannot be leaked or outlived: it is only lent to the
        // closure by reference, under a lifetime no member closure can name.
        let t = unsafe { task::Builder::new().spawn_unchecked(f) }?;
        self.members.borrow_mut().push(t.as_task_ref().clone());
        self.group.adopt(&t);
        Ok(t)
    }

    /// The group, to call `next_done`, `cancel_remaining` … inside the scope.
    pub fn group(&self) -> &TaskGroup<T> {
        self.group
    }

    /// Cancels every member this scope spawned that is still running and waits
    /// until each has terminated.
    fn end_members(&self) {
        let members = self.members.take();
        for t in &members {
            t.cancel_nowait();
        }
        disable_cancellation(|| {
            for t in &members {
                // Masked, so only a task that can no longer switch (being
                // force-unwound) gets an error here; members are newer than
                // the scope's task and are unwound before it, so they have
                // ended by then. If that ever failed, returning would free
                // what the member borrows: stop the process instead.
                if t.wait().is_err() && !t.is_terminated() {
                    eprintln!(
                        "curio: a scoped task group cannot wait for its member {}, which \
                         borrows from the scope's caller; aborting",
                        t.id()
                    );
                    std::process::abort();
                }
            }
        });
    }
}

impl<T: Outcome + 'static> std::ops::Deref for Scope<'_, '_, T> {
    type Target = TaskGroup<T>;
    /// The scope's group (`join`, `results`, `next_done` …); `spawn` on a
    /// scope is [`Scope::spawn`], whose members may borrow.
    fn deref(&self) -> &TaskGroup<T> {
        self.group
    }
}

impl<T: Outcome + 'static> std::fmt::Debug for Scope<'_, '_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scope")
            .field("members", &self.members.borrow().len())
            .finish()
    }
}

impl<T: 'static> GroupLink for Inner<T> {
    fn member_finished(&self, id: u64) {
        self.finished.borrow_mut().push(id);
        trap::wake_all(&self.waiters);
    }

    fn discard(&self, id: u64) {
        self.members.borrow_mut().retain(|t| t.id() != id);
    }
}

/// Requests cancellation of every task first, then waits for each, masked.
fn cancel_and_wait<'a>(tasks: impl Iterator<Item = &'a TaskRef> + Clone) {
    for t in tasks.clone() {
        t.cancel_nowait();
    }
    disable_cancellation(|| {
        for t in tasks {
            // Masked, so the wait cannot be interrupted; it ends when the task does.
            let _ = t.wait();
        }
    });
}

fn clone_task<T>(t: &Task<T>) -> Task<T> {
    t.clone()
}
